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
 * id, offset and generation as associated data, by default; Poly1305
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
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
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
#define MC_TAG		16u	/* the Poly1305 tag, of the AEAD or of item_mac() */
#define MC_ITEM		(sizeof(struct mc_hdr) + MC_PAGE + MC_TAG)

struct mc_server {
	char host[256];
	unsigned int port;
};

struct rbuf {
	size_t head, tail;
	unsigned char b[16384];
};

struct mc_conn {
	struct mc_conn *next;
	int *fd;		/* raw sockets, -1: none yet */
	struct rbuf *rb;	/* their receive buffers */
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
	unsigned char nonce_prefix[16];
	_Atomic uint64_t nonces;
	int timeout_ms;
	unsigned int lease;		/* seconds an item lives unless renewed; 0: for ever */
#define LEASE_MIN 10			/* see renewer() */
	/* a server that failed (refused, timed out) is not asked again before
	 * this (CLOCK_MONOTONIC ms): a host that is down would cost every
	 * batch its connect timeout */
	_Atomic int64_t down_until[MC_MAX_SERVERS];
	/* when it began to fail (0: it answers): a server is lost once it
	 * has failed for a whole timeout with no answer in between */
	_Atomic int64_t fail_since[MC_MAX_SERVERS];
	pthread_t renewer;
	bool renewing, stop;
	pthread_cond_t wake;

	/* page-in reads run on the callbacks store's workers (store.c): a
	 * handler never waits on the network */
	struct fl_store *inner;

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
	m->lease = 600;
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
		} else if (klen == 5 && !strncmp(p, "lease", 5)) {
			char *e;
			unsigned long t;

			errno = 0;
			t = strtoul(v, &e, 10);
			/* memcached reads an expiry over 30 days as a date;
			 * under LEASE_MIN a renewal pass has no time (see
			 * renewer()) */
			if (e != pe || errno || (t && t < LEASE_MIN) || t > 2592000)
				return why(err, errlen, -EINVAL,
					   "lease=%.*s: want seconds, %u to 2592000, or 0 (never)",
					   (int)vlen, v, LEASE_MIN);
			m->lease = (unsigned int)t;
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
				   "unknown option '%.*s' (replicas, encrypt, lease, timeout)",
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
	for (unsigned int i = 0; i < m->nservers; i++) {
		if (c->st[i])
			memcached_free(c->st[i]);
		if (c->fd && c->fd[i] >= 0)
			close(c->fd[i]);
	}
	free(c->fd);
	free(c->rb);
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
	c->fd = malloc(m->nservers * sizeof(*c->fd));
	c->rb = calloc(m->nservers, sizeof(*c->rb));
	if (!c->fd || !c->rb) {
		free(c->fd);
		free(c->rb);
		free(c);
		return NULL;
	}
	for (unsigned int i = 0; i < m->nservers; i++)
		c->fd[i] = -1;
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

/*
 * The tag of a page kept in clear (encrypt=no): Poly1305 over the
 * associated data and the page, under a one-time key drawn from XChaCha20
 * at the item's nonce, which never repeats under the key. That is the
 * AEAD's own tag with the encryption left out: a keyed BLAKE2b of the
 * page cost twice the whole AEAD (10.6 us against 4.8 us a page here).
 */
static void item_mac(const struct mc_store *m, const unsigned char *nonce,
		     const unsigned char ad[32], const void *page, unsigned char *tag)
{
	unsigned char otk[crypto_onetimeauth_KEYBYTES];
	crypto_onetimeauth_state st;

	crypto_stream_xchacha20(otk, sizeof(otk), nonce, m->key);
	crypto_onetimeauth_init(&st, otk);
	crypto_onetimeauth_update(&st, ad, 32);
	crypto_onetimeauth_update(&st, page, MC_PAGE);
	crypto_onetimeauth_final(&st, tag);
	sodium_memzero(otk, sizeof(otk));
}

static void item_seal(struct mc_store *m, uint64_t off, uint32_t gen, const void *page,
		      unsigned char *item)
{
	struct mc_hdr h = { .magic = MC_MAGIC, .gen = gen, .off = off };
	unsigned char ad[32], *body = item + sizeof(h);
	/* unique under the key: a random prefix drawn once and a counter (a
	 * system call per item would cost more than the cipher) */
	uint64_t n = atomic_fetch_add_explicit(&m->nonces, 1, memory_order_relaxed);

	memcpy(h.nonce, m->nonce_prefix, 16);
	memcpy(h.nonce + 16, &n, 8);
	memcpy(item, &h, sizeof(h));
	item_ad(m, &h, ad);
	if (m->encrypt) {
		crypto_aead_xchacha20poly1305_ietf_encrypt(body, NULL, page, MC_PAGE, ad, sizeof(ad),
							   NULL, h.nonce, m->key);
	} else {
		memcpy(body, page, MC_PAGE);
		item_mac(m, h.nonce, ad, page, body + MC_PAGE);
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

	item_mac(m, h.nonce, ad, body, mac);
	if (crypto_verify_16(mac, body + MC_PAGE))
		return false;
	memcpy(page, body, MC_PAGE);
	return true;
}

/* ---- the store's calls ---- */

/*
 * Writes are pipelined on raw sockets in memcached's binary protocol:
 * each server gets all of a batch's copies for it as quiet sets (SETQ,
 * which answer only on failure) and a NOOP, in one send; its answers up to
 * the NOOP's name exactly the copies that failed (by the opaque field). A
 * server that does not take all of it in time (the store's timeout) is
 * cut off and every copy sent to it counts as failed. libmemcached's own
 * quiet or buffered sets drop their errors, and a write must know.
 */
#define BIN_REQ		0x80
#define BIN_RES		0x81
#define BIN_SETQ	0x11
#define BIN_NOOP	0x0a
#define BIN_NOMEM	0x82	/* status: out of memory (-M) */
#define BIN_E2BIG	0x03	/* status: value too large */

struct bin_hdr {
	uint8_t magic, opcode;
	uint16_t keylen;	/* big endian, as every field below */
	uint8_t extlen, dtype;
	uint16_t status;	/* vbucket in a request */
	uint32_t bodylen, opaque;
	uint64_t cas;
} __attribute__((packed));

#define DOWN_MS	1000

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void mark_down(struct mc_store *m, unsigned int s)
{
	int64_t now = now_ms(), none = 0;
	int64_t skip = m->timeout_ms / 2 < DOWN_MS ? m->timeout_ms / 2 : DOWN_MS;

	atomic_compare_exchange_strong_explicit(&m->fail_since[s], &none, now,
						memory_order_relaxed, memory_order_relaxed);
	atomic_store_explicit(&m->down_until[s], now + skip, memory_order_relaxed);
}

/* server @s answered a whole batch */
static void mark_up(struct mc_store *m, unsigned int s)
{
	if (atomic_load_explicit(&m->fail_since[s], memory_order_relaxed))
		atomic_store_explicit(&m->fail_since[s], 0, memory_order_relaxed);
}

/* has server @s failed, but for less than a timeout? */
static bool failing(struct mc_store *m, unsigned int s, int64_t now)
{
	int64_t since = atomic_load_explicit(&m->fail_since[s], memory_order_relaxed);

	return since && now < since + m->timeout_ms;
}

static int raw_connect(struct mc_store *m, unsigned int i)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *a;
	struct timeval tv = { .tv_sec = m->timeout_ms / 1000,
			      .tv_usec = (m->timeout_ms % 1000) * 1000 };
	char port[8];
	int fd = -1, one = 1;

	snprintf(port, sizeof(port), "%u", m->srv[i].port);
	if (getaddrinfo(m->srv[i].host, port, &hints, &res))
		return -1;
	for (a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		/* the timeouts bound connect(), every send and every receive */
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, a->ai_addr, a->ai_addrlen)) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

static bool send_all(int fd, const void *buf, size_t len)
{
	for (size_t d = 0; d < len;) {
		ssize_t r = send(fd, (const char *)buf + d, len - d, MSG_NOSIGNAL);

		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return false;
		}
		d += (size_t)r;
	}
	return true;
}

