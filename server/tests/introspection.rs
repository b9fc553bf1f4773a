//! Redis 7.0's introspection beside a real redis-server: COMMAND GETKEYSANDFLAGS, LATENCY
//! HISTOGRAM's reply shape and buckets, and what SLOWLOG keeps of a command's arguments
//! (redacted secrets, at most 32 arguments of at most 128 bytes).

mod common;

use common::{each_differential_run, esc, words, Client, Diff};

#[test]
fn command_getkeysandflags_matches_redis() {
    each_differential_run(
        "COMMAND GETKEYSANDFLAGS",
        &[],
        &[],
        |redis, percore, resp3, _, what| {
            let mut d = Diff::new(redis, percore, resp3, what);
            for line in [
                "COMMAND GETKEYSANDFLAGS GET k",
                "COMMAND GETKEYSANDFLAGS MGET a b c",
                "COMMAND GETKEYSANDFLAGS SETBIT k 7 1",
                "COMMAND GETKEYSANDFLAGS PFADD h a b",
                "COMMAND GETKEYSANDFLAGS PFCOUNT a b",
                "COMMAND GETKEYSANDFLAGS PFMERGE d s1 s2",
                "COMMAND GETKEYSANDFLAGS BITOP AND d s1 s2",
                "COMMAND GETKEYSANDFLAGS ZUNIONSTORE d 2 a b WEIGHTS 1 2",
                "COMMAND GETKEYSANDFLAGS ZINTERSTORE d 1 a",
                "COMMAND GETKEYSANDFLAGS SORT k BY w:* GET g:* STORE d",
                "COMMAND GETKEYSANDFLAGS SORT k LIMIT 0 1",
                "COMMAND GETKEYSANDFLAGS GEOSEARCHSTORE d s FROMLONLAT 0 0 BYRADIUS 1 km",
                "COMMAND GETKEYSANDFLAGS GEORADIUS s 0 0 1 km STORE d",
                "COMMAND GETKEYSANDFLAGS EVAL \"\" 2 a b x",
                "COMMAND GETKEYSANDFLAGS EVAL_RO \"\" 1 a",
                "COMMAND GETKEYSANDFLAGS EVAL \"\" 0",
                "COMMAND GETKEYSANDFLAGS MEMORY USAGE k",
                "COMMAND INFO MEMORY|USAGE",
                // Errors, in Redis's order: unknown command, no keys, arity.
                "COMMAND GETKEYSANDFLAGS NOSUCH k",
                "COMMAND GETKEYSANDFLAGS PING x",
                "COMMAND GETKEYSANDFLAGS TIME x",
                "COMMAND GETKEYSANDFLAGS GET a b",
                "COMMAND GETKEYSANDFLAGS ZUNIONSTORE d 3 a",
                "COMMAND GETKEYSANDFLAGS GET",
                "COMMAND GETKEYSANDFLAGS",
                // GETKEYS keeps agreeing with its flagged twin.
                "COMMAND GETKEYS ZUNIONSTORE d 2 a b",
                "COMMAND GETKEYS PING x",
                "COMMAND GETKEYS GET",
                "COMMAND INFO command|getkeys",
                "COMMAND INFO command|getkeysandflags",
            ] {
                d.line(line);
            }
        },
    );
}

/// Runs `f` with a client on Redis and one on percore (after FLUSHALL, in RESP3 when the run
/// is), for every run of [`each_differential_run`].
fn each_client_pair(what: &str, mut f: impl FnMut([Client; 2], String)) {
    each_differential_run(what, &[], &[], |redis, percore, resp3, _, what| {
        f(Diff::new(redis, percore, resp3, what.clone()).c, what)
    });
}

/// A reply as a tree, for comparing shapes whose numbers differ between servers.
#[derive(PartialEq)]
enum V {
    Int(i64),
    Bulk(Vec<u8>),
    /// Arrays, maps (flattened) and sets.
    Agg(char, Vec<V>),
    Other(Vec<u8>),
}

/// Bulk strings shown escaped, not as numbers.
impl std::fmt::Debug for V {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            V::Int(n) => write!(f, ":{n}"),
            V::Bulk(b) => write!(f, "\"{}\"", esc(b)),
            V::Agg(kind, items) => write!(f, "{kind}{items:?}"),
            V::Other(b) => write!(f, "?{}", esc(b)),
        }
    }
}

