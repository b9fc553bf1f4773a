//! Client-side caching: CLIENT TRACKING (default, OPTIN, OPTOUT, NOLOOP, BCAST with
//! prefixes, REDIRECT to a RESP2 subscriber), CLIENT CACHING, GETREDIR, TRACKINGINFO.
//!
//! Differential against a real `redis-server` (7.0) and percore with 1 and 3 shards: the
//! same scripted reads and writes on both, the invalidations each client receives compared
//! after every step (as sets: Redis sends a client's own invalidation right after its
//! reply, percore as soon as the key's shard reports it, and keys read on one core and
//! changed on another travel between cores). Then percore alone: the table bound.

mod common;

use common::{esc, redis_and_percores, Client, Server};
use std::time::{Duration, Instant};

/// One server's clients: the tracking client, a writer, and a redirect target.
struct Side {
    t: Client,
    w: Client,
    r: Option<Client>,
}

/// What the receiver of invalidations (the tracking client, or its redirect target) got
/// since the last call: every push before the reply to a PING, as sorted strings. On
/// percore (`wait_for` given) it asks again until it has as many as Redis sent, since an
/// invalidation may come from another core a moment after the write's reply.
fn drain(c: &mut Client, wait_for: Option<&Vec<String>>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    loop {
        c.send(&[b"PING", b"sync"]);
        loop {
            let r = c.read_reply();
            if r == b"$4\r\nsync\r\n" || r == b"*2\r\n$4\r\npong\r\n$4\r\nsync\r\n" {
                break;
            }
            got.push(esc(&r));
        }
        match wait_for {
            Some(want) if got.len() < want.len() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => break,
        }
    }
    got.sort();
    got
}

/// Runs `steps` on both servers: `T:`, `W:` or `R:` names the client; `?` collects the
/// receiver's invalidations and compares them; `S: ms` sleeps. Every reply is compared too.
fn run(what: &str, resp3: bool, redirect: bool, steps: &[&str]) {
    let Some((redis, percores)) = redis_and_percores(what, &[]) else {
        return;
    };
    for (shards, percore) in &percores {
        let label = format!("{what}, percore {shards} shard(s)");
        let mut sides = [&redis, percore].map(|s: &Server| {
            let mut side = Side {
                t: s.client(),
                w: s.client(),
                r: redirect.then(|| s.client()),
            };
            assert_eq!(side.w.q("FLUSHALL"), b"+OK\r\n");
            if resp3 {
                assert_eq!(side.t.q("HELLO 3")[0], b'%');
            }
            side
        });
        let mut log: Vec<String> = Vec::new();
        for step in steps {
            log.push(step.to_string());
            let (who, cmd) = step.split_at(2);
            if who == "S:" {
                let ms = cmd.trim().parse().expect("S: milliseconds");
                std::thread::sleep(Duration::from_millis(ms));
                continue;
            }
            if cmd.trim() == "?" {
                let want = {
                    let s = &mut sides[0];
                    let c = s.r.as_mut().unwrap_or(&mut s.t);
                    drain(c, None)
                };
                let got = {
                    let s = &mut sides[1];
                    let c = s.r.as_mut().unwrap_or(&mut s.t);
                    drain(c, Some(&want))
                };
                assert_eq!(
                    want,
                    got,
                    "{label}: invalidations differ after:\n  {}",
                    log.join("\n  ")
                );
                continue;
            }
            let cmd = cmd.trim().to_string();
            let replies: Vec<Vec<u8>> = sides
                .iter_mut()
                .map(|s| {
                    // The redirect client's id, as each server numbers it.
                    let cmd = match s.r.as_mut() {
                        Some(r) if cmd.contains("$RID") => {
                            let id = String::from_utf8(r.q("CLIENT ID")).unwrap();
                            cmd.replace("$RID", id.trim_start_matches(':').trim())
                        }
                        _ => cmd.clone(),
                    };
                    let c = match who {
                        "T:" => &mut s.t,
                        "W:" => &mut s.w,
                        _ => s.r.as_mut().expect("a redirect client"),
                    };
                    c.q(&cmd)
                })
                .collect();
            let shown: Vec<String> = replies.iter().map(|r| esc(r)).collect();
            // CLIENT GETREDIR and TRACKINGINFO name the redirect client's id.
            if !cmd.contains("GETREDIR") && !cmd.contains("TRACKINGINFO") || !redirect {
                assert_eq!(
                    shown[0],
                    shown[1],
                    "{label}: `{step}`; steps:\n  {}",
                    log.join("\n  ")
                );
            }
        }
    }
}

