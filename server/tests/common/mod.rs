//! Test harness: the real `percore` binary (and, for differential tests, a real
//! `redis-server`) on free loopback ports, plus a raw RESP client that reads exactly one
//! reply at a time. Readiness is detected by polling PING, never by sleeping a guess.
#![allow(dead_code)]

pub mod cluster;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port no other test of this process has been given and nobody listens on now.
///
/// Ports come from 20000–31999, below the kernel's ephemeral range (32768+), so a test
/// client's own outgoing connection can never occupy a port a server is about to bind, and
/// a per-process counter (offset by the pid) keeps parallel tests from ever being handed the
/// same port — which SO_REUSEPORT would otherwise let two servers share.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 60) * 200;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut port = base + n % 12_000;
        if port >= 32_000 {
            port -= 12_000;
        }
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
        assert!(n < 100_000, "no free port found");
    }
}

/// A server process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub port: u16,
    child: Child,
}

impl Server {
    pub fn percore(shards: usize, extra: &[&str]) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_percore"));
        // A config file, if any, must come first (as with redis-server).
        let (file, flags) = match extra.first() {
            Some(f) if !f.starts_with("--") => (Some(*f), &extra[1..]),
            _ => (None, extra),
        };
        cmd.args(file)
            .args(["--port", &port.to_string(), "--shards", &shards.to_string()])
            .args(flags);
        Self::spawn(cmd, port)
    }

    /// A real Redis, or None when `redis-server` is not installed.
    pub fn redis() -> Option<Server> {
        Self::redis_with(&[])
    }

    /// [`Server::redis`] with more settings (`--enable-debug-command yes`, …).
    pub fn redis_with(extra: &[&str]) -> Option<Server> {
        Self::named("redis-server", extra)
    }

    /// A server that takes redis-server's flags (`redis-server`, `valkey-server`), or None
    /// when `binary` is not installed.
    pub fn named(binary: &str, extra: &[&str]) -> Option<Server> {
        let port = free_port();
        let mut cmd = Command::new(binary);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra);
        if Command::new(binary)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            return None;
        }
        Some(Self::spawn(cmd, port))
    }

    fn spawn(mut cmd: Command, port: u16) -> Server {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server process");
        let mut s = Server { port, child };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited during start: {status}");
            }
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.port)) {
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                // A server with a password answers NOAUTH: it is up all the same.
                if c.write_all(b"PING\r\n").is_ok() {
                    let mut buf = [0u8; 7];
                    if c.read_exact(&mut buf).is_ok()
                        && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
                    {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "server on port {} not ready in time",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    pub fn redis_client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// A raw RESP client: writes bytes, reads whole replies.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Self::connect_to(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A client of the server at `addr` (another address than 127.0.0.1).
    pub fn connect_to(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // A server that stops reading fails the test instead of hanging it.
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            let port = self.stream.peer_addr().map_or(0, |a| a.port());
            panic!(
                "the server on port {port} did not take a {}-byte request ({e})\n{}",
                bytes.len(),
                diagnose(port)
            );
        }
    }

    pub fn send(&mut self, args: &[&[u8]]) {
        let b = encode(args);
        self.send_raw(&b);
    }

    /// Sends a command and returns its raw reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(args);
        self.read_reply()
    }

    /// `cmd` with string arguments split on spaces.
    pub fn q(&mut self, line: &str) -> Vec<u8> {
        let parts: Vec<&[u8]> = line.split(' ').map(|s| s.as_bytes()).collect();
        self.cmd(&parts)
    }

    /// Reads one complete reply; panics on timeout or EOF.
    pub fn read_reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(n) = reply_len(&self.buf) {
                let r: Vec<u8> = self.buf.drain(..n).collect();
                return r;
            }
            let mut tmp = [0u8; 65536];
            let n = match self.stream.read(&mut tmp) {
                Ok(n) => n,
                Err(e) => {
                    let port = self.stream.peer_addr().map_or(0, |a| a.port());
                    panic!(
                        "no reply from the server on port {port} ({e}); partial reply so far: {:?}\n{}",
                        String::from_utf8_lossy(&self.buf),
                        diagnose(port)
                    )
                }
            };
            assert!(
                n > 0,
                "connection closed while waiting for a reply (have {:?})",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// True when the server closes the connection (EOF) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }
}

/// What a fresh connection learns from a server that left another one waiting: whether it
/// answers at all, and its view of its clients.
fn diagnose(port: u16) -> String {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return "a fresh connection is refused".into();
    };
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(b"PING\r\nCLIENT LIST\r\nINFO shards\r\n");
    std::thread::sleep(Duration::from_millis(500));
    let mut buf = vec![0u8; 1 << 16];
    let verdict = match c.read(&mut buf) {
        Ok(n) => format!(
            "a fresh connection gets: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => format!("a fresh connection gets no answer either: {e}"),
    };
    // Where the server's threads are, when gdb is at hand (diagnostics only).
    let pid = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ss -ltnpH 'sport = :{port}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2"
        ))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let stacks = if pid.is_empty() {
        String::new()
    } else {
        Command::new("gdb")
            .args(["-p", &pid, "-batch", "-ex", "thread apply all bt 30"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    // The rings' and eventfds' kernel-side state: entries submitted or not, operations
    // armed, eventfd counts.
    let mut fdinfo = String::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            if target.contains("io_uring") || target.contains("eventfd") {
                let name = fd.file_name().to_string_lossy().into_owned();
                let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{name}"))
                    .unwrap_or_default();
                fdinfo.push_str(&format!("== fd {name} {target}\n{info}\n"));
            }
        }
    }
    let stacks = format!("{stacks}\n{fdinfo}");
    if !pid.is_empty() {
        let _ = std::fs::write(
            std::env::temp_dir().join(format!("percore-stuck-{port}.txt")),
            &stacks,
        );
    }
    format!("{verdict}\nserver pid {pid}; thread stacks saved to the temp dir as percore-stuck-{port}.txt")
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        b.extend_from_slice(a);
        b.extend_from_slice(b"\r\n");
    }
    b
}