fn parse(b: &[u8], at: &mut usize) -> V {
    let end = *at
        + b[*at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a line");
    let (ty, line) = (b[*at], &b[*at + 1..end]);
    *at = end + 2;
    let n = || std::str::from_utf8(line).unwrap().parse::<i64>().unwrap();
    match ty {
        b':' => V::Int(n()),
        b'$' => {
            let len = n() as usize;
            let v = b[*at..*at + len].to_vec();
            *at += len + 2;
            V::Bulk(v)
        }
        b'*' | b'~' => V::Agg('*', (0..n()).map(|_| parse(b, at)).collect()),
        b'%' => V::Agg('%', (0..2 * n()).map(|_| parse(b, at)).collect()),
        _ => V::Other(line.to_vec()),
    }
}

fn tree(b: &[u8]) -> V {
    let mut at = 0;
    let v = parse(b, &mut at);
    assert_eq!(at, b.len(), "one reply: {}", esc(b));
    v
}

/// One LATENCY HISTOGRAM entry: command, calls, [(µs, cumulative calls)].
type Entry = (Vec<u8>, i64, Vec<(i64, i64)>);

/// LATENCY HISTOGRAM's reply type ('*' or '%') and entries, in reply order.
fn histograms(c: &mut Client, args: &str) -> (char, Vec<Entry>) {
    let V::Agg(kind, flat) = tree(&c.q(&format!("LATENCY HISTOGRAM {args}"))) else {
        panic!("LATENCY HISTOGRAM {args}: not an aggregate");
    };
    let mut out = Vec::new();
    for pair in flat.chunks(2) {
        let (V::Bulk(name), V::Agg(_, body)) = (&pair[0], &pair[1]) else {
            panic!("{pair:?}");
        };
        let [V::Bulk(calls_key), V::Int(calls), V::Bulk(hist_key), V::Agg(_, cdf)] = &body[..]
        else {
            panic!("{body:?}");
        };
        assert_eq!(
            (&calls_key[..], &hist_key[..]),
            (&b"calls"[..], &b"histogram_usec"[..])
        );
        let cdf = cdf
            .chunks(2)
            .map(|p| match p {
                [V::Int(us), V::Int(n)] => (*us, *n),
                _ => panic!("{p:?}"),
            })
            .collect();
        out.push((name.clone(), *calls, cdf));
    }
    (kind, out)
}

#[test]
fn latency_histogram_has_redis_shape_and_buckets() {
    each_client_pair("LATENCY HISTOGRAM", |[mut r, mut p], what| {
        for c in [&mut r, &mut p] {
            c.q("CONFIG RESETSTAT");
            for i in 0..7 {
                c.q(&format!("SET k{i} v"));
            }
            c.q("GET k1");
            c.q("CONFIG GET maxmemory");
        }
        for args in [
            "set get",
            "get nosuch SET",
            "config",
            "config|get",
            "nosuch",
            "",
        ] {
            let (rk, rh) = histograms(&mut r, args);
            let (pk, ph) = histograms(&mut p, args);
            let label = format!("{what}: LATENCY HISTOGRAM {args}");
            assert_eq!(rk, pk, "{label}: the reply's type");
            // Commands come in the order named, but Redis walks a hash table for all commands
            // and for a container's subcommands: compare them as a set (the named order is
            // checked below).
            let names = |h: &[Entry]| {
                let mut n: Vec<(Vec<u8>, i64)> = h.iter().map(|e| (e.0.clone(), e.1)).collect();
                n.sort();
                n
            };
            if args == "get nosuch SET" {
                let order: Vec<&[u8]> = ph.iter().map(|e| &e.0[..]).collect();
                assert_eq!(order, [&b"get"[..], b"set"], "{label}");
            }
            let (rn, pn) = (names(&rh), names(&ph));
            if args.is_empty() {
                // Redis counts the CONFIG RESETSTAT before its reset and the
                // LATENCY HISTOGRAM calls themselves after; compare what both ran.
                for name in [&b"set"[..], b"get", b"config|get"] {
                    let find = |n: &[(Vec<u8>, i64)]| n.iter().find(|e| e.0 == name).cloned();
                    assert_eq!(find(&rn), find(&pn), "{label}");
                }
            } else {
                assert_eq!(rn, pn, "{label}: commands and calls");
            }
            for (name, calls, cdf) in rh.iter().chain(&ph) {
                // Steps at 2^k ns from 2^10 on, named by the top of Redis's HDR bucket there
                // in µs; counts cumulative, growing, ending at the calls.
                let label = format!("{label}: {}: {cdf:?}", esc(name));
                assert!(!cdf.is_empty(), "{label}");
                let mut last = (0, 0);
                for &(us, n) in cdf {
                    let k = (10..31).find(|k| ((1i64 << k) + (1 << (k - 7)) - 1) / 1000 == us);
                    assert!(k.is_some(), "{label}: {us} µs is not a bucket edge");
                    assert!(us > last.0 && n > last.1, "{label}");
                    last = (us, n);
                }
                assert_eq!(last.1, *calls, "{label}");
            }
        }
        for c in [&mut r, &mut p] {
            let help = c.q("LATENCY HELP");
            assert!(
                esc(&help).contains("HISTOGRAM [COMMAND ...]"),
                "{}",
                esc(&help)
            );
        }
    });
}

/// Every slow-log entry's arguments and client name, newest first (ids, times, durations
/// and addresses differ between servers).
fn slowlog(c: &mut Client) -> Vec<(V, V)> {
    let V::Agg(_, entries) = tree(&c.q("SLOWLOG GET -1")) else {
        panic!("SLOWLOG GET: not an array");
    };
    entries
        .into_iter()
        .map(|e| match e {
            V::Agg(_, mut f) if f.len() == 6 => {
                let name = f.pop().unwrap();
                f.pop();
                (f.pop().unwrap(), name)
            }
            other => panic!("a slow-log entry: {other:?}"),
        })
        .collect()
}

#[test]
fn slowlog_redacts_and_trims_arguments_as_redis() {
    each_client_pair("SLOWLOG arguments", |[mut r, mut p], what| {
        let long = "x".repeat(200);
        let many: Vec<String> = (0..40).map(|i| format!("e{i}")).collect();
        let lines = [
            "CLIENT SETNAME tester".to_string(),
            "AUTH secret".into(),
            "AUTH someone secret".into(),
            "AUTH a b c".into(),
            "HELLO 2 AUTH someone secret SETNAME tester".into(),
            "HELLO 2 SETNAME bad\\x20name AUTH someone secret".into(),
            "HELLO 9 AUTH someone secret".into(),
            "HELLO 2 AUTH onlyuser".into(),
            "CONFIG SET masterauth s1 maxmemory-samples 5".into(),
            "CONFIG SET maxmemory-samples 5 requirepass \"\"".into(),
            "CONFIG SET MASTERUSER u".into(),
            "CONFIG SET requirepass".into(),
            "CONFIG GET requirepass".into(),
            format!("SET k {long}"),
            format!("RPUSH list {}", many.join(" ")),
            format!("ECHO {}", "y".repeat(128)),
        ];
        for c in [&mut r, &mut p] {
            c.q("CONFIG SET slowlog-log-slower-than 0");
            c.q("SLOWLOG RESET");
            for line in &lines {
                let args = words(line);
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                c.cmd(&refs);
            }
            c.q("CONFIG SET slowlog-log-slower-than 10000");
        }
        let (rl, pl) = (slowlog(&mut r), slowlog(&mut p));
        for (i, (rw, pw)) in rl.iter().zip(&pl).enumerate() {
            assert_eq!(rw, pw, "{what}: entry {i} (newest first)");
        }
        assert_eq!(rl.len(), pl.len(), "{what}: entries");
        let all = esc(&p.q("SLOWLOG GET -1"));
        // Only the two HELLOs that stopped before their AUTH show the secret.
        assert!(
            all.contains("(redacted)") && all.matches("secret").count() == 2,
            "{all}"
        );
    });
}

/// CLIENT LIST TYPE lists the clients of that type, as Redis's getClientType sorts them: a
/// subscribed client is `pubsub` (and not `normal`); without replicas, `replica` and
/// `master` list none of these clients. (percore listed every client for `normal` and none
/// for `pubsub`.)
#[test]
fn client_list_type_sorts_clients_as_redis() {
    each_differential_run(
        "CLIENT LIST TYPE",
        &[],
        &[],
        |redis, percore, _, _, what| {
            let listed = |server: &common::Server| {
                let mut sub = server.client();
                let mut norm = server.client();
                let mut admin = server.client();
                let id = |c: &mut Client| {
                    String::from_utf8_lossy(&c.q("CLIENT ID"))[1..]
                        .trim()
                        .to_string()
                };
                let roles = [
                    ("sub", id(&mut sub)),
                    ("normal", id(&mut norm)),
                    ("admin", id(&mut admin)),
                ];
                assert_eq!(sub.q("SUBSCRIBE ch")[0], b'*', "{what}");
                ["pubsub", "normal", "replica", "slave", "master"].map(|t| {
                    let text = String::from_utf8_lossy(&admin.q(&format!("CLIENT LIST TYPE {t}")))
                        .into_owned();
                    let mut who: Vec<&str> = roles
                        .iter()
                        .filter(|(_, id)| text.lines().any(|l| l.contains(&format!("id={id} "))))
                        .map(|(role, _)| *role)
                        .collect();
                    who.sort();
                    format!("{t}: {}", who.join(" "))
                })
            };
            let want = listed(redis);
            assert_eq!(want[0], "pubsub: sub", "{what}: Redis");
            assert_eq!(listed(percore), want, "{what}");
        },
    );
}
