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
 * reader empties it every poll interval (500 us); 128 KiB holds about 88
 * exec records or 600 exits, so at the benchmark's 1,600 spawns/s the reader
 * may stall for 40 ms before fork and exec events are dropped (none were,
 * with the two cores busy compiling). The sidecar maps the data pages twice,
 * so each byte here is two bytes of its RSS.
 */
#define LINNIX_RING_BYTES (1 << 17)
/* Value the reader stores in the "reader_state" map before it blocks. */
#define LINNIX_READER_ASLEEP 1

enum linnix_event_kind {
	LINNIX_EVENT_FORK = 1,
	LINNIX_EVENT_EXEC = 2,
	LINNIX_EVENT_EXIT = 3,
	LINNIX_EVENT_OOM_KILL = 4,
	LINNIX_EVENT_MEMORY_PRESSURE = 5,
	/* a process moved into, out of, or between containers of the pod */
	LINNIX_EVENT_CGROUP = 6,
	/* a process already running: one record per process from the task iterator */
	LINNIX_EVENT_PRESENT = 7,
	/*
	 * Records about the stream or the pod's cgroups rather than about a
	 * task: numbered from 32 on. Their header carries kind and ts_boot_ns
	 * only, and for a cgroup the cgroup_id and cgroup_name.
	 */
	LINNIX_EVENT_LOST = 32,
	LINNIX_EVENT_CGROUP_RMDIR = 33,
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
	/* exec: the kernel marked it AT_SECURE (bprm->secureexec) along with a raise below, or for another reason (an LSM) */
	LINNIX_FLAG_SECUREEXEC = 1 << 5,
	/* exec: a set-user-ID file made its owner the effective uid */
	LINNIX_FLAG_SETUID = 1 << 6,
	/* exec: a set-group-ID file made its group the effective gid */
	LINNIX_FLAG_SETGID = 1 << 7,
	/* exec: the permitted set gained capabilities (real and effective uid not root) */
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

/* Why a container's memory cgroup is under pressure. */
enum linnix_pressure_reason {
	/* reclaim at memory.max (v1: memory.limit_in_bytes) or at an ancestor's limit */
	LINNIX_PRESSURE_RECLAIM = 0,
	/* reclaim at memory.high (cgroup v2 only) */
	LINNIX_PRESSURE_HIGH = 1,
	/* usage crossed the threshold share of memory.max (seen by the sampler) */
	LINNIX_PRESSURE_THRESHOLD = 2,
	LINNIX_PRESSURE_REASONS = 3,
};

/*
 * memory_pressure: at most one per container per pressure interval. hdr is
 * the allocating task for reclaims, the container's largest process (by RSS)
 * for threshold crossings; hdr.cgroup_id names the container.
 */
struct linnix_memory_pressure_event {
	struct linnix_event_header hdr;
	__u32 reason;          /* enum linnix_pressure_reason of this occurrence */
	__u32 count;           /* occurrences (any reason) since the container's previous event, this one included */
	__u64 memcg_usage_bytes;
	__u64 memcg_limit_bytes; /* memory.max; ~0 for none */
	__u64 memcg_high_bytes;  /* memory.high; ~0 for none (always on cgroup v1) */
};

/* Per-container pressure bookkeeping: the "memcg_pressure" hash map, keyed by container cgroup id. */
struct linnix_memcg_pressure {
	__u64 last_event_ns;   /* bpf_ktime_get_ns() of the last memory_pressure event */
	__u64 pending;         /* occurrences not yet carried by an event */
	__u64 total[LINNIX_PRESSURE_REASONS]; /* every occurrence, by reason */
	__u64 seen_max;        /* memory_events_local[MEMCG_MAX] at the last reclaim: tells max from high */
	__u64 seen_high;       /* memory_events_local[MEMCG_HIGH] likewise */
	__u32 above_threshold; /* usage was at or over the threshold at the last sample */
	__u32 unseen_passes;   /* sampling passes in a row that found no process of the container */
};

/* Indices of linnix_memcg_sample.events: the counters behind memory.events. */
enum linnix_memcg_event {
	LINNIX_MEMCG_EVENT_HIGH = 0,
	LINNIX_MEMCG_EVENT_MAX = 1,
	LINNIX_MEMCG_EVENT_OOM = 2,
	LINNIX_MEMCG_EVENT_OOM_KILL = 3,
	LINNIX_MEMCG_EVENTS = 4,
};

/* Bits of linnix_memcg_sample.flags. */
enum linnix_sample_flags {
	/* events[] could be read (the kernel keeps memory_events) */
	LINNIX_SAMPLE_EVENTS_KNOWN = 1 << 0,
};

/*
 * One container's memory cgroup, written by the "sample_memory" task
 * iterator into its output: one record whenever the pass finds a container
 * or a shallower memory cgroup of it; the last one of a container wins.
 */
struct linnix_memcg_sample {
	__u64 cgroup_id;       /* container cgroup (v2), as linnix_event_header.cgroup_id */
	__u64 memcg_id;        /* kernfs id of the memory cgroup (the v1 one on hybrid hosts) */
	__u32 memcg_level;     /* its depth in its own hierarchy */
	__u32 flags;           /* enum linnix_sample_flags */
	__u64 usage_bytes;
	__u64 limit_bytes;     /* memory.max (v1: memory.limit_in_bytes); ~0 for none */
	__u64 high_bytes;      /* memory.high; ~0 for none */
	__u64 events[LINNIX_MEMCG_EVENTS];
	char cgroup_name[LINNIX_CGROUP_NAME_LEN]; /* kernfs name of the container cgroup */
};

/*
 * Events dropped since the previous lost record. It is written before the
 * first record that makes it into the ring after a drop (at most one per
 * LINNIX_LOST_REPORT_NS), so the dropped events happened between the
 * previous lost record and this one.
 */
struct linnix_lost_event {
	struct linnix_event_header hdr;
	__u64 lost;            /* the ring buffer was full (fork/exec: three quarters full) */
	__u64 rate_limited;    /* dropped by the per-pod rate limit */
};
#define LINNIX_LOST_REPORT_NS 100000000ULL

/*
 * A container-level cgroup of the pod (one level below it) was removed:
 * hdr.cgroup_id and hdr.cgroup_name name it. Nothing runs in it any more.
 */
struct linnix_cgroup_rmdir_event {
	struct linnix_event_header hdr;
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
