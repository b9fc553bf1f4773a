//! Differential tests of the geo commands (GEOADD … GEORADIUSBYMEMBER_RO): the same commands
//! go to a real `redis-server` (7.0, the spec) and to percore with 1 and with 3 shards, over
//! RESP2 and RESP3; replies must be identical byte for byte, reply order included (equal
//! distances and COUNT without ASC/DESC come out in the order Redis's algorithm yields).
//! After every command both servers must report the same OBJECT ENCODING for the key it
//! reads and, for the STORE forms, for the destination. Skipped with a loud message when
//! redis-server is absent; PERCORE_REQUIRE_REDIS=1 (CI) turns the skip into a failure.

mod common;

use common::{each_differential_run, esc, redis_or_skip, s, show, words, Diff, Rng, Server};

/// Every command, option and error string of Redis 7.0's geo commands, run in order.
#[rustfmt::skip]
const TABLE: &[&str] = &[
    // arity
    "GEOADD k 1 2", "GEOADD k", "GEODIST k a", "GEOHASH", "GEOPOS", "GEOSEARCH k FROMLONLAT 0 0 BYRADIUS 1",
    "GEOSEARCHSTORE d k FROMLONLAT 0 0 BYRADIUS 1", "GEORADIUS k 0 0 1", "GEORADIUS_RO k 0 0 1",
    "GEORADIUSBYMEMBER k m 1", "GEORADIUSBYMEMBER_RO k m 1",
    // missing keys
    "GEODIST nokey a b", "GEODIST nokey a b km", "GEOHASH nokey a b", "GEOPOS nokey a b", "GEOHASH nokey",
    "GEOPOS nokey", "GEOSEARCH nokey FROMLONLAT 0 0 BYRADIUS 1 m", "GEOSEARCH nokey FROMMEMBER x BYBOX 1 1 km",
    "GEOSEARCH nokey FROMMEMBER x BYRADIUS 1 m WITHDIST", "GEOSEARCH nokey FROMMEMBER x", "GEOSEARCH nokey BYRADIUS 1 m x",
    "GEORADIUS nokey 0 0 1 m", "GEORADIUS nokey 0 0 1 m STORE d", "GEORADIUSBYMEMBER nokey x 1 m",
    "GEORADIUSBYMEMBER nokey x notnum badunit", "GEORADIUSBYMEMBER nokey x 1 m STORE d", "GEORADIUSBYMEMBER_RO nokey x 1 m",
    "GEORADIUSBYMEMBER nokey x 1 m COUNT 0", "GEOSEARCHSTORE d nokey FROMMEMBER x BYRADIUS 1 m", "EXISTS d",
    // GEOADD options and errors
    "GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
    "GEOADD Sicily 13.361389 38.115556 Palermo", "GEOADD Sicily CH 13.361390 38.115556 Palermo",
    "GEOADD Sicily NX 1 1 Palermo 2 2 new", "GEOADD Sicily XX 3 3 new 4 4 newer", "GEOADD Sicily XX CH 13.361389 38.115556 Palermo",
    "GEOADD Sicily NX XX 1 1 a", "GEOADD Sicily CH NX XX 1 1 a", "GEOADD Sicily GT 1 1 a", "GEOADD Sicily LT CH 1 1 a",
    "GEOADD Sicily INCR 1 1 a", "GEOADD Sicily 1 1 a 2", "GEOADD Sicily 1 1 a 2 2", "GEOADD Sicily CH CH CH",
    "GEOADD Sicily NX NX", "GEOADD Sicily XX", "GEOADD Sicily x 1 a", "GEOADD Sicily 1 y a", "GEOADD Sicily 1 1 a x 1 b",
    "GEOADD Sicily 181 0 a", "GEOADD Sicily -180.000001 0 a", "GEOADD Sicily 0 85.05112879 a", "GEOADD Sicily 0 -85.06 a",
    "GEOADD Sicily inf 0 a", "GEOADD Sicily 0 -inf a", "GEOADD Sicily nan 0 a", "GEOADD Sicily 1e300 -1e-7 a",
    "GEOADD Sicily -0 -200 a", "GEOADD Sicily 1 1 ok 200 0 bad", "ZCARD Sicily", "GEOADD Sicily \"\" 0 a",
    "GEOADD Sicily 0x10 0 hex", "GEOADD Sicily 1e1 1E1 exp", "GEOADD Sicily 180 85.05112878 ne 180 -85.05112878 se",
    "GEOADD Sicily -180 85.05112878 nw -180 -85.05112878 sw 0 0 origin -0 -0 negzero", "GEOADD Sicily 0 0 \"\"",
    "ZRANGE Sicily 0 -1 WITHSCORES", "OBJECT ENCODING Sicily", "TYPE Sicily",
    // GEODIST
    "GEODIST Sicily Palermo Catania", "GEODIST Sicily Palermo Catania m", "GEODIST Sicily Palermo Catania KM",
    "GEODIST Sicily Palermo Catania ft", "GEODIST Sicily Palermo Catania Mi", "GEODIST Sicily Palermo Catania yd",
    "GEODIST Sicily Palermo Catania km x", "GEODIST Sicily Palermo nope", "GEODIST Sicily nope Palermo km",
    "GEODIST Sicily Palermo Palermo", "GEODIST Sicily ne sw", "GEODIST Sicily ne nw", "GEODIST Sicily ne se mi",
    "GEODIST Sicily origin negzero", "GEODIST Sicily exp hex km", "GEODIST nokey a b yd", "GEODIST nokey a b km x",
    // GEOHASH and GEOPOS
    "GEOHASH Sicily Palermo Catania nope", "GEOHASH Sicily ne nw se sw origin negzero hex exp \"\"",
    "GEOPOS Sicily Palermo Catania nope", "GEOPOS Sicily ne nw se sw origin negzero hex exp \"\"",
    "GEOHASH Sicily", "GEOPOS Sicily",
    // non-geo scores read as Redis reads them
    "ZADD weird -1 neg 1e20 big inf pinf -inf ninf 0.5 half 4503599627370496 two52 1e300 huge",
    "GEOPOS weird neg big pinf ninf half two52 huge", "GEOHASH weird neg big pinf ninf half two52 huge",
    "GEODIST weird neg big", "GEODIST weird pinf ninf km", "GEOSEARCH weird FROMMEMBER neg BYRADIUS 20000 km WITHHASH WITHCOORD",
    "GEOSEARCH weird FROMMEMBER half BYBOX 50000 50000 km ASC WITHDIST",
    // GEORADIUS and GEORADIUSBYMEMBER
    "GEORADIUS Sicily 15 37 200 km", "GEORADIUS Sicily 15 37 200 km WITHDIST", "GEORADIUS Sicily 15 37 200 km WITHCOORD",
    "GEORADIUS Sicily 15 37 200 km WITHHASH", "GEORADIUS Sicily 15 37 200 km WITHDIST WITHCOORD WITHHASH ASC",
    "GEORADIUS Sicily 15 37 200 km WITHDIST DESC", "GEORADIUS Sicily 15 37 200 km COUNT 1", "GEORADIUS Sicily 15 37 200 km COUNT 1 DESC",
    "GEORADIUS Sicily 15 37 200 km COUNT 1 ANY", "GEORADIUS Sicily 15 37 200 km ANY", "GEORADIUS Sicily 15 37 200 km ANY COUNT 5 WITHDIST",
    "GEORADIUS Sicily 15 37 200 km COUNT 0", "GEORADIUS Sicily 15 37 200 km COUNT -1", "GEORADIUS Sicily 15 37 200 km COUNT x",
    "GEORADIUS Sicily 15 37 200 km COUNT", "GEORADIUS Sicily 15 37 200 km COUNT 99999999999999999999",
    "GEORADIUS Sicily 15 37 200 km FOO", "GEORADIUS Sicily 15 37 200 km ASC DESC", "GEORADIUS Sicily 15 37 -1 km",
    "GEORADIUS Sicily 15 37 x km", "GEORADIUS Sicily 15 37 1 yd", "GEORADIUS Sicily 15 37 1 yd COUNT x", "GEORADIUS Sicily 200 37 1 km",
    "GEORADIUS Sicily x 37 1 km", "GEORADIUS Sicily 15 37 200 KM withdist WithCoord", "GEORADIUS Sicily 15 37 0 km",
    "GEORADIUS Sicily 13.361389 38.115556 0 m", "GEORADIUS Sicily 15 37 inf km", "GEORADIUS Sicily 15 37 1e300 km",
    "GEORADIUS Sicily 15 37 1e400 km", "GEORADIUS Sicily 15 37 \"\" km", "GEORADIUS Sicily 15 37 1e-400 km",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1e400 1 km", "GEOADD Sicily 1e-400 0 tiny", "GEOADD Sicily 0 1e400 big",
    "GEORADIUS Sicily 15 37 0x10 km", "GEORADIUS Sicily 15 37 1e1 km",     "GEORADIUS Sicily 15 37 20000 km", "GEORADIUS Sicily 15 37 20000 km ASC WITHDIST", "GEORADIUS Sicily 15 37 10000 mi DESC",
    "GEORADIUS Sicily 15 37 200 km FROMMEMBER Palermo", "GEORADIUS Sicily 15 37 200 km BYRADIUS 1 m", "GEORADIUS Sicily 15 37 200 km STOREDIST",
    "GEORADIUS Sicily 15 37 200 km STORE d WITHDIST", "GEORADIUS Sicily 15 37 200 km WITHHASH STOREDIST d",
    "GEORADIUS Sicily 15 37 200 km STORE d", "ZRANGE d 0 -1 WITHSCORES", "GEORADIUS Sicily 15 37 200 km STOREDIST d ASC",
    "ZRANGE d 0 -1 WITHSCORES", "GEORADIUS Sicily 15 37 200 km STORE d2 STOREDIST d COUNT 1", "ZRANGE d 0 -1 WITHSCORES",
    "EXISTS d2", "GEORADIUS Sicily 15 37 1 m STORE d", "EXISTS d", "GEORADIUS Sicily 15 37 200 km store x store d",
    "GEORADIUS Sicily 15 37 200 km STORE", "GEORADIUS_RO Sicily 15 37 200 km STORE d", "GEORADIUS_RO Sicily 15 37 200 km STOREDIST d",
    "GEORADIUS_RO Sicily 15 37 200 km WITHDIST ASC COUNT 2", "GEORADIUS_RO Sicily 15 37 200 km FOO",
    "GEORADIUSBYMEMBER Sicily Palermo 200 km WITHDIST", "GEORADIUSBYMEMBER Sicily Palermo 200 km ASC COUNT 1 WITHCOORD",
    "GEORADIUSBYMEMBER Sicily nope 200 km", "GEORADIUSBYMEMBER Sicily nope x km", "GEORADIUSBYMEMBER Sicily Palermo x km",
    "GEORADIUSBYMEMBER Sicily Palermo -1 km", "GEORADIUSBYMEMBER Sicily Palermo 1 lightyear", "GEORADIUSBYMEMBER Sicily Palermo 0 m",
    "GEORADIUSBYMEMBER Sicily Palermo 200 km STOREDIST d", "ZRANGE d 0 -1 WITHSCORES", "OBJECT ENCODING d",
    "GEORADIUSBYMEMBER_RO Sicily Palermo 200 km STORE d", "GEORADIUSBYMEMBER_RO Sicily Palermo 200 km DESC WITHHASH",
    "GEORADIUSBYMEMBER Sicily Palermo 200 km STORE x WITHCOORD",
    // GEOSEARCH and GEOSEARCHSTORE
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km ASC", "GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 200 km DESC WITHDIST",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 400 400 km ASC WITHCOORD WITHDIST WITHHASH",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 400 0 km", "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 0 0 km",
    "GEOSEARCH Sicily FROMMEMBER Palermo BYBOX 0 0 m WITHDIST", "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 200 200 km",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 1 m", "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 40000 40000 km ASC",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX -1 1 m", "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 -1 m",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX x 1 m", "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 x m",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX x y z", "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 1 yd",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 1", "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 1",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 1 m BYBOX 1 1 m", "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 1 m BYRADIUS 1 m",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 1 m BYRADIUS 300 km", "GEOSEARCH Sicily FROMMEMBER Palermo FROMLONLAT 15 37 BYRADIUS 1 m",
    "GEOSEARCH Sicily FROMLONLAT 15 37 FROMMEMBER Palermo BYRADIUS 1 m", "GEOSEARCH Sicily FROMMEMBER Palermo FROMMEMBER Catania BYRADIUS 1 m",
    "GEOSEARCH Sicily FROMMEMBER nope BYRADIUS 1 m", "GEOSEARCH Sicily FROMMEMBER nope BYRADIUS x m",
    "GEOSEARCH Sicily BYRADIUS x m FROMMEMBER nope", "GEOSEARCH Sicily FROMLONLAT 200 37 BYRADIUS 1 m",
    "GEOSEARCH Sicily FROMLONLAT x 37 BYRADIUS 1 m", "GEOSEARCH Sicily BYRADIUS 1 m WITHDIST COUNT 1",
    "geosearch Sicily BYRADIUS 1 m", "GeoSearch Sicily FROMLONLAT 1 1 WITHDIST", "GEOSEARCH Sicily FROMLONLAT 1 1 BYRADIUS 1 m ANY",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km COUNT 1 ANY", "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km STORE d",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST", "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km COUNT 0",
    "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km FROMLONLAT 1", "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km FROMMEMBER",
    "GEOSEARCHSTORE d Sicily FROMLONLAT 15 37 BYRADIUS 200 km", "ZRANGE d 0 -1 WITHSCORES",
    "GEOSEARCHSTORE d Sicily FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST", "ZRANGE d 0 -1 WITHSCORES",
    "GEOSEARCHSTORE d Sicily FROMLONLAT 15 37 BYBOX 400 400 km DESC COUNT 1 STOREDIST", "ZRANGE d 0 -1 WITHSCORES",
    "GEOSEARCHSTORE d Sicily FROMLONLAT 15 37 BYRADIUS 200 km WITHDIST", "GEOSEARCHSTORE d Sicily FROMLONLAT 15 37 BYRADIUS 200 km WITHCOORD",
    "GEOSEARCHSTORE d Sicily FROMLONLAT 15 37 BYRADIUS 200 km STORE x", "GEOSEARCHSTORE d Sicily FROMLONLAT 15 37 BYRADIUS 1 m",
    "EXISTS d", "GEOSEARCHSTORE Sicily Sicily FROMLONLAT 15 37 BYRADIUS 200 km", "ZRANGE Sicily 0 -1 WITHSCORES",
    "geosearchstore d Sicily BYRADIUS 1 m", "GEOSEARCHSTORE d Sicily FROMLONLAT 1 1 ANY",
    // wrong types
    "SET str x", "GEOADD str 1 1 a", "GEOADD str 200 1 a", "GEODIST str a b", "GEODIST str a b yd", "GEOHASH str a", "GEOPOS str a",
    "GEOSEARCH str FROMLONLAT 1 1 BYRADIUS 1 m", "GEOSEARCH str BYRADIUS x", "GEORADIUS str 200 1 1 m", "GEORADIUSBYMEMBER str a 1 m",
    "GEORADIUS_RO str 1 1 1 m", "GEOSEARCHSTORE d str FROMLONLAT 1 1 BYRADIUS 1 m", "GEOSEARCHSTORE str Sicily FROMLONLAT 15 37 BYRADIUS 200 km",
    "TYPE str", "GEOADD Sicily 15 37 center", "GEORADIUS Sicily 15 37 1 m STORE str", "TYPE str",
];

