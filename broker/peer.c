/*
 * peer.c: fairness between peers (see peer.h).
 */
#include <stdlib.h>

#include "conn.h"
#include "log.h"
#include "peer.h"

/* records of peers without connections kept at most: a flood of new pids cannot grow the table */
#define IDLE_MAX 4096

static const char *const limit_names[KB_LIMIT_COUNT] = {
	[KB_LIMIT_MAX_CONNECTIONS] = "max_connections",
	[KB_LIMIT_CONNECTIONS_PER_PEER] = "max_connections_per_peer",
	[KB_LIMIT_RESERVED] = "reserved_connections",
	[KB_LIMIT_INFLIGHT_PER_PEER] = "max_inflight_per_peer",
};

const char *kb_peer_limit_name(kb_peer_limit l)
{
	return (unsigned)l < KB_LIMIT_COUNT ? limit_names[l] : "";
}

static kb_peer *find(kb_peers *ps, uid_t uid, pid_t pid, int *uid_conns)
{
	kb_peer *found = NULL;

	*uid_conns = 0;
	for (kb_peer *p = ps->list; p; p = p->next) {
		if (p->uid != uid)
			continue;
		*uid_conns += p->conns;
		if (p->pid == pid)
			found = p;
	}
	return found;
}

static kb_peer *add(kb_peers *ps, uid_t uid, pid_t pid)
{
	kb_peer *p;

	if (ps->idle >= IDLE_MAX || (p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->uid = uid;
	p->pid = pid;
	p->next = ps->list;
	ps->list = p;
	ps->count++;
	ps->idle++;
	return p;
}

static void drop(kb_peers *ps, kb_peer *gone)
{
	for (kb_peer **pp = &ps->list; *pp; pp = &(*pp)->next) {
		if (*pp == gone) {
			*pp = gone->next;
			ps->count--;
			ps->idle--;
			free(gone);
			return;
		}
	}
}

/*
 * refuse counts a refusal of p (NULL: a peer the table has no room for) by
 * limit l, and logs it unless p was logged within the interval: then the
 * next line says how many were refused since.
 */
static void refuse(kb_peers *ps, kb_peer *p, kb_peer_limit l, int64_t now, const kb_err *err)
{
	ps->refused[l]++;
	if (p == NULL) {
		/* no record to keep its count: these peers share one line per interval */
		ps->untracked++;
		if (ps->untracked_logged_ms && now - ps->untracked_logged_ms < KB_PEER_LOG_INTERVAL_MS)
			return;
		kb_warn("busy: %s (%llu refusals of peers beyond the %d the broker tracks since the last report)",
			err->msg, (unsigned long long)ps->untracked, IDLE_MAX);
		ps->untracked_logged_ms = now;
		ps->untracked = 0;
		return;
	}
	p->refused[l]++;
	p->refused_ms = now;
	if (p->logged_ms && now - p->logged_ms < KB_PEER_LOG_INTERVAL_MS) {
		p->unlogged++;
		return;
	}
	if (p->unlogged)
		kb_warn("busy for uid %u pid %d: %s (%llu more refusals of this peer since the last report)",
			(unsigned)p->uid, (int)p->pid, err->msg, (unsigned long long)p->unlogged);
	else
		kb_warn("busy for uid %u pid %d: %s (further refusals of this peer are counted, and logged "
			"at most once every %d s)",
			(unsigned)p->uid, (int)p->pid, err->msg, KB_PEER_LOG_INTERVAL_MS / 1000);
	p->logged_ms = now;
	p->unlogged = 0;
}

kb_peer *kb_peer_admit(kb_peers *ps, const kb_config *cfg, int nconns, uid_t uid, pid_t pid,
		       int64_t now_ms, kb_err *err)
{
	int uid_conns;
	int uid_max = cfg->max_connections - cfg->reserved_connections;
	kb_peer *p = find(ps, uid, pid, &uid_conns);
	kb_peer_limit l;

	if (nconns >= cfg->max_connections) {
		l = KB_LIMIT_MAX_CONNECTIONS;
		kb_err_set(err, KB_E_BUSY, "too many connections (max_connections): retry later");
	} else if (p && p->conns >= cfg->max_connections_per_peer) {
		l = KB_LIMIT_CONNECTIONS_PER_PEER;
		kb_err_set(err, KB_E_BUSY,
			   "this process holds %d connections, its share (max_connections_per_peer): close some, "
			   "or send more requests on each", p->conns);
	} else if (uid_conns >= uid_max) {
		l = KB_LIMIT_RESERVED;
		kb_err_set(err, KB_E_BUSY,
			   "uid %u holds %d connections: the last %d of max_connections (%d) are kept for other "
			   "uids (reserved_connections)",
			   (unsigned)uid, uid_conns, cfg->reserved_connections, cfg->max_connections);
	} else {
		if (p == NULL && (p = add(ps, uid, pid)) == NULL) {
			kb_err_set(err, KB_E_BUSY, "the broker cannot track another peer now: retry later");
			return NULL;
		}
		if (p->conns++ == 0)
			ps->idle--;
		return p;
	}
	if (p == NULL)
		p = add(ps, uid, pid);
	refuse(ps, p, l, now_ms, err);
	return NULL;
}

void kb_peer_release(kb_peers *ps, kb_peer *p)
{
	if (p == NULL || --p->conns > 0)
		return;
	ps->idle++;
	if (p->refused_ms == 0)
		drop(ps, p);
}

bool kb_peer_may_wait(kb_peers *ps, const kb_config *cfg, const kb_conn *c, int64_t now_ms, kb_err *err)
{
	int n = 0;

	if (c->peer == NULL || c->set == NULL)
		return true;
	for (const kb_conn *o = c->set->list; o; o = o->next)
		if (o->peer == c->peer)
			n += o->inflight;
	if (n < cfg->max_inflight_per_peer)
		return true;
	kb_err_set(err, KB_E_BUSY,
		   "this process has %d requests waiting on the key service, its share "
		   "(max_inflight_per_peer): read the answers first",
		   n);
	refuse(ps, c->peer, KB_LIMIT_INFLIGHT_PER_PEER, now_ms, err);
	return false;
}

void kb_peers_sweep(kb_peers *ps, int64_t now_ms)
{
	kb_peer *next;

	for (kb_peer *p = ps->list; p; p = next) {
		next = p->next;
		if (p->conns == 0 && now_ms - p->refused_ms >= KB_PEER_LOG_INTERVAL_MS)
			drop(ps, p);
	}
}

void kb_peers_free(kb_peers *ps)
{
	while (ps->list) {
		kb_peer *p = ps->list;
		ps->list = p->next;
		free(p);
	}
	ps->count = ps->idle = 0;
}
