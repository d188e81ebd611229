/*
 * render.c: answers as protocol v1 JSON (see render.h).
 */
#include <string.h>

#include "jsonw.h"
#include "render.h"
#include "report.h"

static void write_info(kb_buf *o, const char *backend, const kb_key_info *info)
{
	kb_jw_key(o, "backend");
	kb_jw_str(o, backend);
	kb_jw_key(o, "alg");
	kb_jw_str(o, kb_alg_name(info->alg));
	kb_jw_key(o, "kty");
	kb_jw_str(o, info->kty);
	kb_jw_key(o, "bits");
	kb_jw_i64(o, info->bits);
	kb_jw_raw(o, info->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
	kb_jw_key(o, "latest");
	kb_jw_str(o, info->latest);
	kb_jw_key(o, "versions");
	kb_jw_raw(o, "[");
	for (int i = 0; i < info->nversions; i++) {
		const kb_version_info *v = &info->versions[i];
		kb_jw_raw(o, i ? ",{\"version\":" : "{\"version\":");
		kb_jw_str(o, v->version);
		kb_jw_raw(o, v->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
		kb_jw_raw(o, strcmp(v->version, info->latest) ? ",\"latest\":false" : ",\"latest\":true");
		if (v->created) {
			kb_jw_key(o, "created");
			kb_jw_i64(o, v->created);
		}
		if (v->not_before) {
			kb_jw_key(o, "nbf");
			kb_jw_i64(o, v->not_before);
		}
		if (v->expires) {
			kb_jw_key(o, "exp");
			kb_jw_i64(o, v->expires);
		}
		kb_jw_raw(o, "}");
	}
	kb_jw_raw(o, "]");
	if (info->key_ops[0]) {
		kb_jw_key(o, "key_ops");
		kb_jw_str(o, info->key_ops);
	}
	if (info->detail[0]) {
		kb_jw_key(o, "detail");
		kb_jw_str(o, info->detail);
	}
	if (info->public_pem) {
		kb_jw_key(o, "public_key_pem");
		kb_jw_str(o, info->public_pem);
	}
}

/* fields writes the fields of a successful answer after "ok":true */
static void fields(kb_buf *o, const kb_answer *a)
{
	if (a->report) {
		if (a->op == KB_OP_METRICS)
			kb_report_metrics(a->report, o);
		else
			kb_report_status(a->report, o);
		return;
	}
	if (a->plaintext) {
		kb_jw_key(o, "plaintext");
		kb_jw_b64(o, a->plaintext, a->ptlen);
	}
	if (a->blob) {
		kb_jw_key(o, "blob");
		kb_jw_str(o, a->blob);
	}
	if (a->checks) {
		kb_jw_key(o, "checks");
		kb_jw_raw(o, "[");
		kb_buf_append(o, a->checks->data, a->checks->len);
		kb_jw_raw(o, "]");
		kb_jw_key(o, "result");
		kb_jw_str(o, a->result);
	}
	if (a->key) {
		kb_jw_key(o, "key");
		kb_jw_str(o, a->key);
	}
	if (a->info)
		write_info(o, a->backend, a->info);
	else if (a->version) {
		kb_jw_key(o, "version");
		kb_jw_str(o, a->version);
	}
	if (a->cache >= 0)
		kb_jw_raw(o, a->cache == 2 ? ",\"cached\":true,\"stale\":true" : a->cache ? ",\"cached\":true" : ",\"cached\":false");
	if (a->reused >= 0)
		kb_jw_raw(o, a->reused ? ",\"reused\":true" : ",\"reused\":false");
	if (a->flushed >= 0) {
		kb_jw_key(o, "flushed");
		kb_jw_i64(o, a->flushed);
	}
}

void kb_render_line(kb_buf *o, const kb_answer *a)
{
	if (a->code != KB_OK) {
		kb_jw_error(o, a->id_json, a->err);
		return;
	}
	kb_jw_begin(o, a->id_json);
	fields(o, a);
	kb_jw_end(o);
}

void kb_render_item(kb_buf *o, const kb_answer *a)
{
	if (a->code != KB_OK) {
		kb_jw_item_error(o, a->err);
		return;
	}
	kb_jw_raw(o, "{\"ok\":true");
	fields(o, a);
	kb_jw_raw(o, "}");
}
