//! Every documented return/reason code of every verb the backend calls, answered by the
//! library through the C ABI (`simlib.json` "fail": the verb answers the codes without
//! running), becomes the typed error the other backends give for the same condition
//! (crates/cca `rc` and `CcaBackend::failure`: the one table). Codes from [BSR 2.54]
//! Appendix A (Figure A-4, return code 8, reason codes 1025..1040; page 1: 33, 34, 35) and
//! IBM's CCA for Linux on IBM Z (8/72; 12/338, "the cryptographic hardware device driver is
//! not installed or is not responding, or the CCA code is not loaded in the coprocessor").

mod common;

use common::SimMachine;
use mkclone_backend::{
    Backend, BackendError, Certificate, CloneableKind, GenerateRequest, KeyLabel, KeyRole,
    Operation, RsaModulusBits, SealedShare,
};
use mkclone_conformance::{SaKey, certify, install_request, install_sa, obtain_request, sa_key};
use mkclone_hostlib::HostlibBackend;

const CSS: &str = "MKCLONE.CSS";
const CSR: &str = "MKCLONE.CSR";
const SA: &str = "MKCLONE.SA";

fn label(text: &str) -> KeyLabel {
    KeyLabel::new(text).expect("label")
}

/// SA, source and target on one simulated library, ready for shares (2-of-3), and a SYM
/// share for the target obtained before any code is injected.
struct World {
    machine: SimMachine,
    sa_key: SaKey,
    source: HostlibBackend,
    target: HostlibBackend,
    css: Certificate,
    csr: Certificate,
    share: SealedShare,
}

fn world() -> World {
    let machine = SimMachine::new();
    let eid = |t: &str| mkclone_backend::Eid::new(t).expect("eid");
    let mofn = mkclone_backend::MofN::new(2, 3).expect("m-of-n");
    let mut sa = machine.node();
    sa.set_eid(&eid("SA NODE")).expect("SA EID");
    let sa_key = sa_key(&mut sa);
    let mut source = machine.node();
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).expect("source keys");
    }
    source.set_eid(&eid("SOURCE")).expect("source EID");
    source.set_m_of_n(mofn).expect("source m-of-n");
    install_sa(&mut source, &sa_key);
    let css = certify(&mut sa, &mut source, CSS, KeyRole::Css);
    let mut target = machine.node();
    target.set_eid(&eid("TARGET")).expect("target EID");
    target.set_m_of_n(mofn).expect("target m-of-n");
    install_sa(&mut target, &sa_key);
    let csr = certify(&mut sa, &mut target, CSR, KeyRole::Csr);
    let share = source
        .obtain_share(&obtain_request(CloneableKind::Sym, 1, &csr))
        .expect("a share");
    World {
        machine,
        sa_key,
        source,
        target,
        css,
        csr,
        share,
    }
}

type Check = fn(&BackendError) -> bool;

fn device(e: &BackendError, rc: u16, rs: u16) -> bool {
    matches!(e, BackendError::Device { return_code, reason_code, .. } if (*return_code, *reason_code) == (rc, rs))
}

impl World {
    /// `verb` answers `codes` to every call until the next `inject`.
    fn inject(&self, verb: &str, codes: (i64, i64)) {
        self.machine
            .control(serde_json::json!({ "fail": { verb: [codes.0, codes.1] } }));
    }

    fn clear(&self) {
        self.machine.control(serde_json::json!({}));
    }

    /// Run `op` with `verb` answering `codes`; the error must satisfy `check`.
    fn expect(
        &mut self,
        what: &str,
        verb: &str,
        codes: (i64, i64),
        op: impl FnOnce(&mut World) -> Result<(), BackendError>,
        check: Check,
    ) {
        self.inject(verb, codes);
        let result = op(self);
        self.clear();
        match result {
            Err(e) => assert!(
                check(&e),
                "{what}: {verb} {}/{}: not the typed error expected: {e:?}",
                codes.0,
                codes.1
            ),
            Ok(()) => panic!("{what}: {verb} {}/{} was not refused", codes.0, codes.1),
        }
    }
}

