/*
 * dispatch.c: the core's one entry for requests (see dispatch.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include "digest.h"

#include "answer.h"
#include "audit.h"
#include "conn.h"
#include "dispatch.h"
#include "finish.h"
#include "jobs.h"
#include "log.h"
#include "policy.h"
#include "submit.h"

/*
 * resolve_blob_key finds the configured key a decoded blob belongs to: by
 * name for kb1 and kb2 blobs (keyprint.h then checks a kb2's fingerprint), by asking each backend for Azure's raw form.
 */
static kb_key *resolve_blob_key(kb_broker *b, const kb_blob *blob, kb_err *err)
{
	if (blob->kid[0] == '\0') {
		kb_key *k = kb_key_find(b, blob->key);
		if (k == NULL)
			kb_err_set(err, KB_E_UNKNOWN_KEY,
				   "the blob was wrapped by key \"%s\", which is not configured here: add its "
				   "[key:%s] section",
				   blob->key, blob->key);
		return k;
	}
	for (int i = 0; i < b->nkeys; i++) {
		kb_key *k = &b->keys[i];
		if (k->state && k->ops->claim_raw_blob && k->ops->claim_raw_blob(k->state, blob->kid))
			return k;
	}
	kb_err_set(err, KB_E_UNKNOWN_KEY,
		   "no configured key matches the raw blob's kid %.200s: add a [key:NAME] with that url",
		   blob->kid);
	return NULL;
}

/*
 * peer_may_wait keeps a peer to its share of the key service (peer.h): a
 * request about to wait on it is refused busy beyond max_inflight_per_peer.
 * A batch is counted once, as max_inflight counts it; a hit never asks.
 */
static bool peer_may_wait(kb_broker *b, const kb_waiter *w, kb_err *err)
{
	kb_conn *c = w->conn;

	return w->batch_item || c->set == NULL || kb_peer_may_wait(&c->set->peers, b->cfg, c, w->start_us / 1000, err);
}

/* waiter_key names k in w's answer and audit record (a configured name fits: the config checks it). */
static void waiter_key(kb_waiter *w, const kb_key *k)
{
	size_t n = strnlen(k->conf->name, KB_KEY_NAME_MAX);

	memcpy(w->key, k->conf->name, n);
	w->key[n] = '\0';
}

/* refresh_due: a hit in the last fraction of an entry's life starts refresh-ahead (once). */
static bool refresh_due(const kb_key *k, const kb_cache_entry *e, int64_t now_ms)
{
	double f = k->conf->cache_refresh_fraction;

	return f > 0 && !e->refreshing && (double)(e->expires_ms - now_ms) <= f * (double)e->ttl_ms;
}

/*
 * start_refresh asks the key service for blob again in the background, its
 * answer renewing the cache entry of digest; not while a call for it is in
 * flight. Returns whether it started one.
 */
static bool start_refresh(kb_broker *b, kb_key *k, const kb_blob *blob, const uint8_t *digest)
{
	kb_job *j;

	if (kb_flight_find(b, digest) || (j = kb_job_new(b, KB_OP_UNWRAP, k)) == NULL)
		return false;
	j->src = k;
	j->blob = *blob;
	memcpy(j->digest, digest, KB_DIGEST_LEN);
	j->refresh = true;
	b->counters.refreshes++;
	kb_flight_add(b, j);
	kb_job_submit(b, j);
	return true;
}

/*
 * handle_unwrap looks the blob up by digest first: a hit needs nothing else
 * of the blob (the entry knows its key and version), so the hit path neither
 * decodes nor validates it again.
 */
