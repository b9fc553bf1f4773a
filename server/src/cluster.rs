//! Redis Cluster protocol, first slice: a one-node cluster (`cluster-enabled yes`).
//!
//! The node owns all 16,384 hash slots from the start, so clients that speak only cluster
//! mode (cluster-aware clients, proxies, managed-Redis configurations) work against one
//! percore node: CLUSTER INFO, MYID, SLOTS, SHARDS, NODES, KEYSLOT, COUNTKEYSINSLOT,
//! GETKEYSINSLOT and HELP answer as Redis 7.0 does for a node holding every slot; a command
//! (or a transaction, or a script's declared keys) whose keys hash to different slots is
//! refused with CROSSSLOT, and SELECT of another database with Redis's error, so what works
//! here works on a real cluster. READONLY, READWRITE and ASKING are accepted.
//!
//! Not yet (CLUSTER's other subcommands answer so): several nodes (MEET, the cluster bus,
//! ADDSLOTS/SETSLOT/MIGRATE resharding, MOVED/ASK redirections), replicas and failover.
//! Slots are not an index here: COUNTKEYSINSLOT and GETKEYSINSLOT walk each shard's keys
//! (O(N), where Redis keeps keys by slot).
//!
//! The node's ID is kept in `cluster-config-file` (in `dir`), in Redis's nodes.conf format,
//! locked while the node runs, so a restart keeps its identity.

use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::OnceLock;

use percore_proto::{Args, CommandSpec, ReplyWriter};

use crate::config::Config;
use crate::core::Core;

pub const SLOTS: u16 = 16384;
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
pub const DISABLED: &str = "ERR This instance has cluster support disabled";
const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// This node, set at start when cluster mode is on.
struct Node {
    id: String,
    ip: String,
    port: u16,
    cport: u16,
    /// The locked nodes file, held open for the life of the process.
    _lock: std::fs::File,
}

static NODE: OnceLock<Node> = OnceLock::new();

/// Whether cluster mode is on (one atomic load).
#[inline]
pub fn enabled() -> bool {
    NODE.get().is_some()
}

/// Turns cluster mode on at start when `cluster-enabled yes`: reads (or writes) the nodes
/// file and locks it.
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
    let id = match text.lines().find(|l| l.contains("myself")) {
        Some(l) => {
            let id = l.split(' ').next().unwrap_or("");
            if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "Unrecoverable error: corrupted cluster config file {}: '{l}'",
                    path.display()
                ));
            }
            id.to_string()
        }
        None if text.trim().is_empty() => crate::random_hex(40),
        None => {
            return Err(format!(
                "cluster-config-file {} has no line for this node ('myself'): not a nodes file",
                path.display()
            ))
        }
    };
    let node = Node {
        id,
        ip: cfg.cluster_announce_ip.clone(),
        port,
        cport,
        _lock: file,
    };
    // Written in place, as Redis does: a new file would not carry the lock.
    let line = format!(
        "{}\nvars currentEpoch 0 lastVoteEpoch 0\n",
        nodes_line(&node)
    );
    let mut f = &node._lock;
    f.set_len(0)
        .and_then(|_| std::io::Seek::rewind(&mut f))
        .and_then(|_| std::io::Write::write_all(&mut f, line.as_bytes()))
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write cluster-config-file {}: {e}", path.display()))?;
    let _ = NODE.set(node);
    Ok(())
}

fn nodes_line(n: &Node) -> String {
    format!(
        "{} {}:{}@{} myself,master - 0 0 0 connected 0-{}",
        n.id,
        n.ip,
        n.port,
        n.cport,
        SLOTS - 1
    )
}

/// CRC16-XMODEM of `key`'s hash tag (or the whole key), modulo 16384: Redis Cluster's slot.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(crate::router::hash_tag(key)) & (SLOTS - 1)
}

fn crc16(b: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in b {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The one slot of a command's keys: None without keys, Err when they differ.
pub fn slot_of(spec: &CommandSpec, args: &Args) -> Result<Option<u16>, ()> {
    if one_key(spec) {
        return Ok(args.get(spec.first_key as usize).map(key_slot));
    }
    if spec.first_key == 0 && spec.keynum_index().is_none() && !spec.is_container() {
        return Ok(None);
    }
    let Ok((_, keys)) = crate::commands::command_keys(args) else {
        return Ok(None);
    };
    let mut slot = None;
    for i in keys {
        let s = key_slot(&args[i]);
        if slot.is_some_and(|x| x != s) {
            return Err(());
        }
        slot = Some(s);
    }
    Ok(slot)
}

/// In cluster mode, what refuses a command before it runs (or is queued): keys in several
/// slots, SELECT of another database.
pub fn refusal(spec: &CommandSpec, args: &Args) -> Option<&'static str> {
    if spec.cmd == percore_proto::Cmd::Select && args.len() == 2 && &args[1][..] != b"0" {
        return Some("ERR SELECT is not allowed in cluster mode");
    }
    // One fixed key (GET, SET, INCR, …): nothing to compare.
    (!one_key(spec) && slot_of(spec, args).is_err()).then_some(CROSSSLOT)
}

/// The command names exactly one key, at a fixed position (not one whose keys move with its
/// arguments: MIGRATE's KEYS, GEORADIUS's STORE, SORT's STORE).
fn one_key(spec: &CommandSpec) -> bool {
    spec.first_key > 0
        && spec.last_key == spec.first_key
        && spec.keynum_index().is_none()
        && !spec.flags.has(percore_proto::Flags::MOVABLEKEYS)
}

/// EXEC in cluster mode: every queued command's keys in one slot.
pub fn transaction_crosses_slots<'a>(
    cmds: impl Iterator<Item = (&'static CommandSpec, Args<'a>)>,
) -> bool {
    let mut slot = None;
    for (spec, args) in cmds {
        match slot_of(spec, &args) {
            Err(()) => return true,
            Ok(Some(s)) if slot.is_some_and(|x| x != s) => return true,
            Ok(Some(s)) => slot = Some(s),
            Ok(None) => {}
        }
    }
    false
}

