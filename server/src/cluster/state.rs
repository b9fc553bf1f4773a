//! The node's view of the cluster: the node table, the owner of each of the 16,384 slots,
//! the epochs, and the rules that change them (Redis's cluster.c, same names where one
//! exists).
//!
//! One `State` per process behind a mutex: the bus threads and the CLUSTER commands change
//! it, briefly. The request path never takes the lock: `publish` copies what a command's
//! routing needs into `ROUTES` (one atomic word per slot) and `STATE_OK`, and only a command
//! whose slot is not plainly this node's (another owner, unassigned, migrating or importing,
//! or the cluster down) looks at the table itself.
//!
//! Invariants: `nodes[0]` is this node ("myself") and is never removed; `slots[s]` is an
//! index into `nodes` of a live entry or `NONE`; a removed node's entry is `None` and no slot,
//! migration or import names it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::SLOTS;

pub const NONE: u16 = u16::MAX;

/// Node flags (a subset of Redis's CLUSTER_NODE_*).
pub const MYSELF: u16 = 1;
pub const MASTER: u16 = 2;
pub const PFAIL: u16 = 4;
pub const FAIL: u16 = 8;
pub const NOADDR: u16 = 16;
pub const SLAVE: u16 = 32;

/// Lines waiting for one node's next message, at most.
const PENDING_MAX: usize = 64;
/// How long a forgotten node is kept from coming back through gossip (Redis's blacklist).
pub const FORGET_BAN_MS: u64 = 60_000;
/// A failure report older than `node timeout × this` no longer counts (Redis's value).
const FAIL_REPORT_VALIDITY_MULT: u64 = 2;
/// A FAIL on a master with slots is cleared after `node timeout × this` if it answers again.
const FAIL_UNDO_TIME_MULT: u64 = 2;

/// What the request path reads for a slot (`ROUTES`): this node serves it plainly; or it
/// needs a look at the table (another owner, no owner, a migration or import).
pub const ROUTE_ELSEWHERE: u8 = 0;
pub const ROUTE_MINE: u8 = 1;
/// This node is a replica and its master serves the slot: a READONLY client's reads run
/// here (getNodeByQuery's read-only case), the rest is redirected.
pub const ROUTE_REPLICA: u8 = 2;

pub static ROUTES: [AtomicU8; SLOTS as usize] =
    [const { AtomicU8::new(ROUTE_ELSEWHERE) }; SLOTS as usize];
pub static STATE_OK: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub ip: String,
    pub port: u16,
    pub cport: u16,
    pub flags: u16,
    pub config_epoch: u64,
    /// When the ping now unanswered was sent (0: none pending), ms since the epoch.
    pub ping_sent_ms: u64,
    pub pong_recv_ms: u64,
    /// When anything was last heard from it (a PONG or a message on its inbound link).
    pub seen_ms: u64,
    pub fail_time_ms: u64,
    /// An outbound bus link to it is up.
    pub link: bool,
    /// Masters that said it is failing, and when they last said so.
    pub fail_reports: Vec<(String, u64)>,
    /// A replica's master (its ID; empty for a master or a replica whose master is not
    /// known).
    pub master_id: String,
    /// The replication offset it last announced (a master's stream end, a replica's
    /// applied offset).
    pub repl_offset: u64,
    /// When this node (a master) last had one of its replicas voted for here.
    pub voted_ms: u64,
}

impl Node {
    pub fn new(id: String, ip: String, port: u16, cport: u16) -> Node {
        Node {
            id,
            ip,
            port,
            cport,
            flags: MASTER,
            config_epoch: 0,
            ping_sent_ms: 0,
            pong_recv_ms: 0,
            seen_ms: 0,
            fail_time_ms: 0,
            link: false,
            fail_reports: Vec::new(),
            master_id: String::new(),
            repl_offset: 0,
            voted_ms: 0,
        }
    }

    pub fn failed(&self) -> bool {
        self.flags & FAIL != 0
    }

    pub fn timed_out(&self) -> bool {
        self.flags & PFAIL != 0
    }

    pub fn is_master(&self) -> bool {
        self.flags & MASTER != 0
    }

    pub fn is_replica(&self) -> bool {
        self.flags & SLAVE != 0
    }

    /// Makes it a replica of `master` (an ID).
    pub fn set_replica_of(&mut self, master: &str) {
        self.flags = (self.flags & !MASTER) | SLAVE;
        self.master_id = master.to_string();
    }

