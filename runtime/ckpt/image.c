/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * image.c - CRC32C and the checkpoint image parser. See image.h.
 *
 * The image is untrusted input (a file anyone may have edited): every
 * length, offset and count is checked against the real file size and the
 * format's limits before it is used, arithmetic cannot overflow (each
 * product is bounded by a division first), and the only allocations are
 * bounded by the file's size. A bad image is a negative errno, never a
 * crash: tests/fuzz-image.c drives fli_parse_mem() under libFuzzer.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"

/* ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78) ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

/*
 * The hardware path runs three independent crc32 chains over three lanes
 * of CRC_LANE bytes and joins them: the instruction's latency is 3 cycles
 * and its throughput 1 per cycle, so one chain runs at a third of the
 * speed the unit has (a 4 KiB page: ~3x faster, which matters because the
 * image writer checksums every page it writes).
 * Joining: the CRC register update is linear over GF(2), so for lanes A, B
 * update(c, A || B) = shift_L(update(c, A)) ^ update(0, B), where shift_L
 * is the update over L zero bytes: a 32x32 bit matrix, applied with four
 * byte tables (crc_shift), built once.
 */
#define CRC_LANE 1360u		/* 3 lanes + 16 bytes = a 4 KiB page */
static uint32_t crc_shift[4][256];

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t len)
{
	while (len--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

/* bit i of the result is the parity of (mat[i] & v)... stored by column */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	for (; vec; vec >>= 1, mat++)
		if (vec & 1)
			sum ^= *mat;
	return sum;
}

static void gf2_mul(uint32_t *out, const uint32_t *a, const uint32_t *b)
{
	uint32_t t[32];

	for (int n = 0; n < 32; n++)
		t[n] = gf2_times(a, b[n]);	/* a after b */
	memcpy(out, t, sizeof(t));
}

static void crc_shift_init(void)
{
	uint32_t bit[32], op[32], sq[32];
	size_t n = 8 * (size_t)CRC_LANE;

	/* one zero bit: the register shifts right, the polynomial folds in */
	bit[0] = 0x82F63B78u;
	for (int i = 1; i < 32; i++)
		bit[i] = 1u << (i - 1);
	for (int i = 0; i < 32; i++)
		op[i] = 1u << i;		/* identity */
	memcpy(sq, bit, sizeof(sq));
	for (; n; n >>= 1) {			/* op = bit^(8 * CRC_LANE) */
		if (n & 1)
			gf2_mul(op, sq, op);
		gf2_mul(sq, sq, sq);
	}
	for (uint32_t v = 0; v < 256; v++)
		for (int k = 0; k < 4; k++)
			crc_shift[k][v] = gf2_times(op, v << (8 * k));
}

static uint32_t crc_shift_lane(uint32_t c)
{
	return crc_shift[0][c & 0xff] ^ crc_shift[1][(c >> 8) & 0xff] ^
	       crc_shift[2][(c >> 16) & 0xff] ^ crc_shift[3][c >> 24];
}

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
	crc_shift_init();
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_x86(uint32_t c32, const uint8_t *p, size_t len)
{
	uint64_t c = c32;

	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		len--;
	}
	while (len >= 3 * CRC_LANE) {
		uint64_t a = c, b = 0, d = 0, va, vb, vd;

		for (size_t i = 0; i < CRC_LANE; i += 8) {
			memcpy(&va, p + i, 8);
			memcpy(&vb, p + CRC_LANE + i, 8);
			memcpy(&vd, p + 2 * CRC_LANE + i, 8);
			a = __builtin_ia32_crc32di(a, va);
			b = __builtin_ia32_crc32di(b, vb);
			d = __builtin_ia32_crc32di(d, vd);
		}
		c = crc_shift_lane(crc_shift_lane((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)d;
		p += 3 * CRC_LANE;
		len -= 3 * CRC_LANE;
	}
	while (len >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

uint32_t fli_crc32c(uint32_t crc, const void *buf, size_t len)
{
	uint32_t c = ~crc;

	pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
	if (crc_hw)
		return ~crc_x86(c, buf, len);
#endif
	return ~crc_sw(c, buf, len);
}

/* the table-driven CRC, whatever the CPU has (tests compare the two) */
uint32_t fli_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return ~crc_sw(~crc, buf, len);
}

/* ---- parsing ---- */

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* read [off, off + len) of the image; both already checked against its size */
static int read_at(const struct fli_image *img, uint64_t off, void *dst, size_t len)
{
	size_t done = 0;

	if (img->mem) {
		memcpy(dst, img->mem + off, len);
		return 0;
	}
	while (done < len) {
		ssize_t n = pread(img->fd, (char *)dst + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;	/* the file shrank under us */
		done += (size_t)n;
	}
	return 0;
}

static bool valid_name(const char *s, size_t len)
{
	if (!len)
		return false;
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '/' || s[i] == '\0')
			return false;
	return true;
}

static int parse(struct fli_image *img, uint64_t fsize, uint32_t want_ps)
{
	struct fli_header *h = &img->h;
	uint64_t ps, meta_len, want_data, npg, next_entry = 0, nslot = 0;
	uint8_t *meta = NULL;
	uint32_t crc;
	int ret;

	if (fsize < sizeof(*h))
		return -ENODATA;
	ret = read_at(img, 0, h, sizeof(*h));
	if (ret)
		return ret;
	if (memcmp(h->magic, FLI_MAGIC, 8))
		return -EBADMSG;
	/* the version sits at a fixed offset in every version: a newer image
	 * is "unsupported", not "corrupt", even if its header is longer */
	if (h->version != FLI_VERSION)
		return -EPROTONOSUPPORT;
	if (h->header_size != sizeof(*h))
		return -EBADMSG;
	crc = h->header_crc;
	h->header_crc = 0;
	if (fli_crc32c(0, h, sizeof(*h)) != crc)
		return -EBADMSG;
	h->header_crc = crc;
	if (fsize < h->file_size)
		return -ENODATA;
	if (fsize > h->file_size)
		return -EBADMSG;
	ps = h->page_size;
	if (ps < 4096 || ps > 65536 || (ps & (ps - 1)))
		return -EBADMSG;
	if (want_ps && ps != want_ps)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(h->reserved); i++)
		if (h->reserved[i])
			return -EBADMSG;
	if (h->flags & ~(FLI_F_INCREMENTAL | FLI_F_LIVE))
		return -EBADMSG;
	/* base <=> seq 0 <=> no parent <=> not incremental */
	if ((h->seq == 0) != (h->parent_len == 0) || (h->seq == 0) != (h->parent_id == 0) ||
	    (h->seq == 0) == !!(h->flags & FLI_F_INCREMENTAL) || h->image_id == 0)
		return -EBADMSG;
	if (h->nregions < 1 || h->nregions > FLI_MAX_REGIONS || h->parent_len > FLI_MAX_PARENT)
		return -EBADMSG;
	/* the sections follow each other exactly as the writer lays them out */
	if (h->parent_off != sizeof(*h) ||
	    h->region_off != align_up(h->parent_off + h->parent_len, 8) ||
	    h->index_off != h->region_off + (uint64_t)h->nregions * sizeof(struct fli_region))
		return -EBADMSG;
	if (h->index_off > h->file_size || h->nentries > FLI_MAX_PAGES ||
	    h->nentries > (h->file_size - h->index_off) / sizeof(struct fli_entry))
		return -EBADMSG;
	if (h->data_off != align_up(h->index_off + h->nentries * sizeof(struct fli_entry), ps) ||
	    h->data_off > h->file_size)
		return -EBADMSG;
	if ((h->file_size - h->data_off) % ps || h->ndata != (h->file_size - h->data_off) / ps ||
	    h->ndata > h->nentries)
		return -EBADMSG;

	/* the metadata block: bounded by the file size checked above */
	meta_len = h->data_off - h->parent_off;
	meta = malloc(meta_len ? meta_len : 1);
	if (!meta)
		return -ENOMEM;
	ret = read_at(img, h->parent_off, meta, meta_len);
	if (ret)
		goto out;
	if (fli_crc32c(0, meta, meta_len) != h->meta_crc) {
		ret = -EBADMSG;
		goto out;
	}
	ret = -EBADMSG;
	if (h->parent_len && !valid_name((const char *)meta, h->parent_len))
		goto out;
	memcpy(img->parent, meta, h->parent_len);
	img->parent[h->parent_len] = '\0';
	img->regions = malloc(h->nregions * sizeof(struct fli_region));
	img->entries = malloc(h->nentries ? h->nentries * sizeof(struct fli_entry) : 1);
	if (!img->regions || !img->entries) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(img->regions, meta + (h->region_off - h->parent_off),
	       h->nregions * sizeof(struct fli_region));
	memcpy(img->entries, meta + (h->index_off - h->parent_off),
	       h->nentries * sizeof(struct fli_entry));
	/* padding must be zero: nothing unchecked hides in the metadata */
	for (uint64_t o = h->parent_off + h->parent_len; o < h->region_off; o++)
		if (meta[o - h->parent_off])
			goto out;
	for (uint64_t o = h->index_off + h->nentries * sizeof(struct fli_entry); o < h->data_off; o++)
		if (meta[o - h->parent_off])
			goto out;

	for (uint32_t k = 0; k < h->nregions; k++) {
		const struct fli_region *r = &img->regions[k];

		if (!r->len || r->len % ps || r->addr % ps || r->len / ps > FLI_MAX_PAGES ||
		    r->first_entry != next_entry || r->nentries > h->nentries - next_entry)
			goto out;
		npg = r->len / ps;
		for (uint64_t i = r->first_entry; i < r->first_entry + r->nentries; i++) {
			const struct fli_entry *e = &img->entries[i];

			if (e->region != k || e->page >= npg || e->reserved ||
			    (i > r->first_entry && e->page <= img->entries[i - 1].page))
				goto out;
			if (e->flags == FLI_E_DATA) {
				if (e->slot != nslot++)
					goto out;
			} else if (e->flags == FLI_E_ZERO) {
				if (e->slot || e->crc)
					goto out;
			} else {
				goto out;
			}
		}
		next_entry += r->nentries;
	}
	want_data = nslot;
	if (next_entry != h->nentries || want_data != h->ndata)
		goto out;
	ret = 0;
out:
	free(meta);
	if (ret) {
		free(img->regions);
		free(img->entries);
		img->regions = NULL;
		img->entries = NULL;
	}
	return ret;
}

int fli_parse_mem(struct fli_image *img, const void *buf, size_t len, uint32_t page_size)
{
	memset(img, 0, sizeof(*img));
	img->fd = -1;
	img->mem = buf;
	return parse(img, len, page_size);
}

int fli_parse_fd(struct fli_image *img, int fd, uint32_t page_size)
{
	struct stat st;

	memset(img, 0, sizeof(*img));
	img->fd = fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADMSG;
	return parse(img, (uint64_t)st.st_size, page_size);
}

void fli_image_fini(struct fli_image *img)
{
	free(img->regions);
	free(img->entries);
	if (img->fd >= 0)
		close(img->fd);
	img->regions = NULL;
	img->entries = NULL;
	img->fd = -1;
}

int fli_read_page(const struct fli_image *img, const struct fli_entry *e, void *dst)
{
	uint32_t ps = img->h.page_size;
	int ret;

	if (e->flags == FLI_E_ZERO) {
		memset(dst, 0, ps);
		return 0;
	}
	ret = read_at(img, img->h.data_off + e->slot * ps, dst, ps);
	if (ret)
		return ret;
	return fli_crc32c(0, dst, ps) == e->crc ? 0 : -EBADMSG;
}

/* ---- chains ---- */

static int open_image(struct fli_image *img, const char *path, uint32_t ps)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = fli_parse_fd(img, fd, ps);
	if (ret) {
		close(fd);
		img->fd = -1;
	}
	return ret;
}

void fli_chain_close(struct fli_chain *c)
{
	for (unsigned int i = 0; i < c->n; i++)
		fli_image_fini(&c->img[i]);
	free(c->img);
	if (c->who)
		munmap(c->who, c->npages * sizeof(*c->who));
	if (c->ent)
		munmap(c->ent, c->npages * sizeof(*c->ent));
	memset(c, 0, sizeof(*c));
}

int fli_chain_open(struct fli_chain *c, const char *path, uint32_t page_size)
{
	const char *slash;
	size_t dirlen;
	char *p;
	int ret;

	memset(c, 0, sizeof(*c));
	slash = strrchr(path, '/');
	dirlen = slash ? (size_t)(slash - path) + 1 : 0;
	p = malloc(dirlen + FLI_MAX_PARENT + 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, path, dirlen);
	strcpy(p + dirlen, slash ? slash + 1 : path);
	for (;;) {
		struct fli_image *img, *child;

		if (c->n == FLI_MAX_CHAIN) {
			ret = -ELOOP;
			goto err;
		}
		img = realloc(c->img, (c->n + 1) * sizeof(*img));
		if (!img) {
			ret = -ENOMEM;
			goto err;
		}
		c->img = img;
		img = &c->img[c->n];
		ret = open_image(img, p, page_size);
		if (ret)
			goto err;
		c->n++;
		if (c->n > 1) {
			/* the parent must be exactly the image the child was made from */
			child = &c->img[c->n - 2];
			if (img->h.image_id != child->h.parent_id ||
			    img->h.seq + 1 != child->h.seq ||
			    img->h.page_size != child->h.page_size ||
			    img->h.nregions != child->h.nregions) {
				ret = -ESTALE;
				goto err;
			}
			for (uint32_t k = 0; k < img->h.nregions; k++)
				if (img->regions[k].len != child->regions[k].len) {
					ret = -ESTALE;
					goto err;
				}
		}
		if (!img->h.parent_len)
			break;
		strcpy(p + dirlen, img->parent);
	}
	free(p);
	p = NULL;
	if (c->img[0].h.nregions != 1) {
		ret = -EOPNOTSUPP;
		goto err;
	}
	c->page_size = c->img[0].h.page_size;
	c->npages = c->img[0].regions[0].len / c->page_size;
	c->who = mmap(NULL, c->npages * sizeof(*c->who), PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	c->ent = mmap(NULL, c->npages * sizeof(*c->ent), PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->who == MAP_FAILED || c->ent == MAP_FAILED) {
		if (c->who == MAP_FAILED)
			c->who = NULL;
		if (c->ent == MAP_FAILED)
			c->ent = NULL;
		ret = -ENOMEM;
		goto err;
	}
	/* oldest first, so that the newest entry for a page wins */
	for (unsigned int i = c->n; i-- > 0;) {
		const struct fli_image *img = &c->img[i];

		for (uint64_t k = 0; k < img->h.nentries; k++) {
			const struct fli_entry *e = &img->entries[k];

			c->who[e->page] = i + 1;
			c->ent[e->page] = e;
		}
	}
	return 0;
err:
	free(p);
	fli_chain_close(c);
	return ret;
}

int fli_chain_read_page(const struct fli_chain *c, uint64_t pg, void *dst)
{
	if (pg >= c->npages)
		return -EINVAL;
	if (!c->who[pg]) {
		memset(dst, 0, c->page_size);
		return 0;
	}
	return fli_read_page(&c->img[c->who[pg] - 1], c->ent[pg], dst);
}

int fli_chain_read_run(const struct fli_chain *c, uint64_t pg, uint64_t max, void *dst,
		       uint64_t *done)
{
	const struct fli_image *img;
	uint32_t ps = c->page_size, who;
	uint64_t n = 1, slot0;
	int ret;

	*done = 0;
	if (pg >= c->npages || !max)
		return -EINVAL;
	who = c->who[pg];
	if (!who || c->ent[pg]->flags != FLI_E_DATA) {
		ret = fli_chain_read_page(c, pg, dst);
		*done = ret ? 0 : 1;
		return ret;
	}
	/* the parser checked every slot < ndata: the run lies inside the file */
	img = &c->img[who - 1];
	slot0 = c->ent[pg]->slot;
	while (n < max && pg + n < c->npages && c->who[pg + n] == who &&
	       c->ent[pg + n]->flags == FLI_E_DATA && c->ent[pg + n]->slot == slot0 + n)
		n++;
	ret = read_at(img, img->h.data_off + slot0 * ps, dst, n * ps);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < n; i++)
		if (fli_crc32c(0, (const uint8_t *)dst + i * ps, ps) != c->ent[pg + i]->crc)
			return -EBADMSG;
	*done = n;
	return 0;
}

int fli_chain_verify(const struct fli_chain *c, void *scratch)
{
	for (unsigned int i = 0; i < c->n; i++)
		for (uint64_t k = 0; k < c->img[i].h.nentries; k++) {
			int ret = fli_read_page(&c->img[i], &c->img[i].entries[k], scratch);

			if (ret)
				return ret;
		}
	return 0;
}
