//! The primary's side of one replica link: REPLCONF, PSYNC (and SYNC), the full sync's RDB
//! payload, then the live stream with the replica's acknowledgements.
//!
//! The full sync walks every shard's forkless snapshot (begun at the stream point chosen in
//! [`super`]) one shard after another, a step of 4096 buckets per message to the shard's
//! core. Each step's blocks are decoded into a scratch shard on this core and encoded as
//! Redis 7.0's RDB records, then written to the socket: at most one step's keys are held
//! here (a large collection's parts follow each other, so every key but the last of a block
//! is whole and goes out at once). A replica that said `capa eof` (every Redis since 2.8.18)
//! gets the payload as it is made (`$EOF:<40 chars>` … the same 40 chars); another one gets
//! `$<length>` first, so the payload is written to a file in `dir` and sent from there.
//!
//! While the payload is sent, writes go on: the stream after the replica's point is kept for
//! it by the backlog (bounded by the replica class's output buffer limit).

use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use percore_proto::{Args, ReplyWriter};
use percore_shard::rdb::{self, put_len};
use percore_shard::snapshot::Reader;
use percore_shard::{Shard, DB_COUNT};

use super::Read;
use crate::client::Client;
use crate::core::{call, call_all, now_ms, Core};
use crate::rdb_io::rdb_opcode;
use crate::runtime::{self, Stream};

/// What a replica told us with REPLCONF before PSYNC.
#[derive(Clone, Debug, Default)]
pub struct Link {
    pub port: u16,
    pub ip: Option<String>,
    /// It reads a payload ended by a mark (`capa eof`).
    pub eof: bool,
    /// It understands `+CONTINUE <replid>` (`capa psync2`).
    pub psync2: bool,
}

/// REPLCONF <option> <value> …, as Redis 7.0 answers it on the primary.
pub fn replconf(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    if a.len().is_multiple_of(2) {
        return w.error(percore_shard::err::SYNTAX);
    }
    let mut link = conn.repl_link.take().map(|b| *b).unwrap_or_default();
    for i in (1..a.len()).step_by(2) {
        let (opt, v) = (&a[i], &a[i + 1]);
        if opt.eq_ignore_ascii_case(b"listening-port") {
            match percore_proto::parse_i64(v).filter(|p| (0..=65535).contains(p)) {
                Some(p) => link.port = p as u16,
                None => return w.error("ERR value is not an integer or out of range"),
            }
        } else if opt.eq_ignore_ascii_case(b"ip-address") {
            link.ip = Some(String::from_utf8_lossy(v).into_owned());
        } else if opt.eq_ignore_ascii_case(b"capa") {
            link.eof |= v.eq_ignore_ascii_case(b"eof");
            link.psync2 |= v.eq_ignore_ascii_case(b"psync2");
        } else if opt.eq_ignore_ascii_case(b"ack") || opt.eq_ignore_ascii_case(b"getack") {
            // From a client that is not a replica of ours: ignored, with no reply.
            conn.repl_link = Some(Box::new(link));
            return;
        } else {
            conn.repl_link = Some(Box::new(link));
            return w.error(&format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(opt)
            ));
        }
    }
    conn.repl_link = Some(Box::new(link));
    w.ok();
}

