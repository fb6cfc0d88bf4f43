"""The benchmark code runs: compare.py's quick smoke run and every asv benchmark once.

Nothing here judges speed (DESIGN.md section 9: performance is measured in
benchmarks, never in timed tests); these tests only prove that the benchmarks work.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
COMPARE = BENCH / "compare.py"
SUITE = BENCH / "benchmarks"
PREFIXES = ("time_", "peakmem_", "mem_", "track_")


def _require(impl: str):
    """Skip while ``impl`` (core or reference) is not importable or still a placeholder."""
    module_name = "pymmu.reference" if impl == "reference" else "pymmu"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        pytest.skip(f"{module_name} is not importable yet")
    try:
        module.Machine(1)
    except NotImplementedError as e:
        pytest.skip(f"{module_name}.Machine is still a placeholder ({e})")


# ------------------------------------------------------------------- compare.py

def test_compare_quick_prints_the_ratio_table(tmp_path):
    _require("core")
    _require("reference")
    out_json = tmp_path / "compare.json"
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--quick", "--json", str(out_json)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    header = next(line for line in out.splitlines() if line.startswith("measurement"))
    for column in ("pymmu", "baseline", "ratio", "target", "holds"):
        assert column in header
    for path in ("p.read(a, 8)", "p.write(a, 8 bytes)", "p.fork()", "p.vfork()",
                 "COW write fault"):
        assert path in out, f"no {path!r} row in:\n{out}"
    assert "reference.py" in out and "bytearray" in out
    assert "targets held:" in out

    data = json.loads(out_json.read_text())
    assert data["environment"]["quick"] is True
    assert data["failed"] == []
    groups = {row["group"] for row in data["rows"]}
    assert {"access", "fork", "vfork", "cow"} <= groups
    for row in data["rows"]:
        assert math.isfinite(row["pymmu_ns"])   # a marginal cost may dip below 0 in noise
        if row["target"]:
            assert row["ratio"] > 0 and isinstance(row["holds"], bool)


def test_compare_lists_its_registry():
    proc = subprocess.run([sys.executable, str(COMPARE), "--list"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert {"access", "fork", "vfork", "cow"} <= set(names)


# ---------------------------------------------------------------- the asv suite

def _load_suite():
    """Import benchmarks/benchmarks as a package under a private name (the bare name
    ``benchmarks`` could resolve to the folder above it), with every bench module."""
    spec = importlib.util.spec_from_file_location(
        "_pymmu_asv_suite", SUITE / "__init__.py", submodule_search_locations=[str(SUITE)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package
    spec.loader.exec_module(package)
    return [importlib.import_module(f"{spec.name}.{path.stem}")
            for path in sorted(SUITE.glob("bench_*.py"))]


def _benchmarks():
    """(id, class, method name) for every asv benchmark method in the suite."""
    found = []
    for module in _load_suite():
        short = module.__name__.rsplit(".", 1)[1]
        for cname, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for name in sorted(vars(cls)):
                if name.startswith(PREFIXES):
                    found.append(pytest.param(cls, name, id=f"{short}.{cname}.{name}"))
    return found


BENCHMARKS = _benchmarks()


def _smallest_params(cls) -> tuple:
    params = getattr(cls, "params", [])
    if not params:
        return ()
    if not isinstance(params[0], (list, tuple)):   # one parameter, given flat
        params = [params]
    return tuple(min(values) for values in params)


def test_the_suite_has_the_paths_of_section_9():
    ids = {p.id for p in BENCHMARKS}
    for wanted in ("bench_access.Access.time_read", "bench_access.Access.time_write",
                   "bench_fork.Fork.time_fork", "bench_fork.Fork.peakmem_fork",
                   "bench_fork.Vfork.time_vfork", "bench_fork.CowFault.time_cow_fault"):
        assert wanted in ids


@pytest.mark.parametrize("impl", ["core", "reference"])
@pytest.mark.parametrize("cls, method", BENCHMARKS)
def test_asv_benchmark_runs_once(cls, method, impl, monkeypatch):
    _require(impl)
    monkeypatch.setenv("PYMMU_BENCH_IMPL", impl)
    args = _smallest_params(cls)
    bench = cls()
    if hasattr(bench, "setup"):
        bench.setup(*args)
    try:
        getattr(bench, method)(*args)
    finally:
        if hasattr(bench, "teardown"):
            bench.teardown(*args)
