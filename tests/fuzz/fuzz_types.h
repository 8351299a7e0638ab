/*
 * fuzz: the message types fuzz_msg.c decodes, shared with the seed
 * generator make_corpus.c. Byte 0 of a fuzz_msg input, modulo the table's
 * length, picks the type; the last entry is a type no decoder knows. A
 * seed's byte 0 is its type's index here: add a new type just before the
 * unknown one, give it a seed in make_corpus.c and regenerate the corpus.
 */
#ifndef WEFT_FUZZ_TYPES_H
#define WEFT_FUZZ_TYPES_H

#include "weft/cluster.h"

#define FUZZ_MSG_UNKNOWN 999

static const int fuzz_msg_types[] = {WF_M_CHALLENGE,    WF_M_HELLO,        WF_M_WELCOME, WF_M_REFUSE,    WF_M_ASSIGN,
                                     WF_M_COMPILE_DONE, WF_M_COMPILE_FAIL, WF_M_START,   WF_M_HEARTBEAT, WF_M_STEP_LOSS,
                                     WF_M_EVAL,         WF_M_STATE,        WF_M_DONE,    WF_M_FAIL,      WF_M_ABORT,
                                     WF_M_SHUTDOWN,     WF_M_TRACE,        WF_M_SUBMIT,  WF_M_JOB_EVENT, WF_M_JOB_END,
                                     WF_M_STATUS,       WF_M_STATUS_REPLY, WF_M_ACT,     WF_M_CLIP_PART, WF_M_CLIP,
                                     WF_M_GRAD,         WF_M_STOP,         WF_M_STOPPED, WF_M_SNAP,      WF_M_FETCH,
                                     WF_M_RESTORE,      FUZZ_MSG_UNKNOWN};

#define FUZZ_MSG_NTYPES (sizeof fuzz_msg_types / sizeof fuzz_msg_types[0])

#endif
