/*
 * keyconf.h: one [key:NAME] section of the config, as the backends see it.
 *
 * The core reads the options it owns (backend, alg, cache and policy
 * settings). Every other option is kept as a name/value/line triple for the
 * backend, which takes what it knows with kb_keyconf_take(); whatever is left
 * untaken after the backend opened is an unknown option and stops startup,
 * with the nearest option that was asked for as a suggestion.
 *
 * Values reach everyone here with their inline comments removed (config.c).
 * The helpers at the end word messages about options for config.c too.
 */
#ifndef KB_KEYCONF_H
#define KB_KEYCONF_H

#include <stdbool.h>
#include <stdint.h>

#include "alg.h"
#include "error.h"

#define KB_KEY_NAME_MAX 64
#define KB_KEYCONF_ASKED_MAX 48

/* the options of a [key:NAME] section that the core reads itself */
extern const char *const kb_keyconf_core[];
#define KB_KEYCONF_NCORE 7

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
	/*
	 * set by the backend's open: the length of its ciphertext of a 32-byte
	 * DEK (RSA: the modulus), by which batches are sized; 0: unknown
	 */
	int wrap_bytes;

	/* cache settings; negative means "inherit the [broker] default" */
	int64_t cache_ttl_ms;
	double cache_refresh_fraction; /* 0: refresh-ahead off */
	int64_t datakey_max_age_ms;    /* 0: no data-key reuse */
	int64_t datakey_max_uses;
	int64_t datakey_max_bytes;

	unsigned core_set;    /* which core options were set, to refuse repeats */
	kb_opt *opts;         /* backend-specific options, in file order */
	int nopts;
	const char *asked[KB_KEYCONF_ASKED_MAX]; /* names given to kb_keyconf_take: what is known */
	int nasked;
} kb_keyconf;

/*
 * kb_keyconf_take returns the value of option name and marks it taken, or NULL
 * if the section does not set it. If line is not NULL it receives the option's
 * line (0 when absent), for error messages. name must outlive kc (a string
 * literal): it is remembered as a known option, for suggestions.
 */
const char *kb_keyconf_take(kb_keyconf *kc, const char *name, int *line);

/*
 * kb_keyconf_bad reports a bad value of option name in kc, as
 * "FILE:LINE: [key:NAME] name: why", and returns KB_E_BAD_REQUEST.
 */
kb_code kb_keyconf_bad(const kb_keyconf *kc, const char *name, kb_err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * kb_keyconf_unknown reports the first option of kc that nobody took, as
 * "FILE:LINE: [key:NAME] opt: unknown option for backend B; did you mean X?"
 * (X: the core option or an option asked for that is nearest). Returns KB_OK
 * if every option was taken, else KB_E_BAD_REQUEST.
 */
kb_code kb_keyconf_unknown(const kb_keyconf *kc, kb_err *err);

/*
 * kb_conf_nearest returns the name among names[0..n) closest to word by edit
 * distance (a swap of two neighbours counts once), or NULL if none is close
 * enough to be the one meant.
 */
const char *kb_conf_nearest(const char *word, const char *const *names, int n);

/*
 * kb_conf_comment_hint returns "" or, when a refused value holds what looks
 * like a comment the parser did not take as one (a # anywhere, or a ; or //
 * followed by more words), a sentence to append to the error that says how
 * comments are written.
 */
const char *kb_conf_comment_hint(const char *value);

#endif