/* @len bytes from server @s, through its receive buffer */
static bool conn_recv(struct mc_conn *c, unsigned int s, void *dst, size_t len)
{
	struct rbuf *b = &c->rb[s];

	while (len) {
		size_t k;

		if (b->head == b->tail) {
			ssize_t r;

			do
				r = recv(c->fd[s], b->b, sizeof(b->b), 0);
			while (r < 0 && errno == EINTR);
			if (r <= 0)
				return false;
			b->head = 0;
			b->tail = (size_t)r;
		}
		k = len < b->tail - b->head ? len : b->tail - b->head;
		memcpy(dst, b->b + b->head, k);
		b->head += k;
		dst = (char *)dst + k;
		len -= k;
	}
	return true;
}

/* server @s's connection is out of step (cut off mid-answer, timed out):
 * closed, made again at its next use */
static void conn_cut(struct mc_conn *c, unsigned int s)
{
	if (c->fd[s] >= 0)
		close(c->fd[s]);
	c->fd[s] = -1;
	c->rb[s].head = c->rb[s].tail = 0;
}

/* the same, and the server is not asked again for DOWN_MS */
static void conn_fail(struct mc_store *m, struct mc_conn *c, unsigned int s)
{
	conn_cut(c, s);
	mark_down(m, s);
}

