//! An operator's first hour, stated as Redis 7.0 behaves: signals (SIGTERM and SIGINT save when
//! save points are set and exit 0, SIGHUP is logged and survived, writes acknowledged before a
//! SIGTERM are never lost), `dir` (the working directory by default, relative paths, CONFIG SET
//! dir, a failed save), restarts on the same port whatever clients are left connected, config
//! files (`save` lines, `include`), `--help`, protected mode on a dual-stack listener, a low
//! descriptor limit, and error texts compared with a real `redis-server` when one is installed.
//!
//! Every test runs the real binary on free 127.0.0.1 ports, in a temporary directory of its own
//! that is also the server's working directory (so nothing is ever written into the
//! repository), with the server's stderr in a log file the test reads. Readiness and events are
//! awaited by polling with deadlines; every process is stopped by a drop guard, also on panic.

mod common;

use common::{encode, free_port, reply_len, s, Client, Launch, Server, TempDir};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One test's world: a temporary directory whose `cwd/` is the servers' working directory and
/// whose `percore.log` receives their stderr (appended, one server after the other), and one
/// port kept for every server of the test, so that restarts reuse it.
struct Site {
    tmp: TempDir,
    port: u16,
}

impl Site {
    fn new(tag: &str) -> Site {
        let tmp = TempDir::new(tag);
        std::fs::create_dir(tmp.0.join("cwd")).unwrap();
        Site {
            tmp,
            port: free_port(),
        }
    }

    fn cwd(&self) -> PathBuf {
        self.tmp.0.join("cwd")
    }

    /// A new directory `name` in the temp dir (outside the working directory).
    fn dir(&self, name: &str) -> PathBuf {
        let p = self.tmp.0.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.tmp.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.0.join("percore.log")
    }

    fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Polls the log for `needle` for up to `within`; false if it never appears.
    fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `percore --port P --shards N <extra>`, in `cwd/`, logging to `percore.log`.
    fn launch(&self, shards: usize, extra: &[&str]) -> Launch {
        let port = self.port.to_string();
        let shards = shards.to_string();
        let mut args = vec!["--port", &port, "--shards", &shards];
        args.extend_from_slice(extra);
        self.launch_args(&args)
    }

    /// `percore <args>` exactly, in `cwd/`, logging to `percore.log`.
    fn launch_args(&self, args: &[&str]) -> Launch {
        Launch::percore(self.port, args)
            .cwd(&self.cwd())
            .log(&self.log_path())
    }

    fn start(&self, shards: usize, extra: &[&str]) -> Server {
        self.launch(shards, extra).start()
    }

    fn client(&self) -> Client {
        Client::connect(self.port)
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// The last `n` characters of a log, for failure messages.
fn tail(log: &str, n: usize) -> &str {
    let mut at = log.len().saturating_sub(n);
    while !log.is_char_boundary(at) {
        at += 1;
    }
    &log[at..]
}

/// The value of `CONFIG GET name` (RESP2: a two-element array).
fn config_get(c: &mut Client, name: &str) -> String {
    let r = s(&c.q(&format!("CONFIG GET {name}")));
    let parts: Vec<&str> = r.split("\r\n").collect();
    assert!(
        parts.len() >= 5 && parts[0] == "*2" && parts[2] == name,
        "CONFIG GET {name} answered {r:?}"
    );
    parts[4].to_string()
}

fn info_field(c: &mut Client, field: &str) -> String {
    let info = s(&c.q("INFO persistence"));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
}

/// Snapshot files (`*.pcs`) in `dir`, sorted.
fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcs"))
        .collect();
    v.sort();
    v
}

/// Every file under `dir` (recursively) whose name says it belongs to a snapshot set: `.pcs`,
/// temporaries, manifests.
fn snapshot_debris(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            found.extend(snapshot_debris(&p));
        } else if name.contains(".pcs") || name.contains(".tmp") || name.contains("manifest") {
            found.push(p);
        }
    }
    found
}

