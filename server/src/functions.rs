//! Redis 7.0 Functions: FUNCTION LOAD/DELETE/FLUSH/LIST/DUMP/RESTORE/STATS/KILL/HELP, FCALL
//! and FCALL_RO, with Redis's replies and error texts (its `functions.c`, `function_lua.c`).
//!
//! Libraries are global. The process keeps one registry (library name → its code and the
//! functions it registered) behind a mutex, with a generation number bumped on every change.
//! A change is checked first: the library's code runs on the Lua state of the core that
//! received the command (`scripting::load_library`: the load-time API only, a 500 ms limit),
//! and only a library that loads there enters the registry, under the mutex, after its
//! name and its functions' names are checked again (another core may have loaded meanwhile).
//! So a LOAD is accepted or refused for all cores at once. Each core compiles the registry's
//! libraries into its own Lua state when it first runs a function after a change (one load
//! per library per change; the generation check is one atomic read per FCALL). Library code
//! sees nothing but `redis.register_function`, `redis.log` and the constants, so it
//! registers the same functions on every core.
//!
//! FCALL runs the function through the same path as EVAL (`scripting::execute`): a
//! transaction over its declared keys, on any shards, with undeclared keys locked as used.
//!
//! FUNCTION DUMP writes Redis's payload byte for byte ([`percore_shard::rdb`]), and RESTORE reads
//! what Redis writes. Snapshots keep the libraries as that payload in the manifest
//! ([`crate::persist`]); [`restore_at_start`] puts them back.
//!
//! FUNCTION KILL and FUNCTION STATS see the busy scripts of every core (`scripting`, "Busy
//! scripts"): KILL kills a busy function that has not written (UNKILLABLE after a write, BUSY
//! when the busy script is an EVAL); STATS shows a busy function's name, command and
//! duration, and answers BUSY while an EVAL is busy, as Redis does.
//!
//! Deviations: FUNCTION STATS shows a function only once it is busy (in Redis, the running
//! one, which another client can only see while it is busy). Libraries are listed by name,
//! where Redis's order is its hash table's.
//! RESTORE runs library code under LOAD's 500 ms limit (Redis: none), so a payload cannot
//! stall a core.

use crate::client::{Client, Peer};
use crate::scripting::{Origin, Registered, FUNCTION_FLAGS, LOAD_TIMEOUT};
use mlua::Function;
use percore_proto::{Args, Cmd, ReplyWriter};
use percore_shard::rdb;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// A function as the registry describes it.
#[derive(Clone)]
struct FunctionInfo {
    name: String,
    desc: Option<Vec<u8>>,
    /// Bits of [`FUNCTION_FLAGS`].
    flags: u8,
}

#[derive(Clone)]
struct Library {
    /// The whole code, shebang line included (what LIST WITHCODE and DUMP give).
    code: Arc<[u8]>,
    functions: Vec<FunctionInfo>,
}

type Libraries = BTreeMap<String, Library>;

static REGISTRY: LazyLock<Mutex<Libraries>> = LazyLock::new(Default::default);
static GENERATION: AtomicU64 = AtomicU64::new(1);

fn registry() -> std::sync::MutexGuard<'static, Libraries> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The number of libraries and of functions (INFO's `number_of_libraries`,
/// `number_of_functions`).
pub fn counts() -> (usize, usize) {
    let r = registry();
    (r.len(), r.values().map(|l| l.functions.len()).sum())
}

/// A function compiled in this core's Lua state (in its registry).
struct Compiled {
    f: mlua::RegistryKey,
    flags: u8,
}

/// This core's compiled functions, by lower-case name (function names are case-insensitive
/// in Redis), and the registry generation they were compiled from.
#[derive(Default)]
struct CoreFunctions {
    generation: u64,
    by_name: HashMap<String, Rc<Compiled>>,
}

thread_local! {
    static COMPILED: RefCell<CoreFunctions> = RefCell::new(CoreFunctions::default());
}

