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
#include "keys.h"
#include "jsonw.h"
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
		b->counters.stale_answers++;
		kb_answer_hit(b, w, src, e, true);
		kb_conn_unref(c);
	}
	j->nwaiters = 0;
	return true;
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

/* answer delivers j's result to one request that waited on it */
static void answer(kb_broker *b, const kb_job *j, const kb_waiter *waiter)
{
	const kb_key *k = j->op == KB_OP_UNWRAP ? j->src : j->key;
	kb_waiter issued = *waiter, *w = &issued;
	kb_answer a;

	/* a wrap, datakey or rewrap is recorded under the blob it hands out */
	if (j->blob_out[0]) {
		kb_sha256((const uint8_t *)j->blob_out, strlen(j->blob_out), issued.digest);
		issued.has_digest = true;
	}
	if (!kb_answer_record(b, w, j->version, j->op == KB_OP_UNWRAP ? 0 : -1, j->err.request_id))
		return;
	kb_answer_start(w, &a);
	if (j->op == KB_OP_UNWRAP || j->op == KB_OP_DATAKEY) {
		a.plaintext = j->pt;
		a.ptlen = j->ptlen;
	}
	a.blob = j->blob_out[0] ? j->blob_out : NULL;
	if (j->op == KB_OP_DOCTOR) {
		a.checks = &j->text;
		a.result = doctor_result(&j->text);
	}
	a.key = k->conf->name;
	if (j->op == KB_OP_GET) {
		a.info = j->info;
		a.backend = k->ops->name;
	} else if (j->version[0]) {
		a.version = j->version;
	}
	a.request_id = j->err.request_id[0] ? j->err.request_id : NULL;
	if (j->op == KB_OP_UNWRAP)
		a.cache = 0;
	if (j->op == KB_OP_DATAKEY)
		a.reused = 0;
	kb_answer_send(w, &a);
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
		/* every request is answered, to a closed connection too: its face lets go of what it holds (answer.h) */
		if (rc == KB_OK)
			answer(b, j, w);
		else
			kb_reply_error(b, w, &j->err);
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
