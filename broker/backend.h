/*
 * backend.h: the one interface between the broker core and a key service.
 *
 * A backend instance serves one logical key ([key:NAME]). The core never knows
 * which service is behind it. Calls come from worker threads: the core passes
 * a slot number in [0, nslots), and no two threads ever use the same slot at
 * once, so a backend keeps per-slot state (a PKCS#11 session, a curl handle)
 * without locks. Slot nslots-1 is the control slot, used by the main thread
 * (--check, startup) and never by a worker.
 *
 * Every call returns KB_OK or a kb_code with err filled. A backend maps its
 * service's errors to kb_codes itself, with messages that name the root cause
 * and the fix (see error codes in kb_codes.h).
 *
 * Versions are printable strings of at most KB_VERSION_MAX characters from
 * [A-Za-z0-9_-] (they travel inside blobs). version == NULL means "latest".
 */
#ifndef KB_BACKEND_H
#define KB_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "alg.h"
#include "buf.h"
#include "error.h"
#include "keyconf.h"

#define KB_VERSION_MAX 64
#define KB_SECRET_MAX 1024     /* largest plaintext (DEK) the broker handles */
#define KB_WRAPPED_MAX 2048    /* largest wrapped ciphertext */
#define KB_MAX_VERSIONS 128

typedef struct kb_version_info {
	char version[KB_VERSION_MAX + 1];
	int enabled;               /* 1 usable, 0 disabled */
	int64_t created;           /* unix seconds, 0 unknown */
	int64_t not_before;        /* 0: none */
	int64_t expires;           /* 0: none */
} kb_version_info;

typedef struct kb_key_info {
	kb_alg alg;                /* the algorithm wraps use by default */
	char kty[16];              /* "RSA", "AES", "RSA-HSM", "oct-HSM" */
	int bits;
	int enabled;               /* the latest version is usable */
	char latest[KB_VERSION_MAX + 1];
	kb_version_info versions[KB_MAX_VERSIONS]; /* oldest first */
	int nversions;
	char *public_pem;          /* RSA: SubjectPublicKeyInfo PEM (malloc'd), else NULL */
	char key_ops[128];         /* comma-separated, "" if the service has none */
	char detail[256];          /* backend-specific summary, e.g. token label */
} kb_key_info;

/*
 * kb_io is what the event loop lends a backend that waits on the network, so
 * that it never blocks a thread on a round trip. Everything here is loop
 * state: it is called, and calls back, holding the loop token (looptoken.h),
 * on the loop's thread or a guest's (a worker or the gRPC thread) while the
 * loop sleeps; a guest that leaves a watch or timer armed wakes the loop.
 */
enum { KB_IO_IN = 1, KB_IO_OUT = 2 };

typedef struct kb_io kb_io;
typedef struct kb_io_watch kb_io_watch;
typedef struct kb_io_timer kb_io_timer;

struct kb_io {
	void *loop;
	/*
	 * watch calls cb(ctx, ready) whenever fd is ready for events (KB_IO_*).
	 * With *w NULL it starts a watch and sets *w; else it changes *w's
	 * events, and events 0 ends the watch and sets *w to NULL. Returns 0 or -1.
	 */
	int (*watch)(void *loop, kb_io_watch **w, int fd, unsigned events,
		     void (*cb)(void *ctx, int fd, unsigned ready), void *ctx);
	/* timer_new makes a timer that calls cb(ctx) once when armed and due; NULL without memory. */
	kb_io_timer *(*timer_new)(void *loop, void (*cb)(void *ctx), void *ctx);
	/* timer_arm makes t due at monotonic ms at (-1: disarm it). */
	void (*timer_arm)(kb_io_timer *t, int64_t at_ms);
	void (*timer_free)(kb_io_timer *t);
	/*
	 * offload runs work(ctx, slot) on a worker, with that worker's backend
	 * slot, then done(ctx) on the loop: for a rare step that has only a
	 * blocking form (a token fetch). Returns 0, or -1 without memory.
	 */
	int (*offload)(void *loop, void (*work)(void *ctx, int slot), void (*done)(void *ctx), void *ctx);
};

/*
 * One backend call that finishes later. The core fills the inputs, the
 * backend the outputs; done runs holding the loop token when the call is over,
 * never from inside the start function that was given it.
 */
typedef struct kb_async {
	const char *version;           /* unwrap: the blob's version; wrap: NULL for latest */
	kb_alg alg;
	const uint8_t *in;
	size_t inlen;
	uint8_t *out;                  /* capacity *outlen (KB_SECRET_MAX or KB_WRAPPED_MAX) */
	size_t *outlen;
	char *version_out;             /* wrap: the version used, KB_VERSION_MAX + 1 */
	kb_alg *alg_out;               /* wrap: the algorithm used */
	kb_err *err;
	void (*done)(struct kb_async *a, kb_code rc);
	void *ctx;
} kb_async;

/*
 * kb_doctor_emit receives one line of `keybroker doctor`: the check's name,
 * its status ("pass", "warn" or "fail"), what was found and, unless it
 * passed, what to do. Backends emit through it; the core writes the lines.
 */