/// The function `name` compiled on this core, recompiling the registry first if it changed.
fn lookup(name: &[u8]) -> Option<Rc<Compiled>> {
    let g = GENERATION.load(Ordering::Acquire);
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        if c.generation != g {
            let libs: Vec<(String, Arc<[u8]>)> = registry()
                .iter()
                .map(|(n, l)| (n.clone(), l.code.clone()))
                .collect();
            c.by_name.clear();
            if let Ok(e) = crate::scripting::engine() {
                e.lua.expire_registry_values();
            }
            for (lib, code) in libs {
                let body = match metadata(&code) {
                    Ok(md) => md.code,
                    Err(_) => continue,
                };
                match crate::scripting::load_library(body, None) {
                    Ok(regs) => {
                        for r in regs {
                            let c2 = Compiled {
                                f: r.f,
                                flags: r.flags,
                            };
                            c.by_name.insert(r.name.to_ascii_lowercase(), Rc::new(c2));
                        }
                    }
                    // It loaded where it was accepted: only memory can fail it here.
                    Err(e) => crate::log::warn(&format!("library {lib} failed to load: {e}")),
                }
            }
            c.generation = g;
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        c.by_name.get(&name).cloned()
    })
}

/// A library's shebang, parsed (Redis's `functionExtractLibMetaData`).
struct Metadata<'a> {
    engine: String,
    name: String,
    /// The code after the shebang line, from its newline on (line numbers stay right).
    code: &'a [u8],
}

fn metadata(payload: &[u8]) -> Result<Metadata<'_>, String> {
    if !payload.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let Some(nl) = payload.iter().position(|&b| b == b'\n') else {
        return Err("Invalid library metadata".into());
    };
    let line = String::from_utf8_lossy(&payload[..nl]);
    let mut parts = line.split_ascii_whitespace();
    let Some(first) = parts.next() else {
        return Err("Invalid library metadata".into());
    };
    let engine = first.get(2..).unwrap_or("").to_string();
    let mut name = None;
    for part in parts {
        let is_name = part.len() >= 5 && part[..5].eq_ignore_ascii_case("name=");
        if !is_name {
            return Err(format!("Invalid metadata value given: {part}"));
        }
        if name.is_some() {
            return Err("Invalid metadata value, name argument was given multiple times".into());
        }
        name = Some(part[5..].to_string());
    }
    let Some(name) = name else {
        return Err("Library name was not given".into());
    };
    Ok(Metadata {
        engine,
        name,
        code: &payload[nl..],
    })
}

/// Checks `code` and runs it on this core (Redis's `functionsCreateWithLibraryCtx`
/// against `libs`): the library's name and what it registered. `replace`: an existing
/// library of that name may be replaced. Errors without their `ERR ` prefix.
fn create(
    code: &[u8],
    replace: bool,
    libs: &Libraries,
    timeout: Option<Duration>,
) -> Result<(String, Library, Vec<Registered>), String> {
    let md = metadata(code)?;
    if !crate::scripting::valid_name(md.name.as_bytes()) {
        return Err("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    if !md.engine.eq_ignore_ascii_case("lua") {
        return Err(format!("Engine '{}' not found", md.engine));
    }
    if !replace && libs.contains_key(&md.name) {
        return Err(format!("Library '{}' already exists", md.name));
    }
    let regs = crate::scripting::load_library(md.code, timeout)
        .map_err(|e| e.strip_prefix("ERR ").unwrap_or(&e).to_string())?;
    if regs.is_empty() {
        return Err("No functions registered".into());
    }
    check_collisions(libs, Some(&md.name), regs.iter().map(|r| r.name.as_str()))?;
    let lib = Library {
        code: Arc::from(code),
        functions: regs
            .iter()
            .map(|r| FunctionInfo {
                name: r.name.clone(),
                desc: r.desc.clone(),
                flags: r.flags,
            })
            .collect(),
    };
    Ok((md.name, lib, regs))
}

/// Fails when a function of `names` exists in a library of `libs` other than `except`.
fn check_collisions<'n>(
    libs: &Libraries,
    except: Option<&str>,
    names: impl Iterator<Item = &'n str>,
) -> Result<(), String> {
    // Function names are case-insensitive.
    let taken: std::collections::HashSet<String> = libs
        .iter()
        .filter(|(l, _)| Some(l.as_str()) != except)
        .flat_map(|(_, l)| l.functions.iter().map(|f| f.name.to_ascii_lowercase()))
        .collect();
    for n in names {
        if taken.contains(&n.to_ascii_lowercase()) {
            return Err(format!("Function {n} already exists"));
        }
    }
    Ok(())
}

