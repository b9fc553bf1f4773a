//! MIGRATE between percore nodes (1 and 3 shards on the source) and both ways between
//! percore and a real `redis-server` 7.0: every type moves with its value and TTL, COPY,
//! REPLACE, BUSYKEY, KEYS over several shards, the destination database, AUTH and AUTH2,
//! NOKEY, unreachable and silent targets (the core keeps serving meanwhile), the socket
//! cache (INFO `migrate_cached_sockets`), the deletion's "del" event and WATCH, and every
//! error line byte for byte beside Redis's. RESTORE-ASKING answers as RESTORE does.

mod common;

use common::{bulks, esc, redis_or_skip, words, Client, Server};
use std::time::{Duration, Instant};

fn run(c: &mut Client, line: &str) -> Vec<u8> {
    let args = words(line);
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    c.cmd(&refs)
}

fn int(r: &[u8]) -> i64 {
    percore_proto::encode::parse_int_reply(r)
        .unwrap_or_else(|| panic!("not an integer: {}", esc(r)))
}

/// The error line for the target's error `e`, escaped (as [`migrate`] returns it).
fn target_error(e: &str) -> String {
    format!(r"-ERR Target instance replied with error: {e}\r\n")
}

/// `MIGRATE 127.0.0.1 port rest` on `c`: its reply, escaped.
fn migrate(c: &mut Client, port: u16, rest: &str) -> String {
    esc(&run(c, &format!("MIGRATE 127.0.0.1 {port} {rest}")))
}

/// A key's type and value in a canonical text (members and fields sorted).
fn value_of(c: &mut Client, key: &str) -> String {
    let t = run(c, &format!("TYPE {key}"));
    let t = String::from_utf8_lossy(&t[1..t.len() - 2]).into_owned();
    let mut parts = match t.as_str() {
        "string" => bulks(&run(c, &format!("GET {key}"))),
        "list" => bulks(&run(c, &format!("LRANGE {key} 0 -1"))),
        "zset" => bulks(&run(c, &format!("ZRANGE {key} 0 -1 WITHSCORES"))),
        "set" => {
            let mut m = bulks(&run(c, &format!("SMEMBERS {key}")));
            m.sort();
            m
        }
        "hash" => {
            let flat = bulks(&run(c, &format!("HGETALL {key}")));
            let mut pairs: Vec<Vec<u8>> = flat.chunks(2).map(|p| p.concat()).collect();
            pairs.sort();
            pairs
        }
        "none" => Vec::new(),
        other => panic!("unexpected type {other}"),
    };
    parts.insert(0, t.into_bytes());
    parts.iter().map(|p| esc(p)).collect::<Vec<_>>().join(" ")
}

/// Keys of every type, small and large encodings; those named `*:ttl` expire in a minute.
fn fill(c: &mut Client) -> Vec<String> {
    let big: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let big = big.join(" ");
    let scored: Vec<String> = (0..300).map(|i| format!("{i}.5 z{i}")).collect();
    let scored = scored.join(" ");
    let fields: Vec<String> = (0..300).map(|i| format!("f{i} v{i}")).collect();
    let fields = fields.join(" ");
    let lines = [
        "SET s:raw hello".to_string(),
        "SET s:int 12345".into(),
        format!("SET s:long {}", "x".repeat(3000)),
        "SET s:ttl expiring".into(),
        "RPUSH l:small a b c 1 2".into(),
        format!("RPUSH l:big {big}"),
        "HSET h:small a 1 b 2".into(),
        format!("HSET h:big {fields}"),
        "SADD set:int 1 2 3 40000".into(),
        "SADD set:small x y z".into(),
        format!("SADD set:big {big}"),
        "ZADD z:small 1 a 2.5 b -3 c".into(),
        format!("ZADD z:big {scored}"),
        "RPUSH l:ttl p q".into(),
        "PFADD hll a b c".into(),
    ];
    for l in &lines {
        let r = run(c, l);
        assert!(r[0] != b'-', "{l}: {}", esc(&r));
    }
    for k in ["s:ttl", "l:ttl"] {
        assert_eq!(run(c, &format!("PEXPIRE {k} 60000")), b":1\r\n");
    }
    lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect()
}

