//! Results: per-command-type latency histograms (HdrHistogram, nanoseconds, 3 significant
//! digits, fixed bounds so recording never allocates), hit/miss/error counts, and the text and
//! JSON reports built from them.

use hdrhistogram::Histogram;
use percore_proto::ReplyKind;
use serde_json::{json, Value};

use crate::keys::Op;

/// Highest latency recorded exactly: 100 s; slower replies saturate at it.
const MAX_NS: u64 = 100_000_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("static histogram bounds are valid")
}

#[derive(Clone)]
pub struct TypeStats {
    pub hist: Histogram<u64>,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
}

impl Default for TypeStats {
    fn default() -> Self {
        TypeStats {
            hist: histogram(),
            hits: 0,
            misses: 0,
            errors: 0,
        }
    }
}

impl TypeStats {
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    fn add(&mut self, o: &TypeStats) {
        self.hist.add(&o.hist).expect("histograms share bounds");
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
    }
}

/// What one thread measured.
#[derive(Clone, Default)]
pub struct Stats {
    pub set: TypeStats,
    pub get: TypeStats,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub connection_errors: u64,
    pub first_error: Option<String>,
    /// Requests sent whose reply never came (the run ended or the connection broke).
    pub unanswered: u64,
    /// Replies and the sum of their latencies, kept as plain counters for the progress line
    /// (reading the histograms each loop turn would cost more than the load itself).
    pub replies: u64,
    pub latency_ns_sum: u64,
    /// With `--slow`: requests at least that slow, as (sent, latency) in ns, sent counted from
    /// the run's start; at most [`SLOW_MAX`] of them, the rest only counted.
    pub slow: Vec<(u64, u64)>,
    pub slow_dropped: u64,
}

/// The most slow requests kept for the report (16 bytes each).
pub const SLOW_MAX: usize = 100_000;

impl Stats {
    /// Empty stats; with `slow`, the slow list is allocated whole up front ([`SLOW_MAX`]
    /// entries, 1.6 MB) so listing a request never grows a vector while replies are timed.
    pub fn with_slow_list(slow: bool) -> Stats {
        Stats {
            slow: Vec::with_capacity(if slow { SLOW_MAX } else { 0 }),
            ..Stats::default()
        }
    }

    /// Records one reply; no allocation.
    pub fn record(&mut self, op: Op, latency_ns: u64, kind: ReplyKind) {
        let t = match op {
            Op::Set => &mut self.set,
            Op::Get => &mut self.get,
        };
        t.hist.saturating_record(latency_ns.max(1));
        self.replies += 1;
        self.latency_ns_sum += latency_ns;
        match kind {
            ReplyKind::Error => t.errors += 1,
            ReplyKind::Nil => t.misses += 1,
            ReplyKind::Bulk if op == Op::Get => t.hits += 1,
            _ => {}
        }
    }

    /// Lists one slow request (see [`Stats::slow`]).
    pub fn note_slow(&mut self, sent_ns: u64, latency_ns: u64) {
        if self.slow.len() < SLOW_MAX {
            self.slow.push((sent_ns, latency_ns));
        } else {
            self.slow_dropped += 1;
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        for &(sent, lat) in &o.slow {
            self.note_slow(sent, lat);
        }
        self.slow_dropped += o.slow_dropped;
        self.set.add(&o.set);
        self.get.add(&o.get);
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.connection_errors += o.connection_errors;
        self.unanswered += o.unanswered;
        self.replies += o.replies;
        self.latency_ns_sum += o.latency_ns_sum;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
    }

    pub fn total(&self) -> TypeStats {
        let mut t = self.set.clone();
        t.add(&self.get);
        t
    }
}

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

/// The percentiles every report gives.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("p99_99", 99.99),
];

fn type_json(t: &TypeStats, secs: f64) -> Value {
    let h = &t.hist;
    let mut lat = serde_json::Map::new();
    lat.insert("avg".into(), json!(ms(h.mean())));
    for (name, q) in PERCENTILES {
        lat.insert(name.into(), json!(ms(h.value_at_percentile(q) as f64)));
    }
    lat.insert("max".into(), json!(ms(h.max() as f64)));
    json!({
        "count": t.count(),
        "ops_per_sec": t.count() as f64 / secs,
        "hits": t.hits,
        "misses": t.misses,
        "errors": t.errors,
        "latency_ms": lat,
    })
}

