/*
 * az.h: the shared types of the Azure backend's files.
 *
 *   conf.c     the [key:NAME] options, the key URL, and the cloud of its host
 *   parse.c    pure parsers of what the service sends (JSON bodies, headers);
 *              no I/O, so tests/fuzz/fuzz_azure.c calls them directly
 *   http.c     one curl handle per slot: TLS, timeouts, retries, request ids
 *   token.c    token acquisition by auth method, and the shared token cache
 *   errmap.c   the one place where an HTTP answer becomes a kb_code
 *   keymat.c   the key's latest version and public key, refreshed on a timer,
 *              and the local RSA wrap
 *   call.c     an authenticated request to the key's vault or Managed HSM
 *   wrap.c     the wrap driver (local or on the service) that doctor shares
 *   doctor.c   the diagnostic checks, above wrap.c
 *   backend.c  kb_azure_backend: open, close and the ops
 */
#ifndef KB_AZ_H
#define KB_AZ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "backend.h"
#include "buf.h"
#include "clock.h"

#define AZ_API_VERSION "7.4"
#define AZ_HOST_MAX 256
#define AZ_NAME_MAX 128
#define AZ_URL_MAX 1024
#define AZ_ID_MAX 128          /* tenant and client ids */
#define AZ_REQID_LEN 36        /* a UUID */
#define AZ_BODY_MAX (1 << 20)  /* largest response body read */
#define AZ_RSA_N_MAX 1024      /* modulus bytes: RSA-8192 */

typedef enum az_service { AZ_SVC_UNKNOWN = 0, AZ_SVC_VAULT, AZ_SVC_MHSM } az_service;

typedef enum az_auth {
	AZ_AUTH_CLIENT_SECRET,
	AZ_AUTH_WORKLOAD_IDENTITY,
	AZ_AUTH_MANAGED_IDENTITY,
	AZ_AUTH_TOKEN_FILE,
} az_auth;

/* What the backend was doing, for retries and messages. */
typedef enum az_op {
	AZ_OP_GET,
	AZ_OP_VERSIONS,
	AZ_OP_WRAP,
	AZ_OP_UNWRAP,
	AZ_OP_ROTATE,
	AZ_OP_CHALLENGE,
	AZ_OP_TOKEN,
} az_op;

/* key_ops bits */
enum { AZ_KOP_ENCRYPT = 1, AZ_KOP_DECRYPT = 2, AZ_KOP_WRAP = 4, AZ_KOP_UNWRAP = 8 };

/* A key identifier: https://HOST[:PORT]/keys/NAME[/VERSION]. */
typedef struct az_kid {
	char host[AZ_HOST_MAX];    /* lower case, with :PORT unless 443 */
	char name[AZ_NAME_MAX];
	char version[KB_VERSION_MAX + 1]; /* "" when versionless */
} az_kid;

/* The options of one [key:NAME] and what the host tells about it. */
typedef struct az_conf {
	az_kid url;
	char base[AZ_HOST_MAX + 16];  /* https://HOST */
	az_service service;           /* AZ_SVC_UNKNOWN until the challenge */
	const char *cloud;            /* "public", "China", "US Gov", NULL: another host */
	char resource[AZ_URL_MAX];    /* token audience, e.g. https://vault.azure.net */
	char authority[AZ_URL_MAX];   /* e.g. https://login.microsoftonline.com, "" unknown */
	bool authority_from_cloud;    /* the cloud's, not authority_host */
	char tenant[AZ_ID_MAX];       /* "" until known */
	bool tenant_from_challenge;   /* tenant came from the 401 challenge */
	bool tenant_from_env;         /* tenant came from AZURE_TENANT_ID, not tenant_id */
	char client_id[AZ_ID_MAX];    /* "" for none */
	az_auth auth;
	char *secret_file;            /* client_secret_file, NULL: AZURE_CLIENT_SECRET */
	char *federated_file;         /* AZURE_FEDERATED_TOKEN_FILE */
	char imds[AZ_URL_MAX];         /* managed identity endpoint */
	bool app_service;             /* imds is App Service's IDENTITY_ENDPOINT */
	char *token_file;
	char *ca_file;
	int64_t timeout_ms;           /* one operation, retries included */
	int max_retries;
	int max_in_flight;            /* requests on the wire at once, per key */
	int http_connections;         /* kept-alive connections to the key's host */
	bool local_wrap;
	int64_t version_refresh_ms;
} az_conf;

