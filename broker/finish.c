/*
 * finish.c: the loop's half of a job: counters, health, the cache, and the
 * answers to every request that waited on it, done by whichever thread holds
 * the loop token (finish.h).
 */
#include <stdio.h>
#include <string.h>

#include "digest.h"

#include "answer.h"
#include "conn.h"
#include "finish.h"
#include "jobs.h"
#include "jsonw.h"
#include "keys.h"
#include "log.h"

static int hist_bucket(int64_t us)
{
	int i = 0;

	while (i < KB_HIST_BUCKETS - 1 && us > ((int64_t)1 << i))
		i++;
	return i;
}

/* is_outage tells whether code means the key service itself is unwell. */
static bool is_outage(kb_code code)
{
	return code == KB_E_BACKEND_UNAVAILABLE || code == KB_E_AUTH_FAILED ||
	       code == KB_E_THROTTLED || code == KB_E_INTERNAL;
}

/*
 * current returns the key of the current keyset that k (of the job's keyset)
 * stands for: after a reload, by name; NULL if it is gone.
 */
static kb_key *current(kb_broker *b, const kb_job *j, kb_key *k)
{
	if (k == NULL || j->ks == b->ks)
		return k;
	return kb_key_find(b, k->conf->name);
}

static void count_calls(kb_broker *b, kb_job *j)
{
	for (int i = 0; i < j->ncalls; i++) {
		kb_key *k = current(b, j, j->calls[i].op == KB_BOP_UNWRAP && j->src ? j->src : j->key);
		kb_code rc = j->calls[i].rc;

		if (k == NULL)
			continue;
		k->backend_calls[j->calls[i].op]++;
		if (rc != KB_OK)
			k->backend_errors[j->calls[i].op]++;
		k->latency_hist[hist_bucket(j->calls[i].us)]++;
		k->latency_sum_s += (double)j->calls[i].us / 1e6;
		if (j->calls[i].op == KB_BOP_UNWRAP && rc == KB_OK)
			k->unwrap_avg_us = kb_sched_avg(k->unwrap_avg_us, j->calls[i].us);
		k->last_code = rc;
		k->healthy = !is_outage(rc);
		if (rc != KB_OK)
			snprintf(k->last_error, sizeof(k->last_error), "%s", j->err.msg);
	}
}

static void cache_result(kb_broker *b, kb_job *j, int64_t now)
{
	uint8_t digest[KB_DIGEST_LEN];
	kb_key *k = current(b, j, j->key), *src = current(b, j, j->src);
	kb_cache_entry *e;

	switch (j->op) {
	case KB_OP_UNWRAP:
		/* a refresh renews only an entry that still exists (not flushed) */
		if (src == NULL || (j->refresh && j->nwaiters == 0 && !kb_cache_peek(&b->cache, j->digest)))
			return;
		e = kb_cache_put(&b->cache, j->digest, src->index, j->version, j->pt, j->ptlen, kb_cache_jitter_ttl(src->ttl_ms, src->ttl_jitter, &src->jitter_rng), now);
		if (e)
			e->grace_ms = src->grace_ms;
		return;
	case KB_OP_DATAKEY:
	case KB_OP_REWRAP:
		if (k == NULL)
			return;
		kb_sha256((const uint8_t *)j->blob_out, strlen(j->blob_out), digest);
		e = kb_cache_put(&b->cache, digest, k->index, j->version, j->pt, j->ptlen, kb_cache_jitter_ttl(k->ttl_ms, k->ttl_jitter, &k->jitter_rng), now);
		if (e)
			e->grace_ms = k->grace_ms;
		if (j->op == KB_OP_DATAKEY && k->conf->datakey_max_age_ms > 0) {
			k->dk.valid = true;
			memcpy(k->dk.digest, digest, KB_DIGEST_LEN);
			snprintf(k->dk.blob, sizeof(k->dk.blob), "%s", j->blob_out);
			snprintf(k->dk.version, sizeof(k->dk.version), "%s", j->version);
			k->dk.created_ms = now;
			k->dk.uses = 1;
			k->dk.bytes = j->bytes;
		}
		return;
	default:
		return;
	}
}

