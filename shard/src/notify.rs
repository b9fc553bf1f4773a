//! Keyspace notifications (Redis's `notify.c`): the event classes as bits, the
//! `notify-keyspace-events` string in both directions, and the events a shard records.
//!
//! The shard records a [`KeyEvent`] where Redis 7.0 calls `notifyKeyspaceEvent` (the same
//! event names, classes and order within a command); the server drains
//! [`crate::Shard::events`] after each command and publishes them on
//! `__keyspace@<db>__:<key>` and `__keyevent@<db>__:<event>`. A shard with notifications
//! off (the default) pays one predictable branch per event site: [`crate::Shard::notify`]
//! tests one word, which holds 0 unless K or E is set.

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
pub const ALL: u16 = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

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
            ("Anm", "Am"), ("AnKE", "AKE"),
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