static void handle_unwrap(kb_broker *b, kb_waiter *w, const char *text, size_t len)
{
	kb_blob *blob = NULL;
	kb_cache_entry *e;
	kb_key *k;
	kb_job *j;
	kb_err err;
	int64_t now = w->start_us / 1000;

	kb_sha256((const uint8_t *)text, len, w->digest);
	w->has_digest = true;
	e = kb_cache_get(&b->cache, w->digest, now);
	if (e) {
		k = &b->keys[e->key_index];
		waiter_key(w, k);
		if (kb_policy_check(b, w->conn, KB_OP_UNWRAP, k, &err) != KB_OK)
			goto fail;
		b->counters.hits++;
		kb_answer_hit(b, w, k, e, false);
		/* only a refresh needs the blob decoded: the hit itself never does */
		if (refresh_due(k, e, now) && (blob = malloc(sizeof(*blob))) != NULL &&
		    kb_blob_decode(text, len, blob, &err) == KB_OK && start_refresh(b, k, blob, e->digest))
			e->refreshing = true;
		free(blob);
		return;
	}
	if ((blob = malloc(sizeof(*blob))) == NULL) {
		kb_err_set(&err, KB_E_INTERNAL, "out of memory");
		goto fail;
	}
	if (kb_blob_decode(text, len, blob, &err) != KB_OK)
		goto fail;
	if ((k = resolve_blob_key(b, blob, &err)) == NULL)
		goto fail;
	waiter_key(w, k);
	if (kb_policy_check(b, w->conn, KB_OP_UNWRAP, k, &err) != KB_OK || !peer_may_wait(b, w, &err))
		goto fail;
	b->counters.misses++;
	j = kb_flight_find(b, w->digest);
	/*
	 * outage grace: once the key service was found unreachable, an entry
	 * within its grace answers at once, stale, and one call in flight keeps
	 * asking; its first answer settles the entry (finish.c)
	 */
	if ((e = kb_cache_stale(&b->cache, w->digest, now)) != NULL && e->stale) {
		b->counters.stale_answers++;
		kb_answer_hit(b, w, k, e, true);
		if (j == NULL)
			start_refresh(b, k, blob, w->digest);
		free(blob);
		return;
	}
	if (j) {
		b->counters.joins++;
		if (kb_job_add_waiter(j, w) != KB_OK) {
			kb_err_set(&err, KB_E_INTERNAL, "out of memory");
			goto fail;
		}
		free(blob);
		return;
	}
	j = kb_job_new(b, KB_OP_UNWRAP, k);
	if (j == NULL || kb_job_add_waiter(j, w) != KB_OK) {
		kb_job_free(j);
		kb_err_set(&err, KB_E_INTERNAL, "out of memory");
		goto fail;
	}
	j->src = k;
	j->blob = *blob;
	memcpy(j->digest, w->digest, KB_DIGEST_LEN);
	kb_flight_add(b, j);
	kb_job_submit(b, j);
	free(blob);
	return;
fail:
	free(blob);
	kb_reply_error(b, w, &err);
}

/* dk_reusable returns k's current data key if it may be handed out once more. */
static kb_cache_entry *dk_reusable(kb_broker *b, kb_key *k, const kb_request *req, int64_t now)
{
	const kb_keyconf *kc = k->conf;

	if (!k->dk.valid || kc->datakey_max_age_ms <= 0)
		return NULL;
	if (now - k->dk.created_ms >= kc->datakey_max_age_ms ||
	    (kc->datakey_max_uses > 0 && k->dk.uses >= kc->datakey_max_uses) ||
	    (kc->datakey_max_bytes > 0 && k->dk.bytes + req->bytes > kc->datakey_max_bytes)) {
		k->dk.valid = false;
		return NULL;
	}
	return kb_cache_get(&b->cache, k->dk.digest, now);
}

static void handle_datakey(kb_broker *b, kb_waiter *w, const kb_request *req, kb_key *k)
{
	kb_cache_entry *e = dk_reusable(b, k, req, w->start_us / 1000);
	kb_job *j;
	kb_err err;

	/* reuse only a DEK of the size asked for */
	if (e && e->deklen * 8 == (uint32_t)req->bits) {
		k->dk.uses++;
		k->dk.bytes += req->bytes;
		b->counters.datakey_reused++;
		memcpy(w->digest, k->dk.digest, KB_DIGEST_LEN);
		w->has_digest = true;
		if (kb_answer_record(b, w, k->dk.version, -1, NULL)) {
			kb_answer a;

			kb_answer_start(w, &a);
			a.plaintext = e->dek;
			a.ptlen = e->deklen;
			a.blob = k->dk.blob;
			a.key = k->conf->name;
			a.version = k->dk.version;
			a.reused = 1;
			kb_answer_send(w, &a);
		}
		return;
	}
	if (!peer_may_wait(b, w, &err)) {
		kb_reply_error(b, w, &err);
		return;
	}
	j = kb_job_new(b, KB_OP_DATAKEY, k);
	if (j == NULL || kb_job_add_waiter(j, w) != KB_OK) {
		kb_job_free(j);
		kb_reply_code(b, w, KB_E_INTERNAL, "out of memory: the broker could not take the request");
		return;
	}
	j->bits = req->bits;
	j->bytes = req->bytes; /* the request that makes a DEK counts against it too */
	kb_job_submit(b, j);
}

