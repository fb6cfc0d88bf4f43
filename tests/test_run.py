"""Many processes in time: ``m.run`` (DESIGN.md section 12, docs/semantics.md
"Many processes in time").

Every expected number here is worked out by hand from the rules; the
arithmetic is in the comments, written as "[start, end)" intervals of
simulated nanoseconds. Never from running pymmu. Most tests use round costs
(``C``: ref 1, minor 10, zero 100, major 20, disk write 500, read 1000, switch
5, no TLB cost) or unit costs (``U``: every reference 1 ns, nothing else), so
that a reference costs 1 (a hit), 11 (a minor fault served without zeroing),
111 (a zero fill of a frame that was not pre-zeroed) or 21 (a swap-in).

Each test runs on every implementation in ``IMPLS`` (the ``impl`` fixture).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import pymmu
import pymmu.reference
from pymmu import Cost, Job, RunResult, WorkingSet
from pymmu.events import KINDS
from pymmu.run import JOBS_DTYPE
from pymmu.traces import Trace

# Add "core" once pymmu.Machine.run exists: every test then runs on both.
IMPLS = ["reference", "core"]

PS = 4096
C = Cost(ref=1, tlb_miss=0, minor=10, zero=100, copy=1000, major=20,
         disk_read=1000, disk_write=500, switch=5)
U = Cost(ref=1, tlb_miss=0, minor=0, zero=0, copy=0, major=0,
         disk_read=0, disk_write=0, switch=0)
FIELDS = ("pid", "references", "minor_faults", "major_faults", "cpu_ns", "disk_wait_ns",
          "io_ns", "ready_ns", "suspended_ns", "end_ns", "faulted")


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


def make_machine(impl, *args, **kw):
    """A machine of implementation ``impl`` ("reference" or "core")."""
    cls = pymmu.reference.Machine if impl == "reference" else pymmu.Machine
    return cls(*args, **kw)


def T(*records, base=0):
    """A Trace from ``(kind, page)`` or ``(kind, addr, size)`` tuples; pages are
    counted from ``base``."""
    addr, kind, size = [], [], []
    for r in records:
        if len(r) == 2:
            addr.append(base + r[1] * PS)
            size.append(1)
        else:
            addr.append(r[1])
            size.append(r[2])
        kind.append(r[0])
    return Trace(addr, kind, size)


def loads(*pages, base=0):
    return T(*[("L", p) for p in pages], base=base)


def rows(r):
    """The job rows as dicts of the fields that are not zero (and always
    pid and end_ns), so that a test lists only what it computed."""
    out = []
    for row in r.jobs.tolist():
        d = dict(zip(FIELDS, row))
        out.append({k: v for k, v in d.items() if v or k in ("pid", "end_ns")})
    return out


def check_partition(r):
    """Each instant of a job's life is in exactly one state."""
    j = r.jobs
    total = j["cpu_ns"] + j["disk_wait_ns"] + j["io_ns"] + j["ready_ns"] + j["suspended_ns"]
    assert total.tolist() == j["end_ns"].tolist()
    assert r.cpu_ns == int(j["cpu_ns"].sum())
    assert r.elapsed_ns == int(j["end_ns"].max())


def events(log):
    return [(int(e["t_ns"]), KINDS[e["kind"]], int(e["pid"]), int(e["vaddr"]))
            for e in log.array]


# ---------------------------------------------------------------- rule 9: the worked example

def test_worked_example(impl):
    # DESIGN.md section 12 rule 9, as written there:
    # A: t=0 store a0: pool zero fill, 1+10 -> 11. t=11 store a1: evicts a0
    #    (dirty: a write), zero-fills the reused frame, 1+10+100 -> 122; write
    #    [122,622); A blocks.
    # B: dispatched at 122, switch 5 -> 127; load b0 (zero_page=False: a zero
    #    fill) evicts a1 (write) 1+10+100 -> 238; its write waits: [622,1122).
    # A wakes at 622, dispatched (switch) -> 627; load a0 evicts b0 (write
    #    [1122,1622)) and swaps a0 in (1+20 -> 648, read [1622,2622)).
    # B ends at 1122, A at 2622.
    m = make_machine(impl, 1, swap_slots=8, zero_page=False)
    a = Job(T(("S", 0), ("S", 1), ("L", 0)))
    b = Job(T(("L", 0)))
    r = m.run([a, b], cost=C)
    assert (r.elapsed_ns, r.cpu_ns, r.disk_busy_ns, r.switches) == (2622, 264, 2500, 2)
    assert r.utilization == 264 / 2622
    assert rows(r) == [
        # cpu 11+111+5+21 = 148; disk wait [122,622) + [648,2622) = 500+1974
        dict(pid=1, references=3, minor_faults=2, major_faults=1, cpu_ns=148,
             disk_wait_ns=2474, end_ns=2622),
        # ready [0,122); cpu 5+111 = 116; disk wait [238,1122) = 884
        dict(pid=2, references=1, minor_faults=1, cpu_ns=116, disk_wait_ns=884,
             ready_ns=122, end_ns=1122),
    ]
    check_partition(r)
    s = r.stats
    assert set(s) == set(m.stats)
    assert (s["evictions"], s["swap_outs"], s["swap_ins"], s["zero_fills"],
            s["zero_pool_hits"], s["writes"], s["reads"]) == (3, 3, 1, 3, 1, 2, 2)
    assert m.processes() == []          # both fresh processes exited


