/*
 * keys.h: the configured keys, each with its backend instance open.
 */
#ifndef KB_KEYS_H
#define KB_KEYS_H

#include "broker.h"

/*
 * kb_keyset_open takes cfg (it is freed with the keyset, or here on failure)
 * and opens a backend instance for every key with nslots slots. Each key's
 * options must all be taken by the core (cache, policy) or its backend, or it
 * fails naming the unknown option's file and line. The keyset starts with
 * one reference.
 */
kb_code kb_keyset_open(kb_config *cfg, int nslots, kb_keyset **out, kb_err *err);

/*
 * kb_keyset_open_each is kb_keyset_open for `keybrokerd --check`: it tries
 * every key, also after one failed, and hands back the keyset in *out either
 * way (NULL only when out of memory). errs (cfg->nkeys of them) says, per key,
 * KB_OK or why it did not open; a key that did not open must not be used.
 * Returns KB_OK when every key opened, else the first failure's code.
 */
kb_code kb_keyset_open_each(kb_config *cfg, int nslots, kb_keyset **out, kb_err *errs);

/* kb_keyset_unref drops a reference; the last one closes the backends and frees all. */
void kb_keyset_unref(kb_keyset *ks);

/*
 * kb_broker_use_keyset makes ks current (taking over the caller's
 * reference), lending its keys the loop's kb_io if the broker has one.
 */
void kb_broker_use_keyset(kb_broker *b, kb_keyset *ks);

/*
 * kb_broker_attach_io lends io to the current keyset's backends (NULL: takes
 * it back; every call still in flight on them is dropped), and to every
 * keyset made current after.
 */
void kb_broker_attach_io(kb_broker *b, const kb_io *io);

#endif
