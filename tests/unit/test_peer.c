/*
 * test_peer: each peer (uid, pid) gets its share of the connections, a uid
 * leaves the reserve to others, and a record outlives its connections only
 * while a refusal of it is recent.
 */
#include <stdbool.h>

#include "config.h"
#include "peer.h"
#include "unit.h"

static kb_config cfg = {
	.max_connections = 8, .max_connections_per_peer = 3, .reserved_connections = 2,
	.max_inflight_per_peer = 4,
};

/* admit_n admits up to n connections of (uid, pid) while the broker holds *nconns; returns how many. */
static int admit_n(kb_peers *ps, int *nconns, uid_t uid, pid_t pid, int n, kb_peer **last, kb_err *err)
{
	int got = 0;

	for (int i = 0; i < n; i++) {
		kb_peer *p = kb_peer_admit(ps, &cfg, *nconns, uid, pid, 1000 + i, err);
		if (p == NULL)
			break;
		*last = p;
		(*nconns)++;
		got++;
	}
	return got;
}

static void peer_a_process_gets_max_connections_per_peer(void **state)
{
	kb_peers ps = { 0 };
	kb_peer *p = NULL;
	kb_err err;
	int n = 0;

	assert_int_equal(admit_n(&ps, &n, 1000, 10, 5, &p, &err), 3);
	assert_int_equal(err.code, KB_E_BUSY);
	assert_non_null(strstr(err.msg, "max_connections_per_peer"));
	assert_int_equal(p->conns, 3);
	assert_int_equal(p->refused[KB_LIMIT_CONNECTIONS_PER_PEER], 1);
	assert_int_equal(ps.refused[KB_LIMIT_CONNECTIONS_PER_PEER], 1);
	/* another process of the same uid has a share of its own */
	assert_int_equal(admit_n(&ps, &n, 1000, 11, 1, &p, &err), 1);
	kb_peers_free(&ps);
}

static void peer_one_uid_leaves_the_reserve_to_other_uids(void **state)
{
	kb_peers ps = { 0 };
	kb_peer *p = NULL;
	kb_err err;
	int n = 0;

	/* three processes of uid 1000 reach 6 = max_connections - reserved_connections */
	assert_int_equal(admit_n(&ps, &n, 1000, 10, 3, &p, &err), 3);
	assert_int_equal(admit_n(&ps, &n, 1000, 11, 3, &p, &err), 3);
	assert_int_equal(admit_n(&ps, &n, 1000, 12, 3, &p, &err), 0);
	assert_non_null(strstr(err.msg, "reserved_connections"));
	assert_int_equal(ps.refused[KB_LIMIT_RESERVED], 1);
	/* another uid takes the reserve, then max_connections holds */
	assert_int_equal(admit_n(&ps, &n, 65534, 20, 3, &p, &err), 2);
	assert_non_null(strstr(err.msg, "max_connections"));
	assert_int_equal(ps.refused[KB_LIMIT_MAX_CONNECTIONS], 1);
	kb_peers_free(&ps);
}

static void peer_record_goes_with_its_last_connection_unless_refused_lately(void **state)
{
	kb_peers ps = { 0 };
	kb_peer *p = NULL, *q = NULL;
	kb_err err;
	int n = 0;

	assert_int_equal(admit_n(&ps, &n, 1000, 10, 1, &p, &err), 1);
	kb_peer_release(&ps, p);
	assert_int_equal(ps.count, 0);
	/* refused once: its record and count stay for an interval after, then go */
	assert_int_equal(admit_n(&ps, &n, 1000, 11, 4, &q, &err), 3);
	for (int i = 0; i < 3; i++)
		kb_peer_release(&ps, q);
	assert_int_equal(ps.count, 1);
	assert_int_equal(ps.idle, 1);
	kb_peers_sweep(&ps, q->refused_ms + KB_PEER_LOG_INTERVAL_MS - 1);
	assert_int_equal(ps.count, 1);
	kb_peers_sweep(&ps, q->refused_ms + KB_PEER_LOG_INTERVAL_MS);
	assert_int_equal(ps.count, 0);
	assert_null(ps.list);
	kb_peers_free(&ps);
}

static void peer_refusals_are_logged_once_per_interval(void **state)
{
	kb_peers ps = { 0 };
	kb_peer *p = NULL;
	kb_err err;
	int n = 0;

	assert_int_equal(admit_n(&ps, &n, 1000, 10, 3, &p, &err), 3);
	for (int i = 0; i < 5; i++)
		assert_null(kb_peer_admit(&ps, &cfg, n, 1000, 10, 5000 + i, &err));
	/* the first was logged; the four after it wait for the next report */
	assert_int_equal(p->logged_ms, 5000);
	assert_int_equal(p->unlogged, 4);
	assert_int_equal(p->refused[KB_LIMIT_CONNECTIONS_PER_PEER], 5);
	/* an interval after the last report, the next refusal is logged with the four */
	assert_null(kb_peer_admit(&ps, &cfg, n, 1000, 10, 5000 + KB_PEER_LOG_INTERVAL_MS, &err));
	assert_int_equal(p->logged_ms, 5000 + KB_PEER_LOG_INTERVAL_MS);
	assert_int_equal(p->unlogged, 0);
	kb_peers_free(&ps);
}

static const struct CMUnitTest tests[] = {
	CASE(peer_a_process_gets_max_connections_per_peer, "peer - a process gets max_connections_per_peer"),
	CASE(peer_one_uid_leaves_the_reserve_to_other_uids, "peer - one uid leaves the reserve to other uids"),
	CASE(peer_record_goes_with_its_last_connection_unless_refused_lately, "peer - record goes with its last connection unless refused lately"),
	CASE(peer_refusals_are_logged_once_per_interval, "peer - refusals are logged once per interval"),
};

CASES_MAIN("peer", tests, NULL, NULL)
