//! TLS on a connection of the network ring: rustls's record layer run on the core that owns
//! the connection. Ciphertext comes from the ring's receive (as plain bytes do) and goes out
//! through the ring's send; the connection above reads and writes plaintext as before.
//!
//! Every await here is safe to drop (a connection's read is dropped when its outbox has
//! something to write): ciphertext taken from the ring is in rustls's buffers or in
//! `pending` before anything waits, and a send whose future is dropped completes in the
//! ring all the same (see `RingStream::send_owned`).

use std::io::{self, Read, Write};
use std::sync::Arc;

use super::ring::RingStream;

/// Bytes of ciphertext taken from the ring at a time: one TLS record and its overhead.
const CHUNK: usize = 16 << 10 | 512;

pub struct Layer {
    /// The server side of an accepted connection, or the client side of one this server
    /// opened (a replica's link to its primary).
    conn: rustls::Connection,
    /// Ciphertext received: `pending[head..filled]` is not yet handed to rustls (which
    /// takes a bounded amount while it holds plaintext nobody has read).
    pending: Box<[u8]>,
    head: usize,
    filled: usize,
    /// Ciphertext for the ring's next send.
    out: Vec<u8>,
}

impl Layer {
    pub fn new(cfg: Arc<rustls::ServerConfig>) -> io::Result<Layer> {
        let conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
        Ok(Layer::with(conn.into()))
    }

    /// The client side, to the server known as `name`.
    pub fn client(
        cfg: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Layer> {
        let conn = rustls::ClientConnection::new(cfg, name).map_err(io::Error::other)?;
        Ok(Layer::with(conn.into()))
    }

    fn with(mut conn: rustls::Connection) -> Layer {
        // Replies of any size are taken whole; the connection bounds its own output.
        conn.set_buffer_limit(None);
        Layer {
            conn,
            pending: vec![0; CHUNK].into_boxed_slice(),
            head: 0,
            filled: 0,
            out: Vec::new(),
        }
    }

    /// Plaintext into `buf`; 0 at the end of the stream (a close_notify, or the peer gone
    /// without one, as Redis treats it).
    pub async fn read(&mut self, ring: &mut RingStream, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(ring, |r| r.read(buf)).await
    }

    /// All the plaintext there is, appended to `buf`; 0 at the end of the stream.
    pub async fn read_into(
        &mut self,
        ring: &mut RingStream,
        buf: &mut Vec<u8>,
    ) -> io::Result<usize> {
        self.read_with(ring, |r| {
            let len = buf.len();
            match r.read_to_end(buf) {
                // Bytes before the end or before "nothing more yet" count; the end is
                // reported by the next call.
                Err(e) if buf.len() > len && e.kind() == io::ErrorKind::WouldBlock => {
                    Ok(buf.len() - len)
                }
                Err(e) if buf.len() > len && e.kind() == io::ErrorKind::UnexpectedEof => {
                    Ok(buf.len() - len)
                }
                Err(e) => Err(e),
                Ok(_) => Ok(buf.len() - len),
            }
        })
        .await
    }

    /// Plaintext through `take` (which reads from rustls without waiting), feeding rustls
    /// from the ring until it has some.
    async fn read_with(
        &mut self,
        ring: &mut RingStream,
        mut take: impl FnMut(&mut rustls::Reader<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            match take(&mut self.conn.reader()) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.head < self.filled {
                self.feed(ring).await?;
            } else if !self.fill(ring).await? {
                return Ok(0);
            }
        }
    }

    /// Sends what rustls has to say (handshake messages, alerts, session tickets), then
    /// waits for more ciphertext; false at the end of the stream.
    async fn fill(&mut self, ring: &mut RingStream) -> io::Result<bool> {
        self.flush(ring).await?;
        // Nothing changes until the read returns: dropping it here loses nothing.
        let n = ring.read(&mut self.pending).await?;
        (self.head, self.filled) = (0, n);
        Ok(n > 0)
    }

    /// Hands pending ciphertext to rustls and processes it.
    async fn feed(&mut self, ring: &mut RingStream) -> io::Result<()> {
        let mut rd = &self.pending[self.head..self.filled];
        let before = rd.len();
        let r = self.conn.read_tls(&mut rd);
        self.head += before - rd.len();
        if r? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS input refused",
            ));
        }
        if let Err(e) = self.conn.process_new_packets() {
            // rustls queued an alert for the peer: send it, then fail the stream.
            let _ = self.flush(ring).await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(())
    }

    /// Encrypts `plain` and sends it; `plain` is left empty (its capacity kept). A reply
    /// written before anything was read (the protected-mode or maxclients refusal) first
    /// completes the handshake, so the client reads it as Redis sends it.
    pub async fn send(&mut self, ring: &mut RingStream, plain: &mut Vec<u8>) -> io::Result<()> {
        while self.conn.is_handshaking() {
            if self.head < self.filled {
                self.feed(ring).await?;
            } else if !self.fill(ring).await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        self.conn.writer().write_all(plain)?;
        plain.clear();
        self.flush(ring).await
    }

    /// Sends every record rustls has ready.
    async fn flush(&mut self, ring: &mut RingStream) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.out)?;
        }
        ring.send_owned(&mut self.out).await
    }
}
