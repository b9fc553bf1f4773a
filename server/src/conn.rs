//! A client connection: read → decode every complete command → dispatch → one write.
//!
//! This module owns the socket and nothing else: accepting a connection (limits, protected
//! mode), the read loop and its decoder, output buffering and its limits, closing and its
//! log, and CLIENT LIST's buffer figures. What a command runs in is the [`Client`]
//! (`client.rs`); what runs it is the dispatcher (`dispatch.rs`).
//!
//! Layering, one way: connection (this module) → dispatcher → command handlers → client.
//! The socket goes no further down than here: the dispatcher and the handlers see it as a
//! [`Peer`] (implemented below), for the three things a command may need of it (write the
//! replies so far before a blocking command parks, notice the peer leaving while parked,
//! hand the socket over to the replication link for PSYNC/SYNC). No other module names
//! this one but the binary's root, which spawns [`serve`] per accepted socket.
//!
//! Bounds: the read buffer grows only to `client-query-buffer-limit` (then the client is
//! closed, as Redis does); replies of one read are written before the next read, so a client
//! that does not read its replies stalls only itself (TCP backpressure) and holds at most one
//! read's worth of replies.

use crate::client::{Client, Local, Peer};
use crate::core::Core;
use crate::runtime::Stream;
use percore_proto::{Args, Decoded, Limits, ReplyWriter, RequestDecoder};
use std::rc::Rc;
use std::time::Instant;

/// A partial command's buffer grows to at least this much (see [`grow_input`]).
const MIN_READ: usize = 16 * 1024;
/// A partial command's buffer holds at most this many times what has arrived, plus
/// [`MIN_READ`] (see [`grow_input`]).
const MAX_GROWTH: usize = 4;

/// Makes room in `rbuf`, a partial command of `rbuf.len()` bytes, toward the `need` bytes
/// the decoder says the command takes at least. The new capacity:
/// - is at most [`MAX_GROWTH`] times what has actually arrived (or [`MIN_READ`] more): a
///   client declaring a 512 MB bulk and sending nothing costs nothing, and one that sends
///   it costs a few times its bytes (the query buffer limit is checked after each read);
/// - within that bound, is `need` when `need` is the end of a large bulk, as Redis sizes
///   the buffer of an argument past 32 KiB by its `$` header: one move, not one per
///   doubling;
/// - is at least twice the old capacity, because `need` is often only the next byte (a
///   header not yet complete): growing to that alone, a client sending one byte a segment
///   after a large partial command would cost a copy of all of it per byte.
///
/// The buffer comes from the core ([`Stream::take_buffer`]: a kept one for large sizes,
/// rounded to a power of two), and the old one goes back. Growing by `Vec::reserve` moved
/// a 256 KiB SET's input four times into fresh pages: 15-18 page faults a request
/// (loadtest/results/2026-12-03/large-requests.md).
fn grow_input(stream: &Stream, rbuf: &mut Vec<u8>, need: usize) {
    let have = rbuf.len();
    let bound = have + (have * MAX_GROWTH).max(MIN_READ);
    let target = need.max(2 * rbuf.capacity()).min(bound);
    if target <= rbuf.capacity() {
        // Already as large as what has arrived allows (the ring grows its input by powers
        // of two).
        return;
    }
    let mut grown = stream.take_buffer(target);
    if grown.capacity() < target {
        // Past what the core keeps: a new buffer of exactly this size.
        stream.recycle(std::mem::replace(&mut grown, Vec::with_capacity(target)));
    }
    grown.extend_from_slice(rbuf);
    stream.recycle(std::mem::replace(rbuf, grown));
}

/// Replies up to this size are sent without waiting for the kernel to take them (see
/// `write_out`); larger ones are waited for, and counted in CLIENT LIST's `omem` meanwhile.
const DETACH_MAX: usize = 16 << 10;
/// A reply scratch buffer larger than this (after one big reply) is released after the read.
const SCRATCH_KEEP: usize = 4 << 10;
/// Commands sent to other shards per batch, at most: a deep pipeline of reads for large
/// values is answered in slices, so a connection never holds more than this many remote
/// replies at once (a barrier in the pipeline, one extra round trip per 64 commands).
const MAX_QUEUED: usize = 64;
/// Replies buffered past this size are written before more commands of the read run.
const OUT_FLUSH: usize = 1 << 20;

