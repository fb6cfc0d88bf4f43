"""Papercuts of ``pymmu simulate`` and ``pymmu sweep``, on small traces in tmp_path.

* every error is one line ``pymmu CMD: error: ...`` with exit status 2, naming
  the option when an option is wrong, and comes before the trace is read;
  no traceback escapes for bad input (a damaged trace, a machine too big for
  memory, an address out of range);
* ``--seed`` reaches the random policy of every run and cell;
* ``--progress`` without tqdm is an error before any work (auto mode stays quiet);
* ``--plot`` is checked before the grid runs (matplotlib there, the file
  writable), draws what ``--show`` shows, and ``--log-y`` survives zeros;
* ``--csv`` prints one row per cell (not with ``--json``); ``SweepResult`` has
  ``to_pandas()`` and a short repr.

The commands run in process (``pymmu.cli.main``) so that these tests stay fast.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import pymmu
import pymmu.simulate
from pymmu import cli


def core_or_skip():
    try:
        pymmu.Machine(1)
    except NotImplementedError as e:
        pytest.skip(f"core: pymmu.Machine is still a placeholder ({e})")


#: The simple-format text of the small trace: 7 pages, reads and writes.
TEXT = "".join(f"{'W' if i % 3 == 0 else 'R'} {0x10000 + 4096 * (i % 7):#x}\n"
               for i in range(200))


@pytest.fixture
def trace(tmp_path) -> Path:
    path = tmp_path / "t.simple"
    path.write_text(TEXT)
    return path


def run(capsys, *args) -> tuple[int, str, str]:
    """``pymmu ARGS`` in process: (exit status, stdout, stderr)."""
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(command: str, rc: int, err: str) -> str:
    """The one error line of a failed command (checked: status 2, one line)."""
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pymmu {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------
# errors: one line, exit status 2
# --------------------------------------------------------------------------

def test_sweep_bad_frames_names_the_option(capsys, trace):
    rc, out, err = run(capsys, "sweep", trace, "--frames", "16,x")
    assert error_line("sweep", rc, err) == (
        "pymmu sweep: error: --frames: '16,x': 'x' is not an integer")
    assert out == ""
    rc, _, err = run(capsys, "sweep", trace, "--frames", "5:7")
    assert "--frames: '5:7': range '5:7' holds no power of two" in error_line("sweep", rc, err)


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_bad_page_size_is_checked_before_the_trace_is_read(capsys, tmp_path, command):
    missing = tmp_path / "missing"  # reading it would fail: the page size fails first
    rc, _, err = run(capsys, command, missing, "--frames", "4", "--page-size", "1000")
    assert error_line(command, rc, err) == (
        f"pymmu {command}: error: --page-size: must be a power of two from 512 to "
        "65536, got 1000")
    rc, _, err = run(capsys, command, missing, "--frames", "4", "--page-size", "4k")
    assert "--page-size: '4k' is not an integer" in error_line(command, rc, err)


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "--frames: must be at least 1, got 0"),
    (["--frames", "x"], "--frames: 'x' is not an integer"),
    (["--frames", str(1 << 31)], "--frames: must be at most 2,147,483,647"),
])
def test_simulate_bad_frames_names_the_option(capsys, trace, args, message):
    rc, _, err = run(capsys, "simulate", trace, *args)
    assert message in error_line("simulate", rc, err)


@pytest.mark.parametrize("args, message", [
    (["--policies", "lru,belady"], "--policies: policy must be one of"),
    (["--workers", "0"], "--workers: must be at least 1, got 0"),
    (["--show", "nope"], "--show: 'nope' is not fault_rate"),
    (["--frames", f"4,{1 << 31}"], "--frames: must be at most 2,147,483,647"),
])
def test_sweep_bad_options_name_the_option(capsys, tmp_path, args, message):
    # checked before the trace is read: a missing trace is not reported
    rc, _, err = run(capsys, "sweep", tmp_path / "missing", *args)
    assert message in error_line("sweep", rc, err)


def damaged_traces(tmp_path) -> list[Path]:
    """Bad trace files: missing, not a trace, cut short or damaged, a directory."""
    data = TEXT.encode() * 50

    def cut(blob: bytes) -> bytes:
        return blob[:len(blob) // 2]

    def damage(blob: bytes) -> bytes:
        return blob[:20] + b"\xff" * 60 + blob[80:]

    files = {
        "missing": None,
        "junk": b"nothing here\n",
        "cut.gz": cut(gzip.compress(data)),
        "cut.xz": cut(lzma.compress(data)),
        "cut.bz2": cut(bz2.compress(data)),
        "bad.gz": damage(gzip.compress(data)),
        "bad.xz": damage(lzma.compress(data)),
        "bad.bz2": damage(bz2.compress(data)),
    }
    for name, blob in files.items():
        if blob is not None:
            (tmp_path / name).write_bytes(blob)
    (tmp_path / "adir").mkdir()
    return [tmp_path / name for name in [*files, "adir"]]


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_bad_trace_files_give_one_line(capsys, tmp_path, command):
    core_or_skip()
    extra = ["--workers", "1"] if command == "sweep" else []
    for path in damaged_traces(tmp_path):
        rc, out, err = run(capsys, command, path, "--frames", "4", *extra)
        # The wording comes from the trace reader; the line names the file.
        assert path.name in error_line(command, rc, err), path
        assert out == ""


def test_address_out_of_range_gives_one_line(capsys, tmp_path):
    core_or_skip()
    path = tmp_path / "high.simple"
    path.write_text("R 0x1000\nR 0x7fffffffffff0000\n")  # above a 48-bit address space
    rc, _, err = run(capsys, "simulate", path, "--frames", "4")
    error_line("simulate", rc, err)
    rc, _, err = run(capsys, "sweep", path, "--frames", "4", "--workers", "1")
    error_line("sweep", rc, err)


@pytest.mark.parametrize("exc", [MemoryError(), MemoryError("Unable to allocate 3.7 TiB")])
def test_memory_error_names_frames(capsys, trace, monkeypatch, exc):
    def fail(*args, **kw):
        raise exc

    monkeypatch.setattr(pymmu.simulate, "simulate", fail)
    monkeypatch.setattr(pymmu.simulate, "sweep", fail)
    rc, _, err = run(capsys, "simulate", trace, "--frames", "1000000")
    line = error_line("simulate", rc, err)
    assert "not enough memory for 1,000,000 frames of 4,096 bytes" in line
    assert "--frames" in line
    rc, _, err = run(capsys, "sweep", trace, "--frames", "4,1000000")
    assert "not enough memory for 1,000,000 frames" in error_line("sweep", rc, err)


@pytest.mark.parametrize("exc", [OverflowError("Python int too large to convert to C long"),
                                 ValueError(), TypeError("bad\nthing")])
def test_other_errors_of_a_run_give_one_line(capsys, trace, monkeypatch, exc):
    def fail(*args, **kw):
        raise exc

    monkeypatch.setattr(pymmu.simulate, "simulate", fail)
    monkeypatch.setattr(pymmu.simulate, "sweep", fail)
    for command in ("simulate", "sweep"):
        rc, _, err = run(capsys, command, trace, "--frames", "4")
        error_line(command, rc, err)


def test_dead_worker_gives_one_line(capsys, trace, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    def fail(*args, **kw):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(pymmu.simulate, "sweep", fail)
    rc, _, err = run(capsys, "sweep", trace, "--frames", "4,64")
    assert "worker process died" in error_line("sweep", rc, err)


def overcommits() -> bool:
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1"
    except OSError:
        return True  # unknown: the allocation below might succeed


@pytest.mark.skipif(overcommits(), reason="this kernel may grant a 3.7 TiB allocation")
def test_huge_machine_is_one_line_not_a_traceback(trace):
    core_or_skip()
    for command in ("simulate", "sweep"):
        r = subprocess.run([sys.executable, "-m", "pymmu", command, str(trace),
                            "--frames", "1000000000"], capture_output=True, text=True,
                           timeout=120, cwd=tempfile.gettempdir(), check=False)
        assert r.returncode == 2, r.stderr
        assert r.stderr.splitlines() == [r.stderr.strip()], r.stderr
        assert "not enough memory" in r.stderr and "--frames" in r.stderr


# --------------------------------------------------------------------------
# --seed
# --------------------------------------------------------------------------

@pytest.fixture
def scattered(tmp_path) -> Path:
    """2,000 reads over 23 pages, in an order that keeps a random policy busy."""
    path = tmp_path / "scattered.simple"
    path.write_text("".join(f"R {0x10000 + 4096 * (i * i % 23):#x}\n" for i in range(2000)))
    return path


def test_seed_reaches_simulate(capsys, scattered):
    core_or_skip()
    faults = {}
    for seed in (0, 1, 2, 3):
        rc, out, err = run(capsys, "simulate", scattered, "--frames", "8", "--policy",
                           "random", "--seed", seed, "--json")
        assert rc == 0, err
        row = json.loads(out)
        del row["trace"]
        assert row == pymmu.simulate.simulate(scattered, 8, "random", seed=seed)
        faults[seed] = row["faults"]
    assert len(set(faults.values())) > 1, faults  # the seed changes the run
    rc, _, err = run(capsys, "simulate", scattered, "--frames", "8", "--seed", "x")
    assert "--seed: 'x' is not an integer" in error_line("simulate", rc, err)


def test_seed_reaches_every_sweep_cell(capsys, scattered):
    core_or_skip()
    from pymmu.simulate import simulate, sweep

    for seed in (0, 3):
        rc, out, err = run(capsys, "sweep", scattered, "--frames", "4,8", "--policies",
                           "random,lru", "--seed", seed, "--json", "--workers", "1")
        assert rc == 0, err
        rows = json.loads(out)["rows"]
        assert rows == [simulate(scattered, f, p, seed=seed)
                        for p in ("random", "lru") for f in (4, 8)]
    seq = sweep(scattered, [4, 8], ["random"], seed=3, max_workers=1)
    assert sweep(scattered, [4, 8], ["random"], seed=3, max_workers=2).rows == seq.rows
    assert seq.rows != sweep(scattered, [4, 8], ["random"], max_workers=1).rows
    assert "seed" in sweep.__doc__ and "seed" in simulate.__doc__
    rc, _, err = run(capsys, "sweep", scattered, "--seed", "1.5")
    assert "--seed: '1.5' is not an integer" in error_line("sweep", rc, err)


# --------------------------------------------------------------------------
# --progress without tqdm
# --------------------------------------------------------------------------

@pytest.fixture
def no_tqdm(monkeypatch):
    for name in ("tqdm", "tqdm.auto"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_progress_without_tqdm_is_an_error_before_any_work(capsys, tmp_path, no_tqdm,
                                                          command):
    # The trace is missing: had it been read first, that would be the error.
    rc, out, err = run(capsys, command, tmp_path / "missing", "--frames", "4",
                       "--progress")
    assert error_line(command, rc, err) == (
        f"pymmu {command}: error: --progress needs tqdm: pip install 'pymmu[progress]'")
    assert out == ""


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_auto_progress_without_tqdm_stays_quiet(capsys, trace, no_tqdm, command):
    core_or_skip()
    extra = ["--workers", "1"] if command == "sweep" else []
    for flags in ([], ["--no-progress"]):
        rc, out, err = run(capsys, command, trace, "--frames", "4", *extra, *flags)
        assert rc == 0 and err == "", err
        assert out


# --------------------------------------------------------------------------
# --plot, --show and --log-y
# --------------------------------------------------------------------------

@pytest.fixture
def no_grid(monkeypatch):
    """Make running the grid fail the test: the checks must come first."""
    def fail(*args, **kw):
        pytest.fail("the sweep ran before --plot was checked")

    monkeypatch.setattr(pymmu.simulate, "sweep", fail)
    monkeypatch.setattr(pymmu.simulate, "load_trace", fail)


def test_plot_without_matplotlib_fails_before_the_grid(capsys, trace, monkeypatch, no_grid):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc, out, err = run(capsys, "sweep", trace, "--plot", trace.parent / "mrc.png")
    line = error_line("sweep", rc, err)
    assert "--plot" in line and "pip install 'pymmu[plot]'" in line
    assert out == ""


@pytest.mark.parametrize("target, message", [
    ("nodir/mrc.png", "does not exist"),
    (".", "is a directory"),
    ("mrc.xyz", "cannot write .xyz files"),
])
def test_plot_path_is_checked_before_the_grid(capsys, trace, no_grid, target, message):
    pytest.importorskip("matplotlib")
    path = trace.parent / target
    rc, out, err = run(capsys, "sweep", trace, "--plot", path)
    line = error_line("sweep", rc, err)
    assert line.startswith("pymmu sweep: error: --plot: ") and message in line
    assert str(path) in line
    assert out == ""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write anywhere")
def test_plot_into_a_read_only_directory(capsys, trace, tmp_path, no_grid):
    pytest.importorskip("matplotlib")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc, _, err = run(capsys, "sweep", trace, "--plot", locked / "mrc.png")
    finally:
        locked.chmod(0o700)
    line = error_line("sweep", rc, err)
    assert "--plot" in line and "not writable" in line and str(locked) in line


def test_log_y_needs_plot(capsys, trace, no_grid):
    rc, _, err = run(capsys, "sweep", trace, "--log-y")
    assert "--log-y" in error_line("sweep", rc, err)


@pytest.fixture
def grid():
    """A sweep over the scattered trace whose evictions drop to 0 at 32 frames."""
    core_or_skip()
    from pymmu.traces import Trace

    t = Trace([0x10000 + 4096 * (i * i % 23) for i in range(2000)])
    r = pymmu.simulate.sweep(t, [4, 8, 16, 32], ["clock", "lru", "opt"], max_workers=1)
    r.name = "scattered"
    return r


def test_plot_draws_the_key(grid):
    pytest.importorskip("matplotlib")
    ev = grid.matrix("evictions")
    assert ev[-1].tolist() == [0, 0, 0] and ev[0].min() > 0
    ax = grid.plot(key="evictions").axes[0]
    assert [ln.get_label() for ln in ax.get_lines()[:3]] == ["clock", "lru", "opt"]
    for j in range(3):
        assert list(ax.get_lines()[j].get_ydata()) == list(ev[:, j])
    assert "evictions" in ax.get_ylabel() and "evictions" in ax.get_title()
    assert ax.get_yscale() == "linear"
    default = grid.plot().axes[0]
    assert "miss ratio" in default.get_ylabel()
    assert list(default.get_lines()[0].get_ydata()) == list(grid.matrix()[:, 0])


@pytest.mark.parametrize("key", ["fault_rate", "evictions", "swap_ins", "faults"])
def test_log_y_survives_zeros(grid, tmp_path, key):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"{key}.png"
    fig = grid.plot(path, key=key, log_y=True)   # swap_ins: every cell is 0
    assert fig.axes[0].get_yscale() == "symlog"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_follows_show_and_log_y(capsys, scattered, monkeypatch):
    pytest.importorskip("matplotlib")
    core_or_skip()
    import pymmu.plot

    calls = []
    draw = pymmu.plot.miss_ratio_curves

    def spy(result, path=None, **kw):
        calls.append(kw)
        return draw(result, path, **kw)

    monkeypatch.setattr(pymmu.plot, "miss_ratio_curves", spy)
    png = scattered.parent / "ev.png"
    rc, out, err = run(capsys, "sweep", scattered, "--frames", "4:32", "--workers", "1",
                       "--show", "evictions", "--plot", png, "--log-y")
    assert rc == 0, err
    assert calls[-1]["key"] == "evictions" and calls[-1]["log_y"] is True
    assert f"evictions curves written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, out, err = run(capsys, "sweep", scattered, "--frames", "4:32", "--workers", "1",
                       "--plot", png)
    assert rc == 0, err
    assert calls[-1]["key"] == "fault_rate" and calls[-1]["log_y"] is False
    assert "miss-ratio curves written to" in out


# --------------------------------------------------------------------------
# --csv, to_pandas, repr
# --------------------------------------------------------------------------

def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_sweep_csv_is_one_row_per_cell(capsys, trace):
    core_or_skip()
    from pymmu.simulate import sweep

    rc, out, err = run(capsys, "sweep", trace, "--frames", "2,4", "--policies", "lru,opt",
                       "--csv", "--workers", "1")
    assert rc == 0, err
    expected = sweep(trace, [2, 4], ["lru", "opt"], max_workers=1).rows
    assert out.splitlines()[0] == ",".join(expected[0])  # header: the rows' keys
    rows = read_csv(out)
    assert len(rows) == 4
    for got, want in zip(rows, expected):
        assert got == {k: str(v) for k, v in want.items()}
    assert float(rows[0]["fault_rate"]) == expected[0]["fault_rate"]  # full precision


def test_sweep_csv_with_plot_prints_only_csv(capsys, trace):
    pytest.importorskip("matplotlib")
    core_or_skip()
    png = trace.parent / "mrc.png"
    rc, out, err = run(capsys, "sweep", trace, "--frames", "2,4", "--csv", "--workers", "1",
                       "--plot", png)
    assert rc == 0, err
    assert len(read_csv(out)) == 8 and "written to" not in out
    assert png.exists()


def test_simulate_csv(capsys, trace):
    core_or_skip()
    rc, out, err = run(capsys, "simulate", trace, "--frames", "4", "--policy", "fifo",
                       "--csv")
    assert rc == 0, err
    (row,) = read_csv(out)
    want = pymmu.simulate.simulate(trace, 4, "fifo")
    assert row == {k: str(v) for k, v in want.items()}


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_csv_and_json_exclude_each_other(capsys, trace, command):
    with pytest.raises(SystemExit) as e:
        cli.main([command, str(trace), "--frames", "4", "--csv", "--json"])
    assert e.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_to_pandas(grid):
    pd = pytest.importorskip("pandas")
    df = grid.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(grid.rows[0])
    assert len(df) == len(grid.rows) == 12
    assert df.to_dict("records") == grid.rows
    lru = df[df.policy == "lru"].set_index("frames")["fault_rate"]
    assert lru[8] == grid.fault_rate("lru", 8)


def test_to_pandas_without_pandas(grid, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'pymmu\[pandas\]'"):
        grid.to_pandas()


def test_pandas_extra_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parent.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras["pandas"] == ["pandas>=2"]
    assert "pandas>=2" in extras["test"]


def test_sweep_result_repr_is_short(grid):
    assert repr(grid) == (
        "SweepResult(trace 'scattered', 3 policies x 4 frame counts, page_size 4096)")
    one = pymmu.simulate.SweepResult(rows=[], frames=[8], policies=["lru"], page_size=512)
    assert repr(one) == "SweepResult(1 policy x 1 frame count, page_size 512)"
