/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * probes.h - USDT probes (provider "faultline") at the points people trace.
 *
 * With <sys/sdt.h> (Debian: systemtap-sdt-dev) each FL_PROBE() is one nop
 * in the code and a note in .note.stapsdt naming its arguments' locations;
 * a tracer (bpftrace, perf probe, SystemTap) turns the nop into a trap only
 * while it is attached. Without the header the probes compile to nothing.
 * `readelf -n libfaultline.so` lists them; tests/probes.sh checks the list
 * below against the library.
 *
 *   fault(addr, write)                   a handler took a fault message
 *   resolved(tier, addr)                 ... and resolved it on tier 1, 2 or 3
 *   install(addr, pages, kind)           pages installed (kind: 0 zero, 1 copy,
 *                                        2 partial, 3 fill, 4 read back)
 *   fill(offset, len, ret)               a fill callback returned
 *   park(addr, len)                      a range parked (EAGAIN, an event in flight)
 *   retry(addr, len)                     the retrier woke a parked range
 *   throttle(resident, budget)           a fault waits for the evictor
 *   evict(region, pages, writes)         an eviction batch taken out of a region
 *   writeback(pages)                     store writes of one batch, before I/O
 *   pagein(addr, pages)                  a run read back from the store installed
 *   ckpt_write(bytes)                    checkpoint image bytes handed to the kernel
 */
#ifndef FL_PROBES_H
#define FL_PROBES_H

#ifdef FL_HAVE_SDT
#define SDT_USE_VARIADIC 1	/* STAP_PROBEV */
#include <sys/sdt.h>
#define FL_PROBE(name, ...)	STAP_PROBEV(faultline, name, __VA_ARGS__)
#else
#define FL_PROBE(name, ...)	do { } while (0)
#endif

#endif /* FL_PROBES_H */
