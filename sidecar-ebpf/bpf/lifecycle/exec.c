// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * exec: the new program's filename and argv, and the privileges it raised.
 */
#include "common.h"

#define LINNIX_FILENAME_TAIL (LINNIX_FILENAME_LEN - 1 - LINNIX_FILENAME_HEAD)

/*
 * bprm->filename into e->filename. A name that does not fit keeps its first
 * LINNIX_FILENAME_HEAD bytes and its last LINNIX_FILENAME_TAIL, so that the
 * binary's own name survives a long directory path; filename_len says how
 * long it was (LINNIX_FILENAME_LEN - 1 with the flag set: cut at an unknown
 * length, the start only). The length is found in e->args, which argv
 * overwrites later.
 */
static __always_inline void read_filename(struct linnix_exec_event *e, const char *filename)
{
	long ret = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
	u32 len = ret > 0 ? ret - 1 : 0;
	u32 i;

	e->filename_len = len;
	e->_pad0 = 0;
	if (ret < (long)sizeof(e->filename))
		return;
	/* The buffer is full; the rest of the name, a chunk at a time. */
	for (i = 0; i < LINNIX_PATH_MAX / (sizeof(e->args) - 1) + 1; i++) {
		ret = bpf_probe_read_kernel_str(e->args, sizeof(e->args), filename + len);
		if (ret <= 0) {
			/* Cut, but where is unknown: the start only (filename_len stays). */
			e->hdr.flags |= LINNIX_FLAG_FILENAME_TRUNCATED;
			return;
		}
		len += ret - 1;
		if (ret < (long)sizeof(e->args))
			break;
	}
	e->filename_len = len;
	if (len < sizeof(e->filename))
		return;
	e->hdr.flags |= LINNIX_FLAG_FILENAME_TRUNCATED;
	bpf_probe_read_kernel(e->filename + LINNIX_FILENAME_HEAD, LINNIX_FILENAME_TAIL,
			      filename + len - LINNIX_FILENAME_TAIL);
	e->filename[sizeof(e->filename) - 1] = 0;
}

/*
 * Did this exec raise privileges? Only a comparison of the credentials
 * before and after tells: after it, a task whose real and effective ids
 * differ looks the same whether the exec made them differ or they differed
 * before. sched_prepare_exec is the one point that sees both (current->cred
 * still the old ones, bprm->cred the new ones the kernel has computed), so
 * handle_prepare_exec decides there and leaves the answer in task storage
 * for handle_exec, which runs in the same task once the exec succeeded
 * (de_thread keeps the task_struct of the thread that execs).
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, u32);
} exec_privileges SEC(".maps");

/* In exec_privileges: handle_prepare_exec has decided (the flags may be 0). */
#define LINNIX_PRIVILEGES_DECIDED (1u << 31)

/*
 * The kernel's own reasons for AT_SECURE in commoncap (cap_bprm_creds_from_file):
 * an effective id other than the old real one, or, for a non-root user,
 * permitted capabilities beyond the ambient set. They hold without any raise
 * (a task that runs with real uid 65534 and effective uid 0 keeps both).
 */
static __always_inline bool commoncap_secure(const struct cred *old, const struct cred *new)
{
	return new->euid.val != old->uid.val || new->egid.val != old->gid.val ||
	       (new->uid.val != 0 && (new->cap_permitted.val & ~new->cap_ambient.val));
}

/*
 * What the exec changed, as Tetragon's binary_properties reports it:
 * - setuid / setgid: the effective id became the file's owner by its
 *   set-ID bit (the mode of bprm->file, the interpreter for a script); a
 *   bit the kernel ignored (nosuid, no_new_privs) changes nothing;
 * - file caps: the permitted set gained capabilities while neither the real
 *   nor the effective uid is root (for root the exec restores its bounding
 *   set whatever the file says);
 * - secure exec: AT_SECURE (bprm->secureexec) along with one of those, or
 *   for a reason commoncap does not explain (an LSM's domain transition).
 */
static __always_inline u32 privilege_flags(const struct cred *old, const struct cred *new,
					   struct linux_binprm *bprm)
{
	struct inode *inode = bprm->file->f_inode;
	umode_t mode = inode->i_mode;
	u32 flags = 0;

	if ((mode & S_ISUID) && new->euid.val != old->euid.val &&
	    new->euid.val == inode->i_uid.val)
		flags |= LINNIX_FLAG_SETUID;
	if ((mode & S_ISGID) && (mode & S_IXGRP) && new->egid.val != old->egid.val &&
	    new->egid.val == inode->i_gid.val)
		flags |= LINNIX_FLAG_SETGID;
	if ((new->cap_permitted.val & ~old->cap_permitted.val) && new->uid.val != 0 &&
	    new->euid.val != 0)
		flags |= LINNIX_FLAG_FILE_CAPS;
	if (BPF_CORE_READ_BITFIELD_PROBED(bprm, secureexec) &&
	    (flags || !commoncap_secure(old, new)))
		flags |= LINNIX_FLAG_SECUREEXEC;
	return flags;
}

SEC("tp_btf/sched_prepare_exec")
int BPF_PROG(handle_prepare_exec, struct task_struct *p, struct linux_binprm *bprm)
{
	const struct cred *new = bprm->cred;
	u32 *decided;

	if (!current_in_target() || !new)
		return 0;
	decided = bpf_task_storage_get(&exec_privileges, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (decided)
		*decided = LINNIX_PRIVILEGES_DECIDED | privilege_flags(p->cred, new, bprm);
	return 0;
}

/*
 * The decision of handle_prepare_exec, taken so that no later exec reads it.
 * Without one (a kernel before 6.10 has no sched_prepare_exec; a task moved
 * into the pod in the middle of its exec) the kernel's AT_SECURE verdict
 * stands alone: it may say secure_exec where nothing was raised, but it
 * misses no raise.
 */
static __always_inline u32 take_privilege_flags(struct task_struct *p, struct linux_binprm *bprm)
{
	u32 *decided = bpf_task_storage_get(&exec_privileges, p, 0, 0);
	u32 flags;

	if (decided && (*decided & LINNIX_PRIVILEGES_DECIDED)) {
		flags = *decided & ~LINNIX_PRIVILEGES_DECIDED;
		*decided = 0;
		return flags;
	}
	return BPF_CORE_READ_BITFIELD_PROBED(bprm, secureexec) ? LINNIX_FLAG_SECUREEXEC : 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct linnix_exec_event *e;
	struct cgroup *container;
	unsigned long arg_start, arg_end;
	u64 len;

	/* The tracepoint fires in the task that executes: p is current. */
	if (!current_in_target())
		return 0;
	container = task_container(p);
	if (!container)
		return 0;
	/*
	 * Usually already set by fork; not when a thread other than the leader
	 * exec'd, which leaves the process in that thread's task_struct.
	 */
	remember_member(p, cgroup_id(container));
	if (!rate_limit_allows() || !ring_has_room_for_bulk())
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_EXEC, p, container);

	read_filename(e, BPF_CORE_READ(bprm, filename));
	e->hdr.flags |= take_privilege_flags(p, bprm);

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
