/*
 * answer.h: the one way an answer reaches a client.
 *
 * Every answer goes through kb_answer_begin or kb_reply_error, which write
 * the audit line first, and ends in kb_conn_send.
 */
#ifndef KB_ANSWER_H
#define KB_ANSWER_H

#include "broker.h"

/*
 * kb_answer_begin audits a successful answer to w and starts its response
 * object in w->conn->out. Returns false, having answered audit_unavailable
 * instead, when the audit line cannot be written; the caller then stops.
 */
bool kb_answer_begin(kb_broker *b, const kb_waiter *w, const char *version, int cache,
		     const char *request_id);

/* kb_answer_out is where the fields of w's answer go, between begin and end. */
kb_buf *kb_answer_out(const kb_waiter *w);

/* kb_answer_end ends the response begun by kb_answer_begin and sends it. */
void kb_answer_end(kb_broker *b, const kb_waiter *w);

/* kb_reply_error audits and queues a failure response to w, and counts it. */
void kb_reply_error(kb_broker *b, const kb_waiter *w, const kb_err *err);

/* kb_reply_code is kb_reply_error with an error made of code and msg. */
void kb_reply_code(kb_broker *b, const kb_waiter *w, kb_code code, const char *msg);

/*
 * kb_answer_hit answers w from cache entry e of key k: the plaintext, key,
 * version and "cached":true, and "stale":true when stale (outage_grace
 * serves e past its TTL). The loop's hit path, outage grace and
 * bench/hitstep use it.
 */
void kb_answer_hit(kb_broker *b, const kb_waiter *w, const kb_key *k, const kb_cache_entry *e, bool stale);

#endif
