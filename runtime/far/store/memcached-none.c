/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memcached-none.c - fl_store_memcached_create() in a build without
 * libmemcached and libsodium (meson -Dmemcached=disabled).
 */
#include <errno.h>
#include <stdio.h>

#include "store.h"

#define FL_EXPORT __attribute__((visibility("default")))

FL_EXPORT int fl_store_memcached_create(const char *url, unsigned int flags,
					struct fl_store **out, char *err, size_t errlen)
{
	(void)url;
	(void)flags;
	(void)out;
	if (err && errlen)
		snprintf(err, errlen, "this build of faultline has no memcached store "
			 "(built with -Dmemcached=disabled)");
	return -EOPNOTSUPP;
}