/// Length of the first complete RESP2/RESP3 reply in `b`, if complete (proto's scanner).
pub fn reply_len(b: &[u8]) -> Option<usize> {
    match percore_proto::scan_reply(b) {
        Ok(r) => r.map(|(len, _)| len),
        Err(e) => panic!("not a RESP reply ({e:?}): {:?}", String::from_utf8_lossy(b)),
    }
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM, …).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.split(':').next() == Some(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// The integer after `name=` in an INFO line's `a=1,b=2` list (`keys=` of a keyspace or
/// shard line, `usec=` of a commandstats line).
#[allow(dead_code)]
pub fn info_int(line: &str, name: &str) -> u64 {
    let value = line
        .split([':', ','])
        .find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in {line}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("{name}= is not an integer in {line}"))
}

pub fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How to start a `percore` beyond [`Server::percore`]: the exact argument list (nothing is
/// added, so a config file may set the port), the working directory, a file that receives its
/// stderr (the log), an open-files limit set in the child before exec, and the address the
/// readiness probe uses (127.0.0.1 unless told).
pub struct Launch {
    port: u16,
    args: Vec<String>,
    cwd: Option<std::path::PathBuf>,
    log: Option<std::path::PathBuf>,
    nofile: Option<u64>,
    ready_ip: std::net::IpAddr,
}

/// A start that ended before the server answered PING: its exit status (None: it never
/// answered and was stopped) and what it wrote to its log file, if it had one.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<std::process::ExitStatus>,
    pub log: String,
}

impl Launch {
    /// `percore <args>`, expected to answer on `port`.
    pub fn percore(port: u16, args: &[&str]) -> Launch {
        Launch {
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            cwd: None,
            log: None,
            nofile: None,
            ready_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        }
    }

