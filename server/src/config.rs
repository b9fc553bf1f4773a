//! Configuration: command-line flags and a redis.conf-style file, with Redis's names where
//! Redis has the setting, and the CONFIG GET/SET parameter table.
//!
//! `percore [/etc/percore.conf] [--port 7000] [--shards 4] …` — the file is read first, then
//! flags override it, as `redis-server` does. Every parameter is declared once in [`PARAMS`]:
//! name, how to read it, how to set it, and whether CONFIG SET may change it at run time.

use percore_proto::decode::{split_args_in_place, DEFAULT_MAX_BULK_LEN};
use percore_shard::evict::Policy;
use percore_shard::notify;
use percore_shard::types::hash::HashLimits;
use percore_shard::types::list::ListLimits;
use percore_shard::types::set::SetLimits;
use percore_shard::types::zset::ZSetLimits;
use std::fmt::Write as _;

#[derive(Clone, Debug)]
pub struct Config {
    pub bind: Vec<String>,
    pub port: u16,
    /// 0: one shard per CPU this process may use.
    pub shards: usize,
    pub requirepass: Option<String>,
    pub protected_mode: bool,
    pub maxclients: usize,
    pub proto_max_bulk_len: i64,
    /// When a hash leaves the `listpack` encoding (`hash-max-listpack-*`).
    pub hash_limits: HashLimits,
    /// When a sorted set leaves the `listpack` encoding (`zset-max-listpack-*`).
    pub zset_limits: ZSetLimits,
    /// `hll-sparse-max-bytes`: the longest sparse HyperLogLog before it turns dense.
    pub hll_sparse_max_bytes: usize,
    /// When a set leaves the `intset` encoding (`set-max-intset-entries`).
    pub set_limits: SetLimits,
    /// `list-max-listpack-size`: how large a list's nodes grow.
    pub list_limits: ListLimits,
    /// `lazyfree-lazy-eviction`, `-expire`, `-server-del`, `-user-del`, `-user-flush` and
    /// `replica-lazy-flush`, in that order: kept and reported for the tools and config files
    /// that set them; percore frees large values in the background whatever they say.
    pub lazyfree: [bool; 6],
    pub client_query_buffer_limit: usize,
    /// `client-output-buffer-limit`: per class (normal, replica, pubsub), how much output a
    /// client may have waiting before it is disconnected.
    pub client_output_buffer_limit: [ObLimit; 3],
    /// `tracking-table-max-keys`: keys remembered for CLIENT TRACKING, at most (0: no
    /// bound), split across shards.
    pub tracking_table_max_keys: usize,
    /// Seconds of idleness after which a client is closed (0: never).
    pub timeout: u64,
    pub tcp_keepalive: u64,
    /// Background ticks per second (active expiry, lazy free, rehash).
    pub hz: u32,
    /// Bytes of io_uring-registered buffer memory per shard (locked memory).
    pub io_memory: usize,
    /// Replies at least this long go out zero-copy where the kernel does not copy them
    /// anyway (0: never); see the network ring's sends.
    pub zerocopy_send_min_bytes: usize,
    pub dir: String,
    /// Snapshot files are `<dbfilename>-<id>-<shard>-of-<shards>.pcs`, tied together by
    /// `<dbfilename>.manifest`.
    pub dbfilename: String,
    /// `save <seconds> <changes>` points: BGSAVE when at least `changes` writes happened and
    /// `seconds` passed since the last save. Empty (the default for a cache): no automatic
    /// snapshots.
    pub save: Vec<(u64, u64)>,
    /// Microseconds a background save waits per key (Redis's testing knob; 0 in production).
    pub rdb_key_save_delay: u64,
    /// `repl-backlog-size`: stream bytes kept for partial resynchronisations.
    pub repl_backlog_size: usize,
    /// `repl-ping-replica-period`, seconds: a PING in the stream this often.
    pub repl_ping_replica_period: u64,
    /// `min-replicas-to-write` / `min-replicas-max-lag`: writes are refused (NOREPLICAS)
    /// unless this many replicas acknowledged within that many seconds (0: no check).
    pub min_replicas_to_write: usize,
    pub min_replicas_max_lag: u64,
    /// `replicaof <host> <port>` (alias `slaveof`): follow that primary from the start.
    pub replicaof: Option<(String, u16)>,
    /// `masterauth` / `masteruser`: how a replica authenticates to its primary.
    pub masterauth: Option<String>,
    pub masteruser: Option<String>,
    /// `replica-read-only`: normal clients' writes get READONLY on a replica.
    pub replica_read_only: bool,
    /// `replica-serve-stale-data`: while the link is down, serve the data as it is (yes)
    /// or answer MASTERDOWN (no).
    pub replica_serve_stale_data: bool,
    /// `repl-timeout`, seconds: bounds the link's connect and every wait for the primary.
    pub repl_timeout: u64,
    /// `replica-priority` and `replica-announced` (reported in INFO replication).
    pub replica_priority: u64,
    pub replica_announced: bool,
    /// Start with the valid part of a corrupt snapshot set instead of refusing to start.
    pub load_corrupt_snapshot: bool,
    /// A Redis RDB file to load at start instead of the snapshot set (empty: none).
    pub import_rdb: String,
    /// A file name in `dir`: every save also writes the set there as a Redis RDB (empty: no).
    pub rdb_export: String,
    pub loglevel: String,
    pub config_file: Option<String>,
    /// Commands taking at least this many microseconds enter the slow log (negative: off).
    pub slowlog_log_slower_than: i64,
    /// `busy-reply-threshold` (alias `lua-time-limit`), ms: a script running this long is busy
    /// (its core answers BUSY until it ends or is killed; see `scripting.rs`).
    pub busy_reply_threshold: i64,
    pub slowlog_max_len: usize,
    /// Milliseconds from which the latency monitor records an event (0: off).
    pub latency_monitor_threshold: u64,
    /// `latency-clock thread-cpu` (percore's own): command durations in thread CPU time
    /// instead of elapsed time (see `latency::Stopwatch`).
    pub latency_clock_cpu: bool,
    /// Port of the Prometheus endpoint (0: none).
    pub metrics_port: u16,
    /// Address of the Prometheus endpoint; empty: the first `bind` address.
    pub metrics_bind: String,
    /// Bytes the server may use for data before evicting (0: no limit); split evenly
    /// across shards.
    pub maxmemory: u64,
    pub evict: percore_shard::evict::EvictConfig,
    /// Who may run DEBUG (`enable-debug-command`; fixed at start, as in Redis).
    pub enable_debug_command: ProtectedAction,
    /// Who may CONFIG SET `dir` and `dbfilename` (`enable-protected-configs`; fixed at start).
    pub enable_protected_configs: ProtectedAction,
    /// `enable-module-command`: kept for the config files that set it (percore loads no
    /// modules: MODULE is not a command here).
    pub enable_module_command: ProtectedAction,
    /// `notify-keyspace-events` as class flags (`percore_shard::notify`); 0: off.
    pub notify_keyspace_events: u16,
    /// `tls-port`, `tls-cert-file` and the other TLS settings (`tls.rs`).
    pub tls: crate::tls::Settings,
    /// `rename-command <name> <new name>` lines, in order (an empty new name removes the
    /// command); fixed at start, not a CONFIG parameter (as in Redis).
    pub rename_command: Vec<(String, String)>,
    /// `cluster-enabled`: a one-node Redis Cluster (`cluster.rs`).
    pub cluster_enabled: bool,
    /// The node's identity file, in `dir` (Redis's nodes.conf format).
    pub cluster_config_file: String,
    /// The IP other nodes and clients are told (empty: unknown, as Redis reports it alone).
    pub cluster_announce_ip: String,
    /// The cluster bus port reported (0: port + 10000).
    pub cluster_port: u16,
    /// `cluster-announce-port` / `cluster-announce-bus-port`: what other nodes and clients
    /// are told (0: the real ports).
    pub cluster_announce_port: u16,
    pub cluster_announce_bus_port: u16,
    /// `cluster-node-timeout`: how long a node may stay silent before it is PFAIL (ms).
    pub cluster_node_timeout: u64,
    /// `cluster-require-full-coverage`: the cluster is down while a slot has no live owner.
    pub cluster_require_full_coverage: bool,
    /// `cluster-allow-reads-when-down`: read commands still run while the cluster is down.
    pub cluster_allow_reads_when_down: bool,
    /// `aclfile`: where ACL LOAD and ACL SAVE read and write users (empty: none).
    pub aclfile: String,
    /// `acllog-max-len`: ACL LOG entries kept.
    pub acllog_max_len: usize,
    /// `acl-pubsub-default`: whether new users start with `allchannels`
    /// (Redis 7.0's default is `resetchannels`).
    pub acl_pubsub_allchannels: bool,
    /// `user <name> <rules...>` lines of the config file, in order.
    pub users: Vec<Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: vec!["127.0.0.1".into()],
            port: 6379,
            shards: 0,
            requirepass: None,
            protected_mode: true,
            maxclients: 10_000,
            proto_max_bulk_len: DEFAULT_MAX_BULK_LEN,
            hash_limits: HashLimits::default(),
            zset_limits: ZSetLimits::default(),
            hll_sparse_max_bytes: percore_shard::types::hll::SPARSE_MAX_BYTES_DEFAULT,
            set_limits: SetLimits::default(),
            list_limits: ListLimits::default(),
            lazyfree: [false; 6],
            client_query_buffer_limit: 1 << 30,
            tracking_table_max_keys: 1_000_000,
            client_output_buffer_limit: [
                ObLimit::NONE,
                ObLimit {
                    hard: 256 << 20,
                    soft: 64 << 20,
                    soft_secs: 60,
                },
                ObLimit {
                    hard: 32 << 20,
                    soft: 8 << 20,
                    soft_secs: 60,
                },
            ],
            timeout: 0,
            tcp_keepalive: 300,
            hz: 10,
            // Registered buffers serve O_DIRECT file I/O (snapshots); the network path does not use
            // them. Small by default so that a 16-shard server fits the common 8 MiB MEMLOCK.
            io_memory: 256 << 10,
            zerocopy_send_min_bytes: crate::runtime::ZC_MIN_DEFAULT,
            dir: ".".into(),
            dbfilename: "percore".into(),
            save: Vec::new(),
            rdb_key_save_delay: 0,
            repl_backlog_size: 1 << 20,
            repl_ping_replica_period: 10,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            replicaof: None,
            masterauth: None,
            masteruser: None,
            replica_read_only: true,
            replica_serve_stale_data: true,
            repl_timeout: 60,
            replica_priority: 100,
            replica_announced: true,
            load_corrupt_snapshot: false,
            import_rdb: String::new(),
            rdb_export: String::new(),
            loglevel: "notice".into(),
            config_file: None,
            slowlog_log_slower_than: 10_000,
            busy_reply_threshold: 5000,
            slowlog_max_len: 128,
            latency_monitor_threshold: 0,
            latency_clock_cpu: false,
            metrics_port: 0,
            metrics_bind: String::new(),
            aclfile: String::new(),
            acllog_max_len: 128,
            acl_pubsub_allchannels: false,
            users: Vec::new(),
            maxmemory: 0,
            evict: percore_shard::evict::EvictConfig::default(),
            enable_debug_command: ProtectedAction::No,
            enable_protected_configs: ProtectedAction::No,
            enable_module_command: ProtectedAction::No,
            notify_keyspace_events: 0,
            tls: crate::tls::Settings::default(),
            rename_command: Vec::new(),
            cluster_enabled: false,
            cluster_config_file: "nodes.conf".into(),
            cluster_announce_ip: String::new(),
            cluster_port: 0,
            cluster_announce_port: 0,
            cluster_announce_bus_port: 0,
            cluster_node_timeout: 15_000,
            cluster_require_full_coverage: true,
            cluster_allow_reads_when_down: false,
        }
    }
}

