# The compiled side of traces: line parsers for the lackey and simple text
# formats, an exact set of page numbers, and Belady's look-ahead of a page
# sequence (``next_use``, behind ``Trace.next_use``). ``pymmu.trace_io`` drives
# the parsers over blocks of (decompressed) bytes; nothing here allocates a
# Python object per line.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memchr

cimport cython
import numpy as np

# Formats (the values ``LineParser`` takes).
cdef enum:
    FMT_LACKEY = 0
    FMT_SIMPLE = 1

# Parser statuses: ``parse`` returns one with the position it stopped at.
cdef enum:
    PS_MORE = 0        # consumed every complete line, or the columns are full
    PS_SYNTAX = 1      # the line at pos is not a record of the format, nor noise
    PS_LONG = 2        # no newline within MAX_LINE bytes of pos: not a text trace
    PS_SIZE = 3        # the record's size is 0 or does not fit in 32 bits
    PS_WRAP = 4        # the record's last byte lies past 2**64 (or the address overflows)

FORMATS = {"lackey": FMT_LACKEY, "simple": FMT_SIMPLE}
STATUS_MORE, STATUS_SYNTAX, STATUS_LONG, STATUS_SIZE, STATUS_WRAP = (
    PS_MORE, PS_SYNTAX, PS_LONG, PS_SIZE, PS_WRAP)

# A record line of either format is far shorter; a "line" longer than this is
# binary data (or a decompression bomb of zeros), which must not be buffered.
cdef enum:
    MAX_LINE = 4096
MAX_LINE_BYTES = MAX_LINE

cdef uint64_t U64_MAX = 0xFFFFFFFFFFFFFFFF
cdef uint64_t U32_MAX = 0xFFFFFFFF

# Hex digit values, 255 for anything else.
cdef uint8_t _HEX[256]
cdef int _c
for _c in range(256):
    _HEX[_c] = 255
for _c in range(10):
    _HEX[48 + _c] = _c
for _c in range(6):
    _HEX[97 + _c] = 10 + _c
    _HEX[65 + _c] = 10 + _c


cdef inline bint _blank(uint8_t c) noexcept nogil:
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


cdef inline bint _all_blank(const uint8_t *b, Py_ssize_t i, Py_ssize_t e) noexcept nogil:
    while i < e:
        if not _blank(b[i]):
            return False
        i += 1
    return True


cdef inline int _decimal(const uint8_t *b, Py_ssize_t *j, Py_ssize_t e,
                         uint64_t *out) noexcept nogil:
    """Digits at b[j[0]:e] as a uint64: 0 when there are none, -1 on overflow,
    else the number of digits (j advanced past them)."""
    cdef uint64_t v = 0, d
    cdef int count = 0
    cdef Py_ssize_t i = j[0]
    while i < e and 48 <= b[i] <= 57:
        d = b[i] - 48
        if v > (U64_MAX - d) // 10:
            return -1
        v = v * 10 + d
        i += 1
        count += 1
    j[0] = i
    out[0] = v
    return count


cdef inline int _hex(const uint8_t *b, Py_ssize_t *j, Py_ssize_t e,
                     uint64_t *out) noexcept nogil:
    """Hex digits at b[j[0]:e] as a uint64: 0 when there are none, -1 past 64
    bits (leading zeros do not count), else the number of digits."""
    cdef uint64_t v = 0
    cdef uint8_t h
    cdef int count = 0
    cdef Py_ssize_t i = j[0]
    while i < e:
        h = _HEX[b[i]]
        if h == 255:
            break
        if v >> 60:
            return -1
        v = (v << 4) | h
        i += 1
        count += 1
    j[0] = i
    out[0] = v
    return count


cdef inline int _record_end(uint64_t a, uint64_t s) noexcept nogil:
    """Check a record's size and extent: PS_MORE when fine."""
    if s == 0 or s > U32_MAX:
        return PS_SIZE
    if a > U64_MAX - (s - 1):
        return PS_WRAP
    return PS_MORE


