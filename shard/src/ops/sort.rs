//! SORT and SORT_RO (Redis 7.0's `sort.c`): the elements of a list, set or sorted set,
//! sorted by their own value or by weights looked up through a BY pattern, numerically or
//! (ALPHA) as strings, cut by LIMIT, each replaced by the values of GET patterns, replied or
//! STOREd as a list.
//!
//! The work comes in steps so that the server can run them on different cores when the
//! keys a pattern names live on other shards: [`Sorter::load`] on the sorted key's shard,
//! then the BY values ([`Sorter::by_keys`]) are looked up wherever their keys live and
//! [`Sorter::sort`] orders the elements, then the GET values ([`Sorter::get_keys`]) are
//! looked up and [`Sorter::finish`] assembles the output. [`sort`] runs every step on one
//! shard, for a command whose keys all live there.
//!
//! Redis's details kept, each visible to clients:
//! - patterns are read as C strings: `#` alone is the element, a pattern without `*`
//!   (before any NUL byte) looks nothing up, `->field` after the `*` reads a hash field;
//!   a key of the wrong type reads as missing;
//! - a BY pattern without `*` means "do not sort": lists and sorted sets keep their order
//!   (DESC walks it backwards, LIMIT cuts it), a set is sorted ALPHA anyway when stored;
//! - numeric weights are read with `strtod` (spaces before and an empty string are
//!   accepted; overflow, underflow, NaN and trailing bytes are not: "One or more scores
//!   can't be converted into double"), missing ones weigh 0; equal weights order by the
//!   elements' bytes; with ALPHA and BY, missing weights sort first;
//! - ALPHA compares with the C locale's collation (bytes up to a NUL), except when storing,
//!   which compares whole byte strings;
//! - SORT converts a `listpack` sorted set to `skiplist` first, as 7.0 does.
//!
//! One difference: Redis sorts a LIMITed BY sort with its partial quicksort, which leaves
//! elements of equal weight in an order of its own; percore's sort is stable (elements of
//! equal weight keep the collection's order), as Redis's full sort (glibc's merge sort) is.
//!
//! Cost: O(N + M log M) for N elements, M of them sorted; every element is copied once.

use crate::ops::eq_ic;
use crate::types::list::List;
use crate::{err, Entry, ExecCtx, Shard, Value, ValueRef};
use percore_proto::{Args, ReplyWriter};
use std::borrow::Cow;
use std::cmp::Ordering;

extern "C" {
    /// `double.c`: 1 and `*out` when `s[..len]` is a weight SORT accepts.
    fn percore_sort_strtod(s: *const u8, len: usize, out: *mut f64) -> std::ffi::c_int;
}

/// The reply when a weight is not a number.
pub const NOT_DOUBLE: &str = "ERR One or more scores can't be converted into double";

/// A key a pattern names for one element: the key and, for `->field`, the hash field.
pub type Lookup = (Vec<u8>, Option<Vec<u8>>);

/// The bytes of `b` up to its first NUL, as C reads a string.
fn cstr(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// A BY or GET pattern, as Redis's `lookupKeyByPattern` reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    /// `#`: the element itself.
    Elem,
    /// No `*`: names no key; GET answers nil.
    Fixed,
    /// `prefix*suffix` (or `prefix*suffix->field`): the element replaces the `*`.
    Key {
        prefix: Vec<u8>,
        suffix: Vec<u8>,
        field: Option<Vec<u8>>,
    },
}

impl Pattern {
    pub fn parse(p: &[u8]) -> Pattern {
        let c = cstr(p);
        if c == b"#" {
            return Pattern::Elem;
        }
        let Some(star) = c.iter().position(|&b| b == b'*') else {
            return Pattern::Fixed;
        };
        let arrow = c[star + 1..]
            .windows(2)
            .position(|w| w == b"->")
            .map(|i| star + 1 + i);
        match arrow {
            // The field must not be empty (as a C string: its first byte is not a NUL).
            Some(f) if f + 2 < c.len() => Pattern::Key {
                prefix: p[..star].to_vec(),
                suffix: p[star + 1..f].to_vec(),
                field: Some(p[f + 2..].to_vec()),
            },
            _ => Pattern::Key {
                prefix: p[..star].to_vec(),
                suffix: p[star + 1..].to_vec(),
                field: None,
            },
        }
    }

