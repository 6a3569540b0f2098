/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel types the linnix programs touch, written by hand instead of
 * a generated multi-megabyte vmlinux.h.
 *
 * Every struct carries preserve_access_index: clang records each field access
 * as a CO-RE relocation and the loader rewrites the offset to the running
 * kernel's layout (from /sys/kernel/btf/vmlinux). So only field NAMES and
 * TYPES must match the kernel; order, offsets and the fields left out do not
 * matter. Anonymous wrappers in the kernel (mm_struct's randomized block) are
 * found by the loader's recursive member matching.
 */
#ifndef LINNIX_VMLINUX_MIN_H
#define LINNIX_VMLINUX_MIN_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };
typedef int pid_t;
typedef unsigned int uid_t;
typedef unsigned int gid_t;
typedef unsigned short umode_t;

/* uapi constants used by bpf_helpers.h and the map definitions. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	int counter;
} atomic_t;

typedef struct {
	s64 counter;
} atomic64_t;

typedef atomic64_t atomic_long_t;

struct kernfs_node {
	const char *name;
	u64 id;
};

struct cgroup {
	int level;
	struct kernfs_node *kn;
	/* since 6.1; ancestors[0] is the root, ancestors[level] is the cgroup itself */
	struct cgroup *ancestors[];
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
};

struct css_set {
	struct cgroup_subsys_state *subsys[12];
	struct cgroup *dfl_cgrp;
};

struct page_counter {
	atomic_long_t usage;
	/* v2 memory.high; PAGE_COUNTER_MAX on v1, which has no such limit */
	unsigned long high;
	unsigned long max;
};

struct mem_cgroup {
	struct cgroup_subsys_state css;
	struct page_counter memory;
	/* indexed by enum memcg_memory_event; v1 memcgs keep them too */
	atomic_long_t memory_events[9];
	/* this memcg's own, not its descendants' (v2 memory.events.local) */
	atomic_long_t memory_events_local[9];
};

struct percpu_counter {
	s64 count;
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	/* since 6.2 an array of percpu_counter, indexed by enum MM_* below */
	struct percpu_counter rss_stat[4];
};

struct ns_common {
	unsigned int inum;
};

struct pid_namespace {
	struct ns_common ns;
};

struct upid {
	int nr;
	struct pid_namespace *ns;
};

struct pid {
	unsigned int level;
	struct upid numbers[];
};

struct signal_struct {
	atomic_t live;
	int group_exit_code;
	unsigned int flags;
};

typedef struct {
	uid_t val;
} kuid_t;

typedef struct {
	gid_t val;
} kgid_t;

/* a u64 since 6.3 */
typedef struct {
	u64 val;
} kernel_cap_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t euid;
	kgid_t egid;
	kernel_cap_t cap_permitted;
	kernel_cap_t cap_ambient;
};

struct inode {
	umode_t i_mode;
	kuid_t i_uid;
	kgid_t i_gid;
};

struct file {
	struct inode *f_inode;
};

struct task_struct {
	unsigned int flags;
	struct mm_struct *mm;
	int exit_code;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	u64 start_time;
	u64 start_boottime;
	const struct cred *cred;
	char comm[16];
	struct signal_struct *signal;
	struct css_set *cgroups;
};

struct linux_binprm {
	/* Bit fields: read with BPF_CORE_READ_BITFIELD*, which relocates them. */
	unsigned int have_execfd:1;
	unsigned int execfd_creds:1;
	unsigned int secureexec:1;
	/* the file that runs: the interpreter, for a script */
	struct file *file;
	/* the credentials the exec installs; NULL once they are committed */
	struct cred *cred;
	int argc;
	const char *filename;
};

struct seq_file;

/* Context of BPF iterator programs (include/linux/bpf.h, kernel/bpf/task_iter.c). */
struct bpf_iter_meta {
	struct seq_file *seq;
	u64 session_id;
	u64 seq_num;
};

/* Context of a task iterator program (iter/task). */
struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
};

#pragma clang attribute pop

/* Resolved against the running kernel with bpf_core_enum_value(). */
enum cgroup_subsys_id {
	memory_cgrp_id = 4,
};

/* include/linux/memcontrol.h; resolved with bpf_core_enum_value(). */
enum memcg_memory_event {
	MEMCG_LOW = 0,
	MEMCG_HIGH = 1,
	MEMCG_MAX = 2,
	MEMCG_OOM = 3,
	MEMCG_OOM_KILL = 4,
};

/* enum in include/linux/mm_types_task.h */
enum {
	MM_FILEPAGES = 0,
	MM_ANONPAGES = 1,
	MM_SWAPENTS = 2,
	MM_SHMEMPAGES = 3,
};

/* include/uapi/linux/stat.h */
#define S_ISUID 0004000
#define S_ISGID 0002000
#define S_IXGRP 0000010

/* include/linux/sched/signal.h */
#define SIGNAL_GROUP_EXIT 0x00000004

#endif /* LINNIX_VMLINUX_MIN_H */
