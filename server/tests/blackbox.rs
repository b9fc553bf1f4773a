//! Black-box tests: the real binary on a free port with 1 and 4 shards, driven by the `redis`
//! crate and by raw sockets.

mod common;

use common::{encode, s, Server};
use redis::Commands;
use std::collections::HashSet;

fn for_shards(f: impl Fn(&Server, usize)) {
    for shards in [1, 4] {
        let srv = Server::percore(shards, &[]);
        f(&srv, shards);
    }
}

#[test]
fn strings_and_multi_key_commands_across_shards() {
    for_shards(|srv, shards| {
        let mut c = srv.redis_client();
        let _: () = c.set("greeting", "hello").unwrap();
        assert_eq!(c.get::<_, String>("greeting").unwrap(), "hello");
        let pairs: Vec<(String, String)> = (0..64)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let _: () = c.mset(&pairs).unwrap();
        let keys: Vec<String> = pairs
            .iter()
            .map(|p| p.0.clone())
            .chain(["missing".to_string()])
            .collect();
        let vals: Vec<Option<String>> = c.mget(&keys).unwrap();
        for (i, v) in vals.iter().enumerate().take(64) {
            assert_eq!(
                v.as_deref(),
                Some(format!("v{i}").as_str()),
                "{shards} shards"
            );
        }
        assert_eq!(vals[64], None);
        let n: i64 = redis::cmd("EXISTS")
            .arg(&keys)
            .arg("k1")
            .query(&mut c)
            .unwrap();
        assert_eq!(n, 65, "EXISTS counts repeats");
        let n: i64 = c.del(&keys[..32]).unwrap();
        assert_eq!(n, 32);
        let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(n, 33);
        let mut all: Vec<String> = redis::cmd("KEYS").arg("k*").query(&mut c).unwrap();
        all.sort();
        assert_eq!(all.len(), 32);
        let n: i64 = redis::cmd("TOUCH")
            .arg("k40")
            .arg("k41")
            .arg("nope")
            .query(&mut c)
            .unwrap();
        assert_eq!(n, 2);
        // MSETNX across shards: all or nothing.
        let r: i64 = redis::cmd("MSETNX")
            .arg("n1")
            .arg("a")
            .arg("k40")
            .arg("b")
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 0);
        assert_eq!(c.exists::<_, i64>("n1").unwrap(), 0);
        let r: i64 = redis::cmd("MSETNX")
            .arg("n1")
            .arg("a")
            .arg("n2")
            .arg("b")
            .arg("n3")
            .arg("c")
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 1);
        // RENAME / COPY / LCS whose keys may live on different shards.
        let _: () = redis::cmd("RENAME")
            .arg("n1")
            .arg("renamed")
            .query(&mut c)
            .unwrap();
        assert_eq!(c.get::<_, Option<String>>("n1").unwrap(), None);
        assert_eq!(c.get::<_, String>("renamed").unwrap(), "a");
        let r: i64 = redis::cmd("COPY")
            .arg("renamed")
            .arg("copied")
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 1);
        let _: () = c.set("lcs1", "ohmytext").unwrap();
        let _: () = c.set("lcs2", "mynewtext").unwrap();
        let l: String = redis::cmd("LCS")
            .arg("lcs1")
            .arg("lcs2")
            .query(&mut c)
            .unwrap();
        assert_eq!(l, "mytext");
        let e: redis::RedisResult<()> = redis::cmd("RENAME").arg("nokey").arg("x").query(&mut c);
        assert!(e.unwrap_err().to_string().contains("no such key"));
        let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
        let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(n, 0);
    });
}

#[test]
fn hash_tags_put_keys_on_one_shard() {
    let srv = Server::percore(4, &[]);
    let mut c = srv.client();
    for i in 0..200 {
        c.cmd(&[b"SET", format!("{{user42}}:{i}").as_bytes(), b"x"]);
    }
    let info = s(&c.q("INFO shards"));
    let counts: Vec<usize> = info
        .lines()
        .filter(|l| l.starts_with("shard"))
        .map(|l| common::info_int(l, "keys") as usize)
        .collect();
    assert_eq!(counts.len(), 4);
    assert_eq!(
        counts.iter().filter(|&&c| c == 200).count(),
        1,
        "all tagged keys on one shard: {counts:?}"
    );
    // Multi-key commands on co-located keys run in one hop; untagged keys spread out.
    for i in 0..200 {
        c.cmd(&[b"SET", format!("spread:{i}").as_bytes(), b"x"]);
    }
    let info = s(&c.q("INFO shards"));
    let nonzero = info
        .lines()
        .filter(|l| l.starts_with("shard") && !l.contains("keys=0,"))
        .count();
    assert_eq!(nonzero, 4);
}

