/*
 * hitstep.c: kb-bench-hitstep, the cost of one cache hit, step by step.
 *
 * It links the broker's own objects (kbcore) and times each step of a hit
 * as the event loop runs it, on the loop's own data: a broker with one key,
 * a DEK in the cache, a connection on a socketpair.
 *
 *   parse   kb_proto_parse of the request line
 *   digest  kb_sha256 of the blob (the cache key)
 *   lookup  kb_cache_get
 *   render  kb_answer_hit into the connection's buffer (dropped, not sent)
 *   send    kb_conn_send of the rendered answer, copied into the
 *           connection's buffer first (mostly the send(2) itself)
 *   whole   kb_ndjson_line of the line, parse to send, as the loop calls it
 *
 * Each step runs in a loop of its own and reports ns per call, the fastest
 * of --reps repetitions: on a shared machine other work only ever adds time. "user" is whole minus send: the user-space work
 * per hit. --json FILE writes the figures for bench/compare.
 *
 * The key's backend answers nothing: a hit never reaches it, and a
 * microbenchmark has no token (keybroker bench --op unwrap-hit measures the
 * hit end to end against a real one).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "answer.h"
#include "conn.h"
#include "ndjson.h"
#include "keys.h"

static kb_code none(kb_err *err)
{
	return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "kb-bench-hitstep has no key service");
}
static kb_code b_open(kb_keyconf *kc, int nslots, void **state, kb_err *err) { (void)kc; (void)nslots; *state = NULL; return KB_OK; }
static void b_close(void *state) { (void)state; }
static kb_code b_describe(void *s, int slot, kb_key_info *i, kb_err *err) { (void)s; (void)slot; (void)i; return none(err); }
static kb_code b_wrap(void *s, int slot, const char *v, kb_alg a, const uint8_t *pt, size_t n, uint8_t *ct,
		      size_t *ctlen, char vo[KB_VERSION_MAX + 1], kb_alg *ao, kb_err *err)
{
	(void)s; (void)slot; (void)v; (void)a; (void)pt; (void)n; (void)ct; (void)ctlen; (void)vo; (void)ao;
	return none(err);
}
static kb_code b_unwrap(void *s, int slot, const char *v, kb_alg a, const uint8_t *ct, size_t n, uint8_t *pt,
			size_t *ptlen, kb_err *err)
{
	(void)s; (void)slot; (void)v; (void)a; (void)ct; (void)n; (void)pt; (void)ptlen;
	return none(err);
}
static kb_code b_rotate(void *s, int slot, char vo[KB_VERSION_MAX + 1], kb_err *err) { (void)s; (void)slot; (void)vo; return none(err); }

static const kb_backend_ops silent = {
	.name = "pkcs11", .open = b_open, .close = b_close, .describe = b_describe,
	.wrap = b_wrap, .unwrap = b_unwrap, .rotate = b_rotate,
};

const kb_backend_ops *kb_backend_find(const char *name)
{
	(void)name;
	return &silent;
}

enum { ST_PARSE, ST_DIGEST, ST_LOOKUP, ST_RENDER, ST_SEND, ST_WHOLE, ST_COUNT };
static const char *const step_names[ST_COUNT] = { "parse", "digest", "lookup", "render", "send", "whole" };

#define BATCH 32 /* sends between two drains of the peer's end */

