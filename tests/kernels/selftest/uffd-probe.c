/*
 * uffd-probe: a tiny, self-contained userfaultfd smoke test that also reports
 * what the running kernel offers.  It is the stock-kernel runner's own check
 * that the guest works (tests/kernels/run.sh always runs it first), and its
 * "# uffd-probe:" line records each kernel's feature bits in the log.
 *
 * TAP on stdout; exit 0 pass, 1 fail, 77 skip (no userfaultfd at all).
 *   1  UFFDIO_API handshake (prints the kernel's feature bits)
 *   2  UFFDIO_REGISTER of an anonymous page, MISSING mode (prints ioctls)
 *   3  a missing fault in that page, resolved from a handler thread with
 *      UFFDIO_COPY; the faulting thread reads back the bytes that were copied
 *   4  synchronous write-protect on anonymous memory (the mechanism faultline
 *      falls back to without WP_ASYNC): a write to a protected page faults
 *      with UFFD_PAGEFAULT_FLAG_WP, the handler un-protects it, the write lands
 *   5  NFAULTS missing faults in a row, each resolved with UFFDIO_COPY; prints
 *      the time per fault round trip (how slow this kernel/emulator is)
 *
 * Built with the distribution's headers, which may be older than the kernel
 * under test (Debian 12 ships 6.1 headers), so newer constants are local.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef __NR_userfaultfd
#define __NR_userfaultfd 323
#endif

static const char *const feature_names[] = {
	"PAGEFAULT_FLAG_WP", "EVENT_FORK", "EVENT_REMAP", "EVENT_REMOVE",
	"MISSING_HUGETLBFS", "MISSING_SHMEM", "EVENT_UNMAP", "SIGBUS",
	"THREAD_ID", "MINOR_HUGETLBFS", "MINOR_SHMEM", "EXACT_ADDRESS",
	"WP_HUGETLBFS_SHMEM", "WP_UNPOPULATED", "POISON", "WP_ASYNC", "MOVE",
};
/* _UFFDIO_* command numbers, i.e. bit positions in uffdio_register.ioctls */
static const char *const ioctl_names[] = {
	[0x00] = "REGISTER", [0x01] = "UNREGISTER", [0x02] = "WAKE",
	[0x03] = "COPY", [0x04] = "ZEROPAGE", [0x05] = "MOVE",
	[0x06] = "WRITEPROTECT", [0x07] = "CONTINUE", [0x08] = "POISON",
	[0x3f] = "API",
};

static int ntest;
static int failed;

