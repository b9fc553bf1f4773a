//! Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT LOAD/EXISTS/FLUSH/KILL/HELP,
//! with Redis 7.0's semantics, on Lua 5.1 (mlua, vendored); and the Lua side of Functions
//! (`functions.rs` keeps the libraries): a library's code runs here ([`load_library`]) with
//! the load-time API only, and FCALL runs a function through the same path as EVAL
//! ([`execute`]), its keys and arguments passed as its two arguments instead of KEYS/ARGV.
//!
//! The VM. Each core has one Lua state ([`Engine`], thread-local: a core is one thread),
//! sandboxed as Redis's: base (without `loadfile`, `dofile`, `print`, `setfenv`, `getfenv`,
//! `newproxy`), `string`, `table`, `math`, and the `redis` table; creating a global fails with
//! "Attempt to modify a readonly table" and reading an undefined one fails too (a metatable
//! on `_G`; unlike Redis, the library tables themselves stay writable). Bodies live in one
//! process-wide cache keyed by their SHA1 (lower-case hex, of the body's bytes exactly); each
//! core compiles a body the first time it runs it there and keeps the function until SCRIPT
//! FLUSH (a global generation number, checked on every lookup).
//!
//! A script is a transaction over its declared KEYS (design):
//! - It runs on the connection's core. A `redis.call`/`redis.pcall` whose keys are on this
//!   core, with nothing else in play, runs synchronously on the shard (a plain Lua C
//!   function, see "The synchronous path of `redis.call`"); any other goes through async
//!   Rust (mlua `async`) and the connection's own dispatch ([`Client::run_captured`]), so it
//!   runs with one hop when its keys are elsewhere, and every command family works from
//!   scripts as from clients.
//! - Fast path: when every declared key lives on this core and no transaction holds one, the
//!   script starts without locks. While its calls stay on this core it never awaits, so
//!   nothing else runs on the core meanwhile: it is isolated for free (the EVALSHA benchmark
//!   path: no lock, no message, no future per call; a run allocates KEYS and ARGV, in one
//!   protected call, and reuses the core's Lua thread). Clients blocked on keys it pushes
//!   to are served when it ends, as Redis serves them ([`serving_deferred`]).
//! - Otherwise the declared keys are locked first on their shards (`txlock::Plan` + `lock`,
//!   ascending shard order, so scripts and transactions never wait for each other in a
//!   cycle), the connection's `tx` is set, and the locks are released at the end.
//! - A fast-path script whose call must leave the core (or wait) first takes the locks of its
//!   declared keys here (they are free: it has not yielded since it checked them) and goes
//!   on as a transaction.
//! - A call that names a key NOT declared (Redis allows it outside cluster mode) locks it
//!   then, on its shard, for the script's transaction. That lock is taken out of order, so
//!   it waits at most [`UNDECLARED_WAIT`]; on timeout the call fails with an error that says
//!   to declare the key in KEYS (a script holding out-of-order locks could otherwise
//!   deadlock with an ordered transaction).
//! - Inside MULTI/EXEC the EXEC transaction already holds the declared keys (txlock's
//!   `key_args` names EVAL's keys); the script's calls pass them since the tx ids match.
//! - One script runs at a time per core (the Lua state and KEYS/ARGV are shared): a script
//!   takes the core's slot after its locks, never before, and gives the slot up while it
//!   waits for an undeclared key's lock (its state set aside and put back after), so that
//!   waiting for the slot is never part of a cycle.
//! - A fast-path script that must become a transaction also locks the keys its calls have
//!   touched on this core so far, so nothing it read can change under it.
//!
//! Limits. The Lua heap is capped at [`LUA_MEMORY_LIMIT`]; an allocation past it fails the
//! script with an error reply. A script that runs past `busy-reply-threshold` (alias
//! `lua-time-limit`, default 5 s) is *busy*, as in Redis: it is cut into slices by its
//! instruction-count hook, and between slices its core answers BUSY to everything but the
//! allow-busy commands, until the script ends or SCRIPT KILL / FUNCTION KILL (from any core)
//! stops it; see "Busy scripts" below for the design (slices, isolation, what waits).
//!
//! Flags (a shebang's `#!lua flags=…`, a function's `flags`), as Redis's
//! `scriptPrepareForRun` ([`prepare`]): `no-writes` refuses write calls (and is required by
//! EVAL_RO/FCALL_RO); without `allow-oom` (or `no-writes`) the script is refused over
//! `maxmemory`, and with it its calls may grow memory (so may those of a script that wrote
//! already, or that started under the limit: Redis's `scriptVerifyOOM`); `no-cluster` is
//! refused in cluster mode; in cluster mode every call's keys share one slot, the declared
//! keys' (unless `allow-cross-slot-keys`, or no shebang). `allow-stale` is accepted and
//! changes nothing (no replicas here). A script without a shebang is Redis's compatibility
//! mode: only its calls are checked.
//!
//! `pcall` is replaced by a version that runs its function as a coroutine, so that a
//! `redis.call` inside it may leave the core (Lua 5.1 cannot yield across the C `pcall`),
//! and so that a busy script's slices end inside it too; `xpcall` keeps the C one (a
//! `redis.call` inside it must stay on the core, and a loop inside it is not sliced). A
//! killed script's error is raised again at each new line of the script, so a `pcall` that
//! caught it cannot keep it running (Redis's line hook).
//!
//! `bit` is LuaBitOp's API (arguments checked in Lua, the operations in Rust).
//!
//! `cjson` is `lua_cjson.rs`, `cmsgpack` `lua_cmsgpack.rs` and `struct` `lua_struct.rs` (the
//! Lua side of each, argument checks and errors, is in `SETUP`).
//!
//! Errors read as Redis 7.0's (`… script: <sha>, on @user_script:<line>.`, for a function
//! `… script: <name>, on @user_function:<line>.`). A failing `return redis.call(…)` is a
//! Lua tail call, whose line Lua 5.1 forgets: the line is then the script's one line of code
//! (the function's, if written on one line) if it has one, else the suffix is left out.
//!
//! Not done: SCRIPT DEBUG (answers an error). Deviations: the library
//! tables (`redis`, `string`, …) are not read-only; Lua 5.1 via mlua hands `-0` over as the
//! integer 0; a table nested past 1000 levels is answered with an error.

use crate::client::{Client, Peer};
use crate::txlock::{lock_key, KeySet, Plan};
use futures_channel::oneshot;
use mlua::{
    Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, Variadic, VmState,
};
use percore_proto::{Args, Cmd, CommandSpec, Flags, OwnedArgs, Protocol, ReplyWriter};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The Lua heap of one core, at most.
pub const LUA_MEMORY_LIMIT: usize = 1 << 30;
/// How long a call waits for the lock of a key the script did not declare.
pub const UNDECLARED_WAIT: Duration = Duration::from_secs(1);
/// Nesting of tables converted either way, at most (a table may contain itself).
const MAX_DEPTH: usize = 1000;

pub(crate) type Sha = [u8; 40];

/// The script bodies of the process, by SHA1, and the generation SCRIPT FLUSH bumps.
static CACHE: LazyLock<Mutex<HashMap<Sha, Arc<[u8]>>>> = LazyLock::new(Default::default);
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Bytes of the cached bodies with their SHA1 keys (INFO's `used_memory_scripts_eval`, an
/// estimate) and their count (`number_of_cached_scripts`).
pub fn cache_stats() -> (usize, usize) {
    let c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    (c.values().map(|b| b.len() + 40).sum(), c.len())
}

struct Script {
    /// In the Lua registry, not a `Function` handle: a state has fewer than 8000 handle
    /// slots, and a core may cache more scripts than that.
    f: mlua::RegistryKey,
    /// The flags of its shebang, bits of [`FUNCTION_FLAGS`] (None: no shebang, Redis's
    /// compatibility mode).
    flags: Option<u8>,
}

/// One core's Lua state and compiled scripts.
pub(crate) struct Engine {
    pub(crate) lua: Lua,
    compiled: RefCell<HashMap<Sha, Rc<Script>>>,
    generation: Cell<u64>,
    /// A script is running (possibly suspended at an await) on this core.
    busy: Cell<bool>,
    waiters: RefCell<VecDeque<oneshot::Sender<()>>>,
    /// A finished script thread, for the next script (see `run_script`).
    spare: Cell<Option<mlua::Thread>>,
    /// The globals of library code and its functions (see `SETUP`), and the switch that
    /// shows them the load-time API while FUNCTION LOAD runs a library.
    fenv: Table,
    set_loading: Function,
}

thread_local! {
    static ENGINE: RefCell<Option<Rc<Engine>>> = const { RefCell::new(None) };
    /// The running script's [`Run`]: one script runs at a time on a core (the engine's
    /// slot); a parked script's is set aside ([`Parked`]).
    static RUN: RefCell<Option<Run>> = const { RefCell::new(None) };
}

/// `f` on the running script's [`Run`]; None when no script runs. `f` must not reach a
/// script's Lua code (its Run is borrowed meanwhile).
fn with_run<R>(f: impl FnOnce(&mut Run) -> R) -> Option<R> {
    RUN.with(|r| r.try_borrow_mut().ok()?.as_mut().map(f))
}

pub(crate) fn engine() -> Result<Rc<Engine>, String> {
    if let Some(e) = ENGINE.with(|e| e.borrow().clone()) {
        return Ok(e);
    }
    let e = Rc::new(Engine::new().map_err(|e| format!("ERR cannot start Lua: {e}"))?);
    ENGINE.with(|slot| *slot.borrow_mut() = Some(e.clone()));
    Ok(e)
}

/// What the running script's calls need (in [`RUN`] while it runs).
struct Run {
    /// SAFETY: valid while the script runs: [`eval`] holds `&mut Client` and `&mut dyn Peer`
    /// across the script's future and uses neither until that future completes; the
    /// Lua functions that read these pointers run only while that future is polled, and one
    /// script at a time runs on a core (the engine's slot), so [`RUN`] holds this one's.
    conn: *mut Client,
    peer: *mut dyn Peer,
    read_only: bool,
    resp3: bool,
    /// The script's transaction holds its declared keys (else it runs on the fast path).
    locked: bool,
    /// Declared keys on this core and those the fast path's calls touched here (its locks
    /// if it must take them); `local_whole`: a call touched the whole shard.
    local_keys: Vec<Box<[u8]>>,
    local_whole: bool,
    /// Keys (or whole shards) already locked for the transaction, per shard.
    held: Vec<(usize, KeySet)>,
    /// The last error a `redis.call` raised: its message and the script line.
    raised: Option<(String, Option<u32>)>,
    /// Cluster mode: the slot of the keys so far, and whether calls may leave it.
    slot: Option<u16>,
    cross_slot: bool,
}

impl Engine {
    fn new() -> mlua::Result<Engine> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        lua.set_memory_limit(LUA_MEMORY_LIMIT)?;
        let rcall = lua.create_async_function(|lua, args: MultiValue| async move {
            redis_call(lua, args).await
        })?;
        let sha1hex = lua.create_function(|_, s: mlua::String| Ok(sha1_hex(&s.as_bytes())))?;
        let log = lua.create_function(|_, args: Variadic<Value>| redis_log(args))?;
        let setresp = lua.create_function(|_, args: Variadic<Value>| {
            let v = match args.first() {
                Some(Value::Integer(i)) => *i as f64,
                Some(Value::Number(n)) => *n,
                Some(_) | None if args.len() != 1 => {
                    return Err(mlua::Error::runtime(
                        "redis.setresp() requires one argument.",
                    ))
                }
                _ => 0.0,
            };
            if v != 2.0 && v != 3.0 {
                return Err(mlua::Error::runtime("RESP version must be 2 or 3."));
            }
            with_run(|run| run.resp3 = v == 3.0);
            Ok(())
        })?;
        let errbuf = lua.create_function(|lua, v: Value| {
            let Value::String(s) = v else {
                return Err(mlua::Error::runtime("wrong number or type of arguments"));
            };
            let s = s.to_string_lossy();
            let msg = if s.starts_with('-') {
                s.to_string()
            } else {
                format!("-{s}")
            };
            let t = lua.create_table()?;
            t.raw_set("err", error_buff(&msg))?;
            Ok(t)
        })?;
        // The script line of a raised `redis.call` error, from `error`'s position prefix.
        let note = lua.create_function(|_, pos: mlua::String| {
            let pos = pos.to_string_lossy();
            let line = pos
                .strip_prefix("user_script:")
                .or_else(|| pos.strip_prefix("user_function:"))
                .and_then(|p| p.split(':').next())
                .and_then(|l| l.parse().ok());
            with_run(|run| {
                if let Some(r) = run.raised.as_mut() {
                    r.1 = line;
                }
            });
            Ok(())
        })?;
        // `pcall`'s coroutines (see `SETUP`): sliced like the script's own thread.
        let mkco = lua.create_function(|lua, f: Function| {
            let th = lua.create_thread(f)?;
            let l = th.to_pointer() as *mut mlua::ffi::lua_State;
            // SAFETY: `l` is the state of the thread just created, alive while `th` is.
            unsafe {
                mlua::ffi::lua_sethook(l, Some(count_hook), mlua::ffi::LUA_MASKCOUNT, HOOK_EVERY)
            };
            SLICE.with(|s| {
                let mut s = s.borrow_mut();
                // (Kept alive with the script's state: a pcall left by an error never
                // unmarks its coroutine, and the hook may still reach it.)
                if !s.root.is_null() {
                    s.wrappers.push((l, th.clone()));
                }
            });
            Ok(th)
        })?;
        let unmark = lua.create_function(|_, th: mlua::Thread| {
            let l = th.to_pointer() as *mut mlua::ffi::lua_State;
            SLICE.with(|s| s.borrow_mut().wrappers.retain(|w| w.0 != l));
            Ok(())
        })?;
        // SAFETY: `can_slice` is a Lua C function that only reads its state and pushes one
        // boolean.
        let canslice = unsafe { lua.create_c_function(can_slice) }?;
        let mark = Value::LightUserData(mlua::LightUserData(slice_mark()));
        // SAFETY: `fast_call` keeps the rules of a Lua C function (see "The synchronous
        // path of `redis.call`").
        let fast = unsafe { lua.create_c_function(fast_call) }?;
        let slow = Value::LightUserData(mlua::LightUserData(slow_mark()));
        // SAFETY: as `fast`.
        let numtext = unsafe { lua.create_c_function(number_args) }?;
        let bitop = lua.create_function(|lua, (op, args): (mlua::String, Variadic<Value>)| {
            let nums: Vec<f64> = args
                .iter()
                .map(|v| match v {
                    Value::Integer(i) => *i as f64,
                    Value::Number(n) => *n,
                    _ => 0.0,
                })
                .collect();
            bit_op(lua, &op.to_string_lossy(), &nums)
        })?;
        let enc = lua.create_function(|lua, v: Value| {
            Ok(match crate::lua_cjson::encode(&v) {
                Ok(s) => (true, Value::String(lua.create_string(&s)?)),
                Err(e) => (false, Value::String(lua.create_string(&e)?)),
            })
        })?;
        let dec = lua.create_function(|lua, s: mlua::String| {
            Ok(match crate::lua_cjson::decode(lua, &s.as_bytes()) {
                Ok(v) => (true, v),
                Err(e) => (false, Value::String(lua.create_string(&e)?)),
            })
        })?;
        let regfn =
            lua.create_function(|lua, args: Variadic<Value>| register_function(lua, args))?;
        let mpack = lua.create_function(|lua, args: Variadic<Value>| {
            let mut out = Vec::new();
            for v in args.iter() {
                crate::lua_cmsgpack::encode(&mut out, v, 0);
            }
            lua.create_string(&out)
        })?;
        let spack = lua.create_function(|lua, (fmt, args): (mlua::String, Variadic<Value>)| {
            Ok(match crate::lua_struct::pack(lua, &fmt.as_bytes(), &args) {
                Ok(b) => (true, lua.create_string(&b)?),
                Err(e) => (false, lua.create_string(&e)?),
            })
        })?;
        let sunpack =
            lua.create_function(|lua, (fmt, data, pos): (mlua::String, mlua::String, i64)| {
                Ok(
                    match crate::lua_struct::unpack(lua, &fmt.as_bytes(), &data.as_bytes(), pos) {
                        Ok((t, n)) => (Value::Table(t), Value::Integer(n as i64)),
                        Err(e) => (Value::Nil, Value::String(lua.create_string(&e)?)),
                    },
                )
            })?;
        let ssize = lua.create_function(|lua, fmt: mlua::String| {
            Ok(match crate::lua_struct::size(&fmt.as_bytes()) {
                Ok(n) => Value::Integer(n as i64),
                Err(e) => Value::String(lua.create_string(&e)?),
            })
        })?;
        let munpack = lua.create_function(
            |lua, (s, limit, offset): (mlua::String, f64, f64)| -> mlua::Result<MultiValue> {
                msgpack_unpack(lua, &s.as_bytes(), limit, offset)
            },
        )?;
        let (fenv, set_loading): (Table, Function) = lua.load(SETUP).set_name("=setup").call((
            rcall,
            sha1hex,
            log,
            setresp,
            errbuf,
            note,
            bitop,
            enc,
            dec,
            crate::lua_cjson::null(),
            regfn,
            mpack,
            munpack,
            // (More than 16 values: a nested tuple, passed flat.)
            (
                spack, sunpack, ssize, mkco, unmark, canslice, mark, fast, slow, numtext,
            ),
        ))?;
        Ok(Engine {
            lua,
            compiled: RefCell::new(HashMap::new()),
            generation: Cell::new(GENERATION.load(Ordering::Acquire)),
            busy: Cell::new(false),
            waiters: RefCell::new(VecDeque::new()),
            spare: Cell::new(None),
            fenv,
            set_loading,
        })
    }

    fn check_generation(&self) {
        let g = GENERATION.load(Ordering::Acquire);
        if self.generation.get() != g {
            self.compiled.borrow_mut().clear();
            self.lua.expire_registry_values();
            self.generation.set(g);
        }
    }

    /// The compiled script of `sha` with `body`, compiling it on first use.
    fn compile(&self, sha: Sha, body: &[u8]) -> Result<Rc<Script>, String> {
        if let Some(s) = self.compiled.borrow().get(&sha) {
            return Ok(s.clone());
        }
        let (flags, code) = shebang(body)?;
        let f = self
            .lua
            .load(code)
            .set_name("@user_script")
            .into_function()
            .map_err(|e| compile_error("script (new function)", e))?;
        let f = self
            .lua
            .create_registry_value(f)
            .map_err(|e| format!("ERR Error compiling script (new function): {e}"))?;
        let s = Rc::new(Script { f, flags });
        self.compiled.borrow_mut().insert(sha, s.clone());
        Ok(s)
    }

    /// Waits for the core's script slot.
    async fn enter(&self) {
        while self.busy.get() {
            let (s, r) = oneshot::channel();
            self.waiters.borrow_mut().push_back(s);
            let _ = r.await;
        }
        self.busy.set(true);
    }

    fn leave(&self) {
        self.busy.set(false);
        while let Some(w) = self.waiters.borrow_mut().pop_front() {
            if w.send(()).is_ok() {
                break;
            }
        }
    }
}

