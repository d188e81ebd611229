/*
 * keyprint.c: key version fingerprints, made once (see keyprint.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyprint.h"
#include "kms_keyid.h"

_Static_assert(KB_BLOB_FP_LEN == KB_KMS_FP_LEN, "a blob's fingerprint is the KMS face's");

typedef struct print {
	char version[KB_VERSION_MAX + 1];
	char fp[KB_BLOB_FP_LEN + 1];
} print;

struct kb_keyprints {
	pthread_mutex_t lock;
	print *v;
	int n, cap;
};

kb_keyprints *kb_keyprints_new(void)
{
	kb_keyprints *p = calloc(1, sizeof(*p));

	if (p)
		pthread_mutex_init(&p->lock, NULL);
	return p;
}

void kb_keyprints_free(kb_keyprints *p)
{
	if (p == NULL)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p->v);
	free(p);
}

static bool lookup(kb_keyprints *p, const char *version, char fp[KB_BLOB_FP_LEN + 1])
{
	bool found = false;

	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < p->n && !found; i++)
		if (strcmp(p->v[i].version, version) == 0) {
			memcpy(fp, p->v[i].fp, KB_BLOB_FP_LEN + 1);
			found = true;
		}
	pthread_mutex_unlock(&p->lock);
	return found;
}

static void remember(kb_keyprints *p, const char *version, const char *fp)
{
	char seen[KB_BLOB_FP_LEN + 1];

	if (lookup(p, version, seen))
		return;
	pthread_mutex_lock(&p->lock);
	if (p->n == p->cap) {
		int cap = p->cap ? 2 * p->cap : 8;
		print *grown = realloc(p->v, (size_t)cap * sizeof(*grown));

		if (grown == NULL) {
			pthread_mutex_unlock(&p->lock);
			return; /* asked again next time */
		}
		p->v = grown;
		p->cap = cap;
	}
	snprintf(p->v[p->n].version, sizeof(p->v[0].version), "%s", version);
	snprintf(p->v[p->n].fp, sizeof(p->v[0].fp), "%s", fp);
	p->n++;
	pthread_mutex_unlock(&p->lock);
}

/* get_fp is kb_keyprint_get for one location: its backend state and memo */
static kb_code get_fp(const kb_backend_ops *ops, void *state, kb_keyprints *prints, int slot, const char *version,
		      char fp[KB_BLOB_FP_LEN + 1], kb_err *err)
{
	kb_buf m = { 0 };
	kb_code rc;

	fp[0] = '\0';
	if (ops->identify == NULL || prints == NULL || state == NULL)
		return KB_OK;
	if (lookup(prints, version, fp))
		return KB_OK;
	rc = ops->identify(state, slot, version, &m, err);
	if (rc == KB_OK) {
		kb_kms_fingerprint(m.data ? m.data : "", m.len, fp);
		remember(prints, version, fp);
	}
	kb_buf_free(&m);
	return rc;
}

kb_code kb_keyprint_get(kb_key *k, int slot, const char *version, char fp[KB_BLOB_FP_LEN + 1], kb_err *err)
{
	return get_fp(k->ops, k->state, k->prints, slot, version, fp, err);
}

kb_code kb_keyprint_locate(kb_key *k, int slot, const kb_blob *blob, void **state, int *where, kb_err *err)
{
	char fp[KB_BLOB_FP_LEN + 1], mine[KB_BLOB_FP_LEN + 1] = "not there";
	kb_err e2;
	kb_code rc;

	*state = k->state;
	*where = -1;
	if (blob->fp[0] == '\0')
		return KB_OK;
	rc = get_fp(k->ops, k->state, k->prints, slot, blob->version, fp, err);
	if (rc == KB_OK && (fp[0] == '\0' || strcmp(fp, blob->fp) == 0))
		return KB_OK;
	if (rc != KB_OK && rc != KB_E_UNKNOWN_VERSION)
		return rc;
	if (rc == KB_OK)
		snprintf(mine, sizeof(mine), "%s", fp);
	for (int i = 0; i < k->nprev; i++) {
		kb_location *l = &k->prev[i];

		if (get_fp(k->ops, l->state, l->prints, slot, blob->version, fp, &e2) == KB_OK && fp[0] &&
		    strcmp(fp, blob->fp) == 0) {
			*state = l->state;
			*where = i;
			return KB_OK;
		}
	}
	return kb_err_set(err, KB_E_UNKNOWN_VERSION,
			  "the blob was wrapped by key fingerprint %s, which neither [key:%s] (its version %s is %s) nor "
			  "any of its %d previous locations holds: the key moved or was made again; if it moved, name "
			  "its old location in [key:%s] as previous = <url or pkcs11 uri>",
			  blob->fp, k->conf->name, blob->version, mine, k->nprev, k->conf->name);
}
