/*
 * keyprint.h: the fingerprint of each key version, the one that kb2 blobs
 * carry (blob.h) and that routes them.
 *
 * A fingerprint is kb_kms_fingerprint (kms_keyid.h: 16 hex digits of
 * SHA-256) over what the backend says identifies the version (backend.h,
 * identify): the public key, a secret key's check value and place, or
 * Azure's versioned kid. It is made once per version and remembered in the
 * key's memo, which this file owns (k->prints; any thread, under its lock),
 * so a wrap or a miss costs a lookup, and a cache hit nothing at all.
 */
#ifndef KB_KEYPRINT_H
#define KB_KEYPRINT_H

#include "broker.h"

typedef struct kb_keyprints kb_keyprints;

/* kb_keyprints_new makes an empty memo; NULL without memory. */
kb_keyprints *kb_keyprints_new(void);
void kb_keyprints_free(kb_keyprints *p);

/*
 * kb_keyprint_get writes the fingerprint of k's version to fp, asking the
 * backend (on slot) only the first time. fp is "" (and KB_OK) when k's
 * backend has no identify: its blobs stay kb1.
 */
kb_code kb_keyprint_get(kb_key *k, int slot, const char *version, char fp[KB_BLOB_FP_LEN + 1], kb_err *err);

/*
 * kb_keyprint_locate routes blob (of k) to the location that wrapped it: the
 * current one (*where -1) for a kb1 or raw blob (no fingerprint) or when its
 * version has the blob's fingerprint, else the previous location i (*where
 * i) whose version has it; *state is that location's backend state. Else
 * KB_E_UNKNOWN_VERSION naming the blob's fingerprint, the version's, and the
 * fix (name the old location in `previous`): never bad_blob, as the blob is
 * whole and the key that wrapped it is elsewhere.
 */
kb_code kb_keyprint_locate(kb_key *k, int slot, const kb_blob *blob, void **state, int *where, kb_err *err);

#endif
