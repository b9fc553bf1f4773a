//! Snapshots on disk: SAVE, loading at start, and `percore check-snapshot`.
//!
//! A snapshot set is one file per shard, `<dbfilename>-<id>-<shard>-of-<shards>.pcs` in the
//! format of [`percore_shard::snapshot`], and the manifest `<dbfilename>.manifest`, a short
//! text naming the set's id, shard count and every file with its size and xxh3, and, when
//! libraries of functions are loaded, their FUNCTION DUMP payload (hex, with its own CRC64;
//! libraries are global, not a shard's, and small). A manifest without that line (an older
//! set) loads with no libraries.
//!
//! Invariants:
//! - Files are written to `<name>.tmp`, synced and renamed ([`runtime::FileWriter`]); the
//!   manifest is written the same way and last. Files carry the set's id in their names, so
//!   a new set never overwrites the files of the one its manifest still names: a crash at any
//!   moment leaves the previous set loadable and whole. The previous set's files are removed
//!   only after the new manifest is in place.
//! - Files without a manifest naming them are never loaded.
//! - Every byte read back is checked (block checksums and validation, sizes and whole-file
//!   checksums against the manifest); a fault is reported with file, block and offset and
//!   the server refuses to start, unless `load-corrupt-snapshot yes` asks for the valid part.
//! - Each core loads its own shard, all in parallel. A set written with another shard count
//!   is read by every core, each keeping the records that route to it.
//!
//! - SAVE and BGSAVE are the same machinery: one message per core begins a point-in-time
//!   snapshot of its shard (copy-before-write, [`percore_shard::dict::Snap`]: no fork, no
//!   copy up front) and the core streams its file from its background task queue. BGSAVE
//!   pauses between steps so clients keep their latency; SAVE walks at full speed and
//!   answers when the set is on disk (it does not stop the server, unlike Redis's).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use percore_shard::snapshot::{Reader, VERSION};
use percore_shard::{Shard, DB_COUNT};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::config::Config;
use crate::core::{call_all, now_ms, Core};
use crate::runtime;

const MANIFEST_MAGIC: &str = "percore-snapshot-set";

/// One file of a set, as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetFile {
    pub name: String,
    pub bytes: u64,
    pub xxh3: u64,
}

/// The manifest: what makes a set of files one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub id: u64,
    pub shards: usize,
    pub created_ms: u64,
    pub files: Vec<SetFile>,
    /// The libraries' FUNCTION DUMP payload, if any were loaded.
    pub functions: Option<Vec<u8>>,
    /// Keys were placed by hash slot (cluster mode, `placement slots`), not by xxh3.
    pub by_slot: bool,
}

