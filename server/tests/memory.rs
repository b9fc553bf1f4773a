//! maxmemory and eviction through the real server: a cache that is written far more than it
//! may hold stays inside its limit and keeps answering; under noeviction writes get Redis's
//! OOM error while reads go on; OBJECT IDLETIME/FREQ follow the policy.

mod common;

use common::{encode, proc_status_kib, s, Client, Server};

/// Writes `count` distinct keys of `size`-byte values in pipelined batches; returns how many
/// replies were errors and the first of them.
fn write_keys(c: &mut Client, prefix: &str, count: usize, size: usize) -> (usize, Option<String>) {
    let value = vec![b'v'; size];
    let mut errors = 0;
    let mut first = None;
    for batch in (0..count).collect::<Vec<_>>().chunks(128) {
        let mut req = Vec::new();
        for i in batch {
            req.extend_from_slice(&encode(&[
                b"SET",
                format!("{prefix}{i}").as_bytes(),
                &value,
            ]));
        }
        c.send_raw(&req);
        for _ in batch {
            let r = c.read_reply();
            if r.first() == Some(&b'-') {
                errors += 1;
                first.get_or_insert_with(|| s(&r));
            }
        }
    }
    (errors, first)
}

fn info_field(c: &mut Client, section: &str, field: &str) -> u64 {
    let info = s(&c.q(&format!("INFO {section}")));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
        .trim()
        .parse()
        .unwrap()
}

