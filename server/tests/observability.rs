//! Observability end to end: the Prometheus endpoint after a known workload, SLOWLOG,
//! LATENCY and INFO latencystats, the deploy/ files checked by their own tools (promtool,
//! systemd-analyze), and a real Prometheus server scraping percore on loopback.
//!
//! The tool-dependent tests skip with a loud message when the tool is missing; CI installs
//! them and sets PERCORE_REQUIRE_PROMETHEUS=1, which turns a skip into a failure.

mod common;

use common::{free_port, s, Server};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// True if `tool` runs; otherwise skips loudly, or fails when CI requires it.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("PERCORE_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "{tool} is required (PERCORE_REQUIRE_PROMETHEUS=1) but not installed"
        );
        eprintln!("SKIPPED: {tool} is not installed (apt-get install -y prometheus systemd)");
    }
    found
}

/// One HTTP/1.1 request; returns (status line, headers, body).
fn http(port: u16, request: &str) -> (String, String, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

fn scrape(port: u16) -> String {
    let (status, headers, body) = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    body
}

/// `name{labels}` → value for every sample line.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("sample line");
            (k.to_string(), v.parse().expect("numeric sample"))
        })
        .collect()
}

fn sum_of(m: &HashMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

fn metrics_server(shards: usize, extra: &[&str]) -> (Server, u16) {
    let mport = free_port();
    let port = mport.to_string();
    let mut args = vec!["--metrics-port", port.as_str()];
    args.extend_from_slice(extra);
    (Server::percore(shards, &args), mport)
}

#[test]
fn scrape_counts_what_was_sent() {
    let (srv, mport) = metrics_server(4, &[]);
    let mut c = srv.client();
    for i in 0..200 {
        c.q(&format!("SET key:{i} value"));
    }
    for i in 0..100 {
        c.q(&format!("GET key:{i}"));
    }
    for i in 0..50 {
        c.q(&format!("GET missing:{i}"));
    }
    for i in 0..10 {
        c.q(&format!("DEL key:{i}"));
    }
    c.q("SET onlykey");
    c.q("NOSUCHCOMMAND");
    c.q("EXPIRE key:50 1000");
    let body = scrape(mport);
    let m = samples(&body);
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("no sample {k} in\n{body}"))
    };
    assert_eq!(get("redis_up"), 1.0);
    assert_eq!(get("percore_shards"), 4.0);
    assert_eq!(get(r#"redis_commands_total{cmd="set"}"#), 200.0);
    assert_eq!(get(r#"redis_commands_total{cmd="get"}"#), 150.0);
    assert_eq!(get(r#"redis_commands_total{cmd="del"}"#), 10.0);
    assert_eq!(
        get(r#"redis_commands_rejected_calls_total{cmd="set"}"#),
        1.0
    );
    assert_eq!(get("redis_keyspace_hits_total"), 100.0);
    assert_eq!(get("redis_keyspace_misses_total"), 50.0);
    assert_eq!(get(r#"redis_db_keys{db="db0"}"#), 190.0);
    assert_eq!(get(r#"redis_db_keys_expiring{db="db0"}"#), 1.0);
    assert_eq!(
        sum_of(&m, "percore_shard_keys{"),
        190.0,
        "shards add up to the keyspace"
    );
    assert_eq!(
        sum_of(&m, "percore_shard_commands_processed_total{"),
        get("redis_commands_processed_total")
    );
    assert!(get(r#"redis_errors_total{err="ERR"}"#) >= 2.0);
    assert!(get("redis_connected_clients") >= 1.0);
    // Keys spread over 4 shards: most of this client's commands crossed to another core.
    assert!(sum_of(&m, "percore_cross_shard_commands_total{") > 100.0);
    // The latency histogram: cumulative, ending at the count.
    let count = get(r#"percore_command_duration_seconds_count{cmd="set"}"#);
    assert_eq!(count, 200.0);
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter(|(k, _)| k.starts_with(r#"percore_command_duration_seconds_bucket{cmd="set","#))
        .map(|(k, v)| {
            let le = k.split("le=\"").nth(1).unwrap().trim_end_matches("\"}");
            (le.parse::<f64>().unwrap_or(f64::INFINITY), *v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 200.0));
    // Every family is declared once, before its samples.
    let types: Vec<&str> = body.lines().filter(|l| l.starts_with("# TYPE")).collect();
    let mut unique = types.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(types.len(), unique.len(), "a family declared twice");

    if have("promtool") {
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            s(&out.stdout),
            s(&out.stderr)
        );
    }
}

#[test]
fn the_endpoint_answers_only_what_it_serves() {
    let (srv, mport) = metrics_server(1, &[]);
    let (status, _, _) = http(mport, "GET /nope HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = http(mport, "POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let (status, _, _) = http(mport, "garbage\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    // A client that never finishes its request does not hold the endpoint.
    let _slow = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    scrape(mport);
    // A request head over 8 KiB is refused: a 400, or a reset when the server closes with
    // the rest of the head unread; never metrics.
    let mut c = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let _ = c.write_all(huge.as_bytes());
    let mut answer = Vec::new();
    match c.read_to_end(&mut answer) {
        Ok(_) => assert!(
            s(&answer).starts_with("HTTP/1.1 400 Bad Request"),
            "{}",
            s(&answer)
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    scrape(mport);
    // At most 16 scrapes at once: with 16 clients holding unfinished requests the next is
    // refused with 503, and once they leave the endpoint serves again.
    let holders: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut t = TcpStream::connect(("127.0.0.1", mport)).unwrap();
            t.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            t
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = http(mport, "GET /metrics HTTP/1.1\r\n\r\n").0;
        if status == "HTTP/1.1 503 Service Unavailable" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never refused past 16 scrapes: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(3);
    while http(mport, "GET /metrics HTTP/1.1\r\n\r\n").0 != "HTTP/1.1 200 OK" {
        assert!(Instant::now() < deadline, "the endpoint did not recover");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The RESP port still refuses HTTP.
    let mut c = srv.client();
    c.send_raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.closed());
    // A taken metrics port is a clear start-up error.
    let out = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args([
            "--port",
            &free_port().to_string(),
            "--metrics-port",
            &mport.to_string(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(s(&out.stderr).contains("for metrics"), "{}", s(&out.stderr));
}

#[test]
fn slowlog_keeps_slow_commands_from_every_shard() {
    let srv = Server::percore(4, &[]);
    let mut c = srv.client();
    c.q("CLIENT SETNAME tester");
    // DEBUG SLEEP takes 30 ms: over the default 10 ms threshold.
    c.q("DEBUG SLEEP 0.03");
    assert_eq!(s(&c.q("SLOWLOG LEN")), ":1\r\n");
    let entry = s(&c.q("SLOWLOG GET"));
    assert!(entry.starts_with("*1\r\n*6\r\n:0\r\n:"), "{entry}");
    assert!(
        entry.contains("*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$4\r\n0.03\r\n"),
        "{entry}"
    );
    assert!(entry.ends_with("$6\r\ntester\r\n"), "{entry}");
    let duration: u64 = entry.split("\r\n").nth(4).unwrap()[1..].parse().unwrap();
    assert!(duration >= 30_000, "{duration} µs");

    // Everything logged: keys land on all four shards, yet the log is one, newest first.
    c.q("CONFIG SET slowlog-log-slower-than 0");
    for i in 0..20 {
        c.q(&format!("SET k{i} v"));
    }
    let all = s(&c.q("SLOWLOG GET -1"));
    let first_set = all
        .find("$3\r\nSET\r\n$3\r\nk19")
        .expect("newest SET first");
    assert!(first_set < all.find("$3\r\nSET\r\n$3\r\nk18").unwrap());
    let sets = all.matches("SET\r\n$2\r\nk").count() + all.matches("SET\r\n$3\r\nk").count();
    assert_eq!(sets, 20, "{all}");
    assert_eq!(s(&c.q("SLOWLOG GET 2")).matches("*6\r\n").count(), 2);
    assert_eq!(
        s(&c.q("SLOWLOG GET -2")),
        "-ERR count should be greater than or equal to -1\r\n"
    );

    // slowlog-max-len bounds the whole log, not each shard's part of it.
    c.q("CONFIG SET slowlog-max-len 5");
    for i in 0..20 {
        c.q(&format!("GET k{i}"));
    }
    assert_eq!(s(&c.q("SLOWLOG LEN")), ":5\r\n");
    assert_eq!(s(&c.q("SLOWLOG GET -1")).matches("*6\r\n").count(), 5);
    c.q("CONFIG SET slowlog-log-slower-than -1");
    assert_eq!(s(&c.q("SLOWLOG RESET")), "+OK\r\n");
    assert_eq!(s(&c.q("SLOWLOG LEN")), ":0\r\n");
    assert!(s(&c.q("SLOWLOG HELP")).contains("RESET"));
    assert!(s(&c.q("SLOWLOG NOPE")).starts_with("-ERR unknown subcommand"));
}

#[test]
fn latency_monitor_records_spikes() {
    let srv = Server::percore(2, &[]);
    let mut c = srv.client();
    assert!(s(&c.q("LATENCY DOCTOR")).contains("disabled"));
    c.q("CONFIG SET latency-monitor-threshold 20");
    c.q("DEBUG SLEEP 0.001");
    assert_eq!(s(&c.q("LATENCY LATEST")), "*0\r\n", "below the threshold");
    c.q("DEBUG SLEEP 0.03");
    let latest = s(&c.q("LATENCY LATEST"));
    assert!(
        latest.starts_with("*1\r\n*4\r\n$7\r\ncommand\r\n:"),
        "{latest}"
    );
    let fields: Vec<&str> = latest.split("\r\n").collect();
    let (latest_ms, max_ms): (u64, u64) = (
        fields[5][1..].parse().unwrap(),
        fields[6][1..].parse().unwrap(),
    );
    assert!(latest_ms >= 30 && max_ms >= latest_ms, "{latest}");
    let history = s(&c.q("LATENCY HISTORY command"));
    assert!(history.starts_with("*1\r\n*2\r\n:"), "{history}");
    assert_eq!(s(&c.q("LATENCY HISTORY nothing")), "*0\r\n");
    assert!(s(&c.q("LATENCY DOCTOR")).contains("command: 1 latency spikes"));
    assert_eq!(s(&c.q("LATENCY RESET")), ":1\r\n");
    assert_eq!(s(&c.q("LATENCY LATEST")), "*0\r\n");
}

#[test]
fn info_reports_latency_percentiles_and_shards() {
    let srv = Server::percore(2, &[]);
    let mut c = srv.client();
    for i in 0..100 {
        c.q(&format!("SET k{i} v"));
    }
    let info = s(&c.q("INFO latencystats"));
    let line = info
        .lines()
        .find(|l| l.starts_with("latency_percentiles_usec_set:"))
        .unwrap_or_else(|| panic!("{info}"));
    let p: Vec<f64> = line
        .split(&[':', ','][..])
        .skip(1)
        .map(|kv| kv.split('=').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        p.len() == 3 && 0.0 < p[0] && p[0] <= p[1] && p[1] <= p[2],
        "{line}"
    );
    let shards = s(&c.q("INFO shards"));
    assert!(shards.contains("shard1:keys="), "{shards}");
    assert!(shards.contains("mailbox_depth="), "{shards}");
    c.q("CONFIG RESETSTAT");
    assert!(!s(&c.q("INFO latencystats")).contains("usec_set:"));
}

#[test]
fn deploy_files_pass_their_checkers() {
    let deploy = repo().join("deploy");
    if have("promtool") {
        for (what, file) in [
            ("rules", "prometheus/alerts.yml"),
            ("config", "prometheus/prometheus.yml"),
        ] {
            let out = Command::new("promtool")
                .args(["check", what])
                .arg(deploy.join(file))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "promtool check {what} {file}: {}{}",
                s(&out.stdout),
                s(&out.stderr)
            );
        }
    }
    if have("systemd-analyze") {
        // The unit as installed, with ExecStart pointing at this build.
        let dir = std::env::temp_dir().join(format!("percore-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let unit = std::fs::read_to_string(deploy.join("percore.service"))
            .unwrap()
            .replace("/usr/local/bin/percore", env!("CARGO_BIN_EXE_percore"));
        let path = dir.join("percore.service");
        std::fs::write(&path, unit).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let err = s(&out.stderr);
        assert!(
            out.status.success() && !err.contains("percore.service:"),
            "systemd-analyze verify: {err}"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy.join("grafana/percore-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().unwrap().len() >= 10);
}

#[test]
fn a_prometheus_server_scrapes_percore() {
    if !have("prometheus") {
        return;
    }
    let (srv, mport) = metrics_server(2, &[]);
    srv.client().q("SET a 1");
    let dir = std::env::temp_dir().join(format!("percore-prom-{}-{mport}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: percore\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
        ),
    )
    .unwrap();
    let web = free_port();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let found = loop {
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
        if TcpStream::connect(("127.0.0.1", web)).is_err() {
            continue;
        }
        let (_, _, body) = http(
            web,
            "GET /api/v1/query?query=percore_shard_keys HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        last = body;
        // Both shards' series, scraped from percore.
        if last.contains("\"shard\":\"0\"") && last.contains("\"shard\":\"1\"") {
            break true;
        }
    };
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        found,
        "Prometheus never returned percore's series; last answer: {last}"
    );
}
