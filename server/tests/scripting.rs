//! Lua scripting (EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT): differential tests against a
//! real `redis-server` 7.0 (byte-for-byte replies, RESP2 and RESP3, percore with 1 and 3
//! shards), and percore-only tests of what Redis cannot show: the isolation of scripts whose
//! keys live on several shards, undeclared keys on other shards, and a runaway script (an
//! endless loop, a huge allocation) that must not take the server down.

mod common;

use common::{each_differential_run, esc, free_port, words, Client, Diff, Server, TempDir};
use std::time::{Duration, Instant};

/// One EVAL-family command: its name, the script, the keys and the other arguments.
fn ev(cmd: &str, script: &str, keys: &[&str], args: &[&str]) -> Vec<Vec<u8>> {
    let mut v = vec![
        cmd.as_bytes().to_vec(),
        script.as_bytes().to_vec(),
        keys.len().to_string().into_bytes(),
    ];
    v.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
    v.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    v
}

/// Scripts run with EVAL on keys `{a}`, `b`, `c` (on different shards of 3), in order;
/// every reply must be Redis's.
#[rustfmt::skip]
const SCRIPTS: &[(&str, &[&str], &[&str])] = &[
    // Lua → RESP
    ("return 1", &[], &[]),
    ("return 'x'", &[], &[]),
    ("return 3.99", &[], &[]),
    ("return -3.99", &[], &[]),
    ("return true", &[], &[]),
    ("return false", &[], &[]),
    ("return nil", &[], &[]),
    ("return {}", &[], &[]),
    ("return {1,2,3.9,'x',nil,4}", &[], &[]),
    ("return {true,false,{ok='fine'},{1,{2,'z'}}}", &[], &[]),
    ("return {err='x y'}", &[], &[]),
    ("return {ok='a\\nb'}", &[], &[]),
    ("return redis.status_reply('X')", &[], &[]),
    ("return redis.error_reply('MY err')", &[], &[]),
    ("return redis.error_reply('boom')", &[], &[]),
    ("return redis.sha1hex('')", &[], &[]),
    ("return redis.sha1hex('abc')", &[], &[]),
    ("return {KEYS[1], ARGV[1], #KEYS, #ARGV}", &["a", "b"], &["x", "y", "z"]),
    ("return {double=3.5}", &[], &[]),
    ("return {map={f=1}}", &[], &[]),
    ("return {set={m=true}}", &[], &[]),
    ("return redis.breakpoint()", &[], &[]),
    ("return redis.debug('x')", &[], &[]),
    ("return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}", &[], &[]),
    ("redis.log(redis.LOG_WARNING, 'from a script') return 1", &[], &[]),
    // the rest of the redis library
    ("return redis.REDIS_VERSION", &[], &[]), ("return redis.REDIS_VERSION_NUM", &[], &[]),
    ("return redis.replicate_commands()", &[], &[]), ("return redis.set_repl()", &[], &[]),
    ("return redis.set_repl(redis.REPL_ALL)", &[], &[]), ("return redis.set_repl(9)", &[], &[]),
    ("return redis.log()", &[], &[]), ("return redis.log('x', 'y')", &[], &[]),
    ("return redis.log(9, 'y')", &[], &[]), ("return redis.status_reply(1)", &[], &[]),
    ("return redis.error_reply(1)", &[], &[]), ("return redis.error_reply('-WRONGTYPE x')", &[], &[]),
    ("return redis.sha1hex()", &[], &[]), ("return redis.setresp()", &[], &[]),
    ("return {1, {err='inner'}}", &[], &[]), ("return {double='x'}", &[], &[]),
    ("return {ok=1}", &[], &[]), ("return {err=1}", &[], &[]), ("return 2^53", &[], &[]),
    ("return loadstring('return 1')()", &[], &[]), ("return _VERSION", &[], &[]),
    ("return coroutine.wrap(function() coroutine.yield(5) end)()", &[], &[]),
    // bit
    ("return bit.tobit(2^32+5)", &[], &[]), ("return bit.tohex(255)", &[], &[]),
    ("return bit.tohex(-1, -4)", &[], &[]), ("return bit.tohex(255, 2)", &[], &[]),
    ("return bit.tohex(1, 9)", &[], &[]), ("return bit.tohex(1, 0)", &[], &[]),
    ("return bit.band(0xff, 0x0f, 0x3)", &[], &[]), ("return bit.bor(1,2,4)", &[], &[]),
    ("return bit.bxor(5,1)", &[], &[]), ("return bit.bnot(0)", &[], &[]),
    ("return bit.lshift(1, 33)", &[], &[]), ("return bit.rshift(-1, 28)", &[], &[]),
    ("return bit.arshift(-256, 4)", &[], &[]), ("return bit.rol(0x12345678, 8)", &[], &[]),
    ("return bit.ror(0x12345678, 8)", &[], &[]), ("return bit.bswap(0x12345678)", &[], &[]),
    ("return bit.band()", &[], &[]), ("return bit.band('x')", &[], &[]),
    ("return bit.band('12', 4)", &[], &[]), ("return bit.tobit(1.5)", &[], &[]),
    ("return bit.tobit(2.5)", &[], &[]), ("return bit.tobit(-2^31 - 1)", &[], &[]),
    ("return bit.lshift(1)", &[], &[]), ("return bit.bor(1, nil)", &[], &[]),
    // cjson
    ("return cjson.encode({1,2,3})", &[], &[]), ("return cjson.encode({a=1})", &[], &[]),
    ("return cjson.encode({})", &[], &[]), ("return cjson.encode('a\"b\\\\/\\n\\1\\127\\200')", &[], &[]),
    ("return cjson.encode(1.5)", &[], &[]), ("return cjson.encode(cjson.null)", &[], &[]),
    ("return cjson.encode({1,nil,3})", &[], &[]), ("return cjson.encode({[1]=1,[3]=3})", &[], &[]),
    ("return cjson.encode(true)", &[], &[]), ("return cjson.encode({a={b={1,'x'}}})", &[], &[]),
    ("return cjson.encode(0.1)", &[], &[]), ("return cjson.encode(1e20)", &[], &[]),
    ("return cjson.encode(100)", &[], &[]),
    ("return cjson.encode(1/0)", &[], &[]), ("return cjson.encode(function() end)", &[], &[]),
    ("return cjson.encode({[1]=1,[2]=2,[4]=4})", &[], &[]), ("return cjson.encode({[1.5]=1})", &[], &[]),
    ("return cjson.encode({[true]=1})", &[], &[]), ("return cjson.encode({[20]=1})", &[], &[]),
    ("return cjson.encode()", &[], &[]), ("return cjson.decode()", &[], &[]),
    ("return cjson.decode('[1,2,{\"a\":null}]')[3].a == cjson.null", &[], &[]),
    ("return cjson.decode('{\"a\":[1,2.5,\"x\",true,false]}').a", &[], &[]),
    ("return cjson.decode(' [ ] ')", &[], &[]), ("return cjson.decode('{}')", &[], &[]),
    ("return cjson.decode('\"\\u00e9\\ud83d\\ude00\\t\"')", &[], &[]),
    ("return type(cjson.decode('null'))", &[], &[]),
    ("return cjson.decode('bad')", &[], &[]), ("return cjson.decode('[1,2')", &[], &[]),
    ("return cjson.decode('[1,2] x')", &[], &[]), ("return cjson.decode('{\"a\" 1}')", &[], &[]),
    ("return cjson.decode('{1:2}')", &[], &[]), ("return cjson.decode('{\"a\":1 \"b\"}')", &[], &[]),
    ("return cjson.decode('[1,]')", &[], &[]), ("return cjson.decode('')", &[], &[]),
    ("return cjson.decode('\"abc')", &[], &[]), ("return cjson.decode('-12.5e1')", &[], &[]),
    ("return cjson.decode(cjson.encode({k={1,2,{z='w'}}})).k[3].z", &[], &[]),
    ("return cjson.encode(cjson.decode('{\"x\":[1,{\"y\":null}]}'))", &[], &[]),
    // nesting limits (iterative in percore: a debug build's stack would not hold 1000 levels)
    ("local s = string.rep('[', 1001) .. string.rep(']', 1001) return cjson.decode(s)", &[], &[]),
    ("local s = string.rep('[', 1000) .. string.rep(']', 1000) return type(cjson.decode(s))", &[], &[]),
    ("local t = {} local c = t for i=1,1100 do c[1] = {} c = c[1] end return cjson.encode(t)", &[], &[]),
    ("local t = {} local c = t for i=1,999 do c[1] = {} c = c[1] end return #cjson.encode(t)", &[], &[]),
    // RESP → Lua
    ("return redis.call('set', KEYS[1], 'v')", &["{a}"], &[]),
    ("return redis.call('get', KEYS[1])", &["{a}"], &[]),
    ("return redis.call('get', KEYS[1])", &["nokey"], &[]),
    ("return type(redis.call('get', KEYS[1]))", &["nokey"], &[]),
    ("return redis.call('type', KEYS[1])", &["{a}"], &[]),
    ("return type(redis.call('type', KEYS[1]))", &["{a}"], &[]),
    ("return redis.call('set', KEYS[1], 3.5)", &["b"], &[]),
    ("return redis.call('get', KEYS[1])", &["b"], &[]),
    ("return redis.call('incrby', KEYS[1], 7)", &["c"], &[]),
    ("return redis.call('rpush', KEYS[1], 'x', 'y', 'z')", &["l"], &[]),
    ("return redis.call('lrange', KEYS[1], 0, -1)", &["l"], &[]),
    ("return redis.call('hset', KEYS[1], 'f', 'v')", &["h"], &[]),
    ("return redis.call('hgetall', KEYS[1])", &["h"], &[]),
    ("return redis.call('ping')", &[], &[]),
    // numbers as arguments (Lua prints them with %.14g), replies of every shape
    ("return {redis.call('set', KEYS[1], -42), redis.call('get', KEYS[1])}", &["n"], &[]),
    ("return {redis.call('set', KEYS[1], -0.0), redis.call('get', KEYS[1])}", &["n"], &[]),
    ("return {redis.call('set', KEYS[1], 2^53), redis.call('get', KEYS[1])}", &["n"], &[]),
    ("return {redis.call('set', KEYS[1], 1e14 - 1), redis.call('get', KEYS[1])}", &["n"], &[]),
    ("return {redis.call('set', KEYS[1], 1e14), redis.call('get', KEYS[1])}", &["n"], &[]),
    ("return {redis.call('set', KEYS[1], 0.1), redis.call('get', KEYS[1])}", &["n"], &[]),
    ("return redis.call('incrby', KEYS[1], -100000000000001)", &["n2"], &[]),
    ("return redis.call('set', KEYS[1], true)", &["n"], &[]),
    ("return redis.pcall('set', KEYS[1], nil)", &["n"], &[]),
    ("local r = redis.call('set', KEYS[1], 'v') return {type(r), r.ok}", &["n"], &[]),
    ("redis.call('rpush', KEYS[1], 'a', 'b') return {redis.call('mget', KEYS[2], KEYS[3]), redis.call('lrange', KEYS[1], 0, -1), redis.call('llen', KEYS[1])}", &["{q}l", "{q}x", "{q}y"], &[]),
    ("redis.call('zadd', KEYS[1], 1, 'a', 2.5, 'b') return redis.call('zrange', KEYS[1], 0, -1, 'withscores')", &["zz"], &[]),
    ("redis.setresp(3) return redis.call('zrange', KEYS[1], 0, -1, 'withscores')", &["zz"], &[]),
    ("redis.setresp(3) redis.call('sadd', KEYS[1], 'm') local s = redis.call('smembers', KEYS[1]) return {s.set.m, redis.call('sismember', KEYS[1], 'm')}", &["ss"], &[]),
    ("redis.setresp(3) return redis.call('hgetall', KEYS[1])", &["nokey"], &[]),
    ("redis.setresp(3) return {redis.call('set', KEYS[1], 'v'), redis.pcall('incr', KEYS[1])}", &["n"], &[]),
    ("return redis.pcall('hset', KEYS[1])", &["n"], &[]),
    ("local r = redis.pcall('lpush', KEYS[1], 'x') return {r.err, redis.call('get', KEYS[1])}", &["n"], &[]),
    ("return redis.call('get', KEYS[1], 'extra')", &["n"], &[]),
    // keys on several shards
    ("return redis.call('mset', KEYS[1], '1', KEYS[2], '2', KEYS[3], '3')", &["{a}", "b", "c"], &[]),
    ("return redis.call('mget', KEYS[1], KEYS[2], KEYS[3])", &["{a}", "b", "c"], &[]),
    ("local t = {} for i, k in ipairs(KEYS) do t[i] = redis.call('incr', k) end return t", &["{a}", "b", "c"], &[]),
    ("return redis.call('del', KEYS[1], KEYS[2])", &["b", "c"], &[]),
    // every routing from a script: blocking commands (they do not block), whole-keyspace
    // commands, keys across shards, connection commands
    ("return redis.call('blpop', KEYS[1], 0)", &["bl"], &[]),
    ("redis.call('rpush', KEYS[1], 'a') return redis.call('blpop', KEYS[1], 0)", &["bl"], &[]),
    ("return redis.call('blmove', KEYS[1], 'x', 'LEFT', 'RIGHT', 0)", &["bl"], &[]),
    ("redis.call('set', 'a1', 1) redis.call('set', 'a2', 2) local k = redis.call('keys', 'a*') table.sort(k) return k", &[], &[]),
    ("redis.call('sadd', KEYS[1], 3, 1, 2) return redis.call('sort', KEYS[1])", &["so"], &[]),
    ("return redis.call('exists', 'a1', 'a2', 'zz')", &[], &[]),
    ("return redis.call('rename', 'a1', 'b1')", &[], &[]),
    ("return {redis.call('get', 'b1'), redis.call('exists', 'a1')}", &[], &[]),
    ("return redis.call('echo', 'hi')", &[], &[]),
    ("return redis.call('watch', 'x')", &[], &[]),
    ("return redis.call('config', 'get', 'maxmemory')", &[], &[]),
    ("return redis.call('info', 'nosuch')", &[], &[]),
    // errors from calls
    ("return redis.call('incr', KEYS[1])", &["l"], &[]),
    ("return redis.pcall('incr', KEYS[1])", &["l"], &[]),
    ("return redis.call('set', KEYS[1], 'x')", &["s"], &[]),
    ("return redis.call('incr', KEYS[1])", &["s"], &[]),
    ("return redis.pcall('incr', KEYS[1])", &["s"], &[]),
    ("local r = redis.pcall('incr', KEYS[1]) return {type(r), r.err}", &["s"], &[]),
    ("local ok, e = pcall(redis.call, 'nosuch') return e", &[], &[]),
    ("return redis.call('nosuch')", &[], &[]),
    ("return redis.pcall('nosuch')", &[], &[]),
    ("return redis.call('get')", &[], &[]),
    ("return redis.call('get', 'a', 'b')", &[], &[]),
    ("return redis.call()", &[], &[]),
    ("return redis.call({})", &[], &[]),
    ("return redis.call('eval', 'return 1', 0)", &[], &[]),
    ("return redis.call('multi')", &[], &[]),
    // a failing call mid-way: what ran before stays
    ("redis.call('set', KEYS[1], 'before') redis.call('incr', KEYS[2]) redis.call('set', KEYS[1], 'after')", &["m", "l"], &[]),
    ("return redis.call('get', KEYS[1])", &["m"], &[]),
    ("redis.call('set', KEYS[1], 'e1')\nerror('mid')", &["m"], &[]),
    ("return redis.call('get', KEYS[1])", &["m"], &[]),
    // Lua errors, sandbox, globals
    ("return error('boom')", &[], &[]),
    ("local x = 1\nlocal y = 2\nreturn nil + x", &[], &[]),
    ("x = 1", &[], &[]),
    ("return y", &[], &[]),
    ("return os", &[], &[]),
    ("return io", &[], &[]),
    ("return loadfile", &[], &[]),
    ("return dofile", &[], &[]),
    ("return print", &[], &[]),
    ("return setfenv", &[], &[]),
    ("syntax error here", &[], &[]),
    ("return type(string.format) .. type(table.concat) .. type(math.floor) .. type(pcall)", &[], &[]),
    ("redis.setresp(4)", &[], &[]),
    // shebang flags
    ("#!lua flags=no-writes\nreturn redis.call('set', 'a', 1)", &[], &[]),
    ("#!lua flags=no-writes\nreturn redis.call('get', 'nokey')", &[], &[]),
    ("#!lua flags=bogus\nreturn 1", &[], &[]),
    ("#!lua name=x\nreturn 1", &[], &[]),
    ("#!lua\nreturn 2", &[], &[]),
    // RESP3 through setresp
    ("redis.setresp(3) return redis.call('hgetall', KEYS[1])", &["h"], &[]),
    ("redis.setresp(3) return redis.call('get', KEYS[1])", &["nokey"], &[]),
    ("redis.setresp(3) return type(redis.call('get', KEYS[1]))", &["nokey"], &[]),
    ("redis.setresp(3) return redis.call('hgetall', KEYS[1]).map.f", &["h"], &[]),
    ("redis.setresp(3) return true", &[], &[]),
    ("redis.setresp(3) return false", &[], &[]),
    ("redis.setresp(3) return redis.call('zadd', KEYS[1], 1.5, 'm')", &["z"], &[]),
    ("redis.setresp(3) return redis.call('zscore', KEYS[1], 'm')", &["z"], &[]),
    ("redis.setresp(3) return redis.call('smembers', KEYS[1])", &["nokey"], &[]),
    // last: it empties the database
    ("local n = redis.call('dbsize') redis.call('flushdb') return {n, redis.call('dbsize')}", &[], &[]),
];

