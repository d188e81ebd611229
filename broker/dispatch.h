/*
 * dispatch.h: turns request lines into answers.
 *
 * Runs on the event loop. What the loop can answer itself (status, metrics,
 * flush, cache hits, errors) is answered at once, so a hit never waits behind
 * a backend call. Everything else becomes a job for the worker pool; concurrent
 * misses for one blob share one job (single flight). Every answer goes through
 * kb_answer_begin or kb_reply_error, which write the audit line first.
 */
#ifndef KB_DISPATCH_H
#define KB_DISPATCH_H

#include "broker.h"

/* kb_dispatch handles one request line (without its newline) from c. */
void kb_dispatch(kb_broker *b, kb_conn *c, const char *line, size_t n);

/* kb_job_finish folds a finished job into the cache and counters and answers its waiters. */
void kb_job_finish(kb_broker *b, kb_job *j);

/*
 * kb_answer_begin audits a successful answer to w and starts its response
 * object in w->conn->out. Returns false, having answered audit_unavailable
 * instead, when the audit line cannot be written; the caller then stops.
 */
bool kb_answer_begin(kb_broker *b, const kb_waiter *w, const char *version, int cache,
		     const char *request_id);

/* kb_answer_end ends the response begun by kb_answer_begin and sends it. */
void kb_answer_end(kb_broker *b, const kb_waiter *w);

/* kb_reply_error audits and queues a failure response to w, and counts it. */
void kb_reply_error(kb_broker *b, const kb_waiter *w, const kb_err *err);

#endif
