//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! Differential tests against a real `redis-server` (7.0) and percore with 1 and 3 shards,
//! RESP2 and RESP3, replies byte for byte: queueing, EXECABORT, errors inside EXEC,
//! blocking commands inside a transaction, SELECT inside one, keys on several shards; and
//! WATCH invalidated by each kind of change, made by a second client. Then percore alone:
//! transactions on one shard are isolated (concurrent readers never see half of one), and
//! CLIENT LIST reports a client in MULTI.

mod common;

use common::{each_differential_run, esc, words, Client, Diff, Server};

#[rustfmt::skip]
const TABLE: &[&str] = &[
    "EXEC", "DISCARD", "UNWATCH", "WATCH", "MULTI a", "EXEC a", "WATCH a", "UNWATCH",
    // queueing, replies in order, errors inside EXEC do not stop it
    "MULTI", "SET a 1", "INCR a", "LPUSH a x", "GET a", "SET b 2", "MGET a b c", "EXEC",
    "GET a",
    // an empty transaction
    "MULTI", "EXEC",
    // nested MULTI and WATCH inside MULTI are refused without dooming the transaction
    "MULTI", "MULTI", "WATCH a", "INCR a", "EXEC",
    // a refused command (unknown, arity) dooms it
    "MULTI", "SET a 5", "NOSUCHCMD x", "GET a", "EXEC", "GET a",
    "MULTI", "SET a", "EXEC", "MULTI", "SAVE", "EXEC",
    // DISCARD
    "MULTI", "SET a 9", "DISCARD", "GET a", "DISCARD",
    // keys on several shards (percore with 3 shards), multi-key commands across them
    "MULTI", "MSET k1 1 k2 2 k3 3 k4 4", "INCR k1", "INCRBY k2 5", "MGET k1 k2 k3 k4",
    "DEL k3 k4 nokey", "EXISTS k1 k2 k3", "RENAME k1 k9", "GET k9", "EXEC",
    // hash-tagged keys: one shard everywhere
    "MULTI", "SET {t}a 1", "INCR {t}a", "SET {t}b x", "APPEND {t}b y", "MGET {t}a {t}b", "EXEC",
    // blocking commands inside a transaction do not block
    "MULTI", "BLPOP q 0", "BRPOP q 1", "BLMOVE q r LEFT RIGHT 0", "BRPOPLPUSH q r 0",
    "BZPOPMIN zq 0", "BLMPOP 0 1 q LEFT", "RPUSH q e1 e2", "BLPOP q 0", "BLMOVE q r LEFT LEFT 0",
    "LRANGE r 0 -1", "EXEC",
    // connection commands inside a transaction
    "MULTI", "PING", "ECHO hi", "SELECT 3", "SET a in3", "SELECT 0", "GET a", "EXEC",
    "SELECT 3", "GET a", "SELECT 0",
    // WATCH with no change: EXEC runs; UNWATCH; EXEC forgets watched keys
    "WATCH a b", "WATCH a", "MULTI", "INCR {t}a", "EXEC", "WATCH a", "UNWATCH", "SET a 1",
    "MULTI", "GET a", "EXEC",
    // a change this same client makes before MULTI fails its own EXEC
    "WATCH a", "SET a 2", "MULTI", "GET a", "EXEC", "MULTI", "GET a", "EXEC",
    "WATCH nokey", "MULTI", "SET nokey 1", "EXEC", "GET nokey",
    // RESET ends a transaction
    "MULTI", "SET a 3", "RESET", "GET a", "EXEC",
];

fn each_diff(what: &str, mut f: impl FnMut(&Server, &Server, bool, String)) {
    let what = format!("transactions, {what}");
    each_differential_run(&what, &[], &[], |redis, percore, resp3, _, label| {
        f(redis, percore, resp3, label)
    });
}

#[test]
fn transactions_match_redis() {
    each_diff("table", |redis, percore, resp3, label| {
        let mut d = Diff::new(redis, percore, resp3, label);
        for line in TABLE {
            d.line(line);
            if *line == "RESET" && resp3 {
                // RESET goes back to RESP2 (HELLO's reply names the client id: not compared).
                d.both(&words("HELLO 3"));
            }
        }
    });
}

