//! Differential tests of the HyperLogLog commands (PFADD, PFCOUNT, PFMERGE, PFDEBUG,
//! PFSELFTEST): the same commands go to a real `redis-server` (7.0, the spec) and to
//! percore with 1 and with 3 shards, over RESP2 and RESP3. Skipped with a loud message when
//! redis-server is absent; PERCORE_REQUIRE_REDIS=1 (CI) turns the skip into a failure.
//!
//! Replies must be identical byte for byte. After every command, GET of each key it names
//! must return the same bytes on both servers — the HLL representation (header, cached
//! cardinality and its invalid bit, sparse opcodes, dense registers) is Redis's exactly —
//! and OBJECT ENCODING must agree (PF* writes leave `raw` strings). HLLs made by one server
//! are copied into the other with GET/SET and used there.

mod common;

use common::{each_differential_run, esc, words, Client, Diff, Rng, Server};

/// Elements whose run of zeros passes what a sparse VAL holds (32): found by searching
/// with Redis's MurmurHash64A; adding one turns a sparse HLL dense.
const LONG_RUNS: &[&str] = &["e2119568080"];

/// Redis and percore, compared after every command on the bytes and encodings of the keys
/// it names too.
struct Pair(Diff);

impl Pair {
    /// One command to both servers: identical replies, then identical bytes (GET) and
    /// encodings of every key it names.
    fn send(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let reply = self.0.same(args);
        let name = String::from_utf8_lossy(&args[0]).to_uppercase();
        let keys = match name.as_str() {
            "PFADD" | "SET" => args.get(1..2),
            "PFCOUNT" | "PFMERGE" => args.get(1..),
            "PFDEBUG" => args.get(2..3),
            _ => None,
        };
        for k in keys.unwrap_or_default() {
            let get = [b"GET".to_vec(), k.clone()];
            self.0.check(&get, "GET after the command differs");
            self.0.encoding(k);
        }
        reply
    }

    fn table(&mut self, rows: &[&str]) {
        for row in rows {
            self.send(&words(row));
        }
    }

    /// The value at `key` on side `side` (0 Redis, 1 percore), as a bulk string's bytes.
    fn get(&mut self, side: usize, key: &str) -> Vec<u8> {
        let r = self.0.c[side].cmd(&[b"GET", key.as_bytes()]);
        let body = r.iter().position(|&b| b == b'\n').unwrap() + 1;
        r[body..r.len() - 2].to_vec()
    }

    /// Copies the HLL at `from` on `side` into key `to` on both servers with SET.
    fn copy_from(&mut self, side: usize, from: &str, to: &str) {
        let v = self.get(side, from);
        self.send(&[b"SET".to_vec(), to.as_bytes().to_vec(), v]);
    }
}

fn each_pair(what: &str, flags: &[&str], seeds: &[u64], mut f: impl FnMut(&mut Pair, u64)) {
    let what = format!("hll differential tests, {what}");
    each_differential_run(&what, flags, seeds, |redis, percore, resp3, seed, label| {
        f(&mut Pair(Diff::new(redis, percore, resp3, label)), seed)
    });
}

