//! Differential tests of the bitmap commands (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP,
//! BITFIELD, BITFIELD_RO): the same commands go to a real `redis-server` (7.0, the spec) and
//! to percore with 1 and with 3 shards, over RESP2 and RESP3. Skipped with a loud message
//! when redis-server is absent; PERCORE_REQUIRE_REDIS=1 (CI) turns the skip into a failure.
//!
//! Replies must be identical byte for byte. After every command both servers must report the
//! same OBJECT ENCODING for the key it writes or reads (BITOP: its destination), and at the
//! end of each run the same keys with the same types and, for strings, the same bytes.
//! BITOP's keys spread over the shards (plain names) or share one (`{t}` hash tags), so
//! both the one-hop and the cross-shard paths run.

mod common;

use common::{bulks, each_differential_run, words, Diff, Rng};

/// Every command, option and error string of Redis 7.0's bitmap commands, run in order on
/// one database; each reply compared byte for byte.
#[rustfmt::skip]
const TABLE: &[&str] = &[
    // arity
    "SETBIT k 1", "SETBIT k 1 1 1", "GETBIT k", "GETBIT k 1 2", "BITCOUNT", "BITPOS k",
    "BITOP AND d", "BITOP", "BITOP NOT d", "BITFIELD", "BITFIELD_RO",
    // missing keys
    "GETBIT nokey 0", "GETBIT nokey 4294967295", "BITCOUNT nokey", "BITCOUNT nokey 0 -1",
    "BITCOUNT nokey a b", "BITCOUNT nokey 1", "BITPOS nokey 0", "BITPOS nokey 1",
    "BITPOS nokey 1 5 10 BIT", "BITPOS nokey 0 5 10 FOO", "BITPOS nokey 2", "BITPOS nokey x",
    "BITFIELD nokey", "BITFIELD nokey GET u8 0", "BITFIELD_RO nokey GET i8 0 GET u63 100",
    "BITFIELD_RO nokey", "EXISTS nokey",
    // SETBIT / GETBIT and their errors
    "SETBIT k -1 1", "SETBIT k x 1", "SETBIT k 4294967296 1", "SETBIT k 1 2", "SETBIT k 1 -1",
    "SETBIT k 1 x", "SETBIT k x x", "SETBIT k 1 \"\"", "SETBIT k \"\" 1", "SETBIT k 01 1",
    "SETBIT k +1 1", "SETBIT k 1 01", "SETBIT k 1.0 1", "SETBIT k 18446744073709551616 1",
    "EXISTS k", "SETBIT k 7 1", "GET k", "OBJECT ENCODING k", "SETBIT k 7 1", "SETBIT k 7 0",
    "SETBIT k 100 1", "GET k", "STRLEN k", "GETBIT k 100", "GETBIT k 99", "GETBIT k 1000000",
    "GETBIT k -1", "GETBIT k x", "GETBIT k 4294967296", "GETBIT k 4294967295", "GETBIT k 0",
    // integer and embstr encodings become raw when written, not when read
    "SET n 255", "OBJECT ENCODING n", "GETBIT n 2", "GETBIT n 3", "BITCOUNT n", "BITPOS n 1",
    "BITFIELD n GET u8 0", "BITFIELD_RO n GET u8 8", "OBJECT ENCODING n", "SETBIT n 0 0",
    "OBJECT ENCODING n", "GET n", "SET e hello", "OBJECT ENCODING e", "SETBIT e 0 0",
    "OBJECT ENCODING e", "GET e", "SET e2 hello", "BITFIELD e2 GET u8 0", "OBJECT ENCODING e2",
    "BITFIELD e2 SET u8 0 104", "OBJECT ENCODING e2", "GET e2", "SET e3 -17", "SETBIT e3 1 1",
    "GET e3", "OBJECT ENCODING e3", "SET e4 7", "BITFIELD e4 OVERFLOW FAIL INCRBY u2 0 9",
    "OBJECT ENCODING e4",
    // BITCOUNT
    "SET s foobar", "BITCOUNT s", "BITCOUNT s 0 0", "BITCOUNT s 1 1", "BITCOUNT s 1 1 BYTE",
    "BITCOUNT s 5 30 BIT", "BITCOUNT s 5 30 bit", "BITCOUNT s 5 30 byte", "BITCOUNT s -1 -1",
    "BITCOUNT s -2 -1 BIT", "BITCOUNT s -1 -2", "BITCOUNT s -1 -2 FOO", "BITCOUNT s 0 -1 FOO",
    "BITCOUNT s 0", "BITCOUNT s 0 1 BIT x", "BITCOUNT s x 1", "BITCOUNT s 1 x",
    "BITCOUNT s 100 200", "BITCOUNT s -100 -50", "BITCOUNT s -100 100", "BITCOUNT s 3 1",
    "BITCOUNT s 7 7 BIT", "BITCOUNT s 47 47 BIT", "BITCOUNT s 0 47 BIT", "BITCOUNT s 1 46 BIT",
    "BITCOUNT s 9 9 BIT", "BITCOUNT s 9 14 BIT", "BITCOUNT s 9223372036854775807 -1",
    "BITCOUNT s -9223372036854775808 -1 BIT", "BITCOUNT s 0 9223372036854775807 BIT",
    "BITCOUNT s 9223372036854775808 1", "SET empty \"\"", "BITCOUNT empty",
    "BITCOUNT empty 0 -1 BIT", "BITCOUNT empty 0 0",
    // BITPOS
    r"SET p \xff\xf0\x00", "BITPOS p 0", "BITPOS p 1", "BITPOS p 0 1", "BITPOS p 0 2",
    "BITPOS p 1 2", "BITPOS p 0 0 0", "BITPOS p 0 0 -1 BYTE", "BITPOS p 1 7 15 BIT",
    "BITPOS p 0 7 15 BIT", "BITPOS p 0 0 11 BIT", "BITPOS p 0 0 12 BIT", "BITPOS p 1 12 23 BIT",
    "BITPOS p 1 5 3 BIT", "BITPOS p 1 -1", "BITPOS p 0 -100 100", "BITPOS p 1 0 -1 FOO",
    "BITPOS p 1 x", "BITPOS p 1 0 x", "BITPOS p 1 x 2 FOO", "BITPOS p 1 0 x FOO",
    "BITPOS p 1 0 1 BIT 1", "BITPOS p 2", "BITPOS p -1", "BITPOS p 1 1 1 BIT",
    "BITPOS p 0 3 3 BIT", "BITPOS p 0 2 BIT", "BITPOS p 0 12 12 BIT", "BITPOS p 0 11 12 BIT",
    "BITPOS p 1 3 -1 bit", "BITPOS p 0 -3 -1 BIT",
    r"SET ones \xff\xff\xff", "BITPOS ones 0", "BITPOS ones 0 0 -1", "BITPOS ones 0 1",
    "BITPOS ones 0 8 23 BIT", "BITPOS ones 0 8 -1 BIT", "BITPOS ones 1 2 2", "BITPOS ones 0 5",
    "BITPOS ones 0 2 1", "BITPOS ones 0 9 10 BIT", "BITPOS empty 0", "BITPOS empty 1",
    "BITPOS empty 0 0 -1", "BITPOS empty 0 0 -1 BIT",
    r"SET zeros \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
    "BITPOS zeros 1", "BITPOS zeros 1 2", "BITPOS zeros 0 143 143 BIT",
    "BITPOS zeros 1 100 143 BIT", "BITPOS zeros 1 100 142 BIT", "BITPOS zeros 1 -1 -1",
    "BITPOS zeros 0 0 -1 BIT", "BITPOS zeros 1 9 -1 BIT",
    // BITOP
    r"SET a \xff\x0f", r"SET b \x0f", "SET c abcdefghijklmnopqrstuvwxyz0123456789abcdefgh",
    "BITOP AND d a b", "GET d", "OBJECT ENCODING d", "BITOP or d a b c", "GET d",
    "BITOP XOR d a b c", "GET d", "BITOP NOT d a", "GET d", "BITOP NOT d c", "GET d",
    "BITOP not d a b", "BITOP NAND d a", "BITOP \"\" d a", "BITOP NAND d", "BITOP AND d nokey",
    "EXISTS d", "SET d x", "BITOP OR d nokey nokey2", "EXISTS d", "BITOP AND d a nokey",
    "GET d", "BITOP AND d nokey a", "GET d", "BITOP AND d a empty", "GET d",
    "BITOP XOR d a c c", "GET d", "BITOP AND d c c a", "GET d", "RPUSH l x",
    "BITOP OR d a l", "BITOP OR d l a", "BITOP NOT d l", "GET d", "BITOP OR l a", "TYPE l",
    "GET l", "SET n2 10", "BITOP NOT d n2", "GET d", "OBJECT ENCODING d", "BITOP OR d n2",
    "OBJECT ENCODING d", "SET dttl x EX 100", "BITOP OR dttl a", "TTL dttl",
    r"SET {t}a \xf0", r"SET {t}b \x3c\x01", "BITOP and {t}d {t}a {t}b", "GET {t}d",
    "BITOP XOR {t}d {t}a {t}b nokey", "GET {t}d", "BITOP NOT {t}d {t}b", "GET {t}d",
    "BITOP AND d d", "GET d", "BITOP OR a a b", "GET a", "BITOP NOT empty empty", "EXISTS empty",
    "BITOP AND d nokey nokey", "EXISTS d",
    // BITFIELD: SET, GET, INCRBY, overflow modes
    "BITFIELD bf SET u8 0 255", "BITFIELD bf GET u8 0", "BITFIELD bf GET i8 0",
    "BITFIELD bf INCRBY u8 0 1", "BITFIELD bf OVERFLOW SAT INCRBY u8 0 300",
    "BITFIELD bf OVERFLOW FAIL INCRBY u8 0 1", "BITFIELD bf OVERFLOW WRAP INCRBY u8 0 -256",
    "BITFIELD bf OVERFLOW SAT INCRBY u8 0 -256", "BITFIELD bf OVERFLOW fail INCRBY u8 0 -1",
    "BITFIELD bf SET i64 0 -9223372036854775808 GET i64 0 INCRBY i64 0 -1",
    "BITFIELD bf OVERFLOW SAT INCRBY i64 0 -1 INCRBY i64 0 9223372036854775807 INCRBY i64 0 1",
    "BITFIELD bf OVERFLOW FAIL INCRBY i64 0 1 INCRBY i64 0 -1 INCRBY i64 0 -9223372036854775808",
    "BITFIELD bf OVERFLOW SAT INCRBY i64 0 -9223372036854775808 INCRBY i64 0 -9223372036854775808",
    "BITFIELD bf SET u63 5 9223372036854775807", "BITFIELD bf GET u63 5 GET i64 5 GET u8 60",
    "BITFIELD bf OVERFLOW WRAP INCRBY u63 5 9223372036854775807",
    "BITFIELD bf SET u1 0 2 SET i1 1 1 SET i1 2 -1 GET i1 2 GET u1 0",
    "BITFIELD bf OVERFLOW SAT SET u4 0 -1 SET i4 4 -100 SET i4 8 100 GET u16 0",
    "BITFIELD bf OVERFLOW FAIL SET u4 0 16 SET i4 4 8 SET i4 4 -9 SET i4 4 7 GET u8 0",
    "BITFIELD bf OVERFLOW WRAP SET i8 0 200 SET u8 8 -1 SET i16 16 70000 GET u32 0",
    "BITFIELD bf SET u8 #2 7 GET u8 16 GET u8 #2 INCRBY u8 #2 1 GET i4 #5",
    "BITFIELD bf OVERFLOW FAIL INCRBY u8 0 1000 GET u8 0 OVERFLOW WRAP INCRBY u8 0 1000",
    "BITFIELD bf GET u8 #-1", "BITFIELD bf GET u8 #x", "BITFIELD bf GET u8 #", "BITFIELD bf GET u8 -1",
    "BITFIELD bf GET u8 4294967296", "BITFIELD bf GET u8 4294967295", "BITFIELD bf GET u8 #536870911",
    "BITFIELD bf GET u8 #536870912", "BITFIELD bf GET u8 # 1",
    // `#N` times the width wraps as Redis's (two's complement) multiplication does
    "BITFIELD bf GET i64 #4611686018427387904 GET u8 #2305843009213693952 GET u8 #-2305843009213693952",
    "BITFIELD bf GET i64 #-4611686018427387903", "BITFIELD bf GET u8 #9223372036854775807", "BITFIELD bf GET u64 0",
    "BITFIELD bf GET i65 0", "BITFIELD bf GET i0 0", "BITFIELD bf GET u0 0", "BITFIELD bf GET x8 0",
    "BITFIELD bf GET U8 0", "BITFIELD bf GET I8 0", "BITFIELD bf GET \"\" 0", "BITFIELD bf GET i 0",
    "BITFIELD bf GET u-1 0", "BITFIELD bf GET u08 0", "BITFIELD bf GET u8", "BITFIELD bf SET u8 0",
    "BITFIELD bf INCRBY u8 0", "BITFIELD bf OVERFLOW", "BITFIELD bf OVERFLOW WRAPX GET u8 0",
    "BITFIELD bf FOO", "BITFIELD bf GET u8 0 FOO", "BITFIELD bf SET u8 0 x", "BITFIELD bf SET u8 0 1.5",
    "BITFIELD bf INCRBY u8 0 x", "BITFIELD bf GET u8 0 SET u8 0 x", "BITFIELD bf SET x8 0 x",
    "BITFIELD bf get u8 0 set u8 0 1 incrby u8 0 1 overflow sat", "BITFIELD bf OVERFLOW FAIL",
    "BITFIELD bf", "GET bf", "OBJECT ENCODING bf",
    "BITFIELD_RO bf GET u8 0 GET i16 3", "BITFIELD_RO bf SET u8 0 1", "BITFIELD_RO bf INCRBY u8 0 1",
    "BITFIELD_RO bf OVERFLOW SAT GET u8 0", "BITFIELD_RO bf OVERFLOW FAIL", "BITFIELD_RO bf",
    "BITFIELD_RO bf GET u8 0 SET u8 x 1", "BITFIELD_RO bf FOO", "BITFIELD_RO bf GET u64 0",
    "BITFIELD_RO l GET u8 0", "BITFIELD_RO l SET u8 0 1", "BITFIELD_RO nokey SET u8 0 1",
    "EXISTS nokey", "BITFIELD bf2 SET u8 #100 1", "STRLEN bf2", "OBJECT ENCODING bf2",
    "BITFIELD nokey2 INCRBY i5 100 1", "GET nokey2", "BITFIELD nokey3 OVERFLOW FAIL INCRBY u2 0 7",
    "GET nokey3", "BITFIELD nokey4 GET u8 0", "EXISTS nokey4",
    // wrong types
    "SETBIT l 0 1", "GETBIT l 0", "BITCOUNT l", "BITCOUNT l 0 1 FOO", "BITCOUNT l x y",
    "BITPOS l 1", "BITPOS l 2", "BITPOS l 1 0 1 FOO", "BITFIELD l GET u8 0", "BITFIELD l",
    "BITFIELD l SET u8 0 1", "BITFIELD l GET u8 x", "GETBIT l x", "SETBIT l x 1", "SETBIT l 0 5",
    "LRANGE l 0 -1", "TYPE l",
];

