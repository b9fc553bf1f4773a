//! The load generator against a real `redis-server` on loopback: it must send exactly the
//! requests, keys and mix it was asked for, report figures that add up, and hold `--rate`.
//! Skipped with a loud message when redis-server is absent; PERCORE_REQUIRE_REDIS=1 (set by
//! CI) turns the skip into a failure.

use std::process::{Command, Output};

use redis::Commands;
use serde_json::Value;

mod common;
use common::{free_port, Redis};

impl Redis {
    fn conn_raw(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).ok()?;
        let mut c = client.get_connection().ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok().map(|_| c)
    }

    fn conn(&self) -> redis::Connection {
        self.conn_raw().expect("connect to redis-server")
    }

    /// `calls` of one command from INFO commandstats.
    fn calls(&self, cmd: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.conn())
            .unwrap();
        let prefix = format!("cmdstat_{cmd}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
            .unwrap_or(0)
    }

    /// Runs the generator against this server; returns its output and JSON report.
    fn load(&self, args: &str) -> (Output, Value) {
        let dir = std::env::temp_dir();
        let json = dir.join(format!(
            "percore-loadtest-{}-{}.json",
            std::process::id(),
            self.port
        ));
        let out = Command::new(env!("CARGO_BIN_EXE_percore-loadtest"))
            .args(["-p", &self.port.to_string(), "--no-progress"])
            .args(["--json", json.to_str().unwrap()])
            .args(args.split_whitespace())
            .output()
            .expect("run percore-loadtest");
        assert!(
            out.status.success(),
            "percore-loadtest {args} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let _ = std::fs::remove_file(json);
        (out, report)
    }

    fn keys(&self) -> Vec<u64> {
        let keys: Vec<String> = self.conn().keys("memtier-*").unwrap();
        keys.iter()
            .map(|k| k.strip_prefix("memtier-").unwrap().parse().unwrap())
            .collect()
    }
}

fn count(j: &Value, cmd: &str, field: &str) -> u64 {
    j["commands"][cmd][field].as_u64().unwrap()
}

#[test]
fn counted_runs_send_exactly_the_requests_and_ratio_asked_for() {
    // Both receive paths: multishot with provided buffers, and plain one-shot receives.
    for mode in ["", "--no-multishot"] {
        let Some(r) = Redis::start(&[]) else { return };
        let (_, j) = r.load(&format!(
            "-t 2 -c 3 -n 220 --ratio 1:10 --pipeline 4 --key-maximum 999 {mode}"
        ));
        // 6 connections × 220 requests, 1 SET in every 11.
        assert_eq!(j["requests"], 1320, "{mode}");
        assert_eq!(count(&j, "set", "count"), 120);
        assert_eq!(count(&j, "get", "count"), 1200);
        assert_eq!(count(&j, "get", "hits") + count(&j, "get", "misses"), 1200);
        assert!(
            count(&j, "get", "hits") > 0,
            "GETs after SETs of a 1000-key range hit"
        );
        assert_eq!(count(&j, "total", "errors"), 0);
        assert_eq!(
            (r.calls("set"), r.calls("get")),
            (120, 1200),
            "what the server saw"
        );
        let multishot = j["io"].as_str().unwrap().contains("multishot");
        assert_eq!(multishot, mode.is_empty(), "{}", j["io"]);
    }
}

#[test]
fn parallel_pattern_with_allkeys_writes_every_key_once() {
    let Some(r) = Redis::start(&[]) else { return };
    let (_, j) = r.load(
        "-t 2 -c 4 --ratio 1:0 --key-pattern P:P --key-minimum 1 --key-maximum 5000 -n allkeys -d 100 --pipeline 16",
    );
    assert_eq!(j["requests"], 5000);
    assert_eq!(r.calls("set"), 5000);
    let mut keys = r.keys();
    keys.sort_unstable();
    assert_eq!(keys, (1..=5000).collect::<Vec<u64>>());
    let len: usize = r.conn().strlen("memtier-2500").unwrap();
    assert_eq!(len, 100, "-d sets the value size");
}

