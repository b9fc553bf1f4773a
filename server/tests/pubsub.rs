//! Pub/Sub: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, their UNSUBSCRIBEs, PUBLISH, SPUBLISH, PUBSUB.
//!
//! Differential against a real `redis-server` (7.0) and percore with 1 and 3 shards, RESP2
//! and RESP3: a seeded random stream of subscription changes, publishes and introspection,
//! with a subscriber and a publisher, every reply and every message compared byte for byte
//! (the replies of UNSUBSCRIBE without arguments and of PUBSUB CHANNELS compared as sets:
//! Redis lists them in hash-table order). Then percore alone: publishers and subscribers on
//! every core, each publisher's messages in order; a subscriber that stops reading is cut
//! at `client-output-buffer-limit pubsub` while a fast one on the same channel gets every
//! message; introspection (CLIENT LIST, INFO) and cleanup on RESET and disconnect.

mod common;

use common::{each_differential_run, esc, Client, Rng, Server};
use std::io::Read;
use std::time::{Duration, Instant};

/// Reads `n` replies.
fn replies(c: &mut Client, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|_| c.read_reply()).collect()
}

/// The number in an integer reply.
fn int(r: &[u8]) -> i64 {
    std::str::from_utf8(&r[1..r.len() - 2])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {}", esc(r)))
}

/// The subscriber's subscriptions per kind (how many replies an UNSUBSCRIBE without
/// arguments sends).
#[derive(Default)]
struct Model {
    channels: Vec<String>,
    patterns: Vec<String>,
    shard: Vec<String>,
}

impl Model {
    fn list(&mut self, kind: usize) -> &mut Vec<String> {
        match kind {
            0 => &mut self.channels,
            1 => &mut self.patterns,
            _ => &mut self.shard,
        }
    }
}

const CHANNELS: &str = "a b c h1 h2 hx news.1 news.2";
const PATTERNS: &str = "h* * ? news.* [ab] h[0-9] x*";

/// Runs one step on both servers' subscriber (`s`) or publisher (`p`); the replies (and
/// the messages a publish delivers) must be the same, `sets` comparing each command's
/// replies as a set.
#[allow(clippy::too_many_arguments)]
fn step(
    sub: &mut [Client; 2],
    publ: &mut [Client; 2],
    on_sub: bool,
    args: &[String],
    replies_expected: usize,
    sets: bool,
    label: &str,
    log: &[String],
) -> Vec<Vec<u8>> {
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let mut got: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..2 {
        let c = if on_sub { &mut sub[i] } else { &mut publ[i] };
        c.send(&refs);
        let mut r = replies(c, replies_expected);
        if args[0] == "PUBSUB" && args[1].ends_with("CHANNELS") {
            // In hash-table order in Redis: compared sorted.
            let mut b = common::bulks(&r[0]);
            b.sort();
            r = b;
        }
        if sets {
            // In any order: each reply without its running count, then the final count.
            let last = r.last().cloned().unwrap_or_default();
            let count_at = |b: &Vec<u8>| b.iter().rposition(|&c| c == b':').unwrap_or(b.len());
            let last_count = last[count_at(&last)..].to_vec();
            for b in &mut r {
                let at = count_at(b);
                b.truncate(at);
            }
            r.sort();
            r.push(last_count);
        }
        got.push(r);
    }
    if got[0] != got[1] {
        let show = |rs: &Vec<Vec<u8>>| rs.iter().map(|r| esc(r)).collect::<Vec<_>>().join(" | ");
        panic!(
            "{label}: `{}` on the {}: replies differ\n redis:   {}\n percore: {}\nrecent steps:\n  {}",
            args.join(" "),
            if on_sub { "subscriber" } else { "publisher" },
            show(&got[0]),
            show(&got[1]),
            log[log.len().saturating_sub(12)..].join("\n  ")
        );
    }
    got.swap_remove(0)
}

