/*
 * peer.h: fairness between the peers of one broker.
 *
 * A peer is one process, (uid, pid) from SO_PEERCRED. No peer may take more
 * than its share: connections per peer (max_connections_per_peer), the
 * connections of one uid (all but reserved_connections of max_connections,
 * so a different uid can always connect) and the requests of one peer that
 * wait on the key service (max_inflight_per_peer; a hit never waits, and is
 * never counted).
 *
 * A refusal is answered busy with a message naming the limit, counted per
 * peer and per limit (metrics), and logged once per peer per
 * KB_PEER_LOG_INTERVAL_MS with how many were refused since, never once per
 * connection. A peer's record lives while it has connections, and for one
 * interval after its last refusal, so its count and its log stay per peer.
 * Times are the caller's monotonic milliseconds (kb_now_ms). Loop thread only.
 */
#ifndef KB_PEER_H
#define KB_PEER_H

#include "broker.h"

#define KB_PEER_LOG_INTERVAL_MS 60000

typedef enum kb_peer_limit {
	KB_LIMIT_MAX_CONNECTIONS = 0,
	KB_LIMIT_CONNECTIONS_PER_PEER,
	KB_LIMIT_RESERVED,
	KB_LIMIT_INFLIGHT_PER_PEER,
	KB_LIMIT_COUNT
} kb_peer_limit;

typedef struct kb_peer {
	uid_t uid;
	pid_t pid;
	int conns;                         /* open connections */
	uint64_t refused[KB_LIMIT_COUNT];  /* refusals, by limit */
	uint64_t unlogged;                 /* refusals since the last log line */
	int64_t logged_ms;                 /* that line's time; 0: none yet */
	int64_t refused_ms;                /* the last refusal's time; 0: none */
	struct kb_peer *next;
} kb_peer;

typedef struct kb_peers {
	kb_peer *list;
	int count;                         /* records held */
	int idle;                          /* records without connections */
	uint64_t refused[KB_LIMIT_COUNT];  /* every refusal, by limit, also of records gone */
	uint64_t untracked;                /* refusals of peers the table had no room for, since logged */
	int64_t untracked_logged_ms;       /* when those were last logged */
} kb_peers;

/* kb_peer_limit_name is a limit's config option, as refusals and metrics name it. */
const char *kb_peer_limit_name(kb_peer_limit l);

/*
 * kb_peer_admit decides whether a connection from (uid, pid) may be served
 * while the broker holds nconns. On yes it returns the peer, whose count
 * now includes the connection (kb_peer_release gives it back). On no it
 * returns NULL, with the refusal counted, logged if due, and err set to
 * busy naming the limit.
 */
kb_peer *kb_peer_admit(kb_peers *ps, const kb_config *cfg, int nconns, uid_t uid, pid_t pid,
		       int64_t now_ms, kb_err *err);

/* kb_peer_release gives back one connection of p. */
void kb_peer_release(kb_peers *ps, kb_peer *p);

/*
 * kb_peer_may_wait decides whether c may put one more request before the key
 * service: its peer's requests in flight over every connection of the set
 * stay under max_inflight_per_peer. On no it counts and logs as
 * kb_peer_admit does, sets err (busy) and returns false.
 */
bool kb_peer_may_wait(kb_peers *ps, const kb_config *cfg, const kb_conn *c, int64_t now_ms, kb_err *err);

/* kb_peers_sweep drops the records of peers with no connection and no refusal for an interval. */
void kb_peers_sweep(kb_peers *ps, int64_t now_ms);

/* kb_peers_free releases every record. */
void kb_peers_free(kb_peers *ps);

#endif
