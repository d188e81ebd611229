/*
 * faults.h: Azure-style throttling and injected faults.
 *
 * Throttling counts operations per vault in fixed windows (10 s, as Azure's,
 * unless the vault sets another length). Faults
 * (latency with jitter, a rate of 500 and 503 answers, dropped connections,
 * and "the next N requests" counters) apply to every vault and Managed HSM
 * request, never to the token service or the admin endpoint.
 */
#ifndef EMU_FAULTS_H
#define EMU_FAULTS_H

#include "emu.h"

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
 * true if allowed; false if over the limit, with *wait_ms the time until the
 * window ends (at least 1).
 */
bool emu_throttle_take(struct emu_vault *v, int64_t now_ms, int64_t *wait_ms);

/*
 * emu_retry_style_parse reads a retry-after header style: "Retry-After"
 * (also yes/true/on/seconds), "retry-after-ms", "x-ms-retry-after-ms" or
 * "none" (also no/false/off), case-insensitively. 0, or -1 if unknown.
 */
int emu_retry_style_parse(const char *s, enum emu_retry_style *out);

/* emu_retry_style_name is the header name of a style, or "none". */
const char *emu_retry_style_name(enum emu_retry_style st);

#endif
