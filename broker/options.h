/*
 * options.h: the one table of the daemon's configuration options.
 *
 * Every option of [broker], of [key:NAME] that the core reads, and of
 * [kms:NAME] has one row: its name, section, type, default, limits and one
 * line of documentation. config.c parses [broker] through the rows (kind,
 * field, limits, refusal), "did you mean" suggests from their names,
 * `keybrokerd --options` prints them, and a test (tests/docs) checks that
 * keybrokerd.conf(5) and docs/configuration.md document each row with its
 * default, and nothing else. A backend's own options ([key:NAME] of
 * backend pkcs11 or azure) are its own (kb_keyconf_take), documented beside it.
 */
#ifndef KB_OPTIONS_H
#define KB_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* how a [broker] value is read into its field; KB_OK_NONE: another parser reads it */
typedef enum kb_opt_kind {
	KB_OK_NONE = 0,
	KB_OK_INT,        /* int, from lo to hi */
	KB_OK_SIZE,       /* size_t, a size from lo to hi bytes */
	KB_OK_DURATION,   /* int64_t ms; lo 1: must be positive */
	KB_OK_DURATION_US,/* int64_t us, up to hi */
	KB_OK_FRACTION,   /* double, from 0 to hi (per mille) */
	KB_OK_BOOL,       /* bool */
	KB_OK_UIDS,       /* kb_idlist of users */
	KB_OK_GIDS,       /* kb_idlist of groups */
	KB_OK_STRING,     /* char *, strdup'ed */
	KB_OK_CUSTOM,     /* check() reads it */
} kb_opt_kind;

typedef struct kb_option {
	const char *section;  /* "broker", "key" or "kms" */
	const char *name;
	const char *type;     /* as the man page names the value: N, SIZE, DURATION, ... */
	const char *def;      /* the default, as both documents write it */
	const char *limits;   /* "" when none beyond the type */
	const char *doc;      /* one line */
	kb_opt_kind kind;
	size_t field;         /* offsetof(kb_config, ...) */
	int64_t lo, hi;
	const char *refusal;  /* printf format of the refusal, %s the value */
	/* KB_OK_CUSTOM: reads value into c; false with why filled when refused */
	int (*check)(kb_config *c, const char *value, char *why, size_t cap);
} kb_option;

/*
 * Unless set, max_request_bytes follows max_batch and the keys: a batch of
 * max_batch blobs of the largest key configured, each with its quotes and
 * comma, and the rest of the line fit (docs/configuration.md). A key whose
 * size is not known (its service is down) counts as RSA-4096.
 */
#define KB_BATCH_UNKNOWN_WRAP 512
#define KB_BATCH_LINE_BYTES 4096

/* kb_batch_request_bytes is the line that holds max_batch blobs of longest_blob characters each. */
size_t kb_batch_request_bytes(int max_batch, size_t longest_blob);

extern const kb_option kb_options[];
extern const int kb_noptions;

/* kb_option_find returns the row of name in section, or NULL. */
const kb_option *kb_option_find(const char *section, const char *name);

/* kb_option_nearest returns the option of section nearest to word (kb_conf_nearest), or NULL. */
const char *kb_option_nearest(const char *section, const char *word);

/*
 * kb_option_set reads value into c as row o says: 1, or 0 with the refusal
 * (without file, line or name) in why.
 */
int kb_option_set(const kb_option *o, kb_config *c, const char *value, char *why, size_t cap);

/* kb_options_print writes the table, one tab-separated row per option: section, name, type, default, limits, doc. */
void kb_options_print(FILE *out);

#endif
