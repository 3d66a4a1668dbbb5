//! Generates the zcrypt kernel-ABI bindings (src/zcrypt/abi.rs includes them) from
//! vendor-headers/zcrypt.h with bindgen, through the setup shared with
//! crates/hostlib/build.rs (build-support/bindings.rs: the libclang probe, the committed
//! copy src/zcrypt/bindings_committed.rs as fallback, the cargo warning).
//!
//! Facts measured on this project's machines (reference/toolchain-notes.md): bindgen drops
//! `_IOC(...)` function-like macros unless `clang_macro_fallback()` is on (with
//! `clang_macro_fallback_build_dir`); with it, ZSECSENDCPRB comes out as 0xc0007a81.
//!
//! Environment: `MKCLONE_ZCRYPT_BINDINGS=committed` skips bindgen and uses the committed
//! copy (to try the fallback on a machine that has libclang); `LIBCLANG_PATH` is honoured.

#[path = "build-support/bindings.rs"]
mod bindings;

fn main() {
    println!("cargo:rerun-if-changed=build-support/bindings.rs");
    let zcrypt = bindings::Bindings {
        header: "vendor-headers/zcrypt.h",
        committed: "src/zcrypt/bindings_committed.rs",
        generated: "zcrypt_bindings.rs",
        env: "MKCLONE_ZCRYPT_BINDINGS",
        what: "zcrypt",
    };
    zcrypt.run(|builder, out_dir| {
        builder
            .clang_macro_fallback()
            .clang_macro_fallback_build_dir(out_dir)
            .allowlist_type("CPRBX|ica_xcRB|zcrypt_device_status_ext|zcrypt_device_matrix_ext")
            .allowlist_var(
                "ZSECSENDCPRB|ZSENDEP11CPRB|ICARSAMODEXPO|ICARSACRT|ZCRYPT_DEVICE_STATUS|ZCRYPT_STATUS_MASK\
                 |ZCRYPT_QDEPTH_MASK|ZCRYPT_PERDEV_REQCNT|ZCRYPT_IOCTL_MAGIC|AUTOSELECT|AUTOSEL_DOM\
                 |MAX_ZDEV_CARDIDS_EXT|MAX_ZDEV_DOMAINS_EXT|ZCRYPT_STATUS_.*",
            )
        // derive_default stays off (build-support): a default would be an unsafe zeroing
        // impl, as the structures hold raw pointers; src/zcrypt builds them field by field.
    });
}
