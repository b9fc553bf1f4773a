//! Access control as Redis 7.0: users, AUTH, the ACL command family, the ACL log, the ACL
//! file, and the check every command passes at dispatch.
//!
//! The users live once per process in [`Acl`] behind a mutex, touched only by ACL commands,
//! AUTH and CONFIG SET requirepass. Each connection holds an `Arc` of its user as it was
//! when it last looked, and the epoch it looked at; any change bumps the epoch, and the
//! dispatcher re-reads the user before the next command when the epoch moved — one relaxed
//! atomic load per command, so a changed user applies to its connections' next command.
//! A connection whose user allows everything (`default` as shipped) skips the check
//! entirely (`Client::acl_open`), so the common case costs a flag test.
//!
//! Deleting a user, or ACL LOAD replacing it, closes its connections at once on every core
//! (as Redis's `ACLFreeUserAndKillClients`); revoking channels closes its subscribers
//! whose subscriptions the new rules no longer allow (Redis's `ACLKillPubsubClientsIfNeeded`).
//! Turning a user off or changing its passwords leaves its connections open, as Redis 7.0.
//!
//! Rules themselves (parsing, describing, checking) are in [`rules`], which is pure.

mod key_access;
pub mod rules;
mod sha256;

use crate::client::Client;
use crate::core::{call_all, Core};
use percore_proto::{Args, Cmd, CommandSpec, ReplyWriter};
use rules::{Denied, User};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The process's users and ACL log.
pub struct Acl {
    /// Bumped by every change to a user; connections compare it before each command.
    epoch: Epoch,
    state: Mutex<State>,
}

/// On a cache line of its own: every command of every core reads it, and no counter
/// written per command may share its line.
#[repr(align(64))]
struct Epoch(AtomicU64);

struct State {
    users: BTreeMap<Vec<u8>, Arc<User>>,
    /// Newest first; at most `acllog-max-len` entries.
    log: VecDeque<LogEntry>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    Command,
    Key,
    Channel,
    Auth,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
            Reason::Auth => "auth",
        }
    }
}

struct LogEntry {
    count: u64,
    reason: Reason,
    context: &'static str,
    object: Vec<u8>,
    username: Vec<u8>,
    ctime_ms: u64,
    client_info: String,
}

/// Entries this close in time (ms) with the same reason, context, object and user are
/// counted as one (Redis's `ACL_LOG_GROUPING_MAX_TIME_DELTA`).
const LOG_GROUPING_MS: u64 = 60_000;

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

impl Acl {
    /// The users at start: `default`, with `requirepass` as its password, then the
    /// config file's `user` lines or the `aclfile` (not both, as Redis).
    pub fn new(cfg: &crate::config::Config) -> Result<Acl, String> {
        let all = cfg.acl_pubsub_allchannels;
        let mut default = User::default_user();
        if let Some(p) = &cfg.requirepass {
            set_password(&mut default, Some(p));
        }
        let mut users = BTreeMap::new();
        users.insert(b"default".to_vec(), Arc::new(default));
        if !cfg.aclfile.is_empty() && !cfg.users.is_empty() {
            return Err("Configuring percore with users defined in the config file and at the same time an ACL file path is invalid: define either an ACL file or 'user' lines, not both.".into());
        }
        let mut seen: Vec<&str> = Vec::new();
        for line in &cfg.users {
            let name = &line[0];
            if seen.contains(&name.as_str()) {
                return Err(format!("Error in user declaration '{name}': Duplicate user found. A user can only be defined once in config files"));
            }
            seen.push(name);
            if rules::has_spaces(name.as_bytes()) {
                return Err("Spaces not allowed in ACL usernames".into());
            }
            // A `user default` line starts from a reset default user.
            let base = users.get(name.as_bytes()).map(|d| {
                let mut d = User::clone(d);
                let _ = d.apply(b"reset", all);
                d
            });
            let ops: Vec<&[u8]> = line[1..].iter().map(|s| s.as_bytes()).collect();
            let u = rules::set_user(base.as_ref(), name.as_bytes(), &ops, all)
                .map_err(|e| format!("user '{name}': {}", e.trim_start_matches("ERR ")))?;
            users.insert(name.as_bytes().to_vec(), Arc::new(u));
        }
        if !cfg.aclfile.is_empty() {
            users = load_file(&cfg.aclfile, all)
                .map_err(|e| format!("Aborting because of ACL errors: {e}"))?;
        }
        Ok(Acl {
            epoch: Epoch(AtomicU64::new(0)),
            state: Mutex::new(State {
                users,
                log: VecDeque::new(),
            }),
        })
    }

