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
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    assert "numpy gather" in out and "reference.py m.replay" in out
    for path in ("read_lackey, plain text", "m.replay(stream(path))",
                 "bytes per record held by read_lackey", "load(path) of a binary trace"):
        assert path in out, f"no {path!r} row in:\n{out}"
    for path in ("events off: m.replay, ls sample", "events on: overhead per event",
                 "per event-producing access", "Python clock policy",
                 "Python fifo policy", "overhead per eviction"):
        assert path in out, f"no {path!r} row in:\n{out}"
    # the rows whose baseline is a command line tool are there where the tool is
    assert ("wc -l of the same file" in out) == bool(shutil.which("wc"))
    assert ("xz -dc of the same file" in out) == bool(shutil.which("xz"))
    assert "targets held:" in out

    data = json.loads(out_json.read_text())
    assert data["environment"]["quick"] is True
    assert data["failed"] == []
    groups = {row["group"] for row in data["rows"]}
    assert {"access", "fork", "vfork", "cow", "resident", "replay_ref", "memory",
            "traces", "events", "policy"} <= groups
    # the optional baselines: rows where the package is installed, "skipped" where not
    for group, module in (("pressure", "libcachesim"), ("unicorn", "unicorn")):
        if _installed(module):
            assert group in groups, out
        else:
            assert group not in groups
            assert f"skipped {group}: needs {module}" in out
    for row in data["rows"]:
        if row["group"] in ("pressure", "replay_ref") and row["counts"] and \
                row["counts"].get("twin", True):
            # same trace, same policy, same frames: the same number of misses
            assert row["counts"]["pymmu_misses"] == row["counts"]["baseline_misses"], row
        if row["group"] == "resident":
            assert row["counts"]["faults"] == 0, row
        if row["group"] == "traces" and row["counts"]:
            # a streamed replay faults exactly as the in-memory replay of the same trace
            assert row["counts"]["same_faults"], row
        if row["group"] == "policy":
            # the Python clock and FIFO evict exactly as the built-ins
            assert row["counts"]["same_faults"], row
            assert row["counts"]["python_faults"] == row["counts"]["builtin_faults"], row
            assert row["counts"]["evictions"] > 0, row
        if row["group"] == "events" and row["counts"] and "same_faults" in row["counts"]:
            # recording changes nothing the replay does
            assert row["counts"]["same_faults"], row
            assert row["counts"]["events"] >= row["counts"]["event_accesses"] > 0, row
    for row in data["rows"]:
        assert math.isfinite(row["pymmu_ns"])   # a marginal cost may dip below 0 in noise
        if row["target"] and row["unit"] == "B":      # memory: bytes, no baseline
            assert row["pymmu_ns"] > 0 and isinstance(row["holds"], bool)
        elif row["target"] and row["group"] == "policy":  # a time per eviction
            assert isinstance(row["holds"], bool)
        elif row["target"]:
            assert row["ratio"] > 0 and isinstance(row["holds"], bool)


