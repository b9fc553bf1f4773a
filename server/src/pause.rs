//! CLIENT PAUSE and CLIENT UNPAUSE, as Redis 7.0.
//!
//! A pause holds, on every core, the commands it covers until it ends: with ALL every
//! command, with WRITE the commands that may change data or propagate (write commands, EVAL,
//! EVALSHA, FCALL, PUBLISH, SPUBLISH, PFCOUNT, and EXEC or MULTI-queued commands of that
//! kind). A held client waits without holding its core; others go on. While a pause lasts,
//! keys do not expire (reads see an expired key as missing, but nothing deletes it) and
//! nothing is evicted, so the data stands still, as Redis promises for failover.
//!
//! Two purposes pause, each with its own end, as Redis's pause purposes: a client's CLIENT
//! PAUSE (ALL or WRITE) and a cluster master's manual failover (WRITE). The pause in force
//! is the stricter mode of those in force and lasts until the later end. A second CLIENT
//! PAUSE keeps the stricter mode and the later end (Redis's `pauseClients`); CLIENT UNPAUSE
//! ends only the client's pause, and the end of a failover only the failover's, so neither
//! lifts the other's. The ends are atomics, their later end published in `PAUSED_UNTIL_MS`
//! (which the shards read for expiry); a command pays one relaxed load while no pause was
//! ever set. They change under a lock (rarely: a command, a failover step, an end).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::Duration;

use percore_proto::{Args, Cmd, CommandSpec, Flags, ReplyWriter};
use percore_shard::PAUSED_UNTIL_MS;

use crate::core::{now_ms, Core};

/// When the client's pause (CLIENT PAUSE) ends, unix ms (0: none); whether it covers every
/// command (ALL), not only writes.
static CLIENT_END: AtomicU64 = AtomicU64::new(0);
static ALL: AtomicBool = AtomicBool::new(false);
/// When the manual failover's pause of writes ends (0: none).
static FAILOVER_END: AtomicU64 = AtomicU64::new(0);
/// Held while an end changes and the later one is published.
static SETTING: Mutex<()> = Mutex::new(());

