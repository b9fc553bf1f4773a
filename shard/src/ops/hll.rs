//! HyperLogLog commands (Redis's `hyperloglog.c` commands): PFADD, PFCOUNT, PFMERGE,
//! PFDEBUG, PFSELFTEST.
//!
//! HLLs are plain strings in Redis's representation ([`crate::types::hll`]): no value type
//! of their own, nothing new in snapshots. A command that writes an HLL (PFADD, PFMERGE's
//! destination, single-key PFCOUNT's cache, PFDEBUG) edits the string in place and leaves it
//! `raw`, as Redis's `dbUnshareStringValue` does, so OBJECT ENCODING matches.
//!
//! Checks follow Redis's order: the key's type (the usual WRONGTYPE), then the HLL header
//! ("WRONGTYPE Key is not a valid HyperLogLog string value."), then the sparse body while
//! it is decoded ("INVALIDOBJ Corrupted HLL object detected"). Multi-key PFCOUNT and PFMERGE
//! over several shards gather registers with [`gather`] on each shard and finish on the
//! connection's core (`server/src/coordinated.rs`); on one shard they run here.

use super::eq_ic;
use crate::types::hll::{self, Raw, REGISTERS};
use crate::{err, Entry, ExecCtx, Shard, Value, ValueRef};
use percore_proto::{Args, ReplyWriter};

/// The error for a string that is not an HLL.
pub const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
/// The error for an HLL whose sparse body does not decode.
pub const INVALIDOBJ: &str = "INVALIDOBJ Corrupted HLL object detected";

/// Redis's `isHLLObjectOrReply` on a stored value.
fn check(v: ValueRef) -> Result<(), &'static str> {
    match v {
        ValueRef::Str { data, .. } if hll::is_hll(data) => Ok(()),
        // An integer-encoded string is not `sds`-encoded in Redis: not an HLL either.
        v if v.is_string() => Err(NOT_HLL),
        _ => Err(err::WRONGTYPE),
    }
}

fn new_value(data: Vec<u8>) -> Value {
    Value::Str { data, raw: true }
}

pub fn pfadd(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let max_bytes = sh.config.hll_sparse_max_bytes;
    let key = &a[1];
    let mut updated = 0usize;
    let add_all = |v: &mut Vec<u8>, updated: &mut usize| -> Result<(), &'static str> {
        for ele in a.iter().skip(2) {
            if hll::add(v, ele, max_bytes).map_err(|_| INVALIDOBJ)? {
                *updated += 1;
            }
        }
        if *updated > 0 {
            hll::invalidate_cache(v);
        }
        Ok(())
    };
    let result = match sh.lookup(ctx.db, key, ctx.now_ms) {
        None => {
            let mut v = hll::new_sparse();
            updated += 1;
            let r = add_all(&mut v, &mut updated);
            sh.store(ctx.db, key, Entry::new(new_value(v), ctx.now_ms));
            r
        }
        Some(mut e) => match check(e.value()) {
            Err(msg) => Err(msg),
            Ok(()) => {
                let mut r = Ok(());
                e.edit_raw(|v| r = add_all(v, &mut updated));
                r
            }
        },
    };
    match result {
        Ok(()) if updated > 0 => {
            sh.notify(crate::notify::STRING, "pfadd", ctx.db, key);
            out.int(1)
        }
        Ok(()) => out.int(0),
        Err(msg) => out.error(msg),
    }
}

/// Registers merged from HLLs, and whether any of them was dense.
pub struct Gathered {
    pub max: Box<Raw>,
    pub dense: bool,
}

impl Gathered {
    pub fn new() -> Gathered {
        Gathered {
            max: Box::new([0u8; REGISTERS]),
            dense: false,
        }
    }

    /// Takes in what another shard gathered.
    pub fn absorb(&mut self, other: &Gathered) {
        for (m, &o) in self.max.iter_mut().zip(other.max.iter()) {
            *m = (*m).max(o);
        }
        self.dense |= other.dense;
    }
}

impl Default for Gathered {
    fn default() -> Self {
        Gathered::new()
    }
}

/// Merges the HLLs at `keys` (missing keys are empty) as PFCOUNT and PFMERGE read their
/// sources: on the first bad key, Err with its position in `keys` and the error text.
pub fn gather(
    sh: &mut Shard,
    db: usize,
    now_ms: u64,
    keys: &[&[u8]],
) -> Result<Gathered, (usize, &'static str)> {
    let mut g = Gathered::new();
    for (i, key) in keys.iter().enumerate() {
        let Some(e) = sh.lookup_read(db, key, now_ms) else {
            continue;
        };
        let v = e.value();
        check(v).map_err(|msg| (i, msg))?;
        let ValueRef::Str { data, .. } = v else {
            continue;
        };
        g.dense |= data[4] == hll::DENSE;
        hll::merge_into(&mut g.max, data).map_err(|_| (i, INVALIDOBJ))?;
    }
    Ok(g)
}

