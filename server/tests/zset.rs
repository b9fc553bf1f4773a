//! Differential tests of the sorted set commands (ZADD … ZINTERCARD): the same commands go
//! to a real `redis-server` (7.0, the spec) and to percore with 1 and with 3 shards, over
//! RESP2 and RESP3. Skipped with a loud message when redis-server is absent;
//! PERCORE_REQUIRE_REDIS=1 (CI) turns the skip into a failure.
//!
//! Replies must be identical byte for byte, except where Redis picks at random
//! (ZRANDMEMBER with a count below the set's size, which the tables and streams avoid) and
//! ZSCAN of a `skiplist` set, whose cursor walks each server's own table: there full scans
//! must return the same member/score pairs. After every command both servers must report
//! the same OBJECT ENCODING for the key it names first and, for the STORE commands, for the
//! destination.

mod common;

use common::{bulks, each_differential_run, words, Diff, Rng};
use std::collections::BTreeSet;

/// Small conversion limits: a 5th element or a member over 8 bytes makes a `skiplist`.
const SMALL: &[&str] = &[
    "--zset-max-listpack-entries",
    "4",
    "--zset-max-listpack-value",
    "8",
];

/// The commands of the tables, run in order on one database; each reply compared byte for
/// byte. Every command, option and error string of Redis 7.0's sorted sets appears here.
#[rustfmt::skip]
const TABLE: &[&str] = &[
    // arity
    "ZADD k", "ZADD k 1", "ZINCRBY k 1", "ZSCORE k", "ZMSCORE k", "ZRANK k", "ZREVRANK k a b",
    "ZRANGE k 0", "ZRANGESTORE d k 0", "ZREVRANGE k 0", "ZRANGEBYSCORE k 0", "ZRANGEBYLEX k -",
    "ZREVRANGEBYSCORE k 0", "ZREVRANGEBYLEX k +", "ZCOUNT k 0", "ZLEXCOUNT k -", "ZREM k",
    "ZREMRANGEBYRANK k 0", "ZREMRANGEBYSCORE k 0", "ZREMRANGEBYLEX k -", "ZCARD", "ZPOPMIN",
    "ZPOPMAX", "ZMPOP 1 k", "ZRANDMEMBER", "ZSCAN k", "ZUNION 1", "ZINTER 1", "ZDIFF 1",
    "ZUNIONSTORE d 1", "ZINTERSTORE d 1", "ZDIFFSTORE d 1", "ZINTERCARD 1",
    // missing keys
    "ZCARD nokey", "ZSCORE nokey a", "ZMSCORE nokey a b", "ZRANK nokey a", "ZREVRANK nokey a",
    "ZRANGE nokey 0 -1", "ZRANGE nokey 0 -1 WITHSCORES", "ZCOUNT nokey -inf +inf",
    "ZLEXCOUNT nokey - +", "ZREM nokey a", "ZREMRANGEBYRANK nokey 0 -1", "ZPOPMIN nokey",
    "ZPOPMAX nokey 3", "ZMPOP 2 nokey nokey2 MIN", "ZRANDMEMBER nokey", "ZRANDMEMBER nokey 3",
    "ZRANDMEMBER nokey -3 WITHSCORES", "ZSCAN nokey 0", "ZUNION 2 nokey nokey2", "ZINTERCARD 1 nokey",
    "ZADD nokey XX 1 a", "EXISTS nokey", "ZINCRBY nokey2 x a", "ZADD nokey XX INCR 1 a",
    // ZADD options and errors
    "ZADD z 1 a 2 b 3 c", "ZADD z 1 a", "ZADD z CH 5 a", "ZADD z NX 9 a 4 d", "ZADD z XX 9 a 4 e",
    "ZADD z GT 1 a", "ZADD z GT CH 10 a", "ZADD z LT CH 10 a 1 b", "ZADD z XX GT CH 0 a 20 a",
    "ZADD z NX XX 1 a", "ZADD z GT LT 1 a", "ZADD z NX GT 1 a", "ZADD z NX LT 1 a",
    "ZADD z INCR 1 a 2 b", "ZADD z 1", "ZADD z 1 a 2", "ZADD z x a", "ZADD z 1 a x b",
    "ZADD z nan a", "ZADD z 1e400 a", "ZADD z 1e-400 a", "ZADD z \x201 a", "ZADD z 1\x20 a",
    "ZADD z \"\" a", "ZADD z inf i1 -inf i2 +inf i3 Infinity i4 -INF i5 0x10 h 1e3 e 1e-310 dn",
    "ZADD z INCR 5 a", "ZADD z INCR -inf i1", "ZADD z NX INCR 1 a", "ZADD z XX INCR 1 nope",
    "ZADD z GT INCR -1 a", "ZADD z LT INCR -1 a", "ZINCRBY z 2.5 b", "ZINCRBY z -2.5 new",
    "ZINCRBY z x b", "ZINCRBY z nx b", "ZINCRBY z 1 i1", "ZINCRBY z -inf i3", "ZINCRBY z +inf i2",
    "ZADD z -0 negz 0.1 p1 1e20 big 3.0 three -1.5e-7 tiny 123456789012345678 huge",
    "ZADD z 0.30000000000000004 p3 1e17 e17 -0.0 negz2",
    "ZSCORE z negz", "ZSCORE z p1", "ZSCORE z big", "ZSCORE z three", "ZSCORE z tiny",
    "ZSCORE z huge", "ZSCORE z p3", "ZSCORE z e17", "ZSCORE z dn", "ZSCORE z h", "ZSCORE z i4",
    "ZMSCORE z a nope b i2", "ZCARD z", "ZRANGE z 0 -1 WITHSCORES", "OBJECT ENCODING z",
    "ZSCAN z 0", "ZSCAN z 0 MATCH *i* COUNT 100",
    // ranks and ranges
    "ZADD r 1 a 2 b 3 c 4 d 5 e 5 f 5 g 6 h", "ZRANK r a", "ZRANK r g", "ZREVRANK r a",
    "ZRANK r nope", "ZRANGE r 0 -1", "ZRANGE r 2 4 WITHSCORES", "ZRANGE r -3 -1", "ZRANGE r 5 2",
    "ZRANGE r -100 100", "ZRANGE r 0 -1 REV", "ZRANGE r 0 2 REV WITHSCORES", "ZREVRANGE r 0 2",
    "ZREVRANGE r 1 -1 WITHSCORES", "ZRANGE r x 1", "ZRANGE r 0 1 LIMIT 0 1", "ZRANGE r 0 1 FOO",
    "ZRANGE r 0 1 WITHSCORES WITHSCORES", "ZRANGE r 2 5 BYSCORE", "ZRANGE r (2 5 BYSCORE WITHSCORES",
    "ZRANGE r 5 (2 BYSCORE REV", "ZRANGE r -inf +inf BYSCORE LIMIT 1 3",
    "ZRANGE r -inf +inf BYSCORE LIMIT 1 -1", "ZRANGE r -inf +inf BYSCORE LIMIT -1 3",
    "ZRANGE r -inf +inf BYSCORE LIMIT 100 3", "ZRANGE r -inf +inf BYSCORE LIMIT 2 0",
    "ZRANGE r +inf -inf BYSCORE REV LIMIT 2 2 WITHSCORES", "ZRANGE r 5 2 BYSCORE",
    "ZRANGE r x 2 BYSCORE", "ZRANGE r ( 2 BYSCORE", "ZRANGE r 1 nan BYSCORE", "ZRANGE r 1 (x BYSCORE",
    "ZRANGE r - + BYLEX", "ZRANGE r - + BYLEX WITHSCORES", "ZRANGE r 1 2 BYSCORE BYLEX",
    "ZRANGE r 1 2 LIMIT 0", "ZRANGE r 1 2 BYSCORE LIMIT x 1", "ZRANGE r 1 2 BYSCORE LIMIT 0 x",
    "ZRANGEBYSCORE r 2 5", "ZRANGEBYSCORE r (2 (5 WITHSCORES", "ZRANGEBYSCORE r -inf 3 LIMIT 1 1",
    "ZRANGEBYSCORE r 2 5 REV", "ZRANGEBYSCORE r 2 5 BYSCORE", "ZREVRANGEBYSCORE r 5 2",
    "ZREVRANGEBYSCORE r 2 5", "ZREVRANGEBYSCORE r +inf -inf WITHSCORES LIMIT 0 3",
    "ZCOUNT r 2 5", "ZCOUNT r (2 (5", "ZCOUNT r 5 2", "ZCOUNT r -inf +inf", "ZCOUNT r x 1",
    "ZCOUNT r \"\" 3", "ZCOUNT r (inf +inf", "ZCOUNT r 0x1 0x3",
    // lex (equal scores)
    "ZADD l 0 a 0 b 0 c 0 d 0 e 0 f 0 ab 0 \"\"", "ZRANGEBYLEX l - +", "ZRANGEBYLEX l [b (e",
    "ZRANGEBYLEX l (a [c LIMIT 1 2", "ZRANGEBYLEX l + -", "ZRANGEBYLEX l [\"\" [a",
    "ZREVRANGEBYLEX l + -", "ZREVRANGEBYLEX l [e (b", "ZREVRANGEBYLEX l - +",
    "ZRANGEBYLEX l a c", "ZRANGEBYLEX l [a c", "ZRANGEBYLEX l -a +", "ZRANGEBYLEX l - ++",
    "ZRANGE l [b [d BYLEX REV", "ZRANGE l [d [b BYLEX REV LIMIT 1 5", "ZLEXCOUNT l - +",
    "ZLEXCOUNT l [b (e", "ZLEXCOUNT l (e [b", "ZLEXCOUNT l x y", "ZRANGEBYLEX l - + WITHSCORES",
    // removals
    "ZREM r a nope b", "ZREM r", "ZREMRANGEBYRANK r 0 0", "ZREMRANGEBYRANK r -1 -1",
    "ZREMRANGEBYRANK r 5 1", "ZREMRANGEBYRANK r x 1", "ZRANGE r 0 -1 WITHSCORES",
    "ZREMRANGEBYSCORE r (3 5", "ZREMRANGEBYSCORE r x 5", "ZRANGE r 0 -1 WITHSCORES",
    "ZREMRANGEBYLEX l [b (d", "ZREMRANGEBYLEX l x y", "ZRANGE l 0 -1", "ZREMRANGEBYLEX l - +",
    "EXISTS l", "ZREMRANGEBYRANK r 0 -1", "EXISTS r",
    // pops
    "ZADD p 1 a 2 b 3 c 4 d 5 e", "ZPOPMIN p", "ZPOPMAX p", "ZPOPMIN p 2", "ZPOPMAX p 0",
    "ZPOPMIN p -1", "ZPOPMIN p x", "ZPOPMIN p 1 2", "ZPOPMAX p 10", "EXISTS p", "ZPOPMIN p 0",
    "ZADD p 1 a 2 b 3 c", "ZMPOP 1 p MIN", "ZMPOP 2 nokey p MAX COUNT 5", "ZMPOP 0 p MIN",
    "ZMPOP x p MIN", "ZMPOP 3 p MIN", "ZMPOP 1 p LEFT", "ZMPOP 1 p MIN COUNT 0",
    "ZMPOP 1 p MIN COUNT x", "ZMPOP 1 p MIN COUNT 1 COUNT 1", "ZMPOP 1 p MIN FOO",
    "ZMPOP 1 p", "ZMPOP 1 nokey MAX",
    // random members (only where the answer is determined)
    "ZADD q 1 a 2 b 3 c", "ZRANDMEMBER q 3", "ZRANDMEMBER q 10 WITHSCORES", "ZRANDMEMBER q 0",
    "ZRANDMEMBER q x", "ZRANDMEMBER q 1 2", "ZRANDMEMBER q 1 WITHSCORES x",
    "ZRANDMEMBER q -9223372036854775808", "ZRANDMEMBER q 9223372036854775807 WITHSCORES",
    "ZRANDMEMBER q -4611686018427387904 WITHSCORES", "ZRANDMEMBER q 4611686018427387903 WITHSCORES",
    // algebra
    "ZADD u1 1 a 2 b 3 c", "ZADD u2 10 b 20 c 30 d", "SADD st c d e", "SET str x",
    "ZUNION 2 u1 u2", "ZUNION 2 u1 u2 WITHSCORES", "ZUNION 3 u1 u2 st WITHSCORES",
    "ZUNION 2 u1 u2 WEIGHTS 2 3 WITHSCORES", "ZUNION 2 u1 u2 AGGREGATE MIN WITHSCORES",
    "ZUNION 2 u1 u2 AGGREGATE max WITHSCORES", "ZUNION 2 u1 u2 WEIGHTS 1", "ZUNION 2 u1 u2 WEIGHTS 1 x",
    "ZUNION 2 u1 u2 AGGREGATE avg", "ZUNION 2 u1 u2 AGGREGATE", "ZUNION 0 u1", "ZUNION -1 u1",
    "ZUNION x u1", "ZUNION 3 u1 u2", "ZUNION 2 u1 str", "ZUNION 2 u1 u2 WITHSCORES FOO",
    "ZUNION 2 u1 u2 WEIGHTS inf 0 WITHSCORES", "ZUNION 2 u1 u2 WEIGHTS inf -inf WITHSCORES",
    "ZINTER 2 u1 u2 WITHSCORES", "ZINTER 3 u1 u2 st WITHSCORES", "ZINTER 2 u1 nokey",
    "ZINTER 2 u1 u2 WEIGHTS 0 inf AGGREGATE SUM WITHSCORES", "ZINTER 2 u1 u1 WITHSCORES",
    "ZDIFF 2 u1 u2 WITHSCORES", "ZDIFF 3 u2 u1 st WITHSCORES", "ZDIFF 1 nokey",
    "ZDIFF 2 u1 u2 WEIGHTS 1 1", "ZDIFF 2 u1 u2 AGGREGATE SUM", "ZINTERCARD 2 u1 u2",
    "ZINTERCARD 2 u1 u2 LIMIT 1", "ZINTERCARD 2 u1 u2 LIMIT 0", "ZINTERCARD 2 u1 u2 LIMIT -1",
    "ZINTERCARD 2 u1 u2 LIMIT x", "ZINTERCARD 2 u1 u2 WITHSCORES", "ZINTERCARD 0 u1",
    "ZINTERCARD 3 u1 u2", "ZINTERCARD 2 u1 str",
    "ZUNIONSTORE d 2 u1 u2", "ZRANGE d 0 -1 WITHSCORES", "OBJECT ENCODING d",
    "ZINTERSTORE d 2 u1 u2 WEIGHTS 1 2", "ZRANGE d 0 -1 WITHSCORES", "ZDIFFSTORE d 2 u1 u2",
    "ZRANGE d 0 -1 WITHSCORES", "ZDIFFSTORE d 2 u1 u1", "EXISTS d", "ZUNIONSTORE d 1 u1 WITHSCORES",
    "ZUNIONSTORE str 1 u1", "TYPE str", "ZINTERSTORE d 0 u1", "ZDIFFSTORE d x u1",
    "ZUNIONSTORE {t}d 2 {t}a {t}b", "ZADD {t}a 1 x 2 y", "ZADD {t}b 3 y 4 z",
    "ZUNIONSTORE {t}d 2 {t}a {t}b", "ZRANGE {t}d 0 -1 WITHSCORES", "ZINTER 2 {t}a {t}b WITHSCORES",
    // ZRANGESTORE
    "ZRANGESTORE rs u2 0 -1", "ZRANGE rs 0 -1 WITHSCORES", "ZRANGESTORE rs u2 (10 +inf BYSCORE",
    "ZRANGESTORE rs u2 0 -1 WITHSCORES", "ZRANGESTORE rs u2 + - BYLEX REV LIMIT 0 1",
    "ZRANGESTORE rs nokey 0 -1", "EXISTS rs", "ZRANGESTORE rs u2 5 9", "ZRANGESTORE rs str 0 -1",
    "ZRANGESTORE str u2 0 0", "TYPE str",
    // wrong types
    "ZADD str 1 a", "ZSCORE str a", "ZRANGE str 0 -1", "ZCARD str", "ZPOPMIN str", "ZMPOP 1 str MIN",
    "ZRANDMEMBER str", "ZSCAN str 0", "ZRANK str a", "ZREM str a", "ZCOUNT str 0 1",
    "ZREMRANGEBYSCORE str 0 1", "ZINCRBY str 1 a", "ZMSCORE str a", "SADD u1 x", "TYPE u1",
    // scans of a small set: whole, in order
    "ZSCAN u1 0", "ZSCAN u1 0 MATCH [ab]", "ZSCAN u1 0 COUNT 1", "ZSCAN u1 0 TYPE zset",
    "ZSCAN u1 x", "ZSCAN u1 0 COUNT 0", "ZSCAN u1 0 MATCH",
    // copies and moves keep the type and encoding
    "COPY u2 u2c", "ZRANGE u2c 0 -1 WITHSCORES", "RENAME u2c u2d", "ZRANGE u2d 0 -1 WITHSCORES",
    "MOVE u2d 1", "EXISTS u2d", "TYPE u2",
];

