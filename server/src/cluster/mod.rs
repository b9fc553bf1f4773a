//! Redis Cluster protocol (`cluster-enabled yes`): a node of a multi-node cluster.
//!
//! A node starts owning no slot, alone; `redis-cli --cluster create` (ADDSLOTS,
//! SET-CONFIG-EPOCH, MEET) makes a cluster of several, `--cluster reshard` moves slots with
//! SETSLOT IMPORTING/MIGRATING, GETKEYSINSLOT and MIGRATE, then SETSLOT NODE. The view of
//! the cluster (nodes, slot owners, epochs) is `state.rs`; the bus that keeps the nodes'
//! views consistent is `bus.rs` (its header says why it is percore's own protocol). This
//! file holds the CLUSTER commands, with Redis 7.0's replies and errors, and the check every
//! command with keys passes before it runs (Redis's getNodeByQuery): CROSSSLOT, MOVED, ASK,
//! TRYAGAIN, CLUSTERDOWN.
//!
//! The check's cost: commands without keys skip it; a command whose slot this node serves
//! plainly while the cluster is ok reads one atomic byte of `state::ROUTES` (no lock, no
//! allocation). Anything else (a redirection, a slot being migrated or imported) reads the
//! table under its mutex and, for an open slot, asks the keys' core whether they exist.
//! Outside cluster mode the check is not reached (`enabled()` is one atomic load).
//!
//! A slot's keys live on one core (`router::slot_shard`), so COUNTKEYSINSLOT and
//! GETKEYSINSLOT ask one core; they still walk that core's table (no per-slot index yet).
//!
//! Replicas (CLUSTER REPLICATE): the view says which master a node replicates, and core
//! 0's role task (`run`) makes replication follow it through the REPLICAOF machinery
//! (`repl::replica`): a new replica, a restarted one (its nodes file keeps the role), an
//! old master that lost its slots to its replica. A replica answers MOVED to its master,
//! except a READONLY client's reads of its master's slots (one more atomic route value,
//! `ROUTE_REPLICA`); the master client that applies the stream is never redirected.
//! Failover (CLUSTER FAILOVER [FORCE|TAKEOVER], and the automatic failover of a FAIL
//! master by election) is `failover.rs`.
//!
//! Not built: replica migration (a master left without replicas does not get one of
//! another master's), cluster-replica-no-failover and cluster-replica-validity-factor as
//! settings (Redis's defaults hold), hostnames, TLS on the bus, pub/sub across nodes.
//!
//! The node's identity and view are kept in `cluster-config-file` (in `dir`), in Redis's
//! nodes.conf format, locked while the node runs, rewritten in place when the view
//! changes, and loaded at start.

use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard, OnceLock};

use percore_proto::{Args, Cmd, CommandSpec, Flags, ReplyWriter};

use crate::config::Config;
use crate::core::Core;

mod bus;
mod failover;
mod state;

use state::{Handshake, Node, State, MASTER, MYSELF, NONE};

pub const SLOTS: u16 = 16384;
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
pub const DISABLED: &str = "ERR This instance has cluster support disabled";
const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
const BAD_SLOT: &str = "ERR Invalid or out of range slot";

static STATE: OnceLock<Mutex<State>> = OnceLock::new();
/// The locked nodes file, held open for the life of the process, and its path.
static FILE: OnceLock<(std::fs::File, std::path::PathBuf)> = OnceLock::new();

/// Whether cluster mode is on (one atomic load).
#[inline]
pub fn enabled() -> bool {
    STATE.get().is_some()
}

