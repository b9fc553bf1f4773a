//! Fuzzes the RDB value reader (RESTORE's payloads, RDB files): arbitrary bytes as a type
//! byte and a value, read with the default encoding limits and with tiny ones (so
//! conversions to the large encodings run), and the same bytes after an RDB file header,
//! read record by record as `percore check-rdb` reads a file, and again as a shard
//! importing the file reads it (stepping over the values of keys it does not keep). Any
//! panic or runaway allocation is a bug; every input ends in a clean error or a value, a
//! value read must write and read back as itself, stepping over a value that reads must
//! end where reading it ends, and a file that reads whole must read whole when filtered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_shard::rdb::file::FileReader;
use percore_shard::rdb::{value, Reader};
use percore_shard::ShardConfig;

fn config(tiny: bool) -> ShardConfig {
    let mut c = ShardConfig::default();
    if tiny {
        c.hash_limits.max_listpack_entries = 2;
        c.hash_limits.max_listpack_value = 4;
        c.set_limits.max_intset_entries = 2;
        c.zset_limits.max_listpack_entries = 2;
        c.zset_limits.max_listpack_value = 4;
        c.list_limits.fill = 2;
    }
    c
}

fuzz_target!(|data: &[u8]| {
    let file = [&b"REDIS0010"[..], data].concat();
    if let Ok(mut r) = FileReader::new(&file, config(data.len() % 2 == 0), 3) {
        let mut all = 0;
        let whole = loop {
            match r.next_record() {
                Ok(Some(_)) => all += 1,
                Ok(None) => break true,
                Err(_) => break false,
            }
        };
        let mut r = FileReader::new(&file, config(false), 3).expect("the header read above");
        let mut filtered = 0;
        let mut keep = |k: &[u8]| k.len() % 2 == 0;
        loop {
            match r.next_record_keeping(&mut keep) {
                Ok(Some(_)) => filtered += 1,
                Ok(None) => break,
                Err(_) => {
                    assert!(!whole, "a file that reads whole fails when filtered");
                    break;
                }
            }
        }
        if whole {
            assert_eq!(all, filtered);
        }
    }
    for tiny in [false, true] {
        let c = config(tiny);
        let mut r = Reader::new(data);
        let Ok(v) = value::decode(&mut r, &c, 7) else {
            continue;
        };
        let mut skip = Reader::new(data);
        let t = skip.byte().expect("a value has a type byte");
        value::skip_body(t, &mut skip).expect("a value that reads can be stepped over");
        assert_eq!(skip.pos, r.pos, "stepping over a value ends where reading it ends");
        let mut out = Vec::new();
        value::encode(v.as_ref(), c.list_limits, &mut out);
        let mut r = Reader::new(&out);
        let back = value::decode(&mut r, &c, 9).expect("a value written reads back");
        assert_eq!(r.remaining(), 0);
        assert_eq!(back, v);
    }
});
