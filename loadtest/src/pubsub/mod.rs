//! `percore-loadtest pubsub`: Pub/Sub fan-out. P publishers send PUBLISH as fast as a bound
//! on undelivered messages allows (or at a fixed rate) to C channels held by S subscriber
//! connections; every message carries its send time, publisher and per-channel sequence
//! number, so the run reports messages published and delivered per second, delivery latency
//! (HdrHistogram, as the request load), and whether every subscriber got every message of
//! its channels in order. Any loss, reorder, duplicate or stray frame makes the exit status 1.
//!
//! Threads: one per publisher (a blocking connection, batches of `--pipeline`), `--threads`
//! for all the subscribers (io_uring, see `subscriber.rs`), and the main thread, which
//! connects and subscribes everyone before the clock starts and sums up at the end. The
//! threads share two counters (`publisher::Shared`) and nothing else.
//!
//! With `--server-pid`, the server's CPU seconds over the run come from `/proc/PID/stat`,
//! read just before the first message and after the last delivery.

mod options;
mod order;
mod publisher;
mod subscriber;

use std::io::Write;
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use percore_proto::ReplyKind;
use serde_json::{json, Value};

use crate::stats::{histogram, PERCENTILES};
use options::{Length, PubSubConfig, USAGE};
use order::Order;
use publisher::{Plan, Published, Shared};
use subscriber::{Delivered, Subscriber};

pub fn main(args: &[String]) -> ExitCode {
    crate::run_mode(
        "percore-loadtest pubsub",
        USAGE,
        PubSubConfig::parse(args.iter().cloned()),
        run,
    )
}

/// Connects every subscriber and subscribes it to its channels: all SUBSCRIBE commands are
/// written first, then each connection's confirmations are read, so setting up thousands of
/// subscribers costs about one round trip, not one each.
fn subscribe_all(cfg: &PubSubConfig) -> Result<Vec<TcpStream>, String> {
    let l = &cfg.layout;
    let mut streams = Vec::with_capacity(l.subscribers);
    for s in 0..l.subscribers {
        let mut stream = crate::connect_to(&cfg.server, cfg.port, cfg.auth.as_deref())?;
        let mut req = format!("*{}\r\n$9\r\nSUBSCRIBE\r\n", l.per_subscriber + 1).into_bytes();
        for j in 0..l.per_subscriber {
            let name = cfg.channel_name(l.channel_of(s, j));
            req.extend_from_slice(format!("${}\r\n{name}\r\n", name.len()).as_bytes());
        }
        stream
            .write_all(&req)
            .map_err(|e| format!("subscriber {s}: {e}"))?;
        streams.push(stream);
    }
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    for (s, stream) in streams.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        buf.clear();
        let mut confirmed = 0;
        let mut at = 0;
        while confirmed < l.per_subscriber {
            let (len, kind) = crate::read_reply(stream, &mut buf, at, &mut chunk)
                .map_err(|e| format!("subscriber {s}: SUBSCRIBE: {e}"))?;
            if kind != ReplyKind::Aggregate(3) {
                return Err(format!(
                    "SUBSCRIBE failed: {}",
                    String::from_utf8_lossy(&buf[at..at + len]).trim_end()
                ));
            }
            at += len;
            confirmed += 1;
        }
        if at != buf.len() {
            return Err(format!("subscriber {s}: more replies than subscriptions"));
        }
        stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    }
    Ok(streams)
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn process_cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("--server-pid {pid}: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unreadable /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| "unreadable /proc/PID/stat".to_string())
    };
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    Ok((ticks(11)? + ticks(12)?) / hz)
}

/// The sums over all threads that the report shows.
struct Totals {
    published: u64,
    promised: u64,
    received: u64,
    lost: u64,
    late: u64,
    misrouted: u64,
    malformed: u64,
    receivers_mismatch: u64,
    connection_errors: u64,
    first_error: Option<String>,
    publish_s: f64,
    deliver_s: f64,
    latency: Histogram<u64>,
    client_cpu_s: f64,
    server_cpu_s: Option<f64>,
}

impl Totals {
    fn ok(&self) -> bool {
        self.lost == 0
            && self.late == 0
            && self.misrouted == 0
            && self.malformed == 0
            && self.connection_errors == 0
    }
}

