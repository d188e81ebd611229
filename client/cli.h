/*
 * cli.h: the keybroker command line. cli_main.c parses the command line and
 * dispatches through a table of subcommands; each cli_*.c file defines a
 * group of them; cli_call.c (cli_*) holds what a subcommand uses to reach the
 * broker and end, cli_output.c (out_*) the few ways the CLI prints and reads.
 * Calls go down only: main to the subcommands, the subcommands to cli_call.c
 * and cli_output.c, cli_output.c to cli_call.c.
 *
 * Adding a subcommand: define a cli_cmd, declare it below and add it to the
 * table in cli_main.c. Options, --help and argument counts come from the
 * cli_cmd, so every subcommand parses and documents itself the same way.
 */
#ifndef KB_CLI_H
#define KB_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "keybroker.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_BROKER 1 /* the broker refused, or could not be reached */
#define CLI_EXIT_USAGE 2

#define CLI_MAX_OPTS 10

/* Plaintext read from stdin or a file is refused past this many bytes. */
#define CLI_MAX_INPUT 65536

typedef struct cli_opt {
	const char *name;    /* long name without "--"; NULL ends the list */
	char short_name;     /* 0 if none */
	const char *arg;     /* placeholder of its value ("FILE"), NULL for a flag */
	const char *help;
} cli_opt;

typedef struct cli cli;

typedef struct cli_cmd {
	const char *name;
	const char *synopsis;  /* what follows "keybroker NAME" in the usage line */
	const char *summary;   /* one line for keybroker --help */
	const char *help;      /* the rest of NAME --help: behaviour, output, an example */
	int min_args, max_args;
	cli_opt opts[CLI_MAX_OPTS];
	int (*run)(cli *c);    /* returns the exit status */
} cli_cmd;

/* One invocation, as parsed from the command line. */
struct cli {
	const cli_cmd *cmd;
	const char *socket;             /* -s, or NULL: $KEYBROKER_SOCKET, then the default */
	bool json;                      /* --json */
	const char *val[CLI_MAX_OPTS];  /* per cmd->opts[i]: value, "" for a flag, NULL if unset */
	char **args;                    /* positional arguments */
	int nargs;
	kb_client *kc;                  /* set by cli_connect() */
};

extern const cli_cmd cli_status, cli_get, cli_rotate, cli_flush, cli_metrics, cli_doctor;
extern const cli_cmd cli_wrap, cli_unwrap, cli_datakey, cli_rewrap;
extern const cli_cmd cli_bench;

/* cli_opt returns the value of option name of c's subcommand, "" for a set flag, or NULL. */
const char *cli_optval(const cli *c, const char *name);

/* cli_usage prints "keybroker NAME: <message>" and a pointer to --help; returns CLI_EXIT_USAGE. */
int cli_usage(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cli_connect connects c to the broker. Returns CLI_EXIT_OK, or prints why not and returns CLI_EXIT_BROKER. */
int cli_connect(cli *c);

/*
 * cli_finish ends a call that returned code: with --json it prints the
 * broker's response line as is; on failure it prints "keybroker: CODE:
 * message" to stderr. Returns CLI_EXIT_OK or CLI_EXIT_BROKER.
 */
int cli_finish(const cli *c, kb_code code, const kb_error *err);

/*
 * cli_finish_result ends a call that filled res, as cli_finish does; on
 * success without --json it first prints text (a field of res, the call's
 * answer) on a line of its own. Clears res.
 */
int cli_finish_result(const cli *c, kb_code code, const kb_error *err, kb_result *res,
		      const char *text);

/* cli_fail prints "keybroker: CODE: message" for a failure found by the CLI itself; returns CLI_EXIT_BROKER. */
int cli_fail(kb_code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * out_secret_guard refuses (CLI_EXIT_USAGE, with a message) when plaintext
 * key material would go to stdout and stdout is a terminal, unless the
 * subcommand's --force-tty is set. Returns CLI_EXIT_OK otherwise.
 */
int out_secret_guard(const cli *c);

/*
 * out_read reads all of path (stdin when NULL) into a new buffer, at most
 * CLI_MAX_INPUT bytes, NUL-terminated (the NUL is not counted in *n). Returns
 * CLI_EXIT_OK, or prints why not and returns CLI_EXIT_BROKER. Free with
 * out_wipe_free().
 */
int out_read(const char *path, uint8_t **buf, size_t *n);

/* out_wipe_free zeroes n bytes of p and frees it. */
void out_wipe_free(void *p, size_t n);

/* out_write writes all of p[0..n) to fd. Returns false (errno set) on failure. */
bool out_write(int fd, const void *p, size_t n);

/*
 * out_check_target refuses (CLI_EXIT_USAGE, with a message) a --out path that
 * exists and is not a regular file: a directory, a symbolic link, a device
 * such as /dev/null, a FIFO. Returns CLI_EXIT_OK for a regular file or a
 * path that does not exist yet. Called before the broker is asked.
 */
int out_check_target(const cli *c, const char *path);

/*
 * out_write_secret writes p[0..n) to a new mode-0600 file in path's directory,
 * fsyncs it and renames it over path, so path is replaced whole, or, on any
 * failure, left as it was (the new file is removed). It never changes the
 * mode of, writes to, or deletes a file it did not create; it refuses what
 * out_check_target refuses. Returns CLI_EXIT_OK, or prints why not and
 * returns CLI_EXIT_BROKER.
 */
int out_write_secret(const char *path, const uint8_t *p, size_t n);

/*
 * out_fields prints the members of a response object as an aligned
 * "name  value" list: nested objects as k=v pairs, arrays of objects as
 * tables after the list, multi-line strings (PEM) last. id and ok are skipped.
 */
void out_fields(const cJSON *obj);

/*
 * out_table prints the objects of arr as a table with the given columns
 * (NULL-terminated). On a terminal, columns that do not fit its width go under
 * their row, wrapped; in a pipe each row is one line. out_fields wraps the same way.
 */
void out_table(const cJSON *arr, const char *const *cols);

#endif