/// A pipeline mixing keys of every shard with connection commands comes back in order.
#[test]
fn pipelines_reply_in_order() {
    for_shards(|srv, _| {
        let mut c = srv.client();
        let mut req = Vec::new();
        let n = 2000;
        for i in 0..n {
            let k = format!("p{i}");
            req.extend(encode(&[b"SET", k.as_bytes(), i.to_string().as_bytes()]));
            req.extend(encode(&[b"INCR", k.as_bytes()]));
            req.extend(encode(&[b"PING"]));
            req.extend(encode(&[
                b"MGET",
                k.as_bytes(),
                format!("p{}", i / 2).as_bytes(),
            ]));
            req.extend(encode(&[b"SELECT", if i % 2 == 0 { b"1" } else { b"0" }]));
        }
        c.send_raw(&req);
        for i in 0..n {
            assert_eq!(c.read_reply(), b"+OK\r\n");
            assert_eq!(s(&c.read_reply()), format!(":{}\r\n", i + 1));
            assert_eq!(c.read_reply(), b"+PONG\r\n");
            let mget = s(&c.read_reply());
            let expect_self = format!("${}\r\n{}\r\n", (i + 1).to_string().len(), i + 1);
            assert!(mget.starts_with("*2\r\n"), "{mget}");
            // Even i runs in db 0 (the SELECT follows), odd i in db 1.
            assert!(mget.contains(&expect_self), "MGET {i}: {mget}");
            assert_eq!(c.read_reply(), b"+OK\r\n");
        }
    });
}

/// SCAN returns every key present for the whole iteration, on 1 and 4 shards, while other
/// keys are added and removed between calls (forcing table growth).
#[test]
fn scan_visits_every_key() {
    for_shards(|srv, shards| {
        let mut c = srv.client();
        let mut req = Vec::new();
        for i in 0..5000 {
            req.extend(encode(&[b"SET", format!("stable:{i}").as_bytes(), b"v"]));
        }
        c.send_raw(&req);
        for _ in 0..5000 {
            c.read_reply();
        }
        let mut seen = HashSet::new();
        let mut cursor = b"0".to_vec();
        let mut round = 0;
        loop {
            let r = c.cmd(&[b"SCAN", &cursor, b"COUNT", b"50"]);
            let text = s(&r);
            let mut lines = text.split("\r\n");
            assert_eq!(lines.next(), Some("*2"));
            lines.next();
            cursor = lines.next().unwrap().as_bytes().to_vec();
            let n: usize = lines.next().unwrap()[1..].parse().unwrap();
            for _ in 0..n {
                lines.next();
                let k = lines.next().unwrap().to_string();
                seen.insert(k);
            }
            round += 1;
            let mut churn = Vec::new();
            for j in 0..100 {
                churn.extend(encode(&[
                    b"SET",
                    format!("churn:{round}:{j}").as_bytes(),
                    b"v",
                ]));
                if round > 1 {
                    churn.extend(encode(&[
                        b"DEL",
                        format!("churn:{}:{j}", round - 1).as_bytes(),
                    ]));
                }
            }
            let replies = if round > 1 { 200 } else { 100 };
            c.send_raw(&churn);
            for _ in 0..replies {
                c.read_reply();
            }
            if cursor == b"0" {
                break;
            }
            assert!(round < 100_000);
        }
        for i in 0..5000 {
            assert!(
                seen.contains(&format!("stable:{i}")),
                "{shards} shards: stable:{i} never returned by SCAN"
            );
        }
        // MATCH and TYPE filters.
        let r = s(&c.q("SCAN 0 MATCH nomatch* COUNT 10000 TYPE string"));
        assert!(r.ends_with("*0\r\n"), "{r}");
    });
}

