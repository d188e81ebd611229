/*
 * batch.c: the answer of a batch request, assembled in order (see batch.h).
 */
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "conn.h"
#include "jsonw.h"
#include "render.h"

struct kb_batch {
	kb_conn *conn;
	char id_json[KB_ID_JSON_MAX];
	int n;
	int pending;       /* items not yet answered, plus the caller's hold */
	bool counted;      /* counted in conn->inflight */
	bool refused;      /* the whole batch was answered with an error */
	kb_buf items[];    /* plaintexts pass through here: kb_buf wipes them */
};

kb_batch *kb_batch_new(kb_conn *c, const char *id_json, int n)
{
	kb_batch *bt = calloc(1, sizeof(*bt) + sizeof(kb_buf) * (size_t)n);

	if (bt == NULL)
		return NULL;
	bt->conn = c;
	memcpy(bt->id_json, id_json, sizeof(bt->id_json));
	bt->n = n;
	bt->pending = n + 1;
	c->refs++;
	return bt;
}

static void done(kb_batch *bt)
{
	kb_conn *c = bt->conn;
	kb_buf *o = &c->out;

	if (--bt->pending > 0)
		return;
	if (bt->counted)
		c->inflight--;
	if (!bt->refused && !c->closed) {
		kb_jw_begin(o, bt->id_json);
		kb_jw_raw(o, ",\"results\":[");
		for (int k = 0; k < bt->n; k++) {
			if (k)
				kb_buf_append(o, ",", 1);
			kb_buf_append(o, bt->items[k].data, bt->items[k].len);
		}
		kb_jw_raw(o, "]");
		kb_jw_end(o);
	}
	for (int k = 0; k < bt->n; k++)
		kb_buf_free(&bt->items[k]);
	free(bt);
	kb_conn_send(c);
	kb_conn_unref(c);
}

void kb_batch_reply(void *ctx, const kb_answer *a)
{
	kb_batch *bt = ctx;

	if (a->item < 0) {
		/* refused as a whole, before any item started: only the caller's hold is left */
		kb_render_line(&bt->conn->out, a);
		bt->refused = true;
		bt->pending = 1;
		return;
	}
	kb_render_item(&bt->items[a->item], a);
	done(bt);
}

void kb_batch_release(kb_batch *bt)
{
	if (bt->pending > 1 && !bt->refused) {
		bt->conn->inflight++; /* it waits: one request in flight on its connection */
		bt->counted = true;
	}
	done(bt);
}