/// The `redis` library and the globals protection, run once per state. Arguments: the
/// Rust functions it wraps.
const SETUP: &str = r#"
local rcall, sha1hex, log, setresp, errbuf, note, bitop, enc, dec, null, regfn, mpack, munpack, spack, sunpack, ssize, mkco, unmark, canslice, SLICED, fast, SLOW, numtext = ...
local error, rawset, rawget, G, where_pcall = error, rawset, rawget, _G, pcall
local redis = {}
-- `fast` runs a call that stays on this core at once; SLOW: it takes the async `rcall`,
-- its numbers written as `fast` writes them (`numtext`).
redis.call = function(...)
  local v, e = fast(true, ...)
  if v == SLOW then v, e = rcall(true, numtext(...)) end
  if e ~= nil then
    local _, pos = where_pcall(error, '', 3)
    note(pos)
    error(e.err, 0)
  end
  return v
end
redis.pcall = function(...)
  local v = fast(false, ...)
  if v == SLOW then v = rcall(false, numtext(...)) end
  return v
end
redis.error_reply = errbuf
redis.status_reply = function(s)
  if type(s) ~= 'string' then error('wrong number or type of arguments', 0) end
  return {ok = s}
end
redis.sha1hex = function(s)
  if type(s) ~= 'string' and type(s) ~= 'number' then error('wrong number of arguments', 2) end
  return sha1hex(tostring(s))
end
redis.log = log
redis.setresp = setresp
redis.breakpoint = function() return false end
redis.debug = function() end
redis.replicate_commands = function() return true end
redis.set_repl = function(...)
  if select('#', ...) ~= 1 then error('redis.set_repl() requires two arguments.', 0) end
  local f = tonumber((...))
  if f == nil or f < 0 or f > 3 or f ~= math.floor(f) then
    error('Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.', 0)
  end
