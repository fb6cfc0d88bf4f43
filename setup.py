"""Build the Cython core.

All compiler directives live here. ``DEBUG=1 pip install .`` turns bounds checks,
wraparound checks and initialisation checks back on and compiles with -O0 -g.
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("DEBUG", "0") not in ("", "0")


def _write_tables() -> None:
    """pymmu/_tables.pxd and pymmu/policies/_units.pxi from pymmu/tables.py, the
    one source of the names the core numbers (loaded by path: the package itself
    needs the core to import)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_pymmu_tables", "pymmu/tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    tables.write_pxd("pymmu/_tables.pxd")
    tables.write_units("pymmu/policies/_units.pxi")


_write_tables()

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    # nonecheck stays off even in DEBUG: it would need the GIL to check ``self``
    # for None in the nogil fault and replay paths, which Cython then refuses.
    "nonecheck": False,
    "binding": True,
    "embedsignature": True,
}
cflags = ["-O0", "-g"] if DEBUG else ["-O3"]
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]


def ext(name):
    return Extension(
        f"pymmu.{name}",
        [f"pymmu/{name}.pyx"],
        # "." holds pymmu/include/*.h, which the .pxd files name as such: the
        # same one directory serves extensions that cimport pymmu (get_include)
        include_dirs=[".", numpy.get_include()],
        define_macros=macros,
        extra_compile_args=cflags,
        depends=[*sorted(glob.glob("pymmu/include/*.h") + glob.glob("pymmu/*.pxi")
                         + glob.glob("pymmu/policies/*.pxi")),
                 "pymmu/_pte.pxd", "pymmu/_core.pxd", "pymmu/_tables.pxd",
                 "pymmu/counting.pxd"],
    )


setup(
    ext_modules=cythonize(
        [ext("_ptebits"), ext("_core"), ext("_invariants"), ext("_testing"), ext("_tracefile"),
         ext("_run"), ext("_introspect"), ext("_snapshot")],
        compiler_directives=directives,
        include_path=["pymmu"],
    ),
)
