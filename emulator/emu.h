/*
 * emu.h: the shared types of akv-emulator.
 *
 * One emu_world holds everything the emulator serves: its configuration, the
 * vaults and Managed HSMs with their keys, the principals and their
 * permissions. world->lock guards every mutable field below it; the ledger
 * of issued tokens and the fault switches have their own locks (auth.c,
 * faults.c).
 */
#ifndef EMU_H
#define EMU_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#define EMU_NAME_MAX 128   /* key names: 1..127 of [0-9a-zA-Z-] */
#define EMU_VAULT_MAX 64
#define EMU_VERSION_LEN 32 /* hex characters in a key version */
#define EMU_HOST_MAX 256

/* Permissions a principal holds on a vault, a Managed HSM or one key. */
enum emu_perm {
	EMU_P_GET = 1u << 0,
	EMU_P_WRAP = 1u << 1,
	EMU_P_UNWRAP = 1u << 2,
	EMU_P_ENCRYPT = 1u << 3,
	EMU_P_DECRYPT = 1u << 4,
	EMU_P_CREATE = 1u << 5,
	EMU_P_UPDATE = 1u << 6,
	EMU_P_DELETE = 1u << 7,
	EMU_P_RECOVER = 1u << 8,
	EMU_P_PURGE = 1u << 9,
	EMU_P_ROTATE = 1u << 10,
	EMU_P_IMPORT = 1u << 11,
	EMU_P_BACKUP = 1u << 12,
	EMU_P_RESTORE = 1u << 13,
	EMU_P_GET_POLICY = 1u << 14, /* getrotationpolicy */
	EMU_P_SET_POLICY = 1u << 15, /* setrotationpolicy */
	EMU_P_RNG = 1u << 16,        /* Managed HSM's random number generator */
	EMU_P_ALL = (1u << 17) - 1,
};

/* A key's key_ops (JWK operations). */
enum emu_kop {
	EMU_KOP_ENCRYPT = 1u << 0,
	EMU_KOP_DECRYPT = 1u << 1,
	EMU_KOP_SIGN = 1u << 2,
	EMU_KOP_VERIFY = 1u << 3,
	EMU_KOP_WRAP = 1u << 4,
	EMU_KOP_UNWRAP = 1u << 5,
	EMU_KOP_IMPORT = 1u << 6,
	EMU_KOP_EXPORT = 1u << 7,
};

enum emu_kty { EMU_KTY_RSA, EMU_KTY_RSA_HSM, EMU_KTY_OCT_HSM };

/*
 * What a Host header names, and what a token's audience is: a vault, a
 * Managed HSM, or Resource Manager (ARM, the audience az login asks for;
 * the login host serves its tenant and subscription lists).
 */
enum emu_kind { EMU_KIND_NONE, EMU_KIND_VAULT, EMU_KIND_MHSM, EMU_KIND_LOGIN, EMU_KIND_ARM };

/* One key version. Key material never leaves the process except to --state. */
struct emu_version {
	char id[EMU_VERSION_LEN + 1];
	enum emu_kty kty;
	int bits;
	EVP_PKEY *pkey;      /* RSA keys */
	uint8_t aes[32];     /* oct-HSM keys */
	size_t aes_len;
	unsigned ops;        /* enum emu_kop */
	bool enabled;
	int64_t nbf, exp;    /* unix seconds, 0 = unset */
	int64_t created, updated;
	cJSON *tags;         /* object or NULL */
};

/* One lifetime action of a rotation policy: Rotate or Notify, and its trigger. */
struct emu_lifetime_action {
	bool rotate;           /* "Rotate"; false = "Notify" */
	bool after_create;     /* trigger.timeAfterCreate; false = timeBeforeExpiry */
	char iso[32];          /* the ISO 8601 duration as the client sent it */
	int64_t secs;
};

/* A key's rotation policy (rotation.h); set false = Azure's default policy. */
struct emu_policy {
	bool set;
	struct emu_lifetime_action act[2]; /* at most one Rotate and one Notify */
	size_t nact;
	char expiry_iso[32];   /* attributes.expiryTime, "" = none */
	int64_t expiry_secs;
	int64_t created, updated;
	char notified[EMU_VERSION_LEN + 1]; /* the version a Notify was last logged for */
};

struct emu_key {
	char name[EMU_NAME_MAX];
	struct emu_policy policy;
	struct emu_version **v; /* oldest first */
	size_t nv;
	bool deleted;
	int64_t deleted_at, purge_at;
};

/* Which header a 429 names its wait in. */
enum emu_retry_style {
	EMU_RETRY_NONE,        /* no header: clients back off on their own */
	EMU_RETRY_SECONDS,     /* Retry-After: whole seconds */
	EMU_RETRY_MS,          /* retry-after-ms */
	EMU_RETRY_XMS_MS,      /* x-ms-retry-after-ms */
};

