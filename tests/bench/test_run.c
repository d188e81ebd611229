/*
 * test_run.c: the benchmark runner and its reports when requests fail. The
 * driver here is the test's own (a broker that fails on demand cannot be
 * made real); the runner, histogram and reports are the ones
 * `keybroker bench` and bench/compare use. Failed requests are errors: they
 * add nothing to the latencies or to requests/s.
 */
#include "../cases.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* The driver: every fail_every-th request fails (1: all of them, 0: none). */
static int fail_every;
static atomic_int calls;
static int conn_token;

static int open_conn(void *arg, int client, void **conn, char *err, size_t errlen)
{
	*conn = &conn_token;
	return 0;
}

static int op(void *conn)
{
	int n = atomic_fetch_add(&calls, 1) + 1;

	/* a failure takes far longer than a success, so a failed latency would show in p50 */
	if (fail_every > 0 && n % fail_every == 0) {
		usleep(20000);
		return BENCH_ERR;
	}
	return BENCH_OK;
}

static void close_conn(void *conn)
{
}

static bench_series *measure(int every, uint64_t requests)
{
	bench_driver d = { .open = open_conn, .op = op, .close = close_conn };
	bench_spec spec = { .clients = 1, .requests = requests, .warmup_s = 0 };
	bench_series *s = malloc(sizeof(*s));
	char err[200];

	assert_non_null(s);
	fail_every = every;
	atomic_store(&calls, 0);
	bench_series_init(s, "test", 1);
	assert_int_equal(bench_run(&d, &spec, s, err, sizeof(err)), 0);
	return s;
}

/* report returns what f printed into memory: the text table or the JSON object. */
static char *report(const bench_series *s, bool json)
{
	char *text = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&text, &n);

	assert_non_null(f);
	if (json)
		bench_report_series_json(f, s);
	else
		bench_report_text(f, s, 1);
	fclose(f);
	return text;
}

static void all_failed_reports_errors_and_no_latency_or_throughput(void **state)
{
	bench_series *s = measure(1, 10);
	char *text, *json;

	assert_int_equal(s->ops, 10);
	assert_int_equal(s->errors, 10);
	assert_int_equal(s->hist.count, 0);
	assert_true(bench_throughput(s) == 0);
	text = report(s, false);
	json = report(s, true);
	/* the row: name, clients, requests, errors, then a dash for req/s and each latency */
	assert_non_null(strstr(text, "test                             1        10     10          -         -"));
	assert_non_null(strstr(text, "10 requests failed"));
	assert_non_null(strstr(json, "\"latency_us\":null"));
	assert_non_null(strstr(json, "\"requests\":10,\"errors\":10"));
	assert_non_null(strstr(json, "\"throughput\":0.0"));
	free(text);
	free(json);
	free(s);
}

static void failed_requests_add_nothing_to_latencies_or_throughput(void **state)
{
	bench_series *s = measure(2, 20);
	char *text;

	assert_int_equal(s->ops, 20);
	assert_int_equal(s->errors, 10);
	assert_int_equal(s->hist.count, 10);
	/* the 20 ms failures are not in the histogram: every latency is a fast success */
	assert_true(s->hist.max < 20000000u);
	assert_true(bench_throughput(s) > 0);
	assert_true(bench_throughput(s) * s->elapsed_s < 10.5);
	text = report(s, false);
	assert_non_null(strstr(text, "10 requests failed; req/s and latencies are of the 10 that succeeded"));
	free(text);
	free(s);
}

static void no_failures_have_every_request_in_the_latencies(void **state)
{
	bench_series *s = measure(0, 20);
	char *text;

	assert_int_equal(s->ops, 20);
	assert_int_equal(s->errors, 0);
	assert_int_equal(s->hist.count, 20);
	text = report(s, false);
	assert_null(strstr(text, "failed"));
	free(text);
	free(s);
}

static const struct CMUnitTest tests[] = {
	CASE(all_failed_reports_errors_and_no_latency_or_throughput, "bench - runner with all requests failed reports errors and no latency or throughput"),
	CASE(failed_requests_add_nothing_to_latencies_or_throughput, "bench - runner adds failed requests to no latency or throughput"),
	CASE(no_failures_have_every_request_in_the_latencies, "bench - runner without failures has every request in the latencies"),
};

CASES_MAIN("bench_run", tests, NULL, NULL)
