#!/usr/bin/env python3
"""Where a CI run's time went, from its log: the table of docs/benchmarks.md.

    benches/ci-times.py LOG [--budget tests/budget.toml]

LOG is what scripts/test.sh (CI's .ci/run) printed. test.sh stamps every line
of a part with the seconds since that part began ("[  123] ...") and prints
"test.sh: part NAME done in N s" at each part's end; cargo prints "Running
tests/..." before each test binary and "test NAME ... ok" when a test ends.
The ignored tests run one at a time, so a test's time is the stamp of its
result line minus the stamp of the line before it (the previous result, or
the binary's "running N tests"). In a lane that runs several tests at once
(tests/budget.toml's [threads]) that gap is not a test's duration, only
the lane's total is: time such a test in a lane of one thread.

With --budget, each ignored test's time is shown beside its expected cost in
tests/budget.toml, so a changed cost is seen, and the file can be updated.
"""
import argparse
import re
import sys
import tomllib

STAMP = re.compile(r"^\[\s*(\d+)\] (.*)$")
PART_DONE = re.compile(r"^test\.sh: part (\S+) done in (\d+) s \(exit (\d+)\)")
RUNNING = re.compile(r"^\s*Running (\S+)")
START = re.compile(r"^running \d+ tests?$")
RESULT = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)")
PENDING = re.compile(r"^test (\S+) \.\.\. ")
FINISHED = re.compile(r"^test result: .* finished in ([\d.]+)s")
TOTAL = re.compile(r"^test\.sh:\s+total\s+(\d+) s")


def parse(lines):
    """Parts [(name, seconds, exit)], and per part the tests [(binary, test, seconds, result)]
    and the binaries [(binary, seconds)] as libtest timed them."""
    parts, tests, binaries = [], {}, {}
    part, binary, last, pending = None, None, 0, None
    for raw in lines:
        raw = raw.rstrip("\n")
        m = PART_DONE.match(raw)
        if m:
            parts.append((m[1], int(m[2]), int(m[3])))
            continue
        m = re.match(r"^test\.sh: part (\S+) started", raw)
        if m:
            part = m[1]
            tests.setdefault(part, [])
            binaries.setdefault(part, [])
            continue
        m = STAMP.match(raw)
        if not m or part is None:
            continue
        t, line = int(m[1]), m[2]
        if (r := RUNNING.match(line)):
            binary = r[1]
        elif START.match(line):
            last = t
        elif (r := RESULT.match(line)) and r[2] != "ignored":
            tests[part].append((binary, r[1], t - last, r[2]))
            last, pending = t, None
        elif (r := PENDING.match(line)):
            # A test whose tools wrote to the terminal: its "ok" ends a later line.
            pending = r[1]
        elif pending and line.strip() in ("ok", "FAILED"):
            tests[part].append((binary, pending, t - last, line.strip()))
            last, pending = t, None
        elif (r := FINISHED.match(line)):
            binaries[part].append((binary, float(r[1])))
    return parts, tests, binaries


def short(binary):
    """tests/vm_xmpp.rs, or the binary's file name without cargo's hash."""
    if binary is None:
        return "?"
    return re.sub(r"-[0-9a-f]{16}$", "", binary.split("/")[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--budget", help="tests/budget.toml: show each test's expected cost beside it")
    args = ap.parse_args()
    with open(args.log, errors="replace") as f:
        lines = f.readlines()
    parts, tests, binaries = parse(lines)
    total = next((int(m[1]) for m in map(TOTAL.match, lines) if m), None)
    if not parts:
        sys.exit(f"{args.log}: no 'test.sh: part NAME done' line: not a log of scripts/test.sh")
    expected = {}
    if args.budget:
        with open(args.budget, "rb") as f:
            expected = tomllib.load(f).get("ignored", {})

    print("| part | seconds |\n|---|---:|")
    for name, secs, rc in parts:
        print(f"| {name}{'' if rc == 0 else f' (exit {rc})'} | {secs:,} |")
    # Parts side by side overlap: the run's own total is the wall time.
    shown = f"{total:,}" if total is not None else f"{sum(s for _, s, _ in parts):,} (sum of the parts)"
    print(f"| **total** | **{shown}** |\n")

    fast = [(short(b), s) for b, s in binaries.get("fast-tests", []) if s >= 1]
    if len(fast) > 1:
        print("| fast test binary (libtest's time) | seconds |\n|---|---:|")
        for b, s in sorted(fast, key=lambda x: -x[1]):
            print(f"| {b} | {s:,.0f} |")
        print()

    # The ignored tests' parts: "ignored-tests" (one lane), or ignored-vm,
    # ignored-image, ignored-alone (lanes).
    slow = [t for part, ts in tests.items() if part.startswith("ignored") for t in ts]
    if slow:
        head = "| ignored test | seconds | expected |\n|---|---:|---:|" if expected else \
               "| ignored test | seconds |\n|---|---:|"
        print(head)
        for b, name, secs, result in sorted(slow, key=lambda x: -x[2]):
            shown = name if "::" in name else f"{short(b)}::{name}"
            mark = "" if result == "ok" else f" ({result})"
            known = expected.get(name, {}).get("seconds", "—")
            cost = f" | {known}" if expected else ""
            print(f"| {shown}{mark} | {secs:,}{cost} |")
        print(f"| **sum** | **{sum(t[2] for t in slow):,}** |" + (" |" if expected else ""))


if __name__ == "__main__":
    main()