/// Parses a memory size as Redis's `memtoll`: `1k` = 1000, `1kb` = 1024, likewise m/mb, g/gb.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let l = s.to_ascii_lowercase();
    let (num, mul) = [
        ("gb", 1u64 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| l.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((&l, 1));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("argument must be a memory value, got '{s}'"))?;
    n.checked_mul(mul)
        .ok_or_else(|| format!("memory value '{s}' is too large"))
}

/// Redis's `enable-debug-command` (and `enable-module-command`) values: who may run a
/// protected command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtectedAction {
    No,
    Yes,
    /// Only clients on a loopback address (127.0.0.1 or ::1).
    Local,
}

impl ProtectedAction {
    fn parse(s: &str) -> Result<ProtectedAction, String> {
        match s.to_ascii_lowercase().as_str() {
            "no" => Ok(ProtectedAction::No),
            "yes" => Ok(ProtectedAction::Yes),
            "local" => Ok(ProtectedAction::Local),
            _ => Err("argument(s) must be one of the following: no, yes, local".into()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProtectedAction::No => "no",
            ProtectedAction::Yes => "yes",
            ProtectedAction::Local => "local",
        }
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".into()),
    }
}

/// Parses an integer setting as Redis's numeric configs do: the same two error texts, and
/// `[min, max]` inclusive (Redis 7.0's bounds for the settings it shares).
fn int_in<T: TryFrom<i128>>(s: &str, min: i128, max: i128) -> Result<T, String> {
    let n: i64 = s
        .parse()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
    bounded(n as i128, min, max)
}

/// A memory setting (`1gb`, `512mb`, bytes) within `[min, max]`.
fn memory_in<T: TryFrom<i128>>(s: &str, min: i128, max: i128) -> Result<T, String> {
    let n = parse_memory(s).map_err(|_| "argument must be a memory value".to_string())?;
    bounded(n as i128, min, max)
}

fn bounded<T: TryFrom<i128>>(n: i128, min: i128, max: i128) -> Result<T, String> {
    if !(min..=max).contains(&n) {
        return Err(format!(
            "argument must be between {min} and {max} inclusive"
        ));
    }
    T::try_from(n).map_err(|_| format!("argument must be between {min} and {max} inclusive"))
}

const INT_MAX: i128 = i32::MAX as i128;
const LONG_MAX: i128 = i64::MAX as i128;

/// `dir`: an existing directory, kept as its absolute path so that every file operation
/// (glommio's directory sync among them) works whatever the working directory, and CONFIG
/// GET answers what Redis answers after its chdir. Errors are Redis's (strerror of chdir).
pub fn resolve_dir(dir: &str) -> Result<String, String> {
    let path = std::fs::canonicalize(dir).map_err(|e| os_error_text(&e))?;
    if !path.is_dir() {
        return Err("Not a directory".into());
    }
    path.into_os_string()
        .into_string()
        .map_err(|_| "the directory's path is not valid UTF-8".into())
}

/// strerror's text of an OS error, without Rust's " (os error N)" suffix.
pub fn os_error_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// One configuration parameter.
pub struct Param {
    pub name: &'static str,
    pub get: fn(&Config) -> String,
    pub set: fn(&mut Config, &[String]) -> Result<(), String>,
    /// False for settings fixed at start (CONFIG SET refuses them).
    pub mutable: bool,
}

/// `save` values: pairs of seconds and changes, in one string or as separate words; an empty
/// string clears them.
fn parse_save(v: &[String]) -> Result<Vec<(u64, u64)>, String> {
    let words: Vec<&str> = v.iter().flat_map(|w| w.split_whitespace()).collect();
    if !words.len().is_multiple_of(2) {
        return Err("Invalid save parameters".into());
    }
    words
        .chunks(2)
        .map(|p| match (p[0].parse(), p[1].parse()) {
            (Ok(s), Ok(n)) => Ok((s, n)),
            _ => Err("Invalid save parameters".into()),
        })
        .collect()
}

/// A client class of `client-output-buffer-limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObClass {
    Normal = 0,
    Replica = 1,
    Pubsub = 2,
}

