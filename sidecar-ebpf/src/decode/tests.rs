use super::*;
use zerocopy::IntoBytes;

fn header(kind: u32, flags: u32) -> linnix_event_header {
    let mut hdr = linnix_event_header {
        kind,
        flags,
        host_pid: 42,
        host_tid: 43,
        pid: 7,
        ppid: 1,
        host_ppid: 41,
        cgroup_id: 99,
        ..Default::default()
    };
    for (dst, src) in hdr.comm.iter_mut().zip(b"worker") {
        *dst = *src as std::ffi::c_char;
    }
    hdr
}

fn exec_record(args: &[u8], args_len: u32, argc: u32) -> linnix_exec_event {
    let mut e = linnix_exec_event {
        hdr: header(LINNIX_EVENT_EXEC, 0),
        argc,
        args_len,
        ..Default::default()
    };
    for (dst, src) in e.args.iter_mut().zip(args) {
        *dst = *src as std::ffi::c_char;
    }
    for (dst, src) in e.filename.iter_mut().zip(b"/bin/ls") {
        *dst = *src as std::ffi::c_char;
    }
    e
}

#[test]
fn exec_record_round_trip() {
    let e = exec_record(b"ls\0-l\0", 6, 2);
    let Ok(Event::Exec(exec)) = decode(e.as_bytes()) else {
        panic!("not an exec event");
    };
    assert_eq!(exec.filename, "/bin/ls");
    assert_eq!(exec.argv, ["ls", "-l"]);
    assert!(!exec.argv_truncated);
    assert_eq!(exec.task.comm, "worker");
    assert_eq!(
        (exec.task.host_pid, exec.task.pid, exec.task.ppid),
        (42, 7, 1)
    );
}

#[test]
fn exec_with_fewer_strings_than_argc_is_truncated() {
    let e = exec_record(b"ls\0", 3, 5);
    let Ok(Event::Exec(exec)) = decode(e.as_bytes()) else {
        panic!("not an exec event");
    };
    assert!(exec.argv_truncated);
}

#[test]
fn garbled_args_len_stays_inside_the_buffer() {
    let e = exec_record(b"a\0b\0", u32::MAX, u32::MAX);
    let Ok(Event::Exec(exec)) = decode(e.as_bytes()) else {
        panic!("not an exec event");
    };
    assert_eq!(&exec.argv[..2], ["a", "b"]);
    assert!(exec.argv.len() <= LINNIX_MAX_ARGS as usize);
    assert!(exec.argv_truncated);
}

#[test]
fn every_kind_rejects_a_record_cut_short() {
    let exec = exec_record(b"", 0, 0);
    let fork = linnix_fork_event {
        hdr: header(LINNIX_EVENT_FORK, LINNIX_FLAG_THREAD),
        ..Default::default()
    };
    let exit = linnix_exit_event {
        hdr: header(LINNIX_EVENT_EXIT, 0),
        status: 0x300,
        ..Default::default()
    };
    let oom = linnix_oom_event {
        hdr: header(LINNIX_EVENT_OOM_KILL, LINNIX_FLAG_MEMCG_KNOWN),
        memcg_limit_bytes: 64 << 20,
        ..Default::default()
    };
    let pressure = linnix_memory_pressure_event {
        hdr: header(LINNIX_EVENT_MEMORY_PRESSURE, 0),
        count: 1,
        ..Default::default()
    };
    for bytes in [
        exec.as_bytes(),
        fork.as_bytes(),
        exit.as_bytes(),
        oom.as_bytes(),
        pressure.as_bytes(),
    ] {
        assert!(decode(bytes).is_ok());
        for len in [
            0,
            1,
            4,
            size_of::<linnix_event_header>() - 1,
            bytes.len() - 1,
        ] {
            assert!(
                matches!(decode(&bytes[..len]), Err(DecodeError::TooShort(n)) if n == len),
                "a {len}-byte prefix of a {}-byte record decoded",
                bytes.len()
            );
        }
    }
}

#[test]
fn flags_and_payloads_of_fork_exit_and_oom() {
    let fork = linnix_fork_event {
        hdr: header(LINNIX_EVENT_FORK, LINNIX_FLAG_THREAD),
        ..Default::default()
    };
    assert!(
        matches!(decode(fork.as_bytes()), Ok(Event::Fork(f)) if f.thread && f.creator.is_none())
    );
    let by_pod = linnix_fork_event {
        hdr: header(LINNIX_EVENT_FORK, LINNIX_FLAG_CREATOR_IN_TARGET),
        creator_host_pid: 40,
        creator_start_ns: 9,
        ..Default::default()
    };
    assert!(matches!(
        decode(by_pod.as_bytes()),
        Ok(Event::Fork(f)) if f.creator == Some(crate::ProcessId { host_pid: 40, start_ns: 9 })
    ));

    let exit = linnix_exit_event {
        hdr: header(LINNIX_EVENT_EXIT, 0),
        status: 0x8b, // SIGSEGV with core
        lifetime_ns: 5,
        ..Default::default()
    };
    let Ok(Event::Exit(exit)) = decode(exit.as_bytes()) else {
        panic!("not an exit event");
    };
    assert_eq!(
        (exit.signal(), exit.exit_code(), exit.core_dumped()),
        (Some(11), None, true)
    );

    let mut oom = linnix_oom_event {
        hdr: header(LINNIX_EVENT_OOM_KILL, 0),
        rss_anon_kb: 1,
        memcg_usage_bytes: 2,
        ..Default::default()
    };
    assert!(matches!(decode(oom.as_bytes()), Ok(Event::OomKill(o)) if o.memcg.is_none()));
    oom.hdr.flags = LINNIX_FLAG_MEMCG_KNOWN;
    assert!(
        matches!(decode(oom.as_bytes()), Ok(Event::OomKill(o)) if o.memcg == Some(MemcgUsage { usage_bytes: 2, limit_bytes: 0 }))
    );
}

