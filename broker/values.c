/*
 * values.c: the values of configuration options (see values.h).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "values.h"

typedef struct unit {
	const char *suffix;
	int64_t mul;
} unit;

/*
 * parse_scaled reads a non-negative integer with one of units' suffixes,
 * matched ignoring case when nocase ("5M" is no duration: months or minutes?).
 */
static bool parse_scaled(const char *s, const unit *units, bool nocase, int64_t *out)
{
	char *end;
	long long v;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v < 0)
		return false;
	for (; units->suffix; units++) {
		if ((nocase ? strcasecmp(end, units->suffix) : strcmp(end, units->suffix)) == 0) {
			if (v > INT64_MAX / units->mul)
				return false;
			*out = v * units->mul;
			return true;
		}
	}
	return false;
}

bool kb_parse_duration(const char *s, int64_t *ms)
{
	static const unit units[] = { { "", 1000 }, { "s", 1000 }, { "ms", 1 }, { "m", 60000 },
				      { "h", 3600000 }, { "d", 86400000 }, { NULL, 0 } };

	return parse_scaled(s, units, false, ms);
}

bool kb_parse_duration_us(const char *s, int64_t *us)
{
	static const unit units[] = { { "", 1000000 }, { "s", 1000000 }, { "ms", 1000 }, { "us", 1 },
				      { NULL, 0 } };

	return parse_scaled(s, units, false, us);
}

bool kb_parse_size(const char *s, int64_t *bytes)
{
	static const unit units[] = { { "", 1 }, { "k", 1024 }, { "kib", 1024 }, { "m", 1 << 20 },
				      { "mib", 1 << 20 }, { NULL, 0 } };

	return parse_scaled(s, units, true, bytes);
}

bool kb_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

bool kb_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/* resolve_id reads one uid or gid, by number or name. */
static bool resolve_id(const char *t, bool group, uint32_t *out, char *why, size_t whylen);

bool kb_parse_idlist(const char *s, bool groups, kb_idlist *out, char *why, size_t whylen)
{
	char *copy = strdup(s), *save = NULL;
	bool ok = true;

	if (copy == NULL) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	out->n = 0;
	out->set = true;
	for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
		if (out->n == KB_MAX_IDS) {
			snprintf(why, whylen, "more than %d entries", KB_MAX_IDS);
			ok = false;
			break;
		}
		if (!(ok = resolve_id(t, groups, &out->ids[out->n], why, whylen)))
			break;
		out->n++;
	}
	free(copy);
	return ok;
}

static bool resolve_id(const char *t, bool group, uint32_t *out, char *why, size_t whylen)
{
	int64_t v;

	if (kb_parse_int(t, 0, UINT32_MAX - 1, &v)) {
		*out = (uint32_t)v;
		return true;
	}
	if (group) {
		struct group *g = getgrnam(t);
		if (g) {
			*out = g->gr_gid;
			return true;
		}
		snprintf(why, whylen, "no group named \"%s\"", t);
		return false;
	}
	struct passwd *p = getpwnam(t);
	if (p) {
		*out = p->pw_uid;
		return true;
	}
	snprintf(why, whylen, "no user named \"%s\"", t);
	return false;
}

bool kb_parse_acl(const char *s, kb_idlist *uids, kb_idlist *gids, char *why, size_t whylen)
{
	char *copy = strdup(s), *save = NULL;
	bool ok = true;

	if (copy == NULL) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	memset(uids, 0, sizeof(*uids));
	memset(gids, 0, sizeof(*gids));
	uids->set = gids->set = true;
	for (char *t = strtok_r(copy, ", \t", &save); ok && t; t = strtok_r(NULL, ", \t", &save)) {
		bool group = *t == '@';
		kb_idlist *l = group ? gids : uids;

		if (l->n == KB_MAX_IDS) {
			snprintf(why, whylen, "more than %d entries", KB_MAX_IDS);
			ok = false;
		} else if ((ok = resolve_id(group ? t + 1 : t, group, &l->ids[l->n], why, whylen))) {
			l->n++;
		}
	}
	free(copy);
	return ok;
}

bool kb_parse_hostport(const char *s, const char *default_host, char *host, size_t hostcap, unsigned *port)
{
	const char *colon = strrchr(s, ':'), *p = colon ? colon + 1 : s;
	size_t hl = colon ? (size_t)(colon - s) : strlen(default_host);
	const char *h = colon ? s : default_host;
	int64_t v;

	if (*p == '\0' || strspn(p, "0123456789") != strlen(p) || !kb_parse_int(p, 0, 65535, &v))
		return false;
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	} else if (colon && memchr(s, ':', hl) != NULL) {
		return false; /* an IPv6 address goes in brackets: [::1]:9464 */
	}
	if (hl == 0 || hl >= hostcap)
		return false;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (unsigned)v;
	return true;
}

bool kb_host_is_any(const char *host)
{
	unsigned char a[16], zero[16] = { 0 };

	if (inet_pton(AF_INET, host, a) == 1)
		return memcmp(a, zero, 4) == 0;
	return inet_pton(AF_INET6, host, a) == 1 && memcmp(a, zero, 16) == 0;
}
