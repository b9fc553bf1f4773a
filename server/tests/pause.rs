//! CLIENT PAUSE / UNPAUSE: held commands, what each mode holds, expiry standing still, on
//! every core; replies compared with redis-server.

mod common;

use common::{s, Client, Server};
use std::time::Duration;

/// Whether a reply arrives within `ms` (the client's socket is left as it was).
fn answers_within(c: &mut Client, ms: u64) -> bool {
    let stream = &c.stream;
    stream
        .set_read_timeout(Some(Duration::from_millis(ms)))
        .unwrap();
    let mut b = [0u8; 1];
    let r = stream.peek(&mut b);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    matches!(r, Ok(n) if n > 0)
}

#[test]
fn pause_replies_and_expiry_as_redis() {
    let Some(redis) = common::redis_or_skip("CLIENT PAUSE against redis-server") else {
        return;
    };
    let srv = Server::percore(3, &[]);
    for (mut c, mut other) in [
        (redis.client(), redis.client()),
        (srv.client(), srv.client()),
    ] {
        for (q, want) in [
            ("CLIENT PAUSE x", "-ERR timeout is not an integer or out of range\r\n"),
            ("CLIENT PAUSE -1", "-ERR timeout is negative\r\n"),
            ("CLIENT PAUSE 10 NONE", "-ERR CLIENT PAUSE mode must be WRITE or ALL\r\n"),
            (
                "CLIENT PAUSE 10 WRITE ALL",
                "-ERR unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP.\r\n",
            ),
            ("CLIENT PAUSE 0", "+OK\r\n"),
            ("CLIENT UNPAUSE", "+OK\r\n"),
        ] {
            assert_eq!(s(&c.q(q)), want, "{q}");
        }
        // Keys do not expire while clients are paused: absent to reads, still counted.
        c.q("FLUSHALL");
        c.q("SET gone v PX 50");
        c.q("SET kept v");
        assert_eq!(s(&c.q("CLIENT PAUSE 5000 WRITE")), "+OK\r\n");
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(s(&other.q("GET gone")), "$-1\r\n");
        assert_eq!(s(&other.q("EXISTS gone")), ":0\r\n");
        assert_eq!(
            s(&other.q("DBSIZE")),
            ":2\r\n",
            "the expired key stays while paused"
        );
        assert_eq!(s(&other.q("GET kept")), "$1\r\nv\r\n", "reads go on");
        // A write waits; the pause's end lets it through.
        other.send(&[b"SET", b"kept", b"w"]);
        assert!(
            !answers_within(&mut other, 200),
            "a write ran during CLIENT PAUSE WRITE"
        );
        assert_eq!(s(&c.q("GET kept")), "$1\r\nv\r\n");
        assert_eq!(s(&c.q("CLIENT UNPAUSE")), "+OK\r\n");
        assert_eq!(s(&other.read_reply()), "+OK\r\n");
        assert_eq!(s(&c.q("GET kept")), "$1\r\nw\r\n");
        assert_eq!(s(&c.q("GET gone")), "$-1\r\n");
        assert_eq!(s(&c.q("DBSIZE")), ":1\r\n", "expiry resumes");
    }
}

#[test]
fn each_mode_holds_what_redis_holds_on_every_core() {
    let srv = Server::percore(3, &[]);
    let mut admin = srv.client();
    let mut clients: Vec<Client> = (0..6).map(|_| srv.client()).collect();
    admin.q("SET k 1");
    assert_eq!(s(&admin.q("CLIENT PAUSE 10000 WRITE")), "+OK\r\n");
    // Not held by WRITE: reads, EVAL_RO, PING, a transaction of reads.
    for c in clients.iter_mut() {
        assert_eq!(s(&c.q("GET k")), "$1\r\n1\r\n");
        assert_eq!(s(&c.cmd(&[b"EVAL_RO", b"return 2", b"0"])), ":2\r\n");
        assert_eq!(s(&c.q("MULTI")), "+OK\r\n");
        assert_eq!(s(&c.q("GET k")), "+QUEUED\r\n");
        assert_eq!(s(&c.q("EXEC")), "*1\r\n$1\r\n1\r\n");
    }
    // Held by WRITE, on every connection (they sit on different cores).
    let held: [&[&[u8]]; 6] = [
        &[b"INCR", b"k"],
        &[b"EVAL", b"return 1", b"0"],
        &[b"PUBLISH", b"ch", b"m"],
        &[b"PFCOUNT", b"hll"],
        &[b"DEL", b"k"],
        &[b"EXPIRE", b"k", b"100"],
    ];
    for (c, cmd) in clients.iter_mut().zip(held) {
        c.send(cmd);
    }
    for (c, cmd) in clients.iter_mut().zip(held) {
        assert!(
            !answers_within(c, 150),
            "{} ran during CLIENT PAUSE WRITE",
            s(cmd[0])
        );
    }
    // An EXEC of a transaction that writes is held too (its queued command was held first).
    assert_eq!(s(&admin.q("CLIENT UNPAUSE")), "+OK\r\n");
    for c in clients.iter_mut() {
        let r = s(&c.read_reply());
        assert!(!r.starts_with('-'), "{r}");
    }
    // ALL holds everything, the pausing client's next command too, until the pause ends.
    assert_eq!(s(&admin.q("CLIENT PAUSE 400 ALL")), "+OK\r\n");
    clients[0].send(&[b"PING"]);
    assert!(
        !answers_within(&mut clients[0], 150),
        "PING ran during CLIENT PAUSE ALL"
    );
    assert_eq!(
        s(&clients[0].read_reply()),
        "+PONG\r\n",
        "the pause ended by itself"
    );
    // A second pause keeps the stricter mode and the later end.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s(&admin.q("CLIENT PAUSE 1500 WRITE")), "+OK\r\n");
    assert_eq!(s(&admin.q("CLIENT PAUSE 10 ALL")), "+OK\r\n");
    clients[1].send(&[b"GET", b"absent"]);
    assert!(
        !answers_within(&mut clients[1], 300),
        "ALL did not take over"
    );
    assert_eq!(
        s(&clients[1].read_reply()),
        "$-1\r\n",
        "held until the later end"
    );
}