    /// Changes with every change to a user.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.0.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.epoch.0.fetch_add(1, Ordering::AcqRel);
    }

    pub fn user(&self, name: &[u8]) -> Option<Arc<User>> {
        self.lock().users.get(name).cloned()
    }

    pub fn default_user(&self) -> Arc<User> {
        self.user(b"default")
            .expect("the default user always exists: DELUSER refuses it, LOAD recreates it")
    }

    /// CONFIG SET requirepass: the default user's only password, or `nopass` when empty
    /// (Redis's `ACLUpdateDefaultUserPassword`).
    pub fn set_default_password(&self, password: Option<&str>) {
        let mut st = self.lock();
        if let Some(d) = st.users.get_mut(b"default".as_slice()) {
            set_password(Arc::make_mut(d), password);
        }
        drop(st);
        self.changed();
    }

    /// The `user` lines CONFIG REWRITE writes: every user, or None when users live in an
    /// ACL file (Redis then drops the config file's `user` lines).
    pub fn config_lines(&self, cfg: &crate::config::Config) -> Option<String> {
        cfg.aclfile
            .is_empty()
            .then(|| file_text(&self.lock().users))
    }

    fn add_log(&self, mut e: LogEntry, max_len: usize) {
        let mut st = self.lock();
        let found = st.log.iter().take(10).position(|o| {
            o.reason == e.reason
                && o.context == e.context
                && o.ctime_ms.abs_diff(e.ctime_ms) <= LOG_GROUPING_MS
                && o.object == e.object
                && o.username == e.username
        });
        if let Some(i) = found {
            let mut o = st.log.remove(i).expect("position found above");
            o.count += 1;
            o.ctime_ms = e.ctime_ms;
            o.client_info = std::mem::take(&mut e.client_info);
            st.log.push_front(o);
            return;
        }
        st.log.push_front(e);
        st.log.truncate(max_len);
    }
}

fn set_password(u: &mut User, password: Option<&str>) {
    let _ = u.apply(b"resetpass", false);
    match password {
        Some(p) => {
            let mut op = b">".to_vec();
            op.extend_from_slice(p.as_bytes());
            let _ = u.apply(&op, false);
        }
        None => {
            let _ = u.apply(b"nopass", false);
        }
    }
}

