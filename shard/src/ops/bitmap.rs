//! Bitmap commands on strings (Redis's `bitops.c`): SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP,
//! BITFIELD and BITFIELD_RO.
//!
//! A bitmap is an ordinary string value: bit 0 is the most significant bit of the first byte,
//! and bytes past the end of the string read as zero. Writing commands (SETBIT, BITFIELD with
//! SET/INCRBY) turn the value into `raw` bytes first, as Redis's `dbUnshareStringValue` does
//! (an integer-encoded or `embstr` string reports `raw` afterwards), and zero-pad it up to the
//! highest bit they address.
//!
//! Invariants and bounds:
//! - No offset reaches memory unchecked: a bit offset is refused unless `offset / 8` is below
//!   `proto-max-bulk-len` (Redis's check and error), so a string grows to at most
//!   `proto-max-bulk-len` bytes (BITFIELD: plus the ≤ 8 bytes of its widest field, as Redis).
//! - Growth is zeroed memory, never a fill loop over a large block: a new key's bytes, and
//!   the block an existing string moves into when it grows by a large step (one copy of its
//!   old bytes), are zero pages the kernel maps on first touch ([`zeroed_vec`]), so SETBIT
//!   at offset 2^32-1 costs well under a millisecond and no RSS until the bits are written
//!   (Redis `memset`s all 512 MB: ~0.5 s here). Small growth keeps Redis's greedy
//!   `sdsMakeRoomFor` policy (`string::make_room_for`).
//! - BITOP's result is as long as its longest source; sources live on one shard or several:
//!   [`BitOpAcc`] folds sources in any grouping (AND/OR/XOR are associative and commutative
//!   with zero-filled missing bytes), so each shard folds its own sources and the coordinator
//!   folds the partial results.
//! - Counting uses `u64::count_ones` over 32-byte chunks; on x86-64 a copy of the loop built
//!   with the `popcnt` feature is chosen at run time when the CPU has it (the build itself
//!   targets the x86-64 baseline, which lacks it).
//!
//! The range arithmetic of BITCOUNT/BITPOS and the overflow rules of BITFIELD are ported
//! from Redis 7.0 (`bitops.c`, Copyright (c) 2009-2012, Salvatore Sanfilippo, BSD 3-clause),
//! quirks included, because clients observe them.

use super::{eq_ic, parse_int};
use crate::notify::STRING;
use crate::{err, Entry, ExecCtx, Shard, Value};
use percore_proto::{parse_i64, Args, ReplyWriter};

/// Redis's error for a bit offset that is not a non-negative integer within the size limit.
pub const BIT_OFFSET_ERR: &str = "ERR bit offset is not an integer or out of range";
const BIT_VALUE_ERR: &str = "ERR bit is not an integer or out of range";
const BITPOS_BIT_ERR: &str = "ERR The bit argument must be 1 or 0.";
/// BITOP NOT with other than one source.
pub const BITOP_NOT_ERR: &str = "ERR BITOP NOT must be called with a single source key.";
const OVERFLOW_TYPE_ERR: &str = "ERR Invalid OVERFLOW type specified";
const FIELD_TYPE_ERR: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
const BITFIELD_RO_ERR: &str = "ERR BITFIELD_RO only supports the GET subcommand";

/// Growth of at least this many bytes past a string's capacity takes a fresh zeroed block,
/// and blocks at least this large are zeroed by the kernel ([`zeroed_vec`]).
const ZEROED_GROWTH_MIN: usize = 1 << 20;
const PAGE: usize = 4096;

// ---------------------------------------------------------------------------------------
// Bit-level helpers
// ---------------------------------------------------------------------------------------

/// Number of set bits in `b`. O(len), no allocation.
pub fn popcount(b: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU supports `popcnt` (checked just above), the only requirement of
            // a `target_feature` function; it reads `b` within bounds like the portable loop.
            return unsafe { popcount_popcnt(b) };
        }
    }
    popcount_words(b)
}

/// [`popcount_words`] compiled with the `popcnt` instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn popcount_popcnt(b: &[u8]) -> u64 {
    popcount_words(b)
}

#[inline(always)]
fn popcount_words(b: &[u8]) -> u64 {
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().expect("an 8-byte chunk"));
    let mut n = 0u64;
    let mut chunks = b.chunks_exact(32);
    for c in &mut chunks {
        n += u64::from(
            word(&c[0..8]).count_ones()
                + word(&c[8..16]).count_ones()
                + word(&c[16..24]).count_ones()
                + word(&c[24..32]).count_ones(),
        );
    }
    let mut words = chunks.remainder().chunks_exact(8);
    for c in &mut words {
        n += u64::from(word(c).count_ones());
    }
    for &x in words.remainder() {
        n += u64::from(x.count_ones());
    }
    n
}

/// Position of the first bit equal to `bit` in `s` (Redis's `redisBitpos`): looking for a
/// clear bit in all-ones bytes gives `8 * len` (the string is zero-padded on the right);
/// looking for a set bit in all-zero bytes gives -1. Skips 8 bytes at a time.
pub fn first_bit(s: &[u8], bit: bool) -> i64 {
    let skip = if bit { 0u8 } else { 0xff };
    let skip_word = u64::from_ne_bytes([skip; 8]);
    let mut i = 0;
    let mut words = s.chunks_exact(8);
    for c in &mut words {
        if u64::from_ne_bytes(c.try_into().expect("an 8-byte chunk")) != skip_word {
            break;
        }
        i += 8;
    }
    while i < s.len() && s[i] == skip {
        i += 1;
    }
    match s.get(i) {
        None if bit => -1,
        None => 8 * s.len() as i64,
        Some(&b) => {
            let lead = if bit {
                b.leading_zeros()
            } else {
                (!b).leading_zeros()
            };
            8 * i as i64 + i64::from(lead)
        }
    }
}