/// A keyspace smaller than COUNT is walked in one SCAN, which answers cursor 0 as Redis's
/// does (clients that stop at the first cursor 0 see every key), on every shard count.
#[test]
fn a_small_keyspace_is_scanned_in_one_call() {
    for_shards(|srv, shards| {
        let mut c = srv.client();
        assert_eq!(
            s(&c.q("SCAN 0")),
            "*2\r\n$1\r\n0\r\n*0\r\n",
            "{shards} shards, empty"
        );
        for i in 0..8 {
            c.q(&format!("SET k{i} v"));
        }
        let r = s(&c.q("SCAN 0"));
        assert!(
            r.starts_with("*2\r\n$1\r\n0\r\n*8\r\n"),
            "{shards} shards: {r}"
        );
    });
}

#[test]
fn resp3_via_hello() {
    for_shards(|srv, _| {
        let mut c = srv.client();
        let hello = s(&c.q("HELLO 3"));
        assert!(
            hello.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
            "{hello}"
        );
        assert!(hello.contains("$5\r\nproto\r\n:3\r\n"));
        assert_eq!(c.q("GET missing"), b"_\r\n");
        assert_eq!(
            c.q("MGET missing1 missing2 missing3 missing4"),
            b"*4\r\n_\r\n_\r\n_\r\n_\r\n"
        );
        let cfg = s(&c.q("CONFIG GET port"));
        assert!(cfg.starts_with("%1\r\n"), "{cfg}");
        assert_eq!(c.q("SET f 1.5"), b"+OK\r\n");
        assert!(
            s(&c.q("INFO server")).starts_with("="),
            "INFO is a verbatim string in RESP3"
        );
        let hello2 = s(&c.q("HELLO 2"));
        assert!(hello2.starts_with("*14\r\n"));
        assert_eq!(c.q("GET missing"), b"$-1\r\n");
        assert!(s(&c.q("HELLO 4")).starts_with("-NOPROTO"));
        assert_eq!(
            c.q("HELLO x"),
            b"-ERR Protocol version is not an integer or out of range\r\n"
        );
    });
}

