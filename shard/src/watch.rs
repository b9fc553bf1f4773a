//! WATCH: the keys clients watch on this shard, each with the flags to raise when it
//! changes (the client's "dirty CAS" flag, which makes its EXEC fail).
//!
//! The shard raises a watched key's flags whenever it may have changed: a write command
//! naming it, a store, deletion, new deadline, expiry (lazy or active), eviction, a pop
//! served to a blocked client, and FLUSHDB/FLUSHALL/SWAPDB when the key existed (Redis's
//! `touchAllWatchedKeysInDb`). Every check is one `is_empty` branch when nobody watches.
//! A write command that changes nothing (a failed SETNX, DEL of a missing key) raises the
//! flags too, where Redis raises them only on a change: such an EXEC fails and is retried,
//! never the other way round.
//!
//! The flags are shared with connections on any core (an `Arc<AtomicBool>` per WATCHing
//! connection); entries are removed by the connection's UNWATCH (also after EXEC, DISCARD
//! and on disconnect). Bounded by the keys clients watch, as in Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One watching connection: its database and its flag.
type Watcher = (u8, Arc<AtomicBool>);

#[derive(Default)]
pub struct Watches {
    keys: HashMap<Box<[u8]>, Vec<Watcher>>,
}

impl Watches {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of watched keys (a key watched in two databases counts once).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn add(&mut self, db: usize, key: &[u8], flag: &Arc<AtomicBool>) {
        let w = self.keys.entry(key.into()).or_default();
        if !w
            .iter()
            .any(|(d, f)| *d as usize == db && Arc::ptr_eq(f, flag))
        {
            w.push((db as u8, flag.clone()));
        }
    }

    pub fn remove(&mut self, db: usize, key: &[u8], flag: &Arc<AtomicBool>) {
        if let Some(w) = self.keys.get_mut(key) {
            w.retain(|(d, f)| !(*d as usize == db && Arc::ptr_eq(f, flag)));
            if w.is_empty() {
                self.keys.remove(key);
            }
        }
    }

    /// Raises the flags of everyone watching `key` in `db`.
    pub fn touch(&self, db: usize, key: &[u8]) {
        if let Some(w) = self.keys.get(key) {
            for (d, f) in w {
                if *d as usize == db {
                    f.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Raises the flags of the keys watched in `db` for which `exists` holds.
    pub fn touch_db(&self, db: usize, mut exists: impl FnMut(&[u8]) -> bool) {
        for (k, w) in &self.keys {
            if w.iter().any(|(d, _)| *d as usize == db) && exists(k) {
                self.touch(db, k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_rise_for_their_key_and_database_only() {
        let mut w = Watches::default();
        let (a, b) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        w.add(0, b"k", &a);
        w.add(0, b"k", &a);
        w.add(1, b"k", &b);
        assert_eq!(w.len(), 1);
        w.touch(2, b"k");
        w.touch(0, b"other");
        assert!(!a.load(Ordering::SeqCst) && !b.load(Ordering::SeqCst));
        w.touch(0, b"k");
        assert!(a.load(Ordering::SeqCst) && !b.load(Ordering::SeqCst));
        w.touch_db(1, |_| false);
        assert!(!b.load(Ordering::SeqCst));
        w.touch_db(1, |k| k == b"k");
        assert!(b.load(Ordering::SeqCst));
        w.remove(0, b"k", &a);
        w.remove(1, b"k", &b);
        assert!(w.is_empty());
    }
}