def test_events_carry_the_reference_start(impl):
    # DESIGN.md section 11: t_ns is the simulated time inside m.run (the instant
    # the reference starts, see the worked example's times), 0 elsewhere.
    m = make_machine(impl, 1, swap_slots=8, zero_page=False)
    a = Job(T(("S", 0), ("S", 1), ("L", 0)))
    b = Job(T(("L", 0)))
    with m.events() as log:
        m.run([a, b], cost=C)
        p = m.spawn()
        base = p.mmap(PS)
        p.write(base, b"x")                 # outside run: t_ns 0
    assert events(log) == [
        (0, "zero_fills", 1, 0),            # A's store a0 starts at 0
        (11, "evictions", 1, 0),            # A's store a1 starts at 11
        (11, "swap_outs", 1, 0),
        (11, "zero_fills", 1, PS),
        (127, "evictions", 1, PS),          # B's load starts after its switch
        (127, "swap_outs", 1, PS),
        (127, "zero_fills", 2, 0),
        (627, "evictions", 2, 0),           # A's load a0, after its switch
        (627, "swap_outs", 2, 0),
        (627, "swap_ins", 1, 0),
        # p's write after the run (A's exit freed a frame)
        (0, "zero_fills", p.pid, base),
    ]


# ---------------------------------------------------------------- rules 1 and 4: the disk

def test_disk_is_fifo_behind_other_jobs_writes(impl):
    # frames=1: each job's store evicts the previous job's page (a write).
    # A: [0,11) store a0 (pool); [11,122) store a1 evicts a0, write [122,622);
    #    A's last record: it ends at 622 (its disk wait included).
    # B: switch [122,127); store b0 evicts a1 [127,238); its write waits for
    #    A's: [622,1122); B ends at 1122.
    # C: switch [238,243); store c0 evicts b0 [243,354); write [1122,1622).
    # A's exit at 622 frees a1's slot while the write of a1 (queued by B) is
    # still to run: queued operations are never cancelled (rule 4).
    m = make_machine(impl, 1, swap_slots=8, zero_page=False)
    jobs = [Job(T(("S", 0), ("S", 1))), Job(T(("S", 0))), Job(T(("S", 0)))]
    r = m.run(jobs, cost=C)
    assert rows(r) == [
        dict(pid=1, references=2, minor_faults=2, cpu_ns=122, disk_wait_ns=500,
             end_ns=622),
        dict(pid=2, references=1, minor_faults=1, cpu_ns=116, disk_wait_ns=884,
             ready_ns=122, end_ns=1122),
        dict(pid=3, references=1, minor_faults=1, cpu_ns=116, disk_wait_ns=1268,
             ready_ns=238, end_ns=1622),
    ]
    assert (r.elapsed_ns, r.cpu_ns, r.disk_busy_ns, r.switches) == (1622, 354, 1500, 2)
    check_partition(r)


# ---------------------------------------------------------------- rules 2, 6 and 7: the CPU

def test_switch_cost_goes_to_the_job_switched_into(impl):
    # quantum 1, unit references, switch 5; the first dispatch is free.
    # [0,1) A1; queue [B] -> A to the tail. [1,6) switch, [6,7) B1; -> tail.
    # [7,12) switch, [12,13) A2: A ends at 13. [13,18) switch, [18,19) B2: ends 19.
    m = make_machine(impl, 4)
    cost = dataclasses.replace(U, switch=5)
    r = m.run([Job(loads(0, 1)), Job(loads(0, 1))], quantum=1, cost=cost)
    assert rows(r) == [
        dict(pid=1, references=2, minor_faults=2, cpu_ns=1 + 5 + 1, ready_ns=7 - 1,
             end_ns=13),
        dict(pid=2, references=2, minor_faults=2, cpu_ns=5 + 1 + 5 + 1,
             ready_ns=1 + (13 - 7), end_ns=19),
    ]
    assert (r.elapsed_ns, r.cpu_ns, r.switches, r.utilization) == (19, 19, 3, 1.0)
    check_partition(r)


def test_quantum_expiry_with_an_empty_queue_goes_on(impl):
    # One job, quantum 1: its quantum expires after every reference, the queue
    # is always empty: no switch, no gap.
    m = make_machine(impl, 4)
    r = m.run([Job(loads(0, 1, 2, 3, 4))], quantum=1, cost=dataclasses.replace(U, switch=5))
    assert rows(r) == [dict(pid=1, references=5, minor_faults=5, cpu_ns=5, end_ns=5)]
    assert r.switches == 0


