#include "arm.h"
#include "errors.h"

void emu_arm_list(const struct emu_req *rq, const struct emu_route *rt, struct emu_reply *rep)
{
	cJSON *j;

	if (!rq->api_version || !*rq->api_version) {
		emu_error(rep, 400, "MissingApiVersionParameter", NULL,
			  "The api-version query parameter (?api-version=) is required for all requests.");
		return;
	}
	j = cJSON_CreateObject();
	cJSON_AddArrayToObject(j, "value");
	if (rt->op == EMU_OP_ARM_SUBSCRIPTIONS) {
		cJSON *count = cJSON_AddObjectToObject(j, "count");

		cJSON_AddStringToObject(count, "type", "Total");
		cJSON_AddNumberToObject(count, "value", 0);
	}
	emu_reply_json(rep, 200, j);
}