static void handle_rewrap(kb_broker *b, kb_waiter *w, const kb_request *req, const char *text, size_t len)
{
	kb_job *j = kb_job_new(b, KB_OP_REWRAP, NULL);
	kb_cache_entry *e;
	kb_key *src, *dst;
	kb_err err;

	if (j == NULL) {
		kb_err_set(&err, KB_E_INTERNAL, "out of memory");
		goto fail;
	}
	if (kb_blob_decode(text, len, &j->blob, &err) != KB_OK)
		goto fail;
	kb_sha256((const uint8_t *)text, len, j->digest);
	memcpy(w->digest, j->digest, KB_DIGEST_LEN);
	w->has_digest = true;
	if ((src = resolve_blob_key(b, &j->blob, &err)) == NULL)
		goto fail;
	dst = src;
	if (req->key[0] && (dst = kb_key_find(b, req->key)) == NULL) {
		kb_err_set(&err, KB_E_UNKNOWN_KEY, "no key named \"%s\" is configured", req->key);
		goto fail;
	}
	waiter_key(w, dst);
	if (kb_policy_check(b, w->conn, KB_OP_REWRAP, src, &err) != KB_OK ||
	    kb_policy_check(b, w->conn, KB_OP_REWRAP, dst, &err) != KB_OK || !peer_may_wait(b, w, &err))
		goto fail;
	j->src = src;
	j->key = dst;
	/* a cached DEK spares the unwrap half, exactly as an unwrap would */
	e = kb_cache_get(&b->cache, j->digest, w->start_us / 1000);
	if (e) {
		b->counters.hits++;
		memcpy(j->pt, e->dek, e->deklen);
		j->ptlen = e->deklen;
		j->have_pt = true;
	} else {
		b->counters.misses++;
	}
	if (kb_job_add_waiter(j, w) != KB_OK) {
		kb_err_set(&err, KB_E_INTERNAL, "out of memory");
		goto fail;
	}
	kb_job_submit(b, j);
	return;
fail:
	kb_job_free(j);
	kb_reply_error(b, w, &err);
}

/* handle_flush is recorded first: a flush that cannot be recorded is not done. */
static void handle_flush(kb_broker *b, kb_waiter *w, kb_key *k)
{
	kb_answer a;
	int n;

	if (!kb_answer_record(b, w, NULL, -1, NULL))
		return;
	n = kb_cache_flush(&b->cache, k ? k->index : -1);
	for (int i = 0; i < b->nkeys; i++)
		if (k == NULL || k == &b->keys[i])
			b->keys[i].dk.valid = false;
	kb_info("flushed %d cached DEK%s%s%s", n, n == 1 ? "" : "s", k ? " of key " : "",
		k ? k->conf->name : "");
	kb_answer_start(w, &a);
	a.key = NULL;
	a.flushed = n;
	kb_answer_send(w, &a);
}

/* handle_keyed_job queues get, wrap, rotate and doctor, which all go to the backend. */
static void handle_keyed_job(kb_broker *b, kb_waiter *w, const kb_request *req, kb_key *k)
{
	kb_job *j;
	kb_err err;

	if (!peer_may_wait(b, w, &err)) {
		kb_reply_error(b, w, &err);
		return;
	}
	/* a rotate changes the key service: it is on record before it begins */
	if (req->op == KB_OP_ROTATE && kb_audit_intent(b->audit, w, &err) != KB_OK) {
		kb_log_err("%s", err.msg);
		kb_reply_error(b, w, &err);
		return;
	}
	j = kb_job_new(b, req->op, k);

	if (j == NULL || kb_job_add_waiter(j, w) != KB_OK) {
		kb_job_free(j);
		kb_reply_code(b, w, KB_E_INTERNAL, "out of memory: the broker could not take the request");
		return;
	}
	j->alg = req->alg;
	if (req->has_plaintext) {
		memcpy(j->pt, req->plaintext, req->ptlen);
		j->ptlen = req->ptlen;
		j->have_pt = true;
	}
	kb_job_submit(b, j);
}

