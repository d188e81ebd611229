#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define CA_DAYS 3650
#define SERVER_DAYS 825
#define SERVER_SAN "DNS:localhost,DNS:*.vault.localhost,DNS:*.managedhsm.localhost,IP:127.0.0.1,IP:::1"

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return 0;
}

/* make_cert issues a certificate for key, signed by issuer_key (self-signed if issuer is NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
	X509 *x = X509_new();
	BIGNUM *serial = BN_new();
	X509_NAME *name;

	if (!x || !serial || !BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) || !X509_set_version(x, 2))
		goto fail;
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * (ca ? CA_DAYS : SERVER_DAYS));
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"akv-emulator", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	if (ca) {
		if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
		    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
		    add_ext(x, x, NID_subject_key_identifier, "hash") ||
		    add_ext(x, x, NID_authority_key_identifier, "keyid:always"))
			goto fail;
	} else {
		if (add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") ||
		    add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") ||
		    add_ext(x, issuer, NID_ext_key_usage, "serverAuth") ||
		    add_ext(x, issuer, NID_subject_alt_name, SERVER_SAN) ||
		    add_ext(x, issuer, NID_subject_key_identifier, "hash") ||
		    add_ext(x, issuer, NID_authority_key_identifier, "keyid:always"))
			goto fail;
	}
	if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
		goto fail;
	BN_free(serial);
	return x;
fail:
	BN_free(serial);
	X509_free(x);
	return NULL;
}

static int write_pem(const char *dir, const char *file, EVP_PKEY *key, X509 *cert)
{
	char path[4096];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "we");
	if (!f)
		return -1;
	ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
	if (fclose(f) != 0)
		ok = 0;
	if (cert)
		chmod(path, 0644);
	return ok ? 0 : -1;
}

static bool exists(const char *dir, const char *file)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return access(path, R_OK) == 0;
}

int emu_tls_init(const char *dir, bool *created, char *err, size_t errlen)
{
	EVP_PKEY *ca_key = NULL, *srv_key = NULL;
	X509 *ca = NULL, *srv = NULL;
	mode_t old;
	int rc = -1;

	*created = false;
	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (exists(dir, "ca.pem") && exists(dir, "server.pem") && exists(dir, "server-key.pem"))
		return 0;
	old = umask(077);
	ca_key = EVP_EC_gen("P-256");
	srv_key = EVP_EC_gen("P-256");
	if (!ca_key || !srv_key || !(ca = make_cert(ca_key, "akv-emulator local CA", NULL, NULL, true)) ||
	    !(srv = make_cert(srv_key, "localhost", ca, ca_key, false))) {
		snprintf(err, errlen, "cannot generate the CA and server certificate");
		goto out;
	}
	if (write_pem(dir, "ca-key.pem", ca_key, NULL) || write_pem(dir, "ca.pem", NULL, ca) ||
	    write_pem(dir, "server-key.pem", srv_key, NULL) || write_pem(dir, "server.pem", NULL, srv)) {
		snprintf(err, errlen, "cannot write certificates into %s: %s", dir, strerror(errno));
		goto out;
	}
	*created = true;
	rc = 0;
out:
	umask(old);
	X509_free(ca);
	X509_free(srv);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(srv_key);
	return rc;
}

static char *slurp(const char *dir, const char *file)
{
	char path[4096], *buf;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "re");
	if (!f)
		return NULL;
	buf = calloc(1, 65537);
	n = buf ? fread(buf, 1, 65536, f) : 0;
	fclose(f);
	if (buf && n == 65536) {
		free(buf);
		return NULL;
	}
	return buf;
}

int emu_tls_load(const char *dir, char **cert, char **key, char *err, size_t errlen)
{
	*cert = slurp(dir, "server.pem");
	*key = slurp(dir, "server-key.pem");
	if (!*cert || !*key) {
		snprintf(err, errlen, "no server.pem and server-key.pem in %s; run akv-emulator --init-tls %s",
			 dir, dir);
		free(*cert);
		free(*key);
		*cert = *key = NULL;
		return -1;
	}
	return 0;
}