impl Manifest {
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{MANIFEST_MAGIC} {VERSION}\nid {}\nshards {}\ncreated_ms {}\n",
            self.id, self.shards, self.created_ms
        );
        for f in &self.files {
            let _ = writeln!(s, "file {} {} {:016x}", f.name, f.bytes, f.xxh3);
        }
        if let Some(p) = &self.functions {
            s.push_str("functions ");
            for b in p {
                let _ = write!(s, "{b:02x}");
            }
            s.push('\n');
        }
        if self.by_slot {
            s.push_str("placement slots\n");
        }
        let sum = xxh3_64(s.as_bytes());
        let _ = writeln!(s, "checksum {sum:016x}");
        s
    }

    pub fn decode(text: &str) -> Result<Manifest, String> {
        let body_end = text
            .rfind("checksum ")
            .ok_or("no checksum line (truncated?)")?;
        let (body, tail) = text.split_at(body_end);
        let want = tail
            .strip_prefix("checksum ")
            .and_then(|t| t.strip_suffix('\n'))
            .filter(|h| h.len() == 16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or("bad checksum line")?;
        if xxh3_64(body.as_bytes()) != want {
            return Err("manifest checksum mismatch".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some(&format!("{MANIFEST_MAGIC} {VERSION}")) {
            return Err(format!("not a version {VERSION} percore manifest"));
        }
        let mut field = |name: &str| -> Result<u64, String> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| format!("missing or bad '{}' line", name.trim()))
        };
        let id = field("id ")?;
        let shards = field("shards ")? as usize;
        let created_ms = field("created_ms ")?;
        let mut files = Vec::new();
        let mut functions = None;
        let mut by_slot = false;
        for l in lines {
            let parts: Vec<&str> = l.split(' ').collect();
            match parts.as_slice() {
                ["functions", hex] if functions.is_none() && hex.len() % 2 == 0 => {
                    let bytes: Option<Vec<u8>> = (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                        .collect();
                    functions = Some(bytes.ok_or("bad functions line")?);
                }
                ["placement", "slots"] => by_slot = true,
                ["file", name, bytes, sum] if !name.contains('/') => files.push(SetFile {
                    name: name.to_string(),
                    bytes: bytes.parse().map_err(|_| format!("bad size in '{l}'"))?,
                    xxh3: u64::from_str_radix(sum, 16).map_err(|_| format!("bad sum in '{l}'"))?,
                }),
                _ => return Err(format!("unexpected line '{l}'")),
            }
        }
        if shards == 0 || files.len() != shards {
            return Err(format!("{} files for {shards} shards", files.len()));
        }
        Ok(Manifest {
            id,
            shards,
            created_ms,
            files,
            functions,
            by_slot,
        })
    }
}

pub fn manifest_path(cfg: &Config) -> PathBuf {
    Path::new(&cfg.dir).join(format!("{}.manifest", cfg.dbfilename))
}

fn file_name(cfg: &Config, id: u64, shard: usize, shards: usize) -> String {
    format!("{}-{id}-{shard}-of-{shards}.pcs", cfg.dbfilename)
}

/// Whether `name` is one of this configuration's set files, finished or not
/// (`<dbfilename>-<id>-<shard>-of-<shards>.pcs`, optionally `.tmp`).
fn is_set_file(cfg: &Config, name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(cfg.dbfilename.as_str())
        .and_then(|r| r.strip_prefix('-'))
    else {
        return false;
    };
    let Some(rest) = rest
        .strip_suffix(".pcs.tmp")
        .or_else(|| rest.strip_suffix(".pcs"))
    else {
        return false;
    };
    let mut parts = rest.split('-');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next())
        && digits(parts.next())
        && parts.next() == Some("of")
        && digits(parts.next())
        && parts.next().is_none()
}

/// Removes set files that the current manifest does not name: what an interrupted save
/// (a crash, a second SIGINT, a full disk) left behind. Nothing is removed when there is a
/// manifest that cannot be read.
fn remove_stale_files(cfg: &Config, current: Option<&Manifest>) {
    let Ok(entries) = std::fs::read_dir(&cfg.dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let listed = current.is_some_and(|m| m.files.iter().any(|f| f.name == name));
        let manifest_tmp = name == format!("{}.manifest.tmp", cfg.dbfilename);
        if (is_set_file(cfg, name) && !listed) || manifest_tmp {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    crate::log::notice(&format!("removed {name}, left by an unfinished save"))
                }
                Err(err) => crate::log::warn(&format!("cannot remove {name}: {err}")),
            }
        }
    }
}

/// Removes every file a failed save of set `id` may have left, finished or not.
fn remove_set_files(cfg: &Config, id: u64, shards: usize) {
    for shard in 0..shards {
        let name = file_name(cfg, id, shard, shards);
        let _ = std::fs::remove_file(Path::new(&cfg.dir).join(&name));
        let _ = std::fs::remove_file(Path::new(&cfg.dir).join(name + ".tmp"));
    }
    let mut tmp = manifest_path(cfg).into_os_string();
    tmp.push(".tmp");
    let _ = std::fs::remove_file(tmp);
}

