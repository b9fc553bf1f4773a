//! DEBUG: the subcommands that Redis's own tools and test suites use — HELP, SLEEP, OBJECT,
//! DIGEST, DIGEST-VALUE, SET-ACTIVE-EXPIRE, PROTOCOL, STRINGMATCH-TEST, CHANGE-REPL-ID and
//! RELOAD — with Redis 7.0's replies, byte for byte where percore holds the same thing.
//!
//! # The gate
//! As in Redis 7.0, DEBUG is a protected command: `enable-debug-command` (`no` by default,
//! `yes`, or `local` for clients on 127.0.0.1 or ::1) is read at start only, and a refused
//! DEBUG gets Redis's text ([`NOT_ALLOWED`]) after the unknown-command and arity checks and
//! before authentication, as Redis's `processCommand` orders them (the connection calls
//! [`allowed`] there; [`run`] assumes it was).
//!
//! # Where each part runs
//! - OBJECT and DIGEST-VALUE read their keys on the keys' shards (one message per shard
//!   involved); DIGEST gathers every shard's part (`percore_shard::debug`) and combines them,
//!   so the digest is Redis's whatever the shard count.
//! - SET-ACTIVE-EXPIRE flips one flag that every core's background tick reads.
//! - STRINGMATCH-TEST runs its 10 million matches on this core's background queue in slices,
//!   so the core's other clients are served meanwhile; its client waits for the verdict.
//! - RELOAD saves a snapshot set (waiting for a save under way), then every core empties its
//!   shard and loads its part back in one step. Writes that other clients make between the
//!   save and their core's load are not in the set and are lost, as a write racing Redis's
//!   DEBUG RELOAD cannot be (Redis runs nothing else meanwhile): it is a test tool.
//! - SLEEP blocks this connection's core (Redis blocks its one thread).
//!
//! Cost: DIGEST is O(keys + elements) on every core at once and does not yield (a walk in
//! pieces could see a key twice across a table resize); RELOAD is a SAVE and a load.

use crate::client::Client;
use crate::config::{Config, ProtectedAction};
use crate::core::{call, call_all, now_ms, now_us, Core};
use crate::router::shard_of;
use crate::runtime;
use percore_proto::{Args, ReplyWriter};
use percore_shard::debug::{hex, DatasetDigest, Digest};
use percore_shard::DB_COUNT;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Redis 7.0's reply to a refused DEBUG.
pub const NOT_ALLOWED: &str = "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.";

/// Whether a client at `peer` may run DEBUG under `cfg` (Redis's `allowProtectedAction`):
/// `local` admits exactly the loopback addresses Redis's `islocalClient` names, 127.0.0.1
/// and ::1 (an IPv4-mapped 127.0.0.1 on a dual-stack listener too).
pub fn allowed(cfg: &Config, peer: &SocketAddr) -> bool {
    allows(cfg.enable_debug_command, peer)
}

/// Whether `action` (an `enable-*` setting) admits a client at `peer`.
pub fn allows(action: ProtectedAction, peer: &SocketAddr) -> bool {
    match action {
        ProtectedAction::Yes => true,
        ProtectedAction::No => false,
        ProtectedAction::Local => {
            let ip = peer.ip().to_canonical();
            ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
        }
    }
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Runs DEBUG `a[1]` for `conn`, which passed the gate.
pub async fn run(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let sub = &a[1];
    let n = a.len();
    if n == 2 && eq(sub, "help") {
        help(w);
    } else if n == 3 && eq(sub, "sleep") {
        sleep(&a[2]);
        w.ok();
    } else if n == 3 && eq(sub, "object") {
        object(conn, &a[2], w).await;
    } else if n == 2 && eq(sub, "digest") {
        digest(conn, w).await;
    } else if eq(sub, "digest-value") {
        digest_value(conn, &a, w).await;
    } else if n == 3 && eq(sub, "set-active-expire") {
        let on = atoi_nonzero(&a[2]);
        conn.core.global.active_expire.store(on, Ordering::Relaxed);
        w.ok();
    } else if n == 3 && eq(sub, "protocol") {
        protocol(&a[2], w);
    } else if n == 2 && eq(sub, "stringmatch-test") {
        stringmatch_test().await;
        w.simple(b"Apparently Redis did not crash: test passed");
    } else if n == 2 && eq(sub, "change-repl-id") {
        change_repl_id(conn);
        w.ok();
    } else if eq(sub, "reload") {
        reload(conn, &a, w).await;
    } else if n == 3 && eq(sub, "listpack") {
        structure(conn, &a[2], false, w).await;
    } else if (n == 3 || n == 4) && eq(sub, "quicklist") {
        structure(conn, &a[2], true, w).await;
    } else if n == 3 && eq(sub, "quicklist-packed-threshold") {
        packed_threshold(conn, &a[2], w).await;
    } else {
        w.error(&syntax_error(sub));
    }
}

/// Redis's `addReplySubcommandSyntaxError`: the subcommand as C prints it with `%.128s`
/// (up to its first NUL, at most 128 bytes).
fn syntax_error(sub: &[u8]) -> String {
    let end = sub
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(sub.len())
        .min(128);
    format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
        String::from_utf8_lossy(&sub[..end])
    )
}

