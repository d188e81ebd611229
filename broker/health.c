/*
 * health.c: per-key checks through the broker's own request path (see health.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "health.h"
#include "conn.h"
#include "dispatch.h"
#include "log.h"
#include "ticket.h"

#define MAX_FPS 32
#define RETRY_MS 1000   /* after a failure, a poke checks again at most this often */
#define PROBE_LEN 32

typedef struct learner {
	void (*done)(void *ctx);
	void *ctx;
	struct learner *next;
} learner;

typedef struct hkey {
	struct kb_health *h;
	char name[KB_KEY_NAME_MAX + 1];
	kb_health_state st;
	char brief[KB_KEY_NAME_MAX + 96]; /* what /readyz may show anyone: the key, the step, the code */
	bool running;            /* a check is in flight */
	int64_t next_ms;         /* the next check is due */
	uint8_t probe[PROBE_LEN];
	struct {
		char version[KB_VERSION_MAX + 1];
		char fp[KB_KMS_FP_LEN + 1];
	} fps[MAX_FPS];          /* versions seen, a ring */
	int nfps, fp_next;
	learner *learners;       /* waiting for a get */
	bool learning;
	/* the last get: its outcome, and the check value being made of its version */
	bool get_ok, get_enabled;
	char get_code[40];
	char get_msg[KB_ERR_MSG_MAX];
	char kcv_version[KB_VERSION_MAX + 1];
	char where_fp[KB_KMS_FP_LEN + 1];
	bool kcv_second;
} hkey;

struct kb_health {
	kb_broker *b;
	const kb_io *io;
	kb_conn *conn;           /* the checks' own connection object (the daemon's uid, face "health") */
	kb_tickets tickets;      /* requests waiting for the core's answer */
	kb_io_timer *timer;
	hkey **keys;
	int nkeys;
	bool stopping;
};

static hkey *find(kb_health *h, const char *name)
{
	for (int i = 0; i < h->nkeys; i++)
		if (strcmp(h->keys[i]->name, name) == 0)
			return h->keys[i];
	return NULL;
}

/*
 * ask submits rq as a request of the checks' own connection; fn gets the
 * answer, or NULL if the checks stop first. Returns KB_OK or KB_E_INTERNAL.
 */
static kb_code ask(kb_health *h, kb_request *rq, void (*fn)(void *ctx, const kb_answer *a), void *ctx)
{
	kb_reply r;

	if (!kb_ticket_new(&h->tickets, fn, ctx, &r))
		return KB_E_INTERNAL;
	rq->conn = h->conn;
	kb_core_submit(h->b, rq, r);
	return KB_OK;
}

/* answer_ok tells whether a says ok; if not, *code and *msg (when not NULL) name why */
static bool answer_ok(const kb_answer *a, const char **code, const char **msg)
{
	if (a && a->code == KB_OK)
		return true;
	if (code)
		*code = a ? kb_code_name(a->code) : "internal";
	if (msg)
		*msg = a ? a->err->msg : "the broker stopped before it answered";
	return false;
}

/* track makes sure every key of the current keyset has its state (a reload may add keys) */
static void track(kb_health *h)
{
	for (int i = 0; i < h->b->nkeys; i++) {
		const char *name = h->b->keys[i].conf->name;
		hkey **grown, *k;

		if (find(h, name))
			continue;
		grown = realloc(h->keys, (size_t)(h->nkeys + 1) * sizeof(*grown));
		k = calloc(1, sizeof(*k));
		if (grown == NULL || k == NULL) {
			free(k);
			if (grown)
				h->keys = grown;
			return;
		}
		h->keys = grown;
		k->h = h;
		snprintf(k->name, sizeof(k->name), "%s", name);
		snprintf(k->st.text, sizeof(k->st.text), "not checked yet");
		h->keys[h->nkeys++] = k;
	}
}