    /// Makes it a master (without slots until it claims some).
    pub fn set_master_role(&mut self) {
        self.flags = (self.flags & !SLAVE) | MASTER;
        self.master_id.clear();
    }
}

/// A CLUSTER MEET (or a node heard of in gossip) not yet answered: its ID is unknown.
#[derive(Clone, Debug)]
pub struct Handshake {
    pub ip: String,
    pub port: u16,
    pub cport: u16,
    pub started_ms: u64,
    pub running: bool,
}

pub struct State {
    pub nodes: Vec<Option<Node>>,
    pub slots: Vec<u16>,
    pub migrating: HashMap<u16, u16>,
    pub importing: HashMap<u16, u16>,
    pub current_epoch: u64,
    pub last_vote_epoch: u64,
    /// Forgotten node IDs and until when gossip may not bring them back.
    pub banned: HashMap<String, u64>,
    pub handshakes: Vec<Handshake>,
    /// Lines (UPDATE, FAIL) to add to the next message sent to a node, by node ID.
    pub pending: HashMap<String, Vec<String>>,
    pub ok: bool,
    /// Masters owning at least one slot.
    pub size: usize,
    pub node_timeout_ms: u64,
    pub require_full_coverage: bool,
    pub allow_reads_when_down: bool,
    /// IP taken from the first bus message received when none is announced.
    pub announced_ip: bool,
    pub sent: [u64; super::bus::KINDS],
    pub received: [u64; super::bus::KINDS],
    /// The nodes file must be written again; and synced to disk (a vote given, an
    /// election started: a node restarted after a crash must not vote twice in an epoch).
    pub dirty: bool,
    pub fsync: bool,
    /// Node IDs with an outbound link thread running.
    pub linked: std::collections::HashSet<String>,
    /// Elections and manual failovers (failover.rs).
    pub failover: super::failover::Failover,
    /// This node's replication offset (its stream end as a master, the offset applied as
    /// a replica) and, as a replica, how long its data has gone without news from its
    /// master: published by core 0's role task (`super::run`) every `ROLE_INTERVAL`.
    pub my_offset: u64,
    pub data_age_ms: u64,
    /// What [`State::update`] last computed from, and this node's slot ranges as the bus
    /// sends them.
    memo: Option<Box<ViewMemo>>,
}

/// The inputs of [`State::update`] when it last ran. `update` runs after every bus message
/// (a PING and a PONG per peer every 100 ms, and every cron step); while its inputs stay the
/// same it has nothing to do. Its two passes over the 16,384 slots, with the bus's own (the
/// sender's claim compared, this node's ranges written out), were most of an idle cluster
/// node's CPU; comparing the slot table is one `memcmp` of 32 KB.
#[derive(PartialEq)]
struct ViewMemo {
    slots: Vec<u16>,
    /// Every known node's index and flags (role, PFAIL, FAIL).
    nodes: Vec<(u16, u16)>,
    /// Slots being migrated (true) or imported, with the other node.
    open: Vec<(u16, u16, bool)>,
    master: Option<u16>,
    full_coverage: bool,
    /// `ranges_text` of this node's slots, for the bus's messages.
    my_ranges: String,
}

impl State {
    pub fn new(myself: Node) -> State {
        State {
            nodes: vec![Some(myself)],
            slots: vec![NONE; SLOTS as usize],
            migrating: HashMap::new(),
            importing: HashMap::new(),
            current_epoch: 0,
            last_vote_epoch: 0,
            banned: HashMap::new(),
            handshakes: Vec::new(),
            pending: HashMap::new(),
            ok: false,
            size: 0,
            node_timeout_ms: 15_000,
            require_full_coverage: true,
            allow_reads_when_down: false,
            announced_ip: false,
            sent: [0; super::bus::KINDS],
            received: [0; super::bus::KINDS],
            dirty: false,
            fsync: false,
            linked: std::collections::HashSet::new(),
            failover: Default::default(),
            my_offset: 0,
            data_age_ms: 0,
            memo: None,
        }
    }

    pub fn me(&self) -> &Node {
        self.nodes[0]
            .as_ref()
            .expect("nodes[0] is myself and is never removed")
    }

    pub fn me_mut(&mut self) -> &mut Node {
        self.nodes[0]
            .as_mut()
            .expect("nodes[0] is myself and is never removed")
    }