/*
 * outage_grace decides what a failed unwrap (rc) does to its cached DEK, if
 * the key has an outage_grace: when the key service could not be reached
 * (connection refused or dropped, timeout, 5xx, 429 after the retries), an
 * entry past its TTL but within its grace is marked stale and answers the
 * waiters (returns true); any other answer is the service's own word (403,
 * disabled, deleted, 404, a refused unwrap) and ends the DEK at once.
 */
static bool outage_grace(kb_broker *b, kb_job *j, kb_code rc, int64_t now)
{
	kb_key *src = current(b, j, j->src);
	kb_cache_entry *e;

	if (j->op != KB_OP_UNWRAP || src == NULL || src->grace_ms <= 0)
		return false;
	if (rc != KB_E_BACKEND_UNAVAILABLE && rc != KB_E_THROTTLED) {
		kb_cache_drop(&b->cache, j->digest);
		return false;
	}
	if ((e = kb_cache_stale(&b->cache, j->digest, now)) == NULL)
		return false;
	if (!e->stale)
		kb_warn("key %s: the key service cannot be reached (%s); serving cached DEKs stale for up to %llds past their TTL (outage_grace) while a refresh keeps trying",
			src->conf->name, kb_code_name(rc), (long long)(src->grace_ms / 1000));
	e->stale = true;
	for (int i = 0; i < j->nwaiters; i++) {
		kb_waiter *w = &j->waiters[i];
		kb_conn *c = w->conn;

		c->inflight--;
		if (c->fd >= 0 || w->batch) {
			b->counters.stale_answers++;
			kb_answer_hit(b, w, src, e, true);
		}
		kb_conn_unref(c);
	}
	j->nwaiters = 0;
	return true;
}

