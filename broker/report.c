#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "jsonw.h"
#include "peer.h"
#include "report.h"

static uint64_t sum(const uint64_t *v, int n)
{
	uint64_t s = 0;

	for (int i = 0; i < n; i++)
		s += v[i];
	return s;
}

static void field_u64(kb_buf *o, const char *name, uint64_t v)
{
	kb_jw_key(o, name);
	kb_jw_i64(o, (int64_t)v);
}

/* cache_classes writes the arena's size classes: which DEKs each holds, and how full it is. */
static void cache_classes(const kb_arena *a, kb_buf *o)
{
	kb_jw_key(o, "classes");
	kb_jw_raw(o, "[");
	for (int k = 0; k < a->nclasses; k++) {
		const kb_arena_class *c = &a->cls[k];
		kb_jw_raw(o, k ? ",{\"dek_bytes\":" : "{\"dek_bytes\":");
		kb_jw_i64(o, (int64_t)c->slot_bytes);
		field_u64(o, "slots", c->nslots);
		field_u64(o, "entries", c->nslots - c->nfree);
		field_u64(o, "locked_bytes", a->locked ? c->bytes : 0);
		kb_jw_raw(o, "}");
	}
	kb_jw_raw(o, "]");
}

/* metrics_listen says where the HTTP operator endpoints listen, and whether that is every interface */
static void metrics_listen(const kb_config *cfg, kb_buf *o)
{
	char host[256];
	unsigned port;

	if (cfg->metrics_listen == NULL || !kb_parse_hostport(cfg->metrics_listen, "127.0.0.1", host, sizeof(host), &port))
		return;
	kb_jw_raw(o, ",\"metrics_listen\":{\"address\":");
	kb_jw_str(o, cfg->metrics_listen);
	kb_jw_raw(o, kb_host_is_any(host) ? ",\"every_interface\":true}" : ",\"every_interface\":false}");
}

