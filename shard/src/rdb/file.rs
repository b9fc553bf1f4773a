//! A whole Redis RDB file, read record by record (Redis's `rdbLoadRio`):
//!
//! ```text
//!  "REDIS" + 4 ASCII digits (the version)
//!  record*: AUX (0xFA) key value | SELECTDB (0xFE) db | RESIZEDB (0xFB) size expires
//!           | EXPIRETIME_MS (0xFC) u64 LE | EXPIRETIME (0xFD) u32 LE | IDLE (0xF8) len
//!           | FREQ (0xF9) u8 | FUNCTION2 (0xF5) code | FUNCTION (0xF6, 7.0 rc) …
//!           | MODULE_AUX (0xF7) … | a value type, the key, the value ([`super::value`])
//!  EOF (0xFF), then (version 5 on) the CRC64 of everything before it, little endian
//!  (0: written with `rdbchecksum no`)
//! ```
//!
//! [`FileReader::next_record`] yields one record at a time, so a loader need not hold more than
//! one value; every error names the file offset where reading stopped. Versions 1–11 are
//! read (11 is Redis 7.2's, whose values this reader knows). Module aux data is refused:
//! its format is the module's own. Nothing may follow the checksum.

use super::value::{self, DecodeError};
use super::{crc64, Reader};
use crate::{ShardConfig, Value};

/// Record opcodes (`RDB_OPCODE_*`): the bytes 245 to 255, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opcode {
    /// A function library's code.
    Function2,
    /// Redis 7.0 rc1/rc2's function record.
    Function,
    /// A module's own data: refused.
    ModuleAux,
    /// The next key's LRU idle seconds.
    Idle,
    /// The next key's LFU counter.
    Freq,
    /// A name and a value about the file (`redis-ver`, `ctime`, …).
    Aux,
    /// Sizes of the database that follows.
    ResizeDb,
    /// The next key's deadline in Unix milliseconds.
    ExpireTimeMs,
    /// The next key's deadline in Unix seconds (old files).
    ExpireTime,
    /// The database the keys that follow belong to.
    SelectDb,
    /// The end of the records; the checksum follows.
    Eof,
}

impl Opcode {
    const ALL: [Opcode; 11] = [
        Opcode::Function2,
        Opcode::Function,
        Opcode::ModuleAux,
        Opcode::Idle,
        Opcode::Freq,
        Opcode::Aux,
        Opcode::ResizeDb,
        Opcode::ExpireTimeMs,
        Opcode::ExpireTime,
        Opcode::SelectDb,
        Opcode::Eof,
    ];
    const FIRST: u8 = 245;

    /// The opcode `b` is; None for a value type.
    fn of(b: u8) -> Option<Opcode> {
        b.checked_sub(Self::FIRST).map(|i| Self::ALL[i as usize])
    }

    #[cfg(test)]
    fn byte(self) -> u8 {
        Self::FIRST + Self::ALL.iter().position(|&o| o == self).unwrap_or(0) as u8
    }
}

/// The newest RDB file version read.
pub const MAX_VERSION: u32 = 11;

/// One record of the file.
#[derive(Debug)]
pub enum Record {
    Aux {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    SelectDb(u64),
    ResizeDb {
        keys: u64,
        expires: u64,
    },
    /// A function library's code (FUNCTION2, or the 7.0 release candidates' record).
    Function(Vec<u8>),
    /// A key and its value; `expire_at_ms` 0 when none, `idle_s`/`freq` as saved with it.
    Key {
        db: u64,
        key: Vec<u8>,
        value: Value,
        expire_at_ms: u64,
        idle_s: Option<u64>,
        freq: Option<u8>,
    },
    /// A key the caller's filter did not keep: its value was stepped over, not read.
    Skipped {
        db: u64,
    },
    /// A key whose collection was empty: Redis 7.0 skips such keys with a warning.
    EmptyKey {
        db: u64,
        key: Vec<u8>,
    },
    /// The end marker, its checksum checked (`checksum` false: the file has none).
    End {
        checksum: bool,
    },
}

/// Reads records from an RDB file held in memory.
pub struct FileReader<'a> {
    r: Reader<'a>,
    pub version: u32,
    /// Whether the end's CRC64 is checked (true unless turned off: when several readers
    /// read the same file, one check is enough).
    pub verify_checksum: bool,
    db: u64,
    done: bool,
    config: ShardConfig,
    seed: u64,
}