/// PSYNC <replid> <offset> or SYNC: the connection becomes a replica link and is served
/// until it closes. The connection hands its socket over ([`crate::client::Peer::hand_over`])
/// once the replies before this command are written.
pub async fn serve(conn: &mut Client, a: Args<'_>, stream: &mut Stream) {
    let psync = a.len() == 3;
    let link = conn.repl_link.take().map(|b| *b).unwrap_or_default();
    let core = conn.core.clone();
    super::activate(&core).await;
    let id = conn.handle.id;
    let ip = link
        .ip
        .clone()
        .unwrap_or_else(|| conn.handle.addr.ip().to_string());
    conn.handle.info.borrow_mut().replica = true;
    let replid = super::replid(&core.global);
    let wanted = psync
        .then(|| (a[1].to_vec(), percore_proto::parse_i64(&a[2])))
        .and_then(|(id, off)| off.filter(|&o| o >= 0).map(|o| (id, o as u64)));
    let asked_partial = wanted
        .as_ref()
        .is_some_and(|(rid, _)| rid.as_slice() != b"?");
    let partial = match wanted {
        Some((rid, from)) if super::can_continue(&core, &rid, from) => {
            let (ip, port) = (ip.clone(), link.port);
            call(&core, 0, move |_c: &Core| {
                super::register_partial(id, ip, port, from)
            })
            .await
        }
        _ => false,
    };
    // INFO's sync_full (every full sync), sync_partial_ok and sync_partial_err (a partial
    // request refused), as Redis counts them.
    let repl = &core.global.repl;
    match partial {
        true => repl.sync_partial_ok.fetch_add(1, Ordering::Relaxed),
        false => repl.sync_full.fetch_add(1, Ordering::Relaxed),
    };
    if !partial && asked_partial {
        repl.sync_partial_err.fetch_add(1, Ordering::Relaxed);
    }
    let r = if partial {
        crate::log::notice(&format!(
            "Partial resynchronization request from {ip}:{} accepted.",
            link.port
        ));
        let reply = match link.psync2 {
            true => format!("+CONTINUE {replid}\r\n"),
            false => "+CONTINUE\r\n".to_string(),
        };
        stream.write_all(reply.as_bytes()).await
    } else {
        full_sync(&core, stream, id, ip.clone(), &link, &replid, psync).await
    };
    if r.is_ok() {
        // After a payload ended by a mark, nothing more may follow it in the replica's
        // read: the stream starts once it acknowledges (as Redis's
        // `repl_start_cmd_stream_on_ack`).
        let wait_ack = !partial && link.eof;
        live(&core, conn, stream, id, wait_ack).await;
    }
    call(&core, 0, move |_c: &Core| super::unregister(id)).await;
    crate::log::notice(&format!("Connection with replica {ip}:{} lost.", link.port));
    conn.close = true;
}

/// Sends the snapshot: `+FULLRESYNC <replid> <offset>` (PSYNC) and the RDB payload.
async fn full_sync(
    core: &Rc<Core>,
    stream: &mut Stream,
    id: u64,
    ip: String,
    link: &Link,
    replid: &str,
    psync: bool,
) -> std::io::Result<()> {
    crate::log::notice(&format!(
        "Replica {ip}:{} asks for synchronization; starting a full resync",
        link.port
    ));
    // One snapshot at a time per shard (as SAVE/BGSAVE), and none of a data set this
    // server is still loading from its own primary (its replicas wait for the whole of it).
    let g = &core.global;
    while core.global.repl.loading() || g.saving.swap(true, Ordering::SeqCst) {
        runtime::sleep(Duration::from_millis(10)).await;
    }
    let n = core.nshards();
    let tx = crate::txlock::new_tx();
    let mut whole = crate::txlock::Plan::default();
    (0..n).for_each(|s| whole.add_all(s));
    crate::txlock::lock(core, tx, whole).await;
    let port = link.port;
    call(core, 0, move |c: &Core| {
        super::register_full(c, id, ip, port)
    })
    .await;
    let now = now_ms();
    let headers = call_all(core, move |c: &Core| {
        c.shard
            .borrow_mut()
            .snapshot_begin(c.id as u32, n as u32, now)
    })
    .await;
    crate::txlock::unlock(core, tx, (0..n).collect()).await;
    let offset = loop {
        if let Some(o) = call(core, 0, move |_c: &Core| super::synced_at(id)).await {
            break o;
        }
        runtime::sleep(Duration::from_millis(1)).await;
    };
    let r = send_payload(core, stream, headers, link.eof, psync, replid, offset).await;
    g.saving.store(false, Ordering::SeqCst);
    if r.is_ok() {
        crate::log::notice(&format!(
            "Synchronization with replica on port {} succeeded",
            link.port
        ));
        if !link.eof {
            // A replica of a disk payload is online once it has it (Redis waits for the
            // first ACK only after a diskless one).
            call(core, 0, move |_c: &Core| super::set_online(id)).await;
        }
    }
    r
}

