/*
 * bench_run.c: the client threads. Each opens its own connection, then all
 * run the warmup together, stop at a barrier while the server's counters are
 * read, and run the measured window. Only requests that start inside the
 * window are counted; the latency of each that succeeded goes into the
 * thread's own histogram. The histograms are merged when the threads are
 * joined, so recording takes no lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

enum { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

typedef struct run_shared {
	bench_driver *d;
	const bench_spec *spec;
	atomic_int phase;
	atomic_uint_fast64_t tickets;   /* requests handed out in the window (--requests) */
	atomic_uint_fast64_t done;      /* requests finished in the window (progress) */
	atomic_int running;             /* clients still in the window */
	pthread_barrier_t opened, warmed, go;
} run_shared;

typedef struct run_client {
	run_shared *sh;
	int id;
	void *conn;
	int open_rc;
	char err[200];
	uint64_t ops, errors, end_ns;
	bench_hist *hist;
} run_client;

uint64_t bench_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void bench_series_init(bench_series *s, const char *name, int clients)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->clients = clients;
	bench_hist_init(&s->hist);
}

double bench_throughput(const bench_series *s)
{
	return s->elapsed_s > 0 ? (double)(s->ops - s->errors) / s->elapsed_s : 0;
}

static void *client_main(void *p)
{
	run_client *c = p;
	run_shared *sh = c->sh;
	bench_driver *d = sh->d;
	uint64_t t0, t1;
	int r = BENCH_OK;

	c->open_rc = d->open(d->arg, c->id, &c->conn, c->err, sizeof(c->err));
	pthread_barrier_wait(&sh->opened);
	if (c->open_rc != 0) {
		pthread_barrier_wait(&sh->warmed);
		pthread_barrier_wait(&sh->go);
		return NULL;
	}
	while (atomic_load_explicit(&sh->phase, memory_order_relaxed) == PHASE_WARMUP) {
		r = d->op(c->conn);
		if (r == BENCH_STOP)
			break;
	}
	pthread_barrier_wait(&sh->warmed);
	pthread_barrier_wait(&sh->go);
	while (r != BENCH_STOP && atomic_load_explicit(&sh->phase, memory_order_relaxed) == PHASE_MEASURE) {
		if (sh->spec->requests > 0 &&
		    atomic_fetch_add(&sh->tickets, 1) >= sh->spec->requests)
			break;
		if (sh->spec->pause_us > 0) {
			struct timespec pause = { 0, (long)sh->spec->pause_us * 1000 };

			nanosleep(&pause, NULL);
		}
		t0 = bench_now_ns();
		r = d->op(c->conn);
		t1 = bench_now_ns();
		if (r == BENCH_STOP)
			break;
		/* a failed request's time says nothing about the operation's */
		if (r == BENCH_OK)
			bench_hist_add(c->hist, t1 - t0);
		else
			c->errors++;
		c->ops++;
		atomic_fetch_add_explicit(&sh->done, 1, memory_order_relaxed);
	}
	c->end_ns = bench_now_ns();
	atomic_fetch_sub(&sh->running, 1);
	return NULL;
}

static void sleep_s(double s)
{
	struct timespec t = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

static void progress(const run_shared *sh, uint64_t start, bool final)
{
	double el = (double)(bench_now_ns() - start) / 1e9;
	uint64_t n = atomic_load(&sh->done);

	fprintf(stderr, "\r%s: %.1f s, %llu requests, %.0f/s   %s", sh->spec->label ? sh->spec->label : "bench",
		el, (unsigned long long)n, el > 0 ? (double)n / el : 0.0, final ? "\n" : "");
	fflush(stderr);
}

int bench_run(bench_driver *d, const bench_spec *spec, bench_series *out, char *err, size_t errlen)
{
	run_shared sh = { .d = d, .spec = spec };
	run_client *cl;
	pthread_t *th;
	uint64_t start, end = 0;
	bool shown = false;
	int n = spec->clients, rc = 0, started = 0;

	if (d->prepare != NULL &&
	    d->prepare(d->arg, n, spec->warmup_s + spec->duration_s, spec->requests, err, errlen) != 0)
		return -1;
	cl = calloc((size_t)n, sizeof(*cl));
	th = calloc((size_t)n, sizeof(*th));
	if (cl == NULL || th == NULL) {
		free(cl);
		free(th);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	atomic_init(&sh.phase, PHASE_WARMUP);
	atomic_init(&sh.tickets, 0);
	atomic_init(&sh.done, 0);
	atomic_init(&sh.running, n);
	pthread_barrier_init(&sh.opened, NULL, (unsigned)n + 1);
	pthread_barrier_init(&sh.warmed, NULL, (unsigned)n + 1);
	pthread_barrier_init(&sh.go, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		cl[i].sh = &sh;
		cl[i].id = i;
		cl[i].hist = malloc(sizeof(bench_hist));
		if (cl[i].hist == NULL || pthread_create(&th[i], NULL, client_main, &cl[i]) != 0) {
			/* cannot go on with fewer clients than asked: that would change the result */
			fprintf(stderr, "keybroker bench: cannot start client thread %d\n", i);
			abort();
		}
		bench_hist_init(cl[i].hist);
		started++;
	}
	pthread_barrier_wait(&sh.opened);
	for (int i = 0; i < n; i++)
		if (cl[i].open_rc != 0 && rc == 0) {
			snprintf(err, errlen, "client %d: %s", i, cl[i].err);
			rc = -1;
		}
	if (rc == 0)
		sleep_s(spec->warmup_s);
	atomic_store(&sh.phase, rc == 0 ? PHASE_MEASURE : PHASE_STOP);
	pthread_barrier_wait(&sh.warmed);
	if (rc == 0 && d->counters != NULL)
		d->counters(d->arg, false, out);
	start = bench_now_ns();
	pthread_barrier_wait(&sh.go);
	if (rc == 0) {
		for (;;) {
			double el = (double)(bench_now_ns() - start) / 1e9;

			if (atomic_load(&sh.running) == 0)
				break;
			if (spec->requests == 0 && el >= spec->duration_s) {
				end = bench_now_ns();
				atomic_store(&sh.phase, PHASE_STOP);
				break;
			}
			if (spec->progress && el > 2.0) {
				progress(&sh, start, false);
				shown = true;
			}
			sleep_s(spec->requests == 0 && spec->duration_s - el < 0.25 ? spec->duration_s - el : 0.25);
		}
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (shown)
		progress(&sh, start, true);
	if (rc == 0 && d->counters != NULL)
		d->counters(d->arg, true, out);
	for (int i = 0; i < n; i++) {
		if (rc == 0) {
			bench_hist_merge(&out->hist, cl[i].hist);
			out->ops += cl[i].ops;
			out->errors += cl[i].errors;
			/* without a deadline, the window ends when the last client is done */
			if (end == 0 || spec->requests > 0)
				end = cl[i].end_ns > end ? cl[i].end_ns : end;
		}
		if (cl[i].open_rc == 0)
			d->close(cl[i].conn);
		free(cl[i].hist);
	}
	if (rc == 0) {
		/* clients that ran out of work early end the window early too */
		uint64_t last = 0;

		for (int i = 0; i < n; i++)
			last = cl[i].end_ns > last ? cl[i].end_ns : last;
		if (last < end)
			end = last;
		out->elapsed_s += (double)(end - start) / 1e9;
	}
	pthread_barrier_destroy(&sh.opened);
	pthread_barrier_destroy(&sh.warmed);
	pthread_barrier_destroy(&sh.go);
	free(cl);
	free(th);
	return rc;
}
