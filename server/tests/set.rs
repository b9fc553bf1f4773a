//! Differential tests of the set commands (SADD … SSCAN): the same commands go to a real
//! `redis-server` (7.0, the spec) and to percore with 1 and with 3 shards, over RESP2 and
//! RESP3. Skipped with a loud message when redis-server is absent; PERCORE_REQUIRE_REDIS=1
//! (CI) turns the skip into a failure.
//!
//! Replies must be identical byte for byte, except:
//! - where Redis leaves the order open: SMEMBERS of a `hashtable` set, SINTER, SUNION and
//!   SDIFF are compared as multisets (same reply type and length). An `intset` answers
//!   SMEMBERS and SSCAN in ascending numeric order, and percore must too.
//! - SPOP and SRANDMEMBER pick at random: errors must match; other replies must have Redis's
//!   type and length and hold members of the set (distinct ones for SPOP and for a positive
//!   count), and both servers must then hold sets of the same size. Redis pops from a copy of
//!   the key, and the key itself loses by SREM what percore popped, so the servers stay equal.
//!   (Redis 7.0's own SPOP with a count may rebuild a `hashtable` set from a random member as
//!   an `intset`; percore never converts back, and the encodings are compared after the SREM.)
//! - SSCAN of a `hashtable` set: the first pages must be of the same kind, and full scans from
//!   cursor 0 with the same options must return the same members on both servers.
//!
//! After every write both servers must report the same OBJECT ENCODING for the keys written.

mod common;

use common::{each_differential_run, esc, show, words, Diff, Rng};
use percore_proto::encode::{split_array_reply, split_bulks};
use std::collections::BTreeSet;

/// A 5th integer member converts an intset: percore takes it as a flag, Redis by CONFIG SET.
const SMALL: &[&str] = &["--set-max-intset-entries", "4"];

/// SINTERCARD's answer to a numkeys that is no positive integer.
const NUMKEYS: &str = "-ERR numkeys should be greater than 0";

/// A table expectation standing for "ERR wrong number of arguments for '<command>' command".
const ARITY: &str = "arity";
const INTSET: &[u8] = b"$6\r\nintset\r\n";
const HASHTABLE: &[u8] = b"$9\r\nhashtable\r\n";
/// The Redis-side key SPOP draws from (see the module comment); nothing else uses it.
const SCRATCH: &[u8] = b"set-test:spop-copy";
const WT: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value";
const SYNTAX: &str = "-ERR syntax error";
const NOT_INT: &str = "-ERR value is not an integer or out of range";
const POSITIVE: &str = "-ERR value is out of range, must be positive";

