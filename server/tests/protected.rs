//! What Redis 7.0 keeps from remote or casual use, compared with redis-server:
//! `rename-command`, and `enable-protected-configs` guarding where files are written.

mod common;

use common::{free_port, s, Launch, Server, TempDir};

#[test]
fn rename_command_as_redis() {
    let flags = [
        "--rename-command",
        "GET",
        "fetch",
        "--rename-command",
        "FLUSHALL",
        "",
        "--rename-command",
        "config",
        "Settings-7f3a",
    ];
    let Some(redis) = common::redis_or_skip_with("rename-command against redis-server", &flags)
    else {
        return;
    };
    for shards in [1, 3] {
        let srv = Server::percore(shards, &flags);
        let (mut r, mut p) = (redis.client(), srv.client());
        for q in [
            "SET k v",
            "GET k",
            "fetch k",
            "FETCH k",
            "FLUSHALL",
            "CONFIG GET port",
            "settings-7f3a GET maxmemory",
            "SETTINGS-7F3A SET maxmemory 0",
            "MULTI",
            "fetch k",
            "GET k",
            "EXEC",
            "EVAL \"return redis.call('fetch', KEYS[1])\" 1 k",
            "EVAL \"return redis.pcall('get', KEYS[1])\" 1 k",
            "DEL k",
        ] {
            assert_eq!(s(&p.q(q)), s(&r.q(q)), "{shards} shard(s): {q}");
        }
    }
}

#[test]
fn rename_command_errors_stop_the_start() {
    let dir = TempDir::new("rename");
    for (lines, want) in [
        (
            "rename-command NOSUCH other\n",
            "No such command in rename-command",
        ),
        (
            "rename-command GET SET\n",
            "Target command name already exists",
        ),
        ("rename-command GET\n", "wrong number of arguments"),
    ] {
        let conf = dir.0.join("percore.conf");
        std::fs::write(&conf, lines).unwrap();
        let port = free_port().to_string();
        let log = dir.0.join(format!("{port}.log"));
        let f = Launch::percore(
            port.parse().unwrap(),
            &[conf.to_str().unwrap(), "--port", &port],
        )
        .log(&log)
        .try_start()
        .err()
        .unwrap_or_else(|| panic!("started with {lines:?}"));
        assert!(f.log.contains(want), "{lines:?}: {}", f.log);
    }
    // A command renamed twice in a row, as a file and then a flag can do.
    let srv = Server::percore(
        1,
        &[
            "--rename-command",
            "ECHO",
            "e1",
            "--rename-command",
            "e1",
            "e2",
        ],
    );
    let mut c = srv.client();
    assert_eq!(s(&c.q("e2 hi")), "$2\r\nhi\r\n");
    assert!(s(&c.q("e1 hi")).starts_with("-ERR unknown command 'e1'"));
    assert!(s(&c.q("ECHO hi")).starts_with("-ERR unknown command 'ECHO'"));
}

#[test]
fn dir_and_dbfilename_are_protected_configs() {
    let Some(redis) = common::redis_or_skip("protected configs against redis-server") else {
        return;
    };
    let dir = TempDir::new("protected");
    let srv = Server::percore(1, &[]);
    let (mut r, mut p) = (redis.client(), srv.client());
    for q in [
        format!("CONFIG SET dir {}", dir.path()),
        "CONFIG SET dbfilename x.rdb".to_string(),
        "CONFIG GET enable-protected-configs".to_string(),
        "CONFIG GET enable-module-command".to_string(),
        "CONFIG SET enable-protected-configs yes".to_string(),
        "CONFIG SET maxmemory 0".to_string(),
    ] {
        assert_eq!(s(&p.q(&q)), s(&r.q(&q)), "{q}");
    }
    // `local`: a loopback client may.
    let srv = Server::percore(1, &["--enable-protected-configs", "local"]);
    let mut p = srv.client();
    assert_eq!(
        s(&p.q(&format!("CONFIG SET dir {}", dir.path()))),
        "+OK\r\n"
    );
}

/// `--user` on the command line defines an ACL user, as redis-server's does (its flags are
/// config lines).
#[test]
fn users_can_be_given_as_flags() {
    let srv = Server::percore(1, &["--user", "alice", "on", ">pw", "+@all", "~*"]);
    let mut c = srv.client();
    assert_eq!(
        s(&c.q("ACL USERS")),
        "*2\r\n$5\r\nalice\r\n$7\r\ndefault\r\n"
    );
    assert_eq!(s(&c.q("AUTH alice pw")), "+OK\r\n");
    assert_eq!(s(&c.q("ACL WHOAMI")), "$5\r\nalice\r\n");
}