typedef void (*kb_doctor_emit)(void *ctx, const char *check, const char *status, const char *detail,
			       const char *fix);

typedef struct kb_backend_ops {
	const char *name;

	/*
	 * open validates kc's backend options (taking each with kb_keyconf_take),
	 * connects to the key service and checks the key exists, and returns the
	 * instance in *state. nslots is the number of concurrent callers. When
	 * kc->alg is KB_ALG_NONE it sets it to the default it settled on, and it
	 * sets kc->wrap_bytes. It returns KB_E_BACKEND_UNAVAILABLE (or
	 * KB_E_THROTTLED) only when the key service cannot be reached or used now
	 * and may come back without a change to the config: the core then starts
	 * without the key and opens it again later (outage.h). What a person must
	 * fix (a bad value, an unreadable file, a PIN the token refuses) has
	 * another code, and refuses the config.
	 */
	kb_code (*open)(kb_keyconf *kc, int nslots, void **state, kb_err *err);

	/* close releases everything open made; state may be NULL. */
	void (*close)(void *state);

	/* describe fills info (public_pem owned by the caller: free()). */
	kb_code (*describe)(void *state, int slot, kb_key_info *info, kb_err *err);

	/*
	 * wrap wraps pt under version (NULL: latest) with alg (KB_ALG_NONE: the
	 * key's default). It writes the ciphertext to ct (capacity *ctlen,
	 * KB_WRAPPED_MAX is always enough), the length to *ctlen, and the version
	 * and algorithm actually used to version_out and *alg_out. A backend
	 * refuses (KB_E_MECHANISM_UNSUPPORTED) any wrap it could not unwrap later.
	 */
	kb_code (*wrap)(void *state, int slot, const char *version, kb_alg alg,
			const uint8_t *pt, size_t ptlen, uint8_t *ct, size_t *ctlen,
			char version_out[KB_VERSION_MAX + 1], kb_alg *alg_out, kb_err *err);

	/*
	 * unwrap recovers the plaintext of ct, wrapped under version with alg,
	 * into pt (capacity *ptlen, at least KB_SECRET_MAX). A ciphertext that
	 * fails its integrity or padding check is KB_E_BAD_BLOB.
	 */
	kb_code (*unwrap)(void *state, int slot, const char *version, kb_alg alg,
			  const uint8_t *ct, size_t ctlen, uint8_t *pt, size_t *ptlen,
			  kb_err *err);

	/* rotate makes a new latest version and returns its name. */
	kb_code (*rotate)(void *state, int slot, char version_out[KB_VERSION_MAX + 1],
			  kb_err *err);

	/*
	 * random fills buf with n bytes from the key service's RNG. May be NULL,
	 * in which case the core uses OpenSSL's RAND_priv_bytes.
	 */
	kb_code (*random)(void *state, int slot, uint8_t *buf, size_t n, kb_err *err);

	/*
	 * doctor runs the backend's diagnostic checks and appends one line per
	 * check through emit (status "pass", "warn" or "fail"; fix is NULL on a
	 * pass). May be NULL.
	 */
	kb_code (*doctor)(void *state, int slot, kb_doctor_emit emit, void *ctx, kb_err *err);

	/*
	 * identify writes to out what identifies version (NULL: latest) of the
	 * key and nothing secret: the public key as SubjectPublicKeyInfo PEM (as
	 * describe's public_pem), or for a secret key where it lives and a check
	 * value the token computes; for Azure, the kid URL with the version. The
	 * core fingerprints it once per version (keyprint.h), so this is called
	 * once per version, not per request. KB_E_UNKNOWN_VERSION when the key
	 * has no such version. May be NULL: the key's blobs carry no fingerprint.
	 */
	kb_code (*identify)(void *state, int slot, const char *version, kb_buf *out, kb_err *err);

	/*
	 * claim_raw_blob tells whether a raw blob (the key service's own form,
	 * not a keybroker envelope; kid is the key identifier it carries) is
	 * one this key recognises as its own, so the core can route it without
	 * knowing which backend made it. May be NULL: the key claims none.
	 */
	int (*claim_raw_blob)(void *state, const char *kid);

	/*
	 * For a backend that waits on a network; all three may be NULL, and
	 * then its calls run on workers. attach hands it the loop's kb_io
	 * (before any start). unwrap_start and wrap_start begin the call and
	 * return KB_OK, with a->done to follow; any other code means it did not
	 * start (err filled, done never called). wrap_start may refuse with
	 * KB_E_BUSY a wrap it would rather make on a worker (a local wrap).
	 */
	void (*attach)(void *state, const kb_io *io);
	kb_code (*unwrap_start)(void *state, kb_async *a);
	kb_code (*wrap_start)(void *state, kb_async *a);
} kb_backend_ops;

/* kb_backend_find returns the backend registered under name, or NULL. */
const kb_backend_ops *kb_backend_find(const char *name);

#endif