fn obtain(w: &mut World) -> Result<(), BackendError> {
    let request = obtain_request(CloneableKind::Sym, 2, &w.csr);
    w.source.obtain_share(&request).map(drop)
}

fn install(w: &mut World) -> Result<(), BackendError> {
    let request = install_request(CloneableKind::Sym, &w.css, w.share.clone());
    w.target.install_share(&request).map(drop)
}

#[test]
fn csuamkd_codes_become_the_typed_errors() {
    let mut w = world();
    // The SA key's codes: OBTAIN and INSTALL both validate a certificate under SA, and
    // map its refusals alike.
    let sa_cases: [((i64, i64), Check); 4] = [
        (
            (8, 1033),
            |e| matches!(e, BackendError::HashNotRegistered { name } if name.as_str() == SA),
        ),
        (
            (8, 1034),
            |e| matches!(e, BackendError::KeyNotRegistered { name } if name.as_str() == SA),
        ),
        ((8, 1035), |e| {
            matches!(e, BackendError::CertificateRejected { .. })
        }),
        (
            (8, 1038),
            |e| matches!(e, BackendError::NotMarkedForCloning { name } if name.as_str() == SA),
        ),
    ];
    let obtain_cases: [((i64, i64), Check); 6] = [
        (
            (8, 1026),
            |e| matches!(e, BackendError::RetainedKeyNotFound { label } if label.as_str() == CSS),
        ),
        ((8, 1031), |e| device(e, 8, 1031)),
        ((8, 1037), |e| device(e, 8, 1037)),
        (
            (8, 1039),
            |e| matches!(e, BackendError::KeyDoesNotMatchHash { name } if name.as_str() == SA),
        ),
        // OBTAIN: the share key could not be enciphered for the CSR key; no typed meaning
        // (the simulator answers 1037 for a wrap it cannot make): a device error with
        // IBM's code and message.
        ((8, 1040), |e| {
            device(e, 8, 1040) && e.to_string().contains("share enciphering key failed")
        }),
        ((12, 338), |e| device(e, 12, 338)),
    ];
    for (codes, check) in obtain_cases.into_iter().chain(sa_cases) {
        w.expect("OBTAIN", "CSUAMKD", codes, obtain, check);
    }
    let install_cases: [((i64, i64), Check); 5] = [
        (
            (8, 1026),
            |e| matches!(e, BackendError::RetainedKeyNotFound { label } if label.as_str() == CSR),
        ),
        ((8, 1030), |e| matches!(e, BackendError::ShareRejected)),
        ((8, 1037), |e| {
            matches!(
                e,
                BackendError::ShareMismatch {
                    kind: CloneableKind::Sym
                }
            )
        }),
        // INSTALL: the share's enciphering key does not decipher under the CSR key.
        ((8, 1040), |e| matches!(e, BackendError::ShareRejected)),
        ((8, 1028), |e| device(e, 8, 1028)),
    ];
    for (codes, check) in install_cases.into_iter().chain(sa_cases) {
        w.expect("INSTALL", "CSUAMKD", codes, install, check);
    }
    // Nothing injected: the same share installs (the failures changed nothing).
    install(&mut w).expect("the share installs once the library answers again");
}

#[test]
fn registration_codes_become_the_typed_errors() {
    let mut w = world();
    let hash = w.sa_key.hash.clone();
    let certificate = w.sa_key.certificate.clone();
    let register_hash = move |w: &mut World| {
        w.target
            .register_public_key_hash(&label("OTHER.NAME"), &hash, true)
            .map(drop)
    };
    w.expect(
        "CSNDPKH",
        "CSNDPKH",
        (8, 1032),
        register_hash.clone(),
        |e| device(e, 8, 1032),
    );
    w.expect("CSNDPKH", "CSNDPKH", (8, 33), register_hash, |e| {
        device(e, 8, 33) && e.to_string().contains("keyword")
    });
    let register_key = move |w: &mut World| {
        w.target
            .register_public_key(&label("OTHER.NAME"), &certificate, true)
            .map(drop)
    };
    let cases: [((i64, i64), Check); 5] = [
        (
            (8, 1033),
            |e| matches!(e, BackendError::HashNotRegistered { name } if name.as_str() == "OTHER.NAME"),
        ),
        ((8, 1035), |e| {
            matches!(e, BackendError::CertificateRejected { .. })
        }),
        (
            (8, 1038),
            |e| matches!(e, BackendError::NotMarkedForCloning { name } if name.as_str() == "OTHER.NAME"),
        ),
        (
            (8, 1039),
            |e| matches!(e, BackendError::KeyDoesNotMatchHash { name } if name.as_str() == "OTHER.NAME"),
        ),
        ((8, 1032), |e| device(e, 8, 1032)),
    ];
    for (codes, check) in cases {
        w.expect("CSNDPKR", "CSNDPKR", codes, register_key.clone(), check);
    }
}