/// Whole commands around the scripts: numkeys, EVALSHA, SCRIPT, EVAL_RO, MULTI.
#[rustfmt::skip]
const LINES: &[&str] = &[
    "EVAL", "EVAL x", "EVALSHA x", "EVAL_RO x", "SCRIPT", "SCRIPT LOAD", "SCRIPT EXISTS",
    "SCRIPT NOSUCH", "SCRIPT KILL", "SCRIPT HELP",
    "EVAL return 1 -1", "EVAL return 1 3 a", "EVAL return 1 x", "EVAL return 1 99999999999999999999",
    "EVALSHA ffffffffffffffffffffffffffffffffffffffff 0", "EVALSHA abc 0", "EVALSHA_RO abc 0",
    "SCRIPT FLUSH",
    "SCRIPT LOAD return\x20'loaded'",
    "SCRIPT EXISTS 4a1a7b2c6f3a3e3e4ce42fe33a1bd5cd94f7b5f6 nope",
    "SCRIPT LOAD syntax\x20error",
    "SCRIPT FLUSH BOGUS", "SCRIPT FLUSH SYNC x", "SCRIPT FLUSH ASYNC", "SCRIPT FLUSH SYNC",
];

#[test]
fn scripts_match_redis() {
    each_differential_run("scripting", &[], &[], |redis, percore, resp3, _, label| {
        let mut d = Diff::new(redis, percore, resp3, label);
        d.line("SCRIPT FLUSH");
        for (script, keys, args) in SCRIPTS {
            d.same(&ev("EVAL", script, keys, args));
        }
        for line in LINES {
            d.line(line);
        }
        // SCRIPT LOAD, EXISTS, EVALSHA (any case), FLUSH, NOSCRIPT.
        let body = "return {KEYS[1], ARGV[1]}";
        let sha = d.same(&[
            b"SCRIPT".to_vec(),
            b"LOAD".to_vec(),
            body.as_bytes().to_vec(),
        ]);
        let sha = String::from_utf8_lossy(&sha)
            .lines()
            .nth(1)
            .expect("a bulk sha")
            .to_string();
        assert_eq!(sha.len(), 40, "{}", d.what);
        d.line(&format!("SCRIPT EXISTS {sha} {}", sha.to_uppercase()));
        d.line(&format!("EVALSHA {sha} 1 k v"));
        d.line(&format!("EVALSHA {} 1 k v", sha.to_uppercase()));
        d.line(&format!("EVALSHA_RO {sha} 1 k v"));
        d.same(&ev("EVAL", body, &["k2"], &["v2"]));
        d.line("SCRIPT FLUSH");
        d.line(&format!("EVALSHA {sha} 1 k v"));
        d.line(&format!("SCRIPT EXISTS {sha}"));
        // Shebangs with the *_RO commands and malformed ones.
        for body in [
            "#!lua\nreturn 1",
            "#!lua flags=no-writes\nreturn 1",
            "#!lua flags=\nreturn 1",
            "#!luax\nreturn 1",
            "#!\nreturn 1",
            "#!lua",
            "#!lua  flags=no-writes\nreturn 1",
        ] {
            d.same(&ev("EVAL", body, &[], &[]));
            d.same(&ev("EVAL_RO", body, &[], &[]));
        }
        // EVAL_RO: reads only.
        d.same(&ev(
            "EVAL_RO",
            "return redis.call('set', KEYS[1], 1)",
            &["s"],
            &[],
        ));
        d.same(&ev(
            "EVAL_RO",
            "return redis.call('get', KEYS[1])",
            &["s"],
            &[],
        ));
        d.same(&ev(
            "EVAL_RO",
            "return redis.pcall('del', KEYS[1])",
            &["s"],
            &[],
        ));
        // Inside MULTI: queued, run by EXEC with the other commands.
        d.line("MULTI");
        d.same(&ev(
            "EVAL",
            "return redis.call('incr', KEYS[1])",
            &["{a}"],
            &[],
        ));
        d.line("SET b 5");
        d.same(&ev(
            "EVAL",
            "return {redis.call('incr', KEYS[1]), redis.call('incr', KEYS[2])}",
            &["b", "c"],
            &[],
        ));
        d.same(&ev("EVAL", "return redis.call('nosuch')", &[], &[]));
        d.line("EXEC");
        d.line("MGET {a} b c");
        // COMMAND GETKEYS uses numkeys.
        d.line("COMMAND GETKEYS EVAL return\x201 2 k1 k2 a1");
        d.line("COMMAND GETKEYS EVALSHA_RO x 1 k1");
        d.line("COMMAND INFO eval evalsha eval_ro evalsha_ro");
        // (SCRIPT's own entry lists its subcommands in Redis's dict order, which varies.)
        d.line("COMMAND INFO script|load script|exists script|flush script|kill script|debug script|help");
        for n in ["0", "-1", "3 a", "y", "0 a b"] {
            d.line(&format!("COMMAND GETKEYS EVAL x {n}"));
        }
    });
}

