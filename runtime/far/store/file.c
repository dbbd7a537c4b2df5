/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * file.c - a store in a file, with io_uring.
 *
 * One ring per thread that does store I/O (handler threads read, the
 * evictor writes), made on the thread's first request and freed when the
 * thread exits: rings are never shared, so submission needs no lock. A
 * batch is submitted at once and its completions reaped before returning;
 * short transfers are resubmitted for the rest. Where io_uring cannot be
 * set up (kernel.io_uring_disabled, seccomp, old kernel) the thread falls
 * back to pread/pwrite, once and for good.
 *
 * By default the file is an O_TMPFILE with mode 0600: it has no name, no
 * other user can open it, and it vanishes with the last descriptor.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

#define FL_EXPORT __attribute__((visibility("default")))

#define RING_ENTRIES 64

struct file_store {
	int fd;
};

struct thread_ring {
	struct io_uring ring;
	bool ok;		/* ring usable */
	bool tried;		/* setup attempted */
	int efd;		/* eventfd registered on the ring, or -1 */
};

/*
 * Asynchronous reads share the thread's ring with the synchronous batches:
 * their user_data carries this tag bit (requests are pointer-aligned), and
 * whichever reaps a tagged completion (ring_batch() or file_reap()) runs it.
 */
#define ASYNC_TAG ((uintptr_t)1)

static pthread_key_t ring_key;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;

static void ring_free(void *p)
{
	struct thread_ring *t = p;

	if (t->ok)
		io_uring_queue_exit(&t->ring);
	free(t);
}

static void ring_key_make(void)
{
	pthread_key_create(&ring_key, ring_free);
}

static struct thread_ring *ring_get(void)
{
	struct thread_ring *t;

	pthread_once(&ring_once, ring_key_make);
	t = pthread_getspecific(ring_key);
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t)
			return NULL;
		if (pthread_setspecific(ring_key, t)) {
			free(t);
			return NULL;
		}
	}
	if (!t->tried) {
		t->tried = true;
		t->ok = io_uring_queue_init(RING_ENTRIES, &t->ring, 0) == 0;
		t->efd = -1;
	}
	return t;
}

static int sync_one(int fd, struct store_req *r)
{
	size_t done = 0;

	while (done < r->len) {
		ssize_t n = r->op == STORE_READ ?
			pread(fd, (char *)r->buf + done, r->len - done, (off_t)(r->off + done)) :
			pwrite(fd, (const char *)r->buf + done, r->len - done, (off_t)(r->off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			if (r->op == STORE_WRITE)
				return -EIO;
			/* past the end of the file: never written, zeros */
			memset((char *)r->buf + done, 0, r->len - done);
			break;
		}
		done += (size_t)n;
	}
	return 0;
}

/* per-request progress while the batch is in flight */
struct inflight {
	struct store_req *r;
	size_t done;
};

static void prep(struct io_uring_sqe *sqe, int fd, struct inflight *f)
{
	struct store_req *r = f->r;

	if (r->op == STORE_READ)
		io_uring_prep_read(sqe, fd, (char *)r->buf + f->done,
				   (unsigned int)(r->len - f->done), r->off + f->done);
	else
		io_uring_prep_write(sqe, fd, (const char *)r->buf + f->done,
				    (unsigned int)(r->len - f->done), r->off + f->done);
	io_uring_sqe_set_data(sqe, f);
}

static void prep_async(struct io_uring_sqe *sqe, int fd, struct store_areq *a)
{
	io_uring_prep_read(sqe, fd, (char *)a->req.buf + a->progress,
			   (unsigned int)(a->req.len - a->progress), a->req.off + a->progress);
	io_uring_sqe_set_data(sqe, (void *)((uintptr_t)a | ASYNC_TAG));
}

/*
 * A completion of an asynchronous read: finish it (@done), or ask for the
 * rest of a short read. Return: true if a new request was queued.
 */
static bool async_cqe(struct io_uring *ring, struct store_areq *a, int res)
{
	struct file_store *fs = a->store->priv;
	struct io_uring_sqe *sqe;

	if (res == -EINTR || res == -EAGAIN) {
		res = 0;
	} else if (res < 0) {
		a->req.res = res;
		a->done(a);
		return false;
	} else if (res == 0) {
		/* end of file: never written, zeros */
		memset((char *)a->req.buf + a->progress, 0, a->req.len - a->progress);
		a->done(a);
		return false;
	}
	a->progress += (size_t)res;
	if (a->progress >= a->req.len) {
		a->done(a);
		return false;
	}
	sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		a->req.res = -EIO;
		a->done(a);
		return false;
	}
	prep_async(sqe, fs->fd, a);
	return true;
}

static int ring_batch(struct io_uring *ring, int fd, struct store_req *reqs, unsigned int n)
{
	struct inflight f[RING_ENTRIES];
	unsigned int pending = 0;

	for (unsigned int i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

		f[i] = (struct inflight){ &reqs[i], 0 };
		reqs[i].res = 0;
		if (!sqe)
			return -EBUSY;	/* cannot happen: n <= RING_ENTRIES, ring drained */
		prep(sqe, fd, &f[i]);
		pending++;
	}
	while (pending) {
		struct io_uring_cqe *cqe;
		struct inflight *x;
		int ret = io_uring_submit_and_wait(ring, 1);

		if (ret < 0 && ret != -EINTR)
			return ret;
		while (io_uring_peek_cqe(ring, &cqe) == 0) {
			struct io_uring_sqe *sqe;

			x = io_uring_cqe_get_data(cqe);
			ret = cqe->res;
			io_uring_cqe_seen(ring, cqe);
			if ((uintptr_t)x & ASYNC_TAG) {
				/* one of this thread's asynchronous reads */
				if (async_cqe(ring, (void *)((uintptr_t)x & ~ASYNC_TAG), ret))
					io_uring_submit(ring);
				continue;
			}
			pending--;
			if (ret == -EINTR || ret == -EAGAIN) {
				ret = 0;	/* resubmit the same part */
			} else if (ret < 0) {
				x->r->res = ret;
				continue;
			} else if (ret == 0) {
				if (x->r->op == STORE_WRITE) {
					x->r->res = -EIO;
				} else {
					/* end of file: never written, zeros */
					memset((char *)x->r->buf + x->done, 0, x->r->len - x->done);
				}
				continue;
			}
			x->done += (size_t)ret;
			if (x->done >= x->r->len)
				continue;
			/* short transfer: ask for the rest */
			sqe = io_uring_get_sqe(ring);
			if (!sqe) {
				x->r->res = -EIO;
				continue;
			}
			prep(sqe, fd, x);
			pending++;
		}
	}
	return 0;
}

