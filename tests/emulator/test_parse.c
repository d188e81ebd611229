/* Unit tests of emulator/parse.c: routing, form bodies, operation bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../cases.h"

#include "parse.h"

static void routes_vault_and_mhsm_paths(void **state)
{
	struct emu_route r;

	assert_int_equal(emu_route_parse("POST", "Dev.Vault.Localhost:8443", "/keys/kek/create", &r), EMU_ROUTE_OK);
	assert_int_equal(r.kind, EMU_KIND_VAULT);
	assert_string_equal(r.vault, "dev");
	assert_string_equal(r.port, "8443");
	assert_string_equal(r.host, "dev.vault.localhost:8443");
	assert_int_equal(r.op, EMU_OP_CREATE);
	assert_string_equal(r.key, "kek");

	assert_int_equal(emu_route_parse("POST", "hsm1.managedhsm.localhost", "/KEYS/aes/0123/UnwrapKey", &r), EMU_ROUTE_OK);
	assert_int_equal(r.kind, EMU_KIND_MHSM);
	assert_int_equal(r.op, EMU_OP_UNWRAP);
	assert_string_equal(r.version, "0123");
	assert_string_equal(r.port, "");

	assert_int_equal(emu_route_parse("POST", "dev.vault.localhost", "/keys/kek/wrapkey", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_WRAP);
	assert_string_equal(r.version, "");

	/* SDKs send "/keys/NAME/" for the latest version */
	assert_int_equal(emu_route_parse("PATCH", "dev.vault.localhost", "/keys/kek/", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_UPDATE);
	assert_int_equal(emu_route_parse("GET", "dev.vault.localhost", "/keys/kek/versions", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_LIST_VERSIONS);
	assert_int_equal(emu_route_parse("DELETE", "dev.vault.localhost", "/deletedkeys/kek", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_PURGE);
	assert_int_equal(emu_route_parse("POST", "dev.vault.localhost", "/deletedKeys/kek/Recover", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_RECOVER);

	/* the calls a CMK operator adds: rotation policy, backup, restore, import, rng */
	assert_int_equal(emu_route_parse("PUT", "dev.vault.localhost", "/keys/kek/RotationPolicy", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_SET_POLICY);
	assert_int_equal(emu_route_parse("GET", "dev.vault.localhost", "/keys/kek/rotationpolicy", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_GET_POLICY);
	assert_int_equal(emu_route_parse("POST", "dev.vault.localhost", "/keys/kek/backup", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_BACKUP);
	assert_int_equal(emu_route_parse("POST", "dev.vault.localhost", "/keys/restore", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_RESTORE);
	/* a key may be named "restore": only POST /keys/restore restores */
	assert_int_equal(emu_route_parse("GET", "dev.vault.localhost", "/keys/restore", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_GET);
	assert_int_equal(emu_route_parse("PUT", "dev.vault.localhost", "/keys/byok", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_IMPORT);
	assert_int_equal(emu_route_parse("POST", "dev.managedhsm.localhost", "/rng", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_RNG);
	assert_int_equal(emu_route_parse("POST", "dev.vault.localhost", "/keys/kek//sign", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_UNSUPPORTED);
	assert_int_equal(emu_route_parse("GET", "dev.vault.localhost", "/keys/kek/0123/attestation", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_UNSUPPORTED);
}

static void rejects_bad_hosts_names_and_methods(void **state)
{
	struct emu_route r;

	assert_int_equal(emu_route_parse("GET", "vault.azure.net", "/keys/x", &r), EMU_ROUTE_BAD_HOST);
	assert_int_equal(emu_route_parse("GET", "a.b.vault.localhost", "/keys/x", &r), EMU_ROUTE_BAD_HOST);
	assert_int_equal(emu_route_parse("GET", ".vault.localhost", "/keys/x", &r), EMU_ROUTE_BAD_HOST);
	assert_int_equal(emu_route_parse("GET", "dev.vault.localhost:84x3", "/keys/x", &r), EMU_ROUTE_BAD_HOST);
	assert_int_equal(emu_route_parse("GET", NULL, "/keys/x", &r), EMU_ROUTE_BAD_HOST);
	assert_int_equal(emu_route_parse("GET", "dev.vault.localhost", "/keys/bad_name", &r), EMU_ROUTE_BAD_NAME);
	assert_int_equal(emu_route_parse("POST", "dev.vault.localhost", "/keys/x", &r), EMU_ROUTE_BAD_METHOD);
	assert_int_equal(emu_route_parse("POST", "dev.vault.localhost", "/keys/x/rotationpolicy", &r), EMU_ROUTE_BAD_METHOD);
	assert_int_equal(emu_route_parse("GET", "dev.managedhsm.localhost", "/rng", &r), EMU_ROUTE_BAD_METHOD);
	assert_int_equal(emu_route_parse("GET", "dev.vault.localhost", "/secrets/x", &r), EMU_ROUTE_NOT_FOUND);
	assert_int_equal(emu_route_parse("GET", "dev.vault.localhost", "/keys/x/1/2/3/4/5/6/7", &r), EMU_ROUTE_NOT_FOUND);
}

static void routes_the_token_service(void **state)
{
	struct emu_route r;

	assert_int_equal(emu_route_parse("POST", "localhost:8443", "/dev-tenant/oauth2/v2.0/token", &r), EMU_ROUTE_OK);
	assert_int_equal(r.kind, EMU_KIND_LOGIN);
	assert_int_equal(r.op, EMU_OP_TOKEN);
	assert_string_equal(r.tenant, "dev-tenant");
	assert_int_equal(emu_route_parse("GET", "localhost", "/dev-tenant/v2.0/.well-known/openid-configuration", &r),
			 EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_OPENID);
	assert_int_equal(emu_route_parse("GET", "169.254.169.254", "/metadata/identity/oauth2/token", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_IMDS);
	assert_int_equal(emu_route_parse("GET", "localhost:8443", "/MSI/token/", &r), EMU_ROUTE_OK);
	assert_int_equal(r.op, EMU_OP_APP_SERVICE);
	assert_int_equal(emu_route_parse("POST", "localhost", "/msi/token", &r), EMU_ROUTE_BAD_METHOD);
	assert_int_equal(emu_route_parse("GET", "dev.vault.localhost", "/msi/token", &r), EMU_ROUTE_NOT_FOUND);
	assert_int_equal(emu_route_parse("GET", "localhost", "/dev-tenant/oauth2/v2.0/token", &r), EMU_ROUTE_BAD_METHOD);
}

static void routes_adfs_and_resource_manager(void **state)
{
	static const struct {
		const char *method, *host, *path;
		enum emu_route_status st;
		enum emu_op op;
		bool adfs;
		const char *tenant;
	} cases[] = {
		{ "GET", "localhost", "/adfs/.well-known/openid-configuration", EMU_ROUTE_OK, EMU_OP_OPENID, true, "adfs" },
		/* az resolves a tenant name that is not a GUID under the AD FS authority */
		{ "GET", "localhost", "/adfs/dev-tenant/.well-known/openid-configuration", EMU_ROUTE_OK, EMU_OP_OPENID,
		  true, "dev-tenant" },
		{ "POST", "localhost:443", "/ADFS/oauth2/token", EMU_ROUTE_OK, EMU_OP_TOKEN, true, "ADFS" },
		{ "GET", "localhost", "/adfs/oauth2/token", EMU_ROUTE_BAD_METHOD, EMU_OP_TOKEN, true, "adfs" },
		/* a tenant's own paths are not AD FS-shaped */
		{ "POST", "localhost", "/dev-tenant/oauth2/token", EMU_ROUTE_OK, EMU_OP_TOKEN, false, "dev-tenant" },
		{ "GET", "localhost", "/subscriptions", EMU_ROUTE_OK, EMU_OP_ARM_SUBSCRIPTIONS, false, "" },
		{ "GET", "localhost:443", "/tenants/", EMU_ROUTE_OK, EMU_OP_ARM_TENANTS, false, "" },
		{ "POST", "localhost", "/subscriptions", EMU_ROUTE_BAD_METHOD, EMU_OP_ARM_SUBSCRIPTIONS, false, "" },
		{ "GET", "dev.vault.localhost", "/subscriptions", EMU_ROUTE_NOT_FOUND, EMU_OP_NONE, false, "" },
	};
	struct emu_route r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(emu_route_parse(cases[i].method, cases[i].host, cases[i].path, &r), cases[i].st);
		assert_int_equal(r.op, cases[i].op);
		assert_int_equal(r.adfs, cases[i].adfs);
		assert_string_equal(r.tenant, cases[i].tenant);
	}
}

static void api_versions(void **state)
{
	assert_true(emu_api_version_ok("7.0"));
	assert_true(emu_api_version_ok("7.6"));
	assert_true(emu_api_version_ok("2025-07-01"));
	assert_true(emu_api_version_ok("7.4-preview.1"));
	assert_false(emu_api_version_ok("7.7"));
	assert_false(emu_api_version_ok(NULL));
}

static void form_bodies(void **state)
{
	const char *b = "grant_type=client_credentials&client_id=dev-client&scope=https%3A%2F%2Fvault.azure.net%2F.default&x=a+b";
	char out[128];

	assert_true(emu_form_get(b, strlen(b), "client_id", out, sizeof(out)));
	assert_string_equal(out, "dev-client");
	assert_true(emu_form_get(b, strlen(b), "scope", out, sizeof(out)));
	assert_string_equal(out, "https://vault.azure.net/.default");
	assert_true(emu_form_get(b, strlen(b), "x", out, sizeof(out)));
	assert_string_equal(out, "a b");
	assert_false(emu_form_get(b, strlen(b), "client", out, sizeof(out)));
	assert_false(emu_form_get("a=%4", 4, "a", out, sizeof(out)));
	assert_false(emu_form_get("a=%00", 5, "a", out, sizeof(out)));
	assert_false(emu_form_get("a=abcdef", 8, "a", out, 4));
}

static void operation_bodies(void **state)
{
	struct emu_opbody b;
	char err[128];
	const char *ok = "{\"alg\":\"RSA-OAEP\",\"value\":\"AAECAw\"}";
	const char *padded = "{\"alg\":\"A256KW\",\"value\":\"AAECAw==\",\"iv\":\"AAAA\"}";

	assert_int_equal(emu_opbody_parse(ok, strlen(ok), &b, err, sizeof(err)), 0);
	assert_string_equal(b.alg, "RSA-OAEP");
	assert_int_equal(b.value_len, 4);
	emu_opbody_free(&b);
	assert_int_equal(emu_opbody_parse(padded, strlen(padded), &b, err, sizeof(err)), 0);
	assert_int_equal(b.value_len, 4);
	assert_int_equal(b.iv_len, 3);
	emu_opbody_free(&b);
	assert_int_equal(emu_opbody_parse("{\"alg\":\"x\",\"value\":\"a+b\"}", 25, &b, err, sizeof(err)), -1);
	emu_opbody_free(&b);
	assert_int_equal(emu_opbody_parse("{\"alg\":1,\"value\":\"AA\"}", 22, &b, err, sizeof(err)), -1);
	emu_opbody_free(&b);
	assert_int_equal(emu_opbody_parse("[1]", 3, &b, err, sizeof(err)), -1);
	emu_opbody_free(&b);
	assert_int_equal(emu_opbody_parse(NULL, 0, &b, err, sizeof(err)), -1);
	emu_opbody_free(&b);
}

static const struct CMUnitTest tests[] = {
	CASE(routes_vault_and_mhsm_paths, "emulator - request parser routes vault and Managed HSM paths case-insensitively"),
	CASE(rejects_bad_hosts_names_and_methods, "emulator - request parser rejects unknown hosts, bad key names and methods"),
	CASE(routes_the_token_service, "emulator - request parser routes the token, OpenID, IMDS and App Service identity endpoints"),
	CASE(routes_adfs_and_resource_manager, "emulator - request parser routes the AD FS-shaped token paths and Resource Manager's subscription and tenant lists"),
	CASE(api_versions, "emulator - api-versions 7.0 to 7.6, 2025-07-01 and 7.4-preview.1 are known"),
	CASE(form_bodies, "emulator - form bodies decode percent escapes and refuse NUL"),
	CASE(operation_bodies, "emulator - wrap bodies accept padded base64url and refuse bad input"),
};

CASES_MAIN("emu-parse", tests, NULL, NULL)
