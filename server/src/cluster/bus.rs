//! The cluster bus: how nodes keep one view of the cluster, on `cluster-port`
//! (port + 10000 by default).
//!
//! Not Redis's binary protocol: a small text protocol of percore's own, because what must
//! interoperate is what clients and tools see — CLUSTER NODES/SLOTS/SHARDS, MOVED/ASK,
//! MIGRATE, SETSLOT — and `redis-cli --cluster` speaks only those to each node. Redis's
//! 2 KiB header with its bit layout and its extension records would be more code and more
//! ways to be wrong for no tool that reads it; a text frame is also readable in a capture.
//! The cost: percore nodes and Redis nodes cannot form one cluster.
//!
//! What it carries is Redis's model, with Redis's rules (state.rs):
//! - every message has the sender's ID, address, config epoch, current epoch and the slots
//!   it claims; a claim wins over a lower epoch (clusterUpdateSlotsConfigWith), a sender
//!   behind is told with an UPDATE line, equal epochs of two masters are split by the
//!   smaller ID taking a new one;
//! - a gossip line for every other node the sender knows (clusters here are small; Redis
//!   sends a tenth) with its address and whether the sender thinks it is failing: unknown
//!   nodes are met (A meets B, B meets C: A learns C), failure reports are counted;
//! - FAIL lines spread a node's failure once a majority of slot-owning masters saw it;
//! - the sender's role (its master, if it is a replica) and replication offset; only a
//!   master's slot claim counts, and a master that turns replica loses its slots;
//! - the failover lines (failover.rs): a vote request, a vote, a manual failover start,
//!   and a master's flag that it paused its writes for a manual failover.
//!
//! Frames: a 4-byte big-endian length, then text lines:
//!   `PCBUS 1 <PING|PONG|MEET>`
//!   `<id> <ip or -> <port> <cport> <config epoch> <current epoch> <slot ranges or ->
//!    <master id or -> <replication offset> <p (paused) or ->` (a node of an older percore
//!    sends the first seven fields: a master)
//!   `G <id> <ip> <port> <cport> <ok|pfail|fail>`   (gossip, any number)
//!   `F <id>` (that node failed) and `U <id> <config epoch> <slot ranges or ->` (its slots)
//!   `R <current epoch> <master's config epoch> <0|1 forced> <master's slot ranges or ->`
//!   (vote for me; the slots as the candidate sees its master's: a voter refuses when a
//!   newer configuration owns one of them; an older percore's 3-field `R` is ignored),
//!   `A <epoch>` (my vote) and `M` (start a manual failover; to the master)
//! Gossip, FAIL, R and A lines together are at most MAX_ENTRIES a message; U and R lines,
//! each decoded into a slot map, at most MAX_UPDATES.
//!
//! Threads, not the cores' executors: the bus is a handful of slow links (a PING every
//! 100 ms per peer), and blocking sockets on their own threads keep it out of the
//! request path and out of the runtime module. One accept thread per bus listener, one
//! thread per inbound link (answers each PING/MEET with a PONG), one per outbound link
//! (sends PINGs, reads PONGs), one per pending handshake, and a cron thread every 100 ms
//! (starts links, marks silent nodes PFAIL, expires bans and handshakes, recomputes the
//! cluster state and saves the nodes file when it changed).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::state::{self, Handshake, Node, State, FAIL, PFAIL};
use super::{state_lock, SLOTS};

pub const KINDS: usize = 8;
pub const KIND_NAMES: [&str; KINDS] = [
    "ping", "pong", "meet", "fail", "update", "auth-req", "auth-ack", "mfstart",
];
const PING: usize = 0;
const PONG: usize = 1;
const MEET: usize = 2;
const FAIL_KIND: usize = 3;
const UPDATE: usize = 4;

/// The kind of a queued line, by its first letter (for the message counters).
fn line_kind(line: &str) -> usize {
    match line.as_bytes().first() {
        Some(b'F') => FAIL_KIND,
        Some(b'R') => 5,
        Some(b'A') => 6,
        Some(b'M') => 7,
        _ => UPDATE,
    }
}