cdef inline int _size_to_end(const uint8_t *b, Py_ssize_t j, Py_ssize_t e,
                             uint64_t *a, uint64_t *s) noexcept nogil:
    """A record's decimal size at b[j:e], then nothing but blanks: 1 when the
    record (a, s) is good, or a PS_* error status (negated)."""
    cdef int st = _decimal(b, &j, e, s)
    if st == 0:
        return -PS_SYNTAX
    if st < 0:
        return -PS_SIZE
    if not _all_blank(b, j, e):
        return -PS_SYNTAX
    st = _record_end(a[0], s[0])
    return 1 if st == PS_MORE else -st


cdef int _lackey_line(const uint8_t *b, Py_ssize_t i, Py_ssize_t e, uint64_t *a,
                      uint8_t *k, uint64_t *s) noexcept nogil:
    """One lackey line b[i:e] (no newline): 1 when it is a record (a, k, s set),
    0 when it is noise to skip, or a PS_* error status (negated)."""
    cdef Py_ssize_t j
    cdef uint8_t c0, c1
    cdef int st
    if e - i >= 3 and b[i + 2] == 32:
        c0 = b[i]
        c1 = b[i + 1]
        if c0 == 73 and c1 == 32:                  # "I  "
            k[0] = 0
        elif c0 == 32 and c1 == 76:                # " L "
            k[0] = 1
        elif c0 == 32 and c1 == 83:                # " S "
            k[0] = 2
        elif c0 == 32 and c1 == 77:                # " M "
            k[0] = 3
        else:
            return _lackey_noise(b, i, e)
        j = i + 3
        st = _hex(b, &j, e, a)
        if st <= 0:
            return -PS_WRAP if st < 0 else -PS_SYNTAX
        if j >= e or b[j] != 44:                   # ","
            return -PS_SYNTAX
        return _size_to_end(b, j + 1, e, a, s)
    return _lackey_noise(b, i, e)


cdef inline int _lackey_noise(const uint8_t *b, Py_ssize_t i, Py_ssize_t e) noexcept nogil:
    """0 for Valgrind's own lines (``==PID==``, ``--PID--``, ``**PID**``) and
    blank lines, else -PS_SYNTAX."""
    if e - i >= 2 and b[i] == b[i + 1] and (b[i] == 61 or b[i] == 45 or b[i] == 42):
        return 0
    return 0 if _all_blank(b, i, e) else -PS_SYNTAX


cdef int _simple_line(const uint8_t *b, Py_ssize_t i, Py_ssize_t e, uint64_t *a,
                      uint8_t *k, uint64_t *s) noexcept nogil:
    """One simple line ``R ADDR [SIZE]`` / ``W ADDR [SIZE]``: as _lackey_line.
    Blank lines and ``#`` comments are noise."""
    cdef Py_ssize_t j = i
    cdef uint8_t c
    cdef int st
    while j < e and _blank(b[j]):
        j += 1
    if j == e or b[j] == 35:                       # blank, or "#"
        return 0
    c = b[j]
    if c == 82 or c == 114:                        # R r
        k[0] = 1
    elif c == 87 or c == 119:                      # W w
        k[0] = 2
    else:
        return -PS_SYNTAX
    j += 1
    if j >= e or not _blank(b[j]):
        return -PS_SYNTAX
    while j < e and _blank(b[j]):
        j += 1
    if j + 1 < e and b[j] == 48 and (b[j + 1] == 120 or b[j + 1] == 88):   # 0x
        j += 2
        st = _hex(b, &j, e, a)
    else:
        st = _decimal(b, &j, e, a)
    if st == 0:
        return -PS_SYNTAX
    if st < 0:
        return -PS_WRAP
    if j < e and not _blank(b[j]):
        return -PS_SYNTAX
    while j < e and _blank(b[j]):
        j += 1
    if j < e:
        return _size_to_end(b, j, e, a, s)
    s[0] = 1
    st = _record_end(a[0], s[0])
    return 1 if st == PS_MORE else -st


