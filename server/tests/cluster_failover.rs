//! Replicas and failover in cluster mode: `redis-cli --cluster create --cluster-replicas 1`
//! over six percore nodes, what CLUSTER NODES/SLOTS/SHARDS/REPLICAS, ROLE and INFO show of
//! the replicas, READONLY reads on a replica, a replica restarted with its nodes file, and
//! CLUSTER FAILOVER (default, FORCE, TAKEOVER) and the automatic failover of a killed
//! master: the replica takes the slots, every node agrees, every write acknowledged by
//! WAIT is served by the new master, and the old master follows it.

mod common;

use common::cluster::{cluster_check, info_field, my_id, redis_cli, start_nodes, strs, wait_for};
use common::{s, Launch, Server, TempDir};
use std::time::Duration;

/// How long a step may take at most (a ceiling for a loaded machine: on an idle one each
/// takes a few seconds at most).
const WITHIN: Duration = Duration::from_secs(60);

/// One six-node cluster at a time: six at once on a small machine starve each other's
/// bus threads past the node timeouts the tests rely on.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Six nodes made into three masters with one replica each by redis-cli, every replica
/// synced. None (the test skips) without redis-cli.
struct Six {
    nodes: Vec<(Server, Vec<String>)>,
    ids: Vec<String>,
    /// For each master's index, its replica's index.
    pairs: Vec<(usize, usize)>,
    _serial: std::sync::MutexGuard<'static, ()>,
    /// The nodes' directories, removed once they stopped.
    _dir: TempDir,
}

impl Six {
    fn start(name: &str, timeout_ms: u64) -> Option<Six> {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = TempDir::new(name);
        let nodes = start_nodes(&dir, 6, 1, timeout_ms);
        Six::create(nodes, serial, dir)
    }