/// Sums what the threads saw, and checks each subscriber's sequences against what was
/// published on its channels.
fn total(
    cfg: &PubSubConfig,
    fanout: &[u64],
    published: &[Published],
    delivered: Vec<Delivered>,
) -> Totals {
    let mut t = Totals {
        published: published.iter().map(|p| p.messages).sum(),
        promised: 0,
        received: 0,
        lost: 0,
        late: 0,
        misrouted: 0,
        malformed: 0,
        receivers_mismatch: published.iter().map(|p| p.receivers_mismatch).sum(),
        connection_errors: 0,
        first_error: None,
        publish_s: published.iter().map(|p| p.end_ns).max().unwrap_or(0) as f64 / 1e9,
        deliver_s: 0.0,
        latency: histogram(),
        client_cpu_s: 0.0,
        server_cpu_s: None,
    };
    for p in published {
        t.promised += p
            .per_channel
            .iter()
            .zip(fanout)
            .map(|(m, f)| m * f)
            .sum::<u64>();
    }
    let layout = cfg.layout;
    for d in delivered {
        t.latency.add(&d.latency).expect("histograms share bounds");
        t.misrouted += d.misrouted;
        t.malformed += d.malformed;
        t.connection_errors += d.connection_errors;
        if t.first_error.is_none() {
            t.first_error = d.first_error;
        }
        t.deliver_s = t.deliver_s.max(d.last_ns as f64 / 1e9);
        for (s, mut order) in d.orders {
            let sent = |slot: usize, p: usize| published[p].per_channel[layout.channel_of(s, slot)];
            order.finish(sent);
            let Order {
                received,
                lost,
                late,
                ..
            } = order;
            t.received += received;
            t.lost += lost;
            t.late += late;
        }
    }
    t
}

