#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "keyconf.h"

const char *const kb_keyconf_core[KB_KEYCONF_NCORE] = {
	"backend", "alg", "cache_ttl", "cache_refresh_fraction",
	"datakey_max_age", "datakey_max_uses", "datakey_max_bytes",
};

/* remember_asked notes name as an option someone knows, for suggestions. */
static void remember_asked(kb_keyconf *kc, const char *name)
{
	for (int i = 0; i < kc->nasked; i++)
		if (strcmp(kc->asked[i], name) == 0)
			return;
	if (kc->nasked < KB_KEYCONF_ASKED_MAX)
		kc->asked[kc->nasked++] = name;
}

const char *kb_keyconf_take(kb_keyconf *kc, const char *name, int *line)
{
	remember_asked(kc, name);
	for (int i = 0; i < kc->nopts; i++) {
		if (strcmp(kc->opts[i].name, name) == 0) {
			kc->opts[i].taken = true;
			if (line)
				*line = kc->opts[i].line;
			return kc->opts[i].value;
		}
	}
	if (line)
		*line = 0;
	return NULL;
}

kb_code kb_keyconf_bad(const kb_keyconf *kc, const char *name, kb_err *err, const char *fmt, ...)
{
	char why[256];
	const char *value = "";
	int line = kc->line;
	va_list ap;

	for (int i = 0; i < kc->nopts; i++)
		if (strcmp(kc->opts[i].name, name) == 0) {
			line = kc->opts[i].line;
			value = kc->opts[i].value;
		}
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return kb_err_set(err, KB_E_BAD_REQUEST, "%s:%d: [key:%s] %s: %s%s", kc->file ? kc->file : "config",
			  line, kc->name, name, why, kb_conf_comment_hint(value));
}

kb_code kb_keyconf_unknown(const kb_keyconf *kc, kb_err *err)
{
	const char *names[KB_KEYCONF_NCORE + KB_KEYCONF_ASKED_MAX];
	int n = 0;

	for (int i = 0; i < KB_KEYCONF_NCORE; i++)
		names[n++] = kb_keyconf_core[i];
	for (int i = 0; i < kc->nasked; i++)
		names[n++] = kc->asked[i];
	for (int i = 0; i < kc->nopts; i++) {
		const char *near;

		if (kc->opts[i].taken)
			continue;
		near = kb_conf_nearest(kc->opts[i].name, names, n);
		return kb_err_set(err, KB_E_BAD_REQUEST, "%s:%d: [key:%s] %s: unknown option for backend %s%s%s%s",
				  kc->file ? kc->file : "config", kc->opts[i].line, kc->name, kc->opts[i].name,
				  kc->backend, near ? "; did you mean " : "", near ? near : "", near ? "?" : "");
	}
	return KB_OK;
}

/* distance is the optimal string alignment distance of a and b, capped at 9. */
static int distance(const char *a, const char *b)
{
	enum { MAX = 64 };
	int d[MAX + 1][MAX + 1];
	size_t la = strlen(a), lb = strlen(b);

	if (la > MAX || lb > MAX)
		return 9;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int cost = a[i - 1] != b[j - 1];
			int v = d[i - 1][j - 1] + cost;

			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb] < 9 ? d[la][lb] : 9;
}

const char *kb_conf_nearest(const char *word, const char *const *names, int n)
{
	/* one slip in a short word, two in a longer one: more is another word */
	int best = strlen(word) < 6 ? 1 : strlen(word) < 12 ? 2 : 3;
	const char *found = NULL;

	for (int i = 0; i < n; i++) {
		int d = distance(word, names[i]);

		if (d > 0 && d <= best && !(d == best && found)) {
			best = d;
			found = names[i];
		}
	}
	return found;
}

const char *kb_conf_comment_hint(const char *value)
{
	const char *semi = strchr(value, ';');
	const char *slashes = strstr(value, "//");

	if (strchr(value, '#') || (semi && strpbrk(semi, " \t")) ||
	    (slashes && slashes > value && (slashes[-1] == ' ' || slashes[-1] == '\t')))
		return " (if part of this is meant as a comment: a comment starts with # or ; after a space or tab, "
		       "or at the start of a line)";
	return "";
}