    /// The same made of six redis-servers (None without redis-server or redis-cli).
    fn start_redis(name: &str) -> Option<Six> {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = TempDir::new(name);
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let flags = ["--dir", dir.path(), "--repl-diskless-sync-delay", "0"];
            let what = "replicas against Redis";
            nodes.push((common::redis_cluster_node(&dir, what, &flags)?, Vec::new()));
        }
        Six::create(nodes, serial, dir)
    }

    fn create(
        nodes: Vec<(Server, Vec<String>)>,
        serial: std::sync::MutexGuard<'static, ()>,
        dir: TempDir,
    ) -> Option<Six> {
        for n in &nodes {
            // The stream's PING every second: replicas have an offset (and are listed in
            // CLUSTER SLOTS) soon after their sync, on both servers.
            let r = s(&n.0.client().q("CONFIG SET repl-ping-replica-period 1"));
            assert_eq!(r, "+OK\r\n");
        }
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.0.port)));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let (ok, out) = redis_cli(&strs(&args))?;
        assert!(ok && out.contains("[OK] All 16384 slots covered."), "{out}");
        let ids: Vec<String> = nodes.iter().map(|n| my_id(&mut n.0.client())).collect();
        let mut six = Six {
            nodes,
            ids,
            pairs: Vec::new(),
            _serial: serial,
            _dir: dir,
        };
        // Every node sees three masters with slots and three replicas, and agrees.
        let mut last = String::new();
        let t = std::time::Instant::now();
        while !(0..6).all(|i| {
            let nodes = six.nodes_text(i);
            last = format!("node {i}:\n{nodes}");
            nodes.matches(" connected").count() == 6
                && nodes.matches("slave ").count() == 3
                && info_field(&mut six.client(i), "cluster_state") == "ok"
                && six.slots_text(i) == six.slots_text(0)
        }) {
            assert!(t.elapsed() < WITHIN, "the six nodes do not agree; {last}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = six.nodes_text(0);
        for line in text.lines().filter(|l| l.len() > 40) {
            let f: Vec<&str> = line.split(' ').collect();
            if f[2].contains("slave") {
                six.pairs.push((six.index(f[3]), six.index(f[0])));
            }
        }
        six.pairs.sort_unstable();
        assert_eq!(six.pairs.len(), 3, "{text}");
        for &(_, r) in &six.pairs.clone() {
            six.wait_synced(r);
        }
        Some(six)
    }

    fn index(&self, id: &str) -> usize {
        self.ids.iter().position(|x| x == id).expect("a known node")
    }

    fn client(&self, i: usize) -> common::Client {
        self.nodes[i].0.client()
    }

    fn port(&self, i: usize) -> u16 {
        self.nodes[i].0.port
    }

    fn nodes_text(&self, i: usize) -> String {
        s(&self.client(i).q("CLUSTER NODES"))
    }

    fn slots_text(&self, i: usize) -> String {
        s(&self.client(i).q("CLUSTER SLOTS"))
    }

    /// Node `i`'s line in node `from`'s CLUSTER NODES.
    fn line_of(&self, from: usize, i: usize) -> String {
        self.nodes_text(from)
            .lines()
            .find(|l| l.starts_with(&self.ids[i]))
            .unwrap_or("")
            .to_string()
    }

    /// Replica `r`'s link to its master is up and its first sync done.
    fn wait_synced(&self, r: usize) {
        let mut c = self.client(r);
        wait_for("a replica's link up", WITHIN, || {
            let info = s(&c.q("INFO replication"));
            info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0")
        });
    }

    /// Keys (up to `n`) that master `m` serves, written there.
    fn write_keys(&self, m: usize, n: usize) -> Vec<String> {
        let mut c = self.client(m);
        let mut keys = Vec::new();
        for i in 0.. {
            if keys.len() == n {
                break;
            }
            let k = format!("key:{i}");
            let r = s(&c.q(&format!("SET {k} value-{i}")));
            if r == "+OK\r\n" {
                keys.push(k);
            } else {
                assert!(r.starts_with("-MOVED"), "{r}");
            }
        }
        keys
    }

    /// Every live node (not `dead`) says node `owner` serves the slots of `slot`.
    /// The master and replica of pair `pair`, `n` keys written to the master and
    /// acknowledged by its replica, a client of the master, and the first key's slot.
    fn written(&self, pair: usize, n: usize) -> (usize, usize, Vec<String>, common::Client, u16) {
        let (m, r) = self.pairs[pair];
        let keys = self.write_keys(m, n);
        let mut mc = self.client(m);
        assert_eq!(s(&mc.q("WAIT 1 5000")), ":1\r\n");
        let slot = slot_of(&mut mc, &keys[0]);
        (m, r, keys, mc, slot)
    }

    fn wait_owner(&self, slot: u16, owner: usize, dead: &[usize]) {
        let want = format!("${}\r\n{}\r\n", self.ids[owner].len(), self.ids[owner]);
        wait_for("every node to agree on the new owner", WITHIN, || {
            (0..6).filter(|i| !dead.contains(i)).all(|i| {
                let slots = self.slots_text(i);
                // The entry of the range that holds `slot`: its first node is the master.
                range_master(&slots, slot).is_some_and(|m| m == want)
            })
        });
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i].0.terminate();
    }
}

/// The master entry (`$40\r\n<id>\r\n`) of the CLUSTER SLOTS range holding `slot`, from
/// the raw RESP2 reply: each range is `*N :start :end *4 $ip :port $id *0` ...
fn range_master(reply: &str, slot: u16) -> Option<String> {
    let parts: Vec<&str> = reply.split("\r\n").collect();
    for (i, p) in parts.iter().enumerate() {
        let Some(a) = p.strip_prefix(':').and_then(|x| x.parse::<u16>().ok()) else {
            continue;
        };
        let b = parts
            .get(i + 1)?
            .strip_prefix(':')
            .and_then(|x| x.parse::<u16>().ok());
        let is_range = parts[i - 1].starts_with('*') && parts.get(i + 2) == Some(&"*4");
        if let (Some(b), true) = (b, is_range) {
            if (a..=b).contains(&slot) {
                // *4, $ip, ip, :port, $40, id
                return Some(format!("{}\r\n{}\r\n", parts[i + 6], parts[i + 7]));
            }
        }
    }
    None
}

