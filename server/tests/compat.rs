//! Compatibility checks of single behaviours against a real `redis-server` 7.0: the same
//! requests go to both servers and the replies (or the observable effect) must agree.
//! Where percore's answer legitimately differs (SCAN cursors across shards, key order),
//! only what Redis promises is compared. Skipped with a loud message when redis-server is
//! absent; PERCORE_REQUIRE_REDIS=1 turns the skip into a failure, as in `differential.rs`.

mod common;

use common::{redis_or_skip, s, Client, Server};
use percore_proto::encode::{split_array_reply, split_bulks};
use std::io::ErrorKind;
use std::time::{Duration, Instant};

/// Sends `input` on a fresh connection and returns the error reply, checking that the
/// server then closes the connection (as Redis does after a protocol error).
fn protocol_error(srv: &Server, input: &[u8], who: &str) -> String {
    let mut c = srv.client();
    c.send_raw(input);
    let r = s(&c.read_reply());
    assert!(c.closed(), "{who} keeps the connection after {r:?}");
    r
}

/// True when nothing arrives on `c` within `wait`: the server is waiting for the rest of
/// a frame rather than refusing it.
fn still_waiting(c: &mut Client, wait: Duration) -> bool {
    use std::io::Read;
    c.stream.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 256];
    let waiting = match c.stream.read(&mut b) {
        Ok(n) => {
            eprintln!("answered: {:?}", s(&b[..n]));
            false
        }
        Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    c.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    waiting
}

/// A command with `n` arguments after the name, each the key `k`.
fn many_args(name: &[u8], n: usize) -> Vec<u8> {
    let mut b = format!("*{}\r\n", n + 1).into_bytes();
    b.extend_from_slice(format!("${}\r\n", name.len()).as_bytes());
    b.extend_from_slice(name);
    b.extend_from_slice(b"\r\n");
    for _ in 0..n {
        b.extend_from_slice(b"$1\r\nk\r\n");
    }
    b
}

/// Redis 7.0 refuses a multibulk count only above INT_MAX for authenticated clients.
#[test]
fn multibulk_counts_up_to_int_max_are_accepted() {
    let Some(redis) = redis_or_skip("compat tests did not run") else {
        return;
    };
    for shards in [1, 4] {
        let percore = Server::percore(shards, &[]);
        let want = protocol_error(&redis, b"*2147483648\r\n", "redis");
        assert_eq!(want, "-ERR Protocol error: invalid multibulk length\r\n");
        assert_eq!(
            protocol_error(&percore, b"*2147483648\r\n", "percore"),
            want
        );
        // More than 1024*1024 arguments: one real command, its count line sent first.
        let req = many_args(b"EXISTS", 1024 * 1024 + 10);
        let eol = req.iter().position(|&c| c == b'\n').unwrap() + 1;
        for (srv, who) in [(&redis, "redis"), (&percore, "percore")] {
            let mut c = srv.client();
            c.send_raw(&req[..eol]);
            assert!(
                still_waiting(&mut c, Duration::from_millis(200)),
                "{who} ({shards} shards) refused a count of {}",
                s(&req[1..eol - 2])
            );
            c.send_raw(&req[eol..]);
            assert_eq!(c.read_reply(), b":0\r\n", "{who} ({shards} shards)");
        }
        // A declared INT_MAX count with nothing after it: both wait for the arguments.
        for (srv, who) in [(&redis, "redis"), (&percore, "percore")] {
            let mut c = srv.client();
            c.send_raw(b"*2147483647\r\n$4\r\nPING\r\n");
            assert!(
                still_waiting(&mut c, Duration::from_millis(300)),
                "{who} answered a declared count of INT_MAX"
            );
        }
        let mut pc = percore.client();
        assert_eq!(pc.q("PING"), b"+PONG\r\n");
    }
}

/// Before AUTH (only when a password is required) counts above 10 and bulks above 16384
/// bytes have errors of their own; the checks that apply to everyone come first.
#[test]
fn unauthenticated_limits_match_redis() {
    let Some(redis) = redis_or_skip("compat tests did not run") else {
        return;
    };
    assert_eq!(redis.client().q("CONFIG SET requirepass pw"), b"+OK\r\n");
    let percore = Server::percore(2, &["--requirepass", "pw"]);
    let cases: &[&[u8]] = &[
        b"*11\r\n",
        b"*2147483648\r\n",
        b"*1\r\n$16385\r\n",
        b"*1\r\n$536870913\r\n",
        b"*11\r\n$4\r\nAUTH\r\n",
    ];
    for input in cases {
        let want = protocol_error(&redis, input, "redis");
        assert_eq!(
            protocol_error(&percore, input, "percore"),
            want,
            "input {:?}",
            s(input)
        );
    }
    // Once authenticated, the limits are lifted.
    for srv in [&redis, &percore] {
        let mut c = srv.client();
        assert_eq!(c.q("AUTH pw"), b"+OK\r\n");
        c.send_raw(&many_args(b"EXISTS", 20));
        assert_eq!(c.read_reply(), b":0\r\n");
        let big = vec![b'v'; 20_000];
        assert_eq!(c.cmd(&[b"SET", b"big", &big]), b"+OK\r\n");
    }
}