impl ObClass {
    pub const ALL: [ObClass; 3] = [ObClass::Normal, ObClass::Replica, ObClass::Pubsub];

    /// Redis's names in CONFIG GET (`slave` for replicas, as Redis 7.0 prints it).
    fn name(self) -> &'static str {
        match self {
            ObClass::Normal => "normal",
            ObClass::Replica => "slave",
            ObClass::Pubsub => "pubsub",
        }
    }

    fn parse(s: &str) -> Option<ObClass> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Some(ObClass::Normal),
            "slave" | "replica" => Some(ObClass::Replica),
            "pubsub" => Some(ObClass::Pubsub),
            _ => None,
        }
    }
}

/// One class's output limit: over `hard` bytes, or over `soft` for more than `soft_secs`
/// seconds, the client is disconnected (0: no such limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_secs: u64,
}

impl ObLimit {
    pub const NONE: ObLimit = ObLimit {
        hard: 0,
        soft: 0,
        soft_secs: 0,
    };

    /// Whether `used` bytes waiting break the limit, as Redis's
    /// `checkClientOutputBufferLimits`: `since` remembers when the soft limit was first
    /// passed, and is reset once the client is back under it.
    pub fn exceeded(
        &self,
        used: usize,
        since: &std::cell::Cell<Option<std::time::Instant>>,
    ) -> bool {
        let used = used as u64;
        if self.hard > 0 && used >= self.hard {
            return true;
        }
        if self.soft > 0 && used >= self.soft {
            match since.get() {
                None => since.set(Some(std::time::Instant::now())),
                Some(t) => return t.elapsed().as_secs() > self.soft_secs,
            }
        } else {
            since.set(None);
        }
        false
    }
}

/// `client-output-buffer-limit <class> <hard> <soft> <soft seconds> ...`: all groups are
/// checked before any is applied, with Redis's errors.
fn set_output_limits(c: &mut Config, v: &[String]) -> Result<(), String> {
    let words: Vec<&str> = v.iter().flat_map(|s| s.split_whitespace()).collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    let mut parsed = Vec::new();
    for g in words.chunks(4) {
        let class = ObClass::parse(g[0])
            .ok_or("Invalid client class specified in buffer limit configuration.")?;
        let bad = || "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        let hard = parse_memory(g[1]).map_err(|_| bad())?;
        let soft = parse_memory(g[2]).map_err(|_| bad())?;
        let soft_secs: i64 = g[3].parse().map_err(|_| bad())?;
        if soft_secs < 0 {
            return Err(bad().into());
        }
        parsed.push((
            class,
            ObLimit {
                hard,
                soft,
                soft_secs: soft_secs as u64,
            },
        ));
    }
    for (class, l) in parsed {
        c.client_output_buffer_limit[class as usize] = l;
    }
    Ok(())
}

fn get_replicaof(c: &Config) -> String {
    c.replicaof
        .as_ref()
        .map(|(h, p)| format!("{h} {p}"))
        .unwrap_or_default()
}

/// `replicaof <host> <port>`, as two words or one string; empty (or `no one`): none.
fn set_replicaof(c: &mut Config, v: &[String]) -> Result<(), String> {
    let words: Vec<&str> = v.iter().flat_map(|w| w.split_whitespace()).collect();
    c.replicaof = match words.as_slice() {
        [] => None,
        [n, o] if n.eq_ignore_ascii_case("no") && o.eq_ignore_ascii_case("one") => None,
        [h, p] => Some((h.to_string(), int_in(p, 0, 65535)?)),
        _ => return Err("wrong number of arguments".into()),
    };
    Ok(())
}