impl<'a> FileReader<'a> {
    /// Checks the header; values are built with `config`'s encoding limits.
    pub fn new(bytes: &'a [u8], config: ShardConfig, seed: u64) -> Result<Self, DecodeError> {
        let bad = |what| DecodeError { offset: 0, what };
        let head = bytes.get(..9).ok_or(bad("shorter than the RDB header"))?;
        if &head[..5] != b"REDIS" {
            return Err(bad("not an RDB file (no REDIS magic)"));
        }
        let version = std::str::from_utf8(&head[5..])
            .ok()
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
            .ok_or(bad("bad RDB version digits"))?;
        if !(1..=MAX_VERSION).contains(&version) {
            return Err(bad("unsupported RDB version"));
        }
        let mut r = Reader::new(bytes);
        r.pos = 9;
        Ok(FileReader {
            r,
            version,
            verify_checksum: true,
            db: 0,
            done: false,
            config,
            seed,
        })
    }

    /// Where reading is in the file.
    pub fn offset(&self) -> usize {
        self.r.pos
    }

    fn fail<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.r.pos,
            what,
        })
    }

    fn string(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        match self.r.string() {
            Some(s) => Ok(s),
            None => self.fail(what),
        }
    }

    fn length(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        match self.r.length() {
            Some(n) => Ok(n),
            None => self.fail(what),
        }
    }

    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        match self.r.take(N) {
            Some(b) => Ok(b.try_into().expect("took N bytes")),
            None => self.fail(what),
        }
    }

    /// The next record; None after the end marker.
    pub fn next_record(&mut self) -> Result<Option<Record>, DecodeError> {
        self.next_record_keeping(&mut |_| true)
    }

    /// [`FileReader::next_record`], reading only the values of the keys `keep` accepts: the
    /// others are stepped over ([`value::skip_body`]) and come back as [`Record::Skipped`].
    /// How a shard loading a file reads past the other shards' keys cheaply.
    pub fn next_record_keeping(
        &mut self,
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Option<Record>, DecodeError> {
        if self.done {
            return Ok(None);
        }
        let (mut expire_at_ms, mut idle_s, mut freq) = (0u64, None, None);
        loop {
            let Some(t) = self.r.byte() else {
                return self.fail("truncated: no end marker");
            };
            let Some(op) = Opcode::of(t) else {
                let key = self.string("bad key")?;
                let db = self.db;
                if !keep(&key) {
                    value::skip_body(t, &mut self.r)?;
                    return Ok(Some(Record::Skipped { db }));
                }
                return match value::decode_body(t, &mut self.r, &self.config, self.seed) {
                    Ok(value) => Ok(Some(Record::Key {
                        db,
                        key,
                        value,
                        expire_at_ms,
                        idle_s,
                        freq,
                    })),
                    Err(e) if e.is_empty_value() => Ok(Some(Record::EmptyKey { db, key })),
                    Err(e) => Err(e),
                };
            };
            match op {
                Opcode::ExpireTimeMs => {
                    expire_at_ms = u64::from_le_bytes(self.fixed("truncated expire time")?);
                }
                Opcode::ExpireTime => {
                    let s = u32::from_le_bytes(self.fixed("truncated expire time")?);
                    expire_at_ms = s as u64 * 1000;
                }
                Opcode::Idle => idle_s = Some(self.length("bad idle time")?),
                Opcode::Freq => freq = Some(self.fixed::<1>("truncated frequency")?[0]),
                Opcode::SelectDb => {
                    self.db = self.length("bad database number")?;
                    return Ok(Some(Record::SelectDb(self.db)));
                }
                Opcode::ResizeDb => {
                    let keys = self.length("bad RESIZEDB size")?;
                    let expires = self.length("bad RESIZEDB size")?;
                    return Ok(Some(Record::ResizeDb { keys, expires }));
                }
                Opcode::Aux => {
                    let key = self.string("bad aux field name")?;
                    let value = self.string("bad aux field value")?;
                    return Ok(Some(Record::Aux { key, value }));
                }
                Opcode::Function2 => {
                    let code = self.string("bad function library")?;
                    return Ok(Some(Record::Function(code)));
                }
                Opcode::Function => {
                    self.string("bad function name")?;
                    self.string("bad function engine")?;
                    if self.length("bad function description flag")? != 0 {
                        self.string("bad function description")?;
                    }
                    let code = self.string("bad function library")?;
                    return Ok(Some(Record::Function(code)));
                }
                Opcode::ModuleAux => return self.fail("module aux data is not supported"),
                Opcode::Eof => return self.end().map(Some),
            }
        }
    }

    /// After the end marker: the checksum (version 5 on), and nothing else.
    fn end(&mut self) -> Result<Record, DecodeError> {
        self.done = true;
        let mut checksum = false;
        if self.version >= 5 {
            let covered = self.r.pos;
            let want = u64::from_le_bytes(self.fixed("truncated checksum")?);
            if want != 0 && self.verify_checksum {
                if crc64(0, &self.r.data[..covered]) != want {
                    return Err(DecodeError {
                        offset: covered,
                        what: "wrong checksum",
                    });
                }
                checksum = true;
            }
        }
        if self.r.remaining() != 0 {
            return self.fail("bytes after the end of the file");
        }
        Ok(Record::End { checksum })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::{put_len, put_string};

    fn file(version: &str, body: &[u8]) -> Vec<u8> {
        let mut f = format!("REDIS{version}").into_bytes();
        f.extend_from_slice(body);
        f.push(Opcode::Eof.byte());
        let crc = crc64(0, &f);
        f.extend_from_slice(&crc.to_le_bytes());
        f
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, DecodeError> {
        let mut r = FileReader::new(bytes, ShardConfig::default(), 1)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    fn sample() -> Vec<u8> {
        let mut body = vec![Opcode::Aux.byte()];
        put_string(&mut body, b"redis-ver");
        put_string(&mut body, b"7.0.15");
        body.extend([Opcode::SelectDb.byte(), 3, Opcode::ResizeDb.byte(), 2, 1]);
        body.push(Opcode::ExpireTimeMs.byte());
        body.extend(1_900_000_000_000u64.to_le_bytes());
        body.extend([Opcode::Freq.byte(), 7, 0]);
        put_string(&mut body, b"k1");
        put_string(&mut body, b"v1");
        body.extend([2]);
        put_string(&mut body, b"empty");
        put_len(&mut body, 0);
        body.push(Opcode::Function2.byte());
        put_string(
            &mut body,
            b"#!lua name=x\nredis.register_function('f', function() end)",
        );
        file("0010", &body)
    }

    #[test]
    fn records_are_read_in_order() {
        assert_eq!(
            (
                Opcode::Function2.byte(),
                Opcode::Aux.byte(),
                Opcode::Eof.byte()
            ),
            (245, 250, 255)
        );
        let recs = read_all(&sample()).unwrap();
        assert!(matches!(&recs[0], Record::Aux { key, .. } if key == b"redis-ver"));
        assert!(matches!(recs[1], Record::SelectDb(3)));
        assert!(matches!(
            recs[2],
            Record::ResizeDb {
                keys: 2,
                expires: 1
            }
        ));
        match &recs[3] {
            Record::Key {
                db,
                key,
                expire_at_ms,
                freq,
                ..
            } => {
                assert_eq!(
                    (*db, &key[..], *expire_at_ms, *freq),
                    (3, &b"k1"[..], 1_900_000_000_000, Some(7))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&recs[4], Record::EmptyKey { db: 3, key } if key == b"empty"));
        assert!(matches!(recs[5], Record::Function(_)));
        assert!(matches!(recs[6], Record::End { checksum: true }));
        // Filtered, the key's value is stepped over and the rest reads the same.
        let f = sample();
        let mut r = FileReader::new(&f, ShardConfig::default(), 1).unwrap();
        let mut kinds = Vec::new();
        while let Some(rec) = r.next_record_keeping(&mut |_| false).unwrap() {
            kinds.push(std::mem::discriminant(&rec));
        }
        assert_eq!(kinds.len(), recs.len());
        assert!(matches!(kinds[3], d if d == std::mem::discriminant(&Record::Skipped { db: 0 })));
    }

    #[test]
    fn damage_is_refused_with_its_offset() {
        let f = sample();
        crate::rdb::assert_hostile_refused(&f, |b| read_all(b).is_ok());
        let mut bad = f.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(read_all(&bad).unwrap_err().what, "wrong checksum");
        let mut more = f.clone();
        more.push(0);
        assert!(read_all(&more).is_err());
        assert!(read_all(b"REDIS0012\xff").is_err());
        assert!(read_all(b"RODIS0010\xff").is_err());
        let mut module = b"REDIS0010".to_vec();
        module.push(Opcode::ModuleAux.byte());
        let e = read_all(&module).unwrap_err();
        assert_eq!((e.offset, e.what), (10, "module aux data is not supported"));
        // A file with its checksum disabled (zero) reads.
        let mut none = f[..f.len() - 8].to_vec();
        none.extend([0; 8]);
        assert!(matches!(
            read_all(&none).unwrap().last(),
            Some(Record::End { checksum: false })
        ));
    }
}