fn random_stream(redis: &Server, percore: &Server, resp3: bool, seed: u64, label: String) {
    let mut sub = [redis.client(), percore.client()];
    let mut publ = [redis.client(), percore.client()];
    if resp3 {
        for c in &mut sub {
            assert_eq!(c.q("HELLO 3")[0], b'%', "{label}");
        }
    }
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let mut log = Vec::new();
    for _ in 0..400 {
        let roll = rng.below(100);
        let kind = rng.below(3);
        let word = |rng: &mut Rng, kind: usize| match kind {
            1 => rng.pick_word(PATTERNS).to_string(),
            _ => rng.pick_word(CHANNELS).to_string(),
        };
        let (on_sub, args, n, sets): (bool, Vec<String>, usize, bool) = match roll {
            0..=19 => {
                let cmd = ["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"][kind];
                let names: Vec<String> = (0..1 + rng.below(3))
                    .map(|_| word(&mut rng, kind))
                    .collect();
                for n in &names {
                    if !model.list(kind).contains(n) {
                        model.list(kind).push(n.clone());
                    }
                }
                let mut a = vec![cmd.to_string()];
                a.extend(names.iter().cloned());
                (true, a, names.len(), false)
            }
            20..=31 => {
                let cmd = ["UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"][kind];
                let names: Vec<String> = (0..rng.below(3)).map(|_| word(&mut rng, kind)).collect();
                let n = match names.len() {
                    0 => model.list(kind).len().max(1),
                    k => k,
                };
                if names.is_empty() {
                    model.list(kind).clear();
                } else {
                    model.list(kind).retain(|c| !names.contains(c));
                }
                let mut a = vec![cmd.to_string()];
                let all = names.is_empty();
                a.extend(names);
                (true, a, n, all)
            }
            32..=61 => {
                let shard = rng.below(5) == 0;
                let ch = word(&mut rng, 0);
                let msg = format!("m{}", rng.below(1000));
                let cmd = if shard { "SPUBLISH" } else { "PUBLISH" };
                (false, vec![cmd.into(), ch, msg], 1, false)
            }
            62..=69 => match rng.below(5) {
                0 => (false, vec!["PUBSUB".into(), "NUMPAT".into()], 1, false),
                1 => {
                    let mut a = vec!["PUBSUB".to_string(), "NUMSUB".to_string()];
                    a.extend((0..rng.below(3)).map(|_| word(&mut rng, 0)));
                    (false, a, 1, false)
                }
                2 => {
                    let mut a = vec!["PUBSUB".to_string(), "SHARDNUMSUB".to_string()];
                    a.extend((0..rng.below(3)).map(|_| word(&mut rng, 0)));
                    (false, a, 1, false)
                }
                3 => (
                    false,
                    vec!["PUBSUB".into(), "CHANNELS".into(), word(&mut rng, 1)],
                    1,
                    false,
                ),
                _ => (
                    false,
                    vec!["PUBSUB".into(), "SHARDCHANNELS".into()],
                    1,
                    false,
                ),
            },
            70..=79 => match rng.below(3) {
                0 => (true, vec!["PING".into()], 1, false),
                1 => (true, vec!["PING".into(), "hello".into()], 1, false),
                _ => (true, vec!["GET".into(), "k".into()], 1, false),
            },
            _ => {
                let ch = word(&mut rng, 0);
                (false, vec!["PUBLISH".into(), ch, "x".into()], 1, false)
            }
        };
        log.push(format!(
            "{} {}",
            if on_sub { "S:" } else { "P:" },
            args.join(" ")
        ));
        let r = step(&mut sub, &mut publ, on_sub, &args, n, sets, &label, &log);
        if !on_sub && args[0].ends_with("PUBLISH") {
            // The subscriber receives as many messages as the count says (it is the only
            // subscriber); they must be the same, in the same order.
            // A message matching several patterns comes once per pattern, the patterns in
            // Redis's hash-table order: compared as a set.
            let k = int(&r[0]) as usize;
            let got = [0, 1].map(|i| {
                let mut m = replies(&mut sub[i], k);
                m.sort();
                m
            });
            assert_eq!(
                got[0],
                got[1],
                "{label}: messages of `{}` differ; recent steps:\n  {}",
                args.join(" "),
                log[log.len().saturating_sub(12)..].join("\n  ")
            );
        }
    }
}

#[test]
fn pubsub_matches_redis() {
    each_differential_run("pub/sub", &[], &[1, 2, 3], random_stream);
}