/// Waits until no BGSAVE is in progress and `manifest` exists, then checks it succeeded.
fn wait_bgsave(c: &mut Client, manifest: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while info_field(c, "rdb_bgsave_in_progress") != "0" || !manifest.exists() {
        assert!(
            Instant::now() < deadline,
            "BGSAVE did not finish with {} written within 20 s",
            manifest.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info_field(c, "rdb_last_bgsave_status"), "ok");
}

/// Asserts Redis's log line shape: `pid:M dd Mon yyyy hh:mm:ss.mmm <mark> message`.
fn assert_redis_log_shape(line: &str, pid: u32) {
    let shaped = (|| {
        let (p, rest) = line.split_once(':')?;
        (p == pid.to_string()).then_some(())?;
        let b = rest.strip_prefix("M ")?.as_bytes();
        let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
        (b.len() > 27
            && digits(0..2)
            && b[2] == b' '
            && b[3..6].iter().all(u8::is_ascii_alphabetic)
            && b[6] == b' '
            && digits(7..11)
            && b[11] == b' '
            && digits(12..14)
            && b[14] == b':'
            && digits(15..17)
            && b[17] == b':'
            && digits(18..20)
            && b[20] == b'.'
            && digits(21..24)
            && b[24] == b' '
            && b"*#-.".contains(&b[25])
            && b[26] == b' ')
            .then_some(())
    })();
    assert!(
        shaped.is_some(),
        "not Redis's log line shape `{pid}:M dd Mon yyyy hh:mm:ss.mmm * message`: {line:?}"
    );
}

/// Bytes the kernel holds for `s` that the test has not read yet.
fn unread_bytes(s: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`; the descriptor is open for the whole call.
    unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    n.max(0) as usize
}

/// Polls until the server has sent `s` at least `bytes` the test has not read.
fn wait_unread(s: &TcpStream, bytes: usize, what: &str, site: &Site) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while unread_bytes(s) < bytes {
        assert!(
            Instant::now() < deadline,
            "{what}: the server sent only {} of {bytes} bytes within 10 s\n{}",
            unread_bytes(s),
            tail(&site.log(), 3000)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Signals
// ---------------------------------------------------------------------------------------------

/// SIGTERM or SIGINT with a save point: the set is saved, the process exits 0, and the next
/// server on the same dir and port has the key.
fn a_stop_signal_saves_and_the_set_loads(sig: libc::c_int) {
    let name = signal_name(sig);
    let site = Site::new(&name.to_ascii_lowercase());
    let data = site.dir("data");
    let args = ["--dir", path_str(&data), "--save", "3600 1"];
    let mut srv = site.start(2, &args);
    assert_eq!(s(&site.client().q("SET a 1")), "+OK\r\n");
    let status = srv
        .stop_with(sig, Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "percore still runs 10 s after {name}\n{}",
                tail(&site.log(), 3000)
            )
        });
    let log = site.log();
    assert!(
        status.success(),
        "{name}: exit status {status}, want 0\n{log}"
    );
    let wanted = format!("Received {name} scheduling shutdown...");
    let line = log
        .lines()
        .find(|l| l.contains(&wanted))
        .unwrap_or_else(|| panic!("no `{wanted}` in the log:\n{log}"));
    assert_redis_log_shape(line, srv.pid());
    assert!(
        log.contains("DB saved on disk"),
        "no `DB saved on disk` in the log:\n{log}"
    );
    assert!(
        data.join("percore.manifest").exists(),
        "no percore.manifest in the dir after {name}"
    );
    let _srv = site.start(2, &args);
    assert_eq!(
        s(&site.client().q("GET a")),
        "$1\r\n1\r\n",
        "the key written before {name} after the restart\n{}",
        site.log()
    );
}

#[test]
fn sigterm_saves_exits_0_and_the_set_loads_on_restart() {
    a_stop_signal_saves_and_the_set_loads(libc::SIGTERM);
}

#[test]
fn sigint_saves_exits_0_and_the_set_loads_on_restart() {
    a_stop_signal_saves_and_the_set_loads(libc::SIGINT);
}

/// Without save points (`--save ""`, and the default) SIGTERM exits 0 and writes nothing.
#[test]
fn sigterm_without_save_points_exits_0_and_writes_no_snapshot() {
    let site = Site::new("nosave");
    let data = site.dir("data");
    for extra in [&["--save", ""][..], &[][..]] {
        let mut args = vec!["--dir", path_str(&data)];
        args.extend_from_slice(extra);
        let mut srv = site.start(1, &args);
        assert_eq!(s(&site.client().q("SET a 1")), "+OK\r\n");
        let status = srv
            .stop_with(libc::SIGTERM, Duration::from_secs(10))
            .expect("percore exits within 10 s of SIGTERM");
        let log = site.log();
        assert!(
            status.success(),
            "{args:?}: exit status {status}, want 0\n{log}"
        );
        assert!(
            log.contains("Received SIGTERM scheduling shutdown..."),
            "{log}"
        );
        assert!(
            !log.contains("DB saved on disk"),
            "{args:?}: saved without save points\n{log}"
        );
        let debris = snapshot_debris(&site.tmp.0);
        assert!(
            debris.is_empty(),
            "{args:?}: snapshot files without save points: {debris:?}"
        );
    }
}

#[test]
fn sigterm_restart_restores_every_database() {
    let site = Site::new("dbs");
    let data = site.dir("data");
    let args = ["--dir", path_str(&data), "--save", "3600 1"];
    let mut srv = site.start(2, &args);
    let mut c = site.client();
    for db in [0, 5, 15] {
        c.q(&format!("SELECT {db}"));
        for i in 0..20 {
            assert_eq!(s(&c.q(&format!("SET db{db}:k{i} v{db}.{i}"))), "+OK\r\n");
        }
    }
    drop(c);
    let status = srv
        .stop_with(libc::SIGTERM, Duration::from_secs(10))
        .expect("percore exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", site.log());
    let _srv = site.start(2, &args);
    let mut c = site.client();
    for db in 0..16 {
        c.q(&format!("SELECT {db}"));
        let want = if [0, 5, 15].contains(&db) { 20 } else { 0 };
        assert_eq!(
            s(&c.q("DBSIZE")),
            format!(":{want}\r\n"),
            "db {db} after the SIGTERM restart\n{}",
            site.log()
        );
        if want > 0 {
            for i in 0..20 {
                let v = format!("v{db}.{i}");
                assert_eq!(
                    s(&c.q(&format!("GET db{db}:k{i}"))),
                    format!("${}\r\n{v}\r\n", v.len()),
                    "db {db}"
                );
            }
        }
    }
}

#[test]
fn sighup_is_logged_and_the_server_keeps_serving() {
    let site = Site::new("sighup");
    let mut srv = site.start(1, &[]);
    let mut c = site.client();
    assert_eq!(s(&c.q("SET a 1")), "+OK\r\n");
    srv.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !site.log().contains("SIGHUP") && srv.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        srv.is_running(),
        "percore ended on SIGHUP: {:?}\n{}",
        srv.wait_exit(Duration::ZERO),
        site.log()
    );
    let log = site.log();
    let line = log
        .lines()
        .find(|l| l.contains("SIGHUP"))
        .unwrap_or_else(|| panic!("no line with SIGHUP in the log within 5 s:\n{log}"));
    assert_redis_log_shape(line, srv.pid());
    assert_eq!(
        s(&c.q("PING")),
        "+PONG\r\n",
        "the connection open at SIGHUP"
    );
    assert_eq!(
        s(&site.client().q("GET a")),
        "$1\r\n1\r\n",
        "a new connection"
    );
}

/// A client pipelines SETs k0..k19999 and reads the replies while SIGTERM arrives: after the
/// restart, every key whose +OK it received exists with its value.
#[test]
fn writes_acknowledged_before_sigterm_survive_the_restart() {
    const N: usize = 20_000;
    const CHUNK: usize = 100;
    const SIGNAL_AT: usize = 2_000;
    let site = Site::new("acked");
    let data = site.dir("data");
    let args = ["--dir", path_str(&data), "--save", "3600 1"];
    let mut srv = site.start(2, &args);
    let mut stream = TcpStream::connect(("127.0.0.1", site.port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        // Paced to last about two seconds, so that SIGTERM (sent after the first 2,000
        // replies) meets the stream mid-way however fast this build is.
        for from in (0..N).step_by(CHUNK) {
            let mut req = Vec::new();
            for i in from..from + CHUNK {
                req.extend_from_slice(&encode(&[
                    b"SET",
                    format!("k{i}").as_bytes(),
                    format!("v{i}").as_bytes(),
                ]));
            }
            if writer.write_all(&req).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    // Replies come in command order: the i-th reply answers the SET of k{i}.
    let mut acked: Vec<usize> = Vec::new();
    let mut replies = 0usize;
    let mut signalled = false;
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 1 << 16];
    loop {
        while let Some(n) = reply_len(&buf) {
            if &buf[..n] == b"+OK\r\n" {
                acked.push(replies);
            }
            buf.drain(..n);
            replies += 1;
        }
        if !signalled && acked.len() >= SIGNAL_AT {
            srv.signal(libc::SIGTERM);
            signalled = true;
        }
        match stream.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "after {replies} replies the server neither answered nor closed within 10 s: {e}"
            ),
        }
    }
    assert!(
        signalled,
        "the connection ended after {replies} replies, before SIGTERM was sent\n{}",
        tail(&site.log(), 3000)
    );
    let status = srv
        .wait_exit(Duration::from_secs(10))
        .expect("percore exits within 10 s of SIGTERM");
    let _ = stream.shutdown(Shutdown::Both);
    feeder.join().unwrap();
    assert!(status.success(), "exit status {status}\n{}", site.log());
    assert!(
        acked.len() < N,
        "every SET was answered before the shutdown: SIGTERM did not meet the stream"
    );
    eprintln!(
        "{} of {N} SETs acknowledged, {replies} replies in all",
        acked.len()
    );

    let _srv = site.start(2, &args);
    let mut c = site.client();
    let mut missing = Vec::new();
    for chunk in acked.chunks(1000) {
        let mut req = Vec::new();
        for i in chunk {
            req.extend_from_slice(&encode(&[b"GET", format!("k{i}").as_bytes()]));
        }
        c.send_raw(&req);
        for i in chunk {
            let v = format!("v{i}");
            if c.read_reply() != format!("${}\r\n{v}\r\n", v.len()).as_bytes() {
                missing.push(*i);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged keys lost by the SIGTERM restart, first: {:?}\n{}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)],
        site.log()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. `dir`
// ---------------------------------------------------------------------------------------------

/// No --dir: `dir .` is the working directory. SAVE, BGSAVE and SHUTDOWN SAVE write there,
/// and CONFIG GET dir answers its absolute path.
#[test]
fn the_default_dir_is_the_working_directory() {
    let site = Site::new("dir-default");
    let cwd = site.cwd();
    let mut srv = site.start(1, &[]);
    let mut c = site.client();
    assert_eq!(config_get(&mut c, "dir"), path_str(&cwd));
    c.q("SET a 1");
    assert_eq!(s(&c.q("BGSAVE")), "+Background saving started\r\n");
    wait_bgsave(&mut c, &cwd.join("percore.manifest"));
    let first = snapshot_files(&cwd);
    assert!(!first.is_empty(), "BGSAVE wrote no .pcs file in {cwd:?}");
    c.q("SET b 2");
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    let second = snapshot_files(&cwd);
    assert!(
        !second.is_empty() && second != first,
        "SAVE wrote no new set in the working directory: {first:?} then {second:?}"
    );
    c.q("SET c 3");
    c.send_raw(b"SHUTDOWN SAVE\r\n");
    assert!(c.closed(), "SHUTDOWN SAVE closes the connection");
    let status = srv
        .wait_exit(Duration::from_secs(10))
        .expect("percore exits within 10 s of SHUTDOWN SAVE");
    assert!(status.success(), "exit status {status}\n{}", site.log());
    let _srv = site.start(1, &[]);
    assert_eq!(
        s(&site.client().q("MGET a b c")),
        "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n",
        "SHUTDOWN SAVE wrote the set in the working directory"
    );
}

#[test]
fn a_relative_dir_resolves_against_the_working_directory() {
    let site = Site::new("dir-relative");
    let sub = site.cwd().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let _srv = site.start(1, &["--dir", "sub"]);
    let mut c = site.client();
    assert_eq!(config_get(&mut c, "dir"), path_str(&sub));
    c.q("SET a 1");
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    assert!(sub.join("percore.manifest").exists(), "no manifest in sub/");
    assert!(!site.cwd().join("percore.manifest").exists());
}

#[test]
fn config_set_dir_moves_the_next_save_and_refuses_a_missing_dir() {
    let site = Site::new("dir-set");
    let a = site.dir("a");
    let b = site.dir("b");
    // By default `dir` is a protected config, as in Redis 7.0.
    let mut srv = site.start(1, &["--dir", path_str(&a)]);
    let mut c = site.client();
    assert_eq!(
        s(&c.cmd(&[b"CONFIG", b"SET", b"dir", path_str(&b).as_bytes()])),
        "-ERR CONFIG SET failed (possibly related to argument 'dir') - can't set protected config\r\n"
    );
    assert_eq!(
        s(&c.q("CONFIG SET dbfilename other")),
        "-ERR CONFIG SET failed (possibly related to argument 'dbfilename') - can't set protected config\r\n"
    );
    srv.terminate();
    let _srv = site.start(
        1,
        &["--dir", path_str(&a), "--enable-protected-configs", "local"],
    );
    let mut c = site.client();
    assert_eq!(config_get(&mut c, "dir"), path_str(&a));
    assert_eq!(
        s(&c.cmd(&[b"CONFIG", b"SET", b"dir", path_str(&b).as_bytes()])),
        "+OK\r\n"
    );
    assert_eq!(config_get(&mut c, "dir"), path_str(&b));
    c.q("SET a 1");
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    assert!(
        b.join("percore.manifest").exists(),
        "SAVE did not write in the new dir"
    );
    assert!(snapshot_debris(&a).is_empty(), "SAVE wrote in the old dir");
    let r = s(&c.q("CONFIG SET dir /nonexistent/x"));
    assert!(
        r.starts_with(
            "-ERR CONFIG SET failed (possibly related to argument 'dir') - No such file or directory"
        ),
        "{r:?}"
    );
    assert_eq!(
        config_get(&mut c, "dir"),
        path_str(&b),
        "a refused dir changes nothing"
    );
}

/// The dir turns into a regular file: SAVE answers an error, leaves nothing behind anywhere,
/// and INFO says the last save failed.
#[test]
fn a_failed_save_is_an_error_and_leaves_no_partial_files() {
    let site = Site::new("dir-fail");
    let d = site.tmp.0.join("d");
    std::fs::create_dir(&d).unwrap();
    let srv = site.start(2, &["--enable-protected-configs", "yes"]);
    let mut c = site.client();
    assert_eq!(
        s(&c.cmd(&[b"CONFIG", b"SET", b"dir", path_str(&d).as_bytes()])),
        "+OK\r\n"
    );
    for i in 0..200 {
        c.q(&format!("SET k{i} v{i}"));
    }
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n", "the dir works at first");
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::write(&d, b"not a directory").unwrap();
    let r = s(&c.q("SAVE"));
    assert!(r.starts_with("-ERR"), "SAVE into a non-directory: {r:?}");
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "err");
    let debris = snapshot_debris(&site.tmp.0);
    assert!(
        debris.is_empty(),
        "the failed save left files behind: {debris:?}"
    );
    assert_eq!(std::fs::read(&d).unwrap(), b"not a directory");
    assert_eq!(s(&c.q("PING")), "+PONG\r\n");
    drop(srv);
}

// ---------------------------------------------------------------------------------------------
// 3. Restarts on the same port
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Leftover {
    /// Five connected clients that sent a PING and wait.
    IdleClients,
    /// A client that sent the first half of the bytes of 1000 pipelined SETs and reads
    /// nothing.
    HalfPipeline,
    /// A client that sent 200 `GET big` (1 MB value) and never reads.
    SlowReader,
}

/// Leaves `what` connected to the site's server; the connections go into `kept`.
fn leave_connected(site: &Site, what: Leftover, round: usize, kept: &mut Vec<Client>) {
    let port = site.port;
    match what {
        Leftover::IdleClients => {
            for _ in 0..5 {
                let mut c = Client::connect(port);
                assert_eq!(s(&c.q("PING")), "+PONG\r\n");
                kept.push(c);
            }
        }
        Leftover::HalfPipeline => {
            let mut c = Client::connect(port);
            let cmds: Vec<Vec<u8>> = (0..1000)
                .map(|i| encode(&[b"SET", format!("p{i}").as_bytes(), b"value"]))
                .collect();
            let all: Vec<u8> = cmds.concat();
            let half = all.len() / 2;
            let mut whole = 0;
            let mut at = 0;
            for cmd in &cmds {
                if at + cmd.len() > half {
                    break;
                }
                at += cmd.len();
                whole += 1;
            }
            c.send_raw(&all[..half]);
            // The server has executed every whole command of the half when all their +OK
            // wait, unread, at the client.
            wait_unread(
                &c.stream,
                whole * 5,
                &format!("round {round}, half pipeline"),
                site,
            );
            kept.push(c);
        }
        Leftover::SlowReader => {
            let mut c = Client::connect(port);
            assert_eq!(c.cmd(&[b"SET", b"big", &vec![b'x'; 1 << 20]]), b"+OK\r\n");
            c.send_raw(&b"GET big\r\n".repeat(200));
            // The replies are flowing and the client's receive buffer is filling.
            wait_unread(
                &c.stream,
                32 << 10,
                &format!("round {round}, slow reader"),
                site,
            );
            kept.push(c);
        }
    }
}

/// Ten times: leave `what` connected, stop the server with `sig` (waiting until the process
/// is gone, as a supervisor does), and start a new one on the same port and metrics port at
/// once. Every start must succeed; the clients stay open to the end of the test.
fn restart_ten_times(sig: libc::c_int, what: Leftover) {
    let name = signal_name(sig);
    let site = Site::new(&format!("restart-{}", name.to_ascii_lowercase()));
    let mport = free_port().to_string();
    let args = ["--metrics-port", mport.as_str()];
    let mut srv = site.start(2, &args);
    let mut kept = Vec::new();
    for round in 1..=10 {
        leave_connected(&site, what, round, &mut kept);
        let status = srv
            .stop_with(sig, Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: percore still runs 10 s after {name} with {what:?}\n{}",
                    tail(&site.log(), 3000)
                )
            });
        if sig != libc::SIGKILL {
            assert!(
                status.success(),
                "round {round}: exit status {status} after {name} with {what:?}\n{}",
                tail(&site.log(), 3000)
            );
        }
        srv = match site.launch(2, &args).try_start() {
            Ok(srv) => srv,
            Err(f) => panic!(
                "round {round}: no new server on port {} (metrics {mport}) right after {name} with {what:?} connected: {}\n--- log ---\n{}",
                site.port,
                f.status.map_or("no answer within 20 s".into(), |s| s.to_string()),
                tail(&f.log, 3000)
            ),
        };
        assert_eq!(s(&site.client().q("PING")), "+PONG\r\n", "round {round}");
    }
    drop(kept);
}

#[test]
fn restart_after_sigterm_with_idle_clients() {
    restart_ten_times(libc::SIGTERM, Leftover::IdleClients);
}

#[test]
fn restart_after_sigkill_with_idle_clients() {
    restart_ten_times(libc::SIGKILL, Leftover::IdleClients);
}

#[test]
fn restart_after_sigterm_with_a_half_sent_pipeline() {
    restart_ten_times(libc::SIGTERM, Leftover::HalfPipeline);
}

#[test]
fn restart_after_sigkill_with_a_half_sent_pipeline() {
    restart_ten_times(libc::SIGKILL, Leftover::HalfPipeline);
}

#[test]
fn restart_after_sigterm_with_a_slow_reader() {
    restart_ten_times(libc::SIGTERM, Leftover::SlowReader);
}

#[test]
fn restart_after_sigkill_with_a_slow_reader() {
    restart_ten_times(libc::SIGKILL, Leftover::SlowReader);
}

// ---------------------------------------------------------------------------------------------
// 4. Config files and --help
// ---------------------------------------------------------------------------------------------

#[test]
fn save_lines_in_a_config_file_accumulate_and_an_empty_one_clears() {
    let site = Site::new("conf-save");
    let cases = [
        ("save 900 1\nsave 300 10\n", "900 1 300 10"),
        ("save 900 1\nsave 300 10\nsave \"\"\n", ""),
        ("save 900 1\nsave \"\"\nsave 60 5\n", "60 5"),
    ];
    for (text, want) in cases {
        let conf = site.file("save.conf", text);
        let srv = site
            .launch_args(&[
                path_str(&conf),
                "--port",
                &site.port.to_string(),
                "--shards",
                "1",
            ])
            .start();
        assert_eq!(
            config_get(&mut site.client(), "save"),
            want,
            "config file:\n{text}"
        );
        drop(srv);
    }
}

/// `include` applies the other file where it stands: settings before it are overridden by
/// it, settings after it override it.
#[test]
fn include_applies_the_other_file_where_it_stands() {
    let site = Site::new("conf-include");
    let inc = site.file(
        "included.conf",
        "maxmemory-policy allkeys-lru\nmaxmemory-samples 3\n",
    );
    let main = site.file(
        "main.conf",
        &format!(
            "port {}\nmaxmemory-policy volatile-lru\nmaxmemory-samples 9\ninclude {}\nmaxmemory-samples 7\n",
            site.port,
            path_str(&inc)
        ),
    );
    let _srv = site
        .launch_args(&[path_str(&main), "--shards", "1"])
        .start();
    let mut c = site.client();
    assert_eq!(config_get(&mut c, "port"), site.port.to_string());
    assert_eq!(config_get(&mut c, "maxmemory-policy"), "allkeys-lru");
    assert_eq!(config_get(&mut c, "maxmemory-samples"), "7");
}

#[test]
fn a_missing_include_file_stops_the_start_naming_it() {
    let site = Site::new("conf-missing");
    let missing = site.tmp.0.join("no-such-file.conf");
    let main = site.file(
        "main.conf",
        &format!("port {}\ninclude {}\n", site.port, path_str(&missing)),
    );
    match site
        .launch_args(&[path_str(&main), "--shards", "1"])
        .try_start()
    {
        Ok(_srv) => panic!("percore started although its include file is missing"),
        Err(f) => {
            let status = f.status.expect("percore exits, rather than hanging");
            assert!(!status.success(), "exit status {status}");
            assert!(
                f.log.contains(path_str(&missing)),
                "the start-up error does not name {missing:?}:\n{}",
                f.log
            );
        }
    }
}

#[test]
fn help_lists_every_setting_once() {
    let site = Site::new("help");
    let out = site.tmp.0.join("help.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_percore"))
        .arg("--help")
        .current_dir(site.cwd())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("percore --help did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "percore --help: {status}");
    let text = std::fs::read_to_string(&out).unwrap();
    // A setting's line begins with its flag; usage examples begin with `percore`.
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    assert!(
        names.len() >= 20,
        "only {} settings listed:\n{text}",
        names.len()
    );
    let mut seen = std::collections::HashSet::new();
    let twice: Vec<&str> = names.iter().copied().filter(|n| !seen.insert(*n)).collect();
    assert!(twice.is_empty(), "listed more than once: {twice:?}\n{text}");
    assert_eq!(
        names.iter().filter(|n| **n == "--save").count(),
        1,
        "--save exactly once:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Protected mode on a dual-stack listener
// ---------------------------------------------------------------------------------------------

/// `--bind ::` takes IPv4 too; a client on 127.0.0.1 arrives as ::ffff:127.0.0.1, which is
/// loopback for protected mode.
#[test]
fn protected_mode_admits_ipv4_loopback_on_a_dual_stack_listener() {
    if let Err(e) = std::net::TcpListener::bind("[::]:0") {
        eprintln!("SKIPPED: IPv6 is unavailable here (binding [::] failed: {e}); the dual-stack protected-mode test did not run");
        return;
    }
    let site = Site::new("dualstack");
    let _srv = site
        .launch(1, &["--bind", "::", "--protected-mode", "yes"])
        .ready_on(IpAddr::from(Ipv6Addr::LOCALHOST))
        .start();
    for ip in [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(Ipv6Addr::LOCALHOST),
    ] {
        let mut st =
            TcpStream::connect_timeout(&SocketAddr::new(ip, site.port), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect to {ip} on a --bind :: server: {e}"));
        st.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        st.write_all(b"PING\r\n").unwrap();
        let got = read_line(&mut st);
        assert_eq!(
            got, "+PONG\r\n",
            "PING from {ip}, protected mode, --bind ::"
        );
    }
}

/// Reads one line (up to and with `\r\n`), or what came before EOF or the read timeout.
fn read_line(st: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 512];
    while !got.ends_with(b"\r\n") {
        match st.read(&mut b) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) => {
                if got.is_empty() {
                    return format!("<no reply: {e}>");
                }
                break;
            }
        }
    }
    s(&got)
}

// ---------------------------------------------------------------------------------------------
// 6. Descriptor limits
// ---------------------------------------------------------------------------------------------

#[test]
fn a_low_descriptor_limit_reduces_maxclients_and_refuses_politely() {
    let site = Site::new("nofile");
    let mut srv = site
        .launch(1, &["--maxclients", "10000"])
        .nofile(200)
        .start();
    assert!(
        site.wait_log("maxclients has been reduced to", Duration::from_secs(5)),
        "no `maxclients has been reduced to` in the log:\n{}",
        site.log()
    );
    let mut c = site.client();
    let max: usize = config_get(&mut c, "maxclients").parse().unwrap();
    assert!(
        max > 1 && max < 200,
        "maxclients {max} with 200 descriptors"
    );
    let r = s(&c.q("CONFIG SET maxclients 10000"));
    let prefix = "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - The operating system is not able to handle the specified number of clients, try with ";
    assert!(r.starts_with(prefix), "{r:?}");
    let hint: usize = r[prefix.len()..]
        .trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("no number after `try with`: {r:?}"));
    assert!(hint < 200, "{r:?}");
    assert_eq!(
        config_get(&mut c, "maxclients"),
        max.to_string(),
        "a refused CONFIG SET changes nothing"
    );

    let mut served: Vec<TcpStream> = Vec::new();
    let mut refused = 0;
    for i in 0..250 {
        let addr = SocketAddr::from(([127, 0, 0, 1], site.port));
        let mut st = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i}: connect: {e}"));
        st.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = st.write_all(b"PING\r\n");
        match read_line(&mut st).as_str() {
            "+PONG\r\n" => {
                assert_eq!(
                    refused, 0,
                    "connection {i} served after {refused} were refused"
                );
                served.push(st);
            }
            "-ERR max number of clients reached\r\n" => refused += 1,
            other => panic!(
                "connection {i} ({} served, {refused} refused so far) got {other:?}\n{}",
                served.len(),
                tail(&site.log(), 3000)
            ),
        }
    }
    // `c` is a client too.
    let clients = served.len() + 1;
    assert!(
        refused > 0 && clients <= max && clients + 1 >= max,
        "{} served (+1 other client), {refused} refused, maxclients {max}",
        served.len()
    );
    for (i, st) in served.iter_mut().enumerate() {
        st.write_all(b"PING\r\n").unwrap();
        assert_eq!(read_line(st), "+PONG\r\n", "served connection {i}, again");
    }
    drop(served);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut st = TcpStream::connect(("127.0.0.1", site.port)).unwrap();
        st.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        st.write_all(b"PING\r\n").unwrap();
        let got = read_line(&mut st);
        if got == "+PONG\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a new client after all closed still gets {got:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(srv.is_running());
    let log = site.log();
    let accept_lines = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("accept"))
        .count();
    assert!(
        accept_lines < 20,
        "{accept_lines} log lines about accept:\n{}",
        tail(&log, 3000)
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Smaller items, compared with Redis 7.0
// ---------------------------------------------------------------------------------------------

/// Redis's reply to `args` (after HELLO 3 when `resp3`), from a live redis-server; None —
/// loudly — when it is not installed, a failure when PERCORE_REQUIRE_REDIS is set.
fn live_redis_reply(resp3: bool, args: &[&[u8]]) -> Option<Vec<u8>> {
    let redis = common::redis_or_skip(
        "compared with the reply recorded from Redis 7.0.15 instead of a live one",
    )?;
    let mut c = redis.client();
    if resp3 {
        c.q("HELLO 3");
    }
    Some(c.cmd(args))
}

#[test]
fn client_kill_user_of_an_unknown_user_is_an_error() {
    let site = Site::new("kill-user");
    let _srv = site.start(1, &[]);
    assert_eq!(
        s(&site.client().q("CLIENT KILL USER nosuchuser")),
        "-ERR No such user 'nosuchuser'\r\n"
    );
}

#[test]
fn shutdown_nosave_save_is_a_syntax_error_and_the_server_keeps_running() {
    let site = Site::new("shutdown-syntax");
    let mut srv = site.start(1, &["--dir", path_str(&site.cwd())]);
    let mut c = site.client();
    c.q("SET a 1");
    assert_eq!(s(&c.q("SHUTDOWN NOSAVE SAVE")), "-ERR syntax error\r\n");
    assert_eq!(s(&c.q("PING")), "+PONG\r\n");
    assert!(srv.is_running());
    assert!(
        snapshot_debris(&site.tmp.0).is_empty(),
        "a refused SHUTDOWN saved"
    );
}

#[test]
fn config_set_maxmemory_samples_0_errs_as_redis() {
    const RECORDED: &str = "-ERR CONFIG SET failed (possibly related to argument 'maxmemory-samples') - argument must be between 1 and 2147483647 inclusive\r\n";
    let args: &[&[u8]] = &[b"CONFIG", b"SET", b"maxmemory-samples", b"0"];
    let want = live_redis_reply(false, args).map_or(RECORDED.to_string(), |r| s(&r));
    let site = Site::new("samples");
    let _srv = site.start(1, &[]);
    let mut c = site.client();
    assert_eq!(s(&c.cmd(args)), want);
}

#[test]
fn command_info_get_under_resp3_matches_redis() {
    const RECORDED: &str = "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n~3\r\n+@read\r\n+@string\r\n+@fast\r\n~0\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n~0\r\n";
    let args: &[&[u8]] = &[b"COMMAND", b"INFO", b"get"];
    let site = Site::new("command-info");
    let _srv = site.start(1, &[]);
    let mut c = site.client();
    let hello = s(&c.q("HELLO 3"));
    assert!(hello.starts_with('%'), "HELLO 3: {hello:?}");
    let got = s(&c.cmd(args));
    assert!(
        got.contains("~2\r\n+readonly\r\n+fast\r\n"),
        "flags as a RESP3 set: {got:?}"
    );
    assert!(
        got.contains("~3\r\n+@read\r\n+@string\r\n+@fast\r\n"),
        "ACL categories as a RESP3 set, lowercase: {got:?}"
    );
    let want = live_redis_reply(true, args).map_or(RECORDED.to_string(), |r| s(&r));
    assert_eq!(got, want, "the whole COMMAND INFO get reply under HELLO 3");
}
