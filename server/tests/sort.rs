//! Differential tests of SORT and SORT_RO: the same commands go to a real `redis-server`
//! (7.0, the spec) and to percore with 1 and with 3 shards, over RESP2 and RESP3, and every
//! reply must be identical byte for byte. With 3 shards the sorted key, the weight keys,
//! the GET keys and the STORE destination land on different shards, so the coordinator's
//! steps are compared too; `{t}`-tagged keys take the one-hop path.
//!
//! Where Redis's order is its own (a set's members in its hash table's order, or elements
//! of equal ALPHA weight once a LIMIT makes it use its partial quicksort) the commands
//! avoid it: BY nosort reads only integer sets (kept sorted in both), and ALPHA BY uses
//! weights that are all present and distinct.

mod common;

use common::{each_differential_run, words, Diff};

/// Keys the tables and streams fill before they sort.
#[rustfmt::skip]
const SETUP: &[&str] = &[
    "RPUSH l 3 1 2 10 -5 1.5 1",
    "RPUSH la c b a B aa ab",
    "RPUSH bad 1 x 2",
    "RPUSH nb b\\x00z a b\\x00a",
    "SADD si 5 3 9 1 -2",
    "SADD ss c a b",
    "ZADD z 1 c 2 a 3 b 3 d",
    "ZADD zn 5 10 4 2 3 30",
    "SET s str",
    "HSET hk f v",
    "MSET w_3 30 w_1 10 w_2 20 w_10 1 w_-5 50 w_1.5 15",
    "MSET w_a 3 w_b 1 w_c 2 w_B 7 w_aa 9 w_ab 8",
    "MSET v_3 x v_1 \"\" v_2 \\x202",
    "HSET h_1 f one g 1",
    "HSET h_2 f two g 2",
    "HSET h_3 f three g 3",
    "HSET h_10 f ten g 10",
    "RPUSH {t}l 3 1 2",
    "MSET {t}w_1 3 {t}w_2 2 {t}w_3 1",
    "HSET {t}h_1 f x1",
    "HSET {t}h_2 f x2",
];