/// Serves one accepted connection until it closes.
pub async fn serve(core: Rc<Core>, mut stream: Stream) {
    let global = core.global.clone();
    let cfg = core.config.borrow().clone();
    let (Ok(addr), Ok(laddr)) = (stream.peer_addr(), stream.local_addr()) else {
        return;
    };
    core.stats.borrow_mut().connections_received += 1;
    let connected = global
        .connected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let guard = ConnectedGuard(&global.connected);
    if connected > cfg.maxclients {
        global
            .rejected_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = stream
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    }
    let acl_epoch = global.acl.epoch();
    let user = global.acl.default_user();
    // A dual-stack listener (`bind ::`) sees IPv4 clients as ::ffff:a.b.c.d.
    if cfg.protected_mode && user.nopass && !addr.ip().to_canonical().is_loopback() {
        global
            .rejected_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = stream.write_all(PROTECTED_MODE_ERROR.as_bytes()).await;
        return;
    }
    let _ = stream.set_nodelay();
    let mut conn = Client::new(&core, stream.raw_fd(), addr, laddr, user, acl_epoch);
    let id = conn.handle.id;
    conn.run(&mut stream).await;
    crate::multi::unwatch(&mut conn).await;
    crate::pubsub::unsubscribe_all(&mut conn);
    crate::tracking::disable(&mut conn).await;
    // Unregister before the stream (and its descriptor) is dropped: see ClientHandle::kill.
    core.clients.borrow_mut().remove(&id);
    drop(stream);
    drop(guard);
}

struct ConnectedGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for ConnectedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub const PROTECTED_MODE_ERROR: &str = "-DENIED percore is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. To accept others: set a password (--requirepass, or CONFIG SET requirepass from a loopback connection), or disable protected mode (--protected-mode no) if the network is trusted.\r\n";

