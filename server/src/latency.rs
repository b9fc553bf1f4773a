//! Latency bookkeeping of one core: per-command latency histograms (INFO latencystats and the
//! Prometheus histogram), the slow log (SLOWLOG) and the latency monitor (LATENCY). Each core
//! keeps its own, touched only by that core; INFO, SLOWLOG, LATENCY and a metrics scrape
//! gather them with one message per core.
//!
//! The histogram is log-linear over nanoseconds: exact below 8 ns, then 8 sub-buckets per
//! power of two (at most 12.5 % relative error), up to 2^40 ns (18 minutes); 304 counters,
//! 2.4 KB, allocated for a command the first time it runs on the core. Recording is an index
//! computation and an increment. Bucket edges fall on powers of two, so the Prometheus
//! buckets (`le` = 2^k ns) are exact sums of whole buckets.

use std::collections::VecDeque;

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const MAX_EXP: usize = 40;
pub const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS as usize) * SUB;

#[derive(Clone, Debug)]
pub struct LatencyHist {
    counts: Box<[u64; BUCKETS]>,
    pub count: u64,
    pub sum_ns: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum_ns: 0,
        }
    }
}

fn index(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // ≥ SUB_BITS
    let sub = (ns >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (((exp - SUB_BITS + 1) as usize) * SUB + sub).min(BUCKETS - 1)
}

/// Smallest value that falls in bucket `i`.
fn lower(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    ((SUB + i % SUB) as u64) << (exp - SUB_BITS)
}

impl LatencyHist {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.count += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
    }

    pub fn merge(&mut self, o: &LatencyHist) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.count += o.count;
        self.sum_ns = self.sum_ns.wrapping_add(o.sum_ns);
    }

    /// The value at percentile `q` (0–100): the upper edge of the bucket holding that rank,
    /// so it never under-reports.
    pub fn percentile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return if i + 1 < BUCKETS {
                    lower(i + 1) - 1
                } else {
                    lower(i)
                };
            }
        }
        lower(BUCKETS - 1)
    }

    /// How many recorded values are below `2^k` ns.
    pub fn count_below_pow2(&self, k: u32) -> u64 {
        let edge = index(1u64 << k.min(MAX_EXP as u32 - 1));
        self.counts[..edge].iter().sum()
    }
}

/// Redis's bounds on what a slow-log entry keeps.
const SLOWLOG_MAX_ARGC: usize = 32;
const SLOWLOG_MAX_STRING: usize = 128;

#[derive(Clone, Debug)]
pub struct SlowEntry {
    pub id: u64,
    pub time_s: u64,
    pub duration_us: u64,
    pub args: Vec<Vec<u8>>,
    pub client_addr: String,
    pub client_name: Vec<u8>,
}

impl SlowEntry {
    /// Copies at most 32 arguments of at most 128 bytes, marking what was cut as Redis does.
    pub fn new<'a>(
        id: u64,
        time_s: u64,
        duration_us: u64,
        args: impl ExactSizeIterator<Item = &'a [u8]>,
        client_addr: String,
        client_name: Vec<u8>,
    ) -> SlowEntry {
        let argc = args.len();
        let keep = if argc > SLOWLOG_MAX_ARGC {
            SLOWLOG_MAX_ARGC - 1
        } else {
            argc
        };
        let mut out: Vec<Vec<u8>> = args
            .take(keep)
            .map(|a| {
                if a.len() > SLOWLOG_MAX_STRING {
                    let mut v = a[..SLOWLOG_MAX_STRING].to_vec();
                    v.extend_from_slice(
                        format!("... ({} more bytes)", a.len() - SLOWLOG_MAX_STRING).as_bytes(),
                    );
                    v
                } else {
                    a.to_vec()
                }
            })
            .collect();
        if argc > keep {
            out.push(format!("... ({} more arguments)", argc - keep).into_bytes());
        }
        SlowEntry {
            id,
            time_s,
            duration_us,
            args: out,
            client_addr,
            client_name,
        }
    }
}

/// A core's slow log: newest first, at most `slowlog-max-len` entries.
#[derive(Default)]
pub struct SlowLog {
    pub entries: VecDeque<SlowEntry>,
}

impl SlowLog {
    pub fn push(&mut self, e: SlowEntry, max_len: usize) {
        self.entries.push_front(e);
        self.entries.truncate(max_len);
    }
}

/// Samples kept per latency event (Redis's LATENCY_TS_LEN).
pub const LATENCY_SAMPLES: usize = 160;

#[derive(Clone, Debug, Default)]
pub struct EventSeries {
    /// (unix seconds, milliseconds), oldest first; one sample per second (the worst).
    pub samples: VecDeque<(u64, u64)>,
    pub max_ms: u64,
}

