/* exec layer, private: pieces shared by train.c and checkpoint.c. */
#ifndef WEFT_TRAIN_INT_H
#define WEFT_TRAIN_INT_H

#include "weft/safetensors.h"
#include "weft/train.h"

int wf_trainer_restore(struct wf_trainer *t, const char *path);
int wf_evaluate_split(struct wf_exec *e, struct wf_exec *rest, const struct wf_dataset *d, double *loss, double *acc);

#endif