#[test]
fn default_mode_resp3_matches_redis() {
    run(
        "tracking, default mode, RESP3",
        true,
        false,
        &[
            "T: CLIENT TRACKING ON",
            "T: CLIENT GETREDIR",
            "T: CLIENT TRACKINGINFO",
            "W: SET a 0",
            "W: SET b 0",
            "W: HSET h f v",
            "W: SADD s x",
            "T: GET a",
            "T: GET b",
            "T: MGET c d e f g",
            "T: HGET h f",
            "T: SMEMBERS s",
            "T: ?",
            "W: SET a 1",
            "T: ?",
            "W: SET a 2",
            "T: ?",
            "T: GET a",
            "W: DEL a",
            "T: ?",
            "W: MSET b 1 c 2 d 3 zz 4",
            "T: ?",
            "W: HSET h f w",
            "W: SADD s y",
            "T: ?",
            "T: GET k1",
            "T: GET k2",
            "T: GET k3",
            "W: MSET k1 1 k2 2 k3 3 k4 4",
            "T: ?",
            // Its own writes: invalidated too.
            "T: GET own",
            "T: SET own 1",
            "T: ?",
            // Reads across shards (the coordinator's) are remembered on every key's shard.
            "W: SADD s1 a b",
            "W: SADD s2 b c",
            "W: SADD s3 c d",
            "T: ?",
            "T: SINTER s1 s2 s3",
            "T: SUNION s1 zz",
            "W: SADD s1 q",
            "T: ?",
            "W: SREM s2 c",
            "W: SADD s3 e",
            "T: ?",
            "T: GET x",
            "T: GET y",
            "W: FLUSHALL",
            "T: ?",
            "T: CLIENT TRACKING OFF",
            "T: GET a",
            "W: SET a 5",
            "T: ?",
            "T: CLIENT TRACKINGINFO",
            "T: CLIENT GETREDIR",
        ],
    );
}

/// Writes that change nothing invalidate nothing (Redis signals a key only on a real
/// change); the ones that store what was there already do. The keys share a hash tag, so on
/// percore one shard sends every invalidation, in order: one sent for a no-op write would
/// come before the last key's and show in the comparison.
#[test]
fn no_op_writes_invalidate_nothing() {
    run(
        "tracking, writes that change nothing",
        true,
        false,
        &[
            "T: CLIENT TRACKING ON",
            "W: SADD {t}s a",
            "W: ZADD {t}z 1 a",
            "W: HSET {t}h f v",
            "W: RPUSH {t}l a",
            "W: SET {t}str 1",
            "W: SET {t}last 1",
            "T: SMEMBERS {t}s",
            "T: ZRANGE {t}z 0 -1",
            "T: HGETALL {t}h",
            "T: LRANGE {t}l 0 -1",
            "T: GET {t}str",
            "T: GET {t}n",
            "T: GET {t}last",
            "T: ?",
            "W: SADD {t}s a",
            "W: SREM {t}s zz",
            "W: SMOVE {t}s {t}s a",
            "W: ZADD {t}z XX 1 q",
            "W: ZADD {t}z 1 a",
            "W: ZINCRBY {t}z 0 a",
            "W: HSETNX {t}h f w",
            "W: HDEL {t}h g",
            "W: LREM {t}l 0 x",
            "W: LINSERT {t}l BEFORE x y",
            "W: DEL {t}n",
            "W: EXPIRE {t}n 10",
            "W: PERSIST {t}str",
            "W: SETNX {t}str 2",
            "W: SETBIT {t}str 0 0",
            "W: GETEX {t}str PERSIST",
            // Over keys of several shards (percore's coordinator), empty results.
            "W: SINTERSTORE {t}n a b",
            "W: ZUNIONSTORE {t}n 2 a b",
            "W: SORT a STORE {t}n",
            "W: SET {t}last 2",
            "T: ?",
            "T: GET {t}last",
            "W: SADD {t}s b",
            "W: HSET {t}h f v",
            "W: INCRBY {t}str 0",
            "W: SET {t}last 3",
            "T: ?",
        ],
    );
}

