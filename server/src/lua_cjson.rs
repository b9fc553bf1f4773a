//! `cjson` for scripts: `cjson.encode`, `cjson.decode` and `cjson.null` with lua-cjson 2.1's
//! behaviour as Redis 7.0 ships it (its default settings), written in Rust.
//!
//! Encoding: a table whose keys are all positive integers is an array (holes become
//! `null`; an array more than twice as long as its item count and longer than 10 is
//! refused as excessively sparse), any other non-empty table an object, the empty table
//! `{}`; numbers print with `%.14g` (NaN and infinities are refused); strings escape `"`,
//! `\`, `/` and control bytes (bytes ≥ 0x80 pass unchanged). Decoding: objects and arrays
//! become tables, `null` becomes `cjson.null` (a light userdata NULL), `\uXXXX` escapes
//! (surrogate pairs included) become UTF-8. Both nest at most 1000 deep; errors carry
//! lua-cjson's texts. Invariant: nothing here panics on any input; work is linear in the
//! input (decode) or in the values reached (encode, bounded by the depth limit and by the
//! Lua heap limit through the output string).
//!
//! The algorithms follow lua-cjson (Copyright (c) 2010-2012 Mark Pulford, MIT license).

use mlua::{LightUserData, Lua, Table, Value};

const MAX_DEPTH: usize = 1000;

/// `cjson.null`.
pub fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// `%.14g` of a finite number (Lua 5.1's `tostring` and lua-cjson's number format).
pub fn fmt_g14(n: f64) -> String {
    if n == 0.0 {
        return if n.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{:.13e}", n);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let strip = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if (-4..14).contains(&exp) {
        let decimals = (13 - exp).max(0) as usize;
        strip(format!("{:.*}", decimals, n))
    } else {
        let m = strip(mant.to_string());
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) | Value::UserData(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

fn encode_number(n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    out.extend_from_slice(fmt_g14(n).as_bytes());
    Ok(())
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{:04x}", c).as_bytes()),
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

/// A table being written: an array's next index and length, or an object's pairs and the
/// next one.
enum Writing {
    Arr(Table, i64, i64),
    Obj(Vec<(Value, Value)>, usize),
}

/// Writes `v`; tables are opened onto `stack` (iteratively: nesting costs heap, not stack).
fn encode_value(v: &Value, out: &mut Vec<u8>, stack: &mut Vec<Writing>) -> Result<(), String> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(_) | Value::Number(_) => encode_number(num(v).unwrap_or(0.0), out)?,
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Table(t) => open_table(t, out, stack)?,
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                type_name(other)
            ))
        }
    }
    Ok(())
}

fn open_table(t: &Table, out: &mut Vec<u8>, stack: &mut Vec<Writing>) -> Result<(), String> {
    let depth = stack.len() + 1;
    if depth > MAX_DEPTH {
        return Err(format!("Cannot serialise, excessive nesting ({depth})"));
    }
    let pairs: Vec<(Value, Value)> = t.pairs::<Value, Value>().filter_map(|p| p.ok()).collect();
    // lua-cjson's `lua_array_length`: every key a positive integer → the largest.
    let mut max = 0f64;
    let mut array = true;
    for (k, _) in &pairs {
        match num(k) {
            Some(n) if n >= 1.0 && n.floor() == n => max = max.max(n),
            _ => {
                array = false;
                break;
            }
        }
    }
    if array && max > 0.0 {
        let items = pairs.len() as f64;
        if max > 10.0 && max > items * 2.0 {
            return Err("Cannot serialise table: excessively sparse array".into());
        }
        out.push(b'[');
        stack.push(Writing::Arr(t.clone(), 1, max as i64));
    } else {
        for (k, _) in &pairs {
            if !matches!(k, Value::String(_) | Value::Integer(_) | Value::Number(_)) {
                return Err(format!(
                    "Cannot serialise {}: table key must be a number or string",
                    type_name(k)
                ));
            }
        }
        out.push(b'{');
        stack.push(Writing::Obj(pairs, 0));
    }
    Ok(())
}