impl EventSeries {
    pub fn add(&mut self, time_s: u64, ms: u64) {
        match self.samples.back_mut() {
            Some(last) if last.0 == time_s => last.1 = last.1.max(ms),
            _ => {
                self.samples.push_back((time_s, ms));
                if self.samples.len() > LATENCY_SAMPLES {
                    self.samples.pop_front();
                }
            }
        }
        self.max_ms = self.max_ms.max(ms);
    }

    /// Combines another core's series: same-second samples keep the worst.
    pub fn merge(&mut self, o: &EventSeries) {
        let mut all: Vec<(u64, u64)> = self.samples.iter().chain(&o.samples).copied().collect();
        all.sort_unstable();
        let mut merged: VecDeque<(u64, u64)> = VecDeque::with_capacity(all.len());
        for (t, ms) in all {
            match merged.back_mut() {
                Some(last) if last.0 == t => last.1 = last.1.max(ms),
                _ => merged.push_back((t, ms)),
            }
        }
        while merged.len() > LATENCY_SAMPLES {
            merged.pop_front();
        }
        self.samples = merged;
        self.max_ms = self.max_ms.max(o.max_ms);
    }
}

/// The latency monitor of one core: events by name, in first-seen order.
#[derive(Clone, Default)]
pub struct LatencyMonitor {
    pub events: Vec<(&'static str, EventSeries)>,
}

impl LatencyMonitor {
    pub fn add(&mut self, event: &'static str, time_s: u64, ms: u64) {
        match self.events.iter_mut().find(|(e, _)| *e == event) {
            Some((_, s)) => s.add(time_s, ms),
            None => {
                let mut s = EventSeries::default();
                s.add(time_s, ms);
                self.events.push((event, s));
            }
        }
    }

    pub fn merge(&mut self, o: &LatencyMonitor) {
        for (name, series) in &o.events {
            match self.events.iter_mut().find(|(e, _)| e == name) {
                Some((_, s)) => s.merge(series),
                None => self.events.push((name, series.clone())),
            }
        }
    }

    /// Forgets the named events (all when `names` is empty); returns how many existed.
    pub fn reset(&mut self, names: &[String]) -> usize {
        let before = self.events.len();
        if names.is_empty() {
            self.events.clear();
        } else {
            self.events
                .retain(|(e, _)| !names.iter().any(|n| n.eq_ignore_ascii_case(e)));
        }
        before - self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range() {
        for i in 0..BUCKETS - 1 {
            assert!(lower(i) < lower(i + 1), "bucket {i}");
            assert_eq!(index(lower(i)), i);
            assert_eq!(index(lower(i + 1) - 1), i);
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        // Powers of two are bucket edges.
        for k in 3..40 {
            assert_eq!(lower(index(1 << k)), 1 << k);
        }
    }

    #[test]
    fn percentiles_are_within_an_eighth() {
        let mut h = LatencyHist::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        for (q, exact) in [
            (50.0, 5_000_000.0),
            (99.0, 9_900_000.0),
            (99.9, 9_990_000.0),
        ] {
            let got = h.percentile_ns(q) as f64;
            assert!(
                got >= exact && got <= exact * 1.125,
                "p{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.count_below_pow2(20), 1048); // values 1000..=1_048_000 are < 2^20 ns
        let mut m = LatencyHist::default();
        m.merge(&h);
        m.merge(&h);
        assert_eq!((m.count, m.count_below_pow2(20)), (20_000, 2096));
    }

    #[test]
    fn slow_entries_are_cut_as_redis_cuts_them() {
        let long = [b'x'; 200];
        let args: Vec<&[u8]> = (0..40).map(|_| &long[..]).collect();
        let e = SlowEntry::new(1, 0, 5, args.into_iter(), String::new(), Vec::new());
        assert_eq!(e.args.len(), 32);
        assert_eq!(e.args[31], b"... (9 more arguments)");
        assert!(e.args[0].ends_with(b"... (72 more bytes)"));
        assert_eq!(e.args[0].len(), 128 + "... (72 more bytes)".len());
        let mut log = SlowLog::default();
        for id in 0..5 {
            log.push(SlowEntry { id, ..e.clone() }, 3);
        }
        let ids: Vec<u64> = log.entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![4, 3, 2], "newest first, bounded");
    }

    #[test]
    fn latency_events_keep_the_worst_per_second_and_merge() {
        let mut a = LatencyMonitor::default();
        a.add("command", 100, 5);
        a.add("command", 100, 9);
        a.add("command", 101, 3);
        let mut b = LatencyMonitor::default();
        b.add("command", 101, 7);
        b.add("expire-cycle", 102, 1);
        a.merge(&b);
        let cmd = &a.events[0].1;
        assert_eq!(cmd.samples, VecDeque::from(vec![(100, 9), (101, 7)]));
        assert_eq!(cmd.max_ms, 9);
        assert_eq!(a.reset(&["EXPIRE-CYCLE".into()]), 1);
        assert_eq!(a.reset(&[]), 1);
    }
}