/// The bit at `offset` (0 past the end).
pub fn get_bit(s: &[u8], offset: u64) -> bool {
    let byte = offset >> 3;
    usize::try_from(byte)
        .ok()
        .and_then(|b| s.get(b))
        .is_some_and(|&v| v & (0x80 >> (offset & 7)) != 0)
}

/// The up to 9 bytes from byte `offset / 8` on, zero-padded, as a big-endian `u128` whose
/// top bits are those bytes: any field of ≤ 64 bits starting in the first byte lies in it.
fn window(s: &[u8], byte: u64) -> u128 {
    let mut w = [0u8; 16];
    if let Some(from) = usize::try_from(byte).ok().and_then(|b| s.get(b..)) {
        let n = from.len().min(9);
        w[..n].copy_from_slice(&from[..n]);
    }
    u128::from_be_bytes(w)
}

/// The unsigned `bits`-wide field (1..=64) at bit `offset`; bits past the end read as 0.
pub fn get_unsigned(s: &[u8], offset: u64, bits: u32) -> u64 {
    debug_assert!((1..=64).contains(&bits));
    let w = window(s, offset >> 3);
    ((w << (offset & 7)) >> (128 - bits)) as u64
}

/// The signed (two's complement) `bits`-wide field at bit `offset`.
pub fn get_signed(s: &[u8], offset: u64, bits: u32) -> i64 {
    let v = get_unsigned(s, offset, bits);
    // Sign-extend from bit `bits - 1`.
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Writes the low `bits` bits of `value` at bit `offset`. The caller has grown `s` to hold
/// bit `offset + bits - 1`.
pub fn set_field(s: &mut [u8], offset: u64, bits: u32, value: u64) {
    debug_assert!((1..=64).contains(&bits));
    let byte = (offset >> 3) as usize;
    let shift = 128 - (offset & 7) as u32 - bits;
    let field = (1u128 << bits) - 1;
    let w = (window(s, offset >> 3) & !(field << shift)) | ((u128::from(value) & field) << shift);
    let bytes = w.to_be_bytes();
    // The field ends in the byte of its last bit; bytes beyond it are written back unchanged.
    let last = ((offset + u64::from(bits) - 1) >> 3) as usize;
    s[byte..=last].copy_from_slice(&bytes[..=last - byte]);
}

/// What BITFIELD does when a value does not fit its field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    Wrap,
    Sat,
    Fail,
}

/// Redis's `checkUnsignedBitfieldOverflow`: None when `value + incr` fits in `bits` (1..=63)
/// unsigned bits, else the result to store (wrapped or saturated; unused for FAIL).
pub fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<u64> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = (value as i64).wrapping_neg();
    let wrapped = || value.wrapping_add(incr as u64) & max;
    if value > max || (incr > 0 && incr > maxincr) {
        Some(match ow {
            Overflow::Wrap => wrapped(),
            Overflow::Sat => max,
            Overflow::Fail => 0,
        })
    } else if incr < 0 && incr < minincr {
        Some(match ow {
            Overflow::Wrap => wrapped(),
            Overflow::Sat | Overflow::Fail => 0,
        })
    } else {
        None
    }
}

/// Redis's `checkSignedBitfieldOverflow`: None when `value + incr` fits in `bits` (1..=64)
/// signed bits, else the result to store (wrapped or saturated; unused for FAIL).
pub fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<i64> {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrapped = || {
        let c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                (c | mask) as i64
            } else {
                (c & !mask) as i64
            }
        } else {
            c as i64
        }
    };
    let pick = |limit: i64| match ow {
        Overflow::Wrap => wrapped(),
        Overflow::Sat => limit,
        Overflow::Fail => 0,
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        Some(pick(max))
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        Some(pick(min))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------
// Argument parsing
// ---------------------------------------------------------------------------------------

/// Redis's `getBitOffsetFromArgument`: a bit offset below `8 * max_bulk`. With `field_bits`
/// (BITFIELD), `#N` means `N * field_bits` (multiplied as Redis does, wrapping).
pub fn parse_bit_offset(
    arg: &[u8],
    field_bits: Option<u32>,
    max_bulk: i64,
) -> Result<u64, &'static str> {
    let hash = field_bits.is_some() && arg.first() == Some(&b'#');
    let n = parse_i64(&arg[hash as usize..]).ok_or(BIT_OFFSET_ERR)?;
    let n = match field_bits {
        Some(bits) if hash => n.wrapping_mul(i64::from(bits)),
        _ => n,
    };
    if n < 0 || (n >> 3) >= max_bulk {
        return Err(BIT_OFFSET_ERR);
    }
    Ok(n as u64)
}

/// A BITFIELD type: `i1`..`i64` or `u1`..`u63` (lower-case, as Redis).
fn parse_field_type(arg: &[u8]) -> Result<(bool, u32), &'static str> {
    // Redis reads the width with strlen: a NUL ends it.
    let arg = arg.split(|&b| b == 0).next().unwrap_or(&[]);
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(FIELD_TYPE_ERR),
    };
    match parse_i64(&arg[1..]) {
        Some(n) if n >= 1 && n <= if signed { 64 } else { 63 } => Ok((signed, n as u32)),
        _ => Err(FIELD_TYPE_ERR),
    }
}

// ---------------------------------------------------------------------------------------
// Writing bits
// ---------------------------------------------------------------------------------------