/// The cluster view, locked. Held briefly, never across an await.
pub(crate) fn state_lock() -> MutexGuard<'static, State> {
    STATE
        .get()
        .expect("state_lock is reached only in cluster mode")
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Turns cluster mode on at start when `cluster-enabled yes`: reads (or writes) the nodes
/// file and locks it, places keys by slot, and starts the bus.
pub fn init(cfg: &Config) -> Result<(), String> {
    if !cfg.cluster_enabled {
        return Ok(());
    }
    let port = if cfg.port != 0 {
        cfg.port
    } else {
        cfg.tls.port
    };
    let cport = match cfg.cluster_port {
        0 => port
            .checked_add(10000)
            .ok_or("the cluster bus port (port + 10000) is above 65535: set cluster-port")?,
        p => p,
    };
    let path = std::path::Path::new(&cfg.dir).join(&cfg.cluster_config_file);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open cluster-config-file {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; the result is checked.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "Sorry, the cluster configuration file {} is already used by a different Redis Cluster node. Please make sure that different nodes use different cluster configuration files.",
            cfg.cluster_config_file
        ));
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut st = if text.trim().is_empty() {
        let mut me = Node::new(crate::random_hex(40), String::new(), port, cport);
        me.flags = MYSELF | MASTER;
        State::new(me)
    } else {
        State::load(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    // This node's address comes from the configuration, not the file.
    let announced = (
        cfg.cluster_announce_ip.clone(),
        match cfg.cluster_announce_port {
            0 => port,
            p => p,
        },
        match cfg.cluster_announce_bus_port {
            0 => cport,
            p => p,
        },
    );
    {
        let me = st.me_mut();
        if !announced.0.is_empty() {
            me.ip = announced.0.clone();
        }
        me.port = announced.1;
        me.cport = announced.2;
        me.flags |= MYSELF;
        if !me.is_replica() {
            me.flags |= MASTER;
        }
    }
    st.announced_ip = !cfg.cluster_announce_ip.is_empty();
    st.node_timeout_ms = cfg.cluster_node_timeout;
    st.require_full_coverage = cfg.cluster_require_full_coverage;
    st.allow_reads_when_down = cfg.cluster_allow_reads_when_down;
    for n in st.nodes.iter_mut().flatten() {
        n.link = false;
    }
    st.update();
    let _ = FILE.set((file, path));
    save(&st, true)?;
    let _ = STATE.set(Mutex::new(st));
    crate::router::place_by_slot();
    bus::start(&cfg.bind, cport)
}

/// How often core 0's role task looks at the cluster view, and while a failover involves
/// this node (each of its steps waits for the task).
const ROLE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
const ROLE_INTERVAL_BUSY: std::time::Duration = std::time::Duration::from_millis(5);

/// Core 0's role task (cluster mode only): makes replication follow the cluster view.
/// Every `ROLE_INTERVAL` it publishes this node's replication offset into the view, starts
/// the replication link when the view says this node replicates a master (CLUSTER
/// REPLICATE, a restart, or a master that lost its slots to its replica), promotes this
/// node when it was elected (then takes its master's slots) or made a master, and pauses
/// writes while a manual failover asks. The bus threads cannot do these: they need a core.
pub async fn run(core: Rc<Core>) {
    let mut paused_until = 0;
    let mut busy = false;
    loop {
        crate::runtime::sleep(if busy {
            ROLE_INTERVAL_BUSY
        } else {
            ROLE_INTERVAL
        })
        .await;
        if core
            .global
            .shutdown
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let link = crate::repl::replica::link(&core.global);
        let now = crate::core::now_ms();
        let (takeover, follow, promote, pause_until, need_offset) = {
            let mut st = state_lock();
            st.my_offset = match &link {
                Some(l) => l.offset.max(0) as u64,
                None => crate::repl::stream_end(),
            };
            st.data_age_ms = match &link {
                Some(l) if l.state == crate::repl::replica::State::Connected => {
                    now.saturating_sub(l.last_io_ms)
                }
                Some(l) => now.saturating_sub(l.down_since_ms),
                None => 0,
            };
            let follow = st
                .my_master()
                .and_then(|m| st.node(m))
                .filter(|n| !n.ip.is_empty())
                .map(|n| (n.ip.clone(), n.port));
            let f = &st.failover;
            busy = f.busy();
            (
                f.takeover,
                follow,
                st.me().is_master() && link.is_some(),
                f.pause_until_ms,
                f.mf_replica.is_some() && f.paused_offset.is_none(),
            )
        };
        if let Some(epoch) = takeover {
            crate::repl::replica::unset_master(&core).await;
            let mut st = state_lock();
            st.take_over(epoch);
            st.dirty = false;
            if let Err(e) = save(&st, true) {
                crate::log::warn(&format!("cannot save the cluster nodes file: {e}"));
            }
            continue;
        }
        match follow {
            Some((ip, port)) if link.as_ref().is_none_or(|l| l.host != ip || l.port != port) => {
                crate::repl::replica::follow(&core, ip, port).await;
            }
            _ if promote => crate::repl::replica::unset_master(&core).await,
            _ => {}
        }
        if pause_until != paused_until {
            match pause_until {
                0 => crate::pause::end_failover_pause(&core).await,
                end => crate::pause::pause_failover_until(end),
            }
            paused_until = pause_until;
        }
        if need_offset && pause_until != 0 {
            // The offset to announce covers every write admitted before the pause: each
            // core has run what it admitted once it ran this barrier's job, and the stream
            // holds it once the merger passed what was numbered by then.
            crate::core::call_all(&core, |_| ()).await;
            let Some(offset) = crate::repl::settled_stream_end(&core).await else {
                continue;
            };
            let mut st = state_lock();
            if st.failover.mf_replica.is_some() && st.failover.pause_until_ms == pause_until {
                st.failover.paused_offset = Some(offset);
                bus::kick();
            }
        }
    }
}

/// Writes the nodes file in place, as Redis does (a new file would not carry the lock).
/// `fsync` as Redis does it: for epochs and SAVECONFIG, not for every slot moved (a
/// reshard changes the view several times a slot; the write alone survives a crash of the
/// process).
fn save(st: &State, fsync: bool) -> Result<(), String> {
    let Some((file, path)) = FILE.get() else {
        return Ok(());
    };
    let text = st.config_text();
    // Written over the old text, then cut to length: a truncation to zero first would make
    // the filesystem flush the file (ext4's auto_da_alloc), a stall of milliseconds a save.
    let mut f = file;
    std::io::Seek::rewind(&mut f)
        .and_then(|_| std::io::Write::write_all(&mut f, text.as_bytes()))
        .and_then(|_| f.set_len(text.len() as u64))
        .and_then(|_| if fsync { f.sync_all() } else { Ok(()) })
        .map_err(|e| format!("cannot write cluster-config-file {}: {e}", path.display()))
}

/// CRC16-XMODEM of `key`'s hash tag (or the whole key), modulo 16384: Redis Cluster's slot.
#[inline]
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(crate::router::hash_tag(key)) & (SLOTS - 1)
}

/// CRC16-XMODEM (polynomial 0x1021), a byte at a time from a table.
fn crc16(b: &[u8]) -> u16 {
    b.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[((crc >> 8) as u8 ^ byte) as usize]
    })
}

const CRC16_TABLE: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
};

/// The one slot of a command's keys: None without keys, Err when they differ.
pub fn slot_of(spec: &CommandSpec, args: &Args) -> Result<Option<u16>, ()> {
    if one_key(spec) {
        return Ok(args.get(spec.first_key as usize).map(key_slot));
    }
    let mut slot = None;
    for i in key_positions(spec, args) {
        let s = key_slot(&args[i]);
        if slot.is_some_and(|x| x != s) {
            return Err(());
        }
        slot = Some(s);
    }
    Ok(slot)
}

/// Where a command's keys are (none for a command without keys or with bad arguments,
/// which its handler then refuses).
fn key_positions(spec: &CommandSpec, args: &Args) -> Vec<usize> {
    if one_key(spec) {
        return (args.len() > spec.first_key as usize)
            .then_some(spec.first_key as usize)
            .into_iter()
            .collect();
    }
    if spec.first_key == 0 && spec.keynum_index().is_none() && !spec.is_container() {
        return Vec::new();
    }
    crate::commands::command_keys(args)
        .map(|(_, k)| k)
        .unwrap_or_default()
}

