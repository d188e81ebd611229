/*
 * health.h: the real health of each configured key.
 *
 * A check is a round trip through the broker's own request path: get (the
 * latest version, enabled, what identifies its material), then wrap 32 fresh
 * random bytes and unwrap the blob (a miss: a wrap is never cached), and
 * compare. Checks run at most every health_interval per key; after a failed
 * check, a reader's kb_health_poke starts the next one at once (at most one a
 * second), so a key that comes back is seen as soon as someone asks.
 * Everything here is loop state: the caller holds the loop token (looptoken.h).
 */
#ifndef KB_HEALTH_H
#define KB_HEALTH_H

#include "broker.h"
#include "buf.h"
#include "kms_keyid.h"

typedef struct kb_health kb_health;

typedef struct kb_health_state {
	bool checked;           /* a check has finished */
	bool ok;                /* the last finished check passed */
	char text[512];         /* "ok", or what failed and why */
	int64_t checked_ms;     /* when it finished (monotonic) */
	uint64_t checks;
	uint64_t failures;
	bool known;             /* key_id below is set (from the last get that worked) */
	kb_kms_key_id latest;   /* the write key: key, latest version, fingerprint */
} kb_health_state;

/* kb_health_start begins checking b's keys with io's timers. */
kb_code kb_health_start(kb_broker *b, const kb_io *io, kb_health **out, kb_err *err);

/* kb_health_stop ends the checks and frees h (NULL is fine). */
void kb_health_stop(kb_health *h);

/* kb_health_get returns key's state, or NULL if the key is not configured. */
const kb_health_state *kb_health_get(kb_health *h, const char *key);

/* kb_health_poke says someone read key's health: after a failure, check again now. */
void kb_health_poke(kb_health *h, const char *key);

/*
 * kb_health_fingerprint finds the fingerprint of key's version among those
 * seen; false if it has not been seen (then kb_health_learn asks).
 */
bool kb_health_fingerprint(kb_health *h, const char *key, const char *version,
			   char fp[KB_KMS_FP_LEN + 1]);

/*
 * kb_health_learn runs a get of key now and calls done(ctx) when its versions
 * are learned (or the get failed). Returns KB_OK, or an error (done never runs).
 */
kb_code kb_health_learn(kb_health *h, const char *key, void (*done)(void *ctx), void *ctx);

/* kb_health_end_learners runs every kb_health_learn callback still waiting, now (before a shutdown). */
void kb_health_end_learners(kb_health *h);

/*
 * kb_health_ready tells whether every configured key's last check passed; why
 * names each that did not, with its step and its error code, never the
 * message (which may name a tenant, a client or a token: it stays in status
 * and the logs). With poke, a failed key is checked again (kb_health_poke).
 */
bool kb_health_ready(kb_health *h, bool poke, char *why, size_t cap);

#endif