fn slot_of(c: &mut common::Client, key: &str) -> u16 {
    s(&c.q(&format!("CLUSTER KEYSLOT {key}")))
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap()
}

/// GET's reply for a key `write_keys` wrote.
fn value_reply(key: &str) -> String {
    let v = format!("value-{}", key.trim_start_matches("key:"));
    format!("${}\r\n{v}\r\n", v.len())
}

fn role(c: &mut common::Client) -> String {
    s(&c.q("ROLE"))
}

#[test]
fn redis_cli_creates_a_cluster_with_replicas_that_every_view_shows() {
    let Some(six) = Six::start("cluster-ha-create", 15_000) else {
        return;
    };
    cluster_check(six.port(0));
    let (m, r) = six.pairs[0];
    let (mid, rid) = (&six.ids[m], &six.ids[r]);
    for i in 0..6 {
        // CLUSTER NODES: the replica's flags and master field, everywhere.
        let line = six.line_of(i, r);
        let flags = if i == r { "myself,slave" } else { "slave" };
        assert!(
            line.contains(&format!(" {flags} {mid} ")),
            "node {i}: {line}"
        );
        let mut c = six.client(i);
        assert_eq!(info_field(&mut c, "cluster_size"), "3");
        assert_eq!(info_field(&mut c, "cluster_known_nodes"), "6");
        // CLUSTER REPLICAS / SLAVES: the replica's line.
        for sub in ["REPLICAS", "SLAVES"] {
            let reply = s(&c.q(&format!("CLUSTER {sub} {mid}")));
            assert!(
                reply.starts_with("*1\r\n") && reply.contains(&format!("{rid} ")),
                "{sub}: {reply}"
            );
        }
        assert_eq!(
            s(&c.q(&format!("CLUSTER REPLICAS {rid}"))),
            "-ERR The specified node is not a master\r\n"
        );
    }
    // CLUSTER SLOTS: the replica after its master, once it has data (a master's stream
    // PING within repl-ping-replica-period, 10 s, as in Redis).
    let mut c = six.client(m);
    let key = six.write_keys(m, 1).remove(0);
    let slot = slot_of(&mut c, &key);
    wait_for("the replica listed in CLUSTER SLOTS", WITHIN, || {
        (0..6).all(|i| six.slots_text(i).contains(&format!("{rid}\r\n")))
    });
    let slots = six.slots_text(r);
    let at = slots.find(&format!("{mid}\r\n")).unwrap();
    let after = &slots[at..];
    assert!(
        after.find(&format!("{rid}\r\n")).unwrap() < after.find("*3\r\n:").unwrap_or(usize::MAX),
        "the replica follows its master's entry: {slots}"
    );
    assert_eq!(
        range_master(&slots, slot),
        Some(format!("$40\r\n{mid}\r\n"))
    );
    // CLUSTER SHARDS (RESP3 keeps the maps readable): the replica's role, offset, health.
    let mut c3 = six.client(m);
    c3.q("HELLO 3");
    let shards = s(&c3.q("CLUSTER SHARDS"));
    let at = shards.find(rid.as_str()).expect("the replica in SHARDS");
    let entry = &shards[at..];
    assert!(
        entry.contains("$4\r\nrole\r\n$7\r\nreplica\r\n")
            && entry.contains("$6\r\nhealth\r\n$6\r\nonline\r\n"),
        "{shards}"
    );
    assert_eq!(shards.matches("$7\r\nreplica\r\n").count(), 3, "{shards}");
    // ROLE and INFO replication on the replica; the master counts it.
    let mut rc = six.client(r);
    let role_text = role(&mut rc);
    assert!(
        role_text.starts_with("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n")
            && role_text.contains(&format!(":{}\r\n$9\r\nconnected", six.port(m))),
        "{role_text}"
    );
    assert!(s(&c.q("INFO replication")).contains("connected_slaves:1"));
    // The replica has the master's keys.
    wait_for("the key replicated", WITHIN, || {
        s(&rc.q("DBSIZE")) == s(&c.q("DBSIZE"))
    });
    // REPLICATE's errors, as Redis words them.
    let mut mc = six.client(m);
    for (q, want) in [
        (
            format!("CLUSTER REPLICATE {mid}"),
            "-ERR Can't replicate myself",
        ),
        (
            format!("CLUSTER REPLICATE {rid}"),
            "-ERR I can only replicate a master, not a replica.",
        ),
        (
            format!("CLUSTER REPLICATE {}", six.ids[six.pairs[1].0]),
            "-ERR To set a master the node must be empty and without assigned slots.",
        ),
        (
            "CLUSTER FAILOVER".into(),
            "-ERR You should send CLUSTER FAILOVER to a replica",
        ),
    ] {
        assert_eq!(s(&mc.q(&q)), format!("{want}\r\n"), "{q}");
    }
    assert_eq!(
        s(&rc.q(&format!("CLUSTER FORGET {mid}"))),
        "-ERR Can't forget my master!\r\n"
    );
    assert_eq!(s(&rc.q("CLUSTER FAILOVER NOW")), "-ERR syntax error\r\n");
}

