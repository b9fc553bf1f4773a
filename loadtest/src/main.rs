//! percore-loadtest: a RESP load generator on io_uring, light enough that one core of it
//! saturates one core of a server, with memtier_benchmark's options and HdrHistogram latency.
//!
//! `percore-loadtest [options]` runs a load (see `config.rs`); `percore-loadtest report DIR`
//! turns a scenario's raw results into a Markdown table and an SVG chart (see `report.rs`).
//!
//! Threads share nothing on the request path: each owns its connections, ring, buffers and
//! histograms; the main thread only reads two relaxed counters per thread for the progress
//! line and merges the histograms at the end.

mod config;
mod keys;
mod pubsub;
mod report;
mod stats;
mod uring;
mod worker;

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use percore_proto::{scan_reply, ReplyKind};
use serde_json::json;

use config::{Config, Length, USAGE};
use stats::{RunInfo, Stats};
use worker::{Progress, Worker};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("pubsub") {
        return pubsub::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("report") {
        return match report::main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("percore-loadtest report: {e}");
                ExitCode::from(2)
            }
        };
    }
    run_mode("percore-loadtest", USAGE, Config::parse(args), run)
}

/// Runs one mode on its parsed options: a parse error exits 2 (an empty one prints `usage`
/// instead), a run that found faults exits 1, an error says `who` failed and exits 1.
pub(crate) fn run_mode<C>(
    who: &str,
    usage: &str,
    parsed: Result<C, String>,
    run: impl FnOnce(&C) -> Result<bool, String>,
) -> ExitCode {
    let cfg = match parsed {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            print!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{who}: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{who}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Sends one command and waits for its reply, before the load starts (AUTH, SELECT).
pub(crate) fn sync_command(s: &mut TcpStream, args: &[&[u8]]) -> Result<(), String> {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    s.write_all(&req).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    match read_reply(s, &mut buf, 0, &mut chunk)? {
        (len, ReplyKind::Error) => Err(String::from_utf8_lossy(&buf[1..len - 2]).into_owned()),
        _ => Ok(()),
    }
}

/// The next complete reply in `buf[at..]`, reading from `s` (into `chunk`, appended to
/// `buf`) until there is one: its length and kind. Blocking; the connection closing or
/// bytes that are not RESP are errors.
pub(crate) fn read_reply(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    at: usize,
    chunk: &mut [u8],
) -> Result<(usize, ReplyKind), String> {
    loop {
        match scan_reply(&buf[at..]) {
            Ok(Some(reply)) => return Ok(reply),
            Ok(None) => {}
            Err(e) => return Err(format!("malformed reply {e:?}")),
        }
        let n = s.read(chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn connect(cfg: &Config) -> Result<TcpStream, String> {
    let mut s = connect_to(&cfg.server, cfg.port, cfg.auth.as_deref())?;
    if let Some(db) = cfg.select_db {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        sync_command(&mut s, &[b"SELECT", db.to_string().as_bytes()])
            .map_err(|e| format!("SELECT failed: {e}"))?;
        s.set_read_timeout(None).map_err(|e| e.to_string())?;
    }
    Ok(s)
}

/// A connection with TCP_NODELAY, authenticated when `auth` is given (PASS or USER:PASS).
pub(crate) fn connect_to(server: &str, port: u16, auth: Option<&str>) -> Result<TcpStream, String> {
    let addr = (server, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {server}: {e}"))?
        .next()
        .ok_or_else(|| format!("{server} has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {server}:{port}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    if let Some(auth) = auth {
        let r = match auth.split_once(':') {
            Some((user, pass)) => {
                sync_command(&mut s, &[b"AUTH", user.as_bytes(), pass.as_bytes()])
            }
            None => sync_command(&mut s, &[b"AUTH", auth.as_bytes()]),
        };
        r.map_err(|e| format!("AUTH failed: {e}"))?;
    }
    s.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(s)
}

pub(crate) fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and has no other effect.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn config_json(cfg: &Config) -> serde_json::Value {
    json!({
        "server": cfg.server,
        "port": cfg.port,
        "threads": cfg.threads,
        "clients": cfg.clients,
        "pipeline": cfg.pipeline,
        "ratio": format!("{}:{}", cfg.ratio_set, cfg.ratio_get),
        "data_size": cfg.data_size,
        "key_prefix": cfg.key_prefix,
        "key_minimum": cfg.key_min,
        "key_maximum": cfg.key_max,
        "key_pattern": format!("{}:{}", cfg.set_pattern.letter(), cfg.get_pattern.letter()),
        "requests": match cfg.length { Length::Requests(n) => json!(n), Length::AllKeys => json!("allkeys"), Length::Time(_) => json!(null) },
        "test_time": match cfg.length { Length::Time(d) => json!(d.as_secs()), _ => json!(null) },
        "rate": cfg.rate,
        "distinct_client_seed": cfg.distinct_client_seed,
    })
}

/// Runs the load; Ok(false) when connections failed.
fn run(cfg: &Config) -> Result<bool, String> {
    let mut streams = Vec::with_capacity(cfg.connections());
    for _ in 0..cfg.connections() {
        streams.push(connect(cfg)?);
    }
    let stop = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    let progress: Vec<Progress> = (0..cfg.threads).map(|_| Progress::default()).collect();
    let show_progress = cfg.progress.unwrap_or(true);
    let cpu_start = cpu_seconds();
    let clock = Instant::now();
    let results = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        let mut rest = streams;
        for t in 0..cfg.threads {
            let mine: Vec<TcpStream> = rest.drain(..cfg.clients).collect();
            let (stop, finished, progress) = (&stop, &finished, &progress[t]);
            handles.push(scope.spawn(move || {
                let r = Worker::new(cfg, mine, t * cfg.clients, clock).and_then(|mut w| {
                    let secs = w.run(stop, progress)?;
                    Ok((std::mem::take(&mut w.stats), secs, w.io_mode()))
                });
                finished.fetch_add(1, Ordering::Release);
                if r.is_err() {
                    // One thread failing ends the run for all.
                    stop.store(true, Ordering::Relaxed);
                }
                r
            }));
        }
        progress_loop(cfg, clock, &finished, &progress, show_progress);
        handles
            .into_iter()
            .map(|h| h.join().expect("worker threads do not panic"))
            .collect::<Vec<io::Result<(Stats, f64, String)>>>()
    });
    let cpu = cpu_seconds() - cpu_start;
    let mut stats = Stats::default();
    let mut secs: f64 = 0.0;
    let mut io_mode = String::new();
    for r in results {
        let (s, t, mode) = r.map_err(|e| format!("io_uring: {e}"))?;
        stats.merge(&s);
        secs = secs.max(t);
        io_mode = mode;
    }
    let secs = secs.max(1e-9);
    let info = RunInfo {
        config: config_json(cfg),
        tags: &cfg.tags,
        seconds: secs,
        client_cpu_s: cpu,
        io_mode,
        slow: cfg.slow.map(|t| {
            (
                t,
                monotonic_ns().saturating_sub(clock.elapsed().as_nanos() as u64),
            )
        }),
    };
    print!("{}", stats::to_text(&stats, &info, cfg.hide_histogram));
    if let Some(path) = &cfg.json {
        let text = serde_json::to_string_pretty(&stats::to_json(&stats, &info))
            .expect("JSON values serialize");
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(stats.connection_errors == 0)
}

/// Now on CLOCK_MONOTONIC, the clock `Instant` reads on Linux, in ns.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and reads nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn progress_loop(
    cfg: &Config,
    clock: Instant,
    finished: &AtomicUsize,
    progress: &[Progress],
    show: bool,
) {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(2) } == 1;
    let mut last_ops = 0u64;
    let mut last_lat = 0u64;
    let mut tick = 0u64;
    let mut printed = false;
    while finished.load(Ordering::Acquire) < cfg.threads {
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = clock.elapsed();
        if !show || elapsed < Duration::from_secs(tick + 1) {
            continue;
        }
        tick = elapsed.as_secs();
        let ops: u64 = progress.iter().map(|p| p.ops.load(Ordering::Relaxed)).sum();
        let lat: u64 = progress
            .iter()
            .map(|p| p.latency_ns_sum.load(Ordering::Relaxed))
            .sum();
        let d_ops = ops.saturating_sub(last_ops);
        let d_lat = lat.saturating_sub(last_lat);
        let pct = match cfg.length {
            Length::Time(d) => format!("{:.0}%, ", 100.0 * elapsed.as_secs_f64() / d.as_secs_f64()),
            _ => String::new(),
        };
        let line = format!(
            "[RUN {pct}{tick} secs] {} threads, {} conns: {ops} ops, {d_ops} (avg {:.0}) ops/sec, {:.3} (avg {:.3}) msec latency",
            cfg.threads,
            cfg.connections(),
            ops as f64 / elapsed.as_secs_f64(),
            if d_ops > 0 { d_lat as f64 / d_ops as f64 / 1e6 } else { 0.0 },
            if ops > 0 { lat as f64 / ops as f64 / 1e6 } else { 0.0 },
        );
        if tty {
            eprint!("\r{line}    ");
        } else {
            eprintln!("{line}");
        }
        printed = true;
        last_ops = ops;
        last_lat = lat;
    }
    if printed && tty {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_ns_is_the_clock_instant_reads() {
        let before = Instant::now();
        let a = monotonic_ns();
        std::thread::sleep(Duration::from_millis(20));
        let b = monotonic_ns();
        let elapsed = before.elapsed().as_nanos() as u64;
        assert!(b - a >= 20_000_000, "{a} {b}");
        assert!(
            b - a <= elapsed,
            "{} ns between reads, {elapsed} ns by Instant",
            b - a
        );
    }
}