fn one(v: &[String]) -> Result<&str, String> {
    match v {
        [x] => Ok(x),
        _ => Err("wrong number of arguments".into()),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// Every setting percore has, in CONFIG GET order.
#[rustfmt::skip]
pub static PARAMS: &[Param] = &[
    Param { name: "bind", get: |c| c.bind.join(" "), set: |c, v| { if v.is_empty() { return Err("wrong number of arguments".into()); } c.bind = v.iter().flat_map(|s| s.split_whitespace().map(String::from)).collect(); Ok(()) }, mutable: false },
    Param { name: "port", get: |c| c.port.to_string(), set: |c, v| { c.port = int_in(one(v)?, 0, 65535)?; Ok(()) }, mutable: false },
    Param { name: "shards", get: |c| c.shards.to_string(), set: |c, v| { c.shards = int_in(one(v)?, 0, 1024)?; Ok(()) }, mutable: false },
    Param { name: "requirepass", get: |c| c.requirepass.clone().unwrap_or_default(), set: |c, v| { let p = one(v)?; c.requirepass = (!p.is_empty()).then(|| p.to_string()); Ok(()) }, mutable: true },
    Param { name: "protected-mode", get: |c| yes_no(c.protected_mode), set: |c, v| { c.protected_mode = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "maxclients", get: |c| c.maxclients.to_string(), set: |c, v| { c.maxclients = int_in(one(v)?, 1, u32::MAX as i128)?; Ok(()) }, mutable: true },
    Param { name: "proto-max-bulk-len", get: |c| c.proto_max_bulk_len.to_string(), set: |c, v| { c.proto_max_bulk_len = memory_in(one(v)?, 1 << 20, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "client-query-buffer-limit", get: |c| c.client_query_buffer_limit.to_string(), set: |c, v| { c.client_query_buffer_limit = memory_in(one(v)?, 1 << 20, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "client-output-buffer-limit", get: |c| ObClass::ALL.iter().map(|&k| { let l = c.client_output_buffer_limit[k as usize]; format!("{} {} {} {}", k.name(), l.hard, l.soft, l.soft_secs) }).collect::<Vec<_>>().join(" "), set: |c, v| set_output_limits(c, v), mutable: true },
    Param { name: "tracking-table-max-keys", get: |c| c.tracking_table_max_keys.to_string(), set: |c, v| { c.tracking_table_max_keys = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "timeout", get: |c| c.timeout.to_string(), set: |c, v| { c.timeout = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "tcp-keepalive", get: |c| c.tcp_keepalive.to_string(), set: |c, v| { c.tcp_keepalive = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "hz", get: |c| c.hz.to_string(), set: |c, v| { let n: u32 = int_in(one(v)?, 0, INT_MAX)?; c.hz = n.clamp(1, 500); Ok(()) }, mutable: true },
    Param { name: "io-memory", get: |c| c.io_memory.to_string(), set: |c, v| { c.io_memory = memory_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: false },
    Param { name: "zerocopy-send-min-bytes", get: |c| c.zerocopy_send_min_bytes.to_string(), set: |c, v| { c.zerocopy_send_min_bytes = memory_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "dir", get: |c| c.dir.clone(), set: |c, v| { c.dir = resolve_dir(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "dbfilename", get: |c| c.dbfilename.clone(), set: |c, v| { let n = one(v)?; if n.is_empty() || n.contains('/') { return Err("dbfilename can't be a path, just a filename".into()); } c.dbfilename = n.to_string(); Ok(()) }, mutable: true },
    Param { name: "save", get: |c| c.save.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(" "), set: |c, v| { c.save = parse_save(v)?; Ok(()) }, mutable: true },
    Param { name: "repl-backlog-size", get: |c| c.repl_backlog_size.to_string(), set: |c, v| { c.repl_backlog_size = memory_in(one(v)?, 1, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "repl-ping-replica-period", get: |c| c.repl_ping_replica_period.to_string(), set: |c, v| { c.repl_ping_replica_period = int_in(one(v)?, 1, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "min-replicas-to-write", get: |c| c.min_replicas_to_write.to_string(), set: |c, v| { c.min_replicas_to_write = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "replicaof", get: get_replicaof, set: set_replicaof, mutable: false },
    Param { name: "slaveof", get: get_replicaof, set: set_replicaof, mutable: false },
    Param { name: "masterauth", get: |c| c.masterauth.clone().unwrap_or_default(), set: |c, v| { let p = one(v)?; c.masterauth = (!p.is_empty()).then(|| p.to_string()); Ok(()) }, mutable: true },
    Param { name: "masteruser", get: |c| c.masteruser.clone().unwrap_or_default(), set: |c, v| { let p = one(v)?; c.masteruser = (!p.is_empty()).then(|| p.to_string()); Ok(()) }, mutable: true },
    Param { name: "replica-read-only", get: |c| yes_no(c.replica_read_only), set: |c, v| { c.replica_read_only = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "slave-read-only", get: |c| yes_no(c.replica_read_only), set: |c, v| { c.replica_read_only = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "replica-serve-stale-data", get: |c| yes_no(c.replica_serve_stale_data), set: |c, v| { c.replica_serve_stale_data = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "slave-serve-stale-data", get: |c| yes_no(c.replica_serve_stale_data), set: |c, v| { c.replica_serve_stale_data = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "repl-timeout", get: |c| c.repl_timeout.to_string(), set: |c, v| { c.repl_timeout = int_in(one(v)?, 1, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "replica-priority", get: |c| c.replica_priority.to_string(), set: |c, v| { c.replica_priority = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "slave-priority", get: |c| c.replica_priority.to_string(), set: |c, v| { c.replica_priority = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "replica-announced", get: |c| yes_no(c.replica_announced), set: |c, v| { c.replica_announced = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "slave-announced", get: |c| yes_no(c.replica_announced), set: |c, v| { c.replica_announced = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "min-replicas-max-lag", get: |c| c.min_replicas_max_lag.to_string(), set: |c, v| { c.min_replicas_max_lag = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "rdb-key-save-delay", get: |c| c.rdb_key_save_delay.to_string(), set: |c, v| { c.rdb_key_save_delay = int_in::<i32>(one(v)?, i32::MIN as i128, INT_MAX)?.max(0) as u64; Ok(()) }, mutable: true },
    Param { name: "load-corrupt-snapshot", get: |c| yes_no(c.load_corrupt_snapshot), set: |c, v| { c.load_corrupt_snapshot = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "import-rdb", get: |c| c.import_rdb.clone(), set: |c, v| { c.import_rdb = one(v)?.to_string(); Ok(()) }, mutable: false },
    Param { name: "rdb-export", get: |c| c.rdb_export.clone(), set: |c, v| { let n = one(v)?; if n.contains('/') { return Err("rdb-export can't be a path, just a filename".into()); } c.rdb_export = n.to_string(); Ok(()) }, mutable: true },
    Param { name: "enable-protected-configs", get: |c| c.enable_protected_configs.name().into(), set: |c, v| { c.enable_protected_configs = ProtectedAction::parse(one(v)?)?; Ok(()) }, mutable: false },
    Param { name: "enable-module-command", get: |c| c.enable_module_command.name().into(), set: |c, v| { c.enable_module_command = ProtectedAction::parse(one(v)?)?; Ok(()) }, mutable: false },
    Param { name: "enable-debug-command", get: |c| c.enable_debug_command.name().into(), set: |c, v| { c.enable_debug_command = ProtectedAction::parse(one(v)?)?; Ok(()) }, mutable: false },
    Param { name: "loglevel", get: |c| c.loglevel.clone(), set: |c, v| { let l = one(v)?.to_ascii_lowercase(); if !["debug", "verbose", "notice", "warning", "nothing"].contains(&l.as_str()) { return Err("argument(s) must be one of the following: debug, verbose, notice, warning, nothing".into()); } c.loglevel = l; Ok(()) }, mutable: true },
    Param { name: "slowlog-log-slower-than", get: |c| c.slowlog_log_slower_than.to_string(), set: |c, v| { c.slowlog_log_slower_than = int_in(one(v)?, -1, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "busy-reply-threshold", get: |c| c.busy_reply_threshold.to_string(), set: |c, v| { c.busy_reply_threshold = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "lua-time-limit", get: |c| c.busy_reply_threshold.to_string(), set: |c, v| { c.busy_reply_threshold = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "slowlog-max-len", get: |c| c.slowlog_max_len.to_string(), set: |c, v| { c.slowlog_max_len = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "latency-monitor-threshold", get: |c| c.latency_monitor_threshold.to_string(), set: |c, v| { c.latency_monitor_threshold = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "latency-clock", get: |c| if c.latency_clock_cpu { "thread-cpu" } else { "wall" }.into(), set: |c, v| { c.latency_clock_cpu = match one(v)?.to_ascii_lowercase().as_str() { "wall" => false, "thread-cpu" => true, _ => return Err("argument must be 'wall' or 'thread-cpu'".into()) }; Ok(()) }, mutable: true },
    Param { name: "metrics-port", get: |c| c.metrics_port.to_string(), set: |c, v| { c.metrics_port = int_in(one(v)?, 0, 65535)?; Ok(()) }, mutable: false },
    Param { name: "metrics-bind", get: |c| c.metrics_bind.clone(), set: |c, v| { c.metrics_bind = one(v)?.to_string(); Ok(()) }, mutable: false },
    Param { name: "maxmemory", get: |c| c.maxmemory.to_string(), set: |c, v| { c.maxmemory = memory_in(one(v)?, 0, u64::MAX as i128)?; Ok(()) }, mutable: true },
    Param { name: "maxmemory-policy", get: |c| c.evict.policy.name().into(), set: |c, v| { c.evict.policy = Policy::parse(one(v)?).ok_or("argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction")?; Ok(()) }, mutable: true },
    Param { name: "maxmemory-samples", get: |c| c.evict.samples.to_string(), set: |c, v| { c.evict.samples = int_in(one(v)?, 1, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "lfu-log-factor", get: |c| c.evict.lfu_log_factor.to_string(), set: |c, v| { c.evict.lfu_log_factor = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "lfu-decay-time", get: |c| c.evict.lfu_decay_time.to_string(), set: |c, v| { c.evict.lfu_decay_time = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "hash-max-listpack-entries", get: |c| c.hash_limits.max_listpack_entries.to_string(), set: |c, v| { c.hash_limits.max_listpack_entries = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "hash-max-listpack-value", get: |c| c.hash_limits.max_listpack_value.to_string(), set: |c, v| { c.hash_limits.max_listpack_value = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    // Redis 7.0 keeps the names from before listpacks as aliases.
    Param { name: "hash-max-ziplist-entries", get: |c| c.hash_limits.max_listpack_entries.to_string(), set: |c, v| { c.hash_limits.max_listpack_entries = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "hash-max-ziplist-value", get: |c| c.hash_limits.max_listpack_value.to_string(), set: |c, v| { c.hash_limits.max_listpack_value = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "zset-max-listpack-entries", get: |c| c.zset_limits.max_listpack_entries.to_string(), set: |c, v| { c.zset_limits.max_listpack_entries = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "zset-max-listpack-value", get: |c| c.zset_limits.max_listpack_value.to_string(), set: |c, v| { c.zset_limits.max_listpack_value = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "zset-max-ziplist-entries", get: |c| c.zset_limits.max_listpack_entries.to_string(), set: |c, v| { c.zset_limits.max_listpack_entries = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "zset-max-ziplist-value", get: |c| c.zset_limits.max_listpack_value.to_string(), set: |c, v| { c.zset_limits.max_listpack_value = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "notify-keyspace-events", get: |c| notify::format_flags(c.notify_keyspace_events), set: |c, v| { c.notify_keyspace_events = notify::parse_flags(one(v)?.as_bytes()).ok_or(notify::INVALID_CLASS)?; Ok(()) }, mutable: true },
    Param { name: "hll-sparse-max-bytes", get: |c| c.hll_sparse_max_bytes.to_string(), set: |c, v| { c.hll_sparse_max_bytes = memory_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "set-max-intset-entries", get: |c| c.set_limits.max_intset_entries.to_string(), set: |c, v| { c.set_limits.max_intset_entries = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "list-max-listpack-size", get: |c| c.list_limits.fill.to_string(), set: |c, v| { c.list_limits.fill = int_in(one(v)?, i32::MIN as i128, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "list-max-ziplist-size", get: |c| c.list_limits.fill.to_string(), set: |c, v| { c.list_limits.fill = int_in(one(v)?, i32::MIN as i128, INT_MAX)?; Ok(()) }, mutable: true },
    // Redis's range (0..INT_MAX); percore's default is 1, not Redis's 0 (see README).
    Param { name: "list-compress-depth", get: |c| c.list_limits.compress_depth.to_string(), set: |c, v| { c.list_limits.compress_depth = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    // Redis 7.0's lazy-free switches (default no). percore hands every large value to the
    // background whatever they say, so `no` never makes a delete stall the core.
    Param { name: "lazyfree-lazy-eviction", get: |c| yes_no(c.lazyfree[0]), set: |c, v| { c.lazyfree[0] = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "lazyfree-lazy-expire", get: |c| yes_no(c.lazyfree[1]), set: |c, v| { c.lazyfree[1] = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "lazyfree-lazy-server-del", get: |c| yes_no(c.lazyfree[2]), set: |c, v| { c.lazyfree[2] = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "lazyfree-lazy-user-del", get: |c| yes_no(c.lazyfree[3]), set: |c, v| { c.lazyfree[3] = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "lazyfree-lazy-user-flush", get: |c| yes_no(c.lazyfree[4]), set: |c, v| { c.lazyfree[4] = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "replica-lazy-flush", get: |c| yes_no(c.lazyfree[5]), set: |c, v| { c.lazyfree[5] = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "cluster-enabled", get: |c| yes_no(c.cluster_enabled), set: |c, v| { c.cluster_enabled = parse_bool(one(v)?)?; Ok(()) }, mutable: false },
    Param { name: "cluster-config-file", get: |c| c.cluster_config_file.clone(), set: |c, v| { let n = one(v)?; if n.is_empty() { return Err("cluster-config-file can't be empty".into()); } c.cluster_config_file = n.to_string(); Ok(()) }, mutable: false },
    Param { name: "cluster-announce-ip", get: |c| c.cluster_announce_ip.clone(), set: |c, v| { c.cluster_announce_ip = one(v)?.to_string(); Ok(()) }, mutable: false },
    Param { name: "cluster-port", get: |c| c.cluster_port.to_string(), set: |c, v| { c.cluster_port = int_in(one(v)?, 0, 65535)?; Ok(()) }, mutable: false },
    Param { name: "cluster-announce-port", get: |c| c.cluster_announce_port.to_string(), set: |c, v| { c.cluster_announce_port = int_in(one(v)?, 0, 65535)?; Ok(()) }, mutable: false },
    Param { name: "cluster-announce-bus-port", get: |c| c.cluster_announce_bus_port.to_string(), set: |c, v| { c.cluster_announce_bus_port = int_in(one(v)?, 0, 65535)?; Ok(()) }, mutable: false },
    Param { name: "cluster-node-timeout", get: |c| c.cluster_node_timeout.to_string(), set: |c, v| { c.cluster_node_timeout = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: false },
    Param { name: "cluster-require-full-coverage", get: |c| yes_no(c.cluster_require_full_coverage), set: |c, v| { c.cluster_require_full_coverage = parse_bool(one(v)?)?; Ok(()) }, mutable: false },
    Param { name: "cluster-allow-reads-when-down", get: |c| yes_no(c.cluster_allow_reads_when_down), set: |c, v| { c.cluster_allow_reads_when_down = parse_bool(one(v)?)?; Ok(()) }, mutable: false },
    Param { name: "tls-port", get: |c| c.tls.port.to_string(), set: |c, v| { c.tls.port = int_in(one(v)?, 0, 65535)?; Ok(()) }, mutable: false },
    Param { name: "tls-cert-file", get: |c| c.tls.cert_file.clone(), set: |c, v| { c.tls.cert_file = one(v)?.to_string(); Ok(()) }, mutable: true },
    Param { name: "tls-key-file", get: |c| c.tls.key_file.clone(), set: |c, v| { c.tls.key_file = one(v)?.to_string(); Ok(()) }, mutable: true },
    Param { name: "tls-key-file-pass", get: |c| c.tls.key_file_pass.clone(), set: |c, v| { c.tls.key_file_pass = one(v)?.to_string(); Ok(()) }, mutable: true },
    Param { name: "tls-ca-cert-file", get: |c| c.tls.ca_cert_file.clone(), set: |c, v| { c.tls.ca_cert_file = one(v)?.to_string(); Ok(()) }, mutable: true },
    Param { name: "tls-ca-cert-dir", get: |c| c.tls.ca_cert_dir.clone(), set: |c, v| { c.tls.ca_cert_dir = one(v)?.to_string(); Ok(()) }, mutable: true },
    Param { name: "tls-auth-clients", get: |c| c.tls.auth_clients.name().into(), set: |c, v| { c.tls.auth_clients = crate::tls::AuthClients::parse(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "tls-protocols", get: |c| c.tls.protocols.clone(), set: |c, v| { c.tls.protocols = one(v)?.to_string(); Ok(()) }, mutable: true },
    Param { name: "tls-ciphers", get: |c| c.tls.ciphers.clone(), set: |c, v| { c.tls.ciphers = one(v)?.to_string(); Ok(()) }, mutable: true },
    Param { name: "tls-ciphersuites", get: |c| c.tls.ciphersuites.clone(), set: |c, v| { c.tls.ciphersuites = one(v)?.to_string(); Ok(()) }, mutable: true },
    Param { name: "tls-prefer-server-ciphers", get: |c| yes_no(c.tls.prefer_server_ciphers), set: |c, v| { c.tls.prefer_server_ciphers = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "tls-session-caching", get: |c| yes_no(c.tls.session_caching), set: |c, v| { c.tls.session_caching = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "tls-session-cache-size", get: |c| c.tls.session_cache_size.to_string(), set: |c, v| { c.tls.session_cache_size = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    Param { name: "tls-session-cache-timeout", get: |c| c.tls.session_cache_timeout.to_string(), set: |c, v| { c.tls.session_cache_timeout = int_in(one(v)?, 0, INT_MAX)?; Ok(()) }, mutable: true },
    // Not in Redis: the Prometheus endpoint over HTTPS with the tls-* files.
    Param { name: "metrics-tls", get: |c| yes_no(c.tls.metrics), set: |c, v| { c.tls.metrics = parse_bool(one(v)?)?; Ok(()) }, mutable: false },
    // Replication and cluster are not built: reported as off for the tools that ask.
    Param { name: "tls-replication", get: |c| yes_no(c.tls.replication), set: |c, v| { c.tls.replication = parse_bool(one(v)?)?; Ok(()) }, mutable: true },
    Param { name: "tls-cluster", get: |_| "no".into(), set: |_, v| { if parse_bool(one(v)?)? { Err("percore has no cluster mode yet".into()) } else { Ok(()) } }, mutable: false },
    Param { name: "aclfile", get: |c| c.aclfile.clone(), set: |c, v| { c.aclfile = one(v)?.to_string(); Ok(()) }, mutable: false },
    Param { name: "acllog-max-len", get: |c| c.acllog_max_len.to_string(), set: |c, v| { c.acllog_max_len = int_in(one(v)?, 0, LONG_MAX)?; Ok(()) }, mutable: true },
    Param { name: "acl-pubsub-default", get: |c| if c.acl_pubsub_allchannels { "allchannels" } else { "resetchannels" }.into(), set: |c, v| { c.acl_pubsub_allchannels = match one(v)?.to_ascii_lowercase().as_str() { "allchannels" => true, "resetchannels" => false, _ => return Err("argument(s) must be one of the following: allchannels, resetchannels".into()) }; Ok(()) }, mutable: true },
    Param { name: "databases", get: |_| "16".into(), set: |_, v| { if one(v)? == "16" { Ok(()) } else { Err("percore has exactly 16 databases".into()) } }, mutable: false },
    // What percore does not have yet, reported truthfully for tools that ask.
    Param { name: "appendonly", get: |_| "no".into(), set: |_, v| { if one(v)? == "no" { Ok(()) } else { Err("percore has no append-only file".into()) } }, mutable: false },
    Param { name: "daemonize", get: |_| "no".into(), set: |_, v| { if parse_bool(one(v)?)? { Err("percore does not daemonize: run it under systemd (see deploy/)".into()) } else { Ok(()) } }, mutable: false },
];

/// Settings only clients admitted by `enable-protected-configs` may CONFIG SET (Redis 7.0's
/// `PROTECTED_CONFIG`: where files are written).
pub const PROTECTED: [&str; 3] = ["dir", "dbfilename", "rdb-export"];

pub fn find_param(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Splits a config-file line like Redis (quotes and escapes), dropping comments.
fn split_line(line: &str) -> Result<Vec<String>, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(Vec::new());
    }
    let mut bytes = t.as_bytes().to_vec();
    let mut spans = Vec::new();
    split_args_in_place(&mut bytes, &mut spans).map_err(|_| "unbalanced quotes".to_string())?;
    Ok(spans
        .iter()
        .map(|s| String::from_utf8_lossy(s.of(&bytes)).into_owned())
        .collect())
}

/// What the command line asked for.
pub enum Invocation {
    Run(Box<Config>),
    /// `percore check-snapshot DIR [--dbfilename NAME]`: verify a snapshot set offline.
    CheckSnapshot(Box<Config>),
    /// `percore export-rdb DIR FILE [--dbfilename NAME]`: write a snapshot set as a Redis RDB.
    ExportRdb(Box<Config>, String),
    Help,
    Version,
}

pub fn usage() -> String {
    let mut s = String::from(
        "Usage: percore [/path/to/percore.conf] [--setting value ...]\n\
         \n\
         Starts a Redis-protocol cache server with one shard per CPU core.\n\
         Settings use redis.conf names; flags override the file. Examples:\n  \
         percore --port 7000 --shards 4\n  \
         percore /etc/percore.conf --requirepass secret\n  \
         percore check-snapshot /var/lib/percore   (verify a snapshot set and say what it holds)\n  \
         percore export-rdb /var/lib/percore dump.rdb   (write a snapshot set as a Redis RDB file)\n  \
         percore check-rdb dump.rdb   (read a Redis RDB file and say what it holds)\n\nSettings:\n",
    );
    for p in PARAMS {
        let _ = writeln!(
            s,
            "  --{:<28} (default: {})",
            p.name,
            (p.get)(&Config::default())
        );
    }
    // Start-only directives that are not CONFIG parameters, as in Redis.
    let _ = writeln!(
        s,
        "  --{:<28} (repeatable; \"\" removes the command)\n  --{:<28} (repeatable; an ACL user, as a `user` line)",
        "rename-command NAME NEW",
        "user NAME RULES..."
    );
    s
}

/// Settings read at start, from a file and then the command line. Applied in order, as
/// Redis turns its arguments into config lines after the file's.
#[derive(Default)]
struct Loader {
    /// A `save` line has been read: later ones add points instead of replacing them, so
    /// `save 900 1` then `save 300 10` keeps both (and `save ""` clears what came before).
    save_seen: bool,
    /// Files being read (for `include`), to refuse a cycle and bound the depth.
    files: Vec<String>,
}

/// The start-only directive that is not a CONFIG parameter.
const RENAME_COMMAND: &str = "rename-command";

/// How deep `include` may nest.
const INCLUDE_DEPTH: usize = 16;

impl Loader {
    fn apply(&mut self, cfg: &mut Config, name: &str, values: &[String]) -> Result<(), String> {
        if name.eq_ignore_ascii_case(RENAME_COMMAND) {
            let [from, to] = values else {
                return Err("wrong number of arguments".into());
            };
            if percore_proto::lookup(from.as_bytes()).is_none()
                && !cfg
                    .rename_command
                    .iter()
                    .any(|(_, t)| t.eq_ignore_ascii_case(from))
            {
                return Err("No such command in rename-command".into());
            }
            cfg.rename_command.push((from.clone(), to.clone()));
            return Ok(());
        }
        if name.eq_ignore_ascii_case("user") {
            // Checked when the users are built at start (`acl::Acl::new`).
            if values.is_empty() {
                return Err("'user' takes a name and rules".into());
            }
            cfg.users.push(values.to_vec());
            return Ok(());
        }
        let p = find_param(name).ok_or_else(|| format!("unknown setting '{name}'"))?;
        if p.name == "save" {
            let points = parse_save(values)?;
            if points.is_empty() {
                cfg.save.clear();
            } else if self.save_seen {
                cfg.save.extend(points);
            } else {
                cfg.save = points;
            }
            self.save_seen = true;
            return Ok(());
        }
        (p.set)(cfg, values)
    }

    /// Applies a redis.conf-style file; `include PATH` lines apply another file at that
    /// point (a relative PATH is taken from the working directory, as Redis does).
    fn apply_file(&mut self, cfg: &mut Config, path: &str) -> Result<(), String> {
        if self.files.len() >= INCLUDE_DEPTH || self.files.iter().any(|f| f == path) {
            return Err(format!(
                "'{path}' is included again (a cycle, or more than {INCLUDE_DEPTH} levels of include)"
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file '{path}': {}", os_error_text(&e)))?;
        self.files.push(path.to_string());
        for (n, line) in text.lines().enumerate() {
            let at = |e: String| format!("{path}:{}: {e}", n + 1);
            let words = split_line(line).map_err(at)?;
            let Some((name, values)) = words.split_first() else {
                continue;
            };
            if name.eq_ignore_ascii_case("include") {
                let [file] = values else {
                    return Err(at("'include' takes one file".into()));
                };
                self.apply_file(cfg, file).map_err(at)?;
                continue;
            }
            self.apply(cfg, name, values)
                .map_err(|e| match find_param(name) {
                    Some(_) => at(format!("'{name}': {e}")),
                    None => at(e),
                })?;
        }
        self.files.pop();
        Ok(())
    }
}

/// Parses `argv[1..]`: an optional config file, then `--name value…` groups.
pub fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let mut cfg = Config::default();
    let mut loader = Loader::default();
    let mut rest = args;
    if let Some(first) = rest.first() {
        match first.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "-v" | "--version" => return Ok(Invocation::Version),
            "check-snapshot" => {
                let Some(dir) = rest.get(1) else {
                    return Err("usage: percore check-snapshot DIR [--dbfilename NAME]".into());
                };
                let mut cfg = match parse_args(&rest[2..])? {
                    Invocation::Run(c) => *c,
                    _ => return Err("usage: percore check-snapshot DIR [--dbfilename NAME]".into()),
                };
                cfg.dir = dir.clone();
                return Ok(Invocation::CheckSnapshot(Box::new(cfg)));
            }
            "export-rdb" => {
                let usage = "usage: percore export-rdb DIR FILE [--dbfilename NAME]";
                let (Some(dir), Some(out)) = (rest.get(1), rest.get(2)) else {
                    return Err(usage.into());
                };
                let Invocation::Run(mut cfg) = parse_args(&rest[3..])? else {
                    return Err(usage.into());
                };
                cfg.dir = dir.clone();
                return Ok(Invocation::ExportRdb(cfg, out.clone()));
            }
            f if !f.starts_with("--") => {
                loader.apply_file(&mut cfg, f)?;
                // Absolute, so that CONFIG REWRITE finds it whatever the working directory.
                cfg.config_file = Some(
                    std::fs::canonicalize(f)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| f.to_string()),
                );
                rest = &rest[1..];
            }
            _ => {}
        }
    }
    let mut i = 0;
    while i < rest.len() {
        let Some(name) = rest[i].strip_prefix("--") else {
            return Err(format!(
                "unexpected argument '{}': settings are given as --name value",
                rest[i]
            ));
        };
        if name == "help" {
            return Ok(Invocation::Help);
        }
        let mut j = i + 1;
        while j < rest.len() && !rest[j].starts_with("--") {
            j += 1;
        }
        let values: Vec<String> = rest[i + 1..j].to_vec();
        if find_param(name).is_none() && name != RENAME_COMMAND && name != "user" {
            return Err(format!("unknown setting '--{name}' (see percore --help)"));
        }
        loader
            .apply(&mut cfg, name, &values)
            .map_err(|e| format!("--{name} {}: {e}", values.join(" ")))?;
        i = j;
    }
    // The default `dir .` too becomes absolute (Redis changes into it at start).
    cfg.dir = resolve_dir(&cfg.dir).map_err(|e| format!("Can't chdir to '{}': {e}", cfg.dir))?;
    Ok(Invocation::Run(Box::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())? {
            Invocation::Run(c) => Ok(*c),
            _ => Err("not a run".into()),
        }
    }

    #[test]
    fn flags_and_defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.bind, vec!["127.0.0.1"]);
        assert_eq!(c.port, 6379);
        let c = run(&[
            "--port",
            "7000",
            "--shards",
            "4",
            "--requirepass",
            "pw",
            "--proto-max-bulk-len",
            "1gb",
        ])
        .unwrap();
        assert_eq!((c.port, c.shards), (7000, 4));
        assert_eq!(c.requirepass.as_deref(), Some("pw"));
        assert_eq!(c.proto_max_bulk_len, 1 << 30);
        assert!(run(&["--nope", "1"])
            .unwrap_err()
            .contains("unknown setting"));
        assert!(run(&["--port", "x"]).is_err());
        assert!(run(&["--daemonize", "yes"]).is_err());
    }

    #[test]
    fn notify_keyspace_events_reads_and_shows_as_redis() {
        let p = find_param("notify-keyspace-events").expect("declared");
        let mut c = Config::default();
        assert_eq!((p.get)(&c), "");
        for (set, get) in [("KEA", "AKE"), ("Kx", "xK"), ("Elg$", "g$lE"), ("", "")] {
            (p.set)(&mut c, &[set.to_string()]).unwrap();
            assert_eq!((p.get)(&c), get);
        }
        assert_eq!(
            (p.set)(&mut c, &["KEq".to_string()]).unwrap_err(),
            "Invalid event class character. Use 'Ag$lshzxeKEtmdn'."
        );
        let c = run(&["--notify-keyspace-events", "Kx"]).unwrap();
        assert_eq!(c.notify_keyspace_events, notify::KEYSPACE | notify::EXPIRED);
    }

    #[test]
    fn config_file_then_flags() {
        let path = std::env::temp_dir().join(format!("percore-test-{}.conf", std::process::id()));
        std::fs::write(
            &path,
            "# comment\nport 7001\nbind 127.0.0.1 ::1\nrequirepass \"a b\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = run(&[p, "--port", "7002"]).unwrap();
        assert_eq!(c.port, 7002);
        assert_eq!(c.bind, vec!["127.0.0.1", "::1"]);
        assert_eq!(c.requirepass.as_deref(), Some("a b"));
        std::fs::write(&path, "port 1\nbogus 2\n").unwrap();
        assert!(run(&[p])
            .unwrap_err()
            .contains(":2: unknown setting 'bogus'"));
        std::fs::remove_file(&path).unwrap();
    }

    /// A redis.conf's list and lazy-free lines load as they are (Redis 7.0's defaults and
    /// the old names included).
    #[test]
    fn list_and_lazyfree_lines_of_a_redis_conf_load() {
        let path =
            std::env::temp_dir().join(format!("percore-test-lists-{}.conf", std::process::id()));
        std::fs::write(
            &path,
            "list-max-ziplist-size -3
list-compress-depth 2
lazyfree-lazy-eviction no
lazyfree-lazy-user-del yes
replica-lazy-flush no
",
        )
        .unwrap();
        let c = run(&[path.to_str().unwrap()]).unwrap();
        assert_eq!(c.list_limits.fill, -3);
        assert_eq!(c.lazyfree, [false, false, false, true, false, false]);
        let get = |name: &str| (find_param(name).unwrap().get)(&c);
        assert_eq!(get("list-max-listpack-size"), "-3");
        assert_eq!(get("list-compress-depth"), "2");
        assert_eq!(get("lazyfree-lazy-user-del"), "yes");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn repeated_save_lines_add_points_and_include_applies_a_file() {
        let dir = std::env::temp_dir().join(format!("percore-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let main = dir.join("main.conf");
        let inc = dir.join("policy.conf");
        std::fs::write(&inc, "maxmemory-policy allkeys-lru\nsave 60 10000\n").unwrap();
        std::fs::write(
            &main,
            format!(
                "save 900 1\nsave 300 10\ninclude {}\nport 7003\n",
                inc.display()
            ),
        )
        .unwrap();
        let m = main.to_str().unwrap();
        let c = run(&[m]).unwrap();
        assert_eq!(c.save, vec![(900, 1), (300, 10), (60, 10000)]);
        assert_eq!(c.evict.policy.name(), "allkeys-lru");
        assert_eq!(c.port, 7003);
        // A flag after the file adds to the file's points, as Redis's arguments do.
        let c = run(&[m, "--save", "10 1"]).unwrap();
        assert_eq!(c.save.len(), 4);
        // `save ""` clears the points before it.
        std::fs::write(&main, "save 900 1\nsave \"\"\nsave 5 5\n").unwrap();
        assert_eq!(run(&[m]).unwrap().save, vec![(5, 5)]);
        // A missing include names the file; a file including itself is refused.
        std::fs::write(&main, "include /nonexistent/percore.conf\n").unwrap();
        let e = run(&[m]).unwrap_err();
        assert!(
            e.contains(":1: cannot read config file '/nonexistent/percore.conf'"),
            "{e}"
        );
        std::fs::write(&main, format!("include {m}\n")).unwrap();
        assert!(run(&[m]).unwrap_err().contains("included again"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn numeric_errors_are_redis_texts() {
        let err = |name: &str, v: &str| {
            let mut c = Config::default();
            (find_param(name).unwrap().set)(&mut c, &[v.to_string()]).unwrap_err()
        };
        assert_eq!(
            err("timeout", "-1"),
            "argument must be between 0 and 2147483647 inclusive"
        );
        assert_eq!(
            err("timeout", "x"),
            "argument couldn't be parsed into an integer"
        );
        assert_eq!(
            err("maxmemory-samples", "0"),
            "argument must be between 1 and 2147483647 inclusive"
        );
        assert_eq!(
            err("maxclients", "0"),
            "argument must be between 1 and 4294967295 inclusive"
        );
        assert_eq!(
            err("proto-max-bulk-len", "1k"),
            "argument must be between 1048576 and 9223372036854775807 inclusive"
        );
        assert_eq!(err("maxmemory", "lots"), "argument must be a memory value");
        assert_eq!(
            err("dir", "/nonexistent/percore"),
            "No such file or directory"
        );
    }

    #[test]
    fn dir_is_absolute_and_help_lists_each_setting_once() {
        let c = run(&[]).unwrap();
        assert!(std::path::Path::new(&c.dir).is_absolute(), "{}", c.dir);
        assert_eq!(
            std::path::Path::new(&c.dir),
            std::env::current_dir().unwrap().canonicalize().unwrap()
        );
        let help = usage();
        for p in PARAMS {
            let flag = format!("  --{} ", p.name);
            assert_eq!(help.matches(&flag).count(), 1, "{flag} in --help");
        }
    }

    #[test]
    fn memory_units_follow_redis() {
        assert_eq!(parse_memory("1k").unwrap(), 1000);
        assert_eq!(parse_memory("1KB").unwrap(), 1024);
        assert_eq!(parse_memory("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_memory("3").unwrap(), 3);
        assert!(parse_memory("x").is_err());
    }
}
