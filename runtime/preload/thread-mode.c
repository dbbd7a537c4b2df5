/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * thread-mode.c - what an unmodified program needs when its faults are
 * resolved in the thread that takes them (FAULTLINE_RESOLVE=thread|auto).
 *
 * The runtime's SIGBUS handler must stay installed and reachable:
 *  - sigaction() and signal() for SIGBUS do not replace it: the program's
 *    handler becomes the one it passes foreign SIGBUS signals to
 *    (fl_sigbus_chain());
 *  - sigprocmask() and pthread_sigmask() never block SIGBUS, nor does the
 *    mask of any handler the program installs: a SIGBUS the kernel forces
 *    while it is blocked kills the process.
 * And system calls must not meet never-touched pages, where a kernel-mode
 * access fails with EFAULT instead of faulting: the read, write, recv,
 * send, fread and fwrite families (and the _unlocked stdio calls, which
 * coreutils makes) make their buffers present first
 * (fl_prefault(), which touches only in-thread regions' missing pages).
 *
 * What this cannot reach: calls glibc makes internally (fread's refills of
 * its own small buffer go to glibc's __read, but that buffer is below
 * FAULTLINE_MIN_REGION and so not managed), raw syscall(2), io_uring, and
 * the other system calls that take a buffer (getdents, epoll_wait, ...).
 * That is why the mode is not the shim's default.
 */
/* both pread and pread64 are defined below: no renaming of one to the other
 * (off_t is 64 bits on every LP64 target either way) */
#undef _FILE_OFFSET_BITS
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "faultline.h"
#include "thread-mode.h"

/* <stdio.h> makes them macros when optimizing: the functions are wanted */
#undef fread_unlocked
#undef fwrite_unlocked

#define SHIM_EXPORT __attribute__((visibility("default")))

static _Atomic bool on;

void shim_thread_mode_set(bool enable)
{
	atomic_store_explicit(&on, enable, memory_order_release);
}

static bool active(void)
{
	return atomic_load_explicit(&on, memory_order_acquire) && !shim_bypass();
}

/*
 * The next definitions, looked up all at once with the next allocator
 * (preload.c nx_resolve(), at the first allocation or in the constructor),
 * not at the first call: a dlsym() while a dl error string of the
 * program's is pending frees that string with glibc's free() (jemalloc
 * made it: abort). One looked up on its own is one called before that.
 */
#define NEXT_NAMES(X) X(sigaction) X(signal) X(sigprocmask) X(pthread_sigmask) \
	X(read) X(write) X(pread) X(pread64) X(pwrite) X(pwrite64) X(readv) X(writev) \
	X(preadv) X(pwritev) X(recv) X(recvfrom) X(send) X(sendto) X(recvmsg) X(sendmsg) \
	X(fread) X(fwrite) X(fread_unlocked) X(fwrite_unlocked)

enum {
#define X(n) N_##n,
	NEXT_NAMES(X)
#undef X
	N_NR
};

static const char *const next_names[N_NR] = {
#define X(n) #n,
	NEXT_NAMES(X)
#undef X
};
static void *next_fns[N_NR];

void shim_thread_mode_resolve(void)
{
	for (int i = 0; i < N_NR; i++)
		if (!__atomic_load_n(&next_fns[i], __ATOMIC_ACQUIRE))
			__atomic_store_n(&next_fns[i], shim_next_sym(next_names[i]),
					 __ATOMIC_RELEASE);
}

static void *next_fn(int i)
{
	void *f = __atomic_load_n(&next_fns[i], __ATOMIC_ACQUIRE);

	if (!f) {	/* racing threads find the same */
		f = shim_next_sym(next_names[i]);
		__atomic_store_n(&next_fns[i], f, __ATOMIC_RELEASE);
	}
	return f;
}

#define NEXT(type, name) ((__typeof__(type))next_fn(N_##name))

/* ---- signals ---- */

SHIM_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	struct sigaction copy;

	if (active()) {
		if (sig == SIGBUS && fl_sigbus_chain(act, old) == 0)
			return 0;
		if (act && sigismember(&act->sa_mask, SIGBUS)) {
			copy = *act;
			sigdelset(&copy.sa_mask, SIGBUS);
			act = &copy;
		}
	}
	return NEXT(int (*)(int, const struct sigaction *, struct sigaction *), sigaction)(
		sig, act, old);
}

SHIM_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction sa, old;

	if (sig == SIGBUS && active()) {
		/* signal()'s BSD semantics, as glibc gives them */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = handler;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaddset(&sa.sa_mask, sig);
		sigdelset(&sa.sa_mask, SIGBUS);
		if (fl_sigbus_chain(&sa, &old) == 0)
			return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)(void *)old.sa_sigaction :
							     old.sa_handler;
	}
	return NEXT(sighandler_t (*)(int, sighandler_t), signal)(sig, handler);
}

