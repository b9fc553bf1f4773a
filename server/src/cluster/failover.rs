//! Replica failover: the election a replica runs to replace its master, the votes masters
//! give, and the manual failover handshake (Redis's clusterHandleSlaveFailover,
//! clusterSendFailoverAuthIfNeeded, clusterHandleManualFailover, same rules and numbers).
//!
//! Everything here changes the cluster view under its lock, from the bus threads (a
//! message's lines, the cron step every 100 ms) and the CLUSTER FAILOVER command. What
//! needs a core — promoting this node (the REPLICAOF NO ONE path, which keeps the
//! replication id and backlog) and pausing writes on a master — is left in `Failover` for
//! core 0's role task (`super::run`), which does it and then completes the step: an
//! elected replica is promoted *before* it claims its master's slots, so no client is sent
//! to it while it still refuses writes.
//!
//! The election: a replica whose master is FAIL (or that a manual failover lets start)
//! waits 500 ms + up to 500 ms + 1 s per better-placed sibling (its rank: replicas of the
//! same master with a greater replication offset), takes a new current epoch and asks every
//! node for its vote (`R`). A master with slots votes once per epoch, for a replica of a
//! FAIL master (any master with the force flag of a manual failover), not twice for one
//! master within two node timeouts, and not when the replica's master's config epoch is
//! behind the owner, as the voter sees it, of a slot the request claims for that master
//! (the replica's view of its master's slots: a sibling that already took them over holds
//! them with a newer epoch) (`A`). With a majority of the masters with slots the
//! replica takes its master's slots with the election's epoch; the bus spreads the claim,
//! the old master and its other replicas become replicas of the winner.
//! An election that gets no majority in max(2 × node timeout, 2 s) is retried after twice
//! that.
//!
//! The manual failover (CLUSTER FAILOVER): the replica asks its master to start (`M`); the
//! master pauses its clients' writes for 2 × 5 s, lets what was already under way reach
//! the stream, and then announces its stream offset with the paused flag; the replica
//! starts the election (votes forced) once it applied exactly that offset, so no write
//! acknowledged by the old master is lost. FORCE skips the handshake; TAKEOVER skips the
//! election too and takes a new config epoch without agreement. A manual failover not done
//! in 5 s is abandoned and the master's pause lifted.

use super::state::State;

/// How long a manual failover may take (CLUSTER_MF_TIMEOUT), and the master's pause
/// (× CLUSTER_MF_PAUSE_MULT).
pub const MF_TIMEOUT_MS: u64 = 5000;
const MF_PAUSE_MULT: u64 = 2;
/// Redis's defaults for cluster-replica-validity-factor and repl-ping-replica-period: a
/// replica whose data is older than the period + node timeout × factor does not run for
/// election (a manual failover still may).
const REPLICA_VALIDITY_FACTOR: u64 = 10;
const REPL_PING_PERIOD_MS: u64 = 10_000;

/// How `CLUSTER FAILOVER` was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Default,
    Force,
    Takeover,
}

#[derive(Debug, Default)]
pub struct Failover {
    /// Replica and master: a manual failover runs until then (0: none).
    pub mf_end_ms: u64,
    /// Replica: the election may start (offset reached, or FORCE).
    pub mf_can_start: bool,
    /// Replica: the offset its paused master announced.
    pub mf_master_offset: Option<u64>,
    /// Master: the replica that asked for a manual failover, until when writes are to be
    /// paused (core 0's role task applies it), and the stream offset announced once the
    /// pause holds (set by the role task).
    pub mf_replica: Option<String>,
    pub pause_until_ms: u64,
    pub paused_offset: Option<u64>,
    /// Replica: the election (failover_auth_time, _epoch, _sent, _rank, the voters).
    pub auth_time_ms: u64,
    pub auth_epoch: u64,
    pub auth_sent: bool,
    pub auth_rank: u64,
    pub votes: Vec<String>,
    /// Replica: elected (or TAKEOVER): the config epoch to take the master's slots with,
    /// once core 0 promoted this node.
    pub takeover: Option<u64>,
}

