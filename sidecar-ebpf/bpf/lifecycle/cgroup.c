// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * cgroup: a process moved into the pod from outside (kubectl exec, an exec
 * probe, any runtime "exec"), out of it, or between its containers.
 *
 * cgroup_attach_task runs after a successful migration, in the context of
 * the task that wrote cgroup.procs, for every hierarchy of a hybrid host.
 * It is far rarer than fork or exec (container starts, runtime execs,
 * service starts), yet every traced pod's tracer runs it for every move on
 * the node: a v1 move is rejected by one comparison, a v2 move by the pod
 * filter and one task storage lookup (was the task in the pod before?).
 */
#include "common.h"

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(handle_cgroup_attach, struct cgroup *dst, const char *path, struct task_struct *task,
	     bool threadgroup)
{
	struct linnix_cgroup_event *e;
	struct linnix_member *m;
	struct cgroup *container = NULL;
	u64 from = 0, to;
	u32 change;

	/*
	 * After a v2 move the task's default-hierarchy cgroup is the
	 * destination; a v1 one leaves it alone. A single thread moved within
	 * a threaded subtree is not a process changing place.
	 */
	if (task->cgroups->dfl_cgrp != dst || task->pid != task->tgid)
		return 0;
	m = bpf_task_storage_get(&members, task, 0, 0);
	if (!task_in_target_container(task, &container)) {
		if (!m)
			return 0;
		from = m->container_id;
		bpf_task_storage_delete(&members, task);
		change = LINNIX_CGROUP_LEAVE;
		container = NULL;
	} else {
		to = cgroup_id(container);
		if (m) {
			/* Within one container (a nested cgroup): nothing to say. */
			if (m->container_id == to)
				return 0;
			from = m->container_id;
			m->container_id = to;
			change = LINNIX_CGROUP_MOVE;
		} else {
			remember_member(task, to);
			change = LINNIX_CGROUP_JOIN;
		}
		/* Arrivals are bulk like forks; departures are kept like exits. */
		if (!rate_limit_allows() || !ring_has_room_for_bulk())
			return 0;
	}

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_CGROUP, task, container);
	if (change == LINNIX_CGROUP_LEAVE)
		e->hdr.cgroup_id = from;
	e->from_cgroup_id = change == LINNIX_CGROUP_MOVE ? from : 0;
	e->change = change;
	e->_pad0 = 0;
	submit_record(e);
	return 0;
}
