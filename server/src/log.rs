//! Log lines in Redis's shape (`pid:M dd Mon yyyy hh:mm:ss.mmm * message`) on stderr, so
//! operators' log tooling keeps working.

use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(2);

/// debug=0, verbose=1, notice=2, warning=3, nothing=4.
pub fn set_level(name: &str) {
    let l = match name {
        "debug" => 0,
        "verbose" => 1,
        "notice" => 2,
        "warning" => 3,
        _ => 4,
    };
    LEVEL.store(l, Ordering::Relaxed);
}

fn stamp() -> String {
    let ms = crate::core::now_ms();
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{d:02} {} {y} {:02}:{:02}:{:02}.{:03}",
        MON[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The role letter of each line: `S` while this server is a replica, as Redis writes it.
pub static REPLICA: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn emit(level: u8, mark: char, msg: &str) {
    if level < LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let role = if REPLICA.load(Ordering::Relaxed) {
        'S'
    } else {
        'M'
    };
    let line = format!("{}:{role} {} {mark} {msg}\n", std::process::id(), stamp());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

pub fn notice(msg: &str) {
    emit(2, '*', msg);
}

pub fn warn(msg: &str) {
    emit(3, '#', msg);
}
