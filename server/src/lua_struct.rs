//! `struct` for scripts: `struct.pack`, `struct.unpack` and `struct.size` with the
//! semantics of Roberto Ierusalimschy's lua-struct 0.2 as Redis 7.0 ships it (on x86-64:
//! little endian by default, `short` 2, `int` 4, `long` and `size_t` 8 bytes, maximum
//! alignment 8), written in Rust. Errors are returned as lua-struct's texts; the scripting
//! module's Lua setup raises them with the script's line.
//!
//! Formats: `>` `<` endianness, `!n` maximum alignment, `x` a zero byte, `b/B h/H l/L T
//! i/In/I/In` integers (signed when lower case, `n` bytes up to 32), `f` `d` floats, `s` a
//! zero-terminated string, `cn` n bytes (`c0`: the whole string when packing, the previous
//! number's length when unpacking), spaces ignored.
//!
//! The algorithms follow lua-struct (Copyright (C) 2010-2018 Lua.org, PUC-Rio, MIT).

use mlua::{Lua, Table, Value};

const MAXINTSIZE: usize = 32;
const MAXALIGN: usize = 8;

struct Header {
    little: bool,
    align: usize,
}

/// `getnum`: the digits at `fmt[*i..]`, or `df` when there are none.
fn getnum(fmt: &[u8], i: &mut usize, df: usize) -> Result<usize, String> {
    if !fmt.get(*i).is_some_and(u8::is_ascii_digit) {
        return Ok(df);
    }
    let mut a: usize = 0;
    while let Some(d) = fmt.get(*i).filter(|c| c.is_ascii_digit()) {
        let d = (d - b'0') as usize;
        if a > i32::MAX as usize / 10 || a * 10 > i32::MAX as usize - d {
            return Err("integral size overflow".into());
        }
        a = a * 10 + d;
        *i += 1;
    }
    Ok(a)
}

fn optsize(opt: u8, fmt: &[u8], i: &mut usize) -> Result<usize, String> {
    Ok(match opt {
        b'B' | b'b' | b'x' => 1,
        b'H' | b'h' => 2,
        b'L' | b'l' | b'T' | b'd' => 8,
        b'f' => 4,
        b'c' => getnum(fmt, i, 1)?,
        b'i' | b'I' => {
            let sz = getnum(fmt, i, 4)?;
            if sz > MAXINTSIZE {
                return Err(format!(
                    "integral size {sz} is larger than limit of {MAXINTSIZE}"
                ));
            }
            sz
        }
        _ => 0,
    })
}

fn gettoalign(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn controloptions(
    fname: &str,
    opt: u8,
    fmt: &[u8],
    i: &mut usize,
    h: &mut Header,
) -> Result<(), String> {
    match opt {
        b' ' => {}
        b'>' => h.little = false,
        b'<' => h.little = true,
        b'!' => {
            let a = getnum(fmt, i, MAXALIGN)?;
            if !a.is_power_of_two() {
                return Err(format!("alignment {a} is not a power of 2"));
            }
            h.align = a;
        }
        _ => {
            return Err(format!(
                "bad argument #1 to '{fname}' (invalid format option '{}')",
                opt as char
            ))
        }
    }
    Ok(())
}

/// The type lua-struct's `pack` reports for argument `n` (1-based) of `args` (the
/// arguments from 2 on): the one just past the last is the nil `pack` pushes as a marker.
fn typename(args: &[Value], n: usize) -> &'static str {
    match args.get(n - 2) {
        Some(v) => v.type_name(),
        None if n == args.len() + 2 => "nil",
        None => "no value",
    }
}

/// `luaL_checknumber` of argument `n` (1-based; `args` are the arguments from 2 on).
fn number(lua: &Lua, fname: &str, args: &[Value], n: usize) -> Result<f64, String> {
    let v = args.get(n - 2);
    let got = v.and_then(|v| match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(x) => Some(*x),
        Value::String(_) => lua.coerce_number(v.clone()).ok().flatten(),
        _ => None,
    });
    got.ok_or_else(|| {
        format!(
            "bad argument #{n} to '{fname}' (number expected, got {})",
            typename(args, n)
        )
    })
}

