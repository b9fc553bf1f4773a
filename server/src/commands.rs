//! Connection and server commands: PING, ECHO, QUIT, RESET, HELLO, AUTH, SELECT, CLIENT *,
//! INFO, CONFIG *, TIME, SHUTDOWN, DEBUG, COMMAND *. None of them touch the keyspace except
//! through other cores' [`crate::core::call`]s.

use crate::client::Client;
use crate::config::{find_param, Config, PARAMS};
use crate::core::{call_all, now_us, Core};
use percore_proto::command::{lookup, lookup_sub, subcommands, COMMANDS, SUBCOMMANDS};
use percore_proto::{docs, Args, Cmd, CommandSpec, Protocol, ReplyWriter};
use percore_shard::glob::glob_match;
use percore_shard::ops::keyspace::parse_db;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The Redis version whose behaviour percore follows (INFO `redis_version`, HELLO).
pub const REDIS_VERSION: &str = "7.0.15";
pub const PERCORE_VERSION: &str = env!("CARGO_PKG_VERSION");

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn help(w: &mut ReplyWriter, name: &str, lines: &[&str]) {
    w.array(lines.len() + 3);
    w.simple(format!("{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").as_bytes());
    for l in lines {
        w.simple(l.as_bytes());
    }
    w.simple(b"HELP");
    w.simple(b"    Prints this help.");
}

