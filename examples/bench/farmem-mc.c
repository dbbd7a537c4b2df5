/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * farmem-mc.c - farmem-scan's raw-store mode on a memcached pool: the very
 * items the runtime's memcached store wrote for a region (the same keys,
 * the same sizes, on the same servers), read with libmemcached's own get
 * (one key at a time, one thread or several) and mget (a batch of keys per
 * server), in the scan's order. What a client that knows where each page
 * is can do without the runtime: the ratio tells what the runtime's
 * page-in, placement and sealing cost, and what its read-ahead batches.
 *
 * The keys come from the servers' own key dumps (lru_crawler metadump):
 * the store's key is "fl" + its random id + "-" + the page number in hex,
 * and the runtime's items are the id with most keys. Each page is read
 * from the server that holds it (libmemcached's hashing would pick another
 * one: the store places pages itself).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "farmem.h"
#include "farmem-mc.h"

#ifdef FL_BENCH_MEMCACHED
#include <libmemcached/memcached.h>

#define MCR_MAX_SERVERS 64
#define MCR_KEY 64

struct mcr_server {
	char host[256];
	char port[8];
};

struct mc_raw {
	struct mcr_server srv[MCR_MAX_SERVERS];
	unsigned int nservers;
	size_t npages;
	unsigned char *where;		/* per page: its server + 1; 0: not found */
	char (*key)[MCR_KEY];		/* per page */
	size_t item_len;		/* the size of the first item read */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* memcached://host:port[,host:port...][?...] into @r's servers */
static int parse_servers(struct mc_raw *r, const char *url, char *why, size_t n)
{
	static const char scheme[] = "memcached://";
	const char *p = url, *end;

	if (strncmp(p, scheme, sizeof(scheme) - 1)) {
		snprintf(why, n, "'%s' does not begin with %s", url, scheme);
		return -EINVAL;
	}
	p += sizeof(scheme) - 1;
	end = p + strcspn(p, "?");
	while (p < end) {
		const char *e = memchr(p, ',', (size_t)(end - p)), *c;
		struct mcr_server *s = &r->srv[r->nservers];

		e = e ? e : end;
		c = memrchr(p, ':', (size_t)(e - p));
		if (!c || r->nservers == MCR_MAX_SERVERS || (size_t)(c - p) >= sizeof(s->host) ||
		    (size_t)(e - c - 1) >= sizeof(s->port) || e == c + 1) {
			snprintf(why, n, "bad server list in '%s'", url);
			return -EINVAL;
		}
		memcpy(s->host, p, (size_t)(c - p));
		memcpy(s->port, c + 1, (size_t)(e - c - 1));
		r->nservers++;
		p = e + (e < end);
	}
	return r->nservers ? 0 : -EINVAL;
}

static int connect_srv(const struct mcr_server *s)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *a;
	int fd = -1;

	if (getaddrinfo(s->host, s->port, &hints, &res))
		return -1;
	for (a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen)) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/* the server's key dump, whole (malloc'd, NUL-terminated), or NULL */
