//! Client-side caching: CLIENT TRACKING, CACHING, GETREDIR, TRACKINGINFO, and the delivery
//! of invalidations, as Redis 7.0 does them.
//!
//! A tracking client's reads are remembered by the shard that owns each key
//! (`percore_shard::tracking`): the connection tells the shard who it runs a command for
//! ([`caller`]; in a batch, `Batch::caller` and `BatchCmd::track`). When a key changes, its
//! shard moves its readers to a pending list; after the command the core sends each
//! client's invalidations to the client's core ([`send_pending`]: one message per core),
//! which pushes them to the client (RESP3), or to its REDIRECT client (RESP3, or RESP2 in
//! Pub/Sub mode as a `__redis__:invalidate` message). FLUSHALL/FLUSHDB clear the tables
//! and send every tracking client one null invalidation. BCAST clients register their
//! prefixes on every shard and hear about every matching change.

use crate::client::Client;
use crate::core::{call_all, Core};
use percore_proto::{Args, Cmd, CommandSpec, Protocol, ReplyWriter};
use percore_shard::tracking::{Caller, Invalidation};
use percore_shard::Shard;
use std::sync::atomic::Ordering;

/// A tracking client's mode (Redis's CLIENT_TRACKING_* flags).
#[derive(Clone, Debug, Default)]
pub struct TrackState {
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// CLIENT CACHING YES (OPTIN) or NO (OPTOUT) for the next command.
    pub caching: bool,
    /// The client invalidations go to (0: this one), and its core.
    pub redirect: u64,
    pub redirect_core: usize,
    /// The redirect client has gone.
    pub broken: bool,
    /// BCAST prefixes, in order (Redis lists them from a radix tree).
    pub prefixes: Vec<Box<[u8]>>,
}

/// Who the next command runs for, when this connection tracks.
pub fn caller(handle: &crate::core::ClientHandle, core: usize) -> Option<Caller> {
    let t = handle.tracking.borrow();
    let t = t.as_ref()?;
    let skip = (t.optin && !t.caching) || (t.optout && t.caching);
    Some(Caller {
        id: handle.id,
        core: core as u16,
        remember: !t.bcast && !skip,
    })
}

/// After a command: CLIENT CACHING applies to the next command only (a transaction counts
/// as one).
pub fn command_done(conn: &Client, spec: &CommandSpec) {
    if let Some(t) = conn.handle.tracking.borrow_mut().as_mut() {
        if t.caching && conn.multi.is_none() && spec.parent_name() != Some("client") {
            t.caching = false;
        }
    }
}

/// After a read-only command the coordinator ran over several shards (set algebra, SORT
/// BY/GET, ZUNION, ...): remembers its keys for this connection on each key's shard.
pub async fn remember_coordinated(conn: &mut Client, spec: &'static CommandSpec, a: &Args<'_>) {
    let Some(caller) = caller(&conn.handle, conn.core.id).filter(|c| c.remember) else {
        return;
    };
    if !spec.flags.has(percore_proto::Flags::READONLY) {
        return;
    }
    let Some(idx) = crate::txlock::key_args(spec, a) else {
        return;
    };
    let n = conn.core.nshards();
    let mut per_shard: Vec<Vec<Box<[u8]>>> = vec![Vec::new(); n];
    for i in idx {
        per_shard[crate::router::shard_of(&a[i], n)].push(a[i].into());
    }
    for (s, keys) in per_shard.into_iter().enumerate() {
        if keys.is_empty() {
            continue;
        }
        crate::core::call(&conn.core, s, move |c: &Core| {
            c.shard
                .borrow()
                .with_tracking(|t| keys.iter().for_each(|k| t.remember(k, &caller)));
        })
        .await;
    }
}

