//! Generates the CCA host library's verb types (src/ffi.rs includes them) from
//! vendor-headers/csulcca.h with bindgen, through the setup shared with the root build.rs
//! (build-support/bindings.rs: the libclang probe, the committed copy
//! src/bindings_committed.rs as fallback when libclang is missing or
//! `MKCLONE_CSULCCA_BINDINGS=committed`, the cargo warning). C types come from `libc`.

#[path = "../../build-support/bindings.rs"]
mod bindings;

/// The verb types mkclone calls (crate::library's `dispatch`; CSUACRA and CSUACRD go
/// through CSUACFQ_t and CSNDPKR through CSNDPKH_t, the header declaring them alike) and
/// the simulated library's two extensions. Only these are generated: the header's other
/// declarations are not used.
const VERB_TYPES: &str = "CSUACF[QV]_t|CSUAACM_t|CSNDPK[BGHX]_t|CSNDRK[DL]_t|CSNBMKP_t|CSUAMKD_t|\
                          mkclone_simlib_[a-z_]+_t";

fn main() {
    println!("cargo:rerun-if-changed=../../build-support/bindings.rs");
    let csulcca = bindings::Bindings {
        header: "../../vendor-headers/csulcca.h",
        committed: "src/bindings_committed.rs",
        generated: "csulcca_bindings.rs",
        env: "MKCLONE_CSULCCA_BINDINGS",
        what: "CCA host-library",
    };
    csulcca.run(|builder, _| builder.ctypes_prefix("libc").allowlist_type(VERB_TYPES));
}
