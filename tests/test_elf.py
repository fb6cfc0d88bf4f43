"""Executing real ELF binaries (DESIGN.md section 5, issue 3 item 4).

``Image.from_elf`` maps a binary's PT_LOAD segments with their permissions,
demand-paged from the file. The expected segments come from ``readelf -lW``
(binutils), parsed here, and the expected page contents are assembled here from
the file bytes, so nothing is taken from pymmu's own ELF reading.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

import pymmu
from pymmu import pte as P

PS = 4096
PIE_BASE = 0x555555554000
BINARIES = ["/bin/true", "/bin/ls"]

pytestmark = pytest.mark.skipif(shutil.which("readelf") is None,
                                reason="readelf (binutils) is not installed")

_LOAD = re.compile(r"^\s*LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+"
                   r"(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+([RWE ]+?)\s+(0x[0-9a-f]+)\s*$")


class Elf:
    """What readelf says about a binary, plus its bytes."""

    def __init__(self, path):
        if not os.path.exists(path):
            pytest.skip(f"{path} does not exist here")
        out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True,
                             check=True, env={**os.environ, "LC_ALL": "C"}).stdout
        self.path = path
        self.type = re.search(r"Elf file type is (\w+)", out).group(1)
        self.entry = int(re.search(r"Entry point (0x[0-9a-f]+)", out).group(1), 16)
        self.loads = []                # (offset, vaddr, filesz, memsz, prot)
        for line in out.splitlines():
            mt = _LOAD.match(line)
            if mt:
                off, vaddr, _, filesz, memsz = (int(mt.group(i), 16) for i in range(1, 6))
                flags = mt.group(6)
                prot = ((pymmu.PROT_READ if "R" in flags else 0)
                        | (pymmu.PROT_WRITE if "W" in flags else 0)
                        | (pymmu.PROT_EXEC if "E" in flags else 0))
                if memsz:
                    self.loads.append((off, vaddr, filesz, memsz, prot))
        assert self.loads, out
        with open(path, "rb") as f:
            self.blob = f.read()

    def bias(self, base=None):
        if self.type == "EXEC":
            return 0
        return PIE_BASE if base is None else base

    def pages(self, page_size=PS, base=None):
        """{vpn: (prot, content or None)}: content for pages holding file bytes."""
        b = self.bias(base)
        prot, content = {}, {}
        for off, vaddr, filesz, memsz, pr in self.loads:
            lo, hi = vaddr + b, vaddr + b + memsz
            for vpn in range(lo // page_size, (hi - 1) // page_size + 1):
                prot[vpn] = prot.get(vpn, 0) | pr
            fhi = lo + filesz
            for vpn in range(lo // page_size, (fhi - 1) // page_size + 1 if filesz else 0):
                page = content.setdefault(vpn, bytearray(page_size))
                s, e = max(lo, vpn * page_size), min(fhi, (vpn + 1) * page_size)
                page[s - vpn * page_size:e - vpn * page_size] = \
                    self.blob[off + s - lo:off + e - lo]
        return {vpn: (prot[vpn], bytes(content[vpn]) if vpn in content else None)
                for vpn in sorted(prot)}

    def file_offset(self, vaddr_unbiased):
        for off, vaddr, filesz, memsz, pr in self.loads:
            if vaddr <= vaddr_unbiased < vaddr + filesz:
                return off + vaddr_unbiased - vaddr
        raise AssertionError(f"{vaddr_unbiased:#x} is in no segment's file bytes")


@pytest.fixture(scope="module", params=BINARIES)
def elf(request):
    return Elf(request.param)


def all_free(m):
    return m.frames_free == m.frames and m.swap_free == m.swap_slots


# --- the image ---------------------------------------------------------------------


def test_segments_and_permissions_match_readelf(elf):
    img = pymmu.Image.from_elf(elf.path)
    b = elf.bias()
    assert elf.type == "DYN" and b == PIE_BASE          # both are PIEs on Debian
    got = [(s.vaddr, s.prot, s.memsz, s.data) for s in img.segments]
    want = [(vaddr + b, prot, memsz, elf.blob[off:off + filesz])
            for off, vaddr, filesz, memsz, prot in sorted(elf.loads, key=lambda x: x[1])]
    assert got == want
    assert img.entry == elf.entry + PIE_BASE
    prots = {s.prot for s in img.segments}
    assert pymmu.PROT_READ | pymmu.PROT_EXEC in prots          # text
    assert pymmu.PROT_READ | pymmu.PROT_WRITE in prots         # data


@pytest.mark.parametrize("base", [0x400000, 0x7f0000000000, 0x10000])
def test_custom_base(elf, base):
    img = pymmu.Image.from_elf(elf.path, base=base)
    assert img.entry == elf.entry + base
    assert [s.vaddr for s in img.segments] == sorted(v + base for _, v, _, _, _ in elf.loads)


def test_non_elf_files_raise_value_error(tmp_path):
    for name, blob in [("text", b"hello, world\n"), ("empty", b""),
                       ("script", b"#!/bin/sh\necho hi\n"),
                       ("shortelf", b"\x7fELF" + bytes(12))]:
        f = tmp_path / name
        f.write_bytes(blob)
        with pytest.raises(ValueError):
            pymmu.Image.from_elf(f)


def test_relocatable_object_is_not_an_executable():
    obj = "/usr/lib/x86_64-linux-gnu/crt1.o"
    if not os.path.exists(obj):
        pytest.skip(f"{obj} does not exist here")
    with pytest.raises(ValueError):
        pymmu.Image.from_elf(obj)


# --- exec ---------------------------------------------------------------------------


def test_exec_maps_segments_and_reads_nothing(Machine, elf):
    img = pymmu.Image.from_elf(elf.path)
    m = Machine(64)
    p = m.spawn()
    p.exec(img)
    assert m.stats["file_reads"] == 0 and m.stats["major_faults"] == 0
    assert m.frames_free == 64
    assert p.rss == 0
    expected = elf.pages()
    got = {}
    for mp in p.maps():
        if mp.kind == "file":
            for vpn in range(mp.start // PS, mp.end // PS):
                got[vpn] = mp.prot
    assert got == {vpn: pr for vpn, (pr, _) in expected.items()}
    stack = [mp for mp in p.maps() if mp.kind == "stack"]
    assert len(stack) == 1 and stack[0].end == 1 << 48
    for vpn in expected:
        assert p.translate(vpn * PS) is None
    m.check()
    p.exit()
    assert all_free(m)


def test_fetch_entry_reads_the_file_on_first_touch(Machine, elf):
    img = pymmu.Image.from_elf(elf.path)
    m = Machine(64)
    p = m.spawn()
    p.exec(img)
    off = elf.file_offset(elf.entry)
    assert p.translate(img.entry) is None
    code = p.fetch(img.entry, 16)
    assert code == elf.blob[off:off + 16]
    s = m.stats
    assert (s["file_reads"], s["major_faults"], s["minor_faults"]) == (1, 1, 0)
    assert m.frames_free == 63
    d = P.decode(p.pte(img.entry))
    assert d.present and d.executable and d.readable and not d.writable and not d.cow
    assert p.fetch(img.entry, 16) == code                 # resident now: no fault
    assert m.stats["file_reads"] == 1 and m.stats["major_faults"] == 1
    with pytest.raises(pymmu.ProtectionFault):
        p.write(img.entry, b"\x90")                       # text is not writable
    with pytest.raises(pymmu.ProtectionFault):
        p.fetch(min(s_.vaddr for s_ in img.segments if not s_.prot & pymmu.PROT_EXEC), 1)
    m.check()
    p.exit()
    assert all_free(m)


def test_every_page_reads_its_file_bytes_and_bss_is_zero(Machine, elf):
    img = pymmu.Image.from_elf(elf.path)
    pages = elf.pages()
    m = Machine(len(pages) + 4)
    p = m.spawn()
    p.exec(img)
    nfile = sum(1 for _, c in pages.values() if c is not None)
    for vpn, (prot, content) in pages.items():
        got = p.read(vpn * PS, PS)
        assert got == (content if content is not None else bytes(PS)), hex(vpn * PS)
    s = m.stats
    assert s["file_reads"] == s["major_faults"] == nfile
    assert s["zero_page_maps"] == len(pages) - nfile    # pure bss pages: demand-zero
    assert m.frames_free == m.frames - nfile
    m.check()
    p.exit()
    assert all_free(m)


def test_bss_is_demand_zero(Machine):
    elf = Elf("/bin/ls")
    img = pymmu.Image.from_elf(elf.path)
    off, vaddr, filesz, memsz, prot = max(elf.loads, key=lambda x: x[1])
    assert memsz > filesz and prot & pymmu.PROT_WRITE
    m = Machine(16)
    p = m.spawn()
    p.exec(img)
    fend, mend = PIE_BASE + vaddr + filesz, PIE_BASE + vaddr + memsz
    # the tail of the last file page, past the file bytes, is zero
    tail = (fend + PS - 1) // PS * PS
    assert p.read(fend, tail - fend) == bytes(tail - fend)
    assert p.read(fend - 8, 8) == elf.blob[off + filesz - 8:off + filesz]
    assert m.stats["file_reads"] == 1
    if tail < mend:                                       # a page of pure bss
        before = dict(m.stats)
        assert p.read(tail, mend - tail) == bytes(mend - tail)
        assert m.stats["file_reads"] == before["file_reads"]
        assert m.stats["zero_page_maps"] > before["zero_page_maps"]
        p.write(tail, b"bss!")
        assert m.stats["zero_fills"] == before["zero_fills"] + 1
        assert p.read(tail, 4) == b"bss!"
    with pytest.raises(pymmu.SegmentationFault):
        p.read((mend + PS - 1) // PS * PS, 1)             # past the last segment page
    m.check()


def _data_pages(elf, img):
    """Pages of the writable segment that hold file bytes."""
    return [vpn * PS for vpn, (prot, c) in elf.pages().items()
            if prot & pymmu.PROT_WRITE and c is not None]


def test_write_to_private_data_copies_and_leaves_the_image(Machine, elf):
    img = pymmu.Image.from_elf(elf.path)
    pages = elf.pages()
    data = _data_pages(elf, img)
    assert data
    page = data[0]
    original = pages[page // PS][1]
    m = Machine(32)
    p1, p2 = m.spawn(), m.spawn()
    p1.exec(img)
    p2.exec(img)
    before = dict(m.stats)
    p1.write(page + 8, b"PATCHED!")                       # write fault on a file page
    assert m.stats["file_reads"] == before["file_reads"] + 1
    assert m.stats["major_faults"] == before["major_faults"] + 1
    assert m.stats["minor_faults"] == before["minor_faults"]
    d = P.decode(p1.pte(page))
    assert d.present and d.writable and d.dirty and not d.cow   # writable at once
    f = m.stats["minor_faults"] + m.stats["major_faults"]
    p1.write(page + 16, b"again")
    assert m.stats["minor_faults"] + m.stats["major_faults"] == f
    assert p2.read(page, PS) == original                  # p2 reads its own copy
    assert p2.translate(page) != p1.translate(page)
    assert p1.read(page, PS) == (original[:8] + b"PATCHED!again" + original[21:])
    # the image itself is untouched: a third process sees the file bytes
    p3 = m.spawn()
    p3.exec(img)
    assert p3.read(page, PS) == original
    assert [s.data for s in img.segments] == \
        [elf.blob[o:o + fs] for o, _, fs, _, _ in sorted(elf.loads, key=lambda x: x[1])]
    m.check()
    for q in (p1, p2, p3):
        q.exit()
    assert all_free(m)


def test_read_then_write_data_page_reuses_the_frame(Machine, elf):
    img = pymmu.Image.from_elf(elf.path)
    page = _data_pages(elf, img)[-1]
    original = elf.pages()[page // PS][1]
    m = Machine(16)
    p = m.spawn()
    p.exec(img)
    assert p.read(page, PS) == original
    d = P.decode(p.pte(page))
    assert d.present and not d.writable and d.cow         # read-only + cow over the file
    pfn = p.translate(page) // PS
    before = dict(m.stats)
    p.write(page, b"\xff")
    assert m.stats["cow_reuses"] == before["cow_reuses"] + 1
    assert m.stats["cow_copies"] == before["cow_copies"]
    assert p.translate(page) // PS == pfn
    assert p.read(page, PS) == b"\xff" + original[1:]
    q = m.spawn()
    q.exec(img)
    assert q.read(page, PS) == original
    m.check()


def test_fork_shares_text_and_copies_data_on_write(Machine, elf):
    img = pymmu.Image.from_elf(elf.path)
    page = _data_pages(elf, img)[0]
    original = elf.pages()[page // PS][1]
    m = Machine(16)
    p = m.spawn()
    p.exec(img)
    code = p.fetch(img.entry, 32)
    assert p.read(page, PS) == original
    c = p.fork()
    text_pfn = p.translate(img.entry) // PS
    assert c.translate(img.entry) // PS == text_pfn
    assert m.refcount(text_pfn) == 2
    before = dict(m.stats)
    assert c.fetch(img.entry, 32) == code
    assert m.stats["file_reads"] == before["file_reads"]  # no second read from the file
    c.write(page, b"child")
    assert m.stats["cow_copies"] == before["cow_copies"] + 1
    assert p.read(page, PS) == original
    assert c.read(page, 5) == b"child"
    m.check()
    c.exit()
    p.wait(c)
    assert m.refcount(text_pfn) == 1
    p.exit()
    assert all_free(m)


def test_clean_file_pages_are_dropped_under_pressure(Machine):
    elf = Elf("/bin/ls")
    img = pymmu.Image.from_elf(elf.path)
    text = [vpn * PS for vpn, (pr, c) in elf.pages().items()
            if pr & pymmu.PROT_EXEC and c is not None]
    m = Machine(2)                                        # no swap at all
    p = m.spawn()
    p.exec(img)
    a, b, c = text[0], text[1], text[2]
    ca, cb, cc = (p.fetch(x, 64) for x in (a, b, c))      # the third drops pfn 0 (page a)
    assert m.stats["evictions"] == 1 and m.stats["swap_outs"] == 0
    assert p.pte(a) == 0                                  # not a swap entry: gone
    before = dict(m.stats)
    assert p.fetch(a, 64) == ca                           # read from the file again
    assert m.stats["file_reads"] == before["file_reads"] + 1
    assert m.stats["major_faults"] == before["major_faults"] + 1
    for x, want in ((b, cb), (c, cc), (a, ca)):
        assert p.fetch(x, 64) == want
        assert want == elf.blob[elf.file_offset(x - PIE_BASE):][:64]
    # A written data page is anonymous: without swap it stays, file pages go.
    data = _data_pages(elf, img)[0]
    p.write(data, b"dirty")
    for x in text[3:8]:
        p.fetch(x, 8)
    assert p.read(data, 5) == b"dirty"
    assert P.decode(p.pte(data)).present
    assert m.stats["swap_outs"] == 0
    m.check()
    p.exit()
    assert all_free(m)


@pytest.mark.parametrize("page_size", [16384, 65536])
def test_pages_shared_by_segments_get_the_union_of_prots(Machine, page_size):
    elf = Elf("/bin/true")
    img = pymmu.Image.from_elf(elf.path)
    pages = elf.pages(page_size)
    m = Machine(16, page_size=page_size)
    p = m.spawn()
    p.exec(img)
    got = {}
    for mp in p.maps():
        if mp.kind == "file":
            for vpn in range(mp.start // page_size, mp.end // page_size):
                got[vpn] = mp.prot
    assert got == {vpn: pr for vpn, (pr, _) in pages.items()}
    for vpn, (pr, content) in pages.items():
        assert p.read(vpn * page_size, page_size) == \
            (content if content is not None else bytes(page_size))
    off = elf.file_offset(elf.entry)
    assert p.fetch(img.entry, 16) == elf.blob[off:off + 16]
    m.check()
    p.exit()
    assert all_free(m)


def test_exec_replaces_a_forked_childs_space(Machine):
    img = pymmu.Image.from_elf("/bin/true")
    m = Machine(16)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"parent")
    c = p.fork()
    c.exec(img)
    assert m.refcount(p.translate(a) // PS) == 1
    with pytest.raises(pymmu.SegmentationFault):
        c.read(a, 1)
    elf = Elf("/bin/true")
    off = elf.file_offset(elf.entry)
    assert c.fetch(img.entry, 4) == elf.blob[off:off + 4]
    assert p.read(a, 6) == b"parent"
    m.check()
    c.exit()
    p.wait(c)
    p.exit()
    assert all_free(m)
