/*
 * ndjson.c: the NDJSON face (see ndjson.h).
 */
#include "batch.h"
#include "conn.h"
#include "dispatch.h"
#include "ndjson.h"
#include "render.h"

/* reply renders one answer as its line and sends it (ctx: the connection) */
static void reply(void *ctx, const kb_answer *a)
{
	kb_conn *c = ctx;

	kb_render_line(&c->out, a);
	kb_conn_send(c);
}

kb_reply kb_ndjson_reply(kb_conn *c)
{
	return (kb_reply){ reply, c };
}

void kb_ndjson_line(kb_broker *b, kb_conn *c, const char *line, size_t n)
{
	static __thread kb_request req; /* large: off the stack; one per thread, and the loop is one */
	kb_reply to = { reply, c };
	kb_batch *bt;
	kb_err err;

	if (kb_proto_parse(line, n, &req, &err) != KB_OK) {
		req.conn = c;
		kb_core_fail(b, &req, &err, to);
	} else if (req.nblobs < 0) {
		req.conn = c;
		kb_core_submit(b, &req, to);
	} else if ((bt = kb_batch_new(c, req.id_json, req.nblobs)) == NULL) {
		kb_err_set(&err, KB_E_INTERNAL, "out of memory: the broker could not take the batch");
		req.conn = c;
		kb_core_fail(b, &req, &err, to);
	} else {
		req.conn = c;
		kb_core_submit(b, &req, (kb_reply){ kb_batch_reply, bt });
		kb_batch_release(bt);
	}
	kb_request_wipe(&req);
}

void kb_ndjson_too_large(kb_broker *b, kb_conn *c)
{
	kb_request req = { .op = KB_OP_NONE, .id_json = "null", .nblobs = -1, .conn = c };
	kb_err err;

	kb_err_set(&err, KB_E_TOO_LARGE,
		   "the request line is longer than max_request_bytes (%zu): the connection is closed",
		   b->cfg->max_request_bytes);
	kb_buf_consume(&c->in, c->in.len);
	c->close_after_flush = true;
	kb_core_fail(b, &req, &err, (kb_reply){ reply, c });
	if (c->fd >= 0)
		kb_conn_update_events(c);
}
