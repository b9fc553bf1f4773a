//! The replication feed of one shard: every change this shard makes, in the form Redis 7.0
//! propagates it (`call()` → `propagateNow`), grouped in *units* that each take one number of
//! the server's global replication sequence.
//!
//! What is propagated (Redis's rewrites, checked against 7.0.15's sources):
//! - a write command that changed something (it recorded a keyspace event other than "new"
//!   or "keymiss", counted in [`Feed::changes`]) goes verbatim, or rewritten where Redis
//!   rewrites it: SET with EX/PX/EXAT/PXAT, SETEX and PSETEX become `SET k v PXAT ms`; SET's
//!   GET is dropped; EXPIRE/PEXPIRE/EXPIREAT become `PEXPIREAT k ms` (a deadline already past
//!   deleted the key: `DEL k`); GETEX becomes PEXPIREAT, PERSIST or DEL; GETSET becomes SET,
//!   GETDEL `DEL k`; INCRBYFLOAT `SET k v KEEPTTL`, HINCRBYFLOAT `HSET k f v`; SPOP one
//!   `SREM k m` per member (`DEL k` when it took the whole set); LMPOP/ZMPOP become
//!   LPOP/RPOP/ZPOPMIN/ZPOPMAX with the number popped; RESTORE with a relative TTL gets the
//!   deadline and ABSTTL;
//! - a key deleted because its deadline passed (lazily on access or by the active cycle) or
//!   evicted: `DEL k`, as Redis with `lazyfree-lazy-expire`/`-eviction` off (their default);
//! - FLUSHALL, FLUSHDB and SWAPDB run on every shard: the server keeps one of them.
//!
//! A unit is a command with what it caused (a lazily expired key's DEL comes before the
//! command that found it, as in Redis), or one deletion outside a command. The server wraps a
//! unit of more than one op in MULTI … EXEC, as Redis's `propagatePendingCommands`.
//!
//! Cost: while no replica exists (`on` false) a command pays one predictable branch at the
//! end of [`crate::Shard::apply`] and one add per keyspace event; nothing is built.
//!
//! `hold`: the server sets it while the shard runs a command of a transaction that spans
//! shards (MULTI/EXEC, a script, a command over several shards); the ops then stay in
//! [`Feed::ops`] and the server moves them to the transaction's coordinator, which gives the
//! whole transaction one sequence number while it holds its key locks.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use percore_proto::{Args, Cmd, CommandSpec};

/// One command of the stream: its database and its RESP encoding (an array of bulks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub db: u8,
    pub cmd: Vec<u8>,
}

/// Ops that go to the stream together, with their place in the global order.
#[derive(Debug)]
pub struct Unit {
    pub seq: u64,
    pub ops: Vec<Op>,
}

/// A shard's side of the replication stream.
#[derive(Default)]
pub struct Feed {
    /// A replication stream exists: changes are recorded.
    pub on: bool,
    /// Ops stay in `ops` for the server (see the module's header).
    pub hold: bool,
    /// The global sequence units are numbered from (shared by every shard).
    seq: Option<Arc<AtomicU64>>,
    /// Rung when `units` gets its first unit since the server last collected them.
    bell: Option<Arc<Doorbell>>,
    /// Ops of the unit being built.
    pub ops: Vec<Op>,
    /// Finished units, oldest first, until the server collects them.
    pub units: Vec<Unit>,
    /// Keyspace changes made so far (a command changed something when this moved).
    pub changes: u64,
}

impl Feed {
    /// Starts recording, numbering units from `seq` and ringing `bell` when units wait
    /// for the server.
    pub fn start(&mut self, seq: Arc<AtomicU64>, bell: Arc<Doorbell>) {
        self.seq = Some(seq);
        self.bell = Some(bell);
        self.on = true;
    }

    pub fn push(&mut self, db: usize, parts: &[&[u8]]) {
        self.ops.push(Op {
            db: db as u8,
            cmd: encode(parts),
        });
    }

