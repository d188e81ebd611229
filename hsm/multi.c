/*
 * multi.c: the calls that must not hold a thread (unwrapkey), on libcurl's
 * multi interface, driven by the daemon's loop through kb_io.
 *
 * Per key: up to max_in_flight requests at once (more wait their turn, in
 * order) over at most http_connections kept-alive connections, multiplexed
 * over HTTP/2 where the server offers it. Retries and Retry-After waits are
 * timers, and the operation's deadline (timeout) holds across them. A token
 * that must be fetched is fetched once, on a worker (kb_io.offload), while
 * every request that needs it waits; the same for the rare follow-up that
 * tells a deleted key from a missing version. Everything here runs on the
 * loop thread, except the two offloaded steps, which touch only the key's
 * shared, locked parts (the token cache, the key material).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "az.h"
#include "log.h"

#define SPARE_HANDLES 64

typedef enum { X_QUEUED, X_WAIT_TOKEN, X_ON_WIRE, X_WAIT_RETRY, X_CHECKING } xstate;

typedef struct az_xfer {
	struct az_engine *e;
	kb_async *a;
	az_op op;
	xstate st;
	CURL *h;
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *hdrs;      /* holds the token: wiped when freed */
	char *body;                   /* holds the DEK or its wrap: wiped when freed */
	size_t bodycap;
	char url[AZ_URL_MAX];
	az_req rq;
	az_resp resp;
	int64_t deadline_ms, due_ms;
	int n;                        /* retries made */
	bool retried_401;
	bool fresh;                   /* the token was fetched for this request */
	unsigned gen;
	kb_code gone_rc;              /* X_CHECKING: what the versionless GET said */
	kb_err gone;
	struct az_xfer *next;         /* in the engine's queued, token or retry list */
	struct az_xfer *all_prev, *all_next; /* every transfer of the engine */
} az_xfer;

struct az_engine {
	az_key *k;
	const kb_io *io;
	CURLM *multi;
	kb_io_timer *timer;
	int64_t curl_due_ms;          /* -1: curl wants no timeout */
	az_xfer *queued, *queued_tail;/* waiting for room under max_in_flight */
	az_xfer *token_wait;
	az_xfer *retry;
	int active;                   /* started and not finished */
	int offloaded;                /* offloaded steps not yet done */
	bool fetching;                /* a token fetch is offloaded */
	kb_code fetch_rc;
	kb_err fetch_err;
	CURL *spare[SPARE_HANDLES];
	int nspare;
	az_xfer *all;                 /* every transfer, for az_engine_free */
	void (*free_key)(az_key *k);  /* set when the key closed while a step was offloaded */
};

static void send_xfer(az_xfer *x);
static void begin(az_xfer *x);

/* ---- timers ---- */

static void rearm(az_engine *e)
{
	int64_t due = e->curl_due_ms;

	for (az_xfer *x = e->retry; x; x = x->next)
		if (due < 0 || x->due_ms < due)
			due = x->due_ms;
	e->io->timer_arm(e->timer, due);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	az_engine *e = userp;

	(void)multi;
	e->curl_due_ms = timeout_ms < 0 ? -1 : kb_now_ms() + timeout_ms;
	rearm(e);
	return 0;
}

/* ---- finishing ---- */

static void release_handle(az_engine *e, az_xfer *x)
{
	if (x->h == NULL)
		return;
	/* a spare keeps the key's options (az_http_prepare sets them once), not x's pointers */
	curl_easy_setopt(x->h, CURLOPT_PRIVATE, NULL);
	curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(x->h, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(x->h, CURLOPT_HEADERDATA, NULL);
	curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, NULL);
	if (e->nspare < SPARE_HANDLES)
		e->spare[e->nspare++] = x->h;
	else
		curl_easy_cleanup(x->h);
	x->h = NULL;
}

static void xfer_free(az_xfer *x)
{
	az_engine *e = x->e;

	if (x->all_prev)
		x->all_prev->all_next = x->all_next;
	else
		e->all = x->all_next;
	if (x->all_next)
		x->all_next->all_prev = x->all_prev;
	release_handle(e, x);
	az_http_headers_free(x->hdrs);
	if (x->body) {
		OPENSSL_cleanse(x->body, x->bodycap);
		free(x->body);
	}
	az_resp_free(&x->resp);
	free(x);
}

