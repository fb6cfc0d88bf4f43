"""``pymmu.simulate`` / ``pymmu.sweep`` and the ``pymmu simulate`` / ``pymmu sweep`` commands.

* simulate builds the documented machine (zero_page=False, one swap slot per
  distinct page) and returns what ``Machine.replay`` returns on it, plus the
  derived numbers; its faults are the textbook miss counts;
* a chunked run (what the progress bar uses) gives the same counters as one call;
* sweep gives the same rows sequentially, on a local process pool and on a Dask
  LocalCluster (skipped without dask.distributed);
* the commands run as a new user would run them on the shipped sample trace
  pymmu/samples/ls.lackey.xz:
  tables, --json, --plot (skipped without matplotlib), --scheduler.
"""
from __future__ import annotations

import collections
import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import pymmu
from pymmu.simulate import (
    SweepResult,
    detect_format,
    load_trace,
    parse_frames,
    simulate,
    sweep,
)
from pymmu.traces import FETCH, LOAD, MODIFY, STORE, Trace

ROOT = Path(__file__).resolve().parent.parent
# The sample traces ship inside the package (pymmu/samples, see its README.md).
LS = Path(pymmu.__file__).resolve().parent / "samples" / "ls.lackey.xz"


def core_or_skip():
    try:
        pymmu.Machine(1)
    except NotImplementedError as e:
        pytest.skip(f"core: pymmu.Machine is still a placeholder ({e})")


@pytest.fixture(scope="module")
def small_trace() -> Trace:
    """20,000 records over 60 pages with locality, all kinds, some page crossings."""
    rng = np.random.default_rng(7)
    n = 20_000
    hot = rng.integers(0, 12, n)
    cold = rng.integers(0, 60, n)
    page = np.where(rng.random(n) < 0.8, hot, cold).astype(np.uint64)
    offset = rng.integers(0, 4096, n).astype(np.uint64)
    addr = np.uint64(0x40000000) + page * np.uint64(4096) + offset
    kind = rng.choice([FETCH, LOAD, STORE, MODIFY], n, p=[0.5, 0.3, 0.15, 0.05])
    size = rng.choice([1, 4, 8], n).astype(np.uint32)
    return Trace(addr, kind=kind.astype(np.uint8), size=size)