/* a connection to server @s, made if needed; -1 while it is down */
static int conn_fd(struct mc_store *m, struct mc_conn *c, unsigned int s)
{
	if (c->fd[s] >= 0)
		return c->fd[s];
	if (now_ms() < atomic_load_explicit(&m->down_until[s], memory_order_relaxed))
		return -1;
	c->fd[s] = raw_connect(m, s);
	if (c->fd[s] < 0)
		mark_down(m, s);
	return c->fd[s];
}

/*
 * End @req (@len bytes of requests, room for one more header) with a NOOP
 * and send it to server @s. Return: false if it could not be sent (the
 * server is then marked failed).
 */
static bool send_batch(struct mc_store *m, struct mc_conn *c, unsigned int s,
		       unsigned char *req, size_t len)
{
	struct bin_hdr h = { .magic = BIN_REQ, .opcode = BIN_NOOP, .opaque = htonl(~0u) };

	memcpy(req + len, &h, sizeof(h));
	len += sizeof(h);
	if (conn_fd(m, c, s) < 0)
		return false;	/* down: marked once, not again for each batch */
	if (send_all(c->fd[s], req, len))
		return true;
	conn_fail(m, c, s);
	return false;
}

/*
 * The next answer of server @s to a batch, its body (an error's text, an
 * echo) skipped: the header in @h. Return: false if the server cut it off
 * (then marked failed); the batch ends with the NOOP's answer.
 */
static bool next_answer(struct mc_store *m, struct mc_conn *c, unsigned int s,
			struct bin_hdr *h)
{
	unsigned char body[256];
	uint32_t blen;

	if (!conn_recv(c, s, h, sizeof(*h)) || h->magic != BIN_RES)
		goto cut;
	blen = ntohl(h->bodylen);
	for (uint32_t d = 0; d < blen;) {
		uint32_t k = blen - d < sizeof(body) ? blen - d : (uint32_t)sizeof(body);

		if (!conn_recv(c, s, body, k))
			goto cut;
		d += k;
	}
	return true;
cut:
	conn_fail(m, c, s);
	return false;
}

/* one copy to send: the page (index into the batch) and its server */
struct wcopy {
	unsigned int page, srv;
};

/* a page of a write batch */
struct wpage {
	uint64_t off;
	uint32_t gen;
	unsigned int next;	/* the next server of its order to try */
	unsigned int stored;
	int err;
	unsigned int order[MC_MAX_SERVERS];
	char key[64];
	uint16_t klen;
	unsigned char item[MC_ITEM];
};

/*
 * Send @n copies (all to server @srv) in one pipeline; @ok[i] set for each
 * copy the server took. @buf: room for n requests and a NOOP.
 */
static void pipeline(struct mc_store *m, struct mc_conn *c, unsigned int srv,
		     struct wpage *pages, const struct wcopy *cp, unsigned int n, bool *ok,
		     int *err, unsigned char *buf)
{
	size_t len = 0;
	struct bin_hdr h;

	for (unsigned int i = 0; i < n; i++) {
		struct wpage *p = &pages[cp[i].page];
		struct bin_hdr rq = {
			.magic = BIN_REQ, .opcode = BIN_SETQ, .keylen = htons(p->klen),
			.extlen = 8, .bodylen = htonl(8 + p->klen + (uint32_t)MC_ITEM),
			.opaque = htonl(i),
		};

		memcpy(buf + len, &rq, sizeof(rq));
		memset(buf + len + sizeof(rq), 0, 4);	/* flags */
		{
			uint32_t exp = htonl(m->lease);	/* the lease (see renew()) */

			memcpy(buf + len + sizeof(rq) + 4, &exp, 4);
		}
		len += sizeof(rq) + 8;
		memcpy(buf + len, p->key, p->klen);
		len += p->klen;
		memcpy(buf + len, p->item, MC_ITEM);
		len += MC_ITEM;
		ok[i] = true;
	}
	if (!send_batch(m, c, srv, buf, len))
		goto cut;
	while (next_answer(m, c, srv, &h)) {
		uint32_t op;

		if (h.opcode == BIN_NOOP)
			return;
		op = ntohl(h.opaque);
		if (op < n && h.status) {
			ok[op] = false;
			*err = ntohs(h.status) == BIN_NOMEM || ntohs(h.status) == BIN_E2BIG ?
			       -ENOSPC : -EIO;
		}
	}
cut:
	/* what the server took of it is unknown: none counts */
	for (unsigned int i = 0; i < n; i++)
		ok[i] = false;
	*err = -EIO;
}

/*
 * Write every page of @reqs (STORE_WRITE requests): each page's 1 +
 * replicas copies on the first servers of its order that take them. A
 * round sends each page's missing copies to the next servers of its order,
 * one pipeline per server; the rounds end when every page has its copies
 * or has no server left.
 */