def test_wakeups_join_in_pid_order_before_the_expired_process(impl):
    # Given processes whose pids run against job order: A has pid 2, B pid 1.
    # Unit references (loads of the zero page), switch 0, quantum 2.
    # [0,1) A1, I/O burst [1,4). [1,2) B1, burst [2,4). [2,4) C1 C2: C's quantum
    # expires at 4, when A and B wake: they join in pid order (B, A) before C.
    # [4,5) B2: B ends at 5 (no burst after its last reference); [5,6) A2: ends 6.
    # [6,10) C3..C6: its quantum expires at 8 with an empty queue: it goes on.
    # Each device is private: A's and B's bursts overlap and do not queue.
    m = make_machine(impl, 4)
    p1, p2, p3 = m.spawn(), m.spawn(), m.spawn()
    base = {p.pid: p.mmap(16 * PS) for p in (p1, p2, p3)}
    jobs = [Job(loads(0, 1, base=base[2]), process=p2, io_every=1, io_ns=3),
            Job(loads(0, 1, base=base[1]), process=p1, io_every=1, io_ns=2),
            Job(loads(0, 1, 2, 3, 4, 5, base=base[3]), process=p3)]
    r = m.run(jobs, quantum=2, cost=U)
    assert rows(r) == [
        dict(pid=2, references=2, minor_faults=2, cpu_ns=2, io_ns=3, ready_ns=5 - 4,
             end_ns=6),
        dict(pid=1, references=2, minor_faults=2, cpu_ns=2, io_ns=2, ready_ns=1 - 0,
             end_ns=5),
        dict(pid=3, references=6, minor_faults=6, cpu_ns=6, ready_ns=2 + (6 - 4),
             end_ns=10),
    ]
    # Dispatches of another process: B@1, C@2, B@4, A@5, C@6, each counted
    # although switch costs 0.
    assert (r.elapsed_ns, r.cpu_ns, r.switches) == (10, 10, 5)
    assert [p.state for p in (p1, p2, p3)] == ["running"] * 3   # given: not exited
    check_partition(r)


# ---------------------------------------------------------------- rules 2 and 5: I/O bursts

def test_io_bursts_between_the_pages_of_a_record(impl):
    # io_every=2, io_ns=50; each reference maps the zero page: 1+10 = 11.
    # The second record spans pages 1 and 2: two references, and the burst
    # after the 2nd reference falls between them (rule 2).
    # [0,11) p0, [11,22) p1, burst [22,72), [72,83) p2, [83,94) p3: the 4th
    # reference is the last one: no burst after it.
    m = make_machine(impl, 4)
    t = T(("L", 0), ("L", 2 * PS - 1, 2), ("L", 3))
    r = m.run([Job(t, io_every=2, io_ns=50)], cost=C)
    assert rows(r) == [dict(pid=1, references=4, minor_faults=4, cpu_ns=44, io_ns=50,
                            end_ns=94)]
    assert r.stats["reads"] == 3 and r.stats["zero_page_maps"] == 4


def test_io_burst_starts_after_the_disk_wait(impl):
    # frames=1. [0,11) s0; [11,122) s1 evicts p0: write [122,622), then the
    # burst (2nd reference) [622,672); [672,783) s2 evicts p1: write
    # [783,1283); the job ends at 1283.
    m = make_machine(impl, 1, swap_slots=8, zero_page=False)
    r = m.run([Job(T(("S", 0), ("S", 1), ("S", 2)), io_every=2, io_ns=50)], cost=C)
    assert rows(r) == [dict(pid=1, references=3, minor_faults=3, cpu_ns=233,
                            disk_wait_ns=1000, io_ns=50, end_ns=1283)]
    assert r.disk_busy_ns == 1000


def test_a_zero_ns_burst_still_gives_up_the_cpu(impl):
    # io_every=1, io_ns=0: A blocks after its first reference and wakes at once,
    # behind B. [0,1) A1; [1,6) switch, [6,8) B1 B2 (B ends 8); [8,13) switch,
    # [13,14) A2.
    m = make_machine(impl, 4)
    r = m.run([Job(loads(0, 1), io_every=1, io_ns=0), Job(loads(0, 1))],
              cost=dataclasses.replace(U, switch=5))
    assert rows(r) == [
        dict(pid=1, references=2, minor_faults=2, cpu_ns=7, ready_ns=8 - 1, end_ns=14),
        dict(pid=2, references=2, minor_faults=2, cpu_ns=7, ready_ns=1, end_ns=8),
    ]
    assert r.switches == 2


def test_a_page_whose_read_is_in_flight_may_be_evicted(impl):
    # frames=1; A has a 100 ns burst after each reference but its last.
    # [0,11) A s0 (pool); burst [11,111). [11,16) switch, [16,127) B s0 evicts
    # a0 (write [127,627)); B blocks. A woke at 111 (ready until 127):
    # [127,132) switch, [132,153) A l0 evicts b0 (write [627,1127)) and swaps a0
    # in (read [1127,2127)); A waits, then bursts [2127,2227). B wakes at 627: [627,632)
    # switch, [632,653) B l0 evicts a0, resident although its read is still in
    # flight: clean in the swap cache, dropped with no write (section 4 rule 6);
    # b0's read [2127,3127); B ends at 3127. [2227,2232) switch, [2232,2253) A
    # l0 again (b0, clean, dropped): read [3127,4127), A ends at 4127.
    m = make_machine(impl, 1, swap_slots=8, zero_page=False)
    a = Job(T(("S", 0), ("L", 0), ("L", 0)), io_every=1, io_ns=100)
    b = Job(T(("S", 0), ("L", 0)))
    r = m.run([a, b], cost=C)
    assert rows(r) == [
        dict(pid=1, references=3, minor_faults=1, major_faults=2, cpu_ns=11 + 5 + 21 + 5 + 21,
             disk_wait_ns=(2127 - 153) + (4127 - 2253), io_ns=200, ready_ns=127 - 111,
             end_ns=4127),
        dict(pid=2, references=2, minor_faults=1, major_faults=1, cpu_ns=5 + 111 + 5 + 21,
             disk_wait_ns=(627 - 127) + (3127 - 653), ready_ns=11, end_ns=3127),
    ]
    assert (r.disk_busy_ns, r.switches) == (500 + 500 + 1000 + 1000 + 1000, 4)
    s = r.stats
    assert (s["evictions"], s["swap_outs"], s["swap_ins"]) == (4, 2, 3)
    check_partition(r)


