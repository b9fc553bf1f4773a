//! Client-side caching (CLIENT TRACKING): which clients read which keys of this shard, and
//! the invalidations owed to them.
//!
//! Layout: `keys` maps a key name (of any database: Redis's table is keyed by name only) to
//! the clients that read it since it last changed, each as (client id, its core, NOLOOP).
//! `bcast` holds the BCAST registrations (prefix → clients): every shard has a copy, since any
//! key may match. A change to a key (the same paths that raise WATCH flags: writes, expiry,
//! eviction) moves its readers out of the table into `pending`, and adds an invalidation for
//! every BCAST client whose prefix matches; the server sends `pending` to the clients'
//! cores after the command. The table is bounded by `max_keys` (`tracking-table-max-keys`,
//! split across shards): past it, keys are dropped with an invalidation, as Redis does.
//! Nothing here costs anything while no client tracks (one flag test per change).

use std::collections::HashMap;

/// The client a command runs for, as far as tracking cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub id: u64,
    pub core: u16,
    /// The command's keys are remembered for this client (tracking on, not BCAST, and
    /// OPTIN/OPTOUT agree).
    pub remember: bool,
}

/// One client owed an invalidation of `key`, changed by client `by` (a NOLOOP client
/// is not told of its own changes: its core decides, knowing its current mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalidation {
    pub core: u16,
    pub id: u64,
    pub key: Box<[u8]>,
    pub by: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Reader {
    id: u64,
    core: u16,
}

impl Reader {
    /// The invalidation of `key` this reader is owed.
    fn owed(&self, key: &[u8], by: Option<u64>) -> Invalidation {
        Invalidation {
            core: self.core,
            id: self.id,
            key: key.into(),
            by,
        }
    }
}

#[derive(Default)]
pub struct Tracking {
    keys: HashMap<Box<[u8]>, Vec<Reader>>,
    /// Client references in `keys` (INFO `tracking_total_items`).
    items: usize,
    bcast: HashMap<Box<[u8]>, Vec<Reader>>,
    /// How many BCAST prefixes have each length: a changed key is looked up by its own
    /// prefixes of those lengths only (a few lookups, however many prefixes are registered).
    bcast_lens: std::collections::BTreeMap<usize, usize>,
    pub pending: Vec<Invalidation>,
    /// At most this many keys (0: no bound).
    pub max_keys: usize,
}

impl Tracking {
    /// Whether a change to a key can concern anyone.
    pub fn active(&self) -> bool {
        !self.keys.is_empty() || !self.bcast.is_empty()
    }

    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    pub fn items(&self) -> usize {
        self.items
    }

    /// Distinct BCAST prefixes.
    pub fn prefixes(&self) -> usize {
        self.bcast.len()
    }

    /// `caller` read `key`.
    pub fn remember(&mut self, key: &[u8], caller: &Caller) {
        let readers = match self.keys.get_mut(key) {
            Some(r) => r,
            None => self.keys.entry(key.into()).or_default(),
        };
        if !readers.iter().any(|r| r.id == caller.id) {
            readers.push(Reader {
                id: caller.id,
                core: caller.core,
            });
            self.items += 1;
        }
        if self.max_keys > 0 && self.keys.len() > self.max_keys {
            self.evict_over_limit(key);
        }
    }

    /// `key` changed (by `by`, if a client's command changed it).
    pub fn invalidate(&mut self, key: &[u8], by: Option<u64>) {
        self.invalidate_readers(key, by);
        for (&len, _) in self.bcast_lens.range(..=key.len()) {
            if let Some(readers) = self.bcast.get(&key[..len]) {
                self.pending.extend(readers.iter().map(|r| r.owed(key, by)));
            }
        }
    }

    /// Drops keys (other than `keep`, just read) until the table fits, each with its
    /// invalidation: the readers may cache it no longer.
    fn evict_over_limit(&mut self, keep: &[u8]) {
        while self.keys.len() > self.max_keys {
            let Some(victim) = self.keys.keys().find(|k| &k[..] != keep).cloned() else {
                return;
            };
            self.invalidate_readers(&victim, None);
        }
    }

    /// Moves the readers of `key` out of the table into `pending`.
    fn invalidate_readers(&mut self, key: &[u8], by: Option<u64>) {
        if let Some(readers) = self.keys.remove(key) {
            self.items -= readers.len();
            self.pending.extend(readers.iter().map(|r| r.owed(key, by)));
        }
    }

    /// Applies a new bound, evicting what no longer fits.
    pub fn set_max_keys(&mut self, max: usize) {
        self.max_keys = max;
        if max > 0 {
            self.evict_over_limit(&[]);
        }
    }

