/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bare.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#define BARE_BATCH 64

struct bare_handler {
	pthread_t th;
	struct bare *b;
	int cpu;
	bool started;
	uint64_t msgs;
	uint64_t errors;
};

struct bare {
	int uffd;
	bool sig;			/* in-thread: UFFD_FEATURE_SIGBUS, no handlers */
	size_t ps;
	void *zero;			/* one zeroed page: COPY's source */
	char *doorbell;			/* one registered page per handler */
	unsigned int nbells;		/* doorbell pages mapped */
	unsigned int nh;		/* handlers running */
	atomic_bool stop;
	struct bare_handler h[];
};

int bare_uffd_open(const char **how)
{
	int dev, fd;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
		close(dev);
		if (fd >= 0) {
			if (how)
				*how = "dev";
			return fd;
		}
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd >= 0) {
		if (how)
			*how = "syscall";
		return fd;
	}
	if (errno != EPERM)
		return -errno;
	/* unprivileged_userfaultfd=0: only user-mode faults are allowed; ours are */
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	if (how)
		*how = "syscall-user-only";
	return fd;
}

static int bare_wake(struct bare *b, uint64_t addr)
{
	struct uffdio_range r = { .start = addr, .len = b->ps };

	return ioctl(b->uffd, UFFDIO_WAKE, &r) ? -errno : 0;
}

/*
 * Resolve one page. EEXIST: another message for the same page was served
 * first (two threads touching one page); the kernel did not wake us, so wake.
 * EAGAIN cannot come without non-cooperative events, which we never enable,
 * but retrying is the right answer if it ever does.
 */
static int bare_resolve(struct bare *b, uint64_t addr, bool write)
{
	int ret;

	for (;;) {
		if (write) {
			struct uffdio_copy c = {
				.dst = addr, .src = (uint64_t)(uintptr_t)b->zero,
				.len = b->ps, .mode = 0,
			};
			ret = ioctl(b->uffd, UFFDIO_COPY, &c);
		} else {
			struct uffdio_zeropage z = {
				.range = { .start = addr, .len = b->ps }, .mode = 0,
			};
			ret = ioctl(b->uffd, UFFDIO_ZEROPAGE, &z);
		}
		if (!ret)
			return 0;
		if (errno == EAGAIN)
			continue;
		/* in-thread, nobody sleeps on the page: the access just retries */
		if (errno == EEXIST)
			return b->sig ? 0 : bare_wake(b, addr);
		return -errno;
	}
}

/*
 * A handler never exits except on its doorbell: if it died while a thread
 * was blocked on a fault, that thread would hang forever. So read errors
 * are counted and the loop goes on.
 */