/// The payload, as it is made (`eof`) or through a file in `dir`. The walk of every shard
/// always runs to its end, so that each shard's snapshot state is left clean.
async fn send_payload(
    core: &Rc<Core>,
    stream: &mut Stream,
    headers: Vec<Vec<u8>>,
    eof: bool,
    psync: bool,
    replid: &str,
    offset: u64,
) -> std::io::Result<()> {
    let mut out: Result<(), std::io::Error> = Ok(());
    if psync {
        let reply = format!("+FULLRESYNC {replid} {offset}\r\n");
        out = stream.write_all(reply.as_bytes()).await;
    }
    let mark = crate::random_hex(40);
    let path = std::path::Path::new(&core.config.borrow().dir).join(format!(
        "temp-repl-{}-{}.rdb",
        std::process::id(),
        now_ms()
    ));
    let mut file = match (eof, &out) {
        (false, Ok(())) => match std::fs::File::create(&path) {
            Ok(f) => Some(f),
            Err(e) => {
                out = Err(e);
                None
            }
        },
        _ => None,
    };
    if eof && out.is_ok() {
        out = stream
            .write_all(format!("$EOF:{mark}\r\n").as_bytes())
            .await;
    }
    let mut crc = 0u64;
    let mut buf = Vec::new();
    let libraries = match crate::functions::any() {
        true => rdb::open(&crate::functions::dump_payload())
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        false => Vec::new(),
    };
    crate::rdb_io::put_head(&mut buf, &libraries, now_ms());
    let mut sink = Sink {
        stream,
        file: file.as_mut(),
        out: &mut out,
        crc: &mut crc,
        bytes: 0,
    };
    sink.put(&mut buf).await;
    let limits = core.config.borrow().list_limits;
    let shard_config = core.shard.borrow().config.clone();
    for (s, header) in headers.into_iter().enumerate() {
        let now = now_ms();
        let mut scratch = Shard::new(s as u64 + 1, shard_config.clone());
        loop {
            let (more, mut chunks) = call(core, s, |c: &Core| {
                let mut v = Vec::new();
                let more = c.shard.borrow_mut().snapshot_step(4096, &mut |b| v.push(b));
                (more, v)
            })
            .await;
            if !more {
                // The last chunk is the snapshot's end marker.
                chunks.pop();
            }
            for block in chunks {
                if sink.out.is_err() {
                    continue;
                }
                let mut bytes = header.clone();
                bytes.extend_from_slice(&block);
                let view = match Reader::new(&bytes).and_then(|mut r| r.next_block()) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(e) => {
                        *sink.out = Err(std::io::Error::other(format!("snapshot block: {e}")));
                        continue;
                    }
                };
                // The last record's key may go on in the next block: it stays.
                let last = view
                    .records()
                    .last()
                    .map(|r| (r.db as usize, r.key.to_vec()));
                scratch.load_block(&view, now, &mut |_| true);
                let kept = last.and_then(|(db, k)| scratch.remove(db, &k).map(|e| (db, k, e)));
                encode_all(&mut scratch, now, limits, &mut buf);
                scratch = Shard::new(s as u64 + 1, shard_config.clone());
                if let Some((db, k, e)) = kept {
                    scratch.store_loaded(db, &k, e);
                }
                sink.put(&mut buf).await;
            }
            if !more {
                break;
            }
            runtime::yield_if_needed().await;
        }
        encode_all(&mut scratch, now, limits, &mut buf);
        sink.put(&mut buf).await;
    }
    buf.push(rdb_opcode::EOF);
    let sum = rdb::crc64(*sink.crc, &buf);
    buf.extend_from_slice(&sum.to_le_bytes());
    // The checksum itself is not summed.
    let total = sink.bytes + buf.len() as u64;
    let tail = std::mem::take(&mut buf);
    sink.raw(&tail).await;
    if eof {
        sink.raw(mark.as_bytes()).await;
    }
    if let Some(mut f) = file {
        let sent = match out {
            Ok(()) => {
                let r = f.flush();
                drop(f);
                match r {
                    Ok(()) => send_file(stream, &path, total).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&path);
        return sent;
    }
    out
}

/// `$<len>` and the payload file.
async fn send_file(stream: &mut Stream, path: &std::path::Path, len: u64) -> std::io::Result<()> {
    use std::io::Read as _;
    stream.write_all(format!("${len}\r\n").as_bytes()).await?;
    let mut f = std::fs::File::open(path)?;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&chunk[..n]).await?;
    }
}

/// Every key of `sh` as RDB records, database by database (SELECTDB before each).
fn encode_all(
    sh: &mut Shard,
    now: u64,
    limits: percore_shard::types::list::ListLimits,
    buf: &mut Vec<u8>,
) {
    for db in 0..DB_COUNT {
        if sh.db_len(db) == 0 {
            continue;
        }
        buf.push(rdb_opcode::SELECTDB);
        put_len(buf, db as u64);
        crate::rdb_io::encode_keys(&mut sh.dbs[db].dict, now, limits, buf);
    }
}

/// Where the payload goes: the socket (diskless) or the file, with its running checksum.
struct Sink<'a> {
    stream: &'a mut Stream,
    file: Option<&'a mut std::fs::File>,
    out: &'a mut std::io::Result<()>,
    crc: &'a mut u64,
    bytes: u64,
}

