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
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "comm_int.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_CLMUL_KERNEL 1
#include <immintrin.h>

#define CLMUL __attribute__((target("pclmul,sse4.1")))
#define CLMUL512 __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1")))

/* Folding constants: a 128-bit lane folded forward by d bits is multiplied
 * by x^(d+32) (low half) and x^(d-32) (high half) modulo P, bit-reflected
 * and shifted left by one; see the paper. */
#define K_LO_2048 0x011542778a /* 256 bytes: four 512-bit lanes */
#define K_HI_2048 0x01322d1430
#define K_LO_512 0x0154442bd4 /* 64 bytes */
#define K_HI_512 0x01c6e41596
#define K_LO_384 0x003db1ecdc
#define K_HI_384 0x0174359406
#define K_LO_256 0x00f1da05aa
#define K_HI_256 0x015a546366
#define K_LO_128 0x01751997d0 /* 16 bytes */
#define K_HI_128 0x00ccaa009e
#define K_64_32 0x0163cd6124 /* 64 -> 32 bits */
#define K_MU 0x01f7011641    /* Barrett: x^64 / P, reflected */
#define K_P 0x01db710641     /* P itself, reflected */

/* a * x^d + next, d given by the two halves of k */
CLMUL static inline __m128i fold(__m128i a, __m128i k, __m128i next) {
    __m128i lo = _mm_clmulepi64_si128(a, k, 0x00), hi = _mm_clmulepi64_si128(a, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

static inline __m128i ld(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)(const void *)p); }

/* Folds the 16-byte blocks left into a, then reduces a to the 32-bit register. */
CLMUL static uint32_t finish(__m128i a, const uint8_t *p, size_t n) {
    const __m128i k128 = _mm_set_epi64x(K_HI_128, K_LO_128);
    const __m128i k32 = _mm_set_epi64x(0, K_64_32);
    const __m128i barrett = _mm_set_epi64x(K_MU, K_P);
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
    for (; n >= 16; p += 16, n -= 16)
        a = fold(a, k128, ld(p));
    /* 128 -> 64 bits */
    __m128i t = _mm_clmulepi64_si128(a, k128, 0x10);
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

/* The raw (not inverted) CRC register after p[0..n); n >= 64, a multiple of 16. */
CLMUL static uint32_t crc_clmul(uint32_t reg, const uint8_t *p, size_t n) {
    const __m128i k512 = _mm_set_epi64x(K_HI_512, K_LO_512), k128 = _mm_set_epi64x(K_HI_128, K_LO_128);
    __m128i a = _mm_xor_si128(ld(p), _mm_cvtsi32_si128((int)reg));
    __m128i b = ld(p + 16), c = ld(p + 32), d = ld(p + 48);
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
        a = fold(a, k512, ld(p));
        b = fold(b, k512, ld(p + 16));
        c = fold(c, k512, ld(p + 32));
        d = fold(d, k512, ld(p + 48));
    }
    a = fold(a, k128, b);
    a = fold(a, k128, c);
    a = fold(a, k128, d);
    return finish(a, p, n);
}

/* The same with 512-bit registers: four of them, 256 bytes a round. */
CLMUL512 static inline __m512i fold512(__m512i a, __m512i k, __m512i next) {
    __m512i lo = _mm512_clmulepi64_epi128(a, k, 0x00), hi = _mm512_clmulepi64_epi128(a, k, 0x11);
    return _mm512_ternarylogic_epi64(lo, hi, next, 0x96); /* lo ^ hi ^ next */
}

CLMUL512 static inline __m512i ld512(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }

