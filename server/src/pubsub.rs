//! Pub/Sub: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBEs, PUBLISH, SPUBLISH and
//! PUBSUB, with Redis 7.0's replies in RESP2 and RESP3.
//!
//! Subscriptions live on the subscriber's core ([`Registry`], one per core). A PUBLISH is
//! delivered on the publisher's core at once, and travels to every other core that has any
//! subscription as one command in the publishing connection's batch to that core: the
//! payload crosses once per core, never once per subscriber, and the receiver counts come
//! back with the batch's replies and are summed (`Route::Publish`). A connection's batches
//! to a core run in order, so one publisher's messages arrive in order. Cores without a
//! subscription are skipped: each core publishes its subscription count in
//! [`Global::pubsub_subs`](crate::core::Global::pubsub_subs).
//!
//! Delivery appends the encoded message to the subscriber's [`Outbox`] and wakes its
//! connection, which writes it between reads (`Client::run`). The outbox is bounded by
//! `client-output-buffer-limit pubsub <hard> <soft> <seconds>` as in Redis: over the hard
//! limit, or over the soft limit for longer than its seconds, the subscriber is
//! disconnected (counted in `client_output_buffer_limit_disconnections`), its buffer freed,
//! and the publisher and every other subscriber go on.

use crate::client::Client;
use crate::config::{ObClass, ObLimit};
use crate::core::{call_all, ClientHandle, Core};
use percore_proto::{Args, Cmd, CommandSpec, Protocol, ReplyWriter};
use percore_shard::glob::glob_match;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::Instant;

/// What waits for one connection outside its replies: Pub/Sub messages, MONITOR lines,
/// tracking invalidations. Every connection has one ([`ClientHandle::outbox`]).
pub struct Outbox {
    handle: std::rc::Weak<ClientHandle>,
    /// Subscribed to something: bounded by the pubsub class.
    subscribed: Cell<bool>,
    /// A MONITOR's outbox: bounded by the normal class's limit, or the pubsub class's
    /// when the normal class has none (Redis leaves a slow monitor unbounded by default;
    /// percore does not).
    monitor: Cell<bool>,
    pub proto: Cell<Protocol>,
    buf: RefCell<Vec<u8>>,
    waker: RefCell<Option<Waker>>,
    /// Bytes handed to the socket and not yet sent (the connection's write in flight):
    /// they count against the output limit too.
    pub sending: Cell<usize>,
    /// Since when the buffer has been over the soft limit.
    soft_since: Cell<Option<Instant>>,
    /// Disconnected for its output limit: nothing more is queued.
    cut: Cell<bool>,
}