/// The payload of a bulk string reply (`$3\r\nabc\r\n` → `abc`).
fn bulk_text(b: &[u8]) -> Vec<u8> {
    let eol = b.iter().position(|&c| c == b'\r').expect("a bulk header");
    b[eol + 2..b.len() - 2].to_vec()
}

/// `(cursor, keys)` of a SCAN reply, or None for an error reply.
fn scan_parts(reply: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    if reply.starts_with(b"-") {
        return None;
    }
    let (n, body) = split_array_reply(reply).expect("SCAN replies with an array");
    assert_eq!(n, 2);
    let mut cursor = Vec::new();
    split_bulks(body, 1, &mut cursor).expect("a bulk cursor");
    let (k, keys_body) = split_array_reply(&body[cursor[0].len()..]).expect("an array of keys");
    let mut keys = Vec::new();
    split_bulks(keys_body, k, &mut keys).expect("bulk keys");
    Some((
        bulk_text(cursor[0]),
        keys.iter().map(|k| bulk_text(k)).collect(),
    ))
}

/// Redis 7.0 reads the cursor with `strtoul`: signs, wrapping negatives, an empty cursor and
/// bytes after a NUL are accepted; spaces, overflow and non-numbers are `invalid cursor`.
#[test]
fn scan_cursors_are_parsed_as_strtoul() {
    let Some(redis) = redis_or_skip("compat tests did not run") else {
        return;
    };
    let cursors: &[&[u8]] = &[
        b"0",
        b"-1",
        b"-2",
        b"-0",
        b"+0",
        b"+5",
        b"",
        b"007",
        b"18446744073709551615",
        b"-18446744073709551615",
        b"-9223372036854775808",
        b"0\0x",
        b"18446744073709551616",
        b"-18446744073709551616",
        b"99999999999999999999999",
        b" 1",
        b"1 ",
        b"-",
        b"+",
        b"0x10",
        b"abc",
    ];
    let mut rc = redis.client();
    for shards in [1, 4] {
        let percore = Server::percore(shards, &[]);
        let mut pc = percore.client();
        for populated in [false, true] {
            if populated {
                for c in [&mut rc, &mut pc] {
                    assert_eq!(c.q("SET a 1"), b"+OK\r\n");
                    assert_eq!(c.q("SET b 2"), b"+OK\r\n");
                }
            }
            for cur in cursors {
                let want = rc.cmd(&[b"SCAN", cur]);
                let got = pc.cmd(&[b"SCAN", cur]);
                let what = format!(
                    "SCAN {:?} ({shards} shards, populated: {populated}): redis {:?}, percore {:?}",
                    s(cur),
                    s(&want),
                    s(&got)
                );
                match (scan_parts(&want), scan_parts(&got)) {
                    (None, None) => assert_eq!(got, want, "{what}"),
                    (Some((wc, _)), Some((gc, keys))) => {
                        // One shard walks its table as Redis does: an empty database ends
                        // every walk, and the all-ones cursor ends after its last bucket.
                        if shards == 1 && (!populated || *cur == b"-1") {
                            assert_eq!(gc, wc, "{what}");
                        }
                        assert!(keys.iter().all(|k| k == b"a" || k == b"b"), "{what}");
                    }
                    _ => panic!("one server refused the cursor: {what}"),
                }
            }
        }
        assert_eq!(rc.q("FLUSHALL"), b"+OK\r\n");
    }
}

/// `used_memory` from INFO memory.
fn used_memory(c: &mut Client) -> i64 {
    let info = s(&c.q("INFO memory"));
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .expect("used_memory in INFO memory")
        .trim()
        .parse()
        .unwrap()
}

/// APPEND of one byte to a 64 MB string: Redis's sds grows by at most 1 MB past 1 MB
/// (`sdsMakeRoomFor`), so memory does not double; percore's must not either.
#[test]
fn append_to_a_large_string_does_not_double_it() {
    let Some(redis) = redis_or_skip("compat tests did not run") else {
        return;
    };
    let percore = Server::percore(1, &[]);
    let big = vec![b'x'; 64 << 20];
    for (srv, who) in [(&redis, "redis"), (&percore, "percore")] {
        let mut c = srv.client();
        assert_eq!(c.cmd(&[b"SET", b"big", &big]), b"+OK\r\n");
        let before = used_memory(&mut c);
        assert_eq!(
            c.q("APPEND big y"),
            format!(":{}\r\n", (64 << 20) + 1).as_bytes()
        );
        let grown = used_memory(&mut c) - before;
        assert!(
            grown < 4 << 20,
            "{who}: APPEND of 1 byte to a 64 MB string took {grown} more bytes"
        );
    }
}

/// The `db0:` line of INFO keyspace.
fn db0(c: &mut Client) -> String {
    let info = s(&c.q("INFO keyspace"));
    info.lines()
        .find(|l| l.starts_with("db0:"))
        .unwrap_or("")
        .to_string()
}

