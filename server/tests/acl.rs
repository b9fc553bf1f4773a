//! Access control: ACL users, AUTH, and the checks at dispatch.
//!
//! Differential tests against a real `redis-server` (7.0) and percore with 1 and 3 shards,
//! RESP2 and RESP3, replies byte for byte: the ACL commands (SETUSER then GETUSER/LIST,
//! their errors, WHOAMI, CAT, DRYRUN, AUTH errors), NOPERM texts for each rule kind (a
//! denied command, key read and write, channel and pattern, selectors, first arguments,
//! inside MULTI, at EXEC after a change, inside a script), and ACL LOG entries without
//! their age and client info. Then: ACL CAT's lists against Redis's as sets, connections
//! closed when their user is deleted or loses its channels, the ACL file saved and loaded
//! (and read by Redis the same), `user` lines and `requirepass` as the default user's
//! password.
//!
//! Descriptions list single commands in command-table order; Redis lists them in the
//! order of its hashed command table, which changes from run to run, so the differential
//! tables give each user at most one single-command rule per selector to describe.

mod common;

use common::{bulks, each_differential_run, esc, s, words, Client, Diff, Server, TempDir};

/// ACL commands run by the default user; every reply must be Redis's.
#[rustfmt::skip]
const COMMANDS_TABLE: &[&str] = &[
    "ACL WHOAMI", "ACL USERS", "ACL LIST", "ACL GETUSER default", "ACL GETUSER nosuch",
    "ACL SETUSER u1", "ACL GETUSER u1", "ACL LIST",
    "ACL SETUSER u1 on >p1 >p2 <p1 ~a* %R~r* %W~w* %RW~b* &ch* +@read -get", "ACL GETUSER u1",
    "ACL SETUSER u2 reset", "ACL GETUSER u2",
    "ACL SETUSER u3 on nopass allkeys allchannels +@all -@dangerous", "ACL GETUSER u3",
    "ACL SETUSER u4 on #148de9c5a7a44d19e56cd9ae1a554bf67847afb0c58f6e12fa29ac7ddfca9940 -@all +config|get",
    "ACL GETUSER u4",
    "ACL SETUSER u5 on nopass -@all +select|0", "ACL GETUSER u5",
    "ACL SETUSER u6 on nopass ~x (~a* +get) (%R~b* &c +@hash)", "ACL GETUSER u6",
    "ACL SETUSER u6 clearselectors", "ACL GETUSER u6",
    "ACL SETUSER u7 on nopass ~x %R~x %W~y %R~y +@string +@list", "ACL GETUSER u7",
    "ACL SETUSER u8 on nopass -@all +@pubsub -publish", "ACL GETUSER u8",
    "ACL SETUSER u9 on nopass +@all -@keyspace -@dangerous -@admin", "ACL GETUSER u9",
    "ACL LIST", "ACL USERS",
    // acl-pubsub-default: the channels new users (and `reset`) start with
    "CONFIG GET acl-pubsub-default", "CONFIG SET acl-pubsub-default allchannels",
    "ACL SETUSER pd", "ACL GETUSER pd", "ACL SETUSER pd resetchannels (+get)", "ACL LIST",
    "ACL SETUSER pd reset", "ACL GETUSER pd", "CONFIG SET acl-pubsub-default nosuch",
    "CONFIG SET acl-pubsub-default resetchannels", "ACL DELUSER pd",
    // errors
    "ACL SETUSER x bogus", "ACL SETUSER x +nosuch", "ACL SETUSER x +@nosuch",
    "ACL SETUSER x +config|get|x", "ACL SETUSER x +config|nosuch", "ACL SETUSER x +get|",
    "ACL SETUSER x %X~a", "ACL SETUSER x %~a", "ACL SETUSER x %", "ACL SETUSER x #abc", "ACL SETUSER x <nopw", "ACL SETUSER x !abc",
    "ACL SETUSER x allkeys ~a", "ACL SETUSER x allchannels &a", "ACL SETUSER x (~a +get) (~b",
    "ACL SETUSER x\\x20y on", "ACL GETUSER x", "ACL SETUSER x (bogus)", "ACL GETUSER x",
    "ACL DELUSER default", "ACL DELUSER u1 nosuch u2", "ACL DELUSER u1", "ACL USERS",
    "ACL CAT", "ACL CAT nosuch", "ACL GENPASS 0", "ACL GENPASS 5000", "ACL GENPASS x",
    "ACL LOG x", "ACL LOAD", "ACL SAVE", "ACL NOSUCH", "ACL", "ACL HELP",
    // DRYRUN
    "ACL DRYRUN u3 get a", "ACL DRYRUN u3 flushall", "ACL DRYRUN u7 get y", "ACL DRYRUN u7 set y 1",
    "ACL DRYRUN u7 get q", "ACL DRYRUN u8 publish ch m", "ACL DRYRUN nosuch get a",
    "ACL DRYRUN u3 nosuchcmd a", "ACL DRYRUN u3 get", "ACL DRYRUN u4 config get maxmemory",
    "ACL DRYRUN u4 config set maxmemory 1", "ACL DRYRUN u5 select 0", "ACL DRYRUN u5 select 1",
    // AUTH
    "AUTH nosuch x", "AUTH u4 wrong", "AUTH p", "AUTH a b c", "HELLO 2 AUTH u4 wrong",
    "ACL SETUSER u4 off", "AUTH u4 p", "ACL SETUSER u4 on", "AUTH u4 p", "ACL WHOAMI",
    "AUTH default x", "ACL WHOAMI", "AUTH u3 anything", "ACL WHOAMI",
];