static void remember_fp(hkey *k, const char *version, const char *fp)
{
	for (int i = 0; i < k->nfps; i++)
		if (strcmp(k->fps[i].version, version) == 0) {
			snprintf(k->fps[i].fp, sizeof(k->fps[i].fp), "%s", fp);
			return;
		}
	snprintf(k->fps[k->fp_next].version, sizeof(k->fps[0].version), "%s", version);
	snprintf(k->fps[k->fp_next].fp, sizeof(k->fps[0].fp), "%s", fp);
	k->fp_next = (k->fp_next + 1) % MAX_FPS;
	if (k->nfps < MAX_FPS)
		k->nfps++;
}

/* learned makes fp the fingerprint of version, now the write key */
static void learned(hkey *k, const char *version, const char *fp)
{
	remember_fp(k, version, fp);
	snprintf(k->st.latest.key, sizeof(k->st.latest.key), "%s", k->name);
	snprintf(k->st.latest.version, sizeof(k->st.latest.version), "%s", version);
	snprintf(k->st.latest.fp, sizeof(k->st.latest.fp), "%s", fp);
	k->st.known = true;
}

/*
 * where_fp is the fingerprint of a secret key that has no check value:
 * what the key service says of the version (its creation time) and where
 * it lives (token serial, vault).
 */
static void where_fp(hkey *k, const kb_key_info *info, const char *latest, char fp[KB_KMS_FP_LEN + 1])
{
	char created[32] = "0";
	kb_buf m = { 0 };

	for (int i = 0; i < info->nversions; i++)
		if (strcmp(info->versions[i].version, latest) == 0 && info->versions[i].created)
			snprintf(created, sizeof(created), "%lld", (long long)info->versions[i].created);
	kb_buf_append(&m, k->name, strlen(k->name));
	kb_buf_append(&m, "\n", 1);
	kb_buf_append(&m, latest, strlen(latest));
	kb_buf_append(&m, "\n", 1);
	kb_buf_append(&m, created, strlen(created));
	kb_buf_append(&m, "\n", 1);
	kb_buf_append(&m, info->detail, strlen(info->detail));
	kb_kms_fingerprint(m.data ? m.data : "", m.len, fp);
	kb_buf_free(&m);
}

static void finish_learners(hkey *k)
{
	learner *l = k->learners;

	k->learners = NULL;
	k->learning = false;
	while (l) {
		learner *next = l->next;
		l->done(l->ctx);
		free(l);
		l = next;
	}
}

static void arm(struct kb_health *h);

/* check_done ends a check with its verdict */
static void check_done(hkey *k, bool ok, const char *step, const char *code, const char *msg)
{
	kb_health *h = k->h;
	int64_t now = kb_now_ms();
	kb_key *key;

	OPENSSL_cleanse(k->probe, sizeof(k->probe));
	k->running = false;
	k->st.checked = true;
	k->st.checked_ms = now;
	k->st.checks++;
	if (ok) {
		snprintf(k->st.text, sizeof(k->st.text), "ok");
	} else {
		k->st.failures++;
		snprintf(k->st.text, sizeof(k->st.text), "key %s: %s failed: %s: %s", k->name, step, code, msg);
		snprintf(k->brief, sizeof(k->brief), "key %s: %s failed: %s", k->name, step, code);
		if (k->st.ok || k->st.checks == 1)
			kb_warn("health check of %s", k->st.text);
	}
	if (ok && !k->st.ok && k->st.checks > 1)
		kb_info("key %s is healthy again", k->name);
	k->st.ok = ok;
	/* the status and metrics reports read it from the key */
	if ((key = kb_key_find(h->b, k->name)) != NULL) {
		key->checked = true;
		key->check_ok = ok;
		snprintf(key->check_error, sizeof(key->check_error), "%s", ok ? "" : k->st.text);
	}
	k->next_ms = now + h->b->cfg->health_interval_ms;
	if (!h->stopping)
		arm(h);
}