# ---------------------------------------------------------------- rule 8: ends, exits, faults

@pytest.mark.parametrize("n_loads, store_at", [(485, 622), (484, 621)])
def test_an_exit_comes_before_a_reference_at_its_instant(impl, n_loads, store_at):
    # frames=1. A: [0,11) s0 (pool); [11,122) s1 evicts a0: write [122,622);
    # A ends at 622 and its fresh process exits then, freeing a1's frame.
    # B: switch [122,127); l0 maps the zero page [127,138); n-1 more loads of
    # it at 1 each; its store starts at 138 + n - 1.
    # At 622 the exit comes first: the store takes the freed frame (111, no
    # eviction), B ends at 733. At 621 A still holds the frame: the store
    # evicts a1 (its write [732,1232), although A's exit at 622 frees that
    # slot), B ends at 1232.
    m = make_machine(impl, 1, swap_slots=8)
    a = Job(T(("S", 0), ("S", 1)))
    b = Job(T(*[("L", 0)] * n_loads, ("S", 1)))
    r = m.run([a, b], cost=C)
    assert 138 + n_loads - 1 == store_at
    cpu_b = 5 + 11 + (n_loads - 1) + 111
    assert rows(r)[0] == dict(pid=1, references=2, minor_faults=2, cpu_ns=122,
                              disk_wait_ns=500, end_ns=622)
    if store_at == 622:
        assert rows(r)[1] == dict(pid=2, references=n_loads + 1, minor_faults=2,
                                  cpu_ns=cpu_b, ready_ns=122, end_ns=733)
        assert (r.stats["evictions"], r.disk_busy_ns) == (1, 500)
    else:
        assert rows(r)[1] == dict(pid=2, references=n_loads + 1, minor_faults=2,
                                  cpu_ns=cpu_b, disk_wait_ns=500, ready_ns=122,
                                  end_ns=1232)
        assert (r.stats["evictions"], r.disk_busy_ns) == (2, 1000)
    check_partition(r)
    assert m.swap_free == 8 and m.frames_free == 1


def test_a_job_with_no_records_ends_at_zero(impl):
    # The empty job ends at 0 and is never dispatched: B's dispatch is the
    # first one (free). [0,11) B's load.
    m = make_machine(impl, 4)
    r = m.run([Job(Trace([])), Job(loads(0))], cost=C)
    assert rows(r) == [dict(pid=1, end_ns=0),
                       dict(pid=2, references=1, minor_faults=1, cpu_ns=11, end_ns=11)]
    assert r.switches == 0


def test_a_memory_fault_kills_the_job_and_the_others_go_on(impl):
    # A runs in a forked child (pid 2); its second record is at address 0,
    # which no mapping covers. [0,11) A's first load; at 11 the faulting record
    # costs nothing and kills A (exit status 139). [11,16) switch, [16,38) B.
    m = make_machine(impl, 4)
    parent = m.spawn()
    base = parent.mmap(4 * PS)
    child = parent.fork()
    a = Job(T(("L", base, 1), ("L", 0, 1), ("L", base + PS, 1)), process=child)
    with m.events() as log:
        r = m.run([a, Job(loads(0, 1))], cost=C)
    assert rows(r) == [
        dict(pid=child.pid, references=1, minor_faults=1, cpu_ns=11, end_ns=11,
             faulted=True),
        dict(pid=3, references=2, minor_faults=2, cpu_ns=5 + 22, ready_ns=11, end_ns=38),
    ]
    assert child.state == "zombie" and parent.wait(child) == 139
    assert (11, "segv", child.pid, 0) in events(log)
    assert r.stats["reads"] == 3
    check_partition(r)


def test_a_killed_fresh_process_exits_and_was_the_last_dispatched(impl):
    # A's first record is beyond the address space: killed at 0, its fresh
    # process exits. A was dispatched, so dispatching B is a switch: [0,5),
    # then [5,27).
    m = make_machine(impl, 4)
    r = m.run([Job(T(("L", 1 << 48, 1))), Job(loads(0, 1))], cost=C)
    assert rows(r) == [dict(pid=1, end_ns=0, faulted=True),
                       dict(pid=2, references=2, minor_faults=2, cpu_ns=27, end_ns=27)]
    assert r.switches == 1
    assert m.processes() == []


def test_out_of_memory_stops_the_run(impl):
    # frames=1, no swap. A (a given process) stores to its page [0,11), then
    # an I/O burst [11,1011). B: switch [11,16), load (zero page) [16,27); its
    # store at 27 needs a frame and A's cannot be evicted: OutOfMemory, its
    # record index 1, B's pid. B's fresh process exits; A's process stays.
    m = make_machine(impl, 1)
    p = m.spawn()
    base = p.mmap(4 * PS)
    a = Job(T(("S", 0), ("L", 0), base=base), process=p, io_every=1, io_ns=1000)
    b = Job(T(("L", 1), ("S", 2)))
    with m.events() as log:
        with pytest.raises(pymmu.OutOfMemory) as e:
            m.run([a, b], cost=C)
    assert (e.value.pid, e.value.index) == (2, 1)
    assert m.processes() == [p] and p.state == "running"
    assert (27, "oom", 2, 2 * PS) in events(log)
    m.check()


