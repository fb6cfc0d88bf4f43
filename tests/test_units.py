"""The core's C units, driven directly through pymmu._testing's wrappers: the free
frame heaps, the lowest-first sets, the event log's ring, the TLB's slot choice,
the working sets, the shared objects' page maps, the page tables with their walk
cache, and the reverse map.
Each is checked against a plain-Python model on random operations."""
from __future__ import annotations

import heapq

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pymmu
from pymmu import _ptebits as bits_
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


@given(st.integers(1, 40) | st.sampled_from([2**62, 2**63 - 1]),
       st.lists(st.integers(0, 60) | st.integers(0, 2**52), max_size=300))
def test_working_set_is_the_distinct_pages_of_the_last_window(window, vpns):
    # many collisions (0..60) and far pages; the window slides past each; a
    # window longer than the references is all of them. Memory follows the
    # references: the ring holds min(window, references) rounded up to a power
    # of two (at least 16), the table twice the distinct pages (at least 32).
    sizes, (ring, slots) = _testing.wset_run(window, vpns)
    assert sizes == [len(set(vpns[max(0, i + 1 - window):i + 1])) for i in range(len(vpns))]
    held = min(window, len(vpns))
    assert ring == min(window, max(16, 1 << (held - 1).bit_length()))
    assert slots <= max(32, 4 * (max(sizes, default=0) + 1))


def test_working_set_memory_follows_its_references_not_its_window():
    # 100,000 references to 1,000 pages under the largest window (issue 16: the
    # ring's size once doubled past 2**63 to 0 and looped forever)
    vpns = [(i * 7919) % 1000 for i in range(100_000)]
    sizes, (ring, slots) = _testing.wset_run(2**63 - 1, vpns)
    assert sizes[-1] == 1000 and (ring, slots) == (2**17, 2048)
    sizes, (ring, slots) = _testing.wset_run(10, vpns)
    assert set(sizes[10:]) == {10} and (ring, slots) == (10, 32)


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



@pytest.mark.parametrize("bits,levels", [(1, 3), (2, 1), (2, 4), (9, 4), (9, 7)])
@given(st.data())
def test_page_tables_agree_with_a_dict(bits, levels, data):
    # Three spaces over a few shared vpns (one leaf table, the walk cache's
    # (mm, vpn >> bits) tags colliding across spaces) and far ones; a failed
    # allocation and a failed fault's take-back must leave the tables as they were.
    top = 2 ** (bits * levels)
    vpn = st.sampled_from([0, 1, min(2 ** bits, top - 1), top - 1]) | st.integers(0, top - 1)
    ptes = {mm: {} for mm in (1, 2, 3)}
    tables = {mm: set() for mm in (1, 2, 3)}      # (level, prefix) of non-root tables
    ops, answers = [], []

    def path(v):
        return {(lv, v >> (bits * (levels - lv))) for lv in range(1, levels)}

    for _ in range(data.draw(st.integers(0, 40))):
        mm = data.draw(st.integers(1, 3))
        what = data.draw(st.sampled_from(["set", "set", "get", "fail", "destroy"]))
        if what == "destroy":
            ops.append(("destroy", mm))
            ptes[mm].clear()
            tables[mm].clear()
            continue
        v = data.draw(vpn)
        if what == "set":
            value = data.draw(st.integers(0, 2**64 - 1))
            ops.append(("set", mm, v, value))
            tables[mm] |= path(v)
            ptes[mm][v] = value
        elif what == "get":
            ops.append(("get", mm, v))
            answers.append(ptes[mm].get(v, 0) if path(v) <= tables[mm] else None)
        else:
            k = data.draw(st.integers(0, levels))
            ops.append(("fail", mm, v, k))
            answers.append(k == 0 or k > len(path(v) - tables[mm]))
    out, collected, nodes = _testing.pgtable_run(bits, levels, 3, ops)
    assert out == answers
    for mm in (1, 2, 3):
        assert collected[mm] == sorted((v, x) for v, x in ptes[mm].items() if x)
    assert nodes == sum(1 + len(t) for t in tables.values())


def _pte(pfn, accessed=False, dirty=False):
    return ((pfn << bits_.PFN_SHIFT) | bits_.PRESENT | bits_.USER
            | (bits_.ACCESSED if accessed else 0) | (bits_.DIRTY if dirty else 0))


