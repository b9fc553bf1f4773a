//! `percore check-rdb FILE`: reads a Redis RDB file offline, as percore would load it, and
//! says what it holds (aux fields, keys per database and type, deadlines, function
//! libraries) or where and why it cannot be read. The reading is `percore_shard::rdb::file`'s;
//! this module only prints. The file is read into memory whole.

use percore_shard::rdb::file::{FileReader, Record};
use percore_shard::{ShardConfig, ValueRef};
use std::collections::BTreeMap;

/// Counts of one database.
#[derive(Default)]
struct DbCounts {
    per_type: BTreeMap<&'static str, u64>,
    expiring: u64,
    expired: u64,
}

/// Runs the check on `args` (the file path); returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    let [path] = args else {
        eprintln!("usage: percore check-rdb FILE");
        return 2;
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            return 1;
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut r = match FileReader::new(&bytes, ShardConfig::default(), 1) {
        Ok(r) => r,
        Err(e) => {
            println!("{path}: error at offset {}: {}", e.offset, e.what);
            return 1;
        }
    };
    println!("{path}: RDB version {}, {} bytes", r.version, bytes.len());
    let mut dbs: BTreeMap<u64, DbCounts> = BTreeMap::new();
    let (mut functions, mut empty) = (0u64, 0u64);
    loop {
        match r.next_record() {
            Ok(Some(Record::Aux { key, value })) => {
                println!("  aux {} = {}", key.escape_ascii(), value.escape_ascii());
            }
            Ok(Some(Record::Key {
                db,
                value,
                expire_at_ms,
                ..
            })) => {
                let d = dbs.entry(db).or_default();
                *d.per_type
                    .entry(ValueRef::type_name(value.as_ref()))
                    .or_default() += 1;
                if expire_at_ms != 0 {
                    d.expiring += 1;
                    d.expired += (expire_at_ms < now_ms) as u64;
                }
            }
            Ok(Some(Record::EmptyKey { .. })) => empty += 1,
            Ok(Some(Record::Function(_))) => functions += 1,
            Ok(Some(Record::SelectDb(_) | Record::ResizeDb { .. } | Record::Skipped { .. })) => {}
            Ok(Some(Record::End { checksum })) => {
                println!(
                    "  checksum: {}",
                    if checksum { "ok" } else { "none (not checked)" }
                );
            }
            Ok(None) => break,
            Err(e) => {
                print_counts(&dbs, functions, empty);
                println!("{path}: error at offset {}: {}", e.offset, e.what);
                return 1;
            }
        }
    }
    print_counts(&dbs, functions, empty);
    println!("{path}: ok");
    0
}

fn print_counts(dbs: &BTreeMap<u64, DbCounts>, functions: u64, empty: u64) {
    for (db, d) in dbs {
        let keys: u64 = d.per_type.values().sum();
        let types: Vec<String> = d.per_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!(
            "  db {db}: {keys} keys ({}), {} with a deadline ({} already past)",
            types.join(", "),
            d.expiring,
            d.expired
        );
    }
    if functions > 0 {
        println!("  functions: {functions} libraries");
    }
    if empty > 0 {
        println!("  empty keys skipped: {empty}");
    }
}
