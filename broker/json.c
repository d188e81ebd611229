#include "json.h"

cJSON *kb_json_parse_whole(const char *s, size_t n)
{
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, 0);

	if (j == NULL)
		return NULL;
	for (; end < s + n; end++) {
		if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
			cJSON_Delete(j);
			return NULL;
		}
	}
	return j;
}
