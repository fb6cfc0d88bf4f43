"""``pymmu demo``: a narrated tour of virtual memory, told by a running machine.

The demo owns nothing but presentation: every number it prints comes from the
public API (``Machine``, ``Process``, ``pymmu.pte``, ``stats``), so the same
script runs on the Cython core and on the pure-Python ``pymmu.reference`` model,
and prints the same page tables and counters on both.

Sections (each a function taking the ``Machine`` class, so tests can run them on
either implementation):

1. a process writes pages A, B and C: its page table and the frames;
2. fork: parent and child page tables side by side, shared read-only + cow;
3. the child writes C: only C is copied; then the parent writes C in place;
4. the zero page: reading untouched memory costs no frame; a write zero-fills;
5. vfork then exec: the parent waits, the child borrows, then gets a new image;
6. memory pressure on a 4-frame machine with swap: the clock hand evicts.

>>> import io, pymmu.reference
>>> out = io.StringIO()
>>> demo(pymmu.reference.Machine, out=out)
>>> "cow_copies 1" in out.getvalue()
True
"""
from __future__ import annotations

import sys
import textwrap
from typing import Callable, TextIO

from pymmu import pte as ptebits
from pymmu.errors import ProcessStateError
from pymmu.image import Image, Segment

__all__ = [
    "demo", "WIDTH", "SECTIONS",
    "section_cow", "section_zero_page", "section_vfork_exec", "section_pressure",
]

WIDTH = 100          # no line of the demo is wider than this
INDENT = "  "        # tables and events are indented under the narration


# --------------------------------------------------------------------------- output


class Narrator:
    """Prints narration, tables and counters to one stream, at most WIDTH columns."""

    def __init__(self, out: TextIO):
        self.out = out

    def line(self, text: str = "") -> None:
        print(text.rstrip(), file=self.out)

    def heading(self, text: str) -> None:
        self.line()
        self.line(text)
        self.line("-" * len(text))

    def say(self, text: str) -> None:
        """A paragraph of narration, wrapped."""
        self.line(textwrap.fill(" ".join(text.split()), WIDTH))

    def event(self, text: str) -> None:
        """A preformatted, indented line (spacing kept)."""
        self.line(INDENT + text)

    def note(self, text: str) -> None:
        """An indented event line ("pid 2 writes page C ...")."""
        self.line(textwrap.fill(" ".join(text.split()), WIDTH, initial_indent=INDENT,
                                subsequent_indent=INDENT + "  "))

    def table(self, header: list[str], rows: list[list], right: set[int] = frozenset(),
              title: str | None = None) -> None:
        """An aligned table; columns whose index is in ``right`` are right-aligned."""
        cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        if title:
            self.line(INDENT + title)
        for n, r in enumerate(cells):
            parts = [c.rjust(w) if i in right else c.ljust(w)
                     for i, (c, w) in enumerate(zip(r, widths))]
            self.line(INDENT + "  ".join(parts))
            if n == 0:
                self.line(INDENT + "  ".join("-" * w for w in widths))


class Counters:
    """Prints the counters a step changed (only the nonzero ones)."""

    def __init__(self, machine, say: Narrator):
        self.m = machine
        self.say = say
        self.last = dict(machine.stats)

    def show(self, label: str = "counters for this step") -> dict:
        now = dict(self.m.stats)
        delta = {k: now[k] - self.last.get(k, 0) for k in now}
        self.last = now
        items = [f"{k} {v}" for k, v in delta.items() if v] or ["(none changed)"]
        line = f"{INDENT}{label}: "
        for i, item in enumerate(items):
            item += "," if i < len(items) - 1 else ""
            if len(line) + len(item) + 1 > WIDTH and line.strip():
                self.say.line(line)
                line = INDENT * 3
            line += ("" if line.endswith(" ") else " ") + item
        self.say.line(line)
        return delta


# ------------------------------------------------------------------ page-table views


def flags_of(raw: int) -> tuple[str, str]:
    """Split ``pte.describe`` into (frame, flags): ``("7", "P RW U A D")``."""
    text = ptebits.describe(raw)
    if text.startswith("pfn "):
        pfn, _, flags = text[4:].partition(" ")
        return pfn, flags
    return "-", text                    # "swap slot 3", "none", "not present"


