/*
 * bench_broker.c: the broker driver. Every measured request is a real
 * protocol request, sent raw on the client's own connection, with one
 * request in flight; the request lines are built before the window so the
 * client's cost stays that of the echo floor.
 *
 * unwrap-hit unwraps a small pool of blobs that were unwrapped once before
 * the window (so all are cached). unwrap-miss unwraps each blob of a large
 * pool once: the pool is wrapped, then the key's cache entries are flushed,
 * so every unwrap reaches the backend; the counters read around the window
 * show it (backend calls = requests). Time spent preparing is not measured.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <cjson/cJSON.h>

#include "b64.h"
#include "bench.h"
#include "keybroker.h"

#define HIT_POOL 64            /* blobs per unwrap-hit run: far below any cache capacity */
#define PIPELINE 128           /* requests in flight while preparing */
#define MISS_POOL_MAX 2000000  /* fresh blobs for one unwrap-miss run, at most */

struct bench_broker {
	bench_driver d;
	char path[KB_SOCKET_PATH_MAX + 1];
	char key[72];
	char backend[32];
	bench_op op;
	size_t size;
	bench_line ctl;          /* for preparing: the same framing as the measured clients */
	kb_client *admin;        /* status and flush, through libkeybroker */
	char **body;             /* the pool: request bodies after {"id":N, */
	size_t nbody;
	atomic_size_t next;      /* unwrap-miss: the next unused blob of the pool */
	char *write_body;        /* wrap, datakey and mixed's write */
	uint64_t req_bytes, resp_bytes, nsized;
	uint64_t calls0, hits0, misses0;
	atomic_flag error_seen;
	uint64_t id;             /* ids of ctl's requests */
};

typedef struct broker_conn {
	bench_broker *b;
	bench_line l;
	size_t at;               /* position in the pool (unwrap-hit, rewrap, mixed) */
	uint64_t id, n;
	char *req;
	size_t cap;
} broker_conn;

static const char *const op_names[BENCH_OP_COUNT] = {
	[BENCH_UNWRAP_HIT] = "unwrap-hit", [BENCH_UNWRAP_MISS] = "unwrap-miss",
	[BENCH_WRAP] = "wrap", [BENCH_DATAKEY] = "datakey", [BENCH_REWRAP] = "rewrap",
	[BENCH_MIXED] = "mixed",
};

int bench_op_parse(const char *name)
{
	for (int i = 0; i < BENCH_OP_COUNT; i++)
		if (strcmp(op_names[i], name) == 0)
			return i;
	return -1;
}

/* json_field copies the string field name of a response line to out; false if absent. */
static bool json_field(const char *line, const char *name, char *out, size_t cap)
{
	char pat[40];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":\"", name);
	p = strstr(line, pat);
	if (p == NULL)
		return false;
	p += strlen(pat);
	e = strchr(p, '"');
	if (e == NULL || (size_t)(e - p) >= cap)
		return false;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return true;
}

static bool line_ok(const char *line)
{
	return strstr(line, "\"ok\":true") != NULL;
}

/*
 * pipeline sends the n request lines that make(i) builds, PIPELINE at a
 * time, and hands each response line to take(). Responses may come in any
 * order; take() gets them as they come. Returns 0, or -1 (err filled) on
 * the first failed request or a lost connection.
 */
