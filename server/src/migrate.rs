//! MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
//! [AUTH2 username password] [KEYS key ...], with Redis 7.0's behaviour (`cluster.c`'s
//! `migrateCommand`, `migrateGetSocket`, `migrateCloseSocket`).
//!
//! The transfer runs on the connection's task and never stalls its core: the target is
//! reached through a non-blocking socket ([`crate::runtime::OutStream`]), each connect,
//! write and read bounded by the command's timeout in milliseconds (0 or less: Redis's
//! 1000). Atomic as clients see it: the keys are locked through the cross-shard scheduler
//! (`txlock.rs`) from before they are read until the source keys are deleted, so no other
//! command sees or changes them in between, wherever their shards are (KEYS form).
//!
//! One pipelined write as Redis sends it: AUTH/AUTH2 when given, SELECT when the cached
//! socket's database differs, then `RESTORE key ttl payload [REPLACE]` per key
//! (`RESTORE-ASKING` in cluster mode). The replies are read as Redis reads them, one line
//! each of at most 1023 bytes; a target's error comes back as `ERR Target instance replied
//! with error: …` and keeps the keys it refused; the keys restored are deleted through the
//! shards' normal DEL path ("del" events, WATCH, tracking) unless COPY. A socket error
//! retries once on a fresh connection when nothing was answered yet and it was not a
//! timeout, as Redis does.
//!
//! Socket cache, as Redis's: per core (a core's connections share it), by the `host:port`
//! text, at most [`CACHE_ITEMS`] (a random idle one is closed to make room), an idle socket
//! closed after [`CACHE_TTL`], and any error closes the socket. A socket in use by one
//! MIGRATE is not shared: another MIGRATE on the same core meanwhile connects its own,
//! closed after it. INFO's `migrate_cached_sockets` counts the cached sockets of every core.

use crate::client::Client;
use crate::core::{call, now_ms, Core};
use crate::router::shard_of;
use crate::runtime::OutStream;
use crate::txlock::{lock_key, Plan};
use percore_proto::{Args, OwnedArgs, ReplyWriter};
use percore_shard::{err, ExecCtx};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Redis's MIGRATE_SOCKET_CACHE_ITEMS: sockets cached per core at most.
const CACHE_ITEMS: usize = 64;
/// Redis's MIGRATE_SOCKET_CACHE_TTL: an idle cached socket is closed after this.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Redis's bound on one reply line (`char buf[1024]`, its last byte the terminator).
const LINE_MAX: usize = 1023;
/// Redis writes the command to the target in chunks of this size, each under the timeout.
const WRITE_CHUNK: usize = 64 * 1024;

const CONNECT_ERROR: &str = "IOERR error or timeout connecting to the client";
const KEYS_NEED_EMPTY_KEY: &str =
    "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string";

/// Cached sockets of every core (INFO `migrate_cached_sockets`).
static CACHED_TOTAL: AtomicUsize = AtomicUsize::new(0);

/// INFO `migrate_cached_sockets`.
pub fn cached_sockets() -> usize {
    CACHED_TOTAL.load(Ordering::Relaxed)
}

/// A socket to a target and what Redis keeps with it.
struct Link {
    stream: OutStream,
    /// Bytes read past the last reply line (Redis reads byte by byte and leaves them in
    /// the kernel; they are the next replies either way).
    rbuf: Vec<u8>,
}

struct Cached {
    /// None while a MIGRATE uses it.
    link: Option<Link>,
    /// The database last selected on it (-1: unknown, SELECT next time).
    last_dbid: i64,
    last_use: Instant,
}

thread_local! {
    /// This core's sockets by `host:port` text.
    static CACHE: RefCell<HashMap<Vec<u8>, Cached>> = RefCell::new(HashMap::new());
    /// Whether this core's sweeper of idle sockets runs.
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

/// A socket lent to one MIGRATE.
struct Lease {
    name: Vec<u8>,
    link: Link,
    last_dbid: i64,
    /// Lent from the cache (given back or dropped from it at the end); else this MIGRATE's
    /// own, closed after it.
    cached: bool,
}

/// MIGRATE's parsed arguments.
struct Request<'a> {
    copy: bool,
    replace: bool,
    username: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    /// Argument indices of the keys.
    keys: std::ops::Range<usize>,
    timeout: Duration,
    dbid: i64,
}

