//! Redis RDB files in and out, against a real `redis-server` 7.0: Redis writes an RDB
//! holding every type and encoding (small and large collections, integer and compressible
//! strings, deadlines, several databases, a function library); percore started on it with
//! 1 and 4 shards (`--import-rdb`, and `dir` + `dbfilename` naming it) holds the same keys,
//! types, encodings, values and deadlines. The reverse: the RDB percore writes
//! (`rdb-export` after SAVE, and `percore export-rdb`) passes `redis-check-rdb` and
//! redis-server loads the same data from it. Damaged and truncated files refuse the start
//! with the offset.

mod common;

use common::{redis_or_skip_with, Launch, Server, TempDir};
use redis::{Connection, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LIBRARY: &str =
    "#!lua name=mylib\nredis.register_function('echo1', function(keys, args) return args[1] end)";

/// The data set: commands run on the server that writes the file.
fn populate(c: &mut Connection) {
    let run = |c: &mut Connection, args: &[&str]| {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let _: Value = cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    };
    let big_text = "abcdefgh".repeat(300);
    let random: String = (0..2000u32)
        .map(|i| char::from(b'!' + ((i.wrapping_mul(2654435761) >> 13) % 90) as u8))
        .collect();
    for (k, v) in [
        ("s:small", "hello"),
        ("s:int", "12345"),
        ("s:neg", "-70000"),
        ("s:bigint", "12345678901"),
        ("s:zeros", "007"),
        ("s:empty", ""),
        ("s:compressible", big_text.as_str()),
        ("s:random", random.as_str()),
    ] {
        run(c, &["SET", k, v]);
    }
    let bin: Vec<u8> = (0..=255u8).cycle().take(700).collect();
    let _: () = redis::cmd("SET").arg("s:bin").arg(bin).query(c).unwrap();
    for i in 0..5 {
        run(c, &["RPUSH", "l:small", &format!("e{i}")]);
        run(c, &["SADD", "set:ints", &(i * 7).to_string()]);
        run(c, &["SADD", "set:small", &format!("m{i}")]);
        run(c, &["HSET", "h:small", &format!("f{i}"), &i.to_string()]);
        run(
            c,
            &["ZADD", "z:small", &format!("{}.5", i), &format!("m{i}")],
        );
    }
    for i in 0..700 {
        let long = format!("{i}-{}", "x".repeat(i % 90));
        run(c, &["RPUSH", "l:big", &long]);
        run(c, &["SADD", "set:big", &long]);
        run(c, &["SADD", "set:bigints", &(i * 1000).to_string()]);
        run(c, &["HSET", "h:big", &format!("f{i}"), &long]);
        run(c, &["ZADD", "z:big", &(i as f64 / 3.0).to_string(), &long]);
    }
    run(c, &["ZADD", "z:small", "inf", "top", "-inf", "bottom"]);
    run(c, &["SET", "t:ms", "v", "PX", "5000000"]);
    run(c, &["SET", "t:abs", "v", "EXAT", "4102444800"]);
    run(c, &["RPUSH", "t:list", "a", "b"]);
    run(c, &["PEXPIRE", "t:list", "9000000"]);
    run(c, &["SET", "t:gone", "v", "PX", "1"]);
    for db in ["3", "15"] {
        run(c, &["SELECT", db]);
        run(c, &["SET", &format!("db{db}:s"), db]);
        run(c, &["HSET", &format!("db{db}:h"), "a", "1", "b", "2"]);
        run(c, &["SET", &format!("db{db}:t"), "v", "PX", "7000000"]);
    }
    run(c, &["SELECT", "0"]);
    run(c, &["FUNCTION", "LOAD", LIBRARY]);
    // Let `t:gone` expire before the file is written or read.
    std::thread::sleep(Duration::from_millis(5));
}

/// Everything a client sees of database `db`: each key with its type, encoding, value
/// (collections sorted where order is not part of the value) and deadline.
fn view(c: &mut Connection, db: u32) -> Vec<String> {
    let _: () = redis::cmd("SELECT").arg(db).query(c).unwrap();
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let t: String = redis::cmd("TYPE").arg(&k).query(c).unwrap();
        let enc: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(&k)
            .query(c)
            .unwrap();
        let at: i64 = redis::cmd("PEXPIRETIME").arg(&k).query(c).unwrap();
        let value: Vec<Vec<u8>> = match t.as_str() {
            "string" => vec![redis::cmd("GET").arg(&k).query(c).unwrap()],
            "list" => redis::cmd("LRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query(c)
                .unwrap(),
            "set" => {
                let mut m: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&k).query(c).unwrap();
                m.sort();
                m
            }
            "hash" => {
                let flat: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(&k).query(c).unwrap();
                let mut pairs: Vec<Vec<u8>> = flat.chunks(2).map(|p| p.concat()).collect();
                pairs.sort();
                pairs
            }
            "zset" => redis::cmd("ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(c)
                .unwrap(),
            other => panic!("unexpected type {other}"),
        };
        let digest = value
            .iter()
            .map(|v| v.escape_ascii().to_string())
            .collect::<Vec<_>>()
            .join(",");
        out.push(format!(
            "{} {t} {enc} at={at} [{} items] {digest}",
            k.escape_ascii(),
            value.len()
        ));
    }
    let _: () = redis::cmd("SELECT").arg(0).query(c).unwrap();
    out
}

/// Compares every database and the function library of `a` and `b`.
fn assert_same(a: &mut Connection, b: &mut Connection, what: &str) {
    let mut keys = 0;
    for db in 0..16 {
        let (va, vb) = (view(a, db), view(b, db));
        for (x, y) in va.iter().zip(&vb) {
            assert_eq!(x, y, "{what}: db {db}");
        }
        assert_eq!(va.len(), vb.len(), "{what}: db {db}: {va:?} vs {vb:?}");
        keys += va.len();
    }
    assert!(keys >= 20, "{what}: only {keys} keys");
    for c in [a, b] {
        let r: String = redis::cmd("FCALL")
            .arg("echo1")
            .arg(0)
            .arg("back")
            .query(c)
            .unwrap_or_else(|e| panic!("{what}: FCALL: {e}"));
        assert_eq!(r, "back", "{what}");
    }
}

/// A redis-server with its files in `dir` (`dump.rdb`).
fn redis_in(dir: &TempDir) -> Option<Server> {
    redis_or_skip_with(
        "RDB files: did not run",
        &["--dir", dir.path(), "--dbfilename", "dump.rdb"],
    )
}

/// A redis-server that has saved [`populate`]'s data as `dump.rdb` in its directory.
fn redis_saved(tag: &str) -> Option<(TempDir, Server)> {
    let dir = TempDir::new(tag);
    let redis = redis_in(&dir)?;
    let mut rc = redis.redis_client();
    populate(&mut rc);
    let _: () = redis::cmd("SAVE").query(&mut rc).unwrap();
    Some((dir, redis))
}

fn percore(args: &[&str], log: &Path) -> Result<Server, common::StartFailure> {
    let port = common::free_port();
    let mut all = vec!["--port".to_string(), port.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    Launch::percore(port, &refs).log(log).try_start()
}

#[test]
fn redis_rdb_files_load_into_percore_with_every_type_ttl_and_database() {
    let Some((dir, redis)) = redis_saved("rdb-in") else {
        return;
    };
    let mut rc = redis.redis_client();
    let rdb = dir.0.join("dump.rdb");
    let log = dir.0.join("percore.log");
    for shards in ["1", "4"] {
        let p = percore(
            &[
                "--shards",
                shards,
                "--import-rdb",
                rdb.to_str().unwrap(),
                "--dir",
                dir.path(),
            ],
            &log,
        )
        .unwrap_or_else(|f| panic!("{f:?}"));
        assert_same(
            &mut rc,
            &mut p.redis_client(),
            &format!("{shards} shard(s), --import-rdb"),
        );
    }
    // Once percore has saved, its set is what it starts from, --import-rdb or not.
    let args = [
        "--shards",
        "2",
        "--import-rdb",
        rdb.to_str().unwrap(),
        "--dir",
        dir.path(),
    ];
    let mut p = percore(&args, &log).unwrap_or_else(|f| panic!("{f:?}"));
    let mut pc = p.redis_client();
    let _: () = redis::cmd("DEL").arg("s:small").query(&mut pc).unwrap();
    let _: () = redis::cmd("SAVE").query(&mut pc).unwrap();
    p.terminate();
    let p = percore(&args, &log).unwrap_or_else(|f| panic!("{f:?}"));
    let n: i64 = redis::cmd("EXISTS")
        .arg("s:small")
        .query(&mut p.redis_client())
        .unwrap();
    assert_eq!(n, 0, "the RDB file was imported over the snapshot set");
    drop(p);
    assert!(std::fs::read_to_string(&log).unwrap().contains("ignored"));
    for f in std::fs::read_dir(&dir.0).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if name.starts_with("percore-") || name == "percore.manifest" {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
    // `dir` + `dbfilename` naming Redis's file, no snapshot set there: loaded the same way.
    let p = percore(
        &[
            "--shards",
            "2",
            "--dir",
            dir.path(),
            "--dbfilename",
            "dump.rdb",
        ],
        &log,
    )
    .unwrap_or_else(|f| panic!("{f:?}"));
    assert_same(&mut rc, &mut p.redis_client(), "dbfilename dump.rdb");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("of the RDB file"), "{text}");
}

#[test]
fn damaged_rdb_files_refuse_the_start_with_the_offset() {
    let Some((dir, _redis)) = redis_saved("rdb-bad") else {
        return;
    };
    let good = std::fs::read(dir.0.join("dump.rdb")).unwrap();
    let log = dir.0.join("percore.log");
    let cut = dir.0.join("cut.rdb");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let mut flipped = good.clone();
    let mid = good.len() / 3;
    flipped[mid] ^= 0x55;
    let flip = dir.0.join("flip.rdb");
    std::fs::write(&flip, &flipped).unwrap();
    for (file, shards) in [(&cut, "1"), (&cut, "4"), (&flip, "4")] {
        let _ = std::fs::remove_file(&log);
        let r = percore(
            &["--shards", shards, "--import-rdb", file.to_str().unwrap()],
            &log,
        );
        let f = r.err().expect("a damaged file must refuse the start");
        assert!(f.status.is_some_and(|s| !s.success()), "{f:?}");
        assert!(
            f.log.contains("error at offset") && f.log.contains("refusing to start"),
            "{}",
            f.log
        );
    }
    // Asked to, percore starts on the keys before the damage.
    let p = percore(
        &[
            "--shards",
            "2",
            "--import-rdb",
            cut.to_str().unwrap(),
            "--load-corrupt-snapshot",
            "yes",
        ],
        &log,
    )
    .unwrap_or_else(|f| panic!("{f:?}"));
    let n: i64 = redis::cmd("DBSIZE").query(&mut p.redis_client()).unwrap();
    assert!(n > 0, "no keys kept");
    // check-rdb names the same place.
    let out = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["check-rdb", cut.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("error at offset"));
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} not written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis_check_rdb(path: &Path) {
    let out = Command::new("redis-check-rdb").arg(path).output();
    let Ok(out) = out else {
        eprintln!("SKIPPED: redis-check-rdb not installed");
        return;
    };
    assert!(
        out.status.success(),
        "redis-check-rdb {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn percore_writes_rdb_files_that_redis_loads() {
    if redis_or_skip_with("RDB export: did not run", &[]).is_none() {
        return;
    }
    for shards in ["1", "4"] {
        let dir = TempDir::new("rdb-out");
        let log = dir.0.join("percore.log");
        let args = [
            "--shards",
            shards,
            "--dir",
            dir.path(),
            "--rdb-export",
            "dump.rdb",
        ];
        let p = percore(&args, &log).unwrap_or_else(|f| panic!("{f:?}"));
        let mut pc = p.redis_client();
        populate(&mut pc);
        // Online: with rdb-export set, SAVE also writes the RDB.
        let rdb = dir.0.join("dump.rdb");
        let _: () = redis::cmd("SAVE").query(&mut pc).unwrap();
        wait_for(&rdb);
        redis_check_rdb(&rdb);
        // Offline, from the same set: the same file.
        let offline = dir.0.join("offline.rdb");
        let out = Command::new(env!("CARGO_BIN_EXE_percore"))
            .args(["export-rdb", dir.path(), offline.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(&offline).unwrap(),
            std::fs::read(&rdb).unwrap()
        );
        // Redis loads it and sees what percore holds.
        let back = Server::redis_with(&["--dir", dir.path(), "--dbfilename", "dump.rdb"]).unwrap();
        let what = format!("{shards} shard(s) exported");
        assert_same(&mut pc, &mut back.redis_client(), &what);
    }
}

/// percore with `shards` shards and eviction `policy`, started on the RDB file `rdb`.
fn import_with_policy(rdb: &Path, shards: &str, policy: &str, log: &Path) -> Server {
    let file = rdb.to_str().unwrap();
    let args = [
        "--shards",
        shards,
        "--maxmemory-policy",
        policy,
        "--import-rdb",
        file,
    ];
    percore(&args, log).unwrap_or_else(|f| panic!("{f:?}"))
}

/// `OBJECT <sub> key`'s integer.
fn object(c: &mut Connection, sub: &str, key: &str) -> i64 {
    redis::cmd("OBJECT").arg(sub).arg(key).query(c).unwrap()
}

#[test]
fn lru_and_lfu_information_in_rdb_files_is_kept() {
    // LFU: the counter Redis saved (FREQ) is the one percore answers.
    let dir = TempDir::new("rdb-lfu");
    let Some(redis) = redis_or_skip_with(
        "RDB LFU: did not run",
        &["--dir", dir.path(), "--maxmemory-policy", "allkeys-lfu"],
    ) else {
        return;
    };
    let mut rc = redis.redis_client();
    let set = |c: &mut Connection, k: &str| {
        let _: () = redis::cmd("SET").arg(k).arg("v").query(c).unwrap();
    };
    set(&mut rc, "hot");
    set(&mut rc, "cold");
    for _ in 0..300 {
        let _: Value = redis::cmd("GET").arg("hot").query(&mut rc).unwrap();
    }
    let _: () = redis::cmd("SAVE").query(&mut rc).unwrap();
    let log = dir.0.join("percore.log");
    let p = import_with_policy(&dir.0.join("dump.rdb"), "2", "allkeys-lfu", &log);
    let mut pc = p.redis_client();
    for k in ["hot", "cold"] {
        let want = object(&mut rc, "FREQ", k);
        assert_eq!(object(&mut pc, "FREQ", k), want, "OBJECT FREQ {k}");
    }
    assert!(object(&mut pc, "FREQ", "hot") > object(&mut pc, "FREQ", "cold"));
    // LRU: the idle time Redis saved (IDLE) carries over.
    let dir = TempDir::new("rdb-lru");
    let args = ["--dir", dir.path(), "--maxmemory-policy", "allkeys-lru"];
    let redis = Server::redis_with(&args).unwrap();
    let mut rc = redis.redis_client();
    set(&mut rc, "old");
    std::thread::sleep(Duration::from_millis(2100));
    set(&mut rc, "new");
    let _: () = redis::cmd("SAVE").query(&mut rc).unwrap();
    let p = import_with_policy(&dir.0.join("dump.rdb"), "1", "allkeys-lru", &log);
    let mut pc = p.redis_client();
    let (old, new) = (
        object(&mut pc, "IDLETIME", "old"),
        object(&mut pc, "IDLETIME", "new"),
    );
    // Both have idled since the save as long as the start took; 2 s apart before it.
    assert!(old - new >= 2, "idle times {old} and {new}");
}
