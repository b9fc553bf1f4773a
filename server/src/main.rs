//! `percore`: the server binary. Reads the configuration, checks the host (locked memory,
//! io_uring), starts one pinned executor per shard, each with its own SO_REUSEPORT listener,
//! and shuts down cleanly on SIGTERM/SIGINT or SHUTDOWN.

mod acl;
mod alloc;
mod blocking;
mod check_rdb;
mod client;
mod cluster;
mod commands;
mod config;
mod conn;
mod coordinated;
mod core;
mod debug;
mod dispatch;
mod functions;
mod info;
mod latency;
mod log;
mod lua_cjson;
mod lua_cmsgpack;
mod lua_struct;
mod metrics;
mod migrate;
mod monitor;
mod multi;
mod pause;
mod persist;
mod pubsub;
mod rdb_io;
mod repl;
mod router;
mod runtime;
mod scripting;
mod tls;
mod tracking;
mod txlock;

use crate::config::{Config, Invocation};
use crate::core::{Core, CoreStats, Global, Job, MAILBOX_CAPACITY};
use percore_shard::{Shard, ShardConfig};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: alloc::CountingAlloc = alloc::CountingAlloc;

fn main() {
    alloc::configure();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "check-rdb") {
        std::process::exit(check_rdb::run(&args[1..]));
    }
    let cfg = match config::parse_args(&args) {
        Ok(Invocation::Run(c)) => *c,
        Ok(Invocation::CheckSnapshot(c)) => std::process::exit(persist::check(&c)),
        Ok(Invocation::ExportRdb(c, out)) => std::process::exit(rdb_io::export_command(&c, &out)),
        Ok(Invocation::Help) => {
            print!("{}", config::usage());
            return;
        }
        Ok(Invocation::Version) => {
            println!(
                "percore {} (Redis {} compatible)",
                commands::PERCORE_VERSION,
                commands::REDIS_VERSION
            );
            return;
        }
        Err(e) => {
            eprintln!("percore: {e}");
            std::process::exit(1);
        }
    };
    latency::set_thread_cpu_clock(cfg.latency_clock_cpu);
    if let Err(e) = run(cfg) {
        eprintln!("percore: {e}");
        std::process::exit(1);
    }
}

/// CPUs this process may run on (its affinity mask).
fn usable_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask we own; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    if !ok {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    // SAFETY: CPU_ISSET reads the mask filled above; i is below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// The cgroup v2 CPU quota, rounded up to whole CPUs, if one is set.
fn cgroup_cpu_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok()?;
    let mut it = text.split_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next()?.parse().ok()?;
    (period > 0.0).then(|| (quota / period).ceil().max(1.0) as usize)
}