#[test]
fn retained_key_codes_become_the_typed_errors() {
    let mut w = world();
    let generate = |w: &mut World| {
        w.target
            .generate_retained_key(&GenerateRequest {
                label: label("MKCLONE.OTHER"),
                role: KeyRole::Csr,
                bits: RsaModulusBits::B2048,
                clone: true,
            })
            .map(drop)
    };
    w.expect("CSNDPKB", "CSNDPKB", (8, 34), generate, |e| {
        device(e, 8, 34) && e.to_string().contains("combination")
    });
    w.expect("CSNDPKG", "CSNDPKG", (12, 338), generate, |e| {
        device(e, 12, 338)
    });
    w.expect("CSNDPKG", "CSNDPKG", (8, 1031), generate, |e| {
        device(e, 8, 1031)
    });
    // CSNDPKX: 8/1026 is "no such key" — `None`, not an error, on every backend.
    w.inject("CSNDPKX", (8, 1026));
    let read = w.target.retained_public_key(&label(CSR));
    w.clear();
    assert!(matches!(read, Ok(None)), "{read:?}");
    let read_csr = |w: &mut World| w.target.retained_public_key(&label(CSR)).map(drop);
    w.expect("CSNDPKX", "CSNDPKX", (8, 1031), read_csr, |e| {
        device(e, 8, 1031)
    });
    // CSNDRKD: 8/1026 is "already deleted".
    w.inject("CSNDRKD", (8, 1026));
    let deleted = w.target.delete_retained_key(&label("MKCLONE.NONE"));
    w.clear();
    assert!(
        matches!(deleted, Ok(mkclone_backend::Applied::AlreadyDone(()))),
        "{deleted:?}"
    );
    let delete_csr = |w: &mut World| w.target.delete_retained_key(&label(CSR)).map(drop);
    w.expect("CSNDRKD", "CSNDRKD", (12, 338), delete_csr, |e| {
        device(e, 12, 338)
    });
}

#[test]
fn status_and_master_key_codes_become_the_typed_errors() {
    let mut w = world();
    for (codes, check) in [
        ((12, 338), (|e| device(e, 12, 338)) as Check),
        ((8, 72), |e| {
            device(e, 8, 72) && e.to_string().contains("too small")
        }),
    ] {
        let status = |w: &mut World| w.target.status().map(drop);
        w.expect("CSUACFQ", "CSUACFQ", codes, status, check);
    }
    for (codes, check) in [
        ((8, 1026), (|e| device(e, 8, 1026)) as Check),
        ((8, 90), |e| device(e, 8, 90)),
        ((12, 338), |e| device(e, 12, 338)),
    ] {
        w.expect(
            "CSNBMKP SET",
            "CSNBMKP",
            codes,
            |w| w.target.set_master_key(CloneableKind::Sym).map(drop),
            check,
        );
    }
    // The library cannot allocate the adapter (CSUACRA): nothing was sent, and the error
    // says which verb refused which adapter. The next call of another node re-allocates.
    w.expect(
        "CSUACRA",
        "CSUACRA",
        (12, 338),
        |w| {
            w.source.status().map(drop)?;
            w.target.status().map(drop)
        },
        |e| {
            matches!(e, BackendError::Transport { operation: Operation::Status, cause }
                if cause.contains("CSUACRA") && cause.contains("CRP"))
        },
    );
}