# ---------------------------------------------------------------- rule 8: refused calls

def test_opt_is_refused(impl):
    m = make_machine(impl, 4, policy="opt")
    with pytest.raises(ValueError, match="opt"):
        m.run([Job(loads(0))])
    assert m.processes() == []


def test_bad_jobs_are_refused_before_anything_changes(impl):
    m = make_machine(impl, 4)
    other = make_machine(impl, 4)
    t = loads(0)
    p = m.spawn()
    p.mmap(PS)
    gone = m.spawn()
    gone.exit()
    parent = m.spawn()
    parent.mmap(PS)
    parent.vfork()                      # the parent is suspended
    stranger = other.spawn()
    before = (m.stats, [q.pid for q in m.processes()], m.frames_free)
    value_errors = [
        [],                                              # no jobs
        [Job(t, process=stranger)],                      # another machine's process
        [Job(t, process=gone)],                          # exited
        [Job(t, process=parent)],                        # suspended (vfork parent)
        [Job(t, process=p), Job(t), Job(t, process=p)],  # the same process twice
    ]
    for jobs in value_errors:
        with pytest.raises(ValueError):
            m.run(jobs)
    for kw in (dict(quantum=0), dict(quantum=-3)):
        with pytest.raises(ValueError, match="quantum"):
            m.run([Job(t)], **kw)
    type_errors = [
        (Job(t), {}),                                    # not a list of jobs
        (["trace.txt"], {}),
        ([Job(t)], dict(quantum=1.5)),
        ([Job(t)], dict(cost="cheap")),
        ([Job(t)], dict(load_control=64)),
        ([Job(t), Job([t, "not a trace"])], {}),         # an item of an iterable
    ]
    for jobs, kw in type_errors:
        with pytest.raises(TypeError):
            m.run(jobs, **kw)
    assert (m.stats, [q.pid for q in m.processes()], m.frames_free) == before


def test_a_bare_trace_and_an_iterable_of_traces_are_jobs(impl):
    # A bare Trace stands for Job(trace); an iterable of Traces runs as their
    # concatenation. Both: loads of pages 0 and 1, 11 each.
    m = make_machine(impl, 4)
    r = m.run([loads(0, 1), Job(iter([loads(0), loads(1)]))], cost=C)
    assert r.jobs["references"].tolist() == [2, 2]
    assert r.jobs["end_ns"].tolist() == [22, 22 + 5 + 22]


# ---------------------------------------------------------------- rule 11

def _sample(name="sort", lo=50_000, n=6_000):
    from pymmu import traces

    chunk = next(iter(traces.stream(traces.sample(name), chunk=lo + n)))
    return chunk[lo:lo + n]


def test_one_job_gives_the_counters_of_replay(impl):
    # Rule 11 (switch=0, no I/O), here with default costs and a small quantum
    # (which then changes nothing: the queue is always empty). One job waits
    # for each of its disk operations, so the disk is idle whenever it queues
    # one: elapsed = CPU time (rule 3) + disk time (rule 4), from the counters.
    t = _sample()
    kw = dict(swap_slots=256, zero_page=False)
    s = make_machine(impl, 4, **kw).replay(t)
    m = make_machine(impl, 4, **kw)
    cost = Cost(switch=0)
    r = m.run([Job(t)], quantum=7, cost=cost)
    assert r.stats == s
    assert s["evictions"] > 20 and s["swap_ins"] > 10         # under pressure
    first = t.addr >> 12
    last = (t.addr + t.size.astype(np.uint64) - 1) >> 12
    refs = int((last - first + 1).sum())
    cpu = (cost.ref * refs + cost.tlb_miss * s["tlb_misses"]
           + cost.minor * s["minor_faults"]
           + cost.zero * (s["zero_fills"] - s["zero_pool_hits"])
           + cost.copy * s["cow_copies"] + cost.major * s["major_faults"])
    disk = cost.disk_write * s["swap_outs"] + cost.disk_read * (s["swap_ins"]
                                                                + s["file_reads"])
    assert rows(r) == [dict(pid=1, references=refs, minor_faults=s["minor_faults"],
                            major_faults=s["major_faults"], cpu_ns=cpu,
                            disk_wait_ns=disk, end_ns=cpu + disk)]
    assert (r.switches, r.disk_busy_ns) == (0, disk)


# ---------------------------------------------------------------- rule 10: load control