impl Outbox {
    pub fn new(handle: std::rc::Weak<ClientHandle>) -> Outbox {
        Outbox {
            handle,
            subscribed: Cell::new(false),
            monitor: Cell::new(false),
            proto: Cell::new(Protocol::Resp2),
            buf: RefCell::new(Vec::new()),
            waker: RefCell::new(None),
            sending: Cell::new(0),
            soft_since: Cell::new(None),
            cut: Cell::new(false),
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.buf.borrow().is_empty()
    }

    /// Moves what is waiting to the end of `out`.
    pub fn take_into(&self, out: &mut Vec<u8>) {
        let mut b = self.buf.borrow_mut();
        if out.is_empty() {
            std::mem::swap(out, &mut b);
        } else {
            out.extend_from_slice(&b);
            b.clear();
        }
    }

    /// Queues one encoded message; disconnects the client past its output limit.
    pub fn push(&self, core: &Core, bytes: &[u8]) {
        if self.cut.get() {
            return;
        }
        let used = {
            let mut b = self.buf.borrow_mut();
            b.extend_from_slice(bytes);
            b.len() + self.sending.get()
        };
        let limit = {
            let cfg = core.config.borrow();
            let limits = &cfg.client_output_buffer_limit;
            // Not subscribed (a monitor, or pushed invalidations): the normal class's limit,
            // or the pubsub class's where the normal class has none.
            match !self.subscribed.get() && limits[ObClass::Normal as usize] != ObLimit::NONE {
                true => limits[ObClass::Normal as usize],
                false => limits[ObClass::Pubsub as usize],
            }
        };
        if limit.exceeded(used, &self.soft_since) {
            return self.cut_off(core);
        }
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn cut_off(&self, core: &Core) {
        self.cut.set(true);
        *self.buf.borrow_mut() = Vec::new();
        core.stats.borrow_mut().output_limit_disconnections += 1;
        if let Some(h) = self.handle.upgrade() {
            crate::log::warn(&format!(
                "Client id={} addr={} scheduled to be closed ASAP for overcoming of output buffer limits.",
                h.id, h.addr
            ));
            h.kill();
        }
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// Resolves with `read` (the connection's next read), or with None as soon as messages
/// wait in `outbox` (the read is dropped then; reads lose nothing when dropped).
pub async fn read_or_push<R: Future>(read: R, outbox: &Outbox) -> Option<R::Output> {
    let mut read = std::pin::pin!(read);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if outbox.has_pending() {
            return Poll::Ready(None);
        }
        let mut w = outbox.waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    })
    .await
}

/// One core's subscriptions: channel (or pattern) → its subscribers in subscription order.
#[derive(Default)]
pub struct Registry {
    channels: HashMap<Box<[u8]>, Vec<Rc<Outbox>>>,
    patterns: HashMap<Box<[u8]>, Vec<Rc<Outbox>>>,
    shard_channels: HashMap<Box<[u8]>, Vec<Rc<Outbox>>>,
    monitors: Vec<Rc<Outbox>>,
}

/// Which of the three kinds of subscription.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    /// The kind a (un)subscribe command changes; None for any other command.
    pub fn of_subscription(cmd: Cmd) -> Option<Kind> {
        matches!(
            cmd,
            Cmd::Subscribe
                | Cmd::Unsubscribe
                | Cmd::PSubscribe
                | Cmd::PUnsubscribe
                | Cmd::SSubscribe
                | Cmd::SUnsubscribe
        )
        .then(|| Kind::of(cmd))
    }

    fn of(cmd: Cmd) -> Kind {
        match cmd {
            Cmd::PSubscribe | Cmd::PUnsubscribe => Kind::Pattern,
            Cmd::SSubscribe | Cmd::SUnsubscribe | Cmd::SPublish => Kind::Shard,
            _ => Kind::Channel,
        }
    }

    fn words(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Kind::Channel => (b"subscribe", b"unsubscribe"),
            Kind::Pattern => (b"psubscribe", b"punsubscribe"),
            Kind::Shard => (b"ssubscribe", b"sunsubscribe"),
        }
    }
}

impl Registry {
    /// Calls `f` with every subscription of this core's clients (ACL changes look for the
    /// ones a user may no longer hold). O(subscriptions).
    pub fn each_subscription(&self, mut f: impl FnMut(Kind, &[u8], &ClientHandle)) {
        for (kind, table) in [
            (Kind::Channel, &self.channels),
            (Kind::Pattern, &self.patterns),
            (Kind::Shard, &self.shard_channels),
        ] {
            for (name, outboxes) in table {
                for ob in outboxes {
                    if let Some(h) = ob.handle.upgrade() {
                        f(kind, name, &h);
                    }
                }
            }
        }
    }

    fn table(&mut self, kind: Kind) -> &mut HashMap<Box<[u8]>, Vec<Rc<Outbox>>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    fn add(&mut self, kind: Kind, name: &[u8], ob: &Rc<Outbox>) {
        self.table(kind)
            .entry(name.into())
            .or_default()
            .push(ob.clone());
    }

    fn remove(&mut self, kind: Kind, name: &[u8], ob: &Rc<Outbox>) {
        let table = self.table(kind);
        if let Some(subs) = table.get_mut(name) {
            subs.retain(|s| !Rc::ptr_eq(s, ob));
            if subs.is_empty() {
                table.remove(name);
            }
        }
    }

    /// What PUBSUB and INFO read of this core.
    fn summary(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Box<[u8]>> {
        let table = match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard_channels,
        };
        table
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }
}

/// A message encoded once per protocol for all subscribers of one core.
struct Encoded<'a> {
    parts: [&'a [u8]; 4],
    n: usize,
    cache: [Vec<u8>; 2],
}

