//! Property tests of the request decoder: round trips, every split point, arbitrary bytes.

use percore_proto::{Decoded, Limits, RequestDecoder};
use proptest::prelude::*;

fn encode(cmds: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut b = Vec::new();
    for c in cmds {
        b.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
        for a in c {
            b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            b.extend_from_slice(a);
            b.extend_from_slice(b"\r\n");
        }
    }
    b
}

/// Feeds `input` in chunks whose ends are `cuts`, as a connection receives it.
fn decode_chunked(
    input: &[u8],
    cuts: &[usize],
) -> Result<Vec<Vec<Vec<u8>>>, percore_proto::ProtocolError> {
    let mut d = RequestDecoder::new(Limits::default());
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c <= input.len()).collect();
    ends.push(input.len());
    ends.sort();
    for end in ends {
        if end < fed {
            continue;
        }
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        let mut at = 0;
        loop {
            match d.decode(&mut buf[at..])? {
                Decoded::Command { consumed } => {
                    let frame = &buf[at..at + consumed];
                    out.push(d.args().iter().map(|s| s.of(frame).to_vec()).collect());
                    at += consumed;
                }
                Decoded::Empty { consumed } => at += consumed,
                Decoded::Incomplete { .. } => break,
            }
        }
        // The connection drops consumed bytes and keeps the partial frame at the front.
        buf.drain(..at);
    }
    Ok(out)
}

fn arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(b"\r\n".to_vec()),
        Just(b"*1\r\n$1\r\n".to_vec()),
        proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'$'), Just(b'*')],
            0..8
        ),
    ]
}

fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(arg(), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip(cmds in proptest::collection::vec(command(), 1..8)) {
        let bytes = encode(&cmds);
        prop_assert_eq!(decode_chunked(&bytes, &[]).unwrap(), cmds);
    }

    /// A request split at every byte position decodes the same.
    #[test]
    fn every_split_point(cmds in proptest::collection::vec(command(), 1..4)) {
        let bytes = encode(&cmds);
        for cut in 0..=bytes.len() {
            prop_assert_eq!(decode_chunked(&bytes, &[cut]).unwrap(), cmds.clone());
        }
        // And one byte at a time.
        let all: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(decode_chunked(&bytes, &all).unwrap(), cmds);
    }

    /// Arbitrary bytes never panic, whatever the chunking.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
        let _ = decode_chunked(&bytes, &[cut]);
    }

    /// Inline commands: words without quotes round-trip through the inline form.
    #[test]
    fn inline_words(words in proptest::collection::vec("[a-zA-Z0-9:_{}-]{1,12}", 1..6)) {
        let line = format!("{}\r\n", words.join(" "));
        let got = decode_chunked(line.as_bytes(), &[]).unwrap();
        let want: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        prop_assert_eq!(got, vec![want]);
    }
}
