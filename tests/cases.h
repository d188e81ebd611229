/*
 * cases.h: the one runner of keybroker's cmocka tests, and how a case is
 * registered once.
 *
 * Each case is one line of its file's table, CASE(fn, "test name"),
 * or CASE_WITH(fn, setup, teardown, "test name") when it needs them (there
 * is no expected failure: a case passes or fails). tests/meson.build reads these lines
 * and registers one meson test() per case, named by the string (the style is
 * at the top of tests/meson.build; a case without a name is a configure
 * error), and run as `exe fn`. So a case is listed only in C, and a name
 * that matches no case fails (exit 2) instead of running
 * nothing. Keep each CASE on a line of its own, and no '"' in a test name.
 *
 * Without an argument every case runs, each as its own group (so each gets
 * its group setup), which is handy under a debugger.
 */
#ifndef KB_TEST_CASES_H
#define KB_TEST_CASES_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define CASE(fn, ...) cmocka_unit_test(fn)
#define CASE_WITH(fn, setup, teardown, ...) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/*
 * cases_main runs the case argv[1] of tests[0..n) (every case without an
 * argument) with the group's setup and teardown (may be NULL). Returns the
 * number of failed cases, or 2 when argv[1] names no case.
 */
static inline int cases_main(const char *group, const struct CMUnitTest *tests, size_t n,
			     CMFixtureFunction setup, CMFixtureFunction teardown, int argc, char **argv)
{
	int failed = 0;

	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(tests[i].name, argv[1]) != 0)
			continue;
		failed += _cmocka_run_group_tests(tests[i].name, &tests[i], 1, setup, teardown);
		if (argc > 1)
			return failed;
	}
	if (argc > 1) {
		fprintf(stderr, "%s: no test named %s\n", group, argv[1]);
		return 2;
	}
	return failed;
}

/* CASES_MAIN defines main() for a file whose table is tests[]. */
#define CASES_MAIN(group, tests, setup, teardown)                                                   \
	int main(int argc, char **argv)                                                             \
	{                                                                                           \
		return cases_main(group, tests, sizeof(tests) / sizeof(tests[0]), setup, teardown, argc, \
				  argv);                                                            \
	}

#endif
