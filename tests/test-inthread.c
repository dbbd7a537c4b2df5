// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-inthread.c - faults resolved by the faulting thread (SIGBUS mode):
 * the hard parts, each by what a user would check.
 *
 *  1. options: what is refused, and with which errno
 *  2. bytes: zero and copy pagers (a partial last page), four threads at
 *     random, every fault counted as in-thread
 *  3. one runtime, both modes: a handler region beside an in-thread one;
 *     two runtimes: each resolves its own regions' faults (the kernel lets
 *     any uffd of a process install into any registered range)
 *  4. the program's SIGBUS handler, installed first: a sent SIGBUS and a
 *     real one (a file mapping past its end) reach it
 *  5. a small alternate signal stack (with a guard page under it)
 *  6. a fault inside another signal handler
 *  7. kernel-mode accesses: read(2) into and write(2) from a never-touched
 *     page fail EFAULT and change nothing; touched first, they work
 *  8. SIGBUS blocked: the process dies of SIGBUS (the documented outcome),
 *     it does not hang and reads no wrong byte
 *  9. the program changes its mappings: MADV_DONTNEED, mremap, munmap
 * 10. fork: the child has the parent's bytes; the parent goes on faulting
 * 11. threads that fault once and exit, many of them
 * 12. far memory: what is refused (a store whose read is not signal-safe,
 *     eviction without MOVE); 4x the budget written and read back with
 *     every fault in-thread (page-ins, evictions, dirty tracking); a
 *     read(2) into a clean (write-protected) page fails EFAULT, and works
 *     after fl_prefault()
 * 13. a signal that lands while the thread pages in (its store read raises
 *     it) and whose handler reads the very page: delivered once the page is
 *     in, not into a fault on a page its own thread holds
 * 14. write protection: fl_protect()'s callback runs once per page, in the
 *     writing thread, on the old contents; read(2) into an armed page fails
 *     EFAULT and works after fl_prefault(); dirty tracking loses no write
 *     while two threads write and collections re-arm pages under them
 * 15. a fill callback marked signal-safe: it runs in the faulting thread,
 *     may block (others wait for its page), and a fill error reaches the
 *     program's SIGBUS handler as the poisoned page's signal
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faultline.h"
#include "tap.h"
#include "common.h"

static size_t page_size;
static struct fl_runtime *rt;

static uint64_t stat_of(struct fl_runtime *r, size_t off)
{
	struct fl_stats st = { .size = sizeof(st) };

	fl_stats_get(r, &st);
	return *(uint64_t *)((char *)&st + off);
}
#define STAT(r, f) stat_of((r), offsetof(struct fl_stats, f))

static struct fl_runtime *thread_runtime(enum fl_resolve mode)
{
	struct fl_runtime_opts o;

	fl_runtime_opts_init(&o);
	o.resolve = mode;
	o.handlers = 2;
	return tap_runtime(&o);
}

/* ---- 1: options ---- */

static void case_options(void)
{
	struct fl_runtime_opts o;
	struct fl_region_opts ro;
	struct fl_runtime *h, *x = NULL;
	void *p = NULL;

	fl_runtime_opts_init(&o);
	o.resolve = FL_RESOLVE_THREAD;
	o.tiers = FL_TIERS_GLOBAL;
	TAP_EQ(fl_runtime_create(&o, &x), -EINVAL);
	o.tiers = FL_TIERS_ADAPTIVE;
	o.resolve = (enum fl_resolve)7;
	TAP_EQ(fl_runtime_create(&o, &x), -EINVAL);
	setenv("FAULTLINE_RESOLVE", "sideways", 1);
	fl_runtime_opts_init(&o);
	TAP_EQ(fl_runtime_create(&o, &x), -EINVAL);
	unsetenv("FAULTLINE_RESOLVE");

	fl_runtime_opts_init(&o);
	o.resolve = FL_RESOLVE_HANDLER;
	h = tap_runtime(&o);
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_THREAD;
	TAP_EQ(fl_region_map(h, page_size, &ro, &p), -EINVAL);
	fl_runtime_destroy(h);

	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_THREAD | FL_REGION_HANDLER;
	TAP_EQ(fl_region_map(rt, page_size, &ro, &p), -EINVAL);
	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_FILL;
	ro.fill = (fl_fill_fn)1;	/* never called: refused first */
	ro.flags = FL_REGION_THREAD;
	TAP_EQ(fl_region_map(rt, page_size, &ro, &p), -EOPNOTSUPP);
	tap_ok(fl_region_count(rt) == 0, "1: nothing refused left a region behind (%d)",
	       fl_region_count(rt));
}

/* ---- 2: bytes ---- */

struct toucher {
	pthread_t t;
	volatile uint8_t *p;
	size_t pages;
	unsigned int seed;
	size_t writes;
};

static void *random_writes(void *arg)
{
	struct toucher *t = arg;

	for (size_t i = 0; i < t->pages; i++) {
		size_t pg = (size_t)rand_r(&t->seed) % t->pages;

		/* every thread writes the same function of the page: races agree */
		__atomic_store_n(&t->p[pg * page_size + pg % 97], (uint8_t)(pg * 7 + 1),
				 __ATOMIC_RELAXED);
		t->writes++;
	}
	return NULL;
}

