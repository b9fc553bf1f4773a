//! INFO: Redis's sections and field names (tools such as redis_exporter and redis-cli parse
//! them), summed over cores, plus a `# Shards` section with each shard's share.

use crate::client::Client;
use crate::commands::{PERCORE_VERSION, REDIS_VERSION};
use crate::config::Config;
use crate::core::{call_all, now_ms, now_us, CmdStat, Core, Global};
use crate::latency::{LatencyHist, LatencyMonitor};
use percore_proto::command::{COMMANDS, SUBCOMMANDS};
use percore_proto::Args;
use percore_shard::{Stats, DB_COUNT};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One core's figures, gathered on that core.
pub struct CoreSnapshot {
    pub shard: Stats,
    /// (keys, expires, avg_ttl_ms) per database.
    pub dbs: Vec<(usize, usize, u64)>,
    pub conns: usize,
    pub stats: crate::core::CoreStats,
    pub allocated: i64,
    pub lazyfree_pending: usize,
    /// Bytes of the shard's tables besides keys and values (buckets and nodes).
    pub table_bytes: u64,
    pub mailbox_depth: usize,
    pub slowlog_len: usize,
    pub slowlog_last_id: Option<u64>,
    pub latency: LatencyMonitor,
    /// The core's network ring counters.
    pub ring: crate::runtime::NetStats,
    /// Times the main thread woke this core because its background tick was overdue.
    pub rescues: u64,
    pub pubsub: crate::pubsub::Summary,
    /// CLIENT TRACKING: keys remembered, client references, BCAST prefixes.
    pub tracking: (usize, usize, usize),
}

fn snapshot(c: &Core) -> CoreSnapshot {
    let sh = c.shard.borrow();
    let slowlog = c.slowlog.borrow();
    CoreSnapshot {
        shard: sh.stats,
        dbs: sh
            .dbs
            .iter()
            .map(|d| (d.dict.len(), d.expires_count, d.avg_ttl_ms()))
            .collect(),
        conns: c.clients.borrow().len(),
        stats: c.stats.borrow().clone(),
        allocated: crate::alloc::thread_allocated(),
        lazyfree_pending: sh.lazyfree_pending(),
        table_bytes: sh
            .dbs
            .iter()
            .map(|d| {
                use percore_shard::dict::{BUCKET_BYTES, NODE_HEADER_BYTES};
                (d.dict.buckets() * BUCKET_BYTES + d.dict.len() * NODE_HEADER_BYTES) as u64
            })
            .sum(),
        mailbox_depth: c.mailbox.depth(c.id),
        slowlog_len: slowlog.entries.len(),
        slowlog_last_id: slowlog.entries.front().map(|e| e.id),
        latency: c.latency.borrow().clone(),
        ring: crate::runtime::net_stats(),
        rescues: crate::runtime::rescue_kicks(),
        pubsub: crate::pubsub::summary(c),
        tracking: crate::tracking::shard_figures(c),
    }
}

/// Every core's snapshot plus the process-wide figures: what INFO and a metrics scrape read.
pub struct Gathered {
    pub snaps: Vec<CoreSnapshot>,
    pub global: Arc<Global>,
    pub config: Arc<Config>,
    pub rss: u64,
    /// Bytes allocated by the whole process (every thread, not only the cores).
    pub used_memory: u64,
    pub peak: u64,
    pub rejected_connections: u64,
    pub slowlog_len: usize,
    pub slowlog_last_id: u64,
    pub latency: LatencyMonitor,
}

/// Takes one snapshot on every core (one message each) and the process-wide figures.
pub async fn gather(core: &Rc<Core>) -> Gathered {
    let snaps = call_all(core, snapshot).await;
    let mut latency = LatencyMonitor::default();
    for s in &snaps {
        latency.merge(&s.latency);
    }
    Gathered {
        slowlog_len: snaps.iter().map(|s| s.slowlog_len).sum(),
        slowlog_last_id: snaps
            .iter()
            .filter_map(|s| s.slowlog_last_id)
            .max()
            .unwrap_or(0),
        latency,
        snaps,
        global: core.global.clone(),
        config: core.config.borrow().clone(),
        rss: rss_bytes(),
        used_memory: crate::alloc::total_allocated().max(0) as u64,
        peak: crate::alloc::peak_allocated().max(0) as u64,
        rejected_connections: core.global.rejected_connections.load(Ordering::Relaxed),
    }
}

