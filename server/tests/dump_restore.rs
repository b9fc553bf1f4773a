//! DUMP and RESTORE against a real `redis-server` 7.0: values of every type and encoding
//! dumped by Redis restore into percore (1 and 3 shards) with the same value, type,
//! encoding and TTL, and the reverse; DUMP's bytes are Redis's where Redis's encoding is
//! deterministic; RESTORE's errors, options, keyspace events, WATCH and OBJECT
//! IDLETIME/FREQ answer as Redis's. Valkey 8's payloads (RDB version 11, set listpacks)
//! restore too when `valkey-server` is installed.

mod common;

use common::{bulks, esc, redis_or_skip, Client, Server};
use percore_shard::rdb;

fn cmd(c: &mut Client, args: &[&[u8]]) -> Vec<u8> {
    c.cmd(args)
}

/// A bulk reply's bytes (None for a null).
fn bulk(r: &[u8]) -> Option<Vec<u8>> {
    if r.starts_with(b"$-1") || r.starts_with(b"_") {
        return None;
    }
    assert_eq!(r[0], b'$', "not a bulk: {}", esc(r));
    let nl = r.windows(2).position(|w| w == b"\r\n").unwrap();
    let n: usize = std::str::from_utf8(&r[1..nl]).unwrap().parse().unwrap();
    Some(r[nl + 2..nl + 2 + n].to_vec())
}

fn int(r: &[u8]) -> i64 {
    assert_eq!(r[0], b':', "not an integer: {}", esc(r));
    std::str::from_utf8(&r[1..r.len() - 2])
        .unwrap()
        .parse()
        .unwrap()
}

fn run(c: &mut Client, line: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = line.iter().map(Vec::as_slice).collect();
    c.cmd(&refs)
}

