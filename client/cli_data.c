/*
 * cli_data.c: the subcommands that move key material: wrap, unwrap, datakey,
 * rewrap. Plaintext never reaches argv (it comes from stdin or a file) and
 * never reaches a terminal unless asked with --force-tty.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "b64.h"
#include "cli.h"
#include "rewrap_bulk.h"

/* stdin_usable refuses to wait for input typed at a terminal: the user forgot a pipe. */
static int stdin_usable(const cli *c, const char *what)
{
	if (!isatty(STDIN_FILENO))
		return CLI_EXIT_OK;
	return cli_usage(c, "give %s on stdin (a pipe or a file), not typed at a terminal", what);
}

/*
 * blob_call readies a call on one blob: sets *blob to the blob argument, or
 * reads it from stdin with trailing whitespace (the newline that `keybroker
 * wrap` printed) removed, then connects c. *buf is what to free (with
 * out_wipe_free(*buf, *n)) whatever it returns, NULL for the argument.
 */
static int blob_call(cli *c, const char **blob, uint8_t **buf, size_t *n)
{
	int r;

	*buf = NULL;
	*n = 0;
	if (c->nargs > 0 && strcmp(c->args[0], "-") != 0) {
		*blob = c->args[0];
		return cli_connect(c);
	}
	if ((r = stdin_usable(c, "the blob as an argument or")) != CLI_EXIT_OK)
		return r;
	if ((r = out_read(NULL, buf, n)) != CLI_EXIT_OK)
		return r;
	while (*n > 0 && isspace((*buf)[*n - 1]))
		(*buf)[--*n] = '\0';
	if (*n == 0 || memchr(*buf, '\0', *n) != NULL)
		return cli_usage(c, "stdin holds no blob (or a NUL byte)");
	*blob = (const char *)*buf;
	return cli_connect(c);
}

/* write_stdout writes p[0..n), key material, to stdout. */
static int write_stdout(const void *p, size_t n)
{
	if (!out_write(STDOUT_FILENO, p, n))
		return cli_fail(KB_E_IO, "cannot write to stdout: %s", strerror(errno));
	return CLI_EXIT_OK;
}

/* plaintext_target checks --out, --json and the terminal before anything is asked. */
static int plaintext_target(const cli *c)
{
	if (cli_optval(c, "out") != NULL && c->json)
		return cli_usage(c, "--json prints the plaintext inside the response; use "
				 "either --json or --out");
	if (cli_optval(c, "out") == NULL)
		return out_secret_guard(c);
	return out_check_target(c, cli_optval(c, "out"));
}

static int run_wrap(cli *c)
{
	const char *in = cli_optval(c, "in");
	kb_result res;
	kb_error err;
	kb_code code;
	uint8_t *pt;
	size_t n;
	int r;

	if (in == NULL && (r = stdin_usable(c, "the plaintext with --in FILE or")) != CLI_EXIT_OK)
		return r;
	if ((r = out_read(in, &pt, &n)) != CLI_EXIT_OK)
		return r;
	if ((r = cli_connect(c)) != CLI_EXIT_OK) {
		out_wipe_free(pt, n);
		return r;
	}
	code = kb_wrap(c->kc, c->args[0], cli_optval(c, "alg"), pt, n, &res, &err);
	out_wipe_free(pt, n);
	return cli_finish_result(c, code, &err, &res, res.blob);
}

const cli_cmd cli_wrap = {
	.name = "wrap",
	.synopsis = "KEY [--alg ALG] [--in FILE]",
	.summary = "wrap plaintext bytes (a DEK) under KEY and print the blob",
	.help = "Reads the plaintext bytes as they are (no newline is removed) from stdin\n"
		"or FILE, at most 1024 bytes for the broker, and prints the blob on one line.\n\n"
		"example:\n  head -c 32 /dev/urandom > dek.bin\n"
		"  keybroker wrap aes --in dek.bin > dek.blob\n",
	.min_args = 1, .max_args = 1,
	.opts = {
		{ "alg", 0, "ALG", "wrap with ALG (RSA-OAEP, RSA-OAEP-256, AES-KWP, ...), "
		  "not the key's own" },
		{ "in", 0, "FILE", "read the plaintext from FILE, not stdin" },
	},
	.run = run_wrap,
};

