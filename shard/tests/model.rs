//! Model test: random command sequences run against a `Shard` and against a plain model of
//! Redis's semantics (a map with deadlines), with a controlled clock that crosses expiry
//! deadlines and random active-expiry and rehash steps in between, which must never change
//! what a client sees. Replies are compared byte for byte.

use percore_proto::encode::{split_array_reply, split_bulks};
use percore_proto::{command::resolve, OwnedArgs, Protocol, ReplyWriter};
use percore_shard::{ExecCtx, Shard, ShardConfig};
use std::collections::HashMap;

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

/// key → (value, deadline in ms; 0 for none)
type ModelDb = HashMap<Vec<u8>, (Vec<u8>, u64)>;

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

const NIL: &[u8] = b"$-1\r\n";
const OK: &[u8] = b"+OK\r\n";

impl Model {
    /// The live entry at `k`, dropping it if its deadline passed.
    fn live(&mut self, db: usize, k: &[u8], now: u64) -> Option<&mut (Vec<u8>, u64)> {
        let expired = self.dbs[db]
            .get(k)
            .is_some_and(|(_, d)| *d != 0 && now > *d);
        if expired {
            self.dbs[db].remove(k);
        }
        self.dbs[db].get_mut(k)
    }

    fn apply(&mut self, db: usize, now: u64, a: &[Vec<u8>]) -> Vec<u8> {
        let cmd = String::from_utf8_lossy(&a[0]).to_uppercase();
        let k = a.get(1).cloned().unwrap_or_default();
        match cmd.as_str() {
            "SET" => {
                let deadline = if a.len() == 5 {
                    now + std::str::from_utf8(&a[4]).unwrap().parse::<u64>().unwrap()
                } else {
                    0
                };
                self.dbs[db].insert(k, (a[2].clone(), deadline));
                OK.to_vec()
            }
            "SETNX" => {
                if self.live(db, &k, now).is_some() {
                    int(0)
                } else {
                    self.dbs[db].insert(k, (a[2].clone(), 0));
                    int(1)
                }
            }
            "GET" => self
                .live(db, &k, now)
                .map_or(NIL.to_vec(), |(v, _)| bulk(v)),
            "GETDEL" => match self.live(db, &k, now).map(|(v, _)| v.clone()) {
                Some(v) => {
                    self.dbs[db].remove(&k);
                    bulk(&v)
                }
                None => NIL.to_vec(),
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
            "MGET" => {
                let mut out = format!("*{}\r\n", a.len() - 1).into_bytes();
                for key in &a[1..] {
                    out.extend(
                        self.live(db, key, now)
                            .map_or(NIL.to_vec(), |(v, _)| bulk(v)),
                    );
                }
                out
            }
            "PEXPIRE" => {
                let ms: i64 = std::str::from_utf8(&a[2]).unwrap().parse().unwrap();
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
                let cur = self.live(db, &k, now).map(|(v, d)| (v.clone(), *d));
                let (old, d) = match cur {
                    None => (0, 0),
                    Some((v, d)) => match percore_proto::parse_i64(&v).filter(|_| v.len() <= 20) {
                        Some(i) => (i, d),
                        None => {
                            return b"-ERR value is not an integer or out of range\r\n".to_vec()
                        }
                    },
                };
                match old.checked_add(1) {
                    Some(n) => {
                        self.dbs[db].insert(k, (n.to_string().into_bytes(), d));
                        int(n)
                    }
                    None => b"-ERR increment or decrement would overflow\r\n".to_vec(),
                }
            }
            "APPEND" => match self.live(db, &k, now) {
                Some((v, _)) => {
                    v.extend_from_slice(&a[2]);
                    int(v.len() as i64)
                }
                None => {
                    self.dbs[db].insert(k, (a[2].clone(), 0));
                    int(a[2].len() as i64)
                }
            },
            "STRLEN" => int(self.live(db, &k, now).map_or(0, |(v, _)| v.len() as i64)),
            "RENAME" => match self.live(db, &k, now).cloned() {
                None => b"-ERR no such key\r\n".to_vec(),
                Some(e) => {
                    self.dbs[db].remove(&k);
                    self.dbs[db].insert(a[2].clone(), e);
                    OK.to_vec()
                }
            },
            "KEYS" => {
                let mut keys: Vec<Vec<u8>> = self.dbs[db]
                    .iter()
                    .filter(|(_, (_, d))| *d == 0 || now <= *d)
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.sort();
                let mut out = format!("*{}\r\n", keys.len()).into_bytes();
                for k in keys {
                    out.extend(bulk(&k));
                }
                out
            }
            other => panic!("model lacks {other}"),
        }
    }
}

/// KEYS order is unspecified: sort the bulk elements (binary-safe).
fn sorted_keys_reply(reply: Vec<u8>) -> Vec<u8> {
    let (n, body) = split_array_reply(&reply).expect("KEYS replies with an array");
    let mut items = Vec::new();
    split_bulks(body, n, &mut items).expect("bulk elements");
    items.sort();
    let mut out = format!("*{n}\r\n").into_bytes();
    for i in items {
        out.extend_from_slice(i);
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
    let k = keys[r.below(6) as usize].to_vec();
    let v = vals[r.below(6) as usize].to_vec();
    let s = |x: &str| x.as_bytes().to_vec();
    match r.below(15) {
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
        _ => vec![
            if r.below(2) == 0 {
                s("GETDEL")
            } else {
                s("SETNX")
            },
            k,
            v,
        ][..if r.below(2) == 0 { 2 } else { 3 }]
            .to_vec(),
    }
}

#[test]
fn shard_matches_model_across_expiry() {
    for seed in 1..=40u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
        let mut shard = Shard::new(seed, ShardConfig::default());
        let mut model = Model::default();
        let mut now: u64 = 1_700_000_000_000;
        for step in 0..3000 {
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
            let mut want = model.apply(db, now, &cmd);
            if cmd[0] == b"KEYS" {
                out = sorted_keys_reply(out);
                want = sorted_keys_reply(want);
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
                _ => {}
            }
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
