//! Fuzzes the RDB value reader (RESTORE's payloads, RDB files): arbitrary bytes as a type
//! byte and a value, read with the default encoding limits and with tiny ones (so
//! conversions to the large encodings run), and the same bytes after an RDB file header,
//! read record by record as `percore check-rdb` reads a file. Any panic or runaway
//! allocation is a bug; every input ends in a clean error or a value, and a value read
//! must write and read back as itself.
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
        while let Ok(Some(_)) = r.next_record() {}
    }
    for tiny in [false, true] {
        let c = config(tiny);
        let Ok(v) = value::decode(&mut Reader::new(data), &c, 7) else {
            continue;
        };
        let mut out = Vec::new();
        value::encode(v.as_ref(), c.list_limits, &mut out);
        let mut r = Reader::new(&out);
        let back = value::decode(&mut r, &c, 9).expect("a value written reads back");
        assert_eq!(r.remaining(), 0);
        assert_eq!(back, v);
    }
});