pub async fn run(conn: &mut Client, spec: &'static CommandSpec, a: Args<'_>, buf: &mut Vec<u8>) {
    let mut w = ReplyWriter::new(buf, conn.proto);
    match spec.cmd {
        // A RESP2 subscriber's PING is answered in the shape of its messages.
        Cmd::Ping if conn.subs.as_ref().is_some_and(|s| s.total() > 0) && conn.proto == Protocol::Resp2 && a.len() <= 2 => {
            w.array(2);
            w.bulk(b"pong");
            w.bulk(a.get(1).unwrap_or(b""));
        }
        Cmd::Ping => match a.len() {
            1 => w.simple(b"PONG"),
            2 => w.bulk(&a[1]),
            _ => w.error(&spec.arity_error()),
        },
        Cmd::Echo => w.bulk(&a[1]),
        Cmd::Quit => {
            w.ok();
            conn.close = true;
        }
        Cmd::Reset => {
            crate::tracking::disable(conn).await;
            reset(conn);
            w.proto = conn.proto;
            w.simple(b"RESET");
        }
        Cmd::Hello => hello(conn, a, &mut w),
        Cmd::Migrate => crate::migrate::run(conn, a, &mut w).await,
        Cmd::Auth => auth(conn, a, &mut w),
        _ if spec.parent_name() == Some("acl") => crate::acl::command(conn, spec, a, &mut w).await,
        Cmd::Select => match parse_db(&a[1]) {
            Ok(db) => {
                conn.db = db;
                conn.handle.info.borrow_mut().db = db;
                w.ok();
            }
            Err(e) => w.error(e),
        },
        Cmd::ClientId => w.int(conn.handle.id as i64),
        Cmd::ClientTracking | Cmd::ClientCaching | Cmd::ClientGetRedir | Cmd::ClientTrackingInfo => {
            return crate::tracking::command(conn, spec, a, w.buf).await;
        }
        // OFF and SKIP are not answered; ON is (see `Client::dispatch`).
        Cmd::ClientReply => match std::str::from_utf8(&a[2]).map(str::to_ascii_lowercase).as_deref() {
            Ok("on") => {
                conn.reply_off = false;
                conn.skip_next = false;
                conn.skip_this = false;
                w.ok();
            }
            Ok("off") => conn.reply_off = true,
            Ok("skip") => conn.skip_next = !conn.reply_off,
            _ => w.error("ERR syntax error"),
        },
        Cmd::ClientSetName => match valid_name(&a[2]) {
            Ok(()) => {
                conn.handle.info.borrow_mut().name = a[2].to_vec();
                w.ok();
            }
            Err(e) => w.error(e),
        },
        Cmd::ClientGetName => {
            let name = conn.handle.info.borrow().name.clone();
            if name.is_empty() {
                w.null()
            } else {
                w.bulk(&name)
            }
        }
        Cmd::ClientInfo => {
            conn.handle.info.borrow_mut().argv_mem = a.iter().map(|x| x.len()).sum();
            let line = conn.handle.describe(std::time::Instant::now()) + "\n";
            w.verbatim(b"txt", line.as_bytes());
        }
        Cmd::ClientList => {
            conn.handle.info.borrow_mut().argv_mem = a.iter().map(|x| x.len()).sum();
            client_list(conn, a, &mut w).await
        }
        Cmd::ClientKill => client_kill(conn, a, &mut w).await,
        Cmd::ClientSetInfo => {
            let v = &a[3];
            if v.iter().any(|&c| c <= b' ' || c > b'~') {
                w.error(&format!("ERR {} cannot contain spaces, newlines or special characters.", lossy(&a[2]).to_lowercase()));
            } else if eq(&a[2], "lib-name") {
                conn.handle.info.borrow_mut().lib_name = v.to_vec();
                w.ok();
            } else if eq(&a[2], "lib-ver") {
                conn.handle.info.borrow_mut().lib_ver = v.to_vec();
                w.ok();
            } else {
                w.error(&format!("ERR Unrecognized option '{}'", lossy(&a[2])));
            }
        }
        Cmd::ClientNoEvict | Cmd::ClientNoTouch => {
            let on = if eq(&a[2], "on") {
                true
            } else if eq(&a[2], "off") {
                false
            } else {
                return w.error("ERR syntax error");
            };
            let mut info = conn.handle.info.borrow_mut();
            if spec.cmd == Cmd::ClientNoEvict {
                info.no_evict = on;
            } else {
                info.no_touch = on;
            }
            w.ok();
        }
        Cmd::ClientPause | Cmd::ClientUnpause => crate::pause::command(&conn.core, spec, a, &mut w).await,
        Cmd::ClientUnblock => {
            if a.len() > 4 {
                return w.error(&format!(
                    "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                    lossy(&a[1])
                ));
            }
            let Some(id) = percore_proto::parse_i64(&a[2]) else {
                return w.error("ERR value is not an integer or out of range");
            };
            let error = match a.get(3) {
                None => false,
                Some(r) if a.len() == 4 && eq(r, "timeout") => false,
                Some(r) if a.len() == 4 && eq(r, "error") => true,
                Some(_) => return w.error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
            };
            let id = id as u64;
            let hits = crate::core::call_all(&conn.core, move |c| crate::blocking::unblock_here(c, id, error)).await;
            w.int(hits.iter().any(|&h| h) as i64);
        }
        Cmd::ClientHelp => help(
            &mut w,
            "CLIENT",
            &[
                "GETNAME", "    Return the name of the current connection.",
                "ID", "    Return the ID of the current connection.",
                "INFO", "    Return information about the current client connection.",
                "KILL <ip:port>", "    Kill connection made from <ip:port>.",
                "UNBLOCK <clientid> [TIMEOUT|ERROR]", "    Unblock the specified blocked client.",
                "PAUSE <timeout> [WRITE|ALL]", "    Suspend all, or just write, clients for <timeout> milliseconds.",
                "UNPAUSE", "    Stop the current client pause, resuming traffic.",
                "KILL <option> <value> [<option> <value> [...]]", "    Kill connections. Options: ID, ADDR, LADDR, TYPE, USER, SKIPME, MAXAGE.",
                "LIST [TYPE <type>] [ID <id> [<id> ...]]", "    Return information about client connections.",
                "SETNAME <name>", "    Assign the name <name> to the current connection.",
                "SETINFO <LIB-NAME|LIB-VER> <value>", "    Set client library name or version.",
                "NO-EVICT (ON|OFF)", "    Protect current client connection from eviction.",
                "NO-TOUCH (ON|OFF)", "    Do not touch LRU/LFU stats of keys accessed by this client.",
            ],
        ),
        Cmd::Info => {
            let text = crate::info::render(conn, a).await;
            w.verbatim(b"txt", text.as_bytes());
        }
        Cmd::ConfigGet => config_get(conn, a, &mut w),
        Cmd::ConfigSet => config_set(conn, a, &mut w).await,
        Cmd::ConfigResetStat => {
            call_all(&conn.core, |c: &Core| {
                *c.stats.borrow_mut() = Default::default();
                c.shard.borrow_mut().stats = Default::default();
            })
            .await;
            w.ok();
        }
        Cmd::ConfigRewrite => {
            let cfg = conn.core.config.borrow().clone();
            match config_rewrite(&cfg, conn.core.global.acl.config_lines(&cfg)) {
                Ok(()) => w.ok(),
                Err(e) => w.error(&e),
            }
        }
        Cmd::ConfigHelp => help(
            &mut w,
            "CONFIG",
            &[
                "GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>", "    Set the configuration <directive> to <value>.",
                "RESETSTAT", "    Reset statistics reported by the INFO command.",
                "REWRITE", "    Rewrite the configuration file.",
            ],
        ),
        Cmd::Time => {
            let us = now_us();
            w.array(2);
            w.bulk((us / 1_000_000).to_string().as_bytes());
            w.bulk((us % 1_000_000).to_string().as_bytes());
        }
        Cmd::Shutdown => shutdown(conn, a, &mut w).await,
        Cmd::Save => match crate::persist::save(&conn.core).await {
            Ok(_) => w.ok(),
            Err(e) if e.starts_with("ERR ") => w.error(&e),
            Err(_) => w.error("ERR Error saving the snapshot; see the log for the cause"),
        },
        Cmd::BgSave => {
            let schedule = match a.len() {
                1 => false,
                2 if eq(&a[1], "schedule") => true,
                _ => return w.error("ERR syntax error"),
            };
            match crate::persist::bgsave(&conn.core, schedule).await {
                Ok(text) => w.simple(text.as_bytes()),
                Err(e) => w.error(&e),
            }
        }
        // CLUSTER, its subcommands, READONLY, READWRITE, ASKING: the table's cluster group.
        Cmd::Asking if crate::cluster::enabled() => {
            conn.asking = true;
            w.ok()
        }
        Cmd::ReadOnly | Cmd::ReadWrite if crate::cluster::enabled() => {
            conn.readonly = spec.cmd == Cmd::ReadOnly;
            w.ok()
        }
        _ if spec.group == "cluster" => crate::cluster::command(&conn.core, spec, a, &mut w).await,
        Cmd::ReplConf => crate::repl::primary::replconf(conn, a, &mut w),
        Cmd::Role => crate::repl::role(conn, &mut w),
        Cmd::Wait => crate::repl::wait_command(conn, a, &mut w).await,
        Cmd::ReplicaOf | Cmd::SlaveOf => crate::repl::replica::replicaof(conn, a, &mut w).await,
        Cmd::LastSave => w.int((conn.core.global.last_save_ms.load(Ordering::Relaxed) / 1000) as i64),
        Cmd::Debug => crate::debug::run(conn, a, &mut w).await,
        Cmd::Command => {
            w.array(COMMANDS.len());
            for c in COMMANDS {
                command_info(&mut w, c);
            }
        }
        Cmd::CommandCount => w.int(COMMANDS.len() as i64),
        Cmd::CommandInfo => {
            if a.len() == 2 {
                w.array(COMMANDS.len());
                for c in COMMANDS {
                    command_info(&mut w, c);
                }
            } else {
                w.array(a.len() - 2);
                for name in a.iter().skip(2) {
                    match find_command(name) {
                        Some(c) => command_info(&mut w, c),
                        None => w.null_array(),
                    }
                }
            }
        }
        Cmd::CommandDocs => {
            let specs: Vec<&CommandSpec> =
                if a.len() == 2 { COMMANDS.iter().collect() } else { a.iter().skip(2).filter_map(find_command).collect() };
            w.map(specs.len());
            for c in specs {
                w.bulk(c.name.as_bytes());
                command_docs(&mut w, c);
            }
        }
        Cmd::CommandGetKeys | Cmd::CommandGetKeysAndFlags => {
            let rest = a.tail(2);
            let (target, keys) = match command_keys(&rest) {
                Ok(found) => found,
                Err(e) => return w.error(e),
            };
            w.array(keys.len());
            for i in keys {
                if spec.cmd == Cmd::CommandGetKeys {
                    w.bulk(&rest[i]);
                    continue;
                }
                w.array(2);
                w.bulk(&rest[i]);
                let flags = key_flags(target, i, &rest);
                w.set(flags.len());
                for f in flags {
                    w.simple(f.as_bytes());
                }
            }
        }
        Cmd::CommandList => {
            let all = || COMMANDS.iter().chain(SUBCOMMANDS.iter());
            let names: Vec<&str> = match a.len() {
                2 => all().map(|c| c.name).collect(),
                5 if eq(&a[2], "filterby") && eq(&a[3], "aclcat") => {
                    all().filter(|c| c.acl.iter().any(|cat| eq(&a[4], cat))).map(|c| c.name).collect()
                }
                5 if eq(&a[2], "filterby") && eq(&a[3], "pattern") => {
                    all().filter(|c| glob_match(&a[4], c.name.as_bytes(), true)).map(|c| c.name).collect()
                }
                5 if eq(&a[2], "filterby") && eq(&a[3], "module") => Vec::new(),
                _ => return w.error("ERR syntax error"),
            };
            w.array(names.len());
            for n in names {
                w.bulk(n.as_bytes());
            }
        }
        Cmd::CommandHelp => help(
            &mut w,
            "COMMAND",
            &[
                "(no subcommand)", "    Return details about all commands.",
                "COUNT", "    Return the total number of commands in this server.",
                "LIST", "    Return a list of all commands in this server.",
                "INFO [<command-name> ...]", "    Return details about multiple commands.",
                "DOCS [<command-name> ...]", "    Return documentation details about multiple commands.",
                "GETKEYS <full-command>", "    Return the keys from a full command.",
                "GETKEYSANDFLAGS <full-command>", "    Return the keys and the access flags from a full command.",
            ],
        ),
        Cmd::ObjectHelp => help(
            &mut w,
            "OBJECT",
            &[
                "ENCODING <key>", "    Return the kind of internal representation used in order to store the value associated with a <key>.",
                "FREQ <key>", "    Return the access frequency index of the <key>.",
                "IDLETIME <key>", "    Return the idle time of the <key>, that is the approximated number of seconds elapsed since the last access to the key.",
                "REFCOUNT <key>", "    Return the number of references of the value associated with the specified <key>.",
            ],
        ),
        Cmd::SlowlogGet | Cmd::SlowlogLen | Cmd::SlowlogReset | Cmd::SlowlogHelp => {
            crate::monitor::slowlog(conn, spec, a, &mut w).await
        }
        Cmd::LatencyLatest
        | Cmd::LatencyHistory
        | Cmd::LatencyReset
        | Cmd::LatencyDoctor
        | Cmd::LatencyHistogram
        | Cmd::LatencyHelp => crate::monitor::latency(conn, spec, a, &mut w).await,
        Cmd::MemoryStats
        | Cmd::MemoryDoctor
        | Cmd::MemoryPurge
        | Cmd::MemoryMallocStats
        | Cmd::MemoryHelp => crate::monitor::memory(conn, spec, &mut w).await,
        // Keyspace commands are routed to shards and never reach this function.
        _ => w.error(&format!("ERR '{}' is not a connection command", spec.name)),
    }
}

