//! `cmsgpack` for scripts: `cmsgpack.pack`, `cmsgpack.unpack`, `cmsgpack.unpack_one` and
//! `cmsgpack.unpack_limit` with lua-cmsgpack 0.4.0's behaviour as Redis 7.0 ships it,
//! written in Rust (argument checks and error texts are in the scripting module's Lua
//! setup, as for `bit` and `cjson`).
//!
//! Encoding (each argument of `pack`, concatenated): nil and values without a MessagePack
//! form as nil; booleans; a number equal to a 64-bit integer in the smallest integer form,
//! else a float32 when it round-trips through one, else a float64; strings as str8/16/32
//! (fixstr under 32 bytes); a table whose keys are exactly 1..n as an array, any other as a
//! map (in `next` order); a table nested 16 deep as nil (so a table containing itself ends).
//! Decoding: the same forms (str, uint, int, float, array, map, nil, bool), and lua-cmsgpack's
//! quirk that a fixarray header is read as an array. Decoding is iterative and stops at
//! 1000 open containers (a hostile nesting exhausts neither the thread's stack nor the
//! Lua state's references); errors carry lua-cmsgpack's texts.
//!
//! The algorithms follow lua-cmsgpack (Copyright (C) 2012 Salvatore Sanfilippo, BSD).

use mlua::{Lua, Table, Value};

/// Tables nested deeper than this encode as nil (`LUACMSGPACK_MAX_NESTING`).
const MAX_NESTING: usize = 16;

