//! The dispatcher: one command of a [`Client`], from its name to its reply.
//!
//! Checks, in Redis's `processCommand` order (kept exactly, see `dispatch_checked`): the
//! cross-protocol guard, lookup and arity, DEBUG's protection, authentication, ACL, cluster
//! redirection, the RESP2 subscriber's allowed commands, a busy script, the replica's gates,
//! CLIENT PAUSE, MULTI's queueing; then transactions, scripts, Pub/Sub, replication, and the
//! command's route to the shards (single key, per key, all shards, coordinated, blocking,
//! connection).
//!
//! Pipeline squashing. For one read, commands whose keys live on this core run inline; those
//! for other shards are appended to one [`Batch`] per destination shard. Replies are put back
//! in the client's order from [`Slot`]s. Multi-key commands whose keys span shards are split
//! into one sub-command per shard and merged ([`router::merge`]). Commands that must observe
//! everything before them (whole-keyspace commands, cross-shard RENAME, INFO, …) are
//! barriers: the pending batches are sent and answered first ([`Client::flush`]).
//!
//! Per-shard order is preserved because each shard's commands travel in order in one batch,
//! and commands for different shards touch different keys. Client state that changes
//! mid-pipeline (SELECT, HELLO) is captured per command (`db`, `proto` in [`BatchCmd`]).
//!
//! Transactions' locks: a command over several shards (and MULTI/EXEC, scripts) takes its
//! keys' locks through [`Client::begin_tx_with`] and [`Client::lock_tx`], and releases them
//! with [`Client::end_tx`], whose last batches carry the release.
//!
//! Layering, one way: `conn` (the socket) → `dispatch` (this module) → command handlers →
//! `client` (the state they share). Handlers never name `conn` and never get the socket:
//! what a command needs of it is a [`Peer`] (the replies before a blocking command written
//! before it parks, the peer's leaving noticed, the socket handed over for PSYNC/SYNC),
//! passed down as `&mut dyn Peer` and called only on those paths.
//!
//! Entry points:
//! - [`Client::dispatch`]: one command, every check. Connections come in through it (the
//!   read loop in `conn` calls its two halves, `dispatch_command` and `dispatch_observed`,
//!   itself, to spare the common case a future layer; the replica's master link in
//!   `repl::replica` calls it whole). It is also the one way back in for a command that
//!   runs commands: EXEC runs its queued commands through it, and a script's
//!   `redis.call`/FCALL through [`Client::run_captured`], which is `dispatch` with the reply
//!   captured in the script's protocol. [`Client::run_inline`] is `run_captured`'s shortcut
//!   for a plain command on this core, taken only where `dispatch` would do just that.
//! - For handlers working across shards, which run no command: [`Client::flush`] (the
//!   pipeline's batches sent and answered) and the transaction's locks
//!   ([`Client::begin_tx_with`], [`Client::lock_tx`], [`Client::tx_shard`],
//!   [`Client::end_tx`], [`Client::commit_repl`]).
//!
//! `tests::layering` checks these rules on the crate's sources.
//!
//! [`BatchCmd`]: crate::core::BatchCmd

use crate::client::{Client, Part, Peer, Slot};
use crate::core::{Batch, BatchReply, Caller, ClientHandle, Core, Job};
use crate::router::{self, shard_of};
use futures_channel::oneshot;
use percore_proto::{
    resolve, Args, Cmd, CommandSpec, Flags, Merge, OwnedArgs, Protocol, ReplyWriter, Route,
};
use percore_shard::ExecCtx;
use std::cell::RefCell;

/// Capacity kept between reads by the pipeline's buffers; a larger one (after one huge
/// batch) is released.
const OUT_KEEP: usize = 1 << 20;

impl Client {
    /// Runs one command (`args`, a complete request) with every check, its reply left in
    /// the client's output in order. The entry point for connections and for EXEC, and,
    /// through [`Client::run_captured`], for scripts (see the module header). `peer`: the
    /// connection, for a blocking command or PSYNC/SYNC; nothing else calls it.
    pub(crate) async fn dispatch(&mut self, args: Args<'_>, peer: &mut dyn Peer) {
        // The common case: no CLIENT REPLY, no MONITOR, no tracking. The rest is boxed so
        // that its state does not grow every command's future.
        if self.plain() {
            self.dispatch_command(args, peer).await;
            self.after_plain();
            return;
        }
        Box::pin(self.dispatch_observed(args, peer)).await
    }

    /// No CLIENT REPLY OFF/SKIP, no CLIENT TRACKING, no MONITOR anywhere: a command needs
    /// nothing around its dispatch.
    pub(crate) fn plain(&self) -> bool {
        !self.reply_off
            && !self.skip_this
            && self.handle.tracking.borrow().is_none()
            && self
                .core
                .global
                .monitors_total
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
    }

    /// What follows a command dispatched without [`Client::dispatch_observed`].
    pub(crate) fn after_plain(&mut self) {
        // CLIENT REPLY SKIP silences the next command.
        if self.skip_next && !self.in_script {
            self.skip_this = std::mem::take(&mut self.skip_next);
        }
    }

    /// [`Client::dispatch`] for a connection with CLIENT REPLY OFF/SKIP or CLIENT TRACKING
    /// on, or while a MONITOR client exists.
    pub(crate) async fn dispatch_observed(&mut self, args: Args<'_>, peer: &mut dyn Peer) {
        self.monitored = None;
        // CLIENT REPLY OFF/SKIP: the command runs alone (what came before is answered
        // first) and its replies are dropped; messages to a subscriber still go out.
        let silent = (self.reply_off || self.skip_this) && !self.in_script;
        let mark = match silent {
            false => 0,
            true => {
                if self.handle.outbox.has_pending() {
                    self.flush().await;
                    self.handle.outbox.take_into(&mut self.out);
                }
                self.flush().await;
                self.out.len()
            }
        };
        self.dispatch_command(args, peer).await;
        if silent {
            self.flush().await;
            // (Un)subscribe confirmations are pushes, which Redis sends regardless.
            let pushes = self
                .monitored
                .is_some_and(|s| crate::pubsub::Kind::of_subscription(s.cmd).is_some());
            if (self.reply_off || self.skip_this) && !pushes {
                self.out.truncate(mark);
            }
        }
        if !self.in_script {
            self.skip_this = std::mem::take(&mut self.skip_next);
        }
        if let Some(spec) = self.monitored {
            crate::tracking::command_done(self, spec);
        }
        // MONITOR clients see each command that ran, after it ran (as Redis feeds them),
        // in this connection's database as it now is.
        if let Some(spec) = self.monitored.take() {
            if self
                .core
                .global
                .monitors_total
                .load(std::sync::atomic::Ordering::Acquire)
                > 0
                && !spec.flags.has(Flags::SKIP_MONITOR | Flags::ADMIN)
            {
                let from = match self.in_script {
                    true => None,
                    false => Some(self.handle.addr),
                };
                crate::pubsub::feed_monitors(&self.core, self.db, from, &args).await;
            }
        }
    }

