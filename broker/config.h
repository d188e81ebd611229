/*
 * config.h: the daemon's INI configuration, parsed with inih.
 *
 * [broker] holds the daemon's settings; each [key:NAME] section one logical
 * key (see keyconf.h). Every error names the file, the line and what is
 * wrong, and stops startup: a daemon holding keys must not guess.
 */
#ifndef KB_CONFIG_H
#define KB_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "keyconf.h"
#include "values.h"

#define KB_MAX_KEYS 256
#define KB_MAX_KMS 8

/* one [kms:NAME] section: a Kubernetes KMS v2 socket serving one key (kms_face.h) */
typedef struct kb_kmsconf {
	char name[KB_KEY_NAME_MAX + 1];
	char *socket;
	char key[KB_KEY_NAME_MAX + 1];
} kb_kmsconf;

typedef struct kb_config {
	char *file;

	char *socket;                 /* NULL: kb_default_socket() */
	mode_t socket_mode;           /* default 0600 */
	char *socket_group;           /* NULL: the daemon's own group */
	int workers;                  /* backend worker threads */
	size_t max_request_bytes;     /* unless set, sized by the keys (kb_keyset_judge) */
	bool max_request_bytes_set;
	int log_level;

	/* cache */
	int64_t cache_ttl_ms;
	int64_t outage_grace_ms;      /* 0: off; see docs/cache.md */
	double cache_ttl_jitter;      /* each entry's TTL is cut by up to this fraction, at random */
	int cache_capacity;
	bool allow_unlocked_memory;

	/* limits */
	int max_connections;
	int max_inflight;             /* per connection */
	int max_batch;                /* blobs in one batch request */
	int64_t loop_call_max_us;     /* schedule.h: calls averaging at most this may run on the loop; 0: never */
	int64_t loop_wait_max_us;     /* schedule.h: the loop polls for one client's calls averaging at most this; 0: never */
	int64_t idle_timeout_ms;      /* 0: none */
	int64_t client_timeout_ms;    /* partial line or undrained output */
	int64_t request_timeout_ms;   /* deadline of one backend call */
	/* fairness between peers (peer.h); unset ones follow max_connections and max_inflight */
	int max_connections_per_peer; /* default 3/4 of max_connections */
	int reserved_connections;     /* kept for other uids; default max_connections / 16 */
	int max_inflight_per_peer;    /* default 16 x max_inflight: room for deep pipelining */

	/* who may connect */
	kb_idlist allow_uids;
	kb_idlist allow_gids;
	kb_idlist admin_uids;         /* who may rotate and flush; unset: own uid and root */
	kb_idlist admin_gids;

	char *audit_log;              /* NULL: off; "-": stderr */

	kb_keyconf keys[KB_MAX_KEYS];
	int nkeys;

	/* the Kubernetes KMS v2 face and health (kms_face.h, health.h) */
	kb_kmsconf kms[KB_MAX_KMS];
	int nkms;
	int64_t health_interval_ms;   /* default 30 s */
	char *metrics_listen;         /* NULL: no operator HTTP endpoints */
} kb_config;

/*
 * kb_config_load parses path into a new config in *out. Returns KB_OK, or
 * KB_E_BAD_REQUEST with "FILE:LINE: what is wrong" in err.
 */
kb_code kb_config_load(const char *path, kb_config **out, kb_err *err);

/* kb_config_parse_string is kb_config_load on text in memory (tests, fuzzing). */
kb_code kb_config_parse_string(const char *text, const char *name, kb_config **out, kb_err *err);

/* kb_config_free releases cfg (NULL is fine). */
void kb_config_free(kb_config *cfg);

#endif
