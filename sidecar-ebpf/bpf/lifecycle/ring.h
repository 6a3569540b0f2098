/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The records' way out: the maps every lifecycle program writes (ring
 * buffer, reader state, stats), reserving and submitting records with the
 * reader's wakeup, lost records for what was dropped, and the rate limit.
 * Part of common.h, which includes it after the load-time constants.
 */
#ifndef LINNIX_LIFECYCLE_RING_H
#define LINNIX_LIFECYCLE_RING_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, LINNIX_RING_BYTES);
} events SEC(".maps");

/*
 * One u32, LINNIX_READER_ASLEEP while the reader blocks until woken, else 0
 * (it polls the ring on its own timer). See submit_record().
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u32);
} reader_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LINNIX_STAT_MAX);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

/* Fixed one-second window shared by all CPUs; see rate_limit_allows(). */
u64 rl_window_start = 0;
u64 rl_window_count = 0;

/*
 * Drops not yet reported in a lost record (see report_losses()), and when
 * the last lost record was written.
 */
u64 unreported_lost = 0;
u64 unreported_rate_limited = 0;
u64 lost_reported_ns = 0;

static __always_inline void count_stat(u32 index)
{
	u64 *value = bpf_map_lookup_elem(&stats, &index);

	/* per-CPU slot: no other writer, a plain add is enough */
	if (value)
		*value += 1;
}

/* An event dropped: counted for the metrics and for the next lost record. */
static __always_inline void count_drop(u32 index)
{
	count_stat(index);
	if (index == LINNIX_STAT_RATE_LIMITED)
		__sync_fetch_and_add(&unreported_rate_limited, 1);
	else
		__sync_fetch_and_add(&unreported_lost, 1);
}

/*
 * Put a lost record in the ring before the record about to be reserved, if
 * events were dropped since the last one: a reader of the stream then sees
 * where the hole is. At most one per LINNIX_LOST_REPORT_NS, so that a long
 * flood, where exits keep passing while forks and execs are dropped, does not
 * put one before every exit. If the ring has no room either, the counts wait
 * for the next record.
 */
static __always_inline void report_losses(void)
{
	struct linnix_lost_event *m;
	u64 now, lost, limited;

	/* Plain loads: on the usual path nothing was dropped. */
	if (!unreported_lost && !unreported_rate_limited)
		return;
	now = bpf_ktime_get_boot_ns();
	if (now - lost_reported_ns < LINNIX_LOST_REPORT_NS)
		return;
	m = bpf_ringbuf_reserve(&events, sizeof(*m), 0);
	if (!m)
		return;
	/* Of CPUs racing here, the exchanges give each drop to one record. */
	lost = __sync_lock_test_and_set(&unreported_lost, 0);
	limited = __sync_lock_test_and_set(&unreported_rate_limited, 0);
	if (!lost && !limited) {
		bpf_ringbuf_discard(m, BPF_RB_NO_WAKEUP);
		return;
	}
	lost_reported_ns = now;
	__builtin_memset(&m->hdr, 0, sizeof(m->hdr));
	m->hdr.kind = LINNIX_EVENT_LOST;
	m->hdr.ts_boot_ns = now;
	m->lost = lost;
	m->rate_limited = limited;
	/* The record reserved next wakes the reader if it has to. */
	bpf_ringbuf_submit(m, BPF_RB_NO_WAKEUP);
}

/*
 * Per-pod budget for fork and exec events: at most max_events_per_sec in each
 * one-second window. A window is a pair of shared counters updated with
 * atomics; two CPUs that open a new window at the same moment may let a few
 * extra events through, which is harmless for a flood guard.
 */
static __always_inline bool rate_limit_allows(void)
{
	u64 now, start;

	if (!max_events_per_sec)
		return true;

	now = bpf_ktime_get_ns();
	start = rl_window_start;
	if (now - start >= NSEC_PER_SEC) {
		if (__sync_val_compare_and_swap(&rl_window_start, start, now) == start)
			__sync_lock_test_and_set(&rl_window_count, 0);
	}
	if (__sync_fetch_and_add(&rl_window_count, 1) < max_events_per_sec)
		return true;

	count_drop(LINNIX_STAT_RATE_LIMITED);
	return false;
}

/*
 * Fork and exec events stop once the ring buffer is three quarters full, so
 * the last quarter stays free for exits and OOM kills: those are the events a
 * pod operator cannot reconstruct from anything else.
 */
static __always_inline bool ring_has_room_for_bulk(void)
{
	u64 used = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	if (used <= LINNIX_RING_BYTES - LINNIX_RING_BYTES / 4)
		return true;
	count_drop(LINNIX_STAT_LOST);
	return false;
}

/*
 * A ring-buffer record of size bytes, or NULL with the loss counted; any
 * lost record that is due goes in first.
 */
static __always_inline void *reserve_record(u64 size)
{
	void *record;

	report_losses();
	record = bpf_ringbuf_reserve(&events, size, 0);
	if (!record)
		count_drop(LINNIX_STAT_LOST);
	return record;
}

/*
 * Commit a record, waking the reader only when it needs it. A wakeup is a
 * cross-CPU interrupt taken in the context of the task that emitted the
 * record: in a VM, tens of microseconds per event off a spawning pod. So a
 * busy reader is never woken; it polls the ring on its own timer. Only once
 * the pod has gone quiet does it set reader_state and block, and the first
 * record after that wakes it. A reader that falls a quarter of the ring
 * behind is woken whatever it does.
 */
static __always_inline void submit_record(void *record)
{
	u32 zero = 0;
	u32 *asleep;
	u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= LINNIX_RING_BYTES / 4)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(record, flags);

	/*
	 * Read after the commit, which is a full barrier: a reader that set the
	 * flag later drains after setting it and so finds this record; one that
	 * set it earlier may have drained before the commit and is woken here.
	 * The wakeup comes from an empty record, discarded at once: consumers
	 * skip it. Of several CPUs that race here, the one whose exchange sees
	 * the flag set wakes the reader.
	 */
	asleep = bpf_map_lookup_elem(&reader_state, &zero);
	if (asleep && *asleep == LINNIX_READER_ASLEEP &&
	    __sync_lock_test_and_set(asleep, 0) == LINNIX_READER_ASLEEP) {
		void *nudge = bpf_ringbuf_reserve(&events, 8, 0);

		if (nudge)
			bpf_ringbuf_discard(nudge, BPF_RB_FORCE_WAKEUP);
		else
			/* Ring full: the reader is already due a forced wakeup. */
			*asleep = LINNIX_READER_ASLEEP;
	}
}

#endif /* LINNIX_LIFECYCLE_RING_H */
