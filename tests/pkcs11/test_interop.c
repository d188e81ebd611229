/* test_interop.c: other tools agree with the backend, and threads do not collide. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "fixture.h"
#include "tests.h"

static void write_file(const char *path, const void *data, size_t n)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

static size_t read_file(const char *path, void *data, size_t cap)
{
	FILE *fp = fopen(path, "rb");
	size_t n;

	assert_non_null(fp);
	n = fread(data, 1, cap, fp);
	fclose(fp);
	return n;
}

void test_interop_openssl(void **state)
{
	fx *f = *state;
	uint8_t dek[32], ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char pem[PATH_MAX + 16], in[PATH_MAX + 16], out[PATH_MAX + 16];
	kb_key_info info;
	size_t n;
	kb_err err;
	fx_key k;

	fx_open_ok(f, &k, "kek", "rsa-kek");
	assert_int_equal(kb_pkcs11_backend.describe(k.state, 0, &info, &err), KB_OK);
	snprintf(pem, sizeof(pem), "%s/pub.pem", f->dir);
	snprintf(in, sizeof(in), "%s/dek.bin", f->dir);
	snprintf(out, sizeof(out), "%s/dek.enc", f->dir);
	write_file(pem, info.public_pem, strlen(info.public_pem));
	free(info.public_pem);
	assert_int_equal(RAND_bytes(dek, sizeof(dek)), 1);
	write_file(in, dek, sizeof(dek));
	assert_int_equal(fx_sh("openssl pkeyutl -encrypt -pubin -inkey '%s' -pkeyopt rsa_padding_mode:oaep -in '%s' -out '%s'",
			       pem, in, out), 0);
	n = read_file(out, ct, sizeof(ct));
	assert_int_equal(n, 256);
	assert_int_equal(fx_unwrap(&k, 0, info.latest, KB_ALG_RSA_OAEP, ct, n, pt), sizeof(dek));
	assert_memory_equal(pt, dek, sizeof(dek));
	fx_close(&k);
}

void test_interop_pkcs11_tool(void **state)
{
	fx *f = *state;
	uint8_t dek[32], ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char v[KB_VERSION_MAX + 1], in[PATH_MAX + 16], out[PATH_MAX + 16];
	size_t n;
	fx_key k;

	fx_open_ok(f, &k, "kek", "rsa-kek");
	assert_int_equal(RAND_bytes(dek, sizeof(dek)), 1);
	n = fx_wrap(&k, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct, v);
	snprintf(in, sizeof(in), "%s/dek.enc", f->dir);
	snprintf(out, sizeof(out), "%s/dek.dec", f->dir);
	write_file(in, ct, n);
	fx_export_pin(f);
	assert_int_equal(fx_sh("pkcs11-tool --module '%s' --token-label keybroker --login --pin env:KB_PIN --decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA-1 --mgf MGF1-SHA1 --id %s --input-file '%s' --output-file '%s' >/dev/null 2>&1",
			       f->module, v, in, out), 0);
	assert_int_equal(read_file(out, pt, sizeof(pt)), sizeof(dek));
	assert_memory_equal(pt, dek, sizeof(dek));
	fx_close(&k);
}

#define THREADS 4
#define ROUNDS 200

struct worker {
	fx_key *k;
	int slot;
	uint8_t dek[32];
	uint8_t ct[KB_WRAPPED_MAX];
	size_t ctlen;
	int bad;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	uint8_t pt[KB_SECRET_MAX];
	size_t ptlen;
	kb_err err;

	for (int i = 0; i < ROUNDS; i++) {
		ptlen = sizeof(pt);
		if (kb_pkcs11_backend.unwrap(w->k->state, w->slot, "01", KB_ALG_NONE, w->ct, w->ctlen, pt, &ptlen,
					     &err) != KB_OK ||
		    ptlen != sizeof(w->dek) || memcmp(pt, w->dek, ptlen) != 0)
			w->bad++;
	}
	return NULL;
}

static void concurrent(fx *f, const char *label)
{
	struct worker w[THREADS];
	pthread_t t[THREADS];
	char v[KB_VERSION_MAX + 1];
	fx_key k;

	fx_open_ok(f, &k, "kek", label);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .k = &k, .slot = i };
		assert_int_equal(RAND_bytes(w[i].dek, sizeof(w[i].dek)), 1);
		w[i].ctlen = fx_wrap(&k, FX_CONTROL, NULL, KB_ALG_NONE, w[i].dek, sizeof(w[i].dek), w[i].ct, v);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
	fx_close(&k);
}

void test_concurrency(void **state)
{
	concurrent(*state, "rsa-kek");
	concurrent(*state, "aes-kek");
}
