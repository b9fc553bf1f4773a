//! Eviction under `maxmemory`: Redis's eight policies, with LRU and LFU approximated as
//! Redis approximates them (`evict.c`).
//!
//! - Each entry carries one 32-bit word, its "clock" (Redis's 24-bit `lru` field): under an
//!   LRU or other non-LFU policy, the second of its last access (LRU, OBJECT IDLETIME); under
//!   an LFU policy, an 8-bit logarithmic access counter in the low byte and the minute it was
//!   last decayed above it (LFU, OBJECT FREQ). A policy change at run time reinterprets the
//!   words, and keys adjust as they are touched — Redis's behaviour too.
//! - To evict, the shard samples `maxmemory-samples` random keys per database (only keys with
//!   a deadline for the `volatile-*` policies), scores them (idle seconds, 255 − frequency, or
//!   time to expiry), merges them into a pool of the 16 best candidates kept across calls, and
//!   evicts the best one that still exists. The pool is what lets 5 samples approach true LRU.
//! - Work is bounded: the caller gives a key budget per call; sampling is O(samples × dbs).
//!
//! Memory is measured by the caller (the server's per-core allocation count), passed in as
//! a closure, so this crate stays free of any allocator or clock.

use crate::dict::{EntryMut, EntryRef};
use crate::Shard;

/// `maxmemory-policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

pub const POLICIES: [(Policy, &str); 8] = [
    (Policy::VolatileLru, "volatile-lru"),
    (Policy::VolatileLfu, "volatile-lfu"),
    (Policy::VolatileRandom, "volatile-random"),
    (Policy::VolatileTtl, "volatile-ttl"),
    (Policy::AllKeysLru, "allkeys-lru"),
    (Policy::AllKeysLfu, "allkeys-lfu"),
    (Policy::AllKeysRandom, "allkeys-random"),
    (Policy::NoEviction, "noeviction"),
];

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        POLICIES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(p, _)| *p)
    }

    pub fn name(self) -> &'static str {
        POLICIES
            .iter()
            .find(|(p, _)| *p == self)
            .map_or("noeviction", |(_, n)| n)
    }

    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }
}

/// Keys sampled per database per eviction step, at most (`maxmemory-samples` above it is
/// accepted, as Redis does, and sampled at this count).
pub const MAX_SAMPLES: usize = 64;

/// The eviction settings, with Redis's defaults.
#[derive(Clone, Copy, Debug)]
pub struct EvictConfig {
    pub policy: Policy,
    pub samples: usize,
    pub lfu_log_factor: u32,
    pub lfu_decay_time: u32,
}

impl Default for EvictConfig {
    fn default() -> Self {
        EvictConfig {
            policy: Policy::NoEviction,
            samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
        }
    }
}

/// A new key's LFU counter, so it is not evicted before it had a chance to be used.
pub const LFU_INIT_VAL: u8 = 5;

fn minutes(now_ms: u64) -> u16 {
    (now_ms / 60_000) as u16
}

/// An LFU clock word: the counter in the low byte, the decay minute above it.
pub fn lfu_word(counter: u8, minute: u16) -> u32 {
    (minute as u32) << 8 | counter as u32
}

/// The clock word of a new key under `cfg`'s policy (Redis's `createObject`).
pub fn new_clock(cfg: &EvictConfig, now_ms: u64) -> u32 {
    if cfg.policy.is_lfu() {
        lfu_word(LFU_INIT_VAL, minutes(now_ms))
    } else {
        (now_ms / 1000) as u32
    }
}

/// The counter of an LFU word after decay: one step per `decay_time` minutes since the
/// last decay.
pub fn lfu_decayed(word: u32, now_ms: u64, decay_time: u32) -> u8 {
    let (counter, ldt) = (word as u8, (word >> 8) as u16);
    let elapsed = minutes(now_ms).wrapping_sub(ldt) as u32;
    let periods = elapsed.checked_div(decay_time).unwrap_or(0);
    counter.saturating_sub(periods.min(255) as u8)
}