/// PFMERGE's write: raises the registers of the HLL at `key` (created if absent) to
/// `g.max`, dense if any source was. The key was checked as a source; a value that changed
/// type since (another client, between a coordinator's steps) is refused with its error.
pub fn store_merged(
    sh: &mut Shard,
    db: usize,
    now_ms: u64,
    key: &[u8],
    g: &Gathered,
) -> Result<(), &'static str> {
    let max_bytes = sh.config.hll_sparse_max_bytes;
    let finish = |v: &mut Vec<u8>| -> Result<(), &'static str> {
        if g.dense {
            hll::to_dense(v).map_err(|_| INVALIDOBJ)?;
        }
        hll::raise_all(v, &g.max, max_bytes);
        hll::invalidate_cache(v);
        Ok(())
    };
    match sh.lookup(db, key, now_ms) {
        None => {
            let mut v = hll::new_sparse();
            finish(&mut v)?;
            sh.store(db, key, Entry::new(new_value(v), now_ms));
        }
        Some(mut e) => {
            check(e.value())?;
            let mut r = Ok(());
            e.edit_raw(|v| r = finish(v));
            r?
        }
    }
    // Redis reports a merge as "pfadd", changed registers or not.
    sh.notify(crate::notify::STRING, "pfadd", db, key);
    Ok(())
}

pub fn pfcount(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if a.len() > 2 {
        let keys: Vec<&[u8]> = a.iter().skip(1).collect();
        return match gather(sh, ctx.db, ctx.now_ms, &keys) {
            Ok(g) => out.int(hll::count_raw(&g.max) as i64),
            Err((_, msg)) => out.error(msg),
        };
    }
    let Some(mut e) = sh.lookup_read(ctx.db, &a[1], ctx.now_ms) else {
        return out.int(0);
    };
    if let Err(msg) = check(e.value()) {
        return out.error(msg);
    }
    // Even a cached answer unshares the string (Redis's `dbUnshareStringValue`).
    let mut r = Ok((0, false));
    e.edit_raw(|v| {
        r = match hll::cached(v) {
            Some(card) => Ok((card, false)),
            None => hll::count(v).map(|card| {
                hll::set_cached(v, card);
                (card, true)
            }),
        }
    });
    match r {
        Ok((card, wrote)) => {
            // The cache write is a change Redis propagates (and signals to WATCH and
            // tracking), though PFCOUNT is read-only.
            if wrote {
                sh.stats.dirty += 1;
                sh.signal_modified(ctx.db, &a[1]);
            }
            out.int(card as i64)
        }
        Err(_) => out.error(INVALIDOBJ),
    }
}

pub fn pfmerge(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let keys: Vec<&[u8]> = a.iter().skip(1).collect();
    let r = gather(sh, ctx.db, ctx.now_ms, &keys)
        .map_err(|(_, msg)| msg)
        .and_then(|g| store_merged(sh, ctx.db, ctx.now_ms, &a[1], &g));
    match r {
        Ok(()) => out.ok(),
        Err(msg) => out.error(msg),
    }
}

