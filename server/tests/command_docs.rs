//! COMMAND DOCS and the key specs of COMMAND INFO for every command percore has, against a
//! real `redis-server` (7.0), byte for byte in RESP2 and RESP3; and COMMAND GETKEYSANDFLAGS
//! of the commands that store into a destination (ZUNIONSTORE and its kin, GEORADIUS
//! STORE, SORT STORE, …), whose key specs are more than one.
//!
//! Redis lists a container's subcommands in its dictionary's order, which a random hash
//! seed picks at each start: the `subcommands` maps are compared sorted by name.

mod common;

use common::{esc, redis_or_skip, Client, Server};

/// Commands percore has that Redis 7.0 lacks (added in later versions): Redis answers
/// nothing for them, percore its own short documentation.
const NOT_IN_REDIS_7_0: &[&str] = &["client|no-touch", "client|setinfo"];

/// One RESP value: a scalar's bytes as sent, or an aggregate's header line and elements.
#[derive(Clone, Debug, PartialEq)]
enum V {
    Scalar(Vec<u8>),
    Agg(Vec<u8>, Vec<V>),
}

fn parse(b: &[u8], at: &mut usize) -> V {
    let start = *at;
    let nl = start
        + b[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a line");
    let line = &b[start..nl];
    *at = nl + 2;
    let n = || -> i64 { std::str::from_utf8(&line[1..]).unwrap().parse().unwrap() };
    match line[0] {
        b'$' | b'=' | b'!' if n() >= 0 => {
            *at += n() as usize + 2;
            V::Scalar(b[start..*at].to_vec())
        }
        b'*' | b'~' | b'>' if n() >= 0 => {
            let items = (0..n()).map(|_| parse(b, at)).collect();
            V::Agg(line.to_vec(), items)
        }
        b'%' => {
            let items = (0..2 * n()).map(|_| parse(b, at)).collect();
            V::Agg(line.to_vec(), items)
        }
        _ => V::Scalar(line.to_vec()),
    }
}

fn emit(v: &V, out: &mut Vec<u8>) {
    match v {
        V::Scalar(s) => {
            out.extend_from_slice(s);
            if !s.ends_with(b"\r\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
        V::Agg(h, items) => {
            out.extend_from_slice(h);
            out.extend_from_slice(b"\r\n");
            items.iter().for_each(|i| emit(i, out));
        }
    }
}

/// A command's docs map with its `subcommands` map sorted by name (recursively).
fn sort_subcommands(doc: &mut V, keep: &dyn Fn(&str) -> bool) {
    let V::Agg(_, items) = doc else { return };
    for i in (0..items.len().saturating_sub(1)).step_by(2) {
        if items[i] == V::Scalar(b"$11\r\nsubcommands\r\n".to_vec()) {
            if let V::Agg(header, subs) = &mut items[i + 1] {
                let lacking = |k: &V| match k {
                    V::Scalar(b) => {
                        let name = std::str::from_utf8(b).unwrap().split("\r\n").nth(1);
                        !keep(name.unwrap_or(""))
                    }
                    _ => true,
                };
                let mut pairs: Vec<(V, V)> = subs
                    .chunks(2)
                    .filter(|p| !lacking(&p[0]))
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                // The count in the header: pairs in RESP3's map, elements in RESP2's array.
                let n = pairs.len() * if header[0] == b'*' { 2 } else { 1 };
                *header = format!("{}{n}", header[0] as char).into_bytes();
                pairs.sort_by_key(|(k, _)| format!("{k:?}"));
                *subs = pairs
                    .into_iter()
                    .flat_map(|(k, mut d)| {
                        sort_subcommands(&mut d, keep);
                        [k, d]
                    })
                    .collect();
            }
        }
    }
}

/// Fails unless `got` (percore's reply) is `want` (Redis's), showing where they part.
fn same(want: &[u8], got: &[u8], what: &str) {
    if want == got {
        return;
    }
    let at = want.iter().zip(got).position(|(a, b)| a != b);
    let at = at.unwrap_or(want.len().min(got.len()));
    let around = |b: &[u8]| esc(&b[at.saturating_sub(300)..(at + 200).min(b.len())]);
    panic!(
        "{what}: differs at byte {at}\n redis:   …{}\n percore: …{}",
        around(want),
        around(got)
    );
}

/// COMMAND DOCS `name`'s reply, its subcommands sorted, only those `keep` keeps.
fn docs(c: &mut Client, name: &str, keep: &dyn Fn(&str) -> bool) -> Vec<u8> {
    let r = c.cmd(&[b"COMMAND", b"DOCS", name.as_bytes()]);
    let mut v = parse(&r, &mut 0);
    if let V::Agg(_, items) = &mut v {
        if let Some(d) = items.get_mut(1) {
            sort_subcommands(d, keep);
        }
    }
    let mut out = Vec::new();
    emit(&v, &mut out);
    out
}

/// COMMAND INFO `name`'s key specs (its 9th element).
fn key_specs(c: &mut Client, name: &str) -> Vec<u8> {
    let r = c.cmd(&[b"COMMAND", b"INFO", name.as_bytes()]);
    let V::Agg(_, infos) = parse(&r, &mut 0) else {
        panic!("COMMAND INFO {name}: {}", esc(&r))
    };
    let mut out = Vec::new();
    match &infos[0] {
        V::Agg(_, fields) => emit(&fields[8], &mut out),
        other => emit(other, &mut out),
    }
    out
}

/// Every name of percore's COMMAND LIST (subcommands included).
fn percore_names(c: &mut Client) -> Vec<String> {
    let r = c.q("COMMAND LIST");
    common::bulks(&r)
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect()
}

fn both_protocols(what: &str, mut f: impl FnMut(&mut Client, &mut Client, &str)) {
    let Some(redis) = redis_or_skip(what) else {
        return;
    };
    let percore = Server::percore(1, &[]);
    for hello in ["HELLO 2", "HELLO 3"] {
        let (mut r, mut p) = (redis.client(), percore.client());
        r.q(hello);
        p.q(hello);
        f(&mut r, &mut p, hello);
    }
}

#[test]
fn command_docs_match_redis_for_every_command() {
    both_protocols("COMMAND DOCS", |r, p, hello| {
        let names = percore_names(p);
        assert!(names.len() > 300, "{hello}: {} commands", names.len());
        // Subcommands compared: those both have (percore lacks a few of Redis's, such as
        // LATENCY GRAPH; Redis lacks NOT_IN_REDIS_7_0).
        let keep = |n: &str| names.iter().any(|m| m == n) && !NOT_IN_REDIS_7_0.contains(&n);
        let mut compared = 0;
        for name in &names {
            if NOT_IN_REDIS_7_0.contains(&name.as_str()) {
                let none = if hello == "HELLO 3" {
                    "%0\r\n"
                } else {
                    "*0\r\n"
                };
                let r = docs(r, name, &keep);
                assert_eq!(esc(&r), esc(none.as_bytes()), "{name}: Redis knows it");
                continue;
            }
            let (want, got) = (docs(r, name, &keep), docs(p, name, &keep));
            same(&want, &got, &format!("{hello}: COMMAND DOCS {name}"));
            compared += 1;
        }
        assert!(compared > 300);
    });
}

#[test]
fn command_info_key_specs_match_redis_for_every_command() {
    both_protocols("COMMAND INFO key specs", |r, p, hello| {
        for name in percore_names(p) {
            if NOT_IN_REDIS_7_0.contains(&name.as_str()) {
                continue;
            }
            let (want, got) = (key_specs(r, &name), key_specs(p, &name));
            same(
                &want,
                &got,
                &format!("{hello}: COMMAND INFO {name} key specs"),
            );
        }
    });
}

#[test]
fn store_commands_getkeysandflags_match_redis() {
    both_protocols("COMMAND GETKEYSANDFLAGS", |r, p, hello| {
        for line in [
            "ZUNIONSTORE d 2 a b WEIGHTS 1 2",
            "ZINTERSTORE d 1 a",
            "ZDIFFSTORE d 3 a b c",
            "ZRANGESTORE d s 0 -1",
            "SINTERSTORE d a b",
            "SUNIONSTORE d a",
            "SDIFFSTORE d a b",
            "GEORADIUS s 0 0 1 km STORE d",
            "GEORADIUS s 0 0 1 km STOREDIST d",
            "GEORADIUSBYMEMBER s m 1 km STORE d STOREDIST e",
            "GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km",
            "SORT s STORE d",
            "SORT s BY w_* GET o_* STORE d",
            "BITOP AND d a b",
            "PFMERGE d a b",
            "LMOVE a b LEFT RIGHT",
            "COPY a b",
            "RENAME a b",
            "SMOVE a b m",
            "SET k v GET",
            "SET k v",
            "SET k v EX 1 get",
            "BITFIELD k SET u8 0 1",
            "BITFIELD k GET u8 0 OVERFLOW SAT GET i4 1",
            "BITFIELD k GET u8",
            "EVAL s 2 a b c",
            "LMPOP 2 a b LEFT",
            "MIGRATE h 1 k 0 10",
            "MIGRATE h 1 \"\" 0 10 COPY KEYS a b",
            "MIGRATE h 1 \"\" 0 10 AUTH p KEYS a",
            "RESTORE-ASKING k 0 x",
        ] {
            let cmd = format!("COMMAND GETKEYSANDFLAGS {line}");
            let args = common::words(&cmd);
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let (want, got) = (r.cmd(&refs), p.cmd(&refs));
            same(&want, &got, &format!("{hello}: {cmd}"));
        }
    });
}

/// ACL key permissions of the commands that store into a destination: the destination
/// needs write access, the sources read access (their key specs' OW/RW and RO), as Redis's
/// ACL DRYRUN answers, byte for byte.
#[test]
fn store_commands_acl_key_checks_match_redis() {
    both_protocols("ACL key checks of store commands", |r, p, hello| {
        for c in [&mut *r, &mut *p] {
            let set = "ACL SETUSER u on nopass +@all resetkeys %W~d* %R~s*";
            assert_eq!(c.q(set), b"+OK\r\n");
        }
        for line in [
            "ZUNIONSTORE d 2 s1 s2",
            "ZUNIONSTORE s 1 d",
            "ZINTERSTORE d 2 s1 d2",
            "ZDIFFSTORE d 1 s",
            "ZDIFFSTORE s 1 s",
            "ZRANGESTORE d s 0 -1",
            "ZRANGESTORE s d 0 -1",
            "SINTERSTORE d s1 s2",
            "SUNIONSTORE s d",
            "GEORADIUS s 0 0 1 km STORE d",
            "GEORADIUS s 0 0 1 km STORE s",
            "GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km",
            "SORT s STORE d",
            "SORT s STORE s2",
        ] {
            let cmd = format!("ACL DRYRUN u {line}");
            let (want, got) = (r.q(&cmd), p.q(&cmd));
            same(&want, &got, &format!("{hello}: {cmd}"));
        }
    });
}
