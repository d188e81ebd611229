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

static int sextet(char c, kb_b64_variant v)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (v == KB_B64_STD ? '+' : '-'))
		return 62;
	if (c == (v == KB_B64_STD ? '/' : '_'))
		return 63;
	return -1;
}

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
	for (size_t i = 0; i < n; i++) {
		int s = sextet(in[i], v);
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
