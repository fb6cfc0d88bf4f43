"""Snapshots (DESIGN.md section 11): pickle and deepcopy of a Machine or a Process give
an independent machine in exactly the same state; any sequence of operations then gives
identical results on both. The state machine also snapshots at random steps
(tests/test_state_machine.py); these are the named cases.
"""
from __future__ import annotations

import copy
import pickle
import random
import threading

import numpy as np
import pytest

import pymmu
from pymmu.policy import Fifo
from pymmu.traces import Trace

PS = 4096


def pickled(x):
    return pickle.loads(pickle.dumps(x))


SNAPSHOTS = {"deepcopy": copy.deepcopy, "pickle": pickled}


def workload(m, seed, steps):
    """Random processes and accesses under pressure; returns everything observable."""
    rng = random.Random(seed)
    out = []
    procs = [p for p in m.processes() if p.state == "running"]
    if not procs:
        procs = [m.spawn()]
        procs[0].mmap(24 * PS, addr=0x100000)
        procs[0].mmap(4 * PS, addr=0x200000, shared=True)
    for _ in range(steps):
        procs = [p for p in m.processes() if p.state == "running"]
        p = rng.choice(procs)
        k = rng.random()
        try:
            if k < 0.35:
                p.write(0x100000 + rng.randrange(24) * PS + rng.randrange(PS - 8),
                        bytes([rng.randrange(256)]) * 8)
            elif k < 0.6:
                out.append(p.read(0x100000 + rng.randrange(24) * PS, 8))
            elif k < 0.7:
                p.write(0x200000 + rng.randrange(4) * PS, b"shared")
            elif k < 0.75 and len(procs) < 4:
                out.append(p.fork().pid)
            elif k < 0.8 and len(procs) > 1 and p.pid != 1:
                p.exit(rng.randrange(3))
            elif k < 0.9:
                pages = np.array([rng.randrange(24) for _ in range(20)], np.uint64)
                out.append(m.replay(Trace(0x100000 + pages * np.uint64(PS), kind="LSM"[k > 0.85]),
                                    process=p))
            else:
                out.append(p.clear_accessed())
        except pymmu.MMUError as e:
            out.append(repr(e))
    out += [dict(m.stats), m.frame_table().tolist(), m.clock_hand, m.references,
            m.frames_free, m.swap_free]
    for p in m.processes():
        out += [p.pid, p.state, dict(p.stats), p.page_table().tolist(), p.rss, p.pss]
    return out


@pytest.mark.parametrize("how", list(SNAPSHOTS))
@pytest.mark.parametrize("policy", ["clock", "fifo", "lru", "random", "python-fifo"])
def test_a_snapshot_goes_on_exactly_like_its_original(Machine, how, policy):
    for seed in range(3):
        pol = Fifo() if policy == "python-fifo" else policy
        m = Machine(6, swap_slots=64, policy=pol, tlb_entries=8, seed=seed)
        workload(m, seed, 150)                  # half a workload, under pressure
        twin = SNAPSHOTS[how](m)
        assert twin is not m and twin.stats == m.stats
        twin.check()
        assert workload(m, seed + 100, 150) == workload(twin, seed + 100, 150)
        m.check()
        twin.check()


def test_a_snapshot_is_independent(Machine):
    m = Machine(4, swap_slots=8)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"original")
    m2 = copy.deepcopy(m)
    p2 = m2.process(p.pid)
    p2.write(a, b"changed!")
    m2.spawn()
    assert p.read(a, 8) == b"original" and p2.read(a, 8) == b"changed!"
    assert [q.pid for q in m.processes()] == [1]
    assert [q.pid for q in m2.processes()] == [1, 2]


def test_copying_a_process_brings_its_machine(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")
    m2, p2 = copy.deepcopy([m, p])
    assert p2._m is m2 and m2.process(p.pid) is p2
    q = copy.deepcopy(p)                      # a process alone brings its machine
    assert q.read(a, 1) == b"x" and q._m is not m


@pytest.mark.parametrize("what", ["machine", "process"])
def test_shallow_copies_are_refused(Machine, what):
    m = Machine(2)
    p = m.spawn()
    with pytest.raises(TypeError, match="copy"):
        copy.copy(m if what == "machine" else p)


def test_the_python_policy_is_copied_along():
    pol = Fifo()
    m = pymmu.Machine(3, swap_slots=16, policy=pol, zero_page=False)
    p = m.spawn()
    a = p.mmap(8 * PS)
    for i in range(5):
        p.write(a + i * PS, b"x")
    m2 = pickled(m)
    assert m2.policy is not pol and isinstance(m2.policy, Fifo)
    assert list(m2.policy.order) == list(pol.order)
    for mm in (m, m2):
        q = mm.process(p.pid)
        for i in range(8):
            q.read(a + i * PS, 1)
    assert m.stats == m2.stats and list(m2.policy.order) == list(pol.order)


def test_a_snapshot_during_a_replay_in_another_thread_is_refused():
    m = pymmu.Machine(64, swap_slots=4096, zero_page=False)
    trace = Trace(np.random.default_rng(0).integers(0, 4000, 3_000_000).astype(np.uint64) * PS)
    errors, started = [], threading.Event()

    def run():
        started.set()
        m.replay(trace)

    t = threading.Thread(target=run)
    t.start()
    started.wait()
    refused = 0
    while t.is_alive():
        try:
            copy.deepcopy(m)
        except RuntimeError as e:
            refused += 1
            errors.append(str(e))
    t.join()
    m.check()
    assert refused == 0 or "busy" in errors[0]
    copy.deepcopy(m).check()                   # after it, fine


@pytest.mark.parametrize("damage", [
    lambda st: st.update(fm=st["fm"][:-1]),
    lambda st: st.update(mem=st["mem"][:-1]),
    lambda st: st.update(sl=b""),
    lambda st: st.update(trees=[None] + [np.zeros(3, np.uint64)] * (len(st["trees"]) - 1)),
    lambda st: st.update(scalars=(10**6,) + st["scalars"][1:]),
    lambda st: st.update(vmas=st["vmas"][:1]),
])
def test_a_damaged_core_snapshot_is_refused(damage):
    # a crafted state raises ValueError, never corrupts memory
    m = pymmu.Machine(4, swap_slots=4)
    p = m.spawn()
    p.write(p.mmap(2 * PS), b"x")
    restore, (config, state) = m._core.__reduce__()
    state = dict(state)
    damage(state)
    with pytest.raises(ValueError, match="snapshot"):
        restore(config, state)


def test_an_event_buffer_never_comes_from_a_pickle():
    # The closed log's rows array lives on a C buffer; no pickle can make one
    # point at memory it does not own (Cython would otherwise add a loader).
    from pymmu import _core

    assert not hasattr(_core, "__pyx_unpickle__EventBuffer")
    m = pymmu.Machine(4)
    p = m.spawn()
    with m.events() as log:
        p.write(p.mmap(PS), b"x")
    with pytest.raises(TypeError):
        pickle.dumps(log.array.base.obj)
    rows = pickle.loads(pickle.dumps(log.array))      # the rows themselves: data
    assert rows.tolist() == log.array.tolist()
    empty = _core._EventBuffer.__new__(_core._EventBuffer)
    assert bytes(memoryview(empty)) == b""
