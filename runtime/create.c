/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * create.c - a runtime is the core with far memory and write protection on
 * it: the one place that names all three.
 *
 * The core (core/) knows the other two only through the hooks each sets
 * when it starts (core/hooks.h); they call into the core, never the other
 * way round. Everything after creation, destroy included, goes through the
 * core and its hooks.
 */
#include <errno.h>

#include "core/internal.h"
#include "ckpt/wp.h"
#include "far/far.h"

FL_EXPORT int fl_runtime_create(const struct fl_runtime_opts *o, struct fl_runtime **out)
{
	struct fl_runtime_opts opts;
	struct fl_runtime *rt;
	int ret;

	if (!out)
		return -EINVAL;
	ret = runtime_init(o, &opts, &rt);
	if (ret)
		return ret;
	/* write protection: WP_ASYNC asked for but absent is an error */
	ret = (opts.flags & FL_RT_WP_ASYNC) && !uffd_has(&rt->uffd, UFFD_FEATURE_WP_ASYNC) ?
		-EOPNOTSUPP : wp_init(rt);
	/* far memory (if opts.store) before the handlers: they read its hooks */
	if (!ret)
		ret = far_start(rt, &opts);
	if (!ret)
		ret = runtime_start(rt, &opts);
	if (ret) {
		runtime_abort(rt);
		return ret;
	}
	*out = rt;
	return 0;
}