#[test]
fn lost_and_cgroup_removed_records() {
    let lost = linnix_lost_event {
        hdr: linnix_event_header {
            kind: LINNIX_EVENT_LOST,
            ts_boot_ns: 11,
            ..Default::default()
        },
        lost: 313,
        rate_limited: 2,
    };
    assert_eq!(
        decode(lost.as_bytes()).expect("lost"),
        Event::Lost(LostEvent {
            ts_boot_ns: 11,
            lost: 313,
            rate_limited: 2
        })
    );
    let mut removed = linnix_cgroup_rmdir_event {
        hdr: header(LINNIX_EVENT_CGROUP_RMDIR, 0),
    };
    for (dst, src) in removed.hdr.cgroup_name.iter_mut().zip(b"libpod-ab12.scope") {
        *dst = *src as std::ffi::c_char;
    }
    let Ok(Event::CgroupRemoved(r)) = decode(removed.as_bytes()) else {
        panic!("not a cgroup record");
    };
    assert_eq!(
        (r.cgroup_id, r.cgroup_name.as_str()),
        (99, "libpod-ab12.scope")
    );
    // Cut short, both are refused like every other kind.
    let bytes = lost.as_bytes();
    assert!(matches!(
        decode(&bytes[..bytes.len() - 1]),
        Err(DecodeError::TooShort(_))
    ));
    let bytes = removed.as_bytes();
    assert!(matches!(
        decode(&bytes[..size_of::<linnix_event_header>() - 1]),
        Err(DecodeError::TooShort(_))
    ));
}

#[test]
fn memory_pressure_reasons_limits_and_a_bad_reason() {
    let mut e = linnix_memory_pressure_event {
        hdr: header(LINNIX_EVENT_MEMORY_PRESSURE, 0),
        reason: 1,
        count: 12,
        memcg_usage_bytes: 60 << 20,
        memcg_limit_bytes: u64::MAX,
        memcg_high_bytes: 48 << 20,
    };
    let Ok(Event::MemoryPressure(p)) = decode(e.as_bytes()) else {
        panic!("not a memory pressure event");
    };
    assert_eq!(p.reason, PressureReason::High);
    assert_eq!((p.count, p.usage_bytes), (12, 60 << 20));
    assert_eq!((p.limit_bytes, p.high_bytes), (None, Some(48 << 20)));
    assert_eq!(p.task.comm, "worker");
    for (raw, reason) in [(0, "reclaim"), (2, "threshold")] {
        e.reason = raw;
        assert!(
            matches!(decode(e.as_bytes()), Ok(Event::MemoryPressure(p)) if p.reason.as_str() == reason)
        );
    }
    e.reason = 3;
    assert!(matches!(
        decode(e.as_bytes()),
        Err(DecodeError::UnknownPressureReason(3))
    ));
}

#[test]
fn a_misaligned_record_decodes_like_an_aligned_one() {
    let e = exec_record(b"ls\0-l\0", 6, 2);
    let aligned = decode(e.as_bytes()).expect("aligned");
    // One byte in: no longer 8-byte aligned, so the copying path runs.
    let mut shifted = vec![0u8; e.as_bytes().len() + 1];
    shifted[1..].copy_from_slice(e.as_bytes());
    assert!(linnix_exec_event::ref_from_prefix(&shifted[1..]).is_err());
    assert_eq!(decode(&shifted[1..]).expect("misaligned"), aligned);
}

#[test]
fn unknown_kind_is_an_error() {
    let fork = linnix_fork_event {
        hdr: header(77, 0),
        ..Default::default()
    };
    assert!(matches!(
        decode(fork.as_bytes()),
        Err(DecodeError::UnknownKind(77))
    ));
}

#[test]
fn argv_split_keeps_empty_arguments_and_drops_the_final_nul() {
    let (argv, cut) = split_argv(b"sh\0-c\0\0exit 3\0", 32, 4);
    assert_eq!(argv, ["sh", "-c", "", "exit 3"]);
    assert!(!cut);
}

