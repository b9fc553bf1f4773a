//! Functions (FUNCTION LOAD/DELETE/FLUSH/LIST/DUMP/RESTORE/STATS/KILL/HELP, FCALL,
//! FCALL_RO): differential tests against a real `redis-server` 7.0 (byte-for-byte replies,
//! RESP2 and RESP3, percore with 1 and 3 shards), payloads moved between the two servers
//! both ways, libraries seen by every core, and libraries kept across a restart.

mod common;

use common::{each_differential_run, esc, Client, Diff, Server, TempDir};
use std::process::Command;

fn args(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// A library whose functions read and write keys on several shards of 3.
const LIB_KV: &str = "#!lua name=kv
redis.register_function('kv_set2', function(keys, args)
  redis.call('set', keys[1], args[1])
  redis.call('set', keys[2], args[2])
  return redis.call('mget', keys[1], keys[2])
end)
redis.register_function{function_name='kv_get', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}, description='reads a key'}
";

/// One function (Redis lists a library's functions in its hash table's order, so listings
/// compared byte for byte hold libraries of one function).
const LIB_ONE: &str = "#!lua name=one
redis.register_function('one', function(keys, args) return {keys[1], args[1]} end)
";

/// Every flag, and a description.
const LIB_FLAGS: &str = "#!lua name=flagged
redis.register_function{function_name='all_flags', callback=function() return 1 end, flags={'no-writes', 'allow-oom', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys'}, description='d'}
";

/// Functions that fail at run time, with the line of each failure.
const LIB_ERRORS: &str = "#!lua name=errs
redis.register_function('e_boom', function() error('boom') end)
redis.register_function('e_global', function() return undefined_thing end)
redis.register_function('e_unknown', function() local r = redis.call('nosuch') return r end)
redis.register_function('e_register', function() redis.register_function('x', function() end) end)
redis.register_function('e_write', function(keys) local r = redis.call('set', keys[1], 'v') return r end)
redis.register_function{function_name='e_ro_write', callback=function(keys) local r = redis.call('set', keys[1], 'v') return r end, flags={'no-writes'}}
redis.register_function('e_pcall', function() return redis.pcall('nosuch') end)
redis.register_function('e_types', function(keys, args) return {#keys, #args, keys[1], args[1], 3.7, true, false, {ok='fine'}} end)
redis.register_function('e_version', function() return {redis.REDIS_VERSION, redis.REDIS_VERSION_NUM} end)
redis.register_function('e_tail', function(keys) return redis.call('incr', keys[1]) end)
redis.register_function('e_bitarg', function() return bit.band('x') end)
redis.register_function('e_keys', function() return KEYS end)
redis.register_function('e_libs', function() return {cjson.encode({1}), bit.tohex(255), redis.sha1hex('')} end)
redis.register_function('e_resp3', function(keys) redis.setresp(3) return redis.call('hgetall', keys[1]) end)
redis.register_function('e_status', function() return redis.error_reply('MY x') end)
";

/// Library code that must be refused, each with Redis's error.
const BAD_LOADS: &[&str] = &[
    "",
    "x",
    "#!lua",
    "#!lua name=a-b\nx",
    "#!lua name=b foo=bar\nx",
    "#!lua name=b name=c\nx",
    "#!js name=b\nx",
    "#!lua name=b",
    "#!lua name=b\nreturn 1",
    "#!lua name=b\nredis.call('set', 'a', 'b')",
    "#!lua name=b\nlocal x = string.len('a')",
    "#!lua name=b\nx = 1",
    "#!lua name=b\nlocal y = x",
    "#!lua name=b\nredis.register_function('x')(",
    "#!lua name=b\nredis.register_function()",
    "#!lua name=b\nredis.register_function('f', function() end, 3)",
    "#!lua name=b\nredis.register_function('f')",
    "#!lua name=b\nredis.register_function('f', 1)",
    "#!lua name=b\nredis.register_function({}, function() end)",
    "#!lua name=b\nredis.register_function('a-b', function() end)",
    "#!lua name=b\nredis.register_function{callback=function() end}",
    "#!lua name=b\nredis.register_function{function_name='f'}",
    "#!lua name=b\nredis.register_function{function_name='f', callback=1}",
    "#!lua name=b\nredis.register_function{function_name='f', callback=function() end, foo=1}",
    "#!lua name=b\nredis.register_function{function_name='f', callback=function() end, flags=1}",
    "#!lua name=b\nredis.register_function{function_name='f', callback=function() end, flags={'bogus'}}",
    "#!lua name=b\nredis.register_function{function_name={}, callback=function() end}",
    "#!lua name=b\nredis.register_function{function_name='f', description={}, callback=function() end}",
    "#!lua name=b\nredis.register_function('f', function() end) redis.register_function('f', function() end)",
    "#!lua name=b\nredis.register_function('kv_get', function() end)",
    "#!lua name=b\nredis.setresp(3)",
    "#!lua name=b\nerror('x')",
    "#!lua name=b\nwhile true do end",
];

fn load(d: &mut Diff, code: &str) -> Vec<u8> {
    d.same(&args(&["FUNCTION", "LOAD", code]))
}

#[test]
fn function_commands_and_fcall_match_redis() {
    each_differential_run("functions", &[], &[], |redis, percore, resp3, _, what| {
        let mut d = Diff::new(redis, percore, resp3, what);
        d.line("FUNCTION FLUSH");
        // The command table: flags, key specs (movable keys after a count, as EVAL's), tips.
        d.line("COMMAND INFO fcall fcall_ro");
        d.line("COMMAND GETKEYS FCALL f 2 k1 k2 a1");
        d.line("COMMAND GETKEYS FCALL_RO f 1 k1");
        for sub in [
            "load", "delete", "flush", "list", "dump", "restore", "stats", "kill", "help",
        ] {
            d.line(&format!("COMMAND INFO function|{sub}"));
            // COMMAND DOCS: Redis's summary, since and group (percore gives no more).
            let [w, g] = d.both(&common::words(&format!("COMMAND DOCS function|{sub}")));
            let (w, g) = (common::bulks(&w), common::bulks(&g));
            assert_eq!(
                w.get(..7),
                g.get(..7),
                "{}: COMMAND DOCS function|{sub}",
                d.what
            );
        }
        d.line("FUNCTION LIST");
        d.line("FUNCTION STATS");
        d.line("FUNCTION DUMP");
        load(&mut d, LIB_ONE);
        // LIST of one library at a time: Redis orders libraries by its hash table.
        d.line("FUNCTION LIST");
        d.line("FUNCTION LIST WITHCODE");
        d.line("FUNCTION LIST LIBRARYNAME o*");
        d.line("FUNCTION LIST LIBRARYNAME nomatch WITHCODE");
        // One library: DUMP's payload is Redis's byte for byte (LZF and all).
        d.line("FUNCTION DUMP");
        d.line("FCALL one 1 k a");
        d.line("FUNCTION DELETE one");
        load(&mut d, LIB_KV);
        load(&mut d, LIB_KV);
        d.same(&args(&["FUNCTION", "LOAD", "REPLACE", LIB_KV]));
        for code in BAD_LOADS {
            load(&mut d, code);
        }
        load(&mut d, LIB_FLAGS);
        d.line("FUNCTION LIST LIBRARYNAME flagged");
        d.line("FUNCTION STATS");
        load(&mut d, LIB_ERRORS);
        for line in [
            // Keys on different shards of 3: {a}, b, c.
            "FCALL kv_set2 2 {a} b 1 2",
            "FCALL kv_set2 2 b c x y",
            "FCALL KV_GET 1 c",
            "FCALL_RO kv_get 1 b",
            "FCALL_RO kv_set2 2 {a} b 1 2",
            "FCALL_RO all_flags 0",
            "FCALL nosuch 0",
            "FCALL kv_get x",
            "FCALL kv_get 3 a",
            "FCALL kv_get -1",
            "FCALL e_boom 0",
            "FCALL e_global 0",
            "FCALL e_unknown 0",
            "FCALL e_register 0",
            "FCALL e_write 1 w",
            "FCALL e_ro_write 1 w",
            "FCALL e_pcall 0",
            "FCALL e_types 2 k1 k2 a1 a2 a3",
            "FCALL e_version 0",
            "SET s abc",
            "FCALL e_tail 1 s",
            "FCALL e_bitarg 0",
            "FCALL e_keys 0",
            "FCALL e_libs 0",
            "HSET h f v",
            "FCALL e_resp3 1 h",
            "FCALL e_status 0",
            "GET w",
            "MGET {a} b c",
            // In a transaction, and (refused) from a script.
            "MULTI",
            "FCALL kv_set2 2 {a} c 3 4",
            "FCALL_RO kv_get 1 c",
            "EXEC",
            "EVAL return\x20redis.call('fcall','kv_get',1,'c') 0",
            "FUNCTION DELETE nosuch",
            "FUNCTION DELETE KV",
            "FUNCTION DELETE kv",
            "FCALL kv_get 1 c",
            "FUNCTION DELETE errs",
            "FUNCTION LIST",
            "FUNCTION KILL",
            "FUNCTION HELP",
            "FUNCTION FLUSH bogus",
            "FUNCTION FLUSH a b",
            "FUNCTION FLUSH ASYNC",
            "FUNCTION FLUSH SYNC",
            "FUNCTION STATS",
            "FUNCTION LIST LIBRARYNAME",
            "FUNCTION LIST bogus",
            "FUNCTION LIST WITHCODE WITHCODE",
            "FUNCTION LOAD REPLACE",
            "FUNCTION LOAD bogus x",
            "FUNCTION RESTORE abc",
            "FUNCTION RESTORE abc bogus",
            "FUNCTION RESTORE a b c",
            "FUNCTION DELETE",
            "FUNCTION",
            "FUNCTION BOGUS",
            "FCALL",
            "FCALL x",
        ] {
            d.line(line);
        }
        // DUMP and RESTORE under each policy, on each server with its own payload.
        load(&mut d, LIB_ONE);
        let [dw, dg] = d.both(&args(&["FUNCTION", "DUMP"]));
        assert_eq!(dw, dg, "{}: FUNCTION DUMP", d.what);
        let payload = common::bulks(&dw).remove(0);
        let restore = |policy: &str| {
            let mut v = vec![b"FUNCTION".to_vec(), b"RESTORE".to_vec(), payload.clone()];
            if !policy.is_empty() {
                v.push(policy.as_bytes().to_vec());
            }
            v
        };
        d.same(&restore(""));
        d.same(&restore("APPEND"));
        d.same(&restore("REPLACE"));
        load(&mut d, LIB_FLAGS);
        d.same(&restore("FLUSH"));
        d.line("FUNCTION LIST");
        // A damaged payload is refused.
        let mut bad = payload.clone();
        bad[3] ^= 1;
        d.same(&[b"FUNCTION".to_vec(), b"RESTORE".to_vec(), bad]);
        // A library whose function collides with another library's.
        d.line("FUNCTION FLUSH");
        load(
            &mut d,
            "#!lua name=other\nredis.register_function('one', function() return 0 end)",
        );
        d.same(&restore("REPLACE"));
        d.same(&restore(""));
        d.line("FUNCTION LIST");
        d.line("FUNCTION FLUSH");
    });
}

/// Library listing with its code (one library), from a client.
fn listing(c: &mut Client) -> Vec<u8> {
    c.cmd(&[b"FUNCTION", b"LIST", b"WITHCODE"])
}

#[test]
fn payloads_move_between_redis_and_percore_both_ways() {
    let Some(redis) = common::redis_or_skip("payloads: did not run") else {
        return;
    };
    let percore = Server::percore(3, &[]);
    let (mut r, mut p) = (redis.client(), percore.client());
    for c in [&mut r, &mut p] {
        assert_eq!(c.q("FUNCTION FLUSH"), b"+OK\r\n");
    }
    // A long library: Redis compresses it with LZF.
    let mut long = String::from("#!lua name=big\n");
    for i in 0..60 {
        long.push_str(&format!(
            "redis.register_function('big_{i}', function(keys, args) return {{{i}, keys[1], args[1]}} end)\n"
        ));
    }
    for redis_first in [true, false] {
        let (from, to) = match redis_first {
            true => (&mut r, &mut p),
            false => (&mut p, &mut r),
        };
        let _ = to.q("FUNCTION FLUSH");
        let _ = from.q("FUNCTION FLUSH");
        let loaded = from.cmd(&[b"FUNCTION", b"LOAD", long.as_bytes()]);
        assert_eq!(esc(&loaded), r"$3\r\nbig\r\n");
        let dump = common::bulks(&from.cmd(&[b"FUNCTION", b"DUMP"])).remove(0);
        let ok = to.cmd(&[b"FUNCTION", b"RESTORE", &dump]);
        assert_eq!(esc(&ok), r"+OK\r\n");
        // Redis lists a library's functions in its hash table's order: compared as sets.
        let sorted = |c: &mut Client| {
            let l = listing(c);
            let mut b: Vec<Vec<u8>> = l.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
            b.sort();
            b
        };
        assert!(sorted(to) == sorted(from), "the restored library differs");
        let call = to.cmd(&[b"FCALL", b"big_42", b"1", b"k", b"a"]);
        assert_eq!(esc(&call), r"*3\r\n:42\r\n$1\r\nk\r\n$1\r\na\r\n");
    }
    // Both servers write the same bytes for the same library.
    let dumps = [&mut r, &mut p].map(|c| c.cmd(&[b"FUNCTION", b"DUMP"]));
    assert_eq!(esc(&dumps[0]), esc(&dumps[1]), "DUMP payloads differ");
}

#[test]
fn a_library_loaded_on_one_core_runs_on_every_core() {
    let percore = Server::percore(4, &[]);
    // Connections spread over the cores (SO_REUSEPORT): enough that every core has some.
    let mut clients: Vec<Client> = (0..24).map(|_| percore.client()).collect();
    assert_eq!(clients[0].q("FUNCTION FLUSH"), b"+OK\r\n");
    let v1 = "#!lua name=ver\nredis.register_function('ver', function() return 1 end)";
    let v2 = "#!lua name=ver\nredis.register_function('ver', function() return 2 end)";
    let r = clients[0].cmd(&[b"FUNCTION", b"LOAD", v1.as_bytes()]);
    assert_eq!(esc(&r), r"$3\r\nver\r\n");
    for c in &mut clients {
        assert_eq!(esc(&c.q("FCALL ver 0")), r":1\r\n");
    }
    // A refused load changes nothing anywhere.
    let r = clients[5].cmd(&[b"FUNCTION", b"LOAD", v2.as_bytes()]);
    assert_eq!(r, b"-ERR Library 'ver' already exists\r\n");
    let r = clients[7].cmd(&[b"FUNCTION", b"LOAD", b"REPLACE", v2.as_bytes()]);
    assert_eq!(esc(&r), r"$3\r\nver\r\n");
    for c in &mut clients {
        assert_eq!(esc(&c.q("FCALL ver 0")), r":2\r\n");
        assert_eq!(
            esc(&c.q("FCALL_RO ver 0")),
            r"-ERR Can not execute a script with write flag using *_ro command.\r\n"
        );
    }
    let info = common::s(&clients[9].q("INFO memory"));
    assert!(
        info.contains("number_of_functions:1\r\nnumber_of_libraries:1\r\n"),
        "{info}"
    );
    assert_eq!(clients[3].q("FUNCTION DELETE ver"), b"+OK\r\n");
    for c in &mut clients {
        assert_eq!(esc(&c.q("FCALL ver 0")), r"-ERR Function not found\r\n");
    }
}

#[test]
fn fcall_is_a_transaction_over_keys_on_several_shards() {
    let percore = Server::percore(3, &[]);
    let mut c = percore.client();
    assert_eq!(c.q("FUNCTION FLUSH"), b"+OK\r\n");
    let lib = "#!lua name=moves
redis.register_function('move', function(keys)
  local v = tonumber(redis.call('get', keys[1]) or '0')
  redis.call('set', keys[1], v - 1)
  redis.call('incr', keys[2])
  return v
end)
redis.register_function{function_name='sum', callback=function(keys)
  return tonumber(redis.call('get', keys[1]) or '0') + tonumber(redis.call('get', keys[2]) or '0')
end, flags={'no-writes'}}";
    c.cmd(&[b"FUNCTION", b"LOAD", lib.as_bytes()]);
    assert_eq!(c.q("SET {a} 1000"), b"+OK\r\n");
    // Writers move units from {a} to b (other shards) while a reader checks the sum.
    let port = percore.port;
    let mover = move || {
        let mut c = Client::connect(port);
        for _ in 0..100 {
            let r = c.q("FCALL move 2 {a} b");
            assert_eq!(r[0], b':', "{}", esc(&r));
        }
    };
    std::thread::scope(|s| {
        (0..3).for_each(|_| drop(s.spawn(mover)));
        let mut reader = Client::connect(port);
        for _ in 0..200 {
            assert_eq!(esc(&reader.q("FCALL_RO sum 2 {a} b")), r":1000\r\n");
        }
    });
    assert_eq!(esc(&c.q("MGET {a} b")), r"*2\r\n$3\r\n700\r\n$3\r\n300\r\n");
}

#[test]
fn libraries_survive_a_restart_and_check_snapshot_sees_them() {
    let dir = TempDir::new("functions");
    let start = || Server::percore(2, &["--dir", dir.path()]);
    let mut srv = start();
    let mut c = srv.client();
    c.cmd(&[b"FUNCTION", b"LOAD", LIB_KV.as_bytes()]);
    c.cmd(&[b"FUNCTION", b"LOAD", LIB_FLAGS.as_bytes()]);
    assert_eq!(c.q("SET b 5"), b"+OK\r\n");
    let before = listing(&mut c);
    assert_eq!(c.q("SAVE"), b"+OK\r\n");
    srv.terminate();
    let out = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["check-snapshot", dir.path()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("functions: ok, 2 libraries"), "{text}");
    let srv = start();
    let mut c = srv.client();
    assert_eq!(esc(&listing(&mut c)), esc(&before));
    assert_eq!(esc(&c.q("FCALL kv_get 1 b")), r"$1\r\n5\r\n");
    // A set saved without libraries starts with none.
    assert_eq!(c.q("FUNCTION FLUSH"), b"+OK\r\n");
    assert_eq!(c.q("SAVE"), b"+OK\r\n");
    drop(srv);
    let srv = start();
    let mut c = srv.client();
    assert_eq!(esc(&c.q("FUNCTION LIST")), r"*0\r\n");
    assert_eq!(esc(&c.q("GET b")), r"$1\r\n5\r\n");
}

#[test]
fn many_functions_and_many_scripts_fit_in_a_core_s_lua_state() {
    // More than the 8000 handles a Lua state can lend out at once: functions and cached
    // scripts must not each hold one.
    let percore = Server::percore(1, &[]);
    let mut c = percore.client();
    // 8500 functions in five libraries (each loads well within FUNCTION LOAD's 500 ms,
    // even in a debug build on a busy machine).
    for l in 0..5 {
        let mut lib = format!("#!lua name=many{l}\n");
        for i in l * 1700..(l + 1) * 1700 {
            lib.push_str(&format!(
                "redis.register_function('m{i}', function() return {i} end)\n"
            ));
        }
        let r = c.cmd(&[b"FUNCTION", b"LOAD", lib.as_bytes()]);
        assert_eq!(r, format!("$5\r\nmany{l}\r\n").as_bytes());
    }
    assert_eq!(esc(&c.q("FCALL m8499 0")), r":8499\r\n");
    assert_eq!(esc(&c.q("FCALL m0 0")), r":0\r\n");
    for i in 0..9_000 {
        let body = format!("return {i}");
        let r = c.cmd(&[b"EVAL", body.as_bytes(), b"0"]);
        assert_eq!(r, format!(":{i}\r\n").as_bytes());
    }
    assert_eq!(c.q("PING"), b"+PONG\r\n");
}

/// A DUMP payload of the libraries `codes` (uncompressed RDB strings under 16 KiB),
/// framed as Redis frames it: RDB version 10 and CRC64 (Jones, reflected), little endian.
fn payload_of(codes: &[&str]) -> Vec<u8> {
    let mut p = Vec::new();
    for code in codes {
        let n = code.len();
        assert!(n < 1 << 14);
        p.extend_from_slice(&[0xf5, 0x40 | (n >> 8) as u8, n as u8]);
        p.extend_from_slice(code.as_bytes());
    }
    p.extend_from_slice(&[10, 0]);
    let mut crc: u64 = 0;
    for &b in &p {
        crc ^= b as u64;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x95ac_9329_ac4b_c9b5
            } else {
                crc >> 1
            };
        }
    }
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

#[test]
fn restore_refuses_what_redis_refuses_and_code_that_never_ends() {
    let percore = Server::percore(2, &[]);
    let mut c = percore.client();
    let one = "#!lua name=r1\nredis.register_function('r1', function() return 1 end)";
    let ok = c.cmd(&[b"FUNCTION", b"RESTORE", &payload_of(&[one])]);
    assert_eq!(esc(&ok), r"+OK\r\n");
    assert_eq!(esc(&c.q("FCALL r1 0")), r":1\r\n");
    let cases: [(&[&str], &str); 3] = [
        (&[one], "-ERR Library r1 already exists\r\n"),
        (
            &["#!lua name=twice\nredis.register_function('t', function() end)"; 2],
            "-ERR Library 'twice' already exists\r\n",
        ),
        (
            &["#!lua name=forever\nwhile true do end"],
            "-ERR Error registering functions: ERR FUNCTION LOAD timeout\r\n",
        ),
    ];
    for (codes, want) in cases {
        let r = c.cmd(&[b"FUNCTION", b"RESTORE", &payload_of(codes)]);
        assert_eq!(String::from_utf8_lossy(&r), want);
    }
    assert_eq!(esc(&c.q("FUNCTION STATS")).matches(":1").count(), 2);
}