/// A second client's change to a watched key, for each kind of change Redis names: the
/// watcher's EXEC answers a null array on both servers. `setup` runs first (by the
/// other client), then the watcher WATCHes `k`, the other client runs `change`, and the
/// watcher runs MULTI / GET k / EXEC.
#[rustfmt::skip]
const CHANGES: &[(&str, &str)] = &[
    ("SET k 1", "SET k 2"),
    ("SET k 1", "SET k 1"),
    ("SET k 1", "DEL k"),
    ("SET k 1", "UNLINK k"),
    ("SET k 1", "INCR k"),
    ("SET k 1", "APPEND k x"),
    ("SET k 1", "EXPIRE k 100"),
    ("SET k 1 EX 100", "PERSIST k"),
    ("", "SET k 1"),
    ("", "MSET a 1 k 2"),
    ("SET k 1", "RENAME k other"),
    ("SET other 1", "RENAME other k"),
    ("SET k 1", "FLUSHDB"),
    ("SET k 1", "FLUSHALL"),
    ("SELECT 1|SET k 1|SELECT 0", "SWAPDB 0 1"),
    ("SET k 1", "SWAPDB 0 1"),
    ("SET k 1", "MOVE k 1"),
    ("SET src 1", "COPY src k"),
    ("RPUSH k a b", "LPOP k"),
    ("RPUSH k a b", "RPOPLPUSH k k"),
    ("RPUSH src a", "LMOVE src k LEFT LEFT"),
    ("HSET k f v", "HSET k f w"),
    ("HSET k f v", "HDEL k f"),
    ("SADD k a", "SADD k b"),
    ("SADD a x|SADD b x", "SINTERSTORE k a b"),
    ("ZADD k 1 a", "ZINCRBY k 1 a"),
    ("ZADD a 1 x", "ZUNIONSTORE k 1 a"),
    ("RPUSH l 3 1 2", "SORT l STORE k"),
    // Writes that store what was there already still change the key for Redis.
    ("SET k 1", "INCRBY k 0"),
    ("SET k 1", "APPEND k \"\""),
    ("HSET k f v", "HSET k f v"),
    ("HSET k f 1", "HINCRBY k f 0"),
    ("SET k 1", "SETBIT k 0 1"),
    ("SET k 1", "BITFIELD k SET u8 0 50"),
    ("RPUSH k a", "LSET k 0 a"),
    ("RPUSH k a", "LTRIM k 0 -1"),
    ("SET k 1 EX 100", "EXPIRE k 100 XX"),
    ("SET k 1", "GETEX k EX 100"),
    ("SET k 1", "SETRANGE k 0 1"),
    ("PFADD k a", "PFADD k b"),
    // The first count after an add writes the cached cardinality: Redis signals it.
    ("PFADD k a", "PFCOUNT k"),
    ("ZADD k 1 a", "ZADD k GT 2 a"),
    ("ZADD k 1 a", "ZADD k CH 1 a 1 b"),
    ("SADD k a b", "SMOVE k other a"),
    ("SADD src a", "SMOVE src k a"),
    ("SADD k a", "SREM k a"),
    ("SADD k a", "SPOP k"),
    ("ZADD k 1 a", "ZPOPMIN k"),
    ("ZADD k 1 a 2 b", "ZREMRANGEBYSCORE k 2 2"),
    ("RPUSH k a x", "LREM k 0 x"),
    ("SET k 1", "GETDEL k"),
    ("SET k 1", "PEXPIREAT k 1"),
    ("HSET k f v", "HDEL k f"),
    ("GEOADD k 13 38 m", "GEOADD k XX 14 38 m"),
];

/// One client runs `setup` (lines split on `|`), a watcher WATCHes `k`, the other client
/// runs `change`, then the watcher runs MULTI / `queued` / EXEC; EXEC's reply (the same on
/// both servers) and the case's description.
fn watched_exec(
    servers: (&Server, &Server),
    resp3: bool,
    label: &str,
    (setup, change): (&str, &str),
    queued: &str,
) -> (Vec<u8>, String) {
    let (redis, percore) = servers;
    let what = format!("{label}: after `{setup}`, `{change}`");
    let mut watcher = Diff::new(redis, percore, resp3, what.clone());
    let mut other = Diff::new(redis, percore, resp3, what.clone());
    for line in setup.split('|').filter(|l| !l.is_empty()) {
        other.line(line);
    }
    watcher.line("WATCH k");
    for line in change.split('|') {
        other.line(line);
    }
    watcher.line("MULTI");
    watcher.line(queued);
    (watcher.line("EXEC"), what)
}

