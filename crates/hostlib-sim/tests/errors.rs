//! Loading failures and the library's refusals, through dlopen and the C ABI.

mod common;

use common::SimMachine;
use mkclone_backend::CloneableKind;
use mkclone_hostlib::args::{Args, Param, Verb};
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

/// The version (CSUACFV) is shown and logged, never relied on: a library that will not say
/// it still lists its adapters and opens its nodes.
#[test]
fn the_version_is_read_and_a_failing_version_verb_leaves_it_unknown() {
    let m = SimMachine::new();
    m.card("HL000001");
    let (library, mk_library) = m.config("HL000001").library_paths();
    let listed = mkclone_hostlib::list_adapters(&library, &mk_library).expect("listed");
    assert_eq!(listed.version.as_deref(), Some("0.0.0zMKCLONE-SIM"));
    m.control(serde_json::json!({ "fail": { "CSUACFV": [12, 338] } }));
    let listed = mkclone_hostlib::list_adapters(&library, &mk_library).expect("listed");
    assert_eq!(listed.version, None);
    assert_eq!(listed.adapters, vec![(1, "HL000001".to_string())]);
    HostlibBackend::open(&m.config("HL000001")).expect("the node opens all the same");
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
        // The rule array has room for 32 elements (the answer goes over it).
        count.rule_count = 3;
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

/// `Shared::call` is public and the library reads and writes each fixed field at the size
/// its verb's C prototype fixes, whatever the vector holds: a field of another size, a
/// label list with less room than its count, or a CSUACFQ rule array without room for the
/// answer is refused with the typed error before the library is called. (A 0-byte "64-byte
/// label" had the library read 64 bytes at an empty Vec's dangling pointer: SIGSEGV.)
#[test]
fn a_field_of_another_size_than_its_verb_reads_is_refused_before_the_call() {
    with_library(|lib| {
        let refused = |lib: &mut Shared, mut args: Args, says: &str| {
            let e = lib.call(&mut args).expect_err("refused");
            assert!(
                matches!(&e, HostlibError::Internal(m) if m.contains(says)),
                "{says}: {e:?}"
            );
            assert_eq!((args.return_code, args.reason_code), (-1, -1), "not called");
        };
        let empty_label = Args::new(Verb::Csndrkd, &[], vec![Param::Field(Vec::new())]);
        refused(lib, empty_label, "field of 0 bytes, the verb's is 64");
        let mut short_key_part = verbs::master_key("CLEAR", CloneableKind::Sym);
        short_key_part.params[0] = Param::Field(vec![0; 23]);
        refused(lib, short_key_part, "field of 23 bytes, the verb's is 24");
        let mut long_role = verbs::get_role(b"DEFAULT ");
        long_role.params[0] = Param::Field(b"DEFAULT  ".to_vec());
        refused(lib, long_role, "field of 9 bytes, the verb's is 8");
        let mut no_room_for_labels = verbs::list_retained("*");
        no_room_for_labels.params[3] = Param::Field(Vec::new());
        refused(
            lib,
            no_room_for_labels,
            "room for 0 labels of 64 bytes, the count before it says 256",
        );
        let mut negative_count = verbs::list_retained("*");
        negative_count.params[2] = Param::Int(-1);
        refused(lib, negative_count, "the count before it says -1");
        let mut no_room_for_the_answer = verbs::query("STATCRD2", 0);
        no_room_for_the_answer.rule_array.truncate(8);
        refused(lib, no_room_for_the_answer, "rule array of 8 bytes");
        let mut wrong_kind = verbs::delete_retained("MKCLONE.SA");
        wrong_kind.params[0] = Param::Int(0);
        refused(lib, wrong_kind, "wrong shape");

        // The builders' vectors have the sizes: the library is called and answers.
        let mut delete = verbs::delete_retained("NO.SUCH.KEY");
        lib.call(&mut delete).expect("called");
        assert_ne!(delete.return_code, -1);
        let mut list = verbs::list_retained("*");
        lib.call(&mut list).expect("called");
        assert_eq!(list.return_code, 0);
    });
}
