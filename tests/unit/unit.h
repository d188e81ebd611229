/*
 * unit.h: what the unit tests of tests/unit share beside the runner
 * (tests/cases.h, which it includes).
 */
#ifndef KB_TEST_UNIT_H
#define KB_TEST_UNIT_H

#include <stdint.h>

#include "../cases.h"

/* unit_hex writes p[0..n) as lowercase hex and a NUL to out (2n+1 bytes). */
static inline void unit_hex(const uint8_t *p, size_t n, char *out)
{
	static const char h[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = h[p[i] >> 4];
		out[2 * i + 1] = h[p[i] & 15];
	}
	out[2 * n] = '\0';
}

#endif
