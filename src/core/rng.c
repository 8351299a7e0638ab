/* core: Philox4x32-10 counter-based generator and hashing. Randomness in
 * weft is keyed by what it is for (seed, step, micro-batch, op, sample),
 * never by which worker or thread draws it (DESIGN.md §4 rule 4). */
#include <math.h>
#include <string.h>

#include "weft/core.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void wf_philox(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)ctr_lo, c1 = (uint32_t)(ctr_lo >> 32);
    uint32_t c2 = (uint32_t)ctr_hi, c3 = (uint32_t)(ctr_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

void wf_rng_init(struct wf_rng *r, uint64_t seed, uint64_t stream) {
    memset(r, 0, sizeof *r);
    r->key = wf_mix64(seed ^ 0x5745465452414E44ull);
    r->stream = stream;
    r->idx = 4;
}

uint32_t wf_rng_u32(struct wf_rng *r) {
    if (r->idx >= 4) {
        wf_philox(r->key, r->stream, r->counter++, r->buf);
        r->idx = 0;
    }
    return r->buf[r->idx++];
}

float wf_rng_uniform(struct wf_rng *r) { return (float)(wf_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float wf_rng_normal(struct wf_rng *r) {
    /* Box-Muller in double for a stable result; one normal per two draws. */
    double u1 = ((double)(wf_rng_u32(r) >> 8) + 1.0) / 16777217.0;
    double u2 = (double)(wf_rng_u32(r) >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t wf_rng_below(struct wf_rng *r, uint32_t n) {
    uint64_t m = (uint64_t)wf_rng_u32(r) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (l < t) {
            m = (uint64_t)wf_rng_u32(r) * n;
            l = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float wf_rng_uniform_at(uint64_t key, uint64_t stream, uint64_t i) {
    uint32_t out[4];
    wf_philox(key, stream, i >> 2, out);
    return (float)(out[i & 3] >> 8) * (1.0f / 16777216.0f);
}

uint64_t wf_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t wf_hash64(const void *data, size_t n, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = 0xCBF29CE484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return wf_mix64(h);
}

uint64_t wf_hash_combine(uint64_t h, uint64_t v) {
    return wf_mix64(h ^ (v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2)));
}
