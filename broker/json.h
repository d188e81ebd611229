/*
 * json.h: the one way the broker parses JSON text.
 */
#ifndef KB_JSON_H
#define KB_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

/*
 * kb_json_parse_whole parses s[0..n) as exactly one JSON value, with nothing
 * but whitespace after it, so "{...} {...}" is not read as its first half.
 * Returns the tree (free with cJSON_Delete) or NULL.
 */
cJSON *kb_json_parse_whole(const char *s, size_t n);

#endif
