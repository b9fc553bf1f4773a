//! Model test: random command sequences run against a `Shard` and against a plain model of
//! Redis's semantics (a map of strings, hashes and sets with deadlines), with a controlled clock
//! that crosses expiry deadlines and random active-expiry, rehash and lazy-free steps in
//! between, which must never change what a client sees. Replies are compared byte for byte
//! (the elements of KEYS, HKEYS, HVALS, SMEMBERS, SINTER, SUNION, SDIFF and SSCAN and the
//! pairs of HGETALL as multisets: their order is unspecified; SPOP and SRANDMEMBER, being
//! random, by their count, membership and distinctness, SPOP's pops then applied to the
//! model). Sorted sets are modelled as member → score maps with scores in half units, so
//! every sum is exact and prints as Redis prints it. Now and then a snapshot is taken while the commands run: the file must
//! hold the keyspace as it was when the snapshot began, and load back into a fresh shard.

use percore_proto::encode::{split_array_reply, split_bulks};
use percore_proto::{command::resolve, OwnedArgs, Protocol, ReplyWriter};
use percore_shard::snapshot::{Reader, ValueView};
use percore_shard::types::hash::HashLimits;
use percore_shard::types::list::{decode_node, ListLimits};
use percore_shard::types::set::SetLimits;
use percore_shard::types::zset::ZSetLimits;
use percore_shard::{ExecCtx, Shard, ShardConfig, ValueRef};
use std::collections::{BTreeMap, BTreeSet};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A hash's fields and values.
type Fields = BTreeMap<Vec<u8>, Vec<u8>>;

/// A set's members.
type Members = BTreeSet<Vec<u8>>;

/// A sorted set's members and their scores, in half units (3 is 1.5).
type Scores = BTreeMap<Vec<u8>, i64>;

/// A value: a string, a hash, a set, a list or a sorted set.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Val {
    Str(Vec<u8>),
    Hash(Fields),
    Set(Members),
    List(Vec<Vec<u8>>),
    ZSet(Scores),
}

/// A score in half units as Redis prints it (`%.17g`: "1.5", "-3", "0").
fn half(h: i64) -> Vec<u8> {
    format!("{}", h as f64 / 2.0).into_bytes()
}

/// A score argument as half units (the generator writes only such scores).
fn parse_half(a: &[u8]) -> i64 {
    (text(a).parse::<f64>().unwrap() * 2.0) as i64
}

/// A sorted set's elements in Redis's order: by score, then member bytes.
fn zorder(z: &Scores) -> Vec<(Vec<u8>, i64)> {
    let mut v: Vec<(Vec<u8>, i64)> = z.iter().map(|(m, s)| (m.clone(), *s)).collect();
    v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// key → (value, deadline in ms; 0 for none)
type ModelDb = BTreeMap<Vec<u8>, (Val, u64)>;

#[derive(Default)]
struct Model {
    dbs: [ModelDb; 2],
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut b = format!("${}\r\n", v.len()).into_bytes();
    b.extend_from_slice(v);
    b.extend_from_slice(b"\r\n");
    b
}

fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

fn error(msg: &str) -> Vec<u8> {
    format!("-{msg}\r\n").into_bytes()
}

fn array(items: impl ExactSizeIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for i in items {
        out.extend(i);
    }
    out
}

const NIL: &[u8] = b"$-1\r\n";
const OK: &[u8] = b"+OK\r\n";
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INT: &str = "ERR value is not an integer or out of range";
const OVERFLOW: &str = "ERR increment or decrement would overflow";

/// Redis's `string2ld` on the values this test stores: a float `strtold` reads whole.
fn ld(v: &[u8]) -> Option<f64> {
    if v.is_empty() || v[0].is_ascii_whitespace() {
        return None;
    }
    std::str::from_utf8(v)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|f| !f.is_nan())
}

fn text(a: &[u8]) -> &str {
    std::str::from_utf8(a).unwrap()
}

impl Model {
    /// The live entry at `k`, dropping it if its deadline passed.
    fn live(&mut self, db: usize, k: &[u8], now: u64) -> Option<&mut (Val, u64)> {
        let expired = self.dbs[db]
            .get(k)
            .is_some_and(|(_, d)| *d != 0 && now > *d);
        if expired {
            self.dbs[db].remove(k);
        }
        self.dbs[db].get_mut(k)
    }

    /// The string at `k`: Err(WRONGTYPE reply) for another type.
    fn string(&mut self, db: usize, k: &[u8], now: u64) -> Result<Option<&mut Vec<u8>>, Vec<u8>> {
        match self.live(db, k, now) {
            None => Ok(None),
            Some((Val::Str(v), _)) => Ok(Some(v)),
            Some(_) => Err(error(WRONGTYPE)),
        }
    }

    /// The hash at `k` for reading: Err(WRONGTYPE reply) for another type.
    fn hash(&mut self, db: usize, k: &[u8], now: u64) -> Result<Option<&Fields>, Vec<u8>> {
        match self.live(db, k, now) {
            None => Ok(None),
            Some((Val::Hash(h), _)) => Ok(Some(h)),
            Some(_) => Err(error(WRONGTYPE)),
        }
    }

    /// The set at `k` for reading: Err(WRONGTYPE reply) for another type.
    fn set(&mut self, db: usize, k: &[u8], now: u64) -> Result<Option<&Members>, Vec<u8>> {
        match self.live(db, k, now) {
            None => Ok(None),
            Some((Val::Set(s), _)) => Ok(Some(s)),
            Some(_) => Err(error(WRONGTYPE)),
        }
    }

    /// Runs `f` on the set at `k` (created empty, without a deadline, when absent and
    /// `create`); a set left empty is deleted. Ok(None): absent and not created.
    fn set_write<R>(
        &mut self,
        db: usize,
        k: &[u8],
        now: u64,
        create: bool,
        f: impl FnOnce(&mut Members) -> R,
    ) -> Result<Option<R>, Vec<u8>> {
        match self.live(db, k, now) {
            Some((Val::Set(_), _)) => {}
            Some(_) => return Err(error(WRONGTYPE)),
            None if create => {
                self.dbs[db].insert(k.to_vec(), (Val::Set(BTreeSet::new()), 0));
            }
            None => return Ok(None),
        }
        let Some((Val::Set(s), _)) = self.dbs[db].get_mut(k) else {
            unreachable!("a set found or created just above")
        };
        let r = f(s);
        if s.is_empty() {
            self.dbs[db].remove(k);
        }
        Ok(Some(r))
    }

    /// Runs `f` on the sorted set at `k` (created empty when absent and `create`); one left
    /// empty is deleted. Ok(None): absent and not created.
    fn zset_write<R>(
        &mut self,
        db: usize,
        k: &[u8],
        now: u64,
        create: bool,
        f: impl FnOnce(&mut Scores) -> R,
    ) -> Result<Option<R>, Vec<u8>> {
        match self.live(db, k, now) {
            Some((Val::ZSet(_), _)) => {}
            Some(_) => return Err(error(WRONGTYPE)),
            None if create => {
                self.dbs[db].insert(k.to_vec(), (Val::ZSet(BTreeMap::new()), 0));
            }
            None => return Ok(None),
        }
        let Some((Val::ZSet(z), _)) = self.dbs[db].get_mut(k) else {
            unreachable!("a sorted set found or created just above")
        };
        let r = f(z);
        if z.is_empty() {
            self.dbs[db].remove(k);
        }
        Ok(Some(r))
    }

    /// Runs `f` on the list at `k` (created empty when absent and `create`); a list left
    /// empty is deleted. Ok(None): absent and not created.
    fn list_write<R>(
        &mut self,
        db: usize,
        k: &[u8],
        now: u64,
        create: bool,
        f: impl FnOnce(&mut Vec<Vec<u8>>) -> R,
    ) -> Result<Option<R>, Vec<u8>> {
        match self.live(db, k, now) {
            Some((Val::List(_), _)) => {}
            Some(_) => return Err(error(WRONGTYPE)),
            None if create => {
                self.dbs[db].insert(k.to_vec(), (Val::List(Vec::new()), 0));
            }
            None => return Ok(None),
        }
        let Some((Val::List(l), _)) = self.dbs[db].get_mut(k) else {
            unreachable!("a list found or created just above")
        };
        let r = f(l);
        if l.is_empty() {
            self.dbs[db].remove(k);
        }
        Ok(Some(r))
    }