/// Every reply of the table must really differ from the "no scripting" answer: a sanity
/// check that the differential test above compares script results, not unknown-command
/// errors.
#[test]
fn scripts_run_on_percore() {
    let s = Server::percore(3, &[]);
    let mut c = s.client();
    assert_eq!(c.q("SCRIPT FLUSH"), b"+OK\r\n");
    let r = c.cmd(&[b"EVAL", b"return {1, 'two', {ok='three'}}", b"0"]);
    assert_eq!(esc(&r), r"*3\r\n:1\r\n$3\r\ntwo\r\n+three\r\n");
    let info = String::from_utf8_lossy(&c.q("INFO memory")).to_string();
    assert!(info.contains("number_of_cached_scripts:1\r\n"), "{info}");
    assert!(info.contains("used_memory_scripts_eval:"), "{info}");
    let r = c.cmd(&[
        b"EVAL",
        b"return redis.call('incrby', KEYS[1], ARGV[1])",
        b"1",
        b"n",
        b"41",
    ]);
    assert_eq!(esc(&r), r":41\r\n");
}

fn int(reply: &[u8]) -> i64 {
    let s = std::str::from_utf8(reply).expect("utf8");
    s.trim_start_matches(':')
        .trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("not an integer: {s:?}"))
}

/// The integers of an MGET reply.
fn ints(reply: &[u8]) -> Vec<i64> {
    let s = std::str::from_utf8(reply).expect("utf8");
    let mut lines = s.split("\r\n");
    let head = lines.next().unwrap_or("");
    assert!(head.starts_with('*'), "not an array: {s:?}");
    let mut out = Vec::new();
    while let Some(l) = lines.next() {
        if l.starts_with('$') {
            out.push(lines.next().unwrap_or("").parse().unwrap_or(0));
        }
    }
    out
}

