/*
 * parse.h: request parsing, as pure functions (no I/O, no global state), so
 * unit tests and the fuzz harness can call them directly.
 */
#ifndef EMU_PARSE_H
#define EMU_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emu.h"

enum emu_op {
	EMU_OP_NONE,
	/* vault and Managed HSM hosts */
	EMU_OP_LIST_KEYS,
	EMU_OP_CREATE,
	EMU_OP_GET,
	EMU_OP_LIST_VERSIONS,
	EMU_OP_UPDATE,
	EMU_OP_ROTATE,
	EMU_OP_WRAP,
	EMU_OP_UNWRAP,
	EMU_OP_ENCRYPT,
	EMU_OP_DECRYPT,
	EMU_OP_DELETE,
	EMU_OP_LIST_DELETED,
	EMU_OP_GET_DELETED,
	EMU_OP_RECOVER,
	EMU_OP_PURGE,
	EMU_OP_GET_POLICY,     /* GET /keys/{name}/rotationpolicy */
	EMU_OP_SET_POLICY,     /* PUT /keys/{name}/rotationpolicy */
	EMU_OP_BACKUP,
	EMU_OP_RESTORE,        /* POST /keys/restore */
	EMU_OP_IMPORT,         /* PUT /keys/{name} */
	EMU_OP_RNG,            /* POST /rng (Managed HSM) */
	EMU_OP_UNSUPPORTED,    /* sign, verify, release, attestation: out of scope */
	/* the login host (localhost) */
	EMU_OP_TOKEN,
	EMU_OP_OPENID,
	EMU_OP_IMDS,
	EMU_OP_APP_SERVICE,    /* App Service's managed identity endpoint */
	EMU_OP_ARM_SUBSCRIPTIONS, /* GET /subscriptions (Resource Manager, for az login) */
	EMU_OP_ARM_TENANTS,    /* GET /tenants */
};

enum emu_route_status {
	EMU_ROUTE_OK,
	EMU_ROUTE_BAD_HOST,    /* no Host, or not one the emulator serves */
	EMU_ROUTE_NOT_FOUND,   /* no such path */
	EMU_ROUTE_BAD_METHOD,  /* path exists, method does not */
	EMU_ROUTE_BAD_NAME,    /* key name outside ^[0-9a-zA-Z-]{1,127}$ */
};

struct emu_route {
	enum emu_kind kind;
	char vault[EMU_VAULT_MAX];   /* first label of a vault or MHSM host */
	char host[EMU_HOST_MAX];     /* Host header, lower case, with port */
	char port[8];                /* port of the Host header, "" if none */
	char tenant[EMU_NAME_MAX];   /* token and discovery paths ("adfs" for /adfs/...) */
	bool adfs;                   /* an AD FS-shaped path (auth.h) */
	enum emu_op op;
	char key[EMU_NAME_MAX];
	char version[EMU_NAME_MAX];  /* "" = latest */
};

/*
 * emu_route_parse classifies a request by Host header and path. Vault hosts
 * are NAME.vault.localhost[:PORT], Managed HSM hosts NAME.managedhsm.localhost,
 * the login host is localhost or a loopback address; it serves the token
 * service under /{tenant}/ and /adfs/ (/adfs/oauth2/token and
 * /adfs[/{tenant}]/.well-known/openid-configuration, rt->adfs), managed identity,
 * and Resource Manager's /subscriptions and /tenants. Literal path segments
 * match case-insensitively and empty segments are ignored (SDKs send
 * "/keys/NAME/" for "latest"). Returns an enum emu_route_status; r is filled
 * as far as parsing got.
 */
enum emu_route_status emu_route_parse(const char *method, const char *host, const char *path,
				      struct emu_route *r);

/* emu_key_name_ok is true for ^[0-9a-zA-Z-]{1,127}$. */
bool emu_key_name_ok(const char *name);

/* emu_api_version_ok is true for the api-versions the emulator accepts. */
bool emu_api_version_ok(const char *v);

/*
 * emu_form_get finds name in an application/x-www-form-urlencoded body and
 * writes its decoded value (NUL-terminated) to out. Returns false if absent,
 * malformed or longer than cap - 1.
 */
bool emu_form_get(const char *body, size_t len, const char *name, char *out, size_t cap);

/* The body of wrapkey/unwrapkey/encrypt/decrypt, decoded. */
struct emu_opbody {
	char alg[32];
	uint8_t *value;
	size_t value_len;
	uint8_t *iv, *aad, *tag;
	size_t iv_len, aad_len, tag_len;
};

/*
 * emu_opbody_parse parses {alg, value, iv?, aad?, tag?} with base64url byte
 * fields (padding accepted). Returns 0, or -1 with a message in err. Free
 * with emu_opbody_free in both cases.
 */
int emu_opbody_parse(const char *json, size_t len, struct emu_opbody *b, char *err, size_t errlen);
void emu_opbody_free(struct emu_opbody *b);

/*
 * emu_b64url_field decodes the base64url string s into a fresh buffer.
 * Returns NULL (and *n = 0) if s is not valid base64url.
 */
uint8_t *emu_b64url_decode(const char *s, size_t *n);

/* emu_b64url_encode returns a fresh unpadded base64url string of p[0..n). */
char *emu_b64url_encode(const uint8_t *p, size_t n);

#endif
