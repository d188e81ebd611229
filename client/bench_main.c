/*
 * bench_main.c: `keybroker bench`, one operation against the running broker:
 * throughput, latency percentiles, errors, and the backend calls and cache
 * hits the broker's counters saw during the measured window.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "bench.h"
#include "bench_kms.h"
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
	bench_spec spec = { 0 };
	const char *kms_socket = cli_optval(c, "kms-socket");
	bool kms = opname && (!strcmp(opname, "kms-decrypt") || !strcmp(opname, "kms-encrypt") ||
			      !strcmp(opname, "kms-status"));
	bench_series *s;
	bench_broker *b = NULL;
	bench_kms *k = NULL;
	bench_driver *d;
	char err[512], label[128];
	int op, rc = CLI_EXIT_OK;

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

	if (kms) {
		/* the KMS socket names its key: the report shows Status's key_id */
		if ((k = bench_kms_new(kms_socket, opname, (size_t)size, err, sizeof(err))) == NULL)
			return cli_fail(KB_E_IO, "%s", err);
		key = bench_kms_key_id(k);
		d = bench_kms_driver(k);
	} else {
		if ((rc = cli_connect(c)) != CLI_EXIT_OK ||
		    (rc = probe(c, key, (bench_op)op, (size_t)size)) != CLI_EXIT_OK)
			return rc;
		b = bench_broker_new(kb_client_socket(c->kc), key, (bench_op)op, (size_t)size, err,
				     sizeof(err));
		if (b == NULL)
			return cli_fail(KB_E_IO, "%s", err);
		d = bench_broker_driver(b);
	}
	s = malloc(sizeof(*s));
	if (s == NULL) {
		bench_broker_free(b);
		bench_kms_free(k);
		return cli_fail(KB_E_IO, "out of memory");
	}
	snprintf(label, sizeof(label), "%s %s", opname, key);
	bench_series_init(s, label, (int)clients);
	spec.clients = (int)clients;
	spec.requests = (uint64_t)requests;
	spec.duration_s = req ? 0 : duration;
	spec.warmup_s = warmup;
	spec.label = label;
	/* for runs over 2 s; bench_run shows it only once 2 s have passed */
	spec.progress = !c->json && isatty(STDERR_FILENO);
	if (bench_run(d, &spec, s, err, sizeof(err)) != 0) {
		rc = cli_fail(KB_E_IO, "%s", err);
		goto out;
	}
	if (op == BENCH_UNWRAP_MISS && s->have_counters && s->backend_calls < s->ops)
		snprintf(s->note, sizeof(s->note), "only %llu of %llu unwraps reached the backend",
			 (unsigned long long)s->backend_calls, (unsigned long long)s->ops);
	if (op == BENCH_UNWRAP_MISS && s->elapsed_s + 0.05 < spec.duration_s)
		snprintf(s->note, sizeof(s->note), "the fresh blobs ran out after %.1f s", s->elapsed_s);
	if (c->json) {
		printf("{\"key\":\"%s\",\"backend\":\"%s\",\"op\":\"%s\",\"size\":%zu,\"warmup_s\":%g,"
		       "\"series\":[", key, b ? bench_broker_backend(b) : "kms", opname, (size_t)size, warmup);
		bench_report_series_json(stdout, s);
		printf("]}\n");
	} else {
		printf("keybroker bench: key %s (%s), op %s, %d client%s, %s, %zu-byte DEKs\n\n", key,
		       b ? bench_broker_backend(b) : "kms", opname, (int)clients, clients == 1 ? "" : "s",
		       req ? "by request count" : "by duration", (size_t)size);
		bench_report_text(stdout, s, 1);
		if (s->have_counters)
			printf("\nbackend calls in the window: %llu (%.2f per request); cache hits %llu, "
			       "misses %llu\n", (unsigned long long)s->backend_calls,
			       s->ops ? (double)s->backend_calls / (double)s->ops : 0.0,
			       (unsigned long long)s->hits, (unsigned long long)s->misses);
	}
	if (csv && bench_report_csv(csv, s, 1) != 0)
		rc = cli_fail(KB_E_IO, "cannot write %s: %s", csv, strerror(errno));
	if (plot && bench_plot_svg(plot, "keybroker bench: latency CDF", s, 1) != 0)
		rc = cli_fail(KB_E_IO, "cannot write %s: %s", plot, strerror(errno));
	if (s->errors > 0 && rc == CLI_EXIT_OK) {
		rc = cli_fail(kb_code_from_name(d->first_code), "%llu of %llu requests failed%s; the "
			      "first: %s", (unsigned long long)s->errors, (unsigned long long)s->ops,
			      s->errors == s->ops ? " (all of them: nothing was measured)" : "",
			      d->first_error);
	}
out:
	bench_broker_free(b);
	bench_kms_free(k);
	free(s);
	return rc;
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
