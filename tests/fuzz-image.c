/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-image - libFuzzer target for the image parser (runtime/ckpt/image.c).
 * Each input is parsed twice: as an image by itself, and as a patch over a
 * valid built-in image (byte 0: bit 0 re-seals the header CRC, bit 1 the
 * metadata CRC, so mutations reach the checks behind them; bytes 1-2: patch
 * offset; bytes 3-4: truncation; the rest: bytes XORed in). Built only
 * with clang (meson: cc.get_id() == 'clang'); run as the test 'fuzz-image'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/image.h"

#define PS 4096
#define NP 3

static uint8_t tmpl[16384];
static size_t tmpl_len;

static void build_template(void)
{
	struct fli_header h = { 0 };
	struct fli_region r = { .addr = 0, .len = 8 * PS, .first_entry = 0, .nentries = NP };
	struct fli_entry e[NP] = {
		{ .page = 1, .flags = FLI_E_DATA, .slot = 0 },
		{ .page = 2, .flags = FLI_E_ZERO },
		{ .page = 5, .flags = FLI_E_DATA, .slot = 1 },
	};
	const char parent[] = "parent.img";

	memcpy(h.magic, FLI_MAGIC, 8);
	h.version = FLI_VERSION;
	h.header_size = sizeof(h);
	h.page_size = PS;
	h.flags = FLI_F_INCREMENTAL;
	h.image_id = 7;
	h.parent_id = 3;
	h.seq = 1;
	h.parent_off = sizeof(h);
	h.parent_len = sizeof(parent) - 1;
	h.nregions = 1;
	h.region_off = (sizeof(h) + h.parent_len + 7) & ~7ull;
	h.index_off = h.region_off + sizeof(r);
	h.nentries = NP;
	h.data_off = PS;
	h.ndata = 2;
	h.file_size = 3 * PS;
	memset(tmpl + PS, 0x5a, 2 * PS);
	e[0].crc = fli_crc32c(0, tmpl + PS, PS);
	e[2].crc = fli_crc32c(0, tmpl + 2 * PS, PS);
	memcpy(tmpl + h.parent_off, parent, h.parent_len);
	memcpy(tmpl + h.region_off, &r, sizeof(r));
	memcpy(tmpl + h.index_off, e, sizeof(e));
	h.meta_crc = fli_crc32c(0, tmpl + h.parent_off, h.data_off - h.parent_off);
	h.header_crc = fli_crc32c(0, &h, sizeof(h));
	memcpy(tmpl, &h, sizeof(h));
	tmpl_len = 3 * PS;
}

static void parse_and_read(const uint8_t *buf, size_t len)
{
	struct fli_image img;
	static uint8_t page[65536];

	if (fli_parse_mem(&img, buf, len, 0) == 0) {
		/* a parsed image must be safe to read from, every entry */
		for (uint64_t i = 0; i < img.h.nentries; i++)
			(void)fli_read_page(&img, &img.entries[i], page);
		fli_image_fini(&img);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t work[sizeof(tmpl)];
	size_t off, cut;

	if (!tmpl_len)
		build_template();
	parse_and_read(data, size);
	if (size < 5)
		return 0;
	memcpy(work, tmpl, tmpl_len);
	off = ((size_t)data[1] | (size_t)data[2] << 8) % tmpl_len;
	cut = ((size_t)data[3] | (size_t)data[4] << 8);
	cut = cut ? cut % (tmpl_len + 1) : tmpl_len;
	for (size_t i = 5; i < size && off + i - 5 < tmpl_len; i++)
		work[off + i - 5] ^= data[i];
	if (data[0] & 2) {
		struct fli_header *h = (struct fli_header *)work;

		if (h->data_off > h->parent_off && h->data_off <= tmpl_len)
			h->meta_crc = fli_crc32c(0, work + h->parent_off, h->data_off - h->parent_off);
	}
	if (data[0] & 1) {
		struct fli_header *h = (struct fli_header *)work;

		h->header_crc = 0;
		h->header_crc = fli_crc32c(0, h, sizeof(*h));
	}
	parse_and_read(work, cut);
	return 0;
}