/// Points at the poles' limits, along the antimeridian and at one place under many names
/// (equal distances): the order and the cells scanned must be Redis's.
#[rustfmt::skip]
const EDGES: &[&str] = &[
    "GEOADD am 179.9999 0 e1 -179.9999 0 w1 179.5 0.5 e2 -179.5 -0.5 w2 180 0 e180 -180 0 w180 179.99 85 ne -179.99 -85 sw",
    "GEORADIUS am 180 0 100 km WITHDIST ASC", "GEORADIUS am -180 0 100 km WITHDIST DESC", "GEORADIUS am 179.9 0 100 km",
    "GEOSEARCH am FROMLONLAT 180 0 BYBOX 200 200 km ASC WITHCOORD", "GEOSEARCH am FROMLONLAT -180 0 BYBOX 200 200 km ASC WITHCOORD",
    "GEOSEARCH am FROMMEMBER e1 BYRADIUS 10 km WITHDIST", "GEODIST am e1 w1", "GEODIST am e180 w180", "GEOPOS am e180 w180 e1 w1",
    "GEOHASH am e180 w180 e1 w1 ne sw",
    "GEOADD pole 0 85.05112878 n0 90 85.05112878 n90 180 85.05112878 n180 -90 85.05 n-90 45 84.9 nn 0 -85.05112878 s0 -135 -85.05 s135",
    "GEORADIUS pole 0 85.05112878 500 km WITHDIST ASC", "GEORADIUS pole 0 85.05112878 20 km WITHDIST ASC", "GEORADIUS pole 90 85 1000 km ASC",
    "GEORADIUS pole 0 -85.05112878 1000 km WITHCOORD ASC", "GEOSEARCH pole FROMLONLAT 0 85 BYBOX 1000 100 km ASC WITHDIST",
    "GEOSEARCH pole FROMLONLAT 0 85 BYBOX 4000 400 km DESC", "GEOSEARCH pole FROMMEMBER n0 BYRADIUS 10000 km ASC COUNT 3",
    "GEOPOS pole n0 n90 n180 n-90 s0 s135", "GEOHASH pole n0 n90 n180 n-90 s0 s135", "GEODIST pole n0 n180", "GEODIST pole n0 s0 mi",
    // ties: nine names on one point, three on another
    "GEOADD tie 2 2 a 2 2 b 2 2 c 2 2 d 2 2 e 2 2 f 2 2 g 2 2 h 2 2 i 2.001 2 x 2.001 2 y 2.001 2 z 1.999 2 w",
    "GEORADIUS tie 2 2 1 km", "GEORADIUS tie 2 2 1 km ASC", "GEORADIUS tie 2 2 1 km DESC", "GEORADIUS tie 2 2 1 km COUNT 3",
    "GEORADIUS tie 2 2 1 km COUNT 3 DESC", "GEORADIUS tie 2 2 1 km COUNT 10 WITHDIST", "GEORADIUS tie 2 2 1 km COUNT 12 DESC",
    "GEORADIUS tie 2 2 1 km COUNT 2 ANY", "GEORADIUS tie 2 2 1 km COUNT 2 ANY DESC", "GEORADIUS tie 2.001 2 1 km COUNT 4",
    "GEOSEARCH tie FROMLONLAT 2.0005 2 BYBOX 1 1 km COUNT 5", "GEOSEARCH tie FROMLONLAT 2.0005 2 BYBOX 1 1 km COUNT 5 DESC",
    "GEOSEARCH tie FROMLONLAT 2 2 BYRADIUS 0 m", "GEOSEARCH tie FROMLONLAT 2 2 BYBOX 0 0 m", "GEOSEARCHSTORE tie2 tie FROMLONLAT 2 2 BYRADIUS 1 km COUNT 4 DESC STOREDIST",
    "ZRANGE tie2 0 -1 WITHSCORES",
    // around (0, 0), where cells of every step meet: the unsorted order shows the cell order
    "GEOADD quad 0.001 0.001 ne 0.001 -0.001 se -0.001 0.001 nw -0.001 -0.001 sw 0.002 0 e 0 0.002 n -0.002 0 w 0 -0.002 s 0 0 o 0.0002 0.012 nn 0.0003 0.0121 nn2 0.0002 -0.003 ss 0.0003 -0.0031 ss2",
    "GEORADIUS quad 0 0 1 km", "GEORADIUS quad 0.0001 0.005 1 km", "GEORADIUS quad 0.0001 0.005 1 km COUNT 3 ANY", "GEORADIUS quad 0.0001 0.0001 1 km", "GEORADIUS quad -0.0001 -0.0001 300 m",
    "GEOSEARCH quad FROMLONLAT 0 0 BYBOX 1 1 km", "GEOSEARCH quad FROMLONLAT 0.0005 -0.0005 BYBOX 500 500 m",
    "GEOSEARCH quad FROMMEMBER ne BYRADIUS 400 m COUNT 3 ANY", "GEOSEARCH quad FROMMEMBER o BYRADIUS 400 m COUNT 4",
    "GEOSEARCH quad FROMMEMBER o BYRADIUS 400 m COUNT 4 DESC WITHDIST",
];

