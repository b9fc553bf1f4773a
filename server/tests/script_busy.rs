//! Busy scripts (Redis's `busy-reply-threshold`, alias `lua-time-limit`): a script that runs
//! past it makes its core answer BUSY to other commands but the allow-busy ones; SCRIPT KILL
//! and FUNCTION KILL stop it (UNKILLABLE once it wrote), SHUTDOWN NOSAVE ends the server,
//! FUNCTION STATS shows a busy function. Replies are compared byte for byte with a real
//! `redis-server` 7.0 running the same scripts (percore with 1 and 3 shards); with 3 shards,
//! commands whose keys live on other cores than the busy one go on (a difference from
//! Redis, where every client waits).

mod common;

use common::{esc, redis_and_percores, Client, Server};
use std::time::{Duration, Instant};

/// The threshold the tests set (ms), on both servers.
const THRESHOLD_MS: &str = "100";

/// A loop that never ends and writes nothing.
const SPIN: &str = "while true do end";

/// A library whose functions loop, one after a write.
const LIB_SPIN: &str = "#!lua name=spinlib
redis.register_function('spin', function(keys, args)
  while true do end
end)
redis.register_function('wspin', function(keys, args)
  redis.call('set', keys[1], 'v')
  while true do end
end)
";

/// The servers of a differential run, each with the lowered threshold: Redis first.
fn servers(what: &str) -> Option<Vec<(String, Server)>> {
    let (redis, percores) = redis_and_percores(what, &[])?;
    let mut all = vec![("redis".to_string(), redis)];
    for (n, p) in percores {
        all.push((format!("percore {n} shard(s)"), p));
    }
    for (_, s) in &all {
        let ok = s
            .client()
            .q(&format!("CONFIG SET lua-time-limit {THRESHOLD_MS}"));
        assert_eq!(ok, b"+OK\r\n", "CONFIG SET lua-time-limit: {}", esc(&ok));
    }
    Some(all)
}

/// Sends `args` on a client of its own and returns the client (the reply is read later).
fn start(s: &Server, args: &[&str]) -> Client {
    let mut c = s.client();
    let parts: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.send(&parts);
    c
}