/// A command by name, or a subcommand by its full name (`config|set`), as Redis's
/// `lookupCommandBySds`.
pub(crate) fn find_command(name: &[u8]) -> Option<&'static CommandSpec> {
    lookup(name).or_else(|| {
        let s = std::str::from_utf8(name).ok()?;
        let (parent, sub) = s.split_once('|')?;
        lookup_sub(lookup(parent.as_bytes())?, sub.as_bytes())
    })
}

/// A client name CLIENT SETNAME and HELLO SETNAME accept (Redis's `validateClientName`).
pub(crate) fn valid_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    Ok(())
}

fn auth(conn: &mut Client, a: Args, w: &mut ReplyWriter) {
    if a.len() > 3 {
        return w.error("ERR syntax error");
    }
    let (user, pass): (&[u8], &[u8]) = if a.len() == 2 {
        if conn.core.global.acl.default_user().nopass {
            return w.error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        }
        (b"default", &a[1])
    } else {
        (&a[1], &a[2])
    };
    match crate::acl::authenticate(conn, user, pass, &a[0]) {
        Ok(()) => w.ok(),
        Err(e) => w.error(e),
    }
}

fn hello(conn: &mut Client, a: Args, w: &mut ReplyWriter) {
    let mut ver = None;
    if a.len() >= 2 {
        match percore_proto::parse_i64(&a[1]) {
            Some(v) if v == 2 || v == 3 => ver = Some(v),
            Some(_) => return w.error("NOPROTO unsupported protocol version"),
            None => return w.error("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut j = 2;
    let mut name = None;
    while j < a.len() {
        let more = a.len() - 1 - j;
        if eq(&a[j], "auth") && more >= 2 {
            if let Err(e) = crate::acl::authenticate(conn, &a[j + 1], &a[j + 2], &a[0]) {
                return w.error(e);
            }
            j += 3;
        } else if eq(&a[j], "setname") && more >= 1 {
            if let Err(e) = valid_name(&a[j + 1]) {
                return w.error(e);
            }
            name = Some(a[j + 1].to_vec());
            j += 2;
        } else {
            return w.error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                lossy(&a[j])
            ));
        }
    }
    if !conn.authed {
        return w.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(v) = ver {
        conn.proto = if v == 3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        };
        conn.handle.info.borrow_mut().proto = conn.proto;
    }
    if let Some(n) = name {
        conn.handle.info.borrow_mut().name = n;
    }
    w.proto = conn.proto;
    w.map(7);
    w.bulk(b"server");
    w.bulk(b"redis");
    w.bulk(b"version");
    w.bulk(REDIS_VERSION.as_bytes());
    w.bulk(b"proto");
    w.int(if conn.proto == Protocol::Resp3 { 3 } else { 2 });
    w.bulk(b"id");
    w.int(conn.handle.id as i64);
    w.bulk(b"mode");
    w.bulk(b"standalone");
    w.bulk(b"role");
    w.bulk(b"master");
    w.bulk(b"modules");
    w.array(0);
}

async fn client_list(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let mut ids: Option<Vec<u64>> = None;
    let mut kind: Option<&'static str> = None;
    let mut i = 2;
    while i < a.len() {
        if eq(&a[i], "type") && i + 1 < a.len() {
            let t = lossy(&a[i + 1]).to_lowercase();
            kind = Some(match t.as_str() {
                "normal" => "normal",
                "master" => "master",
                "replica" | "slave" => "replica",
                "pubsub" => "pubsub",
                _ => return w.error(&format!("ERR Unknown client type '{t}'")),
            });
            i += 2;
        } else if eq(&a[i], "id") && i + 1 < a.len() {
            let mut v = Vec::new();
            for x in a.iter().skip(i + 1) {
                match percore_proto::parse_i64(x) {
                    Some(n) if n > 0 => v.push(n as u64),
                    _ => return w.error("ERR Invalid client ID"),
                }
            }
            ids = Some(v);
            i = a.len();
        } else {
            return w.error("ERR syntax error");
        }
    }
    let lines = call_all(&conn.core, move |c: &Core| {
        let now = std::time::Instant::now();
        let clients = c.clients.borrow();
        let mut v: Vec<(u64, String)> = clients
            .values()
            .filter(|h| kind.is_none_or(|k| h.kind() == k))
            .map(|h| (h.id, h.describe(now)))
            .collect();
        v.sort();
        v
    })
    .await;
    let mut all: Vec<(u64, String)> = lines.into_iter().flatten().collect();
    all.sort();
    let mut text = String::new();
    for (id, line) in all {
        if ids.as_ref().is_none_or(|v| v.contains(&id)) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    w.verbatim(b"txt", text.as_bytes());
}

#[derive(Clone, Default)]
struct KillFilter {
    id: Option<u64>,
    addr: Option<String>,
    laddr: Option<String>,
    skip: Option<u64>,
    max_age: Option<u64>,
    /// Clients authenticated as this ACL user.
    user: Option<Vec<u8>>,
    /// TYPE: replica links only (Some(true)) or none of them (Some(false), `normal`).
    replica: Option<bool>,
    /// TYPE master: a replica's master client only.
    master: bool,
    none: bool,
}

async fn client_kill(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let old_style = a.len() == 3;
    let mut f = KillFilter {
        skip: Some(conn.handle.id),
        ..Default::default()
    };
    if old_style {
        f.addr = Some(lossy(&a[2]));
        f.skip = None;
    } else {
        if !a.len().is_multiple_of(2) {
            return w.error("ERR syntax error");
        }
        for i in (2..a.len()).step_by(2) {
            let v = lossy(&a[i + 1]);
            if eq(&a[i], "id") {
                match v.parse::<u64>() {
                    Ok(id) if id > 0 => f.id = Some(id),
                    _ => return w.error("ERR client-id should be greater than 0"),
                }
            } else if eq(&a[i], "addr") {
                f.addr = Some(v);
            } else if eq(&a[i], "laddr") {
                f.laddr = Some(v);
            } else if eq(&a[i], "type") {
                match v.to_lowercase().as_str() {
                    "normal" => f.replica = Some(false),
                    "replica" | "slave" => f.replica = Some(true),
                    "master" => f.master = true,
                    "pubsub" => f.none = true,
                    _ => return w.error(&format!("ERR Unknown client type '{v}'")),
                }
            } else if eq(&a[i], "user") {
                if conn.core.global.acl.user(&a[i + 1]).is_none() {
                    return w.error(&format!("ERR No such user '{v}'"));
                }
                f.user = Some(a[i + 1].to_vec());
            } else if eq(&a[i], "skipme") {
                match v.to_lowercase().as_str() {
                    "yes" => f.skip = Some(conn.handle.id),
                    "no" => f.skip = None,
                    _ => return w.error("ERR syntax error"),
                }
            } else if eq(&a[i], "maxage") {
                match v.parse::<u64>() {
                    Ok(n) => f.max_age = Some(n),
                    Err(_) => return w.error("ERR syntax error"),
                }
            } else {
                return w.error("ERR syntax error");
            }
        }
    }
    let self_id = conn.handle.id;
    let killed = call_all(&conn.core, move |c: &Core| {
        if f.none {
            return (0usize, false);
        }
        let now = std::time::Instant::now();
        let mut n = 0;
        let mut me = false;
        for h in c.clients.borrow().values() {
            let matches = f.id.is_none_or(|id| id == h.id)
                && f.addr.as_ref().is_none_or(|x| *x == h.addr.to_string())
                && f.laddr.as_ref().is_none_or(|x| *x == h.laddr.to_string())
                && f.skip.is_none_or(|s| s != h.id)
                && f.user.as_ref().is_none_or(|u| *u == h.info.borrow().user)
                && f.replica.is_none_or(|r| r == h.info.borrow().replica)
                && (!f.master || h.info.borrow().master)
                && f.max_age
                    .is_none_or(|m| now.duration_since(h.created).as_secs() >= m);
            if matches {
                if h.id == self_id {
                    // Killing oneself: reply first, then close (as Redis does).
                    me = true;
                } else {
                    h.kill();
                }
                n += 1;
            }
        }
        (n, me)
    })
    .await;
    let total: usize = killed.iter().map(|k| k.0).sum();
    if killed.iter().any(|k| k.1) {
        conn.close = true;
    }
    if old_style {
        if total == 0 {
            w.error("ERR No such client")
        } else {
            w.ok()
        }
    } else {
        w.int(total as i64)
    }
}

fn config_get(conn: &mut Client, a: Args, w: &mut ReplyWriter) {
    let cfg = conn.core.config.borrow().clone();
    let mut found: Vec<(&str, String)> = Vec::new();
    for pat in a.iter().skip(2) {
        for p in PARAMS {
            if glob_match(pat, p.name.as_bytes(), true) && !found.iter().any(|(n, _)| *n == p.name)
            {
                found.push((p.name, (p.get)(&cfg)));
            }
        }
    }
    w.map(found.len());
    for (n, v) in found {
        w.bulk(n.as_bytes());
        w.bulk(v.as_bytes());
    }
}

async fn config_set(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    if !a.len().is_multiple_of(2) {
        return w.error("ERR wrong number of arguments for 'config|set' command");
    }
    let global = conn.core.global.clone();
    let (version, new) = {
        let mut guard = global.config.lock().unwrap_or_else(|p| p.into_inner());
        let mut cfg: Config = (*guard.1).clone();
        let mut seen: Vec<&str> = Vec::new();
        for i in (2..a.len()).step_by(2) {
            let name = lossy(&a[i]);
            let Some(p) = find_param(&name) else {
                return w.error(&format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                ));
            };
            if seen.contains(&p.name) {
                return w.error(&format!("ERR CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"));
            }
            seen.push(p.name);
            if !p.mutable {
                return w.error(&format!("ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"));
            }
            if crate::config::PROTECTED.contains(&p.name)
                && !crate::debug::allows(guard.1.enable_protected_configs, &conn.handle.addr)
            {
                return w.error(&format!("ERR CONFIG SET failed (possibly related to argument '{name}') - can't set protected config"));
            }
            let mut r = (p.set)(&mut cfg, &[lossy(&a[i + 1])]);
            // More clients need more descriptors: raise the limit now or refuse, as Redis.
            if r.is_ok() && p.name == "maxclients" && cfg.maxclients > guard.1.maxclients {
                r = crate::check_maxclients(cfg.maxclients, conn.core.nshards());
            }
            if let Err(e) = r {
                return w.error(&format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                ));
            }
        }
        // New TLS files or settings: built and put in force for new connections, or the
        // old configuration stays (Redis's error; the reason is logged).
        if cfg.tls != guard.1.tls {
            if let Err(e) = crate::tls::install(&cfg.tls) {
                crate::log::warn(&format!("TLS configuration not updated: {e}"));
                let name = seen
                    .iter()
                    .rev()
                    .find(|n| n.starts_with("tls-"))
                    .unwrap_or(&"tls-cert-file");
                return w.error(&format!("ERR CONFIG SET failed (possibly related to argument '{name}') - Unable to update TLS configuration. Check server logs."));
            }
        }
        // requirepass is the default user's password (and nopass when empty), as Redis.
        if seen.contains(&"requirepass") {
            global.acl.set_default_password(cfg.requirepass.as_deref());
        }
        crate::latency::set_thread_cpu_clock(cfg.latency_clock_cpu);
        guard.0 += 1;
        guard.1 = Arc::new(cfg);
        (guard.0, guard.1.clone())
    };
    call_all(&conn.core, move |c: &Core| {
        c.apply_config(version, new.clone())
    })
    .await;
    w.ok();
}