impl Failover {
    /// Ends a manual failover, on either side (resetManualFailover); a master's pause is
    /// lifted by the role task.
    pub fn reset_manual(&mut self) {
        self.mf_end_ms = 0;
        self.mf_can_start = false;
        self.mf_master_offset = None;
        self.mf_replica = None;
        self.pause_until_ms = 0;
        self.paused_offset = None;
    }

    /// A failover involves this node now (its role task then looks more often).
    pub fn busy(&self) -> bool {
        self.mf_end_ms != 0 || self.takeover.is_some()
    }

    /// The bus flag of this master's messages: paused for a manual failover, with the
    /// offset to announce.
    pub fn paused(&self) -> Option<u64> {
        self.mf_replica.as_ref().and(self.paused_offset)
    }
}

impl State {
    /// CLUSTER FAILOVER on a replica, its preconditions checked.
    pub fn manual_failover(&mut self, mode: Mode, now: u64) {
        self.failover.reset_manual();
        self.failover.mf_end_ms = now + MF_TIMEOUT_MS;
        // A new election, whenever the last one was: an election of the last seconds would
        // otherwise hold this one back until its retry time (4 × node timeout, Redis's
        // behaviour, which makes a manual failover soon after another time out).
        self.failover.auth_time_ms = 0;
        match mode {
            Mode::Takeover => {
                crate::log::warn("Taking over the master (user request).");
                let master_epoch = self
                    .my_master()
                    .and_then(|m| self.node(m))
                    .map_or(0, |n| n.config_epoch);
                // A replica restarted from its nodes file holds its master's epoch (what
                // CLUSTER NODES shows for it): a claim with it would not win, so it moves
                // past it even when it is the highest.
                if !self.bump_epoch_without_consensus() && self.me().config_epoch <= master_epoch {
                    self.current_epoch += 1;
                    let e = self.current_epoch;
                    self.me_mut().config_epoch = e;
                    self.dirty = true;
                }
                self.failover.takeover = Some(self.me().config_epoch);
            }
            Mode::Force => {
                crate::log::warn("Forced failover user request accepted.");
                self.failover.mf_can_start = true;
            }
            Mode::Default => {
                crate::log::warn("Manual failover user request accepted.");
                let master = self.me().master_id.clone();
                self.queue(&master, "M".into());
            }
        }
    }

    /// A replica of this master asks for a manual failover (clusterProcessPacket's
    /// MFSTART): writes pause, the offset follows once the pause holds.
    pub fn on_mfstart(&mut self, sender: u16, now: u64) {
        let Some(n) = self.node(sender) else { return };
        if !self.me().is_master() || n.master_id != self.me().id {
            return;
        }
        let id = n.id.clone();
        self.failover.reset_manual();
        self.failover.mf_end_ms = now + MF_TIMEOUT_MS;
        self.failover.pause_until_ms = now + MF_TIMEOUT_MS * MF_PAUSE_MULT;
        crate::log::warn(&format!("Manual failover requested by replica {id}."));
        self.failover.mf_replica = Some(id);
    }

    /// This replica's master announced the offset it paused at.
    pub fn on_master_paused(&mut self, sender: u16, offset: u64) {
        if self.failover.mf_end_ms == 0
            || self.failover.mf_master_offset.is_some()
            || self.my_master() != Some(sender)
        {
            return;
        }
        self.failover.mf_master_offset = Some(offset);
        crate::log::warn(&format!(
            "Received replication offset for paused master manual failover: {offset}"
        ));
    }