/// At [`SMALL`] limits: conversions by size and by member length, for each way a set is
/// made, and ranges over `skiplist` sets.
#[rustfmt::skip]
const CONVERSIONS: &[&str] = &[
    "ZADD a 1 a 2 b 3 c 4 d", "OBJECT ENCODING a", "ZADD a 5 e", "OBJECT ENCODING a",
    "ZREM a a b c d", "OBJECT ENCODING a", "ZADD b 1 abcdefgh", "OBJECT ENCODING b",
    "ZADD c 1 abcdefghi", "OBJECT ENCODING c", "ZADD c2 1 a", "ZADD c2 2 abcdefghi",
    "OBJECT ENCODING c2", "ZADD d XX 1 a", "ZINCRBY d 1 abcdefghi", "OBJECT ENCODING d",
    "ZADD big 1 a 2 b 3 c 4 d 5 e 6 f 7 g 8 h 9 i 0 j -0 k", "ZRANGE big 0 -1 WITHSCORES",
    "ZSCORE big k", "ZRANGE big 2 5 REV", "ZRANGEBYSCORE big (3 8 LIMIT 1 3 WITHSCORES",
    "ZREVRANGEBYSCORE big 8 (3", "ZRANK big e", "ZREVRANK big e", "ZCOUNT big 2 7",
    "ZUNIONSTORE s1 1 a", "OBJECT ENCODING s1", "ZUNIONSTORE s2 1 big", "OBJECT ENCODING s2",
    "ZUNIONSTORE s3 2 b c", "OBJECT ENCODING s3", "ZINTERSTORE s4 2 big big", "OBJECT ENCODING s4",
    "ZRANGESTORE s5 big 0 3", "OBJECT ENCODING s5", "ZRANGESTORE s6 big 0 4", "OBJECT ENCODING s6",
    "ZRANGESTORE s7 c 0 -1", "OBJECT ENCODING s7", "ZDIFFSTORE s8 2 big a", "OBJECT ENCODING s8",
    "ZPOPMIN big 8", "OBJECT ENCODING big", "ZREMRANGEBYRANK big 0 -1", "EXISTS big",
    "ZADD lx 0 a 0 b 0 c 0 d 0 e 0 f", "ZRANGEBYLEX lx (b [e", "ZREVRANGEBYLEX lx + [c LIMIT 1 2",
    "ZLEXCOUNT lx - (c", "ZREMRANGEBYLEX lx [b [c", "ZRANGE lx 0 -1", "ZMPOP 1 lx MAX COUNT 2",
    "ZRANDMEMBER lx 10 WITHSCORES",
];