/// A key that expires is a change to its readers, as Redis's deleteExpiredKeyAndPropagate
/// signals it: whether a read finds it expired or the active expiry cycle deletes it.
#[test]
fn expiry_invalidates_tracked_keys() {
    run(
        "tracking, expiry",
        true,
        false,
        &[
            "T: CLIENT TRACKING ON",
            "W: SET {t}a 1 PX 100",
            "W: SET {t}b 1 PX 100",
            "W: SADD {t}c x",
            "W: PEXPIRE {t}c 100",
            "T: GET {t}a",
            "T: GET {t}b",
            "T: SMEMBERS {t}c",
            "T: ?",
            "S: 150",
            // Found expired by a read (or gone already through the active cycle).
            "W: GET {t}a",
            "W: EXISTS {t}c",
            // {t}b is left to the active expiry cycle.
            "S: 1500",
            "T: ?",
        ],
    );
}

#[test]
fn optin_optout_noloop_match_redis() {
    run(
        "tracking, OPTIN/OPTOUT/NOLOOP",
        true,
        false,
        &[
            "T: CLIENT CACHING YES",
            "T: CLIENT TRACKING ON OPTIN",
            "T: CLIENT TRACKINGINFO",
            "T: GET a",
            "T: CLIENT CACHING YES",
            "T: CLIENT TRACKINGINFO",
            "T: GET b",
            "T: GET c",
            "W: MSET a 1 b 1 c 1",
            "T: ?",
            "T: CLIENT CACHING NO",
            "T: CLIENT TRACKING ON OPTOUT",
            "T: CLIENT TRACKING OFF",
            "T: CLIENT TRACKING ON OPTOUT NOLOOP",
            "T: CLIENT TRACKINGINFO",
            "T: GET a",
            "T: CLIENT CACHING NO",
            "T: GET b",
            "T: GET c",
            "W: MSET a 2 b 2 c 2",
            "T: ?",
            "T: GET a",
            "T: SET a 3",
            "T: ?",
            "W: SET a 4",
            "T: ?",
            "T: CLIENT CACHING YES",
            "T: CLIENT CACHING maybe",
            "T: CLIENT TRACKING OFF",
            "T: CLIENT CACHING NO",
        ],
    );
}

#[test]
fn bcast_matches_redis() {
    run(
        "tracking, BCAST",
        true,
        false,
        &[
            "T: CLIENT TRACKING ON PREFIX user:",
            "T: CLIENT TRACKING ON BCAST OPTIN",
            "T: CLIENT TRACKING ON BCAST PREFIX a PREFIX ab",
            "T: CLIENT TRACKING ON BCAST PREFIX user: PREFIX order:",
            "T: CLIENT TRACKING ON BCAST PREFIX user:1",
            "T: CLIENT TRACKING ON BCAST PREFIX cart:",
            "T: CLIENT TRACKINGINFO",
            "T: CLIENT TRACKING ON",
            "W: SET user:1 x",
            "T: ?",
            "W: SET other 1",
            "W: SET order:9 1",
            "W: SET cart:3 1",
            "T: ?",
            "W: DEL user:1 order:9",
            "T: ?",
            "T: CLIENT TRACKING OFF",
            "W: SET user:2 y",
            "T: ?",
            "T: CLIENT TRACKING ON BCAST",
            "W: SET anything 1",
            "W: SET else 2",
            "T: ?",
            "T: CLIENT TRACKING ON BCAST NOLOOP",
            "T: SET mine 1",
            "W: SET theirs 1",
            "T: ?",
        ],
    );
}