/// Redis and percore, compared after every command on the encodings of the keys it reads
/// and writes too.
struct Pair(Diff);

impl Pair {
    /// One command to both servers: identical replies, then identical encodings of the key it
    /// reads and of any destination.
    fn send(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let w = self.0.same(args);
        let name = String::from_utf8_lossy(&args[0]).to_uppercase();
        let mut keys = Vec::new();
        if args.len() > 1 && name.starts_with("GEO") {
            keys.push(&args[1]);
        }
        if name == "GEOSEARCHSTORE" && args.len() > 2 {
            keys.push(&args[2]);
        }
        if name.starts_with("GEORADIUS") {
            for (i, a) in args.iter().enumerate().skip(5) {
                let up = a.to_ascii_uppercase();
                if (up == b"STORE" || up == b"STOREDIST") && i + 1 < args.len() {
                    keys.push(&args[i + 1]);
                }
            }
        }
        for k in keys {
            self.0.encoding(k);
        }
        w
    }

    fn table(&mut self, rows: &[&str]) {
        for row in rows {
            self.send(&words(row));
        }
    }
}

fn each_pair(what: &str, flags: &[&str], seeds: &[u64], mut f: impl FnMut(&mut Pair, u64)) {
    let what = format!("geo differential tests, {what}");
    each_differential_run(&what, flags, seeds, |redis, percore, resp3, seed, label| {
        f(&mut Pair(Diff::new(redis, percore, resp3, label)), seed)
    });
}