#[test]
fn watch_sees_every_kind_of_change() {
    each_diff("WATCH", |redis, percore, resp3, label| {
        for case in CHANGES {
            let (r, what) = watched_exec((redis, percore), resp3, &label, *case, "GET k");
            let null: &[u8] = if resp3 { b"_\r\n" } else { b"*-1\r\n" };
            assert_eq!(r, null, "{what}: EXEC ran: {}", esc(&r));
        }
    });
}

/// Writes that change nothing the watcher watches leave its EXEC alone.
#[rustfmt::skip]
const NO_CHANGES: &[(&str, &str)] = &[
    ("SET k 1", "GET k"),
    ("SET k 1", "SET other 1"),
    ("SET k 1", "EXISTS k"),
    ("SELECT 1|SET k 1|SELECT 0", "SELECT 1|SET k 2|SELECT 0"),
    ("", "FLUSHDB"),
    ("SET other 1", "SWAPDB 0 1"),
    // Writes that change nothing: Redis signals no key (`signalModifiedKey` runs only on a
    // real change), so EXEC runs.
    ("SADD k a", "SADD k a"),
    ("SADD k a", "SREM k b"),
    ("SADD k a", "SMOVE k k a"),
    ("SADD k a", "SMOVE k other b"),
    ("", "DEL k"),
    ("", "UNLINK k"),
    ("", "EXPIRE k 10"),
    ("", "PEXPIREAT k 1"),
    ("SET k 1", "PERSIST k"),
    ("SET k 1 EX 100", "EXPIRE k 200 NX"),
    ("SET k 1", "EXPIRE k 200 XX"),
    ("RPUSH k a", "LREM k 0 x"),
    ("RPUSH k a", "LINSERT k BEFORE zz b"),
    ("", "LPUSHX k a"),
    ("", "RPOP k"),
    ("", "LTRIM k 0 1"),
    ("", "RPOPLPUSH k k"),
    ("", "LMOVE k other LEFT LEFT"),
    ("ZADD k 1 a", "ZADD k XX 1 b"),
    ("ZADD k 1 a", "ZADD k NX 2 a"),
    ("ZADD k 1 a", "ZADD k 1 a"),
    ("ZADD k 1 a", "ZADD k GT 0 a"),
    ("ZADD k 1 a", "ZINCRBY k 0 a"),
    ("ZADD k 1 a", "ZREM k b"),
    ("ZADD k 1 a", "ZREMRANGEBYSCORE k 5 6"),
    ("ZADD k 1 a", "ZREMRANGEBYRANK k 5 6"),
    ("ZADD k 1 a", "ZREMRANGEBYLEX k [x [y"),
    ("", "ZPOPMIN k"),
    ("", "SPOP k"),
    ("SET k 1", "SETNX k 2"),
    ("SET k 1", "SET k 2 NX"),
    ("", "SET k 2 XX"),
    ("SET k 1", "MSETNX a 1 k 2"),
    ("HSET k f v", "HSETNX k f w"),
    ("HSET k f v", "HDEL k g"),
    ("SET k 1", "GETEX k PERSIST"),
    ("SET k 1", "GETEX k"),
    ("SET k abc", "SETRANGE k 1 \"\""),
    ("", "SETRANGE k 1 \"\""),
    ("", "GETDEL k"),
    ("SET k 1", "RENAME k k"),
    ("", "MOVE k 1"),
    ("", "SINTERSTORE k a b"),
    ("", "SDIFFSTORE k a"),
    ("", "ZUNIONSTORE k 1 a"),
    ("", "ZRANGESTORE k a 0 -1"),
    ("", "SORT l STORE k"),
    ("", "BITOP OR k a b"),
    ("PFADD k a", "PFADD k a"),
    ("PFADD k a|PFCOUNT k", "PFCOUNT k"),
    ("SET k 1", "BITFIELD k GET u8 0"),
    ("SET k 1", "SETBIT k 0 0"),
    ("", "GEOADD k XX 13 38 m"),
    ("GEOADD k 13 38 m", "GEOADD k 13 38 m"),
];

