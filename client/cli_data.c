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

/* stdin_usable refuses to wait for input typed at a terminal: the user forgot a pipe. */
static int stdin_usable(const cli *c, const char *what)
{
	if (!isatty(STDIN_FILENO))
		return CLI_EXIT_OK;
	return cli_usage(c, "give %s on stdin (a pipe or a file), not typed at a terminal", what);
}

/*
 * read_blob sets *blob to the blob argument, or reads it from stdin with
 * trailing whitespace (the newline that `keybroker wrap` printed) removed.
 * *buf is what to free, NULL for the argument.
 */
static int read_blob(const cli *c, const char **blob, uint8_t **buf, size_t *n)
{
	int r;

	*buf = NULL;
	*n = 0;
	if (c->nargs > 0 && strcmp(c->args[0], "-") != 0) {
		*blob = c->args[0];
		return CLI_EXIT_OK;
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
	if ((r = read_blob(c, &blob, &buf, &n)) != CLI_EXIT_OK)
		goto done;
	if ((r = cli_connect(c)) != CLI_EXIT_OK)
		goto done;
	code = kb_unwrap(c->kc, blob, &res, &err);
	r = cli_finish(c, code, &err);
	if (code == KB_OK && !c->json) {
		if (out != NULL)
			r = out_write_secret(out, res.plaintext, res.plaintext_len);
		else if (!out_write(STDOUT_FILENO, res.plaintext, res.plaintext_len))
			r = cli_fail(KB_E_IO, "cannot write to stdout: %s", strerror(errno));
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
			if (!out_write(STDOUT_FILENO, b64, n))
				r = cli_fail(KB_E_IO, "cannot write to stdout: %s", strerror(errno));
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

/* A batch stays well inside the broker's default max_request_bytes (64 KiB) and max_batch. */
#define BATCH_BYTES 48000
#define BATCH_MAX 512

/* rewrap_batch rewraps lines[0..n) in one request and prints each new blob (a failed line unchanged). */
static int rewrap_batch(cli *c, char **lines, size_t n, size_t first_line, size_t *failed)
{
	kb_result out[BATCH_MAX];
	kb_code codes[BATCH_MAX];
	kb_error err;
	kb_code code = kb_rewrap_many(c->kc, (const char *const *)lines, n, cli_optval(c, "key"), out, codes, &err);

	if (code != KB_OK)
		return cli_finish(c, code, &err);
	for (size_t i = 0; i < n; i++) {
		if (codes[i] == KB_OK) {
			printf("%s\n", out[i].blob);
		} else {
			printf("%s\n", lines[i]);
			fprintf(stderr, "keybroker rewrap: line %zu: %s (the line is written out unchanged)\n",
				first_line + i, kb_code_name(codes[i]));
			(*failed)++;
		}
		kb_result_clear(&out[i]);
	}
	return CLI_EXIT_OK;
}

/*
 * run_rewrap_lines rewraps a file of blobs, one per line, in order, in
 * batches, so the broker works on many at once. A line that fails is
 * written out unchanged and named on stderr; the exit status is then 1.
 */
static int run_rewrap_lines(cli *c, const char *path)
{
	FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *lines[BATCH_MAX], *line = NULL;
	size_t n = 0, bytes = 0, cap = 0, lineno = 0, failed = 0, first = 1;
	ssize_t len;
	int r = CLI_EXIT_OK;

	if (in == NULL)
		return cli_fail(KB_E_IO, "cannot open %s: %s", path, strerror(errno));
	if (in == stdin && (r = stdin_usable(c, "the blobs, one per line, in --in FILE or")) != CLI_EXIT_OK)
		return r;
	if ((r = cli_connect(c)) != CLI_EXIT_OK)
		goto done;
	while (r == CLI_EXIT_OK && (len = getline(&line, &cap, in)) >= 0) {
		lineno++;
		while (len > 0 && isspace((unsigned char)line[len - 1]))
			line[--len] = '\0';
		if (len == 0) {
			r = cli_usage(c, "%s line %zu is empty: give one blob per line", path, lineno);
			break;
		}
		if (n == BATCH_MAX || bytes + (size_t)len > BATCH_BYTES) {
			r = rewrap_batch(c, lines, n, first, &failed);
			while (n > 0)
				free(lines[--n]);
			bytes = 0;
			first = lineno;
		}
		if ((lines[n] = strdup(line)) == NULL) {
			r = cli_fail(KB_E_IO, "out of memory");
			break;
		}
		bytes += (size_t)len;
		n++;
	}
	if (r == CLI_EXIT_OK && n > 0)
		r = rewrap_batch(c, lines, n, first, &failed);
	while (n > 0)
		free(lines[--n]);
	if (r == CLI_EXIT_OK && failed > 0) {
		fprintf(stderr, "keybroker rewrap: %zu of %zu lines failed\n", failed, lineno);
		r = CLI_EXIT_BROKER;
	}
done:
	free(line);
	if (in != stdin)
		fclose(in);
	return r;
}

static int run_rewrap(cli *c)
{
	const char *blob;
	kb_result res;
	kb_error err;
	kb_code code;
	uint8_t *buf;
	size_t n;
	int r;

	if (cli_optval(c, "in") != NULL) {
		if (c->nargs > 0)
			return cli_usage(c, "give blobs either with --in or as the argument, not both");
		return run_rewrap_lines(c, cli_optval(c, "in"));
	}
	if ((r = read_blob(c, &blob, &buf, &n)) != CLI_EXIT_OK)
		goto done;
	if ((r = cli_connect(c)) != CLI_EXIT_OK)
		goto done;
	code = kb_rewrap(c->kc, blob, cli_optval(c, "key"), &res, &err);
	r = cli_finish_result(c, code, &err, &res, res.blob);
done:
	out_wipe_free(buf, n);
	return r;
}

const cli_cmd cli_rewrap = {
	.name = "rewrap",
	.synopsis = "[BLOB] [--key KEY] [--in FILE|-]",
	.summary = "move a blob to the latest version of its key (or of KEY)",
	.help = "Takes the blob as the argument, or on stdin, and prints the new blob.\n"
		"With --in, reads blobs one per line (FILE, or - for stdin) and prints the\n"
		"new blobs in the same order, sending them in batches; a line that fails is\n"
		"printed unchanged and named on stderr, and the exit status is 1.\n"
		"The DEK never leaves the broker.\n\n"
		"example:\n  keybroker rewrap < dek.blob > dek.blob.new\n"
		"  keybroker rewrap --key rsa \"$(cat dek.blob)\"\n"
		"  keybroker rewrap --in blobs.txt > blobs.new\n",
	.min_args = 0, .max_args = 1,
	.opts = {
		{ "key", 'k', "KEY", "wrap under KEY instead of the blob's own key" },
		{ "in", 'i', "FILE", "blobs one per line from FILE (- for stdin), rewrapped in batches" },
	},
	.run = run_rewrap,
};