fn changed() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// FUNCTION LOAD: the library's name.
fn load(code: &[u8], replace: bool) -> Result<String, String> {
    // Checked and run without the registry's lock (the code may run up to 500 ms), then
    // checked again under it.
    let snapshot = registry().clone();
    let (name, lib, _) = create(code, replace, &snapshot, Some(LOAD_TIMEOUT))?;
    let mut r = registry();
    if !replace && r.contains_key(&name) {
        return Err(format!("Library '{name}' already exists"));
    }
    check_collisions(
        &r,
        Some(&name),
        lib.functions.iter().map(|f| f.name.as_str()),
    )?;
    r.insert(name.clone(), lib);
    changed();
    Ok(name)
}

/// The libraries of a DUMP payload, each loaded on this core (Redis's RESTORE and RDB
/// loading). Errors without their `ERR ` prefix.
fn parse_payload(payload: &[u8], timeout: Option<Duration>) -> Result<Libraries, String> {
    let body = rdb::open(payload).ok_or("DUMP payload version or checksum are wrong")?;
    let mut r = rdb::Reader::new(body);
    let mut libs = Libraries::new();
    while r.remaining() > 0 {
        let code = match r.byte() {
            Some(rdb::OPCODE_FUNCTION2) => r.string().ok_or("Failed loading library payload")?,
            Some(rdb::OPCODE_FUNCTION) => {
                // 7.0-rc1/rc2: name, engine, description (optional), code.
                let name = r.string().ok_or("Failed loading library name")?;
                let engine = r.string().ok_or("Failed loading engine name")?;
                let has_desc = r
                    .length()
                    .ok_or("Failed loading library description indicator")?;
                if has_desc != 0 {
                    r.string().ok_or("Failed loading library description")?;
                }
                let blob = r.string().ok_or("Failed loading library blob")?;
                let mut code = format!(
                    "#!{} name={}\n",
                    String::from_utf8_lossy(&engine),
                    String::from_utf8_lossy(&name)
                )
                .into_bytes();
                code.extend_from_slice(&blob);
                code
            }
            Some(_) => return Err("given type is not a function".into()),
            None => return Err("can not read data type".into()),
        };
        let (name, lib, _) = create(&code, false, &libs, timeout)?;
        libs.insert(name, lib);
    }
    Ok(libs)
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Append,
    Replace,
    Flush,
}

/// FUNCTION RESTORE, and loading at start (`timeout` None: a snapshot holds libraries that
/// loaded within the limit before). Unlike Redis, RESTORE runs each library's code under
/// FUNCTION LOAD's time limit, so that a payload cannot stall a core without end.
fn restore(payload: &[u8], policy: Policy, timeout: Option<Duration>) -> Result<(), String> {
    let new = parse_payload(payload, timeout)?;
    let mut r = registry();
    if policy == Policy::Flush {
        *r = new;
        changed();
        return Ok(());
    }
    // Redis's `libraryJoin`: all or nothing.
    let mut joined = r.clone();
    for name in new.keys() {
        if joined.contains_key(name) {
            if policy == Policy::Append {
                return Err(format!("Library {name} already exists"));
            }
            joined.remove(name);
        }
    }
    let names = new
        .values()
        .flat_map(|l| l.functions.iter().map(|f| f.name.as_str()));
    check_collisions(&joined, None, names)?;
    joined.extend(new);
    *r = joined;
    changed();
    Ok(())
}

