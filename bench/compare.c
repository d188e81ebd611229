/*
 * compare.c: kb-bench-compare, the comparison of docs/BENCHMARKS.md in one program.
 * It measures keybroker beside its floors and peers with the same runner,
 * the same request sizes and the same client counts, interleaving the
 * series in rounds (each round runs every series for duration/rounds, in an
 * order rotated each round) so machine drift hits all alike, and repeats
 * the whole for --runs runs. Each ratio is computed per run; the result is
 * its median. bench/compare sets up the token, the broker, the echo server
 * and p11-kit server, and runs this.
 *
 * It also reports a cache hit's cost per step (kb-bench-hitstep's JSON,
 * beside a recorded baseline), and says whether the CPUs were kept awake
 * (--cpus awake holds /dev/cpu_dma_latency at 0 for the run, so no CPU
 * sleeps in a deep idle state between requests) or left idle.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench.h"
#include "https.h"
#include "p11.h"

enum {
	S_ECHO_RSA_1, S_HIT_1, S_ECHO_RSA_8, S_HIT_8,
	S_P11_RSA_1, S_MISS_RSA_1, S_PEER_RSA_1, S_MISS_RSA_2, S_P11_RSA_2,
	S_ECHO_AES_1, S_P11_AES_1, S_MISS_AES_1, S_PEER_AES_1,
	S_AZ_RAW_1, S_MISS_AZ_1,
	S_P11_RSA_1P, S_P11_AES_1P,
	S_COUNT
};

typedef struct series_def {
	const char *name;
	int clients;
	int pause_us;   /* the client idles this long between calls, as a server waits for requests */
} series_def;

static const series_def defs[S_COUNT] = {
	[S_ECHO_RSA_1] = { "floor A: echo, rsa sizes", 1 },
	[S_HIT_1] = { "keybroker unwrap-hit rsa", 1 },
	[S_ECHO_RSA_8] = { "floor A: echo, rsa sizes", 8 },
	[S_HIT_8] = { "keybroker unwrap-hit rsa", 8 },
	[S_P11_RSA_1] = { "floor B: in-process RSA", 1 },
	[S_MISS_RSA_1] = { "keybroker unwrap-miss rsa", 1 },
	[S_PEER_RSA_1] = { "peer: p11-kit server RSA", 1 },
	[S_MISS_RSA_2] = { "keybroker unwrap-miss rsa", 2 },
	[S_P11_RSA_2] = { "floor B: in-process RSA", 2 },
	[S_ECHO_AES_1] = { "floor A: echo, aes sizes", 1 },
	[S_P11_AES_1] = { "floor B: in-process AES", 1 },
	[S_MISS_AES_1] = { "keybroker unwrap-miss aes", 1 },
	[S_PEER_AES_1] = { "peer: p11-kit server AES", 1 },
	[S_AZ_RAW_1] = { "Azure: raw HTTPS unwrapkey", 1 },
	[S_MISS_AZ_1] = { "keybroker unwrap-miss azure", 1 },
	[S_P11_RSA_1P] = { "floor B, 50 us pauses: RSA", 1, 50 },
	[S_P11_AES_1P] = { "floor B, 50 us pauses: AES", 1, 50 },
};

typedef enum { P50, THR } metric;
typedef enum { LE, GE, LT, INFO } cmp;

typedef struct ratio_def {
	const char *name;
	int num, den, den2;      /* den2 >= 0: the denominator is den + den2 */
	metric m;
	cmp c;
	double target;
} ratio_def;