/// Redis and percore, compared after every command on the encodings of the keys it names
/// too.
struct Pair(Diff);

impl Pair {
    /// One command to both servers: identical replies, then identical encodings of the keys
    /// it names.
    fn send(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let w = self.0.same(args);
        let name = String::from_utf8_lossy(&args[0]).to_uppercase();
        let mut keys = Vec::new();
        if args.len() > 1 && name.starts_with('Z') && !name.starts_with("ZUNION ") {
            keys.push(&args[1]);
        }
        if name == "ZRANGESTORE" && args.len() > 2 {
            keys.push(&args[2]);
        }
        for k in keys {
            self.0.encoding(k);
        }
        w
    }

    fn table(&mut self, rows: &[&str]) {
        for row in rows {
            self.send(&words(row));
        }
    }

    /// Every member/score pair a full ZSCAN from cursor 0 returns on one side.
    fn scan_all(&mut self, side: usize, key: &str) -> BTreeSet<Vec<u8>> {
        let mut seen = BTreeSet::new();
        let mut cursor = b"0".to_vec();
        for _ in 0..100_000 {
            let r = self.0.c[side].cmd(&[b"ZSCAN", key.as_bytes(), &cursor, b"COUNT", b"7"]);
            let items = bulks(&r);
            cursor = items[0].clone();
            for pair in items[1..].chunks(2) {
                seen.insert([&pair[0][..], b"=", &pair[1][..]].concat());
            }
            if cursor == b"0" {
                return seen;
            }
        }
        panic!("{}: ZSCAN did not finish", self.0.what)
    }
}