#[test]
fn a_manual_failover_keeps_every_acknowledged_write_and_the_old_master_follows() {
    let Some(six) = Six::start("cluster-ha-manual", 15_000) else {
        return;
    };
    let (m, r, keys, mut mc, slot) = six.written(1, 200);
    // A client keeps writing to the old master through the failover (its slot's keys,
    // {key:0}...): each write is either acknowledged there, and then must be on the new
    // master, or redirected (held by the master's pause first, then MOVED).
    let mut wc = six.client(m);
    let tag = format!("{{{}}}", keys[0]);
    let writer = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..100_000 {
            let k = format!("{tag}:w{i}");
            let r = s(&wc.q(&format!("SET {k} {i}")));
            if r.starts_with("-MOVED") {
                return (acked, r);
            }
            assert_eq!(r, "+OK\r\n");
            acked.push(k);
        }
        (acked, String::new())
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut rc = six.client(r);
    assert_eq!(s(&rc.q("CLUSTER FAILOVER")), "+OK\r\n");
    six.wait_owner(slot, r, &[]);
    let (acked, last) = writer.join().unwrap();
    assert_eq!(last, format!("-MOVED {slot} 127.0.0.1:{}\r\n", six.port(r)));
    assert!(!acked.is_empty());
    for k in &acked {
        assert_eq!(
            s(&rc.q(&format!("EXISTS {k}"))),
            ":1\r\n",
            "{k}, of {}",
            acked.len()
        );
    }
    assert!(role(&mut rc).starts_with("*3\r\n$6\r\nmaster\r\n"));
    // Every acknowledged key is served by the new master.
    for k in &keys {
        assert_eq!(s(&rc.q(&format!("GET {k}"))), value_reply(k), "{k}");
    }
    // The old master is now its replica: redirects, follows, and catches up.
    wait_for("the old master to turn replica", WITHIN, || {
        six.line_of(m, m)
            .contains(&format!(" myself,slave {} ", six.ids[r]))
    });
    assert_eq!(
        s(&mc.q(&format!("GET {}", keys[0]))),
        format!("-MOVED {slot} 127.0.0.1:{}\r\n", six.port(r))
    );
    six.wait_synced(m);
    assert!(s(&mc.q("INFO replication")).contains(&format!("master_port:{}", six.port(r))));
    // It continued from where it was (the promoted replica kept its replication history).
    let stats = s(&rc.q("INFO stats"));
    assert!(
        stats.contains("sync_partial_ok:1\r\n"),
        "the old master resynced partially: {stats}"
    );
    assert_eq!(s(&rc.q(&format!("SET {} after", keys[0]))), "+OK\r\n");
    assert_eq!(s(&rc.q("WAIT 1 5000")), ":1\r\n");
    assert_eq!(s(&mc.q("READONLY")), "+OK\r\n");
    assert_eq!(s(&mc.q(&format!("GET {}", keys[0]))), "$5\r\nafter\r\n");
    for i in 0..6 {
        let line = six.line_of(i, m);
        assert!(
            line.contains(&format!("slave {} ", six.ids[r])),
            "node {i}: {line}"
        );
    }
    cluster_check(six.port(0));
}

