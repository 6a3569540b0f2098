//! The tracer's link order: lld lays out the functions listed in
//! `link-order.txt` first, one after another, so that what the event loop
//! runs shares a few pages instead of touching pages all over the binary
//! (the kernel maps 64 KiB around each one touched). `scripts/link-order.py`
//! makes the list from a running tracer; a name the compiler no longer
//! produces is skipped, so a stale list costs memory, never correctness.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=LINNIX_LINK_ORDER");
    if wants_link_order() {
        let list = concat!(env!("CARGO_MANIFEST_DIR"), "/link-order.txt");
        for arg in [
            format!("-Wl,--symbol-ordering-file={list}"),
            "-Wl,--no-warn-symbol-ordering".to_owned(),
        ] {
            println!("cargo:rustc-link-arg-bin=linnix-sidecar={arg}");
        }
    }
}

/// Only lld reads the list. rustc links x86_64-unknown-linux-gnu with its
/// own lld unless a linker is chosen, so that build (release, where the
/// layout matters) gets it; `LINNIX_LINK_ORDER=on|off` decides otherwise.
fn wants_link_order() -> bool {
    match env::var("LINNIX_LINK_ORDER").as_deref() {
        Ok("on") => return true,
        Ok("off") => return false,
        _ => {}
    }
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let rust_lld = env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    let chosen_linker = env::var_os("RUSTC_LINKER").is_some()
        || env::var("CARGO_ENCODED_RUSTFLAGS")
            .unwrap_or_default()
            .split('\x1f')
            .any(|flag| {
                ["linker", "link-self-contained", "fuse-ld"]
                    .iter()
                    .any(|k| flag.contains(k))
            });
    release && rust_lld && !chosen_linker
}
