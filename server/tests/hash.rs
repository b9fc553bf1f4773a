//! Differential tests of the hash commands (HSET … HSCAN): the same commands go to a
//! real `redis-server` (7.0, the spec) and to percore with 1 and with 3 shards, and every
//! reply must be byte-for-byte identical. Skipped with a loud message when redis-server is
//! absent; PERCORE_REQUIRE_REDIS=1 (CI) turns the skip into a failure.
//!
//! A `hashtable` hash replies to HGETALL, HKEYS and HVALS in its table's order, which two
//! servers need not share: those replies are compared as multisets (HGETALL: of field/value
//! pairs) when both servers report that encoding just before. A `listpack` hash keeps
//! insertion order, and percore must keep it too. After every write both servers must report
//! the same OBJECT ENCODING for the key.

mod common;

use common::{each_differential_run, esc, s, Client, Server};
use percore_proto::encode::{split_array_reply, split_bulks};

/// Thresholds small enough that a 5th field or a 9-byte string converts a hash to
/// `hashtable`: percore takes them as flags, Redis by CONFIG SET (names without the dashes).
const SMALL: &[&str] = &[
    "--hash-max-listpack-entries",
    "4",
    "--hash-max-listpack-value",
    "8",
];

const WT: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INT: &str = "-ERR hash value is not an integer";
const NOT_FLOAT: &str = "-ERR hash value is not a float";
const BAD_INCR: &str = "-ERR value is not an integer or out of range";
const BAD_FLOAT: &str = "-ERR value is not a valid float";
const NAN_INF: &str = "-ERR value is NaN or Infinity";
const OVERFLOW: &str = "-ERR increment or decrement would overflow";
/// Expects "ERR wrong number of arguments for '<command>' command".
const ARITY: &str = "arity";
const HASHTABLE: &[u8] = b"$9\r\nhashtable\r\n";