static void write_batch(struct mc_store *m, struct mc_conn *c, struct store_req **reqs,
			unsigned int nreq)
{
	size_t npages = 0, k = 0;
	struct wpage *pages;
	struct wcopy *cp, *mine;
	unsigned char *buf;
	bool *ok, more = true;

	for (unsigned int r = 0; r < nreq; r++)
		npages += reqs[r]->len / MC_PAGE;
	pages = malloc(npages * sizeof(*pages));
	cp = malloc(npages * m->nservers * sizeof(*cp));
	mine = malloc(npages * sizeof(*mine));
	ok = malloc(npages * sizeof(*ok));
	buf = malloc(npages * (sizeof(struct bin_hdr) + 8 + 64 + MC_ITEM) +
		     sizeof(struct bin_hdr));
	if (!pages || !cp || !mine || !ok || !buf) {
		for (unsigned int r = 0; r < nreq; r++)
			reqs[r]->res = -ENOMEM;
		goto out;
	}
	for (unsigned int r = 0; r < nreq; r++) {
		reqs[r]->res = 0;
		for (size_t d = 0; d < reqs[r]->len; d += MC_PAGE, k++) {
			struct wpage *p = &pages[k];
			uint64_t pg = (reqs[r]->off + d) / MC_PAGE, w;
			_Atomic uint64_t *slot = gen_slot(m, pg, true);

			p->off = reqs[r]->off + d;
			p->next = p->stored = 0;
			p->err = 0;
			if (!slot) {
				p->err = pg >> GEN_SHIFT >= GEN_CHUNKS ? -ENOSPC : -ENOMEM;
				p->next = m->nservers;	/* nothing to try */
				continue;
			}
			/* only writes and discards of an offset change its
			 * word, and the runtime never runs two of them on one
			 * offset at once */
			w = atomic_load_explicit(slot, memory_order_relaxed);
			p->gen = (GEN_LAST(w) + 1) & 0x7fffffff;
			if (!p->gen) {
				p->err = -EOVERFLOW;	/* 2^31 writes of one page */
				p->next = m->nservers;
				continue;
			}
			/* handed out for good before any copy leaves */
			atomic_store_explicit(slot, (w & 0xffffffffull) | (uint64_t)p->gen << 32,
					      memory_order_relaxed);
			item_seal(m, p->off, p->gen, (const char *)reqs[r]->buf + d, p->item);
			p->klen = (uint16_t)item_key(m, pg, p->key);
			rank(m, pg, p->order);
		}
	}
	while (more) {
		size_t ncp = 0;

		/* each page short of its copies: as many more servers of its
		 * order as copies are missing */
		for (size_t i = 0; i < npages; i++) {
			struct wpage *p = &pages[i];

			for (unsigned int need = m->replicas + 1 - p->stored;
			     need && p->stored <= m->replicas && p->next < m->nservers; need--)
				cp[ncp++] = (struct wcopy){ (unsigned int)i, p->order[p->next++] };
		}
		more = ncp > 0;
		for (unsigned int s = 0; s < m->nservers && more; s++) {
			unsigned int n = 0;
			int err = 0;

			for (size_t i = 0; i < ncp; i++)
				if (cp[i].srv == s)
					mine[n++] = cp[i];
			if (!n)
				continue;
			pipeline(m, c, s, pages, mine, n, ok, &err, buf);
			for (unsigned int i = 0; i < n; i++) {
				if (ok[i])
					pages[mine[i].page].stored++;
				else
					pages[mine[i].page].err = err;
			}
		}
	}
	k = 0;
	for (unsigned int r = 0; r < nreq; r++)
		for (size_t d = 0; d < reqs[r]->len; d += MC_PAGE, k++) {
			struct wpage *p = &pages[k];

			if (p->stored <= m->replicas) {
				if (!reqs[r]->res)
					reqs[r]->res = p->err ? p->err : -EIO;
				continue;
			}
			/* published for readers only now: every copy is in place */
			atomic_store_explicit(gen_slot(m, p->off / MC_PAGE, false),
					      (uint64_t)p->gen << 32 | (uint64_t)p->gen << 1 |
					      GEN_VALID, memory_order_release);
		}
out:
	free(pages);
	free(cp);
	free(mine);
	free(ok);
	free(buf);
}

/*
 * Read pages [@pg, @pg + @n) into @buf. Pass 0 asks each page's first
 * server, each later pass the next server of the pages still without a
 * good copy. A pass sends every server its quiet gets (GETKQ: only hits
 * answer, named by the opaque field) and a NOOP first, then reads the
 * answers: the servers work at once, one round trip a pass. (The same for
 * libmemcached's multi-get costs a system call per key and a round trip
 * per server in turn.)
 */
#define RUN_MAX	64
#define BIN_GETKQ 0x0d

