//! Snapshots through the real server: SAVE writes one file per shard and a manifest, a
//! restart loads them (with the same or another shard count), and a damaged or incomplete
//! set is refused with its location instead of being half-loaded.

mod common;

use common::{s, Client, Server, TempDir};
use percore_proto::encode::{split_array_reply, split_bulks};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn start(shards: usize, dir: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--dir", dir.path()];
    args.extend_from_slice(extra);
    Server::percore(shards, &args)
}

/// Everything a client can observe of a key: type, value, encoding, and whether it expires.
fn observe(c: &mut Client, db: usize, key: &[u8]) -> (String, String, String) {
    c.q(&format!("SELECT {db}"));
    let get = match s(&c.cmd(&[b"TYPE", key])).as_str() {
        "+hash\r\n" => hash_contents(c, key),
        "+set\r\n" => set_contents(c, key),
        // A list's order is its content.
        "+list\r\n" => format!("list {}", s(&c.cmd(&[b"LRANGE", key, b"0", b"-1"]))),
        // So is a sorted set's, with its scores.
        "+zset\r\n" => format!(
            "zset {}",
            s(&c.cmd(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]))
        ),
        _ => s(&c.cmd(&[b"GET", key])),
    };
    let enc = s(&c.cmd(&[b"OBJECT", b"ENCODING", key]));
    let ttl = s(&c.cmd(&[b"PTTL", key]));
    let ttl = if ttl.starts_with(":-") {
        ttl
    } else {
        ":expires".to_string()
    };
    (get, enc, ttl)
}

/// A hash's fields and values as sorted pairs (a table's order is its own).
fn hash_contents(c: &mut Client, key: &[u8]) -> String {
    let reply = c.cmd(&[b"HGETALL", key]);
    let (n, body) = split_array_reply(&reply).expect("HGETALL answers an array");
    let mut items = Vec::new();
    split_bulks(body, n, &mut items).expect("of bulk strings");
    let mut pairs: Vec<(&[u8], &[u8])> = items.chunks(2).map(|p| (p[0], p[1])).collect();
    pairs.sort();
    format!("hash {pairs:?}")
}

/// A set's members, sorted.
fn set_contents(c: &mut Client, key: &[u8]) -> String {
    let reply = c.cmd(&[b"SMEMBERS", key]);
    let (n, body) = split_array_reply(&reply).expect("SMEMBERS answers an array");
    let mut items = Vec::new();
    split_bulks(body, n, &mut items).expect("of bulk strings");
    items.sort();
    format!("set {items:?}")
}

