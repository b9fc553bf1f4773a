//! ACL users and their rules, as Redis 7.0's `acl.c` defines them: parsing a rule
//! (`ACLSetUser`/`ACLSetSelector`), describing a user back as rules (ACL LIST, GETUSER,
//! SAVE) and checking a command line against a user.
//!
//! Pure: no I/O, no clock, no shared state; it reads only the command table. The fuzz
//! target `acl_rules` drives it with arbitrary rules.
//!
//! A selector keeps one bit per command-table row (`Cmd as usize`; subcommands are rows of
//! their own), like Redis's `allowed_commands` bitmap; `future` is Redis's reserved bit,
//! set only by `+@all`/`allcommands`, which is what makes a description start with `+@all`
//! rather than `-@all`. Checking a command is a bit test, then key patterns (only for a
//! selector without `allkeys`), then channel patterns (only for Pub/Sub commands).
//!
//! Cost: a key is tried against the patterns in order; a pattern that is a literal or a
//! literal prefix with one trailing `*` (the usual `~cache:*`) is compared without the glob
//! matcher and usually rejected on its first byte. With 10 such patterns a GET costs about
//! 50 ns more than for an unrestricted user (`make bench-acl`, pipeline 64). Rejected: a
//! combined automaton over all patterns (rules change at run time and lists are short) and
//! caching per-key results (keys vary; the cache would cost what it saves).
//!
//! Invariants: a selector's bits beyond the table are always zero (so bitmaps compare
//! equal exactly when they allow the same commands); `allkeys` means no patterns are kept,
//! `allchannels` likewise; the root selector is always `selectors[0]`.

use super::sha256;
use percore_proto::command::{lookup, lookup_sub, subcommands, CMD_COUNT, COMMANDS, SUBCOMMANDS};
use percore_proto::decode::split_args_in_place;
use percore_proto::{Args, Cmd, CommandSpec, Flags};
use percore_shard::glob::glob_match;
use std::sync::OnceLock;

/// Redis's categories, in its order (ACL CAT, and the order descriptions try them in).
pub const CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// Key pattern permissions.
pub const READ: u8 = 1;
pub const WRITE: u8 = 2;
pub const READ_WRITE: u8 = READ | WRITE;

const WORDS: usize = CMD_COUNT.div_ceil(64);

/// One bit per command-table row.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Bits([u64; WORDS]);

impl Bits {
    const NONE: Bits = Bits([0; WORDS]);

    fn all() -> Bits {
        let mut b = Bits([u64::MAX; WORDS]);
        let extra = WORDS * 64 - CMD_COUNT;
        if extra > 0 {
            b.0[WORDS - 1] >>= extra;
        }
        b
    }

    #[inline]
    fn get(&self, cmd: Cmd) -> bool {
        let i = cmd as usize;
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn put(&mut self, cmd: Cmd, on: bool) {
        let i = cmd as usize;
        if on {
            self.0[i / 64] |= 1 << (i % 64);
        } else {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
}

/// The categories of every row, as a bit mask over [`CATEGORIES`].
fn category_masks() -> &'static [u32; CMD_COUNT] {
    static MASKS: OnceLock<[u32; CMD_COUNT]> = OnceLock::new();
    MASKS.get_or_init(|| {
        let mut m = [0u32; CMD_COUNT];
        for s in COMMANDS.iter().chain(SUBCOMMANDS) {
            for c in s.acl {
                if let Some(i) = CATEGORIES.iter().position(|x| x == c) {
                    m[s.cmd as usize] |= 1 << i;
                }
            }
        }
        m
    })
}

/// The bit of a category name (any case), or None when Redis has no such category.
pub fn category(name: &[u8]) -> Option<u32> {
    CATEGORIES
        .iter()
        .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 1 << i)
}

/// Whether the row `spec` belongs to the category bit `cat`.
pub fn in_category(spec: &CommandSpec, cat: u32) -> bool {
    category_masks()[spec.cmd as usize] & cat != 0
}

/// Why a rule was refused (Redis's errno values in `ACLSetUser`), and its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleError {
    Unknown,
    Syntax,
    KeysAfterAll,
    ChannelsAfterAll,
    NoSuchPassword,
    BadHash,
    FirstArgOfSub,
}

