/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memcached.c - a store on a pool of memcached servers (libmemcached).
 *
 * One item per page. Its key names the runtime (128 random bits drawn at
 * creation) and the page's store offset, so runtimes and processes that
 * share a pool never meet. Which servers hold a page is decided here, not
 * by libmemcached: rendezvous hashing ranks every server for the page (a
 * keyed SipHash of server and page), the page goes to the first 1 +
 * replicas of that order that take it, and a read asks the servers in the
 * same order until one returns an item that verifies. A server that was
 * down at write time only moves the page further down its own order; a
 * read still finds it, and losing any `replicas` servers loses no page.
 *
 * Nothing is read wrong. Every item carries the page's store offset and
 * its write generation, authenticated with a per-runtime random key that
 * never leaves the process: XChaCha20-Poly1305 (libsodium), the runtime
 * id, offset and generation as associated data, by default; keyed BLAKE2b
 * over the same and the plain bytes with encrypt=no. The generation of
 * each offset is counted here (gens[] below) and never goes back, not even
 * across a discard: an item a server kept from an earlier write of the
 * same offset (a delete it missed while unreachable) cannot pass for the
 * current one. An item that is missing (evicted by the server, whose
 * -M is then missing, or a server restarted empty), stale, corrupted or
 * written by someone else fails the check; with no good copy left the
 * read is -EIO, which the runtime turns into SIGBUS for the access (its
 * POISON path), never a zero or stale page.
 *
 * Writes: a generation is taken for good only once every copy is stored
 * (the table keeps the previous one otherwise: the page stays resident,
 * and no copy of the failed write can pass for it). A server that is full
 * (memcached -M refuses) fails the write: -ENOSPC, the page stays.
 *
 * Threads: every store call may run on any of the runtime's threads and on
 * the callback store's workers (page-in reads run there, so a handler never
 * waits on the network: store.c). A memcached_st is not thread safe, so
 * each call takes a connection set (one memcached_st per server) from a
 * free list and gives it back after; sets are made on demand, as many as
 * calls run at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libmemcached/memcached.h>
#include <sodium.h>

#include "store.h"

#define FL_EXPORT __attribute__((visibility("default")))

#define MC_PAGE		4096u
#define MC_MAX_SERVERS	64
#define MC_MAGIC	0x464c5031u	/* "FLP1" */
/* generations: chunks of 2^18 pages (1 GiB of offsets, 2 MiB of words),
 * made on first write */
#define GEN_SHIFT	18
#define GEN_CHUNK	((uint64_t)1 << GEN_SHIFT)
#define GEN_CHUNKS	4096		/* 4 TiB of store offsets */
/*
 * An offset's generation word: bit 0 set while the offset holds a page,
 * bits 1-31 the generation of that page, bits 32-63 the last generation
 * ever handed out for the offset (a failed write's too: no generation is
 * ever used twice, so no copy left by a failed or discarded write can pass
 * for a later one).
 */
#define GEN_VALID	1ull
#define GEN_CUR(w)	((uint32_t)(w) >> 1)
#define GEN_LAST(w)	((uint32_t)((w) >> 32))

/*
 * An item: header, then the page sealed. The header is authenticated as
 * associated data with the runtime id; the generation in it must be the
 * one gens[] holds for the offset.
 */
struct mc_hdr {
	uint32_t magic;
	uint32_t gen;
	uint64_t off;
	unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
};
#define MC_TAG		16u	/* Poly1305 tag, or the BLAKE2b MAC's length */
#define MC_ITEM		(sizeof(struct mc_hdr) + MC_PAGE + MC_TAG)

struct mc_server {
	char host[256];
	unsigned int port;
};

struct mc_conn {
	struct mc_conn *next;
	memcached_st *st[];	/* one per server */
};

struct mc_store {
	unsigned int nservers, replicas;
	bool encrypt;
	struct mc_server srv[MC_MAX_SERVERS];
	unsigned char id[16];		/* this runtime's, in every key */
	char idhex[33];
	unsigned char key[32];		/* sealing key: never leaves the process */
	unsigned char rank_key[crypto_shorthash_KEYBYTES];
	int timeout_ms;

	pthread_mutex_t lock;		/* conn free list and gen chunk creation */
	struct mc_conn *free;
	_Atomic(_Atomic uint64_t *) gens[GEN_CHUNKS];
};

/* ---- configuration ---- */

