#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "jobs.h"
#include "keys.h"

kb_job *kb_job_new(kb_broker *b, kb_op op, kb_key *key)
{
	kb_job *j = calloc(1, sizeof(*j));

	kb_loop_assert_owner();
	if (j == NULL)
		return NULL;
	j->op = op;
	j->key = key;
	j->ks = b->ks;
	j->ks->refs++;
	return j;
}

void kb_job_free(kb_job *j)
{
	if (j == NULL)
		return;
	if (j->info) {
		free(j->info->public_pem);
		free(j->info);
	}
	kb_buf_free(&j->text);
	free(j->waiters);
	kb_keyset_unref(j->ks);
	OPENSSL_cleanse(j, sizeof(*j));
	free(j);
}

kb_code kb_job_add_waiter(kb_job *j, const kb_waiter *src)
{
	kb_waiter *w;

	kb_loop_assert_owner();
	if (j->nwaiters == j->capwaiters) {
		int cap = j->capwaiters ? j->capwaiters * 2 : 1;
		w = realloc(j->waiters, sizeof(*w) * (size_t)cap);
		if (w == NULL)
			return KB_E_INTERNAL;
		j->waiters = w;
		j->capwaiters = cap;
	}
	w = &j->waiters[j->nwaiters++];
	*w = *src;
	w->conn->refs++;
	w->conn->inflight++;
	return KB_OK;
}

static kb_job **flight_head(kb_broker *b, const uint8_t *digest)
{
	uint32_t h;

	memcpy(&h, digest, sizeof(h));
	return &b->flights[h & (b->nflights - 1)];
}

kb_job *kb_flight_find(kb_broker *b, const uint8_t *digest)
{
	kb_loop_assert_owner();
	for (kb_job *j = *flight_head(b, digest); j; j = j->flight_next)
		if (memcmp(j->digest, digest, KB_DIGEST_LEN) == 0)
			return j;
	return NULL;
}

void kb_flight_add(kb_broker *b, kb_job *j)
{
	kb_job **head = flight_head(b, j->digest);

	kb_loop_assert_owner();
	j->flight_next = *head;
	*head = j;
}

void kb_flight_remove(kb_broker *b, kb_job *j)
{
	kb_loop_assert_owner();
	for (kb_job **pp = flight_head(b, j->digest); *pp; pp = &(*pp)->flight_next) {
		if (*pp == j) {
			*pp = j->flight_next;
			return;
		}
	}
}