static void tap(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tap(int ok, const char *fmt, ...)
{
	va_list ap;
	printf("%sok %d - ", ok ? "" : "not ", ++ntest);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (!ok)
		failed = 1;
}

static void print_bits(const char *what, uint64_t v, const char *const *names, size_t n)
{
	printf("# %s:", what);
	for (size_t i = 0; i < 64; i++)
		if (v & (1ull << i)) {
			if (i < n && names[i])
				printf(" %s", names[i]);
			else
				printf(" bit%zu", i);
		}
	putchar('\n');
}

static long page;

struct handler_arg {
	int uffd;
	int mode;           /* 0: resolve MISSING with COPY, 1: resolve WP */
	char *src;          /* page-sized source for UFFDIO_COPY */
	int result;         /* 0 ok, else errno-ish */
	uint64_t flags;     /* pagefault flags of the event seen */
	uint64_t address;
};

static void *handler(void *p)
{
	struct handler_arg *a = p;
	struct pollfd pfd = { .fd = a->uffd, .events = POLLIN };
	struct uffd_msg msg;

	a->result = -1;
	if (poll(&pfd, 1, 10000) != 1) {
		a->result = ETIMEDOUT;
		return NULL;
	}
	if (read(a->uffd, &msg, sizeof msg) != (ssize_t)sizeof msg) {
		a->result = errno;
		return NULL;
	}
	if (msg.event != UFFD_EVENT_PAGEFAULT) {
		a->result = EPROTO;
		return NULL;
	}
	a->flags = msg.arg.pagefault.flags;
	a->address = msg.arg.pagefault.address;
	uint64_t base = a->address & ~(uint64_t)(page - 1);
	if (a->mode == 0) {
		struct uffdio_copy c = { .dst = base, .src = (uintptr_t)a->src, .len = page };
		if (ioctl(a->uffd, UFFDIO_COPY, &c) != 0) {
			a->result = errno;
			return NULL;
		}
	} else {
		struct uffdio_writeprotect wp = { .range = { base, page }, .mode = 0 };
		if (ioctl(a->uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
			a->result = errno;
			return NULL;
		}
	}
	a->result = 0;
	return NULL;
}

struct multi_arg {
	int uffd;
	char *src;
	int n, done, result;
};

static void *multi_handler(void *p)
{
	struct multi_arg *m = p;
	struct pollfd pfd = { .fd = m->uffd, .events = POLLIN };
	struct uffd_msg msg;

	while (m->done < m->n) {
		if (poll(&pfd, 1, 10000) != 1) {
			m->result = ETIMEDOUT;
			return NULL;
		}
		ssize_t r = read(m->uffd, &msg, sizeof msg);
		if (r < 0 && errno == EAGAIN)
			continue;
		if (r != (ssize_t)sizeof msg || msg.event != UFFD_EVENT_PAGEFAULT) {
			m->result = EPROTO;
			return NULL;
		}
		uint64_t base = msg.arg.pagefault.address & ~(uint64_t)(page - 1);
		struct uffdio_copy c = { .dst = base, .src = (uintptr_t)m->src, .len = page };
		if (ioctl(m->uffd, UFFDIO_COPY, &c) != 0 && errno != EEXIST) {
			m->result = errno;
			return NULL;
		}
		m->done++;
	}
	return NULL;
}

static int open_uffd(uint64_t *features)
{
	int fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (features)
		*features = api.features;
	return fd;
}

int main(void)
{
	struct utsname u;
	uint64_t features = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(60); /* never hang the guest, even if the kernel misbehaves */
	page = sysconf(_SC_PAGESIZE);
	uname(&u);
	printf("1..5\n");

	int uffd = open_uffd(&features);
	if (uffd < 0) {
		printf("# userfaultfd/UFFDIO_API: %s\n", strerror(-uffd));
		if (uffd == -ENOSYS) {
			printf("# SKIP kernel %s has no userfaultfd\n", u.release);
			return 77;
		}
		tap(0, "UFFDIO_API");
		return 1;
	}
	printf("# uffd-probe: kernel=%s features=0x%llx\n", u.release,
	       (unsigned long long)features);
	print_bits("features", features, feature_names,
		   sizeof feature_names / sizeof *feature_names);
	tap(1, "UFFDIO_API features=0x%llx", (unsigned long long)features);

	/* 2: register one anonymous page for MISSING faults */
	char *area = mmap(NULL, page, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *src = mmap(NULL, page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED || src == MAP_FAILED) {
		perror("# mmap");
		return 1;
	}
	struct uffdio_register reg = {
		.range = { (uintptr_t)area, page },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int rok = ioctl(uffd, UFFDIO_REGISTER, &reg) == 0;
	if (!rok)
		printf("# UFFDIO_REGISTER: %s\n", strerror(errno));
	else {
		printf("# uffd-probe: anon-missing-ioctls=0x%llx\n", (unsigned long long)reg.ioctls);
		print_bits("anon MISSING ioctls", reg.ioctls, ioctl_names,
			   sizeof ioctl_names / sizeof *ioctl_names);
	}
	tap(rok && (reg.ioctls & (1ull << _UFFDIO_COPY)),
	    "UFFDIO_REGISTER anonymous MISSING ioctls=0x%llx", (unsigned long long)reg.ioctls);

	/* 3: fault it in from this thread, resolve with UFFDIO_COPY from another */
	if (rok) {
		for (long i = 0; i < page; i++)
			src[i] = (char)(i * 7 + 3);
		struct handler_arg a = { .uffd = uffd, .mode = 0, .src = src };
		pthread_t t;
		pthread_create(&t, NULL, handler, &a);
		volatile char *v = area;
		long bad = -1;
		for (long i = 0; i < page; i++)
			if (v[i] != (char)(i * 7 + 3)) {
				bad = i;
				break;
			}
		pthread_join(t, NULL);
		if (a.result)
			printf("# handler: %s\n", strerror(a.result));
		if (bad >= 0)
			printf("# byte %ld differs\n", bad);
		tap(a.result == 0 && bad < 0 && a.address >= (uintptr_t)area &&
			    a.address < (uintptr_t)area + page,
		    "missing fault resolved with UFFDIO_COPY, bytes match");
	} else {
		tap(0, "missing fault resolved with UFFDIO_COPY (not registered)");
	}

	/* 4: synchronous write-protect on a populated anonymous page */
	if (!(features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
		printf("ok %d - # SKIP no UFFD_FEATURE_PAGEFAULT_FLAG_WP\n", ++ntest);
	} else {
		int wfd = open_uffd(NULL);
		char *w = mmap(NULL, page, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		memset(w, 0x5a, page); /* populate before protecting */
		struct uffdio_register wr = {
			.range = { (uintptr_t)w, page },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};
		int ok = wfd >= 0 && w != MAP_FAILED && ioctl(wfd, UFFDIO_REGISTER, &wr) == 0;
		if (!ok)
			printf("# WP register: %s\n", strerror(errno));
		struct uffdio_writeprotect wp = {
			.range = { (uintptr_t)w, page },
			.mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};
		if (ok && ioctl(wfd, UFFDIO_WRITEPROTECT, &wp) != 0) {
			printf("# UFFDIO_WRITEPROTECT: %s\n", strerror(errno));
			ok = 0;
		}
		if (ok) {
			struct handler_arg a = { .uffd = wfd, .mode = 1 };
			pthread_t t;
			pthread_create(&t, NULL, handler, &a);
			((volatile char *)w)[100] = 0x11; /* blocks until un-protected */
			pthread_join(t, NULL);
			if (a.result)
				printf("# WP handler: %s\n", strerror(a.result));
			ok = a.result == 0 && (a.flags & UFFD_PAGEFAULT_FLAG_WP) &&
			     w[100] == 0x11 && w[99] == 0x5a;
		}
		tap(ok, "synchronous write-protect fault resolved, write landed");
	}

	/* 5: fault round trips, one page at a time */
	enum { NFAULTS = 2000 };
	char *many = mmap(NULL, NFAULTS * page, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct uffdio_register mr = {
		.range = { (uintptr_t)many, NFAULTS * page },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (many == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &mr) != 0) {
		tap(0, "%d missing faults (setup: %s)", NFAULTS, strerror(errno));
	} else {
		struct multi_arg m = { .uffd = uffd, .src = src, .n = NFAULTS };
		pthread_t t;
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pthread_create(&t, NULL, multi_handler, &m);
		long bad = 0;
		for (long i = 0; i < NFAULTS; i++)
			bad += ((volatile char *)many)[i * page + 5] != src[5];
		pthread_join(t, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3;
		printf("# uffd-probe: missing-fault+copy round trip %.1f us (%d faults)\n",
		       us / NFAULTS, NFAULTS);
		tap(m.result == 0 && bad == 0 && m.done == NFAULTS,
		    "%d missing faults resolved with UFFDIO_COPY, %.1f us each", NFAULTS,
		    us / NFAULTS);
	}
	return failed ? 1 : 0;
}