end
redis.acl_check_cmd = function() return true end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.REDIS_VERSION = '7.0.15'
redis.REDIS_VERSION_NUM = 0x0007000f
rawset(_G, 'redis', redis)
-- bit (LuaBitOp's API): arguments checked as luaL_checknumber does, the work in Rust.
local c_pcall = pcall
local function argerr(msg, up)
  local _, pos = c_pcall(error, '', 4 + (up or 0))
  if pos == '' then pos = 'user_script:?: ' end
  error(pos .. msg, 0)
end
local bit = {}
for name, argc in pairs({tobit = 1, bnot = 1, band = -1, bor = -1, bxor = -1, lshift = 2,
    rshift = 2, arshift = 2, rol = 2, ror = 2, bswap = 1, tohex = 0}) do
  bit[name] = function(...)
    local n = select('#', ...)
    local args = {...}
    local need = argc
    if argc < 0 then need = 1 end
    if name == 'tohex' then need = 1 end
    for i = 1, math.max(n, need) do
      local v = args[i]
      if i > n or (i > need and name ~= 'tohex' and argc >= 0) then
        if i <= need then
          argerr(string.format("bad argument #%d to '%s' (number expected, got no value)", i, name))
        end
      elseif not (name == 'tohex' and i == 2 and v == nil) then
        local x = tonumber(v)
        if x == nil then
          argerr(string.format("bad argument #%d to '%s' (number expected, got %s)", i, name, type(v)))
        end
        args[i] = x
      end
    end
    return bitop(name, unpack(args, 1, n))
  end
end
rawset(_G, 'bit', bit)
-- cjson (lua-cjson's API and texts, the work in Rust).
local cjson = {null = null}
cjson.encode = function(...)
  if select('#', ...) ~= 1 then argerr("bad argument #1 to 'encode' (expected 1 argument)") end
  local ok, r = enc(...)
  if not ok then argerr(r) end
  return r
end
cjson.decode = function(...)
  if select('#', ...) ~= 1 then argerr("bad argument #1 to 'decode' (expected 1 argument)") end
  local s = ...
  if type(s) ~= 'string' and type(s) ~= 'number' then
    argerr(string.format("bad argument #1 to 'decode' (string expected, got %s)", type(s)))
  end
  local ok, r = dec(tostring(s))
  if not ok then argerr(r) end
  return r
end
rawset(_G, 'cjson', cjson)
-- cmsgpack (lua-cmsgpack 0.4.0's API and texts, the work in Rust). Argument checks run in
-- `unpack_full`, reached by a tail call (one more level for `argerr` to skip).
local cmsgpack = {_NAME = 'cmsgpack', _VERSION = 'lua-cmsgpack 0.4.0',
  _COPYRIGHT = 'Copyright (C) 2012, Salvatore Sanfilippo',
  _DESCRIPTION = 'MessagePack C implementation for Lua'}
cmsgpack.pack = function(...)
  if select('#', ...) == 0 then argerr("bad argument #0 to 'pack' (MessagePack pack needs input.)") end
  return mpack(...)
end
local function typename(i, n, v)
  if i > n then return 'no value' end
  return type(v)
end
-- luaL_checkinteger's conversion (truncation toward zero), or its error.
local function intarg(v, i, n, name)
  local x = tonumber(v)
  if x == nil then
    return nil, string.format("bad argument #%d to '%s' (number expected, got %s)", i, name, typename(i, n, v))
  end
  if x >= 0 then return math.floor(x) end
  return math.ceil(x)
end
local function unpack_full(name, n, s, a2, a3)
  local limit, offset, e = 0, 0, nil
  if name == 'unpack_one' then
    limit = 1
    if a2 ~= nil then offset, e = intarg(a2, 2, n, name) end
  elseif name == 'unpack_limit' then
    limit, e = intarg(a2, 2, n, name)
    if e == nil and a3 ~= nil then offset, e = intarg(a3, 3, n, name) end
  end
  if e then argerr(e, 1) end
  if type(s) ~= 'string' and type(s) ~= 'number' then
    argerr(string.format("bad argument #1 to '%s' (string expected, got %s)", name, typename(1, n, s)), 1)
  end
  local t, cnt, nxt = munpack(tostring(s), limit, offset)
  if t == nil then argerr(cnt, 1) end
  if limit == 0 and offset == 0 then return unpack(t, 1, cnt) end
  return nxt, unpack(t, 1, cnt)
end
cmsgpack.unpack = function(...) return unpack_full('unpack', select('#', ...), ...) end
cmsgpack.unpack_one = function(...) return unpack_full('unpack_one', select('#', ...), ...) end
cmsgpack.unpack_limit = function(...) return unpack_full('unpack_limit', select('#', ...), ...) end
rawset(_G, 'cmsgpack', cmsgpack)
-- struct (lua-struct 0.2's API and texts, the work in Rust).
local function checkstr(v, i, n, name)
  if type(v) == 'string' or type(v) == 'number' then return tostring(v) end
  argerr(string.format("bad argument #%d to '%s' (string expected, got %s)", i, name, typename(i, n, v)), 1)
end
local struct = {}
struct.pack = function(...)
  local fmt = checkstr((...), 1, select('#', ...), 'pack')
  local ok, r = spack(fmt, select(2, ...))
  if not ok then argerr(r) end
  return r
end
struct.unpack = function(...)
  local n = select('#', ...)
  local fmt, data, pos = ...
  fmt = checkstr(fmt, 1, n, 'unpack')
  data = checkstr(data, 2, n, 'unpack')
  if pos == nil then pos = 1 else
    local p, e = intarg(pos, 3, n, 'unpack')
    if e then argerr(e) end
    pos = p
  end
  local t, cnt = sunpack(fmt, data, pos)
  if t == nil then argerr(cnt) end
  return unpack(t, 1, cnt)
end
struct.size = function(...)
  local r = ssize(checkstr((...), 1, select('#', ...), 'size'))
  if type(r) == 'string' then argerr(r) end
  return r
end
rawset(_G, 'struct', struct)
-- pcall that lets a redis.call inside it leave the core: Lua 5.1 cannot yield across the
-- C pcall, so the function runs as a coroutine whose yields (mlua's "pending") are passed
-- up and resumed. A killed script's error is raised again at its next line (the hook), so
-- a pcall that caught it does not keep the script alive (as Redis).
local real_pcall, resume, status, yield = pcall, coroutine.resume, coroutine.status, coroutine.yield
local select, unpack, type = select, unpack, type
local function pack(...) return {n = select('#', ...), ...} end
-- A yield of the count hook inside (a slice of a busy script ended, see "Busy scripts")
-- comes as SLICED: passed up where the thread can yield, else the body goes on at once.
rawset(_G, 'pcall', function(f, ...)
  local made, co = real_pcall(mkco, f)
  if not made then return real_pcall(f, ...) end
  local r = pack(resume(co, ...))
  while status(co) ~= 'dead' do
    if r.n == 2 and r[2] == SLICED then
      if canslice() then yield(SLICED) end
      r = pack(resume(co))
    else
      r = pack(resume(co, yield(unpack(r, 2, r.n))))
    end
  end
  unmark(co)
  return unpack(r, 1, r.n)
end)
for _, k in ipairs({'loadfile', 'dofile', 'print', 'setfenv', 'getfenv', 'newproxy', 'module', 'require', 'package'}) do
  rawset(_G, k, nil)
end
local function readonly() error('Attempt to modify a readonly table', 2) end
local function missing(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
end
setmetatable(_G, {__newindex = readonly, __index = missing, __metatable = false})
-- Functions (Redis's function_lua.c): library code and the functions it registers see
-- `fenv` as their globals, which reads through to the globals above, except while
-- FUNCTION LOAD runs the library: then only a `redis` table with register_function, log and
-- the constants is there. Both are read-only.
local load_redis = {register_function = regfn, log = redis.log,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REDIS_VERSION = redis.REDIS_VERSION, REDIS_VERSION_NUM = redis.REDIS_VERSION_NUM}
setmetatable(load_redis, {__newindex = readonly, __index = missing, __metatable = false})
local load_api = {redis = load_redis}
local loading = false
local fenv = setmetatable({}, {
  __newindex = readonly,
  __index = function(_, k)
    local v
    if loading then
      v = rawget(load_api, k)
    elseif k ~= 'KEYS' and k ~= 'ARGV' then
      v = rawget(G, k)
    end
    if v == nil then
      error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
    end
    return v
  end,
  __metatable = false,
})
return fenv, function(on) loading = on end
"#;

/// A function registered by a library's code: its name, description, flags (bits of
/// [`FUNCTION_FLAGS`]) and the Lua function (of the core's state that loaded it), kept in
/// the Lua registry: a Rust handle (`Function`) would take one of the fewer than 8000
/// reference slots of the state, which many functions would exhaust.
pub(crate) struct Registered {
    pub name: String,
    pub desc: Option<Vec<u8>>,
    pub flags: u8,
    pub f: mlua::RegistryKey,
}

/// Redis's script flags, in its order (`scripts_flags_def`): bit i is `FUNCTION_FLAGS[i]`.
pub(crate) const FUNCTION_FLAGS: [&str; 5] = [
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

pub(crate) const FLAG_NO_WRITES: u8 = 1;
const FLAG_ALLOW_OOM: u8 = 1 << 1;
const FLAG_NO_CLUSTER: u8 = 1 << 3;
const FLAG_ALLOW_CROSS_SLOT: u8 = 1 << 4;

/// Redis's `scriptPrepareForRun` (and `processCommand`'s OOM check, which EVAL and FCALL
/// pass with the flags their shebang gives them): a script with flags (`flags` Some: a
/// shebang, or a function) without `allow-oom` or `no-writes` is refused over `maxmemory`
/// (when eviction cannot make room), one with `no-cluster` in cluster mode, one without
/// `no-writes` from EVAL_RO/FCALL_RO. `allow-stale` is accepted and changes nothing (no
/// replicas here). A script without a shebang is checked by its calls only.
fn prepare(conn: &Client, flags: Option<u8>, ro_cmd: bool) -> Result<(), &'static str> {
    let Some(f) = flags else {
        return Ok(());
    };
    if f & (FLAG_ALLOW_OOM | FLAG_NO_WRITES) == 0 && over_maxmemory(&conn.core) {
        // Eviction first, as for any command that may grow memory.
        if let Some(set) = percore_proto::lookup(b"set") {
            let mut shard = conn.core.shard.borrow_mut();
            conn.core.admit(set, &mut shard, crate::core::now_ms())?;
        }
    }
    if f & FLAG_NO_CLUSTER != 0 && crate::cluster::enabled() {
        return Err("ERR Can not run script on cluster, 'no-cluster' flag is set.");
    }
    if ro_cmd && f & FLAG_NO_WRITES == 0 {
        return Err("ERR Can not execute a script with write flag using *_ro command.");
    }
    Ok(())
}

/// The process is over `maxmemory` (Redis's `pre_command_oom_state`). One comparison
/// without a limit.
fn over_maxmemory(core: &crate::core::Core) -> bool {
    let limit = core.memory_limit();
    limit > 0 && crate::core::over_limit(limit)
}

/// Whether the running script's calls on this core may grow memory over `maxmemory` (Redis's
/// `scriptVerifyOOM`): it declared `allow-oom`, or it has written already (it cannot stop
/// half-way), or memory was under the limit when it started.
pub fn oom_exempt() -> bool {
    SLICE.with(|s| {
        s.try_borrow()
            .is_ok_and(|s| s.allow_oom || s.wrote || !s.oom_at_start)
    })
}

/// The functions registered so far by the library being loaded (Lua app data).
struct Loading(Vec<Registered>, std::collections::HashSet<String>);

/// How long FUNCTION LOAD may run a library's code (Redis's `LOAD_TIMEOUT_MS`).
pub(crate) const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

/// Runs a library's code (after its shebang line, whose newline it starts with) on this
/// core's Lua state, which registers its functions; `timeout`: its time limit. Errors read
/// as Redis 7.0's (`ERR Error compiling function: …`, `ERR Error registering functions: …`).
/// The loader sees only the load-time API (see `SETUP`), so it is deterministic: every core
/// that runs it registers the same functions.
pub(crate) fn load_library(
    code: &[u8],
    timeout: Option<Duration>,
) -> Result<Vec<Registered>, String> {
    let e = engine()?;
    let lua = &e.lua;
    let chunk = lua
        .load(code)
        .set_name("@user_function")
        .set_environment(e.fenv.clone())
        .into_function()
        .map_err(|e| compile_error("function", e))?;
    let th = lua
        .create_thread(chunk)
        .map_err(|e| format!("ERR Error registering functions: {e}"))?;
    let started = Instant::now();
    if let Some(limit) = timeout {
        th.set_hook(
            HookTriggers::new().every_nth_instruction(100_000),
            move |_, _| match started.elapsed() > limit {
                true => Err(mlua::Error::runtime("FUNCTION LOAD timeout")),
                false => Ok(VmState::Continue),
            },
        );
    }
    let before = lua.set_app_data(Loading(Vec::new(), Default::default()));
    let _ = e.set_loading.call::<()>(true);
    let r = th.resume::<()>(());
    let _ = e.set_loading.call::<()>(false);
    let registered = lua.remove_app_data::<Loading>().map(|l| l.0);
    if let Some(b) = before {
        lua.set_app_data(b);
    }
    let r = match r {
        Ok(()) if th.status() != mlua::ThreadStatus::Finished => {
            Err(mlua::Error::runtime("library code may not yield"))
        }
        r => r,
    };
    if let Err(mut err) = r {
        while let mlua::Error::CallbackError { cause, .. } = err {
            err = (*cause).clone();
        }
        let msg = match err {
            mlua::Error::RuntimeError(m) => m,
            mlua::Error::MemoryError(_) => "not enough memory".into(),
            e => e.to_string(),
        };
        let msg = msg.split("\nstack traceback:").next().unwrap_or("");
        return Err(format!("ERR Error registering functions: ERR {msg}"));
    }
    Ok(registered.unwrap_or_default())
}

/// Redis's error for code that does not compile (`what`: "script (new function)" or
/// "function").
fn compile_error(what: &str, e: mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => {
            format!("ERR Error compiling {what}: {message}")
        }
        e => format!("ERR Error compiling {what}: {e}"),
    }
}

/// The bytes of a value Lua's `lua_isstring` accepts (a string, or a number as Lua prints
/// it); None for other values.
pub(crate) fn string_like(lua: &Lua, v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(_) | Value::Number(_) => lua
            .coerce_string(v.clone())
            .ok()
            .flatten()
            .map(|s| s.as_bytes().to_vec()),
        _ => None,
    }
}

/// Redis's rule for library and function names: letters, digits and `_`, at least one.
pub(crate) fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `redis.register_function(name, callback)` or `redis.register_function{function_name=…,
/// callback=…, flags={…}, description=…}` while a library loads (Redis's
/// `luaRegisterFunction`, its checks and texts).
fn register_function(lua: &Lua, args: Variadic<Value>) -> mlua::Result<()> {
    let fail = |m: &str| Err(mlua::Error::runtime(m));
    let text = |v: &Value| string_like(lua, v);
    if lua.app_data_ref::<Loading>().is_none() {
        return fail("redis.register_function can only be called on FUNCTION LOAD command");
    }
    let (name, desc, f, flags) = match args.len() {
        1 => {
            let Value::Table(t) = &args[0] else {
                return fail("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).");
            };
            let (mut name, mut desc, mut f, mut flags) = (None, None, None, 0u8);
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let Some(k) = text(&k) else {
                    return fail(
                        "named argument key given to redis.register_function is not a string",
                    );
                };
                let k = String::from_utf8_lossy(&k).to_ascii_lowercase();
                match k.as_str() {
                    "function_name" => match text(&v) {
                        Some(n) => name = Some(n),
                        None => return fail("function_name argument given to redis.register_function must be a string"),
                    },
                    "description" => match text(&v) {
                        Some(d) => desc = Some(d),
                        None => return fail("description argument given to redis.register_function must be a string"),
                    },
                    "callback" => match v {
                        Value::Function(cb) => f = Some(cb),
                        _ => return fail("callback argument given to redis.register_function must be a function"),
                    },
                    "flags" => {
                        let Value::Table(ft) = v else {
                            return fail("flags argument to redis.register_function must be a table representing function flags");
                        };
                        for i in 1.. {
                            let v: Value = ft.get(i)?;
                            if v == Value::Nil {
                                break;
                            }
                            let bit = text(&v).and_then(|s| {
                                FUNCTION_FLAGS
                                    .iter()
                                    .position(|f| f.as_bytes().eq_ignore_ascii_case(&s))
                            });
                            match bit {
                                Some(b) => flags |= 1 << b,
                                None => return fail("unknown flag given"),
                            }
                        }
                    }
                    _ => return fail("unknown argument given to redis.register_function"),
                }
            }
            let Some(name) = name else {
                return fail("redis.register_function must get a function name argument");
            };
            let Some(f) = f else {
                return fail("redis.register_function must get a callback argument");
            };
            (name, desc, f, flags)
        }
        2 => {
            let Some(name) = text(&args[0]) else {
                return fail("first argument to redis.register_function must be a string");
            };
            let Value::Function(f) = &args[1] else {
                return fail("second argument to redis.register_function must be a function");
            };
            (name, None, f.clone(), 0)
        }
        _ => return fail("wrong number of arguments to redis.register_function"),
    };
    if !valid_name(&name) {
        return fail("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long");
    }
    let name = String::from_utf8_lossy(&name).into_owned();
    let mut loading = lua
        .app_data_mut::<Loading>()
        .ok_or_else(|| mlua::Error::runtime("not loading"))?;
    if !loading.1.insert(name.clone()) {
        return fail("Function already exists in the library");
    }
    let f = lua.create_registry_value(f)?;
    loading.0.push(Registered {
        name,
        desc,
        flags,
        f,
    });
    Ok(())
}

/// `cmsgpack`'s `mp_unpack_full` (limit and offset as `lua_tointeger` gave them): on
/// success a table of the values, their count and the next offset (-1 at the end); on
/// failure nil and lua-cmsgpack's error text.
fn msgpack_unpack(lua: &Lua, s: &[u8], limit: f64, offset: f64) -> mlua::Result<MultiValue> {
    let fail = |msg: String| -> mlua::Result<MultiValue> {
        Ok(MultiValue::from_iter([
            Value::Nil,
            Value::String(lua.create_string(&msg)?),
        ]))
    };
    let len = s.len();
    if offset < 0.0 || limit < 0.0 {
        // Sic: lua-cmsgpack prints the input's length as the limit.
        return fail(format!(
            "Invalid request to unpack with offset of {} and limit of {}.",
            offset as i32, len as i32
        ));
    }
    if offset > len as f64 {
        return fail(format!(
            "Start offset {} greater than input length {}.",
            offset as i32, len as i32
        ));
    }
    let limit = match (limit, offset) {
        (l, o) if l == 0.0 && o == 0.0 => i32::MAX as usize,
        (l, _) => l.min(i32::MAX as f64) as usize,
    };
    match crate::lua_cmsgpack::decode(lua, s, offset as usize, limit) {
        Ok((t, n, next)) => {
            let next = next.map_or(-1, |p| p as i64);
            Ok(MultiValue::from_iter([
                Value::Table(t),
                Value::Integer(n as i64),
                Value::Integer(next),
            ]))
        }
        Err(crate::lua_cmsgpack::DecodeError::Eof) => fail("Missing bytes in input.".into()),
        Err(crate::lua_cmsgpack::DecodeError::BadFormat) => {
            fail("Bad data format in input.".into())
        }
        Err(crate::lua_cmsgpack::DecodeError::TooDeep) => fail(
            "stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)"
                .into(),
        ),
        Err(crate::lua_cmsgpack::DecodeError::Lua(e)) => Err(e),
    }
}

/// LuaBitOp's number → 32 bits: the low word of `n + 2^52 + 2^51` (rounds half to even and
/// wraps modulo 2^32, as `bit.tobit` does).
fn tobit(n: f64) -> i32 {
    (n + 6_755_399_441_055_744.0).to_bits() as u32 as i32
}

/// One `bit` function on checked numbers (LuaBitOp 1.0.2 semantics; Mike Pall, MIT).
fn bit_op(lua: &Lua, op: &str, a: &[f64]) -> mlua::Result<Value> {
    let x = a.first().copied().map(tobit).unwrap_or(0);
    let n = a.get(1).copied().map(tobit).unwrap_or(0);
    let r: i32 = match op {
        "tobit" => x,
        "bnot" => !x,
        "band" => a.iter().skip(1).fold(x, |acc, &v| acc & tobit(v)),
        "bor" => a.iter().skip(1).fold(x, |acc, &v| acc | tobit(v)),
        "bxor" => a.iter().skip(1).fold(x, |acc, &v| acc ^ tobit(v)),
        "lshift" => ((x as u32) << (n as u32 & 31)) as i32,
        "rshift" => ((x as u32) >> (n as u32 & 31)) as i32,
        "arshift" => x >> (n as u32 & 31),
        "rol" => (x as u32).rotate_left(n as u32 & 31) as i32,
        "ror" => (x as u32).rotate_right(n as u32 & 31) as i32,
        "bswap" => (x as u32).swap_bytes() as i32,
        "tohex" => {
            let mut digits = if a.len() > 1 { n } else { 8 };
            let upper = digits < 0;
            if upper {
                digits = digits.wrapping_neg();
            }
            let digits = digits.clamp(0, 8) as usize;
            let hex = match upper {
                true => format!("{:08X}", x as u32),
                false => format!("{:08x}", x as u32),
            };
            return Ok(Value::String(lua.create_string(&hex[8 - digits..])?));
        }
        _ => return Err(mlua::Error::runtime("unknown bit operation")),
    };
    Ok(Value::Integer(r as i64))
}

/// `#!lua flags=…` at the start of a body: its flags, bits of [`FUNCTION_FLAGS`] (None: no
/// shebang), and the code to compile (the shebang line removed, its newline kept so line
/// numbers stay).
fn shebang(body: &[u8]) -> Result<(Option<u8>, &[u8]), String> {
    if !body.starts_with(b"#!") {
        return Ok((None, body));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split([' ', '\t', '\r']).filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("#!");
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut bits = 0u8;
    for p in parts {
        let Some(flags) = p.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {p}"));
        };
        for f in flags.split(',').filter(|f| !f.is_empty()) {
            match FUNCTION_FLAGS.iter().position(|x| *x == f) {
                Some(b) => bits |= 1 << b,
                None => return Err(format!("ERR Unexpected flag in script shebang: {f}")),
            }
        }
    }
    Ok((Some(bits), &body[end..]))
}

/// Lower-case hex SHA1 of `data`.
pub fn sha1_hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}

fn sha_of(data: &[u8]) -> Sha {
    let mut s = [0u8; 40];
    s.copy_from_slice(sha1_hex(data).as_bytes());
    s
}

/// Redis's `luaPushErrorBuff`: `-CODE msg` → `CODE msg`; `-msg` (one word) → `ERR msg`;
/// trailing CR/LF trimmed.
fn error_buff(msg: &str) -> String {
    let body = msg.strip_prefix('-').unwrap_or(msg);
    let (code, text) = match (msg.starts_with('-'), body.split_once(' ')) {
        (true, Some((c, t))) => (c, t),
        (true, None) => ("ERR", body),
        (false, _) => ("ERR", msg),
    };
    format!("{code} {}", text.trim_matches(|c| c == '\r' || c == '\n'))
}

fn redis_log(args: Variadic<Value>) -> mlua::Result<()> {
    if args.len() < 2 {
        return Err(mlua::Error::runtime(
            "redis.log() requires two arguments or more.",
        ));
    }
    let level = match &args[0] {
        Value::Integer(i) => *i,
        Value::Number(n) => *n as i64,
        _ => {
            return Err(mlua::Error::runtime(
                "First argument must be a number (log level).",
            ))
        }
    };
    if !(0..=3).contains(&level) {
        return Err(mlua::Error::runtime("Invalid debug level."));
    }
    let mut msg = String::new();
    for (i, v) in args.iter().skip(1).enumerate() {
        if i > 0 {
            msg.push(' ');
        }
        match v {
            Value::String(s) => msg.push_str(&s.to_string_lossy()),
            Value::Integer(i) => msg.push_str(&i.to_string()),
            Value::Number(n) => msg.push_str(&n.to_string()),
            _ => {}
        }
    }
    if level >= 3 {
        crate::log::warn(&msg);
    } else {
        crate::log::notice(&msg);
    }
    Ok(())
}

/// `redis.call(...)` (first argument true: errors are raised) and `redis.pcall(...)`:
/// the reply, and for `call` the error table to raise.
async fn redis_call(lua: Lua, args: MultiValue) -> mlua::Result<(Value, Value)> {
    let mut it = args.into_iter();
    let raise = matches!(it.next(), Some(Value::Boolean(true)));
    let fail = |lua: &Lua, msg: String| -> mlua::Result<(Value, Value)> {
        if raise {
            with_run(|run| run.raised = Some((msg.clone(), None)));
        }
        let t = lua.create_table()?;
        t.raw_set("err", msg)?;
        Ok(match raise {
            true => (Value::Nil, Value::Table(t)),
            false => (Value::Table(t), Value::Nil),
        })
    };
    let mut argv = OwnedArgs::default();
    for v in it {
        match v {
            Value::String(s) => argv.push(&s.as_bytes()),
            Value::Integer(i) => argv.push(number_arg(i as f64, &mut [0; 64])),
            Value::Number(x) => argv.push(number_arg(x, &mut [0; 64])),
            _ => {
                return fail(
                    &lua,
                    "ERR Lua redis lib command arguments must be strings or integers".into(),
                )
            }
        }
    }
    if argv.spans.is_empty() {
        return fail(
            &lua,
            "ERR Please specify at least one argument for this redis lib call".into(),
        );
    }
    let a = argv.args();
    let spec = match percore_proto::resolve(&a) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                &lua,
                match percore_proto::lookup(&a[0]) {
                    None => "ERR Unknown Redis command called from script".into(),
                    Some(s) if !s.arity_ok(a.len()) => {
                        "ERR Wrong number of args calling Redis command from script".into()
                    }
                    Some(_) => e,
                },
            )
        }
    };
    if spec.flags.has(Flags::NOSCRIPT) {
        return fail(
            &lua,
            "ERR This Redis command is not allowed from script".into(),
        );
    }
    let (conn, peer, read_only, resp3) =
        with_run(|run| (run.conn, run.peer, run.read_only, run.resp3))
            .ok_or_else(|| mlua::Error::runtime("redis.call outside a script"))?;
    if read_only && spec.flags.has(Flags::WRITE) {
        return fail(
            &lua,
            "ERR Write commands are not allowed from read-only scripts.".into(),
        );
    }
    // SAFETY: see `Run::conn`: the pointers are the running script's, valid and not used
    // by anything else while its future (which polls this one) runs.
    let (conn, peer) = unsafe { (&mut *conn, &mut *peer) };
    if crate::cluster::enabled() && !conn.is_master {
        if let Err(e) = check_slot(spec, &a, conn.asking, conn.readonly) {
            return fail(&lua, e.into());
        }
    }
    if let Err(e) = lock_for_call(&lua, conn, spec, &a).await {
        return fail(&lua, e);
    }
    let proto = if resp3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    let reply = conn.run_captured(a, peer, proto).await;
    // A write command that was not refused for memory makes the script unkillable (and
    // free to go on over maxmemory), as Redis marks it before running the command.
    if spec.flags.has(Flags::WRITE) && !reply.starts_with(b"-OOM ") {
        note_write();
    }
    if reply.first() == Some(&b'-') {
        let end = reply.len().saturating_sub(2).max(1);
        let msg = String::from_utf8_lossy(&reply[1..end]).into_owned();
        return fail(&lua, error_buff(&format!("-{msg}")));
    }
    let mut pos = 0;
    let v = resp_to_lua(&lua, &reply, &mut pos, 0)?;
    Ok((v, Value::Nil))
}

// The synchronous path of `redis.call`.
//
// Most calls touch keys of the core the script runs on, with nothing else in play (no lock
// table, no MONITOR, no tracking: [`Client::run_inline`]'s list). Those run as a plain Lua C
// function ([`fast_call`]) with no future, no Rust closure and no userdata per call: the
// arguments are copied from the Lua stack into one buffer per core, the command runs on the
// shard with its reply written to a second buffer, and the reply is pushed as Lua values
// straight from the RESP bytes. Anything else answers the mark [`slow_mark`] before doing
// anything, and `SETUP`'s `redis.call` then takes the async path ([`redis_call`]), which
// goes through the connection's dispatch. Both paths give the same replies and errors.
//
// Lua errors are longjmps (the vendored Lua is C): a longjmp may only cross Rust frames
// that own nothing to drop. So the work that owns Rust values ([`fast_run`]) ends before
// the first Lua call that may raise (a push may fail for memory), and the pushing
// ([`push_resp`], [`push_err_table`]) holds only plain values and borrowed bytes.

/// The buffers of [`fast_call`] (one per core, reused: a call allocates nothing once they
/// have grown).
struct FastBufs {
    argv: OwnedArgs,
    reply: Vec<u8>,
}

thread_local! {
    static FAST: RefCell<FastBufs> = const {
        RefCell::new(FastBufs {
            argv: OwnedArgs {
                buf: Vec::new(),
                spans: Vec::new(),
            },
            reply: Vec::new(),
        })
    };
}

/// What [`fast_run`] did.
enum Fast {
    /// Nothing: the call needs the async path.
    Slow,
    /// The command ran; its reply is in `FAST.reply`.
    Reply,
    /// The command ran and failed: `FAST.reply` holds the error as the script sees it
    /// (Redis's `luaPushErrorBuff` form, noted for a raising call as the slow path does).
    Error,
}

/// The value `fast(…)` answers when the call must take the async path.
fn slow_mark() -> *mut std::ffi::c_void {
    static MARK: u8 = 0;
    &MARK as *const u8 as *mut std::ffi::c_void
}

/// `fast(raise, cmd, …)` for `SETUP`'s `redis.call` (raise true) and `redis.pcall`: the
/// mark [`slow_mark`], or the call's two results as [`redis_call`] gives them (value and
/// error table; for `pcall` the error table is the value).
unsafe extern "C-unwind" fn fast_call(l: *mut mlua::ffi::lua_State) -> std::os::raw::c_int {
    use mlua::ffi;
    // SAFETY (whole function): `l` is the calling thread; the stack holds the call's
    // arguments and has LUA_MINSTACK free slots.
    let raise = unsafe { ffi::lua_toboolean(l, 1) } != 0;
    let got = unsafe { fast_run(l, raise) };
    // Plain pointers from here on (nothing to drop if a push raises): the reply buffer is
    // not touched again until the next call, and pushing never runs a script call.
    let (ptr, len) = FAST.with(|f| {
        // SAFETY: no borrow of FAST is live (fast_run's ended).
        let b = unsafe { &*f.as_ptr() };
        (b.reply.as_ptr(), b.reply.len())
    });
    // SAFETY: `ptr` points at `len` bytes that stay in place during the pushes.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    match got {
        Fast::Slow => {
            unsafe { ffi::lua_pushlightuserdata(l, slow_mark()) };
            1
        }
        Fast::Reply => {
            unsafe { ffi::lua_pushnil(l) };
            let mut pos = 0;
            // SAFETY: see above; `push_resp` raises a Lua error itself on bad bytes.
            if !unsafe { push_resp(l, bytes, &mut pos, 0) } {
                unsafe { raise_str(l, "ERR unexpected reply in script") }
            }
            // (value, nil) for both: the value first.
            unsafe { ffi::lua_insert(l, -2) };
            2
        }
        Fast::Error => {
            unsafe { push_err_table(l, &[bytes]) };
            if raise {
                // (nil, error): the wrapper raises it.
                unsafe { ffi::lua_pushnil(l) };
                unsafe { ffi::lua_insert(l, -2) };
            } else {
                unsafe { ffi::lua_pushnil(l) };
            }
            2
        }
    }
}

