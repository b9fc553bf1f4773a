//! Differential test of keyspace notifications: a real `redis-server` (7.0, the spec) and
//! percore with 3 shards, both with `notify-keyspace-events AKEnm`, each with a subscriber
//! PSUBSCRIBEd to `__key*@*__:*`; a seeded random stream of write and read commands over a
//! few keys of every type in three databases runs on both, and the messages received must
//! be the same.
//!
//! Redis publishes in one order; percore's shards publish independently, so only the order
//! of the messages about one key is defined across shards (`__keyspace@<db>__:<key>` and
//! `__keyevent@<db>__:<event>` with the key as payload, in the order the key's shard made
//! them). The messages are therefore compared per key (database and key), each key's list
//! in order. Keys with a `{t}` hash tag share a shard, so multi-key commands run both on one
//! shard and across shards.
//!
//! Time plays no part: no deadline in the stream passes while it runs (EXPIRE with a negative
//! time deletes at once, as in Redis), and no command picks at random.

mod common;

use common::{bulks, redis_or_skip, reply_len, show, words, Client, Rng, Server};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

const FLAGS: &str = "AKEnm";

/// Keys of the stream: three plain (likely on three shards) and three sharing a hash tag.
const KEYS: &[&str] = &["a", "b", "c", "{t}x", "{t}y", "{t}z"];

/// Bitmaps BITOP reads: strings or missing, never another type. (Across shards BITOP reads
/// its sources on all their shards at once, so a source after one of another type is read
/// too, with a "keymiss" Redis, which stops at the bad one, does not make.)
const BITMAPS: &[&str] = &["s1", "s2", "{t}s"];

/// Command templates: `K`, `L` and `M` are replaced by random keys, `S` by a bitmap, `V` by
/// a value, `F` by a field or member, `N` by a small integer.
const TEMPLATES: &[&str] = &[
    // strings and keys
    "SET K V",
    "SET K V EX 100",
    "SET K V NX",
    "SET K V XX GET",
    "SETNX K V",
    "SETEX K 100 V",
    "GETSET K V",
    "GETDEL K",
    "GETEX K PERSIST",
    "GETEX K EX 200",
    "APPEND K V",
    "INCR K",
    "INCRBY K N",
    "INCRBYFLOAT K 1.5",
    "SETRANGE K N V",
    "GET K",
    "MGET K L",
    "MSET K V L V",
    "MSETNX K V L V",
    "STRLEN K",
    "DEL K L",
    "UNLINK K",
    "EXISTS K L",
    "TYPE K",
    "TTL K",
    "EXPIRE K 100",
    "EXPIRE K -1",
    "PEXPIRE K 100000 NX",
    "PERSIST K",
    "RENAME K L",
    "RENAMENX K L",
    "COPY K L",
    "COPY K L REPLACE",
    "COPY K L DB 1",
    "MOVE K 2",
    "SETBIT K N 1",
    "SETBIT S N 1",
    "BITOP OR K S S",
    "BITFIELD K SET u8 N 7",
    "PFADD K F",
    "PFMERGE K L",
    // lists
    "LPUSH K F F",
    "RPUSH K F",
    "LPUSHX K F",
    "RPUSHX K F",
    "LPOP K",
    "RPOP K N",
    "LSET K 0 F",
    "LINSERT K BEFORE F V",
    "LREM K 0 F",
    "LTRIM K 1 N",
    "LMOVE K L LEFT RIGHT",
    "RPOPLPUSH K L",
    "LMPOP 2 K L LEFT COUNT N",
    "LRANGE K 0 -1",
    "SORT K ALPHA STORE L",
    // hashes
    "HSET K F V F V",
    "HSETNX K F V",
    "HDEL K F F",
    "HINCRBY K F N",
    "HINCRBYFLOAT K F 0.5",
    "HGET K F",
    // sets
    "SADD K F F",
    "SREM K F",
    "SMOVE K L F",
    "SINTERSTORE K L M",
    "SUNIONSTORE K L M",
    "SDIFFSTORE K L M",
    "SPOP K 10",
    "SMEMBERS K",
    // sorted sets
    "ZADD K N F",
    "ZADD K XX N F",
    "ZINCRBY K N F",
    "ZREM K F",
    "ZREMRANGEBYRANK K 0 0",
    "ZREMRANGEBYSCORE K 0 2",
    "ZPOPMIN K",
    "ZPOPMAX K N",
    "ZMPOP 2 K L MIN",
    "ZUNIONSTORE K 2 L M",
    "ZINTERSTORE K 2 L M",
    "ZDIFFSTORE K 2 L M",
    "ZRANGESTORE K L 0 N",
    "ZSCORE K F",
    "GEOADD K 13.36 38.11 F",
    "GEOSEARCHSTORE K L FROMLONLAT 13 38 BYRADIUS 200 km",
    // databases
    "SELECT N",
    "SWAPDB 1 2",
];

fn command(rng: &mut Rng) -> String {
    let t = rng.pick(TEMPLATES);
    let mut out = Vec::new();
    for w in t.split(' ') {
        let w = match w {
            "K" | "L" | "M" => rng.pick(KEYS).to_string(),
            "S" => rng.pick(BITMAPS).to_string(),
            "V" => rng.pick(&["v", "12", "hello"]).to_string(),
            "F" => rng.pick(&["f1", "f2", "f3"]).to_string(),
            // SELECT and SETBIT offsets alike stay small.
            "N" => rng.below(3).to_string(),
            w => w.to_string(),
        };
        out.push(w);
    }
    out.join(" ")
}

