/*
 * listen.h: the one listener of every socket face.
 *
 * It accepts on a listening socket, and before any face sees a byte it
 * checks the peer (SO_PEERCRED against allow_uids and allow_gids), counts
 * the connection against max_connections, max_connections_per_peer and
 * reserved_connections (peer.h) in the loop's one connection set, and
 * refuses when descriptors run short (fdlimit.h), resting the listener
 * rather than spinning on it. Only then is the connection, a kb_conn in the
 * set, handed to the face (take), which serves it from then on. A refusal
 * is counted and logged; on a face that speaks NDJSON it is also told why
 * in one error line. Loop thread only.
 */
#ifndef KB_LISTEN_H
#define KB_LISTEN_H

#include "broker.h"
#include "conn.h"

typedef struct kb_listener kb_listener;

typedef struct kb_listen_face {
	char name[96];      /* for the logs: "" for the NDJSON socket, "kms k8s" */
	char face[80];      /* kb_conn.face of its connections ("" for NDJSON) */
	bool tell;          /* answer a refusal with one NDJSON error line before closing */
	/* take serves c, just admitted and counted; it closes c (kb_conn_close) if it cannot */
	void (*take)(void *ctx, kb_conn *c);
	void *ctx;
} kb_listen_face;

/*
 * kb_listener_start watches lfd (which stays the caller's) with io and
 * admits its connections into set for face. Returns KB_OK or an error.
 */
kb_code kb_listener_start(kb_broker *b, const kb_io *io, kb_connset *set, int lfd, const kb_listen_face *face,
			  kb_listener **out, kb_err *err);

/* kb_listener_stop stops accepting and frees l (NULL is fine). */
void kb_listener_stop(kb_listener *l);

#endif