impl Sink<'_> {
    /// Sends and sums `buf`, leaving it empty.
    async fn put(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        *self.crc = rdb::crc64(*self.crc, buf);
        self.bytes += buf.len() as u64;
        let b = std::mem::take(buf);
        self.raw(&b).await;
        *buf = b;
        buf.clear();
    }

    /// Sends `b` as it is.
    async fn raw(&mut self, b: &[u8]) {
        if self.out.is_err() {
            return;
        }
        *self.out = match self.file.as_mut() {
            Some(f) => f.write_all(b),
            None => self.stream.write_all(b).await,
        };
    }
}

/// The live stream: whatever core 0 has for this replica, as it comes, and the replica's
/// REPLCONF ACKs read between sends.
async fn live(core: &Rc<Core>, conn: &Client, stream: &mut Stream, id: u64, mut wait_ack: bool) {
    let mut input = Vec::new();
    let mut rb = vec![0u8; 4096];
    let Some(bell) = call(core, 0, move |_c: &Core| super::bell_for(id)).await else {
        return;
    };
    loop {
        if conn.handle.killed.get() || core.global.shutdown.load(Ordering::Relaxed) {
            return;
        }
        let read = match wait_ack {
            true => Read::Waiting,
            false => call(core, 0, move |_c: &Core| super::read_for(id)).await,
        };
        let sent = match read {
            Read::Gone => return,
            Read::Waiting => false,
            Read::Bytes(b) if b.is_empty() => false,
            Read::Bytes(b) => {
                if stream.write_all(&b).await.is_err() {
                    return;
                }
                true
            }
        };
        // Input: taken if it is there when busy sending, else waited for until the merger
        // rings (new bytes, or this replica dropped); the timeout only bounds a missed ring.
        let got = futures_lite::future::or(async { Some(stream.read(&mut rb).await) }, async {
            if !sent {
                futures_lite::future::or(bell.wait(), runtime::sleep(Duration::from_secs(1))).await;
            }
            None
        })
        .await;
        match got {
            Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(n)) => {
                input.extend_from_slice(&rb[..n]);
                for off in take_acks(&mut input) {
                    wait_ack = false;
                    call(core, 0, move |_c: &Core| super::ack(id, off)).await;
                }
                if input.len() > 1 << 20 {
                    // Not a replica's traffic.
                    return;
                }
            }
            None => {}
        }
    }
}

/// The offsets of the complete `REPLCONF ACK <offset> …` commands at the start of `input`,
/// which loses the complete commands read (other commands are ignored).
fn take_acks(input: &mut Vec<u8>) -> Vec<u64> {
    let mut acks = Vec::new();
    let mut at = 0;
    while let Some((args, used)) = parse_command(&input[at..]) {
        at += used;
        if args.len() >= 3
            && args[0].eq_ignore_ascii_case(b"replconf")
            && args[1].eq_ignore_ascii_case(b"ack")
        {
            if let Some(o) = percore_proto::parse_i64(args[2]).filter(|&o| o >= 0) {
                acks.push(o as u64);
            }
        }
    }
    input.drain(..at);
    acks
}

/// One complete RESP command (an array of bulks, or an inline line) at the start of `b`,
/// with the bytes it takes.
pub(crate) fn parse_command(b: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    let line_end = |from: usize| {
        b.get(from..)?
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let eol = line_end(0)?;
    if b.first() != Some(&b'*') {
        let words = b[..eol]
            .split(|&c| c == b' ')
            .filter(|w| !w.is_empty())
            .collect();
        return Some((words, eol + 2));
    }
    let n = percore_proto::parse_i64(&b[1..eol])?.clamp(0, 1024) as usize;
    let mut at = eol + 2;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        if b.get(at) != Some(&b'$') {
            return None;
        }
        let e = line_end(at)?;
        let len = percore_proto::parse_i64(&b[at + 1..e])?.max(0) as usize;
        let start = e + 2;
        if b.len() < start + len + 2 {
            return None;
        }
        args.push(&b[start..start + len]);
        at = start + len + 2;
    }
    Some((args, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_taken_from_complete_commands_only() {
        let mut input = b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$3\r\n123\r\nPING\r\n*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$3\r\n12".to_vec();
        assert_eq!(take_acks(&mut input), vec![123]);
        assert!(input.starts_with(b"*3\r\n$8\r\nREPLCONF"));
        input.extend_from_slice(b"5\r\n");
        assert_eq!(take_acks(&mut input), vec![125]);
        assert!(input.is_empty());
    }
}
