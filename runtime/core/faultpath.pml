/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faultpath.pml - a Promela model of faultline's fault tiers and writer
 * protocol, checked with spin by tests/spin-model.sh.
 *
 * What is modelled (one page of one address range; two handler threads; one
 * writer that removes the range's region and maps a new region with other
 * contents at the same address, reusing the same region object from the
 * pool, as fl_region_unregister() + fl_region_map() do):
 *
 *   fault.c   tier1()  seq sample, RCU read section, index lookup, snapshot,
 *                      resolve(may_block = false), hand-off to tier 2
 *             tier2()  FL_TIERS_REGION: lookup under RCU, region read lock
 *             tier3()  index_lock for reading; serve_unknown()
 *             resolve() / claim() / install(): page word ABSENT -> FILLING
 *                      -> RESIDENT, UFFDIO_COPY/ZEROPAGE
 *   region.c  region_start_read_checked(): inc-not-zero-below-limit, then
 *                      the generation re-check; region_end_read();
 *             region_write_lock(): add REF_WRITER, wait for readers;
 *             region_detach_locked(), region_free() (poisons gen), and
 *             region_alloc() handing the same object back (pool, LIFO)
 *   index.c   index_write_begin/end (rwlock PREFER_WRITER + seq odd/even),
 *             index_publish_locked (rcu_assign_pointer of the new array),
 *             index_synchronize_locked (synchronize_rcu)
 *   runtime.c remove_region_locked() -> victims_quiesce_locked(): steps 1-8
 *             of the writer protocol; register_locked()
 *   kernel    the range's registration, the page's presence and what was
 *             installed there; UFFDIO_COPY's ENOENT / EEXIST answers.
 *
 * Memory is sequentially consistent here: the model checks the protocol,
 * not the C11 orderings that implement it (TSan and the race tests do that).
 * Each handler loops forever taking fault messages and picks a tier policy
 * per fault, so every tier races the writer at every step.
 *
 * Properties:
 *   no stale install   every page installed matches the pager of the region
 *                      registered on the range at that moment: a page of the
 *                      old region never lands in the new one (assert in
 *                      kernel_install)
 *   no use after free  a reader touches a region object (snapshot, page
 *                      word) only while it is the incarnation it looked up,
 *                      except for the re-check read itself (assert in use())
 *   page exclusivity   a thread that claimed a page (FILLING) never finds it
 *                      already installed (assert after kernel_install)
 *   no reader enters once the writer offset is set (assert in start_read)
 *   writer progress    ltl writer_done: the writer finishes (weak fairness)
 *
 * Mutants (spin -D...), each must produce a counterexample:
 *   NO_GRACE          index_synchronize_locked() left out of the writer:
 *                     a tier-1 fault reads the freed object and installs the
 *                     old region's page into the new region (the test adds
 *                     NO_USE_CHECK so that the stale install is what spin
 *                     reports)
 *   UNKNOWN_UNLOCKED  serve_unknown() outside index_lock, as the code had it
 *                     before: a fault message read late finds no region,
 *                     the writer registers the new region, and the zero page
 *                     lands in it
 *   NO_BIAS           region_start_read() as a plain inc-not-zero: a reader
 *                     enters while the writer waits
 *   READER_PREF       index_lock preferring readers (glibc's default):
 *                     looping tier-3 faults starve the writer (liveness)
 */

#define NR		2	/* handler threads */
#define NONE		255	/* index lookup found nothing */
#define REF_WRITER	8	/* region.h REF_WRITER (> NR + 1) */

/* region.h page states */
#define ABSENT		0
#define FILLING		1
#define RESIDENT	2

/* what a page holds: the pager of the first region, of the second, zeros */
#define C_OLD		1
#define C_NEW		2
#define C_ZERO		3

/* uffd ioctl answers */
#define OK		0
#define ENOENT		1
#define EEXIST		2

/* ---- index.h struct fl_index_root ---- */
byte seq = 0;			/* ix->seq: odd while a writer is in */
byte idx = 0;			/* ix->cur: the range's entry: object 0, or NONE */
bool wlocked = false;		/* ix->lock held for writing */
bool wwant = false;		/* a writer waits for ix->lock (PREFER_WRITER) */
byte rdcnt = 0;			/* ix->lock readers (tier 3) */

/* ---- rcu.h (liburcu memb) ---- */
bool in_rcu[NR];		/* reader i is in a read-side section */
bool gp_wait[NR];		/* synchronize_rcu() waits for reader i's section */

/* ---- region.h struct fl_region: the one object, reused through the pool ---- */
byte gen = 1;			/* r->gen; region_free() poisons it to 0 */
byte content = C_OLD;		/* r->pager/src/fill: what the pager produces */
bool blocking;			/* kind_may_block(): a fill pager */
byte refcnt = 1;		/* r->refcnt, REF_ATTACHED */
byte ps = ABSENT;		/* r->pstate[pg] */
bool freed = false;		/* region_free()d: pstate unmapped, in the pool */

/* ---- the kernel ---- */
byte reg = 1;			/* registration of the range: 0 none, 1 old, 2 new */
byte reg_content = C_OLD;	/* the pager of the region registered there */
bool present = false;		/* the page is mapped */

/* ---- writer progress ---- */
bool wbias = false;		/* REF_WRITER added */
bool wdone = false;

/* UFFDIO_COPY / UFFDIO_ZEROPAGE (uffd.c uffd_copy / uffd_zeropage) */
inline kernel_install(c, ret)
{
	atomic {
		if
		:: reg == 0 -> ret = ENOENT
		:: reg != 0 && present -> ret = EEXIST
		:: reg != 0 && !present ->
			present = true;
			ret = OK;
			/* no stale install */
			assert(c == reg_content)
		fi
	}
}

/* a reader touches the object it looked up: it must still be that object */
inline use()
{
#ifndef NO_USE_CHECK
	assert(!freed && gen == mygen)
#else
	skip
#endif
}

inline rcu_read_unlock()
{
	atomic { in_rcu[me] = false; gp_wait[me] = false }
}

/* fault.c snap_take(): copy what the fault needs */
inline snap_take()
{
	atomic {
#ifndef NO_USE_CHECK
		assert(!freed);
#endif
		mygen = gen;
		myc = content;
		blk = blocking
	}
}

/*
 * fault.c resolve() once the page is looked at: claim it (CAS ABSENT ->
 * FILLING), install(), page_finish() -> RESIDENT (or back to ABSENT when the
 * range was gone). A page FILLING or RESIDENT is a duplicate: done.
 */
inline resolve_claimed()
{
	atomic {
		use();
		if
		:: ps == ABSENT -> ps = FILLING; claimed = true
		:: else -> claimed = false
		fi
	}
	if
	:: claimed ->
		kernel_install(myc, ret);
		assert(ret != EEXIST);	/* FILLING is exclusive */
		atomic {
			use();
			if
			:: ret == OK -> ps = RESIDENT
			:: else -> ps = ABSENT	/* finish_run(revert) */
			fi
		}
	:: else
	fi
}

/*
 * region.c region_start_read_checked(): inc-not-zero-below-limit, then the
 * re-check of generation (and range: region_free() poisons both).
 */
inline start_read_checked()
{
	atomic {
#ifdef NO_BIAS
		if
		:: refcnt == 0 -> locked = true
		:: else -> refcnt++; locked = false
		fi;
#else
		if
		:: refcnt == 0 || refcnt + 1 >= REF_WRITER -> locked = true
		:: else -> refcnt++; locked = false
		fi;
#endif
		/* no reader enters once the writer offset is set */
		assert(locked || refcnt < REF_WRITER)
	}
	/* FL_TEST_PAUSE(FL_PAUSE_REGION_RECHECK): between inc and re-check */
	if
	:: !locked ->
		if
		:: gen != mygen -> refcnt--; stale = true	/* region_abort_stale */
		:: else -> stale = false
		fi
	:: else
	fi
}

proctype handler(byte me)
{
	byte mygen, myc, s, r, v, ret;
	bool blk, claimed, locked, stale;

fault:
	/* handler.c handle_msg(): a UFFD_EVENT_PAGEFAULT for the page (the
	 * kernel sends one only while the range is registered; duplicates
	 * of an installed page are possible) */
	atomic { reg != 0 -> skip };
	if
	:: goto tier1			/* FL_TIERS_ADAPTIVE, FL_TIERS_SPF */
	:: goto tier2			/* FL_TIERS_REGION */
	:: goto tier3			/* FL_TIERS_GLOBAL */
	fi;

tier1:	/* fault.c tier1() */
	s = seq;			/* index_seq_begin() */
	in_rcu[me] = true;		/* fl_rcu_read_lock() */
	r = idx;			/* index_lookup(fl_rcu_dereference(ix->cur)) */
	if
	:: r == NONE ->
		rcu_read_unlock();
#ifdef UNKNOWN_UNLOCKED
		if
		:: (s % 2 == 1) || seq != s -> goto tier3	/* spf_abort_seq_* */
		:: else -> kernel_install(C_ZERO, ret); goto fault	/* serve_unknown */
		fi
#else
		goto tier3		/* aborts, and "not ours": tier 3 decides */
#endif
	:: else
	fi;
	snap_take();
	/* resolve(may_block = false) */
	atomic { use(); v = ps };
	if
	:: v != ABSENT ->		/* duplicate */
		rcu_read_unlock(); goto fault
	:: v == ABSENT && !blk ->
		resolve_claimed();
		rcu_read_unlock();	/* spf_ok */
		goto fault
	:: v == ABSENT && blk -> skip	/* RES_BLOCK: spf_abort_blocking */
	fi;
	/* tier 2, entered from tier 1 with the object pinned by RCU */
	start_read_checked();
	if
	:: locked || stale -> rcu_read_unlock(); goto tier3	/* region_abort_* */
	:: else
	fi;
	rcu_read_unlock();
	resolve_claimed();		/* resolve(may_block = true) */
	refcnt--;			/* region_end_read(): region_ok */
	goto fault;

tier2:	/* fault.c tier2() */
	in_rcu[me] = true;
	r = idx;
	if
	:: r == NONE -> rcu_read_unlock(); goto tier3
	:: else
	fi;
	mygen = gen;			/* gen = r->gen */
	start_read_checked();
	if
	:: locked || stale -> rcu_read_unlock(); goto tier3
	:: else
	fi;
	rcu_read_unlock();
	snap_take();
	resolve_claimed();
	refcnt--;
	goto fault;

tier3:	/* fault.c tier3(): pthread_rwlock_rdlock(&ix->lock) */
#ifdef READER_PREF
	atomic { !wlocked -> rdcnt++ };
#else
	atomic { !wlocked && !wwant -> rdcnt++ };
#endif
	r = idx;
	if
	:: r == NONE ->
#ifdef UNKNOWN_UNLOCKED
		rdcnt--;
		kernel_install(C_ZERO, ret);	/* serve_unknown() after unlock */
#else
		kernel_install(C_ZERO, ret);	/* serve_unknown() under the lock */
		rdcnt--;
#endif
	:: else ->
		snap_take();
		resolve_claimed();
		rdcnt--
	fi;
	goto fault
}

/* index.c index_write_begin(): wrlock (writers preferred), seq odd */
inline index_write_begin()
{
	wwant = true;
	atomic { rdcnt == 0 && !wlocked -> wlocked = true; wwant = false };
	seq++
}

/* index.c index_write_end(): seq even, unlock */
inline index_write_end()
{
	seq++;
	wlocked = false
}

proctype writer()
{
	/* ---- fl_region_unregister() -> remove_region_locked() ---- */
	index_write_begin();			/* step 1 */
	idx = NONE;				/* step 2: index_publish_locked(del) */
	/* step 3: region_write_lock() */
	refcnt = refcnt + REF_WRITER;
	wbias = true;
	(refcnt == REF_WRITER + 1);
	/* FL_TEST_PAUSE(FL_PAUSE_WRITER_PUBLISHED): before the grace period */
#ifndef NO_GRACE
	/* step 4: index_synchronize_locked() -> synchronize_rcu() */
	atomic { gp_wait[0] = in_rcu[0]; gp_wait[1] = in_rcu[1] };
	(!gp_wait[0] && !gp_wait[1]);
#endif
	/* step 5: uffd_unregister() and munmap() of an fl_region_map() region */
	atomic { reg = 0; present = false };
	/* step 7: region_detach_locked(), region_free() */
	refcnt = 0;
	atomic { freed = true; gen = 0 };
	index_write_end();			/* step 8 */

	/* ---- fl_region_map() again, same address -> register_locked() ---- */
	index_write_begin();
	/* region_alloc(): the pool hands back the object just freed */
	atomic { freed = false; gen = 2; ps = ABSENT; content = C_NEW };
	if
	:: blocking = true
	:: blocking = false
	fi;
	atomic { reg = 2; reg_content = C_NEW };	/* uffd_register() */
	refcnt = 1;				/* region_attach() */
	idx = 0;				/* index_publish_locked(add) */
	index_write_end();
	wdone = true
}

init
{
	atomic {
		if
		:: blocking = true
		:: blocking = false
		fi;
		run handler(0);
		run handler(1);
		run writer()
	}
}

/* writers make progress: the writer always finishes */
ltl writer_done { <> wdone }
