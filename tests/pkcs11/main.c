/*
 * main.c: tests/pkcs11 runs one named behaviour per process (argv[1]), each
 * on its own fresh SoftHSM token, so meson runs them in parallel.
 */
#include "../cases.h"
#include "fixture.h"
#include "tests.h"

static const struct CMUnitTest tests[] = {
	CASE(test_rsa_round_trip, "pkcs11 - rsa wrap/unwrap round trip"),
	CASE(test_aes_round_trip, "pkcs11 - aes-kwp wrap/unwrap round trip"),
	CASE(test_rsa_sizes, "pkcs11 - rsa-oaep wraps 1..214 bytes and refuses 0 and 215 naming the maximum"),
	CASE(test_aes_sizes, "pkcs11 - aes-kwp wraps 8..1024 bytes, refuses 0, 1025 and (softhsm padding bug) non-multiples of 8"),
	CASE(test_gcm_sizes, "pkcs11 - aes-gcm wraps 1..1024 bytes with a fresh iv per wrap, refuses 0 and 1025"),
	CASE(test_gcm_binds_key_and_version, "pkcs11 - aes-gcm binds the key name and version; another name or a flipped bit is bad_blob"),
	CASE(test_gcm_binds_the_version_alone, "pkcs11 - aes-gcm binds the version alone; two versions of the same AES bytes refuse each other's ciphertext as bad_blob"),
	CASE(test_kw_sizes, "pkcs11 - aes-kw wraps 16..1024 bytes in multiples of 8 and names that range for the rest"),
	CASE(test_oaep256_unsupported, "pkcs11 - rsa-oaep-256 is mechanism_unsupported on softhsm for wrap, unwrap and as default"),
	CASE(test_tampered_is_bad_blob, "pkcs11 - tampered or truncated ciphertext is bad_blob"),
	CASE(test_alg_mismatch, "pkcs11 - alg that does not fit the key type is refused"),
	CASE(test_rotate, "pkcs11 - rotate makes a new version, new wraps use it, old versions still unwrap"),
	CASE(test_odd_id, "pkcs11 - key made by pkcs11-tool with id a1b2c3 works and rotates to a1b2c4"),
	CASE(test_unknown_version, "pkcs11 - unknown version is unknown_version"),
	CASE(test_found_on_miss, "pkcs11 - version made by pkcs11-tool after open is found on a miss"),
	CASE(test_deleted_version, "pkcs11 - version deleted from the token is reported gone, others keep working"),
	CASE(test_wrong_pin, "pkcs11 - wrong pin is auth_failed without the pin in the message"),
	CASE(test_missing_label, "pkcs11 - missing label, token or module fails open with a clear message"),
	CASE(test_softhsm_conf_named, "pkcs11 - softhsm with an empty token directory names SOFTHSM2_CONF, not the uri"),
	CASE(test_options, "pkcs11 - options - pin in uri refused, pin_file xor pin_env, unknown option left untaken"),
	CASE(test_describe, "pkcs11 - describe reports versions, type, size and a public key PEM that openssl parses"),
	CASE(test_doctor, "pkcs11 - doctor passes on healthy keys and warns on a readable pin file"),
	CASE(test_random, "pkcs11 - random comes from the token"),
	CASE(test_session_recovery, "pkcs11 - sessions closed under the broker are reopened and logged in again"),
	CASE(test_interop_openssl, "pkcs11 - openssl pkeyutl oaep ciphertext from the described public key unwraps"),
	CASE(test_interop_pkcs11_tool, "pkcs11 - pkcs11-tool decrypts a wrap made by the backend"),
	CASE(test_concurrency, "pkcs11 - 4 threads x 200 unwraps on their own slots are all correct"),
};

CASES_MAIN("pkcs11", tests, fx_setup, fx_teardown)
