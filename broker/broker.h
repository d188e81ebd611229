/*
 * broker.h: the daemon's shared types, and who may touch them.
 *
 * Threads and what each may touch (docs/ARCHITECTURE.md says the same):
 * - Loop state is the broker below (its connections and their sends, the
 *   DEK cache, the single-flight table and the jobs' keyset references,
 *   the counters, each key's health and averages, the health checks, the
 *   KMS calls' inbox once taken) and the loop's kb_io watches and timers.
 *   One lock guards all of it: the loop token (looptoken.h). Only its holder
 *   touches loop state, and each entry to it says so with
 *   kb_loop_assert_owner().
 * - The event-loop thread holds the token whenever it is not waiting for
 *   events; it lets go only inside epoll_wait.
 * - A worker (pool.h) makes backend calls touching only its job and its
 *   backend slot; to end its job it takes the token while the loop sleeps
 *   (kb_job_finish_here), or hands the job back through the pool.
 * - The gRPC thread (kms_face.c) answers a call holding the token while the
 *   loop sleeps, or queues it for the loop.
 * - Shared without the token: the pool's queues (their own mutex), the
 *   scheduling counters (schedule.h, atomics), a keyset's configuration and
 *   keys, read-only while a job holds a reference, and each backend's state,
 *   which the backend shares between slots itself (backend.h).
 */
#ifndef KB_BROKER_H
#define KB_BROKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"
#include "blob.h"
#include "buf.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "fdlimit.h"
#include "looptoken.h"
#include "schedule.h"
#include "proto.h"
#include "request.h"
#include "uidwaits.h"

/* backend operations, as counted per key */
typedef enum kb_bop {
	KB_BOP_DESCRIBE = 0,
	KB_BOP_WRAP,
	KB_BOP_UNWRAP,
	KB_BOP_ROTATE,
	KB_BOP_RANDOM,
	KB_BOP_DOCTOR,
	KB_BOP_COUNT
} kb_bop;

const char *kb_bop_name(kb_bop op);

#define KB_HIST_BUCKETS 28 /* latency buckets: <= 2^i microseconds, last is +Inf */

/* who may do an operation class; unset means no narrowing */
typedef struct kb_acl {
	kb_idlist uids;
	kb_idlist gids;
} kb_acl;

typedef enum kb_acl_class {
	KB_ACL_UNWRAP = 0,
	KB_ACL_WRAP,     /* wrap and datakey */
	KB_ACL_REWRAP,
	KB_ACL_ROTATE,
	KB_ACL_GET,
	KB_ACL_COUNT
} kb_acl_class;

/* One previous location of a key: a backend instance on another object, token, key or vault. */
typedef struct kb_location {
	char where[512];             /* the previous = value */
	kb_keyconf kc;               /* the key's backend options, with the location replaced */
	void *state;                 /* NULL when its key service was down at open */
	struct kb_keyprints *prints;
	_Atomic uint64_t unwraps;    /* unwraps routed here: when it stays 0, the location may go */
} kb_location;

