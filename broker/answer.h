/*
 * answer.h: the one way the core answers a request.
 *
 * Every answer is audited first (kb_answer_record, or inside
 * kb_reply_error), then made into a kb_answer (request.h) and handed to the
 * face through the request's kb_reply (kb_answer_send). The face renders it.
 * Loop thread only.
 */
#ifndef KB_ANSWER_H
#define KB_ANSWER_H

#include "broker.h"

/*
 * kb_answer_record audits a successful answer to w. Returns false, having
 * answered audit_unavailable instead, when the audit line cannot be
 * written; the caller then stops. Status and metrics are not audited (they
 * read the broker's own counters), nor the answers to a connection that
 * closed meanwhile (nobody gets them).
 */
bool kb_answer_record(kb_broker *b, const kb_waiter *w, const char *version, int cache,
		      const char *request_id);

/* kb_answer_start makes *a the answer to w: ok, with only its op, item, id and key filled in. */
void kb_answer_start(const kb_waiter *w, kb_answer *a);

/* kb_answer_send hands a to w's face. */
void kb_answer_send(const kb_waiter *w, const kb_answer *a);

/* kb_reply_error audits and sends a failure answer to w, and counts it. */
void kb_reply_error(kb_broker *b, const kb_waiter *w, const kb_err *err);

/* kb_reply_code is kb_reply_error with an error made of code and msg. */
void kb_reply_code(kb_broker *b, const kb_waiter *w, kb_code code, const char *msg);

/*
 * kb_answer_hit answers w from cache entry e of key k: the plaintext, key,
 * version and cache 1, or 2 when stale (outage_grace serves e past its
 * TTL). The loop's hit path, outage grace and bench/hitstep use it.
 */
void kb_answer_hit(kb_broker *b, const kb_waiter *w, const kb_key *k, const kb_cache_entry *e, bool stale);

#endif
