//! Command implementations, grouped by family as Redis groups them (`t_string.c` →
//! `string.rs`, `t_hash.c` → `hash.rs`, `db.c`/`expire.c` → `keyspace.rs`).

pub mod bitmap;
pub mod dump;
pub mod geo;
pub mod hash;
pub mod hll;
pub mod keyspace;
pub mod list;
pub mod set;
pub mod sort;
pub mod string;
pub mod zset;

use crate::err;

/// ASCII case-insensitive comparison for option names.
#[inline]
pub fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// An integer argument, with Redis's error when it is not one.
#[inline]
pub fn parse_int(a: &[u8]) -> Result<i64, &'static str> {
    percore_proto::parse_i64(a).ok_or(err::NOT_INT)
}

/// A count or rank Redis reads with `getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX)`
/// (SRANDMEMBER, HRANDFIELD, ZRANDMEMBER, LPOS RANK): any integer but `i64::MIN`, with
/// Redis's texts.
pub fn parse_signed_count(a: &[u8]) -> Result<i64, &'static str> {
    match percore_proto::parse_i64(a) {
        None => Err(err::NOT_INT),
        Some(i64::MIN) => Err(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ),
        Some(n) => Ok(n),
    }
}

/// SRANDMEMBER, HRANDFIELD and ZRANDMEMBER with a negative count answer that many elements
/// (repeating): past `proto-max-bulk-len` / 4 of them (each is at least 4 bytes) the count
/// is refused, so one command cannot make a core build a reply larger than memory (Redis
/// tries, and is killed; fuzzing found it).
pub fn repeat_count_ok(sh: &crate::Shard, count: i64) -> Result<(), &'static str> {
    let most = sh.config.proto_max_bulk_len.max(0) as u64 / 4;
    match count < 0 && count.unsigned_abs() > most {
        true => Err("ERR value is out of range"),
        false => Ok(()),
    }
}

/// What popping from the collection at a key found (lists, sorted sets).
#[derive(Debug, PartialEq)]
pub enum Popped<T> {
    /// No such key (an emptied collection does not exist).
    Missing,
    WrongType,
    /// The elements, first popped first.
    Elements(Vec<T>),
}

/// The MPOP commands on one shard: `pop` on each of `keys` in order until one pops, whose
/// elements `write` replies with; a WRONGTYPE key ends the search; nil when none pops.
pub fn mpop_first<T>(
    keys: &[&[u8]],
    mut pop: impl FnMut(&[u8]) -> Popped<T>,
    out: &mut percore_proto::ReplyWriter,
    write: impl FnOnce(&mut percore_proto::ReplyWriter, &[u8], &[T]),
) {
    for k in keys {
        match pop(k) {
            Popped::Missing => continue,
            Popped::WrongType => return out.error(err::WRONGTYPE),
            Popped::Elements(v) => return write(out, k, &v),
        }
    }
    out.null_array();
}

