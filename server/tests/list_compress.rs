//! `list-compress-depth`: lists whose interior nodes are stored compressed, through the real
//! server. Differential against a real `redis-server` 7.0 given the same `list-compress-depth
//! 1` and `list-max-listpack-size 4` (small nodes, so lists of a few hundred elements have
//! many interior nodes, and elements long and repetitive enough that those nodes compress):
//! random commands that read and edit the middle of lists (LINDEX, LSET, LINSERT, LREM, LPOS,
//! LRANGE, LTRIM) and their ends, with the depth changed by CONFIG SET on the way, replies
//! compared byte for byte. Then percore alone: the memory a long list saves, a DEBUG RELOAD
//! (a snapshot of compressed nodes written and loaded) and DEBUG OBJECT's fields. Skipped
//! with a loud message when redis-server is absent; PERCORE_REQUIRE_REDIS=1 (CI) turns the
//! skip into a failure.

mod common;

use common::{esc, redis_or_skip, s, Client, Rng, Server, TempDir};

const FLAGS: &[&str] = &[
    "--list-compress-depth",
    "1",
    "--list-max-listpack-size",
    "4",
];

/// Sends `args` to both and asserts the same reply bytes.
fn same(r: &mut Client, p: &mut Client, args: &[Vec<u8>], label: &str) -> Vec<u8> {
    let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let (rr, pr) = (r.cmd(&argv), p.cmd(&argv));
    let shown: Vec<String> = args.iter().map(|a| esc(a)).collect();
    assert_eq!(
        esc(&pr),
        esc(&rr),
        "{label}: {}: percore vs redis",
        shown.join(" ")
    );
    pr
}

fn words(line: &str) -> Vec<Vec<u8>> {
    line.split(' ').map(|w| w.as_bytes().to_vec()).collect()
}

/// An element: mostly "element-number-" and a number (a node of four compresses by more
/// than Redis's margin), now and then a long run or a short word (nodes that stay plain).
fn element(r: &mut Rng) -> Vec<u8> {
    match r.below(20) {
        0 => vec![b'z'; 300],
        1 => b"x".to_vec(),
        2 => (0..40).map(|_| r.next() as u8).collect(),
        _ => format!("element-number-{:06}", r.below(400)).into_bytes(),
    }
}

/// One random command on the keys `a` and `b`.
fn command(r: &mut Rng) -> Vec<Vec<u8>> {
    let key = if r.below(4) == 0 { "b" } else { "a" }.as_bytes().to_vec();
    let idx = |r: &mut Rng| (r.below(500) as i64 - 250).to_string().into_bytes();
    let mut c: Vec<Vec<u8>> = Vec::new();
    let mut push = |name: &str, rest: Vec<Vec<u8>>| {
        c.push(name.as_bytes().to_vec());
        c.push(key.clone());
        c.extend(rest);
    };
    match r.below(17) {
        0 | 1 => push("RPUSH", (0..1 + r.below(30)).map(|_| element(r)).collect()),
        2 => push("LPUSH", (0..1 + r.below(30)).map(|_| element(r)).collect()),
        3 => push("LINDEX", vec![idx(r)]),
        4 => push("LSET", vec![idx(r), element(r)]),
        5 => {
            let w = if r.below(2) == 0 { "BEFORE" } else { "AFTER" };
            push("LINSERT", vec![w.into(), element(r), element(r)])
        }
        6 => push(
            "LREM",
            vec![(r.below(5) as i64 - 2).to_string().into(), element(r)],
        ),
        7 => push("LPOS", vec![element(r)]),
        8 => push(
            "LPOS",
            vec![
                element(r),
                "RANK".into(),
                ["-1", "2", "-3", "1"][r.below(4)].into(),
                "COUNT".into(),
                r.below(4).to_string().into(),
            ],
        ),
        9 | 10 => {
            let a = idx(r);
            let b = (r.below(200) as i64 - 20).to_string().into_bytes();
            push("LRANGE", vec![a, b])
        }
        11 => push("LPOP", vec![r.below(6).to_string().into()]),
        12 => push("RPOP", vec![r.below(6).to_string().into()]),
        13 if r.below(4) == 0 => push("LTRIM", vec![r.below(20).to_string().into(), "-3".into()]),
        14 => push("LMOVE", vec![b"b".to_vec(), "LEFT".into(), "RIGHT".into()]),
        15 => push("LLEN", vec![]),
        _ => push("LRANGE", vec!["0".into(), "-1".into()]),
    }
    c
}