@pytest.fixture(scope="module")
def ls_trace() -> Trace:
    return load_trace(LS)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # Run outside the repository: from its root, the source tree (no compiled
    # core) would shadow the installed package.
    return subprocess.run([sys.executable, "-m", "pymmu", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=tempfile.gettempdir(), check=False)


# --------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------

def textbook_misses(pages, frames: int, policy: str) -> int:
    """Misses of a plain LRU / FIFO / OPT simulator on a page-number sequence."""
    pages = [int(p) for p in pages]
    resident: collections.OrderedDict[int, None] = collections.OrderedDict()
    if policy == "opt":
        nxt, last = [0] * len(pages), {}
        for i in range(len(pages) - 1, -1, -1):
            nxt[i] = last.get(pages[i], len(pages))
            last[pages[i]] = i
        when: dict[int, int] = {}
    misses = 0
    for i, p in enumerate(pages):
        if p in resident:
            if policy == "lru":
                resident.move_to_end(p)
        else:
            misses += 1
            if len(resident) == frames:
                if policy == "opt":
                    victim = max(resident, key=lambda q: when[q])
                    del resident[victim]
                else:
                    resident.popitem(last=False)
            resident[p] = None
        if policy == "opt":
            when[p] = nxt[i]
    return misses


@pytest.mark.parametrize("policy", ["clock", "lru", "fifo", "opt", "random"])
def test_simulate_matches_replay_on_the_documented_machine(small_trace, policy):
    core_or_skip()
    distinct = small_trace.distinct_pages(4096)
    m = pymmu.Machine(16, swap_slots=distinct, policy=policy, zero_page=False)
    direct = m.replay(small_trace)
    r = simulate(small_trace, 16, policy)
    assert {k: r[k] for k in direct} == direct
    refs = len(small_trace.pages(4096))
    assert r["records"] == len(small_trace)
    assert r["references"] == refs > len(small_trace)  # some records cross pages
    assert r["distinct_pages"] == r["swap_slots"] == distinct
    assert r["faults"] == direct["minor_faults"] + direct["major_faults"]
    assert r["fault_rate"] == r["faults"] / refs
    assert (r["policy"], r["frames"], r["page_size"]) == (policy, 16, 4096)


@pytest.mark.parametrize("policy", ["lru", "fifo", "opt"])
def test_simulate_faults_are_textbook_misses(small_trace, policy):
    core_or_skip()
    t = small_trace[:4000]
    for frames in (3, 10):
        r = simulate(t, frames, policy)
        assert r["faults"] == textbook_misses(t.pages(4096), frames, policy)


@pytest.mark.parametrize("policy", ["clock", "lru", "fifo", "random", "opt"])
def test_chunked_equals_unchunked(small_trace, policy):
    core_or_skip()
    whole = simulate(small_trace, 12, policy)
    for chunk in (1000, 4096, 7777):
        assert simulate(small_trace, 12, policy, chunk_size=chunk) == whole
    # progress=True chunks at DEFAULT_CHUNK when tqdm is there, and must not fail without it
    assert simulate(small_trace, 12, policy, progress=True) == whole


def test_chunked_fault_index_is_the_position_in_the_whole_trace():
    core_or_skip()
    addr = np.full(3000, 0x1000, dtype=np.uint64)
    addr[2500] = 1 << 40  # above a 32-bit address space
    t = Trace(addr)
    for chunk in (None, 1000):
        with pytest.raises(pymmu.SegmentationFault) as info:
            simulate(t, 4, "lru", va_bits=32, chunk_size=chunk)
        assert info.value.index == 2500


def test_simulate_arguments():
    core_or_skip()
    t = Trace([0, 4096])
    with pytest.raises(ValueError, match="policy"):
        simulate(t, 4, "belady")
    with pytest.raises(ValueError, match="page_size"):
        simulate(t, 4, "lru", page_size=3000)
    with pytest.raises(ValueError, match="frames"):
        simulate(t, 0, "lru")
    with pytest.raises(TypeError, match="Trace or a path"):
        simulate([0, 4096], 4, "lru")
    empty = simulate(Trace([], kind=LOAD), 4, "lru")
    assert (empty["records"], empty["references"], empty["faults"],
            empty["fault_rate"]) == (0, 0, 0, 0.0)


def test_trace_pickles_with_read_only_columns(small_trace):
    t = pickle.loads(pickle.dumps(small_trace))
    for name in ("addr", "kind", "size"):
        a, b = getattr(t, name), getattr(small_trace, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
        assert not a.flags.writeable and a.flags.c_contiguous


# --------------------------------------------------------------------------
# trace files
# --------------------------------------------------------------------------

def test_detect_format(tmp_path):
    import gzip

    lackey = tmp_path / "a.txt"
    lackey.write_text("==12== Lackey, an example\nI  04016e0,3\n L 1ffefffd38,8\n")
    simple = tmp_path / "b.lackey"  # the name plays no part
    simple.write_text("# comment\n\nR 0x1f00\nw 7936 8\n")
    gz = tmp_path / "c"
    gz.write_bytes(gzip.compress(b"I  0400000,4\n S 0401000,8\n"))
    junk = tmp_path / "d"
    junk.write_text("hello\nworld\n")
    assert detect_format(lackey) == "lackey"
    assert detect_format(simple) == "simple"
    assert detect_format(gz) == "lackey"
    with pytest.raises(ValueError, match="not a trace"):
        detect_format(junk)
    assert load_trace(simple).kind.tolist() == [LOAD, STORE]
    assert len(load_trace(gz)) == 2


def test_parse_frames():
    assert parse_frames("16,32,64") == [16, 32, 64]
    assert parse_frames("64, 16,16") == [16, 64]
    assert parse_frames("4:32") == [4, 8, 16, 32]
    assert parse_frames("4:16,100") == [4, 8, 16, 100]
    # LOW:HIGH gives the powers of two between the ends, not LOW doubled
    assert parse_frames("3:20") == [4, 8, 16]
    assert parse_frames("1:1") == [1]
    for bad in ("", "0", "8:4", "x"):
        with pytest.raises(ValueError):
            parse_frames(bad)
    with pytest.raises(ValueError, match="'5:7' holds no power of two"):
        parse_frames("5:7")
    with pytest.raises(ValueError, match="'16,x': 'x' is not an integer"):
        parse_frames("16,x")


# --------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------

def test_sweep_pool_equals_sequential(small_trace):
    core_or_skip()
    frames, policies = [4, 8, 16, 64], ["clock", "lru", "fifo", "opt"]
    seq = sweep(small_trace, frames, policies, max_workers=1)
    pool = sweep(small_trace, [64, 16, 8, 4, 8], policies, max_workers=2)
    assert isinstance(pool, SweepResult)
    assert pool.rows == seq.rows
    assert pool.frames == frames and pool.policies == policies
    assert len(seq) == 16
    for p in policies:
        for f in frames:
            assert seq.row(p, f) == simulate(small_trace, f, p)
    rates = seq.matrix()
    assert rates.shape == (4, 4)
    assert (np.diff(rates[:, policies.index("opt")]) <= 0).all()  # OPT has no anomaly
    assert (rates[:, policies.index("opt")] <= rates.min(axis=1) + 1e-12).all()
    table = seq.table()
    assert table.splitlines()[0].split() == ["frames", *policies]
    assert len(table.splitlines()) == 5 and "%" in table


def test_sweep_reads_a_path_and_names_it(tmp_path):
    core_or_skip()
    path = tmp_path / "t.simple"
    path.write_text("".join(f"R {0x10000 + 4096 * (i % 7):#x}\n" for i in range(100)))
    r = sweep(path, [2, 8], "lru,fifo", max_workers=1)
    assert r.name == "t.simple"
    assert r.fault_rate("lru", 8) == 7 / 100
    assert r.fault_rate("lru", 2) == 1.0


# --------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------

def test_cli_simulate_table_and_json(ls_trace):
    core_or_skip()
    out = run_cli("simulate", LS, "--frames", "32", "--policy", "lru")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "873,174 accesses" in out.stdout and "270 distinct pages" in out.stdout
    rows = {ln.rsplit(None, 1)[0].strip(): ln.rsplit(None, 1)[1]
            for ln in lines if ln and not ln.startswith(("trace", "machine", "counter"))
            and not ln.endswith("%")}
    expected = simulate(ls_trace, 32, "lru")
    assert rows["faults"] == f"{expected['faults']:,}"
    assert rows["major_faults"] == f"{expected['major_faults']:,}"
    assert "cow_copies" not in rows  # zero counters are left out
    assert any(ln.startswith("fault rate") for ln in lines)

    js = run_cli("simulate", LS, "--frames", "32", "--policy", "lru", "--format", "lackey",
                 "--json")
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert data.pop("trace") == str(LS)
    assert data == expected


def test_cli_simulate_errors(tmp_path):
    junk = tmp_path / "junk"
    junk.write_text("nothing here\n")
    out = run_cli("simulate", junk, "--frames", "4")
    assert out.returncode == 2 and "not a trace" in out.stderr
    out = run_cli("simulate", tmp_path / "missing", "--frames", "4")
    assert out.returncode == 2 and "error" in out.stderr
    out = run_cli("simulate", junk, "--frames", "0")
    assert out.returncode == 2 and "--frames: must be at least 1" in out.stderr
    out = run_cli("simulate", junk)
    assert out.returncode == 2  # argparse: --frames is required


def test_cli_sweep_table_json_and_plot(ls_trace, tmp_path):
    core_or_skip()
    png = tmp_path / "mrc.png"
    have_mpl = True
    try:
        import matplotlib
    except ImportError:
        have_mpl = False
    args = ["sweep", LS, "--frames", "8,32", "--policies", "lru,opt", "--workers", "2"]
    out = run_cli(*args, *(["--plot", png] if have_mpl else []))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["frames"])
    assert lines[head].split() == ["frames", "lru", "opt"]
    expected = sweep(ls_trace, [8, 32], ["lru", "opt"], max_workers=1)
    for i, f in enumerate([8, 32]):
        cells = lines[head + 1 + i].split()
        assert cells[0] == str(f)
        assert cells[1] == f"{100 * expected.fault_rate('lru', f):.3f}"
        assert cells[3] == f"{100 * expected.fault_rate('opt', f):.3f}"

    js = run_cli(*args, "--json", "--workers", "1")
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout)["rows"] == expected.rows

    if not have_mpl:
        pytest.skip("matplotlib is not installed: --plot not tested")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] >= 400 and img.shape[1] >= 600
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_plot_figure_has_one_line_per_policy(small_trace):
    pytest.importorskip("matplotlib")
    core_or_skip()
    r = sweep(small_trace, [2, 4, 8, 16], ["clock", "opt"], max_workers=1)
    r.name = "small"
    fig = r.plot()
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.get_lines()[:2]] == ["clock", "opt"]
    assert ax.get_xscale() == "log"
    assert "small" in ax.get_title()
    assert list(ax.get_lines()[1].get_ydata()) == list(r.matrix()[:, 1])


