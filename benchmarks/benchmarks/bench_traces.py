"""Trace files: reading lackey text (plain and xz), a streamed replay, the binary format.

The files are made from the sample trace shipped in the package
(``pymmu.traces.sample("ls")``, 873,174 records), so the suite runs on a fresh clone:
its lackey text decompressed into a temporary directory (about 12.5 MB), the shipped
``.xz`` itself, and the binary format ``Trace.save`` writes. They are made once per
process (asv runs each benchmark in its own) and removed at its exit.

* ``ReadTrace``: ``read_lackey`` of the plain text and of the ``.xz`` file (time and
  peak memory), and ``load`` of the binary trace (memory-mapped: O(1)).
* ``StreamReplay``: ``m.replay(stream(path))`` of the plain text on a machine under
  pressure (64 frames, swap for every page, no zero page), time (default chunk) and
  peak memory (chunks of 65,536 records); replay
  changes the machine, so ``number = 1`` (``setup`` runs before every timed call).

benchmarks/compare.py (``--only traces``) times the same paths side by side with
``wc -l`` and ``xz -dc``. ``SMOKE`` holds the smaller size tests/test_benchmarks.py
substitutes to run every benchmark once quickly.
"""
import atexit
import functools
import lzma
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .common import PAGE, machine_class

RECORDS = None                  # None: the whole ls sample; else its first N records
SMOKE = {"RECORDS": 2_000}

FRAMES = 64                     # frames of the streamed replay's machine
CHUNK = 1 << 16                 # records per chunk of the streamed replay


def _prefix(text, records):
    """``text`` up to and including its ``records``-th record line (lackey records
    start with "I" or " "; Valgrind's own lines with "=", "-" or "*")."""
    raw = np.frombuffer(text, np.uint8)
    ends = np.flatnonzero(raw == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    first = raw[starts]
    last = np.flatnonzero((first == ord("I")) | (first == ord(" ")))[records - 1]
    return text[:ends[last] + 1]


@functools.lru_cache(maxsize=2)
def trace_files(records):
    """{"plain", "xz", "binary": path, "records": n, "distinct": 4 KiB pages}, made
    once per process in a temporary directory removed at exit."""
    from pymmu.traces import read_lackey, sample

    tmp = Path(tempfile.mkdtemp(prefix="pymmu-asv-traces-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    shipped = Path(sample("ls"))
    text = lzma.decompress(shipped.read_bytes())
    files = {"plain": tmp / "ls.lackey", "xz": tmp / "ls.lackey.xz",
             "binary": tmp / "ls.pmt"}
    if records is None:
        shutil.copyfile(shipped, files["xz"])
    else:
        text = _prefix(text, records)
        files["xz"].write_bytes(lzma.compress(text, preset=6))
    files["plain"].write_bytes(text)
    trace = read_lackey(files["plain"])
    trace.save(files["binary"])
    out = {k: str(v) for k, v in files.items()}
    out["records"] = len(trace)
    out["distinct"] = trace.distinct_pages(PAGE)
    return out


class ReadTrace:
    """read_lackey of the ls sample as plain text and as .xz; load of its binary form."""

    timeout = 300

    def setup(self):
        self.files = trace_files(RECORDS)

    def time_read_lackey_plain(self):
        from pymmu.traces import read_lackey
        read_lackey(self.files["plain"])

    def time_read_lackey_xz(self):
        from pymmu.traces import read_lackey
        read_lackey(self.files["xz"])

    def peakmem_read_lackey(self):
        from pymmu.traces import read_lackey
        read_lackey(self.files["plain"])

    def time_load_binary(self):
        from pymmu.traces import load
        load(self.files["binary"])


class StreamReplay:
    """m.replay(stream(path)) of the ls sample's plain text, end to end, on a machine
    of FRAMES frames with swap for every page and no zero page (time: the default
    chunk, as compare.py; peak memory: chunks of CHUNK records)."""

    number = 1
    timeout = 300

    def setup(self):
        self.files = trace_files(RECORDS)
        self.m = machine_class()(FRAMES, zero_page=False,
                                 swap_slots=self.files["distinct"])

    def time_stream_replay(self):
        from pymmu.traces import stream
        self.m.replay(stream(self.files["plain"]))

    def peakmem_stream_replay(self):
        from pymmu.traces import stream
        self.m.replay(stream(self.files["plain"], chunk=CHUNK))
