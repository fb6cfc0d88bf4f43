"""fork, vfork and the copy-on-write write fault, against resident pages.

fork should cost time linear in the number of mapped pages and nothing per byte;
vfork should cost the same whatever the size (DESIGN.md section 9). Each timed call
changes the machine (a new child, a copied page), so these classes set ``number = 1``:
asv then runs ``setup`` again before every timed call and each call starts from the
same state. benchmarks/compare.py adds the 262,144-page point and the real os.fork.
"""
from .common import DATA8, resident


class Fork:
    """p.fork() of a process with N resident, writable private 4 KiB pages."""

    params = [[16, 1024, 16384]]
    param_names = ["pages"]
    number = 1

    def setup(self, pages):
        self.m, self.p, _ = resident(pages)

    def time_fork(self, pages):
        self.child = self.p.fork()

    def peakmem_fork(self, pages):
        self.child = self.p.fork()


class Vfork:
    """p.vfork(): the child borrows the address space, so N should not matter."""

    params = [[16, 65536]]
    param_names = ["pages"]
    number = 1

    def setup(self, pages):
        self.m, self.p, _ = resident(pages)

    def time_vfork(self, pages):
        self.child = self.p.vfork()

    def peakmem_vfork(self, pages):
        self.child = self.p.vfork()


class CowFault:
    """After a fork, the parent's first write to each of PAGES shared pages: one
    copy-on-write fault and one page copy each (divide by PAGES for per page).
    Unlike fork, this cost does grow with page_size: the bytes are copied."""

    PAGES = 256
    params = [[4096, 65536]]
    param_names = ["page_size"]
    number = 1

    def setup(self, page_size):
        n = self.PAGES
        self.m, self.p, base = resident(n, page_size, frames=2 * n)
        self.addrs = range(base, base + n * page_size, page_size)
        # One untimed round first, so that the timed copies land in frames the OS
        # has already backed: a first touch of fresh memory would be timed otherwise.
        child = self.p.fork()
        self.time_cow_fault(page_size)
        child.exit()
        self.p.wait(child)
        self.child = self.p.fork()

    def time_cow_fault(self, page_size):
        write, data = self.p.write, DATA8
        for a in self.addrs:
            write(a, data)
