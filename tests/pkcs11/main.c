/*
 * main.c: tests/pkcs11 runs one named behaviour per process (argv[1]), each
 * on its own fresh SoftHSM token, so meson runs them in parallel.
 */
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "tests.h"

#define T(name) { #name, test_##name }

static const struct {
	const char *name;
	CMUnitTestFunction fn;
} all[] = {
	T(rsa_round_trip), T(aes_round_trip), T(rsa_sizes), T(aes_sizes), T(gcm_sizes), T(gcm_binds_key_and_version), T(kw_sizes),
	T(oaep256_unsupported), T(tampered_is_bad_blob), T(alg_mismatch),
	T(rotate), T(odd_id), T(unknown_version), T(found_on_miss), T(deleted_version),
	T(wrong_pin), T(missing_label), T(options), T(softhsm_conf_named),
	T(describe), T(doctor), T(random), T(session_recovery),
	T(interop_openssl), T(interop_pkcs11_tool), T(concurrency),
};

int main(int argc, char **argv)
{
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (argc > 1 && strcmp(argv[1], all[i].name) != 0)
			continue;
		const struct CMUnitTest t[] = { { all[i].name, all[i].fn, NULL, NULL, NULL } };
		int failed = _cmocka_run_group_tests(all[i].name, t, 1, fx_setup, fx_teardown);

		if (argc > 1 || failed)
			return failed;
	}
	if (argc > 1) {
		fprintf(stderr, "no test named %s\n", argv[1]);
		return 2;
	}
	return 0;
}
