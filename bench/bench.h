/*
 * bench.h: the benchmark engine behind `keybroker bench` and bench/compare.
 *
 * A driver knows how to make one request of some kind (a broker operation,
 * an echo round trip, a PKCS#11 call); the runner drives it from N client
 * threads, each with its own connection or session, and records every
 * measured request's latency in a log-bucket histogram. The same runner,
 * histogram and reports measure keybroker, its floors and its peers, so
 * their numbers are comparable.
 *
 * bench_hist.c   the histogram and its percentiles
 * bench_run.c    the client threads, phases (warmup, measure) and progress
 * bench_line.c   one request line out, one response line in, on a socket
 * bench_echo.c   floor A's client: the same lines to bench/echo
 * bench_broker.c the broker driver: prepare blobs, measure an op, read counters
 * bench_report.c the text table, --json and --csv
 * bench_plot.c   the latency CDF as SVG
 * bench_kms.c    the KMS v2 driver (bench_kms.h)
 * bench_cmd.c    one `keybroker bench` run, driver to report (bench_cmd.h)
 * client/bench_main.c  the `keybroker bench` subcommand (a thin entry point)
 */
#ifndef KB_BENCH_H
#define KB_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * The histogram keeps values (nanoseconds) below 2^BENCH_HIST_BITS exactly
 * and larger ones in log-linear buckets of relative width 2^-(BITS-1), like
 * HdrHistogram with two significant decimal digits: every reported
 * percentile is within 1/64 (1.6%) above the true sample.
 */
#define BENCH_HIST_BITS 7
#define BENCH_HIST_HALF (1u << (BENCH_HIST_BITS - 1))
#define BENCH_HIST_BUCKETS ((64 - BENCH_HIST_BITS + 2) * BENCH_HIST_HALF)

typedef struct bench_hist {
	uint64_t count;
	uint64_t min, max;      /* exact; min is UINT64_MAX while empty */
	double sum;
	uint64_t bucket[BENCH_HIST_BUCKETS];
} bench_hist;

void bench_hist_init(bench_hist *h);
void bench_hist_add(bench_hist *h, uint64_t v);
void bench_hist_merge(bench_hist *dst, const bench_hist *src);

/* bench_hist_index returns the bucket of v; bench_hist_top the largest value bucket i holds. */
size_t bench_hist_index(uint64_t v);
uint64_t bench_hist_top(size_t i);

/*
 * bench_hist_pct returns the p-th percentile (0 < p <= 100): the top of the
 * bucket holding the sample of rank ceil(p/100 * count), capped at max.
 * 0 when empty.
 */
uint64_t bench_hist_pct(const bench_hist *h, double p);

/* The outcome of one request, as a driver reports it. */
enum { BENCH_OK = 0, BENCH_ERR = -1, BENCH_STOP = -2 };

/*
 * A driver. open() makes client i's connection (not measured); op() makes
 * one request and returns BENCH_OK, BENCH_ERR (counted, the run goes on) or
 * BENCH_STOP (nothing left to do: the client stops, e.g. its fresh blobs
 * are used up); close() ends the connection. prepare() runs once before the
 * clients start, and counters() (may be NULL) snapshots the server's
 * counters right before and right after the measured window; after it, it
 * adds what changed to out (backend_calls, hits, misses, have_counters).
 */
struct bench_series;

typedef struct bench_driver {
	void *arg;
	int (*prepare)(void *arg, int clients, double seconds, uint64_t requests, char *err,
		       size_t errlen);
	int (*open)(void *arg, int client, void **conn, char *err, size_t errlen);
	int (*op)(void *conn);
	void (*close)(void *conn);
	void (*counters)(void *arg, bool after, struct bench_series *out);
	/* the first error a client saw, for the report (set by the driver): its
	 * code's wire name ("io_error" for a lost connection) and its message */
	char first_code[40];
	char first_error[400];
} bench_driver;

typedef struct bench_spec {
	int clients;
	double duration_s;      /* measured window, when requests == 0 */
	uint64_t requests;      /* measured requests in all, or 0 */
	double warmup_s;
	int pause_us;           /* each client idles this long between requests, untimed (0: none) */
	bool progress;          /* a progress line on stderr (the caller checks it is a terminal) */
	const char *label;      /* for the progress line */
} bench_spec;

