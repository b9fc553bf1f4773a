//! CLIENT PAUSE and CLIENT UNPAUSE, as Redis 7.0.
//!
//! A pause holds, on every core, the commands it covers until it ends: with ALL every
//! command, with WRITE the commands that may change data or propagate (write commands, EVAL,
//! EVALSHA, FCALL, PUBLISH, SPUBLISH, PFCOUNT, and EXEC or MULTI-queued commands of that
//! kind). A held client waits without holding its core; others go on. While a pause lasts,
//! keys do not expire (reads see an expired key as missing, but nothing deletes it) and
//! nothing is evicted, so the data stands still, as Redis promises for failover.
//!
//! A second pause keeps the stricter mode and the later end (Redis's `pauseClients`);
//! CLIENT UNPAUSE ends it at once. The state is two atomics; a command pays one relaxed load
//! while no pause was ever set.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use percore_proto::{Args, Cmd, CommandSpec, Flags, ReplyWriter};
use percore_shard::PAUSED_UNTIL_MS;

use crate::core::{now_ms, Core};

/// The pause covers every command (ALL), not only writes.
static ALL: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Connections of this core waiting for a pause to end.
    static WAITING: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

/// When the pause in force ends (unix ms), if one is in force. A pause found over is
/// cleared, so that commands go back to paying one load ([`maybe_paused`]).
fn in_force() -> Option<u64> {
    let end = PAUSED_UNTIL_MS.load(Ordering::Acquire);
    if end == 0 {
        return None;
    }
    if end <= now_ms() {
        // Only this pause: a new one set meanwhile stays.
        let _ = PAUSED_UNTIL_MS.compare_exchange(end, 0, Ordering::AcqRel, Ordering::Relaxed);
        return None;
    }
    Some(end)
}

/// Whether a pause is in force now.
pub fn in_force_now() -> bool {
    in_force().is_some()
}

/// Whether a pause was set at all (the hot path's test: one relaxed load).
#[inline]
pub fn maybe_paused() -> bool {
    PAUSED_UNTIL_MS.load(Ordering::Relaxed) != 0
}

/// Whether the pause in force holds `spec` now; `queued_writes` tells whether an EXEC's
/// transaction holds commands the WRITE mode covers.
pub fn holds(spec: &CommandSpec, queued_writes: impl Fn() -> bool) -> bool {
    in_force().is_some()
        && (ALL.load(Ordering::Acquire)
            || writes(spec)
            || (spec.cmd == Cmd::Exec && queued_writes()))
}

/// Commands Redis 7.0 flags `may_replicate` (beside the write commands).
fn may_replicate(cmd: Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Eval | Cmd::EvalSha | Cmd::FCall | Cmd::Publish | Cmd::SPublish | Cmd::PfCount
    )
}

/// Whether the WRITE mode holds `spec`.
pub fn writes(spec: &CommandSpec) -> bool {
    spec.flags.has(Flags::WRITE) || may_replicate(spec.cmd)
}

/// Waits while a pause holds this command (see [`holds`]).
pub async fn wait(spec: &CommandSpec, queued_writes: impl Fn() -> bool) {
    while holds(spec, &queued_writes) {
        let Some(end) = in_force() else {
            return;
        };
        let mut registered = false;
        let woken = std::future::poll_fn(|cx| {
            if registered {
                return Poll::Ready(());
            }
            registered = true;
            // One entry per waiting connection: a wait ended by its timer (a pause that
            // was extended) replaces its own entry instead of adding another.
            WAITING.with(|w| {
                let mut w = w.borrow_mut();
                w.retain(|x| !x.will_wake(cx.waker()));
                w.push(cx.waker().clone());
            });
            Poll::Pending
        });
        let left = Duration::from_millis(end.saturating_sub(now_ms()).max(1));
        futures_lite::future::or(woken, crate::runtime::sleep(left)).await;
    }
}

/// Wakes this core's waiting connections (the pause ended or changed).
fn wake_here() {
    for w in WAITING.with(|w| std::mem::take(&mut *w.borrow_mut())) {
        w.wake();
    }
}

/// Pauses writes until `end_ms` (a cluster master during a manual failover, as Redis's
/// PAUSE_DURING_FAILOVER): a pause in force keeps its mode and the later end.
pub fn pause_writes_until(end_ms: u64) {
    if in_force().is_none() {
        ALL.store(false, Ordering::Release);
    }
    let _ = PAUSED_UNTIL_MS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
        Some(old.max(end_ms))
    });
}

/// Ends the pause in force and wakes the clients it held, on every core.
pub async fn unpause(core: &Rc<Core>) {
    PAUSED_UNTIL_MS.store(0, Ordering::Release);
    ALL.store(false, Ordering::Release);
    crate::core::call_all(core, |_| wake_here()).await;
}

/// CLIENT PAUSE timeout [WRITE|ALL] and CLIENT UNPAUSE.
pub async fn command(core: &Rc<Core>, spec: &CommandSpec, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    if spec.cmd == Cmd::ClientUnpause {
        unpause(core).await;
        return w.ok();
    }
    if a.len() > 4 {
        return w.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(&a[1])
        ));
    }
    let all = match a.get(3) {
        None => true,
        Some(m) if m.eq_ignore_ascii_case(b"all") => true,
        Some(m) if m.eq_ignore_ascii_case(b"write") => false,
        Some(_) => return w.error("ERR CLIENT PAUSE mode must be WRITE or ALL"),
    };
    let Some(ms) = percore_proto::parse_i64(&a[2]) else {
        return w.error("ERR timeout is not an integer or out of range");
    };
    if ms < 0 {
        return w.error("ERR timeout is negative");
    }
    let end = match ms {
        0 => 0,
        ms => now_ms().saturating_add(ms as u64),
    };
    // The stricter mode and the later end win while a pause lasts.
    let lasting = in_force().is_some();
    if !lasting {
        ALL.store(all, Ordering::Release);
    } else if all {
        ALL.store(true, Ordering::Release);
    }
    let _ = PAUSED_UNTIL_MS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
        Some(if lasting { old.max(end) } else { end })
    });
    w.ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pause that ended by itself is cleared by the first command that looks, so later
    /// commands pay one load again (no clock read, no flush before each).
    #[test]
    fn an_ended_pause_is_cleared() {
        let set = percore_proto::lookup(b"set").expect("SET");
        PAUSED_UNTIL_MS.store(now_ms() + 60_000, Ordering::Release);
        assert!(maybe_paused());
        assert!(holds(set, || false));
        PAUSED_UNTIL_MS.store(now_ms().saturating_sub(1), Ordering::Release);
        assert!(maybe_paused());
        assert!(!holds(set, || false));
        assert!(!maybe_paused(), "the ended pause stays set");
    }
}
