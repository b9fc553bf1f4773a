//! What the load generator's tests share: free loopback ports and a `redis-server` child.
//! Skipped with a loud message when redis-server is absent; PERCORE_REQUIRE_REDIS=1 (set by
//! CI) turns the skip into a failure.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports 12000–19999 (below the ephemeral range, apart from the server tests' 20000–31999),
/// from a per-process counter so parallel tests never share one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 12_000 + (std::process::id() * 97 + n) % 8_000;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
        assert!(n < 50_000, "no free port");
    }
}

pub struct Redis {
    pub port: u16,
    pub child: Child,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    pub fn start(extra: &[&str]) -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("PERCORE_REQUIRE_REDIS").as_deref() != Ok("1"),
                "redis-server is required (PERCORE_REQUIRE_REDIS=1) but not installed"
            );
            eprintln!("SKIPPED: redis-server is not installed (apt-get install -y redis-server)");
            return None;
        }
        // A port found free may be taken by another test's server before this one binds
        // it: then this redis-server exits while the port answers for the other. Such a
        // start is retried on another port.
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            let mut r = Redis { port, child };
            let deadline = Instant::now() + Duration::from_secs(10);
            // Listening is enough: with requirepass, PING itself is refused.
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(50));
            if r.child.try_wait().ok().flatten().is_none() {
                return Some(r);
            }
        }
        panic!("redis-server exited at start five times (ports taken?)")
    }
}