    /// The key (and field) the pattern names for `elem`; None for `#` and fixed patterns.
    pub fn key(&self, elem: &[u8]) -> Option<Lookup> {
        let Pattern::Key {
            prefix,
            suffix,
            field,
        } = self
        else {
            return None;
        };
        let mut k = Vec::with_capacity(prefix.len() + elem.len() + suffix.len());
        k.extend_from_slice(prefix);
        k.extend_from_slice(elem);
        k.extend_from_slice(suffix);
        Some((k, field.clone()))
    }

    /// The part every key the pattern names starts with (empty for `#` and fixed ones).
    pub fn prefix(&self) -> &[u8] {
        match self {
            Pattern::Key { prefix, .. } => prefix,
            _ => &[],
        }
    }
}

/// SORT's options.
#[derive(Clone, Debug)]
pub struct SortOpts {
    pub desc: bool,
    pub alpha: bool,
    pub limit_start: i64,
    pub limit_count: i64,
    /// The last BY pattern.
    pub by: Option<Pattern>,
    /// A BY pattern without `*` was given: the elements are not sorted.
    pub dontsort: bool,
    pub gets: Vec<Pattern>,
    pub store: Option<Vec<u8>>,
}

impl SortOpts {
    /// Every pattern that names keys: the BY one when it is used, and the GET ones.
    pub fn key_patterns(&self) -> impl Iterator<Item = &Pattern> {
        let by = self.by.as_ref().filter(|_| !self.dontsort);
        by.into_iter()
            .chain(&self.gets)
            .filter(|p| matches!(p, Pattern::Key { .. }))
    }
}

