#!/usr/bin/env python3
"""Generates proto/src/command_docs.rs, the COMMAND DOCS data and key specs of Redis 7.0.15.

Input: the directory of Redis 7.0.15's `src/commands/*.json` (the files Redis's own
`utils/generate-command-code.py` turns into `commands.c`), e.g. taken from a Redis checkout:

    git -C <redis> archive 7.0.15 src/commands | tar -x -C <tmp>
    python3 proto/tools/gen_command_docs.py <tmp>/src/commands > proto/src/command_docs.rs
    cargo fmt --all

Every command and subcommand of the files is written (about 390), not only those percore's
table has today, so a command added to the table finds its documentation without a new run
(percore looks entries up by name; the others cost about 60 KB of read-only data). The
fields are those Redis 7.0
sends (`addReplyCommandDocs`, `addReplyCommandArgList`, `addReplyCommandKeySpecs` in
server.c), prepared as Redis's generator prepares them: argument names lower case, tokens
upper case, flag lists in Redis's reply order, empty strings as absent.
"""
import json
import os
import sys

KEY_FLAG_ORDER = ["RO", "RW", "OW", "RM", "ACCESS", "UPDATE", "INSERT", "DELETE",
                  "NOT_KEY", "INCOMPLETE", "VARIABLE_FLAGS"]
KEY_FLAG_NAME = {"RO": "RO", "RW": "RW", "OW": "OW", "RM": "RM", "ACCESS": "access",
                 "UPDATE": "update", "INSERT": "insert", "DELETE": "delete",
                 "NOT_KEY": "not_key", "INCOMPLETE": "incomplete",
                 "VARIABLE_FLAGS": "variable_flags"}
DOC_FLAG_ORDER = ["DEPRECATED", "SYSCMD"]


def rs(s):
    """A Rust string literal."""
    out = '"'
    for ch in s:
        if ch in '"\\':
            out += "\\" + ch
        elif ch == "\n":
            out += "\\n"
        elif ord(ch) < 0x20:
            out += "\\u{%x}" % ord(ch)
        else:
            out += ch
    return out + '"'


def as_c_literal(v):
    """What Redis's generator makes of a value: it writes `"%s"` into C source, so quotes
    inside the value end and start adjacent literals (MIGRATE's empty-string token `""`
    becomes the empty string)."""
    out, inside, i = "", False, 0
    text = '"%s"' % v
    while i < len(text):
        ch = text[i]
        if ch == "\\" and inside and i + 1 < len(text):
            out += text[i + 1]
            i += 2
            continue
        if ch == '"':
            inside = not inside
        elif inside:
            out += ch
        i += 1
    return out


def opt(s):
    return "Some(%s)" % rs(s) if s else "None"


def strs(items):
    return "&[%s]" % ", ".join(rs(i) for i in items)


def arg_code(a):
    flags = []
    if a.get("optional"):
        flags.append("ARG_OPTIONAL")
    if a.get("multiple"):
        flags.append("ARG_MULTIPLE")
    if a.get("multiple_token"):
        flags.append("ARG_MULTIPLE_TOKEN")
    sub = "None"
    if a["type"] in ("oneof", "block"):
        sub = "Some(&[%s])" % ", ".join(arg_code(s) for s in a["arguments"])
    token = a.get("token")
    return ("DocArg { name: %s, kind: %s, key_spec_index: %d, token: %s, summary: %s, "
            "since: %s, deprecated_since: %s, flags: %s, arguments: %s }") % (
        rs(a["name"].lower()), rs(a["type"]), a.get("key_spec_index", -1),
        "Some(%s)" % rs(as_c_literal(token.upper())) if token else "None",
        opt(a.get("summary")), opt(a.get("since")),
        opt(a.get("deprecated_since")), " | ".join(flags) if flags else "0", sub)


def key_spec_code(k):
    flags = [KEY_FLAG_NAME[f] for f in KEY_FLAG_ORDER if f in k.get("flags", [])]
    bs = k["begin_search"]
    if "index" in bs:
        begin = "BeginSearch::Index(%d)" % bs["index"]["pos"]
    elif "keyword" in bs:
        begin = "BeginSearch::Keyword(%s, %d)" % (rs(bs["keyword"]["keyword"]),
                                                  bs["keyword"]["startfrom"])
    else:
        begin = "BeginSearch::Unknown"
    fk = k["find_keys"]
    if "range" in fk:
        r = fk["range"]
        find = "FindKeys::Range([%d, %d, %d])" % (
            r["lastkey"], r["step"], r["limit"])
    elif "keynum" in fk:
        r = fk["keynum"]
        find = "FindKeys::Keynum([%d, %d, %d])" % (
            r["keynumidx"], r["firstkey"], r["step"])
    else:
        find = "FindKeys::Unknown"
    return "KeySpec { notes: %s, flags: %s, begin: %s, find: %s }" % (
        opt(k.get("notes")), strs(flags), begin, find)


def doc_code(name, d):
    history = d.get("history")
    hist = "None"
    if history:
        hist = "Some(&[%s])" % ", ".join("(%s, %s)" % (rs(h[0]), rs(h[1])) for h in history)
    args = d.get("arguments")
    arguments = "None"
    if args:
        arguments = "Some(&[%s])" % ", ".join(arg_code(a) for a in args)
    doc_flags = [f.lower() for f in DOC_FLAG_ORDER if f in d.get("doc_flags", [])]
    return ("CommandDoc { name: %s, summary: %s, since: %s, group: %s, complexity: %s, "
            "doc_flags: %s, deprecated_since: %s, replaced_by: %s, history: %s, "
            "arguments: %s, key_specs: &[%s] }") % (
        rs(name), opt(d.get("summary")), opt(d.get("since")),
        rs(d["group"].replace("_", "-")), opt(d.get("complexity")), strs(doc_flags),
        opt(d.get("deprecated_since")), opt(d.get("replaced_by")), hist, arguments,
        ", ".join(key_spec_code(k) for k in d.get("key_specs", [])))


def main():
    src = sys.argv[1]
    docs = {}
    for f in sorted(os.listdir(src)):
        if not f.endswith(".json"):
            continue
        for cname, d in json.load(open(os.path.join(src, f))).items():
            name = cname.lower()
            if "container" in d:
                name = d["container"].lower() + "|" + name
            docs[name] = d
    print("//! COMMAND DOCS data and key specs of every Redis 7.0.15 command. GENERATED by")
    print("//! proto/tools/gen_command_docs.py from Redis 7.0.15's src/commands/*.json: edit the")
    print("//! generator, not this file (its header says how to run it). Sorted by name for")
    print("//! [`super::find`].")
    print()
    print("use super::*;")
    print()
    print("#[rustfmt::skip]")
    print("pub(crate) static DOCS: &[CommandDoc] = &[")
    for name in sorted(docs):
        print("    %s," % doc_code(name, docs[name]))
    print("];")


main()
