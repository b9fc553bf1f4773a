//! Keyspace notifications (Redis's `notify.c`): the event classes as bits, the
//! `notify-keyspace-events` string in both directions, and the events a shard records.
//!
//! The shard records a [`KeyEvent`] where Redis 7.0 calls `notifyKeyspaceEvent` (the same
//! event names, classes and order within a command); the server drains
//! [`crate::Shard::events`] and publishes them on `__keyspace@<db>__:<key>` and
//! `__keyevent@<db>__:<event>`. A shard with notifications off (the default) pays one
//! predictable branch per event site: [`crate::Shard::notify`] tests one word, which holds
//! 0 unless K or E is set.
//!
//! Events are recorded by whatever changes or reads the keyspace, not only by
//! [`crate::Shard::apply`]: pops served to blocked clients, a coordinator's steps of a
//! command over several shards (each key's events on its own shard; a scratch shard's are
//! handed over with [`crate::Shard::record_events`]), lookups that find a key expired
//! (WATCH too), the active expiry cycle ("expired") and eviction ("evicted"). The server
//! drains after each of those, so the Vec holds at most one command's or one step's events.
//! Loading a snapshot records nothing (Redis adds loaded keys without "new").
//!
//! Where the recording of redis-server in `notify/` shows it, percore follows Redis in the
//! places events imply: "new" from every key creation (Redis's `dbAdd`; RENAME and COPY
//! REPLACE report it for a replaced destination too), "keymiss" from read lookups only (as
//! `lookupKeyRead`; EXISTS, TYPE, TTL, COPY's source, GET of SET … GET), a write that
//! empties a collection reports its event and then "del", a *STORE with an empty result
//! reports "del" only when the destination existed.

/// `K`: publish on `__keyspace@<db>__:<key>`.
pub const KEYSPACE: u16 = 1 << 0;
/// `E`: publish on `__keyevent@<db>__:<event>`.
pub const KEYEVENT: u16 = 1 << 1;
/// `g`: generic commands (DEL, EXPIRE, RENAME, …).
pub const GENERIC: u16 = 1 << 2;
/// `$`: string commands.
pub const STRING: u16 = 1 << 3;
/// `l`: list commands.
pub const LIST: u16 = 1 << 4;
/// `s`: set commands.
pub const SET: u16 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u16 = 1 << 6;
/// `z`: sorted set commands.
pub const ZSET: u16 = 1 << 7;
/// `x`: a key expired (lazily or by the active cycle).
pub const EXPIRED: u16 = 1 << 8;
/// `e`: a key was evicted for maxmemory.
pub const EVICTED: u16 = 1 << 9;
/// `t`: stream commands.
pub const STREAM: u16 = 1 << 10;
/// `m`: a read found no key (not part of `A`).
pub const KEY_MISS: u16 = 1 << 11;
/// `d`: module events.
pub const MODULE: u16 = 1 << 13;
/// `n`: a key was created (not part of `A`).
pub const NEW: u16 = 1 << 14;
/// `A`: `g$lshzxetd`.
pub const ALL: u16 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// Redis's reply to a bad class character.
pub const INVALID_CLASS: &str = "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.";

/// One keyspace event: `event` happened to `key` in `db`; `class` is its class bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    pub db: usize,
    pub class: u16,
    pub event: &'static str,
    pub key: Box<[u8]>,
}

/// Parses a `notify-keyspace-events` value as Redis's `keyspaceEventsStringToFlags`; None
/// when a character names no class.
pub fn parse_flags(s: &[u8]) -> Option<u16> {
    s.iter().try_fold(0u16, |flags, c| {
        Some(
            flags
                | match c {
                    b'A' => ALL,
                    b'g' => GENERIC,
                    b'$' => STRING,
                    b'l' => LIST,
                    b's' => SET,
                    b'h' => HASH,
                    b'z' => ZSET,
                    b'x' => EXPIRED,
                    b'e' => EVICTED,
                    b'K' => KEYSPACE,
                    b'E' => KEYEVENT,
                    b't' => STREAM,
                    b'm' => KEY_MISS,
                    b'd' => MODULE,
                    b'n' => NEW,
                    _ => return None,
                },
        )
    })
}

