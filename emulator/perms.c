#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "perms.h"

static const char *const perm_names[] = {
	"get", "wrapKey", "unwrapKey", "encrypt", "decrypt", "create", "update", "delete",
	"recover", "purge", "rotate", "import", "backup", "restore", "getrotationpolicy",
	"setrotationpolicy", "rng",
};
#define NPERMS (sizeof(perm_names) / sizeof(perm_names[0]))

const char *emu_perm_name(unsigned bit)
{
	for (unsigned i = 0; i < NPERMS; i++)
		if (bit == 1u << i)
			return perm_names[i];
	return "";
}

int emu_perm_parse_list(const char *s, unsigned *out, char *bad, size_t badlen)
{
	*out = 0;
	while (*s) {
		size_t n = strcspn(s, " ,\t");
		bool found = false;

		if (n == 0) {
			s++;
			continue;
		}
		if ((n == 3 && strncasecmp(s, "all", 3) == 0) || (n == 1 && *s == '*')) {
			*out |= EMU_P_ALL;
			found = true;
		}
		for (unsigned i = 0; i < NPERMS && !found; i++) {
			if (strlen(perm_names[i]) == n && strncasecmp(s, perm_names[i], n) == 0) {
				*out |= 1u << i;
				found = true;
			}
		}
		if (!found) {
			snprintf(bad, badlen, "%.*s", (int)n, s);
			return -1;
		}
		s += n;
	}
	return 0;
}

cJSON *emu_perm_json(unsigned perms)
{
	cJSON *a = cJSON_CreateArray();

	for (unsigned i = 0; i < NPERMS; i++)
		if (perms & (1u << i))
			cJSON_AddItemToArray(a, cJSON_CreateString(perm_names[i]));
	return a;
}

void emu_scope(char *out, size_t cap, bool mhsm, const char *vault, const char *key)
{
	snprintf(out, cap, "%s/%s%s%s", mhsm ? "mhsm" : "vault", vault, key ? "/" : "",
		 key ? key : "");
}

struct emu_principal *emu_principal_find(struct emu_world *w, const char *id)
{
	for (size_t i = 0; i < w->nprincipals; i++)
		if (strcmp(w->principals[i].id, id) == 0)
			return &w->principals[i];
	return NULL;
}

struct emu_principal *emu_principal_add(struct emu_world *w, const char *id)
{
	struct emu_principal *p = emu_principal_find(w, id), *grown;

	if (p)
		return p;
	if (strlen(id) >= sizeof(p->id))
		return NULL;
	grown = realloc(w->principals, (w->nprincipals + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	w->principals = grown;
	p = &w->principals[w->nprincipals++];
	memset(p, 0, sizeof(*p));
	strcpy(p->id, id);
	p->default_perms = EMU_P_ALL;
	return p;
}

static struct emu_grant *grant_find(const struct emu_principal *p, const char *scope)
{
	for (size_t i = 0; i < p->ngrants; i++)
		if (strcasecmp(p->grants[i].scope, scope) == 0)
			return &p->grants[i];
	return NULL;
}

int emu_grant_put(struct emu_principal *p, const char *scope, unsigned perms)
{
	struct emu_grant *g = grant_find(p, scope), *grown;

	if (!g) {
		if (strlen(scope) >= sizeof(g->scope))
			return -1;
		grown = realloc(p->grants, (p->ngrants + 1) * sizeof(*grown));
		if (!grown)
			return -1;
		p->grants = grown;
		g = &p->grants[p->ngrants++];
		strcpy(g->scope, scope);
	}
	g->perms = perms;
	return 0;
}

unsigned emu_perms_effective(const struct emu_principal *p, bool mhsm, const char *vault,
			     const char *key)
{
	char scope[sizeof(p->grants->scope)];
	const struct emu_grant *g;

	if (key) {
		emu_scope(scope, sizeof(scope), mhsm, vault, key);
		if ((g = grant_find(p, scope)))
			return g->perms;
	}
	emu_scope(scope, sizeof(scope), mhsm, vault, NULL);
	if ((g = grant_find(p, scope)))
		return g->perms;
	return p->default_perms;
}

int emu_perms_change(struct emu_principal *p, bool mhsm, const char *vault, const char *key,
		     unsigned bits, bool grant)
{
	char scope[sizeof(p->grants->scope)];
	unsigned now = emu_perms_effective(p, mhsm, vault, key);
	size_t plen;

	emu_scope(scope, sizeof(scope), mhsm, vault, key);
	if (emu_grant_put(p, scope, grant ? now | bits : now & ~bits))
		return -1;
	if (key)
		return 0;
	/* a vault-scope change reaches every key-scope entry under the vault */
	plen = strlen(scope);
	for (size_t i = 0; i < p->ngrants; i++) {
		struct emu_grant *g = &p->grants[i];

		if (strncasecmp(g->scope, scope, plen) == 0 && g->scope[plen] == '/')
			g->perms = grant ? g->perms | bits : g->perms & ~bits;
	}
	return 0;
}
