/*
 * session.c: one PKCS#11 session per worker slot.
 *
 * A session that the token lost (removed, reset, closed) is marked stale;
 * the next call on that slot opens a new one and logs in again if the token
 * has forgotten the login, so a token that comes back works again without a
 * restart.
 *
 * Login is a raw C_Login rather than PKCS11_login: libp11 keeps a copy of the
 * PIN for its own re-logins, and it caches its logged-in flag, so it would
 * not log in again after the token came back. Here the PIN is read from its
 * source at each login and wiped at once.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "p11.h"

static bool logged_in(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h)
{
	CK_SESSION_INFO si;

	if (f->C_GetSessionInfo(h, &si) != CKR_OK)
		return false;
	return si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS;
}

static unsigned char mac_key[32];
static bool mac_key_ok;
static pthread_once_t mac_once = PTHREAD_ONCE_INIT;

static void mac_key_make(void)
{
	mac_key_ok = RAND_bytes(mac_key, sizeof(mac_key)) == 1;
}

/* pin_mac writes the keyed digest of pin to out; false without a key. */
static bool pin_mac(const char *pin, unsigned char out[32])
{
	unsigned int n = 32;

	pthread_once(&mac_once, mac_key_make);
	return mac_key_ok && HMAC(EVP_sha256(), mac_key, sizeof(mac_key), (const unsigned char *)pin, strlen(pin), out,
				  &n) != NULL;
}

/* session_login logs the application in on session c->h, once per token. */
static kb_code session_login(kb_p11_call *c, kb_err *err)
{
	kb_p11_key *k = c->key;
	char pin[KB_P11_PIN_MAX];
	kb_code rc = KB_OK;
	CK_RV rv;

	/* login state is per application: one thread logs in, the rest see it */
	pthread_mutex_lock(&k->tok->login_lock);
	if (logged_in(k->f, c->h))
		goto out;
	rc = kb_p11_pin_read(&k->conf.pin, k->name, pin, sizeof(pin), err);
	if (rc != KB_OK)
		goto out;
	rv = k->f->C_Login(c->h, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
	if (rv == CKR_OK) {
		atomic_fetch_add(&k->tok->login_epoch, 1);
		k->tok->pin_mac_set = pin_mac(pin, k->tok->pin_mac);
	}
	OPENSSL_cleanse(pin, sizeof(pin));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
		rc = kb_p11_fail(c, "C_Login", rv, err);
out:
	pthread_mutex_unlock(&k->tok->login_lock);
	return rc;
}

kb_code kb_p11_pin_verify(kb_p11_call *c, kb_err *err)
{
	kb_p11_key *k = c->key;
	char pin[KB_P11_PIN_MAX], src[300];
	unsigned char mac[32];
	bool same = true;
	kb_code rc = kb_p11_pin_read(&k->conf.pin, k->name, pin, sizeof(pin), err);

	if (rc != KB_OK)
		return rc;
	pthread_mutex_lock(&k->tok->login_lock);
	if (k->tok->pin_mac_set && pin_mac(pin, mac))
		same = CRYPTO_memcmp(mac, k->tok->pin_mac, sizeof(mac)) == 0;
	pthread_mutex_unlock(&k->tok->login_lock);
	OPENSSL_cleanse(pin, sizeof(pin));
	OPENSSL_cleanse(mac, sizeof(mac));
	if (same)
		return KB_OK;
	kb_p11_pin_describe(&k->conf.pin, src, sizeof(src));
	return kb_err_set(err, KB_E_AUTH_FAILED,
			  "key %s: %s does not hold the PIN token %s is logged in with, so a restart would fail to log in: put the token's user PIN there",
			  k->name, src, k->tok->label);
}

static CK_RV session_open(kb_p11_key *k, CK_SESSION_HANDLE *h)
{
	CK_RV rv = k->f->C_OpenSession(k->tok->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, h);

	if (rv == CKR_CRYPTOKI_NOT_INITIALIZED) {
		/* someone finalized the module under us: initialize it again */
		CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

		rv = k->f->C_Initialize(&args);
		if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
			rv = k->f->C_OpenSession(k->tok->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION,
						 NULL, NULL, h);
	}
	return rv;
}

kb_code kb_p11_session_get(kb_p11_call *c, kb_err *err)
{
	kb_p11_key *k = c->key;
	kb_p11_slot *s = &k->slots[c->slot];
	unsigned gen = atomic_load(&k->tok->gen);
	kb_code rc;
	CK_RV rv;

	if (s->gen != gen) {
		/* the module was initialized again: the handle is gone, and may name another's session now */
		s->h = CK_INVALID_HANDLE;
		s->stale = true;
		s->gen = gen;
	}
	if (!s->stale) {
		c->h = s->h;
		return KB_OK;
	}
	kb_p11_session_drop(k, c->slot);
	rv = session_open(k, &c->h);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_OpenSession", rv, err);
	if (!logged_in(k->f, c->h)) {
		rc = session_login(c, err);
		if (rc != KB_OK) {
			k->f->C_CloseSession(c->h);
			c->h = CK_INVALID_HANDLE;
			return rc;
		}
	}
	s->h = c->h;
	s->stale = false;
	return KB_OK;
}

void kb_p11_session_drop(kb_p11_key *k, int slot)
{
	kb_p11_slot *s = &k->slots[slot];

	if (s->h != CK_INVALID_HANDLE)
		k->f->C_CloseSession(s->h); /* may already be gone; nothing to do then */
	s->h = CK_INVALID_HANDLE;
	s->stale = true;
}
