//! One-node cluster mode (`cluster-enabled yes`), compared with a redis-server in cluster
//! mode holding every slot; the node's identity across restarts; redis-cli -c and the
//! `redis` crate's cluster client.

mod common;

use common::{free_port, s, Launch, Server, TempDir};

/// A redis-server in cluster mode that owns all slots and says `cluster_state:ok`.
fn redis_cluster(dir: &TempDir) -> Option<Server> {
    common::redis_cluster(dir, "cluster mode against redis-server")
}

/// A reply with the server's own node ID and ports replaced, so two servers compare.
fn norm(reply: &[u8], id: &str, port: u16) -> String {
    let text = s(reply)
        .replace(id, "<id>")
        .replace(&format!(":{port}\r\n"), ":<port>\r\n")
        .replace(&format!(":{port}@"), ":<port>@");
    // The cluster bus port after '@'.
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 {
            out.push_str("<cport>");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// percore's flags for cluster mode in `dir`, with a bus port of its own.
fn cluster_flags(dir: &TempDir) -> Vec<String> {
    [
        "--cluster-enabled",
        "yes",
        "--dir",
        dir.path(),
        "--cluster-port",
        &free_port().to_string(),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn my_id(c: &mut common::Client) -> String {
    let r = s(&c.q("CLUSTER MYID"));
    let id = r.split("\r\n").nth(1).unwrap_or("").to_string();
    assert_eq!(id.len(), 40, "{r:?}");
    id
}

#[test]
fn cluster_mode_answers_as_redis() {
    let dir = TempDir::new("cluster");
    let Some(redis) = redis_cluster(&dir) else {
        return;
    };
    let mut r = redis.client();
    let rid = my_id(&mut r);
    for shards in [1, 3] {
        r.q("FLUSHALL");
        let flags = cluster_flags(&dir);
        let srv = Server::percore(shards, &strs(&flags));
        let mut p = srv.client();
        let pid = my_id(&mut p);
        let mut queries: Vec<String> = [
            "CLUSTER INFO",
            "CLUSTER SLOTS",
            "CLUSTER SHARDS",
            "CLUSTER NODES",
            "INFO cluster",
            "CLUSTER FOO",
            "CLUSTER KEYSLOT",
            "CLUSTER COUNTKEYSINSLOT -1",
            "CLUSTER COUNTKEYSINSLOT 16384",
            "CLUSTER COUNTKEYSINSLOT x",
            "CLUSTER GETKEYSINSLOT 1 -1",
            "CLUSTER GETKEYSINSLOT 99999 1",
            "READONLY",
            "READWRITE",
            "ASKING",
            "SELECT 1",
            "SELECT 0",
            "MSET a 1 b 2",
            "MSET {a}1 1 {a}2 2 a 3",
            "MGET a b",
            "MGET {a}1 {a}2",
            "DEL a b",
            "DEL a a",
            "EXISTS {a}1 {a}2 a",
            "RENAME {a}1 b",
            "RENAME {a}1 {a}3",
            "SUNIONSTORE {x}d {x}s1 {x}s2",
            "SUNIONSTORE d {x}s1",
            "EVAL \"return 1\" 2 a b",
            "EVAL \"return redis.call('get', KEYS[1])\" 1 {a}3",
            "SSUBSCRIBE a b",
            "PUBLISH a x",
            "CLUSTER COUNTKEYSINSLOT 15495",
            "CLUSTER GETKEYSINSLOT 15495 1",
            "CLUSTER GETKEYSINSLOT 15495 0",
            "MULTI",
            "SET a 1",
            "SET b 2",
            "EXEC",
            "EXISTS a b",
            "MULTI",
            "SET {t}a 1",
            "SET {t}b 2",
            "EXEC",
            "MULTI",
            "MSET c 1 d 2",
            "EXEC",
        ]
        .iter()
        .map(|q| q.to_string())
        .collect();
        for key in [
            "",
            "a",
            "foo",
            "{a}x",
            "{}a",
            "a{}",
            "{a",
            "a}",
            "{{a}}",
            "x{y}z{w}",
            "\u{e9}t\u{e9}",
        ] {
            queries.push(format!("CLUSTER KEYSLOT \"{key}\""));
        }
        for q in &queries {
            let (pr, rr) = (p.q(q), r.q(q));
            if q == "CLUSTER GETKEYSINSLOT 15495 1" {
                // Which of the slot's keys comes first is each server's table order.
                assert_eq!(
                    s(&pr).matches("\r\n$").count(),
                    s(&rr).matches("\r\n$").count()
                );
                continue;
            }
            assert_eq!(
                norm(&pr, &pid, srv.port),
                norm(&rr, &rid, redis.port),
                "{shards} shard(s): {q}"
            );
        }
        // RESP3 shapes.
        for (mut c, id, port) in [
            (p, pid, srv.port),
            (redis.client(), rid.clone(), redis.port),
        ] {
            c.q("HELLO 3");
            let got: Vec<String> = ["CLUSTER SLOTS", "CLUSTER SHARDS", "CLUSTER INFO"]
                .iter()
                .map(|q| norm(&c.q(q), &id, port))
                .collect();
            let want: Vec<String> = {
                let mut rc = redis.client();
                rc.q("HELLO 3");
                ["CLUSTER SLOTS", "CLUSTER SHARDS", "CLUSTER INFO"]
                    .iter()
                    .map(|q| norm(&rc.q(q), &rid, redis.port))
                    .collect()
            };
            assert_eq!(got, want);
        }
    }
}

#[test]
fn cluster_disabled_answers_as_redis() {
    let Some(redis) = common::redis_or_skip("cluster disabled against redis-server") else {
        return;
    };
    let srv = Server::percore(2, &[]);
    let (mut r, mut p) = (redis.client(), srv.client());
    for q in [
        "CLUSTER INFO",
        "CLUSTER KEYSLOT a",
        "READONLY",
        "READWRITE",
        "ASKING",
        "MSET a 1 b 2",
        "SELECT 1",
        "INFO cluster",
        "COMMAND INFO cluster|keyslot readonly asking",
    ] {
        assert_eq!(s(&p.q(q)), s(&r.q(q)), "{q}");
    }
}

#[test]
fn the_node_keeps_its_id_and_its_file_is_locked() {
    let dir = TempDir::new("cluster-id");
    let owned = cluster_flags(&dir);
    let flags = strs(&owned);
    let mut srv = Server::percore(2, &flags);
    let id = my_id(&mut srv.client());
    // A second node on the same file is refused, with Redis's words.
    let port = free_port().to_string();
    let log = dir.0.join("second.log");
    let mut args = vec!["--port", &port];
    args.extend_from_slice(&flags);
    let f = Launch::percore(port.parse().unwrap(), &args)
        .log(&log)
        .try_start()
        .err()
        .expect("a second node on the same nodes.conf started");
    assert!(
        f.log
            .contains("is already used by a different Redis Cluster node"),
        "{}",
        f.log
    );
    srv.terminate();
    let srv = Server::percore(1, &flags);
    assert_eq!(
        my_id(&mut srv.client()),
        id,
        "the node ID changed across a restart"
    );
    let file = std::fs::read_to_string(dir.0.join("nodes.conf")).unwrap();
    assert!(file.starts_with(&format!("{id} :{}@", srv.port)), "{file}");
    drop(srv);
    // A file that is not a nodes file stops the start.
    std::fs::write(dir.0.join("nodes.conf"), "garbage\n").unwrap();
    let port = free_port().to_string();
    let mut args = vec!["--port", &port];
    args.extend_from_slice(&flags);
    assert!(Launch::percore(port.parse().unwrap(), &args)
        .try_start()
        .is_err());
}

/// Cluster clients: redis-cli -c and the `redis` crate's cluster client.
#[test]
fn cluster_clients_work_against_one_node() {
    let dir = TempDir::new("cluster-clients");
    let srv = Server::percore(3, &strs(&cluster_flags(&dir)));
    let url = format!("redis://127.0.0.1:{}/", srv.port);
    let client = redis::cluster::ClusterClient::new(vec![url]).expect("cluster client");
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("key{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    for i in 0..200 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("key{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(v, i);
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 200);
    let out = std::process::Command::new("redis-cli")
        .args(["-c", "-p", &srv.port.to_string(), "GET", "key7"])
        .output();
    if let Ok(out) = out {
        assert_eq!(s(&out.stdout), "7\n");
    } else {
        assert!(
            std::env::var("PERCORE_REQUIRE_REDIS").is_err(),
            "redis-cli is required"
        );
    }
}
