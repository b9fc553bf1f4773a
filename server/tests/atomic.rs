//! Isolation across shards (the cross-shard scheduler, `server/src/txlock.rs`): money moves
//! between accounts whose keys live on 4 different shards — in MULTI/EXEC transactions and
//! in WATCH/MULTI/EXEC retry loops — while other clients read every balance with one MGET
//! and with a MULTI of GETs. Every read must see the same total, and the final balances
//! must be the starting ones moved by exactly the acknowledged transfers.
//!
//! Without the scheduler (each command of a transaction, and each shard's part of an
//! MGET, running on its own) readers see a debit without its credit within a few hundred
//! reads.

mod common;

use common::{esc, Client, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const ACCOUNTS: usize = 8;
const START: i64 = 10_000;

fn account(i: usize) -> String {
    format!("account:{i}")
}

/// An integer reply, or a bulk string holding one.
fn int(reply: &[u8]) -> i64 {
    let s = String::from_utf8_lossy(reply);
    let mut lines = s.split("\r\n");
    let first = lines.next().unwrap_or("");
    let n = match first.as_bytes().first() {
        Some(b':') => first[1..].parse().ok(),
        Some(b'$') => lines.next().and_then(|l| l.parse().ok()),
        _ => None,
    };
    n.unwrap_or_else(|| panic!("not a number: {s:?}"))
}

/// The integers of an array of bulk strings (nil counts 0).
fn ints(reply: &[u8]) -> Vec<i64> {
    let s = String::from_utf8_lossy(reply).to_string();
    let mut lines = s.split("\r\n").filter(|l| !l.is_empty());
    let n: usize = lines.next().unwrap()[1..].parse().unwrap();
    let mut out = Vec::new();
    while let Some(l) = lines.next() {
        if l == "$-1" || l == "_" {
            out.push(0);
        } else if l.starts_with('$') {
            out.push(lines.next().unwrap().parse().unwrap());
        }
    }
    assert_eq!(out.len(), n, "{s:?}");
    out
}

fn q(c: &mut Client, args: &[&str]) -> Vec<u8> {
    let a: Vec<&[u8]> = args.iter().map(|x| x.as_bytes()).collect();
    c.cmd(&a)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn transfers_across_shards_are_isolated() {
    let server = Server::percore(4, &[]);
    let port = server.port;
    let mut c = server.client();
    // The accounts spread over the shards (checked: at least 3 shards hold one).
    for i in 0..ACCOUNTS {
        assert_eq!(
            q(&mut c, &["SET", &account(i), &START.to_string()]),
            b"+OK\r\n"
        );
    }
    let total = START * ACCOUNTS as i64;
    // Acknowledged moves per account.
    let moved = Arc::new(Mutex::new(vec![0i64; ACCOUNTS]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut movers = Vec::new();
    for t in 0..4u64 {
        let moved = moved.clone();
        movers.push(std::thread::spawn(move || {
            let mut c = Client::connect(port);
            let mut r = Rng(0x9E37_79B9 + t * 7919);
            for _ in 0..400 {
                let from = r.below(ACCOUNTS);
                let to = (from + 1 + r.below(ACCOUNTS - 1)) % ACCOUNTS;
                let amount = 1 + r.below(50) as i64;
                let (fa, ta) = (account(from), account(to));
                if t % 2 == 0 {
                    // A plain transaction.
                    q(&mut c, &["MULTI"]);
                    q(&mut c, &["DECRBY", &fa, &amount.to_string()]);
                    q(&mut c, &["INCRBY", &ta, &amount.to_string()]);
                    let r = q(&mut c, &["EXEC"]);
                    assert!(r.starts_with(b"*2\r\n:"), "{}", esc(&r));
                } else {
                    // Optimistic: read, then write only if nobody changed the accounts.
                    loop {
                        q(&mut c, &["WATCH", &fa, &ta]);
                        let have = int(&q(&mut c, &["GET", &fa]));
                        q(&mut c, &["MULTI"]);
                        q(&mut c, &["SET", &fa, &(have - amount).to_string()]);
                        q(&mut c, &["INCRBY", &ta, &amount.to_string()]);
                        let r = q(&mut c, &["EXEC"]);
                        if r.starts_with(b"*2\r\n") {
                            break;
                        }
                        assert_eq!(r, b"*-1\r\n", "{}", esc(&r));
                    }
                }
                let mut m = moved.lock().unwrap();
                m[from] -= amount;
                m[to] += amount;
            }
        }));
    }
    let keys: Vec<String> = (0..ACCOUNTS).map(account).collect();
    let mut readers = Vec::new();
    for t in 0..2 {
        let (stop, keys) = (stop.clone(), keys.clone());
        readers.push(std::thread::spawn(move || {
            let mut c = Client::connect(port);
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let balances = if t == 0 {
                    let mut args = vec!["MGET"];
                    args.extend(keys.iter().map(String::as_str));
                    ints(&q(&mut c, &args))
                } else {
                    q(&mut c, &["MULTI"]);
                    for k in &keys {
                        q(&mut c, &["GET", k]);
                    }
                    ints(&q(&mut c, &["EXEC"]))
                };
                assert_eq!(
                    balances.iter().sum::<i64>(),
                    total,
                    "reader {t} saw half a transfer after {reads} reads: {balances:?}"
                );
                reads += 1;
            }
            reads
        }));
    }
    for m in movers {
        m.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let moved = moved.lock().unwrap();
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(String::as_str));
    let end = ints(&q(&mut c, &args));
    for i in 0..ACCOUNTS {
        assert_eq!(end[i], START + moved[i], "account {i}");
    }
}

/// Cross-shard multi-key commands are alone too: MSETNX, RENAME and SMOVE between keys
/// of different shards never show a reader an intermediate state.
#[test]
fn cross_shard_commands_are_isolated() {
    let server = Server::percore(4, &[]);
    let port = server.port;
    let mut c = server.client();
    // Two sets whose members move back and forth: together they always hold 100.
    let mut add = vec!["SADD", "left"];
    let members: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    add.extend(members.iter().map(String::as_str));
    assert_eq!(q(&mut c, &add), b":100\r\n");
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let members = members.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(port);
            for round in 0..20 {
                let (from, to) = if round % 2 == 0 {
                    ("left", "right")
                } else {
                    ("right", "left")
                };
                for m in &members {
                    assert_eq!(q(&mut c, &["SMOVE", from, to, m]), b":1\r\n");
                }
                // A key renamed across shards is always in one place.
                q(&mut c, &["SET", "here", "1"]);
                q(&mut c, &["RENAME", "here", "there"]);
                q(&mut c, &["RENAME", "there", "here"]);
            }
        })
    };
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(port);
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                q(&mut c, &["MULTI"]);
                q(&mut c, &["SCARD", "left"]);
                q(&mut c, &["SCARD", "right"]);
                q(&mut c, &["EXISTS", "here", "there"]);
                let r = String::from_utf8_lossy(&q(&mut c, &["EXEC"])).to_string();
                let n: Vec<i64> = r
                    .split("\r\n")
                    .filter(|l| l.starts_with(':'))
                    .map(|l| l[1..].parse().unwrap())
                    .collect();
                assert_eq!(
                    n[0] + n[1],
                    100,
                    "a member in flight after {reads} reads: {r:?}"
                );
                assert!(n[2] <= 1, "a renamed key in two places: {r:?}");
                reads += 1;
            }
            reads
        })
    };
    mover.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
}