#[test]
fn geo_commands_match_redis() {
    each_pair("table", &[], &[], |p, _| p.table(TABLE));
}

#[test]
fn geo_edges_poles_antimeridian_and_ties_match_redis() {
    each_pair("edges", &[], &[], |p, _| p.table(EDGES));
}

/// Destinations on other shards than their source (with 3 shards these keys spread over
/// every shard), overwritten, emptied and made `skiplist` past the listpack limit.
#[test]
fn geo_store_destinations_on_other_shards_match_redis() {
    each_pair("stores across shards", &[], &[], |p, _| {
        let mut add = words("GEOADD src");
        for i in 0..200 {
            add.push(format!("{:.6}", 10.0 + (i % 20) as f64 * 0.01).into_bytes());
            add.push(format!("{:.6}", 45.0 + (i / 20) as f64 * 0.01).into_bytes());
            add.push(format!("p{i}").into_bytes());
        }
        p.send(&add);
        p.send(&words("OBJECT ENCODING src"));
        for dst in ["d1", "d2", "d3", "d4", "d5", "{src}d", "other"] {
            for line in [
                format!("GEOSEARCHSTORE {dst} src FROMLONLAT 10.1 45.05 BYRADIUS 3 km"),
                format!("ZRANGE {dst} 0 -1 WITHSCORES"),
                format!("GEOSEARCHSTORE {dst} src FROMLONLAT 10.1 45.05 BYRADIUS 30 km STOREDIST"),
                format!("ZRANGE {dst} 0 -1 WITHSCORES"),
                format!("GEOSEARCHSTORE {dst} src FROMMEMBER p0 BYBOX 5 5 km COUNT 7 DESC"),
                format!("ZRANGE {dst} 0 -1 WITHSCORES"),
                format!("GEORADIUS src 10.1 45.05 2 km STORE {dst} COUNT 9"),
                format!("ZRANGE {dst} 0 -1 WITHSCORES"),
                format!("GEORADIUS src 10.1 45.05 200 km STOREDIST {dst}"),
                format!("ZCARD {dst}"),
                format!("GEORADIUS src 10.1 45.05 1 km STOREDIST d1 STORE {dst}"),
                format!("ZRANGE {dst} 0 -1 WITHSCORES"),
                format!("GEORADIUS src 10.1 45.05 200 km store {dst} STOREDIST {dst}"),
                format!("ZCARD {dst}"),
                format!("GEORADIUSBYMEMBER src p55 1500 m STORE {dst} ASC COUNT 3"),
                format!("ZRANGE {dst} 0 -1 WITHSCORES"),
                format!("GEORADIUSBYMEMBER src p55 1500 m WITHDIST STORE {dst}"),
                format!("GEORADIUSBYMEMBER src nope 1500 m STORE {dst}"),
                format!("ZCARD {dst}"),
                format!("GEOSEARCHSTORE {dst} src FROMLONLAT 0 0 BYRADIUS 1 km"),
                format!("EXISTS {dst}"),
                format!("GEORADIUS nokey 0 0 1 km STORE {dst}"),
                format!("SET {dst} x EX 100"),
                format!("GEORADIUS src 10.1 45.05 2 km STORE {dst}"),
                format!("TTL {dst}"),
                format!("TYPE {dst}"),
                format!("GEORADIUS nokey 0 0 1 km STORE {dst}"),
                format!("EXISTS {dst}"),
            ] {
                p.send(&words(&line));
            }
        }
    });
}

