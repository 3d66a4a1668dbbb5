//! Generates the zcrypt kernel-ABI bindings (src/zcrypt/abi.rs includes them) from
//! vendor-headers/zcrypt.h with bindgen.
//!
//! bindgen needs libclang at build time and panics when it cannot load it, so libclang is
//! probed first. Where it is missing, the committed copy src/zcrypt/bindings_committed.rs
//! is used instead and a cargo warning says so; the test
//! `zcrypt::abi::tests::committed_bindings_match_a_fresh_generation` then fails, loudly,
//! because it cannot prove that the copy still matches the header.
//!
//! Facts measured on this project's machines (reference/toolchain-notes.md): bindgen drops
//! `_IOC(...)` function-like macros unless `clang_macro_fallback()` is on (with
//! `clang_macro_fallback_build_dir`); with it, ZSECSENDCPRB comes out as 0xc0007a81.
//!
//! Environment:
//! - `MKCLONE_ZCRYPT_BINDINGS=committed` skips bindgen and uses the committed copy (to try
//!   the fallback on a machine that has libclang);
//! - `LIBCLANG_PATH` is honoured by the libclang probe and by bindgen.

use std::env;
use std::fs;
use std::path::PathBuf;

const HEADER: &str = "vendor-headers/zcrypt.h";
const COMMITTED: &str = "src/zcrypt/bindings_committed.rs";
const GENERATED: &str = "zcrypt_bindings.rs";

fn main() {
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rerun-if-changed={COMMITTED}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MKCLONE_ZCRYPT_BINDINGS");
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");
    // `zcrypt_bindgen` is set when the bindings in OUT_DIR are a fresh generation.
    println!("cargo::rustc-check-cfg=cfg(zcrypt_bindgen)");

    let out_dir = match env::var_os("OUT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => fail("OUT_DIR is not set: build.rs must run under cargo"),
    };
    let target = out_dir.join(GENERATED);

    let forced = env::var("MKCLONE_ZCRYPT_BINDINGS").ok();
    let probe = match forced.as_deref() {
        Some("committed") => Err("MKCLONE_ZCRYPT_BINDINGS=committed".to_string()),
        _ => clang_sys::load(),
    };
    match probe {
        Ok(()) => {
            let text = generate(&out_dir);
            write(&target, &text);
            println!("cargo:rustc-cfg=zcrypt_bindgen");
        }
        Err(why) => {
            println!(
                "cargo:warning=libclang is not available ({why}); using the committed zcrypt bindings \
                 {COMMITTED}. Install libclang (Debian: apt-get install libclang-dev) to regenerate and \
                 check them; the test committed_bindings_match_a_fresh_generation fails until then."
            );
            let committed = match fs::read_to_string(COMMITTED) {
                Ok(text) => text,
                Err(e) => fail(&format!("cannot read {COMMITTED}: {e}")),
            };
            write(&target, &committed);
        }
    }
}

/// Run bindgen over the header. Every option that changes the output is set here, and
/// the version is pinned in Cargo.toml, so that the output is reproducible.
fn generate(out_dir: &std::path::Path) -> String {
    let rust_target = match bindgen::RustTarget::stable(89, 0) {
        Ok(t) => t,
        Err(e) => fail(&format!("bindgen rejects Rust 1.89 as a target: {e}")),
    };
    let bindings = bindgen::Builder::default()
        .header(HEADER)
        .rust_target(rust_target)
        .formatter(bindgen::Formatter::Prettyplease)
        .clang_macro_fallback()
        .clang_macro_fallback_build_dir(out_dir)
        .allowlist_type("CPRBX|ica_xcRB|zcrypt_device_status_ext|zcrypt_device_matrix_ext")
        .allowlist_var(
            "ZSECSENDCPRB|ZSENDEP11CPRB|ICARSAMODEXPO|ICARSACRT|ZCRYPT_DEVICE_STATUS|ZCRYPT_STATUS_MASK\
             |ZCRYPT_QDEPTH_MASK|ZCRYPT_PERDEV_REQCNT|ZCRYPT_IOCTL_MAGIC|AUTOSELECT|AUTOSEL_DOM\
             |MAX_ZDEV_CARDIDS_EXT|MAX_ZDEV_DOMAINS_EXT|ZCRYPT_STATUS_.*",
        )
        // Default would be an unsafe zeroing impl (the structures hold raw pointers):
        // src/zcrypt builds them field by field instead.
        .derive_default(false)
        .derive_debug(true)
        .layout_tests(true)
        .generate_comments(true)
        .generate();
    match bindings {
        Ok(b) => b.to_string(),
        Err(e) => fail(&format!("bindgen failed on {HEADER}: {e}")),
    }
}

fn write(path: &std::path::Path, text: &str) {
    if let Err(e) = fs::write(path, text) {
        fail(&format!("cannot write {}: {e}", path.display()));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
