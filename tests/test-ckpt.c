/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-ckpt - a full image and a chain of 12 incrementals ("sync" or
 * "async" tracking); eager and lazy restores are byte-identical (every page
 * hashed) at the chain's end and in its middle; lazy restore with a
 * recorded working set restores the same bytes.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "ckpt-util.h"
#include "tap.h"

#define NPAGES 512
#define CHAIN 12

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int restore_eager_ok(const char *path, const uint64_t *want, size_t ps)
{
	char *m = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	static uint64_t got[NPAGES];
	int ret = fl_restore(path, m, NPAGES * ps);

	if (!ret) {
		hash_pages(m, NPAGES, ps, got);
		ret = memcmp(got, want, sizeof(got)) ? -EILSEQ : 0;
	}
	munmap(m, NPAGES * ps);
	return ret;
}

int main(int argc, char **argv)
{
	bool async = argc > 1 && !strcmp(argv[1], "async");
	static uint64_t ref[CHAIN + 1][NPAGES], got[NPAGES];
	struct fl_runtime_opts o;
	struct fl_runtime *rt = NULL;
	struct fl_region_opts ro;
	struct fl_ckpt *ck = NULL;
	struct fl_lazy *lz = NULL;
	struct fl_stats st = { .size = sizeof(st) };
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), len = 0;
	char *dir, path[CHAIN + 1][512], ws[512], *mem, *lazy;
	struct stat sb0, sb1;
	int ret, bad = 0;

	fl_runtime_opts_init(&o);
	if (async)
		o.flags |= FL_RT_WP_ASYNC;
	ret = fl_runtime_create(&o, &rt);
	if (ret == -EOPNOTSUPP)
		tap_skip_all("kernel without UFFD_FEATURE_WP_ASYNC (6.7+)");
	if (ret == -EPERM || ret == -ENOSYS)
		tap_skip_all("cannot open a userfaultfd here: %s", fl_strerror(ret));
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	if (fl_region_map(rt, NPAGES * ps, &ro, (void **)&mem) == -EOPNOTSUPP)
		tap_skip_all("kernel without uffd-wp");
	dir = ckpt_tmpdir();
	if (!dir)
		tap_skip_all("no writable temporary directory");
	tap_plan(14);
	tap_diag("tracking: %s", async ? "async" : "sync");

	/* half the pages written, the rest never touched */
	for (size_t p = 0; p < NPAGES; p += 2)
		for (size_t i = 0; i < ps; i += 64)
			mem[p * ps + i] = (char)next();
	TAP_EQ(fl_ckpt_create(rt, mem, NPAGES * ps, FL_DIRTY_AUTO, &ck), 0);
	for (int k = 0; k <= CHAIN; k++) {
		snprintf(path[k], sizeof(path[k]), "%s/img.%d", dir, k);
		if (k) {
			/* a few random pages, one of them zeroed by MADV_DONTNEED */
			for (int n = 0; n < 20; n++)
				mem[(next() % NPAGES) * ps + next() % ps] = (char)next();
			madvise(mem + (next() % NPAGES) * ps, ps, MADV_DONTNEED);
		}
		hash_pages(mem, NPAGES, ps, ref[k]);
		/* buffered, O_DIRECT + fdatasync, buffered + early writeback + fdatasync */
		ret = fl_ckpt_save(ck, path[k], k % 3 == 1 ? FL_CKPT_DIRECT | FL_CKPT_FSYNC :
						k % 3 == 2 ? FL_CKPT_FSYNC : 0);
		if (ret) {
			tap_diag("save %d: %s", k, fl_strerror(ret));
			bad++;
		}
	}
	tap_ok(!bad, "a full image and %d incrementals written (buffered, O_DIRECT, fdatasync)",
	       CHAIN);
	stat(path[0], &sb0);
	stat(path[1], &sb1);
	tap_ok(sb1.st_size < sb0.st_size / 4 && (sb0.st_mode & 0777) == 0600,
	       "incremental much smaller than the base (%lld vs %lld bytes), mode 0600",
	       (long long)sb1.st_size, (long long)sb0.st_size);
	TAP_EQ(fl_ckpt_save(ck, path[3], 0), -EEXIST);
	TAP_EQ(fl_image_check(path[CHAIN], &len), 0);
	tap_ok(len == NPAGES * ps, "imaged length %zu", len);
	TAP_EQ(restore_eager_ok(path[CHAIN], ref[CHAIN], ps), 0);
	TAP_EQ(restore_eager_ok(path[5], ref[5], ps), 0);
	TAP_EQ(restore_eager_ok(path[0], ref[0], ps), 0);

	/* lazy: touch in a scattered order, record, then again with prefetch */
	snprintf(ws, sizeof(ws), "%s/ws", dir);
	TAP_EQ(fl_restore_lazy(rt, path[CHAIN], NULL, 0, &lz, (void **)&lazy), 0);
	if (lz) {
		for (size_t i = 0; i < NPAGES; i++) {
			size_t p = (i * 7) % NPAGES;

			got[p] = page_hash(lazy + p * ps, ps);
		}
		tap_ok(!memcmp(got, ref[CHAIN], sizeof(got)), "lazy restore byte-identical");
		TAP_EQ(fl_lazy_ws_save(lz, ws), 0);
		fl_lazy_destroy(lz);
	} else {
		tap_ok(0, "lazy restore byte-identical");
		tap_ok(0, "working set saved");
	}
	lz = NULL;
	TAP_EQ(fl_restore_lazy(rt, path[CHAIN], ws, 0, &lz, (void **)&lazy), 0);
	if (lz) {
		hash_pages(lazy, NPAGES, ps, got);
		tap_ok(!memcmp(got, ref[CHAIN], sizeof(got)),
		       "lazy restore with working-set prefetch byte-identical");
		fl_lazy_destroy(lz);
	} else {
		tap_ok(0, "lazy restore with working-set prefetch");
	}
	fl_stats_get(rt, &st);
	tap_diag("dirty_collects %llu dirty_pages %llu ckpt_images %llu ckpt_pages %llu faults_wp %llu",
		 (unsigned long long)st.dirty_collects, (unsigned long long)st.dirty_pages,
		 (unsigned long long)st.ckpt_images, (unsigned long long)st.ckpt_pages,
		 (unsigned long long)st.faults_wp);
	fl_ckpt_destroy(ck);
	tap_diag_resolve(rt);
	fl_runtime_destroy(rt);
	ckpt_rmdir(dir);
	return tap_done();
}
