/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * checkpoint.c - full, incremental and live checkpoints of a protected
 * range to image files (format: image.h), and eager and lazy restore.
 *
 * The live snapshot protocol (as QEMU's background snapshot, on the uffd-wp
 * callbacks of wp.c), per save:
 *   1. T: under the range's wp lock, collect the dirty set D (incremental)
 *      and re-arm every written page, and install live_cb as the range's
 *      callback, in one critical section. From T on, every page of the
 *      range is write-protected and the first write to any of them runs
 *      live_cb before the writer may go on.
 *   2. The saver walks the pages to save (D, or all for a full image). Each
 *      page has a claim byte: 0 pending, 1 being copied, 2 copied. Whoever
 *      moves it 0 -> 1 copies the page: the saver from memory (the page is
 *      still protected, so it holds its T contents), live_cb into a shadow
 *      page (the writer sleeps, so it holds its T contents too).
 *   3. live_cb that finds 1 waits for 2 before it returns: the saver is
 *      reading the page, and returning would let wp.c un-protect it and
 *      the writer change it under the saver's copy. ("Copy before
 *      unprotect", across two threads.) The saver that finds 2 takes the
 *      shadow copy.
 *   4. After the last page, the callback is removed (wp_set_callback waits
 *      for callbacks in flight), then the shadow is freed.
 * Pages written after T are WRITTEN in wp.c: the next incremental save.
 * Copies of managed memory go through process_vm_readv (a kernel-mode copy)
 * so that ThreadSanitizer, which cannot see the ordering the uffd gives,
 * does not report the program's later writes as races with our reads.
 *
 * Writing: data pages stream through io_uring (liburing, 4 x 4 MiB writes
 * in flight, plain pwrite fallback if the ring cannot be set up), then the
 * header and the metadata, [0, data_off), in one last write: an image
 * whose data is not all written has no valid header (and a torn last
 * write fails the header's or the metadata's CRC), so it is never
 * mistaken for a complete one. Where the time goes, per page: a copy into
 * the buffer, the CRC32C (three hardware lanes, ~15 GB/s), and the write;
 * with FL_CKPT_FSYNC the device's writeback dominates, so each buffer's
 * write is followed by a linked SYNC_FILE_RANGE_WRITE that starts its
 * writeback at once: the device works while we copy and checksum the next
 * buffers, instead of all at the final fdatasync. FL_CKPT_DIRECT writes
 * with O_DIRECT (no page cache; the buffers and every offset and length
 * are page aligned), falling back to buffered I/O where the file system
 * refuses it.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/probes.h"
#include "image.h"
#include "wp.h"

/* ---- helpers ---- */

static void copy_kernel(void *dst, const void *src, size_t len)
{
	struct iovec l = { dst, len }, r = { (void *)src, len };

	if (process_vm_readv(getpid(), &l, 1, &r, 1, 0) != (ssize_t)len)
		memcpy(dst, src, len);
}

static bool page_resident(const void *p, size_t ps)
{
	unsigned char v = 0;

	return mincore((void *)p, ps, &v) == 0 && (v & 1);
}

/* what a page of the range holds, from /proc/self/pagemap (pg_state) */
enum { PG_NONE = 0, PG_PRESENT = 1, PG_SWAPPED = 2 };
#define PM_PRESENT	(1ull << 63)
#define PM_SWAP		(1ull << 62)

/*
 * The state of @n pages from @addr into @out. PG_NONE is a page nobody
 * produced (or one zapped): for the zero pager, zeros. A swapped-out page
 * holds data although mincore() calls it not resident: that is why this
 * reads pagemap, whose present and swap bits any process may read. Without
 * pagemap (@pmfd < 0), mincore() answers and a swapped page reads as
 * PG_NONE: only where /proc is missing.
 */
static void pg_state(int pmfd, uintptr_t addr, size_t n, size_t ps, uint8_t *out)
{
	uint64_t e[512];
	size_t done = 0;

	while (pmfd >= 0 && done < n) {
		size_t k = n - done < 512 ? n - done : 512;
		ssize_t r = pread(pmfd, e, k * 8, (off_t)((addr / ps + done) * 8));

		if (r <= 0 || r % 8)
			break;
		for (size_t i = 0; i < (size_t)r / 8; i++)
			out[done + i] = e[i] & PM_PRESENT ? PG_PRESENT :
					e[i] & PM_SWAP ? PG_SWAPPED : PG_NONE;
		done += (size_t)r / 8;
	}
	if (done < n) {
		unsigned char v[512];

		while (done < n) {
			size_t k = n - done < 512 ? n - done : 512;

			if (mincore((void *)(addr + done * ps), k * ps, v))
				memset(v, 1, k);	/* unknown: read it (faults fill it) */
			for (size_t i = 0; i < k; i++)
				out[done + i] = v[i] & 1 ? PG_PRESENT : PG_NONE;
			done += k;
		}
	}
}

