/*
 * inproc.h: requests that the broker makes of its own dispatcher.
 *
 * The KMS face and the health checks speak protocol v1 to kb_dispatch, so
 * they go through the very path a client does: policy, the cache, single
 * flight, TTL as the revocation point, limits, audit and the counters. An
 * inproc is one connection, owned by the loop, with the credentials of the
 * peer it stands for; its answers come back over a socketpair and are handed
 * to each request's callback as parsed JSON. The loop's thread only, or a
 * thread that holds the loop token while the loop sleeps (finish.h).
 */
#ifndef KB_INPROC_H
#define KB_INPROC_H

#include <cjson/cJSON.h>

#include "broker.h"

typedef struct kb_inproc kb_inproc;

/*
 * The callback of one request: answer is the parsed answer line ({"ok":...}),
 * or NULL when the connection failed before it came. It is freed (wiped) after
 * the callback returns.
 */
typedef void (*kb_inproc_cb)(void *ctx, const cJSON *answer);

/*
 * kb_inproc_open makes a connection to b's dispatcher for the peer uid/gid/pid
 * (exe names it in the audit log, and face the face it serves, "" for none),
 * using io's watches. Returns KB_OK or an error.
 */
kb_code kb_inproc_open(kb_broker *b, const kb_io *io, uid_t uid, gid_t gid, pid_t pid,
		       const char *exe, const char *face, kb_inproc **out, kb_err *err);

/*
 * kb_inproc_request dispatches one request whose fields (after the id) are
 * fields, e.g. "\"op\":\"unwrap\",\"blob\":\"...\"". tag (NULL: none; up
 * to 100 bytes are kept) goes into the request's id, which the audit log
 * records for a face's connection: the face's own request id. cb runs once,
 * later, never from inside this call. The caller wipes fields. Returns
 * KB_OK, or KB_E_INTERNAL without memory (cb never runs).
 */
kb_code kb_inproc_request(kb_inproc *p, const kb_buf *fields, const char *tag, kb_inproc_cb cb,
			  void *ctx);

/*
 * kb_inproc_request_now is kb_inproc_request, except that an answer the
 * dispatcher makes at once (a cache hit, a refusal) is taken without the
 * socketpair, and cb runs before this returns; an answer that waits for a
 * job comes later as before. For callers that may be called back from here.
 */
kb_code kb_inproc_request_now(kb_inproc *p, const kb_buf *fields, const char *tag, kb_inproc_cb cb,
			      void *ctx);

/*
 * kb_inproc_ok tells whether answer says ok; if not, *code and *msg (when
 * not NULL) get its error's code name and message ("internal" and a note
 * when the connection failed).
 */
bool kb_inproc_ok(const cJSON *answer, const char **code, const char **msg);

/* kb_inproc_str returns answer's string field name, or NULL. */
const char *kb_inproc_str(const cJSON *answer, const char *name);

/* kb_inproc_set_pid names the process the next requests are made for. */
void kb_inproc_set_pid(kb_inproc *p, pid_t pid);

/* kb_inproc_close calls every pending callback with NULL and frees p (NULL is fine). */
void kb_inproc_close(kb_inproc *p);

#endif
