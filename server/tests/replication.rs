//! Replication with a real `redis-server` as the replica (the test oracle): it loads
//! percore's full-sync payload and applies its stream, so whatever it holds afterwards is
//! what the stream said. Every key is compared, database by database, value by value (not by
//! digest: the encodings may differ by design), after writes of every type before the sync,
//! during it and after it; then the replica's link is cut and it must resume with a partial
//! resynchronization. Then percore as the replica (REPLICAOF): of a percore primary with
//! another shard count, checked the same way, and its gates (READONLY, MASTERDOWN), its
//! promotion (REPLICAOF NO ONE) and the old primary following it.

mod common;

use common::{bulks, esc, s, Client, Server, TempDir};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Waits until `f` is true (polling every 20 ms), failing with `what` after 20 s.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An INFO field's value.
fn info_field(c: &mut Client, section: &str, field: &str) -> Option<String> {
    let info = s(&c.q(&format!("INFO {section}")));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
}

/// Every key of every database with its type, whether it has a deadline, and its value read
/// in a canonical form (members sorted where order is not the value's). Pipelined: a few
/// round trips per database.
fn dump_all(c: &mut Client) -> BTreeMap<(usize, Vec<u8>), String> {
    let mut out = BTreeMap::new();
    for db in 0..16 {
        assert_eq!(c.q(&format!("SELECT {db}")), b"+OK\r\n");
        let keys = bulks(&c.q("KEYS *"));
        for k in &keys {
            c.send(&[b"TYPE", k]);
        }
        let types: Vec<String> = keys.iter().map(|_| s(&c.read_reply())).collect();
        for (k, t) in keys.iter().zip(&types) {
            let read: &[&[u8]] = match t.trim() {
                "+string" => &[b"GET"],
                "+list" => &[b"LRANGE", b"0", b"-1"],
                "+hash" => &[b"HGETALL"],
                "+set" => &[b"SMEMBERS"],
                "+zset" => &[b"ZRANGE", b"0", b"-1", b"WITHSCORES"],
                _ => &[b"TYPE"],
            };
            let mut args: Vec<&[u8]> = vec![read[0], k];
            args.extend_from_slice(&read[1..]);
            c.send(&args);
            c.send(&[b"PTTL", k]);
        }
        for (k, t) in keys.into_iter().zip(types) {
            let r = c.read_reply();
            let v = match t.trim() {
                "+hash" => {
                    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = bulks(&r)
                        .chunks(2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect();
                    pairs.sort();
                    format!("{pairs:?}")
                }
                "+set" => {
                    let mut m = bulks(&r);
                    m.sort();
                    format!("{m:?}")
                }
                _ => esc(&r),
            };
            let ttl = s(&c.read_reply());
            let volatile = ttl.trim() != ":-1";
            out.insert((db, k), format!("{} volatile={volatile} {v}", t.trim()));
        }
    }
    assert_eq!(c.q("SELECT 0"), b"+OK\r\n");
    out
}

/// Writes of every type, some across shards, in databases 0 and 3; `tag` makes the keys
/// of each round distinct, `n` sizes the big collections.
fn write_round(c: &mut Client, tag: &str, n: usize) {
    let ok = |r: Vec<u8>, what: &str| {
        assert!(!r.starts_with(b"-"), "{what}: {}", esc(&r));
    };
    for (i, line) in [
        "SET str:{t} hello",
        "SET ttl:{t} v EX 1000",
        "SETEX setex:{t} 1000 v",
        "PSETEX psetex:{t} 1000000 v",
        "SET px:{t} v",
        "PEXPIRE px:{t} 1000000",
        "SET gone:{t} v PX 30",
        "SET persist:{t} v EX 100",
        "PERSIST persist:{t}",
        "SET getex:{t} v",
        "GETEX getex:{t} EX 1000",
        "INCRBY ctr:{t} 7",
        "SET flt:{t} 1.5",
        "INCRBYFLOAT flt:{t} 0.25",
        "APPEND str:{t} -more",
        "SETRANGE str:{t} 2 XY",
        "HSET h:{t} a 1 b 2 c 3",
        "HINCRBYFLOAT h:{t} a 1.5",
        "HDEL h:{t} c",
        "RPUSH l:{t} a b c d e",
        "LPOP l:{t}",
        "LMPOP 1 l:{t} RIGHT COUNT 2",
        "SADD s:{t} a b c d e f",
        "SPOP s:{t}",
        "SPOP s:{t} 2",
        "SADD spopall:{t} x y",
        "SPOP spopall:{t} 10",
        "ZADD z:{t} 1 a 2 b 3 c",
        "ZINCRBY z:{t} 5 a",
        "ZMPOP 1 z:{t} MIN COUNT 1",
        "PFADD hll:{t} a b c",
        "SET ren:{t} v",
        "RENAME ren:{t} renamed:{t}",
        "SADD from:{t} m1 m2",
        "SMOVE from:{t} to:{t} m1",
        "SINTERSTORE inter:{t} from:{t} s:{t}",
        "MSET m1:{t} 1 m2:{t} 2 m3:{t} 3",
        "DEL m3:{t}",
        "COPY str:{t} copy:{t}",
        "SET big:{t} x",
        "BLPOP l:{t} 1",
        "BLMOVE l:{t} moved:{t} LEFT RIGHT 1",
        "BZPOPMIN z:{t} 1",
        "RPUSH bl:{t} 1 2 3 4",
        "BLMPOP 1 1 bl:{t} LEFT COUNT 3",
    ]
    .iter()
    .enumerate()
    {
        let line = line.replace("{t}", tag);
        ok(c.q(&line), &format!("{i}: {line}"));
    }
    // A long list, hash and set: their snapshot records come in parts.
    let mut args: Vec<Vec<u8>> = vec![b"RPUSH".to_vec(), format!("biglist:{tag}").into_bytes()];
    args.extend((0..n).map(|i| format!("element-{i}").into_bytes()));
    let a: Vec<&[u8]> = args.iter().map(|v| v.as_slice()).collect();
    ok(c.cmd(&a), "RPUSH biglist");
    args[0] = b"SADD".to_vec();
    args[1] = format!("bigset:{tag}").into_bytes();
    let a: Vec<&[u8]> = args.iter().map(|v| v.as_slice()).collect();
    ok(c.cmd(&a), "SADD bigset");
    let mut h: Vec<Vec<u8>> = vec![b"HSET".to_vec(), format!("bighash:{tag}").into_bytes()];
    for i in 0..n {
        h.push(format!("f{i}").into_bytes());
        h.push(format!("v{i}").into_bytes());
    }
    let a: Vec<&[u8]> = h.iter().map(|v| v.as_slice()).collect();
    ok(c.cmd(&a), "HSET bighash");
    // A transaction over several shards, and scripts.
    c.q("MULTI");
    c.q(&format!("SET tx1:{tag} a"));
    c.q(&format!("INCR tx2:{tag}"));
    c.q(&format!("RPUSH tx3:{tag} x y"));
    c.q(&format!("EXPIRE tx1:{tag} 1000"));
    let exec = c.q("EXEC");
    assert!(exec.starts_with(b"*4"), "EXEC: {}", esc(&exec));
    let script = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('INCRBYFLOAT', KEYS[2], '2.5'); return redis.call('SPOP', KEYS[3])";
    let k1 = format!("sc1:{tag}");
    let k2 = format!("sc2:{tag}");
    let k3 = format!("s:{tag}");
    ok(
        c.cmd(&[
            b"EVAL",
            script.as_bytes(),
            b"3",
            k1.as_bytes(),
            k2.as_bytes(),
            k3.as_bytes(),
            b"val",
        ]),
        "EVAL",
    );
    // Another database.
    assert_eq!(c.q("SELECT 3"), b"+OK\r\n");
    ok(c.q(&format!("SET db3:{tag} v")), "SET in db 3");
    ok(c.q(&format!("HSET db3h:{tag} f v")), "HSET in db 3");
    assert_eq!(c.q("SELECT 0"), b"+OK\r\n");
}

/// Replica's view equals percore's, after WAIT says the replica has everything.
fn assert_same(percore: &mut Client, replica: &mut Client, what: &str) {
    // Keys that were to expire have: the primary deletes them (and says so in the stream).
    std::thread::sleep(Duration::from_millis(100));
    let mut want = dump_all(percore);
    let w = percore.q("WAIT 1 10000");
    assert_eq!(w, b":1\r\n", "{what}: WAIT");
    // A read on the primary may have expired a key since: take its view again.
    let again = dump_all(percore);
    if again != want {
        assert_eq!(percore.q("WAIT 1 10000"), b":1\r\n");
        want = again;
    }
    let got = dump_all(replica);
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: keys missing on the replica: {missing:?}; extra there: {extra:?}"
    );
    for (k, v) in &want {
        assert_eq!(&got[k], v, "{what}: key {k:?}");
    }
    assert!(
        want.len() > 40,
        "{what}: the dataset is there ({} keys)",
        want.len()
    );
}

