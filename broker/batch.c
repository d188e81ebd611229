/*
 * batch.c: the answer of a batch request, assembled in order (see batch.h).
 */
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "conn.h"
#include "jsonw.h"

struct kb_batch {
	kb_conn *conn;
	char id_json[KB_ID_JSON_MAX];
	int n;
	int pending;       /* items not yet answered, plus the dispatcher's hold */
	kb_buf items[];    /* plaintexts pass through here: kb_buf wipes them */
};

kb_batch *kb_batch_new(const kb_waiter *w, int n)
{
	kb_batch *bt = calloc(1, sizeof(*bt) + sizeof(kb_buf) * (size_t)n);

	if (bt == NULL)
		return NULL;
	bt->conn = w->conn;
	memcpy(bt->id_json, w->id_json, sizeof(bt->id_json));
	bt->n = n;
	bt->pending = n + 1;
	bt->conn->refs++;
	bt->conn->inflight++;
	return bt;
}

kb_buf *kb_batch_item(kb_batch *bt, int i)
{
	return &bt->items[i];
}

void kb_batch_item_done(kb_batch *bt, int i)
{
	kb_conn *c = bt->conn;
	kb_buf *o = &c->out;

	(void)i;
	if (--bt->pending > 0)
		return;
	c->inflight--;
	if (c->fd >= 0) {
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