static int file_io(struct fl_store *s, struct store_req *reqs, unsigned int n)
{
	struct file_store *fs = s->priv;
	struct thread_ring *t = ring_get();
	int first = 0;

	for (unsigned int i = 0; i < n; ) {
		unsigned int k = n - i < RING_ENTRIES ? n - i : RING_ENTRIES;
		int ret = -ENOSYS;

		if (t && t->ok)
			ret = ring_batch(&t->ring, fs->fd, reqs + i, k);
		if (ret) {
			/* no ring, or the ring failed as a whole: plain calls */
			for (unsigned int j = i; j < i + k; j++)
				reqs[j].res = sync_one(fs->fd, &reqs[j]);
		}
		i += k;
	}
	for (unsigned int i = 0; i < n; i++)
		if (reqs[i].res && !first)
			first = reqs[i].res;
	return first;
}

/* pread(2) on the calling thread: no ring (its set-up allocates) */
static int file_read_signal(struct fl_store *s, struct store_req *req)
{
	const struct file_store *fs = s->priv;

	return sync_one(fs->fd, req);
}

static int file_read_async(struct fl_store *s, struct store_areq *a)
{
	struct file_store *fs = s->priv;
	struct thread_ring *t = ring_get();
	struct io_uring_sqe *sqe;
	int ret;

	if (!t || !t->ok)
		return -ENOSYS;
	if (t->efd != a->efd) {
		/* the ring signals the thread's eventfd on each completion */
		if (t->efd >= 0)
			io_uring_unregister_eventfd(&t->ring);
		t->efd = -1;
		if (io_uring_register_eventfd(&t->ring, a->efd))
			return -ENOSYS;
		t->efd = a->efd;
	}
	sqe = io_uring_get_sqe(&t->ring);
	if (!sqe)
		return -EBUSY;
	prep_async(sqe, fs->fd, a);
	ret = io_uring_submit(&t->ring);
	return ret < 0 ? ret : 0;
}

static void file_reap(struct fl_store *s)
{
	struct thread_ring *t = ring_get();
	struct io_uring_cqe *cqe;
	bool more = false;

	(void)s;
	if (!t || !t->ok)
		return;
	while (io_uring_peek_cqe(&t->ring, &cqe) == 0) {
		uintptr_t x = (uintptr_t)io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&t->ring, cqe);
		/* only tagged requests: synchronous batches reap their own */
		if (x & ASYNC_TAG)
			more |= async_cqe(&t->ring, (void *)(x & ~ASYNC_TAG), res);
	}
	if (more)
		io_uring_submit(&t->ring);
}

static int file_discard(struct fl_store *s, uint64_t off, size_t len)
{
	struct file_store *fs = s->priv;

	if (fallocate(fs->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) < 0)
		return errno == EOPNOTSUPP ? 0 : -errno;
	return 0;
}

static int file_flush(struct fl_store *s)
{
	struct file_store *fs = s->priv;

	return fdatasync(fs->fd) < 0 ? -errno : 0;
}

static void file_destroy(struct fl_store *s)
{
	struct file_store *fs = s->priv;

	close(fs->fd);
	free(fs);
}

static const struct store_vtbl file_vtbl = {
	.name = "file",
	.io = file_io,
	.read_signal = file_read_signal,
	.read_async = file_read_async,
	.reap = file_reap,
	.discard = file_discard,
	.flush = file_flush,
	.destroy = file_destroy,
};

FL_EXPORT int fl_store_file_create(const char *path, unsigned int flags, struct fl_store **out)
{
	struct file_store *fs;
	int oflags = O_RDWR | O_CLOEXEC, fd;

	if (!out || (flags & ~FL_STORE_FILE_DIRECT))
		return -EINVAL;
	if (flags & FL_STORE_FILE_DIRECT)
		oflags |= O_DIRECT;
	if (path) {
		fd = open(path, oflags | O_CREAT | O_TRUNC, 0600);
		/* a directory: an unnamed file in it, as for NULL */
		if (fd < 0 && errno == EISDIR)
			fd = open(path, oflags | O_TMPFILE, 0600);
	} else {
		const char *dir = secure_getenv("TMPDIR");

		if (!dir || !*dir)
			dir = "/tmp";
		fd = open(dir, oflags | O_TMPFILE, 0600);
	}
	if (fd < 0)
		return -errno;
	fs = calloc(1, sizeof(*fs));
	if (!fs) {
		close(fd);
		return -ENOMEM;
	}
	fs->fd = fd;
	*out = store_new(&file_vtbl, fs);
	if (!*out) {
		file_destroy(&(struct fl_store){ .priv = fs });
		return -ENOMEM;
	}
	return 0;
}
