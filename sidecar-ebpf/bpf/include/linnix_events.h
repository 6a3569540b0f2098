/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one definition of what the kernel programs send to user space.
 *
 * Compiled into the BPF object by clang and turned into Rust types by
 * bindgen (sidecar-ebpf/build.rs), so both sides always agree on the layout.
 * Only fixed-width types: this header must not depend on vmlinux.h.
 */
#ifndef LINNIX_EVENTS_H
#define LINNIX_EVENTS_H

#define LINNIX_COMM_LEN 16
/* kernfs name of a container cgroup: "cri-containerd-<64 hex>.scope" is 83. */
#define LINNIX_CGROUP_NAME_LEN 128
#define LINNIX_FILENAME_LEN 256
/*
 * A longer filename keeps its first LINNIX_FILENAME_HEAD bytes and its last
 * LINNIX_FILENAME_LEN - 1 - LINNIX_FILENAME_HEAD (so the binary's own name
 * survives), up to the kernel's PATH_MAX.
 */
#define LINNIX_FILENAME_HEAD 64
#define LINNIX_PATH_MAX 4096
/* argv is copied as NUL-separated strings, at most this many bytes ... */
#define LINNIX_ARGS_LEN 1024
/* ... and at most this many arguments. */
#define LINNIX_MAX_ARGS 32
/*
 * Size of the "events" ring buffer; user space bounds one drain by it. The
 * reader empties it at least every poll interval (500 us), so 512 KiB holds
 * about 350 exec records or 2500 exits arriving within one; the sidecar maps
 * the data pages twice, so each byte here is two bytes of its RSS.
 */
#define LINNIX_RING_BYTES (1 << 19)
/* Value the reader stores in the "reader_state" map before it blocks. */
#define LINNIX_READER_ASLEEP 1

enum linnix_event_kind {
	LINNIX_EVENT_FORK = 1,
	LINNIX_EVENT_EXEC = 2,
	LINNIX_EVENT_EXIT = 3,
	LINNIX_EVENT_OOM_KILL = 4,
	/* a process moved into, out of, or between containers of the pod */
	LINNIX_EVENT_CGROUP = 5,
	/* a process already running: one record per process from the task iterator */
	LINNIX_EVENT_PRESENT = 6,
};

/* Bits of linnix_event_header.flags. */
enum linnix_event_flags {
	/* fork: the new task is a thread, not a process */
	LINNIX_FLAG_THREAD = 1 << 0,
	/* exec: argv was cut at LINNIX_MAX_ARGS or LINNIX_ARGS_LEN */
	LINNIX_FLAG_ARGV_TRUNCATED = 1 << 1,
	/* exec: filename was cut at LINNIX_FILENAME_LEN */
	LINNIX_FLAG_FILENAME_TRUNCATED = 1 << 2,
	/* oom_kill: memcg_usage_bytes / memcg_limit_bytes could be read */
	LINNIX_FLAG_MEMCG_KNOWN = 1 << 3,
	/* all: the parent process is in the pod too (parent_start_ns is its identity) */
	LINNIX_FLAG_PARENT_IN_TARGET = 1 << 4,
	/* exec: the kernel marked it AT_SECURE (bprm->secureexec): ids or capabilities were raised */
	LINNIX_FLAG_SECUREEXEC = 1 << 5,
	/* exec: a set-user-ID file changed the effective uid */
	LINNIX_FLAG_SETUID = 1 << 6,
	/* exec: a set-group-ID file changed the effective gid */
	LINNIX_FLAG_SETGID = 1 << 7,
	/* exec: file capabilities raised the permitted set (not set-ID, not root) */
	LINNIX_FLAG_FILE_CAPS = 1 << 8,
	/* fork: the process that forked is in the pod (creator_* is its identity) */
	LINNIX_FLAG_CREATOR_IN_TARGET = 1 << 9,
};

/* linnix_cgroup_event.change */
enum linnix_cgroup_change {
	/* into the pod from outside it */
	LINNIX_CGROUP_JOIN = 1,
	/* out of the pod */
	LINNIX_CGROUP_LEAVE = 2,
	/* from one container-level cgroup of the pod to another */
	LINNIX_CGROUP_MOVE = 3,
};

/* Indices of the per-CPU "stats" array map. */
enum linnix_stat {
	/* the ring buffer was full, or (fork/exec) three quarters full */
	LINNIX_STAT_LOST = 0,
	/* dropped by the in-kernel per-pod rate limit */
	LINNIX_STAT_RATE_LIMITED = 1,
	LINNIX_STAT_MAX = 2,
};

