#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rotation.h"

int emu_duration_parse(const char *s, int64_t *secs)
{
	/* units in the order ISO 8601 writes them; T switches to the time part */
	static const char date_units[] = "YMWD", time_units[] = "HMS";
	static const int64_t date_secs[] = { 365 * 86400LL, 30 * 86400LL, 7 * 86400LL, 86400LL };
	static const int64_t time_secs[] = { 3600, 60, 1 };
	const char *units = date_units;
	const int64_t *mult = date_secs;
	size_t next = 0;
	int64_t total = 0;
	bool any = false, in_time = false;

	if (!s || *s++ != 'P')
		return -1;
	while (*s) {
		int64_t n = 0;
		const char *u;

		if (*s == 'T' && !in_time) {
			in_time = true;
			units = time_units;
			mult = time_secs;
			next = 0;
			s++;
			if (!*s)
				return -1;
			continue;
		}
		if (!isdigit((unsigned char)*s))
			return -1;
		while (isdigit((unsigned char)*s)) {
			n = n * 10 + (*s++ - '0');
			if (n > 1000000)
				return -1;
		}
		if (!*s || !(u = strchr(units + next, *s)))
			return -1;
		next = (size_t)(u - units) + 1;
		total += n * mult[u - units];
		any = true;
		s++;
	}
	if (!any || total <= 0)
		return -1;
	*secs = total;
	return 0;
}

static const char *str_field(const cJSON *o, const char *name, bool *bad)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!f || cJSON_IsNull(f))
		return NULL;
	if (!cJSON_IsString(f))
		*bad = true;
	return cJSON_IsString(f) ? f->valuestring : NULL;
}

static int duration_field(const char *iso, const char *what, char *copy, size_t cap, int64_t *secs,
			  char *err, size_t errlen)
{
	if (strlen(iso) >= cap || emu_duration_parse(iso, secs)) {
		snprintf(err, errlen, "Property '%s' must be an ISO 8601 duration such as P90D; got '%.40s'.",
			 what, iso);
		return -1;
	}
	strcpy(copy, iso);
	return 0;
}

static int parse_action(const cJSON *la, struct emu_policy *out, char *err, size_t errlen)
{
	const cJSON *trig = cJSON_GetObjectItemCaseSensitive(la, "trigger");
	const cJSON *action = cJSON_GetObjectItemCaseSensitive(la, "action");
	const char *type, *after, *before;
	struct emu_lifetime_action *a = &out->act[out->nact];
	bool bad = false;

	if (!cJSON_IsObject(la) || !cJSON_IsObject(trig) || !cJSON_IsObject(action)) {
		snprintf(err, errlen, "Each lifetime action needs a 'trigger' and an 'action' object.");
		return -1;
	}
	type = str_field(action, "type", &bad);
	after = str_field(trig, "timeAfterCreate", &bad);
	before = str_field(trig, "timeBeforeExpiry", &bad);
	if (bad || !type || (strcasecmp(type, "Rotate") && strcasecmp(type, "Notify"))) {
		snprintf(err, errlen, "Property 'action.type' must be 'Rotate' or 'Notify'.");
		return -1;
	}
	if (!after == !before) {
		snprintf(err, errlen, "A lifetime action's trigger needs exactly one of 'timeAfterCreate' or 'timeBeforeExpiry'.");
		return -1;
	}
	if (out->nact == 2) {
		snprintf(err, errlen, "A rotation policy has at most one Rotate and one Notify lifetime action.");
		return -1;
	}
	a->rotate = strcasecmp(type, "Rotate") == 0;
	a->after_create = after != NULL;
	for (size_t i = 0; i < out->nact; i++)
		if (out->act[i].rotate == a->rotate) {
			snprintf(err, errlen, "A rotation policy has at most one %s lifetime action.", type);
			return -1;
		}
	if (duration_field(after ? after : before, after ? "timeAfterCreate" : "timeBeforeExpiry", a->iso,
			   sizeof(a->iso), &a->secs, err, errlen))
		return -1;
	if (!a->rotate && a->after_create) {
		snprintf(err, errlen, "A Notify action is triggered only by 'timeBeforeExpiry'.");
		return -1;
	}
	if (a->rotate && a->secs < EMU_ROTATE_MIN_S) {
		snprintf(err, errlen, "The rotation time (%s) must be at least 7 days (P7D) %s.", a->iso,
			 a->after_create ? "after creation" : "before expiry");
		return -1;
	}
	if (!a->rotate && a->secs < EMU_NOTIFY_MIN_S) {
		snprintf(err, errlen, "The notification time (%s) must be at least 7 days (P7D) before expiry.", a->iso);
		return -1;
	}
	out->nact++;
	return 0;
}