/* the answers of server @srv up to its NOOP; Return: false if cut off */
static bool read_answers(struct mc_store *m, struct mc_conn *c, unsigned int srv, uint64_t pg,
			 unsigned int n, const uint32_t *gen, bool *done, unsigned int *left,
			 char *buf, unsigned char *item)
{
	for (;;) {
		struct bin_hdr h;
		uint32_t blen, op, vlen;
		unsigned char extra[4];
		char key[256];
		bool fits;

		if (!conn_recv(c, srv, &h, sizeof(h)) || h.magic != BIN_RES)
			return false;
		blen = ntohl(h.bodylen);
		op = ntohl(h.opaque);
		if (h.opcode == BIN_NOOP && !blen) {
			mark_up(m, srv);
			return true;
		}
		/* a hit: 4 bytes of flags, the key, the value */
		if (h.extlen != 4 || ntohs(h.keylen) > sizeof(key) ||
		    blen < 4u + ntohs(h.keylen))
			return false;
		vlen = blen - 4 - ntohs(h.keylen);
		fits = vlen == MC_ITEM;
		if (!conn_recv(c, srv, extra, 4) ||
		    !conn_recv(c, srv, key, ntohs(h.keylen)))
			return false;
		if (fits) {
			if (!conn_recv(c, srv, item, MC_ITEM))
				return false;
		} else {
			for (uint32_t d = 0; d < vlen;) {	/* not ours: skipped */
				uint32_t k = vlen - d < MC_ITEM ? vlen - d : (uint32_t)MC_ITEM;

				if (!conn_recv(c, srv, item, k))
					return false;
				d += k;
			}
		}
		if (h.status || !fits || op >= n || done[op])
			continue;
		/* the item must verify as this page of this generation: the
		 * key alone proves nothing (anyone can write to it) */
		if (item_open(m, (pg + op) * MC_PAGE, gen[op], item, MC_ITEM,
			      buf + (size_t)op * MC_PAGE)) {
			done[op] = true;
			(*left)--;
		}
	}
}

/* a run being read: its pages, what is known of them, and the buffers */
struct run_read {
	uint64_t pg;			/* the first page */
	unsigned int n, left;		/* pages; not read yet */
	unsigned int order[RUN_MAX][MC_MAX_SERVERS];
	uint32_t gen[RUN_MAX];
	bool done[RUN_MAX];
	bool unreached[MC_MAX_SERVERS];	/* a server that could not answer */
	char *buf;
	unsigned char *item;
	unsigned char req[(sizeof(struct bin_hdr) + 64) * RUN_MAX + sizeof(struct bin_hdr)];
};

/* ask each server for the pages not read yet whose @pass-th choice it is */
static void read_position(struct mc_store *m, struct mc_conn *c, struct run_read *rr,
			  unsigned int pass)
{
	bool sent[MC_MAX_SERVERS];

	for (unsigned int s = 0; s < m->nservers; s++) {
		size_t len = 0;

		for (unsigned int i = 0; i < rr->n; i++) {
			struct bin_hdr h;
			char key[64];
			uint16_t kl;

			if (rr->done[i] || rr->order[i][pass] != s)
				continue;
			kl = (uint16_t)item_key(m, rr->pg + i, key);
			h = (struct bin_hdr){ .magic = BIN_REQ, .opcode = BIN_GETKQ,
					      .keylen = htons(kl), .bodylen = htonl(kl),
					      .opaque = htonl(i) };
			memcpy(rr->req + len, &h, sizeof(h));
			memcpy(rr->req + len + sizeof(h), key, kl);
			len += sizeof(h) + kl;
		}
		sent[s] = len && send_batch(m, c, s, rr->req, len);
		rr->unreached[s] |= len && !sent[s];
	}
	for (unsigned int s = 0; s < m->nservers; s++) {
		if (!sent[s] || read_answers(m, c, s, rr->pg, rr->n, rr->gen, rr->done, &rr->left,
					     rr->buf, rr->item))
			continue;
		conn_fail(m, c, s);	/* cut off mid-answer */
		rr->unreached[s] = true;
	}
}