/*
 * az_conf_take takes the backend's options from kc into conf. On error err
 * names the file, line and option. Frees nothing on error: call az_conf_free.
 */
kb_code az_conf_take(kb_keyconf *kc, az_conf *conf, kb_err *err);
void az_conf_free(az_conf *conf);

/* az_identity describes who the tokens are for, e.g. "client_secret as CLIENT in tenant T via A". */
void az_identity(const az_conf *conf, char *buf, size_t cap);

/* az_principal names the principal for permission messages. */
void az_principal(const az_conf *conf, char *buf, size_t cap);


/*
 * az_tenant_differs is true when conf names a tenant of its own (tenant_id
 * or AZURE_TENANT_ID, not the challenge's) that is not vault_tenant, the
 * one the key's vault named in its 401 challenge; buf then says both, which
 * one tokens come from, and that a CMK vault must be in the service's tenant.
 */
bool az_tenant_differs(const az_conf *conf, const char *vault_tenant, char *buf, size_t cap);

/* az_token_tenant says which tenant conf's tokens are issued in, e.g. "T (tenant_id)". */
void az_token_tenant(const az_conf *conf, char *buf, size_t cap);

const char *az_auth_name(az_auth a);
const char *az_service_name(az_service s);

/* ---- parse.c: pure functions over untrusted input ---- */

/*
 * az_parse_kid reads a key identifier URL. Returns false (why filled) unless
 * it is https://HOST[:PORT]/keys/NAME[/VERSION][/] with a valid name and
 * version.
 */
bool az_parse_kid(const char *url, az_kid *out, char *why, size_t whycap);

/* A KeyBundle: what GET, rotate and create return. */
typedef struct az_bundle {
	az_kid kid;
	char kty[16];
	unsigned ops;                 /* AZ_KOP_* */
	char ops_text[128];           /* key_ops as the service listed them */
	uint8_t n[AZ_RSA_N_MAX];
	size_t nlen;
	uint8_t e[16];
	size_t elen;
	bool enabled;
	int64_t nbf, exp, created, updated; /* 0: absent */
	char recovery[48];            /* recoveryLevel, "" if absent */
	int recoverable_days;
	int key_size;                 /* key.key_size in bits (oct-HSM), 0 if absent */
} az_bundle;

/* az_parse_bundle parses a KeyBundle. false with why on anything malformed. */
bool az_parse_bundle(const char *json, size_t n, az_bundle *out, char *why, size_t whycap);

/* One entry of a list-versions page. */
typedef struct az_version_item {
	char version[KB_VERSION_MAX + 1];
	bool enabled;
	int64_t created, nbf, exp;
} az_version_item;

/*
 * az_parse_versions appends a page's entries to items (up to cap, *n
 * counting them) and copies nextLink ("" on the last page) to next.
 */
bool az_parse_versions(const char *json, size_t n, az_version_item *items, int cap, int *count,
		       char *next, size_t nextcap, char *why, size_t whycap);

/*
 * az_parse_op_result parses {kid, value} of wrapkey/unwrapkey: the value's
 * bytes go to out (capacity *outlen, updated) and the kid's version to
 * version. The caller wipes out.
 */
bool az_parse_op_result(const char *json, size_t n, uint8_t *out, size_t *outlen,
			char version[KB_VERSION_MAX + 1], char *why, size_t whycap);

/*
 * az_parse_token parses a token response (Entra ID or IMDS): *token is a
 * malloc'd copy the caller wipes and frees; *expires_in_s is the lifetime
 * from expires_in, or from expires_on against now_unix.
 */
bool az_parse_token(const char *json, size_t n, int64_t now_unix, char **token, int64_t *expires_in_s,
		    char *why, size_t whycap);

/*
 * az_parse_error reads {"error":{"code","message","innererror":{"code"}}}
 * or OAuth's {"error","error_description"} into code, inner and message
 * (each "" when absent, message cut to its capacity).
 */
void az_parse_error(const char *json, size_t n, char *code, size_t codecap, char *inner, size_t innercap,
		    char *message, size_t msgcap);

