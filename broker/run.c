/*
 * run.c: the backend work of a job, made on a worker thread (or started by
 * the loop for a backend that does not block). It touches nothing but the
 * job and its backend slot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "jsonw.h"
#include "keyprint.h"
#include "outage.h"
#include "run.h"

int64_t kb_call_begin(void)
{
	return kb_now_us();
}

kb_code kb_call_end(kb_job *j, kb_bop op, int64_t t0, kb_code rc)
{
	if (rc == KB_OK) {
		j->err.code = KB_OK;
		j->err.msg[0] = '\0';
	} else if (j->err.code == KB_OK) {
		j->err.code = rc;
		snprintf(j->err.msg, sizeof(j->err.msg), "the key service call failed (%s) without saying why",
			 kb_code_name(rc));
	}
	if (j->ncalls < (int)(sizeof(j->calls) / sizeof(j->calls[0]))) {
		j->calls[j->ncalls].op = op;
		j->calls[j->ncalls].rc = rc;
		j->calls[j->ncalls].us = kb_now_us() - t0;
		j->ncalls++;
	}
	return rc;
}

void kb_unwrap_done(kb_job *j, size_t n)
{
	j->ptlen = n;
	j->have_pt = true;
	snprintf(j->version, sizeof(j->version), "%s", j->blob.version);
}

static kb_code do_unwrap(kb_job *j, kb_key *k, int slot)
{
	int64_t t0 = kb_call_begin();
	size_t n = sizeof(j->pt);
	void *state;
	int where;
	kb_code rc = kb_keyprint_locate(k, slot, &j->blob, &state, &where, &j->err);

	if (rc == KB_OK)
		rc = k->ops->unwrap(state, slot, j->blob.version, j->blob.alg, j->blob.ct, j->blob.ctlen, j->pt, &n,
				    &j->err);
	if (rc == KB_OK)
		atomic_fetch_add(where < 0 ? &k->unwraps_current : &k->prev[where].unwraps, 1);

	kb_call_end(j, KB_BOP_UNWRAP, t0, rc);
	if (rc == KB_OK)
		kb_unwrap_done(j, n);
	return rc;
}

/* do_wrap wraps j->pt under k's latest version and encodes the blob. */
static kb_code do_wrap(kb_job *j, kb_key *k, int slot)
{
	kb_blob *out = malloc(sizeof(*out));
	kb_code rc;
	int64_t t0;

	if (out == NULL)
		return kb_err_set(&j->err, KB_E_INTERNAL, "out of memory");
	memset(out, 0, sizeof(*out));
	out->ctlen = sizeof(out->ct);
	t0 = kb_call_begin();
	rc = k->ops->wrap(k->state, slot, NULL, j->alg, j->pt, j->ptlen, out->ct, &out->ctlen,
			  out->version, &out->alg, &j->err);
	kb_call_end(j, KB_BOP_WRAP, t0, rc);
	if (rc == KB_OK) {
		snprintf(out->key, sizeof(out->key), "%s", k->conf->name);
		rc = kb_keyprint_get(k, slot, out->version, out->fp, &j->err);
		if (rc == KB_OK)
			rc = kb_blob_encode(out, j->blob_out, sizeof(j->blob_out), &j->err);
		snprintf(j->version, sizeof(j->version), "%s", out->version);
	}
	free(out);
	return rc;
}

static kb_code do_random(kb_job *j, kb_key *k, int slot)
{
	size_t n = (size_t)j->bits / 8;
	int64_t t0;
	kb_code rc;

	if (k->ops->random == NULL) {
		if (RAND_priv_bytes(j->pt, (int)n) != 1)
			return kb_err_set(&j->err, KB_E_INTERNAL, "OpenSSL's RNG failed");
	} else {
		t0 = kb_call_begin();
		rc = kb_call_end(j, KB_BOP_RANDOM, t0, k->ops->random(k->state, slot, j->pt, n, &j->err));
		if (rc != KB_OK)
			return rc;
	}
	j->ptlen = n;
	j->have_pt = true;
	return KB_OK;
}

static void doctor_emit(void *ctx, const char *check, const char *status, const char *detail,
			const char *fix)
{
	kb_buf *t = ctx;

	kb_jw_raw(t, t->len ? ",{\"check\":" : "{\"check\":");
	kb_jw_str(t, check);
	kb_jw_raw(t, ",\"status\":");
	kb_jw_str(t, status);
	kb_jw_raw(t, ",\"detail\":");
	kb_jw_str(t, detail ? detail : "");
	kb_jw_raw(t, ",\"fix\":");
	if (fix)
		kb_jw_str(t, fix);
	else
		kb_jw_raw(t, "null");
	kb_jw_raw(t, "}");
}

void kb_job_run(kb_broker *b, kb_job *j, int slot)
{
	kb_key *k = j->key;
	int64_t t0;
	(void)b;

	if (j->work) {
		j->work(j->work_ctx, slot);
		return;
	}
	kb_err_clear(&j->err);
	switch (j->op) {
	case KB_OP_GET:
		j->info = calloc(1, sizeof(*j->info));
		if (j->info == NULL) {
			kb_err_set(&j->err, KB_E_INTERNAL, "out of memory");
			break;
		}
		t0 = kb_call_begin();
		kb_call_end(j, KB_BOP_DESCRIBE, t0, k->ops->describe(k->state, slot, j->info, &j->err));
		break;
	case KB_OP_WRAP:
		do_wrap(j, k, slot);
		break;
	case KB_OP_UNWRAP:
		do_unwrap(j, j->src, slot);
		break;
	case KB_OP_DATAKEY:
		if (do_random(j, k, slot) == KB_OK)
			do_wrap(j, k, slot);
		break;
	case KB_OP_REWRAP:
		if (j->have_pt || do_unwrap(j, j->src, slot) == KB_OK) {
			j->alg = KB_ALG_NONE; /* the target key's own algorithm */
			do_wrap(j, k, slot);
		}
		break;
	case KB_OP_ROTATE:
		t0 = kb_call_begin();
		kb_call_end(j, KB_BOP_ROTATE, t0, k->ops->rotate(k->state, slot, j->version, &j->err));
		break;
	case KB_OP_DOCTOR:
		doctor_emit(&j->text, "config", "pass", "the key's configuration was accepted at startup", NULL);
		if (kb_outage_doctor(k, doctor_emit, &j->text))
			break;
		if (k->ops->doctor == NULL) {
			doctor_emit(&j->text, "backend", "warn", "this backend has no diagnostics", "none");
			break;
		}
		t0 = kb_call_begin();
		kb_call_end(j, KB_BOP_DOCTOR, t0, k->ops->doctor(k->state, slot, doctor_emit, &j->text, &j->err));
		break;
	default:
		kb_err_set(&j->err, KB_E_INTERNAL, "no worker for op %s", kb_op_name(j->op));
	}
}