/// Places points cluster around: ordinary ones, the poles' limits, the antimeridian.
const CENTERS: &[(f64, f64)] = &[
    (13.36, 38.11),
    (179.99, -16.5),
    (-179.99, 65.0),
    (0.0, 0.0),
    (10.0, 85.0),
    (-120.0, -84.9),
];

const KEYS: &[&str] = &["g1", "g2", "g3", "{g}a"];
/// Destinations of the STORE forms: their sources stay dense.
const DESTS: &[&str] = &["d1", "d2", "{g}d", "g3"];

/// A point near a random centre (sometimes anywhere), inside the limits, with a random
/// number of decimals.
fn point(r: &mut Rng) -> (String, String) {
    let (lon, lat) = if r.below(8) == 0 {
        (r.unit() * 360.0 - 180.0, r.unit() * 170.1 - 85.05)
    } else {
        let (x, y) = CENTERS[r.below(CENTERS.len())];
        let spread = [0.0001, 0.005, 0.02, 0.1, 0.5, 5.0][r.below(6)];
        (
            (x + (r.unit() - 0.5) * spread * 2.0).clamp(-180.0, 180.0),
            (y + (r.unit() - 0.5) * spread).clamp(-85.05, 85.05),
        )
    };
    match r.below(3) {
        0 => (format!("{lon:.6}"), format!("{lat:.6}")),
        1 => (format!("{lon}"), format!("{lat}")),
        _ => (format!("{lon:.2}"), format!("{lat:.2}")),
    }
}