static kb_broker b;
static kb_conn conn;
static int peer_fd;
static char line[1024];
static size_t line_len;
static const char *blob;
static size_t blob_len;

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void drain(void)
{
	char sink[65536];

	while (recv(peer_fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
}

/*
 * setup makes a broker of one key whose cache holds the DEK of an RSA-sized
 * kb1 blob, and a connection to a socketpair; the request line is what
 * `keybroker bench --op unwrap-hit` sends.
 */
static int setup(void)
{
	static char text[512];
	kb_config *cfg;
	kb_keyset *ks;
	kb_err err;
	uint8_t d[KB_DIGEST_LEN], dek[32];
	int sv[2];

	if (kb_config_parse_string("[broker]\nworkers = 1\ncache_capacity = 64\nallow_unlocked_memory = yes\n"
				   "log_level = error\n[key:rsa]\nbackend = pkcs11\n",
				   "hitstep.conf", &cfg, &err) != KB_OK ||
	    kb_keyset_open(cfg, 1, &ks, &err) != KB_OK ||
	    kb_cache_init(&b.cache, 64, true, &err) != KB_OK) {
		fprintf(stderr, "kb-bench-hitstep: %s\n", err.msg);
		return -1;
	}
	kb_broker_use_keyset(&b, ks);
	b.nflights = 16;
	b.flights = calloc(b.nflights, sizeof(*b.flights));
	/* an RSA-2048 ciphertext is 256 bytes: 342 characters of base64url */
	memcpy(text, "kb1:rsa:01:RSA-OAEP:", 20);
	for (int i = 0; i < 342; i++)
		text[20 + i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[(i * 7 + 3) & 63];
	text[362] = '\0';
	blob = text;
	blob_len = strlen(text);
	line_len = (size_t)snprintf(line, sizeof(line), "{\"id\":12345,\"op\":\"unwrap\",\"blob\":\"%s\"}", blob);
	for (size_t i = 0; i < sizeof(dek); i++)
		dek[i] = (uint8_t)(i * 37 + 11);
	kb_sha256(blob, blob_len, d);
	if (kb_cache_put(&b.cache, d, 0, "01", dek, sizeof(dek), INT64_C(1) << 50, 0) == NULL)
		return -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		perror("kb-bench-hitstep: socketpair");
		return -1;
	}
	conn.fd = sv[0];
	conn.refs = 1;
	conn.uid = getuid();
	conn.gid = getgid();
	peer_fd = sv[1];
	b.uid = getuid();
	b.gid = getgid();
	return 0;
}

/* answer_bytes renders the hit's answer once: the bytes the send step queues and sends. */
static size_t answer_bytes(kb_cache_entry *e, char *out, size_t cap)
{
	kb_waiter w = { .conn = &conn, .reply = kb_ndjson_reply(&conn), .op = KB_OP_UNWRAP, .id_json = "12345", .key = "rsa" };
	ssize_t n;

	kb_answer_hit(&b, &w, &b.keys[0], e, false);
	n = recv(peer_fd, out, cap, 0);
	return n > 0 ? (size_t)n : 0;
}

/* run_step returns the ns per call of step st over n calls. */
static double run_step(int st, long n)
{
	static kb_request req;
	kb_waiter w = { .conn = &conn, .reply = kb_ndjson_reply(&conn), .op = KB_OP_UNWRAP, .id_json = "12345", .key = "rsa" };
	uint8_t d[KB_DIGEST_LEN];
	char ans[1024];
	size_t alen;
	kb_cache_entry *e;
	kb_err err;
	double t0, ns = 0;
	int fd = conn.fd;

	kb_sha256(blob, blob_len, d);
	if ((e = kb_cache_get(&b.cache, d, 1)) == NULL || (alen = answer_bytes(e, ans, sizeof(ans))) == 0) {
		fprintf(stderr, "kb-bench-hitstep: the DEK is not in the cache\n");
		exit(1);
	}
	if (st == ST_RENDER)
		conn.fd = -1; /* kb_conn_send drops what was rendered */
	if (st == ST_SEND || st == ST_WHOLE) {
		/* the peer's end is drained between batches, outside the clock */
		for (long i = 0; i < n; i += BATCH) {
			t0 = now_ns();
			for (int k = 0; k < BATCH; k++) {
				if (st == ST_WHOLE) {
					kb_ndjson_line(&b, &conn, line, line_len);
				} else {
					kb_buf_append(&conn.out, ans, alen);
					kb_conn_send(&conn);
				}
			}
			ns += now_ns() - t0;
			drain();
		}
		return ns / (double)((n + BATCH - 1) / BATCH * BATCH);
	}
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		switch (st) {
		case ST_PARSE:
			if (kb_proto_parse(line, line_len, &req, &err) != KB_OK) {
				fprintf(stderr, "kb-bench-hitstep: parse: %s\n", err.msg);
				exit(1);
			}
			kb_request_wipe(&req);
			break;
		case ST_DIGEST:
			kb_sha256(blob, blob_len, d);
			break;
		case ST_LOOKUP:
			e = kb_cache_get(&b.cache, d, 1);
			break;
		case ST_RENDER:
			kb_answer_hit(&b, &w, &b.keys[0], e, false);
			break;
		}
	}
	ns = now_ns() - t0;
	conn.fd = fd;
	return ns / (double)n;
}

static int cmp_double(const void *a, const void *bp)
{
	double x = *(const double *)a, y = *(const double *)bp;

	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: kb-bench-hitstep [--iterations N] [--reps R] [--json FILE]\n"
		"  times each step of a cache hit (parse, digest, lookup, render, send) and the\n"
		"  whole kb_ndjson_line, in ns per call: the fastest of R repetitions of N calls\n"
		"  (default 200000 x 7)\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "iterations", 1, NULL, 'n' }, { "reps", 1, NULL, 'r' }, { "json", 1, NULL, 'j' },
		{ "help", 0, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	long n = 200000;
	int reps = 7, ch;
	const char *json = NULL;
	double best[ST_COUNT], v[64], user, sum = 0;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'n': n = atol(optarg); break;
		case 'r': reps = atoi(optarg); break;
		case 'j': json = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || n < BATCH || reps < 1 || reps > 64) {
		usage(stderr);
		return 2;
	}
	if (setup() != 0)
		return 1;
	for (int st = 0; st < ST_COUNT; st++) {
		run_step(st, n / 10); /* warm the caches and the branch predictors */
		for (int r = 0; r < reps; r++)
			v[r] = run_step(st, n);
		qsort(v, (size_t)reps, sizeof(double), cmp_double);
		best[st] = v[0];
	}
	user = best[ST_WHOLE] - best[ST_SEND];
	printf("cache hit, ns per step (fastest of %d x %ld calls; request %zu bytes)\n", reps, n, line_len + 1);
	for (int st = 0; st < ST_COUNT; st++) {
		if (st < ST_SEND)
			sum += best[st];
		printf("  %-8s %9.0f\n", step_names[st], best[st]);
	}
	printf("  %-8s %9.0f   (parse + digest + lookup + render)\n", "steps", sum);
	printf("  %-8s %9.0f   (whole - send: the user-space work of a hit)\n", "user", user);
	if (json) {
		FILE *f = fopen(json, "w");

		if (f == NULL) {
			fprintf(stderr, "kb-bench-hitstep: cannot write %s: %s\n", json, strerror(errno));
			return 1;
		}
		fprintf(f, "{\"iterations\":%ld,\"reps\":%d,\"ns\":{", n, reps);
		for (int st = 0; st < ST_COUNT; st++)
			fprintf(f, "\"%s\":%.1f,", step_names[st], best[st]);
		fprintf(f, "\"user\":%.1f}}\n", user);
		fclose(f);
	}
	close(conn.fd);
	close(peer_fd);
	return 0;
}
