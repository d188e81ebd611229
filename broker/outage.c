/*
 * outage.c: the keyset the loop serves, and the background reopen of its
 * keys whose key service is down (see outage.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "log.h"
#include "outage.h"

#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS 30000

/* A reopen on a worker: on a copy of the key's options, so the loop may read the key meanwhile. */
typedef struct reopen {
	kb_broker *b;
	kb_keyset *ks;          /* one reference, so the key outlives a reload */
	int index;
	int nslots;
	kb_keyconf kc;          /* the copy; its opts array is our own */
	void *state;
	kb_err err;
	kb_code rc;
} reopen;

static void attach_key(kb_key *k, const kb_io *io)
{
	if (k->ops->attach && k->state) {
		k->ops->attach(k->state, io);
		k->async = io != NULL;
	}
}

static void arm(kb_broker *b);

static void reopen_work(void *ctx, int slot)
{
	reopen *r = ctx;
	kb_key *k = &r->ks->keys[r->index];

	(void)slot;
	r->rc = kb_key_open_backend(k, &r->kc, r->nslots, &r->state, &r->err);
	if (r->rc != KB_OK && r->state) {
		k->ops->close(r->state);
		r->state = NULL;
	}
}

/* back makes k served from now on with the state its reopen made. */
static void back(kb_broker *b, kb_key *k, reopen *r)
{
	k->state = r->state;
	k->conf->alg = r->kc.alg; /* what the backend settled on */
	k->conf->wrap_bytes = r->kc.wrap_bytes;
	kb_keyset_size_requests(r->ks);
	k->down = false;
	k->healthy = true;
	k->last_code = KB_OK;
	kb_err_clear(&k->down_err);
	if (b->io && r->ks == b->ks)
		attach_key(k, b->io);
	kb_info("key %s: its key service is back after %llds (%d tr%s): serving the key", k->conf->name,
		(long long)((kb_now_ms() - k->down_since_ms) / 1000), k->tries, k->tries == 1 ? "y" : "ies");
	if (b->key_back)
		b->key_back(b->key_back_ctx, k->conf->name);
}

static void reopen_done(void *ctx)
{
	reopen *r = ctx;
	kb_broker *b = r->b;
	kb_key *k = &r->ks->keys[r->index];

	k->reopening = false;
	k->tries++;
	if (r->rc == KB_OK) {
		back(b, k, r);
	} else {
		/* a new cause is worth a line; the same one again is not */
		if (r->rc != k->down_err.code || strcmp(r->err.msg, k->down_err.msg) != 0) {
			if (kb_key_service_down(r->rc))
				kb_warn("key %s: still unavailable, retrying: %s", k->conf->name, r->err.msg);
			else
				kb_log_err("key %s: its key service is back, but refuses the key (fix the config and reload): %s",
					   k->conf->name, r->err.msg);
		}
		k->down_err = r->err;
		k->last_code = r->rc;
		snprintf(k->last_error, sizeof(k->last_error), "%s", r->err.msg);
		k->retry_ms = k->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : k->retry_ms * 2;
		k->retry_at_ms = kb_now_ms() + k->retry_ms;
	}
	free(r->kc.opts);
	kb_keyset_unref(r->ks);
	free(r);
	if (b->io)
		arm(b);
}

/* start_reopen hands k's reopen to a worker; false when it could not (it is tried again later). */
static bool start_reopen(kb_broker *b, kb_key *k)
{
	reopen *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return false;
	r->b = b;
	r->ks = b->ks;
	r->index = k->index;
	r->nslots = b->cfg->workers + 1;
	r->kc = *k->conf;
	r->kc.opts = malloc(sizeof(*r->kc.opts) * (size_t)(k->conf->nopts ? k->conf->nopts : 1));
	if (r->kc.opts == NULL) {
		free(r);
		return false;
	}
	for (int i = 0; i < k->conf->nopts; i++) {
		r->kc.opts[i] = k->conf->opts[i];
		r->kc.opts[i].taken = false;
	}
	r->kc.nasked = 0;
	r->ks->refs++;
	if (b->io->offload(b->io->loop, reopen_work, reopen_done, r) != 0) {
		r->ks->refs--;
		free(r->kc.opts);
		free(r);
		return false;
	}
	k->reopening = true;
	return true;
}