fn member(r: &mut Rng) -> String {
    format!("m{}", r.below(300))
}

/// Search options in random order: WITH*, ASC/DESC, COUNT [ANY].
fn options(r: &mut Rng, c: &mut Vec<String>, with: bool) {
    let mut opts: Vec<Vec<String>> = Vec::new();
    if with {
        for w in ["WITHDIST", "WITHCOORD", "WITHHASH"] {
            if r.below(3) == 0 {
                opts.push(vec![w.into()]);
            }
        }
    }
    match r.below(3) {
        0 => opts.push(vec!["ASC".into()]),
        1 => opts.push(vec!["DESC".into()]),
        _ => {}
    }
    if r.below(2) == 0 {
        let n = r.pick(&["1", "2", "3", "5", "10", "50", "1000"]);
        let mut o = vec!["COUNT".to_string(), n.to_string()];
        if r.below(3) == 0 {
            o.push("ANY".into());
        }
        opts.push(o);
    }
    for _ in 0..opts.len() {
        let i = r.below(opts.len());
        let j = r.below(opts.len());
        opts.swap(i, j);
    }
    c.extend(opts.into_iter().flatten());
}

fn radius(r: &mut Rng) -> Vec<String> {
    let v = r.pick(&[
        "0", "1", "50", "500", "3000", "10", "200", "1000", "5000", "20000", "0.5",
    ]);
    let u = r.pick(&["m", "km", "km", "km", "mi", "ft", "KM"]);
    vec![v.into(), u.into()]
}