static int pipeline(bench_broker *b, size_t n, int (*make)(bench_broker *, size_t, char *, size_t),
		    int (*take)(bench_broker *, const char *, size_t), char *err, size_t errlen)
{
	size_t cap = PIPELINE * 4608;
	char *buf = malloc(cap);
	int rc = 0;

	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t at = 0; at < n && rc == 0; at += PIPELINE) {
		size_t k = n - at < PIPELINE ? n - at : PIPELINE, len = 0;

		for (size_t i = 0; i < k; i++) {
			int m = make(b, at + i, buf + len, cap - len);

			if (m < 0) {
				snprintf(err, errlen, "a prepared request does not fit");
				free(buf);
				return -1;
			}
			b->req_bytes += (uint64_t)m;
			len += (size_t)m;
		}
		for (size_t i = 0; i < k && rc == 0; i++) {
			if (bench_line_call(&b->ctl, i == 0 ? buf : NULL, i == 0 ? len : 0) != 0) {
				snprintf(err, errlen, "lost the connection to keybrokerd at %s", b->path);
				rc = -1;
			} else if (!line_ok(b->ctl.buf)) {
				char code[64] = "?", msg[256] = "";

				json_field(b->ctl.buf, "code", code, sizeof(code));
				json_field(b->ctl.buf, "message", msg, sizeof(msg));
				snprintf(err, errlen, "preparing: %s: %s", code, msg);
				rc = -1;
			} else {
				b->resp_bytes += b->ctl.line_len + 1;
				b->nsized++;
				rc = take(b, b->ctl.buf, b->ctl.line_len);
			}
		}
	}
	free(buf);
	return rc;
}