/// A client's CLIENT PAUSE ALL on a master outlasts a manual failover of that master: the
/// failover's own pause ends with it, the client's goes on to its end (Redis's pause
/// purposes), so a command sent after the failover still waits for it (a PING: a key's
/// command is redirected first, paused or not, as in Redis).
#[test]
fn a_clients_pause_outlasts_a_manual_failover() {
    let Some(six) = Six::start("cluster-ha-pause", 15_000) else {
        return;
    };
    let (m, r, keys, mut mc, slot) = six.written(0, 1);
    let pause = Duration::from_millis(8000);
    let paused_at = std::time::Instant::now();
    assert_eq!(
        s(&mc.q(&format!("CLIENT PAUSE {} ALL", pause.as_millis()))),
        "+OK\r\n"
    );
    let mut rc = six.client(r);
    assert_eq!(s(&rc.q("CLUSTER FAILOVER")), "+OK\r\n");
    // The old master answers nothing while paused: the others tell the outcome.
    six.wait_owner(slot, r, &[m]);
    assert!(
        paused_at.elapsed() + Duration::from_secs(2) < pause,
        "the failover took too long to tell"
    );
    // The old master's role task ends the failover's pause within a few of its rounds.
    std::thread::sleep(Duration::from_millis(500));
    let sent = std::time::Instant::now();
    let reply = s(&mc.q("PING"));
    assert!(
        paused_at.elapsed() + Duration::from_millis(200) >= pause,
        "a PING ran {:?} after CLIENT PAUSE ALL of {pause:?} ({:?} after it was sent)",
        paused_at.elapsed(),
        sent.elapsed()
    );
    assert_eq!(reply, "+PONG\r\n");
    assert_eq!(
        s(&mc.q(&format!("GET {}", keys[0]))),
        format!("-MOVED {slot} 127.0.0.1:{}\r\n", six.port(r))
    );
}

#[test]
fn forced_and_takeover_failovers_replace_killed_masters() {
    // A long node timeout: no automatic failover gets in the way.
    let Some(mut six) = Six::start("cluster-ha-force", 60_000) else {
        return;
    };
    let (m1, r1) = six.pairs[0];
    let (m2, r2) = six.pairs[2];
    let k1 = six.write_keys(m1, 20);
    let k2 = six.write_keys(m2, 20);
    for m in [m1, m2] {
        assert_eq!(s(&six.client(m).q("WAIT 1 5000")), ":1\r\n");
    }
    let slot1 = slot_of(&mut six.client(m1), &k1[0]);
    let slot2 = slot_of(&mut six.client(m2), &k2[0]);
    six.kill(m1);
    let mut rc = six.client(r1);
    wait_for("the replica to see its master's link down", WITHIN, || {
        six.line_of(r1, m1).contains(" disconnected")
    });
    assert_eq!(
        s(&rc.q("CLUSTER FAILOVER")),
        "-ERR Master is down or failed, please use CLUSTER FAILOVER FORCE\r\n"
    );
    // FORCE: no handshake with the dead master, the other two masters vote.
    assert_eq!(s(&rc.q("CLUSTER FAILOVER FORCE")), "+OK\r\n");
    six.wait_owner(slot1, r1, &[m1]);
    for k in &k1 {
        assert_eq!(s(&rc.q(&format!("GET {k}"))), value_reply(k));
    }
    // TAKEOVER: no votes at all, a new epoch of its own.
    six.kill(m2);
    let epoch_before: u64 = info_field(&mut six.client(r2), "cluster_current_epoch")
        .parse()
        .unwrap();
    let mut rc2 = six.client(r2);
    assert_eq!(s(&rc2.q("CLUSTER FAILOVER TAKEOVER")), "+OK\r\n");
    six.wait_owner(slot2, r2, &[m1, m2]);
    let my_epoch: u64 = info_field(&mut rc2, "cluster_my_epoch").parse().unwrap();
    assert!(my_epoch > epoch_before, "{my_epoch} > {epoch_before}");
    for k in &k2 {
        assert_eq!(s(&rc2.q(&format!("GET {k}"))), value_reply(k));
    }
    assert_eq!(info_field(&mut rc2, "cluster_state"), "ok");
}