/// Idle seconds of an LRU word.
pub fn idle_s(word: u32, now_ms: u64) -> u64 {
    ((now_ms / 1000) as u32).saturating_sub(word) as u64
}

/// Redis's `LFULogIncr`: the higher the counter, the less likely an access raises it.
/// `r` is uniform in [0, 1).
pub fn lfu_log_incr(counter: u8, factor: u32, r: f64) -> u8 {
    if counter == 255 {
        return 255;
    }
    let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
    let p = 1.0 / (base * factor as f64 + 1.0);
    if r < p {
        counter + 1
    } else {
        counter
    }
}

/// Updates an entry's access data on a lookup: the LRU time always, the LFU counter under
/// an LFU policy (`r` uniform in [0, 1), drawn by the caller). O(1), no allocation.
#[inline]
pub fn touch_entry(e: &mut EntryMut, now_ms: u64, cfg: &EvictConfig, r: f64) {
    let word = if cfg.policy.is_lfu() {
        let c = lfu_decayed(e.clock(), now_ms, cfg.lfu_decay_time);
        lfu_word(lfu_log_incr(c, cfg.lfu_log_factor, r), minutes(now_ms))
    } else {
        (now_ms / 1000) as u32
    };
    e.set_clock(word);
}

/// A key's eviction score under `cfg`'s policy: the higher, the sooner it goes.
fn score(cfg: &EvictConfig, e: EntryRef, now_ms: u64) -> u64 {
    match cfg.policy {
        Policy::AllKeysLfu | Policy::VolatileLfu => {
            255 - lfu_decayed(e.clock(), now_ms, cfg.lfu_decay_time) as u64
        }
        Policy::VolatileTtl => u64::MAX - e.expire_at_ms(),
        // LRU (and the random policies, which do not use the pool): idle seconds.
        _ => idle_s(e.clock(), now_ms),
    }
}

/// One candidate of the eviction pool.
#[derive(Clone, Debug)]
struct Candidate {
    score: u64,
    db: usize,
    key: Box<[u8]>,
}

/// Candidates kept across calls, best (highest score) last.
#[derive(Default, Debug)]
pub struct EvictionPool {
    items: Vec<Candidate>,
}

const POOL_SIZE: usize = 16;

impl EvictionPool {
    fn offer(&mut self, score: u64, db: usize, key: &[u8]) {
        if self.items.iter().any(|c| c.db == db && *c.key == *key) {
            return;
        }
        if self.items.len() == POOL_SIZE && self.items[0].score >= score {
            return;
        }
        let at = self.items.partition_point(|c| c.score < score);
        self.items.insert(
            at,
            Candidate {
                score,
                db,
                key: key.into(),
            },
        );
        if self.items.len() > POOL_SIZE {
            self.items.remove(0);
        }
    }
}

/// What an eviction call achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evicted {
    /// Memory is under the limit (after evicting this many keys).
    Enough(usize),
    /// The key budget ran out while still over the limit; more can be evicted later.
    Budget(usize),
    /// Nothing can be evicted: the policy is noeviction, or no key qualifies.
    Impossible(usize),
}

impl Shard {
    /// Samples candidates from every database into the pool.
    fn fill_pool(&mut self, now_ms: u64) {
        let cfg = self.config.evict;
        let volatile = cfg.policy.volatile_only();
        // Redis accepts any count up to INT_MAX; sampling more than 64 keys per database
        // buys no accuracy with the 16-candidate pool and would make one step unbounded.
        let samples = cfg.samples.clamp(1, MAX_SAMPLES);
        for db in 0..self.dbs.len() {
            if self.dbs[db].dict.is_empty() || (volatile && self.dbs[db].expires_count == 0) {
                continue;
            }
            // A volatile policy may need more draws to find keys with deadlines; bounded.
            let draws = if volatile { samples * 4 } else { samples };
            let mut taken = 0;
            for _ in 0..draws {
                let candidate = self
                    .with_random(db, |k, e| {
                        (!volatile || e.expire_at_ms() != 0)
                            .then(|| (k.to_vec(), score(&cfg, e, now_ms)))
                    })
                    .flatten();
                if let Some((k, score)) = candidate {
                    self.evict_pool.offer(score, db, &k);
                    taken += 1;
                    if taken == samples {
                        break;
                    }
                }
            }
        }
    }