    /// Ends the unit being built (unless held): it takes the next sequence number.
    pub fn close(&mut self) {
        if self.hold || self.ops.is_empty() {
            return;
        }
        let Some(seq) = &self.seq else {
            self.ops.clear();
            return;
        };
        // Relaxed is enough: the server reads the counter and then collects every shard's
        // units with a message to its core, which runs after this step has ended.
        let seq = seq.fetch_add(1, Ordering::Relaxed);
        self.units.push(Unit {
            seq,
            ops: std::mem::take(&mut self.ops),
        });
        // One ring per collection: the server takes all of `units` at once.
        if self.units.len() == 1 {
            if let Some(b) = &self.bell {
                b.ring();
            }
        }
    }

    /// A key deleted outside the command's own effect (expired, evicted): `DEL key`, in a
    /// unit of its own unless a command is running.
    pub fn deleted(&mut self, db: usize, key: &[u8], in_command: bool) {
        self.push(db, &[b"DEL", key]);
        if !in_command {
            self.close();
        }
    }
}

/// A wake-up for one waiting task that any thread may ring. Rings before the task has
/// seen the last one cost one atomic swap each and wake nothing: a burst of rings is one
/// wake-up, and a task that waits on it sleeps until there is something to do (no polling).
#[derive(Default, Debug)]
pub struct Doorbell {
    rung: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Doorbell {
    pub fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            if let Some(w) = self
                .waker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                w.wake_by_ref();
            }
        }
    }

    /// Completes once the bell has rung since the previous wait completed (at once if it
    /// already has). One task waits on a bell at a time.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.rung.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            {
                let mut w = self.waker.lock().unwrap_or_else(|p| p.into_inner());
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
            }
            // A ring between the first check and the waker's registration may have woken
            // the previous waker: look again.
            if self.rung.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// A command as RESP: an array of bulk strings.