static int read_run(struct mc_store *m, struct mc_conn *c, uint64_t pg, unsigned int n,
		    char *buf)
{
	struct run_read *rr = malloc(sizeof(*rr) + MC_ITEM);

	if (!rr)
		return -ENOMEM;
	rr->pg = pg;
	rr->n = n;
	rr->left = 0;
	rr->buf = buf;
	rr->item = (unsigned char *)(rr + 1);
	for (unsigned int i = 0; i < n; i++) {
		_Atomic uint64_t *slot = gen_slot(m, pg + i, false);
		uint64_t w = slot ? atomic_load_explicit(slot, memory_order_acquire) : 0;

		rr->gen[i] = GEN_CUR(w);
		rr->done[i] = !(w & GEN_VALID);
		if (rr->done[i]) {
			/* never written (or discarded): zeros */
			memset(buf + (size_t)i * MC_PAGE, 0, MC_PAGE);
			continue;
		}
		rr->left++;
		rank(m, pg + i, rr->order[i]);
	}
	/*
	 * Race: a server fails for a moment (a timeout on a loaded machine,
	 * a connection cut) while it holds the only copy of a page. The
	 * page's read waits for it, asking again, until the server has
	 * failed for a whole timeout; only then does the read fail (and
	 * the access see SIGBUS). A server that answers but has no valid
	 * copy fails the page at once.
	 */
	for (;;) {
		bool wait = false;
		int64_t now;

		memset(rr->unreached, 0, sizeof(rr->unreached));
		for (unsigned int pass = 0; rr->left && pass < m->nservers; pass++)
			read_position(m, c, rr, pass);
		if (!rr->left)
			break;
		now = now_ms();
		for (unsigned int s = 0; s < m->nservers; s++)
			wait |= rr->unreached[s] && failing(m, s, now);
		if (!wait)
			break;
		usleep(20000);
	}
	n = rr->left;
	free(rr);
	return n ? -EIO : 0;
}

static int read_pages(struct mc_store *m, struct mc_conn *c, uint64_t off, void *buf,
		      size_t len)
{
	size_t npages = len / MC_PAGE;
	int ret = 0;

	for (size_t d = 0; d < npages && !ret; d += RUN_MAX) {
		unsigned int n = npages - d < RUN_MAX ? (unsigned int)(npages - d) : RUN_MAX;

		ret = read_run(m, c, off / MC_PAGE + d, n, (char *)buf + d * MC_PAGE);
	}
	return ret;
}

static int mc_read(void *arg, uint64_t off, void *buf, size_t len)
{
	struct mc_store *m = arg;
	struct mc_conn *c = conn_get(m);
	int ret;

	if (!c)
		return -ENOMEM;
	ret = read_pages(m, c, off, buf, len);
	conn_put(m, c);
	return ret;
}

/*
 * Discard: the offsets stop holding pages (reads of them are zeros from
 * now on, without asking a server), and their copies are deleted, 256
 * pages at a time in one pipeline per server (quiet deletes, a NOOP, the
 * answers drained). The generation stays: a copy a delete misses (a
 * server unreachable now) can never pass for a later write of the offset.
 * A region that leaves discards all of its pages at once.
 */
#define BIN_DELETEQ 0x14
#define DISCARD_CHUNK 256

static void delete_chunk(struct mc_store *m, struct mc_conn *c, const uint64_t *pgs,
			 unsigned int n, unsigned char *req)
{
	bool sent[MC_MAX_SERVERS];

	for (unsigned int s = 0; s < m->nservers; s++) {
		size_t len = 0;
		struct bin_hdr h;

		sent[s] = false;
		for (unsigned int i = 0; i < n; i++) {
			unsigned int order[MC_MAX_SERVERS];
			char key[64];
			uint16_t kl;
			bool mine = false;

			/* the servers a copy can be on: the first 1 + replicas
			 * of its order, or further down if one refused a write
			 * (that copy is left to the server's LRU) */
			rank(m, pgs[i], order);
			for (unsigned int j = 0; j <= m->replicas; j++)
				mine |= order[j] == s;
			if (!mine)
				continue;
			kl = (uint16_t)item_key(m, pgs[i], key);
			h = (struct bin_hdr){ .magic = BIN_REQ, .opcode = BIN_DELETEQ,
					      .keylen = htons(kl), .bodylen = htonl(kl) };
			memcpy(req + len, &h, sizeof(h));
			memcpy(req + len + sizeof(h), key, kl);
			len += sizeof(h) + kl;
		}
		if (len)
			sent[s] = send_batch(m, c, s, req, len);
	}
	for (unsigned int s = 0; s < m->nservers; s++) {
		struct bin_hdr h;

		/* the answers: "not found" for copies never made; up to the NOOP */
		while (sent[s] && next_answer(m, c, s, &h) && h.opcode != BIN_NOOP)
			;
	}
}

static int mc_discard(void *arg, uint64_t off, size_t len)
{
	struct mc_store *m = arg;
	struct mc_conn *c = conn_get(m);
	uint64_t pgs[DISCARD_CHUNK];
	unsigned char *req = malloc((sizeof(struct bin_hdr) + 64) * DISCARD_CHUNK +
				    sizeof(struct bin_hdr));
	unsigned int n = 0;

	for (uint64_t pg = off / MC_PAGE; pg < (off + len) / MC_PAGE; pg++) {
		_Atomic uint64_t *slot = gen_slot(m, pg, false);
		uint64_t g = slot ? atomic_load_explicit(slot, memory_order_relaxed) : 0;

		if (!(g & GEN_VALID))
			continue;
		atomic_store_explicit(slot, g & ~GEN_VALID, memory_order_release);
		if (!c || !req)
			continue;	/* the copies stay until the servers evict them */
		pgs[n++] = pg;
		if (n == DISCARD_CHUNK) {
			delete_chunk(m, c, pgs, n, req);
			n = 0;
		}
	}
	if (n)
		delete_chunk(m, c, pgs, n, req);
	free(req);
	if (c)
		conn_put(m, c);
	return 0;
}