void kb_report_status(kb_broker *b, kb_buf *o)
{
	const kb_counters *n = &b->counters;
	uint64_t calls = 0;

	kb_jw_key(o, "version");
	kb_jw_str(o, KB_VERSION);
	field_u64(o, "uptime_s", (uint64_t)((kb_now_ms() - b->started_ms) / 1000));
	kb_jw_raw(o, b->cache.arena.locked ? ",\"memory_locked\":true" : ",\"memory_locked\":false");

	kb_jw_raw(o, ",\"cache\":{\"capacity\":");
	kb_jw_i64(o, b->cache.capacity);
	field_u64(o, "entries", (uint64_t)b->cache.count);
	field_u64(o, "locked_bytes", b->cache.arena.locked_bytes);
	field_u64(o, "ttl_s", (uint64_t)(b->cfg->cache_ttl_ms / 1000));
	cache_classes(&b->cache.arena, o);
	kb_jw_raw(o, "}");

	kb_jw_key(o, "keys");
	kb_jw_raw(o, "[");
	for (int i = 0; i < b->nkeys; i++) {
		const kb_key *k = &b->keys[i];
		kb_jw_raw(o, i ? ",{\"name\":" : "{\"name\":");
		kb_jw_str(o, k->conf->name);
		kb_jw_key(o, "backend");
		kb_jw_str(o, k->ops->name);
		kb_jw_key(o, "alg");
		kb_jw_str(o, kb_alg_name(k->conf->alg));
		field_u64(o, "ttl_s", (uint64_t)(k->ttl_ms / 1000));
		kb_jw_raw(o, k->healthy ? ",\"healthy\":true" : ",\"healthy\":false");
		kb_jw_raw(o, k->down ? ",\"available\":false" : ",\"available\":true");
		if (k->down) { /* outage.h: its key service was down when it opened */
			kb_jw_key(o, "unavailable");
			kb_jw_str(o, k->down_err.msg);
		}
		if (k->checked) /* health.c runs with a [kms:] socket or metrics_listen */
			kb_jw_raw(o, k->check_ok ? ",\"check\":\"ok\"" : ",\"check\":\"failed\"");
		if (k->checked && !k->check_ok) {
			kb_jw_key(o, "check_error");
			kb_jw_str(o, k->check_error);
		}
		if (k->last_code != KB_OK) {
			kb_jw_key(o, "last_error");
			kb_jw_str(o, kb_code_name(k->last_code));
		}
		field_u64(o, "backend_calls", sum(k->backend_calls, KB_BOP_COUNT));
		/* unwraps by location (keys.c, previous): a previous one that stays at 0 may go */
		kb_jw_raw(o, ",\"locations\":[{\"location\":\"current\"");
		field_u64(o, "unwraps", atomic_load(&k->unwraps_current));
		for (int p = 0; p < k->nprev; p++) {
			kb_jw_raw(o, "},{\"location\":");
			kb_jw_str(o, k->prev[p].where);
			kb_jw_raw(o, k->prev[p].state ? ",\"open\":true" : ",\"open\":false");
			field_u64(o, "unwraps", atomic_load(&k->prev[p].unwraps));
		}
		kb_jw_raw(o, "}]}");
		calls += sum(k->backend_calls, KB_BOP_COUNT);
	}
	kb_jw_raw(o, "]");

	metrics_listen(b->cfg, o);

	kb_jw_raw(o, ",\"counters\":{\"requests\":");
	kb_jw_i64(o, (int64_t)sum(n->requests, KB_OP_COUNT));
	field_u64(o, "errors", sum(n->errors, KB_OP_COUNT));
	field_u64(o, "hits", n->hits);
	field_u64(o, "misses", n->misses);
	field_u64(o, "joins", n->joins);
	field_u64(o, "backend_calls", calls);
	field_u64(o, "refreshes", n->refreshes);
	field_u64(o, "refresh_failures", n->refresh_failures);
	field_u64(o, "stale_answers", n->stale_answers);
	field_u64(o, "loop_calls", n->loop_calls);
	field_u64(o, "loop_waits", n->loop_waits);
	field_u64(o, "datakey_reused", n->datakey_reused);
	field_u64(o, "evicted_ttl", b->cache.evictions[KB_EVICT_TTL]);
	field_u64(o, "evicted_lru", b->cache.evictions[KB_EVICT_LRU]);
	field_u64(o, "evicted_flush", b->cache.evictions[KB_EVICT_FLUSH]);
	field_u64(o, "connections", (uint64_t)b->nconns);
	field_u64(o, "connections_refused", n->conns_refused);
	field_u64(o, "kms_calls", sum(n->kms_calls, 3));
	field_u64(o, "kms_errors", sum(n->kms_errors, 3));
	kb_jw_raw(o, "}");
}