/// Makes sure each executor can lock its io_uring memory, raising the soft limit when the
/// hard limit allows; otherwise explains how to fix it.
fn check_memlock(shards: usize, io_memory: usize) -> Result<(), String> {
    const GLOMMIO_MIN: u64 = 512 * 1024;
    // glommio registers the io_memory slab with each of its three rings, and each registration
    // is charged to RLIMIT_MEMLOCK; the rings themselves take a little more. (Measured: with
    // 256 KiB slabs, 10 shards fit an 8 MiB limit and the 11th failed with ENOMEM.)
    let need = (shards as u64) * (3 * io_memory as u64 + 64 * 1024);
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Ok(());
    }
    let privileged = unsafe { libc::geteuid() } == 0;
    let enough = |cur: u64| {
        cur == libc::RLIM_INFINITY || (cur >= GLOMMIO_MIN && (privileged || cur >= need))
    };
    if enough(lim.rlim_cur) {
        return Ok(());
    }
    let want = need.max(GLOMMIO_MIN);
    let raised = libc::rlimit {
        rlim_cur: want.min(lim.rlim_max).max(lim.rlim_cur),
        rlim_max: lim.rlim_max.max(if privileged { want } else { 0 }),
    };
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) };
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if enough(lim.rlim_cur) {
        return Ok(());
    }
    Err(format!(
        "too little locked memory: percore needs {} KiB ({shards} shards x {} KiB of io_uring memory each) but RLIMIT_MEMLOCK is {} KiB (hard limit {} KiB).\n\
         Fix one of: run under systemd with LimitMEMLOCK=infinity (deploy/percore.service); `ulimit -l unlimited` in the starting shell; \
         Docker `--ulimit memlock=-1`; or lower --shards / --io-memory.",
        want / 1024,
        (3 * io_memory + 64 * 1024) / 1024,
        lim.rlim_cur / 1024,
        if lim.rlim_max == libc::RLIM_INFINITY { u64::MAX / 1024 } else { lim.rlim_max / 1024 }
    ))
}

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread (threads inherit the mask) and waits
/// for them on a thread of their own, as Redis treats them: TERM and INT ask for a shutdown
/// (core 0 saves first when `save` points are set), a second INT while it runs exits at once,
/// and HUP is logged and ignored (Redis ignores it; a daemon's terminal going away must not
/// stop the server).
fn handle_signals(global: Arc<Global>) {
    // SAFETY: sigset operations on a set we own; pthread_sigmask affects only this thread
    // (and threads it creates afterwards).
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    std::thread::Builder::new()
        .name("percore-signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads the set built above and writes the signal number.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            if sig == libc::SIGHUP {
                log::notice("Received SIGHUP: ignored (percore reloads nothing on SIGHUP; change settings with CONFIG SET, or restart)");
                continue;
            }
            let pending = global.shutdown_signal.swap(sig, Ordering::SeqCst);
            if pending != 0 && sig == libc::SIGINT {
                // Ctrl+C twice: the user wants out now, without the final save. The previous
                // snapshot set stays whole; the next save removes this one's partial files.
                log::warn("You insist... exiting now.");
                std::process::exit(1);
            }
            let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
            log::warn(&format!("Received {name} scheduling shutdown..."));
        })
        .expect("spawning the signal thread at start");
}

/// Descriptors percore keeps for itself besides its clients: Redis's 32 (listeners,
/// snapshot files, logs), and per shard its io_uring rings, eventfds, timers and metrics
/// scrapes.
pub(crate) fn reserved_fds(shards: usize) -> u64 {
    32 + 16 * shards as u64
}

/// How the open-files limit compares with what `maxclients` needs.
enum OpenFiles {
    Enough,
    Raised {
        from: u64,
        to: u64,
    },
    /// The limit could only be raised to `limit`; `maxclients` clients fit.
    Short {
        limit: u64,
        maxclients: usize,
        error: String,
    },
}

/// Raises RLIMIT_NOFILE to fit `maxclients` plus [`reserved_fds`], as Redis's
/// adjustOpenFilesLimit does, and reports how many clients fit when it cannot.
fn fit_open_files(maxclients: usize, shards: usize) -> OpenFiles {
    let reserved = reserved_fds(shards);
    let want = maxclients as u64 + reserved;
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return OpenFiles::Enough;
    }
    let old = lim.rlim_cur;
    if old >= want {
        return OpenFiles::Enough;
    }
    // The limit can go as high as `want`, the kernel's ceiling (fs.nr_open, when privileged)
    // or the hard limit (when not): a few attempts, best first, instead of Redis's walk down
    // in steps of 16, which for a huge maxclients is millions of system calls.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(want);
    let mut tries = [want, want.min(nr_open), want.min(lim.rlim_max)];
    tries.sort_unstable_by(|a, b| b.cmp(a));
    let mut best = old;
    let mut error = String::new();
    for t in tries.into_iter().filter(|&t| t > old) {
        // Raise the hard limit too when allowed (CAP_SYS_RESOURCE); never lower it.
        let try_lim = libc::rlimit {
            rlim_cur: t,
            rlim_max: t.max(lim.rlim_max),
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &try_lim) } == 0 {
            best = t;
            break;
        }
        error = config::os_error_text(&std::io::Error::last_os_error());
    }
    if best >= want {
        return OpenFiles::Raised {
            from: old,
            to: best,
        };
    }
    OpenFiles::Short {
        limit: best,
        maxclients: best.saturating_sub(reserved) as usize,
        error,
    }
}