def test_load_control_suspends_the_last_admitted_and_resumes_in_order(impl):
    # frames=3, window=3, quantum 3, unit references to the zero page (no
    # frame used: pure scheduling). Jobs A, Y, X (pids 1, 2, 3).
    # [0,3) A: 0 0 0 (ws 1) -> tail. [3,6) Y: 0 0 0 (ws 1) -> tail.
    # [6,9) X: 0 1 2 (ws 3) -> tail. At 9: 1+1+3 = 5 > 3: suspend X (admitted
    # last) -> 2. [9,12) A: 1 2 0 (ws 3) -> tail behind Y. At 12: resume X?
    # 3+4 > 3, no. Suspend Y (admitted after A): 3. [12,16) A: 0 0 0 (its
    # quantum expires at 15 with an empty queue) and 0, its 10th reference:
    # burst [16,21). At 16 (idle) and 21: A's ws is 1; X, suspended first, does
    # not fit (3+1 > 3), so Y (1+1 would fit) stays suspended too. [21,23) A
    # ends. At 23 nothing is active: X resumes; Y (1+3 > 3) does not.
    # [23,26) X ends. At 26: Y resumes, [26,27) ends.
    m = make_machine(impl, 3)
    a = Job(loads(0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0), io_every=10, io_ns=5)
    y = Job(loads(0, 0, 0, 0))
    x = Job(loads(0, 1, 2, 0, 1, 2))
    r = m.run([a, y, x], quantum=3, cost=U, load_control=WorkingSet(3))
    assert rows(r) == [
        dict(pid=1, references=12, minor_faults=3, cpu_ns=12, io_ns=5, ready_ns=9 - 3,
             end_ns=23),
        dict(pid=2, references=4, minor_faults=1, cpu_ns=4, ready_ns=3 + (12 - 6),
             suspended_ns=26 - 12, end_ns=27),
        dict(pid=3, references=6, minor_faults=3, cpu_ns=6, ready_ns=6,
             suspended_ns=23 - 9, end_ns=26),
    ]
    assert (r.elapsed_ns, r.switches) == (27, 5)   # Y@3 X@6 A@9 X@23 Y@26
    check_partition(r)


def test_load_control_evicts_on_suspension_and_holds_the_wakeup(impl):
    # frames=2, window=2, quantum 2. A and B: store 0, store 1, load 0, load 1.
    # [0,22) A s0 s1 (pool, 11 each; ws 2) -> tail. [22,27) switch, [27,138)
    # B s0 evicts a0 (write [138,638)) and zero-fills it; B blocks (ws 1).
    # At 138: 2+1 > 2: suspend B (admitted last, though blocked): evict b0 at
    # 138 (write [638,1138), nobody waits). [138,143) switch, [143,164) A l0
    # swaps a0 in (the frame b0 left): read [1138,2138). Idle; B's write ends
    # at 638 while it is suspended: its wake-up is held. [2138,2139) A l1 (a
    # hit): A ends. Nothing active: B resumes and joins the queue at once.
    # [2139,2144) switch, [2144,2255) s1 (zero fill of a freed frame),
    # [2255,2276) l0 swaps b0 in: read [2276,3276); [3276,3277) l1.
    m = make_machine(impl, 2, swap_slots=16, zero_page=False)
    t = T(("S", 0), ("S", 1), ("L", 0), ("L", 1))
    with m.events() as log:
        r = m.run([Job(t), Job(t)], quantum=2, cost=C, load_control=WorkingSet(2))
    assert rows(r) == [
        dict(pid=1, references=4, minor_faults=2, major_faults=1,
             cpu_ns=11 + 11 + 5 + 21 + 1, disk_wait_ns=2138 - 164, ready_ns=138 - 22,
             end_ns=2139),
        dict(pid=2, references=4, minor_faults=2, major_faults=1,
             cpu_ns=5 + 111 + 5 + 111 + 21 + 1, disk_wait_ns=3276 - 2276, ready_ns=22,
             suspended_ns=2139 - 138, end_ns=3277),
    ]
    assert (r.elapsed_ns, r.disk_busy_ns, r.switches) == (3277, 500 + 500 + 1000 + 1000, 3)
    s = r.stats
    assert (s["evictions"], s["swap_outs"], s["swap_ins"], s["zero_fills"],
            s["zero_pool_hits"]) == (2, 2, 2, 4, 2)
    check_partition(r)
    # The suspension's eviction: at 138, naming B's page, seq = the 3
    # references made so far.
    ev = [(int(e["seq"]), int(e["t_ns"]), KINDS[e["kind"]], int(e["pid"]), int(e["vaddr"]))
          for e in log.array if e["t_ns"] == 138]
    assert ev == [(3, 138, "evictions", 2, 0), (3, 138, "swap_outs", 2, 0)]


def test_a_resumed_process_counts_as_admitted_at_its_resumption(impl):
    # frames=2, window=2, quantum 2, unit references to the zero page.
    # [0,2) A a0 a1 (ws 2) -> tail. [2,4) B b0 b1 (ws 2) -> tail. At 4: 2+2+0 >
    # 2: suspend C (admitted last, ws 0), still 4: suspend B. [4,5) A a0: A ends.
    # At 5 nothing is active: C resumes (admitted 4th), then B fits (2+0):
    # admitted 5th. [5,7) C c0 c1 (ws 2) -> tail behind B. At 7: 2+2 > 2:
    # suspend B, admitted last (by job order it would be C). [7,9) C ends; at 9
    # B resumes, [9,10) b0: B ends.
    m = make_machine(impl, 2)
    jobs = [Job(loads(0, 1, 0)), Job(loads(0, 1, 0)), Job(loads(0, 1, 0, 1))]
    r = m.run(jobs, quantum=2, cost=U, load_control=WorkingSet(2))
    assert rows(r) == [
        dict(pid=1, references=3, minor_faults=2, cpu_ns=3, ready_ns=2, end_ns=5),
        dict(pid=2, references=3, minor_faults=2, cpu_ns=3, ready_ns=2 + 2,
             suspended_ns=1 + 2, end_ns=10),
        dict(pid=3, references=4, minor_faults=2, cpu_ns=4, ready_ns=4, suspended_ns=1,
             end_ns=9),
    ]
    assert r.switches == 4                  # B@2 A@4 C@5 B@9
    check_partition(r)


