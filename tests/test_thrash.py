"""``pymmu.thrash`` and ``pymmu thrash``: Denning's curve (DESIGN.md section 12).

* the default run on the four sample traces has the classic shape: utilization
  rises with the degree while the jobs' pages fit in memory, collapses past it
  without load control, and stays near its peak with working-set load control
  (an assertion that fails if load control does nothing);
* the command line prints the same numbers as the Python API (``--json``,
  ``--csv``, the table), draws a PNG with ``--plot`` and reports every bad
  option as one line with exit status 2;
* the reference model gives the same rows as the core on a small thrash, and
  the cells give the same rows in this process, on the local pool and on Dask.

The commands run as a new user runs them: ``python -m pymmu`` in a subprocess
from ``/`` (the source tree holds no compiled core in CI's installed run);
option errors run in process, as in test_cli_papercuts.py.
"""
from __future__ import annotations

import csv
import doctest
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import pymmu
import pymmu.thrashing
from pymmu import cli
from pymmu.thrashing import ROW_KEYS, ThrashResult, default_frames, thrash
from pymmu.traces import Trace, sample, samples

SAMPLES = ("ls", "sort", "gzip", "sed")


def core_or_skip():
    try:
        pymmu.Machine(1)
    except NotImplementedError as e:
        pytest.skip(f"core: pymmu.Machine is still a placeholder ({e})")


