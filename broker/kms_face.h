/*
 * kms_face.h: the Kubernetes KMS v2 plugin face of the broker.
 *
 * Each [kms:NAME] section gets its own Unix socket, made with the main
 * socket's mode and group. The one listener (listen.h) accepts on it, checks
 * the peer against the same policy as the main socket and counts it against
 * the same connection limits (a refused peer is closed before gRPC sees a
 * byte); the connection then goes to the section's gRPC server
 * (kms_grpc.h). gRPC's thread hands each call to the loop through an inbox
 * (inbox.h), and the loop answers it as a request of the connection object
 * it came on (dispatch.h): Encrypt is a wrap with the key's latest version,
 * Decrypt an unwrap (from the cache while the TTL allows), Status the key's
 * last real health check (health.h). The functions below: loop thread only.
 */
#ifndef KB_KMS_FACE_H
#define KB_KMS_FACE_H

#include "broker.h"
#include "conn.h"
#include "health.h"

typedef struct kb_kms_face kb_kms_face;

/*
 * kb_kms_face_start opens every configured [kms:NAME] socket (none: *out is
 * NULL and KB_OK), its connections counted in set with the main socket's.
 * Returns KB_OK or an error naming the section.
 */
kb_code kb_kms_face_start(kb_broker *b, const kb_io *io, kb_connset *set, kb_health *health, kb_kms_face **out,
			  kb_err *err);

/* kb_kms_face_stop answers what is pending with UNAVAILABLE, closes the sockets and frees f. */
void kb_kms_face_stop(kb_kms_face *f);

#endif