static bool all_zero(const void *p, size_t len)
{
	const uint64_t *q = p;

	for (size_t i = 0; i < len / 8; i++)
		if (q[i])
			return false;
	return true;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

static uint64_t random_id(void)
{
	uint64_t v = 0;

	while (!v)
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			v = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)&v;
	return v;
}

/* ---- the image writer: io_uring, pwrite fallback ---- */

/*
 * Each of IW_NBUF slots gathers up to IW_BUF bytes of consecutive data
 * pages as an iovec: a page either points into the range itself (a quiet
 * save of a resident page: zero-copy, the kernel reads it) or into the
 * slot's bounce buffer (live saves, and pages that must be faulted in).
 * A slot in flight keeps its iovec and its buffer until its completion.
 */
#define IW_NBUF 4
#define IW_BUF (4u << 20)	/* fewer, larger requests: less CPU per byte, and
				 * the device's max request (max_sectors_kb) here */
#define IW_IOV 1024u		/* UIO_MAXIOV */

struct iw {
	int fd;
	struct io_uring ring;
	bool ring_ok;
	bool direct;		/* the fd has O_DIRECT */
	bool writeback;		/* start writeback of each slot once written */
	uint8_t *buf[IW_NBUF];
	struct iovec *iov[IW_NBUF];
	unsigned int niov[IW_NBUF];
	bool busy[IW_NBUF];
	size_t len[IW_NBUF];	/* bytes in the slot */
	uint64_t boff[IW_NBUF];
	unsigned int cur;
	size_t fill;		/* bytes of the current slot's buffer in use */
	uint64_t off;
	int err;
};

/* pwritev all of @iov from byte @skip on, at file offset @off (of byte 0) */
static int iov_write_all(int fd, const struct iovec *iov, unsigned int n, uint64_t off,
			 size_t skip)
{
	struct iovec *v = malloc(n * sizeof(*v));
	unsigned int k = 0;
	int ret = 0;

	if (!v)
		return -ENOMEM;
	memcpy(v, iov, n * sizeof(*v));
	off += skip;
	for (;;) {
		ssize_t r;

		while (k < n && skip >= v[k].iov_len)
			skip -= v[k++].iov_len;
		if (k == n)
			break;
		v[k].iov_base = (uint8_t *)v[k].iov_base + skip;
		v[k].iov_len -= skip;
		r = pwritev(fd, v + k, (int)(n - k), (off_t)off);
		if (r < 0 && errno == EINTR) {
			r = 0;
		} else if (r <= 0) {
			ret = r < 0 ? -errno : -EIO;
			break;
		}
		off += (uint64_t)r;
		skip = (size_t)r;
	}
	free(v);
	return ret;
}

static int iw_init(struct iw *w, int fd, uint64_t off, unsigned int flags)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->off = off;
	if (flags & FL_CKPT_DIRECT) {
		int fl = fcntl(fd, F_GETFL);

		/* a file system without O_DIRECT refuses it here: stay buffered */
		w->direct = fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0;
	}
	w->writeback = !w->direct && (flags & FL_CKPT_FSYNC);
	for (unsigned int i = 0; i < IW_NBUF; i++) {
		w->iov[i] = malloc(IW_IOV * sizeof(struct iovec));
		if (!w->iov[i])
			return -ENOMEM;
		w->buf[i] = mmap(NULL, IW_BUF, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (w->buf[i] == MAP_FAILED) {
			w->buf[i] = NULL;
			return -ENOMEM;
		}
	}
	w->ring_ok = io_uring_queue_init(IW_NBUF * 2, &w->ring, 0) == 0;
	return 0;
}

/*
 * O_DIRECT refused after all (-EINVAL: an alignment the file system wants
 * and we do not give): go on buffered. Return: whether to retry.
 */
static bool iw_undirect(struct iw *w, int err)
{
	int fl;

	if (!w->direct || err != -EINVAL)
		return false;
	fl = fcntl(w->fd, F_GETFL);
	if (fl < 0 || fcntl(w->fd, F_SETFL, fl & ~O_DIRECT) < 0)
		return false;
	w->direct = false;
	return true;
}

/* write slot @i from byte @skip on with pwritev; start its writeback when asked */
static int iw_write_slot_sync(struct iw *w, unsigned int i, size_t skip)
{
	int ret = iov_write_all(w->fd, w->iov[i], w->niov[i], w->boff[i], skip);

	if (ret && iw_undirect(w, ret))
		ret = iov_write_all(w->fd, w->iov[i], w->niov[i], w->boff[i], skip);
	if (!ret && w->writeback)
		(void)sync_file_range(w->fd, (off_t)w->boff[i], (off_t)w->len[i],
				      SYNC_FILE_RANGE_WRITE);
	return ret;
}

