//! Copying a large value into a reply: the payload copy of a 256 KiB GET, where the
//! destination lies 9 bytes after the source modulo 4 KiB (a page-aligned value behind a
//! `$262144\r\n` header in a page-aligned buffer), and 64 bytes after it, one copy
//! (`extend_from_slice`) against `append_payload`.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use percore_proto::encode::append_payload;

const LEN: usize = 256 << 10;

/// A buffer and the prefix length that puts its end `ahead` bytes after `src` modulo 4 KiB.
fn landing(src: &[u8], ahead: usize) -> (Vec<u8>, usize) {
    let buf = Vec::with_capacity(2 * LEN + 8192);
    let prefix = (src.as_ptr() as usize + ahead).wrapping_sub(buf.as_ptr() as usize) & 4095;
    (buf, prefix)
}

fn bench_payload(c: &mut Criterion) {
    // Page-aligned source, as a large value is.
    let backing = vec![7u8; LEN + 4096];
    let skip = (4096 - backing.as_ptr() as usize % 4096) % 4096;
    let src = &backing[skip..skip + LEN];
    let mut g = c.benchmark_group("payload_256k");
    g.throughput(Throughput::Bytes(LEN as u64));
    for ahead in [9usize, 64] {
        let (mut buf, prefix) = landing(src, ahead);
        g.bench_with_input(
            BenchmarkId::new("extend_from_slice", ahead),
            &ahead,
            |b, _| {
                b.iter(|| {
                    buf.truncate(0);
                    buf.resize(prefix, 0);
                    buf.extend_from_slice(src);
                    buf.len()
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("append_payload", ahead), &ahead, |b, _| {
            b.iter(|| {
                buf.truncate(0);
                buf.resize(prefix, 0);
                append_payload(&mut buf, src);
                buf.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_payload);
criterion_main!(benches);
