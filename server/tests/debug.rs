//! DEBUG through the real server: the `enable-debug-command` gate, and the subcommands
//! Redis's tools and test suites use, compared with a real `redis-server` 7.0 where both hold
//! the same thing — PROTOCOL's bytes in RESP2 and RESP3, error texts, DIGEST and
//! DIGEST-VALUE (percore computes Redis's own digest, so the same data gives the same hex
//! whatever the shard count or the order it was written in), OBJECT's encoding and
//! serialized length (against a Redis with `rdbcompression no`), SET-ACTIVE-EXPIRE. RELOAD
//! is checked by DIGEST before and after. Skipped with a loud message when redis-server is
//! absent; PERCORE_REQUIRE_REDIS=1 (CI) turns the skip into a failure.

mod common;

use common::{redis_or_skip_with, s, Client, Server, TempDir};
use std::time::{Duration, Instant};

const NOT_ALLOWED: &str = "-ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.\r\n";

const DEBUG_ON: &[&str] = &["--enable-debug-command", "yes"];

/// A Redis that allows DEBUG and writes uncompressed RDB strings (DEBUG OBJECT's
/// serializedlength is then comparable), or None when redis-server is absent.
fn redis(what: &str) -> Option<Server> {
    redis_or_skip_with(
        what,
        &["--enable-debug-command", "yes", "--rdbcompression", "no"],
    )
}

fn percore(shards: usize, extra: &[&str]) -> Server {
    let mut args = DEBUG_ON.to_vec();
    args.extend_from_slice(extra);
    Server::percore(shards, &args)
}

/// Sends `line` (split on spaces) to both and asserts the same reply bytes; returns it.
fn same(r: &mut Client, p: &mut Client, line: &str) -> String {
    let (rr, pr) = (s(&r.q(line)), s(&p.q(line)));
    assert_eq!(pr, rr, "{line}: percore vs redis");
    pr
}

/// An address of this machine other than loopback, if it has one (the source address of a
/// route out; a UDP connect sends nothing).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn the_gate_is_redis_s() {
    let Some(rs) = redis_or_skip_with("the DEBUG gate", &[]) else {
        return;
    };
    let srv = Server::percore(2, &[]);
    let (mut r, mut p) = (rs.client(), srv.client());
    // Off by default: refused after the arity check, with Redis's text.
    assert_eq!(same(&mut r, &mut p, "DEBUG HELP"), NOT_ALLOWED);
    assert_eq!(same(&mut r, &mut p, "DEBUG SLEEP 0"), NOT_ALLOWED);
    assert_eq!(same(&mut r, &mut p, "debug nosuch"), NOT_ALLOWED);
    same(&mut r, &mut p, "DEBUG");
    // A setting read at start only, shown by CONFIG GET.
    assert_eq!(
        same(&mut r, &mut p, "CONFIG GET enable-debug-command"),
        "*2\r\n$20\r\nenable-debug-command\r\n$2\r\nno\r\n"
    );
    for v in ["yes", "local", "bogus"] {
        assert_eq!(
            same(&mut r, &mut p, &format!("CONFIG SET enable-debug-command {v}")),
            "-ERR CONFIG SET failed (possibly related to argument 'enable-debug-command') - can't set immutable config\r\n"
        );
    }
    // Refused calls count as rejected, not failed.
    let stats = s(&p.q("INFO commandstats"));
    assert!(
        stats.contains(
            "cmdstat_debug:calls=0,usec=0,usec_per_call=0.00,rejected_calls=4,failed_calls=0"
        ),
        "{stats}"
    );
    drop((r, p, rs, srv));

    // The gate comes before authentication, as in Redis.
    let Some(rs) = redis_or_skip_with("the DEBUG gate", &["--requirepass", "pw"]) else {
        return;
    };
    let srv = Server::percore(1, &["--requirepass", "pw"]);
    let (mut r, mut p) = (rs.client(), srv.client());
    assert_eq!(same(&mut r, &mut p, "DEBUG SLEEP 0"), NOT_ALLOWED);
    same(&mut r, &mut p, "GET k");
}