/// Users the permission table runs as, created by the default user.
#[rustfmt::skip]
const USERS: &[&str] = &[
    "ACL SETUSER cmds on >pw allkeys allchannels +@all -set -@dangerous +config|get",
    "ACL SETUSER keys on >pw ~a* %R~r* %W~w* +@all",
    "ACL SETUSER chans on >pw allkeys &news.* &exact +@all",
    "ACL SETUSER sel on >pw ~a* +get (~b* +set +get) (%W~w* +incr)",
    "ACL SETUSER first on >pw allkeys -@all +select|0 +select|2 +ping",
    "FUNCTION LOAD REPLACE #!lua\\x20name=acllib\\x0aredis.register_function('aclget',\\x20function(keys)\\x20return\\x20redis.call('get',keys[1])\\x20end)\\x0aredis.register_function('aclx',\\x20function()\\x20return\\x20redis.call('get','x')\\x20end)",
];

/// (user, commands run as that user): every reply must be Redis's.
#[rustfmt::skip]
const PERMISSIONS: &[(&str, &[&str])] = &[
    ("cmds", &[
        "GET k", "SET k v", "SETNX k v", "FLUSHALL", "CONFIG GET maxmemory", "CONFIG SET maxmemory 0",
        "DEBUG SLEEP 0", "ACL WHOAMI", "PUBLISH any m",
        // queue time refusals doom the transaction
        "MULTI", "GET k", "SET k v", "EXEC",
        "MULTI", "SET k v", "DISCARD",
    ]),
    ("keys", &[
        "GET a1", "GET r1", "GET w1", "GET x", "SET a1 v", "SET w1 v", "SET r1 v", "INCR w1",
        "SET w1 v GET", "MGET a1 r1", "MGET a1 w1", "MSET a1 1 w1 2", "MSET a1 1 r1 2",
        "COPY r1 w1", "COPY w1 r1", "RENAME a1 w1", "DEL w1", "DEL r1", "EXISTS r1 w1 x",
        "LPUSH a1 x", "LMOVE a1 w1 LEFT RIGHT", "LMOVE w1 a1 LEFT RIGHT", "SINTERSTORE w1 r1 a1",
        "SINTERSTORE r1 a1", "ZUNIONSTORE w2 2 r1 a1", "ZUNIONSTORE w2 2 r1 x",
        "SORT r1", "SORT r1 STORE w1", "SORT a1 BY r* STORE a2",
        "EVAL return\\x201 1 a1", "EVAL return\\x201 1 r1", "EVAL return\\x201 0",
        "EVAL return\\x20redis.call('get','a1') 1 a1",
        "EVAL return\\x20redis.call('get','x') 1 a1",
        "EVAL return\\x20redis.pcall('set','r1','1') 1 a1",
        "EVAL return\\x20redis.call('set','r1','1') 1 a1",
        "MULTI", "GET a1", "GET w1", "EXEC",
        "FCALL aclget 1 a1", "FCALL aclget 1 r1", "FCALL aclx 0", "FCALL_RO aclget 1 r1",
        "KEYS *", "DBSIZE",
    ]),
    ("chans", &[
        "PUBLISH news.x m", "PUBLISH news m", "PUBLISH exact m", "PUBLISH exactly m",
        "SPUBLISH news.y m", "SPUBLISH other m", "PUBSUB NUMSUB other", "PUBSUB CHANNELS",
        "EVAL return\\x20redis.call('publish','nope','m') 0",
        "EVAL return\\x20redis.call('publish','news.z','m') 0",
        "SUBSCRIBE news.a other", "PSUBSCRIBE news.*", "PSUBSCRIBE news.a*", "SSUBSCRIBE zz",
        "UNSUBSCRIBE other", "PUNSUBSCRIBE", "UNSUBSCRIBE", "SUNSUBSCRIBE",
    ]),
    ("sel", &[
        "GET a1", "GET b1", "SET b1 v", "SET a1 v", "INCR w1", "INCR b1", "GET w1", "INCR a1",
        "MGET a1 b1", "HGET a1 f",
    ]),
    ("first", &[
        "SELECT 0", "SELECT 2", "SELECT 1", "SELECT 0", "PING", "GET a", "ECHO x",
    ]),
];