    pub(crate) async fn dispatch_command(&mut self, args: Args<'_>, peer: &mut dyn Peer) {
        self.dispatch_checked(args, peer).await;
        // Cluster mode: ASKING holds for the next command only, or through a transaction
        // (Redis clears CLIENT_ASKING after each command outside MULTI but ASKING itself).
        if self.asking && self.multi.is_none() && !args[0].eq_ignore_ascii_case(b"asking") {
            self.asking = false;
        }
        // Cluster mode: a command on a slot being migrated ran under its keys' locks.
        if self.cluster_locked {
            self.cluster_locked = false;
            self.end_tx().await;
        }
    }

    async fn dispatch_checked(&mut self, args: Args<'_>, peer: &mut dyn Peer) {
        // Messages (monitored commands, invalidations) that came before this command go
        // out before its reply.
        self.emit_pushes();
        let name = &args[0];
        // Cross-protocol guard: an HTTP request sent to the RESP port closes the connection.
        if name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:") {
            crate::log::warn(&format!(
                "possible SECURITY ATTACK detected: an HTTP request was sent to the RESP port from {}; connection closed",
                self.handle.addr
            ));
            self.close = true;
            return;
        }
        let spec = match resolve(&args) {
            Ok(s) => s,
            // An arity error still counts against the command (rejected_calls), as in Redis.
            Err(e) => {
                let spec = percore_proto::lookup(&args[0]);
                if spec.is_some_and(|s| s.cmd == Cmd::Exec) {
                    // A refused EXEC discards the transaction, whatever the reason.
                    self.multi = None;
                    self.handle.info.borrow_mut().multi = -1;
                    crate::multi::unwatch(self).await;
                    let why = e.strip_prefix("ERR ").unwrap_or(&e);
                    return self
                        .reject(spec, &format!("{} {why}", crate::multi::EXECABORT_BECAUSE));
                }
                return self.reject(spec, &e);
            }
        };
        // A protected command is refused before authentication, as Redis orders it.
        if spec.cmd == Cmd::Debug
            && !crate::debug::allowed(&self.core.config.borrow(), &self.handle.addr)
        {
            return self.reject(Some(spec), crate::debug::NOT_ALLOWED);
        }
        if !self.authed && !spec.flags.has(Flags::NO_AUTH) {
            return self.reject(Some(spec), "NOAUTH Authentication required.");
        }
        self.handle.info.borrow_mut().last_cmd = spec.name;
        // ACL: a changed user applies from its next command; a user allowed everything
        // (the default user as shipped) is not checked at all.
        if self.acl_epoch != self.core.global.acl.epoch() && !crate::acl::refresh(self) {
            return;
        }
        if !self.acl_open {
            if let Err(e) = crate::acl::check(self, spec, &args) {
                return self.reject(Some(spec), &e);
            }
        }
        // The master client of a cluster replica is never redirected (Redis's CLIENT_MASTER).
        if crate::cluster::enabled() && !self.is_master {
            // Redis's getNodeByQuery: MOVED, ASK, TRYAGAIN, CLUSTERDOWN, CROSSSLOT.
            let asking = self.asking;
            // On a slot being migrated or imported, whether the keys are here decides
            // (ASK, TRYAGAIN), so the check and the command run under the keys' locks:
            // MIGRATE cannot move a key in between (in Redis nothing runs between them).
            let lock = self.tx.is_none()
                && self.multi.is_none()
                && !self.in_script
                && (matches!(
                    spec.route,
                    Route::Single | Route::PerKey(_) | Route::Coordinated
                ) || spec.cmd == Cmd::Migrate)
                && crate::cluster::slot_is_open(spec, &args);
            if lock {
                self.flush().await;
                let tx = self.begin_tx(spec, &args);
                self.lock_tx(tx).await;
                self.cluster_locked = true;
            }
            if let Some(e) =
                crate::cluster::check(&self.core, spec, &args, asking, self.readonly).await
            {
                return self.reject(Some(spec), &e);
            }
        }
        if self.proto == Protocol::Resp2
            && self.subs.as_ref().is_some_and(|s| s.total() > 0)
            && !crate::pubsub::allowed_when_subscribed(spec.cmd)
        {
            return self.reject(
                Some(spec),
                &format!(
                    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                    spec.name
                ),
            );
        }
        // A busy script on this core (scripting.rs, "Busy scripts"): BUSY but for the
        // allow-busy commands; the script's own calls go on.
        if !self.in_script {
            if let Some(e) = crate::scripting::busy_reply(spec, &args) {
                return self.reject(Some(spec), e);
            }
        }
        // A replica's gates (READONLY, MASTERDOWN, LOADING): one load on a primary.
        if self
            .core
            .global
            .repl
            .gate
            .load(std::sync::atomic::Ordering::Relaxed)
            != 0
            && !self.is_master
        {
            if let Some(e) = crate::repl::replica::refusal(&self.core, spec) {
                return self.reject(Some(spec), e);
            }
            // EXEC is judged by what it would run: a transaction queued before a load
            // began must not run on the half-loaded data.
            if spec.cmd == Cmd::Exec {
                let queued = self.multi.as_ref().map(|m| m.specs());
                if let Some(e) =
                    queued.and_then(|q| crate::repl::replica::exec_refusal(&self.core, q))
                {
                    return self.reject(Some(spec), e);
                }
            }
        }
        if crate::pause::maybe_paused() {
            let multi = &self.multi;
            let queued = || multi.as_ref().is_some_and(|m| m.holds_writes());
            if crate::pause::holds(spec, queued) {
                // Replies already made go out before the client waits.
                self.flush().await;
                let multi = &self.multi;
                crate::pause::wait(spec, || multi.as_ref().is_some_and(|m| m.holds_writes())).await;
                // A cluster master pauses writes while its replica takes over: a write held
                // meanwhile is checked again, so it is redirected to the new master instead
                // of running on what is now a replica (Redis re-processes paused clients).
                if crate::cluster::enabled() && !self.is_master {
                    let (asking, readonly) = (self.asking, self.readonly);
                    if let Some(e) =
                        crate::cluster::check(&self.core, spec, &args, asking, readonly).await
                    {
                        return self.reject(Some(spec), &e);
                    }
                    if let Some(e) = crate::repl::replica::refusal(&self.core, spec) {
                        return self.reject(Some(spec), e);
                    }
                }
            }
        }
        if self.multi.is_none() || crate::multi::runs_inside_multi(spec.cmd) {
            // It runs now (queued commands are fed when EXEC runs them).
            self.monitored = Some(spec);
        }
        if self.multi.is_some() && !crate::multi::runs_inside_multi(spec.cmd) {
            if spec.flags.has(Flags::NO_MULTI) {
                return self.reject(Some(spec), "ERR Command not allowed inside a transaction");
            }
            let queued = crate::multi::queue(self, spec, args);
            return self.emit(queued);
        }
        if matches!(
            spec.cmd,
            Cmd::Multi | Cmd::Exec | Cmd::Discard | Cmd::Watch | Cmd::Unwatch | Cmd::Reset
        ) {
            if spec.cmd == Cmd::Reset {
                // RESET also ends a transaction and forgets watched keys.
                self.multi = None;
                self.handle.info.borrow_mut().multi = -1;
                crate::multi::unwatch(self).await;
            } else {
                if spec.cmd != Cmd::Multi {
                    self.flush().await;
                }
                let mut buf = Vec::new();
                let t0 = crate::latency::Stopwatch::start();
                crate::multi::run(self, spec, args, peer, &mut buf).await;
                let ns = t0.ns();
                self.core
                    .observe(spec, ns, &buf, &args, Caller::Client(&self.handle));
                return self.emit(&buf);
            }
        }
        if matches!(
            spec.cmd,
            Cmd::Eval
                | Cmd::EvalSha
                | Cmd::EvalRo
                | Cmd::EvalShaRo
                | Cmd::ScriptLoad
                | Cmd::ScriptExists
                | Cmd::ScriptFlush
                | Cmd::ScriptKill
                | Cmd::ScriptDebug
                | Cmd::ScriptHelp
                | Cmd::FCall
                | Cmd::FCallRo
                | Cmd::FunctionLoad
                | Cmd::FunctionDelete
                | Cmd::FunctionFlush
                | Cmd::FunctionList
                | Cmd::FunctionDump
                | Cmd::FunctionRestore
                | Cmd::FunctionStats
                | Cmd::FunctionKill
                | Cmd::FunctionHelp
        ) {
            self.flush().await;
            // A script is shown before the commands it calls (as Redis feeds EVAL).
            if matches!(
                spec.cmd,
                Cmd::Eval | Cmd::EvalSha | Cmd::EvalRo | Cmd::EvalShaRo | Cmd::FCall | Cmd::FCallRo
            ) && self
                .core
                .global
                .monitors_total
                .load(std::sync::atomic::Ordering::Acquire)
                > 0
            {
                let from = (!self.in_script).then_some(self.handle.addr);
                crate::pubsub::feed_monitors(&self.core, self.db, from, &args).await;
            }
            let mut buf = Vec::new();
            let t0 = crate::latency::Stopwatch::start();
            self.repl_depth += 1;
            Box::pin(crate::scripting::run(self, spec, args, peer, &mut buf)).await;
            self.repl_depth -= 1;
            if self.repl_depth == 0 && self.tx.is_none() {
                // A script that took no locks: its effects are one unit all the same.
                self.flush().await;
                self.commit_repl();
            }
            if matches!(
                spec.cmd,
                Cmd::FunctionLoad | Cmd::FunctionDelete | Cmd::FunctionFlush | Cmd::FunctionRestore
            ) && buf.first() != Some(&b'-')
            {
                // Libraries are the whole server's: replicas load them too, as Redis sends them.
                let parts: Vec<&[u8]> = args.iter().collect();
                crate::repl::propagate_here(&self.core, None, self.db, &parts);
            }
            let ns = t0.ns();
            self.core
                .observe(spec, ns, &buf, &args, Caller::Client(&self.handle));
            return self.emit(&buf);
        }
        if crate::pubsub::Kind::of_subscription(spec.cmd).is_some()
            || matches!(
                spec.cmd,
                Cmd::PubsubChannels
                    | Cmd::PubsubNumSub
                    | Cmd::PubsubNumPat
                    | Cmd::PubsubShardChannels
                    | Cmd::PubsubShardNumSub
                    | Cmd::PubsubHelp
                    | Cmd::Monitor
            )
        {
            let mut buf = std::mem::take(&mut self.scratch_out);
            buf.clear();
            let t0 = crate::latency::Stopwatch::start();
            match spec.cmd {
                Cmd::Subscribe
                | Cmd::Unsubscribe
                | Cmd::PSubscribe
                | Cmd::PUnsubscribe
                | Cmd::SSubscribe
                | Cmd::SUnsubscribe => crate::pubsub::subscription(self, spec, args, &mut buf),
                Cmd::Monitor => crate::pubsub::monitor(self, &mut buf),
                _ => {
                    self.flush().await;
                    crate::pubsub::pubsub(self, spec, args, &mut buf).await
                }
            }
            return self.emit_observed(spec, t0, buf, &args);
        }
        if spec.flags.has(Flags::WRITE) && self.core.global.repl.refuses_writes() {
            return self.reject(Some(spec), crate::repl::NOREPLICAS);
        }
        if matches!(spec.cmd, Cmd::Psync | Cmd::Sync) {
            // The connection becomes a replica's link until it closes: the socket is the
            // connection's to hand over (`conn.rs`), not the dispatcher's.
            return peer.hand_over(self, args).await;
        }
        if matches!(
            spec.route,
            Route::Single | Route::PerKey(_) | Route::Coordinated
        ) && !self.core.locks.borrow().is_idle()
        {
            self.wait_local(spec, &args).await;
        }
        match spec.route {
            Route::Single => {
                let n = self.core.nshards();
                let mut keys = spec.key_indices(args.len());
                let target = keys.next().map_or(self.core.id, |i| shard_of(&args[i], n));
                if keys.all(|i| shard_of(&args[i], n) == target) {
                    self.execute_on(target, spec, args);
                } else {
                    self.flush().await;
                    self.reject(
                        Some(spec),
                        "CROSSSLOT Keys in request don't hash to the same slot",
                    );
                }
            }
            Route::PerKey(how) => {
                if spec.step == 2 && args.len().is_multiple_of(2) {
                    return self.reject(Some(spec), &spec.arity_error());
                }
                // Each key's shard, once: `per_key` splits by them.
                let n = self.core.nshards();
                let p = &mut self.p;
                p.key_shards.clear();
                for i in spec.key_indices(args.len()) {
                    p.key_shards.push(shard_of(&args[i], n) as u32);
                }
                let first = p.key_shards[0];
                if self.tx.is_none() && p.key_shards.iter().any(|&s| s != first) {
                    // Keys on several shards (MSET, MGET, DEL, …): alone, under their
                    // locks, as Redis runs them.
                    self.flush().await;
                    let tx = self.begin_tx(spec, &args);
                    self.lock_tx(tx).await;
                    self.per_key(spec, how, args);
                    self.end_tx().await;
                } else {
                    self.per_key(spec, how, args);
                }
            }
            Route::AllShards(how) => {
                self.flush().await;
                self.all_shards(spec, how, args).await;
            }
            Route::Publish => self.publish(spec, args),
            Route::Coordinated => {
                let n = self.core.nshards();
                // GEORADIUS's STORE key is found in its options (`movablekeys`); SORT's
                // STORE and patterns always ask the coordinator, which runs it in one hop
                // when it can.
                let mut keys = spec
                    .key_indices(args.len())
                    .chain(spec.store_key_index(&args));
                let first = match matches!(spec.cmd, Cmd::Sort | Cmd::SortRo) {
                    true => None,
                    false => keys.next().map(|i| shard_of(&args[i], n)),
                };
                match first {
                    Some(t) if keys.all(|i| shard_of(&args[i], n) == t) => {
                        self.execute_on(t, spec, args)
                    }
                    _ => {
                        self.flush().await;
                        let mut buf = std::mem::take(&mut self.scratch_out);
                        buf.clear();
                        // Across shards: alone, under its keys' locks (SCAN and RANDOMKEY
                        // sample, and promise nothing more).
                        let own = (self.tx.is_none()
                            && !matches!(spec.cmd, Cmd::Scan | Cmd::RandomKey))
                        .then(|| self.begin_tx(spec, &args));
                        if let Some(tx) = own {
                            self.lock_tx(tx).await;
                        }
                        self.repl_applied.set(false);
                        crate::coordinated::run(self, spec, args, &mut buf).await;
                        if spec.flags.has(Flags::WRITE) && !self.repl_applied.get() {
                            crate::repl::propagate_coordinated(self, &args, &buf);
                        }
                        // A tracking client's read across shards is remembered on each key's
                        // shard while its locks still hold (no change can slip in between).
                        crate::tracking::remember_coordinated(self, spec, &args).await;
                        if own.is_some() {
                            self.end_tx().await;
                        }
                        self.out.extend_from_slice(&buf);
                        self.scratch_out = buf;
                    }
                }
            }
            Route::Blocking => {
                self.flush().await;
                // BLMOVE and BRPOPLPUSH may grow memory (`denyoom`): refused over maxmemory
                // when nothing can be evicted, as any such command.
                let admitted = {
                    let mut shard = self.core.shard.borrow_mut();
                    self.core.admit(spec, &mut shard, self.now_ms)
                };
                if let Err(e) = admitted {
                    return self.reject(Some(spec), e);
                }
                let mut buf = std::mem::take(&mut self.scratch_out);
                buf.clear();
                let t0 = crate::latency::Stopwatch::start();
                let mut w = ReplyWriter::new(&mut buf, self.proto);
                let parked = crate::blocking::run(self, spec, args, peer, &mut w).await;
                // The time parked is not the command's cost (Redis leaves it out too).
                let ns = t0.ns_less(parked);
                self.core.stats.borrow_mut().record(spec, ns, &buf);
                self.out.extend_from_slice(&buf);
                self.scratch_out = buf;
            }
            Route::Connection => {
                if !is_pure(spec.cmd) {
                    self.flush().await;
                }
                let mut buf = std::mem::take(&mut self.scratch_out);
                buf.clear();
                let t0 = crate::latency::Stopwatch::start();
                crate::commands::run(self, spec, args, &mut buf).await;
                let ns = t0.ns();
                self.core
                    .observe(spec, ns, &buf, &args, Caller::Client(&self.handle));
                self.emit(&buf);
                self.scratch_out = buf;
            }
        }
    }

    /// Runs `args` on this core's shard now, or queues it for `target`'s batch.
    fn execute_on(&mut self, target: usize, spec: &'static CommandSpec, args: Args<'_>) {
        if target == self.core.id {
            let capturing = self.repl_capturing();
            let ctx = ExecCtx {
                db: self.db,
                now_ms: self.now_ms,
            };
            let buf = if self.p.active {
                &mut self.p.local
            } else {
                &mut self.out
            };
            let start = buf.len();
            let capture = capturing.then_some(&self.repl_ops);
            let w = &mut ReplyWriter::new(buf, self.proto);
            // In a transaction or a script, what the command and the blocked clients it
            // serves propagate is part of the transaction's unit.
            apply_here(
                &self.core,
                &self.handle,
                &ctx,
                self.in_script,
                capture,
                spec,
                args,
                w,
            );
            if self.p.active {
                self.p.slots.push(Slot::Local(start, buf.len()));
            }
        } else {
            let idx = self.p.batches[target].push(spec, self.db, self.proto, true, args.iter());
            self.mark_tracked(target);
            self.p.slots.push(Slot::Remote(target as u32, idx as u32));
            self.p.active = true;
            self.p.queued += 1;
        }
    }

    /// A script's call (`spec` resolved, arity checked, allowed from scripts) run now on
    /// this core's shard, its reply in `proto` appended to `out`, when the full dispatch
    /// would do just that: nothing queued or pending for this connection, no CLIENT REPLY,
    /// tracking, MONITOR, ACL rules, cluster mode, subscriptions, pause, MULTI or lock
    /// table in play, and a plain keyed command whose keys are all on this core. Returns
    /// false, having done nothing, otherwise (the caller then goes through
    /// [`Client::run_captured`]). Allocates nothing; must not yield (it does not).
    pub(crate) fn run_inline(
        &mut self,
        spec: &'static CommandSpec,
        args: Args<'_>,
        proto: Protocol,
        out: &mut Vec<u8>,
    ) -> bool {
        let n = self.core.nshards();
        let me = self.core.id;
        let simple = match spec.route {
            Route::Single => true,
            Route::PerKey(_) => !(spec.step == 2 && args.len().is_multiple_of(2)),
            _ => false,
        };
        if !simple
            || spec.cmd == Cmd::Debug
            || self.p.active
            || !self.authed
            || !self.acl_open
            || self.multi.is_some()
            || !self.plain()
            || self.handle.outbox.has_pending()
            || self.acl_epoch != self.core.global.acl.epoch()
            || self.subs.as_ref().is_some_and(|s| s.total() > 0)
            || crate::cluster::enabled()
            || crate::pause::maybe_paused()
            || !self.core.locks.borrow().is_idle()
            || spec
                .key_indices(args.len())
                .any(|i| shard_of(&args[i], n) != me)
        {
            return false;
        }
        self.handle.info.borrow_mut().last_cmd = spec.name;
        let ctx = ExecCtx {
            db: self.db,
            now_ms: self.now_ms,
        };
        let w = &mut ReplyWriter::new(out, proto);
        apply_here(
            &self.core,
            &self.handle,
            &ctx,
            true,
            self.repl_capture(),
            spec,
            args,
            w,
        );
        true
    }

    /// Marks the command just queued for `target` as read for this connection's tracking,
    /// when it tracks (CLIENT CACHING decides per command, so the batch cannot).
    fn mark_tracked(&mut self, target: usize) {
        if let Some(c) = crate::tracking::caller(&self.handle, self.core.id) {
            if let Some(cmd) = self.p.batches[target].cmds.last_mut() {
                cmd.track = c.remember;
            }
        }
    }

    /// MGET/MSET/DEL/EXISTS/TOUCH/UNLINK: one sub-command per shard, merged in order.
    /// `p.key_shards` holds each key's shard (filled by the caller, arity checked).
    fn per_key(&mut self, spec: &'static CommandSpec, how: Merge, args: Args<'_>) {
        let step = spec.step.max(1) as usize;
        let caller = crate::tracking::caller(&self.handle, self.core.id);
        let capturing = self.repl_capturing();
        let p = &mut self.p;
        let first = p.key_shards[0];
        if p.key_shards.iter().all(|&s| s == first) {
            return self.execute_on(first as usize, spec, args);
        }
        // Split: for each shard in first-appearance order, the command name and its keys
        // (with their values for MSET).
        let parts_start = p.parts.len() as u32;
        let order_start = p.order.len() as u32;
        let mut seen = std::mem::take(&mut p.seen);
        let mut counts = std::mem::take(&mut p.counts);
        seen.clear();
        counts.clear();
        for &s in &p.key_shards {
            let part = match seen.iter().position(|&x| x == s) {
                Some(i) => i,
                None => {
                    seen.push(s);
                    counts.push(0);
                    seen.len() - 1
                }
            };
            p.order.push((part as u32, counts[part]));
            counts[part] += 1;
        }
        let core_id = self.core.id;
        for &s in &seen {
            let key_positions = spec
                .key_indices(args.len())
                .zip(p.key_shards.iter())
                .filter(|(_, &ks)| ks == s)
                .map(|(i, _)| i);
            p.scratch.buf.clear();
            p.scratch.spans.clear();
            p.scratch.push(&args[0]);
            for i in key_positions {
                for j in 0..step {
                    p.scratch.push(&args[i + j]);
                }
            }
            if s as usize == core_id {
                let ctx = ExecCtx {
                    db: self.db,
                    now_ms: self.now_ms,
                };
                let start = p.local.len();
                let mut shard = self.core.shard.borrow_mut();
                shard.caller.set(caller);
                shard.master_view = self.is_master;
                let mut ops = capturing.then(|| self.repl_ops.borrow_mut());
                crate::repl::held(&mut shard, ops.as_deref_mut(), |sh| {
                    sh.apply(
                        &ctx,
                        spec,
                        p.scratch.args(),
                        &mut ReplyWriter::new(&mut p.local, self.proto),
                    )
                });
                drop(ops);
                shard.caller.set(None);
                shard.master_view = false;
                drop(shard);
                p.parts.push(Part::Local(start, p.local.len()));
            } else {
                let sc = p.scratch.args();
                let idx = p.batches[s as usize].push(spec, self.db, self.proto, false, sc.iter());
                if let Some(c) = caller {
                    p.batches[s as usize].cmds[idx].track = c.remember;
                }
                p.parts.push(Part::Remote(s, idx as u32));
            }
        }
        let t = (parts_start, p.parts.len() as u32);
        p.slots.push(Slot::Merge {
            how,
            parts: t,
            order: (order_start, p.order.len() as u32),
        });
        p.active = true;
        p.queued += 1;
        p.seen = seen;
        p.counts = counts;
        self.core.stats.borrow_mut().cmd[spec.cmd as usize].calls += 1;
    }

    /// PUBLISH and SPUBLISH: delivered on this core now, and on every other core with
    /// subscribers through this connection's batch to it; the receiver counts are summed.
    fn publish(&mut self, spec: &'static CommandSpec, args: Args<'_>) {
        let shard = spec.cmd == Cmd::SPublish;
        if !shard
            && self
                .core
                .global
                .repl
                .active
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            // Replicas deliver PUBLISH to their own subscribers (Redis propagates it).
            let parts: Vec<&[u8]> = args.iter().collect();
            let mut ops = self.repl_capture().map(|o| o.borrow_mut());
            crate::repl::propagate_here(&self.core, ops.as_deref_mut(), self.db, &parts);
        }
        let t0 = crate::latency::Stopwatch::start();
        let here = crate::pubsub::deliver(&self.core, shard, &args[1], &args[2]);
        // A RESP3 subscriber publishing to itself sees the message before the count.
        self.emit_pushes();
        let p = &mut self.p;
        let parts_start = p.parts.len() as u32;
        for c in crate::pubsub::remote_cores(&self.core) {
            let idx = p.batches[c].push(spec, self.db, self.proto, false, args.iter());
            p.parts.push(Part::Remote(c as u32, idx as u32));
        }
        if p.parts.len() as u32 == parts_start {
            let mut buf = std::mem::take(&mut self.scratch_out);
            buf.clear();
            ReplyWriter::new(&mut buf, self.proto).int(here as i64);
            return self.emit_observed(spec, t0, buf, &args);
        }
        let start = p.local.len();
        ReplyWriter::new(&mut p.local, self.proto).int(here as i64);
        p.parts.push(Part::Local(start, p.local.len()));
        let order = p.order.len() as u32;
        p.slots.push(Slot::Merge {
            how: Merge::Sum,
            parts: (parts_start, p.parts.len() as u32),
            order: (order, order),
        });
        p.active = true;
        p.queued += 1;
        self.core.stats.borrow_mut().cmd[spec.cmd as usize].calls += 1;
    }

    /// KEYS, DBSIZE, FLUSHDB, FLUSHALL: run on every shard and merge, alone (every shard
    /// locked whole, unless a transaction of this connection already holds them).
    async fn all_shards(&mut self, spec: &'static CommandSpec, how: Merge, args: Args<'_>) {
        let own = self.tx.is_none().then(|| self.begin_tx(spec, &args));
        if let Some(tx) = own {
            self.lock_tx(tx).await;
        }
        self.all_shards_locked(spec, how, args).await;
        if own.is_some() {
            self.end_tx().await;
        }
    }

    async fn all_shards_locked(&mut self, spec: &'static CommandSpec, how: Merge, args: Args<'_>) {
        let mut owned = OwnedArgs::default();
        args.iter().for_each(|a| owned.push(a));
        let (db, proto, me) = (self.db, self.proto, self.core.id);
        let results = crate::core::call_all(&self.core, move |c| {
            // Held: the ops come back here (one FLUSHALL for all shards, not one each).
            let was = std::mem::replace(&mut c.shard.borrow_mut().feed.hold, true);
            let r = c.execute_owned(spec, db, proto, &owned, me);
            let mut sh = c.shard.borrow_mut();
            sh.feed.hold = was;
            (r, std::mem::take(&mut sh.feed.ops))
        })
        .await;
        let mut replies = Vec::with_capacity(results.len());
        let written = spec.flags.has(Flags::WRITE);
        for (r, mut ops) in results {
            if !written {
                self.repl_ops.borrow_mut().append(&mut ops);
            }
            replies.push(r);
        }
        if written && replies.iter().all(|r| r.first() != Some(&b'-')) {
            let parts: Vec<&[u8]> = args.iter().collect();
            crate::repl::propagate_here(
                &self.core,
                Some(&mut self.repl_ops.borrow_mut()),
                self.db,
                &parts,
            );
        }
        let parts: Vec<&[u8]> = replies.iter().map(|r| r.as_slice()).collect();
        router::merge(
            &mut ReplyWriter::new(&mut self.out, self.proto),
            how,
            &parts,
            &[],
        );
    }

    /// Before a command runs on this core: waits while a key of it that lives here is
    /// locked by another transaction (or wanted by earlier waiting work), sending what is
    /// pending first.
    async fn wait_local(&mut self, spec: &'static CommandSpec, args: &Args<'_>) {
        use crate::txlock::{key_args, lock_key, KeySet};
        let (n, me) = (self.core.nshards(), self.core.id);
        let Some(idx) = key_args(spec, args) else {
            return;
        };
        let keys: Vec<Box<[u8]>> = idx
            .into_iter()
            .filter(|&i| shard_of(&args[i], n) == me)
            .map(|i| lock_key(self.db, &args[i]))
            .collect();
        if keys.is_empty() {
            return;
        }
        let keys = KeySet::Keys(keys);
        let mut woken = false;
        loop {
            let wait = {
                let mut locks = self.core.locks.borrow_mut();
                // Once woken in its turn, only locks held by others stop it.
                let free = match woken {
                    true => !locks.held_by_others(&keys, self.tx),
                    false => locks.admits(&keys, self.tx),
                };
                if locks.is_idle() || free {
                    return;
                }
                locks.notify(self.tx, keys.clone())
            };
            self.flush().await;
            let _ = wait.await;
            woken = true;
        }
    }

    /// A transaction for one command over several shards: its id, with the locks it needs
    /// planned (taken by [`Client::lock_tx`]).
    fn begin_tx(&mut self, spec: &'static CommandSpec, args: &Args<'_>) -> crate::txlock::TxId {
        let mut plan = crate::txlock::Plan::default();
        plan.add(spec, args, self.db, self.core.nshards());
        self.begin_tx_with(plan)
    }

    pub fn begin_tx_with(&mut self, plan: crate::txlock::Plan) -> crate::txlock::TxId {
        let tx = crate::txlock::new_tx();
        self.tx_plan = Some((tx, plan));
        tx
    }

    /// Takes the planned transaction's locks; its commands pass them from now on.
    pub async fn lock_tx(&mut self, tx: crate::txlock::TxId) {
        let plan = match self.tx_plan.take() {
            Some((t, plan)) if t == tx => plan,
            _ => return,
        };
        let shards = plan.shards();
        if !shards.is_empty() {
            crate::txlock::lock(&self.core, tx, plan).await;
        }
        self.tx = Some(tx);
        self.tx_shards = shards;
    }

    /// Records that the running transaction holds locks on `shard` (a script's lazily
    /// taken locks), so that [`Client::end_tx`] releases them.
    pub fn tx_shard(&mut self, shard: usize) {
        if !self.tx_shards.contains(&shard) {
            self.tx_shards.push(shard);
        }
    }

    /// Runs one command for a script (`redis.call`) through the normal dispatch, in
    /// protocol `proto`, and returns its reply.
    pub async fn run_captured(
        &mut self,
        args: Args<'_>,
        peer: &mut dyn Peer,
        proto: Protocol,
    ) -> Vec<u8> {
        self.flush().await;
        let saved = std::mem::take(&mut self.out);
        let caller_proto = std::mem::replace(&mut self.proto, proto);
        let outer = std::mem::replace(&mut self.in_script, true);
        Box::pin(self.dispatch(args, peer)).await;
        // Sent while still in the script (its batches carry its OOM exemption).
        self.flush().await;
        self.in_script = outer;
        self.proto = caller_proto;
        std::mem::replace(&mut self.out, saved)
    }

    /// Pushes what the finished transaction (or script) propagated as one unit.
    pub fn commit_repl(&mut self) {
        let ops = std::mem::take(&mut *self.repl_ops.borrow_mut());
        if !ops.is_empty() {
            crate::repl::Capture { ops }.commit(&self.core);
        }
    }

    /// Ends the transaction: its commands' replies gathered, then its locks released (on
    /// a shard that runs a last batch of it, by that batch).
    pub async fn end_tx(&mut self) {
        // `feeding`, not `active`: while the first replica's stream starts, shards record
        // before `active` is set, and a transaction that captured ops then must number them
        // now, under its locks. (Left for its connection's next transaction, they went out
        // in that one's unit, after the new replica's snapshot had them already: applied
        // twice there.)
        if self.tx.is_some()
            && self
                .core
                .global
                .repl
                .feeding
                .load(std::sync::atomic::Ordering::Acquire)
        {
            // The transaction's replies gathered and its unit numbered while every lock
            // still holds ([`crate::repl`]); the locks are released after.
            self.flush().await;
            self.commit_repl();
        }
        self.tx_ending = true;
        self.tx_released.clear();
        self.flush().await;
        self.tx_ending = false;
        if let Some(tx) = self.tx.take() {
            let mut shards = std::mem::take(&mut self.tx_shards);
            shards.retain(|s| !self.tx_released.contains(s));
            crate::txlock::unlock(&self.core, tx, shards).await;
        }
    }

    /// Sends every pending batch, waits for the replies, and writes all replies of the read
    /// so far in order.
    pub async fn flush(&mut self) {
        if !self.p.active {
            return;
        }
        let n = self.core.nshards();
        let mut waits = std::mem::take(&mut self.p.waits);
        waits.clear();
        waits.resize_with(n, || None);
        for (s, wait) in waits.iter_mut().enumerate() {
            if self.p.batches[s].is_empty() {
                continue;
            }
            let mut batch = std::mem::take(&mut self.p.batches[s]);
            let mut reply = std::mem::take(&mut self.p.replies[s]);
            self.core.stats.borrow_mut().record_batch(batch.cmds.len());
            batch.client_addr = Some(self.handle.addr);
            batch.client_name.clear();
            batch
                .client_name
                .extend_from_slice(&self.handle.info.borrow().name);
            batch.tx = self.tx;
            batch.hold_repl = self.repl_capture().is_some();
            batch.master_view = self.is_master;
            batch.oom_exempt = self.in_script && crate::scripting::oom_exempt();
            batch.caller = crate::tracking::caller(&self.handle, self.core.id);
            batch.release = self.tx.is_some() && self.tx_ending;
            if batch.release {
                self.tx_released.push(s);
            }
            let (tx, rx) = oneshot::channel();
            let job: Job = Box::new(move |c: &Core| {
                reply.clear();
                crate::txlock::run_batch(c, batch, reply, 0, tx);
            });
            if self.core.mailbox.send(s, job).await.is_err() {
                panic!("core {s} is gone: a core exits only when the whole server does");
            }
            *wait = Some(rx);
        }
        for (s, wait) in waits.iter_mut().enumerate() {
            if let Some(rx) = wait.take() {
                let (batch, reply) = rx
                    .await
                    .unwrap_or_else(|_| panic!("core {s} dropped a batch without running it"));
                self.p.batches[s] = batch;
                self.p.batches[s].clear();
                let mut reply = reply;
                if !reply.repl.is_empty() {
                    self.repl_ops.borrow_mut().append(&mut reply.repl);
                }
                self.p.replies[s] = reply;
            }
        }
        self.p.waits = waits;
        let p = &mut self.p;
        let mut w = ReplyWriter::new(&mut self.out, self.proto);
        let mut parts: Vec<&[u8]> = Vec::new();
        for slot in &p.slots {
            match *slot {
                Slot::Local(a, b) => w.raw(&p.local[a..b]),
                Slot::Remote(s, i) => w.raw(p.replies[s as usize].get(i as usize)),
                Slot::Merge {
                    how,
                    parts: (pa, pb),
                    order: (oa, ob),
                } => {
                    parts.clear();
                    for part in &p.parts[pa as usize..pb as usize] {
                        parts.push(match *part {
                            Part::Local(a, b) => &p.local[a..b],
                            Part::Remote(s, i) => p.replies[s as usize].get(i as usize),
                        });
                    }
                    w.proto = self.proto;
                    router::merge(&mut w, how, &parts, &p.order[oa as usize..ob as usize]);
                }
            }
        }
        p.slots.clear();
        p.parts.clear();
        p.order.clear();
        p.local.clear();
        p.active = false;
        p.queued = 0;
        // Buffers grown by one huge batch are released rather than kept per connection.
        if p.local.capacity() > OUT_KEEP {
            p.local = Vec::new();
        }
        for (b, r) in p.batches.iter_mut().zip(p.replies.iter_mut()) {
            if b.buf.capacity() > OUT_KEEP {
                *b = Batch::default();
            }
            if r.buf.capacity() > OUT_KEEP {
                *r = BatchReply::default();
            }
        }
    }
}

