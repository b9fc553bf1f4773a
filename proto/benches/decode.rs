//! Decoding a pipeline of GET/SET requests: the first thing every byte from a client meets.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use percore_proto::{Decoded, Limits, RequestDecoder};

fn pipeline(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        let key = format!("key:{:012}", i);
        if i % 10 == 0 {
            v.extend_from_slice(
                format!("*3\r\n$3\r\nSET\r\n${}\r\n{}\r\n$32\r\n", key.len(), key).as_bytes(),
            );
            v.extend_from_slice(&[b'x'; 32]);
            v.extend_from_slice(b"\r\n");
        } else {
            v.extend_from_slice(
                format!("*2\r\n$3\r\nGET\r\n${}\r\n{}\r\n", key.len(), key).as_bytes(),
            );
        }
    }
    v
}

fn bench_decode(c: &mut Criterion) {
    let n = 32;
    let mut buf = pipeline(n);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("pipeline_32_get_set", |b| {
        let mut d = RequestDecoder::new(Limits::default());
        b.iter(|| {
            let mut at = 0;
            let mut count = 0;
            while let Ok(Decoded::Command { consumed }) = d.decode(&mut buf[at..]) {
                count += d.args().len();
                at += consumed;
            }
            assert_eq!(at, buf.len());
            count
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