/// The current set's manifest, if there is one.
pub fn read_manifest(cfg: &Config) -> Result<Option<Manifest>, String> {
    let path = manifest_path(cfg);
    match std::fs::read_to_string(&path) {
        Ok(t) => Manifest::decode(&t)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A set whose shards have begun their snapshots and are writing their files.
struct Started {
    cfg: std::sync::Arc<Config>,
    previous: Option<Manifest>,
    id: u64,
    now: u64,
    pending: Vec<(
        u64,
        futures_channel::oneshot::Receiver<Result<SetFile, String>>,
    )>,
}

/// Begins a snapshot on every core — one message each: the barrier — and has each core
/// write its file from its background task queue. `paced`: pause between steps (BGSAVE,
/// while clients are served) or walk at full speed (SAVE, whose client waits).
///
/// The barrier is ordered with transactions spanning shards: it holds every shard whole
/// (the scheduler's locks, `txlock.rs`) while the cores begin, so a transaction is in the
/// set entirely or not at all.
async fn start_set(core: &Rc<Core>, paced: bool) -> Result<Started, String> {
    let cfg = core.config.borrow().clone();
    std::fs::create_dir_all(&cfg.dir).map_err(|e| format!("ERR {}: {e}", cfg.dir))?;
    let previous = match read_manifest(&cfg) {
        Ok(m) => {
            remove_stale_files(&cfg, m.as_ref());
            m
        }
        Err(_) => None,
    };
    let now = now_ms();
    // Ids only grow, even if the clock steps back.
    let id = now.max(previous.as_ref().map_or(0, |m| m.id + 1));
    let shards = core.nshards();
    let tx = crate::txlock::new_tx();
    let mut whole = crate::txlock::Plan::default();
    (0..shards).for_each(|s| whole.add_all(s));
    crate::txlock::lock(core, tx, whole).await;
    // A replica loading its primary's payload holds part of a data set, which must never
    // replace the last good snapshot (a BGSAVE SCHEDULE'd before the load, a save that
    // waited for another). Checked under the locks, as late as a snapshot can begin.
    if core.global.repl.loading() {
        crate::txlock::unlock(core, tx, (0..shards).collect()).await;
        return Err(LOADING_NO_SAVE.into());
    }
    let pending = call_all(core, {
        let cfg = cfg.clone();
        move |c: &Core| {
            let (tx, rx) = futures_channel::oneshot::channel();
            let mut sh = c.shard.borrow_mut();
            let dirty = sh.stats.dirty;
            let header = sh.snapshot_begin(c.id as u32, shards as u32, now);
            drop(sh);
            let name = file_name(&cfg, id, c.id, shards);
            let path = Path::new(&cfg.dir).join(&name);
            let me =
                c.me.upgrade()
                    .expect("a core outlives the messages it runs");
            runtime::spawn_background(async move {
                let _ = tx.send(write_in_background(me, header, path, name, paced).await);
            });
            (dirty, rx)
        }
    })
    .await;
    crate::txlock::unlock(core, tx, (0..shards).collect()).await;
    Ok(Started {
        cfg,
        previous,
        id,
        now,
        pending,
    })
}

/// Waits for every shard's file, then writes the manifest.
/// A failed save removes every file it wrote.
async fn complete(core: &Rc<Core>, set: Started) -> Result<u64, String> {
    let shards = set.pending.len();
    let r = match gather(set.pending).await {
        Ok((files, dirty)) => {
            match finish_set(core, &set.cfg, set.previous, set.id, set.now, files, dirty).await {
                // The set stays saved (and is not removed) if its RDB copy fails; SAVE says so.
                Ok(()) => {
                    return crate::rdb_io::export_after_save(set.cfg)
                        .await
                        .map(|()| set.id)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    if r.is_err() {
        remove_set_files(&set.cfg, set.id, shards);
    }
    r.map(|()| set.id)
}

const IN_PROGRESS: &str = "ERR Background save already in progress";
const LOADING_NO_SAVE: &str =
    "ERR a synchronization's payload is loading: the data set is incomplete and is not saved";

/// SAVE: a snapshot of every shard, written at full speed; answers when the set is on disk.
/// Unlike Redis's SAVE it does not stop the server: the snapshot is point in time by
/// copy-before-write, so clients go on being served meanwhile. Returns the set's id.
pub async fn save(core: &Rc<Core>) -> Result<u64, String> {
    let g = &core.global;
    if g.saving.swap(true, Ordering::SeqCst) {
        return Err(IN_PROGRESS.into());
    }
    let started = std::time::Instant::now();
    let r = match start_set(core, false).await {
        Ok(set) => complete(core, set).await,
        Err(e) => Err(e),
    };
    g.saving.store(false, Ordering::SeqCst);
    g.last_save_ok.store(r.is_ok(), Ordering::Relaxed);
    match &r {
        Ok(id) => crate::log::notice(&format!(
            "DB saved on disk: snapshot {id}, {:.3} s",
            started.elapsed().as_secs_f64()
        )),
        Err(e) => crate::log::warn(&format!("SAVE failed: {e}")),
    }
    r
}

/// SAVE, after the BGSAVE or SAVE under way (if any) has ended: a save that began earlier
/// does not hold the writes made since, so the caller's snapshot must be a new one.
/// `what` names it in the log line said while waiting. Returns the set's id.
pub async fn save_after_running(core: &Rc<Core>, what: &str) -> Result<u64, String> {
    let mut waited = false;
    loop {
        match save(core).await {
            Err(e) if e == IN_PROGRESS => {
                if !std::mem::replace(&mut waited, true) {
                    crate::log::notice(&format!(
                        "Waiting for the background save to end before {what}..."
                    ));
                }
                runtime::sleep(Duration::from_millis(10)).await;
            }
            r => return r,
        }
    }
}

/// SHUTDOWN, and SIGTERM/SIGINT: saves when `save` asks (by default, when `save` points
/// are set), then lets every core close. While the final snapshot is taken no core writes a
/// reply, so every write a client saw acknowledged is in it; the gates close on all cores
/// before any snapshot begins, so a command acknowledged on one core cannot have run on
/// another after that core's snapshot point. A failed save (without `force`) cancels the
/// shutdown and opens the gates again, as Redis keeps serving then.
pub async fn shutdown(core: &Rc<Core>, save: Option<bool>, force: bool) -> Result<(), String> {
    let save = save.unwrap_or_else(|| !core.config.borrow().save.is_empty());
    if save {
        call_all(core, |c: &Core| c.replies.close()).await;
        match save_after_running(core, "the final save").await {
            // A replica loading its primary's payload holds part of a data set: saving it
            // would replace the last good snapshot with that part (Redis does not save
            // while loading). `start_set` refuses; the shutdown goes on without a save.
            Err(e) if e == LOADING_NO_SAVE => crate::log::warn(
                "Shutting down without saving: a synchronization's payload is still loading",
            ),
            Err(e) => {
                crate::log::warn(&format!("Error trying to save the DB, can't exit: {e}"));
                if !force {
                    call_all(core, |c: &Core| c.replies.open()).await;
                    return Err(e);
                }
            }
            Ok(_) => {}
        }
    }
    core.global.shutdown.store(true, Ordering::SeqCst);
    Ok(())
}

/// Writes the manifest of a set whose files are all in place, then removes the previous
/// set's files, and records the save.
async fn finish_set(
    core: &Rc<Core>,
    cfg: &Config,
    previous: Option<Manifest>,
    id: u64,
    now: u64,
    files: Vec<SetFile>,
    dirty: u64,
) -> Result<(), String> {
    let manifest = Manifest {
        id,
        shards: files.len(),
        created_ms: now,
        files,
        functions: crate::functions::any().then(crate::functions::dump_payload),
        by_slot: crate::router::by_slot(),
    };
    let mut w = runtime::FileWriter::create(&manifest_path(cfg))
        .await
        .map_err(|e| e.to_string())?;
    w.write(manifest.encode().as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    w.commit().await.map_err(|e| e.to_string())?;
    if let Some(prev) = previous {
        for f in prev.files.iter().filter(|f| !manifest.files.contains(f)) {
            let _ = std::fs::remove_file(Path::new(&cfg.dir).join(&f.name));
        }
    }
    let g = &core.global;
    g.last_save_ms.store(now, Ordering::Relaxed);
    g.dirty_at_save.store(dirty, Ordering::Relaxed);
    Ok(())
}

/// Collects the shards' results: their files, or the first error.
async fn gather(
    pending: Vec<(
        u64,
        futures_channel::oneshot::Receiver<Result<SetFile, String>>,
    )>,
) -> Result<(Vec<SetFile>, u64), String> {
    let mut files = Vec::with_capacity(pending.len());
    let mut dirty = 0;
    let mut first_error = None;
    for (d, rx) in pending {
        dirty += d;
        match rx.await {
            Ok(Ok(f)) => files.push(f),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert("a core stopped while saving".into());
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok((files, dirty))
}

/// How many buckets a background save walks between yields.
const BGSAVE_STEP_BUCKETS: usize = 256;
/// Buckets per step when the client waits for the save (SAVE, SHUTDOWN SAVE).
const SAVE_STEP_BUCKETS: usize = 4096;
/// The pause between two steps of a background save.
const BGSAVE_PAUSE: Duration = Duration::from_micros(100);

/// One core's part of a BGSAVE: walks its shard in bounded steps from the background task
/// queue and streams the blocks to its file. The walk always runs to its end, even after a
/// write error, so the shard's snapshot state is left clean.
async fn write_in_background(
    core: Rc<Core>,
    header: Vec<u8>,
    path: PathBuf,
    name: String,
    paced: bool,
) -> Result<SetFile, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut w = match runtime::FileWriter::create(&path).await {
        Ok(w) => Some(w),
        Err(e) => return Err(drain_after(&core, fail(e))),
    };
    let mut error = None;
    let mut h = Xxh3::new();
    let mut bytes = 0u64;
    let mut chunks = vec![header];
    loop {
        for c in chunks.drain(..) {
            h.update(&c);
            bytes += c.len() as u64;
            if let (Some(out), None) = (w.as_mut(), &error) {
                if let Err(e) = out.write(&c).await {
                    error = Some(fail(e));
                }
            }
        }
        let buckets = if paced {
            BGSAVE_STEP_BUCKETS
        } else {
            SAVE_STEP_BUCKETS
        };
        let more = core
            .shard
            .borrow_mut()
            .snapshot_step(buckets, &mut |b| chunks.push(b));
        if !more && chunks.is_empty() {
            break;
        }
        if !paced {
            runtime::yield_if_needed().await;
            continue;
        }
        // A pause after every step, not a conditional yield: it sends the core through its
        // reactor, so requests that arrived during the step are seen at once. With only
        // `yield_if_needed`, clients writing at 50k/s saw p99 in seconds during a 10M-key
        // BGSAVE. `rdb-key-save-delay` (tests only) lengthens it: a step walks about one
        // key per bucket.
        let delay = core.config.borrow().rdb_key_save_delay;
        runtime::sleep(BGSAVE_PAUSE + Duration::from_micros(delay * BGSAVE_STEP_BUCKETS as u64))
            .await;
    }
    let w = w.expect("created above");
    if let Some(e) = error {
        w.abandon().await;
        return Err(e);
    }
    w.commit().await.map_err(fail)?;
    Ok(SetFile {
        name,
        bytes,
        xxh3: h.digest(),
    })
}

/// Finishes a walk whose file could not be created; returns `e`.
fn drain_after(core: &Core, e: String) -> String {
    while core.shard.borrow_mut().snapshot_step(4096, &mut |_| {}) {}
    e
}

/// BGSAVE [SCHEDULE]: starts a point-in-time snapshot of every shard without fork or copy:
/// one message per core begins its snapshot (the barrier), each core then writes its file
/// from its background task queue while serving, and this core writes the manifest when all
/// are done. Returns the reply text.
pub async fn bgsave(core: &Rc<Core>, schedule: bool) -> Result<&'static str, String> {
    let g = &core.global;
    if g.saving.swap(true, Ordering::SeqCst) {
        if schedule {
            g.bgsave_scheduled.store(true, Ordering::SeqCst);
            return Ok("Background saving scheduled");
        }
        return Err(IN_PROGRESS.into());
    }
    let set = match start_set(core, true).await {
        Ok(set) => set,
        Err(e) => {
            g.saving.store(false, Ordering::SeqCst);
            return Err(e);
        }
    };
    g.bgsave_started_ms.store(set.now, Ordering::Relaxed);
    let core = core.clone();
    runtime::spawn_background(async move {
        let (id, now) = (set.id, set.now);
        let r = complete(&core, set).await;
        let g = &core.global;
        let secs = (now_ms().saturating_sub(now) / 1000) as i64;
        g.last_bgsave_s.store(secs, Ordering::Relaxed);
        g.last_save_ok.store(r.is_ok(), Ordering::Relaxed);
        g.bgsave_started_ms.store(0, Ordering::Relaxed);
        match r {
            Ok(_) => crate::log::notice(&format!(
                "Background saving terminated with success: snapshot {id}"
            )),
            Err(e) => crate::log::warn(&format!("Background saving error: {e}")),
        }
        g.saving.store(false, Ordering::SeqCst);
        if g.bgsave_scheduled.swap(false, Ordering::SeqCst) {
            let _ = bgsave(&core, false).await;
        }
    });
    Ok("Background saving started")
}

/// The `save` points, checked once a second by core 0: starts a BGSAVE when one is due.
pub async fn save_points_tick(core: &Rc<Core>) {
    let points = core.config.borrow().save.clone();
    let g = &core.global;
    if points.is_empty() || g.saving.load(Ordering::Relaxed) || core.global.repl.loading() {
        return;
    }
    let dirty: u64 = call_all(core, |c: &Core| c.shard.borrow().stats.dirty)
        .await
        .into_iter()
        .sum();
    let changes = dirty.saturating_sub(g.dirty_at_save.load(Ordering::Relaxed));
    let elapsed_s = now_ms().saturating_sub(g.last_save_ms.load(Ordering::Relaxed)) / 1000;
    // After a failed save, Redis waits 5 s before trying again.
    let retry_ok = g.last_save_ok.load(Ordering::Relaxed)
        || now_ms().saturating_sub(g.last_save_ms.load(Ordering::Relaxed)) > 5000;
    if let Some((s, n)) = points
        .iter()
        .find(|(s, n)| changes >= *n && elapsed_s >= *s)
    {
        if retry_ok {
            crate::log::notice(&format!("{n} changes in {s} seconds. Saving..."));
            let _ = bgsave(core, false).await;
        }
    }
}

/// A read-only view of a whole file.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &Path) -> std::io::Result<Mapped> {
        let f = std::fs::File::open(path)?;
        let len = f.metadata()?.len() as usize;
        if len == 0 {
            return Ok(Mapped {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a private read-only mapping of a file we opened; the descriptor may be
        // closed afterwards (the mapping keeps the file).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping is `len` readable bytes, alive until drop. Snapshot files are
        // never modified after they are renamed into place (a new set gets new names), so
        // nobody writes them while they are read.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps exactly the mapping made in `open`.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

/// Checks one file of `m` against the manifest and its own checksums, calling `on_block`
/// for every valid block. With `keep_going`, stops at the first bad block and reports it
/// while keeping what came before.
pub(crate) fn read_file(
    cfg: &Config,
    m: &Manifest,
    index: usize,
    on_block: &mut dyn FnMut(&percore_shard::snapshot::BlockView),
) -> Result<u64, String> {
    read_file_with(cfg, m, index, &mut |_| {}, on_block)
}

/// [`read_file`], with `on_start` shown the file's reader before its first block (the key
/// counts its end marker states, to size tables once).
fn read_file_with(
    cfg: &Config,
    m: &Manifest,
    index: usize,
    on_start: &mut dyn FnMut(&Reader),
    on_block: &mut dyn FnMut(&percore_shard::snapshot::BlockView),
) -> Result<u64, String> {
    let f = &m.files[index];
    let path = Path::new(&cfg.dir).join(&f.name);
    let map = Mapped::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = map.bytes();
    let at = |e: percore_shard::snapshot::SnapshotError| format!("{}: {e}", path.display());
    let mut r = Reader::new(bytes).map_err(at)?;
    if r.header.shard as usize != index || r.header.shards as usize != m.shards {
        return Err(format!(
            "{}: holds shard {} of {}, the manifest lists it as {index} of {}",
            path.display(),
            r.header.shard,
            r.header.shards,
            m.shards
        ));
    }
    on_start(&r);
    let mut records = 0;
    while let Some(block) = r.next_block().map_err(at)? {
        records += block.records().len() as u64;
        on_block(&block);
    }
    // Every block checked out; the size and whole-file checksum tie it to this manifest.
    if bytes.len() as u64 != f.bytes || xxh3_64(bytes) != f.xxh3 {
        return Err(format!(
            "{}: {} bytes with xxh3 {:016x}, the manifest says {} bytes with {:016x} (a file of another set?)",
            path.display(),
            bytes.len(),
            xxh3_64(bytes),
            f.bytes,
            f.xxh3
        ));
    }
    Ok(records)
}

/// How often a shard that is loading says how far it got.
const LOAD_PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What loading found.
#[derive(Default, Debug)]
pub struct Loaded {
    pub id: u64,
    pub keys: usize,
    pub errors: Vec<String>,
}

/// Loads this core's part of the current set into `sh` (at start, before serving).
pub fn load(cfg: &Config, sh: &mut Shard, core: usize, shards: usize) -> Result<Loaded, String> {
    let Some(m) = read_manifest(cfg)? else {
        return Ok(Loaded::default());
    };
    // The libraries are global: one core puts them back (before any core serves).
    if let (0, Some(p)) = (core, &m.functions) {
        if let Err(e) = crate::functions::restore_at_start(p) {
            let e = format!("{}: functions: {e}", manifest_path(cfg).display());
            if !cfg.load_corrupt_snapshot {
                return Err(format!("{e}; refusing to start on a damaged snapshot"));
            }
            crate::log::warn(&e);
        }
    }
    let now = now_ms();
    let mut out = Loaded {
        id: m.id,
        ..Loaded::default()
    };
    // The same shard count and placement: this core's file holds exactly its keys. Otherwise
    // every core reads every file and keeps the keys that route to it.
    let (files, reroute): (Vec<usize>, bool) =
        if m.shards == shards && m.by_slot == crate::router::by_slot() {
            (vec![core], false)
        } else {
            ((0..m.shards).collect(), true)
        };
    for i in files {
        let mut keys = 0;
        let started = std::time::Instant::now();
        let mut reported = started;
        // The tables are sized once, for this shard's share of the keys: loading never
        // rehashes (an empty table only, so the first file of a re-routed set sizes them).
        let counts = std::cell::Cell::new(None);
        let mut hint = |r: &Reader| counts.set(r.key_counts());
        let r = read_file_with(cfg, &m, i, &mut hint, &mut |block| {
            if let Some(counts) = counts.take() {
                let share = if reroute {
                    m.shards as f64 / shards as f64
                } else {
                    1.0
                };
                sh.snapshot_reserve(&counts, share, m.files[i].bytes as usize);
            }
            keys += sh.load_block(block, now, &mut |k| {
                !reroute || crate::router::shard_of(k, shards) == core
            });
            // A progress line every few seconds for a large set.
            if reported.elapsed() >= LOAD_PROGRESS_EVERY {
                reported = std::time::Instant::now();
                crate::log::notice(&format!(
                    "shard {core}: loading {}: {} keys so far ({:.0} s)",
                    m.files[i].name,
                    out.keys + keys,
                    started.elapsed().as_secs_f64()
                ));
            }
        });
        out.keys += keys;
        if let Err(e) = r {
            if !cfg.load_corrupt_snapshot {
                return Err(format!(
                    "{e}; refusing to start on a damaged snapshot (restore the files, move them away, or set load-corrupt-snapshot yes to load the valid part)"
                ));
            }
            crate::log::warn(&format!("loading what is valid: {e}"));
            out.errors.push(e);
        }
    }
    Ok(out)
}

/// `percore check-snapshot DIR`: verifies the set offline and says what it holds. Returns
/// the process exit code.
pub fn check(cfg: &Config) -> i32 {
    let m = match read_manifest(cfg) {
        Ok(Some(m)) => m,
        Ok(None) => {
            eprintln!(
                "{}: no manifest: no snapshot set here",
                manifest_path(cfg).display()
            );
            return 1;
        }
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    println!(
        "snapshot {} of {} shards, created at {} ms",
        m.id, m.shards, m.created_ms
    );
    let now = now_ms();
    let mut bad = 0;
    if let Some(p) = &m.functions {
        match crate::functions::count_in_payload(p) {
            Ok(n) => println!("  functions: ok, {n} libraries"),
            Err(e) => {
                bad += 1;
                println!("  {e}");
            }
        }
    }
    for i in 0..m.shards {
        let mut per_db = [0u64; DB_COUNT];
        let (mut expiring, mut expired, mut blocks) = (0u64, 0u64, 0u64);
        let r = read_file(cfg, &m, i, &mut |block| {
            blocks += 1;
            for rec in block.records() {
                if rec.value.is_more() {
                    continue; // the rest of a large collection: the same key
                }
                per_db[rec.db as usize] += 1;
                let at = rec.expire_at_ms;
                if at != 0 {
                    expiring += 1;
                    if now > at {
                        expired += 1;
                    }
                }
            }
        });
        match r {
            Ok(records) => {
                let dbs: Vec<String> = per_db
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(db, n)| format!("db{db}={n}"))
                    .collect();
                // A large collection is written in parts: records count them, keys do not.
                let keys: u64 = per_db.iter().sum();
                println!(
                    "  {}: ok, {} bytes, {blocks} blocks, {records} records, {keys} keys ({}), {expiring} with a deadline, {expired} already expired",
                    m.files[i].name,
                    m.files[i].bytes,
                    if dbs.is_empty() { "empty".to_string() } else { dbs.join(" ") }
                );
            }
            Err(e) => {
                bad += 1;
                println!("  {e}");
            }
        }
    }
    if bad > 0 {
        println!("{bad} of {} files damaged", m.shards);
        1
    } else {
        println!("all {} files verified", m.shards);
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_files_are_recognised_by_name_only_for_this_dbfilename() {
        let cfg = Config::default();
        for yes in ["percore-17-0-of-2.pcs", "percore-17-1-of-2.pcs.tmp"] {
            assert!(is_set_file(&cfg, yes), "{yes}");
        }
        for no in [
            "percore.manifest",
            "percore-17-0-of-2.pcs.bak",
            "percore-x-0-of-2.pcs",
            "percore-17-0-2.pcs",
            "percore-17-0-of-2-3.pcs",
            "other-17-0-of-2.pcs",
            "percore--0-of-2.pcs",
        ] {
            assert!(!is_set_file(&cfg, no), "{no}");
        }
    }

    #[test]
    fn manifests_round_trip_and_reject_damage() {
        let m = Manifest {
            id: 17,
            shards: 2,
            created_ms: 99,
            files: vec![
                SetFile {
                    name: "percore-17-0-of-2.pcs".into(),
                    bytes: 100,
                    xxh3: 0xabc,
                },
                SetFile {
                    name: "percore-17-1-of-2.pcs".into(),
                    bytes: 64,
                    xxh3: 1,
                },
            ],
            functions: Some(b"\xf5\x02ab\x0a\x00\x01\x02".to_vec()),
            by_slot: true,
        };
        let text = m.encode();
        assert_eq!(Manifest::decode(&text).unwrap(), m);
        for i in 0..text.len() {
            let mut bad = text.clone().into_bytes();
            bad[i] ^= 1;
            if let Ok(s) = String::from_utf8(bad) {
                assert!(Manifest::decode(&s).is_err(), "flip at {i} accepted");
            }
        }
        assert!(Manifest::decode(&text[..text.len() - 5]).is_err());
    }
}