    /// A vote request from `sender` (clusterSendFailoverAuthIfNeeded); the vote, when
    /// given, goes with the next message to it.
    pub fn on_auth_request(
        &mut self,
        sender: u16,
        req_epoch: u64,
        req_config_epoch: u64,
        force: bool,
        claimed: &[bool],
        now: u64,
    ) {
        if !self.me().is_master() || self.slot_count(0) == 0 {
            return;
        }
        let Some(n) = self.node(sender) else { return };
        let id = n.id.clone();
        let deny = |why: String| crate::log::warn(&format!("Failover auth denied to {id}: {why}"));
        if req_epoch < self.current_epoch {
            return deny(format!(
                "reqEpoch ({req_epoch}) < curEpoch({})",
                self.current_epoch
            ));
        }
        if self.last_vote_epoch == self.current_epoch {
            return deny(format!("already voted for epoch {}", self.current_epoch));
        }
        let master = match n.is_master() {
            true => return deny("it is a master node".into()),
            false => self.lookup(&n.master_id),
        };
        let Some(m) = master else {
            return deny("I don't know its master".into());
        };
        let mn = self.node(m).expect("looked up above");
        if !mn.failed() && !force {
            return deny("its master is up".into());
        }
        let wait = self.node_timeout_ms * 2;
        if now.saturating_sub(mn.voted_ms) < wait {
            return deny(format!(
                "can't vote about this master before {} milliseconds",
                wait - now.saturating_sub(mn.voted_ms)
            ));
        }
        // The slots the candidate claims for its master must not be held here by a newer
        // configuration: a sibling that took them over at a later epoch wins over a stale
        // candidate, whoever this node still sees as their owner.
        let newer = (0..super::SLOTS as usize)
            .filter(|&s| claimed.get(s).copied().unwrap_or(false))
            .find_map(|s| {
                let owner = self.node(self.slots[s])?;
                (owner.config_epoch > req_config_epoch).then_some((s, owner.config_epoch))
            });
        if let Some((s, e)) = newer {
            return deny(format!(
                "slot {s} epoch ({e}) > reqEpoch ({req_config_epoch})"
            ));
        }
        self.last_vote_epoch = self.current_epoch;
        if let Some(mn) = self.node_mut(m) {
            mn.voted_ms = now;
        }
        self.dirty = true;
        self.fsync = true;
        let epoch = self.current_epoch;
        self.queue(&id, format!("A {epoch}"));
        crate::log::warn(&format!("Failover auth granted to {id} for epoch {epoch}"));
    }

    /// A vote for this replica's election.
    pub fn on_auth_ack(&mut self, sender: u16, epoch: u64) {
        let Some(n) = self.node(sender) else { return };
        let f = &self.failover;
        if !n.is_master() || !f.auth_sent || epoch < f.auth_epoch || f.votes.contains(&n.id) {
            return;
        }
        if self.slot_count(sender) == 0 {
            return;
        }
        let id = n.id.clone();
        self.failover.votes.push(id);
    }

    /// Replicas of this node's master with a better offset (clusterGetSlaveRank).
    fn rank(&self, master: u16) -> u64 {
        self.replicas_of(master)
            .into_iter()
            .filter(|&i| i != 0)
            .filter(|&i| self.node(i).is_some_and(|n| n.repl_offset > self.my_offset))
            .count() as u64
    }

    /// The cron's failover work: a manual failover's timeout and handshake, then the
    /// election (clusterHandleManualFailover, clusterHandleSlaveFailover).
    pub fn failover_step(&mut self, now: u64) {
        let f = &mut self.failover;
        if f.mf_end_ms != 0 && f.mf_end_ms < now {
            crate::log::warn("Manual failover timed out.");
            f.reset_manual();
        }
        if f.mf_end_ms != 0 && !f.mf_can_start && f.mf_master_offset == Some(self.my_offset) {
            f.mf_can_start = true;
            crate::log::warn("All master replication stream processed, manual failover can start.");
        }
        self.election_step(now);
    }