fn help(w: &mut ReplyWriter) {
    crate::commands::help(
        w,
        "DEBUG",
        &[
            "CHANGE-REPL-ID",
            "    Change the replication IDs of the instance.",
            "    Dangerous: should be used only for testing the replication subsystem.",
            "DIGEST",
            "    Output a hex signature representing the current DB content.",
            "DIGEST-VALUE <key> [<key> ...]",
            "    Output a hex signature of the values of all the specified keys.",
            "LISTPACK <key>",
            "    Show low level info about the listpack encoding of <key>.",
            "OBJECT <key>",
            "    Show low level info about `key` and associated value.",
            "QUICKLIST <key> [<0|1>]",
            "    Show low level info about the quicklist encoding of <key>.",
            "    The optional argument (0 by default) sets the level of detail",
            "QUICKLIST-PACKED-THRESHOLD <size>",
            "    Sets the threshold for elements to be inserted as plain vs packed nodes",
            "    Default value is 1GB, allows values up to 4GB. Setting to 0 restores to default.",
            "PROTOCOL <type>",
            "    Reply with a test value of the specified type. <type> can be: string,",
            "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
            "    true, false.",
            "RELOAD [option ...]",
            "    Save the snapshot set on disk and reload it back to memory. Valid <option> values:",
            "    * MERGE: conflicting keys will be loaded from the snapshot.",
            "    * NOFLUSH: the existing database will not be removed before load;",
            "      conflicting keys are replaced by the loaded ones.",
            "    * NOSAVE: the database will be loaded from the existing snapshot set.",
            "    Examples:",
            "    * DEBUG RELOAD: verify that the server is able to persist, flush and reload",
            "      the database.",
            "    * DEBUG RELOAD NOSAVE: replace the current database with the contents of the",
            "      existing snapshot set.",
            "    * DEBUG RELOAD NOSAVE NOFLUSH MERGE: add the contents of the existing",
            "      snapshot set to the database.",
            "SET-ACTIVE-EXPIRE <0|1>",
            "    Setting it to 0 disables expiring keys in background when they are not",
            "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
            "    default.",
            "SLEEP <seconds>",
            "    Stop the server (this core) for <seconds>. Decimals allowed.",
            "STRINGMATCH-TEST",
            "    Run a fuzz tester against the glob matcher (KEYS, SCAN MATCH, CONFIG GET).",
        ],
    );
}

/// The longest DEBUG SLEEP: an hour (a typo must not stop a core for days).
const SLEEP_MAX_S: f64 = 3600.0;

/// DEBUG SLEEP: like Redis, blocks the executing thread — here, this connection's core. The
/// argument is read as C's `strtod` reads it (its longest numeric prefix; none is 0).
fn sleep(arg: &[u8]) {
    let secs = strtod_prefix(arg);
    if secs > 0.0 {
        std::thread::sleep(std::time::Duration::from_secs_f64(secs.min(SLEEP_MAX_S)));
    }
}

