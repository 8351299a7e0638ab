/*
 * comm: CRC-32 with zlib's polynomial (the frame checksum). zlib's crc32()
 * is the definition and does short buffers and tails; long buffers on x86
 * CPUs with carry-less multiply go through a folding kernel that gives the
 * same bits several times faster. Why bother: with zlib alone the checksum
 * took more than half of a large all-reduce's time on loopback (measured
 * with perf, see bench/ALLREDUCE.md), every byte being summed twice (sender
 * and receiver) at about 2-3 GB/s.
 *
 * The kernel folds four 128-bit lanes over 64-byte blocks, then folds to
 * 128, 64 and 32 bits and finishes with a Barrett reduction (V. Gopal et
 * al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ",
 * Intel, 2009). Its constants are powers of x modulo the bit-reflected
 * polynomial 0xEDB88320; a self-check against zlib at first use turns the
 * kernel off if it ever disagrees, and tests/comm/test_frame.c compares the
 * two on many lengths and alignments.
 */
#include <stdatomic.h>
#include <zlib.h>

#include "comm_int.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_CLMUL_KERNEL 1
#include <immintrin.h>

#define CLMUL __attribute__((target("pclmul,sse4.1")))

/* a * x^k + next, with k folded into the two 64-bit halves of fold_k */
CLMUL static inline __m128i fold(__m128i a, __m128i fold_k, __m128i next) {
    __m128i lo = _mm_clmulepi64_si128(a, fold_k, 0x00), hi = _mm_clmulepi64_si128(a, fold_k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

static inline __m128i ld(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)(const void *)p); }

/* The raw (not inverted) CRC register after p[0..n); n >= 64, a multiple of 16. */
CLMUL static uint32_t crc_clmul(uint32_t reg, const uint8_t *p, size_t n) {
    const __m128i k64 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);  /* fold by 64 bytes */
    const __m128i k16 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);  /* fold by 16 bytes */
    const __m128i k32 = _mm_set_epi64x(0, 0x0163cd6124);             /* 64 -> 32 bits */
    const __m128i barrett = _mm_set_epi64x(0x01f7011641, 0x01db710641); /* mu, P */
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);

    __m128i a = _mm_xor_si128(ld(p), _mm_cvtsi32_si128((int)reg));
    __m128i b = ld(p + 16), c = ld(p + 32), d = ld(p + 48);
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
        a = fold(a, k64, ld(p));
        b = fold(b, k64, ld(p + 16));
        c = fold(c, k64, ld(p + 32));
        d = fold(d, k64, ld(p + 48));
    }
    a = fold(a, k16, b);
    a = fold(a, k16, c);
    a = fold(a, k16, d);
    for (; n >= 16; p += 16, n -= 16)
        a = fold(a, k16, ld(p));

    /* 128 -> 64 bits */
    __m128i t = _mm_clmulepi64_si128(a, k16, 0x10);
    a = _mm_xor_si128(_mm_srli_si128(a, 8), t);
    /* 64 -> 32 bits */
    t = _mm_srli_si128(a, 4);
    a = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(a, low32), k32, 0x00), t);
    /* Barrett reduction to the 32-bit remainder */
    t = _mm_clmulepi64_si128(_mm_and_si128(a, low32), barrett, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), barrett, 0x00);
    a = _mm_xor_si128(a, t);
    return (uint32_t)_mm_extract_epi32(a, 1);
}

static uint32_t crc_fast(uint32_t crc, const uint8_t *p, size_t n) {
    size_t bulk = n & ~(size_t)15;
    /* zlib's value is the register inverted before and after */
    crc = ~crc_clmul(~crc, p, bulk);
    return bulk < n ? (uint32_t)crc32_z(crc, p + bulk, n - bulk) : crc;
}

/* 0 not yet known, 1 zlib only, 2 the kernel */
static atomic_int crc_mode;

static int pick_mode(void) {
    int mode = 1;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) {
        uint8_t probe[301];
        for (int i = 0; i < (int)sizeof probe; i++)
            probe[i] = (uint8_t)(i * 167 + 13);
        uint32_t want = (uint32_t)crc32_z(0x12345678u, probe + 1, 300);
        if (crc_fast(0x12345678u, probe + 1, 300) == want)
            mode = 2;
        else
            WF_LOGW("comm", "crc32: the pclmul kernel disagrees with zlib on this cpu; using zlib");
    }
    atomic_store(&crc_mode, mode);
    return mode;
}
#endif

uint32_t wf_crc32(uint32_t crc, const void *data, size_t n) {
    if (n == 0) return crc; /* zlib returns 0 for a NULL buffer whatever the crc */
#ifdef HAVE_CLMUL_KERNEL
    if (n >= 256) {
        int mode = atomic_load_explicit(&crc_mode, memory_order_relaxed);
        if (mode == 0) mode = pick_mode();
        if (mode == 2) return crc_fast(crc, data, n);
    }
#endif
    return (uint32_t)crc32_z(crc, data, n);
}