/// Reads MIGRATE's options, then its timeout and database, in Redis's order and with its
/// errors.
fn parse<'a>(a: &'a Args<'_>) -> Result<Request<'a>, &'static str> {
    let mut r = Request {
        copy: false,
        replace: false,
        username: None,
        password: None,
        keys: 3..4,
        timeout: Duration::ZERO,
        dbid: 0,
    };
    let mut j = 6;
    while j < a.len() {
        let more = a.len() - 1 - j;
        let w = &a[j];
        if w.eq_ignore_ascii_case(b"copy") {
            r.copy = true;
        } else if w.eq_ignore_ascii_case(b"replace") {
            r.replace = true;
        } else if w.eq_ignore_ascii_case(b"auth") {
            if more == 0 {
                return Err(err::SYNTAX);
            }
            j += 1;
            r.password = Some(&a[j]);
        } else if w.eq_ignore_ascii_case(b"auth2") {
            if more < 2 {
                return Err(err::SYNTAX);
            }
            r.username = Some(&a[j + 1]);
            r.password = Some(&a[j + 2]);
            j += 2;
        } else if w.eq_ignore_ascii_case(b"keys") {
            if !a[3].is_empty() {
                return Err(KEYS_NEED_EMPTY_KEY);
            }
            r.keys = j + 1..a.len();
            break;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    let timeout = percore_proto::parse_i64(&a[5]).ok_or(err::NOT_INT)?;
    r.dbid = percore_proto::parse_i64(&a[4]).ok_or(err::NOT_INT)?;
    r.timeout = Duration::from_millis(if timeout <= 0 { 1000 } else { timeout as u64 });
    Ok(r)
}

/// The arguments MIGRATE hides from the slow log and MONITOR (Redis's
/// `redactClientCommandArgument`), as a bit mask of indices below 64: AUTH's password,
/// AUTH2's user and password, as far as its options parse.
pub fn redacted_args(args: &[&[u8]]) -> u64 {
    let bit = |i: usize| if i < 64 { 1u64 << i } else { 0 };
    let mut mask = 0;
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let w = args[j];
        if w.eq_ignore_ascii_case(b"auth") && more >= 1 {
            mask |= bit(j + 1);
            j += 1;
        } else if w.eq_ignore_ascii_case(b"auth2") && more >= 2 {
            mask |= bit(j + 1) | bit(j + 2);
            j += 2;
        } else if !(w.eq_ignore_ascii_case(b"copy") || w.eq_ignore_ascii_case(b"replace")) {
            break;
        }
        j += 1;
    }
    mask
}

/// One key's value as the source shard serialized it.
struct Dumped {
    /// Index of the key's argument.
    arg: usize,
    payload: Vec<u8>,
    expire_at_ms: u64,
}

pub async fn run(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let r = match parse(&a) {
        Ok(r) => r,
        Err(e) => return w.error(e),
    };
    // The keys stay locked from their first read to their deletion (when this connection
    // runs no transaction of its own already: EXEC and scripts lock MIGRATE's keys).
    let own = conn.tx.is_none().then(|| {
        let n = conn.core.nshards();
        let mut plan = Plan::default();
        for i in r.keys.clone() {
            plan.add_key(shard_of(&a[i], n), lock_key(conn.db, &a[i]));
        }
        conn.begin_tx_with(plan)
    });
    if let Some(tx) = own {
        conn.lock_tx(tx).await;
    }
    transfer(conn, &a, &r, w).await;
    if own.is_some() {
        conn.end_tx().await;
    }
}

