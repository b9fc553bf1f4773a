//! Redis RDB files in and out: loading one at start (`--import-rdb FILE`, or `dir` +
//! `dbfilename` naming an RDB where no percore snapshot set is) and writing one from a
//! snapshot set (`percore export-rdb DIR FILE`, and after every save when `rdb-export` names
//! a file).
//!
//! Import: every core reads the whole file (one copy in memory, shared), keeping the keys
//! that route to it and stepping over the others' values without building them
//! ([`FileReader::next_record_keeping`]); all cores read in parallel, so loading takes about
//! one pass over the file plus a 1/n share of the value building. One reader routing
//! records to the cores would build each value once, but serialises the reading on one core
//! and moves every value through a mailbox; stepping over a value is a few length reads,
//! much cheaper than building it. Core 0 checks the file's CRC64 (any core's failure stops
//! the start). Keys whose deadline has passed are dropped, as Redis drops them when it
//! loads; IDLE and FREQ become the key's LRU/LFU word as RESTORE's IDLETIME/FREQ do; a key
//! twice in a database is refused, as Redis refuses it. Function libraries are loaded by
//! core 0. A damaged or truncated file refuses the start with the offset and the reason
//! (the process exits: nothing half-loaded ever serves), unless `load-corrupt-snapshot yes`
//! asks for the keys read before the damage.
//!
//! Export: each shard file of the set is loaded into a scratch shard and its keys are
//! encoded as Redis 7.0 encodes them ([`percore_shard::rdb::value::encode`]) into one
//! buffer per database; then the file is written as Redis 7.0 writes one: `REDIS0010`, aux
//! fields, the function libraries, each database (SELECTDB, RESIZEDB, its keys with their
//! deadlines), EOF and the CRC64. Memory: one shard's keys plus the encoded file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use percore_shard::rdb::file::{FileReader, Record};
use percore_shard::rdb::{self, put_len, put_string};
use percore_shard::{Entry, Shard, ShardConfig, DB_COUNT};

use crate::config::Config;
use crate::core::now_ms;
use crate::persist;

/// What an import loaded into one shard.
#[derive(Default, Debug)]
pub struct Imported {
    pub keys: usize,
    pub expired: usize,
    pub functions: usize,
    /// The damage `load-corrupt-snapshot yes` loaded past.
    pub error: Option<String>,
}

/// Whether the file at `path` starts like a Redis RDB file.
pub fn is_rdb(path: &Path) -> bool {
    let mut head = [0u8; 5];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"REDIS"
}

/// The RDB file the server starts from, if any: `--import-rdb`, or `dir/dbfilename` when it
/// is an RDB file; either only while no snapshot set is in `dir`. Once percore has saved, its
/// set is what it starts from, even with `import-rdb` still set (in a config file, a service
/// unit): an import never discards what was written since. Core 0 says so in the log.
pub fn file_at_start(cfg: &Config, core: usize) -> Option<PathBuf> {
    let has_set = persist::manifest_path(cfg).exists();
    if !cfg.import_rdb.is_empty() {
        if has_set {
            if core == 0 {
                crate::log::warn(&format!(
                    "import-rdb {} ignored: a snapshot set is in {} (loaded instead; move it away to import again)",
                    cfg.import_rdb, cfg.dir
                ));
            }
            return None;
        }
        return Some(PathBuf::from(&cfg.import_rdb));
    }
    let path = Path::new(&cfg.dir).join(&cfg.dbfilename);
    (!has_set && is_rdb(&path)).then_some(path)
}

/// Loads the keys of the RDB file at `path` that route to shard `core` of `shards` into
/// `sh`; core 0 also loads its function libraries.
pub fn import(
    cfg: &Config,
    path: &Path,
    sh: &mut Shard,
    core: usize,
    shards: usize,
) -> Result<Imported, String> {
    let bytes = shared_read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut imp = Import::new(&bytes, sh, core, shards);
    let r = loop {
        match imp.step(sh, usize::MAX) {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
    };
    imp.finish(cfg, path, r)
}

/// The bytes of the file at `path`, read once for all the cores loading it at the same
/// time: the first reads it, the others share that copy, which is freed when the last is
/// done. (A mapping would share it too, but a file truncated while it is read would kill
/// the process with SIGBUS; an RDB file is the user's, not percore's.)
fn shared_read(path: &Path) -> std::io::Result<Arc<Vec<u8>>> {
    static LAST: Mutex<Option<(PathBuf, Weak<Vec<u8>>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bytes) = last
        .as_ref()
        .filter(|(p, _)| p == path)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(bytes);
    }
    let bytes = Arc::new(std::fs::read(path)?);
    *last = Some((path.to_path_buf(), Arc::downgrade(&bytes)));
    Ok(bytes)
}