/// CONFIG REWRITE: updates the lines of settings already in the file and appends the
/// settings that differ from their defaults.
/// `users`: the `user` lines that replace the file's (None with an ACL file: they are
/// dropped), as Redis's `rewriteConfigUserOption`.
fn config_rewrite(cfg: &Config, users: Option<String>) -> Result<(), String> {
    let Some(path) = &cfg.config_file else {
        return Err("ERR The server is running without a config file".into());
    };
    let old =
        std::fs::read_to_string(path).map_err(|e| format!("ERR Rewriting config file: {e}"))?;
    let defaults = Config::default();
    let mut written: Vec<&str> = Vec::new();
    let mut out = String::new();
    let mut users = users.map(|u| (u, false));
    for line in old.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.eq_ignore_ascii_case("user") {
            if let Some((text, written @ false)) = &mut users {
                out.push_str(text);
                *written = true;
            }
            continue;
        }
        match find_param(first).filter(|_| !line.trim_start().starts_with('#')) {
            Some(p) if !written.contains(&p.name) => {
                out.push_str(&format!("{} {}\n", p.name, quote((p.get)(cfg))));
                written.push(p.name);
            }
            Some(_) => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for p in PARAMS {
        if !written.contains(&p.name) && (p.get)(cfg) != (p.get)(&defaults) {
            out.push_str(&format!("{} {}\n", p.name, quote((p.get)(cfg))));
        }
    }
    if let Some((text, false)) = &users {
        out.push_str(text);
    }
    let tmp = format!("{path}.tmp-{}", std::process::id());
    std::fs::write(&tmp, out)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("ERR Rewriting config file: {e}"))
}