static void case_bytes(void)
{
	const size_t pages = 2048, len = pages * page_size;
	const size_t src_len = 37 * page_size + 1234;	/* a partial last page */
	uint8_t *src = malloc(src_len);
	struct toucher t[4];
	struct fl_region_opts ro;
	volatile uint8_t *z, *c;
	uint64_t f0 = STAT(rt, faults), th0 = STAT(rt, faults_thread);
	size_t bad = 0, zeros = 0;

	pat_fill(3, 0, src, src_len);
	TAP_EQ(fl_region_map(rt, len, NULL, (void **)&z), 0);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct toucher){ .p = z, .pages = pages, .seed = 17u + (unsigned)i };
		pthread_create(&t[i].t, NULL, random_writes, &t[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i].t, NULL);
	for (size_t pg = 0; pg < pages; pg++) {
		uint8_t v = z[pg * page_size + pg % 97];

		zeros += z[pg * page_size + (pg % 97) + 1] == 0;
		bad += v != 0 && v != (uint8_t)(pg * 7 + 1);
	}
	tap_ok(!bad && zeros == pages,
	       "2: zero pager, 4 threads at random: written bytes right (%zu bad), the rest zeros (%zu of %zu)",
	       bad, zeros, pages);
	tap_ok(STAT(rt, faults) > f0 && STAT(rt, faults) - f0 == STAT(rt, faults_thread) - th0,
	       "2: every fault resolved in its thread (%llu faults, %llu in-thread)",
	       (unsigned long long)(STAT(rt, faults) - f0),
	       (unsigned long long)(STAT(rt, faults_thread) - th0));

	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_COPY;
	ro.src = src;
	ro.src_len = src_len;
	ro.fault_around = page_size;
	TAP_EQ(fl_region_map(rt, 64 * page_size, &ro, (void **)&c), 0);
	bad = pat_bad(3, 0, c + 0, src_len);
	for (size_t o = src_len; o < 64 * page_size; o += 511)
		bad += c[o] != 0;
	tap_ok(!bad, "2: copy pager: the source's bytes, a partial last page, zeros after (%zu bad)",
	       bad);
	TAP_EQ(fl_region_unregister(rt, (void *)z), 0);
	TAP_EQ(fl_region_unregister(rt, (void *)c), 0);
	free(src);
}

/* ---- 3: both modes, two runtimes ---- */

static void case_mixed(void)
{
	const size_t len = 32 * page_size;
	uint8_t *src = malloc(len), *src2 = malloc(len);
	struct fl_region_opts ro;
	struct fl_runtime *rt2 = thread_runtime(FL_RESOLVE_THREAD);
	volatile uint8_t *h, *a, *b;
	uint64_t th0 = STAT(rt, faults_thread), f0 = STAT(rt, faults);
	size_t bad;

	pat_fill(5, 0, src, len);
	pat_fill(6, 0, src2, len);
	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_COPY;
	ro.src = src;
	ro.src_len = len;
	ro.fault_around = page_size;
	ro.flags = FL_REGION_HANDLER;
	TAP_EQ(fl_region_map(rt, len, &ro, (void **)&h), 0);
	ro.flags = 0;
	TAP_EQ(fl_region_map(rt, len, &ro, (void **)&a), 0);
	ro.src = src2;
	TAP_EQ(fl_region_map(rt2, len, &ro, (void **)&b), 0);
	/* interleaved, so that each runtime sees the other's faults first */
	bad = 0;
	for (size_t i = 0; i < 32; i++) {
		bad += b[i * page_size + 9] != src2[i * page_size + 9];
		bad += a[i * page_size + 9] != src[i * page_size + 9];
		bad += h[i * page_size + 9] != src[i * page_size + 9];
	}
	tap_ok(!bad, "3: a handler region, an in-thread one, and another runtime's: all bytes right (%zu bad)",
	       bad);
	tap_ok(STAT(rt, faults) - f0 == 64 && STAT(rt, faults_thread) - th0 == 32 &&
	       STAT(rt2, faults_thread) == 32,
	       "3: 32 handler and 32 in-thread faults here, 32 in-thread in the other runtime (%llu, %llu, %llu)",
	       (unsigned long long)(STAT(rt, faults) - f0),
	       (unsigned long long)(STAT(rt, faults_thread) - th0),
	       (unsigned long long)STAT(rt2, faults_thread));
	fl_region_unregister(rt, (void *)h);
	fl_region_unregister(rt, (void *)a);
	fl_runtime_destroy(rt2);
	free(src);
	free(src2);
}

/* ---- 4: the program's SIGBUS handler ---- */

static sigjmp_buf prog_env;
static volatile sig_atomic_t prog_calls, prog_code, prog_jump;

static void prog_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	prog_calls++;
	prog_code = si->si_code;
	if (prog_jump)
		siglongjmp(prog_env, 1);
}

static void case_chain(void)
{
	char path[] = "/tmp/fl-inthread-XXXXXX";
	uint64_t ch0 = STAT(rt, thread_chained);
	volatile uint8_t *f, *z;
	int fd = mkstemp(path);
	bool jumped = false;

	prog_calls = 0;
	prog_jump = 0;
	raise(SIGBUS);
	tap_ok(prog_calls == 1 && prog_code == SI_TKILL,
	       "4: a SIGBUS sent with raise() reaches the program's handler (%d calls)",
	       (int)prog_calls);

	/* a mapping of a file past its end: the kernel's own SIGBUS, BUS_ADRERR */
	unlink(path);
	if (fd < 0 || ftruncate(fd, 0) < 0) {
		tap_skip("no temporary file");
		tap_skip("(same)");
	} else {
		f = mmap(NULL, page_size, PROT_READ, MAP_SHARED, fd, 0);
		prog_jump = 1;
		if (sigsetjmp(prog_env, 1) == 0)
			(void)f[0];
		else
			jumped = true;
		prog_jump = 0;
		tap_ok(jumped && prog_calls == 2 && prog_code == BUS_ADRERR,
		       "4: a real SIGBUS (a file mapping past its end) reaches it too (code %d)",
		       (int)prog_code);
		tap_ok(STAT(rt, thread_chained) - ch0 >= 1, "4: counted as passed on (%llu)",
		       (unsigned long long)(STAT(rt, thread_chained) - ch0));
		munmap((void *)f, page_size);
	}
	if (fd >= 0)
		close(fd);
	/* and our own faults do not */
	TAP_EQ(fl_region_map(rt, 8 * page_size, NULL, (void **)&z), 0);
	z[0] = 1;
	z[5 * page_size] = 2;
	tap_ok(prog_calls == 2 && z[0] == 1 && z[5 * page_size] == 2,
	       "4: faults of the runtime never reach the program's handler (%d calls)",
	       (int)prog_calls);
	fl_region_unregister(rt, (void *)z);
}