/* release frees a detached engine once no offloaded step can come back to it (and its key, if closed). */
static void release(az_engine *e)
{
	az_key *k = e->k;
	void (*free_key)(az_key *) = e->free_key;

	if (e->io || e->offloaded > 0)
		return;
	for (int i = 0; i < e->nspare; i++)
		curl_easy_cleanup(e->spare[i]);
	free(e);
	if (free_key)
		free_key(k);
}

static void promote(az_engine *e)
{
	while (e->queued && e->active < e->k->conf.max_in_flight) {
		az_xfer *x = e->queued;

		e->queued = x->next;
		if (e->queued == NULL)
			e->queued_tail = NULL;
		e->active++;
		begin(x);
	}
}

/* complete ends x with rc (err filled by the caller on failure) and tells the core. */
static void complete(az_xfer *x, kb_code rc)
{
	az_engine *e = x->e;
	kb_async *a = x->a;

	if (a->err)
		snprintf(a->err->request_id, sizeof(a->err->request_id), "%s", x->resp.request_id);
	xfer_free(x);
	e->active--;
	a->done(a, rc);
	promote(e);
}

static void gone_work(void *ctx, int slot)
{
	az_xfer *x = ctx;
	az_keymat m;

	x->gone_rc = az_keymat_fetch(x->e->k, slot, NULL, &m, &x->gone);
	az_keymat_clear(&m);
}

static void gone_done(void *ctx)
{
	az_xfer *x = ctx;
	az_engine *e = x->e;

	e->offloaded--;
	if (e->io && x->gone_rc == KB_E_UNKNOWN_KEY)
		*x->a->err = x->gone;
	if (e->io)
		complete(x, x->a->err->code);
	else
		xfer_free(x); /* the loop let go of us: the core dropped the call */
	release(e);
}

/* answered handles a final answer (no retry left or needed). */
static void answered(az_xfer *x)
{
	az_key *k = x->e->k;
	az_what w = { .key = k->name, .op = x->op, .version = x->a->version };
	char why[96], got[KB_VERSION_MAX + 1];
	kb_code rc;

	if (x->resp.status >= 200 && x->resp.status < 300) {
		if (!az_parse_op_result(az_resp_text(&x->resp), x->resp.body.len, x->a->out, x->a->outlen, got,
					why, sizeof(why)))
			rc = kb_err_set(x->a->err, KB_E_BACKEND_UNAVAILABLE,
					"key %s: the %s answer from %s is unusable (%s) (request id %s)", k->name,
					az_perm_name(x->op), k->conf.url.host, why, x->resp.request_id);
		else
			rc = KB_OK;
		complete(x, rc);
		return;
	}
	if (x->resp.status == 401)
		az_token_reject(k->cred, x->gen);
	rc = az_error(&k->conf, &w, &x->resp, x->a->err);
	/* the first sign that the version wraps use is refused: new wraps ask the service again */
	if (az_refuses_version(rc))
		az_keymat_distrust(k, rc == KB_E_UNKNOWN_KEY ? NULL : x->a->version);
	if (rc == KB_E_UNKNOWN_VERSION && x->e->io->offload) {
		/* is the version gone, or the whole key (deleted)? ask on a worker */
		x->st = X_CHECKING;
		if (x->e->io->offload(x->e->io->loop, gone_work, gone_done, x) == 0) {
			x->e->offloaded++;
			return;
		}
	}
	complete(x, rc);
}

/* attempt_done takes the outcome of one attempt: a retry, a new token, or the answer. */
static void attempt_done(az_xfer *x, CURLcode cc)
{
	az_engine *e = x->e;
	az_key *k = e->k;
	int64_t wait;

	curl_multi_remove_handle(e->multi, x->h);
	az_http_collect(x->h, x->errbuf, cc, &x->resp);
	release_handle(e, x);
	kb_debug("azure key %s: POST %s -> %ld, attempt %d, request id %s", k->name, x->url, x->resp.status,
		 x->resp.attempts, x->resp.request_id);
	wait = az_http_next_wait(&k->conf, x->rq.idempotent, &x->resp, x->n, x->deadline_ms);
	if (wait >= 0) {
		x->n++;
		x->st = X_WAIT_RETRY;
		x->due_ms = kb_now_ms() + wait;
		x->next = e->retry;
		e->retry = x;
		return;
	}
	if (x->resp.status == 401 && !x->retried_401 && !x->fresh) {
		/* the cached token expired early or was revoked: one refresh, one retry */
		az_token_reject(k->cred, x->gen);
		x->retried_401 = true;
		az_http_headers_free(x->hdrs);
		x->hdrs = NULL;
		begin(x);
		return;
	}
	answered(x);
}