static int make_unwrap(bench_broker *b, size_t i, char *out, size_t cap)
{
	int n = snprintf(out, cap, "{\"id\":%" PRIu64 ",%s", ++b->id, b->body[i]);

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* take_blob adds the response's blob to the pool as an unwrap request body. */
static int take_blob(bench_broker *b, const char *line, size_t len)
{
	char blob[4200];
	char *body;

	if (!json_field(line, "blob", blob, sizeof(blob)))
		return -1;
	if (asprintf(&body, "\"op\":\"unwrap\",\"blob\":\"%s\"}\n", blob) < 0)
		return -1;
	b->body[b->nbody++] = body;
	return 0;
}

static int take_nothing(bench_broker *b, const char *line, size_t len)
{
	return 0;
}

static void pool_free(bench_broker *b)
{
	for (size_t i = 0; i < b->nbody; i++) {
		explicit_bzero(b->body[i], strlen(b->body[i]));
		free(b->body[i]);
	}
	free(b->body);
	b->body = NULL;
	b->nbody = 0;
	atomic_store(&b->next, 0);
}

/* make_fresh_wrap builds a wrap of a new random DEK: AES-KWP is deterministic, so each blob needs its own DEK. */
static int make_fresh_wrap(bench_broker *b, size_t i, char *out, size_t cap)
{
	uint8_t dek[1024];
	char p64[1400];
	int n;

	if (b->size > sizeof(dek) || getrandom(dek, b->size, 0) != (ssize_t)b->size)
		return -1;
	p64[kb_b64_encode(dek, b->size, p64, KB_B64_STD)] = '\0';
	explicit_bzero(dek, sizeof(dek));
	n = snprintf(out, cap, "{\"id\":%" PRIu64 ",\"op\":\"wrap\",\"key\":\"%s\",\"plaintext\":\"%s\"}\n",
		     ++b->id, b->key, p64);
	explicit_bzero(p64, sizeof(p64));
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* pool_make wraps n fresh DEKs into the pool, as unwrap request bodies. */
static int pool_make(bench_broker *b, size_t n, char *err, size_t errlen)
{
	pool_free(b);
	b->body = calloc(n, sizeof(*b->body));
	if (b->body == NULL) {
		snprintf(err, errlen, "out of memory for %zu blobs", n);
		return -1;
	}
	return pipeline(b, n, make_fresh_wrap, take_blob, err, errlen);
}

/* flush_key evicts the key's cache entries, so the pool's next unwraps all miss. */
static int flush_key(bench_broker *b, char *err, size_t errlen)
{
	kb_error e;

	if (kb_flush(b->admin, b->key, NULL, &e) != KB_OK) {
		snprintf(err, errlen, "%s: %s", kb_code_name(e.code), e.message);
		return -1;
	}
	return 0;
}

/*
 * miss_latency times a few sequential unwrap-misses to size the pool: the
 * fastest one, in seconds, so the pool errs on the large side. It also
 * records the unwrap request and response sizes.
 */
static double miss_latency(bench_broker *b, char *err, size_t errlen)
{
	enum { PROBE = 8 };
	double best = 1e9;

	if (pool_make(b, PROBE, err, errlen) != 0 || flush_key(b, err, errlen) != 0)
		return -1;
	b->req_bytes = b->resp_bytes = b->nsized = 0;
	for (size_t i = 0; i < PROBE; i++) {
		char req[4608];
		int n = make_unwrap(b, i, req, sizeof(req));
		uint64_t t0 = bench_now_ns();
		double s;

		if (n < 0 || bench_line_call(&b->ctl, req, (size_t)n) != 0 || !line_ok(b->ctl.buf)) {
			snprintf(err, errlen, "unwrap of a fresh blob failed: %s", b->ctl.buf ? b->ctl.buf : "");
			return -1;
		}
		s = (double)(bench_now_ns() - t0) / 1e9;
		best = s < best ? s : best;
		b->req_bytes += (uint64_t)n;
		b->resp_bytes += b->ctl.line_len + 1;
		b->nsized++;
	}
	return best > 1e-6 ? best : 1e-6;
}

static int broker_prepare(void *arg, int clients, double seconds, uint64_t requests, char *err,
			  size_t errlen)
{
	bench_broker *b = arg;
	size_t n;

	switch (b->op) {
	case BENCH_UNWRAP_MISS: {
		double lat = miss_latency(b, err, errlen);

		if (lat < 0)
			return -1;
		/* enough for the warmup and the window (seconds), or the requests, even if clients scale perfectly */
		n = (size_t)(seconds * clients / lat * 1.5) + 16 * (size_t)clients + (size_t)requests;
		if (n > MISS_POOL_MAX)
			n = MISS_POOL_MAX;
		{
			/* pool_make counts wrap sizes; keep the probe's unwrap sizes */
			uint64_t rq = b->req_bytes, rs = b->resp_bytes, ns = b->nsized;

			if (pool_make(b, n, err, errlen) != 0 || flush_key(b, err, errlen) != 0)
				return -1;
			b->req_bytes = rq;
			b->resp_bytes = rs;
			b->nsized = ns;
		}
		return 0;
	}
	case BENCH_UNWRAP_HIT:
	case BENCH_REWRAP:
	case BENCH_MIXED:
		n = HIT_POOL > 4 * clients ? HIT_POOL : 4 * (size_t)clients;
		if (pool_make(b, n, err, errlen) != 0)
			return -1;
		/* one unwrap each puts every blob in the cache; it also gives the sizes */
		b->req_bytes = b->resp_bytes = b->nsized = 0;
		return pipeline(b, b->nbody, make_unwrap, take_nothing, err, errlen);
	default:
		return 0;
	}
}

static int broker_open(void *arg, int client, void **conn, char *err, size_t errlen)
{
	bench_broker *b = arg;
	broker_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -1;
	c->b = b;
	c->cap = 4608;
	c->req = malloc(c->cap);
	if (c->req == NULL || bench_line_open(&c->l, b->path, err, errlen) != 0) {
		free(c->req);
		free(c);
		return -1;
	}
	/* clients start spread over the pool */
	c->at = b->nbody ? (size_t)client * 7919 % b->nbody : 0;
	*conn = c;
	return 0;
}

/* note_error keeps the first failed request's code and whole message for the report. */
static void note_error(bench_broker *b, const char *line)
{
	cJSON *j, *e;
	const char *code, *msg;

	if (atomic_flag_test_and_set(&b->error_seen))
		return;
	if (line == NULL) {
		snprintf(b->d.first_code, sizeof(b->d.first_code), "%s", kb_code_name(KB_E_IO));
		snprintf(b->d.first_error, sizeof(b->d.first_error),
			 "lost the connection to keybrokerd at %s", b->path);
		return;
	}
	j = cJSON_Parse(line);
	e = cJSON_GetObjectItemCaseSensitive(j, "error");
	code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
	msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
	snprintf(b->d.first_code, sizeof(b->d.first_code), "%s",
		 code ? code : kb_code_name(KB_E_PROTOCOL));
	snprintf(b->d.first_error, sizeof(b->d.first_error), "%s",
		 msg ? msg : "the answer is not a protocol error");
	cJSON_Delete(j);
}

static int broker_op(void *conn)
{
	broker_conn *c = conn;
	bench_broker *b = c->b;
	const char *body;
	int n;

	switch (b->op) {
	case BENCH_UNWRAP_MISS: {
		size_t i = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed);

		if (i >= b->nbody)
			return BENCH_STOP;
		body = b->body[i];
		break;
	}
	case BENCH_REWRAP:
	case BENCH_UNWRAP_HIT:
		body = b->body[c->at];
		c->at = c->at + 1 == b->nbody ? 0 : c->at + 1;
		break;
	case BENCH_MIXED:
		/* nine cached reads, then one write */
		if (c->n % 10 == 9) {
			body = b->write_body + 1;
		} else {
			body = b->body[c->at];
			c->at = c->at + 1 == b->nbody ? 0 : c->at + 1;
		}
		break;
	default:
		body = b->write_body + 1;
		break;
	}
	c->n++;
	n = snprintf(c->req, c->cap, "{\"id\":%" PRIu64 ",%s", ++c->id, body);
	if (b->op == BENCH_REWRAP && n > 0 && (size_t)n < c->cap) {
		/* the pool holds unwrap bodies; a rewrap differs only in its op */
		char *op = strstr(c->req, "\"unwrap\"");

		if (op != NULL)
			memcpy(op, "\"rewrap\"", 8);
	}
	if (n < 0 || (size_t)n >= c->cap)
		return BENCH_ERR;
	if (bench_line_call(&c->l, c->req, (size_t)n) != 0) {
		note_error(b, NULL);
		return BENCH_ERR;
	}
	if (!line_ok(c->l.buf)) {
		note_error(b, c->l.buf);
		return BENCH_ERR;
	}
	return BENCH_OK;
}

static void broker_close(void *conn)
{
	broker_conn *c = conn;

	bench_line_close(&c->l);
	free(c->req);
	free(c);
}

/* read_counters reads the key's backend calls and the cache's hits and misses from status. */
static int read_counters(bench_broker *b, uint64_t *calls, uint64_t *hits, uint64_t *misses)
{
	char *status = NULL;
	cJSON *j, *cnt, *keys, *k;
	int rc = -1;

	if (kb_status(b->admin, &status, NULL) != KB_OK)
		return -1;
	j = cJSON_Parse(status);
	kb_free(status);
	cnt = cJSON_GetObjectItemCaseSensitive(j, "counters");
	keys = cJSON_GetObjectItemCaseSensitive(j, "keys");
	*hits = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cnt, "hits"));
	*misses = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cnt, "misses"));
	cJSON_ArrayForEach(k, keys) {
		const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(k, "name"));

		if (name != NULL && strcmp(name, b->key) == 0) {
			const char *be = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(k, "backend"));

			*calls = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(k, "backend_calls"));
			if (be != NULL)
				snprintf(b->backend, sizeof(b->backend), "%s", be);
			rc = 0;
		}
	}
	cJSON_Delete(j);
	return rc;
}

