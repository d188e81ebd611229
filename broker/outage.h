/*
 * outage.h: keys whose key service is down, and the keyset the loop serves.
 *
 * A key whose service could not be reached when it opened (keys.h) is
 * "down": its backend state is NULL, every request for it is answered
 * backend_unavailable with the cause, and the loop reopens it in the
 * background on a worker, with backoff (1 s, doubling to 30 s), on its own
 * timer. When a reopen works the key is served from then on, and that is
 * logged once, and b->key_back (if a face registered one) is told. Everything
 * here runs on the loop thread (or before the loop starts).
 */
#ifndef KB_OUTAGE_H
#define KB_OUTAGE_H

#include "broker.h"

/*
 * kb_broker_use_keyset makes ks current (taking over the caller's
 * reference), lending its keys the loop's kb_io if the broker has one, and
 * schedules the reopen of its keys that are down.
 */
void kb_broker_use_keyset(kb_broker *b, kb_keyset *ks);

/*
 * kb_broker_attach_io lends io to the current keyset's backends (NULL: takes
 * it back; every call still in flight on them is dropped, and the reopens
 * stop), and to every keyset made current after.
 */
void kb_broker_attach_io(kb_broker *b, const kb_io *io);

/*
 * kb_outage_refuse returns KB_OK if k (NULL is fine) can be called, else
 * KB_E_BACKEND_UNAVAILABLE with why its key service is down in err.
 */
kb_code kb_outage_refuse(const kb_key *k, kb_err *err);

/*
 * kb_outage_doctor explains a down key for `keybroker doctor`: what failed,
 * since when, and when the next try is. Returns false if k is not down.
 */
bool kb_outage_doctor(const kb_key *k, kb_doctor_emit emit, void *ctx);

#endif