class Pages:
    """Names for virtual pages ("A" at 0x10000 ...), so tables speak the story's words."""

    def __init__(self, page_size: int):
        self.page_size = page_size
        self.names: dict[int, str] = {}

    def add(self, base: int, names: str | list[str]) -> dict[str, int]:
        addrs = {}
        for i, name in enumerate(names):
            addrs[name] = base + i * self.page_size
            self.names[addrs[name]] = name
        return addrs

    def name(self, vaddr: int) -> str:
        return self.names.get(vaddr, "")


def rows_by_vaddr(proc) -> dict[int, object]:
    return {int(r["vaddr"]): r for r in proc.page_table()}


def page_table(say: Narrator, proc, pages: Pages, title: str | None = None,
               refcount: bool = True) -> None:
    """One process's page table: page, vaddr, pfn, flags, refcount."""
    rows = []
    for r in proc.page_table():
        pfn, flags = flags_of(int(r["pte"]))
        row = [pages.name(int(r["vaddr"])), f"{int(r['vaddr']):#x}", pfn, flags]
        if refcount:
            row.append(int(r["refcount"]) if r["present"] else "-")
        rows.append(row)
    header = ["page", "vaddr", "pfn", "PTE flags"] + (["refcount"] if refcount else [])
    say.table(header, rows, right={2, 4},
              title=title or f"page table of pid {proc.pid}:")


def side_by_side(say: Narrator, m, left, right, pages: Pages) -> None:
    """Two page tables in one table, with what each frame's sharing looks like."""
    lrows, rrows = rows_by_vaddr(left), rows_by_vaddr(right)
    rows = []
    for va in sorted(set(lrows) | set(rrows)):
        cells = [pages.name(va), f"{va:#x}"]
        pfns = []
        for tab in (lrows, rrows):
            r = tab.get(va)
            if r is None:
                cells += ["-", "(no entry)"]
                pfns.append(None)
            else:
                pfn, flags = flags_of(int(r["pte"]))
                cells += [pfn, flags]
                pfns.append(int(r["pfn"]) if r["present"] else None)
        a, b = pfns
        if a is not None and a == b:
            what = "zero page" if a == m.frames else "frame"
            verdict = f"same {what}, refcount {m.refcount(a)}"
        elif a is not None and b is not None:
            verdict = f"own frames, refcounts {m.refcount(a)} / {m.refcount(b)}"
        else:
            verdict = ""
        rows.append(cells + [verdict])
    header = ["page", "vaddr", "pfn", f"parent pid {left.pid}", "pfn",
              f"child pid {right.pid}", "shared?"]
    say.table(header, rows, right={2, 4})


def frame_table(say: Narrator, m, procs, pages: Pages, bits: bool = False) -> None:
    """Every user frame: refcount and who maps it; free frames folded into ranges."""
    users: dict[int, list[str]] = {}
    abits: dict[int, str] = {}
    for p in procs:
        for r in p.page_table():
            if r["present"]:
                pfn = int(r["pfn"])
                name = pages.name(int(r["vaddr"])) or f"{int(r['vaddr']):#x}"
                users.setdefault(pfn, []).append(f"pid {p.pid} {name}")
                abits[pfn] = ("A" if r["accessed"] else "-") + ("D" if r["dirty"] else "-")
    rows = []
    free_run: list[int] = []

    def flush():
        if free_run:
            span = (str(free_run[0]) if len(free_run) == 1
                    else f"{free_run[0]}-{free_run[-1]}")
            rows.append([span, 0] + (["", ""] if bits else []) + ["free"])
            free_run.clear()

    for pfn in range(m.frames):
        rc = m.refcount(pfn)
        if rc == 0 and pfn not in users:
            free_run.append(pfn)
            continue
        flush()
        row = [pfn, rc]
        if bits:
            row.append(abits.get(pfn, ""))
        row.append(", ".join(users.get(pfn, [])))
        rows.append(row)
    flush()
    header = ["pfn", "refcount"] + (["A D"] if bits else []) + ["mapped by"]
    say.table(header, rows, right={0, 1},
              title=f"frames ({m.frames_free} of {m.frames} free):")


def show_bytes(data: bytes) -> str:
    return repr(bytes(data).rstrip(b"\0").decode("ascii", "replace"))


# ----------------------------------------------------------------------- the story


LEGEND = ("PTE flags: P present, R W X readable / writable / executable, U user page, "
          "A accessed, D dirty (written), cow copy-on-write, zero maps the shared zero "
          "page.")


