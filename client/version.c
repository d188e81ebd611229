/*
 * version.c: kb_version(), the version of this libkeybroker (keybroker.h).
 */
#include "keybroker.h"

const char *kb_version(void)
{
	return KB_VERSION_STRING;
}
