/* exec layer, private: pieces shared by train.c and checkpoint.c. */
#ifndef WEFT_TRAIN_INT_H
#define WEFT_TRAIN_INT_H

#include "weft/safetensors.h"
#include "weft/train.h"

int wf_trainer_restore(struct wf_trainer *t, const char *path);
/* Restarts the trainer's feeder at `step` (after a restore). */
int wf_trainer_feed_from(struct wf_trainer *t, long step);

#endif