/// Waits until a script is busy on `s`: FUNCTION STATS (allow-busy, answered from every
/// core) refuses with BUSY while an EVAL is busy and shows a busy function.
fn wait_busy(s: &Server, label: &str) {
    let mut c = s.client();
    let t0 = Instant::now();
    loop {
        let r = c.q("FUNCTION STATS");
        if r.starts_with(b"-BUSY") || !r.windows(3).any(|w| w == b"$-1" || w == b"_\r\n") {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{label}: the script never became busy: {}",
            esc(&r)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A BUSY reply to GET from some client and key: on 1 shard (and Redis) any; on 3 shards
/// one whose key is on the busy core, or whose client is.
fn busy_get(s: &Server) -> Vec<u8> {
    for _ in 0..6 {
        let mut c = s.client();
        for i in 0..30 {
            let r = c.q(&format!("GET k{i}"));
            if r.starts_with(b"-BUSY") {
                return r;
            }
        }
    }
    panic!("no GET was answered BUSY")
}

/// FUNCTION STATS's reply with its `duration_ms` value zeroed (the only part that varies).
fn stats_shape(r: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(r).into_owned();
    let mut out = String::new();
    let mut zero_next = false;
    for line in text.split_inclusive("\r\n") {
        if zero_next && line.starts_with(':') {
            out.push_str(":0\r\n");
        } else {
            out.push_str(line);
        }
        zero_next = line == "duration_ms\r\n";
    }
    out.into_bytes()
}

/// Runs `f` on every server and checks that each percore gives Redis's replies.
fn differential(what: &str, f: impl Fn(&Server, &str) -> Vec<(String, Vec<u8>)>) {
    let Some(all) = servers(&format!("{what}: did not run")) else {
        return;
    };
    let mut want: Option<Vec<(String, Vec<u8>)>> = None;
    for (label, s) in &all {
        let got = f(s, label);
        match &want {
            None => want = Some(got),
            Some(w) => {
                assert_eq!(w.len(), got.len(), "{what}, {label}: step count");
                for ((step, wr), (_, gr)) in w.iter().zip(&got) {
                    assert_eq!(
                        esc(wr),
                        esc(gr),
                        "{what}, {label}, step {step}: percore's reply differs from Redis's"
                    );
                }
            }
        }
    }
}

#[test]
fn busy_eval_answers_busy_and_script_kill_ends_it() {
    differential("busy EVAL", |s, label| {
        let mut caller = start(s, &["EVAL", SPIN, "0"]);
        wait_busy(s, label);
        let mut c = s.client();
        let mut steps = vec![
            ("GET on the busy core".to_string(), busy_get(s)),
            ("FUNCTION STATS".into(), c.q("FUNCTION STATS")),
            ("FUNCTION KILL".into(), c.q("FUNCTION KILL")),
            ("SHUTDOWN without NOSAVE".into(), c.q("SHUTDOWN")),
            ("PING (not allow-busy)".into(), busy_ping(s)),
        ];
        steps.push(("SCRIPT KILL".into(), c.q("SCRIPT KILL")));
        steps.push(("the killed script's reply".into(), caller.read_reply()));
        steps.push(("SCRIPT KILL after".into(), c.q("SCRIPT KILL")));
        steps.push(("FUNCTION KILL after".into(), c.q("FUNCTION KILL")));
        steps.push(("SET after".into(), c.q("SET k1 v1")));
        steps.push(("GET after".into(), c.q("GET k1")));
        steps.push(("EVAL after".into(), c.cmd(&[b"EVAL", b"return 7", b"0"])));
        steps
    });
}

/// PING answered BUSY by the busy core (tried on several clients: on 3 shards, PING of a
/// client of another core is answered PONG).
fn busy_ping(s: &Server) -> Vec<u8> {
    for _ in 0..30 {
        let r = s.client().q("PING");
        if r.starts_with(b"-BUSY") {
            return r;
        }
    }
    panic!("PING was never answered BUSY")
}

#[test]
fn script_kill_stops_a_loop_inside_pcall() {
    // The kill is raised again past the pcall, as Redis's line hook does.
    let script = "local ok = pcall(function() while true do end end) return ok";
    differential("busy pcall", |s, label| {
        let mut caller = start(s, &["EVAL", script, "0"]);
        wait_busy(s, label);
        vec![
            ("GET on the busy core".to_string(), busy_get(s)),
            ("SCRIPT KILL".into(), s.client().q("SCRIPT KILL")),
            ("the killed script's reply".into(), caller.read_reply()),
        ]
    });
}

#[test]
fn busy_function_shows_in_stats_and_function_kill_ends_it() {
    differential("busy FCALL", |s, label| {
        let mut c = s.client();
        let loaded = c.cmd(&[b"FUNCTION", b"LOAD", b"REPLACE", LIB_SPIN.as_bytes()]);
        assert_eq!(loaded, b"$7\r\nspinlib\r\n", "{label}: {}", esc(&loaded));
        let mut caller = start(s, &["FCALL", "spin", "1", "fkey", "arg"]);
        wait_busy(s, label);
        let steps = vec![
            ("GET on the busy core".to_string(), busy_get(s)),
            ("FUNCTION STATS".into(), stats_shape(&c.q("FUNCTION STATS"))),
            ("SCRIPT KILL".into(), c.q("SCRIPT KILL")),
            ("FUNCTION KILL".into(), c.q("FUNCTION KILL")),
            ("the killed function's reply".into(), caller.read_reply()),
            ("FUNCTION KILL after".into(), c.q("FUNCTION KILL")),
            ("FUNCTION STATS after".into(), c.q("FUNCTION STATS")),
        ];
        assert_eq!(c.q("FUNCTION FLUSH"), b"+OK\r\n");
        steps
    });
}

/// A script that wrote cannot be killed; SHUTDOWN NOSAVE ends the server (each run needs
/// a server of its own).
#[test]
fn a_script_that_wrote_is_unkillable_and_shutdown_nosave_ends_the_server() {
    let Some(all) = servers("unkillable: did not run") else {
        return;
    };
    let mut want: Option<Vec<Vec<u8>>> = None;
    for (label, mut s) in all {
        let mut caller = start(
            &s,
            &[
                "EVAL",
                "redis.call('set', KEYS[1], 'v') while true do end",
                "1",
                "wk",
            ],
        );
        wait_busy(&s, &label);
        let mut c = s.client();
        let got = vec![
            c.q("SCRIPT KILL"),
            c.q("FUNCTION KILL"),
            c.q("SHUTDOWN"),
            c.q("SHUTDOWN SAVE"),
        ];
        match &want {
            None => want = Some(got),
            Some(w) => {
                for (i, (wr, gr)) in w.iter().zip(&got).enumerate() {
                    assert_eq!(esc(wr), esc(gr), "unkillable, {label}, step {i}");
                }
            }
        }
        c.send(&[b"SHUTDOWN", b"NOSAVE"]);
        assert!(
            c.closed(),
            "{label}: SHUTDOWN NOSAVE did not close the connection"
        );
        assert!(
            caller.closed(),
            "{label}: the script's client was not closed"
        );
        assert!(
            s.wait_exit(Duration::from_secs(10)).is_some(),
            "{label}: the server did not exit after SHUTDOWN NOSAVE"
        );
    }
}

#[test]
fn kill_with_nothing_running_is_notbusy() {
    differential("NOTBUSY", |s, _| {
        let mut c = s.client();
        vec![
            ("SCRIPT KILL".to_string(), c.q("SCRIPT KILL")),
            ("FUNCTION KILL".into(), c.q("FUNCTION KILL")),
            ("FUNCTION STATS".into(), c.q("FUNCTION STATS")),
            // Under the threshold: not busy, not killable.
            (
                "a short script".into(),
                c.cmd(&[b"EVAL", b"return 1", b"0"]),
            ),
        ]
    });
}

/// While `SPIN` is busy on the core of `caller`: which of the keys `k0`..`k29` live on
/// that core, and a client of another core (its GETs of the others went on).
fn probe_busy_core(s: &Server) -> (Vec<usize>, Client, usize) {
    let mut all_busy = 0;
    for _ in 0..12 {
        let mut c = s.client();
        let mut busy = Vec::new();
        for i in 0..30 {
            let r = c.q(&format!("GET k{i}"));
            match r.starts_with(b"-BUSY") {
                true => busy.push(i),
                false => assert!(
                    r == b"$-1\r\n"
                        || r == format!("${}\r\nv{i}\r\n", format!("v{i}").len()).into_bytes(),
                    "GET k{i} from a client of another core: {}",
                    esc(&r)
                ),
            }
        }
        if busy.len() == 30 {
            all_busy += 1; // a client of the busy core
            continue;
        }
        return (busy, c, all_busy);
    }
    panic!("every client was on the busy core")
}

/// A client (`caller`), the keys of its core among `k0`..`k29`, and a client of another
/// core: found by running `SPIN` from `caller` until it is busy, then killing it.
fn locate_core(s: &Server, label: &str) -> (Client, Vec<usize>, Client) {
    let mut caller = start(s, &["EVAL", SPIN, "0"]);
    wait_busy(s, label);
    let (busy, other, _) = probe_busy_core(s);
    assert_eq!(s.client().q("SCRIPT KILL"), b"+OK\r\n");
    caller.read_reply();
    (caller, busy, other)
}

/// percore with 3 shards: while a script is busy on one core, clients of other cores go on
/// with keys of other cores; every command that reaches the busy core (its own clients',
/// and other cores' for its keys) is answered BUSY. After SCRIPT KILL all is served.
#[test]
fn other_cores_keys_go_on_while_one_core_is_busy() {
    let s = Server::percore(3, &[]);
    assert_eq!(s.client().q("CONFIG SET lua-time-limit 100"), b"+OK\r\n");
    let mut setup = s.client();
    for i in 0..30 {
        assert_eq!(setup.q(&format!("SET k{i} v{i}")), b"+OK\r\n");
    }
    let mut caller = start(&s, &["EVAL", SPIN, "0"]);
    wait_busy(&s, "3 shards");
    let (busy, _, _) = probe_busy_core(&s);
    assert!(!busy.is_empty(), "no key of the busy core among 30");
    // Every client of another core sees the same keys on the busy core.
    for _ in 0..6 {
        let (again, _, _) = probe_busy_core(&s);
        assert_eq!(
            again, busy,
            "clients of other cores disagree on the busy core's keys"
        );
    }
    assert_eq!(s.client().q("SCRIPT KILL"), b"+OK\r\n");
    assert!(caller
        .read_reply()
        .starts_with(b"-ERR Script killed by user with SCRIPT KILL..."));
    let mut c = s.client();
    for i in 0..30 {
        assert_eq!(
            c.q(&format!("GET k{i}")),
            format!("${}\r\nv{i}\r\n", format!("v{i}").len()).into_bytes()
        );
    }
}

/// A busy script's keys stay as it left them between its slices: a cross-shard RENAME
/// (a transaction of another core, which changes the shard directly, not by a batch)
/// onto its key waits for it, since a busy script holds its shard.
#[test]
fn a_busy_script_is_isolated_from_other_cores_transactions() {
    let s = Server::percore(3, &[]);
    assert_eq!(s.client().q("CONFIG SET lua-time-limit 100"), b"+OK\r\n");
    let (mut caller, busy, mut other) = locate_core(&s, "isolation");
    let mine = format!("k{}", busy[0]);
    let theirs = format!(
        "k{}",
        (0..30)
            .find(|i| !busy.contains(i))
            .expect("a key elsewhere")
    );
    // The script reads its key (on its own core: the fast path, no lock), computes past
    // the threshold, reads it again.
    let script = "local a = redis.call('get', KEYS[1]) \
        local stop = tonumber(redis.call('time')[1]) + 2 \
        while tonumber(redis.call('time')[1]) < stop do end \
        return {a, redis.call('get', KEYS[1])}";
    assert_eq!(other.q(&format!("SET {mine} before")), b"+OK\r\n");
    assert_eq!(other.q(&format!("SET {theirs} renamed")), b"+OK\r\n");
    caller.send(&[b"EVAL", script.as_bytes(), b"1", mine.as_bytes()]);
    wait_busy(&s, "isolation");
    other.send(&[b"RENAME", theirs.as_bytes(), mine.as_bytes()]);
    let r = caller.read_reply();
    assert_eq!(
        esc(&r),
        esc(b"*2\r\n$6\r\nbefore\r\n$6\r\nbefore\r\n"),
        "the script saw its key change while it was busy"
    );
    assert_eq!(other.read_reply(), b"+OK\r\n", "RENAME after the script");
    assert_eq!(other.q(&format!("GET {mine}")), b"$7\r\nrenamed\r\n");
}

/// Nothing but the script changes its core's keys while it is busy: keys that expire
/// meanwhile are not removed by the active expiry cycle (as Redis, which runs no cron
/// while a script is busy), so the script's DBSIZE at its end still counts them.
#[test]
fn a_busy_core_expires_nothing_meanwhile() {
    let s = Server::percore(3, &[]);
    assert_eq!(s.client().q("CONFIG SET lua-time-limit 100"), b"+OK\r\n");
    assert_eq!(s.client().q("CONFIG SET hz 100"), b"+OK\r\n");
    let (mut caller, busy, mut other) = locate_core(&s, "expiry");
    for i in &busy {
        assert_eq!(other.q(&format!("SET k{i} v PX 300")), b"+OK\r\n");
    }
    let script = "local stop = tonumber(redis.call('time')[1]) + 2 \
        while tonumber(redis.call('time')[1]) < stop do end \
        return redis.call('dbsize')";
    let r = caller.cmd(&[b"EVAL", script.as_bytes(), b"0"]);
    assert_eq!(
        esc(&r),
        esc(format!(":{}\r\n", busy.len()).as_bytes()),
        "keys of the busy core were expired while its script ran"
    );
    // Once it ends, the cycle removes them.
    let t0 = Instant::now();
    while other.q("DBSIZE") != b":0\r\n" {
        assert!(t0.elapsed() < Duration::from_secs(10), "keys never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
}