/// The command names exactly one key, at a fixed position (not one whose keys move with its
/// arguments: MIGRATE's KEYS, GEORADIUS's STORE, SORT's STORE).
fn one_key(spec: &CommandSpec) -> bool {
    spec.first_key > 0
        && spec.last_key == spec.first_key
        && spec.keynum_index().is_none()
        && !spec.flags.has(Flags::MOVABLEKEYS)
}

/// This node serves `slot` with no migration or import, and the cluster is ok: the command
/// runs here without a look at the table. Lock-free: two atomic loads.
#[inline]
pub fn plainly_mine(slot: u16) -> bool {
    use std::sync::atomic::Ordering::Acquire;
    state::ROUTES[slot as usize].load(Acquire) == state::ROUTE_MINE && state::STATE_OK.load(Acquire)
}

/// A script's call to a key: allowed only where this node serves the key's slot (Redis's
/// scriptVerifyClusterState).
pub fn serves_here(slot: u16) -> bool {
    plainly_mine(slot) || state_lock().slots[slot as usize] == 0
}

/// Whether this node is importing `slot` (a client that sent ASKING may use its keys).
pub fn importing(slot: u16) -> bool {
    state_lock().importing.contains_key(&slot)
}

/// The command's keys are in a slot this node is migrating or importing (where their
/// presence decides the redirection).
pub fn slot_is_open(spec: &CommandSpec, args: &Args) -> bool {
    match slot_of(spec, args) {
        Ok(Some(slot)) if !plainly_mine(slot) => {
            let st = state_lock();
            st.migrating.contains_key(&slot) || st.importing.contains_key(&slot)
        }
        _ => false,
    }
}

/// What the redirection check needs to know of a command (or of a whole transaction).
struct Query {
    slot: u16,
    keys: Vec<Vec<u8>>,
    write: bool,
    migrate: bool,
    asking: bool,
    readonly: bool,
}

/// This node is a replica whose master serves `slot`, and the cluster is ok: a READONLY
/// client's read runs here. Lock-free: two atomic loads.
#[inline]
pub fn replica_serves(slot: u16) -> bool {
    use std::sync::atomic::Ordering::Acquire;
    state::ROUTES[slot as usize].load(Acquire) == state::ROUTE_REPLICA
        && state::STATE_OK.load(Acquire)
}

/// In cluster mode, before a command runs or is queued: the error that answers it instead,
/// if any — SELECT of another database, CROSSSLOT, CLUSTERDOWN, MOVED, ASK, TRYAGAIN, by
/// Redis's getNodeByQuery rules. `asking`: the connection sent ASKING before it;
/// `readonly`: it sent READONLY (a replica then serves its master's slots' reads).
pub async fn check(
    core: &Rc<Core>,
    spec: &CommandSpec,
    args: &Args<'_>,
    asking: bool,
    readonly: bool,
) -> Option<String> {
    if spec.cmd == Cmd::Select && args.len() == 2 && &args[1][..] != b"0" {
        return Some("ERR SELECT is not allowed in cluster mode".into());
    }
    let slot = match slot_of(spec, args) {
        Err(()) => return Some(CROSSSLOT.into()),
        Ok(None) => return None,
        Ok(Some(s)) => s,
    };
    if plainly_mine(slot) {
        return None;
    }
    let write = spec.flags.has(Flags::WRITE);
    if readonly && !write && replica_serves(slot) {
        return None;
    }
    let keys = key_positions(spec, args)
        .into_iter()
        .map(|i| args[i].to_vec())
        .collect();
    decide(
        core,
        Query {
            slot,
            keys,
            write,
            migrate: spec.cmd == Cmd::Migrate,
            asking: asking || spec.flags.has(Flags::ASKING),
            readonly,
        },
    )
    .await
}

/// EXEC in cluster mode: the queued commands checked as one (getNodeByQuery does the same),
/// so a transaction whose slot moved since it was queued is redirected, not run.
pub async fn check_exec<'a>(
    core: &Rc<Core>,
    cmds: impl Iterator<Item = (&'static CommandSpec, Args<'a>)>,
    asking: bool,
    readonly: bool,
) -> Option<String> {
    let mut q = Query {
        slot: 0,
        keys: Vec::new(),
        write: false,
        migrate: false,
        asking,
        readonly,
    };
    let mut slot = None;
    for (spec, args) in cmds {
        for i in key_positions(spec, &args) {
            let s = key_slot(&args[i]);
            if slot.is_some_and(|x| x != s) {
                return Some(CROSSSLOT.into());
            }
            slot = Some(s);
            q.keys.push(args[i].to_vec());
        }
        q.write |= spec.flags.has(Flags::WRITE);
    }
    q.slot = slot?;
    if plainly_mine(q.slot) || (readonly && !q.write && replica_serves(q.slot)) {
        return None;
    }
    decide(core, q).await
}

