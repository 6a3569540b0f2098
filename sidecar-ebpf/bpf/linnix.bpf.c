// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Process lifecycle of one pod: fork, exec, exit and OOM kill.
 *
 * Every program decides in the kernel whether its subject task belongs to the
 * pod (the cgroup v2 subtree rooted at target_cgroup_id, which sits at
 * target_level): nothing about other pods ever reaches the ring buffer.
 */
#include "vmlinux_min.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "bpf_tracing.h"
#include "linnix_events.h"
#include "linnix_task.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NSEC_PER_SEC 1000000000ULL
/* x86-64 pages; rss counters and page_counter values are in pages. */
#define LINNIX_PAGE_SHIFT 12
/* include/linux/page_counter.h: PAGE_COUNTER_MAX = LONG_MAX / PAGE_SIZE */
#define PAGE_COUNTER_MAX (0x7fffffffffffffffULL >> LINNIX_PAGE_SHIFT)

/* Set by the loader before load; rodata, so the verifier prunes dead branches. */
const volatile u64 target_cgroup_id = 0;
const volatile u32 target_level = 0;
const volatile u32 trace_threads = 0;
const volatile u32 max_events_per_sec = 0;

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
 * Processes whose exit was reported. Threads of one group can pass the
 * "live == 0" test together (the last decrement happens on one CPU while
 * another thread, already counted out, is still on its way to the
 * tracepoint); the first to insert the key reports. Entries are only needed
 * for those few microseconds, so a small LRU map is enough.
 */
struct exit_key {
	u32 tgid;
	u32 _pad;
	u64 start_time; /* of the group leader: tgids are reused, this pair is not */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct exit_key);
	__type(value, u8);
} exits_reported SEC(".maps");

/* Fixed one-second window shared by all CPUs; see rate_limit_allows(). */
u64 rl_window_start = 0;
u64 rl_window_count = 0;

static __always_inline void count_stat(u32 index)
{
	u64 *value = bpf_map_lookup_elem(&stats, &index);

	/* per-CPU slot: no other writer, a plain add is enough */
	if (value)
		*value += 1;
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

	count_stat(LINNIX_STAT_RATE_LIMITED);
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
	count_stat(LINNIX_STAT_LOST);
	return false;
}