/// `numtext(…)`: its arguments, numbers replaced by their text as [`number_arg`] writes
/// it, for the async path of `redis.call` (mlua would hand a `-0` over as the integer 0).
unsafe extern "C-unwind" fn number_args(l: *mut mlua::ffi::lua_State) -> std::os::raw::c_int {
    use mlua::ffi;
    // SAFETY: `l` is the calling thread with its arguments on the stack; the loop holds
    // only plain values (a push may raise for memory).
    unsafe {
        let n = ffi::lua_gettop(l);
        for i in 1..=n {
            if ffi::lua_type(l, i) == ffi::LUA_TNUMBER {
                let mut buf = [0u8; 64];
                let text = number_arg(ffi::lua_tonumber(l, i), &mut buf);
                ffi::lua_pushlstring(l, text.as_ptr().cast(), text.len());
                ffi::lua_replace(l, i);
            }
        }
        n
    }
}

/// Raises `msg` as a Lua error.
///
/// # Safety
/// `l` is a running thread (in a C function called from Lua); the caller's frames own
/// nothing to drop.
unsafe fn raise_str(l: *mut mlua::ffi::lua_State, msg: &str) -> ! {
    // SAFETY: the caller's contract.
    unsafe {
        mlua::ffi::lua_pushlstring(l, msg.as_ptr().cast(), msg.len());
        mlua::ffi::lua_error(l)
    }
}

/// The Rust half of [`fast_call`]: reads the arguments, decides, runs the command; every
/// value it owns is dropped by its return.
///
/// # Safety
/// `l` is the calling thread of [`fast_call`].
unsafe fn fast_run(l: *mut mlua::ffi::lua_State, raise: bool) -> Fast {
    use mlua::ffi;
    FAST.with(|f| {
        let Ok(mut f) = f.try_borrow_mut() else {
            return Fast::Slow;
        };
        let f = &mut *f;
        f.argv.buf.clear();
        f.argv.spans.clear();
        f.reply.clear();
        // SAFETY: indexes within the arguments; `lua_tolstring` on a string neither
        // converts nor allocates (so it cannot raise).
        let n = unsafe { ffi::lua_gettop(l) };
        for i in 2..=n {
            match unsafe { ffi::lua_type(l, i) } {
                ffi::LUA_TSTRING => {
                    let mut len = 0usize;
                    let p = unsafe { ffi::lua_tolstring(l, i, &mut len) };
                    // SAFETY: the string stays on the stack while it is copied.
                    f.argv
                        .push(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) });
                }
                ffi::LUA_TNUMBER => {
                    let mut text = [0u8; 64];
                    f.argv
                        .push(number_arg(unsafe { ffi::lua_tonumber(l, i) }, &mut text));
                }
                _ => return Fast::Slow,
            }
        }
        if f.argv.spans.is_empty() {
            return Fast::Slow;
        }
        let a = f.argv.args();
        let Ok(spec) = percore_proto::resolve(&a) else {
            return Fast::Slow;
        };
        if spec.flags.has(Flags::NOSCRIPT) || crate::cluster::enabled() {
            return Fast::Slow;
        }
        let Some((conn, read_only, resp3, locked)) =
            with_run(|r| (r.conn, r.read_only, r.resp3, r.locked))
        else {
            return Fast::Slow;
        };
        if locked || (read_only && spec.flags.has(Flags::WRITE)) {
            return Fast::Slow;
        }
        // SAFETY: see `Run::conn`: the running script's connection, used by nothing else
        // while the script's future is polled (this call runs inside that poll).
        let conn = unsafe { &mut *conn };
        let (n, me, db) = (conn.core.nshards(), conn.core.id, conn.db);
        let Some(keys) = crate::txlock::key_args(spec, &a) else {
            return Fast::Slow;
        };
        if keys
            .iter()
            .any(|&i| crate::router::shard_of(&a[i], n) != me)
        {
            return Fast::Slow;
        }
        let proto = if resp3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        };
        if !conn.run_inline(spec, a, proto, &mut f.reply) {
            return Fast::Slow;
        }
        // The keys touched unlocked, for the locks the script takes if it must become a
        // transaction (see `lock_for_call`).
        with_run(|r| {
            for &i in &keys {
                let k = &a[i];
                let known = r
                    .local_keys
                    .iter()
                    .any(|x| x.first() == Some(&(db as u8)) && x[1..] == *k);
                if !known {
                    r.local_keys.push(lock_key(db, k));
                }
            }
        });
        if spec.flags.has(Flags::WRITE) && !f.reply.starts_with(b"-OOM ") {
            note_write();
        }
        if f.reply.first() != Some(&b'-') {
            return Fast::Reply;
        }
        let end = f.reply.len().saturating_sub(2).max(1);
        let msg = error_buff(&format!("-{}", String::from_utf8_lossy(&f.reply[1..end])));
        if raise {
            with_run(|r| r.raised = Some((msg.clone(), None)));
        }
        f.reply.clear();
        f.reply.extend_from_slice(msg.as_bytes());
        Fast::Error
    })
}

/// A number passed to `redis.call` as Redis passes it (`"%.17g"`, not Lua's `"%.14g"`,
/// which loses precision), written in `buf`: integers below 10^17 as their digits, others
/// by the C library's formatting.
fn number_arg(x: f64, buf: &mut [u8; 64]) -> &[u8] {
    if x.fract() == 0.0 && x.abs() < 1e17 && !(x == 0.0 && x.is_sign_negative()) {
        return int_text(x as i64, buf);
    }
    // SAFETY: `buf` holds 64 bytes and snprintf writes at most that many, NUL included;
    // the format takes one double.
    let n = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), c"%.17g".as_ptr(), x) };
    &buf[..(n.max(0) as usize).min(buf.len() - 1)]
}

