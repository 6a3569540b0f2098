// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * exit: once per process, when its last thread exits, with its wait status
 * and lifetime.
 */
#include "common.h"

/*
 * Processes whose exit was reported. Threads of one group can pass the
 * "live == 0" test together (the last decrement happens on one CPU while
 * another thread, already counted out, is still on its way to the
 * tracepoint); the first to insert the key reports. Entries are only needed
 * for those few microseconds, so a small LRU map is enough: it is created
 * (preallocated, about 90 bytes an entry) even where group_dead makes it
 * unused, in every tracer on the node, so 512 entries rather than thousands.
 */
struct exit_key {
	u32 tgid;
	u32 _pad;
	u64 start_time; /* of the group leader: tgids are reused, this pair is not */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 512);
	__type(key, struct exit_key);
	__type(value, u8);
} exits_reported SEC(".maps");

/*
 * Report the exit of p's thread group, once p is known to be its last thread.
 * With dedupe, the exits_reported map lets only the first of several threads
 * that all believe so report.
 */
static __always_inline int report_exit(struct task_struct *p, bool dedupe)
{
	struct linnix_exit_event *e;
	struct signal_struct *signal;
	struct task_struct *leader;
	struct exit_key key = {};
	u8 reported = 1;
	u32 status;

	/* do_exit() fires the tracepoint in the exiting task: p is current. */
	if (!current_in_target())
		return 0;
	signal = BPF_CORE_READ(p, signal);
	leader = BPF_CORE_READ(p, group_leader);
	key.tgid = BPF_CORE_READ(p, tgid);
	key.start_time = BPF_CORE_READ(leader, start_time);
	if (dedupe && bpf_map_update_elem(&exits_reported, &key, &reported, BPF_NOEXIST))
		return 0;
	/* Exits are never rate limited: one per process, and the most wanted. */

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_EXIT, p, task_container(p));

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
	e->hdr.tid = e->hdr.pid;

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