fn quote(v: String) -> String {
    if v.is_empty() || v.contains(' ') || v.contains('"') {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v
    }
}

async fn shutdown(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let mut save = None;
    let mut force = false;
    for opt in a.iter().skip(1) {
        if eq(opt, "abort") {
            return w.error("ERR No shutdown in progress.");
        }
        // SAVE and NOSAVE together is Redis's syntax error.
        if eq(opt, "save") && save != Some(false) {
            save = Some(true);
        } else if eq(opt, "nosave") && save != Some(true) {
            save = Some(false);
        } else if eq(opt, "force") {
            force = true;
        } else if !eq(opt, "now") {
            return w.error("ERR syntax error");
        }
    }
    // While a script is busy on any core only SHUTDOWN NOSAVE goes ahead (as Redis).
    if save != Some(false) {
        if let Some(e) = crate::scripting::busy_anywhere() {
            return w.error(e);
        }
    }
    crate::log::notice(&format!(
        "User requested shutdown (client id={} addr={})",
        conn.handle.id, conn.handle.addr
    ));
    // As Redis: without SAVE or NOSAVE, save when `save` points are configured. A failed
    // save cancels the shutdown unless FORCE.
    if crate::persist::shutdown(&conn.core, save, force)
        .await
        .is_err()
    {
        return w.error("ERR Errors trying to SHUTDOWN. Check logs.");
    }
    // Redis closes the connection without a reply when the shutdown goes ahead.
    conn.close = true;
}

/// COMMAND GETKEYS's and GETKEYSANDFLAGS's work, checked in Redis's order
/// (`getKeysSubcommandImpl`): the command `rest` names (a subcommand when it is a container's)
/// and the positions of its keys in `rest`, or Redis's error.
pub(crate) fn command_keys(
    rest: &Args,
) -> Result<(&'static CommandSpec, Vec<usize>), &'static str> {
    let Some(target) = lookup(&rest[0]) else {
        return Err("ERR Invalid command specified");
    };
    let target = if target.is_container() && rest.len() > 1 {
        lookup_sub(target, &rest[1]).unwrap_or(target)
    } else {
        target
    };
    Ok((target, keys_of_spec(target, rest)?))
}

/// The positions of the keys in `rest`, a command line of `target` (ACL checks use them
/// with [`key_flags`]).
pub(crate) fn keys_of_spec(target: &CommandSpec, rest: &Args) -> Result<Vec<usize>, &'static str> {
    if target.first_key == 0 && target.keynum_index().is_none() {
        return Err("ERR The command has no key arguments");
    }
    if !target.arity_ok(rest.len()) {
        return Err("ERR Invalid number of arguments specified for command");
    }
    let keys: Vec<usize> = match target.keynum_index() {
        Some(_) => match target.keynum_key_indices(rest) {
            // ZUNIONSTORE and its kin name their destination first, as Redis lists it.
            Some(r)
                if matches!(
                    target.cmd,
                    Cmd::ZUnionStore | Cmd::ZInterStore | Cmd::ZDiffStore
                ) =>
            {
                std::iter::once(1).chain(r).collect()
            }
            Some(r) => r.collect(),
            // EVAL and its kin may name no key (`no_mandatory_keys`).
            None if target.flags.has(percore_proto::Flags::NO_MANDATORY_KEYS) => Vec::new(),
            None => return Err("ERR Invalid arguments specified for command"),
        },
        None if target.cmd == Cmd::Sort => sort_keys(rest),
        // MIGRATE's KEYS form with a key given names no key: Redis's error for no keys found.
        None if target.cmd == Cmd::Migrate => match target.migrate_key_indices(rest) {
            Some(r) if !r.is_empty() => r.collect(),
            _ => return Err("ERR Invalid arguments specified for command"),
        },
        None if matches!(target.cmd, Cmd::GeoRadius | Cmd::GeoRadiusByMember) => {
            georadius_keyspec_keys(target.cmd, rest)
        }
        None => target.key_indices(rest.len()).collect(),
    };
    if keys.is_empty() && !target.flags.has(percore_proto::Flags::NO_MANDATORY_KEYS) {
        return Err("ERR The command has no key arguments");
    }
    Ok(keys)
}