/*
 * handle_batch answers each blob of a batch as a request of its own: each
 * item's answer goes to the request's reply with its index (a->item), and
 * the face assembles them. A refusal of the whole batch has item -1.
 */
static void handle_batch(kb_broker *b, kb_waiter *w, const kb_request *req)
{
	kb_err err;

	if (req->nblobs > b->cfg->max_batch) {
		kb_err_set(&err, KB_E_TOO_LARGE, "the batch has %d blobs, more than max_batch (%d): split it",
			   req->nblobs, b->cfg->max_batch);
		kb_reply_error(b, w, &err);
		return;
	}
	if (!peer_may_wait(b, w, &err)) {
		kb_reply_error(b, w, &err);
		return;
	}
	for (int i = 0; i < req->nblobs; i++) {
		kb_waiter item = *w;
		const char *text = req->blobs[i];

		item.batch_item = true;
		item.item = i;
		item.start_us = kb_now_us();
		if (text == NULL)
			kb_reply_code(b, &item, KB_E_BAD_BLOB,
				      "this item is not a blob: each must be a kb2 or kb1 string or Azure's raw {kid, alg, value}");
		else if (req->op == KB_OP_UNWRAP)
			handle_unwrap(b, &item, text, strlen(text));
		else
			handle_rewrap(b, &item, req, text, strlen(text));
	}
}

void kb_core_fail(kb_broker *b, const kb_request *req, const kb_err *err, kb_reply reply)
{
	kb_waiter w = { .conn = req->conn, .reply = reply, .op = req->op, .start_us = kb_now_us() };

	memcpy(w.id_json, req->id_json, sizeof(w.id_json));
	kb_reply_error(b, &w, err);
}

void kb_core_submit(kb_broker *b, const kb_request *req, kb_reply reply)
{
	kb_waiter w = { .conn = req->conn, .reply = reply, .op = req->op, .start_us = kb_now_us() };
	kb_conn *c = req->conn;
	kb_key *k = NULL;
	kb_err err;

	kb_loop_assert_owner();
	memcpy(w.id_json, req->id_json, sizeof(w.id_json));
	memcpy(w.key, req->key, sizeof(w.key));
	b->counters.requests[req->op]++;
	if (req->op != KB_OP_STATUS && req->op != KB_OP_METRICS && req->op != KB_OP_FLUSH &&
	    c->inflight >= b->cfg->max_inflight) {
		kb_err_set(&err, KB_E_BUSY,
			   "this connection has %d requests in flight (max_inflight): read the answers first",
			   c->inflight);
		kb_reply_error(b, &w, &err);
		return;
	}
	if (req->key[0] && req->op != KB_OP_REWRAP && (k = kb_key_find(b, req->key)) == NULL) {
		kb_err_set(&err, KB_E_UNKNOWN_KEY,
			   "no key named \"%s\" is configured: `keybroker status` lists the keys", req->key);
		kb_reply_error(b, &w, &err);
		return;
	}
	/* unwrap and rewrap check once they know the blob's key */
	if (req->op != KB_OP_UNWRAP && req->op != KB_OP_REWRAP &&
	    kb_policy_check(b, c, req->op, k, &err) != KB_OK) {
		kb_reply_error(b, &w, &err);
		return;
	}
	switch (req->op) {
	case KB_OP_STATUS:
	case KB_OP_METRICS:
		if (kb_answer_record(b, &w, NULL, -1, NULL)) {
			kb_answer a;

			kb_answer_start(&w, &a);
			a.key = NULL;
			a.report = b;
			kb_answer_send(&w, &a);
		}
		break;
	case KB_OP_FLUSH:
		handle_flush(b, &w, k);
		break;
	case KB_OP_UNWRAP:
	case KB_OP_REWRAP:
		if (req->nblobs >= 0)
			handle_batch(b, &w, req);
		else if (req->op == KB_OP_UNWRAP)
			handle_unwrap(b, &w, req->blob, req->bloblen);
		else
			handle_rewrap(b, &w, req, req->blob, req->bloblen);
		break;
	case KB_OP_DATAKEY:
		handle_datakey(b, &w, req, k);
		break;
	default:
		handle_keyed_job(b, &w, req, k);
		break;
	}
}
