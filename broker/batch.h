/*
 * batch.h: one request line that carries many blobs ("blobs": [...]).
 *
 * Each item is answered like a request of its own (cache, single flight,
 * policy, audit), into its own slot; when the last item is in, the batch
 * answers once, in request order: {"id":..,"ok":true,"results":[...]}.
 * A batch holds one reference to its connection and counts as one request
 * in flight on it. Runs on the loop thread.
 */
#ifndef KB_BATCH_H
#define KB_BATCH_H

#include "broker.h"

/*
 * kb_batch_new returns a batch of n items answering w (which it copies), or
 * NULL without memory. The caller answers every item, then calls
 * kb_batch_item_done once more with item -1 to release its own hold: so a
 * batch whose items are all answered at once still answers exactly once.
 */
kb_batch *kb_batch_new(const kb_waiter *w, int n);

/* kb_batch_item is item i's output buffer. */
kb_buf *kb_batch_item(kb_batch *bt, int i);

/* kb_batch_item_done marks item i answered (-1: the dispatcher's hold); the last one sends and frees the batch. */
void kb_batch_item_done(kb_batch *bt, int i);

#endif