/// The key-spec flags of the key at position `i` of a command line of `argc` words: those
/// COMMAND INFO declares ([`command_info`]: an explicit spec's, the geo commands', EVAL's,
/// else derived from the write flag), except where COMMAND INFO's one derived spec is
/// coarser than Redis's two: SORT and ZUNIONSTORE/ZINTERSTORE/ZDIFFSTORE, whose
/// destination is OW update and sources RO access, as Redis 7.0 reports them.
pub(crate) fn key_flags(c: &CommandSpec, i: usize, args: &Args) -> &'static [&'static str] {
    const RW_ACCESS_UPDATE: &[&str] = &["RW", "access", "update"];
    // `variable_flags`: Redis's `setGetKeys` and `bitfieldGetKeys` decide.
    match c.cmd {
        Cmd::Set => {
            let get = (3..args.len()).any(|j| eq(&args[j], "get"));
            return if get {
                RW_ACCESS_UPDATE
            } else {
                &["OW", "update"]
            };
        }
        Cmd::BitField => return bitfield_key_flags(args),
        _ => {}
    }
    // Redis 7.0's key specs, searched as Redis searches them, where they find the key.
    if let Some(flags) = docs::find(c.name).and_then(|d| d.key_flags(args, i)) {
        return flags;
    }
    let argc = args.len();
    const RO: &[&str] = &["RO", "access"];
    const OW: &[&str] = &["OW", "update"];
    if let Some(specs) = explicit_key_specs(c.cmd) {
        let covers = |k: &&RangeKeySpec| {
            let last = if k.lastkey >= 0 {
                k.index + k.lastkey
            } else {
                argc as i64 + k.lastkey
            };
            (k.index..=last).contains(&(i as i64))
        };
        return specs.iter().find(covers).map_or(RO, |k| k.flags);
    }
    let destination_first = matches!(
        c.cmd,
        Cmd::GeoSearchStore | Cmd::ZUnionStore | Cmd::ZInterStore | Cmd::ZDiffStore
    );
    let source_first = matches!(c.cmd, Cmd::GeoRadius | Cmd::GeoRadiusByMember | Cmd::Sort);
    if destination_first || source_first {
        return if (i == 1) == destination_first {
            OW
        } else {
            RO
        };
    }
    if let Some((flags, _)) = crate::scripting::eval_key_flags(c.cmd) {
        return flags;
    }
    derived_flags(c)
}

/// BITFIELD's key flags as Redis's `bitfieldGetKeys` finds them: read-only while the
/// operations are well-formed GETs (and OVERFLOWs).
fn bitfield_key_flags(args: &Args) -> &'static [&'static str] {
    let mut i = 2;
    while i < args.len() {
        let rem = args.len() - i - 1;
        let a = &args[i];
        if eq(a, "get") && rem >= 2 {
            i += 3;
        } else if eq(a, "overflow") && rem >= 1 {
            i += 2;
        } else {
            // SET, INCRBY or a syntax error (taken as a write, as Redis does).
            return &["RW", "access", "update"];
        }
    }
    &["RO", "access"]
}

/// The key-spec flags of a command without a spec of its own, from its write flag and
/// whether its keys follow a count.
fn derived_flags(c: &CommandSpec) -> &'static [&'static str] {
    match (
        c.flags.has(percore_proto::Flags::WRITE),
        c.keynum_index().is_some(),
    ) {
        (false, _) => &["RO", "access"],
        (true, true) => &["RW", "access", "delete"],
        (true, false) => &["RW", "update"],
    }
}

/// SORT's keys as Redis's `sortGetKeys` finds them: the sorted key, and the last STORE's
/// destination (LIMIT skips two words, BY and GET one; BY and GET patterns are not keys).
fn sort_keys(args: &Args) -> Vec<usize> {
    let mut keys = vec![1];
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let w = &args[i];
        if eq(w, "limit") {
            i += 2;
        } else if eq(w, "store") && i + 1 < args.len() {
            store = Some(i + 1);
        } else if eq(w, "get") || eq(w, "by") {
            i += 1;
        }
        i += 1;
    }
    keys.extend(store);
    keys
}