/* n >= 256, a multiple of 16 */
CLMUL512 static uint32_t crc_vpclmul(uint32_t reg, const uint8_t *p, size_t n) {
    const __m512i k2048 = _mm512_broadcast_i32x4(_mm_set_epi64x(K_HI_2048, K_LO_2048));
    const __m512i k512 = _mm512_broadcast_i32x4(_mm_set_epi64x(K_HI_512, K_LO_512));
    __m512i a = _mm512_xor_si512(ld512(p), _mm512_inserti32x4(_mm512_setzero_si512(), _mm_cvtsi32_si128((int)reg), 0));
    __m512i b = ld512(p + 64), c = ld512(p + 128), d = ld512(p + 192);
    for (p += 256, n -= 256; n >= 256; p += 256, n -= 256) {
        a = fold512(a, k2048, ld512(p));
        b = fold512(b, k2048, ld512(p + 64));
        c = fold512(c, k2048, ld512(p + 128));
        d = fold512(d, k2048, ld512(p + 192));
    }
    a = fold512(a, k512, b);
    a = fold512(a, k512, c);
    a = fold512(a, k512, d);
    /* the four 128-bit lanes of a, folded onto the last one */
    __m128i x = fold(_mm512_extracti32x4_epi32(a, 0), _mm_set_epi64x(K_HI_384, K_LO_384),
                     fold(_mm512_extracti32x4_epi32(a, 1), _mm_set_epi64x(K_HI_256, K_LO_256),
                          fold(_mm512_extracti32x4_epi32(a, 2), _mm_set_epi64x(K_HI_128, K_LO_128),
                               _mm512_extracti32x4_epi32(a, 3))));
    return finish(x, p, n);
}

enum { CRC_UNKNOWN, CRC_ZLIB, CRC_CLMUL, CRC_VPCLMUL };
static atomic_int crc_mode; /* which kernel wf_crc32 uses, picked at first use */

static uint32_t crc_fast(int mode, uint32_t crc, const uint8_t *p, size_t n) {
    size_t bulk = n & ~(size_t)15;
    /* zlib's value is the register inverted before and after */
    crc = ~(mode == CRC_VPCLMUL ? crc_vpclmul(~crc, p, bulk) : crc_clmul(~crc, p, bulk));
    return bulk < n ? (uint32_t)crc32_z(crc, p + bulk, n - bulk) : crc;
}

/* A kernel is used only if it agrees with zlib here, on lengths that go
 * through every part of it. */
static int agrees(int mode) {
    uint8_t probe[1000];
    for (int i = 0; i < (int)sizeof probe; i++)
        probe[i] = (uint8_t)(i * 167 + 13);
    static const size_t lens[] = {256, 300, 511, 999};
    for (size_t i = 0; i < WF_ARRAY_LEN(lens); i++)
        if (crc_fast(mode, 0x12345678u, probe + 1, lens[i]) != (uint32_t)crc32_z(0x12345678u, probe + 1, lens[i]))
            return 0;
    return 1;
}

/* WEFT_CRC=zlib|clmul caps the kernel (tests run each one; benchmarks compare). */
static int pick_mode(void) {
    int mode = CRC_ZLIB;
    const char *cap = getenv("WEFT_CRC");
    __builtin_cpu_init();
    if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) mode = CRC_CLMUL;
    if (mode == CRC_CLMUL && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq"))
        mode = CRC_VPCLMUL;
    if (cap && !strcmp(cap, "zlib")) mode = CRC_ZLIB;
    if (cap && !strcmp(cap, "clmul") && mode == CRC_VPCLMUL) mode = CRC_CLMUL;
    if (mode == CRC_VPCLMUL && !agrees(mode)) mode = CRC_CLMUL;
    if (mode == CRC_CLMUL && !agrees(mode)) mode = CRC_ZLIB;
    if (mode == CRC_ZLIB) WF_LOGD("comm", "crc32: no carry-less multiply kernel on this cpu; using zlib");
    atomic_store(&crc_mode, mode);
    return mode;
}
#endif

uint32_t wf_crc32(uint32_t crc, const void *data, size_t n) {
    if (n == 0) return crc; /* zlib returns 0 for a NULL buffer whatever the crc */
#ifdef HAVE_CLMUL_KERNEL
    if (n >= 256) {
        int mode = atomic_load_explicit(&crc_mode, memory_order_relaxed);
        if (mode == CRC_UNKNOWN) mode = pick_mode();
        if (mode != CRC_ZLIB) return crc_fast(mode, crc, data, n);
    }
#endif
    return (uint32_t)crc32_z(crc, data, n);
}
