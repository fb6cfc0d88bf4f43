"""The command line on traces of any length (DESIGN.md section 10): simulate and
sweep stream, ``pymmu convert``, ``--sample``, and bad trace files as one line
with exit status 2.
"""
from __future__ import annotations

import gzip
import json
import lzma
import os
import subprocess
import sys

import numpy as np
import pytest

import pymmu
from pymmu import cli, traces
from pymmu.simulate import simulate, sweep

LS = traces.sample("ls")


def run(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(command, rc, err) -> str:
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pymmu {command}: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def ls_trace():
    return traces.read_lackey(LS)


def test_simulate_a_path_equals_simulate_the_trace(ls_trace, tmp_path):
    for policy in ("clock", "lru", "fifo", "random", "opt"):
        whole = simulate(ls_trace, 24, policy)
        assert simulate(LS, 24, policy) == whole
        assert simulate(LS, 24, policy, chunk_size=999) == whole
    p = tmp_path / "ls.pmt"
    ls_trace.save(p)
    assert simulate(p, 24, "opt") == simulate(ls_trace, 24, "opt")
    assert simulate(p, 24, "clock", format="binary") == simulate(ls_trace, 24, "clock")


def test_sweep_of_a_path_converts_once(ls_trace, monkeypatch):
    from pymmu import trace_io

    made = []
    real = trace_io.TraceWriter

    class Spy(real):
        def __init__(self, path):
            made.append(path)
            super().__init__(path)

    monkeypatch.setattr(trace_io, "TraceWriter", Spy)
    by_path = sweep(LS, [8, 64], ["clock", "opt"], max_workers=2)
    assert len(made) == 1                      # one binary copy for every cell
    assert not os.path.exists(made[0])         # and it is gone afterwards
    in_memory = sweep(ls_trace, [8, 64], ["clock", "opt"], max_workers=1)
    assert by_path.rows == in_memory.rows
    assert by_path.name == "ls.lackey.xz"


def test_sweep_default_frames_come_from_the_trace():
    r = sweep(LS, None, ["fifo"], max_workers=1)
    assert r.frames == [4, 8, 16, 32, 64, 128, 256, 512]   # 270 distinct pages


def test_cli_sample(capsys):
    rc, out, err = run(capsys, "simulate", "--sample", "ls", "--frames", "32", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["records"] == 873_174 and r["distinct_pages"] == 270
    assert r == {"trace": LS, **simulate(LS, 32)}
    rc, out, err = run(capsys, "sweep", "--sample", "ls", "--frames", "8,16",
                       "--policies", "lru", "--workers", "1")
    assert rc == 0 and "ls.lackey.xz" in out


@pytest.mark.parametrize("args, what", [
    (["--sample", "nope"], "--sample: no sample trace 'nope'"),
    ([], "give a TRACE file or --sample NAME"),
    (["x", "--sample", "ls"], "give a TRACE file or --sample NAME"),
])
def test_cli_sample_errors(capsys, args, what):
    rc, out, err = run(capsys, "simulate", *args, "--frames", "4")
    assert what in one_error_line("simulate", rc, err)


def test_cli_convert(capsys, tmp_path, ls_trace):
    out_path = tmp_path / "ls.pmt"
    rc, out, err = run(capsys, "convert", "--sample", "ls", out_path, "--no-progress")
    assert rc == 0, err
    assert "873,174 records written" in out
    assert np.array_equal(traces.load(out_path).addr, ls_trace.addr)
    rc, out, err = run(capsys, "simulate", out_path, "--frames", "16", "--json")
    assert rc == 0 and json.loads(out)["faults"] == simulate(ls_trace, 16)["faults"]


@pytest.mark.parametrize("command", ["simulate", "sweep", "convert"])
@pytest.mark.parametrize("make, what", [
    (lambda d: d, "Is a directory|is a directory"),
    (lambda d: d / "missing", "No such file or directory"),
    (lambda d: _write(d / "t.xz", lzma.compress(b"I  1000,4\n" * 5000)[:-30]), "truncated xz"),
    (lambda d: _write(d / "t.gz", gzip.compress(b"I  1000,4\n" * 5000)[:-30]),
     "truncated gzip|corrupt gzip"),
    (lambda d: _write(d / "g", bytes(range(256)) * 64), "not a trace"),
    (lambda d: _write(d / "bad", b"I  1000,4\n L 2000,8\n L zz,8\n"), "line 3"),
    (lambda d: _write(d / "bomb.gz", gzip.compress(bytes(64 << 20))), "line end"),
])
def test_cli_bad_trace_files(capsys, tmp_path, command, make, what):
    import re

    path = make(tmp_path)
    extra = {"simulate": ["--frames", "4"], "sweep": ["--frames", "4", "--workers", "1"],
             "convert": [tmp_path / "out.pmt"]}[command]
    rc, out, err = run(capsys, command, path, *extra)
    assert re.search(what, one_error_line(command, rc, err))
    assert not (tmp_path / "out.pmt").exists()


def _write(path, data):
    path.write_bytes(data)
    return path


def test_cli_huge_record_sizes(capsys, tmp_path):
    # ' L 0,4294967295' touches 2**20 pages: counted and replayed, never listed
    p = _write(tmp_path / "t", b" L 0,4294967295\n L 1000,8\n")
    rc, out, err = run(capsys, "simulate", p, "--frames", "64", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["references"] == (1 << 20) + 1 and r["distinct_pages"] == 1 << 20


def test_simulate_memory_does_not_grow_with_the_trace(tmp_path):
    # the peak RSS of `pymmu simulate` on a trace 8 times longer is about the same
    text = lzma.decompress(open(LS, "rb").read())
    small, big = tmp_path / "small.lackey", tmp_path / "big.lackey"
    small.write_bytes(text)
    with open(big, "wb") as f:
        for _ in range(8):
            f.write(text)
    code = ("import resource, sys, pymmu.cli; pymmu.cli.main(['simulate', sys.argv[1], "
            "'--frames', '64', '--no-progress']); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    peaks = []
    for p in (small, big):
        # (cwd "/": the source tree holds no compiled core to import)
        out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True,
                             text=True, check=True, cwd="/")
        peaks.append(int(out.stderr.split()[-1]))
    # 8x the records (7M, 91 MB as columns) cost less than 24 MB more
    assert peaks[1] - peaks[0] < 24 << 10, peaks


def test_stream_of_a_binary_trace_keeps_rss_flat(tmp_path):
    # a streamed binary trace maps one chunk at a time: reading 200 MB of it
    # leaves the resident set where it was
    t = traces.Trace(np.arange(16_000_000, dtype=np.uint64) * 64)
    p = tmp_path / "t.pmt"
    t.save(p)
    del t
    code = ("import resource, sys, pymmu\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "n = sum(int(c.addr[-1] > 0) + len(c) for c in "
            "pymmu.traces.stream(sys.argv[1], chunk=1 << 18))\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)")
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True,
                         text=True, check=True, cwd="/")
    assert int(out.stdout) < 40 << 10      # KiB: a few chunks, not 208 MB


def test_readme_commands_use_shipped_traces():
    # every trace path the README shows exists in a fresh clone
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    readme = open(os.path.join(root, "README.md")).read()
    assert "../shared" not in readme
    assert "valgrind --tool=lackey --trace-mem=yes" in readme
    assert "--sample ls" in readme
    assert pymmu.traces.sample("ls")