fn each_pair(what: &str, flags: &[&str], seeds: &[u64], mut f: impl FnMut(&mut Pair, u64)) {
    let what = format!("zset differential tests, {what}");
    each_differential_run(&what, flags, seeds, |redis, percore, resp3, seed, label| {
        f(&mut Pair(Diff::new(redis, percore, resp3, label)), seed)
    });
}

#[test]
fn zset_commands_match_redis() {
    each_pair("table", &[], &[], |p, _| p.table(TABLE));
}

#[test]
fn zset_encoding_conversions_match_redis() {
    each_pair("conversions", SMALL, &[], |p, _| p.table(CONVERSIONS));
}

/// A `skiplist` set past the default limit (129 members): ranges, ranks and pops match, and
/// full scans return the same pairs on both servers.
#[test]
fn large_zsets_match_redis() {
    each_pair("large", &[], &[], |p, _| {
        for chunk in 0..6 {
            let mut cmd = words("ZADD big");
            for i in 0..100 {
                let n = chunk * 100 + i;
                cmd.push(format!("{}", (n * 7919) % 601 / 3).into_bytes());
                cmd.push(format!("m{n}").into_bytes());
            }
            p.send(&cmd);
        }
        for row in [
            "OBJECT ENCODING big",
            "ZCARD big",
            "ZRANGE big 0 9 WITHSCORES",
            "ZRANGE big -10 -1",
            "ZRANGE big 250 260 REV WITHSCORES",
            "ZRANK big m77",
            "ZREVRANK big m77",
            "ZRANGEBYSCORE big (50 60 WITHSCORES",
            "ZREVRANGEBYSCORE big 150 (140 LIMIT 2 5",
            "ZCOUNT big 10 (100",
            "ZREM big m1 m2 m3",
            "ZPOPMIN big 3",
            "ZPOPMAX big 2",
            "ZREMRANGEBYSCORE big 10 20",
            "ZREMRANGEBYRANK big 100 150",
            "ZCARD big",
            "ZRANGE big 0 -1 WITHSCORES",
            "ZUNIONSTORE big2 1 big WEIGHTS 0.5",
            "ZRANGE big2 0 -1 WITHSCORES",
            "ZINTER 2 big big2 WITHSCORES",
            "ZRANDMEMBER big 1000",
            "ZREMRANGEBYRANK big 0 -1",
            "EXISTS big",
        ] {
            p.send(&words(row));
        }
        assert_eq!(p.scan_all(0, "big2"), p.scan_all(1, "big2"), "{}", p.0.what);
    });
}

