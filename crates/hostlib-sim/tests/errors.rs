//! Loading failures and the library's refusals, through dlopen and the C ABI.

mod common;

use common::SimMachine;
use mkclone_backend::CloneableKind;
use mkclone_hostlib::args::Verb;
use mkclone_hostlib::library::{Shared, open_shared};
use mkclone_hostlib::{HostlibBackend, HostlibError, verbs};

#[test]
fn a_missing_library_names_the_path_and_how_to_install() {
    let m = SimMachine::new();
    let mut cfg = m.config("HL000001");
    cfg.library = Some(m.home().join("no-such-libcsulcca.so"));
    let e = HostlibBackend::open(&cfg).err().expect("refused");
    let text = e.to_string();
    assert!(matches!(e, HostlibError::LibraryMissing { .. }), "{e:?}");
    assert!(text.contains("no-such-libcsulcca.so"), "{text}");
    assert!(text.contains("install IBM's CCA host libraries"), "{text}");
}

#[test]
fn a_library_without_a_verb_is_refused_naming_the_symbol() {
    // libc is a shared object that exports no CCA verb.
    let e = open_shared(
        std::path::Path::new("libc.so.6"),
        std::path::Path::new("libc.so.6"),
    )
    .err()
    .expect("refused");
    assert!(
        matches!(
            e,
            HostlibError::SymbolMissing {
                symbol: "CSUACFQ",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("does not export CSUACFQ"), "{e}");
}

#[test]
fn a_serial_no_adapter_has_is_refused_listing_the_adapters() {
    let m = SimMachine::new();
    m.card("HL000001");
    let e = HostlibBackend::open(&m.config("NOSUCH"))
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("NOSUCH") && text.contains("CRP01 HL000001"),
        "{text}"
    );
}

/// The simulated library with one card (HL000001), opened as a node opens it.
fn with_library(f: impl FnOnce(&mut Shared)) {
    let m = SimMachine::new();
    m.card("HL000001");
    let shared = open_shared(&m.library, &m.library).expect("open");
    f(&mut shared.lock().unwrap());
}

/// The simulated library parses rule arrays as a card would: an unknown keyword is 8/33,
/// two of one group 8/34, a count out of range 8/35.
#[test]
fn wrong_rule_keywords_are_refused_with_ibms_codes() {
    with_library(|lib| {
        let mut bad = verbs::master_key("SETT", CloneableKind::Sym);
        lib.call(&mut bad).expect("called");
        assert_eq!((bad.return_code, bad.reason_code), (8, 33));
        let mut twice = mkclone_hostlib::args::Args::new(
            Verb::Csnbmkp,
            &["SET", "CLEAR"],
            vec![mkclone_hostlib::args::Param::Field(vec![0; 24])],
        );
        lib.call(&mut twice).expect("called");
        assert_eq!((twice.return_code, twice.reason_code), (8, 34));
        let mut count = verbs::query("STATCCAE", 0);
        count.rule_count = 3;
        count.rule_array.resize(24, b' ');
        lib.call(&mut count).expect("called");
        assert_eq!((count.return_code, count.reason_code), (8, 35));
    });
}

/// An output buffer too small: 8/72 and the length needed written back; the backend
/// never reads past the buffer.
#[test]
fn a_too_small_output_buffer_gets_8_72_and_the_length_needed() {
    with_library(|lib| {
        let mut q = verbs::query("STATICSA", 16);
        lib.call(&mut q).expect("called");
        assert_eq!((q.return_code, q.reason_code), (8, 72));
        let needed = q.int(0).expect("length");
        assert!(needed > 16, "needed {needed}");
        assert!(
            q.output(0).is_err(),
            "a length beyond the buffer is never read"
        );
    });
}
