/*
 * akv-emulator: a local Azure Key Vault and Managed HSM for tests and
 * offline CMK work. main parses the command line, builds the world from the
 * config (or the zero-config defaults) and the state file, makes sure TLS
 * material exists, starts the HTTPS front and the optional admin endpoint,
 * and waits for SIGINT or SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "auth.h"
#include "config.h"
#include "faults.h"
#include "log.h"
#include "server.h"
#include "state.h"
#include "store.h"
#include "tls.h"

struct cli {
	const char *config, *listen, *tls_dir, *init_tls, *state, *admin;
	bool init_only, quiet;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: akv-emulator [--config FILE] [--listen ADDR:PORT] [--tls-dir DIR]\n"
		"                    [--init-tls DIR [--init-only]] [--state FILE] [--admin ADDR:PORT]\n"
		"                    [--quiet]\n"
		"A local Azure Key Vault and Managed HSM. Without --config it serves vault 'dev',\n"
		"Managed HSM 'dev', tenant 'dev-tenant' and principal dev-client (secret dev-secret)\n"
		"on 127.0.0.1:8443. See docs/emulator.md and akv-emulator(1).\n"
		"--help and --version print and exit 0. Exit status: 0 stopped by SIGINT or SIGTERM\n"
		"(or --init-only done), 1 a config, state, TLS or listen error, 2 a command-line error.\n");
}

static int parse_cli(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "tls-dir", required_argument, NULL, 't' },
		{ "init-tls", required_argument, NULL, 'i' },
		{ "init-only", no_argument, NULL, 'I' },
		{ "state", required_argument, NULL, 's' },
		{ "admin", required_argument, NULL, 'a' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	memset(c, 0, sizeof(*c));
	while ((o = getopt_long(argc, argv, "c:l:t:i:s:a:qhV", opts, NULL)) != -1) {
		switch (o) {
		case 'c': c->config = optarg; break;
		case 'l': c->listen = optarg; break;
		case 't': c->tls_dir = optarg; break;
		case 'i': c->init_tls = optarg; break;
		case 'I': c->init_only = true; break;
		case 's': c->state = optarg; break;
		case 'a': c->admin = optarg; break;
		case 'q': c->quiet = true; break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("akv-emulator %s\n", KB_VERSION); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "akv-emulator: unexpected argument '%s': every option has a -- name\n", argv[optind]);
		usage(stderr);
		return -1;
	}
	if (c->init_only && !c->init_tls) {
		fprintf(stderr,
			"akv-emulator: --init-only needs --init-tls DIR, the directory to write the CA and server certificate to, e.g. --init-tls ~/.local/state/akv-emulator/tls --init-only\n");
		return -1;
	}
	return 0;
}

static bool set(char *dst, size_t cap, const char *v)
{
	if (!v)
		return true;
	if (strlen(v) >= cap)
		return false;
	strcpy(dst, v);
	return true;
}

/* default_tls_dir picks $XDG_STATE_HOME/akv-emulator/tls (or ~/.local/state/...). */
static int default_tls_dir(char *out, size_t cap)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	char base[900];

	if (xdg && *xdg)
		snprintf(base, sizeof(base), "%s", xdg);
	else if (home && *home)
		snprintf(base, sizeof(base), "%s/.local/state", home);
	else
		return -1;
	/* mkdir -p of the two levels above the tls dir */
	char *p = base;
	while ((p = strchr(p + 1, '/'))) {
		*p = '\0';
		mkdir(base, 0700);
		*p = '/';
	}
	mkdir(base, 0700);
	snprintf(out, cap, "%s/akv-emulator", base);
	mkdir(out, 0700);
	snprintf(out, cap, "%s/akv-emulator/tls", base);
	return 0;
}

/* precreate makes the config's [key:...] keys that the state does not already hold. */
static int precreate(struct emu_world *w, char *err, size_t errlen)
{
	for (size_t i = 0; i < w->cfg.nprekeys; i++) {
		struct emu_prekey *pk = &w->cfg.prekeys[i];
		struct emu_vault *v = emu_store_add_vault(w, pk->mhsm, pk->vault);
		struct emu_version *ver;
		struct emu_key *k;
		bool rsa = pk->kty != EMU_KTY_OCT_HSM;

		if (!v || (pk->mhsm ? pk->kty == EMU_KTY_RSA : pk->kty == EMU_KTY_OCT_HSM) ||
		    (rsa ? (pk->bits != 2048 && pk->bits != 3072 && pk->bits != 4096) :
		     (pk->bits != 128 && pk->bits != 192 && pk->bits != 256))) {
			snprintf(err, errlen, "[key:%s.%s.%s]: %s %d is not served by a %s",
				 pk->mhsm ? "mhsm" : "vault", pk->vault, pk->name, emu_kty_name(pk->kty),
				 pk->bits, pk->mhsm ? "Managed HSM" : "vault");
			return -1;
		}
		if (emu_store_key(v, pk->name))
			continue;
		ver = emu_version_generate(pk->kty, pk->bits, 65537, pk->ops);
		if (!ver || !(k = emu_store_add_key(v, pk->name)) || emu_store_attach(k, ver)) {
			emu_version_free(ver);
			snprintf(err, errlen, "cannot create key %s", pk->name);
			return -1;
		}
	}
	return 0;
}