/// The decimal text of `v` in `buf`.
fn int_text(v: i64, buf: &mut [u8; 64]) -> &[u8] {
    let mut i = buf.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Pushes `{err = <parts concatenated>}`.
///
/// # Safety
/// As [`raise_str`]; the stack has 3 free slots.
unsafe fn push_err_table(l: *mut mlua::ffi::lua_State, parts: &[&[u8]]) {
    use mlua::ffi;
    // SAFETY: the caller's contract; a new table has no metatable, so setfield is raw.
    unsafe {
        ffi::lua_createtable(l, 0, 1);
        for p in parts {
            ffi::lua_pushlstring(l, p.as_ptr().cast(), p.len());
        }
        if parts.len() > 1 {
            ffi::lua_concat(l, parts.len() as std::os::raw::c_int);
        }
        ffi::lua_setfield(l, -2, c"err".as_ptr());
    }
}

/// Wraps the value on top of the stack in a table under `key` (`{ok = v}`, …).
///
/// # Safety
/// As [`raise_str`]; the stack has 2 free slots.
unsafe fn push_tagged(l: *mut mlua::ffi::lua_State, key: &std::ffi::CStr) {
    use mlua::ffi;
    // SAFETY: the caller's contract.
    unsafe {
        ffi::lua_createtable(l, 0, 1);
        ffi::lua_insert(l, -2);
        ffi::lua_setfield(l, -2, key.as_ptr());
    }
}

/// Pushes the RESP value at `*pos` of `buf` as Redis converts it for Lua (what
/// [`resp_to_lua`] makes, without Rust values in between); false on bytes that are not a
/// reply (the caller raises an error; what was pushed of it stays on the stack).
///
/// # Safety
/// As [`raise_str`] (every local here is a plain value or borrowed bytes).
unsafe fn push_resp(
    l: *mut mlua::ffi::lua_State,
    buf: &[u8],
    pos: &mut usize,
    depth: usize,
) -> bool {
    use mlua::ffi;
    if depth > MAX_DEPTH {
        return false;
    }
    let Some(rest) = buf.get(*pos..) else {
        return false;
    };
    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    let Some(&kind) = rest.first() else {
        return false;
    };
    let line = &rest[1..eol];
    *pos += eol + 2;
    let num = percore_proto::parse_i64(line);
    // SAFETY (the pushes): the caller's contract; each level checks for 4 free slots.
    if unsafe { ffi::lua_checkstack(l, 4) } == 0 {
        return false;
    }
    let str_push = |b: &[u8]| unsafe { ffi::lua_pushlstring(l, b.as_ptr().cast(), b.len()) };
    match kind {
        b'+' => {
            str_push(line);
            unsafe { push_tagged(l, c"ok") };
        }
        b'-' => {
            // `luaPushErrorBuff`, as `error_buff` words it.
            let (code, text): (&[u8], &[u8]) = match line.iter().position(|&c| c == b' ') {
                Some(sp) => (&line[..sp], &line[sp + 1..]),
                None => (b"ERR", line),
            };
            let cr_lf = |c: &u8| *c != b'\r' && *c != b'\n';
            let a = text.iter().position(cr_lf).unwrap_or(text.len());
            let b = text.iter().rposition(cr_lf).map_or(a, |b| b + 1);
            unsafe { push_err_table(l, &[code, b" ", &text[a..b]]) }
        }
        b':' => match num {
            Some(v) => unsafe { ffi::lua_pushnumber(l, v as f64) },
            None => return false,
        },
        b'$' | b'=' => {
            let Some(n) = num else { return false };
            if n < 0 {
                unsafe { ffi::lua_pushboolean(l, 0) };
                return true;
            }
            let Some(data) = buf.get(*pos..).and_then(|b| b.get(..n as usize)) else {
                return false;
            };
            *pos += n as usize + 2;
            if kind == b'=' && n >= 4 {
                unsafe { ffi::lua_createtable(l, 0, 2) };
                str_push(&data[..3]);
                unsafe { ffi::lua_setfield(l, -2, c"format".as_ptr()) };
                str_push(&data[4..]);
                unsafe { ffi::lua_setfield(l, -2, c"string".as_ptr()) };
                unsafe { push_tagged(l, c"verbatim_string") };
            } else {
                str_push(data);
            }
        }
        b'*' | b'~' | b'%' | b'>' => {
            let Some(n) = num else { return false };
            if n < 0 {
                unsafe { ffi::lua_pushboolean(l, 0) };
                return true;
            }
            let narr = if matches!(kind, b'*' | b'>') { n } else { 0 };
            unsafe { ffi::lua_createtable(l, narr.min(1 << 16) as _, 0) };
            for i in 0..n {
                match kind {
                    b'%' => {
                        if !unsafe { push_resp(l, buf, pos, depth + 1) } {
                            return false;
                        }
                        if !unsafe { push_resp(l, buf, pos, depth + 1) } {
                            return false;
                        }
                        unsafe { ffi::lua_rawset(l, -3) };
                    }
                    b'~' => {
                        if !unsafe { push_resp(l, buf, pos, depth + 1) } {
                            return false;
                        }
                        unsafe { ffi::lua_pushboolean(l, 1) };
                        unsafe { ffi::lua_rawset(l, -3) };
                    }
                    _ => {
                        if !unsafe { push_resp(l, buf, pos, depth + 1) } {
                            return false;
                        }
                        unsafe { ffi::lua_rawseti(l, -2, (i + 1) as _) };
                    }
                }
            }
            match kind {
                b'%' => unsafe { push_tagged(l, c"map") },
                b'~' => unsafe { push_tagged(l, c"set") },
                _ => {}
            }
        }
        b'_' => unsafe { ffi::lua_pushnil(l) },
        b'#' => unsafe { ffi::lua_pushboolean(l, (line == b"t") as _) },
        b',' => {
            let d = match std::str::from_utf8(line) {
                Ok("inf") => f64::INFINITY,
                Ok("-inf") => f64::NEG_INFINITY,
                Ok(s) => match s.parse::<f64>() {
                    Ok(d) => d,
                    Err(_) => return false,
                },
                Err(_) => return false,
            };
            unsafe { ffi::lua_pushnumber(l, d) };
            unsafe { push_tagged(l, c"double") };
        }
        b'(' => {
            str_push(line);
            unsafe { push_tagged(l, c"big_number") };
        }
        _ => return false,
    }
    true
}

/// Cluster mode (Redis's `scriptVerifyClusterState`): a call's keys in one slot that this
/// node serves to the script's client — its own, an importing slot after the client's
/// ASKING, its master's for a read after READONLY — and, unless the script may cross
/// slots, the slot of the keys before. The replication master's scripts are not checked.
fn check_slot(
    spec: &CommandSpec,
    a: &Args<'_>,
    asking: bool,
    readonly: bool,
) -> Result<(), &'static str> {
    let slot = match crate::cluster::slot_of(spec, a) {
        Err(()) => return Err("ERR Script attempted to access a non local key in a cluster node"),
        Ok(None) => return Ok(()),
        Ok(Some(s)) => s,
    };
    let write = spec.flags.has(Flags::WRITE);
    let served = crate::cluster::serves_here(slot)
        || (asking && crate::cluster::importing(slot))
        || (readonly && !write && crate::cluster::replica_serves(slot));
    if !served {
        return Err("ERR Script attempted to access a non local key in a cluster node");
    }
    with_run(|run| {
        if run.cross_slot {
            return Ok(());
        }
        match run.slot {
            Some(s) if s != slot => {
                Err("ERR Script attempted to access keys that do not hash to the same slot")
            }
            _ => {
                run.slot = Some(slot);
                Ok(())
            }
        }
    })
    .unwrap_or(Ok(()))
}

/// Takes, for the script's transaction, the locks a call needs that it does not hold yet
/// (see the module header); Err is the call's error.
async fn lock_for_call(
    lua: &Lua,
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: &Args<'_>,
) -> Result<(), String> {
    let (n, me, db) = (conn.core.nshards(), conn.core.id, conn.db);
    // What the call touches, per shard (None: whole shards).
    let mut need: Vec<(usize, KeySet)> = Vec::new();
    let all = matches!(spec.route, percore_proto::Route::AllShards(_));
    match crate::txlock::key_args(spec, a) {
        Some(idx) if !all => {
            for i in idx {
                let s = crate::router::shard_of(&a[i], n);
                let k = lock_key(db, &a[i]);
                match need.iter_mut().find(|(x, _)| *x == s) {
                    Some((_, KeySet::Keys(ks))) => ks.push(k),
                    Some(_) => {}
                    None => need.push((s, KeySet::Keys(vec![k]))),
                }
            }
        }
        _ => need = (0..n).map(|s| (s, KeySet::All)).collect(),
    }
    let locked = with_run(|r| r.locked).unwrap_or(false);
    if !locked {
        // Fast path: free to run here and now?
        let stays = need.iter().all(|(s, _)| *s == me);
        let free = {
            let l = conn.core.locks.borrow();
            l.is_idle() || need.iter().all(|(_, k)| l.admits(k, None))
        };
        if stays && free {
            // Keys read or written unlocked so far: locked too if the script must go on as
            // a transaction (see below), so that nothing it touched can change under it.
            with_run(|run| {
                for (_, k) in need {
                    match k {
                        KeySet::All => run.local_whole = true,
                        KeySet::Keys(ks) => run.local_keys.extend(ks),
                    }
                }
            });
            return Ok(());
        }
        // Become a transaction: the declared keys here are still free (nothing ran since
        // they were checked).
        let tx = crate::txlock::new_tx();
        let keys = with_run(|run| {
            run.locked = true;
            let local = std::mem::take(&mut run.local_keys);
            match run.local_whole {
                true => KeySet::All,
                false => KeySet::Keys(local),
            }
        })
        .ok_or("ERR no script")?;
        if !conn.core.locks.borrow_mut().try_acquire(tx, &keys) {
            // Not expected; fail the call rather than run unisolated.
            crate::txlock::release(&conn.core, tx);
            return Err("ERR script keys became locked; retry".into());
        }
        conn.tx = Some(tx);
        conn.tx_shard(me);
        with_run(|run| run.held.push((me, keys)));
        DEFER_SERVING.with(|d| d.set(false));
    }
    let Some(tx) = conn.tx else {
        return Ok(());
    };
    for (s, keys) in need {
        // Keys not held yet by the transaction.
        let missing = with_run(|run| {
            let held = run.held.iter().find(|(x, _)| *x == s).map(|(_, k)| k);
            match (&keys, held) {
                (_, Some(KeySet::All)) => None,
                (KeySet::All, _) => Some(KeySet::All),
                (KeySet::Keys(ks), Some(KeySet::Keys(h))) => {
                    let m: Vec<_> = ks.iter().filter(|k| !h.contains(k)).cloned().collect();
                    (!m.is_empty()).then_some(KeySet::Keys(m))
                }
                (KeySet::Keys(ks), None) => Some(KeySet::Keys(ks.clone())),
            }
        })
        .ok_or("ERR no script")?;
        let Some(missing) = missing else { continue };
        conn.tx_shard(s);
        let want = missing.clone();
        let wait = crate::core::call(&conn.core, s, move |c: &crate::core::Core| {
            c.locks.borrow_mut().acquire(tx, want)
        })
        .await;
        if let Some(granted) = wait {
            // The core's script slot is given up while waiting, so that the holder of the
            // lock may be a script of this core waiting for the slot.
            let e = engine()?;
            let parked = park(lua, &e);
            let timed_out = futures_lite::future::or(async { granted.await.is_err() }, async {
                glommio::timer::sleep(UNDECLARED_WAIT).await;
                true
            })
            .await;
            unpark(lua, &e, parked).await;
            if timed_out {
                // Dropping the receiver withdraws the request (a grant to a dropped
                // receiver takes nothing); one granted just before is released with the
                // transaction's other locks (the shard is in its list).
                return Err(format!(
                    "ERR a key of this call is locked by another transaction and the script did not declare it: declare every key the script uses in KEYS (waited {} ms)",
                    UNDECLARED_WAIT.as_millis()
                ));
            }
        }
        with_run(|run| match run.held.iter_mut().find(|(x, _)| *x == s) {
            Some((_, KeySet::All)) => {}
            Some((_, h)) if missing == KeySet::All => *h = KeySet::All,
            Some((_, KeySet::Keys(h))) => {
                if let KeySet::Keys(m) = missing {
                    h.extend(m)
                }
            }
            None => run.held.push((s, missing)),
        });
    }
    Ok(())
}

/// A running script's state, set aside while it waits without the core's slot.
struct Parked {
    run: Option<Run>,
    keys: Value,
    argv: Value,
    slice: SliceState,
}

/// Sets the running script aside and gives up the core's slot. The core stops being busy
/// meanwhile (another script may run; a busy script stays listed for SCRIPT KILL and
/// FUNCTION STATS, and its kill request is seen once it runs again).
fn park(lua: &Lua, e: &Engine) -> Parked {
    let g = lua.globals();
    let p = Parked {
        run: RUN.with(|r| r.borrow_mut().take()),
        keys: g.raw_get("KEYS").unwrap_or(Value::Nil),
        argv: g.raw_get("ARGV").unwrap_or(Value::Nil),
        slice: SLICE.with(|s| std::mem::replace(&mut *s.borrow_mut(), SliceState::IDLE)),
    };
    BUSY.with(|b| b.set(0));
    e.leave();
    p
}

/// Takes the slot back and puts the script's state in place again.
async fn unpark(lua: &Lua, e: &Engine, p: Parked) {
    e.enter().await;
    if let Some(run) = p.run {
        RUN.with(|r| *r.borrow_mut() = Some(run));
    }
    let g = lua.globals();
    let _ = g.raw_set("KEYS", p.keys);
    let _ = g.raw_set("ARGV", p.argv);
    BUSY.with(|b| b.set(p.slice.busy));
    SLICE.with(|s| *s.borrow_mut() = p.slice);
}

/// A reply (RESP2 or RESP3) as Redis converts it for Lua.
fn resp_to_lua(lua: &Lua, buf: &[u8], pos: &mut usize, depth: usize) -> mlua::Result<Value> {
    let bad = || mlua::Error::runtime("ERR unexpected reply in script");
    if depth > MAX_DEPTH {
        return Err(bad());
    }
    let line_end = buf
        .get(*pos..)
        .ok_or_else(bad)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(bad)?
        + *pos;
    let kind = *buf.get(*pos).ok_or_else(bad)?;
    let line = &buf[*pos + 1..line_end];
    *pos = line_end + 2;
    let num = || percore_proto::parse_i64(line).ok_or_else(bad);
    let text = |lua: &Lua| lua.create_string(line);
    let tagged = |k: &str, v: Value| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        t.raw_set(k, v)?;
        Ok(Value::Table(t))
    };
    Ok(match kind {
        b'+' => tagged("ok", Value::String(text(lua)?))?,
        b'-' => tagged(
            "err",
            Value::String(
                lua.create_string(error_buff(&format!("-{}", String::from_utf8_lossy(line))))?,
            ),
        )?,
        b':' => Value::Number(num()? as f64),
        b'$' | b'=' => {
            let n = num()?;
            if n < 0 {
                return Ok(Value::Boolean(false));
            }
            let n = n as usize;
            let data = buf.get(*pos..*pos + n).ok_or_else(bad)?;
            *pos += n + 2;
            if kind == b'=' && n >= 4 {
                let t = lua.create_table()?;
                t.raw_set("format", lua.create_string(&data[..3])?)?;
                t.raw_set("string", lua.create_string(&data[4..])?)?;
                return tagged("verbatim_string", Value::Table(t));
            }
            Value::String(lua.create_string(data)?)
        }
        b'*' | b'~' | b'%' | b'>' => {
            let n = num()?;
            if n < 0 {
                return Ok(Value::Boolean(false));
            }
            let n = n as usize;
            let t = lua.create_table()?;
            match kind {
                b'%' => {
                    for _ in 0..n {
                        let k = resp_to_lua(lua, buf, pos, depth + 1)?;
                        let v = resp_to_lua(lua, buf, pos, depth + 1)?;
                        t.raw_set(k, v)?;
                    }
                    return tagged("map", Value::Table(t));
                }
                b'~' => {
                    for _ in 0..n {
                        let k = resp_to_lua(lua, buf, pos, depth + 1)?;
                        t.raw_set(k, true)?;
                    }
                    return tagged("set", Value::Table(t));
                }
                _ => {
                    for i in 0..n {
                        let v = resp_to_lua(lua, buf, pos, depth + 1)?;
                        t.raw_set(i + 1, v)?;
                    }
                }
            }
            Value::Table(t)
        }
        b'_' => Value::Nil,
        b'#' => Value::Boolean(line == b"t"),
        b',' => {
            let s = std::str::from_utf8(line).map_err(|_| bad())?;
            let d = match s {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                _ => s.parse::<f64>().map_err(|_| bad())?,
            };
            tagged("double", Value::Number(d))?
        }
        b'(' => tagged("big_number", Value::String(text(lua)?))?,
        _ => return Err(bad()),
    })
}