/* reap one completion; a short or refused write is finished with pwritev */
static void iw_reap(struct iw *w)
{
	struct io_uring_cqe *cqe;
	unsigned int i;
	int ret;

	do
		ret = io_uring_wait_cqe(&w->ring, &cqe);
	while (ret == -EINTR);
	if (ret < 0) {
		w->err = w->err ? w->err : ret;
		for (i = 0; i < IW_NBUF; i++)
			w->busy[i] = false;
		return;
	}
	i = (unsigned int)io_uring_cqe_get_data64(cqe);
	if (i >= IW_NBUF) {
		/* the advisory writeback start: its result does not matter */
	} else if (cqe->res < 0) {
		ret = iw_undirect(w, cqe->res) ? iw_write_slot_sync(w, i, 0) : cqe->res;
		if (ret && !w->err)
			w->err = ret;
	} else if ((size_t)cqe->res < w->len[i]) {
		ret = iw_write_slot_sync(w, i, (size_t)cqe->res);
		if (ret && !w->err)
			w->err = ret;
	}
	io_uring_cqe_seen(&w->ring, cqe);
	if (i < IW_NBUF)
		w->busy[i] = false;
}

static void iw_flush(struct iw *w)
{
	unsigned int i = w->cur;
	struct io_uring_sqe *sqe;

	if (!w->len[i])
		return;
	FL_PROBE(ckpt_write, w->len[i]);
	w->boff[i] = w->off;
	/* two SQEs when writeback follows: the ring has room for both
	 * (IW_NBUF * 2 entries, and we submit before taking more) */
	if (w->ring_ok && (sqe = io_uring_get_sqe(&w->ring))) {
		io_uring_prep_writev(sqe, w->fd, w->iov[i], w->niov[i], w->off);
		io_uring_sqe_set_data64(sqe, i);
		if (w->writeback) {
			struct io_uring_sqe *sfr;

			/* linked: starts once the data is in the page cache; a
			 * failed write cancels it */
			sqe->flags |= IOSQE_IO_LINK;
			sfr = io_uring_get_sqe(&w->ring);
			if (sfr) {
				io_uring_prep_sync_file_range(sfr, w->fd, (unsigned int)w->len[i],
							      w->off, SYNC_FILE_RANGE_WRITE);
				io_uring_sqe_set_data64(sfr, IW_NBUF);
			} else {
				sqe->flags &= ~IOSQE_IO_LINK;
			}
		}
		w->busy[i] = true;
		if (io_uring_submit(&w->ring) < 0) {
			w->busy[i] = false;
			w->err = w->err ? w->err : -EIO;
		}
	} else {
		int ret = iw_write_slot_sync(w, i, 0);

		if (ret && !w->err)
			w->err = ret;
	}
	w->off += w->len[i];
	w->cur = (w->cur + 1) % IW_NBUF;
	while (w->busy[w->cur])
		iw_reap(w);
	w->niov[w->cur] = 0;
	w->len[w->cur] = 0;
	w->fill = 0;
}

/* room for one page in the current slot's buffer (for a copy) */
static uint8_t *iw_page(struct iw *w, size_t ps)
{
	if (w->fill + ps > IW_BUF)
		iw_flush(w);
	return w->buf[w->cur] + w->fill;
}

/* append @len bytes at @p (the range, or iw_page()'s buffer) to the slot */
static void iw_add(struct iw *w, const uint8_t *p, size_t len)
{
	unsigned int i = w->cur, n = w->niov[i];

	if ((uintptr_t)p - (uintptr_t)w->buf[i] < IW_BUF)
		w->fill += len;		/* a copy in the slot's buffer */
	if (n && (const uint8_t *)w->iov[i][n - 1].iov_base + w->iov[i][n - 1].iov_len == p)
		w->iov[i][n - 1].iov_len += len;
	else
		w->iov[i][w->niov[i]++] = (struct iovec){ (void *)p, len };
	w->len[i] += len;
	if (w->len[i] >= IW_BUF || w->niov[i] == IW_IOV)
		iw_flush(w);
}

static void iw_finish(struct iw *w)
{
	iw_flush(w);
	for (unsigned int i = 0; i < IW_NBUF; i++)
		while (w->busy[i])
			iw_reap(w);
	/* writeback starts still queued are dropped with the ring: advisory */
}

static void iw_fini(struct iw *w)
{
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	for (unsigned int i = 0; i < IW_NBUF; i++) {
		if (w->buf[i])
			munmap(w->buf[i], IW_BUF);
		free(w->iov[i]);
	}
}

/* ---- checkpoints ---- */