fn int(out: &mut Vec<u8>, n: i64) {
    match n {
        0..=127 => out.push(n as u8),
        128..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        0x1_0000_0000.. => {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        -32..=-1 => out.push(n as i8 as u8),
        -128..=-33 => out.extend_from_slice(&[0xd0, n as i8 as u8]),
        -32768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&(n as i16).to_be_bytes());
        }
        -2_147_483_648..=-32769 => {
            out.push(0xd2);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn number(out: &mut Vec<u8>, d: f64) {
    // IS_INT64_EQUIVALENT: not infinite and equal to its int64 conversion.
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&d) {
        let i = d as i64;
        if i as f64 == d {
            return int(out, i);
        }
    }
    let f = d as f32;
    if f as f64 == d {
        out.push(0xca);
        out.extend_from_slice(&f.to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&d.to_be_bytes());
    }
}

fn header(out: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, wide: [u8; 2]) {
    if n <= fix_max {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(wide[0]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(wide[1]);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn bytes(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else {
        header(out, n, 0, 0, [0xda, 0xdb]);
    }
    out.extend_from_slice(s);
}

/// The length of `t` if its keys are exactly 1..n (lua-cmsgpack's `table_is_an_array`).
fn array_len(t: &Table) -> Option<usize> {
    let (mut count, mut max) = (0usize, 0usize);
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.ok()?;
        let n = match k {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => return None,
        };
        if n <= 0.0 || n > i32::MAX as f64 || n.fract() != 0.0 {
            return None;
        }
        max = max.max(n as usize);
        count += 1;
    }
    (max == count).then_some(count)
}

/// One value, as `mp_encode_lua_type` writes it.
pub fn encode(out: &mut Vec<u8>, v: &Value, level: usize) {
    match v {
        Value::String(s) => bytes(out, &s.as_bytes()),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => int(out, *i),
        Value::Number(n) => number(out, *n),
        Value::Table(t) if level < MAX_NESTING => match array_len(t) {
            Some(n) => {
                header(out, n, 0x90, 15, [0xdc, 0xdd]);
                for i in 1..=n {
                    let item: Value = t.raw_get(i).unwrap_or(Value::Nil);
                    encode(out, &item, level + 1);
                }
            }
            None => {
                let pairs: Vec<(Value, Value)> = t.pairs().filter_map(|p| p.ok()).collect();
                header(out, pairs.len(), 0x80, 15, [0xde, 0xdf]);
                for (k, v) in &pairs {
                    encode(out, k, level + 1);
                    encode(out, v, level + 1);
                }
            }
        },
        _ => out.push(0xc0),
    }
}

/// Containers open at once when decoding, at most: each holds a Lua reference while it
/// fills, and a Lua state has fewer than 8000 of those (Lua 5.1's stack limit, which stops
/// lua-cmsgpack near the same depth).
const MAX_OPEN: usize = 1000;

/// Why decoding stopped.
pub enum DecodeError {
    /// Nested past [`MAX_OPEN`] (lua-cmsgpack: the Lua stack overflows).
    TooDeep,
    /// "Missing bytes in input."
    Eof,
    /// "Bad data format in input."
    BadFormat,
    /// A Lua error (a map key that cannot be a table key, the heap limit).
    Lua(mlua::Error),
}

impl From<mlua::Error> for DecodeError {
    fn from(e: mlua::Error) -> Self {
        DecodeError::Lua(e)
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Eof)?;
        let s = self.data.get(self.pos..end).ok_or(DecodeError::Eof)?;
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }
}

/// What one MessagePack item starts: a value, or a container of `n` items (pairs for a map).
enum Item {
    Value(Value),
    Array(usize),
    Map(usize),
}

fn item(lua: &Lua, c: &mut Cursor) -> Result<Item, DecodeError> {
    let t = c.take(1)?[0];
    let num = |n: f64| Item::Value(Value::Number(n));
    let text = |b: &[u8]| -> Result<Item, DecodeError> {
        Ok(Item::Value(Value::String(lua.create_string(b)?)))
    };
    Ok(match t {
        0xcc => num(c.be(1)? as f64),
        0xcd => num(c.be(2)? as f64),
        0xce => num(c.be(4)? as f64),
        // lua_pushunsigned is lua_pushinteger on 64-bit builds: a signed conversion.
        0xcf => num(c.be(8)? as i64 as f64),
        0xd0 => num(c.be(1)? as u8 as i8 as f64),
        0xd1 => num(c.be(2)? as u16 as i16 as f64),
        0xd2 => num(c.be(4)? as u32 as i32 as f64),
        0xd3 => num(c.be(8)? as i64 as f64),
        0xc0 => Item::Value(Value::Nil),
        0xc3 => Item::Value(Value::Boolean(true)),
        0xc2 => Item::Value(Value::Boolean(false)),
        0xca => num(f32::from_bits(c.be(4)? as u32) as f64),
        0xcb => num(f64::from_bits(c.be(8)?)),
        0xd9..=0xdb => {
            let n = c.be(1 << (t - 0xd9))? as usize;
            text(c.take(n)?)?
        }
        // array 16 and 32, map 16 and 32
        0xdc..=0xdf => {
            let n = c.be(if t & 1 == 0 { 2 } else { 4 })? as usize;
            match t < 0xde {
                true => Item::Array(n),
                false => Item::Map(n),
            }
        }
        t if t & 0x80 == 0 => num(t as f64),
        t if t & 0xe0 == 0xe0 => num(t as i8 as f64),
        t if t & 0xe0 == 0xa0 => text(c.take((t & 0x1f) as usize)?)?,
        t if t & 0xf0 == 0x90 => Item::Array((t & 0xf) as usize),
        t if t & 0xf0 == 0x80 => Item::Map((t & 0xf) as usize),
        _ => return Err(DecodeError::BadFormat),
    })
}

/// A container being filled: its table, the items still to come, and a map's pending key.
struct Open {
    t: Table,
    left: usize,
    /// The last array index set.
    index: usize,
    is_map: bool,
    key: Option<Value>,
}

/// One top-level value. Iterative (an explicit stack of open containers, at most one per
/// input byte), so hostile nesting cannot exhaust the thread's stack.
fn decode_one(lua: &Lua, c: &mut Cursor) -> Result<Value, DecodeError> {
    let mut open: Vec<Open> = Vec::new();
    loop {
        let it = item(lua, c)?;
        let mut v = match it {
            Item::Value(v) => v,
            Item::Array(n) | Item::Map(n) if n > 0 => {
                if open.len() >= MAX_OPEN {
                    return Err(DecodeError::TooDeep);
                }
                let is_map = matches!(it, Item::Map(_));
                open.push(Open {
                    t: lua.create_table()?,
                    left: n,
                    index: 0,
                    is_map,
                    key: None,
                });
                continue;
            }
            Item::Array(_) | Item::Map(_) => Value::Table(lua.create_table()?),
        };
        // Deliver `v` to the innermost open container, closing those it completes.
        loop {
            let Some(top) = open.last_mut() else {
                return Ok(v);
            };
            if top.is_map && top.key.is_none() {
                top.key = Some(v);
                break;
            }
            match top.key.take() {
                Some(k) => top.t.set(k, v)?,
                None => {
                    top.index += 1;
                    top.t.raw_set(top.index, v)?
                }
            }
            top.left -= 1;
            if top.left > 0 {
                break;
            }
            let done = open.pop().map(|o| o.t);
            v = done.map_or(Value::Nil, Value::Table);
        }
    }
}

/// `mp_unpack_full`: up to `limit` values from `data[offset..]` (the offset checked by
/// the caller) as a sequence table (each stored as soon as decoded: Rust holds no Lua
/// reference per value), their count, and where the next value starts (None: the end).
pub fn decode(
    lua: &Lua,
    data: &[u8],
    offset: usize,
    limit: usize,
) -> Result<(Table, usize, Option<usize>), DecodeError> {
    let mut c = Cursor { data, pos: offset };
    let values = lua.create_table()?;
    let mut n = 0;
    while c.pos < data.len() && n < limit {
        n += 1;
        values.raw_set(n, decode_one(lua, &mut c)?)?;
    }
    Ok((values, n, (c.pos < data.len()).then_some(c.pos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(lua: &Lua, code: &str) -> Vec<u8> {
        let v: Value = lua.load(code).eval().unwrap();
        let mut out = Vec::new();
        encode(&mut out, &v, 0);
        out
    }

    #[test]
    fn values_encode_as_lua_cmsgpack_does() {
        let lua = Lua::new();
        for (code, want) in [
            ("return nil", &b"\xc0"[..]),
            ("return true", b"\xc3"),
            ("return 5", b"\x05"),
            ("return -1", b"\xff"),
            ("return -33", b"\xd0\xdf"),
            ("return 200", b"\xcc\xc8"),
            ("return 65536", b"\xce\x00\x01\x00\x00"),
            ("return 2^40", b"\xcf\x00\x00\x01\x00\x00\x00\x00\x00"),
            ("return -2^40", b"\xd3\xff\xff\xff\x00\x00\x00\x00\x00"),
            ("return 0.5", b"\xca\x3f\x00\x00\x00"),
            ("return 0.1", b"\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a"),
            ("return 'ab'", b"\xa2ab"),
            ("return {}", b"\x90"),
            ("return {1, 'x'}", b"\x92\x01\xa1x"),
            ("return {a = 1}", b"\x81\xa1a\x01"),
            ("return {[2] = 1}", b"\x81\x02\x01"),
        ] {
            assert_eq!(packed(&lua, code), want, "{code}");
        }
        // A table that contains itself ends at the nesting limit.
        let deep = packed(&lua, "local t = {} t[1] = t return t");
        assert_eq!(deep, [&[0x91u8; 16][..], b"\xc0"].concat());
    }

    #[test]
    fn decoding_round_trips_and_refuses_bad_input_without_panicking() {
        let lua = Lua::new();
        let data = packed(&lua, "return {1, -2, 'three', {x = 4.5}, true, 2^53}");
        let (vals, n, next) = decode(&lua, &data, 0, usize::MAX).ok().unwrap();
        assert_eq!(n, 1);
        assert_eq!(next, None);
        let mut again = Vec::new();
        encode(&mut again, &vals.raw_get(1).unwrap(), 0);
        assert_eq!(again, data);
        for cut in 0..data.len() {
            assert!(matches!(
                decode(&lua, &data[..cut], 0, usize::MAX),
                Err(DecodeError::Eof) | Ok(_)
            ));
        }
        assert!(matches!(
            decode(&lua, b"\xc1", 0, usize::MAX),
            Err(DecodeError::BadFormat)
        ));
        let nested = vec![0x91u8; 5000];
        assert!(decode(&lua, &nested, 0, usize::MAX).is_err());
    }
}
