// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * exec: the new program's filename and argv.
 */
#include "common.h"

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct linnix_exec_event *e;
	const char *filename;
	unsigned long arg_start, arg_end;
	u64 len;
	long ret;

	/* The tracepoint fires in the task that executes: p is current. */
	if (!current_in_target())
		return 0;
	if (!rate_limit_allows() || !ring_has_room_for_bulk())
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_EXEC, p, task_container(p));

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
