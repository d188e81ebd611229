/*
 * values.h: the values of configuration options, one rule for every file
 * that reads them (the broker's [broker] and [key:NAME] options, both
 * backends' options, the emulator's config), as docs/configuration.md says.
 *
 * Each returns true and fills its out-parameter, or returns false and leaves
 * the caller to name the option and what it takes.
 *
 * The case rule: words are read without regard to case (Yes, ON, 64K, 1MiB),
 * except duration units, which are lower case only, so that "5M" (minutes
 * or months?) is refused rather than guessed.
 */
#ifndef KB_VALUES_H
#define KB_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KB_MAX_IDS 64

typedef struct kb_idlist {
	uint32_t ids[KB_MAX_IDS];
	int n;
	bool set;       /* the option was given (an empty list denies all) */
} kb_idlist;

/* kb_parse_int reads a decimal integer from lo to hi, nothing after it. */
bool kb_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out);

/* kb_parse_bool reads yes/true/on/1 or no/false/off/0, in any case. */
bool kb_parse_bool(const char *s, bool *out);

/*
 * kb_parse_duration reads "300", "300s", "1500ms", "5m", "1h" or "1d" into
 * milliseconds (units in lower case). Returns false on anything else, or a
 * negative value.
 */
bool kb_parse_duration(const char *s, int64_t *ms);

/* kb_parse_duration_us reads "2", "2s", "1500ms" or "200us" into microseconds, for short spans. */
bool kb_parse_duration_us(const char *s, int64_t *us);

/*
 * kb_parse_idlist reads a list of uids (or, with groups, gids) given as
 * numbers or names, separated by commas or spaces, into out. On failure why
 * says which entry is wrong.
 */
bool kb_parse_idlist(const char *s, bool groups, kb_idlist *out, char *why, size_t whylen);

/*
 * kb_parse_acl reads a list whose entries are a uid or user name, or "@" and
 * a gid or group name, into uids and gids (both marked set).
 */
bool kb_parse_acl(const char *s, kb_idlist *uids, kb_idlist *gids, char *why, size_t whylen);

/*
 * kb_parse_hostport reads "HOST:PORT", "[IPV6]:PORT" or a bare "PORT" (on
 * default_host) into host (brackets dropped) and port, a decimal number up
 * to 65535 (0: the kernel picks one). An empty HOST (":9464") is refused:
 * name 127.0.0.1, or 0.0.0.0 to mean every interface.
 */
bool kb_parse_hostport(const char *s, const char *default_host, char *host, size_t hostcap, unsigned *port);

/* kb_host_is_any tells whether host is the wildcard address (0.0.0.0 or ::): every interface. */
bool kb_host_is_any(const char *host);

/* kb_parse_size reads "65536", "64k", "1m", "1MiB" (bytes, KiB, MiB), in any case. */
bool kb_parse_size(const char *s, int64_t *bytes);

#endif