/* A ring-buffer record of size bytes, or NULL with the loss counted. */
static __always_inline void *reserve_record(u64 size)
{
	void *record = bpf_ringbuf_reserve(&events, size, 0);

	if (!record)
		count_stat(LINNIX_STAT_LOST);
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
 * Does the task belong to the pod? If so, also return the container-level
 * cgroup: the ancestor one level below the pod, or the task's own cgroup when
 * it sits in the pod cgroup itself.
 *
 * This runs for every fork, exec and exit on the node, in every traced pod's
 * tracer, so what it can read with plain loads it does: the programs' task
 * arguments are BTF pointers, and the verifier turns loads through them into
 * fault-safe ones. The ancestors array sits in a union, which the verifier
 * does not walk, so from there on it takes probe reads.
 */
static __always_inline bool task_in_target(struct task_struct *task, struct cgroup **container)
{
	struct cgroup *cgrp = task->cgroups->dfl_cgrp;
	struct cgroup *ancestor;
	u32 level;

	if (!cgrp)
		return false;
	level = cgrp->level;
	if (level < target_level)
		return false;
	ancestor = cgroup_ancestor(cgrp, target_level);
	if (!ancestor || cgroup_id(ancestor) != target_cgroup_id)
		return false;

	*container = level > target_level ? cgroup_ancestor(cgrp, target_level + 1) : cgrp;
	return true;
}

static __always_inline void fill_header(struct linnix_event_header *hdr, u32 kind,
					struct task_struct *task, struct cgroup *container)
{
	/* task is a BTF pointer (see task_in_target()); the pid chain below is
	 * indexed by a runtime level, which only probe reads can follow. */
	struct task_struct *leader = task->group_leader;
	struct task_struct *parent = leader->real_parent;
	struct pid *pid = BPF_CORE_READ(leader, thread_pid);
	/* real_parent may be a thread: its process number is the leader's. */
	struct pid *ppid = BPF_CORE_READ(parent, group_leader, thread_pid);
	u32 level = BPF_CORE_READ(pid, level);
	struct upid *own = pid_upid(pid, level);
	struct pid_namespace *ns = BPF_CORE_READ(own, ns);

	hdr->kind = kind;
	hdr->flags = 0;
	hdr->ts_boot_ns = bpf_ktime_get_boot_ns();
	hdr->host_pid = task->tgid;
	hdr->host_tid = task->pid;
	hdr->host_ppid = parent->tgid;
	hdr->_pad0 = 0;

	/* Numbers as the pod sees them: the innermost PID namespace of the task. */
	hdr->pid = BPF_CORE_READ(own, nr);
	hdr->ppid = 0;
	/* The parent is visible only when it has a number in that same namespace. */
	if (ppid && BPF_CORE_READ(ppid, level) >= level) {
		struct upid *parent_upid = pid_upid(ppid, level);

		if (BPF_CORE_READ(parent_upid, ns) == ns)
			hdr->ppid = BPF_CORE_READ(parent_upid, nr);
	}

	bpf_probe_read_kernel_str(hdr->comm, sizeof(hdr->comm), leader->comm);
	hdr->cgroup_id = container ? cgroup_id(container) : 0;
	bpf_probe_read_kernel_str(hdr->cgroup_name, sizeof(hdr->cgroup_name),
				  BPF_CORE_READ(container, kn, name));
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	struct linnix_fork_event *e;
	struct cgroup *container;
	bool is_thread = child->pid != child->tgid;

	if (is_thread && !trace_threads)
		return 0;
	/* The child's cgroup decides: a parent may spawn into another cgroup. */
	if (!task_in_target(child, &container))
		return 0;
	if (!rate_limit_allows() || !ring_has_room_for_bulk())
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_FORK, child, container);
	if (is_thread)
		e->hdr.flags |= LINNIX_FLAG_THREAD;
	submit_record(e);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct linnix_exec_event *e;
	struct cgroup *container;
	const char *filename;
	unsigned long arg_start, arg_end;
	u64 len;
	long ret;

	if (!task_in_target(p, &container))
		return 0;
	if (!rate_limit_allows() || !ring_has_room_for_bulk())
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_EXEC, p, container);

	filename = BPF_CORE_READ(bprm, filename);
	ret = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
	if (ret == sizeof(e->filename)) {
		char next = 0;

		/* The buffer is full: was that the whole name or only its start? */
		bpf_probe_read_kernel(&next, 1, filename + sizeof(e->filename) - 1);
		if (next)
			e->hdr.flags |= LINNIX_FLAG_FILENAME_TRUNCATED;
	}

	/*
	 * argv as laid out by the kernel on the new stack: NUL-separated strings
	 * between mm->arg_start and mm->arg_end, freshly written, so resident.
	 * One copy of at most LINNIX_ARGS_LEN bytes; user space splits it.
	 */
	e->argc = BPF_CORE_READ(bprm, argc);
	arg_start = BPF_CORE_READ(p, mm, arg_start);
	arg_end = BPF_CORE_READ(p, mm, arg_end);
	len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (len > LINNIX_ARGS_LEN) {
		len = LINNIX_ARGS_LEN;
		e->hdr.flags |= LINNIX_FLAG_ARGV_TRUNCATED;
	}
	if (e->argc > LINNIX_MAX_ARGS)
		e->hdr.flags |= LINNIX_FLAG_ARGV_TRUNCATED;
	if (bpf_probe_read_user(e->args, len, (void *)arg_start)) {
		len = 0;
		e->hdr.flags |= LINNIX_FLAG_ARGV_TRUNCATED;
	}
	e->args_len = len;

	submit_record(e);
	return 0;
}

/*
 * Report the exit of p's thread group, once p is known to be its last thread.
 * With dedupe, the exits_reported map lets only the first of several threads
 * that all believe so report.
 */
static __always_inline int report_exit(struct task_struct *p, bool dedupe)
{
	struct linnix_exit_event *e;
	struct cgroup *container;
	struct signal_struct *signal = BPF_CORE_READ(p, signal);
	struct task_struct *leader;
	struct exit_key key = {};
	u8 reported = 1;
	u32 status;

	if (!task_in_target(p, &container))
		return 0;
	leader = BPF_CORE_READ(p, group_leader);
	key.tgid = BPF_CORE_READ(p, tgid);
	key.start_time = BPF_CORE_READ(leader, start_time);
	if (dedupe && bpf_map_update_elem(&exits_reported, &key, &reported, BPF_NOEXIST))
		return 0;
	/* Exits are never rate limited: one per process, and the most wanted. */

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_EXIT, p, container);

	/*
	 * exit_group() and fatal signals store the group's status in the signal
	 * struct; the last thread's own exit_code may differ (e.g. a non-leader
	 * thread called _exit(7) and the leader was then killed).
	 */
	if (BPF_CORE_READ(signal, flags) & SIGNAL_GROUP_EXIT)
		status = BPF_CORE_READ(signal, group_exit_code);
	else
		status = BPF_CORE_READ(p, exit_code);
	e->status = status;
	e->_pad0 = 0;

	e->lifetime_ns = bpf_ktime_get_ns() - key.start_time;
	/* The event is about the process: report its tgid, not the last thread. */
	e->hdr.host_tid = e->hdr.host_pid;

	submit_record(e);
	return 0;
}

