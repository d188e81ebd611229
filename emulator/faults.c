#include <strings.h>
#include <time.h>

#include "crypto.h"
#include "faults.h"

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static struct emu_faults faults = { .fail_status = 503 };
static uint64_t rng = 0x9e3779b97f4a7c15ull;

void emu_faults_init(const struct emu_fault_conf *conf)
{
	uint64_t seed;

	pthread_mutex_lock(&fault_lock);
	faults.conf = *conf;
	if (emu_random(&seed, sizeof(seed)) == 0 && seed)
		rng = seed;
	pthread_mutex_unlock(&fault_lock);
}

void emu_faults_get(struct emu_faults *out)
{
	pthread_mutex_lock(&fault_lock);
	*out = faults;
	pthread_mutex_unlock(&fault_lock);
}

void emu_faults_put(const struct emu_faults *in)
{
	pthread_mutex_lock(&fault_lock);
	faults = *in;
	pthread_mutex_unlock(&fault_lock);
}

/* uniform returns a number in [0, 1); fault_lock held. */
static double uniform(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / (double)(1ull << 53);
}

enum emu_fault_action emu_faults_roll(unsigned *status)
{
	enum emu_fault_action act = EMU_FAULT_NONE;
	unsigned delay;

	pthread_mutex_lock(&fault_lock);
	delay = faults.conf.latency_ms;
	if (faults.conf.jitter_ms)
		delay += (unsigned)(uniform() * (faults.conf.jitter_ms + 1));
	if (faults.drop_next) {
		faults.drop_next--;
		act = EMU_FAULT_DROP;
	} else if (faults.fail_next) {
		faults.fail_next--;
		*status = faults.fail_status ? faults.fail_status : 503;
		act = EMU_FAULT_STATUS;
	} else {
		double r = uniform();

		if (r < faults.conf.pdrop) {
			act = EMU_FAULT_DROP;
		} else if (r < faults.conf.pdrop + faults.conf.p500) {
			*status = 500;
			act = EMU_FAULT_STATUS;
		} else if (r < faults.conf.pdrop + faults.conf.p500 + faults.conf.p503) {
			*status = 503;
			act = EMU_FAULT_STATUS;
		}
	}
	pthread_mutex_unlock(&fault_lock);
	if (delay) {
		struct timespec ts = { delay / 1000, (long)(delay % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) != 0)
			;
	}
	return act;
}

bool emu_throttle_take(struct emu_vault *v, int64_t now_ms, int64_t *wait_ms)
{
	int64_t window = v->window_ms ? v->window_ms : EMU_THROTTLE_WINDOW_MS;

	if (!v->throttle)
		return true;
	if (now_ms - v->win_start_ms >= window || now_ms < v->win_start_ms) {
		v->win_start_ms = now_ms;
		v->win_count = 0;
	}
	if (v->win_count < v->throttle) {
		v->win_count++;
		return true;
	}
	*wait_ms = v->win_start_ms + window - now_ms;
	if (*wait_ms < 1)
		*wait_ms = 1;
	return false;
}

static const struct {
	const char *name;
	enum emu_retry_style style;
} retry_styles[] = {
	{ "Retry-After", EMU_RETRY_SECONDS },
	{ "retry-after-ms", EMU_RETRY_MS },
	{ "x-ms-retry-after-ms", EMU_RETRY_XMS_MS },
	{ "none", EMU_RETRY_NONE },
	/* the older boolean spelling of retry_after */
	{ "yes", EMU_RETRY_SECONDS }, { "true", EMU_RETRY_SECONDS }, { "on", EMU_RETRY_SECONDS },
	{ "seconds", EMU_RETRY_SECONDS },
	{ "no", EMU_RETRY_NONE }, { "false", EMU_RETRY_NONE }, { "off", EMU_RETRY_NONE },
};

int emu_retry_style_parse(const char *s, enum emu_retry_style *out)
{
	for (size_t i = 0; i < sizeof(retry_styles) / sizeof(retry_styles[0]); i++) {
		if (strcasecmp(s, retry_styles[i].name) == 0) {
			*out = retry_styles[i].style;
			return 0;
		}
	}
	return -1;
}

const char *emu_retry_style_name(enum emu_retry_style st)
{
	for (size_t i = 0; i < sizeof(retry_styles) / sizeof(retry_styles[0]); i++)
		if (retry_styles[i].style == st)
			return retry_styles[i].name;
	return "none";
}
