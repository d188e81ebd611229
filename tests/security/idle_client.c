/*
 * idle_client: one libkeybroker client kept across keybrokerd's idle close.
 *
 * usage: idle_client SOCKET BLOB
 * Unwraps BLOB and prints "first ok", then waits for a line on stdin (the
 * test sends it once keybrokerd has closed the connection for idle_timeout)
 * and unwraps BLOB again on the same kb_client. Prints "second ok" and exits
 * 0 when the second call succeeds with the same DEK; else prints the error
 * and exits 1. The DEK itself is never printed.
 */
#include <stdio.h>
#include <string.h>

#include "keybroker.h"

int main(int argc, char **argv)
{
	kb_client *c = NULL;
	kb_result first, second;
	kb_error err;
	char line[16];
	int rc = 1;

	if (argc != 3) {
		fprintf(stderr, "usage: idle_client SOCKET BLOB\n");
		return 2;
	}
	memset(&first, 0, sizeof(first));
	memset(&second, 0, sizeof(second));
	if (kb_client_connect(argv[1], &c, &err) != KB_OK || kb_unwrap(c, argv[2], &first, &err) != KB_OK) {
		printf("first failed: %s: %s\n", kb_code_name(err.code), err.message);
		goto out;
	}
	printf("first ok\n");
	fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL)
		goto out;
	if (kb_unwrap(c, argv[2], &second, &err) != KB_OK) {
		printf("second failed: %s: %s\n", kb_code_name(err.code), err.message);
		goto out;
	}
	if (second.plaintext_len != first.plaintext_len ||
	    memcmp(second.plaintext, first.plaintext, first.plaintext_len) != 0) {
		printf("second failed: a different DEK\n");
		goto out;
	}
	printf("second ok\n");
	rc = 0;
out:
	kb_result_clear(&first);
	kb_result_clear(&second);
	kb_client_close(c);
	return rc;
}