impl Client {
    async fn run(&mut self, stream: &mut Stream) {
        let limits = |authed: bool, max_bulk: i64| Limits {
            max_bulk_len: max_bulk,
            authenticated: authed,
        };
        let mut decoder = RequestDecoder::new(limits(
            self.authed,
            self.core.config.borrow().proto_max_bulk_len,
        ));
        // The read buffer holds input only while a command is incomplete: otherwise it is
        // empty and holds no memory, and the next read takes the ring's received bytes
        // as they are (no copy). An idle connection holds no buffer at all.
        let mut rbuf: Vec<u8> = Vec::new();
        let mut need = 0usize;
        loop {
            if !rbuf.is_empty() && need > rbuf.capacity() {
                grow_input(stream, &mut rbuf, need);
                self.note_buffers(rbuf.len(), rbuf.capacity(), stream);
            }
            // Messages, MONITOR lines and invalidations are written as they come, between
            // reads.
            let outbox = self.handle.outbox.clone();
            outbox.proto.set(self.proto);
            let read = match crate::pubsub::read_or_push(stream.read_into(&mut rbuf), &outbox).await
            {
                Some(r) => r,
                None => {
                    outbox.take_into(&mut self.out);
                    if self.write_out(stream).await.is_err() || self.handle.killed.get() {
                        return;
                    }
                    continue;
                }
            };
            let n = match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if self.handle.killed.get() {
                return;
            }
            // One clock read per read: every command of this read sees the same time, as
            // Redis's commands see one time snapshot each.
            self.now_ms = crate::core::now_ms();
            self.handle.info.borrow_mut().last_interaction = Instant::now();
            if self.out.capacity() == 0 {
                self.out = stream.take_buffer(self.last_out);
            }
            {
                let mut st = self.core.stats.borrow_mut();
                st.net_input_bytes += n as u64;
                st.reads_processed += 1;
            }
            // Decode and execute every complete command in the buffer.
            let mut at = 0;
            need = 0;
            loop {
                let r = decoder.decode(&mut rbuf[at..]);
                match r {
                    Ok(Decoded::Command { consumed }) => {
                        let frame = &rbuf[at..at + consumed];
                        let args = Args::new(frame, decoder.args());
                        // The common case without the wrapper's extra future layer.
                        if self.plain() {
                            self.dispatch_command(args, stream).await;
                            self.after_plain();
                        } else {
                            Box::pin(self.dispatch_observed(args, stream)).await;
                        }
                        at += consumed;
                        if self.close {
                            break;
                        }
                        // Bound what one connection holds: a read of small requests for large
                        // values (700 GETs of a 512 KB value fit in one 16 KB read) is answered
                        // in slices instead of being buffered whole.
                        if self.p.queued >= MAX_QUEUED {
                            self.flush().await;
                        }
                        if !self.p.active && self.out.len() >= OUT_FLUSH {
                            self.note_buffers(rbuf.len() - at, rbuf.capacity(), stream);
                            if self.write_out(stream).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(Decoded::Empty { consumed }) => at += consumed,
                    Ok(Decoded::Incomplete { need: n }) => {
                        need = n;
                        break;
                    }
                    Err(e) => {
                        self.flush().await;
                        let mut w = ReplyWriter::new(&mut self.out, self.proto);
                        w.error(&e.message());
                        self.core.stats.borrow_mut().count_error(b"-ERR");
                        self.close = true;
                        break;
                    }
                }
                decoder.limits = limits(self.authed, self.core.config.borrow().proto_max_bulk_len);
            }
            // Keep only the partial command, if any; a drained buffer goes back to the core.
            if at == rbuf.len() {
                stream.recycle(std::mem::take(&mut rbuf));
            } else if at > 0 {
                rbuf.drain(..at);
            }
            if self.scratch_out.capacity() > SCRATCH_KEEP {
                self.scratch_out = Vec::new();
            }
            self.flush().await;
            self.note_buffers(rbuf.len(), rbuf.capacity(), stream);
            if self.write_out(stream).await.is_err() {
                return;
            }
            self.note_buffers(rbuf.len(), rbuf.capacity(), stream);
            if self.close || self.handle.killed.get() {
                return;
            }
            // The query buffer is what is left unparsed (a partial command), as Redis's: one
            // read may bring more than the limit of complete commands (the ring hands over
            // all it received, bounded by its paused-receive mark), which run first.
            if rbuf.len() > self.core.config.borrow().client_query_buffer_limit {
                return self.log_close("client-query-buffer-limit exceeded");
            }
            // A read that finds data waiting never suspends, so a client that keeps its
            // pipeline full would keep this core to itself and leave the others' completed
            // reads unreaped. Once the connections queue's latency bound (500 µs) is spent,
            // let the reactor and the other connections run; Redis gets the same fairness by
            // serving each readable client once per event-loop turn.
            crate::runtime::yield_if_needed().await;
        }
    }

    /// CLIENT LIST's view of the buffers: unparsed input (`unparsed` bytes of the read
    /// buffer of `rbuf_cap` bytes, and what the ring received since), replies waiting, and
    /// the memory the connection holds.
    fn note_buffers(&self, unparsed: usize, rbuf_cap: usize, stream: &Stream) {
        let (ring_pending, ring_mem) = stream.input_bytes();
        let mut info = self.handle.info.borrow_mut();
        info.qbuf = unparsed + ring_pending;
        info.qbuf_free = rbuf_cap - unparsed;
        info.rbs = rbuf_cap;
        info.argv_mem = 0;
        info.reply_bytes = self.out.len();
        info.tot_mem = std::mem::size_of::<Client>()
            + rbuf_cap
            + ring_mem
            + self.out.capacity()
            + self.scratch_out.capacity();
    }

    /// Writes the replies gathered so far with one write.
    async fn write_out(&mut self, stream: &mut Stream) -> std::io::Result<()> {
        if self.out.is_empty() {
            // A large buffer taken for replies that did not come (a client now blocked or
            // with replies off) goes back to the core rather than wait with it.
            if self.out.capacity() > DETACH_MAX {
                stream.recycle(std::mem::take(&mut self.out));
            }
            return Ok(());
        }
        self.core.replies.pass().await;
        {
            let mut st = self.core.stats.borrow_mut();
            st.net_output_bytes += self.out.len() as u64;
            st.writes_processed += 1;
        }
        self.last_out = self.out.len();
        if self.subs.is_none() && self.over_output_limit() {
            self.log_close("client-output-buffer-limit (normal) reached");
            return Err(std::io::ErrorKind::OutOfMemory.into());
        }
        let written = if self.out.len() <= DETACH_MAX && self.subs.is_none() {
            // Small replies are handed over and not waited for: the kernel takes them at
            // once but for a client that stopped reading, and then the next write waits.
            stream.send_detached(&mut self.out).await
        } else {
            // What is being sent counts against the outbox's limit too, and stays in
            // CLIENT LIST's `omem` until the kernel has taken it.
            self.handle.outbox.sending.set(self.out.len());
            self.handle.info.borrow_mut().reply_bytes = self.out.len();
            let written = stream.send_owned(&mut self.out).await;
            self.handle.outbox.sending.set(0);
            written
        };
        self.handle.info.borrow_mut().reply_bytes = 0;
        // Nothing is queued: the buffer goes back to the core until the next read.
        stream.recycle(std::mem::take(&mut self.out));
        written
    }

    /// Whether the replies waiting break `client-output-buffer-limit normal` (no limit by
    /// default, as Redis).
    fn over_output_limit(&self) -> bool {
        let limit = self.core.config.borrow().client_output_buffer_limit
            [crate::config::ObClass::Normal as usize];
        if limit == crate::config::ObLimit::NONE {
            return false;
        }
        if limit.exceeded(self.out.len(), &self.out_soft_since) {
            self.core.stats.borrow_mut().output_limit_disconnections += 1;
            return true;
        }
        false
    }

    fn log_close(&self, why: &str) {
        crate::log::warn(&format!(
            "closing client id={} addr={}: {why}",
            self.handle.id, self.handle.addr
        ));
    }
}

/// The socket, as commands see it: through [`Peer`] only.
impl Peer for Stream {
    fn write_pending<'a>(&'a mut self, client: &'a mut Client) -> Local<'a, std::io::Result<()>> {
        Box::pin(client.write_out(self))
    }

    fn closed(&mut self) -> Local<'_, ()> {
        Box::pin(Stream::closed(self))
    }

    fn hand_over<'a>(&'a mut self, client: &'a mut Client, args: Args<'a>) -> Local<'a, ()> {
        Box::pin(async move {
            // What came before PSYNC is answered first; then the socket is the link's.
            client.flush().await;
            if client.write_out(self).await.is_err() {
                client.close = true;
                return;
            }
            crate::repl::primary::serve(client, args, self).await
        })
    }
}