/// CLIENT TRACKING, CACHING, GETREDIR and TRACKINGINFO.
pub async fn command(conn: &mut Client, spec: &CommandSpec, a: Args<'_>, out: &mut Vec<u8>) {
    let proto = conn.proto;
    match spec.cmd {
        Cmd::ClientTracking => {
            if let Err(e) = tracking(conn, &a).await {
                return ReplyWriter::new(out, proto).error(&e);
            }
            ReplyWriter::new(out, proto).ok()
        }
        Cmd::ClientCaching => {
            let mut w = ReplyWriter::new(out, proto);
            let mut t = conn.handle.tracking.borrow_mut();
            let Some(t) = t.as_mut() else {
                return w.error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled");
            };
            match std::str::from_utf8(&a[2])
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Ok("yes") if t.optin => t.caching = true,
                Ok("yes") => return w.error(
                    "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
                ),
                Ok("no") if t.optout => t.caching = true,
                Ok("no") => return w.error(
                    "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
                ),
                _ => return w.error("ERR syntax error"),
            }
            w.ok()
        }
        Cmd::ClientGetRedir => {
            let t = conn.handle.tracking.borrow();
            ReplyWriter::new(out, proto).int(t.as_ref().map_or(-1, |t| t.redirect as i64))
        }
        _ => {
            let t = conn.handle.tracking.borrow();
            let mut w = ReplyWriter::new(out, proto);
            w.map(3);
            w.bulk(b"flags");
            let mut flags: Vec<&[u8]> = vec![if t.is_some() { b"on" } else { b"off" }];
            if let Some(t) = t.as_ref() {
                let pairs: [(bool, &[u8]); 7] = [
                    (t.bcast, b"bcast"),
                    (t.optin, b"optin"),
                    (t.optin && t.caching, b"caching-yes"),
                    (t.optout, b"optout"),
                    (t.optout && t.caching, b"caching-no"),
                    (t.noloop, b"noloop"),
                    (t.broken, b"broken_redirect"),
                ];
                flags.extend(pairs.iter().filter(|(on, _)| *on).map(|(_, f)| *f));
            }
            w.set(flags.len());
            for f in flags {
                w.bulk(f);
            }
            w.bulk(b"redirect");
            w.int(t.as_ref().map_or(-1, |t| t.redirect as i64));
            w.bulk(b"prefixes");
            let prefixes = t.as_ref().map_or(&[][..], |t| &t.prefixes[..]);
            w.array(prefixes.len());
            for p in prefixes {
                w.bulk(p);
            }
        }
    }
}

/// CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP],
/// with Redis's checks in Redis's order.
async fn tracking(conn: &mut Client, a: &Args<'_>) -> Result<(), String> {
    const SYNTAX: &str = "ERR syntax error";
    let (mut redirect, mut bcast, mut optin, mut optout, mut noloop) =
        (0u64, false, false, false, false);
    let mut redirect_core = conn.core.id;
    let mut prefixes: Vec<Box<[u8]>> = Vec::new();
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        let opt = a[j].to_ascii_lowercase();
        match &opt[..] {
            b"redirect" if more => {
                j += 1;
                if redirect != 0 {
                    return Err("ERR A client can only redirect to a single other client".into());
                }
                let id = percore_proto::parse_i64(&a[j])
                    .ok_or("ERR value is not an integer or out of range")?;
                let found = call_all(&conn.core, move |c: &Core| {
                    c.clients.borrow().contains_key(&(id as u64))
                })
                .await;
                match found.iter().position(|&f| f) {
                    Some(core) if id > 0 => {
                        redirect = id as u64;
                        redirect_core = core;
                    }
                    _ => return Err("ERR The client ID you want redirect to does not exist".into()),
                }
            }
            b"bcast" => bcast = true,
            b"optin" => optin = true,
            b"optout" => optout = true,
            b"noloop" => noloop = true,
            b"prefix" if more => {
                j += 1;
                prefixes.push(a[j].into());
            }
            _ => return Err(SYNTAX.into()),
        }
        j += 1;
    }
    let on = match std::str::from_utf8(&a[2])
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Ok("on") => true,
        Ok("off") => false,
        _ => return Err(SYNTAX.into()),
    };
    if !on {
        disable(conn).await;
        return Ok(());
    }
    let current = conn.handle.tracking.borrow().clone();
    if !bcast && !prefixes.is_empty() {
        return Err("ERR PREFIX option requires BCAST mode to be enabled".into());
    }
    if let Some(t) = &current {
        if t.bcast != bcast {
            return Err("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.".into());
        }
    }
    if bcast && (optin || optout) {
        return Err("ERR OPTIN and OPTOUT are not compatible with BCAST".into());
    }
    if optin && optout {
        return Err("ERR You can't specify both OPTIN mode and OPTOUT mode".into());
    }
    if let Some(t) = &current {
        if (optin && t.optout) || (optout && t.optin) {
            return Err("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.".into());
        }
    }
    let mut all = current.as_ref().map_or(Vec::new(), |t| t.prefixes.clone());
    if bcast {
        check_prefixes(&all, &prefixes)?;
        if prefixes.is_empty() && all.is_empty() {
            prefixes.push(Box::default());
        }
        // A prefix equal to one already held is an overlap (refused above).
        let new = prefixes;
        if !new.is_empty() {
            let who = Caller {
                id: conn.handle.id,
                core: conn.core.id as u16,
                remember: false,
            };
            let add = new.clone();
            call_all(&conn.core, move |c: &Core| {
                let sh = c.shard.borrow();
                sh.with_tracking(|t| add.iter().for_each(|p| t.add_prefix(p, &who)));
            })
            .await;
            all.extend(new);
            all.sort();
        }
    }
    if current.is_none() {
        conn.core
            .global
            .tracking_clients
            .fetch_add(1, Ordering::Relaxed);
    }
    *conn.handle.tracking.borrow_mut() = Some(TrackState {
        bcast,
        optin,
        optout,
        noloop,
        caching: false,
        redirect,
        redirect_core,
        broken: false,
        prefixes: all,
    });
    Ok(())
}

