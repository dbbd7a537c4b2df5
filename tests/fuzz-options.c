/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-options - libFuzzer target for the FAULTLINE_* environment parser
 * (clang -fsanitize=fuzzer; run by tests/preload/fuzz-options.sh, bounded).
 * The input is split at newlines into an environment vector.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sink(void *arg, const char *msg)
{
	size_t *n = arg;

	*n += strlen(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *envp[65], *s;
	struct fl_preload_options o;
	size_t n = 0, warned = 0;
	char out[256];

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (s = buf; n < 64 && s;) {
		envp[n++] = s;
		s = strchr(s, '\n');
		if (s)
			*s++ = '\0';
	}
	envp[n] = NULL;
	fl_opt_parse_env(&o, envp, sink, &warned);
	for (size_t i = 0; i < fl_opt_count; i++)
		fl_opt_format(&o, &fl_opt_table[i], out, sizeof(out));
	free(buf);
	return 0;
}
