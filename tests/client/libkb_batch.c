/*
 * libkb_batch SOCKET unwrap|rewrap FILE: hands every blob of FILE (one per
 * line) to one kb_unwrap_many or kb_rewrap_many call on a real keybrokerd,
 * and prints one line per blob, in order: "ok SHA256-OF-THE-DEK" (unwrap, so
 * no DEK is printed), "ok NEW-BLOB" (rewrap), or "error CODE". Exit 0 when the
 * call as a whole succeeded, 1 (with the message on stderr) when it did not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "keybroker.h"

static void print_digest(const kb_result *r)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_Digest(r->plaintext, r->plaintext_len, md, &n, EVP_sha256(), NULL);
	fputs("ok ", stdout);
	for (unsigned int i = 0; i < n; i++)
		printf("%02x", md[i]);
	putchar('\n');
}

int main(int argc, char **argv)
{
	char **blobs = NULL, *line = NULL;
	size_t n = 0, cap = 0;
	ssize_t len;
	kb_client *c;
	kb_result *out;
	kb_code *codes, code;
	kb_error err;
	bool rewrap = argc == 4 && strcmp(argv[2], "rewrap") == 0;
	FILE *f = argc == 4 ? fopen(argv[3], "r") : NULL;

	if (f == NULL) {
		fprintf(stderr, "usage: libkb_batch SOCKET unwrap|rewrap FILE\n");
		return 2;
	}
	while ((len = getline(&line, &cap, f)) > 0) {
		line[strcspn(line, "\n")] = '\0';
		blobs = realloc(blobs, (n + 1) * sizeof(*blobs));
		blobs[n++] = strdup(line);
	}
	fclose(f);
	out = calloc(n, sizeof(*out));
	codes = calloc(n, sizeof(*codes));
	if (kb_client_connect(argv[1], &c, &err) != KB_OK) {
		fprintf(stderr, "connect: %s\n", err.message);
		return 1;
	}
	code = rewrap ? kb_rewrap_many(c, (const char *const *)blobs, n, NULL, out, codes, &err)
		      : kb_unwrap_many(c, (const char *const *)blobs, n, out, codes, &err);
	if (code != KB_OK) {
		fprintf(stderr, "%s: %s\n", kb_code_name(code), err.message);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (codes[i] != KB_OK)
			printf("error %s\n", kb_code_name(codes[i]));
		else if (rewrap)
			printf("ok %s\n", out[i].blob);
		else
			print_digest(&out[i]);
		kb_result_clear(&out[i]);
		free(blobs[i]);
	}
	kb_client_close(c);
	free(out);
	free(codes);
	free(blobs);
	free(line);
	return 0;
}