# --------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        yield cluster


def test_sweep_on_dask_equals_local(small_trace, dask_cluster):
    core_or_skip()
    from dask.distributed import Client

    frames, policies = [4, 16], ["lru", "fifo", "opt"]
    local = sweep(small_trace, frames, policies, max_workers=1)
    with Client(dask_cluster) as client:
        calls = {"scatter": [], "submit": 0}
        scatter, submit = client.scatter, client.submit

        def spy_scatter(data, **kw):
            calls["scatter"].append((data, kw))
            return scatter(data, **kw)

        def spy_submit(func, *args, **kw):
            calls["submit"] += 1
            assert not any(isinstance(a, Trace) for a in args)  # only the scattered future
            return submit(func, *args, **kw)

        client.scatter, client.submit = spy_scatter, spy_submit
        on_dask = sweep(small_trace, frames, policies, client=client)
        assert on_dask.rows == local.rows
        # the trace went out once, to every worker; then one task per cell
        assert len(calls["scatter"]) == 1
        assert calls["scatter"][0][0] is small_trace
        assert calls["scatter"][0][1].get("broadcast") is True
        assert calls["submit"] == len(frames) * len(policies)
    by_address = sweep(small_trace, frames, policies, scheduler=dask_cluster.scheduler_address)
    assert by_address.rows == local.rows


def test_cli_sweep_scheduler(ls_trace, dask_cluster):
    core_or_skip()
    out = run_cli("sweep", LS, "--frames", "16", "--policies", "fifo,clock", "--json",
                  "--scheduler", dask_cluster.scheduler_address)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == sweep(ls_trace, [16], ["fifo", "clock"],
                                                   max_workers=1).rows


# --------------------------------------------------------------------------
# optional dependencies missing
# --------------------------------------------------------------------------

def test_without_tqdm_matplotlib_or_dask(small_trace, monkeypatch):
    core_or_skip()
    for name in ("tqdm", "tqdm.auto", "matplotlib", "dask", "dask.distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    whole = simulate(small_trace, 8, "lru")
    assert simulate(small_trace, 8, "lru", progress=True) == whole  # no bar, no error
    r = sweep(small_trace, [8], ["lru"], max_workers=1, progress=True)
    assert r.rows == [whole]
    with pytest.raises(ImportError, match=r"pymmu\[plot\]"):
        r.plot()
    with pytest.raises(ImportError, match=r"pymmu\[dask\]"):
        sweep(small_trace, [8], ["lru"], scheduler="tcp://127.0.0.1:1")
