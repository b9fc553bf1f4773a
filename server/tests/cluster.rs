//! Cluster mode (`cluster-enabled yes`): one node holding every slot, compared with a
//! redis-server in cluster mode; the node's identity across restarts; redis-cli -c and the
//! `redis` crate's cluster client. Then several percore nodes: built and resharded with
//! `redis-cli --cluster` while a cluster client writes, the bus's rules (MEET spreading,
//! FORGET, failure detection, epochs, the nodes file across restarts), redirections, and
//! memtier_benchmark and redis-py's RedisCluster as clients.

mod common;

use common::cluster::{
    bus_port, cluster_check, info_field, my_id, node_flags, redis_cli, start_nodes, strs,
    wait_agreed, wait_for,
};
use common::{free_port, s, Launch, Server, TempDir};
use std::time::{Duration, Instant};

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
        common::own_all_slots(&srv);
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
    common::own_all_slots(&srv);
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

// ---------------------------------------------------------------------------------------
// Several nodes.

/// A cluster made by hand (no redis-cli): each node takes an equal share of the slots and
/// its own config epoch, and meets the first node.
fn build_by_hand(nodes: &[(Server, Vec<String>)]) {
    let n = nodes.len();
    for (i, (srv, _)) in nodes.iter().enumerate() {
        let mut c = srv.client();
        let (a, b) = (16384 * i / n, 16384 * (i + 1) / n - 1);
        assert_eq!(
            s(&c.q(&format!("CLUSTER ADDSLOTSRANGE {a} {b}"))),
            "+OK\r\n"
        );
        assert_eq!(
            s(&c.q(&format!("CLUSTER SET-CONFIG-EPOCH {}", i + 1))),
            "+OK\r\n"
        );
    }
    for (srv, _) in &nodes[1..] {
        let q = format!(
            "CLUSTER MEET 127.0.0.1 {} {}",
            nodes[0].0.port,
            bus_port(&nodes[0].1)
        );
        assert_eq!(s(&srv.client().q(&q)), "+OK\r\n");
    }
    wait_agreed(&nodes.iter().map(|n| &n.0).collect::<Vec<_>>(), n);
}

fn cluster_client(nodes: &[&Server]) -> redis::cluster::ClusterClient {
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("redis://127.0.0.1:{}/", n.port))
        .collect();
    redis::cluster::ClusterClient::new(urls).expect("cluster client")
}

fn total_keys(nodes: &[&Server]) -> i64 {
    nodes
        .iter()
        .map(|n| {
            let r = s(&n.client().q("DBSIZE"));
            r.trim_start_matches(':').trim().parse::<i64>().unwrap()
        })
        .sum()
}

/// The slots each node owns, by node ID, as node `c` sees them.
fn owned_slots(c: &mut common::Client) -> std::collections::HashMap<String, usize> {
    let text = s(&c.q("CLUSTER NODES"));
    let mut out = std::collections::HashMap::new();
    for line in text.lines().filter(|l| l.len() > 40) {
        let f: Vec<&str> = line
            .trim_start_matches(|c: char| !c.is_ascii_hexdigit())
            .split(' ')
            .collect();
        let mut n = 0;
        for r in f.iter().skip(8).filter(|t| !t.starts_with('[')) {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            n += b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1;
        }
        out.insert(f[0].to_string(), n);
    }
    out
}

