/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-image - images are untrusted input: truncated, corrupted (header,
 * metadata, data), wrong-version and wrong-parent images are rejected with
 * their documented errors; CRC32C matches its standard check value; image
 * files are created 0600 with O_EXCL and never through a symlink.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "ckpt-util.h"
#include "ckpt/image.h"
#include "tap.h"

#define NPAGES 16

static char *dir;

static int copy_file(const char *from, const char *to, long trunc_to, long flip_at)
{
	FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
	static unsigned char buf[1 << 20];
	size_t n;

	if (!f || !g)
		return -1;
	n = fread(buf, 1, sizeof(buf), f);
	if (trunc_to >= 0 && (size_t)trunc_to < n)
		n = (size_t)trunc_to;
	if (flip_at >= 0 && (size_t)flip_at < n)
		buf[flip_at] ^= 0x40;
	fwrite(buf, 1, n, g);
	fclose(f);
	fclose(g);
	return 0;
}

static int check_variant(const char *base, const char *name, long trunc_to, long flip_at)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	copy_file(base, p, trunc_to, flip_at);
	return fl_image_check(p, NULL);
}

/*
 * The hardware CRC (three lanes joined, image.c) against the table: every
 * length around the lane sizes, odd alignments, and in two pieces.
 */
static int crc_mismatches(void)
{
	static const size_t lens[] = { 0, 1, 7, 8, 9, 1359, 1360, 4079, 4080, 4081,
				       4095, 4096, 4097, 8192, 12289, 65536 };
	uint8_t *buf = malloc(65536 + 16);
	uint64_t x = 88172645463325252ull;
	int bad = 0;

	if (!buf)
		return -1;
	for (size_t i = 0; i < 65536 + 16; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (size_t off = 0; off < 16; off += 5) {
			uint32_t sw = fli_crc32c_sw(7, buf + off, lens[k]);
			size_t h = lens[k] / 3;

			bad += fli_crc32c(7, buf + off, lens[k]) != sw;
			bad += fli_crc32c(fli_crc32c(7, buf + off, h), buf + off + h, lens[k] - h) != sw;
		}
	free(buf);
	return bad;
}

int main(void)
{
	struct fl_runtime *rt = tap_runtime(NULL);
	struct fl_region_opts ro;
	struct fl_ckpt *ck = NULL, *ck2 = NULL;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	char img0[512], img1[512], other[512], p[512], lnk[512];
	struct fli_header h;
	char *mem, *mem2;
	struct stat sb;
	int fd;

	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	if (fl_region_map(rt, NPAGES * ps, &ro, (void **)&mem) == -EOPNOTSUPP)
		tap_skip_all("kernel without uffd-wp");
	fl_region_map(rt, NPAGES * ps, &ro, (void **)&mem2);
	dir = ckpt_tmpdir();
	if (!dir)
		tap_skip_all("no writable temporary directory");
	tap_plan(18);
	TAP_EQ(fli_crc32c(0, "123456789", 9), 0xE3069283u);
	TAP_EQ(crc_mismatches(), 0);

	memset(mem, 'a', NPAGES * ps);
	snprintf(img0, sizeof(img0), "%s/base", dir);
	snprintf(img1, sizeof(img1), "%s/inc", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	fl_ckpt_create(rt, mem, NPAGES * ps, FL_DIRTY_AUTO, &ck);
	TAP_EQ(fl_ckpt_save(ck, img0, 0), 0);
	mem[3 * ps] = 'b';
	TAP_EQ(fl_ckpt_save(ck, img1, 0), 0);
	stat(img0, &sb);
	tap_ok((sb.st_mode & 0777) == 0600, "image mode 0%o", sb.st_mode & 0777);

	TAP_EQ(check_variant(img0, "trunc-hdr", 100, -1), -ENODATA);
	TAP_EQ(check_variant(img0, "trunc-data", (long)sb.st_size - 1, -1), -ENODATA);
	TAP_EQ(check_variant(img0, "magic", -1, 0), -EBADMSG);
	TAP_EQ(check_variant(img0, "hdr", -1, 60), -EBADMSG);
	TAP_EQ(check_variant(img0, "meta", -1, 200), -EBADMSG);
	TAP_EQ(check_variant(img0, "data", -1, (long)sb.st_size - 5), -EBADMSG);
	{
		/* eager restore reads runs of pages at once: a bad page in one still fails */
		char *m = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		snprintf(p, sizeof(p), "%s/data", dir);
		TAP_EQ(fl_restore(p, m, NPAGES * ps), -EBADMSG);
		munmap(m, NPAGES * ps);
	}

	/* a future version, with a valid header checksum: unsupported, not corrupt */
	snprintf(p, sizeof(p), "%s/v2", dir);
	copy_file(img0, p, -1, -1);
	fd = open(p, O_RDWR);
	pread(fd, &h, sizeof(h), 0);
	h.version = 2;
	h.header_crc = 0;
	h.header_crc = fli_crc32c(0, &h, sizeof(h));
	pwrite(fd, &h, sizeof(h), 0);
	close(fd);
	TAP_EQ(fl_image_check(p, NULL), -EPROTONOSUPPORT);

	/* replace the parent by another base: the child must notice */
	memset(mem2, 'c', NPAGES * ps);
	fl_ckpt_create(rt, mem2, NPAGES * ps, FL_DIRTY_AUTO, &ck2);
	fl_ckpt_save(ck2, other, 0);
	TAP_EQ(rename(other, img0), 0);
	TAP_EQ(fl_image_check(img1, NULL), -ESTALE);

	/* no clobbering, no following a symlink */
	TAP_EQ(fl_ckpt_save(ck, img1, FL_CKPT_FULL), -EEXIST);
	snprintf(lnk, sizeof(lnk), "%s/link", dir);
	snprintf(p, sizeof(p), "%s/target", dir);
	symlink(p, lnk);
	TAP_EQ(fl_ckpt_save(ck, lnk, FL_CKPT_FULL), -EEXIST);
	tap_ok(access(p, F_OK) != 0, "nothing created through the symlink");

	fl_ckpt_destroy(ck);
	fl_ckpt_destroy(ck2);
	fl_runtime_destroy(rt);
	ckpt_rmdir(dir);
	return tap_done();
}
