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
