/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Whether a task belongs to the pod, and what an event says about it: the
 * pod filter, pod membership in task storage, pid numbers in the target PID
 * namespace, and the event header. Part of common.h, which includes it
 * after the load-time constants.
 */
#ifndef LINNIX_LIFECYCLE_FILTER_H
#define LINNIX_LIFECYCLE_FILTER_H

/* Deepest PID namespace nesting the kernel allows (MAX_PID_NS_LEVEL). */
#define LINNIX_MAX_PIDNS_LEVELS 32

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

#endif /* LINNIX_LIFECYCLE_FILTER_H */
