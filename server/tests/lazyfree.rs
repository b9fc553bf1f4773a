//! Freeing a huge value off the request path: DEL or an overwrite of a 128 MB string answers
//! at once, and the memory goes back to the kernel in slices from the background task
//! (Redis's lazyfree). A file of its own so no other test's server competes for the CPU
//! while command times are checked.

mod common;

use common::{encode, proc_status_kib, s, Server};
use std::time::{Duration, Instant};

const MB: u64 = 1 << 20;

#[test]
fn huge_values_are_freed_in_slices_off_the_request_path() {
    // Any command of 1 ms or more lands in the slowlog: freeing a resident 128 MB string
    // (32k pages) at once takes about 3.5 ms here; handing it to the background, microseconds.
    let srv = Server::percore(1, &["--slowlog-log-slower-than", "1000"]);
    let mut c = srv.client();
    let rss = || proc_status_kib(srv.pid(), "VmRSS") * 1024;
    let start = rss();
    let chunk = vec![b'h'; 8 << 20];
    for key in [&b"del-me"[..], b"overwrite-me"] {
        for _ in 0..16 {
            c.send_raw(&encode(&[b"APPEND", key, &chunk]));
            let r = c.read_reply();
            assert_eq!(r[0], b':', "{}", s(&r));
        }
    }
    assert_eq!(s(&c.q("STRLEN del-me")), ":134217728\r\n");
    let full = rss();
    assert!(
        full > start + 250 * MB,
        "two 128 MB values resident: {start} -> {full}"
    );

    assert_eq!(s(&c.q("SLOWLOG RESET")), "+OK\r\n");
    assert_eq!(s(&c.q("DEL del-me")), ":1\r\n");
    assert_eq!(s(&c.q("SET overwrite-me small")), "+OK\r\n");
    assert_eq!(s(&c.q("GET overwrite-me")), "$5\r\nsmall\r\n");
    assert_eq!(
        s(&c.q("SLOWLOG LEN")),
        ":0\r\n",
        "DEL and SET returned without freeing: {}",
        s(&c.q("SLOWLOG GET"))
    );

    // The background task gives the pages back within a few ticks.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rss() + 200 * MB > full {
        assert!(Instant::now() < deadline, "RSS still {} after 10 s", rss());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The last slices may still be pending when RSS has crossed the mark.
    let mut info = s(&c.q("INFO memory"));
    while !info.contains("lazyfree_pending_objects:0\r\n") {
        assert!(
            Instant::now() < deadline,
            "still pending after 10 s: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
        info = s(&c.q("INFO memory"));
    }
    assert!(info.contains("mem_allocator:mimalloc-3."), "{info}");
}

/// A long list, a large set, a large sorted set and a large hash, deleted by DEL, UNLINK and
/// expiry, are handed to
/// the background (INFO counts them as pending in the same pipeline, before any background
/// tick could run) and then freed.
#[test]
fn large_collections_are_freed_in_the_background() {
    let srv = Server::percore(1, &[]);
    let mut c = srv.client();
    let batch: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("element-{i:08}").into_bytes())
        .collect();
    for (cmd, key) in [(&b"RPUSH"[..], &b"list"[..]), (b"SADD", b"set")] {
        for round in 0..200 {
            let mut args: Vec<Vec<u8>> = vec![cmd.to_vec(), key.to_vec()];
            args.extend(
                batch
                    .iter()
                    .map(|e| [e.as_slice(), format!("-{round}").as_bytes()].concat()),
            );
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            assert_eq!(c.cmd(&refs)[0], b':');
        }
    }
    for round in 0..200 {
        let mut args: Vec<Vec<u8>> = vec![b"ZADD".to_vec(), b"zset".to_vec()];
        for (i, e) in batch.iter().enumerate() {
            args.push(format!("{}", (round * 1000 + i) % 9973).into_bytes());
            args.push([e.as_slice(), format!("-{round}").as_bytes()].concat());
        }
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        assert_eq!(c.cmd(&refs)[0], b':');
    }
    for round in 0..100 {
        let mut args: Vec<Vec<u8>> = vec![b"HSET".to_vec(), b"hash".to_vec()];
        for e in &batch {
            args.push([e.as_slice(), format!("-{round}").as_bytes()].concat());
            args.push(b"v".to_vec());
        }
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        assert_eq!(c.cmd(&refs)[0], b':');
    }
    assert_eq!(s(&c.q("LLEN list")), ":200000\r\n");
    assert_eq!(s(&c.q("SCARD set")), ":200000\r\n");
    assert_eq!(s(&c.q("HLEN hash")), ":100000\r\n");
    assert_eq!(s(&c.q("ZCARD zset")), ":200000\r\n");
    assert_eq!(s(&c.q("PEXPIRE hash 1")), ":1\r\n");
    std::thread::sleep(Duration::from_millis(5));
    c.send_raw(b"DEL list\r\nUNLINK set\r\nUNLINK zset\r\nEXISTS hash\r\nINFO memory\r\n");
    assert_eq!(s(&c.read_reply()), ":1\r\n");
    assert_eq!(s(&c.read_reply()), ":1\r\n");
    assert_eq!(s(&c.read_reply()), ":1\r\n");
    assert_eq!(s(&c.read_reply()), ":0\r\n", "the hash has expired");
    let info = s(&c.read_reply());
    let pending: usize = info
        .split("lazyfree_pending_objects:")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .and_then(|n| n.parse().ok())
        .expect("INFO memory has lazyfree_pending_objects");
    assert!(
        pending >= 4,
        "the four collections wait for the background: {info}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s(&c.q("INFO memory")).contains("lazyfree_pending_objects:0\r\n") {
        assert!(Instant::now() < deadline, "still pending after 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s(&c.q("DBSIZE")), ":0\r\n");
}
