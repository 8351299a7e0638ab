/*
 * fuzz: the cluster message decoders (cluster layer). Byte 0 picks the
 * message type; the rest is its payload. Beyond "no crash, no sanitizer
 * report": a payload that decodes re-encodes to exactly the same bytes
 * (the layouts in docs/messages.md have one encoding each).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weft/cluster.h"
#include "weft/comm.h"

static const int msg_types[] = {
    WF_M_CHALLENGE,    WF_M_HELLO,   WF_M_WELCOME,   WF_M_REFUSE,       WF_M_ASSIGN, WF_M_COMPILE_DONE,
    WF_M_COMPILE_FAIL, WF_M_START,   WF_M_HEARTBEAT, WF_M_STEP_LOSS,    WF_M_EVAL,   WF_M_STATE,
    WF_M_DONE,         WF_M_FAIL,    WF_M_ABORT,     WF_M_SHUTDOWN,     WF_M_TRACE,  WF_M_SUBMIT,
    WF_M_JOB_EVENT,    WF_M_JOB_END, WF_M_STATUS,    WF_M_STATUS_REPLY, WF_M_ACT,    WF_M_CLIP_PART,
    WF_M_CLIP,         WF_M_GRAD,    WF_M_STOP,      WF_M_STOPPED,      WF_M_SNAP,   WF_M_FETCH,
    WF_M_RESTORE,      999};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int type = msg_types[data[0] % (sizeof msg_types / sizeof msg_types[0])];
    struct wf_msg m;
    if (wf_msg_decode(&m, type, data + 1, size - 1) != 0) return 0;
    struct wf_wbuf b;
    wf_wbuf_init(&b);
    wf_msg_encode(&b, &m);
    if (!b.oom && (b.len != size - 1 || (b.len && memcmp(b.p, data + 1, b.len)))) abort();
    wf_wbuf_free(&b);
    wf_msg_free(&m);
    return 0;
}