    pub fn node(&self, i: u16) -> Option<&Node> {
        self.nodes.get(i as usize).and_then(|n| n.as_ref())
    }

    pub fn node_mut(&mut self, i: u16) -> Option<&mut Node> {
        self.nodes.get_mut(i as usize).and_then(|n| n.as_mut())
    }

    pub fn lookup(&self, id: &str) -> Option<u16> {
        self.nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.id == id))
            .map(|i| i as u16)
    }

    /// The master this node replicates (None: a master, or its master is not known).
    pub fn my_master(&self) -> Option<u16> {
        let me = self.me();
        match me.is_replica() {
            true => self.lookup(&me.master_id),
            false => None,
        }
    }

    /// The replicas of node `i`, as this node knows them.
    pub fn replicas_of(&self, i: u16) -> Vec<u16> {
        let Some(id) = self.node(i).map(|n| n.id.as_str()) else {
            return Vec::new();
        };
        self.live()
            .filter(|(_, n)| n.is_replica() && n.master_id == id)
            .map(|(j, _)| j)
            .collect()
    }

    /// This node becomes a replica of node `i` (clusterSetMaster): a master's open slots
    /// close, a manual failover in progress ends. Core 0's role task then starts the
    /// replication link.
    pub fn set_my_master(&mut self, i: u16) {
        let Some(id) = self.node(i).map(|n| n.id.clone()) else {
            return;
        };
        if self.me().is_master() {
            self.migrating.clear();
            self.importing.clear();
        }
        self.me_mut().set_replica_of(&id);
        self.failover.reset_manual();
        self.dirty = true;
        super::bus::kick();
    }

    /// The live nodes with their indices, myself first.
    pub fn live(&self) -> impl Iterator<Item = (u16, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i as u16, n)))
    }

    pub fn known(&self) -> usize {
        self.live().count()
    }

    pub fn add(&mut self, n: Node) -> u16 {
        self.dirty = true;
        match self.nodes.iter().position(|n| n.is_none()) {
            Some(i) => {
                self.nodes[i] = Some(n);
                i as u16
            }
            None => {
                self.nodes.push(Some(n));
                (self.nodes.len() - 1) as u16
            }
        }
    }

    /// Removes a node: its slots become unassigned, migrations to it and imports from it
    /// end, its failure reports about others go (Redis's clusterDelNode).
    pub fn remove(&mut self, i: u16) {
        if i == 0 {
            return;
        }
        let Some(n) = self.nodes.get_mut(i as usize).and_then(|n| n.take()) else {
            return;
        };
        for s in self.slots.iter_mut().filter(|s| **s == i) {
            *s = NONE;
        }
        self.migrating.retain(|_, &mut t| t != i);
        self.importing.retain(|_, &mut t| t != i);
        for other in self.nodes.iter_mut().flatten() {
            other.fail_reports.retain(|(by, _)| *by != n.id);
        }
        self.pending.remove(&n.id);
        self.dirty = true;
    }

    pub fn slot_count(&self, i: u16) -> usize {
        self.slots.iter().filter(|&&s| s == i).count()
    }

    /// The slot ranges `i` owns, in order.
    pub fn ranges(&self, i: u16) -> Vec<(u16, u16)> {
        ranges_of(|s| self.slots[s as usize] == i)
    }

    /// The highest config epoch any known node has (Redis's clusterGetMaxEpoch).
    pub fn max_epoch(&self) -> u64 {
        self.live()
            .map(|(_, n)| n.config_epoch)
            .max()
            .unwrap_or(0)
            .max(self.current_epoch)
    }

    /// A new config epoch for this node without agreement from the others, when it does not
    /// already hold the highest one (clusterBumpConfigEpochWithoutConsensus). True if bumped.
    pub fn bump_epoch_without_consensus(&mut self) -> bool {
        let max = self.max_epoch();
        let me = self.me().config_epoch;
        if me == 0 || me != max {
            self.current_epoch += 1;
            let e = self.current_epoch;
            self.me_mut().config_epoch = e;
            self.dirty = true;
            return true;
        }
        false
    }

    /// Two masters with the same config epoch: the one with the smaller ID takes a new one,
    /// so that every claim has a distinct epoch (clusterHandleConfigEpochCollision).
    pub fn handle_epoch_collision(&mut self, sender: u16) {
        let Some(s) = self.node(sender) else { return };
        let me = self.me();
        if s.config_epoch != me.config_epoch || !s.is_master() || !me.is_master() {
            return;
        }
        if s.id.as_str() <= me.id.as_str() {
            return;
        }
        self.current_epoch += 1;
        let e = self.current_epoch;
        self.me_mut().config_epoch = e;
        self.dirty = true;
        crate::log::notice(&format!(
            "WARNING: configEpoch collision with node {}. configEpoch set to {e}",
            self.node(sender).map_or("", |n| n.id.as_str())
        ));
    }

    /// `sender` claims `claimed` with `epoch`: each claimed slot goes to it when unassigned
    /// or held with a lower epoch; a slot being imported here is left to the import
    /// (clusterUpdateSlotsConfigWith). Returns the owners with a higher epoch than the
    /// claim's for slots it claimed, whom the sender must hear about (an UPDATE).
    ///
    /// When the claim takes every slot of this node's master (of this node itself, as a
    /// master), the sender has failed it over: this node becomes the sender's replica.
    pub fn update_slots_with(&mut self, sender: u16, epoch: u64, claimed: &[bool]) -> Vec<u16> {
        let mut newer = Vec::new();
        let curmaster = match self.me().is_master() {
            true => Some(0),
            false => self.my_master(),
        };
        let mut taken_from_curmaster = false;
        let mut taken_from_me = 0usize;
        for s in 0..SLOTS {
            if !claimed[s as usize] {
                continue;
            }
            let owner = self.slots[s as usize];
            if owner == sender || self.importing.contains_key(&s) {
                continue;
            }
            let owner_epoch = self.node(owner).map(|n| n.config_epoch);
            match owner_epoch {
                Some(e) if e > epoch => {
                    if !newer.contains(&owner) {
                        newer.push(owner);
                    }
                }
                Some(e) if e == epoch => {}
                _ => {
                    if owner == 0 {
                        taken_from_me += 1;
                        self.migrating.remove(&s);
                    }
                    taken_from_curmaster |= Some(owner) == curmaster;
                    self.slots[s as usize] = sender;
                    self.dirty = true;
                }
            }
        }
        if taken_from_me > 0 {
            // One line for the claim, not one a slot (a failover moves thousands).
            crate::log::notice(&format!(
                "Configuration change detected: {taken_from_me} of my slots now served by {}",
                self.node(sender).map_or("", |n| n.id.as_str())
            ));
        }
        if let Some(cur) = curmaster.filter(|_| taken_from_curmaster && sender != 0) {
            if self.slot_count(cur) == 0 {
                crate::log::notice(&format!(
                    "Configuration change detected. Reconfiguring myself as a replica of {}",
                    self.node(sender).map_or("", |n| n.id.as_str())
                ));
                self.set_my_master(sender);
            }
        }
        newer
    }

    /// Counts a failure report by `by` about node `about`.
    pub fn add_failure_report(&mut self, about: u16, by: &str, now: u64) {
        if let Some(n) = self.node_mut(about) {
            match n.fail_reports.iter_mut().find(|(b, _)| b == by) {
                Some(r) => r.1 = now,
                None => n.fail_reports.push((by.to_string(), now)),
            }
        }
    }

    pub fn del_failure_report(&mut self, about: u16, by: &str) {
        if let Some(n) = self.node_mut(about) {
            n.fail_reports.retain(|(b, _)| b != by);
        }
    }

    /// Valid failure reports about `i` (older ones are dropped).
    pub fn failure_reports(&mut self, i: u16, now: u64) -> usize {
        let max_age = self.node_timeout_ms * FAIL_REPORT_VALIDITY_MULT;
        match self.node_mut(i) {
            Some(n) => {
                n.fail_reports
                    .retain(|(_, t)| now.saturating_sub(*t) <= max_age);
                n.fail_reports.len()
            }
            None => 0,
        }
    }

    /// PFAIL becomes FAIL once a majority of the slot-owning masters (this one included)
    /// report it (markNodeAsFailingIfNeeded); every node is then told.
    pub fn mark_failing_if_needed(&mut self, i: u16, now: u64) {
        let needed = self.size / 2 + 1;
        let Some(n) = self.node(i) else { return };
        if !n.timed_out() || n.failed() {
            return;
        }
        let mut failures = self.failure_reports(i, now);
        if self.me().is_master() {
            failures += 1;
        }
        if failures < needed {
            return;
        }
        let id = {
            let n = self.node_mut(i).expect("looked up above");
            n.flags = (n.flags & !PFAIL) | FAIL;
            n.fail_time_ms = now;
            n.id.clone()
        };
        crate::log::notice(&format!("Marking node {id} as failing (quorum reached)."));
        self.broadcast(format!("F {id}"));
        self.dirty = true;
    }

    /// A node that answers again: PFAIL goes at once, FAIL when it holds no slots or after a
    /// while (clearNodeFailureIfNeeded).
    pub fn clear_failure_if_needed(&mut self, i: u16, now: u64) {
        if self.node(i).is_none_or(|n| n.flags & (PFAIL | FAIL) == 0) {
            return;
        }
        let undo = self.node_timeout_ms * FAIL_UNDO_TIME_MULT;
        let slots = self.slot_count(i);
        let Some(n) = self.node_mut(i) else { return };
        n.flags &= !PFAIL;
        if n.failed() && (slots == 0 || now.saturating_sub(n.fail_time_ms) > undo) {
            n.flags &= !FAIL;
            crate::log::notice(&format!(
                "Clear FAIL state for node {}: it is reachable again.",
                n.id
            ));
            self.dirty = true;
        }
    }

    /// Queues `line` for node `id`'s next message. Bounded: past `PENDING_MAX` lines for a
    /// node that does not answer, the oldest go (a later PING carries the current view).
    pub fn queue(&mut self, id: &str, line: String) {
        let q = self.pending.entry(id.to_string()).or_default();
        if q.len() >= PENDING_MAX {
            q.remove(0);
        }
        q.push(line);
        super::bus::kick();
    }

    /// Queues `line` for every other known node's next message.
    pub fn broadcast(&mut self, line: String) {
        let ids: Vec<String> = self.live().skip(1).map(|(_, n)| n.id.clone()).collect();
        for id in ids {
            self.queue(&id, line.clone());
        }
    }

    /// Recomputes cluster_state and the size, and publishes the routing table
    /// (clusterUpdateState, without the rejoin delay).
    pub fn update(&mut self) {
        let nodes: Vec<(u16, u16)> = self.live().map(|(i, n)| (i, n.flags)).collect();
        let mut open: Vec<(u16, u16, bool)> = (self.migrating.iter().map(|(&s, &n)| (s, n, true)))
            .chain(self.importing.iter().map(|(&s, &n)| (s, n, false)))
            .collect();
        open.sort_unstable();
        let master = self.my_master();
        if let Some(m) = &self.memo {
            if m.slots == self.slots
                && m.nodes == nodes
                && m.open == open
                && m.master == master
                && m.full_coverage == self.require_full_coverage
            {
                return;
            }
        }
        self.recompute();
        self.memo = Some(Box::new(ViewMemo {
            slots: self.slots.clone(),
            nodes,
            open,
            master,
            full_coverage: self.require_full_coverage,
            my_ranges: super::bus::ranges_text(&self.ranges(0)),
        }));
    }

    /// This node's slot ranges as the bus writes them (`0-5460,6000`, or `-`).
    pub fn my_ranges_text(&self) -> String {
        match &self.memo {
            Some(m) if m.slots == self.slots => m.my_ranges.clone(),
            _ => super::bus::ranges_text(&self.ranges(0)),
        }
    }

    /// [`State::update`]'s work: the cluster's size and state, and the routing table.
    fn recompute(&mut self) {
        // One pass over the slots: who owns how many, and whether every slot has a live
        // owner.
        let mut owned = vec![0usize; self.nodes.len()];
        let mut covered = true;
        for &s in &self.slots {
            match self.nodes.get(s as usize).and_then(|n| n.as_ref()) {
                Some(n) => {
                    owned[s as usize] += 1;
                    covered &= !n.failed();
                }
                None => covered = false,
            }
        }
        let mut ok = covered || !self.require_full_coverage;
        let (mut size, mut reachable) = (0, 0);
        for (i, n) in self.live() {
            if n.is_master() && owned[i as usize] > 0 {
                size += 1;
                if n.flags & (FAIL | PFAIL) == 0 {
                    reachable += 1;
                }
            }
        }
        self.size = size;
        if reachable < size / 2 + 1 {
            ok = false;
        }
        if ok != self.ok {
            crate::log::notice(&format!(
                "Cluster state changed: {}",
                if ok { "ok" } else { "fail" }
            ));
        }
        self.ok = ok;
        self.publish();
    }

    fn publish(&self) {
        let open = !self.migrating.is_empty() || !self.importing.is_empty();
        let master = self.my_master();
        for (s, r) in ROUTES.iter().enumerate() {
            let plain = self.slots[s] == 0
                && !(open
                    && (self.migrating.contains_key(&(s as u16))
                        || self.importing.contains_key(&(s as u16))));
            let route = match plain {
                true => ROUTE_MINE,
                false if master == Some(self.slots[s]) => ROUTE_REPLICA,
                false => ROUTE_ELSEWHERE,
            };
            // Stored only when it changes: every core reads these lines on its hot path.
            if r.load(Ordering::Relaxed) != route {
                r.store(route, Ordering::Release);
            }
        }
        if STATE_OK.load(Ordering::Relaxed) != self.ok {
            STATE_OK.store(self.ok, Ordering::Release);
        }
    }

    /// One node's CLUSTER NODES line (clusterGenNodeDescription: a replica shows its
    /// master's config epoch).
    pub fn node_line(&self, i: u16, out: &mut String) {
        let Some(n) = self.node(i) else { return };
        let epoch = match n.is_replica() {
            true => self.lookup(&n.master_id).and_then(|m| self.node(m)),
            false => None,
        }
        .map_or(n.config_epoch, |m| m.config_epoch);
        let _ = write!(out, "{} {}:{}@{} ", n.id, n.ip, n.port, n.cport);
        let mut flags = Vec::new();
        if n.flags & MYSELF != 0 {
            flags.push("myself");
        }
        if n.is_master() {
            flags.push("master");
        }
        if n.is_replica() {
            flags.push("slave");
        }
        if n.timed_out() {
            flags.push("fail?");
        }
        if n.failed() {
            flags.push("fail");
        }
        if n.flags & NOADDR != 0 {
            flags.push("noaddr");
        }
        if flags.is_empty() {
            flags.push("noflags");
        }
        let _ = write!(
            out,
            "{} {} {} {} {} {}",
            flags.join(","),
            if n.master_id.is_empty() {
                "-"
            } else {
                &n.master_id
            },
            n.ping_sent_ms,
            n.pong_recv_ms,
            epoch,
            if n.link || i == 0 {
                "connected"
            } else {
                "disconnected"
            }
        );
        for (a, b) in self.ranges(i) {
            match a == b {
                true => write!(out, " {a}"),
                false => write!(out, " {a}-{b}"),
            }
            .unwrap_or(());
        }
        if i == 0 {
            let mut open: Vec<(u16, bool, u16)> = self
                .migrating
                .iter()
                .map(|(&s, &t)| (s, true, t))
                .chain(
                    self.importing
                        .iter()
                        .filter(|(s, _)| !self.migrating.contains_key(s))
                        .map(|(&s, &t)| (s, false, t)),
                )
                .collect();
            open.sort_unstable();
            for (s, migrating, t) in open {
                let id = self.node(t).map_or("", |n| n.id.as_str());
                let arrow = if migrating { "->-" } else { "-<-" };
                let _ = write!(out, " [{s}{arrow}{id}]");
            }
        }
        out.push('\n');
    }

    /// CLUSTER NODES: every known node, one line each.
    pub fn nodes_text(&self) -> String {
        let mut s = String::new();
        for (i, _) in self.live() {
            self.node_line(i, &mut s);
        }
        s
    }

    /// The nodes file: the node lines and the epochs, as Redis writes nodes.conf.
    pub fn config_text(&self) -> String {
        let mut s = self.nodes_text();
        let _ = writeln!(
            s,
            "vars currentEpoch {} lastVoteEpoch {}",
            self.current_epoch, self.last_vote_epoch
        );
        s
    }

    /// Restores the table from a nodes file (clusterLoadConfig). The line flagged `myself`
    /// becomes `nodes[0]`. Links start down.
    pub fn load(text: &str) -> Result<State, String> {
        let mut parsed: Vec<(Node, Vec<&str>)> = Vec::new();
        let (mut current, mut vote) = (0, 0);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(' ').filter(|t| !t.is_empty()).collect();
            if f[0] == "vars" {
                for kv in f[1..].chunks(2) {
                    match kv {
                        ["currentEpoch", v] => current = v.parse().map_err(|_| bad(line))?,
                        ["lastVoteEpoch", v] => vote = v.parse().map_err(|_| bad(line))?,
                        _ => {}
                    }
                }
                continue;
            }
            if f.len() < 8 || !valid_id(f[0]) {
                return Err(bad(line));
            }
            let addr = f[1].split(',').next().unwrap_or("");
            let (ip, ports) = addr.rsplit_once(':').ok_or_else(|| bad(line))?;
            let (port, cport) = ports.split_once('@').unwrap_or((ports, "0"));
            let mut n = Node::new(
                f[0].to_string(),
                ip.to_string(),
                port.parse().map_err(|_| bad(line))?,
                cport.parse().map_err(|_| bad(line))?,
            );
            n.flags = 0;
            for flag in f[2].split(',') {
                n.flags |= match flag {
                    "myself" => MYSELF,
                    "master" => MASTER,
                    "fail?" => PFAIL,
                    "fail" => FAIL,
                    "noaddr" => NOADDR,
                    "slave" => SLAVE,
                    _ => 0,
                };
            }
            if n.is_replica() {
                match f[3] {
                    "-" => {}
                    m if valid_id(m) => n.master_id = m.to_string(),
                    _ => return Err(bad(line)),
                }
            }
            n.config_epoch = f[6].parse().map_err(|_| bad(line))?;
            parsed.push((n, f[8..].to_vec()));
        }
        let me = parsed
            .iter()
            .position(|(n, _)| n.flags & MYSELF != 0)
            .ok_or("no line for this node ('myself'): not a nodes file")?;
        let mine = parsed.remove(me);
        parsed.insert(0, mine);
        let mut st = State::new(parsed[0].0.clone());
        st.nodes = parsed.iter().map(|(n, _)| Some(n.clone())).collect();
        st.current_epoch = current;
        st.last_vote_epoch = vote;
        for (i, (_, slots)) in parsed.iter().enumerate() {
            for tok in slots {
                if let Some(open) = tok.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                    let (slot, migrating, id) =
                        match (open.split_once("->-"), open.split_once("-<-")) {
                            (Some((s, id)), _) => (s, true, id),
                            (_, Some((s, id))) => (s, false, id),
                            _ => return Err(bad(tok)),
                        };
                    let slot = parse_slot(slot).ok_or_else(|| bad(tok))?;
                    let Some(t) = st.lookup(id) else { continue };
                    match migrating {
                        true => st.migrating.insert(slot, t),
                        false => st.importing.insert(slot, t),
                    };
                    continue;
                }
                let (a, b) = tok.split_once('-').unwrap_or((tok, tok));
                let (a, b) = parse_slot(a).zip(parse_slot(b)).ok_or_else(|| bad(tok))?;
                for s in a..=b {
                    st.slots[s as usize] = i as u16;
                }
            }
        }
        Ok(st)
    }
}