#[test]
fn yes_local_and_the_config_file() {
    let srv = percore(1, &[]);
    let mut c = srv.client();
    assert_eq!(s(&c.q("DEBUG SLEEP 0")), "+OK\r\n");
    assert_eq!(
        s(&c.q("CONFIG GET enable-debug-command")),
        "*2\r\n$20\r\nenable-debug-command\r\n$3\r\nyes\r\n"
    );

    // `local` from a config file (any case): loopback clients only.
    let dir = TempDir::new("conf");
    let conf = format!("{}/percore.conf", dir.path());
    std::fs::write(&conf, "enable-debug-command LOCAL\n").unwrap();
    let other = non_loopback_ip();
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let mut bind = "127.0.0.1".to_string();
    if v6 {
        bind.push_str(" ::1");
    }
    if let Some(ip) = other {
        bind.push_str(&format!(" {ip}"));
    }
    let mut args = vec![conf.as_str(), "--protected-mode", "no", "--bind"];
    args.extend(bind.split(' '));
    let srv = Server::percore(1, &args);
    let mut c = srv.client();
    assert_eq!(
        s(&c.q("CONFIG GET enable-debug-command")),
        "*2\r\n$20\r\nenable-debug-command\r\n$5\r\nlocal\r\n"
    );
    assert_eq!(s(&c.q("DEBUG SLEEP 0")), "+OK\r\n", "from 127.0.0.1");
    if v6 {
        let mut c6 = Client::connect_to((std::net::Ipv6Addr::LOCALHOST, srv.port).into());
        assert_eq!(s(&c6.q("DEBUG SLEEP 0")), "+OK\r\n", "from ::1");
    } else {
        eprintln!("SKIPPED: no IPv6 loopback here");
    }
    match other {
        Some(ip) => {
            let mut far = Client::connect_to(std::net::SocketAddr::new(ip, srv.port));
            assert_eq!(s(&far.q("DEBUG SLEEP 0")), NOT_ALLOWED, "from {ip}");
            assert_eq!(s(&far.q("PING")), "+PONG\r\n");
        }
        None => eprintln!("SKIPPED: this machine has no address besides loopback"),
    }

    // A value that is none of Redis's three stops the start with Redis's message.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
        .args([
            "--port",
            &common::free_port().to_string(),
            "--enable-debug-command",
            "maybe",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = s(&out.stderr);
    assert!(
        err.contains("argument(s) must be one of the following: no, yes, local"),
        "{err}"
    );
    let help = s(&std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
        .arg("--help")
        .output()
        .unwrap()
        .stdout);
    assert!(help.contains("--enable-debug-command"), "{help}");
}

#[test]
fn protocol_bytes_are_redis_s_in_resp2_and_resp3() {
    let Some(rs) = redis("DEBUG PROTOCOL") else {
        return;
    };
    let srv = percore(2, &[]);
    let (mut r, mut p) = (rs.client(), srv.client());
    let types = [
        "string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib", "push",
        "verbatim", "true", "false", "nope", "STRING",
    ];
    for proto in ["2", "3"] {
        r.q(&format!("HELLO {proto}"));
        p.q(&format!("HELLO {proto}"));
        for t in types {
            let line = format!("DEBUG PROTOCOL {t}");
            let got = same(&mut r, &mut p, &line);
            // A push is followed by a normal reply, for clients that skip pushes.
            if got.starts_with('>') {
                same_next(&mut r, &mut p, &line);
            }
        }
        same(&mut r, &mut p, "DEBUG PROTOCOL");
        same(&mut r, &mut p, "DEBUG PROTOCOL a b");
    }
    assert_eq!(
        s(&p.q("DEBUG PROTOCOL bignum")),
        "(1234567999999999999999999999999999999\r\n"
    );
}

/// Reads one more reply from both and compares them.
fn same_next(r: &mut Client, p: &mut Client, what: &str) {
    let (rr, pr) = (s(&r.read_reply()), s(&p.read_reply()));
    assert_eq!(pr, rr, "{what}, second reply: percore vs redis");
}

#[test]
fn errors_help_and_small_subcommands() {
    let Some(rs) = redis("DEBUG errors") else {
        return;
    };
    let srv = percore(1, &[]);
    let (mut r, mut p) = (rs.client(), srv.client());
    let long = "x".repeat(200);
    for line in [
        "DEBUG nosuch",
        "DEBUG object",
        "DEBUG object a b",
        "DEBUG digest x",
        "DEBUG sleep",
        "DEBUG set-active-expire",
        "DEBUG stringmatch-test x",
        "DEBUG change-repl-id x",
        "DEBUG help x",
        "DEBUG reload bogus",
        "DEBUG sleep 0",
        "DEBUG sleep abc",
        "DEBUG SLEEP 0.01x",
        "DEBUG digest-value",
        "DEBUG set-active-expire 1",
        &format!("DEBUG {long}"),
    ] {
        same(&mut r, &mut p, line);
    }
    // HELP: Redis's header and footer; percore lists what it has.
    let help = s(&p.q("DEBUG HELP"));
    let redis_help = s(&r.q("DEBUG HELP"));
    let lines = |h: &str| h.split("\r\n").map(str::to_string).collect::<Vec<_>>();
    let (ph, rh) = (lines(&help), lines(&redis_help));
    assert_eq!(ph[1], rh[1], "header");
    assert_eq!(ph[ph.len() - 3..], rh[rh.len() - 3..], "footer");
    for sub in [
        "CHANGE-REPL-ID",
        "DIGEST",
        "DIGEST-VALUE <key> [<key> ...]",
        "OBJECT <key>",
        "PROTOCOL <type>",
        "RELOAD [option ...]",
        "SET-ACTIVE-EXPIRE <0|1>",
        "SLEEP <seconds>",
        "STRINGMATCH-TEST",
    ] {
        assert!(ph.contains(&format!("+{sub}")), "{sub} in {help}");
        assert!(rh.contains(&format!("+{sub}")), "Redis has {sub}");
    }
    // Every HELP of percore ends as Redis's do.
    assert_eq!(
        same(&mut r, &mut p, "CONFIG HELP").rsplit("\r\n").nth(1),
        Some("+    Prints this help.")
    );

    // CHANGE-REPL-ID: a new 40-digit id in INFO.
    let replid = |c: &mut Client| {
        let info = s(&c.q("INFO replication"));
        let id = info
            .lines()
            .find_map(|l| l.strip_prefix("master_replid:"))
            .unwrap()
            .to_string();
        assert!(
            id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        id
    };
    let before = replid(&mut p);
    assert_eq!(same(&mut r, &mut p, "DEBUG CHANGE-REPL-ID"), "+OK\r\n");
    assert_ne!(replid(&mut p), before);
}

/// Redis's 10 million matches take about a second in an optimized build and a minute in a
/// debug one: the run itself is checked by `cargo test --release` (the fuzz function has its
/// unit test in `percore_shard::debug`).
#[test]
fn stringmatch_test_runs_without_holding_the_core() {
    let Some(rs) = redis("DEBUG STRINGMATCH-TEST") else {
        return;
    };
    // One shard: the other client shares the core that runs the fuzz.
    let srv = percore(1, &[]);
    let (mut r, mut p) = (rs.client(), srv.client());
    same(&mut r, &mut p, "DEBUG STRINGMATCH-TEST x");
    // STRINGMATCH-LEN is not a Redis 7.0 subcommand.
    same(&mut r, &mut p, "DEBUG STRINGMATCH-LEN");
    if cfg!(debug_assertions) {
        eprintln!("SKIPPED: DEBUG STRINGMATCH-TEST's run in a debug build (a minute); cargo test --release runs it");
        return;
    }
    let mut other = srv.client();
    assert_eq!(s(&other.q("PING")), "+PONG\r\n");
    p.stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let t0 = Instant::now();
    p.send(&[b"DEBUG", b"STRINGMATCH-TEST"]);
    std::thread::sleep(Duration::from_millis(20));
    let t1 = Instant::now();
    assert_eq!(s(&other.q("PING")), "+PONG\r\n");
    let ping = t1.elapsed();
    let verdict = s(&p.read_reply());
    let fuzz = t0.elapsed();
    assert!(
        ping < fuzz / 2,
        "PING took {ping:?} while the fuzz took {fuzz:?}: it waited for the fuzz"
    );
    assert_eq!(verdict, s(&r.q("DEBUG STRINGMATCH-TEST")));
    assert_eq!(verdict, "+Apparently Redis did not crash: test passed\r\n");
}

/// Keys, each with the commands that build it (and a database), in a fixed order.
fn dataset() -> Vec<(usize, Vec<Vec<String>>)> {
    let cmd = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    let mut keys = vec![
        (0, vec![cmd(&["SET", "s", "hello"])]),
        (0, vec![cmd(&["SET", "n", "12345"])]),
        (0, vec![cmd(&["SET", "big", "12345678901"])]),
        (0, vec![cmd(&["APPEND", "raw", "abc"])]),
        (0, vec![cmd(&["SET", "long", &"x".repeat(60)])]),
        (0, vec![cmd(&["SET", "t", "v", "EX", "100000"])]),
        (0, vec![cmd(&["HSET", "h", "f", "v", "g", "17"])]),
        (0, vec![cmd(&["SADD", "ints", "1", "2", "3", "-5"])]),
        (0, vec![cmd(&["SADD", "strs", "a", "b", "c"])]),
        (0, vec![cmd(&["RPUSH", "l", "a", "b", "c", "1", "2", "3"])]),
        (
            0,
            vec![cmd(&[
                "ZADD", "z", "1.5", "a", "-0", "b", "inf", "c", "0.1", "d", "1e20", "e", "7", "123",
            ])],
        ),
        (3, vec![cmd(&["SET", "a", "1"])]),
        (
            3,
            vec![
                cmd(&["HSET", "h3", "x", "y"]),
                cmd(&["PEXPIRE", "h3", "100000000"]),
            ],
        ),
        (15, vec![cmd(&["SADD", "s15", "z"])]),
    ];
    // A hash past the listpack limits, a set past the intset limit, a list of many nodes.
    let mut bigh = vec!["HSET".to_string(), "bigh".to_string()];
    for i in 0..600 {
        bigh.push(format!("f{i}"));
        bigh.push(format!("v{i}"));
    }
    let mut many = vec!["SADD".to_string(), "many".to_string()];
    many.extend((0..600).map(|i| i.to_string()));
    let mut biglist = vec!["RPUSH".to_string(), "biglist".to_string()];
    biglist.extend((0..3000).map(|i| format!("element-{i}")));
    keys.push((0, vec![bigh]));
    keys.push((0, vec![many]));
    keys.push((0, vec![biglist]));
    // A sorted set past the listpack limit (skiplist), -0 and fractions among its scores.
    let mut bigz = vec!["ZADD".to_string(), "bigz".to_string()];
    for i in 0..300 {
        bigz.push(format!("{}", (i % 13) as f64 / 7.0 - 1.0));
        bigz.push(format!("m{i}"));
    }
    bigz.extend(["-0".to_string(), "negzero".to_string()]);
    keys.push((0, vec![bigz]));
    for i in 0..50 {
        keys.push((
            i % 3,
            vec![cmd(&["SET", &format!("k{i}"), &format!("v{i}")])],
        ));
    }
    keys
}

/// Writes `keys` in the order given.
fn load(c: &mut Client, keys: &[(usize, Vec<Vec<String>>)]) {
    for (db, cmds) in keys {
        assert_eq!(s(&c.q(&format!("SELECT {db}"))), "+OK\r\n");
        for parts in cmds {
            let args: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
            let reply = s(&c.cmd(&args));
            assert!(!reply.starts_with('-'), "{parts:?}: {reply}");
        }
    }
    c.q("SELECT 0");
}

#[test]
fn digest_is_redis_s_whatever_the_order_and_the_shards() {
    let Some(rs) = redis("DEBUG DIGEST") else {
        return;
    };
    let (one, three) = (percore(1, &[]), percore(3, &[]));
    let (mut r, mut p1, mut p3) = (rs.client(), one.client(), three.client());
    let empty = "+0000000000000000000000000000000000000000\r\n";
    assert_eq!(s(&r.q("DEBUG DIGEST")), empty);
    assert_eq!(s(&p1.q("DEBUG DIGEST")), empty);
    assert_eq!(s(&p3.q("DEBUG DIGEST")), empty);

    let keys = dataset();
    load(&mut r, &keys);
    load(&mut p1, &keys);
    let mut reversed = keys.clone();
    reversed.reverse();
    load(&mut p3, &reversed);
    let want = s(&r.q("DEBUG DIGEST"));
    assert_ne!(want, empty);
    assert_eq!(s(&p1.q("DEBUG DIGEST")), want, "1 shard");
    assert_eq!(s(&p3.q("DEBUG DIGEST")), want, "3 shards, reversed order");

    // DIGEST-VALUE: per key, 40 zeros for a missing one, in the client's database.
    let line =
        "DEBUG DIGEST-VALUE s n big raw long t h ints strs l z bigh many biglist bigz nokey a";
    let values = same(&mut r, &mut p3, line);
    assert_eq!(s(&p1.q(line)), values);
    assert!(values.starts_with("*17\r\n+"), "{values}");
    assert!(
        values.ends_with(&format!("{empty}{empty}")),
        "a is in database 3: {values}"
    );
    r.q("SELECT 3");
    p3.q("SELECT 3");
    same(&mut r, &mut p3, "DEBUG DIGEST-VALUE a h3");
    r.q("SELECT 0");
    p3.q("SELECT 0");

    // A write changes it, the same way on both.
    for line in [
        "HSET h f w",
        "RPUSH l z",
        "SADD many x",
        "ZADD z 2 a",
        "ZINCRBY bigz 1 m7",
        "PERSIST t",
        "DEL s",
    ] {
        same(&mut r, &mut p3, line);
        p1.q(line);
        let now = same(&mut r, &mut p3, "DEBUG DIGEST");
        assert_ne!(now, want, "after {line}");
        assert_eq!(s(&p1.q("DEBUG DIGEST")), now, "after {line}");
    }
}

#[test]
fn object_reports_encoding_and_serialized_length_as_redis() {
    let Some(rs) = redis("DEBUG OBJECT") else {
        return;
    };
    // Redis's default list-compress-depth (0; percore's is 1): `ql_compressed` then agrees,
    // and Redis writes no node as an LZF blob whatever `rdbcompression` says.
    let srv = percore(3, &["--list-compress-depth", "0"]);
    let (mut r, mut p) = (rs.client(), srv.client());
    load(&mut r, &dataset());
    load(&mut p, &dataset());
    same(&mut r, &mut p, "DEBUG OBJECT nokey");
    for key in [
        "s", "n", "big", "raw", "long", "t", "h", "ints", "strs", "l", "bigh", "many", "z", "bigz",
    ] {
        let (rl, pl) = (
            s(&r.q(&format!("DEBUG OBJECT {key}"))),
            s(&p.q(&format!("DEBUG OBJECT {key}"))),
        );
        let (rf, pf) = (fields(&rl), fields(&pl));
        assert_eq!(
            pf.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            rf.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            "{key}: the same fields\n{pl}{rl}"
        );
        for (name, value) in &pf {
            let theirs = &rf.iter().find(|(n, _)| n == name).unwrap().1;
            match name.as_str() {
                "Value at" => assert!(value.starts_with("0x"), "{pl}"),
                "lru" | "lru_seconds_idle" | "ql_uncompressed_size" => {
                    assert!(value.parse::<u64>().is_ok(), "{pl}")
                }
                _ => assert_eq!(value, theirs, "{key} {name}\n{pl}{rl}"),
            }
        }
    }
    // Idle time: the entry's clock, as OBJECT IDLETIME.
    std::thread::sleep(Duration::from_millis(1100));
    let line = s(&p.q("DEBUG OBJECT s"));
    let idle: u64 = fields(&line)
        .iter()
        .find(|(n, _)| n == "lru_seconds_idle")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let object_idle = s(&p.q("OBJECT IDLETIME s"));
    assert!(idle >= 1, "{line}");
    assert_eq!(format!(":{idle}\r\n"), object_idle);
}

/// The `name:value` fields of a DEBUG OBJECT status line.
fn fields(line: &str) -> Vec<(String, String)> {
    let body = line
        .strip_prefix('+')
        .unwrap_or_else(|| panic!("a status: {line}"));
    let body = body.trim_end();
    let body = body.strip_prefix("Value at:").expect("Value at first");
    let mut out = Vec::new();
    let mut parts = body.split(' ');
    out.push(("Value at".to_string(), parts.next().unwrap().to_string()));
    for part in parts {
        let (k, v) = part
            .split_once(':')
            .unwrap_or_else(|| panic!("{part} in {line}"));
        out.push((k.to_string(), v.to_string()));
    }
    out
}

#[test]
fn set_active_expire_0_leaves_expired_keys_until_they_are_touched() {
    let Some(rs) = redis("DEBUG SET-ACTIVE-EXPIRE") else {
        return;
    };
    let srv = percore(2, &["--hz", "100"]);
    let (mut r, mut p) = (rs.client(), srv.client());
    r.q("CONFIG SET hz 100");
    same(&mut r, &mut p, "DEBUG SET-ACTIVE-EXPIRE 0");
    for i in 0..10 {
        same(&mut r, &mut p, &format!("SET k{i} v PX 30"));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Nothing reclaimed them: they are still counted, yet no read sees them.
    assert_eq!(same(&mut r, &mut p, "DBSIZE"), ":10\r\n");
    assert_eq!(same(&mut r, &mut p, "GET k0"), "$-1\r\n");
    assert_eq!(same(&mut r, &mut p, "DBSIZE"), ":9\r\n");
    // Expired keys are still in the table for DEBUG, as in Redis.
    let obj = same(&mut r, &mut p, "DEBUG DIGEST-VALUE k1");
    assert_ne!(obj, "*1\r\n+0000000000000000000000000000000000000000\r\n");
    // Back on: the cycle reclaims the rest.
    same(&mut r, &mut p, "DEBUG SET-ACTIVE-EXPIRE 1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while s(&p.q("DBSIZE")) != ":0\r\n" {
        assert!(Instant::now() < deadline, "the cycle did not resume");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_keeps_the_data() {
    let dir = TempDir::new("reload");
    let srv = percore(3, &["--dir", dir.path()]);
    let mut c = srv.client();
    // Nothing saved yet: NOSAVE has nothing to load, and says so as Redis does.
    c.q("SET gone 1");
    assert_eq!(
        s(&c.q("DEBUG RELOAD NOSAVE")),
        "-ERR Error trying to load the RDB dump, check server logs.\r\n"
    );
    assert_eq!(
        s(&c.q("DBSIZE")),
        ":0\r\n",
        "emptied before the load, as Redis"
    );

    load(&mut c, &dataset());
    let before = s(&c.q("DEBUG DIGEST"));
    let encodings = |c: &mut Client| {
        [
            "s", "n", "raw", "h", "ints", "strs", "l", "bigh", "many", "biglist",
        ]
        .iter()
        .map(|k| s(&c.q(&format!("OBJECT ENCODING {k}"))))
        .collect::<Vec<_>>()
    };
    let enc = encodings(&mut c);
    assert_eq!(s(&c.q("DEBUG RELOAD")), "+OK\r\n");
    assert_eq!(s(&c.q("DEBUG DIGEST")), before);
    assert_eq!(encodings(&mut c), enc);
    let ttl: i64 = s(&c.q("TTL t")).trim()[1..].parse().unwrap();
    assert!(
        (99_000..=100_000).contains(&ttl),
        "the deadline is kept: {ttl}"
    );

    // NOSAVE loads the set saved above: a later write is gone.
    c.q("SET later 1");
    c.q("DEL s");
    assert_eq!(s(&c.q("DEBUG RELOAD NOSAVE")), "+OK\r\n");
    assert_eq!(s(&c.q("DEBUG DIGEST")), before);
    assert_eq!(s(&c.q("EXISTS later")), ":0\r\n");
    // NOFLUSH keeps what only memory holds; keys in both take the set's values.
    c.q("SET later 1");
    c.q("SET s changed");
    assert_eq!(s(&c.q("DEBUG RELOAD NOSAVE NOFLUSH MERGE")), "+OK\r\n");
    assert_eq!(s(&c.q("GET later")), "$1\r\n1\r\n");
    assert_eq!(s(&c.q("GET s")), "$5\r\nhello\r\n");
    c.q("DEL later");
    assert_eq!(s(&c.q("DEBUG DIGEST")), before);
    assert_eq!(
        s(&c.q("DEBUG RELOAD MERGE bogus")),
        "-ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options.\r\n"
    );
}

/// LISTPACK, QUICKLIST and QUICKLIST-PACKED-THRESHOLD answer as Redis's (the structure itself
/// goes to each server's own output), and a small threshold gives long elements nodes of
/// their own without changing what the list holds.
#[test]
fn list_structure_subcommands_answer_as_redis() {
    let Some(rs) = redis("DEBUG LISTPACK/QUICKLIST") else {
        return;
    };
    let ps = percore(2, &[]);
    let (mut r, mut p) = (rs.client(), ps.client());
    for line in [
        "RPUSH l a b c",
        "HSET h f v",
        "SADD s 1",
        "DEBUG QUICKLIST l",
        "DEBUG QUICKLIST l 1",
        "DEBUG LISTPACK l",
        "DEBUG LISTPACK h",
        "DEBUG QUICKLIST h",
        "DEBUG LISTPACK s",
        "DEBUG LISTPACK nokey",
        "DEBUG QUICKLIST nokey",
        "DEBUG QUICKLIST-PACKED-THRESHOLD 5gb",
        "DEBUG QUICKLIST-PACKED-THRESHOLD abc",
        "DEBUG QUICKLIST-PACKED-THRESHOLD 10",
        "RPUSH l 0123456789abc xyz 0123456789",
        "LINSERT l BEFORE b 0123456789long",
        "LSET l 0 0123456789set",
        "LRANGE l 0 -1",
        "DEBUG QUICKLIST-PACKED-THRESHOLD 0",
        "RPUSH l tail",
        "LRANGE l 0 -1",
        "DEBUG QUICKLIST-PACKED-THRESHOLD",
    ] {
        same(&mut r, &mut p, line);
    }
}
