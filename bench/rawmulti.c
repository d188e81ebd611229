/*
 * kb-bench-rawmulti: the raw client of the latency series. N clients, each
 * one request after another on its own kept-alive HTTPS connection, all
 * driven by one libcurl multi handle: the key service's speed with nothing
 * around it, to hold keybroker's cold unwraps against (bench/latency).
 *
 * usage: kb-bench-rawmulti URL TOKEN_FILE CA_FILE BODY_FILE CLIENTS SECONDS
 * prints: requests=N errors=N rps=X p50_us=X
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct client {
	CURL *h;
	double start;
} client;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
	(void)p;
	(void)u;
	return size * n;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = calloc(1, 65536);
	size_t n;

	if (f == NULL || buf == NULL) {
		fprintf(stderr, "kb-bench-rawmulti: cannot read %s\n", path);
		exit(2);
	}
	n = fread(buf, 1, 65535, f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return buf;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct curl_slist *hdrs = NULL;
	char auth[8192];
	char *token, *body;
	int nclients, running;
	double seconds, t0, end;
	long requests = 0, errors = 0, cap = 1 << 20;
	double *lat;
	client *cl;
	CURLM *m;

	if (argc != 7 || strcmp(argv[1], "--help") == 0) {
		fprintf(argc == 2 ? stdout : stderr,
			"usage: kb-bench-rawmulti URL TOKEN_FILE CA_FILE BODY_FILE CLIENTS SECONDS\n");
		return argc == 2 ? 0 : 2;
	}
	token = slurp(argv[2]);
	body = slurp(argv[4]);
	nclients = atoi(argv[5]);
	seconds = atof(argv[6]);
	if (nclients < 1 || seconds <= 0)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	m = curl_multi_init();
	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)nclients);
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)nclients);
	cl = calloc((size_t)nclients, sizeof(*cl));
	lat = malloc(sizeof(double) * (size_t)cap);
	t0 = now_s();
	end = t0 + seconds;
	for (int i = 0; i < nclients; i++) {
		CURL *h = curl_easy_init();

		curl_easy_setopt(h, CURLOPT_URL, argv[1]);
		curl_easy_setopt(h, CURLOPT_CAINFO, argv[3]);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)&cl[i]);
		curl_easy_setopt(h, CURLOPT_RESOLVE, NULL);
		cl[i].h = h;
		cl[i].start = now_s();
		curl_multi_add_handle(m, h);
	}
	do {
		CURLMsg *msg;
		int left;

		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			client *c = NULL;
			long status = 0;
			double t = now_s();

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
			curl_multi_remove_handle(m, c->h);
			if (msg->data.result != CURLE_OK || status != 200)
				errors++;
			else if (requests < cap)
				lat[requests++] = (t - c->start) * 1e6;
			if (t < end) {
				c->start = t;
				curl_multi_add_handle(m, c->h);
			}
		}
		if (running)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	} while (running || now_s() < end);
	qsort(lat, (size_t)requests, sizeof(double), cmp_double);
	printf("requests=%ld errors=%ld rps=%.1f p50_us=%.1f\n", requests, errors, (double)requests / (now_s() - t0),
	       requests ? lat[requests / 2] : 0.0);
	return errors && requests == 0 ? 1 : 0;
}