/// Random commands: one of these templates, each one-letter word replaced by a random one
/// of its kind (see [`gen`]). Lex ranges only run on `lx`, whose scores are all equal (Redis
/// leaves them undefined otherwise).
const TEMPLATES: &str = "ZADD K S M|ZADD K S M S M S M|ZADD K O S M S M|ZADD K INCR S M|\
    ZINCRBY K S M|ZADD K B|ZREM K M M|ZSCORE K M|ZMSCORE K M M|ZRANK K M|ZREVRANK K M|ZCARD K|\
    ZRANGE K N N|ZRANGE K N N WITHSCORES|ZRANGE K N N REV|ZREVRANGE K N N WITHSCORES|\
    ZRANGEBYSCORE K R R|ZRANGEBYSCORE K R R WITHSCORES LIMIT N N|ZREVRANGEBYSCORE K R R|\
    ZRANGE K R R BYSCORE REV LIMIT N N|ZCOUNT K R R|ZREMRANGEBYSCORE K R R|\
    ZREMRANGEBYRANK K N N|ZPOPMIN K|ZPOPMAX K N|ZMPOP 2 K K MIN COUNT P|ZMPOP 1 K MAX|\
    ZUNION 2 K K WITHSCORES|ZINTER 2 K K WEIGHTS S S WITHSCORES|ZDIFF 2 K K WITHSCORES|\
    ZUNIONSTORE K 2 K K AGGREGATE A|ZINTERSTORE K 3 K K K|ZDIFFSTORE K 2 K K|\
    ZINTERCARD 2 K K LIMIT P|ZRANGESTORE K K N N|ZRANGESTORE K K R R BYSCORE|\
    ZADD lx 0 M|ZRANGEBYLEX lx X X|ZREVRANGEBYLEX lx X X LIMIT N N|ZLEXCOUNT lx X X|\
    ZREMRANGEBYLEX lx X X|ZRANGE lx X X BYLEX|ZRANDMEMBER K 1000 WITHSCORES|TYPE K|DEL K|\
    SADD st M|SET str M";
