//! Fuzzes ACL rule parsing (`ACL SETUSER`'s rules, `user` lines, the ACL file): the input
//! is split into rules at NUL and newline bytes and applied to a new user, all or none.
//! Any panic is a bug. When the rules are accepted, the user's description (ACL LIST)
//! must parse back to a user with the same description, and a few command lines are
//! checked against both users with the same outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The rules module is pure (it reads only the command table), so it is compiled here as
// it is in the server.
#[path = "../../server/src/acl/rules.rs"]
#[allow(dead_code)]
mod rules;
#[path = "../../server/src/acl/sha256.rs"]
#[allow(dead_code)]
mod sha256;

use percore_proto::{Args, CommandSpec, Flags, OwnedArgs};
use rules::{set_user, User, READ, WRITE};

fn keys_of(spec: &CommandSpec, args: &Args, f: &mut dyn FnMut(usize, u8) -> bool) -> bool {
    let need = if spec.flags.has(Flags::WRITE) { WRITE } else { READ };
    spec.key_indices(args.len()).all(|i| f(i, need))
}

const LINES: &[&[&[u8]]] = &[
    &[b"get", b"k"],
    &[b"set", b"a", b"v"],
    &[b"mset", b"a", b"1", b"b", b"2"],
    &[b"config", b"get", b"x"],
    &[b"select", b"0"],
    &[b"publish", b"ch", b"m"],
    &[b"psubscribe", b"c*"],
    &[b"auth", b"u", b"p"],
];

/// A description that parses back the same: printable words without the characters a
/// selector's quoting or parentheses would read differently (Redis has the same limits).
fn plain(text: &str) -> bool {
    text.bytes()
        .all(|c| c.is_ascii_graphic() || c == b' ')
        && !text.contains(['"', '\'', '\\'])
}

fn outcomes(u: &User) -> Vec<Result<(), rules::Denied>> {
    LINES
        .iter()
        .map(|line| {
            let o = OwnedArgs::from_slices(line);
            let a = o.args();
            let spec = percore_proto::resolve(&a).expect("the lines are valid commands");
            u.check(spec, &a, keys_of)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let ops: Vec<&[u8]> = data.split(|&c| c == 0 || c == b'\n').collect();
    let Ok(user) = set_user(None, b"u", &ops, data.first().is_some_and(|c| c & 1 == 1)) else {
        return;
    };
    let text = user.describe();
    let first = outcomes(&user);
    let parens_in_patterns = user.selectors.iter().any(|s| {
        s.patterns.iter().any(|p| p.pattern.contains(&b'(') || p.pattern.contains(&b')'))
            || s.channels.iter().any(|c| c.contains(&b'(') || c.contains(&b')'))
    });
    // A rule outside parentheses with a space in it (`+select|0 1`: a first argument with a
    // space, which Redis accepts too) is written back as two words.
    let spaced = ops
        .iter()
        .any(|op| op.first() != Some(&b'(') && op.iter().any(|c| c.is_ascii_whitespace()));
    if !plain(&text) || parens_in_patterns || spaced {
        return;
    }
    let words: Vec<&[u8]> = text.split(' ').map(str::as_bytes).collect();
    let again = set_user(None, b"u", &words, false)
        .unwrap_or_else(|e| panic!("description {text:?} refused: {e}"));
    assert_eq!(again.describe(), text, "description does not round-trip");
    assert_eq!(outcomes(&again), first, "{text}");
});
