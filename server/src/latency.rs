//! Latency bookkeeping of one core: per-command latency histograms (INFO latencystats, the
//! Prometheus histogram and LATENCY HISTOGRAM), the slow log (SLOWLOG) and the latency
//! monitor (LATENCY). Each core
//! keeps its own, touched only by that core; INFO, SLOWLOG, LATENCY and a metrics scrape
//! gather them with one message per core.
//!
//! The histogram is log-linear over nanoseconds: exact below 8 ns, then 8 sub-buckets per
//! power of two (at most 12.5 % relative error), up to 2^40 ns (18 minutes); 304 counters,
//! 2.4 KB, allocated for a command the first time it runs on the core. Recording is an index
//! computation and an increment. Bucket edges fall on powers of two, so the Prometheus
//! buckets (`le` = 2^k ns) are exact sums of whole buckets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use percore_proto::{lookup, lookup_sub, Cmd};

/// `latency-clock thread-cpu`: command durations are the core thread's CPU time.
static THREAD_CPU: AtomicBool = AtomicBool::new(false);

/// Sets the clock every command duration is measured with (`latency-clock`): elapsed time
/// (`wall`, Redis's) or the core thread's CPU time (`thread-cpu`).
pub fn set_thread_cpu_clock(on: bool) {
    THREAD_CPU.store(on, Ordering::Relaxed);
}

/// Whether command durations are measured in thread CPU time.
pub fn thread_cpu_clock() -> bool {
    THREAD_CPU.load(Ordering::Relaxed)
}

/// The calling thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = std::mem::MaybeUninit::<libc::timespec>::zeroed();
    // SAFETY: `ts` is a writable timespec for the call's duration, and all-zero bytes are a
    // valid timespec, so it is initialised whether or not the call writes it;
    // CLOCK_THREAD_CPUTIME_ID exists on every Linux kernel percore runs on (on failure the
    // duration reads as 0; tested by `tests::thread_cpu_stopwatch_counts_work_not_sleep`).
    let ts = unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, ts.as_mut_ptr());
        ts.assume_init()
    };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Measures one command's duration with the clock `latency-clock` names, for the stats,
/// the slow log and the latency monitor.
///
/// `wall` (the default, as Redis) is elapsed time. On a virtual machine it includes the
/// times the host takes the vCPU away (tens of milliseconds on a busy host), which look
/// like slow commands; `thread-cpu` counts only the CPU time the core thread spent, so
/// SLOWLOG and LATENCY show the server's own work. It costs two `clock_gettime` system
/// calls per command (the thread CPU clock has no vDSO path), so it is for diagnosis.
/// A command that waits for other cores counts only this core's work in that mode.
#[derive(Clone, Copy, Debug)]
pub enum Stopwatch {
    Wall(Instant),
    ThreadCpu(u64),
}

impl Stopwatch {
    #[inline]
    pub fn start() -> Stopwatch {
        if thread_cpu_clock() {
            Stopwatch::ThreadCpu(thread_cpu_ns())
        } else {
            Stopwatch::Wall(Instant::now())
        }
    }

    /// Nanoseconds since `start`, on the clock it started with.
    #[inline]
    pub fn ns(&self) -> u64 {
        match *self {
            Stopwatch::Wall(t0) => t0.elapsed().as_nanos().min(u64::MAX as u128) as u64,
            Stopwatch::ThreadCpu(t0) => thread_cpu_ns().saturating_sub(t0),
        }
    }