fn each_diff(what: &str, mut f: impl FnMut(&Server, &Server, bool, String)) {
    let what = format!("ACL, {what}");
    each_differential_run(&what, &[], &[], |redis, percore, resp3, _, label| {
        f(redis, percore, resp3, label)
    });
}

/// Deletes every user but `default`, which becomes `on nopass ~* &* +@all` again, and
/// empties the ACL log.
fn reset_users(d: &mut Diff) {
    for c in &mut d.c {
        c.q("AUTH default any");
    }
    let mut users = bulks(&d.c[0].q("ACL USERS"));
    users.extend(bulks(&d.c[1].q("ACL USERS")));
    users.sort();
    users.dedup();
    for u in users.iter().filter(|u| u.as_slice() != b"default") {
        d.same(&[b"ACL".to_vec(), b"DELUSER".to_vec(), u.clone()]);
    }
    d.line("ACL SETUSER default reset on nopass ~* &* +@all");
    d.line("ACL LOG RESET");
}

#[test]
fn acl_commands_match_redis() {
    each_diff("commands", |redis, percore, resp3, label| {
        let mut d = Diff::new(redis, percore, resp3, label);
        reset_users(&mut d);
        for line in COMMANDS_TABLE {
            d.line(line);
        }
        // The failed AUTHs (AUTH and HELLO, unknown user, wrong password, user off) are
        // logged as Redis logs them.
        d.line("AUTH default any");
        let [w, g] = d.both(&words("ACL LOG"));
        assert!(w.starts_with(b"*4\r\n"), "{}", esc(&w));
        if log_without_age(&w).0 != log_without_age(&g).0 {
            d.fail(&w, &g, "ACL LOG entries differ");
        }
        // A generated password: 64 hex digits by default, rounded up to whole digits.
        for (bits, len) in [("", 64), ("1", 1), ("5", 2), ("4096", 1024)] {
            let line = format!("ACL GENPASS {bits}");
            let r = d.c[1].q(line.trim_end());
            let b = bulks(&r);
            assert_eq!(b.len(), 1, "GENPASS {bits}: {}", esc(&r));
            assert_eq!(b[0].len(), len, "GENPASS {bits}");
            assert!(b[0].iter().all(u8::is_ascii_hexdigit));
        }
        reset_users(&mut d);
    });
}