/// The canonical form of `flags`, as Redis's `keyspaceEventsFlagsToString` (CONFIG GET):
/// `A` or the classes in a fixed order, then `K`, `E`, `m`.
pub fn format_flags(flags: u16) -> String {
    let mut s = String::new();
    if flags & ALL == ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if flags & bit != 0 {
                s.push(c);
            }
        }
    }
    for (bit, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if flags & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// The word [`crate::Shard::notify`] tests: the classes to record, or 0 when nothing is
/// published (neither K nor E), so that one AND decides.
pub(crate) fn active_classes(flags: u16) -> u16 {
    if flags & (KEYSPACE | KEYEVENT) == 0 {
        0
    } else {
        flags & !(KEYSPACE | KEYEVENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecCtx, Shard, ShardConfig};
    use percore_proto::{command::resolve, OwnedArgs, Protocol, ReplyWriter};

    /// A shard recording every class, as `notify-keyspace-events AEnm`.
    fn recording_shard() -> Shard {
        let mut sh = Shard::new(7, ShardConfig::default());
        sh.set_notify(parse_flags(b"AEnm").expect("valid flags"));
        sh
    }

    /// Runs `args` in `db` at `now_ms`; returns the events it recorded as `db event key`.
    fn events_of(sh: &mut Shard, db: usize, now_ms: u64, args: &[&str]) -> String {
        let owned = OwnedArgs::from_slices(args);
        let spec = resolve(&owned.args()).unwrap_or_else(|e| panic!("{args:?}: {e:?}"));
        let mut out = Vec::new();
        let ctx = ExecCtx { db, now_ms };
        sh.apply(
            &ctx,
            spec,
            owned.args(),
            &mut ReplyWriter::new(&mut out, Protocol::Resp2),
        );
        format_events(sh.events.drain(..))
    }

    fn format_events(events: impl Iterator<Item = KeyEvent>) -> String {
        events
            .map(|e| format!("{} {} {}", e.db, e.event, String::from_utf8_lossy(&e.key)))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every command of the recording, run in order on one shard, records exactly the
    /// events redis-server published for it.
    #[test]
    fn commands_fire_the_events_redis_fires() {
        replay(include_str!("notify/redis-7.0.15-events.txt"));
    }

    /// The same for random streams over few keys, where commands meet every state (missing,
    /// wrong type, emptied, across databases).
    #[test]
    fn random_streams_fire_the_events_redis_fires() {
        replay(include_str!("notify/redis-7.0.15-random.txt"));
    }

    /// Runs a recording's commands in order on one shard; each must record the events
    /// redis-server published for it.
    fn replay(script: &str) {
        let mut sh = recording_shard();
        let (mut db, mut now_ms) = (0, 1_000_000);
        let mut wrong = Vec::new();
        for line in script.lines().filter(|l| !l.starts_with('#')) {
            let (cmd, want) = line.rsplit_once('|').expect("command | events");
            let args: Vec<&str> = cmd.split_whitespace().collect();
            if args[0].eq_ignore_ascii_case("select") {
                db = args[1].parse().expect("a database index");
                continue;
            }
            if args[0].eq_ignore_ascii_case("debug") {
                // The recording's pauses (SLEEP) and its switch of active expiry, which
                // this shard only runs when asked.
                now_ms += 10_000;
                continue;
            }
            let got = events_of(&mut sh, db, now_ms, &args);
            if got != want.trim() {
                wrong.push(format!(
                    "{cmd}\n    redis:   {}\n    percore: {got}",
                    want.trim()
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} commands differ:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn active_expiry_and_eviction_fire_expired_and_evicted() {
        let mut sh = recording_shard();
        events_of(&mut sh, 0, 1_000, &["SET", "a", "1", "PX", "10"]);
        events_of(&mut sh, 3, 1_000, &["SET", "b", "1", "PX", "10"]);
        events_of(&mut sh, 0, 1_000, &["SET", "c", "1"]);
        sh.expire_step(2_000, 1024);
        let mut got: Vec<String> = sh
            .events
            .drain(..)
            .map(|e| format_events(std::iter::once(e)))
            .collect();
        got.sort();
        assert_eq!(got, ["0 expired a", "3 expired b"]);

        sh.config.evict.policy = crate::evict::Policy::AllKeysRandom;
        let mut over = 1;
        sh.evict(2_000, 10, &mut || {
            over -= 1;
            over >= 0
        });
        assert_eq!(format_events(sh.events.drain(..)), "0 evicted c");
    }

    /// A push serving a blocked BLPOP and BLMOVE (the server pops with `list::pop_n` and
    /// `list::move_one` right after the push), as redis-server 7.0.15 published them.
    #[test]
    fn served_blocking_pops_fire_redis_events() {
        use crate::ops::list::{move_one, pop_n};
        use crate::types::list::End;
        let mut sh = recording_shard();
        let mut got = events_of(&mut sh, 0, 1_000, &["RPUSH", "k", "a"]);
        pop_n(&mut sh, 0, 1_000, b"k", End::Left, 1);
        got += "; ";
        got += &format_events(sh.events.drain(..));
        assert_eq!(got, "0 new k; 0 rpush k; 0 lpop k; 0 del k");

        let mut got = events_of(&mut sh, 0, 1_000, &["RPUSH", "src", "x"]);
        move_one(
            &mut sh,
            0,
            1_000,
            b"src",
            End::Left,
            Some((b"dst", End::Right)),
        );
        got += "; ";
        got += &format_events(sh.events.drain(..));
        assert_eq!(
            got,
            "0 new src; 0 rpush src; 0 new dst; 0 rpush dst; 0 lpop src; 0 del src"
        );
    }

    #[test]
    fn nothing_is_recorded_unless_k_or_e_and_the_class_are_set() {
        let run_all = |flags: &[u8]| {
            let mut sh = Shard::new(7, ShardConfig::default());
            sh.set_notify(parse_flags(flags).expect("valid flags"));
            let mut all = String::new();
            for cmd in [
                &["SET", "s", "1"][..],
                &["GET", "nokey"],
                &["LPUSH", "l", "a"],
                &["RPOP", "l"],
                &["EXPIRE", "s", "100"],
            ] {
                let e = events_of(&mut sh, 0, 1_000, cmd);
                if !e.is_empty() {
                    all += &format!("{e}; ");
                }
            }
            all
        };
        assert_eq!(run_all(b""), "");
        assert_eq!(
            run_all(b"Anm"),
            "",
            "classes without K or E publish nothing"
        );
        assert_eq!(
            run_all(b"KE"),
            "",
            "K and E without classes publish nothing"
        );
        assert_eq!(run_all(b"K$"), "0 set s; ");
        assert_eq!(
            run_all(b"Egl"),
            "0 lpush l; 0 rpop l; 0 del l; 0 expire s; "
        );
        assert_eq!(run_all(b"Km"), "0 keymiss nokey; ");
        assert_eq!(run_all(b"En"), "0 new s; 0 new l; ");
    }

    #[test]
    fn flags_parse_and_format_as_redis() {
        // CONFIG SET then CONFIG GET on redis-server 7.0.15.
        for (set, get) in [
            ("", ""),
            ("AKE", "AKE"),
            ("Kx", "xK"),
            ("KEA", "AKE"),
            ("Ex", "xE"),
            ("g$lshzxetdKE", "AKE"),
            ("Anm", "Am"),
            ("AnKE", "AKE"),
            ("mnK", "nKm"),
            ("ElgK", "glKE"),
            ("AAA", "A"),
            ("xxx", "x"),
            ("$", "$"),
        ] {
            let f = parse_flags(set.as_bytes()).expect(set);
            assert_eq!(format_flags(f), get, "{set}");
        }
        for bad in ["a", "KEAq", " ", "k", "AKE!"] {
            assert_eq!(parse_flags(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn classes_are_active_only_with_k_or_e() {
        assert_eq!(active_classes(ALL), 0);
        assert_eq!(active_classes(KEYSPACE | STRING), STRING);
        assert_eq!(active_classes(KEYEVENT | ALL | NEW), ALL | NEW);
    }
}
