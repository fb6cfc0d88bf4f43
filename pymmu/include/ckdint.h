/* ckdint.h: checked int64 arithmetic (C23's <stdckdint.h>, for older compilers).
 *
 * m.run's clock is int64 nanoseconds and its costs come from the user, so a sum
 * or a product can pass INT64_MAX; signed overflow is undefined behaviour in C
 * (UBSan reports it, and -O3 may assume it never happens). These compute the
 * exact result into *r and return 0, or return 1 when it does not fit (*r is
 * then unspecified), as ckd_add and ckd_mul do. GCC and Clang compile each to
 * the operation and one branch on the overflow flag. */
#ifndef PYMMU_CKDINT_H
#define PYMMU_CKDINT_H

#include <stdint.h>

static inline int ckd_add_i64(int64_t *r, int64_t a, int64_t b) {
    return __builtin_add_overflow(a, b, r);
}

static inline int ckd_mul_i64(int64_t *r, int64_t a, int64_t b) {
    return __builtin_mul_overflow(a, b, r);
}

#endif
