/*
 * kms_grpc.h: the gRPC side of the Kubernetes KMS v2 face.
 *
 * gRPC's C core runs its own threads; one more thread of ours drives the
 * completion queue of one grpc_server. It takes each call's request message,
 * decodes it with protobuf-c, and posts the call (from that thread) to whoever
 * started the server; nothing here touches the broker. The receiver answers
 * with kb_kms_call_reply, from any thread, exactly once per posted call.
 *
 * Connections are accepted by the caller (who checks and counts the peer
 * first) and handed over with kb_kms_grpc_add_fd. gRPC hands over every
 * stream as a call as soon as its headers are in, and this thread reads its
 * message, so each call is counted open on its connection (by
 * kb_kms_call_peer) from its first frame to its end: a connection with more
 * open than max_streams (a peer that ignores SETTINGS_MAX_CONCURRENT_STREAMS)
 * is to be closed, and beyond max_open calls in all a new one is refused
 * busy. A call that cannot be answered by its method (its message never
 * came: the peer reset it; or it names no method we serve) is answered on
 * this thread and counted; the one that passes max_failed_per_s in a second
 * (an HTTP/2 rapid reset) is posted instead. A posted call marked
 * kb_kms_call_over asks the receiver to close the connection it came on.
 */
#ifndef KB_KMS_GRPC_H
#define KB_KMS_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "error.h"
#include "inbox.h"
#include "kms_v2.pb-c.h"

typedef struct kb_kms_grpc kb_kms_grpc;
typedef struct kb_kms_call kb_kms_call;

typedef enum kb_kms_method {
	KB_KMS_STATUS = 0,
	KB_KMS_ENCRYPT,
	KB_KMS_DECRYPT,
	KB_KMS_METHODS
} kb_kms_method;

/* the main socket's limits, as gRPC applies them to a connection */
typedef struct kb_kms_limits {
	size_t max_msg;          /* max_request_bytes: a bigger message fails RESOURCE_EXHAUSTED */
	int max_streams;         /* max_inflight: calls at once on one connection */
	int64_t idle_ms;         /* a connection with no call for this long is closed (> 0) */
	size_t max_metadata;     /* bytes of headers a call may carry */
	size_t quota_bytes;      /* gRPC's resource quota: the memory all its connections may hold */
	int max_failed_per_s;    /* calls of one connection that fail unanswerable (reset) in a second, at most */
	int max_open;            /* calls open (read, waiting, or being answered) on all connections at once */
} kb_kms_limits;

/*
 * kb_kms_grpc_start starts a server with limits lim, posting each call to
 * post(ctx, call) from its thread. Returns KB_OK or KB_E_INTERNAL.
 */
kb_code kb_kms_grpc_start(const kb_kms_limits *lim, void (*post)(void *ctx, kb_kms_call *call), void *ctx,
			  kb_kms_grpc **out, kb_err *err);

/* kb_kms_grpc_add_fd serves an accepted connection; the server owns fd from now on. */
void kb_kms_grpc_add_fd(kb_kms_grpc *g, int fd);

/*
 * kb_kms_grpc_stop cancels what is left, ends the thread and frees g (NULL is
 * fine). Every posted call must have been answered first.
 */
void kb_kms_grpc_stop(kb_kms_grpc *g);

kb_kms_method kb_kms_call_method(const kb_kms_call *c);

/*
 * kb_kms_call_peer names the connection the call came on, as seen on
 * gRPC's thread when it came: the descriptor gRPC reads it from (-1:
 * unknown) and the inode of its socket then (0: unknown).
 */
void kb_kms_call_peer(const kb_kms_call *c, int *fd, uint64_t *ino);

/* kb_kms_call_over: the call's connection passed max_failed_per_s with it. */
bool kb_kms_call_over(const kb_kms_call *c);

/*
 * kb_kms_call_failed is GRPC_STATUS_OK for a call to answer, else the
 * status (and *msg) to answer it with: its message never came (the peer
 * reset the stream), could not be decoded, or named no method we serve.
 */
grpc_status_code kb_kms_call_failed(const kb_kms_call *c, const char **msg);

/* the decoded request: the one for the call's method, else NULL */
const V2__EncryptRequest *kb_kms_call_encrypt(const kb_kms_call *c);
const V2__DecryptRequest *kb_kms_call_decrypt(const kb_kms_call *c);

/*
 * kb_kms_call_reply answers c with resp (NULL unless status is GRPC_STATUS_OK)
 * or status and msg, and lets c go: it is not used again by the caller.
 */
void kb_kms_call_reply(kb_kms_call *c, grpc_status_code status, const char *msg,
		       const ProtobufCMessage *resp);

/* the call as an inbox item, and back (inbox.h): the receiver's while posted */
kb_inbox_item *kb_kms_call_item(kb_kms_call *c);
kb_kms_call *kb_kms_call_of(kb_inbox_item *it);

#endif