    fn election_step(&mut self, now: u64) {
        if self.me().is_master() || self.failover.takeover.is_some() {
            return;
        }
        let Some(m) = self.my_master() else { return };
        let manual = self.failover.mf_end_ms != 0 && self.failover.mf_can_start;
        let master_failed = self.node(m).is_some_and(|n| n.failed());
        if (!master_failed && !manual) || self.slot_count(m) == 0 {
            return;
        }
        let timeout = self.node_timeout_ms;
        let auth_timeout = (timeout * 2).max(2000);
        let auth_retry = auth_timeout * 2;
        let mut age = self.data_age_ms;
        if age > timeout {
            age -= timeout;
        }
        if !manual && age > REPL_PING_PERIOD_MS + timeout * REPLICA_VALIDITY_FACTOR {
            return;
        }
        let f = &mut self.failover;
        if now.saturating_sub(f.auth_time_ms) > auth_retry {
            // Time-derived jitter: replicas of one master are unlikely to tie, and the
            // rank orders them anyway.
            let rank = self.rank(m);
            let f = &mut self.failover;
            f.auth_time_ms = now + 500 + now % 500 + rank * 1000;
            f.auth_rank = rank;
            f.votes.clear();
            f.auth_sent = false;
            if f.mf_end_ms != 0 {
                f.auth_time_ms = now;
                f.auth_rank = 0;
            }
            crate::log::warn(&format!(
                "Start of election delayed for {} milliseconds (rank #{}, offset {}).",
                f.auth_time_ms - now,
                f.auth_rank,
                self.my_offset
            ));
            if f.mf_end_ms == 0 {
                return;
            }
        }
        if !self.failover.auth_sent && self.failover.mf_end_ms == 0 {
            let rank = self.rank(m);
            let f = &mut self.failover;
            if rank > f.auth_rank {
                f.auth_time_ms += (rank - f.auth_rank) * 1000;
                f.auth_rank = rank;
            }
        }
        let f = &self.failover;
        if now < f.auth_time_ms || now - f.auth_time_ms > auth_timeout {
            return;
        }
        if !f.auth_sent {
            self.current_epoch += 1;
            let epoch = self.current_epoch;
            let master_epoch = self.node(m).map_or(0, |n| n.config_epoch);
            let ranges = super::bus::ranges_text(&self.ranges(m));
            self.failover.auth_epoch = epoch;
            self.failover.auth_sent = true;
            self.failover.votes.clear();
            self.dirty = true;
            self.fsync = true;
            crate::log::warn(&format!("Starting a failover election for epoch {epoch}."));
            self.broadcast(format!(
                "R {epoch} {master_epoch} {} {ranges}",
                u8::from(self.failover.mf_end_ms != 0)
            ));
            return;
        }
        let needed = self.size / 2 + 1;
        if self.failover.votes.len() >= needed {
            crate::log::warn("Failover election won: I'm the new master.");
            self.failover.takeover = Some(self.failover.auth_epoch);
        }
    }