    /// The sets at `keys` (a missing key an empty set), each key's type checked first.
    fn sets(&mut self, db: usize, keys: &[Vec<u8>], now: u64) -> Result<Vec<Members>, Vec<u8>> {
        keys.iter()
            .map(|k| self.set(db, k, now).map(|s| s.cloned().unwrap_or_default()))
            .collect()
    }

    /// Runs `f` on the hash at `k` (created empty, without a deadline, when absent and
    /// `create`); a hash left empty is deleted. Ok(None): absent and not created.
    fn hash_write<R>(
        &mut self,
        db: usize,
        k: &[u8],
        now: u64,
        create: bool,
        f: impl FnOnce(&mut Fields) -> R,
    ) -> Result<Option<R>, Vec<u8>> {
        match self.live(db, k, now) {
            Some((Val::Hash(_), _)) => {}
            Some(_) => return Err(error(WRONGTYPE)),
            None if create => {
                self.dbs[db].insert(k.to_vec(), (Val::Hash(BTreeMap::new()), 0));
            }
            None => return Ok(None),
        }
        let Some((Val::Hash(h), _)) = self.dbs[db].get_mut(k) else {
            unreachable!("a hash found or created just above")
        };
        let r = f(h);
        if h.is_empty() {
            self.dbs[db].remove(k);
        }
        Ok(Some(r))
    }

