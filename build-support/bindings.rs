//! The bindgen setup both build scripts share: the root build.rs (vendor-headers/zcrypt.h,
//! for src/zcrypt/abi.rs) and crates/hostlib/build.rs (vendor-headers/csulcca.h, for
//! crates/hostlib/src/ffi.rs). Each includes this file with `#[path]`; what differs between
//! them (header, allowlists, options) is the `configure` closure and the `Bindings` fields.
//!
//! bindgen needs libclang at build time and panics when it cannot load it, so libclang is
//! probed first. Where it is missing, or the `env` variable is `committed`, the committed
//! copy is used instead with a cargo warning; the crate's test
//! `generated::bindings_check::committed_bindings_match_a_fresh_generation` then fails, loudly, because it cannot
//! prove that the copy still matches the header (build-support/bindings_check.rs).
//! `LIBCLANG_PATH` is honoured by the libclang probe and by bindgen.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// One header's bindings.
pub struct Bindings {
    /// The C header, relative to the package's directory.
    pub header: &'static str,
    /// The committed copy of bindgen's output, relative to the package's directory.
    pub committed: &'static str,
    /// The file name written in OUT_DIR (the crate `include!`s it).
    pub generated: &'static str,
    /// The variable that, set to `committed`, skips bindgen.
    pub env: &'static str,
    /// What the bindings are, for the warning ("zcrypt", "CCA host-library").
    pub what: &'static str,
}

impl Bindings {
    /// Write the bindings to OUT_DIR: a fresh bindgen run over `header` (the builder made
    /// by `configure`, given OUT_DIR) where libclang loads, the committed copy otherwise.
    pub fn run(&self, configure: impl FnOnce(bindgen::Builder, &Path) -> bindgen::Builder) {
        let Self {
            header,
            committed,
            generated,
            env,
            what,
        } = self;
        println!("cargo:rerun-if-changed={header}");
        println!("cargo:rerun-if-changed={committed}");
        println!("cargo:rerun-if-changed=build.rs");
        println!("cargo:rerun-if-env-changed={env}");
        println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");
        // Set when the bindings in OUT_DIR are a fresh generation (build-support/generated.rs).
        println!("cargo::rustc-check-cfg=cfg(mkclone_bindings_fresh)");
        // For build-support/generated.rs and bindings_check.rs, compiled into the crate.
        println!("cargo:rustc-env=MKCLONE_BINDINGS_HEADER={header}");
        println!("cargo:rustc-env=MKCLONE_BINDINGS_COMMITTED={committed}");
        println!("cargo:rustc-env=MKCLONE_BINDINGS_GENERATED={generated}");

        let out_dir = match env::var_os("OUT_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => fail("OUT_DIR is not set: build.rs must run under cargo"),
        };
        let target = out_dir.join(generated);
        let probe = match env::var(env).ok().as_deref() {
            Some("committed") => Err(format!("{env}=committed")),
            _ => clang_sys::load(),
        };
        match probe {
            Ok(()) => {
                write(&target, &self.generate(configure, &out_dir));
                println!("cargo:rustc-cfg=mkclone_bindings_fresh");
            }
            Err(why) => {
                println!(
                    "cargo:warning=libclang is not available ({why}); using the committed {what} \
                     bindings {committed}. Install libclang (Debian: apt-get install libclang-dev) \
                     to regenerate and check them; the test \
                     committed_bindings_match_a_fresh_generation fails until then."
                );
                match fs::read_to_string(committed) {
                    Ok(text) => write(&target, &text),
                    Err(e) => fail(&format!("cannot read {committed}: {e}")),
                }
            }
        }
    }

    /// bindgen over the header. Every option that changes the output is set here or by
    /// `configure`, and the version is pinned in Cargo.toml, so the output is reproducible.
    fn generate(
        &self,
        configure: impl FnOnce(bindgen::Builder, &Path) -> bindgen::Builder,
        out_dir: &Path,
    ) -> String {
        let rust_target = match bindgen::RustTarget::stable(89, 0) {
            Ok(t) => t,
            Err(e) => fail(&format!("bindgen rejects Rust 1.89 as a target: {e}")),
        };
        let builder = bindgen::Builder::default()
            .header(self.header)
            .rust_target(rust_target)
            .formatter(bindgen::Formatter::Prettyplease);
        let bindings = configure(builder, out_dir)
            .derive_default(false)
            .derive_debug(true)
            .layout_tests(true)
            .generate_comments(true)
            .generate();
        match bindings {
            Ok(b) => b.to_string(),
            Err(e) => fail(&format!("bindgen failed on {}: {e}", self.header)),
        }
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