/// The raw RESP elements of a reply, one per scalar or aggregate header, with the values
/// after `age-seconds` and `client-info` dropped (they differ between servers).
fn log_without_age(r: &[u8]) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut infos = Vec::new();
    let mut i = 0;
    let mut skip = false;
    let mut info = false;
    while i < r.len() {
        let end = i + r[i..].windows(2).position(|w| w == b"\r\n").unwrap();
        let mut elem = r[i..end].to_vec();
        i = end + 2;
        if elem[0] == b'$' {
            let n: usize = s(&elem[1..]).parse().unwrap();
            elem.extend_from_slice(&r[i..i + n]);
            i += n + 2;
        }
        if skip {
            if info {
                infos.push(s(&elem));
            }
            skip = false;
            continue;
        }
        skip = elem.ends_with(b"age-seconds") || elem.ends_with(b"client-info");
        info = elem.ends_with(b"client-info");
        out.push(elem);
    }
    (out, infos)
}

#[test]
fn permissions_match_redis() {
    each_diff("permissions", |redis, percore, resp3, label| {
        let mut admin = Diff::new(redis, percore, resp3, label.clone());
        reset_users(&mut admin);
        for line in USERS {
            admin.line(line);
        }
        for (user, lines) in PERMISSIONS {
            let mut d = Diff::new(redis, percore, resp3, format!("{label}, as {user}"));
            d.line(&format!("AUTH {user} pw"));
            for line in *lines {
                d.line(line);
            }
            // The log holds what was refused (newest first), each the same but for its
            // age and client details.
            let [w, g] = admin.both(&words("ACL LOG 100"));
            let (wl, _) = log_without_age(&w);
            let (gl, infos) = log_without_age(&g);
            if wl != gl {
                admin.fail(&w, &g, "ACL LOG entries differ");
            }
            for i in &infos {
                assert!(
                    i.contains(&format!("user={user}")),
                    "{label}: client-info {i}"
                );
            }
            admin.line("ACL LOG RESET");
        }
        reset_users(&mut admin);
    });
}

#[test]
fn changes_apply_to_the_next_command_and_at_exec() {
    each_diff("live changes", |redis, percore, resp3, label| {
        let mut admin = Diff::new(redis, percore, resp3, label.clone());
        reset_users(&mut admin);
        admin.line("ACL SETUSER live on >pw allkeys allchannels +@all");
        let mut d = Diff::new(redis, percore, resp3, format!("{label}, as live"));
        d.line("AUTH live pw");
        d.line("SET k 1");
        d.line("MULTI");
        d.line("SET k 2");
        d.line("GET k");
        d.line("PUBLISH ch m");
        admin.line("ACL SETUSER live -set resetkeys %R~k resetchannels");
        // Refused at EXEC, each in its place; the others run.
        d.line("EXEC");
        d.line("GET k");
        d.line("SET k 3");
        admin.line("ACL SETUSER live +set ~k");
        d.line("SET k 3");
        let [w, g] = admin.both(&words("ACL LOG"));
        if log_without_age(&w).0 != log_without_age(&g).0 {
            admin.fail(&w, &g, "ACL LOG entries differ");
        }
        // Deleting the user closes its connection.
        admin.line("ACL DELUSER live");
        for c in &mut d.c {
            assert!(
                c.closed(),
                "{label}: the deleted user's connection stays open"
            );
        }
        reset_users(&mut admin);
    });
}