    /// The model's reply to `a`. `actual` is the shard's reply, which only HINCRBYFLOAT
    /// reads: its sum's digits come from `long double` arithmetic, so the model checks the
    /// number is the right one and takes the shard's text as the stored value.
    fn apply(&mut self, db: usize, now: u64, a: &[Vec<u8>], actual: &[u8]) -> Vec<u8> {
        let cmd = String::from_utf8_lossy(&a[0]).to_uppercase();
        let k = a.get(1).cloned().unwrap_or_default();
        let reply = |r: Result<Vec<u8>, Vec<u8>>| r.unwrap_or_else(|e| e);
        match cmd.as_str() {
            "SET" => {
                let deadline = if a.len() == 5 {
                    now + text(&a[4]).parse::<u64>().unwrap()
                } else {
                    0
                };
                self.dbs[db].insert(k, (Val::Str(a[2].clone()), deadline));
                OK.to_vec()
            }
            "SETNX" => {
                if self.live(db, &k, now).is_some() {
                    int(0)
                } else {
                    self.dbs[db].insert(k, (Val::Str(a[2].clone()), 0));
                    int(1)
                }
            }
            "GET" => reply(
                self.string(db, &k, now)
                    .map(|v| v.map_or(NIL.to_vec(), |v| bulk(v))),
            ),
            "GETDEL" => match self.string(db, &k, now).map(|v| v.cloned()) {
                Ok(Some(v)) => {
                    self.dbs[db].remove(&k);
                    bulk(&v)
                }
                Ok(None) => NIL.to_vec(),
                Err(e) => e,
            },
            "DEL" => {
                let mut n = 0;
                for key in &a[1..] {
                    if self.live(db, key, now).is_some() {
                        self.dbs[db].remove(key);
                        n += 1;
                    }
                }
                int(n)
            }
            "EXISTS" => int(a[1..]
                .iter()
                .filter(|key| self.live(db, key, now).is_some())
                .count() as i64),
            "TYPE" => match self.live(db, &k, now) {
                None => b"+none\r\n".to_vec(),
                Some((Val::Str(_), _)) => b"+string\r\n".to_vec(),
                Some((Val::Hash(_), _)) => b"+hash\r\n".to_vec(),
                Some((Val::Set(_), _)) => b"+set\r\n".to_vec(),
                Some((Val::List(_), _)) => b"+list\r\n".to_vec(),
                Some((Val::ZSet(_), _)) => b"+zset\r\n".to_vec(),
            },
            // MGET answers nil for a key of another type, as Redis does.
            "MGET" => array(a[1..].iter().map(|key| match self.live(db, key, now) {
                Some((Val::Str(v), _)) => bulk(v),
                _ => NIL.to_vec(),
            })),
            "PEXPIRE" => {
                let ms: i64 = text(&a[2]).parse().unwrap();
                if self.live(db, &k, now).is_none() {
                    return int(0);
                }
                if ms <= 0 {
                    self.dbs[db].remove(&k);
                } else {
                    self.dbs[db].get_mut(&k).unwrap().1 = now + ms as u64;
                }
                int(1)
            }
            "PERSIST" => match self.live(db, &k, now) {
                Some(e) if e.1 != 0 => {
                    e.1 = 0;
                    int(1)
                }
                _ => int(0),
            },
            "PTTL" => match self.live(db, &k, now) {
                None => int(-2),
                Some((_, 0)) => int(-1),
                Some((_, d)) => int(*d as i64 - now as i64),
            },
            "INCR" => {
                let old = match self.string(db, &k, now) {
                    Err(e) => return e,
                    Ok(None) => 0,
                    Ok(Some(v)) => match percore_proto::parse_i64(v).filter(|_| v.len() <= 20) {
                        Some(i) => i,
                        None => return error(NOT_INT),
                    },
                };
                match old.checked_add(1) {
                    Some(n) => {
                        let s = n.to_string().into_bytes();
                        match self.live(db, &k, now) {
                            Some(e) => e.0 = Val::Str(s),
                            None => {
                                self.dbs[db].insert(k, (Val::Str(s), 0));
                            }
                        }
                        int(n)
                    }
                    None => error(OVERFLOW),
                }
            }
            "APPEND" => match self.string(db, &k, now) {
                Err(e) => e,
                Ok(Some(v)) => {
                    v.extend_from_slice(&a[2]);
                    int(v.len() as i64)
                }
                Ok(None) => {
                    self.dbs[db].insert(k, (Val::Str(a[2].clone()), 0));
                    int(a[2].len() as i64)
                }
            },
            "STRLEN" => reply(
                self.string(db, &k, now)
                    .map(|v| int(v.map_or(0, |v| v.len() as i64))),
            ),
            "RENAME" => match self.live(db, &k, now).cloned() {
                None => error("ERR no such key"),
                Some(e) => {
                    self.dbs[db].remove(&k);
                    self.dbs[db].insert(a[2].clone(), e);
                    OK.to_vec()
                }
            },
            "KEYS" => {
                let keys: Vec<Vec<u8>> = self.dbs[db]
                    .iter()
                    .filter(|(_, (_, d))| *d == 0 || now <= *d)
                    .map(|(k, _)| bulk(k))
                    .collect();
                array(keys.into_iter())
            }
            "HSET" | "HMSET" => {
                if !a.len().is_multiple_of(2) {
                    return error(&format!(
                        "ERR wrong number of arguments for '{}' command",
                        cmd.to_lowercase()
                    ));
                }
                match self.hash_write(db, &k, now, true, |h| {
                    a[2..]
                        .chunks_exact(2)
                        .filter(|p| h.insert(p[0].clone(), p[1].clone()).is_none())
                        .count()
                }) {
                    Ok(_) if cmd == "HMSET" => OK.to_vec(),
                    Ok(added) => int(added.unwrap() as i64),
                    Err(e) => e,
                }
            }
            "HSETNX" => reply(
                self.hash_write(db, &k, now, true, |h| {
                    if h.contains_key(&a[2]) {
                        int(0)
                    } else {
                        h.insert(a[2].clone(), a[3].clone());
                        int(1)
                    }
                })
                .map(Option::unwrap),
            ),
            "HGET" => reply(self.hash(db, &k, now).map(|h| {
                h.and_then(|h| h.get(&a[2]))
                    .map_or(NIL.to_vec(), |v| bulk(v))
            })),
            "HMGET" => reply(self.hash(db, &k, now).map(|h| {
                array(
                    a[2..]
                        .iter()
                        .map(|f| h.and_then(|h| h.get(f)).map_or(NIL.to_vec(), |v| bulk(v))),
                )
            })),
            "HGETALL" | "HKEYS" | "HVALS" => reply(self.hash(db, &k, now).map(|h| {
                let mut items = Vec::new();
                for (f, v) in h.into_iter().flatten() {
                    if cmd != "HVALS" {
                        items.push(bulk(f));
                    }
                    if cmd != "HKEYS" {
                        items.push(bulk(v));
                    }
                }
                array(items.into_iter())
            })),
            "HDEL" => reply(
                self.hash_write(db, &k, now, false, |h| {
                    a[2..].iter().filter(|f| h.remove(*f).is_some()).count() as i64
                })
                .map(|n| int(n.unwrap_or(0))),
            ),
            "HLEN" => reply(
                self.hash(db, &k, now)
                    .map(|h| int(h.map_or(0, |h| h.len() as i64))),
            ),
            "HSTRLEN" => reply(
                self.hash(db, &k, now)
                    .map(|h| int(h.and_then(|h| h.get(&a[2])).map_or(0, |v| v.len() as i64))),
            ),
            "HEXISTS" => reply(
                self.hash(db, &k, now)
                    .map(|h| int(h.is_some_and(|h| h.contains_key(&a[2])) as i64)),
            ),
            "HINCRBY" => {
                let Some(incr) = percore_proto::parse_i64(&a[3]) else {
                    return error(NOT_INT);
                };
                let r = self.hash_write(db, &k, now, true, |h| {
                    let old = match h.get(&a[2]) {
                        None => 0,
                        Some(v) => percore_proto::parse_i64(v)
                            .ok_or_else(|| error("ERR hash value is not an integer"))?,
                    };
                    let new = old.checked_add(incr).ok_or_else(|| error(OVERFLOW))?;
                    h.insert(a[2].clone(), new.to_string().into_bytes());
                    Ok(int(new))
                });
                reply(r.and_then(Option::unwrap))
            }
            "HINCRBYFLOAT" => {
                let incr = match ld(&a[3]) {
                    None => return error("ERR value is not a valid float"),
                    Some(f) if f.is_infinite() => return error("ERR value is NaN or Infinity"),
                    Some(f) => f,
                };
                let r = self.hash_write(db, &k, now, true, |h| {
                    let old = match h.get(&a[2]) {
                        None => 0.0,
                        Some(v) => ld(v).ok_or_else(|| error("ERR hash value is not a float"))?,
                    };
                    let want = old + incr;
                    assert!(want.is_finite(), "the test's values keep sums finite");
                    // The shard's digits, if they are the sum's, written as Redis writes
                    // them: no exponent, no trailing zeros after the point, no "-0".
                    let got = split_bulks(actual, 1, &mut Vec::new())
                        .and_then(|_| std::str::from_utf8(actual).ok())
                        .and_then(|s| s.split("\r\n").nth(1))
                        .filter(|t| {
                            t.parse::<f64>()
                                .is_ok_and(|g| (g - want).abs() <= 1e-9 * want.abs().max(1.0))
                                && !t.contains(['e', 'E'])
                                && !(t.contains('.') && (t.ends_with('0') || t.ends_with('.')))
                                && *t != "-0"
                        });
                    let Some(t) = got else {
                        return Err(format!("<a bulk string of {want}>").into_bytes());
                    };
                    h.insert(a[2].clone(), t.as_bytes().to_vec());
                    Ok(bulk(t.as_bytes()))
                });
                reply(r.and_then(Option::unwrap))
            }
            "LPUSH" | "RPUSH" => {
                let left = cmd == "LPUSH";
                reply(
                    self.list_write(db, &k, now, true, |l| {
                        for e in &a[2..] {
                            if left {
                                l.insert(0, e.clone());
                            } else {
                                l.push(e.clone());
                            }
                        }
                        l.len() as i64
                    })
                    .map(|n| int(n.unwrap())),
                )
            }
            "LPOP" | "RPOP" => {
                let left = cmd == "LPOP";
                let count = a
                    .get(2)
                    .map(|c| std::str::from_utf8(c).unwrap().parse::<usize>().unwrap());
                reply(
                    self.list_write(db, &k, now, false, |l| {
                        let n = count.unwrap_or(1).min(l.len());
                        let popped: Vec<Vec<u8>> = if left {
                            l.drain(..n).collect()
                        } else {
                            let mut t: Vec<Vec<u8>> = l.drain(l.len() - n..).collect();
                            t.reverse();
                            t
                        };
                        match count {
                            None => bulk(&popped[0]),
                            Some(_) => array(popped.iter().map(|e| bulk(e))),
                        }
                    })
                    .map(|r| {
                        r.unwrap_or_else(|| {
                            if count.is_some() {
                                b"*-1\r\n".to_vec()
                            } else {
                                NIL.to_vec()
                            }
                        })
                    }),
                )
            }
            "LLEN" => reply(
                self.list_write(db, &k, now, false, |l| l.len() as i64)
                    .map(|n| int(n.unwrap_or(0))),
            ),
            "LRANGE" => reply(
                self.list_write(db, &k, now, false, |l| array(l.iter().map(|e| bulk(e))))
                    .map(|r| r.unwrap_or_else(|| b"*0\r\n".to_vec())),
            ),
            "LINDEX" => {
                let i: i64 = std::str::from_utf8(&a[2]).unwrap().parse().unwrap();
                reply(
                    self.list_write(db, &k, now, false, |l| {
                        let i = if i < 0 { l.len() as i64 + i } else { i };
                        l.get(i as usize)
                            .filter(|_| i >= 0)
                            .map_or(NIL.to_vec(), |e| bulk(e))
                    })
                    .map(|r| r.unwrap_or_else(|| NIL.to_vec())),
                )
            }
            "LREM" => {
                let c: i64 = std::str::from_utf8(&a[2]).unwrap().parse().unwrap();
                let target = a[3].clone();
                reply(
                    self.list_write(db, &k, now, false, |l| {
                        let mut left = if c == 0 {
                            usize::MAX
                        } else {
                            c.unsigned_abs() as usize
                        };
                        let mut idx: Vec<usize> = (0..l.len()).collect();
                        if c < 0 {
                            idx.reverse();
                        }
                        let mut doomed = Vec::new();
                        for i in idx {
                            if left > 0 && l[i] == target {
                                doomed.push(i);
                                left -= 1;
                            }
                        }
                        doomed.sort_unstable();
                        for i in doomed.iter().rev() {
                            l.remove(*i);
                        }
                        doomed.len() as i64
                    })
                    .map(|n| int(n.unwrap_or(0))),
                )
            }
            "LINSERT" => {
                let after = a[2] == b"AFTER";
                reply(
                    self.list_write(db, &k, now, false, |l| {
                        match l.iter().position(|e| *e == a[3]) {
                            Some(p) => {
                                l.insert(p + after as usize, a[4].clone());
                                l.len() as i64
                            }
                            None => -1,
                        }
                    })
                    .map(|n| int(n.unwrap_or(0))),
                )
            }
            "LSET" => {
                let i: i64 = std::str::from_utf8(&a[2]).unwrap().parse().unwrap();
                match self.live(db, &k, now) {
                    None => error("ERR no such key"),
                    Some((Val::List(l), _)) => {
                        let j = if i < 0 { l.len() as i64 + i } else { i };
                        if j < 0 || j as usize >= l.len() {
                            error("ERR index out of range")
                        } else {
                            l[j as usize] = a[3].clone();
                            OK.to_vec()
                        }
                    }
                    Some(_) => error(WRONGTYPE),
                }
            }
            "ZADD" => {
                // ZADD key [NX|XX] [CH] score member [score member ...]
                let (mut nx, mut xx, mut ch, mut i) = (false, false, false, 2);
                loop {
                    match &a[i][..] {
                        b"NX" => nx = true,
                        b"XX" => xx = true,
                        b"CH" => ch = true,
                        _ => break,
                    }
                    i += 1;
                }
                let pairs: Vec<(i64, Vec<u8>)> = a[i..]
                    .chunks(2)
                    .map(|p| (parse_half(&p[0]), p[1].clone()))
                    .collect();
                if nx && xx {
                    return error("ERR XX and NX options at the same time are not compatible");
                }
                reply(
                    self.zset_write(db, &k, now, !xx, |z| {
                        let (mut added, mut changed) = (0, 0);
                        for (s, m) in pairs {
                            match z.get(&m).copied() {
                                Some(_) if nx => {}
                                Some(old) => {
                                    if old != s {
                                        z.insert(m, s);
                                        changed += 1;
                                    }
                                }
                                None if xx => {}
                                None => {
                                    z.insert(m, s);
                                    added += 1;
                                }
                            }
                        }
                        if ch {
                            added + changed
                        } else {
                            added
                        }
                    })
                    .map(|n| int(n.unwrap_or(0))),
                )
            }
            "ZINCRBY" => {
                let by = parse_half(&a[2]);
                reply(
                    self.zset_write(db, &k, now, true, |z| {
                        let s = z.entry(a[3].clone()).or_insert(0);
                        *s += by;
                        *s
                    })
                    .map(|s| bulk(&half(s.unwrap()))),
                )
            }
            "ZSCORE" => match self.live(db, &k, now) {
                None => NIL.to_vec(),
                Some((Val::ZSet(z), _)) => z.get(&a[2]).map_or(NIL.to_vec(), |s| bulk(&half(*s))),
                Some(_) => error(WRONGTYPE),
            },
            "ZCARD" => match self.live(db, &k, now) {
                None => int(0),
                Some((Val::ZSet(z), _)) => int(z.len() as i64),
                Some(_) => error(WRONGTYPE),
            },
            "ZRANK" => match self.live(db, &k, now) {
                None => NIL.to_vec(),
                Some((Val::ZSet(z), _)) => match zorder(z).iter().position(|(m, _)| *m == a[2]) {
                    Some(r) => int(r as i64),
                    None => NIL.to_vec(),
                },
                Some(_) => error(WRONGTYPE),
            },
            "ZREM" => reply(
                self.zset_write(db, &k, now, false, |z| {
                    a[2..].iter().filter(|m| z.remove(*m).is_some()).count() as i64
                })
                .map(|n| int(n.unwrap_or(0))),
            ),
            "ZRANGE" => match self.live(db, &k, now) {
                None => array(std::iter::empty()),
                Some((Val::ZSet(z), _)) => {
                    let flat: Vec<Vec<u8>> = zorder(z)
                        .into_iter()
                        .flat_map(|(m, s)| [bulk(&m), bulk(&half(s))])
                        .collect();
                    array(flat.into_iter())
                }
                Some(_) => error(WRONGTYPE),
            },
            "ZRANGEBYSCORE" => {
                let (lo, hi) = (parse_half(&a[2]), parse_half(&a[3]));
                match self.live(db, &k, now) {
                    None => array(std::iter::empty()),
                    Some((Val::ZSet(z), _)) => {
                        let v: Vec<Vec<u8>> = zorder(z)
                            .into_iter()
                            .filter(|(_, s)| (lo..=hi).contains(s))
                            .map(|(m, _)| bulk(&m))
                            .collect();
                        array(v.into_iter())
                    }
                    Some(_) => error(WRONGTYPE),
                }
            }
            "ZPOPMIN" => {
                let count = a.get(2).map_or(1, |c| text(c).parse::<usize>().unwrap());
                reply(
                    self.zset_write(db, &k, now, false, |z| {
                        let popped: Vec<(Vec<u8>, i64)> =
                            zorder(z).into_iter().take(count).collect();
                        for (m, _) in &popped {
                            z.remove(m);
                        }
                        popped
                    })
                    .map(|p| {
                        let flat: Vec<Vec<u8>> = p
                            .unwrap_or_default()
                            .into_iter()
                            .flat_map(|(m, s)| [bulk(&m), bulk(&half(s))])
                            .collect();
                        array(flat.into_iter())
                    }),
                )
            }
            "ZREMRANGEBYRANK" => {
                let (start, end): (i64, i64) =
                    (text(&a[2]).parse().unwrap(), text(&a[3]).parse().unwrap());
                reply(
                    self.zset_write(db, &k, now, false, |z| {
                        let order = zorder(z);
                        let n = order.len() as i64;
                        let (mut s, mut e) = (start, end);
                        if s < 0 {
                            s += n;
                        }
                        if e < 0 {
                            e += n;
                        }
                        s = s.max(0);
                        if s > e || s >= n {
                            return 0;
                        }
                        e = e.min(n - 1);
                        for (m, _) in &order[s as usize..=e as usize] {
                            z.remove(m);
                        }
                        e - s + 1
                    })
                    .map(|n| int(n.unwrap_or(0))),
                )
            }
            // Bitmaps: bit 0 is the top bit of the first byte; writes zero-pad the string.
            "SETBIT" | "GETBIT" => {
                let off: usize = text(&a[2]).parse().unwrap();
                let (byte, mask) = (off / 8, 0x80u8 >> (off % 8));
                let write = cmd == "SETBIT";
                let v = match self.string(db, &k, now) {
                    Err(e) => return e,
                    Ok(Some(v)) => v,
                    Ok(None) if write => {
                        self.dbs[db].insert(k.clone(), (Val::Str(Vec::new()), 0));
                        self.string(db, &k, now).unwrap().unwrap()
                    }
                    Ok(None) => return int(0),
                };
                let old = v.get(byte).is_some_and(|b| b & mask != 0);
                if write {
                    if v.len() <= byte {
                        v.resize(byte + 1, 0);
                    }
                    if a[3] == b"1" {
                        v[byte] |= mask;
                    } else {
                        v[byte] &= !mask;
                    }
                }
                int(old as i64)
            }
            "BITCOUNT" => reply(
                self.string(db, &k, now)
                    .map(|v| int(v.map_or(0, |v| v.iter().map(|b| b.count_ones() as i64).sum()))),
            ),
            // BITFIELD k INCRBY u8 #n by: a byte-aligned wrapping counter.
            "BITFIELD" => {
                let n: usize = text(&a[4][1..]).parse().unwrap();
                let by: i64 = text(&a[5]).parse().unwrap();
                let v = match self.string(db, &k, now) {
                    Err(e) => return e,
                    Ok(Some(v)) => v,
                    Ok(None) => {
                        self.dbs[db].insert(k.clone(), (Val::Str(Vec::new()), 0));
                        self.string(db, &k, now).unwrap().unwrap()
                    }
                };
                if v.len() <= n {
                    v.resize(n + 1, 0);
                }
                v[n] = (v[n] as i64 + by).rem_euclid(256) as u8;
                array([int(v[n] as i64)].into_iter())
            }
            "BITOP" => {
                let mut srcs = Vec::new();
                for key in &a[3..] {
                    match self.string(db, key, now) {
                        Err(e) => return e,
                        Ok(v) => srcs.push(v.cloned().unwrap_or_default()),
                    }
                }
                let len = srcs.iter().map(Vec::len).max().unwrap_or(0);
                let at = |s: &Vec<u8>, i: usize| s.get(i).copied().unwrap_or(0);
                let out: Vec<u8> = (0..len)
                    .map(|i| {
                        let mut it = srcs.iter().map(|s| at(s, i));
                        let first = it.next().unwrap_or(0);
                        match text(&a[1]) {
                            "AND" => it.fold(first, |x, y| x & y),
                            "OR" => it.fold(first, |x, y| x | y),
                            "XOR" => it.fold(first, |x, y| x ^ y),
                            _ => !first,
                        }
                    })
                    .collect();
                if out.is_empty() {
                    self.dbs[db].remove(&a[2]);
                } else {
                    self.dbs[db].insert(a[2].clone(), (Val::Str(out), 0));
                }
                int(len as i64)
            }
            "ZUNIONSTORE" => {
                // ZUNIONSTORE dst 2 k1 k2: sums; a set's members score 1.
                let mut acc: Scores = BTreeMap::new();
                for src in &a[3..5] {
                    match self.live(db, src, now) {
                        None => {}
                        Some((Val::ZSet(z), _)) => {
                            for (m, s) in z.iter() {
                                *acc.entry(m.clone()).or_insert(0) += s;
                            }
                        }
                        Some((Val::Set(st), _)) => {
                            for m in st.iter() {
                                *acc.entry(m.clone()).or_insert(0) += 2;
                            }
                        }
                        Some(_) => return error(WRONGTYPE),
                    }
                }
                let n = acc.len() as i64;
                if acc.is_empty() {
                    self.dbs[db].remove(&a[1]);
                } else {
                    self.dbs[db].insert(a[1].clone(), (Val::ZSet(acc), 0));
                }
                int(n)
            }
            "SADD" => reply(
                self.set_write(db, &k, now, true, |s| {
                    a[2..].iter().filter(|m| s.insert(m.to_vec())).count() as i64
                })
                .map(|n| int(n.unwrap())),
            ),
            "SREM" => reply(
                self.set_write(db, &k, now, false, |s| {
                    a[2..].iter().filter(|m| s.remove(*m)).count() as i64
                })
                .map(|n| int(n.unwrap_or(0))),
            ),
            "SMEMBERS" => reply(self.set(db, &k, now).map(|s| {
                let items: Vec<Vec<u8>> = s.into_iter().flatten().map(|m| bulk(m)).collect();
                array(items.into_iter())
            })),
            "SISMEMBER" => reply(
                self.set(db, &k, now)
                    .map(|s| int(s.is_some_and(|s| s.contains(&a[2])) as i64)),
            ),
            "SMISMEMBER" => reply(self.set(db, &k, now).map(|s| {
                array(
                    a[2..]
                        .iter()
                        .map(|m| int(s.is_some_and(|s| s.contains(m)) as i64)),
                )
            })),
            "SCARD" => reply(
                self.set(db, &k, now)
                    .map(|s| int(s.map_or(0, |s| s.len() as i64))),
            ),
            // SSCAN key 0 COUNT 1000: these sets are small enough to come whole in one call.
            "SSCAN" => reply(self.set(db, &k, now).map(|s| {
                let items: Vec<Vec<u8>> = s.into_iter().flatten().map(|m| bulk(m)).collect();
                let mut out = b"*2\r\n".to_vec();
                out.extend(bulk(b"0"));
                out.extend(array(items.into_iter()));
                out
            })),
            // Random: the shard's reply is checked for its count, membership and (SPOP, and
            // SRANDMEMBER with a positive count) distinctness; SPOP's pops are then applied.
            "SPOP" | "SRANDMEMBER" => {
                let pop = cmd == "SPOP";
                let count = match a.get(2).map(|c| percore_proto::parse_i64(c)) {
                    None => None,
                    Some(Some(n)) if n >= 0 || !pop => Some(n),
                    Some(_) if pop => return error("ERR value is out of range, must be positive"),
                    Some(_) => return error(NOT_INT),
                };
                let members = match self.set(db, &k, now) {
                    Err(e) => return e,
                    Ok(None) if count.is_some() => return b"*0\r\n".to_vec(),
                    Ok(None) => return NIL.to_vec(),
                    Ok(Some(s)) => s.clone(),
                };
                let got = match count {
                    None => bulk_payload(actual).map(|m| vec![m]),
                    Some(n) => array_items(actual).filter(|p| {
                        let distinct = p.iter().collect::<BTreeSet<_>>().len() == p.len();
                        if n >= 0 {
                            p.len() == (n as usize).min(members.len()) && distinct
                        } else {
                            p.len() == n.unsigned_abs() as usize
                        }
                    }),
                };
                let Some(got) = got.filter(|p| p.iter().all(|m| members.contains(m))) else {
                    return format!("<{count:?} random members of {members:?}>").into_bytes();
                };
                if pop {
                    self.set_write(db, &k, now, false, |s| {
                        for m in &got {
                            s.remove(m);
                        }
                    })
                    .unwrap();
                }
                actual.to_vec()
            }
            "SMOVE" => {
                let (src, dst, m) = (&a[1], &a[2], &a[3]);
                if self.live(db, src, now).is_none() {
                    return int(0);
                }
                if let Err(e) = self.set(db, src, now) {
                    return e;
                }
                if let Err(e) = self.set(db, dst, now) {
                    return e;
                }
                if src == dst {
                    return int(self.set(db, src, now).unwrap().unwrap().contains(m) as i64);
                }
                if !self
                    .set_write(db, src, now, false, |s| s.remove(m))
                    .unwrap()
                    .unwrap()
                {
                    return int(0);
                }
                self.set_write(db, dst, now, true, |s| s.insert(m.clone()))
                    .unwrap();
                int(1)
            }
            "SINTER" | "SUNION" | "SDIFF" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE"
            | "SINTERCARD" => {
                let store = cmd.ends_with("STORE");
                let (keys, limit) = if cmd == "SINTERCARD" {
                    let numkeys = match percore_proto::parse_i64(&a[1]) {
                        Some(n) if n >= 1 => n as usize,
                        _ => return error("ERR numkeys should be greater than 0"),
                    };
                    if numkeys > a.len() - 2 {
                        return error("ERR Number of keys can't be greater than number of args");
                    }
                    // The test only makes well-formed LIMIT clauses.
                    let limit = a.get(3 + numkeys).map_or(0, |l| text(l).parse().unwrap());
                    (&a[2..2 + numkeys], limit)
                } else if store {
                    (&a[2..], 0)
                } else {
                    (&a[1..], 0)
                };
                let sets = match self.sets(db, keys, now) {
                    Err(e) => return e,
                    Ok(s) => s,
                };
                let mut it = sets.into_iter();
                let first = it.next().expect("a key");
                let result: Members = if cmd.starts_with("SINTER") {
                    it.fold(first, |acc, s| acc.intersection(&s).cloned().collect())
                } else if cmd.starts_with("SUNION") {
                    it.fold(first, |mut acc, s| {
                        acc.extend(s);
                        acc
                    })
                } else {
                    it.fold(first, |acc, s| acc.difference(&s).cloned().collect())
                };
                if cmd == "SINTERCARD" {
                    let n = result.len();
                    int(if limit > 0 { n.min(limit) } else { n } as i64)
                } else if !store {
                    array(result.iter().map(|m| bulk(m)))
                } else if result.is_empty() {
                    self.dbs[db].remove(&a[1]);
                    int(0)
                } else {
                    let n = result.len() as i64;
                    self.dbs[db].insert(a[1].clone(), (Val::Set(result), 0));
                    int(n)
                }
            }
            other => panic!("model lacks {other}"),
        }
    }

