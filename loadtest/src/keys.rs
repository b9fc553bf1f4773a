//! Key and command choice for one connection: the SET:GET ratio as a fixed cycle (so counts
//! are exact), and one key walker per command type following memtier's key patterns.
//!
//! Everything here is arithmetic on integers; nothing allocates after construction.

use crate::config::{Config, KeyPattern, Length};

/// SplitMix64: small, fast, and good enough to spread keys; seeded per connection.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n) by multiply-shift (no modulo bias worth measuring).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal by Box–Muller.
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Walks keys for one command type of one connection.
#[derive(Clone, Debug)]
pub struct KeyWalker {
    pattern: KeyPattern,
    /// First key of this walker's range and its size.
    lo: u64,
    len: u64,
    /// Next offset for the sequential patterns.
    next: u64,
    median: f64,
    stddev: f64,
    key_min: u64,
    key_max: u64,
}

impl KeyWalker {
    /// `conn` is the connection's index among `conns` connections in the whole run.
    pub fn new(cfg: &Config, pattern: KeyPattern, conn: usize, conns: usize) -> Self {
        let range = cfg.key_range();
        let (lo, len) = if pattern == KeyPattern::Parallel {
            let part = |i: u64| cfg.key_min + (range as u128 * i as u128 / conns as u128) as u64;
            let (a, b) = (part(conn as u64), part(conn as u64 + 1));
            (a, b - a)
        } else {
            (cfg.key_min, range)
        };
        let mid = cfg.key_min as f64 + (range as f64 - 1.0) / 2.0;
        KeyWalker {
            pattern,
            lo,
            len,
            next: 0,
            median: cfg.key_median.unwrap_or(mid),
            stddev: cfg.key_stddev.unwrap_or(range as f64 / 6.0),
            key_min: cfg.key_min,
            key_max: cfg.key_max,
        }
    }

    /// Keys this walker covers once (its part for P, the whole range otherwise).
    pub fn span(&self) -> u64 {
        self.len
    }

    pub fn next_key(&mut self, rng: &mut Rng) -> u64 {
        match self.pattern {
            KeyPattern::Random => self.lo + rng.below(self.len),
            KeyPattern::Sequential | KeyPattern::Parallel => {
                if self.len == 0 {
                    return self.lo;
                }
                let k = self.lo + self.next;
                self.next = (self.next + 1) % self.len;
                k
            }
            KeyPattern::Gaussian => {
                let x = (self.median + rng.normal() * self.stddev).round();
                x.clamp(self.key_min as f64, self.key_max as f64) as u64
            }
        }
    }
}

/// What a connection sends next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Set,
    Get,
}

/// The per-connection command and key source.
#[derive(Clone, Debug)]
pub struct Workload {
    ratio_set: u32,
    cycle: u32,
    slot: u32,
    sets: KeyWalker,
    gets: KeyWalker,
    pub rng: Rng,
}

impl Workload {
    pub fn new(cfg: &Config, conn: usize, conns: usize) -> Self {
        let seed = if cfg.distinct_client_seed {
            cfg.seed ^ (conn as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F)
        } else {
            cfg.seed
        };
        Workload {
            ratio_set: cfg.ratio_set,
            cycle: cfg.ratio_set + cfg.ratio_get,
            slot: 0,
            sets: KeyWalker::new(cfg, cfg.set_pattern, conn, conns),
            gets: KeyWalker::new(cfg, cfg.get_pattern, conn, conns),
            rng: Rng::new(seed),
        }
    }

    /// Requests this connection sends in a counted run; None when the run is timed.
    pub fn request_limit(&self, length: Length) -> Option<u64> {
        match length {
            Length::Requests(n) => Some(n),
            Length::AllKeys => Some(if self.ratio_set > 0 {
                self.sets.span()
            } else {
                self.gets.span()
            }),
            Length::Time(_) => None,
        }
    }

    /// The next command and key: within each cycle of SET+GET slots the first `SET` slots
    /// are SETs, so any multiple of the cycle has the exact ratio.
    pub fn next(&mut self) -> (Op, u64) {
        let op = if self.slot < self.ratio_set {
            Op::Set
        } else {
            Op::Get
        };
        self.slot = (self.slot + 1) % self.cycle;
        let key = match op {
            Op::Set => self.sets.next_key(&mut self.rng),
            Op::Get => self.gets.next_key(&mut self.rng),
        };
        (op, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> Config {
        Config::parse(s.split_whitespace().map(String::from)).unwrap()
    }

    #[test]
    fn parallel_parts_cover_the_range_once() {
        let c = cfg("--key-minimum 5 --key-maximum 1004 --key-pattern P:P -n allkeys");
        let mut seen = vec![0u32; 1000];
        for conn in 0..7 {
            let mut w = Workload::new(&c, conn, 7);
            for _ in 0..w.request_limit(c.length).unwrap() {
                let (op, k) = w.next();
                assert_eq!(op, Op::Set, "ratio 1:10 starts with a SET, then GETs");
                seen[(k - 5) as usize] += 1;
                // The rest of the cycle are GETs from the same part.
                for _ in 0..10 {
                    w.next();
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "every key exactly once");
    }

    #[test]
    fn ratio_is_exact_per_cycle() {
        let c = cfg("--ratio 3:7");
        let mut w = Workload::new(&c, 0, 1);
        let sets = (0..1000).filter(|_| w.next().0 == Op::Set).count();
        assert_eq!(sets, 300);
    }

    #[test]
    fn random_and_gaussian_stay_in_range() {
        let c = cfg("--key-minimum 100 --key-maximum 199 --key-pattern G:R --key-stddev 5");
        let mut w = Workload::new(&c, 0, 1);
        let mut near = 0;
        for _ in 0..20_000 {
            let (op, k) = w.next();
            assert!((100..=199).contains(&k));
            if op == Op::Set && (140..=159).contains(&k) {
                near += 1;
            }
        }
        // 1/11 of 20,000 are SETs; within two standard deviations of the median: ~95 %.
        assert!(
            near > 1_650,
            "gaussian keys concentrate around the median: {near}"
        );
    }

    #[test]
    fn distinct_seeds_differ_and_shared_seeds_repeat() {
        let same = cfg("");
        let (mut a, mut b) = (Workload::new(&same, 0, 2), Workload::new(&same, 1, 2));
        assert!((0..100).all(|_| a.next() == b.next()));
        let distinct = cfg("--distinct-client-seed");
        let (mut a, mut b) = (
            Workload::new(&distinct, 0, 2),
            Workload::new(&distinct, 1, 2),
        );
        assert!((0..100).any(|_| a.next() != b.next()));
    }
}
