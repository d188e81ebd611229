/*
 * health.c: per-key checks through the broker's own request path (see health.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "b64.h"
#include "health.h"
#include "inproc.h"
#include "jsonw.h"
#include "log.h"

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
	kb_inproc *conn;
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
static void where_fp(hkey *k, const cJSON *a, const char *latest, char fp[KB_KMS_FP_LEN + 1])
{
	const cJSON *v;
	const char *detail = kb_inproc_str(a, "detail");
	char created[32] = "0";
	kb_buf m = { 0 };

	cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(a, "versions")) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "created");
		const char *name = kb_inproc_str(v, "version");
		if (name && strcmp(name, latest) == 0 && cJSON_IsNumber(c))
			snprintf(created, sizeof(created), "%.0f", c->valuedouble);
	}
	kb_buf_append(&m, k->name, strlen(k->name));
	kb_buf_append(&m, "\n", 1);
	kb_buf_append(&m, latest, strlen(latest));
	kb_buf_append(&m, "\n", 1);
	kb_buf_append(&m, created, strlen(created));
	kb_buf_append(&m, "\n", 1);
	if (detail)
		kb_buf_append(&m, detail, strlen(detail));
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
	}
	k->next_ms = now + h->b->cfg->health_interval_ms;
	if (!h->stopping)
		arm(h);
}

static void on_unwrap(void *ctx, const cJSON *a)
{
	hkey *k = ctx;
	const char *code, *msg, *pt = kb_inproc_str(a, "plaintext");
	uint8_t back[PROBE_LEN + 16];
	size_t n = 0;
	bool same;

	if (!kb_inproc_ok(a, &code, &msg)) {
		check_done(k, false, "unwrap", code, msg);
		return;
	}
	same = pt && kb_b64_decode(pt, strlen(pt), back, sizeof(back), &n, KB_B64_STD) && n == PROBE_LEN &&
	       CRYPTO_memcmp(back, k->probe, PROBE_LEN) == 0;
	OPENSSL_cleanse(back, sizeof(back));
	check_done(k, same, "unwrap", "internal", "the unwrapped bytes differ from the wrapped ones");
}

static void on_wrap(void *ctx, const cJSON *a)
{
	hkey *k = ctx;
	const char *code, *msg, *blob = kb_inproc_str(a, "blob");
	kb_buf f = { 0 };

	if (!kb_inproc_ok(a, &code, &msg)) {
		check_done(k, false, "wrap", code, msg);
		return;
	}
	if (blob == NULL) {
		check_done(k, false, "wrap", "internal", "the wrap gave no blob");
		return;
	}
	kb_jw_raw(&f, "\"op\":\"unwrap\",\"blob\":");
	kb_jw_str(&f, blob);
	if (f.oom || kb_inproc_request(k->h->conn, &f, NULL, on_unwrap, k) != KB_OK)
		check_done(k, false, "unwrap", "internal", "out of memory");
	kb_buf_free(&f);
}

/* after_get goes on once a get and its fingerprint are done: the learners, then the check */
static void after_get(hkey *k)
{
	kb_buf f = { 0 };

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
	kb_jw_raw(&f, "\"op\":\"wrap\",\"key\":");
	kb_jw_str(&f, k->name);
	kb_jw_raw(&f, ",\"plaintext\":");
	kb_jw_b64(&f, k->probe, sizeof(k->probe));
	if (f.oom || kb_inproc_request(k->h->conn, &f, NULL, on_wrap, k) != KB_OK)
		check_done(k, false, "wrap", "internal", "out of memory");
	kb_buf_free(&f);
}

static void on_kcv(void *ctx, const cJSON *a);

/*
 * request_kcv wraps 32 zero bytes with a deterministic key wrap (alg): the
 * result is a check value of the key material, as a KCV is.
 */
static bool request_kcv(hkey *k, const char *alg)
{
	static const uint8_t zeros[PROBE_LEN];
	kb_buf f = { 0 };
	bool ok;

	kb_jw_raw(&f, "\"op\":\"wrap\",\"key\":");
	kb_jw_str(&f, k->name);
	kb_jw_raw(&f, ",\"alg\":");
	kb_jw_str(&f, alg);
	kb_jw_raw(&f, ",\"plaintext\":");
	kb_jw_b64(&f, zeros, sizeof(zeros));
	ok = !f.oom && kb_inproc_request(k->h->conn, &f, NULL, on_kcv, k) == KB_OK;
	kb_buf_free(&f);
	return ok;
}

static void on_kcv(void *ctx, const cJSON *a)
{
	hkey *k = ctx;
	const char *blob = kb_inproc_str(a, "blob"), *version = kb_inproc_str(a, "version");
	char fp[KB_KMS_FP_LEN + 1];

	if (kb_inproc_ok(a, NULL, NULL) && blob && version && strcmp(version, k->kcv_version) == 0) {
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
static void on_get(void *ctx, const cJSON *a)
{
	hkey *k = ctx;
	const char *code, *msg, *latest = kb_inproc_str(a, "latest"), *pem = kb_inproc_str(a, "public_key_pem");
	char fp[KB_KMS_FP_LEN + 1];

	k->get_ok = kb_inproc_ok(a, &code, &msg);
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
	k->get_enabled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "enabled"));
	if (pem) {
		kb_kms_fingerprint(pem, strlen(pem), fp);
		learned(k, latest, fp);
	} else if (kb_health_fingerprint(k->h, k->name, latest, fp)) {
		learned(k, latest, fp);
	} else if (k->get_enabled) {
		snprintf(k->kcv_version, sizeof(k->kcv_version), "%s", latest);
		where_fp(k, a, latest, k->where_fp);
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
	kb_buf f = { 0 };
	kb_code rc;

	kb_jw_raw(&f, "\"op\":\"get\",\"key\":");
	kb_jw_str(&f, k->name);
	rc = f.oom ? KB_E_INTERNAL : kb_inproc_request(k->h->conn, &f, NULL, on_get, k);
	kb_buf_free(&f);
	if (rc == KB_OK)
		k->learning = true;
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

kb_code kb_health_start(kb_broker *b, const kb_io *io, kb_health **out, kb_err *err)
{
	kb_health *h = calloc(1, sizeof(*h));
	kb_code rc;

	if (h == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	h->b = b;
	h->io = io;
	if ((rc = kb_inproc_open(b, io, b->uid, b->gid, getpid(), "keybrokerd (health check)", "health", &h->conn,
				 err)) != KB_OK) {
		free(h);
		return rc;
	}
	if ((h->timer = io->timer_new(io->loop, on_timer, h)) == NULL) {
		kb_health_stop(h);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	track(h);
	io->timer_arm(h->timer, kb_now_ms()); /* the first checks at once */
	*out = h;
	return KB_OK;
}

void kb_health_stop(kb_health *h)
{
	if (h == NULL)
		return;
	h->stopping = true;
	kb_inproc_close(h->conn); /* fails what is in flight: the callbacks end the checks */
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

bool kb_health_ready(kb_health *h, char *why, size_t cap)
{
	kb_loop_assert_owner();
	track(h);
	for (int i = 0; i < h->b->nkeys; i++) {
		hkey *k = find(h, h->b->keys[i].conf->name);
		if (k == NULL || !k->st.ok) {
			snprintf(why, cap, "%s", k ? k->st.text : "not checked yet");
			if (k)
				kb_health_poke(h, k->name);
			return false;
		}
	}
	snprintf(why, cap, "ok");
	return true;
}
