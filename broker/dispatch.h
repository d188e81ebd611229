/*
 * dispatch.h: turns request lines into answers.
 *
 * Runs on the event loop. What the loop can answer itself (status, metrics,
 * flush, cache hits, errors) is answered at once, so a hit never waits behind
 * a backend call. Everything else becomes a job for the worker pool; concurrent
 * misses for one blob share one job (single flight).
 */
#ifndef KB_DISPATCH_H
#define KB_DISPATCH_H

#include "broker.h"

/* kb_dispatch handles one request line (without its newline) from c. */
void kb_dispatch(kb_broker *b, kb_conn *c, const char *line, size_t n);

/* kb_job_finish folds a finished job into the cache and counters and answers its waiters. */
void kb_job_finish(kb_broker *b, kb_job *j);

/* kb_reply_error queues a failure response on c and counts it. */
void kb_reply_error(kb_broker *b, kb_conn *c, kb_op op, const char *id_json, const kb_err *err);

#endif