static void broker_counters(void *arg, bool after, bench_series *out)
{
	bench_broker *b = arg;
	uint64_t calls, hits, misses;

	if (read_counters(b, &calls, &hits, &misses) != 0)
		return;
	if (!after) {
		b->calls0 = calls;
		b->hits0 = hits;
		b->misses0 = misses;
		return;
	}
	out->have_counters = true;
	out->backend_calls += calls - b->calls0;
	out->hits += hits - b->hits0;
	out->misses += misses - b->misses0;
}

bench_broker *bench_broker_new(const char *socket, const char *key, bench_op op, size_t size,
			       char *err, size_t errlen)
{
	bench_broker *b = calloc(1, sizeof(*b));
	uint64_t calls, hits, misses;
	char def[KB_SOCKET_PATH_MAX + 1];
	kb_error ke;

	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_flag_clear(&b->error_seen);
	b->ctl.fd = -1;
	if (socket == NULL)
		socket = getenv(KB_SOCKET_ENV);
	if (socket == NULL || socket[0] == '\0') {
		if (kb_default_socket(def, sizeof(def)) < 0) {
			snprintf(err, errlen, "the default socket path is too long; set " KB_SOCKET_ENV);
			free(b);
			return NULL;
		}
		socket = def;
	}
	snprintf(b->path, sizeof(b->path), "%s", socket);
	snprintf(b->key, sizeof(b->key), "%s", key);
	b->op = op;
	b->size = size;
	if (op == BENCH_DATAKEY || op == BENCH_MIXED) {
		if (asprintf(&b->write_body, "{\"op\":\"datakey\",\"key\":\"%s\",\"bits\":%zu}\n", key, size * 8) < 0)
			b->write_body = NULL;
	} else if (op == BENCH_WRAP) {
		uint8_t *dek = calloc(1, size);
		char *p64 = malloc(kb_b64_encoded_len(size, KB_B64_STD) + 1);

		if (dek != NULL && p64 != NULL) {
			memset(dek, 0xa5, size);  /* the value is irrelevant to a wrap's cost */
			p64[kb_b64_encode(dek, size, p64, KB_B64_STD)] = '\0';
			if (asprintf(&b->write_body, "{\"op\":\"wrap\",\"key\":\"%s\",\"plaintext\":\"%s\"}\n",
				     key, p64) < 0)
				b->write_body = NULL;
		}
		free(dek);
		free(p64);
	} else {
		b->write_body = strdup("{}\n");
	}
	if (b->write_body == NULL) {
		snprintf(err, errlen, "out of memory");
		free(b);
		return NULL;
	}
	if (bench_line_open(&b->ctl, b->path, err, errlen) != 0) {
		bench_broker_free(b);
		return NULL;
	}
	if (kb_client_connect(b->path, &b->admin, &ke) != KB_OK) {
		snprintf(err, errlen, "%s", ke.message);
		bench_broker_free(b);
		return NULL;
	}
	if (read_counters(b, &calls, &hits, &misses) != 0) {
		snprintf(err, errlen, "key %s is not configured in keybrokerd at %s (see keybroker status)",
			 key, b->path);
		bench_broker_free(b);
		return NULL;
	}
	b->d = (bench_driver){ .arg = b, .prepare = broker_prepare, .open = broker_open,
			       .op = broker_op, .close = broker_close, .counters = broker_counters };
	return b;
}