fn values(c: &mut Client, keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| value_of(c, k)).collect()
}

fn stat(c: &mut Client, field: &str) -> i64 {
    let info = String::from_utf8_lossy(&run(c, "INFO stats")).into_owned();
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO: {info}"));
    line.trim().parse().unwrap()
}

/// Every type, with its TTL, from percore (1 and 3 shards) into percore; the KEYS form
/// spans every shard of the source; the keys leave the source.
#[test]
fn percore_to_percore_moves_every_type_with_its_ttl() {
    let target = Server::percore(2, &[]);
    for shards in [1, 3] {
        let source = Server::percore(shards, &[]);
        let (mut s, mut t) = (source.client(), target.client());
        assert_eq!(run(&mut t, "FLUSHALL"), b"+OK\r\n");
        let keys = fill(&mut s);
        let before = values(&mut s, &keys);
        let pttl_before = int(&run(&mut s, "PTTL s:ttl"));
        // One key alone, then all the others in one KEYS form.
        let tp = target.port;
        let first = migrate(&mut s, tp, "s:raw 0 5000");
        assert_eq!(first, r"+OK\r\n", "{shards} shard(s)");
        let rest = format!("\"\" 0 5000 KEYS {}", keys[1..].join(" "));
        assert_eq!(migrate(&mut s, tp, &rest), r"+OK\r\n", "{shards} shard(s)");
        assert_eq!(run(&mut s, "DBSIZE"), b":0\r\n", "the source keeps nothing");
        assert_eq!(values(&mut t, &keys), before, "{shards} shard(s)");
        let pttl = int(&run(&mut t, "PTTL s:ttl"));
        assert!(
            pttl > pttl_before - 10_000 && pttl <= pttl_before,
            "TTL {pttl} after {pttl_before}"
        );
        assert!(int(&run(&mut t, "PTTL l:ttl")) > 40_000);
        assert_eq!(run(&mut t, "PTTL s:int"), b":-1\r\n");
        // Into another database of the target.
        run(&mut s, "SET dbkey v");
        assert_eq!(migrate(&mut s, tp, "dbkey 7 5000"), r"+OK\r\n");
        assert_eq!(run(&mut t, "EXISTS dbkey"), b":0\r\n");
        run(&mut t, "SELECT 7");
        assert_eq!(run(&mut t, "GET dbkey"), b"$1\r\nv\r\n");
        run(&mut t, "SELECT 0");
    }
}