static int why(char *buf, size_t n, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int why(char *buf, size_t n, int ret, const char *fmt, ...)
{
	va_list ap;

	if (buf && n) {
		va_start(ap, fmt);
		vsnprintf(buf, n, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* "yes"/"no"/"1"/"0"/"on"/"off": 1, 0, or -1 */
static int parse_bool(const char *v, size_t n)
{
	static const char *const yes[] = { "yes", "1", "on", "true" };
	static const char *const no[] = { "no", "0", "off", "false" };

	for (size_t i = 0; i < 4; i++) {
		if (strlen(yes[i]) == n && !strncmp(v, yes[i], n))
			return 1;
		if (strlen(no[i]) == n && !strncmp(v, no[i], n))
			return 0;
	}
	return -1;
}

/*
 * memcached://host:port[,host:port...][?replicas=N&encrypt=yes|no&timeout=MS]
 * A host may be a name, an IPv4 address or [an IPv6 one].
 */
static int parse_url(struct mc_store *m, const char *url, char *err, size_t errlen)
{
	static const char scheme[] = "memcached://";
	const char *p, *q, *end;

	if (strncmp(url, scheme, sizeof(scheme) - 1))
		return why(err, errlen, -EINVAL, "'%s' does not begin with %s", url, scheme);
	p = url + sizeof(scheme) - 1;
	q = strchr(p, '?');
	end = q ? q : p + strlen(p);
	m->replicas = 0;
	m->encrypt = true;
	m->timeout_ms = 2000;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *item_end = comma ? comma : end, *colon, *host = p;
		size_t hlen;
		char *e;
		unsigned long port;

		if (p[0] == '[') {
			const char *rb = memchr(p, ']', (size_t)(item_end - p));

			if (!rb || rb + 1 >= item_end || rb[1] != ':')
				return why(err, errlen, -EINVAL, "'%.*s' is not [address]:port",
					   (int)(item_end - p), p);
			host = p + 1;
			hlen = (size_t)(rb - host);
			colon = rb + 1;
		} else {
			colon = NULL;
			for (const char *c = p; c < item_end; c++)
				if (*c == ':')
					colon = c;
			if (!colon)
				return why(err, errlen, -EINVAL, "server '%.*s' has no :port",
					   (int)(item_end - p), p);
			hlen = (size_t)(colon - p);
		}
		if (!hlen || hlen >= sizeof(m->srv[0].host))
			return why(err, errlen, -EINVAL, "server '%.*s': bad host",
				   (int)(item_end - p), p);
		errno = 0;
		port = strtoul(colon + 1, &e, 10);
		if (e != item_end || colon + 1 == item_end || !port || port > 65535 || errno)
			return why(err, errlen, -EINVAL, "server '%.*s': bad port",
				   (int)(item_end - p), p);
		if (m->nservers == MC_MAX_SERVERS)
			return why(err, errlen, -E2BIG, "more than %d servers", MC_MAX_SERVERS);
		memcpy(m->srv[m->nservers].host, host, hlen);
		m->srv[m->nservers].host[hlen] = '\0';
		m->srv[m->nservers].port = (unsigned int)port;
		m->nservers++;
		p = comma ? comma + 1 : end;
		if (comma && p == end)
			return why(err, errlen, -EINVAL, "'%s': an empty server after ','", url);
	}
	if (!m->nservers)
		return why(err, errlen, -EINVAL, "'%s' names no server", url);
	for (p = q ? q + 1 : end; q && *p;) {
		const char *amp = strchr(p, '&'), *pe = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(pe - p));
		size_t klen = eq ? (size_t)(eq - p) : 0, vlen = eq ? (size_t)(pe - eq - 1) : 0;
		const char *v = eq ? eq + 1 : NULL;

		if (!eq || !klen || !vlen)
			return why(err, errlen, -EINVAL, "'%.*s' is not name=value",
				   (int)(pe - p), p);
		if (klen == 8 && !strncmp(p, "replicas", 8)) {
			char *e;
			unsigned long r;

			errno = 0;
			r = strtoul(v, &e, 10);
			if (e != pe || errno || r >= m->nservers)
				return why(err, errlen, -EINVAL,
					   "replicas=%.*s: want 0 to %u (one less than the servers)",
					   (int)vlen, v, m->nservers - 1);
			m->replicas = (unsigned int)r;
		} else if (klen == 7 && !strncmp(p, "encrypt", 7)) {
			int b = parse_bool(v, vlen);

			if (b < 0)
				return why(err, errlen, -EINVAL, "encrypt=%.*s: want yes or no",
					   (int)vlen, v);
			m->encrypt = b;
		} else if (klen == 7 && !strncmp(p, "timeout", 7)) {
			char *e;
			unsigned long t;

			errno = 0;
			t = strtoul(v, &e, 10);
			if (e != pe || errno || !t || t > 600000)
				return why(err, errlen, -EINVAL,
					   "timeout=%.*s: want milliseconds, 1 to 600000",
					   (int)vlen, v);
			m->timeout_ms = (int)t;
		} else {
			return why(err, errlen, -EINVAL,
				   "unknown option '%.*s' (replicas, encrypt, timeout)",
				   (int)klen, p);
		}
		p = amp ? amp + 1 : pe;
	}
	return 0;
}

/* ---- connections ---- */

static memcached_st *conn_one(struct mc_store *m, unsigned int i)
{
	memcached_st *st = memcached_create(NULL);

	if (!st)
		return NULL;
	if (memcached_server_add(st, m->srv[i].host, (in_port_t)m->srv[i].port) !=
	    MEMCACHED_SUCCESS) {
		memcached_free(st);
		return NULL;
	}
	memcached_behavior_set(st, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
	memcached_behavior_set(st, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(st, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, (uint64_t)m->timeout_ms);
	memcached_behavior_set(st, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t)m->timeout_ms);
	memcached_behavior_set(st, MEMCACHED_BEHAVIOR_SND_TIMEOUT,
			       (uint64_t)m->timeout_ms * 1000);
	memcached_behavior_set(st, MEMCACHED_BEHAVIOR_RCV_TIMEOUT,
			       (uint64_t)m->timeout_ms * 1000);
	/* a server that fails is asked again on the next call, never dropped
	 * from the list for good: placement is ours */
	memcached_behavior_set(st, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1);
	return st;
}

static void conn_free(struct mc_store *m, struct mc_conn *c)
{
	for (unsigned int i = 0; i < m->nservers; i++)
		if (c->st[i])
			memcached_free(c->st[i]);
	free(c);
}

static struct mc_conn *conn_get(struct mc_store *m)
{
	struct mc_conn *c;

	pthread_mutex_lock(&m->lock);
	c = m->free;
	if (c)
		m->free = c->next;
	pthread_mutex_unlock(&m->lock);
	if (c)
		return c;
	c = calloc(1, sizeof(*c) + m->nservers * sizeof(c->st[0]));
	if (!c)
		return NULL;
	for (unsigned int i = 0; i < m->nservers; i++) {
		c->st[i] = conn_one(m, i);
		if (!c->st[i]) {
			conn_free(m, c);
			return NULL;
		}
	}
	return c;
}

static void conn_put(struct mc_store *m, struct mc_conn *c)
{
	pthread_mutex_lock(&m->lock);
	c->next = m->free;
	m->free = c;
	pthread_mutex_unlock(&m->lock);
}

/* ---- placement, keys, generations ---- */

/* the servers in @order, best first, for page @pg (rendezvous hashing) */
static void rank(const struct mc_store *m, uint64_t pg, unsigned int *order)
{
	uint64_t score[MC_MAX_SERVERS];

	for (unsigned int i = 0; i < m->nservers; i++) {
		uint64_t in[2] = { pg, i };
		unsigned char h[crypto_shorthash_BYTES];

		crypto_shorthash(h, (const unsigned char *)in, sizeof(in), m->rank_key);
		memcpy(&score[i], h, sizeof(score[i]));
		/* insertion sort: a handful of servers */
		unsigned int j = i;

		while (j && score[order[j - 1]] < score[i]) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
}

static size_t item_key(const struct mc_store *m, uint64_t pg, char *k)
{
	return (size_t)sprintf(k, "fl%s-%" PRIx64, m->idhex, pg);
}

static _Atomic uint64_t *gen_slot(struct mc_store *m, uint64_t pg, bool create)
{
	uint64_t idx = pg >> GEN_SHIFT;
	_Atomic uint64_t *c;

	if (idx >= GEN_CHUNKS)
		return NULL;
	c = atomic_load_explicit(&m->gens[idx], memory_order_acquire);
	if (!c && create) {
		pthread_mutex_lock(&m->lock);
		c = atomic_load_explicit(&m->gens[idx], memory_order_relaxed);
		if (!c) {
			void *p = mmap(NULL, GEN_CHUNK * sizeof(*c), PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

			if (p != MAP_FAILED) {
				/* runtime memory: a forked child has no use for it */
				madvise(p, GEN_CHUNK * sizeof(*c), MADV_DONTFORK);
				c = p;
				atomic_store_explicit(&m->gens[idx], c, memory_order_release);
			}
		}
		pthread_mutex_unlock(&m->lock);
	}
	return c ? &c[pg & (GEN_CHUNK - 1)] : NULL;
}

/* associated data: runtime id, offset, generation, magic */
static void item_ad(const struct mc_store *m, const struct mc_hdr *h, unsigned char ad[32])
{
	memcpy(ad, m->id, 16);
	memcpy(ad + 16, &h->off, 8);
	memcpy(ad + 24, &h->gen, 4);
	memcpy(ad + 28, &h->magic, 4);
}

static void item_seal(const struct mc_store *m, uint64_t off, uint32_t gen, const void *page,
		      unsigned char *item)
{
	struct mc_hdr h = { .magic = MC_MAGIC, .gen = gen, .off = off };
	unsigned char ad[32], *body = item + sizeof(h);

	if (m->encrypt)
		randombytes_buf(h.nonce, sizeof(h.nonce));
	memcpy(item, &h, sizeof(h));
	item_ad(m, &h, ad);
	if (m->encrypt) {
		crypto_aead_xchacha20poly1305_ietf_encrypt(body, NULL, page, MC_PAGE, ad, sizeof(ad),
							   NULL, h.nonce, m->key);
	} else {
		crypto_generichash_state st;

		memcpy(body, page, MC_PAGE);
		crypto_generichash_init(&st, m->key, sizeof(m->key), MC_TAG);
		crypto_generichash_update(&st, ad, sizeof(ad));
		crypto_generichash_update(&st, page, MC_PAGE);
		crypto_generichash_final(&st, body + MC_PAGE, MC_TAG);
	}
}

/* Return: true if @item (@len bytes) is page @off of generation @gen; the
 * page's bytes are then in @page */
static bool item_open(const struct mc_store *m, uint64_t off, uint32_t gen,
		      const unsigned char *item, size_t len, void *page)
{
	struct mc_hdr h;
	unsigned char ad[32];
	const unsigned char *body = item + sizeof(h);

	if (len != MC_ITEM)
		return false;
	memcpy(&h, item, sizeof(h));
	if (h.magic != MC_MAGIC || h.gen != gen || h.off != off)
		return false;
	item_ad(m, &h, ad);
	if (m->encrypt)
		return crypto_aead_xchacha20poly1305_ietf_decrypt(page, NULL, NULL, body,
								  MC_PAGE + MC_TAG, ad, sizeof(ad),
								  h.nonce, m->key) == 0;

	unsigned char mac[MC_TAG];
	crypto_generichash_state st;

	crypto_generichash_init(&st, m->key, sizeof(m->key), MC_TAG);
	crypto_generichash_update(&st, ad, sizeof(ad));
	crypto_generichash_update(&st, body, MC_PAGE);
	crypto_generichash_final(&st, mac, MC_TAG);
	if (sodium_memcmp(mac, body + MC_PAGE, MC_TAG))
		return false;
	memcpy(page, body, MC_PAGE);
	return true;
}

/* ---- the store's calls ---- */

static int rc_errno(memcached_return_t rc)
{
	switch (rc) {
	case MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE:
	case MEMCACHED_MEMORY_ALLOCATION_FAILURE:
	case MEMCACHED_E2BIG:
		return -ENOSPC;
	case MEMCACHED_TIMEOUT:
		return -ETIMEDOUT;
	default:
		return -EIO;
	}
}

/* one page: its 1 + replicas copies on the first servers of its order that
 * take them */
static int write_page(struct mc_store *m, struct mc_conn *c, uint64_t off, const void *page,
		      unsigned char *item)
{
	uint64_t pg = off / MC_PAGE;
	_Atomic uint64_t *slot = gen_slot(m, pg, true);
	unsigned int order[MC_MAX_SERVERS], stored = 0;
	uint64_t w;
	uint32_t gen;
	char key[64];
	size_t klen;
	int err = -EIO;

	if (!slot)
		return pg >> GEN_SHIFT >= GEN_CHUNKS ? -ENOSPC : -ENOMEM;
	/* only writes and discards of this offset change its word, and the
	 * runtime never runs two of them on one offset at once */
	w = atomic_load_explicit(slot, memory_order_relaxed);
	gen = (GEN_LAST(w) + 1) & 0x7fffffff;
	if (!gen)
		return -EOVERFLOW;	/* 2^31 writes of one page */
	/* handed out for good before any copy leaves */
	w = (w & 0xffffffffull) | (uint64_t)gen << 32;
	atomic_store_explicit(slot, w, memory_order_relaxed);
	item_seal(m, off, gen, page, item);
	klen = item_key(m, pg, key);
	rank(m, pg, order);
	for (unsigned int i = 0; i < m->nservers && stored <= m->replicas; i++) {
		memcached_return_t rc = memcached_set(c->st[order[i]], key, klen,
						      (const char *)item, MC_ITEM, 0, 0);

		if (rc == MEMCACHED_SUCCESS)
			stored++;
		else
			err = rc_errno(rc);
	}
	if (stored <= m->replicas)
		return err;
	/* published for readers only now: every copy is in place */
	atomic_store_explicit(slot, (uint64_t)gen << 32 | (uint64_t)gen << 1 | GEN_VALID,
			      memory_order_release);
	return 0;
}

static int mc_write(void *arg, uint64_t off, const void *buf, size_t len)
{
	struct mc_store *m = arg;
	struct mc_conn *c = conn_get(m);
	unsigned char item[MC_ITEM];
	int ret = 0;

	if (!c)
		return -ENOMEM;
	for (size_t d = 0; d < len && !ret; d += MC_PAGE)
		ret = write_page(m, c, off + d, (const char *)buf + d, item);
	conn_put(m, c);
	return ret;
}

/*
 * Read pages [@pg, @pg + @n) into @buf. Pass 0 asks each page's first
 * server, one multi-get per server; each later pass asks the next server
 * of the pages still missing.
 */
#define RUN_MAX	64

static int read_run(struct mc_store *m, struct mc_conn *c, uint64_t pg, unsigned int n,
		    char *buf)
{
	unsigned int order[RUN_MAX][MC_MAX_SERVERS];
	uint32_t gen[RUN_MAX];
	bool done[RUN_MAX];
	char keys[RUN_MAX][64];
	const char *kp[RUN_MAX];
	size_t kl[RUN_MAX], klen[RUN_MAX];
	unsigned int left = 0;

	for (unsigned int i = 0; i < n; i++) {
		_Atomic uint64_t *slot = gen_slot(m, pg + i, false);
		uint64_t w = slot ? atomic_load_explicit(slot, memory_order_acquire) : 0;

		gen[i] = GEN_CUR(w);
		done[i] = !(w & GEN_VALID);
		if (done[i]) {
			/* never written (or discarded): zeros */
			memset(buf + (size_t)i * MC_PAGE, 0, MC_PAGE);
			continue;
		}
		left++;
		klen[i] = item_key(m, pg + i, keys[i]);
		rank(m, pg + i, order[i]);
	}
	for (unsigned int pass = 0; left && pass < m->nservers; pass++) {
		for (unsigned int s = 0; s < m->nservers && left; s++) {
			unsigned int idx[RUN_MAX], k = 0;
			memcached_return_t rc;
			memcached_result_st *res;

			for (unsigned int i = 0; i < n; i++)
				if (!done[i] && order[i][pass] == s) {
					idx[k] = i;
					kp[k] = keys[i];
					kl[k] = klen[i];
					k++;
				}
			if (!k)
				continue;
			rc = memcached_mget(c->st[s], kp, kl, k);
			if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_SOME_ERRORS)
				continue;	/* the next pass asks another server */
			while ((res = memcached_fetch_result(c->st[s], NULL, &rc))) {
				const char *rk = memcached_result_key_value(res);
				size_t rkl = memcached_result_key_length(res);

				for (unsigned int j = 0; j < k; j++) {
					unsigned int i = idx[j];

					if (done[i] || rkl != klen[i] ||
					    memcmp(rk, keys[i], rkl))
						continue;
					if (item_open(m, (pg + i) * MC_PAGE, gen[i],
						      (const unsigned char *)
						      memcached_result_value(res),
						      memcached_result_length(res),
						      buf + (size_t)i * MC_PAGE)) {
						done[i] = true;
						left--;
					}
					break;
				}
				memcached_result_free(res);
			}
		}
	}
	return left ? -EIO : 0;
}

static int mc_read(void *arg, uint64_t off, void *buf, size_t len)
{
	struct mc_store *m = arg;
	struct mc_conn *c = conn_get(m);
	size_t npages = len / MC_PAGE;
	int ret = 0;

	if (!c)
		return -ENOMEM;
	for (size_t d = 0; d < npages && !ret; d += RUN_MAX) {
		unsigned int n = npages - d < RUN_MAX ? (unsigned int)(npages - d) : RUN_MAX;

		ret = read_run(m, c, off / MC_PAGE + d, n, (char *)buf + d * MC_PAGE);
	}
	conn_put(m, c);
	return ret;
}

static int mc_discard(void *arg, uint64_t off, size_t len)
{
	struct mc_store *m = arg;
	struct mc_conn *c = NULL;

	for (uint64_t pg = off / MC_PAGE; pg < (off + len) / MC_PAGE; pg++) {
		_Atomic uint64_t *slot = gen_slot(m, pg, false);
		uint64_t g = slot ? atomic_load_explicit(slot, memory_order_relaxed) : 0;
		unsigned int order[MC_MAX_SERVERS];
		char key[64];
		size_t klen;

		if (!(g & GEN_VALID))
			continue;
		/* the generation stays: a copy a delete below misses can never
		 * pass for a later write of this offset */
		atomic_store_explicit(slot, g & ~GEN_VALID, memory_order_release);
		if (!c && !(c = conn_get(m)))
			continue;	/* the copies stay until the servers evict them */
		klen = item_key(m, pg, key);
		rank(m, pg, order);
		for (unsigned int i = 0; i <= m->replicas; i++)
			memcached_delete(c->st[order[i]], key, klen, 0);
	}
	if (c)
		conn_put(m, c);
	return 0;
}

static void mc_destroy(void *arg)
{
	struct mc_store *m = arg;
	struct mc_conn *c;

	while ((c = m->free)) {
		m->free = c->next;
		conn_free(m, c);
	}
	for (size_t i = 0; i < GEN_CHUNKS; i++) {
		_Atomic uint64_t *g = atomic_load_explicit(&m->gens[i], memory_order_relaxed);

		if (g)
			munmap((void *)g, GEN_CHUNK * sizeof(*g));
	}
	pthread_mutex_destroy(&m->lock);
	sodium_memzero(m->key, sizeof(m->key));
	free(m);
}

/* every server answers a version request, or the store is not made */
static int check_servers(struct mc_store *m, char *err, size_t errlen)
{
	struct mc_conn *c = conn_get(m);
	int ret = 0;

	if (!c)
		return why(err, errlen, -ENOMEM, "out of memory");
	for (unsigned int i = 0; i < m->nservers && !ret; i++) {
		memcached_return_t rc = memcached_version(c->st[i]);

		if (rc != MEMCACHED_SUCCESS) {
			int e = memcached_last_error_errno(c->st[i]);

			ret = why(err, errlen, -ECONNREFUSED, "server %s:%u does not answer (%s)",
				  m->srv[i].host, m->srv[i].port, e ? strerror(e) :
				  memcached_strerror(c->st[i], memcached_last_error(c->st[i])));
		}
	}
	if (ret)
		conn_free(m, c);
	else
		conn_put(m, c);
	return ret;
}

FL_EXPORT int fl_store_memcached_create(const char *url, unsigned int flags,
					struct fl_store **out, char *err, size_t errlen)
{
	struct fl_store_ops ops = {
		.size = sizeof(ops),
		.read = mc_read,
		.write = mc_write,
		.discard = mc_discard,
		.destroy = mc_destroy,
	};
	struct mc_store *m;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	if (!url || !out || flags)
		return why(err, errlen, -EINVAL, "%s", !url ? "no URL" : !out ? "no out" :
			   "unknown flags");
	if (sodium_init() < 0)
		return why(err, errlen, -ENOSYS, "libsodium cannot be initialised");
	m = calloc(1, sizeof(*m));
	if (!m)
		return why(err, errlen, -ENOMEM, "out of memory");
	pthread_mutex_init(&m->lock, NULL);
	ret = parse_url(m, url, err, errlen);
	if (!ret)
		ret = check_servers(m, err, errlen);
	if (ret) {
		mc_destroy(m);
		return ret;
	}
	randombytes_buf(m->id, sizeof(m->id));
	sodium_bin2hex(m->idhex, sizeof(m->idhex), m->id, sizeof(m->id));
	randombytes_buf(m->key, sizeof(m->key));
	randombytes_buf(m->rank_key, sizeof(m->rank_key));
	ret = fl_store_callbacks_create(&ops, m, out);
	if (ret) {
		mc_destroy(m);
		return why(err, errlen, ret, "%s", strerror(-ret));
	}
	return 0;
}