#[test]
fn a_killed_master_is_replaced_by_its_replica_automatically() {
    let Some(mut six) = Six::start("cluster-ha-auto", 5000) else {
        return;
    };
    let (m, r) = six.pairs[1];
    let keys = six.write_keys(m, 20);
    assert_eq!(s(&six.client(m).q("WAIT 1 5000")), ":1\r\n");
    let slot = slot_of(&mut six.client(m), &keys[0]);
    six.kill(m);
    // FAIL after the node timeout, then an election won with the two other masters.
    six.wait_owner(slot, r, &[m]);
    let mut rc = six.client(r);
    assert!(role(&mut rc).starts_with("*3\r\n$6\r\nmaster\r\n"));
    assert_eq!(info_field(&mut rc, "cluster_state"), "ok");
    for k in &keys {
        assert_eq!(s(&rc.q(&format!("GET {k}"))), value_reply(k));
    }
}

#[test]
fn readonly_clients_read_from_a_replica_and_writes_are_redirected() {
    let Some(six) = Six::start("cluster-ha-readonly", 15_000) else {
        return;
    };
    let (m, r) = six.pairs[0];
    let other = six.pairs[1].0;
    let keys = six.write_keys(m, 5);
    let elsewhere = six.write_keys(other, 1).remove(0);
    assert_eq!(s(&six.client(m).q("WAIT 1 5000")), ":1\r\n");
    let mut c = six.client(r);
    let slot = slot_of(&mut c, &keys[0]);
    let moved = format!("-MOVED {slot} 127.0.0.1:{}\r\n", six.port(m));
    assert_eq!(s(&c.q(&format!("GET {}", keys[0]))), moved);
    assert_eq!(s(&c.q("READONLY")), "+OK\r\n");
    assert_eq!(s(&c.q(&format!("GET {}", keys[0]))), value_reply(&keys[0]));
    assert_eq!(s(&c.q(&format!("EXISTS {}", keys[1]))), ":1\r\n");
    // Writes still go to the master; keys of another master's slots too.
    assert_eq!(s(&c.q(&format!("SET {} x", keys[0]))), moved);
    assert!(s(&c.q(&format!("GET {elsewhere}"))).starts_with("-MOVED"));
    // A read-only transaction runs here, one with a write is redirected.
    assert_eq!(s(&c.q("MULTI")), "+OK\r\n");
    assert_eq!(s(&c.q(&format!("GET {}", keys[0]))), "+QUEUED\r\n");
    assert!(s(&c.q("EXEC")).starts_with("*1\r\n$"));
    // READWRITE: redirected again.
    assert_eq!(s(&c.q("READWRITE")), "+OK\r\n");
    assert_eq!(s(&c.q(&format!("GET {}", keys[0]))), moved);
    // CLUSTER RESET on a replica: a master again, alone, its data emptied (Redis's
    // clusterReset; percore kept the data).
    assert_eq!(s(&c.q("CLUSTER RESET")), "+OK\r\n");
    assert!(
        role(&mut c).starts_with("*3\r\n$6\r\nmaster"),
        "{}",
        role(&mut c)
    );
    assert_eq!(s(&c.q("DBSIZE")), ":0\r\n");
    let info = s(&c.q("CLUSTER INFO"));
    assert!(info.contains("cluster_known_nodes:1\r\n"), "{info}");
}