/// Reads SORT's options (SORT_RO's when `readonly`: no STORE), with Redis's errors.
pub fn parse(a: &Args, readonly: bool) -> Result<SortOpts, &'static str> {
    let mut o = SortOpts {
        desc: false,
        alpha: false,
        limit_start: 0,
        limit_count: -1,
        by: None,
        dontsort: false,
        gets: Vec::new(),
        store: None,
    };
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let w = &a[j];
        if eq_ic(w, b"asc") {
            o.desc = false;
        } else if eq_ic(w, b"desc") {
            o.desc = true;
        } else if eq_ic(w, b"alpha") {
            o.alpha = true;
        } else if eq_ic(w, b"limit") && left >= 2 {
            o.limit_start = super::parse_int(&a[j + 1])?;
            o.limit_count = super::parse_int(&a[j + 2])?;
            j += 2;
        } else if !readonly && eq_ic(w, b"store") && left >= 1 {
            o.store = Some(a[j + 1].to_vec());
            j += 1;
        } else if eq_ic(w, b"by") && left >= 1 {
            if !cstr(&a[j + 1]).contains(&b'*') {
                o.dontsort = true;
            }
            o.by = Some(Pattern::parse(&a[j + 1]));
            j += 1;
        } else if eq_ic(w, b"get") && left >= 1 {
            o.gets.push(Pattern::parse(&a[j + 1]));
            j += 1;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

/// One element being sorted, with its weight.
struct Item {
    elem: Vec<u8>,
    score: f64,
    /// ALPHA with BY: the looked-up weight (None: missing).
    by: Option<Vec<u8>>,
}

/// A SORT in progress: the elements loaded, the output range, then sorted.
pub struct Sorter {
    pub opts: SortOpts,
    items: Vec<Item>,
    /// The output range of `items`, inclusive; empty when `end < start`.
    start: i64,
    end: i64,
}

impl Sorter {
    /// Reads the elements of the collection at `key` (none when it is missing) and works
    /// out the output range; WRONGTYPE for a string or hash. Converts a `listpack` sorted
    /// set to `skiplist`, as Redis 7.0 does.
    pub fn load(
        sh: &mut Shard,
        ctx: &ExecCtx,
        key: &[u8],
        mut opts: SortOpts,
    ) -> Result<Sorter, &'static str> {
        let seed = sh.next_rand();
        let mut elems: Vec<Vec<u8>> = Vec::new();
        let (mut start, mut end);
        match sh.lookup_read(ctx.db, key, ctx.now_ms) {
            None => {
                (start, end) = range(&opts, 0);
            }
            Some(mut e) => {
                if let Some(mut z) = e.zset_mut() {
                    z.convert(seed);
                }
                let v = e.into_ref().value();
                if let (ValueRef::Set(_), true, true) = (v, opts.dontsort, opts.store.is_some()) {
                    // A set has no order of its own to keep: sorted, so that what is
                    // stored does not depend on the set's layout (Redis's rule).
                    opts.dontsort = false;
                    opts.alpha = true;
                    opts.by = None;
                }
                match v {
                    ValueRef::List(l) => {
                        (start, end) = range(&opts, l.len());
                        if opts.dontsort {
                            // The range straight from the list, in DESC's direction.
                            if end >= start {
                                let n = (end - start + 1) as usize;
                                let s = start as usize;
                                if opts.desc {
                                    elems.extend(
                                        l.iter().rev().skip(s).take(n).map(Cow::into_owned),
                                    );
                                } else {
                                    elems.extend(l.range(s, s + n - 1).map(Cow::into_owned));
                                }
                                end -= start;
                                start = 0;
                            }
                        } else {
                            elems.extend(l.iter().map(Cow::into_owned));
                        }
                    }
                    ValueRef::Set(s) => {
                        (start, end) = range(&opts, s.len());
                        elems.reserve(s.len());
                        s.for_each(|m| elems.push(m.to_vec()));
                    }
                    ValueRef::ZSet(z) => {
                        (start, end) = range(&opts, z.len());
                        if opts.dontsort {
                            let n = (end - start + 1).max(0) as usize;
                            if n > 0 {
                                let from = if opts.desc {
                                    z.len() - 1 - start as usize
                                } else {
                                    start as usize
                                };
                                z.walk(from, opts.desc, |_, m| {
                                    elems.push(m.to_vec());
                                    elems.len() < n
                                });
                            }
                            end -= start;
                            start = 0;
                        } else {
                            elems.reserve(z.len());
                            z.for_each(|_, m| elems.push(m.to_vec()));
                        }
                    }
                    _ => return Err(err::WRONGTYPE),
                }
            }
        }
        let items = elems
            .into_iter()
            .map(|elem| Item {
                elem,
                score: 0.0,
                by: None,
            })
            .collect();
        Ok(Sorter {
            opts,
            items,
            start,
            end,
        })
    }

    /// The keys whose values weigh the elements, one per element in order; None when the
    /// elements sort by themselves (or not at all).
    pub fn by_keys(&self) -> Option<Vec<Lookup>> {
        if self.opts.dontsort {
            return None;
        }
        let by = self.opts.by.as_ref()?;
        Some(
            self.items
                .iter()
                .map(|i| by.key(&i.elem).unwrap_or_default())
                .collect(),
        )
    }

    /// Sorts the elements; `byvals` are the values of [`Sorter::by_keys`]'s keys, in order
    /// (None: missing). Err when a numeric weight is not a number.
    pub fn sort(&mut self, byvals: Option<Vec<Option<Vec<u8>>>>) -> Result<(), &'static str> {
        if self.opts.dontsort {
            return Ok(());
        }
        let (alpha, desc, store) = (self.opts.alpha, self.opts.desc, self.opts.store.is_some());
        let by_pattern = self.opts.by.is_some();
        let mut bad = false;
        let mut byvals = byvals.map(Vec::into_iter);
        for it in &mut self.items {
            let byval = match byvals.as_mut() {
                Some(vals) => match vals.next().flatten() {
                    Some(v) => v,
                    None => continue,
                },
                None => {
                    if alpha {
                        continue;
                    }
                    it.elem.clone()
                }
            };
            if alpha {
                it.by = Some(byval);
            } else {
                let mut v = 0.0;
                // SAFETY: a pointer and length of a live slice; the C side copies it.
                let ok = unsafe { percore_sort_strtod(byval.as_ptr(), byval.len(), &mut v) };
                if ok == 1 {
                    it.score = v;
                } else {
                    bad = true;
                }
            }
        }
        let order = |a: &Item, b: &Item| -> Ordering {
            let c = if !alpha {
                match a.score.partial_cmp(&b.score) {
                    Some(Ordering::Equal) | None => a.elem.cmp(&b.elem),
                    Some(o) => o,
                }
            } else {
                let (x, y) = if by_pattern {
                    match (&a.by, &b.by) {
                        (None, None) => return Ordering::Equal,
                        (None, Some(_)) => {
                            return if desc {
                                Ordering::Greater
                            } else {
                                Ordering::Less
                            }
                        }
                        (Some(_), None) => {
                            return if desc {
                                Ordering::Less
                            } else {
                                Ordering::Greater
                            }
                        }
                        (Some(x), Some(y)) => (x.as_slice(), y.as_slice()),
                    }
                } else {
                    (a.elem.as_slice(), b.elem.as_slice())
                };
                if store {
                    x.cmp(y)
                } else {
                    cstr(x).cmp(cstr(y))
                }
            };
            if desc {
                c.reverse()
            } else {
                c
            }
        };
        self.items.sort_by(order);
        if bad {
            return Err(NOT_DOUBLE);
        }
        Ok(())
    }

    /// The elements in the output range.
    fn output(&self) -> &[Item] {
        if self.end < self.start {
            return &[];
        }
        let s = (self.start as usize).min(self.items.len());
        let e = (self.end as usize + 1).min(self.items.len());
        &self.items[s..e]
    }

    /// The keys the GET patterns name for the output, element by element, pattern by
    /// pattern (only the patterns that name keys).
    pub fn get_keys(&self) -> Vec<Lookup> {
        let mut keys = Vec::new();
        for it in self.output() {
            keys.extend(self.opts.gets.iter().filter_map(|p| p.key(&it.elem)));
        }
        keys
    }

    /// The output: the elements, or for each the GET patterns' values (None: nil), with
    /// `getvals` the values of [`Sorter::get_keys`]'s keys in order.
    pub fn finish(self, getvals: Vec<Option<Vec<u8>>>) -> Vec<Option<Vec<u8>>> {
        let mut vals = getvals.into_iter();
        let gets = &self.opts.gets;
        let mut out = Vec::with_capacity(self.output().len() * gets.len().max(1));
        for it in self.output() {
            if gets.is_empty() {
                out.push(Some(it.elem.clone()));
            }
            for p in gets {
                out.push(match p {
                    Pattern::Elem => Some(it.elem.clone()),
                    Pattern::Fixed => None,
                    Pattern::Key { .. } => vals.next().flatten(),
                });
            }
        }
        out
    }
}

