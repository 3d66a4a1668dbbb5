//! Generates the CCA host library's verb types (src/ffi.rs includes them) from
//! vendor-headers/csulcca.h with bindgen, as the root build.rs does for zcrypt.h.
//!
//! bindgen needs libclang and panics without it, so libclang is probed first. Where it is
//! missing, or `MKCLONE_CSULCCA_BINDINGS=committed`, the committed copy
//! src/bindings_committed.rs is used with a cargo warning, and the test
//! `ffi::tests::committed_bindings_match_a_fresh_generation` fails until a build with
//! libclang proves the copy still matches the header.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const HEADER: &str = "../../vendor-headers/csulcca.h";
const COMMITTED: &str = "src/bindings_committed.rs";
const GENERATED: &str = "csulcca_bindings.rs";

fn main() {
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rerun-if-changed={COMMITTED}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MKCLONE_CSULCCA_BINDINGS");
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");
    println!("cargo::rustc-check-cfg=cfg(csulcca_bindgen)");

    let out_dir = match env::var_os("OUT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => fail("OUT_DIR is not set: build.rs must run under cargo"),
    };
    let target = out_dir.join(GENERATED);
    let probe = match env::var("MKCLONE_CSULCCA_BINDINGS").ok().as_deref() {
        Some("committed") => Err("MKCLONE_CSULCCA_BINDINGS=committed".to_string()),
        _ => clang_sys::load(),
    };
    match probe {
        Ok(()) => {
            write(&target, &generate());
            println!("cargo:rustc-cfg=csulcca_bindgen");
        }
        Err(why) => {
            println!(
                "cargo:warning=libclang is not available ({why}); using the committed CCA host-library \
                 bindings {COMMITTED}. Install libclang (Debian: apt-get install libclang-dev) to \
                 regenerate and check them; the test committed_bindings_match_a_fresh_generation fails \
                 until then."
            );
            match fs::read_to_string(COMMITTED) {
                Ok(text) => write(&target, &text),
                Err(e) => fail(&format!("cannot read {COMMITTED}: {e}")),
            }
        }
    }
}

/// bindgen over the header; every option that changes the output is set here and the
/// version is pinned, so the output is reproducible. C types come from `libc`.
fn generate() -> String {
    let rust_target = match bindgen::RustTarget::stable(89, 0) {
        Ok(t) => t,
        Err(e) => fail(&format!("bindgen rejects Rust 1.89 as a target: {e}")),
    };
    let bindings = bindgen::Builder::default()
        .header(HEADER)
        .rust_target(rust_target)
        .formatter(bindgen::Formatter::Prettyplease)
        .ctypes_prefix("libc")
        .allowlist_type("CSU[A-Z]+_t|CSN[BD][A-Z]+_t|mkclone_simlib_[a-z_]+_t")
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

fn write(path: &Path, text: &str) {
    if let Err(e) = fs::write(path, text) {
        fail(&format!("cannot write {}: {e}", path.display()));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