int emu_policy_parse(const cJSON *body, struct emu_policy *out, char *err, size_t errlen)
{
	const cJSON *las = cJSON_GetObjectItemCaseSensitive(body, "lifetimeActions");
	const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(body, "attributes"), *la;
	const char *exp = NULL;
	bool bad = false;

	out->set = true;
	out->nact = 0;
	out->expiry_iso[0] = '\0';
	out->expiry_secs = 0;
	if (las && !cJSON_IsNull(las) && !cJSON_IsArray(las)) {
		snprintf(err, errlen, "Property 'lifetimeActions' must be an array.");
		return -1;
	}
	cJSON_ArrayForEach(la, las)
		if (parse_action(la, out, err, errlen))
			return -1;
	if (attrs && !cJSON_IsNull(attrs)) {
		if (!cJSON_IsObject(attrs) || ((exp = str_field(attrs, "expiryTime", &bad)), bad)) {
			snprintf(err, errlen, "Property 'attributes.expiryTime' must be an ISO 8601 duration.");
			return -1;
		}
	}
	if (exp) {
		if (duration_field(exp, "attributes.expiryTime", out->expiry_iso, sizeof(out->expiry_iso),
				   &out->expiry_secs, err, errlen))
			return -1;
		if (out->expiry_secs < EMU_EXPIRY_MIN_S) {
			snprintf(err, errlen, "The expiry time (%s) must be at least 28 days (P28D).", exp);
			return -1;
		}
		for (size_t i = 0; i < out->nact; i++) {
			const struct emu_lifetime_action *a = &out->act[i];

			if (a->secs > out->expiry_secs - EMU_ROTATE_MIN_S) {
				snprintf(err, errlen, "The %s time (%s) must leave at least 7 days before the expiry time (%s).",
					 a->rotate ? "rotation" : "notification", a->iso, exp);
				return -1;
			}
		}
	}
	return 0;
}

static cJSON *action_json(bool rotate, bool after_create, const char *iso)
{
	cJSON *la = cJSON_CreateObject();
	cJSON *trig = cJSON_AddObjectToObject(la, "trigger");

	cJSON_AddStringToObject(trig, after_create ? "timeAfterCreate" : "timeBeforeExpiry", iso);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(la, "action"), "type", rotate ? "Rotate" : "Notify");
	return la;
}

cJSON *emu_policy_json(const struct emu_policy *p, const char *id)
{
	cJSON *root = cJSON_CreateObject(), *arr, *attrs;

	if (id)
		cJSON_AddStringToObject(root, "id", id);
	arr = cJSON_AddArrayToObject(root, "lifetimeActions");
	attrs = cJSON_AddObjectToObject(root, "attributes");
	if (!p->set) {
		/* what Azure answers for a key that never had a policy */
		cJSON_AddItemToArray(arr, action_json(false, false, "P30D"));
		return root;
	}
	for (size_t i = 0; i < p->nact; i++)
		cJSON_AddItemToArray(arr, action_json(p->act[i].rotate, p->act[i].after_create, p->act[i].iso));
	if (p->expiry_iso[0])
		cJSON_AddStringToObject(attrs, "expiryTime", p->expiry_iso);
	cJSON_AddNumberToObject(attrs, "created", (double)p->created);
	cJSON_AddNumberToObject(attrs, "updated", (double)p->updated);
	return root;
}

static const struct emu_lifetime_action *find(const struct emu_policy *p, bool rotate)
{
	for (size_t i = 0; p->set && i < p->nact; i++)
		if (p->act[i].rotate == rotate)
			return &p->act[i];
	return NULL;
}

int64_t emu_policy_rotate_due(const struct emu_policy *p, int64_t created, int64_t exp)
{
	const struct emu_lifetime_action *a = find(p, true);

	if (!a)
		return 0;
	if (a->after_create)
		return created + a->secs;
	return exp ? exp - a->secs : 0;
}

int64_t emu_policy_notify_due(const struct emu_policy *p, int64_t exp)
{
	const struct emu_lifetime_action *a = find(p, false);

	return a && exp ? exp - a->secs : 0;
}

cJSON *emu_policy_state(const struct emu_policy *p)
{
	cJSON *o;

	if (!p->set)
		return NULL;
	o = emu_policy_json(p, NULL);
	cJSON_AddStringToObject(o, "notified", p->notified);
	return o;
}

void emu_policy_from_state(const cJSON *o, struct emu_policy *p)
{
	const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(o, "attributes");
	const cJSON *f;
	char err[160];

	memset(p, 0, sizeof(*p));
	if (!cJSON_IsObject(o) || emu_policy_parse(o, p, err, sizeof(err))) {
		memset(p, 0, sizeof(*p));
		return;
	}
	if ((f = cJSON_GetObjectItemCaseSensitive(attrs, "created")) && cJSON_IsNumber(f))
		p->created = (int64_t)f->valuedouble;
	if ((f = cJSON_GetObjectItemCaseSensitive(attrs, "updated")) && cJSON_IsNumber(f))
		p->updated = (int64_t)f->valuedouble;
	if ((f = cJSON_GetObjectItemCaseSensitive(o, "notified")) && cJSON_IsString(f) &&
	    strlen(f->valuestring) < sizeof(p->notified))
		strcpy(p->notified, f->valuestring);
}