#[test]
fn deleted_or_restricted_users_lose_their_connections() {
    let Some(redis) = common::redis_or_skip("ACL disconnections: Redis's side not compared") else {
        return;
    };
    for server in [Server::percore(3, &[]), redis] {
        let mut admin = server.client();
        admin.q("ACL SETUSER gone on >pw allkeys &ch* +@all");
        admin.q("ACL SETUSER kept on >pw allkeys &* +@all");
        let mut idle = server.client();
        assert_eq!(idle.q("AUTH gone pw"), b"+OK\r\n");
        let mut sub = server.client();
        assert_eq!(sub.q("AUTH gone pw"), b"+OK\r\n");
        let r = sub.q("SUBSCRIBE ch1");
        assert!(r.starts_with(b"*3\r\n"), "{}", esc(&r));
        let mut other_sub = server.client();
        other_sub.q("AUTH kept pw");
        other_sub.q("SUBSCRIBE zz");
        // Channels still allowed: nobody is closed.
        assert_eq!(admin.q("ACL SETUSER gone &ch1"), b"+OK\r\n");
        assert_eq!(idle.q("PING"), b"+PONG\r\n");
        // Channels revoked: the subscriber is closed, the idle connection is not.
        assert_eq!(admin.q("ACL SETUSER gone resetchannels &other"), b"+OK\r\n");
        assert!(sub.closed(), "port {}: subscriber kept", server.port);
        assert_eq!(idle.q("PING"), b"+PONG\r\n");
        // Turned off (Redis 7.0): no new AUTH, but its connections go on.
        assert_eq!(admin.q("ACL SETUSER gone off"), b"+OK\r\n");
        assert_eq!(idle.q("PING"), b"+PONG\r\n");
        assert!(s(&server.client().q("AUTH gone pw")).starts_with("-WRONGPASS"));
        // Deleted: every connection of the user closes, even idle ones; others stay.
        assert_eq!(admin.q("ACL DELUSER gone"), b":1\r\n");
        assert!(idle.closed(), "port {}: idle connection kept", server.port);
        assert_eq!(admin.q("PING"), b"+PONG\r\n");
        other_sub.send(&[b"PING"]);
        let pong = other_sub.read_reply();
        assert!(pong.starts_with(b"*2\r\n"), "{}", esc(&pong));
        // Deleting oneself: the reply, then the close.
        let mut me = server.client();
        admin.q("ACL SETUSER self on >pw +@all");
        me.q("AUTH self pw");
        assert_eq!(me.q("ACL DELUSER self"), b":1\r\n");
        assert!(me.closed());
    }
}

#[test]
fn category_lists_match_redis() {
    let Some(redis) = common::redis_or_skip("ACL CAT: not compared") else {
        return;
    };
    let percore = Server::percore(1, &[]);
    let (mut r, mut p) = (redis.client(), percore.client());
    assert_eq!(r.q("ACL CAT"), p.q("ACL CAT"));
    let mut wrong = Vec::new();
    for cat in bulks(&p.q("ACL CAT")) {
        let cat = s(&cat);
        let theirs = bulks(&r.q(&format!("ACL CAT {cat}")));
        let ours = bulks(&p.q(&format!("ACL CAT {cat}")));
        // (Commands of later Redis versions, CLIENT SETINFO and CLIENT NO-TOUCH, are not
        // in Redis 7.0's lists.)
        for name in &ours {
            let n = s(name);
            let parent = n.split('|').next().unwrap_or_default();
            let redis_knows = s(&r.q(&format!("COMMAND INFO {parent}")))
                .contains(&format!("${}\r\n{n}\r\n", n.len()));
            if redis_knows && !theirs.contains(name) {
                wrong.push(format!("@{cat}: percore lists {}, Redis does not", s(name)));
            }
        }
        // Every command percore has that Redis puts in the category, percore does too.
        for name in &theirs {
            let n = s(name);
            let parent = n.split('|').next().unwrap_or_default();
            let info = s(&p.q(&format!("COMMAND INFO {parent}")));
            let known = match n.contains('|') {
                false => info != "*1\r\n*-1\r\n",
                true => info.contains(&format!("${}\r\n{n}\r\n", n.len())),
            };
            if known && !ours.contains(name) {
                wrong.push(format!("@{cat}: Redis lists {n}, percore does not"));
            }
        }
        assert!(!ours.is_empty() || cat == "stream", "@{cat} is empty");
    }
    assert!(wrong.is_empty(), "categories differ:\n{}", wrong.join("\n"));
}