/// The keys the test writes, with their databases.
fn dataset(c: &mut Client) -> Vec<(usize, Vec<u8>)> {
    let mut keys = Vec::new();
    for db in 0..16usize {
        c.q(&format!("SELECT {db}"));
        for i in 0..40 {
            let k = format!("k{db}:{i}").into_bytes();
            c.cmd(&[b"SET", &k, format!("value-{i}").as_bytes()]);
            keys.push((db, k));
        }
    }
    c.q("SELECT 0");
    let edge: Vec<(&[u8], Vec<Vec<u8>>)> = vec![
        (
            b"bin\x00\xff\r\nkey",
            vec![
                b"SET".to_vec(),
                b"bin\x00\xff\r\nkey".to_vec(),
                b"\x00\x01".to_vec(),
            ],
        ),
        (
            b"empty",
            vec![b"SET".to_vec(), b"empty".to_vec(), b"".to_vec()],
        ),
        (
            b"int",
            vec![
                b"SET".to_vec(),
                b"int".to_vec(),
                b"-9223372036854775808".to_vec(),
            ],
        ),
        (
            b"big",
            vec![b"SET".to_vec(), b"big".to_vec(), vec![b'b'; 300_000]],
        ),
        (
            b"ttl",
            vec![
                b"SET".to_vec(),
                b"ttl".to_vec(),
                b"v".to_vec(),
                b"PX".to_vec(),
                b"1000000".to_vec(),
            ],
        ),
    ];
    for (k, cmd) in edge {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
        assert_eq!(s(&c.cmd(&args)), "+OK\r\n");
        keys.push((0, k.to_vec()));
    }
    c.q("SETRANGE raw 3 abc");
    keys.push((0, b"raw".to_vec()));
    c.q("APPEND appended x");
    c.q("APPEND appended y");
    keys.push((0, b"appended".to_vec()));
    // Hashes: a small one (listpack, insertion order kept), one past the entries limit and
    // one with a long value (hashtable), one with a deadline, in two databases.
    for db in [0usize, 9] {
        c.q(&format!("SELECT {db}"));
        c.q("HSET small b 2 a 1 empty  bin \x00");
        c.cmd(&[b"HSET", b"small", b"bin", b"\x00\xff"]);
        keys.push((db, b"small".to_vec()));
        for i in 0..600 {
            let f = format!("f{i}");
            c.cmd(&[
                b"HSET",
                b"wide",
                f.as_bytes(),
                format!("{}", i * 7).as_bytes(),
            ]);
        }
        keys.push((db, b"wide".to_vec()));
        c.cmd(&[b"HSET", b"long", b"x", &[b'v'; 100]]);
        keys.push((db, b"long".to_vec()));
        c.q("HSET hexp f v");
        c.q("PEXPIRE hexp 1000000");
        keys.push((db, b"hexp".to_vec()));
        // Sets: an intset, one past the intset limit, and words (hashtable).
        c.q("SADD ints 3 -1 100000 -9223372036854775808");
        keys.push((db, b"ints".to_vec()));
        for i in 0..600 {
            c.q(&format!("SADD manyints {i}"));
        }
        keys.push((db, b"manyints".to_vec()));
        c.cmd(&[b"SADD", b"words", b"a", b"", b"\x00\xff"]);
        keys.push((db, b"words".to_vec()));
        // Lists: a short one with binary and empty elements, and one of several nodes with
        // a deadline.
        c.cmd(&[b"RPUSH", b"queue", b"a", b"", b"\x00\xff", b"a", b"007"]);
        keys.push((db, b"queue".to_vec()));
        for i in 0..2000 {
            c.cmd(&[b"LPUSH", b"long-list", format!("element-{i}").as_bytes()]);
        }
        c.q("PEXPIRE long-list 1000000");
        keys.push((db, b"long-list".to_vec()));
        // Sorted sets: a small one (listpack: -0 reads back as 0), one past the entries
        // limit (skiplist: -0 stays -0) with a deadline, and one large enough to be saved
        // in parts (over 1 MB of members).
        c.cmd(&[
            b"ZADD",
            b"zsmall",
            b"1.5",
            b"a",
            b"-0",
            b"z",
            b"-inf",
            b"",
            b"inf",
            b"\x00\xff",
        ]);
        keys.push((db, b"zsmall".to_vec()));
        for chunk in 0..3 {
            let mut cmd: Vec<Vec<u8>> = vec![b"ZADD".to_vec(), b"zwide".to_vec()];
            for i in 0..100 {
                let n = chunk * 100 + i;
                cmd.push(format!("{}", (n % 17) as f64 / 3.0 - 2.0).into_bytes());
                cmd.push(format!("m{n}").into_bytes());
            }
            cmd.extend([b"-0".to_vec(), b"negzero".to_vec()]);
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
            c.cmd(&args);
        }
        c.q("PEXPIRE zwide 1000000");
        keys.push((db, b"zwide".to_vec()));
        for chunk in 0..30 {
            let mut cmd: Vec<Vec<u8>> = vec![b"ZADD".to_vec(), b"zhuge".to_vec()];
            for i in 0..500 {
                cmd.push(format!("{}", (chunk * 500 + i) % 1000).into_bytes());
                cmd.push(format!("{:0>90}", chunk * 500 + i).into_bytes());
            }
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
            c.cmd(&args);
        }
        keys.push((db, b"zhuge".to_vec()));
    }
    c.q("SELECT 0");
    keys
}

