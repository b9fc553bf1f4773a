//! Helpers for the multi-node cluster tests: nodes with their own directory and bus port,
//! waiting for their views to agree, redis-cli --cluster and its check.

use super::{free_port, s, Server, TempDir};
use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it holds; panics with `what` after `within`.
pub fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub fn my_id(c: &mut super::Client) -> String {
    let r = s(&c.q("CLUSTER MYID"));
    let id = r.split("\r\n").nth(1).unwrap_or("").to_string();
    assert_eq!(id.len(), 40, "{r:?}");
    id
}

/// Flags for a cluster node whose directory (nodes file, snapshots) and bus port are its own.
pub fn node_flags(dir: &TempDir, name: &str, timeout_ms: u64) -> Vec<String> {
    let own = format!("{}/{name}", dir.path());
    std::fs::create_dir_all(&own).unwrap();
    [
        "--cluster-enabled",
        "yes",
        "--dir",
        &own,
        "--cluster-port",
        &free_port().to_string(),
        "--cluster-node-timeout",
        &timeout_ms.to_string(),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

/// `n` fresh nodes of `shards` cores each, with their flags (to restart them).
pub fn start_nodes(
    dir: &TempDir,
    n: usize,
    shards: usize,
    timeout_ms: u64,
) -> Vec<(Server, Vec<String>)> {
    (0..n)
        .map(|i| {
            let flags = node_flags(dir, &format!("n{i}"), timeout_ms);
            (Server::percore(shards, &strs(&flags)), flags)
        })
        .collect()
}

pub fn info_field(c: &mut super::Client, field: &str) -> String {
    let info = s(&c.q("CLUSTER INFO"));
    info.split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
        .unwrap_or_default()
}

pub fn bus_port(flags: &[String]) -> String {
    let i = flags.iter().position(|f| f == "--cluster-port").unwrap();
    flags[i + 1].clone()
}

/// Every node reports `known` nodes, all linked, cluster_state:ok, and the same slot map.
pub fn wait_agreed(nodes: &[&Server], known: usize) {
    wait_for("the nodes to agree", Duration::from_secs(60), || {
        let views: Vec<(String, String, String, usize)> = nodes
            .iter()
            .map(|n| {
                let mut c = n.client();
                (
                    info_field(&mut c, "cluster_known_nodes"),
                    info_field(&mut c, "cluster_state"),
                    s(&c.q("CLUSTER SLOTS")),
                    s(&c.q("CLUSTER NODES")).matches(" connected").count(),
                )
            })
            .collect();
        views
            .iter()
            .all(|v| v.0 == known.to_string() && v.1 == "ok" && v.2 == views[0].2 && v.3 == known)
    });
}

/// redis-cli with `args`, or None (the test skips, saying so) when it is not installed.
pub fn redis_cli(args: &[&str]) -> Option<(bool, String)> {
    match std::process::Command::new("redis-cli").args(args).output() {
        Ok(out) => Some((
            out.status.success(),
            format!("{}{}", s(&out.stdout), s(&out.stderr)),
        )),
        Err(e) => {
            assert!(
                std::env::var("PERCORE_REQUIRE_REDIS").is_err(),
                "redis-cli is required: {e}"
            );
            eprintln!("skipping: redis-cli is not installed ({e})");
            None
        }
    }
}

/// `redis-cli --cluster check` through `port` finds nothing wrong.
pub fn cluster_check(port: u16) {
    let addr = format!("127.0.0.1:{port}");
    let (ok, out) = redis_cli(&["--cluster", "check", &addr]).expect("redis-cli ran before");
    assert!(ok, "--cluster check failed:\n{out}");
    for want in [
        "[OK] All nodes agree about slots configuration.",
        "[OK] All 16384 slots covered.",
    ] {
        assert!(out.contains(want), "no '{want}' in:\n{out}");
    }
    assert!(
        !out.contains("[ERR]") && !out.contains("[WARNING]"),
        "--cluster check complained:\n{out}"
    );
}