/// A script's result written as Redis converts Lua values (`resp3`: the script called
/// `redis.setresp(3)`).
fn lua_to_resp(w: &mut ReplyWriter, v: &Value, resp3: bool, depth: usize) {
    if depth > MAX_DEPTH {
        return w.error("ERR reached lua stack limit");
    }
    match v {
        Value::Nil => w.null(),
        Value::Boolean(b) => match (resp3, b) {
            (false, true) => w.int(1),
            (false, false) => w.null(),
            (true, b) => w.boolean(*b),
        },
        Value::Integer(i) => w.int(*i),
        Value::Number(n) => w.int(*n as i64),
        Value::String(s) => w.bulk(&s.as_bytes()),
        Value::Table(t) => {
            if let Ok(Value::String(e)) = t.raw_get::<Value>("err") {
                return w.error(&e.to_string_lossy());
            }
            if let Ok(Value::String(s)) = t.raw_get::<Value>("ok") {
                let s: Vec<u8> = s
                    .as_bytes()
                    .iter()
                    .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
                    .collect();
                return w.simple(&s);
            }
            if let Ok(d) = t.raw_get::<Value>("double") {
                if let Some(d) = match d {
                    Value::Integer(i) => Some(i as f64),
                    Value::Number(n) => Some(n),
                    _ => None,
                } {
                    return w.double_text(&percore_shard::ops::zset::fmt_score(d));
                }
            }
            if let Ok(Value::String(s)) = t.raw_get::<Value>("big_number") {
                return w.big_number(&s.as_bytes());
            }
            if let Ok(Value::Table(m)) = t.raw_get::<Value>("map") {
                let pairs: Vec<(Value, Value)> = m.pairs().filter_map(|p| p.ok()).collect();
                w.map(pairs.len());
                for (k, v) in &pairs {
                    lua_to_resp(w, k, resp3, depth + 1);
                    lua_to_resp(w, v, resp3, depth + 1);
                }
                return;
            }
            if let Ok(Value::Table(m)) = t.raw_get::<Value>("set") {
                let keys: Vec<Value> = m
                    .pairs::<Value, Value>()
                    .filter_map(|p| p.ok().map(|(k, _)| k))
                    .collect();
                w.set(keys.len());
                for k in &keys {
                    lua_to_resp(w, k, resp3, depth + 1);
                }
                return;
            }
            let mut items = Vec::new();
            for i in 1.. {
                match t.raw_get::<Value>(i) {
                    Ok(Value::Nil) | Err(_) => break,
                    Ok(v) => items.push(v),
                }
            }
            w.array(items.len());
            for v in &items {
                lua_to_resp(w, v, resp3, depth + 1);
            }
        }
        _ => w.null(),
    }
}

/// EVAL*, SCRIPT *, and FCALL*, FUNCTION * (their handlers are [`crate::functions`]'s):
/// the reply goes to `out`.
pub async fn run(
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: Args<'_>,
    peer: &mut dyn Peer,
    out: &mut Vec<u8>,
) {
    let proto = conn.proto;
    match spec.cmd {
        Cmd::Eval | Cmd::EvalSha | Cmd::EvalRo | Cmd::EvalShaRo => {
            eval(conn, spec, a, peer, out).await
        }
        Cmd::ScriptLoad => {
            let mut w = ReplyWriter::new(out, proto);
            match load(&a[2]) {
                Ok(sha) => w.bulk(&sha),
                Err(e) => w.error(&e),
            }
        }
        Cmd::ScriptExists => {
            let mut w = ReplyWriter::new(out, proto);
            let c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            w.array(a.len() - 2);
            for s in a.iter().skip(2) {
                let hit = <Sha>::try_from(s).is_ok_and(|mut s| {
                    s.make_ascii_lowercase();
                    c.contains_key(&s)
                });
                w.int(hit as i64);
            }
        }
        Cmd::ScriptFlush => {
            let mut w = ReplyWriter::new(out, proto);
            if a.len() > 3 || !flush_mode_ok(&a) {
                return w.error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            }
            CACHE.lock().unwrap_or_else(|e| e.into_inner()).clear();
            GENERATION.fetch_add(1, Ordering::AcqRel);
            // This core lets its functions go now (the others on their next script).
            if let Some(e) = ENGINE.with(|e| e.borrow().clone()) {
                e.check_generation();
                let _ = e.lua.gc_collect();
            }
            w.ok();
        }
        Cmd::ScriptKill => {
            let mut w = ReplyWriter::new(out, proto);
            match kill(true) {
                Ok(()) => w.ok(),
                Err(e) => w.error(e),
            }
        }
        Cmd::ScriptDebug => {
            ReplyWriter::new(out, proto).error("ERR SCRIPT DEBUG is not supported by this server")
        }
        Cmd::ScriptHelp => write_help(&mut ReplyWriter::new(out, proto), HELP),
        Cmd::FCall | Cmd::FCallRo => {
            crate::functions::fcall(conn, spec.cmd == Cmd::FCallRo, a, peer, out).await
        }
        _ => crate::functions::manage(spec.cmd, &a, &mut ReplyWriter::new(out, proto)),
    }
}

/// A HELP subcommand's reply: its lines as status replies.
pub(crate) fn write_help(w: &mut ReplyWriter, lines: &[&str]) {
    w.array(lines.len());
    for l in lines {
        w.simple(l.as_bytes());
    }
}

/// SCRIPT FLUSH's and FUNCTION FLUSH's optional mode (argument 2), if given, is SYNC or
/// ASYNC (both flush at once here).
pub(crate) fn flush_mode_ok(a: &Args<'_>) -> bool {
    a.get(2)
        .is_none_or(|m| m.eq_ignore_ascii_case(b"sync") || m.eq_ignore_ascii_case(b"async"))
}

const HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

/// SCRIPT LOAD: compiles (on this core) and caches `body`; its SHA1.
fn load(body: &[u8]) -> Result<Sha, String> {
    let sha = sha_of(body);
    let e = engine()?;
    e.check_generation();
    e.compile(sha, body)?;
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(sha)
        .or_insert_with(|| Arc::from(body));
    Ok(sha)
}

async fn eval(
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: Args<'_>,
    peer: &mut dyn Peer,
    out: &mut Vec<u8>,
) {
    let proto = conn.proto;
    let numkeys = match numkeys(&a, "ERR value is not an integer or out of range") {
        Ok(n) => n,
        Err(msg) => return ReplyWriter::new(out, proto).error(msg),
    };
    let e = match engine() {
        Ok(e) => e,
        Err(msg) => return ReplyWriter::new(out, proto).error(&msg),
    };
    e.check_generation();
    let by_sha = matches!(spec.cmd, Cmd::EvalSha | Cmd::EvalShaRo);
    let script = if by_sha {
        let mut sha = [0u8; 40];
        if a[1].len() != 40 {
            return ReplyWriter::new(out, proto).error(NOSCRIPT);
        }
        sha.copy_from_slice(&a[1]);
        sha.make_ascii_lowercase();
        let compiled = e.compiled.borrow().get(&sha).cloned();
        match compiled {
            Some(s) => Ok(s),
            None => {
                let body = CACHE
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&sha)
                    .cloned();
                match body {
                    Some(b) => e.compile(sha, &b).map(|s| (s, sha)).map(|(s, _)| s),
                    None => return ReplyWriter::new(out, proto).error(NOSCRIPT),
                }
            }
        }
        .map(|s| (s, sha))
    } else {
        let sha = sha_of(&a[1]);
        let r = e.compile(sha, &a[1]);
        if r.is_ok() {
            CACHE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(sha)
                .or_insert_with(|| Arc::from(&a[1]));
        }
        r.map(|s| (s, sha))
    };
    let (script, sha) = match script {
        Ok(s) => s,
        Err(msg) => return ReplyWriter::new(out, proto).error(&msg),
    };
    let ro_cmd = matches!(spec.cmd, Cmd::EvalRo | Cmd::EvalShaRo);
    // A `return redis.call(…)` is a tail call: its line is lost; a one-line script has
    // only one.
    let guess = (!by_sha).then(|| only_line(&a[1])).flatten();
    let origin = Origin::Script { sha, guess };
    let f: Function = match e.lua.registry_value(&script.f) {
        Ok(f) => f,
        Err(err) => return ReplyWriter::new(out, proto).error(&format!("ERR {err}")),
    };
    execute(
        conn,
        peer,
        &e,
        &f,
        origin,
        &a,
        numkeys,
        script.flags,
        ro_cmd,
        out,
    )
    .await
}

/// FCALL's and EVAL's count of keys (argument 2), checked against the arguments as Redis
/// checks it; `not_int` is the error for a count that is not an integer.
pub(crate) fn numkeys(a: &Args<'_>, not_int: &'static str) -> Result<usize, &'static str> {
    let n = percore_proto::parse_i64(&a[2]).ok_or(not_int)?;
    if n > (a.len() - 3) as i64 {
        return Err("ERR Number of keys can't be greater than number of args");
    }
    if n < 0 {
        return Err("ERR Number of keys can't be negative");
    }
    Ok(n as usize)
}

/// What runs, for its error messages: an EVAL script (KEYS and ARGV are globals) or a
/// function (keys and arguments are its two arguments).
pub(crate) enum Origin<'s> {
    Script { sha: Sha, guess: Option<u32> },
    Function { name: &'s str },
}

/// Runs `f` (a script's or a function's Lua function) with keys `a[3..3 + numkeys]` and the
/// arguments after them as a transaction over those keys (see the module header), and
/// writes its reply or error to `out`. The one path of EVAL* and FCALL*.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn execute(
    conn: &mut Client,
    peer: &mut dyn Peer,
    e: &Rc<Engine>,
    f: &Function,
    origin: Origin<'_>,
    a: &Args<'_>,
    numkeys: usize,
    flags: Option<u8>,
    ro_cmd: bool,
    out: &mut Vec<u8>,
) {
    let proto = conn.proto;
    if let Err(e) = prepare(conn, flags, ro_cmd) {
        return ReplyWriter::new(out, proto).error(e);
    }
    let read_only = ro_cmd || flags.is_some_and(|f| f & FLAG_NO_WRITES != 0);
    // Locks: the fast path, the EXEC's transaction, or the script's own.
    let (n, me, db) = (conn.core.nshards(), conn.core.id, conn.db);
    let keys = || (3..3 + numkeys).map(|i| &a[i]);
    let mut local_keys: Vec<Box<[u8]>> = Vec::new();
    let mut own_tx = false;
    let locked = if conn.tx.is_some() {
        true
    } else {
        let all_here = keys().all(|k| crate::router::shard_of(k, n) == me);
        let free = all_here && !e.busy.get() && {
            let l = conn.core.locks.borrow();
            l.is_idle() || {
                let ks = KeySet::Keys(keys().map(|k| lock_key(db, k)).collect());
                l.admits(&ks, None)
            }
        };
        if free {
            local_keys = keys().map(|k| lock_key(db, k)).collect();
            false
        } else {
            let mut plan = Plan::default();
            for k in keys() {
                plan.add_key(crate::router::shard_of(k, n), lock_key(db, k));
            }
            let tx = conn.begin_tx_with(plan);
            conn.lock_tx(tx).await;
            own_tx = true;
            true
        }
    };
    e.enter().await;
    let held = if locked {
        let mut per: Vec<(usize, KeySet)> = Vec::new();
        for k in keys() {
            let s = crate::router::shard_of(k, n);
            let lk = lock_key(db, k);
            match per.iter_mut().find(|(x, _)| *x == s) {
                Some((_, KeySet::Keys(ks))) => ks.push(lk),
                _ => per.push((s, KeySet::Keys(vec![lk]))),
            }
        }
        per
    } else {
        Vec::new()
    };
    let result = run_script(
        e, conn, peer, f, a, numkeys, &origin, flags, read_only, locked, local_keys, held,
    )
    .await;
    e.leave();
    let tx_after = conn.tx;
    if own_tx || (!locked && tx_after.is_some()) {
        conn.end_tx().await;
    }
    // The clients blocked on keys the script pushed to while it held no locks; what their
    // pops propagate follows the script's own effects in its unit.
    crate::repl::serve_ready_held(&conn.core, conn.repl_capture());
    let mut w = ReplyWriter::new(out, proto);
    match result {
        Ok(RunOut { value, resp3, .. }) => {
            let lua = &e.lua;
            let _ = lua;
            lua_to_resp(&mut w, &value, resp3, 0);
        }
        Err((err, raised)) => {
            let (id, source, guess) = match &origin {
                Origin::Script { sha, guess } => (
                    std::str::from_utf8(sha).unwrap_or(""),
                    "user_script",
                    *guess,
                ),
                // A failing `return redis.call(…)` (a tail call) loses its line: a
                // function written on one line has only one (looked up only now: reading
                // a function's debug information allocates).
                Origin::Function { name } => {
                    let info = f.info();
                    let guess = match (info.line_defined, info.last_line_defined) {
                        (Some(a), Some(b)) if a == b => u32::try_from(a).ok(),
                        _ => None,
                    };
                    (*name, "user_function", guess)
                }
            };
            let raised = raised.map(|(m, l)| (m, l.or(guess)));
            w.error(&script_error(err, raised, id, source, guess));
        }
    }
}

/// The number of the one line of `body` that holds code (a shebang line aside), if only one
/// does: where a tail-called `redis.call` failed.
fn only_line(body: &[u8]) -> Option<u32> {
    let mut found = None;
    for (i, l) in body.split(|&b| b == b'\n').enumerate() {
        if l.iter().all(|b| b.is_ascii_whitespace()) || (i == 0 && l.starts_with(b"#!")) {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(i as u32 + 1);
    }
    found
}

/// COMMAND INFO's key spec of EVAL, EVALSHA, EVAL_RO and EVALSHA_RO, as Redis 7.0 writes
/// it; false for other commands.
pub fn eval_key_spec(w: &mut ReplyWriter, cmd: Cmd) -> bool {
    let Some((flags, notes)) = eval_key_flags(cmd) else {
        return false;
    };
    w.set(1);
    crate::commands::key_spec_head(w, notes, flags);
    crate::commands::begin_search_index(w, 2);
    w.bulk(b"find_keys");
    crate::commands::typed_spec(w, b"keynum", 3);
    w.bulk(b"keynumidx");
    w.int(0);
    w.bulk(b"firstkey");
    w.int(1);
    w.bulk(b"keystep");
    w.int(1);
    true
}

/// The key-spec flags and notes of EVAL and its kin (COMMAND INFO, COMMAND
/// GETKEYSANDFLAGS); None for other commands.
pub fn eval_key_flags(cmd: Cmd) -> Option<(&'static [&'static str], Option<&'static str>)> {
    let (flags, notes): (&'static [&'static str], Option<&'static str>) = match cmd {
        Cmd::Eval | Cmd::FCall => (
            &["RW", "access", "update"],
            Some("We cannot tell how the keys will be used so we assume the worst, RW and UPDATE"),
        ),
        Cmd::EvalSha => (&["RW", "access", "update"], None),
        Cmd::EvalRo | Cmd::FCallRo => (
            &["RO", "access"],
            Some("We cannot tell how the keys will be used so we assume the worst, RO and ACCESS"),
        ),
        Cmd::EvalShaRo => (&["RO", "access"], None),
        _ => return None,
    };
    Some((flags, notes))
}