#define EMU_THROTTLE_WINDOW_MS 10000 /* Azure counts per 10 s */
#define EMU_RETENTION_DEFAULT 90 /* soft-delete retention days, Azure's default */
#define EMU_RETENTION_MIN 7

struct emu_vault {
	char name[EMU_VAULT_MAX];
	bool mhsm;
	bool purge_protection; /* purge refused; recoveryLevel without +Purgeable */
	unsigned retention_days; /* soft_delete_retention_days, 7..90 */
	unsigned throttle;     /* operations per window, 0 = unlimited */
	unsigned window_ms;    /* throttle window, 10 s as Azure's */
	enum emu_retry_style retry_style;
	int64_t win_start_ms;  /* current throttle window */
	unsigned win_count;
	struct emu_key **keys;
	size_t nkeys;
};

/* A permission entry: scope is "vault/NAME", "mhsm/NAME" or "vault/NAME/KEY". */
struct emu_grant {
	char scope[EMU_VAULT_MAX + EMU_NAME_MAX + 8];
	unsigned perms;
};

struct emu_principal {
	char id[EMU_NAME_MAX];
	char secret[EMU_NAME_MAX];
	char *assertion;       /* accepted client_assertion, or NULL */
	unsigned default_perms;/* on any vault or key without an entry */
	uint32_t token_gen;    /* tokens of an older generation are revoked; kept in --state */
	struct emu_grant *grants;
	size_t ngrants;
};

/* A key the config asks to exist at startup. */
struct emu_prekey {
	bool mhsm;
	char vault[EMU_VAULT_MAX];
	char name[EMU_NAME_MAX];
	enum emu_kty kty;
	int bits;
	unsigned ops;
};

struct emu_fault_conf {
	unsigned latency_ms, jitter_ms;
	double p500, p503, pdrop;
};

struct emu_config {
	char listen[128];
	char admin[128];       /* "" = off */
	char tls_dir[1024];
	char state[1024];      /* "" = in memory */
	char tenant[EMU_NAME_MAX];
	char imds_principal[EMU_NAME_MAX]; /* who IMDS tokens are for, "" = first */
	char identity_header[EMU_NAME_MAX]; /* App Service's X-IDENTITY-HEADER secret */
	unsigned token_lifetime;
	size_t max_body;
	bool quiet;
	struct emu_fault_conf faults;
	struct emu_prekey *prekeys;
	size_t nprekeys;
};

struct emu_world {
	struct emu_config cfg;
	unsigned port;         /* the port actually bound */
	pthread_mutex_t lock;
	struct emu_vault **vaults;
	size_t nvaults;
	struct emu_principal *principals;
	size_t nprincipals;
	/* seals key backups so they restore only here (backup.h); kept in --state */
	uint8_t backup_key[32];
	bool backup_key_set;
	bool rotating;         /* a lifecycle tick makes key material, lock released (lifecycle.h) */
	/*
	 * signs access tokens (token.h); kept in --state, so tokens outlive a
	 * restart there. Set before the server starts, read-only after.
	 */
	uint8_t token_key[32];
	bool token_key_set;
};

/* A parsed HTTP request, as handlers see it. Strings may be NULL. */
struct emu_req {
	const char *method;
	const char *host;
	const char *path;          /* without the query */
	const char *api_version;
	const char *maxresults;
	const char *skiptoken;
	const char *resource;      /* IMDS */
	const char *client_id;     /* IMDS */
	const char *authorization;
	const char *metadata;      /* the Metadata header (IMDS) */
	const char *identity_header; /* X-IDENTITY-HEADER (App Service) */
	const char *body;
	size_t body_len;
};

/* What a handler answers. The server turns it into HTTP and frees it. */
struct emu_reply {
	unsigned status;
	char *body;                /* malloc'd, or NULL for none */
	const char *content_type;
	char *www_authenticate;    /* malloc'd, or NULL */
	int64_t retry_after_ms;    /* the wait a 429 names, < 0 for none */
	enum emu_retry_style retry_style; /* the header that carries it */
	bool drop;                 /* close the connection, answer nothing */
	char principal[EMU_NAME_MAX];
};

void emu_reply_init(struct emu_reply *rep);
void emu_reply_free(struct emu_reply *rep);
/* emu_reply_json sets status and body to the printed j, and deletes j. */
void emu_reply_json(struct emu_reply *rep, unsigned status, cJSON *j);

/*
 * emu_now returns unix seconds on the emulator's movable clock (clock.h);
 * emu_now_ms a real monotonic millisecond clock.
 */
int64_t emu_now(void);
int64_t emu_now_ms(void);

#endif