const PING_INTERVAL: Duration = Duration::from_millis(100);
const CRON_INTERVAL: Duration = Duration::from_millis(100);
const MAX_FRAME: usize = 4 << 20;
/// Bounds on what one message may carry, so a peer cannot make this node allocate without
/// limit: gossip and FAIL lines (a few dozen bytes each), and UPDATE lines, each decoded into
/// a 16,384-slot map (one UPDATE per message is what nodes send).
const MAX_ENTRIES: usize = 4096;
const MAX_UPDATES: usize = 16;
/// Handshakes with nodes learned from gossip, and inbound links, at once (each is a thread).
const MAX_HANDSHAKES: usize = 64;
const MAX_INBOUND: usize = 256;

fn now() -> u64 {
    crate::core::now_ms()
}

/// Wakes the outbound links so that what just changed (a queued line, a slot claim, a
/// role) goes out now rather than with the next PING, as Redis sends at once: a manual
/// failover is several round trips (MFSTART, the paused offset, votes, the claim), 100 ms
/// each at the PING pace. A generation counter: a link sends again when it moved since
/// its last message, at most every `KICK_MIN_GAP`.
static KICK: (std::sync::Mutex<u64>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());
const KICK_MIN_GAP: Duration = Duration::from_millis(1);

pub fn kick() {
    let mut g = KICK.0.lock().unwrap_or_else(|e| e.into_inner());
    *g += 1;
    KICK.1.notify_all();
}

fn kick_generation() -> u64 {
    *KICK.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits `d`, or less when a kick came after generation `seen`.
fn wait_kicked(seen: u64, d: Duration) {
    let g = KICK.0.lock().unwrap_or_else(|e| e.into_inner());
    let r = KICK.1.wait_timeout_while(g, d, |g| *g == seen);
    drop(r);
    std::thread::sleep(KICK_MIN_GAP);
}

/// A decoded message.
#[derive(Debug, Default)]
pub struct Msg {
    pub kind: usize,
    pub id: String,
    pub ip: String,
    pub port: u16,
    pub cport: u16,
    pub config_epoch: u64,
    pub current_epoch: u64,
    pub slots: Vec<bool>,
    pub gossip: Vec<(String, String, u16, u16, u16)>,
    pub fails: Vec<String>,
    pub updates: Vec<(String, u64, Vec<bool>)>,
    /// The sender's master (empty: it is a master), its replication offset, and whether
    /// it is a master paused for a manual failover (the offset is then the one to reach).
    pub master: String,
    pub offset: u64,
    pub paused: bool,
    /// Failover lines: vote requests, votes (epoch), a manual failover start.
    pub auth_requests: Vec<AuthRequest>,
    pub auth_acks: Vec<u64>,
    pub mfstart: bool,
}

/// An `R` line: a replica asks for a vote for `epoch`, its master at `config_epoch`
/// owning `slots` as the replica sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRequest {
    pub epoch: u64,
    pub config_epoch: u64,
    pub force: bool,
    pub slots: Vec<bool>,
}