/// Runs the load; Ok(false) when a message was lost, reordered or malformed, or a
/// connection broke.
fn run(cfg: &PubSubConfig) -> Result<bool, String> {
    let layout = cfg.layout;
    let fanout = layout.fanout();
    let channel_bulks: Vec<Vec<u8>> = (0..layout.channels)
        .map(|c| {
            let name = cfg.channel_name(c);
            format!("${}\r\n{name}\r\n", name.len()).into_bytes()
        })
        .collect();
    let subscriptions: u64 = fanout.iter().sum();
    let mean_fanout = subscriptions.div_ceil(layout.channels as u64);
    let plan = Plan {
        cfg,
        fanout: &fanout,
        channel_bulks: &channel_bulks,
        outstanding_max: (cfg.in_flight * mean_fanout)
            .max(fanout.iter().copied().max().unwrap_or(1)),
    };
    let subs = subscribe_all(cfg)?;
    let mut pubs = Vec::with_capacity(cfg.publishers);
    for _ in 0..cfg.publishers {
        pubs.push(crate::connect_to(
            &cfg.server,
            cfg.port,
            cfg.auth.as_deref(),
        )?);
    }
    // Subscribers in contiguous runs per thread.
    let mut per_thread: Vec<Vec<Subscriber>> = (0..cfg.threads).map(|_| Vec::new()).collect();
    for (index, stream) in subs.into_iter().enumerate() {
        per_thread[index * cfg.threads / layout.subscribers].push(Subscriber { stream, index });
    }
    let shared = Shared::default();
    shared.publishing.store(cfg.publishers, Ordering::Release);
    let server_cpu_start = cfg.server_pid.map(process_cpu_seconds).transpose()?;
    let cpu_start = crate::cpu_seconds();
    let clock = Instant::now();
    let (published, delivered) = std::thread::scope(|scope| {
        let shared = &shared;
        let subscribers: Vec<_> = per_thread
            .into_iter()
            .map(|subs| {
                scope.spawn(move || {
                    let r = subscriber::run(
                        layout,
                        &cfg.channel_prefix,
                        cfg.publishers,
                        subs,
                        shared,
                        clock,
                    );
                    if r.is_err() {
                        shared.stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        let publishers: Vec<_> = pubs
            .into_iter()
            .enumerate()
            .map(|(p, stream)| {
                let plan = &plan;
                scope.spawn(move || {
                    let r = publisher::run(plan, p, stream, shared, clock);
                    if r.is_err() {
                        shared.stop.store(true, Ordering::Relaxed);
                    }
                    shared.publishing.fetch_sub(1, Ordering::AcqRel);
                    r
                })
            })
            .collect();
        let published: Result<Vec<Published>, String> = publishers
            .into_iter()
            .map(|h| h.join().expect("publisher threads do not panic"))
            .collect();
        let delivered: Result<Vec<Delivered>, String> = subscribers
            .into_iter()
            .map(|h| {
                h.join()
                    .expect("subscriber threads do not panic")
                    .map_err(|e| format!("io_uring: {e}"))
            })
            .collect();
        (published, delivered)
    });
    let server_cpu_end = cfg.server_pid.map(process_cpu_seconds).transpose()?;
    let client_cpu_s = crate::cpu_seconds() - cpu_start;
    let mut t = total(cfg, &fanout, &published?, delivered?);
    t.client_cpu_s = client_cpu_s;
    t.server_cpu_s = server_cpu_start.zip(server_cpu_end).map(|(a, b)| b - a);
    print!("{}", to_text(cfg, &t));
    if let Some(path) = &cfg.json {
        let text = serde_json::to_string_pretty(&to_json(cfg, &t)).expect("JSON values serialize");
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(t.ok())
}

fn per_sec(n: u64, secs: f64) -> f64 {
    n as f64 / secs.max(1e-9)
}

/// Server (or client) CPU seconds per million deliveries.
fn per_million(cpu_s: f64, delivered: u64) -> Option<f64> {
    (delivered > 0).then(|| cpu_s / (delivered as f64 / 1e6))
}

fn to_json(cfg: &PubSubConfig, t: &Totals) -> Value {
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut lat = serde_json::Map::new();
    lat.insert("avg".into(), json!(t.latency.mean() / 1e6));
    for (name, q) in PERCENTILES {
        lat.insert(name.into(), json!(ms(t.latency.value_at_percentile(q))));
    }
    lat.insert("max".into(), json!(ms(t.latency.max())));
    let tags: serde_json::Map<String, Value> = cfg
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "tool": "percore-loadtest",
        "mode": "pubsub",
        "tags": tags,
        "config": {
            "server": cfg.server,
            "port": cfg.port,
            "publishers": cfg.publishers,
            "subscribers": cfg.layout.subscribers,
            "channels": cfg.layout.channels,
            "channels_per_subscriber": cfg.layout.per_subscriber,
            "threads": cfg.threads,
            "pipeline": cfg.pipeline,
            "in_flight": cfg.in_flight,
            "rate": cfg.rate,
            "data_size": cfg.data_size,
            "test_time": match cfg.length { Length::Time(d) => json!(d.as_secs()), Length::Messages(_) => json!(null) },
            "messages": match cfg.length { Length::Messages(n) => json!(n), Length::Time(_) => json!(null) },
        },
        "publish_seconds": t.publish_s,
        "deliver_seconds": t.deliver_s,
        "published": t.published,
        "published_per_sec": per_sec(t.published, t.publish_s),
        "expected_deliveries": t.promised,
        "delivered": t.received,
        "delivered_per_sec": per_sec(t.received, t.deliver_s),
        "lost": t.lost,
        "reordered": t.late,
        "misrouted": t.misrouted,
        "malformed": t.malformed,
        "publish_receivers_mismatch": t.receivers_mismatch,
        "connection_errors": t.connection_errors,
        "first_error": t.first_error,
        "latency_ms": lat,
        "client_cpu_s": t.client_cpu_s,
        "server_cpu_s": t.server_cpu_s,
        "server_cpu_s_per_million_delivered": t.server_cpu_s.and_then(|s| per_million(s, t.received)),
        "ok": t.ok(),
    })
}

fn to_text(cfg: &PubSubConfig, t: &Totals) -> String {
    use std::fmt::Write;
    let l = &cfg.layout;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nPUB/SUB: {} publishers, {} subscribers, {} channels, {} channels per subscriber, {}-byte messages",
        cfg.publishers, l.subscribers, l.channels, l.per_subscriber, cfg.data_size
    );
    let _ = writeln!(
        out,
        "published  {:>12} messages in {:.2} s: {:.0} msgs/s",
        t.published,
        t.publish_s,
        per_sec(t.published, t.publish_s)
    );
    let _ = writeln!(
        out,
        "delivered  {:>12} of {} expected in {:.2} s: {:.0} msgs/s",
        t.received,
        t.promised,
        t.deliver_s,
        per_sec(t.received, t.deliver_s)
    );
    let p = |q: f64| t.latency.value_at_percentile(q) as f64 / 1e6;
    let _ = writeln!(
        out,
        "latency ms  avg {:.3}  p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        t.latency.mean() / 1e6,
        p(50.0),
        p(99.0),
        p(99.9),
        t.latency.max() as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "lost {}, reordered or duplicated {}, misrouted {}, malformed {}, connection errors {}{}",
        t.lost,
        t.late,
        t.misrouted,
        t.malformed,
        t.connection_errors,
        if t.ok() { "" } else { "  FAILED" }
    );
    if t.receivers_mismatch > 0 {
        let _ = writeln!(
            out,
            "{} PUBLISH replies counted other than the channel's subscribers",
            t.receivers_mismatch
        );
    }
    if let Some(e) = &t.first_error {
        let _ = writeln!(out, "first error: {e}");
    }
    if let Some(s) = t.server_cpu_s {
        let per = per_million(s, t.received).unwrap_or(0.0);
        let _ = writeln!(out, "server CPU: {s:.2} s ({per:.3} s per 1M delivered)");
    }
    let per = per_million(t.client_cpu_s, t.received).unwrap_or(0.0);
    let _ = writeln!(
        out,
        "load generator CPU: {:.2} s ({per:.3} s per 1M delivered)",
        t.client_cpu_s
    );
    out
}
