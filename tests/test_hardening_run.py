"""``m.run`` at the edges (issue 16, items 4 and 5).

* Huge working-set windows: a window longer than the run is the whole run, its
  memory following the references made (the core's working set once doubled
  its size past 2**63, to 0, and looped forever, or raised ``MemoryError``).
  The test of the window that once hung runs in a child process.

Each expected number is worked out from the rules; times are "[start, end)".
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pymmu
import pymmu.reference
from pymmu import Cost, Job, WorkingSet
from pymmu.traces import Trace

PS = 4096
MAX = 2**63 - 1
# Unit costs: every reference 1 ns, nothing else (test_run.py's U), and nothing.
U = Cost(ref=1, tlb_miss=0, minor=0, zero=0, copy=0, major=0,
         disk_read=0, disk_write=0, switch=0)
U0 = dataclasses.replace(U, ref=0)


def T(*records, base=0):
    """A Trace from ``(kind, page)`` tuples, pages counted from ``base``."""
    return Trace([base + page * PS for _, page in records], [k for k, _ in records])


def loads(*pages, base=0):
    return T(*[("L", p) for p in pages], base=base)


def child(code: str, *args, timeout: float = 120):
    """Run ``code`` in a fresh interpreter that imports this pymmu; returns
    its last line of output, parsed as JSON (a crash or a hang fails the test)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(pymmu.__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    try:
        out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child did not finish in {timeout} s")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- item 5: huge windows

def scheduling_jobs():
    # test_run.py's load-control example: A 12 references, Y 4, X 6
    return [Job(loads(0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0), io_every=10, io_ns=5),
            Job(loads(0, 0, 0, 0)), Job(loads(0, 1, 2, 0, 1, 2))]


@pytest.mark.parametrize("window", [13, 10**9, 2**62])
def test_a_window_longer_than_the_run_is_the_whole_run(Machine, window):
    # window 12 (A's references) already sees every job's whole past
    want = Machine(3).run(scheduling_jobs(), quantum=3, cost=U,
                          load_control=WorkingSet(12)).as_dict()
    m = Machine(3)
    got = m.run(scheduling_jobs(), quantum=3, cost=U, load_control=WorkingSet(window))
    assert got.as_dict() == want
    m.check()


WINDOW_CHILD = r"""
import json, sys
import pymmu, pymmu.reference
from pymmu import Cost, Job, WorkingSet
from pymmu.traces import Trace
cls = pymmu.Machine if sys.argv[1] == "core" else pymmu.reference.Machine
U = Cost(ref=1, tlb_miss=0, minor=0, zero=0, copy=0, major=0, disk_read=0,
         disk_write=0, switch=0)
out = []
for window in (12, 2**63 - 1):
    m = cls(3)
    jobs = [Job(Trace([p * 4096 for p in (0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0)]),
                io_every=10, io_ns=5),
            Job(Trace([0, 0, 0, 0])), Job(Trace([p * 4096 for p in (0, 1, 2, 0, 1, 2)]))]
    r = m.run(jobs, quantum=3, cost=U, load_control=WorkingSet(window))
    m.check()
    out.append(r.as_dict())
print(json.dumps(out))
"""


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_the_largest_window_finishes(impl):
    # (the core's working set once doubled its capacity past 2**63, to 0, and
    # looped forever without looking at Ctrl-C: a child process, with a timeout)
    small, largest = child(WINDOW_CHILD, impl, timeout=60)
    assert largest == small
    assert largest["jobs"][2]["suspended_ns"] == 23 - 9


def test_working_set_checks_its_window():
    assert WorkingSet(np.int64(7)).window == 7 and type(WorkingSet(np.int64(7)).window) is int
    assert WorkingSet(MAX).window == MAX
    for bad in (0, -1, -(2**70)):
        with pytest.raises(ValueError, match="WorkingSet.window must be at least 1"):
            WorkingSet(bad)
    for bad in (2**63, 2**64, np.uint64(2**64 - 1)):
        with pytest.raises(ValueError, match=r"WorkingSet.window must be below 2\*\*63 "
                                             r"\(an int64 of references\)"):
            WorkingSet(bad)
    for bad in (True, np.bool_(True), 1.0, float("inf"), "5", None, [5]):
        with pytest.raises(TypeError, match="WorkingSet.window must be an int"):
            WorkingSet(bad)