    /// Every live entry at `now`, by (db, key).
    fn live_at(&self, now: u64) -> BTreeMap<(u8, Vec<u8>), (Val, u64)> {
        let mut out = BTreeMap::new();
        for (db, d) in self.dbs.iter().enumerate() {
            for (k, (v, at)) in d {
                if *at == 0 || now <= *at {
                    out.insert((db as u8, k.clone()), (v.clone(), *at));
                }
            }
        }
        out
    }
}

/// The payload of one encoded bulk string, which must be all of `b`.
fn bulk_payload(b: &[u8]) -> Option<Vec<u8>> {
    let rest = b.strip_prefix(b"$")?;
    let eol = rest.iter().position(|&c| c == b'\r')?;
    let n: usize = std::str::from_utf8(&rest[..eol]).ok()?.parse().ok()?;
    (rest.len() == eol + 2 + n + 2).then(|| rest[eol + 2..eol + 2 + n].to_vec())
}

/// The payloads of an array reply of (non-null) bulk strings, which must be all of `reply`.
fn array_items(reply: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (n, body) = split_array_reply(reply)?;
    let mut raw = Vec::new();
    split_bulks(body, n, &mut raw)?;
    if raw.iter().map(|b| b.len()).sum::<usize>() != body.len() {
        return None;
    }
    raw.into_iter().map(bulk_payload).collect()
}

