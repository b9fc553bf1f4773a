//! The Prometheus endpoint: an HTTP/1.1 listener of its own (`metrics-port`; the RESP port
//! keeps refusing HTTP) serving the text exposition format, version 0.0.4, encoded by the
//! `prometheus` crate.
//!
//! Recording costs nothing shared: every counter lives in its core's own `CoreStats`, shard
//! and latency histograms. A scrape gathers one snapshot per core by message (the same as
//! INFO) on core 0, which serves the endpoint; nothing is computed between scrapes.
//!
//! Names follow redis_exporter where it has a counterpart (`redis_commands_total{cmd}`,
//! `redis_db_keys{db}`, ...), so existing dashboards and alerts work; what a sharded server
//! adds is under `percore_` (per-shard keys, memory, commands, queue depth, cross-shard
//! batches and their sizes, per-command latency histograms).
//!
//! The text format wants each family written once: one `# HELP`, one `# TYPE`, then all its
//! samples together (Prometheus's parser refuses a second HELP line for a name). `Families`
//! keeps that invariant whatever order `render` adds samples in: a sample joins its family
//! wherever it stands, so per-database, per-event or per-shard loops may visit families in
//! any order. (Relying on each loop to keep a family's samples adjacent was the rejected
//! alternative: the per-database loop once wrote three families per database, and the
//! exposition broke as soon as two databases held keys.)
//!
//! Bounds: at most 16 scrapes at once (16 more are read and refused with 503, any beyond are
//! closed), requests of at most 8 KiB, 5 s to send the request; the connection closes after
//! one response.

use crate::commands::{PERCORE_VERSION, REDIS_VERSION};
use crate::core::{Core, BATCH_SIZE_BUCKETS};
use crate::info::{gather, Gathered};
use crate::runtime::{self, Listener, Stream};
use percore_proto::command::{COMMANDS, SUBCOMMANDS};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

const MAX_SCRAPES: usize = 16;
const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Accepts scrapes until the process ends.
pub async fn serve(core: Rc<Core>, listener: Listener) {
    // Connections being served, and connections being refused (whose request is still read,
    // so that closing does not reset the connection before the 503 arrives). Past both
    // bounds a connection is closed at once.
    let active = Rc::new(Cell::new(0usize));
    let refusing = Rc::new(Cell::new(0usize));
    let https = core.config.borrow().tls.metrics;
    loop {
        let mut stream = listener.next().await;
        if https && !crate::tls::start(&mut stream) {
            continue;
        }
        let (core, active, refusing) = (core.clone(), active.clone(), refusing.clone());
        runtime::spawn(async move {
            if active.get() >= MAX_SCRAPES {
                if refusing.get() >= MAX_SCRAPES {
                    return;
                }
                refusing.set(refusing.get() + 1);
                let _ = read_head(&mut stream).await;
                respond(
                    stream,
                    "503 Service Unavailable",
                    "text/plain",
                    b"too many concurrent scrapes\n",
                )
                .await;
                refusing.set(refusing.get() - 1);
                return;
            }
            active.set(active.get() + 1);
            handle(&core, stream).await;
            active.set(active.get() - 1);
        });
    }
}

/// Reads one request head; None if it is malformed, too large or too slow.
async fn read_head(stream: &mut Stream) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let read = async {
        loop {
            let n = stream.read(&mut buf[len..]).await.ok()?;
            if n == 0 {
                return None;
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(());
            }
            if len == buf.len() {
                return None;
            }
        }
    };
    let timeout = async {
        runtime::sleep(REQUEST_TIMEOUT).await;
        None
    };
    futures_lite::future::or(read, timeout).await?;
    buf.truncate(len);
    Some(buf)
}

async fn handle(core: &Rc<Core>, mut stream: Stream) {
    let Some(head) = read_head(&mut stream).await else {
        respond(stream, "400 Bad Request", "text/plain", b"bad request\n").await;
        return;
    };
    let line = head.split(|&c| c == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&c| c == b' ');
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = target.split(|&c| c == b'?').next().unwrap_or_default();
    let head_only = method == b"HEAD";
    if method != b"GET" && !head_only {
        respond(stream, "405 Method Not Allowed", "text/plain", b"use GET\n").await;
        return;
    }
    match path {
        b"/metrics" => {
            let body = render(&gather(core).await);
            let body = if head_only {
                Vec::new()
            } else {
                body.into_bytes()
            };
            respond(stream, "200 OK", CONTENT_TYPE, &body).await;
        }
        b"/" => {
            respond(
                stream,
                "200 OK",
                "text/plain",
                b"percore: metrics at /metrics\n",
            )
            .await;
        }
        _ => {
            respond(
                stream,
                "404 Not Found",
                "text/plain",
                b"not found: try /metrics\n",
            )
            .await
        }
    }
}

