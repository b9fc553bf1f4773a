//! Differential tests of the list commands (LPUSH … LMPOP, all but the blocking ones): the
//! same commands go to a real `redis-server` (7.0, the spec) and to percore with 1 and with 3
//! shards, over RESP2 and RESP3, and every reply must be identical byte for byte — a list's
//! order is its content, so nothing is compared as a multiset. Skipped with a loud message
//! when redis-server is absent; PERCORE_REQUIRE_REDIS=1 (CI) turns the skip into a failure.
//!
//! After every write both servers must report the same OBJECT ENCODING (always `quicklist`,
//! as in Redis 7.0) and LLEN for every key written, and a random stream ends with LRANGE 0 -1
//! of every key. A list is a chain of listpack nodes whose size `list-max-listpack-size`
//! bounds (N > 0: N elements; -1 … -5: 4 … 64 KB; default -2), an element over 8 KB taking a
//! node of its own. That layout is invisible to clients, so runs with other node sizes
//! (percore by flag, Redis by CONFIG SET) compare replies only, but they drive percore through
//! node splits (LINSERT, LSET and pushes into full nodes) and merges (LREM, LTRIM, pops) on
//! lists of a few hundred elements.
//!
//! With three shards LMOVE, RPOPLPUSH and LMPOP meet keys on one shard (a shared hash tag)
//! and keys on different shards (plain names; [`keys_span_shards`] checks which).

mod common;

use common::{each_differential_run, esc, show, Diff, Rng};
use std::collections::BTreeSet;

/// A table expectation standing for "ERR wrong number of arguments for '<command>' command".
const ARITY: &str = "arity";
const WT: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value";
const SYNTAX: &str = "-ERR syntax error";
const NOT_INT: &str = "-ERR value is not an integer or out of range";
/// LPOP's and RPOP's answer to a count that is no integer from 0 up.
const POSITIVE: &str = "-ERR value is out of range, must be positive";
const NO_KEY: &str = "-ERR no such key";
const RANGE: &str = "-ERR index out of range";
const RANK0: &str = "-ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                     second ... or use negative to start from the end of the list";
const COUNT_NEG: &str = "-ERR COUNT can't be negative";
const MAXLEN_NEG: &str = "-ERR MAXLEN can't be negative";
const NUMKEYS: &str = "-ERR numkeys should be greater than 0";
const COUNT_GT0: &str = "-ERR count should be greater than 0";
const CONFIG_NOT_INT: &str = "-ERR CONFIG SET failed (possibly related to argument \
                              'list-max-listpack-size') - argument couldn't be parsed into an \
                              integer";
const CONFIG_RANGE: &str = "-ERR CONFIG SET failed (possibly related to argument \
                            'list-max-listpack-size') - argument must be between -2147483648 and \
                            2147483647 inclusive";

