/*
 * dispatch.h: turns request lines into answers.
 *
 * Runs on the event loop. What the loop can answer itself (status, metrics,
 * flush, cache hits, errors) is answered at once, so a hit never waits behind
 * a backend call. Everything else becomes a job for the worker pool; concurrent
 * misses for one blob share one job (single flight). Every answer goes through
 * answer.h, which writes the audit line first.
 */
#ifndef KB_DISPATCH_H
#define KB_DISPATCH_H

#include "broker.h"

/* kb_dispatch handles one request line (without its newline) from c. */
void kb_dispatch(kb_broker *b, kb_conn *c, const char *line, size_t n);

#endif