/// `cjson.encode(v)`: the JSON text, or lua-cjson's error message.
pub fn encode(v: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    encode_value(v, &mut out, &mut stack)?;
    while let Some(top) = stack.last_mut() {
        match top {
            Writing::Arr(t, i, max) => {
                if *i > *max {
                    out.push(b']');
                    stack.pop();
                    continue;
                }
                if *i > 1 {
                    out.push(b',');
                }
                let v: Value = t.raw_get(*i).unwrap_or(Value::Nil);
                *i += 1;
                encode_value(&v, &mut out, &mut stack)?;
            }
            Writing::Obj(pairs, i) => {
                let Some((k, v)) = pairs.get(*i).cloned() else {
                    out.push(b'}');
                    stack.pop();
                    continue;
                };
                if *i > 0 {
                    out.push(b',');
                }
                *i += 1;
                match &k {
                    Value::String(s) => encode_string(&s.as_bytes(), &mut out),
                    _ => {
                        out.push(b'"');
                        encode_number(num(&k).unwrap_or(0.0), &mut out)?;
                        out.push(b'"');
                    }
                }
                out.push(b':');
                encode_value(&v, &mut out, &mut stack)?;
            }
        }
    }
    Ok(out)
}

#[derive(Debug, PartialEq)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    Num(f64),
    Bool(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Tok {
    fn name(&self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str(_) => "T_STRING",
            Tok::Num(_) => "T_NUMBER",
            Tok::Bool(_) => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(e) => e,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    /// The next token and the (1-based) character where it starts.
    fn next(&mut self) -> (Tok, usize) {
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.pos += 1;
        }
        let at = self.pos + 1;
        let Some(&c) = self.s.get(self.pos) else {
            return (Tok::End, at);
        };
        let single = |t: Tok, p: &mut Self| {
            p.pos += 1;
            (t, at)
        };
        match c {
            b'{' => single(Tok::ObjBegin, self),
            b'}' => single(Tok::ObjEnd, self),
            b'[' => single(Tok::ArrBegin, self),
            b']' => single(Tok::ArrEnd, self),
            b':' => single(Tok::Colon, self),
            b',' => single(Tok::Comma, self),
            // A bad string is reported where the scan stopped (lua-cjson's `ptr`).
            b'"' => match self.string() {
                e @ Tok::Error(_) => (e, self.pos + 1),
                t => (t, at),
            },
            b'-' | b'0'..=b'9' => (self.number(), at),
            _ => {
                for (word, t) in [
                    (&b"true"[..], Tok::Bool(true)),
                    (b"false", Tok::Bool(false)),
                    (b"null", Tok::Null),
                ] {
                    if self.s[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return (t, at);
                    }
                }
                (Tok::Error("invalid token"), at)
            }
        }
    }

    fn number(&mut self) -> Tok {
        let start = self.pos;
        let mut end = start;
        while self
            .s
            .get(end)
            .is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
        {
            end += 1;
        }
        let text = std::str::from_utf8(&self.s[start..end]).unwrap_or("");
        // lua-cjson refuses leading zeros and hex (strtod would take them).
        let digits = text.trim_start_matches('-');
        if digits.len() > 1 && digits.starts_with('0') && digits.as_bytes()[1].is_ascii_digit() {
            return Tok::Error("invalid number");
        }
        match text.parse::<f64>() {
            Ok(n) => {
                self.pos = end;
                Tok::Num(n)
            }
            Err(_) => Tok::Error("invalid number"),
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.s.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }

    fn string(&mut self) -> Tok {
        let mut out = Vec::new();
        self.pos += 1;
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return Tok::Error("unexpected end of string");
            };
            self.pos += 1;
            match c {
                b'"' => return Tok::Str(out),
                b'\\' => {
                    let backslash = self.pos - 1;
                    let Some(&e) = self.s.get(self.pos) else {
                        return Tok::Error("unexpected end of string");
                    };
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let Some(mut cp) = self.hex4(self.pos) else {
                                self.pos = backslash;
                                return Tok::Error("invalid unicode escape code");
                            };
                            self.pos += 4;
                            if (0xd800..0xdc00).contains(&cp) {
                                let low = (self.s.get(self.pos..self.pos + 2) == Some(b"\\u"))
                                    .then(|| self.hex4(self.pos + 2))
                                    .flatten()
                                    .filter(|l| (0xdc00..0xe000).contains(l));
                                let Some(low) = low else {
                                    self.pos = backslash;
                                    return Tok::Error("invalid unicode escape code");
                                };
                                self.pos += 6;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                            } else if (0xdc00..0xe000).contains(&cp) {
                                self.pos = backslash;
                                return Tok::Error("invalid unicode escape code");
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                        }
                        _ => {
                            self.pos = backslash;
                            return Tok::Error("invalid escape code");
                        }
                    }
                }
                _ => out.push(c),
            }
        }
    }
}