/// 1 GB of distinct keys into a 64 MB allkeys-lru cache: it evicts, never refuses a write,
/// and its resident memory stays within the limit plus a fixed overhead.
#[test]
fn allkeys_lru_holds_a_gigabyte_stream_inside_64mb() {
    const LIMIT_MB: u64 = 64;
    // Binary, thread stacks, io_uring rings, connection buffers, allocator slack.
    const OVERHEAD_MB: u64 = 48;
    let srv = Server::percore(
        1,
        &["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
    );
    let base_kib = proc_status_kib(srv.pid(), "VmRSS");
    let mut c = srv.client();
    let (errors, first) = write_keys(&mut c, "k", 256 * 1024, 4096);
    assert_eq!(errors, 0, "no write refused under allkeys-lru: {first:?}");
    let evicted = info_field(&mut c, "stats", "evicted_keys");
    let keys: u64 = s(&c.q("DBSIZE"))[1..].trim().parse().unwrap();
    assert!(evicted > 200_000, "evicted {evicted}");
    assert!(
        keys > 10_000 && keys < 17_000,
        "{keys} keys of 4 KB fit in 64 MB"
    );
    // Within the limit, give or take the per-thread publication granularity (64 KiB each).
    let used = info_field(&mut c, "memory", "used_memory");
    assert!(used <= (LIMIT_MB << 20) + (1 << 20), "used_memory {used}");
    let peak_kib = proc_status_kib(srv.pid(), "VmHWM");
    assert!(
        peak_kib <= (LIMIT_MB + OVERHEAD_MB) << 10,
        "peak RSS {peak_kib} KiB (at start {base_kib} KiB) for a {LIMIT_MB} MB limit"
    );
    // The most recent keys are there; the first ones were evicted.
    assert_eq!(s(&c.q("EXISTS k262143")), ":1\r\n");
    assert_eq!(s(&c.q("EXISTS k0")), ":0\r\n");
}

#[test]
fn noeviction_refuses_writes_but_serves_reads() {
    let srv = Server::percore(2, &["--maxmemory-policy", "noeviction"]);
    let mut c = srv.client();
    write_keys(&mut c, "base", 100, 1024);
    // A limit set at run time, 512 KB above what is in use now.
    let used = info_field(&mut c, "memory", "used_memory");
    assert_eq!(
        s(&c.q(&format!("CONFIG SET maxmemory {}", used + (512 << 10)))),
        "+OK\r\n"
    );
    let (errors, first) = write_keys(&mut c, "more", 2000, 1024);
    assert!(errors > 0);
    assert_eq!(
        first.as_deref(),
        Some("-OOM command not allowed when used memory > 'maxmemory'.\r\n")
    );
    assert_eq!(c.q("GET base1"), encode_bulk(&[b'v'; 1024]));
    assert_eq!(
        s(&c.q("DEL base1")),
        ":1\r\n",
        "DEL is not refused: it frees memory"
    );
    assert_eq!(info_field(&mut c, "stats", "evicted_keys"), 0);
    // Switching the policy at run time makes room instead.
    assert_eq!(
        s(&c.q("CONFIG SET maxmemory-policy allkeys-random")),
        "+OK\r\n"
    );
    let (errors, _) = write_keys(&mut c, "after", 200, 1024);
    assert_eq!(errors, 0);
    assert!(info_field(&mut c, "stats", "evicted_keys") > 0);
    assert!(s(&c.q("INFO memory")).contains("maxmemory_policy:allkeys-random"));
}

fn encode_bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn volatile_policies_evict_only_keys_with_a_deadline() {
    let srv = Server::percore(1, &["--maxmemory-policy", "volatile-lru"]);
    let mut c = srv.client();
    write_keys(&mut c, "keep", 200, 1024);
    for i in 0..200 {
        c.q(&format!("SET temp{i} {} EX 1000", "t".repeat(1024)));
    }
    // Below what is in use: 100 of the 200 KB with deadlines must go. MEMORY PURGE first
    // frees the spare input buffers the pipelined writes left on the core (they would
    // go before any key does, and are not what this test measures).
    assert_eq!(s(&c.q("MEMORY PURGE")), "+OK\r\n");
    let used = info_field(&mut c, "memory", "used_memory");
    c.q(&format!("CONFIG SET maxmemory {}", used - (100 << 10)));
    write_keys(&mut c, "new", 50, 16);
    for i in 0..200 {
        assert_eq!(
            s(&c.q(&format!("EXISTS keep{i}"))),
            ":1\r\n",
            "keep{i} has no deadline"
        );
    }
    assert!(info_field(&mut c, "stats", "evicted_keys") > 0);
}

#[test]
fn object_idletime_and_freq_follow_the_policy() {
    let srv = Server::percore(1, &[]);
    let mut c = srv.client();
    c.q("SET k v");
    // The LRU clock counts whole seconds, as Redis's does: a key set just before a second
    // ends is 1 second idle just after.
    let idle = s(&c.q("OBJECT IDLETIME k"));
    assert!(idle == ":0\r\n" || idle == ":1\r\n", "{idle}");
    assert!(s(&c.q("OBJECT FREQ k")).starts_with("-ERR An LFU maxmemory policy is not selected"));
    c.q("CONFIG SET maxmemory-policy allkeys-lfu");
    for _ in 0..100 {
        c.q("GET k");
    }
    let freq: i64 = s(&c.q("OBJECT FREQ k"))[1..].trim().parse().unwrap();
    assert!(freq > 5, "the counter grew from its initial 5: {freq}");
    assert!(s(&c.q("OBJECT IDLETIME k")).starts_with("-ERR An LFU maxmemory policy is selected"));
    assert_eq!(
        s(&c.q("CONFIG GET maxmemory-policy")),
        "*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lfu\r\n"
    );
    assert!(s(&c.q("CONFIG SET maxmemory-policy lru")).starts_with("-ERR"));
    assert!(s(&c.q("CONFIG SET maxmemory-samples 0")).starts_with("-ERR"));
}

fn int_reply(r: &[u8]) -> i64 {
    s(r)[1..]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an integer: {}", s(r)))
}

#[test]
fn memory_usage_stats_and_peak() {
    let srv = Server::percore(2, &[]);
    let mut c = srv.client();
    c.q("SET small v");
    c.q(&format!("SET big {}", "x".repeat(10_000)));
    let small = int_reply(&c.q("MEMORY USAGE small"));
    let big = int_reply(&c.q("MEMORY USAGE big SAMPLES 5"));
    assert!((2..200).contains(&small), "{small}");
    assert!((10_000..10_300).contains(&big), "{big}");
    assert_eq!(s(&c.q("MEMORY USAGE nokey")), "$-1\r\n");
    assert_eq!(s(&c.q("MEMORY USAGE big FOO 1")), "-ERR syntax error\r\n");

    write_keys(&mut c, "p", 2000, 4096);
    let stats = s(&c.q("MEMORY STATS"));
    assert!(stats.contains("$10\r\nkeys.count\r\n:2002\r\n"), "{stats}");
    assert!(
        stats.contains("dataset.bytes") && stats.contains("peak.allocated"),
        "{stats}"
    );
    let before = info_field(&mut c, "memory", "used_memory");
    assert_eq!(s(&c.q("FLUSHALL")), "+OK\r\n");
    // FLUSHALL frees in the background: wait until the memory is back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while info_field(&mut c, "memory", "used_memory") + (6 << 20) > before {
        assert!(std::time::Instant::now() < deadline, "memory not freed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let used = info_field(&mut c, "memory", "used_memory");
    let peak = info_field(&mut c, "memory", "used_memory_peak");
    assert!(
        peak >= before && peak > used + (6 << 20),
        "peak {peak}, used {used}, before {before}"
    );
    assert_eq!(s(&c.q("MEMORY PURGE")), "+OK\r\n");
    assert!(!c.q("MEMORY DOCTOR").is_empty());
    assert!(s(&c.q("MEMORY HELP")).contains("USAGE <key>"));
}

/// Keys per shard, from INFO shards (`shardN:keys=…`).
fn shard_keys(c: &mut Client) -> Vec<u64> {
    s(&c.q("INFO shards"))
        .lines()
        .filter(|l| l.starts_with("shard"))
        .map(|l| {
            l.split(&[':', ','][..])
                .find_map(|f| f.strip_prefix("keys="))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no keys= in {l}"))
        })
        .collect()
}

/// Redis evicts from the whole keyspace. percore evicts per shard, so a write to a shard that
/// holds no key while the process is over `maxmemory` must not be refused while another
/// shard holds keys the policy may evict: the write goes ahead and the other shard evicts.
#[test]
fn a_write_to_a_shard_without_keys_is_not_refused_while_others_can_evict() {
    let srv = Server::percore(2, &["--maxmemory-policy", "allkeys-random"]);
    let mut c = srv.client();
    // Every key of one hash tag lives on one shard.
    const FULL: u64 = 2000;
    write_keys(&mut c, "{full}:", FULL as usize, 1024);
    let counts = shard_keys(&mut c);
    let full = counts
        .iter()
        .position(|&n| n == FULL)
        .expect("one shard holds the tag");
    // Keys that land on the other, empty shard.
    let mut empty_keys = Vec::new();
    for i in 0.. {
        let k = format!("e{i}");
        assert_eq!(s(&c.q(&format!("SET {k} x"))), "+OK\r\n");
        if shard_keys(&mut c)[full] == FULL {
            empty_keys.push(k.clone());
        }
        assert_eq!(s(&c.q(&format!("DEL {k}"))), ":1\r\n");
        if empty_keys.len() == 20 {
            break;
        }
    }
    // 1 MB over the limit from now on: half the full shard's keys must go.
    let used = info_field(&mut c, "memory", "used_memory");
    let limit = used - (1 << 20);
    assert_eq!(s(&c.q(&format!("CONFIG SET maxmemory {limit}"))), "+OK\r\n");
    let value = "v".repeat(1024);
    for k in &empty_keys {
        let r = s(&c.q(&format!("SET {k} {value}")));
        assert_eq!(r, "+OK\r\n", "SET {k} on the shard without keys");
    }
    // The full shard makes the room (its background tick, or its own writes).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while info_field(&mut c, "memory", "used_memory") > limit + (128 << 10) {
        assert!(
            std::time::Instant::now() < deadline,
            "memory stayed over the limit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        shard_keys(&mut c)[full] < FULL - 500,
        "the full shard evicted"
    );
    assert!(info_field(&mut c, "stats", "evicted_keys") > 0);
    // With every shard out of keys to evict, writes are refused again: once the other
    // shard's background tick has found nothing to evict either (within its tick).
    assert_eq!(s(&c.q("FLUSHALL")), "+OK\r\n");
    assert_eq!(
        s(&c.q(&format!("CONFIG SET maxmemory {}", (64u64 << 10)))),
        "+OK\r\n"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut i = 0;
    loop {
        let k = &empty_keys[i % empty_keys.len()];
        i += 1;
        if s(&c.q(&format!("SET {k} {value}"))).starts_with("-OOM") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no key anywhere to evict, yet writes are admitted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
