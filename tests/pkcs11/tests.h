/* tests.h: the test functions of tests/pkcs11, one per behaviour (see main.c). */
#ifndef KB_TEST_P11_TESTS_H
#define KB_TEST_P11_TESTS_H

void test_rsa_round_trip(void **state);
void test_aes_round_trip(void **state);
void test_rsa_sizes(void **state);
void test_aes_sizes(void **state);
void test_gcm_sizes(void **state);
void test_gcm_binds_key_and_version(void **state);
void test_gcm_binds_the_version_alone(void **state);
void test_kw_sizes(void **state);
void test_oaep256_unsupported(void **state);
void test_tampered_is_bad_blob(void **state);
void test_alg_mismatch(void **state);
void test_rotate(void **state);
void test_odd_id(void **state);
void test_unknown_version(void **state);
void test_found_on_miss(void **state);
void test_deleted_version(void **state);
void test_wrong_pin(void **state);
void test_missing_label(void **state);
void test_options(void **state);
void test_softhsm_conf_named(void **state);
void test_describe(void **state);
void test_doctor(void **state);
void test_random(void **state);
void test_session_recovery(void **state);
void test_interop_openssl(void **state);
void test_interop_pkcs11_tool(void **state);
void test_concurrency(void **state);

#endif
