/*
 * dispatch.h: the core's one entry for requests, from every face.
 *
 * A face builds a kb_request (request.h) naming its connection object and
 * submits it on the loop thread. What the loop can answer itself (status,
 * metrics, flush, cache hits, refusals) is answered at once, before
 * kb_core_submit returns, so a hit never waits behind a backend call.
 * Everything else becomes a job; concurrent misses for one blob share one
 * job (single flight). Every answer goes through answer.h, which writes the
 * audit line first, and reaches the face through reply, once per request
 * (once per item of a batch, with a->item set; a refusal of the whole
 * batch comes once, with item -1).
 */
#ifndef KB_DISPATCH_H
#define KB_DISPATCH_H

#include "broker.h"

/* kb_core_submit answers req (which the caller keeps and wipes) through reply. */
void kb_core_submit(kb_broker *b, const kb_request *req, kb_reply reply);

/* kb_core_fail answers req with err through reply, audited (a request its face could not parse). */
void kb_core_fail(kb_broker *b, const kb_request *req, const kb_err *err, kb_reply reply);

#endif