@pytest.mark.parametrize("swap_slots", [8, 0])
def test_suspension_keeps_pages_an_active_process_maps(impl, swap_slots):
    # P wrote its page 0 before forking Q: both map that frame. frames=3,
    # window=2, quantum 2. [0,12) P l0 (hit, 1), l4 (pool zero fill, 11) ->
    # tail. [12,17) switch, [17,29) Q l0 (hit, 1), s1 (pool, 11) -> tail. At
    # 29: 2+2 > 3: suspend Q. Its page 0 stays (P, active, maps it); its page 1
    # is evicted (write [29,529)), unless there is no swap to write it to: then
    # it stays. [29,34) switch, [34,35) P l0: P ends (a given process: no exit).
    # At 35 Q resumes: [35,40) switch, then l1: a swap-in (21, read queued at 61
    # behind the suspension's write: [529,1529)), or a hit (1).
    m = make_machine(impl, 3, swap_slots=swap_slots, zero_page=False)
    p = m.spawn()
    base = p.mmap(8 * PS)
    p.write(base, b"x")
    q = p.fork()
    jobs = [Job(loads(0, 4, 0, base=base), process=p),
            Job(T(("L", 0), ("S", 1), ("L", 1), base=base), process=q)]
    with m.events() as log:
        r = m.run(jobs, quantum=2, cost=C, load_control=WorkingSet(2))
    assert rows(r)[0] == dict(pid=p.pid, references=3, minor_faults=1, cpu_ns=18,
                              ready_ns=29 - 12, end_ns=35)
    if swap_slots:
        assert rows(r)[1] == dict(pid=q.pid, references=3, minor_faults=1,
                                  major_faults=1, cpu_ns=5 + 12 + 5 + 21,
                                  disk_wait_ns=1529 - 61, ready_ns=12, suspended_ns=6,
                                  end_ns=1529)
        assert [e for e in events(log) if e[0] == 29] == [
            (29, "evictions", q.pid, base + PS), (29, "swap_outs", q.pid, base + PS)]
        assert r.disk_busy_ns == 1500
    else:
        assert rows(r)[1] == dict(pid=q.pid, references=3, minor_faults=1,
                                  cpu_ns=5 + 12 + 5 + 1, ready_ns=12, suspended_ns=6,
                                  end_ns=41)
        assert r.stats["evictions"] == 0
    assert p.translate(base) == q.translate(base) is not None
    check_partition(r)
    m.check()


def test_random_runs_keep_the_books(impl):
    # Not hand-computed: invariants of any run. Each job's time adds up to its
    # end; the counters moved by exactly r.stats; every event is recorded in
    # time order and matches its counter; the machine is consistent and every
    # fresh process has exited.
    import random

    for seed in range(12):
        rnd = random.Random(seed)
        m = make_machine(impl, rnd.randint(1, 5), swap_slots=rnd.choice([0, 4, 32]),
                         zero_page=rnd.random() < 0.5,
                         policy=rnd.choice(["clock", "fifo", "lru", "random"]))
        jobs = []
        for _ in range(rnd.randint(1, 4)):
            n = rnd.randint(0, 30)
            t = Trace([rnd.randrange(6) * PS + rnd.randrange(PS) for _ in range(n)],
                      [rnd.choice("ILSM") for _ in range(n)],
                      [rnd.choice([1, 8, 64]) for _ in range(n)])
            jobs.append(Job(t, io_every=rnd.choice([0, 0, 1, 3]),
                            io_ns=rnd.choice([0, 70, 5000])))
        lc = rnd.choice([None, WorkingSet(rnd.randint(1, 8))])
        before = m.stats
        with m.events() as log:
            try:
                r = m.run(jobs, quantum=rnd.randint(1, 6), cost=rnd.choice([C, U, Cost()]),
                          load_control=lc)
            except pymmu.OutOfMemory:
                r = None
        m.check()
        assert m.processes() == []
        t_ns = log.array["t_ns"].tolist()
        assert t_ns == sorted(t_ns)
        if r is None:
            continue
        check_partition(r)
        assert r.stats == {k: m.stats[k] - before[k] for k in before}
        counts = log.counts()
        assert all(counts[k] == r.stats[k] for k in r.stats if k in counts)