/// FUNCTION DUMP's payload of every library (also what a snapshot keeps).
pub fn dump_payload() -> Vec<u8> {
    let mut body = Vec::new();
    for lib in registry().values() {
        body.push(rdb::OPCODE_FUNCTION2);
        rdb::put_string(&mut body, &lib.code);
    }
    rdb::seal(body)
}

/// Whether any library is loaded.
pub fn any() -> bool {
    !registry().is_empty()
}

/// At start: the libraries of a snapshot's payload replace the registry (run on one core).
pub fn restore_at_start(payload: &[u8]) -> Result<usize, String> {
    restore(payload, Policy::Flush, None)?;
    Ok(registry().len())
}

/// How many libraries a payload holds, checking its framing only (no code runs):
/// `percore check-snapshot`.
pub fn count_in_payload(payload: &[u8]) -> Result<usize, String> {
    let body = rdb::open(payload).ok_or("functions: bad version or checksum")?;
    let mut r = rdb::Reader::new(body);
    let mut n = 0;
    while r.remaining() > 0 {
        match r.byte() {
            Some(rdb::OPCODE_FUNCTION2) => {
                r.string().ok_or("functions: truncated library")?;
            }
            _ => return Err("functions: not a function record".into()),
        }
        n += 1;
    }
    Ok(n)
}

const HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
];

fn subcommand_syntax_error(w: &mut ReplyWriter, sub: &[u8]) {
    w.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
        String::from_utf8_lossy(sub)
    ));
}

fn err(w: &mut ReplyWriter, msg: &str) {
    w.error(&format!("ERR {msg}"));
}

/// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE].
fn list(w: &mut ReplyWriter, a: &Args<'_>) {
    let (mut with_code, mut pattern): (bool, Option<&[u8]>) = (false, None);
    let mut i = 2;
    while i < a.len() {
        let arg = &a[i];
        if !with_code && arg.eq_ignore_ascii_case(b"withcode") {
            with_code = true;
        } else if pattern.is_none() && arg.eq_ignore_ascii_case(b"libraryname") {
            if i + 1 >= a.len() {
                return err(w, "library name argument was not given");
            }
            i += 1;
            pattern = Some(&a[i]);
        } else {
            return err(
                w,
                &format!("Unknown argument {}", String::from_utf8_lossy(arg)),
            );
        }
        i += 1;
    }
    let libs = registry().clone();
    let chosen: Vec<(&String, &Library)> = libs
        .iter()
        .filter(|(n, _)| {
            pattern.is_none_or(|p| percore_shard::glob::glob_match(p, n.as_bytes(), true))
        })
        .collect();
    w.array(chosen.len());
    for (name, lib) in chosen {
        w.map(if with_code { 4 } else { 3 });
        w.bulk(b"library_name");
        w.bulk(name.as_bytes());
        w.bulk(b"engine");
        w.bulk(b"LUA");
        w.bulk(b"functions");
        w.array(lib.functions.len());
        for f in &lib.functions {
            w.map(3);
            w.bulk(b"name");
            w.bulk(f.name.as_bytes());
            w.bulk(b"description");
            match &f.desc {
                Some(d) => w.bulk(d),
                None => w.null(),
            }
            w.bulk(b"flags");
            let set: Vec<&str> = FUNCTION_FLAGS
                .iter()
                .enumerate()
                .filter(|(b, _)| f.flags & (1 << b) != 0)
                .map(|(_, n)| *n)
                .collect();
            w.set(set.len());
            for s in set {
                w.simple(s.as_bytes());
            }
        }
        if with_code {
            w.bulk(b"library_code");
            w.bulk(&lib.code);
        }
    }
}