/* A series: what the runner measured, added up over one or more runs of it. */
typedef struct bench_series {
	char name[64];
	char note[200];         /* why it was skipped, or what to know about it */
	bool skipped;
	int clients;
	uint64_t ops, errors;   /* requests measured, and how many of them failed */
	double elapsed_s;       /* sum of the measured windows */
	bool have_counters;
	uint64_t backend_calls, hits, misses;
	bench_hist hist;        /* latencies of the requests that succeeded */
} bench_series;

/* bench_series_init names s and empties it. */
void bench_series_init(bench_series *s, const char *name, int clients);

/*
 * bench_run prepares d, opens spec->clients connections, runs the warmup,
 * then the measured window, and adds what it measured to out (so several
 * runs of one series accumulate). Returns 0, or -1 with err filled when the
 * driver could not prepare or open a connection.
 */
int bench_run(bench_driver *d, const bench_spec *spec, bench_series *out, char *err, size_t errlen);

/* bench_throughput is the series' successful requests per second (failed ones are errors, not work). */
double bench_throughput(const bench_series *s);

/* bench_now_ns is CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/*
 * A line connection: one request line out, one response line in. Used for
 * the broker and the echo floor alike, so both pay the same client cost.
 */
typedef struct bench_line {
	int fd;
	char *buf;
	size_t len, cap;        /* bytes held; the first line ends at line_len */
	size_t line_len;
} bench_line;

/* bench_line_open connects to the Unix socket path. Returns 0 or -1 (err filled). */
int bench_line_open(bench_line *l, const char *path, char *err, size_t errlen);

/*
 * bench_line_call writes req[0..n) and reads up to the next '\n'. On 0 the
 * response is l->buf[0..l->line_len) (newline excluded, NUL-terminated).
 * -1 on an I/O error or a closed connection.
 */
int bench_line_call(bench_line *l, const char *req, size_t n);

/* bench_line_close closes l and zeroes its buffer (it may hold plaintexts). */
void bench_line_close(bench_line *l);

/* The broker driver: one operation of `keybroker bench` against a broker socket. */
typedef enum bench_op {
	BENCH_UNWRAP_HIT, BENCH_UNWRAP_MISS, BENCH_WRAP, BENCH_DATAKEY, BENCH_REWRAP,
	BENCH_MIXED, BENCH_OP_COUNT
} bench_op;

/* bench_op_parse maps an OP name to its value; -1 if unknown. */
int bench_op_parse(const char *name);

typedef struct bench_broker bench_broker;

/*
 * bench_broker_new makes a broker driver for op on key at socket (NULL: the
 * default socket) with DEKs of size bytes. Returns NULL with err filled.
 * In mixed, 9 in 10 requests are cached unwraps and 1 in 10 a datakey.
 */
bench_broker *bench_broker_new(const char *socket, const char *key, bench_op op, size_t size,
			       char *err, size_t errlen);
void bench_broker_free(bench_broker *b);
bench_driver *bench_broker_driver(bench_broker *b);

/* The average request and response line sizes (newline included) seen while preparing. */
void bench_broker_sizes(const bench_broker *b, size_t *req, size_t *resp);

/*
 * bench_broker_ciphertext copies the raw ciphertext of one of the blobs made
 * while preparing (base64url-decoded) to out (cap bytes). Returns its length,
 * or 0 if there is none. The floors use it to decrypt what the broker would.
 */
size_t bench_broker_ciphertext(const bench_broker *b, uint8_t *out, size_t cap);

/* bench_broker_backend returns the backend name of the driver's key from status ("pkcs11", "azure"). */
const char *bench_broker_backend(const bench_broker *b);

/* The echo driver: a request of req bytes to an echo server that answers resp bytes. */
typedef struct bench_echo bench_echo;
bench_echo *bench_echo_new(const char *socket, size_t req, size_t resp);
void bench_echo_free(bench_echo *e);
bench_driver *bench_echo_driver(bench_echo *e);

/* Reports. Every function takes the series to show, n of them. */
void bench_report_text(FILE *f, const bench_series *s, size_t n);
/* bench_report_series_json writes one series as a JSON object (no newline). */
void bench_report_series_json(FILE *f, const bench_series *s);
/* bench_report_close closes f, a report just written: 0, or -1 (errno set) if a write or the close failed. */
int bench_report_close(FILE *f);
/* bench_report_csv writes a header and one row per series. Returns 0, or -1 (errno set). */
int bench_report_csv(const char *path, const bench_series *s, size_t n);
/* bench_plot_svg writes the latency CDF of each non-skipped series. Returns 0, or -1 (errno set). */
int bench_plot_svg(const char *path, const char *title, const bench_series *s, size_t n);

#endif
