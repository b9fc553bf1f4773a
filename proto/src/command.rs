//! The command table, declared once.
//!
//! Each command percore knows is one [`CommandSpec`] row: its name, arity (N exact, -N at
//! least N), flags, key positions (first/last/step, as Redis's legacy key specs), how it is
//! routed across shards and how per-shard replies merge, ACL categories and documentation.
//! Parsing checks (arity), routing (keys → shards), `COMMAND`/`COMMAND INFO`/`COMMAND DOCS`/
//! `COMMAND GETKEYS`, ACL categories and per-command metrics all read this table.
//!
//! Every row names a [`Cmd`] variant, and both the shard's executor and the server's dispatcher
//! `match` exhaustively over `Cmd`, so adding a command without implementing it does not
//! compile.
//!
//! Lookup is case-insensitive and allocation-free: the name is folded into a stack buffer
//! and found by binary search in a table sorted once at first use.

use crate::Args;
use std::sync::OnceLock;

/// Number of [`Cmd`] variants, for tables indexed by `cmd as usize`: the last variant + 1
/// (a unit test checks every table row is below it).
pub const CMD_COUNT: usize = Cmd::MemoryHelp as usize + 1;

/// Every command percore implements. Subcommands of container commands (CONFIG GET, …) are
/// variants of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cmd {
    // strings
    Get,
    Set,
    SetNx,
    SetEx,
    PSetEx,
    GetSet,
    GetDel,
    GetEx,
    MGet,
    MSet,
    MSetNx,
    Append,
    StrLen,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    IncrByFloat,
    GetRange,
    SetRange,
    Substr,
    Lcs,
    // bitmaps (strings addressed bit by bit)
    SetBit,
    GetBit,
    BitCount,
    BitPos,
    BitOp,
    BitField,
    BitFieldRo,
    // lists
    LPush,
    RPush,
    LPushX,
    RPushX,
    LPop,
    RPop,
    LLen,
    LRange,
    LIndex,
    LSet,
    LInsert,
    LRem,
    LTrim,
    LPos,
    LMove,
    RPopLPush,
    LMPop,
    BLPop,
    BRPop,
    BLMove,
    BRPopLPush,
    BLMPop,
    // hashes
    HSet,
    HSetNx,
    HMSet,
    HGet,
    HMGet,
    HGetAll,
    HDel,
    HLen,
    HStrLen,
    HExists,
    HKeys,
    HVals,
    HIncrBy,
    HIncrByFloat,
    HRandField,
    HScan,
    // sets
    SAdd,
    SRem,
    SMembers,
    SIsMember,
    SMIsMember,
    SCard,
    SPop,
    SRandMember,
    SMove,
    SInter,
    SInterCard,
    SInterStore,
    SUnion,
    SUnionStore,
    SDiff,
    SDiffStore,
    SScan,
    // hyperloglog
    PfAdd,
    PfCount,
    PfMerge,
    PfDebug,
    PfSelfTest,
    // sorted sets
    ZAdd,
    ZIncrBy,
    ZScore,
    ZMScore,
    ZRank,
    ZRevRank,
    ZRange,
    ZRangeStore,
    ZRevRange,
    ZRangeByScore,
    ZRevRangeByScore,
    ZRangeByLex,
    ZRevRangeByLex,
    ZCount,
    ZLexCount,
    ZRem,
    ZRemRangeByRank,
    ZRemRangeByScore,
    ZRemRangeByLex,
    ZCard,
    ZPopMin,
    ZPopMax,
    ZMPop,
    ZRandMember,
    ZScan,
    ZUnion,
    ZInter,
    ZDiff,
    ZUnionStore,
    ZInterStore,
    ZDiffStore,
    ZInterCard,
    // geo (sorted sets of geohash scores)
    GeoAdd,
    GeoDist,
    GeoHash,
    GeoPos,
    GeoSearch,
    GeoSearchStore,
    GeoRadius,
    GeoRadiusRo,
    GeoRadiusByMember,
    GeoRadiusByMemberRo,
    BZPopMin,
    BZPopMax,
    BZMPop,
    // keyspace
    Del,
    Unlink,
    Exists,
    Type,
    Expire,
    PExpire,
    ExpireAt,
    PExpireAt,
    Ttl,
    PTtl,
    ExpireTime,
    PExpireTime,
    Persist,
    Rename,
    RenameNx,
    Copy,
    Move,
    Dump,
    Restore,
    RestoreAsking,
    Migrate,
    Keys,
    Scan,
    RandomKey,
    Touch,
    DbSize,
    FlushDb,
    FlushAll,
    SwapDb,
    Object,
    ObjectEncoding,
    ObjectFreq,
    ObjectIdleTime,
    ObjectRefCount,
    ObjectHelp,
    Sort,
    SortRo,
    // connection
    Ping,
    Echo,
    Quit,
    Reset,
    Hello,
    Auth,
    Select,
    Client,
    ClientId,
    ClientSetName,
    ClientGetName,
    ClientList,
    ClientInfo,
    ClientKill,
    ClientSetInfo,
    ClientNoEvict,
    ClientNoTouch,
    ClientUnblock,
    ClientPause,
    ClientUnpause,
    ClientReply,
    ClientTracking,
    ClientCaching,
    ClientGetRedir,
    ClientTrackingInfo,
    ClientHelp,
    // pub/sub
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
    SSubscribe,
    SUnsubscribe,
    Publish,
    SPublish,
    Pubsub,
    PubsubChannels,
    PubsubNumSub,
    PubsubNumPat,
    PubsubShardChannels,
    PubsubShardNumSub,
    PubsubHelp,
    // transactions
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    // scripting
    Eval,
    EvalSha,
    EvalRo,
    EvalShaRo,
    Script,
    ScriptLoad,
    ScriptExists,
    ScriptFlush,
    ScriptKill,
    ScriptDebug,
    ScriptHelp,
    FCall,
    FCallRo,
    Function,
    FunctionLoad,
    FunctionDelete,
    FunctionFlush,
    FunctionList,
    FunctionDump,
    FunctionRestore,
    FunctionStats,
    FunctionKill,
    FunctionHelp,
    // access control
    Acl,
    AclCat,
    AclDelUser,
    AclDryRun,
    AclGenPass,
    AclGetUser,
    AclHelp,
    AclList,
    AclLoad,
    AclLog,
    AclSave,
    AclSetUser,
    AclUsers,
    AclWhoami,
    // server
    Info,
    Cluster,
    ClusterInfo,
    ClusterMyId,
    ClusterSlots,
    ClusterShards,
    ClusterNodes,
    ClusterKeySlot,
    ClusterCountKeysInSlot,
    ClusterGetKeysInSlot,
    ClusterHelp,
    // CLUSTER subcommands of a multi-node cluster, not in percore's one-node mode yet.
    ClusterAddslots,
    ClusterAddslotsrange,
    ClusterBumpepoch,
    ClusterCountFailureReports,
    ClusterDelslots,
    ClusterDelslotsrange,
    ClusterFailover,
    ClusterFlushslots,
    ClusterForget,
    ClusterLinks,
    ClusterMeet,
    ClusterReplicas,
    ClusterReplicate,
    ClusterReset,
    ClusterSaveconfig,
    ClusterSetConfigEpoch,
    ClusterSetslot,
    ClusterSlaves,
    ReadOnly,
    ReadWrite,
    Asking,
    Config,
    ConfigGet,
    ConfigSet,
    ConfigResetStat,
    ConfigRewrite,
    ConfigHelp,
    Time,
    Shutdown,
    Save,
    BgSave,
    LastSave,
    Debug,
    Monitor,
    // replication
    Psync,
    Sync,
    ReplConf,
    Role,
    Wait,
    ReplicaOf,
    SlaveOf,
    Command,
    CommandCount,
    CommandInfo,
    CommandDocs,
    CommandGetKeys,
    CommandGetKeysAndFlags,
    CommandList,
    CommandHelp,
    Slowlog,
    SlowlogGet,
    SlowlogLen,
    SlowlogReset,
    SlowlogHelp,
    Latency,
    LatencyLatest,
    LatencyHistory,
    LatencyReset,
    LatencyDoctor,
    LatencyHistogram,
    LatencyHelp,
    Memory,
    MemoryUsage,
    MemoryStats,
    MemoryDoctor,
    MemoryPurge,
    MemoryMallocStats,
    MemoryHelp,
}

/// Command flags, as Redis names them in `COMMAND` replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(pub u32);

impl Flags {
    pub const WRITE: u32 = 1;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const NOSCRIPT: u32 = 1 << 4;
    pub const LOADING: u32 = 1 << 5;
    pub const STALE: u32 = 1 << 6;
    pub const FAST: u32 = 1 << 7;
    pub const NO_AUTH: u32 = 1 << 8;
    pub const SKIP_SLOWLOG: u32 = 1 << 9;
    pub const ALLOW_BUSY: u32 = 1 << 10;
    pub const NO_MULTI: u32 = 1 << 11;
    pub const BLOCKING: u32 = 1 << 12;
    pub const MOVABLEKEYS: u32 = 1 << 13;
    pub const SKIP_MONITOR: u32 = 1 << 14;
    pub const NO_MANDATORY_KEYS: u32 = 1 << 15;
    pub const PUBSUB: u32 = 1 << 16;
    pub const ASKING: u32 = 1 << 17;

    const NAMES: [(u32, &'static str); 18] = [
        (Self::WRITE, "write"),
        (Self::READONLY, "readonly"),
        (Self::DENYOOM, "denyoom"),
        (Self::ADMIN, "admin"),
        (Self::PUBSUB, "pubsub"),
        (Self::NOSCRIPT, "noscript"),
        // Redis's order (`addReplyFlagsForCommand`): blocking right after noscript.
        (Self::BLOCKING, "blocking"),
        (Self::LOADING, "loading"),
        (Self::STALE, "stale"),
        (Self::SKIP_MONITOR, "skip_monitor"),
        (Self::ASKING, "asking"),
        (Self::FAST, "fast"),
        (Self::NO_AUTH, "no_auth"),
        (Self::NO_MANDATORY_KEYS, "no_mandatory_keys"),
        (Self::SKIP_SLOWLOG, "skip_slowlog"),
        (Self::ALLOW_BUSY, "allow_busy"),
        (Self::NO_MULTI, "no_multi"),
        (Self::MOVABLEKEYS, "movablekeys"),
    ];

    #[inline]
    pub fn has(self, f: u32) -> bool {
        self.0 & f != 0
    }

    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .iter()
            .filter(move |(f, _)| self.has(*f))
            .map(|(_, n)| *n)
    }
}

/// How per-shard replies of a command that touches several shards are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Integers are added (DEL, EXISTS, DBSIZE, …).
    Sum,
    /// One reply per key, put back in the order of the keys under one array header (MGET).
    KeyOrderArray,
    /// `+OK` when every shard said OK, else the first error (MSET, FLUSHALL).
    AllOk,
    /// Arrays are concatenated (KEYS).
    Concat,
}