static const ratio_def ratios[] = {
	{ "cached unwrap p50 / echo p50, 1 client", S_HIT_1, S_ECHO_RSA_1, -1, P50, LE, 1.3 },
	{ "cached unwrap req/s / echo req/s, 8 clients", S_HIT_8, S_ECHO_RSA_8, -1, THR, GE, 0.6 },
	{ "uncached RSA unwrap p50 / in-process p50", S_MISS_RSA_1, S_P11_RSA_1, -1, P50, LE, 1.08 },
	{ "uncached RSA unwrap p50 / p11-kit server p50", S_MISS_RSA_1, S_PEER_RSA_1, -1, P50, LE, 0.95 },
	{ "uncached RSA req/s, 2 clients / 1 client", S_MISS_RSA_2, S_MISS_RSA_1, -1, THR, GE, 1.7 },
	{ "  (in-process RSA req/s, 2 clients / 1 client)", S_P11_RSA_2, S_P11_RSA_1, -1, THR, INFO, 0 },
	/* issue 30: two clients' misses get the CPUs the token's own work needs back */
	{ "uncached RSA req/s, 2 clients / in-process 2 threads", S_MISS_RSA_2, S_P11_RSA_2, -1, THR, GE, 0.95 },
	{ "uncached AES unwrap p50 / (in-process + echo) p50", S_MISS_AES_1, S_P11_AES_1, S_ECHO_AES_1, P50, LE, 1.25 },
	{ "  (uncached AES unwrap p50 / p11-kit server p50)", S_MISS_AES_1, S_PEER_AES_1, -1, P50, INFO, 0 },
	{ "  (in-process RSA p50, 50 us pauses / back to back)", S_P11_RSA_1P, S_P11_RSA_1, -1, P50, INFO, 0 },
	{ "  (in-process AES p50, 50 us pauses / back to back)", S_P11_AES_1P, S_P11_AES_1, -1, P50, INFO, 0 },
	{ "Azure: uncached unwrap p50 / raw keep-alive request", S_MISS_AZ_1, S_AZ_RAW_1, -1, P50, LE, 1.2 },
};
#define NRATIOS (sizeof(ratios) / sizeof(ratios[0]))

typedef struct opts {
	const char *socket, *echo, *module, *token, *pin_file, *peer_module;
	const char *rsa_key, *rsa_label, *aes_key, *aes_label;
	const char *az_key, *az_url, *az_token_file, *az_ca, *az_alg;
	const char *json, *csv, *plot;
	const char *hitstep, *hitstep_before;
	bool awake;
	double duration, warmup;
	int rounds, runs;
	size_t size;
} opts;

static double value(const bench_series *s, metric m)
{
	return m == P50 ? (double)bench_hist_pct(&s->hist, 50) / 1000.0 : bench_throughput(s);
}

