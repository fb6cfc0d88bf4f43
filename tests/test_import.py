"""``import pymmu``: works when built; says what to do when the compiled core is not.

The unbuilt cases import a copy of the package's source folder (``*.py``, ``*.pyx``,
``*.pxd``, none, some or all of the compiled modules) in a subprocess started in the
copy's parent, with ``-S`` and only numpy's folder on ``PYTHONPATH``: an installed
pymmu (a wheel, or the editable install's import hook, which would find the compiled
modules of the real tree) stays out of the way, as in a fresh clone.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pymmu

PKG = pathlib.Path(pymmu.__file__).resolve().parent
COMPILED = ("_ptebits", "_core", "_introspect", "_invariants", "_tracefile", "_run")


def compiled_files(name: str) -> list[pathlib.Path]:
    return sorted(PKG.glob(f"{name}.*.so")) + sorted(PKG.glob(f"{name}.*.pyd"))


def copy_package(dest: pathlib.Path, built=()) -> pathlib.Path:
    """A copy of the pymmu source folder in ``dest/pymmu`` with the compiled
    modules named in ``built`` and no others."""
    pkg = dest / "pymmu"
    pkg.mkdir()
    for pattern in ("*.py", "*.pyx", "*.pxd"):
        for f in PKG.glob(pattern):
            shutil.copy2(f, pkg / f.name)
    for name in built:
        files = compiled_files(name)
        assert files, f"pymmu.{name} is not built in {PKG}"
        for f in files:
            shutil.copy2(f, pkg / f.name)
    return pkg


def import_in(cwd: pathlib.Path, code: str = "import pymmu") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(np.__file__))
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_without_the_compiled_core_says_how_to_build(tmp_path):
    pkg = copy_package(tmp_path)
    assert not list(pkg.glob("*.so")) and not list(pkg.glob("*.pyd"))
    proc = import_in(tmp_path)
    assert proc.returncode == 1
    err = proc.stderr
    last = err.strip().splitlines()[-1]
    assert last.startswith("ImportError: pymmu's compiled core is missing: "
                           f"pymmu._ptebits is not built (for this Python) in {pkg}.")
    for what in ("`pip install .`", "`pip install -e .`",
                 "`python setup.py build_ext --inplace`"):
        assert what in last
    # chained from the original error
    assert "ModuleNotFoundError: No module named 'pymmu._ptebits'" in err
    assert "The above exception was the direct cause of the following exception" in err


def test_import_without_the_compiled_core_exception_attributes(tmp_path):
    copy_package(tmp_path)
    code = ("try:\n"
            "    import pymmu\n"
            "except ImportError as e:\n"
            "    c = e.__cause__\n"
            "    print(type(e).__name__, e.name, type(c).__name__, c.name)\n")
    proc = import_in(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ImportError", "pymmu._ptebits",
                                   "ModuleNotFoundError", "pymmu._ptebits"]


@pytest.mark.parametrize("missing", COMPILED)
def test_import_with_one_compiled_module_missing_names_it(tmp_path, missing):
    # a partial or stale build (a new .pyx pulled, not yet built)
    copy_package(tmp_path, built=[n for n in COMPILED if n != missing])
    proc = import_in(tmp_path)
    assert proc.returncode == 1
    assert (f"ImportError: pymmu's compiled core is missing: pymmu.{missing} is not built"
            in proc.stderr)
    assert f"ModuleNotFoundError: No module named 'pymmu.{missing}'" in proc.stderr


def test_other_import_errors_propagate_unchanged(tmp_path):
    # with the core built, a missing dependency is reported as Python reports it
    pkg = copy_package(tmp_path, built=COMPILED)
    with open(pkg / "errors.py", "a") as f:
        f.write("\nimport pymmu_no_such_dependency  # noqa: E402,F401\n")
    proc = import_in(tmp_path)
    assert proc.returncode == 1
    assert (proc.stderr.strip().splitlines()[-1]
            == "ModuleNotFoundError: No module named 'pymmu_no_such_dependency'")
    assert "compiled core" not in proc.stderr


def test_copy_with_the_core_imports(tmp_path):
    # the same copy as above, unmodified, imports and runs: the check passes a built tree
    copy_package(tmp_path, built=COMPILED)
    proc = import_in(tmp_path, "import pymmu; print(pymmu.__file__); "
                               "print(pymmu.Machine(frames=4).frames_free)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(tmp_path / "pymmu" / "__init__.py"), "4"]


def test_normal_import(tmp_path):
    # as a user runs it: the ordinary interpreter, outside the repository
    code = ("import pathlib, pymmu\n"
            "m = pymmu.Machine(frames=8); p = m.spawn(); a = p.mmap(m.page_size)\n"
            "p.write(a, b'hi'); print(p.read(a, 2).decode())\n"
            "print((pathlib.Path(pymmu.__file__).parent / 'samples' / 'ls.lackey.xz')"
            ".is_file())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["hi", "True"]
    # and in this process: the check leaves nothing behind but the names it checks
    for name in COMPILED:
        assert f"pymmu.{name}" in sys.modules
    assert not hasattr(pymmu, "_require_compiled_core")
    assert pymmu._COMPILED == tuple(f"pymmu.{n}" for n in COMPILED)
