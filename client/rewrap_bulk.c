/*
 * rewrap_bulk.c: `keybroker rewrap --in`, see rewrap_bulk.h.
 *
 * The reader (the calling thread) cuts the input into batches and puts them
 * in a ring; --concurrency workers, each on its own connection, take them
 * in order and send them as batch rewraps; the reader writes finished
 * batches out in input order, so a crash leaves --out a prefix of the
 * answer that a rerun continues.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "rewrap_bulk.h"
#include "rewrap_files.h"

#define BATCH_LINES 64        /* small batches keep every connection busy under a throttle */
#define RETRIES 8             /* sends of a line the service throttled or could not answer */
#define BACKOFF_MAX_MS 16000
#define CONCURRENCY_MAX 64
#define MOVES_MAX 64          /* distinct old -> new versions in the summary */
#define VER_MAX 160

typedef struct batch {
	size_t first;             /* input line number of lines[0], from 1 */
	size_t n;
	char *lines[BATCH_LINES];
	char *outs[BATCH_LINES];  /* the new blob, NULL: the line failed or needed nothing */
	char newver[BATCH_LINES][VER_MAX];
	kb_code codes[BATCH_LINES];
	bool already[BATCH_LINES]; /* under --to-version already: copied as it is */
	enum { B_FREE, B_QUEUED, B_BUSY, B_DONE } state;
} batch;

typedef struct move {
	char from[VER_MAX], to[VER_MAX];
	size_t n;
} move;

typedef struct job {
	cli *c;
	const char *key, *to_version;
	int concurrency;
	batch *ring;
	int nring;
	size_t next_take;         /* sequence numbers: batch s lives in ring[s % nring] */
	bool stop;                /* the reader is done, or gave up */
	kb_code fatal;            /* a worker's connection failed: KB_OK if none */
	char fatal_msg[512];
	pthread_mutex_t lock;
	pthread_cond_t work, done;
} job;

/* Counts for the progress line and the summary (reader thread only). */
typedef struct tally {
	size_t total, skipped, done, ok, failed, already;
	size_t failed_before;     /* of the skipped lines, those an earlier run failed */
	size_t by_code[KB_CODE_COUNT];
	move moves[MOVES_MAX];
	int nmoves;
	size_t other_moves;
	struct timespec t0;
} tally;

static double secs_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * blob_version writes "KEY VERSION" of a blob: kb1:KEY:VERSION:... or
 * kb2:KEY:VERSION:FINGERPRINT:..., or
 * Azure's raw form {"kid":"https://HOST/keys/KEY/VERSION",...}; "?" if the
 * line is neither (the broker says what is wrong with it).
 */
static void blob_version(const char *line, char *out, size_t cap)
{
	snprintf(out, cap, "?");
	if (strncmp(line, "kb1:", 4) == 0 || strncmp(line, "kb2:", 4) == 0) {
		const char *k = line + 4, *v = strchr(k, ':'), *e = v ? strchr(v + 1, ':') : NULL;

		if (e)
			snprintf(out, cap, "%.*s %.*s", (int)(v - k), k, (int)(e - v - 1), v + 1);
	} else if (line[0] == '{') {
		cJSON *j = cJSON_Parse(line);
		const cJSON *kid = j ? cJSON_GetObjectItemCaseSensitive(j, "kid") : NULL;
		const char *s = cJSON_IsString(kid) ? strstr(kid->valuestring, "/keys/") : NULL;
		const char *slash = s ? strchr(s + 6, '/') : NULL;

		if (slash)
			snprintf(out, cap, "%.*s %s", (int)(slash - s - 6), s + 6, slash + 1);
		cJSON_Delete(j);
	}
}

/* retryable: the service throttled or could not be reached; the same line may well succeed later. */
static bool retryable(kb_code code)
{
	return code == KB_E_THROTTLED || code == KB_E_BACKEND_UNAVAILABLE || code == KB_E_BUSY;
}

/* ver_of returns the version part of "KEY VERSION". */
static const char *ver_of(const char *kv)
{
	const char *sp = strchr(kv, ' ');

	return sp ? sp + 1 : kv;
}

/*
 * run_batch rewraps b's lines on kc, sending again (with backoff and jitter)
 * the lines the service throttled or could not answer. Returns KB_OK, or the
 * failure of the connection itself (err filled).
 */
