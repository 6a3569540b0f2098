// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * exec: the new program's filename and argv.
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
 * Did this exec raise privileges? The kernel's own verdict is AT_SECURE
 * (bprm->secureexec); the reasons are told apart from the new credentials,
 * which are committed by now, and the mode of the file that runs (for a
 * script, the interpreter, whose set-ID bits are the ones that count).
 */
static __always_inline u32 privilege_flags(struct task_struct *p, struct linux_binprm *bprm)
{
	const struct cred *cred = p->cred;
	umode_t mode = bprm->file->f_inode->i_mode;
	u32 flags = 0;

	if ((mode & S_ISUID) && cred->euid.val != cred->uid.val)
		flags |= LINNIX_FLAG_SETUID;
	if ((mode & S_ISGID) && cred->egid.val != cred->gid.val)
		flags |= LINNIX_FLAG_SETGID;
	if (!BPF_CORE_READ_BITFIELD_PROBED(bprm, secureexec))
		return flags;
	/* As the kernel decides it: capabilities beyond the ambient set, for a
	 * non-root user, without a set-ID change. */
	if (!flags && cred->uid.val != 0 &&
	    (cred->cap_permitted.val & ~cred->cap_ambient.val))
		flags |= LINNIX_FLAG_FILE_CAPS;
	return flags | LINNIX_FLAG_SECUREEXEC;
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
	e->hdr.flags |= privilege_flags(p, bprm);

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
