/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * farmem-mc.h - farmem-scan's raw-store mode on a memcached pool
 * (farmem-mc.c): libmemcached's get and mget of the items the runtime's
 * memcached store wrote, read where the store put them.
 */
#ifndef FL_BENCH_FARMEM_MC_H
#define FL_BENCH_FARMEM_MC_H

#include <stddef.h>
#include <stdint.h>

struct mc_raw;

/*
 * Find the items of a region of @npages pages in the pool of @url (the
 * store's id with most keys; all but a quarter of the pages at most must
 * have one). Return: 0, or a
 * negative errno with @why set (-ENOTSUP: built without libmemcached).
 */
int mc_raw_open(const char *url, size_t npages, struct mc_raw **out, char *why, size_t n);

/*
 * Read the items of pages @order[0..@n) with @nthreads client threads, each
 * a slice of the order, each with its own connections: @batch 1 is one
 * memcached_get() at a time, more is memcached_mget() of @batch keys (one
 * multi-get per server, all sent before any is read). A missing item or
 * one of another size counts in @bad; a page that had none at
 * mc_raw_open() (in memory since the scan began) is skipped: @read is the
 * pages read. Return: 0 or a negative errno.
 */
int mc_raw_scan(struct mc_raw *r, const size_t *order, size_t n, unsigned int nthreads,
		unsigned int batch, double *seconds, uint64_t *bad, size_t *read);

void mc_raw_close(struct mc_raw *r);

#endif