fn avg_ttl(line: &str) -> u64 {
    line.rsplit("avg_ttl=")
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no avg_ttl in {line:?}"))
}

/// Polls `c`'s db0 line until `done` holds; panics with the last line after 10 s.
fn wait_db0(c: &mut Client, who: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = db0(c);
        if done(&line) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "{who}: {what} did not happen; INFO keyspace still says {line:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Redis resets a database's avg_ttl once its expiry cycle finds no volatile key, whether
/// the keys expired, were deleted or were persisted.
#[test]
fn avg_ttl_is_zero_once_no_key_is_volatile() {
    let Some(redis) = redis_or_skip("compat tests did not run") else {
        return;
    };
    let percore = Server::percore(2, &[]);
    for (srv, who) in [(&redis, "redis"), (&percore, "percore")] {
        let mut c = srv.client();
        assert_eq!(c.q("SET plain 1"), b"+OK\r\n");
        // Deleted and persisted.
        for k in ["v1", "v2", "v3", "v4"] {
            assert_eq!(
                c.cmd(&[b"SET", k.as_bytes(), b"1", b"EX", b"1000"]),
                b"+OK\r\n"
            );
        }
        wait_db0(&mut c, who, "an avg_ttl", |l| avg_ttl(l) > 0);
        assert_eq!(c.q("DEL v1 v2 v3"), b":3\r\n");
        assert_eq!(c.q("PERSIST v4"), b":1\r\n");
        let line = wait_db0(&mut c, who, "avg_ttl reset after DEL/PERSIST", |l| {
            avg_ttl(l) == 0
        });
        assert_eq!(line, "db0:keys=2,expires=0,avg_ttl=0", "{who}");
        // Expired.
        for k in ["e1", "e2", "e3"] {
            assert_eq!(
                c.cmd(&[b"SET", k.as_bytes(), b"1", b"PX", b"1500"]),
                b"+OK\r\n"
            );
        }
        wait_db0(&mut c, who, "an avg_ttl", |l| avg_ttl(l) > 0);
        let line = wait_db0(&mut c, who, "expiry of every volatile key", |l| {
            l.contains("expires=0")
        });
        assert_eq!(line, "db0:keys=2,expires=0,avg_ttl=0", "{who}");
    }
}

/// The commands whose keys follow a count (SINTERCARD, LMPOP, BLMPOP, ZUNION, ZMPOP, …): COMMAND GETKEYS and
/// COMMAND INFO's keynum key spec answer as Redis's, byte for byte in RESP2 and RESP3; so do
/// the bitmap commands, whose key specs Redis spells out (BITOP's two, BITFIELD's notes).
#[test]
fn keynum_commands_introspect_as_redis() {
    let Some(redis) = redis_or_skip("COMMAND GETKEYS/INFO of keynum commands") else {
        return;
    };
    let percore = Server::percore(1, &[]);
    let (mut r, mut p) = (redis.client(), percore.client());
    for hello in ["HELLO 2", "HELLO 3"] {
        r.q(hello);
        p.q(hello);
        for line in [
            "COMMAND GETKEYS LMPOP 2 a b LEFT",
            "COMMAND GETKEYS LMPOP 3 a b LEFT",
            "COMMAND GETKEYS LMPOP 0 a LEFT",
            "COMMAND GETKEYS LMPOP x a LEFT",
            "COMMAND GETKEYS LMPOP 5 a LEFT",
            "COMMAND GETKEYS BLMPOP 0 1 a LEFT",
            "COMMAND GETKEYS SINTERCARD 2 a b LIMIT 1",
            "COMMAND GETKEYS BLPOP a b 0",
            "COMMAND GETKEYS BLMOVE a b LEFT RIGHT 0",
            "COMMAND INFO lmpop blmpop sintercard",
            "COMMAND GETKEYS ZUNIONSTORE d 2 a b WEIGHTS 1 2",
            "COMMAND GETKEYS ZDIFFSTORE d 3 a b",
            "COMMAND GETKEYS ZUNION 2 a b WITHSCORES",
            "COMMAND GETKEYS ZINTERCARD 1 a LIMIT 1",
            "COMMAND GETKEYS ZMPOP 2 a b MIN",
            "COMMAND GETKEYS BZMPOP 0 1 a MAX COUNT 2",
            "COMMAND GETKEYS BZPOPMIN a b 0",
            "COMMAND GETKEYS ZRANGESTORE d s 0 -1",
            "COMMAND INFO zmpop bzmpop zunion zinter zdiff zintercard zadd zscore zrange",
            "COMMAND INFO setbit getbit bitcount bitpos bitop bitfield bitfield_ro",
            "COMMAND GETKEYS BITOP AND d a b c",
            "COMMAND GETKEYS BITFIELD k GET u8 0",
            "COMMAND GETKEYS SETBIT k 7 1",
        ] {
            assert_eq!(s(&p.q(line)), s(&r.q(line)), "{hello}: {line}");
        }
    }
}