impl<'a> Encoded<'a> {
    fn new(parts: &[&'a [u8]]) -> Self {
        let mut p: [&[u8]; 4] = [&[]; 4];
        p[..parts.len()].copy_from_slice(parts);
        Encoded {
            parts: p,
            n: parts.len(),
            cache: [Vec::new(), Vec::new()],
        }
    }

    fn get(&mut self, proto: Protocol) -> &[u8] {
        let i = (proto == Protocol::Resp3) as usize;
        if self.cache[i].is_empty() {
            let mut w = ReplyWriter::new(&mut self.cache[i], proto);
            push_header(&mut w, self.n);
            for p in &self.parts[..self.n] {
                w.bulk(p);
            }
        }
        &self.cache[i]
    }
}

/// An out-of-band message's header: a push in RESP3, an array in RESP2.
fn push_header(w: &mut ReplyWriter, n: usize) {
    if w.resp3() {
        w.push(n)
    } else {
        w.array(n)
    }
}

/// Delivers `msg` to this core's subscribers of `channel` (and, unless `shard`, of the
/// patterns matching it); returns how many received it.
pub fn deliver(core: &Core, shard: bool, channel: &[u8], msg: &[u8]) -> usize {
    let reg = core.pubsub.borrow();
    let mut n = 0;
    let (table, word): (_, &[u8]) = match shard {
        true => (&reg.shard_channels, b"smessage"),
        false => (&reg.channels, b"message"),
    };
    if let Some(subs) = table.get(channel) {
        let mut enc = Encoded::new(&[word, channel, msg]);
        for ob in subs {
            ob.push(core, enc.get(ob.proto.get()));
            n += 1;
        }
    }
    if !shard {
        for (pat, subs) in &reg.patterns {
            if glob_match(pat, channel, false) {
                let mut enc = Encoded::new(&[b"pmessage", pat, channel, msg]);
                for ob in subs {
                    ob.push(core, enc.get(ob.proto.get()));
                    n += 1;
                }
            }
        }
    }
    n
}

/// The cores other than `core` that have subscriptions.
pub fn remote_cores(core: &Core) -> impl Iterator<Item = usize> + '_ {
    let me = core.id;
    core.global
        .pubsub_subs
        .iter()
        .enumerate()
        .filter(move |&(c, n)| c != me && n.load(Ordering::Acquire) > 0)
        .map(|(c, _)| c)
}

/// A channel and a message.
pub type Message = (Box<[u8]>, Box<[u8]>);

/// Publishes the keyspace events `shard` recorded, as Redis's `notifyKeyspaceEvent`:
/// `__keyspace@<db>__:<key>` with the event (K) and `__keyevent@<db>__:<event>` with the
/// key (E).
pub fn publish_events(core: &Core, shard: &mut percore_shard::Shard) {
    let events = std::mem::take(&mut shard.events);
    let flags = core.config.borrow().notify_keyspace_events;
    let (space, event) = (
        flags & percore_shard::notify::KEYSPACE != 0,
        flags & percore_shard::notify::KEYEVENT != 0,
    );
    let mut msgs = Vec::with_capacity(events.len() * 2);
    for e in events {
        if space {
            let mut ch = format!("__keyspace@{}__:", e.db).into_bytes();
            ch.extend_from_slice(&e.key);
            msgs.push((ch.into(), e.event.as_bytes().into()));
        }
        if event {
            let ch = format!("__keyevent@{}__:{}", e.db, e.event).into_bytes();
            msgs.push((ch.into(), e.key));
        }
    }
    publish_all(core, msgs);
}

/// Publishes messages made inside the server (keyspace events) without waiting for
/// counts: delivered here now, and carried in one message to each other core with
/// subscribers (the payloads shared, not copied per core), in order.
pub fn publish_all(core: &Core, msgs: Vec<Message>) {
    for (ch, m) in &msgs {
        deliver(core, false, ch, m);
    }
    let remote: Vec<usize> = remote_cores(core).collect();
    if remote.is_empty() {
        return;
    }
    let msgs = std::sync::Arc::new(msgs);
    for c in remote {
        let msgs = msgs.clone();
        core.mailbox.send_now(
            c,
            Box::new(move |c: &Core| {
                for (ch, m) in msgs.iter() {
                    deliver(c, false, ch, m);
                }
            }),
        );
    }
}

