/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * uffd.h - the kernel interface. Nothing else in faultline calls a
 * userfaultfd ioctl. Every wrapper returns 0 or -errno and, where the kernel
 * reports partial progress, the exact number of bytes done in *done (also
 * on error: an EAGAIN or EEXIST part-way through a range is normal).
 */
#ifndef FL_UFFD_H
#define FL_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uffd-compat.h"
#include "faultline.h"

struct fl_uffd {
	int fd;
	enum fl_open_method method;
	uint64_t kernel_features;	/* what UFFDIO_API says the kernel has */
	uint64_t features;		/* what we enabled */
	uint64_t ioctls;		/* range ioctls for anon MISSING */
};

/* The features the runtime asks for when the kernel has them. EVENT_FORK is
 * deliberately absent: see the fork policy in runtime.c. WP_ASYNC too: it
 * changes the meaning of every WP fault on the uffd. */
#define FL_UFFD_WANTED (UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | \
			UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_THREAD_ID | \
			UFFD_FEATURE_PAGEFAULT_FLAG_WP | \
			UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_POISON | \
			UFFD_FEATURE_MOVE | UFFD_FEATURE_MISSING_SHMEM | \
			UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | \
			UFFD_FEATURE_EXACT_ADDRESS)

/**
 * uffd_open() - open a userfaultfd and enable @want & (what the kernel has).
 * @user_only: go straight to userfaultfd(2) with UFFD_USER_MODE_ONLY.
 * Order: /dev/userfaultfd, userfaultfd(2), userfaultfd(2) user-mode-only;
 * the next is tried on ENOENT, EACCES or EPERM alike.
 * Return: 0; -EPERM, -ENOSYS, -ENOMEM, -EMFILE.
 */
int uffd_open(struct fl_uffd *u, bool user_only, uint64_t want);
void uffd_close(struct fl_uffd *u);

int uffd_register(const struct fl_uffd *u, uintptr_t start, size_t len,
		  uint64_t modes, uint64_t *ioctls);
int uffd_unregister(const struct fl_uffd *u, uintptr_t start, size_t len);
int uffd_copy(const struct fl_uffd *u, uintptr_t dst, const void *src,
	      size_t len, uint64_t mode, size_t *done);
int uffd_zeropage(const struct fl_uffd *u, uintptr_t dst, size_t len,
		  uint64_t mode, size_t *done);
int uffd_continue(const struct fl_uffd *u, uintptr_t dst, size_t len,
		  uint64_t mode, size_t *done);
int uffd_move(const struct fl_uffd *u, uintptr_t dst, uintptr_t src,
	      size_t len, uint64_t mode, size_t *done);
int uffd_writeprotect(const struct fl_uffd *u, uintptr_t start, size_t len,
		      bool wp, bool dontwake);
int uffd_poison(const struct fl_uffd *u, uintptr_t start, size_t len,
		uint64_t mode, size_t *done);
int uffd_wake(const struct fl_uffd *u, uintptr_t start, size_t len);

static inline bool uffd_has(const struct fl_uffd *u, uint64_t feature)
{
	return (u->features & feature) == feature;
}

#endif /* FL_UFFD_H */
