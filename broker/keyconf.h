/*
 * keyconf.h: one [key:NAME] section of the config, as the backends see it.
 *
 * The core reads the options it owns (backend, alg, cache and policy
 * settings). Every other option is kept as a name/value/line triple for the
 * backend, which takes what it knows with kb_keyconf_take(); whatever is left
 * untaken after the backend opened is an unknown option and stops startup.
 */
#ifndef KB_KEYCONF_H
#define KB_KEYCONF_H

#include <stdbool.h>
#include <stdint.h>

#include "alg.h"
#include "error.h"

#define KB_KEY_NAME_MAX 64

typedef struct kb_opt {
	char *name;
	char *value;
	int line;
	bool taken;
} kb_opt;

typedef struct kb_keyconf {
	char name[KB_KEY_NAME_MAX + 1];
	const char *file;     /* config file, for messages */
	int line;             /* line of the [key:NAME] header */
	char backend[16];     /* "pkcs11", "azure" */
	kb_alg alg;           /* KB_ALG_NONE: the backend picks its default */

	/* cache settings; negative means "inherit the [broker] default" */
	int64_t cache_ttl_ms;
	double cache_refresh_fraction; /* 0: refresh-ahead off */
	int64_t datakey_max_age_ms;    /* 0: no data-key reuse */
	int64_t datakey_max_uses;
	int64_t datakey_max_bytes;

	unsigned core_set;    /* which core options were set, to refuse repeats */
	kb_opt *opts;         /* backend-specific options, in file order */
	int nopts;
} kb_keyconf;

/*
 * kb_keyconf_take returns the value of option name and marks it taken, or NULL
 * if the section does not set it. If line is not NULL it receives the option's
 * line (0 when absent), for error messages.
 */
const char *kb_keyconf_take(kb_keyconf *kc, const char *name, int *line);

/*
 * kb_keyconf_bad reports a bad value of option name in kc, as
 * "FILE:LINE: [key:NAME] name: why", and returns KB_E_BAD_REQUEST.
 */
kb_code kb_keyconf_bad(const kb_keyconf *kc, const char *name, kb_err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