/// Reads the keys, sends them and deletes those the target took (unless COPY); the reply.
async fn transfer(conn: &mut Client, a: &Args<'_>, r: &Request<'_>, w: &mut ReplyWriter<'_>) {
    let db = conn.db;
    let dumped = dump_keys(conn, a, r.keys.clone(), db).await;
    if dumped.is_empty() {
        return w.simple(b"NOKEY");
    }
    let mut name = a[1].to_vec();
    name.push(b':');
    name.extend_from_slice(&a[2]);
    let mut may_retry = true;
    loop {
        let mut lease = match lease(&name, &a[1], &a[2], r.timeout).await {
            Ok(l) => l,
            // Redis's blocking connect waits for the socket to be writable and not for
            // its error: a refused connection "connects", then fails its first write
            // (retried once, as any write error).
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if may_retry {
                    may_retry = false;
                    continue;
                }
                return w.error("IOERR error or timeout writing to target instance");
            }
            Err(_) => return w.error(CONNECT_ERROR),
        };
        let select = lease.last_dbid != r.dbid;
        let (cmd, sent) = restore_commands(a, r, &dumped, select);
        let (restored, end) = exchange(&mut lease, r, &cmd, select, sent.len()).await;
        // The keys the target acknowledged (before any error) are gone from here.
        if !r.copy {
            delete_keys(conn, a, sent_args(&sent, &restored), db).await;
        }
        match end {
            End::SocketError {
                writing,
                timed_out,
                answered,
            } => {
                drop_lease(lease);
                // Retried once, on a fresh socket, when nothing was answered and it was
                // not a timeout (a cached socket the target closed meanwhile).
                if !answered && !timed_out && may_retry {
                    may_retry = false;
                    continue;
                }
                let what = if writing { "writing" } else { "reading" };
                return w.error(&format!("IOERR error or timeout {what} to target instance"));
            }
            End::Replied { error, broken } => {
                // On an error the selected database is no longer trusted.
                lease.last_dbid = match error {
                    None => r.dbid,
                    Some(_) => -1,
                };
                match broken {
                    true => drop_lease(lease),
                    false => give_back(lease),
                }
                match error {
                    None => w.ok(),
                    Some(line) => {
                        // Redis prints the line with `%s` (up to a NUL) and turns line
                        // breaks in an error into spaces.
                        let line = &line[1..];
                        let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
                        let text = String::from_utf8_lossy(line).replace(['\r', '\n'], " ");
                        w.error(&format!("ERR Target instance replied with error: {text}"));
                    }
                }
                return;
            }
        }
    }
}

/// The argument indices of the keys sent whose RESTORE succeeded.
fn sent_args(sent: &[usize], restored: &[bool]) -> Vec<usize> {
    sent.iter()
        .zip(restored)
        .filter(|(_, &ok)| ok)
        .map(|(&i, _)| i)
        .collect()
}