/// A collection type as commands reach it in an entry (hashes, sets): [`read`] and
/// [`write`] give the type checks, creation and clean-up every such command shares.
pub(crate) trait Collection {
    /// How readers borrow it: a view over the bytes of a keyspace node or of a box.
    type Ref<'a>: Copy;
    /// How writers borrow it ([`crate::dict::CollMut`] for the packed types).
    type Mut<'e>: std::ops::DerefMut<Target = Self>;
    /// The collection `v` is, if it is one of this type.
    fn of(v: crate::ValueRef<'_>) -> Option<Self::Ref<'_>>;
    fn of_mut<'e>(e: &'e mut crate::dict::EntryMut<'_>) -> Option<Self::Mut<'e>>;
    fn is_empty(&self) -> bool;
    /// Moves the large blocks the collection's table let go of into `g`.
    fn take_freed(&mut self, g: &mut crate::lazyfree::Graveyard);
}

impl Collection for crate::types::hash::Hash {
    type Ref<'a> = crate::types::hash::HashRef<'a>;
    type Mut<'e> = crate::dict::CollMut<'e, Self>;
    fn of(v: crate::ValueRef<'_>) -> Option<Self::Ref<'_>> {
        match v {
            crate::ValueRef::Hash(h) => Some(h),
            _ => None,
        }
    }
    fn of_mut<'e>(e: &'e mut crate::dict::EntryMut<'_>) -> Option<Self::Mut<'e>> {
        e.hash_mut()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn take_freed(&mut self, g: &mut crate::lazyfree::Graveyard) {
        if let crate::types::hash::Hash::Table(d) = self {
            g.append(d.graveyard());
        }
    }
}

impl Collection for crate::types::set::Set {
    type Ref<'a> = crate::types::set::SetRef<'a>;
    type Mut<'e> = crate::dict::CollMut<'e, Self>;
    fn of(v: crate::ValueRef<'_>) -> Option<Self::Ref<'_>> {
        match v {
            crate::ValueRef::Set(s) => Some(s),
            _ => None,
        }
    }
    fn of_mut<'e>(e: &'e mut crate::dict::EntryMut<'_>) -> Option<Self::Mut<'e>> {
        e.set_mut()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn take_freed(&mut self, g: &mut crate::lazyfree::Graveyard) {
        if let crate::types::set::Set::Table(d) = self {
            g.append(d.graveyard());
        }
    }
}

impl Collection for crate::types::list::List {
    type Ref<'a> = &'a Self;
    type Mut<'e> = &'e mut Self;
    fn of(v: crate::ValueRef<'_>) -> Option<Self::Ref<'_>> {
        match v {
            crate::ValueRef::List(l) => Some(l),
            _ => None,
        }
    }
    fn of_mut<'e>(e: &'e mut crate::dict::EntryMut<'_>) -> Option<Self::Mut<'e>> {
        e.list_mut()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn take_freed(&mut self, _: &mut crate::lazyfree::Graveyard) {}
}

impl Collection for crate::types::zset::ZSet {
    type Ref<'a> = crate::types::zset::ZSetRef<'a>;
    type Mut<'e> = crate::dict::CollMut<'e, Self>;
    fn of(v: crate::ValueRef<'_>) -> Option<Self::Ref<'_>> {
        match v {
            crate::ValueRef::ZSet(z) => Some(z),
            _ => None,
        }
    }
    fn of_mut<'e>(e: &'e mut crate::dict::EntryMut<'_>) -> Option<Self::Mut<'e>> {
        e.zset_mut()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn take_freed(&mut self, g: &mut crate::lazyfree::Graveyard) {
        if let crate::types::zset::ZSet::Tree(t) = self {
            g.append(t.graveyard());
        }
    }
}

/// The collection at `key` for reading: Err after a WRONGTYPE reply.
pub(crate) fn read<'a, C: Collection>(
    sh: &'a mut crate::Shard,
    ctx: &crate::ExecCtx,
    key: &[u8],
    out: &mut percore_proto::ReplyWriter,
) -> Result<Option<C::Ref<'a>>, ()> {
    match sh
        .lookup_read(ctx.db, key, ctx.now_ms)
        .map(|e| e.into_ref().value())
    {
        None => Ok(None),
        Some(v) => C::of(v).map(Some).ok_or_else(|| out.error(err::WRONGTYPE)),
    }
}

/// The keyspace event a write made, given its result: class and name, or None (for
/// [`write`]'s `event` where no capture is needed).
pub(crate) type EventOf<R> = fn(&R) -> Option<(u16, &'static str)>;

/// Runs `f` on the collection at `key`, created by `create` (given a seed) when absent and
/// `create` is set; None when absent and not created, Err after a WRONGTYPE reply. An
/// emptied collection is deleted afterwards, and large blocks its table let go of join the
/// shard's lazy free queue.
///
/// Events, in Redis's order: "new" when created, then `event(result)`, then "del" when the
/// collection was emptied. A collection created and left empty leaves no trace, events
/// included.
pub(crate) fn write<C: Collection, R>(
    sh: &mut crate::Shard,
    ctx: &crate::ExecCtx,
    key: &[u8],
    create: Option<&dyn Fn(u64) -> crate::Value>,
    out: &mut percore_proto::ReplyWriter,
    event: impl FnOnce(&R) -> Option<(u16, &'static str)>,
    f: impl FnOnce(&mut C, u64) -> R,
) -> Result<Option<R>, ()> {
    let seed = sh.next_rand();
    let mut freed = crate::lazyfree::Graveyard::default();
    let apply = |e: &mut crate::dict::EntryMut| {
        let mut c = C::of_mut(e).expect("checked to be of this type");
        let r = f(&mut c, seed);
        c.take_freed(&mut freed);
        (r, c.is_empty())
    };
    // One lookup for an existing key (the common case); a created one is looked up again.
    let mut created_at = None;
    let (r, empty) = match sh.lookup(ctx.db, key, ctx.now_ms) {
        Some(e) if C::of(e.value()).is_none() => {
            out.error(err::WRONGTYPE);
            return Err(());
        }
        Some(mut e) => apply(&mut e),
        None => {
            let Some(make) = create else {
                return Ok(None);
            };
            created_at = Some(sh.events.len());
            sh.store(ctx.db, key, crate::Entry::new(make(seed), ctx.now_ms));
            let mut e = sh
                .lookup(ctx.db, key, ctx.now_ms)
                .expect("a collection stored just above");
            apply(&mut e)
        }
    };
    sh.graveyard.append(&mut freed);
    if let (true, Some(mark)) = (empty, created_at) {
        sh.events.truncate(mark);
    } else if let Some((class, name)) = event(&r) {
        sh.notify(class, name, ctx.db, key);
    }
    if empty {
        sh.delete(ctx.db, key);
        if created_at.is_none() {
            sh.notify(crate::notify::GENERIC, "del", ctx.db, key);
        }
    } else {
        // Pops served to blocked clients and the coordinator's steps come here without a
        // command of their own.
        sh.touch(ctx.db, key);
    }
    Ok(Some(r))
}

/// HSCAN and SSCAN: the cursor, then the key (a missing one answers an empty scan without
/// reading the options, as Redis does), then the options (TYPE is SCAN's only). `walk` runs
/// one call of the collection's scan from a cursor for a count, handing each member (and a
/// hash field's value) to the sink, and returns the next cursor; MATCH filters members.
pub(crate) fn scan_collection<C: Collection>(
    sh: &mut crate::Shard,
    ctx: &crate::ExecCtx,
    a: percore_proto::Args,
    out: &mut percore_proto::ReplyWriter,
    walk: impl FnOnce(C::Ref<'_>, u64, usize, &mut dyn FnMut(&[u8], Option<crate::ValueRef>)) -> u64,
) {
    let cursor = match keyspace::parse_cursor(&a[2]) {
        Ok(c) => c,
        Err(e) => return out.error(e),
    };
    let c = match read::<C>(sh, ctx, &a[1], out) {
        Ok(Some(c)) => c,
        Ok(None) => return keyspace::write_scan_reply(out, 0, &[]),
        Err(()) => return,
    };
    let opts = match keyspace::parse_scan(&a, 3) {
        Ok(o) if o.type_name.is_none() => o,
        Ok(_) => return out.error(err::SYNTAX),
        Err(e) => return out.error(e),
    };
    let mut items = Vec::new();
    let next = walk(c, cursor, opts.count, &mut |m, v| {
        if opts
            .pattern
            .as_ref()
            .is_none_or(|p| crate::glob::glob_match(p, m, false))
        {
            items.push(m.to_vec());
            items.extend(v.map(|v| v.to_vec()));
        }
    });
    keyspace::write_scan_reply(out, next, &items);
}

#[cfg(test)]
mod repeat_count_tests {
    use crate::testing::{run, s, shard};

    /// A negative count that would build a reply larger than memory is refused (SRANDMEMBER,
    /// HRANDFIELD, ZRANDMEMBER); ordinary ones answer as before.
    #[test]
    fn huge_repeating_counts_are_refused_before_any_reply_is_built() {
        let mut sh = shard();
        run(&mut sh, 1, &["SADD", "s", "a"]);
        run(&mut sh, 1, &["HSET", "h", "f", "v"]);
        run(&mut sh, 1, &["ZADD", "z", "1", "m"]);
        for cmd in ["SRANDMEMBER s", "HRANDFIELD h", "ZRANDMEMBER z"] {
            let mut huge: Vec<&str> = cmd.split(' ').collect();
            huge.push("-2000000000");
            assert_eq!(
                s(&run(&mut sh, 1, &huge)),
                "-ERR value is out of range\r\n",
                "{cmd}"
            );
            let mut some: Vec<&str> = cmd.split(' ').collect();
            some.push("-3");
            assert!(s(&run(&mut sh, 1, &some)).starts_with("*3\r\n"), "{cmd}");
        }
    }
}