/// On the keys' shard, as a command runs: the redirection it gets now, if the slot
/// changed since [`check`] let it through on the client's core. The check and the run are
/// apart (a hop to another core, a batch, a lock wait); in Redis nothing runs between them.
/// A write checked while its slot was plainly this node's and run after SETSLOT MIGRATING
/// would create its key here after redis-cli's GETKEYSINSLOT saw the slot empty, and its
/// SETSLOT NODE then fails ("still hold keys"); one run after SETSLOT NODE would create a
/// key in a slot this node no longer serves, an acknowledged write nobody can read. So the
/// run looks again, by the check's rules: a missing key of a migrating slot gets ASK
/// (TRYAGAIN when some keys exist), a slot that went to another node MOVED.
///
/// `cmds`: one command run on its own, or a transaction (`unit`: EXEC's commands on the one
/// shard they run on), looked at once, as a whole, before its job, as [`check_exec`] looks
/// at it: one by one, a command after a DEL of its key in the same transaction would be
/// cut off with ASK. A script's calls are checked as they are made ([`serves_here`]). A
/// command that passed the check under its keys' locks finds what the check found.
/// `master_view`: the replication stream's client, never redirected. Costs the first key's
/// slot and one atomic load when the slot is plainly this node's.
pub fn recheck<'a>(
    cmds: impl Iterator<Item = (&'static CommandSpec, Args<'a>)> + Clone,
    unit: bool,
    shard: &mut percore_shard::Shard,
    now_ms: u64,
    master_view: bool,
) -> Option<String> {
    if master_view {
        return None;
    }
    let slot = cmds
        .clone()
        .find_map(|(spec, args)| first_key_slot(spec, &args))?;
    if plainly_mine(slot) {
        return None;
    }
    let write = cmds.clone().any(|(spec, _)| spec.flags.has(Flags::WRITE));
    // MIGRATE moves keys of an open slot freely (a transaction is judged as EXEC).
    let migrate = !unit && cmds.clone().any(|(spec, _)| spec.cmd == Cmd::Migrate);
    let keys: Vec<Vec<u8>> = cmds
        .flat_map(|(spec, args)| {
            let at = key_positions(spec, &args);
            at.into_iter().map(move |i| args[i].to_vec())
        })
        .collect();
    let st = state_lock();
    let owner = st.slots[slot as usize];
    if owner == 0 {
        let to = st
            .migrating
            .get(&slot)
            .and_then(|&t| st.node(t))
            .map(endpoint);
        drop(st);
        let to = to.filter(|_| !migrate)?;
        let found = keys.iter().filter(|k| shard.exists(0, k, now_ms)).count();
        return match found {
            f if f == keys.len() => None,
            0 => Some(format!("ASK {slot} {to}")),
            _ => Some("TRYAGAIN Multiple keys request during rehashing of slot".into()),
        };
    }
    // A READONLY client's read on a replica of the slot's master (the check refused the
    // others), also while the cluster is down (cluster-allow-reads-when-down).
    if !write && st.my_master() == Some(owner) {
        return None;
    }
    if st.importing.contains_key(&slot) {
        // Only an ASKING client's command passes the check on an imported slot.
        return None;
    }
    match st.node(owner) {
        Some(n) => Some(format!("MOVED {slot} {}", endpoint(n))),
        None => Some("CLUSTERDOWN Hash slot not served".into()),
    }
}

/// The slot of a command's first key; the check let it through, so its other keys share
/// it. Commands whose keys sit at fixed positions (most) build no list of them.
fn first_key_slot(spec: &CommandSpec, args: &Args) -> Option<u16> {
    let fixed =
        spec.first_key > 0 && spec.keynum_index().is_none() && !spec.flags.has(Flags::MOVABLEKEYS);
    let first = match fixed {
        true => spec.key_indices(args.len()).next(),
        false => key_positions(spec, args).first().copied(),
    };
    first.map(|i| key_slot(&args[i]))
}

fn endpoint(n: &Node) -> String {
    format!("{}:{}", n.ip, n.port)
}

async fn decide(core: &Rc<Core>, q: Query) -> Option<String> {
    let slot = q.slot;
    let (moved_to, migrating_to, importing, ok, reads_when_down, replica_serves) = {
        let st = state_lock();
        let owner = st.slots[slot as usize];
        let replica_serves = st.my_master() == Some(owner);
        let Some(n) = st.node(owner) else {
            return Some("CLUSTERDOWN Hash slot not served".into());
        };
        let migrating_to = match owner {
            0 => st
                .migrating
                .get(&slot)
                .and_then(|&t| st.node(t))
                .map(endpoint),
            _ => None,
        };
        let importing = migrating_to.is_none() && st.importing.contains_key(&slot);
        let moved_to = (owner != 0).then(|| endpoint(n));
        (
            moved_to,
            migrating_to,
            importing,
            st.ok,
            st.allow_reads_when_down,
            replica_serves,
        )
    };
    let (mut missing, mut existing) = (0usize, 0usize);
    let mut distinct = q.keys.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let multiple_keys = distinct.len() > 1;
    if migrating_to.is_some() || importing {
        let target = crate::router::slot_shard(slot, core.nshards());
        let keys = q.keys.clone();
        let found = crate::core::call(core, target, move |c: &Core| {
            let now = crate::core::now_ms();
            let mut sh = c.shard.borrow_mut();
            keys.iter().filter(|k| sh.exists(0, k, now)).count()
        })
        .await;
        existing = found;
        missing = q.keys.len() - found;
    }
    if !ok {
        if !reads_when_down {
            return Some("CLUSTERDOWN The cluster is down".into());
        }
        if q.write {
            return Some("CLUSTERDOWN The cluster is down and only accepts read commands".into());
        }
    }
    if (migrating_to.is_some() || importing) && q.migrate {
        return None;
    }
    if let Some(to) = migrating_to.filter(|_| missing > 0) {
        if existing > 0 {
            return Some("TRYAGAIN Multiple keys request during rehashing of slot".into());
        }
        return Some(format!("ASK {slot} {to}"));
    }
    if importing && q.asking {
        if multiple_keys && missing > 0 {
            return Some("TRYAGAIN Multiple keys request during rehashing of slot".into());
        }
        return None;
    }
    if q.readonly && !q.write && replica_serves {
        return None;
    }
    moved_to.map(|to| format!("MOVED {slot} {to}"))
}