static void print_banner(struct emu_world *w, unsigned admin_port)
{
	printf("akv-emulator %s listening on https://%s (port %u)\n", KB_VERSION, w->cfg.listen, w->port);
	for (size_t i = 0; i < w->nvaults; i++)
		printf("  %-16s https://%s.%s.localhost:%u\n",
		       w->vaults[i]->mhsm ? "managed HSM" : "vault", w->vaults[i]->name,
		       w->vaults[i]->mhsm ? "managedhsm" : "vault", w->port);
	printf("  %-16s %s\n", "tenant", w->cfg.tenant);
	printf("  %-16s https://localhost:%u/%s/oauth2/v2.0/token\n", "token endpoint", w->port, w->cfg.tenant);
	printf("  %-16s https://localhost:%u/%s\n", "authority", w->port, w->cfg.tenant);
	printf("  %-16s https://localhost:%u/adfs (the same tenant, AD FS-shaped, for az)\n", "AD FS authority", w->port);
	printf("  %-16s https://localhost:%u/metadata/identity/oauth2/token\n", "IMDS endpoint", w->port);
	printf("  %-16s https://localhost:%u/msi/token (IDENTITY_ENDPOINT; IDENTITY_HEADER is identity_header)\n",
	       "App Service MI", w->port);
	printf("  %-16s %s/ca.pem\n", "CA file", w->cfg.tls_dir);
	for (size_t i = 0; i < w->nprincipals; i++)
		printf("  %-16s %s\n", "principal", w->principals[i].id);
	if (admin_port)
		printf("  %-16s http://%s (port %u)\n", "admin", w->cfg.admin, admin_port);
	else
		printf("  %-16s off\n", "admin");
	printf("  %-16s %s\n", "state", w->cfg.state[0] ? w->cfg.state : "in memory");
	printf("ready\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static struct emu_world world;
	struct emu_world *w = &world;
	struct cli cli;
	char err[512], *cert = NULL, *key = NULL;
	unsigned admin_port = 0;
	bool created;
	sigset_t sigs;
	int sig;

	if (parse_cli(argc, argv, &cli))
		return 2;
	pthread_mutex_init(&w->lock, NULL);
	emu_config_defaults(&w->cfg);
	if (cli.config ? emu_config_load(w, cli.config, err, sizeof(err)) : emu_config_zero(w)) {
		fprintf(stderr, "akv-emulator: %s\n", cli.config ? err : "out of memory");
		return 1;
	}
	if (!set(w->cfg.listen, sizeof(w->cfg.listen), cli.listen) ||
	    !set(w->cfg.tls_dir, sizeof(w->cfg.tls_dir), cli.init_tls ? cli.init_tls : cli.tls_dir) ||
	    !set(w->cfg.state, sizeof(w->cfg.state), cli.state) ||
	    !set(w->cfg.admin, sizeof(w->cfg.admin), cli.admin)) {
		fprintf(stderr, "akv-emulator: an option value is too long\n");
		return 2;
	}
	if (cli.quiet)
		w->cfg.quiet = true;
	emu_log_quiet(w->cfg.quiet);
	if (!w->cfg.tls_dir[0] && default_tls_dir(w->cfg.tls_dir, sizeof(w->cfg.tls_dir))) {
		fprintf(stderr, "akv-emulator: no HOME; give --tls-dir or --init-tls\n");
		return 1;
	}
	/* an explicit --tls-dir must already hold the files; otherwise create them */
	if (!cli.tls_dir || cli.init_tls) {
		if (emu_tls_init(w->cfg.tls_dir, &created, err, sizeof(err))) {
			fprintf(stderr, "akv-emulator: %s\n", err);
			return 1;
		}
		if (created)
			printf("wrote a new CA and server certificate to %s\n", w->cfg.tls_dir);
		if (cli.init_only) {
			printf("CA file: %s/ca.pem\n", w->cfg.tls_dir);
			return 0;
		}
	}
	if (emu_tls_load(w->cfg.tls_dir, &cert, &key, err, sizeof(err)) ||
	    emu_state_load(w, err, sizeof(err)) || precreate(w, err, sizeof(err))) {
		fprintf(stderr, "akv-emulator: %s\n", err);
		goto fail;
	}
	if (emu_auth_init(w)) {
		fprintf(stderr, "akv-emulator: no randomness for the token key\n");
		goto fail;
	}
	if (emu_state_save(w)) {
		fprintf(stderr, "akv-emulator: cannot write the state file %s: %s\n", w->cfg.state,
			strerror(errno));
		goto fail;
	}
	emu_faults_init(&w->cfg.faults);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if (emu_server_start(w, cert, key, err, sizeof(err)) ||
	    (w->cfg.admin[0] && emu_admin_start(w, w->cfg.admin, &admin_port, err, sizeof(err)))) {
		fprintf(stderr, "akv-emulator: %s\n", err);
		emu_server_stop();
		goto fail;
	}
	print_banner(w, admin_port);
	sigwait(&sigs, &sig);
	emu_log("signal %d: stopping", sig);
	emu_admin_stop();
	emu_server_stop();
	free(cert);
	free(key);
	return 0;
fail:
	free(cert);
	free(key);
	return 1;
}
