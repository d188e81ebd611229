/* Unit tests of emulator/rotation.c: ISO 8601 durations and Azure's policy rules. */
#include "../cases.h"

#include "rotation.h"

static void iso8601_durations(void **state)
{
	int64_t s = 0;

	assert_int_equal(emu_duration_parse("P90D", &s), 0);
	assert_int_equal(s, 90 * 86400);
	assert_int_equal(emu_duration_parse("P1Y10D", &s), 0);
	assert_int_equal(s, 375 * 86400);
	assert_int_equal(emu_duration_parse("P3M", &s), 0);
	assert_int_equal(s, 90 * 86400);
	assert_int_equal(emu_duration_parse("P2W", &s), 0);
	assert_int_equal(s, 14 * 86400);
	assert_int_equal(emu_duration_parse("PT48H", &s), 0);
	assert_int_equal(s, 48 * 3600);
	assert_int_equal(emu_duration_parse("P1DT1H1M1S", &s), 0);
	assert_int_equal(s, 86400 + 3661);
	/* malformed, zero, out of order, a bare T, no P */
	const char *bad[] = { "", "P", "90D", "P0D", "PD", "P1D2Y", "P1DT", "P1H", "PT1D", "P1.5D", "P9999999D", "P1D ", NULL };
	for (int i = 0; bad[i]; i++)
		assert_int_equal(emu_duration_parse(bad[i], &s), -1);
}

static int parse(const char *json, struct emu_policy *p, char *err, size_t n)
{
	cJSON *j = cJSON_Parse(json);
	int rc;

	assert_non_null(j);
	memset(p, 0, sizeof(*p));
	rc = emu_policy_parse(j, p, err, n);
	cJSON_Delete(j);
	return rc;
}

static void policy_rules(void **state)
{
	struct emu_policy p;
	char err[200];

	assert_int_equal(parse("{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P90D\"},\"action\":{\"type\":\"Rotate\"}},"
			       "{\"trigger\":{\"timeBeforeExpiry\":\"P30D\"},\"action\":{\"type\":\"Notify\"}}],"
			       "\"attributes\":{\"expiryTime\":\"P180D\"}}", &p, err, sizeof(err)), 0);
	assert_int_equal(p.nact, 2);
	assert_int_equal(p.expiry_secs, 180 * 86400);
	assert_int_equal(emu_policy_rotate_due(&p, 1000, 0), 1000 + 90 * 86400);
	assert_int_equal(emu_policy_notify_due(&p, 1000 + 180 * 86400), 1000 + 150 * 86400);
	assert_int_equal(emu_policy_notify_due(&p, 0), 0);
	/* the floors: rotation >= 7 days, expiry >= 28 days, a week between rotation and expiry */
	assert_int_equal(parse("{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P6D\"},\"action\":{\"type\":\"Rotate\"}}]}",
			       &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "7 days"));
	assert_int_equal(parse("{\"lifetimeActions\":[],\"attributes\":{\"expiryTime\":\"P27D\"}}", &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "28 days"));
	assert_int_equal(parse("{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P25D\"},\"action\":{\"type\":\"Rotate\"}}],"
			       "\"attributes\":{\"expiryTime\":\"P30D\"}}", &p, err, sizeof(err)), -1);
	/* two Rotate actions, both triggers, a Notify after creation */
	assert_int_equal(parse("{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P30D\"},\"action\":{\"type\":\"Rotate\"}},"
			       "{\"trigger\":{\"timeAfterCreate\":\"P60D\"},\"action\":{\"type\":\"Rotate\"}}]}", &p, err, sizeof(err)), -1);
	assert_int_equal(parse("{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P30D\",\"timeBeforeExpiry\":\"P30D\"},"
			       "\"action\":{\"type\":\"Rotate\"}}]}", &p, err, sizeof(err)), -1);
	assert_int_equal(parse("{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P30D\"},\"action\":{\"type\":\"Notify\"}}]}",
			       &p, err, sizeof(err)), -1);
	/* a rotation before expiry waits for an exp to measure from */
	assert_int_equal(parse("{\"lifetimeActions\":[{\"trigger\":{\"timeBeforeExpiry\":\"P10D\"},\"action\":{\"type\":\"Rotate\"}}]}",
			       &p, err, sizeof(err)), 0);
	assert_int_equal(emu_policy_rotate_due(&p, 1000, 0), 0);
	assert_int_equal(emu_policy_rotate_due(&p, 1000, 1000 + 30 * 86400), 1000 + 20 * 86400);
}

static void default_policy_shape(void **state)
{
	struct emu_policy p = { 0 };
	cJSON *j = emu_policy_json(&p, "https://dev.vault.localhost/keys/k/rotationpolicy");
	char *s = cJSON_PrintUnformatted(j);

	assert_string_equal(s, "{\"id\":\"https://dev.vault.localhost/keys/k/rotationpolicy\",\"lifetimeActions\":"
			    "[{\"trigger\":{\"timeBeforeExpiry\":\"P30D\"},\"action\":{\"type\":\"Notify\"}}],\"attributes\":{}}");
	cJSON_free(s);
	cJSON_Delete(j);
}

static const struct CMUnitTest tests[] = {
	CASE(iso8601_durations, "emulator - rotation policy durations read ISO 8601 (P90D, P1Y10D, PT48H) and refuse malformed ones"),
	CASE(policy_rules, "emulator - rotation policies keep Azure's floors (rotate after 7 days or more, expire after 28 days or more)"),
	CASE(default_policy_shape, "emulator - a key without a rotation policy answers Azure's default (Notify 30 days before expiry)"),
};

CASES_MAIN("emu-rotation", tests, NULL, NULL)