/// Redis and percore, compared after every command on the encoding of the key it names too.
struct Pair(Diff);

impl Pair {
    /// One command to both servers: identical replies, then identical encodings of the key
    /// it names (BITOP: its destination).
    fn send(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let w = self.0.same(args);
        let name = String::from_utf8_lossy(&args[0]).to_uppercase();
        let key = match name.as_str() {
            "BITOP" => args.get(2),
            _ => args.get(1),
        };
        if let Some(k) = key {
            self.0.encoding(k);
        }
        w
    }

    fn table(&mut self, rows: &[&str]) {
        for row in rows {
            self.send(&words(row));
        }
    }

    /// The same keys on both servers, each with the same type and, for strings, bytes.
    fn same_dataset(&mut self) {
        let d = &mut self.0;
        let keys = d.c.each_mut().map(|c| {
            let mut k = bulks(&c.q("KEYS *"));
            k.sort();
            k
        });
        if keys[0] != keys[1] {
            panic!("{}: keys differ: {:?} vs {:?}", d.what, keys[0], keys[1]);
        }
        for k in &keys[0] {
            let t = d.check(&[b"TYPE".to_vec(), k.clone()], "types differ");
            if t.ends_with(b"string\r\n") {
                d.check(&[b"GET".to_vec(), k.clone()], "values differ");
                d.encoding(k);
            }
        }
    }
}

