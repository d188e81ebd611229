/*
 * answer.c: audit, then render, then send (see answer.h). A request inside
 * a batch renders into its item of the batch, which answers as a whole when
 * its last item is in.
 */
#include "answer.h"
#include "audit.h"
#include "batch.h"
#include "conn.h"
#include "jsonw.h"
#include "log.h"

static kb_buf *out_of(const kb_waiter *w)
{
	return w->batch ? kb_batch_item(w->batch, w->item) : &w->conn->out;
}

/* put_error renders err as w's answer (its batch item, or a line) and sends it on. */
static void put_error(const kb_waiter *w, const kb_err *err)
{
	if (w->batch) {
		kb_jw_item_error(out_of(w), err);
		kb_batch_item_done(w->batch, w->item);
		return;
	}
	kb_jw_error(&w->conn->out, w->id_json, err);
	kb_conn_send(w->conn);
}

void kb_reply_error(kb_broker *b, const kb_waiter *w, const kb_err *err)
{
	kb_err aerr;

	kb_loop_assert_owner();
	b->counters.errors[w->op]++;
	/* an error answer goes out even if the audit log is down: it does nothing */
	if (kb_audit_record(b->audit, w, err->code, NULL, -1, err->request_id, &aerr) != KB_OK)
		kb_log_err("%s", aerr.msg);
	put_error(w, err);
}

void kb_reply_code(kb_broker *b, const kb_waiter *w, kb_code code, const char *msg)
{
	kb_err err;

	kb_err_set(&err, code, "%s", msg);
	kb_reply_error(b, w, &err);
}

bool kb_answer_begin(kb_broker *b, const kb_waiter *w, const char *version, int cache,
		     const char *request_id)
{
	kb_err err;
	/* status and metrics only read the broker's own counters: not audited */
	bool audited = w->op != KB_OP_STATUS && w->op != KB_OP_METRICS;

	kb_loop_assert_owner();
	if (audited && kb_audit_record(b->audit, w, KB_OK, version, cache, request_id, &err) != KB_OK) {
		kb_log_err("%s", err.msg);
		b->counters.errors[w->op]++;
		put_error(w, &err);
		return false;
	}
	if (w->batch)
		kb_jw_raw(out_of(w), "{\"ok\":true");
	else
		kb_jw_begin(&w->conn->out, w->id_json);
	return true;
}

kb_buf *kb_answer_out(const kb_waiter *w)
{
	return out_of(w);
}

void kb_answer_end(kb_broker *b, const kb_waiter *w)
{
	(void)b;
	if (w->batch) {
		kb_jw_raw(out_of(w), "}");
		kb_batch_item_done(w->batch, w->item);
		return;
	}
	kb_jw_end(&w->conn->out);
	kb_conn_send(w->conn);
}

void kb_answer_hit(kb_broker *b, const kb_waiter *w, const kb_key *k, const kb_cache_entry *e, bool stale)
{
	kb_buf *o;

	kb_loop_assert_owner();
	if (!kb_answer_begin(b, w, e->version, stale ? 2 : 1, NULL))
		return;
	o = out_of(w);
	kb_jw_key(o, "plaintext");
	kb_jw_b64(o, e->dek, e->deklen);
	kb_jw_key(o, "key");
	kb_jw_str(o, k->conf->name);
	kb_jw_key(o, "version");
	kb_jw_str(o, e->version);
	kb_jw_raw(o, stale ? ",\"cached\":true,\"stale\":true" : ",\"cached\":true");
	kb_answer_end(b, w);
}
