/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ckpt-util.h - helpers shared by the checkpoint tests. */
#ifndef FL_CKPT_UTIL_H
#define FL_CKPT_UTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* FNV-1a 64 of one page */
static inline uint64_t page_hash(const void *p, size_t len)
{
	const unsigned char *c = p;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ c[i]) * 1099511628211ull;
	return h;
}

static inline void hash_pages(const char *mem, size_t npages, size_t ps, uint64_t *out)
{
	for (size_t p = 0; p < npages; p++)
		out[p] = page_hash(mem + p * ps, ps);
}

/* a fresh private directory under $TMPDIR (or /tmp) */
static inline char *ckpt_tmpdir(void)
{
	const char *t = getenv("TMPDIR");
	char *d;

	if (asprintf(&d, "%s/fl-ckpt-XXXXXX", t && *t ? t : "/tmp") < 0)
		return NULL;
	return mkdtemp(d) ? d : NULL;
}

static inline void ckpt_rmdir(char *d)
{
	DIR *dir = opendir(d);
	struct dirent *e;

	while (dir && (e = readdir(dir))) {
		char *p;

		if (e->d_name[0] == '.')
			continue;
		if (asprintf(&p, "%s/%s", d, e->d_name) >= 0) {
			unlink(p);
			free(p);
		}
	}
	if (dir)
		closedir(dir);
	rmdir(d);
	free(d);
}

#endif