/// FCALL and FCALL_RO.
pub async fn fcall(
    conn: &mut Client,
    ro: bool,
    a: Args<'_>,
    peer: &mut dyn Peer,
    out: &mut Vec<u8>,
) {
    let proto = conn.proto;
    let Some(func) = lookup(&a[1]) else {
        return ReplyWriter::new(out, proto).error("ERR Function not found");
    };
    let numkeys = match crate::scripting::numkeys(&a, "ERR Bad number of keys provided") {
        Ok(n) => n,
        Err(msg) => return ReplyWriter::new(out, proto).error(msg),
    };
    let e = match crate::scripting::engine() {
        Ok(e) => e,
        Err(msg) => return ReplyWriter::new(out, proto).error(&msg),
    };
    let f: Function = match e.lua.registry_value(&func.f) {
        Ok(f) => f,
        Err(err) => return ReplyWriter::new(out, proto).error(&format!("ERR {err}")),
    };
    let name = String::from_utf8_lossy(&a[1]).into_owned();
    let origin = Origin::Function { name: &name };
    let flags = Some(func.flags);
    crate::scripting::execute(conn, peer, &e, &f, origin, &a, numkeys, flags, ro, out).await
}

/// The FUNCTION subcommands; the reply goes to `w`.
pub fn manage(cmd: Cmd, a: &Args<'_>, w: &mut ReplyWriter) {
    match cmd {
        Cmd::FunctionLoad => {
            let mut replace = false;
            let mut i = 2;
            while i < a.len() - 1 {
                if a[i].eq_ignore_ascii_case(b"replace") {
                    replace = true;
                    i += 1;
                    continue;
                }
                return err(
                    w,
                    &format!("Unknown option given: {}", String::from_utf8_lossy(&a[i])),
                );
            }
            match load(&a[a.len() - 1], replace) {
                Ok(name) => w.bulk(name.as_bytes()),
                Err(e) => err(w, &e),
            }
        }
        Cmd::FunctionDelete => {
            let name = String::from_utf8_lossy(&a[2]);
            if registry().remove(name.as_ref()).is_none() {
                return err(w, "Library not found");
            }
            changed();
            w.ok();
        }
        Cmd::FunctionFlush => {
            if a.len() > 3 {
                return subcommand_syntax_error(w, &a[1]);
            }
            if !crate::scripting::flush_mode_ok(a) {
                return err(w, "FUNCTION FLUSH only supports SYNC|ASYNC option");
            }
            registry().clear();
            changed();
            w.ok();
        }
        Cmd::FunctionList => list(w, a),
        Cmd::FunctionDump => w.bulk(&dump_payload()),
        Cmd::FunctionRestore => {
            if a.len() > 4 {
                return subcommand_syntax_error(w, &a[1]);
            }
            let policy = match a.get(3) {
                None => Policy::Append,
                Some(p) if p.eq_ignore_ascii_case(b"append") => Policy::Append,
                Some(p) if p.eq_ignore_ascii_case(b"replace") => Policy::Replace,
                Some(p) if p.eq_ignore_ascii_case(b"flush") => Policy::Flush,
                Some(_) => return err(
                    w,
                    "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
                ),
            };
            match restore(&a[2], policy, Some(LOAD_TIMEOUT)) {
                Ok(()) => w.ok(),
                Err(e) => err(w, &e),
            }
        }
        Cmd::FunctionStats => {
            let running = match crate::scripting::running_function() {
                Ok(r) => r,
                Err(e) => return w.error(e),
            };
            let (libs, funcs) = counts();
            w.map(2);
            w.bulk(b"running_script");
            match running {
                None => w.null(),
                Some((name, command, ms)) => {
                    w.map(3);
                    w.bulk(b"name");
                    w.bulk(name.as_bytes());
                    w.bulk(b"command");
                    w.array(command.len());
                    for a in &command {
                        w.bulk(a);
                    }
                    w.bulk(b"duration_ms");
                    w.int(ms.min(i64::MAX as u64) as i64);
                }
            }
            w.bulk(b"engines");
            w.map(1);
            w.bulk(b"LUA");
            w.map(2);
            w.bulk(b"libraries_count");
            w.int(libs as i64);
            w.bulk(b"functions_count");
            w.int(funcs as i64);
        }
        Cmd::FunctionKill => match crate::scripting::kill(false) {
            Ok(()) => w.ok(),
            Err(e) => w.error(e),
        },
        Cmd::FunctionHelp => crate::scripting::write_help(w, HELP),
        _ => w.error("ERR not a function command"),
    }
}