/// Names a connection subscribed to, each with when: membership in O(1) however many there
/// are, and the order they were made in for UNSUBSCRIBE with no argument.
#[derive(Default)]
struct Names {
    by_name: HashMap<Box<[u8]>, u64>,
    next: u64,
}

impl Names {
    /// Adds `name`; false when it was there.
    fn insert(&mut self, name: &[u8]) -> bool {
        if self.by_name.contains_key(name) {
            return false;
        }
        self.next += 1;
        self.by_name.insert(name.into(), self.next);
        true
    }

    fn remove(&mut self, name: &[u8]) -> bool {
        self.by_name.remove(name).is_some()
    }

    fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The names, oldest first.
    fn in_order(&self) -> Vec<Box<[u8]>> {
        let mut v: Vec<(&Box<[u8]>, &u64)> = self.by_name.iter().collect();
        v.sort_unstable_by_key(|(_, &seq)| seq);
        v.into_iter().map(|(n, _)| n.clone()).collect()
    }
}

/// One connection's subscriptions, and its outbox.
pub struct Subs {
    outbox: Rc<Outbox>,
    channels: Names,
    patterns: Names,
    shard: Names,
    /// In MONITOR mode.
    monitor: bool,
}

impl Subs {
    fn list(&mut self, kind: Kind) -> &mut Names {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// The count Redis puts in a (un)subscribe reply: channels and patterns, or shard
    /// channels.
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    /// Subscriptions of every kind (RESP2 subscribed mode when nonzero).
    pub fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard.len()
    }
}

/// Whether a RESP2 connection in subscribed mode may run `cmd` (Redis 7.0's list).
pub fn allowed_when_subscribed(cmd: Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Ping
            | Cmd::Subscribe
            | Cmd::SSubscribe
            | Cmd::Unsubscribe
            | Cmd::SUnsubscribe
            | Cmd::PSubscribe
            | Cmd::PUnsubscribe
            | Cmd::Quit
            | Cmd::Reset
    )
}

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBEs: one reply per channel, as
/// Redis sends them (pushes in RESP3).
pub fn subscription(conn: &mut Client, spec: &CommandSpec, a: Args<'_>, out: &mut Vec<u8>) {
    let kind = Kind::of(spec.cmd);
    let subscribe = matches!(spec.cmd, Cmd::Subscribe | Cmd::PSubscribe | Cmd::SSubscribe);
    let mut w = ReplyWriter::new(out, conn.proto);
    // A transaction expects one reply per command: Redis refuses SSUBSCRIBE in one (and
    // lets SUBSCRIBE and PSUBSCRIBE through, for compatibility).
    if spec.cmd == Cmd::SSubscribe && conn.in_exec {
        return w.error("ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client");
    }
    let core = conn.core.clone();
    let handle = conn.handle.clone();
    let subs = subs_of(conn);
    let (sub_word, unsub_word) = kind.words();
    let before = subs.total();
    if subscribe {
        for name in a.iter().skip(1) {
            if subs.list(kind).insert(name) {
                core.pubsub.borrow_mut().add(kind, name, &subs.outbox);
            }
            push_header(&mut w, 3);
            w.bulk(sub_word);
            w.bulk(name);
            w.int(subs.count(kind) as i64);
        }
    } else {
        let names: Vec<Box<[u8]>> = match a.len() {
            1 => subs.list(kind).in_order(),
            _ => a.iter().skip(1).map(Into::into).collect(),
        };
        for name in &names {
            if subs.list(kind).remove(name) {
                core.pubsub.borrow_mut().remove(kind, name, &subs.outbox);
            }
            push_header(&mut w, 3);
            w.bulk(unsub_word);
            w.bulk(name);
            w.int(subs.count(kind) as i64);
        }
        if names.is_empty() {
            push_header(&mut w, 3);
            w.bulk(unsub_word);
            w.null();
            w.int(subs.count(kind) as i64);
        }
    }
    let after = subs.total();
    subs.outbox.subscribed.set(after > 0);
    counted(&core, before, after);
    {
        let mut info = handle.info.borrow_mut();
        info.sub = subs.channels.len();
        info.psub = subs.patterns.len();
        info.ssub = subs.shard.len();
    }
    if after == 0 && !subs.monitor {
        conn.subs = None;
    }
}

