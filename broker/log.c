#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static kb_log_level max_level = KB_LOG_INFO;
static const char *const names[] = { "error", "warning", "info", "debug" };

void kb_log_set_level(kb_log_level level)
{
	max_level = level;
}

int kb_log_parse_level(const char *name)
{
	static const char *const accepted[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++)
		if (strcmp(name, accepted[i]) == 0 || strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

void kb_log_at(kb_log_level level, const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one fprintf per line, so lines from threads do not interleave */
	if (level == KB_LOG_DEBUG)
		fprintf(stderr, "keybrokerd: %s: %s (%s:%d)\n", names[level], msg, file, line);
	else
		fprintf(stderr, "keybrokerd: %s: %s\n", names[level], msg);
}
