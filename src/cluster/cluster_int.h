/* cluster layer, private: pieces shared by the coordinator, the worker and weft run. */
#ifndef WEFT_CLUSTER_INT_H
#define WEFT_CLUSTER_INT_H

#include <stdint.h>

#include "weft/cluster.h"

#define CTL_TIMEOUT 30.0 /* control messages that must come promptly */
#define HEARTBEAT_EVERY 0.5

/* Trace events a worker records and sends at the end (TRACE). */
enum { TR_F, TR_B, TR_SEND, TR_RECV, TR_REDUCE, TR_OPT, TR_EVAL, TR_XMIT, TR_NKINDS };
struct wf_trace_ev {
    uint8_t kind;
    uint8_t pad[3];
    int32_t mb;
    int64_t step;
    double t0, t1; /* seconds, CLOCK_MONOTONIC: one clock for every process on a machine */
};

#endif