/// PUBSUB CHANNELS and SHARDCHANNELS list the same channels as Redis (in any order), and
/// INFO's pubsub fields agree, with subscribers on several cores.
#[test]
fn pubsub_introspection_matches_redis() {
    each_differential_run(
        "pub/sub introspection",
        &[],
        &[],
        |redis, percore, _, _, label| {
            let mut subs: Vec<[Client; 2]> =
                (0..6).map(|_| [redis.client(), percore.client()]).collect();
            for (i, pair) in subs.iter_mut().enumerate() {
                for c in pair.iter_mut() {
                    c.q(&format!("SUBSCRIBE news ch{i}"));
                    c.read_reply();
                    c.q(&format!("PSUBSCRIBE p{} *", i % 2));
                    c.read_reply();
                    c.q(&format!("SSUBSCRIBE sh{}", i % 3));
                }
            }
            let mut q = [redis.client(), percore.client()];
            let sorted = |r: Vec<u8>| {
                let mut b = common::bulks(&r);
                b.sort();
                b
            };
            for cmd in [
                "PUBSUB CHANNELS",
                "PUBSUB CHANNELS ch*",
                "PUBSUB SHARDCHANNELS",
            ] {
                let [w, g] = q.each_mut().map(|c| sorted(c.q(cmd)));
                assert_eq!(w, g, "{label}: {cmd}");
            }
            for cmd in [
                "PUBSUB NUMSUB news ch1 nosuch",
                "PUBSUB NUMPAT",
                "PUBSUB SHARDNUMSUB sh0 sh1 sh2 nosuch",
                "PUBLISH news hi",
                "PUBLISH ch3 hi",
                "SPUBLISH sh1 hi",
                "PUBSUB HELP",
                "PUBSUB NOSUCH",
                "PUBSUB CHANNELS a b",
            ] {
                let [w, g] = q.each_mut().map(|c| c.q(cmd));
                assert_eq!(esc(&w), esc(&g), "{label}: {cmd}");
            }
            let info = |c: &mut Client| {
                let i = String::from_utf8(c.q("INFO stats")).unwrap();
                i.lines()
                    .filter(|l| l.starts_with("pubsub"))
                    .map(String::from)
                    .collect::<Vec<_>>()
            };
            let [w, g] = q.each_mut().map(info);
            assert_eq!(w.len(), 3, "{label}: {w:?}");
            assert_eq!(w, g, "{label}: INFO stats");
            drop(subs.drain(..));
            // Disconnected subscribers are forgotten.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let r = q[1].q("PUBSUB NUMSUB news");
                if r.ends_with(b":0\r\n") {
                    break;
                }
                assert!(Instant::now() < deadline, "{label}: {}", esc(&r));
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(esc(&q[1].q("PUBSUB NUMPAT")), ":0\\r\\n", "{label}");
        },
    );
}

/// Reads messages until `n` have arrived; returns their payloads.
fn read_messages(c: &mut Client, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let r = c.read_reply();
            common::bulks(&r).pop().expect("a message payload")
        })
        .collect()
}

/// Publishers and subscribers on every core: each PUBLISH counts every subscriber, and
/// every subscriber receives every message, each publisher's in the order sent.
#[test]
fn publishers_on_every_core_reach_subscribers_on_every_core_in_order() {
    let server = Server::percore(4, &[]);
    let nsubs = 12;
    let npubs = 6;
    let per_pub = 1500;
    let mut subs: Vec<Client> = (0..nsubs).map(|_| server.client()).collect();
    for (i, s) in subs.iter_mut().enumerate() {
        // Half by channel, half by pattern: a pattern subscriber gets a pmessage.
        let r = if i % 2 == 0 {
            s.q("SUBSCRIBE ch")
        } else {
            s.q("PSUBSCRIBE c?")
        };
        assert!(r.starts_with(b"*3\r\n"), "{}", esc(&r));
    }
    // The subscribers are spread over the cores (connections are balanced by the kernel).
    let mut admin = server.client();
    let shards = String::from_utf8(admin.q("INFO shards")).unwrap();
    let busy = shards
        .lines()
        .filter(|l| l.starts_with("shard") && !l.contains("connections=0,"))
        .count();
    assert!(busy >= 2, "all connections on one core: {shards}");
    let threads: Vec<_> = subs
        .into_iter()
        .map(|mut s| std::thread::spawn(move || read_messages(&mut s, npubs * per_pub)))
        .collect();
    let pubs: Vec<_> = (0..npubs)
        .map(|p| {
            let mut c = server.client();
            std::thread::spawn(move || {
                // Pipelined in chunks: many publishes in flight at once.
                for chunk in (0..per_pub).collect::<Vec<_>>().chunks(100) {
                    let mut req = Vec::new();
                    for &i in chunk {
                        req.extend(common::encode(&[
                            b"PUBLISH",
                            b"ch",
                            format!("{p}:{i}").as_bytes(),
                        ]));
                    }
                    c.send_raw(&req);
                    for _ in chunk {
                        let r = c.read_reply();
                        assert_eq!(int(&r), nsubs as i64, "publisher {p}: {}", esc(&r));
                    }
                }
            })
        })
        .collect();
    for p in pubs {
        p.join().expect("publisher");
    }
    for (s, t) in threads.into_iter().enumerate() {
        let got = t.join().expect("subscriber");
        let mut next = vec![0usize; npubs];
        for m in got {
            let m = String::from_utf8(m).unwrap();
            let (p, i) = m.split_once(':').unwrap();
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(
                i, next[p],
                "subscriber {s}: publisher {p}'s messages out of order"
            );
            next[p] += 1;
        }
        assert!(
            next.iter().all(|&n| n == per_pub),
            "subscriber {s}: {next:?}"
        );
    }
}

