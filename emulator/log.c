#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "log.h"

static bool quiet_requests;

void emu_log_quiet(bool quiet)
{
	quiet_requests = quiet;
}

static void stamp(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

void emu_log(const char *fmt, ...)
{
	char ts[64], msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	stamp(ts, sizeof(ts));
	fprintf(stderr, "%s akv-emulator: %s\n", ts, msg);
}

/* clean copies s, replacing bytes a terminal or a log parser would act on. */
static const char *clean(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	for (; s && *s && o + 1 < cap; s++)
		out[o++] = (unsigned char)*s < 0x20 || *s == 0x7f || *s == ' ' ? '?' : *s;
	out[o] = '\0';
	return out;
}

void emu_log_request(const char *where, const char *method, const char *host, const char *path,
		     unsigned status, const char *principal, double ms)
{
	char ts[64], m[16], h[256], p[512], who[128], st[16];

	if (quiet_requests)
		return;
	stamp(ts, sizeof(ts));

	snprintf(st, sizeof(st), status ? "%u" : "dropped", status);
	fprintf(stderr, "%s %s %s %s%s %s principal=%s %.1fms\n", ts, where, clean(method, m, sizeof(m)),
		clean(host, h, sizeof(h)), clean(path, p, sizeof(p)), st,
		principal && *principal ? clean(principal, who, sizeof(who)) : "-", ms);
}
