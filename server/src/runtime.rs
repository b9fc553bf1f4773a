//! The one module that names glommio. Everything else in the server sees this small
//! interface — executors, listeners, streams, mailboxes between cores, timers, task spawning —
//! so the network path can later move to the `io-uring` crate (multishot receive, provided
//! buffers) without touching the router or the shard.
//!
//! Mailboxes are bounded MPSC queues (flume), one inbox per core that every other core
//! sends into. A full inbox makes the sender wait: backpressure, never an unbounded queue.
//! They replaced glommio's shared channels, whose connect handshake does not wake a sleeping
//! peer executor: about one start in a hundred hung with a core parked forever in it.
//! Cross-thread wake-ups go through glommio's foreign-waker path (an eventfd write when the
//! target core sleeps).

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares, TaskQueueHandle};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

pub use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

/// What one core receives at boot: a sender to every core's inbox and its own inbox.
pub struct MailboxEnds<T: Send + 'static> {
    senders: Vec<flume::Sender<T>>,
    inbox: flume::Receiver<T>,
}

/// Builds the mesh: `ends[i]` belongs to core i. Each inbox holds at most `capacity`
/// messages per sending core.
pub fn mesh<T: Send + 'static>(n: usize, capacity: usize) -> Vec<MailboxEnds<T>> {
    let channels: Vec<_> = (0..n)
        .map(|_| flume::bounded(capacity * n.saturating_sub(1).max(1)))
        .collect();
    let senders: Vec<flume::Sender<T>> = channels.iter().map(|(s, _)| s.clone()).collect();
    channels
        .into_iter()
        .map(|(_, r)| MailboxEnds {
            senders: senders.clone(),
            inbox: r,
        })
        .collect()
}

/// A core's sending side of the mesh.
pub struct Mailbox<T: Send + 'static> {
    senders: Vec<flume::Sender<T>>,
}

impl<T: Send + 'static> Mailbox<T> {
    /// Sends to core `to`, waiting while its inbox is full. Errors when that core is gone.
    pub async fn send(&self, to: usize, msg: T) -> Result<(), ()> {
        match self.senders.get(to) {
            Some(s) => s.send_async(msg).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Messages waiting in core `of`'s inbox (for the queue-depth gauge).
    pub fn depth(&self, of: usize) -> usize {
        self.senders.get(of).map_or(0, |s| s.len())
    }
}

impl<T: Send + 'static> MailboxEnds<T> {
    /// Splits into this core's mailbox and inbox (nothing to connect: ready at once).
    pub fn split(self) -> (Mailbox<T>, Inbox<T>) {
        (
            Mailbox {
                senders: self.senders,
            },
            Inbox(self.inbox),
        )
    }
}

/// Messages from every other core.
pub struct Inbox<T: Send + 'static>(flume::Receiver<T>);

impl<T: Send + 'static> Inbox<T> {
    pub async fn recv(&self) -> Option<T> {
        self.0.recv_async().await.ok()
    }
}

/// Starts a pinned (when `cpu` is given) executor thread running `main`.
pub fn start_core<F, Fut>(
    index: usize,
    cpu: Option<usize>,
    io_memory: usize,
    main: F,
) -> io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let placement = match cpu {
        Some(c) => Placement::Fixed(c),
        None => Placement::Unbound,
    };
    let builder = LocalExecutorBuilder::new(placement)
        .name(&format!("percore-shard-{index}"))
        .io_memory(io_memory);
    // glommio's own join handle wraps a thread; a plain thread lets the caller report a
    // failure to build the executor (io_uring unavailable, locked memory) precisely.
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let handle = std::thread::Builder::new()
        .name(format!("percore-{index}"))
        .spawn(move || {
            let ex = match builder.make() {
                Ok(ex) => {
                    let _ = tx.send(Ok(()));
                    ex
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            ex.run(main());
        })?;
    match rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(io::Error::other(e)),
        Err(_) => Err(io::Error::other("executor thread exited during start")),
    }
}

/// Spawns a latency-critical task on the current core (connections, router).
pub fn spawn<F: Future<Output = ()> + 'static>(f: F) {
    glommio::spawn_local(f).detach();
}

thread_local! {
    static BACKGROUND: std::cell::Cell<Option<TaskQueueHandle>> = const { std::cell::Cell::new(None) };
    static CONNECTIONS: std::cell::Cell<Option<TaskQueueHandle>> = const { std::cell::Cell::new(None) };
}

/// How long a runnable connection may wait while others run: the executor polls for I/O
/// at least this often while connection tasks are runnable.
///
/// This is a task queue's latency, not the executor-wide `preempt_timer`: with
/// `preempt_timer(500 µs)` set on the builder, about 1 start in 150 of a 4-shard server
/// left one executor asleep before it had run its first task (seen with a start/stop loop
/// under CPU load: 2 hangs in 300 starts with it, none in 900 without).
const CONNECTION_LATENCY: Duration = Duration::from_micros(500);