fn gen(r: &mut Rng) -> Vec<Vec<u8>> {
    let mut c: Vec<String> = Vec::new();
    let key = r.pick(KEYS).to_string();
    match r.below(14) {
        0..=3 => {
            c.extend(["GEOADD".into(), key]);
            if r.below(5) == 0 {
                c.push(r.pick(&["NX", "XX", "CH", "CH NX"]).into());
            }
            let burst = if r.below(6) == 0 { 150 } else { 1 + r.below(8) };
            let (x, y) = point(r);
            for _ in 0..burst {
                // Now and then several names for one point: equal distances.
                let (x, y) = if r.below(4) == 0 {
                    (x.clone(), y.clone())
                } else {
                    point(r)
                };
                c.extend([x, y, member(r)]);
            }
        }
        4..=5 => {
            c.extend(["GEOSEARCH".into(), key]);
            if r.below(3) == 0 {
                c.extend(["FROMMEMBER".into(), member(r)]);
            } else {
                let (x, y) = point(r);
                c.extend(["FROMLONLAT".into(), x, y]);
            }
            if r.below(2) == 0 {
                c.push("BYRADIUS".into());
                c.extend(radius(r));
            } else {
                let [w, _] = <[String; 2]>::try_from(radius(r)).unwrap();
                let [h, u] = <[String; 2]>::try_from(radius(r)).unwrap();
                c.extend(["BYBOX".into(), w, h, u]);
            }
            options(r, &mut c, true);
        }
        6 => {
            let (x, y) = point(r);
            c.extend([r.pick(&["GEORADIUS", "GEORADIUS_RO"]).into(), key, x, y]);
            c.extend(radius(r));
            options(r, &mut c, true);
        }
        7 => {
            c.extend([
                r.pick(&["GEORADIUSBYMEMBER", "GEORADIUSBYMEMBER_RO"])
                    .into(),
                key,
                member(r),
            ]);
            c.extend(radius(r));
            options(r, &mut c, true);
        }
        8 => {
            c.extend(["GEOSEARCHSTORE".into(), r.pick(DESTS).into(), key]);
            let (x, y) = point(r);
            c.extend(["FROMLONLAT".into(), x, y, "BYRADIUS".into()]);
            c.extend(radius(r));
            options(r, &mut c, false);
            if r.below(2) == 0 {
                c.push("STOREDIST".into());
            }
        }
        9 => {
            let (x, y) = point(r);
            c.extend(["GEORADIUS".into(), key, x, y]);
            c.extend(radius(r));
            options(r, &mut c, false);
            c.extend([r.pick(&["STORE", "STOREDIST"]).into(), r.pick(DESTS).into()]);
        }
        10 => c.extend([
            "GEODIST".into(),
            key,
            member(r),
            member(r),
            r.pick(&["m", "km", "mi", "ft"]).into(),
        ]),
        11 => c.extend(["GEOPOS".into(), key, member(r), member(r)]),
        12 => c.extend(["GEOHASH".into(), key, member(r), member(r)]),
        _ => c.extend(["ZREM".into(), key, member(r), member(r)]),
    }
    c.into_iter().map(String::into_bytes).collect()
}

const STEPS: usize = 1500;
const SEEDS: &[u64] = &[3, 2718, 31_415_926];

/// Small conversion limits: a 5th element or a member over 8 bytes makes a `skiplist`.
const SMALL: &[&str] = &[
    "--zset-max-listpack-entries",
    "4",
    "--zset-max-listpack-value",
    "8",
];

#[test]
fn random_geo_streams_match_redis() {
    random_streams("random stream", &[]);
}

/// Destinations of every size cross the listpack limits both ways.
#[test]
fn random_geo_streams_with_small_listpacks_match_redis() {
    random_streams("random stream, small listpacks", SMALL);
}