#[test]
fn random_and_gaussian_keys_follow_their_pattern() {
    let Some(r) = Redis::start(&[]) else { return };
    r.load("-t 1 -c 2 --ratio 1:0 --key-pattern R:R --key-minimum 1000 --key-maximum 1999 -n 1500 --distinct-client-seed");
    let keys = r.keys();
    assert!(keys.iter().all(|k| (1000..=1999).contains(k)));
    // 3000 uniform draws over 1000 keys cover 1000 × (1 − e^−3) ≈ 950 of them.
    assert!(
        (900..=1000).contains(&keys.len()),
        "{} distinct keys",
        keys.len()
    );

    let _: () = redis::cmd("FLUSHALL").query(&mut r.conn()).unwrap();
    r.load("-t 1 -c 2 --ratio 1:0 --key-pattern G:G --key-minimum 0 --key-maximum 9999 --key-median 5000 --key-stddev 20 -n 1500 --distinct-client-seed");
    let keys = r.keys();
    let within_3sd = keys.iter().filter(|&&k| (4940..=5060).contains(&k)).count();
    assert!(
        keys.len() <= 200,
        "gaussian draws concentrate: {} distinct keys",
        keys.len()
    );
    assert!(
        within_3sd * 100 >= keys.len() * 95,
        "{within_3sd} of {} within 3 sd",
        keys.len()
    );
}

#[test]
fn a_short_timed_run_reports_sane_figures() {
    let Some(r) = Redis::start(&[]) else { return };
    r.load("-t 1 -c 4 --ratio 1:0 --key-pattern P:P --key-maximum 999 -n allkeys");
    let (out, j) = r.load("-t 1 -c 10 --test-time 2 --ratio 1:4 --key-maximum 999 --pipeline 2");
    let secs = j["seconds"].as_f64().unwrap();
    assert!(
        (1.9..=2.2).contains(&secs),
        "measured over the test time: {secs}"
    );
    let ops = j["ops_per_sec"].as_f64().unwrap();
    assert!(ops > 1000.0, "{ops} ops/s on loopback");
    let total = j["requests"].as_u64().unwrap();
    assert_eq!(total, count(&j, "set", "count") + count(&j, "get", "count"));
    assert_eq!(count(&j, "get", "misses"), 0, "every key was written first");
    let lat = &j["commands"]["total"]["latency_ms"];
    let [p50, p99, p999, max] = ["p50", "p99", "p99_9", "max"].map(|p| lat[p].as_f64().unwrap());
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{lat}"
    );
    assert!(j["bytes_sent"].as_u64().unwrap() > total * 20);
    assert!(j["client_cpu_s"].as_f64().unwrap() > 0.0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Totals") && text.contains("Latency distribution"),
        "{text}"
    );
}

#[test]
fn rate_holds_the_asked_arrival_rate() {
    let Some(r) = Redis::start(&[]) else { return };
    let (_, j) = r.load("-t 1 -c 10 --rate 2000 --test-time 3 --key-maximum 999");
    let ops = j["ops_per_sec"].as_f64().unwrap();
    assert!((1940.0..=2060.0).contains(&ops), "asked 2000/s, got {ops}");
    assert_eq!(
        r.calls("set") + r.calls("get"),
        j["requests"].as_u64().unwrap()
    );
}

#[test]
fn authentication_and_error_replies_are_handled() {
    let Some(r) = Redis::start(&["--requirepass", "s3cret"]) else {
        return;
    };
    let (_, j) = r.load("-t 1 -c 2 -n 50 -a s3cret --key-maximum 99");
    assert_eq!(count(&j, "total", "errors"), 0);
    // Without the password every request is answered with NOAUTH: counted, not fatal.
    let (_, j) = r.load("-t 1 -c 2 -n 50 --key-maximum 99");
    assert_eq!(count(&j, "total", "errors"), 100);
    assert!(
        j["first_error"].as_str().unwrap().starts_with("NOAUTH"),
        "{}",
        j["first_error"]
    );
    let out = Command::new(env!("CARGO_BIN_EXE_percore-loadtest"))
        .args(["-p", &r.port.to_string(), "-a", "wrong", "-n", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AUTH failed"), "{err}");
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_percore-loadtest"))
        .args(["-p", &port.to_string(), "-n", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
}
