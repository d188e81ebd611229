/*
 * answer.c: audit, then hand the answer to the face (see answer.h).
 */
#include <string.h>

#include "answer.h"
#include "audit.h"
#include "log.h"

/* audited: nobody gets the answer of a connection that closed meanwhile, and it is not on record (a batch item is: its batch counts on it) */
static bool audited(const kb_waiter *w)
{
	return !w->conn->closed || w->batch_item;
}

void kb_answer_start(const kb_waiter *w, kb_answer *a)
{
	memset(a, 0, sizeof(*a));
	a->op = w->op;
	a->code = KB_OK;
	a->item = w->batch_item ? w->item : -1;
	a->id_json = w->id_json;
	a->key = w->key[0] ? w->key : NULL;
	a->cache = -1;
	a->reused = -1;
	a->flushed = -1;
}

void kb_answer_send(const kb_waiter *w, const kb_answer *a)
{
	w->reply.fn(w->reply.ctx, a);
}

static void send_error(const kb_waiter *w, const kb_err *err)
{
	kb_answer a;

	kb_answer_start(w, &a);
	a.code = err->code;
	a.err = err;
	a.request_id = err->request_id[0] ? err->request_id : NULL;
	kb_answer_send(w, &a);
}

void kb_reply_error(kb_broker *b, const kb_waiter *w, const kb_err *err)
{
	kb_err aerr;

	kb_loop_assert_owner();
	b->counters.errors[w->op]++;
	/* an error answer goes out even if the audit log is down: it does nothing */
	if (audited(w) && kb_audit_record(b->audit, w, err->code, NULL, -1, err->request_id, &aerr) != KB_OK)
		kb_log_err("%s", aerr.msg);
	send_error(w, err);
}

void kb_reply_code(kb_broker *b, const kb_waiter *w, kb_code code, const char *msg)
{
	kb_err err;

	kb_err_set(&err, code, "%s", msg);
	kb_reply_error(b, w, &err);
}

bool kb_answer_record(kb_broker *b, const kb_waiter *w, const char *version, int cache,
		      const char *request_id)
{
	kb_err err;

	kb_loop_assert_owner();
	if (w->op == KB_OP_STATUS || w->op == KB_OP_METRICS || !audited(w))
		return true;
	if (kb_audit_record(b->audit, w, KB_OK, version, cache, request_id, &err) != KB_OK) {
		kb_log_err("%s", err.msg);
		b->counters.errors[w->op]++;
		send_error(w, &err);
		return false;
	}
	return true;
}

void kb_answer_hit(kb_broker *b, const kb_waiter *w, const kb_key *k, const kb_cache_entry *e, bool stale)
{
	kb_answer a;

	kb_loop_assert_owner();
	if (!kb_answer_record(b, w, e->version, stale ? 2 : 1, NULL))
		return;
	kb_answer_start(w, &a);
	a.plaintext = e->dek;
	a.ptlen = e->deklen;
	a.key = k->conf->name;
	a.version = e->version;
	a.cache = stale ? 2 : 1;
	kb_answer_send(w, &a);
}