/* line appends one formatted line to t, cut at 511 bytes. */
static void line(kb_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(kb_buf *t, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n > 0)
		kb_buf_append(t, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

/* metric appends one Prometheus sample line. */
static void metric(kb_buf *t, const char *name, const char *labels, double v)
{
	line(t, "%s%s%s%s %.17g\n", name, labels ? "{" : "", labels ? labels : "", labels ? "}" : "", v);
}

static void help(kb_buf *t, const char *name, const char *type, const char *text)
{
	line(t, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* One family of one unlabelled sample. */
struct single {
	const char *name, *type, *text;
	double v;
};

/* singles writes each family of f[0..n): its HELP, TYPE and value. */
static void singles(kb_buf *t, const struct single *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		help(t, f[i].name, f[i].type, f[i].text);
		metric(t, f[i].name, NULL, f[i].v);
	}
}

/* per_key_op writes one counter family labelled by key and backend op; field is a kb_key member. */
static void per_key_op(kb_broker *b, kb_buf *t, const char *name, const char *text, size_t field)
{
	char labels[256];

	help(t, name, "counter", text);
	for (int i = 0; i < b->nkeys; i++) {
		const uint64_t *v = (const uint64_t *)((const char *)&b->keys[i] + field);
		for (int op = 0; op < KB_BOP_COUNT; op++) {
			snprintf(labels, sizeof(labels), "key=\"%s\",op=\"%s\"", b->keys[i].conf->name,
				 kb_bop_name((kb_bop)op));
			metric(t, name, labels, (double)v[op]);
		}
	}
}

static void backend_metrics(kb_broker *b, kb_buf *t)
{
	char labels[256];

	per_key_op(b, t, "keybroker_backend_calls_total", "Calls made to the key service, by key and operation.",
		   offsetof(kb_key, backend_calls));
	per_key_op(b, t, "keybroker_backend_errors_total", "Calls to the key service that failed.",
		   offsetof(kb_key, backend_errors));
	help(t, "keybroker_backend_latency_seconds", "histogram", "Latency of calls to the key service.");
	for (int i = 0; i < b->nkeys; i++) {
		const kb_key *k = &b->keys[i];
		uint64_t cum = 0;
		for (int h = 0; h < KB_HIST_BUCKETS; h++) {
			cum += k->latency_hist[h];
			if (h == KB_HIST_BUCKETS - 1)
				snprintf(labels, sizeof(labels), "key=\"%s\",le=\"+Inf\"", k->conf->name);
			else
				snprintf(labels, sizeof(labels), "key=\"%s\",le=\"%.6f\"", k->conf->name,
					 (double)((int64_t)1 << h) / 1e6);
			metric(t, "keybroker_backend_latency_seconds_bucket", labels, (double)cum);
		}
		snprintf(labels, sizeof(labels), "key=\"%s\"", k->conf->name);
		metric(t, "keybroker_backend_latency_seconds_sum", labels, k->latency_sum_s);
		metric(t, "keybroker_backend_latency_seconds_count", labels, (double)cum);
	}
	help(t, "keybroker_location_unwraps_total", "counter",
	     "Unwraps by key and location: current, or previousN for the key's Nth previous = (status names it).");
	for (int i = 0; i < b->nkeys; i++) {
		const kb_key *k = &b->keys[i];

		snprintf(labels, sizeof(labels), "key=\"%s\",location=\"current\"", k->conf->name);
		metric(t, "keybroker_location_unwraps_total", labels, (double)atomic_load(&k->unwraps_current));
		for (int p = 0; p < k->nprev; p++) {
			snprintf(labels, sizeof(labels), "key=\"%s\",location=\"previous%d\"", k->conf->name, p + 1);
			metric(t, "keybroker_location_unwraps_total", labels, (double)atomic_load(&k->prev[p].unwraps));
		}
	}
	help(t, "keybroker_key_healthy", "gauge", "1 if the last call to the key service worked.");
	for (int i = 0; i < b->nkeys; i++) {
		snprintf(labels, sizeof(labels), "key=\"%s\"", b->keys[i].conf->name);
		metric(t, "keybroker_key_healthy", labels, b->keys[i].healthy);
	}
}

/* peer_metrics writes the fairness refusals (peer.h): by limit, and (with peers) by peer for the peers still known. */
static void peer_metrics(kb_broker *b, kb_buf *t, bool peers)
{
	char labels[128];

	if (b->peers == NULL)
		return;
	help(t, "keybroker_busy_refusals_total", "counter",
	     "Connections and requests refused busy by a limit on connections or a peer's share, by limit.");
	for (int l = 0; l < KB_LIMIT_COUNT; l++) {
		snprintf(labels, sizeof(labels), "limit=\"%s\"", kb_peer_limit_name((kb_peer_limit)l));
		metric(t, "keybroker_busy_refusals_total", labels, (double)b->peers->refused[l]);
	}
	if (!peers)
		return;
	help(t, "keybroker_peer_busy_refusals_total", "counter",
	     "Busy refusals of each peer (uid, pid) still connected or refused within the last minute, by limit.");
	for (const kb_peer *p = b->peers->list; p; p = p->next) {
		for (int l = 0; l < KB_LIMIT_COUNT; l++) {
			if (p->refused[l] == 0)
				continue;
			snprintf(labels, sizeof(labels), "uid=\"%u\",pid=\"%d\",limit=\"%s\"", (unsigned)p->uid,
				 (int)p->pid, kb_peer_limit_name((kb_peer_limit)l));
			metric(t, "keybroker_peer_busy_refusals_total", labels, (double)p->refused[l]);
		}
	}
}

/* uid_wait returns the i-th series of w and its label (NULL past the last). */
static const kb_uid_wait *uid_wait(const kb_uid_waits *w, int i, char *labels, size_t cap)
{
	if (i < w->n) {
		snprintf(labels, cap, "uid=\"%u\"", (unsigned)w->uids[i].uid);
		return &w->uids[i];
	}
	if (i > w->n || w->other.count == 0)
		return NULL;
	snprintf(labels, cap, "uid=\"other\"");
	return &w->other;
}

/* queue_wait_metrics writes how long each uid's jobs waited for a worker (uidwaits.h). */
static void queue_wait_metrics(kb_broker *b, kb_buf *t)
{
	const kb_uid_wait *u;
	char labels[64];

	help(t, "keybroker_queue_wait_seconds", "summary",
	     "Time jobs waited in the worker pool's queue, by the uid they were queued for (the first 16 uids seen, then \"other\").");
	for (int i = 0; (u = uid_wait(&b->queue_waits, i, labels, sizeof(labels))) != NULL; i++) {
		metric(t, "keybroker_queue_wait_seconds_sum", labels, (double)u->sum_us / 1e6);
		metric(t, "keybroker_queue_wait_seconds_count", labels, (double)u->count);
	}
	help(t, "keybroker_queue_wait_max_seconds", "gauge", "The longest a job of the uid waited in the worker pool's queue.");
	for (int i = 0; (u = uid_wait(&b->queue_waits, i, labels, sizeof(labels))) != NULL; i++)
		metric(t, "keybroker_queue_wait_max_seconds", labels, (double)u->max_us / 1e6);
}

/* kms_metrics writes the KMS v2 calls and each key's last real health check (health.c). */
static void kms_metrics(kb_broker *b, kb_buf *t)
{
	static const char *const methods[3] = { "status", "encrypt", "decrypt" };
	char labels[256];

	help(t, "keybroker_kms_calls_total", "counter", "Kubernetes KMS v2 calls, by method.");
	for (int m = 0; m < 3; m++) {
		snprintf(labels, sizeof(labels), "method=\"%s\"", methods[m]);
		metric(t, "keybroker_kms_calls_total", labels, (double)b->counters.kms_calls[m]);
	}
	help(t, "keybroker_kms_errors_total", "counter", "Kubernetes KMS v2 calls answered with an error, by method.");
	for (int m = 0; m < 3; m++) {
		snprintf(labels, sizeof(labels), "method=\"%s\"", methods[m]);
		metric(t, "keybroker_kms_errors_total", labels, (double)b->counters.kms_errors[m]);
	}
	help(t, "keybroker_key_check_ok", "gauge", "1 if the key's last health check (get, wrap, unwrap) passed.");
	for (int i = 0; i < b->nkeys; i++) {
		if (!b->keys[i].checked)
			continue;
		snprintf(labels, sizeof(labels), "key=\"%s\"", b->keys[i].conf->name);
		metric(t, "keybroker_key_check_ok", labels, b->keys[i].check_ok);
	}
}

void kb_report_metrics(kb_broker *b, kb_buf *o)
{
	kb_buf t = { 0 };

	kb_report_prometheus(b, &t, true);
	kb_jw_key(o, "text");
	kb_jw_strn(o, t.data ? t.data : "", t.len);
	kb_buf_free(&t);
}

void kb_report_prometheus(kb_broker *b, kb_buf *out, bool peers)
{
	const kb_counters *n = &b->counters;
	const struct single cache_counters[] = {
		{ "keybroker_cache_hits_total", "counter", "Unwraps answered from the DEK cache.",
		  (double)n->hits },
		{ "keybroker_cache_misses_total", "counter", "Unwraps that needed the key service.",
		  (double)n->misses },
		{ "keybroker_singleflight_joins_total", "counter", "Misses that shared another request's key-service call.",
		  (double)n->joins },
		{ "keybroker_cache_refreshes_total", "counter", "Refresh-ahead calls started.",
		  (double)n->refreshes },
		{ "keybroker_cache_refresh_failures_total", "counter", "Refresh-ahead calls the key service refused.",
		  (double)n->refresh_failures },
		{ "keybroker_cache_stale_answers_total", "counter", "DEKs served past their TTL, stale, while the key service could not be reached (outage_grace).",
		  (double)n->stale_answers },
		{ "keybroker_datakey_reused_total", "counter", "Data keys handed out again under the reuse limits.",
		  (double)n->datakey_reused },
		{ "keybroker_loop_calls_total", "counter", "Short backend calls the event loop made itself on an idle broker (loop_call_max).",
		  (double)n->loop_calls },
		{ "keybroker_loop_waits_total", "counter", "Backend calls of a lone client the event loop waited for polling, not asleep (loop_wait_max).",
		  (double)n->loop_waits },
	};
	const struct single cache_and_conns[] = {
		{ "keybroker_cache_entries", "gauge", "DEKs in the cache.",
		  b->cache.count },
		{ "keybroker_cache_capacity", "gauge", "Most DEKs the cache holds.",
		  b->cache.capacity },
		{ "keybroker_locked_bytes", "gauge", "Bytes of locked memory that hold the DEK cache.",
		  (double)b->cache.arena.locked_bytes },
		{ "keybroker_memory_locked", "gauge", "1 if the DEK cache is in locked memory.",
		  b->cache.arena.locked },
		{ "keybroker_connections", "gauge", "Open client connections.",
		  b->nconns },
		{ "keybroker_connections_refused_total", "counter", "Connections refused by peer policy or limits.",
		  (double)n->conns_refused },
	};
	kb_buf t = { 0 };
	char labels[64];

	help(&t, "keybroker_requests_total", "counter", "Requests, by operation.");
	for (int op = 1; op < KB_OP_COUNT; op++) {
		snprintf(labels, sizeof(labels), "op=\"%s\"", kb_op_name((kb_op)op));
		metric(&t, "keybroker_requests_total", labels, (double)n->requests[op]);
	}
	help(&t, "keybroker_request_errors_total", "counter", "Requests answered with an error, by operation.");
	for (int op = 0; op < KB_OP_COUNT; op++) {
		snprintf(labels, sizeof(labels), "op=\"%s\"", op ? kb_op_name((kb_op)op) : "unparsed");
		metric(&t, "keybroker_request_errors_total", labels, (double)n->errors[op]);
	}
	singles(&t, cache_counters, sizeof(cache_counters) / sizeof(cache_counters[0]));
	help(&t, "keybroker_cache_evictions_total", "counter", "DEKs evicted (and zeroed), by cause.");
	metric(&t, "keybroker_cache_evictions_total", "cause=\"ttl\"", (double)b->cache.evictions[KB_EVICT_TTL]);
	metric(&t, "keybroker_cache_evictions_total", "cause=\"lru\"", (double)b->cache.evictions[KB_EVICT_LRU]);
	metric(&t, "keybroker_cache_evictions_total", "cause=\"flush\"", (double)b->cache.evictions[KB_EVICT_FLUSH]);
	metric(&t, "keybroker_cache_evictions_total", "cause=\"replace\"", (double)b->cache.evictions[KB_EVICT_REPLACE]);
	singles(&t, cache_and_conns, sizeof(cache_and_conns) / sizeof(cache_and_conns[0]));
	peer_metrics(b, &t, peers);
	queue_wait_metrics(b, &t);
	backend_metrics(b, &t);
	kms_metrics(b, &t);
	kb_buf_append(out, t.data ? t.data : "", t.len);
	kb_buf_free(&t);
}