/// COPY keeps the source; without REPLACE an existing key is the target's BUSYKEY error,
/// passed back, and the source keeps it; REPLACE overwrites; missing keys are NOKEY; a
/// KEYS form with one refused key moves the others.
#[test]
fn copy_replace_busykey_and_nokey() {
    let target = Server::percore(1, &[]);
    let source = Server::percore(3, &[]);
    let (mut s, mut t) = (source.client(), target.client());
    let port = target.port;
    run(&mut s, "SET a 1");
    let copy = migrate(&mut s, port, "a 0 5000 COPY");
    assert_eq!(copy, r"+OK\r\n");
    assert_eq!(run(&mut s, "GET a"), b"$1\r\n1\r\n");
    assert_eq!(run(&mut t, "GET a"), b"$1\r\n1\r\n");
    run(&mut s, "SET a 2");
    let busy = migrate(&mut s, port, "a 0 5000");
    assert_eq!(
        busy,
        target_error("BUSYKEY Target key name already exists.")
    );
    assert_eq!(
        run(&mut s, "GET a"),
        b"$1\r\n2\r\n",
        "the refused key stays"
    );
    assert_eq!(run(&mut t, "GET a"), b"$1\r\n1\r\n");
    let replace = migrate(&mut s, port, "a 0 5000 REPLACE");
    assert_eq!(replace, r"+OK\r\n");
    assert_eq!(run(&mut s, "EXISTS a"), b":0\r\n");
    assert_eq!(run(&mut t, "GET a"), b"$1\r\n2\r\n");
    let nokey = migrate(&mut s, port, "a 0 5000");
    assert_eq!(nokey, r"+NOKEY\r\n");
    let nokeys = migrate(&mut s, port, "\"\" 0 5000 KEYS x y z");
    assert_eq!(nokeys, r"+NOKEY\r\n");
    // k1..k9 over three shards; k5 exists on the target.
    for i in 1..10 {
        run(&mut s, &format!("SET k{i} s{i}"));
    }
    run(&mut t, "SET k5 target");
    let ks: Vec<String> = (1..10).map(|i| format!("k{i}")).collect();
    let rest = format!("\"\" 0 5000 KEYS missing {}", ks.join(" "));
    assert_eq!(
        migrate(&mut s, port, &rest),
        target_error("BUSYKEY Target key name already exists.")
    );
    for i in 1..10 {
        let (src, dst) = (
            run(&mut s, &format!("GET k{i}")),
            run(&mut t, &format!("GET k{i}")),
        );
        if i == 5 {
            assert_eq!(src, b"$2\r\ns5\r\n");
            assert_eq!(dst, b"$6\r\ntarget\r\n");
        } else {
            assert_eq!(src, b"$-1\r\n", "k{i} left the source");
            assert_eq!(dst, format!("$2\r\ns{i}\r\n").into_bytes(), "k{i}");
        }
    }
}

/// AUTH and AUTH2 go first on the socket; the target's refusal comes back as its error.
#[test]
fn auth_and_auth2_reach_protected_targets() {
    let target = Server::percore(1, &["--requirepass", "secret"]);
    let source = Server::percore(3, &[]);
    let (mut s, mut t) = (source.client(), target.client());
    let port = target.port;
    assert_eq!(run(&mut t, "AUTH secret"), b"+OK\r\n");
    assert_eq!(run(&mut t, "ACL SETUSER mover on >pw ~* +@all"), b"+OK\r\n");
    run(&mut s, "SET a 1");
    let noauth = migrate(&mut s, port, "a 0 5000");
    assert_eq!(noauth, target_error("NOAUTH Authentication required."));
    let wrong = migrate(&mut s, port, "a 0 5000 AUTH nope");
    assert_eq!(
        wrong,
        target_error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(run(&mut s, "GET a"), b"$1\r\n1\r\n");
    let ok = migrate(&mut s, port, "a 0 5000 AUTH secret");
    assert_eq!(ok, r"+OK\r\n");
    assert_eq!(run(&mut t, "GET a"), b"$1\r\n1\r\n");
    run(&mut s, "SET b 2");
    let rest = "\"\" 3 5000 COPY AUTH2 mover pw KEYS b";
    assert_eq!(migrate(&mut s, port, rest), r"+OK\r\n");
    run(&mut t, "SELECT 3");
    assert_eq!(run(&mut t, "GET b"), b"$1\r\n2\r\n");
    assert_eq!(run(&mut s, "GET b"), b"$1\r\n2\r\n");
    // The secrets never show in the slow log.
    run(&mut s, "CONFIG SET slowlog-log-slower-than 0");
    migrate(&mut s, port, "b 0 5000 COPY REPLACE AUTH2 mover pw");
    let log = esc(&run(&mut s, "SLOWLOG GET 2"));
    assert!(log.contains("(redacted)") && !log.contains("pw"), "{log}");
}

/// A name that does not resolve fails to connect; a port with nothing listening fails as
/// Redis's does (its non-blocking connect reports no error, its first write does); a
/// listener that never answers times out within about the timeout, while the core goes
/// on serving other clients; none leaves a cached socket, and the key stays.
#[test]
fn unreachable_and_silent_targets() {
    let source = Server::percore(1, &[]);
    let mut s = source.client();
    run(&mut s, "MSET a 1 b 2");
    let dead = common::free_port();
    let r = migrate(&mut s, dead, "a 0 500");
    assert_eq!(r, r"-IOERR error or timeout writing to target instance\r\n");
    let r = run(
        &mut s,
        &format!("MIGRATE no-such-host.invalid {dead} a 0 500"),
    );
    assert_eq!(
        esc(&r),
        r"-IOERR error or timeout connecting to the client\r\n"
    );
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let t0 = Instant::now();
    s.send(&[
        b"MIGRATE",
        b"127.0.0.1",
        port.to_string().as_bytes(),
        b"a",
        b"0",
        b"700",
    ]);
    // Meanwhile the core answers others, and other keys; the key waits for the transfer's
    // end (its lock), then is still there.
    let mut other = source.client();
    let t1 = Instant::now();
    while !esc(&run(&mut other, "CLIENT LIST")).contains("cmd=migrate") {
        assert!(
            t1.elapsed() < Duration::from_secs(2),
            "MIGRATE never started"
        );
    }
    let p0 = Instant::now();
    assert_eq!(run(&mut other, "PING"), b"+PONG\r\n");
    assert_eq!(run(&mut other, "GET b"), b"$1\r\n2\r\n");
    let quick = p0.elapsed();
    assert!(quick < Duration::from_millis(400), "{quick:?}");
    assert_eq!(run(&mut other, "GET a"), b"$1\r\n1\r\n");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "GET a ran inside the transfer: {waited:?}"
    );
    let r = s.read_reply();
    let took = t0.elapsed();
    assert_eq!(
        esc(&r),
        r"-IOERR error or timeout reading to target instance\r\n"
    );
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(run(&mut s, "GET a"), b"$1\r\n1\r\n");
    assert_eq!(stat(&mut s, "migrate_cached_sockets"), 0);
    drop(silent);
}

