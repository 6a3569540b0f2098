/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What every lifecycle program shares: the load-time filter, the maps they
 * all write (ring buffer, reader state, stats), the pod filter, the event
 * header, reserving and submitting records, and the rate limit.
 *
 * It defines maps and globals, so exactly one translation unit includes it:
 * linnix.bpf.c, which includes the programs after it.
 */
#ifndef LINNIX_LIFECYCLE_COMMON_H
#define LINNIX_LIFECYCLE_COMMON_H

#include "vmlinux_min.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "bpf_tracing.h"
#include "linnix_events.h"
#include "linnix_task.h"

#define NSEC_PER_SEC 1000000000ULL

/* Set by the loader before load; rodata, so the verifier prunes dead branches. */
const volatile u64 target_cgroup_id = 0;
const volatile u32 target_level = 0;
const volatile u32 trace_threads = 0;
const volatile u32 max_events_per_sec = 0;
/*
 * Inode number of the PID namespace whose numbers events carry (the
 * tracer's, which in a pod is the pod's); 0: the task's innermost one.
 */
const volatile u32 target_pidns_inum = 0;

/* Deepest PID namespace nesting the kernel allows (MAX_PID_NS_LEVEL). */
#define LINNIX_MAX_PIDNS_LEVELS 32

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

/*
 * The processes of the pod, marked by task storage on their group leader
 * with the container-level cgroup they are in: set where a process first
 * shows up in the pod (fork, exec, the task iterator, a cgroup move), freed
 * by the kernel with the task. A move out of the pod is only recognisable
 * by it: after the move, nothing else says the task was ever here.
 */
struct linnix_member {
	u64 container_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct linnix_member);
} members SEC(".maps");

