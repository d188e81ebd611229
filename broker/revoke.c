/*
 * revoke.c: a reload's re-check of the open connections (see revoke.h).
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "audit.h"
#include "conn.h"
#include "jsonw.h"
#include "log.h"
#include "policy.h"
#include "revoke.h"

/* denied tells whether c's peer is refused now; if so it has audited and logged the close */
static bool denied(kb_broker *b, kb_conn *c, char *why, size_t cap)
{
	kb_err err;

	if (kb_policy_peer_allowed(b, c->uid, c->gid, why, cap))
		return false;
	if (kb_audit_revoked(b->audit, c, &err) != KB_OK)
		kb_log_err("reload: %s", err.msg);
	kb_warn("reload: closing a%s%s connection of uid %u gid %u pid %d (%s): %s", c->face[0] ? " " : "",
		c->face, (unsigned)c->uid, (unsigned)c->gid, (int)c->pid, c->exe[0] ? c->exe : "?", why);
	return true;
}

/*
 * close_revoked closes c, first saying why on an NDJSON connection when no
 * half-written answer is in the way (a KMS connection's socket is gRPC's to
 * write: its close, a shutdown, makes gRPC drop it).
 */
static void close_revoked(kb_conn *c, const char *why)
{
	kb_buf o = { 0 };
	kb_err err;

	if (c->face[0] == '\0' && !c->shared && c->out.len == 0) {
		kb_err_set(&err, KB_E_PERMISSION_DENIED, "%s: the broker's policy changed, the connection is closed", why);
		kb_jw_error(&o, "null", &err);
		if (o.data && send(c->fd, o.data, o.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			kb_debug("could not tell a revoked peer why");
		kb_buf_free(&o);
	}
	kb_conn_close(c);
}

void kb_revoke_recheck(kb_broker *b)
{
	char why[256];
	kb_conn *next;

	for (kb_conn *c = b->conns ? b->conns->list : NULL; c; c = next) {
		next = c->next;
		if (c->fd >= 0 && denied(b, c, why, sizeof(why)))
			close_revoked(c, why);
	}
}