impl Gathered {
    pub fn sum(&self, f: impl Fn(&CoreSnapshot) -> u64) -> u64 {
        self.snaps.iter().map(f).sum()
    }

    /// Distinct channels, patterns and shard channels subscribed to on any core.
    pub fn pubsub_channels(&self) -> usize {
        crate::pubsub::distinct(
            self.snaps
                .iter()
                .flat_map(|s| s.pubsub.channels.iter().copied()),
        )
    }

    pub fn pubsub_patterns(&self) -> usize {
        crate::pubsub::distinct(
            self.snaps
                .iter()
                .flat_map(|s| s.pubsub.patterns.iter().copied()),
        )
    }

    pub fn pubsub_shard_channels(&self) -> usize {
        crate::pubsub::distinct(
            self.snaps
                .iter()
                .flat_map(|s| s.pubsub.shard_channels.iter().copied()),
        )
    }

    pub fn connected_clients(&self) -> usize {
        self.snaps.iter().map(|s| s.conns).sum()
    }

    /// (db, keys, expires, avg_ttl_ms) of every database holding keys.
    pub fn keyspace(&self) -> Vec<(usize, usize, usize, u64)> {
        let mut out = Vec::new();
        for db in 0..DB_COUNT {
            let keys: usize = self.snaps.iter().map(|s| s.dbs[db].0).sum();
            let expires: usize = self.snaps.iter().map(|s| s.dbs[db].1).sum();
            let ttls: Vec<u64> = self
                .snaps
                .iter()
                .map(|s| s.dbs[db].2)
                .filter(|&t| t > 0)
                .collect();
            let avg = if ttls.is_empty() {
                0
            } else {
                ttls.iter().sum::<u64>() / ttls.len() as u64
            };
            if keys > 0 {
                out.push((db, keys, expires, avg));
            }
        }
        out
    }

    /// Bytes allocated when the server became ready (Redis's `used_memory_startup`).
    pub fn startup(&self) -> u64 {
        self.global.startup_allocated.load(Ordering::Relaxed)
    }

    /// What is not the dataset: start-up memory plus the tables' own structures.
    pub fn overhead(&self) -> u64 {
        self.startup() + self.sum(|s| s.table_bytes)
    }

    /// `used_memory` minus the overhead: keys and values (Redis's `used_memory_dataset`).
    pub fn dataset(&self) -> u64 {
        self.used_memory.saturating_sub(self.overhead())
    }

    pub fn keys(&self) -> u64 {
        self.snaps
            .iter()
            .map(|s| s.dbs.iter().map(|d| d.0 as u64).sum::<u64>())
            .sum()
    }

    /// Per-command counters summed over cores, indexed by `Cmd`.
    pub fn commands(&self) -> Vec<CmdStat> {
        let mut cmd = vec![CmdStat::default(); percore_proto::CMD_COUNT];
        for s in &self.snaps {
            for (i, c) in s.stats.cmd.iter().enumerate() {
                cmd[i].calls += c.calls;
                cmd[i].nsec += c.nsec;
                cmd[i].failed += c.failed;
                cmd[i].rejected += c.rejected;
            }
        }
        cmd
    }

    /// Error replies by code, summed over cores.
    pub fn errors(&self) -> HashMap<String, u64> {
        let mut errors = HashMap::new();
        for s in &self.snaps {
            for (k, v) in &s.stats.errors {
                *errors.entry(k.clone()).or_insert(0) += v;
            }
        }
        errors
    }

    /// Per-command latency histograms merged over cores, indexed by `Cmd`.
    pub fn latency_histograms(&self) -> Vec<Option<LatencyHist>> {
        let mut out: Vec<Option<LatencyHist>> = vec![None; percore_proto::CMD_COUNT];
        for s in &self.snaps {
            for (i, h) in s.stats.latency.iter().enumerate() {
                if let Some(h) = h {
                    out[i].get_or_insert_with(LatencyHist::default).merge(h);
                }
            }
        }
        out
    }
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes}B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2}G", b / 1024.0 / 1024.0 / 1024.0)
    }
}

pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn total_memory() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    m.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