static kb_code run_batch(job *j, kb_client *kc, batch *b, kb_error *err)
{
	const char *send[BATCH_LINES];
	size_t idx[BATCH_LINES], m = 0;
	kb_result res[BATCH_LINES];
	kb_code codes[BATCH_LINES];
	char old[VER_MAX];

	for (size_t i = 0; i < b->n; i++) {
		b->outs[i] = NULL;
		b->newver[i][0] = '\0';
		b->codes[i] = KB_OK;
		b->already[i] = false;
		if (j->to_version) {
			blob_version(b->lines[i], old, sizeof(old));
			if (strcmp(ver_of(old), j->to_version) == 0) {
				b->already[i] = true;
				continue;
			}
		}
		idx[m] = i;
		send[m++] = b->lines[i];
	}
	for (int attempt = 0; m > 0; attempt++) {
		size_t again = 0;
		kb_code code = kb_rewrap_many(kc, send, m, j->key, res, codes, err);

		if (code != KB_OK && !retryable(code)) {
			for (size_t k = 0; k < m; k++)
				b->codes[idx[k]] = code;
			return code;
		}
		for (size_t k = 0; k < m; k++) {
			size_t i = idx[k];
			kb_code rc = code != KB_OK ? code : codes[k];

			if (rc == KB_OK && j->to_version && strcmp(res[k].version, j->to_version) != 0)
				rc = KB_E_UNKNOWN_VERSION;
			if (rc == KB_OK) {
				b->outs[i] = res[k].blob;
				res[k].blob = NULL;
				snprintf(b->newver[i], VER_MAX, "%s %s", res[k].key, res[k].version);
			} else if (rc == KB_E_UNKNOWN_VERSION && code == KB_OK && codes[k] == KB_OK) {
				snprintf(b->newver[i], VER_MAX, "%s %s, not %s", res[k].key, res[k].version, j->to_version);
			}
			b->codes[i] = rc;
			if (code == KB_OK)
				kb_result_clear(&res[k]);
			if (retryable(rc) && attempt + 1 < RETRIES) {
				idx[again] = i;
				send[again++] = b->lines[i];
			}
		}
		m = again;
		if (m > 0) {
			long cap = 1000L << (attempt < 4 ? attempt : 4);

			if (cap > BACKOFF_MAX_MS)
				cap = BACKOFF_MAX_MS;
			sleep_ms(cap / 2 + random() % (cap / 2 + 1));
		}
	}
	return KB_OK;
}

static void *worker(void *arg)
{
	job *j = arg;
	kb_client *kc = NULL;
	kb_error err;
	kb_code code = kb_client_connect(j->c->socket, &kc, &err);

	pthread_mutex_lock(&j->lock);
	for (;;) {
		batch *b;

		while (code == KB_OK && j->fatal == KB_OK && !j->stop &&
		       j->ring[j->next_take % (size_t)j->nring].state != B_QUEUED)
			pthread_cond_wait(&j->work, &j->lock);
		if (code == KB_OK && j->fatal == KB_OK && j->ring[j->next_take % (size_t)j->nring].state != B_QUEUED)
			break; /* stopped with nothing left */
		if (code != KB_OK || j->fatal != KB_OK) {
			if (code != KB_OK && j->fatal == KB_OK) {
				j->fatal = code;
				snprintf(j->fatal_msg, sizeof(j->fatal_msg), "%s", err.message);
			}
			break;
		}
		b = &j->ring[j->next_take++ % (size_t)j->nring];
		b->state = B_BUSY;
		pthread_mutex_unlock(&j->lock);
		code = run_batch(j, kc, b, &err);
		pthread_mutex_lock(&j->lock);
		b->state = B_DONE;
		pthread_cond_broadcast(&j->done);
	}
	pthread_cond_broadcast(&j->done);
	pthread_mutex_unlock(&j->lock);
	kb_client_close(kc);
	return NULL;
}

static void count_move(tally *t, const char *from, const char *to)
{
	for (int i = 0; i < t->nmoves; i++)
		if (strcmp(t->moves[i].from, from) == 0 && strcmp(t->moves[i].to, to) == 0) {
			t->moves[i].n++;
			return;
		}
	if (t->nmoves == MOVES_MAX) {
		t->other_moves++;
		return;
	}
	snprintf(t->moves[t->nmoves].from, VER_MAX, "%s", from);
	snprintf(t->moves[t->nmoves].to, VER_MAX, "%s", to);
	t->moves[t->nmoves++].n = 1;
}