# Kind code of a lackey line's first two bytes ("I ", " L", " S", " M"), 255 else.
cdef inline uint8_t _lackey_kind(uint8_t c0, uint8_t c1) noexcept nogil:
    if c0 == 32:
        if c1 == 76:
            return 1
        if c1 == 83:
            return 2
        if c1 == 77:
            return 3
        return 255
    return 0 if c0 == 73 and c1 == 32 else 255


cdef inline Py_ssize_t _lackey_fast(const uint8_t *b, Py_ssize_t i, Py_ssize_t stop,
                                    uint64_t *a, uint8_t *k, uint64_t *s) noexcept nogil:
    """The common case: a well-formed record line ``b[i:]`` ending in a newline
    inside the buffer, up to 16 hex digits and 10 size digits. Returns the
    position after its newline, or 0 to let the general path decide."""
    cdef Py_ssize_t j = i + 3, hend, send
    cdef uint64_t v = 0, size = 0
    cdef uint8_t h, kk
    if stop - i < 32:                 # near the end: the general path checks bounds
        return 0
    kk = _lackey_kind(b[i], b[i + 1])
    if kk == 255 or b[i + 2] != 32:
        return 0
    hend = j + 16                     # 32 bytes hold 3 + 16 + 1 + 10 + 1 + 1
    while j < hend:
        h = _HEX[b[j]]
        if h == 255:
            break
        v = (v << 4) | h
        j += 1
    if j == i + 3 or b[j] != 44:
        return 0
    j += 1
    send = j + 10
    while j < send and 48 <= b[j] <= 57:
        size = size * 10 + (b[j] - 48)
        j += 1
    if b[j] != 10 or size == 0 or size > U32_MAX or v > U64_MAX - (size - 1):
        return 0
    a[0] = v
    k[0] = kk
    s[0] = size
    return j + 1


@cython.final
cdef class LineParser:
    """Parse the lines of a text trace into trace columns, block by block.

    Parameters
    ----------
    fmt : int
        ``FORMATS["lackey"]`` or ``FORMATS["simple"]``.

    Attributes
    ----------
    lines : int
        Lines consumed so far (complete lines, records and noise alike); when
        ``parse`` reports an error, the bad line's number is ``lines + 1``.
    """

    cdef readonly int fmt
    cdef readonly int64_t lines

    def __cinit__(self, int fmt):
        if fmt != FMT_LACKEY and fmt != FMT_SIMPLE:
            raise ValueError(f"unknown trace format code {fmt}")
        self.fmt = fmt
        self.lines = 0

    def parse(self, const uint8_t[::1] buf, Py_ssize_t start, Py_ssize_t stop, bint final,
              uint64_t[::1] addr, uint8_t[::1] kind, uint32_t[::1] size, Py_ssize_t n):
        """Parse the lines of ``buf[start:stop]`` into the columns from row ``n``.

        Parameters
        ----------
        buf : bytes-like
            The bytes; only complete lines (ending in a newline) are parsed,
            unless ``final``, when a last line without one is parsed too.
        start, stop : int
            The bytes to parse.
        final : bool
            No more bytes follow ``stop``.
        addr, kind, size : numpy arrays (uint64, uint8, uint32)
            The columns to fill; parsing stops when they are full.
        n : int
            The first row to fill.

        Returns
        -------
        (pos, n, status)
            ``pos``: the first byte not consumed (the start of an incomplete
            line, of the line that did not fit, or of the bad line); ``n``: the
            rows filled so far; ``status``: ``STATUS_MORE`` or an error status
            for the line at ``pos`` (its number is ``self.lines + 1``).
        """
        cdef Py_ssize_t cap = addr.shape[0], pos = start, e, next_pos
        cdef const uint8_t *b = &buf[0] if buf.shape[0] else NULL
        cdef const uint8_t *nl
        cdef uint64_t a = 0, s = 0
        cdef uint8_t k = 0
        cdef int r, status = PS_MORE
        cdef int64_t lines = self.lines
        cdef bint lackey = self.fmt == FMT_LACKEY
        if stop > buf.shape[0] or start < 0 or start > stop:
            raise ValueError("parse: start/stop out of range")
        if kind.shape[0] < cap or size.shape[0] < cap or n < 0 or n > cap:
            raise ValueError("parse: columns of different lengths")
        with nogil:
            while pos < stop and n < cap:
                if lackey:
                    # most lines are records: parse them in one pass, without
                    # looking for the newline first
                    next_pos = _lackey_fast(b, pos, stop, &a, &k, &s)
                    if next_pos > 0:
                        addr[n] = a
                        kind[n] = k
                        size[n] = <uint32_t>s
                        n += 1
                        lines += 1
                        pos = next_pos
                        continue
                nl = <const uint8_t *>memchr(b + pos, 10, stop - pos)
                if nl == NULL:
                    if not final:
                        if stop - pos > MAX_LINE:
                            status = PS_LONG
                        break
                    e = stop
                    next_pos = stop
                else:
                    e = nl - b
                    next_pos = e + 1
                if e - pos > MAX_LINE:
                    status = PS_LONG
                    break
                if e > pos and b[e - 1] == 13:       # "\r\n" line ends
                    e -= 1
                if lackey:
                    r = _lackey_line(b, pos, e, &a, &k, &s)
                else:
                    r = _simple_line(b, pos, e, &a, &k, &s)
                if r < 0:
                    status = -r
                    break
                if r:
                    addr[n] = a
                    kind[n] = k
                    size[n] = <uint32_t>s
                    n += 1
                lines += 1
                pos = next_pos
        self.lines = lines
        return pos, n, status