#[test]
fn three_nodes_made_and_resharded_by_redis_cli_under_writes() {
    let dir = TempDir::new("cluster-three");
    let nodes = start_nodes(&dir, 3, 2, 15_000);
    let srvs: Vec<&Server> = nodes.iter().map(|n| &n.0).collect();
    let mut args = vec!["--cluster".to_string(), "create".to_string()];
    args.extend(srvs.iter().map(|n| format!("127.0.0.1:{}", n.port)));
    args.push("--cluster-yes".into());
    let Some((ok, out)) = redis_cli(&strs(&args)) else {
        return;
    };
    assert!(ok && out.contains("[OK] All 16384 slots covered."), "{out}");
    wait_agreed(&srvs, 3);
    cluster_check(srvs[0].port);
    let ids: Vec<String> = srvs.iter().map(|n| my_id(&mut n.client())).collect();
    for n in &srvs {
        let mut c = n.client();
        assert_eq!(info_field(&mut c, "cluster_size"), "3");
        wait_for("every bus link up", Duration::from_secs(60), || {
            s(&c.q("CLUSTER NODES")).matches(" connected").count() == 3
        });
        let nodes_text = s(&c.q("CLUSTER NODES"));
        assert_eq!(
            nodes_text.matches("myself,master").count(),
            1,
            "{nodes_text}"
        );
    }

    // Redirections, by hand: one node serves "foo" (slot 12182), the others send MOVED there.
    let owner = srvs
        .iter()
        .position(|n| s(&n.client().q("SET foo bar")) == "+OK\r\n")
        .expect("some node owns foo's slot");
    for (i, n) in srvs.iter().enumerate().filter(|(i, _)| *i != owner) {
        let mut c = n.client();
        assert_eq!(
            s(&c.q("GET foo")),
            format!("-MOVED 12182 127.0.0.1:{}\r\n", srvs[owner].port),
            "node {i}"
        );
        // A transaction too, and a script's keys.
        assert_eq!(s(&c.q("MULTI")), "+OK\r\n");
        assert!(s(&c.q("SET foo x")).starts_with("-MOVED 12182"));
        assert!(s(&c.q("EXEC")).starts_with("-EXECABORT"));
        let r = s(&c.cmd(&[b"EVAL", b"return 1", b"1", b"foo"]));
        assert!(r.starts_with("-MOVED 12182"), "{r}");
        // ASKING without an import is no pass.
        assert_eq!(s(&c.q("ASKING")), "+OK\r\n");
        assert!(s(&c.q("GET foo")).starts_with("-MOVED 12182"));
    }
    assert_eq!(
        s(&srvs[owner].client().q("MGET foo bar")),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );

    // An open slot by hand: the owner migrates {t}'s slot to another node.
    let slot: u16 = s(&srvs[0].client().q("CLUSTER KEYSLOT {t}"))
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    let o = srvs
        .iter()
        .position(|n| s(&n.client().q("SET {t}a 1")) == "+OK\r\n")
        .unwrap();
    let t = (o + 1) % 3;
    let (mut oc, mut tc) = (srvs[o].client(), srvs[t].client());
    assert_eq!(
        s(&tc.q(&format!("CLUSTER SETSLOT {slot} IMPORTING {}", ids[o]))),
        "+OK\r\n"
    );
    assert_eq!(
        s(&oc.q(&format!("CLUSTER SETSLOT {slot} MIGRATING {}", ids[t]))),
        "+OK\r\n"
    );
    assert!(s(&oc.q("CLUSTER NODES")).contains(&format!("[{slot}->-{}]", ids[t])));
    assert!(s(&tc.q("CLUSTER NODES")).contains(&format!("[{slot}-<-{}]", ids[o])));
    assert_eq!(
        s(&oc.q("GET {t}a")),
        "$1\r\n1\r\n",
        "a key still here is served"
    );
    assert_eq!(
        s(&oc.q("GET {t}b")),
        format!("-ASK {slot} 127.0.0.1:{}\r\n", srvs[t].port)
    );
    assert_eq!(
        s(&oc.q("MGET {t}a {t}b")),
        "-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
    );
    assert_eq!(
        s(&tc.q("GET {t}b")),
        format!("-MOVED {slot} 127.0.0.1:{}\r\n", srvs[o].port)
    );
    assert_eq!(s(&tc.q("ASKING")), "+OK\r\n");
    assert_eq!(s(&tc.q("SET {t}b 2")), "+OK\r\n");
    assert_eq!(
        s(&tc.q("GET {t}b")),
        format!("-MOVED {slot} 127.0.0.1:{}\r\n", srvs[o].port),
        "ASKING covers one command"
    );
    // ... or a whole transaction, ASKING before MULTI (Redis keeps the flag through it).
    assert_eq!(s(&tc.q("ASKING")), "+OK\r\n");
    assert_eq!(s(&tc.q("MULTI")), "+OK\r\n");
    assert_eq!(s(&tc.q("SET {t}b 3")), "+QUEUED\r\n");
    assert_eq!(s(&tc.q("EXEC")), "*1\r\n+OK\r\n");
    assert_eq!(
        s(&tc.q("GET {t}b")),
        format!("-MOVED {slot} 127.0.0.1:{}\r\n", srvs[o].port),
        "the transaction used the ASKING up"
    );
    assert_eq!(s(&tc.q("ASKING")), "+OK\r\n");
    assert_eq!(
        s(&tc.q("MGET {t}b {t}c")),
        "-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
    );
    assert_eq!(
        s(&oc.q(&format!("CLUSTER SETSLOT {slot} NODE {}", ids[t]))),
        format!("-ERR Can't assign hashslot {slot} to a different node while I still hold keys for this hash slot.\r\n")
    );
    for c in [&mut oc, &mut tc] {
        assert_eq!(
            s(&c.q(&format!("CLUSTER SETSLOT {slot} STABLE"))),
            "+OK\r\n"
        );
    }
    assert_eq!(
        s(&tc.q("DEL {t}b")),
        format!("-MOVED {slot} 127.0.0.1:{}\r\n", srvs[o].port)
    );
    // {t}b stays on t (an abandoned import, as in Redis); --cluster check would see it as
    // an open slot only while the states were set.
    assert_eq!(s(&tc.q("ASKING")), "+OK\r\n");
    assert_eq!(
        s(&tc.q("GET {t}b")),
        format!("-MOVED {slot} 127.0.0.1:{}\r\n", srvs[o].port)
    );
    drop((oc, tc));
    // Take it back so the key counts below hold.
    let mut tc = srvs[t].client();
    assert_eq!(
        s(&tc.q(&format!("CLUSTER SETSLOT {slot} IMPORTING {}", ids[o]))),
        "+OK\r\n"
    );
    assert_eq!(s(&tc.q("ASKING")), "+OK\r\n");
    assert_eq!(s(&tc.q("DEL {t}b")), ":1\r\n");
    // A script sent after ASKING may use the importing slot's keys, as Redis's
    // scriptVerifyClusterState lets it (percore refused the script's calls).
    let set = b"return redis.call('SET', KEYS[1], 'x')";
    assert_eq!(s(&tc.q("ASKING")), "+OK\r\n");
    assert_eq!(s(&tc.cmd(&[b"EVAL", set, b"1", b"{t}c"])), "+OK\r\n");
    assert_eq!(s(&tc.q("ASKING")), "+OK\r\n");
    assert_eq!(s(&tc.q("DEL {t}c")), ":1\r\n");
    assert_eq!(
        s(&tc.q(&format!("CLUSTER SETSLOT {slot} STABLE"))),
        "+OK\r\n"
    );
    drop(tc);
    cluster_check(srvs[0].port);

    // A cluster client writes while redis-cli moves 1000 slots from node 0 to node 1.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = cluster_client(&srvs);
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut con = client.get_connection().expect("cluster connection");
            // Each round writes a new key and overwrites an older one: the keys being
            // moved are written to as well. `acked` keeps each key's last acknowledged
            // value.
            let mut acked = std::collections::BTreeMap::new();
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (k, v) in [(i, i), (i / 2, i)] {
                    let r: redis::RedisResult<()> = redis::cmd("SET")
                        .arg(format!("key:{k}"))
                        .arg(v)
                        .query(&mut con);
                    match r {
                        Ok(()) => {
                            acked.insert(k, v);
                        }
                        Err(e) => errors.push(format!("key:{k}: {e}")),
                    }
                }
                i += 1;
            }
            (acked, errors)
        })
    };
    wait_for("the writer to start", Duration::from_secs(60), || {
        total_keys(&srvs) > 500
    });
    let before = owned_slots(&mut srvs[0].client());
    let slots0_before = slots_of(&mut srvs[0].client(), &ids[0]);
    let slots1_before = slots_of(&mut srvs[1].client(), &ids[1]);
    let (ok, out) = reshard(srvs[0].port, &ids[0], &ids[1], 1000).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, errors) = writer.join().unwrap();
    assert!(ok, "reshard failed:\n{out}");
    assert!(
        errors.is_empty(),
        "{} write errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(acked.len() > 500, "{} writes", acked.len());
    wait_agreed(&srvs, 3);
    cluster_check(srvs[0].port);
    for n in &srvs {
        let after = owned_slots(&mut n.client());
        assert_eq!(after[&ids[0]], before[&ids[0]] - 1000);
        assert_eq!(after[&ids[1]], before[&ids[1]] + 1000);
    }
    // Every acknowledged write is readable from its new owner, and nothing else is there
    // (foo and {t}a are the two other keys).
    let mut con = cluster_client(&srvs).get_connection().unwrap();
    for (k, v) in &acked {
        let got: Option<u64> = redis::cmd("GET")
            .arg(format!("key:{k}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(got, Some(*v), "key:{k} after the reshard");
    }
    assert_eq!(total_keys(&srvs), acked.len() as i64 + 2);
    // The moved slots: node 0's before, node 1's now; their keys are counted and listed
    // by node 1 and by node 0 no more.
    let moved: Vec<u16> = slots_of(&mut srvs[1].client(), &ids[1])
        .difference(&slots1_before)
        .copied()
        .collect();
    assert_eq!(moved.len(), 1000);
    assert!(moved.iter().all(|s| slots0_before.contains(s)));
    let (mut c0, mut c1) = (srvs[0].client(), srvs[1].client());
    let mut checked = 0;
    for (i, v) in acked.iter().take(3000) {
        let k = format!("key:{i}");
        let slot = crc16_slot(&k);
        if !moved.contains(&slot) {
            continue;
        }
        if checked == 0 {
            assert_eq!(slot_of(srvs[1], &k), slot, "CLUSTER KEYSLOT {k}");
        }
        assert_eq!(
            s(&c1.q(&format!("GET {k}"))),
            format!("${}\r\n{v}\r\n", v.to_string().len())
        );
        let keys = s(&c1.q(&format!("CLUSTER GETKEYSINSLOT {slot} 1000")));
        assert!(keys.contains(&k), "{keys}");
        assert_ne!(
            s(&c1.q(&format!("CLUSTER COUNTKEYSINSLOT {slot}"))),
            ":0\r\n"
        );
        assert_eq!(
            s(&c0.q(&format!("CLUSTER COUNTKEYSINSLOT {slot}"))),
            ":0\r\n"
        );
        checked += 1;
    }
    assert!(checked > 0, "no written key was in a moved slot");
}

/// The slots node `id` owns as `c` sees them.
fn slots_of(c: &mut common::Client, id: &str) -> std::collections::HashSet<u16> {
    let text = s(&c.q("CLUSTER NODES"));
    let mut out = std::collections::HashSet::new();
    for line in text.lines().filter(|l| l.contains(id)) {
        let line = line.trim_start_matches(|c: char| !c.is_ascii_hexdigit());
        if !line.starts_with(id) {
            continue;
        }
        for r in line.split(' ').skip(8).filter(|t| !t.starts_with('[')) {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            out.extend(a.parse::<u16>().unwrap()..=b.parse::<u16>().unwrap());
        }
    }
    out
}

/// Redis Cluster's slot of a key without a hash tag: CRC16-XMODEM mod 16384.
fn crc16_slot(key: &str) -> u16 {
    let mut crc: u16 = 0;
    for &b in key.as_bytes() {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc & 16383
}

fn slot_of(srv: &Server, key: &str) -> u16 {
    s(&srv.client().q(&format!("CLUSTER KEYSLOT {key}")))
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap()
}

/// MEET spreads (C meets B, B met A: A learns C), failure detection marks a silent node
/// PFAIL then FAIL and takes the cluster down, FORGET holds for its ban, and a restarted
/// node comes back with its view from its nodes file.
#[test]
fn the_bus_spreads_nodes_detects_failures_and_keeps_the_view_across_restarts() {
    let dir = TempDir::new("cluster-bus");
    let mut nodes = start_nodes(&dir, 3, 1, 1000);
    // B meets A, C meets B: nobody told A about C.
    for (i, (n, _)) in nodes.iter().enumerate() {
        let (a, b) = (16384 * i / 3, 16384 * (i + 1) / 3 - 1);
        assert_eq!(
            s(&n.client().q(&format!("CLUSTER ADDSLOTSRANGE {a} {b}"))),
            "+OK\r\n"
        );
        assert_eq!(
            s(&n.client().q(&format!("CLUSTER SET-CONFIG-EPOCH {}", i + 1))),
            "+OK\r\n"
        );
    }
    for i in 1..3 {
        let q = format!(
            "CLUSTER MEET 127.0.0.1 {} {}",
            nodes[i - 1].0.port,
            bus_port(&nodes[i - 1].1)
        );
        assert_eq!(s(&nodes[i].0.client().q(&q)), "+OK\r\n");
    }
    wait_agreed(&nodes.iter().map(|n| &n.0).collect::<Vec<_>>(), 3);
    let ids: Vec<String> = nodes.iter().map(|n| my_id(&mut n.0.client())).collect();
    assert!(s(&nodes[0].0.client().q("CLUSTER NODES")).contains(&ids[2]));
    let mut a = nodes[0].0.client();
    // Redis's replies and errors (cluster.c's texts), on a node that owns 0-5460.
    let unknown = "0".repeat(40);
    for (q, want) in [
        (format!("CLUSTER COUNT-FAILURE-REPORTS {}", ids[2]), ":0".to_string()),
        (
            format!("CLUSTER COUNT-FAILURE-REPORTS {unknown}"),
            format!("-ERR Unknown node {unknown}"),
        ),
        (
            "CLUSTER SET-CONFIG-EPOCH 9".into(),
            "-ERR The user can assign a config epoch only when the node does not know any other node.".into(),
        ),
        ("CLUSTER ADDSLOTS 0".into(), "-ERR Slot 0 is already busy".into()),
        ("CLUSTER ADDSLOTS 16384".into(), "-ERR Invalid or out of range slot".into()),
        (
            "CLUSTER ADDSLOTSRANGE 5 1".into(),
            "-ERR start slot number 5 is greater than end slot number 1".into(),
        ),
        ("CLUSTER DELSLOTS 0 0".into(), "-ERR Slot 0 specified multiple times".into()),
        (
            format!("CLUSTER SETSLOT 0 MIGRATING {unknown}"),
            format!("-ERR I don't know about node {unknown}"),
        ),
        (
            format!("CLUSTER SETSLOT 0 IMPORTING {}", ids[1]),
            "-ERR I'm already the owner of hash slot 0".into(),
        ),
        (
            format!("CLUSTER SETSLOT 6000 MIGRATING {}", ids[1]),
            "-ERR I'm not the owner of hash slot 6000".into(),
        ),
        (
            "CLUSTER SETSLOT 0 FOO".into(),
            "-ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP".into(),
        ),
        (
            format!("CLUSTER FORGET {}", ids[0]),
            "-ERR I tried hard but I can't forget myself...".into(),
        ),
        ("CLUSTER RESET FOO".into(), "-ERR syntax error".into()),
        (
            "CLUSTER RESET".into(),
            "-ERR CLUSTER RESET can't be called with master nodes containing keys".into(),
        ),
    ] {
        if q == "CLUSTER RESET" {
            assert_eq!(s(&a.q("SET {b}k 1")), "+OK\r\n", "b is slot 3300");
        }
        assert_eq!(s(&a.q(&q)), format!("{want}\r\n"), "{q}");
    }
    assert_eq!(s(&a.q("DEL {b}k")), ":1\r\n");
    let epochs: Vec<String> = nodes
        .iter()
        .map(|n| info_field(&mut n.0.client(), "cluster_my_epoch"))
        .collect();
    assert_eq!(epochs, ["1", "2", "3"]);

    // C stops: A and B see it fail and the cluster goes down (C's slots have no live owner).
    let (c_port, c_flags) = (nodes[2].0.port, nodes[2].1.clone());
    nodes[2].0.terminate();
    for n in &nodes[..2] {
        let mut cl = n.0.client();
        wait_for("C marked fail", Duration::from_secs(60), || {
            s(&cl.q("CLUSTER NODES")).lines().any(|l| {
                l.starts_with(&ids[2]) && l.contains("master,fail ") && l.contains("disconnected")
            })
        });
        wait_for("cluster_state:fail", Duration::from_secs(60), || {
            info_field(&mut cl, "cluster_state") == "fail"
        });
    }
    let key_on_a = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| slot_of(&nodes[0].0, k) < 5461)
        .unwrap();
    assert_eq!(
        s(&a.q(&format!("GET {key_on_a}"))),
        "-CLUSTERDOWN The cluster is down\r\n"
    );
    assert_eq!(
        s(&a.q("CLUSTER MYID")).len(),
        47,
        "commands without keys still run"
    );

    // A forgets C; B still knows (and gossips) it, but the ban keeps it away.
    assert_eq!(s(&a.q(&format!("CLUSTER FORGET {}", ids[2]))), "+OK\r\n");
    assert_eq!(info_field(&mut a, "cluster_known_nodes"), "2");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        assert_eq!(
            info_field(&mut a, "cluster_known_nodes"),
            "2",
            "C came back through gossip"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        s(&a.q(&format!("CLUSTER COUNT-FAILURE-REPORTS {}", ids[2]))),
        format!("-ERR Unknown node {}\r\n", ids[2])
    );

    // C restarts on its port with its nodes file: same ID, same slots, same epoch, knows A
    // and B; B sees it again.
    let port = c_port.to_string();
    let mut args = vec!["--port", &port, "--shards", "1"];
    args.extend(strs(&c_flags));
    let c = Launch::percore(c_port, &args).start();
    let mut cc = c.client();
    assert_eq!(my_id(&mut cc), ids[2]);
    assert_eq!(info_field(&mut cc, "cluster_my_epoch"), "3");
    let view = s(&cc.q("CLUSTER NODES"));
    assert!(view.contains(&ids[0]) && view.contains(&ids[1]), "{view}");
    assert!(
        view.lines()
            .any(|l| l.starts_with(&ids[2]) && l.ends_with(" 10922-16383")),
        "{view}"
    );
    let mut b = nodes[1].0.client();
    wait_for("B to clear C's failure", Duration::from_secs(60), || {
        s(&b.q("CLUSTER NODES"))
            .lines()
            .any(|l| l.starts_with(&ids[2]) && l.contains(" master - ") && l.contains(" connected"))
    });
}

/// Slot claims: the higher config epoch wins, and two masters with the same epoch end up
/// with different ones (the smaller node ID moves).
#[test]
fn the_higher_epoch_wins_and_equal_epochs_are_split() {
    let dir = TempDir::new("cluster-epochs");
    let nodes = start_nodes(&dir, 4, 1, 2000);
    let (a, b) = (&nodes[0], &nodes[1]);
    let q = |n: &(Server, Vec<String>), line: &str| s(&n.0.client().q(line));
    assert_eq!(q(a, "CLUSTER ADDSLOTSRANGE 0 8191"), "+OK\r\n");
    assert_eq!(q(a, "CLUSTER SET-CONFIG-EPOCH 1"), "+OK\r\n");
    assert_eq!(q(b, "CLUSTER ADDSLOTSRANGE 0 16383"), "+OK\r\n");
    assert_eq!(q(b, "CLUSTER SET-CONFIG-EPOCH 2"), "+OK\r\n");
    assert_eq!(
        q(b, "CLUSTER SET-CONFIG-EPOCH 3"),
        "-ERR Node config epoch is already non-zero\r\n"
    );
    let meet = format!("CLUSTER MEET 127.0.0.1 {} {}", b.0.port, bus_port(&b.1));
    assert_eq!(q(a, &meet), "+OK\r\n");
    wait_agreed(&[&a.0, &b.0], 2);
    let slots = q(a, "CLUSTER SLOTS");
    assert_eq!(slots.matches("\r\n:0\r\n:16383\r\n").count(), 1, "{slots}");
    assert!(slots.contains(&format!(":{}\r\n", b.0.port)), "{slots}");
    assert_eq!(owned_slots(&mut a.0.client())[&my_id(&mut a.0.client())], 0);

    let (c, d) = (&nodes[2], &nodes[3]);
    for (n, range) in [(c, "0 8191"), (d, "8192 16383")] {
        assert_eq!(q(n, &format!("CLUSTER ADDSLOTSRANGE {range}")), "+OK\r\n");
        assert_eq!(q(n, "CLUSTER SET-CONFIG-EPOCH 5"), "+OK\r\n");
    }
    let meet = format!("CLUSTER MEET 127.0.0.1 {} {}", d.0.port, bus_port(&d.1));
    assert_eq!(q(c, &meet), "+OK\r\n");
    wait_agreed(&[&c.0, &d.0], 2);
    let mut cc = c.0.client();
    let mut dc = d.0.client();
    wait_for("the epochs to differ", Duration::from_secs(60), || {
        info_field(&mut cc, "cluster_my_epoch") != info_field(&mut dc, "cluster_my_epoch")
    });
    let (cid, did) = (my_id(&mut cc), my_id(&mut dc));
    let smaller = if cid < did { &mut cc } else { &mut dc };
    assert_eq!(info_field(smaller, "cluster_my_epoch"), "6");
    // The node holding the highest epoch keeps it; the other one takes a new one.
    assert_eq!(s(&smaller.q("CLUSTER BUMPEPOCH")), "+STILL 6\r\n");
    let other = if cid < did { &mut dc } else { &mut cc };
    wait_for("the new epoch to spread", Duration::from_secs(60), || {
        info_field(other, "cluster_current_epoch") == "6"
    });
    assert_eq!(s(&other.q("CLUSTER BUMPEPOCH")), "+BUMPED 7\r\n");
}

/// memtier_benchmark in cluster mode and redis-py's RedisCluster run workloads across three
/// nodes; each skips, saying so, when its tool is not installed.
#[test]
fn cluster_clients_run_workloads_across_three_nodes() {
    let dir = TempDir::new("cluster-clients3");
    let nodes = start_nodes(&dir, 3, 2, 15_000);
    build_by_hand(&nodes);
    let srvs: Vec<&Server> = nodes.iter().map(|n| &n.0).collect();
    let port = srvs[0].port.to_string();

    match memtier(
        srvs[0].port,
        &["-t", "2", "-n", "1000", "--key-maximum", "5000"],
    )
    .output()
    {
        Ok(out) => {
            memtier_clean(out);
            assert!(total_keys(&srvs) > 0);
            // Its keys sit on the nodes that own their slots.
            for n in &srvs {
                let mut c = n.client();
                let r = s(&c.q("RANDOMKEY"));
                if let Some(k) = r.split("\r\n").nth(1) {
                    assert_eq!(s(&c.q(&format!("EXISTS {k}"))), ":1\r\n", "{k}");
                }
            }
        }
        Err(e) => eprintln!("skipping the memtier_benchmark part: it is not installed ({e})"),
    }
    memtier_during_a_reshard(&srvs);

    let script = r#"
import sys
from redis.cluster import RedisCluster, ClusterNode
rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", int(sys.argv[1]))], decode_responses=True)
for i in range(1000):
    rc.set(f"py:{i}", i)
assert all(rc.get(f"py:{i}") == str(i) for i in range(1000))
rc.mset_nonatomic({f"m:{i}": i for i in range(100)})
assert rc.mget_nonatomic([f"m:{i}" for i in range(100)]) == [str(i) for i in range(100)]
pipe = rc.pipeline()
for i in range(500):
    pipe.incr(f"ctr:{i % 50}")
pipe.execute()
assert sum(int(rc.get(f"ctr:{i}")) for i in range(50)) == 500
assert rc.cluster_keyslot("foo") == 12182
assert len(rc.get_nodes()) == 3
print("ok")
"#;
    let have_redis_py = std::process::Command::new("python3")
        .args(["-c", "import redis.cluster"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_redis_py {
        assert!(
            std::env::var("PERCORE_REQUIRE_REDIS").is_err(),
            "redis-py is required (python3 -m pip install redis)"
        );
        eprintln!("skipping the redis-py part: python3 with the redis package is not installed");
        return;
    }
    let out = std::process::Command::new("python3")
        .args(["-c", script, &port])
        .output()
        .unwrap();
    assert!(
        out.status.success() && s(&out.stdout).trim() == "ok",
        "redis-py:\n{}{}",
        s(&out.stdout),
        s(&out.stderr)
    );
    let mut con = cluster_client(&srvs).get_connection().unwrap();
    let v: String = redis::cmd("GET").arg("py:999").query(&mut con).unwrap();
    assert_eq!(v, "999");
}

/// A snapshot saved by a node in one mode loads in the other: keys are placed by hash slot
/// in cluster mode and by xxh3 otherwise, and loading re-routes them.
#[test]
fn snapshots_load_across_cluster_and_plain_placement() {
    let dir = TempDir::new("cluster-snap");
    let cluster = node_flags(&dir, "snap", 15_000);
    let own = format!("{}/snap", dir.path());
    let plain = ["--dir", own.as_str()];
    let keys: Vec<String> = (0..500).map(|i| format!("key:{i}")).collect();
    // Plain (3 shards) → cluster (3 shards) → plain (2 shards) → cluster (3 shards).
    let srv = Server::percore(3, &plain);
    let mut c = srv.client();
    for k in &keys {
        assert_eq!(s(&c.q(&format!("SET {k} v{k}"))), "+OK\r\n");
    }
    assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    drop(srv);
    let check = |srv: &Server, cluster: bool| {
        let mut c = srv.client();
        if cluster {
            common::own_all_slots(srv);
        }
        assert_eq!(s(&c.q("DBSIZE")), format!(":{}\r\n", keys.len()));
        for k in &keys {
            let want = format!("${}\r\nv{k}\r\n", k.len() + 1);
            assert_eq!(s(&c.q(&format!("GET {k}"))), want, "{k}");
        }
        if cluster {
            let slot = slot_of(srv, &keys[0]);
            assert_eq!(
                s(&c.q(&format!("CLUSTER GETKEYSINSLOT {slot} 10")))
                    .matches(&keys[0])
                    .count(),
                1
            );
            let counted: i64 = keys
                .iter()
                .map(|k| slot_of(srv, k))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|slot| {
                    s(&c.q(&format!("CLUSTER COUNTKEYSINSLOT {slot}")))
                        .trim_start_matches(':')
                        .trim()
                        .parse::<i64>()
                        .unwrap()
                })
                .sum();
            assert_eq!(counted, keys.len() as i64);
        }
        assert_eq!(s(&c.q("SAVE")), "+OK\r\n");
    };
    let srv = Server::percore(3, &strs(&cluster));
    check(&srv, true);
    drop(srv);
    let srv = Server::percore(2, &plain);
    check(&srv, false);
    drop(srv);
    let srv = Server::percore(3, &strs(&cluster));
    check(&srv, true);
}

/// memtier_benchmark --cluster-mode reads and overwrites keys while redis-cli moves 300 slots
/// from node 0 to node 2: memtier sees no error (it follows MOVED and ASK), the reshard
/// succeeds and `--cluster check` is clean after. Skips, saying so, without memtier or
/// redis-cli.
fn memtier_during_a_reshard(srvs: &[&Server]) {
    let memtier = memtier(
        srvs[0].port,
        &["-t", "1", "--test-time", "25", "--key-maximum", "20000"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn();
    let Ok(memtier) = memtier else {
        eprintln!("skipping the reshard under memtier_benchmark: memtier is not installed");
        return;
    };
    let ids: Vec<String> = srvs.iter().map(|n| my_id(&mut n.client())).collect();
    let before = total_keys(srvs);
    wait_for("memtier to write", Duration::from_secs(60), || {
        total_keys(srvs) > before + 1000
    });
    let resharded = reshard(srvs[0].port, &ids[0], &ids[2], 300);
    let text = memtier_clean(memtier.wait_with_output().unwrap());
    let Some((ok, log)) = resharded else {
        return;
    };
    assert!(ok, "reshard under memtier failed:\n{log}");
    // memtier met the moves: its MOVED/sec column is not zero.
    let totals: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("Totals"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert!(
        totals
            .get(4)
            .and_then(|m| m.parse::<f64>().ok())
            .is_some_and(|m| m > 0.0),
        "no MOVED during the reshard:\n{text}"
    );
    wait_agreed(srvs, srvs.len());
    cluster_check(srvs[0].port);
}

/// memtier_benchmark in cluster mode through node `port`: 4 connections a thread, SET:GET
/// 1:1, 32-byte values, and `args`.
fn memtier(port: u16, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("memtier_benchmark");
    c.args([
        "-s",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--cluster-mode",
        "-c",
        "4",
    ])
    .args(["--ratio", "1:1", "-d", "32", "--hide-histogram"])
    .args(args);
    c
}

/// A memtier run that succeeded without an error line; its output.
fn memtier_clean(out: std::process::Output) -> String {
    let text = format!("{}{}", s(&out.stdout), s(&out.stderr));
    assert!(out.status.success(), "memtier_benchmark failed:\n{text}");
    assert!(!text.to_ascii_lowercase().contains("error"), "{text}");
    text
}

/// `redis-cli --cluster reshard` through node `port`: `slots` slots from node `from` to
/// node `to`, without questions. None when redis-cli is not installed.
fn reshard(port: u16, from: &str, to: &str, slots: usize) -> Option<(bool, String)> {
    let addr = format!("127.0.0.1:{port}");
    let slots = slots.to_string();
    redis_cli(&[
        "--cluster",
        "reshard",
        &addr,
        "--cluster-from",
        from,
        "--cluster-to",
        to,
        "--cluster-slots",
        &slots,
        "--cluster-yes",
    ])
}

/// A connection to `srv` (of `shards` cores) that the kernel placed on core `core`: new
/// connections are made until one raises that core's count in INFO shards, asked on one
/// connection kept for it (a connection opened per question would move the counts itself).
/// The others are returned too, to be kept open until the test ends.
fn client_on_core(
    srv: &Server,
    shards: usize,
    core: usize,
) -> (common::Client, Vec<common::Client>) {
    let mut info = srv.client();
    let mut counts = || {
        let text = s(&info.q("INFO shards"));
        (0..shards)
            .map(|i| {
                let line = text
                    .lines()
                    .find(|l| l.starts_with(&format!("shard{i}:")))
                    .unwrap_or_default();
                common::info_int(line, "connections")
            })
            .collect::<Vec<_>>()
    };
    let mut others = Vec::new();
    for _ in 0..200 {
        let before = counts();
        let mut c = srv.client();
        assert_eq!(s(&c.q("PING")), "+PONG\r\n");
        let after = counts();
        let added: Vec<usize> = (0..shards).filter(|&i| after[i] != before[i]).collect();
        if added == [core] && after[core] == before[core] + 1 {
            return (c, others);
        }
        others.push(c);
    }
    panic!("no connection landed on core {core} in 200 tries");
}

/// Whether a reply has arrived on `c` (without reading it).
fn answered(c: &common::Client) -> bool {
    c.stream.set_nonblocking(true).unwrap();
    let r = c.stream.peek(&mut [0u8; 1]);
    c.stream.set_nonblocking(false).unwrap();
    matches!(r, Ok(n) if n > 0)
}

/// The redirection check runs on the client's core and the command later on its key's
/// shard: a slot that changes in between is looked at again where the command runs. Here
/// the key's core is held busy (DEBUG SLEEP) while a SET to it, checked on the other core
/// when the slot was plainly this node's, waits in its batch; then the slot starts
/// migrating (the SET must now get ASK: run, it would create a key after redis-cli's
/// GETKEYSINSLOT saw the slot empty, and the move's SETSLOT NODE would fail with "still
/// hold keys", the race CI once caught in the reshard test above). The same for a
/// transaction's EXEC. A transaction whose key exists runs whole on a migrating slot, even
/// when its own DEL removes the key a later command writes (Redis checks a transaction
/// once). And a slot taken from this node: a SET to it must not create a key no node
/// serves.
#[test]
fn a_slot_that_changes_between_check_and_run_redirects_the_command() {
    let dir = TempDir::new("cluster-recheck");
    let nodes: Vec<(Server, Vec<String>)> = (0..2)
        .map(|i| {
            let mut flags = node_flags(&dir, &format!("n{i}"), 15_000);
            flags.extend(["--enable-debug-command".to_string(), "yes".to_string()]);
            (Server::percore(2, &strs(&flags)), flags)
        })
        .collect();
    build_by_hand(&nodes);
    let (a, b) = (&nodes[0].0, &nodes[1].0);
    let b_id = my_id(&mut b.client());
    // Keys of node A's slots (0-8191) whose shard is core 1 (`slot % 2` in cluster
    // mode).
    let mut keys = (0..).map(|i| format!("k{i}")).filter(|k| {
        let slot = crc16_slot(k);
        slot < 8192 && slot % 2 == 1
    });
    let mut key = || keys.next().unwrap();
    let (migrated, in_exec, replaced, dropped) = (key(), key(), key(), key());
    let (mut writer, _w) = client_on_core(a, 2, 0);
    let (mut admin, _a) = client_on_core(a, 2, 0);
    let (mut sleeper, _s) = client_on_core(a, 2, 1);
    // The key's core is put to sleep, the command sent, and the slot changed while the
    // command waits. On a loaded machine the command may still have run before the change
    // (the sleep not begun yet): seen by its reply already there, that attempt is undone
    // and made again.
    let mut race = |key: &str, tx: bool, change: String, expect: String| {
        for attempt in 1.. {
            assert!(
                attempt <= 5,
                "the command never waited for the sleeping core"
            );
            sleeper.send(&[b"DEBUG", b"SLEEP", b"3"]);
            std::thread::sleep(Duration::from_millis(500));
            if tx {
                assert_eq!(s(&writer.q("MULTI")), "+OK\r\n");
                assert_eq!(s(&writer.q(&format!("SET {key} v"))), "+QUEUED\r\n");
                writer.send(&[b"EXEC"]);
            } else {
                writer.send(&[b"SET", key.as_bytes(), b"v"]);
            }
            std::thread::sleep(Duration::from_millis(300));
            if answered(&writer) {
                writer.read_reply();
                assert_eq!(s(&sleeper.read_reply()), "+OK\r\n");
                assert_eq!(s(&admin.q(&format!("DEL {key}"))), ":1\r\n");
                continue;
            }
            assert_eq!(s(&admin.q(&change)), "+OK\r\n", "{change}");
            assert_eq!(s(&writer.read_reply()), expect, "SET {key} after {change}");
            assert_eq!(s(&sleeper.read_reply()), "+OK\r\n");
            break;
        }
        let count = format!("CLUSTER COUNTKEYSINSLOT {}", crc16_slot(key));
        assert_eq!(s(&admin.q(&count)), ":0\r\n", "{key} was not created");
    };
    let ask = |key: &str| format!("-ASK {} 127.0.0.1:{}\r\n", crc16_slot(key), b.port);
    let migrating = |key: &str| format!("CLUSTER SETSLOT {} MIGRATING {b_id}", crc16_slot(key));
    race(&migrated, false, migrating(&migrated), ask(&migrated));
    race(&in_exec, true, migrating(&in_exec), ask(&in_exec));
    // A transaction over a key that exists runs whole, its own DEL notwithstanding.
    let mut c = a.client();
    assert_eq!(s(&c.q(&format!("RPUSH {replaced} x"))), ":1\r\n");
    assert_eq!(s(&c.q(&migrating(&replaced))), "+OK\r\n");
    for q in ["MULTI".to_string(), format!("DEL {replaced}")] {
        c.q(&q);
    }
    assert_eq!(s(&c.q(&format!("RPUSH {replaced} a b"))), "+QUEUED\r\n");
    assert_eq!(s(&c.q("EXEC")), "*2\r\n:1\r\n:2\r\n");
    assert_eq!(
        s(&c.q(&format!("LRANGE {replaced} 0 -1"))),
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    let slot = crc16_slot(&migrated);
    // The migration goes on as redis-cli's would: nothing to move, the slot is B's.
    let a_id = my_id(&mut a.client());
    for (srv, q) in [
        (b, format!("CLUSTER SETSLOT {slot} IMPORTING {a_id}")),
        (b, format!("CLUSTER SETSLOT {slot} NODE {b_id}")),
        (a, format!("CLUSTER SETSLOT {slot} NODE {b_id}")),
    ] {
        assert_eq!(s(&srv.client().q(&q)), "+OK\r\n", "{q}");
    }
    assert_eq!(
        s(&a.client().q(&format!("SET {migrated} v"))),
        format!("-MOVED {slot} 127.0.0.1:{}\r\n", b.port)
    );
    race(
        &dropped,
        false,
        format!("CLUSTER DELSLOTS {}", crc16_slot(&dropped)),
        "-CLUSTERDOWN Hash slot not served\r\n".to_string(),
    );
}