class Story:
    """State handed from one section to the next (sections 1-5 share a machine)."""

    def __init__(self, Machine, say: Narrator):
        self.Machine = Machine
        self.say = say
        self.m = Machine(frames=8)
        self.pages = Pages(self.m.page_size)
        self.count = Counters(self.m, say)
        self.parent = None
        self.child = None
        self.addr: dict[str, int] = {}


def section_cow(st: Story) -> None:
    """Sections 1-3: write A, B, C; fork; the child writes C, then the parent."""
    say, m, pages = st.say, st.m, st.pages
    ps = m.page_size
    say.heading("1. A process writes three pages")
    say.say(f"The machine has {m.frames} frames (physical pages) of {ps} bytes, pfn 0 to "
            f"{m.frames - 1}, plus one shared, always-zero page at pfn {m.frames}. A "
            "process sees only virtual addresses; its page table maps each virtual page "
            "to a frame.")
    say.line()
    p = st.parent = m.spawn()
    base = p.mmap(4 * ps, "rw")
    st.addr = pages.add(base, "ABCD")
    say.say(f"Process {p.pid} maps 4 pages of private memory at {base:#x} (pages A, B, C, "
            "D). Mapping costs no frame: a page gets one on its first touch. It writes "
            "pages A, B and C:")
    for name in "ABC":
        p.write(st.addr[name], f"{name}: parent's data".encode())
        say.note(f"pid {p.pid} writes {name}: page fault, a zeroed frame is mapped "
                 f"(pfn {p.translate(st.addr[name]) // ps})")
    st.count.show()
    say.say("(minor_faults: page faults resolved without disk; zero_fills: a frame was "
            "zeroed for a first write; zero_pool_hits: it came already zeroed from the "
            "free pool; tlb_misses: the translation was not cached and the page table "
            "was walked.)")
    say.line()
    page_table(say, p, pages)
    say.line()
    say.say(LEGEND)
    say.line()
    frame_table(say, m, [p], pages)

    say.heading("2. fork(): the child shares every frame")
    c = st.child = p.fork()
    say.say(f"pid {p.pid} forks pid {c.pid}. No page is copied: the child gets a copy of "
            "the page table, every writable page becomes read-only + cow in BOTH "
            "processes (so that whichever writes first takes a fault), and each frame's "
            "refcount goes up by one.")
    st.count.show()
    say.line()
    side_by_side(say, m, p, c, pages)
    say.line()
    frame_table(say, m, [p, c], pages)

    say.heading("3. The child writes C: copy-on-write")
    c.write(st.addr["C"], b"C: child's version")
    new = c.translate(st.addr["C"]) // ps
    say.say(f"pid {c.pid} writes C. The write hits a read-only cow page: a fault the "
            f"kernel resolves. Frame {p.translate(st.addr['C']) // ps} is shared "
            f"(refcount 2), so C is copied into frame {new}, mapped writable in the child "
            "only. Pages A and B stay shared:")
    st.count.show()
    say.line()
    side_by_side(say, m, p, c, pages)
    say.line()
    say.say("Each process now sees its own C:")
    for proc in (c, p):
        data = proc.read(st.addr["C"], 32)
        say.note(f"pid {proc.pid} reads C: {show_bytes(data)}")
    st.count.show()
    say.line()
    p.write(st.addr["C"], b"C: parent's new data")
    say.say(f"Now pid {p.pid} writes C. Its PTE is still read-only + cow, but frame "
            f"{p.translate(st.addr['C']) // ps} has refcount 1 (the child has its own "
            "copy), so no copy is needed: the kernel makes the PTE writable again and "
            "the write lands in place (cow_reuses). No frame is used:")
    st.count.show()
    say.line()
    side_by_side(say, m, p, c, pages)
    say.line()
    frame_table(say, m, [p, c], pages)


def section_zero_page(st: Story) -> None:
    """Section 4: reads of untouched memory map the zero page; a write zero-fills."""
    say, m, pages = st.say, st.m, st.pages
    p, c, d = st.parent, st.child, st.addr["D"]
    ps = m.page_size
    say.heading("4. The zero page")
    say.say("Page D was never touched. Both processes read it:")
    free = m.frames_free
    for proc in (p, c):
        data = proc.read(d, 8)
        say.note(f"pid {proc.pid} reads D: {data.hex(' ')}")
    say.say(f"Both reads mapped D to pfn {m.frames}, the shared zero page, read-only: its "
            f"refcount is {m.refcount(m.frames)}, and no frame was used (frames free: "
            f"{free} before, {m.frames_free} after).")
    st.count.show()
    say.line()
    side_by_side(say, m, p, c, pages)
    say.line()
    c.write(d, b"D: child")
    say.say(f"pid {c.pid} writes D: only now does it get a frame of its own (pfn "
            f"{c.translate(d) // ps}), zero-filled before the write (zero_fills); the "
            f"parent still maps the zero page (refcount {m.refcount(m.frames)}).")
    st.count.show()
    say.line()
    side_by_side(say, m, p, c, pages)