@cython.final
cdef class PageSet:
    """An exact set of page numbers: how many distinct pages a trace touches.

    Open addressing over uint64 keys (page + 1, so that 0 marks a free slot),
    grown at half load: memory follows the distinct pages, never the records.

    Parameters
    ----------
    page_shift : int
        log2 of the page size.
    """

    cdef uint64_t *keys
    cdef uint64_t mask
    cdef readonly int64_t count        # distinct pages so far
    cdef readonly int64_t references   # page references so far (a crossing counts each)
    cdef readonly int page_shift

    def __cinit__(self, int page_shift):
        if not 0 <= page_shift < 64:
            raise ValueError(f"page_shift must be in [0, 64), got {page_shift}")
        self.page_shift = page_shift
        self.keys = <uint64_t *>calloc(1024, sizeof(uint64_t))
        if self.keys == NULL:
            raise MemoryError()
        self.mask = 1023
        self.count = 0
        self.references = 0

    def __dealloc__(self):
        free(self.keys)

    cdef int _grow(self) except -1 nogil:
        cdef uint64_t size = (self.mask + 1) * 2, i, key, h
        cdef uint64_t *new = <uint64_t *>calloc(size, sizeof(uint64_t))
        cdef uint64_t *old = self.keys
        if new == NULL:
            with gil:
                raise MemoryError("not enough memory for the set of distinct pages")
        for i in range(self.mask + 1):
            key = old[i]
            if key:
                h = (key * <uint64_t>0x9E3779B97F4A7C15) >> 20 & (size - 1)
                while new[h]:
                    h = (h + 1) & (size - 1)
                new[h] = key
        self.keys = new
        self.mask = size - 1
        free(old)
        return 0

    cdef inline int _add(self, uint64_t page) except -1 nogil:
        cdef uint64_t key = page + 1
        cdef uint64_t h = (key * <uint64_t>0x9E3779B97F4A7C15) >> 20 & self.mask
        while self.keys[h]:
            if self.keys[h] == key:
                return 0
            h = (h + 1) & self.mask
        self.keys[h] = key
        self.count += 1
        if <uint64_t>self.count * 2 > self.mask:
            self._grow()
        return 0

    def add(self, const uint64_t[::1] addr, const uint32_t[::1] size):
        """Add every page the records ``(addr, size)`` touch (a size of 0 counts as 1)."""
        cdef Py_ssize_t i, n = addr.shape[0]
        cdef uint64_t first, last, a
        cdef int shift = self.page_shift
        if size.shape[0] != n:
            raise ValueError("add: addr and size have different lengths")
        with nogil:
            for i in range(n):
                a = addr[i]
                first = a >> shift
                if size[i] > 1 and a <= U64_MAX - (size[i] - 1):
                    last = (a + (size[i] - 1)) >> shift
                else:
                    last = first
                self.references += <int64_t>(last - first + 1)
                while True:
                    self._add(first)
                    if first == last:
                        break
                    first += 1