/* The WWW-Authenticate challenge of a 401. */
typedef struct az_challenge {
	char authority[AZ_URL_MAX];   /* https://login.../ without the tenant */
	char tenant[AZ_ID_MAX];
	char resource[AZ_URL_MAX];    /* from resource= or scope= (without /.default) */
} az_challenge;

/* az_parse_challenge reads a Bearer challenge; false unless it names authorization and resource. */
bool az_parse_challenge(const char *header, az_challenge *out);

/*
 * az_parse_retry_after returns the delay in ms that header name/value asks
 * for (Retry-After: seconds or an HTTP date against now_unix;
 * retry-after-ms, x-ms-retry-after-ms: ms), or -1 if it is not one of them
 * or is malformed.
 */
int64_t az_parse_retry_after(const char *name, const char *value, int64_t now_unix);

/* az_kops_text writes key_ops bits as "wrapKey,unwrapKey,...". */
void az_kops_text(unsigned ops, char *buf, size_t cap);

/* ---- http.c ---- */

typedef struct az_slot {
	CURL *h;
	char errbuf[CURL_ERROR_SIZE];
} az_slot;

typedef struct az_req {
	const char *method;           /* "GET", "POST" */
	const char *url;
	const char *body;             /* NULL: none */
	size_t body_len;
	const char *content_type;
	const char *bearer;           /* the token, or NULL */
	bool metadata;                /* send Metadata: true (IMDS) */
	const char *identity_header;  /* X-IDENTITY-HEADER value (App Service), or NULL */
	bool plain_http;              /* allow http:// (IMDS's link-local endpoint) */
	bool idempotent;              /* may be resent after the request went out */
} az_req;

typedef struct az_resp {
	long status;                  /* final HTTP status; 0: no answer */
	kb_buf body;                  /* NUL-terminated; wiped: it may hold a token */
	char request_id[AZ_REQID_LEN + 1];
	char www_auth[512];
	int64_t retry_after_ms;       /* of the last answer, -1 none */
	int attempts;
	int64_t elapsed_ms;
	CURLcode cc;                  /* of the last attempt */
	char neterr[CURL_ERROR_SIZE];
	bool gave_up_early;           /* the wait asked for passed the deadline */
	bool too_big;
} az_resp;

/* az_slots_new makes n slots with a curl handle each; NULL if out of memory. */
az_slot *az_slots_new(int n);
void az_slots_free(az_slot *s, int n);

/*
 * az_http_do sends rq on slot s, retrying 429, 5xx and connection errors
 * with exponential backoff and full jitter (or the wait the service names),
 * at most conf->max_retries times and never past conf->timeout_ms from the
 * start. resp holds the final answer (status 0 when there was none). One
 * x-ms-client-request-id is used for every attempt.
 */
void az_http_do(const az_conf *conf, az_slot *s, const az_req *rq, az_resp *resp);

/*
 * The pieces of az_http_do, for the engine that drives many requests at
 * once (multi.c):
 * az_http_headers resets resp, gives it a request id and returns the
 * header list of rq (NULL without memory; it may hold a token: free it with
 * az_http_headers_free, which wipes it). az_http_prepare sets h up to send
 * rq with at most remaining_ms to finish; set_up says h was last prepared for
 * the same conf (only the request's own options are set, no reset: a miss
 * then costs libcurl less). az_http_collect takes the outcome
 * cc of that attempt into r. az_http_next_wait says how long to wait before
 * attempt n+1, or -1 to stop (not retryable, retries spent, or the wait
 * would pass deadline_ms: then r->gave_up_early).
 */
struct curl_slist *az_http_headers(const az_req *rq, az_resp *resp);
void az_http_headers_free(struct curl_slist *h);
void az_http_prepare(const az_conf *conf, CURL *h, bool set_up, char *errbuf, const az_req *rq,
		     struct curl_slist *hdrs, int64_t remaining_ms, az_resp *r);
void az_http_collect(CURL *h, const char *errbuf, CURLcode cc, az_resp *r);
int64_t az_http_next_wait(const az_conf *conf, bool idempotent, az_resp *r, int n, int64_t deadline_ms);

void az_resp_free(az_resp *r);

/* az_resp_text is the body as text ("" when there is none). */
const char *az_resp_text(const az_resp *r);

