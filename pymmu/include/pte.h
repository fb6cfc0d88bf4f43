/* pte.h: the page-table entry layout of pymmu, the one source of truth.
 *
 * Plain C with no Python.h, so a C simulator can reuse it. The layout follows
 * x86-64 where x86-64 has a bit (present, writable, user, accessed, dirty, pfn
 * from bit 12) and RISC-V where it does not (separate read and execute bits).
 * Software bits sit where x86-64 leaves bits available to the OS (7, 9-11).
 */
#ifndef PYMMU_PTE_H
#define PYMMU_PTE_H

#include <stdint.h>
#include <string.h>

typedef uint64_t pte_t;

#define PTE_PRESENT    ((pte_t)1 << 0)   /* maps a frame                          */
#define PTE_WRITABLE   ((pte_t)1 << 1)   /* writes allowed without a fault        */
#define PTE_USER       ((pte_t)1 << 2)   /* user page (always set here)           */
#define PTE_READABLE   ((pte_t)1 << 3)   /* reads allowed (RISC-V R)              */
#define PTE_EXECUTABLE ((pte_t)1 << 4)   /* fetches allowed (RISC-V X, x86 ~NX)   */
#define PTE_ACCESSED   ((pte_t)1 << 5)   /* set by every access                   */
#define PTE_DIRTY      ((pte_t)1 << 6)   /* set by every write                    */
#define PTE_SWAP       ((pte_t)1 << 7)   /* not present: bits 12.. are a swap slot */
#define PTE_COW        ((pte_t)1 << 9)   /* software: copy (or reuse) on write    */
#define PTE_ZERO       ((pte_t)1 << 10)  /* software: maps the shared zero page   */
#define PTE_SHARED     ((pte_t)1 << 11)  /* software: page of a MAP_SHARED mapping */
#define PTE_PFN_SHIFT  12

#define PTE_PERM_MASK  (PTE_READABLE | PTE_WRITABLE | PTE_EXECUTABLE)

static inline uint64_t pte_pfn(pte_t pte) { return pte >> PTE_PFN_SHIFT; }
static inline pte_t pte_with_pfn(pte_t flags, uint64_t pfn) {
    return (flags & (((pte_t)1 << PTE_PFN_SHIFT) - 1)) | (pfn << PTE_PFN_SHIFT);
}
static inline int pte_present(pte_t pte) { return (pte & PTE_PRESENT) != 0; }
static inline int pte_is_swap(pte_t pte) {
    return (pte & (PTE_PRESENT | PTE_SWAP)) == PTE_SWAP;
}
static inline pte_t pte_make_swap(uint64_t slot) {
    return PTE_SWAP | (slot << PTE_PFN_SHIFT);
}

/* Page helpers: the only places bytes of a page move. */
static inline void page_zero(uint8_t *page, size_t size) { memset(page, 0, size); }
static inline void page_copy(uint8_t *dst, const uint8_t *src, size_t size) {
    memcpy(dst, src, size);
}
static inline int page_is_zero(const uint8_t *page, size_t size) {
    const uint64_t *w = (const uint64_t *)page;
    size_t i, n = size / 8;
    for (i = 0; i < n; i++)
        if (w[i]) return 0;
    return 1;
}

#endif