static void on_timer(void *ctx)
{
	kb_broker *b = ctx;
	int64_t now = kb_now_ms();

	for (int i = 0; i < b->nkeys; i++) {
		kb_key *k = &b->keys[i];

		if (k->down && !k->reopening && k->retry_at_ms <= now && !start_reopen(b, k))
			k->retry_at_ms = now + k->retry_ms;
	}
	arm(b);
}

/* arm sets the timer to the next reopen due, or disarms it when no key is down. */
static void arm(kb_broker *b)
{
	int64_t first = -1;

	for (int i = 0; i < b->nkeys; i++) {
		const kb_key *k = &b->keys[i];

		if (k->down && !k->reopening && (first < 0 || k->retry_at_ms < first))
			first = k->retry_at_ms;
	}
	if (b->outage_timer)
		b->io->timer_arm(b->outage_timer, first);
}

/* schedule gives each down key of the current keyset its first try, and arms the timer. */
static void schedule(kb_broker *b)
{
	for (int i = 0; i < b->nkeys; i++) {
		kb_key *k = &b->keys[i];

		if (k->down && k->retry_ms == 0) {
			kb_warn("key %s is unavailable; serving the other keys, and retrying it in the background: %s",
				k->conf->name, k->down_err.msg);
			k->retry_ms = RETRY_FIRST_MS;
			k->retry_at_ms = kb_now_ms() + k->retry_ms;
		}
	}
	if (b->io == NULL)
		return;
	if (b->outage_timer == NULL)
		b->outage_timer = b->io->timer_new(b->io->loop, on_timer, b);
	if (b->outage_timer == NULL)
		kb_log_err("out of memory: keys that are down are not retried");
	arm(b);
}

void kb_broker_use_keyset(kb_broker *b, kb_keyset *ks)
{
	b->ks = ks;
	b->cfg = ks->cfg;
	b->keys = ks->keys;
	b->nkeys = ks->nkeys;
	for (int i = 0; b->io && i < ks->nkeys; i++)
		attach_key(&ks->keys[i], b->io);
	schedule(b);
}

void kb_broker_attach_io(kb_broker *b, const kb_io *io)
{
	if (io == NULL && b->outage_timer) {
		b->io->timer_free(b->outage_timer);
		b->outage_timer = NULL;
	}
	b->io = io;
	for (int i = 0; i < b->ks->nkeys; i++)
		attach_key(&b->ks->keys[i], io);
	if (io)
		schedule(b);
}

kb_code kb_outage_refuse(const kb_key *k, kb_err *err)
{
	if (k == NULL || !k->down)
		return KB_OK;
	return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "key %s is unavailable (retrying in the background): %s",
			  k->conf->name, k->down_err.msg);
}

bool kb_outage_doctor(const kb_key *k, kb_doctor_emit emit, void *ctx)
{
	char detail[KB_ERR_MSG_MAX + 128], fix[256];
	int64_t now = kb_now_ms();

	if (!k->down)
		return false;
	snprintf(detail, sizeof(detail), "unavailable for %llds (%s): %s", (long long)((now - k->down_since_ms) / 1000),
		 kb_code_name(k->down_err.code), k->down_err.msg);
	if (kb_key_service_down(k->down_err.code))
		snprintf(fix, sizeof(fix),
			 "bring the key service back (see the cause); the broker retries by itself, next in %llds, and logs when the key is served again",
			 (long long)((k->retry_at_ms > now ? k->retry_at_ms - now : 0) / 1000));
	else
		snprintf(fix, sizeof(fix), "the key service answers but refuses the key: fix the config and reload (SIGHUP)");
	emit(ctx, "key service", "fail", detail, fix);
	return true;
}