/*
 * Kernels whose tracepoint says which thread ended the group (6.18 does):
 * do_exit() computes group_dead with atomic_dec_and_test(), so exactly one
 * thread per group sees it true and no bookkeeping is needed. The loader
 * falls back to handle_exit where this argument does not exist.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit_group_dead, struct task_struct *p, bool group_dead)
{
	if (!group_dead)
		return 0;
	return report_exit(p, false);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *p)
{
	/*
	 * The tracepoint fires for every thread; do_exit() has already dropped
	 * this thread from signal->live, so zero means the whole group is gone.
	 */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	return report_exit(p, true);
}

static __always_inline u64 mm_counter_kb(struct mm_struct *mm, u32 member)
{
	s64 pages = 0;

	/* Like get_mm_counter(): the approximate percpu_counter value, never below 0. */
	switch (member) {
	case MM_FILEPAGES:
		pages = BPF_CORE_READ(mm, rss_stat[MM_FILEPAGES].count);
		break;
	case MM_ANONPAGES:
		pages = BPF_CORE_READ(mm, rss_stat[MM_ANONPAGES].count);
		break;
	case MM_SHMEMPAGES:
		pages = BPF_CORE_READ(mm, rss_stat[MM_SHMEMPAGES].count);
		break;
	}
	return pages > 0 ? (u64)pages << (LINNIX_PAGE_SHIFT - 10) : 0;
}

/*
 * The victim's memory cgroup. On a hybrid host this is the v1 memcg, which is
 * where the limit lives there; on a unified host it is the v2 one.
 */
static __always_inline bool read_memcg(struct task_struct *task, u64 *usage, u64 *limit)
{
	struct cgroup_subsys_state *css = NULL;
	struct css_set *cset;
	struct mem_cgroup *memcg;
	u32 id;
	u64 max;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return false;
	id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id >= bpf_core_field_size(struct css_set, subsys) / sizeof(css))
		return false;

	cset = BPF_CORE_READ(task, cgroups);
	bpf_probe_read_kernel(&css, sizeof(css),
			      (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
				      (u64)id * sizeof(css));
	if (!css)
		return false;

	/* container_of(css, struct mem_cgroup, css) */
	memcg = (void *)css - bpf_core_field_offset(struct mem_cgroup, css);
	*usage = (u64)BPF_CORE_READ(memcg, memory.usage.counter) << LINNIX_PAGE_SHIFT;
	max = BPF_CORE_READ(memcg, memory.max);
	*limit = max >= PAGE_COUNTER_MAX ? ~0ULL : max << LINNIX_PAGE_SHIFT;
	return true;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(handle_mark_victim, struct task_struct *task)
{
	struct linnix_oom_event *e;
	struct cgroup *container;
	struct mm_struct *mm;
	u64 usage = 0, limit = 0;

	/* Runs in the allocating task's context: the victim's cgroup decides. */
	if (!task_in_target(task, &container))
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_OOM_KILL, task, container);
	e->hdr.host_tid = e->hdr.host_pid;

	mm = BPF_CORE_READ(task, mm);
	e->rss_anon_kb = mm ? mm_counter_kb(mm, MM_ANONPAGES) : 0;
	e->rss_file_kb = mm ? mm_counter_kb(mm, MM_FILEPAGES) : 0;
	e->rss_shmem_kb = mm ? mm_counter_kb(mm, MM_SHMEMPAGES) : 0;

	if (read_memcg(task, &usage, &limit))
		e->hdr.flags |= LINNIX_FLAG_MEMCG_KNOWN;
	e->memcg_usage_bytes = usage;
	e->memcg_limit_bytes = limit;

	submit_record(e);
	return 0;
}