/// The connection's subscription state, created on first use.
fn subs_of(conn: &mut Client) -> &mut Subs {
    let outbox = conn.handle.outbox.clone();
    conn.subs.get_or_insert_with(|| {
        Box::new(Subs {
            outbox,
            channels: Names::default(),
            patterns: Names::default(),
            shard: Names::default(),
            monitor: false,
        })
    })
}

/// MONITOR: from now on the connection receives every command run on any core.
pub fn monitor(conn: &mut Client, out: &mut Vec<u8>) {
    if conn.in_exec {
        return ReplyWriter::new(out, conn.proto)
            .error("ERR MONITOR isn't allowed for DENY BLOCKING client");
    }
    let core = conn.core.clone();
    let subs = subs_of(conn);
    // Already monitoring: ignored, without a reply (as Redis).
    if subs.monitor {
        return;
    }
    subs.monitor = true;
    subs.outbox.monitor.set(true);
    core.pubsub.borrow_mut().monitors.push(subs.outbox.clone());
    core.global.monitors[core.id].fetch_add(1, Ordering::Release);
    core.global.monitors_total.fetch_add(1, Ordering::Release);
    conn.handle.info.borrow_mut().monitor = true;
    ReplyWriter::new(out, conn.proto).ok();
}

/// Feeds one command to every MONITOR client, as Redis's `replicationFeedMonitors`
/// writes it: `+<unix time>.<µs> [<db> <addr>] "arg" ...` (`lua` for a script's calls).
pub async fn feed_monitors(
    core: &Rc<Core>,
    db: usize,
    from: Option<std::net::SocketAddr>,
    args: &Args<'_>,
) {
    let us = crate::core::now_us();
    let mut line = format!("+{}.{:06} [{db} ", us / 1_000_000, us % 1_000_000).into_bytes();
    match from {
        Some(a) => line.extend_from_slice(a.to_string().as_bytes()),
        None => line.extend_from_slice(b"lua"),
    }
    line.extend_from_slice(b"] ");
    // Secrets show as Redis's MONITOR shows them (the redacted original argv).
    let all: Vec<&[u8]> = args.iter().collect();
    let hidden = crate::latency::redacted_args(&all);
    for (i, a) in all.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        if i < 64 && hidden & (1 << i) != 0 {
            repr(&mut line, crate::latency::REDACTED);
        } else {
            repr(&mut line, a);
        }
    }
    line.extend_from_slice(b"\r\n");
    feed_here(core, &line);
    let me = core.id;
    let targets: Vec<usize> = (0..core.nshards())
        .filter(|&c| c != me && core.global.monitors[c].load(Ordering::Acquire) > 0)
        .collect();
    for c in targets {
        let line = line.clone();
        let job: crate::core::Job = Box::new(move |c: &Core| feed_here(c, &line));
        if core.mailbox.send(c, job).await.is_err() {
            panic!("core {c} is gone: a core exits only when the whole server does");
        }
    }
}

fn feed_here(core: &Core, line: &[u8]) {
    for ob in &core.pubsub.borrow().monitors {
        ob.push(core, line);
    }
}