/// Every command, error and PFDEBUG subcommand, in order on one database.
#[rustfmt::skip]
const TABLE: &[&str] = &[
    // arity
    "PFADD", "PFCOUNT", "PFMERGE", "PFDEBUG", "PFDEBUG GETREG", "PFDEBUG GETREG k x",
    "PFSELFTEST x",
    // missing keys
    "PFCOUNT nokey", "PFCOUNT nokey nokey2", "EXISTS nokey", "PFMERGE d", "PFMERGE d2 nokey nokey2",
    "PFCOUNT d", "PFCOUNT d2", "PFDEBUG ENCODING nokey", "PFDEBUG FOO nokey", "PFDEBUG GETREG nokey",
    // PFADD's 0 and 1
    "PFADD new", "PFADD new", "PFADD new2 a", "PFADD h a b c", "PFADD h a", "PFADD h a b c",
    r#"PFADD h "" \x00\xff 007 -0 1.5 longelement-0123456789"#, "PFCOUNT h", "PFCOUNT h", "PFADD h x",
    "PFCOUNT h new", "PFCOUNT new", "PFCOUNT h h", "OBJECT ENCODING h",
    // the cache: PFCOUNT writes it, PFADD invalidates it only on a change
    "PFADD c a", "PFCOUNT c", "PFADD c a", "PFCOUNT c", "PFADD c b", "PFCOUNT c nokey", "PFCOUNT c",
    // merges
    "PFADD m1 a b c d", "PFADD m2 c d e f", "PFMERGE m3 m1 m2", "PFCOUNT m3", "PFMERGE m1 m2",
    "PFCOUNT m1", "PFMERGE m1", "PFMERGE m1 m1 m1", "PFCOUNT m1 m2 m3 nokey", "PFMERGE {t}d {t}a {t}b",
    "PFADD {t}a x y", "PFADD {t}b y z", "PFMERGE {t}d {t}a {t}b", "PFCOUNT {t}d {t}a",
    // PFDEBUG
    "PFDEBUG FOO h", "PFDEBUG ENCODING h", "PFDEBUG encoding h", "PFDEBUG DECODE h",
    "PFDEBUG DECODE new", "PFDEBUG GETREG m3", "PFDEBUG ENCODING m3", "PFDEBUG DECODE m3",
    "PFDEBUG TODENSE m3", "PFDEBUG TODENSE m3", "PFCOUNT m3", "PFADD m3 q", "PFCOUNT m3",
    "PFDEBUG TODENSE h", "PFMERGE m4 m1 h", "PFDEBUG ENCODING m4", "PFCOUNT m4", "PFCOUNT m4 m1",
    "PFSELFTEST",
    // wrong types
    "SET s hello", "SET i 123", r#"SET e """#, "SET long 0123456789abcdefghij", "LPUSH l x",
    "SADD st a", "PFADD s a", "PFADD i a", "PFADD e a", "PFADD long a", "PFADD l a", "PFADD st a",
    "PFCOUNT s", "PFCOUNT i", "PFCOUNT l", "PFCOUNT h s", "PFCOUNT h l", "PFCOUNT s l",
    "PFCOUNT l s", "PFMERGE d s", "PFMERGE s h", "PFMERGE l h", "PFMERGE h l", "PFMERGE nd h l",
    "EXISTS nd", "PFDEBUG ENCODING s", "PFDEBUG ENCODING l", "PFDEBUG FOO s", "GET h",
    // HLLs are strings
    "TYPE h", "STRLEN h", "APPEND new2 x", "PFCOUNT new2", r"SETRANGE h 4 \x02", "PFCOUNT h",
    "COPY m1 m1c", "PFCOUNT m1c", "RENAME m1c m1d", "PFCOUNT m1d",
];

#[test]
fn hll_commands_match_redis() {
    each_pair("table", &[], &[], |p, _| p.table(TABLE));
}

/// A dense HLL (cache valid at 0) whose register `i` is `reg(i)`: 6 bits each, LSB first.
fn dense_of(reg: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut v = b"HYLL\x00".to_vec();
    v.resize(16 + 12288, 0);
    for i in 0..16384 {
        let (bit, val) = (i * 6, reg(i) as u32 & 63);
        let word = val << (bit % 8);
        v[16 + bit / 8] |= word as u8;
        if bit / 8 + 1 < 12288 {
            v[16 + bit / 8 + 1] |= (word >> 8) as u8;
        }
    }
    v
}