const KEYS: &str = "z1 z2 z3 {t}a {t}b {t}c st str";
const MEMBERS: &str =
    r#"a b c d e f g h i j k aa ab abc "" x\x20y \x00\xff 007 -0 1.5 longmember-0123456789"#;
const SCORES: &str = "0 1 2 3 -1 1.5 -2.25 0.1 1e20 -0 inf -inf 3.0 100 7 x";
const RANGES: &str = "0 1 (1 2 (2 5 -1 (0 inf -inf +inf (inf 1.5 x (";
const INDEXES: &str = "0 1 2 -1 -2 5 10 -100 x";
const LEX: &str = "- + [a (a [b (c [abc [\"\" x";

fn gen(r: &mut Rng) -> Vec<Vec<u8>> {
    let mut c = Vec::new();
    for w in r.template(TEMPLATES) {
        match w {
            "K" => c.push(r.word(KEYS)),
            "M" => c.push(r.word(MEMBERS)),
            "S" => c.push(r.word(SCORES)),
            "R" => c.push(r.word(RANGES)),
            "N" => c.push(r.word(INDEXES)),
            "P" => c.push(r.word("1 2 5 0 -1")),
            "A" => c.push(r.word("SUM MIN MAX")),
            "X" => c.push(r.word(LEX)),
            "O" => c.push(r.word("NX XX GT LT CH")),
            // A burst of members, now and then past the listpack limit.
            "B" => {
                for _ in 0..r.below(80) {
                    c.push(r.word(SCORES));
                    c.push(format!("n{}", r.below(200)).into_bytes());
                }
                if c.len() == 2 {
                    c.extend([b"1".to_vec(), b"n0".to_vec()]);
                }
            }
            _ => c.push(w.as_bytes().to_vec()),
        }
    }
    c
}