impl RuleError {
    pub fn message(self) -> &'static str {
        match self {
            RuleError::Unknown => "Unknown command or category name in ACL",
            RuleError::Syntax => "Syntax error",
            RuleError::KeysAfterAll => "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
            RuleError::ChannelsAfterAll => "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels",
            RuleError::NoSuchPassword => "The password you are trying to remove from the user does not exist",
            RuleError::BadHash => "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
            RuleError::FirstArgOfSub => "Allowing first-arg of a subcommand is not supported",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPattern {
    pub flags: u8,
    pub pattern: Vec<u8>,
    /// How `pattern` matches, found once when the rule is applied.
    shape: Shape,
}

/// The common forms of a glob, matched without the general matcher: most ACL patterns are
/// a literal prefix and one trailing `*` (`~cache:*`), which is a prefix comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// No special character: the key must be equal.
    Literal,
    /// A literal and one trailing `*`: the key must start with the literal.
    Prefix,
    /// Anything else: Redis's `stringmatchlen`.
    Glob,
}

impl KeyPattern {
    fn new(flags: u8, pattern: &[u8]) -> KeyPattern {
        let special = |c: &u8| matches!(c, b'*' | b'?' | b'[' | b'\\');
        let shape = match pattern.split_last() {
            _ if !pattern.iter().any(special) => Shape::Literal,
            Some((b'*', head)) if !head.iter().any(special) => Shape::Prefix,
            _ => Shape::Glob,
        };
        KeyPattern {
            flags,
            pattern: pattern.to_vec(),
            shape,
        }
    }

    #[inline]
    fn matches(&self, key: &[u8]) -> bool {
        match self.shape {
            // The first byte settles most mismatches without a call to memcmp.
            Shape::Literal => self.pattern.first() == key.first() && self.pattern == key,
            Shape::Prefix => {
                let head = &self.pattern[..self.pattern.len() - 1];
                key.len() >= head.len()
                    && (head.is_empty() || head[0] == key[0])
                    && key.starts_with(head)
            }
            Shape::Glob => glob_match(&self.pattern, key, false),
        }
    }
}

/// A set of permissions: the root one of a user, or one in parentheses.
#[derive(Clone, Debug)]
pub struct Selector {
    bits: Bits,
    /// Redis's reserved bit: `+@all`/`allcommands` was applied and no `-@all` since.
    future: bool,
    allcommands: bool,
    pub allkeys: bool,
    pub allchannels: bool,
    /// `+select|0`: first arguments allowed for a command whose bit is off.
    firstargs: Vec<(Cmd, Vec<Vec<u8>>)>,
    pub patterns: Vec<KeyPattern>,
    pub channels: Vec<Vec<u8>>,
}

impl Selector {
    /// A selector that allows nothing (channels per `acl-pubsub-default`).
    pub fn new(allchannels: bool) -> Selector {
        Selector {
            bits: Bits::NONE,
            future: false,
            allcommands: false,
            allkeys: false,
            allchannels,
            firstargs: Vec::new(),
            patterns: Vec::new(),
            channels: Vec::new(),
        }
    }

    /// Allows nothing but everything: every command, key and channel.
    pub fn is_unrestricted(&self) -> bool {
        self.allcommands && self.allkeys && self.allchannels
    }

    fn set_bit(&mut self, cmd: Cmd, on: bool) {
        self.bits.put(cmd, on);
        if !on {
            self.allcommands = false;
        }
    }

    /// Redis's `ACLChangeSelectorPerm`: a command, and all its subcommands.
    fn change(&mut self, spec: &CommandSpec, on: bool) {
        self.set_bit(spec.cmd, on);
        self.firstargs.retain(|(c, _)| *c != spec.cmd);
        for sub in subcommands(spec.cmd) {
            self.set_bit(sub.cmd, on);
        }
    }

    fn change_category(&mut self, cat: u32, on: bool) {
        for spec in COMMANDS {
            if in_category(spec, cat) {
                self.change(spec, on);
            }
            for sub in subcommands(spec.cmd) {
                if in_category(sub, cat) {
                    self.change(sub, on);
                }
            }
        }
    }

    fn all_commands(&mut self, on: bool) {
        self.bits = if on { Bits::all() } else { Bits::NONE };
        self.future = on;
        self.allcommands = on;
        self.firstargs.clear();
    }