#[test]
fn one_empty_argument_is_not_no_argument() {
    // The argv the kernel gives a program started with argc == 0.
    assert_eq!(split_argv(b"\0", 32, 1), (vec![String::new()], false));
    assert_eq!(split_argv(b"", 32, 0), (Vec::new(), false));
    let e = exec_record(b"\0", 1, 1);
    let Ok(Event::Exec(exec)) = decode(e.as_bytes()) else {
        panic!("not an exec event");
    };
    assert_eq!(exec.argv, [""]);
    assert!(exec.argv_empty && !exec.argv_truncated);
    let e = exec_record(b"", 0, 0);
    let Ok(Event::Exec(exec)) = decode(e.as_bytes()) else {
        panic!("not an exec event");
    };
    assert!(exec.argv.is_empty() && exec.argv_empty && !exec.argv_truncated);
}

#[test]
fn a_long_filename_shows_its_start_and_its_end() {
    let mut e = exec_record(b"t\0", 2, 1);
    let name: Vec<u8> = (0..255u32).map(|i| b'a' + (i % 26) as u8).collect();
    for (dst, src) in e.filename.iter_mut().zip(&name) {
        *dst = *src as std::ffi::c_char;
    }
    e.filename[255] = 0;
    e.filename_len = 300;
    e.hdr.flags = LINNIX_FLAG_FILENAME_TRUNCATED;
    let Ok(Event::Exec(exec)) = decode(e.as_bytes()) else {
        panic!("not an exec event");
    };
    let (head, tail) = exec.filename.split_once('…').expect("ellipsis");
    assert_eq!(head.as_bytes(), &name[..64]);
    assert_eq!(tail.as_bytes(), &name[64..]);
    assert!(exec.filename_truncated);
    // Cut where the kernel could not tell: the start only, as it came.
    e.filename_len = 255;
    let Ok(Event::Exec(exec)) = decode(e.as_bytes()) else {
        panic!("not an exec event");
    };
    assert_eq!(exec.filename.as_bytes(), &name[..]);
}

#[test]
fn kernel_strings_are_escaped() {
    let mut e = exec_record(b"a\x1b[31m\0\xff\0", 9, 2);
    e.hdr.comm[0] = 0x07;
    let Ok(Event::Exec(exec)) = decode(e.as_bytes()) else {
        panic!("not an exec event");
    };
    assert_eq!(exec.argv, ["a\\x1b[31m", "\\xff"]);
    assert!(exec.task.comm.starts_with("\\x07"), "{}", exec.task.comm);
}

#[test]
fn cgroup_changes_and_privilege_flags() {
    let mut c = linnix_cgroup_event {
        hdr: header(LINNIX_EVENT_CGROUP, LINNIX_FLAG_PARENT_IN_TARGET),
        from_cgroup_id: 5,
        change: LINNIX_CGROUP_MOVE,
        ..Default::default()
    };
    c.hdr.parent_start_ns = 77;
    let Ok(Event::Cgroup(ev)) = decode(c.as_bytes()) else {
        panic!("not a cgroup event");
    };
    assert_eq!(ev.change, CgroupChange::Move { from_cgroup_id: 5 });
    assert_eq!(
        ev.task.parent(),
        Some(crate::ProcessId {
            host_pid: 41,
            start_ns: 77
        })
    );
    c.change = LINNIX_CGROUP_LEAVE;
    c.hdr.flags = 0;
    let Ok(Event::Cgroup(ev)) = decode(c.as_bytes()) else {
        panic!("not a cgroup event");
    };
    assert_eq!(ev.change, CgroupChange::Leave);
    assert_eq!(ev.task.parent(), None);

    let mut e = exec_record(b"su\0", 3, 1);
    e.hdr.flags = LINNIX_FLAG_SETUID | LINNIX_FLAG_SECUREEXEC;
    let Ok(Event::Exec(exec)) = decode(e.as_bytes()) else {
        panic!("not an exec event");
    };
    assert!(exec.privileges.setuid && exec.privileges.secure_exec);
    assert!(!exec.privileges.setgid && !exec.privileges.file_caps);
    assert!(exec.privileges.raised());
}

#[test]
fn argv_split_caps_the_count() {
    let (argv, cut) = split_argv(b"a\0b\0c\0", 2, 3);
    assert_eq!(argv, ["a", "b"]);
    assert!(cut);
}

#[test]
fn argv_split_keeps_a_cut_last_argument() {
    let (argv, cut) = split_argv(b"python3\0-c\0import o", 32, 3);
    assert_eq!(argv, ["python3", "-c", "import o"]);
    assert!(!cut);
}

#[test]
fn c_string_stops_at_nul_or_buffer_end() {
    let buf: Vec<std::ffi::c_char> = b"abc\0def".iter().map(|&b| b as std::ffi::c_char).collect();
    assert_eq!(c_string(&buf), "abc");
    let full: Vec<std::ffi::c_char> = b"abcd".iter().map(|&b| b as std::ffi::c_char).collect();
    assert_eq!(c_string(&full), "abcd");
    let odd: Vec<std::ffi::c_char> = b"a\nb".iter().map(|&b| b as std::ffi::c_char).collect();
    assert_eq!(c_string(&odd), "a\\x0ab");
}
