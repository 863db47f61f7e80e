#!/usr/bin/env python3
"""Instructions per warm hit of two versions of the filter's core, side by
side in one run: bench/hotpath built from a git revision (BASE) and from the
working tree, both counted by callgrind the same way, with the ratio of each
configuration (docs/performance.md#the-warm-path).

    python3 bench/hotpath_compare.py BASE [CONFIG ...]

BASE is any git revision (a commit, a tag, main~3). CONFIG defaults to every
configuration of `make hotpath`; a configuration one of the two builds does
not know (bench/hotpath exits 2 for it) is shown for the other only. Each
count is (hits(3000) - hits(1000)) / 2000 under
`valgrind --tool=callgrind`: the set-up and the first requests cancel out, and
the count is an instruction count, the same whatever else the machine does.

BASE's tree is exported with `git archive` into target/hotpath-base/<commit>/
and built there (its own Cargo.lock, its own target directory, kept for the
next run); nothing in the working tree changes. Settings: HOTPATH_MAX_RATIO
(1.05): a configuration above it is marked OVER. Prints a table and writes
results/hotpath-compare-<time>.json.
"""

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ["default", "h2m", "narrow", "verify", "verify-products", "verify-resources", "apikey",
           "condition", "faults"]
MAX_RATIO = float(os.environ.get("HOTPATH_MAX_RATIO", "1.05"))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def git(*args):
    return subprocess.run(["git", "-C", ROOT, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def export(rev):
    """BASE's tree under target/hotpath-base/<commit>/src (once)."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    home = os.path.join(ROOT, "target", "hotpath-base", commit)
    src = os.path.join(home, "src")
    if not os.path.exists(os.path.join(src, "bench", "hotpath", "Cargo.toml")):
        os.makedirs(home, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=home) as tmp:
            archive = os.path.join(tmp, "tree.tar")
            subprocess.run(["git", "-C", ROOT, "archive", "-o", archive, commit], check=True)
            out = os.path.join(tmp, "src")
            with tarfile.open(archive) as tar:
                tar.extractall(out, filter="data")
            if not os.path.exists(os.path.join(out, "bench", "hotpath", "Cargo.toml")):
                sys.exit(f"hotpath_compare: {rev} ({commit[:12]}) has no bench/hotpath")
            os.replace(out, src)
    return commit, home, src


def build(tree, target_dir):
    """bench/hotpath of one tree, release (LTO, as make hotpath builds it)."""
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
    subprocess.run(["cargo", "build", "--quiet", "--release", "--manifest-path",
                    os.path.join(tree, "bench", "hotpath", "Cargo.toml")], check=True, env=env)
    return os.path.join(target_dir, "release", "hotpath")


def knows(binary, config):
    run = subprocess.run([binary, "1", config], capture_output=True, text=True, timeout=60)
    if run.returncode == 2:
        return False
    if run.returncode != 0:
        sys.exit(f"hotpath_compare: {binary} {config} failed: {run.stderr.strip()[-300:]}")
    return True


def refs(binary, hits, config):
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          binary, str(hits), config], capture_output=True, text=True,
                         timeout=300)
    m = re.search(r"refs:\s+([\d,]+)", run.stderr)
    if run.returncode != 0 or not m:
        sys.exit(f"hotpath_compare: callgrind gave no count for {config}: {run.stderr[-300:]}")
    return int(m.group(1).replace(",", ""))


def per_hit(binary, config):
    return (refs(binary, 3000, config) - refs(binary, 1000, config)) // 2000


def compare(rev, configs=CONFIGS):
    """Each configuration's instructions per warm hit at `rev` and in the
    working tree, and their ratio (None where a build does not know it)."""
    commit, home, src = export(rev)
    head = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    log(f"building bench/hotpath of {rev} ({commit[:12]}) and of the working tree "
        f"({head[:12]}{' with changes' if dirty else ''})")
    base_bin = build(src, os.path.join(home, "target"))
    now_bin = build(ROOT, os.path.join(ROOT, "bench", "hotpath", "target"))
    rows = []
    for config in configs:
        row = {"config": config, "base": None, "now": None, "ratio": None}
        for key, binary in (("base", base_bin), ("now", now_bin)):
            if knows(binary, config):
                row[key] = per_hit(binary, config)
        if row["base"] and row["now"]:
            row["ratio"] = round(row["now"] / row["base"], 4)
        rows.append(row)
        log(f"{config}: {row['base']} -> {row['now']}")
    return {"base": rev, "base_commit": commit, "head": head, "dirty": dirty,
            "max_ratio": MAX_RATIO, "rows": rows}


def table(result):
    """The comparison as a markdown table (lines)."""
    rev = result["base"]
    lines = [f"| configuration | {rev} | now | now / {rev} |", "|---|---:|---:|---:|"]
    for r in result["rows"]:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}" + (
            " OVER" if r["ratio"] > result["max_ratio"] else "")
        cells = ["—" if r[k] is None else f"{r[k]:,}" for k in ("base", "now")]
        lines.append(f"| {r['config']} | {cells[0]} | {cells[1]} | {ratio} |")
    return lines


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 2)
    rev, configs = sys.argv[1], sys.argv[2:] or CONFIGS
    result = compare(rev, configs)
    print(f"Instructions per warm hit (callgrind), {rev} ({result['base_commit'][:12]}) against "
          f"the working tree ({result['head'][:12]}{', with changes' if result['dirty'] else ''}):\n")
    print("\n".join(table(result)))
    over = [r["config"] for r in result["rows"]
            if r["ratio"] is not None and r["ratio"] > MAX_RATIO]
    print(f"\n{len(over)} configuration(s) above {MAX_RATIO} x {rev}"
          + (f": {', '.join(over)}" if over else ""))
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    path = os.path.join(ROOT, "results", time.strftime("hotpath-compare-%Y%m%d-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    log(f"written {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