/// Scripts moving money between accounts on different shards (declared keys, and undeclared
/// ones), mixed with MULTI/EXEC transfers, while readers check the total with one MGET: a
/// reader never sees a debit without its credit, and nothing deadlocks.
#[test]
fn scripts_across_shards_are_isolated() {
    let s = Server::percore(3, &[]);
    let accounts: Vec<String> = (0..6).map(|i| format!("acct{i}")).collect();
    let mut c = s.client();
    for a in &accounts {
        assert_eq!(c.cmd(&[b"SET", a.as_bytes(), b"100"]), b"+OK\r\n");
    }
    let total = 100 * accounts.len() as i64;
    let transfer = "local n = tonumber(ARGV[1])\n\
        if tonumber(redis.call('get', KEYS[1])) < n then return 0 end\n\
        redis.call('decrby', KEYS[1], n)\n\
        redis.call('incrby', KEYS[2], n)\n\
        return 1";
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (port, accts, stop) = (s.port, accounts.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut c = Client::connect(port);
            let mut args: Vec<&[u8]> = vec![b"MGET"];
            args.extend(accts.iter().map(|a| a.as_bytes()));
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sum: i64 = ints(&c.cmd(&args)).iter().sum();
                assert_eq!(sum, total, "a reader saw a half-done transfer");
                reads += 1;
            }
            reads
        }));
    }
    // The same transfer naming no key: each key is locked as the script first reads it
    // (both before any write, so a lock that times out leaves nothing half done).
    let undeclared = "local from, to = ARGV[1], ARGV[2]\n\
        local n = tonumber(ARGV[3])\n\
        local have = tonumber(redis.call('get', from))\n\
        redis.call('get', to)\n\
        if have < n then return 0 end\n\
        redis.call('decrby', from, n)\n\
        redis.call('incrby', to, n)\n\
        return 1";
    let mut writers = Vec::new();
    // Writers 0-2 use scripts with declared keys, 3 the undeclared script, 4 MULTI/EXEC.
    for w in 0..5usize {
        let (port, accts) = (s.port, accounts.clone());
        writers.push(std::thread::spawn(move || {
            let mut c = Client::connect(port);
            // Undeclared keys taken out of order may wait for an ordered transaction until
            // their bound (1 s): fewer of those.
            let rounds = if w == 3 { 40 } else { 300 };
            let mut timeouts = 0usize;
            for i in 0..rounds {
                let from = &accts[(i + w) % accts.len()];
                let to = &accts[(i * 7 + w * 3 + 1) % accts.len()];
                if from == to {
                    continue;
                }
                let (f, t) = (from.as_bytes(), to.as_bytes());
                match w {
                    3 => {
                        let r = c.cmd(&[b"EVAL", undeclared.as_bytes(), b"0", f, t, b"3"]);
                        let ok = r == b":1\r\n"
                            || r == b":0\r\n"
                            || esc(&r).contains("declare every key");
                        assert!(ok, "undeclared transfer: {}", esc(&r));
                        timeouts += (r[0] == b'-') as usize;
                    }
                    4 => {
                        assert_eq!(c.cmd(&[b"MULTI"]), b"+OK\r\n");
                        assert_eq!(c.cmd(&[b"DECRBY", f, b"3"]), b"+QUEUED\r\n");
                        assert_eq!(c.cmd(&[b"INCRBY", t, b"3"]), b"+QUEUED\r\n");
                        let r = c.cmd(&[b"EXEC"]);
                        assert!(r.starts_with(b"*2\r\n:"), "EXEC: {}", esc(&r));
                    }
                    _ => {
                        let r = c.cmd(&[b"EVAL", transfer.as_bytes(), b"2", f, t, b"3"]);
                        assert!(r == b":1\r\n" || r == b":0\r\n", "transfer: {}", esc(&r));
                    }
                }
            }
            timeouts
        }));
    }
    let timeouts: usize = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    eprintln!("undeclared-key scripts that timed out waiting for a lock: {timeouts} of 40");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: i32 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(reads > 0);
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(accounts.iter().map(|a| a.as_bytes()));
    assert_eq!(ints(&c.cmd(&args)).iter().sum::<i64>(), total);
}