/* write_batch writes b's answers in order and counts them; false if a file cannot be written. */
static bool write_batch(rwf *files, batch *b, tally *t, bool tty)
{
	char old[VER_MAX], *out[BATCH_LINES], status[BATCH_LINES];
	bool ok;

	for (size_t i = 0; i < b->n; i++) {
		blob_version(b->lines[i], old, sizeof(old));
		if (b->already[i]) {
			out[i] = b->lines[i];
			status[i] = RWF_ALREADY;
			t->already++;
			count_move(t, old, old);
		} else if (b->codes[i] == KB_OK) {
			out[i] = b->outs[i];
			status[i] = RWF_MOVED;
			t->ok++;
			count_move(t, old, b->newver[i]);
		} else {
			out[i] = b->lines[i];
			status[i] = RWF_FAILED;
			fprintf(stderr, "%skeybroker rewrap: line %zu: %s%s%s (the line is written out unchanged)\n",
				tty ? "\r\033[K" : "", b->first + i, kb_code_name(b->codes[i]),
				b->codes[i] == KB_E_UNKNOWN_VERSION && b->newver[i][0] ? ": the broker wrapped it under " : "",
				b->codes[i] == KB_E_UNKNOWN_VERSION && b->newver[i][0] ? b->newver[i] : "");
			t->failed++;
			t->by_code[b->codes[i] < KB_CODE_COUNT ? b->codes[i] : KB_E_INTERNAL]++;
		}
	}
	ok = rwf_write(files, b->n, b->lines, out, status);
	for (size_t i = 0; i < b->n; i++) {
		free(b->outs[i]);
		free(b->lines[i]);
		b->outs[i] = b->lines[i] = NULL;
	}
	t->done += b->n;
	b->n = 0;
	b->state = B_FREE;
	return ok;
}

/* progress draws the one-line progress on stderr, a terminal. */
static void progress(const tally *t)
{
	double s = secs_since(&t->t0), rate = s > 0 ? (double)t->done / s : 0;
	char eta[32] = "?";

	if (t->total && rate > 0)
		snprintf(eta, sizeof(eta), "%.0fs", (double)(t->total - t->skipped - t->done) / rate);
	if (t->total)
		fprintf(stderr, "\r\033[Krewrap: %zu/%zu lines, %.0f/s, %zu errors, ETA %s", t->skipped + t->done,
			t->total, rate, t->failed, eta);
	else
		fprintf(stderr, "\r\033[Krewrap: %zu lines, %.0f/s, %zu errors", t->skipped + t->done, rate, t->failed);
	fflush(stderr);
}

static void summary(const tally *t, bool tty)
{
	double s = secs_since(&t->t0);

	if (tty)
		fprintf(stderr, "\r\033[K");
	fprintf(stderr, "keybroker rewrap: %zu lines in %.1fs (%.0f/s): %zu rewrapped, %zu already under the version; %zu of %zu lines failed",
		t->done, s, s > 0 ? (double)t->done / s : 0.0, t->ok, t->already, t->failed, t->done);
	if (t->skipped)
		fprintf(stderr, "; %zu lines skipped, already in --out", t->skipped);
	if (t->failed_before)
		fprintf(stderr, " (%zu of them failed in an earlier run and are still unchanged: run those again "
			"from its --failed)", t->failed_before);
	fputc('\n', stderr);
	for (int i = 0; i < t->nmoves; i++)
		fprintf(stderr, "  %s -> %s: %zu\n", t->moves[i].from, ver_of(t->moves[i].to), t->moves[i].n);
	if (t->other_moves)
		fprintf(stderr, "  other versions: %zu\n", t->other_moves);
	for (int c = 0; c < KB_CODE_COUNT; c++)
		if (t->by_code[c])
			fprintf(stderr, "  failed %s: %zu\n", kb_code_name((kb_code)c), t->by_code[c]);
}

/* count_lines counts the lines of a regular file (0 for anything else: a pipe has no total). */
static size_t count_lines(const char *path)
{
	struct stat st;
	size_t n = 0;
	FILE *f;
	int ch, last = '\n';

	if (strcmp(path, "-") == 0 || stat(path, &st) != 0 || !S_ISREG(st.st_mode) || !(f = fopen(path, "r")))
		return 0;
	while ((ch = getc(f)) != EOF) {
		n += ch == '\n';
		last = ch;
	}
	fclose(f);
	return n + (last != '\n');
}

static int parse_concurrency(cli *c, int *out)
{
	const char *v = cli_optval(c, "concurrency");
	char *end;
	long n;

	*out = 4;
	if (v == NULL)
		return CLI_EXIT_OK;
	n = strtol(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || n < 1 || n > CONCURRENCY_MAX)
		return cli_usage(c, "--concurrency \"%s\" is not a number from 1 to %d", v, CONCURRENCY_MAX);
	*out = (int)n;
	return CLI_EXIT_OK;
}

/* read_batch fills b from in with up to BATCH_LINES lines; false at the end of input. */
static bool read_batch(FILE *in, batch *b, size_t *lineno, char **line, size_t *cap, int *r, cli *c,
		       const char *path)
{
	ssize_t len;

	b->n = 0;
	b->first = *lineno + 1;
	while (b->n < BATCH_LINES && (len = rwf_read_line(in, line, cap)) >= 0) {
		(*lineno)++;
		if (len == 0) {
			*r = cli_usage(c, "%s line %zu is empty: give one blob per line", path, *lineno);
			return false;
		}
		if ((b->lines[b->n] = strdup(*line)) == NULL) {
			*r = cli_fail(KB_E_IO, "out of memory");
			return false;
		}
		b->n++;
	}
	return b->n > 0;
}