/// At start: fits `maxclients` to the descriptors the process may open, with Redis's log
/// lines, or refuses to start when not even the reserve fits.
fn fit_maxclients(cfg: &mut Config, shards: usize) -> Result<(), String> {
    match fit_open_files(cfg.maxclients, shards) {
        OpenFiles::Enough => Ok(()),
        OpenFiles::Raised { from, to } => {
            log::notice(&format!("Increased maximum number of open files to {to} (it was originally set to {from})."));
            Ok(())
        }
        OpenFiles::Short { limit, maxclients: 0, .. } => Err(format!(
            "Your current 'ulimit -n' of {limit} is not enough for the server to start. Please increase your open file limit to at least {}. Exiting.",
            cfg.maxclients as u64 + reserved_fds(shards)
        )),
        OpenFiles::Short { limit, maxclients, error } => {
            let need = cfg.maxclients as u64 + reserved_fds(shards);
            log::warn(&format!("You requested maxclients of {} requiring at least {need} max file descriptors.", cfg.maxclients));
            log::warn(&format!("Server can't set maximum open files to {need} because of OS error: {error}."));
            log::warn(&format!("Current maximum open files is {limit}. maxclients has been reduced to {maxclients} to compensate for low ulimit. If you need higher maxclients increase 'ulimit -n' (LimitNOFILE under systemd)."));
            cfg.maxclients = maxclients;
            Ok(())
        }
    }
}

/// CONFIG SET maxclients: raises the open-files limit for `maxclients`, or answers Redis's
/// error naming how many clients fit.
pub(crate) fn check_maxclients(maxclients: usize, shards: usize) -> Result<(), String> {
    match fit_open_files(maxclients, shards) {
        OpenFiles::Short { maxclients: fit, .. } => Err(format!(
            "The operating system is not able to handle the specified number of clients, try with {fit}"
        )),
        _ => Ok(()),
    }
}

/// Checks that nobody listens on `addr` with a plain bind (no SO_REUSEPORT, so it fails if
/// any socket listens there). A previous percore that has just exited can hold its
/// listening sockets for a few milliseconds more, while the kernel tears its io_uring rings
/// down: AddrInUse is retried for up to a second before it is reported.
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        // std's listener sets SO_REUSEADDR: connections in TIME-WAIT do not count.
        match std::net::TcpListener::bind(addr) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn random_hex(n: usize) -> String {
    let mut x = crate::core::now_us() ^ (std::process::id() as u64).rotate_left(32);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            std::char::from_digit((x % 16) as u32, 16).expect("digit below 16")
        })
        .collect()
}

