/*
 * bench_report.c: a run's series as a table for people, as JSON objects and
 * as CSV rows. Latencies are shown in microseconds.
 */
#include <errno.h>
#include <stdio.h>

#include "bench.h"

static const double pcts[] = { 50, 90, 99, 99.9 };
static const char *const pct_names[] = { "p50", "p90", "p99", "p99_9" };
#define NPCTS (sizeof(pcts) / sizeof(pcts[0]))

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static double hit_ratio(const bench_series *s)
{
	uint64_t all = s->hits + s->misses;

	return all ? (double)s->hits / (double)all : -1;
}

void bench_report_text(FILE *f, const bench_series *s, size_t n)
{
	fprintf(f, "%-26s %7s %9s %6s %10s %9s %9s %9s %9s %9s %9s %6s\n", "series", "clients", "requests",
		"errors", "req/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "backend", "hits");
	for (size_t i = 0; i < n; i++) {
		const bench_series *x = &s[i];

		if (x->skipped) {
			fprintf(f, "%-26s skipped: %s\n", x->name, x->note);
			continue;
		}
		fprintf(f, "%-26s %7d %9llu %6llu", x->name, x->clients, (unsigned long long)x->ops,
			(unsigned long long)x->errors);
		if (x->hist.count == 0) {
			/* nothing succeeded: there is no throughput or latency to show */
			fprintf(f, " %10s", "-");
			for (size_t k = 0; k <= NPCTS; k++)
				fprintf(f, " %9s", "-");
		} else {
			fprintf(f, " %10.0f", bench_throughput(x));
			for (size_t k = 0; k < NPCTS; k++)
				fprintf(f, " %9.1f", us(bench_hist_pct(&x->hist, pcts[k])));
			fprintf(f, " %9.1f", us(x->hist.max));
		}
		if (x->have_counters)
			fprintf(f, " %9llu %5.1f%%\n", (unsigned long long)x->backend_calls,
				hit_ratio(x) < 0 ? 0.0 : 100.0 * hit_ratio(x));
		else
			fprintf(f, " %9s %6s\n", "-", "-");
		if (x->note[0])
			fprintf(f, "  note: %s\n", x->note);
		if (x->errors > 0)
			fprintf(f, "  note: %llu request%s failed; req/s and latencies are of the %llu "
				"that succeeded\n", (unsigned long long)x->errors, x->errors == 1 ? "" : "s",
				(unsigned long long)(x->ops - x->errors));
	}
}

/* json_str writes s as a JSON string; our strings are printable, but quote what needs it. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", (unsigned)(unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void bench_report_series_json(FILE *f, const bench_series *s)
{
	fprintf(f, "{\"series\":");
	json_str(f, s->name);
	fprintf(f, ",\"skipped\":%s", s->skipped ? "true" : "false");
	if (s->note[0]) {
		fprintf(f, ",\"note\":");
		json_str(f, s->note);
	}
	fprintf(f, ",\"clients\":%d,\"requests\":%llu,\"errors\":%llu,\"elapsed_s\":%.3f,\"throughput\":%.1f",
		s->clients, (unsigned long long)s->ops, (unsigned long long)s->errors, s->elapsed_s,
		bench_throughput(s));
	/* latencies are of the requests that succeeded; with none, there are none */
	if (s->hist.count == 0) {
		fprintf(f, ",\"latency_us\":null");
	} else {
		fprintf(f, ",\"latency_us\":{\"min\":%.3f,\"mean\":%.3f", us(s->hist.min),
			s->hist.sum / (double)s->hist.count / 1000.0);
		for (size_t k = 0; k < NPCTS; k++)
			fprintf(f, ",\"%s\":%.3f", pct_names[k], us(bench_hist_pct(&s->hist, pcts[k])));
		fprintf(f, ",\"max\":%.3f}", us(s->hist.max));
	}
	if (s->have_counters) {
		fprintf(f, ",\"backend_calls\":%llu,\"hits\":%llu,\"misses\":%llu,\"hit_ratio\":",
			(unsigned long long)s->backend_calls, (unsigned long long)s->hits,
			(unsigned long long)s->misses);
		if (hit_ratio(s) < 0)
			fprintf(f, "null");
		else
			fprintf(f, "%.4f", hit_ratio(s));
	}
	fputc('}', f);
}

int bench_report_close(FILE *f)
{
	int e;

	if (ferror(f)) {
		e = errno;
		fclose(f);
		errno = e;
		return -1;
	}
	return fclose(f);
}

int bench_report_csv(const char *path, const bench_series *s, size_t n)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fprintf(f, "series,clients,requests,errors,elapsed_s,throughput,min_us,mean_us,p50_us,p90_us,p99_us,"
		"p99_9_us,max_us,backend_calls,hits,misses,hit_ratio,note\n");
	for (size_t i = 0; i < n; i++) {
		const bench_series *x = &s[i];

		fprintf(f, "%s,%d,%llu,%llu,%.3f,%.1f,%.3f,%.3f", x->name, x->clients,
			(unsigned long long)x->ops, (unsigned long long)x->errors, x->elapsed_s,
			bench_throughput(x), us(x->hist.count ? x->hist.min : 0),
			x->hist.count ? x->hist.sum / (double)x->hist.count / 1000.0 : 0.0);
		for (size_t k = 0; k < NPCTS; k++)
			fprintf(f, ",%.3f", us(bench_hist_pct(&x->hist, pcts[k])));
		fprintf(f, ",%.3f", us(x->hist.count ? x->hist.max : 0));
		if (x->have_counters && hit_ratio(x) >= 0)
			fprintf(f, ",%llu,%llu,%llu,%.4f", (unsigned long long)x->backend_calls,
				(unsigned long long)x->hits, (unsigned long long)x->misses, hit_ratio(x));
		else if (x->have_counters)
			fprintf(f, ",%llu,%llu,%llu,", (unsigned long long)x->backend_calls,
				(unsigned long long)x->hits, (unsigned long long)x->misses);
		else
			fprintf(f, ",,,,");
		/* a note is free text: quote it, doubling quotes */
		fputs(",\"", f);
		for (const char *p = x->note; *p; p++) {
			if (*p == '"')
				fputc('"', f);
			fputc(*p, f);
		}
		fputs("\"\n", f);
	}
	return bench_report_close(f);
}
