/*
 * bench_cmd.h: one `keybroker bench` run, from checked options to the
 * printed report. The CLI (client/bench_main.c) parses and checks the
 * options and asks the broker once for what the run will ask (its own
 * connection); the engine makes the driver (broker or KMS), runs it, adds
 * the notes, and writes the table or JSON to stdout and the CSV and SVG
 * files. So the subcommand is a thin entry point and the measuring lives
 * in bench/ with the rest of the engine.
 */
#ifndef KB_BENCH_CMD_H
#define KB_BENCH_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"
#include "kb_codes.h"

typedef struct bench_cmd {
	const char *socket;     /* the broker's socket, for the broker ops */
	const char *kms_socket; /* the [kms:NAME] socket for a kms-* op, else NULL */
	const char *key;        /* the key of a broker op; a kms-* op names its own */
	const char *opname;     /* the op as the user wrote it */
	bench_op op;            /* BENCH_OP_COUNT for a kms-* op */
	size_t size;            /* DEK bytes */
	int clients;
	uint64_t requests;      /* 0: measure for duration_s instead */
	double duration_s, warmup_s;
	bool json;              /* JSON on stdout instead of the table */
	bool progress;          /* the progress line on stderr (a terminal) */
	const char *csv, *plot; /* files to write, or NULL */
} bench_cmd;

/*
 * bench_cmd_run runs cmd and prints its report. Returns KB_OK, or the code
 * of the first failure (a driver that cannot start or run, a file that
 * cannot be written, requests that failed: then the first one's code) with
 * its message in err.
 */
kb_code bench_cmd_run(const bench_cmd *cmd, char *err, size_t errlen);

#endif
