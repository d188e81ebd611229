#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keys.h"
#include "log.h"

int64_t kb_now_ms(void)
{
	return kb_now_us() / 1000;
}

int64_t kb_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *kb_bop_name(kb_bop op)
{
	static const char *const names[KB_BOP_COUNT] = { "describe", "wrap", "unwrap",
							 "rotate", "random", "doctor" };

	return (unsigned)op < KB_BOP_COUNT ? names[op] : "";
}

kb_key *kb_key_find(kb_broker *b, const char *name)
{
	for (int i = 0; i < b->nkeys; i++)
		if (strcmp(b->keys[i].conf->name, name) == 0)
			return &b->keys[i];
	return NULL;
}

static kb_code check_all_taken(const kb_keyconf *kc, kb_err *err)
{
	for (int i = 0; i < kc->nopts; i++)
		if (!kc->opts[i].taken)
			return kb_err_set(err, KB_E_BAD_REQUEST,
					  "%s:%d: [key:%s] %s: unknown option for backend %s", kc->file,
					  kc->opts[i].line, kc->name, kc->opts[i].name, kc->backend);
	return KB_OK;
}

kb_code kb_keys_open(kb_broker *b, int nslots, kb_err *err)
{
	kb_config *cfg = b->cfg;
	kb_code rc;

	b->keys = calloc((size_t)(cfg->nkeys ? cfg->nkeys : 1), sizeof(*b->keys));
	if (b->keys == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	for (int i = 0; i < cfg->nkeys; i++) {
		kb_keyconf *kc = &cfg->keys[i];
		kb_key *k = &b->keys[i];

		k->conf = kc;
		k->index = i;
		k->ttl_ms = kc->cache_ttl_ms >= 0 ? kc->cache_ttl_ms : cfg->cache_ttl_ms;
		k->ops = kb_backend_find(kc->backend);
		if (k->ops == NULL)
			return kb_err_set(err, KB_E_BAD_REQUEST, "%s:%d: [key:%s] backend: \"%s\" is not a backend (pkcs11 or azure)",
					  kc->file, kc->line, kc->name, kc->backend);
		rc = k->ops->open(kc, nslots, &k->state, err);
		b->nkeys = i + 1; /* so kb_keys_close closes what opened */
		if (rc != KB_OK) {
			k->state = NULL;
			return rc;
		}
		if ((rc = check_all_taken(kc, err)) != KB_OK)
			return rc;
		k->healthy = true;
	}
	return KB_OK;
}

void kb_keys_close(kb_broker *b)
{
	for (int i = 0; i < b->nkeys; i++)
		if (b->keys[i].ops && b->keys[i].state)
			b->keys[i].ops->close(b->keys[i].state);
	free(b->keys);
	b->keys = NULL;
	b->nkeys = 0;
}