/// Hand-made values: bad magic, unknown encodings, cut or padded dense and sparse bodies,
/// opcodes covering too few or too many registers, registers past what a hash can make,
/// valid and invalid caches over corrupt bodies; each is read, added to, merged and
/// debugged on both servers.
#[test]
fn corrupt_hlls_match_redis() {
    const HDR: &str = r"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    let mut values: Vec<(String, Vec<u8>)> = vec![
        ("short".into(), b"HYLL".to_vec()),
        (
            "magic".into(),
            words(&format!(r"HYLX\x01{HDR}\x7f\xff")).remove(0),
        ),
        (
            "enc2".into(),
            words(&format!(r"HYLL\x02{HDR}\x7f\xff")).remove(0),
        ),
        (
            "hdronly".into(),
            words(&format!(r"HYLL\x01{HDR}")).remove(0),
        ),
        (
            "cutx".into(),
            words(&format!(r"HYLL\x01{HDR}\x7f")).remove(0),
        ),
        (
            "over".into(),
            words(&format!(r"HYLL\x01{HDR}\x7f\xff\x80")).remove(0),
        ),
        (
            "overval".into(),
            words(&format!(r"HYLL\x01{HDR}\x7f\xfe\x83")).remove(0),
        ),
        (
            "under".into(),
            words(&format!(r"HYLL\x01{HDR}\x7f\xfe")).remove(0),
        ),
        (
            "zeros".into(),
            words(&format!(r"HYLL\x01{HDR}\x3f\x3f\x7f\xbf")).remove(0),
        ),
        (
            "vals".into(),
            words(&format!(r"HYLL\x01{HDR}\xfc\xfc\xf8\x7f\xf6")).remove(0),
        ),
        // A valid cache (12345) over a body that does not decode: PFCOUNT trusts it.
        (
            "cached".into(),
            words(r"HYLL\x01\x00\x00\x00\x39\x30\x00\x00\x00\x00\x00\x00\x7f").remove(0),
        ),
        (
            "zeroafter".into(),
            words(&format!(r"HYLL\x01{HDR}\x7f\xff\x00")).remove(0),
        ),
        (
            "zerofirst".into(),
            words(&format!(r"HYLL\x01{HDR}\x00\x7f\xff")).remove(0),
        ),
        (
            "valfirst".into(),
            words(&format!(r"HYLL\x01{HDR}\x83\x7f\xff")).remove(0),
        ),
        (
            "exact".into(),
            words(&format!(r"HYLL\x01{HDR}\x83\x7f\xfb")).remove(0),
        ),
        (
            "twice".into(),
            words(&format!(r"HYLL\x01{HDR}\x7f\xff\x7f\xff")).remove(0),
        ),
        (
            "unused".into(),
            words(&format!(r"HYLL\x01\x07\x08\x09{}\x80\x7f\xff", &HDR[..28])).remove(0),
        ),
    ];
    // Dense: exact length with every register at 63 (above what a hash can make: the
    // estimate overflows, as does Redis's), at 51, one with the others at 51, a mix; one
    // byte short, one byte long; a valid and an invalid cache.
    for (name, regs) in [
        ("dense63", dense_of(|_| 63)),
        ("dense51", dense_of(|_| 51)),
        ("dense50", dense_of(|i| if i == 7 { 50 } else { 51 })),
        ("densemix", dense_of(|i| (i * 37 % 64) as u8)),
        ("densefew", dense_of(|i| if i % 1000 == 3 { 5 } else { 0 })),
    ] {
        let mut invalid = regs.clone();
        invalid[15] = 0x80;
        values.push((format!("{name}i"), invalid.clone()));
        values.push((name.to_string(), regs));
        values.push((
            format!("{name}short"),
            invalid[..invalid.len() - 1].to_vec(),
        ));
        invalid.push(0);
        values.push((format!("{name}long"), invalid));
    }
    const STEPS: &[&str] = &[
        "PFCOUNT K",
        "PFCOUNT K nokey",
        "PFCOUNT K str",
        "PFCOUNT str K",
        "PFCOUNT ok K str",
        "PFMERGE ok str K",
        "PFMERGE ok K str",
        "PFDEBUG ENCODING K",
        "PFDEBUG DECODE K",
        "PFMERGE dst K",
        "PFCOUNT dst",
        "PFMERGE K nokey",
        "PFADD K a",
        "PFADD K b c d e f g h i j",
        "PFCOUNT K",
        "PFDEBUG TODENSE K",
        "PFDEBUG GETREG K",
        "PFCOUNT K",
        "PFADD K k l m",
    ];
    each_pair("corrupt values", &[], &[], |p, _| {
        p.table(&["SET str hello", "PFADD ok a b c"]);
        for (name, v) in &values {
            let set =
                |p: &mut Pair| p.send(&[b"SET".to_vec(), name.as_bytes().to_vec(), v.clone()]);
            // Each step on the value as made, then all of them in a row.
            for step in STEPS {
                set(p);
                p.send(&words("DEL dst"));
                p.send(&words(&step.replace(" K", &format!(" {name}"))));
            }
            set(p);
            for step in STEPS {
                p.send(&words(&step.replace(" K", &format!(" {name}"))));
            }
        }
    });
}