    /// Registers a BCAST client for `prefix` ("" for every key).
    pub fn add_prefix(&mut self, prefix: &[u8], caller: &Caller) {
        let readers = match self.bcast.get_mut(prefix) {
            Some(r) => r,
            None => {
                *self.bcast_lens.entry(prefix.len()).or_default() += 1;
                self.bcast.entry(prefix.into()).or_default()
            }
        };
        if !readers.iter().any(|r| r.id == caller.id) {
            readers.push(Reader {
                id: caller.id,
                core: caller.core,
            });
        }
    }

    /// Forgets client `id`: its BCAST prefixes at once; its entries in the key table
    /// stay until those keys change (they are skipped then), as Redis does, so that
    /// turning tracking off costs nothing per key read.
    pub fn remove_client(&mut self, id: u64) {
        let lens = &mut self.bcast_lens;
        self.bcast.retain(|prefix, readers| {
            readers.retain(|r| r.id != id);
            if readers.is_empty() {
                if let Some(n) = lens.get_mut(&prefix.len()) {
                    *n -= 1;
                    if *n == 0 {
                        lens.remove(&prefix.len());
                    }
                }
            }
            !readers.is_empty()
        });
    }

    /// FLUSHALL/FLUSHDB: every remembered read is forgotten (the server sends each tracking
    /// client one null invalidation instead).
    pub fn clear(&mut self) {
        self.keys.clear();
        self.items = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(id: u64) -> Caller {
        Caller {
            id,
            core: (id % 3) as u16,
            remember: true,
        }
    }

    #[test]
    fn a_read_key_is_invalidated_once_for_each_reader() {
        let mut t = Tracking::default();
        t.remember(b"k", &caller(1));
        t.remember(b"k", &caller(1));
        t.remember(b"k", &caller(2));
        assert_eq!((t.keys(), t.items()), (1, 2));
        t.invalidate(b"k", None);
        let ids: Vec<u64> = t.pending.iter().map(|i| i.id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!((t.keys(), t.items()), (0, 0));
        t.pending.clear();
        // Once invalidated, a key must be read again to be tracked again.
        t.invalidate(b"k", None);
        assert!(t.pending.is_empty());
    }

    #[test]
    fn an_invalidation_names_who_changed_the_key() {
        let mut t = Tracking::default();
        t.remember(b"k", &caller(1));
        t.remember(b"k", &caller(2));
        t.invalidate(b"k", Some(1));
        let got: Vec<(u64, Option<u64>)> = t.pending.iter().map(|i| (i.id, i.by)).collect();
        assert_eq!(got, vec![(1, Some(1)), (2, Some(1))]);
    }

    #[test]
    fn bcast_prefixes_match_every_change() {
        let mut t = Tracking::default();
        t.add_prefix(b"user:", &caller(7));
        t.add_prefix(b"", &caller(8));
        assert!(t.active());
        t.invalidate(b"user:1", None);
        t.invalidate(b"order:1", Some(8));
        let mut got: Vec<(u64, &[u8])> = t.pending.iter().map(|i| (i.id, &i.key[..])).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (7, &b"user:1"[..]),
                (8, &b"order:1"[..]),
                (8, &b"user:1"[..])
            ]
        );
        assert_eq!(t.prefixes(), 2);
        t.remove_client(7);
        t.remove_client(8);
        assert!(!t.active());
    }

    #[test]
    fn a_change_meets_only_the_prefixes_it_starts_with_among_many() {
        let mut t = Tracking::default();
        for i in 0..10_000 {
            t.add_prefix(format!("p{i}:").as_bytes(), &caller(i % 7));
        }
        t.add_prefix(b"p12", &caller(99));
        t.invalidate(b"p12:x", None);
        let mut ids: Vec<u64> = t.pending.iter().map(|i| i.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![12 % 7, 99]);
        assert_eq!(t.prefixes(), 10_001);
        for id in 0..7 {
            t.remove_client(id);
        }
        assert_eq!(t.prefixes(), 1);
        t.remove_client(99);
        assert!(!t.active());
        assert!(t.bcast_lens.is_empty());
    }

    #[test]
    fn the_table_is_bounded_with_invalidations() {
        let mut t = Tracking::default();
        t.set_max_keys(10);
        for i in 0..100 {
            t.remember(format!("k{i}").as_bytes(), &caller(1));
        }
        assert_eq!(t.keys(), 10);
        assert_eq!(t.pending.len(), 90);
        // The key just read stays.
        assert!(t.keys.contains_key(&b"k99"[..]));
    }
}
