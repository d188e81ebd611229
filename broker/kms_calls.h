/*
 * kms_calls.h: the three KMS v2 methods, answered as the loop would.
 *
 * Status answers from the key's last real health check (health.h). Encrypt
 * is a wrap with the key's latest version and Decrypt an unwrap (from the
 * cache while the TTL allows), each submitted to the core (dispatch.h) as a
 * request of the call's connection, so they take the broker's own request
 * path: policy, cache, single flight, limits, audit. Every answer or
 * failure goes back with kb_kms_call_reply; failures carry a specific gRPC
 * code and a message that starts with keybroker's error code. Loop thread
 * only.
 */
#ifndef KB_KMS_CALLS_H
#define KB_KMS_CALLS_H

#include "broker.h"
#include "health.h"
#include "kms_grpc.h"
#include "ticket.h"

/* what one [kms:NAME] socket answers with; it outlives every call it answers */
typedef struct kb_kms_target {
	kb_broker *b;
	kb_health *health;
	const char *key;        /* the section's [key:NAME] */
	kb_tickets *tickets;    /* its calls waiting on the core (ticket.h) */
} kb_kms_target;

/*
 * kb_kms_answer answers c (now or once the broker has), counting it, as a
 * request of conn, the connection object it came on.
 */
void kb_kms_answer(const kb_kms_target *t, kb_kms_call *c, kb_conn *conn);

#endif