/* az_urlencode appends the form encoding of s to out (capacity cap); false if it does not fit. */
bool az_urlencode(const char *s, char *out, size_t cap);

/* ---- token.c ---- */

typedef struct az_cred az_cred;

/* az_cred_acquire returns the shared token cache of conf's identity and audience. */
az_cred *az_cred_acquire(const az_conf *conf, kb_err *err);
void az_cred_release(az_cred *c);

/*
 * az_token_get returns a token for c in *token (malloc'd; the caller wipes it
 * with az_secret_free). A valid cached token is returned at once; else one
 * caller fetches while the others wait, so a burst makes one token request.
 * *gen identifies the token for az_token_reject; *fresh is true when this
 * call fetched it.
 */
kb_code az_token_get(az_cred *c, const az_conf *conf, az_slot *s, char **token, unsigned *gen,
		     bool *fresh, kb_err *err);

/*
 * az_token_cached is az_token_get without waiting: KB_OK with a cached
 * token, KB_E_BUSY when one must be fetched first (err untouched), or the
 * failure of reading a token_file.
 */
kb_code az_token_cached(az_cred *c, const az_conf *conf, char **token, unsigned *gen, bool *fresh,
			kb_err *err);

/* az_token_reject drops token generation gen after the service refused it. */
void az_token_reject(az_cred *c, unsigned gen);

/* az_secret_free wipes and frees a NUL-terminated secret. */
void az_secret_free(char *s);

/* ---- errmap.c ---- */

/* What a failed answer was about, for the message. */
typedef struct az_what {
	const char *key;              /* [key:NAME] */
	az_op op;
	const char *version;          /* NULL or "": latest */
} az_what;

/*
 * az_error is the one mapping from an answer that is not a success to a
 * kb_code and a message naming the root cause, the key and the request id.
 */
kb_code az_error(const az_conf *conf, const az_what *w, const az_resp *r, kb_err *err);

/* az_perm_name is the permission op needs: "get", "wrapKey", "unwrapKey", "rotate". */
const char *az_perm_name(az_op op);

/* az_alg_wire is alg's name in the REST API. */
const char *az_alg_wire(kb_alg alg);

/* ---- the key ---- */

typedef struct az_keymat {
	char version[KB_VERSION_MAX + 1];
	char kty[16];
	bool rsa;
	int bits;                     /* 0 unknown: an oct-HSM key without key_size */
	unsigned ops;
	char ops_text[128];
	bool enabled;
	int64_t nbf, exp, created;
	char recovery[48];
	int recoverable_days;
	EVP_PKEY *pkey;               /* RSA */
} az_keymat;

typedef struct az_engine az_engine;

typedef struct az_key {
	char name[KB_KEY_NAME_MAX + 1];
	az_conf conf;
	az_cred *cred;
	kb_alg alg;                   /* default for wraps */
	bool rsa;                     /* an RSA key; else oct-HSM (AES) */
	int nslots;
	az_slot *slots;
	az_engine *engine;            /* calls that do not block, once the loop lent its kb_io */

	pthread_mutex_t lock;         /* guards the fields below */
	pthread_cond_t fetched;       /* a refresh of latest ended */
	az_keymat latest;
	bool have_latest;
	bool refreshing;
	bool distrusted;              /* a refusal came in during the refresh */
	unsigned fetches;             /* refreshes ended, for waiters */
	kb_err fetch_err;             /* the last refresh's failure */
	int64_t fetched_ms;           /* monotonic, when the service last confirmed latest */
} az_key;

/*
 * az_call sends an authenticated request for k on slot and returns KB_OK
 * with a 2xx answer in resp, or the mapped error. A 401 to a cached token
 * makes one token refresh and one retry.
 */
kb_code az_call(az_key *k, int slot, const az_what *w, const char *method, const char *url,
		const char *body, az_resp *resp, kb_err *err);

/* az_key_url writes https://HOST/keys/NAME[/VERSION][/SUFFIX]?api-version=... */
void az_key_url(const az_key *k, const char *version, const char *suffix, char *out, size_t cap);

/*
 * az_challenge_probe asks the service for its 401 challenge and completes
 * service, resource and tenant that conf does not set. It never sets the
 * authority: secrets go only to the configured or the cloud's (conf.c).
 */
kb_code az_challenge_probe(az_key *k, int slot, kb_err *err);

