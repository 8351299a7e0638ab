/* temporary: removed once the comm layer lands */
typedef int wf_comm_placeholder_t;