typedef struct kb_key {
	kb_keyconf *conf;
	const kb_backend_ops *ops;
	void *state;
	bool async;             /* the backend has the loop's kb_io: its calls do not block */
	int index;
	int64_t ttl_ms;
	int64_t grace_ms;       /* outage_grace */
	double ttl_jitter;      /* cache_ttl_jitter: each entry's TTL is cut by up to this fraction */
	uint64_t jitter_rng;    /* xorshift state for it (not a secret; loop state) */
	kb_acl acl[KB_ACL_COUNT];
	struct kb_keyprints *prints; /* its versions' fingerprints (keyprint.h owns them) */
	/*
	 * previous = LOCATION: where the key lived before (keys.c opens them,
	 * keyprint.c routes blobs to them); they only unwrap
	 */
	struct kb_location *prev;
	int nprev;
	_Atomic uint64_t unwraps_current; /* unwraps routed to the current location */

	/* health.c's last real check (get, wrap, unwrap): not yet, passed or failed */
	bool checked;
	bool check_ok;
	char check_error[512];  /* what failed and why; status shows it, /readyz only the code */

	/*
	 * outage.h: the key service was down when the key opened (state is
	 * NULL) and a reopen is tried in the background; loop thread only
	 */
	bool down;
	kb_err down_err;        /* why: requests for the key are answered with it */
	int64_t down_since_ms;
	int64_t retry_at_ms;    /* the next reopen is due (monotonic) */
	int64_t retry_ms;       /* the backoff now */
	int tries;
	bool reopening;         /* a reopen runs on a worker */

	/* health: the outcome of the last backend call */
	bool healthy;
	kb_code last_code;
	char last_error[KB_ERR_MSG_MAX];

	/* data-key reuse (AWS Encryption SDK caching CMM style) */
	struct {
		bool valid;
		uint8_t digest[KB_DIGEST_LEN];
		char blob[KB_BLOB_MAX + 1];
		char version[KB_VERSION_MAX + 1];
		int64_t created_ms;
		int64_t uses;
		int64_t bytes;
	} dk;

	uint64_t backend_calls[KB_BOP_COUNT];
	uint64_t backend_errors[KB_BOP_COUNT];
	uint64_t latency_hist[KB_HIST_BUCKETS];
	double latency_sum_s;
	int64_t unwrap_avg_us;  /* running average of its successful unwraps (schedule.h), 0 before one */
} kb_key;

/*
 * A keyset is one generation of the configuration with its keys open. SIGHUP
 * makes a new one; jobs hold a reference to the keyset they started under,
 * so the old one closes only when its last job is finished.
 */
typedef struct kb_keyset {
	kb_config *cfg;
	kb_key *keys;
	int nkeys;
	int refs;
} kb_keyset;

struct kb_connset;

typedef struct kb_conn {
	int fd;                 /* -1 once closed */
	struct kb_connset *set; /* the loop's connections it belongs to; NULL: none */
	bool on_closed;         /* on set->closed: closed, with requests in flight */
	uint64_t serial;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char exe[256];          /* the peer's executable, for the audit log */
	struct kb_peer *peer;   /* its share of the limits (peer.h); NULL outside a loop */
	char face[80];          /* "": an NDJSON client; else the face that serves it ("kms:k8s", "health"), audited with each request's id */
	kb_buf in;
	kb_buf out;
	int inflight;           /* requests handed to workers, not yet answered */
	int refs;               /* 1 while open, +1 per in-flight request */
	bool want_write;        /* EPOLLOUT is armed */
	bool close_after_flush; /* answer what is queued, then close */
	int64_t last_activity_ms;
	int64_t partial_since_ms; /* a partial line has waited since then, or 0 */
	int64_t blocked_since_ms; /* output has waited for the reader since then, or 0 */
	bool closed;            /* kb_conn_close ran: answers to it go nowhere */
	bool shared;            /* a face's library (gRPC) holds the socket too: close shuts it down first */
	struct kb_conn *prev, *next;
} kb_conn;

/*
 * One request being answered: at once by the loop, or later by a job (single
 * flight: many per job). It carries what the answer and the audit log need,
 * and where the answer goes (request.h).
 */
typedef struct kb_waiter {
	kb_conn *conn;
	kb_reply reply;
	kb_op op;
	char id_json[KB_ID_JSON_MAX];
	int64_t start_us;
	char key[KB_KEY_NAME_MAX + 1];     /* "" when the request names none */
	uint8_t digest[KB_DIGEST_LEN];     /* of the blob, when has_digest */
	bool has_digest;
	bool batch_item;                   /* item `item` of a batch: answered even once its connection closed */
	int item;
} kb_waiter;