#[test]
fn a_restarted_replica_comes_back_as_the_replica_of_the_same_master() {
    let Some(mut six) = Six::start("cluster-ha-restart", 15_000) else {
        return;
    };
    let (m, r) = six.pairs[2];
    let (port, flags) = (six.port(r), six.nodes[r].1.clone());
    six.kill(r);
    // Written while the replica is away: it gets them when it is back.
    let keys = six.write_keys(m, 10);
    let port_s = port.to_string();
    let mut args = vec!["--port", &port_s, "--shards", "1"];
    args.extend(strs(&flags));
    six.nodes[r].0 = Launch::percore(port, &args).start();
    let line = six.line_of(r, r);
    assert!(
        line.contains(&format!(" myself,slave {} ", six.ids[m])),
        "{line}"
    );
    six.wait_synced(r);
    let mut c = six.client(r);
    assert!(s(&c.q("INFO replication")).contains(&format!("master_port:{}", six.port(m))));
    assert_eq!(s(&c.q("READONLY")), "+OK\r\n");
    wait_for("the keys written meanwhile", WITHIN, || {
        keys.iter()
            .all(|k| s(&c.q(&format!("EXISTS {k}"))) == ":1\r\n")
    });
    assert!(s(&six.client(m).q("INFO replication")).contains("connected_slaves:1"));
}

/// Node names that two clusters share: `M0`..`M2` for the masters of slots 0, 5461 and
/// 10923 (redis-cli gives both clusters the same ranges), `R0`..`R2` for their replicas;
/// ports by the same names.
fn names(six: &Six) -> std::collections::HashMap<String, String> {
    let slots = six.slots_text(0);
    let mut out = std::collections::HashMap::new();
    for (k, slot) in [0u16, 5461, 10923].into_iter().enumerate() {
        let m = range_master(&slots, slot).expect("every range has a master");
        let m = six.index(m.split("\r\n").nth(1).unwrap());
        let r = six.pairs.iter().find(|p| p.0 == m).expect("a replica").1;
        for (i, name) in [(m, format!("M{k}")), (r, format!("R{k}"))] {
            out.insert(six.ids[i].clone(), name.clone());
            out.insert(six.port(i).to_string(), format!("port-{name}"));
        }
    }
    out
}

/// A reply with the cluster's IDs and ports named, replication offsets left out, and the
/// entries of the top-level array sorted (Redis lists shards in its hash table's order).
fn canon(v: &redis::Value, names: &std::collections::HashMap<String, String>) -> String {
    fn one(v: &redis::Value, names: &std::collections::HashMap<String, String>) -> String {
        let name = |t: String| names.get(&t).cloned().unwrap_or(t);
        match v {
            redis::Value::Array(items) => {
                let mut out = Vec::new();
                let mut skip = false;
                for x in items {
                    if std::mem::take(&mut skip) {
                        out.push("<offset>".into());
                        continue;
                    }
                    let t = one(x, names);
                    skip = t == "replication-offset";
                    out.push(t);
                }
                format!("[{}]", out.join(","))
            }
            redis::Value::BulkString(b) => name(String::from_utf8_lossy(b).into_owned()),
            redis::Value::Int(n) => name(n.to_string()),
            other => format!("{other:?}"),
        }
    }
    match v {
        redis::Value::Array(items) => {
            let mut all: Vec<String> = items.iter().map(|x| one(x, names)).collect();
            all.sort();
            all.join("\n")
        }
        other => one(other, names),
    }
}

