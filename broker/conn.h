/*
 * conn.h: a client connection's output and lifetime.
 *
 * The loop reads connections (server.c); everything above it writes answers
 * into c->out and calls kb_conn_send. Each connection knows the set it
 * belongs to, so nothing here needs the loop itself or a global. All of it
 * is loop state: the caller holds the loop token (looptoken.h), whether it is
 * the loop's thread or a guest it lets in while it sleeps.
 */
#ifndef KB_CONN_H
#define KB_CONN_H

#include "broker.h"
#include "peer.h"

/* The open connections of one loop, and the epoll instance they are in. */
typedef struct kb_connset {
	int epfd;
	kb_conn *list;     /* open connections */
	kb_conn *dead;     /* unreferenced, freed by kb_connset_bury */
	kb_conn *closed;   /* closed, still referenced by requests in flight */
	int *count;        /* the broker's count of open connections */
	bool stopping;     /* no more requests are read */
	kb_peers peers;    /* the peers of these connections and their shares */
} kb_connset;

/*
 * kb_conn_send writes what c->out holds without blocking, arming EPOLLOUT
 * for the rest. A connection whose peer is gone is closed; one that is
 * closed already just drops the output.
 */
void kb_conn_send(kb_conn *c);

/*
 * kb_conn_own makes the connection object of a face that is no socket (the
 * health checks): the peer uid/gid/pid, exe for the audit log, and face.
 * Close it with kb_conn_close; the last request holding it frees it.
 * NULL without memory.
 */
kb_conn *kb_conn_own(uid_t uid, gid_t gid, pid_t pid, const char *exe, const char *face);

/* kb_conn_update_events sets c's epoll interest from its state (reading pauses while output piles up). */
void kb_conn_update_events(kb_conn *c);

/*
 * kb_conn_close stops serving c (its fd, if it has one, is closed at once;
 * shut down first when c->shared) and drops the set's reference. Once is
 * enough: c->closed says it ran.
 */
void kb_conn_close(kb_conn *c);

/*
 * kb_conn_unref drops one reference; at the last, c is handed to the set's
 * dead list (epoll may still hold events for it in the batch being worked
 * through) or, without a set, freed at once.
 */
void kb_conn_unref(kb_conn *c);

/*
 * kb_connset_detach lets go of the closed connections that requests in
 * flight still reference: their set may go (the loop's frame ends) before
 * the jobs that hold them, so the last reference then frees each at once.
 */
void kb_connset_detach(kb_connset *s);

/* kb_connset_bury frees the connections that died during the last batch of events. */
void kb_connset_bury(kb_connset *s);

/* OUT_HIGH_WATER: a client that does not drain its answers stops being read. */
#define KB_CONN_OUT_HIGH_WATER (4u << 20)

#endif