thread_local! {
    /// Connections of this core waiting for a pause to end.
    static WAITING: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

/// Changes the ends under the lock and publishes the later one.
fn set(f: impl FnOnce()) {
    let _g = SETTING.lock().unwrap_or_else(|e| e.into_inner());
    f();
    let end = CLIENT_END
        .load(Ordering::Acquire)
        .max(FAILOVER_END.load(Ordering::Acquire));
    PAUSED_UNTIL_MS.store(end, Ordering::Release);
}

/// `end` if it is still to come at `now`.
fn live(end: &AtomicU64, now: u64) -> Option<u64> {
    let e = end.load(Ordering::Acquire);
    (e > now).then_some(e)
}

/// When the pause in force ends (unix ms, the later of the purposes' ends), if one is in
/// force. Pauses found over are cleared, so that commands go back to paying one load
/// ([`maybe_paused`]).
fn in_force() -> Option<u64> {
    if PAUSED_UNTIL_MS.load(Ordering::Acquire) == 0 {
        return None;
    }
    let now = now_ms();
    let end = live(&CLIENT_END, now).max(live(&FAILOVER_END, now));
    if end.is_none() {
        // Only ends that are over: one set meanwhile is still to come and stays.
        set(|| {
            for e in [&CLIENT_END, &FAILOVER_END] {
                if e.load(Ordering::Acquire) <= now {
                    e.store(0, Ordering::Release);
                }
            }
        });
    }
    end
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
/// transaction holds commands the WRITE mode covers. Both purposes cover writes; only the
/// client's pause, while it lasts, may cover every command.
pub fn holds(spec: &CommandSpec, queued_writes: impl Fn() -> bool) -> bool {
    in_force().is_some()
        && ((ALL.load(Ordering::Acquire) && live(&CLIENT_END, now_ms()).is_some())
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
        if in_force().is_none() {
            return;
        }
        // Until the first end still to come: what holds may change then (a client's ALL
        // ending before the failover's WRITE).
        let now = now_ms();
        let Some(end) = [live(&CLIENT_END, now), live(&FAILOVER_END, now)]
            .into_iter()
            .flatten()
            .min()
        else {
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

/// Pauses writes until `end_ms` for a manual failover (a cluster master, as Redis's
/// PAUSE_DURING_FAILOVER); a client's pause in force stays as it is.
pub fn pause_failover_until(end_ms: u64) {
    set(|| FAILOVER_END.store(end_ms, Ordering::Release));
}

/// Ends the failover's pause (a client's pause in force stays) and wakes the clients it
/// held, on every core.
pub async fn end_failover_pause(core: &Rc<Core>) {
    end_failover();
    crate::core::call_all(core, |_| wake_here()).await;
}

fn end_failover() {
    set(|| FAILOVER_END.store(0, Ordering::Release));
}

fn end_client() {
    set(|| {
        CLIENT_END.store(0, Ordering::Release);
        ALL.store(false, Ordering::Release);
    });
}

/// CLIENT UNPAUSE: ends the client's pause (a failover's pause in force stays) and wakes
/// the clients it held, on every core.
async fn unpause(core: &Rc<Core>) {
    end_client();
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
    // The stricter mode and the later end win while the client's pause lasts.
    set(|| {
        let lasting = live(&CLIENT_END, now_ms()).is_some();
        if !lasting {
            ALL.store(all, Ordering::Release);
            CLIENT_END.store(end, Ordering::Release);
        } else {
            if all {
                ALL.store(true, Ordering::Release);
            }
            CLIENT_END.fetch_max(end, Ordering::AcqRel);
        }
    });
    w.ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pause state is the process's: its tests run one at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn clear() {
        end_client();
        end_failover();
    }

    /// A pause that ended by itself is cleared by the first command that looks, so later
    /// commands pay one load again (no clock read, no flush before each).
    #[test]
    fn an_ended_pause_is_cleared() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        clear();
        let set_cmd = percore_proto::lookup(b"set").expect("SET");
        set(|| CLIENT_END.store(now_ms() + 60_000, Ordering::Release));
        assert!(maybe_paused());
        assert!(holds(set_cmd, || false));
        set(|| CLIENT_END.store(now_ms().saturating_sub(1), Ordering::Release));
        assert!(maybe_paused());
        assert!(!holds(set_cmd, || false));
        assert!(!maybe_paused(), "the ended pause stays set");
    }

    /// The client's pause and the failover's have their own ends: lifting one leaves the
    /// other, and a client's ALL ends with the client's pause.
    #[test]
    fn the_client_and_failover_pauses_do_not_lift_each_other() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        clear();
        let set_cmd = percore_proto::lookup(b"set").expect("SET");
        let get = percore_proto::lookup(b"get").expect("GET");
        let now = now_ms();
        // The failover pauses writes; a client's CLIENT UNPAUSE leaves that pause.
        pause_failover_until(now + 60_000);
        end_client();
        assert!(
            holds(set_cmd, || false),
            "CLIENT UNPAUSE lifted the failover's pause"
        );
        assert!(!holds(get, || false));
        // A client's PAUSE ALL outlives the failover's end.
        set(|| {
            CLIENT_END.store(now + 30_000, Ordering::Release);
            ALL.store(true, Ordering::Release);
        });
        assert!(holds(get, || false));
        end_failover();
        assert!(
            holds(get, || false),
            "the failover's end lifted CLIENT PAUSE ALL"
        );
        assert_eq!(PAUSED_UNTIL_MS.load(Ordering::Acquire), now + 30_000);
        // A client's ALL that ended leaves the failover's WRITE pause only.
        pause_failover_until(now + 60_000);
        set(|| CLIENT_END.store(now.saturating_sub(1), Ordering::Release));
        assert!(holds(set_cmd, || false));
        assert!(!holds(get, || false), "an ended ALL still holds reads");
        clear();
    }
}
