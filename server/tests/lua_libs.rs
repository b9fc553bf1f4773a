//! The Lua libraries Redis gives scripts beyond `redis`, `bit` and `cjson`: `cmsgpack` and
//! `struct`, differential against a real `redis-server` 7.0 (byte-for-byte replies, RESP2 and RESP3,
//! percore with 1 and 3 shards), from EVAL and from a function.

mod common;

use common::{each_differential_run, Diff};

/// Scripts whose replies must be Redis's. `B(...)` builds a string from byte values.
const SCRIPTS: &[&str] = &[
    // Encoding: every integer width, floats, strings of each length class, tables.
    "return cmsgpack.pack(1, -1, 127, 128, -32, -33, 200, -200, 70000, -70000, 2^40, -2^40)",
    "return cmsgpack.pack(0.5, 0.1, 1/0, -1/0, 2^63, -2^63, 3.25)",
    "return cmsgpack.pack('ab', string.rep('x', 31), string.rep('x', 40), string.rep('y', 300), string.rep('z', 70000))",
    "return cmsgpack.pack(true, false, nil, {}, {1, 2, 3}, {a = 1}, {[1] = 1, [3] = 3}, {1, nil, 3})",
    "local t = {} for i = 1, 20 do t[i] = i end return cmsgpack.pack(t)",
    "local t = {} for i = 1, 70000 do t[i] = i % 3 end return #cmsgpack.pack(t)",
    "local t = {} t[1] = t return cmsgpack.pack(t)",
    "return cmsgpack.pack(print == nil, redis.call)",
    // Decoding, and the offsets of unpack_one and unpack_limit.
    "return {cmsgpack.unpack(cmsgpack.pack(1, 'two', {3, {4}}, true, {k = 'v'}))}",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 2)}",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 1.9)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2, 1)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 0)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), '1', '2')}",
    "return {cmsgpack.unpack('')}",
    "return cmsgpack.unpack(cmsgpack.pack(3.25)) * 4",
    "return {cmsgpack.unpack(B(0xcf, 255, 255, 255, 255, 255, 255, 255, 255))}",
    "return {cmsgpack.unpack(B(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0)) == -2^63}",
    "return {cmsgpack.unpack(B(0xca, 0x3f, 0x80, 0, 0, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0))}",
    "return {cmsgpack.unpack(B(0x92, 1, 2, 0x81, 0xa1, 0x6b, 0xc3, 0xdc, 0, 1, 7, 0xde, 0, 1, 1, 2))}",
    "return {cmsgpack.unpack(B(0xd9, 2, 0x68, 0x69, 0xda, 0, 1, 0x21, 0xdb, 0, 0, 0, 1, 0x3f))}",
    "return cmsgpack._NAME .. ' ' .. cmsgpack._VERSION .. ' ' .. cmsgpack._COPYRIGHT .. ' ' .. cmsgpack._DESCRIPTION",
    // Errors, with lua-cmsgpack's texts and the script's line.
    "return cmsgpack.pack()",
    "return cmsgpack.unpack()",
    "return cmsgpack.unpack({})",
    "return cmsgpack.unpack(nil)",
    "return cmsgpack.unpack(B(0xc1))",
    "return cmsgpack.unpack(B(0xcd, 1))",
    "return cmsgpack.unpack(B(0x93, 1))",
    "return cmsgpack.unpack(B(0x81, 0xc0, 1))",
    "return cmsgpack.unpack_one(B(1), -1)",
    "return cmsgpack.unpack_one(B(1), 5)",
    "return cmsgpack.unpack_one(B(1), 'x')",
    "return cmsgpack.unpack_limit(B(1))",
    "return cmsgpack.unpack_limit(B(1), 1, 'z')",
    "local x = 1\nreturn cmsgpack.unpack(B(0xc1)), x",
];