/// Redis's output range for `len` elements: start and end, inclusive (end < start: none).
fn range(o: &SortOpts, len: usize) -> (i64, i64) {
    let len = len as i64;
    let mut start = o.limit_start.max(0).min(len);
    let count = o.limit_count.max(-1).min(len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }
    (start, end)
}

/// The string at `key`, or with `field` the hash field's value, as SORT's patterns read
/// them: anything else (missing, expired, another type) is None. Counts as a read.
pub fn lookup_value(
    sh: &mut Shard,
    ctx: &ExecCtx,
    key: &[u8],
    field: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let v = sh.lookup_read(ctx.db, key, ctx.now_ms)?.into_ref().value();
    match (field, v) {
        (None, v) if v.is_string() => Some(v.to_vec()),
        (Some(f), ValueRef::Hash(h)) => h.get(f).map(|x| x.to_vec()),
        _ => None,
    }
}

/// Looks up `keys` on this shard, in order.
pub fn lookup_all(sh: &mut Shard, ctx: &ExecCtx, keys: &[Lookup]) -> Vec<Option<Vec<u8>>> {
    keys.iter()
        .map(|(k, f)| lookup_value(sh, ctx, k, f.as_deref()))
        .collect()
}

/// Writes SORT's reply for `out` (nil for a missing GET value).
pub fn write_reply(out: &mut ReplyWriter, items: &[Option<Vec<u8>>]) {
    out.array(items.len());
    for v in items {
        match v {
            Some(b) => out.bulk(b),
            None => out.null(),
        }
    }
}

/// STORE: `items` become the list at `dest` (a missing GET value as an empty string),
/// replacing whatever was there, deadline included; no items delete `dest`. Returns the
/// count SORT replies.
pub fn store(sh: &mut Shard, ctx: &ExecCtx, dest: &[u8], items: &[Option<Vec<u8>>]) -> i64 {
    let entry = (!items.is_empty()).then(|| {
        let l = List::from_elements(
            items.iter().map(|v| v.as_deref().unwrap_or_default()),
            sh.config.list_limits,
        );
        Entry::new(Value::List(Box::new(l)), ctx.now_ms)
    });
    sh.store_result(ctx.db, dest, entry, crate::notify::LIST, "sortstore");
    items.len() as i64
}