/// A scan reply `[cursor, [elements]]` with its elements sorted; other replies as they are.
fn sorted_scan(reply: Vec<u8>) -> Vec<u8> {
    let Some(body) = reply.strip_prefix(b"*2\r\n") else {
        return reply;
    };
    let mut cursor = Vec::new();
    if split_bulks(body, 1, &mut cursor).is_none() {
        return reply;
    }
    let head = 4 + cursor[0].len();
    let mut out = reply[..head].to_vec();
    out.extend(sorted_reply(reply[head..].to_vec(), 1));
    out
}

/// An array reply's elements sorted as groups of `group` (KEYS, HKEYS, HVALS and the set
/// replies: 1;
/// HGETALL: 2, its field and value pairs), binary-safe. Other replies are left as they are.
fn sorted_reply(reply: Vec<u8>, group: usize) -> Vec<u8> {
    let Some((n, body)) = split_array_reply(&reply) else {
        return reply;
    };
    let mut items = Vec::new();
    split_bulks(body, n, &mut items).expect("bulk elements");
    let mut groups: Vec<Vec<u8>> = items.chunks(group).map(|g| g.concat()).collect();
    groups.sort();
    let mut out = format!("*{n}\r\n").into_bytes();
    for g in groups {
        out.extend(g);
    }
    out
}