static void on_unwrap(void *ctx, const kb_answer *a)
{
	hkey *k = ctx;
	const char *code, *msg;
	bool same;

	if (!answer_ok(a, &code, &msg)) {
		check_done(k, false, "unwrap", code, msg);
		return;
	}
	same = a->plaintext && a->ptlen == PROBE_LEN && CRYPTO_memcmp(a->plaintext, k->probe, PROBE_LEN) == 0;
	check_done(k, same, "unwrap", "internal", "the unwrapped bytes differ from the wrapped ones");
}

static void on_wrap(void *ctx, const kb_answer *a)
{
	hkey *k = ctx;
	const char *code, *msg;
	kb_request rq;

	if (!answer_ok(a, &code, &msg)) {
		check_done(k, false, "wrap", code, msg);
		return;
	}
	if (a->blob == NULL || strlen(a->blob) > KB_BLOB_MAX) {
		check_done(k, false, "wrap", "internal", "the wrap gave no blob");
		return;
	}
	kb_request_init(&rq, KB_OP_UNWRAP);
	rq.bloblen = strlen(a->blob);
	memcpy(rq.blob, a->blob, rq.bloblen + 1);
	if (ask(k->h, &rq, on_unwrap, k) != KB_OK)
		check_done(k, false, "unwrap", "internal", "out of memory");
}

/* after_get goes on once a get and its fingerprint are done: the learners, then the check */
static void after_get(hkey *k)
{
	kb_request rq;
	kb_code rc;

	finish_learners(k);
	if (!k->running)
		return; /* a get for kb_health_learn alone */
	if (!k->get_ok) {
		check_done(k, false, "get", k->get_code, k->get_msg);
		return;
	}
	if (!k->get_enabled) {
		check_done(k, false, "get", "key_disabled", "the latest version is disabled: enable it, or rotate");
		return;
	}
	if (RAND_bytes(k->probe, sizeof(k->probe)) != 1) {
		check_done(k, false, "wrap", "internal", "no random bytes");
		return;
	}
	kb_request_init(&rq, KB_OP_WRAP);
	snprintf(rq.key, sizeof(rq.key), "%s", k->name);
	memcpy(rq.plaintext, k->probe, sizeof(k->probe));
	rq.ptlen = sizeof(k->probe);
	rq.has_plaintext = 1;
	rc = ask(k->h, &rq, on_wrap, k);
	kb_request_wipe(&rq);
	if (rc != KB_OK)
		check_done(k, false, "wrap", "internal", "out of memory");
}

static void on_kcv(void *ctx, const kb_answer *a);

/*
 * request_kcv wraps 32 zero bytes with a deterministic key wrap (alg): the
 * result is a check value of the key material, as a KCV is.
 */
static bool request_kcv(hkey *k, const char *alg)
{
	kb_request rq;

	kb_request_init(&rq, KB_OP_WRAP);
	snprintf(rq.key, sizeof(rq.key), "%s", k->name);
	rq.alg = kb_alg_parse(alg);
	rq.ptlen = PROBE_LEN; /* zeros */
	rq.has_plaintext = 1;
	return ask(k->h, &rq, on_kcv, k) == KB_OK;
}

static void on_kcv(void *ctx, const kb_answer *a)
{
	hkey *k = ctx;
	const char *blob = a ? a->blob : NULL, *version = a ? a->version : NULL;
	char fp[KB_KMS_FP_LEN + 1];

	if (answer_ok(a, NULL, NULL) && blob && version && strcmp(version, k->kcv_version) == 0) {
		kb_kms_fingerprint(blob, strlen(blob), fp);
		learned(k, version, fp);
	} else if (a && !k->kcv_second && request_kcv(k, "AES-KW")) {
		k->kcv_second = true; /* a token without AES-KWP may have AES-KW */
		return;
	} else {
		learned(k, k->kcv_version, k->where_fp);
	}
	after_get(k);
}