/// The table: every option, error and edge case of Redis 7.0's SORT.
#[rustfmt::skip]
const TABLE: &[&str] = &[
    // arity and syntax; errors in the options come before the key's type
    "SORT", "SORT_RO", "SORT l FOO", "SORT l LIMIT 1", "SORT l LIMIT a 1", "SORT l LIMIT 0 b",
    "SORT s LIMIT a 1", "SORT l STORE", "SORT_RO l STORE d", "SORT l BY", "SORT l GET",
    "SORT l ASC DESC", "SORT l DESC ASC",
    // types
    "SORT s", "SORT hk", "SORT_RO s ALPHA", "SORT nokey", "SORT nokey ALPHA DESC LIMIT 0 1",
    "SET d x", "SORT nokey STORE d", "EXISTS d",
    // numbers: ties by the elements' bytes; non-numbers refused
    "SORT l", "SORT l DESC", "SORT_RO l", "SORT bad", "SORT bad ALPHA", "SORT la",
    // LIMIT, clamped as Redis clamps
    "SORT l LIMIT 0 3", "SORT l LIMIT 2 2", "SORT l LIMIT -3 2", "SORT l LIMIT 5 100",
    "SORT l LIMIT 7 1", "SORT l LIMIT 100 1", "SORT l LIMIT 0 0", "SORT l LIMIT 1 -1",
    "SORT l DESC LIMIT 1 3",
    // ALPHA, and the C locale's NUL rule (without STORE) against whole bytes (with it)
    "SORT la ALPHA", "SORT la ALPHA DESC", "SORT la ALPHA LIMIT 1 2", "SORT nb ALPHA",
    "SORT nb ALPHA STORE d", "LRANGE d 0 -1",
    // BY: weights from strings and hash fields, missing ones weigh 0
    "SORT l BY w_*", "SORT l BY w_* DESC", "SORT l BY w_* LIMIT 1 2", "SORT l BY h_*->g",
    "SORT l BY h_*->f ALPHA", "SORT l BY nosuch_*", "SORT l BY v_*", "SORT l BY h_*->f",
    "SORT la BY w_* ALPHA", "SORT la BY w_* ALPHA DESC", "SORT la BY w_*", "SORT l BY hk",
    "SORT l BY s_*->", "SORT l BY w_*->", "SORT l BY h_*->nosuch",
    // BY without '*': no sorting; lists and sorted sets keep their order
    "SORT l BY nosort", "SORT l BY nosort DESC", "SORT l BY nosort LIMIT 1 3",
    "SORT l BY nosort DESC LIMIT 1 3", "SORT l BY nosort LIMIT 10 3", "SORT l BY # LIMIT 0 2",
    "SORT l BY nosort BY w_*", "SORT l BY w_* BY nosort", "SORT si BY nosort",
    "SORT si BY nosort DESC", "SORT si BY nosort LIMIT 1 2",
    // GET
    "SORT l GET #", "SORT l GET w_*", "SORT l GET # GET w_* GET h_*->f", "SORT l GET fixed",
    "SORT l GET nosuch_* GET #", "SORT l GET h_*->nosuch", "SORT l GET hk_*",
    "SORT l LIMIT 0 2 GET # GET w_*", "SORT l BY nosort GET w_*", "SORT la ALPHA GET w_*",
    "SORT_RO l BY w_* GET # GET h_*->f",
    // STORE: a list replacing any value and deadline; an empty result deletes
    "SET d x EX 100", "SORT l STORE d", "LRANGE d 0 -1", "TYPE d", "TTL d", "OBJECT ENCODING d",
    "SORT l STORE d GET w_* GET nosuch_*", "LRANGE d 0 -1", "SORT l DESC STORE d LIMIT 0 2",
    "LRANGE d 0 -1", "SORT l STORE d LIMIT 0 0", "EXISTS d", "SORT la ALPHA STORE d BY w_*",
    "LRANGE d 0 -1", "SORT l STORE d STORE e", "EXISTS d", "LRANGE e 0 -1",
    "SORT bad STORE d", "EXISTS d",
    // sets: sorted; BY nosort with STORE sorts ALPHA anyway
    "SORT si", "SORT si DESC LIMIT 1 2", "SORT ss ALPHA", "SORT ss", "SORT ss BY nosort STORE d",
    "LRANGE d 0 -1", "SORT si BY nosort STORE d", "LRANGE d 0 -1", "SORT ss ALPHA GET w_*",
    // sorted sets: SORT turns a listpack into a skiplist
    "OBJECT ENCODING z", "SORT z ALPHA", "OBJECT ENCODING z", "SORT z BY nosort",
    "SORT z BY nosort DESC", "SORT z BY nosort LIMIT 1 2", "SORT z BY nosort DESC LIMIT 1 2",
    "SORT z BY nosort LIMIT 9 2", "SORT zn", "SORT zn DESC BY w_*", "SORT z BY w_* ALPHA",
    "OBJECT ENCODING zn",
    // keys sharing a hash tag (one hop on percore)
    "SORT {t}l BY {t}w_*", "SORT {t}l BY {t}w_* GET {t}h_*->f GET #", "SORT {t}l STORE {t}d",
    "LRANGE {t}d 0 -1", "SORT {t}l BY {t}w_* STORE d", "LRANGE d 0 -1", "SORT l BY {t}w_*",
    // the keys COMMAND GETKEYS finds
    "COMMAND GETKEYS SORT a", "COMMAND GETKEYS SORT a STORE b", "COMMAND GETKEYS SORT a STORE b STORE c",
    "COMMAND GETKEYS SORT a BY store GET store LIMIT 1 store", "COMMAND GETKEYS SORT a STORE",
    "COMMAND GETKEYS SORT_RO a STORE b",
];

fn each_diff(what: &str, seeds: &[u64], mut f: impl FnMut(&mut Diff, u64)) {
    let what = format!("SORT differential tests, {what}");
    each_differential_run(&what, &[], seeds, |redis, percore, resp3, seed, label| {
        let mut d = Diff::new(redis, percore, resp3, label);
        for line in SETUP {
            d.line(line);
        }
        f(&mut d, seed)
    });
}

#[test]
fn sort_matches_redis() {
    each_diff("table", &[], |d, _| {
        for line in TABLE {
            d.line(line);
        }
    });
}

/// The comparison is not vacuous: a BY sort's reply, written out (RESP2 and RESP3 agree
/// on arrays of bulk strings).
#[test]
fn sort_by_weights_orders_by_the_weights() {
    each_diff("literal", &[], |d, _| {
        let r = d.line("SORT l BY w_* GET #");
        assert_eq!(
            common::esc(&r),
            r"*7\r\n$2\r\n10\r\n$1\r\n1\r\n$1\r\n1\r\n$3\r\n1.5\r\n$1\r\n2\r\n$1\r\n3\r\n$2\r\n-5\r\n",
            "{}",
            d.what
        );
    });
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, words: &'a str) -> &'a str {
        let w: Vec<&str> = words.split(' ').collect();
        w[self.below(w.len())]
    }
}