/// Each existing key's payload and deadline, read on its shard as Redis's `lookupKeyRead`
/// and DUMP read it (hits, misses, LRU/LFU), in the order the keys were named.
async fn dump_keys(
    conn: &Client,
    a: &Args<'_>,
    keys: std::ops::Range<usize>,
    db: usize,
) -> Vec<Dumped> {
    let n = conn.core.nshards();
    let mut per_shard: Vec<OwnedArgs> = (0..n).map(|_| OwnedArgs::default()).collect();
    let mut idx: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in keys {
        let s = shard_of(&a[i], n);
        per_shard[s].push(&a[i]);
        idx[s].push(i);
    }
    let mut found = Vec::new();
    for (s, group) in per_shard.into_iter().enumerate() {
        if group.spans.is_empty() {
            continue;
        }
        let values = call(&conn.core, s, move |c: &Core| {
            let now = now_ms();
            let mut sh = c.shard.borrow_mut();
            let limits = sh.config.list_limits;
            let args = group.args();
            args.iter()
                .map(|k| {
                    let e = sh.lookup_read(db, k, now)?;
                    let mut body = Vec::new();
                    percore_shard::rdb::value::encode(e.value(), limits, &mut body);
                    Some((percore_shard::rdb::seal(body), e.expire_at_ms()))
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (arg, v) in idx[s].iter().zip(values) {
            if let Some((payload, expire_at_ms)) = v {
                found.push(Dumped {
                    arg: *arg,
                    payload,
                    expire_at_ms,
                });
            }
        }
    }
    found.sort_by_key(|d| d.arg);
    found
}

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

fn array(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The pipelined commands for the target, and the argument indices of the keys sent (a
/// key whose deadline passed since it was read is left out, as Redis leaves it).
fn restore_commands(
    a: &Args<'_>,
    r: &Request<'_>,
    dumped: &[Dumped],
    select: bool,
) -> (Vec<u8>, Vec<usize>) {
    let mut cmd = Vec::new();
    if let Some(password) = r.password {
        array(&mut cmd, if r.username.is_some() { 3 } else { 2 });
        bulk(&mut cmd, b"AUTH");
        if let Some(user) = r.username {
            bulk(&mut cmd, user);
        }
        bulk(&mut cmd, password);
    }
    if select {
        array(&mut cmd, 2);
        bulk(&mut cmd, b"SELECT");
        bulk(&mut cmd, r.dbid.to_string().as_bytes());
    }
    let restore: &[u8] = match crate::cluster::enabled() {
        true => b"RESTORE-ASKING",
        false => b"RESTORE",
    };
    let now = now_ms() as i64;
    let mut sent = Vec::with_capacity(dumped.len());
    for d in dumped {
        let mut ttl = 0;
        if d.expire_at_ms != 0 {
            ttl = d.expire_at_ms as i64 - now;
            if ttl < 0 {
                continue;
            }
            ttl = ttl.max(1);
        }
        sent.push(d.arg);
        array(&mut cmd, if r.replace { 5 } else { 4 });
        bulk(&mut cmd, restore);
        bulk(&mut cmd, &a[d.arg]);
        bulk(&mut cmd, ttl.to_string().as_bytes());
        bulk(&mut cmd, &d.payload);
        if r.replace {
            bulk(&mut cmd, b"REPLACE");
        }
    }
    (cmd, sent)
}

/// How one exchange with the target ended (beside which keys it restored).
enum End {
    /// The socket failed (or timed out) at some point.
    SocketError {
        writing: bool,
        timed_out: bool,
        /// Some RESTORE reply was read before the error.
        answered: bool,
    },
    /// The replies were read (all of them, unless `broken`: the socket failed after the
    /// target's first error); the first error line, if any.
    Replied {
        error: Option<Vec<u8>>,
        broken: bool,
    },
}

/// Writes `cmd` and reads its replies as Redis's `migrateCommand` does: AUTH's and
/// SELECT's lines first (an error there fails every key), then one line per key. Per key
/// sent: whether its RESTORE succeeded.
async fn exchange(
    lease: &mut Lease,
    r: &Request<'_>,
    cmd: &[u8],
    select: bool,
    keys: usize,
) -> (Vec<bool>, End) {
    let socket_error = |writing: bool, e: io::Error, answered: bool, restored: Vec<bool>| {
        let end = End::SocketError {
            writing,
            timed_out: e.kind() == io::ErrorKind::TimedOut,
            answered,
        };
        (restored, end)
    };
    for chunk in cmd.chunks(WRITE_CHUNK) {
        if let Err(e) = lease.link.stream.write_all(chunk, r.timeout).await {
            return socket_error(true, e, false, Vec::new());
        }
    }
    let auth_line = match r.password {
        None => None,
        Some(_) => match read_line(&mut lease.link, r.timeout).await {
            Ok(l) => Some(l),
            Err(e) => return socket_error(false, e, false, Vec::new()),
        },
    };
    let select_line = match select {
        false => None,
        true => match read_line(&mut lease.link, r.timeout).await {
            Ok(l) => Some(l),
            Err(e) => return socket_error(false, e, false, Vec::new()),
        },
    };
    let failed = |l: &Option<Vec<u8>>| l.as_ref().is_some_and(|l| l.first() == Some(&b'-'));
    let mut error = None;
    let mut broken = false;
    let mut restored = Vec::with_capacity(keys);
    for j in 0..keys {
        let line = match read_line(&mut lease.link, r.timeout).await {
            Ok(l) => l,
            Err(e) if error.is_none() => return socket_error(false, e, j > 0, restored),
            // Redis reports the target's error it already has, not the socket's.
            Err(_) => {
                broken = true;
                break;
            }
        };
        let e = if failed(&auth_line) {
            auth_line.as_ref()
        } else if failed(&select_line) {
            select_line.as_ref()
        } else if line.first() == Some(&b'-') {
            Some(&line)
        } else {
            None
        };
        match e {
            Some(e) => {
                if error.is_none() {
                    error = Some(e.clone());
                }
                restored.push(false);
            }
            None => restored.push(true),
        }
    }
    restored.resize(keys, false);
    (restored, End::Replied { error, broken })
}

/// One reply line as Redis's `syncReadLine` reads it into its 1024-byte buffer: up to the
/// newline (without it and a `\r` before it), or the first 1023 bytes of a longer line
/// (the rest is the next line). An empty line is an error, as Redis's `<= 0` test makes it.
async fn read_line(link: &mut Link, timeout: Duration) -> io::Result<Vec<u8>> {
    loop {
        if let Some(l) = take_line(&mut link.rbuf) {
            if l.is_empty() {
                return Err(io::Error::other("empty reply line"));
            }
            return Ok(l);
        }
        let mut buf = [0u8; 4096];
        let got = link.stream.read(&mut buf, timeout).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        link.rbuf.extend_from_slice(&buf[..got]);
    }
}

/// The first line of `rbuf`, taken off it, as [`read_line`] reads it; None until a newline
/// or [`LINE_MAX`] bytes are there.
fn take_line(rbuf: &mut Vec<u8>) -> Option<Vec<u8>> {
    match rbuf.iter().take(LINE_MAX).position(|&b| b == b'\n') {
        Some(at) => {
            let mut l: Vec<u8> = rbuf.drain(..=at).collect();
            l.pop();
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            Some(l)
        }
        None if rbuf.len() >= LINE_MAX => Some(rbuf.drain(..LINE_MAX).collect()),
        None => None,
    }
}

/// Deletes the keys at `args` through each shard's DEL, as a client's DEL would (a "del"
/// event, WATCH flags, tracking invalidations).
async fn delete_keys(conn: &Client, a: &Args<'_>, args: Vec<usize>, db: usize) {
    if args.is_empty() {
        return;
    }
    let n = conn.core.nshards();
    let mut per_shard: Vec<OwnedArgs> = (0..n).map(|_| OwnedArgs::from_slices(&[b"DEL"])).collect();
    for i in args {
        per_shard[shard_of(&a[i], n)].push(&a[i]);
    }
    let caller = crate::tracking::caller(&conn.handle, conn.core.id);
    for (s, del) in per_shard.into_iter().enumerate() {
        if del.spans.len() < 2 {
            continue;
        }
        call(&conn.core, s, move |c: &Core| {
            // The table's row, whatever `rename-command` made of DEL's name.
            let spec = percore_proto::command::COMMANDS
                .iter()
                .find(|c| c.cmd == percore_proto::Cmd::Del)
                .expect("DEL is in the command table");
            let ctx = ExecCtx {
                db,
                now_ms: now_ms(),
            };
            let mut sh = c.shard.borrow_mut();
            let mut sink = Vec::new();
            let mut w = ReplyWriter::new(&mut sink, percore_proto::Protocol::Resp2);
            sh.caller.set(caller);
            sh.apply(&ctx, spec, del.args(), &mut w);
            sh.caller.set(None);
        })
        .await;
    }
}

/// A socket to `host:port` (`name`): the cached one when idle, else a new one, cached when
/// there is none for the target yet; the error when it cannot connect within `timeout`.
async fn lease(name: &[u8], host: &[u8], port: &[u8], timeout: Duration) -> io::Result<Lease> {
    let cached = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let e = c.get_mut(name)?;
        e.last_use = Instant::now();
        Some(e.link.take().map(|link| (link, e.last_dbid)))
    });
    let busy = match cached {
        Some(Some((link, last_dbid))) => {
            return Ok(Lease {
                name: name.to_vec(),
                link,
                last_dbid,
                cached: true,
            })
        }
        Some(None) => true,
        None => false,
    };
    let stream = connect(host, port, timeout).await?;
    let link = Link {
        stream,
        rbuf: Vec::new(),
    };
    let cached = !busy && insert_busy(name);
    Ok(Lease {
        name: name.to_vec(),
        link,
        last_dbid: -1,
        cached,
    })
}

/// Adds `name` to this core's cache as in use, closing a random idle socket when the cache
/// is full (or, when none is idle, not caching). True if added.
fn insert_busy(name: &[u8]) -> bool {
    let added = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.contains_key(name) {
            return false;
        }
        if c.len() >= CACHE_ITEMS {
            let idle: Vec<Vec<u8>> = c
                .iter()
                .filter(|(_, e)| e.link.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            if idle.is_empty() {
                return false;
            }
            let pick = (now_ms() as usize) % idle.len();
            c.remove(&idle[pick]);
            CACHED_TOTAL.fetch_sub(1, Ordering::Relaxed);
        }
        c.insert(
            name.to_vec(),
            Cached {
                link: None,
                last_dbid: -1,
                last_use: Instant::now(),
            },
        );
        CACHED_TOTAL.fetch_add(1, Ordering::Relaxed);
        true
    });
    if added && !SWEEPING.with(|s| s.replace(true)) {
        crate::runtime::spawn_background(sweep());
    }
    added
}

/// Puts a socket back after a MIGRATE that ended well (or with the target's error).
fn give_back(lease: Lease) {
    if !lease.cached {
        return;
    }
    CACHE.with(|c| {
        if let Some(e) = c.borrow_mut().get_mut(&lease.name) {
            e.link = Some(lease.link);
            e.last_dbid = lease.last_dbid;
            e.last_use = Instant::now();
        }
    });
}

/// Closes a socket after an error (Redis's `migrateCloseSocket`): the next MIGRATE to the
/// target connects afresh and selects its database again.
fn drop_lease(lease: Lease) {
    if lease.cached {
        let removed = CACHE.with(|c| c.borrow_mut().remove(&lease.name).is_some());
        if removed {
            CACHED_TOTAL.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Closes this core's idle sockets unused for [`CACHE_TTL`], every second, while any is
/// cached (Redis's `migrateCloseTimedoutSockets` in its cron).
async fn sweep() {
    loop {
        crate::runtime::sleep(Duration::from_secs(1)).await;
        let left = CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let before = c.len();
            c.retain(|_, e| e.link.is_none() || e.last_use.elapsed() <= CACHE_TTL);
            CACHED_TOTAL.fetch_sub(before - c.len(), Ordering::Relaxed);
            c.len()
        });
        if left == 0 {
            SWEEPING.with(|s| s.set(false));
            return;
        }
    }
}

/// Connects to `host` (an address, or a name resolved off the core) at `port` (read as
/// Redis's `atoi` reads it).
async fn connect(host: &[u8], port: &[u8], timeout: Duration) -> io::Result<OutStream> {
    let port = u16::try_from(atoi(port)).map_err(|_| io::Error::other("bad port"))?;
    let host = std::str::from_utf8(host).map_err(io::Error::other)?;
    connect_host(host, port, timeout).await
}

/// Connects to `host` (an address, or a name resolved off the core: the core never
/// blocks on the resolver) at `port`, trying each address of the name in turn, all within
/// `timeout`. MIGRATE's connection and a replica's link to its primary.
pub(crate) async fn connect_host(
    host: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<OutStream> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return OutStream::connect(SocketAddr::new(ip, port), timeout).await;
    }
    // Each address of the name in turn (`localhost` may be ::1 first), within the timeout.
    let deadline = Instant::now() + timeout;
    let mut last = io::Error::other("cannot resolve");
    for addr in resolve(host.to_string(), port, timeout).await? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match OutStream::connect(addr, left).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Resolves a host name on a thread of its own (the system resolver blocks), within
/// `timeout`: its addresses, at most 16.
async fn resolve(host: String, port: u16, timeout: Duration) -> io::Result<Vec<SocketAddr>> {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new()
        .name("migrate-resolve".into())
        .spawn(move || {
            use std::net::ToSocketAddrs;
            let addrs = (host.as_str(), port)
                .to_socket_addrs()
                .map(|it| it.take(16).collect::<Vec<_>>())
                .ok()
                .filter(|a| !a.is_empty());
            let _ = tx.send(addrs);
        })?;
    let answer = futures_lite::future::or(async { rx.await.ok().flatten() }, async {
        crate::runtime::sleep(timeout).await;
        None
    })
    .await;
    answer.ok_or_else(|| io::Error::other("cannot resolve"))
}

/// C's `atoi`: optional blanks and sign, then digits (0 when there are none).
fn atoi(s: &[u8]) -> i64 {
    let s = match s.iter().position(|c| !c.is_ascii_whitespace()) {
        Some(at) => &s[at..],
        None => return 0,
    };
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for &c in digits.iter().take_while(|c| c.is_ascii_digit()) {
        v = v.saturating_mul(10).saturating_add((c - b'0') as i64);
    }
    if neg {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> OwnedArgs {
        OwnedArgs::from_slices(words)
    }

    #[test]
    fn options_parse_in_redis_order() {
        let o = args(&["MIGRATE", "h", "1", "k", "0", "10", "COPY", "bogus"]);
        assert_eq!(parse(&o.args()).err(), Some(err::SYNTAX));
        let o = args(&["MIGRATE", "h", "1", "k", "0", "10", "AUTH"]);
        assert_eq!(parse(&o.args()).err(), Some(err::SYNTAX));
        let o = args(&["MIGRATE", "h", "1", "k", "0", "10", "AUTH2", "u"]);
        assert_eq!(parse(&o.args()).err(), Some(err::SYNTAX));
        let o = args(&["MIGRATE", "h", "1", "k", "0", "10", "KEYS", "a"]);
        assert_eq!(parse(&o.args()).err(), Some(KEYS_NEED_EMPTY_KEY));
        // Options first, then the timeout, then the database.
        let o = args(&["MIGRATE", "h", "1", "k", "x", "y", "nope"]);
        assert_eq!(parse(&o.args()).err(), Some(err::SYNTAX));
        let o = args(&["MIGRATE", "h", "1", "k", "x", "10"]);
        assert_eq!(parse(&o.args()).err(), Some(err::NOT_INT));
        let o = args(&[
            "MIGRATE", "h", "1", "", "3", "0", "REPLACE", "AUTH2", "u", "p", "KEYS", "a", "b",
        ]);
        let a = o.args();
        let r = parse(&a).unwrap();
        assert!(r.replace && !r.copy);
        assert_eq!(r.keys, 11..13);
        assert_eq!(r.timeout, Duration::from_millis(1000));
        assert_eq!(r.dbid, 3);
        assert_eq!(r.username, Some(&b"u"[..]));
    }

    #[test]
    fn secrets_are_redacted() {
        let w: Vec<&[u8]> = [
            "MIGRATE", "h", "1", "", "0", "5", "COPY", "AUTH", "pw", "AUTH2", "u", "p2", "KEYS",
            "a",
        ]
        .iter()
        .map(|s| s.as_bytes())
        .collect();
        assert_eq!(redacted_args(&w), (1 << 8) | (1 << 10) | (1 << 11));
    }

    #[test]
    fn lines_are_cut_as_redis_cuts_them() {
        let mut b = b"+OK\r\n-ERR x\n+PART".to_vec();
        assert_eq!(take_line(&mut b).as_deref(), Some(&b"+OK"[..]));
        assert_eq!(take_line(&mut b).as_deref(), Some(&b"-ERR x"[..]));
        assert_eq!(take_line(&mut b), None);
        // 1021 bytes, CR LF: one line. 1022 bytes, CR LF: 1023 bytes (the CR kept), then an
        // empty line (Redis's syncReadLine into its 1024-byte buffer).
        let mut b = [vec![b'-'; 1021], b"\r\n".to_vec()].concat();
        assert_eq!(take_line(&mut b).map(|l| l.len()), Some(1021));
        assert!(b.is_empty());
        let mut b = [vec![b'-'; 1022], b"\r\n".to_vec()].concat();
        let l = take_line(&mut b).unwrap();
        assert_eq!((l.len(), l.last()), (1023, Some(&b'\r')));
        assert_eq!(take_line(&mut b), Some(Vec::new()));
    }

    #[test]
    fn atoi_reads_as_c_does() {
        assert_eq!(atoi(b"6379"), 6379);
        assert_eq!(atoi(b" 12ab"), 12);
        assert_eq!(atoi(b"abc"), 0);
        assert_eq!(atoi(b"-5"), -5);
    }
}