struct fl_ckpt {
	struct fl_runtime *rt;
	uintptr_t start;
	size_t len, npages, ps;
	bool async, zero_pager;
	int pmfd;		/* /proc/self/pagemap, or -1 */
	uint64_t *bm;
	unsigned int saves;
	bool need_full;		/* a failed save consumed a dirty set */
	uint64_t last_id, last_seq;
	char *dir;		/* directory of the chain, with its '/' ("" for cwd) */
	char last_name[FLI_MAX_PARENT + 1];
	/* live snapshot state, valid during a FL_CKPT_LIVE save */
	bool live_all;
	uint8_t *shadow;
	_Atomic uint8_t *claim;
};

static bool bm_test(const uint64_t *bm, size_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

FL_EXPORT int fl_ckpt_create(struct fl_runtime *rt, void *addr, size_t len,
			     enum fl_dirty_mode mode, struct fl_ckpt **out)
{
	struct fl_ckpt *ck;
	enum fl_pager pager;
	int ret;

	if (!rt || !out)
		return -EINVAL;
	ret = fl_dirty_start(rt, addr, len, mode);
	if (ret)
		return ret;
	ret = wp_region_pager(rt, (uintptr_t)addr, len, &pager);
	ck = calloc(1, sizeof(*ck));
	if (ret || !ck) {
		fl_unprotect(rt, addr, len);
		free(ck);
		return ret ? ret : -ENOMEM;
	}
	ck->rt = rt;
	ck->start = (uintptr_t)addr;
	ck->len = len;
	ck->ps = rt->page_size;
	ck->npages = len >> rt->page_shift;
	ck->async = uffd_has(&rt->uffd, UFFD_FEATURE_WP_ASYNC);
	ck->zero_pager = pager == FL_PAGER_ZERO;
	ck->pmfd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ck->bm = calloc((ck->npages + 63) / 64, sizeof(uint64_t));
	if (!ck->bm) {
		fl_ckpt_destroy(ck);
		return -ENOMEM;
	}
	*out = ck;
	return 0;
}

FL_EXPORT void fl_ckpt_destroy(struct fl_ckpt *ck)
{
	if (!ck)
		return;
	fl_unprotect(ck->rt, (void *)ck->start, ck->len);
	if (ck->pmfd >= 0)
		close(ck->pmfd);
	free(ck->bm);
	free(ck->dir);
	free(ck);
}

/* wp.c callback during a live save: step 2/3 of the protocol above */
static void live_cb(void *arg, void *page, size_t len)
{
	struct fl_ckpt *ck = arg;
	size_t p = ((uintptr_t)page - ck->start) / ck->ps;
	uint8_t v = 0;

	if (!ck->live_all && !bm_test(ck->bm, p))
		return;		/* not in this image */
	if (atomic_compare_exchange_strong_explicit(&ck->claim[p], &v, 1,
			memory_order_acquire, memory_order_acquire)) {
		copy_kernel(ck->shadow + p * ck->ps, page, len);
		atomic_store_explicit(&ck->claim[p], 2, memory_order_release);
		WP_STAT_ADD(ck->rt, ckpt_live_copies, 1);
		return;
	}
	/* the saver reads it now: keep it protected until it is done */
	while (atomic_load_explicit(&ck->claim[p], memory_order_acquire) == 1)
		sched_yield();
}

/* live: the T contents of page @p into @dst */
static void save_page_live(struct fl_ckpt *ck, size_t p, uint8_t *dst)
{
	const uint8_t *a = (const uint8_t *)ck->start + p * ck->ps;
	uint8_t v = 0;
	/*
	 * A page another pager produces is faulted in before we claim it: a
	 * fault taken while holding the claim could wait for a handler that
	 * spins in live_cb on this very claim.
	 */
	if (!ck->zero_pager)
		while (!page_resident(a, ck->ps))
			(void)*(volatile const uint8_t *)a;
	if (atomic_compare_exchange_strong_explicit(&ck->claim[p], &v, 1,
			memory_order_acquire, memory_order_acquire)) {
		uint8_t st = PG_PRESENT;

		if (ck->zero_pager)
			pg_state(ck->pmfd, (uintptr_t)a, 1, ck->ps, &st);
		if (st == PG_NONE)
			memset(dst, 0, ck->ps);
		else
			copy_kernel(dst, a, ck->ps);
		atomic_store_explicit(&ck->claim[p], 2, memory_order_release);
		return;
	}
	while (atomic_load_explicit(&ck->claim[p], memory_order_acquire) != 2)
		sched_yield();
	memcpy(dst, ck->shadow + p * ck->ps, ck->ps);
}

#define RES_BATCH 512u		/* pages per pg_state() call */

static int save_locked(struct fl_ckpt *ck, int fd, unsigned int flags, bool full, bool live,
		       uint64_t *id_out)
{
	uint8_t res[RES_BATCH];
	size_t res_base = SIZE_MAX;
	struct fl_runtime *rt = ck->rt;
	size_t plen = full ? 0 : strlen(ck->last_name), nd = 0, ne = 0, ndata = 0;
	struct fli_entry *ent = NULL;
	struct fli_header h;
	struct fli_region reg;
	uint64_t region_off, index_off, data_off = 0, meta_len;
	uint8_t *head = NULL, *meta;
	struct iw w;
	int ret;

	if (live) {
		ck->live_all = full;
		ck->shadow = mmap(NULL, ck->len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		ck->claim = mmap(NULL, ck->npages, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (ck->shadow == MAP_FAILED || ck->claim == MAP_FAILED) {
			ret = -ENOMEM;
			goto out_live;
		}
	}
	ret = iw_init(&w, fd, 0, flags);
	if (ret)
		goto out_iw;
	/* T: the instant the image stands for */
	ret = wp_collect(rt, ck->start, ck->bm, ck->npages, &nd, live, live ? live_cb : NULL, ck);
	if (ret)
		goto out_iw;
	ne = full ? ck->npages : nd;
	ent = malloc(ne ? ne * sizeof(*ent) : 1);
	if (!ent) {
		ret = -ENOMEM;
		goto out_cb;
	}
	region_off = (sizeof(h) + plen + 7) & ~(uint64_t)7;
	index_off = region_off + sizeof(reg);
	data_off = (index_off + ne * sizeof(*ent) + ck->ps - 1) & ~(uint64_t)(ck->ps - 1);
	w.off = data_off;

	ne = 0;
	for (size_t p = 0; p < ck->npages; p++) {
		const uint8_t *src;
		uint8_t *dst;

		if (!full && !bm_test(ck->bm, p))
			continue;
		/*
		 * Quiet: the range holds its T contents and nobody changes
		 * them until we return, so page states are asked once per
		 * batch, and a present page goes to the kernel from where it
		 * is. A page never produced by the zero pager is zeros (no
		 * fault); a swapped-out page, or another pager's missing one,
		 * is copied (the copy's fault brings it in).
		 */
		if (!live && (res_base == SIZE_MAX || p >= res_base + RES_BATCH)) {
			size_t k = ck->npages - p < RES_BATCH ? ck->npages - p : RES_BATCH;

			res_base = p;
			pg_state(ck->pmfd, ck->start + p * ck->ps, k, ck->ps, res);
		}
		src = (const uint8_t *)ck->start + p * ck->ps;
		if (live) {
			dst = iw_page(&w, ck->ps);
			save_page_live(ck, p, dst);
			src = dst;
		} else if (res[p - res_base] != PG_PRESENT) {
			if (ck->zero_pager && res[p - res_base] == PG_NONE) {
				src = NULL;
			} else {
				dst = iw_page(&w, ck->ps);
				memcpy(dst, src, ck->ps);
				src = dst;
			}
		}
		ent[ne] = (struct fli_entry){ .page = p, .region = 0 };
		if (!src || all_zero(src, ck->ps)) {
			ent[ne].flags = FLI_E_ZERO;
		} else {
			ent[ne].flags = FLI_E_DATA;
			ent[ne].slot = ndata++;
			ent[ne].crc = fli_crc32c(0, src, ck->ps);
			iw_add(&w, src, ck->ps);
		}
		ne++;
	}
	iw_finish(&w);
	ret = w.err;
	if (ret)
		goto out_cb;

	/*
	 * The first data_off bytes, in one page-aligned block (O_DIRECT):
	 * the header, then the metadata (parent name, padding, region table,
	 * index, padding).
	 */
	meta_len = data_off - sizeof(h);
	head = mmap(NULL, data_off, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (head == MAP_FAILED) {
		head = NULL;
		ret = -ENOMEM;
		goto out_cb;
	}
	meta = head + sizeof(h);
	memcpy(meta, ck->last_name, plen);
	reg = (struct fli_region){ .addr = ck->start, .len = ck->len, .first_entry = 0,
				   .nentries = ne };
	memcpy(meta + (region_off - sizeof(h)), &reg, sizeof(reg));
	memcpy(meta + (index_off - sizeof(h)), ent, ne * sizeof(*ent));
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, FLI_MAGIC, 8);
	h.version = FLI_VERSION;
	h.header_size = sizeof(h);
	h.page_size = (uint32_t)ck->ps;
	h.flags = (full ? 0 : FLI_F_INCREMENTAL) | (live ? FLI_F_LIVE : 0);
	h.image_id = random_id();
	h.parent_id = full ? 0 : ck->last_id;
	h.seq = full ? 0 : ck->last_seq + 1;
	h.parent_off = sizeof(h);
	h.parent_len = (uint32_t)plen;
	h.nregions = 1;
	h.region_off = region_off;
	h.index_off = index_off;
	h.nentries = ne;
	h.data_off = data_off;
	h.ndata = ndata;
	h.file_size = data_off + ndata * ck->ps;
	h.meta_crc = fli_crc32c(0, meta, meta_len);
	h.header_crc = fli_crc32c(0, &h, sizeof(h));
	memcpy(head, &h, sizeof(h));
	w.writeback = false;	/* the fdatasync that follows writes it */
	w.iov[0][0] = (struct iovec){ head, data_off };
	w.niov[0] = 1;
	w.len[0] = data_off;
	w.boff[0] = 0;
	ret = iw_write_slot_sync(&w, 0, 0);
	if (!ret) {
		*id_out = h.image_id;
		ck->last_seq = h.seq;
		WP_STAT_ADD(rt, ckpt_images, 1);
		WP_STAT_ADD(rt, ckpt_pages, ne);
	}
out_cb:
	if (live)
		wp_set_callback(rt, ck->start, NULL, NULL);	/* step 4 */
out_iw:
	iw_fini(&w);
out_live:
	if (live) {
		if (ck->shadow != MAP_FAILED)
			munmap(ck->shadow, ck->len);
		if ((void *)ck->claim != MAP_FAILED)
			munmap((void *)ck->claim, ck->npages);
		ck->shadow = NULL;
		ck->claim = NULL;
	}
	if (head)
		munmap(head, data_off);
	free(ent);
	return ret;
}

FL_EXPORT int fl_ckpt_save(struct fl_ckpt *ck, const char *path, unsigned int flags)
{
	const char *slash, *name;
	size_t dirlen;
	bool full, live;
	uint64_t id = 0;
	int fd, ret;

	if (!ck || !path ||
	    (flags & ~(FL_CKPT_FULL | FL_CKPT_LIVE | FL_CKPT_FSYNC | FL_CKPT_DIRECT)))
		return -EINVAL;
	full = (flags & FL_CKPT_FULL) || !ck->saves || ck->need_full;
	live = flags & FL_CKPT_LIVE;
	if (live && ck->async)
		return -EOPNOTSUPP;	/* WP_ASYNC: no fault reaches a callback */
	slash = strrchr(path, '/');
	name = slash ? slash + 1 : path;
	dirlen = (size_t)(name - path);
	if (!*name || strlen(name) > FLI_MAX_PARENT)
		return -EINVAL;
	if (!full && (strlen(ck->dir) != dirlen || strncmp(ck->dir, path, dirlen)))
		return -EXDEV;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = save_locked(ck, fd, flags, full, live, &id);
	if (!ret && (flags & FL_CKPT_FSYNC) && fdatasync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (ret) {
		unlink(path);
		/* the dirty set was consumed (re-armed): only a full image is
		 * right next time */
		ck->need_full = true;
		return ret;
	}
	if (full) {
		/* malloc, not strndup: the shim routes the runtime's own
		 * malloc/free to one allocator, and strndup's would be the
		 * program's */
		char *d = malloc(dirlen + 1);

		if (d) {
			memcpy(d, path, dirlen);
			d[dirlen] = '\0';
		}
		if (!d) {
			ck->need_full = true;
			return 0;	/* the image is fine; the chain restarts */
		}
		free(ck->dir);
		ck->dir = d;
	}
	strcpy(ck->last_name, name);
	ck->last_id = id;
	ck->saves++;
	ck->need_full = false;
	return 0;
}

/* ---- restore ---- */

static uint32_t sys_page_size(void)
{
	return (uint32_t)sysconf(_SC_PAGESIZE);
}

FL_EXPORT int fl_image_check(const char *path, size_t *len)
{
	struct fli_chain c;
	void *scratch;
	int ret;

	if (!path)
		return -EINVAL;
	ret = fli_chain_open(&c, path, sys_page_size());
	if (ret)
		return ret;
	scratch = malloc(c.page_size);
	ret = scratch ? fli_chain_verify(&c, scratch) : -ENOMEM;
	if (!ret && len)
		*len = c.npages * c.page_size;
	free(scratch);
	fli_chain_close(&c);
	return ret;
}

FL_EXPORT int fl_restore(const char *path, void *addr, size_t len)
{
	struct fli_chain c;
	int ret;

	if (!path || !addr)
		return -EINVAL;
	ret = fli_chain_open(&c, path, sys_page_size());
	if (ret)
		return ret;
	if (len != c.npages * c.page_size || ((uintptr_t)addr & (c.page_size - 1))) {
		fli_chain_close(&c);
		return -EINVAL;
	}
	/* runs of up to 4 MiB straight into @addr: a base image is one run */
	for (uint64_t p = 0, done = 0; p < c.npages && !ret; p += done)
		ret = fli_chain_read_run(&c, p, (4u << 20) / c.page_size,
					 (uint8_t *)addr + p * c.page_size, &done);
	fli_chain_close(&c);
	return ret;
}

/* working-set file: a header, then u32 page numbers in first-touch order */
#define WS_MAGIC "FLWSET\r\n"
struct ws_header {
	uint8_t magic[8];
	uint32_t version;
	uint32_t page_size;
	uint64_t npages;
	uint64_t count;
	uint32_t data_crc;
	uint32_t header_crc;
};

struct fl_lazy {
	struct fl_runtime *rt;
	void *addr;
	size_t len;
	struct fli_chain chain;
	uint32_t *order;
	_Atomic uint64_t norder;
	_Atomic uint8_t *seen;
	uint32_t *ws;
	uint64_t nws;
	pthread_t pf;
	bool pf_started;
	_Atomic bool pf_stop;
};

/*
 * The fill pager. Context: a handler thread, or in an in-thread region the
 * faulting thread's SIGBUS handler: async-signal-safe (pread(2), a CRC,
 * atomics), and never touches managed memory.
 */
static int lazy_fill(void *arg, uint64_t off, void *dst, size_t len)
{
	struct fl_lazy *lz = arg;
	uint32_t ps = lz->chain.page_size;

	for (size_t o = 0; o < len; o += ps) {
		uint64_t p = (off + o) / ps;
		uint8_t z = 0;
		int ret = fli_chain_read_page(&lz->chain, p, (uint8_t *)dst + o);

		if (ret)
			return ret;
		/* first touch: record its place in the working-set order */
		if (atomic_compare_exchange_strong_explicit(&lz->seen[p], &z, 1,
				memory_order_relaxed, memory_order_relaxed)) {
			uint64_t i = atomic_fetch_add_explicit(&lz->norder, 1, memory_order_relaxed);

			if (i < lz->chain.npages)
				__atomic_store_n(&lz->order[i], (uint32_t)p, __ATOMIC_RELAXED);
		}
	}
	return 0;
}

struct pf_ext {
	uint32_t img;
	uint64_t off;
};

static int pf_ext_cmp(const void *a, const void *b)
{
	const struct pf_ext *x = a, *y = b;

	if (x->img != y->img)
		return x->img < y->img ? -1 : 1;
	return (x->off > y->off) - (x->off < y->off);
}

/* read-ahead runs closer than this merge: one sequential read is cheaper */
#define PF_GAP (128u << 10)

/*
 * The working set's data, read ahead in file order: its pages are spread
 * over the image in page order, and the program touches them in its own
 * order, so faults alone read them one random 4 KiB block at a time, one
 * after the other. Sorted and merged, they are a few large reads queued
 * at once (POSIX_FADV_WILLNEED does not wait for them); the faults that
 * follow find the page cache warm. This is REAP's point: fetch the
 * working set in bulk, not page by page.
 */
static void prefetch_readahead(struct fl_lazy *lz)
{
	const struct fli_chain *c = &lz->chain;
	struct pf_ext *x = malloc(lz->nws * sizeof(*x) + 1);
	uint64_t n = 0;

	if (!x)
		return;		/* only an optimisation */
	for (uint64_t i = 0; i < lz->nws; i++) {
		uint32_t pg = lz->ws[i];

		if (!c->who[pg] || c->ent[pg]->flags != FLI_E_DATA)
			continue;
		x[n].img = c->who[pg] - 1;
		x[n].off = c->img[x[n].img].h.data_off + c->ent[pg]->slot * c->page_size;
		n++;
	}
	qsort(x, n, sizeof(*x), pf_ext_cmp);
	for (uint64_t i = 0; i < n;) {
		uint64_t j = i + 1, end = x[i].off + c->page_size;

		while (j < n && x[j].img == x[i].img && x[j].off <= end + PF_GAP)
			end = x[j++].off + c->page_size;
		if (atomic_load_explicit(&lz->pf_stop, memory_order_relaxed))
			break;
		(void)posix_fadvise(c->img[x[i].img].fd, (off_t)x[i].off,
				    (off_t)(end - x[i].off), POSIX_FADV_WILLNEED);
		i = j;
	}
	free(x);
}

/* prefetch: read the working set ahead, then touch it in its order (faults fill it) */
static void *prefetch_main(void *arg)
{
	struct fl_lazy *lz = arg;
	uint32_t ps = lz->chain.page_size;

	prefetch_readahead(lz);
	for (uint64_t i = 0; i < lz->nws; i++) {
		if (atomic_load_explicit(&lz->pf_stop, memory_order_relaxed))
			break;
		(void)*(volatile const uint8_t *)((const uint8_t *)lz->addr +
						  (size_t)lz->ws[i] * ps);
	}
	return NULL;
}

static int ws_load(struct fl_lazy *lz, const char *path)
{
	struct ws_header h;
	struct stat st;
	uint32_t crc;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int ret = -EBADMSG;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size < sizeof(h) ||
	    pread(fd, &h, sizeof(h), 0) != sizeof(h))
		goto out;
	crc = h.header_crc;
	h.header_crc = 0;
	if (memcmp(h.magic, WS_MAGIC, 8) || h.version != 1 ||
	    fli_crc32c(0, &h, sizeof(h)) != crc || h.page_size != lz->chain.page_size ||
	    h.npages != lz->chain.npages || h.count > h.npages ||
	    (uint64_t)st.st_size != sizeof(h) + h.count * 4)
		goto out;
	lz->ws = malloc(h.count ? h.count * 4 : 1);
	if (!lz->ws) {
		ret = -ENOMEM;
		goto out;
	}
	if (h.count && pread(fd, lz->ws, h.count * 4, sizeof(h)) != (ssize_t)(h.count * 4))
		goto out;
	if (fli_crc32c(0, lz->ws, h.count * 4) != h.data_crc)
		goto out;
	for (uint64_t i = 0; i < h.count; i++)
		if (lz->ws[i] >= h.npages)
			goto out;
	lz->nws = h.count;
	ret = 0;
out:
	close(fd);
	return ret;
}

FL_EXPORT int fl_restore_lazy(struct fl_runtime *rt, const char *path, const char *ws_path,
			      unsigned int flags, struct fl_lazy **out, void **addr)
{
	struct fl_region_opts ro;
	struct fl_lazy *lz;
	int ret;

	if (!rt || !path || !out || !addr)
		return -EINVAL;
	lz = calloc(1, sizeof(*lz));
	if (!lz)
		return -ENOMEM;
	lz->rt = rt;
	ret = fli_chain_open(&lz->chain, path, (uint32_t)rt->page_size);
	if (ret) {
		free(lz);
		return ret;
	}
	lz->len = lz->chain.npages * lz->chain.page_size;
	if (lz->chain.npages > UINT32_MAX) {
		ret = -EOVERFLOW;
		goto err;
	}
	lz->order = mmap(NULL, lz->chain.npages * 4, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	lz->seen = mmap(NULL, lz->chain.npages, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (lz->order == MAP_FAILED || (void *)lz->seen == MAP_FAILED) {
		ret = -ENOMEM;
		goto err;
	}
	if (ws_path) {
		ret = ws_load(lz, ws_path);
		if (ret)
			goto err;
	}
	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_FILL;
	ro.fill = lazy_fill;
	ro.fill_arg = lz;
	ro.flags = flags | FL_REGION_FILL_SIGNAL_SAFE;
	ret = fl_region_map(rt, lz->len, &ro, &lz->addr);
	if (ret)
		goto err;
	if (lz->nws)
		lz->pf_started = !pthread_create(&lz->pf, NULL, prefetch_main, lz);
	*out = lz;
	*addr = lz->addr;
	return 0;
err:
	lz->addr = NULL;
	fl_lazy_destroy(lz);
	return ret;
}

FL_EXPORT int fl_lazy_ws_save(struct fl_lazy *lz, const char *ws_path)
{
	struct ws_header h;
	uint32_t *order;
	uint64_t n;
	int fd, ret;

	if (!lz || !ws_path)
		return -EINVAL;
	n = atomic_load_explicit(&lz->norder, memory_order_acquire);
	if (n > lz->chain.npages)
		n = lz->chain.npages;
	/* handlers may still append: copy what is there with atomic loads
	 * (a slot claimed but not yet stored reads 0, a valid page number) */
	order = malloc(n ? n * 4 : 1);
	if (!order)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++)
		order[i] = __atomic_load_n(&lz->order[i], __ATOMIC_RELAXED);
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, WS_MAGIC, 8);
	h.version = 1;
	h.page_size = lz->chain.page_size;
	h.npages = lz->chain.npages;
	h.count = n;
	h.data_crc = fli_crc32c(0, order, n * 4);
	h.header_crc = fli_crc32c(0, &h, sizeof(h));
	fd = open(ws_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		free(order);
		return -errno;
	}
	ret = write_all(fd, &h, sizeof(h), 0);
	if (!ret)
		ret = write_all(fd, order, n * 4, sizeof(h));
	free(order);
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (ret)
		unlink(ws_path);
	return ret;
}

FL_EXPORT void fl_lazy_destroy(struct fl_lazy *lz)
{
	if (!lz)
		return;
	if (lz->pf_started) {
		atomic_store_explicit(&lz->pf_stop, true, memory_order_relaxed);
		pthread_join(lz->pf, NULL);
	}
	if (lz->addr)
		fl_region_unregister(lz->rt, lz->addr);
	if (lz->order && lz->order != MAP_FAILED)
		munmap(lz->order, lz->chain.npages * 4);
	if (lz->seen && (void *)lz->seen != MAP_FAILED)
		munmap((void *)lz->seen, lz->chain.npages);
	free(lz->ws);
	fli_chain_close(&lz->chain);
	free(lz);
}