/// Reads an ACL file as Redis's `ACLLoadFromFile`: every line `user <name> <rules...>`;
/// any error refuses the whole file, with every problem found in one message.
fn load_file(path: &str, all: bool) -> Result<BTreeMap<Vec<u8>, Arc<User>>, String> {
    let text = std::fs::read(path).map_err(|e| {
        format!(
            "Error loading ACLs, opening file '{path}': {}",
            crate::config::os_error_text(&e)
        )
    })?;
    let mut users: BTreeMap<Vec<u8>, Arc<User>> = BTreeMap::new();
    let mut errors = String::new();
    for (i, line) in text.split(|&c| c == b'\n').enumerate() {
        let n = i + 1;
        let line = trim(line, b" \t\r\n");
        if line.is_empty() {
            continue;
        }
        let words: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
        if words[0] != b"user" || words.len() < 2 {
            errors.push_str(&format!(
                "{path}:{n} should start with user keyword followed by the username. "
            ));
            continue;
        }
        let name = words[1];
        if rules::has_spaces(name) {
            errors.push_str(&format!(
                "'{path}:{n}: username '{}' contains invalid characters. ",
                String::from_utf8_lossy(name)
            ));
            continue;
        }
        if users.contains_key(name) {
            errors.push_str(&format!(
                "WARNING: Duplicate user '{}' found on line {n}. ",
                String::from_utf8_lossy(name)
            ));
            continue;
        }
        let Ok(merged) = rules::merge_selectors(&words[2..]) else {
            errors.push_str(&format!(
                "{path}:{n}: Unmatched parenthesis in selector definition."
            ));
            continue;
        };
        let mut u = User::new(name, all);
        let mut syntax_error = false;
        for op in &merged {
            let op = trim(op, b"\t\r\n");
            if let Err(e) = u.apply(op, all) {
                if e == rules::RuleError::Unknown {
                    errors.push_str(&format!(
                        "{path}:{n}: Error in applying operation '{}': {}. ",
                        String::from_utf8_lossy(op),
                        e.message()
                    ));
                } else if !syntax_error {
                    errors.push_str(&format!("{path}:{n}: {}. ", e.message()));
                    syntax_error = true;
                }
            }
        }
        users.insert(name.to_vec(), Arc::new(u));
    }
    if !errors.is_empty() {
        errors.push_str(
            "WARNING: ACL errors detected, no change to the previously active ACL rules was performed",
        );
        return Err(errors);
    }
    users
        .entry(b"default".to_vec())
        .or_insert_with(|| Arc::new(User::default_user()));
    Ok(users)
}

fn trim<'a>(mut s: &'a [u8], set: &[u8]) -> &'a [u8] {
    while let [first, rest @ ..] = s {
        if !set.contains(first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !set.contains(last) {
            break;
        }
        s = rest;
    }
    s
}

/// The ACL file's text: one `user` line per user, in name order.
fn file_text(users: &BTreeMap<Vec<u8>, Arc<User>>) -> String {
    let mut s = String::new();
    for (name, u) in users {
        s.push_str("user ");
        s.push_str(&String::from_utf8_lossy(name));
        s.push(' ');
        s.push_str(&u.describe());
        s.push('\n');
    }
    s
}

/// Writes the file beside itself and renames it into place, so a crash leaves the old or
/// the new file, never half of one.
fn save_file(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!(
        "{path}.tmp-{}-{}",
        std::process::id(),
        crate::core::now_ms()
    );
    let r = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Visits the keys of a command line with the access each needs, as Redis's key specs
/// give it ([`key_access`]), at the positions COMMAND GETKEYS finds (see
/// [`rules::KeysOf`]).
pub fn keys_of(spec: &CommandSpec, args: &Args, f: &mut dyn FnMut(usize, u8) -> bool) -> bool {
    let access = key_access_table()[spec.cmd as usize];
    let need = |n: usize, i: usize| match (spec.cmd, access) {
        // SET reads only with GET; BITFIELD writes only with SET or INCRBY (their
        // `variable_flags`, as Redis's `setGetKeys` and `bitfieldGetKeys`).
        (Cmd::Set, _) => match args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get")) {
            true => rules::READ_WRITE,
            false => rules::WRITE,
        },
        (Cmd::BitField, _) => {
            let writes = args
                .iter()
                .skip(2)
                .any(|a| a.eq_ignore_ascii_case(b"set") || a.eq_ignore_ascii_case(b"incrby"));
            if writes {
                rules::READ_WRITE
            } else {
                rules::READ
            }
        }
        (_, Some((first, _))) if n == 0 => first,
        (_, Some((_, rest))) => rest,
        (_, None) => derived_access(spec, i, args),
    };
    // Keys at fixed positions (most commands) are read off the table, without the list
    // COMMAND GETKEYS builds.
    let fixed = spec.first_key > 0
        && spec.keynum_index().is_none()
        && !matches!(
            spec.cmd,
            Cmd::Sort | Cmd::GeoRadius | Cmd::GeoRadiusByMember | Cmd::Migrate
        );
    if fixed {
        return spec
            .key_indices(args.len())
            .enumerate()
            .all(|(n, i)| f(i, need(n, i)));
    }
    match crate::commands::keys_of_spec(spec, args) {
        Ok(keys) => keys.into_iter().enumerate().all(|(n, i)| f(i, need(n, i))),
        Err(_) => true,
    }
}