/// Where a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// On the connection's own core, touching no keyspace (PING, CLIENT, CONFIG, …).
    Connection,
    /// On the shard that owns its keys; all keys must hash to one shard, else the
    /// server coordinates it (`Coordinated`).
    Single,
    /// Split per key (or key/value group) and sent to each key's shard; replies merge.
    PerKey(Merge),
    /// Sent to every shard; replies merge.
    AllShards(Merge),
    /// Needs its own cross-shard protocol when its keys live on different shards (RENAME,
    /// COPY, MSETNX, LCS, SCAN, RANDOMKEY, SWAPDB); single-shard cases run as `Single`.
    Coordinated,
    /// May park the client until a key it names changes (BLPOP, BLMOVE, …): the server's
    /// blocking machinery runs it.
    Blocking,
    /// PUBLISH and SPUBLISH: delivered on every core that has subscribers (one message per
    /// core, in the connection's batch to it); the receiver counts are summed.
    Publish,
}

/// One row of the command table.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case name as `COMMAND` reports it; subcommands are `parent|sub`.
    pub name: &'static str,
    pub cmd: Cmd,
    pub arity: i32,
    pub flags: Flags,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub route: Route,
    /// ACL categories without the `@`.
    pub acl: &'static [&'static str],
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
}

impl CommandSpec {
    /// Redis's arity rule: N means exactly N arguments (command name included), -N at least N.
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let a = self.arity as i64;
        if a >= 0 {
            argc == a
        } else {
            argc >= -a
        }
    }

    /// The error for a wrong argument count, byte for byte as Redis 7.
    pub fn arity_error(&self) -> String {
        format!("ERR wrong number of arguments for '{}' command", self.name)
    }

    pub fn is_container(&self) -> bool {
        !subcommands(self.cmd).is_empty()
    }

    /// The parent of a subcommand row (`config` for `config|get`).
    pub fn parent_name(&self) -> Option<&'static str> {
        self.name.split_once('|').map(|(p, _)| p)
    }

    /// For a command whose keys follow a count (`movablekeys`: SINTERCARD, LMPOP, BLMPOP),
    /// the index of that count (Redis's `keynum` key spec: the keys start right after it).
    pub fn keynum_index(&self) -> Option<usize> {
        match self.cmd {
            Cmd::SInterCard
            | Cmd::LMPop
            | Cmd::ZMPop
            | Cmd::ZUnion
            | Cmd::ZInter
            | Cmd::ZDiff
            | Cmd::ZInterCard => Some(1),
            Cmd::BLMPop | Cmd::BZMPop | Cmd::ZUnionStore | Cmd::ZInterStore | Cmd::ZDiffStore => {
                Some(2)
            }
            Cmd::Eval | Cmd::EvalSha | Cmd::EvalRo | Cmd::EvalShaRo | Cmd::FCall | Cmd::FCallRo => {
                Some(2)
            }
            _ => None,
        }
    }

    /// The key indices of `args` for a `keynum` command; None when the count is not a
    /// positive number of keys that the arguments hold.
    pub fn keynum_key_indices(&self, args: &Args) -> Option<std::ops::Range<usize>> {
        let at = self.keynum_index()?;
        let n = crate::parse_i64(args.get(at)?)?;
        let first = at + 1;
        (n >= 1 && (n as u64) <= (args.len() - first) as u64).then(|| first..first + n as usize)
    }

    /// The destination key's index of a GEORADIUS or GEORADIUSBYMEMBER (their `movablekeys`
    /// STORE/STOREDIST key), found as Redis's `georadiusGetKeys` finds it; None for every
    /// other command. Routing and COMMAND GETKEYS add it to [`CommandSpec::key_indices`].
    pub fn store_key_index(&self, args: &Args) -> Option<usize> {
        match self.cmd {
            Cmd::GeoRadius | Cmd::GeoRadiusByMember => georadius_store_key(args),
            _ => None,
        }
    }

    /// MIGRATE's keys as Redis's `migrateGetKeys` finds them: every argument after a KEYS
    /// met from argument 6 on (stepping over AUTH's one and AUTH2's two values) when the
    /// key argument is empty, none when it is not (a syntax error MIGRATE reports), else
    /// the key at 3. None for every other command.
    pub fn migrate_key_indices(&self, args: &Args) -> Option<std::ops::Range<usize>> {
        if self.cmd != Cmd::Migrate {
            return None;
        }
        let mut i = 6;
        while i < args.len() {
            let a = &args[i];
            if a.eq_ignore_ascii_case(b"keys") {
                return Some(match args.get(3).is_some_and(|k| k.is_empty()) {
                    true => i + 1..args.len(),
                    false => 3..3,
                });
            }
            if a.eq_ignore_ascii_case(b"auth") {
                i += 1;
            } else if a.eq_ignore_ascii_case(b"auth2") {
                i += 2;
            }
            i += 1;
        }
        Some(3..args.len().min(4))
    }

    /// Indices of the key arguments in `argc` arguments (Redis's first/last/step rule).
    pub fn key_indices(&self, argc: usize) -> impl Iterator<Item = usize> {
        let first = self.first_key.max(0) as usize;
        let last = if self.first_key <= 0 {
            0
        } else if self.last_key < 0 {
            (argc as i64 + self.last_key as i64).max(0) as usize
        } else {
            (self.last_key as usize).min(argc.saturating_sub(1))
        };
        let step = self.step.max(1) as usize;
        let range = if self.first_key <= 0 || first > last {
            1..1
        } else {
            first..last + 1
        };
        range.step_by(step)
    }
}

const W: u32 = Flags::WRITE;
const R: u32 = Flags::READONLY;
const D: u32 = Flags::DENYOOM;
const F: u32 = Flags::FAST;
const A: u32 = Flags::ADMIN;
const NS: u32 = Flags::NOSCRIPT;
const L: u32 = Flags::LOADING;
const ST: u32 = Flags::STALE;
const NA: u32 = Flags::NO_AUTH;
const AB: u32 = Flags::ALLOW_BUSY;
const NM: u32 = Flags::NO_MULTI;
const BL: u32 = Flags::BLOCKING;
const MK: u32 = Flags::MOVABLEKEYS;
const SM: u32 = Flags::SKIP_MONITOR;
const NMK: u32 = Flags::NO_MANDATORY_KEYS;
const PS: u32 = Flags::PUBSUB;

macro_rules! spec {
    ($name:literal, $cmd:ident, $arity:expr, $flags:expr, $fk:expr, $lk:expr, $st:expr, $route:expr,
     [$($acl:literal),*], $group:literal, $since:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            cmd: Cmd::$cmd,
            arity: $arity,
            flags: Flags($flags),
            first_key: $fk,
            last_key: $lk,
            step: $st,
            route: $route,
            acl: &[$($acl),*],
            group: $group,
            since: $since,
            summary: $summary,
        }
    };
}

use Merge::*;
use Route::*;