/// One COMMAND INFO entry (Redis 7's 10-element form).
fn command_info(w: &mut ReplyWriter, c: &CommandSpec) {
    w.array(10);
    w.bulk(c.name.as_bytes());
    w.int(c.arity as i64);
    let flags: Vec<&str> = c.flags.names().collect();
    w.set(flags.len());
    for f in flags {
        w.simple(f.as_bytes());
    }
    w.int(c.first_key as i64);
    w.int(c.last_key as i64);
    w.int(c.step as i64);
    w.set(c.acl.len());
    for cat in c.acl {
        w.simple(format!("@{cat}").as_bytes());
    }
    // Tips, key specs, key-spec flags and subcommands are sets in RESP3 (as Redis 7.0
    // sends them); the flag names keep Redis's case: RO/RW upper, the rest lower.
    if !crate::scripting::write_tips(w, c.cmd) {
        w.set(0);
    }
    if let Some(d) = docs::find(c.name) {
        // Redis 7.0's own key specs (generated from its command JSON files).
        d.write_key_specs(w);
    } else if geo_key_specs(w, c) {
        // Written: a destination beside the source (GEOSEARCHSTORE, GEORADIUS STORE).
    } else if c.cmd == Cmd::Migrate {
        migrate_key_specs(w);
    } else if let Some(specs) = explicit_key_specs(c.cmd) {
        write_key_specs(w, specs);
    } else if crate::scripting::eval_key_spec(w, c.cmd) {
        // EVAL and its kin: their key spec (with notes) is the scripting module's.
    } else if let Some(at) = c.keynum_index() {
        // The keys follow their count (Redis's keynum key spec).
        key_spec(w, derived_flags(c), at as i64, b"keynum");
        w.bulk(b"keynumidx");
        w.int(0);
        w.bulk(b"firstkey");
        w.int(1);
        w.bulk(b"keystep");
        w.int(1);
    } else if c.first_key > 0 {
        key_spec(w, derived_flags(c), c.first_key as i64, b"range");
        w.bulk(b"lastkey");
        w.int(if c.last_key < 0 {
            c.last_key as i64
        } else {
            (c.last_key - c.first_key) as i64
        });
        w.bulk(b"keystep");
        w.int(c.step as i64);
        w.bulk(b"limit");
        w.int(0);
    } else {
        w.set(0);
    }
    let subs = subcommands(c.cmd);
    w.set(subs.len());
    for s in subs {
        command_info(w, s);
    }
}

/// One Redis 7 key spec whose `begin_search` is an index and `find_keys` a range, written
/// out where the flags [`command_info`] derives from the write flag are not Redis's.
struct RangeKeySpec {
    notes: Option<&'static str>,
    flags: &'static [&'static str],
    index: i64,
    lastkey: i64,
    keystep: i64,
    limit: i64,
}

const fn range_spec(flags: &'static [&'static str], index: i64, lastkey: i64) -> RangeKeySpec {
    RangeKeySpec {
        notes: None,
        flags,
        index,
        lastkey,
        keystep: 1,
        limit: 0,
    }
}

/// Key specs given in full, as Redis's command JSON declares them.
fn explicit_key_specs(cmd: Cmd) -> Option<&'static [RangeKeySpec]> {
    const PFADD: &[RangeKeySpec] = &[range_spec(&["RW", "insert"], 1, 0)];
    const PFCOUNT: &[RangeKeySpec] = &[RangeKeySpec {
        notes: Some("RW because it may change the internal representation of the key, and propagate to replicas"),
        ..range_spec(&["RW", "access"], 1, -1)
    }];
    const PFMERGE: &[RangeKeySpec] = &[
        range_spec(&["RW", "access", "insert"], 1, 0),
        range_spec(&["RO", "access"], 2, -1),
    ];
    const PFDEBUG: &[RangeKeySpec] = &[range_spec(&["RW", "access"], 2, 0)];
    // Bitmaps: SETBIT reads the old bit; BITOP overwrites its destination and reads its
    // sources; BITFIELD reads or writes depending on its operations.
    const SETBIT: &[RangeKeySpec] = &[range_spec(&["RW", "access", "update"], 1, 0)];
    const BITOP: &[RangeKeySpec] = &[
        range_spec(&["OW", "update"], 2, 0),
        range_spec(&["RO", "access"], 3, -1),
    ];
    const BITFIELD: &[RangeKeySpec] = &[RangeKeySpec {
        notes: Some("This command allows both access and modification of the key"),
        ..range_spec(&["RW", "access", "update", "variable_flags"], 1, 0)
    }];
    // Shard channels are declared as keys for cluster routing, flagged as no keys.
    const SHARD_CHANNELS: &[RangeKeySpec] = &[range_spec(&["NOT_KEY"], 1, -1)];
    const SPUBLISH: &[RangeKeySpec] = &[range_spec(&["NOT_KEY"], 1, 0)];
    // MEMORY USAGE only reads the key's size, not its value: RO without access.
    const MEMORY_USAGE: &[RangeKeySpec] = &[range_spec(&["RO"], 2, 0)];
    // RESTORE creates or replaces its key without reading it.
    const RESTORE: &[RangeKeySpec] = &[range_spec(&["OW", "update"], 1, 0)];
    // MIGRATE reads and deletes its keys: the one at 3 or those after KEYS, so this spec
    // runs to the end for `key_flags` (COMMAND INFO writes Redis's two: `migrate_key_specs`).
    const MIGRATE: &[RangeKeySpec] = &[range_spec(&["RW", "access", "delete"], 3, -1)];
    match cmd {
        Cmd::SSubscribe | Cmd::SUnsubscribe => Some(SHARD_CHANNELS),
        Cmd::SPublish => Some(SPUBLISH),
        Cmd::MemoryUsage => Some(MEMORY_USAGE),
        Cmd::Restore | Cmd::RestoreAsking => Some(RESTORE),
        Cmd::Migrate => Some(MIGRATE),
        Cmd::SetBit => Some(SETBIT),
        Cmd::BitOp => Some(BITOP),
        Cmd::BitField => Some(BITFIELD),
        Cmd::PfAdd => Some(PFADD),
        Cmd::PfCount => Some(PFCOUNT),
        Cmd::PfMerge => Some(PFMERGE),
        Cmd::PfDebug => Some(PFDEBUG),
        _ => None,
    }
}

fn write_key_specs(w: &mut ReplyWriter, specs: &[RangeKeySpec]) {
    w.set(specs.len());
    for k in specs {
        write_range_key_spec(w, k);
    }
}

/// One [`RangeKeySpec`]'s map.
fn write_range_key_spec(w: &mut ReplyWriter, k: &RangeKeySpec) {
    key_spec_head(w, k.notes, k.flags);
    begin_search_index(w, k.index);
    find_keys_range(w, k.lastkey, k.keystep, k.limit);
}

/// GEORADIUS's and GEORADIUSBYMEMBER's keys as Redis 7.0's COMMAND GETKEYS finds them by
/// their key specs: the source, then the word after the first STORE and after the first
/// STOREDIST from argument 6 (5 for GEORADIUSBYMEMBER) to the one before the last. (The
/// command itself, and routing, use the last STORE/STOREDIST:
/// [`percore_proto::CommandSpec::store_key_index`].)
fn georadius_keyspec_keys(cmd: Cmd, a: &Args) -> Vec<usize> {
    let start = if cmd == Cmd::GeoRadius { 6 } else { 5 };
    let mut keys = vec![1];
    for keyword in [&b"store"[..], b"storedist"] {
        let end = a.len().saturating_sub(1);
        if let Some(i) = (start..end).find(|&i| a[i].eq_ignore_ascii_case(keyword)) {
            keys.push(i + 1);
        }
    }
    keys
}

