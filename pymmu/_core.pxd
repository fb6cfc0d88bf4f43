# The contract of the typed core: constants and the Core's C-level state.
# The Pythonic layer (machine.py) owns processes and mappings; the Core owns
# frames, page tables, the TLB, swap, reclaim and every fault path.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from pymmu._pte cimport pte_t

# Status codes: every core routine returns one; _raise_status turns it into an
# exception in exactly one place.
cdef enum:
    ST_OK = 0
    ST_SEGV = 1             # no mapping, or beyond va_bits
    ST_PROT = 2             # the mapping's prot forbids the access
    ST_OOM = 3              # no frame could be freed
    ST_OPT = 4              # opt policy asked to choose without knowing the future
    ST_NOT_FILE = 5         # internal: a file mapping's page holds no file bytes (bss)
    ST_BAD_RECORD = 6       # a replayed trace record has a kind code over 3 or size 0
    ST_HOOK = 7             # a Python policy's victim() raised or returned a bad pfn

# Access kinds (also the ACCESS_NAMES order in _args.py).
cdef enum:
    ACC_READ = 0
    ACC_WRITE = 1
    ACC_EXEC = 2

# Frame states.
cdef enum:
    F_FREE = 0
    F_ANON = 1              # private anonymous (or a written private file page)
    F_FILE = 2              # clean page read from an exec image: drop, don't swap
    F_SHMEM = 3             # owned by a shared memory object

# Frame flag bits.
cdef enum:
    FL_POOL = 1             # free and in the pre-zeroed pool
    FL_CZERO = 2            # content known to be all zero (bytes really are zero)
    FL_PINNED = 4           # touched by the access in progress: never a victim

# VMA table columns (rows pushed by machine.py, one table per address space).
cdef enum:
    V_START = 0
    V_END = 1
    V_PROT = 2
    V_KIND = 3
    V_OBJ = 4
    V_PGOFF = 5
    V_NCOLS = 6

# Mapping kinds (vmas.KINDS).
cdef enum:
    K_ANON = 0
    K_SHARED = 1
    K_FILE = 2
    K_STACK = 3

# Policies (the _args.POLICIES order).
cdef enum:
    P_CLOCK = 0
    P_FIFO = 1
    P_LRU = 2
    P_RANDOM = 3
    P_OPT = 4
    P_PYTHON = 5            # a pymmu.Policy written in Python (policy.py)

# Indices into the counter arrays: the _args.STAT_NAMES order.
cdef enum:
    S_READS = 0
    S_WRITES
    S_FETCHES
    S_MINOR
    S_MAJOR
    S_ZERO_PAGE_MAPS
    S_ZERO_FILLS
    S_ZERO_POOL_HITS
    S_COW_COPIES
    S_COW_REUSES
    S_EVICTIONS
    S_SWAP_OUTS
    S_SWAP_INS
    S_SWAP_CACHE_HITS
    S_FILE_READS
    S_TLB_HITS
    S_TLB_MISSES
    S_FORKS
    S_VFORKS
    S_EXECS
    S_VFORK_CHILD_WRITES
    S_COUNT

# Event kinds: pymmu.events.KINDS, in order.
cdef enum:
    E_ZERO_PAGE_MAPS = 0
    E_ZERO_FILLS
    E_COW_COPIES
    E_COW_REUSES
    E_SWAP_INS
    E_SWAP_CACHE_HITS
    E_FILE_READS
    E_EVICTIONS
    E_SWAP_OUTS
    E_OOM
    E_SEGV
    E_PROTECTION