/// Redis's `checkPrefixCollisionsOrReply`: no new prefix may be a prefix of (or equal to)
/// one the client holds or another new one. Redis compares every pair, and so does this
/// while that is cheap (naming the same pair in its error); a long list is checked by
/// sorting, where overlapping prefixes end up side by side, in O(n log n).
fn check_prefixes(held: &[Box<[u8]>], new: &[Box<[u8]>]) -> Result<(), String> {
    let overlap = |x: &[u8], y: &[u8]| x.starts_with(y) || y.starts_with(x);
    let existing = |p: &[u8], e: &[u8]| {
        format!(
            "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
            String::from_utf8_lossy(p),
            String::from_utf8_lossy(e)
        )
    };
    let provided = |p: &[u8], q: &[u8]| {
        format!(
            "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
            String::from_utf8_lossy(p),
            String::from_utf8_lossy(q)
        )
    };
    if new.len().saturating_mul(new.len() + held.len()) <= 100_000 {
        for (i, p) in new.iter().enumerate() {
            if let Some(e) = held.iter().find(|e| overlap(e, p)) {
                return Err(existing(p, e));
            }
            if let Some(q) = new[i + 1..].iter().find(|q| overlap(p, q)) {
                return Err(provided(p, q));
            }
        }
        return Ok(());
    }
    let mut all: Vec<(&[u8], bool)> = held
        .iter()
        .map(|p| (&p[..], false))
        .chain(new.iter().map(|p| (&p[..], true)))
        .collect();
    all.sort_unstable();
    for w in all.windows(2) {
        let ((a, a_new), (b, b_new)) = (w[0], w[1]);
        if b.starts_with(a) {
            return Err(match (a_new, b_new) {
                (true, true) => provided(a, b),
                (true, false) => existing(a, b),
                _ => existing(b, a),
            });
        }
    }
    Ok(())
}

/// Turns tracking off (CLIENT TRACKING OFF, RESET, disconnect): BCAST prefixes are
/// unregistered at once; remembered reads are dropped when their keys change.
pub async fn disable(conn: &mut Client) {
    let Some(t) = conn.handle.tracking.borrow_mut().take() else {
        return;
    };
    conn.core
        .global
        .tracking_clients
        .fetch_sub(1, Ordering::Relaxed);
    if t.bcast {
        let id = conn.handle.id;
        call_all(&conn.core, move |c: &Core| {
            c.shard.borrow().with_tracking(|t| t.remove_client(id));
        })
        .await;
    }
}

/// Sends the invalidations `shard` owes (after a command, or a background step that
/// changed keys): grouped per client, one message per destination core.
pub fn send_pending(core: &Core, shard: &Shard) {
    let (pending, flushed) = shard.take_invalidations();
    if core.global.tracking_clients.load(Ordering::Relaxed) == 0 {
        return;
    }
    if flushed && core.id == 0 {
        // Every shard flushed; one of them tells every core.
        for c in 0..core.nshards() {
            send(core, c, Box::new(|c: &Core| flush_here(c)));
        }
    }
    if pending.is_empty() {
        return;
    }
    let mut by_core: Vec<Vec<Invalidation>> = vec![Vec::new(); core.nshards()];
    for inv in pending {
        by_core[inv.core as usize].push(inv);
    }
    for (c, invs) in by_core.into_iter().enumerate() {
        if invs.is_empty() {
            continue;
        }
        send(
            core,
            c,
            Box::new(move |c: &Core| {
                // Per client (a stable sort keeps each one's keys in the order they
                // changed), in one pass however many clients and keys.
                let mut invs = invs;
                invs.sort_by_key(|i| i.id);
                for group in invs.chunk_by(|a, b| a.id == b.id) {
                    let id = group[0].id;
                    // NOLOOP, as the client is now: not told of its own changes.
                    let noloop =
                        c.clients.borrow().get(&id).is_some_and(|h| {
                            h.tracking.borrow().as_ref().is_some_and(|t| t.noloop)
                        });
                    let keys: Vec<Box<[u8]>> = group
                        .iter()
                        .filter(|i| !(noloop && i.by == Some(id)))
                        .map(|i| i.key.clone())
                        .collect();
                    if !keys.is_empty() {
                        deliver(c, id, Some(keys));
                    }
                }
            }),
        );
    }
}