@given(st.data())
def test_reverse_map_finds_every_mapping_through_the_family(data):
    spaces = 5
    family = {}                        # mm -> its family, for members only
    order = {f: [] for f in range(1, spaces + 1)}   # members, the newest first
    table = {}                         # (mm, vpn) -> pte
    ops, answers = [], []
    pte_values = st.builds(_pte, st.integers(1, 3), st.booleans(), st.booleans()) | \
        st.sampled_from([0, (7 << bits_.PFN_SHIFT) | bits_.SWAP])

    def mapping(pfn, fam, vpn):
        return [mm for mm in order[fam] if table.get((mm, vpn), 0) & bits_.PRESENT
                and table[(mm, vpn)] >> bits_.PFN_SHIFT == pfn]

    for _ in range(data.draw(st.integers(0, 40))):
        what = data.draw(st.sampled_from(["join", "leave", "map", "map", "count", "young",
                                          "any", "replace", "relink"]))
        mm = data.draw(st.integers(1, spaces))
        vpn = data.draw(st.sampled_from([0, 5, 2**17 + 3]))
        pfn, fam = data.draw(st.integers(1, 3)), data.draw(st.integers(1, spaces))
        if what == "join":
            if mm not in family:
                ops.append(("join", mm, fam))
                family[mm] = fam
                order[fam].insert(0, mm)
        elif what == "leave":
            if mm in family:
                ops.append(("leave", mm))
                order[family.pop(mm)].remove(mm)
        elif what == "relink":            # a restore derives the prev links
            ops.append(("relink",))
        elif what == "map":
            value = data.draw(pte_values)
            ops.append(("map", mm, vpn, value))
            table[(mm, vpn)] = value
        elif what == "count":
            ops.append(("count", pfn, fam, vpn))
            answers.append(len(mapping(pfn, fam, vpn)))
        elif what == "young":
            ops.append(("young", pfn, fam, vpn))
            young = [m for m in mapping(pfn, fam, vpn) if table[(m, vpn)] & bits_.ACCESSED]
            for m in young:
                table[(m, vpn)] &= ~bits_.ACCESSED
            answers.append(len(young))
        elif what == "any":
            bit = data.draw(st.sampled_from([bits_.ACCESSED, bits_.DIRTY]))
            ops.append(("any", pfn, fam, vpn, bit))
            answers.append(any(table[(m, vpn)] & bit for m in mapping(pfn, fam, vpn)))
        else:
            value = data.draw(st.sampled_from([0, (9 << bits_.PFN_SHIFT) | bits_.SWAP]))
            ops.append(("replace", pfn, fam, vpn, value))
            hit = mapping(pfn, fam, vpn)
            for m in hit:
                table[(m, vpn)] = value
            answers.append((len(hit), min((100 + m for m in hit), default=-1)))
    out, families = _testing.rmap_run(spaces, ops)
    assert out == answers
    assert families == {f: v for f, v in order.items() if v}


def test_reverse_map_leaves_a_family_anywhere_in_its_list():
    # the newest member first; leaving the last, a middle one, the first, then all
    ops = [("join", mm, 1) for mm in (1, 2, 3, 4, 5)]
    out, families = _testing.rmap_run(5, ops)
    assert families == {1: [5, 4, 3, 2, 1]}
    for leave, left in [(1, [5, 4, 3, 2]), (3, [5, 4, 2]), (5, [4, 2]), (2, [4]), (4, [])]:
        ops.append(("leave", leave))
        out, families = _testing.rmap_run(5, ops)
        assert families == ({1: left} if left else {})
    ops += [("join", 3, 1), ("join", 5, 1), ("relink",), ("leave", 3), ("join", 1, 1)]
    assert _testing.rmap_run(5, ops)[1] == {1: [1, 5]}


def _family_time(n, order):
    """The fastest of five runs of: n spaces join family 1, then leave in ``order``
    ("join": the first to join leaves first, at the far end of the list)."""
    import time

    joins = [("join", mm, 1) for mm in range(1, n + 1)]
    leaves = [("leave", mm) for mm in (range(1, n + 1) if order == "join" else range(n, 0, -1))]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        assert _testing.rmap_run(n, joins + leaves) == ([], {})
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.parametrize("order", ["join", "reverse"])
def test_reverse_map_leaving_a_family_costs_the_same_anywhere(order):
    # issue 16, item 8: a fork family's list was singly linked, newest first, so
    # N children exiting in fork order walked it N**2/2 steps (80,000 children:
    # 24 s). 8x the spaces: 8x the time, quadratic would be 64x (the bound leaves
    # room for a noisy machine and the sanitizer build's allocator).
    small = _family_time(5_000, order)
    large = _family_time(40_000, order)
    assert large < 24 * small + 0.01, (small, large)


@pytest.mark.parametrize("family, next_, head, why", [
    ([-1, 1, 1], [0, 2, 0], [0, 1, 0], None),                 # 1 -> 2
    ([-1, 1, 1], [0, 2, 1], [0, 1, 0], "a cycle"),
    ([-1, 1, 1], [0, 2, 2], [0, 1, 0], "a space twice"),
    ([-1, 1, 1], [0, 5, 0], [0, 1, 0], "a link out of range"),
    ([-1, 1, 1], [0, -3, 0], [0, 1, 0], "a negative link"),
    ([-1, 1, 1], [0, 2, 0], [0, 9, 0], "a head out of range"),
    ([-1, 1, 2], [0, 2, 0], [0, 1, 0], "a member of another family"),
])
def test_reverse_map_relink_derives_prev_links_or_refuses(family, next_, head, why):
    rc, prev = _testing.rmap_relink_run(family, next_, head)
    if why is None:
        assert (rc, prev) == (0, [0, 0, 1])
    else:
        assert rc == -1, why
        assert all(0 <= p < len(family) for p in prev)