/// `len` zero bytes in a vector of capacity `cap` (≥ `len`), without writing the bulk of
/// them: a large block is taken from the allocator uninitialized and its whole pages are
/// handed back to the kernel (`MADV_DONTNEED`), which maps zero pages on first touch; only
/// the partial pages at either end are zeroed by hand. `calloc` alone is not enough: an
/// allocator reusing a freed block (every 512 MB bitmap after the first) zeroes it with a
/// `memset`, faulting in every page — measured at 0.5–4 s for 512 MB on a loaded machine,
/// and 512 MB more RSS for a bitmap whose bits are mostly never written. Small blocks come
/// from `vec![0; cap]`.
fn zeroed_vec(len: usize, cap: usize) -> Vec<u8> {
    debug_assert!(len <= cap);
    if cap < ZEROED_GROWTH_MIN {
        let mut v = vec![0u8; cap];
        v.truncate(len);
        return v;
    }
    let mut v = Vec::<u8>::with_capacity(cap);
    let base = v.as_mut_ptr();
    let addr = base as usize;
    let first = (addr + PAGE - 1) & !(PAGE - 1);
    let end = (addr + cap) & !(PAGE - 1);
    // SAFETY: every range written or advised lies inside the `cap` bytes the vector owns
    // (first ≤ end because cap ≥ 1 MB spans whole pages); the whole pages strictly inside the
    // block belong to no other allocation, and the allocator keeps no data inside a live
    // block, so replacing them with zero-fill-on-demand pages (private anonymous memory, as
    // the allocator maps it) is unobservable except that they read as zero. Should the
    // kernel refuse, they are zeroed by hand. `set_len(len)` then covers initialized bytes.
    unsafe {
        std::ptr::write_bytes(base, 0, first - addr);
        let advised = libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED);
        if advised != 0 {
            std::ptr::write_bytes(first as *mut u8, 0, end - first);
        }
        std::ptr::write_bytes(end as *mut u8, 0, addr + cap - end);
        v.set_len(len);
    }
    v
}

/// Grows `data` to `len` bytes with zeros (no-op when it is long enough). Growth within the
/// capacity, or by less than [`ZEROED_GROWTH_MIN`], follows `sdsMakeRoomFor`; a larger step
/// moves the bytes into a fresh zeroed block of the same greedy capacity, so the new tail is
/// never filled byte by byte.
fn grow_zeroed(data: &mut Vec<u8>, len: usize) {
    if len <= data.len() {
        return;
    }
    if len > data.capacity() && len - data.len() >= ZEROED_GROWTH_MIN {
        let mut fresh = zeroed_vec(len, super::string::room_for(len));
        fresh[..data.len()].copy_from_slice(data);
        *data = fresh;
        return;
    }
    super::string::make_room_for(data, len);
    data.resize(len, 0);
}

