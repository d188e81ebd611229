/*
 * ticket.h: a face's own requests to the core, whose answers may come after
 * the face stopped.
 *
 * A job keeps running when the face that asked for it stops (a reload, a
 * shutdown with a backend call in flight); its answer comes later, to a
 * callback whose context is gone. A ticket stands between: the core answers
 * the ticket, and the ticket calls the face only while the face is there.
 * When the face stops, kb_tickets_orphan calls every waiting callback once,
 * with NULL (the face then lets go of what the request held), and the
 * tickets' later answers are dropped. Loop thread only.
 */
#ifndef KB_TICKET_H
#define KB_TICKET_H

#include "broker.h"

typedef struct kb_ticket kb_ticket;

typedef struct kb_tickets {
	kb_ticket *list;   /* waiting for their answers */
} kb_tickets;

/*
 * kb_ticket_new makes *out a reply that calls fn(ctx, answer) once, unless
 * ts is orphaned first (then fn(ctx, NULL) runs at that time). Returns
 * false without memory.
 */
bool kb_ticket_new(kb_tickets *ts, void (*fn)(void *ctx, const kb_answer *a), void *ctx, kb_reply *out);

/*
 * kb_ticket_drop takes back the reply of kb_ticket_new when it was never
 * submitted (a submit is always answered: never after that).
 */
void kb_ticket_drop(kb_reply r);

/* kb_tickets_orphan answers every waiting ticket with NULL now; their answers are dropped later. */
void kb_tickets_orphan(kb_tickets *ts);

#endif