#[test]
fn errors_are_redis_errors() {
    let srv = Server::percore(2, &[]);
    let mut c = srv.client();
    assert_eq!(
        c.q("GET"),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        c.q("NOSUCH a b"),
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        c.q("CONFIG NOPE"),
        b"-ERR unknown subcommand 'NOPE'. Try CONFIG HELP.\r\n"
    );
    assert_eq!(
        c.q("MSET a"),
        b"-ERR wrong number of arguments for 'mset' command\r\n"
    );
    assert_eq!(
        c.q("MSET a 1 b"),
        b"-ERR wrong number of arguments for 'mset' command\r\n"
    );
    assert_eq!(c.q("SET a x"), b"+OK\r\n");
    assert_eq!(
        c.q("INCR a"),
        b"-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        c.q("SET a x EX 0"),
        b"-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(c.q("SET a x NX XX"), b"-ERR syntax error\r\n");
    assert_eq!(c.q("SELECT 16"), b"-ERR DB index is out of range\r\n");
    assert_eq!(
        c.q("PING"),
        b"+PONG\r\n",
        "the connection survives command errors"
    );
    let stats = s(&c.q("INFO errorstats"));
    assert!(stats.contains("errorstat_ERR:count="), "{stats}");
}

#[test]
fn auth_is_required_when_a_password_is_set() {
    let srv = Server::percore(2, &["--requirepass", "s3cret"]);
    let mut c = srv.client();
    assert_eq!(c.q("GET a"), b"-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.q("AUTH wrong"),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.q("AUTH s3cret"), b"+OK\r\n");
    assert_eq!(c.q("SET a 1"), b"+OK\r\n");
    let mut c2 = srv.client();
    assert!(s(&c2.q("HELLO 3 AUTH default s3cret SETNAME app")).starts_with("%7"));
    assert_eq!(c2.q("CLIENT GETNAME"), b"$3\r\napp\r\n");
    // Before AUTH, large requests are refused (Redis's unauthenticated limits).
    let mut c3 = srv.client();
    c3.send_raw(b"*20\r\n");
    assert_eq!(
        c3.read_reply(),
        b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(c3.closed());
    let mut ok = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", srv.port))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(ok.get::<_, String>("a").unwrap(), "1");
}

#[test]
fn databases_are_isolated() {
    for_shards(|srv, _| {
        let mut c = srv.client();
        assert_eq!(c.q("SET k zero"), b"+OK\r\n");
        assert_eq!(c.q("SELECT 3"), b"+OK\r\n");
        assert_eq!(c.q("GET k"), b"$-1\r\n");
        assert_eq!(c.q("SET k three"), b"+OK\r\n");
        assert_eq!(c.q("DBSIZE"), b":1\r\n");
        assert_eq!(c.q("SWAPDB 0 3"), b"+OK\r\n");
        assert_eq!(c.q("GET k"), b"$4\r\nzero\r\n");
        assert_eq!(c.q("MOVE k 5"), b":1\r\n");
        assert_eq!(c.q("FLUSHDB"), b"+OK\r\n");
        assert_eq!(c.q("SELECT 0"), b"+OK\r\n");
        assert_eq!(c.q("GET k"), b"$5\r\nthree\r\n");
        let ks = s(&c.q("INFO keyspace"));
        assert!(
            ks.contains("db0:keys=1,expires=0") && ks.contains("db5:keys=1"),
            "{ks}"
        );
    });
}

#[test]
fn expiry_is_never_visible() {
    for_shards(|srv, _| {
        let mut c = srv.client();
        for i in 0..200 {
            c.cmd(&[b"SET", format!("e{i}").as_bytes(), b"v", b"PX", b"50"]);
        }
        assert_eq!(c.q("SET keep v EX 1000"), b"+OK\r\n");
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert_eq!(c.q("GET e0"), b"$-1\r\n");
        assert_eq!(s(&c.q("KEYS e*")), "*0\r\n");
        // The active cycle reclaims the rest without any access.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if c.q("DBSIZE") == b":1\r\n" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "active expiry did not reclaim keys"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(c.q("TTL keep"), b":1000\r\n");
        assert!(s(&c.q("INFO stats")).contains("expired_keys:200"));
    });
}

#[test]
fn client_commands() {
    let srv = Server::percore(4, &[]);
    let mut a = srv.client();
    let mut b = srv.client();
    assert_eq!(a.q("CLIENT SETNAME alpha"), b"+OK\r\n");
    assert_eq!(
        a.q("CLIENT SETNAME bad name"),
        b"-ERR wrong number of arguments for 'client|setname' command\r\n"
    );
    let id_b = s(&b.q("CLIENT ID"));
    let id_b = id_b.trim_start_matches(':').trim();
    let list = s(&a.q("CLIENT LIST"));
    assert!(list.contains("name=alpha"), "{list}");
    assert!(list.contains(&format!("id={id_b} ")), "{list}");
    assert_eq!(
        s(&a.cmd(&[b"CLIENT", b"KILL", b"ID", id_b.as_bytes()])),
        ":1\r\n"
    );
    assert!(b.closed(), "killed client is disconnected");
    assert_eq!(a.q("PING"), b"+PONG\r\n");
    assert!(s(&a.q("CLIENT INFO")).contains("name=alpha"));
    assert_eq!(a.q("CLIENT SETINFO LIB-NAME mylib"), b"+OK\r\n");
}

#[test]
fn command_introspection() {
    let srv = Server::percore(1, &[]);
    let mut c = srv.redis_client();
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(count > 60);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, vec!["a", "b"]);
    let info: redis::Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .arg("nosuch")
        .query(&mut c)
        .unwrap();
    let redis::Value::Array(items) = info else {
        panic!("{info:?}")
    };
    assert_eq!(items.len(), 2);
    assert_eq!(items[1], redis::Value::Nil);
    let all: redis::Value = redis::cmd("COMMAND").query(&mut c).unwrap();
    let redis::Value::Array(all) = all else {
        panic!()
    };
    assert_eq!(all.len() as i64, count);
    let docs: redis::Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("set")
        .query(&mut c)
        .unwrap();
    // Redis 7.0.15's wording (src/commands/set.json).
    assert!(format!("{docs:?}").contains("Set the string value of a key"));
}

#[test]
fn info_and_config() {
    let srv = Server::percore(2, &[]);
    let mut c = srv.client();
    c.q("SET a 1");
    c.q("GET a");
    c.q("GET nope");
    let info = s(&c.q("INFO"));
    for field in [
        "redis_version:7.0",
        "percore_version:",
        "connected_clients:1",
        "keyspace_hits:1",
        "keyspace_misses:1",
        "used_memory:",
        "shards:2",
        "db0:keys=1",
    ] {
        assert!(info.contains(field), "INFO lacks {field}");
    }
    let all = s(&c.q("INFO commandstats"));
    assert!(all.contains("cmdstat_get:calls=2,"), "{all}");
    assert_eq!(c.q("CONFIG SET maxclients 5000"), b"+OK\r\n");
    assert_eq!(
        c.q("CONFIG GET maxclients"),
        b"*2\r\n$10\r\nmaxclients\r\n$4\r\n5000\r\n"
    );
    assert_eq!(c.q("CONFIG SET port 1"), b"-ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config\r\n");
    assert_eq!(
        c.q("CONFIG SET nope 1"),
        b"-ERR Unknown option or number of arguments for CONFIG SET - 'nope'\r\n"
    );
    assert_eq!(c.q("CONFIG RESETSTAT"), b"+OK\r\n");
    assert!(s(&c.q("INFO stats")).contains("keyspace_hits:0"));
    // CONFIG SET reaches every core: a password set on one applies to new connections anywhere.
    assert_eq!(c.q("CONFIG SET requirepass pw"), b"+OK\r\n");
    for _ in 0..8 {
        let mut other = srv.client();
        assert_eq!(other.q("GET a"), b"-NOAUTH Authentication required.\r\n");
    }
}

#[test]
fn config_file_and_flags() {
    let dir = std::env::temp_dir().join(format!("percore-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("percore.conf");
    std::fs::write(&path, "# test\nmaxclients 77\nhz 20\n").unwrap();
    let srv = Server::percore(1, &[path.to_str().unwrap()]);
    let mut c = srv.client();
    assert_eq!(
        s(&c.q("CONFIG GET maxclients")),
        "*2\r\n$10\r\nmaxclients\r\n$2\r\n77\r\n"
    );
    assert_eq!(s(&c.q("CONFIG GET hz")), "*2\r\n$2\r\nhz\r\n$2\r\n20\r\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn maxclients_is_enforced() {
    let srv = Server::percore(2, &["--maxclients", "3"]);
    // The readiness probe's connection may still be counted for a moment: retry until admitted.
    let admitted = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let mut c = srv.client();
            c.send_raw(b"PING\r\n");
            if c.read_reply() == b"+PONG\r\n" {
                return c;
            }
            assert!(std::time::Instant::now() < deadline, "never admitted");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let held: Vec<_> = (0..3).map(|_| admitted()).collect();
    let mut extra = srv.client();
    assert_eq!(
        extra.read_reply(),
        b"-ERR max number of clients reached\r\n"
    );
    drop(held);
    // Slots free up as clients leave.
    admitted();
}

#[test]
fn shuts_down_cleanly() {
    let mut srv = Server::percore(4, &[]);
    let mut c = srv.client();
    c.q("SET a 1");
    assert!(srv.terminate().success(), "SIGTERM exits 0");

    let mut srv = Server::percore(2, &[]);
    let mut c = srv.client();
    assert_eq!(c.q("SHUTDOWN ABORT"), b"-ERR No shutdown in progress.\r\n");
    c.send_raw(b"SHUTDOWN NOSAVE\r\n");
    assert!(c.closed());
    let status = srv
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("SHUTDOWN stops the server");
    assert!(status.success());
}

#[test]
fn startup_errors_are_clear() {
    // A port held by another percore (whose shards use SO_REUSEPORT) is refused too, rather
    // than silently shared.
    let first = Server::percore(1, &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["--port", &first.port.to_string(), "--shards", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another Redis or percore"));
    // A port held by a listener without SO_REUSEPORT.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on 127.0.0.1") && err.contains("another Redis or percore"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["--bogus", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting '--bogus'"));
}

/// Too little locked memory for the io_uring executors: a clear error with the fix, exit 1.
/// Runs the binary under a 64 KiB RLIMIT_MEMLOCK (as an unprivileged user when the tests
/// run as root, since root may lock memory regardless).
#[test]
fn locked_memory_shortage_is_explained() {
    let have = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok()
    };
    if !have("prlimit") || !have("setpriv") {
        eprintln!("SKIPPED: prlimit/setpriv (util-linux) not installed");
        return;
    }
    // A copy any user can execute (the build directory may sit under a private home).
    let dir = std::env::temp_dir().join(format!("percore-memlock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("percore");
    std::fs::copy(env!("CARGO_BIN_EXE_percore"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = common::free_port().to_string();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--memlock=65536:65536");
    if root {
        cmd.args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]);
    }
    let out = cmd
        .arg(&bin)
        .args(["--port", &port, "--shards", "2"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("too little locked memory") && err.contains("LimitMEMLOCK=infinity"),
        "{err}"
    );
}