void bench_broker_free(bench_broker *b)
{
	if (b == NULL)
		return;
	pool_free(b);
	bench_line_close(&b->ctl);
	kb_client_close(b->admin);
	free(b->write_body);
	free(b);
}

bench_driver *bench_broker_driver(bench_broker *b)
{
	return &b->d;
}

void bench_broker_sizes(const bench_broker *b, size_t *req, size_t *resp)
{
	*req = b->nsized ? (size_t)(b->req_bytes / b->nsized) : 0;
	*resp = b->nsized ? (size_t)(b->resp_bytes / b->nsized) : 0;
}

const char *bench_broker_backend(const bench_broker *b)
{
	return b->backend;
}

size_t bench_broker_ciphertext(const bench_broker *b, uint8_t *out, size_t cap)
{
	char blob[4200], *f[8], *save = NULL;
	size_t n = 0, len;
	int i = 0;

	if (b->nbody == 0 || !json_field(b->body[0], "blob", blob, sizeof(blob)))
		return 0;
	for (char *p = strtok_r(blob, ":", &save); p != NULL && i < 8; p = strtok_r(NULL, ":", &save))
		f[i++] = p;
	/* kb1 has 6 fields, kb2 7 (the fingerprint after the version): the ciphertext is next to last */
	if ((i != 6 && i != 7) || !kb_b64_decode(f[i - 2], strlen(f[i - 2]), out, cap, &len, KB_B64_URL))
		return 0;
	n = len;
	return n;
}