/// One shard's load of an RDB file, record by record: [`import`] runs it to the end in one
/// go (at start, before any client is served); a replica's full sync runs it in slices
/// ([`Import::step`]) between which its core answers its clients (LOADING), as Redis
/// answers them every 2 MB of its load. Every core reads the whole file, storing the keys
/// that route to it; core 0 checks the checksum for all and collects the function
/// libraries.
pub struct Import<'a> {
    r: Option<FileReader<'a>>,
    /// The reader could not start (a bad header): reported by the first step.
    start_error: Option<String>,
    len: usize,
    core: usize,
    shards: usize,
    current_db: usize,
    now: u64,
    out: Imported,
    libraries: Vec<u8>,
    keep_expired: bool,
}

impl<'a> Import<'a> {
    pub fn new(bytes: &'a [u8], sh: &mut Shard, core: usize, shards: usize) -> Import<'a> {
        let (r, start_error) = match FileReader::new(bytes, sh.config.clone(), sh.next_rand()) {
            Ok(mut r) => {
                r.verify_checksum = core == 0;
                (Some(r), None)
            }
            Err(e) => (None, Some(at(e))),
        };
        Import {
            r,
            start_error,
            len: bytes.len(),
            core,
            shards,
            current_db: 0,
            now: now_ms(),
            out: Imported::default(),
            libraries: Vec::new(),
            keep_expired: false,
        }
    }

    /// Keeps keys whose deadline has passed (a replica's load: its primary deletes them).
    pub fn keep_expired(&mut self) {
        self.keep_expired = true;
    }

    /// Bytes of the file read so far.
    pub fn offset(&self) -> usize {
        self.r.as_ref().map_or(0, |r| r.offset())
    }

    /// Reads at most `records` more records into `sh`; true when the file is done.
    pub fn step(&mut self, sh: &mut Shard, records: usize) -> Result<bool, String> {
        if let Some(e) = self.start_error.take() {
            return Err(e);
        }
        let Some(r) = self.r.as_mut() else {
            return Ok(true);
        };
        let (core, shards) = (self.core, self.shards);
        let keep = &mut |k: &[u8]| crate::router::shard_of(k, shards) == core;
        for _ in 0..records {
            let offset = r.offset();
            match r.next_record_keeping(keep).map_err(at)? {
                Some(Record::SelectDb(db)) if (db as usize) < DB_COUNT => {
                    self.current_db = db as usize
                }
                Some(Record::SelectDb(db)) => {
                    return Err(format!(
                        "error at offset {offset}: database {db} (percore has {DB_COUNT})"
                    ));
                }
                Some(Record::Key {
                    key,
                    db,
                    expire_at_ms,
                    freq,
                    idle_s,
                    value,
                }) => {
                    if expire_at_ms != 0 && expire_at_ms < self.now && !self.keep_expired {
                        self.out.expired += 1;
                        continue;
                    }
                    let clock = rdb::arriving_clock(sh.config.evict.policy, idle_s, freq, self.now);
                    let entry = Entry {
                        value,
                        expire_at_ms,
                        clock,
                    };
                    // Redis refuses such a file too ("Duplicated key found in RDB file").
                    if !sh.store_loaded(db as usize, &key, entry) {
                        return Err(format!(
                            "error at offset {offset}: duplicate key '{}' in database {db}",
                            key.escape_ascii()
                        ));
                    }
                    self.out.keys += 1;
                }
                // The database's table is sized for this shard's share of its keys up
                // front, as Redis sizes its own: no rehashing while it fills. A key record
                // takes at least 3 bytes, which bounds what a hostile size can ask for.
                Some(Record::ResizeDb { keys, .. }) => {
                    let n = keys.min((self.len / 3) as u64) as usize / self.shards;
                    sh.dbs[self.current_db].dict.reserve(n);
                }
                Some(Record::Function(code)) => {
                    self.libraries.push(rdb::OPCODE_FUNCTION2);
                    put_string(&mut self.libraries, &code);
                }
                Some(_) => {}
                None => return Ok(true),
            }
        }
        Ok(false)
    }

    /// What the load came to, given how its steps ended (`r`): a damaged file refuses the
    /// load unless `load-corrupt-snapshot yes` keeps what was read before the damage; core 0
    /// then installs the function libraries.
    pub fn finish(
        mut self,
        cfg: &Config,
        path: &Path,
        r: Result<(), String>,
    ) -> Result<Imported, String> {
        let refuse = |e: String| {
            format!("{e}; refusing to start on a damaged RDB file (set load-corrupt-snapshot yes to load the keys before the damage)")
        };
        if let Err(e) = r {
            let e = format!("{}: {e}", path.display());
            if !cfg.load_corrupt_snapshot {
                return Err(refuse(e));
            }
            crate::log::warn(&format!("loading what is valid: {e}"));
            self.out.error = Some(e);
        }
        if self.core == 0 && !self.libraries.is_empty() {
            self.out.functions =
                crate::functions::restore_at_start(&rdb::seal(std::mem::take(&mut self.libraries)))
                    .map_err(|e| refuse(format!("{}: functions: {e}", path.display())))?;
        }
        Ok(self.out)
    }
}

fn at(e: rdb::value::DecodeError) -> String {
    format!("error at offset {}: {}", e.offset, e.what)
}

/// Writes the snapshot set `cfg` names (`dir`, `dbfilename`) as a Redis RDB file (version
/// 10) at `out`, through `<out>.tmp` and a rename. Returns the number of keys written.
pub fn export_set(cfg: &Config, out: &Path) -> Result<u64, String> {
    let m = persist::read_manifest(cfg)?.ok_or_else(|| {
        format!(
            "{}: no manifest: no snapshot set here",
            persist::manifest_path(cfg).display()
        )
    })?;
    let now = now_ms();
    let config = ShardConfig::default();
    // Each database's keys, encoded, with their counts (keys, with a deadline).
    let mut dbs: Vec<(Vec<u8>, u64, u64)> = vec![Default::default(); DB_COUNT];
    for i in 0..m.shards {
        let mut sh = Shard::new(i as u64 + 1, config.clone());
        persist::read_file(cfg, &m, i, &mut |block| {
            sh.load_block(block, now, &mut |_| true);
        })?;
        for (db, (buf, keys, expires)) in sh.dbs.iter_mut().zip(dbs.iter_mut()) {
            let (k, e) = encode_keys(&mut db.dict, now, config.list_limits, buf);
            *keys += k;
            *expires += e;
        }
    }
    let libraries = match &m.functions {
        Some(p) => rdb::open(p)
            .ok_or("the manifest's functions: bad version or checksum")?
            .to_vec(),
        None => Vec::new(),
    };
    let file = encode_file(&dbs, &libraries, m.created_ms);
    write_atomically(out, &file)?;
    Ok(dbs.iter().map(|d| d.1).sum())
}

/// Appends every live key of `dict` to `buf` as RDB records (the deadline, then the type,
/// the key and the value, as Redis 7.0 encodes them); returns the keys written and how many
/// had a deadline.
pub(crate) fn encode_keys(
    dict: &mut percore_shard::dict::Dict,
    now: u64,
    limits: percore_shard::types::list::ListLimits,
    buf: &mut Vec<u8>,
) -> (u64, u64) {
    let (mut keys, mut expires) = (0, 0);
    let mut cursor = 0;
    let mut value = Vec::new();
    loop {
        cursor = dict.scan(cursor, |key, e| {
            if e.is_expired(now) {
                return;
            }
            let at = e.expire_at_ms();
            if at != 0 {
                buf.push(rdb_opcode::EXPIRETIME_MS);
                buf.extend_from_slice(&at.to_le_bytes());
                expires += 1;
            }
            value.clear();
            rdb::value::encode(e.value(), limits, &mut value);
            buf.push(value[0]);
            put_string(buf, key);
            buf.extend_from_slice(&value[1..]);
            keys += 1;
        });
        if cursor == 0 {
            return (keys, expires);
        }
    }
}

/// Record opcodes written.
pub(crate) mod rdb_opcode {
    pub const AUX: u8 = 250;
    pub const RESIZEDB: u8 = 251;
    pub const EXPIRETIME_MS: u8 = 252;
    pub const SELECTDB: u8 = 254;
    pub const EOF: u8 = 255;
}

/// A whole RDB file: the header, aux fields as Redis 7.0 writes them, `libraries` (FUNCTION2
/// records), each database of `dbs` that has keys, EOF and the CRC64.
fn encode_file(dbs: &[(Vec<u8>, u64, u64)], libraries: &[u8], created_ms: u64) -> Vec<u8> {
    let size = dbs.iter().map(|d| d.0.len() + 24).sum::<usize>() + libraries.len() + 128;
    let mut f = Vec::with_capacity(size);
    put_head(&mut f, libraries, created_ms);
    for (i, (buf, keys, expires)) in dbs.iter().enumerate() {
        if *keys == 0 {
            continue;
        }
        f.push(rdb_opcode::SELECTDB);
        put_len(&mut f, i as u64);
        f.push(rdb_opcode::RESIZEDB);
        put_len(&mut f, *keys);
        put_len(&mut f, *expires);
        f.extend_from_slice(buf);
    }
    f.push(rdb_opcode::EOF);
    let crc = rdb::crc64(0, &f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

/// The start of an RDB file as Redis 7.0 writes it: `REDIS0010`, the aux fields, and
/// `libraries` (FUNCTION2 records).
pub(crate) fn put_head(f: &mut Vec<u8>, libraries: &[u8], created_ms: u64) {
    f.extend_from_slice(format!("REDIS{:04}", rdb::RDB_VERSION).as_bytes());
    let created = (created_ms / 1000).to_string();
    let aux: [(&str, &str); 5] = [
        ("redis-ver", crate::commands::REDIS_VERSION),
        ("redis-bits", "64"),
        ("ctime", &created),
        ("used-mem", "0"),
        ("aof-base", "0"),
    ];
    for (k, v) in aux {
        f.push(rdb_opcode::AUX);
        put_string(f, k.as_bytes());
        put_string(f, v.as_bytes());
    }
    f.extend_from_slice(libraries);
}

/// Writes `bytes` to `<path>.tmp`, syncs it and renames it to `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
}

/// `percore export-rdb DIR FILE [--dbfilename NAME]`: returns the process exit code.
pub fn export_command(cfg: &Config, out: &str) -> i32 {
    let started = std::time::Instant::now();
    match export_set(cfg, Path::new(out)) {
        Ok(keys) => {
            println!(
                "{out}: wrote {keys} keys as a Redis RDB (version {}) in {:.3} s",
                rdb::RDB_VERSION,
                started.elapsed().as_secs_f64()
            );
            0
        }
        Err(e) => {
            eprintln!("percore: {e}");
            1
        }
    }
}

/// After a save: writes the set as `dir/<rdb-export>` when that setting names a file, in a
/// thread of its own so the core goes on serving; resolves when the file is written.
pub async fn export_after_save(cfg: std::sync::Arc<Config>) -> Result<(), String> {
    if cfg.rdb_export.is_empty() {
        return Ok(());
    }
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new()
        .name("rdb-export".into())
        .spawn(move || {
            let out = Path::new(&cfg.dir).join(&cfg.rdb_export);
            let started = std::time::Instant::now();
            let r = export_set(&cfg, &out).map(|keys| {
                crate::log::notice(&format!(
                    "RDB written to {}: {keys} keys, {:.3} s",
                    cfg.rdb_export,
                    started.elapsed().as_secs_f64()
                ))
            });
            let _ = tx.send(r);
        })
        .map_err(|e| format!("cannot start the RDB export: {e}"))?;
    rx.await
        .unwrap_or_else(|_| Err("the RDB export stopped".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_files_read_back_and_keys_are_kept_or_skipped_by_route() {
        let mut v = Vec::new();
        rdb::value::encode(
            percore_shard::Value::from_bytes(b"hello").as_ref(),
            Default::default(),
            &mut v,
        );
        let mut db0 = vec![v[0]];
        put_string(&mut db0, b"a");
        db0.extend_from_slice(&v[1..]);
        let mut db3 = vec![rdb_opcode::EXPIRETIME_MS];
        db3.extend_from_slice(&1u64.to_le_bytes());
        db3.extend_from_slice(&db0);
        let mut dbs = vec![Default::default(); DB_COUNT];
        dbs[0] = (db0, 1, 0);
        dbs[3] = (db3, 1, 1);
        let f = encode_file(&dbs, &[], 0);
        // Read to the end (as at start), or one record per step (a replica's sliced load).
        let read = |f: &[u8], sh: &mut Shard, core: usize, shards: usize, slice: usize| {
            let mut imp = Import::new(f, sh, core, shards);
            loop {
                match imp.step(sh, slice) {
                    Ok(true) => return Ok(imp.out),
                    Ok(false) => {}
                    Err(e) => return Err(e),
                }
            }
        };
        for slice in [usize::MAX, 1] {
            let mut sh = Shard::new(7, ShardConfig::default());
            let out = read(&f, &mut sh, 0, 1, slice).unwrap();
            // The key of database 3 expired long ago.
            assert_eq!((out.keys, out.expired), (1, 1));
            assert_eq!(sh.dbs[0].dict.len(), 1);
        }
        // A core whose shard the key does not route to keeps nothing.
        let other = 1 - crate::router::shard_of(b"a", 2);
        let mut none = Shard::new(7, ShardConfig::default());
        assert_eq!(read(&f, &mut none, other, 2, 1).unwrap().keys, 0);
        // The same key twice in a database is refused.
        let twice = [dbs[0].0.clone(), dbs[0].0.clone()].concat();
        dbs[0] = (twice, 2, 0);
        let dup = encode_file(&dbs, &[], 0);
        let e = read(&dup, &mut Shard::new(7, ShardConfig::default()), 0, 1, 1);
        assert!(e.unwrap_err().contains("duplicate key 'a' in database 0"));
        let mut bad = f.clone();
        bad.truncate(f.len() - 3);
        let e = read(&bad, &mut none, other, 2, usize::MAX);
        assert!(e.unwrap_err().contains("offset"));
    }
}
