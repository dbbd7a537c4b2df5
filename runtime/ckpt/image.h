/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * image.h - the checkpoint image: on-disk layout and its parser (image.c).
 *
 * All integers little-endian, all structs naturally aligned with explicit
 * padding (static_asserts below pin the sizes). One file:
 *
 *   offset 0            struct fli_header (128 bytes)
 *   parent_off          parent image's file name, parent_len bytes, no NUL
 *                       (a base image has none); same directory as this file
 *   region_off          struct fli_region[nregions] (8-aligned)
 *   index_off           struct fli_entry[nentries], sorted by (region, page),
 *                       each page at most once
 *   data_off            data pages, page_size each, in index order of the
 *                       DATA entries (entry k's slot == k); page aligned
 *   file_size           == data_off + ndata * page_size
 *
 * Checksums: CRC32C (Castagnoli), one per block: the header (header_crc, with
 * the field itself zero), the metadata (meta_crc over parent name, region
 * table and index, which are contiguous but for alignment padding: the CRC
 * runs over [parent_off, data_off)), and every data page (its entry's crc).
 * Why CRC32C: it is made for this (iSCSI, ext4/btrfs metadata, SCTP):
 * detects every burst error up to 32 bits and all 1-3 bit errors at these
 * block sizes, and x86 computes it in hardware (SSE4.2 crc32, ~10+ GB/s),
 * so checksumming does not slow the write path; a table-driven fallback
 * covers other CPUs. It is not a MAC: it detects damage, not tampering;
 * the parser's bounds checks are what make a malicious image harmless.
 *
 * Chains: an incremental image names its parent by file name and by the
 * parent's image_id (random 64-bit), and has seq = parent's seq + 1; the
 * newest image holding a page wins. A page in no image of the chain reads
 * as zeros (bases list every page, so that only happens for regions that
 * grew, which the format does not produce today).
 */
#ifndef FL_IMAGE_H
#define FL_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLI_MAGIC	"FLTIMG\r\n"	/* \r\n: catches text-mode mangling */
#define FLI_VERSION	1u
#define FLI_MAX_REGIONS	64u
#define FLI_MAX_PARENT	255u		/* a file name */
#define FLI_MAX_CHAIN	4096u
#define FLI_MAX_PAGES	((uint64_t)1 << 36)	/* 256 TiB of 4 KiB pages */

/* fli_header.flags */
#define FLI_F_INCREMENTAL	(1u << 0)
#define FLI_F_LIVE		(1u << 1)

struct fli_header {
	uint8_t magic[8];
	uint32_t version;	/* fixed offset forever: checked before the CRC */
	uint32_t header_size;	/* sizeof(struct fli_header) */
	uint32_t page_size;
	uint32_t flags;
	uint64_t image_id;
	uint64_t parent_id;	/* 0 for a base */
	uint64_t seq;		/* 0 for a base */
	uint64_t parent_off;
	uint32_t parent_len;
	uint32_t nregions;
	uint64_t region_off;
	uint64_t index_off;
	uint64_t nentries;
	uint64_t data_off;
	uint64_t ndata;
	uint64_t file_size;
	uint32_t meta_crc;
	uint32_t header_crc;
	uint8_t reserved[8];
};

struct fli_region {
	uint64_t addr;		/* where it was (informational) */
	uint64_t len;		/* bytes, a multiple of page_size */
	uint64_t first_entry;
	uint64_t nentries;
};

/* fli_entry.flags */
#define FLI_E_DATA	1u	/* page data at slot */
#define FLI_E_ZERO	2u	/* all zeros, no data */

struct fli_entry {
	uint64_t page;		/* page number in its region */
	uint32_t region;
	uint32_t flags;
	uint64_t slot;		/* DATA: index of the data page; ZERO: 0 */
	uint32_t crc;		/* DATA: CRC32C of the page; ZERO: 0 */
	uint32_t reserved;	/* 0 */
};

_Static_assert(sizeof(struct fli_header) == 128, "header layout");
_Static_assert(sizeof(struct fli_region) == 32, "region layout");
_Static_assert(sizeof(struct fli_entry) == 32, "entry layout");

/* ---- CRC32C ---- */
uint32_t fli_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t fli_crc32c_sw(uint32_t crc, const void *buf, size_t len);	/* no SSE4.2 */

/* ---- the parser ---- */

/* one parsed image: header, regions and index in memory, data read on demand */
struct fli_image {
	int fd;			/* -1 for an in-memory image (fuzzing) */
	const uint8_t *mem;	/* in-memory image, or NULL */
	struct fli_header h;
	char parent[FLI_MAX_PARENT + 1];
	struct fli_region *regions;
	struct fli_entry *entries;
};

/*
 * fli_parse_mem() / fli_parse_fd() - validate everything but the data pages'
 * checksums (those are checked when a page is read). @page_size: the page
 * size the caller needs (0: any power of two 4 KiB..64 KiB).
 * Return: 0; -ENODATA, -EBADMSG, -EPROTONOSUPPORT, -EINVAL, -ENOMEM, -errno.
 */
int fli_parse_mem(struct fli_image *img, const void *buf, size_t len, uint32_t page_size);
int fli_parse_fd(struct fli_image *img, int fd, uint32_t page_size);
void fli_image_fini(struct fli_image *img);

/*
 * fli_read_page() - read and verify the data of entry @e into @dst
 * (page_size bytes; zeros for a ZERO entry). Return: 0; -EBADMSG (CRC);
 * -ENODATA (short read); -errno.
 */
int fli_read_page(const struct fli_image *img, const struct fli_entry *e, void *dst);

/*
 * A chain, newest first, with one lookup table for region 0: the newest
 * entry for each page. Only single-region images are restored today.
 */
struct fli_chain {
	unsigned int n;
	struct fli_image *img;	/* n images, [0] = the newest */
	uint32_t page_size;
	uint64_t npages;
	uint32_t *who;		/* per page: 1 + image index, 0 = in none (zeros) */
	const struct fli_entry **ent;	/* per page: the entry */
};

/* fli_chain_open() - parse @path and its parents; Return as fli_parse_fd, -ESTALE, -ELOOP */
int fli_chain_open(struct fli_chain *c, const char *path, uint32_t page_size);
void fli_chain_close(struct fli_chain *c);

/* verify every data page of every image of @c. Return: 0, -EBADMSG, -errno */
int fli_chain_verify(const struct fli_chain *c, void *scratch);

/* read page @pg of the chain's region into @dst (zeros if in no image) */
int fli_chain_read_page(const struct fli_chain *c, uint64_t pg, void *dst);

/*
 * fli_chain_read_run() - read pages from @pg on into @dst: a run of up to
 * @max pages whose data lie one after the other in one image, with one
 * read, every page's CRC checked; else just page @pg. @done: out, the
 * pages read (>= 1 on success). Return: as fli_read_page(), -EINVAL.
 */
int fli_chain_read_run(const struct fli_chain *c, uint64_t pg, uint64_t max, void *dst,
		       uint64_t *done);

#endif /* FL_IMAGE_H */