static void write_info(kb_buf *o, const kb_key *k, const kb_key_info *info)
{
	kb_jw_key(o, "backend");
	kb_jw_str(o, k->ops->name);
	kb_jw_key(o, "alg");
	kb_jw_str(o, kb_alg_name(info->alg));
	kb_jw_key(o, "kty");
	kb_jw_str(o, info->kty);
	kb_jw_key(o, "bits");
	kb_jw_i64(o, info->bits);
	kb_jw_raw(o, info->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
	kb_jw_key(o, "latest");
	kb_jw_str(o, info->latest);
	kb_jw_key(o, "versions");
	kb_jw_raw(o, "[");
	for (int i = 0; i < info->nversions; i++) {
		const kb_version_info *v = &info->versions[i];
		kb_jw_raw(o, i ? ",{\"version\":" : "{\"version\":");
		kb_jw_str(o, v->version);
		kb_jw_raw(o, v->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
		kb_jw_raw(o, strcmp(v->version, info->latest) ? ",\"latest\":false" : ",\"latest\":true");
		if (v->created) {
			kb_jw_key(o, "created");
			kb_jw_i64(o, v->created);
		}
		if (v->not_before) {
			kb_jw_key(o, "nbf");
			kb_jw_i64(o, v->not_before);
		}
		if (v->expires) {
			kb_jw_key(o, "exp");
			kb_jw_i64(o, v->expires);
		}
		kb_jw_raw(o, "}");
	}
	kb_jw_raw(o, "]");
	if (info->key_ops[0]) {
		kb_jw_key(o, "key_ops");
		kb_jw_str(o, info->key_ops);
	}
	if (info->detail[0]) {
		kb_jw_key(o, "detail");
		kb_jw_str(o, info->detail);
	}
	if (info->public_pem) {
		kb_jw_key(o, "public_key_pem");
		kb_jw_str(o, info->public_pem);
	}
}

/* doctor_result is "fail" if any check failed, else "warn" if any warned, else "pass". */
static const char *doctor_result(const kb_buf *t)
{
	if (t->len && memmem(t->data, t->len, "\"status\":\"fail\"", 15))
		return "fail";
	if (t->len && memmem(t->data, t->len, "\"status\":\"warn\"", 15))
		return "warn";
	return "pass";
}

static void answer(kb_broker *b, const kb_job *j, const kb_waiter *waiter)
{
	const kb_key *k = j->op == KB_OP_UNWRAP ? j->src : j->key;
	kb_waiter issued = *waiter, *w = &issued;
	kb_buf *o;

	/* a wrap, datakey or rewrap is recorded under the blob it hands out */
	if (j->blob_out[0]) {
		kb_sha256((const uint8_t *)j->blob_out, strlen(j->blob_out), issued.digest);
		issued.has_digest = true;
	}
	if (!kb_answer_begin(b, w, j->version, j->op == KB_OP_UNWRAP ? 0 : -1, j->err.request_id))
		return;
	o = kb_answer_out(w);
	switch (j->op) {
	case KB_OP_UNWRAP:
	case KB_OP_DATAKEY:
		kb_jw_key(o, "plaintext");
		kb_jw_b64(o, j->pt, j->ptlen);
		break;
	default:
		break;
	}
	if (j->blob_out[0]) {
		kb_jw_key(o, "blob");
		kb_jw_str(o, j->blob_out);
	}
	if (j->op == KB_OP_DOCTOR) {
		kb_jw_key(o, "checks");
		kb_jw_raw(o, "[");
		kb_buf_append(o, j->text.data, j->text.len);
		kb_jw_raw(o, "]");
		kb_jw_key(o, "result");
		kb_jw_str(o, doctor_result(&j->text));
	}
	kb_jw_key(o, "key");
	kb_jw_str(o, k->conf->name);
	if (j->op == KB_OP_GET)
		write_info(o, k, j->info);
	else if (j->version[0]) {
		kb_jw_key(o, "version");
		kb_jw_str(o, j->version);
	}
	/* a face's own connection (inproc.c) also gets the key service's request id; clients of protocol v1 do not */
	if (w->conn->face[0] && j->err.request_id[0]) {
		kb_jw_key(o, "request_id");
		kb_jw_str(o, j->err.request_id);
	}
	if (j->op == KB_OP_UNWRAP)
		kb_jw_raw(o, ",\"cached\":false");
	if (j->op == KB_OP_DATAKEY)
		kb_jw_raw(o, ",\"reused\":false");
	kb_answer_end(b, w);
}

/* finish does all of kb_job_finish but free the job. */
static void finish(kb_broker *b, kb_job *j)
{
	int64_t now = kb_now_ms();
	kb_code rc = j->err.code;

	kb_loop_assert_owner();

	if (j->work_done) {
		j->work_done(j->work_ctx);
		return;
	}
	count_calls(b, j);
	if (j->queued_us != 0)
		kb_uid_waits_add(&b->queue_waits, j->uid, j->wait_us);
	if (j->op == KB_OP_UNWRAP)
		kb_flight_remove(b, j);
	if (j->op == KB_OP_DOCTOR && rc != KB_OK) {
		/* a doctor that could not finish still shows the checks it made */
		kb_buf_append(&j->text, j->text.len ? "," : "", j->text.len ? 1 : 0);
		kb_jw_raw(&j->text, "{\"check\":\"backend\",\"status\":\"fail\",\"detail\":");
		kb_jw_str(&j->text, j->err.msg);
		kb_jw_raw(&j->text, ",\"fix\":\"see the detail\"}");
		rc = KB_OK;
	}
	if (rc == KB_OK)
		cache_result(b, j, now);
	else if (j->refresh)
		b->counters.refresh_failures++;
	if (rc != KB_OK && outage_grace(b, j, rc, now))
		return; /* its waiters have their stale answers; the caller frees j */
	if (rc != KB_OK && j->op == KB_OP_UNWRAP)
		kb_debug("unwrap of key %s version %s failed: %s", j->src->conf->name, j->blob.version,
			 kb_code_name(rc));

	for (int i = 0; i < j->nwaiters; i++) {
		kb_waiter *w = &j->waiters[i];
		kb_conn *c = w->conn;

		c->inflight--;
		/* a batch item is always answered: its batch counts on it */
		if (c->fd >= 0 || w->batch) {
			if (rc == KB_OK)
				answer(b, j, w);
			else
				kb_reply_error(b, w, &j->err);
		}
		kb_conn_unref(c);
	}
}

void kb_job_finish(kb_broker *b, kb_job *j)
{
	finish(b, j);
	kb_job_free(j);
}

bool kb_job_finish_here(kb_broker *b, kb_job *j)
{
	if (j->work || !kb_loop_token_try(&b->token))
		return false;
	finish(b, j);
	/* the keyset's count is the loop's; the rest of the job is the worker's own */
	kb_keyset_unref(j->ks);
	j->ks = NULL;
	kb_loop_token_give(&b->token);
	kb_job_free(j); /* wiping a job takes microseconds: not while the loop may want the token */
	return true;
}