const STEPS: usize = 2000;
const SEEDS: &[u64] = &[1, 7919, 424_242];

fn random_streams(what: &str, flags: &[&str]) {
    each_pair(what, flags, SEEDS, |p, seed| {
        let mut r = Rng(seed);
        for _ in 0..STEPS {
            p.send(&gen(&mut r));
        }
    });
}

#[test]
fn random_zset_streams_match_redis() {
    random_streams("random stream", &[]);
}

#[test]
fn random_zset_streams_with_small_listpacks_match_redis() {
    random_streams("random stream, small listpacks", SMALL);
}

// ---------------------------------------------------------------------------------------
// Lex ranges over members of different scores

/// A lex range end as the commands take it.
fn lex_end(r: &mut Rng) -> String {
    let letters = "a b c d e f g h i j k l m n o p q r s t u v w x y z";
    match r.below(8) {
        0 => "-".into(),
        1 => "+".into(),
        k => format!(
            "{}{}",
            if k % 2 == 0 { "[" } else { "(" },
            r.pick_word(letters)
        ),
    }
}

/// A sorted set of `n` members (two letters) with scores from `scores`: members of one
/// score mostly share a first-letter band, so lex ranges cut across scores in every way.
fn mixed_zadd(
    r: &mut Rng,
    key: &str,
    n: usize,
    scores: usize,
) -> (Vec<Vec<u8>>, Vec<(i64, String)>) {
    let mut cmd = words(&format!("ZADD {key}"));
    let mut model = std::collections::BTreeMap::new();
    for _ in 0..n {
        let first = (b'a' + r.below(26) as u8) as char;
        let second = (b'a' + r.below(26) as u8) as char;
        let band = (first as usize - 'a' as usize) * scores / 26;
        // One member in five breaks its band's score.
        let score = if r.below(5) == 0 {
            r.below(scores)
        } else {
            scores - 1 - band
        } as i64;
        let m = format!("{first}{second}");
        cmd.push(score.to_string().into_bytes());
        cmd.push(m.clone().into_bytes());
        model.insert(m, score);
    }
    let mut elems: Vec<(i64, String)> = model.into_iter().map(|(m, s)| (s, m)).collect();
    elems.sort();
    (cmd, elems)
}

fn gte_min(min: &str, m: &str) -> bool {
    match min.split_at(1) {
        ("-", _) => true,
        ("+", _) => false,
        ("[", x) => m >= x,
        (_, x) => m > x,
    }
}

fn lte_max(max: &str, m: &str) -> bool {
    match max.split_at(1) {
        ("-", _) => false,
        ("+", _) => true,
        ("[", x) => m <= x,
        (_, x) => m < x,
    }
}