fn bad(line: &str) -> String {
    format!("Unrecoverable error: corrupted cluster config file \"{line}\"")
}

pub fn valid_id(id: &str) -> bool {
    id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn parse_slot(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|&s| s < SLOTS)
}

/// The ranges of slots where `has` holds, in order.
pub fn ranges_of(has: impl Fn(u16) -> bool) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut start = None;
    for s in 0..SLOTS {
        match (has(s), start) {
            (true, None) => start = Some(s),
            (false, Some(a)) => {
                out.push((a, s - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(a) = start {
        out.push((a, SLOTS - 1));
    }
    out
}

/// Views for unit tests: node IDs made of one repeated character, nodes on loopback
/// ports.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn id(c: char) -> String {
        std::iter::repeat_n(c, 40).collect()
    }

    /// Node `c` on port 7000 + `n`.
    pub fn node(c: char, n: u16) -> Node {
        Node::new(id(c), "127.0.0.1".into(), 7000 + n, 17000 + n)
    }

    /// A view whose myself is `me`, knowing the `others` (masters) after it.
    pub fn view(me: char, others: &[char]) -> State {
        let mut myself = node(me, 0);
        myself.flags |= MYSELF;
        let mut st = State::new(myself);
        for (i, &c) in others.iter().enumerate() {
            st.add(node(c, 1 + i as u16));
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{id, node, view};
    use super::*;

    fn two() -> State {
        view('b', &['c'])
    }

    /// `update` does its passes over the slots only when what it reads changed, and the
    /// ranges the bus sends follow the slots whether or not it ran.
    #[test]
    fn update_recomputes_only_when_its_inputs_change() {
        let mut st = two();
        for s in 0..100 {
            st.slots[s] = 0;
        }
        for s in 100..SLOTS as usize {
            st.slots[s] = 1;
        }
        st.update();
        assert_eq!((st.size, st.my_ranges_text().as_str()), (2, "0-99"));
        // The same inputs: nothing is recomputed (a size set by hand stays).
        st.size = 99;
        st.update();
        assert_eq!(st.size, 99);
        // A slot moves: recomputed.
        st.slots[100] = 0;
        st.update();
        assert_eq!((st.size, st.my_ranges_text().as_str()), (2, "0-100"));
        // A node's flags change: recomputed (its FAIL takes the cluster down).
        st.node_mut(1).unwrap().flags |= FAIL;
        st.update();
        assert!(!st.ok);
        st.node_mut(1).unwrap().flags &= !FAIL;
        st.update();
        assert!(st.ok);
        // A slot being migrated: recomputed.
        st.size = 99;
        st.migrating.insert(5, 1);
        st.update();
        assert_eq!(st.size, 2);
        // The bus's ranges follow a slot change before any update.
        st.slots[200] = 0;
        assert_eq!(st.my_ranges_text(), "0-100,200");
    }

    #[test]
    fn a_higher_epoch_takes_a_slot_and_a_lower_one_is_answered_with_an_update() {
        let mut st = two();
        st.me_mut().config_epoch = 5;
        st.slots[10] = 0;
        let mut claim = vec![false; SLOTS as usize];
        claim[10] = true;
        claim[11] = true;
        // Lower epoch: slot 10 stays, slot 11 (unassigned) is taken, the sender must hear
        // about this node.
        st.node_mut(1).unwrap().config_epoch = 3;
        assert_eq!(st.update_slots_with(1, 3, &claim), vec![0]);
        assert_eq!((st.slots[10], st.slots[11]), (0, 1));
        // Higher epoch wins.
        assert!(st.update_slots_with(1, 6, &claim).is_empty());
        assert_eq!(st.slots[10], 1);
    }

    #[test]
    fn an_epoch_collision_moves_the_smaller_id() {
        let mut st = two();
        st.me_mut().config_epoch = 1;
        st.node_mut(1).unwrap().config_epoch = 1;
        st.current_epoch = 1;
        st.handle_epoch_collision(1);
        assert_eq!(st.me().config_epoch, 2, "b < c: this node moves");
        let mut st = two();
        st.me_mut().id = id('d');
        st.me_mut().config_epoch = 1;
        st.node_mut(1).unwrap().config_epoch = 1;
        st.handle_epoch_collision(1);
        assert_eq!(st.me().config_epoch, 1, "d > c: the other node moves");
    }

    #[test]
    fn the_nodes_file_round_trips() {
        let mut st = two();
        st.current_epoch = 7;
        st.me_mut().config_epoch = 7;
        for s in 0..100 {
            st.slots[s] = 0;
        }
        st.slots[200] = 1;
        st.migrating.insert(5, 1);
        st.importing.insert(300, 1);
        let text = st.config_text();
        assert!(text.contains(" 0-99 [5->-cccc"), "{text}");
        let back = State::load(&text).unwrap();
        assert_eq!(back.config_text(), text);
        assert_eq!(back.slots[200], 1);
        assert_eq!(back.current_epoch, 7);
    }

    #[test]
    fn pfail_becomes_fail_with_a_majority() {
        let mut st = two();
        st.add(node('e', 2));
        for s in 0..SLOTS as usize {
            st.slots[s] = (s % 3) as u16;
        }
        st.update();
        assert_eq!(st.size, 3);
        st.node_mut(2).unwrap().flags |= PFAIL;
        st.mark_failing_if_needed(2, 1000);
        assert!(!st.node(2).unwrap().failed(), "one vote of two needed");
        st.add_failure_report(2, &id('c'), 1000);
        st.mark_failing_if_needed(2, 1000);
        assert!(st.node(2).unwrap().failed());
        st.update();
        assert!(!st.ok);
        assert_eq!(st.pending[&id('c')], vec![format!("F {}", id('e'))]);
    }
}