/// A subscriber that stops reading is disconnected once its output passes the hard limit;
/// a fast subscriber of the same channel receives every message, the publisher goes on,
/// and the disconnection is counted.
#[test]
fn a_slow_subscriber_is_cut_at_the_output_limit_and_the_others_go_on() {
    let server = Server::percore(2, &["--client-output-buffer-limit", "pubsub 4mb 1mb 60"]);
    let mut slow = server.client();
    let mut fast = server.client();
    assert!(slow.q("SUBSCRIBE ch").starts_with(b"*3"));
    assert!(fast.q("SUBSCRIBE ch").starts_with(b"*3"));
    let payload = vec![b'x'; 64 << 10];
    let count = 1000; // 64 MB in all: far past the socket buffers and the limit
                      // The publisher keeps at most 16 messages (1 MB) ahead of the fast subscriber, so
                      // only the slow one can reach the limit.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = progress.clone();
    let reader = std::thread::spawn(move || {
        for _ in 0..count {
            let m = read_messages(&mut fast, 1);
            assert_eq!(m[0].len(), 64 << 10);
            seen.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        fast
    });
    let mut publ = server.client();
    let mut receivers = Vec::new();
    for i in 0..count {
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress.load(std::sync::atomic::Ordering::Acquire) + 16 < i {
            assert!(
                Instant::now() < deadline,
                "the fast subscriber stalled at {i}"
            );
            std::thread::yield_now();
        }
        receivers.push(int(&publ.cmd(&[b"PUBLISH", b"ch", &payload])));
    }
    let _fast = reader.join().expect("fast subscriber");
    assert_eq!(progress.load(std::sync::atomic::Ordering::Acquire), count);
    // The slow one was counted while it was there, and not after it was cut.
    assert_eq!(receivers[0], 2);
    assert_eq!(
        *receivers.last().unwrap(),
        1,
        "the slow subscriber was never cut"
    );
    // Its connection is closed: reading drains what the kernel held, then EOF.
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 20];
    let mut drained = 0usize;
    loop {
        match slow.stream.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => drained += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the slow subscriber was not closed: {e} after {drained} bytes"),
        }
    }
    assert!(
        drained < 32 << 20,
        "{drained} bytes reached the slow subscriber"
    );
    let info = String::from_utf8(publ.q("INFO stats")).unwrap();
    assert!(
        info.contains("client_output_buffer_limit_disconnections:1\r\n"),
        "{info}"
    );
    assert_eq!(publ.q("PUBSUB NUMSUB ch"), b"*2\r\n$2\r\nch\r\n:1\r\n");
}