/// `rdb_changes_since_last_save` counts keys changed, as Redis's `dirty`: an MSET of three
/// keys or a DEL of two is three or two changes, so save points fire when they would on
/// Redis. Compared with redis-server on commands where both count the same, on 3 shards.
#[test]
fn changes_since_the_last_save_count_keys_as_redis_does() {
    let redis_dir = TempDir::new("changes-redis");
    let Some(redis) = common::redis_or_skip_with("changes count", &["--dir", redis_dir.path()])
    else {
        return;
    };
    let dir = TempDir::new("changes");
    let srv = start(3, &dir, &[]);
    let changes = |c: &mut Client| {
        let info = s(&c.q("INFO persistence"));
        info.lines()
            .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
            .expect("rdb_changes_since_last_save")
            .trim()
            .parse::<u64>()
            .expect("a count")
    };
    let (mut p, mut r) = (srv.client(), redis.client());
    for c in [&mut p, &mut r] {
        assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    }
    let steps: &[(&str, u64)] = &[
        ("SET a 1", 1),
        ("MSET b 1 c 2 d 3 e 4 f 5", 6),
        ("DEL b c d", 9),
        ("SET a 2", 10),
        ("MSET {t}x 1 {t}y 2", 12),
        ("UNLINK e f", 14),
    ];
    for (cmd, want) in steps {
        p.q(cmd);
        r.q(cmd);
        assert_eq!(changes(&mut r), *want, "redis-server after {cmd}");
        assert_eq!(changes(&mut p), *want, "percore after {cmd}");
    }
    assert_eq!(s(&p.q("SAVE")), "+OK\r\n");
    assert_eq!(changes(&mut p), 0);
}

#[test]
fn save_then_restart_with_4_2_and_1_shards_restores_everything() {
    let dir = TempDir::new("roundtrip");
    let mut srv = start(4, &dir, &[]);
    let mut c = srv.client();
    let keys = dataset(&mut c);
    // A key that will have expired by the time the set is loaded.
    c.q("SET short v PX 300");
    let want: Vec<_> = keys.iter().map(|(db, k)| observe(&mut c, *db, k)).collect();
    let before = s(&c.q("LASTSAVE"));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    assert_ne!(s(&c.q("LASTSAVE")), before, "LASTSAVE moves");
    assert!(s(&c.q("INFO persistence")).contains("rdb_changes_since_last_save:0\r\n"));
    c.q("SET after-save 1");
    assert!(s(&c.q("INFO persistence")).contains("rdb_changes_since_last_save:1\r\n"));
    srv.terminate();
    std::thread::sleep(Duration::from_millis(400));

    for shards in [4, 2, 1] {
        let srv = start(shards, &dir, &[]);
        let mut c = srv.client();
        for ((db, k), w) in keys.iter().zip(&want) {
            assert_eq!(
                &observe(&mut c, *db, k),
                w,
                "{shards} shards, db {db}, key {k:?}"
            );
        }
        c.q("SELECT 0");
        assert_eq!(s(&c.q("EXISTS short")), ":0\r\n", "expired before the load");
        assert_eq!(
            s(&c.q("EXISTS after-save")),
            ":0\r\n",
            "written after the save"
        );
        let db0 = keys.iter().filter(|(db, _)| *db == 0).count();
        assert_eq!(s(&c.q("DBSIZE")), format!(":{db0}\r\n"));
    }
}

fn files(dir: &TempDir) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcs"))
        .collect();
    v.sort();
    v
}

