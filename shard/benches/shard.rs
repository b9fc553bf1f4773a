//! GET and SET on a shard holding 1M keys: the cost of the store itself, without network.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use percore_proto::{command::lookup, OwnedArgs, Protocol, ReplyWriter};
use percore_shard::{ExecCtx, Shard, ShardConfig};

const KEYS: u64 = 1_000_000;

fn key(i: u64) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

fn loaded() -> Shard {
    let mut sh = Shard::new(42, ShardConfig::default());
    let set = lookup(b"set").unwrap();
    let mut out = Vec::new();
    for i in 0..KEYS {
        out.clear();
        let a = OwnedArgs::from_slices(&[b"SET".to_vec(), key(i), vec![b'x'; 32]]);
        sh.apply(
            &ExecCtx { db: 0, now_ms: 1 },
            set,
            a.args(),
            &mut ReplyWriter::new(&mut out, Protocol::Resp2),
        );
    }
    while sh.rehash_step(1 << 16) {}
    sh
}

fn bench(c: &mut Criterion) {
    let mut sh = loaded();
    let get = lookup(b"get").unwrap();
    let set = lookup(b"set").unwrap();
    // Pre-built argument sets so the loop measures the shard, not argument building.
    let gets: Vec<OwnedArgs> = (0..4096u64)
        .map(|i| OwnedArgs::from_slices(&[b"GET".to_vec(), key((i * 7919) % KEYS)]))
        .collect();
    let sets: Vec<OwnedArgs> = (0..4096u64)
        .map(|i| {
            OwnedArgs::from_slices(&[b"SET".to_vec(), key((i * 104_729) % KEYS), vec![b'y'; 32]])
        })
        .collect();
    let mut out = Vec::with_capacity(1 << 16);
    let ctx = ExecCtx { db: 0, now_ms: 2 };
    let mut g = c.benchmark_group("shard_1m_keys");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 1) % gets.len();
            out.clear();
            sh.apply(
                &ctx,
                get,
                gets[i].args(),
                &mut ReplyWriter::new(&mut out, Protocol::Resp2),
            );
        })
    });
    g.bench_function("set_overwrite_32b", |b| {
        b.iter(|| {
            i = (i + 1) % sets.len();
            out.clear();
            sh.apply(
                &ctx,
                set,
                sets[i].args(),
                &mut ReplyWriter::new(&mut out, Protocol::Resp2),
            );
        })
    });
    let mut n = KEYS;
    g.bench_function("set_new_key_32b", |b| {
        b.iter_batched(
            || {
                n += 1;
                OwnedArgs::from_slices(&[b"SET".to_vec(), key(n), vec![b'z'; 32]])
            },
            |a| {
                out.clear();
                sh.apply(
                    &ctx,
                    set,
                    a.args(),
                    &mut ReplyWriter::new(&mut out, Protocol::Resp2),
                );
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