static int run_unwrap(cli *c)
{
	const char *out = cli_optval(c, "out"), *blob;
	kb_result res;
	kb_error err;
	kb_code code;
	uint8_t *buf;
	size_t n;
	int r;

	if ((r = plaintext_target(c)) != CLI_EXIT_OK)
		return r;
	if ((r = blob_call(c, &blob, &buf, &n)) != CLI_EXIT_OK)
		goto done;
	code = kb_unwrap(c->kc, blob, &res, &err);
	r = cli_finish(c, code, &err);
	if (code == KB_OK && !c->json) {
		if (out != NULL)
			r = out_write_secret(out, res.plaintext, res.plaintext_len);
		else
			r = write_stdout(res.plaintext, res.plaintext_len);
	}
	kb_result_clear(&res);
done:
	out_wipe_free(buf, n);
	return r;
}

const cli_cmd cli_unwrap = {
	.name = "unwrap",
	.synopsis = "[BLOB] [--out FILE]",
	.summary = "unwrap a blob and write the plaintext bytes",
	.help = "Takes the blob as the argument, or on stdin (trailing newline removed).\n"
		"Writes the raw plaintext bytes to stdout, or with --out to FILE: a new file\n"
		"of mode 0600, written whole, that replaces any regular file there; anything\n"
		"else there (a directory, a link, a device) is refused. Refuses to write key\n"
		"material to a terminal unless --force-tty.\n\n"
		"example:\n  keybroker unwrap --out dek.bin < dek.blob\n"
		"  keybroker unwrap \"$(cat dek.blob)\" | xxd\n",
	.min_args = 0, .max_args = 1,
	.opts = {
		{ "out", 'o', "FILE", "write the plaintext to a new FILE (mode 0600), not stdout" },
		{ "force-tty", 0, NULL, "write key material to stdout even if it is a terminal" },
	},
	.run = run_unwrap,
};

/* parse_bits reads --bits: a positive decimal number; the broker checks its range. */
static bool parse_bits(const char *s, unsigned *bits)
{
	unsigned long v;
	char *end;

	*bits = 0;
	if (s == NULL)
		return true;
	if (!isdigit((unsigned char)s[0]))
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > UINT_MAX)
		return false;
	*bits = (unsigned)v;
	return true;
}

static int run_datakey(cli *c)
{
	const char *out = cli_optval(c, "out");
	kb_result res;
	kb_error err;
	kb_code code;
	unsigned bits;
	char *b64;
	size_t n;
	int r;

	if (!parse_bits(cli_optval(c, "bits"), &bits))
		return cli_usage(c, "--bits takes a positive number of bits, e.g. 256");
	if ((r = plaintext_target(c)) != CLI_EXIT_OK)
		return r;
	if ((r = cli_connect(c)) != CLI_EXIT_OK)
		return r;
	code = kb_datakey(c->kc, c->args[0], bits, &res, &err);
	r = cli_finish(c, code, &err);
	if (code == KB_OK && !c->json) {
		if (out != NULL) {
			r = out_write_secret(out, res.plaintext, res.plaintext_len);
			if (r == CLI_EXIT_OK)
				printf("%s\n", res.blob);
		} else if ((b64 = malloc(kb_b64_encoded_len(res.plaintext_len, KB_B64_STD) + 2))) {
			n = kb_b64_encode(res.plaintext, res.plaintext_len, b64, KB_B64_STD);
			printf("%s\n", res.blob);
			fflush(stdout);
			b64[n++] = '\n';
			r = write_stdout(b64, n);
			out_wipe_free(b64, n);
		} else {
			r = cli_fail(KB_E_IO, "out of memory");
		}
	}
	kb_result_clear(&res);
	return r;
}