static char *metadump(const struct mcr_server *s)
{
	static const char req[] = "lru_crawler metadump all\r\n";
	size_t cap = 1 << 20, got = 0;
	char *buf = malloc(cap);
	int fd = connect_srv(s);

	if (!buf || fd < 0 || write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
		goto fail;
	for (;;) {
		ssize_t k;

		if (cap - got < 65536) {
			char *nb = realloc(buf, cap * 2);

			if (!nb)
				goto fail;
			buf = nb;
			cap *= 2;
		}
		k = read(fd, buf + got, cap - got - 1);
		if (k <= 0)
			goto fail;
		got += (size_t)k;
		buf[got] = '\0';
		if (got >= 5 && !strcmp(buf + got - 5, "END\r\n"))
			break;
	}
	close(fd);
	return buf;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/*
 * One pass over every dump: with @id NULL, count the keys of each id and
 * leave the commonest in @best; with @id, record where each of its pages
 * is (the page numbers relative to the lowest, in @base).
 */
struct id_count {
	char id[33];
	size_t n;
	uint64_t lo;
};

static void scan_dump(struct mc_raw *r, unsigned int si, const char *dump,
		      struct id_count *ids, size_t *nids, size_t maxids, const struct id_count *want)
{
	for (const char *p = dump; (p = strstr(p, "key=fl")); p++) {
		const char *id = p + 6, *dash = strchr(id, '-');
		unsigned long long pg;

		if (!dash || dash - id != 32 || sscanf(dash + 1, "%llx", &pg) != 1)
			continue;
		if (!want) {
			size_t i;

			for (i = 0; i < *nids && memcmp(ids[i].id, id, 32); i++)
				;
			if (i == *nids) {
				if (*nids == maxids)
					continue;
				memcpy(ids[i].id, id, 32);
				ids[i].id[32] = '\0';
				ids[i].n = 0;
				ids[i].lo = pg;
				(*nids)++;
			}
			ids[i].n++;
			ids[i].lo = pg < ids[i].lo ? pg : ids[i].lo;
		} else if (!memcmp(want->id, id, 32) && pg - want->lo < r->npages &&
			   !r->where[pg - want->lo]) {
			size_t k = strcspn(p + 4, " \r\n");

			if (k < MCR_KEY) {
				r->where[pg - want->lo] = (unsigned char)(si + 1);
				memcpy(r->key[pg - want->lo], p + 4, k);
				r->key[pg - want->lo][k] = '\0';
			}
		}
	}
}

static memcached_st *client(const struct mcr_server *s);

/* page @pg's key from its id and number, on whichever server of @c has it */
static void find_by_name(struct mc_raw *r, memcached_st **c, size_t pg,
			 const struct id_count *id)
{
	char key[MCR_KEY];

	snprintf(key, sizeof(key), "fl%s-%llx", id->id, (unsigned long long)(id->lo + pg));
	for (unsigned int s = 0; s < r->nservers && !r->where[pg]; s++)
		if (c[s] && memcached_exist(c[s], key, strlen(key)) == MEMCACHED_SUCCESS) {
			r->where[pg] = (unsigned char)(s + 1);
			memcpy(r->key[pg], key, sizeof(key));
		}
}

/*
 * Look for the pages the dumps did not show, by name, for up to 10 s: the
 * dump walks the LRU while items move on it (a hit bumped, a page written
 * again), and on a loaded machine the write-back of the pages the scan
 * set-up evicted last may still be under way. Return: the pages found.
 */
static size_t find_missing(struct mc_raw *r, const struct id_count *best)
{
	memcached_st *c[MCR_MAX_SERVERS] = { NULL };
	size_t found = 0;
	double end = now_s() + 10;

	for (unsigned int s = 0; s < r->nservers; s++)
		c[s] = client(&r->srv[s]);
	for (;;) {
		found = 0;
		for (size_t pg = 0; pg < r->npages; pg++) {
			if (!r->where[pg] && best->n)
				find_by_name(r, c, pg, best);
			found += r->where[pg] != 0;
		}
		if (found == r->npages || now_s() > end)
			break;
		usleep(50000);
	}
	for (unsigned int s = 0; s < r->nservers; s++)
		if (c[s])
			memcached_free(c[s]);
	return found;
}

int mc_raw_open(const char *url, size_t npages, struct mc_raw **out, char *why, size_t n)
{
	struct mc_raw *r = calloc(1, sizeof(*r));
	char *dumps[MCR_MAX_SERVERS] = { NULL };
	struct id_count ids[16], best = { .n = 0 };
	size_t nids = 0, found = 0;
	int ret;

	if (!r)
		return -ENOMEM;
	ret = parse_servers(r, url, why, n);
	if (ret)
		goto fail;
	r->npages = npages;
	r->where = calloc(npages, 1);
	r->key = calloc(npages, sizeof(*r->key));
	ret = -ENOMEM;
	if (!r->where || !r->key)
		goto fail;
	for (unsigned int i = 0; i < r->nservers; i++) {
		dumps[i] = metadump(&r->srv[i]);
		if (!dumps[i]) {
			ret = -EIO;
			snprintf(why, n, "no key dump from %s:%s", r->srv[i].host, r->srv[i].port);
			goto fail;
		}
		scan_dump(r, i, dumps[i], ids, &nids, 16, NULL);
	}
	for (size_t i = 0; i < nids; i++)
		if (ids[i].n > best.n)
			best = ids[i];
	for (unsigned int i = 0; i < r->nservers; i++)
		scan_dump(r, i, dumps[i], NULL, NULL, 0, &best);
	found = find_missing(r, &best);
	/* a page that stayed in memory, dirty, since the scan began has no
	 * item (rare: its eviction was rescued); raw-store skips it */
	if (found + npages / 4 < npages) {
		ret = -ENOENT;
		snprintf(why, n, "%zu of %zu pages have no item in the pool", npages - found,
			 npages);
		goto fail;
	}
	ret = 0;
	*out = r;
fail:
	for (unsigned int i = 0; i < r->nservers; i++)
		free(dumps[i]);
	if (ret)
		mc_raw_close(r);
	return ret;
}

void mc_raw_close(struct mc_raw *r)
{
	if (!r)
		return;
	free(r->where);
	free(r->key);
	free(r);
}

/* one client thread: its own connection to every server, as libmemcached's users have */
struct mcr_worker {
	struct slice s;		/* first */
	struct mc_raw *r;
	unsigned int batch;
	int err;
};

static memcached_st *client(const struct mcr_server *s)
{
	memcached_st *m = memcached_create(NULL);

	if (!m)
		return NULL;
	/* the binary protocol, no Nagle: as the store talks */
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	if (memcached_server_add(m, s->host, (in_port_t)atoi(s->port)) != MEMCACHED_SUCCESS) {
		memcached_free(m);
		return NULL;
	}
	return m;
}

static void *worker_main(void *arg)
{
	struct mcr_worker *w = arg;
	struct mc_raw *r = w->r;
	memcached_st *c[MCR_MAX_SERVERS] = { NULL };
	const char *keys[MCR_MAX_SERVERS][64];
	size_t lens[MCR_MAX_SERVERS][64];
	unsigned int nk[MCR_MAX_SERVERS];

	for (unsigned int s = 0; s < r->nservers; s++)
		if (!(c[s] = client(&r->srv[s])))
			w->err = -ENOMEM;
	pthread_barrier_wait(w->s.bar);
	w->s.t0 = now_s();
	for (size_t k = 0; k < w->s.n && !w->err;) {
		size_t end = k + w->batch < w->s.n ? k + w->batch : w->s.n;

		if (w->batch == 1) {	/* a page without an item is skipped */
			size_t pg = w->s.order[k++], vlen = 0;
			uint32_t flags;
			memcached_return_t rc;
			char *v;

			if (!r->where[pg])
				continue;
			v = memcached_get(c[r->where[pg] - 1u], r->key[pg], strlen(r->key[pg]),
					  &vlen, &flags, &rc);
			w->s.bad += !v || vlen != r->item_len;
			free(v);
			continue;
		}
		memset(nk, 0, sizeof(nk));
		for (size_t i = k; i < end; i++) {
			size_t pg = w->s.order[i];
			unsigned int s = r->where[pg] - 1u;

			if (!r->where[pg])
				continue;
			keys[s][nk[s]] = r->key[pg];
			lens[s][nk[s]++] = strlen(r->key[pg]);
		}
		/* one multi-get per server, all sent before any is read */
		for (unsigned int s = 0; s < r->nservers; s++)
			if (nk[s] && memcached_mget(c[s], keys[s], lens[s], nk[s]) != MEMCACHED_SUCCESS)
				w->s.bad += nk[s];
		for (unsigned int s = 0; s < r->nservers; s++) {
			memcached_result_st *res;
			memcached_return_t rc;
			unsigned int got = 0;

			if (!nk[s])
				continue;
			while ((res = memcached_fetch_result(c[s], NULL, &rc))) {
				got++;
				w->s.bad += memcached_result_length(res) != r->item_len;
				memcached_result_free(res);
			}
			w->s.bad += nk[s] - (got < nk[s] ? got : nk[s]);
		}
		k = end;
	}
	w->s.t1 = now_s();
	for (unsigned int s = 0; s < r->nservers; s++)
		if (c[s])
			memcached_free(c[s]);
	return NULL;
}

int mc_raw_scan(struct mc_raw *r, const size_t *order, size_t n, unsigned int nthreads,
		unsigned int batch, double *seconds, uint64_t *bad, size_t *read)
{
	struct mcr_worker w[16];
	struct slice *ws[16];
	int err = 0;

	if (!nthreads || nthreads > 16 || !batch || batch > 64)
		return -EINVAL;
	if (!r->item_len) {	/* the items' size, from the first page that has one */
		size_t pg = 0;
		memcached_st *c;
		size_t vlen = 0;
		uint32_t flags;
		memcached_return_t rc;
		char *v;

		while (!r->where[pg])
			pg++;
		c = client(&r->srv[r->where[pg] - 1u]);
		v = c ? memcached_get(c, r->key[pg], strlen(r->key[pg]), &vlen, &flags, &rc) : NULL;

		free(v);
		if (c)
			memcached_free(c);
		if (!v)
			return -EIO;
		r->item_len = vlen;
	}
	for (unsigned int i = 0; i < nthreads; i++) {
		w[i] = (struct mcr_worker){ .r = r, .batch = batch };
		ws[i] = &w[i].s;
	}
	*bad = 0;
	*seconds = slices_run(ws, nthreads, order, n, worker_main, bad);
	for (unsigned int i = 0; i < nthreads; i++)
		err = err ? err : w[i].err;
	*read = 0;
	for (size_t i = 0; i < n; i++)
		*read += r->where[order[i]] != 0;
	return err;
}

#else	/* !FL_BENCH_MEMCACHED */

int mc_raw_open(const char *url, size_t npages, struct mc_raw **out, char *why, size_t n)
{
	(void)url;
	(void)npages;
	(void)out;
	snprintf(why, n, "faultline-bench was built without libmemcached");
	return -ENOTSUP;
}

void mc_raw_close(struct mc_raw *r)
{
	(void)r;
}

int mc_raw_scan(struct mc_raw *r, const size_t *order, size_t n, unsigned int nthreads,
		unsigned int batch, double *seconds, uint64_t *bad, size_t *read)
{
	(void)read;
	(void)r;
	(void)order;
	(void)n;
	(void)nthreads;
	(void)batch;
	(void)seconds;
	(void)bad;
	return -ENOTSUP;
}

#endif
