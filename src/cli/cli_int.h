/* cli layer, private: helpers shared by the command files. */
#ifndef WEFT_CLI_INT_H
#define WEFT_CLI_INT_H

int wf_cli_fail(const char *cmd);
int wf_cli_parse_long(const char *cmd, const char *opt, const char *s, long *out);
/* --max-memory SIZE: parses value (NULL: missing) and sets the process's memory bound (core.h);
 * prints the error and returns -1 if it is malformed. */
int wf_cli_max_memory(const char *cmd, const char *value);
int cmd_run(int argc, char **argv);
int cmd_coordinator(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_submit(int argc, char **argv);
int cmd_status(int argc, char **argv);

#endif