/* ---- 5: a small alternate signal stack ---- */

struct altstack_arg {
	volatile uint8_t *p;
	size_t pages, size, used;
	bool ok;
};

static void *on_altstack(void *arg)
{
	struct altstack_arg *a = arg;
	/* one guard page under the stack: an overflow is a SIGSEGV, not a scribble */
	uint8_t *m = mmap(NULL, a->size + page_size, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	stack_t ss = { .ss_sp = m + page_size, .ss_size = a->size };
	struct sigaction sa;
	size_t untouched = 0;

	if (m == MAP_FAILED)
		return NULL;
	mprotect(m, page_size, PROT_NONE);
	memset(m + page_size, 0xa5, a->size);
	sigaltstack(&ss, NULL);
	/* our handler runs on the alternate stack (SA_ONSTACK) */
	sigaction(SIGBUS, NULL, &sa);
	a->ok = (sa.sa_flags & SA_ONSTACK) != 0;
	for (size_t i = 0; i < a->pages; i++)
		a->p[i * page_size] = (uint8_t)i;
	for (size_t i = 0; i < a->pages; i++)
		a->ok &= a->p[i * page_size] == (uint8_t)i;
	ss.ss_flags = SS_DISABLE;
	sigaltstack(&ss, NULL);
	while (untouched < a->size && m[page_size + untouched] == 0xa5)
		untouched++;
	a->used = a->size - untouched;
	munmap(m, a->size + page_size);
	return NULL;
}

static void case_altstack(void)
{
	struct altstack_arg a = { .pages = 64 };
	long min = sysconf(_SC_MINSIGSTKSZ);
	pthread_t t;

	/* the kernel's signal frame (sysconf), and 2 KiB for the handler;
	 * sanitizer builds' frames are several times larger */
	a.size = (size_t)(min > 0 ? min : MINSIGSTKSZ) + 2048;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	a.size += 64 << 10;
#endif
	a.size = (a.size + 15) & ~(size_t)15;
	TAP_EQ(fl_region_map(rt, a.pages * page_size, NULL, (void **)&a.p), 0);
	pthread_create(&t, NULL, on_altstack, &a);
	pthread_join(t, NULL);
	tap_ok(a.ok, "5: faults on an alternate signal stack of %zu bytes: bytes right", a.size);
	tap_diag("alternate stack: %zu of %zu bytes used (the kernel's frame included)",
		 a.used, a.size);
	fl_region_unregister(rt, (void *)a.p);
}

/* ---- 6: a fault inside another signal handler ---- */

static volatile uint8_t *usr1_page;
static volatile int usr1_got = -1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_page[100] = 0x5a;		/* a never-touched page: a SIGBUS in here */
	usr1_got = usr1_page[100];
}

static void case_nested(void)
{
	struct sigaction sa, old;
	volatile uint8_t *p;

#if defined(__SANITIZE_THREAD__)
	/* TSan runs an asynchronous signal's handler later, from its own code,
	 * with every signal blocked: a SIGBUS in it is fatal there only */
	tap_skip("6: TSan delivers SIGUSR1 with all signals blocked");
	tap_skip("(same)");
	return;
#endif
	TAP_EQ(fl_region_map(rt, 4 * page_size, NULL, (void **)&p), 0);
	usr1_page = p + 2 * page_size;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, &old);
	raise(SIGUSR1);
	sigaction(SIGUSR1, &old, NULL);
	tap_ok(usr1_got == 0x5a, "6: a fault inside a SIGUSR1 handler is resolved (0x%02x)",
	       usr1_got);
	fl_region_unregister(rt, (void *)p);
}

/* ---- 7: kernel-mode accesses ---- */