def test_python_policies_in_run(impl):
    # A policy written in Python behaves as the built-in one it mirrors (same
    # victims, so the same times); a hook that raises stops the run after that
    # reference, its .index set, and the fresh processes exit.
    from pymmu.policy import Clock, Lru

    def go(policy):
        m = make_machine(impl, 2, swap_slots=32, zero_page=False, policy=policy)
        t1 = T(*[("S" if i % 3 else "L", i % 5) for i in range(40)])
        t2 = T(*[("M", (i * 7) % 4) for i in range(30)])
        r = m.run([Job(t1), Job(t2, io_every=4, io_ns=300)], quantum=5, cost=C,
                  load_control=WorkingSet(3))
        return r.jobs.tolist(), r.stats, r.disk_busy_ns

    assert go(Clock()) == go("clock")
    assert go(Lru()) == go("lru")

    class Grumpy(Clock):
        def on_map(self, pfn):
            super().on_map(pfn)
            if pfn == 1:
                raise KeyError("no frame 1 for me")

    m = make_machine(impl, 2, swap_slots=8, policy=Grumpy())
    with pytest.raises(KeyError) as e:
        m.run([Job(T(("S", 0), ("S", 1), ("S", 2)))], cost=C)
    assert e.value.index == 1           # the second record mapped frame 1
    assert m.processes() == []


# ---------------------------------------------------------------- the argument types

def test_cost_job_and_working_set_check_their_fields():
    assert Cost() == Cost(1, 20, 500, 1_000, 1_000, 2_000, 100_000, 100_000, 2_000)
    assert Cost(major=np.int64(7)).major == 7 and type(Cost(major=np.int64(7)).major) is int
    for name in ("ref", "tlb_miss", "minor", "zero", "copy", "major", "disk_read",
                 "disk_write", "switch"):
        with pytest.raises(ValueError, match=f"Cost.{name} "):
            Cost(**{name: -1})
        for bad in (1.0, "1", None, True):
            with pytest.raises(TypeError, match=f"Cost.{name} "):
                Cost(**{name: bad})
    with pytest.raises(ValueError, match="2\\*\\*63"):
        Cost(ref=1 << 63)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Cost().ref = 2
    t = loads(0)
    assert Job(t).process is None and Job(t).io_every == 0
    with pytest.raises(ValueError, match="Job.io_every"):
        Job(t, io_every=-1)
    with pytest.raises(TypeError, match="Job.io_ns"):
        Job(t, io_ns=0.5)
    for bad in ("trace.txt", b"x", 42, None):
        with pytest.raises(TypeError, match="Trace"):
            Job(bad)
    assert WorkingSet(5).window == 5
    with pytest.raises(ValueError, match="WorkingSet.window"):
        WorkingSet(0)
    with pytest.raises(TypeError, match="WorkingSet.window"):
        WorkingSet(2.0)


def test_result_table_and_dtype(impl):
    assert JOBS_DTYPE.names == FIELDS
    assert all(JOBS_DTYPE[n] == np.int64 for n in FIELDS[:-1])
    assert JOBS_DTYPE["faulted"] == np.bool_
    m = make_machine(impl, 1, swap_slots=8, zero_page=False)
    r = m.run([Job(T(("S", 0), ("S", 1), ("L", 0))), Job(T(("L", 0)))], cost=C)
    assert isinstance(r, RunResult)
    assert repr(r) == ("RunResult(elapsed_ns=2,622, cpu_ns=264, utilization=0.101, "
                       "disk_busy_ns=2,500, switches=2, jobs=2)")
    text = r.table()
    assert text.splitlines()[0] == ("elapsed 2,622 ns, cpu 264 ns, utilization 10.1%, "
                                    "disk busy 2,500 ns, 2 switches")
    assert text.splitlines()[1].split() == list(FIELDS)
    assert text.splitlines()[2].split() == ["1", "3", "2", "1", "148", "2,474", "0",
                                            "0", "0", "2,622"]
    assert not r.jobs.flags.writeable
    d = r.as_dict()
    assert d["jobs"][1]["end_ns"] == 1122 and d["elapsed_ns"] == 2622


def test_module_examples():
    import doctest

    import pymmu.run

    result = doctest.testmod(pymmu.run, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_vfork_child_job_writes_into_its_parent(impl):
    # Section 5: a vfork child's stores land in its parent; in run as in replay
    # and write, each completed STORE/MODIFY record counts vfork_child_writes.
    m = make_machine(impl, 4, swap_slots=4)
    parent = m.spawn()
    a = parent.mmap(2 * PS)
    child = parent.vfork()
    r = m.run([Job(T(("S", a, 4), ("L", a, 1), ("M", a + PS, 1)), process=child)], cost=U)
    assert r.stats["vfork_child_writes"] == 2 and r.stats["writes"] == 2
    assert child.stats["vfork_child_writes"] == 2
    child.exit()
    assert parent.read(a, 1) == b"\0"                 # (the store wrote zeros: a trace
    assert parent.translate(a) is not None            # carries no data) into the parent
    m.check()


@pytest.mark.parametrize("impl", IMPLS)
def test_strict_vfork_child_job_that_writes_is_refused(impl):
    m = make_machine(impl, 4, swap_slots=4, strict_vfork=True)
    parent = m.spawn()
    a = parent.mmap(PS)
    child = parent.vfork()
    before = dict(m.stats)
    with pytest.raises(pymmu.ProcessStateError, match="vfork child"):
        m.run([Job(T(("L", a, 1), ("S", a, 1)), process=child)])
    assert dict(m.stats) == before and child.state == "running"
    r = m.run([Job(T(("L", a, 1)), process=child)], cost=U)   # reads stay allowed
    assert r.stats["reads"] == 1 and r.stats["vfork_child_writes"] == 0
    m.check()