# next_use: a flat table of the latest positions when the pages span fewer
# numbers than this (32 MiB of int64), else a hash table sized by the distinct pages
cdef enum:
    NEXT_USE_FLAT = 1 << 22


def next_use(const uint64_t[::1] pages):
    """For each position of a page-reference sequence, the next position of the
    same page, or ``len(pages)`` if there is none (Belady's look-ahead).

    One backward pass over a table of the latest position seen of each page, so
    the cost is linear in the length of the sequence: a flat array when the
    pages span at most NEXT_USE_FLAT numbers, else an open-addressing hash table.

    Parameters
    ----------
    pages : numpy.ndarray of uint64
        The page numbers, in reference order (``Trace.pages``).

    Returns
    -------
    numpy.ndarray of int64
        ``len(pages)`` positions.
    """
    cdef Py_ssize_t n = pages.shape[0], i
    cdef int64_t[::1] out = np.empty(n, np.int64)
    cdef uint64_t cap = 1024, mask, h, page, j, used = 0, lo = 0, hi = 0
    cdef uint64_t *keys
    cdef int64_t *vals
    cdef uint64_t *okeys
    cdef int64_t *ovals
    if n:
        with nogil:
            lo = hi = pages[0]
            for i in range(n):
                lo = min(lo, pages[i])
                hi = max(hi, pages[i])
        if hi - lo < NEXT_USE_FLAT:
            vals = <int64_t *>malloc((hi - lo + 1) * sizeof(int64_t))
            if vals == NULL:
                raise MemoryError()
            with nogil:
                for j in range(hi - lo + 1):
                    vals[j] = n
                i = n - 1
                while i >= 0:
                    j = pages[i] - lo
                    out[i] = vals[j]
                    vals[j] = i
                    i -= 1
            free(vals)
            return np.asarray(out)
    keys = <uint64_t *>malloc(cap * sizeof(uint64_t))
    vals = <int64_t *>malloc(cap * sizeof(int64_t))
    if keys == NULL or vals == NULL:
        free(keys); free(vals)
        raise MemoryError()
    with nogil:
        for j in range(cap):
            vals[j] = -1
        mask = cap - 1
        i = n - 1
        while i >= 0:
            page = pages[i]
            h = (page * <uint64_t>0x9E3779B97F4A7C15) >> 17
            while True:
                h &= mask
                if vals[h] < 0:
                    keys[h] = page
                    out[i] = n
                    vals[h] = i
                    used += 1
                    break
                if keys[h] == page:
                    out[i] = vals[h]
                    vals[h] = i
                    break
                h += 1
            if 2 * used > cap:            # keep the table at most half full
                okeys, ovals = keys, vals
                cap *= 2
                mask = cap - 1
                keys = <uint64_t *>malloc(cap * sizeof(uint64_t))
                vals = <int64_t *>malloc(cap * sizeof(int64_t))
                if keys == NULL or vals == NULL:
                    free(keys); free(vals); free(okeys); free(ovals)
                    with gil:
                        raise MemoryError()
                for j in range(cap):
                    vals[j] = -1
                for j in range(cap // 2):
                    if ovals[j] >= 0:
                        h = (okeys[j] * <uint64_t>0x9E3779B97F4A7C15) >> 17
                        while True:
                            h &= mask
                            if vals[h] < 0:
                                keys[h] = okeys[j]
                                vals[h] = ovals[j]
                                break
                            h += 1
                free(okeys)
                free(ovals)
            i -= 1
    free(keys)
    free(vals)
    return np.asarray(out)