fn expected(what: &str, (t, at): &(Tok, usize)) -> String {
    format!("Expected {what} but found {} at character {at}", t.name())
}

/// An open array (its next index) or object (the key its next value goes to).
enum Open {
    Arr(Table, i64),
    Obj(Table, Vec<u8>),
}

fn lua_err(e: mlua::Error) -> String {
    e.to_string()
}

/// After an object's `{` or `,`: its key and colon.
fn object_key(p: &mut Parser, key: (Tok, usize)) -> Result<Vec<u8>, String> {
    let Tok::Str(k) = key.0 else {
        return Err(expected("object key string", &key));
    };
    let colon = p.next();
    if colon.0 != Tok::Colon {
        return Err(expected("colon", &colon));
    }
    Ok(k)
}

/// `cjson.decode(text)`: the value, or lua-cjson's error message. Iterative (an explicit
/// stack of open containers), so nesting costs heap, not the core's stack.
pub fn decode(lua: &Lua, text: &[u8]) -> Result<Value, String> {
    let mut p = Parser { s: text, pos: 0 };
    let mut stack: Vec<Open> = Vec::new();
    let mut tok = p.next();
    loop {
        let mut v = match tok.0 {
            Tok::Str(s) => Value::String(lua.create_string(&s).map_err(lua_err)?),
            Tok::Num(n) => Value::Number(n),
            Tok::Bool(b) => Value::Boolean(b),
            Tok::Null => null(),
            Tok::ObjBegin | Tok::ArrBegin => {
                if stack.len() + 1 > MAX_DEPTH {
                    return Err(format!(
                        "Found too many nested data structures ({}) at character {}",
                        stack.len() + 1,
                        tok.1
                    ));
                }
                let t = lua.create_table().map_err(lua_err)?;
                let next = p.next();
                if tok.0 == Tok::ArrBegin {
                    if next.0 == Tok::ArrEnd {
                        Value::Table(t)
                    } else {
                        stack.push(Open::Arr(t, 1));
                        tok = next;
                        continue;
                    }
                } else if next.0 == Tok::ObjEnd {
                    Value::Table(t)
                } else {
                    let k = object_key(&mut p, next)?;
                    stack.push(Open::Obj(t, k));
                    tok = p.next();
                    continue;
                }
            }
            _ => return Err(expected("value", &tok)),
        };
        // Hand the value to its container, closing those that end.
        loop {
            let Some(open) = stack.last_mut() else {
                let end = p.next();
                if end.0 != Tok::End {
                    return Err(expected("the end", &end));
                }
                return Ok(v);
            };
            let sep = p.next();
            let closes = match open {
                Open::Arr(t, i) => {
                    t.raw_set(*i, v).map_err(lua_err)?;
                    *i += 1;
                    match sep.0 {
                        Tok::ArrEnd => true,
                        Tok::Comma => false,
                        _ => return Err(expected("comma or array end", &sep)),
                    }
                }
                Open::Obj(t, k) => {
                    t.raw_set(lua.create_string(&k).map_err(lua_err)?, v)
                        .map_err(lua_err)?;
                    match sep.0 {
                        Tok::ObjEnd => true,
                        Tok::Comma => {
                            let key = p.next();
                            *k = object_key(&mut p, key)?;
                            false
                        }
                        _ => return Err(expected("comma or object end", &sep)),
                    }
                }
            };
            if !closes {
                tok = p.next();
                break;
            }
            v = match stack.pop() {
                Some(Open::Arr(t, _)) | Some(Open::Obj(t, _)) => Value::Table(t),
                None => Value::Nil,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_percent_14g() {
        for (n, s) in [
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (100.0, "100"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (123456789012345.0, "1.2345678901234e+14"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.0 / 3.0, "0.33333333333333"),
        ] {
            assert_eq!(fmt_g14(n), s, "{n}");
        }
    }

    #[test]
    fn decode_refuses_bad_input_without_panicking() {
        let lua = Lua::new();
        for bad in [
            "",
            "[",
            "[1,",
            "{\"a\"",
            "{\"a\":",
            "\"\\u12",
            "\"\\ud800\"",
            "01",
            "-",
            "tru",
            "[1 2]",
            "{1:2}",
        ] {
            assert!(decode(&lua, bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = "[".repeat(1001) + &"]".repeat(1001);
        assert!(decode(&lua, deep.as_bytes())
            .unwrap_err()
            .starts_with("Found too many nested"));
    }
}
