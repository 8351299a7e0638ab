/*
 * fuzz: the cluster message decoders (cluster layer). Byte 0 picks the
 * message type; the rest is its payload. Beyond "no crash, no sanitizer
 * report": a payload that decodes re-encodes to exactly the same bytes
 * (the layouts in docs/messages.md have one encoding each), and is no
 * longer than wf_msg_max_len allows its type (the cap a connection applies
 * from the header, before reading the payload). The type table
 * is in fuzz_types.h; make_corpus.c writes the seeds from it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weft/cluster.h"
#include "weft/comm.h"

#include "fuzz_types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int type = fuzz_msg_types[data[0] % FUZZ_MSG_NTYPES];
    struct wf_msg m;
    if (wf_msg_decode(&m, type, data + 1, size - 1) != 0) return 0;
    const char *name;
    if (size - 1 > wf_msg_max_len(type, &name)) abort(); /* the per-type cap refuses what the decoder takes */
    struct wf_wbuf b;
    wf_wbuf_init(&b);
    wf_msg_encode(&b, &m);
    if (!b.oom && (b.len != size - 1 || (b.len && memcmp(b.p, data + 1, b.len)))) abort();
    wf_wbuf_free(&b);
    wf_msg_free(&m);
    return 0;
}