struct linnix_event_header {
	__u32 kind;            /* enum linnix_event_kind */
	__u32 flags;           /* enum linnix_event_flags */
	__u64 ts_boot_ns;      /* bpf_ktime_get_boot_ns() when the event happened */
	__u32 host_pid;        /* tgid in the initial PID namespace */
	__u32 host_tid;        /* thread id in the initial PID namespace */
	__u32 pid;             /* tgid in the target PID namespace (the tracer's, the pod's), 0 if it has none there */
	__u32 ppid;            /* parent tgid in that namespace, 0 if not visible */
	__u32 host_ppid;       /* parent tgid in the initial PID namespace */
	__u32 _pad0;
	__u64 cgroup_id;       /* container-level cgroup: ancestor at pod level + 1, else the task's own */
	char comm[LINNIX_COMM_LEN];
	char cgroup_name[LINNIX_CGROUP_NAME_LEN]; /* kernfs name of that cgroup */
	/* Process identity: with host_pid, unique on the node for the boot. */
	__u64 start_ns;        /* the group leader's start_boottime */
	__u64 parent_start_ns; /* the same for the parent process (host_ppid) */
	__u32 tid;             /* the thread's id in the target PID namespace, 0 if none */
	__u32 inner_pid;       /* tgid in the task's innermost PID namespace */
	__u32 uid;             /* effective uid, as the initial user namespace numbers it */
	__u32 gid;             /* effective gid, likewise */
};

struct linnix_fork_event {
	struct linnix_event_header hdr;
	/*
	 * The process that forked, which is not always the parent: a clone
	 * with CLONE_PARENT (runc's nsexec makes its children so) gives the
	 * child the forker's parent.
	 */
	__u32 creator_host_pid;
	__u32 _pad0;
	__u64 creator_start_ns;
};

struct linnix_exec_event {
	struct linnix_event_header hdr;
	__u32 argc;            /* argc of the new program (bprm->argc), also when args is cut */
	__u32 args_len;        /* bytes used in args: argv strings, each NUL-terminated except a cut last one */
	char filename[LINNIX_FILENAME_LEN];
	char args[LINNIX_ARGS_LEN];
	__u32 filename_len;    /* the whole name's length; above LINNIX_FILENAME_LEN - 1 filename holds head and tail */
	__u32 _pad0;
};

struct linnix_exit_event {
	struct linnix_event_header hdr;
	__u32 status;          /* wait status: code = (status >> 8) & 0xff, signal = status & 0x7f, core = status & 0x80 */
	__u32 _pad0;
	__u64 lifetime_ns;     /* now - group leader's start_time */
};

struct linnix_cgroup_event {
	struct linnix_event_header hdr; /* JOIN, MOVE: the container joined; LEAVE: the one left */
	__u64 from_cgroup_id;  /* MOVE: the container-level cgroup it came from */
	__u32 change;          /* enum linnix_cgroup_change */
	__u32 _pad0;
};

/* One running process, written by the task iterator into its seq_file. */
struct linnix_present_event {
	struct linnix_event_header hdr;
};

struct linnix_oom_event {
	struct linnix_event_header hdr; /* the victim */
	__u64 rss_anon_kb;
	__u64 rss_file_kb;
	__u64 rss_shmem_kb;
	__u64 memcg_usage_bytes;
	__u64 memcg_limit_bytes;
};

/*
 * Own-cgroup discovery (linnix_self.bpf.c): the calling thread's cgroup v2
 * position, written into the one-element "self_cgroup" array map.
 */
#define LINNIX_MAX_CGROUP_LEVELS 64
/* A kernfs name is a file name: at most NAME_MAX (255) bytes plus the NUL. */
#define LINNIX_KERNFS_NAME_LEN 256

struct linnix_self_cgroup {
	__u32 level;           /* depth of the thread's cgroup below the v2 root */
	__u32 valid;           /* 1 once the program ran */
	__u64 ids[LINNIX_MAX_CGROUP_LEVELS]; /* ids[i] = id of the ancestor at level i; ids[level] is the cgroup itself */
	char names[LINNIX_MAX_CGROUP_LEVELS][LINNIX_KERNFS_NAME_LEN]; /* kernfs name of ancestor i ("" for the root) */
};

#endif /* LINNIX_EVENTS_H */
