# cython: language_level=3
"""A tiny simulator written in Cython against pymmu's C API (tests/test_cython_api.py)."""
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc

from pymmu.core cimport PYMMU_OK, ProcessCore


def read(ProcessCore p, uint64_t addr, int64_t n):
    """p.read(addr, n), through read_into with the GIL released."""
    cdef uint8_t *buf = <uint8_t *>malloc(max(n, 1))
    cdef int st
    try:
        with nogil:
            st = p.read_into(addr, buf, n)
        if st != PYMMU_OK:
            p.raise_status(st)
        return bytes(buf[:n])
    finally:
        free(buf)


def write(ProcessCore p, uint64_t addr, bytes data):
    """p.write(addr, data), through write_from with the GIL released."""
    cdef const uint8_t *src = data
    cdef int64_t n = len(data)
    cdef int st
    with nogil:
        st = p.write_from(addr, src, n)
    p.raise_status(st)


def fetch(ProcessCore p, uint64_t addr, int64_t n):
    cdef uint8_t buf[64]
    cdef int st
    with nogil:
        st = p.fetch_into(addr, buf, n)
    p.raise_status(st)
    return bytes(buf[:n])


def translate(ProcessCore p, uint64_t addr):
    cdef int64_t phys
    with nogil:
        phys = p.translate(addr)
    return None if phys < 0 else phys


def sweep(ProcessCore p, uint64_t base, int64_t pages, int64_t page_size, int rounds):
    """Write then read a byte of every page, ``rounds`` times, without the GIL:
    a loop a simulator would run. Returns the sum of the bytes read."""
    cdef int64_t i, total = 0
    cdef int r, st = PYMMU_OK
    cdef uint8_t b
    with nogil:
        for r in range(rounds):
            for i in range(pages):
                b = <uint8_t>(i + r)
                st = p.write_from(base + i * page_size, &b, 1)
                if st != PYMMU_OK:
                    break
                st = p.read_into(base + i * page_size, &b, 1)
                if st != PYMMU_OK:
                    break
                total += b
            if st != PYMMU_OK:
                break
    p.raise_status(st)
    return total