/* az_keymat_fetch GETs version (NULL: latest) into m. */
kb_code az_keymat_fetch(az_key *k, int slot, const char *version, az_keymat *m, kb_err *err);

/* az_keymat_sync_init / az_keymat_sync_destroy set up and tear down k's lock and condition. */
void az_keymat_sync_init(az_key *k);
void az_keymat_sync_destroy(az_key *k);

/*
 * az_keymat_current copies the key's latest (or pinned) version into m: only
 * material the service confirmed less than version_refresh ago, else it asks
 * again (one caller asks, the others wait), and returns the service's refusal.
 */
kb_code az_keymat_current(az_key *k, int slot, az_keymat *m, kb_err *err);

/* az_refuses_version is true for the answers that say a version cannot wrap or unwrap now. */
bool az_refuses_version(kb_code rc);

/*
 * az_keymat_distrust drops the cached material when the service refused
 * version (NULL or "": the current one), so the next wrap asks again.
 */
void az_keymat_distrust(az_key *k, const char *version);

/* az_keymat_store makes m the cached latest (after a rotate or describe); it takes m's pkey. */
void az_keymat_store(az_key *k, az_keymat *m);

void az_keymat_clear(az_keymat *m);

/* az_check_alg refuses (KB_E_MECHANISM_UNSUPPORTED) an alg the key type cannot do. */
kb_code az_check_alg(const az_key *k, bool rsa, kb_alg alg, kb_err *err);

/*
 * az_local_wrap wraps pt with m's public key under alg, after checking
 * key_ops, enabled, nbf and exp as Azure's SDKs do.
 */
kb_code az_local_wrap(const az_key *k, const az_keymat *m, kb_alg alg, const uint8_t *pt,
		      size_t ptlen, uint8_t *ct, size_t *ctlen, kb_err *err);

/* az_op_body writes {"alg":ALG,"value":B64URL} of in into a malloc'd string the caller wipes (*cap its size). */
char *az_op_body(kb_alg alg, const uint8_t *in, size_t n, size_t *cap);

/* az_service_wrap / az_service_unwrap call wrapkey / unwrapkey. */
kb_code az_service_wrap(az_key *k, int slot, const char *version, kb_alg alg, const uint8_t *pt,
			size_t ptlen, uint8_t *ct, size_t *ctlen, char version_out[KB_VERSION_MAX + 1],
			kb_err *err);
kb_code az_service_unwrap(az_key *k, int slot, const char *version, kb_alg alg, const uint8_t *ct,
			  size_t ctlen, uint8_t *pt, size_t *ptlen, kb_err *err);

/* az_list_versions lists every version, oldest first (by created). */
kb_code az_list_versions(az_key *k, int slot, az_version_item *items, int cap, int *n, kb_err *err);

/* ---- wrap.c: the wrap driver the backend and doctor share ---- */

/* az_pinned is the version the key's url names, or NULL for "latest". */
const char *az_pinned(const az_key *k);

/* az_wrap_op is the backend's wrap, shared with doctor. */
kb_code az_wrap_op(az_key *k, int slot, const char *version, kb_alg alg, const uint8_t *pt,
		   size_t ptlen, uint8_t *ct, size_t *ctlen, char version_out[KB_VERSION_MAX + 1],
		   kb_alg *alg_out, kb_err *err);

/* ---- multi.c: calls that do not block ---- */

/* az_engine_new makes k's engine on the loop's io; NULL without memory. */
az_engine *az_engine_new(az_key *k, const kb_io *io);

/*
 * az_engine_unwrap starts a->in's unwrap at a->version and returns KB_OK,
 * with a->done to follow on the loop thread; otherwise it did not start.
 */
kb_code az_engine_unwrap(az_engine *e, kb_async *a);

/*
 * az_engine_free lets go of the loop, dropping every call in flight without
 * a done. If a step offloaded to a worker still runs, the engine lives until
 * it ends and then calls free_key(k) (if not NULL); returns true then, and
 * the caller must not free k itself.
 */
bool az_engine_free(az_engine *e, void (*free_key)(az_key *k));

/* az_doctor runs the checks of `keybroker doctor` on k. */
kb_code az_doctor(az_key *k, int slot, kb_doctor_emit emit, void *ctx, kb_err *err);

#endif
