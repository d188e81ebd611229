/*
 * inbox.h: work handed to the loop thread from any other thread.
 *
 * A face whose library runs its own threads (gRPC's now; libmicrohttpd's for
 * the EKM and XKS faces) never touches loop state: it posts an item here,
 * and the loop takes it (the take callback, on the loop thread, oldest
 * first) when the inbox's eventfd wakes it. The face answers from its
 * callback on the loop thread, through a library call that may be made from
 * any thread. The inbox holds at most max items: a post beyond that, or after
 * kb_inbox_close, is refused, and the poster answers the item itself (busy,
 * or shutting down), so no peer can grow it without bound.
 *
 * kb_inbox_post: any thread. Everything else: the loop thread.
 */
#ifndef KB_INBOX_H
#define KB_INBOX_H

#include <stdbool.h>
#include <stddef.h>

#include "backend.h"

typedef struct kb_inbox kb_inbox;

/* the link an item carries (its first member, or reached through it) */
typedef struct kb_inbox_item {
	struct kb_inbox_item *next;
} kb_inbox_item;

/* kb_inbox_post results */
typedef enum kb_inbox_rc { KB_INBOX_POSTED = 0, KB_INBOX_FULL, KB_INBOX_CLOSED } kb_inbox_rc;

/*
 * kb_inbox_new makes an inbox of at most max items, watched with io, that
 * hands each item to take(ctx, item). Returns KB_OK or an error.
 */
kb_code kb_inbox_new(const kb_io *io, size_t max, void (*take)(void *ctx, kb_inbox_item *item), void *ctx,
		     kb_inbox **out, kb_err *err);

/* kb_inbox_post queues item for the loop (any thread); on FULL or CLOSED the item stays the caller's. */
kb_inbox_rc kb_inbox_post(kb_inbox *in, kb_inbox_item *item);

/*
 * kb_inbox_close refuses every later post and returns the items still
 * queued, oldest first, for the caller to answer.
 */
kb_inbox_item *kb_inbox_close(kb_inbox *in);

/* kb_inbox_free ends the watch and frees in (NULL is fine); close it first. */
void kb_inbox_free(kb_inbox *in);

#endif