fn each_pair(what: &str, seeds: &[u64], mut f: impl FnMut(&mut Pair, u64)) {
    let what = format!("bitmap differential tests, {what}");
    each_differential_run(&what, &[], seeds, |redis, percore, resp3, seed, label| {
        let mut p = Pair(Diff::new(redis, percore, resp3, label));
        f(&mut p, seed);
        p.same_dataset();
    });
}

#[test]
fn bitmap_commands_match_redis() {
    each_pair("table", &[], |p, _| p.table(TABLE));
}

/// Bitmaps of a few KB, so the word-at-a-time loops (popcount, bit search, BITOP) run over
/// whole words, unaligned heads and tails, and sources of different lengths.
#[test]
fn larger_bitmaps_match_redis() {
    each_pair("larger bitmaps", &[], |p, _| {
        for (key, step) in [("x", 7u32), ("y", 13), ("{t}z", 3)] {
            for i in 0..300u32 {
                let off = (i * step * 31 + i * i) % 40_000;
                p.send(&words(&format!("SETBIT {key} {off} 1")));
            }
        }
        p.send(&words("SETBIT ones 40000 1"));
        p.send(&words("BITOP NOT ones ones"));
        for row in [
            "BITCOUNT x",
            "BITCOUNT x 3 4000",
            "BITCOUNT x -4000 -3",
            "BITCOUNT x 9 31999 BIT",
            "BITCOUNT x 33 33 BIT",
            "BITCOUNT ones",
            "BITCOUNT ones 1 -2 BIT",
            "BITPOS x 1",
            "BITPOS x 0",
            "BITPOS x 1 100",
            "BITPOS x 1 100 200",
            "BITPOS x 0 1000 -1 BIT",
            "BITPOS ones 0",
            "BITPOS ones 0 3",
            "BITPOS ones 0 3 4000",
            "BITPOS ones 0 9 39999 BIT",
            "BITPOS ones 1 9 39999 BIT",
            "BITPOS y 1 2000 -1 BIT",
            "BITOP AND r x y",
            "BITCOUNT r",
            "BITOP OR r x y {t}z ones",
            "BITCOUNT r",
            "BITOP XOR r x y {t}z",
            "BITCOUNT r",
            "BITOP XOR r x y {t}z nokey",
            "GET r",
            "BITOP AND r ones x",
            "GET r",
            "BITOP NOT r y",
            "BITCOUNT r",
            "BITPOS r 0",
            "BITFIELD x GET u63 #3 GET i64 1001 INCRBY i17 333 -99999 SET u5 #700 31",
            "BITFIELD_RO y GET i64 64 GET u33 12345",
        ] {
            p.send(&words(row));
        }
    });
}