pub fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF is always valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_stime), t(ru.ru_utime))
}

const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
    "shards",
];
const ALL_EXTRA: &[&str] = &["commandstats", "latencystats"];

pub async fn render(conn: &mut Client, a: Args<'_>) -> String {
    let mut wanted: Vec<String> = Vec::new();
    for s in a.iter().skip(1) {
        let s = String::from_utf8_lossy(s).to_lowercase();
        match s.as_str() {
            "default" => wanted.extend(DEFAULT_SECTIONS.iter().map(|x| x.to_string())),
            "all" | "everything" => {
                wanted.extend(DEFAULT_SECTIONS.iter().map(|x| x.to_string()));
                wanted.extend(ALL_EXTRA.iter().map(|x| x.to_string()));
            }
            _ => wanted.push(s),
        }
    }
    if wanted.is_empty() {
        wanted = DEFAULT_SECTIONS.iter().map(|x| x.to_string()).collect();
    }
    let want = |s: &str| wanted.iter().any(|w| w == s);
    let gathered = gather(&conn.core).await;
    let snaps = &gathered.snaps;
    let g = gathered.global.clone();
    let cfg = gathered.config.clone();
    let mut out = String::new();
    let mut section = |name: &str, body: String| {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let _ = write!(out, "# {name}\r\n{body}");
    };
    let sum = |f: &dyn Fn(&CoreSnapshot) -> u64| gathered.sum(f);
    let uptime = g.started.elapsed().as_secs();
    let cmd = gathered.commands();
    let errors = gathered.errors();
    if want("server") {
        section(
            "Server",
            format!(
                "redis_version:{REDIS_VERSION}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:io_uring\r\nprocess_id:{}\r\nprocess_supervised:no\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:{}\r\nconfigured_hz:{}\r\nlru_clock:{}\r\nexecutable:{}\r\nconfig_file:{}\r\nio_threads_active:0\r\npercore_version:{PERCORE_VERSION}\r\nshards:{}\r\n",
                std::env::consts::OS,
                std::process::id(),
                g.run_id,
                g.port,
                now_us(),
                uptime / 86400,
                cfg.hz,
                cfg.hz,
                (now_ms() / 1000) & ((1 << 24) - 1),
                g.executable,
                cfg.config_file.clone().unwrap_or_default(),
                g.nshards,
            ),
        );
    }
    if want("clients") {
        section(
            "Clients",
            format!(
                "connected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nclient_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:{}\r\ntracking_clients:{}\r\nclients_in_timeout_table:0\r\n",
                gathered.connected_clients(),
                cfg.maxclients,
                g.blocked_clients.load(Ordering::Relaxed),
                g.tracking_clients.load(Ordering::Relaxed),
            ),
        );
    }
    let used = gathered.used_memory;
    if want("memory") {
        let rss = gathered.rss;
        let peak = gathered.peak;
        let total = total_memory();
        let scripts = crate::scripting::cache_stats();
        let functions = crate::functions::counts();
        section(
            "Memory",
            format!(
                "used_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\nused_memory_startup:{}\r\nused_memory_dataset:{}\r\ntotal_system_memory:{total}\r\ntotal_system_memory_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_allocator:{}\r\nlazyfree_pending_objects:{}\r\nused_memory_scripts_eval:{}\r\nnumber_of_cached_scripts:{}\r\nnumber_of_functions:{}\r\nnumber_of_libraries:{}\r\n",
                human(used),
                human(rss),
                human(peak),
                gathered.startup(),
                gathered.dataset(),
                human(total),
                cfg.maxmemory,
                human(cfg.maxmemory),
                cfg.evict.policy.name(),
                if used > 0 { rss as f64 / used as f64 } else { 0.0 },
                crate::alloc::name(),
                snaps.iter().map(|s| s.lazyfree_pending).sum::<usize>(),
                scripts.0,
                scripts.1,
                functions.1,
                functions.0,
            ),
        );
    }
    if want("persistence") {
        let loading = g.repl.loading();
        section(
            "Persistence",
            format!(
                "loading:{}\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\nrdb_current_bgsave_time_sec:{}\r\naof_enabled:0\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\naof_last_bgrewrite_status:ok\r\naof_last_write_status:ok\r\n{}",
                loading as u8,
                sum(&|s| s.shard.dirty)
                    .saturating_sub(g.dirty_at_save.load(Ordering::Relaxed)),
                (g.bgsave_started_ms.load(Ordering::Relaxed) != 0) as u8,
                g.last_save_ms.load(Ordering::Relaxed) / 1000,
                if g.last_save_ok.load(Ordering::Relaxed) { "ok" } else { "err" },
                g.last_bgsave_s.load(Ordering::Relaxed),
                match g.bgsave_started_ms.load(Ordering::Relaxed) {
                    0 => -1,
                    t => (crate::core::now_ms().saturating_sub(t) / 1000) as i64,
                },
                if loading { loading_fields(&g.repl.load) } else { String::new() },
            ),
        );
    }
    if want("stats") {
        let ops: u64 = snaps
            .iter()
            .map(|s| {
                let samples = &s.stats.ops_samples;
                let newest = samples[(s.stats.ops_sample_idx + 15) % 16];
                let oldest = samples[s.stats.ops_sample_idx % 16];
                if newest.0 > oldest.0 && oldest.0 > 0 {
                    (newest.1 - oldest.1) * 1000 / (newest.0 - oldest.0)
                } else {
                    0
                }
            })
            .sum();
        section(
            "Stats",
            format!(
                "total_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{ops}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\ninstantaneous_input_kbps:0.00\r\ninstantaneous_output_kbps:0.00\r\nrejected_connections:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\nexpired_keys:{}\r\nexpired_stale_perc:0.00\r\nexpired_time_cap_reached_count:0\r\nevicted_keys:{}\r\nevicted_clients:0\r\ntotal_eviction_exceeded_time:0\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\npubsubshard_channels:{}\r\nlatest_fork_usec:0\r\ntotal_forks:0\r\nmigrate_cached_sockets:{}\r\ntotal_active_defrag_time:0\r\ntracking_total_keys:{}\r\ntracking_total_items:{}\r\ntracking_total_prefixes:{}\r\ntotal_error_replies:{}\r\ndump_payload_sanitizations:0\r\ntotal_reads_processed:{}\r\ntotal_writes_processed:{}\r\nio_threaded_reads_processed:0\r\nio_threaded_writes_processed:0\r\nclient_output_buffer_limit_disconnections:{}\r\ncross_shard_batches:{}\r\ncross_shard_commands:{}\r\n",
                sum(&|s| s.stats.connections_received),
                sum(&|s| s.stats.commands_processed),
                sum(&|s| s.stats.net_input_bytes),
                sum(&|s| s.stats.net_output_bytes),
                gathered.rejected_connections,
                g.repl.sync_full.load(std::sync::atomic::Ordering::Relaxed),
                g.repl.sync_partial_ok.load(std::sync::atomic::Ordering::Relaxed),
                g.repl.sync_partial_err.load(std::sync::atomic::Ordering::Relaxed),
                sum(&|s| s.shard.expired_keys),
                sum(&|s| s.shard.evicted_keys),
                sum(&|s| s.shard.keyspace_hits),
                sum(&|s| s.shard.keyspace_misses),
                gathered.pubsub_channels(),
                gathered.pubsub_patterns(),
                gathered.pubsub_shard_channels(),
                crate::migrate::cached_sockets(),
                sum(&|s| s.tracking.0 as u64),
                sum(&|s| s.tracking.1 as u64),
                gathered.snaps.iter().map(|s| s.tracking.2).max().unwrap_or(0),
                sum(&|s| s.stats.error_replies),
                sum(&|s| s.stats.reads_processed),
                sum(&|s| s.stats.writes_processed),
                sum(&|s| s.stats.output_limit_disconnections),
                sum(&|s| s.stats.batches_sent),
                sum(&|s| s.stats.batched_commands_sent),
            ),
        );
    }
    if want("replication") {
        section("Replication", crate::repl::info(&g));
    }
    if want("cpu") {
        let (sys, user) = cpu_times();
        section(
            "CPU",
            format!("used_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n"),
        );
    }
    if want("modules") {
        section("Modules", String::new());
    }
    if want("errorstats") {
        let mut e: Vec<_> = errors.iter().collect();
        e.sort();
        section(
            "Errorstats",
            e.iter()
                .map(|(k, v)| format!("errorstat_{k}:count={v}\r\n"))
                .collect(),
        );
    }
    if want("cluster") {
        section(
            "Cluster",
            format!("cluster_enabled:{}\r\n", crate::cluster::enabled() as u8),
        );
    }
    if want("keyspace") {
        let mut body = String::new();
        for (db, keys, expires, avg) in gathered.keyspace() {
            let _ = write!(
                body,
                "db{db}:keys={keys},expires={expires},avg_ttl={avg}\r\n"
            );
        }
        section("Keyspace", body);
    }
    if want("commandstats") {
        let mut body = String::new();
        for spec in COMMANDS.iter().chain(SUBCOMMANDS.iter()) {
            let c = cmd[spec.cmd as usize];
            if c.calls > 0 || c.rejected > 0 {
                let usec = c.nsec / 1000;
                let per = if c.calls > 0 {
                    c.nsec as f64 / 1000.0 / c.calls as f64
                } else {
                    0.0
                };
                let _ = write!(
                    body,
                    "cmdstat_{}:calls={},usec={usec},usec_per_call={per:.2},rejected_calls={},failed_calls={}\r\n",
                    spec.name, c.calls, c.rejected, c.failed
                );
            }
        }
        section("Commandstats", body);
    }
    if want("latencystats") {
        // Redis's latency-tracking-info-percentiles default: 50 99 99.9, in microseconds.
        let lat = gathered.latency_histograms();
        let mut body = String::new();
        for spec in COMMANDS.iter().chain(SUBCOMMANDS.iter()) {
            if let Some(h) = &lat[spec.cmd as usize] {
                let p = |q: f64| h.percentile_ns(q) as f64 / 1000.0;
                let _ = write!(
                    body,
                    "latency_percentiles_usec_{}:p50={:.3},p99={:.3},p99.9={:.3}\r\n",
                    spec.name,
                    p(50.0),
                    p(99.0),
                    p(99.9)
                );
            }
        }
        section("Latencystats", body);
    }
    if want("shards") {
        let mut body = String::new();
        for (i, s) in snaps.iter().enumerate() {
            let keys: usize = s.dbs.iter().map(|d| d.0).sum();
            let _ = write!(
                body,
                "shard{i}:keys={keys},commands={},connections={},batches_sent={},batched_commands={},mailbox_depth={},used_memory={},ring_enters={},ring_completions={},ring_sleeps={},ring_glommio_waits={},ring_bells={},ring_enobufs={},ring_paused_reads={},ring_direct_descriptors={},ring_zerocopy_copied={},rescues={}\r\n",
                s.stats.commands_processed,
                s.conns,
                s.stats.batches_sent,
                s.stats.batched_commands_sent,
                s.mailbox_depth,
                s.allocated.max(0),
                s.ring.enters,
                s.ring.completions,
                s.ring.sleeps,
                s.ring.parks,
                s.ring.bells,
                s.ring.enobufs,
                s.ring.pauses,
                s.ring.direct,
                s.ring.zc_copied,
                s.rescues,
            );
        }
        section("Shards", body);
    }
    out
}

/// INFO persistence's fields while a full sync's payload loads, as Redis 7.0 writes them.
fn loading_fields(p: &crate::repl::LoadProgress) -> String {
    let started = p.started_ms.load(Ordering::Relaxed);
    let total = p.total_bytes.load(Ordering::Relaxed);
    let loaded = p.loaded_bytes.load(Ordering::Relaxed).min(total);
    let elapsed_s = crate::core::now_ms().saturating_sub(started) as f64 / 1000.0;
    let perc = if total > 0 {
        loaded as f64 * 100.0 / total as f64
    } else {
        0.0
    };
    // Redis's estimate: the remaining bytes at the pace so far (1 s before anything loaded).
    let eta = if loaded > 0 && elapsed_s > 0.0 {
        ((total - loaded) as f64 / (loaded as f64 / elapsed_s)) as i64
    } else {
        1
    };
    format!(
        "loading_start_time:{}\r\nloading_total_bytes:{total}\r\nloading_rdb_used_mem:0\r\nloading_loaded_bytes:{loaded}\r\nloading_loaded_perc:{perc:.2}\r\nloading_eta_seconds:{eta}\r\n",
        started / 1000
    )
}
