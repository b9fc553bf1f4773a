//! One publisher: a thread with one blocking connection that sends PUBLISH commands in
//! batches of at most `--pipeline` and reads the batch's replies before the next.
//!
//! Messages go to the channels in turn (publisher p starts at channel p). A batch is cut
//! short when the deliveries promised and not yet received would pass the in-flight bound
//! (`Shared::outstanding`), so a subscriber that falls behind slows the publishers instead of
//! filling the server's output buffers; at a fixed `--rate`, message k of a publisher is due
//! at `offset + k × interval` and is stamped with that due time, so a late send shows up as
//! latency (no coordinated omission).

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use percore_proto::ReplyKind;

use super::options::{Length, PubSubConfig};
use super::order::{encode_payload, payload_len, Stamp};

/// What the publishers and the subscriber threads share: two counters, read once per batch
/// or loop turn, and two flags.
#[derive(Default)]
pub struct Shared {
    /// Deliveries promised by the messages published so far (each message: its channel's
    /// subscriber count), added before the message is sent.
    pub promised: AtomicU64,
    /// Deliveries received, added by each subscriber thread once per loop turn.
    pub delivered: AtomicU64,
    /// Publishers still publishing.
    pub publishing: AtomicUsize,
    /// Set when a thread failed: everyone stops.
    pub stop: AtomicBool,
}

impl Shared {
    /// Deliveries promised and not yet received.
    pub fn outstanding(&self) -> u64 {
        let delivered = self.delivered.load(Ordering::Acquire);
        self.promised
            .load(Ordering::Acquire)
            .saturating_sub(delivered)
    }
}

/// What one publisher did.
#[derive(Default)]
pub struct Published {
    /// Messages sent to each channel (the last sequence number there plus one).
    pub per_channel: Vec<u64>,
    pub messages: u64,
    /// PUBLISH replies whose receiver count was not the channel's subscriber count.
    pub receivers_mismatch: u64,
    /// When it stopped publishing, in ns from the run's start.
    pub end_ns: u64,
    pub bytes_sent: u64,
}

/// Everything a publisher needs to know besides its connection.
pub struct Plan<'a> {
    pub cfg: &'a PubSubConfig,
    /// Subscribers of each channel.
    pub fanout: &'a [u64],
    /// `$len\r\nname\r\n` of each channel.
    pub channel_bulks: &'a [Vec<u8>],
    /// The most deliveries outstanding before a publisher waits.
    pub outstanding_max: u64,
}

/// Runs publisher `p` until its length is reached or `shared.stop`; an error reply or a
/// broken connection is an error.
pub fn run(
    plan: &Plan,
    p: usize,
    mut stream: TcpStream,
    shared: &Shared,
    clock: Instant,
) -> Result<Published, String> {
    let cfg = plan.cfg;
    let channels = plan.fanout.len();
    let deadline_ns = match cfg.length {
        Length::Time(d) => Some(d.as_nanos() as u64),
        Length::Messages(_) => None,
    };
    let limit = match cfg.length {
        Length::Messages(n) => Some(n),
        Length::Time(_) => None,
    };
    // Each publisher sends 1/P of the rate; their schedules are spread over one interval.
    let interval_ns = cfg.rate.map(|r| cfg.publishers as f64 / r * 1e9);
    let offset_ns = interval_ns.map_or(0.0, |i| i * p as f64 / cfg.publishers as f64);
    let mut out = Published {
        per_channel: vec![0; channels],
        ..Published::default()
    };
    let mut next_channel = p % channels;
    let mut tx = Vec::new();
    let mut rx = Vec::new();
    let mut batch: Vec<usize> = Vec::with_capacity(cfg.pipeline);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let now = clock.elapsed().as_nanos() as u64;
        if shared.stop.load(Ordering::Relaxed)
            || deadline_ns.is_some_and(|d| now >= d)
            || limit.is_some_and(|l| out.messages >= l)
        {
            break;
        }
        tx.clear();
        batch.clear();
        let outstanding = shared.outstanding();
        let mut promised = 0;
        let mut next_due = None;
        while batch.len() < cfg.pipeline && limit.is_none_or(|l| out.messages < l) {
            let c = next_channel;
            let fanout = plan.fanout[c];
            if outstanding + promised + fanout > plan.outstanding_max {
                break;
            }
            let sent_ns = match interval_ns {
                Some(i) => {
                    let due = (offset_ns + out.messages as f64 * i) as u64;
                    if due > now {
                        next_due = Some(due);
                        break;
                    }
                    due
                }
                None => now,
            };
            let stamp = Stamp {
                publisher: p,
                seq: out.per_channel[c],
                sent_ns,
            };
            let mut n = itoa::Buffer::new();
            tx.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
            tx.extend_from_slice(&plan.channel_bulks[c]);
            tx.push(b'$');
            tx.extend_from_slice(n.format(payload_len(stamp, cfg.data_size)).as_bytes());
            tx.extend_from_slice(b"\r\n");
            encode_payload(&mut tx, stamp, cfg.data_size);
            tx.extend_from_slice(b"\r\n");
            out.per_channel[c] += 1;
            out.messages += 1;
            promised += fanout;
            batch.push(c);
            next_channel = (next_channel + 1) % channels;
        }
        if batch.is_empty() {
            // Waiting for the subscribers to catch up, or for the next due time.
            let ahead_ns = next_due.map_or(20_000, |d| d.saturating_sub(now));
            if ahead_ns > 200_000 {
                std::thread::sleep(Duration::from_nanos(ahead_ns - 100_000));
            } else if next_due.is_some() {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_nanos(ahead_ns));
            }
            continue;
        }
        shared.promised.fetch_add(promised, Ordering::AcqRel);
        stream
            .write_all(&tx)
            .map_err(|e| format!("publisher {p}: {e}"))?;
        out.bytes_sent += tx.len() as u64;
        read_replies(
            &mut stream,
            &mut rx,
            &mut chunk,
            &batch,
            plan.fanout,
            &mut out,
        )
        .map_err(|e| format!("publisher {p}: {e}"))?;
    }
    out.end_ns = clock.elapsed().as_nanos() as u64;
    Ok(out)
}

/// Reads one reply per message of `batch` (the channel each went to) and checks each is the
/// channel's receiver count.
fn read_replies(
    stream: &mut TcpStream,
    rx: &mut Vec<u8>,
    chunk: &mut [u8],
    batch: &[usize],
    fanout: &[u64],
    out: &mut Published,
) -> Result<(), String> {
    let mut at = 0;
    for &c in batch {
        let (len, kind) = crate::read_reply(stream, rx, at, chunk)?;
        let reply = &rx[at..at + len];
        if kind != ReplyKind::Integer {
            return Err(format!(
                "PUBLISH replied {}",
                String::from_utf8_lossy(reply).trim_end()
            ));
        }
        let count = std::str::from_utf8(&reply[1..len - 2]).unwrap_or("");
        if count.parse::<u64>().ok() != Some(fanout[c]) {
            out.receivers_mismatch += 1;
        }
        at += len;
    }
    rx.drain(..at);
    Ok(())
}
