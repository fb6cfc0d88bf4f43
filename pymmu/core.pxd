# pymmu's C-level API, for simulators written in Cython (DESIGN.md section 11).
#
#     from pymmu.core cimport ProcessCore, PYMMU_OK, PYMMU_SEGV
#
#     cdef int st
#     with nogil:
#         st = p.read_into(addr, buf, n)      # p: a pymmu.Process
#     if st != PYMMU_OK:
#         p.raise_status(st)                  # the exception p.read would raise
#
# ProcessCore is the base of pymmu.Process. Its C methods run without the GIL, with
# the semantics and counters of the Python calls:
#     int read_into(uint64_t addr, uint8_t *buf, int64_t n) nogil     p.read
#     int fetch_into(uint64_t addr, uint8_t *buf, int64_t n) nogil    p.fetch
#     int write_from(uint64_t addr, const uint8_t *buf, int64_t n) nogil   p.write
#     int64_t translate(uint64_t addr) nogil     the physical address, -1 if absent
#     int raise_status(int st) except -1         raise the status's exception
# A call that finds the machine busy (a replay, another such call, a policy hook)
# returns PYMMU_BUSY and changes nothing. Build with
# include_dirs=[pymmu.get_include(), numpy.get_include()] (see docs/cython.md).
from pymmu._core cimport ProcessCore, Core
from pymmu._core cimport ST_OK as PYMMU_OK
from pymmu._core cimport ST_SEGV as PYMMU_SEGV
from pymmu._core cimport ST_PROT as PYMMU_PROT
from pymmu._core cimport ST_OOM as PYMMU_OOM
from pymmu._core cimport ST_BUSY as PYMMU_BUSY
from pymmu._core cimport ST_HOOK as PYMMU_HOOK
from pymmu._core cimport ST_STATE as PYMMU_STATE
