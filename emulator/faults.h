/*
 * faults.h: Azure-style throttling and injected faults.
 *
 * Throttling counts operations per vault in fixed 10-second windows. Faults
 * (latency with jitter, a rate of 500 and 503 answers, dropped connections,
 * and "the next N requests" counters) apply to every vault and Managed HSM
 * request, never to the token service or the admin endpoint.
 */
#ifndef EMU_FAULTS_H
#define EMU_FAULTS_H

#include "emu.h"

#define EMU_THROTTLE_WINDOW_MS 10000

struct emu_faults {
	struct emu_fault_conf conf;
	unsigned fail_next;    /* answer the next N requests with fail_status */
	unsigned fail_status;  /* 500 or 503 */
	unsigned drop_next;    /* drop the next N connections */
};

enum emu_fault_action { EMU_FAULT_NONE, EMU_FAULT_DROP, EMU_FAULT_STATUS };

void emu_faults_init(const struct emu_fault_conf *conf);
void emu_faults_get(struct emu_faults *out);
void emu_faults_put(const struct emu_faults *in);

/*
 * emu_faults_roll sleeps the configured latency, then decides this request's
 * fate: EMU_FAULT_DROP, EMU_FAULT_STATUS (with *status 500 or 503) or none.
 */
enum emu_fault_action emu_faults_roll(unsigned *status);

/*
 * emu_throttle_take counts one operation on v (world->lock held). Returns
 * true if allowed; false if over the limit, with *retry_after the seconds
 * until the window ends.
 */
bool emu_throttle_take(struct emu_vault *v, int64_t now_ms, int *retry_after);

#endif