const cli_cmd cli_datakey = {
	.name = "datakey",
	.synopsis = "KEY [--bits N] [--out FILE]",
	.summary = "make a fresh data key wrapped under KEY",
	.help = "With --out: writes the DEK's raw bytes to FILE and prints the blob. FILE is\n"
		"written whole as a new file of mode 0600 that replaces any regular file\n"
		"there; anything else there (a directory, a link, a device) is refused.\n"
		"Without --out: prints two lines, the blob and then the DEK\n"
		"in standard base64, so `{ read -r blob; read -r dek; }` takes both; the\n"
		"blob comes first so that what you store is never confused with the key.\n"
		"Refuses to print the DEK to a terminal unless --force-tty.\n\n"
		"example:\n  keybroker datakey aes --out dek.bin > dek.blob\n"
		"  keybroker datakey aes --bits 128 | { read -r blob; read -r dek; ...; }\n",
	.min_args = 1, .max_args = 1,
	.opts = {
		{ "bits", 0, "N", "key size in bits, a multiple of 8 (default 256)" },
		{ "out", 'o', "FILE", "write the DEK's raw bytes to a new FILE (mode 0600)" },
		{ "force-tty", 0, NULL, "print the DEK even if stdout is a terminal" },
	},
	.run = run_datakey,
};

static int run_rewrap(cli *c)
{
	const char *blob;
	kb_result res;
	kb_error err;
	kb_code code;
	uint8_t *buf;
	size_t n;
	int r;

	if (cli_optval(c, "in") == NULL) {
		static const char *const bulk[] = { "out", "failed", "to-version", "concurrency" };

		for (size_t i = 0; i < sizeof(bulk) / sizeof(bulk[0]); i++)
			if (cli_optval(c, bulk[i]) != NULL)
				return cli_usage(c, "--%s is for bulk rewraps: give the blobs with --in FILE|-", bulk[i]);
	} else {
		if (c->nargs > 0)
			return cli_usage(c, "give blobs either with --in or as the argument, not both");
		return rewrap_bulk(c);
	}
	if ((r = blob_call(c, &blob, &buf, &n)) != CLI_EXIT_OK)
		goto done;
	code = kb_rewrap(c->kc, blob, cli_optval(c, "key"), &res, &err);
	r = cli_finish_result(c, code, &err, &res, res.blob);
done:
	out_wipe_free(buf, n);
	return r;
}

const cli_cmd cli_rewrap = {
	.name = "rewrap",
	.synopsis = "[BLOB] [--key KEY] [--in FILE|- [--out FILE] [--failed FILE] [--to-version V] [--concurrency N]]",
	.summary = "move blobs to the latest version of their key (or of KEY)",
	.help = "Takes the blob as the argument, or on stdin, and prints the new blob.\n"
		"With --in, a bulk rewrap: reads blobs one per line (kb2, kb1 or Azure's raw\n"
		"form; FILE, or - for stdin) and writes the new blob of each line in the\n"
		"same order to --out (or stdout), in batches on N connections. A line the\n"
		"key service throttles or cannot answer is sent again with backoff; a line\n"
		"that still fails is written out unchanged, listed in --failed, and the\n"
		"exit status is 1. Run it again with the same --in and --out to go on\n"
		"where it stopped: the lines --out holds are checked against its journal\n"
		"(OUT.journal) and the input, and skipped. --out, --failed and the journal\n"
		"are never the input, one another, or a symbolic link. On a terminal, a\n"
		"progress line shows done/total, rate, errors and ETA; a summary ends the\n"
		"run (counts by old -> new version, failures by code).\n"
		"The DEK never leaves the broker.\n\n"
		"example:\n  keybroker rewrap < dek.blob > dek.blob.new\n"
		"  keybroker rewrap --key rsa \"$(cat dek.blob)\"\n"
		"  keybroker rewrap --in blobs.txt --out blobs.new --failed blobs.failed\n",
	.min_args = 0, .max_args = 1,
	.opts = {
		{ "key", 'k', "KEY", "wrap under KEY instead of the blob's own key" },
		{ "in", 'i', "FILE", "blobs one per line from FILE (- for stdin), rewrapped in batches" },
		{ "out", 'o', "FILE", "with --in: write the new blobs to FILE; a rerun skips the lines its journal proves" },
		{ "failed", 0, "FILE", "with --in: list the lines that failed in FILE, to run again" },
		{ "to-version", 0, "V", "with --in: lines under V are kept as they are; a line the broker moves elsewhere fails" },
		{ "concurrency", 'j', "N", "with --in: batches in flight at once, 1 to 64 (default 4)" },
	},
	.run = run_rewrap,
};