/// A connection in subscriber mode, collecting messages per key.
struct Subscriber {
    client: Client,
    buf: Vec<u8>,
}

/// Messages per (database, key): `K <event>` for a keyspace message, `E <event>` for a
/// keyevent one.
type PerKey = BTreeMap<(String, String), Vec<String>>;

impl Subscriber {
    fn new(server: &Server) -> Subscriber {
        let mut client = server.client();
        let r = client.cmd(&[b"PSUBSCRIBE", b"__key*@*__:*"]);
        assert!(
            bulks(&r).first().is_some_and(|b| b == b"psubscribe"),
            "PSUBSCRIBE answered {}",
            common::esc(&r)
        );
        Subscriber {
            client,
            buf: Vec::new(),
        }
    }

    /// Reads messages until none comes for `quiet` (at most 30 s in all).
    fn drain(&mut self, quiet: Duration, into: &mut PerKey) {
        let s = &mut self.client.stream;
        s.set_read_timeout(Some(quiet)).unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            while let Some(n) = reply_len(&self.buf) {
                let msg: Vec<u8> = self.buf.drain(..n).collect();
                record(&msg, into);
            }
            let mut tmp = [0u8; 65536];
            match s.read(&mut tmp) {
                Ok(0) => panic!("the subscriber's connection closed"),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return;
                }
                Err(e) => panic!("subscriber: {e}"),
            }
            assert!(Instant::now() < end, "messages kept coming for 30 s");
        }
    }
}

/// Files one `pmessage` under its key.
fn record(msg: &[u8], into: &mut PerKey) {
    let b = bulks(msg);
    let [kind, _pattern, channel, payload] = &b[..] else {
        panic!("not a pmessage: {}", common::esc(msg));
    };
    assert_eq!(kind, b"pmessage", "{}", common::esc(msg));
    let channel = String::from_utf8_lossy(channel).into_owned();
    let payload = String::from_utf8_lossy(payload).into_owned();
    let (prefix, rest) = channel.split_once('@').expect("a channel with a database");
    let (db, name) = rest.split_once("__:").expect("__keyspace@<db>__:<name>");
    let (key, line) = match prefix {
        "__keyspace" => (name.to_string(), format!("K {payload}")),
        "__keyevent" => (payload, format!("E {name}")),
        _ => panic!("unexpected channel {channel}"),
    };
    into.entry((db.to_string(), key)).or_default().push(line);
}

/// Runs `commands` on `server` with a subscriber; returns what it received, per key.
fn messages(server: &Server, commands: &[String]) -> PerKey {
    let mut c = server.client();
    assert_eq!(
        c.cmd(&[
            b"CONFIG",
            b"SET",
            b"notify-keyspace-events",
            FLAGS.as_bytes()
        ]),
        b"+OK\r\n"
    );
    let mut sub = Subscriber::new(server);
    for line in commands {
        let args = words(line);
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        c.cmd(&refs);
    }
    let mut got = PerKey::new();
    sub.drain(Duration::from_millis(500), &mut got);
    got
}

#[test]
fn random_streams_publish_the_messages_redis_publishes() {
    let Some(redis) = redis_or_skip("keyspace notifications: did not run") else {
        return;
    };
    let percore = Server::percore(3, &[]);
    for seed in [1u64, 2, 3] {
        let mut rng = Rng(seed);
        // Every run starts empty: FLUSHALL publishes nothing.
        let mut commands = vec!["FLUSHALL".to_string(), "SELECT 0".to_string()];
        commands.extend((0..400).map(|_| command(&mut rng)));
        let want = messages(&redis, &commands);
        let got = messages(&percore, &commands);
        assert!(
            !want.is_empty(),
            "seed {seed}: Redis published nothing (is the stream writing?)"
        );
        let keys: std::collections::BTreeSet<_> = want.keys().chain(got.keys()).collect();
        let mut wrong = Vec::new();
        for k in keys {
            let (w, g) = (want.get(k), got.get(k));
            if w != g {
                wrong.push(format!(
                    "db {} key {}:\n    redis:   {:?}\n    percore: {:?}",
                    k.0, k.1, w, g
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "seed {seed}: {} keys differ\n{}\ncommands:\n{}",
            wrong.len(),
            wrong.join("\n"),
            commands
                .iter()
                .map(|l| show(&words(l)))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn config_get_shows_redis_canonical_form_and_refuses_bad_classes() {
    let percore = Server::percore(3, &["--notify-keyspace-events", "Kx"]);
    let redis = redis_or_skip("notify-keyspace-events CONFIG: Redis side did not run");
    let mut servers = vec![percore.client()];
    if let Some(r) = &redis {
        let mut c = r.client();
        c.q("CONFIG SET notify-keyspace-events Kx");
        servers.push(c);
    }
    for c in &mut servers {
        let get = |c: &mut Client| bulks(&c.q("CONFIG GET notify-keyspace-events"))[1].clone();
        assert_eq!(get(c), b"xK");
        assert_eq!(c.q("CONFIG SET notify-keyspace-events KEA"), b"+OK\r\n");
        assert_eq!(get(c), b"AKE");
        assert_eq!(
            common::s(&c.q("CONFIG SET notify-keyspace-events KEq")),
            "-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.\r\n"
        );
        assert_eq!(get(c), b"AKE", "a refused value changes nothing");
    }
}