    /// Applies one selector rule (Redis's `ACLSetSelector`).
    pub fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let is = |w: &str| op.eq_ignore_ascii_case(w.as_bytes());
        let Some(&first) = op.first() else {
            return Err(RuleError::Syntax);
        };
        if is("allkeys") || is("~*") {
            self.allkeys = true;
            self.patterns.clear();
        } else if is("resetkeys") {
            self.allkeys = false;
            self.patterns.clear();
        } else if is("allchannels") || is("&*") {
            self.allchannels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.all_commands(true);
        } else if is("nocommands") || is("-@all") {
            self.all_commands(false);
        } else if first == b'~' || first == b'%' {
            if self.allkeys {
                return Err(RuleError::KeysAfterAll);
            }
            let (flags, offset) = key_rule_flags(op)?;
            let pattern = &op[offset..];
            if has_spaces(pattern) {
                return Err(RuleError::Syntax);
            }
            match self.patterns.iter_mut().find(|p| p.pattern == pattern) {
                Some(p) => p.flags |= flags,
                None => self.patterns.push(KeyPattern::new(flags, pattern)),
            }
        } else if first == b'&' {
            if self.allchannels {
                return Err(RuleError::ChannelsAfterAll);
            }
            let pattern = &op[1..];
            if has_spaces(pattern) {
                return Err(RuleError::Syntax);
            }
            if !self.channels.iter().any(|c| c == pattern) {
                self.channels.push(pattern.to_vec());
            }
        } else if first == b'+' && op.get(1) != Some(&b'@') {
            self.allow(&op[1..])?;
        } else if first == b'-' && op.get(1) != Some(&b'@') {
            let spec = find_command(&op[1..]).ok_or(RuleError::Unknown)?;
            self.change(spec, false);
        } else if (first == b'+' || first == b'-') && op.get(1) == Some(&b'@') {
            let cat = category(&op[2..]).ok_or(RuleError::Unknown)?;
            self.change_category(cat, first == b'+');
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    /// `+cmd`, `+cmd|sub` and `+cmd|firstarg`.
    fn allow(&mut self, name: &[u8]) -> Result<(), RuleError> {
        let Some(bar) = name.iter().rposition(|&c| c == b'|') else {
            let spec = find_command(name).ok_or(RuleError::Unknown)?;
            self.change(spec, true);
            return Ok(());
        };
        let (base, sub) = (&name[..bar], &name[bar + 1..]);
        let spec = find_command(base).ok_or(RuleError::Unknown)?;
        if spec.name.contains('|') {
            return Err(RuleError::FirstArgOfSub);
        }
        if sub.is_empty() {
            return Err(RuleError::Syntax);
        }
        if spec.is_container() {
            let sub = find_command(name).ok_or(RuleError::Unknown)?;
            self.change(sub, true);
        } else {
            match self.firstargs.iter_mut().find(|(c, _)| *c == spec.cmd) {
                Some((_, args)) => {
                    if !args.iter().any(|a| a.eq_ignore_ascii_case(sub)) {
                        args.push(sub.to_vec());
                    }
                }
                None => self.firstargs.push((spec.cmd, vec![sub.to_vec()])),
            }
        }
        Ok(())
    }

    /// Whether this selector allows running `spec` with `args`: the command bit (or an
    /// allowed first argument); key and channel patterns are checked by the caller.
    #[inline]
    pub fn allows_command(&self, spec: &CommandSpec, args: &Args) -> bool {
        if self.allcommands || spec.flags.has(Flags::NO_AUTH) || self.bits.get(spec.cmd) {
            return true;
        }
        let Some((_, allowed)) = self.firstargs.iter().find(|(c, _)| *c == spec.cmd) else {
            return false;
        };
        let at = if spec.name.contains('|') { 2 } else { 1 };
        args.get(at)
            .is_some_and(|a| allowed.iter().any(|x| x.eq_ignore_ascii_case(a)))
    }

    /// Redis's `ACLSelectorCheckKey`: `need` is READ and/or WRITE.
    #[inline]
    pub fn allows_key(&self, key: &[u8], need: u8) -> bool {
        self.allkeys
            || self
                .patterns
                .iter()
                .any(|p| p.flags & need == need && p.matches(key))
    }

    /// Redis's `ACLCheckChannelAgainstList`: a PSUBSCRIBE pattern must equal an allowed
    /// pattern literally; a channel name is matched against the patterns.
    pub fn allows_channel(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.allchannels || channel_in(&self.channels, channel, is_pattern)
    }

    /// The command rules that rebuild this selector's bitmap (Redis's
    /// `ACLDescribeSelectorCommandRules`): `+@all` or `-@all`, then the categories that fit
    /// best, then single commands, in table order.
    pub fn describe_commands(&self) -> String {
        let additive = !self.future;
        let mut rules = String::from(if additive { "-@all " } else { "+@all " });
        let mut fake = Selector::new(false);
        fake.all_commands(!additive);
        let mut temp = Selector::new(false);
        temp.bits = self.bits;
        let mut applied = [false; CATEGORIES.len()];
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (u64::MAX, 0u64);
            for (j, _) in CATEGORIES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (on, off) = temp.count_category(1 << j);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(j);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(j) = best else { break };
            fake.change_category(1 << j, additive);
            temp.change_category(1 << j, !additive);
            rules.push_str(if additive { "+@" } else { "-@" });
            rules.push_str(CATEGORIES[j]);
            rules.push(' ');
            applied[j] = true;
        }
        for spec in COMMANDS {
            self.describe_single(&mut fake, spec, &mut rules);
            for sub in subcommands(spec.cmd) {
                self.describe_single(&mut fake, sub, &mut rules);
            }
            if !self.bits.get(spec.cmd) {
                if let Some((_, args)) = self.firstargs.iter().find(|(c, _)| *c == spec.cmd) {
                    for a in args {
                        rules.push('+');
                        rules.push_str(spec.name);
                        rules.push('|');
                        rules.push_str(&String::from_utf8_lossy(a));
                        rules.push(' ');
                    }
                }
            }
        }
        rules.pop();
        debug_assert_eq!(fake.bits, self.bits, "description must rebuild the bitmap");
        rules
    }