static int mc_write(void *arg, uint64_t off, const void *buf, size_t len)
{
	struct mc_store *m = arg;
	struct store_req r = { .op = STORE_WRITE, .off = off, .buf = (void *)buf, .len = len };
	struct store_req *rp = &r;
	struct mc_conn *c = conn_get(m);

	if (!c)
		return -ENOMEM;
	write_batch(m, c, &rp, 1);
	conn_put(m, c);
	return r.res;
}

/* a batch: its writes in one pipelined round per server, its reads each a
 * multi-get */
static int mc_io(struct fl_store *s, struct store_req *reqs, unsigned int n)
{
	struct mc_store *m = s->priv;
	struct store_req *w[64];
	unsigned int nw = 0;
	int first = 0;
	struct mc_conn *c = conn_get(m);

	if (!c) {
		for (unsigned int i = 0; i < n; i++)
			reqs[i].res = -ENOMEM;
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < n; i++) {
		if (reqs[i].op == STORE_READ) {
			reqs[i].res = read_pages(m, c, reqs[i].off, reqs[i].buf, reqs[i].len);
			continue;
		}
		w[nw++] = &reqs[i];
		if (nw == 64 || i == n - 1) {
			write_batch(m, c, w, nw);
			nw = 0;
		}
	}
	if (nw)
		write_batch(m, c, w, nw);
	conn_put(m, c);
	for (unsigned int i = 0; i < n && !first; i++)
		first = reqs[i].res;
	return first;
}

static int mc_read_async(struct fl_store *s, struct store_areq *a)
{
	struct mc_store *m = s->priv;

	return m->inner->vt->read_async(m->inner, a);
}

static int mc_discard_v(struct fl_store *s, uint64_t off, size_t len)
{
	return mc_discard(s->priv, off, len);
}

static void mc_destroy_v(struct fl_store *s)
{
	struct mc_store *m = s->priv;

	/* the callbacks store joins its workers, then mc_destroy() frees @m */
	fl_store_destroy(m->inner);
}

static const struct store_vtbl mc_vtbl = {
	.name = "memcached",
	.io = mc_io,
	.read_async = mc_read_async,
	.discard = mc_discard_v,
	.destroy = mc_destroy_v,
};

/*
 * Leases. Every item is stored with an expiry of `lease` seconds, and a
 * thread of the store renews the items of every page it holds each third
 * of that (TOUCH, pipelined like the writes): a process that ends without
 * destroying its store (the shim's never is), or is killed, leaves nothing
 * in the pool past its lease, where the servers, which run with -M, would
 * otherwise keep its pages until they restart. A page's copies are renewed
 * where a read looks for them: down its server order until 1 + replicas
 * renewals succeed. The price: a process stopped for longer than its lease
 * loses its evicted pages (their reads fail: SIGBUS). lease=0 stores items
 * for ever.
 */
#define BIN_TOUCH 0x1c

/* renew the copies of pages @pgs; one round per server position */
static void renew_chunk(struct mc_store *m, struct mc_conn *c, const uint64_t *pgs,
			unsigned int n, unsigned char *req)
{
	unsigned int order[DISCARD_CHUNK][MC_MAX_SERVERS], next[DISCARD_CHUNK];
	unsigned int good[DISCARD_CHUNK], idx[DISCARD_CHUNK];
	bool more = true;

	for (unsigned int i = 0; i < n; i++) {
		rank(m, pgs[i], order[i]);
		next[i] = good[i] = 0;
	}
	while (more) {
		more = false;
		for (unsigned int s = 0; s < m->nservers; s++) {
			size_t len = 0;
			unsigned int k = 0;
			struct bin_hdr h;
			uint32_t exp = htonl(m->lease);

			for (unsigned int i = 0; i < n; i++) {
				char key[64];
				uint16_t kl;

				if (good[i] > m->replicas || next[i] >= m->nservers ||
				    order[i][next[i]] != s)
					continue;
				next[i]++;
				kl = (uint16_t)item_key(m, pgs[i], key);
				h = (struct bin_hdr){ .magic = BIN_REQ, .opcode = BIN_TOUCH,
						      .keylen = htons(kl), .extlen = 4,
						      .bodylen = htonl(4u + kl), .opaque = htonl(k) };
				memcpy(req + len, &h, sizeof(h));
				memcpy(req + len + sizeof(h), &exp, 4);
				memcpy(req + len + sizeof(h) + 4, key, kl);
				len += sizeof(h) + 4 + kl;
				idx[k++] = i;
			}
			if (!k)
				continue;
			more = true;
			if (!send_batch(m, c, s, req, len))
				continue;
			while (next_answer(m, c, s, &h) && h.opcode != BIN_NOOP) {
				uint32_t op = ntohl(h.opaque);

				if (op < k && !h.status)
					good[idx[op]]++;
			}
		}
	}
}

