//! Builds the kernel programs with clang and generates the Rust view of the
//! event layout from `bpf/include/linnix_events.h`, so the layout is written
//! once, in C, and both sides agree on it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Objects built from `bpf/<name>.bpf.c` into `$OUT_DIR/<name>.bpf.o`.
const BPF_OBJECTS: &[&str] = &["linnix", "linnix_self"];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = manifest_dir.join("bpf");
    let include_dir = bpf_dir.join("include");
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let arch_define = format!("-D__TARGET_ARCH_{}", bpf_target_arch(&target_arch));

    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    for name in BPF_OBJECTS {
        compile_bpf(&clang, &arch_define, &bpf_dir, &include_dir, &out_dir, name);
    }
    generate_bindings(&include_dir, &out_dir);
}

/// The `__TARGET_ARCH_*` name that `bpf_tracing.h` expects for a cargo target
/// architecture, mapped as libbpf-tools' Makefile maps `uname -m`: the
/// programs run in the kernel of the machine the tracer is built for.
fn bpf_target_arch(cargo_arch: &str) -> &'static str {
    match cargo_arch {
        "x86_64" | "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" | "powerpc" => "powerpc",
        "mips" | "mips64" | "mips32r6" | "mips64r6" => "mips",
        "riscv64" | "riscv32" => "riscv",
        "s390x" => "s390",
        "sparc64" | "sparc" => "sparc",
        other => panic!(
            "no BPF target architecture is known for the cargo target architecture `{other}` \
             (bpf/include/libbpf/bpf_tracing.h lists the supported ones)"
        ),
    }
}

fn compile_bpf(
    clang: &str,
    arch_define: &str,
    bpf_dir: &Path,
    include_dir: &Path,
    out_dir: &Path,
    name: &str,
) {
    let source = bpf_dir.join(format!("{name}.bpf.c"));
    let object = out_dir.join(format!("{name}.bpf.o"));
    let status = Command::new(clang)
        .args(["-target", "bpf"])
        // v3: 32-bit subregisters and the atomic fetch/cmpxchg used by the rate limit.
        .arg("-mcpu=v3")
        .args(["-g", "-O2", "-Wall", "-Werror"])
        .arg(arch_define)
        .arg("-I")
        .arg(include_dir)
        .arg("-I")
        .arg(include_dir.join("libbpf"))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{clang} failed to compile {} ({status})", source.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{clang}` was not found: building the kernel programs needs clang with the BPF \
             target (Debian: apt-get install clang llvm), or set CLANG to its path"
        ),
        Err(err) => panic!("could not run `{clang}`: {err}"),
    }
}

fn generate_bindings(include_dir: &Path, out_dir: &Path) {
    let bindings = bindgen::Builder::default()
        .header_contents(
            "linnix_wrapper.h",
            "#include <linux/types.h>\n#include \"linnix_events.h\"\n",
        )
        .clang_arg(format!("-I{}", include_dir.display()))
        .allowlist_type("linnix_.*")
        .allowlist_var("LINNIX_.*")
        .prepend_enum_name(false)
        .derive_default(true)
        .parse_callbacks(Box::new(ZerocopyDerives))
        .layout_tests(true)
        .generate()
        .unwrap_or_else(|err| {
            panic!("bindgen could not read linnix_events.h (is libclang-dev installed?): {err}")
        });
    bindings
        .write_to_file(out_dir.join("linnix_events.rs"))
        .unwrap_or_else(|err| panic!("cannot write the generated bindings: {err}"));
}

/// The event structs are decoded straight from ring-buffer bytes with
/// zerocopy, which checks size and validity instead of an unsafe cast.
/// `IntoBytes` also proves at compile time that no struct has hidden padding
/// (a C/Rust layout trap) and lets tests build records.
#[derive(Debug)]
struct ZerocopyDerives;

impl bindgen::callbacks::ParseCallbacks for ZerocopyDerives {
    fn add_derives(&self, info: &bindgen::callbacks::DeriveInfo<'_>) -> Vec<String> {
        if info.kind == bindgen::callbacks::TypeKind::Struct {
            vec![
                "zerocopy::FromBytes".into(),
                "zerocopy::KnownLayout".into(),
                "zerocopy::Immutable".into(),
                "zerocopy::IntoBytes".into(),
            ]
        } else {
            vec![]
        }
    }
}