/// CLUSTER NODES lines (or CLUSTER REPLICAS entries) with names, without the ping and
/// pong times, the epochs and the bus ports, sorted.
fn canon_nodes(text: &str, names: &std::collections::HashMap<String, String>) -> String {
    let name = |t: &str| names.get(t).cloned().unwrap_or_else(|| t.to_string());
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.len() > 40)
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let port = f[1].split('@').next().unwrap().rsplit(':').next().unwrap();
            let mut out = vec![name(f[0]), name(port), f[2].to_string(), name(f[3])];
            out.extend(f[7..].iter().map(|x| x.to_string()));
            out.join(" ")
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Everything the replicas change in what a node shows, from every node: CLUSTER NODES,
/// SLOTS, SHARDS, REPLICAS, ROLE, and the errors of REPLICATE, FAILOVER, FORGET, with the
/// cluster's own IDs, ports and offsets named.
fn views(six: &Six) -> Vec<(String, String)> {
    let names = names(six);
    let id = |name: &str| -> String {
        names
            .iter()
            .find(|(_, v)| *v == name)
            .map(|(k, _)| k.clone())
            .unwrap()
    };
    // Replicas are listed in CLUSTER SLOTS once their offset is not zero.
    wait_for("every replica listed in CLUSTER SLOTS", WITHIN, || {
        (0..6).all(|i| {
            ["R0", "R1", "R2"]
                .iter()
                .all(|r| six.slots_text(i).contains(&id(r)))
        })
    });
    let mut out = Vec::new();
    for i in 0..6 {
        let who = names[&six.ids[i]].clone();
        let mut c = six.nodes[i].0.redis_client();
        let mut q = |args: &[&str]| -> redis::Value {
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            cmd.query(&mut c).unwrap_or_else(|e| {
                redis::Value::SimpleString(format!("error: {}", e.detail().unwrap_or("")))
            })
        };
        out.push((
            format!("{who} NODES"),
            canon_nodes(&six.nodes_text(i), &names),
        ));
        out.push((
            format!("{who} SLOTS"),
            canon(&q(&["CLUSTER", "SLOTS"]), &names),
        ));
        out.push((
            format!("{who} SHARDS"),
            canon(&q(&["CLUSTER", "SHARDS"]), &names),
        ));
        for target in ["M1", "R1"] {
            let r = q(&["CLUSTER", "REPLICAS", &id(target)]);
            let text = match &r {
                redis::Value::Array(items) => items
                    .iter()
                    .map(|x| match x {
                        redis::Value::BulkString(b) => {
                            canon_nodes(&String::from_utf8_lossy(b), &names)
                        }
                        other => format!("{other:?}"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => canon(other, &names),
            };
            out.push((format!("{who} REPLICAS {target}"), text));
        }
        let mut role = q(&["ROLE"]);
        if let redis::Value::Array(items) = &mut role {
            // The offsets: a master's, and each replica's in its list.
            items.retain(|x| !matches!(x, redis::Value::Int(_)));
            for x in items.iter_mut() {
                if let redis::Value::Array(replicas) = x {
                    for r in replicas.iter_mut() {
                        if let redis::Value::Array(f) = r {
                            f.truncate(2);
                        }
                    }
                }
            }
        }
        out.push((format!("{who} ROLE"), canon(&role, &names)));
        let other_master = if who.starts_with('M') { "M2" } else { "M0" };
        for args in [
            vec!["CLUSTER", "REPLICATE", &six.ids[i]],
            vec!["CLUSTER", "REPLICATE", &id("R2")],
            vec!["CLUSTER", "FAILOVER", "SOON"],
            vec!["CLUSTER", "FORGET", &id(&format!("M{}", &who[1..]))],
        ] {
            let named: Vec<String> = args
                .iter()
                .map(|a| names.get(*a).cloned().unwrap_or(a.to_string()))
                .collect();
            let label = format!("{who} {}", named.join(" "));
            out.push((label, canon(&q(&args), &names)));
        }
        if who.starts_with('M') {
            let r = q(&["CLUSTER", "REPLICATE", &id(other_master)]);
            out.push((format!("{who} REPLICATE another"), canon(&r, &names)));
            let r = q(&["CLUSTER", "FAILOVER"]);
            out.push((format!("{who} FAILOVER"), canon(&r, &names)));
        }
    }
    out.sort();
    out
}

#[test]
fn what_replicas_change_in_the_replies_matches_redis() {
    let Some(redis) = Six::start_redis("cluster-ha-redis") else {
        return;
    };
    let want = views(&redis);
    drop(redis);
    let Some(six) = Six::start("cluster-ha-diff", 15_000) else {
        return;
    };
    let got = views(&six);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}