#[test]
fn redirect_to_a_resp2_subscriber_matches_redis() {
    run(
        "tracking, REDIRECT to RESP2 Pub/Sub",
        false,
        true,
        &[
            "T: CLIENT TRACKING ON REDIRECT 999999",
            "T: CLIENT TRACKING ON REDIRECT $RID REDIRECT $RID",
            "R: SUBSCRIBE __redis__:invalidate",
            "T: CLIENT TRACKING ON REDIRECT $RID",
            "T: CLIENT GETREDIR",
            "T: GET a",
            "T: GET b",
            "W: SET a 1",
            "R: ?",
            "W: SET b 1",
            "W: SET c 1",
            "R: ?",
            "T: GET a",
            "W: FLUSHDB",
            "R: ?",
        ],
    );
}

/// The redirect client goes away: the tracking client (RESP3) is told, and TRACKINGINFO
/// shows `broken_redirect`.
#[test]
fn a_broken_redirect_is_reported() {
    for shards in [1, 3] {
        let server = Server::percore(shards, &[]);
        let mut t = server.client();
        assert_eq!(t.q("HELLO 3")[0], b'%');
        let mut r = server.client();
        let rid = String::from_utf8(r.q("CLIENT ID")).unwrap();
        let rid = rid.trim_start_matches(':').trim().to_string();
        assert_eq!(
            t.q(&format!("CLIENT TRACKING ON REDIRECT {rid}")),
            b"+OK\r\n"
        );
        for k in ["a", "b", "c", "d"] {
            t.q(&format!("GET {k}"));
        }
        drop(r);
        // Until the server has seen the redirect client go.
        let mut w = server.client();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !String::from_utf8(w.q("CLIENT LIST"))
            .unwrap()
            .lines()
            .all(|l| !l.contains(&format!("id={rid} ")))
        {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(w.q("MSET a 1 b 1 c 1 d 1"), b"+OK\r\n");
        let want = format!(">2\r\n$21\r\ntracking-redir-broken\r\n:{rid}\r\n");
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen < 4 {
            assert!(Instant::now() < deadline, "{seen} notices");
            t.send(&[b"PING"]);
            loop {
                let m = t.read_reply();
                if m == b"+PONG\r\n" {
                    break;
                }
                assert_eq!(esc(&m), esc(want.as_bytes()));
                seen += 1;
            }
        }
        let info = esc(&t.q("CLIENT TRACKINGINFO"));
        assert!(info.contains("broken_redirect"), "{info}");
    }
}

/// `tracking-table-max-keys` bounds the keys remembered: past it, keys are dropped from the
/// table and their readers told; INFO counts what is kept.
#[test]
fn the_tracking_table_is_bounded() {
    let server = Server::percore(3, &["--tracking-table-max-keys", "30"]);
    let mut t = server.client();
    assert_eq!(t.q("HELLO 3")[0], b'%');
    assert_eq!(t.q("CLIENT TRACKING ON"), b"+OK\r\n");
    let mut invalidated = 0;
    for i in 0..300 {
        t.send(&[b"GET", format!("key:{i}").as_bytes()]);
        loop {
            let r = t.read_reply();
            if r.starts_with(b">2") {
                invalidated += 1;
            } else {
                assert_eq!(r, b"_\r\n");
                break;
            }
        }
    }
    let mut admin = server.client();
    let info = String::from_utf8(admin.q("INFO")).unwrap();
    let field = |name: &str| -> usize {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} in INFO"))
            .trim()
            .parse()
            .unwrap()
    };
    let kept = field("tracking_total_keys");
    assert!(kept <= 30, "{kept} keys kept");
    assert!(kept >= 3, "{kept} keys kept");
    assert_eq!(field("tracking_clients"), 1);
    // Everything dropped was (or is about to be) announced.
    let deadline = Instant::now() + Duration::from_secs(5);
    while invalidated + kept < 300 {
        assert!(
            Instant::now() < deadline,
            "{invalidated} invalidations, {kept} kept"
        );
        t.send(&[b"PING"]);
        loop {
            let r = t.read_reply();
            if r == b"+PONG\r\n" {
                break;
            }
            invalidated += 1;
        }
    }
    assert_eq!(invalidated + kept, 300);
}