/// One socket per target, reused (the target sees one connection), counted in INFO, and
/// closed after 10 s idle.
#[test]
fn sockets_are_cached_reused_and_expire() {
    let target = Server::percore(1, &[]);
    let source = Server::percore(1, &[]);
    let (mut s, mut t) = (source.client(), target.client());
    let clients = |t: &mut Client| {
        let info = String::from_utf8_lossy(&run(t, "INFO clients")).into_owned();
        info.lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .unwrap()
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    assert_eq!(stat(&mut s, "migrate_cached_sockets"), 0);
    for i in 0..3 {
        run(&mut s, &format!("SET k{i} v"));
        let r = migrate(&mut s, target.port, &format!("k{i} {i} 5000"));
        assert_eq!(r, r"+OK\r\n");
        assert_eq!(stat(&mut s, "migrate_cached_sockets"), 1);
        assert_eq!(
            clients(&mut t),
            2,
            "the test's client and one cached socket"
        );
    }
    // The target drops the cached socket: the next MIGRATE finds it closed, and retries
    // once on a new one (nothing was answered, no timeout), as Redis does.
    let mine = int(&run(&mut t, "CLIENT ID"));
    let killed = run(&mut t, &format!("CLIENT KILL ID {mine} SKIPME yes"));
    assert_eq!(
        esc(&killed),
        r":0\r\n",
        "CLIENT KILL ID names only this client"
    );
    let killed = run(&mut t, "CLIENT KILL TYPE normal SKIPME yes");
    assert_eq!(esc(&killed), r":1\r\n");
    run(&mut s, "SET again v");
    assert_eq!(migrate(&mut s, target.port, "again 0 5000"), r"+OK\r\n");
    assert_eq!(run(&mut t, "GET again"), b"$1\r\nv\r\n");
    assert_eq!(stat(&mut s, "migrate_cached_sockets"), 1);
    let t0 = Instant::now();
    while stat(&mut s, "migrate_cached_sockets") != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "idle socket never closed"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(t0.elapsed() >= Duration::from_secs(8), "{:?}", t0.elapsed());
}

/// The source's deletion is a client's DEL: a "del" event, and a WATCH on the key fails.
#[test]
fn deleting_fires_events_and_watch() {
    let target = Server::percore(1, &[]);
    let source = Server::percore(3, &["--notify-keyspace-events", "Eg"]);
    let mut s = source.client();
    let mut sub = source.client();
    let mut watcher = source.client();
    run(&mut sub, "SUBSCRIBE __keyevent@0__:del");
    run(&mut s, "SET a 1");
    run(&mut s, "SET b 1");
    run(&mut watcher, "WATCH a");
    let r = migrate(&mut s, target.port, "\"\" 0 5000 KEYS a b");
    assert_eq!(r, r"+OK\r\n");
    let mut got = [sub.read_reply(), sub.read_reply()].map(|m| bulks(&m)[2].clone());
    got.sort();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    run(&mut watcher, "MULTI");
    run(&mut watcher, "SET a 2");
    assert_eq!(esc(&run(&mut watcher, "EXEC")), r"*-1\r\n");
}

/// The same MIGRATE lines to a redis-server source and to a percore source (1 and 3
/// shards), each moving into a redis-server target emptied before: every reply, and what
/// the source keeps, byte for byte.
#[test]
fn replies_and_errors_match_redis() {
    let Some(redis) = redis_or_skip("MIGRATE beside Redis: did not run") else {
        return;
    };
    let Some(target) = redis_or_skip("MIGRATE beside Redis: did not run") else {
        return;
    };
    let tp = target.port;
    let dead = common::free_port();
    let script = [
        "SET k v".to_string(),
        format!("MIGRATE 127.0.0.1 {tp} k 0 1000 BOGUS"),
        format!("MIGRATE 127.0.0.1 {tp} k 0 1000 AUTH"),
        format!("MIGRATE 127.0.0.1 {tp} k 0 1000 AUTH2 u"),
        format!("MIGRATE 127.0.0.1 {tp} k 0 1000 KEYS a"),
        format!("MIGRATE 127.0.0.1 {tp} k 0 1000 COPY REPLACE KEYS a"),
        format!("MIGRATE 127.0.0.1 {tp} k 0 soon"),
        format!("MIGRATE 127.0.0.1 {tp} k zero 1000"),
        format!("MIGRATE 127.0.0.1 {tp} k zero soon BOGUS"),
        format!("MIGRATE 127.0.0.1 {tp} k 0"),
        format!("MIGRATE 127.0.0.1 {tp} nokey 0 1000"),
        format!("MIGRATE 127.0.0.1 {tp} \"\" 0 1000 KEYS n1 n2"),
        format!("MIGRATE 127.0.0.1 {dead} k 0 300"),
        format!("MIGRATE 127.0.0.1 {dead} nokey 0 300"),
        format!("MIGRATE 127.0.0.1 {tp} k 99 1000"),
        format!("MIGRATE 127.0.0.1 {tp} k 0 1000 AUTH wrong"),
        format!("MIGRATE 127.0.0.1 {tp} k 0 1000 AUTH2 someone wrong"),
        "EXISTS k".into(),
        format!("MIGRATE 127.0.0.1 {tp} k 0 1000 COPY"),
        "EXISTS k".into(),
        format!("MIGRATE 127.0.0.1 {tp} k 0 1000"),
        "GET k".into(),
        format!("MIGRATE 127.0.0.1 {tp} k 0 0 REPLACE"),
        "EXISTS k".into(),
        "MSET a 1 b 2 c 3 k w".into(),
        "RPUSH l x y".into(),
        "PEXPIRE l 100000".into(),
        format!("MIGRATE 127.0.0.1 {tp} \"\" 0 1000 KEYS a b nokey c k l"),
        "EXISTS a b c k l".into(),
        format!("MIGRATE 127.0.0.1 {tp} \"\" 2 1000 REPLACE KEYS a b c k l"),
        "EXISTS a b c k l".into(),
        "SET x 1".into(),
        format!("MIGRATE localhost {tp} x 0 1000 COPY"),
        format!("MIGRATE 127.0.0.1 {tp} x 0 -5 REPLACE"),
        "EXISTS x".into(),
        "COMMAND GETKEYS MIGRATE h 1 k 0 10".into(),
        "COMMAND GETKEYS MIGRATE h 1 \"\" 0 10 KEYS a b c".into(),
        "COMMAND GETKEYS MIGRATE h 1 \"\" 0 10 AUTH keys KEYS a b".into(),
        "COMMAND GETKEYS MIGRATE h 1 \"\" 0 10 AUTH2 keys keys KEYS a".into(),
        "COMMAND GETKEYS MIGRATE h 1 \"\" 0 10".into(),
        "COMMAND GETKEYS MIGRATE h 1 k 0 10 KEYS a b".into(),
        "COMMAND GETKEYSANDFLAGS MIGRATE h 1 \"\" 0 10 COPY KEYS a b".into(),
        "COMMAND GETKEYS MIGRATE h 1 k".into(),
        "COMMAND INFO migrate restore-asking restore".into(),
        "SET r payload".into(),
        // Inside a transaction and a script: the keys are the transaction's.
        "MULTI".into(),
        "SET m1 1".into(),
        format!("MIGRATE 127.0.0.1 {tp} m1 0 1000"),
        "EXISTS m1".into(),
        "EXEC".into(),
        "SET m2 2".into(),
        format!(
            "EVAL return\\x20redis.call('MIGRATE','127.0.0.1',ARGV[1],KEYS[1],0,1000) 1 m2 {tp}"
        ),
        "EXISTS m2".into(),
        // A user allowed keys a* only (last: the connection stays that user).
        "SET b 1".into(),
        "ACL SETUSER lim on nopass ~a* +@all".into(),
        "AUTH lim x".into(),
        format!("MIGRATE 127.0.0.1 {tp} b 0 100"),
        format!("MIGRATE 127.0.0.1 {tp} \"\" 0 100 KEYS a1 b"),
        format!("MIGRATE 127.0.0.1 {tp} a1 0 100"),
    ];
    let mut target_client = target.client();
    let mut replies = |c: &mut Client, who: &str| -> Vec<(String, String, String)> {
        assert_eq!(run(&mut target_client, "FLUSHALL"), b"+OK\r\n");
        // Sockets cached by an earlier run selected some database: every run starts with
        // the target's database 0 as its own state.
        run(c, "FLUSHALL");
        let mut out = Vec::new();
        for line in &script {
            let r = run(c, line);
            out.push((who.to_string(), line.clone(), esc(&r)));
        }
        // What the target received, database 0 and 2.
        for db in [0, 2] {
            run(&mut target_client, &format!("SELECT {db}"));
            for k in ["k", "a", "b", "c", "l", "x", "nokey", "m1", "m2"] {
                let v = value_of(&mut target_client, k);
                out.push((who.to_string(), format!("target db{db} {k}"), v));
            }
            let ttl = int(&run(&mut target_client, "PTTL l"));
            let ttl = if ttl > 90_000 {
                "kept"
            } else {
                "absent or lost"
            };
            out.push((who.to_string(), format!("target db{db} PTTL l"), ttl.into()));
        }
        run(&mut target_client, "SELECT 0");
        out
    };
    let want = replies(&mut redis.client(), "redis");
    for shards in [1, 3] {
        let percore = Server::percore(shards, &[]);
        let got = replies(&mut percore.client(), "percore");
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w.2, g.2, "{} ({shards} shard(s)): {}", w.1, g.1);
        }
        assert_eq!(want.len(), got.len());
    }
}