fn w(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// A fixture: its key, the command lines that build it, and whether Redis's DUMP of it is
/// deterministic (no hash-table order in it).
type Fixture = (&'static str, Vec<Vec<Vec<u8>>>, bool);

/// Keys of every type and encoding.
fn fixtures() -> Vec<Fixture> {
    let mut out: Vec<Fixture> = Vec::new();
    let set = |k: &str, v: Vec<u8>| vec![vec![b"SET".to_vec(), k.as_bytes().to_vec(), v]];
    out.push(("s:small", set("s:small", b"hello".to_vec()), true));
    out.push(("s:int", set("s:int", b"12345".to_vec()), true));
    out.push(("s:neg", set("s:neg", b"-70000".to_vec()), true));
    out.push(("s:big", set("s:big", b"12345678901".to_vec()), true));
    out.push((
        "s:max",
        set("s:max", b"-9223372036854775808".to_vec()),
        true,
    ));
    out.push(("s:empty", set("s:empty", Vec::new()), true));
    out.push(("s:zeros", set("s:zeros", b"007".to_vec()), true));
    out.push(("s:45", set("s:45", vec![b'x'; 45]), true));
    out.push(("s:long", set("s:long", b"abcdefgh".repeat(400)), true));
    out.push((
        "s:bin",
        set("s:bin", (0..=255u8).cycle().take(700).collect()),
        true,
    ));
    let rnd: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    out.push(("s:random", set("s:random", rnd), true));
    let mut append = set("s:raw", b"12".to_vec());
    append.push(w(&["APPEND", "s:raw", "3"]));
    out.push(("s:raw", append, true));

    let mut add = |k: &'static str, command: &str, words: Vec<String>, per: usize, det: bool| {
        let lines = words
            .chunks(100 * per)
            .map(|chunk| {
                let head = [command.as_bytes().to_vec(), k.as_bytes().to_vec()];
                head.into_iter()
                    .chain(chunk.iter().map(|w| w.as_bytes().to_vec()))
                    .collect()
            })
            .collect();
        out.push((k, lines, det));
    };
    let strs = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    // Integer-looking strings that are not canonical integers stay strings in listpacks.
    let odd = [
        "-0",
        "+5",
        " 5",
        "9223372036854775808",
        "-9223372036854775809",
        "0x10",
    ];
    add("l:odd", "RPUSH", strs(&odd), 1, true);
    add("h:odd", "HSET", strs(&odd), 2, true);
    add(
        "l:small",
        "RPUSH",
        strs(&["a", "1", "-5000", "", "3.5", "007"]),
        1,
        true,
    );
    add(
        "l:large",
        "RPUSH",
        (0..3000).map(|i| format!("item-{i}")).collect(),
        1,
        true,
    );
    add(
        "l:ints",
        "RPUSH",
        (0..600).map(|i| (i * 7919 - 100_000).to_string()).collect(),
        1,
        true,
    );
    add(
        "l:wide",
        "RPUSH",
        (0..12u8)
            .map(|i| ((b'a' + i) as char).to_string().repeat(3000 + i as usize))
            .collect(),
        1,
        true,
    );
    add(
        "l:lpush",
        "LPUSH",
        (0..2000).map(|i| format!("{}", i * 13)).collect(),
        1,
        false,
    );
    add("set:ints", "SADD", strs(&["1", "2", "3", "-5"]), 1, true);
    let wide = ["1", "70000", "9223372036854775807", "-9223372036854775808"];
    add("set:wide", "SADD", strs(&wide), 1, true);
    add("set:str", "SADD", strs(&["a", "b", "c"]), 1, false);
    add(
        "set:manyints",
        "SADD",
        (0..600).map(|i| (i * 3).to_string()).collect(),
        1,
        false,
    );
    add(
        "set:large",
        "SADD",
        (0..2000).map(|i| format!("member:{i}")).collect(),
        1,
        false,
    );
    add(
        "h:small",
        "HSET",
        strs(&["f1", "v1", "f2", "123", "-7", ""]),
        2,
        true,
    );
    let pairs = (0..700).flat_map(|i| [format!("f{i}"), format!("{}", i * 31)]);
    add("h:large", "HSET", pairs.collect(), 2, false);
    add(
        "h:longval",
        "HSET",
        strs(&["f", &"v".repeat(100), "g", "1"]),
        2,
        false,
    );
    let small = strs(&[
        "1",
        "a",
        "2.5",
        "b",
        "-inf",
        "c",
        "+inf",
        "d",
        "0",
        "e",
        "-0.5",
        "f",
        "1e300",
        "g",
        "0.1",
        "h",
        "123456789012",
        "i",
        "-3",
        "j",
    ]);
    add("z:small", "ZADD", small.clone(), 2, true);
    let large = (0..500).flat_map(|i| [format!("{}", i as f64 / 7.0), format!("m{i}")]);
    add("z:large", "ZADD", large.chain(small).collect(), 2, false);
    add(
        "z:longmember",
        "ZADD",
        strs(&["1", &"m".repeat(100), "-inf", "x"]),
        2,
        false,
    );
    out
}

/// A key's type, encoding and value as comparable bytes (hash-table orders sorted away).
fn view(c: &mut Client, key: &str) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let k = key.as_bytes();
    let t = cmd(c, &[b"TYPE", k]);
    let enc = cmd(c, &[b"OBJECT", b"ENCODING", k]);
    let value = match &t[..] {
        b"+string\r\n" => vec![bulk(&cmd(c, &[b"GET", k])).unwrap()],
        b"+list\r\n" => bulks(&cmd(c, &[b"LRANGE", k, b"0", b"-1"])),
        b"+set\r\n" => {
            let mut m = bulks(&cmd(c, &[b"SMEMBERS", k]));
            m.sort();
            m
        }
        b"+hash\r\n" => {
            let all = bulks(&cmd(c, &[b"HGETALL", k]));
            let mut pairs: Vec<Vec<u8>> = all
                .chunks(2)
                .map(|p| [&p[0][..], b"=", &p[1][..]].concat())
                .collect();
            pairs.sort();
            pairs
        }
        // Scores as numbers: Valkey 8 prints them shortest-first, Redis 7.0 with %.17g.
        b"+zset\r\n" => bulks(&cmd(c, &[b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"]))
            .chunks(2)
            .flat_map(|p| {
                let score: f64 = std::str::from_utf8(&p[1]).unwrap().parse().unwrap();
                [p[0].clone(), format!("{score:?}").into_bytes()]
            })
            .collect(),
        b"+none\r\n" => Vec::new(),
        other => panic!("{key}: unexpected type {}", esc(other)),
    };
    (t, enc, value)
}

fn populate(c: &mut Client) {
    assert_eq!(cmd(c, &[b"FLUSHALL"]), b"+OK\r\n");
    for (key, lines, _) in fixtures() {
        for l in &lines {
            let r = run(c, l);
            assert!(!r.starts_with(b"-"), "{key}: {}", esc(&r));
        }
    }
}

fn dump(c: &mut Client, key: &str) -> Vec<u8> {
    bulk(&cmd(c, &[b"DUMP", key.as_bytes()])).unwrap_or_else(|| panic!("{key}: DUMP nil"))
}

/// Every fixture dumped by `from` restores into `to` with the same value as the source's,
/// and the same type and encoding as `from` gives the same payload restored (Redis too
/// restores an APPENDed "123" as an integer); with a TTL, that TTL.
fn moved_over(from: &mut Client, to: &mut Client, what: &str) {
    populate(from);
    assert_eq!(cmd(to, &[b"FLUSHALL"]), b"+OK\r\n");
    for (key, _, _) in fixtures() {
        let payload = dump(from, key);
        let r = cmd(to, &[b"RESTORE", key.as_bytes(), b"0", &payload]);
        assert_eq!(r, b"+OK\r\n", "{what}: RESTORE {key}: {}", esc(&r));
        let back = format!("{key}:back");
        let r = cmd(from, &[b"RESTORE", back.as_bytes(), b"0", &payload]);
        assert_eq!(
            r,
            b"+OK\r\n",
            "{what}: RESTORE {back} at the source: {}",
            esc(&r)
        );
        assert_eq!(view(to, key), view(from, &back), "{what}: {key}");
        assert_eq!(view(to, key).2, view(from, key).2, "{what}: {key}");
        let copy = format!("{key}:ttl");
        let r = cmd(to, &[b"RESTORE", copy.as_bytes(), b"100000", &payload]);
        assert_eq!(r, b"+OK\r\n", "{what}: RESTORE {copy}: {}", esc(&r));
        let pttl = int(&cmd(to, &[b"PTTL", copy.as_bytes()]));
        assert!(
            (90_000..=100_000).contains(&pttl),
            "{what}: {copy}: PTTL {pttl}"
        );
        assert_eq!(view(to, &copy).2, view(from, key).2, "{what}: {copy}");
    }
}

/// Runs `f` with clients on Redis and on percore, with 1 then 3 shards; nothing when
/// redis-server is missing (after [`redis_or_skip`]'s message).
fn with_redis_and_percores(what: &str, mut f: impl FnMut(Client, Client, usize)) {
    let Some(redis) = redis_or_skip(&format!("{what}: did not run")) else {
        return;
    };
    for shards in [1, 3] {
        let percore = Server::percore(shards, &[]);
        f(redis.client(), percore.client(), shards);
    }
}

#[test]
fn redis_dumps_restore_into_percore_and_back() {
    with_redis_and_percores(
        "DUMP/RESTORE between Redis and percore",
        |mut r, mut p, n| {
            moved_over(&mut r, &mut p, &format!("Redis -> percore {n} shard(s)"));
            moved_over(&mut p, &mut r, &format!("percore {n} shard(s) -> Redis"));
        },
    );
}

/// Same commands on both: DUMP's bytes are Redis's wherever Redis's own are deterministic
/// (strings, intsets, listpacks, lists), and the others restore in Redis to the same value.
#[test]
fn dump_bytes_are_redis_s() {
    with_redis_and_percores("DUMP bytes", |mut r, mut p, shards| {
        populate(&mut r);
        populate(&mut p);
        for (key, _, deterministic) in fixtures() {
            let (want, got) = (dump(&mut r, key), dump(&mut p, key));
            if deterministic {
                assert_eq!(esc(&got), esc(&want), "{shards} shard(s): DUMP {key}");
            }
        }
        assert_eq!(cmd(&mut p, &[b"DUMP", b"nosuchkey"]), b"$-1\r\n");
    });
}

/// A payload's body with a fresh footer of RDB version `version`.
fn sealed(body: &[u8], version: u16) -> Vec<u8> {
    let mut p = body.to_vec();
    p.extend_from_slice(&version.to_le_bytes());
    let crc = rdb::crc64(0, &p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// RESTORE's checks, options and errors, line by line against Redis's replies, with the
/// key's state after each.
#[test]
fn restore_errors_and_options_answer_as_redis() {
    with_redis_and_percores("RESTORE errors", |rc, pc, shards| {
        restore_lines(rc, pc, shards)
    });
}

fn restore_lines(mut rc: Client, pc: Client, shards: usize) {
    assert_eq!(cmd(&mut rc, &[b"SET", b"src", b"value"]), b"+OK\r\n");
    let good = dump(&mut rc, "src");
    let body = &good[..good.len() - 10];
    let mut flipped = good.clone();
    flipped[2] ^= 0x20;
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 1;
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("good", good.clone()),
        ("flipped", flipped),
        ("badcrc", bad_crc),
        ("v12", sealed(body, 12)),
        ("v9", sealed(body, 9)),
        ("short", good[..9].to_vec()),
        ("empty", Vec::new()),
        ("truncated", sealed(&body[..body.len() - 2], 10)),
        ("cut", sealed(b"\x00\x32abc", 10)),
        ("stream", sealed(b"\x0f\x00", 10)),
        ("module", sealed(b"\x07\x00", 10)),
        ("unknown", sealed(b"\x63\x00", 10)),
        ("emptylist", sealed(b"\x12\x00", 10)),
        ("dupset", sealed(b"\x02\x02\x01a\x01a", 10)),
        ("trailing", sealed(&[body, b"xyz"].concat(), 10)),
    ];
    let lines: &[&str] = &[
        "RESTORE k 0 {good}",
        "RESTORE k 0 {good}",
        "RESTORE k 0 {good} REPLACE",
        "RESTORE k 0 {flipped} REPLACE",
        "RESTORE k 0 {badcrc} REPLACE",
        "RESTORE k2 0 {v12}",
        "RESTORE k9 0 {v9}",
        "RESTORE k2 0 {short}",
        "RESTORE k2 0 {empty}",
        "RESTORE kt 0 {truncated}",
        "GET kt",
        "RESTORE k2 0 {cut}",
        "RESTORE k2 0 {stream}",
        "RESTORE k2 0 {module}",
        "RESTORE k2 0 {unknown}",
        "RESTORE k2 0 {emptylist}",
        "RESTORE k2 0 {dupset}",
        "RESTORE k2 0 {trailing}",
        "RESTORE k3 -1 {good}",
        "RESTORE k3 abc {good}",
        "RESTORE k3 0 {good} IDLETIME -1",
        "RESTORE k3 0 {good} IDLETIME x",
        "RESTORE k3 0 {good} FREQ 256",
        "RESTORE k3 0 {good} FREQ -1",
        "RESTORE k3 0 {good} IDLETIME 10 FREQ 5",
        "RESTORE k3 0 {good} FREQ 5 IDLETIME 10",
        "RESTORE k3 0 {good} IDLETIME",
        "RESTORE k3 0 {good} BOGUS",
        "RESTORE k3 0 {good} replace absttl",
        "EXISTS k3",
        "RESTORE k 1000 {good} ABSTTL REPLACE",
        "EXISTS k",
        "RESTORE k4 1000 {good} ABSTTL",
        "EXISTS k4",
        "RESTORE k4 99999999999999 {good} ABSTTL",
        "PEXPIRETIME k4",
        "RESTORE k5 9223372036854775807 {good}",
        "RESTORE k6 50000 {good} IDLETIME 10",
        "RESTORE k7 0 {good} FREQ 10",
        "RESTORE k8",
        "DUMP",
        "GET k2",
        "GET k9",
        "DBSIZE",
    ];
    let expand = |line: &str| -> Vec<Vec<u8>> {
        line.split(' ')
            .map(|word| {
                match payloads
                    .iter()
                    .find(|(name, _)| word == format!("{{{name}}}"))
                {
                    Some((_, p)) => p.clone(),
                    None => word.as_bytes().to_vec(),
                }
            })
            .collect()
    };
    let mut c = [rc, pc];
    for c in &mut c {
        assert_eq!(cmd(c, &[b"FLUSHALL"]), b"+OK\r\n");
    }
    for line in lines {
        let args = expand(line);
        let [want, got] = c.each_mut().map(|c| run(c, &args));
        assert_eq!(esc(&got), esc(&want), "{shards} shard(s): {line}");
    }
    for key in ["k", "k3", "k5", "k6", "k7"] {
        let [want, got] = c.each_mut().map(|c| view(c, key));
        assert_eq!(got, want, "{shards} shard(s): {key}");
    }
    let [want, got] = c.each_mut().map(|c| int(&cmd(c, &[b"TTL", b"k6"])));
    assert!(
        (want - got).abs() <= 1,
        "TTL k6: Redis {want}, percore {got}"
    );
}

/// RESTORE's version 11 (Redis 7.2, Valkey 8) payloads: percore reads them (Redis 7.0
/// refuses them); its set listpack becomes an intset or a table.
#[test]
fn rdb_version_11_payloads_restore() {
    let percore = Server::percore(1, &[]);
    let mut p = percore.client();
    // SADD s a b 1 in Redis 7.2: a set listpack (type 20).
    let mut lp = rdb::listpack::Writer::default();
    for m in ["a", "b", "1"] {
        lp.push(m.as_bytes());
    }
    let mut body = vec![20u8];
    rdb::put_string(&mut body, &lp.finish());
    let r = cmd(&mut p, &[b"RESTORE", b"s", b"0", &sealed(&body, 11)]);
    assert_eq!(r, b"+OK\r\n", "{}", esc(&r));
    assert_eq!(
        view(&mut p, "s").2,
        vec![b"1".to_vec(), b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(view(&mut p, "s").1, b"$9\r\nhashtable\r\n");

    // Valkey 8 itself, when installed.
    let Some(valkey) = Server::named("valkey-server", &[]) else {
        eprintln!("SKIPPED: valkey-server not installed; Valkey payloads not tried");
        return;
    };
    let mut v = valkey.client();
    populate(&mut v);
    for (key, _, _) in fixtures() {
        let payload = dump(&mut v, key);
        let r = cmd(
            &mut p,
            &[b"RESTORE", key.as_bytes(), b"0", &payload, b"REPLACE"],
        );
        assert_eq!(
            r,
            b"+OK\r\n",
            "Valkey -> percore: RESTORE {key}: {}",
            esc(&r)
        );
        assert_eq!(
            view(&mut p, key).2,
            view(&mut v, key).2,
            "Valkey -> percore: {key}"
        );
    }
}

/// IDLETIME and FREQ set what OBJECT IDLETIME and OBJECT FREQ answer, under an LRU and an
/// LFU policy, as in Redis.
#[test]
fn idletime_and_freq_reach_object() {
    let Some(redis) = redis_or_skip("RESTORE IDLETIME/FREQ: did not run") else {
        return;
    };
    let percore = Server::percore(3, &[]);
    let mut c = [redis.client(), percore.client()];
    for c in &mut c {
        assert_eq!(cmd(c, &[b"FLUSHALL"]), b"+OK\r\n");
        assert_eq!(cmd(c, &[b"SET", b"src", b"v"]), b"+OK\r\n");
    }
    let payload = dump(&mut c[0], "src");
    for c in &mut c {
        cmd(c, &[b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"]);
        let r = cmd(
            c,
            &[b"RESTORE", b"idle", b"0", &payload, b"IDLETIME", b"1000"],
        );
        assert_eq!(r, b"+OK\r\n");
        let idle = int(&cmd(c, &[b"OBJECT", b"IDLETIME", b"idle"]));
        assert!((1000..=1002).contains(&idle), "idle {idle}");
        cmd(c, &[b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lfu"]);
        let r = cmd(c, &[b"RESTORE", b"freq", b"0", &payload, b"FREQ", b"100"]);
        assert_eq!(r, b"+OK\r\n");
        assert_eq!(cmd(c, &[b"OBJECT", b"FREQ", b"freq"]), b":100\r\n");
        cmd(c, &[b"CONFIG", b"SET", b"maxmemory-policy", b"noeviction"]);
    }
}

/// RESTORE is a write: it fails a transaction WATCHing its key, and publishes "restore"
/// (after "new"), and a past ABSTTL over a REPLACEd key publishes "del", as Redis does.
#[test]
fn restore_is_watched_and_notified() {
    let Some(redis) = redis_or_skip("RESTORE events: did not run") else {
        return;
    };
    let percore = Server::percore(1, &[]);
    for (name, server) in [("Redis", &redis), ("percore", &percore)] {
        let mut c = server.client();
        let mut other = server.client();
        cmd(&mut c, &[b"FLUSHALL"]);
        cmd(&mut c, &[b"SET", b"src", b"v"]);
        let payload = dump(&mut c, "src");
        assert_eq!(cmd(&mut c, &[b"WATCH", b"w"]), b"+OK\r\n");
        assert_eq!(
            cmd(&mut other, &[b"RESTORE", b"w", b"0", &payload]),
            b"+OK\r\n"
        );
        cmd(&mut c, &[b"MULTI"]);
        cmd(&mut c, &[b"GET", b"w"]);
        assert_eq!(cmd(&mut c, &[b"EXEC"]), b"*-1\r\n", "{name}: WATCH");

        cmd(
            &mut c,
            &[b"CONFIG", b"SET", b"notify-keyspace-events", b"KEAn"],
        );
        let mut sub = server.client();
        sub.cmd(&[b"PSUBSCRIBE", b"__keyevent@0__:*"]);
        cmd(&mut other, &[b"RESTORE", b"e1", b"0", &payload]);
        cmd(&mut other, &[b"RESTORE", b"e1", b"0", &payload, b"REPLACE"]);
        cmd(
            &mut other,
            &[b"RESTORE", b"e1", b"1", &payload, b"REPLACE", b"ABSTTL"],
        );
        cmd(&mut other, &[b"PUBLISH", b"__keyevent@0__:end", b"x"]);
        let mut events = Vec::new();
        loop {
            let m = bulks(&sub.read_reply());
            let ev = String::from_utf8_lossy(&m[2]).into_owned();
            if ev.ends_with(":end") {
                break;
            }
            events.push(format!("{ev} {}", String::from_utf8_lossy(&m[3])));
        }
        println!("{name}: {events:?}");
        assert_eq!(
            events,
            [
                "__keyevent@0__:new e1",
                "__keyevent@0__:restore e1",
                "__keyevent@0__:new e1",
                "__keyevent@0__:restore e1",
                "__keyevent@0__:del e1",
            ],
            "{name}"
        );
        cmd(&mut c, &[b"CONFIG", b"SET", b"notify-keyspace-events", b""]);
    }
}

/// COMMAND INFO of DUMP and RESTORE is Redis's, byte for byte; COMMAND DOCS gives Redis's
/// summary, version and group (percore's docs have no argument lists).
#[test]
fn command_info_is_redis_s() {
    let Some(redis) = redis_or_skip("COMMAND INFO dump restore: did not run") else {
        return;
    };
    let percore = Server::percore(1, &[]);
    for resp3 in [false, true] {
        let mut c = [redis.client(), percore.client()];
        if resp3 {
            for c in &mut c {
                c.cmd(&[b"HELLO", b"3"]);
            }
        }
        let [want, got] = c
            .each_mut()
            .map(|c| cmd(c, &[b"COMMAND", b"INFO", b"dump", b"restore"]));
        assert_eq!(esc(&got), esc(&want), "RESP{}", 2 + resp3 as u8);
        let [want, got] = c
            .each_mut()
            .map(|c| bulks(&cmd(c, &[b"COMMAND", b"DOCS", b"dump", b"restore"])));
        assert!(got.len() >= 14, "{got:?}");
        for word in &got {
            assert!(
                want.contains(word),
                "COMMAND DOCS: {} is not Redis's",
                esc(word)
            );
        }
    }
}

/// Redis's ziplist of `elems` as Redis 6 wrote it (`ziplistPush`: a canonical integer of
/// at most 32 bytes in the narrowest integer encoding, else a string).
fn ziplist(elems: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    let (mut prev, mut tail) = (0usize, 10usize);
    for e in elems {
        tail = 10 + body.len();
        let mut entry = match prev < 254 {
            true => vec![prev as u8],
            false => [&[0xfe][..], &(prev as u32).to_le_bytes()].concat(),
        };
        let int = std::str::from_utf8(e)
            .ok()
            .and_then(|s| s.parse::<i64>().ok());
        match int.filter(|v| e.len() <= 32 && v.to_string().as_bytes() == *e) {
            Some(v @ 0..=12) => entry.push(0xf1 + v as u8),
            Some(v) if i8::try_from(v).is_ok() => entry.extend([0xfe, v as u8]),
            Some(v) if i16::try_from(v).is_ok() => {
                entry.push(0xc0);
                entry.extend((v as i16).to_le_bytes());
            }
            Some(v) if (-(1 << 23)..1 << 23).contains(&v) => {
                entry.push(0xf0);
                entry.extend(&(v as i32).to_le_bytes()[..3]);
            }
            Some(v) if i32::try_from(v).is_ok() => {
                entry.push(0xd0);
                entry.extend((v as i32).to_le_bytes());
            }
            Some(v) => {
                entry.push(0xe0);
                entry.extend(v.to_le_bytes());
            }
            None if e.len() < 64 => entry.push(e.len() as u8),
            None if e.len() < 16384 => entry.extend([0x40 | (e.len() >> 8) as u8, e.len() as u8]),
            None => {
                entry.push(0x80);
                entry.extend((e.len() as u32).to_be_bytes());
            }
        }
        if int.is_none() || e.len() > 32 || int.unwrap().to_string().as_bytes() != *e {
            entry.extend_from_slice(e);
        }
        prev = entry.len();
        body.extend(entry);
    }
    let mut zl = Vec::new();
    zl.extend(((10 + body.len() + 1) as u32).to_le_bytes());
    zl.extend((tail as u32).to_le_bytes());
    zl.extend((elems.len().min(65535) as u16).to_le_bytes());
    zl.extend(body);
    zl.push(0xff);
    zl
}

/// A zipmap of `pairs` (Redis 2.4's small hashes), with `free` spare bytes after each value.
fn zipmap(pairs: &[(&[u8], &[u8])], free: u8) -> Vec<u8> {
    let mut zm = vec![pairs.len() as u8];
    for (f, v) in pairs {
        zm.push(f.len() as u8);
        zm.extend_from_slice(f);
        zm.extend([v.len() as u8, free]);
        zm.extend_from_slice(v);
        zm.extend(std::iter::repeat_n(0, free as usize));
    }
    zm.push(0xff);
    zm
}

/// Payloads of the encodings Redis 7.0 reads but no longer writes (built here as Redis 6
/// and older wrote them) restore in percore to what they restore to in Redis 7.0: type,
/// encoding and value.
#[test]
fn old_encodings_restore_as_in_redis() {
    let rdb_string = |b: &[u8]| {
        let mut out = Vec::new();
        rdb::put_string(&mut out, b);
        out
    };
    let long = vec![b'x'; 300];
    let list: Vec<&[u8]> = vec![b"a", b"1", b"-5000", &long, b"70000", b"12345678901", b"-1"];
    let many: Vec<String> = (0..600).map(|i| format!("f{i}")).collect();
    let many_pairs: Vec<&[u8]> = many.iter().flat_map(|f| [f.as_bytes(), b"7"]).collect();
    let zpairs: Vec<&[u8]> = vec![b"c", b"-3", b"a", b"1", b"b", b"2.5", b"d", b"1e300"];
    let hpairs: Vec<&[u8]> = vec![b"f1", b"v1", b"f2", b"123", b"x", b""];
    let strings = |elems: &[&[u8]]| -> Vec<u8> {
        let mut out = Vec::new();
        rdb::put_len(&mut out, elems.len() as u64);
        for e in elems {
            rdb::put_string(&mut out, e);
        }
        out
    };
    let mut payloads: Vec<(&str, Vec<u8>)> = vec![
        (
            "list-ziplist",
            [&[10u8][..], &rdb_string(&ziplist(&list))].concat(),
        ),
        ("list-plain", [&[1u8][..], &strings(&list)].concat()),
        (
            "set-plain",
            [&[2u8][..], &strings(&[b"a", b"b", b"1"])].concat(),
        ),
        (
            "set-plain-ints",
            [&[2u8][..], &strings(&[b"5", b"-1", b"300"])].concat(),
        ),
        (
            "hash-plain",
            [&[4u8][..], &{
                let mut out = Vec::new();
                rdb::put_len(&mut out, 3);
                for e in &hpairs {
                    rdb::put_string(&mut out, e);
                }
                out
            }]
            .concat(),
        ),
        (
            "hash-ziplist",
            [&[13u8][..], &rdb_string(&ziplist(&hpairs))].concat(),
        ),
        (
            "hash-ziplist-large",
            [&[13u8][..], &rdb_string(&ziplist(&many_pairs))].concat(),
        ),
        (
            "zset-ziplist",
            [&[12u8][..], &rdb_string(&ziplist(&zpairs))].concat(),
        ),
    ];
    let pairs = [(&b"f1"[..], &b"v1"[..]), (b"f2", b"123"), (b"x", b"")];
    payloads.push((
        "hash-zipmap",
        [&[9u8][..], &rdb_string(&zipmap(&pairs, 0))].concat(),
    ));
    payloads.push((
        "hash-zipmap-free",
        [&[9u8][..], &rdb_string(&zipmap(&pairs, 3))].concat(),
    ));
    // QUICKLIST of two ziplist nodes.
    let mut ql = vec![14u8, 2];
    ql.extend(rdb_string(&ziplist(&list[..3])));
    ql.extend(rdb_string(&ziplist(&list[3..])));
    payloads.push(("list-quicklist", ql));
    // QUICKLIST_2 with a listpack node and a plain node.
    let mut lp = rdb::listpack::Writer::default();
    lp.push(b"a");
    lp.push(b"17");
    let mut ql2 = vec![18u8, 2, 2];
    ql2.extend(rdb_string(&lp.finish()));
    ql2.push(1);
    ql2.extend(rdb_string(&long));
    payloads.push(("list-quicklist2-plain", ql2));
    // ZSET with ASCII scores (254: +inf, 255: -inf).
    let mut z = vec![3u8, 4];
    for (m, s) in [
        (&b"a"[..], &b"\x031.5"[..]),
        (b"b", b"\xfe"),
        (b"c", b"\xff"),
        (b"d", b"\x02-2"),
    ] {
        z.extend(rdb_string(m));
        z.extend_from_slice(s);
    }
    payloads.push(("zset-ascii", z));
    with_redis_and_percores("old encodings", |mut r, mut p, shards| {
        for c in [&mut r, &mut p] {
            assert_eq!(cmd(c, &[b"FLUSHALL"]), b"+OK\r\n");
        }
        for (name, body) in &payloads {
            let payload = sealed(body, 9);
            let args: [&[u8]; 4] = [b"RESTORE", name.as_bytes(), b"0", &payload];
            let (want, got) = (cmd(&mut r, &args), cmd(&mut p, &args));
            assert_eq!(esc(&got), esc(&want), "{shards} shard(s): RESTORE {name}");
            assert_eq!(want, b"+OK\r\n", "Redis: RESTORE {name}");
            assert_eq!(
                view(&mut p, name),
                view(&mut r, name),
                "{shards} shard(s): {name}"
            );
        }
    });
}

/// `percore check-rdb FILE`: its output and exit code.
fn check_rdb(path: &std::path::Path) -> (String, i32) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
        .arg("check-rdb")
        .arg(path)
        .output()
        .expect("run percore check-rdb");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (text, out.status.code().unwrap_or(-1))
}

/// `percore check-rdb` reads a file Redis 7.0 saved with every fixture (keys per database
/// and type, deadlines, a function library), and refuses a damaged or cut one, naming the
/// offset.
#[test]
fn check_rdb_reads_redis_files() {
    let dir = common::TempDir::new("check-rdb");
    let Some(redis) = common::redis_or_skip_with("check-rdb", &["--dir", dir.path()]) else {
        return;
    };
    let mut r = redis.client();
    populate(&mut r);
    let mut per_type = std::collections::BTreeMap::new();
    for (key, _, _) in fixtures() {
        let t = cmd(&mut r, &[b"TYPE", key.as_bytes()]);
        *per_type.entry(s_line(&t)).or_insert(0) += 1;
    }
    for k in ["e1", "e2"] {
        assert_eq!(
            cmd(&mut r, &[b"SET", k.as_bytes(), b"v", b"EX", b"1000"]),
            b"+OK\r\n"
        );
    }
    *per_type.entry("string".to_string()).or_insert(0) += 2;
    cmd(&mut r, &[b"SELECT", b"5"]);
    cmd(&mut r, &[b"RPUSH", b"in5", b"a"]);
    let lib = "#!lua name=lib5\nredis.register_function('f5', function() return 5 end)";
    assert_eq!(
        bulk(&cmd(&mut r, &[b"FUNCTION", b"LOAD", lib.as_bytes()])).unwrap(),
        b"lib5"
    );
    assert_eq!(cmd(&mut r, &[b"SAVE"]), b"+OK\r\n");
    let file = dir.0.join("dump.rdb");
    let (out, code) = check_rdb(&file);
    assert_eq!(code, 0, "{out}");
    let keys: i32 = per_type.values().sum();
    let types: Vec<String> = per_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let db0 = format!(
        "  db 0: {keys} keys ({}), 2 with a deadline (0 already past)\n",
        types.join(", ")
    );
    for line in [
        "RDB version 10,",
        "  aux redis-ver = 7.0.15\n",
        &db0,
        "  db 5: 1 keys (list 1), 0 with a deadline (0 already past)\n",
        "  functions: 1 libraries\n",
        "  checksum: ok\n",
        ": ok\n",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    let bytes = std::fs::read(&file).unwrap();
    let damaged = dir.0.join("damaged.rdb");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    std::fs::write(&damaged, &flipped).unwrap();
    let (out, code) = check_rdb(&damaged);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error at offset"), "{out}");
    std::fs::write(&damaged, &bytes[..bytes.len() - 20]).unwrap();
    let (out, code) = check_rdb(&damaged);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error at offset"), "{out}");
}

/// A simple-string reply's text.
fn s_line(r: &[u8]) -> String {
    String::from_utf8_lossy(&r[1..r.len() - 2]).into_owned()
}

/// Lists pushed with RPUSH under several `list-max-listpack-size` settings, of elements of
/// random sizes (integers, short strings, elements of several KiB that fill a node alone):
/// DUMP's bytes are Redis's, so percore packs nodes as Redis's quicklist does.
#[test]
fn list_nodes_are_packed_as_redis_packs_them() {
    with_redis_and_percores("DUMP of lists", |mut r, mut p, shards| {
        let mut rng = common::Rng(shards as u64);
        for fill in ["-2", "-1", "-5", "3", "128"] {
            for c in [&mut r, &mut p] {
                assert_eq!(cmd(c, &[b"FLUSHALL"]), b"+OK\r\n");
                let ok = cmd(
                    c,
                    &[
                        b"CONFIG",
                        b"SET",
                        b"list-max-listpack-size",
                        fill.as_bytes(),
                    ],
                );
                assert_eq!(ok, b"+OK\r\n");
            }
            for n in 0..20 {
                let key = format!("list{n}");
                for _ in 0..rng.below(300) + 1 {
                    let e = match rng.below(4) {
                        0 => (rng.next() as i64 >> rng.below(64))
                            .to_string()
                            .into_bytes(),
                        1 => vec![b'a' + rng.below(26) as u8; rng.below(70)],
                        2 => vec![b'b'; rng.below(5000)],
                        _ => vec![b'c'; 8000 + rng.below(9000)],
                    };
                    let args: [&[u8]; 3] = [b"RPUSH", key.as_bytes(), &e];
                    for c in [&mut r, &mut p] {
                        assert!(cmd(c, &args).starts_with(b":"));
                    }
                }
                let (want, got) = (dump(&mut r, &key), dump(&mut p, &key));
                assert!(
                    got == want,
                    "{shards} shard(s), fill {fill}: DUMP {key} differs"
                );
            }
        }
        for c in [&mut r, &mut p] {
            cmd(c, &[b"CONFIG", b"SET", b"list-max-listpack-size", b"-2"]);
        }
    });
}