/// Commands (see [`words`]) and Redis 7.0's RESP2 reply to each (see [`resp2`]), checked
/// against Redis itself on every run; an empty expectation means "whatever Redis says".
const TABLE: &[(&str, &str)] = &[
    ("HSET k f", ARITY),
    ("HSET k f v g", ARITY),
    ("HSET k", ARITY),
    ("HSETNX k f", ARITY),
    ("HMSET k f", ARITY),
    ("HGET k", ARITY),
    ("HMGET k", ARITY),
    ("HGETALL", ARITY),
    ("HDEL k", ARITY),
    ("HLEN", ARITY),
    ("HSTRLEN k", ARITY),
    ("HEXISTS k", ARITY),
    ("HKEYS", ARITY),
    ("HVALS", ARITY),
    ("HINCRBY k f", ARITY),
    ("HINCRBY k f 1 2", ARITY),
    ("HINCRBYFLOAT k f", ARITY),
    ("EXISTS k", ":0"),
    // A missing key reads as an empty hash.
    ("HGET nokey f", "nil"),
    ("HMGET nokey a b", "[nil nil]"),
    ("HGETALL nokey", "[]"),
    ("HKEYS nokey", "[]"),
    ("HVALS nokey", "[]"),
    ("HLEN nokey", ":0"),
    ("HSTRLEN nokey f", ":0"),
    ("HEXISTS nokey f", ":0"),
    ("HDEL nokey f", ":0"),
    ("OBJECT ENCODING nokey", "nil"),
    ("TYPE nokey", "+none"),
    // A repeated field counts once and keeps its first place, with the last value.
    ("HSET h a 1 b 2 c 3 a 4", ":3"),
    ("HGETALL h", "[a 4 b 2 c 3]"),
    ("TYPE h", "+hash"),
    ("OBJECT ENCODING h", "$listpack"),
    ("EXISTS h", ":1"),
    ("HMGET h a nope c a", "[4 nil 3 4]"),
    ("HSETNX h a 9", ":0"),
    ("HSETNX h d 9", ":1"),
    ("HMSET h e 5 a 1", "+OK"),
    ("HKEYS h", "[a b c d e]"),
    ("HVALS h", "[1 2 3 9 5]"),
    ("HLEN h", ":5"),
    ("HSTRLEN h a", ":1"),
    ("HSTRLEN h nope", ":0"),
    ("HEXISTS h a", ":1"),
    ("HEXISTS h nope", ":0"),
    ("HDEL h a a b nope", ":2"),
    ("HGETALL h", "[c 3 d 9 e 5]"),
    // Deleting the last field deletes the key.
    ("HDEL h c d e", ":3"),
    ("EXISTS h", ":0"),
    ("TYPE h", "+none"),
    ("HDEL h c", ":0"),
    ("HSETNX n f v", ":1"),
    ("HGETALL n", "[f v]"),
    // Empty strings and binary bytes, as fields and as values.
    (r#"HSET e "" """#, ":1"),
    (r#"HGET e """#, r#"$"""#),
    (r#"HSTRLEN e """#, ":0"),
    (r#"HEXISTS e """#, ":1"),
    ("HGETALL e", r#"["" ""]"#),
    (r"HSET b \x00k\xfe \x00\xff\x0d\x0a", ":1"),
    (r"HGET b \x00k\xfe", r"$\x00\xff\x0d\x0a"),
    (r"HSTRLEN b \x00k\xfe", ":4"),
    ("HKEYS b", r"[\x00k\xfe]"),
    (r"HSET b sp \x201 tr 1\x20", ":2"),
    ("HINCRBY b sp 1", NOT_INT),
    ("HINCRBYFLOAT b sp 1", NOT_FLOAT),
    ("HINCRBYFLOAT b tr 1", NOT_FLOAT),
    // Field names are case-sensitive; command names are not.
    ("hset H F v", ":1"),
    ("HGET H f", "nil"),
    ("HGET H F", "$v"),
    ("HSET m 1 a 2 b 3 c 4 d 5 e 6 f 7 g 8 h 9 i 10 j 1 z", ":10"),
    ("HLEN m", ":10"),
    ("HGET m 1", "$z"),
    ("HGETALL m", "[1 z 2 b 3 c 4 d 5 e 6 f 7 g 8 h 9 i 10 j]"),
    // HINCRBY.
    ("HINCRBY i n 5", ":5"),
    ("HINCRBY i n -7", ":-2"),
    ("HGET i n", "$-2"),
    ("HSET i s v z 007 fl 1.5", ":3"),
    ("HINCRBY i s 1", NOT_INT),
    ("HINCRBY i z 1", NOT_INT),
    ("HINCRBY i fl 1", NOT_INT),
    ("HINCRBY i n x", BAD_INCR),
    ("HINCRBY i n 1.5", BAD_INCR),
    ("HINCRBY i n +1", BAD_INCR),
    (r#"HINCRBY i n """#, BAD_INCR),
    ("HSET i max 9223372036854775807", ":1"),
    ("HINCRBY i max 1", OVERFLOW),
    ("HINCRBY i max 0", ":9223372036854775807"),
    (
        "HINCRBY i min -9223372036854775808",
        ":-9223372036854775808",
    ),
    ("HINCRBY i min -1", OVERFLOW),
    ("HGET i min", "$-9223372036854775808"),
    // HINCRBYFLOAT: Redis's long double arithmetic and its formatting.
    ("HINCRBYFLOAT f a 10.5", "$10.5"),
    ("HINCRBYFLOAT f a 0.1", "$10.6"),
    ("HGET f a", "$10.6"),
    ("HINCRBY f a 1", NOT_INT),
    ("HINCRBYFLOAT f b 5.0e3", "$5000"),
    ("HSET f c 3", ":1"),
    ("HINCRBYFLOAT f c 1.5", "$4.5"),
    ("HINCRBYFLOAT f c -1.5", "$3"),
    ("HINCRBY f c 1", ":4"),
    ("HINCRBYFLOAT f d 3.0e-5", "$0.00003"),
    ("HINCRBYFLOAT f e 1e20", "$100000000000000000000"),
    ("HINCRBYFLOAT f g 0x10", "$16"),
    ("HINCRBYFLOAT f h -0.0", "$0"),
    ("HINCRBYFLOAT f j .5", "$0.5"),
    ("HINCRBYFLOAT f x nan", BAD_FLOAT),
    ("HINCRBYFLOAT f x inf", NAN_INF),
    ("HINCRBYFLOAT f x -inf", NAN_INF),
    ("HINCRBYFLOAT f x abc", BAD_FLOAT),
    (r#"HINCRBYFLOAT f x """#, BAD_FLOAT),
    ("HEXISTS f x", ":0"),
    ("HSET f s v lead 007 max 9223372036854775807", ":3"),
    ("HINCRBYFLOAT f s 1", NOT_FLOAT),
    ("HINCRBYFLOAT f lead 1", "$8"),
    ("HINCRBYFLOAT f max 1", "$9223372036854775808"),
    // WRONGTYPE both ways.
    ("SET str v", "+OK"),
    ("HSET str f v", WT),
    ("HSETNX str f v", WT),
    ("HMSET str f v", WT),
    ("HGET str f", WT),
    ("HMGET str f", WT),
    ("HGETALL str", WT),
    ("HDEL str f", WT),
    ("HLEN str", WT),
    ("HSTRLEN str f", WT),
    ("HEXISTS str f", WT),
    ("HKEYS str", WT),
    ("HVALS str", WT),
    ("HINCRBY str f 1", WT),
    ("HINCRBYFLOAT str f 1", WT),
    ("TYPE str", "+string"),
    ("GET f", WT),
    ("APPEND f x", WT),
    ("INCR f", WT),
    ("TYPE f", "+hash"),
    ("DEL f str nokey", ":2"),
    ("EXISTS f str", ":0"),
    // HRANDFIELD and HSCAN where Redis's answer does not depend on chance or table order:
    // errors in Redis's order, missing keys, and counts covering a listpack whole.
    ("HRANDFIELD", ARITY),
    ("HSCAN k", ARITY),
    ("HRANDFIELD nokey", "nil"),
    ("HRANDFIELD nokey 3", "[]"),
    ("HRANDFIELD nokey 3 x", "-ERR syntax error"),
    ("HRANDFIELD nokey x", BAD_INCR),
    ("HRANDFIELD nokey -9223372036854775808", "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"),
    ("HRANDFIELD nokey 9223372036854775807 WITHVALUES", "-ERR value is out of range"),
    ("HSET r a 1 b 2 c 3", ":3"),
    ("HRANDFIELD r 0", "[]"),
    ("HRANDFIELD r 3", "[a b c]"),
    ("HRANDFIELD r 9 withvalues", "[a 1 b 2 c 3]"),
    ("HRANDFIELD r 1 withvalue", "-ERR syntax error"),
    ("HRANDFIELD str 1", ""),
    ("HSCAN nokey x", "-ERR invalid cursor"),
    ("HSCAN nokey 0 COUNT 0", ""),
    ("HSCAN r 0 COUNT 0", "-ERR syntax error"),
    ("HSCAN r 0 TYPE string", "-ERR syntax error"),
    ("HSCAN r 0 MATCH [ab]", ""),
    ("HSCAN r 0 COUNT 1", ""),
    // strtoul: a negative cursor wraps around, as Redis reads it.
    ("HSCAN r -1", ""),
    ("HSET str2 a b", ":1"),
    ("SET str2 x", "+OK"),
    ("HSCAN str2 0", WT),
    ("HRANDFIELD str2", WT),
    // LCS has its own text for another type, on one shard or across two.
    ("SET la hello", "+OK"),
    ("HSET lb f v", ":1"),
    ("HSET lc f v", ":1"),
    ("HSET ld f v", ":1"),
    ("LCS la lb", "-ERR The specified keys must contain string values"),
    ("LCS lc la", "-ERR The specified keys must contain string values"),
    ("LCS la ld", "-ERR The specified keys must contain string values"),
    ("LCS la nokey", ""),
];

/// Conversion to `hashtable` under [`SMALL`] thresholds (Redis 7.0 names and old aliases).
const CONVERSIONS: &[(&str, &str)] = &[
    (
        "CONFIG GET hash-max-listpack-entries",
        "[hash-max-listpack-entries 4]",
    ),
    (
        "CONFIG GET hash-max-ziplist-entries",
        "[hash-max-ziplist-entries 4]",
    ),
    (
        "CONFIG GET hash-max-listpack-value",
        "[hash-max-listpack-value 8]",
    ),
    (
        "CONFIG GET hash-max-ziplist-value",
        "[hash-max-ziplist-value 8]",
    ),
    ("HSET h 1 a 2 b 3 c 4 d", ":4"),
    ("OBJECT ENCODING h", "$listpack"),
    ("HSET h 5 e", ":1"),
    ("OBJECT ENCODING h", "$hashtable"),
    ("HGETALL h", ""),
    ("HDEL h 1 2 3 4", ":4"),
    ("OBJECT ENCODING h", "$hashtable"),
    ("HKEYS h", "[5]"),
    ("HSET v f 12345678", ":1"),
    ("OBJECT ENCODING v", "$listpack"),
    ("HSET v f 123456789", ":0"),
    ("OBJECT ENCODING v", "$hashtable"),
    ("HDEL v f", ":1"),
    ("EXISTS v", ":0"),
    ("HSET v 123456789 x", ":1"),
    ("OBJECT ENCODING v", "$hashtable"),
    ("HSET w f 1", ":1"),
    ("HINCRBY w f 123456789", ":123456790"),
    ("OBJECT ENCODING w", "$hashtable"),
    ("HSET y f 1", ":1"),
    ("HINCRBYFLOAT y f 0.23456789", "$1.23456789"),
    ("OBJECT ENCODING y", "$hashtable"),
    ("HSETNX x f 123456789", ":1"),
    ("OBJECT ENCODING x", "$hashtable"),
    ("HMSET y2 a 1 b 2 c 3 d 4 e 5", "+OK"),
    ("OBJECT ENCODING y2", "$hashtable"),
    ("HVALS y2", ""),
    ("HSET z a 1 b 2 c 3 d 4 a 5", ":4"),
    ("OBJECT ENCODING z", "$listpack"),
    ("HGETALL z", "[a 5 b 2 c 3 d 4]"),
    ("HINCRBY z e 1", ":1"),
    ("OBJECT ENCODING z", "$hashtable"),
    ("HSET z2 a 1 b 2 c 3 d 4", ":4"),
    ("HDEL z2 a", ":1"),
    ("HSET z2 e 5", ":1"),
    ("OBJECT ENCODING z2", "$listpack"),
    ("HKEYS z2", "[b c d e]"),
    ("HSETNX z2 f 6", ":1"),
    ("OBJECT ENCODING z2", "$hashtable"),
];

/// A line's words: split on spaces, `""` is an empty word and `\xHH` one byte.
fn words(line: &str) -> Vec<Vec<u8>> {
    line.split(' ')
        .map(|w| {
            if w == r#""""# {
                return Vec::new();
            }
            let (mut out, mut rest) = (Vec::new(), w.as_bytes());
            while let Some((&c, tail)) = rest.split_first() {
                if c == b'\\' && tail.len() >= 3 && tail[0] == b'x' {
                    let hex = std::str::from_utf8(&tail[1..3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    rest = &tail[3..];
                } else {
                    out.push(c);
                    rest = tail;
                }
            }
            out
        })
        .collect()
}

/// A reply in the tables' shorthand as RESP2: `nil`, `$word` (a bulk string), `[w1 w2 …]`
/// (an array of bulk strings, `nil` a null one), [`ARITY`] for `line`'s arity error, or an
/// integer, status or error line as it is.
fn resp2(line: &str, e: &str) -> Vec<u8> {
    let bulk = |w: &[u8]| match w {
        b"nil" => b"$-1\r\n".to_vec(),
        _ => common::encode(&[w])[4..].to_vec(),
    };
    if let Some(list) = e.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        let items = if list.is_empty() { vec![] } else { words(list) };
        let mut out = format!("*{}\r\n", items.len()).into_bytes();
        items.iter().for_each(|w| out.extend(bulk(w)));
        out
    } else if let Some(w) = e.strip_prefix('$') {
        bulk(&words(w).concat())
    } else if e == "nil" {
        bulk(b"nil")
    } else if e == ARITY {
        let name = line.split(' ').next().unwrap().to_lowercase();
        format!("-ERR wrong number of arguments for '{name}' command\r\n").into_bytes()
    } else {
        format!("{e}\r\n").into_bytes()
    }
}

/// A command as a line of [`words`] (an empty argument as `""`, a space as `\x20`).
fn show(args: &[Vec<u8>]) -> String {
    let word = |a: &Vec<u8>| match &a[..] {
        [] => r#""""#.to_string(),
        _ => esc(a).replace(' ', r"\x20"),
    };
    args.iter().map(word).collect::<Vec<_>>().join(" ")
}

/// An array (or RESP3 map) of bulk strings with its elements sorted — HGETALL's as
/// field/value pairs — or the reply unchanged if it is no such array.
fn sorted(pairs: bool, reply: &[u8]) -> Vec<u8> {
    let map = reply.starts_with(b"%");
    let mut flat = reply.to_vec();
    if map {
        flat[0] = b'*';
    }
    let Some((n, body)) = split_array_reply(&flat) else {
        return reply.to_vec();
    };
    let mut items = Vec::new();
    if split_bulks(body, if map { 2 * n } else { n }, &mut items).is_none() {
        return reply.to_vec();
    }
    let mut groups: Vec<_> = items
        .chunks(1 + pairs as usize)
        .map(<[_]>::concat)
        .collect();
    groups.sort();
    let mut out = reply[..reply.len() - body.len()].to_vec();
    out.extend(groups.concat());
    out
}

/// One connection to each server, and what was sent, for failure messages.
struct Duo {
    redis: Client,
    percore: Client,
    label: String,
    /// Commands sent by `send` (the step a failure names), and everything sent.
    steps: usize,
    history: Vec<String>,
}

impl Duo {
    /// Fresh connections on an emptied pair of servers, switched to RESP3 if asked.
    fn new(redis: &Server, percore: &Server, resp3: bool, label: String) -> Duo {
        let mut d = Duo {
            redis: redis.client(),
            percore: percore.client(),
            label,
            steps: 0,
            history: Vec::new(),
        };
        for c in [&mut d.redis, &mut d.percore] {
            assert_eq!(c.q("FLUSHALL"), b"+OK\r\n");
            if resp3 {
                let hello = c.q("HELLO 3");
                assert!(hello.starts_with(b"%"), "HELLO 3: {}", esc(&hello));
            }
        }
        d
    }

    /// Sends `args` to both servers and returns Redis's reply; panics if the replies differ
    /// (order aside for a `hashtable` hash's HGETALL/HKEYS/HVALS).
    fn send(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        self.steps += 1;
        let name = args[0].to_ascii_uppercase();
        let unordered = args.len() == 2
            && matches!(&name[..], b"HGETALL" | b"HKEYS" | b"HVALS")
            && self.encoding(&args[1]) == HASHTABLE;
        let want = self.exchange(args, |w, g| {
            if unordered {
                sorted(name == b"HGETALL", w) == sorted(name == b"HGETALL", g)
            } else {
                w == g
            }
        });
        let write = "HSET HSETNX HMSET HDEL HINCRBY HINCRBYFLOAT DEL SET APPEND INCR";
        if args.len() > 1 && write.split(' ').any(|w| w.as_bytes() == name) {
            self.encoding(&args[1]);
        }
        want
    }

    /// OBJECT ENCODING `key` on both servers, which must agree.
    fn encoding(&mut self, key: &[u8]) -> Vec<u8> {
        self.exchange(
            &[b"OBJECT".to_vec(), b"ENCODING".to_vec(), key.to_vec()],
            |w, g| w == g,
        )
    }

    fn exchange(&mut self, args: &[Vec<u8>], agree: impl Fn(&[u8], &[u8]) -> bool) -> Vec<u8> {
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        let want = self.redis.cmd(&refs);
        let got = self.percore.cmd(&refs);
        self.history.push(show(args));
        if !agree(&want, &got) {
            let from = self.history.len().saturating_sub(12);
            panic!(
                "{}, step {}: replies differ for `{}`\n redis:   {}\n percore: {}\nlast commands:\n  {}",
                self.label,
                self.steps,
                show(args),
                esc(&want),
                esc(&got),
                self.history[from..].join("\n  ")
            );
        }
        want
    }

    /// Runs a table; in RESP2 Redis's replies must also be the table's expectations.
    fn run_table(&mut self, table: &[(&str, &str)], check_expectations: bool) {
        for (line, expect) in table {
            let want = self.send(&words(line));
            if check_expectations && !expect.is_empty() {
                let expect = resp2(line, expect);
                assert!(
                    want == expect,
                    "the table is wrong about Redis for `{line}`: Redis says {}, the table {}",
                    esc(&want),
                    esc(&expect)
                );
            }
        }
    }
}

/// Runs `f` with a fresh pair of connections for each percore (1 and 3 shards) and each
/// protocol (the flag: RESP3), the servers started with `flags`.
fn each_duo(what: &str, flags: &[&str], mut f: impl FnMut(&mut Duo, bool)) {
    let what = format!("hash differential tests, {what}");
    each_differential_run(&what, flags, &[], |redis, percore, resp3, _, label| {
        f(&mut Duo::new(redis, percore, resp3, label), resp3)
    });
}

#[test]
fn hash_commands_match_redis() {
    each_duo("table", &[], |duo, resp3| duo.run_table(TABLE, !resp3));
}

#[test]
fn hash_encoding_conversions_match_redis() {
    each_duo("conversions", SMALL, |duo, resp3| {
        duo.run_table(CONVERSIONS, !resp3)
    });
}

/// xorshift64: a number below `n` from the stream that a fixed seed determines.
fn roll(x: &mut u64, n: usize) -> usize {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    (*x % n as u64) as usize
}

/// A word of `list` (see [`words`]).
fn pick(x: &mut u64, list: &str) -> Vec<u8> {
    let mut w = words(list);
    let i = roll(x, w.len());
    w.swap_remove(i)
}

/// Three hash keys, and `s`, which string commands also write.
const KEYS: &str = "h1 h2 {x}h3 s";
const FIELDS: &str = r#"a b c d e f "" a-long-field"#;
const VALUES: &str = concat!(
    r#""" v x\x20y \x00\xff\x0d\x0a 0 1 -1 42 007 123456789 9223372036854775807"#,
    " -9223372036854775808 1.5 0.1 -2.25 5.0e3 10.50 1e20",
);
/// Long enough (over 64 bytes) to convert a hash even under the default thresholds.
const LONG: &[u8] =
    b"a value longer than sixty-four bytes, so even the default thresholds convert it";
const INCRS: &str = r#"1 -1 100 -100 9223372036854775807 -9223372036854775808 x 1.5 """#;
const FLOAT_INCRS: &str = r#"0.1 1.5 -2.25 5.0e3 3 -3 1e20 abc inf nan """#;

/// One random command (a few with a wrong number of arguments).
fn gen(x: &mut u64) -> Vec<Vec<u8>> {
    let k = pick(x, KEYS);
    let f = |x: &mut u64| pick(x, FIELDS);
    let v = |x: &mut u64| match roll(x, 40) {
        0 => LONG.to_vec(),
        _ => pick(x, VALUES),
    };
    let name = |n: &str| n.as_bytes().to_vec();
    match roll(x, 26) {
        0..=3 | 5 => {
            let mut c = vec![pick(x, "HSET HSET HSET HSET HSET HMSET"), k];
            for _ in 0..1 + roll(x, 4) {
                c.extend([f(x), v(x)]);
            }
            if roll(x, 15) == 0 {
                c.pop();
            }
            c
        }
        4 => vec![name("HSETNX"), k, f(x), v(x)],
        6 | 7 => vec![name("HGET"), k, f(x)],
        8 | 10 | 11 => {
            let mut c = vec![pick(x, "HMGET HDEL HDEL"), k];
            for _ in 0..1 + roll(x, 4) {
                c.push(f(x));
            }
            c
        }
        9 => vec![name("HGETALL"), k],
        12 => vec![name("HLEN"), k],
        13 => vec![pick(x, "HSTRLEN HEXISTS"), k, f(x)],
        14 => vec![pick(x, "HKEYS HVALS"), k],
        15..=17 => vec![name("HINCRBY"), k, f(x), pick(x, INCRS)],
        18..=20 => vec![name("HINCRBYFLOAT"), k, f(x), pick(x, FLOAT_INCRS)],
        21 => vec![pick(x, "TYPE EXISTS GET"), k],
        22 => vec![name("OBJECT"), name("ENCODING"), k],
        23 | 24 => vec![name("DEL"), k],
        // `s` is a string for a while (hash commands on it: WRONGTYPE), then deleted.
        _ => match roll(x, 6) {
            0 => vec![name("SET"), name("s"), v(x)],
            1 => vec![name("APPEND"), name("s"), v(x)],
            2 => words("INCR s"),
            _ => words("DEL s"),
        },
    }
}

const STEPS: usize = 2500;
const SEEDS: &[u64] = &[1, 7919, 0x9E37_79B9_7F4A_7C15, 424_242];

fn random_streams(flags: &[&str], what: &str) {
    let what = format!("hash differential tests, {what}");
    each_differential_run(&what, flags, SEEDS, |redis, percore, resp3, seed, label| {
        let mut duo = Duo::new(redis, percore, resp3, label);
        let mut x = seed;
        for _ in 0..STEPS {
            duo.send(&gen(&mut x));
        }
    });
}

#[test]
fn random_hash_streams_match_redis() {
    random_streams(&[], "default thresholds");
}

#[test]
fn random_hash_streams_with_small_listpacks_match_redis() {
    random_streams(SMALL, "small listpack thresholds");
}

/// A hash's contents as sorted field/value pairs, whatever its encoding.
fn contents(c: &mut Client, key: &str) -> Vec<u8> {
    sorted(true, &c.q(&format!("HGETALL {key}")))
}

/// Hashes move whole between shards and databases (RENAME, COPY, MOVE through the router)
/// with their encodings; MEMORY USAGE counts their fields; a large one deleted is freed in
/// the background; a hash's deadline applies as a string's does.
#[test]
fn hashes_move_between_shards_and_are_freed_in_the_background() {
    let srv = Server::percore(3, &[]);
    let mut c = srv.client();
    c.q("HSET small a 1 b 2");
    for i in 0..2000 {
        c.q(&format!("HSET wide f{i} {i}"));
    }
    let (small, wide) = (contents(&mut c, "small"), contents(&mut c, "wide"));
    // Ten renames: with three shards, most of them cross cores.
    for i in 0..10 {
        assert_eq!(s(&c.q(&format!("RENAME small small{i}"))), "+OK\r\n");
        assert_eq!(s(&c.q(&format!("RENAME small{i} small"))), "+OK\r\n");
        assert_eq!(s(&c.q(&format!("COPY wide wide{i}"))), ":1\r\n");
        assert_eq!(contents(&mut c, &format!("wide{i}")), wide);
        assert_eq!(
            s(&c.q(&format!("OBJECT ENCODING wide{i}"))),
            "$9\r\nhashtable\r\n"
        );
    }
    assert_eq!(contents(&mut c, "small"), small);
    assert_eq!(s(&c.q("OBJECT ENCODING small")), "$8\r\nlistpack\r\n");
    assert_eq!(s(&c.q("MOVE small 1")), ":1\r\n");
    c.q("SELECT 1");
    assert_eq!(contents(&mut c, "small"), small);
    c.q("SELECT 0");
    let usage = |c: &mut Client, k: &str| {
        let r = s(&c.q(&format!("MEMORY USAGE {k}")));
        r.trim_start_matches(':').trim().parse::<u64>().unwrap()
    };
    let wide_bytes = usage(&mut c, "wide");
    assert!(
        wide_bytes > 2000 * 10,
        "MEMORY USAGE counts 2000 fields: {wide_bytes}"
    );
    // A deadline on a hash: one in the past deletes it.
    assert_eq!(s(&c.q("PEXPIREAT wide0 1")), ":1\r\n");
    assert_eq!(s(&c.q("HLEN wide0")), ":0\r\n");
    assert_eq!(s(&c.q("EXISTS wide0")), ":0\r\n");
    // A large hash is freed in slices off the request path.
    for i in 1..10 {
        assert_eq!(s(&c.q(&format!("UNLINK wide{i}"))), ":1\r\n");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let info = s(&c.q("INFO memory"));
        if info.contains("lazyfree_pending_objects:0\r\n") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {info}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(contents(&mut c, "wide"), wide);
}

/// HRANDFIELD's and HSCAN's answers depend on chance and table order, so they are checked
/// against what Redis guarantees instead: counts, membership, distinct fields for a positive
/// count, values that belong to their fields, and a full HSCAN returning every field, in
/// both encodings and both protocols. Reply lengths are compared with Redis's.
#[test]
fn hrandfield_and_hscan_keep_redis_guarantees() {
    each_duo("random picks", &[], |duo, _| {
        let label = duo.label.clone();
        for (key, n) in [("small", 5usize), ("large", 1500)] {
            for i in 0..n {
                duo.send(&words(&format!("HSET {key} f{i} v{i}")));
            }
            let enc = duo.encoding(key.as_bytes());
            for (count, withvalues) in [
                (1i64, false),
                (3, true),
                (-7, false),
                (-4, true),
                (200, true),
                (5000, false),
            ] {
                let with = if withvalues { " WITHVALUES" } else { "" };
                let line = format!("HRANDFIELD {key} {count}{with}");
                let args = words(&line);
                let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
                let want = duo.redis.cmd(&refs);
                let got = duo.percore.cmd(&refs);
                let fields = picks(&got, withvalues);
                assert_eq!(
                    fields.len(),
                    picks(&want, withvalues).len(),
                    "{label}, {} `{line}`: {}",
                    esc(&enc),
                    esc(&got)
                );
                for (f, v) in &fields {
                    let i = f[1..].parse::<usize>().unwrap_or(usize::MAX);
                    assert!(i < n, "{label} `{line}`: no field {f}");
                    if let Some(v) = v {
                        assert_eq!(v, &format!("v{i}"), "{label} `{line}`");
                    }
                }
                if count > 0 {
                    let distinct: std::collections::HashSet<_> =
                        fields.iter().map(|p| &p.0).collect();
                    assert_eq!(distinct.len(), fields.len(), "{label} `{line}`: repeats");
                }
            }
            // A full scan, a few fields at a time, returns every field with its value.
            for count in [1, 10, 1000] {
                let mut seen = std::collections::HashSet::new();
                let mut cursor = "0".to_string();
                for _ in 0..100_000 {
                    let r = duo
                        .percore
                        .q(&format!("HSCAN {key} {cursor} COUNT {count}"));
                    let mut items = bulks(&r);
                    cursor = items.remove(0);
                    for p in items.chunks(2) {
                        assert_eq!(p[1], format!("v{}", &p[0][1..]), "{label}");
                        seen.insert(p[0].clone());
                    }
                    if cursor == "0" {
                        break;
                    }
                }
                assert_eq!(
                    cursor, "0",
                    "{label}: HSCAN {key} COUNT {count} never ended"
                );
                assert_eq!(
                    seen.len(),
                    n,
                    "{label}: HSCAN {key} COUNT {count} missed fields"
                );
            }
        }
    });
}

/// HRANDFIELD's fields and (with WITHVALUES) values: RESP3's nested pairs and RESP2's flat
/// list carry the same bulks in the same order.
fn picks(reply: &[u8], withvalues: bool) -> Vec<(String, Option<String>)> {
    let b = bulks(reply);
    if withvalues {
        b.chunks(2)
            .map(|p| (p[0].clone(), Some(p[1].clone())))
            .collect()
    } else {
        b.into_iter().map(|f| (f, None)).collect()
    }
}

/// Every bulk string of a reply, in order, nesting ignored (values here hold no CRLF).
fn bulks(reply: &[u8]) -> Vec<String> {
    let text = s(reply);
    let lines: Vec<&str> = text.split("\r\n").collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with('$'))
        .map(|w| w[1].to_string())
        .collect()
}