static void check_done(az_engine *e)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
		az_xfer *x = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		attempt_done(x, m->data.result);
	}
}

/* ---- sockets and timers from the loop ---- */

static void on_ready(void *ctx, int fd, unsigned ready)
{
	az_engine *e = ctx;
	int running;

	curl_multi_socket_action(e->multi, fd,
				 ((ready & KB_IO_IN) ? CURL_CSELECT_IN : 0) | ((ready & KB_IO_OUT) ? CURL_CSELECT_OUT : 0),
				 &running);
	check_done(e);
	rearm(e);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	az_engine *e = userp;
	kb_io_watch *w = socketp;
	unsigned ev = what == CURL_POLL_IN ? KB_IO_IN :
		      what == CURL_POLL_OUT ? KB_IO_OUT :
		      what == CURL_POLL_INOUT ? KB_IO_IN | KB_IO_OUT : 0;

	(void)easy;
	if (e->io->watch(e->io->loop, &w, fd, ev, on_ready, e) != 0)
		kb_log_err("azure key %s: cannot watch a connection's socket", e->k->name);
	curl_multi_assign(e->multi, fd, w);
	return 0;
}

static void on_timer(void *ctx)
{
	az_engine *e = ctx;
	int64_t now = kb_now_ms();
	az_xfer **pp = &e->retry, *due = NULL;
	int running;

	if (e->curl_due_ms >= 0 && e->curl_due_ms <= now) {
		e->curl_due_ms = -1;
		curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		check_done(e);
	}
	while (*pp) {
		az_xfer *x = *pp;

		if (x->due_ms <= now) {
			*pp = x->next;
			x->next = due;
			due = x;
		} else {
			pp = &x->next;
		}
	}
	while (due) {
		az_xfer *x = due;

		due = x->next;
		send_xfer(x);
	}
	rearm(e);
}

/* ---- sending ---- */

static void send_xfer(az_xfer *x)
{
	az_engine *e = x->e;
	int64_t now = kb_now_ms();

	if (now >= x->deadline_ms) {
		x->resp.cc = CURLE_OPERATION_TIMEDOUT;
		snprintf(x->resp.neterr, sizeof(x->resp.neterr), "no answer within timeout %lldms",
			 (long long)e->k->conf.timeout_ms);
		answered(x);
		return;
	}
	bool set_up = e->nspare > 0; /* spares were prepared for this key before */

	x->h = set_up ? e->spare[--e->nspare] : curl_easy_init();
	if (x->h == NULL) {
		complete(x, kb_err_set(x->a->err, KB_E_INTERNAL, "out of memory (curl handle)"));
		return;
	}
	az_http_prepare(&e->k->conf, x->h, set_up, x->errbuf, &x->rq, x->hdrs, x->deadline_ms - now, &x->resp);
	curl_easy_setopt(x->h, CURLOPT_PRIVATE, (char *)x);
	x->st = X_ON_WIRE;
	if (curl_multi_add_handle(e->multi, x->h) != CURLM_OK)
		complete(x, kb_err_set(x->a->err, KB_E_INTERNAL, "key %s: curl refused the request", e->k->name));
}

/* with_token sends x with a token in hand (it wipes token). */
static void with_token(az_xfer *x, char *token)
{
	x->rq.bearer = token;
	x->hdrs = az_http_headers(&x->rq, &x->resp);
	x->rq.bearer = NULL;
	az_secret_free(token);
	if (x->hdrs == NULL) {
		complete(x, kb_err_set(x->a->err, KB_E_INTERNAL, "out of memory"));
		return;
	}
	send_xfer(x);
}

static void fetch_work(void *ctx, int slot)
{
	az_engine *e = ctx;
	az_key *k = e->k;
	char *token = NULL;
	unsigned gen;
	bool fresh;

	e->fetch_rc = az_token_get(k->cred, &k->conf, &k->slots[slot], &token, &gen, &fresh, &e->fetch_err);
	az_secret_free(token); /* the shared cache holds it now */
}

static void fetch_done(void *ctx)
{
	az_engine *e = ctx;
	az_xfer *waiting = e->token_wait;

	e->offloaded--;
	e->fetching = false;
	e->token_wait = NULL;
	while (waiting) {
		az_xfer *x = waiting;

		waiting = x->next;
		if (e->io == NULL) {
			xfer_free(x);
		} else if (e->fetch_rc != KB_OK) {
			*x->a->err = e->fetch_err;
			complete(x, e->fetch_rc);
		} else {
			x->fresh = true;
			begin(x);
		}
	}
	release(e);
}

