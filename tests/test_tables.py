"""pymmu/tables.py is the one source of the names the core numbers: the core's
constants (pymmu/_tables.pxd) are generated from it, and the Python layer takes
its names from it. Checked through the built core's own behaviour."""
from __future__ import annotations

import pathlib

import numpy as np

import pymmu
from pymmu import events, tables, vmas
from pymmu._args import ACCESS_NAMES, POLICIES, STAT_NAMES

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_committed_pxd_is_what_tables_generates():
    pxd = ROOT / "pymmu" / "_tables.pxd"
    if pxd.exists():                      # (an installed package may not ship it)
        assert pxd.read_text() == tables.pxd_text(), \
            "pymmu/_tables.pxd is stale: build again (setup.py writes it)"


def test_the_python_layer_names_come_from_tables():
    assert STAT_NAMES is tables.COUNTERS and ACCESS_NAMES is tables.ACCESSES
    assert events.KINDS is tables.EVENT_KINDS
    assert list(vmas.KINDS) == list(tables.VMA_KINDS)
    assert POLICIES == tuple(p for p in tables.POLICY_CODES if p != "python")


def test_the_run_costs_are_cost_fields_in_order():
    # the core reads m.run's costs by COST_* code, machine.py passes them in this order
    import dataclasses
    assert tables.COSTS == tuple(f.name for f in dataclasses.fields(pymmu.Cost))


def test_the_protection_bits_have_one_source():
    # pymmu.PROT_* are the table's; the bit of access ACCESSES[i] is 1 << i (the
    # core's access_need shifts), and the core's mapping checks agree with them.
    assert (pymmu.PROT_NONE, pymmu.PROT_READ, pymmu.PROT_WRITE, pymmu.PROT_EXEC) == (
        tables.PROT_NONE, tables.PROT_READ, tables.PROT_WRITE, tables.PROT_EXEC)
    assert [tables.PROT_READ, tables.PROT_WRITE, tables.PROT_EXEC] == [
        1 << tables.ACCESSES.index(a) for a in ("read", "write", "execute")]
    assert "    PROT_WRITE = 2\n" in tables.pxd_text()
    m = pymmu.Machine(4)
    p = m.spawn()
    for prot, allowed in ((pymmu.PROT_READ, {"read"}), (pymmu.PROT_EXEC, {"execute"}),
                          (pymmu.PROT_WRITE, {"read", "write"}), (pymmu.PROT_NONE, set())):
        a = p.mmap(4096, prot)
        for access, call in (("read", lambda: p.read(a, 1)),
                             ("write", lambda: p.write(a, b"w")),
                             ("execute", lambda: p.fetch(a, 1))):
            try:
                call()
            except pymmu.ProtectionFault:
                assert access not in allowed
            else:
                assert access in allowed
    m.check()


def test_the_core_counts_in_the_order_of_the_names():
    # one of each kind of event the core counts, each where its name says
    m = pymmu.Machine(1, swap_slots=4)
    p = m.spawn()
    a = p.mmap(2 * 4096)
    p.read(a, 1)                          # zero_page_maps
    p.write(a, b"x")                      # zero_fills (+ pool hit)
    p.write(a + 4096, b"y")               # an eviction and a swap-out
    stats = m.stats
    assert list(stats) == list(tables.COUNTERS)
    assert stats["zero_page_maps"] == 1 and stats["evictions"] == 1 \
        and stats["swap_outs"] == 1 and stats["reads"] == 1 and stats["writes"] == 2
    with m.events() as log:
        p.read(a, 1)                      # swap-in (and the eviction of a + 4096)
    assert log.counts()["swap_ins"] == 1
    codes = {events.KINDS[k] for k in log.array["kind"]}
    assert {"swap_ins", "evictions", "swap_outs"} <= codes


def test_every_policy_name_reaches_its_code():
    from pymmu.traces import Trace

    t = Trace(np.arange(40, dtype=np.uint64) % 7 * 4096, kind="L")
    for name in POLICIES:
        m = pymmu.Machine(3, swap_slots=16, zero_page=False, policy=name)
        assert m.policy == name
        m.replay(t)
        m.check()
