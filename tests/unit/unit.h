/*
 * unit.h: runs one cmocka test of a file, chosen by name on the command line.
 *
 * Each test() in meson names one behaviour, so each executable is run once per
 * case with the case's name as its argument. Without an argument every case
 * runs, which is handy under a debugger.
 */
#ifndef KB_TEST_UNIT_H
#define KB_TEST_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static inline int unit_main(const char *group, const struct CMUnitTest *tests, size_t n, int argc,
			    char **argv)
{
	if (argc < 2)
		return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		if (strcmp(tests[i].name, argv[1]) == 0)
			return _cmocka_run_group_tests(argv[1], &tests[i], 1, NULL, NULL);
	fprintf(stderr, "%s: no test named %s\n", group, argv[1]);
	return 2;
}

#define UNIT_MAIN(group, tests)                                                         \
	int main(int argc, char **argv)                                                 \
	{                                                                               \
		return unit_main(group, tests, sizeof(tests) / sizeof(tests[0]), argc, argv); \
	}

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
