# Cython view of src_c/pte.h: nothing here but the extern block.
from libc.stdint cimport uint8_t, uint64_t

cdef extern from "pte.h" nogil:
    ctypedef uint64_t pte_t
    pte_t PTE_PRESENT
    pte_t PTE_WRITABLE
    pte_t PTE_USER
    pte_t PTE_READABLE
    pte_t PTE_EXECUTABLE
    pte_t PTE_ACCESSED
    pte_t PTE_DIRTY
    pte_t PTE_SWAP
    pte_t PTE_COW
    pte_t PTE_ZERO
    pte_t PTE_SHARED
    int PTE_PFN_SHIFT
    pte_t PTE_PERM_MASK
    uint64_t pte_pfn(pte_t pte)
    pte_t pte_with_pfn(pte_t flags, uint64_t pfn)
    int pte_present(pte_t pte)
    int pte_is_swap(pte_t pte)
    pte_t pte_make_swap(uint64_t slot)
    void page_zero(uint8_t *page, size_t size)
    void page_copy(uint8_t *dst, const uint8_t *src, size_t size)
    int page_is_zero(const uint8_t *page, size_t size)