/* the pages the store holds, DISCARD_CHUNK at a time, to @fn */
static void for_each_page(struct mc_store *m, struct mc_conn *c, unsigned char *req,
			  void (*fn)(struct mc_store *, struct mc_conn *, const uint64_t *,
				     unsigned int, unsigned char *))
{
	uint64_t pgs[DISCARD_CHUNK];
	unsigned int n = 0;

	for (uint64_t i = 0; i < GEN_CHUNKS; i++) {
		_Atomic uint64_t *g = atomic_load_explicit(&m->gens[i], memory_order_acquire);

		for (uint64_t j = 0; g && j < GEN_CHUNK; j++) {
			if (!(atomic_load_explicit(&g[j], memory_order_acquire) & GEN_VALID))
				continue;
			pgs[n++] = (i << GEN_SHIFT) + j;
			if (n == DISCARD_CHUNK) {
				fn(m, c, pgs, n, req);
				n = 0;
			}
		}
	}
	if (n)
		fn(m, c, pgs, n, req);
}

static unsigned char *key_req_buf(void)
{
	return malloc((sizeof(struct bin_hdr) + 4 + 64) * DISCARD_CHUNK + sizeof(struct bin_hdr));
}

/*
 * The renewal schedule. Passes start every lease/3, counted from one start
 * to the next, not from the end of the last pass. An item last written or
 * renewed at W is renewed by the first pass that starts after W: by
 * W + lease/3 + P, where P is that pass's length. memcached counts expiry
 * on a clock that ticks once a second, so the item is safe while
 * lease/3 + P < lease - 1, that is while a pass takes less than two thirds
 * of the lease less a second: 5.6 s at LEASE_MIN, minutes at the default.
 * A pass that runs past the next start is followed at once, and a
 * schedule that fell behind restarts from now rather than running the
 * missed passes back to back.
 */
static void *renewer(void *arg)
{
	struct mc_store *m = arg;
	unsigned char *req = key_req_buf();
	int64_t every = (int64_t)m->lease * 1000 / 3, next = now_ms(), end;

	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		struct timespec t;

		next += every;
		t.tv_sec = next / 1000;
		t.tv_nsec = next % 1000 * 1000000;
		while (!m->stop && pthread_cond_timedwait(&m->wake, &m->lock, &t) != ETIMEDOUT)
			;
		if (m->stop)
			break;
		pthread_mutex_unlock(&m->lock);
		{
			struct mc_conn *c = conn_get(m);

			if (c && req)
				for_each_page(m, c, req, renew_chunk);
			if (c)
				conn_put(m, c);
		}
		/* a schedule that fell behind restarts from now */
		end = now_ms();
		if (end > next + every)
			next = end - every;
		pthread_mutex_lock(&m->lock);
	}
	pthread_mutex_unlock(&m->lock);
	free(req);
	return NULL;
}

static void mc_destroy(void *arg)
{
	struct mc_store *m = arg;
	struct mc_conn *c;

	if (m->renewing) {
		pthread_mutex_lock(&m->lock);
		m->stop = true;
		pthread_cond_signal(&m->wake);
		pthread_mutex_unlock(&m->lock);
		pthread_join(m->renewer, NULL);
	}
	/* the runtime is gone: its pages leave the pool now, not at the
	 * end of their lease */
	c = m->inner ? conn_get(m) : NULL;
	if (c) {
		unsigned char *req = key_req_buf();

		if (req)
			for_each_page(m, c, req, delete_chunk);
		free(req);
		conn_put(m, c);
	}

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
	pthread_cond_destroy(&m->wake);
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
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&m->wake, &ca);
		pthread_condattr_destroy(&ca);
	}
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
	randombytes_buf(m->nonce_prefix, sizeof(m->nonce_prefix));
	ret = fl_store_callbacks_create(&ops, m, &m->inner);
	if (ret) {
		mc_destroy(m);
		return why(err, errlen, ret, "%s", strerror(-ret));
	}
	*out = store_new(&mc_vtbl, m);
	if (!*out) {
		fl_store_destroy(m->inner);	/* frees @m */
		return why(err, errlen, -ENOMEM, "out of memory");
	}
	if (m->lease) {
		ret = pthread_create(&m->renewer, NULL, renewer, m);
		if (ret) {
			fl_store_destroy(*out);
			*out = NULL;
			return why(err, errlen, -ret, "cannot start the lease thread: %s",
				   strerror(ret));
		}
		m->renewing = true;
	}
	return 0;
}
