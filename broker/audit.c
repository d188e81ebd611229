#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "jsonw.h"

struct kb_audit {
	char *path;
	int fd;
	kb_buf line;
};

static kb_code open_fd(kb_audit *a, kb_err *err)
{
	int fd;

	if (strcmp(a->path, "-") == 0) {
		a->fd = STDERR_FILENO;
		return KB_OK;
	}
	fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return kb_err_set(err, KB_E_AUDIT_UNAVAILABLE, "cannot open the audit log %s: %s", a->path,
				  strerror(errno));
	if (a->fd > STDERR_FILENO)
		close(a->fd);
	a->fd = fd;
	return KB_OK;
}

kb_code kb_audit_open(const char *path, kb_audit **out, kb_err *err)
{
	kb_audit *a = calloc(1, sizeof(*a));
	kb_code rc;

	if (a == NULL || (a->path = strdup(path)) == NULL) {
		free(a);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	a->fd = -1;
	if ((rc = open_fd(a, err)) != KB_OK) {
		kb_audit_close(a);
		return rc;
	}
	*out = a;
	return KB_OK;
}

kb_code kb_audit_reopen(kb_audit *a, kb_err *err)
{
	return a ? open_fd(a, err) : KB_OK;
}

void kb_audit_close(kb_audit *a)
{
	if (a == NULL)
		return;
	if (a->fd > STDERR_FILENO)
		close(a->fd);
	kb_buf_free(&a->line);
	free(a->path);
	free(a);
}

static void put_time(kb_buf *o)
{
	struct timespec ts;
	struct tm tm;
	char t[40];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(t + strlen(t), sizeof(t) - strlen(t), ".%03ldZ", ts.tv_nsec / 1000000);
	kb_jw_str(o, t);
}

/* write_line writes one record; result is the code's name, or "started". */
static kb_code write_line(kb_audit *a, const kb_waiter *w, const char *op, const char *result,
			  const char *version, int cache, const char *request_id, kb_err *err)
{
	static const char hex[] = "0123456789abcdef";
	const kb_conn *c = w->conn;
	kb_buf *o;
	ssize_t n;

	if (a == NULL)
		return KB_OK;
	o = &a->line;
	kb_buf_consume(o, o->len);
	kb_jw_raw(o, "{\"time\":");
	put_time(o);
	kb_jw_key(o, "uid");
	kb_jw_i64(o, c->uid);
	kb_jw_key(o, "gid");
	kb_jw_i64(o, c->gid);
	kb_jw_key(o, "pid");
	kb_jw_i64(o, c->pid);
	kb_jw_key(o, "exe");
	kb_jw_str(o, c->exe);
	if (c->face[0]) {
		/* a request the broker makes for another face: its id carries that face's request id */
		kb_jw_key(o, "face");
		kb_jw_str(o, c->face);
		kb_jw_key(o, "request");
		kb_jw_raw(o, w->id_json);
	}
	kb_jw_key(o, "op");
	kb_jw_str(o, op);
	kb_jw_key(o, "key");
	if (w->key[0])
		kb_jw_str(o, w->key);
	else
		kb_jw_raw(o, "null");
	kb_jw_key(o, "version");
	if (version && *version)
		kb_jw_str(o, version);
	else
		kb_jw_raw(o, "null");
	kb_jw_key(o, "blob_sha256");
	if (w->has_digest) {
		char d[33];
		for (int i = 0; i < 16; i++) {
			d[2 * i] = hex[w->digest[i] >> 4];
			d[2 * i + 1] = hex[w->digest[i] & 15];
		}
		d[32] = '\0';
		kb_jw_str(o, d);
	} else {
		kb_jw_raw(o, "null");
	}
	kb_jw_key(o, "result");
	kb_jw_str(o, result);
	kb_jw_key(o, "cache");
	kb_jw_raw(o, cache < 0 ? "null" : cache == 2 ? "\"stale\"" : cache ? "\"hit\"" : "\"miss\"");
	kb_jw_key(o, "latency_us");
	kb_jw_i64(o, kb_now_us() - w->start_us);
	kb_jw_key(o, "request_id");
	if (request_id && *request_id)
		kb_jw_str(o, request_id);
	else
		kb_jw_raw(o, "null");
	kb_jw_raw(o, "}\n");
	if (o->oom)
		return kb_err_set(err, KB_E_AUDIT_UNAVAILABLE, "out of memory writing the audit log");
	/* one write per line: O_APPEND keeps lines whole */
	n = write(a->fd, o->data, o->len);
	if (n != (ssize_t)o->len)
		return kb_err_set(err, KB_E_AUDIT_UNAVAILABLE,
				  "cannot write the audit log %s (%s): the answer is withheld; free space or fix the log, then retry",
				  a->path, n < 0 ? strerror(errno) : "short write");
	return KB_OK;
}

kb_code kb_audit_record(kb_audit *a, const kb_waiter *w, kb_code code, const char *version,
			int cache, const char *request_id, kb_err *err)
{
	return write_line(a, w, w->op ? kb_op_name(w->op) : "unparsed", kb_code_name(code), version, cache,
			  request_id, err);
}

kb_code kb_audit_intent(kb_audit *a, const kb_waiter *w, kb_err *err)
{
	return write_line(a, w, w->op ? kb_op_name(w->op) : "unparsed", "started", NULL, -1, NULL, err);
}

kb_code kb_audit_revoked(kb_audit *a, kb_conn *c, kb_err *err)
{
	kb_waiter w = { .conn = c, .id_json = "null", .start_us = kb_now_us() };

	return write_line(a, &w, "disconnect", kb_code_name(KB_E_PERMISSION_DENIED), NULL, -1, NULL, err);
}