static void case_syscalls(void)
{
	uint8_t msg[300];
	volatile uint8_t *p;
	int fds[2];
	ssize_t got;
	int err;

	memset(msg, 0x3c, sizeof(msg));
	TAP_EQ(fl_region_map(rt, 4 * page_size, NULL, (void **)&p), 0);
	if (pipe(fds)) {
		tap_skip("no pipe");
		return;
	}
	if (write(fds[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		tap_diag("short write");
	errno = 0;
	got = read(fds[0], (void *)(p + page_size + 10), sizeof(msg));
	err = errno;
	tap_ok(got == -1 && err == EFAULT && p[page_size + 10] == 0,
	       "7: read(2) into a never-touched page fails EFAULT and writes nothing (%zd, %s)",
	       got, strerror(err));
	errno = 0;
	got = write(fds[1], (const void *)(p + 3 * page_size), 16);
	err = errno;
	tap_ok(got == -1 && err == EFAULT,
	       "7: write(2) from a never-touched page fails EFAULT (%zd, %s)", got, strerror(err));
	p[page_size] = 0;	/* touched: the page is in */
	got = read(fds[0], (void *)(p + page_size + 10), sizeof(msg));
	tap_ok(got == (ssize_t)sizeof(msg) && p[page_size + 10] == 0x3c &&
	       p[page_size + 10 + sizeof(msg) - 1] == 0x3c,
	       "7: once the page was touched, the same read(2) works (%zd)", got);
	close(fds[0]);
	close(fds[1]);
	fl_region_unregister(rt, (void *)p);
}

/* ---- 8: SIGBUS blocked ---- */

static void case_blocked(void)
{
	int status = 0;
	pid_t pid;

#if defined(__SANITIZE_THREAD__)
	tap_skip("8: TSan cannot start threads in a child of a threaded process");
	return;
#endif
	pid = fork();
	if (pid == 0) {
		struct fl_runtime *c = thread_runtime(FL_RESOLVE_THREAD);
		volatile uint8_t *p;
		sigset_t s;

		if (fl_region_map(c, page_size, NULL, (void **)&p))
			_exit(2);
		sigemptyset(&s);
		sigaddset(&s, SIGBUS);
		pthread_sigmask(SIG_BLOCK, &s, NULL);
		p[0] = 1;	/* the kernel forces SIGBUS with the default action */
		_exit(p[0] == 1 ? 3 : 4);
	}
	waitpid(pid, &status, 0);
	tap_ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
	       "8: a thread with SIGBUS blocked dies of SIGBUS on an in-thread fault (status 0x%x)",
	       status);
}

/* ---- 9: the program changes its mappings ---- */

static void case_mappings(void)
{
	const size_t len = 16 * page_size;
	uint8_t *src = malloc(len);
	struct fl_region_opts ro;
	volatile uint8_t *p, *q;
	void *dst;
	size_t bad = 0;
	int n0;

	pat_fill(9, 0, src, len);
	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_COPY;
	ro.src = src;
	ro.src_len = len;
	ro.fault_around = page_size;
	TAP_EQ(fl_region_map(rt, len, &ro, (void **)&p), 0);
	n0 = fl_region_count(rt);
	p[0] = 0xee;
	(void)p[page_size];
	madvise((void *)p, 2 * page_size, MADV_DONTNEED);
	tap_ok(p[0] == 0 && p[page_size + 5] == 0 && p[2 * page_size + 5] == src[2 * page_size + 5],
	       "9: MADV_DONTNEED: the dropped pages read zeros, the next one its source");
	dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	q = mremap((void *)p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	/* touched at once: the REMAP may still be on its way to the index */
	bad = q == MAP_FAILED;
	for (size_t i = 2; !bad && i < 16; i++)
		bad += q[i * page_size + 77] != src[i * page_size + 77];
	tap_ok(!bad && q[0] == 0, "9: mremap: the moved region faults at its new place, bytes right (%zu bad)",
	       bad);
	munmap((void *)q, len);
	for (int i = 0; i < 1000 && fl_region_count(rt) != n0 - 1; i++)
		ms_sleep(1);
	tap_ok(fl_region_count(rt) == n0 - 1, "9: munmap: the region leaves the runtime (%d regions)",
	       fl_region_count(rt));
	free(src);
}

/* ---- 10: fork ---- */

static void case_fork(void)
{
	const size_t len = 16 * page_size;
	uint8_t *src = malloc(len);
	struct fl_region_opts ro;
	volatile uint8_t *c, *z;
	int status = 0;
	pid_t pid;

	pat_fill(11, 0, src, len);
	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_COPY;
	ro.src = src;
	ro.src_len = len;
	TAP_EQ(fl_region_map(rt, len, &ro, (void **)&c), 0);
	TAP_EQ(fl_region_map(rt, len, NULL, (void **)&z), 0);
	z[0] = 0x42;
	pid = fork();
	if (pid == 0) {
		size_t bad = pat_bad(11, 0, c, len);

		bad += z[0] != 0x42 || z[3 * page_size] != 0;
		_exit(bad ? 1 : 0);
	}
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "10: the child of fork reads the parent's bytes (status 0x%x)", status);
	z[5 * page_size] = 7;
	tap_ok(z[5 * page_size] == 7 && pat_bad(11, 0, c, len) == 0,
	       "10: the parent goes on faulting in its threads");
	fl_region_unregister(rt, (void *)c);
	fl_region_unregister(rt, (void *)z);
	free(src);
}

/* ---- 11: threads that come and go ---- */

static void *one_fault(void *arg)
{
	struct toucher *t = arg;

	t->p[t->pages * page_size] = (uint8_t)(t->pages + 1);
	return NULL;
}

static void case_threads(void)
{
	const size_t n = 300;
	volatile uint8_t *p;
	size_t bad = 0;

	TAP_EQ(fl_region_map(rt, n * page_size, NULL, (void **)&p), 0);
	for (size_t i = 0; i < n; i++) {
		struct toucher t = { .p = p, .pages = i };

		pthread_create(&t.t, NULL, one_fault, &t);
		pthread_join(t.t, NULL);
	}
	for (size_t i = 0; i < n; i++)
		bad += p[i * page_size] != (uint8_t)(i + 1);
	tap_ok(!bad, "11: %zu threads, each faulting once and exiting: bytes right (%zu bad)", n, bad);
	fl_region_unregister(rt, (void *)p);
}

/* ---- 12: far memory ---- */

static int never_read(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg; (void)off; (void)buf; (void)len;
	return -EIO;
}

static int never_write(void *arg, uint64_t off, const void *buf, size_t len)
{
	(void)arg; (void)off; (void)buf; (void)len;
	return -EIO;
}

#define FAR_PAGES	512
#define FAR_BUDGET	64

/*
 * Read the other pages of a FAR_PAGES region until its first page is out
 * of memory (mincore(2)): a bound, not a timing assertion, for the evictor
 * may be slow to run on a busy machine.
 */
static void first_page_out(volatile uint8_t *p)
{
	for (int i = 0; i < 2000 && pages_out((const void *)p, 1) == 0; i++) {
		for (size_t pg = 1; pg < FAR_PAGES; pg++)
			(void)p[pg * page_size];
		usleep(1000);
	}
}

static void case_far(void)
{
	struct fl_store_ops ops = { .size = sizeof(ops), .read = never_read, .write = never_write };
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_runtime_opts o;
	struct fl_runtime *f = NULL;
	struct fl_store *cb = NULL, *mem = NULL;
	volatile uint8_t *p;
	size_t bad = 0;
	uint8_t msg[64];
	ssize_t got;
	int fds[2], err;

	ops.flags = 1u << 7;
	TAP_EQ(fl_store_callbacks_create(&ops, NULL, &cb), -EINVAL);
	ops.flags = 0;
	TAP_EQ(fl_store_callbacks_create(&ops, NULL, &cb), 0);
	TAP_EQ(fl_store_memory_create(&mem), 0);
	fl_runtime_opts_init(&o);
	o.resolve = FL_RESOLVE_THREAD;
	o.store = cb;
	o.budget = FAR_BUDGET * page_size;
	TAP_EQ(fl_runtime_create(&o, &f), -EOPNOTSUPP);
	o.resolve = FL_RESOLVE_AUTO;
	f = tap_runtime(&o);
	fl_features(f, &ft);
	tap_ok(!ft.inthread, "12: auto with a store whose read is not signal-safe: handler threads");
	fl_runtime_destroy(f);
	fl_features(rt, &ft);
	o.resolve = FL_RESOLVE_THREAD;
	o.store = mem;
	o.flags = FL_RT_EVICT_NO_MOVE;
	TAP_EQ(fl_runtime_create(&o, &f), -EOPNOTSUPP);
	o.flags = 0;
	if (!ft.move) {
		for (int i = 0; i < 7; i++)
			tap_skip("12: no UFFDIO_MOVE: far memory stays on handler threads");
		fl_store_destroy(cb);
		fl_store_destroy(mem);
		return;
	}
	f = tap_runtime(&o);
	TAP_EQ(fl_region_map(f, FAR_PAGES * page_size, NULL, (void **)&p), 0);
	for (size_t pg = 0; pg < FAR_PAGES; pg++)
		p[pg * page_size + pg % 61] = (uint8_t)(pg * 5 + 3);
	/* read back (clean, write-protected), then written again (dirty) */
	for (int round = 0; round < 3; round++)
		for (size_t pg = 0; pg < FAR_PAGES; pg++) {
			bad += p[pg * page_size + pg % 61] != (uint8_t)(pg * 5 + 3) ||
			       p[pg * page_size + 64 + pg % 61] != (round == 2 ? (uint8_t)pg : 0);
			if (round == 1)
				p[pg * page_size + 64 + pg % 61] = (uint8_t)pg;
		}
	tap_ok(bad == 0 && STAT(f, far_evictions) > 0 && STAT(f, far_pageins) > 0,
	       "12: 4x the budget written, evicted and read back right (%zu bad, %llu "
	       "evictions, %llu page-ins)", bad, (unsigned long long)STAT(f, far_evictions),
	       (unsigned long long)STAT(f, far_pageins));
	tap_ok(STAT(f, faults) == STAT(f, faults_thread) && STAT(f, far_wp_faults) > 0,
	       "12: every fault in-thread (%llu of %llu), dirty tracking too (%llu)",
	       (unsigned long long)STAT(f, faults_thread), (unsigned long long)STAT(f, faults),
	       (unsigned long long)STAT(f, far_wp_faults));

	/*
	 * A page read back is clean: write-protected. Page 0 was written in
	 * round 1: once it is out, the pin reads it back clean.
	 */
	first_page_out(p);
	memset(msg, 0x5a, sizeof(msg));
	TAP_EQ(fl_pin(f, (void *)p, page_size), 0);
	if (pipe(fds)) {
		for (int i = 0; i < 3; i++)
			tap_skip("no pipe");
	} else {
		if (write(fds[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
			tap_diag("short write");
		errno = 0;
		got = read(fds[0], (void *)(p + 200), sizeof(msg));
		err = errno;
		tap_ok(got == -1 && err == EFAULT && p[200] == 0,
		       "12: read(2) into a clean far page fails EFAULT (%zd, %s)", got, strerror(err));
		TAP_EQ(fl_prefault((const void *)p, page_size), 0);
		got = read(fds[0], (void *)(p + 200), sizeof(msg));
		tap_ok(got == (ssize_t)sizeof(msg) && p[200] == 0x5a && p[0] == 3,
		       "12: after fl_prefault() it works, the page's bytes kept (%zd)", got);
		close(fds[0]);
		close(fds[1]);
	}
	fl_unpin(f, (void *)p, page_size);
	fl_runtime_destroy(f);
	fl_store_destroy(cb);
	fl_store_destroy(mem);
}

/* ---- 13: a signal in the middle of a page-in ---- */

#define INT_STORE	((size_t)1 << 30)

static char *int_backing;
static volatile uint8_t *int_page;
static volatile int int_armed, int_got = -1;

static int int_read(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	if (off + len > INT_STORE)
		return -EIO;
	memcpy(buf, int_backing + off, len);
	/* raise() is async-signal-safe; the signal lands mid-page-in */
	if (int_armed && !--int_armed)
		raise(SIGUSR2);
	return 0;
}

static int int_write(void *arg, uint64_t off, const void *buf, size_t len)
{
	(void)arg;
	if (off + len > INT_STORE)
		return -EIO;
	memcpy(int_backing + off, buf, len);
	return 0;
}

static void on_usr2(int sig)
{
	(void)sig;
	int_got = int_page[7];		/* the page being read back */
}

static void case_interrupted(void)
{
	struct fl_store_ops ops = { .size = sizeof(ops), .read = int_read, .write = int_write,
				    .flags = FL_STORE_READ_SIGNAL_SAFE };
	struct fl_features ft = { .size = sizeof(ft) };
	struct sigaction sa, old;
	struct fl_runtime_opts o;
	struct fl_runtime *f;
	struct fl_store *st;
	volatile uint8_t *p;
	uint8_t got;

	fl_features(rt, &ft);
#if defined(__SANITIZE_THREAD__)
	tap_skip("13: TSan delivers asynchronous signals from its own code, later");
	return;
#endif
	if (!ft.move) {
		tap_skip("13: no UFFDIO_MOVE: far memory stays on handler threads");
		return;
	}
	int_backing = mmap(NULL, INT_STORE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (int_backing == MAP_FAILED || fl_store_callbacks_create(&ops, NULL, &st)) {
		tap_skip("13: no memory for the store");
		return;
	}
	fl_runtime_opts_init(&o);
	o.resolve = FL_RESOLVE_THREAD;
	o.store = st;
	o.budget = FAR_BUDGET * page_size;
	f = tap_runtime(&o);
	if (fl_region_map(f, FAR_PAGES * page_size, NULL, (void **)&p)) {
		tap_ok(0, "13: fl_region_map");
		goto out;
	}
	for (size_t pg = 0; pg < FAR_PAGES; pg++)
		p[pg * page_size + 7] = (uint8_t)(pg + 11);
	first_page_out(p);
	int_page = p;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, &old);
	int_armed = 1;
	got = p[7];	/* a page-in whose store read raises SIGUSR2 */
	tap_ok(got == 11 && int_got == 11 && int_armed == 0,
	       "13: a signal raised mid-page-in runs after it and reads the page (0x%02x)",
	       int_got);
	sigaction(SIGUSR2, &old, NULL);
	fl_region_unregister(f, (void *)p);
out:
	fl_runtime_destroy(f);
	fl_store_destroy(st);
	munmap(int_backing, INT_STORE);
}

/* ---- 14: write protection ---- */

#define WP_PAGES 64
#define WP_TRACKED 256
#define WP_WRITES 100000
/* on a slow machine (an emulated guest: every write faults, ~10k a second)
 * the writers stop early: the check is that no write is lost, not a count */
#define WP_WRITE_SECONDS 3

static uintptr_t wp_base;
static uint8_t wp_first[WP_PAGES];
static int wp_calls[WP_PAGES];
static pid_t wp_tid[WP_PAGES];

static void wp_cb(void *arg, void *page, size_t len)
{
	size_t p = ((uintptr_t)page - wp_base) / page_size;

	(void)arg;
	(void)len;
	/* signal-safe: plain atomics and gettid */
	__atomic_store_n(&wp_first[p], *(volatile uint8_t *)page, __ATOMIC_RELEASE);
	__atomic_store_n(&wp_tid[p], (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	__atomic_add_fetch(&wp_calls[p], 1, __ATOMIC_RELAXED);
}

struct wp_writer {
	pthread_t t;
	pid_t tid;
	volatile uint8_t *m;
	size_t at;		/* WP_PAGES: the tracked run (random words) */
	unsigned int seed;
};

static _Atomic uint64_t wp_stamp, wp_writes;
static _Atomic int wp_finished, wp_go;

static void *wp_write(void *arg)
{
	struct wp_writer *w = arg;
	struct timespec t0, t;
	size_t i;

	__atomic_store_n(&w->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	if (w->at < WP_PAGES) {
		for (size_t p = 0; p < WP_PAGES; p++)
			w->m[p * page_size + w->at] = (uint8_t)w->at;
		return NULL;
	}
	/* every write a new stamp, into the first word of a random page,
	 * from the first collection on */
	while (!atomic_load(&wp_go))
		sched_yield();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < WP_WRITES; i++) {
		size_t p = (size_t)rand_r(&w->seed) % WP_TRACKED;

		if (i % 1024 == 0 && i) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_sec - t0.tv_sec > WP_WRITE_SECONDS)
				break;
		}
		__atomic_store_n((uint64_t *)(w->m + p * page_size), atomic_fetch_add(&wp_stamp, 1) + 1,
				 __ATOMIC_RELAXED);
	}
	atomic_fetch_add(&wp_writes, i);
	atomic_fetch_add(&wp_finished, 1);
	return NULL;
}

static void case_wp(void)
{
	struct fl_features ft = { .size = sizeof(ft) };
	uint64_t f0 = STAT(rt, faults), th0 = STAT(rt, faults_thread), cb0 = STAT(rt, wp_callbacks);
	uint64_t bm[WP_TRACKED / 64], *seen = calloc(WP_TRACKED, sizeof(uint64_t));
	struct wp_writer w[2];
	struct fl_region_opts ro;
	volatile uint8_t *m, *d;
	size_t bad = 0, once = 0, mine = 0, collects = 0, lost = 0, nd;
	struct timespec t0, t1;
	int fds[2];

	fl_features(rt, &ft);
	if (!ft.wp) {
		for (int i = 0; i < 12; i++)
			tap_skip("14: the kernel has no uffd-wp");
		free(seen);
		return;
	}
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	TAP_EQ(fl_region_map(rt, WP_PAGES * page_size, &ro, (void **)&m), 0);
	for (size_t p = 0; p < WP_PAGES; p += 2)	/* even pages 'A', odd never touched */
		memset((void *)(m + p * page_size), 'A', page_size);
	wp_base = (uintptr_t)m;
	TAP_EQ(fl_protect(rt, (void *)m, WP_PAGES * page_size, wp_cb, NULL), 0);
	for (int i = 0; i < 2; i++) {
		w[i] = (struct wp_writer){ .m = m, .at = 1 + (size_t)i };
		pthread_create(&w[i].t, NULL, wp_write, &w[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(w[i].t, NULL);
	for (size_t p = 0; p < WP_PAGES; p++) {
		pid_t tid = __atomic_load_n(&wp_tid[p], __ATOMIC_ACQUIRE);

		bad += __atomic_load_n(&wp_first[p], __ATOMIC_ACQUIRE) != (p % 2 ? 0 : 'A');
		bad += m[p * page_size + 1] != 1 || m[p * page_size + 2] != 2;
		once += __atomic_load_n(&wp_calls[p], __ATOMIC_RELAXED) == 1;
		mine += tid == w[0].tid || tid == w[1].tid;
	}
	tap_ok(!bad && once == WP_PAGES,
	       "14: one callback per page with two writers (%zu), on the old contents (%zu bad)",
	       once, bad);
	tap_ok(mine == WP_PAGES && STAT(rt, faults) - f0 == STAT(rt, faults_thread) - th0 &&
	       STAT(rt, wp_callbacks) - cb0 == WP_PAGES,
	       "14: every callback ran in the writing thread (%zu of %d), every fault in-thread",
	       mine, WP_PAGES);
	/* armed again, page 0 is write-protected: a system call cannot write it */
	TAP_EQ(fl_dirty_collect(rt, (void *)m, bm, WP_PAGES, &nd), 0);
	if (pipe(fds) == 0) {
		ssize_t r1, r2;
		int e1;

		r1 = write(fds[1], "xyz", 3);
		r2 = read(fds[0], (void *)m, 3);
		e1 = errno;
		TAP_EQ(fl_prefault((const void *)m, 3), 0);
		r2 = r2 < 0 ? (e1 == EFAULT ? -2 : -1) : r2;
		r1 = read(fds[0], (void *)m, 3);
		tap_ok(r2 == -2 && r1 == 3 && !memcmp((const void *)m, "xyz", 3) &&
		       __atomic_load_n(&wp_calls[0], __ATOMIC_RELAXED) == 2,
		       "14: read(2) into an armed page fails EFAULT, works after fl_prefault() "
		       "(the callback ran again: %d calls)", __atomic_load_n(&wp_calls[0], __ATOMIC_RELAXED));
		close(fds[0]);
		close(fds[1]);
	} else {
		tap_skip("no pipe");
		tap_skip("(same)");
	}
	TAP_EQ(fl_region_unregister(rt, (void *)m), 0);

	/*
	 * Collections race two writers: a page's protection must never be
	 * lost between a writer's fault and a collection's re-arm (wp.c's
	 * gate). Each collection notes the reported pages' words; once the
	 * writers are done and a last collection ran, every page must hold
	 * what was noted for it: a write after a lost protection is reported
	 * by no collection.
	 */
	TAP_EQ(fl_region_map(rt, WP_TRACKED * page_size, &ro, (void **)&d), 0);
	TAP_EQ(fl_dirty_start(rt, (void *)d, WP_TRACKED * page_size, FL_DIRTY_AUTO), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 2; i++) {
		w[i] = (struct wp_writer){ .m = d, .at = WP_PAGES, .seed = 7u + (unsigned)i };
		pthread_create(&w[i].t, NULL, wp_write, &w[i]);
	}
	for (bool last = false, done = false; !done; done = last) {
		/* the last collection once both writers are done */
		last = atomic_load(&wp_finished) == 2;
		if (fl_dirty_collect(rt, (void *)d, bm, WP_TRACKED, &nd)) {
			bad++;
			break;
		}
		collects++;
		atomic_store(&wp_go, 1);
		for (size_t p = 0; p < WP_TRACKED; p++)
			if (bm[p / 64] >> (p % 64) & 1)
				seen[p] = __atomic_load_n((uint64_t *)(d + p * page_size),
							  __ATOMIC_RELAXED);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(w[i].t, NULL);
	for (size_t p = 0; p < WP_TRACKED; p++)
		lost += *(volatile uint64_t *)(d + p * page_size) != seen[p];
	clock_gettime(CLOCK_MONOTONIC, &t1);
	tap_ok(!bad && !lost && collects > 1 && atomic_load(&wp_writes) > 0,
	       "14: %zu collections beside %llu writes in %.1f s: no write unreported "
	       "(%zu pages lost one)", collects, (unsigned long long)atomic_load(&wp_writes),
	       (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, lost);
	TAP_EQ(fl_region_unregister(rt, (void *)d), 0);
	free(seen);
}

/* ---- 15: a signal-safe fill ---- */

#define FILL_PAGES 256
#define FILL_BAD 7		/* the fill fails for this page */

static _Atomic pid_t fill_tids[4];
static _Atomic unsigned int fill_calls, fill_foreign;
static _Atomic bool fill_fail;

static int safe_fill(void *arg, uint64_t off, void *dst, size_t len)
{
	pid_t me = (pid_t)syscall(SYS_gettid);
	bool known = false;
	struct timespec ts = { 0, 100 * 1000 };

	(void)arg;
	for (int i = 0; i < 4; i++)
		known |= atomic_load(&fill_tids[i]) == me;
	atomic_fetch_add(&fill_foreign, known ? 0 : 1);
	atomic_fetch_add(&fill_calls, 1);
	if (atomic_load(&fill_fail) && off <= FILL_BAD * page_size &&
	    FILL_BAD * page_size < off + len)
		return -EIO;
	nanosleep(&ts, NULL);		/* a fill that blocks, as a read would */
	pat_fill(15, off, dst, len);
	return 0;
}

struct filler {
	pthread_t t;
	int i;
	volatile uint8_t *p;
	size_t bad;
	bool write;	/* then write byte 1 + i of every page, once */
};

static _Atomic int fill_done;

static void *fill_touch(void *arg)
{
	struct filler *f = arg;
	unsigned int seed = 99u + (unsigned int)f->i;

	atomic_store(&fill_tids[f->i], (pid_t)syscall(SYS_gettid));
	for (size_t i = 0; i < 4 * FILL_PAGES; i++) {
		size_t pg = (size_t)rand_r(&seed) % FILL_PAGES;
		size_t o = pg * page_size + (size_t)rand_r(&seed) % page_size;

		f->bad += f->p[o] != pat(15, o) && !(f->write && o % page_size < 3 &&
						      o % page_size > 0);
	}
	if (f->write)
		for (size_t pg = 0; pg < FILL_PAGES; pg++)
			f->p[pg * page_size + 1 + (size_t)f->i] = (uint8_t)(1 + f->i);
	atomic_fetch_add(&fill_done, 1);
	return NULL;
}

static void case_fill(void)
{
	struct fl_features ft = { .size = sizeof(ft) };
	uint64_t f0 = STAT(rt, faults), th0 = STAT(rt, faults_thread);
	struct fl_region_opts ro;
	struct filler f[4];
	volatile uint8_t *m;
	size_t bad = 0;
	void *p = NULL;
	volatile int jumps = 0;

	fl_features(rt, &ft);
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_FILL_SIGNAL_SAFE;		/* a zero pager: no fill */
	TAP_EQ(fl_region_map(rt, page_size, &ro, &p), -EINVAL);
	ro.pager = FL_PAGER_FILL;
	ro.fill = safe_fill;
	TAP_EQ(fl_region_map(rt, FILL_PAGES * page_size, &ro, (void **)&m), 0);
	for (int i = 0; i < 4; i++) {
		f[i] = (struct filler){ .i = i, .p = m };
		pthread_create(&f[i].t, NULL, fill_touch, &f[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(f[i].t, NULL);
		bad += f[i].bad;
	}
	tap_ok(!bad, "15: 4 threads read a blocking fill's pages: all bytes right (%zu bad)", bad);
	tap_ok(atomic_load(&fill_calls) > 0 && !atomic_load(&fill_foreign) &&
	       STAT(rt, faults) - f0 == STAT(rt, faults_thread) - th0,
	       "15: every fill ran in a faulting thread (%u calls, %u elsewhere), every fault in-thread",
	       atomic_load(&fill_calls), atomic_load(&fill_foreign));
	TAP_EQ(fl_region_unregister(rt, (void *)m), 0);

	/*
	 * Filled and tracked (a lazy restore checkpointed again): a blocking
	 * fill asks whether to install protected outside the section, while
	 * collections change the ranges. Every page read, then written once:
	 * every page reported, every byte right.
	 */
	if (ft.wp) {
		uint64_t bm[FILL_PAGES / 64], seen[FILL_PAGES / 64] = { 0 };
		size_t nd, reported = 0;

		ro.flags = FL_REGION_FILL_SIGNAL_SAFE | FL_REGION_WP;
		TAP_EQ(fl_region_map(rt, FILL_PAGES * page_size, &ro, (void **)&m), 0);
		TAP_EQ(fl_dirty_start(rt, (void *)m, FILL_PAGES * page_size, FL_DIRTY_AUTO), 0);
		atomic_store(&fill_done, 0);
		for (int i = 0; i < 2; i++) {
			f[i] = (struct filler){ .i = i, .p = m, .write = true };
			pthread_create(&f[i].t, NULL, fill_touch, &f[i]);
		}
		for (bool last = false, done = false; !done; done = last) {
			last = atomic_load(&fill_done) == 2;
			if (fl_dirty_collect(rt, (void *)m, bm, FILL_PAGES, &nd))
				break;
			for (size_t w = 0; w < FILL_PAGES / 64; w++)
				seen[w] |= bm[w];
		}
		bad = 0;
		for (int i = 0; i < 2; i++) {
			pthread_join(f[i].t, NULL);
			bad += f[i].bad;
		}
		for (size_t pg = 0; pg < FILL_PAGES; pg++) {
			reported += seen[pg / 64] >> (pg % 64) & 1;
			bad += m[pg * page_size + 1] != 1 || m[pg * page_size + 2] != 2 ||
			       m[pg * page_size + 3] != pat(15, pg * page_size + 3);
		}
		tap_ok(!bad && reported == FILL_PAGES,
		       "15: filled and tracked, collections beside: every page reported (%zu of %d), bytes right (%zu bad)",
		       reported, FILL_PAGES, bad);
		TAP_EQ(fl_region_unregister(rt, (void *)m), 0);
	} else {
		for (int i = 0; i < 4; i++)
			tap_skip("15: the kernel has no uffd-wp");
	}
	ro.flags = FL_REGION_FILL_SIGNAL_SAFE;

	if (!ft.poison) {
		tap_skip("15: no UFFDIO_POISON: a failed fill is retried, never poisoned");
		tap_skip("(same)");
		tap_skip("(same)");
		return;
	}
	atomic_store(&fill_fail, true);
	ro.fault_around = page_size;
	TAP_EQ(fl_region_map(rt, FILL_PAGES * page_size, &ro, (void **)&m), 0);
	prog_calls = 0;
	prog_jump = 1;
	/* the failed fill, then the poisoned page again (volatile: what a
	 * siglongjmp() leaves of a local is otherwise undefined) */
	if (sigsetjmp(prog_env, 1) == 0)
		(void)m[FILL_BAD * page_size + 5];
	else
		jumps++;
	if (sigsetjmp(prog_env, 1) == 0)
		(void)m[FILL_BAD * page_size + 9];
	else
		jumps++;
	prog_jump = 0;
	tap_ok(jumps == 2 && prog_calls == 2 && m[(FILL_BAD + 1) * page_size] ==
	       pat(15, (FILL_BAD + 1) * page_size),
	       "15: a failed fill's page raises the program's SIGBUS, twice (%d, code %d), its neighbour reads right",
	       (int)prog_calls, (int)prog_code);
	atomic_store(&fill_fail, false);
	TAP_EQ(fl_region_unregister(rt, (void *)m), 0);
}

int main(void)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct sigaction sa;

	page_size = (size_t)sysconf(_SC_PAGESIZE);
	/* the program's handler, before the runtime (FL_REGION_THREAD) */
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = prog_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);

	rt = thread_runtime(FL_RESOLVE_AUTO);
	fl_features(rt, &ft);
	if (!ft.inthread)
		tap_skip_all("no in-thread resolution here (the kernel lacks UFFD_FEATURE_SIGBUS)");
	tap_plan(82);
	case_options();
	case_bytes();
	case_mixed();
	case_chain();
	case_altstack();
	case_nested();
	case_syscalls();
	case_blocked();
	case_mappings();
	case_fork();
	case_threads();
	case_far();
	case_interrupted();
	case_wp();
	case_fill();
	TAP_EQ(fl_region_count(rt), 0);
	fl_runtime_destroy(rt);
	return tap_done();
}
