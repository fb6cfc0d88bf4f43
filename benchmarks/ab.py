"""A/B of ``m.replay`` between the working tree and another revision.

A refactor of the core lands in steps that each keep the replay within noise; this
is how a step is checked. It builds REV in a temporary git worktree, then runs the
same replays in both trees, in alternating subprocesses (so that both see the same
machine load), and prints each case's best time per record and the ratio::

    python benchmarks/ab.py                 # against HEAD (the uncommitted change)
    python benchmarks/ab.py HEAD~3 --cases clock/64,lru/16 --rounds 8

The working tree must be built (``pip install -e .`` or ``python setup.py
build_ext --inplace``). Shared machines are noisy: the minimum over all runs
estimates the cost without interference better than the median, and ratios within
a few percent are layout and noise, not a change.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE = os.path.join(ROOT, "pymmu", "samples", "ls.lackey.xz")
CASES = "clock/8,clock/64,lru/16,fifo/16,opt/16"

# One subprocess: import pymmu from the tree given, replay each case `repeat`
# times on fresh machines, print the best time per record of each, in ns.
_RUN = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import pymmu
from pymmu.traces import read
trace = read(sys.argv[2])
best = {}
for case in sys.argv[3].split(","):
    policy, frames = case.split("/")
    times = []
    for _ in range(int(sys.argv[4])):
        m = pymmu.Machine(int(frames), swap_slots=4096, zero_page=False, policy=policy)
        t0 = time.perf_counter()
        m.replay(trace)
        times.append(time.perf_counter() - t0)
    best[case] = min(times) / len(trace) * 1e9
print(json.dumps(best))
"""


def parse_cases(text: str) -> list[str]:
    """``"clock/8,lru/16"`` -> the cases, each checked as ``policy/frames``."""
    cases = [c.strip() for c in text.split(",") if c.strip()]
    if not cases:
        raise argparse.ArgumentTypeError("no cases given")
    for case in cases:
        policy, _, frames = case.partition("/")
        if not policy or not frames.isdigit() or int(frames) < 1:
            raise argparse.ArgumentTypeError(f"{case!r} is not policy/frames, e.g. clock/64")
    return cases


def measure(tree: str, cases: list[str], repeat: int) -> dict[str, float]:
    """Best ns per record of each case, with pymmu imported from ``tree``."""
    out = subprocess.run([sys.executable, "-c", _RUN, tree, TRACE, ",".join(cases),
                          str(repeat)], capture_output=True, text=True, cwd="/")
    if out.returncode != 0:
        raise SystemExit(f"the replay in {tree} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(trees: dict[str, str], cases: list[str], rounds: int,
            repeat: int) -> dict[str, dict[str, float]]:
    """For each tree name, each case's best time over ``rounds`` alternations."""
    best: dict[str, dict[str, float]] = {name: {} for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            for case, ns in measure(tree, cases, repeat).items():
                best[name][case] = min(ns, best[name].get(case, ns))
    return best


def report(best: dict[str, dict[str, float]], base: str, head: str) -> str:
    """The table: each case's time in both trees and head / base."""
    lines = [f"{'case':<12}{base:>14}{head:>14}{'ratio':>8}"]
    for case, b in best[base].items():
        h = best[head][case]
        lines.append(f"{case:<12}{b:>11.2f} ns{h:>11.2f} ns{h / b:>8.3f}")
    return "\n".join(lines)


def build(rev: str, where: str) -> str:
    """Check ``rev`` out in a worktree under ``where`` and build it in place."""
    tree = os.path.join(where, "tree")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-q", tree, rev],
                   check=True)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                   check=True, stdout=subprocess.DEVNULL)
    return tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", nargs="?", default="HEAD", help="the base revision (HEAD)")
    parser.add_argument("--cases", type=parse_cases, default=parse_cases(CASES),
                        help=f"policy/frames, comma-separated ({CASES})")
    parser.add_argument("--rounds", type=int, default=6, help="alternations (6)")
    parser.add_argument("--repeat", type=int, default=5, help="replays per case per run (5)")
    parser.add_argument("--against-self", action="store_true",
                        help="compare the working tree with itself (no build): the noise")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeat < 1:
        parser.error("--rounds and --repeat must be at least 1")
    if args.against_self:
        best = compare({"tree": ROOT, "again": ROOT}, args.cases, args.rounds, args.repeat)
        print(report(best, "tree", "again"))
        return 0
    with tempfile.TemporaryDirectory() as where:
        try:
            try:
                tree = build(args.rev, where)
            except subprocess.CalledProcessError as e:
                raise SystemExit(f"could not check out and build {args.rev!r}: {e}") from None
            best = compare({args.rev: tree, "working tree": ROOT}, args.cases, args.rounds,
                           args.repeat)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force",
                            os.path.join(where, "tree")], capture_output=True)
    print(report(best, args.rev, "working tree"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
