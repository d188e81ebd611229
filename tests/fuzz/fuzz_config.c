/* fuzz_config: any text is a config or an error naming FILE:LINE, never a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	kb_config *cfg = NULL;
	kb_err err = { 0 };
	kb_code rc;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	rc = kb_config_parse_string(text, "fuzz.conf", &cfg, &err);
	if (rc == KB_OK) {
		if (cfg == NULL)
			abort();
		/* what a backend does with its options */
		for (int i = 0; i < cfg->nkeys; i++)
			for (int o = 0; o < cfg->keys[i].nopts; o++)
				if (kb_keyconf_take(&cfg->keys[i], cfg->keys[i].opts[o].name, NULL) == NULL)
					abort();
		kb_config_free(cfg);
	} else if (rc != KB_E_BAD_REQUEST || strncmp(err.msg, "fuzz.conf:", 10) != 0) {
		abort();
	}
	free(text);
	return 0;
}