/* ratio_of returns ratio r of one run's series, or -1 when a series it needs was skipped. */
static double ratio_of(const ratio_def *r, const bench_series *s)
{
	double den;

	if (s[r->num].skipped || s[r->den].skipped || (r->den2 >= 0 && s[r->den2].skipped) ||
	    s[r->num].hist.count == 0 || s[r->den].hist.count == 0)
		return -1;
	den = value(&s[r->den], r->m) + (r->den2 >= 0 ? value(&s[r->den2], r->m) : 0);
	return den > 0 ? value(&s[r->num], r->m) / den : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static const char *cmp_name(cmp c)
{
	return c == LE ? "<=" : c == GE ? ">=" : c == LT ? "<" : "";
}

static bool passes(const ratio_def *r, double v)
{
	return r->c == LE ? v <= r->target : r->c == GE ? v >= r->target : v < r->target;
}

static void skip_series(bench_series *all, int runs, int i, const char *why)
{
	for (int r = 0; r < runs; r++) {
		all[r * S_COUNT + i].skipped = true;
		snprintf(all[r * S_COUNT + i].note, sizeof(all[0].note), "%.*s", (int)sizeof(all[0].note) - 1, why);
	}
}

/* usage lists the options and, from defs and ratios, every series and ratio this run measures. */
static void usage(FILE *f)
{
	fprintf(f, "usage: kb-bench-compare --socket S --echo S --module SO --token LABEL --pin-file F\n"
		"         [options]\n"
		"Run through bench/compare, which starts everything this needs (docs/BENCHMARKS.md).\n\n"
		"what bench/compare sets up:\n"
		"  --socket S            keybrokerd's socket\n"
		"  --echo S              kb-bench-echo's socket (floor A)\n"
		"  --module SO           the token's PKCS#11 module (floor B)\n"
		"  --token LABEL         the token's label\n"
		"  --pin-file F          the token's user PIN file\n"
		"  --peer-module SO      p11-kit-client.so (the peer); without it the peer series are skipped\n"
		"  --rsa-key NAME        the broker's RSA key (default rsa), token label --rsa-label (rsa-kek)\n"
		"  --aes-key NAME        the broker's AES key (default aes), token label --aes-label (aes-kek)\n\n"
		"how long and how often:\n"
		"  --duration S          seconds per series per run, split over the rounds (default 3)\n"
		"  --rounds N            rounds per run, each running every series once (default 3)\n"
		"  --runs N              runs; each ratio is the median over the runs (default 3)\n"
		"  --warmup S            unmeasured seconds before each series' window (default 0.2)\n"
		"  --size BYTES          DEK size, 1 to 190 (default 32)\n\n"
		"output:\n"
		"  --json FILE           every series of every run and the ratios as JSON\n"
		"  --csv FILE            one row per series and run\n"
		"  --plot FILE.svg       the latency CDF of each series\n"
		"  --hitstep FILE        kb-bench-hitstep's --json: a hit's ns per step, reported\n"
		"  --hitstep-before FILE the same from before, reported beside it (bench/hitstep-before.json)\n\n"
		"the machine:\n"
		"  --cpus awake|idle     awake: hold /dev/cpu_dma_latency at 0 during the run (root), so\n"
		"                        CPUs never sleep deeply between requests; idle (default): as they are\n\n"
		"Azure (else those series are skipped with a note):\n"
		"  --azure-key NAME      the broker's azure key\n"
		"  --azure-url URL       its versioned key URL, for the raw HTTPS series\n"
		"  --azure-token-file F  a bearer token for the raw series\n"
		"  --azure-ca F          the CA of the key host (akv-emulator's tls/ca.pem)\n"
		"  --azure-alg ALG       the unwrap algorithm (default RSA-OAEP-256)\n\n"
		"series (clients):\n");
	for (int i = 0; i < S_COUNT; i++)
		fprintf(f, "  %-32s %d\n", defs[i].name, defs[i].clients);
	fprintf(f, "\nratios (target):\n");
	for (size_t i = 0; i < NRATIOS; i++) {
		if (ratios[i].c == INFO)
			fprintf(f, "  %s\n", ratios[i].name);
		else
			fprintf(f, "  %-52s %s %g\n", ratios[i].name, cmp_name(ratios[i].c), ratios[i].target);
	}
}

static int parse(int argc, char **argv, opts *o)
{
	static const struct option lo[] = {
		{ "socket", 1, NULL, 's' }, { "echo", 1, NULL, 'e' }, { "module", 1, NULL, 'm' },
		{ "token", 1, NULL, 't' }, { "pin-file", 1, NULL, 'p' }, { "peer-module", 1, NULL, 'P' },
		{ "rsa-key", 1, NULL, 'r' }, { "rsa-label", 1, NULL, 'R' }, { "aes-key", 1, NULL, 'a' },
		{ "aes-label", 1, NULL, 'A' }, { "azure-key", 1, NULL, 'z' }, { "azure-url", 1, NULL, 'u' },
		{ "azure-token-file", 1, NULL, 'T' }, { "azure-ca", 1, NULL, 'C' }, { "azure-alg", 1, NULL, 'L' },
		{ "json", 1, NULL, 'j' }, { "csv", 1, NULL, 'c' }, { "plot", 1, NULL, 'o' },
		{ "duration", 1, NULL, 'd' }, { "warmup", 1, NULL, 'w' }, { "rounds", 1, NULL, 'n' },
		{ "runs", 1, NULL, 'N' }, { "size", 1, NULL, 'S' }, { "help", 0, NULL, 'h' },
		{ "version", 0, NULL, 'V' },
		{ "hitstep", 1, NULL, 'H' }, { "hitstep-before", 1, NULL, 'B' }, { "cpus", 1, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	*o = (opts){ .rsa_key = "rsa", .rsa_label = "rsa-kek", .aes_key = "aes", .aes_label = "aes-kek",
		     .az_alg = "RSA-OAEP-256", .duration = 3, .warmup = 0.2, .rounds = 3, .runs = 3, .size = 32 };
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 's': o->socket = optarg; break;
		case 'e': o->echo = optarg; break;
		case 'm': o->module = optarg; break;
		case 't': o->token = optarg; break;
		case 'p': o->pin_file = optarg; break;
		case 'P': o->peer_module = optarg; break;
		case 'r': o->rsa_key = optarg; break;
		case 'R': o->rsa_label = optarg; break;
		case 'a': o->aes_key = optarg; break;
		case 'A': o->aes_label = optarg; break;
		case 'z': o->az_key = optarg; break;
		case 'u': o->az_url = optarg; break;
		case 'T': o->az_token_file = optarg; break;
		case 'C': o->az_ca = optarg; break;
		case 'L': o->az_alg = optarg; break;
		case 'j': o->json = optarg; break;
		case 'c': o->csv = optarg; break;
		case 'o': o->plot = optarg; break;
		case 'd': o->duration = atof(optarg); break;
		case 'w': o->warmup = atof(optarg); break;
		case 'n': o->rounds = atoi(optarg); break;
		case 'N': o->runs = atoi(optarg); break;
		case 'S': o->size = (size_t)atoi(optarg); break;
		case 'H': o->hitstep = optarg; break;
		case 'B': o->hitstep_before = optarg; break;
		case 'U':
			if (strcmp(optarg, "awake") != 0 && strcmp(optarg, "idle") != 0) {
				usage(stderr);
				return -1;
			}
			o->awake = strcmp(optarg, "awake") == 0;
			break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("kb-bench-compare %s\n", KB_VERSION); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc || !o->socket || !o->echo || !o->module || !o->token || !o->pin_file ||
	    o->duration <= 0 || o->rounds < 1 || o->runs < 1 || o->size < 1 || o->size > 190) {
		usage(stderr);
		return -1;
	}
	return 0;
}

static int read_pin(const char *path, char *pin, size_t cap)
{
	FILE *f = fopen(path, "r");
	bool ok = f != NULL && fgets(pin, (int)cap, f) != NULL;

	if (f != NULL)
		fclose(f);
	if (!ok)
		return -1;
	pin[strcspn(pin, "\r\n")] = '\0';
	return 0;
}

/*
 * keep_awake holds /dev/cpu_dma_latency at 0 µs: while the returned fd is
 * open, the kernel keeps every CPU out of idle states that take time to
 * leave (the PM QoS interface). Returns -1 with a message if it cannot.
 */
static int keep_awake(char *err, size_t cap)
{
	int32_t zero = 0;
	int fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, &zero, sizeof(zero)) != (ssize_t)sizeof(zero)) {
		snprintf(err, cap, "--cpus awake: cannot hold /dev/cpu_dma_latency at 0: %s (it needs root)",
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

#define HIT_STEPS 7
static const char *const hit_steps[HIT_STEPS] = { "parse", "digest", "lookup", "render", "send", "whole", "user" };

/* read_hitstep reads kb-bench-hitstep's --json into ns (NaN-free: -1 for a step it lacks); false if unreadable. */
static bool read_hitstep(const char *path, double ns[HIT_STEPS])
{
	FILE *f = path ? fopen(path, "r") : NULL;
	char text[4096];
	size_t n;
	cJSON *j, *steps;

	for (int i = 0; i < HIT_STEPS; i++)
		ns[i] = -1;
	if (f == NULL)
		return false;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	if ((j = cJSON_Parse(text)) == NULL)
		return false;
	steps = cJSON_GetObjectItemCaseSensitive(j, "ns");
	for (int i = 0; i < HIT_STEPS; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(steps, hit_steps[i]);
		if (cJSON_IsNumber(v))
			ns[i] = v->valuedouble;
	}
	cJSON_Delete(j);
	return true;
}

/* report_hitstep prints a hit's ns per step, before (if given) and now, and the user-space ratio. */
static void report_hitstep(const opts *o, double before[HIT_STEPS], double after[HIT_STEPS])
{
	bool have_before = read_hitstep(o->hitstep_before, before);

	if (!read_hitstep(o->hitstep, after)) {
		if (o->hitstep)
			fprintf(stderr, "kb-bench-compare: cannot read %s\n", o->hitstep);
		return;
	}
	printf("\ncache hit, ns per step (kb-bench-hitstep: the broker's own functions, in one process)\n\n");
	printf("%-8s %10s %10s %8s\n", "step", have_before ? "before" : "", "now", have_before ? "now/before" : "");
	for (int i = 0; i < HIT_STEPS; i++) {
		if (have_before && before[i] > 0)
			printf("%-8s %10.0f %10.0f %8.2f\n", hit_steps[i], before[i], after[i], after[i] / before[i]);
		else
			printf("%-8s %10s %10.0f\n", hit_steps[i], "", after[i]);
	}
	printf("(send is the send(2) itself; user = whole - send, the user-space work of one hit)\n");
}

static void write_json(const opts *o, const bench_series *total, double med[NRATIOS],
		       double vals[][NRATIOS], const double before[HIT_STEPS], const double after[HIT_STEPS])
{
	FILE *f = fopen(o->json, "w");

	if (f == NULL) {
		fprintf(stderr, "kb-bench-compare: cannot write %s: %s\n", o->json, strerror(errno));
		return;
	}
	fprintf(f, "{\"runs\":%d,\"rounds\":%d,\"duration_s\":%g,\"size\":%zu,\"cpus\":%ld,\"cpus_state\":\"%s\",",
		o->runs, o->rounds, o->duration, o->size, sysconf(_SC_NPROCESSORS_ONLN), o->awake ? "awake" : "idle");
	fprintf(f, "\"hit_ns_per_step\":{");
	for (int i = 0; i < HIT_STEPS; i++) {
		fprintf(f, "%s\"%s\":{\"before\":", i ? "," : "", hit_steps[i]);
		if (before[i] < 0)
			fprintf(f, "null");
		else
			fprintf(f, "%.1f", before[i]);
		if (after[i] < 0)
			fprintf(f, ",\"now\":null}");
		else
			fprintf(f, ",\"now\":%.1f}", after[i]);
	}
	fprintf(f, "},\"series\":[");
	for (int i = 0; i < S_COUNT; i++) {
		if (i)
			fputc(',', f);
		bench_report_series_json(f, &total[i]);
	}
	fprintf(f, "],\"ratios\":[");
	for (size_t k = 0; k < NRATIOS; k++) {
		const ratio_def *r = &ratios[k];

		fprintf(f, "%s{\"name\":\"%s\",\"target\":", k ? "," : "", r->name);
		if (r->c == INFO)
			fprintf(f, "null");
		else
			fprintf(f, "\"%s %g\"", cmp_name(r->c), r->target);
		fprintf(f, ",\"values\":[");
		for (int run = 0; run < o->runs; run++) {
			if (run)
				fputc(',', f);
			if (vals[run][k] < 0)
				fprintf(f, "null");
			else
				fprintf(f, "%.4f", vals[run][k]);
		}
		if (med[k] < 0)
			fprintf(f, "],\"median\":null,\"pass\":null}");
		else if (r->c == INFO)
			fprintf(f, "],\"median\":%.4f,\"pass\":null}", med[k]);
		else
			fprintf(f, "],\"median\":%.4f,\"pass\":%s}", med[k], passes(r, med[k]) ? "true" : "false");
	}
	fprintf(f, "]}\n");
	fclose(f);
}

int main(int argc, char **argv)
{
	opts o;
	bench_driver *drv[S_COUNT] = { 0 };
	bench_broker *hit = NULL, *miss_rsa = NULL, *miss_aes = NULL, *miss_az = NULL;
	bench_echo *echo_rsa = NULL, *echo_aes = NULL;
	p11_bench *p11_rsa = NULL, *p11_aes = NULL, *peer_rsa = NULL, *peer_aes = NULL;
	https_bench *az = NULL;
	bench_series *all, *total;
	double (*vals)[NRATIOS], med[NRATIOS];
	uint8_t ct_rsa[1024], ct_aes[1024], ct_az[1024];
	size_t n_rsa = 0, n_aes = 0, n_az = 0, rq, rs;
	char err[512], pin[256];
	bool tty = isatty(STDERR_FILENO);
	double hit_before[HIT_STEPS], hit_after[HIT_STEPS];
	int awake_fd = -1;

	if (parse(argc, argv, &o) != 0)
		return 2;
	if (o.awake && (awake_fd = keep_awake(err, sizeof(err))) < 0) {
		fprintf(stderr, "kb-bench-compare: %s\n", err);
		return 1;
	}
	if (read_pin(o.pin_file, pin, sizeof(pin)) != 0) {
		fprintf(stderr, "kb-bench-compare: cannot read %s\n", o.pin_file);
		return 1;
	}
	all = calloc((size_t)o.runs * S_COUNT, sizeof(*all));
	total = calloc(S_COUNT, sizeof(*total));
	vals = calloc((size_t)o.runs, sizeof(*vals));
	if (all == NULL || total == NULL || vals == NULL)
		return 1;
	for (int r = 0; r < o.runs; r++)
		for (int i = 0; i < S_COUNT; i++)
			bench_series_init(&all[r * S_COUNT + i], defs[i].name, defs[i].clients);

	/* keybroker's series; preparing one of each gives the sizes and ciphertexts the floors use */
	hit = bench_broker_new(o.socket, o.rsa_key, BENCH_UNWRAP_HIT, o.size, err, sizeof(err));
	miss_rsa = hit ? bench_broker_new(o.socket, o.rsa_key, BENCH_UNWRAP_MISS, o.size, err, sizeof(err)) : NULL;
	miss_aes = miss_rsa ? bench_broker_new(o.socket, o.aes_key, BENCH_UNWRAP_MISS, o.size, err, sizeof(err)) : NULL;
	if (miss_aes == NULL ||
	    bench_broker_driver(hit)->prepare(hit, 1, 0, 1, err, sizeof(err)) != 0 ||
	    bench_broker_driver(miss_aes)->prepare(miss_aes, 1, 0, 1, err, sizeof(err)) != 0) {
		fprintf(stderr, "kb-bench-compare: %s\n", err);
		return 1;
	}
	n_rsa = bench_broker_ciphertext(hit, ct_rsa, sizeof(ct_rsa));
	n_aes = bench_broker_ciphertext(miss_aes, ct_aes, sizeof(ct_aes));
	drv[S_HIT_1] = drv[S_HIT_8] = bench_broker_driver(hit);
	drv[S_MISS_RSA_1] = drv[S_MISS_RSA_2] = bench_broker_driver(miss_rsa);
	drv[S_MISS_AES_1] = bench_broker_driver(miss_aes);

	bench_broker_sizes(hit, &rq, &rs);
	echo_rsa = bench_echo_new(o.echo, rq, rs);
	printf("request/response bytes: rsa unwrap %zu/%zu", rq, rs);
	bench_broker_sizes(miss_aes, &rq, &rs);
	echo_aes = bench_echo_new(o.echo, rq, rs);
	printf(", aes unwrap %zu/%zu\n", rq, rs);
	if (echo_rsa == NULL || echo_aes == NULL)
		return 1;
	drv[S_ECHO_RSA_1] = drv[S_ECHO_RSA_8] = bench_echo_driver(echo_rsa);
	drv[S_ECHO_AES_1] = bench_echo_driver(echo_aes);

	p11_rsa = p11_bench_new(o.module, o.token, pin, o.rsa_label, P11_RSA_OAEP, ct_rsa, n_rsa, err, sizeof(err));
	if (p11_rsa == NULL) {
		fprintf(stderr, "kb-bench-compare: floor B: %s\n", err);
		return 1;
	}
	drv[S_P11_RSA_1] = drv[S_P11_RSA_2] = drv[S_P11_RSA_1P] = p11_bench_driver(p11_rsa);
	p11_aes = p11_bench_new(o.module, o.token, pin, o.aes_label, P11_AES_KWP, ct_aes, n_aes, err, sizeof(err));
	if (p11_aes == NULL) {
		fprintf(stderr, "kb-bench-compare: floor B: %s\n", err);
		return 1;
	}
	drv[S_P11_AES_1] = drv[S_P11_AES_1P] = p11_bench_driver(p11_aes);

	if (o.peer_module == NULL) {
		skip_series(all, o.runs, S_PEER_RSA_1, "no --peer-module (p11-kit-client.so)");
		skip_series(all, o.runs, S_PEER_AES_1, "no --peer-module (p11-kit-client.so)");
	} else {
		peer_rsa = p11_bench_new(o.peer_module, o.token, pin, o.rsa_label, P11_RSA_OAEP, ct_rsa, n_rsa,
					 err, sizeof(err));
		if (peer_rsa == NULL)
			skip_series(all, o.runs, S_PEER_RSA_1, err);
		else
			drv[S_PEER_RSA_1] = p11_bench_driver(peer_rsa);
		peer_aes = p11_bench_new(o.peer_module, o.token, pin, o.aes_label, P11_AES_KWP, ct_aes,
						 n_aes, err, sizeof(err));
		if (peer_aes == NULL && strstr(err, "0x70") != NULL)
			snprintf(err, sizeof(err), "p11-kit 0.24's RPC cannot carry this mechanism "
				 "(CKM_AES_KEY_WRAP_PAD: CKR_MECHANISM_INVALID); it cannot remote AES-GCM "
				 "parameters either");
		if (peer_aes == NULL)
			skip_series(all, o.runs, S_PEER_AES_1, err);
		else
			drv[S_PEER_AES_1] = p11_bench_driver(peer_aes);
	}

	if (o.az_key == NULL || o.az_url == NULL) {
		skip_series(all, o.runs, S_AZ_RAW_1, "no Azure key: give --azure-key and --azure-url (akv-emulator)");
		skip_series(all, o.runs, S_MISS_AZ_1, "no Azure key: give --azure-key and --azure-url (akv-emulator)");
	} else {
		miss_az = bench_broker_new(o.socket, o.az_key, BENCH_UNWRAP_MISS, o.size, err, sizeof(err));
		if (miss_az != NULL && strcmp(bench_broker_backend(miss_az), "azure") != 0)
			snprintf(err, sizeof(err), "key %s has backend %s, not azure", o.az_key,
				 bench_broker_backend(miss_az));
		else if (miss_az != NULL && bench_broker_driver(miss_az)->prepare(miss_az, 1, 0, 1, err, sizeof(err)) == 0 &&
			 (n_az = bench_broker_ciphertext(miss_az, ct_az, sizeof(ct_az))) > 0)
			az = https_bench_new(o.az_url, o.az_token_file, o.az_ca, o.az_alg, ct_az, n_az, err,
					     sizeof(err));
		if (az == NULL) {
			skip_series(all, o.runs, S_AZ_RAW_1, err);
			skip_series(all, o.runs, S_MISS_AZ_1, err);
		} else {
			drv[S_AZ_RAW_1] = https_bench_driver(az);
			drv[S_MISS_AZ_1] = bench_broker_driver(miss_az);
		}
	}

	for (int run = 0; run < o.runs; run++) {
		bench_series *s = &all[run * S_COUNT];

		for (int round = 0; round < o.rounds; round++) {
			for (int j = 0; j < S_COUNT; j++) {
				int i = (j + round * 5 + run * 3) % S_COUNT;
				bench_spec spec = { .clients = defs[i].clients, .duration_s = o.duration / o.rounds,
						    .warmup_s = o.warmup, .pause_us = defs[i].pause_us };

				if (s[i].skipped)
					continue;
				if (tty)
					fprintf(stderr, "\rrun %d/%d, round %d/%d: %-40s", run + 1, o.runs,
						round + 1, o.rounds, defs[i].name);
				if (bench_run(drv[i], &spec, &s[i], err, sizeof(err)) != 0)
					skip_series(all, o.runs, i, err);
			}
		}
		for (size_t k = 0; k < NRATIOS; k++)
			vals[run][k] = ratio_of(&ratios[k], s);
	}
	if (tty)
		fprintf(stderr, "\r%70s\r", "");

	for (int i = 0; i < S_COUNT; i++) {
		bench_series_init(&total[i], defs[i].name, defs[i].clients);
		for (int r = 0; r < o.runs; r++) {
			const bench_series *x = &all[r * S_COUNT + i];

			bench_hist_merge(&total[i].hist, &x->hist);
			total[i].ops += x->ops;
			total[i].errors += x->errors;
			total[i].elapsed_s += x->elapsed_s;
			total[i].have_counters |= x->have_counters;
			total[i].backend_calls += x->backend_calls;
			total[i].hits += x->hits;
			total[i].misses += x->misses;
			total[i].skipped = x->skipped;
			if (x->note[0])
				snprintf(total[i].note, sizeof(total[i].note), "%s", x->note);
		}
		if (!total[i].skipped && total[i].errors > 0 && drv[i] != NULL)
			snprintf(total[i].note, sizeof(total[i].note), "errors; the first: %.30s%s%.100s",
				 drv[i]->first_code, drv[i]->first_code[0] ? ": " : "", drv[i]->first_error);
		if (!total[i].skipped && (i == S_MISS_RSA_1 || i == S_MISS_RSA_2 || i == S_MISS_AES_1 ||
					  i == S_MISS_AZ_1) && total[i].backend_calls < total[i].ops)
			snprintf(total[i].note, sizeof(total[i].note),
				 "only %llu of %llu unwraps reached the backend",
				 (unsigned long long)total[i].backend_calls, (unsigned long long)total[i].ops);
	}

	printf("\nseries (all %d runs together; %d rounds of %.2f s per series per run, %zu-byte DEKs, %ld CPUs, %s)\n\n",
	       o.runs, o.rounds, o.duration / o.rounds, o.size, sysconf(_SC_NPROCESSORS_ONLN),
	       o.awake ? "CPUs awake: /dev/cpu_dma_latency held at 0" : "CPUs idle: their idle states as configured");
	bench_report_text(stdout, total, S_COUNT);
	report_hitstep(&o, hit_before, hit_after);
	printf("\n%-52s %-8s", "ratio", "target");
	for (int r = 0; r < o.runs; r++)
		printf("  run %-3d", r + 1);
	printf("  %-7s  result\n", "median");
	for (size_t k = 0; k < NRATIOS; k++) {
		const ratio_def *r = &ratios[k];
		double v[64];
		int nv = 0;
		char tgt[16] = "";

		for (int run = 0; run < o.runs; run++)
			if (vals[run][k] >= 0 && nv < 64)
				v[nv++] = vals[run][k];
		qsort(v, (size_t)nv, sizeof(double), cmp_double);
		med[k] = nv == 0 ? -1 : nv % 2 ? v[nv / 2] : (v[nv / 2 - 1] + v[nv / 2]) / 2;
		if (r->c != INFO)
			snprintf(tgt, sizeof(tgt), "%s %g", cmp_name(r->c), r->target);
		printf("%-52s %-8s", r->name, tgt);
		for (int run = 0; run < o.runs; run++) {
			if (vals[run][k] < 0)
				printf("  %-7s", "-");
			else
				printf("  %-7.3f", vals[run][k]);
		}
		if (med[k] < 0)
			printf("  %-7s  skipped\n", "-");
		else
			printf("  %-7.3f  %s\n", med[k], r->c == INFO ? "" : passes(r, med[k]) ? "pass" : "MISS");
	}
	if (o.json)
		write_json(&o, total, med, vals, hit_before, hit_after);
	if (o.csv && bench_report_csv(o.csv, total, S_COUNT) != 0)
		fprintf(stderr, "kb-bench-compare: cannot write %s: %s\n", o.csv, strerror(errno));
	if (o.plot && bench_plot_svg(o.plot, "keybroker vs floors and peers: latency CDF", total, S_COUNT) != 0)
		fprintf(stderr, "kb-bench-compare: cannot write %s: %s\n", o.plot, strerror(errno));

	bench_broker_free(hit);
	bench_broker_free(miss_rsa);
	bench_broker_free(miss_aes);
	bench_broker_free(miss_az);
	bench_echo_free(echo_rsa);
	bench_echo_free(echo_aes);
	/* the RSA drivers initialised their modules: they go last */
	p11_bench_free(peer_aes);
	p11_bench_free(peer_rsa);
	p11_bench_free(p11_aes);
	p11_bench_free(p11_rsa);
	https_bench_free(az);
	explicit_bzero(pin, sizeof(pin));
	if (awake_fd >= 0)
		close(awake_fd);
	free(all);
	free(total);
	free(vals);
	return 0;
}
