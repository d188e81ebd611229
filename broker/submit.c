/*
 * submit.c: a job goes to a worker, or, for an unwrap on a backend that
 * does not block, starts on the loop and comes back to it (see submit.h).
 */
#include "finish.h"
#include "pool.h"
#include "run.h"
#include "submit.h"

static void unwrap_done(kb_async *a, kb_code rc)
{
	kb_job *j = a->ctx;

	kb_call_end(j, KB_BOP_UNWRAP, j->async_t0, rc);
	if (rc == KB_OK)
		kb_unwrap_done(j, j->async_len);
	kb_job_finish(j->broker, j);
}

void kb_job_submit(kb_broker *b, kb_job *j)
{
	kb_key *k = j->src;
	kb_async *a = &j->async;
	kb_code rc;

	if (j->op != KB_OP_UNWRAP || !k->async || k->ops->unwrap_start == NULL) {
		kb_pool_submit(b->pool, j);
		return;
	}
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
		kb_job_finish(b, j);
	}
}