    fn describe_single(&self, fake: &mut Selector, spec: &CommandSpec, rules: &mut String) {
        let mine = self.bits.get(spec.cmd);
        if mine != fake.bits.get(spec.cmd) {
            rules.push(if mine { '+' } else { '-' });
            rules.push_str(spec.name);
            rules.push(' ');
            fake.change(spec, mine);
        }
    }

    fn count_category(&self, cat: u32) -> (u64, u64) {
        let (mut on, mut off) = (0, 0);
        for s in COMMANDS.iter().chain(SUBCOMMANDS) {
            if in_category(s, cat) {
                if self.bits.get(s.cmd) {
                    on += 1;
                } else {
                    off += 1;
                }
            }
        }
        (on, off)
    }

    /// The key patterns as ACL GETUSER shows them (`~*` for allkeys).
    pub fn describe_keys(&self) -> String {
        if self.allkeys {
            return "~*".into();
        }
        let parts: Vec<String> = self.patterns.iter().map(pattern_rule).collect();
        parts.join(" ")
    }

    /// The channel patterns as ACL GETUSER shows them (`&*` for allchannels).
    pub fn describe_channels(&self) -> String {
        if self.allchannels {
            return "&*".into();
        }
        let parts: Vec<String> = self
            .channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect();
        parts.join(" ")
    }

    /// The whole selector as rules (Redis's `ACLDescribeSelector`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if self.allkeys {
            s.push_str("~* ");
        } else {
            for p in &self.patterns {
                s.push_str(&pattern_rule(p));
                s.push(' ');
            }
        }
        if self.allchannels {
            s.push_str("&* ");
        } else {
            s.push_str("resetchannels ");
            for c in &self.channels {
                s.push('&');
                s.push_str(&String::from_utf8_lossy(c));
                s.push(' ');
            }
        }
        s.push_str(&self.describe_commands());
        s
    }
}

fn pattern_rule(p: &KeyPattern) -> String {
    let prefix = match p.flags {
        READ => "%R~",
        WRITE => "%W~",
        _ => "~",
    };
    format!("{prefix}{}", String::from_utf8_lossy(&p.pattern))
}

/// `~pat` is READ|WRITE; `%R~`, `%W~`, `%RW~` (any case, each letter once) name theirs.
/// Returns the flags and where the pattern starts.
fn key_rule_flags(op: &[u8]) -> Result<(u8, usize), RuleError> {
    if op[0] == b'~' {
        return Ok((READ_WRITE, 1));
    }
    let mut flags = 0;
    let mut offset = 1;
    while offset < op.len() {
        let c = op[offset];
        if c.eq_ignore_ascii_case(&b'r') && flags & READ == 0 {
            flags |= READ;
        } else if c.eq_ignore_ascii_case(&b'w') && flags & WRITE == 0 {
            flags |= WRITE;
        } else if c == b'~' {
            offset += 1;
            break;
        } else {
            return Err(RuleError::Syntax);
        }
        offset += 1;
    }
    // `%~pat` grants nothing (and could not be described back): refused, as redis-server
    // 7.0.15 as shipped refuses it.
    if flags == 0 {
        return Err(RuleError::Syntax);
    }
    Ok((flags, offset))
}

fn channel_in(list: &[Vec<u8>], channel: &[u8], is_pattern: bool) -> bool {
    list.iter().any(|p| {
        if is_pattern {
            p == channel
        } else {
            glob_match(p, channel, false)
        }
    })
}

