/*
 * keys.h: the configured keys, each with its backend instance open.
 */
#ifndef KB_KEYS_H
#define KB_KEYS_H

#include "broker.h"

/*
 * kb_keyset_judge is the one judge of a config, for startup, `--check` and
 * SIGHUP alike. It takes cfg (freed with the keyset) and opens a backend
 * instance for every key with nslots slots, trying each key also after one
 * failed. Each key's options must all be taken by the core (cache, policy)
 * or its backend. A key whose key service is down (kb_key_service_down) is
 * not refused: it is marked down (k->down, k->down_err) and outage.h reopens
 * it. errs (cfg->nkeys of them) says, per key, KB_OK or why the config is
 * refused; the keyset comes back in *out either way (NULL only when out of
 * memory), and a refused key must not be used. Returns KB_OK when no key is
 * refused, else the first refusal's code. The keyset starts with one reference.
 */
kb_code kb_keyset_judge(kb_config *cfg, int nslots, kb_keyset **out, kb_err *errs);

/*
 * kb_keyset_open is kb_keyset_judge for a caller that wants the keyset only
 * if nothing is refused: else err is the first refusal and no keyset is made.
 */
kb_code kb_keyset_open(kb_config *cfg, int nslots, kb_keyset **out, kb_err *err);

/*
 * kb_key_service_down tells whether a backend's open failed with rc because
 * its key service cannot be reached or used now (backend.h): an outage that
 * may pass without a change to the config, not a reason to refuse it.
 */
bool kb_key_service_down(kb_code rc);

/*
 * kb_key_open_backend opens k's backend on kc (k->ops) into *state and checks
 * that every option of kc was taken; on failure *state is NULL or (an unknown
 * option after a good open) for the caller to close.
 */
kb_code kb_key_open_backend(kb_key *k, kb_keyconf *kc, int nslots, void **state, kb_err *err);

/*
 * kb_keyset_size_requests sets max_request_bytes of ks's config, unless the
 * config sets it, so that a batch of max_batch blobs of its largest key fits
 * (options.h); a key not open yet counts as RSA-4096. Called when keys open.
 */
void kb_keyset_size_requests(kb_keyset *ks);

/* kb_keyset_unref drops a reference; the last one closes the backends and frees all. */
void kb_keyset_unref(kb_keyset *ks);

#include "outage.h" /* kb_broker_use_keyset and kb_broker_attach_io live there */

#endif