    pub fn cwd(mut self, dir: &std::path::Path) -> Launch {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Appends the server's stderr to `file` (created if missing), so that one file can
    /// hold the logs of several successive servers.
    pub fn log(mut self, file: &std::path::Path) -> Launch {
        self.log = Some(file.to_path_buf());
        self
    }

    /// RLIMIT_NOFILE soft = hard = `n` in the child.
    pub fn nofile(mut self, n: u64) -> Launch {
        self.nofile = Some(n);
        self
    }

    pub fn ready_on(mut self, ip: std::net::IpAddr) -> Launch {
        self.ready_ip = ip;
        self
    }

    /// Starts the server and waits until it answers PING; panics with its exit status and
    /// log if it does not.
    pub fn start(self) -> Server {
        let what = format!("percore {}", self.args.join(" "));
        match self.try_start() {
            Ok(s) => s,
            Err(f) => panic!(
                "`{what}` did not start: {}\n--- its log ---\n{}",
                f.status
                    .map_or("no answer within 20 s".to_string(), |s| s.to_string()),
                f.log
            ),
        }
    }

    /// Starts the server and waits until it answers PING (or NOAUTH, or DENIED: it is up
    /// all the same); a process that exits first, or never answers within 20 s, is a
    /// [`StartFailure`] (and in the latter case is stopped).
    pub fn try_start(self) -> Result<Server, StartFailure> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_percore"));
        cmd.args(&self.args).stdout(Stdio::null());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        match &self.log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the server's log file");
                cmd.stderr(f);
            }
            None => {
                cmd.stderr(Stdio::null());
            }
        }
        if let Some(n) = self.nofile {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: the closure runs in the forked child before exec and calls only
            // setrlimit(2), which is async-signal-safe; `lim` is a copy owned by the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("start server process");
        let mut srv = Server {
            port: self.port,
            child,
        };
        let log = |path: &Option<std::path::PathBuf>| {
            path.as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = srv.child.try_wait() {
                return Err(StartFailure {
                    status: Some(status),
                    log: log(&self.log),
                });
            }
            if let Ok(mut c) = TcpStream::connect((self.ready_ip, self.port)) {
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                if c.write_all(b"PING\r\n").is_ok() {
                    let mut buf = [0u8; 7];
                    if c.read_exact(&mut buf).is_ok()
                        && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH" || &buf == b"-DENIED")
                    {
                        return Ok(srv);
                    }
                }
            }
            if Instant::now() > deadline {
                drop(srv);
                return Err(StartFailure {
                    status: None,
                    log: log(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Server {
    /// Sends `sig` to the server if it is still running (a reaped pid could belong to
    /// another process by now, so an exited server gets nothing).
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.is_running() {
            // SAFETY: kill(2) on our own child, which has not been reaped (try_wait said so).
            unsafe { libc::kill(self.child.id() as i32, sig) };
        }
    }

    /// Sends `sig` and waits up to `within` for the process to exit.
    pub fn stop_with(
        &mut self,
        sig: libc::c_int,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        self.signal(sig);
        self.wait_exit(within)
    }
}

/// A real Redis for a comparison, or None — said loudly — when redis-server is not installed;
/// with PERCORE_REQUIRE_REDIS set (CI), its absence is a failure. `what` names what is skipped.
pub fn redis_or_skip(what: &str) -> Option<Server> {
    redis_or_skip_with(what, &[])
}

/// [`redis_or_skip`] with more settings for the Redis.
pub fn redis_or_skip_with(what: &str, extra: &[&str]) -> Option<Server> {
    let r = Server::redis_with(extra);
    if r.is_none() {
        assert!(
            std::env::var("PERCORE_REQUIRE_REDIS").is_err(),
            "redis-server is required (PERCORE_REQUIRE_REDIS is set)"
        );
        eprintln!("SKIPPED: redis-server not installed; {what} (apt-get install redis-server)");
    }
    r
}

/// Bytes as escaped ASCII, for failure messages.
pub fn esc(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// The differential tests' servers: a Redis given `flags` (`--name value` pairs) by CONFIG
/// SET, and percore with 1 and with 3 shards started with them; None, after
/// [`redis_or_skip`]'s message (naming `what`), when redis-server is missing.
pub fn redis_and_percores(what: &str, flags: &[&str]) -> Option<(Server, [(usize, Server); 2])> {
    let redis = redis_or_skip(what)?;
    let mut c = redis.client();
    for kv in flags.chunks(2) {
        let name = kv[0].trim_start_matches("--").as_bytes();
        let ok = c.cmd(&[b"CONFIG", b"SET", name, kv[1].as_bytes()]);
        assert_eq!(ok, b"+OK\r\n", "Redis: CONFIG SET {}: {}", kv[0], esc(&ok));
    }
    Some((redis, [1, 3].map(|n| (n, Server::percore(n, flags)))))
}

/// Runs `f(redis, percore, resp3, seed, label)` for each server of [`redis_and_percores`],
/// each protocol (RESP2, then RESP3) and each seed (one run with seed 0, unnamed in the
/// label, when there are none); the label names the run for failure messages.
pub fn each_differential_run(
    what: &str,
    flags: &[&str],
    seeds: &[u64],
    mut f: impl FnMut(&Server, &Server, bool, u64, String),
) {
    let Some((redis, percores)) = redis_and_percores(&format!("{what}: did not run"), flags) else {
        return;
    };
    let runs: &[u64] = if seeds.is_empty() { &[0] } else { seeds };
    for ((shards, percore), resp3) in percores.iter().flat_map(|p| [(p, false), (p, true)]) {
        for &seed in runs {
            let run = format!("{what}, percore {shards} shard(s), RESP{}", 2 + resp3 as u8);
            let label = match seeds.is_empty() {
                true => run,
                false => format!("{run}, seed {seed}"),
            };
            f(&redis, percore, resp3, seed, label);
        }
    }
}

/// A fresh directory under the system's temp dir (its canonical path), removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "percore-test-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(std::fs::canonicalize(&p).unwrap())
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command line for the differential tables: words split on spaces, `\xHH` escapes,
/// `""` an empty word.
pub fn words(line: &str) -> Vec<Vec<u8>> {
    let arg = |w: &str| {
        let mut parts = w.split(r"\x");
        let mut out = parts.next().unwrap_or("").replace(r#""""#, "").into_bytes();
        for p in parts {
            out.push(u8::from_str_radix(&p[..2], 16).expect("\\xHH escape"));
            out.extend(p[2..].bytes());
        }
        out
    };
    line.split(' ').map(arg).collect()
}

/// A command for failure messages, as the tables write it: words joined by spaces, each
/// escaped (`""` when empty, a space as `\x20`), a run of 10 or more of one letter or digit
/// as `N*c`, and a word longer than 200 characters escaped cut there, with its length.
pub fn show(args: &[Vec<u8>]) -> String {
    let word = |a: &Vec<u8>| match &a[..] {
        [] => r#""""#.to_string(),
        [c, ..] if a.len() >= 10 && c.is_ascii_alphanumeric() && a.iter().all(|b| b == c) => {
            format!("{}*{}", a.len(), *c as char)
        }
        _ => {
            let e = esc(a).replace(' ', r"\x20");
            match e.len() > 200 {
                true => format!("{}…({} bytes)", &e[..200], a.len()),
                false => e,
            }
        }
    };
    args.iter().map(word).collect::<Vec<_>>().join(" ")
}

/// A reply for a failure message: whole up to 3000 bytes, else its first 1000 bytes, the
/// 2000 from 500 before `at` (the first difference) when that lies past them, and its length.
pub fn show_reply(b: &[u8], at: Option<usize>) -> String {
    if b.len() <= 3000 {
        return esc(b);
    }
    let mut out = esc(&b[..1000]);
    if let Some(at) = at.filter(|&at| at > 1000 && at < b.len()) {
        let from = (at - 500).max(1000);
        let to = (at + 1500).min(b.len());
        out += &format!("…[from byte {from}]{}", esc(&b[from..to]));
    }
    out + &format!("… ({} bytes in all)", b.len())
}

/// Every bulk string (and RESP3 double) in a reply, in order: enough to read KEYS and SCAN
/// pages.
pub fn bulks(r: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < r.len() {
        let end = i + r[i..].windows(2).position(|w| w == b"\r\n").unwrap();
        let line = &r[i..end];
        i = end + 2;
        match line.first() {
            Some(b'$') => {
                let n: usize = std::str::from_utf8(&line[1..]).unwrap().parse().unwrap();
                out.push(r[i..i + n].to_vec());
                i += n + 2;
            }
            Some(b',') => out.push(line[1..].to_vec()),
            _ => {}
        }
    }
    out
}

/// splitmix64, from a fixed seed: what the random streams draw from.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// In [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick<T: Copy>(&mut self, list: &[T]) -> T {
        list[self.below(list.len())]
    }

    /// One of the words of `list`, which are separated by spaces.
    pub fn pick_word<'a>(&mut self, list: &'a str) -> &'a str {
        let words: Vec<&str> = list.split(' ').collect();
        words[self.below(words.len())]
    }

    /// The words of one of `templates`, which are separated by `|` (see the random streams'
    /// `gen`).
    pub fn template<'a>(&mut self, templates: &'a str) -> std::str::Split<'a, char> {
        let all: Vec<&str> = templates.split('|').collect();
        all[self.below(all.len())].split(' ')
    }

    /// One of the words of `list` (see [`words`]).
    pub fn word(&mut self, list: &str) -> Vec<u8> {
        words(self.pick_word(list)).remove(0)
    }
}

/// One client on Redis and one on percore, fed the same commands; every reply must be the
/// same byte for byte. Keeps the commands sent, for failure messages.
pub struct Diff {
    pub c: [Client; 2],
    pub what: String,
    pub log: Vec<String>,
}

impl Diff {
    /// Clients on both servers, after FLUSHALL, in RESP3 when `resp3`.
    pub fn new(redis: &Server, percore: &Server, resp3: bool, what: String) -> Diff {
        let mut c = [redis.client(), percore.client()];
        for c in &mut c {
            assert_eq!(esc(&c.q("FLUSHALL")), r"+OK\r\n", "{what}");
            if resp3 {
                let hello = c.q("HELLO 3");
                assert_eq!(hello[0], b'%', "{what}: HELLO 3: {}", esc(&hello));
            }
        }
        Diff {
            c,
            what,
            log: Vec::new(),
        }
    }

    /// Sends `args` to both (logged as [`show`] writes them); the two replies, Redis's first.
    pub fn both(&mut self, args: &[Vec<u8>]) -> [Vec<u8>; 2] {
        self.log.push(show(args));
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        self.c.each_mut().map(|c| c.cmd(&refs))
    }

    /// Fails on Redis's reply `w` and percore's `g` ([`show_reply`]), saying where they
    /// first differ.
    pub fn fail(&self, w: &[u8], g: &[u8], why: &str) -> ! {
        let at = w.iter().zip(g).position(|(a, b)| a != b);
        let at = at.or((w.len() != g.len()).then(|| w.len().min(g.len())));
        let why = match at {
            Some(at) => format!(
                "{why} (first difference at byte {at}, lengths {} and {})",
                w.len(),
                g.len()
            ),
            None => why.to_string(),
        };
        self.fail_shown(&why, [show_reply(w, at), show_reply(g, at)])
    }

    /// Fails with `why`, what to show for each server (Redis first) and the recent
    /// commands (with how many were sent in all).
    pub fn fail_shown(&self, why: &str, shown: [String; 2]) -> ! {
        let recent = &self.log[self.log.len().saturating_sub(15)..];
        panic!(
            "{}: {why}\n redis:   {}\n percore: {}\nrecent commands (the last {} of {}):\n  {}",
            self.what,
            shown[0],
            shown[1],
            recent.len(),
            self.log.len(),
            recent.join("\n  ")
        )
    }

    /// Sends `args` to both; the replies must be the same. Returns Redis's.
    pub fn same(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        self.check(args, "replies differ")
    }

    /// [`Diff::same`], failing with `why`.
    pub fn check(&mut self, args: &[Vec<u8>], why: &str) -> Vec<u8> {
        let [w, g] = self.both(args);
        if w != g {
            self.fail(&w, &g, why);
        }
        w
    }

    /// Both servers must report the same OBJECT ENCODING of `key`; returns Redis's reply.
    pub fn encoding(&mut self, key: &[u8]) -> Vec<u8> {
        let args = [&b"OBJECT"[..], b"ENCODING", key].map(<[u8]>::to_vec);
        self.check(&args, "encodings differ")
    }

    /// Both servers must answer `line` (see [`words`]) the same.
    pub fn line(&mut self, line: &str) -> Vec<u8> {
        self.same(&words(line))
    }
}

/// A percore node in cluster mode made a one-node cluster: it takes every slot (unless its
/// nodes file already gave them). A lone node's cluster_state is ok at once.
pub fn own_all_slots(srv: &Server) {
    let mut c = srv.client();
    if !s(&c.q("CLUSTER INFO")).contains("cluster_slots_assigned:16384") {
        assert_eq!(s(&c.q("CLUSTER ADDSLOTSRANGE 0 16383")), "+OK\r\n");
    }
    assert!(s(&c.q("CLUSTER INFO")).contains("cluster_state:ok"));
}

/// A redis-server in cluster mode, alone and without slots, its nodes file in `dir`, with
/// `extra` settings; None (a note naming `what`) when it is not installed.
pub fn redis_cluster_node(dir: &TempDir, what: &str, extra: &[&str]) -> Option<Server> {
    let file = format!("{}/nodes-redis-{}.conf", dir.path(), free_port());
    // An explicit bus port: port + 10000 is past 65535 for half the free ports.
    let bus = free_port().to_string();
    let mut flags = vec![
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &file,
        "--cluster-port",
        &bus,
    ];
    flags.extend(extra);
    redis_or_skip_with(what, &flags)
}

/// A redis-server in cluster mode (its nodes file in `dir`) that owns all slots and says
/// `cluster_state:ok`, or None (a note naming `what`) when it is not installed.
pub fn redis_cluster(dir: &TempDir, what: &str) -> Option<Server> {
    let redis = redis_cluster_node(dir, what, &[])?;
    let mut c = redis.client();
    assert_eq!(s(&c.q("CLUSTER ADDSLOTSRANGE 0 16383")), "+OK\r\n");
    let t = Instant::now();
    while !s(&c.q("CLUSTER INFO")).contains("cluster_state:ok") {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "redis cluster state never ok"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(redis)
}

/// A key's shard among `shards` outside cluster mode, by the rule the README gives:
/// `(xxh3(tag) × shards) >> 64`, where `tag` is the key's non-empty `{…}` hash tag or else
/// the whole key.
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    let tag = match key.iter().position(|&c| c == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    ((xxhash_rust::xxh3::xxh3_64(tag) as u128 * shards as u128) >> 64) as usize
}
