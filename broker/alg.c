#include <strings.h>

#include "alg.h"

static const struct {
	kb_alg alg;
	const char *name;
} names[] = {
	/* canonical names first: kb_alg_name picks the first match */
	{ KB_ALG_RSA_OAEP, "RSA-OAEP" },
	{ KB_ALG_RSA_OAEP_256, "RSA-OAEP-256" },
	{ KB_ALG_RSA1_5, "RSA1_5" },
	{ KB_ALG_AES_KWP, "AES-KWP" },
	{ KB_ALG_A128KW, "A128KW" },
	{ KB_ALG_A192KW, "A192KW" },
	{ KB_ALG_A256KW, "A256KW" },
	{ KB_ALG_AES_GCM, "AES-GCM" },
	{ KB_ALG_AES_KW, "AES-KW" },
	{ KB_ALG_AES_KWP, "CKM_AES_KEY_WRAP_PAD" },
};

const char *kb_alg_name(kb_alg alg)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].alg == alg)
			return names[i].name;
	return "";
}

kb_alg kb_alg_parse(const char *name)
{
	for (size_t i = 0; name && i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(names[i].name, name) == 0)
			return names[i].alg;
	return KB_ALG_NONE;
}

bool kb_alg_is_rsa(kb_alg alg)
{
	return alg == KB_ALG_RSA_OAEP || alg == KB_ALG_RSA_OAEP_256 || alg == KB_ALG_RSA1_5;
}