static __always_inline void remember_member(struct task_struct *task, u64 container_id)
{
	struct linnix_member *m =
		bpf_task_storage_get(&members, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (m)
		m->container_id = container_id;
}

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

/*
 * The pod filter. It runs for every fork, exec and exit on the node, in every
 * traced pod's tracer, and almost always says no, so the no must be cheap.
 *
 * When the subject is the current task (exec, exit, and a fork child that
 * shares its parent's css_set) one helper call answers, computed by the
 * kernel from current's cgroup without a probe read.
 */
static __always_inline bool current_in_target(void)
{
	return bpf_get_current_ancestor_cgroup_id(target_level) == target_cgroup_id;
}

/*
 * The same test for any task (an OOM victim, a child cloned into another
 * cgroup). What it can read with plain loads it does: the programs' task
 * arguments are BTF pointers, and the verifier turns loads through them into
 * fault-safe ones. The ancestors array sits in a union, which the verifier
 * does not walk, so from there on it takes probe reads.
 */
static __always_inline bool task_in_target(struct task_struct *task)
{
	struct cgroup *cgrp = task->cgroups->dfl_cgrp;
	struct cgroup *ancestor;

	if (!cgrp || cgrp->level < target_level)
		return false;
	ancestor = cgroup_ancestor(cgrp, target_level);
	return ancestor && cgroup_id(ancestor) == target_cgroup_id;
}

/*
 * The container-level cgroup of a task in the pod: the ancestor one level
 * below the pod, or the task's own cgroup when it sits in the pod cgroup
 * itself. Only for events that passed the filter.
 */
static __always_inline struct cgroup *task_container(struct task_struct *task)
{
	struct cgroup *cgrp = task->cgroups->dfl_cgrp;

	if (!cgrp)
		return NULL;
	return (u32)cgrp->level > target_level ? cgroup_ancestor(cgrp, target_level + 1) : cgrp;
}

/*
 * The level of that namespace: its place in a task's pid->numbers[], which
 * runs from the initial namespace (0) to the task's own. It is only known
 * in the kernel, so record_pidns() finds it in the loader's own context
 * (see pidns.c) before any other program is attached, and the programs read
 * it here rather than search numbers[] for the inode on every event.
 */
u32 target_pidns_level = 0;

/*
 * The level at which pid has a number in the target PID namespace, with that
 * namespace, or -1 when it has none there (a process of another namespace
 * attached to the pod's cgroup).
 */
static __always_inline int target_pid_level(struct pid *pid, u32 inner, struct pid_namespace **ns)
{
	u32 level = target_pidns_level;
	struct pid_namespace *at;

	if (!target_pidns_inum) {
		*ns = BPF_CORE_READ(pid_upid(pid, inner), ns);
		return inner;
	}
	if (level > inner || level >= LINNIX_MAX_PIDNS_LEVELS)
		return -1;
	at = BPF_CORE_READ(pid_upid(pid, level), ns);
	if (BPF_CORE_READ(at, ns.inum) != target_pidns_inum)
		return -1;
	*ns = at;
	return level;
}

/* The number of pid at level in namespace ns, 0 if it has none there. */
static __always_inline u32 pid_nr_in(struct pid *pid, int level, struct pid_namespace *ns)
{
	struct upid *upid;

	if (!pid || level < 0 || BPF_CORE_READ(pid, level) < (u32)level)
		return 0;
	upid = pid_upid(pid, level);
	if (BPF_CORE_READ(upid, ns) != ns)
		return 0;
	return BPF_CORE_READ(upid, nr);
}

/* Whether a cgroup (read with probe reads) is in the pod's subtree. */
static __always_inline bool in_target(struct cgroup *cgrp)
{
	u32 level = BPF_CORE_READ(cgrp, level);

	return cgrp && level >= target_level &&
	       cgroup_id(cgroup_ancestor(cgrp, target_level)) == target_cgroup_id;
}

/* task_in_target() and, when it holds, the task's container cgroup. */
static __always_inline bool task_in_target_container(struct task_struct *task,
						     struct cgroup **container)
{
	if (!task_in_target(task))
		return false;
	*container = task_container(task);
	return *container != NULL;
}

static __always_inline void fill_header(struct linnix_event_header *hdr, u32 kind,
					struct task_struct *task, struct cgroup *container)
{
	/* task is a BTF pointer (see task_in_target()); the pid chain below is
	 * indexed by a runtime level, which only probe reads can follow. */
	struct task_struct *leader = task->group_leader;
	/* real_parent may be a thread: the process is its group leader. */
	struct task_struct *parent = BPF_CORE_READ(leader, real_parent, group_leader);
	struct pid *pid = BPF_CORE_READ(leader, thread_pid);
	struct pid *ppid = BPF_CORE_READ(parent, thread_pid);
	struct pid *tpid = BPF_CORE_READ(task, thread_pid);
	u32 inner = BPF_CORE_READ(pid, level);
	struct pid_namespace *ns = NULL;
	int level = target_pid_level(pid, inner, &ns);
	const struct cred *cred = BPF_CORE_READ(task, cred);

	hdr->kind = kind;
	hdr->flags = 0;
	hdr->ts_boot_ns = bpf_ktime_get_boot_ns();
	hdr->host_pid = task->tgid;
	hdr->host_tid = task->pid;
	hdr->host_ppid = BPF_CORE_READ(parent, tgid);
	hdr->_pad0 = 0;

	/*
	 * Numbers as the pod sees them: in the target namespace, so that two
	 * processes of nested namespaces do not both come out as pid 1, and a
	 * parent visible there is named. The innermost number goes along.
	 */
	hdr->inner_pid = BPF_CORE_READ(pid_upid(pid, inner), nr);
	hdr->pid = level == (int)inner ? hdr->inner_pid : pid_nr_in(pid, level, ns);
	hdr->ppid = pid_nr_in(ppid, level, ns);
	hdr->tid = tpid == pid ? hdr->pid : pid_nr_in(tpid, level, ns);

	hdr->start_ns = BPF_CORE_READ(leader, start_boottime);
	hdr->parent_start_ns = BPF_CORE_READ(parent, start_boottime);
	if (in_target(BPF_CORE_READ(parent, cgroups, dfl_cgrp)))
		hdr->flags |= LINNIX_FLAG_PARENT_IN_TARGET;
	hdr->uid = BPF_CORE_READ(cred, euid.val);
	hdr->gid = BPF_CORE_READ(cred, egid.val);

	bpf_probe_read_kernel_str(hdr->comm, sizeof(hdr->comm), leader->comm);
	hdr->cgroup_id = container ? cgroup_id(container) : 0;
	hdr->cgroup_name[0] = 0;
	if (container)
		bpf_probe_read_kernel_str(hdr->cgroup_name, sizeof(hdr->cgroup_name),
					  BPF_CORE_READ(container, kn, name));
}

#endif /* LINNIX_LIFECYCLE_COMMON_H */