/* begin sends x once it has a token, fetching one first if none is cached. */
static void begin(az_xfer *x)
{
	az_engine *e = x->e;
	az_key *k = e->k;
	char *token;
	bool fresh;
	kb_code rc = az_token_cached(k->cred, &k->conf, &token, &x->gen, &fresh, x->a->err);

	if (rc == KB_OK) {
		x->fresh = x->fresh || fresh;
		with_token(x, token);
		return;
	}
	if (rc != KB_E_BUSY || x->fresh) {
		/* a token fetched for us is already unusable: do not ask again at once */
		if (rc == KB_E_BUSY)
			kb_err_set(x->a->err, KB_E_AUTH_FAILED, "key %s: the token just fetched is already expired",
				   k->name);
		complete(x, rc == KB_E_BUSY ? KB_E_AUTH_FAILED : rc);
		return;
	}
	x->st = X_WAIT_TOKEN;
	x->next = e->token_wait;
	e->token_wait = x;
	if (e->fetching)
		return;
	if (e->io->offload(e->io->loop, fetch_work, fetch_done, e) != 0) {
		e->token_wait = x->next;
		complete(x, kb_err_set(x->a->err, KB_E_INTERNAL, "out of memory"));
		return;
	}
	e->fetching = true;
	e->offloaded++;
}

kb_code az_engine_unwrap(az_engine *e, kb_async *a)
{
	az_key *k = e->k;
	az_xfer *x;

	if (a->version == NULL || *a->version == '\0')
		return kb_err_set(a->err, KB_E_BAD_BLOB, "key %s: the blob names no key version", k->name);
	if ((x = calloc(1, sizeof(*x))) == NULL)
		return kb_err_set(a->err, KB_E_INTERNAL, "out of memory");
	x->e = e;
	x->a = a;
	x->op = AZ_OP_UNWRAP;
	x->deadline_ms = kb_now_ms() + k->conf.timeout_ms;
	x->resp.retry_after_ms = -1;
	if ((x->body = az_op_body(a->alg, a->in, a->inlen, &x->bodycap)) == NULL) {
		free(x);
		return kb_err_set(a->err, KB_E_INTERNAL, "out of memory");
	}
	az_key_url(k, a->version, "unwrapkey", x->url, sizeof(x->url));
	x->rq = (az_req){ .method = "POST", .url = x->url, .body = x->body, .body_len = strlen(x->body),
			  .content_type = "application/json", .idempotent = true };
	x->st = X_QUEUED;
	x->all_next = e->all;
	if (e->all)
		e->all->all_prev = x;
	e->all = x;
	if (e->active < k->conf.max_in_flight) {
		e->active++;
		begin(x);
	} else {
		if (e->queued_tail)
			e->queued_tail->next = x;
		else
			e->queued = x;
		e->queued_tail = x;
	}
	return KB_OK;
}

/* ---- the engine ---- */

az_engine *az_engine_new(az_key *k, const kb_io *io)
{
	az_engine *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->k = k;
	e->io = io;
	e->curl_due_ms = -1;
	e->multi = curl_multi_init();
	e->timer = io->timer_new(io->loop, on_timer, e);
	if (e->multi == NULL || e->timer == NULL) {
		if (e->multi)
			curl_multi_cleanup(e->multi);
		if (e->timer)
			io->timer_free(e->timer);
		free(e);
		return NULL;
	}
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
	curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)k->conf.http_connections);
	curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)k->conf.http_connections);
	return e;
}

bool az_engine_free(az_engine *e, void (*free_key)(az_key *k))
{
	az_xfer *x, *next;

	if (e == NULL)
		return false;
	/* every call in flight is dropped: the core let go of them */
	for (x = e->all; x; x = next) {
		next = x->all_next;
		if (x->st == X_CHECKING)
			continue; /* its offloaded step frees it */
		if (x->st == X_ON_WIRE)
			curl_multi_remove_handle(e->multi, x->h);
		xfer_free(x);
	}
	e->queued = e->queued_tail = e->retry = e->token_wait = NULL;
	curl_multi_cleanup(e->multi); /* ends the socket watches through on_socket */
	e->io->timer_free(e->timer);
	e->io = NULL;
	e->free_key = free_key;
	if (e->offloaded > 0)
		return true;
	e->free_key = NULL;
	release(e);
	return false;
}