/// Redis's `georadiusGetKeys`: from argument 5 on, the word after the last STORE or
/// STOREDIST (either case) that has one.
pub fn georadius_store_key(args: &Args) -> Option<usize> {
    let mut found = None;
    let mut i = 5;
    while i < args.len() {
        let a = &args[i];
        if (a.eq_ignore_ascii_case(b"store") || a.eq_ignore_ascii_case(b"storedist"))
            && i + 1 < args.len()
        {
            found = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    found
}

/// Top-level commands, in no particular order (lookup sorts an index once).
#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    // ---- strings
    spec!("get", Get, 2, R | F, 1, 1, 1, Single, ["read", "string", "fast"], "string", "1.0.0", "Returns the string value of a key."),
    spec!("set", Set, -3, W | D, 1, 1, 1, Single, ["write", "string", "slow"], "string", "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."),
    spec!("setnx", SetNx, 3, W | D | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "1.0.0", "Set the string value of a key only when the key doesn't exist."),
    spec!("setex", SetEx, 4, W | D, 1, 1, 1, Single, ["write", "string", "slow"], "string", "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."),
    spec!("psetex", PSetEx, 4, W | D, 1, 1, 1, Single, ["write", "string", "slow"], "string", "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."),
    spec!("getset", GetSet, 3, W | D | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "1.0.0", "Returns the previous string value of a key after setting it to a new value."),
    spec!("getdel", GetDel, 2, W | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "6.2.0", "Returns the string value of a key after deleting the key."),
    spec!("getex", GetEx, -2, W | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "6.2.0", "Returns the string value of a key after setting its expiration time."),
    spec!("mget", MGet, -2, R | F, 1, -1, 1, PerKey(KeyOrderArray), ["read", "string", "fast"], "string", "1.0.0", "Atomically returns the string values of one or more keys."),
    spec!("mset", MSet, -3, W | D, 1, -1, 2, PerKey(AllOk), ["write", "string", "slow"], "string", "1.0.1", "Atomically creates or modifies the string values of one or more keys."),
    spec!("msetnx", MSetNx, -3, W | D, 1, -1, 2, Coordinated, ["write", "string", "slow"], "string", "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    spec!("append", Append, 3, W | D | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist."),
    spec!("strlen", StrLen, 2, R | F, 1, 1, 1, Single, ["read", "string", "fast"], "string", "2.2.0", "Returns the length of a string value."),
    spec!("incr", Incr, 2, W | D | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec!("decr", Decr, 2, W | D | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec!("incrby", IncrBy, 3, W | D | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec!("decrby", DecrBy, 3, W | D | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."),
    spec!("incrbyfloat", IncrByFloat, 3, W | D | F, 1, 1, 1, Single, ["write", "string", "fast"], "string", "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec!("getrange", GetRange, 4, R, 1, 1, 1, Single, ["read", "string", "slow"], "string", "2.4.0", "Returns a substring of the string stored at a key."),
    spec!("setrange", SetRange, 4, W | D, 1, 1, 1, Single, ["write", "string", "slow"], "string", "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."),
    spec!("substr", Substr, 4, R, 1, 1, 1, Single, ["read", "string", "slow"], "string", "1.0.0", "Returns a substring from a string value."),
    spec!("lcs", Lcs, -3, R, 1, 2, 1, Coordinated, ["read", "string", "slow"], "string", "7.0.0", "Finds the longest common substring."),
    // ---- bitmaps (Redis 7.0's summaries)
    spec!("setbit", SetBit, 4, W | D, 1, 1, 1, Single, ["write", "bitmap", "slow"], "bitmap", "2.2.0", "Sets or clears the bit at offset in the string value stored at key"),
    spec!("getbit", GetBit, 3, R | F, 1, 1, 1, Single, ["read", "bitmap", "fast"], "bitmap", "2.2.0", "Returns the bit value at offset in the string value stored at key"),
    spec!("bitcount", BitCount, -2, R, 1, 1, 1, Single, ["read", "bitmap", "slow"], "bitmap", "2.6.0", "Count set bits in a string"),
    spec!("bitpos", BitPos, -3, R, 1, 1, 1, Single, ["read", "bitmap", "slow"], "bitmap", "2.8.7", "Find first bit set or clear in a string"),
    spec!("bitop", BitOp, -4, W | D, 2, -1, 1, Coordinated, ["write", "bitmap", "slow"], "bitmap", "2.6.0", "Perform bitwise operations between strings"),
    spec!("bitfield", BitField, -2, W | D, 1, 1, 1, Single, ["write", "bitmap", "slow"], "bitmap", "3.2.0", "Perform arbitrary bitfield integer operations on strings"),
    spec!("bitfield_ro", BitFieldRo, -2, R | F, 1, 1, 1, Single, ["read", "bitmap", "fast"], "bitmap", "6.0.0", "Perform arbitrary bitfield integer operations on strings. Read-only variant of BITFIELD"),
    // ---- hashes
    spec!("hset", HSet, -4, W | D | F, 1, 1, 1, Single, ["write", "hash", "fast"], "hash", "2.0.0", "Creates or modifies the value of a field in a hash."),
    spec!("hsetnx", HSetNx, 4, W | D | F, 1, 1, 1, Single, ["write", "hash", "fast"], "hash", "2.0.0", "Sets the value of a field in a hash only when the field doesn't exist."),
    spec!("hmset", HMSet, -4, W | D | F, 1, 1, 1, Single, ["write", "hash", "fast"], "hash", "2.0.0", "Sets the values of multiple fields."),
    spec!("hget", HGet, 3, R | F, 1, 1, 1, Single, ["read", "hash", "fast"], "hash", "2.0.0", "Returns the value of a field in a hash."),
    spec!("hmget", HMGet, -3, R | F, 1, 1, 1, Single, ["read", "hash", "fast"], "hash", "2.0.0", "Returns the values of all fields in a hash."),
    spec!("hgetall", HGetAll, 2, R, 1, 1, 1, Single, ["read", "hash", "slow"], "hash", "2.0.0", "Returns all fields and values in a hash."),
    spec!("hdel", HDel, -3, W | F, 1, 1, 1, Single, ["write", "hash", "fast"], "hash", "2.0.0", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain."),
    spec!("hlen", HLen, 2, R | F, 1, 1, 1, Single, ["read", "hash", "fast"], "hash", "2.0.0", "Returns the number of fields in a hash."),
    spec!("hstrlen", HStrLen, 3, R | F, 1, 1, 1, Single, ["read", "hash", "fast"], "hash", "3.2.0", "Returns the length of the value of a field."),
    spec!("hexists", HExists, 3, R | F, 1, 1, 1, Single, ["read", "hash", "fast"], "hash", "2.0.0", "Determines whether a field exists in a hash."),
    spec!("hkeys", HKeys, 2, R, 1, 1, 1, Single, ["read", "hash", "slow"], "hash", "2.0.0", "Returns all fields in a hash."),
    spec!("hvals", HVals, 2, R, 1, 1, 1, Single, ["read", "hash", "slow"], "hash", "2.0.0", "Returns all values in a hash."),
    spec!("hincrby", HIncrBy, 4, W | D | F, 1, 1, 1, Single, ["write", "hash", "fast"], "hash", "2.0.0", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist."),
    spec!("hincrbyfloat", HIncrByFloat, 4, W | D | F, 1, 1, 1, Single, ["write", "hash", "fast"], "hash", "2.6.0", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist."),
    spec!("hrandfield", HRandField, -2, R, 1, 1, 1, Single, ["read", "hash", "slow"], "hash", "6.2.0", "Returns one or more random fields from a hash."),
    spec!("hscan", HScan, -3, R, 1, 1, 1, Single, ["read", "hash", "slow"], "hash", "2.8.0", "Iterates over fields and values of a hash."),
    // ---- sets
    spec!("sadd", SAdd, -3, W | D | F, 1, 1, 1, Single, ["write", "set", "fast"], "set", "1.0.0", "Adds one or more members to a set. Creates the key if it doesn't exist."),
    spec!("srem", SRem, -3, W | F, 1, 1, 1, Single, ["write", "set", "fast"], "set", "1.0.0", "Removes one or more members from a set. Deletes the set if the last member was removed."),
    spec!("smembers", SMembers, 2, R, 1, 1, 1, Single, ["read", "set", "slow"], "set", "1.0.0", "Returns all members of a set."),
    spec!("sismember", SIsMember, 3, R | F, 1, 1, 1, Single, ["read", "set", "fast"], "set", "1.0.0", "Determines whether a member belongs to a set."),
    spec!("smismember", SMIsMember, -3, R | F, 1, 1, 1, Single, ["read", "set", "fast"], "set", "6.2.0", "Determines whether multiple members belong to a set."),
    spec!("scard", SCard, 2, R | F, 1, 1, 1, Single, ["read", "set", "fast"], "set", "1.0.0", "Returns the number of members in a set."),
    spec!("spop", SPop, -2, W | F, 1, 1, 1, Single, ["write", "set", "fast"], "set", "1.0.0", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped."),
    spec!("srandmember", SRandMember, -2, R, 1, 1, 1, Single, ["read", "set", "slow"], "set", "1.0.0", "Get one or multiple random members from a set"),
    spec!("smove", SMove, 4, W | F, 1, 2, 1, Coordinated, ["write", "set", "fast"], "set", "1.0.0", "Moves a member from one set to another."),
    spec!("sinter", SInter, -2, R, 1, -1, 1, Coordinated, ["read", "set", "slow"], "set", "1.0.0", "Returns the intersect of multiple sets."),
    spec!("sintercard", SInterCard, -3, R | MK, 0, 0, 0, Coordinated, ["read", "set", "slow"], "set", "7.0.0", "Returns the number of members of the intersect of multiple sets."),
    spec!("sinterstore", SInterStore, -3, W | D, 1, -1, 1, Coordinated, ["write", "set", "slow"], "set", "1.0.0", "Stores the intersect of multiple sets in a key."),
    spec!("sunion", SUnion, -2, R, 1, -1, 1, Coordinated, ["read", "set", "slow"], "set", "1.0.0", "Returns the union of multiple sets."),
    spec!("sunionstore", SUnionStore, -3, W | D, 1, -1, 1, Coordinated, ["write", "set", "slow"], "set", "1.0.0", "Stores the union of multiple sets in a key."),
    spec!("sdiff", SDiff, -2, R, 1, -1, 1, Coordinated, ["read", "set", "slow"], "set", "1.0.0", "Returns the difference of multiple sets."),
    spec!("sdiffstore", SDiffStore, -3, W | D, 1, -1, 1, Coordinated, ["write", "set", "slow"], "set", "1.0.0", "Stores the difference of multiple sets in a key."),
    spec!("sscan", SScan, -3, R, 1, 1, 1, Single, ["read", "set", "slow"], "set", "2.0.0", "Iterates over members of a set."),
    // ---- hyperloglog (PFCOUNT and PFMERGE over several shards gather registers on the
    // coordinator; PFSELFTEST has no keys and runs on the connection's own shard)
    spec!("pfadd", PfAdd, -2, W | D | F, 1, 1, 1, Single, ["write", "hyperloglog", "fast"], "hyperloglog", "2.8.9", "Adds the specified elements to the specified HyperLogLog."),
    spec!("pfcount", PfCount, -2, R, 1, -1, 1, Coordinated, ["read", "hyperloglog", "slow"], "hyperloglog", "2.8.9", "Return the approximated cardinality of the set(s) observed by the HyperLogLog at key(s)."),
    spec!("pfmerge", PfMerge, -2, W | D, 1, -1, 1, Coordinated, ["write", "hyperloglog", "slow"], "hyperloglog", "2.8.9", "Merge N different HyperLogLogs into a single one."),
    spec!("pfdebug", PfDebug, 3, W | D | A, 2, 2, 1, Single, ["write", "hyperloglog", "admin", "slow", "dangerous"], "hyperloglog", "2.8.9", "Internal commands for debugging HyperLogLog values"),
    spec!("pfselftest", PfSelfTest, 1, A, 0, 0, 0, Single, ["hyperloglog", "admin", "slow", "dangerous"], "hyperloglog", "2.8.9", "An internal command for testing HyperLogLog values"),
    // ---- sorted sets (the STORE forms of ZUNION/ZINTER/ZDIFF declare no fixed key
    // positions, unlike Redis's 1 1 1: their sources follow a count, and routing must see
    // them all, so they always reach the coordinator)
    spec!("zadd", ZAdd, -4, W | D | F, 1, 1, 1, Single, ["write", "sortedset", "fast"], "sorted-set", "1.2.0", "Add one or more members to a sorted set, or update its score if it already exists"),
    spec!("zincrby", ZIncrBy, 4, W | D | F, 1, 1, 1, Single, ["write", "sortedset", "fast"], "sorted-set", "1.2.0", "Increment the score of a member in a sorted set"),
    spec!("zscore", ZScore, 3, R | F, 1, 1, 1, Single, ["read", "sortedset", "fast"], "sorted-set", "1.2.0", "Get the score associated with the given member in a sorted set"),
    spec!("zmscore", ZMScore, -3, R | F, 1, 1, 1, Single, ["read", "sortedset", "fast"], "sorted-set", "6.2.0", "Get the score associated with the given members in a sorted set"),
    spec!("zrank", ZRank, 3, R | F, 1, 1, 1, Single, ["read", "sortedset", "fast"], "sorted-set", "2.0.0", "Determine the index of a member in a sorted set"),
    spec!("zrevrank", ZRevRank, 3, R | F, 1, 1, 1, Single, ["read", "sortedset", "fast"], "sorted-set", "2.0.0", "Determine the index of a member in a sorted set, with scores ordered from high to low"),
    spec!("zrange", ZRange, -4, R, 1, 1, 1, Single, ["read", "sortedset", "slow"], "sorted-set", "1.2.0", "Return a range of members in a sorted set"),
    spec!("zrangestore", ZRangeStore, -5, W | D, 1, 2, 1, Coordinated, ["write", "sortedset", "slow"], "sorted-set", "6.2.0", "Store a range of members from sorted set into another key"),
    spec!("zrevrange", ZRevRange, -4, R, 1, 1, 1, Single, ["read", "sortedset", "slow"], "sorted-set", "1.2.0", "Return a range of members in a sorted set, by index, with scores ordered from high to low"),
    spec!("zrangebyscore", ZRangeByScore, -4, R, 1, 1, 1, Single, ["read", "sortedset", "slow"], "sorted-set", "1.0.5", "Return a range of members in a sorted set, by score"),
    spec!("zrevrangebyscore", ZRevRangeByScore, -4, R, 1, 1, 1, Single, ["read", "sortedset", "slow"], "sorted-set", "2.2.0", "Return a range of members in a sorted set, by score, with scores ordered from high to low"),
    spec!("zrangebylex", ZRangeByLex, -4, R, 1, 1, 1, Single, ["read", "sortedset", "slow"], "sorted-set", "2.8.9", "Return a range of members in a sorted set, by lexicographical range"),
    spec!("zrevrangebylex", ZRevRangeByLex, -4, R, 1, 1, 1, Single, ["read", "sortedset", "slow"], "sorted-set", "2.8.9", "Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings."),
    spec!("zcount", ZCount, 4, R | F, 1, 1, 1, Single, ["read", "sortedset", "fast"], "sorted-set", "2.0.0", "Count the members in a sorted set with scores within the given values"),
    spec!("zlexcount", ZLexCount, 4, R | F, 1, 1, 1, Single, ["read", "sortedset", "fast"], "sorted-set", "2.8.9", "Count the number of members in a sorted set between a given lexicographical range"),
    spec!("zrem", ZRem, -3, W | F, 1, 1, 1, Single, ["write", "sortedset", "fast"], "sorted-set", "1.2.0", "Remove one or more members from a sorted set"),
    spec!("zremrangebyrank", ZRemRangeByRank, 4, W, 1, 1, 1, Single, ["write", "sortedset", "slow"], "sorted-set", "2.0.0", "Remove all members in a sorted set within the given indexes"),
    spec!("zremrangebyscore", ZRemRangeByScore, 4, W, 1, 1, 1, Single, ["write", "sortedset", "slow"], "sorted-set", "1.2.0", "Remove all members in a sorted set within the given scores"),
    spec!("zremrangebylex", ZRemRangeByLex, 4, W, 1, 1, 1, Single, ["write", "sortedset", "slow"], "sorted-set", "2.8.9", "Remove all members in a sorted set between the given lexicographical range"),
    spec!("zcard", ZCard, 2, R | F, 1, 1, 1, Single, ["read", "sortedset", "fast"], "sorted-set", "1.2.0", "Get the number of members in a sorted set"),
    spec!("zpopmin", ZPopMin, -2, W | F, 1, 1, 1, Single, ["write", "sortedset", "fast"], "sorted-set", "5.0.0", "Remove and return members with the lowest scores in a sorted set"),
    spec!("zpopmax", ZPopMax, -2, W | F, 1, 1, 1, Single, ["write", "sortedset", "fast"], "sorted-set", "5.0.0", "Remove and return members with the highest scores in a sorted set"),
    spec!("zmpop", ZMPop, -4, W | MK, 0, 0, 0, Coordinated, ["write", "sortedset", "slow"], "sorted-set", "7.0.0", "Remove and return members with scores in a sorted set"),
    spec!("bzpopmin", BZPopMin, -3, W | NS | BL | F, 1, -2, 1, Blocking, ["write", "sortedset", "fast", "blocking"], "sorted-set", "5.0.0", "Remove and return the member with the lowest score from one or more sorted sets, or block until one is available"),
    spec!("bzpopmax", BZPopMax, -3, W | NS | BL | F, 1, -2, 1, Blocking, ["write", "sortedset", "fast", "blocking"], "sorted-set", "5.0.0", "Remove and return the member with the highest score from one or more sorted sets, or block until one is available"),
    spec!("bzmpop", BZMPop, -5, W | BL | MK, 0, 0, 0, Blocking, ["write", "sortedset", "slow", "blocking"], "sorted-set", "7.0.0", "Remove and return members with scores in a sorted set or block until one is available"),
    spec!("zrandmember", ZRandMember, -2, R, 1, 1, 1, Single, ["read", "sortedset", "slow"], "sorted-set", "6.2.0", "Get one or multiple random elements from a sorted set"),
    spec!("zscan", ZScan, -3, R, 1, 1, 1, Single, ["read", "sortedset", "slow"], "sorted-set", "2.8.0", "Incrementally iterate sorted sets elements and associated scores"),
    spec!("zunion", ZUnion, -3, R | MK, 0, 0, 0, Coordinated, ["read", "sortedset", "slow"], "sorted-set", "6.2.0", "Add multiple sorted sets"),
    spec!("zinter", ZInter, -3, R | MK, 0, 0, 0, Coordinated, ["read", "sortedset", "slow"], "sorted-set", "6.2.0", "Intersect multiple sorted sets"),
    spec!("zdiff", ZDiff, -3, R | MK, 0, 0, 0, Coordinated, ["read", "sortedset", "slow"], "sorted-set", "6.2.0", "Subtract multiple sorted sets"),
    spec!("zunionstore", ZUnionStore, -4, W | D | MK, 0, 0, 0, Coordinated, ["write", "sortedset", "slow"], "sorted-set", "2.0.0", "Add multiple sorted sets and store the resulting sorted set in a new key"),
    spec!("zinterstore", ZInterStore, -4, W | D | MK, 0, 0, 0, Coordinated, ["write", "sortedset", "slow"], "sorted-set", "2.0.0", "Intersect multiple sorted sets and store the resulting sorted set in a new key"),
    spec!("zdiffstore", ZDiffStore, -4, W | D | MK, 0, 0, 0, Coordinated, ["write", "sortedset", "slow"], "sorted-set", "6.2.0", "Subtract multiple sorted sets and store the resulting sorted set in a new key"),
    spec!("zintercard", ZInterCard, -3, R | MK, 0, 0, 0, Coordinated, ["read", "sortedset", "slow"], "sorted-set", "7.0.0", "Intersect multiple sorted sets and return the cardinality of the result"),
    // ---- geo
    spec!("geoadd", GeoAdd, -5, W | D, 1, 1, 1, Single, ["write", "geo", "slow"], "geo", "3.2.0", "Add one or more geospatial items in the geospatial index represented using a sorted set"),
    spec!("geodist", GeoDist, -4, R, 1, 1, 1, Single, ["read", "geo", "slow"], "geo", "3.2.0", "Returns the distance between two members of a geospatial index"),
    spec!("geohash", GeoHash, -2, R, 1, 1, 1, Single, ["read", "geo", "slow"], "geo", "3.2.0", "Returns members of a geospatial index as standard geohash strings"),
    spec!("geopos", GeoPos, -2, R, 1, 1, 1, Single, ["read", "geo", "slow"], "geo", "3.2.0", "Returns longitude and latitude of members of a geospatial index"),
    spec!("geosearch", GeoSearch, -7, R, 1, 1, 1, Single, ["read", "geo", "slow"], "geo", "6.2.0", "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle."),
    spec!("geosearchstore", GeoSearchStore, -8, W | D, 1, 2, 1, Coordinated, ["write", "geo", "slow"], "geo", "6.2.0", "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle, and store the result in another key."),
    spec!("georadius", GeoRadius, -6, W | D | MK, 1, 1, 1, Coordinated, ["write", "geo", "slow"], "geo", "3.2.0", "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a point"),
    spec!("georadius_ro", GeoRadiusRo, -6, R, 1, 1, 1, Single, ["read", "geo", "slow"], "geo", "3.2.10", "A read-only variant for GEORADIUS"),
    spec!("georadiusbymember", GeoRadiusByMember, -5, W | D | MK, 1, 1, 1, Coordinated, ["write", "geo", "slow"], "geo", "3.2.0", "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a member"),
    spec!("georadiusbymember_ro", GeoRadiusByMemberRo, -5, R, 1, 1, 1, Single, ["read", "geo", "slow"], "geo", "3.2.10", "A read-only variant for GEORADIUSBYMEMBER"),
    // ---- lists
    spec!("lpush", LPush, -3, W | D | F, 1, 1, 1, Single, ["write", "list", "fast"], "list", "1.0.0", "Prepends one or more elements to a list. Creates the key if it doesn't exist."),
    spec!("rpush", RPush, -3, W | D | F, 1, 1, 1, Single, ["write", "list", "fast"], "list", "1.0.0", "Appends one or more elements to a list. Creates the key if it doesn't exist."),
    spec!("lpushx", LPushX, -3, W | D | F, 1, 1, 1, Single, ["write", "list", "fast"], "list", "2.2.0", "Prepends one or more elements to a list only when the list exists."),
    spec!("rpushx", RPushX, -3, W | D | F, 1, 1, 1, Single, ["write", "list", "fast"], "list", "2.2.0", "Appends an element to a list only when the list exists."),
    spec!("lpop", LPop, -2, W | F, 1, 1, 1, Single, ["write", "list", "fast"], "list", "1.0.0", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped."),
    spec!("rpop", RPop, -2, W | F, 1, 1, 1, Single, ["write", "list", "fast"], "list", "1.0.0", "Returns and removes the last elements of a list. Deletes the list if the last element was popped."),
    spec!("llen", LLen, 2, R | F, 1, 1, 1, Single, ["read", "list", "fast"], "list", "1.0.0", "Returns the length of a list."),
    spec!("lrange", LRange, 4, R, 1, 1, 1, Single, ["read", "list", "slow"], "list", "1.0.0", "Returns a range of elements from a list."),
    spec!("lindex", LIndex, 3, R, 1, 1, 1, Single, ["read", "list", "slow"], "list", "1.0.0", "Returns an element from a list by its index."),
    spec!("lset", LSet, 4, W | D, 1, 1, 1, Single, ["write", "list", "slow"], "list", "1.0.0", "Sets the value of an element in a list by its index."),
    spec!("linsert", LInsert, 5, W | D, 1, 1, 1, Single, ["write", "list", "slow"], "list", "2.2.0", "Inserts an element before or after another element in a list."),
    spec!("lrem", LRem, 4, W, 1, 1, 1, Single, ["write", "list", "slow"], "list", "1.0.0", "Removes elements from a list. Deletes the list if the last element was removed."),
    spec!("ltrim", LTrim, 4, W, 1, 1, 1, Single, ["write", "list", "slow"], "list", "1.0.0", "Removes elements from both ends a list. Deletes the list if all elements were trimmed."),
    spec!("lpos", LPos, -3, R, 1, 1, 1, Single, ["read", "list", "slow"], "list", "6.0.6", "Returns the index of matching elements in a list."),
    spec!("lmove", LMove, 5, W | D, 1, 2, 1, Coordinated, ["write", "list", "slow"], "list", "6.2.0", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved."),
    spec!("rpoplpush", RPopLPush, 3, W | D, 1, 2, 1, Coordinated, ["write", "list", "slow"], "list", "1.2.0", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped."),
    spec!("lmpop", LMPop, -4, W | MK, 0, 0, 0, Coordinated, ["write", "list", "slow"], "list", "7.0.0", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped."),
    spec!("blpop", BLPop, -3, W | NS | BL, 1, -2, 1, Blocking, ["write", "list", "slow", "blocking"], "list", "2.0.0", "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped."),
    spec!("brpop", BRPop, -3, W | NS | BL, 1, -2, 1, Blocking, ["write", "list", "slow", "blocking"], "list", "2.0.0", "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped."),
    spec!("blmove", BLMove, 6, W | D | NS | BL, 1, 2, 1, Blocking, ["write", "list", "slow", "blocking"], "list", "6.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved."),
    spec!("brpoplpush", BRPopLPush, 4, W | D | NS | BL, 1, 2, 1, Blocking, ["write", "list", "slow", "blocking"], "list", "2.2.0", "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped."),
    spec!("blmpop", BLMPop, -5, W | BL | MK, 0, 0, 0, Blocking, ["write", "list", "slow", "blocking"], "list", "7.0.0", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped."),
    // ---- keyspace
    spec!("del", Del, -2, W, 1, -1, 1, PerKey(Sum), ["keyspace", "write", "slow"], "generic", "1.0.0", "Deletes one or more keys."),
    spec!("unlink", Unlink, -2, W | F, 1, -1, 1, PerKey(Sum), ["keyspace", "write", "fast"], "generic", "4.0.0", "Asynchronously deletes one or more keys."),
    spec!("exists", Exists, -2, R | F, 1, -1, 1, PerKey(Sum), ["keyspace", "read", "fast"], "generic", "1.0.0", "Determines whether one or more keys exist."),
    spec!("type", Type, 2, R | F, 1, 1, 1, Single, ["keyspace", "read", "fast"], "generic", "1.0.0", "Determines the type of value stored at a key."),
    spec!("expire", Expire, -3, W | F, 1, 1, 1, Single, ["keyspace", "write", "fast"], "generic", "1.0.0", "Sets the expiration time of a key in seconds."),
    spec!("pexpire", PExpire, -3, W | F, 1, 1, 1, Single, ["keyspace", "write", "fast"], "generic", "2.6.0", "Sets the expiration time of a key in milliseconds."),
    spec!("expireat", ExpireAt, -3, W | F, 1, 1, 1, Single, ["keyspace", "write", "fast"], "generic", "1.2.0", "Sets the expiration time of a key to a Unix timestamp."),
    spec!("pexpireat", PExpireAt, -3, W | F, 1, 1, 1, Single, ["keyspace", "write", "fast"], "generic", "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    spec!("ttl", Ttl, 2, R | F, 1, 1, 1, Single, ["keyspace", "read", "fast"], "generic", "1.0.0", "Returns the expiration time in seconds of a key."),
    spec!("pttl", PTtl, 2, R | F, 1, 1, 1, Single, ["keyspace", "read", "fast"], "generic", "2.6.0", "Returns the expiration time in milliseconds of a key."),
    spec!("expiretime", ExpireTime, 2, R | F, 1, 1, 1, Single, ["keyspace", "read", "fast"], "generic", "7.0.0", "Returns the expiration time of a key as a Unix timestamp."),
    spec!("pexpiretime", PExpireTime, 2, R | F, 1, 1, 1, Single, ["keyspace", "read", "fast"], "generic", "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    spec!("persist", Persist, 2, W | F, 1, 1, 1, Single, ["keyspace", "write", "fast"], "generic", "2.2.0", "Removes the expiration time of a key."),
    spec!("rename", Rename, 3, W, 1, 2, 1, Coordinated, ["keyspace", "write", "slow"], "generic", "1.0.0", "Renames a key and overwrites the destination."),
    spec!("renamenx", RenameNx, 3, W | F, 1, 2, 1, Coordinated, ["keyspace", "write", "fast"], "generic", "1.0.0", "Renames a key only when the target key name doesn't exist."),
    spec!("copy", Copy, -3, W | D, 1, 2, 1, Coordinated, ["keyspace", "write", "slow"], "generic", "6.2.0", "Copies the value of a key to a new key."),
    spec!("dump", Dump, 2, R, 1, 1, 1, Single, ["keyspace", "read", "slow"], "generic", "2.6.0", "Return a serialized version of the value stored at the specified key."),
    spec!("restore", Restore, -4, W | D, 1, 1, 1, Single, ["keyspace", "write", "slow", "dangerous"], "generic", "2.6.0", "Create a key using the provided serialized value, previously obtained using DUMP."),
    spec!("restore-asking", RestoreAsking, -4, W | D | Flags::ASKING, 1, 1, 1, Single, ["keyspace", "write", "slow", "dangerous"], "server", "3.0.0", "An internal command for migrating keys in a cluster"),
    // MIGRATE talks to another server from the connection's core; its keys (the one at 3,
    // or those after KEYS: `movablekeys`) are locked through the scheduler meanwhile.
    spec!("migrate", Migrate, -6, W | MK, 3, 3, 1, Connection, ["keyspace", "write", "slow", "dangerous"], "generic", "2.6.0", "Atomically transfer a key from a Redis instance to another one."),
    spec!("move", Move, 3, W | F, 1, 1, 1, Single, ["keyspace", "write", "fast"], "generic", "1.0.0", "Moves a key to another database."),
    spec!("keys", Keys, 2, R, 0, 0, 0, AllShards(Concat), ["keyspace", "read", "slow", "dangerous"], "generic", "1.0.0", "Returns all key names that match a pattern."),
    spec!("scan", Scan, -2, R, 0, 0, 0, Coordinated, ["keyspace", "read", "slow"], "generic", "2.8.0", "Iterates over the key names in the database."),
    spec!("randomkey", RandomKey, 1, R, 0, 0, 0, Coordinated, ["keyspace", "read", "slow"], "generic", "1.0.0", "Returns a random key name from the database."),
    spec!("touch", Touch, -2, R | F, 1, -1, 1, PerKey(Sum), ["keyspace", "read", "fast"], "generic", "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed."),
    spec!("dbsize", DbSize, 1, R | F, 0, 0, 0, AllShards(Sum), ["keyspace", "read", "fast"], "server", "1.0.0", "Returns the number of keys in the database."),
    spec!("flushdb", FlushDb, -1, W, 0, 0, 0, AllShards(AllOk), ["keyspace", "write", "slow", "dangerous"], "server", "1.0.0", "Remove all keys from the current database."),
    spec!("flushall", FlushAll, -1, W, 0, 0, 0, AllShards(AllOk), ["keyspace", "write", "slow", "dangerous"], "server", "1.0.0", "Removes all keys from all databases."),
    spec!("swapdb", SwapDb, 3, W | F, 0, 0, 0, Coordinated, ["keyspace", "write", "fast", "dangerous"], "server", "4.0.0", "Swaps two Redis databases."),
    spec!("object", Object, -2, 0, 0, 0, 0, Connection, ["slow"], "generic", "2.2.3", "A container for object introspection commands."),
    // BY and GET name keys through the elements' values: the coordinator finds them
    // (`movablekeys`), and runs the command in one hop when they all live on the key's shard.
    spec!("sort", Sort, -2, W | D | MK, 1, 1, 1, Coordinated, ["write", "set", "sortedset", "list", "slow", "dangerous"], "generic", "1.0.0", "Sort the elements in a list, set or sorted set"),
    spec!("sort_ro", SortRo, -2, R | MK, 1, 1, 1, Coordinated, ["read", "set", "sortedset", "list", "slow", "dangerous"], "generic", "7.0.0", "Sort the elements in a list, set or sorted set. Read-only variant of SORT."),
    // ---- connection
    spec!("ping", Ping, -1, F | ST, 0, 0, 0, Connection, ["fast", "connection"], "connection", "1.0.0", "Returns the server's liveliness response."),
    spec!("echo", Echo, 2, F | L | ST, 0, 0, 0, Connection, ["fast", "connection"], "connection", "1.0.0", "Returns the given string."),
    spec!("quit", Quit, -1, NS | L | ST | F | NA | AB, 0, 0, 0, Connection, ["fast", "connection"], "connection", "1.0.0", "Closes the connection."),
    spec!("reset", Reset, 1, NS | L | ST | F | NA | AB, 0, 0, 0, Connection, ["fast", "connection"], "connection", "6.2.0", "Resets the connection."),
    spec!("hello", Hello, -1, NS | L | ST | F | NA | AB, 0, 0, 0, Connection, ["fast", "connection"], "connection", "6.0.0", "Handshakes with the Redis server."),
    spec!("auth", Auth, -2, NS | L | ST | F | NA | AB, 0, 0, 0, Connection, ["fast", "connection"], "connection", "1.0.0", "Authenticates the connection."),
    spec!("select", Select, 2, L | ST | F, 0, 0, 0, Connection, ["fast", "connection"], "connection", "1.0.0", "Changes the selected database."),
    spec!("client", Client, -2, 0, 0, 0, 0, Connection, ["slow"], "connection", "2.4.0", "A container for client connection commands."),
    // ---- pub/sub (SSUBSCRIBE, SUNSUBSCRIBE and SPUBLISH name their channels as keys, as
    // Redis's key specs do for cluster routing; percore routes them as channels)
    spec!("subscribe", Subscribe, -2, PS | NS | L | ST, 0, 0, 0, Connection, ["pubsub", "slow"], "pubsub", "2.0.0", "Listen for messages published to the given channels"),
    spec!("unsubscribe", Unsubscribe, -1, PS | NS | L | ST, 0, 0, 0, Connection, ["pubsub", "slow"], "pubsub", "2.0.0", "Stop listening for messages posted to the given channels"),
    spec!("psubscribe", PSubscribe, -2, PS | NS | L | ST, 0, 0, 0, Connection, ["pubsub", "slow"], "pubsub", "2.0.0", "Listen for messages published to channels matching the given patterns"),
    spec!("punsubscribe", PUnsubscribe, -1, PS | NS | L | ST, 0, 0, 0, Connection, ["pubsub", "slow"], "pubsub", "2.0.0", "Stop listening for messages posted to channels matching the given patterns"),
    spec!("ssubscribe", SSubscribe, -2, PS | NS | L | ST, 1, -1, 1, Connection, ["pubsub", "slow"], "pubsub", "7.0.0", "Listen for messages published to the given shard channels"),
    spec!("sunsubscribe", SUnsubscribe, -1, PS | NS | L | ST, 1, -1, 1, Connection, ["pubsub", "slow"], "pubsub", "7.0.0", "Stop listening for messages posted to the given shard channels"),
    spec!("publish", Publish, 3, PS | L | ST | F, 0, 0, 0, Publish, ["pubsub", "fast"], "pubsub", "2.0.0", "Post a message to a channel"),
    spec!("spublish", SPublish, 3, PS | L | ST | F, 1, 1, 1, Publish, ["pubsub", "fast"], "pubsub", "7.0.0", "Post a message to a shard channel"),
    spec!("pubsub", Pubsub, -2, 0, 0, 0, 0, Connection, ["slow"], "pubsub", "2.8.0", "A container for Pub/Sub commands"),
    // ---- transactions
    spec!("multi", Multi, 1, NS | L | ST | F | AB, 0, 0, 0, Connection, ["fast", "transaction"], "transactions", "1.2.0", "Mark the start of a transaction block"),
    spec!("exec", Exec, 1, NS | L | ST | Flags::SKIP_SLOWLOG, 0, 0, 0, Connection, ["slow", "transaction"], "transactions", "1.2.0", "Execute all commands issued after MULTI"),
    spec!("discard", Discard, 1, NS | L | ST | F | AB, 0, 0, 0, Connection, ["fast", "transaction"], "transactions", "2.0.0", "Discard all commands issued after MULTI"),
    spec!("watch", Watch, -2, NS | L | ST | F | AB, 1, -1, 1, Connection, ["fast", "transaction"], "transactions", "2.2.0", "Watch the given keys to determine execution of the MULTI/EXEC block"),
    spec!("unwatch", Unwatch, 1, NS | L | ST | F | AB, 0, 0, 0, Connection, ["fast", "transaction"], "transactions", "2.2.0", "Forget about all watched keys"),
    // ---- scripting
    spec!("eval", Eval, -3, NS | ST | SM | NMK | MK, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "2.6.0", "Execute a Lua script server side"),
    spec!("evalsha", EvalSha, -3, NS | ST | SM | NMK | MK, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "2.6.0", "Execute a Lua script server side"),
    spec!("eval_ro", EvalRo, -3, R | NS | ST | SM | NMK | MK, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "7.0.0", "Execute a read-only Lua script server side"),
    spec!("evalsha_ro", EvalShaRo, -3, R | NS | ST | SM | NMK | MK, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "7.0.0", "Execute a read-only Lua script server side"),
    spec!("script", Script, -2, 0, 0, 0, 0, Connection, ["slow"], "scripting", "2.6.0", "A container for Lua scripts management commands"),
    spec!("fcall", FCall, -3, NS | ST | SM | NMK | MK, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "7.0.0", "Invoke a function"),
    spec!("fcall_ro", FCallRo, -3, R | NS | ST | SM | NMK | MK, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "7.0.0", "Invoke a read-only function"),
    spec!("function", Function, -2, 0, 0, 0, 0, Connection, ["slow"], "scripting", "7.0.0", "A container for function commands"),
    // ---- server
    spec!("acl", Acl, -2, 0, 0, 0, 0, Connection, ["slow"], "server", "6.0.0", "A container for Access List Control commands "),
    spec!("info", Info, -1, L | ST, 0, 0, 0, Connection, ["slow", "dangerous"], "server", "1.0.0", "Returns information and statistics about the server."),
    spec!("cluster", Cluster, -2, 0, 0, 0, 0, Connection, ["slow"], "cluster", "3.0.0", "A container for cluster commands"),
    spec!("readonly", ReadOnly, 1, L | ST | F, 0, 0, 0, Connection, ["fast", "connection"], "cluster", "3.0.0", "Enables read queries for a connection to a cluster replica node"),
    spec!("readwrite", ReadWrite, 1, L | ST | F, 0, 0, 0, Connection, ["fast", "connection"], "cluster", "3.0.0", "Disables read queries for a connection to a cluster replica node"),
    spec!("asking", Asking, 1, F, 0, 0, 0, Connection, ["fast", "connection"], "cluster", "3.0.0", "Sent by cluster clients after an -ASK redirect"),
    spec!("config", Config, -2, 0, 0, 0, 0, Connection, ["slow"], "server", "2.0.0", "A container for server configuration commands."),
    spec!("time", Time, 1, L | ST | F, 0, 0, 0, Connection, ["fast"], "server", "2.6.0", "Returns the server time."),
    spec!("shutdown", Shutdown, -1, A | NS | L | ST | NM | AB, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "1.0.0", "Synchronously saves the database(s) to disk and shuts down the Redis server."),
    spec!("save", Save, 1, A | NS | NM, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "1.0.0", "Synchronously saves the database(s) to disk."),
    spec!("bgsave", BgSave, -1, A | NS | NM, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "1.0.0", "Asynchronously saves the database(s) to disk."),
    spec!("lastsave", LastSave, 1, L | ST | F, 0, 0, 0, Connection, ["admin", "fast", "dangerous"], "server", "1.0.0", "Returns the Unix timestamp of the last successful save to disk."),
    spec!("debug", Debug, -2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "1.0.0", "A container for debugging commands."),
    spec!("monitor", Monitor, 1, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "1.0.0", "Listen for all requests received by the server in real time"),
    spec!("psync", Psync, -3, A | NS | NM, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.8.0", "An internal command used in replication"),
    spec!("sync", Sync, 1, A | NS | NM, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "1.0.0", "An internal command used in replication"),
    spec!("replconf", ReplConf, -1, A | NS | L | ST | AB, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "3.0.0", "An internal command for configuring the replication stream"),
    spec!("role", Role, 1, NS | L | ST | F, 0, 0, 0, Connection, ["admin", "fast", "dangerous"], "server", "2.8.12", "Returns the replication role."),
    spec!("wait", Wait, 3, NS, 0, 0, 0, Connection, ["slow", "connection"], "generic", "3.0.0", "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed."),
    spec!("replicaof", ReplicaOf, 3, A | NS | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "5.0.0", "Configure a server as replica of another, or promote it to a master."),
    spec!("slaveof", SlaveOf, 3, A | NS | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "1.0.0", "Sets a Redis server as a replica of another, or promotes it to being a master."),
    spec!("command", Command, -1, L | ST, 0, 0, 0, Connection, ["slow", "connection"], "server", "2.8.13", "Returns detailed information about all commands."),
    spec!("slowlog", Slowlog, -2, 0, 0, 0, 0, Connection, ["slow"], "server", "2.2.12", "A container for slow log commands."),
    spec!("latency", Latency, -2, 0, 0, 0, 0, Connection, ["slow"], "server", "2.8.13", "A container for latency diagnostics commands."),
    spec!("memory", Memory, -2, 0, 0, 0, 0, Connection, ["slow"], "server", "4.0.0", "A container for memory diagnostics commands."),
];

/// Subcommands of container commands.
#[rustfmt::skip]
pub static SUBCOMMANDS: &[CommandSpec] = &[
    spec!("acl|cat", AclCat, -2, NS | L | ST, 0, 0, 0, Connection, ["slow"], "server", "6.0.0", "List the ACL categories or the commands inside a category"),
    spec!("acl|deluser", AclDelUser, -3, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "6.0.0", "Remove the specified ACL users and the associated rules"),
    spec!("acl|dryrun", AclDryRun, -4, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "7.0.0", "Returns whether the user can execute the given command without executing the command."),
    spec!("acl|genpass", AclGenPass, -2, NS | L | ST, 0, 0, 0, Connection, ["slow"], "server", "6.0.0", "Generate a pseudorandom secure password to use for ACL users"),
    spec!("acl|getuser", AclGetUser, 3, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "6.0.0", "Get the rules for a specific ACL user"),
    spec!("acl|help", AclHelp, 2, L | ST, 0, 0, 0, Connection, ["slow"], "server", "6.0.0", "Show helpful text about the different subcommands"),
    spec!("acl|list", AclList, 2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "6.0.0", "List the current ACL rules in ACL config file format"),
    spec!("acl|load", AclLoad, 2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "6.0.0", "Reload the ACLs from the configured ACL file"),
    spec!("acl|log", AclLog, -2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "6.0.0", "List latest events denied because of ACLs in place"),
    spec!("acl|save", AclSave, 2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "6.0.0", "Save the current ACL rules in the configured ACL file"),
    spec!("acl|setuser", AclSetUser, -3, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "6.0.0", "Modify or create the rules for a specific ACL user"),
    spec!("acl|users", AclUsers, 2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "6.0.0", "List the username of all the configured ACL rules"),
    spec!("acl|whoami", AclWhoami, 2, NS | L | ST, 0, 0, 0, Connection, ["slow"], "server", "6.0.0", "Return the name of the user associated to the current connection"),
    spec!("object|encoding", ObjectEncoding, 3, R, 2, 2, 1, Single, ["keyspace", "read", "slow"], "generic", "2.2.3", "Returns the internal encoding of a Redis object."),
    spec!("object|freq", ObjectFreq, 3, R, 2, 2, 1, Single, ["keyspace", "read", "slow"], "generic", "4.0.0", "Returns the logarithmic access frequency counter of a Redis object."),
    spec!("object|idletime", ObjectIdleTime, 3, R, 2, 2, 1, Single, ["keyspace", "read", "slow"], "generic", "2.2.3", "Returns the time since the last access to a Redis object."),
    spec!("object|refcount", ObjectRefCount, 3, R, 2, 2, 1, Single, ["keyspace", "read", "slow"], "generic", "2.2.3", "Returns the reference count of a value of a key."),
    spec!("object|help", ObjectHelp, 2, L | ST, 0, 0, 0, Connection, ["keyspace", "slow"], "generic", "6.2.0", "Returns helpful text about the different subcommands."),
    spec!("client|id", ClientId, 2, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "5.0.0", "Returns the unique client ID of the connection."),
    spec!("client|setname", ClientSetName, 3, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "2.6.9", "Sets the connection name."),
    spec!("client|getname", ClientGetName, 2, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "2.6.9", "Returns the name of the connection."),
    spec!("client|list", ClientList, -2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous", "connection"], "connection", "2.4.0", "Lists open connections."),
    spec!("client|info", ClientInfo, 2, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "6.2.0", "Returns information about the connection."),
    spec!("client|kill", ClientKill, -3, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous", "connection"], "connection", "2.4.0", "Terminates open connections."),
    spec!("client|setinfo", ClientSetInfo, 4, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "7.2.0", "Sets information specific to the client or connection."),
    spec!("client|no-evict", ClientNoEvict, 3, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous", "connection"], "connection", "7.0.0", "Sets the client eviction mode of the connection."),
    spec!("client|no-touch", ClientNoTouch, 3, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "7.2.0", "Controls whether commands sent by the client affect the LRU/LFU of accessed keys."),
    spec!("client|pause", ClientPause, -3, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous", "connection"], "connection", "2.9.50", "Stop processing commands from clients for some time"),
    spec!("client|unpause", ClientUnpause, 2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous", "connection"], "connection", "6.2.0", "Resume processing of clients that were paused"),
    spec!("client|unblock", ClientUnblock, -3, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous", "connection"], "connection", "5.0.0", "Unblocks a client blocked by a blocking command from a different connection."),
    spec!("client|reply", ClientReply, 3, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "3.2.0", "Instructs the server whether to reply to commands."),
    spec!("client|tracking", ClientTracking, -3, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "6.0.0", "Controls server-assisted client-side caching for the connection."),
    spec!("client|caching", ClientCaching, 3, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "6.0.0", "Instructs the server whether to track the keys in the next request."),
    spec!("client|getredir", ClientGetRedir, 2, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "6.0.0", "Returns the client ID to which the connection's tracking notifications are redirected."),
    spec!("client|trackinginfo", ClientTrackingInfo, 2, NS | L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "6.2.0", "Returns information about server-assisted client-side caching for the connection."),
    spec!("client|help", ClientHelp, 2, L | ST, 0, 0, 0, Connection, ["slow", "connection"], "connection", "5.0.0", "Returns helpful text about the different subcommands."),
    spec!("pubsub|channels", PubsubChannels, -2, PS | L | ST, 0, 0, 0, Connection, ["pubsub", "slow"], "pubsub", "2.8.0", "List active channels"),
    spec!("pubsub|numsub", PubsubNumSub, -2, PS | L | ST, 0, 0, 0, Connection, ["pubsub", "slow"], "pubsub", "2.8.0", "Get the count of subscribers for channels"),
    spec!("pubsub|numpat", PubsubNumPat, 2, PS | L | ST, 0, 0, 0, Connection, ["pubsub", "slow"], "pubsub", "2.8.0", "Get the count of unique patterns pattern subscriptions"),
    spec!("pubsub|shardchannels", PubsubShardChannels, -2, PS | L | ST, 0, 0, 0, Connection, ["pubsub", "slow"], "pubsub", "7.0.0", "List active shard channels"),
    spec!("pubsub|shardnumsub", PubsubShardNumSub, -2, PS | L | ST, 0, 0, 0, Connection, ["pubsub", "slow"], "pubsub", "7.0.0", "Get the count of subscribers for shard channels"),
    spec!("pubsub|help", PubsubHelp, 2, L | ST, 0, 0, 0, Connection, ["slow"], "pubsub", "6.2.0", "Show helpful text about the different subcommands"),
    spec!("cluster|addslots", ClusterAddslots, -3, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Assign new hash slots to receiving node"),
    spec!("cluster|addslotsrange", ClusterAddslotsrange, -4, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "7.0.0", "Assign new hash slots to receiving node"),
    spec!("cluster|bumpepoch", ClusterBumpepoch, 2, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Advance the cluster config epoch"),
    spec!("cluster|count-failure-reports", ClusterCountFailureReports, 3, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Return the number of failure reports active for a given node"),
    spec!("cluster|countkeysinslot", ClusterCountKeysInSlot, 3, ST, 0, 0, 0, Connection, ["slow"], "cluster", "3.0.0", "Return the number of local keys in the specified hash slot"),
    spec!("cluster|delslots", ClusterDelslots, -3, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Set hash slots as unbound in receiving node"),
    spec!("cluster|delslotsrange", ClusterDelslotsrange, -4, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "7.0.0", "Set hash slots as unbound in receiving node"),
    spec!("cluster|failover", ClusterFailover, -2, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Forces a replica to perform a manual failover of its master."),
    spec!("cluster|flushslots", ClusterFlushslots, 2, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Delete a node's own slots information"),
    spec!("cluster|forget", ClusterForget, 3, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Remove a node from the nodes table"),
    spec!("cluster|getkeysinslot", ClusterGetKeysInSlot, 4, ST, 0, 0, 0, Connection, ["slow"], "cluster", "3.0.0", "Return local key names in the specified hash slot"),
    spec!("cluster|help", ClusterHelp, 2, L | ST, 0, 0, 0, Connection, ["slow"], "cluster", "5.0.0", "Show helpful text about the different subcommands"),
    spec!("cluster|info", ClusterInfo, 2, ST, 0, 0, 0, Connection, ["slow"], "cluster", "3.0.0", "Provides info about Redis Cluster node state"),
    spec!("cluster|keyslot", ClusterKeySlot, 3, ST, 0, 0, 0, Connection, ["slow"], "cluster", "3.0.0", "Returns the hash slot of the specified key"),
    spec!("cluster|links", ClusterLinks, 2, ST, 0, 0, 0, Connection, ["slow"], "cluster", "7.0.0", "Returns a list of all TCP links to and from peer nodes in cluster"),
    spec!("cluster|meet", ClusterMeet, -4, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Force a node cluster to handshake with another node"),
    spec!("cluster|myid", ClusterMyId, 2, ST, 0, 0, 0, Connection, ["slow"], "cluster", "3.0.0", "Return the node id"),
    spec!("cluster|nodes", ClusterNodes, 2, ST, 0, 0, 0, Connection, ["slow"], "cluster", "3.0.0", "Get Cluster config for the node"),
    spec!("cluster|replicas", ClusterReplicas, 3, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "5.0.0", "List replica nodes of the specified master node"),
    spec!("cluster|replicate", ClusterReplicate, 3, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Reconfigure a node as a replica of the specified master node"),
    spec!("cluster|reset", ClusterReset, -2, A | ST | NS, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Reset a Redis Cluster node"),
    spec!("cluster|saveconfig", ClusterSaveconfig, 2, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Forces the node to save cluster state on disk"),
    spec!("cluster|set-config-epoch", ClusterSetConfigEpoch, 3, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Set the configuration epoch in a new node"),
    spec!("cluster|setslot", ClusterSetslot, -4, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "Bind a hash slot to a specific node"),
    spec!("cluster|shards", ClusterShards, 2, ST, 0, 0, 0, Connection, ["slow"], "cluster", "7.0.0", "Get array of cluster slots to node mappings"),
    spec!("cluster|slaves", ClusterSlaves, 3, A | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "cluster", "3.0.0", "List replica nodes of the specified master node"),
    spec!("cluster|slots", ClusterSlots, 2, ST, 0, 0, 0, Connection, ["slow"], "cluster", "3.0.0", "Get array of Cluster slot to node mappings"),
    spec!("config|get", ConfigGet, -3, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.0.0", "Returns the effective values of configuration parameters."),
    spec!("config|set", ConfigSet, -4, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.0.0", "Sets configuration parameters in-flight."),
    spec!("config|resetstat", ConfigResetStat, 2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.0.0", "Resets the server's statistics."),
    spec!("config|rewrite", ConfigRewrite, 2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.8.0", "Persists the effective configuration to file."),
    spec!("config|help", ConfigHelp, 2, L | ST, 0, 0, 0, Connection, ["slow"], "server", "5.0.0", "Returns helpful text about the different subcommands."),
    spec!("command|count", CommandCount, 2, L | ST, 0, 0, 0, Connection, ["slow", "connection"], "server", "2.8.13", "Returns a count of commands."),
    spec!("command|info", CommandInfo, -2, L | ST, 0, 0, 0, Connection, ["slow", "connection"], "server", "2.8.13", "Returns information about one, multiple or all commands."),
    spec!("command|docs", CommandDocs, -2, L | ST, 0, 0, 0, Connection, ["slow", "connection"], "server", "7.0.0", "Returns documentary information about one, multiple or all commands."),
    spec!("command|getkeys", CommandGetKeys, -4, L | ST, 0, 0, 0, Connection, ["slow", "connection"], "server", "2.8.13", "Extracts the key names from an arbitrary command."),
    spec!("command|getkeysandflags", CommandGetKeysAndFlags, -4, L | ST, 0, 0, 0, Connection, ["slow", "connection"], "server", "7.0.0", "Extracts the key names and access flags for an arbitrary command."),
    spec!("command|list", CommandList, -2, L | ST, 0, 0, 0, Connection, ["slow", "connection"], "server", "7.0.0", "Returns a list of command names."),
    spec!("command|help", CommandHelp, 2, L | ST, 0, 0, 0, Connection, ["slow", "connection"], "server", "5.0.0", "Returns helpful text about the different subcommands."),
    spec!("slowlog|get", SlowlogGet, -2, A | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.2.12", "Returns the slow log's entries."),
    spec!("slowlog|len", SlowlogLen, 2, A | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.2.12", "Returns the number of entries in the slow log."),
    spec!("slowlog|reset", SlowlogReset, 2, A | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.2.12", "Clears all entries from the slow log."),
    spec!("slowlog|help", SlowlogHelp, 2, L | ST, 0, 0, 0, Connection, ["slow"], "server", "6.2.0", "Show helpful text about the different subcommands"),
    spec!("latency|latest", LatencyLatest, 2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.8.13", "Returns the latest latency samples for all events."),
    spec!("latency|history", LatencyHistory, 3, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.8.13", "Returns timestamp-latency samples for an event."),
    spec!("latency|reset", LatencyReset, -2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.8.13", "Resets the latency data for one or more events."),
    spec!("latency|doctor", LatencyDoctor, 2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "2.8.13", "Returns a human-readable latency analysis report."),
    spec!("latency|histogram", LatencyHistogram, -2, A | NS | L | ST, 0, 0, 0, Connection, ["admin", "slow", "dangerous"], "server", "7.0.0", "Returns the cumulative distribution of latencies of a subset or all commands."),
    spec!("latency|help", LatencyHelp, 2, L | ST, 0, 0, 0, Connection, ["slow"], "server", "2.8.13", "Returns helpful text about the different subcommands."),
    spec!("memory|usage", MemoryUsage, -3, R, 2, 2, 1, Single, ["read", "slow"], "server", "4.0.0", "Estimates the memory usage of a key."),
    spec!("memory|stats", MemoryStats, 2, 0, 0, 0, 0, Connection, ["slow"], "server", "4.0.0", "Returns details about memory usage."),
    spec!("memory|doctor", MemoryDoctor, 2, 0, 0, 0, 0, Connection, ["slow"], "server", "4.0.0", "Outputs a memory problems report."),
    spec!("memory|purge", MemoryPurge, 2, 0, 0, 0, 0, Connection, ["slow"], "server", "4.0.0", "Asks the allocator to release memory."),
    spec!("memory|malloc-stats", MemoryMallocStats, 2, 0, 0, 0, 0, Connection, ["slow"], "server", "4.0.0", "Returns the allocator statistics."),
    spec!("memory|help", MemoryHelp, 2, L | ST, 0, 0, 0, Connection, ["slow"], "server", "4.0.0", "Returns helpful text about the different subcommands."),
    spec!("script|flush", ScriptFlush, -2, NS, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "2.6.0", "Remove all the scripts from the script cache."),
    spec!("script|debug", ScriptDebug, 3, NS, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "3.2.0", "Set the debug mode for executed scripts."),
    spec!("script|exists", ScriptExists, -3, NS, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "2.6.0", "Check existence of scripts in the script cache."),
    spec!("script|load", ScriptLoad, 3, NS | ST, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "2.6.0", "Load the specified Lua script into the script cache."),
    spec!("script|help", ScriptHelp, 2, L | ST, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "5.0.0", "Show helpful text about the different subcommands"),
    spec!("script|kill", ScriptKill, 2, NS | AB, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "2.6.0", "Kill the script currently in execution."),
    spec!("function|load", FunctionLoad, -3, W | D | NS, 0, 0, 0, Connection, ["write", "slow", "scripting"], "scripting", "7.0.0", "Create a function with the given arguments (name, code, description)"),
    spec!("function|delete", FunctionDelete, 3, W | NS, 0, 0, 0, Connection, ["write", "slow", "scripting"], "scripting", "7.0.0", "Delete a function by name"),
    spec!("function|flush", FunctionFlush, -2, W | NS, 0, 0, 0, Connection, ["write", "slow", "scripting"], "scripting", "7.0.0", "Deleting all functions"),
    spec!("function|list", FunctionList, -2, NS, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "7.0.0", "List information about all the functions"),
    spec!("function|dump", FunctionDump, 2, NS, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "7.0.0", "Dump all functions into a serialized binary payload"),
    spec!("function|restore", FunctionRestore, -3, W | D | NS, 0, 0, 0, Connection, ["write", "slow", "scripting"], "scripting", "7.0.0", "Restore all the functions on the given payload"),
    spec!("function|stats", FunctionStats, 2, NS | AB, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "7.0.0", "Return information about the function currently running (name, description, duration)"),
    spec!("function|kill", FunctionKill, 2, NS | AB, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "7.0.0", "Kill the function currently in execution."),
    spec!("function|help", FunctionHelp, 2, L | ST, 0, 0, 0, Connection, ["slow", "scripting"], "scripting", "7.0.0", "Show helpful text about the different subcommands"),
];

/// The subcommand rows of a container command, in table order.
pub fn subcommands(parent: Cmd) -> &'static [CommandSpec] {
    let prefix = match parent {
        Cmd::Object => "object|",
        Cmd::Client => "client|",
        Cmd::Pubsub => "pubsub|",
        Cmd::Config => "config|",
        Cmd::Command => "command|",
        Cmd::Slowlog => "slowlog|",
        Cmd::Latency => "latency|",
        Cmd::Memory => "memory|",
        Cmd::Script => "script|",
        Cmd::Function => "function|",
        Cmd::Cluster => "cluster|",
        Cmd::Acl => "acl|",
        _ => return &[],
    };
    let start = SUBCOMMANDS
        .iter()
        .position(|s| s.name.starts_with(prefix))
        .unwrap_or(0);
    let len = SUBCOMMANDS[start..]
        .iter()
        .take_while(|s| s.name.starts_with(prefix))
        .count();
    &SUBCOMMANDS[start..start + len]
}

/// The longest name in either table, plus room for `|`: longer input cannot match.
const MAX_NAME: usize = 32;

/// Every row of both tables by name: an open-addressed table of row indices, sized to at
/// most a quarter full, probed linearly from the name's FNV-1a hash (lookup hashes the
/// lower-cased name once and compares one or two candidates, where a binary search over
/// 400 names compared nine).
struct NameIndex {
    slots: Vec<u16>,
    rows: Vec<&'static CommandSpec>,
}

const EMPTY: u16 = u16::MAX;

fn fnv1a(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn name_index() -> &'static NameIndex {
    static INDEX: OnceLock<NameIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let rows: Vec<&'static CommandSpec> = COMMANDS.iter().chain(SUBCOMMANDS.iter()).collect();
        let mut slots = vec![EMPTY; (rows.len() * 4).next_power_of_two()];
        let mask = slots.len() - 1;
        for (i, r) in rows.iter().enumerate() {
            let mut at = fnv1a(r.name.as_bytes()) as usize & mask;
            while slots[at] != EMPTY {
                at = (at + 1) & mask;
            }
            slots[at] = i as u16;
        }
        NameIndex { slots, rows }
    })
}

fn find(lower: &[u8]) -> Option<&'static CommandSpec> {
    let idx = name_index();
    let mask = idx.slots.len() - 1;
    let mut at = fnv1a(lower) as usize & mask;
    loop {
        match idx.slots[at] {
            EMPTY => return None,
            i => {
                let row = idx.rows[i as usize];
                if row.name.as_bytes() == lower {
                    return Some(row);
                }
            }
        }
        at = (at + 1) & mask;
    }
}

/// Commands renamed by `rename-command` (set once, at start).
struct Renames {
    /// New names (any case) and the command each names.
    added: Vec<(Vec<u8>, &'static CommandSpec)>,
    /// Original names no longer answered to (lower case).
    hidden: Vec<&'static str>,
}

static RENAMES: OnceLock<Renames> = OnceLock::new();

/// Applies `rename-command` lines (original name, new name; an empty new name removes the
/// command), with Redis's errors. Called once, before any lookup; later calls are refused.
pub fn set_renames(pairs: &[(String, String)]) -> Result<(), String> {
    if pairs.is_empty() {
        return Ok(());
    }
    let mut r = Renames {
        added: Vec::new(),
        hidden: Vec::new(),
    };
    for (from, to) in pairs {
        let spec = lookup_static(from.as_bytes())
            .filter(|s| !r.hidden.contains(&s.name))
            .or_else(|| {
                r.added
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(from.as_bytes()))
                    .map(|(_, s)| *s)
            })
            .ok_or("No such command in rename-command")?;
        r.added
            .retain(|(n, _)| !n.eq_ignore_ascii_case(from.as_bytes()));
        if lookup_static(from.as_bytes()).is_some() {
            r.hidden.push(spec.name);
        }
        if !to.is_empty() {
            let taken = (lookup_static(to.as_bytes()).is_some_and(|s| !r.hidden.contains(&s.name)))
                || r.added
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(to.as_bytes()));
            if taken {
                return Err("Target command name already exists".into());
            }
            r.added.push((to.as_bytes().to_vec(), spec));
        }
    }
    RENAMES
        .set(r)
        .map_err(|_| "rename-command applied twice".to_string())
}

/// Finds a top-level command by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    if let Some(r) = RENAMES.get() {
        if let Some((_, spec)) = r.added.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Some(spec);
        }
        return lookup_static(name).filter(|s| !r.hidden.contains(&s.name));
    }
    lookup_static(name)
}

/// [`lookup`] in the command table as built, without renames.
fn lookup_static(name: &[u8]) -> Option<&'static CommandSpec> {
    if name.len() > MAX_NAME {
        return None;
    }
    let mut buf = [0u8; MAX_NAME];
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    find(&buf[..name.len()]).filter(|s| !s.name.contains('|'))
}

/// Finds the subcommand `sub` of container `parent`, case-insensitively.
pub fn lookup_sub(parent: &CommandSpec, sub: &[u8]) -> Option<&'static CommandSpec> {
    let total = parent.name.len() + 1 + sub.len();
    if total > MAX_NAME {
        return None;
    }
    let mut buf = [0u8; MAX_NAME];
    buf[..parent.name.len()].copy_from_slice(parent.name.as_bytes());
    buf[parent.name.len()] = b'|';
    for (d, s) in buf[parent.name.len() + 1..].iter_mut().zip(sub) {
        *d = s.to_ascii_lowercase();
    }
    find(&buf[..total])
}

/// Resolves a command line's spec: the command itself, or its subcommand for containers.
/// Errors are Redis's texts (unknown command / unknown subcommand / arity).
pub fn resolve(args: &Args) -> Result<&'static CommandSpec, String> {
    let Some(name) = args.get(0) else {
        return Err("ERR empty command".into());
    };
    let Some(spec) = lookup(name) else {
        return Err(unknown_command_error(args));
    };
    if spec.is_container() {
        if args.len() < 2 {
            // COMMAND alone is a command of its own; CONFIG alone is an arity error.
            return if spec.arity_ok(1) {
                Ok(spec)
            } else {
                Err(spec.arity_error())
            };
        }
        let Some(sub) = lookup_sub(spec, &args[1]) else {
            return Err(format!(
                "ERR unknown subcommand '{}'. Try {} HELP.",
                truncated(&args[1], 128),
                String::from_utf8_lossy(name).to_uppercase()
            ));
        };
        if !sub.arity_ok(args.len()) {
            return Err(sub.arity_error());
        }
        return Ok(sub);
    }
    if !spec.arity_ok(args.len()) {
        return Err(spec.arity_error());
    }
    Ok(spec)
}

fn truncated(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned()
}

/// `ERR unknown command 'x', with args beginning with: 'a' 'b' ` as Redis 7 writes it.
pub fn unknown_command_error(args: &Args) -> String {
    let mut rest = String::new();
    for a in args.iter().skip(1) {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        rest.push('\'');
        rest.push_str(&truncated(a, room));
        rest.push_str("' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {}",
        truncated(args.get(0).unwrap_or(b""), 128),
        rest
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_command_indexes_below_cmd_count() {
        let max = COMMANDS
            .iter()
            .chain(SUBCOMMANDS.iter())
            .map(|c| c.cmd as usize)
            .max();
        assert_eq!(
            max,
            Some(CMD_COUNT - 1),
            "CMD_COUNT must follow the last Cmd variant"
        );
    }

    use super::*;

    #[test]
    fn every_row_is_found_by_its_name_in_any_case() {
        for s in COMMANDS.iter().chain(SUBCOMMANDS) {
            match s.name.split_once('|') {
                None => {
                    assert!(std::ptr::eq(lookup(s.name.as_bytes()).unwrap(), s));
                    let upper = s.name.to_ascii_uppercase();
                    assert!(std::ptr::eq(lookup(upper.as_bytes()).unwrap(), s));
                }
                Some((parent, sub)) => {
                    let p = lookup(parent.as_bytes()).unwrap();
                    let found = lookup_sub(p, sub.to_ascii_uppercase().as_bytes()).unwrap();
                    assert!(std::ptr::eq(found, s));
                    // A subcommand is not a top-level command.
                    assert!(lookup(s.name.as_bytes()).is_none());
                }
            }
        }
        for missing in [
            "",
            "ge",
            "gett",
            "client|",
            "nosuchcommand",
            "x".repeat(40).as_str(),
        ] {
            assert!(lookup(missing.as_bytes()).is_none(), "{missing}");
        }
    }

    #[test]
    fn every_cmd_has_exactly_one_row() {
        let mut seen = std::collections::HashSet::new();
        for s in COMMANDS.iter().chain(SUBCOMMANDS) {
            assert!(seen.insert(s.cmd), "{} listed twice", s.name);
            assert_eq!(s.name, s.name.to_ascii_lowercase());
            assert!(s.name.len() < MAX_NAME);
        }
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"GeT").unwrap().cmd, Cmd::Get);
        assert!(lookup(b"nosuch").is_none());
        assert!(
            lookup(b"config|get").is_none(),
            "subcommands are not top-level names"
        );
        let config = lookup(b"CONFIG").unwrap();
        assert_eq!(lookup_sub(config, b"Get").unwrap().cmd, Cmd::ConfigGet);
        assert_eq!(subcommands(Cmd::Command).len(), 7);
    }

    fn resolve(args: &[&[u8]]) -> Result<&'static CommandSpec, String> {
        let o = crate::OwnedArgs::from_slices(args);
        super::resolve(&o.args())
    }

    #[test]
    fn arity_and_errors() {
        assert_eq!(
            resolve(&[b"get"]).unwrap_err(),
            "ERR wrong number of arguments for 'get' command"
        );
        assert!(resolve(&[b"get", b"k"]).is_ok());
        assert!(resolve(&[b"set", b"k"]).is_err());
        assert!(resolve(&[b"set", b"k", b"v", b"EX", b"1"]).is_ok());
        assert_eq!(
            resolve(&[b"config", b"nope"]).unwrap_err(),
            "ERR unknown subcommand 'nope'. Try CONFIG HELP."
        );
        assert_eq!(
            resolve(&[b"config", b"get"]).unwrap_err(),
            "ERR wrong number of arguments for 'config|get' command"
        );
        assert_eq!(
            resolve(&[b"foo", b"a", b"b"]).unwrap_err(),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            resolve(&[b"foo"]).unwrap_err(),
            "ERR unknown command 'foo', with args beginning with: "
        );
    }

    #[test]
    fn key_positions() {
        let keys = |name: &[u8], argc| lookup(name).unwrap().key_indices(argc).collect::<Vec<_>>();
        assert_eq!(keys(b"get", 2), vec![1]);
        assert_eq!(keys(b"mget", 4), vec![1, 2, 3]);
        assert_eq!(keys(b"mset", 5), vec![1, 3]);
        assert_eq!(keys(b"rename", 3), vec![1, 2]);
        assert_eq!(keys(b"copy", 5), vec![1, 2]);
        assert_eq!(keys(b"ping", 1), Vec::<usize>::new());
        let migrate = |words: &[&[u8]]| {
            let o = crate::OwnedArgs::from_slices(words);
            let spec = lookup(b"migrate").unwrap();
            spec.migrate_key_indices(&o.args())
                .unwrap()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            migrate(&[b"migrate", b"h", b"1", b"k", b"0", b"10"]),
            vec![3]
        );
        assert_eq!(
            migrate(&[
                b"migrate", b"h", b"1", b"", b"0", b"10", b"AUTH", b"keys", b"KEYS", b"a", b"b"
            ]),
            vec![9, 10]
        );
        assert_eq!(
            migrate(&[b"migrate", b"h", b"1", b"k", b"0", b"10", b"keys", b"a"]),
            Vec::<usize>::new()
        );
        let obj = lookup_sub(lookup(b"object").unwrap(), b"encoding").unwrap();
        assert_eq!(obj.key_indices(3).collect::<Vec<_>>(), vec![2]);
    }
}