    /// [`Stopwatch::ns`] less the time a blocking command spent parked. On the thread CPU
    /// clock nothing is taken off: the core's CPU time while the client was parked went to
    /// other clients, and is counted in, an overstatement that never hides a slow command.
    pub fn ns_less(&self, parked: std::time::Duration) -> u64 {
        match *self {
            Stopwatch::Wall(_) => self
                .ns()
                .saturating_sub(parked.as_nanos().min(u64::MAX as u128) as u64),
            Stopwatch::ThreadCpu(_) => self.ns(),
        }
    }
}

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

    /// LATENCY HISTOGRAM's cumulative distribution, as Redis 7.0's `fillCommandCDF` walks
    /// its HdrHistogram (1 ns to 1 s, 2 significant digits) in logarithmic steps of 2 from
    /// 1,024 ns: at each power of two 2^k from 2^10 where the count grew, (µs, calls up to
    /// then). Redis names a step by the highest value of the HDR bucket holding 2^k, in µs:
    /// (2^k + 2^(k-7) - 1) / 1000, so 1, 2, 4, 8, 16, 33, 66, 132, 264, ...; it counts that
    /// bucket's calls too, which this histogram cannot separate (its buckets are 16 times
    /// wider), so a step counts the calls below 2^k: at most the calls within 1/128 above
    /// the edge fewer. Redis clamps latencies to 1 s, so the 2^30 ns step counts every call.
    pub fn cdf_usec(&self) -> Vec<(u64, u64)> {
        const TOP: u32 = 30;
        let mut out = Vec::new();
        let mut previous = 0;
        for k in 10..=TOP {
            let cumulative = if k == TOP {
                self.count
            } else {
                self.count_below_pow2(k)
            };
            if cumulative > previous {
                out.push((((1u64 << k) + (1 << (k - 7)) - 1) / 1000, cumulative));
                previous = cumulative;
            }
            if cumulative == self.count {
                break;
            }
        }
        out
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
/// What a hidden argument shows instead (Redis's `shared.redacted`).
pub const REDACTED: &[u8] = b"(redacted)";
/// The configuration parameters whose CONFIG SET values are hidden (Redis 7.0's
/// `SENSITIVE_CONFIG`).
const SENSITIVE_CONFIGS: [&str; 3] = ["masteruser", "masterauth", "requirepass"];

/// The arguments (by index, below 64) that Redis 7.0 hides from the slow log
/// (`redactClientCommandArgument`), as a bit mask: AUTH's password and user; HELLO's AUTH
/// user and password, for each AUTH the command reads before it stops at a bad version, a
/// syntax error or an invalid SETNAME; CONFIG SET's value of each sensitive parameter.
/// Redis redacts as the command runs, so an argument the command never reached stays.
/// MIGRATE's AUTH/AUTH2 values. (Redis also hides ACL SETUSER's rules.)
pub fn redacted_args(args: &[&[u8]]) -> u64 {
    let Some(spec) = args.first().and_then(|name| lookup(name)) else {
        return 0;
    };
    let bit = |i: usize| if i < 64 { 1u64 << i } else { 0 };
    let eq = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
    match spec.cmd {
        Cmd::Auth => match args.len() {
            2 => bit(1),
            3 => bit(1) | bit(2),
            _ => 0,
        },
        Cmd::Hello => {
            if let Some(v) = args.get(1) {
                if !matches!(percore_proto::parse_i64(v), Some(2 | 3)) {
                    return 0;
                }
            }
            let mut mask = 0;
            let mut j = 2;
            while j < args.len() {
                let more = args.len() - 1 - j;
                if eq(args[j], "auth") && more >= 2 {
                    mask |= bit(j + 1) | bit(j + 2);
                    j += 3;
                } else if eq(args[j], "setname") && more >= 1 {
                    if crate::commands::valid_name(args[j + 1]).is_err() {
                        break;
                    }
                    j += 2;
                } else {
                    break;
                }
            }
            mask
        }
        Cmd::Migrate => crate::migrate::redacted_args(args),
        Cmd::Config => {
            let is_set = args
                .get(1)
                .and_then(|sub| lookup_sub(spec, sub))
                .is_some_and(|s| s.cmd == Cmd::ConfigSet);
            if !is_set || args.len() % 2 == 1 {
                return 0;
            }
            (2..args.len())
                .step_by(2)
                .filter(|&i| SENSITIVE_CONFIGS.iter().any(|c| eq(args[i], c)))
                .fold(0, |mask, i| mask | bit(i + 1))
        }
        _ => 0,
    }
}

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
    /// Copies at most 32 arguments of at most 128 bytes, marking what was cut and hiding
    /// what [`redacted_args`] names, as Redis does.
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
        let all: Vec<&[u8]> = args.collect();
        let hidden = redacted_args(&all);
        let mut out: Vec<Vec<u8>> = all[..keep]
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                if hidden & (1 << i) != 0 {
                    REDACTED.to_vec()
                } else if a.len() > SLOWLOG_MAX_STRING {
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
    fn thread_cpu_stopwatch_counts_work_not_sleep() {
        // Built directly: flipping `latency-clock` here would change other tests' clocks.
        let slept = Stopwatch::ThreadCpu(thread_cpu_ns());
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert!(
            slept.ns() < 20_000_000,
            "sleeping counted {} ns",
            slept.ns()
        );
        let worked = Stopwatch::ThreadCpu(thread_cpu_ns());
        let wall = Instant::now();
        let mut x = 0u64;
        while wall.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        // 30 ms of wall time spinning; the thread may lose some of it to other threads.
        assert!(
            worked.ns() > 1_000_000,
            "spinning counted {} ns",
            worked.ns()
        );
        assert!(worked.ns() <= wall.elapsed().as_nanos() as u64 + 1_000_000);
    }

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
    fn the_cdf_steps_by_powers_of_two_from_a_microsecond() {
        let mut h = LatencyHist::default();
        assert!(h.cdf_usec().is_empty());
        for ns in [10, 500, 1500, 1600, 5000, 70_000] {
            h.record(ns);
        }
        // Below 1,024 ns: 2; below 2,048: 4; below 8,192: 5; below 131,072: 6.
        assert_eq!(h.cdf_usec(), vec![(1, 2), (2, 4), (8, 5), (132, 6)]);
        // Past Redis's 1 s ceiling: counted at its last step.
        h.record(1 << 45);
        assert_eq!(h.cdf_usec().last(), Some(&(1_082_130, 7)));
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
    fn secrets_are_redacted_as_redis_redacts_them() {
        let mask = |line: &str| {
            let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            redacted_args(&args)
        };
        assert_eq!(mask("AUTH pw"), 0b10);
        assert_eq!(mask("auth user pw"), 0b110);
        assert_eq!(mask("AUTH a b c"), 0, "a syntax error redacts nothing");
        assert_eq!(mask("HELLO 3 AUTH u p SETNAME n"), 0b11000);
        assert_eq!(mask("HELLO 2 SETNAME n AUTH u p"), 0b1100000);
        assert_eq!(mask("HELLO 4 AUTH u p"), 0, "a bad version stops first");
        assert_eq!(mask("HELLO 3 BOGUS AUTH u p"), 0);
        assert_eq!(mask("HELLO 3 AUTH u"), 0, "AUTH needs two more arguments");
        assert_eq!(
            mask("CONFIG SET requirepass a maxmemory 1 MASTERAUTH b"),
            0b10001000
        );
        assert_eq!(mask("config set masteruser u"), 0b1000);
        assert_eq!(mask("CONFIG SET requirepass"), 0, "odd: a syntax error");
        assert_eq!(mask("CONFIG GET requirepass"), 0);
        assert_eq!(mask("SET requirepass x"), 0);
        let args: Vec<&[u8]> = vec![b"AUTH", b"user", b"secret"];
        let e = SlowEntry::new(1, 0, 5, args.into_iter(), String::new(), Vec::new());
        assert_eq!(
            e.args,
            vec![b"AUTH".to_vec(), REDACTED.to_vec(), REDACTED.to_vec()]
        );
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
