/*
 * tensor layer: hostile safetensors files, from bytes (wf_st_parse). Each
 * case gives its exact message; limits hold (nesting, \u0000 in strings,
 * dimension count); a header of many metadata keys is checked for
 * duplicates in n log n; headers with no tensors or no metadata are fine;
 * the bytes are copied, so the caller's buffer may go away.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/safetensors.h"

/* A file of header text h (length field = strlen(h) + delta) and n data bytes. */
static unsigned char *file_of(const char *h, size_t n, long long delta, size_t *len) {
    size_t hl = strlen(h);
    *len = 8 + hl + n;
    unsigned char *b = calloc(1, *len);
    unsigned long long v = (unsigned long long)((long long)hl + delta);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    memcpy(b + 8, h, hl);
    for (size_t i = 0; i < n; i++)
        b[8 + hl + i] = (unsigned char)i;
    return b;
}

static void expect(const char *h, size_t n, long long delta, int want_rc, const char *want) {
    size_t len;
    unsigned char *b = file_of(h, n, delta, &len);
    struct wf_st_file f;
    wf_error_clear();
    int rc = wf_st_parse(&f, "h.safetensors", b, len);
    free(b);
    CHECKF(rc == want_rc, "%s: rc %d, want %d (%s)", h, rc, want_rc, wf_errmsg());
    if (want) CHECKF(!strcmp(wf_errmsg(), want), "%s:\n got '%s'\nwant '%s'", h, wf_errmsg(), want);
    if (rc == WF_OK) wf_st_free(&f);
}

#define P "h.safetensors: "

static void test_cases(void) {
    expect("{}", 0, 0, WF_OK, NULL);
    expect("{\"__metadata__\":{}}", 0, 0, WF_OK, NULL);
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}}", 0, 0, WF_OK, NULL);
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 0, WF_OK, NULL); /* a scalar */
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, 0, WF_ERR_CORRUPT,
           P "tensor 'a': data_offsets [0, 8) exceed the data block of 7 bytes (file truncated?)");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740991,9007199254740991],\"data_offsets\":[0,8]}}", 8, 0,
           WF_ERR_CORRUPT,
           P "tensor 'a': shape [9007199254740991, 9007199254740991] of F32 is larger than the data block of 8 bytes");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740993],\"data_offsets\":[0,8]}}", 8, 0, WF_ERR_CORRUPT,
           P "tensor 'a': shape[0] is not a non-negative integer");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, 0, WF_ERR_CORRUPT,
           P "tensor 'a': shape[0] is not a non-negative integer");
    expect("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,-8]}}", 8, 0, WF_ERR_CORRUPT,
           P "tensor 'a': data_offsets are not non-negative integers");
    expect("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0]}}", 8, 0, WF_ERR_CORRUPT,
           P "tensor 'a': data_offsets is not an array of two integers");
    expect("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8],\"dtype\":\"U8\"}}", 8, 0, WF_ERR_CORRUPT,
           P "tensor 'a': duplicate field 'dtype'");
    expect("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"U8\",\"shape\":[4],"
           "\"data_offsets\":[4,8]}}",
           8, 0, WF_ERR_CORRUPT, P "header: duplicate tensor name 'a'");
    expect("{\"__metadata__\":{\"k\":\"1\"},\"__metadata__\":{}}", 0, 0, WF_ERR_CORRUPT,
           P "header: duplicate \"__metadata__\"");
    expect("{\"__metadata__\":{\"k\":\"1\",\"j\":\"2\",\"k\":\"3\"}}", 0, 0, WF_ERR_CORRUPT,
           P "header: duplicate metadata key 'k'");
    expect("{\"__metadata__\":{\"k\":1}}", 0, 0, WF_ERR_CORRUPT, P "header: metadata value of 'k' is not a string");
    expect("{\"a\\u0000b\":{}}", 0, 0, WF_ERR_CORRUPT, P "header has a NUL character (\\u0000) in a string at byte 11");
    expect("{\"__metadata__\":{\"m\":\"x\\\\u0000\"}}", 0, 0, WF_OK, NULL); /* an escaped backslash, then "u0000" */
    expect("{\"a\":[[[[[[[[1]]]]]]]]}", 0, 0, WF_ERR_CORRUPT, P "header nests deeper than 8 levels at byte 20");
    expect("{\"a\":\"[[[[[[[[[[\"}", 0, 0, WF_ERR_CORRUPT, P "tensor 'a': entry is not an object"); /* in a string */
    expect("{}", 0, 1, WF_ERR_CORRUPT,
           P "header length 3 exceeds the 2 bytes after the length field (file truncated?)");
    expect("{} ", 0, 0, WF_OK, NULL);
    expect("{} x", 0, 0, WF_ERR_CORRUPT, P "unexpected bytes after the header JSON at byte 11");
    expect("{", 0, 0, WF_ERR_CORRUPT, P "header does not start with '{' (not a safetensors file?)");
    expect("{\"a\":", 0, 0, WF_ERR_CORRUPT,
           P "header is not valid JSON (error at byte 12; the header is bytes [8, 13))");
    expect("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, 0, WF_ERR_CORRUPT,
           P "tensor 'a': 9 dimensions, at most 8 supported");

    size_t len;
    struct wf_st_file f;
    CHECK(wf_st_parse(&f, "h.safetensors", "\x01\x00", 2) == WF_ERR_CORRUPT &&
          !strcmp(wf_errmsg(), P "file is 2 bytes, too short for the 8-byte header length (truncated?)"));
    CHECK(wf_st_parse(&f, NULL, NULL, 0) == WF_ERR_CORRUPT &&
          !strcmp(wf_errmsg(), "<memory>: file is 0 bytes, too short for the 8-byte header length (truncated?)"));
    /* the bytes are copied: the tensor data stays valid after the caller's buffer is gone */
    unsigned char *b = file_of("{\"t\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3, 0, &len);
    int rc = wf_st_parse(&f, "h.safetensors", b, len);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    memset(b, 0xee, len);
    free(b);
    const struct wf_st_tensor *t = rc ? NULL : wf_st_find(&f, "t");
    CHECK(t && t->nbytes == 3 && !memcmp(t->data, "\x00\x01\x02", 3));
    if (rc == WF_OK) wf_st_free(&f);
}

/* 200000 metadata keys, the last a duplicate of the first: found without
 * comparing every pair (which would take minutes). */
static void test_many_keys(void) {
    int n = 200000;
    size_t cap = (size_t)n * 24 + 64, k = 0;
    char *h = malloc(cap);
    wf_appendf(h, cap, &k, "{\"__metadata__\":{");
    for (int i = 0; i < n; i++)
        wf_appendf(h, cap, &k, "%s\"k%d\":\"v\"", i ? "," : "", i == n - 1 ? 0 : i);
    wf_appendf(h, cap, &k, "}}");
    double t0 = wf_now();
    expect(h, 0, 0, WF_ERR_CORRUPT, P "header: duplicate metadata key 'k0'");
    CHECKF(wf_now() - t0 < 30, "%.1f s", wf_now() - t0);
    free(h);
}

int main(void) {
    test_cases();
    test_many_keys();
    return wf_test_done("test_hostile_safetensors");
}