/// CLIENT LIST shows subscriptions (sub, psub, ssub, flag P); RESET drops them; a
/// subscriber is exempt from `timeout`.
#[test]
fn client_list_reset_and_timeout() {
    let server = Server::percore(3, &["--timeout", "1"]);
    let mut s = server.client();
    s.q("SUBSCRIBE a b");
    s.read_reply();
    s.q("PSUBSCRIBE p*");
    s.q("SSUBSCRIBE x");
    let me = String::from_utf8(s.q("CLIENT INFO")).unwrap_or_default();
    // RESP2 subscribers may not run CLIENT INFO: Redis's error.
    assert!(me.starts_with("-ERR Can't execute 'client|info'"), "{me}");
    let list = String::from_utf8(server.client().q("CLIENT LIST")).unwrap();
    let line = list
        .lines()
        .find(|l| l.contains("sub=2"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains("flags=P ") && line.contains("psub=1 ssub=1"),
        "{line}"
    );
    // Idle past `timeout`: still connected.
    std::thread::sleep(Duration::from_millis(2500));
    let mut admin = server.client();
    assert_eq!(int(&admin.q("PUBLISH a hi")), 1);
    assert!(s.read_reply().ends_with(b"$2\r\nhi\r\n"));
    assert_eq!(s.q("RESET"), b"+RESET\r\n");
    assert_eq!(int(&admin.q("PUBLISH a hi")), 0);
    assert_eq!(admin.q("PUBSUB NUMPAT"), b":0\r\n");
    // Not subscribed any more: any command runs (and `timeout` applies again).
    assert_eq!(s.q("GET k"), b"$-1\r\n");
}

/// A MONITOR line with its time and client address replaced (they differ run to run).
fn normalized_monitor_line(r: &[u8]) -> String {
    let s = String::from_utf8_lossy(r).into_owned();
    // +<secs>.<usecs> [<db> <addr>] ...
    let rest = s.split_once(' ').map_or(s.as_str(), |(_, rest)| rest);
    let (db_addr, cmd) = rest.split_once("] ").unwrap_or((rest, ""));
    let db = db_addr
        .trim_start_matches('[')
        .split(' ')
        .next()
        .unwrap_or("");
    let from = if db_addr.ends_with(" lua") {
        "lua"
    } else {
        "client"
    };
    format!("[{db} {from}] {}", cmd.trim_end())
}

/// MONITOR shows what Redis shows for the same commands: after they run, in their
/// database, queued commands when EXEC runs them, a script's calls after the script and
/// from `lua`, arguments quoted as Redis quotes them, administrative commands left out,
/// passwords redacted.
#[test]
fn monitor_matches_redis() {
    each_differential_run("monitor", &[], &[], |redis, percore, resp3, _, label| {
        let commands: &[&[&[u8]]] = &[
            &[b"SET", b"k1", b"v\n\"x\x01\xff"],
            &[b"GET", b"k2"],
            &[b"MSET", b"a", b"1", b"b", b"2", b"c", b"3"],
            &[b"SELECT", b"3"],
            &[b"CONFIG", b"GET", b"maxmemory"],
            &[b"MULTI"],
            &[b"INCR", b"a"],
            &[b"LPUSH", b"l", b"x"],
            &[b"EXEC"],
            &[
                b"EVAL",
                b"redis.call('set',KEYS[1],'1') return redis.call('get',KEYS[1])",
                b"1",
                b"zz",
            ],
            &[b"NOSUCHCMD"],
            &[b"GET"],
            &[b"SELECT", b"0"],
            &[b"DEL", b"a", b"b", b"nokey"],
            // Secrets show as "(redacted)", as Redis hides them.
            &[b"AUTH", b"secret"],
            &[b"AUTH", b"default", b"secret"],
            &[
                b"HELLO", b"2", b"AUTH", b"default", b"secret", b"SETNAME", b"n",
            ],
            &[b"PING", b"end"],
        ];
        let lines = [redis, percore].map(|server| {
            let mut m = server.client();
            if resp3 {
                assert_eq!(m.q("HELLO 3")[0], b'%');
            }
            assert_eq!(m.q("MONITOR"), b"+OK\r\n", "{label}");
            let mut c = server.client();
            for cmd in commands {
                c.cmd(cmd);
            }
            let mut got = Vec::new();
            loop {
                let line = normalized_monitor_line(&m.read_reply());
                let end = line.ends_with("\"PING\" \"end\"");
                got.push(line);
                if end {
                    break got;
                }
            }
        });
        assert_eq!(lines[0], lines[1], "{label}");
    });
}

/// A monitor sees the commands of clients on every core, each client's in order.
#[test]
fn monitor_sees_every_core_in_order() {
    let server = Server::percore(4, &[]);
    let mut m = server.client();
    assert_eq!(m.q("MONITOR"), b"+OK\r\n");
    let (nclients, per) = (8, 300);
    let clients: Vec<_> = (0..nclients)
        .map(|i| {
            let mut c = server.client();
            std::thread::spawn(move || {
                for j in 0..per {
                    let r = c.cmd(&[b"SET", format!("c{i}").as_bytes(), j.to_string().as_bytes()]);
                    assert_eq!(r, b"+OK\r\n");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let mut next = vec![0usize; nclients];
    for _ in 0..nclients * per {
        let line = normalized_monitor_line(&m.read_reply());
        let words: Vec<&str> = line.split('"').collect();
        // [0 client] "SET" "c<i>" "<j>"
        let i: usize = words[3][1..].parse().unwrap();
        let j: usize = words[5].parse().unwrap();
        assert_eq!(j, next[i], "client {i}'s commands out of order: {line}");
        next[i] += 1;
    }
    assert!(next.iter().all(|&n| n == per), "{next:?}");
}

/// A monitor that does not read is cut at the output limit (the pubsub class's while the
/// normal class has none); the clients it watched go on.
#[test]
fn a_slow_monitor_is_cut_and_the_clients_go_on() {
    let server = Server::percore(2, &["--client-output-buffer-limit", "pubsub 2mb 1mb 60"]);
    let mut m = server.client();
    assert_eq!(m.q("MONITOR"), b"+OK\r\n");
    let mut c = server.client();
    let value = vec![b'v'; 64 << 10];
    for i in 0..1000 {
        assert_eq!(
            c.cmd(&[b"SET", format!("k{i}").as_bytes(), &value]),
            b"+OK\r\n"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = String::from_utf8(c.q("INFO stats")).unwrap();
        if info.contains("client_output_buffer_limit_disconnections:1\r\n") {
            break;
        }
        assert!(Instant::now() < deadline, "the monitor was not cut: {info}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(m.closed(), "the monitor's connection is still open");
    assert_eq!(c.q("DBSIZE"), b":1000\r\n");
}

/// CLIENT REPLY OFF, SKIP and ON drop the replies Redis drops, in a pipeline whose
/// commands run on several shards; a subscriber's messages still arrive while it is off.
#[test]
fn client_reply_matches_redis() {
    each_differential_run(
        "client reply",
        &[],
        &[],
        |redis, percore, resp3, _, label| {
            let script =
                "SET a 1|CLIENT REPLY OFF|SET b 2|MGET a b c d e|INCR a|CLIENT REPLY ON|GET b|\
            CLIENT REPLY SKIP|GET a|GET b|CLIENT REPLY SKIP|CLIENT REPLY ON|CLIENT REPLY bad|\
            CLIENT REPLY SKIP|CLIENT REPLY SKIP|GET a|MSET x 1 y 2 z 3|CLIENT REPLY OFF|\
            SUBSCRIBE ch|PUBLISH ch hello|UNSUBSCRIBE ch|GET a|CLIENT REPLY ON|ECHO end";
            let got = [redis, percore].map(|server| {
                let mut c = server.client();
                let mut p = server.client();
                if resp3 {
                    assert_eq!(c.q("HELLO 3")[0], b'%');
                }
                let mut replies = Vec::new();
                for cmd in script.split('|') {
                    if cmd.starts_with("PUBLISH") {
                        // From another client, once the subscription is in place.
                        std::thread::sleep(Duration::from_millis(100));
                        let r = p.q(cmd);
                        replies.push(format!("publisher: {}", esc(&r)));
                        continue;
                    }
                    let parts: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
                    c.send(&parts);
                }
                loop {
                    let r = c.read_reply();
                    let end = r.ends_with(b"end\r\n");
                    replies.push(esc(&r));
                    if end {
                        break replies;
                    }
                }
            });
            assert_eq!(got[0], got[1], "{label}");
        },
    );
}

/// A client with very many subscriptions: each one costs O(1) to add and to drop (a list
/// searched per SUBSCRIBE made 50,000 channels a quadratic stall of the core), and
/// UNSUBSCRIBE with no argument still answers in subscription order.
#[test]
fn fifty_thousand_subscriptions_in_one_command() {
    let server = Server::percore(1, &[]);
    let mut c = server.client();
    let n = 50_000;
    let names: Vec<String> = (0..n).map(|i| format!("ch{i}")).collect();
    let mut cmd: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    cmd.extend(names.iter().map(|s| s.as_bytes()));
    c.send(&cmd);
    let last = replies(&mut c, n).pop().unwrap();
    assert!(
        last.ends_with(format!(":{n}\r\n").as_bytes()),
        "{}",
        esc(&last)
    );
    let mut admin = server.client();
    assert_eq!(int(&admin.q("PUBLISH ch49999 hi")), 1);
    assert!(c.read_reply().ends_with(b"$2\r\nhi\r\n"));
    c.send(&[b"UNSUBSCRIBE"]);
    let gone = replies(&mut c, n);
    for (i, r) in [0, n / 2, n - 1].into_iter().map(|i| (i, &gone[i])) {
        let want = format!(
            "$11\r\nunsubscribe\r\n${}\r\nch{i}\r\n:{}\r\n",
            names[i].len(),
            n - 1 - i
        );
        assert!(r.ends_with(want.as_bytes()), "{i}: {}", esc(r));
    }
    assert_eq!(admin.q("PUBSUB NUMSUB ch0"), b"*2\r\n$3\r\nch0\r\n:0\r\n");
}
