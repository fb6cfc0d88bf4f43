"""Every replacement policy is a unit, and adding one is adding its unit
(DESIGN.md section 14, "The policy unit"; docs/architecture.md, "Adding a policy").

A policy named in ``pymmu.tables.POLICY_CODES`` must have: its file
``pymmu/policies/<name>.pxi`` defining ``<name>_unit`` (the generated
``pymmu/policies/_units.pxi`` includes it and hands it to the core), its readable
twin in ``pymmu.reference`` (the same faults on a trace under pressure), a test
against an independent simulator (``SIMS`` in tests/test_replay.py), and a row in
``benchmarks/compare.py``. These tests fail for a policy that lacks one of them.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import pymmu
import pymmu.reference
from pymmu import tables
from pymmu.traces import LOAD, STORE, Trace

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILT_IN = [p for p in tables.POLICY_CODES if p != "python"]


def _module(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_the_committed_units_file_is_what_tables_generates():
    units = ROOT / "pymmu" / "policies" / "_units.pxi"
    if units.exists():                    # (an installed package may not ship it)
        assert units.read_text() == tables.units_text(), \
            "pymmu/policies/_units.pxi is stale: build again (setup.py writes it)"


@pytest.mark.parametrize("name", tables.POLICY_CODES)
def test_a_policy_has_its_unit_file(name):
    unit = ROOT / "pymmu" / "policies" / f"{name}.pxi"
    if not (ROOT / "pymmu" / "policies").exists():
        pytest.skip("an installed package without its sources")
    assert unit.exists(), f"policy {name!r} has no pymmu/policies/{name}.pxi"
    assert f"cdef policy_ops_t {name}_unit" in unit.read_text(), \
        f"pymmu/policies/{name}.pxi does not define {name}_unit"


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_policy_has_its_readable_twin(name):
    # the reference model runs it, with the core's faults, bytes and counters
    rng = np.random.default_rng(7)
    pages = rng.integers(0, 40, 600, dtype=np.uint64)
    trace = Trace(pages * np.uint64(4096), kind=rng.choice([LOAD, STORE], 600), size=8)
    results = []
    for Machine in (pymmu.Machine, pymmu.reference.Machine):
        m = Machine(12, swap_slots=64, zero_page=False, policy=name, seed=3)
        results.append(m.replay(trace))
        m.check()
    assert results[0] == results[1]


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_policy_is_checked_against_an_independent_simulator(name):
    replay = _module(ROOT / "tests" / "test_replay.py", "_pymmu_test_replay")
    assert name in replay.SIMS, f"no simulator of {name!r} in tests/test_replay.py SIMS"


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_policy_has_its_benchmark_row(name):
    compare = _module(ROOT / "benchmarks" / "compare.py", "_pymmu_compare_rows")
    assert name in compare.POLICIES, f"benchmarks/compare.py has no row for {name!r}"
    assert name in compare.LIBCACHESIM or name in compare.NEAREST


def test_mru_keeps_a_loop_resident():
    # a loop over 5 pages in 4 frames: lru misses on every reference; mru, after the
    # 4 cold misses, evicts the page just used, which the loop needs last: one
    # miss in every 4 references (96 / 4)
    loop = Trace(np.tile(np.arange(5, dtype=np.uint64), 20) * np.uint64(4096), kind=LOAD)
    faults = {}
    for policy in ("lru", "mru"):
        m = pymmu.Machine(4, swap_slots=8, zero_page=False, policy=policy)
        d = m.replay(loop)
        faults[policy] = d["minor_faults"] + d["major_faults"]
    assert faults == {"lru": 100, "mru": 4 + 24}
