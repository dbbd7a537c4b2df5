/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * uffd.c - open, probe and thin ioctl wrappers. See uffd.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd.h"

static bool open_fallback_errno(int err)
{
	return err == ENOENT || err == EACCES || err == EPERM;
}

/* Open one raw uffd (no UFFDIO_API yet). */
static int uffd_open_raw(bool user_only, enum fl_open_method *method)
{
	int fd, dev, err = EPERM;

	if (!user_only) {
		dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
			err = errno;
			close(dev);
			if (fd >= 0) {
				*method = FL_OPEN_DEV;
				return fd;
			}
		} else {
			err = errno;
		}
		if (!open_fallback_errno(err))
			return -err;
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
		if (fd >= 0) {
			*method = FL_OPEN_SYSCALL;
			return fd;
		}
		err = errno;
		if (err == ENOSYS || !open_fallback_errno(err))
			return -err;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	*method = FL_OPEN_SYSCALL_USER_ONLY;
	return fd;
}

static int uffd_api(int fd, uint64_t features, uint64_t *granted)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	*granted = api.features;
	return 0;
}

/*
 * Which range ioctls does an anonymous MISSING registration offer? Probe on a
 * private page of our own: the answer is what the kernel will give every
 * region.
 */
static int uffd_probe_ioctls(struct fl_uffd *u)
{
	long pg = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	if (p == MAP_FAILED)
		return -errno;
	ret = uffd_register(u, (uintptr_t)p, (size_t)pg,
			    UFFDIO_REGISTER_MODE_MISSING, &u->ioctls);
	if (!ret)
		ret = uffd_unregister(u, (uintptr_t)p, (size_t)pg);
	munmap(p, (size_t)pg);
	return ret;
}

int uffd_open(struct fl_uffd *u, bool user_only, uint64_t want)
{
	enum fl_open_method m;
	uint64_t all = 0;
	int fd, ret;

	memset(u, 0, sizeof(*u));
	u->fd = -1;

	/*
	 * UFFDIO_API may be called once per uffd, and asking for a feature the
	 * kernel lacks fails the whole call: ask a throw-away uffd for the
	 * list (features = 0 reports them all), then enable what we want of it.
	 */
	fd = uffd_open_raw(user_only, &m);
	if (fd < 0)
		return fd;
	ret = uffd_api(fd, 0, &all);
	close(fd);
	if (ret < 0)
		return ret;

	fd = uffd_open_raw(user_only, &m);
	if (fd < 0)
		return fd;
	ret = uffd_api(fd, want & all, &u->features);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	/*
	 * UFFDIO_API writes back every feature the kernel *supports*, not the
	 * ones it enabled on this uffd (exactly those asked for). Record the
	 * enabled set: uffd_has(WP_ASYNC) must not be true merely because the
	 * kernel could do it. WP_ASYNC implies WP_UNPOPULATED (the kernel adds it).
	 */
	u->features = want & all;
	if (u->features & UFFD_FEATURE_WP_ASYNC)
		u->features |= UFFD_FEATURE_WP_UNPOPULATED & all;
	u->fd = fd;
	u->method = m;
	u->kernel_features = all;
	ret = uffd_probe_ioctls(u);
	if (ret < 0) {
		uffd_close(u);
		return ret;
	}
	return 0;
}

void uffd_close(struct fl_uffd *u)
{
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

int uffd_register(const struct fl_uffd *u, uintptr_t start, size_t len,
		  uint64_t modes, uint64_t *ioctls)
{
	struct uffdio_register r = {
		.range = { .start = start, .len = len },
		.mode = modes,
	};

	if (ioctl(u->fd, UFFDIO_REGISTER, &r) < 0)
		return -errno;
	if (ioctls)
		*ioctls = r.ioctls;
	return 0;
}

int uffd_unregister(const struct fl_uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	return ioctl(u->fd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

/*
 * The kernel stores bytes done (or -errno) in the struct's last field; on
 * failure part of the range may be done. Report that part exactly.
 */
static size_t progress(int64_t v)
{
	return v > 0 ? (size_t)v : 0;
}

int uffd_copy(const struct fl_uffd *u, uintptr_t dst, const void *src,
	      size_t len, uint64_t mode, size_t *done)
{
	struct uffdio_copy c = {
		.dst = dst, .src = (uintptr_t)src, .len = len, .mode = mode,
	};
	int ret = ioctl(u->fd, UFFDIO_COPY, &c) < 0 ? -errno : 0;

	*done = ret ? progress(c.copy) : len;
	return ret;
}

int uffd_zeropage(const struct fl_uffd *u, uintptr_t dst, size_t len,
		  uint64_t mode, size_t *done)
{
	struct uffdio_zeropage z = {
		.range = { .start = dst, .len = len }, .mode = mode,
	};
	int ret = ioctl(u->fd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;

	*done = ret ? progress(z.zeropage) : len;
	return ret;
}

int uffd_continue(const struct fl_uffd *u, uintptr_t dst, size_t len,
		  uint64_t mode, size_t *done)
{
	struct uffdio_continue c = {
		.range = { .start = dst, .len = len }, .mode = mode,
	};
	int ret = ioctl(u->fd, UFFDIO_CONTINUE, &c) < 0 ? -errno : 0;

	*done = ret ? progress(c.mapped) : len;
	return ret;
}

int uffd_move(const struct fl_uffd *u, uintptr_t dst, uintptr_t src,
	      size_t len, uint64_t mode, size_t *done)
{
	struct uffdio_move m = { .dst = dst, .src = src, .len = len, .mode = mode };
	int ret;

	if (!uffd_has(u, UFFD_FEATURE_MOVE)) {
		*done = 0;
		return -EOPNOTSUPP;
	}
	ret = ioctl(u->fd, UFFDIO_MOVE, &m) < 0 ? -errno : 0;
	*done = ret ? progress(m.move) : len;
	return ret;
}

int uffd_writeprotect(const struct fl_uffd *u, uintptr_t start, size_t len,
		      bool wp, bool dontwake)
{
	struct uffdio_writeprotect w = {
		.range = { .start = start, .len = len },
		.mode = (wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
			(dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0),
	};

	return ioctl(u->fd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

int uffd_poison(const struct fl_uffd *u, uintptr_t start, size_t len,
		uint64_t mode, size_t *done)
{
	struct uffdio_poison p = {
		.range = { .start = start, .len = len }, .mode = mode,
	};
	int ret;

	if (!uffd_has(u, UFFD_FEATURE_POISON)) {
		*done = 0;
		return -EOPNOTSUPP;
	}
	ret = ioctl(u->fd, UFFDIO_POISON, &p) < 0 ? -errno : 0;
	*done = ret ? progress(p.updated) : len;
	return ret;
}

int uffd_wake(const struct fl_uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	return ioctl(u->fd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}
