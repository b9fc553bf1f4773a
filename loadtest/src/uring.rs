//! io_uring plumbing for the load generator: the ring setup and provided-buffer ring it
//! shares with the server (one source file, included by path: the load generator may not
//! depend on the server crate), and a submission helper.

use std::io;

use std::time::Duration;

use io_uring::{squeue, types, IoUring};

#[path = "../../server/src/runtime/bufring.rs"]
mod bufring;
pub use bufring::BufRing;

/// A ring and the name of its completion mode.
pub struct Ring {
    pub ring: IoUring,
    pub mode: &'static str,
}

impl Ring {
    pub fn new(entries: u32) -> io::Result<Ring> {
        let (ring, mode) = bufring::setup(entries)?;
        Ok(Ring { ring, mode })
    }

    /// Queues one submission, submitting what is queued first when the queue is full.
    ///
    /// # Safety
    /// Every buffer and file descriptor the entry names must stay valid until its last
    /// completion has been reaped.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller guarantees the entry's buffers outlive the operation.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Submits what is queued and waits for one completion, at most `timeout`; a timeout or
    /// an interruption is not an error.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{cqueue, opcode, types};
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// Multishot receive into 4 provided buffers, 64 messages: buffers must be recycled
    /// through the ring's wrap-around many times and every byte arrive in order.
    #[test]
    fn multishot_receive_recycles_provided_buffers() {
        let mut ring = Ring::new(8).unwrap();
        let mut br = BufRing::register(&ring.ring, 7, 4, 64).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (rx, _) = listener.accept().unwrap();
        let fd = types::Fd(rx.as_raw_fd());
        let arm = opcode::RecvMulti::new(fd, 7).build().user_data(1);
        // SAFETY: the socket and the buffer ring outlive the loop below, which reaps every
        // completion before they are dropped.
        unsafe { ring.push(&arm).unwrap() };
        let mut got = Vec::new();
        let mut expected = Vec::new();
        for i in 0..64u32 {
            let msg = format!("message {i:04};");
            tx.write_all(msg.as_bytes()).unwrap();
            expected.extend_from_slice(msg.as_bytes());
            while got.len() < expected.len() {
                ring.ring.submit_and_wait(1).unwrap();
                let cqes: Vec<_> = ring.ring.completion().collect();
                for cqe in cqes {
                    if cqe.result() == -libc::ENOBUFS || !cqueue::more(cqe.flags()) {
                        // SAFETY: as above.
                        unsafe { ring.push(&arm).unwrap() };
                    }
                    if cqe.result() <= 0 {
                        continue;
                    }
                    let bid = cqueue::buffer_select(cqe.flags()).expect("a provided buffer");
                    got.extend_from_slice(br.data(bid, cqe.result() as usize).expect("our buffer"));
                    br.recycle(bid);
                }
            }
        }
        assert_eq!(got, expected);
        drop(tx);
        drop(ring);
    }
}