/// A snapshot taken while transfers run holds each transfer whole or not at all: SAVE
/// during the transfers, then a server started on a copy of the set sees the full total.
#[test]
fn snapshots_start_between_transactions() {
    let dir = common::TempDir::new("atomic-save");
    let server = Server::percore(4, &["--dir", dir.path()]);
    let port = server.port;
    let mut c = server.client();
    for i in 0..ACCOUNTS {
        q(&mut c, &["SET", &account(i), &START.to_string()]);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let movers: Vec<_> = (0..3u64)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut r = Rng(0x51_7CC1 + t * 104_729);
                while !stop.load(Ordering::SeqCst) {
                    let from = r.below(ACCOUNTS);
                    let to = (from + 1 + r.below(ACCOUNTS - 1)) % ACCOUNTS;
                    q(&mut c, &["MULTI"]);
                    q(&mut c, &["DECRBY", &account(from), "3"]);
                    q(&mut c, &["INCRBY", &account(to), "3"]);
                    assert!(q(&mut c, &["EXEC"]).starts_with(b"*2\r\n"));
                }
            })
        })
        .collect();
    for round in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(q(&mut c, &["SAVE"]), b"+OK\r\n");
        let copy = common::TempDir::new("atomic-save-copy");
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(
                e.path(),
                std::path::Path::new(copy.path()).join(e.file_name()),
            )
            .unwrap();
        }
        let loaded = Server::percore(4, &["--dir", copy.path(), "--save", ""]);
        let mut lc = loaded.client();
        let mut args = vec!["MGET".to_string()];
        args.extend((0..ACCOUNTS).map(account));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let balances = ints(&q(&mut lc, &refs));
        assert_eq!(
            balances.iter().sum::<i64>(),
            START * ACCOUNTS as i64,
            "snapshot {round} holds half a transfer: {balances:?}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for m in movers {
        m.join().unwrap();
    }
}
