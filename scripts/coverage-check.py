#!/usr/bin/env python3
"""Line coverage per workspace crate, checked against the floors of coverage/floors.txt.

    scripts/coverage-check.py REPORT.lcov              # table, then the check
    scripts/coverage-check.py REPORT.lcov --files 5    # also each crate's 5 files with
                                                       # the most lines never run
    scripts/coverage-check.py REPORT.lcov --markdown   # the table for docs/COVERAGE.md
                                                       # (no check)

REPORT.lcov is `cargo llvm-cov report --lcov`. Each source file counts in the workspace
package whose directory holds it (`cargo metadata --no-deps`).

A crate's figure is the share of its instrumented lines (lcov DA records) that ran at
least once, test code left out: cargo-llvm-cov already drops tests/, examples/, benches/
and files named tests.rs or *_tests.rs; this also drops every item under #[cfg(test)]
(inline `mod tests { ... }`, and the files of `#[cfg(test)] mod name;`), which would
otherwise count as covered code. The `llvm-cov` column is llvm-cov's own summary (the
lcov LF/LH totals, what `cargo llvm-cov` prints), test modules included, for reference.

Exit status 1 when a crate with a floor is under it (each one named), or has no figure
at all (renamed or removed: its floor must go too). A crate without a floor is reported
and not checked. The floors never move by themselves: when a crate is well above its
floor the output says so, and raising it is a commit to coverage/floors.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOORS = os.path.join(ROOT, "coverage", "floors.txt")
TOTAL = "total"
# How far above its floor a crate may be before the output suggests raising it (points).
RAISE_HINT = 4.0

CFG_TEST = re.compile(r"^\s*#\[cfg\(test\)\]\s*$")
ATTRIBUTE_OR_COMMENT = re.compile(r"^\s*(#\[|//)")
MOD_DECLARATION = re.compile(r"^\s*(pub(\([\w:]+\))?\s+)?mod\s+(\w+)\s*;")


def packages() -> list[tuple[str, str]]:
    """(directory, package name) of every workspace member, the deepest directory first."""
    out = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--locked"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = [
        (os.path.dirname(p["manifest_path"]) + os.sep, p["name"])
        for p in json.loads(out)["packages"]
    ]
    return sorted(found, key=lambda d: len(d[0]), reverse=True)


def test_only(path: str) -> tuple[set[int], list[str]]:
    """The lines (1-based) of `path` under #[cfg(test)], and the module files those
    attributes bring in (`#[cfg(test)] mod name;`): name.rs or name/mod.rs, and any
    directory name/ (its files are test-only too)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().split("\n")
    except OSError:
        return set(), []
    lines: set[int] = set()
    modules: list[str] = []
    base = os.path.basename(path)
    module_dir = (os.path.dirname(path) if base in ("lib.rs", "main.rs", "mod.rs")
                  else path[: -len(".rs")])
    i = 0
    while i < len(text):
        if not CFG_TEST.match(text[i]):
            i += 1
            continue
        start = i
        i += 1
        while i < len(text) and ATTRIBUTE_OR_COMMENT.match(text[i]):
            i += 1
        if i >= len(text):
            break
        item = text[i]
        declared = MOD_DECLARATION.match(item)
        if declared:
            name = declared.group(3)
            modules += [os.path.join(module_dir, name + ".rs"),
                        os.path.join(module_dir, name)]
            end = i
        elif item.rstrip().endswith(";"):
            end = i
        else:
            # rustfmt closes an item at the indentation it opened it with.
            indent = len(item) - len(item.lstrip())
            end = i
            while end + 1 < len(text):
                end += 1
                line = text[end]
                if line.strip().startswith("}") and len(line) - len(line.lstrip()) == indent:
                    break
        lines.update(range(start + 1, end + 2))
        i = end + 1
    return lines, modules


def read_lcov(path: str):
    """{source file: (DA records {line: hits}, LF, LH)}"""
    files = {}
    current = None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if line.startswith("SF:"):
                current = line[3:]
                files[current] = [{}, 0, 0]
            elif current is None:
                continue
            elif line.startswith("DA:"):
                number, hits = line[3:].split(",")[:2]
                records = files[current][0]
                records[int(number)] = records.get(int(number), 0) + int(hits)
            elif line.startswith("LF:"):
                files[current][1] = int(line[3:])
            elif line.startswith("LH:"):
                files[current][2] = int(line[3:])
            elif line == "end_of_record":
                current = None
    return files


def read_floors(path: str) -> dict[str, float]:
    floors: dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                floors[parts[0]] = float(parts[1])
            except ValueError:
                sys.exit(f"{path}:{number}: expected '<crate> <percent>', got {line!r}")
    return floors


