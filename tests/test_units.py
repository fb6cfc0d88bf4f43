"""The core's C units, driven directly through pymmu._testing's wrappers: the free
frame heaps, the lowest-first sets, the event log's ring, the TLB's slot choice,
the working sets and the shared objects' page maps.
Each is checked against a plain-Python model on random operations."""
from __future__ import annotations

import heapq

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pymmu
from pymmu import _testing


@given(st.data())
def test_free_heap_pops_the_lowest_pfn(data):
    frames = data.draw(st.integers(1, 64))
    ops, model, present = [], [], set()
    for _ in range(data.draw(st.integers(0, 200))):
        if present and data.draw(st.booleans()):
            ops.append(("pop",))
            present.discard(heapq.heappop(model))
        else:
            free = [f for f in range(frames) if f not in present]
            if not free:
                continue
            pfn = data.draw(st.sampled_from(free))
            ops.append(("push", pfn))
            heapq.heappush(model, pfn)
            present.add(pfn)
    expect = []
    mirror = []
    for op in ops:                              # the model's pops, in order
        if op[0] == "push":
            heapq.heappush(mirror, op[1])
        else:
            expect.append(heapq.heappop(mirror))
    popped, count = _testing.freeheap_run(frames, ops)
    assert popped == expect and count == len(mirror)


@given(st.integers(1, 5000), st.data())
def test_lowset_agrees_with_a_set(n, data):
    ops, answers, members = [], [], set()
    for _ in range(data.draw(st.integers(0, 120))):
        what = data.draw(st.sampled_from(["add", "add", "remove", "pop", "min", "next",
                                          "has"]))
        i = data.draw(st.integers(0, n - 1))
        if what == "add":
            if i in members:
                continue
            members.add(i)
            ops.append(("add", i))
        elif what == "remove":
            if i not in members:
                continue
            members.discard(i)
            ops.append(("remove", i))
        elif what == "pop":
            low = min(members) if members else None
            members.discard(low)
            ops.append(("pop",))
            answers.append(low)
        elif what == "min":
            ops.append(("min",))
            answers.append(min(members) if members else -1)
        elif what == "next":
            ops.append(("next", i))
            answers.append(min((m for m in members if m >= i), default=-1))
        else:
            ops.append(("has", i))
            answers.append(i in members)
    got, count = _testing.lowset_run(n, ops)
    assert got == answers and count == len(members)


@pytest.mark.parametrize("limit, events", [(-1, 0), (-1, 3000), (0, 5), (7, 3), (7, 20),
                                           (1, 1), (1024, 5000)])
def test_event_log_keeps_the_latest(limit, events):
    kept, counts, dropped = _testing.evlog_run(limit, events)
    first = 0 if limit < 0 else max(0, events - limit)
    assert kept == list(range(first, events))
    assert dropped == first and sum(counts) == events
    assert counts == [len(range(k, events, 12)) for k in range(12)]


@pytest.mark.parametrize("entries", [1, 3, 64, 100])
def test_tlb_slot_is_vpn_mod_entries(entries):
    m = pymmu.Machine(4, tlb_entries=entries)
    vpns = [0, 1, 5, 63, 64, 99, 100, 2**40 + 7]
    assert _testing.tlb_slots(m._core, vpns) == [v % entries for v in vpns]


@given(st.integers(1, 40), st.lists(st.integers(0, 60) | st.integers(0, 2**52), max_size=300))
def test_working_set_is_the_distinct_pages_of_the_last_window(window, vpns):
    # many collisions (0..60) and far pages; the window slides past each
    sizes = _testing.wset_run(window, vpns)
    assert sizes == [len(set(vpns[max(0, i + 1 - window):i + 1])) for i in range(len(vpns))]


@given(st.sampled_from([1, 7, 512, 513, 100_000, 2**34]), st.data())
def test_objmap_agrees_with_a_dict(npages, data):
    ops, gets, model = [], [], {}
    for _ in range(data.draw(st.integers(0, 80))):
        page = data.draw(st.integers(0, min(npages - 1, 3)) | st.integers(0, npages - 1))
        if data.draw(st.booleans()):
            value = data.draw(st.sampled_from([-1, -2, -9]) | st.integers(0, 1000))
            ops.append(("set", page, value))
            if value == -1:
                model.pop(page, None)
            else:
                model[page] = value
        else:
            ops.append(("get", page))
            gets.append(model.get(page, -1))
    answers, held, count = _testing.objmap_run(npages, ops)
    assert answers == gets
    assert held == sorted(model.items()) and count == len(model)