fn gen(r: &mut Rng) -> Vec<Vec<u8>> {
    let keys: [&[u8]; 6] = [b"a", b"b", b"c", b"d", b"\x00bin\r\n", b""];
    let vals: [&[u8]; 6] = [
        b"1",
        b"x",
        b"",
        b"9223372036854775807",
        b"007",
        b"hello\r\nworld",
    ];
    let fields: [&[u8]; 5] = [b"f", b"g", b"h", b"", b"\x00fld\r\n"];
    let k = keys[r.below(6) as usize].to_vec();
    let v = vals[r.below(6) as usize].to_vec();
    let s = |x: &str| x.as_bytes().to_vec();
    let field = |r: &mut Rng| fields[r.below(5) as usize].to_vec();
    // Set members: mostly integers (of each intset width), so sets stay intsets a while.
    let ints: [&[u8]; 7] = [
        b"1",
        b"2",
        b"3",
        b"-7",
        b"40000",
        b"9223372036854775807",
        b"-9223372036854775808",
    ];
    let others: [&[u8]; 6] = [b"x", b"", b"007", b"-0", b"+1", b"\x00m\r\n"];
    let member = |r: &mut Rng| {
        if r.below(4) != 0 {
            ints[r.below(7) as usize].to_vec()
        } else {
            others[r.below(6) as usize].to_vec()
        }
    };
    let key = |r: &mut Rng| keys[r.below(6) as usize].to_vec();
    // Scores in half units from -3 to 3, so sums stay exact.
    let score = |r: &mut Rng| half(r.below(13) as i64 - 6);
    let which = r.below(75);
    // Fields and a second value for the hash commands.
    let (f, f2, f3, v2) = if (16..32).contains(&which) {
        let v2 = vals[r.below(6) as usize].to_vec();
        (field(r), field(r), field(r), v2)
    } else {
        Default::default()
    };
    match which {
        0 => vec![s("SET"), k, v],
        1 => vec![
            s("SET"),
            k,
            v,
            s("PX"),
            (1 + r.below(100)).to_string().into_bytes(),
        ],
        2 => vec![s("GET"), k],
        3 => vec![s("DEL"), k, keys[r.below(6) as usize].to_vec()],
        4 => vec![s("EXISTS"), k.clone(), k],
        5 => vec![
            s("PEXPIRE"),
            k,
            (r.below(120) as i64 - 10).to_string().into_bytes(),
        ],
        6 => vec![s("PERSIST"), k],
        7 => vec![s("PTTL"), k],
        8 => vec![s("INCR"), k],
        9 => vec![s("APPEND"), k, v],
        10 => vec![s("STRLEN"), k],
        11 => vec![s("RENAME"), k, keys[r.below(6) as usize].to_vec()],
        12 => vec![s("KEYS"), s("*")],
        13 => vec![s("MGET"), k, keys[r.below(6) as usize].to_vec()],
        14 => vec![
            if r.below(2) == 0 {
                s("GETDEL")
            } else {
                s("SETNX")
            },
            k,
            v,
        ][..if r.below(2) == 0 { 2 } else { 3 }]
            .to_vec(),
        15 => vec![s("TYPE"), k],
        // Writes to hashes come up more often than reads, so hashes fill up (and, with
        // the small limits, change encoding) between the deletes.
        16 | 17 => match r.below(8) {
            0 => vec![s("HSET"), k, f, v, f2],
            1..=3 => vec![s("HSET"), k, f, v],
            _ => vec![s("HSET"), k, f, v, f2, v2],
        },
        18 => match r.below(4) {
            0 => vec![s("HMSET"), k, f, v, f2],
            _ => vec![s("HMSET"), k, f, v, f2, v2],
        },
        19 => vec![s("HSETNX"), k, f, v],
        20 => vec![s("HGET"), k, f],
        21 => vec![s("HMGET"), k, f, f2],
        22 => vec![s("HGETALL"), k],
        23 => vec![
            if r.below(2) == 0 {
                s("HKEYS")
            } else {
                s("HVALS")
            },
            k,
        ],
        24 => match r.below(3) {
            0 => vec![s("HDEL"), k, f],
            1 => vec![s("HDEL"), k, f, f2],
            _ => vec![s("HDEL"), k, f, f2, f3],
        },
        25 => vec![s("HLEN"), k],
        26 => vec![s("HSTRLEN"), k, f],
        27 => vec![s("HEXISTS"), k, f],
        28 | 29 => {
            let incrs = [
                "1",
                "-3",
                "0",
                "9223372036854775807",
                "-9223372036854775808",
                "x",
            ];
            vec![s("HINCRBY"), k, f, s(incrs[r.below(6) as usize])]
        }
        30 | 31 => {
            let incrs = ["1.5", "-0.25", "10", "3e2", "abc", "inf"];
            vec![s("HINCRBYFLOAT"), k, f, s(incrs[r.below(6) as usize])]
        }
        // Sets: adds come up most, so sets grow (and, with the small limits, leave the
        // intset encoding) between the removals.
        32 => vec![s("SREM"), k, member(r)],
        33 => vec![s("SREM"), k, member(r), member(r), member(r)],
        34 => vec![s("SMEMBERS"), k],
        35 => vec![s("SISMEMBER"), k, member(r)],
        36 => vec![s("SMISMEMBER"), k, member(r), member(r)],
        37 => vec![s("SCARD"), k],
        38 | 39 => {
            let (cmd, counts) = if which == 38 {
                ("SPOP", ["0", "1", "2", "5", "-1", "x"])
            } else {
                ("SRANDMEMBER", ["0", "1", "3", "5", "-3", "x"])
            };
            let mut c = vec![s(cmd), k];
            if r.below(3) != 0 {
                c.push(s(counts[r.below(6) as usize]));
            }
            c
        }
        40 => vec![s("SMOVE"), k, key(r), member(r)],
        41 | 42 => {
            let cmds = [
                "SINTER",
                "SUNION",
                "SDIFF",
                "SINTERSTORE",
                "SUNIONSTORE",
                "SDIFFSTORE",
            ];
            let cmd = cmds[r.below(6) as usize];
            let mut c = vec![s(cmd), k];
            if cmd.ends_with("STORE") {
                c.push(key(r));
            }
            for _ in 0..r.below(3) {
                c.push(key(r));
            }
            c
        }
        43 => {
            let n = r.below(3);
            let mut c = vec![s("SINTERCARD"), n.to_string().into_bytes(), k];
            // Now and then numkeys past the keys given, or zero.
            for _ in 1..n {
                c.push(key(r));
            }
            if r.below(2) == 0 {
                c.push(s("LIMIT"));
                c.push(r.below(4).to_string().into_bytes());
            } else if n == 2 && r.below(2) == 0 {
                c.pop();
            }
            c
        }
        44 => vec![s("SSCAN"), k, s("0"), s("COUNT"), s("1000")],
        // Lists: pushes come up most, so lists grow past a node (with the small fill).
        48..=51 => {
            let mut c = vec![
                s(if which.is_multiple_of(2) {
                    "LPUSH"
                } else {
                    "RPUSH"
                }),
                k,
                v,
            ];
            for _ in 0..r.below(4) {
                c.push(vals[r.below(6) as usize].to_vec());
            }
            c
        }
        52 => {
            let mut c = vec![s(if r.below(2) == 0 { "LPOP" } else { "RPOP" }), k];
            if r.below(2) == 0 {
                c.push(r.below(4).to_string().into_bytes());
            }
            c
        }
        53 => vec![s("LRANGE"), k, s("0"), s("-1")],
        54 => vec![
            s("LINDEX"),
            k,
            (r.below(9) as i64 - 4).to_string().into_bytes(),
        ],
        55 => vec![
            s("LREM"),
            k,
            (r.below(5) as i64 - 2).to_string().into_bytes(),
            v,
        ],
        56 => vec![
            s("LINSERT"),
            k,
            s(if r.below(2) == 0 { "BEFORE" } else { "AFTER" }),
            v,
            vals[r.below(6) as usize].to_vec(),
        ],
        57 => vec![
            s("LSET"),
            k,
            (r.below(7) as i64 - 3).to_string().into_bytes(),
            v,
        ],
        58 => vec![s("LLEN"), k],
        59 | 60 => {
            let mut c = vec![s("ZADD"), k];
            match r.below(6) {
                0 => c.push(s("NX")),
                1 => c.push(s("XX")),
                2 => c.push(s("CH")),
                _ => {}
            }
            for _ in 0..1 + r.below(3) {
                c.push(score(r));
                c.push(member(r));
            }
            c
        }
        61 => vec![s("ZINCRBY"), k, score(r), member(r)],
        62 => vec![s("ZSCORE"), k, member(r)],
        63 => vec![s("ZREM"), k, member(r), member(r)],
        64 => vec![s("ZRANGE"), k, s("0"), s("-1"), s("WITHSCORES")],
        65 => {
            let (x, y) = (score(r), score(r));
            vec![s("ZRANGEBYSCORE"), k, x, y]
        }
        66 => {
            let mut c = vec![s("ZPOPMIN"), k];
            if r.below(2) == 0 {
                c.push(r.below(4).to_string().into_bytes());
            }
            c
        }
        67 if r.below(2) == 0 => vec![s("ZCARD"), k],
        67 => vec![s("ZRANK"), k, member(r)],
        68 => vec![
            s("ZREMRANGEBYRANK"),
            k,
            (r.below(5) as i64 - 2).to_string().into_bytes(),
            (r.below(5) as i64 - 2).to_string().into_bytes(),
        ],
        69 => vec![s("ZUNIONSTORE"), k, s("2"), key(r), key(r)],
        70 | 71 => {
            let get = r.below(3) == 0;
            let mut c = vec![
                s(if get { "GETBIT" } else { "SETBIT" }),
                k,
                r.below(40).to_string().into_bytes(),
            ];
            if !get {
                c.push(r.below(2).to_string().into_bytes());
            }
            c
        }
        72 => vec![s("BITCOUNT"), k],
        73 => {
            let op = ["AND", "OR", "XOR", "NOT"][r.below(4) as usize];
            let mut c = vec![s("BITOP"), s(op), k, key(r)];
            if op != "NOT" {
                c.push(key(r));
            }
            c
        }
        74 => vec![
            s("BITFIELD"),
            k,
            s("INCRBY"),
            s("u8"),
            format!("#{}", r.below(4)).into_bytes(),
            (r.below(600) as i64 - 300).to_string().into_bytes(),
        ],
        _ => {
            let mut c = vec![s("SADD"), k, member(r)];
            for _ in 0..r.below(3) {
                c.push(member(r));
            }
            c
        }
    }
}

