/*
 * bench_cmd.c: one `keybroker bench` run (see bench_cmd.h): the driver,
 * the run, its notes, and the report.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cmd.h"
#include "bench_kms.h"

/* note says, in the report, why an unwrap-miss run measured less than asked. */
static void note(const bench_cmd *cmd, const bench_spec *spec, bench_series *s)
{
	if (cmd->op != BENCH_UNWRAP_MISS)
		return;
	if (s->have_counters && s->backend_calls < s->ops)
		snprintf(s->note, sizeof(s->note), "only %llu of %llu unwraps reached the backend",
			 (unsigned long long)s->backend_calls, (unsigned long long)s->ops);
	if (s->elapsed_s + 0.05 < spec->duration_s)
		snprintf(s->note, sizeof(s->note), "the fresh blobs ran out after %.1f s", s->elapsed_s);
}

static void report(const bench_cmd *cmd, const char *key, const char *backend, const bench_series *s)
{
	if (cmd->json) {
		printf("{\"key\":\"%s\",\"backend\":\"%s\",\"op\":\"%s\",\"size\":%zu,\"warmup_s\":%g,"
		       "\"series\":[", key, backend, cmd->opname, cmd->size, cmd->warmup_s);
		bench_report_series_json(stdout, s);
		printf("]}\n");
		return;
	}
	printf("keybroker bench: key %s (%s), op %s, %d client%s, %s, %zu-byte DEKs\n\n", key, backend,
	       cmd->opname, cmd->clients, cmd->clients == 1 ? "" : "s",
	       cmd->requests ? "by request count" : "by duration", cmd->size);
	bench_report_text(stdout, s, 1);
	if (s->have_counters)
		printf("\nbackend calls in the window: %llu (%.2f per request); cache hits %llu, "
		       "misses %llu\n", (unsigned long long)s->backend_calls,
		       s->ops ? (double)s->backend_calls / (double)s->ops : 0.0,
		       (unsigned long long)s->hits, (unsigned long long)s->misses);
}

kb_code bench_cmd_run(const bench_cmd *cmd, char *err, size_t errlen)
{
	bench_spec spec = { 0 };
	bench_broker *b = NULL;
	bench_kms *k = NULL;
	bench_series *s = NULL;
	bench_driver *d;
	const char *key = cmd->key;
	char label[128];
	kb_code code = KB_OK;

	if (cmd->kms_socket) {
		/* the KMS socket names its key: the report shows Status's key_id */
		if ((k = bench_kms_new(cmd->kms_socket, cmd->opname, cmd->size, err, errlen)) == NULL)
			return KB_E_IO;
		key = bench_kms_key_id(k);
		d = bench_kms_driver(k);
	} else {
		if ((b = bench_broker_new(cmd->socket, key, cmd->op, cmd->size, err, errlen)) == NULL)
			return KB_E_IO;
		d = bench_broker_driver(b);
	}
	if ((s = malloc(sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		code = KB_E_IO;
		goto out;
	}
	snprintf(label, sizeof(label), "%s %s", cmd->opname, key);
	bench_series_init(s, label, cmd->clients);
	spec.clients = cmd->clients;
	spec.requests = cmd->requests;
	spec.duration_s = cmd->requests ? 0 : cmd->duration_s;
	spec.warmup_s = cmd->warmup_s;
	spec.label = label;
	spec.progress = cmd->progress;
	if (bench_run(d, &spec, s, err, errlen) != 0) {
		code = KB_E_IO;
		goto out;
	}
	note(cmd, &spec, s);
	report(cmd, key, b ? bench_broker_backend(b) : "kms", s);
	/* the first failure is the one reported; the files are still written */
	if (cmd->csv && bench_report_csv(cmd->csv, s, 1) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", cmd->csv, strerror(errno));
		code = KB_E_IO;
	}
	if (cmd->plot && bench_plot_svg(cmd->plot, "keybroker bench: latency CDF", s, 1) != 0 &&
	    code == KB_OK) {
		snprintf(err, errlen, "cannot write %s: %s", cmd->plot, strerror(errno));
		code = KB_E_IO;
	}
	if (s->errors > 0 && code == KB_OK) {
		snprintf(err, errlen, "%llu of %llu requests failed%s; the first: %s",
			 (unsigned long long)s->errors, (unsigned long long)s->ops,
			 s->errors == s->ops ? " (all of them: nothing was measured)" : "", d->first_error);
		code = kb_code_from_name(d->first_code);
	}
out:
	bench_broker_free(b);
	bench_kms_free(k);
	free(s);
	return code;
}
