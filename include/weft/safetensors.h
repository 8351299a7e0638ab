/*
 * weft tensor layer: the safetensors file format (checkpoints, reference
 * data, weights exchanged with PyTorch).
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "value", ...}}, then the data block. weft writes
 * tensors sorted by name, data packed in that order, the header padded with
 * spaces to a multiple of 8, so equal contents give equal bytes.
 * The reader checks every offset and size against the file; a truncated or
 * corrupt file is an error naming the file and what is wrong. Limits: a
 * header of at most 100 MB nested at most 8 deep, at most 8 dimensions, no
 * NUL (\u0000) in a name or metadata string, no duplicate tensor names or
 * metadata keys; byte ranges tile the data block exactly.
 */
#ifndef WEFT_SAFETENSORS_H
#define WEFT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum wf_dtype { WF_F32 = 0, WF_I32 = 1, WF_I64 = 2, WF_U8 = 3, WF_F64 = 4 };
const char *wf_dtype_name(int dtype); /* "F32", "I32", "I64", "U8", "F64" */
int wf_dtype_size(int dtype);

#define WF_ST_MAX_DIMS 8

struct wf_st_tensor {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[WF_ST_MAX_DIMS];
    const void *data; /* points into the file buffer (reader) or caller memory (writer) */
    size_t nbytes;
};

struct wf_st_file {
    char *path;
    unsigned char *buf; /* whole file */
    size_t len;
    int n; /* tensors */
    struct wf_st_tensor *t;
    int n_meta;
    char **meta_key, **meta_val;
};

/* Reads and validates a file. On error *f is left empty (safe to free). */
int wf_st_load(struct wf_st_file *f, const char *path);
/* The same for a file's bytes already in memory (copied: data need not
 * outlive f; path names them in messages and may be NULL). */
int wf_st_parse(struct wf_st_file *f, const char *path, const void *data, size_t len);
const struct wf_st_tensor *wf_st_find(const struct wf_st_file *f, const char *name);
const char *wf_st_meta(const struct wf_st_file *f, const char *key); /* NULL if absent */
void wf_st_free(struct wf_st_file *f);

struct wf_st_writer {
    int n, cap;
    struct wf_st_tensor *t; /* data not copied: must stay valid until save */
    int n_meta, meta_cap;
    char **meta_key, **meta_val;
};
void wf_st_writer_init(struct wf_st_writer *w);
int wf_st_writer_add(struct wf_st_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
                     const void *data);
int wf_st_writer_meta(struct wf_st_writer *w, const char *key, const char *val);
/* Serializes to memory (caller frees *out with wf_free). */
int wf_st_writer_serialize(const struct wf_st_writer *w, unsigned char **out, size_t *len);
/* Writes atomically: temp file, fsync, rename. */
int wf_st_writer_save(const struct wf_st_writer *w, const char *path);
void wf_st_writer_free(struct wf_st_writer *w);

#endif
