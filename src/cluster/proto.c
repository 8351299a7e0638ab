/* cluster layer: placeholder until the protocol lands. */
#include "weft/comm.h"
