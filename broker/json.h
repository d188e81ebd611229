/*
 * json.h: the one way the broker parses JSON text.
 */
#ifndef KB_JSON_H
#define KB_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/*
 * kb_json_parse_whole parses s[0..n) as exactly one JSON value, with nothing
 * but whitespace after it, so "{...} {...}" is not read as its first half,
 * and with no name given twice in one object (cJSON would keep both and
 * answer the first: {"op":"status","op":"rotate"} must not be read as
 * either). Returns the tree (free with cJSON_Delete) or NULL.
 */
cJSON *kb_json_parse_whole(const char *s, size_t n);

#define KB_JSON_NAME_MAX 64

/*
 * kb_json_duplicate names the name this thread's last kb_json_parse_whole
 * refused for being given twice in one object (cut to KB_JSON_NAME_MAX), or
 * NULL if that was not why.
 */
const char *kb_json_duplicate(void);

/*
 * kb_json_malloc is the daemon's cJSON allocator (cJSON_InitHooks): malloc,
 * noting a failure, so kb_json_parse_whole's caller can tell a request it
 * could not parse for want of memory (internal) from one that is not JSON
 * (bad_request).
 */
void *kb_json_malloc(size_t n);

/* kb_json_out_of_memory says whether this thread's last kb_json_parse_whole ran out of memory. */
bool kb_json_out_of_memory(void);

#endif