    /// Picks the key to evict next, or None when no key qualifies.
    fn pick_victim(&mut self, now_ms: u64) -> Option<(usize, Box<[u8]>)> {
        let policy = self.config.evict.policy;
        match policy {
            Policy::NoEviction => None,
            Policy::AllKeysRandom | Policy::VolatileRandom => {
                let volatile = policy == Policy::VolatileRandom;
                let start = (self.next_rand() % self.dbs.len() as u64) as usize;
                for i in 0..self.dbs.len() {
                    let db = (start + i) % self.dbs.len();
                    let d = &self.dbs[db];
                    if d.dict.is_empty() || (volatile && d.expires_count == 0) {
                        continue;
                    }
                    for _ in 0..64 {
                        let key = self
                            .with_random(db, |k, e| {
                                (!volatile || e.expire_at_ms() != 0).then(|| k.into())
                            })
                            .flatten();
                        if let Some(k) = key {
                            return Some((db, k));
                        }
                    }
                }
                None
            }
            _ => {
                // Up to a few rounds: pool entries may have been deleted meanwhile.
                for _ in 0..4 {
                    self.fill_pool(now_ms);
                    while let Some(c) = self.evict_pool.items.pop() {
                        if self.dbs[c.db].dict.peek(&c.key).is_some() {
                            return Some((c.db, c.key));
                        }
                    }
                }
                None
            }
        }
    }

