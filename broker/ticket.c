/*
 * ticket.c: answers that may outlive their face (see ticket.h).
 */
#include <stdlib.h>

#include "ticket.h"

struct kb_ticket {
	kb_tickets *set;      /* NULL once orphaned */
	void (*fn)(void *ctx, const kb_answer *a);
	void *ctx;
	kb_ticket *prev, *next;
};

static void unlink_ticket(kb_ticket *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		t->set->list = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->set = NULL;
}

static void answer(void *ctx, const kb_answer *a)
{
	kb_ticket *t = ctx;

	/* a batch would answer more than once: faces with tickets make none */
	if (t->set) {
		unlink_ticket(t);
		t->fn(t->ctx, a);
	}
	free(t);
}

bool kb_ticket_new(kb_tickets *ts, void (*fn)(void *ctx, const kb_answer *a), void *ctx, kb_reply *out)
{
	kb_ticket *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return false;
	t->set = ts;
	t->fn = fn;
	t->ctx = ctx;
	t->next = ts->list;
	if (ts->list)
		ts->list->prev = t;
	ts->list = t;
	*out = (kb_reply){ answer, t };
	return true;
}

void kb_ticket_drop(kb_reply r)
{
	kb_ticket *t = r.ctx;

	if (t->set)
		unlink_ticket(t);
	free(t);
}

void kb_tickets_orphan(kb_tickets *ts)
{
	while (ts->list) {
		kb_ticket *t = ts->list;
		void (*fn)(void *ctx, const kb_answer *a) = t->fn;
		void *ctx = t->ctx;

		unlink_ticket(t); /* freed by its answer, whenever that comes */
		fn(ctx, NULL);
	}
}