DEMO_IMAGE = Image(
    segments=[
        Segment(0x400000, "r-x", b"\x55\x48\x89\xe5" + b"<code of hello>"),
        Segment(0x401000, "rw", b"greeting=hello", memsz=0x2000),   # .data + .bss
    ],
    entry=0x400000,
    stack_size=0x4000,
    name="hello",
)


def section_vfork_exec(st: Story) -> None:
    """Section 5: vfork suspends the parent, the child execs a small image."""
    say, m, pages = st.say, st.m, st.pages
    p, a = st.parent, st.addr["A"]
    ps = m.page_size
    say.heading("5. vfork() then exec()")
    before = [m.refcount(pfn) for pfn in range(m.frames + 1)]
    v = p.vfork()
    after = [m.refcount(pfn) for pfn in range(m.frames + 1)]
    same = "every refcount is as before" if before == after else "refcounts CHANGED"
    say.say(f"pid {p.pid} calls vfork(): child pid {v.pid} borrows the parent's address "
            f"space itself. No page table is copied and no refcount changes ({same}), "
            "however big the process. The parent is suspended until the child calls "
            "exec() or exit():")
    say.note(f"pid {p.pid} state: {p.state}; pid {v.pid} state: {v.state}")
    try:
        p.write(a, b"x")
        say.note(f"pid {p.pid} writes A: allowed (unexpected)")
    except ProcessStateError as e:
        say.note(f"pid {p.pid} writes A -> ProcessStateError: {e}")
    data = v.read(a, 16)
    say.note(f"pid {v.pid} reads A: {show_bytes(data)} (the parent's page, pfn "
             f"{v.translate(a) // ps})")
    st.count.show()
    say.line()
    say.say(f"pid {v.pid} calls exec() on a small program image: a code segment (r-x), "
            "a data segment (rw) whose last part is bss (zero-initialised, not in the "
            "file), and a stack. exec builds a fresh address space; nothing is read yet:")
    v.exec(DEMO_IMAGE)
    for mp in v.maps():
        say.event(str(mp))
    say.note(f"pid {p.pid} state: {p.state} (resumed: its address space is its own again)")
    st.count.show()
    say.line()
    pages.add(0x400000, ["code"])
    pages.add(0x401000, ["data", "bss"])
    say.say(f"pid {v.pid} runs: each first touch of a page faults it in.")
    code = v.fetch(DEMO_IMAGE.entry, 4)
    say.note(f"fetch code at {DEMO_IMAGE.entry:#x}: {code.hex(' ')}  (major fault: read "
             "from the image)")
    data = v.read(0x401000, 14)
    say.note(f"read data: {show_bytes(data)}  (major fault: read from the image)")
    v.write(0x402000, b"counter=1")
    say.note("write bss: demand-zero, like anonymous memory  (minor fault)")
    st.count.show()
    say.line()
    page_table(say, v, pages)
    say.say("The data page was only read, so it is mapped read-only + cow: a write would "
            "copy it, and the image is never changed.")
    say.line()
    v.exit(0)
    status = p.wait(v)
    c = st.child
    c.exit(0)
    p.wait(c)
    p.exit(0)
    say.say(f"pid {v.pid} exits and pid {p.pid} waits for it (status {status}); pid "
            f"{c.pid} and pid {p.pid} exit too. Every frame is back: {m.frames_free} of "
            f"{m.frames} free.")
    m.check()
    say.note("m.check(): every invariant holds (refcounts match the page tables, free "
             "frames are unmapped, the TLB agrees with the page tables)")


