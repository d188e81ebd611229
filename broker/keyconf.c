#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "keyconf.h"

const char *kb_keyconf_take(kb_keyconf *kc, const char *name, int *line)
{
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
	int line = kc->line;
	va_list ap;

	for (int i = 0; i < kc->nopts; i++)
		if (strcmp(kc->opts[i].name, name) == 0)
			line = kc->opts[i].line;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return kb_err_set(err, KB_E_BAD_REQUEST, "%s:%d: [key:%s] %s: %s", kc->file ? kc->file : "config",
			  line, kc->name, name, why);
}
