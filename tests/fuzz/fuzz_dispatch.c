/*
 * fuzz_dispatch: any bytes on a connection, split into lines, go through the
 * real dispatcher (parse, policy, cache, single flight, jobs, answers, audit)
 * without a crash, and every request is answered. The one key's backend
 * refuses every call (a fuzz harness has no token); the cache holds a DEK for
 * one blob so the hit path runs too.
 */
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "conn.h"
#include "ndjson.h"
#include "finish.h"
#include "keys.h"
#include "pool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kb_code refuse(kb_err *err)
{
	return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "fuzz: no key service");
}
static kb_code f_open(kb_keyconf *kc, int nslots, void **state, kb_err *err) { *state = kc; return KB_OK; }
static void f_close(void *state) { }
static kb_code f_describe(void *s, int slot, kb_key_info *i, kb_err *err) { return refuse(err); }
static kb_code f_wrap(void *s, int slot, const char *v, kb_alg a, const uint8_t *pt, size_t n, uint8_t *ct,
		      size_t *ctlen, char vo[KB_VERSION_MAX + 1], kb_alg *ao, kb_err *err) { return refuse(err); }
static kb_code f_unwrap(void *s, int slot, const char *v, kb_alg a, const uint8_t *ct, size_t n, uint8_t *pt,
			size_t *ptlen, kb_err *err) { return refuse(err); }
static kb_code f_rotate(void *s, int slot, char vo[KB_VERSION_MAX + 1], kb_err *err) { return refuse(err); }

static const kb_backend_ops refusing = {
	.name = "pkcs11", .open = f_open, .close = f_close, .describe = f_describe,
	.wrap = f_wrap, .unwrap = f_unwrap, .rotate = f_rotate,
};

const kb_backend_ops *kb_backend_find(const char *name)
{
	return &refusing;
}

static kb_broker b;
static const char hit_blob[] = "kb1:k:01:AES-KWP:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:xxxxxxxx";

static void setup(void)
{
	kb_config *cfg;
	kb_keyset *ks;
	uint8_t d[KB_DIGEST_LEN], dek[32] = { 1 };

	if (kb_config_parse_string("[broker]\nworkers = 1\ncache_capacity = 8\nallow_unlocked_memory = yes\n"
				   "[key:k]\nbackend = pkcs11\nallow_rewrap = 12345\n",
				   "fuzz.conf", &cfg, NULL) != KB_OK ||
	    kb_keyset_open(cfg, 2, &ks, NULL) != KB_OK ||
	    kb_cache_init(&b.cache, 8, true, NULL) != KB_OK)
		abort();
	kb_broker_use_keyset(&b, ks);
	b.nflights = 16;
	b.flights = calloc(b.nflights, sizeof(*b.flights));
	if (kb_pool_start(&b, 1, &b.pool, NULL) != KB_OK)
		abort();
	SHA256((const uint8_t *)hit_blob, strlen(hit_blob), d);
	kb_cache_put(&b.cache, d, 0, "01", dek, sizeof(dek), 1000000000, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kb_conn *c = calloc(1, sizeof(*c));
	const char *p = (const char *)data, *end = p + size;

	if (b.pool == NULL)
		setup();
	c->fd = -1; /* answers are written, then dropped */
	c->refs = 1;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (n)
			kb_ndjson_line(&b, c, p, n);
		p += n + 1;
	}
	/* every job finishes and answers its waiters */
	while (c->inflight > 0) {
		struct pollfd pfd = { .fd = kb_pool_fd(b.pool), .events = POLLIN };
		kb_job *next;

		poll(&pfd, 1, 1000);
		for (kb_job *j = kb_pool_take_done(b.pool); j; j = next) {
			next = j->next;
			kb_job_finish(&b, j);
		}
	}
	kb_conn_unref(c);
	return 0;
}