/// Runs `job` on core `to`: here at once, elsewhere through the mesh without waiting.
fn send(core: &Core, to: usize, job: crate::core::Job) {
    if to == core.id {
        job(core);
    } else {
        core.mailbox.send_now(to, job);
    }
}

/// Every tracking client of this core gets the null invalidation of a flush.
fn flush_here(core: &Core) {
    let ids: Vec<u64> = core
        .clients
        .borrow()
        .values()
        .filter(|h| h.tracking.borrow().is_some())
        .map(|h| h.id)
        .collect();
    for id in ids {
        deliver(core, id, None);
    }
}

/// Sends client `id` of this core its invalidation (`keys`; None: everything, after a
/// flush), to it or to its REDIRECT client.
fn deliver(core: &Core, id: u64, keys: Option<Vec<Box<[u8]>>>) {
    let Some(h) = core.clients.borrow().get(&id).cloned() else {
        return;
    };
    let (redirect, batches) = {
        let t = h.tracking.borrow();
        let Some(t) = t.as_ref() else {
            return;
        };
        // As Redis: one message per key read, and for BCAST one per prefix with the keys
        // changed (sorted, each once) since the last.
        let batches: Vec<Option<Vec<Box<[u8]>>>> = match keys {
            None => vec![None],
            Some(keys) if t.bcast => by_prefix(&t.prefixes, keys).into_iter().map(Some).collect(),
            Some(keys) => keys.into_iter().map(|k| Some(vec![k])).collect(),
        };
        ((t.redirect, t.redirect_core), batches)
    };
    for keys in batches {
        deliver_one(core, &h, redirect, keys);
    }
}

/// A BCAST client's changed keys grouped by the prefix each starts with, in prefix order,
/// keys sorted and each once (Redis's prefix table). `prefixes` is sorted and has no two
/// overlapping, so a key can only start with the greatest prefix not above it.
fn by_prefix(prefixes: &[Box<[u8]>], mut keys: Vec<Box<[u8]>>) -> Vec<Vec<Box<[u8]>>> {
    keys.sort();
    keys.dedup();
    let mut groups: Vec<(usize, Vec<Box<[u8]>>)> = Vec::new();
    for k in keys {
        let at = prefixes.partition_point(|p| p[..] <= k[..]);
        let Some(i) = at.checked_sub(1).filter(|&i| k.starts_with(&prefixes[i])) else {
            continue;
        };
        // Sorted keys of one prefix are contiguous, and the groups come in prefix order.
        match groups.last_mut() {
            Some((g, ks)) if *g == i => ks.push(k),
            _ => groups.push((i, vec![k])),
        }
    }
    groups.into_iter().map(|(_, ks)| ks).collect()
}

fn deliver_one(
    core: &Core,
    h: &crate::core::ClientHandle,
    (redirect, redirect_core): (u64, usize),
    keys: Option<Vec<Box<[u8]>>>,
) {
    let id = h.id;
    let proto = h.info.borrow().proto;
    if redirect == 0 {
        if proto == Protocol::Resp3 {
            h.outbox.push(
                core,
                &message(Protocol::Resp3, false, proto, keys.as_deref()),
            );
        }
        return;
    }
    let (rid, from_core) = (redirect, core.id);
    send(
        core,
        redirect_core,
        Box::new(move |c: &Core| {
            let target = c.clients.borrow().get(&rid).cloned();
            match target {
                Some(r) => {
                    let (rproto, subscribed) = {
                        let i = r.info.borrow();
                        (i.proto, i.sub + i.psub + i.ssub > 0)
                    };
                    if rproto == Protocol::Resp3 || subscribed {
                        r.outbox
                            .push(c, &message(rproto, true, proto, keys.as_deref()));
                    }
                }
                None => send(c, from_core, Box::new(move |c: &Core| broken(c, id, rid))),
            }
        }),
    );
}