/// Parses slot arguments (ADDSLOTS, DELSLOTS) or ranges (the RANGE forms) into a list,
/// with Redis's errors.
fn slot_args(a: &Args, ranges: bool, del: bool, st: &State) -> Result<Vec<u16>, String> {
    let slot = |b: &[u8]| {
        percore_proto::parse_i64(b)
            .filter(|s| (0..SLOTS as i64).contains(s))
            .map(|s| s as u16)
            .ok_or_else(|| BAD_SLOT.to_string())
    };
    let mut pairs = Vec::new();
    if ranges {
        if a.len() % 2 == 1 {
            return Err(format!(
                "ERR wrong number of arguments for '{}' command",
                if del {
                    "cluster|delslotsrange"
                } else {
                    "cluster|addslotsrange"
                }
            ));
        }
        for i in (2..a.len()).step_by(2) {
            let (x, y) = (slot(&a[i])?, slot(&a[i + 1])?);
            if x > y {
                return Err(format!(
                    "ERR start slot number {x} is greater than end slot number {y}"
                ));
            }
            pairs.push((x, y));
        }
    } else {
        for i in 2..a.len() {
            slot(&a[i])?;
        }
        for i in 2..a.len() {
            let s = slot(&a[i])?;
            pairs.push((s, s));
        }
    }
    let mut seen = vec![false; SLOTS as usize];
    let mut out = Vec::new();
    for (x, y) in pairs {
        for s in x..=y {
            let owner = st.slots[s as usize];
            if del && owner == NONE {
                return Err(format!("ERR Slot {s} is already unassigned"));
            }
            if !del && owner != NONE {
                return Err(format!("ERR Slot {s} is already busy"));
            }
            if std::mem::replace(&mut seen[s as usize], true) {
                return Err(format!("ERR Slot {s} specified multiple times"));
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// Keys in `slot` on this node (on the one core that holds the slot).
async fn count_keys_in_slot(core: &Rc<Core>, slot: u16) -> usize {
    keys_in_slot(core, slot, 0).await.0
}

async fn keys_in_slot(core: &Rc<Core>, slot: u16, limit: usize) -> (usize, Vec<Vec<u8>>) {
    let target = crate::router::slot_shard(slot, core.nshards());
    crate::core::call(core, target, move |c: &Core| {
        let now = crate::core::now_ms();
        c.shard
            .borrow()
            .keys_where(0, |k| key_slot(k) == slot, limit, now)
    })
    .await
}

async fn db0_keys(core: &Rc<Core>) -> usize {
    crate::core::call_all(core, |c: &Core| c.shard.borrow().db_len(0))
        .await
        .into_iter()
        .sum()
}

/// Saves the view and publishes the routing table after a command changed it.
fn changed(st: &mut State) -> Result<(), String> {
    st.update();
    st.dirty = false;
    save(st, false)
}

fn unknown(id: &[u8]) -> String {
    format!("ERR Unknown node {}", String::from_utf8_lossy(id))
}

/// CLUSTER SLOTS: each run of slots with one owner, with the owner's address.
fn reply_slots(st: &State, w: &mut ReplyWriter) {
    let mut runs: Vec<(u16, u16, u16)> = Vec::new();
    for s in 0..SLOTS {
        let o = st.slots[s as usize];
        if o == NONE {
            continue;
        }
        match runs.last_mut() {
            Some(r) if r.2 == o && r.1 + 1 == s => r.1 = s,
            _ => runs.push((s, s, o)),
        }
    }
    w.array(runs.len());
    for (a, b, o) in runs {
        // Replicas that failed or have no data yet are left out (isReplicaAvailable).
        let replicas: Vec<&Node> = st
            .replicas_of(o)
            .into_iter()
            .filter(|&r| !st.node(r).is_some_and(|n| n.failed()) && offset_of(st, r) != 0)
            .filter_map(|r| st.node(r))
            .collect();
        w.array(3 + replicas.len());
        w.int(a as i64);
        w.int(b as i64);
        let n = st.node(o).expect("a slot names a live node");
        for n in std::iter::once(n).chain(replicas) {
            w.array(4);
            w.bulk(n.ip.as_bytes());
            w.int(n.port as i64);
            w.bulk(n.id.as_bytes());
            w.map(0);
        }
    }
}

/// A node's replication offset: this node's own, or the last one it announced.
fn offset_of(st: &State, i: u16) -> u64 {
    match i {
        0 => st.my_offset,
        _ => st.node(i).map_or(0, |n| n.repl_offset),
    }
}

/// CLUSTER SHARDS: one shard per master, its nodes the master and then its replicas.
fn reply_shards(st: &State, w: &mut ReplyWriter) {
    let masters: Vec<u16> = st
        .live()
        .filter(|(_, n)| n.is_master())
        .map(|(i, _)| i)
        .collect();
    w.array(masters.len());
    for i in masters {
        w.map(2);
        w.bulk(b"slots");
        let ranges = st.ranges(i);
        w.array(ranges.len() * 2);
        for (a, b) in ranges {
            w.int(a as i64);
            w.int(b as i64);
        }
        w.bulk(b"nodes");
        let nodes: Vec<u16> = std::iter::once(i).chain(st.replicas_of(i)).collect();
        w.array(nodes.len());
        for j in nodes {
            let n = st.node(j).expect("listed above");
            let offset = offset_of(st, j);
            w.map(7);
            w.bulk(b"id");
            w.bulk(n.id.as_bytes());
            w.bulk(b"port");
            w.int(n.port as i64);
            w.bulk(b"ip");
            w.bulk(n.ip.as_bytes());
            w.bulk(b"endpoint");
            w.bulk(n.ip.as_bytes());
            w.bulk(b"role");
            w.bulk(if n.is_replica() {
                b"replica".as_slice()
            } else {
                b"master".as_slice()
            });
            w.bulk(b"replication-offset");
            w.int(offset as i64);
            w.bulk(b"health");
            w.bulk(if n.failed() {
                b"fail".as_slice()
            } else if n.is_replica() && offset == 0 {
                b"loading".as_slice()
            } else {
                b"online".as_slice()
            });
        }
    }
}

fn info_text(st: &State) -> String {
    let (mut assigned, mut ok, mut pfail, mut fail) = (0, 0, 0, 0);
    for &o in &st.slots {
        let Some(n) = st.node(o) else { continue };
        assigned += 1;
        if n.failed() {
            fail += 1;
        } else if n.timed_out() {
            pfail += 1;
        } else {
            ok += 1;
        }
    }
    let mut s = String::new();
    let _ = write!(
        s,
        "cluster_state:{}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{ok}\r\ncluster_slots_pfail:{pfail}\r\ncluster_slots_fail:{fail}\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\ncluster_current_epoch:{}\r\ncluster_my_epoch:{}\r\n",
        if st.ok { "ok" } else { "fail" },
        st.known(),
        st.size,
        st.current_epoch,
        st.me().config_epoch,
    );
    for (counts, dir) in [(&st.sent, "sent"), (&st.received, "received")] {
        for (k, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            let _ = write!(
                s,
                "cluster_stats_messages_{}_{dir}:{n}\r\n",
                bus::KIND_NAMES[k]
            );
        }
        let _ = write!(
            s,
            "cluster_stats_messages_{dir}:{}\r\n",
            counts.iter().sum::<u64>()
        );
    }
    s.push_str("total_cluster_links_buffer_limit_exceeded:0\r\n");
    s
}

/// CLUSTER subcommands, READONLY, READWRITE, ASKING (the connection flags of the last three
/// are set by the caller).
pub async fn command(core: &Rc<Core>, spec: &CommandSpec, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    if !enabled() {
        return w.error(DISABLED);
    }
    let eq = |i: usize, s: &str| {
        a.get(i)
            .is_some_and(|x| x.eq_ignore_ascii_case(s.as_bytes()))
    };
    match spec.cmd {
        Cmd::ReadOnly | Cmd::ReadWrite | Cmd::Asking => w.ok(),
        Cmd::ClusterMyId => w.bulk(state_lock().me().id.as_bytes()),
        Cmd::ClusterInfo => {
            let text = info_text(&state_lock());
            w.verbatim(b"txt", text.as_bytes());
        }
        Cmd::ClusterSlots => reply_slots(&state_lock(), w),
        Cmd::ClusterShards => reply_shards(&state_lock(), w),
        Cmd::ClusterNodes => {
            let text = state_lock().nodes_text();
            w.verbatim(b"txt", text.as_bytes());
        }
        Cmd::ClusterKeySlot => w.int(key_slot(&a[2]) as i64),
        Cmd::ClusterMeet => {
            if a.len() > 5 {
                return w.error("ERR wrong number of arguments for 'cluster|meet' command");
            }
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let Some(port) = percore_proto::parse_i64(&a[3]) else {
                return w.error(&format!(
                    "ERR Invalid TCP base port specified: {}",
                    text(&a[3])
                ));
            };
            let cport = match a.get(4) {
                Some(c) => match percore_proto::parse_i64(c) {
                    Some(c) => c,
                    None => {
                        return w.error(&format!("ERR Invalid TCP bus port specified: {}", text(c)))
                    }
                },
                None => port + 10000,
            };
            let ip = text(&a[2]);
            let valid = |p: i64| (1..=65535).contains(&p);
            let Some(ip) = ip
                .parse::<std::net::IpAddr>()
                .ok()
                .filter(|_| valid(port) && valid(cport))
            else {
                return w.error(&format!(
                    "ERR Invalid node address specified: {ip}:{}",
                    text(&a[3])
                ));
            };
            let ip = ip.to_string();
            let mut st = state_lock();
            if !st
                .handshakes
                .iter()
                .any(|h| h.ip == ip && h.port == port as u16)
            {
                st.handshakes.push(Handshake {
                    ip,
                    port: port as u16,
                    cport: cport as u16,
                    started_ms: crate::core::now_ms(),
                    running: false,
                });
            }
            w.ok()
        }
        Cmd::ClusterFlushslots => {
            if db0_keys(core).await != 0 {
                return w.error("ERR DB must be empty to perform CLUSTER FLUSHSLOTS.");
            }
            let mut st = state_lock();
            for s in st.slots.iter_mut().filter(|s| **s == 0) {
                *s = NONE;
            }
            reply_changed(&mut st, w)
        }
        Cmd::ClusterAddslots
        | Cmd::ClusterDelslots
        | Cmd::ClusterAddslotsrange
        | Cmd::ClusterDelslotsrange => {
            let del = matches!(spec.cmd, Cmd::ClusterDelslots | Cmd::ClusterDelslotsrange);
            let ranges = matches!(
                spec.cmd,
                Cmd::ClusterAddslotsrange | Cmd::ClusterDelslotsrange
            );
            let mut st = state_lock();
            let slots = match slot_args(&a, ranges, del, &st) {
                Ok(s) => s,
                Err(e) => return w.error(&e),
            };
            for s in slots {
                if del {
                    st.slots[s as usize] = NONE;
                } else {
                    // Owning the slot ends importing it.
                    st.importing.remove(&s);
                    st.slots[s as usize] = 0;
                }
            }
            reply_changed(&mut st, w)
        }
        Cmd::ClusterSetslot => setslot(core, &a, w).await,
        Cmd::ClusterBumpepoch => {
            let mut st = state_lock();
            let bumped = st.bump_epoch_without_consensus();
            let text = format!(
                "{} {}",
                if bumped { "BUMPED" } else { "STILL" },
                st.me().config_epoch
            );
            st.update();
            if let Err(e) = save(&st, true) {
                return w.error(&format!("ERR {e}"));
            }
            w.simple(text.as_bytes());
        }
        Cmd::ClusterSetConfigEpoch => {
            let Some(epoch) = percore_proto::parse_i64(&a[2]) else {
                return w.error(NOT_AN_INTEGER);
            };
            let mut st = state_lock();
            if epoch < 0 {
                return w.error(&format!("ERR Invalid config epoch specified: {epoch}"));
            }
            if st.known() > 1 {
                return w.error("ERR The user can assign a config epoch only when the node does not know any other node.");
            }
            if st.me().config_epoch != 0 {
                return w.error("ERR Node config epoch is already non-zero");
            }
            st.me_mut().config_epoch = epoch as u64;
            crate::log::notice(&format!(
                "configEpoch set to {epoch} via CLUSTER SET-CONFIG-EPOCH"
            ));
            if st.current_epoch < epoch as u64 {
                st.current_epoch = epoch as u64;
            }
            st.update();
            match save(&st, true) {
                Ok(()) => w.ok(),
                Err(e) => w.error(&format!("ERR {e}")),
            }
        }
        Cmd::ClusterSaveconfig => match save(&state_lock(), true) {
            Ok(()) => w.ok(),
            Err(e) => w.error(&format!("ERR error saving the cluster node config: {e}")),
        },
        Cmd::ClusterForget => {
            let mut st = state_lock();
            let id = String::from_utf8_lossy(&a[2]).into_owned();
            let Some(i) = st.lookup(&id) else {
                return w.error(&unknown(&a[2]));
            };
            if i == 0 {
                return w.error("ERR I tried hard but I can't forget myself...");
            }
            if st.my_master() == Some(i) {
                return w.error("ERR Can't forget my master!");
            }
            st.remove(i);
            let until = crate::core::now_ms() + state::FORGET_BAN_MS;
            st.banned.insert(id, until);
            reply_changed(&mut st, w)
        }
        Cmd::ClusterCountFailureReports => {
            let mut st = state_lock();
            let id = String::from_utf8_lossy(&a[2]).into_owned();
            match st.lookup(&id) {
                Some(i) => w.int(st.failure_reports(i, crate::core::now_ms()) as i64),
                None => w.error(&unknown(&a[2])),
            }
        }
        Cmd::ClusterReset => {
            let hard = match a.len() {
                2 => false,
                3 if eq(2, "hard") => true,
                3 if eq(2, "soft") => false,
                _ => return w.error("ERR syntax error"),
            };
            let replica = state_lock().me().is_replica();
            if !replica && db0_keys(core).await != 0 {
                return w
                    .error("ERR CLUSTER RESET can't be called with master nodes containing keys");
            }
            if replica {
                // A replica turns master and empties its data (Redis's clusterReset:
                // replicationUnsetMaster, then emptyData): its link ends first, so no
                // write of its old master lands after the flush.
                state_lock().me_mut().set_master_role();
                crate::repl::replica::unset_master(core).await;
                crate::core::call_all(core, |c: &Core| {
                    let mut sh = c.shard.borrow_mut();
                    for db in 0..percore_shard::DB_COUNT {
                        sh.flush_db(db);
                    }
                })
                .await;
            }
            let mut st = state_lock();
            if replica {
                st.failover = Default::default();
            }
            st.migrating.clear();
            st.importing.clear();
            for s in st.slots.iter_mut() {
                *s = NONE;
            }
            let others: Vec<u16> = st.live().skip(1).map(|(i, _)| i).collect();
            for i in others {
                st.remove(i);
            }
            st.handshakes.clear();
            if hard {
                st.current_epoch = 0;
                st.last_vote_epoch = 0;
                st.me_mut().config_epoch = 0;
                st.me_mut().id = crate::random_hex(40);
                crate::log::notice(&format!("Node hard reset, now I'm {}", st.me().id));
            }
            reply_changed(&mut st, w)
        }
        Cmd::ClusterReplicas | Cmd::ClusterSlaves => {
            let st = state_lock();
            let Some(i) = st.lookup(&String::from_utf8_lossy(&a[2])) else {
                return w.error(&unknown(&a[2]));
            };
            if st.node(i).is_some_and(|n| n.is_replica()) {
                return w.error("ERR The specified node is not a master");
            }
            let replicas = st.replicas_of(i);
            w.array(replicas.len());
            for r in replicas {
                let mut line = String::new();
                st.node_line(r, &mut line);
                w.bulk(line.trim_end().as_bytes());
            }
        }
        Cmd::ClusterReplicate => {
            let keys = db0_keys(core).await;
            let mut st = state_lock();
            let Some(i) = st.lookup(&String::from_utf8_lossy(&a[2])) else {
                return w.error(&unknown(&a[2]));
            };
            if i == 0 {
                return w.error("ERR Can't replicate myself");
            }
            if st.node(i).is_some_and(|n| n.is_replica()) {
                return w.error("ERR I can only replicate a master, not a replica.");
            }
            if st.me().is_master() && (st.slot_count(0) != 0 || keys != 0) {
                return w.error(
                    "ERR To set a master the node must be empty and without assigned slots.",
                );
            }
            st.set_my_master(i);
            reply_changed(&mut st, w)
        }
        Cmd::ClusterFailover => {
            let mode = match a.len() {
                2 => failover::Mode::Default,
                3 if eq(2, "force") => failover::Mode::Force,
                3 if eq(2, "takeover") => failover::Mode::Takeover,
                3 => return w.error("ERR syntax error"),
                _ => {
                    return w.error("ERR wrong number of arguments for 'cluster|failover' command")
                }
            };
            let mut st = state_lock();
            if st.me().is_master() {
                return w.error("ERR You should send CLUSTER FAILOVER to a replica");
            }
            let Some(m) = st.my_master() else {
                return w.error("ERR I'm a replica but my master is unknown to me");
            };
            let down = st.node(m).is_none_or(|n| n.failed() || !n.link);
            if mode == failover::Mode::Default && down {
                return w.error("ERR Master is down or failed, please use CLUSTER FAILOVER FORCE");
            }
            st.manual_failover(mode, crate::core::now_ms());
            reply_changed(&mut st, w)
        }
        Cmd::ClusterLinks => {
            let st = state_lock();
            let linked: Vec<&Node> = st
                .live()
                .skip(1)
                .map(|(_, n)| n)
                .filter(|n| n.link)
                .collect();
            w.array(linked.len());
            for n in linked {
                w.map(6);
                w.bulk(b"direction");
                w.bulk(b"to");
                w.bulk(b"node");
                w.bulk(n.id.as_bytes());
                w.bulk(b"create-time");
                w.int(n.pong_recv_ms as i64);
                w.bulk(b"events");
                w.bulk(b"r");
                w.bulk(b"send-buffer-allocated");
                w.int(0);
                w.bulk(b"send-buffer-used");
                w.int(0);
            }
        }
        Cmd::ClusterCountKeysInSlot | Cmd::ClusterGetKeysInSlot => {
            let int = |b: &[u8]| percore_proto::parse_i64(b);
            let Some(slot) = int(&a[2]) else {
                return w.error(NOT_AN_INTEGER);
            };
            let limit = match spec.cmd {
                Cmd::ClusterGetKeysInSlot => match int(&a[3]) {
                    Some(n) => n,
                    None => return w.error(NOT_AN_INTEGER),
                },
                _ => 0,
            };
            let (slot, limit) = match (slot, limit) {
                (s, n) if (0..SLOTS as i64).contains(&s) && n >= 0 => (s as u16, n as usize),
                _ if spec.cmd == Cmd::ClusterCountKeysInSlot => return w.error("ERR Invalid slot"),
                _ => return w.error("ERR Invalid slot or number of keys"),
            };
            let (n, keys) = keys_in_slot(core, slot, limit).await;
            if spec.cmd == Cmd::ClusterCountKeysInSlot {
                return w.int(n as i64);
            }
            w.array(keys.len());
            for k in keys {
                w.bulk(&k);
            }
        }
        Cmd::ClusterHelp => crate::commands::help(w, "CLUSTER", HELP),
        _ => w.error(&format!(
            "ERR CLUSTER {} is not supported by percore",
            spec.name
                .trim_start_matches("cluster|")
                .to_ascii_uppercase()
        )),
    }
}

fn reply_changed(st: &mut State, w: &mut ReplyWriter) {
    match changed(st) {
        Ok(()) => w.ok(),
        Err(e) => w.error(&format!("ERR {e}")),
    }
}

/// CLUSTER SETSLOT <slot> IMPORTING|MIGRATING <node> | STABLE | NODE <node>.
async fn setslot(core: &Rc<Core>, a: &Args<'_>, w: &mut ReplyWriter<'_>) {
    let Some(slot) = percore_proto::parse_i64(&a[2])
        .filter(|s| (0..SLOTS as i64).contains(s))
        .map(|s| s as u16)
    else {
        return w.error(BAD_SLOT);
    };
    let action = a[3].to_ascii_lowercase();
    let id = a.get(4).map(|b| String::from_utf8_lossy(b).into_owned());
    let bad = "ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP";
    // The keys of the slot, counted before the lock (another core holds them).
    let keys = match (action.as_slice(), a.len()) {
        (b"node", 5) => count_keys_in_slot(core, slot).await,
        _ => 0,
    };
    let mut st = state_lock();
    if st.me().is_replica() {
        return w.error("ERR Please use SETSLOT only with masters.");
    }
    match (action.as_slice(), id) {
        (b"migrating", Some(id)) if a.len() == 5 => {
            if st.slots[slot as usize] != 0 {
                return w.error(&format!("ERR I'm not the owner of hash slot {slot}"));
            }
            let Some(t) = st.lookup(&id) else {
                return w.error(&format!("ERR I don't know about node {id}"));
            };
            st.migrating.insert(slot, t);
        }
        (b"importing", Some(id)) if a.len() == 5 => {
            if st.slots[slot as usize] == 0 {
                return w.error(&format!("ERR I'm already the owner of hash slot {slot}"));
            }
            let Some(t) = st.lookup(&id) else {
                return w.error(&format!("ERR I don't know about node {id}"));
            };
            st.importing.insert(slot, t);
        }
        (b"stable", None) if a.len() == 4 => {
            st.migrating.remove(&slot);
            st.importing.remove(&slot);
        }
        (b"node", Some(id)) if a.len() == 5 => {
            let Some(t) = st.lookup(&id) else {
                return w.error(&format!("ERR Unknown node {id}"));
            };
            if st.slots[slot as usize] == 0 && t != 0 && keys != 0 {
                return w.error(&format!("ERR Can't assign hashslot {slot} to a different node while I still hold keys for this hash slot."));
            }
            if keys == 0 {
                st.migrating.remove(&slot);
            }
            st.slots[slot as usize] = t;
            if t == 0 && st.importing.remove(&slot).is_some() {
                // A slot moved by hand: a new epoch so the other nodes take this claim
                // over the old owner's.
                if st.bump_epoch_without_consensus() {
                    crate::log::notice(&format!("configEpoch updated after importing slot {slot}"));
                }
            }
        }
        _ => return w.error(bad),
    }
    reply_changed(&mut st, w)
}

const HELP: &[&str] = &[
    "ADDSLOTS <slot> [<slot> ...]",
    "    Assign slots to current node.",
    "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Assign slots which are between <start-slot> and <end-slot> to current node.",
    "BUMPEPOCH",
    "    Advance the cluster config epoch.",
    "COUNT-FAILURE-REPORTS <node-id>",
    "    Return number of failure reports for <node-id>.",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "DELSLOTS <slot> [<slot> ...]",
    "    Delete slots information from current node.",
    "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Delete slots information which are between <start-slot> and <end-slot> from current node.",
    "FAILOVER [FORCE|TAKEOVER]",
    "    Promote current replica node to being a master.",
    "FORGET <node-id>",
    "    Remove a node from the cluster.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "FLUSHSLOTS",
    "    Delete current node own slots information.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MEET <ip> <port> [<bus-port>]",
    "    Connect nodes into a working cluster.",
    "MYID",
    "    Return the node id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "REPLICATE <node-id>",
    "    Configure current node as replica to <node-id>.",
    "RESET [HARD|SOFT]",
    "    Reset current node (default: soft).",
    "SET-CONFIG-EPOCH <epoch>",
    "    Set config epoch of current node.",
    "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
    "    Set slot state.",
    "REPLICAS <node-id>",
    "    Return <node-id> replicas.",
    "SAVECONFIG",
    "    Force saving cluster configuration on disk.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "LINKS",
    "    Return information about all network links between this node and its peers.",
    "    Output format is an array where each array element is a map containing attributes of a link",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // Redis's documented examples and its keyHashSlot test values.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }
}