/// RESP3 COMMAND INFO of MIGRATE and RESTORE-ASKING is Redis's too.
#[test]
fn command_info_is_redis_s_in_resp3() {
    let Some(redis) = redis_or_skip("COMMAND INFO migrate: did not run") else {
        return;
    };
    let percore = Server::percore(1, &[]);
    let [want, got] = [redis.client(), percore.client()].map(|mut c| {
        run(&mut c, "HELLO 3");
        run(&mut c, "COMMAND INFO migrate restore-asking")
    });
    assert_eq!(esc(&got), esc(&want));
}

/// Moves every key of `keys` from `src` (its database now) into database `db` (first of
/// `opts`: db, timeout, options) of `dst` on `port`; the values there must be `before`.
fn move_all(
    [src, dst]: [&mut Client; 2],
    port: u16,
    opts: &str,
    keys: &[String],
    before: &[String],
) {
    let rest = format!("\"\" {opts} KEYS {}", keys.join(" "));
    assert_eq!(migrate(src, port, &rest), r"+OK\r\n");
    assert_eq!(run(src, "DBSIZE"), b":0\r\n");
    let db = opts.split(' ').next().unwrap();
    run(dst, &format!("SELECT {db}"));
    assert_eq!(values(dst, keys), before);
}

/// Redis as the source migrating into percore (RESTORE, SELECT and AUTH on percore's
/// side), and percore into Redis: the values, types and TTLs compared key by key.
#[test]
fn redis_and_percore_migrate_both_ways() {
    let Some(redis) = redis_or_skip("MIGRATE with Redis: did not run") else {
        return;
    };
    let percore = Server::percore(3, &["--requirepass", "pw"]);
    let (mut r, mut p) = (redis.client(), percore.client());
    assert_eq!(run(&mut p, "AUTH pw"), b"+OK\r\n");
    // Redis → percore, into database 4, with AUTH.
    let keys = fill(&mut r);
    let before = values(&mut r, &keys);
    move_all(
        [&mut r, &mut p],
        percore.port,
        "4 5000 AUTH pw",
        &keys,
        &before,
    );
    assert!(int(&run(&mut p, "PTTL s:ttl")) > 40_000);
    assert_eq!(run(&mut p, "PTTL h:big"), b":-1\r\n");
    // The same keys again: BUSYKEY from percore, passed back by Redis; REPLACE goes.
    fill(&mut r);
    let busy = migrate(&mut r, percore.port, "s:raw 4 5000 AUTH pw");
    assert_eq!(
        busy,
        target_error("BUSYKEY Target key name already exists.")
    );
    let replace = migrate(&mut r, percore.port, "s:raw 4 5000 REPLACE AUTH pw");
    assert_eq!(replace, r"+OK\r\n");
    run(&mut r, "FLUSHALL");
    // percore → Redis, from database 4 into database 1.
    move_all([&mut p, &mut r], redis.port, "1 5000", &keys, &before);
    assert!(int(&run(&mut r, "PTTL l:ttl")) > 40_000);
    // RESTORE-ASKING behaves as RESTORE outside cluster mode, on both.
    let payload = bulks(&run(&mut r, "DUMP l:small")).remove(0);
    for c in [&mut r, &mut p] {
        let reply = c.cmd(&[b"RESTORE-ASKING", b"copied", b"0", &payload]);
        assert_eq!(esc(&reply), r"+OK\r\n");
        assert_eq!(value_of(c, "copied"), "list a b c 1 2");
    }
}

