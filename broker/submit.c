/*
 * submit.c: a job goes to a worker; or, for an unwrap on a backend that
 * does not block, starts on the loop and comes back to it; or, on an idle
 * broker, is a short call the loop makes itself (see submit.h).
 */
#include "finish.h"
#include "keyprint.h"
#include "outage.h"
#include "schedule.h"
#include "pool.h"
#include "run.h"
#include "submit.h"

static void unwrap_done(kb_async *a, kb_code rc)
{
	kb_job *j = a->ctx;
	kb_broker *b = j->broker;

	kb_call_end(j, KB_BOP_UNWRAP, j->async_t0, rc);
	b->loopcall.wait_until_us = 0;
	if (rc == KB_OK) {
		kb_unwrap_done(j, j->async_len);
		atomic_fetch_add(&j->src->unwraps_current, 1);
	}
	kb_job_finish(b, j);
	/* the client's next request is likely a round trip away: meet it awake (schedule.h) */
	b->loopcall.ran_at_us = kb_now_us();
}

/*
 * on_loop_ok says whether the loop makes j's call itself (schedule.h): one
 * request's unwrap, on a key whose unwraps have been short, while the broker
 * has nothing else to do.
 */
static bool on_loop_ok(kb_broker *b, const kb_job *j)
{
	const kb_key *k = j->src;

	return j->op == KB_OP_UNWRAP && !j->refresh && j->work == NULL && j->nwaiters == 1 &&
	       !j->waiters[0].batch_item && k != NULL && !k->async &&
	       kb_loopcall_ok(&b->loopcall, kb_now_us(), k->unwrap_avg_us, b->cfg->loop_call_max_us,
			      kb_pool_idle(b->pool));
}

/*
 * waited_avg is the average call time of j's key if a client waits for j's
 * unwrap, else 0 (no one to answer soon: a refresh, a wrap, a rotation).
 */
static int64_t waited_avg(const kb_job *j)
{
	return j->op == KB_OP_UNWRAP && !j->refresh && j->src != NULL ? j->src->unwrap_avg_us : 0;
}

/*
 * expect_answer lets the loop wait awake for j if its one client waits for
 * it and the loop has a CPU of its own beside the busy workers (schedule.h).
 */
static void expect_answer(kb_broker *b, const kb_job *j, bool pool)
{
	if (kb_loopcall_expect(&b->loopcall, kb_now_us(), kb_pool_loop_fits(b->pool) ? waited_avg(j) : 0,
			       b->cfg->loop_wait_max_us, pool))
		b->counters.loop_waits++;
}

void kb_job_submit(kb_broker *b, kb_job *j)
{
	kb_key *k = j->src;
	kb_async *a = &j->async;
	void *state = NULL;
	int where = -1;
	kb_code rc;

	kb_loop_assert_owner();
	/* a key whose service is down answers at once (outage.h); doctor explains it on a worker */
	if (j->op != KB_OP_DOCTOR && (kb_outage_refuse(j->src, &j->err) != KB_OK || kb_outage_refuse(j->key, &j->err) != KB_OK)) {
		kb_job_finish(b, j);
		return;
	}
	if (on_loop_ok(b, j)) {
		/* no job is with the workers, so slot 0 and its sessions are free */
		b->loopcall.turn_ok = false;
		b->counters.loop_calls++;
		kb_job_run(b, j, 0);
		b->loopcall.ran_at_us = kb_now_us();
		kb_job_finish(b, j);
		return;
	}
	/*
	 * on the loop, the control slot (backend.h) is free: a fingerprint is
	 * made there once; a blob of a previous location goes to a worker
	 */
	if (j->op == KB_OP_UNWRAP && k->async && k->ops->unwrap_start &&
	    kb_keyprint_locate(k, b->cfg->workers, &j->blob, &state, &where, &j->err) != KB_OK) {
		kb_job_finish(b, j);
		return;
	}
	if (j->op != KB_OP_UNWRAP || !k->async || k->ops->unwrap_start == NULL || where >= 0) {
		expect_answer(b, j, true);
		kb_pool_submit(b->pool, j, j->nwaiters > 0 ? j->waiters[0].conn->uid : b->uid);
		return;
	}
	expect_answer(b, j, false);
	j->broker = b;
	j->async_len = sizeof(j->pt);
	*a = (kb_async){ .version = j->blob.version, .alg = j->blob.alg, .in = j->blob.ct,
			 .inlen = j->blob.ctlen, .out = j->pt, .outlen = &j->async_len,
			 .err = &j->err, .done = unwrap_done, .ctx = j };
	kb_err_clear(&j->err);
	j->async_t0 = kb_call_begin();
	rc = k->ops->unwrap_start(k->state, a);
	if (rc != KB_OK) {
		kb_call_end(j, KB_BOP_UNWRAP, j->async_t0, rc);
		b->loopcall.wait_until_us = 0; /* nothing is out to wait for */
		kb_job_finish(b, j);
	}
}
