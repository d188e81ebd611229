/*
 * keys.h: the configured keys, each with its backend instance open.
 */
#ifndef KB_KEYS_H
#define KB_KEYS_H

#include "broker.h"

/*
 * kb_keys_open opens a backend instance for every key of cfg with nslots
 * slots and fills b->keys. Each key's options must all be taken by its
 * backend, or it fails naming the unknown option's file and line.
 */
kb_code kb_keys_open(kb_broker *b, int nslots, kb_err *err);

/* kb_keys_close closes every backend instance and frees b->keys. */
void kb_keys_close(kb_broker *b);

#endif
