//! SLOWLOG, LATENCY and MEMORY: the per-core slow logs and latency monitors (`latency.rs`) gathered
//! into the replies Redis gives, with one message per core.
//!
//! Slow-log ids are unique across cores (one global counter, touched only by slow commands),
//! so merging the cores' logs newest-first by id gives Redis's order.

use crate::client::Client;
use crate::core::{call_all, Core};
use crate::latency::{LatencyHist, LatencyMonitor, SlowEntry};
use percore_proto::{subcommands, Args, Cmd, CommandSpec, ReplyWriter, COMMANDS, SUBCOMMANDS};

const SLOWLOG_DEFAULT_COUNT: i64 = 10;

pub async fn slowlog(conn: &mut Client, spec: &CommandSpec, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    match spec.cmd {
        Cmd::SlowlogGet => {
            let count = match a.get(2) {
                None => SLOWLOG_DEFAULT_COUNT,
                Some(n) => match percore_proto::parse_i64(n) {
                    Some(n) if n >= -1 => n,
                    _ => return w.error("ERR count should be greater than or equal to -1"),
                },
            };
            let per_core = call_all(&conn.core, |c: &Core| {
                c.slowlog
                    .borrow()
                    .entries
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .await;
            let mut all: Vec<SlowEntry> = per_core.into_iter().flatten().collect();
            all.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
            // Each core keeps its newest `slowlog-max-len`; the log as a whole keeps as many.
            all.truncate(conn.core.config.borrow().slowlog_max_len);
            if count >= 0 {
                all.truncate(count as usize);
            }
            w.array(all.len());
            for e in &all {
                w.array(6);
                w.int(e.id as i64);
                w.int(e.time_s as i64);
                w.int(e.duration_us as i64);
                w.array(e.args.len());
                for arg in &e.args {
                    w.bulk(arg);
                }
                w.bulk(e.client_addr.as_bytes());
                w.bulk(&e.client_name);
            }
        }
        Cmd::SlowlogLen => {
            let lens = call_all(&conn.core, |c: &Core| c.slowlog.borrow().entries.len()).await;
            let max_len = conn.core.config.borrow().slowlog_max_len;
            w.int(lens.iter().sum::<usize>().min(max_len) as i64);
        }
        Cmd::SlowlogReset => {
            call_all(&conn.core, |c: &Core| {
                c.slowlog.borrow_mut().entries.clear()
            })
            .await;
            w.ok();
        }
        _ => crate::commands::help(
            w,
            "SLOWLOG",
            &[
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
            ],
        ),
    }
}

async fn merged(conn: &Client) -> LatencyMonitor {
    let per_core = call_all(&conn.core, |c: &Core| c.latency.borrow().clone()).await;
    let mut m = LatencyMonitor::default();
    for l in &per_core {
        m.merge(l);
    }
    m
}

pub async fn latency(conn: &mut Client, spec: &CommandSpec, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    match spec.cmd {
        Cmd::LatencyLatest => {
            let m = merged(conn).await;
            w.array(m.events.len());
            for (name, s) in &m.events {
                let (t, ms) = s.samples.back().copied().unwrap_or((0, 0));
                w.array(4);
                w.bulk(name.as_bytes());
                w.int(t as i64);
                w.int(ms as i64);
                w.int(s.max_ms as i64);
            }
        }
        Cmd::LatencyHistory => {
            let m = merged(conn).await;
            let name = String::from_utf8_lossy(&a[2]).to_ascii_lowercase();
            match m.events.iter().find(|(e, _)| *e == name) {
                None => w.array(0),
                Some((_, s)) => {
                    w.array(s.samples.len());
                    for &(t, ms) in &s.samples {
                        w.array(2);
                        w.int(t as i64);
                        w.int(ms as i64);
                    }
                }
            }
        }
        Cmd::LatencyReset => {
            let names: Vec<String> = a
                .iter()
                .skip(2)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            let mut existing = merged(conn).await;
            let count = existing.reset(&names);
            call_all(&conn.core, move |c: &Core| {
                c.latency.borrow_mut().reset(&names);
            })
            .await;
            w.int(count as i64);
        }
        Cmd::LatencyDoctor => {
            let threshold = conn.core.config.borrow().latency_monitor_threshold;
            let m = merged(conn).await;
            w.verbatim(b"txt", doctor(threshold, &m).as_bytes());
        }
        Cmd::LatencyHistogram => latency_histogram(conn, a, w).await,
        _ => crate::commands::help(
            w,
            "LATENCY",
            &[
                "DOCTOR",
                "    Return a human readable latency analysis report.",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HISTOGRAM [COMMAND ...]",
                "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
                "    If no commands are specified then all histograms are replied.",
            ],
        ),
    }
}

/// LATENCY HISTOGRAM [command ...]: each command's calls and cumulative latency
/// distribution ([`LatencyHist::cdf_usec`]) merged over the cores, as Redis 7.0 replies (a
/// map in RESP3, flat arrays in RESP2). Without names, every command that ran (subcommands
/// by their full name, `config|set`); with names, each one that ran and then each of its
/// subcommands that ran, in the order asked (unknown names are skipped, repeated ones
/// repeated, as Redis does).
async fn latency_histogram(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let hists = crate::info::gather(&conn.core).await.latency_histograms();
    let ran = |c: &'static CommandSpec| Some((c.name, hists[c.cmd as usize].as_ref()?));
    let listed: Vec<(&str, &LatencyHist)> = if a.len() == 2 {
        COMMANDS
            .iter()
            .chain(SUBCOMMANDS.iter())
            .filter_map(ran)
            .collect()
    } else {
        a.iter()
            .skip(2)
            .filter_map(crate::commands::find_command)
            .flat_map(|c| std::iter::once(c).chain(subcommands(c.cmd)))
            .filter_map(ran)
            .collect()
    };
    w.map(listed.len());
    for (name, h) in listed {
        w.bulk(name.as_bytes());
        w.map(2);
        w.bulk(b"calls");
        w.int(h.count as i64);
        w.bulk(b"histogram_usec");
        let cdf = h.cdf_usec();
        w.map(cdf.len());
        for (usec, calls) in cdf {
            w.int(usec as i64);
            w.int(calls as i64);
        }
    }
}

/// A short report in the spirit of Redis's LATENCY DOCTOR: what spiked, how often, how badly.
pub fn doctor(threshold_ms: u64, m: &LatencyMonitor) -> String {
    if threshold_ms == 0 {
        return "Latency monitoring is disabled in this percore instance. Enable it with \
                CONFIG SET latency-monitor-threshold <milliseconds>.\n"
            .into();
    }
    if m.events.is_empty() {
        return format!(
            "No latency spike (>= {threshold_ms} ms) was observed since the monitor was enabled \
             or last reset.\n"
        );
    }
    let mut out = format!("Latency spikes of {threshold_ms} ms or more, per event:\n\n");
    for (i, (name, s)) in m.events.iter().enumerate() {
        let n = s.samples.len() as u64;
        let avg = s.samples.iter().map(|x| x.1).sum::<u64>() / n.max(1);
        let first = s.samples.front().map_or(0, |x| x.0);
        let last = s.samples.back().map_or(0, |x| x.0);
        let period = if n > 1 { (last - first) / (n - 1) } else { 0 };
        out.push_str(&format!(
            "{}. {name}: {n} latency spikes (average {avg}ms, period {period} sec). Worst all time event {}ms.\n",
            i + 1,
            s.max_ms
        ));
    }
    out.push_str(
        "\nAdvice: \"command\" and \"fast-command\" spikes point at slow commands (see SLOWLOG GET); \
         \"expire-cycle\" spikes at many keys expiring at once.\n",
    );
    out
}

/// MEMORY STATS/DOCTOR/PURGE/MALLOC-STATS/HELP (MEMORY USAGE runs on the key's shard).
pub async fn memory(conn: &mut Client, spec: &CommandSpec, w: &mut ReplyWriter<'_>) {
    match spec.cmd {
        Cmd::MemoryStats => {
            let g = crate::info::gather(&conn.core).await;
            let (used, peak, keys) = (g.used_memory, g.peak, g.keys());
            let overhead = g.overhead();
            let dataset = g.dataset();
            let net = used.saturating_sub(g.startup()).max(1);
            let ints: [(&str, u64); 9] = [
                ("peak.allocated", peak),
                ("total.allocated", used),
                ("startup.allocated", g.startup()),
                ("replication.backlog", 0),
                ("clients.slaves", 0),
                ("aof.buffer", 0),
                ("overhead.total", overhead),
                ("keys.count", keys),
                ("dataset.bytes", dataset),
            ];
            let doubles: [(&str, f64); 5] = [
                (
                    "keys.bytes-per-key",
                    if keys > 0 {
                        net as f64 / keys as f64
                    } else {
                        0.0
                    },
                ),
                ("dataset.percentage", dataset as f64 * 100.0 / net as f64),
                ("peak.percentage", used as f64 * 100.0 / peak.max(1) as f64),
                ("rss-overhead.ratio", g.rss as f64 / used.max(1) as f64),
                ("fragmentation", g.rss as f64 / used.max(1) as f64),
            ];
            w.map(ints.len() + doubles.len() + 1);
            for (k, v) in ints {
                w.bulk(k.as_bytes());
                w.int(v as i64);
            }
            for (k, v) in doubles {
                w.bulk(k.as_bytes());
                w.double_text(format!("{v:.6}").as_bytes());
            }
            w.bulk(b"fragmentation.bytes");
            w.int(g.rss as i64 - used as i64);
        }
        Cmd::MemoryDoctor => {
            let g = crate::info::gather(&conn.core).await;
            w.verbatim(b"txt", memory_doctor(&g).as_bytes());
        }
        Cmd::MemoryPurge => {
            // Frees the spare network buffers and returns freed heap pages to the system on
            // every core's thread (mimalloc's heaps are per thread).
            call_all(&conn.core, |_: &Core| {
                crate::runtime::release_spare_buffers();
                crate::alloc::purge()
            })
            .await;
            w.ok();
        }
        Cmd::MemoryMallocStats => w.verbatim(b"txt", crate::alloc::stats_text().as_bytes()),
        _ => crate::commands::help(
            w,
            "MEMORY",
            &[
                "DOCTOR",
                "    Return memory problems reports.",
                "MALLOC-STATS",
                "    Return internal statistics report from the memory allocator.",
                "PURGE",
                "    Attempt to purge dirty pages for reclamation by the allocator.",
                "STATS",
                "    Return information about the memory usage of the server.",
                "USAGE <key> [SAMPLES <count>]",
                "    Return memory in bytes used by <key> and its value. Nested values are",
                "    sampled up to <count> times (default: 5, 0 means sample all).",
            ],
        ),
    }
}

fn memory_doctor(g: &crate::info::Gathered) -> String {
    let used = g.used_memory;
    if used < (5 << 20) + g.startup() {
        return "This instance holds too little data for the memory doctor to judge. Fill it \
                with some data and ask again.\n"
            .into();
    }
    let mut issues = Vec::new();
    let frag = g.rss as f64 / used as f64;
    if frag > 1.4 {
        issues.push(format!(
            "High fragmentation: RSS is {frag:.2} times the allocated memory. MEMORY PURGE \
             returns free pages to the system; a restart compacts fully."
        ));
    }
    if g.peak as f64 > used as f64 * 1.5 {
        issues.push(format!(
            "Peak memory: the peak ({} bytes) is over 150% of what is used now ({used} bytes); \
             RSS may stay near the peak until pages are returned (MEMORY PURGE).",
            g.peak
        ));
    }
    if g.config.maxmemory > 0 && used > g.config.maxmemory {
        issues.push(format!(
            "Over maxmemory: {used} bytes used for a limit of {}; policy {}.",
            g.config.maxmemory,
            g.config.evict.policy.name()
        ));
    }
    if issues.is_empty() {
        "No memory problems detected.\n".into()
    } else {
        let mut out = String::from("Memory problems detected:\n\n");
        for (i, s) in issues.iter().enumerate() {
            out.push_str(&format!(" * {}. {s}\n", i + 1));
        }
        out
    }
}