int rewrap_bulk(cli *c)
{
	const char *in_path = cli_optval(c, "in"), *out_path = cli_optval(c, "out");
	job j = { .c = c, .key = cli_optval(c, "key"), .to_version = cli_optval(c, "to-version") };
	tally t = { 0 };
	rwf files;
	pthread_t th[CONCURRENCY_MAX];
	char *line = NULL;
	size_t cap = 0, lineno, seq = 0, next_write = 0;
	bool tty = isatty(STDERR_FILENO), more = true, io_ok = true;
	int r, started = 0;

	if ((r = parse_concurrency(c, &j.concurrency)) != CLI_EXIT_OK)
		return r;
	if (j.to_version && !*j.to_version)
		return cli_usage(c, "--to-version needs a version, as `keybroker get KEY` lists them");
	if ((r = rwf_open(c, &files)) != CLI_EXIT_OK)
		return r;
	t.skipped = files.resumed;
	t.failed_before = files.resumed_failed;
	t.total = count_lines(in_path);
	lineno = t.skipped;
	j.nring = 2 * j.concurrency;
	if ((j.ring = calloc((size_t)j.nring, sizeof(*j.ring))) == NULL) {
		r = cli_fail(KB_E_IO, "out of memory");
		goto done;
	}
	pthread_mutex_init(&j.lock, NULL);
	pthread_cond_init(&j.work, NULL);
	pthread_cond_init(&j.done, NULL);
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	clock_gettime(CLOCK_MONOTONIC, &t.t0);
	for (; started < j.concurrency; started++)
		if (pthread_create(&th[started], NULL, worker, &j) != 0)
			break;
	if (started == 0) {
		r = cli_fail(KB_E_IO, "cannot start a worker thread");
		goto threads_done;
	}
	pthread_mutex_lock(&j.lock);
	while (j.fatal == KB_OK && io_ok) {
		batch *w = &j.ring[next_write % (size_t)j.nring], *f = &j.ring[seq % (size_t)j.nring];
		struct timespec until;

		if (w->state == B_DONE && next_write < seq) {
			pthread_mutex_unlock(&j.lock);
			io_ok = write_batch(&files, w, &t, tty);
			pthread_mutex_lock(&j.lock);
			next_write++;
			continue;
		}
		if (more && f->state == B_FREE) {
			pthread_mutex_unlock(&j.lock);
			more = read_batch(files.in, f, &lineno, &line, &cap, &r, c, in_path);
			pthread_mutex_lock(&j.lock);
			if (r != CLI_EXIT_OK)
				break;
			if (more) {
				f->state = B_QUEUED;
				seq++;
				pthread_cond_broadcast(&j.work);
			}
			continue;
		}
		if (!more && next_write == seq)
			break;
		if (tty) {
			pthread_mutex_unlock(&j.lock);
			progress(&t);
			pthread_mutex_lock(&j.lock);
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 250000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&j.done, &j.lock, &until);
	}
	j.stop = true;
	pthread_cond_broadcast(&j.work);
	pthread_mutex_unlock(&j.lock);
threads_done:
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (r == CLI_EXIT_OK && !io_ok)
		r = cli_fail(KB_E_IO, "cannot write %s: %s", out_path ? out_path : "stdout", strerror(errno));
	else if (r == CLI_EXIT_OK && j.fatal != KB_OK && t.done == 0)
		r = cli_fail(j.fatal, "%s", j.fatal_msg);
	else if (r == CLI_EXIT_OK && j.fatal != KB_OK)
		r = cli_fail(j.fatal, "%s (the %zu lines done so far are in %s%s)", j.fatal_msg, t.skipped + t.done,
			     out_path ? out_path : "stdout", out_path ? "; run again with the same --out to go on" : "");
	if (tty && (r == CLI_EXIT_OK || t.done))
		progress(&t); /* its last state, even for a run too short to have waited */
	if (r == CLI_EXIT_OK || t.done)
		summary(&t, tty);
	if (r == CLI_EXIT_OK && (t.failed || t.failed_before))
		r = CLI_EXIT_BROKER;
	for (int i = 0; j.ring && i < j.nring; i++)
		for (size_t k = 0; k < j.ring[i].n; k++) {
			free(j.ring[i].lines[k]);
			free(j.ring[i].outs[k]);
		}
	free(j.ring);
	if (started) {
		pthread_mutex_destroy(&j.lock);
		pthread_cond_destroy(&j.work);
		pthread_cond_destroy(&j.done);
	}
done:
	free(line);
	if (!rwf_close(&files) && r == CLI_EXIT_OK)
		r = cli_fail(KB_E_IO, "cannot write %s to disk: %s", out_path ? out_path : "stdout", strerror(errno));
	return r;
}
