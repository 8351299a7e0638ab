/* exec layer, private: the recurrent units' runtime (unit.c) as the executor uses it. */
#ifndef WEFT_EXEC_INT_H
#define WEFT_EXEC_INT_H

#include "weft/exec.h"

/* One runtime per unit of e's program (its body planned, its arenas); freed by wf_exec_units_free. */
int wf_exec_units_init(struct wf_exec *e);
void wf_exec_units_free(struct wf_exec *e);
/* wf_run.unit: runs a unit node forward or backward. */
int wf_exec_unit_hook(const struct wf_run *r, int backward);

#endif