/// What a PFDEBUG subcommand answers, computed inside the value's edit.
enum Debug {
    Registers(Vec<u8>),
    Text(String),
    Status(&'static str),
    Int(i64),
    Error(String),
}

pub fn pfdebug(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (sub, key) = (&a[1], &a[2]);
    let Some(mut e) = sh.lookup(ctx.db, key, ctx.now_ms) else {
        return out.error("ERR The specified key does not exist");
    };
    if let Err(msg) = check(e.value()) {
        return out.error(msg);
    }
    let mut reply = Debug::Int(0);
    e.edit_raw(|v| {
        reply = if eq_ic(sub, b"getreg") {
            match hll::to_dense(v) {
                Ok(_) => {
                    let regs = &v[hll::HDR..];
                    Debug::Registers((0..REGISTERS).map(|i| hll::dense_get(regs, i)).collect())
                }
                Err(_) => Debug::Error(INVALIDOBJ.into()),
            }
        } else if eq_ic(sub, b"decode") {
            if v[4] != hll::SPARSE {
                Debug::Error("ERR HLL encoding is not sparse".into())
            } else {
                Debug::Text(hll::decode_text(&v[hll::HDR..]))
            }
        } else if eq_ic(sub, b"encoding") {
            Debug::Status(if v[4] == hll::DENSE {
                "dense"
            } else {
                "sparse"
            })
        } else if eq_ic(sub, b"todense") {
            match hll::to_dense(v) {
                Ok(converted) => Debug::Int(converted as i64),
                Err(_) => Debug::Error(INVALIDOBJ.into()),
            }
        } else {
            Debug::Error(format!(
                "ERR Unknown PFDEBUG subcommand '{}'",
                String::from_utf8_lossy(sub)
            ))
        };
    });
    match reply {
        Debug::Registers(regs) => {
            out.array(regs.len());
            for r in regs {
                out.int(r as i64);
            }
        }
        Debug::Text(t) => out.bulk(t.as_bytes()),
        Debug::Status(s) => out.simple(s.as_bytes()),
        Debug::Int(i) => out.int(i),
        Debug::Error(msg) => out.error(&msg),
    }
}

/// PFSELFTEST: Redis's register and estimator self-test, on the shard's random source.
/// About 10^7 hashes (a fraction of a second); it blocks the core meanwhile, as it blocks
/// Redis.
pub fn pfselftest(sh: &mut Shard, out: &mut ReplyWriter) {
    let max_bytes = sh.config.hll_sparse_max_bytes;
    match hll::selftest(|| sh.next_rand(), max_bytes) {
        Ok(()) => out.ok(),
        Err(msg) => out.error(&msg),
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{run, s, shard};

    #[test]
    fn pfadd_pfcount_and_errors() {
        let mut sh = shard();
        assert_eq!(run(&mut sh, 0, &["PFADD", "h"]), b":1\r\n");
        assert_eq!(run(&mut sh, 0, &["PFADD", "h"]), b":0\r\n");
        assert_eq!(run(&mut sh, 0, &["PFADD", "h", "a", "b", "c"]), b":1\r\n");
        assert_eq!(run(&mut sh, 0, &["PFADD", "h", "a"]), b":0\r\n");
        assert_eq!(run(&mut sh, 0, &["PFCOUNT", "h"]), b":3\r\n");
        assert_eq!(
            run(&mut sh, 0, &["OBJECT", "ENCODING", "h"]),
            b"$3\r\nraw\r\n"
        );
        assert_eq!(run(&mut sh, 0, &["PFCOUNT", "nokey"]), b":0\r\n");
        run(&mut sh, 0, &["SET", "s", "hello"]);
        run(&mut sh, 0, &["SET", "i", "12"]);
        run(&mut sh, 0, &["LPUSH", "l", "x"]);
        for k in ["s", "i"] {
            assert_eq!(
                s(&run(&mut sh, 0, &["PFADD", k, "a"])),
                "-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"
            );
        }
        assert!(s(&run(&mut sh, 0, &["PFCOUNT", "l"])).starts_with("-WRONGTYPE Operation"));
        assert_eq!(run(&mut sh, 0, &["PFMERGE", "d", "h", "nokey"]), b"+OK\r\n");
        assert_eq!(run(&mut sh, 0, &["PFCOUNT", "d", "h"]), b":3\r\n");
        assert_eq!(
            s(&run(&mut sh, 0, &["PFDEBUG", "nope", "h"])),
            "-ERR Unknown PFDEBUG subcommand 'nope'\r\n"
        );
        assert_eq!(
            run(&mut sh, 0, &["PFDEBUG", "encoding", "h"]),
            b"+sparse\r\n"
        );
        assert_eq!(run(&mut sh, 0, &["PFDEBUG", "todense", "h"]), b":1\r\n");
        assert_eq!(run(&mut sh, 0, &["PFDEBUG", "todense", "h"]), b":0\r\n");
        assert_eq!(
            run(&mut sh, 0, &["PFDEBUG", "encoding", "h"]),
            b"+dense\r\n"
        );
        assert_eq!(run(&mut sh, 0, &["PFCOUNT", "h"]), b":3\r\n");
    }

    #[test]
    fn corrupt_sparse_values_answer_invalidobj() {
        let mut sh = shard();
        // A sparse HLL whose opcodes cover 16129 registers (its XZERO cut in half).
        let mut bad = crate::types::hll::new_sparse();
        bad.pop();
        bad[15] |= 0x80;
        sh.store_bytes(0, b"bad", &bad, 0, 0);
        let invalid = "-INVALIDOBJ Corrupted HLL object detected\r\n";
        assert_eq!(s(&run(&mut sh, 0, &["PFCOUNT", "bad"])), invalid);
        assert_eq!(s(&run(&mut sh, 0, &["PFCOUNT", "bad", "x"])), invalid);
        assert_eq!(s(&run(&mut sh, 0, &["PFMERGE", "x", "bad"])), invalid);
        assert_eq!(s(&run(&mut sh, 0, &["PFDEBUG", "getreg", "bad"])), invalid);
        assert_eq!(run(&mut sh, 0, &["EXISTS", "x"]), b":0\r\n");
        // One more register than there are (Z:16384 v:1,1).
        let mut over = crate::types::hll::new_sparse();
        over.push(0x80);
        over[15] |= 0x80;
        sh.store_bytes(0, b"over", &over, 0, 0);
        assert_eq!(s(&run(&mut sh, 0, &["PFCOUNT", "over"])), invalid);
        assert_eq!(s(&run(&mut sh, 0, &["PFCOUNT", "over", "x"])), invalid);
        assert_eq!(
            s(&run(&mut sh, 0, &["PFDEBUG", "todense", "over"])),
            invalid
        );
    }
}