/// Redis's `ACLStringHasSpaces`: whitespace or NUL.
pub fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|&c| c == 0 || c == b' ' || (b'\t'..=b'\r').contains(&c))
}

/// A command or `parent|sub`, any case (Redis's `lookupCommandBySdsLogic`).
pub fn find_command(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut parts = name.split(|&c| c == b'|');
    let base = lookup(parts.next()?)?;
    let Some(sub) = parts.next() else {
        return Some(base);
    };
    if parts.next().is_some() || !base.is_container() {
        return None;
    }
    lookup_sub(base, sub)
}

fn valid_hash(h: &[u8]) -> bool {
    h.len() == 64 && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Compares without revealing, by its timing, how much of the digests matched.
fn same_digest(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a command was refused, and the argument (key or channel) that was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Command,
    Key(usize),
    Channel(usize),
}

impl Denied {
    /// Redis's ACL_DENIED_* order: which error to report when selectors disagree.
    fn rank(self) -> (u8, usize) {
        match self {
            Denied::Command => (1, 0),
            Denied::Key(i) => (2, i),
            Denied::Channel(i) => (4, i),
        }
    }
}

/// A user: flags, password digests, and selectors (the root one first).
#[derive(Clone, Debug)]
pub struct User {
    pub name: Vec<u8>,
    pub enabled: bool,
    pub nopass: bool,
    /// `sanitize-payload` (Some(true)) or `skip-sanitize-payload` (Some(false)).
    pub sanitize: Option<bool>,
    pub passwords: Vec<String>,
    pub selectors: Vec<Selector>,
}

/// Visits the keys a command line names, each with the access it needs (READ and/or
/// WRITE), calling `f(position, need)` until it returns false; false when stopped. Run
/// only for selectors that restrict keys, without allocating for the common commands.
pub type KeysOf = fn(&CommandSpec, &Args, &mut dyn FnMut(usize, u8) -> bool) -> bool;

impl User {
    /// A new user: off, no passwords, no permissions (Redis's `ACLCreateUser`).
    pub fn new(name: &[u8], allchannels: bool) -> User {
        User {
            name: name.to_vec(),
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            selectors: vec![Selector::new(allchannels)],
        }
    }

    /// The `default` user: `on nopass ~* &* +@all`.
    pub fn default_user() -> User {
        let mut u = User::new(b"default", false);
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            let _ = u.apply(op.as_bytes(), false);
        }
        u
    }

    /// Everything is allowed: no check needs to run.
    pub fn is_unrestricted(&self) -> bool {
        self.selectors[0].is_unrestricted()
    }

    /// Applies one rule (Redis's `ACLSetUser`); `allchannels` is `acl-pubsub-default`.
    pub fn apply(&mut self, op: &[u8], allchannels: bool) -> Result<(), RuleError> {
        if op.is_empty() {
            return Ok(());
        }
        let is = |w: &str| op.eq_ignore_ascii_case(w.as_bytes());
        if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("skip-sanitize-payload") {
            self.sanitize = Some(false);
        } else if is("sanitize-payload") {
            self.sanitize = Some(true);
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if op[0] == b'>' || op[0] == b'#' {
            let digest = match op[0] {
                b'>' => sha256::hex(&op[1..]),
                _ if valid_hash(&op[1..]) => String::from_utf8_lossy(&op[1..]).into_owned(),
                _ => return Err(RuleError::BadHash),
            };
            if !self.passwords.contains(&digest) {
                self.passwords.push(digest);
            }
            self.nopass = false;
        } else if op[0] == b'<' || op[0] == b'!' {
            let digest = match op[0] {
                b'<' => sha256::hex(&op[1..]),
                _ if valid_hash(&op[1..]) => String::from_utf8_lossy(&op[1..]).into_owned(),
                _ => return Err(RuleError::BadHash),
            };
            let at = self
                .passwords
                .iter()
                .position(|p| *p == digest)
                .ok_or(RuleError::NoSuchPassword)?;
            self.passwords.remove(at);
        } else if op[0] == b'(' && op[op.len() - 1] == b')' {
            let mut s = Selector::new(allchannels);
            let mut inner = op[1..op.len() - 1].to_vec();
            let mut spans = Vec::new();
            // Unbalanced quotes make an empty selector, as Redis's `sdssplitargs` failing
            // leaves it.
            if split_args_in_place(&mut inner, &mut spans).is_ok() {
                for sp in &spans {
                    let rule = sp.of(&inner);
                    if !rule.is_empty() {
                        s.apply(rule)?;
                    }
                }
            }
            self.selectors.push(s);
        } else if is("clearselectors") {
            self.selectors.truncate(1);
        } else if is("reset") {
            self.nopass = false;
            self.passwords.clear();
            let root = &mut self.selectors[0];
            root.allkeys = false;
            root.patterns.clear();
            root.allchannels = allchannels;
            root.channels.clear();
            self.enabled = false;
            self.sanitize = Some(true);
            self.selectors.truncate(1);
            self.selectors[0].all_commands(false);
        } else {
            self.selectors[0].apply(op)?;
        }
        Ok(())
    }

    /// Whether `password` opens this user (an enabled one).
    pub fn password_ok(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let h = sha256::hex(password);
        self.passwords
            .iter()
            .fold(false, |ok, p| same_digest(p.as_bytes(), h.as_bytes()) | ok)
    }

    /// Redis's `ACLCheckAllUserCommandPerm`: Ok when some selector allows the command
    /// with these keys and channels; else the most telling refusal (a key or channel over
    /// a command; the later argument of two).
    pub fn check(&self, spec: &CommandSpec, args: &Args, keys_of: KeysOf) -> Result<(), Denied> {
        let mut worst = Denied::Command;
        for s in &self.selectors {
            match check_selector(s, spec, args, keys_of) {
                Ok(()) => return Ok(()),
                Err(d) => {
                    if d.rank() > worst.rank() {
                        worst = d;
                    }
                }
            }
        }
        Err(worst)
    }

    /// Redis's `ACLUserCheckCmdWithUnrestrictedKeyAccess` for reads: some selector allows
    /// the command and reads of every key (`allkeys`, or a `*` pattern that may read).
    /// SORT's BY and GET patterns need it, since they name keys the command line does not.
    pub fn reads_every_key(&self, spec: &CommandSpec, args: &Args, keys_of: KeysOf) -> bool {
        self.selectors.iter().any(|s| {
            check_selector(s, spec, args, keys_of).is_ok()
                && (s.allkeys
                    || s.patterns
                        .iter()
                        .any(|p| p.flags & READ == READ && p.pattern == b"*"))
        })
    }

    /// The flags as ACL GETUSER lists them.
    pub fn flag_names(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        match self.sanitize {
            Some(false) => f.push("skip-sanitize-payload"),
            Some(true) => f.push("sanitize-payload"),
            None => {}
        }
        f
    }

    /// The user as rules (ACL LIST without `user <name> `; Redis's `ACLDescribeUser`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for f in self.flag_names() {
            s.push_str(f);
            s.push(' ');
        }
        for p in &self.passwords {
            s.push('#');
            s.push_str(p);
            s.push(' ');
        }
        for (i, sel) in self.selectors.iter().enumerate() {
            if i == 0 {
                s.push_str(&sel.describe());
            } else {
                s.push_str(" (");
                s.push_str(&sel.describe());
                s.push(')');
            }
        }
        s
    }
}