/// `struct` scripts whose replies must be Redis's.
const STRUCT_SCRIPTS: &[&str] = &[
    "return struct.pack('>i4<i4bBhHlLT', 1, 2, -1, 255, -2, 65535, -3, 2^40, 7)",
    "return struct.pack('!4 b i d f', 1, 2, 0.5, 0.25)",
    "return struct.pack('s c3 c0 x', 'ab', 'xyz', 'whole')",
    "return struct.pack('i17', -1)",
    "return struct.pack('>I3 <i2 b', 70000, -300, '7')",
    "return {struct.unpack('>i4<i4bBhH', struct.pack('>i4<i4bBhH', 1, 2, -1, 255, -2, 65535))}",
    "return {struct.unpack('d f', struct.pack('d f', 0.5, 0.25))}",
    "return {struct.unpack('s c3', struct.pack('s c3', 'ab', 'xyz'))}",
    "return {struct.unpack('b c0', struct.pack('b', 3) .. 'abcdef')}",
    "return {struct.unpack('c2 c0', '12abcdefghijklm')}",
    "return {struct.unpack('b', 'ab', 2)}",
    "return {struct.unpack('i17', string.rep(string.char(255), 17))}",
    "return {struct.unpack('!8 b d', struct.pack('!8 b d', 1, 2))}",
    "return {struct.unpack('<l>L', struct.pack('<l>L', -5, 2^50))}",
    "return struct.size('!8 b d i h')",
    "return struct.size('c9 z')",
    // Errors, with lua-struct's texts.
    "return struct.pack('i40', 1)",
    "return struct.pack('!3i', 1)",
    "return struct.pack('z', 1)",
    "return struct.pack('i')",
    "return struct.pack('ii', 1)",
    "return struct.pack('i', {})",
    "return struct.pack('c5', 'ab')",
    "return struct.pack('sc2', 'a')",
    "return struct.pack()",
    "return struct.pack('i99999999999', 1)",
    "return {struct.unpack('c0', 'abc')}",
    "return {struct.unpack('i', 'ab')}",
    "return {struct.unpack('s', 'ab')}",
    "return {struct.unpack('b', 'ab', 0)}",
    "return {struct.unpack('b', 'ab', 'x')}",
    "return {struct.unpack('b')}",
    "return struct.size('s')",
    "return struct.size('c0')",
    "return struct.size()",
];

#[test]
fn struct_matches_redis() {
    each_differential_run("struct", &[], &[], |redis, percore, resp3, _, label| {
        let mut d = Diff::new(redis, percore, resp3, label);
        for body in STRUCT_SCRIPTS {
            d.same(&[b"EVAL".to_vec(), body.as_bytes().to_vec(), b"0".to_vec()]);
        }
    });
}

#[test]
fn cmsgpack_matches_redis() {
    each_differential_run("cmsgpack", &[], &[], |redis, percore, resp3, _, label| {
        let mut d = Diff::new(redis, percore, resp3, label);
        for body in SCRIPTS {
            // One line: a failing tail call names the one line there is (see scripting).
            let script = format!("local B = string.char {body}");
            d.same(&[b"EVAL".to_vec(), script.into_bytes(), b"0".to_vec()]);
        }
        // From a function too.
        d.line("FUNCTION FLUSH");
        let lib = "#!lua name=mp\nredis.register_function('mp', function(keys, args) return {cmsgpack.unpack(cmsgpack.pack(args[1], {args[2]}))} end)";
        d.same(&[
            b"FUNCTION".to_vec(),
            b"LOAD".to_vec(),
            lib.as_bytes().to_vec(),
        ]);
        d.line("FCALL mp 0 a b");
        d.line("FUNCTION FLUSH");
    });
}

#[test]
fn hostile_msgpack_and_struct_input_fails_the_script_not_the_server() {
    let percore = common::Server::percore(1, &[]);
    let mut c = percore.client();
    for body in [
        "return cmsgpack.unpack(string.rep(string.char(0x91), 100000))",
        "return cmsgpack.unpack(string.rep(string.char(0xdd, 255, 255, 255, 255), 1000))",
        "return cmsgpack.unpack(string.char(0xdb, 255, 255, 255, 255))",
        // Many values at once: Lua cannot return them all (Redis fails too).
        "return cmsgpack.unpack(string.rep(string.char(0xa1, 0x61, 0x90), 100000))",
        "return struct.unpack(string.rep('c1', 100000), string.rep('a', 100000))",
        "return struct.pack('c999999999', 'ab')",
    ] {
        let r = c.cmd(&[b"EVAL", body.as_bytes(), b"0"]);
        assert_eq!(r[0], b'-', "{body}: {}", common::esc(&r));
    }
    assert_eq!(c.q("PING"), b"+PONG\r\n");
}