/// A snapshot in progress: its file so far, and the keyspace when it began.
struct Snap {
    file: Vec<u8>,
    began: u64,
    want: BTreeMap<(u8, Vec<u8>), (Val, u64)>,
}

/// A value as the shard holds it, in the model's terms.
fn val_of(v: ValueRef) -> Val {
    match v {
        ValueRef::Hash(h) => {
            let mut m = BTreeMap::new();
            h.for_each(|f, v| {
                assert!(m.insert(f.to_vec(), v.to_vec()).is_none(), "a field twice");
            });
            Val::Hash(m)
        }
        ValueRef::Set(s) => {
            let mut m = BTreeSet::new();
            s.for_each(|x| {
                assert!(m.insert(x.to_vec()), "a member twice");
            });
            Val::Set(m)
        }
        ValueRef::List(l) => Val::List(l.iter().map(|e| e.to_vec()).collect()),
        ValueRef::ZSet(z) => {
            let mut m = BTreeMap::new();
            z.for_each(|s, x| {
                assert!(
                    m.insert(x.to_vec(), (s * 2.0) as i64).is_none(),
                    "a member twice"
                );
            });
            Val::ZSet(m)
        }
        ValueRef::Int(_) | ValueRef::Str { .. } => Val::Str(v.to_vec()),
    }
}