def section_pressure(Machine) -> Callable[[Narrator], None]:
    """Section 6 (its own machine): more pages than frames, swap and the clock hand."""

    def run(say: Narrator) -> None:
        m = Machine(frames=4, swap_slots=8)
        ps = m.page_size
        pages = Pages(ps)
        count = Counters(m, say)
        say.heading("6. Memory pressure: the clock hand and swap")
        p = m.spawn()
        base = p.mmap(6 * ps)
        names = [f"P{i}" for i in range(6)]
        addr = pages.add(base, names)
        say.say(f"A new, smaller machine: {m.frames} frames and {m.swap_slots} swap slots. "
                f"pid {p.pid} maps 6 pages (P0 to P5) and touches them: more pages than "
                "frames. When no frame is free, the clock hand sweeps the frames in pfn "
                "order: a frame whose page was accessed since the last sweep (A bit set) "
                "gets a second chance (its A bit is cleared, the hand moves on); the "
                "first frame with A clear is the victim. Its page is written to a swap "
                "slot and its PTE becomes a swap entry.")
        say.line()

        def step(op: str, page: str, action) -> None:
            old = rows_by_vaddr(p)
            action()
            new = rows_by_vaddr(p)
            events = []
            for va, r in new.items():
                o = old.get(va)
                if o is not None and o["present"] and r["swap_slot"] >= 0:
                    events.append(f"evicts {pages.name(va)} (pfn {int(o['pfn'])}) to swap "
                                  f"slot {int(r['swap_slot'])}")
            for va, r in new.items():
                o = old.get(va)
                if r["present"] and o is not None and o["swap_slot"] >= 0:
                    events.append(f"{pages.name(va)} swapped in from slot "
                                  f"{int(o['swap_slot'])}")
            pfn = p.translate(addr[page]) // ps
            say.event(f"{op:<5} {page} -> pfn {pfn}  frames free {m.frames_free}  "
                      + ("; ".join(events) if events else "-"))

        for n in names[:4]:
            step("write", n, lambda n=n: p.write(addr[n], n.encode()))
        step("write", "P4", lambda: p.write(addr["P4"], b"P4"))
        say.say("No frame was free for P4: the hand went all the way round clearing A bits, "
                "then took pfn 0 and stopped at pfn 1. P1 to P3 now have A clear. Read P1 "
                "to give it a second chance, then write P5:")
        step("read", "P1", lambda: p.read(addr["P1"], 2))
        step("write", "P5", lambda: p.write(addr["P5"], b"P5"))
        say.say("The hand skipped P1 (referenced: it cleared its A bit) and evicted P2. "
                "Reading P0 brings it back from swap (a major fault), and the clock "
                "evicts again:")
        step("read", "P0", lambda: p.read(addr["P0"], 2))
        count.show("counters for section 6")
        say.line()
        page_table(say, p, pages)
        say.line()
        frame_table(say, m, [p], pages, bits=True)
        say.line()
        say.say(f"Swap slots in use: {m.swap_slots - m.swap_free} of {m.swap_slots}. "
                "Evicted pages keep their data in swap: reading P2 back gives "
                f"{show_bytes(p.read(addr['P2'], 2))}.")
        p.exit()
        m.check()

    return run


# ------------------------------------------------------------------------- driver


def _cow_story(Machine):
    def run(say: Narrator) -> None:
        st = Story(Machine, say)
        section_cow(st)
        section_zero_page(st)
        section_vfork_exec(st)
    return run


SECTIONS = {
    "cow": _cow_story,          # sections 1-5 share one machine
    "pressure": section_pressure,
}


def demo(Machine=None, *, out: TextIO | None = None, sections=None) -> None:
    """Print the narrated demo.

    Parameters
    ----------
    Machine : type, optional
        The machine class to run on: ``pymmu.Machine`` (default) or
        ``pymmu.reference.Machine``. Both print the same tables and counters.
    out : text stream, optional
        Where to print; default ``sys.stdout``.
    sections : iterable of str, optional
        Names from ``SECTIONS`` to run; default all, in order.
    """
    if Machine is None:
        from pymmu import Machine
    say = Narrator(sys.stdout if out is None else out)
    title = "pymmu demo: copy-on-write fork, the zero page, vfork + exec, and swap"
    say.line(title)
    say.line("=" * len(title))
    say.say("Everything below is printed by a running pymmu machine: page tables come from "
            "Process.page_table(), flags from pymmu.pte.describe(), sharing from "
            "Machine.refcount(), counters from Machine.stats (only the counters a step "
            "changed are shown).")
    for name in (SECTIONS if sections is None else sections):
        SECTIONS[name](Machine)(say)
    say.line()
    say.line("End of the demo. More: docs/guide.md (concepts and API), docs/course.md "
             "(exercises).")