/// Redis's `sdscatrepr`: a quoted string with C escapes and `\xHH` for other bytes.
fn repr(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(c),
            _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

/// Keeps this core's published subscription count in step with a connection's change.
fn counted(core: &Core, before: usize, after: usize) {
    let n = &core.global.pubsub_subs[core.id];
    if after > before {
        n.fetch_add(after - before, Ordering::Release);
    } else if before > after {
        n.fetch_sub(before - after, Ordering::Release);
    }
}

/// Drops every subscription of a connection, without replies (RESET, disconnect).
pub fn unsubscribe_all(conn: &mut Client) {
    let Some(s) = conn.subs.take() else {
        return;
    };
    let core = &conn.core;
    {
        let mut reg = core.pubsub.borrow_mut();
        for (kind, list) in [
            (Kind::Channel, &s.channels),
            (Kind::Pattern, &s.patterns),
            (Kind::Shard, &s.shard),
        ] {
            for name in list.by_name.keys() {
                reg.remove(kind, name, &s.outbox);
            }
        }
    }
    counted(core, s.total(), 0);
    s.outbox.subscribed.set(false);
    if s.monitor {
        core.pubsub
            .borrow_mut()
            .monitors
            .retain(|m| !Rc::ptr_eq(m, &s.outbox));
        core.global.monitors[core.id].fetch_sub(1, Ordering::Release);
        core.global.monitors_total.fetch_sub(1, Ordering::Release);
    }
    let mut info = conn.handle.info.borrow_mut();
    info.monitor = false;
    info.sub = 0;
    info.psub = 0;
    info.ssub = 0;
}

/// PUBSUB CHANNELS, NUMSUB, NUMPAT, SHARDCHANNELS, SHARDNUMSUB and HELP, over every core.
pub async fn pubsub(conn: &mut Client, spec: &CommandSpec, a: Args<'_>, out: &mut Vec<u8>) {
    let proto = conn.proto;
    match spec.cmd {
        Cmd::PubsubChannels | Cmd::PubsubShardChannels if a.len() <= 3 => {
            let kind = match spec.cmd {
                Cmd::PubsubChannels => Kind::Channel,
                _ => Kind::Shard,
            };
            let pattern: Option<Box<[u8]>> = a.get(2).map(Into::into);
            let mut all = unique(&conn.core, kind, pattern).await;
            all.sort_unstable();
            let mut w = ReplyWriter::new(out, proto);
            w.array(all.len());
            for c in &all {
                w.bulk(c);
            }
        }
        Cmd::PubsubNumPat if a.len() == 2 => {
            let n = unique(&conn.core, Kind::Pattern, None).await.len();
            ReplyWriter::new(out, proto).int(n as i64);
        }
        Cmd::PubsubNumSub | Cmd::PubsubShardNumSub => {
            let shard = spec.cmd == Cmd::PubsubShardNumSub;
            let names: Vec<Box<[u8]>> = a.iter().skip(2).map(Into::into).collect();
            let asked = names.clone();
            let per_core = call_all(&conn.core, move |c: &Core| {
                let reg = c.pubsub.borrow();
                let table = match shard {
                    true => &reg.shard_channels,
                    false => &reg.channels,
                };
                asked
                    .iter()
                    .map(|n| table.get(n).map_or(0, Vec::len))
                    .collect::<Vec<_>>()
            })
            .await;
            let mut w = ReplyWriter::new(out, proto);
            w.array(names.len() * 2);
            for (i, n) in names.iter().enumerate() {
                w.bulk(n);
                w.int(per_core.iter().map(|c| c[i]).sum::<usize>() as i64);
            }
        }
        Cmd::PubsubHelp => crate::commands::help(
            &mut ReplyWriter::new(out, proto),
            "PUBSUB",
            &[
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern> (default: '*').",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s)",
            ],
        ),
        _ => ReplyWriter::new(out, proto).error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
            String::from_utf8_lossy(&a[1]),
            String::from_utf8_lossy(&a[0]).to_ascii_uppercase()
        )),
    }
}

/// The distinct channels (or patterns) subscribed on any core, matching `pattern`.
async fn unique(core: &Rc<Core>, kind: Kind, pattern: Option<Box<[u8]>>) -> Vec<Box<[u8]>> {
    let per_core = call_all(core, move |c: &Core| {
        c.pubsub.borrow().summary(kind, pattern.as_deref())
    })
    .await;
    let mut all: Vec<Box<[u8]>> = per_core.into_iter().flatten().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// What INFO reports of this core: the subscribed names' hashes (distinct across cores
/// once merged) per kind.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub channels: Vec<u64>,
    pub patterns: Vec<u64>,
    pub shard_channels: Vec<u64>,
}

pub fn summary(core: &Core) -> Summary {
    let reg = core.pubsub.borrow();
    let hashes = |t: &HashMap<Box<[u8]>, Vec<Rc<Outbox>>>| {
        t.keys()
            .map(|k| xxhash_rust::xxh3::xxh3_64(k))
            .collect::<Vec<_>>()
    };
    Summary {
        channels: hashes(&reg.channels),
        patterns: hashes(&reg.patterns),
        shard_channels: hashes(&reg.shard_channels),
    }
}

/// The number of distinct names over every core's [`Summary`].
pub fn distinct(per_core: impl Iterator<Item = u64>) -> usize {
    let mut all: Vec<u64> = per_core.collect();
    all.sort_unstable();
    all.dedup();
    all.len()
}
