// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * fork: a new process (or, with trace_threads, a new thread) in the pod.
 */
#include "common.h"

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	struct linnix_fork_event *e;
	struct cgroup *container;
	struct css_set *cset = child->cgroups;
	bool is_thread = child->pid != child->tgid;

	if (is_thread && !trace_threads)
		return 0;
	/*
	 * The child's cgroup decides: a parent may clone it into another cgroup
	 * (clone3 with CLONE_INTO_CGROUP). Usually the child shares the parent's
	 * css_set, and the parent is the current task, which the cheap test
	 * covers. The parent may be moved to another cgroup meanwhile: its
	 * css_set read again after the test says whether the test saw the
	 * child's cgroup. Whatever passes is checked on the child itself.
	 */
	if (cset == parent->cgroups && !current_in_target() && cset == parent->cgroups)
		return 0;
	if (!task_in_target_container(child, &container))
		return 0;
	/* Membership does not depend on whether the event is written. */
	if (!is_thread)
		remember_member(child, cgroup_id(container));
	if (!rate_limit_allows() || !ring_has_room_for_bulk())
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_FORK, child, container);
	if (is_thread)
		e->hdr.flags |= LINNIX_FLAG_THREAD;
	/* parent is the task that called fork (current), whoever the child's
	 * parent became. */
	e->creator_host_pid = parent->tgid;
	e->_pad0 = 0;
	e->creator_start_ns = BPF_CORE_READ(parent, group_leader, start_boottime);
	if (in_target(BPF_CORE_READ(parent, cgroups, dfl_cgrp)))
		e->hdr.flags |= LINNIX_FLAG_CREATOR_IN_TARGET;
	submit_record(e);
	return 0;
}