static void *bare_handler_main(void *arg)
{
	struct bare_handler *h = arg;
	struct bare *b = h->b;
	struct uffd_msg msg[BARE_BATCH];
	uint64_t door_lo = (uint64_t)(uintptr_t)b->doorbell;
	uint64_t door_hi = door_lo + (uint64_t)b->nbells * b->ps;
	bool rang = false;

	if (h->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(h->cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
			h->errors++;
	}
	while (!rang) {
		ssize_t n = read(b->uffd, msg, sizeof(msg));
		size_t i, cnt;

		if (n < 0) {
			if (errno != EINTR && errno != EAGAIN) {
				struct timespec ts = { 0, 1000000 };

				h->errors++;
				nanosleep(&ts, NULL);
			}
			continue;
		}
		cnt = (size_t)n / sizeof(msg[0]);
		for (i = 0; i < cnt; i++) {
			uint64_t addr;
			bool write;

			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			addr = msg[i].arg.pagefault.address & ~((uint64_t)b->ps - 1);
			write = msg[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE;
			if (addr >= door_lo && addr < door_hi) {
				/* serve it, then leave once the batch is done */
				if (bare_resolve(b, addr, false))
					h->errors++;
				if (atomic_load_explicit(&b->stop, memory_order_acquire))
					rang = true;
				continue;
			}
			h->msgs++;
			if (bare_resolve(b, addr, write)) {
				h->errors++;
				/* let the faulting thread retry rather than hang */
				bare_wake(b, addr);
			}
		}
	}
	return NULL;
}

/*
 * In-thread: the fault raises SIGBUS in the faulting thread, whose handler
 * resolves it with the same ioctl and returns; the access runs again and
 * finds the page. Nothing is handed to another thread and nobody is woken.
 * One such loop at a time: the handler finds it here.
 */
static struct bare *_Atomic sig_bare;
static struct sigaction sig_old;
static _Atomic uint64_t sig_errors;
/* faults this thread resolved in its handler: the kernel counts none of them */
static __thread uint64_t sig_faults;

uint64_t bare_thread_faults(void)
{
	return sig_faults;
}

static void sig_default(void)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	sigaction(SIGBUS, &dfl, NULL);
}

static void bare_sigbus(int sig, siginfo_t *si, void *ucv)
{
	struct bare *b = atomic_load_explicit(&sig_bare, memory_order_acquire);
	const ucontext_t *uc = ucv;
	int saved = errno;
	bool write = true;
	uint64_t addr;

	(void)sig;
	(void)uc;
	/*
	 * Not a missing page of ours (a kill(), a truncated file mapping, a
	 * failed resolve): the default action, taken when the access runs
	 * again, ends the process where the program's own fault was.
	 */
	if (!b || si->si_code != BUS_ADRERR) {
		sig_default();
		return;
	}
	addr = (uint64_t)(uintptr_t)si->si_addr & ~((uint64_t)b->ps - 1);
#if defined(__x86_64__)
	/* the page-fault error code: bit 1 set for a write */
	write = uc->uc_mcontext.gregs[REG_ERR] & 2;
#endif
	if (bare_resolve(b, addr, write)) {
		atomic_fetch_add_explicit(&sig_errors, 1, memory_order_relaxed);
		sig_default();
	} else {
		sig_faults++;
	}
	errno = saved;
}

int bare_register(struct bare *b, void *addr, size_t len)
{
	struct uffdio_register reg = {
		.range = { .start = (uint64_t)(uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	const uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) |
			      (1ull << _UFFDIO_WAKE);

	if (ioctl(b->uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	if ((reg.ioctls & need) != need) {
		bare_unregister(b, addr, len);
		return -EOPNOTSUPP;
	}
	return 0;
}

int bare_unregister(struct bare *b, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uint64_t)(uintptr_t)addr, .len = len };

	return ioctl(b->uffd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

int bare_open(unsigned int handlers, const int *cpus, struct bare **out,
	      const char **how)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	struct bare *b;
	unsigned int i;
	int ret;

	if (!handlers || !out)
		return -EINVAL;
	b = calloc(1, sizeof(*b) + handlers * sizeof(b->h[0]));
	if (!b)
		return -ENOMEM;
	b->nh = handlers;
	b->nbells = handlers;
	b->ps = (size_t)sysconf(_SC_PAGESIZE);
	b->zero = MAP_FAILED;
	b->doorbell = MAP_FAILED;
	atomic_init(&b->stop, false);
	b->uffd = bare_uffd_open(how);
	if (b->uffd < 0) {
		ret = b->uffd;
		goto err_free;
	}
	if (ioctl(b->uffd, UFFDIO_API, &api)) {
		ret = -errno;
		goto err_close;
	}
	b->zero = mmap(NULL, b->ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (b->zero == MAP_FAILED) {
		ret = -errno;
		goto err_close;
	}
	b->doorbell = mmap(NULL, handlers * b->ps, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->doorbell == MAP_FAILED) {
		ret = -errno;
		goto err_close;
	}
	ret = bare_register(b, b->doorbell, handlers * b->ps);
	if (ret)
		goto err_close;
	for (i = 0; i < handlers; i++) {
		b->h[i].b = b;
		b->h[i].cpu = cpus ? cpus[i] : -1;
		ret = -pthread_create(&b->h[i].th, NULL, bare_handler_main, &b->h[i]);
		if (ret)
			goto err_stop;
		b->h[i].started = true;
	}
	*out = b;
	return 0;

err_stop:
	/* ring only as many doorbells as there are handlers running */
	b->nh = i;
	bare_close(b, NULL, NULL);
	return ret;
err_close:
	if (b->doorbell != MAP_FAILED)
		munmap(b->doorbell, handlers * b->ps);
	if (b->zero != MAP_FAILED)
		munmap(b->zero, b->ps);
	close(b->uffd);
err_free:
	free(b);
	return ret;
}

int bare_open_thread(struct bare **out, const char **how)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_SIGBUS };
	struct sigaction sa = { .sa_sigaction = bare_sigbus, .sa_flags = SA_SIGINFO };
	struct bare *b, *none = NULL;
	int ret;

	if (!out)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->sig = true;
	b->ps = (size_t)sysconf(_SC_PAGESIZE);
	b->doorbell = MAP_FAILED;
	b->uffd = bare_uffd_open(how);
	if (b->uffd < 0) {
		ret = b->uffd;
		goto err_free;
	}
	if (ioctl(b->uffd, UFFDIO_API, &api)) {
		ret = errno == EINVAL ? -EOPNOTSUPP : -errno;
		goto err_close;
	}
	b->zero = mmap(NULL, b->ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (b->zero == MAP_FAILED) {
		ret = -errno;
		goto err_close;
	}
	if (!atomic_compare_exchange_strong(&sig_bare, &none, b)) {
		ret = -EBUSY;
		goto err_unmap;
	}
	/* a SIGBUS while the handler runs is one it could not serve: default */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &sig_old)) {
		ret = -errno;
		atomic_store(&sig_bare, NULL);
		goto err_unmap;
	}
	*out = b;
	return 0;

err_unmap:
	munmap(b->zero, b->ps);
err_close:
	close(b->uffd);
err_free:
	free(b);
	return ret;
}

void bare_close(struct bare *b, uint64_t *msgs, uint64_t *errors)
{
	uint64_t m = 0, e = 0;
	unsigned int i;

	if (!b)
		return;
	if (b->sig) {
		/* no thread faults on our ranges any more (the contract) */
		sigaction(SIGBUS, &sig_old, NULL);
		atomic_store(&sig_bare, NULL);
		if (msgs)
			*msgs = 0;
		if (errors)
			*errors = atomic_exchange(&sig_errors, 0);
		munmap(b->zero, b->ps);
		close(b->uffd);
		free(b);
		return;
	}
	atomic_store_explicit(&b->stop, true, memory_order_release);
	/*
	 * One doorbell per handler, one at a time: each touch blocks until a
	 * live handler serves it, and that handler then leaves, so the next
	 * touch is read by another one. No handler stays blocked in read().
	 */
	for (i = 0; i < b->nh; i++)
		(void)*(volatile char *)(b->doorbell + i * b->ps);
	for (i = 0; i < b->nh; i++) {
		if (!b->h[i].started)
			continue;
		pthread_join(b->h[i].th, NULL);
		m += b->h[i].msgs;
		e += b->h[i].errors;
	}
	if (msgs)
		*msgs = m;
	if (errors)
		*errors = e;
	munmap(b->doorbell, (size_t)b->nbells * b->ps);
	munmap(b->zero, b->ps);
	close(b->uffd);
	free(b);
}