/// Over maxmemory with nothing to evict (`noeviction`), the `denyoom` commands (SETBIT,
/// BITOP, BITFIELD even with only GETs) are refused before they run, on one shard or across
/// shards, and the read-only ones still answer.
#[test]
fn denyoom_refusals_match_redis() {
    each_pair("over maxmemory", &[], |p, _| {
        p.table(&[
            "SET a 1",
            "SET {t}a 2",
            "CONFIG SET maxmemory 1",
            "SETBIT x 1 1",
            "SETBIT a 1 1",
            "GETBIT a 1",
            "BITOP OR d a b c e f g",
            "BITOP NOT {t}d {t}a",
            "BITFIELD a GET u8 0",
            "BITFIELD a SET u8 0 1",
            "BITFIELD_RO a GET u8 0",
            "BITCOUNT a",
            "BITPOS a 1",
            "CONFIG SET maxmemory 0",
            "SETBIT x 1 1",
            "BITOP OR d a b c e f g",
            "GET d",
        ]);
    });
}

/// Bit offsets are bounded by `proto-max-bulk-len` as set at run time (offset / 8 must be
/// below it); BITFIELD may still grow a string up to 8 bytes past it, as Redis does. Writes
/// keep a key's deadline; BITOP's store clears it.
#[test]
fn offset_limits_and_deadlines_match_redis() {
    each_pair("offset limits and deadlines", &[], |p, _| {
        p.table(&[
            "CONFIG SET proto-max-bulk-len 1048576",
            "SETBIT k 8388608 1",
            "SETBIT k 8388607 1",
            "STRLEN k",
            "GETBIT k 8388608",
            "BITFIELD k SET u8 8388607 1 SET i64 #131072 -1",
            "BITFIELD k SET u8 8388607 1 GET i64 #131071",
            "STRLEN k",
            "BITCOUNT k",
            "BITPOS k 1 -2",
            "BITFIELD_RO k GET u63 8388600",
            "CONFIG SET proto-max-bulk-len 536870912",
            "SETBIT k 8388608 1",
            "STRLEN k",
            "SET t abc EX 100",
            "SETBIT t 1 1",
            "TTL t",
            "BITFIELD t SET u8 0 1",
            "TTL t",
            "BITFIELD t GET u8 0",
            "TTL t",
            "BITOP OR t k",
            "TTL t",
            "DEL k",
        ]);
    });
}