fn derived_access(spec: &CommandSpec, i: usize, args: &Args) -> u8 {
    let mut need = 0;
    for f in crate::commands::key_flags(spec, i, args) {
        match *f {
            "access" => need |= rules::READ,
            "insert" | "delete" | "update" => need |= rules::WRITE,
            _ => {}
        }
    }
    need
}

/// [`key_access::KEY_ACCESS`] by command-table row.
fn key_access_table() -> &'static [Option<(u8, u8)>; percore_proto::command::CMD_COUNT] {
    static TABLE: std::sync::OnceLock<[Option<(u8, u8)>; percore_proto::command::CMD_COUNT]> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [None; percore_proto::command::CMD_COUNT];
        for &(name, first, rest) in key_access::KEY_ACCESS {
            if let Some(spec) = rules::find_command(name.as_bytes()) {
                t[spec.cmd as usize] = Some((first, rest));
            }
        }
        t
    })
}

/// Makes `user` the connection's user.
pub fn set_conn_user(conn: &mut Client, user: Arc<User>) {
    conn.acl_open = user.is_unrestricted();
    conn.handle.info.borrow_mut().user = user.name.clone();
    conn.user = user;
}

/// Re-reads the connection's user after a change; false when the user is gone (the
/// connection is being closed).
pub fn refresh(conn: &mut Client) -> bool {
    let acl = &conn.core.global.acl;
    conn.acl_epoch = acl.epoch();
    match acl.user(&conn.user.name) {
        Some(u) => {
            set_conn_user(conn, u);
            true
        }
        None => {
            conn.close = true;
            false
        }
    }
}

fn context(conn: &Client) -> &'static str {
    if conn.in_script {
        "lua"
    } else if conn.multi.is_some() || conn.in_exec {
        "multi"
    } else {
        "toplevel"
    }
}

fn log_denial(conn: &Client, reason: Reason, object: &[u8], username: &[u8]) {
    let max = conn.core.config.borrow().acllog_max_len;
    conn.core.global.acl.add_log(
        LogEntry {
            count: 1,
            reason,
            context: context(conn),
            object: object.to_vec(),
            username: username.to_vec(),
            ctime_ms: crate::core::now_ms(),
            client_info: conn.handle.describe(std::time::Instant::now()),
        },
        max,
    );
}

/// Whether the connection's user may run this command line; Err is the reply, in the
/// words of the context (top level, EXEC, or a script's `redis.call`), and the denial is
/// logged.
pub fn check(conn: &mut Client, spec: &'static CommandSpec, args: &Args) -> Result<(), String> {
    let denied = match conn.user.check(spec, args, keys_of) {
        Ok(()) if matches!(spec.cmd, Cmd::Sort | Cmd::SortRo) => {
            return sort_patterns(conn, spec, args)
        }
        Ok(()) => return Ok(()),
        Err(d) => d,
    };
    let (reason, object) = match denied {
        Denied::Command => (Reason::Command, spec.name.as_bytes()),
        Denied::Key(i) => (Reason::Key, &args[i]),
        Denied::Channel(i) => (Reason::Channel, &args[i]),
    };
    log_denial(conn, reason, object, &conn.user.name);
    Err(if conn.in_script {
        let why = match denied {
            Denied::Command => "can't run this command or subcommand",
            Denied::Key(_) => {
                "can't access at least one of the keys mentioned in the command arguments"
            }
            Denied::Channel(_) => "can't publish to the channel mentioned in the command",
        };
        format!("ERR The user executing the script {why}")
    } else if conn.in_exec {
        let why = match denied {
            Denied::Command => "no permission to execute the command or subcommand",
            Denied::Key(_) => "no permission to touch the specified keys",
            Denied::Channel(_) => "no permission to access one of the channels used as arguments",
        };
        format!("NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {why}")
    } else {
        match denied {
            Denied::Command => format!(
                "NOPERM this user has no permissions to run the '{}' command",
                spec.name
            ),
            Denied::Key(_) => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
            Denied::Channel(_) => "NOPERM this user has no permissions to access one of the channels used as arguments".into(),
        }
    })
}