/// The REDIRECT client `rid` of client `id` has gone: marked, and told in RESP3.
fn broken(core: &Core, id: u64, rid: u64) {
    let Some(h) = core.clients.borrow().get(&id).cloned() else {
        return;
    };
    if let Some(t) = h.tracking.borrow_mut().as_mut() {
        t.broken = true;
    }
    if h.info.borrow().proto == Protocol::Resp3 {
        let mut m = Vec::new();
        let mut w = ReplyWriter::new(&mut m, Protocol::Resp3);
        w.push(2);
        w.bulk(b"tracking-redir-broken");
        w.int(rid as i64);
        h.outbox.push(core, &m);
    }
}

/// An invalidation as Redis's `sendTrackingMessage` writes it for a receiver speaking
/// `to`: a push in RESP3, a `__redis__:invalidate` message otherwise; the keys as an
/// array, or the null of the tracking client's protocol `of` after a flush.
fn message(to: Protocol, redirected: bool, of: Protocol, keys: Option<&[Box<[u8]>]>) -> Vec<u8> {
    let mut m = Vec::new();
    let mut w = ReplyWriter::new(&mut m, to);
    if to == Protocol::Resp3 {
        w.push(2);
        w.bulk(b"invalidate");
    } else {
        debug_assert!(redirected);
        w.array(3);
        w.bulk(b"message");
        w.bulk(b"__redis__:invalidate");
    }
    match keys {
        Some(keys) => {
            w.array(keys.len());
            for k in keys {
                w.bulk(k);
            }
        }
        None => {
            w.proto = of;
            w.null();
        }
    }
    m
}

/// INFO's tracking figures of this core's shard: (keys, items, prefixes).
pub fn shard_figures(core: &Core) -> (usize, usize, usize) {
    let sh = core.shard.borrow();
    let t = sh.tracking.borrow();
    (t.keys(), t.items(), t.prefixes())
}

/// `tracking-table-max-keys` applied to this core's shard: its share of the bound.
pub fn apply_max_keys(core: &Core, max: usize) {
    let n = core.nshards();
    let share = if max == 0 { 0 } else { max.div_ceil(n) };
    core.shard.borrow().with_tracking(|t| t.set_max_keys(share));
    crate::blocking::serve_ready(core);
}

#[cfg(test)]
mod tests {
    use super::{by_prefix, check_prefixes};

    #[test]
    fn bcast_keys_group_under_their_prefix_in_prefix_order() {
        let prefixes = boxed(&["a", "order:", "user:"]);
        let keys = boxed(&["user:2", "aaa", "order:1", "user:1", "user:2", "zz", "ab"]);
        let got = by_prefix(&prefixes, keys);
        assert_eq!(
            got,
            vec![
                boxed(&["aaa", "ab"]),
                boxed(&["order:1"]),
                boxed(&["user:1", "user:2"])
            ]
        );
        // The empty prefix (every key).
        assert_eq!(
            by_prefix(&boxed(&[""]), boxed(&["b", "a"])),
            vec![boxed(&["a", "b"])]
        );
        // Keys under no prefix are dropped.
        assert_eq!(
            by_prefix(&boxed(&["user:"]), boxed(&["other"])),
            Vec::<Vec<Box<[u8]>>>::new()
        );
    }

    fn boxed(v: &[&str]) -> Vec<Box<[u8]>> {
        v.iter().map(|s| s.as_bytes().into()).collect()
    }

    #[test]
    fn overlapping_prefixes_are_refused_short_lists_and_long() {
        assert!(check_prefixes(&boxed(&["a"]), &boxed(&["b", "cd"])).is_ok());
        let e = check_prefixes(&boxed(&["user:"]), &boxed(&["user:1"])).unwrap_err();
        assert!(
            e.contains("'user:1' overlaps with an existing prefix 'user:'"),
            "{e}"
        );
        let e = check_prefixes(&[], &boxed(&["a", "ab"])).unwrap_err();
        assert!(
            e.contains("'a' overlaps with another provided prefix 'ab'"),
            "{e}"
        );
        // 20,000 prefixes: checked by sorting, not pair by pair.
        let many: Vec<Box<[u8]>> = (0..20_000)
            .map(|i| format!("k{i}:").into_bytes().into())
            .collect();
        assert!(check_prefixes(&[], &many).is_ok());
        let mut clash = many.clone();
        clash.push(b"k77:x".to_vec().into());
        let e = check_prefixes(&[], &clash).unwrap_err();
        assert!(
            e.contains("'k77:' overlaps with another provided prefix 'k77:x'"),
            "{e}"
        );
        let e = check_prefixes(&many, &boxed(&["k5"])).unwrap_err();
        assert!(e.contains("overlaps with an existing prefix"), "{e}");
    }
}
