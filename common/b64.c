#include "b64.h"

static const char std_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t kb_b64_encoded_len(size_t n, kb_b64_variant v)
{
	if (v == KB_B64_STD)
		return (n + 2) / 3 * 4;
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t kb_b64_encode(const uint8_t *in, size_t n, char *out, kb_b64_variant v)
{
	const char *a = v == KB_B64_STD ? std_alpha : url_alpha;
	size_t i = 0, o = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = a[w >> 18];
		out[o++] = a[(w >> 12) & 63];
		out[o++] = a[(w >> 6) & 63];
		out[o++] = a[w & 63];
	}
	if (n - i == 1) {
		uint32_t w = (uint32_t)in[i] << 16;
		out[o++] = a[w >> 18];
		out[o++] = a[(w >> 12) & 63];
		if (v == KB_B64_STD) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (n - i == 2) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = a[w >> 18];
		out[o++] = a[(w >> 12) & 63];
		out[o++] = a[(w >> 6) & 63];
		if (v == KB_B64_STD)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/*
 * Each byte's sextet plus one in the standard and the URL alphabet, 0 for
 * any other byte: a table, because range checks branch unpredictably on
 * random text (twice as slow).
 */
#define ALNUM_SEXTETS \
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8, \
	['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, \
	['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, \
	['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, \
	['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, \
	['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42, ['q'] = 43, \
	['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49, ['x'] = 50, \
	['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56, ['4'] = 57, \
	['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62
static const uint8_t std_sextet[256] = { ALNUM_SEXTETS, ['+'] = 63, ['/'] = 64 };
static const uint8_t url_sextet[256] = { ALNUM_SEXTETS, ['-'] = 63, ['_'] = 64 };

bool kb_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen,
		   kb_b64_variant v)
{
	size_t pad = 0, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	while (pad < 2 && n > 0 && in[n - 1] == '=') {
		n--;
		pad++;
	}
	if (v == KB_B64_STD && (n + pad) % 4 != 0)
		return false;
	if (pad && (n + pad) % 4 != 0)
		return false;
	if (n % 4 == 1)
		return false;
	const uint8_t *sextet = v == KB_B64_STD ? std_sextet : url_sextet;

	for (size_t i = 0; i < n; i++) {
		int s = sextet[(unsigned char)in[i]] - 1;
		if (s < 0)
			return false;
		acc = acc << 6 | (uint32_t)s;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return false;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* leftover bits must be zero, or two encodings would mean one value */
	if (bits && (acc & ((1u << bits) - 1)))
		return false;
	if (pad && pad != (size_t)(4 - n % 4) % 4)
		return false;
	*outlen = o;
	return true;
}