/// Sparse to dense: by size at the default `hll-sparse-max-bytes` (3000) and at a small one,
/// and by a register value over 32; GET compared after every batch.
fn grow(p: &mut Pair, batch: usize, rounds: usize) {
    for round in 0..rounds {
        let mut cmd = words("PFADD g");
        for i in 0..batch {
            cmd.push(format!("el-{}", round * batch + i).into_bytes());
        }
        p.send(&cmd);
        p.send(&words("PFDEBUG ENCODING g"));
        p.send(&words("PFCOUNT g"));
        let mut m = words("PFMERGE gm");
        m.push(format!("s{}", round % 3).into_bytes());
        m.push(b"g".to_vec());
        p.send(&m);
        p.send(&words(&format!("PFADD s{} el-{round} x{round}", round % 3)));
    }
    p.send(&words("PFCOUNT g gm s0 s1 s2"));
    p.send(&words("PFADD lr a b c"));
    for e in LONG_RUNS {
        p.send(&words(&format!("PFADD lr {e}")));
        let enc = p.send(&words("PFDEBUG ENCODING lr"));
        assert_eq!(
            enc, b"+dense\r\n",
            "{}: a run of 35 turns the HLL dense",
            p.0.what
        );
        p.send(&words("PFCOUNT lr"));
    }
    p.send(&words("PFADD lr2 a b c"));
    p.send(&words("PFMERGE lr2 lr"));
    p.send(&words("PFDEBUG ENCODING lr2"));
}

#[test]
fn sparse_to_dense_matches_redis() {
    each_pair("sparse to dense", &[], &[], |p, _| grow(p, 40, 60));
}

#[test]
fn sparse_to_dense_with_small_max_bytes_matches_redis() {
    each_pair(
        "sparse to dense, hll-sparse-max-bytes 60",
        &["--hll-sparse-max-bytes", "60"],
        &[],
        |p, _| {
            p.table(&["CONFIG GET hll-sparse-max-bytes"]);
            grow(p, 3, 30);
        },
    );
}

#[test]
fn hll_sparse_max_bytes_is_a_config_setting() {
    each_pair("CONFIG", &[], &[], |p, _| {
        p.table(&[
            "CONFIG GET hll-sparse-max-bytes",
            "CONFIG SET hll-sparse-max-bytes 1kb",
            "CONFIG GET hll-sparse-max-bytes",
            "CONFIG SET hll-sparse-max-bytes -1",
            "CONFIG SET hll-sparse-max-bytes x",
            "CONFIG SET hll-sparse-max-bytes 0",
            "PFADD z a",
            "PFDEBUG ENCODING z",
            "CONFIG SET hll-sparse-max-bytes 3000",
            "PFADD z2 a",
            "PFDEBUG ENCODING z2",
        ]);
    });
}

/// HLLs built by Redis are stored into percore with SET and used there, and the reverse.
#[test]
fn hlls_copied_between_servers_work() {
    each_pair("copies", &[], &[], |p, _| {
        let mut cmd = words("PFADD sp");
        cmd.extend((0..300).map(|i| format!("m{i}").into_bytes()));
        p.send(&cmd);
        let mut cmd = words("PFADD dn");
        cmd.extend((0..3000).map(|i| format!("m{i}").into_bytes()));
        p.send(&cmd);
        for (side, tag) in [(0, "r"), (1, "p")] {
            for key in ["sp", "dn"] {
                let to = format!("{tag}{key}");
                p.copy_from(side, key, &to);
                for line in [
                    format!("PFCOUNT {to}"),
                    format!("PFCOUNT {to} sp dn"),
                    format!("PFADD {to} n1 n2 n3"),
                    format!("PFCOUNT {to}"),
                    format!("PFMERGE {to}m {to} sp"),
                    format!("PFCOUNT {to}m"),
                ] {
                    p.send(&words(&line));
                }
            }
        }
    });
}

/// The keys of the random streams: two on each of 3 shards, three sharing a hash tag, and
/// a plain string.
fn keys() -> Vec<String> {
    let mut keys = Vec::new();
    for shard in 0..3 {
        let on = (0..)
            .map(|i| format!("h{i}"))
            .filter(|k| common::shard_of(k.as_bytes(), 3) == shard);
        keys.extend(on.take(2));
    }
    keys.extend(["{t}a", "{t}b", "{t}c", "str"].map(String::from));
    keys
}