pub(super) fn ranges_text(r: &[(u16, u16)]) -> String {
    if r.is_empty() {
        return "-".into();
    }
    r.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Slot ranges as `ranges_text` writes them: ascending and apart, so a message's ranges
/// touch each slot at most once (a peer repeating `0-16383` would otherwise cost 16,384
/// steps per range, millions in one frame). Anything else is refused.
fn parse_ranges(t: &str) -> Option<Vec<bool>> {
    let mut v = vec![false; SLOTS as usize];
    if t == "-" {
        return Some(v);
    }
    let mut next = 0u16;
    for r in t.split(',') {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let (a, b) = (state::parse_slot(a)?, state::parse_slot(b)?);
        if a < next || b < a {
            return None;
        }
        v[a as usize..=b as usize].fill(true);
        next = b.checked_add(1)?;
    }
    Some(v)
}

/// Builds a message from this node to `to` (None: a node whose ID is not known yet), and
/// takes the lines queued for it.
pub fn build(st: &mut State, kind: usize, to: Option<&str>) -> Vec<u8> {
    let me = st.me();
    let paused = st.failover.paused();
    let mut s = format!(
        "PCBUS 1 {}\n{} {} {} {} {} {} {} {} {} {}\n",
        ["PING", "PONG", "MEET"][kind],
        me.id,
        if me.ip.is_empty() { "-" } else { &me.ip },
        me.port,
        me.cport,
        me.config_epoch,
        st.current_epoch,
        st.my_ranges_text(),
        if me.is_replica() && !me.master_id.is_empty() {
            &me.master_id
        } else {
            "-"
        },
        paused.unwrap_or(st.my_offset),
        if paused.is_some() { "p" } else { "-" },
    );
    for (_, n) in st.live().skip(1) {
        if Some(n.id.as_str()) == to {
            continue;
        }
        let health = match n.flags & (PFAIL | FAIL) {
            0 => "ok",
            f if f & FAIL != 0 => "fail",
            _ => "pfail",
        };
        s.push_str(&format!(
            "G {} {} {} {} {health}\n",
            n.id, n.ip, n.port, n.cport
        ));
    }
    st.sent[kind] += 1;
    if let Some(lines) = to.and_then(|id| st.pending.remove(id)) {
        for l in lines {
            st.sent[line_kind(&l)] += 1;
            s.push_str(&l);
            s.push('\n');
        }
    }
    let mut out = (s.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

pub fn decode(body: &str) -> Option<Msg> {
    let mut lines = body.lines();
    let kind = match lines.next()? {
        "PCBUS 1 PING" => PING,
        "PCBUS 1 PONG" => PONG,
        "PCBUS 1 MEET" => MEET,
        _ => return None,
    };
    let h: Vec<&str> = lines.next()?.split(' ').collect();
    // A node of an older percore sends the first seven fields only (a master).
    let (head, role) = match h.len() {
        7 => (&h[..], None),
        10 => (&h[..7], Some(&h[7..])),
        _ => return None,
    };
    let [id, ip, port, cport, epoch, current, slots] = head else {
        return None;
    };
    if !state::valid_id(id) {
        return None;
    }
    let mut m = Msg {
        kind,
        id: id.to_string(),
        ip: if *ip == "-" {
            String::new()
        } else {
            ip.to_string()
        },
        port: port.parse().ok()?,
        cport: cport.parse().ok()?,
        config_epoch: epoch.parse().ok()?,
        current_epoch: current.parse().ok()?,
        slots: parse_ranges(slots)?,
        ..Msg::default()
    };
    if let Some([master, offset, flags]) = role {
        if *master != "-" {
            if !state::valid_id(master) {
                return None;
            }
            m.master = master.to_string();
        }
        m.offset = offset.parse().ok()?;
        m.paused = *flags == "p";
    }
    for l in lines {
        let entries = m.gossip.len() + m.fails.len() + m.auth_requests.len() + m.auth_acks.len();
        if entries >= MAX_ENTRIES || m.updates.len() + m.auth_requests.len() > MAX_UPDATES {
            return None;
        }
        let f: Vec<&str> = l.split(' ').collect();
        match f.as_slice() {
            ["G", id, ip, port, cport, health] if state::valid_id(id) => {
                let flags = match *health {
                    "ok" => 0,
                    "pfail" => PFAIL,
                    _ => FAIL,
                };
                m.gossip.push((
                    id.to_string(),
                    ip.to_string(),
                    port.parse().ok()?,
                    cport.parse().ok()?,
                    flags,
                ));
            }
            ["F", id] if state::valid_id(id) => m.fails.push(id.to_string()),
            ["U", id, epoch, slots] if state::valid_id(id) => {
                m.updates
                    .push((id.to_string(), epoch.parse().ok()?, parse_ranges(slots)?))
            }
            ["R", epoch, config_epoch, force, slots] => m.auth_requests.push(AuthRequest {
                epoch: epoch.parse().ok()?,
                config_epoch: config_epoch.parse().ok()?,
                force: *force == "1",
                slots: parse_ranges(slots)?,
            }),
            // An older percore's request names no slots: it cannot be checked, so no vote.
            ["R", _, _, _] => {}
            ["A", epoch] => m.auth_acks.push(epoch.parse().ok()?),
            ["M"] => m.mfstart = true,
            _ => return None,
        }
    }
    (m.updates.len() + m.auth_requests.len() <= MAX_UPDATES).then_some(m)
}

/// Applies a message to the view. `inbound`: it came on a link the sender opened (a PING
/// or MEET, answered with a PONG); otherwise it is the PONG on this node's own link.
/// `local_ip` is this end's address of the link, `peer_ip` the sender's.
pub fn process(st: &mut State, m: &Msg, peer_ip: &str, local_ip: &str, inbound: bool) {
    let now = now();
    st.received[m.kind] += 1;
    st.received[FAIL_KIND] += m.fails.len() as u64;
    st.received[UPDATE] += m.updates.len() as u64;
    st.received[line_kind("R")] += m.auth_requests.len() as u64;
    st.received[line_kind("A")] += m.auth_acks.len() as u64;
    st.received[line_kind("M")] += u64::from(m.mfstart);
    if inbound
        && !st.announced_ip
        && (m.kind == MEET || st.me().ip.is_empty())
        && st.me().ip != local_ip
    {
        crate::log::notice(&format!("IP address for this node updated to {local_ip}"));
        st.me_mut().ip = local_ip.to_string();
        st.dirty = true;
    }
    if m.id == st.me().id {
        return;
    }
    let ip = if m.ip.is_empty() { peer_ip } else { &m.ip };
    let sender = match st.lookup(&m.id) {
        Some(i) => i,
        None if m.kind == MEET || !inbound => {
            let mut n = Node::new(m.id.clone(), ip.to_string(), m.port, m.cport);
            n.config_epoch = m.config_epoch;
            st.handshakes.retain(|h| !(h.ip == ip && h.port == m.port));
            st.add(n)
        }
        None => return,
    };
    if m.current_epoch > st.current_epoch {
        st.current_epoch = m.current_epoch;
        st.dirty = true;
    }
    let mut demoted = false;
    {
        let n = st.node_mut(sender).expect("looked up above");
        let mut changed = false;
        if m.config_epoch > n.config_epoch {
            n.config_epoch = m.config_epoch;
            changed = true;
        }
        if n.ip != ip || n.port != m.port || n.cport != m.cport {
            n.ip = ip.to_string();
            n.port = m.port;
            n.cport = m.cport;
            changed = true;
        }
        // The sender's role (clusterProcessPacket): a master that turned replica loses
        // its slots; a replica may have changed master.
        if m.master.is_empty() {
            if n.is_replica() {
                n.set_master_role();
                changed = true;
            }
        } else if !n.is_replica() || n.master_id != m.master {
            demoted = n.is_master();
            n.set_replica_of(&m.master);
            changed = true;
        }
        n.repl_offset = m.offset;
        n.seen_ms = now;
        if !inbound {
            n.pong_recv_ms = now;
            n.ping_sent_ms = 0;
            n.link = true;
        }
        // Ping times are not worth a write of the nodes file; epochs and addresses are.
        st.dirty |= changed;
    }
    if demoted {
        for s in st.slots.iter_mut().filter(|s| **s == sender) {
            *s = state::NONE;
        }
    }
    st.clear_failure_if_needed(sender, now);
    let sender_id = m.id.clone();
    // Only a master's claim counts (a replica claims nothing); what it claims is compared
    // with what this node thinks it owns (Redis's memcmp of sender->slots), without a copy.
    let master = st.node(sender).is_some_and(|n| n.is_master());
    let differs = || {
        st.slots
            .iter()
            .zip(&m.slots)
            .any(|(&owner, &claimed)| (owner == sender) != claimed)
    };
    if master && differs() {
        for owner in st.update_slots_with(sender, m.config_epoch, &m.slots) {
            let Some(o) = st.node(owner) else { continue };
            let line = format!(
                "U {} {} {}",
                o.id,
                o.config_epoch,
                ranges_text(&st.ranges(owner))
            );
            st.queue(&sender_id, line);
        }
    }
    st.handle_epoch_collision(sender);
    for (id, gip, port, cport, flags) in &m.gossip {
        if *id == st.me().id {
            continue;
        }
        match st.lookup(id) {
            Some(i) => {
                if *flags != 0 {
                    st.add_failure_report(i, &sender_id, now);
                    st.mark_failing_if_needed(i, now);
                } else {
                    st.del_failure_report(i, &sender_id);
                }
            }
            None if st.banned.contains_key(id) => {}
            None => {
                if st.handshakes.len() < MAX_HANDSHAKES
                    && !st
                        .handshakes
                        .iter()
                        .any(|h| h.ip == *gip && h.port == *port)
                {
                    st.handshakes.push(Handshake {
                        ip: gip.clone(),
                        port: *port,
                        cport: *cport,
                        started_ms: now,
                        running: false,
                    });
                }
            }
        }
    }
    for id in &m.fails {
        if let Some(i) = st.lookup(id).filter(|&i| i != 0) {
            let n = st.node_mut(i).expect("looked up above");
            if !n.failed() {
                n.flags = (n.flags & !PFAIL) | FAIL;
                n.fail_time_ms = now;
                crate::log::notice(&format!(
                    "FAIL message received from {sender_id} about {id}"
                ));
            }
        }
    }
    for (id, epoch, slots) in &m.updates {
        let Some(i) = st.lookup(id) else { continue };
        let n = st.node_mut(i).expect("looked up above");
        if n.config_epoch >= *epoch {
            continue;
        }
        n.config_epoch = *epoch;
        if n.is_replica() {
            n.set_master_role();
        }
        st.update_slots_with(i, *epoch, slots);
    }
    if m.paused {
        st.on_master_paused(sender, m.offset);
    }
    if m.mfstart {
        st.on_mfstart(sender, now);
    }
    for r in &m.auth_requests {
        st.on_auth_request(sender, r.epoch, r.config_epoch, r.force, &r.slots, now);
    }
    for &epoch in &m.auth_acks {
        st.on_auth_ack(sender, epoch);
    }
    // A step of a failover may follow from this message (the paused offset, a vote).
    st.failover_step(now);
    st.update();
    save_if_dirty(st);
}

/// Writes the nodes file now if the view changed (a node learnt, an epoch or a slot moved),
/// as Redis saves before it goes on: a node stopped right after must not come back with an
/// older view.
fn save_if_dirty(st: &mut State) {
    if st.dirty {
        st.dirty = false;
        let fsync = std::mem::take(&mut st.fsync);
        if let Err(e) = super::save(st, fsync) {
            crate::log::warn(&format!("cannot save the cluster nodes file: {e}"));
        }
    }
}

fn write_frame(s: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    s.write_all(frame)
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Msg> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    if len > MAX_FRAME {
        return Err(bad("cluster bus frame too long"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let text = std::str::from_utf8(&body).map_err(|_| bad("cluster bus frame is not text"))?;
    decode(text).ok_or_else(|| bad("malformed cluster bus message"))
}

fn ips(s: &TcpStream) -> (String, String) {
    let ip = |a: std::io::Result<SocketAddr>| a.map(|a| a.ip().to_string()).unwrap_or_default();
    (ip(s.peer_addr()), ip(s.local_addr()))
}

/// Opens the bus listeners and starts the threads.
pub fn start(addrs: &[String], cport: u16) -> Result<(), String> {
    for a in addrs {
        // `-addr` (Redis's optional bind): an address that cannot be bound is skipped.
        let (optional, ip) = match a.strip_prefix('-') {
            Some(ip) => (true, ip),
            None => (false, a.as_str()),
        };
        match TcpListener::bind((ip, cport)) {
            Ok(l) => {
                spawn("cluster-accept", move || accept(l));
            }
            Err(_) if optional => {}
            Err(e) => {
                return Err(format!(
                    "Could not create the cluster bus listener on {ip}:{cport}: {e}"
                ))
            }
        }
    }
    spawn("cluster-cron", cron);
    Ok(())
}

/// Starts a thread; false (logged) when the system refuses one.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    let r = std::thread::Builder::new().name(name.into()).spawn(f);
    if let Err(e) = &r {
        crate::log::warn(&format!("cluster bus: cannot start a thread: {e}"));
    }
    r.is_ok()
}

/// Inbound links being served (each on a thread of its own).
static INBOUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn accept(l: TcpListener) {
    use std::sync::atomic::Ordering;
    for s in l.incoming() {
        match s {
            // Past the bound the link is closed; a real peer retries on its next ping.
            Ok(_) if INBOUND.load(Ordering::Relaxed) >= MAX_INBOUND => {}
            Ok(s) => {
                INBOUND.fetch_add(1, Ordering::Relaxed);
                let started = spawn("cluster-in", move || {
                    inbound(s);
                    INBOUND.fetch_sub(1, Ordering::Relaxed);
                });
                if !started {
                    INBOUND.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                crate::log::warn(&format!("cluster bus accept: {e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn inbound(mut s: TcpStream) {
    let timeout = state_lock().node_timeout_ms.max(1000) * 2;
    let _ = s.set_read_timeout(Some(Duration::from_millis(timeout)));
    let _ = s.set_nodelay(true);
    let (peer, local) = ips(&s);
    while let Ok(m) = read_frame(&mut s) {
        let reply = {
            let mut st = state_lock();
            process(&mut st, &m, &peer, &local, true);
            let to = st.lookup(&m.id).map(|_| m.id.clone());
            build(&mut st, PONG, to.as_deref())
        };
        if write_frame(&mut s, &reply).is_err() {
            return;
        }
    }
}

fn connect(ip: &str, cport: u16, timeout_ms: u64) -> Option<TcpStream> {
    let addr = (ip, cport).to_socket_addrs().ok()?.next()?;
    let t = Duration::from_millis(timeout_ms.clamp(100, 1000));
    let s = TcpStream::connect_timeout(&addr, t).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(timeout_ms.clamp(500, 5000))));
    let _ = s.set_write_timeout(Some(Duration::from_millis(timeout_ms.clamp(500, 5000))));
    let _ = s.set_nodelay(true);
    Some(s)
}

/// The outbound link to node `id`: PING, read the PONG, every PING_INTERVAL; reconnects
/// while the node is known, ends when it is forgotten.
fn link(id: String) {
    loop {
        let target = {
            let mut st = state_lock();
            match st.lookup(&id) {
                Some(i) => {
                    let timeout = st.node_timeout_ms;
                    let n = st.node_mut(i).expect("looked up above");
                    if n.ping_sent_ms == 0 {
                        n.ping_sent_ms = now();
                    }
                    Some((n.ip.clone(), n.cport, timeout))
                }
                None => None,
            }
        };
        let Some((ip, cport, timeout)) = target else {
            state_lock().linked.remove(&id);
            return;
        };
        if let Some(mut s) = connect(&ip, cport, timeout) {
            let (peer, local) = ips(&s);
            loop {
                let seen = kick_generation();
                let frame = {
                    let mut st = state_lock();
                    let Some(i) = st.lookup(&id) else { break };
                    let n = st.node_mut(i).expect("looked up above");
                    if n.ip != ip || n.cport != cport {
                        break;
                    }
                    if n.ping_sent_ms == 0 {
                        n.ping_sent_ms = now();
                    }
                    build(&mut st, PING, Some(&id))
                };
                let pong = write_frame(&mut s, &frame).and_then(|_| read_frame(&mut s));
                let Ok(m) = pong else { break };
                if m.id != id {
                    // Another node answers at that address now: forget the old ID's link.
                    break;
                }
                process(&mut state_lock(), &m, &peer, &local, false);
                wait_kicked(seen, PING_INTERVAL);
            }
        }
        {
            let mut st = state_lock();
            if let Some(n) = st.lookup(&id).and_then(|i| st.node_mut(i)) {
                n.link = false;
            }
        }
        std::thread::sleep(PING_INTERVAL);
    }
}

/// Meets a node whose ID is not known yet: MEET, and the PONG names it.
fn handshake(ip: String, port: u16, cport: u16) {
    loop {
        let timeout = {
            let st = state_lock();
            if !st.handshakes.iter().any(|h| h.ip == ip && h.port == port) {
                return;
            }
            st.node_timeout_ms
        };
        if let Some(mut s) = connect(&ip, cport, timeout) {
            let (peer, local) = ips(&s);
            let frame = build(&mut state_lock(), MEET, None);
            if let Ok(m) = write_frame(&mut s, &frame).and_then(|_| read_frame(&mut s)) {
                let mut st = state_lock();
                st.handshakes.retain(|h| !(h.ip == ip && h.port == port));
                if m.id != st.me().id {
                    process(&mut st, &m, &peer, &local, false);
                }
                return;
            }
        }
        std::thread::sleep(PING_INTERVAL);
    }
}

fn cron() {
    loop {
        std::thread::sleep(CRON_INTERVAL);
        let mut st = state_lock();
        cron_step(&mut st, now());
    }
}

/// One bounded step of the bus's periodic work (clusterCron): start missing links and
/// handshakes, mark silent nodes PFAIL, expire bans and stale handshakes, update the
/// state, save the nodes file when it changed.
pub fn cron_step(st: &mut State, now: u64) {
    let timeout = st.node_timeout_ms;
    let ids: Vec<(u16, String)> = st.live().skip(1).map(|(i, n)| (i, n.id.clone())).collect();
    for (i, id) in ids {
        if st.linked.insert(id.clone()) {
            let id2 = id.clone();
            spawn("cluster-link", move || link(id2));
        }
        let n = st.node_mut(i).expect("listed above");
        if n.ping_sent_ms != 0
            && now.saturating_sub(n.ping_sent_ms) > timeout
            && now.saturating_sub(n.seen_ms) > timeout
            && n.flags & (PFAIL | FAIL) == 0
        {
            n.flags |= PFAIL;
            crate::log::notice(&format!("*** NODE {id} possibly failing"));
            st.mark_failing_if_needed(i, now);
        }
    }
    let handshake_timeout = timeout.max(1000);
    st.handshakes
        .retain(|h| now.saturating_sub(h.started_ms) <= handshake_timeout);
    for h in st.handshakes.iter_mut().filter(|h| !h.running) {
        h.running = true;
        let (ip, port, cport) = (h.ip.clone(), h.port, h.cport);
        spawn("cluster-meet", move || handshake(ip, port, cport));
    }
    st.banned.retain(|_, until| *until > now);
    st.failover_step(now);
    st.update();
    save_if_dirty(st);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let id = |c: char| -> String { std::iter::repeat_n(c, 40).collect() };
        let mut me = Node::new(id('a'), "10.0.0.1".into(), 7000, 17000);
        me.flags |= state::MYSELF;
        me.config_epoch = 3;
        let mut st = State::new(me);
        let mut other = Node::new(id('b'), "10.0.0.2".into(), 7001, 17001);
        other.flags |= PFAIL;
        st.add(other);
        for s in 10..20 {
            st.slots[s] = 0;
        }
        st.slots[100] = 0;
        st.pending.insert(id('b'), vec![format!("F {}", id('c'))]);
        let f = build(&mut st, PING, Some(&id('b')));
        let m = decode(std::str::from_utf8(&f[4..]).unwrap()).unwrap();
        assert_eq!((m.kind, m.config_epoch, m.port), (PING, 3, 7000));
        assert!(m.slots[10] && m.slots[19] && m.slots[100] && !m.slots[20]);
        assert!(
            m.gossip.is_empty(),
            "the receiver is not gossiped to itself"
        );
        assert_eq!(m.fails, vec![id('c')]);
        let f = build(&mut st, PONG, None);
        let m = decode(std::str::from_utf8(&f[4..]).unwrap()).unwrap();
        assert_eq!(m.gossip[0].4, PFAIL);
        assert!(decode("PCBUS 1 PING\nshort").is_none());
        assert!(decode("junk").is_none());
    }

    /// A message carries at most MAX_UPDATES slot maps and MAX_ENTRIES gossip and FAIL
    /// lines: one frame cannot make a node allocate gigabytes.
    #[test]
    fn messages_past_the_bounds_are_refused() {
        let id: String = std::iter::repeat_n('a', 40).collect();
        let head = format!("PCBUS 1 PING\n{id} 10.0.0.1 7000 17000 1 1 -\n");
        let with = |line: &str, n: usize| head.clone() + &vec![line; n].join("\n");
        let update = format!("U {id} 1 0-16383");
        assert!(decode(&with(&update, MAX_UPDATES)).is_some());
        assert!(decode(&with(&update, MAX_UPDATES + 1)).is_none());
        let request = "R 5 3 1 0-16383";
        assert!(decode(&with(request, MAX_UPDATES)).is_some());
        assert!(decode(&with(request, MAX_UPDATES + 1)).is_none());
        let fail = format!("F {id}");
        assert!(decode(&with(&fail, MAX_ENTRIES)).is_some());
        assert!(decode(&with(&fail, MAX_ENTRIES + 1)).is_none());
        // Slot ranges must ascend without overlap: each slot is set at most once.
        assert!(parse_ranges("0-5,7,9-16383").is_some());
        for bad in ["0-16383,0-16383", "5-3", "7,6", "0-5,5-9", "16383,0"] {
            assert!(parse_ranges(bad).is_none(), "{bad}");
        }
    }

    /// The role fields and failover lines round trip; a node of an older percore (seven
    /// header fields) is still understood; a replica's claim of slots does not count and a
    /// master that turns replica loses its slots.
    #[test]
    fn roles_and_failover_lines_travel() {
        use state::testing::{id, view};
        let mut replica = view('e', &['f']);
        replica.me_mut().set_replica_of(&id('f'));
        replica.my_offset = 42;
        replica.slots[7] = 0;
        replica.queue(&id('f'), "M".into());
        replica.queue(&id('f'), "R 5 3 1 7,9-10".into());
        replica.queue(&id('f'), "R 5 3 1".into());
        replica.queue(&id('f'), "A 5".into());
        let f = build(&mut replica, PING, Some(&id('f')));
        let m = decode(std::str::from_utf8(&f[4..]).unwrap()).unwrap();
        assert_eq!(
            (m.master.as_str(), m.offset, m.paused),
            (id('f').as_str(), 42, false)
        );
        assert!(m.mfstart);
        assert_eq!(
            (m.auth_requests.clone(), m.auth_acks.clone()),
            (
                vec![AuthRequest {
                    epoch: 5,
                    config_epoch: 3,
                    force: true,
                    slots: (0..SLOTS).map(|s| [7, 9, 10].contains(&s)).collect(),
                }],
                vec![5]
            ),
            "an older percore's request without slots is dropped"
        );
        assert_eq!(replica.sent[5..], [2, 1, 1]);

        let mut master = view('f', &['e']);
        master.slots[7] = 1;
        process(&mut master, &m, "127.0.0.1", "127.0.0.1", true);
        let r = master.lookup(&id('e')).unwrap();
        assert!(master.node(r).unwrap().is_replica());
        assert_eq!(master.node(r).unwrap().repl_offset, 42);
        assert_eq!(
            master.slots[7],
            state::NONE,
            "a master turned replica loses its slots"
        );
        assert_eq!(
            master.failover.mf_replica,
            Some(id('e')),
            "the manual failover started"
        );

        let old = format!("PCBUS 1 PONG\n{} 10.0.0.1 7000 17000 1 1 0-5\n", id('a'));
        let m = decode(&old).unwrap();
        assert!(m.master.is_empty() && m.slots[5] && !m.slots[6]);
        let bad = format!(
            "PCBUS 1 PONG\n{} 10.0.0.1 7000 17000 1 1 - nope 0 -\n",
            id('a')
        );
        assert!(decode(&bad).is_none());
    }

    #[test]
    fn a_meet_adds_the_sender_and_learns_this_nodes_ip() {
        let id = |c: char| -> String { std::iter::repeat_n(c, 40).collect() };
        let mut me = Node::new(id('a'), String::new(), 7000, 17000);
        me.flags |= state::MYSELF;
        let mut st = State::new(me);
        let mut them = State::new(Node::new(id('b'), String::new(), 7001, 17001));
        them.slots[5] = 0;
        let f = build(&mut them, MEET, None);
        let m = decode(std::str::from_utf8(&f[4..]).unwrap()).unwrap();
        process(&mut st, &m, "127.0.0.1", "127.0.0.1", true);
        assert_eq!(st.me().ip, "127.0.0.1");
        let b = st.lookup(&id('b')).unwrap();
        assert_eq!(st.slots[5], b);
        assert_eq!(st.node(b).unwrap().ip, "127.0.0.1");
    }
}