pub fn encode(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + parts.iter().map(|p| p.len() + 16).sum::<usize>());
    put_header(&mut out, b'*', parts.len());
    for p in parts {
        put_header(&mut out, b'$', p.len());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn put_header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The bulk strings of a reply, in order, looking through array, set and push headers and
/// skipping everything else (integers, doubles, nulls). Enough for the replies of the
/// commands rewritten from their results (SPOP, INCRBYFLOAT, LMPOP, ZMPOP).
fn bulks(mut r: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some(&kind) = r.first() {
        let Some(eol) = r.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let head = &r[1..eol];
        r = &r[eol + 2..];
        if kind == b'$' || kind == b'=' {
            let Some(n) = percore_proto::parse_i64(head).filter(|&n| n >= 0) else {
                continue;
            };
            let n = n as usize;
            if r.len() < n + 2 {
                break;
            }
            out.push(&r[..n]);
            r = &r[n + 2..];
        }
    }
    out
}

/// The element count of the first aggregate nested in `r` at depth `depth` (0: the reply's
/// own header), for LMPOP/ZMPOP's `[key, [elements]]`.
fn second_array_len(r: &[u8]) -> Option<usize> {
    // *2 \r\n $len \r\n key \r\n *n \r\n
    let mut rest = r;
    let mut headers = 0;
    while let Some(&kind) = rest.first() {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let head = &rest[1..eol];
        rest = &rest[eol + 2..];
        match kind {
            b'*' | b'~' => {
                headers += 1;
                if headers == 2 {
                    return percore_proto::parse_i64(head).map(|n| n.max(0) as usize);
                }
            }
            b'$' => {
                let n = percore_proto::parse_i64(head)?.max(0) as usize;
                rest = rest.get(n + 2..)?;
            }
            _ => {}
        }
    }
    None
}

fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// What the shard knows of a key after the command, for the rewrites that need it.
pub struct After {
    /// The key exists; its deadline (0: none).
    pub exists: bool,
    pub expire_at_ms: u64,
}

/// Records the propagated form of `spec`/`a`, a command that changed something, in database
/// `db`. `reply` is its reply; `after(key)` reads a key's state now.
pub fn command(
    feed: &mut Feed,
    db: usize,
    spec: &CommandSpec,
    a: &Args,
    reply: &[u8],
    after: &mut dyn FnMut(&[u8]) -> After,
) {
    let all: Vec<&[u8]> = a.iter().collect();
    let ms_buf;
    match spec.cmd {
        Cmd::Set => {
            let mut expire = false;
            let mut get = None;
            let mut j = 3;
            while j < all.len() {
                let w = all[j];
                if [&b"ex"[..], b"px", b"exat", b"pxat"]
                    .iter()
                    .any(|o| eq_ic(w, o))
                {
                    expire = true;
                    j += 2;
                    continue;
                }
                if eq_ic(w, b"get") {
                    get = Some(j);
                }
                j += 1;
            }
            if expire {
                let at = after(all[1]).expire_at_ms;
                ms_buf = at.to_string();
                feed.push(db, &[b"SET", all[1], all[2], b"PXAT", ms_buf.as_bytes()]);
            } else if let Some(g) = get {
                let parts: Vec<&[u8]> = all
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != g)
                    .map(|(_, p)| *p)
                    .collect();
                feed.push(db, &parts);
            } else {
                feed.push(db, &all);
            }
        }
        Cmd::SetEx | Cmd::PSetEx => {
            let at = after(all[1]).expire_at_ms;
            ms_buf = at.to_string();
            feed.push(db, &[b"SET", all[1], all[3], b"PXAT", ms_buf.as_bytes()]);
        }
        Cmd::GetSet => feed.push(db, &[b"SET", all[1], all[2]]),
        Cmd::GetDel => feed.push(db, &[b"DEL", all[1]]),
        Cmd::GetEx | Cmd::Expire | Cmd::PExpire | Cmd::ExpireAt => {
            let k = after(all[1]);
            if !k.exists {
                feed.push(db, &[b"DEL", all[1]]);
            } else if k.expire_at_ms == 0 {
                feed.push(db, &[b"PERSIST", all[1]]);
            } else {
                ms_buf = k.expire_at_ms.to_string();
                let mut parts: Vec<&[u8]> = vec![b"PEXPIREAT", all[1], ms_buf.as_bytes()];
                if spec.cmd != Cmd::GetEx {
                    // EXPIRE's NX/XX/GT/LT stay.
                    parts.extend_from_slice(&all[3..]);
                }
                feed.push(db, &parts);
            }
        }
        Cmd::PExpireAt => {
            if after(all[1]).exists {
                feed.push(db, &all);
            } else {
                feed.push(db, &[b"DEL", all[1]]);
            }
        }
        Cmd::IncrByFloat => {
            if let Some(v) = bulks(reply).first() {
                feed.push(db, &[b"SET", all[1], v, b"KEEPTTL"]);
            }
        }
        Cmd::HIncrByFloat => {
            if let Some(v) = bulks(reply).first() {
                feed.push(db, &[b"HSET", all[1], all[2], v]);
            }
        }
        Cmd::SPop => {
            if all.len() > 2 && !after(all[1]).exists {
                feed.push(db, &[b"DEL", all[1]]);
            } else {
                for m in bulks(reply) {
                    feed.push(db, &[b"SREM", all[1], m]);
                }
            }
        }
        Cmd::LMPop | Cmd::ZMPop => {
            let b = bulks(reply);
            if let (Some(key), Some(n)) = (b.first(), second_array_len(reply)) {
                let min = all.iter().any(|w| eq_ic(w, b"left") || eq_ic(w, b"min"));
                let name: &[u8] = match (spec.cmd == Cmd::LMPop, min) {
                    (true, true) => b"LPOP",
                    (true, false) => b"RPOP",
                    (false, true) => b"ZPOPMIN",
                    (false, false) => b"ZPOPMAX",
                };
                ms_buf = n.to_string();
                feed.push(db, &[name, key, ms_buf.as_bytes()]);
            }
        }
        Cmd::Restore | Cmd::RestoreAsking => {
            let absttl = all[4..].iter().any(|w| eq_ic(w, b"absttl"));
            let relative = !absttl && all[2] != b"0";
            let at = after(all[1]).expire_at_ms;
            if relative && at != 0 {
                ms_buf = at.to_string();
                let mut parts = all.clone();
                parts[2] = ms_buf.as_bytes();
                parts.push(b"ABSTTL");
                feed.push(db, &parts);
            } else {
                feed.push(db, &all);
            }
        }
        _ => feed.push(db, &all),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, shard};
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    const T0: u64 = 1_700_000_000_000;

    fn fed() -> crate::Shard {
        let mut sh = shard();
        sh.feed.start(Arc::new(AtomicU64::new(0)), Arc::default());
        sh
    }

    /// Counts the wake-ups of a task.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Polls `bell.wait()` once with a counting waker: whether it completed.
    fn poll_wait(bell: &Doorbell, wakes: &Arc<Wakes>) -> bool {
        let waker = Waker::from(wakes.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut f = std::pin::pin!(bell.wait());
        f.as_mut().poll(&mut cx).is_ready()
    }

    /// A feed rings its bell when its first unit waits, not for the next ones; the bell
    /// wakes its waiter once for a burst of rings and completes one wait per burst.
    #[test]
    fn the_feed_rings_once_per_collection_and_rings_coalesce() {
        let bell = Arc::new(Doorbell::default());
        let wakes = Arc::new(Wakes(Default::default()));
        assert!(!poll_wait(&bell, &wakes), "nothing rang yet");
        let mut sh = shard();
        sh.feed.start(Arc::new(AtomicU64::new(0)), bell.clone());
        run(&mut sh, T0, &["SET", "a", "1"]);
        run(&mut sh, T0, &["SET", "b", "1"]);
        run(&mut sh, T0, &["SET", "c", "1"]);
        assert_eq!(sh.feed.units.len(), 3);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "one wake-up for three units"
        );
        assert!(poll_wait(&bell, &wakes), "the ring is seen");
        assert!(!poll_wait(&bell, &wakes), "and seen once");
        // The server collects; the next unit rings again.
        sh.feed.units.clear();
        run(&mut sh, T0, &["SET", "d", "1"]);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        assert!(poll_wait(&bell, &wakes));
        // A ring with no waiter registered is kept for the next wait.
        let quiet = Doorbell::default();
        quiet.ring();
        quiet.ring();
        assert!(poll_wait(&quiet, &wakes));
        assert!(!poll_wait(&quiet, &wakes));
    }

    /// The units recorded since the last call, each as its ops' text.
    fn units(sh: &mut crate::Shard) -> Vec<Vec<String>> {
        std::mem::take(&mut sh.feed.units)
            .into_iter()
            .map(|u| {
                u.ops
                    .into_iter()
                    .map(|o| String::from_utf8_lossy(&o.cmd).into_owned())
                    .collect()
            })
            .collect()
    }

    fn cmd(parts: &[&str]) -> String {
        let p: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
        String::from_utf8(encode(&p)).unwrap()
    }

    #[test]
    fn writes_that_change_nothing_propagate_nothing() {
        let mut sh = fed();
        run(&mut sh, T0, &["SADD", "s", "a"]);
        run(&mut sh, T0, &["SADD", "s", "a"]);
        run(&mut sh, T0, &["DEL", "missing"]);
        run(&mut sh, T0, &["GET", "s"]);
        run(&mut sh, T0, &["SET", "k", "v", "NX"]);
        run(&mut sh, T0, &["SET", "k", "w", "NX"]);
        assert_eq!(
            units(&mut sh),
            vec![
                vec![cmd(&["SADD", "s", "a"])],
                vec![cmd(&["SET", "k", "v", "NX"])]
            ]
        );
        let seqs: Vec<u64> = sh.feed.units.iter().map(|u| u.seq).collect();
        assert!(seqs.is_empty());
    }

    #[test]
    fn relative_deadlines_become_absolute() {
        let mut sh = fed();
        let at = (T0 + 10_000).to_string();
        run(&mut sh, T0, &["SET", "a", "1", "EX", "10", "GET"]);
        run(&mut sh, T0, &["SETEX", "b", "10", "2"]);
        run(&mut sh, T0, &["PSETEX", "c", "10000", "3"]);
        run(&mut sh, T0, &["EXPIRE", "c", "10", "XX"]);
        run(&mut sh, T0, &["GETEX", "b", "PX", "10000"]);
        run(&mut sh, T0, &["GETEX", "b", "PERSIST"]);
        run(&mut sh, T0, &["SET", "d", "4", "GET"]);
        run(&mut sh, T0, &["EXPIRE", "d", "-1"]);
        assert_eq!(
            units(&mut sh),
            vec![
                vec![cmd(&["SET", "a", "1", "PXAT", &at])],
                vec![cmd(&["SET", "b", "2", "PXAT", &at])],
                vec![cmd(&["SET", "c", "3", "PXAT", &at])],
                vec![cmd(&["PEXPIREAT", "c", &at, "XX"])],
                vec![cmd(&["PEXPIREAT", "b", &at])],
                vec![cmd(&["PERSIST", "b"])],
                vec![cmd(&["SET", "d", "4"])],
                vec![cmd(&["DEL", "d"])],
            ]
        );
    }

    #[test]
    fn results_replace_nondeterministic_commands() {
        let mut sh = fed();
        run(&mut sh, T0, &["SET", "f", "1.5"]);
        run(&mut sh, T0, &["INCRBYFLOAT", "f", "1"]);
        run(&mut sh, T0, &["HINCRBYFLOAT", "h", "x", "2.5"]);
        run(&mut sh, T0, &["SADD", "s", "only"]);
        run(&mut sh, T0, &["SPOP", "s"]);
        run(&mut sh, T0, &["SADD", "t", "a", "b"]);
        run(&mut sh, T0, &["SPOP", "t", "5"]);
        run(&mut sh, T0, &["RPUSH", "l", "a", "b", "c"]);
        run(&mut sh, T0, &["LMPOP", "1", "l", "LEFT", "COUNT", "2"]);
        let u = units(&mut sh);
        assert_eq!(u[1], vec![cmd(&["SET", "f", "2.5", "KEEPTTL"])]);
        assert_eq!(u[2], vec![cmd(&["HSET", "h", "x", "2.5"])]);
        assert_eq!(u[4], vec![cmd(&["SREM", "s", "only"])]);
        assert_eq!(u[6], vec![cmd(&["DEL", "t"])]);
        assert_eq!(u[8], vec![cmd(&["LPOP", "l", "2"])]);
    }

    #[test]
    fn expired_keys_are_deleted_in_the_stream_before_the_command_that_found_them() {
        let mut sh = fed();
        run(&mut sh, T0, &["SET", "k", "1", "PX", "10"]);
        run(&mut sh, T0, &["SET", "j", "1", "PX", "10"]);
        units(&mut sh);
        run(&mut sh, T0 + 20, &["APPEND", "k", "x"]);
        run(&mut sh, T0 + 20, &["GET", "j"]);
        assert_eq!(
            units(&mut sh),
            vec![
                vec![cmd(&["DEL", "k"]), cmd(&["APPEND", "k", "x"])],
                vec![cmd(&["DEL", "j"])],
            ]
        );
        run(&mut sh, T0, &["SET", "m", "1", "PX", "10"]);
        units(&mut sh);
        sh.expire_step(T0 + 20, 1024);
        assert_eq!(units(&mut sh), vec![vec![cmd(&["DEL", "m"])]]);
    }

    #[test]
    fn held_ops_wait_for_the_server_and_units_are_numbered_in_order() {
        let mut sh = fed();
        sh.feed.hold = true;
        run(&mut sh, T0, &["SET", "a", "1"]);
        run(&mut sh, T0, &["SET", "b", "1"]);
        assert!(sh.feed.units.is_empty());
        assert_eq!(sh.feed.ops.len(), 2);
        sh.feed.ops.clear();
        sh.feed.hold = false;
        run(&mut sh, T0, &["SET", "c", "1"]);
        run(&mut sh, T0, &["SET", "d", "1"]);
        let seqs: Vec<u64> = sh.feed.units.iter().map(|u| u.seq).collect();
        assert_eq!(seqs, vec![0, 1]);
    }

    #[test]
    fn replies_are_read_for_their_bulks() {
        assert_eq!(
            bulks(b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n"),
            vec![&b"a"[..], b"bc"]
        );
        assert_eq!(bulks(b"~1\r\n$1\r\nz\r\n"), vec![&b"z"[..]]);
        assert_eq!(second_array_len(b"*2\r\n$1\r\nl\r\n*3\r\n"), Some(3));
        assert!(bulks(b"$5\r\nab").is_empty());
    }
}