/// The key specs of the geo commands that write a destination beside their source:
/// GEOSEARCHSTORE's destination and source by index, GEORADIUS's and GEORADIUSBYMEMBER's
/// source by index and STORE/STOREDIST destinations by keyword, as Redis 7.0 declares them.
/// False (nothing written) for any other command.
fn geo_key_specs(w: &mut ReplyWriter, c: &CommandSpec) -> bool {
    let by_keyword = |w: &mut ReplyWriter, keyword: &[u8], startfrom: i64| {
        key_spec_head(w, None, &["OW", "update"]);
        typed_spec(w, b"keyword", 2);
        w.bulk(b"keyword");
        w.bulk(keyword);
        w.bulk(b"startfrom");
        w.int(startfrom);
        find_keys_range(w, 0, 1, 0);
    };
    match c.cmd {
        Cmd::GeoSearchStore => write_key_specs(
            w,
            &[
                range_spec(&["OW", "update"], 1, 0),
                range_spec(&["RO", "access"], 2, 0),
            ],
        ),
        Cmd::GeoRadius | Cmd::GeoRadiusByMember => {
            let startfrom = if c.cmd == Cmd::GeoRadius { 6 } else { 5 };
            w.set(3);
            write_range_key_spec(w, &range_spec(&["RO", "access"], 1, 0));
            by_keyword(w, b"STORE", startfrom);
            by_keyword(w, b"STOREDIST", startfrom);
        }
        _ => return false,
    }
    true
}

/// MIGRATE's key specs as Redis 7.0 declares them: the key at 3, and the keys after KEYS
/// (searched from the second-to-last argument backwards, `incomplete`).
fn migrate_key_specs(w: &mut ReplyWriter) {
    w.set(2);
    write_range_key_spec(w, &range_spec(&["RW", "access", "delete"], 3, 0));
    key_spec_head(w, None, &["RW", "access", "delete", "incomplete"]);
    typed_spec(w, b"keyword", 2);
    w.bulk(b"keyword");
    w.bulk(b"KEYS");
    w.bulk(b"startfrom");
    w.int(-2);
    find_keys_range(w, -1, 1, 0);
}

/// A key spec's map up to its `begin_search` spec, which the caller writes: its notes (if
/// any), its flags, and the `begin_search` key.
pub(crate) fn key_spec_head(w: &mut ReplyWriter, notes: Option<&str>, flags: &[&str]) {
    w.map(3 + notes.is_some() as usize);
    if let Some(n) = notes {
        w.bulk(b"notes");
        w.bulk(n.as_bytes());
    }
    w.bulk(b"flags");
    w.set(flags.len());
    for f in flags {
        w.simple(f.as_bytes());
    }
    w.bulk(b"begin_search");
}

/// A `begin_search` or `find_keys` spec's map up to its `spec` map of `fields` fields, which
/// the caller writes: its type, and the `spec` key.
pub(crate) fn typed_spec(w: &mut ReplyWriter, kind: &[u8], fields: usize) {
    w.map(2);
    w.bulk(b"type");
    w.bulk(kind);
    w.bulk(b"spec");
    w.map(fields);
}

/// A `begin_search` spec by index.
pub(crate) fn begin_search_index(w: &mut ReplyWriter, index: i64) {
    typed_spec(w, b"index", 1);
    w.bulk(b"index");
    w.int(index);
}

/// The `find_keys` key and a spec of type range.
fn find_keys_range(w: &mut ReplyWriter, lastkey: i64, keystep: i64, limit: i64) {
    w.bulk(b"find_keys");
    typed_spec(w, b"range", 3);
    w.bulk(b"lastkey");
    w.int(lastkey);
    w.bulk(b"keystep");
    w.int(keystep);
    w.bulk(b"limit");
    w.int(limit);
}

/// The one key spec of a COMMAND INFO entry up to its `find_keys` spec's three fields,
/// which the caller writes: flags, `begin_search` by index, and the `find_keys` type.
fn key_spec(w: &mut ReplyWriter, flags: &[&str], index: i64, find: &[u8]) {
    w.set(1);
    key_spec_head(w, None, flags);
    begin_search_index(w, index);
    w.bulk(b"find_keys");
    typed_spec(w, find, 3);
}

fn command_docs(w: &mut ReplyWriter, c: &CommandSpec) {
    let subs = subcommands(c.cmd);
    if let Some(d) = docs::find(c.name) {
        // Redis 7.0's documentation (generated from its command JSON files); the
        // subcommands are percore's.
        d.write(w, !subs.is_empty() as usize);
        return command_docs_subcommands(w, subs);
    }
    w.map(if subs.is_empty() { 3 } else { 4 });
    w.bulk(b"summary");
    w.bulk(c.summary.as_bytes());
    w.bulk(b"since");
    w.bulk(c.since.as_bytes());
    w.bulk(b"group");
    w.bulk(c.group.as_bytes());
    command_docs_subcommands(w, subs);
}

/// COMMAND DOCS's `subcommands` entry of a container (nothing for another command).
fn command_docs_subcommands(w: &mut ReplyWriter, subs: &[CommandSpec]) {
    if !subs.is_empty() {
        w.bulk(b"subcommands");
        w.map(subs.len());
        for s in subs {
            w.bulk(s.name.as_bytes());
            command_docs(w, s);
        }
    }
}

/// Puts the connection back to its initial state (RESET).
fn reset(conn: &mut Client) {
    crate::pubsub::unsubscribe_all(conn);
    conn.db = 0;
    conn.proto = Protocol::Resp2;
    // The connection is the default user's again, authenticated if that needs nothing.
    let user = conn.core.global.acl.default_user();
    conn.authed = crate::acl::default_is_open(&user);
    conn.acl_epoch = conn.core.global.acl.epoch();
    crate::acl::set_conn_user(conn, user);
    let mut info = conn.handle.info.borrow_mut();
    info.name.clear();
    info.db = 0;
    info.proto = Protocol::Resp2;
    info.no_evict = false;
    info.no_touch = false;
}