fn run(cfg: Config) -> Result<(), String> {
    log::set_level(&cfg.loglevel);
    let cpus = usable_cpus();
    let auto = cgroup_cpu_limit()
        .map_or(cpus.len(), |q| q.min(cpus.len()))
        .max(1);
    let n = if cfg.shards == 0 { auto } else { cfg.shards };
    let pin = n <= cpus.len();
    check_memlock(n, cfg.io_memory)?;
    let mut cfg = cfg;
    fit_maxclients(&mut cfg, n)?;
    runtime::set_zerocopy_min(cfg.zerocopy_send_min_bytes);
    let binds: Vec<IpAddr> = cfg
        .bind
        .iter()
        .map(|b| {
            b.trim_start_matches('-')
                .parse()
                .map_err(|_| format!("bind: '{b}' is not an IP address"))
        })
        .collect::<Result<_, _>>()?;
    // The ports served: plain TCP (`port`, 0 for none, as Redis) and TLS (`tls-port`).
    if cfg.port == 0 && cfg.tls.port == 0 {
        return Err("nothing to serve: port and tls-port are both 0".into());
    }
    if cfg.port != 0 && cfg.port == cfg.tls.port {
        return Err("tls-port must differ from port".into());
    }
    tls::install(&cfg.tls).map_err(|e| format!("TLS: {e}"))?;
    percore_proto::command::set_renames(&cfg.rename_command)
        .map_err(|e| format!("rename-command: {e}"))?;
    cluster::init(&cfg)?;
    let ports: Vec<(u16, bool)> = [(cfg.port, false), (cfg.tls.port, true)]
        .into_iter()
        .filter(|(p, _)| *p != 0)
        .collect();
    // Shards bind with SO_REUSEPORT, which would let a second percore on the same port
    // silently take half the connections. A plain bind first fails if anyone listens there.
    for ip in &binds {
        for &(port, tls) in &ports {
            let addr = SocketAddr::new(*ip, port);
            if let Err(e) = probe_bind(addr) {
                let hint = match (e.kind() == std::io::ErrorKind::AddrInUse, tls) {
                    (true, false) => " (is another Redis or percore running on that port? choose another with --port)",
                    (true, true) => " (is another Redis or percore running on that port? choose another with --tls-port)",
                    _ => "",
                };
                return Err(format!("cannot listen on {addr}: {e}{hint}"));
            }
        }
    }
    // The Prometheus endpoint, served by core 0; checked here so a taken port is a clear
    // start-up error.
    let metrics_addr = if cfg.metrics_port == 0 {
        None
    } else {
        let host = if cfg.metrics_bind.is_empty() {
            binds
                .first()
                .copied()
                .unwrap_or(IpAddr::from([127, 0, 0, 1]))
        } else {
            cfg.metrics_bind
                .parse()
                .map_err(|_| format!("metrics-bind: '{}' is not an IP address", cfg.metrics_bind))?
        };
        let addr = SocketAddr::new(host, cfg.metrics_port);
        if cfg.metrics_port == cfg.port {
            return Err("metrics-port must differ from port: the RESP port refuses HTTP".into());
        }
        probe_bind(addr)
            .map_err(|e| format!("cannot listen on {addr} for metrics: {e} (choose another --metrics-port, or 0 for none)"))?;
        Some(addr)
    };
    let run_id = random_hex(40);
    let global = Arc::new(Global {
        nshards: n,
        evict_dry: (0..n).map(|_| AtomicBool::new(false)).collect(),
        config: Mutex::new((1, Arc::new(cfg.clone()))),
        connected: AtomicUsize::new(0),
        next_client_id: AtomicU64::new(1),
        next_slowlog_id: AtomicU64::new(0),
        startup_allocated: AtomicU64::new(0),
        rejected_connections: AtomicU64::new(0),
        blocked_clients: AtomicUsize::new(0),
        shutdown: AtomicBool::new(false),
        shutdown_signal: std::sync::atomic::AtomicI32::new(0),
        serving: AtomicBool::new(false),
        saving: AtomicBool::new(false),
        last_save_ok: AtomicBool::new(true),
        last_save_ms: AtomicU64::new(crate::core::now_ms()),
        dirty_at_save: AtomicU64::new(0),
        bgsave_started_ms: AtomicU64::new(0),
        last_bgsave_s: std::sync::atomic::AtomicI64::new(-1),
        bgsave_scheduled: AtomicBool::new(false),
        started: Instant::now(),
        started_unix_ms: crate::core::now_ms(),
        run_id: run_id.clone(),
        repl_id: Mutex::new(run_id),
        active_expire: AtomicBool::new(true),
        pubsub_subs: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        monitors: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        monitors_total: AtomicUsize::new(0),
        tracking_clients: AtomicUsize::new(0),
        acl: crate::acl::Acl::new(&cfg)?,
        port: cfg.port,
        executable: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        repl: crate::repl::Shared::default(),
    });
    global.repl.configure(&cfg);
    handle_signals(global.clone());
    // Each core reports here once it has closed its clients at shutdown. The main thread
    // waits on it, waking ten times a second to look for a stranded core (below).
    let (stopped_tx, stopped_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mesh = runtime::mesh::<Job>(n, MAILBOX_CAPACITY);
    let seed = crate::core::now_us();
    for (i, ends) in mesh.into_iter().enumerate() {
        let (global, ready, stopped, binds, ports) = (
            global.clone(),
            ready_tx.clone(),
            stopped_tx.clone(),
            binds.clone(),
            ports.clone(),
        );
        let cpu = pin.then(|| cpus[i]);
        let cfg = Arc::new(cfg.clone());
        runtime::start_core(i, cpu, cfg.io_memory, move || async move {
            let (mailbox, inbox) = ends.split();
            let shard_seed = seed.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let core = Rc::new_cyclic(|me| Core {
                me: me.clone(),
                id: i,
                global: global.clone(),
                blocking: RefCell::new(Default::default()),
                locks: RefCell::new(Default::default()),
                shard: RefCell::new({ let mut sh = Shard::new(shard_seed, ShardConfig { proto_max_bulk_len: cfg.proto_max_bulk_len, evict: cfg.evict, hash_limits: cfg.hash_limits, set_limits: cfg.set_limits, list_limits: cfg.list_limits, zset_limits: cfg.zset_limits, hll_sparse_max_bytes: cfg.hll_sparse_max_bytes }); sh.set_notify(cfg.notify_keyspace_events); sh }),
                config: RefCell::new(cfg.clone()),
                config_version: Cell::new(1),
                mailbox,
                clients: RefCell::new(HashMap::new()),
                stats: RefCell::new(CoreStats::default()),
                slowlog: RefCell::new(Default::default()),
                latency: RefCell::new(Default::default()),
                pubsub: RefCell::new(Default::default()),
                replies: Default::default(),
                listeners: RefCell::new(Vec::new()),
            });
            tracking::apply_max_keys(&core, cfg.tracking_table_max_keys);
            {
                let core = core.clone();
                runtime::spawn(async move {
                    while let Some(job) = inbox.recv().await {
                        job(&core);
                        // A job that stored a list where clients wait serves them now.
                        blocking::serve_ready(&core);
                    }
                });
            }
            let mut listeners = Vec::new();
            for (ip, &(port, tls)) in binds.iter().flat_map(|ip| ports.iter().map(move |p| (ip, p))) {
                let addr = SocketAddr::new(*ip, port);
                match runtime::Listener::bind(addr) {
                    Ok(l) => {
                        core.listeners.borrow_mut().push(l.closer());
                        listeners.push((l, tls));
                    }
                    Err(e) => {
                        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                            " (is another Redis or percore running on that port? choose another with --port)"
                        } else {
                            ""
                        };
                        let _ = ready.send(Err(format!("cannot listen on {addr}: {e}{hint}")));
                        return;
                    }
                }
            }
            if let (0, Some(addr)) = (i, metrics_addr) {
                match runtime::Listener::bind(addr) {
                    Ok(l) => {
                        core.listeners.borrow_mut().push(l.closer());
                        runtime::spawn(metrics::serve(core.clone(), l));
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("cannot listen on {addr} for metrics: {e}")));
                        return;
                    }
                }
            }
            // The snapshot set or an RDB file, if any: every core loads its part in parallel before any
            // core serves.
            let t0 = Instant::now();
            let loaded = match rdb_io::file_at_start(&cfg, i) {
                Some(path) => rdb_io::import(&cfg, &path, &mut core.shard.borrow_mut(), i, n).map(|l| {
                    log::notice(&format!(
                        "shard {i}: loaded {} keys of the RDB file {} in {:.3} s ({} already expired{})",
                        l.keys,
                        path.display(),
                        t0.elapsed().as_secs_f64(),
                        l.expired,
                        if i == 0 { format!(", {} function libraries", l.functions) } else { String::new() }
                    ));
                    persist::Loaded::default()
                }),
                None => persist::load(&cfg, &mut core.shard.borrow_mut(), i, n),
            };
            match loaded {
                Ok(l) if l.id != 0 => log::notice(&format!(
                    "shard {i}: loaded {} keys of snapshot {} in {:.3} s",
                    l.keys,
                    l.id,
                    t0.elapsed().as_secs_f64()
                )),
                Ok(_) => {}
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            }
            let _ = ready.send(Ok(()));
            // Clients wait in the listeners' backlog until every shard has loaded (the main
            // thread sets `serving` then); a few milliseconds of polling, at start only.
            while !core.global.serving.load(Ordering::Acquire) {
                runtime::sleep(Duration::from_millis(1)).await;
            }
            // Cluster mode: core 0 makes replication follow the cluster view (replicas,
            // failover).
            if i == 0 && cluster::enabled() {
                runtime::spawn(cluster::run(core.clone()));
            }
            // `replicaof` in the configuration: core 0 starts the link.
            if let (0, Some((host, port))) = (i, cfg.replicaof.clone()) {
                let core = core.clone();
                runtime::spawn(async move { repl::replica::follow(&core, host, port).await });
            }
            for (l, tls) in listeners {
                let core = core.clone();
                runtime::spawn(async move {
                    loop {
                        let mut s = l.next().await;
                        if tls && !tls::start(&mut s) {
                            continue;
                        }
                        if !core.global.shutdown.load(Ordering::Relaxed) {
                            runtime::spawn_connection(conn::serve(core.clone(), s));
                        }
                    }
                });
            }
            background(core, stopped).await;
        })
        .map_err(|e| {
            if e.to_string().contains("os error 12") {
                // ENOMEM from io_uring setup is the locked-memory limit, whatever check_memlock
                // estimated.
                format!(
                    "too little locked memory: shard {i} could not lock its io_uring memory ({e}).\n\
                     Fix one of: run under systemd with LimitMEMLOCK=infinity (deploy/percore.service); \
                     `ulimit -l unlimited`; Docker `--ulimit memlock=-1`; or lower --shards / --io-memory."
                )
            } else {
                format!(
                    "cannot start the io_uring executor for shard {i}: {e}.\n\
                     percore needs Linux 6.0+ with io_uring enabled (see /proc/sys/kernel/io_uring_disabled; \
                     container runtimes' default seccomp profiles block io_uring: see deploy/README.md)"
                )
            }
        })?;
    }
    drop(ready_tx);
    // Every shard reports once it listens. A shard that never does would leave a server that
    // serves some connections and not others: refuse to run half-started.
    let deadline = Instant::now() + Duration::from_secs(30);
    for started in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready_rx.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("only {started} of {n} shards started within 30 s; giving up rather than serving half the keyspace"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("a shard exited during start".into()),
        }
    }
    global
        .startup_allocated
        .store(alloc::total_allocated().max(0) as u64, Ordering::Relaxed);
    global.serving.store(true, Ordering::Release);
    log::notice(&format!(
        "percore {} ready: {} shard(s){}, Redis {} protocol on {} port {}",
        commands::PERCORE_VERSION,
        n,
        if pin {
            " pinned one per CPU"
        } else {
            " (more shards than CPUs: not pinned)"
        },
        commands::REDIS_VERSION,
        cfg.bind.join(" "),
        cfg.port
    ));
    drop(stopped_tx);
    // Every core reports once; a core thread that ended without reporting drops its sender,
    // and when none is left the wait ends too.
    //
    // Meanwhile the main thread looks ten times a second (once a second while every core
    // sleeps in its network ring: `runtime::next_rescue_in`) for a stranded core and wakes
    // it from outside: the last resort against glommio's parking bug,
    // a core asleep with runnable tasks and no timer left to end the sleep (seen under CPU
    // contention with 8 MB requests, and with a SIGTERM'd server whose shutdown work was
    // stranded). See `runtime::rescue_stranded_cores`.
    let mut stopped = 0;
    while stopped < n {
        match stopped_rx.recv_timeout(runtime::next_rescue_in()) {
            Ok(()) => stopped += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                runtime::rescue_stranded_cores();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    log::notice("percore is now ready to exit, bye bye...");
    // Executors may still hold tasks waiting on each other; nothing remains to be saved, so
    // the process ends here rather than unwinding them.
    std::process::exit(0);
}

/// Background work of one core, on a low-priority queue: active expiry, lazy free, rehash,
/// idle-client timeouts, ops/sec sampling; and the shutdown sequence.
async fn background(core: Rc<Core>, stopped: mpsc::Sender<()>) {
    let (tx, rx) = futures_channel::oneshot::channel::<()>();
    let bg = core.clone();
    runtime::spawn_background(async move {
        let mut last_timeout_check = Instant::now();
        let mut last_save_check = Instant::now();
        loop {
            let hz = bg.config.borrow().hz.max(1);
            let period = Duration::from_millis(1000 / hz as u64);
            runtime::guard_tick(Instant::now() + period);
            runtime::sleep(period).await;
            if bg.id == 0 && bg.global.shutdown_signal.load(Ordering::SeqCst) != 0 {
                // SIGTERM/SIGINT: save if `save` points are set, then exit; a failed save
                // keeps the server running, as Redis does.
                if persist::shutdown(&bg, None, false).await.is_err() {
                    let sig = bg.global.shutdown_signal.swap(0, Ordering::SeqCst);
                    let name = if sig == libc::SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    log::warn(&format!("{name} received but errors trying to shut down the server, check the logs for more information"));
                }
            }
            if bg.global.shutdown.load(Ordering::SeqCst) {
                break;
            }
            // Redis's budget: up to 25% of a tick on active expiry, in small bounded steps.
            let slice = Duration::from_micros(250_000 / hz as u64);
            let t0 = Instant::now();
            let mut busy = Duration::ZERO;
            // While a script here is busy nothing else changes the shard between its slices
            // (scripting.rs, "Busy scripts"): expiry, eviction and lazy free wait.
            // DEBUG SET-ACTIVE-EXPIRE 0 turns the cycle off (lazy expiry goes on).
            while !scripting::busy() && bg.global.active_expire.load(Ordering::Relaxed) {
                let t = Instant::now();
                let step = bg.shard.borrow_mut().expire_step(crate::core::now_ms(), 64);
                busy += t.elapsed();
                // Expired keys' events and invalidations go out now.
                blocking::serve_ready(&bg);
                if step.sampled == 0 || step.expired * 4 < step.sampled || t0.elapsed() > slice {
                    break;
                }
                runtime::yield_if_needed().await;
            }
            // The latency monitor's expire-cycle event: time spent expiring, not time yielded.
            let threshold = bg.config.borrow().latency_monitor_threshold;
            let ms = busy.as_millis() as u64;
            if threshold > 0 && ms >= threshold {
                bg.latency
                    .borrow_mut()
                    .add("expire-cycle", crate::core::now_ms() / 1000, ms);
            }
            // Over maxmemory (a lowered limit, or writes that outran per-command eviction):
            // evict in bounded steps within the same budget as active expiry.
            let limit = bg.memory_limit();
            if limit > 0 {
                let t0 = Instant::now();
                while !scripting::busy() {
                    let over = &mut || crate::core::over_limit(limit);
                    let r = bg
                        .shard
                        .borrow_mut()
                        .evict(crate::core::now_ms(), 256, over);
                    if bg.shard.borrow().config.evict.policy
                        != percore_shard::evict::Policy::NoEviction
                    {
                        bg.note_evict_dry(matches!(
                            r,
                            percore_shard::evict::Evicted::Impossible(_)
                        ));
                    }
                    blocking::serve_ready(&bg);
                    if !matches!(r, percore_shard::evict::Evicted::Budget(_))
                        || t0.elapsed() > slice
                    {
                        break;
                    }
                    runtime::yield_if_needed().await;
                }
            }
            let t0 = Instant::now();
            while !scripting::busy()
                && bg.shard.borrow_mut().lazyfree_step(1024, 1)
                && t0.elapsed() < slice
            {
                runtime::yield_if_needed().await;
            }
            // Rehashing within the same budget (Redis gives it 1 ms per tick, which leaves a
            // 10M-key table holding both arrays for a minute); steps of 128 buckets, and this
            // queue yields to connections whenever they are waiting.
            let t0 = Instant::now();
            while bg.shard.borrow_mut().rehash_step(128) && t0.elapsed() < slice {
                runtime::yield_if_needed().await;
            }
            {
                let mut st = bg.stats.borrow_mut();
                let idx = st.ops_sample_idx % 16;
                st.ops_samples[idx] = (crate::core::now_ms(), st.commands_processed);
                st.ops_sample_idx = (idx + 1) % 16;
            }
            if bg.id == 0 && last_save_check.elapsed() >= Duration::from_secs(1) {
                last_save_check = Instant::now();
                persist::save_points_tick(&bg).await;
            }
            let timeout = bg.config.borrow().timeout;
            if timeout > 0 && last_timeout_check.elapsed() >= Duration::from_secs(1) {
                last_timeout_check = Instant::now();
                let now = Instant::now();
                for h in bg.clients.borrow().values() {
                    // A blocked client waits by request: its own timeout governs it (Redis
                    // exempts blocked clients too).
                    // Subscribers wait by design too.
                    let subscribed = {
                        let i = h.info.borrow();
                        i.sub + i.psub + i.ssub > 0
                    };
                    if h.blocked.borrow().is_none()
                        && !subscribed
                        && now
                            .duration_since(h.info.borrow().last_interaction)
                            .as_secs()
                            >= timeout
                    {
                        h.kill();
                    }
                }
            }
        }
        let _ = tx.send(());
    });
    let _ = rx.await;
    // Shutdown: stop listening (so the port is free for the next start at once), close this
    // core's clients, then report; the main thread exits once every core has done so.
    for l in core.listeners.borrow().iter() {
        l.close();
    }
    for h in core.clients.borrow().values() {
        h.kill();
    }
    let _ = stopped.send(());
    loop {
        runtime::sleep(Duration::from_secs(3600)).await;
    }
}