/// COMMAND INFO's tips of the SCRIPT and FUNCTION subcommands and of DUMP, as Redis 7.0
/// writes them; false (nothing written) for other commands.
pub fn write_tips(w: &mut ReplyWriter, cmd: Cmd) -> bool {
    let tips: &[&str] = match cmd {
        Cmd::ScriptFlush | Cmd::ScriptLoad => {
            &["request_policy:all_nodes", "response_policy:all_succeeded"]
        }
        Cmd::ScriptExists => &[
            "request_policy:all_shards",
            "response_policy:agg_logical_and",
        ],
        Cmd::ScriptKill | Cmd::FunctionKill => {
            &["request_policy:all_shards", "response_policy:one_succeeded"]
        }
        Cmd::FunctionLoad | Cmd::FunctionDelete | Cmd::FunctionFlush | Cmd::FunctionRestore => {
            &["request_policy:all_shards", "response_policy:all_succeeded"]
        }
        Cmd::FunctionList => &["nondeterministic_output_order"],
        Cmd::Dump | Cmd::Migrate => &["nondeterministic_output"],
        Cmd::FunctionStats => &[
            "nondeterministic_output",
            "request_policy:all_shards",
            "response_policy:special",
        ],
        _ => return false,
    };
    w.set(tips.len());
    for t in tips {
        w.bulk(t.as_bytes());
    }
    true
}

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

struct RunOut {
    value: Value,
    resp3: bool,
}

type RunErr = (mlua::Error, Option<(String, Option<u32>)>);

#[allow(clippy::too_many_arguments)]
async fn run_script(
    e: &Engine,
    conn: &mut Client,
    peer: &mut dyn Peer,
    f: &Function,
    a: &Args<'_>,
    numkeys: usize,
    origin: &Origin<'_>,
    flags: Option<u8>,
    read_only: bool,
    locked: bool,
    local_keys: Vec<Box<[u8]>>,
    held: Vec<(usize, KeySet)>,
) -> Result<RunOut, RunErr> {
    let lua = &e.lua;
    let params = make_args(lua, a, numkeys, matches!(origin, Origin::Script { .. }))
        .map_err(|err| (err, None))?;
    let (db, proto, in_exec) = (conn.db, conn.proto, conn.in_exec);
    conn.in_exec = true;
    let run = Run {
        conn: conn as *mut Client,
        peer: peer as *mut dyn Peer,
        read_only,
        resp3: false,
        locked,
        local_keys,
        local_whole: false,
        held,
        raised: None,
        // In cluster mode the keys of its calls must share one slot, the declared keys'
        // (unless `allow-cross-slot-keys`, or no shebang).
        slot: (numkeys > 0).then(|| crate::cluster::key_slot(&a[3])),
        cross_slot: flags.is_none_or(|f| f & FLAG_ALLOW_CROSS_SLOT != 0),
    };
    RUN.with(|r| *r.borrow_mut() = Some(run));
    let limit = conn.core.config.borrow().busy_reply_threshold.max(0) as u64;
    // The script runs in a thread of its own, with the count hook that slices it once it is
    // busy (see "Busy scripts"): the core's spare thread, which the last script that ended
    // normally left (Lua 5.1 runs a new function on a finished thread), else a new one.
    let spare = e.spare.take().filter(|th| th.reset(f.clone()).is_ok());
    let r = match spare.map_or_else(|| lua.create_thread(f.clone()), Ok) {
        Ok(th) => {
            let root = th.to_pointer() as *mut mlua::ffi::lua_State;
            let kept = th.clone();
            // SAFETY: `root` is the state of the script's thread (a thread's pointer is its
            // `lua_State`), alive while `th` is; the hook is a plain C function that reads
            // only this core's thread-locals and the state it is given.
            unsafe {
                mlua::ffi::lua_sethook(root, Some(count_hook), mlua::ffi::LUA_MASKCOUNT, HOOK_EVERY)
            };
            DEFER_SERVING.with(|d| d.set(!locked));
            let _slice = SliceGuard::begin(
                root,
                Duration::from_millis(limit),
                flags.is_some_and(|f| f & FLAG_ALLOW_OOM != 0),
                over_maxmemory(&conn.core),
            );
            let mut fut = std::pin::pin!(th.into_async::<Value>(params));
            let r = std::future::poll_fn(|cx| {
                let r = std::future::Future::poll(fut.as_mut(), cx);
                if r.is_pending() {
                    go_busy_if_due(origin, a);
                }
                r
            })
            .await;
            let s = SLICE.with(|s| s.borrow().killed.then(|| s.borrow().killed_line));
            if kept.status() == mlua::ThreadStatus::Finished {
                e.spare.set(Some(kept));
            }
            (r, s)
        }
        Err(err) => (Err(err), None),
    };
    let (r, killed_at) = r;
    let run = RUN.with(|r| r.borrow_mut().take());
    // A SELECT inside the script does not change the caller's database (Redis 7.0).
    conn.db = db;
    conn.proto = proto;
    conn.in_exec = in_exec;
    let resp3 = run.as_ref().is_some_and(|r| r.resp3);
    match r {
        Err(err) if killed_at.is_some() => Err((err, Some((KILLED.into(), killed_at.flatten())))),
        Ok(value) => Ok(RunOut { value, resp3 }),
        Err(err) => Err((err, run.and_then(|r| r.raised))),
    }
}

/// KEYS (`a[3..3 + numkeys]`) and ARGV (the arguments after them) as two new tables, made
/// in one protected call (creating each value through mlua would protect each: a closure
/// and a `pcall` per string): for a script (`globals`) set as the globals KEYS and ARGV,
/// else returned as a function's two arguments.
fn make_args(lua: &Lua, a: &Args<'_>, numkeys: usize, globals: bool) -> mlua::Result<MultiValue> {
    use mlua::ffi;
    let array = |l: *mut ffi::lua_State, from: usize, to: usize| {
        // SAFETY: in the protected call below, with room for the table and one string.
        unsafe {
            ffi::lua_createtable(l, (to - from) as std::os::raw::c_int, 0);
            for i in from..to {
                let v = &a[i];
                ffi::lua_pushlstring(l, v.as_ptr().cast(), v.len());
                ffi::lua_rawseti(l, -2, (i - from + 1) as _);
            }
        }
    };
    // SAFETY: the closure runs protected (a Lua error, out of memory, unwinds to mlua's
    // `pcall`) and holds only plain values and borrowed bytes, so that unwinding drops
    // nothing; it leaves the two tables on the stack or (globals) nothing. The globals
    // table's metatable refuses new globals, so they are set raw.
    unsafe {
        lua.exec_raw::<MultiValue>((), |l| {
            array(l, 3, 3 + numkeys);
            array(l, 3 + numkeys, a.len());
            if globals {
                ffi::lua_pushstring(l, c"ARGV".as_ptr());
                ffi::lua_insert(l, -2);
                ffi::lua_rawset(l, ffi::LUA_GLOBALSINDEX);
                ffi::lua_pushstring(l, c"KEYS".as_ptr());
                ffi::lua_insert(l, -2);
                ffi::lua_rawset(l, ffi::LUA_GLOBALSINDEX);
            }
        })
    }
}

/// A failed script's error reply, as Redis 7.0 words it.
fn script_error(
    err: mlua::Error,
    raised: Option<(String, Option<u32>)>,
    sha: &str,
    source: &str,
    guess: Option<u32>,
) -> String {
    let mut err = err;
    while let mlua::Error::CallbackError { cause, .. } = err {
        err = (*cause).clone();
    }
    let suffix = |line: Option<u32>| match line {
        Some(l) => format!(" script: {sha}, on @{source}:{l}."),
        None => String::new(),
    };
    match err {
        mlua::Error::RuntimeError(msg)
            if msg.strip_prefix(source).is_some_and(|m| m.starts_with(':'))
                || msg.starts_with("user_script:?:") =>
        {
            let msg = msg.split("\nstack traceback:").next().unwrap_or("");
            // `user_script:?:` marks a position lost to a tail call: the guess, if any.
            if let Some(rest) = msg.strip_prefix("user_script:?: ") {
                return match guess {
                    Some(g) => format!("ERR {source}:{g}: {rest}{}", suffix(guess)),
                    None => format!("ERR {rest}"),
                };
            }
            let line = msg[source.len() + 1..]
                .split(':')
                .next()
                .and_then(|l| l.parse().ok());
            format!("ERR {msg}{}", suffix(line))
        }
        mlua::Error::RuntimeError(msg) if msg.starts_with(KILLED) => {
            format!("{KILLED}{}", suffix(raised.and_then(|r| r.1)))
        }
        // Raised by a library function (redis.setresp, redis.log, …).
        mlua::Error::RuntimeError(msg) if raised.is_none() => {
            let msg = msg.split("\nstack traceback:").next().unwrap_or("");
            if msg == "wrong number or type of arguments" {
                // Redis raises this one without a position.
                return format!("ERR {msg}");
            }
            format!("ERR {msg}{}", suffix(guess))
        }
        mlua::Error::MemoryError(_) => {
            format!("ERR Error running script {sha}: not enough memory (the Lua heap is limited to {LUA_MEMORY_LIMIT} bytes)")
        }
        other => match raised {
            Some((msg, line)) => format!("{msg}{}", suffix(line)),
            None => format!("ERR Error running script {sha}: {other}"),
        },
    }
}

// Busy scripts.
//
// A script that has run for `busy-reply-threshold` (alias `lua-time-limit`) is *busy*, as in
// Redis: its core answers every other command with BUSY, except the allow-busy ones
// (AUTH, HELLO, MULTI, DISCARD, WATCH, UNWATCH, RESET, QUIT, SCRIPT KILL, FUNCTION KILL,
// FUNCTION STATS, SHUTDOWN NOSAVE), and SCRIPT KILL / FUNCTION KILL from any core stop it.
//
// Slices. The script's thread has an instruction-count hook ([`count_hook`], every
// [`HOOK_EVERY`] instructions). Before the threshold it only compares the clock; past it, it
// yields the thread (Lua 5.1 resumes a thread that yielded in a count hook where it was:
// `luaV_execute` checks `L->status` after the hook, `resume` "continues its execution"),
// and mlua's async thread answers Pending after waking itself, so the core's executor
// serves its other tasks between slices: its clients get BUSY, batches from other cores get
// BUSY ([`busy_reply`] in `Core::execute_batch_from`), background work that changes the
// shard (active expiry, eviction, lazy free) waits. The hook yields only where Lua can: on
// the script's own thread (not inside the coroutine of a `pcall`, where the yield would
// reach Lua code, nor across a C call such as `table.sort`'s comparator or a metamethod,
// which Lua 5.1 forbids: [`yieldable`] reads `nCcalls`); elsewhere the slice goes on until
// the script is back where it can yield.
//
// Isolation while busy. A script on the fast path holds no locks; when it becomes busy it
// becomes a transaction holding this whole shard (or, if another transaction holds keys
// here, the keys it touched so far), so other cores' transactions, cross-shard commands and
// snapshot starts wait for it instead of changing its data between slices. Snapshot steps
// go on (they serialize the shard as it was when the snapshot started and change nothing).
//
// KILL. A busy script is listed in [`RUNNING`] (process-wide; touched only when a script
// becomes busy, ends, or is killed) with its kill flag; the hook reads the flag (one relaxed
// load per 100 000 instructions) and raises Redis's error, which `pcall`/`xpcall` re-raise.
// A script that ran a write command is UNKILLABLE, as in Redis (SHUTDOWN NOSAVE remains).

/// Instructions between two runs of the count hook (Redis's value).
const HOOK_EVERY: std::os::raw::c_int = 100_000;

/// The killed script's error (before its ` script: …, on @…:<line>.` suffix).
const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";
/// Redis's `slowevalerr` and `slowscripterr`.
pub const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
pub const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
const NOTBUSY: &str = "NOTBUSY No scripts in execution right now.";
const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.";

const BUSY_NONE: u8 = 0;
const BUSY_IS_EVAL: u8 = 1;
const BUSY_IS_FUNCTION: u8 = 2;

/// A busy script, as every core sees it.
struct Running {
    eval: bool,
    /// The function's name (FUNCTION STATS; an EVAL's is its SHA1).
    name: String,
    /// The command that runs it (FUNCTION STATS).
    command: Vec<Vec<u8>>,
    started: Instant,
    wrote: std::sync::atomic::AtomicBool,
    kill: std::sync::atomic::AtomicBool,
}

/// The busy scripts of the process (at most one per core).
static RUNNING: Mutex<Vec<Arc<Running>>> = Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<Arc<Running>>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// This core's running script as its hook sees it.
struct SliceState {
    /// The script's own thread and the coroutines of its `pcall`s, innermost last: the
    /// hook yields only in these (a script's own coroutines must not see its yields).
    root: *mut mlua::ffi::lua_State,
    wrappers: Vec<(*mut mlua::ffi::lua_State, mlua::Thread)>,
    started: Option<Instant>,
    limit: Duration,
    /// BUSY_* (mirrored in [`BUSY`] for the per-command check).
    busy: u8,
    /// It ran a write command.
    wrote: bool,
    /// It was killed, and the script line where the hook stopped it.
    killed: bool,
    killed_line: Option<u32>,
    /// Its entry in [`RUNNING`] once busy.
    shared: Option<Arc<Running>>,
    /// Declared `allow-oom`; the process was over `maxmemory` when it started.
    allow_oom: bool,
    oom_at_start: bool,
}

impl SliceState {
    const IDLE: SliceState = SliceState {
        root: std::ptr::null_mut(),
        wrappers: Vec::new(),
        started: None,
        limit: Duration::ZERO,
        busy: BUSY_NONE,
        wrote: false,
        killed: false,
        killed_line: None,
        shared: None,
        allow_oom: false,
        oom_at_start: false,
    };
}