/*
 * on_get learns the latest version and its fingerprint: of the public key
 * when there is one; else a check value from a deterministic wrap, made
 * once per version; else (no such wrap: AES-GCM only) where_fp.
 */
static void on_get(void *ctx, const kb_answer *a)
{
	hkey *k = ctx;
	const char *code = "internal", *msg = "", *latest = a && a->info ? a->info->latest : NULL;
	const char *pem = a && a->info ? a->info->public_pem : NULL;
	char fp[KB_KMS_FP_LEN + 1];

	k->get_ok = answer_ok(a, &code, &msg);
	if (k->get_ok && (latest == NULL || !kb_name_valid(latest, strlen(latest)))) {
		k->get_ok = false;
		code = "internal";
		msg = "the key service named no valid latest version";
	}
	if (!k->get_ok) {
		snprintf(k->get_code, sizeof(k->get_code), "%s", code);
		snprintf(k->get_msg, sizeof(k->get_msg), "%s", msg);
		after_get(k);
		return;
	}
	k->get_enabled = a->info->enabled != 0;
	if (pem) {
		kb_kms_fingerprint(pem, strlen(pem), fp);
		learned(k, latest, fp);
	} else if (kb_health_fingerprint(k->h, k->name, latest, fp)) {
		learned(k, latest, fp);
	} else if (k->get_enabled) {
		snprintf(k->kcv_version, sizeof(k->kcv_version), "%s", latest);
		where_fp(k, a->info, latest, k->where_fp);
		k->kcv_second = false;
		if (request_kcv(k, "AES-KWP"))
			return; /* on_kcv goes on */
		learned(k, latest, k->where_fp);
	}
	after_get(k);
}

/* request_get asks for key's versions; on_get carries on */
static kb_code request_get(hkey *k)
{
	kb_request rq;
	kb_code rc;

	kb_request_init(&rq, KB_OP_GET);
	snprintf(rq.key, sizeof(rq.key), "%s", k->name);
	/* set first: the answer may come before ask returns, and then clears it */
	k->learning = true;
	if ((rc = ask(k->h, &rq, on_get, k)) != KB_OK)
		k->learning = false;
	return rc;
}

static void start_check(hkey *k)
{
	if (k->running || k->h->stopping)
		return;
	k->running = true;
	/* a get already asked (for a learner) carries the check on when it comes */
	if (!k->learning && request_get(k) != KB_OK)
		check_done(k, false, "get", "internal", "out of memory");
}

static void arm(kb_health *h)
{
	int64_t first = -1;

	/* a key a reload removed is not checked: its time does not count */
	for (int i = 0; i < h->nkeys; i++)
		if (!h->keys[i]->running && kb_key_find(h->b, h->keys[i]->name) &&
		    (first < 0 || h->keys[i]->next_ms < first))
			first = h->keys[i]->next_ms;
	h->io->timer_arm(h->timer, first < 0 ? kb_now_ms() + h->b->cfg->health_interval_ms : first);
}

static void on_timer(void *ctx)
{
	kb_health *h = ctx;
	int64_t now = kb_now_ms();

	track(h);
	for (int i = 0; i < h->nkeys; i++)
		if (kb_key_find(h->b, h->keys[i]->name) && h->keys[i]->next_ms <= now)
			start_check(h->keys[i]);
	arm(h);
}

/* key_back is outage.h's word that key's service is back: check it now, not at the next interval. */
static void key_back(void *ctx, const char *key)
{
	kb_health_poke(ctx, key);
}

