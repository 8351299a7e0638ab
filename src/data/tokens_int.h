/*
 * data layer, private: the token-file store (tokens.c) that store.c
 * dispatches to when a folder holds a token dataset, and the pread helper
 * both share.
 */
#ifndef WEFT_DATA_TOKENS_INT_H
#define WEFT_DATA_TOKENS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "weft/loader.h"

struct wf_tokstore;

/* Little-endian fields of the token and class files (tokens.c, classes.c). */
static inline uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }
static inline void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void put64(unsigned char *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* pread until n bytes or end of file; *got is what arrived (store.c). */
int wf_store_pread(int fd, const char *path, void *buf, size_t n, uint64_t off, size_t *got);

/* Opens DIR/<split>.tok (validated whole, digested) with DIR/vocab.txt and
 * fills the token fields of *info (n, c, h, w, n_classes, digest, paths,
 * kind ...); info->open_bytes and open_s are added to. */
int wf_tokstore_open(struct wf_tokstore **out, const char *dir, const char *split, const struct wf_sample_opts *o,
                     struct wf_store_info *info);
void wf_tokstore_free(struct wf_tokstore *t);
/* wf_store_read_tokens; *nbytes (may be NULL) = the bytes this call read. */
int wf_tokstore_read(struct wf_tokstore *t, uint32_t id, int32_t *x, int32_t *y, int32_t *len, uint64_t *nbytes);
/* wf_store_read_tokens with the bytes it read, for the loader's counters (store.c). */
int wf_store_read_tokens_n(struct wf_store *s, uint32_t id, int32_t *x, int32_t *y, int32_t *len, uint64_t *nbytes);
uint64_t wf_tokstore_bytes_read(const struct wf_tokstore *t);

#endif