thread_local! {
    static SLICE: RefCell<SliceState> = const { RefCell::new(SliceState::IDLE) };
    /// BUSY_* of this core: read by every command (one thread-local load).
    static BUSY: Cell<u8> = const { Cell::new(BUSY_NONE) };
    /// A script runs on this core without locks: the clients blocked on keys it pushes to
    /// are served when it ends (see [`serving_deferred`]).
    static DEFER_SERVING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the clients blocked on this core's ready keys wait: a script runs here on the
/// fast path (no locks), and Redis serves them after the script, so that the script sees
/// its own pushes (an LPUSH then LLEN counts the element) and a waiter gets the element
/// only once the script's effects are complete. A script with locks needs no flag: the
/// keys it holds are served when its transaction ends (`blocking::serve_ready_in`). One
/// thread-local load.
pub fn serving_deferred() -> bool {
    DEFER_SERVING.with(|d| d.get())
}

/// This core's state for a script from its start to its end (also when its future is
/// dropped): leaves the core not busy and the script off [`RUNNING`].
struct SliceGuard;

impl SliceGuard {
    fn begin(
        root: *mut mlua::ffi::lua_State,
        limit: Duration,
        allow_oom: bool,
        oom_at_start: bool,
    ) -> SliceGuard {
        SLICE.with(|s| {
            *s.borrow_mut() = SliceState {
                root,
                started: Some(Instant::now()),
                limit,
                allow_oom,
                oom_at_start,
                ..SliceState::IDLE
            }
        });
        SliceGuard
    }
}

impl Drop for SliceGuard {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(BUSY_NONE));
        DEFER_SERVING.with(|d| d.set(false));
        let shared =
            SLICE.with(|s| std::mem::replace(&mut *s.borrow_mut(), SliceState::IDLE).shared);
        if let Some(r) = shared {
            running().retain(|x| !Arc::ptr_eq(x, &r));
        }
    }
}

/// The BUSY error this core answers to a command now, if a script here is busy and the
/// command is not allow-busy (SHUTDOWN only with NOSAVE, as Redis). One thread-local load
/// when no script is busy.
#[inline]
pub fn busy_reply(spec: &CommandSpec, a: &Args<'_>) -> Option<&'static str> {
    match BUSY.with(|b| b.get()) {
        BUSY_NONE => None,
        kind => busy_reply_slow(kind, spec, a),
    }
}

#[cold]
fn busy_reply_slow(kind: u8, spec: &CommandSpec, a: &Args<'_>) -> Option<&'static str> {
    let allowed = spec.flags.has(Flags::ALLOW_BUSY)
        && (spec.cmd != Cmd::Shutdown || a.iter().any(|x| x.eq_ignore_ascii_case(b"nosave")));
    (!allowed).then_some(match kind {
        BUSY_IS_EVAL => BUSY_EVAL,
        _ => BUSY_FUNCTION,
    })
}

/// A busy script runs on this core (background work that changes the shard waits).
pub fn busy() -> bool {
    BUSY.with(|b| b.get()) != BUSY_NONE
}

/// The BUSY error for a command refused while a script is busy on any core (SHUTDOWN
/// without NOSAVE).
pub fn busy_anywhere() -> Option<&'static str> {
    running()
        .first()
        .map(|r| if r.eval { BUSY_EVAL } else { BUSY_FUNCTION })
}

/// The prefix of Lua 5.1.5's `struct lua_State` (lstate.h) up to `baseCcalls`, to tell
/// whether a thread may yield now (Lua 5.1 has no `lua_isyieldable`). The Lua is the one
/// mlua vendors (lua-src's 5.1.5), so the layout is fixed; the unit test
/// `yieldable_reads_lua_state` checks it.
#[repr(C)]
struct LuaStateHead {
    next: *mut std::ffi::c_void,
    tt: u8,
    marked: u8,
    status: u8,
    top: *mut std::ffi::c_void,
    base: *mut std::ffi::c_void,
    l_g: *mut std::ffi::c_void,
    ci: *mut std::ffi::c_void,
    savedpc: *const std::ffi::c_void,
    stack_last: *mut std::ffi::c_void,
    stack: *mut std::ffi::c_void,
    end_ci: *mut std::ffi::c_void,
    base_ci: *mut std::ffi::c_void,
    stacksize: std::os::raw::c_int,
    size_ci: std::os::raw::c_int,
    n_ccalls: std::os::raw::c_ushort,
    base_ccalls: std::os::raw::c_ushort,
}

/// Whether `l` may yield here: no C call (a C function calling Lua, a metamethod) between
/// it and where it was resumed (`lua_yield`'s own test).
///
/// # Safety
/// `l` is a live Lua 5.1.5 state.
unsafe fn yieldable(l: *mut mlua::ffi::lua_State) -> bool {
    let h = l as *const LuaStateHead;
    (*h).n_ccalls <= (*h).base_ccalls
}

enum HookAct {
    Go,
    /// Yield (true: the mark, from a `pcall`'s coroutine).
    Yield(bool),
    Kill,
}

/// The value a `pcall` coroutine yields at the end of a slice.
fn slice_mark() -> *mut std::ffi::c_void {
    static MARK: u8 = 0;
    &MARK as *const u8 as *mut std::ffi::c_void
}

/// `canslice()` for `pcall` (Lua C function): whether the calling thread may pass a slice's
/// yield up (the script's thread or a `pcall`'s coroutine, where Lua allows a yield).
unsafe extern "C-unwind" fn can_slice(l: *mut mlua::ffi::lua_State) -> std::os::raw::c_int {
    let ours = SLICE.with(|s| {
        s.try_borrow()
            .is_ok_and(|s| l == s.root || s.wrappers.iter().any(|w| w.0 == l))
    });
    // SAFETY: `l` is the calling thread, live during the call; a C function called from Lua
    // does not count as a C call, so `nCcalls` is its caller's.
    let ok = ours && unsafe { yieldable(l) };
    // SAFETY: a C function has room for one result (LUA_MINSTACK).
    unsafe { mlua::ffi::lua_pushboolean(l, ok as std::os::raw::c_int) };
    1
}

/// The script thread's instruction-count hook: the kill flag, then the slice (see "Busy
/// scripts"). Costs a clock read and a few thread-local reads per [`HOOK_EVERY`]
/// instructions.
unsafe extern "C-unwind" fn count_hook(
    l: *mut mlua::ffi::lua_State,
    ar: *mut mlua::ffi::lua_Debug,
) {
    // SAFETY: `ar` is the hook's activation record, valid during the hook.
    let line_event = unsafe { (*ar).event } == mlua::ffi::LUA_HOOKLINE;
    let act = SLICE.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return HookAct::Go;
        };
        if s.killed {
            return HookAct::Kill;
        }
        if line_event {
            return HookAct::Go;
        }
        if s.shared
            .as_ref()
            .is_some_and(|r| r.kill.load(Ordering::Relaxed))
        {
            s.killed = true;
            // From now on the error is raised at every new line of the script too, so
            // that a pcall cannot keep it running (Redis's LUA_MASKLINE hook).
            let mask = mlua::ffi::LUA_MASKLINE | mlua::ffi::LUA_MASKCOUNT;
            for t in std::iter::once(s.root)
                .chain(s.wrappers.iter().map(|w| w.0))
                .chain([l])
            {
                // SAFETY: the script's threads, alive while it runs.
                unsafe { mlua::ffi::lua_sethook(t, Some(count_hook), mask, HOOK_EVERY) };
            }
            return HookAct::Kill;
        }
        let due = s.busy != BUSY_NONE || s.started.is_some_and(|t| t.elapsed() >= s.limit);
        if !due {
            return HookAct::Go;
        }
        // SAFETY: `l` is the running thread the hook was called for.
        if l == s.root && unsafe { yieldable(l) } {
            HookAct::Yield(false)
        } else if s.wrappers.iter().any(|w| w.0 == l) && unsafe { yieldable(l) } {
            HookAct::Yield(true)
        } else {
            HookAct::Go
        }
    });
    match act {
        HookAct::Go => {}
        HookAct::Yield(wrapped) => {
            // SAFETY: the thread may yield here (see `yieldable`); Lua 5.1 resumes a
            // count hook's yield where it stopped. A `pcall` coroutine yields the mark
            // its `pcall` expects.
            unsafe {
                if wrapped {
                    mlua::ffi::lua_pushlightuserdata(l, slice_mark());
                }
                mlua::ffi::lua_yield(l, wrapped as std::os::raw::c_int)
            };
        }
        HookAct::Kill => {
            // SAFETY: `ar` is the hook's activation record, valid during the hook; its
            // `source` is a NUL-terminated string of the running function.
            let (user, line) = unsafe {
                match mlua::ffi::lua_getinfo(l, c"Sl".as_ptr(), ar) {
                    0 => (false, -1),
                    _ => {
                        let src = std::ffi::CStr::from_ptr((*ar).source).to_bytes();
                        (src.starts_with(b"@user_"), (*ar).currentline)
                    }
                }
            };
            // Raised in the script's own code only (never inside `SETUP`'s wrappers).
            if !user {
                return;
            }
            SLICE.with(|s| {
                if let Ok(mut s) = s.try_borrow_mut() {
                    s.killed_line = u32::try_from(line).ok();
                }
            });
            // SAFETY: raising an error from a hook is what Lua's own hooks do; nothing of
            // this frame needs dropping (the error unwinds it with a longjmp).
            unsafe {
                mlua::ffi::lua_pushlstring(l, KILLED.as_ptr().cast(), KILLED.len());
                mlua::ffi::lua_error(l);
            }
        }
    }
}

/// After a slice of the running script (its future pending): once it has run past the
/// threshold, makes the core busy, lists it in [`RUNNING`] and takes its locks (see "Busy
/// scripts").
fn go_busy_if_due(origin: &Origin<'_>, a: &Args<'_>) {
    let (due, wrote) = SLICE.with(|s| {
        let s = s.borrow();
        let due = s.busy == BUSY_NONE
            && !s.root.is_null()
            && s.started.is_some_and(|t| t.elapsed() >= s.limit);
        (due.then_some(s.started).flatten(), s.wrote)
    });
    let Some(started) = due else { return };
    let (eval, name) = match origin {
        Origin::Script { sha, .. } => (true, String::from_utf8_lossy(sha).into_owned()),
        Origin::Function { name, .. } => (false, name.to_string()),
    };
    let r = Arc::new(Running {
        eval,
        name,
        command: a.iter().map(|x| x.to_vec()).collect(),
        started,
        wrote: wrote.into(),
        kill: false.into(),
    });
    running().push(r.clone());
    let kind = if eval { BUSY_IS_EVAL } else { BUSY_IS_FUNCTION };
    SLICE.with(|s| {
        let mut s = s.borrow_mut();
        s.busy = kind;
        s.shared = Some(r);
    });
    BUSY.with(|b| b.set(kind));
    hold_shard();
}

/// A fast-path script becoming busy becomes a transaction that holds this shard (or the
/// keys it touched here, if another transaction holds some of the shard).
fn hold_shard() {
    with_run(|run| {
        if run.locked {
            return;
        }
        // SAFETY: see `Run::conn`: the script's future is between two polls, so nothing
        // else uses the connection.
        let conn = unsafe { &mut *run.conn };
        if conn.tx.is_some() {
            return;
        }
        let tx = crate::txlock::new_tx();
        let local = KeySet::Keys(std::mem::take(&mut run.local_keys));
        let mut locks = conn.core.locks.borrow_mut();
        let keys = if locks.try_acquire(tx, &KeySet::All) {
            KeySet::All
        } else if !run.local_whole && locks.try_acquire(tx, &local) {
            local
        } else {
            // Not expected (the keys were free when the script touched them and nothing ran
            // since): go on unlocked, as before it was busy.
            if let KeySet::Keys(k) = local {
                run.local_keys = k;
            }
            return;
        };
        drop(locks);
        run.locked = true;
        conn.tx = Some(tx);
        conn.tx_shard(conn.core.id);
        run.held.push((conn.core.id, keys));
        DEFER_SERVING.with(|d| d.set(false));
    });
}

/// Notes that the running script called a write command (it can no longer be killed).
fn note_write() {
    SLICE.with(|s| {
        let mut s = s.borrow_mut();
        s.wrote = true;
        if let Some(r) = &s.shared {
            r.wrote.store(true, Ordering::Relaxed);
        }
    });
}

/// SCRIPT KILL (`eval`) and FUNCTION KILL, from any core: Redis's `scriptKill` over every
/// busy script; OK when one is killed, else the first refusal.
pub(crate) fn kill(eval: bool) -> Result<(), &'static str> {
    let list = running();
    let mut refusal = NOTBUSY;
    let mut killed = false;
    for r in list.iter() {
        if r.wrote.load(Ordering::Relaxed) {
            refusal = UNKILLABLE;
        } else if r.eval != eval {
            if refusal == NOTBUSY {
                refusal = if r.eval { BUSY_EVAL } else { BUSY_FUNCTION };
            }
        } else {
            r.kill.store(true, Ordering::Relaxed);
            killed = true;
        }
    }
    match killed {
        true => Ok(()),
        false => Err(refusal),
    }
}

/// A busy function as FUNCTION STATS shows it: name, command, duration in ms.
pub(crate) type RunningFunction = (String, Vec<Vec<u8>>, u64);

/// FUNCTION STATS's `running_script`: a busy function; Err when a busy EVAL runs (Redis
/// refuses FUNCTION STATS then).
pub(crate) fn running_function() -> Result<Option<RunningFunction>, &'static str> {
    let list = running();
    if list.iter().any(|r| r.eval) {
        return Err(BUSY_EVAL);
    }
    Ok(list.first().map(|r| {
        (
            r.name.clone(),
            r.command.clone(),
            r.started.elapsed().as_millis() as u64,
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SEEN: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
    }

    unsafe extern "C-unwind" fn probe(l: *mut mlua::ffi::lua_State) -> std::os::raw::c_int {
        // SAFETY: `l` is the calling thread.
        let y = unsafe { yieldable(l) };
        SEEN.with(|s| s.borrow_mut().push(y));
        0
    }

    /// `LuaStateHead` matches the vendored Lua: a thread is yieldable at its top level and
    /// after a resume, not inside a C function's callback or a metamethod.
    #[test]
    fn yieldable_reads_lua_state() {
        let lua = Lua::new();
        // SAFETY: `probe` only reads its state.
        let f = unsafe { lua.create_c_function(probe) }.unwrap();
        lua.globals().set("probe", f).unwrap();
        let code = "probe()
            table.sort({2, 1}, function(a, b) probe() return a < b end)
            local _ = setmetatable({}, {__index = function() probe() return 1 end}).x
            coroutine.yield()
            probe()";
        let th = lua
            .create_thread(lua.load(code).into_function().unwrap())
            .unwrap();
        th.resume::<()>(()).unwrap();
        th.resume::<()>(()).unwrap();
        let seen = SEEN.with(|s| s.borrow().clone());
        assert_eq!(seen.first(), Some(&true), "top level: {seen:?}");
        assert_eq!(seen.last(), Some(&true), "after a resume: {seen:?}");
        assert!(
            seen[1..seen.len() - 1].iter().all(|y| !y) && seen.len() >= 4,
            "inside sort's comparator and __index: {seen:?}"
        );
    }
}