    /// Evicts keys, one at a time, while `over()` says memory is above the limit, at most
    /// `max_keys` of them. Bounded: O(max_keys × samples × databases).
    pub fn evict(
        &mut self,
        now_ms: u64,
        max_keys: usize,
        over: &mut dyn FnMut() -> bool,
    ) -> Evicted {
        // Clients are paused: the data stands still (Redis skips eviction too).
        if crate::expiry_paused(now_ms) {
            return Evicted::Enough(0);
        }
        let mut n = 0;
        while over() {
            if n == max_keys {
                return Evicted::Budget(n);
            }
            let Some((db, key)) = self.pick_victim(now_ms) else {
                return Evicted::Impossible(n);
            };
            if self.delete(db, &key) {
                self.stats.evicted_keys += 1;
                self.notify(crate::notify::EVICTED, "evicted", db, &key);
                if self.feed.on {
                    self.feed.deleted(db, &key, self.in_command.get());
                }
                n += 1;
            }
        }
        Evicted::Enough(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, ShardConfig, Value};

    fn shard(policy: Policy) -> Shard {
        let mut cfg = ShardConfig::default();
        cfg.evict.policy = policy;
        Shard::new(7, cfg)
    }

    fn fill(sh: &mut Shard, n: usize, now_ms: u64) {
        for i in 0..n {
            sh.store(
                0,
                format!("k{i}").as_bytes(),
                Entry::new(Value::Int(i as i64), now_ms),
            );
        }
    }

    #[test]
    fn policies_parse_and_name() {
        for (p, name) in POLICIES {
            assert_eq!(Policy::parse(name), Some(p));
            assert_eq!(p.name(), name);
        }
        assert_eq!(Policy::parse("ALLKEYS-LRU"), Some(Policy::AllKeysLru));
        assert_eq!(Policy::parse("lru"), None);
    }

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let mut c = LFU_INIT_VAL;
        let mut x = 1u64;
        for _ in 0..1_000_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            c = lfu_log_incr(c, 10, (x >> 11) as f64 / (1u64 << 53) as f64);
        }
        // Redis's table for factor 10: about 1M hits reach ~255 only at factor 1; at 10 ~ 240.
        assert!((200..=255).contains(&c), "{c}");
        let w = lfu_word(20, 0);
        assert_eq!(lfu_decayed(w, 5 * 60_000, 1), 15, "one step per minute");
        assert_eq!(lfu_decayed(w, 5 * 60_000, 0), 20, "decay-time 0: never");
        assert_eq!(
            lfu_decayed(lfu_word(20, 3), 5 * 60_000, 1),
            18,
            "from the decay minute"
        );
    }

    #[test]
    fn noeviction_and_empty_volatile_sets_cannot_evict() {
        let mut sh = shard(Policy::NoEviction);
        fill(&mut sh, 10, 0);
        assert_eq!(sh.evict(0, 10, &mut || true), Evicted::Impossible(0));
        let mut sh = shard(Policy::VolatileLru);
        fill(&mut sh, 10, 0);
        assert_eq!(sh.evict(0, 10, &mut || true), Evicted::Impossible(0));
        sh.set_expire(0, b"k3", 1_000_000);
        assert_eq!(sh.evict(0, 10, &mut || true), Evicted::Impossible(1));
        assert!(!sh.exists(0, b"k3", 0), "the only volatile key went");
        assert_eq!(sh.stats.evicted_keys, 1);
    }

    #[test]
    fn budget_bounds_one_call() {
        let mut sh = shard(Policy::AllKeysRandom);
        fill(&mut sh, 100, 0);
        assert_eq!(sh.evict(0, 7, &mut || true), Evicted::Budget(7));
        assert_eq!(sh.db_len(0), 93);
        let mut left = 3;
        assert_eq!(
            sh.evict(0, 100, &mut || {
                left -= 1;
                left >= 0
            }),
            Evicted::Enough(3)
        );
    }

    /// Approximated LRU: keys idle the longest go first, far more often than recent ones.
    #[test]
    fn lru_evicts_the_idle_before_the_recent() {
        let mut sh = shard(Policy::AllKeysLru);
        fill(&mut sh, 2000, 0);
        // At t = 100 s the first half is read again.
        for i in 0..1000 {
            sh.lookup_read(0, format!("k{i}").as_bytes(), 100_000);
        }
        assert_eq!(sh.evict(100_000, 800, &mut || true), Evicted::Budget(800));
        let survivors = |r: std::ops::Range<usize>, sh: &mut Shard| {
            r.filter(|i| sh.exists(0, format!("k{i}").as_bytes(), 100_000))
                .count()
        };
        let recent = survivors(0..1000, &mut sh);
        let idle = survivors(1000..2000, &mut sh);
        assert!(
            recent >= 950 && idle <= 250,
            "recent kept {recent}, idle kept {idle}"
        );
    }

    #[test]
    fn lfu_evicts_the_rarely_used_and_ttl_the_soonest_to_expire() {
        let mut sh = shard(Policy::AllKeysLfu);
        fill(&mut sh, 1000, 0);
        for _ in 0..50 {
            for i in 0..500 {
                sh.lookup_read(0, format!("k{i}").as_bytes(), 0);
            }
        }
        sh.evict(0, 400, &mut || true);
        let hot = (0..500)
            .filter(|i| sh.exists(0, format!("k{i}").as_bytes(), 0))
            .count();
        assert!(hot >= 450, "frequently used kept: {hot}");

        let mut sh = shard(Policy::VolatileTtl);
        fill(&mut sh, 100, 0);
        for i in 0..100 {
            sh.set_expire(0, format!("k{i}").as_bytes(), 1_000_000 + i as u64 * 1000);
        }
        sh.evict(0, 20, &mut || true);
        let late = (50..100)
            .filter(|i| sh.exists(0, format!("k{i}").as_bytes(), 0))
            .count();
        assert!(late >= 45, "keys expiring last kept: {late}");
    }
}