def percent(covered: int, count: int) -> float:
    return 100.0 * covered / count if count else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="cargo llvm-cov report --lcov")
    parser.add_argument("--floors", default=FLOORS, help="default: coverage/floors.txt")
    parser.add_argument("--files", type=int, default=0, metavar="N",
                        help="list each crate's N files with the most uncovered lines")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()

    report = read_lcov(args.report)
    dirs = packages()
    test_lines = {name: test_only(name)[0] for name in report}
    # Every source file's `#[cfg(test)] mod name;`, the files without instrumented lines
    # (a mod.rs of declarations) included.
    test_modules: list[str] = []
    for directory, _ in dirs:
        for parent, subdirs, names in os.walk(directory):
            subdirs[:] = [d for d in subdirs if d not in ("target", ".git")]
            for source in names:
                if source.endswith(".rs"):
                    test_modules += test_only(os.path.join(parent, source))[1]

    def in_test_module(name: str) -> bool:
        return any(name == m or name.startswith(m + os.sep) for m in test_modules)

    # crate -> [covered, count, llvm-cov LH, llvm-cov LF]
    totals: dict[str, list[int]] = {}
    # crate -> [(uncovered, count, path)]
    files: dict[str, list[tuple[int, int, str]]] = {}
    for name, (records, lf, lh) in report.items():
        crate = next((c for d, c in dirs if name.startswith(d)), None)
        if crate is None:
            continue
        row = totals.setdefault(crate, [0, 0, 0, 0])
        row[2] += lh
        row[3] += lf
        if in_test_module(name):
            continue
        code = {n: h for n, h in records.items() if n not in test_lines[name]}
        covered = sum(1 for h in code.values() if h > 0)
        row[0] += covered
        row[1] += len(code)
        if code:
            files.setdefault(crate, []).append(
                (len(code) - covered, len(code), os.path.relpath(name, ROOT)))
    totals[TOTAL] = [sum(row[k] for row in totals.values()) for k in range(4)]

    floors = read_floors(args.floors)
    order = sorted(c for c in totals if c != TOTAL) + [TOTAL]
    if args.markdown:
        print("| crate | lines | covered | line coverage | floor | llvm-cov |")
        print("|---|---:|---:|---:|---:|---:|")
        for crate in order:
            covered, count, lh, lf = totals[crate]
            floor = f"{floors[crate]:.1f} %" if crate in floors else "none"
            shown = f"**{crate}**" if crate == TOTAL else f"`{crate}`"
            print(f"| {shown} | {count} | {covered} | {percent(covered, count):.1f} % "
                  f"| {floor} | {percent(lh, lf):.1f} % |")
        return 0
    else:
        print(f"{'crate':<20} {'lines':>7} {'covered':>8} {'coverage':>9} {'floor':>7}"
              f" {'llvm-cov':>9}")
        for crate in order:
            covered, count, lh, lf = totals[crate]
            floor = f"{floors[crate]:.1f}" if crate in floors else "none"
            print(f"{crate:<20} {count:>7} {covered:>8} {percent(covered, count):>8.1f}%"
                  f" {floor:>7} {percent(lh, lf):>8.1f}%")
    if args.files:
        for crate in order[:-1]:
            print(f"\n{crate}: the files with the most lines never run")
            for uncovered, count, path in sorted(files.get(crate, []), reverse=True)[: args.files]:
                print(f"  {uncovered:>5} of {count:>5} lines uncovered  {path}")

    floors_file = os.path.relpath(args.floors, ROOT)
    failed = []
    for crate, floor in sorted(floors.items()):
        if crate not in totals or totals[crate][1] == 0:
            failed.append(f"{crate}: no coverage figure (renamed or removed? its floor is "
                          f"in {floors_file})")
            continue
        measured = percent(*totals[crate][:2])
        if measured < floor:
            failed.append(f"{crate}: {measured:.1f} % of lines, under its floor of {floor:.1f} %")
        elif measured >= floor + RAISE_HINT:
            print(f"coverage: {crate} is at {measured:.1f} %, {measured - floor:.1f} points over "
                  f"its floor: raise it in {floors_file}", file=sys.stderr)
    for crate in order[:-1]:
        if crate not in floors:
            print(f"coverage: {crate} has no floor in {floors_file} (not checked)",
                  file=sys.stderr)
    if failed:
        for line in failed:
            print(f"coverage: FAILED: {line}", file=sys.stderr)
        print("coverage: add tests, or, when well-covered code went away on purpose, lower "
              f"the floor in {floors_file} in the same commit and say why", file=sys.stderr)
        return 1
    print("coverage: every crate at or over its floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
