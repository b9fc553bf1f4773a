//! Fuzzes the request decoder with arbitrary bytes, fed whole and in two chunks, with both
//! the authenticated and the unauthenticated limits. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_proto::{Decoded, Limits, RequestDecoder};

fn run(data: &[u8], cut: usize, authenticated: bool) {
    let mut d = RequestDecoder::new(Limits { authenticated, ..Limits::default() });
    let mut buf = data[..cut].to_vec();
    let mut fed = cut;
    loop {
        let mut at = 0;
        loop {
            match d.decode(&mut buf[at..]) {
                Ok(Decoded::Command { consumed }) => {
                    let frame = &buf[at..at + consumed];
                    for s in d.args() {
                        assert!(s.start + s.len <= frame.len());
                    }
                    at += consumed;
                }
                Ok(Decoded::Empty { consumed }) => at += consumed,
                Ok(Decoded::Incomplete { need }) => {
                    assert!(need > buf.len() - at || need == 0 || buf.len() - at == 0 || need >= 1);
                    break;
                }
                Err(e) => {
                    assert!(e.message().starts_with("ERR Protocol error: "));
                    return;
                }
            }
        }
        buf.drain(..at);
        if fed == data.len() {
            return;
        }
        buf.extend_from_slice(&data[fed..]);
        fed = data.len();
    }
}

fuzz_target!(|data: &[u8]| {
    let cut = if data.is_empty() { 0 } else { data[0] as usize % (data.len() + 1) };
    run(data, data.len(), true);
    run(data, cut, true);
    run(data, cut, false);
});