async fn respond(mut stream: Stream, status: &str, content_type: &str, body: &[u8]) {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    let _ = stream.write_all(&out).await;
}

/// Families under construction, in the order of their first sample, each holding all its
/// samples in the order they were added; `index` finds a family by name. Scrape path only:
/// a few allocations per sample, nothing on the command path.
#[derive(Default)]
struct Families {
    list: Vec<MetricFamily>,
    index: HashMap<&'static str, usize>,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

impl Families {
    /// The family `name`, created on first use. Its help and type are fixed then: every
    /// later sample of `name` must bring the same (one family, one declaration).
    fn family(&mut self, name: &'static str, help: &str, ty: MetricType) -> &mut MetricFamily {
        let Families { list, index } = self;
        let i = *index.entry(name).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(name.to_string());
            f.set_help(help.to_string());
            f.set_field_type(ty);
            list.push(f);
            list.len() - 1
        });
        let f = &mut list[i];
        debug_assert!(
            f.get_help() == help && f.get_field_type() == ty,
            "{name}: two declarations for one family"
        );
        f
    }

    /// Adds one sample, labelled `pairs`, whose value `fill` sets.
    fn sample(
        &mut self,
        name: &'static str,
        help: &str,
        ty: MetricType,
        pairs: &[(&str, &str)],
        fill: impl FnOnce(&mut Metric),
    ) {
        let mut m = Metric::default();
        m.set_label(labels(pairs).into());
        fill(&mut m);
        self.family(name, help, ty).mut_metric().push(m);
    }

    fn gauge(&mut self, name: &'static str, help: &str, pairs: &[(&str, &str)], v: f64) {
        self.sample(name, help, MetricType::GAUGE, pairs, |m| {
            let mut g = Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        });
    }

    fn counter(&mut self, name: &'static str, help: &str, pairs: &[(&str, &str)], v: f64) {
        self.sample(name, help, MetricType::COUNTER, pairs, |m| {
            let mut c = Counter::default();
            c.set_value(v);
            m.set_counter(c);
        });
    }

    /// `buckets`: (upper bound, cumulative count), ascending.
    fn histogram(
        &mut self,
        name: &'static str,
        help: &str,
        pairs: &[(&str, &str)],
        buckets: &[(f64, u64)],
        count: u64,
        sum: f64,
    ) {
        let mut h = Histogram::default();
        for &(le, n) in buckets {
            let mut b = Bucket::default();
            b.set_upper_bound(le);
            b.set_cumulative_count(n);
            h.mut_bucket().push(b);
        }
        h.set_sample_count(count);
        h.set_sample_sum(sum);
        self.sample(name, help, MetricType::HISTOGRAM, pairs, |m| {
            m.set_histogram(h)
        });
    }

    /// The text exposition: each family once, its samples together.
    fn encode(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.list, &mut out)
            .expect("metric names and labels are static and valid");
        String::from_utf8(out).expect("the text encoder writes UTF-8")
    }
}

/// Latency histogram buckets: 2^k ns for k = 10..=33 (1 µs to 8.6 s), exact edges of the
/// per-command histograms.
const LATENCY_POW2: std::ops::RangeInclusive<u32> = 10..=33;