/// Commands (see [`argv`]) and Redis 7.0's RESP2 reply to each (see [`expected`]), checked
/// against Redis itself in RESP2 runs; an empty expectation means "whatever Redis says".
#[rustfmt::skip]
const TABLE: &[(&str, &str)] = &[
    // Arity comes before anything else.
    ("LPUSH k", ARITY), ("RPUSH k", ARITY), ("LPUSHX k", ARITY), ("RPUSHX k", ARITY),
    ("LPOP", ARITY), ("LPOP k 1 2", ARITY), ("RPOP", ARITY), ("RPOP k 1 2", ARITY), ("LLEN", ARITY),
    ("LLEN k k", ARITY), ("LRANGE k 0", ARITY), ("LRANGE k 0 1 2", ARITY), ("LINDEX k", ARITY),
    ("LINDEX k 0 1", ARITY), ("LSET k 0", ARITY), ("LSET k 0 a b", ARITY),
    ("LINSERT k BEFORE a", ARITY), ("LINSERT k BEFORE a b c", ARITY), ("LREM k 1", ARITY),
    ("LREM k 1 a b", ARITY), ("LTRIM k 0", ARITY), ("LTRIM k 0 1 2", ARITY), ("LPOS k", ARITY),
    ("LMOVE a b LEFT", ARITY), ("LMOVE a b LEFT RIGHT x", ARITY), ("RPOPLPUSH a", ARITY),
    ("RPOPLPUSH a b c", ARITY), ("LMPOP", ARITY), ("LMPOP 1", ARITY), ("LMPOP 1 a", ARITY),
    ("EXISTS k a b", ":0"),
    // A missing key reads as an empty list; only a push creates one.
    ("LLEN nokey", ":0"), ("LRANGE nokey 0 -1", "[]"), ("LINDEX nokey 0", "nil"),
    ("LPOP nokey", "nil"), ("RPOP nokey", "nil"), ("LPOP nokey 2", "*-1"), ("RPOP nokey 0", "*-1"),
    ("LPUSHX nokey a", ":0"), ("RPUSHX nokey a b", ":0"), ("LINSERT nokey BEFORE a b", ":0"),
    ("LREM nokey 0 a", ":0"), ("LTRIM nokey 0 -1", "+OK"), ("LSET nokey 0 a", NO_KEY),
    ("LPOS nokey a", "nil"), ("LPOS nokey a COUNT 0", "[]"), ("LMOVE nokey d LEFT RIGHT", "nil"),
    ("RPOPLPUSH nokey d", "nil"), ("LMPOP 2 nokey nokey2 LEFT", "*-1"), ("EXISTS nokey d", ":0"),
    ("TYPE nokey", "+none"), ("OBJECT ENCODING nokey", "nil"),
    // LPUSH puts its arguments at the head one by one, so they end up reversed.
    ("RPUSH l a b c", ":3"), ("LPUSH l z y", ":5"), ("LRANGE l 0 -1", "[y z a b c]"),
    ("TYPE l", "+list"), ("OBJECT ENCODING l", "$quicklist"), ("LLEN l", ":5"),
    ("RPUSHX l d", ":6"), ("LPUSHX l x w", ":8"), ("LRANGE l 0 -1", "[w x y z a b c d]"),
    ("rpush l e", ":9"), ("lrange l -1 -1", "[e]"), ("rpop l", "$e"),
    // Negative indices count from the tail; ranges are clamped, single indices miss.
    ("LRANGE l 1 2", "[x y]"), ("LRANGE l -2 -1", "[c d]"), ("LRANGE l -100 1", "[w x]"),
    ("LRANGE l 6 100", "[c d]"), ("LRANGE l 3 1", "[]"), ("LRANGE l 8 10", "[]"),
    ("LRANGE l -1 -3", "[]"), ("LRANGE l 0 9223372036854775807", "[w x y z a b c d]"),
    ("LRANGE l -9223372036854775808 0", "[w]"),
    ("LRANGE l 9223372036854775807 -9223372036854775808", "[]"),
    ("LRANGE l x 1", NOT_INT), ("LRANGE l 0 1.5", NOT_INT),
    ("LRANGE l 9223372036854775808 1", NOT_INT), ("LRANGE nokey x 1", NOT_INT),
    ("LINDEX l 0", "$w"), ("LINDEX l -1", "$d"), ("LINDEX l 7", "$d"), ("LINDEX l 8", "nil"),
    ("LINDEX l -8", "$w"), ("LINDEX l -9", "nil"), ("LINDEX l 9223372036854775807", "nil"),
    ("LINDEX l -9223372036854775808", "nil"), ("LINDEX l x", NOT_INT), ("LINDEX nokey x", "nil"),
    // LSET looks the key up before it reads the index.
    ("LSET l 0 W", "+OK"), ("LSET l -1 D", "+OK"), ("LSET l 3 Z", "+OK"),
    ("LRANGE l 0 -1", "[W x y Z a b c D]"), ("LSET l 8 e", RANGE), ("LSET l -9 e", RANGE),
    ("LSET l 9223372036854775807 e", RANGE), ("LSET l -9223372036854775808 e", RANGE),
    ("LSET l x e", NOT_INT), ("LSET l 9223372036854775808 e", NOT_INT), ("LSET nokey x e", NO_KEY),
    // LINSERT: at the first occurrence of the pivot (case-sensitive), -1 without one; the
    // position word is checked before the key.
    ("RPUSH l a", ":9"), ("LINSERT l BEFORE W v", ":10"), ("LINSERT l AFTER D E", ":11"),
    ("LINSERT l after a m", ":12"), ("LINSERT l before Z n", ":13"),
    ("LRANGE l 0 -1", "[v W x y n Z a m b c D E a]"), ("LINSERT l BEFORE missing q", ":-1"),
    ("LINSERT l AFTER w q", ":-1"), ("LINSERT l BEFORE a a", ":14"), ("LLEN l", ":14"),
    ("LRANGE l 5 8", "[Z a a m]"), ("LINSERT l MIDDLE a q", SYNTAX),
    ("LINSERT nokey MIDDLE a q", SYNTAX),
    // LREM: a count > 0 removes from the head, < 0 from the tail, 0 every match.
    ("RPUSH r a b a c a b a", ":7"), ("LREM r 2 a", ":2"), ("LRANGE r 0 -1", "[b c a b a]"),
    ("LREM r -1 a", ":1"), ("LRANGE r 0 -1", "[b c a b]"), ("LREM r 0 b", ":2"),
    ("LRANGE r 0 -1", "[c a]"), ("LREM r 0 zz", ":0"), ("LREM r 5 A", ":0"),
    ("LREM r x a", NOT_INT), ("LREM nokey x a", NOT_INT), ("RPUSH r a a", ":4"),
    ("LREM r -9223372036854775808 a", ":3"), ("LRANGE r 0 -1", "[c]"),
    ("LREM r 9223372036854775807 c", ":1"), ("EXISTS r", ":0"),
    // LTRIM: an empty range deletes the key.
    ("RPUSH t a b c d e f", ":6"), ("LTRIM t 1 -2", "+OK"), ("LRANGE t 0 -1", "[b c d e]"),
    ("LTRIM t -100 100", "+OK"), ("LLEN t", ":4"), ("LTRIM t -3 -2", "+OK"),
    ("LRANGE t 0 -1", "[c d]"), ("LTRIM t -9223372036854775808 9223372036854775807", "+OK"),
    ("LLEN t", ":2"), ("LTRIM t 0 0", "+OK"), ("LRANGE t 0 -1", "[c]"), ("LTRIM t x 1", NOT_INT),
    ("LTRIM nokey x 1", NOT_INT), ("LTRIM t 1 0", "+OK"), ("EXISTS t", ":0"),
    ("RPUSH t a b", ":2"), ("LTRIM t 2 5", "+OK"), ("EXISTS t", ":0"), ("RPUSH t a b", ":2"),
    ("LTRIM t -1 -2", "+OK"), ("EXISTS t", ":0"),
    // Pops: with a count the reply is an array, even for 0 — but nil for a missing key.
    ("RPUSH p a b c d e f", ":6"), ("LPOP p", "$a"), ("RPOP p", "$f"), ("LPOP p 2", "[b c]"),
    ("RPOP p 1", "[e]"), ("LPOP p 0", "[]"), ("RPOP p 0", "[]"), ("LPOP p -1", POSITIVE),
    ("LPOP nokey -1", POSITIVE), ("RPOP p x", POSITIVE), ("LPOP p 1.0", POSITIVE),
    ("LPOP p +1", POSITIVE), ("LPOP p 01", POSITIVE), (r#"LPOP p """#, POSITIVE),
    ("LPOP p 9223372036854775808", POSITIVE), ("RPOP p 9223372036854775807", "[d]"),
    ("EXISTS p", ":0"), ("LPOP p", "nil"), ("LPOP p 0", "*-1"), ("RPUSH p a", ":1"),
    ("RPOP p 5", "[a]"), ("EXISTS p", ":0"), ("RPUSH p a b", ":2"), ("LPOP p", "$a"),
    ("RPOP p", "$b"), ("EXISTS p", ":0"),
    // LPOS: options in any order, the last of a kind wins; errors come before the lookup.
    ("RPUSH q a b c a b a", ":6"), ("LPOS q a", ":0"), ("LPOS q b", ":1"), ("LPOS q z", "nil"),
    ("LPOS q A", "nil"), ("LPOS q a RANK 1", ":0"), ("LPOS q a RANK 2", ":3"),
    ("LPOS q a RANK 4", "nil"), ("LPOS q a RANK -1", ":5"), ("LPOS q a RANK -3", ":0"),
    ("LPOS q a RANK -4", "nil"), ("LPOS q a RANK 9223372036854775807", "nil"),
    ("LPOS q a COUNT 0", "[:0 :3 :5]"), ("LPOS q a COUNT 2", "[:0 :3]"),
    ("LPOS q a COUNT 9", "[:0 :3 :5]"), ("LPOS q a RANK -1 COUNT 2", "[:5 :3]"),
    ("LPOS q a COUNT 0 RANK 2", "[:3 :5]"), ("LPOS q a COUNT 0 MAXLEN 4", "[:0 :3]"),
    ("LPOS q a RANK -1 MAXLEN 1", ":5"), ("LPOS q a RANK -1 COUNT 0 MAXLEN 2", "[:5]"),
    ("LPOS q c MAXLEN 2", "nil"), ("LPOS q c MAXLEN 0", ":2"), ("LPOS q z COUNT 1", "[]"),
    ("LPOS q a rank 2 count 1 maxlen 0", "[:3]"), ("LPOS q a RANK 3 RANK 1", ":0"),
    ("LPOS q a COUNT 1 COUNT 0", "[:0 :3 :5]"),
    ("LPOS q a RANK 0", RANK0), ("LPOS nokey a RANK 0", RANK0), ("LPOS q a RANK x", NOT_INT),
    ("LPOS q a RANK 9223372036854775808", NOT_INT), ("LPOS q a COUNT -1", COUNT_NEG),
    ("LPOS q a COUNT x", COUNT_NEG), ("LPOS q a COUNT 9223372036854775808", COUNT_NEG),
    ("LPOS q a MAXLEN -1", MAXLEN_NEG), ("LPOS q a MAXLEN x", MAXLEN_NEG),
    ("LPOS q a FOO 1", SYNTAX), ("LPOS q a RANK", SYNTAX), ("LPOS q a COUNT 1 MAXLEN", SYNTAX),
    ("LPOS q a b", SYNTAX), ("LPOS q a RANK 0 COUNT -1", RANK0),
    ("LPOS q a COUNT -1 RANK 0", COUNT_NEG),
    // LMOVE and RPOPLPUSH onto the same key rotate it (a one-element list stays as it is).
    ("RPUSH m a b c d", ":4"), ("LMOVE m m LEFT RIGHT", "$a"), ("LRANGE m 0 -1", "[b c d a]"),
    ("LMOVE m m RIGHT LEFT", "$a"), ("LMOVE m m left left", "$a"), ("LMOVE m m RIGHT RIGHT", "$d"),
    ("LRANGE m 0 -1", "[a b c d]"), ("RPOPLPUSH m m", "$d"), ("LRANGE m 0 -1", "[d a b c]"),
    ("RPUSH one x", ":1"), ("LMOVE one one LEFT RIGHT", "$x"), ("RPOPLPUSH one one", "$x"),
    ("LMOVE one one RIGHT LEFT", "$x"), ("LRANGE one 0 -1", "[x]"),
    // … onto a key of the same shard (a shared hash tag) …
    ("RPUSH {t}s a b c", ":3"), ("LMOVE {t}s {t}d LEFT RIGHT", "$a"),
    ("LMOVE {t}s {t}d RIGHT LEFT", "$c"), ("LRANGE {t}d 0 -1", "[c a]"),
    ("RPOPLPUSH {t}s {t}d", "$b"), ("EXISTS {t}s", ":0"), ("LRANGE {t}d 0 -1", "[b c a]"),
    // … and across shards (see `keys_span_shards`); an emptied source is deleted.
    ("LMOVE {t}d md LEFT LEFT", "$b"), ("RPOPLPUSH {t}d md", "$a"),
    ("LMOVE md {t}d RIGHT RIGHT", "$b"), ("LRANGE md 0 -1", "[a]"), ("LRANGE {t}d 0 -1", "[c b]"),
    ("RPOPLPUSH md m", "$a"), ("EXISTS md", ":0"), ("LRANGE m 0 -1", "[a d a b c]"),
    ("LMOVE m md RIGHT LEFT", "$c"), ("LMOVE md m LEFT RIGHT", "$c"), ("EXISTS md", ":0"),
    // The direction words are read first; a missing source answers nil before the
    // destination's type is looked at, an existing one is left alone when that type is wrong.
    ("LMOVE m d UP LEFT", SYNTAX), ("LMOVE m d LEFT DOWN", SYNTAX),
    ("LMOVE nokey d UP LEFT", SYNTAX), ("SET str v", "+OK"), ("SADD set m", ":1"),
    ("HSET hash f v", ":1"), ("LMOVE nokey str LEFT LEFT", "nil"),
    ("RPOPLPUSH nokey hash", "nil"), ("LMOVE m str LEFT LEFT", WT),
    ("LMOVE m set RIGHT LEFT", WT), ("RPOPLPUSH m hash", WT), ("LMOVE str m LEFT LEFT", WT),
    ("LMOVE set nokey LEFT LEFT", WT), ("RPOPLPUSH hash m", WT), ("RPOPLPUSH str str", WT),
    ("LRANGE m 0 -1", "[a d a b c]"), ("EXISTS nokey", ":0"), ("GET str", "$v"),
    // LMPOP pops from the first non-empty list of its keys: [key [elements…]].
    ("RPUSH ma 1 2 3", ":3"), ("RPUSH mb x y", ":2"), ("LMPOP 2 nokey ma LEFT", "[ma [1]]"),
    ("LMPOP 2 ma mb RIGHT COUNT 5", "[ma [3 2]]"), ("EXISTS ma", ":0"),
    ("LMPOP 3 nokey ma mb left count 1", "[mb [x]]"), ("LMPOP 1 mb right", "[mb [y]]"),
    ("EXISTS mb", ":0"), ("LMPOP 2 ma mb LEFT", "*-1"),
    ("LMPOP 1 ma LEFT COUNT 9223372036854775807", "*-1"), ("RPUSH {t}x 1 2", ":2"),
    ("LMPOP 3 {t}no {t}y {t}x RIGHT COUNT 1", "[{t}x [2]]"),
    ("LMPOP 2 md {t}x LEFT COUNT 2", "[{t}x [1]]"), ("EXISTS {t}x", ":0"),
    ("LMPOP 0 ma LEFT", NUMKEYS), ("LMPOP -1 ma LEFT", NUMKEYS), ("LMPOP x ma LEFT", NUMKEYS),
    ("LMPOP 9223372036854775808 ma LEFT", NUMKEYS), ("LMPOP 3 ma LEFT", SYNTAX),
    ("LMPOP 2 ma LEFT", SYNTAX), ("LMPOP 1 ma MIDDLE", SYNTAX), ("LMPOP 1 ma mb", SYNTAX),
    ("LMPOP 1 ma LEFT COUNT 0", COUNT_GT0), ("LMPOP 1 ma LEFT COUNT -1", COUNT_GT0),
    ("LMPOP 1 ma LEFT COUNT x", COUNT_GT0), ("LMPOP 1 nokey LEFT COUNT 0", COUNT_GT0),
    ("LMPOP 1 ma LEFT COUNT", SYNTAX), ("LMPOP 1 ma LEFT COUNT 1 COUNT 2", SYNTAX),
    ("LMPOP 1 ma LEFT FOO", SYNTAX), ("LMPOP 1 ma LEFT COUNT 1 x", SYNTAX),
    // A key of another type stops LMPOP only when no list comes before it.
    ("RPUSH mc 1", ":1"), ("LMPOP 1 str LEFT", WT), ("LMPOP 2 str mc LEFT", WT),
    ("LMPOP 2 nokey set RIGHT", WT), ("LMPOP 3 nokey mc hash LEFT", "[mc [1]]"),
    ("LMPOP 2 hash nokey LEFT COUNT 3", WT), ("EXISTS mc", ":0"),
    // Elements are bytes: integer-looking ones come back exactly as they went in, and match
    // only their own spelling.
    ("RPUSH n 007 -0 12 +12 9223372036854775807 -9223372036854775808", ":6"),
    ("RPUSH n 9223372036854775808 -9223372036854775809 18446744073709551616 1.5", ":10"),
    (r#"RPUSH n "" 0 -1 12 \x201 1\x20"#, ":16"),
    ("LRANGE n 0 5", "[007 -0 12 +12 9223372036854775807 -9223372036854775808]"),
    ("LRANGE n 6 9", "[9223372036854775808 -9223372036854775809 18446744073709551616 1.5]"),
    ("LRANGE n 10 -1", r#"["" 0 -1 12 \x201 1\x20]"#),
    ("LPOS n 12 COUNT 0", "[:2 :13]"), ("LPOS n 012", "nil"), ("LPOS n +12", ":3"),
    ("LPOS n -0", ":1"), ("LPOS n 0", ":11"), ("LPOS n 7", "nil"), ("LPOS n 1", "nil"),
    (r#"LPOS n """#, ":10"), ("LPOS n 9223372036854775808", ":6"),
    ("LREM n 0 12", ":2"), ("LINSERT n BEFORE -0 0", ":15"), ("LINSERT n AFTER 0 x", ":16"),
    ("LINSERT n AFTER 9223372036854775807 00", ":17"), ("LSET n 0 -5", "+OK"),
    ("LSET n -1 -0.0", "+OK"), ("LINDEX n 0", "$-5"), ("LINDEX n 1", "$0"), ("LINDEX n 2", "$x"),
    ("LRANGE n 3 7", "[-0 +12 9223372036854775807 00 -9223372036854775808]"),
    ("LINDEX n -1", "$-0.0"), ("LREM n 1 0", ":1"), ("LPOS n 0", ":12"), ("LREM n 0 -0", ":1"),
    ("LMOVE n n RIGHT LEFT", "$-0.0"), ("LPOP n 3", "[-0.0 -5 x]"),
    ("RPOP n 4", r#"[\x201 -1 0 ""]"#), ("LLEN n", ":8"),
    (r#"RPUSH e """#, ":1"), ("LLEN e", ":1"), ("LRANGE e 0 -1", r#"[""]"#), (r#"LPOS e """#, ":0"),
    (r#"LPOP e"#, r#"$"""#), ("EXISTS e", ":0"),
    (r"RPUSH b \x00\xff\x0d\x0a x\x20y", ":2"), (r"LINDEX b 0", r"$\x00\xff\x0d\x0a"),
    (r"LPOS b \x00\xff\x0d\x0a", ":0"), ("LPOS b x", "nil"),
    // Long elements: over 64 bytes, and over 8 KB (which takes a quicklist node of its own).
    ("RPUSH big 64*a 65*a 9000*b c", ":4"), ("LINDEX big 2", "$9000*b"),
    ("LRANGE big 0 -1", "[64*a 65*a 9000*b c]"), ("LPOS big 9000*b", ":2"),
    ("LPOS big 8999*b", "nil"),
    ("LINSERT big BEFORE c 8200*d", ":5"), ("LINSERT big AFTER 64*a 8193*e", ":6"),
    ("LSET big 0 9001*f", "+OK"), ("LSET big 2 x", "+OK"),
    ("LRANGE big 0 -1", "[9001*f 8193*e x 9000*b 8200*d c]"), ("LREM big 0 9000*b", ":1"),
    ("LRANGE big 1 -2", "[8193*e x 8200*d]"), ("LMOVE big big LEFT RIGHT", "$9001*f"),
    ("LMOVE big big2 RIGHT LEFT", "$9001*f"), ("LPOP big2", "$9001*f"),
    ("LTRIM big 1 -1", "+OK"), ("LPOP big 2", "[x 8200*d]"), ("RPOP big", "$c"),
    ("EXISTS big", ":0"),
    ("LPUSH big 9000*g 9000*h", ":2"), ("LINSERT big AFTER 9000*h i", ":3"),
    ("LRANGE big 0 -1", "[9000*h i 9000*g]"), ("LTRIM big 1 1", "+OK"), ("LRANGE big 0 -1", "[i]"),
    // Names of commands are case-insensitive, elements and keys are not.
    ("rpush L A", ":1"), ("LLEN l", ":14"), ("LLEN L", ":1"), ("lpos L a", "nil"),
    ("lpos L A", ":0"),
    // WRONGTYPE against a string, a set and a hash, and other types' commands on a list.
    ("LPUSH str a", WT), ("RPUSH set a", WT), ("LPUSHX hash a", WT), ("RPUSHX str a", WT),
    ("LPOP str", WT), ("RPOP set", WT), ("LPOP hash 2", WT), ("RPOP str 0", WT),
    ("LPOP str -1", POSITIVE), ("LLEN str", WT), ("LLEN set", WT), ("LLEN hash", WT),
    ("LRANGE hash 0 -1", WT), ("LRANGE str x 0", NOT_INT), ("LINDEX set 0", WT),
    ("LINDEX str x", WT), ("LSET hash 0 a", WT), ("LSET str x a", WT),
    ("LINSERT set BEFORE a b", WT), ("LINSERT str MIDDLE a b", SYNTAX), ("LREM hash 0 a", WT),
    ("LREM str x a", NOT_INT), ("LTRIM set 0 1", WT), ("LTRIM str x 1", NOT_INT),
    ("LPOS hash a", WT), ("LPOS str a RANK 0", RANK0), ("LPOS set a COUNT 0", WT),
    ("GET l", WT), ("APPEND l x", WT), ("INCR l", WT), ("STRLEN l", WT), ("SADD l m", WT),
    ("SMEMBERS l", WT), ("SCARD l", WT), ("HSET l f v", WT), ("HGETALL l", WT), ("HLEN l", WT),
    ("TYPE str", "+string"), ("TYPE set", "+set"), ("TYPE hash", "+hash"), ("TYPE l", "+list"),
    ("SET l v", "+OK"), ("TYPE l", "+string"), ("DEL l str set hash nokey", ":4"),
    ("EXISTS l str set hash", ":0"),
];

/// Lists as values of the keyspace commands: moved and copied whole, across shards too.
#[rustfmt::skip]
const KEYSPACE: &[(&str, &str)] = &[
    ("RPUSH kl a 12 9000*x 70*y", ":4"), ("COPY kl kl2", ":1"),
    ("LRANGE kl2 0 -1", "[a 12 9000*x 70*y]"), ("OBJECT ENCODING kl2", "$quicklist"),
    ("RPUSH kl2 b", ":5"), ("LLEN kl", ":4"), ("COPY kl {t}kl", ":1"), ("COPY kl kl2", ":0"),
    ("COPY kl kl2 REPLACE", ":1"), ("LLEN kl2", ":4"), ("RENAME kl kl3", "+OK"),
    ("EXISTS kl", ":0"), ("LRANGE kl3 0 -1", "[a 12 9000*x 70*y]"), ("RENAMENX kl3 kl2", ":0"),
    ("RENAME kl3 {t}kl3", "+OK"), ("LPOP {t}kl3", "$a"), ("MOVE {t}kl3 1", ":1"),
    ("SELECT 1", "+OK"), ("LRANGE {t}kl3 0 -1", "[12 9000*x 70*y]"), ("TYPE {t}kl3", "+list"),
    ("SELECT 0", "+OK"), ("EXPIRE kl2 100", ":1"), ("LPUSH kl2 z", ":5"), ("PERSIST kl2", ":1"),
    ("PERSIST kl2", ":0"), ("PEXPIREAT kl2 1", ":1"), ("EXISTS kl2", ":0"), ("LLEN kl2", ":0"),
    ("SET s v", "+OK"), ("COPY {t}kl s REPLACE", ":1"), ("TYPE s", "+list"),
    ("RPOPLPUSH s s", "$70*y"), ("LINDEX s 0", "$70*y"), ("UNLINK s {t}kl", ":2"), ("DBSIZE", ":0"),
];

/// Node sizes: percore starts with [`NODES_4`], Redis is given it by CONFIG SET; both then
/// take other sizes by CONFIG SET (any int is accepted) while their lists keep working.
#[rustfmt::skip]
const NODE_SIZES: &[(&str, &str)] = &[
    ("CONFIG GET list-max-listpack-size", "[list-max-listpack-size 4]"),
    ("CONFIG GET list-max-ziplist-size", "[list-max-ziplist-size 4]"),
    ("RPUSH c 1 2 3 4 5 6 7 8 9", ":9"), ("OBJECT ENCODING c", "$quicklist"),
    ("LINSERT c BEFORE 5 x", ":10"), ("LSET c 2 70*y", "+OK"), ("LREM c 0 4", ":1"),
    ("LRANGE c 0 -1", "[1 2 70*y x 5 6 7 8 9]"),
    ("CONFIG SET list-max-listpack-size 1", "+OK"),
    ("CONFIG GET list-max-ziplist-size", "[list-max-ziplist-size 1]"),
    ("RPUSH d a b c", ":3"), ("LINSERT d AFTER b y", ":4"), ("LREM d 0 b", ":1"),
    ("LRANGE d 0 -1", "[a y c]"), ("LINSERT c AFTER 8 z", ":10"), ("LTRIM c 2 -3", "+OK"),
    ("LRANGE c 0 -1", "[70*y x 5 6 7 8]"),
    ("CONFIG SET list-max-ziplist-size -1", "+OK"),
    ("CONFIG GET list-max-listpack-size", "[list-max-listpack-size -1]"),
    ("RPUSH e 3000*e 3000*f g", ":3"), ("LINSERT e BEFORE 3000*f 3000*x", ":4"),
    ("LSET e 3 5000*g", "+OK"), ("LRANGE e 0 -1", "[3000*e 3000*x 3000*f 5000*g]"),
    ("RPUSH d 5000*d", ":4"), ("LRANGE d 0 -1", "[a y c 5000*d]"),
    ("CONFIG SET list-max-listpack-size 0", "+OK"), ("RPUSH f 1 2 3", ":3"),
    ("LINSERT f AFTER 1 x", ":4"), ("LRANGE f 0 -1", "[1 x 2 3]"),
    ("CONFIG SET list-max-listpack-size -6", "+OK"), ("RPUSH g 1 2 3", ":3"),
    ("LINSERT g BEFORE 3 x", ":4"), ("LRANGE g 0 -1", "[1 2 x 3]"),
    ("CONFIG SET list-max-listpack-size -5", "+OK"), ("RPUSH h 9000*h 1 2", ":3"),
    ("LINSERT h BEFORE 1 x", ":4"), ("LRANGE h 0 -1", "[9000*h x 1 2]"),
    ("CONFIG SET list-max-listpack-size -2147483648", "+OK"), ("RPUSH i 1 2 3", ":3"),
    ("LREM i 0 2", ":1"), ("LRANGE i 0 -1", "[1 3]"),
    ("CONFIG SET list-max-listpack-size 2147483647", "+OK"), ("RPUSH i 4 5", ":4"),
    ("LINSERT i AFTER 1 x", ":5"), ("LRANGE i 0 -1", "[1 x 3 4 5]"),
    ("CONFIG SET list-max-listpack-size x", CONFIG_NOT_INT),
    ("CONFIG SET list-max-listpack-size 1.5", CONFIG_NOT_INT),
    ("CONFIG SET list-max-listpack-size 2147483648", CONFIG_RANGE),
    ("CONFIG SET list-max-listpack-size -2147483649", CONFIG_RANGE),
    ("CONFIG GET list-max-listpack-size", "[list-max-listpack-size 2147483647]"),
    ("CONFIG SET list-max-listpack-size 4", "+OK"),
    ("LRANGE c 0 -1", "[70*y x 5 6 7 8]"), ("LRANGE d 0 -1", "[a y c 5000*d]"),
    ("LRANGE e 0 -1", "[3000*e 3000*x 3000*f 5000*g]"), ("LRANGE h 0 -1", "[9000*h x 1 2]"),
    ("DEL c d e f g h i", ":7"),
];

/// Four-element nodes: percore takes the size as a flag, Redis by CONFIG SET.
const NODES_4: &[&str] = &["--list-max-listpack-size", "4"];
/// One element per node: every insertion in the middle splits, every removal merges.
const NODES_1: &[&str] = &["--list-max-listpack-size", "1"];
/// Nodes of at most 4 KB (a negative size bounds bytes).
const NODES_4KB: &[&str] = &["--list-max-listpack-size", "-1"];

/// A table line's arguments: split on spaces; `""` is an empty one, `\xHH` one byte, and
/// `N*c` (a count and one character) that character N times, for long elements.
fn argv(line: &str) -> Vec<Vec<u8>> {
    line.split(' ').map(word).collect()
}

fn word(w: &str) -> Vec<u8> {
    if let Some((n, [c])) = w.split_once('*').map(|(n, c)| (n, c.as_bytes())) {
        if let Ok(n) = n.parse::<usize>() {
            return vec![*c; n];
        }
    }
    let (mut out, mut rest) = (Vec::new(), w.replace(r#""""#, "").into_bytes());
    while !rest.is_empty() {
        if rest.starts_with(br"\x") && rest.len() >= 4 {
            let hex = std::str::from_utf8(&rest[2..4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            rest.drain(..4);
        } else {
            out.push(rest.remove(0));
        }
    }
    out
}

/// Redis's RESP2 reply in the tables' shorthand: `nil`, `$word` (a bulk string), `[…]` (an
/// array of words as bulk strings, `:n` an integer, `nil` a null, `[…]` a nested array),
/// [`ARITY`] for `line`'s arity error, or an integer, status, error or `*-1` line as it is.
fn expected(line: &str, e: &str) -> Vec<u8> {
    if e == ARITY {
        let name = line.split(' ').next().unwrap().to_lowercase();
        return format!("-ERR wrong number of arguments for '{name}' command\r\n").into_bytes();
    }
    if e.starts_with('[') {
        let spaced = e.replace('[', " [ ").replace(']', " ] ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        let mut at = 0;
        let out = item(&tokens, &mut at);
        assert_eq!(at, tokens.len(), "`{e}`: unbalanced brackets");
        return out;
    }
    match e.strip_prefix('$') {
        Some(w) => bulk(&word(w)),
        None if e == "nil" => b"$-1\r\n".to_vec(),
        None => format!("{e}\r\n").into_bytes(),
    }
}

/// The shorthand's item at `tokens[*at]`, an array up to its `]` when it is `[`.
fn item(tokens: &[&str], at: &mut usize) -> Vec<u8> {
    let w = tokens[*at];
    *at += 1;
    match w {
        "[" => {
            let (mut body, mut n) = (Vec::new(), 0);
            while tokens[*at] != "]" {
                body.extend(item(tokens, at));
                n += 1;
            }
            *at += 1;
            [format!("*{n}\r\n").into_bytes(), body].concat()
        }
        "nil" => b"$-1\r\n".to_vec(),
        _ if w.starts_with(':') => format!("{w}\r\n").into_bytes(),
        _ => bulk(&word(w)),
    }
}

fn bulk(w: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", w.len()).as_bytes(), w, b"\r\n"].concat()
}

/// A reply for a failure message, cut short when long elements make it huge.
fn esc_short(b: &[u8]) -> String {
    let e = esc(b);
    match e.char_indices().nth(3000) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", &e[..cut], b.len()),
        None => e,
    }
}

/// The keys a command may write (whose OBJECT ENCODING and LLEN are then compared).
fn written(args: &[Vec<u8>]) -> &[Vec<u8>] {
    let name = args[0].to_ascii_uppercase();
    let range = match &name[..] {
        b"LMOVE" | b"RPOPLPUSH" => 1..3,
        b"LMPOP" => {
            let numkeys = args
                .get(1)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok());
            2..2 + numkeys.unwrap_or(0).min(args.len().saturating_sub(2))
        }
        b"DEL" | b"UNLINK" => 1..args.len(),
        b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" | b"LPOP" | b"RPOP" | b"LSET" | b"LINSERT"
        | b"LREM" | b"LTRIM" | b"SET" | b"APPEND" | b"SADD" | b"HSET" => 1..2,
        _ => 0..0,
    };
    args.get(range).unwrap_or_default()
}

/// Redis and percore (see [`Diff`]), and how many commands a run has sent them.
struct Pair {
    d: Diff,
    step: usize,
}

impl Pair {
    fn fail(&self, cmd: &str, [w, g]: [&[u8]; 2], why: &str) -> ! {
        let why = format!("step {}: {why} for `{cmd}`", self.step);
        self.d.fail(w, g, &why)
    }

    /// Sends `args` to both servers; their replies must be equal. Returns Redis's.
    fn check(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let [w, g] = self.d.both(args);
        if w != g {
            self.fail(&show(args), [&w, &g], "replies differ");
        }
        w
    }

    /// One command to both servers, then OBJECT ENCODING and LLEN of every key it may have
    /// written; Redis's reply to the command.
    fn send(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        self.step += 1;
        let want = self.check(args);
        for key in written(args) {
            for probe in [&["OBJECT", "ENCODING"][..], &["LLEN"]] {
                let mut a: Vec<Vec<u8>> = probe.iter().map(|w| w.as_bytes().to_vec()).collect();
                a.push(key.clone());
                self.check(&a);
            }
        }
        want
    }

    /// LRANGE `key` 0 -1.
    fn compare_list(&mut self, key: &[u8]) {
        self.send(&[b"LRANGE", key, b"0", b"-1"].map(<[u8]>::to_vec));
    }

    /// LRANGE 0 -1 of each of `keys` (separated by spaces).
    fn compare_lists(&mut self, keys: &str) {
        for key in keys.split(' ') {
            self.compare_list(key.as_bytes());
        }
    }

    /// Runs a table; with `check` (RESP2), Redis's replies must also be the table's.
    fn table(&mut self, rows: &[(&str, &str)], check: bool) {
        for &(line, expect) in rows {
            let got = self.send(&argv(line));
            let e = expected(line, expect);
            if check && !expect.is_empty() && got != e {
                let (redis, table) = (esc_short(&got), esc_short(&e));
                panic!(
                    "{}: `{line}`: Redis 7.0 answers {redis}, not {table} as the table says",
                    self.d.what
                );
            }
        }
    }
}

/// Runs `f` on a fresh pair of connections to emptied servers for each percore, protocol
/// (the flag: RESP3) and seed (one run, seed 0 unnamed, when there are none).
fn each_pair(what: &str, flags: &[&str], seeds: &[u64], mut f: impl FnMut(&mut Pair, bool, u64)) {
    let what = format!("list differential tests, {what}");
    each_differential_run(&what, flags, seeds, |redis, percore, resp3, seed, label| {
        let d = Diff::new(redis, percore, resp3, label);
        f(&mut Pair { d, step: 0 }, resp3, seed)
    });
}

#[test]
fn list_commands_match_redis() {
    each_pair("table", &[], &[], |p, resp3, _| p.table(TABLE, !resp3));
}

#[test]
fn lists_as_keyspace_values_match_redis() {
    each_pair("keyspace", &[], &[], |p, resp3, _| {
        p.table(KEYSPACE, !resp3)
    });
}

#[test]
fn list_node_size_setting_matches_redis() {
    each_pair("node sizes", NODES_4, &[], |p, resp3, _| {
        p.table(NODE_SIZES, !resp3)
    });
}

/// The list keys of the random streams: plain names, and two sharing a hash tag.
const LIST_KEYS: &str = "l1 l2 l4 {t}a {t}b";
/// Keys that `SET`, `SADD` and `HSET` give another type now and then.
const OTHER_KEYS: &str = "str set hash";

/// With three shards, the key pairs that the tables move elements or lists between (LMOVE,
/// RPOPLPUSH, LMPOP, COPY, RENAME) lie on one shard or on two as their comments say, and the
/// streams' plain list keys lie on three.
#[test]
fn keys_span_shards() {
    let on = |k: &str| common::shard_of(k.as_bytes(), 3) as u64;
    for (a, b) in [
        ("{t}s", "{t}d"),
        ("{t}a", "{t}b"),
        ("{t}x", "{t}y"),
        ("kl", "kl3"),
    ] {
        assert_eq!(on(a), on(b), "{a} and {b} share a shard");
    }
    let apart = [
        ("{t}d", "md"),
        ("big", "big2"),
        ("md", "{t}x"),
        ("kl", "kl2"),
        ("{t}kl", "s"),
    ];
    for (a, b) in apart {
        assert_ne!(on(a), on(b), "{a} and {b} lie on different shards");
    }
    let plain: BTreeSet<u64> = ["l1", "l2", "l4"].map(on).into();
    assert_eq!(plain.len(), 3, "l1, l2 and l4 lie on three shards");
}

/// Long lists edited in the middle under several node sizes: LSET, LINSERT, LREM, LTRIM,
/// LPOS, pops and moves on lists of a few hundred elements (integers, words, and elements of
/// 70 bytes and of 9000 bytes), the whole lists compared after every edit.
#[test]
fn long_lists_edited_in_the_middle_match_redis() {
    for flags in [&[][..], NODES_4, NODES_1, NODES_4KB] {
        let what = match flags {
            [] => "long lists, default nodes".to_string(),
            _ => format!("long lists, {}", flags.join(" ")),
        };
        each_pair(&what, flags, &[], |p, _, _| edit_long_lists(p));
    }
}

/// LSET positions in the 300-element list (the last two out of range), and the values set.
#[rustfmt::skip]
const LONG_SETS: &[(i64, &str)] = &[
    (0, "s0"), (1, "70*s"), (3, "9000*S"), (4, "4"), (5, "s5"), (8, "-8"), (149, "s149"),
    (150, "9000*T"), (151, "70*t"), (297, "s297"), (298, "dup"), (299, "s299"), (-1, "e1"),
    (-4, "9000*U"), (-5, "e5"), (-150, "e150"), (300, "out"), (-301, "out"),
];
/// LINSERT pivots: near either end, in the middle, repeated, long, set by LSET, missing.
const PIVOTS: &str = "0 w1 148 dup s297 9000*h 70*l 9000*T nomatch";
#[rustfmt::skip]
const LONG_PROBES: &[&str] = &[
    "LPOS long dup COUNT 0", "LPOS long dup RANK -2 COUNT 3", "LPOS long dup RANK 5 MAXLEN 100",
    "LPOS long 100*a COUNT 0", "LPOS long2 70*a RANK -1", "LPOS long 70*l COUNT 2 MAXLEN 200",
];
/// Edits after the scattered removals, down to an emptied `long`.
#[rustfmt::skip]
const LONG_EDITS: &[&str] = &[
    "LREM long 2 dup", "LREM long -3 dup", "LREM long 0 100*a", "LREM long 1 70*l",
    "LREM long2 0 70*a", "LREM long2 0 dup", "LTRIM long 3 -4", "LTRIM long2 10 150",
    "LINSERT long BEFORE 100 9000*m", "LTRIM long -120 -10", "LMOVE long long RIGHT LEFT",
    "LMOVE long long2 LEFT RIGHT", "RPOPLPUSH long2 long", "LPOP long 7", "RPOP long2 13",
    "LMPOP 2 long long2 RIGHT COUNT 40", "LMPOP 2 nokey long2 LEFT COUNT 5",
    "LSET long 50 9000*n", "LSET long 50 x", "LINSERT long AFTER x 9000*o",
    "LRANGE long 40 60", "LTRIM long 1 0",
];

fn edit_long_lists(p: &mut Pair) {
    let element = |i: usize| match i {
        _ if i % 101 == 50 => "9000*h".to_string(),
        _ if i % 37 == 5 => "70*l".to_string(),
        _ if i % 7 == 3 => "dup".to_string(),
        _ if i.is_multiple_of(2) => i.to_string(),
        _ => format!("w{i}"),
    };
    let elements: Vec<String> = (0..300).map(element).collect();
    for chunk in elements.chunks(100) {
        p.send(&argv(&format!("RPUSH long {}", chunk.join(" "))));
        p.send(&argv(&format!("LPUSH long2 {}", chunk.join(" "))));
    }
    // An edit, then the whole of every list it may have changed.
    let edit = |p: &mut Pair, line: &str| {
        let args = argv(line);
        p.send(&args);
        for key in written(&args) {
            p.compare_list(key);
        }
    };
    for (i, v) in LONG_SETS {
        edit(p, &format!("LSET long {i} {v}"));
    }
    for pivot in PIVOTS.split(' ') {
        edit(p, &format!("LINSERT long BEFORE {pivot} b{pivot}"));
        edit(p, &format!("LINSERT long AFTER {pivot} 100*a"));
        edit(p, &format!("LINSERT long2 after {pivot} 70*a"));
    }
    for probe in LONG_PROBES {
        p.send(&argv(probe));
    }
    for i in [
        0, 1, 2, 99, 100, 101, 150, 200, 250, 299, 300, 320, -1, -2, -150, -320, -321,
    ] {
        p.send(&argv(&format!("LINDEX long {i}")));
        p.send(&argv(&format!("LRANGE long {i} {}", i + 7)));
    }
    // Scattered removals empty some nodes and leave others underfull.
    for i in (1..300).step_by(3) {
        p.send(&argv(&format!("LREM long 0 w{i}")));
        p.send(&argv(&format!("LREM long2 -1 {}", element(i))));
    }
    p.compare_lists("long long2");
    for line in LONG_EDITS {
        edit(p, line);
    }
    // Counted pops from alternating ends, then the rest at once.
    for i in 0..40 {
        let side = ["LEFT", "RIGHT"][i % 2];
        edit(p, &format!("LMPOP 1 long2 {side} COUNT {}", 1 + i % 3));
    }
    edit(p, "RPOP long2 1000");
    p.send(&argv("EXISTS long long2"));
}

/// One word of `list` (see [`argv`]), drawn by `r`.
fn draw(r: &mut Rng, list: &str) -> Vec<u8> {
    word(r.pick_word(list))
}

/// Random commands: one of these templates (the more copies, the likelier), with each
/// one-letter word replaced by a random one of its kind (see [`gen`]).
const TEMPLATES: &str = "LPUSH K E|LPUSH K E E E|RPUSH K E|RPUSH K E E|LPUSH K B|RPUSH K B|\
    RPUSH K B|LPUSHX K E|RPUSHX K E E|LPOP K|RPOP K|LPOP K P|RPOP K P|LLEN K|LRANGE K I I|\
    LRANGE K 0 -1|LINDEX K I|LINDEX K I|LSET K I E|LSET K I E|LSET K I E|LINSERT K W E E|\
    LINSERT K W E E|LINSERT K W E E|LREM K R E|LREM K R E|LTRIM K S T|LPOS K E|\
    LPOS K E RANK Q|LPOS K E COUNT N|LPOS K E RANK Q COUNT N MAXLEN M|LMOVE K K D D|\
    LMOVE K K D D|RPOPLPUSH K K|LMPOP 1 K D|LMPOP 2 K K D COUNT C|LMPOP 3 K K K D|\
    LMPOP Z K D|TYPE K|EXISTS K|OBJECT ENCODING K|DEL K|SET str E|SADD set E|HSET hash f E|\
    DEL str set hash|LPOP K 1 2|LINSERT K|LMOVE K K";
/// Elements: words, integers (stored as such in a listpack) and what only looks like one.
const ELEMENTS: &str = concat!(
    r#"a b c a b 1 2 3 12 -1 0 007 -0 +5 1.5 "" x\x20y \x00\xff\x0d\x0a"#,
    " 9223372036854775807 -9223372036854775808 9223372036854775808 70*l"
);

/// One random command from [`TEMPLATES`].
fn gen(r: &mut Rng) -> Vec<Vec<u8>> {
    let mut c = Vec::new();
    for w in r.template(TEMPLATES) {
        match w {
            "K" if r.below(10) == 0 => c.push(draw(r, OTHER_KEYS)),
            "K" => c.push(draw(r, LIST_KEYS)),
            "E" if r.below(3) == 0 => c.push(draw(r, ELEMENTS)),
            "E" => c.push(r.below(20).to_string().into_bytes()),
            // A batch makes lists of a few hundred, with now and then an element of 9000
            // bytes (a node of its own).
            "B" => c.extend((0..20 + r.below(100)).map(|_| match r.below(150) {
                0 => word("9000*h"),
                1..=50 => draw(r, ELEMENTS),
                _ => r.below(500).to_string().into_bytes(),
            })),
            "I" => c.push(draw(r, "0 1 2 -1 -2 5 10 50 100 200 -50 -100 -300 400 x")),
            "S" => c.push(draw(r, "0 0 1 2 3 -250 -400")),
            "T" => c.push(draw(r, "-1 -1 -2 -3 250 150 400")),
            "P" => c.push(draw(r, "0 1 2 3 10 50 -1 x")),
            "C" => c.push(draw(r, "1 2 5 100 0")),
            "R" => c.push(draw(r, "0 1 2 -1 -2 5 -5 x")),
            "Q" => c.push(draw(r, "1 2 3 -1 -2 0 x")),
            "N" => c.push(draw(r, "0 1 2 5 -1")),
            "M" => c.push(draw(r, "0 1 10 100 -1")),
            "Z" => c.push(draw(r, "0 -1 x 4")),
            "D" => c.push(draw(r, "LEFT RIGHT left right")),
            "W" => c.push(draw(r, "BEFORE AFTER BEFORE AFTER after MIDDLE")),
            _ => c.push(w.as_bytes().to_vec()),
        }
    }
    c
}

/// Steps per stream, each one command plus OBJECT ENCODING and LLEN of what it wrote: with
/// the seeds below, this whole file takes about 85 s of a debug build on two busy cores.
const STEPS: usize = 1500;

fn random_streams(what: &str, flags: &[&str], seeds: &[u64]) {
    each_pair(what, flags, seeds, |p, _, seed| {
        let mut r = Rng(seed);
        for _ in 0..STEPS {
            p.send(&gen(&mut r));
        }
        p.compare_lists(&format!("{LIST_KEYS} {OTHER_KEYS}"));
    });
}

#[test]
fn random_list_streams_match_redis() {
    random_streams("random stream", &[], &[1, 7919]);
}

#[test]
fn random_list_streams_with_4_element_nodes_match_redis() {
    random_streams(
        "random stream, 4-element nodes",
        NODES_4,
        &[0x9E37_79B9_7F4A_7C15, 5],
    );
}

#[test]
fn random_list_streams_with_4_kb_nodes_match_redis() {
    random_streams("random stream, 4 KB nodes", NODES_4KB, &[31_337]);
}