/// CLUSTER subcommands, READONLY, READWRITE, ASKING.
pub async fn command(core: &Rc<Core>, spec: &CommandSpec, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    use percore_proto::Cmd;
    let Some(node) = NODE.get() else {
        return w.error(DISABLED);
    };
    match spec.cmd {
        Cmd::ReadOnly | Cmd::ReadWrite | Cmd::Asking => w.ok(),
        Cmd::ClusterMyId => w.bulk(node.id.as_bytes()),
        Cmd::ClusterInfo => {
            let mut s = String::new();
            for (k, v) in [
                ("cluster_state", "ok".to_string()),
                ("cluster_slots_assigned", SLOTS.to_string()),
                ("cluster_slots_ok", SLOTS.to_string()),
                ("cluster_slots_pfail", "0".into()),
                ("cluster_slots_fail", "0".into()),
                ("cluster_known_nodes", "1".into()),
                ("cluster_size", "1".into()),
                ("cluster_current_epoch", "0".into()),
                ("cluster_my_epoch", "0".into()),
                ("cluster_stats_messages_sent", "0".into()),
                ("cluster_stats_messages_received", "0".into()),
                ("total_cluster_links_buffer_limit_exceeded", "0".into()),
            ] {
                let _ = write!(s, "{k}:{v}\r\n");
            }
            w.verbatim(b"txt", s.as_bytes());
        }
        Cmd::ClusterSlots => {
            w.array(1);
            w.array(3);
            w.int(0);
            w.int(SLOTS as i64 - 1);
            w.array(4);
            w.bulk(node.ip.as_bytes());
            w.int(node.port as i64);
            w.bulk(node.id.as_bytes());
            w.map(0);
        }
        Cmd::ClusterShards => {
            w.array(1);
            w.map(2);
            w.bulk(b"slots");
            w.array(2);
            w.int(0);
            w.int(SLOTS as i64 - 1);
            w.bulk(b"nodes");
            w.array(1);
            w.map(7);
            w.bulk(b"id");
            w.bulk(node.id.as_bytes());
            w.bulk(b"port");
            w.int(node.port as i64);
            w.bulk(b"ip");
            w.bulk(node.ip.as_bytes());
            w.bulk(b"endpoint");
            w.bulk(node.ip.as_bytes());
            w.bulk(b"role");
            w.bulk(b"master");
            w.bulk(b"replication-offset");
            w.int(0);
            w.bulk(b"health");
            w.bulk(b"online");
        }
        Cmd::ClusterNodes => w.verbatim(b"txt", format!("{}\n", nodes_line(node)).as_bytes()),
        Cmd::ClusterKeySlot => w.int(key_slot(&a[2]) as i64),
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
                _ if spec.cmd == Cmd::ClusterCountKeysInSlot => {
                    return w.error("ERR Invalid slot")
                }
                _ => return w.error("ERR Invalid slot or number of keys"),
            };
            let found = crate::core::call_all(core, move |c: &Core| {
                let now = crate::core::now_ms();
                c.shard
                    .borrow()
                    .keys_where(0, |k| key_slot(k) == slot, limit, now)
            })
            .await;
            if spec.cmd == Cmd::ClusterCountKeysInSlot {
                return w.int(found.iter().map(|(n, _)| *n as i64).sum());
            }
            let keys: Vec<Vec<u8>> = found.into_iter().flat_map(|(_, k)| k).take(limit).collect();
            w.array(keys.len());
            for k in keys {
                w.bulk(&k);
            }
        }
        Cmd::ClusterHelp => crate::commands::help(
            w,
            "CLUSTER",
            &[
                "COUNTKEYSINSLOT <slot>",
                "    Return the number of keys in <slot>.",
                "GETKEYSINSLOT <slot> <count>",
                "    Return key names stored by current node in a slot.",
                "INFO",
                "    Return information about the cluster.",
                "KEYSLOT <key>",
                "    Return the hash slot for <key>.",
                "MYID",
                "    Return the node id.",
                "NODES",
                "    Return cluster configuration seen by node. Output format:",
                "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
                "SHARDS",
                "    Return information about slot range mappings and the nodes associated with them.",
                "SLOTS",
                "    Return information about slots range mappings. Each range is made of:",
                "    start, end, master and replicas IP addresses, ports and ids",
            ],
        ),
        _ => w.error(&format!(
            "ERR CLUSTER {} is not supported: percore's cluster mode is one node owning every slot (several nodes are not built yet)",
            spec.name.trim_start_matches("cluster|").to_ascii_uppercase()
        )),
    }
}