kb_code kb_health_start(kb_broker *b, const kb_io *io, kb_health **out, kb_err *err)
{
	kb_health *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	h->b = b;
	h->io = io;
	if ((h->conn = kb_conn_own(b->uid, b->gid, getpid(), "keybrokerd (health check)", "health")) == NULL) {
		free(h);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	if ((h->timer = io->timer_new(io->loop, on_timer, h)) == NULL) {
		kb_health_stop(h);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	track(h);
	io->timer_arm(h->timer, kb_now_ms()); /* the first checks at once */
	b->key_back = key_back;
	b->key_back_ctx = h;
	*out = h;
	return KB_OK;
}

void kb_health_stop(kb_health *h)
{
	if (h == NULL)
		return;
	h->stopping = true;
	if (h->b->key_back_ctx == h) {
		h->b->key_back = NULL;
		h->b->key_back_ctx = NULL;
	}
	kb_tickets_orphan(&h->tickets); /* fails what is in flight: the callbacks end the checks */
	if (h->conn)
		kb_conn_close(h->conn); /* freed with the last request that holds it */
	if (h->timer)
		h->io->timer_free(h->timer);
	for (int i = 0; i < h->nkeys; i++) {
		finish_learners(h->keys[i]);
		free(h->keys[i]);
	}
	free(h->keys);
	free(h);
}

const kb_health_state *kb_health_get(kb_health *h, const char *key)
{
	hkey *k;

	kb_loop_assert_owner();
	track(h);
	k = kb_key_find(h->b, key) ? find(h, key) : NULL;
	return k ? &k->st : NULL;
}

void kb_health_poke(kb_health *h, const char *key)
{
	hkey *k = find(h, key);

	kb_loop_assert_owner();
	if (k && k->st.checked && !k->st.ok && kb_now_ms() - k->st.checked_ms >= RETRY_MS)
		start_check(k);
}

bool kb_health_fingerprint(kb_health *h, const char *key, const char *version,
			   char fp[KB_KMS_FP_LEN + 1])
{
	hkey *k = find(h, key);

	for (int i = 0; k && i < k->nfps; i++)
		if (strcmp(k->fps[i].version, version) == 0) {
			memcpy(fp, k->fps[i].fp, KB_KMS_FP_LEN + 1);
			return true;
		}
	return false;
}

kb_code kb_health_learn(kb_health *h, const char *key, void (*done)(void *ctx), void *ctx)
{
	hkey *k;
	learner *l;

	kb_loop_assert_owner();
	track(h);
	if ((k = find(h, key)) == NULL || h->stopping)
		return KB_E_UNKNOWN_KEY;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return KB_E_INTERNAL;
	l->done = done;
	l->ctx = ctx;
	l->next = k->learners;
	k->learners = l;
	if (!k->learning && request_get(k) != KB_OK) {
		k->learners = l->next;
		free(l);
		return KB_E_INTERNAL;
	}
	return KB_OK;
}

void kb_health_end_learners(kb_health *h)
{
	kb_loop_assert_owner();
	for (int i = 0; h && i < h->nkeys; i++)
		finish_learners(h->keys[i]);
}

bool kb_health_ready(kb_health *h, bool poke, char *why, size_t cap)
{
	bool ready = true;
	size_t n = 0;

	kb_loop_assert_owner();
	track(h);
	/* every key that is not ready is named, so an operator sees the whole outage at once */
	for (int i = 0; i < h->b->nkeys; i++) {
		const kb_key *key = &h->b->keys[i];
		hkey *k = find(h, key->conf->name);
		if (key->down || k == NULL || !k->st.ok) {
			char brief[sizeof(k->brief)];
			int w;

			/* a key whose service was down when it opened (outage.h) is named as such before any check */
			if (key->down)
				snprintf(brief, sizeof(brief), "key %s: unavailable: %s", key->conf->name,
				         kb_code_name(key->down_err.code));
			else if (k == NULL || !k->st.checked)
				snprintf(brief, sizeof(brief), "key %s: not checked yet", key->conf->name);
			else
				snprintf(brief, sizeof(brief), "%s", k->brief);
			w = snprintf(why + n, n < cap ? cap - n : 0, "%s%s", ready ? "" : "; ", brief);
			n += w > 0 ? (size_t)w : 0;
			ready = false;
			if (k && poke)
				kb_health_poke(h, k->name);
		}
	}
	if (ready)
		snprintf(why, cap, "ok");
	return ready;
}