fn random_streams(what: &str, flags: &[&str]) {
    each_pair(what, flags, SEEDS, |p, seed| {
        let mut r = Rng(seed);
        // Dense sets first (two past the listpack limit, one within it), then the stream.
        for (key, n) in [("g1", 400), ("g2", 200), ("{g}a", 60)] {
            let mut c = words("GEOADD");
            c.push(key.as_bytes().to_vec());
            for _ in 0..n {
                let (x, y) = point(&mut r);
                c.extend([x.into_bytes(), y.into_bytes(), member(&mut r).into_bytes()]);
            }
            p.send(&c);
        }
        let (mut searches, mut found) = (0, 0);
        for _ in 0..STEPS {
            let c = gen(&mut r);
            let reply = p.send(&c);
            if c[0].starts_with(b"GEOSEARCH") || c[0].starts_with(b"GEORADIUS") {
                searches += 1;
                // An array or a stored count of at least two: something to order.
                let n: i64 = std::str::from_utf8(&reply[1..reply.len().min(8)])
                    .ok()
                    .and_then(|t| t.split("\r\n").next()?.parse().ok())
                    .unwrap_or(0);
                found += (n >= 2) as usize;
                if std::env::var("GEO_DEBUG").is_ok() && searches < 60 {
                    eprintln!("{} => {}", show(&c), esc(&reply[..reply.len().min(40)]));
                }
            }
        }
        if std::env::var("GEO_DEBUG").is_ok() {
            eprintln!("{found} of {searches} searches found two points or more");
        }
        assert!(
            found * 3 >= searches,
            "{}: only {found} of {searches} searches found two points or more",
            p.0.what
        );
    });
}

/// COMMAND INFO (flags, key positions, key specs: GEORADIUS's STORE keys are found by
/// keyword) and COMMAND GETKEYS answer as Redis's, byte for byte in RESP2 and RESP3.
#[test]
fn geo_commands_introspect_as_redis() {
    let Some(redis) = redis_or_skip("COMMAND INFO/GETKEYS of the geo commands") else {
        return;
    };
    let percore = Server::percore(1, &[]);
    let (mut r, mut p) = (redis.client(), percore.client());
    for hello in ["HELLO 2", "HELLO 3"] {
        r.q(hello);
        p.q(hello);
        for line in [
            "COMMAND INFO geoadd geodist geohash geopos geosearch geosearchstore",
            "COMMAND INFO georadius georadius_ro georadiusbymember georadiusbymember_ro",
            "COMMAND DOCS geoadd geodist geohash geopos geosearch geosearchstore",
            "COMMAND GETKEYS GEOADD k 1 1 m",
            "COMMAND GETKEYS GEOSEARCHSTORE d k FROMLONLAT 0 0 BYRADIUS 1 m",
            "COMMAND GETKEYS GEOSEARCH k FROMLONLAT 0 0 BYRADIUS 1 m",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 m",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 m STORE d",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 m storedist d COUNT 1",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 m STORE a STOREDIST b",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 m STORE",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 m STORE a STORE b",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 m STORE STOREDIST b",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 m STOREDIST a STORE b STOREDIST c",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 STORE x STORE",
            "COMMAND GETKEYS GEORADIUS k 0 0 1 STORE d",
            "COMMAND GETKEYS GEORADIUSBYMEMBER k m 1 km STORE d",
            "COMMAND GETKEYS GEORADIUSBYMEMBER k m 1 STORE d",
            "COMMAND GETKEYS GEORADIUS_RO k 0 0 1 m STORE d",
            "COMMAND GETKEYS GEORADIUSBYMEMBER_RO k m 1 km",
            "COMMAND GETKEYS GEOPOS k a b",
            "COMMAND LIST FILTERBY ACLCAT geo",
        ] {
            let (want, got) = (r.q(line), p.q(line));
            // COMMAND DOCS: percore answers summary, since and group (Redis adds arguments,
            // complexity and history): those three must agree.
            if line.starts_with("COMMAND DOCS") {
                let (w, g) = (s(&want), s(&got));
                for piece in g.split("\r\n").filter(|l| !l.starts_with(['*', '%', '$'])) {
                    assert!(
                        w.contains(piece),
                        "{hello}: {line}: {piece} not in Redis's reply"
                    );
                }
                continue;
            }
            if line.starts_with("COMMAND LIST") {
                let sorted = |b: &[u8]| {
                    let mut v: Vec<String> = s(b).split("\r\n").map(str::to_string).collect();
                    v.sort();
                    v
                };
                assert_eq!(sorted(&got), sorted(&want), "{hello}: {line}");
                continue;
            }
            assert_eq!(s(&got), s(&want), "{hello}: {line}");
        }
    }
}