/// Everything the JSON report holds besides the measurements.
pub struct RunInfo<'a> {
    pub config: Value,
    pub tags: &'a [(String, String)],
    pub seconds: f64,
    pub client_cpu_s: f64,
    pub io_mode: String,
    /// With `--slow`: the threshold, and the run's start on CLOCK_MONOTONIC in ns.
    pub slow: Option<(std::time::Duration, u64)>,
}

/// The `slow` section: each listed request's send time in seconds on CLOCK_MONOTONIC (the
/// clock `perf record -k CLOCK_MONOTONIC` stamps events with) and its latency in ms, in send
/// order.
fn slow_json(s: &Stats, threshold: std::time::Duration, start_ns: u64) -> Value {
    let mut list = s.slow.clone();
    list.sort_unstable();
    let requests: Vec<Value> = list
        .iter()
        .map(|&(sent, lat)| json!([(start_ns + sent) as f64 / 1e9, ms(lat as f64)]))
        .collect();
    json!({
        "threshold_ms": threshold.as_secs_f64() * 1e3,
        "clock": "CLOCK_MONOTONIC",
        "count": s.slow.len() as u64 + s.slow_dropped,
        "not_listed": s.slow_dropped,
        "requests": requests,
    })
}

pub fn to_json(s: &Stats, info: &RunInfo) -> Value {
    let total = s.total();
    let ops = total.count();
    let tags: serde_json::Map<String, Value> = info
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut j = json!({
        "tool": "percore-loadtest",
        "tags": tags,
        "config": info.config,
        "io": info.io_mode,
        "seconds": info.seconds,
        "requests": ops,
        "ops_per_sec": ops as f64 / info.seconds,
        "bytes_sent": s.bytes_sent,
        "bytes_received": s.bytes_received,
        "connection_errors": s.connection_errors,
        "first_error": s.first_error,
        "unanswered": s.unanswered,
        "client_cpu_s": info.client_cpu_s,
        "client_cpu_s_per_million": if ops > 0 { info.client_cpu_s / (ops as f64 / 1e6) } else { 0.0 },
        "commands": {
            "set": type_json(&s.set, info.seconds),
            "get": type_json(&s.get, info.seconds),
            "total": type_json(&total, info.seconds),
        },
    });
    if let Some((threshold, start_ns)) = info.slow {
        j["slow"] = slow_json(s, threshold, start_ns);
    }
    j
}