/// Spawns a client connection on a task queue whose latency bound keeps I/O polled every
/// 500 µs while connections are busy (see `yield_if_needed` in the read loop). Created on
/// first use, after the core has started.
pub fn spawn_connection<F: Future<Output = ()> + 'static>(f: F) {
    spawn_in(&CONNECTIONS, Shares::Static(1000), "connections", f);
}

/// Spawns background work (active expiry, lazy free, rehash, snapshots) on a low-share task
/// queue, so the scheduler favours connections when both are runnable. It has the same
/// latency bound: glommio polls I/O only when the running queue is preempted, and a queue
/// without a bound is preempted after glommio's default of 100 ms, so background work held
/// the core for its whole time slice while clients' requests waited unseen (25-100 ms
/// stalls while a 10M-key table grew).
pub fn spawn_background<F: Future<Output = ()> + 'static>(f: F) {
    spawn_in(&BACKGROUND, Shares::Static(100), "background", f);
}

/// Spawns `f` into this core's task queue kept in `queue`, creating it on first use with
/// `shares` and the [`CONNECTION_LATENCY`] bound.
fn spawn_in<F: Future<Output = ()> + 'static>(
    queue: &'static std::thread::LocalKey<std::cell::Cell<Option<TaskQueueHandle>>>,
    shares: Shares,
    name: &str,
    f: F,
) {
    let tq = queue.with(|q| match q.get() {
        Some(tq) => tq,
        None => {
            let tq = glommio::executor().create_task_queue(
                shares,
                Latency::Matters(CONNECTION_LATENCY),
                name,
            );
            q.set(Some(tq));
            tq
        }
    });
    match glommio::spawn_local_into(f, tq) {
        Ok(t) => t.detach(),
        Err(e) => panic!("creating a task in a queue this core just made cannot fail: {e}"),
    };
}

pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// Yields to other tasks if this one has run past its time slice.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

/// A listening socket on this core (SO_REUSEPORT: every core binds the same address and the
/// kernel spreads connections across them).
pub struct Listener(glommio::net::TcpListener);

impl Listener {
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        glommio::net::TcpListener::bind(addr)
            .map(Listener)
            .map_err(io::Error::from)
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        let s = self.0.accept().await.map_err(io::Error::from)?;
        Ok(Stream(s))
    }
}

/// A connected client socket.
pub struct Stream(glommio::net::TcpStream);

impl Stream {
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }

    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).await
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr().map_err(io::Error::from)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr().map_err(io::Error::from)
    }

    pub fn set_nodelay(&self) -> io::Result<()> {
        self.0.set_nodelay(true).map_err(io::Error::from)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A file written through io_uring and made visible atomically (snapshots).
///
/// Bytes go to `<path>.tmp` through glommio's DMA stream writer (O_DIRECT, so a snapshot does
/// not flush the page cache of a cache server), or through buffered io_uring writes where
/// the filesystem refuses O_DIRECT (tmpfs, some overlay filesystems). [`FileWriter::commit`]
/// syncs the data, renames the file over `path` and syncs the directory: after a crash the
/// file is there whole or not at all.
pub struct FileWriter {
    out: FileOut,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
}

enum FileOut {
    Dma(glommio::io::DmaStreamWriter),
    Buffered(glommio::io::StreamWriter),
}

impl FileWriter {
    pub async fn create(path: &std::path::Path) -> io::Result<FileWriter> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let out = match glommio::io::DmaFile::create(&tmp).await {
            Ok(f) => FileOut::Dma(
                glommio::io::DmaStreamWriterBuilder::new(f)
                    .with_buffer_size(1 << 20)
                    .with_write_behind(4)
                    .build(),
            ),
            Err(_) => {
                let f = glommio::io::BufferedFile::create(&tmp)
                    .await
                    .map_err(io::Error::from)?;
                FileOut::Buffered(glommio::io::StreamWriterBuilder::new(f).build())
            }
        };
        Ok(FileWriter {
            out,
            tmp,
            path: path.to_path_buf(),
        })
    }

    pub async fn write(&mut self, b: &[u8]) -> io::Result<()> {
        match &mut self.out {
            FileOut::Dma(w) => w.write_all(b).await,
            FileOut::Buffered(w) => w.write_all(b).await,
        }
    }

    /// Syncs and closes the file, renames it into place and syncs the directory.
    pub async fn commit(self) -> io::Result<()> {
        match self.out {
            FileOut::Dma(mut w) => {
                w.sync().await.map_err(io::Error::from)?;
                w.close().await?;
            }
            // The buffered stream writer syncs the file as it closes.
            FileOut::Buffered(mut w) => w.close().await?,
        }
        glommio::io::rename(&self.tmp, &self.path)
            .await
            .map_err(io::Error::from)?;
        let parent = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let dir = glommio::io::Directory::open(&parent)
            .await
            .map_err(io::Error::from)?;
        dir.sync().await.map_err(io::Error::from)?;
        let _ = dir.close().await;
        Ok(())
    }

    /// Drops an unfinished file.
    pub async fn abandon(self) {
        let _ = match self.out {
            FileOut::Dma(mut w) => w.close().await,
            FileOut::Buffered(mut w) => w.close().await,
        };
        let _ = glommio::io::remove(&self.tmp).await;
    }
}
