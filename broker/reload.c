#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "keys.h"
#include "log.h"
#include "reload.h"
#include "revoke.h"

/* carry keeps a reloaded key's counters and data-key state, so a reload loses no history. */
static void carry(kb_key *to, const kb_key *from)
{
	memcpy(to->backend_calls, from->backend_calls, sizeof(to->backend_calls));
	memcpy(to->backend_errors, from->backend_errors, sizeof(to->backend_errors));
	memcpy(to->latency_hist, from->latency_hist, sizeof(to->latency_hist));
	to->latency_sum_s = from->latency_sum_s;
}

/* warn_fixed names [broker] settings that only a restart applies. */
static void warn_fixed(const kb_config *old, const kb_config *new)
{
	if (strcmp(old->socket, new->socket ? new->socket : old->socket) != 0)
		kb_warn("reload: socket changed; restart keybrokerd to move it");
	if (old->socket_mode != new->socket_mode ||
	    (old->socket_group == NULL) != (new->socket_group == NULL) ||
	    (old->socket_group && strcmp(old->socket_group, new->socket_group) != 0))
		kb_warn("reload: socket_mode and socket_group apply at the next restart");
	if (old->workers != new->workers)
		kb_warn("reload: workers changed; restart keybrokerd to apply it");
	if (old->cache_capacity != new->cache_capacity || old->allow_unlocked_memory != new->allow_unlocked_memory)
		kb_warn("reload: cache_capacity and allow_unlocked_memory apply at the next restart");
	if ((old->audit_log == NULL) != (new->audit_log == NULL) ||
	    (old->audit_log && strcmp(old->audit_log, new->audit_log) != 0))
		kb_warn("reload: audit_log changed; restart keybrokerd to apply it");
}

void kb_reload(kb_broker *b)
{
	kb_keyset *old = b->ks, *ks;
	kb_config *cfg;
	kb_err err;
	int *map;

	if (kb_audit_reopen(b->audit, &err) != KB_OK)
		kb_log_err("SIGHUP: %s", err.msg);
	if (kb_config_load(old->cfg->file, &cfg, &err) != KB_OK) {
		kb_log_err("SIGHUP: the new config is refused, the running one stays: %s", err.msg);
		return;
	}
	warn_fixed(old->cfg, cfg);
	/* settings only a restart applies keep their running values */
	free(cfg->socket);
	if ((cfg->socket = strdup(old->cfg->socket)) == NULL) {
		kb_log_err("SIGHUP: out of memory; the running config stays");
		kb_config_free(cfg);
		return;
	}
	cfg->workers = old->cfg->workers;
	cfg->cache_capacity = old->cfg->cache_capacity;
	cfg->allow_unlocked_memory = old->cfg->allow_unlocked_memory;
	if (kb_keyset_open(cfg, cfg->workers + 1, &ks, &err) != KB_OK) {
		kb_log_err("SIGHUP: the new config is refused, the running one stays: %s", err.msg);
		return;
	}
	map = malloc(sizeof(*map) * (size_t)(old->nkeys ? old->nkeys : 1));
	if (map == NULL) {
		kb_log_err("SIGHUP: out of memory; the running config stays");
		kb_keyset_unref(ks);
		return;
	}
	for (int i = 0; i < old->nkeys; i++) {
		kb_key *k = NULL;
		for (int n = 0; n < ks->nkeys && k == NULL; n++)
			if (strcmp(ks->keys[n].conf->name, old->keys[i].conf->name) == 0)
				k = &ks->keys[n];
		map[i] = k ? k->index : -1;
		if (k)
			carry(k, &old->keys[i]);
	}
	/* cached DEKs stay, under their key's new index; a removed key's are zeroed */
	kb_cache_remap(&b->cache, map, old->nkeys);
	free(map);
	kb_broker_use_keyset(b, ks);
	kb_keyset_unref(old);
	kb_revoke_recheck(b); /* peers the new policy refuses lose their open connections */
	kb_info("SIGHUP: reloaded %s: %d key%s", cfg->file, ks->nkeys, ks->nkeys == 1 ? "" : "s");
}