/// Random commands: one of these templates, each one-letter word replaced by a random one
/// of its kind (see [`gen`]).
const TEMPLATES: &str = "SETBIT K O B|SETBIT K O B|SETBIT K O B|GETBIT K O|BITCOUNT K|\
    BITCOUNT K N N|BITCOUNT K N N U|BITPOS K B|BITPOS K B N|BITPOS K B N N|BITPOS K B N N U|\
    BITOP P K K K|BITOP P K K|BITOP NOT K K|BITFIELD K F F|BITFIELD K F F F F|\
    BITFIELD_RO K GET T O|BITFIELD_RO K GET T O GET T O|SET K V|APPEND K V|INCR K|DEL K|\
    RPUSH lst x|GET K";
const KEYS: &str = "b1 b2 b3 b4 {t}x {t}y {t}z lst";
const OFFSETS: &str = "0 1 7 8 15 63 64 100 255 1000 4095 12345 -1 x";
const RANGES: &str = "0 1 2 3 -1 -2 -3 5 10 100 -100 1000 x";
const FIELD_TYPES: &str = "u1 u3 u8 u16 u63 i1 i5 i8 i32 i64 u64 i0";
const FIELD_OFFSETS: &str = "0 1 7 8 13 64 100 1000 #0 #1 #3 #40 -1";
const INTS: &str = "0 1 -1 3 100 -100 127 -128 255 9223372036854775807 -9223372036854775808 x";
const VALUES: &str =
    r#"hello 123 -5 "" \xff\xff\x00\x01 1000000 abcdefghijklmnopqrstuvwxyz0123456789"#;

