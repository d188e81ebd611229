/*
 * audit.h: the audit log, one JSON line per operation.
 *
 * Each line is written before the answer leaves. It records the time, the
 * peer (uid, gid, pid, executable), the operation, key and version, a digest
 * of the blob (never the blob, never a plaintext), the result code, hit or
 * miss, the latency and the key service's request id. If a line cannot be
 * written the operation fails with audit_unavailable, so nothing happens off
 * the record.
 */
#ifndef KB_AUDIT_H
#define KB_AUDIT_H

#include "broker.h"

typedef struct kb_audit kb_audit;

/* kb_audit_open opens path for appending ("-": stderr). */
kb_code kb_audit_open(const char *path, kb_audit **out, kb_err *err);

/* kb_audit_reopen reopens the same path (after logrotate moved it). */
kb_code kb_audit_reopen(kb_audit *a, kb_err *err);

/* kb_audit_close closes a (NULL is fine). */
void kb_audit_close(kb_audit *a);

/*
 * kb_audit_record writes the line for request w with result code. version
 * and request_id may be NULL; cache is 1 (hit), 2 (a stale hit: outage
 * grace), 0 (miss) or -1 (not an unwrap). Returns KB_OK, or KB_E_AUDIT_UNAVAILABLE with err filled. With no
 * audit log configured (a == NULL) it does nothing.
 */
kb_code kb_audit_record(kb_audit *a, const kb_waiter *w, kb_code code, const char *version,
			int cache, const char *request_id, kb_err *err);

/*
 * kb_audit_intent writes a line with result "started" for w, before an
 * operation that changes the key service (rotate) is begun, so that it is
 * never done off the record. Returns as kb_audit_record.
 */
kb_code kb_audit_intent(kb_audit *a, const kb_waiter *w, kb_err *err);

/*
 * kb_audit_revoked writes the line for connection c closed because the policy
 * no longer allows its peer (a reload): op "disconnect", result
 * permission_denied. Returns as kb_audit_record.
 */
kb_code kb_audit_revoked(kb_audit *a, kb_conn *c, kb_err *err);

#endif
