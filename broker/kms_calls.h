/*
 * kms_calls.h: the three KMS v2 methods, answered as the loop would.
 *
 * Status answers from the key's last real health check (health.h). Encrypt
 * is a wrap with the key's latest version and Decrypt an unwrap (from the
 * cache while the TTL allows), each made through the peer's in-process
 * connection (inproc.h), so they take the broker's own request path:
 * policy, cache, single flight, limits, audit. Every answer or failure goes
 * back with kb_kms_call_reply; failures carry a specific gRPC code and a
 * message that starts with keybroker's error code. The loop's thread, or
 * one holding the loop token while it sleeps (kms_face.c).
 */
#ifndef KB_KMS_CALLS_H
#define KB_KMS_CALLS_H

#include "broker.h"
#include "health.h"
#include "inproc.h"
#include "kms_grpc.h"

/* what one [kms:NAME] socket answers with; it outlives every call it answers */
typedef struct kb_kms_target {
	kb_broker *b;
	kb_health *health;
	const char *key;        /* the section's [key:NAME] */
} kb_kms_target;

/*
 * kb_kms_answer answers c (now or once the broker has), counting it.
 * conn is the in-process connection of the call's peer (NULL: it could not
 * be made; Status needs none).
 */
void kb_kms_answer(const kb_kms_target *t, kb_kms_call *c, kb_inproc *conn);

#endif