/// Whether every skip list finds the same starts for `min`/`max` in `elems` (in score
/// order): one member past `min` right after one that is not (or first), and one member
/// before `max` right before one that is not (or last). Redis's skip list lands on one of
/// them by its random levels, so only such ranges have one answer.
fn one_boundary_each(elems: &[(i64, String)], min: &str, max: &str) -> bool {
    let g: Vec<bool> = elems.iter().map(|(_, m)| gte_min(min, m)).collect();
    let l: Vec<bool> = elems.iter().map(|(_, m)| lte_max(max, m)).collect();
    let starts = (0..g.len())
        .filter(|&i| g[i] && (i == 0 || !g[i - 1]))
        .count();
    let ends = (0..l.len())
        .filter(|&i| l[i] && (i + 1 == l.len() || !l[i + 1]))
        .count();
    starts <= 1 && ends <= 1
}

/// The lex commands over `key`, with range `min`/`max` (`lo`/`hi` for the REV forms).
fn lex_queries(r: &mut Rng, key: &str, min: &str, max: &str) -> Vec<String> {
    let (off, count) = (r.below(4) as i64 - 1, r.below(5) as i64 - 1);
    vec![
        format!("ZRANGEBYLEX {key} {min} {max}"),
        format!("ZRANGEBYLEX {key} {min} {max} LIMIT {off} {count}"),
        format!("ZREVRANGEBYLEX {key} {max} {min}"),
        format!("ZREVRANGEBYLEX {key} {max} {min} LIMIT {off} {count}"),
        format!("ZLEXCOUNT {key} {min} {max}"),
        format!("ZRANGE {key} {min} {max} BYLEX LIMIT {off} {count}"),
        format!("ZRANGE {key} {max} {min} BYLEX REV"),
        format!("ZRANGESTORE dst {key} {max} {min} BYLEX REV LIMIT {off} {count}"),
        "ZRANGE dst 0 -1 WITHSCORES".into(),
    ]
}

/// Listpack sets (up to 20 members, scores 0–2): every lex command answers as Redis's
/// listpack walk does, whatever the range; ZREMRANGEBYLEX on a copy each time.
#[test]
fn lex_ranges_over_mixed_scores_in_listpacks_match_redis() {
    each_pair(
        "lex over mixed scores, listpack",
        &[],
        &[3, 17],
        |p, seed| {
            let mut r = Rng(seed);
            for _ in 0..30 {
                p.send(&words("DEL z"));
                let n = 1 + r.below(20);
                let (zadd, _) = mixed_zadd(&mut r, "z", n, 3);
                p.send(&zadd);
                p.send(&words("ZRANGE z 0 -1 WITHSCORES"));
                for _ in 0..15 {
                    let (min, max) = (lex_end(&mut r), lex_end(&mut r));
                    for q in lex_queries(&mut r, "z", &min, &max) {
                        p.send(&words(&q));
                    }
                    p.send(&words("ZUNIONSTORE c 1 z"));
                    p.send(&words(&format!("ZREMRANGEBYLEX c {min} {max}")));
                    p.send(&words("ZRANGE c 0 -1 WITHSCORES"));
                }
            }
        },
    );
}

/// Skip-list sets (300 members, scores 0–4): the lex commands answer as Redis's for every
/// range with one answer (see [`one_boundary_each`]); the others are skipped, and counted
/// so the test shows it compared enough.
#[test]
fn lex_ranges_over_mixed_scores_in_skiplists_match_redis() {
    each_pair("lex over mixed scores, skiplist", &[], &[5], |p, seed| {
        let mut r = Rng(seed);
        let mut compared = 0;
        for _ in 0..6 {
            p.send(&words("DEL z"));
            let (zadd, elems) = mixed_zadd(&mut r, "z", 300, 5);
            p.send(&zadd);
            for _ in 0..200 {
                let (min, max) = (lex_end(&mut r), lex_end(&mut r));
                if !one_boundary_each(&elems, &min, &max) {
                    continue;
                }
                compared += 1;
                for q in lex_queries(&mut r, "z", &min, &max) {
                    p.send(&words(&q));
                }
                p.send(&words("ZUNIONSTORE c 1 z"));
                p.send(&words(&format!("ZREMRANGEBYLEX c {min} {max}")));
                p.send(&words("ZRANGE c 0 -1 WITHSCORES"));
            }
        }
        assert!(
            compared >= 60,
            "{}: only {compared} ranges compared",
            p.0.what
        );
    });
}