/// SORT's BY (with a `*` pattern) and GET options read keys the command line does not
/// name: only a user who may read every key may use them (Redis's `sortCommandGeneric`
/// refuses them while parsing, in this order, without an ACL LOG entry).
fn sort_patterns(conn: &Client, spec: &CommandSpec, args: &Args) -> Result<(), String> {
    let mut full = None;
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = &args[j];
        let is = |w: &str| a.eq_ignore_ascii_case(w.as_bytes());
        if is("asc") || is("desc") || is("alpha") {
        } else if is("limit") && left >= 2 {
            j += 2;
        } else if is("store") && left >= 1 {
            j += 1;
        } else if (is("by") || is("get")) && left >= 1 {
            let by = is("by");
            if !by || args[j + 1].contains(&b'*') {
                let ok =
                    *full.get_or_insert_with(|| conn.user.reads_every_key(spec, args, keys_of));
                if !ok {
                    let opt = if by { "BY" } else { "GET" };
                    return Err(format!(
                        "ERR {opt} option of SORT denied due to insufficient ACL permissions."
                    ));
                }
            }
            j += 1;
        } else {
            break;
        }
        j += 1;
    }
    Ok(())
}

/// Whether every queued command of a transaction would pass its check now (without
/// logging): EXEC then runs them in one hop; else each is dispatched and checked.
pub fn allows_all(
    conn: &Client,
    cmds: &[(&'static CommandSpec, percore_proto::OwnedArgs)],
) -> bool {
    conn.acl_open
        || cmds
            .iter()
            .all(|(spec, a)| conn.user.check(spec, &a.args(), keys_of).is_ok())
}

/// AUTH and HELLO's AUTH: on success the connection is the user's; on failure the
/// attempt is logged (`argv0` as the object, as Redis logs it) and Err is the reply.
pub fn authenticate(
    conn: &mut Client,
    name: &[u8],
    password: &[u8],
    argv0: &[u8],
) -> Result<(), &'static str> {
    match conn.core.global.acl.user(name) {
        Some(u) if u.password_ok(password) => {
            conn.authed = true;
            conn.acl_epoch = conn.core.global.acl.epoch();
            set_conn_user(conn, u);
            Ok(())
        }
        _ => {
            log_denial(conn, Reason::Auth, argv0, name);
            crate::log::warn(&format!("failed AUTH from {}", conn.handle.addr));
            Err(WRONGPASS)
        }
    }
}

/// Whether a new connection starts authenticated: the default user is on and `nopass`.
pub fn default_is_open(u: &User) -> bool {
    u.enabled && u.nopass
}

/// Closes, on every core, the connections authenticated as one of `names` (all but the
/// default user's when `names` is None); the calling connection closes after its reply.
async fn kill_users(conn: &mut Client, names: Option<Vec<Vec<u8>>>) {
    let me = conn.handle.id;
    let mine = match &names {
        Some(n) => n.contains(&conn.user.name),
        None => conn.user.name != b"default",
    };
    if mine {
        conn.close = true;
    }
    call_all(&conn.core, move |c: &Core| {
        for h in c.clients.borrow().values() {
            if h.id == me {
                continue;
            }
            let user = h.info.borrow().user.clone();
            let hit = match &names {
                Some(n) => n.contains(&user),
                None => user != b"default",
            };
            if hit {
                h.kill();
            }
        }
    })
    .await;
}

/// Closes the subscribers of `user` holding a subscription the user's new rules no longer
/// allow (Redis's `ACLKillPubsubClientsIfNeeded`).
async fn kill_subscribers(conn: &mut Client, old: &User, new: &User) {
    if new.selectors.iter().any(|s| s.allchannels) {
        return;
    }
    let allowed: Vec<Vec<u8>> = new
        .selectors
        .iter()
        .flat_map(|s| s.channels.iter().cloned())
        .collect();
    let kept = old
        .selectors
        .iter()
        .all(|s| !s.allchannels && s.channels.iter().all(|c| allowed.contains(c)));
    if kept {
        return;
    }
    let name = new.name.clone();
    let me = conn.handle.id;
    let self_hit = call_all(&conn.core, move |c: &Core| {
        let mut self_hit = false;
        c.pubsub.borrow().each_subscription(|kind, channel, h| {
            if h.info.borrow().user != name {
                return;
            }
            let ok = allowed.iter().any(|p| match kind {
                crate::pubsub::Kind::Pattern => p.as_slice() == channel,
                _ => percore_shard::glob::glob_match(p, channel, false),
            });
            if !ok {
                if h.id == me {
                    self_hit = true;
                } else {
                    h.kill();
                }
            }
        });
        self_hit
    })
    .await;
    if self_hit.into_iter().any(|x| x) {
        conn.close = true;
    }
}

fn random_hex(chars: usize) -> String {
    use std::io::Read;
    let mut bytes = vec![0u8; chars.div_ceil(2)];
    let got = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if got.is_err() {
        // No urandom: fall back on a hash chain of the clock (still unpredictable enough
        // for a suggestion; GENPASS is a convenience, users may pick their own).
        let mut seed = crate::core::now_us().to_le_bytes().to_vec();
        for chunk in bytes.chunks_mut(32) {
            let d = sha256::digest(&seed);
            chunk.copy_from_slice(&d[..chunk.len()]);
            seed = d.to_vec();
        }
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s.truncate(chars);
    s
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe_selector(w: &mut ReplyWriter, s: &rules::Selector) {
    w.bulk(b"commands");
    w.bulk(s.describe_commands().as_bytes());
    w.bulk(b"keys");
    w.bulk(s.describe_keys().as_bytes());
    w.bulk(b"channels");
    w.bulk(s.describe_channels().as_bytes());
}

const HELP: &[&str] = &[
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
];

/// The ACL command family.
pub async fn command(
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: Args<'_>,
    w: &mut ReplyWriter<'_>,
) {
    let acl = &conn.core.global.acl;
    let all = conn.core.config.borrow().acl_pubsub_allchannels;
    match spec.cmd {
        Cmd::AclSetUser => {
            let name = &a[2];
            if rules::has_spaces(name) {
                return w.error("ERR Usernames can't contain spaces or null characters");
            }
            let ops: Vec<&[u8]> = (3..a.len()).map(|i| &a[i]).collect();
            let (old, new) = {
                let mut st = acl.lock();
                let old = st.users.get(name).cloned();
                match rules::set_user(old.as_deref(), name, &ops, all) {
                    Ok(u) => {
                        let u = Arc::new(u);
                        st.users.insert(name.to_vec(), u.clone());
                        (old, u)
                    }
                    Err(e) => return w.error(&e),
                }
            };
            acl.changed();
            if let Some(old) = old {
                kill_subscribers(conn, &old, &new).await;
            }
            w.ok();
        }
        Cmd::AclDelUser => {
            if (2..a.len()).any(|i| &a[i] == b"default") {
                return w.error("ERR The 'default' user cannot be removed");
            }
            let mut gone = Vec::new();
            {
                let mut st = acl.lock();
                for i in 2..a.len() {
                    if st.users.remove(&a[i]).is_some() {
                        gone.push(a[i].to_vec());
                    }
                }
            }
            let n = gone.len();
            if n > 0 {
                acl.changed();
                kill_users(conn, Some(gone)).await;
            }
            w.int(n as i64);
        }
        Cmd::AclGetUser => {
            let Some(u) = acl.user(&a[2]) else {
                return w.null();
            };
            w.map(6);
            w.bulk(b"flags");
            let flags = u.flag_names();
            w.set(flags.len());
            for f in flags {
                w.bulk(f.as_bytes());
            }
            w.bulk(b"passwords");
            w.array(u.passwords.len());
            for p in &u.passwords {
                w.bulk(p.as_bytes());
            }
            describe_selector(w, &u.selectors[0]);
            w.bulk(b"selectors");
            w.array(u.selectors.len() - 1);
            for s in &u.selectors[1..] {
                w.map(3);
                describe_selector(w, s);
            }
        }
        Cmd::AclList | Cmd::AclUsers => {
            let st = acl.lock();
            w.array(st.users.len());
            for (name, u) in &st.users {
                if spec.cmd == Cmd::AclUsers {
                    w.bulk(name);
                } else {
                    let line = format!("user {} {}", lossy(name), u.describe());
                    w.bulk(line.as_bytes());
                }
            }
        }
        Cmd::AclWhoami => w.bulk(&conn.user.name.clone()),
        Cmd::AclLoad | Cmd::AclSave => {
            let path = conn.core.config.borrow().aclfile.clone();
            if path.is_empty() {
                return w.error("ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.");
            }
            if spec.cmd == Cmd::AclSave {
                let text = file_text(&acl.lock().users);
                return match save_file(&path, &text) {
                    Ok(()) => w.ok(),
                    Err(e) => {
                        crate::log::warn(&format!("Saving the ACL file '{path}': {e}"));
                        w.error("ERR There was an error trying to save the ACLs. Please check the server logs for more information")
                    }
                };
            }
            match load_file(&path, all) {
                Ok(users) => {
                    acl.lock().users = users;
                    acl.changed();
                    // Every user but `default` is replaced: their connections close.
                    kill_users(conn, None).await;
                    w.ok();
                }
                Err(e) => w.error(&format!("ERR {e}")),
            }
        }
        Cmd::AclCat => {
            if a.len() == 2 {
                w.array(rules::CATEGORIES.len());
                for c in rules::CATEGORIES {
                    w.bulk(c.as_bytes());
                }
                return;
            }
            if a.len() > 3 {
                return w.error(&spec.arity_error());
            }
            let Some(cat) = rules::category(&a[2]) else {
                let shown = &a[2][..a[2].len().min(128)];
                return w.error(&format!("ERR Unknown category '{}'", lossy(shown)));
            };
            let names: Vec<&str> = percore_proto::command::COMMANDS
                .iter()
                .flat_map(|c| std::iter::once(c).chain(percore_proto::command::subcommands(c.cmd)))
                .filter(|c| rules::in_category(c, cat))
                .map(|c| c.name)
                .collect();
            w.array(names.len());
            for n in names {
                w.bulk(n.as_bytes());
            }
        }
        Cmd::AclGenPass => {
            if a.len() > 3 {
                return w.error(&spec.arity_error());
            }
            let bits = match a.get(2) {
                None => 256,
                Some(b) => match percore_proto::parse_i64(b) {
                    Some(n) => n,
                    None => return w.error("ERR value is not an integer or out of range"),
                },
            };
            if bits <= 0 || bits > 4096 {
                return w.error("ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096");
            }
            w.bulk(random_hex((bits as usize).div_ceil(4)).as_bytes());
        }
        Cmd::AclLog => acl_log(conn, spec, &a, w),
        Cmd::AclDryRun => {
            let Some(u) = acl.user(&a[2]) else {
                return w.error(&format!("ERR User '{}' not found", lossy(&a[2])));
            };
            let rest = a.tail(3);
            let found = percore_proto::lookup(&rest[0]).and_then(|c| {
                match (c.is_container(), rest.get(1)) {
                    (true, Some(sub)) => percore_proto::command::lookup_sub(c, sub),
                    _ => Some(c),
                }
            });
            let Some(target) = found else {
                return w.error(&format!("ERR Command '{}' not found", lossy(&rest[0])));
            };
            if !target.arity_ok(rest.len()) {
                return w.error(&format!(
                    "ERR wrong number of arguments for '{}' command",
                    target.name
                ));
            }
            match u.check(target, &rest, keys_of) {
                Ok(()) => w.ok(),
                Err(Denied::Command) => w.bulk(
                    format!(
                        "This user has no permissions to run the '{}' command",
                        target.name
                    )
                    .as_bytes(),
                ),
                Err(Denied::Key(i)) => w.bulk(
                    format!(
                        "This user has no permissions to access the '{}' key",
                        lossy(&rest[i])
                    )
                    .as_bytes(),
                ),
                Err(Denied::Channel(i)) => w.bulk(
                    format!(
                        "This user has no permissions to access the '{}' channel",
                        lossy(&rest[i])
                    )
                    .as_bytes(),
                ),
            }
        }
        Cmd::AclHelp => crate::commands::help(w, "ACL", HELP),
        _ => w.error(&format!("ERR '{}' is not an ACL command", spec.name)),
    }
}

fn acl_log(conn: &Client, spec: &CommandSpec, a: &Args, w: &mut ReplyWriter) {
    let acl = &conn.core.global.acl;
    if a.len() > 3 {
        return w.error(&spec.arity_error());
    }
    let mut count = 10i64;
    if let Some(arg) = a.get(2) {
        if arg.eq_ignore_ascii_case(b"reset") {
            acl.lock().log.clear();
            return w.ok();
        }
        match percore_proto::parse_i64(arg) {
            Some(n) => count = n.max(0),
            None => return w.error("ERR value is not an integer or out of range"),
        }
    }
    let st = acl.lock();
    let n = (count as u64).min(st.log.len() as u64) as usize;
    let now = crate::core::now_ms();
    w.array(n);
    for e in st.log.iter().take(n) {
        w.map(7);
        w.bulk(b"count");
        w.int(e.count as i64);
        w.bulk(b"reason");
        w.bulk(e.reason.name().as_bytes());
        w.bulk(b"context");
        w.bulk(e.context.as_bytes());
        w.bulk(b"object");
        w.bulk(&e.object);
        w.bulk(b"username");
        w.bulk(&e.username);
        w.bulk(b"age-seconds");
        let age = now.saturating_sub(e.ctime_ms) as f64 / 1000.0;
        w.double_text(format!("{age}").as_bytes());
        w.bulk(b"client-info");
        w.bulk(e.client_info.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip() {
        let dir = std::env::temp_dir().join(format!("percore-acl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.acl").display().to_string();
        std::fs::write(
            &path,
            "user alice on >pw ~a* &news +get (~b* +set)\n\nuser default on nopass ~* &* +@all\n",
        )
        .unwrap();
        let users = load_file(&path, false).unwrap();
        let text = file_text(&users);
        assert_eq!(text, "user alice on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~a* resetchannels &news -@all +get (~b* resetchannels -@all +set)\nuser default on nopass ~* &* +@all\n");
        save_file(&path, &text).unwrap();
        assert_eq!(file_text(&load_file(&path, false).unwrap()), text);
        std::fs::write(&path, "user a on +nosuch\nbogus\nuser a on\n").unwrap();
        assert_eq!(
            load_file(&path, false).unwrap_err(),
            format!("{path}:1: Error in applying operation '+nosuch': Unknown command or category name in ACL. {path}:2 should start with user keyword followed by the username. WARNING: Duplicate user 'a' found on line 3. WARNING: ACL errors detected, no change to the previously active ACL rules was performed")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