/// In cluster mode the keys go as RESTORE-ASKING, and a KEYS form over several hash slots
/// is refused (CROSSSLOT) as Redis refuses it.
#[test]
fn cluster_mode_sends_restore_asking() {
    let target = Server::percore(1, &[]);
    // The node's nodes.conf goes to a directory of its own, with a bus port of its own.
    let dir = common::TempDir::new("migrate-cluster");
    let bus = common::free_port().to_string();
    let flags = [
        "--cluster-enabled",
        "yes",
        "--dir",
        dir.path(),
        "--cluster-port",
        &bus,
    ];
    let source = Server::percore(2, &flags);
    common::own_all_slots(&source);
    let (mut s, mut t) = (source.client(), target.client());
    run(&mut t, "MONITOR");
    for line in ["MSET {x}a 1 {x}b 2", "SET y 3"] {
        assert_eq!(run(&mut s, line), b"+OK\r\n");
    }
    let cross = migrate(&mut s, target.port, "\"\" 0 5000 KEYS {x}a y");
    assert_eq!(
        cross,
        r"-CROSSSLOT Keys in request don\'t hash to the same slot\r\n"
    );
    let ok = migrate(&mut s, target.port, "\"\" 0 5000 KEYS {x}a {x}b");
    assert_eq!(ok, r"+OK\r\n");
    // SELECT 0 first (a new socket), then one RESTORE-ASKING per key.
    let fed = [t.read_reply(), t.read_reply(), t.read_reply()]
        .map(|m| String::from_utf8_lossy(&m).into_owned());
    assert!(fed[0].contains(r#""SELECT" "0""#), "{}", fed[0]);
    for (line, key) in fed[1..].iter().zip(["{x}a", "{x}b"]) {
        assert!(
            line.contains(&format!(r#""RESTORE-ASKING" "{key}" "0""#)),
            "{line}"
        );
    }
    assert_eq!(run(&mut s, "EXISTS {x}a {x}b"), b":0\r\n");
    assert_eq!(run(&mut s, "EXISTS y"), b":1\r\n");
}

/// A stand-in target on a free loopback port: every connection gets `+OK` for each whole
/// RESP command it sends. `open` counts its connections still open. Its threads end with
/// the test process (the listener and connections are loopback only).
fn ok_target(open: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> u16 {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = open.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let open = open.clone();
            open.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let (mut buf, mut chunk) = (Vec::new(), [0u8; 1 << 16]);
                while let Ok(n @ 1..) = s.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(used) = whole_command(&buf) {
                        buf.drain(..used);
                        if s.write_all(b"+OK\r\n").is_err() {
                            break;
                        }
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    port
}

/// The length of the RESP command (`*N` of `$len` bulks) at the start of `b`, once whole.
fn whole_command(b: &[u8]) -> Option<usize> {
    let line = |at: usize, tag: u8| -> Option<(usize, usize)> {
        if b.get(at) != Some(&tag) {
            return None;
        }
        let end = at + b[at..].windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&b[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    };
    let (n, mut at) = line(0, b'*')?;
    for _ in 0..n {
        let (len, data) = line(at, b'$')?;
        at = data + len + 2;
    }
    (at <= b.len()).then_some(at)
}

/// The socket cache's bound (Redis's 64 per process; here per core): MIGRATE to 65 targets
/// keeps 64 sockets, closing an idle one for the 65th.
#[test]
fn the_socket_cache_keeps_64_and_closes_one_for_the_next() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let source = Server::percore(1, &[]);
    let mut s = source.client();
    let open = std::sync::Arc::new(AtomicUsize::new(0));
    let ports: Vec<u16> = (0..65).map(|_| ok_target(&open)).collect();
    run(&mut s, "SET k v");
    for (i, port) in ports.iter().enumerate() {
        assert_eq!(
            migrate(&mut s, *port, "k 0 5000 COPY"),
            r"+OK\r\n",
            "target {i}"
        );
        assert_eq!(
            stat(&mut s, "migrate_cached_sockets"),
            (i as i64 + 1).min(64),
            "after target {i}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while open.load(Ordering::SeqCst) != 64 {
        assert!(
            Instant::now() < deadline,
            "{} sockets open, not 64",
            open.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