/// The whole exposition for one gathered state.
pub fn render(g: &Gathered) -> String {
    let mut f = Families::default();
    let gl = &g.global;
    f.gauge(
        "redis_up",
        "Whether the server is up (always 1 when the scrape answers).",
        &[],
        1.0,
    );
    let port = gl.port.to_string();
    let pid = std::process::id().to_string();
    let shards = gl.nshards.to_string();
    let link = crate::repl::replica::link(gl);
    f.gauge(
        "redis_instance_info",
        "Information about the server, as labels.",
        &[
            ("redis_version", REDIS_VERSION),
            ("redis_mode", "standalone"),
            ("os", std::env::consts::OS),
            ("role", if link.is_some() { "slave" } else { "master" }),
            ("run_id", &gl.run_id),
            ("tcp_port", &port),
            ("process_id", &pid),
            ("percore_version", PERCORE_VERSION),
            ("shards", &shards),
        ],
        1.0,
    );
    let (sys, user) = crate::info::cpu_times();
    let start_s = (gl.started_unix_ms / 1000) as f64;
    let last_save_s = (gl.last_save_ms.load(std::sync::atomic::Ordering::Relaxed) / 1000) as f64;
    let mut repl = gl.repl.status();
    if let Some(l) = &link {
        repl.offset = l.offset.max(0) as u64;
    }
    // (name, help, counter or gauge, value), one row per line.
    #[rustfmt::skip]
    let scalars: [(&str, &str, bool, f64); 33] = [
        ("redis_uptime_in_seconds", "Seconds since the server started.", false, gl.started.elapsed().as_secs() as f64),
        ("redis_start_time_seconds", "Start time, Unix seconds.", false, start_s),
        ("redis_connected_clients", "Connected clients.", false, g.connected_clients() as f64),
        ("redis_connected_slaves", "Replicas connected.", false, repl.replicas.len() as f64),
        ("redis_master_repl_offset", "Bytes of replication stream produced (master_repl_offset).", false, repl.offset as f64),
        ("redis_blocked_clients", "Clients blocked in a blocking command.", false, gl.blocked_clients.load(std::sync::atomic::Ordering::Relaxed) as f64),
        ("redis_config_maxclients", "The maxclients setting.", false, g.config.maxclients as f64),
        ("redis_memory_used_bytes", "Bytes allocated by the server (used_memory).", false, g.used_memory as f64),
        ("redis_memory_used_rss_bytes", "Resident set size of the process.", false, g.rss as f64),
        ("redis_memory_max_bytes", "The maxmemory setting (0: no limit).", false, g.config.maxmemory as f64),
        ("redis_connections_received_total", "Connections accepted.", true, g.sum(|s| s.stats.connections_received) as f64),
        ("redis_rejected_connections_total", "Connections refused (maxclients).", true, g.rejected_connections as f64),
        ("redis_commands_processed_total", "Commands executed.", true, g.sum(|s| s.stats.commands_processed) as f64),
        ("redis_net_input_bytes_total", "Bytes read from clients.", true, g.sum(|s| s.stats.net_input_bytes) as f64),
        ("redis_net_output_bytes_total", "Bytes written to clients.", true, g.sum(|s| s.stats.net_output_bytes) as f64),
        ("redis_keyspace_hits_total", "Key lookups that found the key.", true, g.sum(|s| s.shard.keyspace_hits) as f64),
        ("redis_keyspace_misses_total", "Key lookups that did not.", true, g.sum(|s| s.shard.keyspace_misses) as f64),
        ("redis_expired_keys_total", "Keys removed because their time to live ended.", true, g.sum(|s| s.shard.expired_keys) as f64),
        ("redis_evicted_keys_total", "Keys evicted to stay under maxmemory.", true, g.sum(|s| s.shard.evicted_keys) as f64),
        ("redis_pubsub_channels", "Channels with at least one subscriber.", false, g.pubsub_channels() as f64),
        ("redis_pubsub_patterns", "Patterns with at least one subscriber.", false, g.pubsub_patterns() as f64),
        ("redis_pubsubshard_channels", "Shard channels with at least one subscriber.", false, g.pubsub_shard_channels() as f64),
        ("redis_tracking_clients", "Clients with CLIENT TRACKING on.", false, gl.tracking_clients.load(std::sync::atomic::Ordering::Relaxed) as f64),
        ("redis_tracking_total_keys", "Keys remembered for client-side caching.", false, g.sum(|s| s.tracking.0 as u64) as f64),
        ("redis_tracking_total_items", "Client references in the tracking table.", false, g.sum(|s| s.tracking.1 as u64) as f64),
        ("redis_tracking_total_prefixes", "BCAST prefixes registered.", false, g.snaps.iter().map(|s| s.tracking.2).max().unwrap_or(0) as f64),
        ("redis_client_output_buffer_limit_disconnections_total", "Clients disconnected for their output buffer limit.", true, g.sum(|s| s.stats.output_limit_disconnections) as f64),
        ("redis_rdb_last_save_timestamp_seconds", "Time of the last successful snapshot (the start time until one is made), Unix seconds.", false, last_save_s),
        ("redis_rdb_changes_since_last_save", "Writes since the last snapshot.", false, g.sum(|s| s.shard.dirty).saturating_sub(gl.dirty_at_save.load(std::sync::atomic::Ordering::Relaxed)) as f64),
        ("redis_cpu_sys_seconds_total", "System CPU time of the process.", true, sys),
        ("redis_cpu_user_seconds_total", "User CPU time of the process.", true, user),
        ("redis_slowlog_length", "Entries in the slow log.", false, g.slowlog_len as f64),
        ("redis_slowlog_last_id", "Id of the newest slow log entry.", false, g.slowlog_last_id as f64),
    ];
    for (name, help, counter, v) in scalars {
        if counter {
            f.counter(name, help, &[], v);
        } else {
            f.gauge(name, help, &[], v);
        }
    }
    // A replica's link, as the Redis exporter reports it.
    if let Some(l) = &link {
        let up = l.state == crate::repl::replica::State::Connected;
        let port = l.port.to_string();
        let ro = u8::from(g.config.replica_read_only).to_string();
        f.gauge(
            "redis_slave_info",
            "The replica's primary, as labels.",
            &[
                ("master_host", &l.host),
                ("master_port", &port),
                ("read_only", &ro),
            ],
            1.0,
        );
        f.gauge(
            "redis_master_link_up",
            "Whether the link to the primary is up.",
            &[],
            f64::from(u8::from(up)),
        );
        let io = crate::core::now_ms().saturating_sub(l.last_io_ms) / 1000;
        f.gauge(
            "redis_master_last_io_seconds_ago",
            "Seconds since the primary last sent anything.",
            &[],
            if up { io as f64 } else { -1.0 },
        );
        f.gauge(
            "redis_master_sync_in_progress",
            "Whether a full sync is in progress.",
            &[],
            f64::from(u8::from(l.state == crate::repl::replica::State::Sync)),
        );
        f.gauge(
            "redis_slave_repl_offset",
            "The replication offset applied (slave_repl_offset).",
            &[],
            l.offset.max(0) as f64,
        );
    }
    for (db, keys, expires, avg_ttl_ms) in g.keyspace() {
        let db = format!("db{db}");
        f.gauge(
            "redis_db_keys",
            "Keys per database.",
            &[("db", &db)],
            keys as f64,
        );
        f.gauge(
            "redis_db_keys_expiring",
            "Keys with a time to live, per database.",
            &[("db", &db)],
            expires as f64,
        );
        f.gauge(
            "redis_db_avg_ttl_seconds",
            "Average time to live of expiring keys.",
            &[("db", &db)],
            avg_ttl_ms as f64 / 1000.0,
        );
    }
    let cmds = g.commands();
    type CmdValue = fn(&crate::core::CmdStat) -> f64;
    let per_command: [(&str, &str, CmdValue); 4] = [
        ("redis_commands_total", "Calls per command.", |c| {
            c.calls as f64
        }),
        (
            "redis_commands_duration_seconds_total",
            "Execution time per command.",
            |c| c.nsec as f64 / 1e9,
        ),
        (
            "redis_commands_failed_calls_total",
            "Calls that replied with an error.",
            |c| c.failed as f64,
        ),
        (
            "redis_commands_rejected_calls_total",
            "Calls refused before execution (arity, auth).",
            |c| c.rejected as f64,
        ),
    ];
    for (metric, help, value) in per_command {
        for spec in COMMANDS.iter().chain(SUBCOMMANDS.iter()) {
            let c = &cmds[spec.cmd as usize];
            if c.calls > 0 || c.rejected > 0 {
                f.counter(
                    metric,
                    help,
                    &[("cmd", &spec.name.replace('|', "_"))],
                    value(c),
                );
            }
        }
    }
    let mut errors: Vec<_> = g.errors().into_iter().collect();
    errors.sort();
    for (code, n) in &errors {
        f.counter(
            "redis_errors_total",
            "Error replies by error code.",
            &[("err", code)],
            *n as f64,
        );
    }
    for (event, series) in &g.latency.events {
        if let Some(&(t, ms)) = series.samples.back() {
            f.gauge(
                "redis_latency_spike_last",
                "Time of the latest latency spike per event, Unix seconds.",
                &[("event_name", event)],
                t as f64,
            );
            f.gauge(
                "redis_latency_spike_duration_seconds",
                "Length of the latest latency spike per event.",
                &[("event_name", event)],
                ms as f64 / 1000.0,
            );
        }
    }

    f.gauge(
        "percore_shards",
        "Shards (one executor each).",
        &[],
        gl.nshards as f64,
    );
    type ShardValue = fn(&crate::info::CoreSnapshot) -> u64;
    #[rustfmt::skip]
    let per_shard: [(&str, &str, bool, ShardValue); 11] = [
        ("percore_shard_keys", "Keys held by the shard, all databases.", false, |s| s.dbs.iter().map(|d| d.0 as u64).sum()),
        ("percore_shard_memory_used_bytes", "Bytes allocated minus freed by the shard's thread (drifts when memory crosses cores; redis_memory_used_bytes is the exact total).", false, |s| s.allocated.max(0) as u64),
        ("percore_shard_connected_clients", "Clients whose connection the shard's core serves.", false, |s| s.conns as u64),
        ("percore_shard_mailbox_depth", "Messages waiting in the shard's inbox.", false, |s| s.mailbox_depth as u64),
        ("percore_shard_pubsub_channels", "Channels the shard's clients subscribe to.", false, |s| s.pubsub.channels.len() as u64),
        ("percore_shard_pubsub_patterns", "Patterns the shard's clients subscribe to.", false, |s| s.pubsub.patterns.len() as u64),
        ("percore_shard_commands_processed_total", "Commands executed on the shard.", true, |s| s.stats.commands_processed),
        ("percore_shard_keyspace_hits_total", "Key lookups on the shard that found the key.", true, |s| s.shard.keyspace_hits),
        ("percore_shard_keyspace_misses_total", "Key lookups on the shard that did not.", true, |s| s.shard.keyspace_misses),
        ("percore_cross_shard_batches_total", "Batches this shard's connections sent to other shards.", true, |s| s.stats.batches_sent),
        ("percore_cross_shard_commands_total", "Commands in those batches.", true, |s| s.stats.batched_commands_sent),
    ];
    for (name, help, counter, value) in per_shard {
        for (i, s) in g.snaps.iter().enumerate() {
            let shard = i.to_string();
            if counter {
                f.counter(name, help, &[("shard", &shard)], value(s) as f64);
            } else {
                f.gauge(name, help, &[("shard", &shard)], value(s) as f64);
            }
        }
    }
    for (i, s) in g.snaps.iter().enumerate() {
        let shard = i.to_string();
        let mut cum = 0;
        let buckets: Vec<(f64, u64)> = BATCH_SIZE_BUCKETS
            .iter()
            .zip(&s.stats.batch_sizes)
            .map(|(&le, &n)| {
                cum += n;
                (le as f64, cum)
            })
            .collect();
        f.histogram(
            "percore_cross_shard_batch_size",
            "Commands per cross-shard batch, by sending shard.",
            &[("shard", &shard)],
            &buckets,
            s.stats.batches_sent,
            s.stats.batched_commands_sent as f64,
        );
    }
    let lat = g.latency_histograms();
    for spec in COMMANDS.iter().chain(SUBCOMMANDS.iter()) {
        let Some(h) = &lat[spec.cmd as usize] else {
            continue;
        };
        let buckets: Vec<(f64, u64)> = LATENCY_POW2
            .map(|k| ((1u64 << k) as f64 / 1e9, h.count_below_pow2(k)))
            .collect();
        let name = spec.name.replace('|', "_");
        f.histogram(
            "percore_command_duration_seconds",
            "Execution time per command (on the shard that ran it).",
            &[("cmd", &name)],
            &buckets,
            h.count,
            h.sum_ns as f64 / 1e9,
        );
    }
    f.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_samples_make_one_family_each() {
        let mut f = Families::default();
        for db in ["db0", "db3", "db15"] {
            f.gauge("keys", "Keys.", &[("db", db)], 1.0);
            f.counter("hits_total", "Hits.", &[("db", db)], 2.0);
            f.histogram("size", "Size.", &[("db", db)], &[(1.0, 3)], 3, 0.5);
        }
        assert_eq!(
            f.encode(),
            concat!(
                "# HELP keys Keys.\n",
                "# TYPE keys gauge\n",
                "keys{db=\"db0\"} 1\n",
                "keys{db=\"db3\"} 1\n",
                "keys{db=\"db15\"} 1\n",
                "# HELP hits_total Hits.\n",
                "# TYPE hits_total counter\n",
                "hits_total{db=\"db0\"} 2\n",
                "hits_total{db=\"db3\"} 2\n",
                "hits_total{db=\"db15\"} 2\n",
                "# HELP size Size.\n",
                "# TYPE size histogram\n",
                "size_bucket{db=\"db0\",le=\"1\"} 3\n",
                "size_bucket{db=\"db0\",le=\"+Inf\"} 3\n",
                "size_sum{db=\"db0\"} 0.5\n",
                "size_count{db=\"db0\"} 3\n",
                "size_bucket{db=\"db3\",le=\"1\"} 3\n",
                "size_bucket{db=\"db3\",le=\"+Inf\"} 3\n",
                "size_sum{db=\"db3\"} 0.5\n",
                "size_count{db=\"db3\"} 3\n",
                "size_bucket{db=\"db15\",le=\"1\"} 3\n",
                "size_bucket{db=\"db15\",le=\"+Inf\"} 3\n",
                "size_sum{db=\"db15\"} 0.5\n",
                "size_count{db=\"db15\"} 3\n",
            )
        );
    }
}
