/*
 * weft data layer: datasets, sample ids and the per-epoch order.
 *
 * Every sample has an id (its index in the dataset). The order of an epoch
 * is a permutation of the ids that is a pure function of (seed, epoch)
 * (DESIGN.md §4 rule 1); a global batch is K micro-batches of fixed size,
 * whatever runs them.
 */
#ifndef WEFT_DATA_H
#define WEFT_DATA_H

#include <stddef.h>
#include <stdint.h>

/* An image classification dataset held in memory as bytes. */
struct wf_dataset {
    char *name;        /* e.g. "fashion-mnist/train" */
    int n;             /* samples */
    int c, h, w;       /* image shape, c = 1 for IDX */
    int n_classes;     /* 1 + max label */
    uint8_t *images;   /* n * c*h*w bytes */
    int32_t *labels;   /* n */
    size_t bytes_read; /* bytes read from storage (decompressed) */
};

/* Reads an IDX file (gzip or plain, detected by magic). IDX3 images
 * (magic 0x00000803) into *data (n*rows*cols bytes), IDX1 labels (0x00000801).
 * A wrong magic, bad dimensions or a truncated file is WF_ERR_CORRUPT with a
 * message naming the file and the expected and actual sizes. */
int wf_idx_read_images(const char *path, uint8_t **data, int *n, int *rows, int *cols);
int wf_idx_read_labels(const char *path, uint8_t **labels, int *n);

/* Loads DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (split "train" or "test").
 * Checks that image and label counts agree. */
int wf_dataset_load_idx(struct wf_dataset *d, const char *dir, const char *split);
void wf_dataset_free(struct wf_dataset *d);

/* Fills perm[0..n) with the ids 0..n-1 in the order of epoch `epoch`
 * (Fisher-Yates driven by the counter-based generator keyed by (seed, epoch)). */
void wf_epoch_order(uint32_t *perm, uint32_t n, uint64_t seed, uint64_t epoch);

/* Copies samples ids[0..B) into x (B, c*h*w) as float pixel/255 and y (B). */
void wf_dataset_gather(const struct wf_dataset *d, const uint32_t *ids, int B, float *x, int32_t *y);

#endif