fn gen(r: &mut Rng) -> Vec<Vec<u8>> {
    let mut c = Vec::new();
    for w in r.template(TEMPLATES) {
        match w {
            "K" => c.push(r.word(KEYS)),
            "O" => c.push(r.word(OFFSETS)),
            "B" => c.push(r.word("0 1 0 1 0 1 2")),
            "N" => c.push(r.word(RANGES)),
            "U" => c.push(r.word("BIT BYTE bit")),
            "P" => c.push(r.word("AND OR XOR and")),
            "T" => c.push(r.word(FIELD_TYPES)),
            "V" => c.push(r.word(VALUES)),
            "F" => match r.below(4) {
                0 => c.extend([b"GET".to_vec(), r.word(FIELD_TYPES), r.word(FIELD_OFFSETS)]),
                1 => c.extend([
                    b"SET".to_vec(),
                    r.word(FIELD_TYPES),
                    r.word(FIELD_OFFSETS),
                    r.word(INTS),
                ]),
                2 => c.extend([
                    b"INCRBY".to_vec(),
                    r.word(FIELD_TYPES),
                    r.word(FIELD_OFFSETS),
                    r.word(INTS),
                ]),
                _ => c.extend([b"OVERFLOW".to_vec(), r.word("WRAP SAT FAIL")]),
            },
            _ => c.push(w.as_bytes().to_vec()),
        }
    }
    c
}

const STEPS: usize = 1500;
const SEEDS: &[u64] = &[1, 7919, 424_242];

#[test]
fn random_bitmap_streams_match_redis() {
    each_pair("random stream", SEEDS, |p, seed| {
        let mut r = Rng(seed);
        for _ in 0..STEPS {
            p.send(&gen(&mut r));
        }
    });
}