/// A file named `name` holding `text` in a fresh temporary directory (removed when the
/// directory is dropped), and its path.
fn file_in_temp_dir(name: &str, text: &str) -> (TempDir, String) {
    let dir = TempDir::new("acl");
    let path = format!("{}/{name}", dir.path());
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn acl_list(c: &mut Client) -> Vec<String> {
    bulks(&c.q("ACL LIST")).iter().map(|l| s(l)).collect()
}

#[test]
fn acl_file_saves_and_loads_as_redis_reads_it() {
    let (_dir, path) = file_in_temp_dir(
        "users.acl",
        "user alice on >alicepw ~a* &news +get (~b* +set)\nuser bob off nopass %R~r* -@all +@read\n",
    );
    let percore = Server::percore(2, &["--aclfile", &path]);
    let mut c = percore.client();
    let listed = acl_list(&mut c);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(c.q("AUTH alice alicepw"), b"+OK\r\n");
    assert_eq!(c.q("GET a1"), b"$-1\r\n");
    assert!(s(&c.q("SET a1 v")).starts_with("-NOPERM"));
    assert_eq!(c.q("SET b1 v"), b"+OK\r\n");
    assert_eq!(c.q("AUTH default x"), b"+OK\r\n");
    // Redis reads the same file to the same users.
    if let Some(redis) = common::redis_or_skip_with(
        "ACL file: Redis's reading not compared",
        &["--aclfile", &path],
    ) {
        assert_eq!(acl_list(&mut redis.client()), listed);
    }
    // SAVE writes what LIST shows; LOAD brings it back after changes.
    assert_eq!(c.q("ACL SETUSER carol on >cpw +@all ~*"), b"+OK\r\n");
    assert_eq!(c.q("ACL SAVE"), b"+OK\r\n");
    let saved = std::fs::read_to_string(&path).unwrap();
    let now = acl_list(&mut c);
    assert_eq!(saved.lines().map(String::from).collect::<Vec<_>>(), now);
    let mut carol = percore.client();
    assert_eq!(carol.q("AUTH carol cpw"), b"+OK\r\n");
    assert_eq!(c.q("ACL DELUSER bob"), b":1\r\n");
    assert_eq!(c.q("ACL LOAD"), b"+OK\r\n");
    assert_eq!(acl_list(&mut c), now);
    // LOAD replaced carol: her connection is closed.
    assert!(carol.closed());
    // A broken file changes nothing, and says why.
    std::fs::write(&path, "user dave on +nosuch\n").unwrap();
    let r = s(&c.q("ACL LOAD"));
    assert!(r.contains("Error in applying operation '+nosuch'"), "{r}");
    assert!(
        r.contains("no change to the previously active ACL rules"),
        "{r}"
    );
    assert_eq!(acl_list(&mut c), now);
    // A restart with the saved file has the same users.
    std::fs::write(&path, saved).unwrap();
    drop(percore);
    let again = Server::percore(1, &["--aclfile", &path]);
    assert_eq!(acl_list(&mut again.client()), now);
}

#[test]
fn config_file_users_and_requirepass() {
    let (_dir, conf) = file_in_temp_dir(
        "percore.conf",
        "requirepass secret\nuser alice on >apw ~* &* +@all -flushall\nacllog-max-len 2\n",
    );
    let percore = Server::percore(1, &[&conf]);
    let mut c = percore.client();
    assert!(s(&c.q("GET a")).starts_with("-NOAUTH"));
    assert_eq!(c.q("AUTH secret"), b"+OK\r\n");
    assert_eq!(c.q("ACL WHOAMI"), b"$7\r\ndefault\r\n");
    assert_eq!(c.q("AUTH alice apw"), b"+OK\r\n");
    assert_eq!(
        s(&c.q("FLUSHALL")),
        "-NOPERM this user has no permissions to run the 'flushall' command\r\n"
    );
    // HELLO AUTH, CLIENT LIST and CLIENT KILL USER know the user.
    let mut h = percore.client();
    let hello = s(&h.q("HELLO 3 AUTH alice apw"));
    assert!(hello.starts_with('%'), "{hello}");
    assert_eq!(h.q("ACL WHOAMI"), b"$5\r\nalice\r\n");
    assert!(s(&c.q("CLIENT LIST")).contains("user=alice"));
    assert_eq!(
        s(&c.q("CLIENT KILL USER nosuch")),
        "-ERR No such user 'nosuch'\r\n"
    );
    assert_eq!(c.q("CLIENT KILL USER alice SKIPME yes"), b":1\r\n");
    assert!(h.closed());
    // The log keeps acllog-max-len entries.
    for pw in ["x", "y", "z"] {
        c.q(&format!("AUTH nobody{pw} {pw}"));
    }
    let log = s(&c.q("ACL LOG"));
    assert!(log.starts_with("*2\r\n"), "{log}");
    assert!(log.contains("nobodyz") && !log.contains("nobodyx"), "{log}");
    // CONFIG SET requirepass is the default user's password.
    assert_eq!(c.q("CONFIG SET requirepass other"), b"+OK\r\n");
    let user = s(&c.q("ACL GETUSER default"));
    let digest = "d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa";
    assert!(user.contains(digest), "{user}");
    let mut fresh = percore.client();
    assert!(s(&fresh.q("AUTH secret")).starts_with("-WRONGPASS"));
    assert_eq!(fresh.q("AUTH other"), b"+OK\r\n");
    // CONFIG REWRITE writes the users in place of the file's `user` lines.
    assert_eq!(c.q("ACL SETUSER bob on >bpw ~b* +get"), b"+OK\r\n");
    assert_eq!(c.q("CONFIG REWRITE"), b"+OK\r\n");
    let text = std::fs::read_to_string(&conf).unwrap();
    let users: Vec<&str> = text.lines().filter(|l| l.starts_with("user ")).collect();
    assert_eq!(users.len(), 3, "{text}");
    assert!(users[1].starts_with("user bob on #"), "{text}");
    assert!(
        users[2].starts_with(&format!("user default on #{digest}")),
        "{text}"
    );
    let again = Server::percore(1, &[&conf]);
    let mut b = again.client();
    assert_eq!(b.q("AUTH bob bpw"), b"+OK\r\n");
    assert!(s(&b.q("SET b1 v")).starts_with("-NOPERM"));
    assert_eq!(c.cmd(&[b"CONFIG", b"SET", b"requirepass", b""]), b"+OK\r\n");
    assert_eq!(percore.client().q("PING"), b"+PONG\r\n");
    assert_eq!(
        s(&percore.client().q("AUTH x")),
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"
    );
}

/// Users that cannot be loaded stop the start with the reason, as Redis refuses to start.
#[test]
fn bad_users_refuse_to_start() {
    let (_dir, acl) = file_in_temp_dir("users.acl", "user alice on +nosuch\n");
    let conf_dir = TempDir::new("acl-both");
    let conf = format!("{}/percore.conf", conf_dir.path());
    for (args, why) in [
        (
            vec!["--aclfile", acl.as_str()],
            "Error in applying operation '+nosuch'",
        ),
        (
            vec!["--aclfile", "/nonexistent/users.acl"],
            "Error loading ACLs, opening file",
        ),
        (vec![conf.as_str()], "not both"),
    ] {
        std::fs::write(&conf, format!("aclfile {acl}\nuser bob on\n")).unwrap();
        let port = common::free_port();
        let log = conf_dir.0.join(format!("{port}.log"));
        match common::Launch::percore(port, &args).log(&log).try_start() {
            Ok(_) => panic!("percore started with {args:?}"),
            Err(f) => {
                assert!(f.status.is_some_and(|s| !s.success()), "{args:?}");
                assert!(f.log.contains(why), "{args:?}: {}", f.log);
            }
        }
    }
}
