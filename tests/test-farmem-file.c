/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-file - the io_uring file store: an unnamed O_TMPFILE by
 * default, an explicit path created with mode 0600; pages evicted to it and
 * read back byte for byte, sequentially (read-ahead) and at random.
 */
#include <stdint.h>
#include <sys/stat.h>

#include "tap.h"

#define PAGES	2048
#define BUDGET	128

static size_t pgsz;

static uint64_t word(size_t pg, size_t i)
{
	return ((uint64_t)pg << 32) ^ (i * 0x9e3779b97f4a7c15ull);
}

static size_t run(struct fl_store *store, const char *what)
{
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_stats st = { .size = sizeof(st) };
	unsigned int seed = 7;
	uint64_t *m;
	size_t bad = 0, w = pgsz / 8;

	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = BUDGET * pgsz;
	rt = tap_runtime(&o);
	if (fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m))
		return 1;
	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < w; i += 8)
			m[pg * w + i] = word(pg, i);
	for (int i = 0; i < 10000; i++) {		/* let the evictor catch up */
		fl_stats_get(rt, &st);
		if (st.far_evictions >= PAGES / 2)
			break;
		usleep(1000);
	}
	for (size_t pg = 0; pg < PAGES; pg++)		/* sequential */
		for (size_t i = 0; i < w; i += 8)
			bad += m[pg * w + i] != word(pg, i);
	for (size_t k = 0; k < PAGES; k++) {		/* random */
		size_t pg = (size_t)rand_r(&seed) % PAGES;

		bad += m[pg * w] != word(pg, 0);
	}
	fl_stats_get(rt, &st);
	tap_diag("%s: evictions %llu, writebacks %llu, pageins %llu (read-ahead %llu)", what,
		 (unsigned long long)st.far_evictions, (unsigned long long)st.far_writebacks,
		 (unsigned long long)st.far_pageins, (unsigned long long)st.far_readahead_pages);
	if (!st.far_pageins)
		bad++;	/* the store was not exercised */
	fl_runtime_destroy(rt);
	return bad;
}

int main(void)
{
	struct fl_store *s;
	struct stat sb;
	char path[] = "/tmp/faultline-store-XXXXXX";
	int fd, ret;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(6);
	ret = fl_store_file_create(NULL, 0, &s);
	if (ret == -EOPNOTSUPP || ret == -EISDIR)
		tap_skip_all("no O_TMPFILE in $TMPDIR: %s", fl_strerror(ret));
	TAP_EQ(ret, 0);
	tap_ok(run(s, "tmpfile") == 0, "O_TMPFILE store: every byte back");
	fl_store_destroy(s);

	fd = mkstemp(path);
	close(fd);
	unlink(path);
	TAP_EQ(fl_store_file_create(path, 0, &s), 0);
	ret = stat(path, &sb);
	tap_ok(ret == 0 && (sb.st_mode & 0777) == 0600,
	       "explicit path created with mode 0600 (%o)", (unsigned int)(sb.st_mode & 0777));
	tap_ok(run(s, "path") == 0, "file store at a path: every byte back");
	fl_store_destroy(s);
	unlink(path);
	TAP_EQ(fl_store_file_create(NULL, 1u << 30, &s), -EINVAL);
	return tap_done();
}