/// Connection commands that read or change only this connection, so they need not wait for
/// batches in flight.
fn is_pure(cmd: Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Ping
            | Cmd::Echo
            | Cmd::Select
            | Cmd::Time
            | Cmd::ClientId
            | Cmd::ClientGetName
            | Cmd::ClientSetName
            | Cmd::ClientSetInfo
            | Cmd::ClientInfo
            | Cmd::ClientNoEvict
            | Cmd::ClientNoTouch
            | Cmd::CommandCount
    )
}

/// One command on this core's shard (admitted against `maxmemory` first), then the blocked
/// clients it made ready served, then its statistics. `in_script`: a script's call, which
/// may pass `maxmemory` when the script is exempt (`scripting::oom_exempt`).
/// `capture`: where what the command propagates goes when it is part of a transaction's or
/// a script's unit (`None`: the command is a unit of its own).
#[allow(clippy::too_many_arguments)]
fn apply_here(
    core: &Core,
    handle: &ClientHandle,
    ctx: &ExecCtx,
    in_script: bool,
    capture: Option<&RefCell<Vec<percore_shard::repl::Op>>>,
    spec: &'static CommandSpec,
    args: Args<'_>,
    w: &mut ReplyWriter,
) {
    let caller = crate::tracking::caller(handle, core.id);
    let start = w.buf.len();
    let t0 = crate::latency::Stopwatch::start();
    let mut shard = core.shard.borrow_mut();
    let master = handle.info.borrow().master;
    // In cluster mode the slot may have changed hands since the client's core checked it
    // (a transaction's or a script's commands are not looked at one by one: see
    // `cluster::recheck`).
    if crate::cluster::enabled() && capture.is_none() && !in_script {
        if let Some(e) = crate::cluster::recheck(
            std::iter::once((spec, args)),
            false,
            &mut shard,
            ctx.now_ms,
            master,
        ) {
            drop(shard);
            w.error(&e);
            core.stats
                .borrow_mut()
                .record_rejected(Some(spec), &w.buf[start..]);
            return;
        }
    }
    shard.caller.set(caller);
    shard.master_view = master;
    match core.admit(spec, &mut shard, ctx.now_ms) {
        // A script's call over maxmemory may be let through (`allow-oom`, or it wrote
        // already: scripting::oom_exempt).
        Err(e) if !(in_script && crate::scripting::oom_exempt()) => w.error(e),
        _ => match capture {
            None => shard.apply(ctx, spec, args, w),
            Some(ops) => {
                let mut ops = ops.borrow_mut();
                crate::repl::held(&mut shard, Some(&mut *ops), |sh| {
                    sh.apply(ctx, spec, args, w)
                })
            }
        },
    }
    shard.caller.set(None);
    shard.master_view = false;
    drop(shard);
    crate::repl::serve_ready_held(core, capture);
    let ns = t0.ns();
    core.observe(spec, ns, &w.buf[start..], &args, Caller::Client(handle));
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every `.rs` file under `dir`, with its path relative to `src/`.
    fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("the crate's src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                sources(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under src/");
                let text = std::fs::read_to_string(&path).expect("a source file is UTF-8");
                // Comments may mention anything, and unit tests (at a file's end) quote
                // names; the code above them is what depends.
                let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
                let code: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect();
                out.push((rel.to_string_lossy().into_owned(), code.join("\n")));
            }
        }
    }

    /// Whether `code` names `word` as a whole identifier (path segment included).
    fn names(code: &str, word: &str) -> bool {
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        code.match_indices(word).any(|(i, _)| {
            let before = code[..i].chars().next_back();
            let after = code[i + word.len()..].chars().next();
            let open_end = !word.ends_with(ident);
            !before.is_some_and(ident) && (open_end || !after.is_some_and(ident))
        })
    }

    /// Files of the crate (relative to `src/`) that contain `needle` as an identifier.
    fn naming(files: &[(String, String)], needle: &str) -> Vec<String> {
        let mut hits: Vec<String> = files
            .iter()
            .filter(|(_, code)| names(code, needle))
            .map(|(path, _)| path.clone())
            .collect();
        hits.sort();
        hits
    }

    /// The layering of the module header: connection → dispatch → handlers → client.
    #[test]
    fn layering() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &root, &mut files);
        assert!(files.len() > 20, "the crate's modules are found");
        // Only the binary's root (which spawns connections) names the connection module.
        let conn_users: Vec<&str> = files
            .iter()
            .filter(|(_, code)| {
                names(code, "conn::")
                    || code.contains("mod conn;")
                    || code
                        .lines()
                        .any(|l| l.trim_start().starts_with("use ") && names(l, "conn"))
            })
            .map(|(path, _)| path.as_str())
            .collect();
        assert_eq!(
            conn_users,
            ["main.rs"],
            "modules naming the connection module"
        );
        // The socket stays in the connection: besides the runtime, only the replication
        // link (PSYNC's socket handed over; the replica's own link to its primary), the TLS
        // handshake on an accepted socket and the metrics endpoint's own listener name it.
        let allowed = [
            "conn.rs",
            "metrics.rs",
            "repl/primary.rs",
            "repl/replica.rs",
            "runtime.rs",
            "runtime/ring.rs",
            "tls.rs",
        ];
        for path in naming(&files, "Stream") {
            assert!(
                allowed.contains(&path.as_str()),
                "{path} names runtime::Stream: a command gets the socket only as a client::Peer"
            );
        }
        // The client is the bottom layer: it names neither the connection nor the dispatcher.
        let client = &files
            .iter()
            .find(|(f, _)| f == "client.rs")
            .expect("client.rs")
            .1;
        assert!(!names(client, "conn::") && !names(client, "dispatch::"));
        // Commands run again only through the dispatcher's entry points, from the
        // connections (conn.rs, the replica's master link), EXEC and scripts.
        let reentry = [
            (
                ".dispatch(",
                &["dispatch.rs", "multi.rs", "repl/replica.rs"][..],
            ),
            (".dispatch_command(", &["conn.rs", "dispatch.rs"][..]),
            (".dispatch_observed(", &["conn.rs", "dispatch.rs"][..]),
            (".run_captured(", &["scripting.rs"][..]),
            (".run_inline(", &["scripting.rs"][..]),
        ];
        for (call, callers) in reentry {
            // Method syntax, and the path form (`Client::dispatch(client, …)`).
            let path_form = format!("::{}", &call[1..]);
            for (path, code) in &files {
                if code.contains(call) || code.contains(&path_form) {
                    assert!(
                        callers.contains(&path.as_str()),
                        "{path} calls {call}: commands re-enter only as dispatch.rs's header says"
                    );
                }
            }
        }
    }
}