/// Commands (see [`words`]) and Redis 7.0's RESP2 reply to each (see [`expected`]), checked
/// against Redis itself in RESP2 runs; an empty expectation means "whatever Redis says".
#[rustfmt::skip]
const TABLE: &[(&str, &str)] = &[
    ("SADD k", ARITY), ("SREM k", ARITY), ("SMEMBERS", ARITY), ("SMEMBERS k k", ARITY),
    ("SISMEMBER k", ARITY), ("SISMEMBER k a b", ARITY), ("SMISMEMBER k", ARITY),
    ("SCARD k k", ARITY), ("SPOP", ARITY), ("SRANDMEMBER", ARITY), ("SPOP k 1 2", SYNTAX),
    ("SRANDMEMBER k 1 2", SYNTAX), ("SMOVE a b", ARITY), ("SMOVE a b c d", ARITY),
    ("SINTER", ARITY), ("SINTERCARD 1", ARITY), ("SINTERSTORE d", ARITY), ("SUNION", ARITY),
    ("SUNIONSTORE d", ARITY), ("SDIFF", ARITY), ("SDIFFSTORE d", ARITY), ("SSCAN k", ARITY),
    // A missing key reads as an empty set.
    ("SMEMBERS nokey", "[]"), ("SISMEMBER nokey a", ":0"), ("SMISMEMBER nokey a b", "[:0 :0]"),
    ("SCARD nokey", ":0"), ("SREM nokey a", ":0"), ("SPOP nokey", "nil"), ("SPOP nokey 2", "[]"),
    ("SRANDMEMBER nokey", "nil"), ("SRANDMEMBER nokey -2", "[]"), ("SMOVE nokey d a", ":0"),
    ("SINTER nokey", "[]"), ("SUNION nokey nokey2", "[]"), ("SDIFF nokey", "[]"),
    ("SINTERCARD 2 nokey nokey2", ":0"), ("SSCAN nokey 0 COUNT 0", ""), ("EXISTS d", ":0"),
    ("TYPE nokey", "+none"), ("OBJECT ENCODING nokey", "nil"),
    // An intset answers in ascending numeric order.
    ("SADD s 3 1 2 1 10 -5", ":5"), ("SMEMBERS s", "[-5 1 2 3 10]"), ("TYPE s", "+set"),
    ("OBJECT ENCODING s", "$intset"), ("EXISTS s", ":1"), ("SCARD s", ":5"), ("SADD s 2 3", ":0"),
    ("SISMEMBER s 2", ":1"), ("SISMEMBER s 02", ":0"), ("SISMEMBER s x", ":0"),
    ("SMISMEMBER s 1 x 10 01 1", "[:1 :0 :1 :0 :1]"),
    ("SADD s 9223372036854775807 -9223372036854775808 0", ":3"), ("OBJECT ENCODING s", "$intset"),
    ("SMEMBERS s", "[-9223372036854775808 -5 0 1 2 3 10 9223372036854775807]"),
    ("SREM s 1 1 x 3", ":2"), ("SCARD s", ":6"), ("SSCAN s 0", ""), ("SSCAN s 0 MATCH *0*", ""),
    ("SSCAN s 7 COUNT 1", ""), ("SSCAN s -1", ""),
    ("SSCAN s 18446744073709551616", "-ERR invalid cursor"),
    // What Redis does not read as an integer makes a hashtable.
    ("SADD n1 007", ":1"), ("OBJECT ENCODING n1", "$hashtable"),
    ("SADD n2 +1", ":1"), ("OBJECT ENCODING n2", "$hashtable"),
    (r"SADD n3 \x201", ":1"), ("OBJECT ENCODING n3", "$hashtable"),
    (r"SADD n4 1\x20", ":1"), ("OBJECT ENCODING n4", "$hashtable"),
    ("SADD n5 9223372036854775808", ":1"), ("OBJECT ENCODING n5", "$hashtable"),
    ("SADD n6 -9223372036854775809", ":1"), ("OBJECT ENCODING n6", "$hashtable"),
    ("SADD n7 -0", ":1"), ("OBJECT ENCODING n7", "$hashtable"),
    ("SADD n8 1.0 0x10 1e3", ":3"), ("OBJECT ENCODING n8", "$hashtable"),
    (r#"SADD n9 """#, ":1"), ("OBJECT ENCODING n9", "$hashtable"),
    // A string member converts an intset; removing it does not convert the set back.
    ("SADD m 5 1 3", ":3"), ("SADD m a", ":1"), ("OBJECT ENCODING m", "$hashtable"),
    ("SISMEMBER m 1", ":1"), ("SISMEMBER m 01", ":0"), ("SREM m a", ":1"),
    ("OBJECT ENCODING m", "$hashtable"), ("SMEMBERS m", "[1 3 5]"), ("SSCAN m 0 MATCH [0-3]", ""),
    // Removing the last member deletes the key; a new one starts as an intset again.
    ("SREM m 1 3 5", ":3"), ("EXISTS m", ":0"), ("TYPE m", "+none"), ("SREM m 1", ":0"),
    ("SADD m 1", ":1"), ("OBJECT ENCODING m", "$intset"),
    // Empty and binary members; member names are case-sensitive, command names are not.
    (r#"SADD b "" \x00\xff\x0d\x0a x\x20y"#, ":3"), (r#"SISMEMBER b """#, ":1"),
    (r"SMISMEMBER b \x00\xff\x0d\x0a x y", "[:1 :0 :0]"),
    ("SMEMBERS b", r#"["" \x00\xff\x0d\x0a x\x20y]"#),
    ("sadd S X", ":1"), ("SISMEMBER S x", ":0"), ("sismember S X", ":1"),
    // SPOP and SRANDMEMBER where chance plays no part, and their errors.
    ("SADD one 7", ":1"), ("SRANDMEMBER one", "$7"), ("SRANDMEMBER one -3", "[7 7 7]"),
    ("SRANDMEMBER one 3", "[7]"), ("SRANDMEMBER one 0", "[]"), ("SPOP one 0", "[]"),
    ("SPOP one", "$7"), ("EXISTS one", ":0"),
    ("SADD two a 1", ":2"), ("SPOP two 9", "[1 a]"), ("EXISTS two", ":0"),
    ("SPOP s -1", POSITIVE), ("SPOP s x", POSITIVE), ("SPOP s 9223372036854775808", POSITIVE),
    ("SPOP nokey -1", POSITIVE), ("SRANDMEMBER s x", NOT_INT), ("SRANDMEMBER s 1.5", NOT_INT),
    ("SRANDMEMBER nokey x", NOT_INT),
    ("SRANDMEMBER s -9223372036854775808",
     "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"),
    ("SADD r 1 2 3 4 a b", ":6"), ("SRANDMEMBER r", ""), ("SRANDMEMBER r 2", ""),
    ("SRANDMEMBER r 9", ""), ("SRANDMEMBER r -20", ""), ("SPOP r", ""), ("SPOP r 2", ""),
    ("SCARD r", ":3"), ("SPOP r 3", ""), ("EXISTS r", ":0"),
    // SMOVE: the destination's encoding follows the member; an emptied source is deleted.
    ("SADD src 1 2 x", ":3"), ("SMOVE src dst 1", ":1"), ("OBJECT ENCODING dst", "$intset"),
    ("SMOVE src dst x", ":1"), ("OBJECT ENCODING dst", "$hashtable"), ("SMOVE src dst 9", ":0"),
    ("SMOVE src src 2", ":1"), ("SMOVE src src 9", ":0"), ("SADD {t}d 2", ":1"),
    ("SMOVE src {t}d 2", ":1"), ("EXISTS src", ":0"), ("SMOVE {t}d dst 2", ":1"),
    ("SMEMBERS dst", "[1 2 x]"), ("SET str v", "+OK"), ("SMOVE nokey str a", ":0"),
    ("SMOVE dst str 1", WT), ("SMOVE str dst 1", WT),
    // Set algebra on one shard (a shared hash tag) …
    ("SADD {t}a 1 2 3 4", ":4"), ("SADD {t}b 3 4 5 x", ":4"), ("SADD {t}c 4 x y", ":3"),
    ("SINTER {t}a {t}b", "[3 4]"), ("SINTER {t}a {t}b {t}c", "[4]"), ("SINTER {t}a", "[1 2 3 4]"),
    ("SINTER {t}a {t}b nokey", "[]"), ("SUNION {t}a {t}b", "[1 2 3 4 5 x]"),
    ("SUNION nokey {t}c", "[4 x y]"), ("SDIFF {t}a {t}b", "[1 2]"), ("SDIFF {t}b {t}a {t}c", "[5]"),
    ("SDIFF {t}a nokey", "[1 2 3 4]"), ("SDIFF nokey {t}a", "[]"), ("SDIFF {t}a {t}a", "[]"),
    ("SINTERCARD 2 {t}a {t}b", ":2"), ("SINTERCARD 3 {t}a {t}b {t}c LIMIT 5", ":1"),
    ("SINTERCARD 2 {t}a {t}b limit 1", ":1"), ("SINTERCARD 1 {t}a LIMIT 0", ":4"),
    ("SINTERCARD 1 {t}a LIMIT 1 LIMIT 3", ":3"), ("SINTERCARD 2 {t}a nokey", ":0"),
    ("SINTERSTORE {t}d {t}b {t}c", ":2"), ("OBJECT ENCODING {t}d", "$hashtable"),
    ("SINTERSTORE {t}d {t}b {t}a", ":2"), ("OBJECT ENCODING {t}d", "$intset"),
    ("SMEMBERS {t}d", "[3 4]"), ("SUNIONSTORE {t}d {t}a {t}d", ":4"),
    ("SDIFFSTORE {t}d nokey {t}a", ":0"), ("EXISTS {t}d", ":0"),
    // … and across shards (plain names, which three shards spread out).
    ("SADD pa 1 2 3 4", ":4"), ("SADD pb 3 4 5 x", ":4"), ("SADD pc 4 x y", ":3"),
    ("SINTER pa pb pc", "[4]"), ("SINTER pa {t}b", "[3 4]"), ("SUNION pa pb pc", "[1 2 3 4 5 x y]"),
    ("SDIFF pb pa pc", "[5]"), ("SDIFF {t}c pa", "[x y]"), ("SINTERCARD 3 pa pb pc", ":1"),
    ("SINTERCARD 2 pa pb LIMIT 1", ":1"), ("SINTERSTORE pd pa pb", ":2"),
    ("OBJECT ENCODING pd", "$intset"), ("SUNIONSTORE pd pa pc", ":6"),
    ("OBJECT ENCODING pd", "$hashtable"), ("SMEMBERS pd", "[1 2 3 4 x y]"),
    ("SDIFFSTORE pd pb pc", ":2"), ("SMEMBERS pd", "[3 5]"), ("OBJECT ENCODING pd", "$intset"),
    ("SINTERSTORE pd pa nokey", ":0"), ("EXISTS pd", ":0"), ("SUNIONSTORE pd pb", ":4"),
    ("SDIFFSTORE pd pa pa", ":0"), ("EXISTS pd", ":0"), ("SUNIONSTORE pa pa pc", ":6"),
    ("SUNIONSTORE {t}e pa {t}b", ":7"),
    // A store replaces a key of another type; an empty result deletes it.
    ("SUNIONSTORE str {t}a", ":4"), ("TYPE str", "+set"), ("SET str v", "+OK"),
    ("SINTERSTORE str nokey", ":0"), ("EXISTS str", ":0"),
    // SINTERCARD's and SSCAN's errors, in Redis's order.
    ("SINTERCARD 0 pa", NUMKEYS), ("SINTERCARD -1 pa", NUMKEYS), ("SINTERCARD x pa", NUMKEYS),
    ("SINTERCARD 9223372036854775808 pa", NUMKEYS), ("SINTERCARD 1 pa LIMIT", SYNTAX),
    ("SINTERCARD 3 pa pb", "-ERR Number of keys can't be greater than number of args"),
    ("SINTERCARD 1 pa LIMIT -1", "-ERR LIMIT can't be negative"), ("SINTERCARD 1 pa pb", SYNTAX),
    ("SINTERCARD 1 pa LIMIT x", "-ERR LIMIT can't be negative"), ("SINTERCARD 1 pa FOO 1", SYNTAX),
    ("SSCAN pa x", "-ERR invalid cursor"), ("SSCAN pa 0 COUNT 0", SYNTAX),
    ("SSCAN pa 0 COUNT x", NOT_INT), ("SSCAN pa 0 MATCH", SYNTAX),
    ("SSCAN pa 0 TYPE string", SYNTAX),
    // WRONGTYPE both ways, whichever key of several holds the string.
    ("SET str v", "+OK"), ("SADD str a", WT), ("SREM str a", WT), ("SMEMBERS str", WT),
    ("SISMEMBER str a", WT), ("SMISMEMBER str a", WT), ("SCARD str", WT), ("SPOP str", WT),
    ("SPOP str 1", WT), ("SPOP str -1", POSITIVE), ("SRANDMEMBER str", WT),
    ("SRANDMEMBER str 1", WT), ("SRANDMEMBER str x", NOT_INT), ("SINTER str", WT),
    ("SINTER pa str", WT), ("SINTER nokey str", WT), ("SUNION pb str", WT),
    ("SDIFF nokey str", WT), ("SDIFF str pa", WT), ("SINTERSTORE d pa str", WT),
    ("SUNIONSTORE d str", WT), ("SDIFFSTORE d pa str", WT), ("SINTERCARD 2 nokey str", WT),
    ("SSCAN str 0", WT), ("SSCAN str x", "-ERR invalid cursor"), ("EXISTS d", ":0"), ("GET pa", WT),
    ("APPEND pa x", WT), ("INCR pa", WT), ("HSET pa f v", WT), ("HGET pa f", WT),
    ("TYPE pa", "+set"), ("TYPE str", "+string"), ("DEL pa str nokey", ":2"),
    ("EXISTS pa str", ":0"),
];

/// Conversion to `hashtable` under the [`SMALL`] threshold, and never back.
#[rustfmt::skip]
const CONVERSIONS: &[(&str, &str)] = &[
    ("CONFIG GET set-max-intset-entries", "[set-max-intset-entries 4]"),
    ("SADD i 1 2 3 4", ":4"), ("OBJECT ENCODING i", "$intset"), ("SADD i 4 3", ":0"),
    ("SMEMBERS i", "[1 2 3 4]"), ("SADD i 5", ":1"), ("OBJECT ENCODING i", "$hashtable"),
    ("SREM i 5 4", ":2"), ("OBJECT ENCODING i", "$hashtable"), ("SMEMBERS i", "[1 2 3]"),
    ("SPOP i 2", ""), ("OBJECT ENCODING i", "$hashtable"), ("SPOP i", ""), ("EXISTS i", ":0"),
    ("SADD j 5 4 3 2 1", ":5"), ("OBJECT ENCODING j", "$hashtable"),
    ("SADD k 2 2 1 1 3 3 4", ":4"), ("OBJECT ENCODING k", "$intset"),
    ("SMOVE j k 5", ":1"), ("OBJECT ENCODING k", "$hashtable"),
    ("SMOVE k m 1", ":1"), ("OBJECT ENCODING m", "$intset"),
    ("SADD a 1 2 3", ":3"), ("SADD b 3 4 5", ":3"),
    ("SUNIONSTORE u a b", ":5"), ("OBJECT ENCODING u", "$hashtable"),
    ("SINTERSTORE u a b", ":1"), ("OBJECT ENCODING u", "$intset"),
    ("SDIFFSTORE u j a", ":1"), ("OBJECT ENCODING u", "$intset"),
    ("SADD big 1 2 3 4 5 6 7 8", ":8"),
    ("SINTERSTORE u big big", ":8"), ("OBJECT ENCODING u", "$hashtable"),
    ("SDIFFSTORE u big a", ":5"), ("OBJECT ENCODING u", "$hashtable"),
    ("SDIFFSTORE u big k", ":4"), ("OBJECT ENCODING u", "$intset"), ("SMEMBERS u", "[1 6 7 8]"),
    ("SUNIONSTORE {x}u {x}v a", ":3"), ("OBJECT ENCODING {x}u", "$intset"),
];

/// Redis's RESP2 reply in the tables' shorthand: `nil`, `$word` (a bulk string), `[…]` (an
/// array of words as bulk strings, `:n` an integer, `nil` a null), [`ARITY`] for `line`'s
/// arity error, or an integer, status or error line as it is.
fn expected(line: &str, e: &str) -> Vec<u8> {
    let item = |w: &[u8]| match w {
        b"nil" => b"$-1\r\n".to_vec(),
        [b':', ..] => [w, b"\r\n"].concat(),
        _ => [format!("${}\r\n", w.len()).as_bytes(), w, b"\r\n"].concat(),
    };
    match e.split_at(e.len().min(1)) {
        _ if e == ARITY => {
            let name = line.split(' ').next().unwrap().to_lowercase();
            format!("-ERR wrong number of arguments for '{name}' command\r\n").into_bytes()
        }
        ("[", list) => {
            let list = list.strip_suffix(']').unwrap();
            let items: Vec<Vec<u8>> = list.split_whitespace().flat_map(words).collect();
            let head = format!("*{}\r\n", items.len()).into_bytes();
            items.iter().fold(head, |out, w| [out, item(w)].concat())
        }
        ("$", w) => item(&words(w).concat()),
        _ if e == "nil" => item(b"nil"),
        _ => format!("{e}\r\n").into_bytes(),
    }
}

/// An array or (RESP3) set reply of bulk strings: its header line and its elements.
fn elements(reply: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let (b'*' | b'~', rest) = reply.split_first()? else {
        return None;
    };
    let flat = [b"*", rest].concat();
    let (n, body) = split_array_reply(&flat)?;
    let mut raw = Vec::new();
    split_bulks(body, n, &mut raw)?;
    let mut items = Vec::new();
    for b in &raw {
        let start = b.iter().position(|&c| c == b'\n')? + 1;
        items.push(b.get(start..b.len() - 2)?.to_vec());
    }
    let used: usize = raw.iter().map(|b| b.len()).sum();
    (used == body.len()).then(|| (reply[..reply.len() - body.len()].to_vec(), items))
}

/// A reply with its elements sorted, if it is an array or set of bulk strings.
fn canon(reply: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let Some((head, mut items)) = elements(reply) else {
        return (reply.to_vec(), Vec::new());
    };
    items.sort();
    (head, items)
}

/// An SSCAN reply's cursor and members.
fn scan_page(reply: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let (2, body) = split_array_reply(reply)? else {
        return None;
    };
    let mut cursor = Vec::new();
    split_bulks(body, 1, &mut cursor)?;
    let mut c = elements(&[b"*1\r\n", cursor[0]].concat())?.1;
    Some((c.pop()?, elements(&body[cursor[0].len()..])?.1))
}

/// Redis and percore (see [`Diff`]), and how far a run has come.
struct Pair {
    d: Diff,
    step: usize,
    /// False when the last reply's order is Redis's chance or table order.
    ordered: bool,
}

impl Pair {
    fn fail(&self, cmd: &str, replies: [String; 2], why: &str) -> ! {
        let why = format!("step {}: {why} for `{cmd}`", self.step);
        self.d.fail_shown(&why, replies)
    }

    /// Sends `args` to both servers and returns Redis's reply, which `agree` judges with
    /// percore's.
    fn check(&mut self, args: &[Vec<u8>], agree: impl Fn(&[u8], &[u8]) -> bool) -> Vec<u8> {
        let [w, g] = self.d.both(args);
        if !agree(&w, &g) {
            self.fail(&show(args), [esc(&w), esc(&g)], "replies differ");
        }
        w
    }

    /// Both servers' OBJECT ENCODING of `key`, which must be the same; Redis's.
    fn encoding(&mut self, key: &[u8]) -> Vec<u8> {
        let args = [&b"OBJECT"[..], b"ENCODING", key].map(<[u8]>::to_vec);
        self.check(&args, |w, g| w == g)
    }

    /// One command to both servers, compared as the module comment says; Redis's reply.
    fn send(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        self.step += 1;
        self.ordered = true;
        let name = String::from_utf8_lossy(&args[0]).to_uppercase();
        let key = args.get(1).cloned().unwrap_or_default();
        let want = match (name.as_str(), args.len()) {
            ("SPOP" | "SRANDMEMBER", 2 | 3) => self.pick(args, name == "SPOP"),
            ("SSCAN", 3..) if self.encoding(&key) == HASHTABLE => self.scan(args),
            ("SMEMBERS", 2) if self.encoding(&key) == INTSET => self.check(args, |w, g| w == g),
            ("SMEMBERS" | "SINTER" | "SUNION" | "SDIFF", _) => {
                self.ordered = false;
                self.check(args, |w, g| canon(w) == canon(g))
            }
            _ => self.check(args, |w, g| w == g),
        };
        let written = match name.as_str() {
            "SMOVE" => 1..3,
            "SADD" | "SREM" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" => 1..2,
            "DEL" | "SET" | "APPEND" | "INCR" => 1..2,
            _ => 0..0,
        };
        for k in args.get(written).unwrap_or_default() {
            self.encoding(k);
        }
        want
    }

    /// SPOP or SRANDMEMBER with a key and perhaps a count (see the module comment).
    fn pick(&mut self, args: &[Vec<u8>], pop: bool) -> Vec<u8> {
        let cmd = show(args);
        self.d.log.push(cmd.clone());
        self.ordered = args.len() == 2;
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let [redis, percore] = &mut self.d.c;
        let w = if pop {
            let copy: [&[u8]; 4] = [b"COPY", refs[1], SCRATCH, b"REPLACE"];
            assert_eq!(redis.cmd(&copy)[0], b':', "Redis: COPY");
            let w = redis.cmd(&[&[refs[0], SCRATCH], &refs[2..]].concat());
            redis.cmd(&[b"DEL", SCRATCH]);
            w
        } else {
            redis.cmd(&refs)
        };
        let g = percore.cmd(&refs);
        let bulk = |r: &[u8]| r[0] == b'$' && r[1] != b'-';
        let picked = match (elements(&w), elements(&g)) {
            _ if args.len() == 2 && bulk(&w) && bulk(&g) => {
                elements(&[b"*1\r\n", &g[..]].concat()).map(|e| e.1)
            }
            (Some((hw, _)), Some((hg, items))) if hw == hg && args.len() == 3 => Some(items),
            (None, _) if w == g => Some(Vec::new()),
            _ => None,
        };
        let replies = [esc(&w), esc(&g)];
        let Some(picked) = picked else {
            self.fail(&cmd, replies, "replies differ in kind or length")
        };
        let distinct = picked.iter().collect::<BTreeSet<_>>().len() == picked.len();
        if !distinct && (pop || !args[2].starts_with(b"-")) {
            self.fail(&cmd, replies, "percore repeats a member");
        }
        if !picked.is_empty() {
            // On Redis's key: what percore popped is removed, what it drew must be there.
            let verb: &[u8] = if pop { b"SREM" } else { b"SMISMEMBER" };
            let mut by = vec![verb, refs[1]];
            by.extend(picked.iter().map(Vec::as_slice));
            let r = self.d.c[0].cmd(&by);
            let n = picked.len();
            let want = match pop {
                true => format!(":{n}\r\n"),
                false => format!("*{n}\r\n{}", ":1\r\n".repeat(n)),
            };
            let by: Vec<Vec<u8>> = by.iter().map(|a| a.to_vec()).collect();
            self.d
                .log
                .push(format!("{} (Redis only: {})", show(&by), esc(&r)));
            if r != want.as_bytes() {
                self.fail(&cmd, replies, "percore picked what the set does not hold");
            }
        }
        self.check(&[b"SCARD".to_vec(), args[1].clone()], |w, g| w == g);
        if pop {
            self.encoding(&args[1]);
        }
        w
    }

    /// SSCAN of a hashtable set: first pages of the same kind, the same members in full scans.
    fn scan(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        self.ordered = false;
        let w = self.check(args, |w, g| match w[0] {
            b'-' => w == g,
            _ => scan_page(w).is_some() && scan_page(g).is_some(),
        });
        if w[0] == b'*' {
            let [redis, percore] = [0, 1].map(|side| self.scan_all(side, args));
            if redis != percore {
                let only = |a: &BTreeSet<_>, b| {
                    format!("[{}]", show(&a.difference(b).cloned().collect::<Vec<_>>()))
                };
                let replies = [only(&redis, &percore), only(&percore, &redis)];
                self.fail(
                    &show(args),
                    replies,
                    "full scans differ (what only one found)",
                );
            }
        }
        w
    }

    /// What a full SSCAN from cursor 0 with `args`' options returns on one side (0: Redis).
    fn scan_all(&mut self, side: usize, args: &[Vec<u8>]) -> BTreeSet<Vec<u8>> {
        let mut a = args.to_vec();
        a[2] = b"0".to_vec();
        let mut seen = BTreeSet::new();
        for _ in 0..100_000 {
            let r = self.d.c[side].cmd(&a.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let Some((cursor, members)) = scan_page(&r) else {
                let mut replies = [String::new(), String::new()];
                replies[side] = esc(&r);
                self.fail(&show(&a), replies, "not an SSCAN reply")
            };
            seen.extend(members);
            if cursor == b"0" {
                return seen;
            }
            a[2] = cursor;
        }
        self.fail(&show(args), Default::default(), "a full scan never ended")
    }

    /// Runs a table; with `check` (RESP2), Redis's replies must also be the table's.
    fn table(&mut self, rows: &[(&str, &str)], check: bool) {
        for &(line, expect) in rows {
            let got = self.send(&words(line));
            let e = expected(line, expect);
            let right = match self.ordered {
                true => got == e,
                false => canon(&got) == canon(&e),
            };
            let (what, redis, table) = (&self.d.what, esc(&got), esc(&e));
            let why = format!("Redis 7.0 answers {redis}, not {table} as the table says");
            assert!(
                !check || expect.is_empty() || right,
                "{what}: `{line}`: {why}"
            );
        }
    }
}

/// Runs `f` on a fresh pair of connections to emptied servers for each percore, protocol
/// (the flag: RESP3) and seed (one run, seed 0 unnamed, when there are none).
fn each_pair(what: &str, flags: &[&str], seeds: &[u64], mut f: impl FnMut(&mut Pair, bool, u64)) {
    let what = format!("set differential tests, {what}");
    each_differential_run(&what, flags, seeds, |redis, percore, resp3, seed, label| {
        let d = Diff::new(redis, percore, resp3, label);
        let mut p = Pair {
            d,
            step: 0,
            ordered: true,
        };
        f(&mut p, resp3, seed)
    });
}

#[test]
fn set_commands_match_redis() {
    each_pair("table", &[], &[], |p, resp3, _| p.table(TABLE, !resp3));
}

#[test]
fn set_encoding_conversions_match_redis() {
    each_pair("conversions", SMALL, &[], |p, resp3, _| {
        p.table(CONVERSIONS, !resp3)
    });
}

/// Random commands: one of these templates (the more copies, the likelier), with each
/// one-letter word replaced by a random one of its kind (see [`gen`]).
const TEMPLATES: &str = "SADD K M|SADD K M M|SADD K M M M M|SADD K I|SADD K I|SREM K M|\
    SREM K M M M|SMEMBERS K|SCARD K|SISMEMBER K M|SMISMEMBER K M M M|SPOP K|SPOP K P|SPOP K P|\
    SRANDMEMBER K|SRANDMEMBER K R|SRANDMEMBER K R|SMOVE K K M|SINTER K K|SUNION K K K|SDIFF K K|\
    SINTER K|SINTERSTORE K K K|SUNIONSTORE K K|SDIFFSTORE K K K K|SINTERCARD 2 K K|\
    SINTERCARD Z K K|SINTERCARD 1 K LIMIT L|SINTERCARD 3 K K K LIMIT L|SSCAN K C|\
    SSCAN K C MATCH G|SSCAN K C COUNT N|SSCAN K C MATCH G COUNT N|TYPE K|EXISTS K|\
    OBJECT ENCODING K|DEL K|SET str M|SET str M|APPEND str M|DEL str|SPOP|SINTERCARD 1|SSCAN K";
/// Plain names (spread over shards), names sharing a hash tag, and `str`, often a string.
const KEYS: &str = "s1 s2 s3 {t}a {t}b {t}c str";
/// Members that are no integers to Redis, or integers at the edges of its range.
const ODD: &str = concat!(
    r#"007 +5 -0 1.5 x a b "" x\x20y \x00\xff\x0d\x0a 9223372036854775807"#,
    " -9223372036854775808 9223372036854775808",
);

/// One random command from [`TEMPLATES`].
fn gen(r: &mut Rng) -> Vec<Vec<u8>> {
    let mut c = Vec::new();
    for w in r.template(TEMPLATES) {
        match w {
            "K" => c.push(r.word(KEYS)),
            "M" if r.below(4) == 0 => c.push(r.word(ODD)),
            "M" => c.push((r.below(16) as i64 - 4).to_string().into_bytes()),
            // Enough integers, now and then, to pass 512 members.
            "I" => c.extend((0..150).map(|_| r.below(5000).to_string().into_bytes())),
            "P" => c.push(r.word("0 1 2 3 5 20 1000 -1 x")),
            "R" => c.push(r.word("0 1 2 5 50 1000 -1 -3 -40 x")),
            "L" => c.push(r.word("0 1 2 5 -1")),
            "Z" => c.push(r.word("0 -1 x 3")),
            "C" => c.push(r.word("0 0 0 7 x")),
            "G" => c.push(r.word("* 1* *a* [0-5] ?")),
            "N" => c.push(r.word("1 5 100 0")),
            _ => c.push(w.as_bytes().to_vec()),
        }
    }
    c
}

const STEPS: usize = 2500;
const SEEDS: &[u64] = &[1, 7919, 0x9E37_79B9_7F4A_7C15, 424_242];

fn random_streams(what: &str, flags: &[&str]) {
    each_pair(what, flags, SEEDS, |p, _, seed| {
        let mut r = Rng(seed);
        for _ in 0..STEPS {
            p.send(&gen(&mut r));
        }
    });
}

#[test]
fn random_set_streams_match_redis() {
    random_streams("random stream", &[]);
}

#[test]
fn random_set_streams_with_small_intsets_match_redis() {
    random_streams("random stream, small intsets", SMALL);
}

/// SPOP, SRANDMEMBER, SMEMBERS and full SSCANs on sets of every kind and size (small and
/// large intsets, hashtables by a string member and by size), where a 513th integer
/// converts an intset under the default threshold.
#[test]
fn random_picks_and_scans_keep_redis_guarantees() {
    each_pair("picks and scans", &[], &[], |p, _, _| {
        let fill = |p: &mut Pair, key: &str, members: Vec<String>| {
            for chunk in members.chunks(100) {
                p.send(&words(&format!("SADD {key} {}", chunk.join(" "))));
            }
            p.encoding(key.as_bytes())
        };
        let ints = |n: i64, step: i64| (0..n).map(|i| (i * step - 40).to_string()).collect();
        assert_eq!(fill(p, "edge", ints(512, 1)), INTSET, "{}", p.d.what);
        assert_eq!(fill(p, "edge", ints(513, 1)), HASHTABLE, "{}", p.d.what);
        let strings = "a b c d e".split(' ').map(String::from).collect();
        let sets = [("small", ints(5, 3)), ("strings", strings)];
        let sets = sets
            .into_iter()
            .chain([("large", ints(400, 7)), ("wide", ints(1500, 1))]);
        for (key, members) in sets {
            fill(p, key, members);
            p.send(&words(&format!("SMEMBERS {key}")));
            for opts in ["COUNT 1", "COUNT 10", "COUNT 1000", "MATCH 1* COUNT 3"] {
                p.send(&words(&format!("SSCAN {key} 0 {opts}")));
            }
            for count in ["", " 1", " 3", " -7", " 0", " 200", " 5000", " -2000"] {
                p.send(&words(&format!("SRANDMEMBER {key}{count}")));
            }
            for count in ["", " 1", " 3", " 200", " 5000"] {
                p.send(&words(&format!("SPOP {key}{count}")));
                p.send(&words(&format!("SMEMBERS {key}")));
            }
            let exists = format!("EXISTS {key}");
            p.table(&[(&exists, ":0")], true);
        }
    });
}