/// Redis's `lookupStringForBitCommand`: runs `f` on the bytes of the string at `key`, made
/// `raw` and zero-padded to hold bit `max_bit`, creating the key when absent. Err (nothing
/// done) when the key holds another type. Also says whether the string was created or grew
/// (Redis's `dirty`, which makes SETBIT report a change whatever the bit was).
fn with_bits_mut<R>(
    sh: &mut Shard,
    ctx: &ExecCtx,
    key: &[u8],
    max_bit: u64,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> Result<(R, bool), ()> {
    let len = usize::try_from((max_bit >> 3) + 1).map_err(|_| ())?;
    match sh.lookup(ctx.db, key, ctx.now_ms) {
        Some(e) if !e.value().is_string() => Err(()),
        Some(mut e) => {
            let mut r = None;
            e.edit_raw(|data| {
                let grew = data.len() < len;
                grow_zeroed(data, len);
                r = Some((f(data), grew));
            });
            Ok(r.expect("edit_raw runs its closure"))
        }
        None => {
            let mut data = zeroed_vec(len, len);
            let r = f(&mut data);
            sh.store(
                ctx.db,
                key,
                Entry::new(Value::Str { data, raw: true }, ctx.now_ms),
            );
            Ok((r, true))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// SETBIT key offset 0|1: the bit's old value.
pub fn setbit(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let offset = match parse_bit_offset(&a[2], None, sh.config.proto_max_bulk_len) {
        Ok(o) => o,
        Err(e) => return out.error(e),
    };
    let on = match parse_i64(&a[3]) {
        Some(v @ (0 | 1)) => v == 1,
        _ => return out.error(BIT_VALUE_ERR),
    };
    let old = with_bits_mut(sh, ctx, &a[1], offset, |data| {
        let byte = &mut data[(offset >> 3) as usize];
        let mask = 0x80u8 >> (offset & 7);
        let old = *byte & mask != 0;
        if on {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
        old
    });
    match old {
        Ok((old, dirty)) => {
            if dirty || old != on {
                sh.notify(STRING, "setbit", ctx.db, &a[1]);
            }
            out.int(old as i64)
        }
        Err(()) => out.error(err::WRONGTYPE),
    }
}

/// GETBIT key offset.
pub fn getbit(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let offset = match parse_bit_offset(&a[2], None, sh.config.proto_max_bulk_len) {
        Ok(o) => o,
        Err(e) => return out.error(e),
    };
    match sh.lookup_read(ctx.db, &a[1], ctx.now_ms) {
        None => out.int(0),
        Some(e) if !e.value().is_string() => out.error(err::WRONGTYPE),
        Some(e) => {
            let mut scratch = itoa::Buffer::new();
            out.int(get_bit(e.value().as_bytes(&mut scratch), offset) as i64)
        }
    }
}

/// BIT or BYTE (case-insensitive): true for BIT.
fn parse_unit(arg: &[u8]) -> Result<bool, &'static str> {
    if eq_ic(arg, b"bit") {
        Ok(true)
    } else if eq_ic(arg, b"byte") {
        Ok(false)
    } else {
        Err(err::SYNTAX)
    }
}

/// Masks of the bits outside a bit range in its first and last bytes, and the range in bytes
/// (Redis's `first_byte_neg_mask`/`last_byte_neg_mask`).
fn bit_range_to_bytes(start: i64, end: i64) -> (i64, i64, u8, u8) {
    let first = !((1u32 << (8 - (start & 7))) - 1) as u8;
    let last = ((1u32 << (7 - (end & 7))) - 1) as u8;
    (start >> 3, end >> 3, first, last)
}

/// BITCOUNT's and BITPOS's range of a `strlen`-byte string, in bytes, from `start` and
/// `end` (bits when `isbit`): negative ones count from the end, then both are clamped to
/// the string; a bit range is turned into bytes and the masks of the bits outside it in its
/// first and last bytes ([`bit_range_to_bytes`]; 0 for a byte range or an empty one).
fn clamp_range(mut start: i64, mut end: i64, strlen: i64, isbit: bool) -> ((i64, i64), u8, u8) {
    let totlen = if isbit { strlen << 3 } else { strlen };
    if start < 0 {
        start += totlen;
    }
    if end < 0 {
        end += totlen;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= totlen {
        end = totlen - 1;
    }
    if isbit && start <= end {
        let (start, end, first, last) = bit_range_to_bytes(start, end);
        return ((start, end), first, last);
    }
    ((start, end), 0, 0)
}

/// BITCOUNT key [start end [BYTE|BIT]].
pub fn bitcount(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let e = match sh.lookup_read(ctx.db, &a[1], ctx.now_ms) {
        None => return out.int(0),
        Some(e) if !e.value().is_string() => return out.error(err::WRONGTYPE),
        Some(e) => e,
    };
    let mut scratch = itoa::Buffer::new();
    let p = e.value().as_bytes(&mut scratch);
    let strlen = p.len() as i64;
    let ((start, end), first_mask, last_mask) = match a.len() {
        4 | 5 => {
            let (start, end) = match (parse_int(&a[2]), parse_int(&a[3])) {
                (Ok(s), Ok(e)) => (s, e),
                (Err(e), _) | (_, Err(e)) => return out.error(e),
            };
            if start < 0 && end < 0 && start > end {
                return out.int(0);
            }
            let isbit = match a.get(4).map(parse_unit).transpose() {
                Ok(b) => b.unwrap_or(false),
                Err(e) => return out.error(e),
            };
            clamp_range(start, end, strlen, isbit)
        }
        2 => ((0, strlen - 1), 0, 0),
        _ => return out.error(err::SYNTAX),
    };
    if start > end {
        return out.int(0);
    }
    let (s, e) = (start as usize, end as usize);
    let mut count = popcount(&p[s..=e]);
    count -= u64::from((p[s] & first_mask).count_ones());
    count -= u64::from((p[e] & last_mask).count_ones());
    out.int(count as i64);
}

/// BITPOS key bit [start [end [BYTE|BIT]]].
pub fn bitpos(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let bit = match parse_int(&a[2]) {
        Ok(b @ (0 | 1)) => b == 1,
        Ok(_) => return out.error(BITPOS_BIT_ERR),
        Err(e) => return out.error(e),
    };
    // A missing key is an infinite run of clear bits.
    let e = match sh.lookup_read(ctx.db, &a[1], ctx.now_ms) {
        None => return out.int(if bit { -1 } else { 0 }),
        Some(e) if !e.value().is_string() => return out.error(err::WRONGTYPE),
        Some(e) => e,
    };
    let mut scratch = itoa::Buffer::new();
    let p = e.value().as_bytes(&mut scratch);
    let strlen = p.len() as i64;
    let mut end_given = false;
    let ((start, end), first_mask, last_mask) = match a.len() {
        4..=6 => {
            let start = match parse_int(&a[3]) {
                Ok(s) => s,
                Err(e) => return out.error(e),
            };
            let isbit = match a.get(5).map(parse_unit).transpose() {
                Ok(b) => b.unwrap_or(false),
                Err(e) => return out.error(e),
            };
            let end = match a.get(4).map(|x| parse_int(x)).transpose() {
                Ok(Some(e)) => {
                    end_given = true;
                    e
                }
                Ok(None) if isbit => (strlen << 3) + 7,
                Ok(None) => strlen - 1,
                Err(e) => return out.error(e),
            };
            clamp_range(start, end, strlen, isbit)
        }
        3 => ((0, strlen - 1), 0, 0),
        _ => return out.error(err::SYNTAX),
    };
    // An empty range holds neither a 0 nor a 1.
    if start > end {
        return out.int(-1);
    }
    let (mut start, end) = (start as usize, end as usize);
    let mut bytes = end - start + 1;
    let pos = 'result: {
        if first_mask != 0 {
            let mut tmp = if bit {
                p[start] & !first_mask
            } else {
                p[start] | first_mask
            };
            // Only one byte: both edges mask it.
            if last_mask != 0 && bytes == 1 {
                tmp = if bit {
                    tmp & !last_mask
                } else {
                    tmp | last_mask
                };
            }
            let pos = first_bit(&[tmp], bit);
            if bytes == 1 || (pos != -1 && pos != 8) {
                break 'result pos;
            }
            start += 1;
            bytes -= 1;
        }
        // A last byte with bits outside the range is looked at on its own.
        let whole = bytes - (last_mask != 0) as usize;
        if whole > 0 {
            let pos = first_bit(&p[start..start + whole], bit);
            if bytes == whole || (pos != -1 && pos != (whole as i64) << 3) {
                break 'result pos;
            }
            start += whole;
            bytes -= whole;
        }
        let tmp = if bit {
            p[end] & !last_mask
        } else {
            p[end] | last_mask
        };
        first_bit(&[tmp], bit)
    };
    // Looking for a clear bit in an explicit range: the padding past its end does not count.
    if end_given && !bit && pos == (bytes as i64) << 3 {
        return out.int(-1);
    }
    out.int(if pos == -1 {
        -1
    } else {
        pos + ((start as i64) << 3)
    });
}

/// A BITOP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP's operation and its source count check, in Redis's order (syntax error first).
pub fn parse_bitop(a: &Args) -> Result<BitOp, &'static str> {
    let op = &a[1];
    let op = if eq_ic(op, b"and") {
        BitOp::And
    } else if eq_ic(op, b"or") {
        BitOp::Or
    } else if eq_ic(op, b"xor") {
        BitOp::Xor
    } else if eq_ic(op, b"not") {
        BitOp::Not
    } else {
        return Err(err::SYNTAX);
    };
    if op == BitOp::Not && a.len() != 4 {
        return Err(BITOP_NOT_ERR);
    }
    Ok(op)
}

/// BITOP's result so far, folded from sources in any grouping: a missing source is an empty
/// string, and every source is zero-padded to the longest. Holds at most the longest
/// source's length.
#[derive(Debug)]
pub struct BitOpAcc {
    op: BitOp,
    /// None before the first source.
    bytes: Option<Vec<u8>>,
}

impl BitOpAcc {
    pub fn new(op: BitOp) -> Self {
        BitOpAcc { op, bytes: None }
    }

    /// Folds one source (or another accumulator's [`BitOpAcc::partial`]) in. For NOT there
    /// is exactly one source, kept as is until [`BitOpAcc::finish`].
    pub fn fold(&mut self, src: &[u8]) {
        let Some(acc) = &mut self.bytes else {
            self.bytes = Some(src.to_vec());
            return;
        };
        let common = acc.len().min(src.len());
        match self.op {
            BitOp::And => {
                and_into(&mut acc[..common], &src[..common]);
                // Past either end the other side is zero.
                acc[common..].fill(0);
                acc.resize(src.len().max(acc.len()), 0);
            }
            BitOp::Or | BitOp::Xor | BitOp::Not => {
                if self.op == BitOp::Xor {
                    xor_into(&mut acc[..common], &src[..common]);
                } else {
                    or_into(&mut acc[..common], &src[..common]);
                }
                if src.len() > acc.len() {
                    acc.extend_from_slice(&src[common..]);
                }
            }
        }
    }

    /// Folds another accumulator of the same operation in.
    pub fn merge(&mut self, other: BitOpAcc) {
        match (&self.bytes, other.bytes) {
            (_, None) => {}
            (None, b) => self.bytes = b,
            (Some(_), Some(b)) => self.fold(&b),
        }
    }

    /// The bytes folded so far, to send to another fold (None: no source seen yet).
    pub fn partial(self) -> Option<Vec<u8>> {
        self.bytes
    }

    pub fn from_partial(op: BitOp, bytes: Option<Vec<u8>>) -> Self {
        BitOpAcc { op, bytes }
    }

    /// The result: empty when every source was empty or missing.
    pub fn finish(self) -> Vec<u8> {
        let mut b = self.bytes.unwrap_or_default();
        if self.op == BitOp::Not {
            not_in_place(&mut b);
        }
        b
    }
}

/// `dst[i] op= src[i]` for equal-length slices, a word at a time.
macro_rules! word_op {
    ($name:ident, $op:tt) => {
        fn $name(dst: &mut [u8], src: &[u8]) {
            debug_assert_eq!(dst.len(), src.len());
            let mut d = dst.chunks_exact_mut(8);
            let mut s = src.chunks_exact(8);
            for (d, s) in (&mut d).zip(&mut s) {
                let mut x = u64::from_ne_bytes((&*d).try_into().expect("8 bytes"));
                x $op u64::from_ne_bytes(s.try_into().expect("8 bytes"));
                d.copy_from_slice(&x.to_ne_bytes());
            }
            for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
                *d $op *s;
            }
        }
    };
}
word_op!(and_into, &=);
word_op!(or_into, |=);
word_op!(xor_into, ^=);

fn not_in_place(b: &mut [u8]) {
    let mut words = b.chunks_exact_mut(8);
    for w in &mut words {
        let x = !u64::from_ne_bytes((&*w).try_into().expect("8 bytes"));
        w.copy_from_slice(&x.to_ne_bytes());
    }
    for x in words.into_remainder() {
        *x = !*x;
    }
}

/// A source key of BITOP holds something other than a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongType;

/// Folds the strings at `keys` of this shard into `acc` in order (Redis's lookups: a hit or
/// miss each); Err at the first key holding another type.
pub fn bitop_fold(
    sh: &mut Shard,
    db: usize,
    now_ms: u64,
    keys: &[&[u8]],
    acc: &mut BitOpAcc,
) -> Result<(), WrongType> {
    for k in keys {
        match sh.lookup_read(db, k, now_ms) {
            None => acc.fold(b""),
            Some(e) if !e.value().is_string() => return Err(WrongType),
            Some(e) => {
                let mut scratch = itoa::Buffer::new();
                acc.fold(e.value().as_bytes(&mut scratch));
            }
        }
    }
    Ok(())
}

/// Stores BITOP's result at `dest` (a `raw` string, its deadline cleared, as Redis's
/// `setKey`), or deletes `dest` when the result is empty; returns the result's length.
pub fn bitop_store(sh: &mut Shard, db: usize, now_ms: u64, dest: &[u8], result: Vec<u8>) -> usize {
    let len = result.len();
    let entry = (len > 0).then(|| {
        Entry::new(
            Value::Str {
                data: result,
                raw: true,
            },
            now_ms,
        )
    });
    sh.store_result(db, dest, entry, STRING, "set");
    len
}

/// BITOP AND|OR|XOR|NOT destkey key [key ...], every key on this shard.
pub fn bitop(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let op = match parse_bitop(&a) {
        Ok(op) => op,
        Err(e) => return out.error(e),
    };
    let keys: Vec<&[u8]> = a.iter().skip(3).collect();
    let mut acc = BitOpAcc::new(op);
    if bitop_fold(sh, ctx.db, ctx.now_ms, &keys, &mut acc).is_err() {
        return out.error(err::WRONGTYPE);
    }
    let len = bitop_store(sh, ctx.db, ctx.now_ms, &a[2], acc.finish());
    out.int(len as i64);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

#[derive(Clone, Copy, Debug)]
struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

/// BITFIELD's operations; Err is Redis's reply for the first bad one. The count is bounded
/// by the arguments (one per 3–4 of them).
fn parse_bitfield(a: &Args, max_bulk: i64) -> Result<Vec<Field>, &'static str> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < a.len() {
        let rem = a.len() - j - 1;
        let sub = &a[j];
        let get = eq_ic(sub, b"get") && rem >= 2;
        let set = eq_ic(sub, b"set") && rem >= 3;
        let incr = eq_ic(sub, b"incrby") && rem >= 3;
        if eq_ic(sub, b"overflow") && rem >= 1 {
            let t = &a[j + 1];
            overflow = if eq_ic(t, b"wrap") {
                Overflow::Wrap
            } else if eq_ic(t, b"sat") {
                Overflow::Sat
            } else if eq_ic(t, b"fail") {
                Overflow::Fail
            } else {
                return Err(OVERFLOW_TYPE_ERR);
            };
            j += 2;
            continue;
        }
        if !(get || set || incr) {
            return Err(err::SYNTAX);
        }
        let (signed, bits) = parse_field_type(&a[j + 1])?;
        let offset = parse_bit_offset(&a[j + 2], Some(bits), max_bulk)?;
        let op = if get {
            FieldOp::Get
        } else {
            let v = parse_int(&a[j + 3])?;
            if set {
                FieldOp::Set(v)
            } else {
                FieldOp::IncrBy(v)
            }
        };
        ops.push(Field {
            op,
            signed,
            bits,
            offset,
            overflow,
        });
        j += if get { 3 } else { 4 };
    }
    Ok(ops)
}

/// A field's value as BITFIELD replies it (a `u63` always fits an i64).
fn read_field(data: &[u8], f: &Field) -> i64 {
    if f.signed {
        get_signed(data, f.offset, f.bits)
    } else {
        get_unsigned(data, f.offset, f.bits) as i64
    }
}

/// Runs one BITFIELD operation on `data` (grown to hold every written field) and replies.
/// One BITFIELD operation, replied; true when it changed the field's bits (Redis counts
/// those changes, and any on a created or grown string, as the command's change).
fn apply_field(data: &mut [u8], f: &Field, out: &mut ReplyWriter) -> bool {
    let (value, incr) = match f.op {
        FieldOp::Get => {
            out.int(read_field(data, f));
            return false;
        }
        FieldOp::Set(v) => (v, None),
        FieldOp::IncrBy(i) => (i, Some(i)),
    };
    let (reply, new) = if f.signed {
        let old = get_signed(data, f.offset, f.bits);
        match incr {
            Some(i) => match signed_overflow(old, i, f.bits, f.overflow) {
                Some(_) if f.overflow == Overflow::Fail => {
                    out.null();
                    return false;
                }
                Some(w) => (w, w),
                None => (old + i, old + i),
            },
            None => match signed_overflow(value, 0, f.bits, f.overflow) {
                Some(_) if f.overflow == Overflow::Fail => {
                    out.null();
                    return false;
                }
                Some(w) => (old, w),
                None => (old, value),
            },
        }
    } else {
        let old = get_unsigned(data, f.offset, f.bits);
        match incr {
            Some(i) => match unsigned_overflow(old, i, f.bits, f.overflow) {
                Some(_) if f.overflow == Overflow::Fail => {
                    out.null();
                    return false;
                }
                Some(w) => (w as i64, w as i64),
                None => {
                    let n = old.wrapping_add(i as u64);
                    (n as i64, n as i64)
                }
            },
            None => match unsigned_overflow(value as u64, 0, f.bits, f.overflow) {
                Some(_) if f.overflow == Overflow::Fail => {
                    out.null();
                    return false;
                }
                Some(w) => (old as i64, w as i64),
                None => (old as i64, value),
            },
        }
    };
    out.int(reply);
    let before = get_unsigned(data, f.offset, f.bits);
    set_field(data, f.offset, f.bits, new as u64);
    get_unsigned(data, f.offset, f.bits) != before
}

/// BITFIELD key [GET type offset | SET type offset value | INCRBY type offset increment |
/// OVERFLOW WRAP|SAT|FAIL] ...; BITFIELD_RO (`readonly`) takes GET only.
pub fn bitfield(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, readonly: bool) {
    let ops = match parse_bitfield(&a, sh.config.proto_max_bulk_len) {
        Ok(ops) => ops,
        Err(e) => return out.error(e),
    };
    let highest_write = ops
        .iter()
        .filter(|f| f.op != FieldOp::Get)
        .map(|f| f.offset + u64::from(f.bits) - 1)
        .max();
    let Some(max_bit) = highest_write else {
        // Only reads: a missing key reads as zeros.
        let e = match sh.lookup_read(ctx.db, &a[1], ctx.now_ms) {
            Some(e) if !e.value().is_string() => return out.error(err::WRONGTYPE),
            e => e,
        };
        let mut scratch = itoa::Buffer::new();
        let data = e.map_or(&[][..], |e| e.into_ref().value().as_bytes(&mut scratch));
        out.array(ops.len());
        for f in &ops {
            out.int(read_field(data, f));
        }
        return;
    };
    if readonly {
        return out.error(BITFIELD_RO_ERR);
    }
    let done = with_bits_mut(sh, ctx, &a[1], max_bit, |data| {
        out.array(ops.len());
        ops.iter().filter(|f| apply_field(data, f, out)).count()
    });
    match done {
        Ok((changes, dirty)) if dirty || changes > 0 => sh.notify(STRING, "setbit", ctx.db, &a[1]),
        Ok(_) => {}
        Err(()) => out.error(err::WRONGTYPE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, s, shard};

    #[test]
    fn popcount_matches_a_bytewise_count() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for from in [0, 1, 3, 7, 8, 31, 32, 33] {
            for to in [from, from + 1, from + 40, 500, 999, 1000] {
                let want: u64 = data[from..to]
                    .iter()
                    .map(|b| u64::from(b.count_ones()))
                    .sum();
                assert_eq!(popcount(&data[from..to]), want, "{from}..{to}");
                assert_eq!(popcount_words(&data[from..to]), want, "{from}..{to}");
            }
        }
        assert_eq!(popcount(&[0xff; 4096]), 4096 * 8);
    }

    #[test]
    fn first_bit_follows_redis_bitpos() {
        assert_eq!(first_bit(&[], true), -1);
        assert_eq!(first_bit(&[], false), 0);
        assert_eq!(first_bit(&[0, 0, 0], true), -1);
        assert_eq!(
            first_bit(&[0xff, 0xff], false),
            16,
            "zero padding on the right"
        );
        assert_eq!(first_bit(&[0, 0x10], true), 11);
        assert_eq!(first_bit(&[0xff, 0xef], false), 11);
        let mut long = vec![0u8; 100];
        long[77] = 0x01;
        assert_eq!(first_bit(&long, true), 77 * 8 + 7);
        let mut ones = vec![0xffu8; 100];
        ones[64] = 0x7f;
        assert_eq!(first_bit(&ones, false), 64 * 8);
    }

    #[test]
    fn fields_read_and_write_big_endian_bits() {
        // Redis's example: u5 value 23 at offset 7 is 00000001|01110000.
        let mut b = vec![0u8; 2];
        set_field(&mut b, 7, 5, 23);
        assert_eq!(b, [0b0000_0001, 0b0111_0000]);
        assert_eq!(get_unsigned(&b, 7, 5), 23);
        assert_eq!(get_signed(&b, 7, 5), 23 - 32);
        // A 64-bit field at an unaligned offset spans 9 bytes; neighbours are kept.
        let mut b = vec![0xaau8; 10];
        set_field(&mut b, 3, 64, 0x0123_4567_89ab_cdef);
        assert_eq!(get_unsigned(&b, 3, 64), 0x0123_4567_89ab_cdef);
        assert_eq!(get_unsigned(&b, 0, 3), 0b101);
        assert_eq!(get_unsigned(&b, 67, 5), 0b01010);
        assert_eq!(b[9], 0xaa);
        set_field(&mut b, 3, 64, u64::MAX);
        assert_eq!(get_signed(&b, 3, 64), -1);
        // Reads past the end are zeros.
        assert_eq!(get_unsigned(&[0xff], 4, 8), 0xf0);
        assert_eq!(get_unsigned(&[], 1_000_000, 63), 0);
        assert!(get_bit(&[0x80], 0) && !get_bit(&[0x80], 1) && !get_bit(&[0x80], 800));
    }

    #[test]
    fn overflow_rules_follow_redis() {
        use Overflow::*;
        // Unsigned: wrap and saturate, both directions; SET of a negative value.
        assert_eq!(unsigned_overflow(250, 10, 8, Wrap), Some(4));
        assert_eq!(unsigned_overflow(250, 10, 8, Sat), Some(255));
        assert_eq!(unsigned_overflow(5, -10, 8, Wrap), Some(251));
        assert_eq!(unsigned_overflow(5, -10, 8, Sat), Some(0));
        assert_eq!(unsigned_overflow(5, -5, 8, Sat), None);
        assert_eq!(unsigned_overflow(-1i64 as u64, 0, 8, Sat), Some(255));
        assert_eq!(unsigned_overflow(-1i64 as u64, 0, 8, Wrap), Some(255));
        assert_eq!(unsigned_overflow(0, i64::MAX, 63, Wrap), None);
        // Signed: limits of i8 and i64.
        assert_eq!(signed_overflow(127, 1, 8, Wrap), Some(-128));
        assert_eq!(signed_overflow(127, 1, 8, Sat), Some(127));
        assert_eq!(signed_overflow(-128, -1, 8, Sat), Some(-128));
        assert_eq!(signed_overflow(-128, -1, 8, Wrap), Some(127));
        assert_eq!(signed_overflow(300, 0, 8, Wrap), Some(44));
        assert_eq!(signed_overflow(i64::MAX, 1, 64, Wrap), Some(i64::MIN));
        assert_eq!(signed_overflow(i64::MIN, -1, 64, Sat), Some(i64::MIN));
        assert_eq!(signed_overflow(i64::MIN, i64::MAX, 64, Sat), None);
        assert_eq!(signed_overflow(0, -1, 1, Sat), None);
        assert_eq!(signed_overflow(0, 1, 1, Sat), Some(0));
        assert_eq!(signed_overflow(-1, -1, 1, Wrap), Some(0));
    }

    #[test]
    fn offsets_and_types_are_checked() {
        let max = 512 * 1024 * 1024;
        assert_eq!(
            parse_bit_offset(b"4294967295", None, max),
            Ok(4_294_967_295)
        );
        assert_eq!(
            parse_bit_offset(b"4294967296", None, max),
            Err(BIT_OFFSET_ERR)
        );
        assert_eq!(parse_bit_offset(b"-1", None, max), Err(BIT_OFFSET_ERR));
        assert_eq!(parse_bit_offset(b"#3", None, max), Err(BIT_OFFSET_ERR));
        assert_eq!(parse_bit_offset(b"#3", Some(8), max), Ok(24));
        assert_eq!(parse_bit_offset(b"#", Some(8), max), Err(BIT_OFFSET_ERR));
        assert_eq!(
            parse_bit_offset(b"#536870912", Some(8), max),
            Err(BIT_OFFSET_ERR)
        );
        assert_eq!(parse_field_type(b"i64"), Ok((true, 64)));
        assert_eq!(parse_field_type(b"u63"), Ok((false, 63)));
        assert!(parse_field_type(b"u64").is_err());
        assert!(parse_field_type(b"i0").is_err());
        assert!(parse_field_type(b"I8").is_err());
        assert!(parse_field_type(b"").is_err());
    }

    #[test]
    fn bitop_folds_in_any_grouping() {
        let srcs: [&[u8]; 4] = [b"\xff\x0f\x01", b"", b"\xf0\xf0\xf0\xf0\xf0", b"\x3c"];
        for op in [BitOp::And, BitOp::Or, BitOp::Xor] {
            let mut all = BitOpAcc::new(op);
            for s in srcs {
                all.fold(s);
            }
            let whole = all.finish();
            // Split in two groups folded apart, then merged.
            let (mut x, mut y) = (BitOpAcc::new(op), BitOpAcc::new(op));
            x.fold(srcs[2]);
            x.fold(srcs[0]);
            y.fold(srcs[3]);
            y.fold(srcs[1]);
            x.merge(BitOpAcc::from_partial(op, y.partial()));
            assert_eq!(x.finish(), whole, "{op:?}");
            assert_eq!(whole.len(), 5);
        }
        let mut and = BitOpAcc::new(BitOp::And);
        and.fold(b"\xff\xff");
        and.fold(b"\x0f");
        assert_eq!(and.finish(), b"\x0f\x00");
        let mut not = BitOpAcc::new(BitOp::Not);
        not.fold(b"\x0f\xf0abcdefghij");
        assert_eq!(&not.finish()[..2], b"\xf0\x0f");
    }

    #[test]
    fn setbit_grows_a_raw_string_with_zeros() {
        let mut sh = shard();
        assert_eq!(run(&mut sh, 1, &["SET", "k", "12"]), b"+OK\r\n");
        assert_eq!(run(&mut sh, 1, &["SETBIT", "k", "23", "1"]), b":0\r\n");
        assert_eq!(run(&mut sh, 1, &["GET", "k"]), b"$3\r\n12\x01\r\n");
        assert_eq!(
            run(&mut sh, 1, &["OBJECT", "ENCODING", "k"]),
            b"$3\r\nraw\r\n"
        );
        assert_eq!(run(&mut sh, 1, &["SETBIT", "k", "23", "0"]), b":1\r\n");
        assert_eq!(run(&mut sh, 1, &["BITCOUNT", "k"]), b":6\r\n");
        // A large step past the capacity takes a zeroed block and keeps the old bytes.
        assert_eq!(
            run(&mut sh, 1, &["SETBIT", "k", "20000000", "1"]),
            b":0\r\n"
        );
        assert_eq!(run(&mut sh, 1, &["STRLEN", "k"]), b":2500001\r\n");
        assert_eq!(run(&mut sh, 1, &["BITCOUNT", "k"]), b":7\r\n");
        assert_eq!(
            run(&mut sh, 1, &["GETRANGE", "k", "0", "3"]),
            b"$4\r\n12\x00\x00\r\n"
        );
        assert_eq!(
            s(&run(&mut sh, 1, &["BITPOS", "k", "1", "3"])),
            ":20000000\r\n"
        );
        let mut v = b"ab".to_vec();
        grow_zeroed(&mut v, 3 * ZEROED_GROWTH_MIN);
        assert_eq!(v.len(), 3 * ZEROED_GROWTH_MIN);
        assert_eq!(&v[..3], b"ab\0");
        assert!(v[2..].iter().all(|&b| b == 0));
    }

    /// Large zeroed vectors read as zero everywhere, even where the allocator hands back
    /// memory a previous owner filled, and have the asked length and capacity.
    #[test]
    fn zeroed_vectors_are_zero_at_every_size() {
        for (len, cap) in [
            (0, 1),
            (5, 5),
            (100, 4096),
            (1 << 20, 1 << 20),
            (3_000_001, 4_000_003),
        ] {
            // Dirty memory of the same size first, so a reusing allocator hands it back.
            drop(vec![0xa5u8; cap]);
            let v = zeroed_vec(len, cap);
            assert_eq!(v.len(), len);
            assert!(v.capacity() >= cap);
            assert!(v.iter().all(|&b| b == 0), "{len}/{cap}");
        }
    }

    #[test]
    fn bitfield_reports_failed_overflow_as_nil() {
        let mut sh = shard();
        let r = run(
            &mut sh,
            1,
            &[
                "BITFIELD", "k", "OVERFLOW", "FAIL", "INCRBY", "u2", "0", "5", "SET", "i8", "#1",
                "-1", "GET", "u16", "0",
            ],
        );
        assert_eq!(s(&r), "*3\r\n$-1\r\n:0\r\n:255\r\n");
        assert_eq!(
            s(&run(
                &mut sh,
                1,
                &["BITFIELD_RO", "k", "SET", "u8", "0", "1"]
            )),
            "-ERR BITFIELD_RO only supports the GET subcommand\r\n"
        );
    }
}