fn start_fails(dir: &TempDir, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args([
            "--port",
            &common::free_port().to_string(),
            "--shards",
            "2",
            "--dir",
            dir.path(),
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server started on a damaged set");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn check(dir: &TempDir) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["check-snapshot", dir.path()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn saved_set(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let mut srv = start(2, &dir, &[]);
    let mut c = srv.client();
    for i in 0..3000 {
        c.q(&format!("SET key{i} {}", "v".repeat(100)));
    }
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    srv.terminate();
    std::thread::sleep(Duration::from_millis(300));
    dir
}

/// Collections large enough to be written in parts (a few MB each) come back whole after
/// a restart, on the same and on another shard count; check-snapshot counts each key once,
/// not each part, and the set of these repetitive values is compressed well below their
/// size.
#[test]
fn large_collections_written_in_parts_restore_and_count_once() {
    let dir = TempDir::new("parts");
    let mut srv = start(2, &dir, &[]);
    let mut c = srv.client();
    let mut want = Vec::new();
    for (key, cmd) in [("l", "RPUSH"), ("h", "HSET"), ("s", "SADD"), ("z", "ZADD")] {
        for batch in 0..60 {
            let mut args: Vec<Vec<u8>> = vec![cmd.into(), key.into()];
            for i in batch * 1000..(batch + 1) * 1000 {
                if cmd == "ZADD" {
                    args.push(format!("{}", i % 977).into_bytes());
                }
                args.push(format!("element-{i:08}-{}", "x".repeat(24)).into_bytes());
                if cmd == "HSET" {
                    args.push(format!("value-{i}").into_bytes());
                }
            }
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            c.cmd(&args);
        }
    }
    c.q("SET plain v");
    c.q("PEXPIRE l 100000000");
    for key in ["l", "h", "s", "z", "plain"] {
        want.push((key, observe(&mut c, 0, key.as_bytes())));
    }
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    srv.terminate();
    let bytes: u64 = files(&dir)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(bytes < 4 << 20, "{bytes} bytes for about 10 MB of elements");
    let (ok, out) = check(&dir);
    assert!(ok, "{out}");
    let keys: u64 = out
        .lines()
        .filter_map(|l| {
            l.split_once(" keys (")?
                .0
                .rsplit(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(keys, 5, "{out}");
    assert!(out.contains("1 with a deadline"), "{out}");
    for shards in [2, 1] {
        let srv = start(shards, &dir, &[]);
        let mut c = srv.client();
        for (key, seen) in &want {
            assert_eq!(
                &observe(&mut c, 0, key.as_bytes()),
                seen,
                "{key} on {shards} shards"
            );
        }
        assert_eq!(s(&c.q("DBSIZE")), ":5\r\n");
    }
}

#[test]
fn a_flipped_byte_or_a_truncation_is_refused_with_its_location() {
    let dir = saved_set("damage");
    let (ok, report) = check(&dir);
    assert!(ok, "{report}");
    assert!(report.contains("all 2 files verified"), "{report}");
    let f = files(&dir)[1].clone();
    let good = std::fs::read(&f).unwrap();

    // A flipped byte deep in the file: the block and its offset are named.
    let mut bad = good.clone();
    let at = good.len() / 2;
    bad[at] ^= 0x40;
    std::fs::write(&f, &bad).unwrap();
    let err = start_fails(&dir, &[]);
    let name = f.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(name) && err.contains("block ") && err.contains("at offset "),
        "{err}"
    );
    assert!(
        err.contains("load-corrupt-snapshot"),
        "says how to proceed: {err}"
    );
    let (ok, report) = check(&dir);
    assert!(!ok && report.contains("1 of 2 files damaged"), "{report}");

    // Told to, the server starts with the valid part: the other shard's keys.
    let srv = start(2, &dir, &["--load-corrupt-snapshot", "yes"]);
    let n: i64 = s(&srv.client().q("DBSIZE"))
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!(n > 1000 && n < 3000, "{n} keys");
    drop(srv);

    // A truncated file.
    std::fs::write(&f, &good[..good.len() - 7]).unwrap();
    let err = start_fails(&dir, &[]);
    assert!(err.contains(name) && err.contains("truncated"), "{err}");
    std::fs::write(&f, &good).unwrap();
    assert!(check(&dir).0);
}

/// A crash while saving leaves files of an unfinished set next to the previous one: the
/// previous set still loads whole, and files no manifest names are never loaded.
#[test]
fn an_unfinished_set_never_replaces_or_mixes_with_the_previous_one() {
    let dir = saved_set("crash");
    // What a SAVE killed before its manifest leaves behind: new files and temporaries.
    let old = files(&dir);
    for (i, f) in old.iter().enumerate() {
        let stray = dir.0.join(format!("percore-99999999999999-{i}-of-2.pcs"));
        std::fs::write(&stray, b"half-written").unwrap();
        std::fs::copy(
            f,
            dir.0
                .join(format!("percore-99999999999999-{i}-of-2.pcs.tmp")),
        )
        .unwrap();
    }
    let srv = start(2, &dir, &[]);
    assert_eq!(s(&srv.client().q("DBSIZE")), ":3000\r\n");
    drop(srv);

    // Without its manifest, a set is not loaded at all.
    std::fs::remove_file(dir.0.join("percore.manifest")).unwrap();
    let srv = start(2, &dir, &[]);
    assert_eq!(s(&srv.client().q("DBSIZE")), ":0\r\n");
    let (ok, report) = check(&dir);
    assert!(!ok, "{report}");
    assert!(Path::new(&dir.0).exists());
}

#[test]
fn shutdown_save_persists_and_the_next_save_replaces_the_set() {
    let dir = TempDir::new("shutdown");
    let srv = start(2, &dir, &[]);
    let mut c = srv.client();
    c.q("SET a 1");
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    let first = files(&dir);
    c.q("SET b 2");
    c.send_raw(b"SHUTDOWN SAVE\r\n");
    assert!(c.closed(), "SHUTDOWN closes the connection");
    drop(srv);
    std::thread::sleep(Duration::from_millis(300));
    let second = files(&dir);
    assert_eq!(second.len(), 2);
    assert!(
        first.iter().all(|f| !second.contains(f)),
        "the previous set's files are gone"
    );
    let srv = start(2, &dir, &[]);
    let mut c = srv.client();
    assert_eq!(s(&c.q("MGET a b")), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
}

fn info_field(c: &mut Client, field: &str) -> String {
    let info = s(&c.q("INFO persistence"));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
}

fn set_many(c: &mut Client, from: usize, to: usize, value: &str) {
    for chunk in (from..to).collect::<Vec<_>>().chunks(1000) {
        let mut req = Vec::new();
        for i in chunk {
            req.extend_from_slice(&common::encode(&[
                b"SET",
                format!("key{i}").as_bytes(),
                value.as_bytes(),
            ]));
        }
        c.send_raw(&req);
        for _ in chunk {
            assert_eq!(c.read_reply(), b"+OK\r\n");
        }
    }
}

fn wait_bgsave(c: &mut Client) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while info_field(c, "rdb_bgsave_in_progress") != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "BGSAVE did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info_field(c, "rdb_last_bgsave_status"), "ok");
}

/// BGSAVE without fork: the set is the keyspace at the moment BGSAVE answered, although
/// every key is overwritten or deleted while the shards are still being walked.
#[test]
fn bgsave_is_point_in_time_while_writes_go_on() {
    let dir = TempDir::new("bgsave");
    // 5 µs per key: the walk of 100k keys per shard takes about half a second, so the
    // writes below meet it for sure.
    let mut srv = start(2, &dir, &["--rdb-key-save-delay", "5"]);
    let mut c = srv.client();
    const N: usize = 200_000;
    set_many(&mut c, 0, N, "old");
    assert_eq!(s(&c.q("BGSAVE")), "+Background saving started\r\n");
    assert_eq!(
        s(&c.q("BGSAVE")),
        "-ERR Background save already in progress\r\n"
    );
    // Overwrite the first half while the walk runs, and note that it did run meanwhile.
    set_many(&mut c, 0, 5_000, "new");
    let overlapped = info_field(&mut c, "rdb_bgsave_in_progress") == "1";
    set_many(&mut c, 5_000, N / 2, "new");
    for i in (N / 2..N).step_by(3) {
        c.q(&format!("DEL key{i}"));
    }
    c.q("SET born-after 1");
    wait_bgsave(&mut c);
    assert!(
        overlapped,
        "the writes began while BGSAVE was walking the shards"
    );
    assert!(s(&c.q("BGSAVE NOW")).starts_with("-ERR syntax error"));
    srv.terminate();
    std::thread::sleep(Duration::from_millis(300));

    let srv = start(2, &dir, &["--rdb-key-save-delay", "5"]);
    let mut c = srv.client();
    assert_eq!(s(&c.q("DBSIZE")), format!(":{N}\r\n"));
    assert_eq!(s(&c.q("EXISTS born-after")), ":0\r\n");
    for i in (0..N).step_by(997) {
        assert_eq!(
            s(&c.q(&format!("GET key{i}"))),
            "$3\r\nold\r\n",
            "key{i} as it was when BGSAVE began"
        );
    }
    // SCHEDULE while one runs queues the next one.
    assert_eq!(s(&c.q("BGSAVE")), "+Background saving started\r\n");
    assert_eq!(
        s(&c.q("BGSAVE SCHEDULE")),
        "+Background saving scheduled\r\n"
    );
}

/// `n` members into each of the hash "big-h", the set "big-s" and the sorted set "big-z",
/// pipelined 1,000 per command.
fn big_collections(c: &mut Client, n: usize) {
    let mut req = Vec::new();
    let mut replies = 0;
    for (key, cmd) in [("big-h", "HSET"), ("big-s", "SADD"), ("big-z", "ZADD")] {
        for lo in (0..n).step_by(1000) {
            let mut args: Vec<Vec<u8>> = vec![cmd.into(), key.into()];
            for i in lo..(lo + 1000).min(n) {
                if cmd == "ZADD" {
                    args.push(format!("{}", i * 7919 % n).into_bytes());
                }
                args.push(format!("m{i}").into_bytes());
                if cmd == "HSET" {
                    args.push(format!("value-{i}").into_bytes());
                }
            }
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            req.extend_from_slice(&common::encode(&args));
            replies += 1;
        }
    }
    c.send_raw(&req);
    for _ in 0..replies {
        assert!(!c.read_reply().starts_with(b"-"));
    }
}

/// BGSAVE beside a hash, a set and a sorted set of 50,000 members each, which the snapshot
/// saves member by member (a walk of each one's own table) while they are written to,
/// member by member and whole (one deleted, one overwritten): the set of files holds them
/// as they were when BGSAVE answered, and DEBUG RELOAD brings back what they hold now.
#[test]
fn bgsave_beside_large_collections_being_written_is_point_in_time() {
    let dir = TempDir::new("bgsave-big");
    let mut srv = start(1, &dir, &["--rdb-key-save-delay", "20"]);
    let mut c = srv.client();
    big_collections(&mut c, 50_000);
    c.q("COPY big-h gone-h");
    c.q("COPY big-z gone-z");
    set_many(&mut c, 0, 20_000, "old");
    let keys = ["big-h", "big-s", "big-z", "gone-h", "gone-z"];
    let before: Vec<_> = keys
        .iter()
        .map(|k| observe(&mut c, 0, k.as_bytes()))
        .collect();
    assert_eq!(s(&c.q("BGSAVE")), "+Background saving started\r\n");
    let mut overlapped = false;
    for i in 0..500 {
        for w in [
            format!("HSET big-h m{} new", i * 7),
            format!("HDEL big-h m{}", i * 7 + 1),
            format!("HINCRBY big-h n{i} 1"),
            format!("SADD big-s n{i}"),
            format!("SREM big-s m{}", i * 3),
            format!("ZINCRBY big-z 0.5 m{}", i * 5),
            format!("ZREM big-z m{}", i * 5 + 1),
        ] {
            assert!(!c.q(&w).starts_with(b"-"), "{w}");
        }
        if i == 10 {
            c.q("DEL gone-h");
            c.q("SET gone-z overwritten");
            overlapped = info_field(&mut c, "rdb_bgsave_in_progress") == "1";
        }
    }
    wait_bgsave(&mut c);
    assert!(overlapped, "the writes met the snapshot");
    let now: Vec<_> = keys
        .iter()
        .map(|k| observe(&mut c, 0, k.as_bytes()))
        .collect();
    srv.terminate();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out) = check(&dir);
    assert!(ok, "{out}");

    let srv = start(1, &dir, &["--enable-debug-command", "yes"]);
    let mut c = srv.client();
    for (k, want) in keys.iter().zip(&before) {
        assert!(
            &observe(&mut c, 0, k.as_bytes()) == want,
            "{k} as it was when BGSAVE began"
        );
    }
    // Back to what the writes made of them, then DEBUG RELOAD (a SAVE and a load).
    c.q("DEL gone-h");
    c.q("SET gone-z overwritten");
    for i in 0..500 {
        c.q(&format!("HSET big-h m{} new", i * 7));
        c.q(&format!("HDEL big-h m{}", i * 7 + 1));
        c.q(&format!("HINCRBY big-h n{i} 1"));
        c.q(&format!("SADD big-s n{i}"));
        c.q(&format!("SREM big-s m{}", i * 3));
        c.q(&format!("ZINCRBY big-z 0.5 m{}", i * 5));
        c.q(&format!("ZREM big-z m{}", i * 5 + 1));
    }
    assert_eq!(s(&c.q("DEBUG RELOAD")), "+OK\r\n");
    for (k, want) in keys.iter().zip(&now) {
        assert!(
            &observe(&mut c, 0, k.as_bytes()) == want,
            "{k} after DEBUG RELOAD"
        );
    }
}

/// kill -9 in the middle of a BGSAVE: the previous set still loads, whole.
#[test]
fn a_kill_during_bgsave_leaves_the_previous_set_whole() {
    let dir = TempDir::new("kill");
    let mut srv = start(2, &dir, &["--rdb-key-save-delay", "5"]);
    let mut c = srv.client();
    set_many(&mut c, 0, 1000, "first");
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    set_many(&mut c, 1000, 200_000, "second");
    assert_eq!(s(&c.q("BGSAVE")), "+Background saving started\r\n");
    let during = info_field(&mut c, "rdb_bgsave_in_progress") == "1";
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(srv.pid() as i32, libc::SIGKILL) };
    let _ = srv.terminate();
    assert!(during, "killed while the BGSAVE ran");
    let srv = start(2, &dir, &[]);
    let mut c = srv.client();
    assert_eq!(s(&c.q("DBSIZE")), ":1000\r\n", "the previous set, whole");
    assert!(check(&dir).0);
}

/// `save <seconds> <changes>`: writes trigger a BGSAVE on their own, and SHUTDOWN saves.
#[test]
fn save_points_snapshot_by_themselves() {
    let dir = TempDir::new("points");
    let srv = start(2, &dir, &["--save", "1 1"]);
    let mut c = srv.client();
    assert_eq!(
        s(&c.q("CONFIG GET save")),
        "*2\r\n$4\r\nsave\r\n$3\r\n1 1\r\n"
    );
    c.q("SET a 1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dir.0.join("percore.manifest").exists() {
        assert!(std::time::Instant::now() < deadline, "no automatic save");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_bgsave(&mut c);
    c.q("SET b 2");
    c.send_raw(b"SHUTDOWN\r\n");
    assert!(c.closed());
    drop(srv);
    std::thread::sleep(Duration::from_millis(300));
    let srv = start(2, &dir, &[]);
    assert_eq!(
        s(&srv.client().q("MGET a b")),
        "*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
    assert_eq!(
        s(&srv.client().cmd(&[b"CONFIG", b"SET", b"save", b""])),
        "+OK\r\n"
    );
    assert_eq!(
        s(&srv.client().q("CONFIG GET save")),
        "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
}