def test_compare_lists_its_registry():
    proc = subprocess.run([sys.executable, str(COMPARE), "--list"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert {"access", "fork", "vfork", "cow", "pressure", "resident", "unicorn",
            "replay_ref", "memory", "traces", "events", "policy", "run"} <= set(names)
    assert "needs libcachesim" in proc.stdout and "needs unicorn" in proc.stdout


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# Runs compare.py as __main__ with the optional baselines made unimportable, the way
# CI sees them (a None entry in sys.modules makes find_spec and import fail).
_WITHOUT_OPTIONAL = """
import runpy, sys
for name in ("libcachesim", "unicorn"):
    sys.modules[name] = None
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_compare_skips_what_is_not_installed(tmp_path):
    """pressure (libcachesim) and unicorn are listed as skipped, exit 0."""
    out_json = tmp_path / "compare.json"
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OPTIONAL, str(COMPARE), "--quick",
         "--only", "pressure,unicorn", "--json", str(out_json)],
        # Not from the repository root: `-c` would put the source tree (no compiled
        # core) ahead of the installed package.
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped pressure: needs libcachesim" in proc.stdout
    assert "skipped unicorn: needs unicorn" in proc.stdout
    data = json.loads(out_json.read_text())
    assert data["rows"] == [] and data["failed"] == []
    assert set(data["skipped"]) == {"pressure", "unicorn"}


def test_compare_traces_without_wc_and_xz(tmp_path):
    """With neither wc nor xz on PATH, the traces rows that need them are left out (a
    note says why), the others still run, and the run exits 0."""
    _require("core")
    out_json = tmp_path / "compare.json"
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--quick", "--only", "traces",
         "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PATH": str(empty)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "traces: wc is not installed" in proc.stdout
    assert "traces: xz is not installed" in proc.stdout
    data = json.loads(out_json.read_text())
    assert data["failed"] == []
    paths = [row["path"] for row in data["rows"]]
    assert paths and all(row["group"] == "traces" for row in data["rows"])
    assert not any(".xz" in p for p in paths)
    assert not any("wc -l" in row["baseline"] for row in data["rows"])
    assert any(p.startswith("m.replay(stream(path)), plain text") for p in paths)
    assert any(p.startswith("load(path)") for p in paths)


def test_compare_events_and_policy(tmp_path):
    """--only events,policy: the section 11 rows, their counts, exit 0."""
    _require("core")
    out_json = tmp_path / "compare.json"
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--quick", "--only", "events,policy",
         "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out_json.read_text())
    assert data["failed"] == [] and data["errors"] == []
    rows = data["rows"]
    assert {row["group"] for row in rows} == {"events", "policy"}
    events = [row for row in rows if row["group"] == "events"]
    # per trace: the off row (no target), the overhead per event, the on/off row
    assert len(events) == 3 * 4
    assert sum(row["path"].startswith("events off:") for row in events) == 4
    judged = [row for row in events if row["target"]]
    assert len(judged) == 1 and "per event-producing access" in judged[0]["path"]
    every = judged[0]["counts"]
    assert every["event_accesses"] == every["accesses"]     # every access faults
    # 33 zero fills, then per access an eviction and a swap-out (all but the first 32
    # accesses) and a swap-in (all but the first 33)
    assert every["events"] == 33 + 2 * (every["accesses"] - 32) + every["accesses"] - 33
    for row in events:
        if row["path"].startswith("events off:"):
            assert row["holds"] is None and row["baseline_ns"] is None
    policy = [row for row in rows if row["group"] == "policy"]
    assert len(policy) == 4                 # clock and fifo at 8 and 32 frames
    assert {row["counts"]["frames"] for row in policy} == {8, 32}
    for row in policy:
        assert row["target"] == "<= 3 us, same faults"
        assert isinstance(row["holds"], bool) and math.isfinite(row["pymmu_ns"])


_NO_EVENTS = """
import pymmu


class Machine(pymmu.Machine):
    @property
    def events(self):
        raise AttributeError("a build without the event log")
"""


def test_compare_run(tmp_path):
    """--only run: m.run against m.replay per reference; one job gives replay's
    counters (the row says so), and the rows carry their counts."""
    _require("core")
    out_json = tmp_path / "compare.json"
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--quick", "--only", "run", "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr   # 1: a target missed
    data = json.loads(out_json.read_text())
    assert data["errors"] == []
    rows = data["rows"]
    assert len(rows) == 4 and {row["group"] for row in rows} == {"run"}
    judged = [row for row in rows if row["target"]]
    assert len(judged) == 2 and all("1 job" in row["path"] for row in judged)
    assert all("the same counters as replay" in row["note"] for row in judged)
    assert all(row["counts"]["references"] > 0 for row in rows)


def test_compare_events_on_a_build_without_events(tmp_path):
    """Where the machine has no m.events() (the build it is compared with A/B), the
    events measurement gives its off rows only, and a note says so."""
    _require("core")
    (tmp_path / "no_events.py").write_text(_NO_EVENTS)
    out_json = tmp_path / "compare.json"
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--quick", "--only", "events",
         "--impl", "no_events:Machine", "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "has no m.events(): the off rows only" in proc.stdout
    data = json.loads(out_json.read_text())
    assert data["failed"] == []
    assert data["rows"] and all(row["path"].startswith("events off:")
                                for row in data["rows"])


def test_compare_python_policies_match_the_builtins():
    """compare.py's Python clock and FIFO fault exactly as "clock" and "fifo", and its
    cycle trace faults on every access."""
    _require("core")
    import pymmu
    compare = _load_compare()
    try:
        trace, distinct = compare.ls_trace(20_000)
        for name, cls in compare.python_policies().items():
            for frames in (4, 8, 32):
                got = []
                for policy in (name, cls()):
                    m = pymmu.Machine(frames, zero_page=False, swap_slots=distinct,
                                      policy=policy)
                    stats = m.replay(trace)
                    got.append((compare._faults(stats), int(stats["evictions"])))
                assert got[0] == got[1], (name, frames, got)
        cycle = compare.cyclic_trace(1_000, 9)
        m = pymmu.Machine(8, zero_page=False, swap_slots=9)
        assert compare._faults(m.replay(cycle)) == 1_000
    finally:
        del sys.modules["_pymmu_compare"]


def test_compare_lackey_text_prefix(tmp_path):
    """The quick run's trace: the ls sample's lines up to its N-th record line."""
    _require("core")
    from pymmu.traces import read_lackey
    compare = _load_compare()
    try:
        text = compare.lackey_text(1_000)
        whole = compare.lackey_text(None)
    finally:
        del sys.modules["_pymmu_compare"]
    assert text.startswith(b"==") and text.endswith(b"\n")
    assert whole.startswith(text) and len(whole) > len(text)
    path = tmp_path / "prefix.lackey"
    path.write_bytes(text)
    assert len(read_lackey(path)) == 1_000


def _load_compare():
    spec = importlib.util.spec_from_file_location("_pymmu_compare", COMPARE)
    compare = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = compare
    spec.loader.exec_module(compare)
    return compare


def test_oracle_general_file_is_what_libcachesim_reads(tmp_path):
    """The 24-byte records compare.py writes: time, id, size 1, index of the next
    access to the same id or -1; and libCacheSim counts the misses pymmu does."""
    spec = importlib.util.spec_from_file_location("_pymmu_compare", COMPARE)
    compare = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = compare
    try:
        spec.loader.exec_module(compare)
        keys = np.array([7, 3, 7, 9, 3, 7], dtype=np.uint64)
        path = tmp_path / "t.oracleGeneral"
        compare.write_oracle_general(str(path), keys)
        raw = path.read_bytes()
        assert len(raw) == 24 * len(keys)
        rec = np.fromfile(path, dtype=compare.ORACLE_GENERAL)
        assert rec["time"].tolist() == [0, 1, 2, 3, 4, 5]
        assert rec["id"].tolist() == keys.tolist()
        assert rec["size"].tolist() == [1] * 6
        assert rec["next"].tolist() == [2, 4, 5, -1, -1, -1]
        pages = compare.zipf_pages(5_000, 300, seed=1)
        assert pages.dtype == np.uint64 and pages.max() < 300
        assert np.bincount(pages.astype(np.int64)).max() > 5_000 / 300  # skewed
        if not _installed("libcachesim"):
            return
        import libcachesim as lcs
        _require("core")
        import pymmu
        from pymmu.traces import LOAD, Trace
        distinct = int(np.unique(pages).shape[0])
        compare.write_oracle_general(str(path), pages)
        trace = Trace(pages * np.uint64(4096), kind=LOAD)
        for policy, (name, kwargs) in compare.LIBCACHESIM.items():
            frames = distinct // 10
            reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
            ratio, _ = getattr(lcs, name)(frames, **kwargs).process_trace(reader)
            m = pymmu.Machine(frames, zero_page=False, swap_slots=distinct, policy=policy)
            stats = m.replay(trace)
            assert stats["minor_faults"] + stats["major_faults"] == round(ratio * len(pages))
    finally:
        del sys.modules[spec.name]


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
                   "bench_fork.Vfork.time_vfork", "bench_fork.CowFault.time_cow_fault",
                   "bench_replay.ReplayPressure.time_replay",
                   "bench_replay.ReplayPressure.peakmem_replay",
                   "bench_replay.ReplayResident.time_replay",
                   "bench_replay.ReplayResident.peakmem_replay",
                   "bench_replay.ReplayLackey.time_replay",
                   "bench_replay.ReplayLackey.peakmem_replay",
                   "bench_memory.MetadataPerFrame.track_bytes_per_frame",
                   "bench_memory.MetadataPerPte.track_bytes_per_pte",
                   "bench_traces.ReadTrace.time_read_lackey_plain",
                   "bench_traces.ReadTrace.time_read_lackey_xz",
                   "bench_traces.ReadTrace.peakmem_read_lackey",
                   "bench_traces.ReadTrace.time_load_binary",
                   "bench_traces.StreamReplay.time_stream_replay",
                   "bench_traces.StreamReplay.peakmem_stream_replay",
                   "bench_events.ReplayEvents.time_replay_events_off",
                   "bench_events.ReplayEvents.time_replay_events_on",
                   "bench_events.ReplayEvents.peakmem_replay_events_on",
                   "bench_events.ReplayEventsEveryAccess.time_replay_events_off",
                   "bench_events.ReplayEventsEveryAccess.time_replay_events_on",
                   "bench_events.PythonPolicy.time_replay_builtin",
                   "bench_events.PythonPolicy.time_replay_python",
                   "bench_run.RunOneJob.time_run", "bench_run.RunOneJob.time_replay",
                   "bench_run.RunJobs.time_run"):
        assert wanted in ids


@pytest.mark.parametrize("impl", ["core", "reference"])
@pytest.mark.parametrize("cls, method", BENCHMARKS)
def test_asv_benchmark_runs_once(cls, method, impl, monkeypatch):
    _require(impl)
    monkeypatch.setenv("PYMMU_BENCH_IMPL", impl)
    # a module's SMOKE dict names smaller sizes for this one run (reference.py would
    # take minutes at the sizes asv tracks)
    module = sys.modules[cls.__module__]
    for name, value in getattr(module, "SMOKE", {}).items():
        monkeypatch.setattr(module, name, value)
    args = _smallest_params(cls)
    bench = cls()
    if hasattr(bench, "setup"):
        try:
            bench.setup(*args)
        except NotImplementedError as e:        # asv's way of skipping a benchmark
            pytest.skip(f"skipped by its setup: {e}")
    try:
        getattr(bench, method)(*args)
    finally:
        if hasattr(bench, "teardown"):
            bench.teardown(*args)


def _ab():
    spec = importlib.util.spec_from_file_location("_pymmu_ab", BENCH / "ab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ab_times_both_trees_and_prints_ratios():
    import pymmu

    ab = _ab()
    tree = os.path.dirname(os.path.dirname(pymmu.__file__))   # (installed or in place)
    best = ab.compare({"base": tree, "head": tree}, ["clock/8", "lru/4"], rounds=1, repeat=1)
    assert set(best) == {"base", "head"}
    assert all(set(b) == {"clock/8", "lru/4"} and min(b.values()) > 0 for b in best.values())
    lines = ab.report(best, "base", "head").splitlines()
    assert lines[0].split() == ["case", "base", "head", "ratio"]
    case, _, _, _, _, ratio = lines[1].split()
    assert case == "clock/8"
    assert float(ratio) == pytest.approx(best["head"]["clock/8"] / best["base"]["clock/8"],
                                         abs=1e-3)


@pytest.mark.parametrize("text", ["", "clock", "clock/", "clock/0", "/8", "clock/x"])
def test_ab_refuses_a_bad_case(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        _ab().parse_cases(text)
