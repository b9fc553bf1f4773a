//! `percore-loadtest pubsub` end to end: against a real `redis-server` every message must be
//! delivered to every subscriber of its channel, in order, with figures that add up; against
//! a small fake server that loses, reorders or misroutes a message, the run must say so and
//! exit 1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;

mod common;
use common::{free_port, Redis};

/// Runs `percore-loadtest pubsub` on `port`; returns its output and JSON report (when written).
fn pubsub(port: u16, args: &str) -> (Output, Option<Value>) {
    let json = std::env::temp_dir().join(format!(
        "percore-loadtest-pubsub-{}-{port}.json",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&json);
    let out = Command::new(env!("CARGO_BIN_EXE_percore-loadtest"))
        .args(["pubsub", "-p", &port.to_string()])
        .args(["--json", json.to_str().unwrap()])
        .args(args.split_whitespace())
        .output()
        .expect("run percore-loadtest pubsub");
    let report = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    let _ = std::fs::remove_file(json);
    (out, report)
}

fn n(j: &Value, field: &str) -> u64 {
    j[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {j}"))
}

#[test]
fn every_subscriber_gets_every_message_in_order() {
    let Some(r) = Redis::start(&[]) else { return };
    let pid = r.child.id();
    // 1 channel x 40 subscribers; 50 channels x 4 subscribers (each holds all 50);
    // 30 channels x 2 subscribers from 60 subscribers of one channel each, 2 publishers.
    for (layout, fanout, publishers) in [
        ("--subscribers 40 --channels 1 -t 2", 40, 1),
        (
            "--subscribers 4 --channels 50 --channels-per-subscriber 50",
            4,
            1,
        ),
        ("--subscribers 60 --channels 30 --publishers 2 -t 3", 2, 2),
    ] {
        let (out, j) = pubsub(
            r.port,
            &format!("{layout} -n 600 --pipeline 16 --in-flight 20 --server-pid {pid}"),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{layout}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j = j.expect("a JSON report");
        assert_eq!(n(&j, "published"), 600 * publishers, "{layout}");
        assert_eq!(n(&j, "expected_deliveries"), 600 * publishers * fanout);
        assert_eq!(n(&j, "delivered"), n(&j, "expected_deliveries"), "{layout}");
        for field in [
            "lost",
            "reordered",
            "misrouted",
            "malformed",
            "connection_errors",
        ] {
            assert_eq!(n(&j, field), 0, "{layout}: {field}");
        }
        assert_eq!(n(&j, "publish_receivers_mismatch"), 0, "{layout}");
        let lat = &j["latency_ms"];
        let [p50, p99, p999, max] =
            ["p50", "p99", "p99_9", "max"].map(|p| lat[p].as_f64().unwrap());
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
            "{lat}"
        );
        assert!(j["server_cpu_s"].as_f64().unwrap() >= 0.0, "{j}");
        assert!(text.contains("lost 0, reordered or duplicated 0"), "{text}");
    }
    // Redis counted the PUBLISH commands the reports say were sent.
    let info = Command::new("redis-cli")
        .args(["-p", &r.port.to_string(), "info", "commandstats"])
        .output();
    if let Ok(info) = info {
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(info.contains("cmdstat_publish:calls=2400,"), "{info}");
    }
}

#[test]
fn a_fixed_rate_publishes_at_that_rate() {
    let Some(r) = Redis::start(&[]) else { return };
    let (out, j) = pubsub(r.port, "--subscribers 20 --rate 2000 --test-time 2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let j = j.unwrap();
    let rate = j["published_per_sec"].as_f64().unwrap();
    assert!(
        (1900.0..=2100.0).contains(&rate),
        "asked 2000/s, got {rate}"
    );
    assert_eq!(n(&j, "delivered"), n(&j, "published") * 20);
}

#[test]
fn a_server_without_pub_sub_is_a_clear_error() {
    let Some(r) = Redis::start(&["--rename-command", "SUBSCRIBE", ""]) else {
        return;
    };
    let (out, j) = pubsub(r.port, "--subscribers 2 -n 10");
    assert_eq!(out.status.code(), Some(1));
    assert!(j.is_none(), "no report for a run that never started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SUBSCRIBE failed: -ERR unknown command"),
        "{err}"
    );
}

/// What the fake server does wrong.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Never delivers the message with sequence number 5.
    Lose,
    /// Delivers 6 before 5.
    Swap,
    /// Delivers 5 twice.
    Duplicate,
    /// Delivers 5 on a channel the subscriber does not hold as well.
    Misroute,
}

/// Reads one command (an array of bulk strings); None at end of stream.
fn read_command(r: &mut BufReader<TcpStream>) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let count: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        r.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

fn message(channel: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = format!("*3\r\n$7\r\nmessage\r\n${}\r\n", channel.len()).into_bytes();
    m.extend_from_slice(channel);
    m.extend_from_slice(format!("\r\n${}\r\n", payload.len()).as_bytes());
    m.extend_from_slice(payload);
    m.extend_from_slice(b"\r\n");
    m
}

/// A pub/sub server of one channel that delivers PUBLISH to its subscribers with `fault`.
fn fake_server(fault: Fault) -> u16 {
    let port = free_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let subscribers: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let subscribers = Arc::clone(&subscribers);
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let mut held: Option<Vec<u8>> = None;
                while let Some(args) = read_command(&mut r) {
                    if args[0].eq_ignore_ascii_case(b"SUBSCRIBE") {
                        // Held before confirmed, so no message published after the
                        // confirmation can miss it.
                        subscribers.lock().unwrap().push(w.try_clone().unwrap());
                        for (i, ch) in args[1..].iter().enumerate() {
                            let confirm = format!(
                                "*3\r\n$9\r\nsubscribe\r\n${}\r\n{}\r\n:{}\r\n",
                                ch.len(),
                                String::from_utf8_lossy(ch),
                                i + 1
                            );
                            w.write_all(confirm.as_bytes()).unwrap();
                        }
                        continue;
                    }
                    let (channel, payload) = (&args[1], &args[2]);
                    let seq = payload.split(|&b| b == b':').nth(1).unwrap().to_vec();
                    let mut subs = subscribers.lock().unwrap();
                    w.write_all(format!(":{}\r\n", subs.len()).as_bytes())
                        .unwrap();
                    let m = message(channel, payload);
                    let out: Vec<Vec<u8>> = match (fault, &seq[..]) {
                        (Fault::Lose, b"5") => vec![],
                        (Fault::Swap, b"5") => {
                            held = Some(m);
                            vec![]
                        }
                        (Fault::Swap, b"6") => vec![m, held.take().unwrap()],
                        (Fault::Duplicate, b"5") => vec![m.clone(), m],
                        (Fault::Misroute, b"5") => vec![message(b"channel:7", payload), m],
                        _ => vec![m],
                    };
                    for s in subs.iter_mut() {
                        for m in &out {
                            s.write_all(m).unwrap();
                        }
                    }
                }
            });
        }
    });
    port
}

#[test]
fn losses_reorders_duplicates_and_strays_fail_the_run() {
    // Per fault, (lost, reordered, misrouted) over 3 subscribers: a swap is a gap then a
    // late message; a stray on another channel costs nothing else.
    for (fault, expected) in [
        (Fault::Lose, (3, 0, 0)),
        (Fault::Swap, (3, 3, 0)),
        (Fault::Duplicate, (0, 3, 0)),
        (Fault::Misroute, (0, 0, 3)),
    ] {
        let port = fake_server(fault);
        let (out, j) = pubsub(port, "--subscribers 3 --channels 1 -n 20 --pipeline 1");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("FAILED"), "{text}");
        let j = j.unwrap();
        let got = (n(&j, "lost"), n(&j, "reordered"), n(&j, "misrouted"));
        assert_eq!(got, expected, "{j}");
        assert_eq!(j["ok"], false);
    }
    // The same server without a fault passes: the checks do not fail everything.
    let port = fake_server(Fault::None);
    let (out, _) = pubsub(port, "--subscribers 3 --channels 1 -n 20 --pipeline 1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
