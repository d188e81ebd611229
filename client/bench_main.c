/*
 * bench_main.c: `keybroker bench`, one operation against the running broker:
 * throughput, latency percentiles, errors, and the backend calls and cache
 * hits the broker's counters saw during the measured window. A thin entry
 * point: it checks the options and probes the broker, and the engine in
 * bench/ (bench_cmd.h) measures and reports.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "bench_cmd.h"
#include "cli.h"

/* parse_num reads a number in [lo, hi] from s; false if s is not one. */
static bool parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
		return false;
	*out = v;
	return true;
}

/*
 * probe asks the broker once for what the run will ask of it thousands of
 * times: the key (get), then a wrap of a size-byte DEK, or a datakey of that
 * size. A key or size the broker refuses then fails here, once, with the
 * broker's own code and message, and nothing is measured.
 */
static int probe(cli *c, const char *key, bench_op op, size_t size)
{
	uint8_t dek[1024];
	kb_result res = { 0 };
	kb_error err;
	kb_code code;
	char *json = NULL;

	code = kb_get(c->kc, key, &json, &err);
	kb_free(json);
	if (code == KB_OK && (op == BENCH_DATAKEY || op == BENCH_MIXED)) {
		code = kb_datakey(c->kc, key, (unsigned)(size * 8), &res, &err);
		kb_result_clear(&res);
	}
	if (code == KB_OK && op != BENCH_DATAKEY) {
		if (getrandom(dek, size, 0) != (ssize_t)size)
			return cli_fail(KB_E_IO, "getrandom: %s", strerror(errno));
		code = kb_wrap(c->kc, key, NULL, dek, size, &res, &err);
		explicit_bzero(dek, sizeof(dek));
		kb_result_clear(&res);
	}
	if (code != KB_OK)
		return cli_fail(code, "%s", err.message);
	return CLI_EXIT_OK;
}

static int run_bench(cli *c)
{
	const char *key = cli_optval(c, "key"), *opname = cli_optval(c, "op");
	const char *dur = cli_optval(c, "duration"), *req = cli_optval(c, "requests");
	const char *csv = cli_optval(c, "csv"), *plot = cli_optval(c, "plot");
	double clients = 1, duration = 10, requests = 0, warmup = 1, size = 32;
	const char *kms_socket = cli_optval(c, "kms-socket");
	bool kms = opname && (!strcmp(opname, "kms-decrypt") || !strcmp(opname, "kms-encrypt") ||
			      !strcmp(opname, "kms-status"));
	bench_cmd cmd;
	kb_code code;
	char err[512];
	int op, rc;

	if (kms && kms_socket == NULL)
		return cli_usage(c, "--op %s needs --kms-socket PATH (a [kms:NAME] socket)", opname);
	if ((key == NULL && !kms) || opname == NULL)
		return cli_usage(c, "--key KEY and --op OP are required");
	op = kms ? BENCH_OP_COUNT : bench_op_parse(opname);
	if (op < 0)
		return cli_usage(c, "unknown --op '%s': one of unwrap-hit, unwrap-miss, wrap, datakey, "
				 "rewrap, mixed, kms-decrypt, kms-encrypt, kms-status", opname);
	if (dur != NULL && req != NULL)
		return cli_usage(c, "give --duration or --requests, not both");
	if (cli_optval(c, "clients") && !parse_num(cli_optval(c, "clients"), 1, 1024, &clients))
		return cli_usage(c, "--clients takes a whole number from 1 to 1024");
	if (dur && !parse_num(dur, 0.01, 86400, &duration))
		return cli_usage(c, "--duration takes seconds, from 0.01 to 86400");
	if (req && (!parse_num(req, 1, 1e12, &requests) || requests != (double)(uint64_t)requests))
		return cli_usage(c, "--requests takes a whole number of at least 1");
	if (cli_optval(c, "warmup") && !parse_num(cli_optval(c, "warmup"), 0, 3600, &warmup))
		return cli_usage(c, "--warmup takes seconds, from 0 to 3600");
	if (cli_optval(c, "size") && (!parse_num(cli_optval(c, "size"), 1, 1024, &size) ||
				      size != (double)(size_t)size))
		return cli_usage(c, "--size takes a whole number of bytes from 1 to 1024");
	if (clients != (double)(int)clients)
		return cli_usage(c, "--clients takes a whole number from 1 to 1024");
	if ((csv && !csv[0]) || (plot && !plot[0]))
		return cli_usage(c, "--csv and --plot need a file name");

	/* the broker is asked once here, on the CLI's own connection; the KMS
	 * socket is the engine's to open */
	if (!kms && ((rc = cli_connect(c)) != CLI_EXIT_OK ||
		     (rc = probe(c, key, (bench_op)op, (size_t)size)) != CLI_EXIT_OK))
		return rc;
	cmd = (bench_cmd){
		.socket = kms ? NULL : kb_client_socket(c->kc),
		.kms_socket = kms ? kms_socket : NULL,
		.key = key,
		.opname = opname,
		.op = (bench_op)op,
		.size = (size_t)size,
		.clients = (int)clients,
		.requests = (uint64_t)requests,
		.duration_s = duration,
		.warmup_s = warmup,
		.json = c->json,
		/* for runs over 2 s; bench_run shows it only once 2 s have passed */
		.progress = !c->json && isatty(STDERR_FILENO),
		.csv = csv,
		.plot = plot,
	};
	if ((code = bench_cmd_run(&cmd, err, sizeof(err))) != KB_OK)
		return cli_fail(code, "%s", err);
	return CLI_EXIT_OK;
}