fn check_selector(
    s: &Selector,
    spec: &CommandSpec,
    args: &Args,
    keys_of: KeysOf,
) -> Result<(), Denied> {
    if !s.allows_command(spec, args) {
        return Err(Denied::Command);
    }
    if !s.allkeys {
        let mut refused = None;
        keys_of(spec, args, &mut |i, need| {
            let ok = s.allows_key(&args[i], need);
            if !ok {
                refused = Some(i);
            }
            ok
        });
        if let Some(i) = refused {
            return Err(Denied::Key(i));
        }
    }
    if !s.allchannels {
        if let Some((first, every, is_pattern)) = channel_args(spec.cmd) {
            let last = if every { args.len() } else { first + 1 };
            for i in first..last.min(args.len()) {
                if !s.allows_channel(&args[i], is_pattern) {
                    return Err(Denied::Channel(i));
                }
            }
        }
    }
    Ok(())
}

/// The channels a command names for ACL purposes: (first index, all that follow?, are
/// they patterns?). Unsubscribing is never refused (Redis checks publish and subscribe).
pub fn channel_args(cmd: Cmd) -> Option<(usize, bool, bool)> {
    match cmd {
        Cmd::Publish | Cmd::SPublish => Some((1, false, false)),
        Cmd::Subscribe | Cmd::SSubscribe => Some((1, true, false)),
        Cmd::PSubscribe => Some((1, true, true)),
        _ => None,
    }
}