def run_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m pymmu ARGS`` from / (so the installed pymmu is imported)."""
    return subprocess.run([sys.executable, "-m", "pymmu", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd="/",
                          check=False)


@pytest.fixture(scope="module")
def default() -> ThrashResult:
    """The default run on the four sample traces (what `pymmu thrash --sample all` runs)."""
    core_or_skip()
    return thrash([sample(n) for n in SAMPLES])


# --------------------------------------------------------------------------
# The shape
# --------------------------------------------------------------------------

def test_default_run_shows_denning_curve(default):
    r = default
    none = r.utilization()
    with_lc = r.utilization(load_control=True)
    assert r.degrees == list(range(1, 9))
    assert r.settings == ["none", "ws:40000"]
    assert r.frames == default_frames(r.pages, 8)
    d_out = r.thrashing_degree()              # the first degree whose pages exceed memory
    assert d_out is not None and 3 <= d_out <= 7
    peak = max(none)
    d_peak = r.degrees[none.index(peak)]
    assert d_peak < d_out and peak > 0.9
    # rises while memory suffices: strictly up to the peak, from well below it,
    # and stays there until the pages no longer fit
    assert none[0] < 0.5 * peak
    assert all(a < b for a, b in zip(none[:d_peak - 1], none[1:d_peak]))
    assert min(none[d_peak - 1:d_out - 1]) > 0.95 * peak
    # while everything fits, load control changes nothing (it never suspends)
    assert with_lc[:d_out - 1] == none[:d_out - 1]
    for d in r.degrees[:d_out - 1]:
        assert r.row(d, True)["suspended_ns"] == 0
        assert r.row(d, True)["utilization"] == r.row(d)["utilization"]
    # collapses past it without load control: a fraction of the peak, for good
    for d in r.degrees[d_out:]:
        assert r.row(d)["utilization"] < 0.35 * peak
        assert r.row(d)["major_faults"] > 1000
    # stays near its peak with load control, at every degree past the peak
    for d in r.degrees[d_peak:]:
        assert r.row(d, True)["utilization"] > 0.65 * peak, d
    for d in r.degrees[d_out:]:
        lc, no = r.row(d, True), r.row(d)
        assert lc["utilization"] > 2.5 * no["utilization"]
        assert lc["suspended_ns"] > 0              # load control did act
        assert lc["major_faults"] < no["major_faults"] / 10
        assert lc["elapsed_ns"] < no["elapsed_ns"] / 5


def test_rows_are_consistent(default):
    r = default
    # page references of one pass of each trace (a record across two pages makes two)
    refs = [len(pymmu.traces.read(sample(n))[:40_000].pages(4096)) for n in SAMPLES]
    assert len(r) == 16 and [row["degree"] for row in r][:8] == r.degrees
    for row in r:
        assert tuple(row) == ROW_KEYS
        assert row["utilization"] == pytest.approx(row["cpu_ns"] / row["elapsed_ns"])
        assert row["throughput"] == pytest.approx(row["degree"] / row["elapsed_ns"] * 1e9)
        assert row["pages"] == sum(r.pages[i % 4] for i in range(row["degree"]))
        assert row["references"] == 10 * sum(refs[i % 4] for i in range(row["degree"]))
        assert row["faulted"] == 0 and row["frames"] == r.frames
        assert row["window"] == (0 if row["load_control"] == "none" else 40_000)
    assert r.matrix().shape == (8, 2)
    assert r.matrix("major_faults").dtype == np.int64
    assert r.row(3, "ws:40000") is r.row(3, True) is r.row(3, 40_000)
    with pytest.raises(KeyError):
        r.row(9)
    assert repr(r) == "ThrashResult(4 traces, degrees 1-8, 128 frames, load control ws:40000)"


def test_module_examples():
    core_or_skip()
    result = doctest.testmod(pymmu.thrashing, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------

def test_cli_json_equals_the_api(default):
    p = run_cli("thrash", "--sample", "ls,sort,gzip,sed", "--json")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    out = json.loads(p.stdout)
    assert out["paths"] == [sample(n) for n in SAMPLES]
    assert out["traces"] == list(SAMPLES)
    assert out["pages"] == default.pages and out["frames"] == default.frames
    assert out["max_degree"] == 8 and out["load_control"] == "ws:40000"
    assert {k: out[k] for k in ("records", "repeat", "io_every", "io_ns", "quantum",
                                "policy", "page_size", "seed")} == {
        "records": 40_000, "repeat": 10, "io_every": 10_000, "io_ns": 20_000,
        "quantum": 10_000, "policy": "clock", "page_size": 4096, "seed": 0}
    assert out["cost"] == {**vars(pymmu.Cost()), "disk_read": 20_000, "disk_write": 20_000}
    assert out["rows"] == default.to_dicts()       # the same numbers, floats included


def test_cli_table_and_plot(default, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "thrash.png"
    p = run_cli("thrash", "--sample", "ls,sort", "--sample", "gzip,sed", "--plot", png)
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = p.stdout.splitlines()
    assert lines[0].startswith("jobs      ls, sort, gzip, sed in turn")
    assert "128 frames" in lines[1]
    # one line per degree: the pages, then utilization without and with load control
    body = {int(line.split()[0]): line.split() for line in lines if line[:6].strip().isdigit()}
    assert sorted(body) == list(range(1, 9))
    for d, cells in body.items():
        assert cells[1] == f"{default.row(d)['pages']:,}"
        assert cells[2] == f"{100 * default.row(d)['utilization']:.1f}"
        assert cells[4] == f"{100 * default.row(d, True)['utilization']:.1f}"
    assert "from degree 5 the jobs' pages exceed the 128 frames" in p.stdout
    assert f"Denning's curve written to {png}" in p.stdout


def test_cli_csv_and_options_reach_the_model(capsys):
    core_or_skip()
    args = ["thrash", "--sample", "sort", "--sample", "ls", "--records", "3000",
            "--repeat", "2", "--max-degree", "3", "--frames", "20", "--io-every", "700",
            "--io-ns", "900", "--quantum", "300", "--disk-ns", "5000",
            "--load-control", "ws:999", "--policy", "lru", "-j", "1", "--csv"]
    assert cli.main(args) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    expected = thrash([sample("sort"), sample("ls")], 20, 3, load_control=999,
                      records=3000, repeat=2, io_every=700, io_ns=900, quantum=300,
                      disk_ns=5000, policy="lru", max_workers=1)
    assert len(rows) == 6 and list(rows[0]) == list(ROW_KEYS)
    assert [{k: str(v) for k, v in row.items()} for row in expected.rows] == rows
    assert expected.settings == ["none", "ws:999"]
    assert cli.main([*args[:-1], "--load-control", "none", "--json"]) == 0
    out = json.loads(capsys.readouterr()[0])
    assert out["load_control"] is None and len(out["rows"]) == 3


def test_sample_all(capsys):
    core_or_skip()
    assert cli.main(["thrash", "--sample", "all", "--records", "500", "--repeat", "1",
                     "--max-degree", "1", "-j", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr()[0])
    assert out["paths"] == [sample(n) for n in samples()]
    assert out["traces"] == list(samples())


def error_line(rc: int, err: str) -> str:
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pymmu thrash: error: "), err
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "--frames: must be at least 1, got 0"),
    (["--frames", "x"], "--frames: 'x' is not an integer"),
    (["--frames", str(1 << 31)], "--frames: must be at most 2,147,483,647"),
    (["--max-degree", "0"], "--max-degree: must be at least 1, got 0"),
    (["--records", "-1"], "--records: must be at least 0, got -1"),
    (["--repeat", "0"], "--repeat: must be at least 1, got 0"),
    (["--io-every", "-1"], "--io-every: must be at least 0, got -1"),
    (["--io-ns", "1e3"], "--io-ns: '1e3' is not an integer"),
    (["--quantum", "0"], "--quantum: must be at least 1, got 0"),
    (["--disk-ns", "-5"], "--disk-ns: must be at least 0, got -5"),
    (["--load-control", "lru:5"], "--load-control: 'lru:5' is not ws:WINDOW"),
    (["--load-control", "ws:0"], "--load-control: must be at least 1, got 0"),
    (["--load-control", "ws:"], "--load-control: 'ws:' is not ws:WINDOW"),
    (["--policy", "opt"], "--policy: opt needs the future of one reference string"),
    (["--policy", "belady"], "--policy: 'belady' is not one of clock, fifo, lru, random, mru"),
    (["--page-size", "1000"], "--page-size: must be a power of two"),
    (["--seed", "x"], "--seed: 'x' is not an integer"),
    (["--workers", "0"], "--workers: must be at least 1, got 0"),
    (["--plot", "out.xyz"], "--plot: out.xyz: matplotlib cannot write .xyz files"),
])
def test_bad_options_name_the_option(capsys, tmp_path, args, message):
    if args[0] == "--plot":
        pytest.importorskip("matplotlib")
    # checked before any trace is read: the missing trace is not what is reported
    rc = cli.main(["thrash", str(tmp_path / "missing"), *args])
    out, err = capsys.readouterr()
    assert message in error_line(rc, err)
    assert out == ""


@pytest.mark.parametrize("args, message", [
    ([], "give TRACE files or --sample NAMES (comma-separated, or all: "),
    (["--sample", "nope"], "--sample: "),
    (["--sample", ","], "--sample: ',' names no sample"),
    (["MISSING"], "No such file or directory"),
])
def test_bad_traces_give_one_line(capsys, tmp_path, args, message):
    args = [str(tmp_path / "missing") if a == "MISSING" else a for a in args]
    rc = cli.main(["thrash", *args])
    assert message in error_line(rc, capsys.readouterr()[1])


def test_not_a_trace_gives_one_line(capsys, tmp_path):
    core_or_skip()
    junk = tmp_path / "junk"
    junk.write_text("nothing here\n")
    rc = cli.main(["thrash", str(junk), "-j", "1"])
    error_line(rc, capsys.readouterr()[1])


def test_bad_option_in_a_subprocess():
    p = run_cli("thrash", "--sample", "ls", "--max-degree", "x")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == "pymmu thrash: error: --max-degree: 'x' is not an integer\n"


def test_help_lists_thrash():
    p = run_cli("--help")
    assert p.returncode == 0 and "thrash" in p.stdout


# --------------------------------------------------------------------------
# The Python API
# --------------------------------------------------------------------------

SMALL = dict(records=1500, repeat=2, max_degree=3, io_every=500, io_ns=1000)


@pytest.fixture(scope="module")
def small() -> ThrashResult:
    core_or_skip()
    return thrash([sample(n) for n in SAMPLES], max_workers=1, **SMALL)


def test_reference_gives_the_core_rows(small):
    """A small thrash on the pure-Python model: every row equal, thrashing and
    suspensions included."""
    ref = thrash([sample(n) for n in SAMPLES], max_workers=1, reference=True, **SMALL)
    assert ref.rows == small.rows
    assert small.row(3)["major_faults"] > 0 and small.row(3, True)["suspended_ns"] > 0


def test_pool_gives_the_same_rows(small):
    assert thrash([sample(n) for n in SAMPLES], max_workers=2, **SMALL).rows == small.rows


def test_dask_gives_the_same_rows(small):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        on_dask = thrash([sample(n) for n in SAMPLES], client=client, **SMALL)
    assert on_dask.rows == small.rows


def test_traces_in_memory_and_one_trace():
    core_or_skip()
    loop = Trace([0x1000 * (i % 6) for i in range(600)], "S")
    r = thrash(loop, max_degree=2, max_workers=1, io_every=100, io_ns=100)
    assert r.names == ["trace 0"] and r.pages == [6] and r.frames == 6
    assert r.params["records"] == 40_000 and r.windows == [0, 600]
    # a trace shorter than records runs whole; records=0 runs whole too
    assert thrash(loop, max_degree=2, records=0, max_workers=1, io_every=100,
                  io_ns=100).rows == r.rows
    assert thrash(loop, max_degree=1, records=60, max_workers=1).pages == [6]
    assert thrash(loop, max_degree=1, records=5, max_workers=1).pages == [5]


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(max_degree=0), ValueError, "max_degree must be at least 1"),
    (dict(frames=0), ValueError, "frames must be at least 1"),
    (dict(records=-1), ValueError, "records must not be negative"),
    (dict(repeat=0), ValueError, "repeat must be at least 1"),
    (dict(io_every=-1), ValueError, "io_every must not be negative"),
    (dict(io_ns=1.5), TypeError, "io_ns must be an int"),
    (dict(quantum=0), ValueError, "quantum must be at least 1"),
    (dict(disk_ns=-1), ValueError, "disk_ns must not be negative"),
    (dict(policy="opt"), ValueError, "cannot run many processes"),
    (dict(policy="nope"), ValueError, "policy must be one of"),
    (dict(load_control="ws"), ValueError, "load_control must be a WorkingSet"),
    (dict(load_control=0), ValueError, "WorkingSet.window must be at least 1"),
    (dict(cost=5), TypeError, "cost must be a pymmu.Cost"),
    (dict(page_size=1000), ValueError, "page_size must be a power of two"),
    (dict(client=object(), scheduler="tcp://x:1"), ValueError, "not both"),
])
def test_api_checks_its_arguments_first(tmp_path, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        thrash(tmp_path / "missing", **kwargs)   # never read: the argument fails first


def test_api_bad_traces():
    with pytest.raises(ValueError, match="traces is empty"):
        thrash([])
    with pytest.raises(TypeError, match="a trace must be a pymmu.traces.Trace or a path"):
        thrash([42], max_workers=1)


def test_to_pandas(small):
    pd = pytest.importorskip("pandas")
    df = small.to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df.columns) == list(ROW_KEYS)
    assert len(df) == 6
    assert df.pivot(index="degree", columns="load_control",
                    values="utilization").shape == (3, 2)


def test_plot_returns_a_figure(small, tmp_path):
    pytest.importorskip("matplotlib")
    fig = small.plot(tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 0
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] \
        == ["without load control", "working-set load control (window 1,500)"]


def test_exported():
    assert pymmu.thrash is thrash and "thrash" in pymmu.__all__
    assert set(SAMPLES) <= set(samples())