/// A script may touch keys it did not declare, on any shard (Redis allows it outside
/// cluster mode): they are locked as it calls.
#[test]
fn undeclared_keys_on_other_shards_work() {
    let s = Server::percore(3, &[]);
    let mut c = s.client();
    let script = b"local t = 0 for i = 1, 20 do t = t + redis.call('incr', 'u' .. i) end return t";
    for round in 1..=3i64 {
        let r = c.cmd(&[b"EVAL", script, b"0"]);
        assert_eq!(int(&r), 20 * round, "{}", esc(&r));
    }
    let r = c.cmd(&[b"EVAL", b"return redis.call('dbsize')", b"0"]);
    assert_eq!(int(&r), 20);
    // Declared and undeclared together, from several connections at once.
    let mut ts = Vec::new();
    for _ in 0..3 {
        let port = s.port;
        ts.push(std::thread::spawn(move || {
            let mut c = Client::connect(port);
            for _ in 0..100 {
                let r = c.cmd(&[
                    b"EVAL",
                    b"redis.call('incr', KEYS[1]) return redis.call('incr', 'other')",
                    b"1",
                    b"decl",
                ]);
                assert_eq!(r[0], b':', "{}", esc(&r));
            }
        }));
    }
    for t in ts {
        t.join().expect("client");
    }
    assert_eq!(c.q("GET other"), b"$3\r\n300\r\n");
    assert_eq!(c.q("GET decl"), b"$3\r\n300\r\n");
    // pcall around calls that leave the core.
    let r = c.cmd(&[b"EVAL", b"local t = {} for i = 1, 20 do local ok, v = pcall(redis.call, 'get', 'u' .. i) t[i] = ok and tonumber(v) or -1 end return t", b"0"]);
    assert_eq!(
        r,
        [b"*20\r\n".to_vec(), b":3\r\n".repeat(20)].concat(),
        "{}",
        esc(&r)
    );
    let r = c.cmd(&[b"EVAL", b"local ok, e = pcall(redis.call, 'hget', 'u1', 'f') local ok2, v = pcall(redis.call, 'incr', 'u2') return {tostring(ok), e, tostring(ok2), v}", b"0"]);
    assert_eq!(
        esc(&r),
        r"*4\r\n$5\r\nfalse\r\n$65\r\nWRONGTYPE Operation against a key holding the wrong kind of value\r\n$4\r\ntrue\r\n:4\r\n"
    );
    // SELECT inside a script does not change the caller's database.
    let r = c.cmd(&[
        b"EVAL",
        b"redis.call('select', 1) return redis.call('set', 'indb1', 'x')",
        b"0",
    ]);
    assert_eq!(r, b"+OK\r\n");
    assert_eq!(c.q("EXISTS indb1"), b":0\r\n");
}