/// `struct.pack(fmt, ...)`: the bytes, or the error text.
pub fn pack(lua: &Lua, fmt: &[u8], args: &[Value]) -> Result<Vec<u8>, String> {
    let mut h = Header {
        little: true,
        align: 1,
    };
    let mut out = Vec::new();
    let (mut i, mut arg) = (0usize, 2usize);
    while i < fmt.len() {
        let opt = fmt[i];
        i += 1;
        let mut size = optsize(opt, fmt, &mut i)?;
        let toalign = gettoalign(out.len(), &h, opt, size);
        out.resize(out.len() + toalign, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = number(lua, "pack", args, arg)?;
                arg += 1;
                let mut value = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                let mut buf = [0u8; MAXINTSIZE];
                for k in 0..size {
                    let at = if h.little { k } else { size - 1 - k };
                    buf[at] = value as u8;
                    value = value.checked_shr(8).unwrap_or(0);
                }
                out.extend_from_slice(&buf[..size]);
            }
            b'x' => out.push(0),
            b'f' | b'd' => {
                let x = number(lua, "pack", args, arg)?;
                arg += 1;
                // The native (little-endian) bytes, reversed for big endian.
                let mut b = match opt {
                    b'f' => (x as f32).to_le_bytes().to_vec(),
                    _ => x.to_le_bytes().to_vec(),
                };
                if !h.little {
                    b.reverse();
                }
                out.extend_from_slice(&b);
            }
            b'c' | b's' => {
                let v = args.get(arg - 2);
                let s = v
                    .and_then(|v| crate::scripting::string_like(lua, v))
                    .ok_or_else(|| {
                        format!(
                            "bad argument #{arg} to 'pack' (string expected, got {})",
                            typename(args, arg)
                        )
                    })?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // Sic: lua-struct names the argument after the string.
                    return Err(format!("bad argument #{arg} to 'pack' (string too short)"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => controloptions("pack", opt, fmt, &mut i, &mut h)?,
        }
    }
    Ok(out)
}

/// `struct.unpack(fmt, data, pos)`: the values then the next position, as a sequence
/// table (Rust holds no Lua reference per value) and its length; or the error text.
pub fn unpack(lua: &Lua, fmt: &[u8], data: &[u8], pos: i64) -> Result<(Table, usize), String> {
    let lua_err = |e: mlua::Error| e.to_string();
    if pos <= 0 {
        return Err("bad argument #3 to 'unpack' (offset must be 1 or greater)".into());
    }
    let mut pos = pos as usize - 1;
    let mut h = Header {
        little: true,
        align: 1,
    };
    let ld = data.len();
    let short = || "bad argument #2 to 'unpack' (data string too short)".to_string();
    let out = lua.create_table().map_err(lua_err)?;
    let mut n = 0usize;
    let mut i = 0usize;
    while i < fmt.len() {
        let opt = fmt[i];
        i += 1;
        let mut size = optsize(opt, fmt, &mut i)?;
        pos += gettoalign(pos, &h, opt, size);
        if size > ld || pos > ld - size {
            return Err(short());
        }
        let at = &data[pos..pos + size];
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let mut l: u64 = 0;
                for k in 0..size {
                    let b = if h.little { at[size - 1 - k] } else { at[k] };
                    l = (l << 8) | b as u64;
                }
                let v = if opt.is_ascii_lowercase() {
                    let mask = u64::MAX.wrapping_shl((size * 8).wrapping_sub(1) as u32);
                    if l & mask != 0 {
                        l |= mask;
                    }
                    l as i64 as f64
                } else {
                    l as f64
                };
                push(&out, &mut n, Value::Number(v))?;
            }
            b'x' => {}
            b'f' | b'd' => {
                let mut b = at.to_vec();
                if !h.little {
                    b.reverse();
                }
                let x = match (opt, b.try_into()) {
                    (b'f', Ok(b)) => f32::from_le_bytes(b) as f64,
                    (_, Err(b)) => f64::from_le_bytes(b.try_into().map_err(|_| short())?),
                    (_, Ok(_)) => return Err(short()),
                };
                push(&out, &mut n, Value::Number(x))?;
            }
            b'c' => {
                if size == 0 {
                    // The previous result, if it is a number (or a numeric string).
                    let last: Value = match n {
                        0 => Value::Nil,
                        _ => out.raw_get(n).map_err(lua_err)?,
                    };
                    let prev = match lua.coerce_number(last) {
                        Ok(Some(p)) => p,
                        _ => return Err("format 'c0' needs a previous size".into()),
                    };
                    out.raw_set(n, Value::Nil).map_err(lua_err)?;
                    n -= 1;
                    size = if prev > 0.0 { prev as usize } else { 0 };
                    if size > ld || pos > ld - size {
                        return Err(short());
                    }
                }
                let s = lua.create_string(&data[pos..pos + size]).map_err(lua_err)?;
                push(&out, &mut n, Value::String(s))?;
            }
            b's' => {
                let Some(e) = data[pos..].iter().position(|&b| b == 0) else {
                    return Err("unfinished string in data".into());
                };
                size = e + 1;
                let s = lua.create_string(&data[pos..pos + e]).map_err(lua_err)?;
                push(&out, &mut n, Value::String(s))?;
            }
            _ => controloptions("unpack", opt, fmt, &mut i, &mut h)?,
        }
        pos += size;
    }
    push(&out, &mut n, Value::Integer(pos as i64 + 1))?;
    Ok((out, n))
}

/// Appends `v` to the sequence `out` of length `*n`.
fn push(out: &Table, n: &mut usize, v: Value) -> Result<(), String> {
    *n += 1;
    out.raw_set(*n, v).map_err(|e| e.to_string())
}

/// `struct.size(fmt)`, or the error text.
pub fn size(fmt: &[u8]) -> Result<usize, String> {
    let mut h = Header {
        little: true,
        align: 1,
    };
    let (mut pos, mut i) = (0usize, 0usize);
    while i < fmt.len() {
        let opt = fmt[i];
        i += 1;
        let size = optsize(opt, fmt, &mut i)?;
        pos += gettoalign(pos, &h, opt, size);
        if opt == b's' {
            return Err("bad argument #1 to 'size' (option 's' has no fixed size)".into());
        }
        if opt == b'c' && size == 0 {
            return Err("bad argument #1 to 'size' (option 'c0' has no fixed size)".into());
        }
        if !opt.is_ascii_alphanumeric() {
            controloptions("size", opt, fmt, &mut i, &mut h)?;
        }
        pos += size;
    }
    Ok(pos)
}