static const sigset_t *keep_sigbus(int how, const sigset_t *set, sigset_t *copy)
{
	if (!set || how == SIG_UNBLOCK || !sigismember(set, SIGBUS) || !active())
		return set;
	*copy = *set;
	sigdelset(copy, SIGBUS);
	return copy;
}

SHIM_EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;

	return NEXT(int (*)(int, const sigset_t *, sigset_t *), sigprocmask)(
		how, keep_sigbus(how, set, &copy), old);
}

SHIM_EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;

	return NEXT(int (*)(int, const sigset_t *, sigset_t *), pthread_sigmask)(
		how, keep_sigbus(how, set, &copy), old);
}

/* ---- system calls on buffers ---- */

static void prefault(const void *buf, size_t len)
{
	if (active())
		fl_prefault(buf, len);
}

static void prefault_iov(const struct iovec *iov, int n)
{
	if (!active() || !iov)
		return;
	for (int i = 0; i < n; i++)
		fl_prefault(iov[i].iov_base, iov[i].iov_len);
}

/* stdio's @n items of @size bytes (a product that overflows touches nothing) */
static void prefault_items(const void *buf, size_t size, size_t n)
{
	if (size && n <= SIZE_MAX / size)
		prefault(buf, size * n);
}

SHIM_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, void *, size_t), read)(fd, buf, n);
}

SHIM_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, const void *, size_t), write)(fd, buf, n);
}

SHIM_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, void *, size_t, off_t), pread)(fd, buf, n, off);
}

SHIM_EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, void *, size_t, off_t), pread64)(fd, buf, n, off);
}

SHIM_EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, const void *, size_t, off_t), pwrite)(fd, buf, n, off);
}

SHIM_EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, const void *, size_t, off_t), pwrite64)(fd, buf, n, off);
}

SHIM_EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	prefault_iov(iov, n);
	return NEXT(ssize_t (*)(int, const struct iovec *, int), readv)(fd, iov, n);
}

SHIM_EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	prefault_iov(iov, n);
	return NEXT(ssize_t (*)(int, const struct iovec *, int), writev)(fd, iov, n);
}

SHIM_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int n, off_t off)
{
	prefault_iov(iov, n);
	return NEXT(ssize_t (*)(int, const struct iovec *, int, off_t), preadv)(fd, iov, n, off);
}

SHIM_EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	prefault_iov(iov, n);
	return NEXT(ssize_t (*)(int, const struct iovec *, int, off_t), pwritev)(fd, iov, n, off);
}

SHIM_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, void *, size_t, int), recv)(fd, buf, n, flags);
}

SHIM_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a,
			     socklen_t *alen)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, void *, size_t, int, struct sockaddr *, socklen_t *),
		    recvfrom)(fd, buf, n, flags, a, alen);
}

SHIM_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, const void *, size_t, int), send)(fd, buf, n, flags);
}

SHIM_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
			   const struct sockaddr *a, socklen_t alen)
{
	prefault(buf, n);
	return NEXT(ssize_t (*)(int, const void *, size_t, int, const struct sockaddr *,
				socklen_t), sendto)(fd, buf, n, flags, a, alen);
}

SHIM_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	if (m)
		prefault_iov(m->msg_iov, (int)m->msg_iovlen);
	return NEXT(ssize_t (*)(int, struct msghdr *, int), recvmsg)(fd, m, flags);
}

SHIM_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	if (m)
		prefault_iov(m->msg_iov, (int)m->msg_iovlen);
	return NEXT(ssize_t (*)(int, const struct msghdr *, int), sendmsg)(fd, m, flags);
}

SHIM_EXPORT size_t fread(void *buf, size_t size, size_t n, FILE *f)
{
	prefault_items(buf, size, n);
	return NEXT(size_t (*)(void *, size_t, size_t, FILE *), fread)(buf, size, n, f);
}

SHIM_EXPORT size_t fwrite(const void *buf, size_t size, size_t n, FILE *f)
{
	prefault_items(buf, size, n);
	return NEXT(size_t (*)(const void *, size_t, size_t, FILE *), fwrite)(buf, size, n, f);
}

SHIM_EXPORT size_t fread_unlocked(void *buf, size_t size, size_t n, FILE *f)
{
	prefault_items(buf, size, n);
	return NEXT(size_t (*)(void *, size_t, size_t, FILE *), fread_unlocked)(buf, size, n, f);
}

SHIM_EXPORT size_t fwrite_unlocked(const void *buf, size_t size, size_t n, FILE *f)
{
	prefault_items(buf, size, n);
	return NEXT(size_t (*)(const void *, size_t, size_t, FILE *), fwrite_unlocked)(buf, size,
											  n, f);
}