#[test]
fn watch_ignores_other_keys_and_reads() {
    each_diff("WATCH, no change", |redis, percore, resp3, label| {
        for case in NO_CHANGES {
            let (r, what) = watched_exec((redis, percore), resp3, &label, *case, "PING");
            assert_eq!(esc(&r), r"*1\r\n+PONG\r\n", "{what}");
        }
    });
}

/// A watched key that expires fails EXEC, on both servers.
#[test]
fn watch_sees_expiry() {
    each_diff("WATCH, expiry", |redis, percore, resp3, label| {
        let mut d = Diff::new(redis, percore, resp3, label);
        d.line("SET k 1 PX 50");
        d.line("WATCH k");
        std::thread::sleep(std::time::Duration::from_millis(120));
        d.line("MULTI");
        d.line("GET k");
        d.line("EXEC");
    });
}

/// A blocked client served by a push inside a transaction is served after EXEC: the
/// transaction's own commands see the element (Redis's order).
#[test]
fn blocked_clients_are_served_after_exec() {
    each_diff("blocked", |redis, percore, resp3, label| {
        let mut d = Diff::new(redis, percore, resp3, label.clone());
        let mut blocked = [redis.client(), percore.client()];
        for c in &mut blocked {
            c.send(&[b"BLPOP", b"{t}q", b"0"]);
        }
        // Both are parked before the transaction (CLIENT LIST shows them blocked).
        for (i, s) in [redis, percore].iter().enumerate() {
            let mut c = s.client();
            let t0 = std::time::Instant::now();
            while !String::from_utf8_lossy(&c.q("CLIENT LIST")).contains("cmd=blpop") {
                assert!(
                    t0.elapsed().as_secs() < 10,
                    "{label}: client {i} never blocked"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        d.line("MULTI");
        d.line("RPUSH {t}q a");
        d.line("LLEN {t}q");
        d.line("EXEC");
        let got = blocked.each_mut().map(|c| c.read_reply());
        assert_eq!(got[0], got[1], "{label}");
        d.line("LLEN {t}q");
    });
}

/// Concurrent clients on a 3-shard server (connections on every core) move units between
/// two keys of one hash tag in transactions of 40 debits then 40 credits, while others
/// read both in transactions: every read sees the same total, and the final balances are
/// the starting ones.
#[test]
fn one_shard_transactions_are_isolated() {
    let server = Server::percore(3, &[]);
    let mut c = server.client();
    assert_eq!(c.q("MSET {acct}a 1000 {acct}b 1000"), b"+OK\r\n");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = server.port;
    let movers: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                for i in 0..300 {
                    let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
                    let mut req = common::encode(&[b"MULTI"]);
                    for (op, key) in [(&b"DECRBY"[..], from), (b"INCRBY", to)] {
                        for _ in 0..40 {
                            req.extend(common::encode(&[
                                op,
                                format!("{{acct}}{key}").as_bytes(),
                                b"1",
                            ]));
                        }
                    }
                    req.extend(common::encode(&[b"EXEC"]));
                    c.send_raw(&req);
                    for _ in 0..81 {
                        c.read_reply();
                    }
                    let r = c.read_reply();
                    assert!(r.starts_with(b"*80\r\n"), "{}", esc(&r));
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for line in ["MULTI", "GET {acct}a", "GET {acct}b"] {
                        c.cmd(&words(line).iter().map(Vec::as_slice).collect::<Vec<_>>());
                    }
                    let r = c.q("EXEC");
                    let text = String::from_utf8_lossy(&r).to_string();
                    let nums: Vec<i64> = text
                        .split("\r\n")
                        .filter(|l| !l.is_empty() && !l.starts_with(['*', '$']))
                        .map(|l| l.parse().unwrap())
                        .collect();
                    assert_eq!(
                        nums.iter().sum::<i64>(),
                        2000,
                        "a read saw half a transfer: {text:?}"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for m in movers {
        m.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(
        c.q("MGET {acct}a {acct}b"),
        b"*2\r\n$4\r\n1000\r\n$4\r\n1000\r\n"
    );
}

/// CLIENT LIST shows a client in MULTI (`x`, `multi=` its queued count) and one whose
/// watched key changed (`d`).
#[test]
fn client_list_shows_transactions() {
    let server = Server::percore(1, &[]);
    let mut c = server.client();
    let mut other = server.client();
    c.q("WATCH k");
    other.q("SET k 1");
    c.q("MULTI");
    c.q("SET a 1");
    c.q("CLIENT LIST");
    let r = c.q("EXEC");
    assert_eq!(r, b"*-1\r\n");
    let list = String::from_utf8_lossy(&other.q("CLIENT LIST")).to_string();
    assert!(list.contains("flags=N"), "{list}");
    c.q("WATCH k");
    other.q("SET k 2");
    c.q("MULTI");
    c.q("GET k");
    let list = String::from_utf8_lossy(&other.q("CLIENT LIST")).to_string();
    let line = list
        .lines()
        .find(|l| l.contains("cmd=get") || l.contains("multi=1"))
        .unwrap_or("");
    assert!(
        line.contains("flags=xd") && line.contains("multi=1 "),
        "{list}"
    );
    c.q("DISCARD");
    let list = String::from_utf8_lossy(&other.q("CLIENT LIST")).to_string();
    assert!(
        !list.contains("flags=x") && list.contains("multi=-1"),
        "{list}"
    );
}

/// A save inside a transaction over several shards would wait for every shard whole, the
/// transaction's own locks included: DEBUG RELOAD there is refused instead of hanging the
/// connection (and every key it holds); on its own it runs.
#[test]
fn a_reload_inside_a_cross_shard_transaction_is_refused() {
    let dir = common::TempDir::new("multi-reload");
    let server = Server::percore(3, &["--dir", dir.path(), "--enable-debug-command", "yes"]);
    let mut c = server.client();
    c.q("MULTI");
    for k in ["x", "y", "z", "w"] {
        assert_eq!(c.q(&format!("SET {k} 1")), b"+QUEUED\r\n");
    }
    c.q("DEBUG RELOAD");
    let r = String::from_utf8_lossy(&c.q("EXEC")).to_string();
    assert!(
        r.starts_with("*5\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n-ERR DEBUG RELOAD is not allowed"),
        "{r:?}"
    );
    c.q("MULTI");
    c.q("DEBUG RELOAD");
    assert_eq!(c.q("EXEC"), b"*1\r\n+OK\r\n");
    assert_eq!(
        c.q("MGET x y z w"),
        b"*4\r\n$1\r\n1\r\n$1\r\n1\r\n$1\r\n1\r\n$1\r\n1\r\n"
    );
}

/// The queued commands of a transaction count against `client-query-buffer-limit`: past it
/// the connection is closed (as an oversized query buffer closes it), nothing of the
/// transaction runs, and other clients go on.
#[test]
fn a_transaction_past_the_query_buffer_limit_closes_its_connection() {
    use std::io::{Read, Write};
    let server = Server::percore(1, &["--client-query-buffer-limit", "1mb"]);
    let mut other = server.client();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let value = vec![b'v'; 1024];
    let mut req = common::encode(&[b"MULTI"]);
    for i in 0..2000 {
        req.extend(common::encode(&[
            b"SET",
            format!("k{i}").as_bytes(),
            &value,
        ]));
    }
    // The server may close before it has read everything: a failed write is expected.
    let _ = s.write_all(&req);
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 65536];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection stayed open: {e}"),
        }
    }
    let queued = got.windows(9).filter(|w| w == b"+QUEUED\r\n").count();
    assert!(
        got.starts_with(b"+OK\r\n"),
        "{}",
        esc(&got[..got.len().min(64)])
    );
    assert!(
        (900..1100).contains(&queued),
        "closed after {queued} commands of 1 KB"
    );
    assert_eq!(other.q("DBSIZE"), b":0\r\n");
    assert_eq!(other.q("PING"), b"+PONG\r\n");
}