/// The value of the longest prefix of `arg` (after leading whitespace) that is a decimal
/// number, 0 when there is none, as `strtod` (hexadecimal, `inf`, `nan` and overflow aside:
/// they read as 0, which only makes a sleep shorter). Looks at 64 bytes at most.
fn strtod_prefix(arg: &[u8]) -> f64 {
    let s: Vec<u8> = arg
        .iter()
        .copied()
        .skip_while(u8::is_ascii_whitespace)
        .take(64)
        .collect();
    (1..=s.len())
        .rev()
        .filter(|&n| s[n - 1].is_ascii_digit() || s[n - 1] == b'.')
        .find_map(|n| std::str::from_utf8(&s[..n]).ok()?.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

/// C's `atoi(s) != 0`: leading whitespace, a sign, then digits; anything else ends it.
fn atoi_nonzero(s: &[u8]) -> bool {
    let mut rest = s.iter().skip_while(|c| c.is_ascii_whitespace()).peekable();
    if matches!(rest.peek(), Some(b'+' | b'-')) {
        rest.next();
    }
    rest.take_while(|c| c.is_ascii_digit()).any(|&c| c != b'0')
}

/// DEBUG LISTPACK and DEBUG QUICKLIST: the layout of a listpack-encoded value (a small
/// hash) or of a list's nodes goes to the log, as Redis prints it on its standard output.
async fn structure(conn: &Client, key: &[u8], quicklist: bool, w: &mut ReplyWriter<'_>) {
    let target = shard_of(key, conn.core.nshards());
    let (db, k) = (conn.db, key.to_vec());
    let found = call(&conn.core, target, move |c: &Core| {
        let mut sh = c.shard.borrow_mut();
        let depth = sh.config.list_limits.compress_depth;
        let e = sh.lookup(db, &k, now_ms())?;
        Some(match (e.value(), quicklist) {
            // Redis's `quicklistRepr` fields that percore has: the depth of the moment, and
            // per node its entries, bytes, and stored bytes when LZ4-compressed (else 0).
            (percore_shard::ValueRef::List(l), true) => Ok(format!(
                "quicklist {{count: {}, len: {}, compress: {}, nodes (count, bytes, compressed): {:?}}}",
                l.len(),
                l.node_count(),
                depth,
                l.node_sizes()
                    .iter()
                    .zip(l.compressed_sizes())
                    .map(|(&(c, b), z)| (c, b, z.unwrap_or(0)))
                    .collect::<Vec<_>>()
            )),
            (v, false) if v.encoding() == "listpack" => Ok(format!(
                "listpack of {} ({} bytes allocated)",
                v.type_name(),
                e.get().alloc_bytes()
            )),
            _ if quicklist => Err("ERR Not a quicklist encoded object."),
            _ => Err("ERR Not a listpack encoded object."),
        })
    })
    .await;
    match found {
        None => w.error(percore_shard::err::NO_SUCH_KEY),
        Some(Err(e)) => w.error(e),
        Some(Ok(line)) => {
            crate::log::notice(&format!("DEBUG {}: {line}", String::from_utf8_lossy(key)));
            w.simple(if quicklist {
                b"Quicklist structure printed on stdout"
            } else {
                b"Listpack structure printed on stdout"
            });
        }
    }
}

/// DEBUG QUICKLIST-PACKED-THRESHOLD: elements of at least this size get list nodes of their
/// own (Redis's plain nodes); 0 restores the default of 1 GiB. Applies to every shard.
async fn packed_threshold(conn: &Client, arg: &[u8], w: &mut ReplyWriter<'_>) {
    const BAD: &str = "ERR argument must be a memory value bigger than 1 and smaller than 4gb";
    let sz = match crate::config::parse_memory(&String::from_utf8_lossy(arg)) {
        Ok(n) if n <= (1 << 32) - (1 << 20) => n as usize,
        _ => return w.error(BAD),
    };
    let sz = if sz == 0 {
        percore_shard::types::list::PACKED_THRESHOLD
    } else {
        sz
    };
    let (version, new) = {
        let mut g = conn
            .core
            .global
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut cfg: Config = (*g.1).clone();
        cfg.list_limits.packed_threshold = sz;
        g.0 += 1;
        g.1 = Arc::new(cfg);
        (g.0, g.1.clone())
    };
    call_all(&conn.core, move |c: &Core| {
        c.apply_config(version, new.clone())
    })
    .await;
    w.ok();
}

/// DEBUG OBJECT key: the line from the key's shard, or `ERR no such key`.
async fn object(conn: &Client, key: &[u8], w: &mut ReplyWriter<'_>) {
    let target = shard_of(key, conn.core.nshards());
    let (db, key) = (conn.db, key.to_vec());
    let line = call(&conn.core, target, move |c: &Core| {
        let sh = c.shard.borrow();
        percore_shard::debug::object_info(&sh, db, &key, now_ms())
    })
    .await;
    match line {
        Some(l) => w.simple(l.as_bytes()),
        None => w.error(percore_shard::err::NO_SUCH_KEY),
    }
}

/// DEBUG DIGEST: every shard's part, combined (see `percore_shard::debug`).
async fn digest(conn: &Client, w: &mut ReplyWriter<'_>) {
    let parts = call_all(&conn.core, |c: &Core| {
        DatasetDigest::of_shard(&c.shard.borrow())
    })
    .await;
    let mut all = DatasetDigest::default();
    for p in &parts {
        all.merge(p);
    }
    w.simple(hex(&all.finish()).as_bytes());
}

/// DEBUG DIGEST-VALUE key [key ...]: one status reply per key, 40 zeros for a missing one;
/// each shard digests the keys it owns, in one message.
async fn digest_value(conn: &Client, a: &Args<'_>, w: &mut ReplyWriter<'_>) {
    let n = conn.core.nshards();
    let keys: Arc<Vec<Vec<u8>>> = Arc::new(a.iter().skip(2).map(|k| k.to_vec()).collect());
    let db = conn.db;
    let parts = call_all(&conn.core, {
        let keys = keys.clone();
        move |c: &Core| {
            let sh = c.shard.borrow();
            keys.iter()
                .enumerate()
                .filter(|(_, k)| shard_of(k, n) == c.id)
                .map(|(i, k)| (i, percore_shard::debug::digest_value(&sh, db, k)))
                .collect::<Vec<(usize, Digest)>>()
        }
    })
    .await;
    let mut digests = vec![percore_shard::debug::ZERO; keys.len()];
    for (i, d) in parts.into_iter().flatten() {
        digests[i] = d;
    }
    w.array(digests.len());
    for d in &digests {
        w.simple(hex(d).as_bytes());
    }
}

/// DEBUG PROTOCOL type: one test value of each RESP type, with Redis's RESP2 downgrades.
fn protocol(name: &[u8], w: &mut ReplyWriter) {
    if eq(name, "string") {
        w.bulk(b"Hello World");
    } else if eq(name, "integer") {
        w.int(12345);
    } else if eq(name, "double") {
        w.double_text(b"3.141");
    } else if eq(name, "bignum") {
        w.big_number(b"1234567999999999999999999999999999999");
    } else if eq(name, "null") {
        w.null();
    } else if eq(name, "array") {
        w.array(3);
        (0..3).for_each(|j| w.int(j));
    } else if eq(name, "set") {
        w.set(3);
        (0..3).for_each(|j| w.int(j));
    } else if eq(name, "map") {
        w.map(3);
        for j in 0..3 {
            w.int(j);
            w.boolean(j == 1);
        }
    } else if eq(name, "attrib") {
        // Attributes exist only in RESP3; the reply they describe follows either way.
        if w.resp3() {
            w.attribute(1);
            w.bulk(b"key-popularity");
            w.array(2);
            w.bulk(b"key:123");
            w.int(90);
        }
        w.bulk(b"Some real reply following the attribute");
    } else if eq(name, "push") {
        if !w.resp3() {
            return w.error("ERR RESP2 is not supported by this command");
        }
        // A push is out of band: a normal reply follows, for clients that skip pushes.
        w.push(2);
        w.bulk(b"server-cpu-usage");
        w.int(42);
        w.bulk(b"Some real reply following the push reply");
    } else if eq(name, "verbatim") {
        w.verbatim(b"txt", b"This is a verbatim\nstring");
    } else if eq(name, "true") {
        w.boolean(true);
    } else if eq(name, "false") {
        w.boolean(false);
    } else {
        w.error("ERR Wrong protocol type name. Please use one of the following: string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false");
    }
}

/// Matches DEBUG STRINGMATCH-TEST runs, as Redis's `stringmatchlen_fuzz_test`.
const STRINGMATCH_CYCLES: usize = 10_000_000;
/// Matches per slice between yields (about 0.1 ms optimized, 2.5 ms in a debug build).
const STRINGMATCH_SLICE: usize = 1_000;

/// DEBUG STRINGMATCH-TEST: the fuzz on this core's background queue, a slice at a time.
async fn stringmatch_test() {
    let (tx, rx) = futures_channel::oneshot::channel::<()>();
    runtime::spawn_background(async move {
        let mut rng = now_us() | 1;
        let mut left = STRINGMATCH_CYCLES;
        while left > 0 {
            let n = left.min(STRINGMATCH_SLICE);
            percore_shard::debug::stringmatch_fuzz(n, &mut rng);
            left -= n;
            runtime::yield_if_needed().await;
        }
        let _ = tx.send(());
    });
    // The task runs to its end: the sender is dropped only after sending.
    let _ = rx.await;
}

/// DEBUG CHANGE-REPL-ID: a new replication id (INFO `master_replid`); the second one is
/// already cleared (percore has no replicas yet).
fn change_repl_id(conn: &Client) {
    crate::log::warn("Changing replication IDs after receiving DEBUG change-repl-id");
    let mut id = conn
        .core
        .global
        .repl_id
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut new = crate::random_hex(40);
    // Ids are drawn from the clock: wait for it to move rather than keep the old one.
    while new == *id {
        new = crate::random_hex(40);
    }
    *id = new;
}

/// DEBUG RELOAD [MERGE] [NOFLUSH] [NOSAVE]: save the snapshot set (unless NOSAVE), empty
/// every database (unless NOFLUSH), load the set back. A key both in memory and in the set
/// (NOFLUSH) takes the set's value, with or without MERGE (Redis stops the server without
/// MERGE).
async fn reload(conn: &Client, a: &Args<'_>, w: &mut ReplyWriter<'_>) {
    let (mut flush, mut save) = (true, true);
    for opt in a.iter().skip(2) {
        if eq(opt, "merge") {
            // Conflicting keys are always loaded from the set.
        } else if eq(opt, "noflush") {
            flush = false;
        } else if eq(opt, "nosave") {
            save = false;
        } else {
            return w
                .error("ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options.");
        }
    }
    let core = &conn.core;
    if conn.holds_locks() {
        // The save would wait for every shard whole, this transaction's locks included.
        return w.error("ERR DEBUG RELOAD is not allowed in a transaction over several shards");
    }
    if save {
        match crate::persist::save_after_running(core, "DEBUG RELOAD").await {
            Ok(_) => {}
            Err(e) if e.starts_with("ERR ") => return w.error(&e),
            Err(_) => return w.error("ERR Error saving the snapshot; see the log for the cause"),
        }
    }
    let cfg = core.config.borrow().clone();
    // As Redis, the databases are emptied even when there turns out to be nothing to load.
    let set = match crate::persist::read_manifest(&cfg) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!(
            "no snapshot set in {} (no {})",
            cfg.dir,
            crate::persist::manifest_path(&cfg).display()
        )),
        Err(e) => Err(e),
    };
    let shards = core.nshards();
    let loaded = call_all(core, move |c: &Core| {
        let mut sh = c.shard.borrow_mut();
        if flush {
            for db in 0..DB_COUNT {
                sh.flush_db(db);
            }
        }
        set.clone()?;
        crate::persist::load(&cfg, &mut sh, c.id, shards).map(|l| l.keys)
    })
    .await;
    match loaded.into_iter().collect::<Result<Vec<usize>, String>>() {
        Ok(keys) => {
            crate::log::warn(&format!(
                "DB reloaded by DEBUG RELOAD ({} keys)",
                keys.iter().sum::<usize>()
            ));
            w.ok();
        }
        Err(e) => {
            crate::log::warn(&format!(
                "DEBUG RELOAD could not load the snapshot set: {e}"
            ));
            w.error("ERR Error trying to load the RDB dump, check server logs.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_reads_the_numeric_prefix() {
        assert_eq!(strtod_prefix(b"0.5"), 0.5);
        assert_eq!(strtod_prefix(b" 0.01x"), 0.01);
        assert_eq!(strtod_prefix(b"1e-3s"), 1e-3);
        assert_eq!(strtod_prefix(b"2."), 2.0);
        assert_eq!(strtod_prefix(b"-1"), -1.0);
        assert_eq!(strtod_prefix(b"abc"), 0.0);
        assert_eq!(strtod_prefix(b""), 0.0);
        assert_eq!(strtod_prefix(b"1e999"), 0.0, "not a finite number");
    }

    #[test]
    fn atoi_follows_c() {
        for (s, on) in [
            (&b"1"[..], true),
            (b"0", false),
            (b"abc", false),
            (b" 2x", true),
            (b"-1", true),
            (b"+0", false),
            (b"00", false),
            (b"", false),
            (b"0x1", false),
        ] {
            assert_eq!(atoi_nonzero(s), on, "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn local_means_loopback() {
        let mut cfg = Config::default();
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(!allowed(&cfg, &at("127.0.0.1:5000")), "no by default");
        cfg.enable_debug_command = ProtectedAction::Yes;
        assert!(allowed(&cfg, &at("10.0.0.1:5000")));
        cfg.enable_debug_command = ProtectedAction::Local;
        assert!(allowed(&cfg, &at("127.0.0.1:5000")));
        assert!(allowed(&cfg, &at("[::1]:5000")));
        assert!(allowed(&cfg, &at("[::ffff:127.0.0.1]:5000")));
        assert!(
            !allowed(&cfg, &at("127.0.0.2:5000")),
            "as Redis's islocalClient"
        );
        assert!(!allowed(&cfg, &at("10.0.0.1:5000")));
    }

    #[test]
    fn syntax_error_cuts_the_subcommand_as_c_prints_it() {
        let long = vec![b'x'; 200];
        assert_eq!(
            syntax_error(&long),
            format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
                "x".repeat(128)
            )
        );
        assert_eq!(
            syntax_error(b"ab\0cd"),
            "ERR unknown subcommand or wrong number of arguments for 'ab'. Try DEBUG HELP."
        );
    }
}
