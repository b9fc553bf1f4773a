//! Connections this server opens to another one (MIGRATE's to its target instance, a
//! replica's to its primary).
//!
//! Not the hot path: these are glommio's readiness-based sockets (a syscall first, a
//! POLL_ADD through glommio's reactor when it would block), not the network ring's. While
//! an operation is in flight the core sleeps in glommio ([`sched::ReactorUse`]), which
//! alone collects those completions; an idle stream has nothing in flight and holds
//! nothing. Every operation is bounded by a timeout on the core's own timers, so a silent
//! peer costs its caller the timeout and never stalls the core.

use super::sched;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A TCP connection to another server.
pub struct OutStream {
    inner: glommio::net::TcpStream,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// `op`, or a [`io::ErrorKind::TimedOut`] error once `timeout` passed.
async fn bounded<T>(
    timeout: Duration,
    op: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    futures_lite::future::or(op, async {
        super::sleep(timeout).await;
        Err(timed_out())
    })
    .await
}

impl OutStream {
    /// Connects to `addr` within `timeout` (not zero), with TCP_NODELAY.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<OutStream> {
        let _reactor = sched::ReactorUse::begin();
        let timeout = timeout.max(Duration::from_millis(1));
        let connect = async {
            glommio::net::TcpStream::connect_timeout(addr, timeout)
                .await
                .map_err(io::Error::from)
        };
        // glommio's own timeout is a linked io_uring timeout; ours bounds it as well.
        let inner = bounded(timeout + Duration::from_millis(50), connect).await?;
        inner.set_nodelay(true).map_err(io::Error::from)?;
        Ok(OutStream { inner })
    }

    /// Sends all of `buf`, each call to the socket bounded by `timeout`.
    pub async fn write_all(&mut self, buf: &[u8], timeout: Duration) -> io::Result<()> {
        let _reactor = sched::ReactorUse::begin();
        bounded(timeout, self.inner.write_all(buf)).await
    }

    /// The socket as a descriptor of its own (a duplicate; this stream closes its own), for
    /// the network ring to serve from now on (a replica's link once its sync is done).
    pub fn into_fd(self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsRawFd;
        let fd = self.inner.as_raw_fd();
        // SAFETY: `fd` is the open socket this stream owns, alive for this call; dup(2)
        // makes a new descriptor, which the OwnedFd then owns alone.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if new < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `new` was just returned by fcntl and is owned by nothing else.
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(new) })
    }

    /// Reads what is there (at least one byte; 0 when the peer closed), waiting at most
    /// `timeout`.
    pub async fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let _reactor = sched::ReactorUse::begin();
        bounded(timeout, self.inner.read(buf)).await
    }
}
