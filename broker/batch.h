/*
 * batch.h: the NDJSON face's answer to one line that carries many blobs
 * ("blobs": [...]).
 *
 * The core answers each item like a request of its own (cache, single
 * flight, policy, audit), through kb_batch_reply with the item's index;
 * the batch keeps each rendered item and, when the last is in, answers the
 * line once, in request order: {"id":..,"ok":true,"results":[...]}. A
 * refusal of the whole batch (item -1) is the line's answer instead. A
 * batch holds one reference to its connection and counts as one request in
 * flight on it while it waits. Loop thread only.
 */
#ifndef KB_BATCH_H
#define KB_BATCH_H

#include "broker.h"

typedef struct kb_batch kb_batch;

/*
 * kb_batch_new returns a batch of n items answering the line id_json of c,
 * or NULL without memory. The caller submits the request with
 * kb_batch_reply and bt, then calls kb_batch_release once: so a batch whose
 * items are all answered at once still answers exactly once.
 */
kb_batch *kb_batch_new(kb_conn *c, const char *id_json, int n);

/* kb_batch_reply is the kb_reply function of a batch (ctx: the batch). */
void kb_batch_reply(void *ctx, const kb_answer *a);

/* kb_batch_release lets go of the caller's hold; the last answer sends and frees the batch. */
void kb_batch_release(kb_batch *bt);

#endif