#[test]
fn random_streams_over_compressed_nodes_match_redis() {
    let Some(redis) = redis_or_skip("list-compress-depth differential: did not run") else {
        return;
    };
    let mut r = redis.client();
    for kv in FLAGS.chunks(2) {
        let set = format!("CONFIG SET {} {}", kv[0].trim_start_matches("--"), kv[1]);
        assert_eq!(s(&r.q(&set)), "+OK\r\n", "{set}");
    }
    for shards in [1, 3] {
        let percore = Server::percore(shards, FLAGS);
        let mut p = percore.client();
        same(&mut r, &mut p, &words("FLUSHALL"), "start");
        // The parameter's range, errors and replies, as Redis's; back to 1 after.
        for line in [
            "CONFIG GET list-compress-depth",
            "CONFIG SET list-compress-depth -1",
            "CONFIG SET list-compress-depth 2147483648",
            "CONFIG SET list-compress-depth x",
            "CONFIG SET list-compress-depth 3",
            "CONFIG GET list-compress-depth",
            "CONFIG SET list-compress-depth 1",
        ] {
            same(&mut r, &mut p, &words(line), "config");
        }
        for seed in [1u64, 0x5eed] {
            let label = format!("{shards} shard(s), seed {seed}");
            let mut rng = Rng(seed);
            for step in 0..2500 {
                // Depth changes apply to the nodes lists touch next, in both servers.
                if step % 700 == 350 {
                    let depth = ["0", "2", "1"][step / 700 % 3];
                    let set = words(&format!("CONFIG SET list-compress-depth {depth}"));
                    same(&mut r, &mut p, &set, &label);
                }
                same(&mut r, &mut p, &command(&mut rng), &label);
                if step % 100 == 0 {
                    for key in ["a", "b"] {
                        same(
                            &mut r,
                            &mut p,
                            &words(&format!("LRANGE {key} 0 -1")),
                            &label,
                        );
                        same(
                            &mut r,
                            &mut p,
                            &words(&format!("OBJECT ENCODING {key}")),
                            &label,
                        );
                    }
                }
            }
            same(
                &mut r,
                &mut p,
                &words("CONFIG SET list-compress-depth 1"),
                &label,
            );
            same(&mut r, &mut p, &words("LRANGE a 0 -1"), &label);
            same(&mut r, &mut p, &words("LRANGE b 0 -1"), &label);
            same(&mut r, &mut p, &words("FLUSHALL"), &label);
        }
    }
}

/// A list of `n` elements of the measured row ("e" + 15 digits), pushed 100 at a time.
fn fill(c: &mut Client, key: &str, n: usize) {
    for start in (0..n).step_by(100) {
        let mut line = format!("RPUSH {key}");
        for i in start..(start + 100).min(n) {
            line.push_str(&format!(" e{i:015}"));
        }
        c.q(&line);
    }
}

fn int(reply: &[u8]) -> i64 {
    let t = s(reply);
    t.trim_start_matches(':')
        .trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("{t}"))
}

#[test]
fn a_compressed_list_saves_memory_and_survives_a_reload() {
    let dir = TempDir::new("list-compress");
    let srv = Server::percore(1, &["--dir", dir.path(), "--enable-debug-command", "yes"]);
    let mut c = srv.client();
    // percore's default depth compresses.
    assert_eq!(
        s(&c.q("CONFIG GET list-compress-depth")),
        "*2\r\n$19\r\nlist-compress-depth\r\n$1\r\n1\r\n"
    );
    fill(&mut c, "packed", 50_000);
    c.q("CONFIG SET list-compress-depth 0");
    fill(&mut c, "plain", 50_000);
    c.q("CONFIG SET list-compress-depth 1");
    let packed = int(&c.q("MEMORY USAGE packed"));
    let plain = int(&c.q("MEMORY USAGE plain"));
    assert!(
        packed * 2 < plain,
        "compressed {packed} bytes vs {plain} plain"
    );
    let digest = s(&c.q("DEBUG DIGEST"));
    let middle = s(&c.q("LRANGE packed 24990 25010"));
    assert!(middle.contains("e000000000024990"), "{middle}");
    assert_eq!(
        s(&c.q("LINDEX packed 30000")),
        "$16\r\ne000000000030000\r\n"
    );
    // DEBUG OBJECT says the list is compressed, as Redis's ql_compressed does.
    let info = s(&c.q("DEBUG OBJECT packed"));
    assert!(info.contains(" ql_compressed:1 "), "{info}");
    assert!(info.contains(" ql_uncompressed_size:900000"), "{info}");
    // Saved, flushed and loaded: the same elements, compressed again, the plain list too
    // (it loads under the depth of the moment).
    assert_eq!(s(&c.q("DEBUG RELOAD")), "+OK\r\n");
    assert_eq!(s(&c.q("DEBUG DIGEST")), digest);
    assert_eq!(s(&c.q("LRANGE packed 24990 25010")), middle);
    let reloaded = int(&c.q("MEMORY USAGE packed"));
    assert!(reloaded * 2 < plain, "reloaded {reloaded} vs {plain} plain");
    assert!(int(&c.q("MEMORY USAGE plain")) * 2 < plain);
    // Emptied from both ends through the compressed interior.
    for _ in 0..500 {
        c.q("LPOP packed 100");
        c.q("RPOP plain 100");
    }
    assert_eq!(s(&c.q("EXISTS packed plain")), ":0\r\n");
}
