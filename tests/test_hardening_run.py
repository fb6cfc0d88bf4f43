"""``m.run`` and ``m.replay`` at the edges (issue 16, items 4 and 5).

* Time past the int64 clock: a run whose instant (a reference's CPU time, a
  switch, a disk operation, an I/O burst, a suspension's disk write) would pass
  2**63 - 1 ns raises ``OverflowError`` in both implementations, at the same
  point, with the same message, ``.index``, ``.pid`` and ``.job``; the machine
  stays consistent and the run's fresh processes exit (docs/semantics.md
  section 11, rule 12). An instant of exactly 2**63 - 1 is fine.
* Huge working-set windows: a window longer than the run is the whole run, its
  memory following the references made (the core's working set once doubled
  its size past 2**63, to 0, and looped forever, or raised ``MemoryError``).
* Ctrl-C: a long replay or run on the main thread stops with
  ``KeyboardInterrupt`` within a second or so, the machine consistent. Those
  tests, and the one of the window that once hung, run in a child process.

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
from pymmu.run import OVERFLOW_WHAT
from pymmu.traces import Trace

PS = 4096
MAX = 2**63 - 1
# Unit costs: every reference 1 ns, nothing else (test_run.py's U), and nothing.
U = Cost(ref=1, tlb_miss=0, minor=0, zero=0, copy=0, major=0,
         disk_read=0, disk_write=0, switch=0)
U0 = dataclasses.replace(U, ref=0)
CPU, SWITCH, DISK, IO, SUSPEND = OVERFLOW_WHAT


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
        # (cwd: not the source tree, which CI does not build: it installs pymmu)
        out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                             cwd="/", capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child did not finish in {timeout} s")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- item 4: the int64 clock

def overflow(m, jobs, **kw):
    """Run ``jobs``, which must overflow; the error and the counters then,
    once the machine is checked (consistent, its fresh processes exited) and
    has run another job."""
    given = [j.process for j in jobs if j.process is not None]
    with pytest.raises(OverflowError, match=r"^m\.run: simulated time would pass "
                                            r"2\*\*63 - 1 ns") as e:
        m.run(jobs, **kw)
    m.check()
    stats = m.stats
    assert m.processes() == given and all(p.state == "running" for p in given)
    r = m.run([Job(loads(0, 1))], cost=U)          # still usable, its clock from 0
    assert r.elapsed_ns == 2
    m.check()
    return e.value, stats


def test_a_references_cpu_time_past_int64_raises(Machine):
    # A: [0, 2**62) its first load; its second would end at 2**63: record 1.
    # Its record completed (reads 2) before its time was counted.
    m = Machine(4)
    e, stats = overflow(m, [Job(loads(0, 1, 2)), Job(loads(0, 1, 2))],
                        cost=dataclasses.replace(U, ref=2**62))
    assert (e.index, e.pid, e.job) == (1, 1, 0)
    assert str(e) == ("m.run: simulated time would pass 2**63 - 1 ns (the int64 clock) "
                      f"with {CPU} (job 0, pid 1, trace record 1): use smaller costs "
                      "or I/O times")
    assert stats["reads"] == 2


def test_the_sum_of_a_references_costs_past_int64_raises(Machine):
    # the first reference misses the TLB: 1 + (2**63 - 1), in a given process
    m = Machine(4)
    p = m.spawn()
    base = p.mmap(4 * PS)
    e, _ = overflow(m, [Job(loads(0, base=base), process=p)],
                    cost=dataclasses.replace(U, tlb_miss=MAX))
    assert (e.index, e.pid, e.job) == (0, p.pid, 0)
    assert CPU in str(e)


def test_a_switch_past_int64_raises(Machine):
    # A [0,1) ends; B's switch would end at 1 + 2**63 - 1: job 1, its record 0
    m = Machine(4)
    e, _ = overflow(m, [Job(loads(0)), Job(loads(0))],
                    cost=dataclasses.replace(U, switch=MAX))
    assert (e.index, e.pid, e.job) == (0, 2, 1)
    assert SWITCH in str(e)


def test_a_disk_operation_past_int64_raises(Machine):
    # frames=1. S0 [0,1) from the pool; S1 [1,2) evicts page 0: write
    # [2, 2 + 2**62); S2 [2 + 2**62, 3 + 2**62) evicts page 1: its write would
    # end at 3 + 2**63: record 2. Both evictions happened.
    m = Machine(1, swap_slots=8)
    e, stats = overflow(m, [Job(T(("S", 0), ("S", 1), ("S", 2)))],
                        cost=dataclasses.replace(U, disk_write=2**62))
    assert (e.index, e.pid, e.job) == (2, 1, 0)
    assert DISK in str(e)
    assert (stats["swap_outs"], stats["writes"]) == (2, 3)


def test_an_io_burst_past_int64_raises(Machine):
    # L0 [0,1), burst [1, 1 + 2**62); L1 [1 + 2**62, 2 + 2**62): its burst
    # would end at 2 + 2**63: record 1
    m = Machine(4)
    e, _ = overflow(m, [Job(loads(0, 1, 2), io_every=1, io_ns=2**62)], cost=U)
    assert (e.index, e.pid, e.job) == (1, 1, 0)
    assert IO in str(e)


def test_a_suspensions_disk_write_past_int64_raises(Machine):
    # frames=4, quantum 3. [0,3) A loads 0 1 2 (zero page: no frame, ws 3).
    # [3,6) B stores 0 1 2 (three frames from the pool, ws 3). At 6: 3 + 3 > 4:
    # B (admitted last) is suspended: page 0 evicted, write [6, 6 + 2**62);
    # page 1 evicted, its write would end at 6 + 2**63: no record (None).
    m = Machine(4, swap_slots=8)
    a = Job(loads(0, 1, 2, 0))
    b = Job(T(("S", 0), ("S", 1), ("S", 2), ("L", 0)))
    e, stats = overflow(m, [a, b], quantum=3, cost=dataclasses.replace(U, disk_write=2**62),
                        load_control=WorkingSet(8))
    assert (e.index, e.pid, e.job) == (None, 2, 1)
    assert str(e).endswith(f"with {SUSPEND} (job 1, pid 2): use smaller costs or I/O times")
    assert (stats["evictions"], stats["swap_outs"]) == (2, 2)


def test_instants_of_exactly_2_63_minus_1_are_fine(Machine):
    m = Machine(1, swap_slots=8)
    r = m.run([Job(loads(0))], cost=Cost(ref=MAX, tlb_miss=0, minor=0, zero=0, copy=0,
                                         major=0, disk_read=0, disk_write=0, switch=0))
    assert (r.elapsed_ns, r.cpu_ns, r.utilization) == (MAX, MAX, 1.0)
    # a wake-up at 2**63 - 1 (the core once took it for "no event to come" and
    # raised SystemError): L0 [0,0), burst [0, MAX), L1 [MAX, MAX)
    r = m.run([Job(loads(0, 1), io_every=1, io_ns=MAX)], cost=U0)
    assert r.jobs[["references", "io_ns", "end_ns"]].tolist() == [(2, MAX, MAX)]
    # a job that ends when its last write completes at 2**63 - 1: S0 from the
    # pool, S1 evicts page 0 (write [0, MAX)); the job ends then
    r = m.run([Job(T(("S", 0), ("S", 1)))], cost=dataclasses.replace(U0, disk_write=MAX))
    assert (r.elapsed_ns, r.disk_busy_ns) == (MAX, MAX)
    assert r.jobs[["disk_wait_ns", "end_ns"]].tolist() == [(MAX, MAX)]
    m.check()


@pytest.mark.parametrize("case", range(6))
def test_both_implementations_stop_at_the_same_point(case):
    # Under pressure (three jobs, three frames, swap, COW through a forked
    # given process): the same error and the same machine afterwards.
    big = 2**61 + 12345
    costs = [dataclasses.replace(U, major=big), dataclasses.replace(U, disk_read=big),
             dataclasses.replace(U, disk_write=big), dataclasses.replace(U, copy=big),
             dataclasses.replace(U, zero=big), dataclasses.replace(U, switch=big)]
    seen = []
    for cls in (pymmu.Machine, pymmu.reference.Machine):
        m = cls(3, swap_slots=32, zero_page=False)
        parent = m.spawn()
        base = parent.mmap(8 * PS)
        for i in range(8):
            parent.write(base + i * PS, bytes([i + 1]) * 100)
        kid = parent.fork()
        jobs = [Job(T(*[("S", i % 6) for i in range(12)], base=base), process=kid),
                Job(T(*[("L", i % 5) for i in range(12)]), io_every=4, io_ns=big // 3),
                Job(T(*[("M", (3 * i) % 7) for i in range(12)]))]
        try:
            r = m.run(jobs, quantum=2, cost=costs[case], load_control=WorkingSet(4))
            got = ("result", r.as_dict())
        except OverflowError as e:
            got = ("raises", str(e), e.index, e.pid, e.job)
        m.check()
        seen.append((got, m.stats, [(p.pid, p.state) for p in m.processes()],
                     kid.page_table().tolist(), m.swap_free))
    assert seen[0] == seen[1]


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


# ----------------------------------------------------------------- Ctrl-C in the long loops

INTERRUPT_CHILD = r"""
import json, os, signal, sys, threading, time
import pymmu
import pymmu.reference
from pymmu.traces import Trace
signal.signal(signal.SIGINT, signal.default_int_handler)   # (even if ignored by our parent)
what = sys.argv[1]
m = pymmu.Machine(64)
p = m.spawn()
base = p.mmap(1 << 20)
# 2,000 reads of 4 GiB each: 2**31 page references, over a minute at full speed
n = 2000
big = Trace([0] * n, kind="L" * n, size=[2**32 - 1] * n)
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
t0 = time.monotonic()
try:
    if what == "replay":
        m.replay(big)
    else:
        m.run([pymmu.Job(big), pymmu.Job(Trace([base], kind="S"), process=p)])
    out = "finished"
except KeyboardInterrupt:
    out = "interrupted"
took = time.monotonic() - t0
m.check()
left = [(q.pid, q.state) for q in m.processes()]
reads = m.stats["reads"]
after = m.replay(Trace([0, 4096], kind="LS"))      # the machine goes on
m.check()
print(json.dumps(dict(out=out, took=took, left=left, reads=reads,
                      after=[after["reads"], after["writes"]])))
"""


@pytest.mark.parametrize("what", ["replay", "run"])
def test_ctrl_c_stops_a_long_replay_or_run(what):
    got = child(INTERRUPT_CHILD, what, timeout=60)
    assert got["out"] == "interrupted"
    assert got["took"] < 0.5 + 5            # about a record of 2**20 pages after it
    assert got["left"] == [[1, "running"]]  # the given process; the fresh one exited
    assert got["reads"] < 2000 + (what == "run")
    assert got["after"] == [1, 1]