    /// Core 0 promoted this node: it takes its master's slots with `epoch` and becomes a
    /// master (clusterFailoverReplaceYourMaster); the next messages tell every node.
    pub fn take_over(&mut self, epoch: u64) {
        self.failover.takeover = None;
        let Some(m) = self.my_master() else { return };
        if self.me().config_epoch < epoch {
            self.me_mut().config_epoch = epoch;
            crate::log::warn(&format!(
                "configEpoch set to {epoch} after successful failover"
            ));
        }
        self.me_mut().set_master_role();
        for s in self.slots.iter_mut().filter(|s| **s == m) {
            *s = 0;
        }
        self.failover.reset_manual();
        self.failover.auth_sent = false;
        self.failover.votes.clear();
        self.dirty = true;
        self.update();
        super::bus::kick();
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::testing::{id, view};
    use super::super::state::FAIL;
    use super::*;

    /// Three masters (a: this node, b, c) with slots, and d a replica of b.
    fn cluster() -> State {
        let mut st = view('a', &['b', 'c', 'd']);
        st.node_mut(3).unwrap().set_replica_of(&id('b'));
        for s in 0..super::super::SLOTS as usize {
            st.slots[s] = (s % 3) as u16;
        }
        st.update();
        st
    }

    #[test]
    fn a_master_votes_once_per_epoch_and_only_for_a_failed_masters_replica() {
        let mut st = cluster();
        let b_slots: Vec<bool> = st.slots.iter().map(|&o| o == 1).collect();
        st.current_epoch = 5;
        st.on_auth_request(3, 5, 0, false, &b_slots, 100_000);
        assert!(!st.pending.contains_key(&id('d')), "its master is up");
        st.node_mut(1).unwrap().flags |= FAIL;
        st.on_auth_request(3, 4, 0, false, &b_slots, 100_000);
        assert!(!st.pending.contains_key(&id('d')), "an old epoch");
        st.on_auth_request(3, 5, 0, false, &b_slots, 100_000);
        assert_eq!(st.pending[&id('d')], vec!["A 5".to_string()]);
        assert_eq!(st.last_vote_epoch, 5);
        st.current_epoch = 6;
        st.on_auth_request(3, 6, 0, false, &b_slots, 100_001);
        assert_eq!(
            st.pending[&id('d')].len(),
            1,
            "not twice for one master so soon"
        );
    }

    /// A replica of b cut off from its sibling e, which took b's slots at epoch 9, asks for
    /// votes with b's old epoch: a voter that saw e's claim refuses, though b still looks
    /// like the failed master of that replica and owns nothing to compare with.
    #[test]
    fn a_stale_sibling_is_refused_when_the_slots_it_claims_are_newer_elsewhere() {
        let mut st = view('a', &['b', 'c', 'd', 'e']);
        for r in [3, 4] {
            st.node_mut(r).unwrap().set_replica_of(&id('b'));
        }
        for s in 0..super::super::SLOTS as usize {
            st.slots[s] = (s % 3) as u16;
        }
        st.node_mut(1).unwrap().config_epoch = 2;
        st.update();
        // What d still sees b own, and what it sends in its request.
        let b_slots: Vec<bool> = st.slots.iter().map(|&o| o == 1).collect();
        // e won an election at epoch 9 and took b's slots; b is unreachable.
        st.node_mut(4).unwrap().set_master_role();
        st.update_slots_with(4, 9, &b_slots);
        st.node_mut(4).unwrap().config_epoch = 9;
        st.node_mut(1).unwrap().flags |= FAIL;
        assert_eq!(st.slot_count(1), 0);
        st.current_epoch = 10;
        st.on_auth_request(3, 10, 2, false, &b_slots, 100_000);
        assert!(
            !st.pending.contains_key(&id('d')),
            "a newer owner of its slots"
        );
        assert_ne!(st.last_vote_epoch, 10);
        // With the winner's epoch the request is fine.
        st.on_auth_request(3, 10, 9, false, &b_slots, 100_000);
        assert_eq!(st.pending[&id('d')], vec!["A 10".to_string()]);
    }

    #[test]
    fn a_forced_election_is_won_with_a_majority_and_takes_the_masters_slots() {
        // This node is d, replica of b.
        let mut st = view('d', &['a', 'b', 'c']);
        st.me_mut().set_replica_of(&id('b'));
        for s in 0..super::super::SLOTS as usize {
            st.slots[s] = 1 + (s % 3) as u16;
        }
        st.update();
        st.manual_failover(Mode::Force, 1000);
        st.failover_step(1000);
        assert!(st.failover.auth_sent);
        let epoch = st.failover.auth_epoch;
        assert_eq!(
            st.pending[&id('a')],
            vec![format!(
                "R {epoch} 0 1 {}",
                super::super::bus::ranges_text(&st.ranges(2))
            )]
        );
        st.on_auth_ack(1, epoch);
        st.failover_step(1100);
        assert!(st.failover.takeover.is_none(), "one vote of two needed");
        st.on_auth_ack(3, epoch);
        st.failover_step(1200);
        assert_eq!(st.failover.takeover, Some(epoch));
        let masters = st.slot_count(2);
        st.take_over(epoch);
        assert!(st.me().is_master());
        assert_eq!((st.slot_count(0), st.slot_count(2)), (masters, 0));
        assert_eq!(st.me().config_epoch, epoch);
    }

    #[test]
    fn a_master_whose_slots_go_to_its_replica_becomes_its_replica() {
        let mut st = cluster();
        let mut claim = vec![false; super::super::SLOTS as usize];
        for s in (0..super::super::SLOTS as usize).filter(|s| s % 3 == 0) {
            claim[s] = true;
        }
        st.update_slots_with(3, 9, &claim);
        assert!(st.me().is_replica());
        assert_eq!(st.me().master_id, id('d'));
    }
}