/// SORT / SORT_RO with every key it reads and writes on this shard.
pub fn sort(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, readonly: bool) {
    let opts = match parse(&a, readonly) {
        Ok(o) => o,
        Err(e) => return out.error(e),
    };
    let mut s = match Sorter::load(sh, ctx, &a[1], opts) {
        Ok(s) => s,
        Err(e) => return out.error(e),
    };
    let byvals = s.by_keys().map(|keys| lookup_all(sh, ctx, &keys));
    if let Err(e) = s.sort(byvals) {
        return out.error(e);
    }
    let getvals = lookup_all(sh, ctx, &s.get_keys());
    let dest = s.opts.store.take();
    let items = s.finish(getvals);
    match dest {
        Some(d) => out.int(store(sh, ctx, &d, &items)),
        None => write_reply(out, &items),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: &[u8], suffix: &[u8], field: Option<&[u8]>) -> Pattern {
        Pattern::Key {
            prefix: prefix.to_vec(),
            suffix: suffix.to_vec(),
            field: field.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn patterns_read_as_redis_reads_them() {
        assert_eq!(Pattern::parse(b"#"), Pattern::Elem);
        // A NUL ends the C string: "#\0x" is "#", and a '*' after a NUL is not seen.
        assert_eq!(Pattern::parse(b"#\0x"), Pattern::Elem);
        assert_eq!(Pattern::parse(b"w_\0*"), Pattern::Fixed);
        assert_eq!(Pattern::parse(b"nosort"), Pattern::Fixed);
        assert_eq!(Pattern::parse(b"w_*"), key(b"w_", b"", None));
        assert_eq!(Pattern::parse(b"w_*_x"), key(b"w_", b"_x", None));
        assert_eq!(Pattern::parse(b"h_*->f"), key(b"h_", b"", Some(b"f")));
        assert_eq!(
            Pattern::parse(b"h_*x->f->g"),
            key(b"h_", b"x", Some(b"f->g"))
        );
        // An empty field is no field: the key is "h_<elem>->".
        assert_eq!(Pattern::parse(b"h_*->"), key(b"h_", b"->", None));
        // "->" before the '*' is part of the prefix.
        assert_eq!(Pattern::parse(b"a->*"), key(b"a->", b"", None));
        assert_eq!(
            Pattern::parse(b"w_*").key(b"7"),
            Some((b"w_7".to_vec(), None))
        );
        assert_eq!(Pattern::Elem.key(b"7"), None);
    }

    #[test]
    fn limits_clamp_as_redis_does() {
        let o = |s, c| SortOpts {
            desc: false,
            alpha: false,
            limit_start: s,
            limit_count: c,
            by: None,
            dontsort: false,
            gets: vec![],
            store: None,
        };
        assert_eq!(range(&o(0, -1), 5), (0, 4));
        assert_eq!(range(&o(1, 2), 5), (1, 2));
        assert_eq!(range(&o(-3, 2), 5), (0, 1));
        assert_eq!(range(&o(3, 100), 5), (3, 4));
        assert_eq!(range(&o(5, 1), 5), (4, 3));
        assert_eq!(range(&o(0, 0), 5), (0, -1));
        assert_eq!(range(&o(0, -1), 0), (-1, -2));
        assert_eq!(range(&o(i64::MAX, i64::MAX), 3), (2, 1));
        assert_eq!(range(&o(i64::MIN, i64::MIN), 3), (0, 2));
    }

    fn sorted(elems: &[&str], alpha: bool, desc: bool) -> Result<Vec<String>, &'static str> {
        let mut s = Sorter {
            opts: SortOpts {
                desc,
                alpha,
                limit_start: 0,
                limit_count: -1,
                by: None,
                dontsort: false,
                gets: vec![],
                store: None,
            },
            items: elems
                .iter()
                .map(|e| Item {
                    elem: e.as_bytes().to_vec(),
                    score: 0.0,
                    by: None,
                })
                .collect(),
            start: 0,
            end: elems.len() as i64 - 1,
        };
        s.sort(None)?;
        Ok(s.finish(vec![])
            .into_iter()
            .map(|v| String::from_utf8(v.unwrap()).unwrap())
            .collect())
    }

    #[test]
    fn numbers_sort_by_value_then_bytes() {
        assert_eq!(
            sorted(
                &["10", "9", " 2", "", "-0", "0", "1e1", "0x10"],
                false,
                false
            )
            .unwrap(),
            ["", "-0", "0", " 2", "9", "10", "1e1", "0x10"]
        );
        assert_eq!(
            sorted(&["3", "1", "2"], false, true).unwrap(),
            ["3", "2", "1"]
        );
        assert_eq!(sorted(&["1", "a"], false, false), Err(NOT_DOUBLE));
        assert_eq!(sorted(&["1e400"], false, false), Err(NOT_DOUBLE));
        assert_eq!(sorted(&["nan"], false, false), Err(NOT_DOUBLE));
        assert_eq!(sorted(&["1 "], false, false), Err(NOT_DOUBLE));
    }

    #[test]
    fn alpha_collates_up_to_a_nul() {
        // Without STORE, "b\0z" and "b\0a" compare equal and keep their order.
        assert_eq!(
            sorted(&["c", "b\0z", "a", "b\0a"], true, false).unwrap(),
            ["a", "b\0z", "b\0a", "c"]
        );
        assert_eq!(
            sorted(&["c", "b\0z", "a", "b\0a"], true, true).unwrap(),
            ["c", "b\0z", "b\0a", "a"]
        );
    }
}