/// memtier-style text table, then the latency distribution unless hidden.
pub fn to_text(s: &Stats, info: &RunInfo, hide_histogram: bool) -> String {
    use std::fmt::Write;
    let secs = info.seconds;
    let mut out = String::new();
    let line = "=".repeat(146);
    let _ = writeln!(out, "\nALL STATS\n{line}");
    let _ = writeln!(
        out,
        "{:<8}{:>13}{:>12}{:>12}{:>10}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>12}",
        "Type",
        "Ops/sec",
        "Hits/sec",
        "Misses/sec",
        "Errors",
        "Avg ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "p99.99 ms",
        "Max ms",
        "KB/sec"
    );
    let _ = writeln!(out, "{}", "-".repeat(146));
    let total = s.total();
    let kb = (s.bytes_sent + s.bytes_received) as f64 / 1024.0 / secs;
    for (name, t, kb) in [
        ("Sets", &s.set, f64::NAN),
        ("Gets", &s.get, f64::NAN),
        ("Totals", &total, kb),
    ] {
        let h = &t.hist;
        let p = |q: f64| ms(h.value_at_percentile(q) as f64);
        let _ = writeln!(
            out,
            "{:<8}{:>13.2}{:>12.2}{:>12.2}{:>10}{:>11.3}{:>11.3}{:>11.3}{:>11.3}{:>11.3}{:>11.3}{:>11.3}{:>12}",
            name,
            t.count() as f64 / secs,
            t.hits as f64 / secs,
            t.misses as f64 / secs,
            t.errors,
            ms(h.mean()),
            p(50.0),
            p(90.0),
            p(99.0),
            p(99.9),
            p(99.99),
            ms(h.max() as f64),
            if kb.is_nan() { "-".to_string() } else { format!("{kb:.2}") }
        );
    }
    let ops = total.count();
    let _ = writeln!(
        out,
        "\n{ops} requests in {secs:.2} s; {} connection errors; {} unanswered; io: {}",
        s.connection_errors, s.unanswered, info.io_mode
    );
    if let Some(e) = &s.first_error {
        let _ = writeln!(out, "first error: {e}");
    }
    if ops > 0 {
        let _ = writeln!(
            out,
            "load generator CPU: {:.2} s ({:.3} s per 1M requests)",
            info.client_cpu_s,
            info.client_cpu_s / (ops as f64 / 1e6)
        );
    }
    if !hide_histogram && ops > 0 {
        let _ = writeln!(
            out,
            "\nLatency distribution (all commands)\n{:>12} {:>12} {:>14}",
            "msec", "percentile", "count"
        );
        for v in total.hist.iter_quantiles(1) {
            let _ = writeln!(
                out,
                "{:>12.3} {:>12.6} {:>14}",
                ms(v.value_iterated_to() as f64),
                v.percentile(),
                v.count_since_last_iteration()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-second run's info with nothing else set.
    fn info(slow: Option<(std::time::Duration, u64)>) -> RunInfo<'static> {
        RunInfo {
            config: json!({}),
            tags: &[],
            seconds: 1.0,
            client_cpu_s: 0.0,
            io_mode: "test".into(),
            slow,
        }
    }

    #[test]
    fn records_hits_misses_errors_and_merges() {
        let mut a = Stats::default();
        a.record(Op::Get, 1_000_000, ReplyKind::Bulk);
        a.record(Op::Get, 3_000_000, ReplyKind::Nil);
        a.record(Op::Set, 2_000_000, ReplyKind::Status);
        let mut b = Stats::default();
        b.record(Op::Set, 4_000_000, ReplyKind::Error);
        b.connection_errors = 1;
        a.merge(&b);
        assert_eq!((a.get.hits, a.get.misses, a.set.errors), (1, 1, 1));
        assert_eq!(a.total().count(), 4);
        assert_eq!(a.connection_errors, 1);
        let info = RunInfo {
            seconds: 2.0,
            client_cpu_s: 0.5,
            ..info(None)
        };
        let j = to_json(&a, &info);
        assert!(j.get("slow").is_none(), "no slow list unless asked for");
        assert_eq!(j["requests"], 4);
        assert_eq!(j["ops_per_sec"], 2.0);
        let max = j["commands"]["total"]["latency_ms"]["max"]
            .as_f64()
            .unwrap();
        assert!((max - 4.0).abs() < 0.01, "{max}");
        let p50 = j["commands"]["get"]["latency_ms"]["p50"].as_f64().unwrap();
        assert!((p50 - 1.0).abs() < 0.01, "{p50}");
        assert!(to_text(&a, &info, false).contains("Totals"));
    }

    #[test]
    fn slow_requests_are_listed_in_send_order_on_the_monotonic_clock() {
        let mut a = Stats::default();
        a.note_slow(3_000_000_000, 2_500_000);
        let mut b = Stats::with_slow_list(true);
        assert_eq!(b.slow.capacity(), SLOW_MAX);
        b.note_slow(1_000_000_000, 1_000_000);
        for _ in 0..SLOW_MAX {
            b.note_slow(2_000_000_000, 1_000_000);
        }
        assert_eq!(b.slow_dropped, 1);
        assert_eq!(b.slow.capacity(), SLOW_MAX, "a full list never grows");
        a.merge(&b);
        let info = info(Some((std::time::Duration::from_millis(1), 100_000_000_000)));
        let slow = &to_json(&a, &info)["slow"];
        assert_eq!(slow["threshold_ms"], 1.0);
        assert_eq!(slow["count"], SLOW_MAX as u64 + 2);
        assert_eq!(slow["not_listed"], 2);
        let list = slow["requests"].as_array().unwrap();
        assert_eq!(list.len(), SLOW_MAX);
        assert_eq!(list[0], json!([101.0, 1.0]));
        assert_eq!(list.last().unwrap(), &json!([103.0, 2.5]));
    }
}