/// Numbers (some equal in value, unequal in bytes) and words: every element has a
/// distinct `w_` weight and `h_` hash; `v_` weights are random, some missing, some not
/// numbers (used only without ALPHA).
const NUMS: &str = "0 1 2 3 5 8 13 -1 -7 1.5 2.0 1e1 10 007 100";
const ALPHAS: &str = "a b c d aa ab ba B A zz m";

fn setup_stream(d: &mut Diff, r: &mut Rng) {
    for (i, e) in NUMS.split(' ').chain(ALPHAS.split(' ')).enumerate() {
        // Distinct weights: i spread out, written both as numbers and padded strings.
        d.line(&format!("SET w_{e} {}", 1000 - 37 * i as i64));
        d.line(&format!("HSET h_{e} f {:04} g {}", (i * 7919) % 1000, i));
        match r.below(4) {
            0 => {}
            1 => {
                d.line(&format!("SET v_{e} abc"));
            }
            _ => {
                d.line(&format!("SET v_{e} {}", r.below(5)));
            }
        }
    }
}

fn fill(r: &mut Rng, words: &str, n: usize) -> String {
    (0..n).map(|_| r.pick(words)).collect::<Vec<_>>().join(" ")
}

/// A random SORT over a random source, with random options, then its STORE result.
fn step(d: &mut Diff, r: &mut Rng) {
    let alpha_src = r.below(2) == 0;
    let pool = if alpha_src { ALPHAS } else { NUMS };
    let n = 1 + r.below(12);
    let kind = r.below(3);
    let key = ["src_l", "src_s", "src_z"][kind];
    d.line(&format!("DEL {key}"));
    match kind {
        0 => d.line(&format!("RPUSH {key} {}", fill(r, pool, n))),
        1 => d.line(&format!("SADD {key} {}", fill(r, pool, n))),
        _ => {
            let pairs: Vec<String> = (0..n)
                .map(|_| format!("{} {}", r.below(4), r.pick(pool)))
                .collect();
            d.line(&format!("ZADD {key} {}", pairs.join(" ")))
        }
    };
    let mut cmd = vec![
        if r.below(4) == 0 { "SORT_RO" } else { "SORT" }.to_string(),
        key.into(),
    ];
    let alpha = alpha_src || r.below(4) == 0;
    if alpha {
        cmd.push("ALPHA".into());
    }
    // BY: ALPHA takes only distinct, present weights.
    let by = match r.below(5) {
        0 => Some("w_*"),
        1 if !alpha => Some("v_*"),
        1 => Some("h_*->f"),
        2 => Some(if alpha { "h_*->f" } else { "h_*->g" }),
        3 if kind != 1 => Some("nosort"),
        _ => None,
    };
    if let Some(b) = by {
        cmd.push(format!("BY {b}"));
    }
    if r.below(2) == 0 {
        cmd.push(r.pick("ASC DESC").into());
    }
    if r.below(3) == 0 {
        let start = r.below(6) as i64 - 1;
        let count = r.below(8) as i64 - 2;
        cmd.push(format!("LIMIT {start} {count}"));
    }
    for _ in 0..r.below(3) {
        cmd.push(format!("GET {}", r.pick("# w_* h_*->f v_* nosuch_* fixed")));
    }
    let store = cmd[0] == "SORT" && r.below(3) == 0;
    if store {
        cmd.push(format!("STORE {}", r.pick("dst dst2 src_l")));
    }
    let line = cmd.join(" ");
    d.line(&line);
    d.line(&format!("OBJECT ENCODING {key}"));
    if store {
        d.line("LRANGE dst 0 -1");
        d.line("LRANGE dst2 0 -1");
    }
}

#[test]
fn random_sorts_match_redis() {
    each_diff("random stream", &[1, 7919, 424_242], |d, seed| {
        let mut r = Rng(seed);
        setup_stream(d, &mut r);
        for _ in 0..400 {
            step(d, &mut r);
        }
    });
}

#[test]
fn words_split_escapes() {
    assert_eq!(
        words(r#"a \x00b "" c"#),
        vec![b"a".to_vec(), b"\0b".to_vec(), b"".to_vec(), b"c".to_vec()]
    );
}