/// Merges rules spread over several arguments into selectors, as Redis's
/// `ACLMergeSelectorArguments`: `(~a` `+get)` become `(~a +get)`. Err is the index of the
/// argument whose parenthesis is never closed.
pub fn merge_selectors(ops: &[&[u8]]) -> Result<Vec<Vec<u8>>, usize> {
    let mut out = Vec::with_capacity(ops.len());
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (j, op) in ops.iter().enumerate() {
        if let Some((start, mut acc)) = open.take() {
            acc.push(b' ');
            acc.extend_from_slice(op);
            if op.last() == Some(&b')') {
                out.push(acc);
            } else {
                open = Some((start, acc));
            }
            continue;
        }
        if op.first() == Some(&b'(') && op.last() != Some(&b')') {
            open = Some((j, op.to_vec()));
            continue;
        }
        out.push(op.to_vec());
    }
    match open {
        Some((start, _)) => Err(start),
        None => Ok(out),
    }
}

/// Applies rules to a copy of `user` (or a new user named `name`): all of them or, at the
/// first bad one, none (Redis's `ACLStringSetUser`). Err is the reply's message.
pub fn set_user(
    user: Option<&User>,
    name: &[u8],
    ops: &[&[u8]],
    allchannels: bool,
) -> Result<User, String> {
    let merged = merge_selectors(ops).map_err(|at| {
        format!(
            "ERR Unmatched parenthesis in acl selector starting at '{}'.",
            String::from_utf8_lossy(ops[at])
        )
    })?;
    let mut u = match user {
        Some(u) => u.clone(),
        None => User::new(name, allchannels),
    };
    for op in &merged {
        u.apply(op, allchannels).map_err(|e| {
            format!(
                "ERR Error in ACL SETUSER modifier '{}': {}",
                String::from_utf8_lossy(op),
                e.message()
            )
        })?;
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use percore_proto::OwnedArgs;

    fn user(rules: &str) -> User {
        let ops: Vec<&[u8]> = rules.split(' ').map(str::as_bytes).collect();
        set_user(None, b"u", &ops, false).unwrap()
    }

    fn keys_of(spec: &CommandSpec, args: &Args, f: &mut dyn FnMut(usize, u8) -> bool) -> bool {
        let w = if spec.flags.has(Flags::WRITE) {
            WRITE
        } else {
            READ
        };
        spec.key_indices(args.len()).all(|i| f(i, w))
    }

    fn check(u: &User, line: &[&[u8]]) -> Result<(), Denied> {
        let o = OwnedArgs::from_slices(line);
        let a = o.args();
        let spec = percore_proto::resolve(&a).unwrap();
        u.check(spec, &a, keys_of)
    }

    #[test]
    fn describes_as_redis() {
        assert_eq!(User::default_user().describe(), "on nopass ~* &* +@all");
        assert_eq!(user("").describe(), "off resetchannels -@all");
        assert_eq!(
            user("reset").describe(),
            "off sanitize-payload resetchannels -@all"
        );
        assert_eq!(
            user("on >p ~a* %R~b* &ch +get").describe(),
            "on #148de9c5a7a44d19e56cd9ae1a554bf67847afb0c58f6e12fa29ac7ddfca9940 ~a* %R~b* resetchannels &ch -@all +get"
        );
        assert_eq!(user("+@all -get").describe_commands_root(), "+@all -get");
        assert_eq!(user("+@read").describe_commands_root(), "-@all +@read");
        assert_eq!(
            user("-@all +select|0").describe_commands_root(),
            "-@all +select|0"
        );
        assert_eq!(user("%RW~x %R~x").describe(), "off ~x resetchannels -@all");
        assert_eq!(
            user("(~x +set)").describe(),
            "off resetchannels -@all (~x resetchannels -@all +set)"
        );
    }

    impl User {
        fn describe_commands_root(&self) -> String {
            self.selectors[0].describe_commands()
        }
    }

    #[test]
    fn refuses_bad_rules() {
        let one = |r: &str| User::new(b"x", false).apply(r.as_bytes(), false);
        assert_eq!(one("bogus"), Err(RuleError::Syntax));
        assert_eq!(one("+nosuch"), Err(RuleError::Unknown));
        assert_eq!(one("+@nosuch"), Err(RuleError::Unknown));
        assert_eq!(one("+config|get|x"), Err(RuleError::FirstArgOfSub));
        assert_eq!(one("+config|nosuch"), Err(RuleError::Unknown));
        assert_eq!(one("+get|"), Err(RuleError::Syntax));
        assert_eq!(one("%X~a"), Err(RuleError::Syntax));
        assert_eq!(one("%~a"), Err(RuleError::Syntax));
        assert_eq!(one("%"), Err(RuleError::Syntax));
        assert_eq!(one("%R"), Ok(()), "an empty pattern");
        assert_eq!(one("#abc"), Err(RuleError::BadHash));
        assert_eq!(one("<nopw"), Err(RuleError::NoSuchPassword));
        assert_eq!(one("~a b"), Err(RuleError::Syntax));
        let mut u = User::new(b"x", false);
        u.apply(b"allkeys", false).unwrap();
        assert_eq!(u.apply(b"~a", false), Err(RuleError::KeysAfterAll));
        u.apply(b"allchannels", false).unwrap();
        assert_eq!(u.apply(b"&a", false), Err(RuleError::ChannelsAfterAll));
        assert_eq!(merge_selectors(&[b"(~a", b"+get)", b"(~b +set"]), Err(2));
    }

    #[test]
    fn checks_commands_keys_channels() {
        let u = user("on nopass ~a* %R~r* %W~w* &ch* +@all -set");
        assert_eq!(check(&u, &[b"get", b"a1"]), Ok(()));
        assert_eq!(check(&u, &[b"get", b"r1"]), Ok(()));
        assert_eq!(check(&u, &[b"get", b"w1"]), Err(Denied::Key(1)));
        assert_eq!(check(&u, &[b"set", b"a1", b"v"]), Err(Denied::Command));
        assert_eq!(check(&u, &[b"incr", b"w1"]), Ok(()));
        assert_eq!(check(&u, &[b"incr", b"r1"]), Err(Denied::Key(1)));
        assert_eq!(check(&u, &[b"publish", b"chan", b"m"]), Ok(()));
        assert_eq!(
            check(&u, &[b"publish", b"x", b"m"]),
            Err(Denied::Channel(1))
        );
        assert_eq!(check(&u, &[b"psubscribe", b"ch*"]), Ok(()));
        assert_eq!(
            check(&u, &[b"psubscribe", b"cha*"]),
            Err(Denied::Channel(1))
        );
        assert_eq!(
            check(&u, &[b"auth", b"a", b"b"]),
            Ok(()),
            "no_auth commands"
        );
        // A selector allows what the root does not.
        let u = user("on nopass ~a* +get (~b* +set)");
        assert_eq!(check(&u, &[b"set", b"b1", b"v"]), Ok(()));
        assert_eq!(check(&u, &[b"set", b"a1", b"v"]), Err(Denied::Key(1)));
        assert_eq!(check(&u, &[b"get", b"b1"]), Err(Denied::Key(1)));
        // First arguments, and subcommands.
        let u = user("on nopass allkeys -@all +select|0 +config|get");
        assert_eq!(check(&u, &[b"select", b"0"]), Ok(()));
        assert_eq!(check(&u, &[b"select", b"1"]), Err(Denied::Command));
        assert_eq!(check(&u, &[b"config", b"get", b"x"]), Ok(()));
        assert_eq!(
            check(&u, &[b"config", b"set", b"x", b"y"]),
            Err(Denied::Command)
        );
    }

    #[test]
    fn pattern_shapes_match_as_globs() {
        let keys: [&[u8]; 8] = [b"", b"a", b"ab", b"abc", b"b", b"a*", b"a?c", b"xabc"];
        for pat in [
            "a", "ab*", "*", "a*c", "a?c", "a\\*", "[ab]*", "ab", "a*", "",
        ] {
            let p = KeyPattern::new(READ, pat.as_bytes());
            for k in keys {
                assert_eq!(
                    p.matches(k),
                    glob_match(pat.as_bytes(), k, false),
                    "{pat} against {}",
                    String::from_utf8_lossy(k)
                );
            }
        }
    }

    #[test]
    fn passwords() {
        let u = user("on >p1 >p2 <p1");
        assert!(!u.password_ok(b"p1"));
        assert!(u.password_ok(b"p2"));
        let u = user("off >p");
        assert!(!u.password_ok(b"p"), "a disabled user opens with nothing");
        assert!(user("on nopass").password_ok(b"anything"));
    }

    #[test]
    fn every_description_rebuilds_the_user() {
        for rules in [
            "+@all -@write +set",
            "-@all +@read +@write -get",
            "+@all -@dangerous -config|get +debug",
            "-@all +@string +@hash -hget +client|id",
            "+@pubsub +@scripting -eval (+get ~k) (%W~w* +@write)",
        ] {
            let u = user(rules);
            let text = u.describe();
            let again = user(&text);
            assert_eq!(again.describe(), text, "{rules}");
            for (a, b) in u.selectors.iter().zip(&again.selectors) {
                assert_eq!(a.bits, b.bits, "{rules}");
            }
        }
    }
}