const cli_cmd cli_bench = {
	.name = "bench",
	.synopsis = "--key KEY --op OP [--clients N] [--duration S | --requests N] [--warmup S]\n"
		    "       [--size BYTES] [--json] [--csv FILE] [--plot FILE.svg]",
	.summary = "measure latency and throughput of one operation",
	.help = "OP is one of:\n"
		"  unwrap-hit   unwraps of blobs that are all in the broker's cache\n"
		"  unwrap-miss  unwraps of fresh blobs (the key's cache is flushed first), so\n"
		"               every request reaches the backend\n"
		"  wrap, datakey, rewrap\n"
		"  mixed        9 cached unwraps to 1 datakey\n"
		"  kms-decrypt  KMS v2 Decrypts of cached DEKs on --kms-socket (no --key)\n"
		"  kms-encrypt  KMS v2 Encrypts on --kms-socket, as kube-apiserver makes them\n"
		"  kms-status   KMS v2 Status calls: the floor of a call on --kms-socket\n\n"
		"Each client is a thread with its own connection and one request in flight.\n"
		"Blobs are made (and, for unwrap-hit, cached) before the warmup; only the\n"
		"measured window is timed. Prints requests/s, latency percentiles (p50, p90,\n"
		"p99, p99.9, max), errors, and the backend calls and cache hits that the\n"
		"broker's counters saw in the window. Latencies and requests/s are those of\n"
		"the requests that succeeded; failed ones are counted as errors, and the\n"
		"first one's code and message are printed. Defaults: 1 client, 10 s, 1 s\n"
		"warmup, 32-byte DEKs. Before measuring, the key is looked up and one request\n"
		"of the run's kind is made, so a key or size the broker refuses fails at\n"
		"once with its code. Exits 1 if any request failed.\n\n"
		"For the comparison with the floors and p11-kit, run bench/compare\n"
		"(docs/BENCHMARKS.md).\n\n"
		"example:\n  keybroker bench --key aes --op unwrap-hit --clients 8 --duration 5\n"
		"  keybroker bench --key rsa --op unwrap-miss --plot cdf.svg\n",
	.opts = {
		{ "key", 'k', "KEY", "the key to measure" },
		{ "op", 0, "OP", "unwrap-hit, unwrap-miss, wrap, datakey, rewrap, mixed, kms-decrypt, kms-encrypt, kms-status" },
		{ "kms-socket", 0, "PATH", "the [kms:NAME] socket, for the kms-* ops" },
		{ "clients", 'c', "N", "client threads, one connection each (default 1)" },
		{ "duration", 'd', "S", "seconds to measure (default 10)" },
		{ "requests", 'n', "N", "measure N requests instead of a duration" },
		{ "warmup", 0, "S", "seconds of unmeasured warmup (default 1)" },
		{ "size", 0, "BYTES", "DEK size for wrap, datakey and the blobs (default 32)" },
		{ "csv", 0, "FILE", "write the series as CSV rows" },
		{ "plot", 0, "FILE.svg", "write the latency CDF as SVG" },
	},
	.run = run_bench,
};