/// An endless loop makes the core busy until SCRIPT KILL (script_busy.rs has the rest),
/// and the server goes on; an allocation past the Lua heap limit fails the script, not the
/// server.
#[test]
fn runaway_scripts_do_not_take_the_server_down() {
    let s = Server::percore(1, &[]);
    let mut c = s.client();
    assert_eq!(c.q("CONFIG SET lua-time-limit 100"), b"+OK\r\n");
    assert_eq!(
        c.q("CONFIG GET busy-reply-threshold"),
        b"*2\r\n$20\r\nbusy-reply-threshold\r\n$3\r\n100\r\n"
    );
    c.send(&[b"EVAL", b"while true do end", b"0"]);
    let mut other = s.client();
    let t0 = Instant::now();
    while !other.q("PING").starts_with(b"-BUSY") {
        assert!(t0.elapsed() < Duration::from_secs(30), "never busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(other.q("SCRIPT KILL"), b"+OK\r\n");
    let r = c.read_reply();
    assert!(r.starts_with(b"-ERR Script killed"), "{}", esc(&r));
    assert_eq!(c.q("PING"), b"+PONG\r\n");
    let r = c.cmd(&[
        b"EVAL",
        b"return string.rep(string.rep('x', 1048576), 2048)",
        b"0",
    ]);
    assert!(
        r.starts_with(b"-ERR") && esc(&r).contains("not enough memory"),
        "{}",
        esc(&r)
    );
    let r = c.cmd(&[b"EVAL", b"local t = {} t[1] = t return t", b"0"]);
    assert!(
        r.starts_with(b"-ERR reached lua stack limit") || r.starts_with(b"*1\r\n"),
        "{}",
        esc(&r)
    );
    assert_eq!(c.q("PING"), b"+PONG\r\n");
    assert_eq!(c.cmd(&[b"EVAL", b"return 7", b"0"]), b":7\r\n");
    let _ = words("");
}

/// Shebang flags and function flags over maxmemory (`allow-oom`, `no-writes`, the
/// no-shebang compatibility mode, a script that wrote), with Redis's replies.
const OOM_CASES: &[(&str, &[&str])] = &[
    ("#!lua\nreturn 1", &[]),
    (
        "#!lua flags=allow-oom\nreturn redis.call('set', KEYS[1], '1')",
        &["{o}x"],
    ),
    (
        "#!lua flags=allow-oom\nlocal r = redis.call('set', KEYS[1], '1') return r",
        &["{o}x"],
    ),
    ("#!lua flags=no-writes\nreturn 1", &[]),
    ("#!lua flags=allow-stale\nreturn 1", &[]),
    (
        "#!lua flags=no-writes\nlocal r = redis.call('get', KEYS[1]) return r",
        &["{o}x"],
    ),
    ("return 1", &[]),
    (
        "local r = redis.call('set', KEYS[1], '1') return r",
        &["{o}x"],
    ),
    ("local r = redis.call('get', KEYS[1]) return r", &["{o}x"]),
    (
        "local r = redis.pcall('set', KEYS[1], '1') return r",
        &["{o}x"],
    ),
];

#[test]
fn script_flags_over_maxmemory_match_redis() {
    each_differential_run(
        "script flags over maxmemory",
        &[],
        &[],
        |redis, percore, resp3, _, label| {
            let mut d = Diff::new(redis, percore, resp3, label.clone());
            d.same(&words("SET {o}big x"));
            let lib = "#!lua name=oomlib\n\
            redis.register_function('f_plain', function() return 1 end)\n\
            redis.register_function{function_name='f_oom', callback=function(keys) return redis.call('set', keys[1], '2') end, flags={'allow-oom'}}\n\
            redis.register_function{function_name='f_ro', callback=function() return 3 end, flags={'no-writes'}}\n";
            load_library(&mut d, lib);
            d.same(&words("CONFIG SET maxmemory 1"));
            for (script, keys) in OOM_CASES {
                d.same(&ev("EVAL", script, keys, &[]));
            }
            d.same(&ev("EVAL_RO", "#!lua\nreturn 1", &[], &[]));
            d.same(&ev("EVAL_RO", "#!lua flags=no-writes\nreturn 1", &[], &[]));
            d.same(&words("FCALL f_plain 0"));
            d.same(&words("FCALL f_oom 1 {o}y"));
            d.same(&words("FCALL f_ro 0"));
            d.same(&words("FCALL_RO f_plain 0"));
            d.same(&words("CONFIG SET maxmemory 0"));
            d.same(&words("MGET {o}x {o}y"));
            d.same(&words("FUNCTION DELETE oomlib"));
            d.same(&words("DEL {o}x {o}y {o}big"));
        },
    );
}

/// FUNCTION LOAD REPLACE of `lib` on both servers (same replies).
fn load_library(d: &mut Diff, lib: &str) {
    let args = ["FUNCTION", "LOAD", "REPLACE", lib].map(|a| a.as_bytes().to_vec());
    d.same(&args);
}

/// Cluster mode: `no-cluster`, one slot per script unless `allow-cross-slot-keys` (or no
/// shebang), a cross-slot call refused; percore with 1 and 3 shards against Redis.
#[test]
fn script_flags_in_cluster_mode_match_redis() {
    let dir = TempDir::new("script-flags-cluster");
    let Some(redis) = common::redis_cluster(&dir, "script flags in cluster mode") else {
        return;
    };
    let cases: &[(&str, &[&str])] = &[
        ("#!lua flags=no-cluster\nreturn 1", &[]),
        ("#!lua\nlocal r = redis.call('get', 'a')\nr = redis.call('get', 'b') return r", &[]),
        ("local r = redis.call('get', 'a')\nr = redis.call('get', 'b') return r", &[]),
        ("#!lua\nlocal r = redis.call('get', 'b') return r", &["a"]),
        ("#!lua\nlocal r = redis.call('get', '{a}x') return r", &["a"]),
        ("#!lua flags=allow-cross-slot-keys\nredis.call('get', 'a')\nlocal r = redis.call('get', 'b') return r", &["a"]),
        ("#!lua\nlocal r = redis.call('mget', 'a', 'b') return r", &[]),
        ("local r = redis.call('mget', 'a', 'b') return r", &[]),
        ("#!lua\nlocal r = redis.call('ping') r = redis.call('get', 'b') return r", &["b"]),
    ];
    for shards in [1, 3] {
        let pdir = TempDir::new("script-flags-cluster-p");
        let bus = free_port().to_string();
        let percore = Server::percore(
            shards,
            &[
                "--cluster-enabled",
                "yes",
                "--dir",
                pdir.path(),
                "--cluster-port",
                &bus,
            ],
        );
        common::own_all_slots(&percore);
        for resp3 in [false, true] {
            let label = format!(
                "cluster mode, percore {shards} shard(s), RESP{}",
                2 + resp3 as u8
            );
            let mut d = Diff::new(&redis, &percore, resp3, label);
            for (script, keys) in cases {
                d.same(&ev("EVAL", script, keys, &[]));
            }
            let lib = "#!lua name=cl\nredis.register_function{function_name='cl_nc', callback=function() return 1 end, flags={'no-cluster'}}\n";
            load_library(&mut d, lib);
            d.same(&words("FCALL cl_nc 0"));
            d.same(&words("FUNCTION DELETE cl"));
        }
    }
}