/// A finished snapshot holds the keyspace as it was when it began (each key once; keys
/// already past their deadline then may be in it or not), and loads at `now` into a fresh
/// shard, hashes and sets in the encoding their size (and members) call for.
fn check_snapshot(seed: u64, s: Snap, config: &ShardConfig, now: u64) {
    let mut got = BTreeMap::new();
    let mut r = Reader::new(&s.file).expect("a snapshot header");
    let mut loaded = Shard::new(seed ^ 0x5A5A, config.clone());
    while let Some(block) = r.next_block().expect("a snapshot reads back whole") {
        for rec in block.records() {
            let at = rec.expire_at_ms;
            let v = match &rec.value {
                ValueView::Int(i) => Val::Str(i.to_string().into_bytes()),
                ValueView::Str { data, .. } => Val::Str(data.to_vec()),
                ValueView::HashMore(_) | ValueView::SetMore(_) | ValueView::ZSetMore(_) => {
                    // These small collections are never written in parts.
                    panic!("seed {seed}: a small collection written in parts")
                }
                ValueView::Hash(pairs) => {
                    let mut m = BTreeMap::new();
                    for (f, v) in pairs.pairs() {
                        let prev = m.insert(f.to_vec(), v.to_vec());
                        assert!(prev.is_none(), "seed {seed}: a field saved twice");
                    }
                    assert!(!m.is_empty(), "seed {seed}: an empty hash saved");
                    Val::Hash(m)
                }
                ValueView::Set(members) => {
                    let mut m = BTreeSet::new();
                    for x in members.members() {
                        let new = m.insert(x.to_vec());
                        assert!(new, "seed {seed}: a member saved twice");
                    }
                    assert!(!m.is_empty(), "seed {seed}: an empty set saved");
                    Val::Set(m)
                }
                ValueView::ZSet(elems) => {
                    let mut m = BTreeMap::new();
                    let mut prev: Option<(f64, Vec<u8>)> = None;
                    for (member, bits) in elems.scored() {
                        let s = f64::from_bits(bits);
                        let x = member.to_vec();
                        if let Some((ps, pm)) = &prev {
                            assert!((*ps, pm) < (s, &x), "seed {seed}: elements saved in order");
                        }
                        assert!(
                            m.insert(x.clone(), (s * 2.0) as i64).is_none(),
                            "seed {seed}: a member saved twice"
                        );
                        prev = Some((s, x));
                    }
                    assert!(!m.is_empty(), "seed {seed}: an empty sorted set saved");
                    Val::ZSet(m)
                }
                ValueView::List(nodes) | ValueView::ListMore(nodes) => {
                    let mut l = Vec::new();
                    for n in nodes.members() {
                        let entries = decode_node(n).expect("well-formed list nodes");
                        l.extend(entries.into_iter().map(|e| e.to_vec()));
                    }
                    assert!(!l.is_empty(), "seed {seed}: an empty list saved");
                    if matches!(rec.value, ValueView::ListMore(_)) {
                        let key = (rec.db, rec.key.to_vec());
                        match got.get_mut(&key) {
                            Some((Val::List(head), _)) => head.extend(l),
                            _ => panic!("seed {seed}: the rest of a list no record began"),
                        }
                        continue;
                    }
                    Val::List(l)
                }
            };
            let prev = got.insert((rec.db, rec.key.to_vec()), (v, at));
            assert!(prev.is_none(), "seed {seed}: a key saved twice");
        }
        loaded.load_block(&block, now, &mut |_| true);
    }
    got.retain(|_, (_, at)| *at == 0 || s.began <= *at);
    assert_eq!(
        got, s.want,
        "seed {seed}: the snapshot begun at {} holds the keyspace of then",
        s.began
    );
    let limits = config.hash_limits;
    let live: Vec<_> = s
        .want
        .into_iter()
        .filter(|(_, (_, at))| *at == 0 || now <= *at)
        .collect();
    for db in 0..2u8 {
        let n = live.iter().filter(|((d, _), _)| *d == db).count();
        assert_eq!(loaded.db_len(db as usize), n, "seed {seed}: keys loaded");
    }
    for ((db, key), (want, at)) in live {
        let e = loaded
            .lookup(db as usize, &key, now)
            .unwrap_or_else(|| panic!("seed {seed}: {key:?} loaded"));
        assert_eq!(e.expire_at_ms(), at, "seed {seed}: {key:?}'s deadline");
        if let ValueRef::Hash(h) = e.value() {
            let mut small = h.len() <= limits.max_listpack_entries;
            h.for_each(|f, v| {
                small &= f.len().max(v.str_len()) <= limits.max_listpack_value;
            });
            let enc = if small { "listpack" } else { "hashtable" };
            assert_eq!(h.encoding(), enc, "seed {seed}: {key:?} loaded as {h:?}");
        }
        if let (ValueRef::Set(st), Val::Set(m)) = (e.value(), &want) {
            // An intset holds integers Redis writes back the same (no "-0", "+1", "007").
            let ints = m.iter().all(|x| {
                percore_proto::parse_i64(x).is_some_and(|i| i.to_string().as_bytes() == &x[..])
            });
            let small = ints && m.len() <= config.set_limits.max_intset_entries;
            let enc = if small { "intset" } else { "hashtable" };
            assert_eq!(st.encoding(), enc, "seed {seed}: {key:?} loaded as {st:?}");
        }
        if let ValueRef::ZSet(z) = e.value() {
            let zl = config.zset_limits;
            let mut small = z.len() <= zl.max_listpack_entries;
            z.for_each(|_, m| small &= m.len() <= zl.max_listpack_value);
            let enc = if small { "listpack" } else { "skiplist" };
            assert_eq!(z.encoding(), enc, "seed {seed}: {key:?} loaded as {z:?}");
        }
        assert_eq!(val_of(e.value()), want, "seed {seed}: {key:?} loaded");
    }
}

#[test]
fn shard_matches_model_across_expiry() {
    for seed in 1..=40u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
        // Every other seed with tiny hash limits, so hashes also leave the listpack
        // encoding (on a fourth field, or a field or value over 6 bytes).
        let config = ShardConfig {
            hash_limits: if seed % 2 == 0 {
                HashLimits::default()
            } else {
                HashLimits {
                    max_listpack_entries: 3,
                    max_listpack_value: 6,
                }
            },
            // And with a tiny set-max-intset-entries, so sets of integers convert too.
            set_limits: if seed % 2 == 0 {
                SetLimits::default()
            } else {
                SetLimits {
                    max_intset_entries: 3,
                }
            },
            // And tiny sorted-set limits, so sorted sets convert (a fourth member, or one
            // over 6 bytes).
            zset_limits: if seed % 2 == 0 {
                ZSetLimits::default()
            } else {
                ZSetLimits {
                    max_listpack_entries: 3,
                    max_listpack_value: 6,
                }
            },
            // And nodes of two elements, so lists span many nodes; list-compress-depth 0, 1
            // or 2 (interior nodes of 48 bytes and more stored compressed).
            list_limits: ListLimits {
                fill: if seed % 2 == 0 { -2 } else { 2 },
                compress_depth: (seed % 3) as usize,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut shard = Shard::new(seed, config.clone());
        let mut model = Model::default();
        let mut now: u64 = 1_700_000_000_000;
        let mut snap: Option<Snap> = None;
        let mut snapshots = 0;
        for step in 0..2500 {
            now += r.below(20);
            let db = r.below(2) as usize;
            let mut cmd = gen(&mut r);
            if cmd[0] == b"GETDEL" && cmd.len() == 3 {
                cmd.pop();
            }
            if cmd[0] == b"SETNX" && cmd.len() == 2 {
                cmd.push(b"v".to_vec());
            }
            let owned = OwnedArgs::from_slices(&cmd);
            let spec = resolve(&owned.args()).unwrap();
            let mut out = Vec::new();
            shard.apply(
                &ExecCtx { db, now_ms: now },
                spec,
                owned.args(),
                &mut ReplyWriter::new(&mut out, Protocol::Resp2),
            );
            let mut want = model.apply(db, now, &cmd, &out);
            let group = match &cmd[0][..] {
                b"KEYS" | b"HKEYS" | b"HVALS" | b"SMEMBERS" | b"SINTER" | b"SUNION" | b"SDIFF" => 1,
                b"HGETALL" => 2,
                _ => 0,
            };
            if cmd[0] == b"SSCAN" {
                out = sorted_scan(out);
                want = sorted_scan(want);
            } else if group != 0 {
                out = sorted_reply(out, group);
                want = sorted_reply(want, group);
            }
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want),
                "seed {seed} step {step} db {db} now {now}: {:?}",
                cmd.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
            );
            // Background work must be invisible.
            match r.below(10) {
                0 => {
                    shard.expire_step(now, 1 + r.below(20) as usize);
                }
                1 => {
                    shard.rehash_step(1 + r.below(4) as usize);
                }
                2 => {
                    shard.lazyfree_step(1 + r.below(64) as usize, 1);
                }
                _ => {}
            }
            // A snapshot now and then, walked a few buckets after each command.
            if snap.is_none() && r.below(400) == 0 {
                snap = Some(Snap {
                    file: shard.snapshot_begin(0, 1, now),
                    began: now,
                    want: model.live_at(now),
                });
            }
            if let Some(s) = snap.as_mut() {
                if !shard.snapshot_step(1 + r.below(3) as usize, &mut |b| s.file.extend(b)) {
                    let s = snap.take().expect("in progress");
                    check_snapshot(seed, s, &config, now);
                    snapshots += 1;
                }
            }
        }
        assert!(snapshots > 0, "seed {seed}: a snapshot ran");
        if let Some(mut s) = snap.take() {
            while shard.snapshot_step(64, &mut |b| s.file.extend(b)) {}
            check_snapshot(seed, s, &config, now);
        }
        // After enough active expiry, no expired key remains stored.
        now += 1000;
        for _ in 0..1000 {
            shard.expire_step(now, 64);
        }
        for db in 0..2 {
            let live = model.dbs[db]
                .values()
                .filter(|(_, d)| *d == 0 || now <= *d)
                .count();
            assert_eq!(
                shard.db_len(db),
                live,
                "seed {seed}: active expiry reclaimed every expired key"
            );
        }
    }
}