/// Before a sync: enough keys that the sync takes a while (20 rounds of every type, and
/// `filler` plain strings).
fn fill_before_sync(c: &mut Client, filler: usize) {
    for i in 0..20 {
        write_round(c, &format!("before{i}"), 300);
    }
    let mut pipeline = Vec::new();
    for i in 0..filler {
        pipeline.extend_from_slice(&common::encode(&[
            b"SET",
            format!("filler:{i}").as_bytes(),
            b"some value",
        ]));
    }
    c.send_raw(&pipeline);
    for _ in 0..filler {
        c.read_reply();
    }
}

/// During a sync: a writer that goes on from another connection.
fn writer_during_sync(port: u16) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut w = Client::connect(port);
        for i in 0..15 {
            write_round(&mut w, &format!("during{i}"), 50);
        }
    })
}

fn replica_of(percore: &Server, dir: &TempDir) -> Option<Server> {
    let log = format!("{}/replica.log", dir.path());
    Server::redis_with(&[
        "--replicaof",
        "127.0.0.1",
        &percore.port.to_string(),
        "--dir",
        dir.path(),
        "--logfile",
        &log,
        "--repl-diskless-load",
        "disabled",
    ])
}

/// The metrics endpoint's text.
fn http_get(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn replica_log(dir: &TempDir) -> String {
    std::fs::read_to_string(format!("{}/replica.log", dir.path())).unwrap_or_default()
}

#[test]
fn a_redis_replica_holds_every_key_through_the_sync_the_stream_and_a_cut_link() {
    if common::redis_or_skip("replication against a redis-server replica").is_none() {
        return;
    }
    for shards in [1, 3] {
        let what = format!("{shards} shard(s)");
        let dir = TempDir::new("repl");
        let port = common::free_port();
        let plog = std::path::PathBuf::from(format!("{}/percore.log", dir.path()));
        let percore = common::Launch::percore(
            port,
            &[
                "--port",
                &port.to_string(),
                "--shards",
                &shards.to_string(),
                "--dir",
                dir.path(),
            ],
        )
        .log(&plog)
        .start();
        let mut c = percore.client();
        let lib = |name: &str| {
            format!("#!lua name={name}\nredis.register_function('{name}_set', function(keys, args) return redis.call('SET', keys[1], args[1]) end)")
        };
        let load = |c: &mut Client, name: &str| {
            let r = c.cmd(&[b"FUNCTION", b"LOAD", lib(name).as_bytes()]);
            assert!(!r.starts_with(b"-"), "FUNCTION LOAD: {}", esc(&r));
        };
        load(&mut c, "before");
        assert_eq!(c.q("FCALL before_set 1 fk:before v"), b"+OK\r\n");
        fill_before_sync(&mut c, 3_000);
        let port = percore.port;
        let writer = writer_during_sync(port);
        let replica = replica_of(&percore, &dir).expect("redis-server is installed");
        writer.join().unwrap();
        let mut r = replica.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while info_field(&mut r, "replication", "master_link_status").as_deref() != Some("up") {
            assert!(
                Instant::now() < deadline,
                "{what}: the replica's link is not up; its log:\n{}\npercore's:\n{}",
                replica_log(&dir),
                std::fs::read_to_string(&plog).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // After it: the stream, with clients served from blocking commands' queues.
        let waiters: Vec<_> = [
            "BLPOP waited 10",
            "BLMOVE wsrc wdst RIGHT LEFT 10",
            "BZPOPMAX wz 10",
        ]
        .into_iter()
        .map(|line| {
            std::thread::spawn(move || {
                let mut w = Client::connect(port);
                w.q(line)
            })
        })
        .collect();
        for i in 0..5 {
            write_round(&mut c, &format!("after{i}"), 20);
        }
        wait_for("three blocked clients", || {
            info_field(&mut c, "clients", "blocked_clients").as_deref() == Some("3")
        });
        c.q("RPUSH waited a b");
        c.q("RPUSH wsrc x y");
        c.q("ZADD wz 1 m 2 n");
        for w in waiters {
            let r = w.join().unwrap();
            assert!(
                !r.starts_with(b"*-1") && !r.starts_with(b"$-1"),
                "{what}: {}",
                esc(&r)
            );
        }
        // A transaction over several shards, and a script, that fill a waited-on list:
        // the pops they serve come after them in the stream.
        for (i, fill) in ["MULTI", "EVAL"].into_iter().enumerate() {
            let key = format!("txq{i}");
            let waiter = {
                let key = key.clone();
                std::thread::spawn(move || Client::connect(port).q(&format!("BLPOP {key} 10")))
            };
            wait_for("a blocked client", || {
                info_field(&mut c, "clients", "blocked_clients").as_deref() == Some("1")
            });
            if fill == "MULTI" {
                c.q("MULTI");
                c.q(&format!("RPUSH {key} a b"));
                c.q("SET elsewhere:1 v");
                c.q("SET elsewhere:2 v");
                assert!(c.q("EXEC").starts_with(b"*3"));
            } else {
                let script = "redis.call('RPUSH', KEYS[1], 'a', 'b'); redis.call('SET', KEYS[2], 'v'); return 1";
                let r = c.cmd(&[
                    b"EVAL",
                    script.as_bytes(),
                    b"2",
                    key.as_bytes(),
                    b"elsewhere:3",
                ]);
                assert_eq!(r, b":1\r\n");
            }
            let r = waiter.join().unwrap();
            assert!(r.starts_with(b"*2"), "{what}: {}", esc(&r));
        }
        load(&mut c, "after");
        assert_eq!(c.q("FCALL after_set 1 fk:after v"), b"+OK\r\n");
        assert_same(&mut c, &mut r, &format!("{what}, after the full sync"));
        let libs = s(&r.q("FUNCTION LIST"));
        assert!(
            libs.contains("before") && libs.contains("after"),
            "{what}: {libs}"
        );
        let log = replica_log(&dir);
        assert!(log.contains("Full resync from master"), "{what}: {log}");

        // The link is cut; writes go on; the replica comes back with a partial resync.
        let killed = c.q("CLIENT KILL TYPE replica");
        assert_eq!(killed, b":1\r\n", "{what}: CLIENT KILL TYPE replica");
        for i in 0..3 {
            write_round(&mut c, &format!("cut{i}"), 20);
        }
        wait_for("the replica to resume", || {
            replica_log(&dir).contains("Successful partial resynchronization")
        });
        assert_same(&mut c, &mut r, &format!("{what}, after the partial resync"));
        assert_eq!(
            replica_log(&dir).matches("Full resync from master").count(),
            1,
            "{what}: one full sync only"
        );
    }
}

#[test]
fn role_info_and_wait_describe_the_replicas() {
    if common::redis_or_skip("ROLE/INFO/WAIT with a redis-server replica").is_none() {
        return;
    }
    let dir = TempDir::new("repl-role");
    let metrics = common::free_port().to_string();
    let percore = Server::percore(2, &["--dir", dir.path(), "--metrics-port", &metrics]);
    let mut c = percore.client();
    // min-replicas-to-write: refused without a good replica.
    assert_eq!(c.q("CONFIG SET min-replicas-to-write 1"), b"+OK\r\n");
    assert_eq!(
        c.q("SET k v"),
        b"-NOREPLICAS Not enough good replicas to write.\r\n"
    );
    assert_eq!(c.q("GET k"), b"$-1\r\n", "reads go on");
    // No replica: INFO as Redis without one, WAIT 0 at once, WAIT 1 after its timeout.
    assert_eq!(
        info_field(&mut c, "replication", "connected_slaves").as_deref(),
        Some("0")
    );
    assert_eq!(c.q("ROLE"), b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
    let t0 = Instant::now();
    assert_eq!(c.q("WAIT 1 100"), b":0\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        c.q("WAIT x 0"),
        b"-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(c.q("WAIT 0 -1"), b"-ERR timeout is negative\r\n");
    assert_eq!(c.q("REPLICAOF NO ONE"), b"+OK\r\n");
    assert_eq!(c.q("SLAVEOF no one"), b"+OK\r\n");
    assert_eq!(
        c.q("REPLICAOF 127.0.0.1 x"),
        b"-ERR Invalid master port\r\n"
    );
    assert_eq!(c.q("CONFIG SET min-replicas-to-write 0"), b"+OK\r\n");
    assert_eq!(c.q("SET k v"), b"+OK\r\n");

    let replica = replica_of(&percore, &dir).expect("redis-server is installed");
    let mut r = replica.client();
    wait_for("the replica's link", || {
        info_field(&mut r, "replication", "master_link_status").as_deref() == Some("up")
    });
    assert_eq!(c.q("SET k2 v2"), b"+OK\r\n");
    assert_eq!(c.q("WAIT 1 5000"), b":1\r\n");
    let t0 = Instant::now();
    assert_eq!(
        c.q("WAIT 2 200"),
        b":1\r\n",
        "one replica only, after the timeout"
    );
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(r.q("GET k2"), b"$2\r\nv2\r\n");
    wait_for("INFO to show the replica online", || {
        info_field(&mut c, "replication", "slave0").is_some_and(|l| {
            l.contains("state=online") && l.contains(&format!("port={}", replica.port))
        })
    });
    let offset: u64 = info_field(&mut c, "replication", "master_repl_offset")
        .unwrap()
        .parse()
        .unwrap();
    assert!(offset > 0);
    assert_eq!(
        info_field(&mut c, "replication", "repl_backlog_active").as_deref(),
        Some("1")
    );
    assert_eq!(
        info_field(&mut c, "replication", "connected_slaves").as_deref(),
        Some("1")
    );
    let role = c.q("ROLE");
    let b = bulks(&role);
    assert_eq!(b[0], b"master");
    assert_eq!(b[1], b"127.0.0.1");
    assert_eq!(b[2], replica.port.to_string().as_bytes());
    // Now one good replica: writes pass with 1, not with 2.
    assert_eq!(c.q("CONFIG SET min-replicas-to-write 1"), b"+OK\r\n");
    assert_eq!(c.q("SET k3 v"), b"+OK\r\n");
    assert_eq!(c.q("CONFIG SET min-replicas-to-write 2"), b"+OK\r\n");
    assert!(c.q("SET k4 v").starts_with(b"-NOREPLICAS"));
    assert_eq!(c.q("CONFIG SET min-replicas-to-write 0"), b"+OK\r\n");
    // PUBLISH reaches the replica's subscribers, as Redis propagates it.
    let mut sub = replica.client();
    assert!(sub
        .q("SUBSCRIBE news")
        .starts_with(b"*3\r\n$9\r\nsubscribe"));
    assert_eq!(c.q("PUBLISH news hello"), b":0\r\n");
    assert_eq!(
        sub.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    // The exporter's series.
    let scrape = http_get(metrics.parse().unwrap());
    assert!(scrape.contains("\nredis_connected_slaves 1\n"), "{scrape}");
    assert!(scrape.contains("\nredis_master_repl_offset "), "{scrape}");
    // The replica's offset, as Redis's own INFO says it, is the primary's.
    wait_for("the replica to acknowledge the stream", || {
        let now: u64 = info_field(&mut c, "replication", "master_repl_offset")
            .unwrap()
            .parse()
            .unwrap();
        info_field(&mut r, "replication", "slave_repl_offset")
            .is_some_and(|o| o.parse::<u64>().unwrap() == now)
    });
}

#[test]
fn sync_without_capa_eof_sends_a_sized_payload_that_redis_check_rdb_accepts() {
    use std::io::{Read, Write};
    let dir = TempDir::new("repl-sync");
    let percore = Server::percore(3, &["--dir", dir.path()]);
    let mut c = percore.client();
    for i in 0..500 {
        c.q(&format!("SET k{i} v{i}"));
    }
    c.q("RPUSH list a b c");
    c.q("HSET hash f v");
    c.q("ZADD zset 1.5 m");
    c.q("SADD set x y");
    c.q("SET volatile v EX 1000");
    // A replica that did not say `capa eof`: the length comes first.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", percore.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"SYNC\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .strip_prefix('$')
        .and_then(|h| h.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("a sized payload, not {head:?}"));
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    assert!(payload.starts_with(b"REDIS0010"), "{}", esc(&payload[..20]));
    let file = format!("{}/payload.rdb", dir.path());
    std::fs::write(&file, &payload).unwrap();
    let out = std::process::Command::new("redis-check-rdb")
        .arg(&file)
        .output();
    let Ok(out) = out else {
        eprintln!("SKIPPED the redis-check-rdb part: not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("RDB looks OK"),
        "{text}"
    );
    assert!(
        text.contains("keys read: 505") || text.contains("505 keys"),
        "{text}"
    );
    // The temporary file is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("temp-repl-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A percore replica ("replica" in `dir`) of the server on `port`, with its link up.
fn replica_up(dir: &TempDir, shards: usize, port: u16) -> (Server, Client) {
    let port = port.to_string();
    let replica = percore_in(dir, "replica", shards, &["--replicaof", "127.0.0.1", &port]);
    let mut r = replica.client();
    link_up(&mut r, dir, "replica");
    (replica, r)
}

/// A percore primary (2 shards, `flags`) and a percore replica of it (3 shards) with its
/// link up, in a new directory, with a client of each.
fn primary_and_replica(tag: &str, flags: &[&str]) -> (TempDir, Server, Client, Server, Client) {
    let dir = TempDir::new(tag);
    let primary = percore_in(&dir, "primary", 2, flags);
    let c = primary.client();
    let (replica, r) = replica_up(&dir, 3, primary.port);
    (dir, primary, c, replica, r)
}

/// INFO replication's `field` is `want`.
fn expect_repl(c: &mut Client, field: &str, want: &str) {
    assert_eq!(
        info_field(c, "replication", field).as_deref(),
        Some(want),
        "INFO replication {field}"
    );
}

/// Starts percore with `shards` shards and `extra` flags, logging to `dir/<name>.log`.
fn percore_in(dir: &TempDir, name: &str, shards: usize, extra: &[&str]) -> Server {
    let port = common::free_port();
    let log = std::path::PathBuf::from(format!("{}/{name}.log", dir.path()));
    let sub = format!("{}/{name}", dir.path());
    std::fs::create_dir_all(&sub).unwrap();
    let port_s = port.to_string();
    let shards_s = shards.to_string();
    let mut args = vec!["--port", &port_s, "--shards", &shards_s, "--dir", &sub];
    args.extend_from_slice(extra);
    common::Launch::percore(port, &args).log(&log).start()
}

fn log_of(dir: &TempDir, name: &str) -> String {
    std::fs::read_to_string(format!("{}/{name}.log", dir.path())).unwrap_or_default()
}

/// Waits until `c`'s INFO says its link to the primary is up.
fn link_up(c: &mut Client, dir: &TempDir, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while info_field(c, "replication", "master_link_status").as_deref() != Some("up") {
        assert!(
            Instant::now() < deadline,
            "the replica's link is not up; its log:\n{}",
            log_of(dir, name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stat(c: &mut Client, field: &str) -> u64 {
    info_field(c, "stats", field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO stats {field}"))
}

#[test]
fn a_percore_replica_with_another_shard_count_holds_every_key_and_resumes_partially() {
    for (primary_shards, replica_shards) in [(3, 2), (1, 3)] {
        let what = format!("{primary_shards} shard(s) -> {replica_shards}");
        let dir = TempDir::new("repl-pp");
        let primary = percore_in(&dir, "primary", primary_shards, &[]);
        let mut c = primary.client();
        fill_before_sync(&mut c, 20_000);
        let writer = writer_during_sync(primary.port);
        let pport = primary.port.to_string();
        let replica = percore_in(
            &dir,
            "replica",
            replica_shards,
            &["--replicaof", "127.0.0.1", &pport],
        );
        writer.join().unwrap();
        let mut r = replica.client();
        link_up(&mut r, &dir, "replica");
        for i in 0..5 {
            write_round(&mut c, &format!("after{i}"), 20);
        }
        assert_same(&mut c, &mut r, &format!("{what}, after the full sync"));
        let log = log_of(&dir, "replica");
        for line in [
            "Connecting to MASTER",
            "MASTER <-> REPLICA sync started",
            "Full resync from master",
            "MASTER <-> REPLICA sync: Finished with success",
        ] {
            assert!(log.contains(line), "{what}: {line:?} in\n{log}");
        }
        // A replica's gates and its view of the link.
        assert_eq!(
            r.q("SET x y"),
            b"-READONLY You can't write against a read only replica.\r\n",
            "{what}"
        );
        assert_eq!(r.q("GET x"), b"$-1\r\n");
        expect_repl(&mut r, "role", "slave");
        expect_repl(&mut r, "master_port", &pport);
        let role = r.q("ROLE");
        assert!(
            role.starts_with(
                format!("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:{pport}\r\n$9\r\nconnected\r\n:")
                    .as_bytes()
            ),
            "{what}: {}",
            esc(&role)
        );
        assert_eq!(c.q("WAIT 1 5000"), b":1\r\n", "{what}: WAIT counts it");

        // The link is cut; writes go on; the replica comes back with a partial resync.
        assert_eq!(stat(&mut c, "sync_partial_ok"), 0);
        assert_eq!(c.q("CLIENT KILL TYPE replica"), b":1\r\n", "{what}");
        for i in 0..3 {
            write_round(&mut c, &format!("cut{i}"), 20);
        }
        wait_for("the replica to resume", || {
            log_of(&dir, "replica").contains("Successful partial resynchronization")
        });
        assert_same(&mut c, &mut r, &format!("{what}, after the partial resync"));
        assert_eq!(stat(&mut c, "sync_partial_ok"), 1, "{what}");
        assert_eq!(stat(&mut c, "sync_full"), 1, "{what}: one full sync only");
        // And from the replica's side: CLIENT KILL TYPE master.
        assert_eq!(r.q("CLIENT KILL TYPE master"), b":1\r\n", "{what}");
        write_round(&mut c, "cut-again", 20);
        wait_for("the replica to resume again", || {
            stat(&mut c, "sync_partial_ok") == 2
        });
        assert_same(&mut c, &mut r, &format!("{what}, after the second cut"));
    }
}

/// A partial resync goes on in the database the stream was in when it was cut: the
/// primary sends no SELECT for a stream that continues, so the replica keeps its master
/// client's (Redis keeps it in its cached master). Cut in database 3, the next write there
/// must not land in the replica's database 0. Both ways of cutting: from the primary and
/// from the replica.
#[test]
fn a_partial_resync_goes_on_in_the_database_the_stream_was_in() {
    let (dir, _primary, mut c, _replica, mut r) = primary_and_replica("repl-db", &[]);
    assert_eq!(c.q("SELECT 3"), b"+OK\r\n");
    assert_eq!(c.q("SET before v"), b"+OK\r\n");
    assert_eq!(c.q("WAIT 1 5000"), b":1\r\n");
    for (i, (side, kill)) in [("primary", "replica"), ("replica", "master")]
        .iter()
        .enumerate()
    {
        let killer = match *side {
            "primary" => &mut c,
            _ => &mut r,
        };
        assert_eq!(killer.q(&format!("CLIENT KILL TYPE {kill}")), b":1\r\n");
        let key = format!("after{i}");
        assert_eq!(c.q(&format!("SET {key} v")), b"+OK\r\n");
        wait_for("the partial resync", || {
            stat(&mut c, "sync_partial_ok") == i as u64 + 1
        });
        assert_eq!(c.q("WAIT 1 5000"), b":1\r\n");
        assert_eq!(r.q("SELECT 3"), b"+OK\r\n");
        assert_eq!(
            r.q(&format!("GET {key}")),
            b"$1\r\nv\r\n",
            "cut from the {side}"
        );
        assert_eq!(r.q("SELECT 0"), b"+OK\r\n");
        assert_eq!(
            r.q(&format!("EXISTS {key}")),
            b":0\r\n",
            "cut from the {side}"
        );
    }
    assert_eq!(stat(&mut c, "sync_full"), 1, "{}", log_of(&dir, "replica"));
}

/// A full sync while a writer changes a hash, a set and a sorted set of 30,000 members
/// each (the snapshot the sync streams saves them member by member): the replica, on
/// another shard count, ends with what the primary holds.
#[test]
fn a_full_sync_beside_large_collections_being_written_holds_them_whole() {
    let dir = TempDir::new("repl-big");
    let primary = percore_in(&dir, "primary", 1, &[]);
    let mut c = primary.client();
    let mut req = Vec::new();
    for (key, cmd) in [("big-h", "HSET"), ("big-s", "SADD"), ("big-z", "ZADD")] {
        for lo in (0..30_000).step_by(1000) {
            let mut args: Vec<Vec<u8>> = vec![cmd.into(), key.into()];
            for i in lo..lo + 1000 {
                if cmd == "ZADD" {
                    args.push(format!("{}", i % 977).into_bytes());
                }
                args.push(format!("m{i}").into_bytes());
                if cmd == "HSET" {
                    args.push(format!("v{i}").into_bytes());
                }
            }
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            req.extend_from_slice(&common::encode(&args));
        }
    }
    c.send_raw(&req);
    for _ in 0..90 {
        assert!(!c.read_reply().starts_with(b"-"));
    }
    fill_before_sync(&mut c, 20_000);
    let port = primary.port;
    let writer = std::thread::spawn(move || {
        let mut w = Client::connect(port);
        for i in 0..400 {
            for cmd in [
                format!("HSET big-h m{} w{i}", i * 7),
                format!("HDEL big-h m{}", i * 7 + 1),
                format!("SADD big-s n{i}"),
                format!("SREM big-s m{}", i * 3),
                format!("ZINCRBY big-z 1 m{}", i * 5),
                format!("ZREM big-z m{}", i * 5 + 1),
            ] {
                w.q(&cmd);
            }
        }
    });
    let (_replica, mut r) = replica_up(&dir, 2, port);
    writer.join().unwrap();
    assert_same(&mut c, &mut r, "after a full sync beside large collections");
}

#[test]
fn a_replica_refuses_with_masterdown_while_its_link_is_down_if_told() {
    let dir = TempDir::new("repl-down");
    let replica = percore_in(&dir, "replica", 2, &[]);
    let mut r = replica.client();
    assert_eq!(r.q("SET k v"), b"+OK\r\n");
    let dead = common::free_port().to_string();
    assert_eq!(r.q(&format!("REPLICAOF 127.0.0.1 {dead}")), b"+OK\r\n");
    // Stale data is served by default.
    assert_eq!(r.q("GET k"), b"$1\r\nv\r\n");
    assert!(r.q("SET k w").starts_with(b"-READONLY"));
    expect_repl(&mut r, "master_link_status", "down");
    assert_eq!(r.q("CONFIG SET replica-serve-stale-data no"), b"+OK\r\n");
    assert_eq!(
        r.q("GET k"),
        b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"
    );
    assert!(s(&r.q("INFO replication")).contains("role:slave"));
    // Writable replicas (replica-read-only no) take writes locally.
    assert_eq!(r.q("CONFIG SET replica-serve-stale-data yes"), b"+OK\r\n");
    assert_eq!(r.q("CONFIG SET replica-read-only no"), b"+OK\r\n");
    assert_eq!(r.q("SET k w"), b"+OK\r\n");
    assert!(r
        .q("WAIT 0 0")
        .starts_with(b"-ERR WAIT cannot be used with replica instances"));
    wait_for("the retries to show in the log", || {
        log_of(&dir, "replica")
            .matches("Connecting to MASTER")
            .count()
            >= 2
    });
    assert_eq!(r.q("REPLICAOF NO ONE"), b"+OK\r\n");
    assert_eq!(r.q("GET k"), b"$1\r\nw\r\n");
    assert_eq!(r.q("ROLE"), b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
}

#[test]
fn a_promoted_replica_keeps_every_acknowledged_write_and_its_old_primary_follows_it() {
    // No PING in the stream during the test: the old primary's offset is exactly what
    // its replica applied.
    let (dir, _primary, mut c, replica, mut r) =
        primary_and_replica("repl-promote", &["--repl-ping-replica-period", "3600"]);
    for i in 0..5 {
        write_round(&mut c, &format!("w{i}"), 50);
    }
    // Every write WAIT confirmed is on the replica when it is promoted (the keys set to
    // expire at once are gone first, so that both sides read the same keys).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.q("WAIT 1 10000"), b":1\r\n");
    let confirmed = dump_all(&mut c);
    let old_id = info_field(&mut c, "replication", "master_replid").unwrap();
    // INFO's offset is published by the primary's merger every 100 ms: once it equals the
    // replica's, the replica applied the whole stream (WAIT's GETACK included).
    let offset_of = |c: &mut Client, field: &str| -> u64 {
        info_field(c, "replication", field)
            .unwrap()
            .parse()
            .unwrap()
    };
    wait_for("the replica to apply the whole stream", || {
        offset_of(&mut c, "master_repl_offset") == offset_of(&mut r, "slave_repl_offset")
    });
    let old_offset = offset_of(&mut c, "master_repl_offset");
    assert_eq!(r.q("REPLICAOF NO ONE"), b"+OK\r\n");
    let promoted = dump_all(&mut r);
    let differ = |a: &BTreeMap<(usize, Vec<u8>), String>,
                  b: &BTreeMap<(usize, Vec<u8>), String>| {
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| (k.0, esc(&k.1), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (differ(&confirmed, &promoted), differ(&promoted, &confirmed)),
        (vec![], vec![]),
        "the promoted replica's data: (confirmed, not so there), (there, not so confirmed)"
    );
    expect_repl(&mut r, "role", "master");
    expect_repl(&mut r, "master_replid2", &old_id);
    expect_repl(&mut r, "second_repl_offset", &(old_offset + 1).to_string());
    assert_ne!(
        info_field(&mut r, "replication", "master_replid").as_deref(),
        Some(old_id.as_str())
    );
    assert_eq!(r.q("SET after:promotion yes"), b"+OK\r\n");
    // The old primary follows the promoted replica, continuing where it was.
    let rport = replica.port.to_string();
    assert_eq!(c.q(&format!("REPLICAOF 127.0.0.1 {rport}")), b"+OK\r\n");
    link_up(&mut c, &dir, "primary");
    assert_eq!(
        stat(&mut r, "sync_partial_ok"),
        1,
        "{}",
        log_of(&dir, "primary")
    );
    assert_eq!(stat(&mut r, "sync_full"), 0);
    assert_eq!(r.q("SET after:follow yes"), b"+OK\r\n");
    assert_eq!(r.q("WAIT 1 10000"), b":1\r\n");
    assert_eq!(c.q("GET after:promotion"), b"$3\r\nyes\r\n");
    assert_eq!(c.q("GET after:follow"), b"$3\r\nyes\r\n");
    assert!(c.q("SET x y").starts_with(b"-READONLY"));
    assert_eq!(dump_all(&mut c), dump_all(&mut r));
}

#[test]
fn a_percore_replica_follows_a_redis_primary() {
    let Some(redis) = common::redis_or_skip_with(
        "percore as a replica of redis-server",
        &["--repl-diskless-sync-delay", "0"],
    ) else {
        return;
    };
    let mut c = redis.client();
    for i in 0..5 {
        write_round(&mut c, &format!("before{i}"), 200);
    }
    let dir = TempDir::new("repl-redis");
    let (_replica, mut r) = replica_up(&dir, 2, redis.port);
    for i in 0..3 {
        write_round(&mut c, &format!("after{i}"), 20);
    }
    assert_same(&mut c, &mut r, "a redis-server primary");
    // The replica's clock is the real one: a TTL reads as the primary's, and a key it
    // stored has been idle for a moment, not since 1970.
    assert_eq!(c.q("SET clock:ttl v EX 1000"), b"+OK\r\n");
    assert_eq!(c.q("WAIT 1 5000"), b":1\r\n");
    let (want, got) = (s(&c.q("PTTL clock:ttl")), s(&r.q("PTTL clock:ttl")));
    let ms = |t: &str| -> i64 { t.trim().trim_start_matches(':').parse().unwrap() };
    assert!(
        (ms(&want) - ms(&got)).abs() < 2000,
        "PTTL on the primary {want:?}, on the replica {got:?}"
    );
    let idle = s(&r.q("OBJECT IDLETIME clock:ttl"));
    assert!(
        ms(&idle) <= 2,
        "OBJECT IDLETIME of a replicated key: {idle:?}"
    );
    assert_eq!(c.q("CLIENT KILL TYPE replica"), b":1\r\n");
    write_round(&mut c, "cut", 20);
    wait_for("the replica to resume", || {
        log_of(&dir, "replica").contains("Successful partial resynchronization")
    });
    assert_same(&mut c, &mut r, "a redis-server primary, after a cut link");
}

#[test]
fn a_replica_keeps_expired_keys_until_its_primary_deletes_them() {
    let (_dir, _primary, mut c, _replica, mut r) =
        primary_and_replica("repl-expire", &["--enable-debug-command", "yes"]);
    // The primary expires nothing by itself meanwhile: only a read of the key will.
    assert_eq!(c.q("DEBUG SET-ACTIVE-EXPIRE 0"), b"+OK\r\n");
    for i in 0..20 {
        assert_eq!(c.q(&format!("SET soon{i} v PX 50")), b"+OK\r\n");
    }
    assert_eq!(c.q("SET stays v"), b"+OK\r\n");
    assert_eq!(c.q("WAIT 1 5000"), b":1\r\n");
    std::thread::sleep(Duration::from_millis(300));
    // Expired for readers, but still held: the replica neither reads them away nor runs
    // its own expiry cycle.
    assert_eq!(r.q("GET soon0"), b"$-1\r\n");
    assert_eq!(r.q("EXISTS soon1"), b":0\r\n");
    assert_eq!(r.q("DBSIZE"), b":21\r\n");
    // The primary's reads expire them and send DELs.
    for i in 0..20 {
        assert_eq!(c.q(&format!("GET soon{i}")), b"$-1\r\n");
    }
    assert_eq!(c.q("WAIT 1 5000"), b":1\r\n");
    assert_eq!(r.q("DBSIZE"), b":1\r\n");
}

#[test]
fn a_replica_of_a_replica_gets_what_the_first_applied() {
    let dir = TempDir::new("repl-chain");
    let primary = percore_in(&dir, "primary", 2, &[]);
    let mut c = primary.client();
    write_round(&mut c, "first", 50);
    let (_middle, mut m) = replica_up(&dir, 3, primary.port);
    let mport = m.q("CONFIG GET port");
    let mport = String::from_utf8_lossy(&bulks(&mport)[1]).into_owned();
    let last = percore_in(&dir, "last", 1, &["--replicaof", "127.0.0.1", &mport]);
    let mut l = last.client();
    link_up(&mut l, &dir, "last");
    write_round(&mut c, "second", 50);
    assert_eq!(c.q("WAIT 1 10000"), b":1\r\n");
    assert_eq!(
        m.q("WAIT 1 10000").first(),
        Some(&b'-'),
        "WAIT on a replica"
    );
    // The keys set to expire at once are gone first.
    std::thread::sleep(Duration::from_millis(200));
    let want = dump_all(&mut m);
    assert!(want.len() > 40);
    wait_for("the last replica to hold what the middle one holds", || {
        dump_all(&mut l) == want
    });
}

#[test]
fn replicaof_no_one_ends_the_link_task_before_its_ok() {
    // A primary that stalls half-way through its payload: REPLICAOF NO ONE answers once
    // the link task has ended (its socket closed, its partial payload file removed), not
    // while it still waits for the rest (up to repl-timeout) in the background; a task
    // that went on could flush and load over writes taken after the OK.
    let (dir, l, replica) = replica_of_a_listener("repl-promote-sync");
    let mut p = FakePrimary::handshake(&l);
    p.raw(format!("+FULLRESYNC {} 0\r\n$1000000\r\nREDIS0009", "a".repeat(40)).as_bytes());
    let mut r = replica.client();
    wait_for("the payload's first bytes", || {
        info_field(&mut r, "replication", "master_sync_read_bytes").as_deref() == Some("9")
    });
    let temp_files = || {
        std::fs::read_dir(format!("{}/replica", dir.path()))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("temp-"))
            .count()
    };
    assert_eq!(temp_files(), 1, "the payload is received into a file");
    assert_eq!(r.q("REPLICAOF NO ONE"), b"+OK\r\n");
    assert_eq!(temp_files(), 0, "the partial payload is gone by the OK");
    p.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut tmp = [0u8; 64];
    let closed = loop {
        match std::io::Read::read(&mut p.s, &mut tmp) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "the link to the old primary is closed by the OK");
    assert_eq!(r.q("SET k v"), b"+OK\r\n");
    expect_repl(&mut r, "role", "master");
}

/// A percore replica (2 shards, in a new directory) of a listener of the test's own, for
/// a [`FakePrimary`].
fn replica_of_a_listener(tag: &str) -> (TempDir, std::net::TcpListener, Server) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = l.local_addr().unwrap().port().to_string();
    let dir = TempDir::new(tag);
    let replica = percore_in(&dir, "replica", 2, &["--replicaof", "127.0.0.1", &lport]);
    (dir, l, replica)
}

/// A 2-core replica linked to a stand-in primary whose payload holds `records` (RDB
/// records of database 0), and a client of the replica once its link is up.
fn replica_of_a_fake_primary(tag: &str, records: &[u8]) -> (TempDir, FakePrimary, Server, Client) {
    let (dir, l, replica) = replica_of_a_listener(tag);
    let p = FakePrimary::accept_with(&l, records);
    let mut r = replica.client();
    link_up(&mut r, &dir, "replica");
    (dir, p, replica, r)
}

/// Milliseconds since the Unix epoch, `ms` from now (a PXAT deadline).
fn epoch_ms_in(ms: u128) -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + ms
}

/// A stand-in primary: takes a replica's handshake, sends it an empty payload, then
/// whatever the test writes, and reads its ACKs.
struct FakePrimary {
    s: std::net::TcpStream,
    buf: Vec<u8>,
    /// Bytes of stream sent since the payload.
    offset: u64,
}

impl FakePrimary {
    /// Waits for the replica on `l` and brings it to the stream: its payload holds
    /// `records` (RDB records of database 0).
    fn accept_with(l: &std::net::TcpListener, records: &[u8]) -> FakePrimary {
        let mut p = FakePrimary::handshake(l);
        p.raw(format!("+FULLRESYNC {} 0\r\n", "a".repeat(40)).as_bytes());
        // An RDB, its checksum 0 ("not computed").
        let mut rdb = b"REDIS0009".to_vec();
        if !records.is_empty() {
            rdb.extend_from_slice(&[0xfe, 0]);
            rdb.extend_from_slice(records);
        }
        rdb.push(0xff);
        rdb.extend_from_slice(&[0; 8]);
        p.raw(format!("${}\r\n", rdb.len()).as_bytes());
        p.raw(&rdb);
        p
    }

    /// Waits for the replica on `l` and answers its handshake up to its PSYNC.
    fn handshake(l: &std::net::TcpListener) -> FakePrimary {
        let (link, _) = l.accept().unwrap();
        link.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut p = FakePrimary {
            s: link,
            buf: Vec::new(),
            offset: 0,
        };
        loop {
            let cmd = bulks(&p.read_command());
            let name = s(&cmd[0]).to_ascii_uppercase();
            match name.as_str() {
                "PING" => p.raw(b"+PONG\r\n"),
                "PSYNC" => break,
                _ => p.raw(b"+OK\r\n"),
            }
        }
        p
    }

    fn raw(&mut self, b: &[u8]) {
        use std::io::Write;
        self.s.write_all(b).unwrap();
    }

    fn read_command(&mut self) -> Vec<u8> {
        use std::io::Read;
        loop {
            if let Some(n) = common::reply_len(&self.buf) {
                return self.buf.drain(..n).collect();
            }
            let mut tmp = [0u8; 4096];
            let n = self.s.read(&mut tmp).unwrap();
            assert!(n > 0, "the replica closed its link");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// Sends a command of the stream.
    fn send(&mut self, line: &str) {
        let words = common::words(line);
        let refs: Vec<&[u8]> = words.iter().map(|w| w.as_slice()).collect();
        let cmd = common::encode(&refs);
        self.offset += cmd.len() as u64;
        self.raw(&cmd);
    }

    /// Returns once the replica acknowledged everything sent.
    fn synced(&mut self) {
        let getack = common::encode(&[b"REPLCONF", b"GETACK", b"*"]);
        self.raw(&getack);
        self.offset += getack.len() as u64;
        loop {
            let cmd = bulks(&self.read_command());
            if cmd.len() == 3 && s(&cmd[1]).eq_ignore_ascii_case("ack") {
                let at: u64 = s(&cmd[2]).parse().unwrap();
                if at >= self.offset {
                    return;
                }
            }
        }
    }
}

/// A primary that sends a blocking command or a PSYNC on the link does not stall or take
/// over the replica's link: the blocking command only tries (Redis never blocks its master
/// client), the PSYNC is ignored, and the commands after them apply.
#[test]
fn blocking_commands_and_psync_from_the_primary_do_not_stall_the_link() {
    let (_dir, mut p, _replica, mut r) = replica_of_a_fake_primary("repl-upstream", &[]);
    p.send("SELECT 0");
    p.send("BLPOP nothing-here 0");
    p.send("SET after-blpop 1");
    p.send("BRPOPLPUSH nothing-either dst 0");
    p.send("PSYNC ? -1");
    p.send("SET after-psync 2");
    p.synced();
    assert_eq!(r.q("GET after-blpop"), b"$1\r\n1\r\n");
    assert_eq!(r.q("GET after-psync"), b"$1\r\n2\r\n");
    assert_eq!(r.q("EXISTS dst"), b":0\r\n");
    expect_repl(&mut r, "master_link_status", "up");
}

#[test]
fn a_replica_applies_relative_ttls_at_the_real_time_and_its_master_sees_expired_keys() {
    let (_dir, mut p, _replica, mut r) = replica_of_a_fake_primary("repl-clock", &[]);
    // What an older primary sends: relative TTLs.
    p.send("SELECT 0");
    p.send("SETEX relative 100 v");
    p.send("SET plain v");
    p.send("SET relative2 v");
    p.send("EXPIRE relative2 200");
    // A key that expires on the replica's clock before its primary's write reaches it.
    let soon = epoch_ms_in(100);
    p.send(&format!("SET late abc PXAT {soon}"));
    p.send(&format!("SET counter 5 PXAT {soon}"));
    p.synced();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.q("GET late"), b"$-1\r\n", "expired for a reader");
    p.send("APPEND late def");
    p.send("PERSIST late");
    // A unit of several ops comes as MULTI/EXEC: the master client sees the key there too.
    p.send("MULTI");
    p.send("INCR counter");
    p.send("PERSIST counter");
    p.send("EXEC");
    p.synced();
    assert_eq!(
        r.q("GET counter"),
        b"$1\r\n6\r\n",
        "INCR in EXEC saw the key"
    );
    let ttl = |r: &mut Client, k: &str| -> i64 {
        s(&r.q(&format!("TTL {k}")))
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap()
    };
    let t = ttl(&mut r, "relative");
    assert!(
        (90..=100).contains(&t),
        "TTL of SETEX 100 on the replica: {t}"
    );
    let t = ttl(&mut r, "relative2");
    assert!(
        (190..=200).contains(&t),
        "TTL of EXPIRE 200 on the replica: {t}"
    );
    let idle = s(&r.q("OBJECT IDLETIME plain"));
    let idle: i64 = idle.trim().trim_start_matches(':').parse().unwrap();
    // Seconds (the old clock of 0 read as 56 years).
    assert!(idle <= 60, "OBJECT IDLETIME of a replicated key: {idle}");
    // The master client saw the key its clock had expired, as its primary did.
    assert_eq!(r.q("GET late"), b"$6\r\nabcdef\r\n");
}

/// Two keys named from `base`, one on each of a 2-shard server's cores: (first, second).
fn keys_on_both_shards(base: &str) -> (String, String) {
    let a = format!("{base}-a");
    let other = 1 - common::shard_of(a.as_bytes(), 2);
    let b = (0..)
        .map(|i| format!("{base}-b{i}"))
        .find(|k| common::shard_of(k.as_bytes(), 2) == other)
        .unwrap();
    (a, b)
}

/// A command whose keys live on several of the replica's cores, sent by its primary, sees
/// keys the replica's clock has expired, as a one-shard command does (Redis's master
/// client never finds a key expired): otherwise the replica's RENAME, SMOVE, LMOVE … of
/// such a key would fail or act on nothing, and its data would part from its primary's.
#[test]
fn commands_across_shards_from_the_primary_see_keys_the_replica_has_expired() {
    let (_dir, mut p, _replica, mut r) = replica_of_a_fake_primary("repl-cross-expired", &[]);
    let soon = epoch_ms_in(100);
    let (str_src, str_dst) = keys_on_both_shards("str");
    let (set_src, set_dst) = keys_on_both_shards("set");
    let (list_src, list_dst) = keys_on_both_shards("list");
    let (blist_src, blist_dst) = keys_on_both_shards("blist");
    let (union_src, union_dst) = keys_on_both_shards("union");
    let (bits_src, bits_dst) = keys_on_both_shards("bits");
    p.send("SELECT 0");
    p.send(&format!("SET {str_src} abc PXAT {soon}"));
    p.send(&format!("SADD {set_src} m1 m2"));
    p.send(&format!("PEXPIREAT {set_src} {soon}"));
    p.send(&format!("SADD {set_dst} other"));
    p.send(&format!("RPUSH {list_src} x y"));
    p.send(&format!("PEXPIREAT {list_src} {soon}"));
    p.send(&format!("RPUSH {blist_src} bx"));
    p.send(&format!("PEXPIREAT {blist_src} {soon}"));
    p.send(&format!("SADD {union_src} u1 u2"));
    p.send(&format!("PEXPIREAT {union_src} {soon}"));
    p.send(&format!("SET {bits_src} A PXAT {soon}"));
    p.synced();
    std::thread::sleep(Duration::from_millis(300));
    for k in [
        &str_src, &set_src, &list_src, &blist_src, &union_src, &bits_src,
    ] {
        assert_eq!(
            r.q(&format!("EXISTS {k}")),
            b":0\r\n",
            "{k} is expired for a reader"
        );
    }
    // What the primary, whose clock has not reached the deadlines yet, sends next.
    p.send(&format!("RENAME {str_src} {str_dst}"));
    p.send(&format!("PERSIST {str_dst}"));
    p.send(&format!("SMOVE {set_src} {set_dst} m1"));
    p.send(&format!("LMOVE {list_src} {list_dst} LEFT RIGHT"));
    p.send(&format!("BLMOVE {blist_src} {blist_dst} LEFT RIGHT 0"));
    p.send(&format!("SUNIONSTORE {union_dst} {union_src}"));
    p.send(&format!("BITOP NOT {bits_dst} {bits_src}"));
    p.synced();
    assert_eq!(r.q(&format!("GET {str_dst}")), b"$3\r\nabc\r\n", "RENAME");
    assert_eq!(r.q(&format!("TTL {str_dst}")), b":-1\r\n");
    assert_eq!(r.q(&format!("SISMEMBER {set_dst} m1")), b":1\r\n", "SMOVE");
    assert_eq!(r.q(&format!("SCARD {set_dst}")), b":2\r\n");
    assert_eq!(
        r.q(&format!("LRANGE {list_dst} 0 -1")),
        b"*1\r\n$1\r\nx\r\n",
        "LMOVE"
    );
    assert_eq!(
        r.q(&format!("LRANGE {blist_dst} 0 -1")),
        b"*1\r\n$2\r\nbx\r\n",
        "BLMOVE"
    );
    assert_eq!(r.q(&format!("SCARD {union_dst}")), b":2\r\n", "SUNIONSTORE");
    // NOT of "A" (0x41) is 0xbe.
    assert_eq!(r.q(&format!("GET {bits_dst}")), b"$1\r\n\xbe\r\n", "BITOP");
    // The sources stay expired for readers until the primary deletes them.
    assert_eq!(r.q(&format!("EXISTS {list_src}")), b":0\r\n");
    p.send(&format!("DEL {list_src}"));
    p.synced();
    expect_repl(&mut r, "master_link_status", "up");
}

/// A primary of `keys` keys `key:N` (MSETs of 1,000, pipelined), for a full sync long
/// enough to watch.
fn populated_primary(dir: &TempDir, keys: usize) -> Server {
    let primary = percore_in(dir, "primary", 1, &[]);
    let mut c = primary.client();
    let mut pipeline = Vec::new();
    for batch in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
        for i in batch {
            args.push(format!("key:{i}").into_bytes());
            args.push(format!("value of key {i}, padded").into_bytes());
        }
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        pipeline.extend_from_slice(&common::encode(&refs));
    }
    c.send_raw(&pipeline);
    for _ in 0..keys.div_ceil(1000) {
        assert_eq!(c.read_reply(), b"+OK\r\n");
    }
    primary
}

/// While a replica loads its primary's payload its cores go on answering: normal clients get
/// LOADING (as from Redis, which answers between slices of its load), INFO says
/// `loading:1` with the load's progress, and the keys appear when it is done. (The load
/// used to hold every core until it ended: clients got no answer meanwhile.)
#[test]
fn a_replica_answers_its_clients_while_it_loads_its_primarys_payload() {
    let dir = TempDir::new("repl-loading");
    let keys = 500_000;
    let primary = populated_primary(&dir, keys);
    let replica = percore_in(&dir, "replica", 2, &[]);
    // Enough connections that both cores have some.
    let mut clients: Vec<Client> = (0..6).map(|_| replica.client()).collect();
    let mut admin = replica.client();
    // A transaction queued before the load is judged by what it would run when EXEC comes
    // during the load: LOADING, and the transaction is doomed (EXECABORT), as in Redis.
    let mut tx = replica.client();
    assert_eq!(tx.q("MULTI"), b"+OK\r\n");
    assert_eq!(tx.q("EXISTS key:0"), b"+QUEUED\r\n");
    let mut exec_tried = false;
    assert_eq!(
        admin.q(&format!("REPLICAOF 127.0.0.1 {}", primary.port)),
        b"+OK\r\n"
    );
    let (mut refused, mut progress) = (0, None);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "{}", log_of(&dir, "replica"));
        let mut loaded = 0;
        for c in clients.iter_mut() {
            let r = c.q("EXISTS key:0");
            if r.starts_with(b"-LOADING") {
                assert_eq!(r, b"-LOADING Redis is loading the dataset in memory\r\n");
                refused += 1;
            } else if r == b":1\r\n" {
                loaded += 1;
            } else {
                assert_eq!(r, b":0\r\n", "before the load");
            }
        }
        let info = s(&admin.q("INFO persistence"));
        if info.contains("loading:1\r\n") {
            let field = |name: &str| -> u64 {
                let v = info
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'));
                v.and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} in {info}"))
            };
            let (total, done) = (field("loading_total_bytes"), field("loading_loaded_bytes"));
            assert!(total > 0 && done <= total, "{info}");
            progress = Some((done, total));
            if !exec_tried && done * 2 < total {
                exec_tried = true;
                assert_eq!(
                    tx.q("EXEC"),
                    b"-LOADING Redis is loading the dataset in memory\r\n"
                );
            }
        }
        if loaded == clients.len() {
            break;
        }
    }
    assert!(
        refused > 0,
        "no client was answered LOADING during the load"
    );
    assert!(progress.is_some(), "INFO never said loading:1");
    assert!(
        exec_tried,
        "EXEC was never sent in the first half of the load"
    );
    link_up(&mut admin, &dir, "replica");
    assert_eq!(admin.q("DBSIZE"), format!(":{keys}\r\n").as_bytes());
    assert!(s(&admin.q("INFO persistence")).contains("loading:0\r\n"));
}

/// A replica stopped (SIGTERM) while it loads its primary's payload exits without saving, as
/// Redis does: the part loaded so far must not replace its last good snapshot.
#[test]
fn a_replica_stopped_while_it_loads_keeps_its_last_snapshot() {
    let dir = TempDir::new("repl-loading-stop");
    // About 3 s of load in a debug build: the stop comes well inside it.
    let primary = populated_primary(&dir, 1_000_000);
    let mut replica = percore_in(&dir, "replica", 2, &["--save", "3600 1"]);
    let mut r = replica.client();
    assert_eq!(r.q("SET before-sync kept"), b"+OK\r\n");
    assert_eq!(r.q("SAVE"), b"+OK\r\n");
    assert_eq!(
        r.q(&format!("REPLICAOF 127.0.0.1 {}", primary.port)),
        b"+OK\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !s(&r.q("INFO persistence")).contains("loading:1\r\n") {
        assert!(
            Instant::now() < deadline,
            "never seen loading: {}",
            log_of(&dir, "replica")
        );
    }
    let status = replica
        .stop_with(libc::SIGTERM, Duration::from_secs(60))
        .expect("the replica did not stop on SIGTERM while loading");
    assert!(status.success(), "{status:?}");
    let log = log_of(&dir, "replica");
    assert!(
        log.contains("Shutting down without saving: a synchronization's payload is still loading"),
        "{log}"
    );
    let again = percore_in(&dir, "replica", 2, &[]);
    let mut r = again.client();
    assert_eq!(r.q("GET before-sync"), b"$4\r\nkept\r\n");
    assert_eq!(r.q("DBSIZE"), b":1\r\n");
}

/// A key whose deadline passed while the payload travelled is loaded by the replica all
/// the same (Redis's rdbLoad drops expired keys only on a master): expired for readers,
/// there for its primary's next command on it.
#[test]
fn a_replica_loads_keys_its_payload_holds_past_their_deadline() {
    // EXPIRETIME_MS 1000 (1970), a string "old" = "v".
    let mut records = vec![0xfc];
    records.extend_from_slice(&1000u64.to_le_bytes());
    records.extend_from_slice(&[0, 3, b'o', b'l', b'd', 1, b'v']);
    let (_dir, mut p, _replica, mut r) = replica_of_a_fake_primary("repl-load-expired", &records);
    assert_eq!(r.q("DBSIZE"), b":1\r\n");
    assert_eq!(r.q("EXISTS old"), b":0\r\n", "expired for a reader");
    p.send("SELECT 0");
    p.send("PERSIST old");
    p.synced();
    assert_eq!(r.q("GET old"), b"$1\r\nv\r\n");
}

#[test]
fn wait_wakes_on_the_replica_ack_and_counts_right() {
    // A redis-server replica: it answers GETACK at once, so WAIT's time is percore's.
    let dir = TempDir::new("repl-wait");
    let primary = percore_in(&dir, "primary", 2, &[]);
    let mut c = primary.client();
    let Some(redis) = replica_of(&primary, &dir) else {
        eprintln!("redis-server not installed: skipped");
        return;
    };
    let mut r = redis.client();
    wait_for("the redis replica's link", || {
        info_field(&mut r, "replication", "master_link_status").as_deref() == Some("up")
    });
    for i in 0..20 {
        assert_eq!(c.q(&format!("SET w{i} v")), b"+OK\r\n");
        let t0 = Instant::now();
        assert_eq!(c.q("WAIT 1 0"), b":1\r\n");
        // Woken by the ACK, well before the replica's next ACK of its own (every second).
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "WAIT took {:?}",
            t0.elapsed()
        );
        assert_eq!(r.q(&format!("GET w{i}")), b"$1\r\nv\r\n");
    }
    // More than there are: the count at the timeout, not before.
    let t0 = Instant::now();
    assert_eq!(c.q("WAIT 2 300"), b":1\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(300));

    // While clients are paused a WAIT puts no GETACK in the stream (Redis 7.0 sends none
    // then): a cluster master paused for a manual failover has announced the offset its
    // replica must reach exactly. The GETACK goes out when the pause ends.
    let offset = |c: &mut Client| info_field(c, "replication", "master_repl_offset").unwrap();
    let before = offset(&mut c);
    assert_eq!(c.q("CLIENT PAUSE 10000 WRITE"), b"+OK\r\n");
    assert_eq!(c.q("WAIT 2 200"), b":1\r\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(offset(&mut c), before, "the stream moved during the pause");
    assert_eq!(c.q("CLIENT UNPAUSE"), b"+OK\r\n");
    wait_for("the GETACK after the pause", || offset(&mut c) != before);
}

#[test]
fn a_replica_with_tls_replication_syncs_over_tls_and_one_without_it_retries() {
    let dir = TempDir::new("repl-tls");
    // One self-signed certificate: the primary's, the replica's client certificate, and
    // the CA both trust.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (crt, pem) = (
        format!("{}/node.crt", dir.path()),
        format!("{}/node.key", dir.path()),
    );
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&pem, key.serialize_pem()).unwrap();
    let tls = [
        "--tls-cert-file",
        crt.as_str(),
        "--tls-key-file",
        pem.as_str(),
        "--tls-ca-cert-file",
        crt.as_str(),
    ];
    let tls_port = common::free_port().to_string();
    let mut flags = vec!["--tls-port", tls_port.as_str(), "--tls-replication", "yes"];
    flags.extend_from_slice(&tls);
    let primary = percore_in(&dir, "primary", 2, &flags);
    let mut c = primary.client();
    write_round(&mut c, "before", 50);
    // By name: resolved off the core, each address tried (the certificate's name is not
    // what is checked, as Redis checks none).
    let mut flags = vec![
        "--tls-replication",
        "yes",
        "--replicaof",
        "localhost",
        &tls_port,
    ];
    flags.extend_from_slice(&tls);
    let replica = percore_in(&dir, "replica", 3, &flags);
    let mut r = replica.client();
    link_up(&mut r, &dir, "replica");
    write_round(&mut c, "after", 50);
    assert_eq!(c.q("WAIT 1 10000"), b":1\r\n");
    assert_same(&mut c, &mut r, "a replica over TLS");
    // Without tls-replication the link to the TLS port fails at its first reply, as
    // Redis logs it, and is tried again.
    let plain = percore_in(&dir, "plain", 1, &["--replicaof", "127.0.0.1", &tls_port]);
    let mut p = plain.client();
    wait_for("the plain replica to try twice", || {
        let log = log_of(&dir, "plain");
        log.matches("Connecting to MASTER").count() >= 2
            && log.contains("Master did not respond to command during SYNC handshake")
    });
    expect_repl(&mut p, "master_link_status", "down");
}
