"""The DEBUG switch of setup.py: bounds checks back on, -O0, and the core still runs.

Compiler directives live in setup.py only. This builds a copy of the sources with
``DEBUG=1`` (about a minute at -O0) and runs a fork / pressure / replay smoke on it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMOKE = """
import numpy as np, pymmu
from pymmu.traces import Trace, LOAD
m = pymmu.Machine(8, swap_slots=64)
p = m.spawn()
a = p.mmap(32 * 4096)
for i in range(32):
    p.write(a + i * 4096, bytes([i + 1]) * 10)
c = p.fork()
c.write(a, b"child")
assert p.read(a, 5) == bytes([1]) * 5 and c.read(a, 5) == b"child"
assert m.check() is None
pages = np.random.default_rng(0).integers(0, 100, 5000).astype(np.uint64)
for policy in ("clock", "fifo", "lru", "random", "opt"):
    mm = pymmu.Machine(16, swap_slots=200, zero_page=False, policy=policy)
    stats = mm.replay(Trace(pages * np.uint64(4096), kind=LOAD))
    assert stats["major_faults"] > 0 and mm.check() is None
print("ok", pymmu.__file__)
"""


def test_debug_build_compiles_with_bounds_checks_and_runs(tmp_path):
    pytest.importorskip("Cython")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "*.so", "*.c", "build", "*.egg-info", ".git", "benchmarks", "docs", "tests",
        "__pycache__", ".hypothesis"))
    env = dict(os.environ, DEBUG="1")
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                           cwd=src, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "-O0" in build.stdout + build.stderr
    # bounds checks are back: memoryview indexing raises IndexError (a plain build
    # generates none of these calls)
    generated = (src / "pymmu" / "_core.c").read_text()
    assert generated.count("__Pyx_RaiseBufferIndexErrorNogil(__pyx") > 10
    run = subprocess.run([sys.executable, "-c", SMOKE], cwd=src, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok") and str(src) in run.stdout