fn gen(r: &mut Rng, keys: &[String]) -> Vec<Vec<u8>> {
    let key = |r: &mut Rng| keys[r.below(keys.len())].as_bytes().to_vec();
    let mut c: Vec<Vec<u8>>;
    match r.below(20) {
        0..=8 => {
            c = vec![b"PFADD".to_vec(), key(r)];
            // Mostly a few elements, now and then a burst that turns the HLL dense.
            let n = if r.below(10) == 0 {
                200 + r.below(800)
            } else {
                r.below(6)
            };
            for _ in 0..n {
                c.push(format!("e{}", r.below(20_000)).into_bytes());
            }
        }
        9..=12 => {
            c = vec![b"PFCOUNT".to_vec()];
            for _ in 0..1 + r.below(3) {
                c.push(key(r));
            }
        }
        13..=15 => {
            c = vec![b"PFMERGE".to_vec()];
            for _ in 0..1 + r.below(4) {
                c.push(key(r));
            }
        }
        16 => c = vec![b"PFDEBUG".to_vec(), b"ENCODING".to_vec(), key(r)],
        17 => c = vec![b"PFDEBUG".to_vec(), b"TODENSE".to_vec(), key(r)],
        18 => c = vec![b"DEL".to_vec(), key(r)],
        _ => {
            c = vec![
                b"SET".to_vec(),
                b"str".to_vec(),
                format!("v{}", r.below(9)).into_bytes(),
            ]
        }
    }
    c
}

const STEPS: usize = 300;
const SEEDS: &[u64] = &[1, 7919, 424_242];

fn random_streams(what: &str, flags: &[&str]) {
    let keys = keys();
    each_pair(what, flags, SEEDS, |p, seed| {
        let mut r = Rng(seed);
        for _ in 0..STEPS {
            p.send(&gen(&mut r, &keys));
        }
    });
}

#[test]
fn random_hll_streams_match_redis() {
    random_streams("random stream", &[]);
}

#[test]
fn random_hll_streams_with_small_sparse_max_match_redis() {
    random_streams(
        "random stream, hll-sparse-max-bytes 200",
        &["--hll-sparse-max-bytes", "200"],
    );
}

/// COMMAND INFO and COMMAND GETKEYS of the PF commands answer as Redis's, byte for byte
/// (arity, flags, key positions, ACL categories, key specs).
#[test]
fn pf_commands_introspect_as_redis() {
    each_pair("COMMAND", &[], &[], |p, _| {
        p.table(&[
            "COMMAND INFO pfadd pfcount pfmerge pfdebug pfselftest",
            "COMMAND GETKEYS PFADD k a b",
            "COMMAND GETKEYS PFCOUNT a b c",
            "COMMAND GETKEYS PFMERGE d a b",
            "COMMAND GETKEYS PFDEBUG GETREG k",
            "COMMAND GETKEYS PFDEBUG GETREG",
        ]);
    });
}

/// `hll-sparse-max-bytes` from a config file (a memory value, as Redis takes it), changed
/// with CONFIG SET, written back by CONFIG REWRITE, and obeyed: a second element's split
/// no longer fits 18 bytes, so the HLL turns dense.
#[test]
fn hll_sparse_max_bytes_from_a_config_file_and_rewrite() {
    let dir = common::TempDir::new("hll-config");
    let file = dir.0.join("percore.conf");
    std::fs::write(&file, "hll-sparse-max-bytes 1kb\n").unwrap();
    let srv = Server::percore(2, &[file.to_str().unwrap()]);
    let mut c = srv.client();
    let get = |c: &mut Client| c.q("CONFIG GET hll-sparse-max-bytes");
    assert_eq!(
        esc(&get(&mut c)),
        r"*2\r\n$20\r\nhll-sparse-max-bytes\r\n$4\r\n1024\r\n"
    );
    assert_eq!(esc(&c.q("CONFIG SET hll-sparse-max-bytes 18")), r"+OK\r\n");
    assert_eq!(esc(&c.q("CONFIG REWRITE")), r"+OK\r\n");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("hll-sparse-max-bytes 18\n"), "{text}");
    assert_eq!(esc(&c.q("PFADD {h}x a")), r":1\r\n");
    assert_eq!(esc(&c.q("PFDEBUG ENCODING {h}x")), r"+dense\r\n");
    assert_eq!(
        esc(&c.q("CONFIG SET hll-sparse-max-bytes 3000")),
        r"+OK\r\n"
    );
    assert_eq!(esc(&c.q("PFADD {h}y a")), r":1\r\n");
    assert_eq!(esc(&c.q("PFDEBUG ENCODING {h}y")), r"+sparse\r\n");
}