typedef struct kb_job {
	struct kb_job *next;    /* pool queues */
	struct kb_job *flight_next; /* single-flight chain */
	kb_op op;               /* what the worker does */
	kb_keyset *ks;          /* the keyset key and src belong to (one reference) */
	kb_key *key;            /* the key to use (wrap, datakey, rewrap target, ...) */
	kb_key *src;            /* unwrap and rewrap: the blob's key */
	kb_blob blob;           /* unwrap and rewrap: the decoded blob */
	uint8_t digest[KB_DIGEST_LEN];
	kb_alg alg;
	int bits;
	int64_t bytes;          /* datakey: bytes the caller reported */
	bool refresh;           /* a refresh-ahead unwrap: no waiter, renew on success */

	/* the secret in (wrap, rewrap from cache) and out (unwrap, datakey) */
	uint8_t pt[KB_SECRET_MAX];
	size_t ptlen;
	bool have_pt;

	/* results */
	kb_err err;
	char version[KB_VERSION_MAX + 1];
	char blob_out[KB_BLOB_MAX + 1];

	/* a call that does not block (kb_async): started by the loop, finished by it */
	struct kb_broker *broker;
	kb_async async;
	size_t async_len;
	int64_t async_t0;

	/* a backend's blocking step lent a worker (kb_io.offload): no request waits on it */
	void (*work)(void *ctx, int slot);
	void (*work_done)(void *ctx);
	void *work_ctx;
	kb_key_info *info;      /* get */
	kb_buf text;            /* doctor: rendered checks */

	/* backend calls made, for the counters */
	struct {
		kb_bop op;
		kb_code rc;
		int64_t us;
	} calls[4];
	int ncalls;

	kb_waiter *waiters;
	int nwaiters;
	int capwaiters;

	/* the pool's (pool.h): whose turn the job waits in, and how long it waited */
	uid_t uid;
	int64_t queued_us;      /* when it was queued, 0 if it never was */
	int64_t wait_us;
} kb_job;

typedef struct kb_counters {
	uint64_t requests[KB_OP_COUNT];
	uint64_t errors[KB_OP_COUNT];
	uint64_t hits;
	uint64_t misses;
	uint64_t joins;            /* single-flight: requests that shared a call */
	uint64_t refreshes;
	uint64_t refresh_failures;
	uint64_t stale_answers;    /* outage grace: DEKs served past their TTL */
	uint64_t loop_calls;       /* backend calls the loop made itself (schedule.h) */
	uint64_t loop_waits;       /* one client's jobs the loop waited for awake (schedule.h) */
	uint64_t datakey_reused;
	uint64_t conns_accepted;
	uint64_t conns_refused;
	uint64_t conns_closed_limit;
	uint64_t kms_calls[3];     /* KMS v2 calls (kms_face.c): status, encrypt, decrypt */
	uint64_t kms_errors[3];
} kb_counters;

struct kb_pool;

struct kb_audit;

struct kb_broker;

typedef struct kb_broker {
	kb_keyset *ks;             /* the current keyset; cfg, keys, nkeys mirror it */
	kb_config *cfg;
	kb_key *keys;
	int nkeys;
	struct kb_audit *audit;
	kb_cache cache;
	struct kb_pool *pool;
	const kb_io *io;           /* the loop's services, lent to backends that do not block */
	kb_counters counters;
	kb_uid_waits queue_waits;  /* uidwaits.h: each uid's jobs' waits in the pool's queue */
	kb_job **flights;          /* single-flight table, by digest */
	uint32_t nflights;         /* buckets, power of two */
	int64_t started_ms;
	uid_t uid;
	gid_t gid;
	/* set by the server */
	struct kb_health *health;  /* health.h: each key's last real check */
	struct kb_kms_face *kms;   /* kms_face.h: the KMS v2 sockets, or NULL */
	int nconns;
	bool draining;
	struct kb_peers *peers;    /* the loop's peers, for the metrics (peer.h) */
	struct kb_connset *conns;  /* the loop's connections, every face's (conn.h), for a reload's re-check (revoke.h) */
	kb_io_timer *outage_timer; /* outage.h: the reopens of keys whose service was down */
	/*
	 * outage.h tells whoever registered here (the health face) that a key's
	 * service is back, so the core never calls a face: NULL is nobody.
	 */
	void (*key_back)(void *ctx, const char *key);
	void *key_back_ctx;
	kb_loop_token token;       /* looptoken.h: held by whoever touches the rest of this */
	kb_loopcall loopcall;      /* schedule.h: the loop\x27s own calls on an idle broker */
	kb_fdlimit fdlimit;        /* fdlimit.h: the reserve descriptor the listeners share */
} kb_broker;

/* kb_key_find returns the key named name in the current keyset, or NULL. */
kb_key *kb_key_find(kb_broker *b, const char *name);

#endif
