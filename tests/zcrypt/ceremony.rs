//! A whole cloning ceremony through CcaBackend -> IoctlTransport -> ica_xcRB pointers ->
//! fake kernel -> hw-sim: SA node, a source, two targets, SYM and ASYM, 3-of-5.
//!
//! The phase driver is the conformance suite's (`mkclone_conformance`). The
//! transports say they are real devices, so this runs with the experiment override
//! (ProjectEncodings::SendAnywayIKnowTheyAreNotIbms): the cloning verbs' encodings are the
//! project's own, which only the simulator understands, as are the FQ forms STATCCAE and
//! STATEID that status sends beside the public STATICSA and STATICSB. `run_ceremony` is
//! also the FUSE-served ceremony's (fuse_ceremony.rs).

use mkclone::backend::{
    Applied, Backend, CloneableKind, Eid, InstallProgress, KeyRole, MasterKeyKind, MofN,
    PatternAlgorithm, SealedShare, VerificationPattern,
};
use mkclone::cca::Apqn;
use mkclone::zcrypt::ProjectEncodings;
use mkclone_conformance::{certify, install_request, install_sa, obtain_request, sa_key};

use crate::fake_kernel::{Bus, BusExt, backend};

const CSS_LABEL: &str = "MKCLONE.CSS";
const CSR_LABEL: &str = "MKCLONE.CSR";

fn pattern<B: Backend>(
    node: &mut B,
    kind: CloneableKind,
    new: bool,
) -> Option<VerificationPattern> {
    let status = node.status().unwrap();
    let reg = status.register(kind.kind()).unwrap();
    if new {
        reg.new_patterns.first().cloned()
    } else {
        reg.current_patterns.first().cloned()
    }
}

/// SA node, a source, two targets, SYM and ASYM, 3-of-5, shares 1, 3 and 5: the whole
/// ceremony on four nodes whose serials are `SA000001`, `SRC00002`, `TGT00003`,
/// `TGT00004`, through the conformance suite's phase driver. Checks every result the
/// way a ceremony does (install progress, NEW against the source's CURRENT, SET).
pub fn run_ceremony<B: Backend>(mut sa: B, mut source: B, mut targets: [B; 2]) {
    let m_of_n = MofN::new(3, 5).unwrap();

    // Every node reports itself.
    assert_eq!(sa.status().unwrap().identity.serial.as_str(), "SA000001");
    assert!(sa.capabilities().operations.len() > 1);
    assert!(
        !sa.capabilities().rehearsal_only,
        "the transport says: real device"
    );

    for (node, eid) in [(&mut sa, "SA NODE"), (&mut source, "SOURCE")] {
        node.set_eid(&Eid::new(eid).unwrap()).unwrap();
    }
    for (i, t) in targets.iter_mut().enumerate() {
        t.set_eid(&Eid::new(&format!("TARGET {}", i + 1)).unwrap())
            .unwrap();
    }

    // Phase 1: the SA key and its self-signed certificate.
    let sa_public = sa_key(&mut sa);

    // Phase 2: the source's master keys, m-of-n, SA installed, CSS certified.
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).unwrap();
    }
    source.set_m_of_n(m_of_n).unwrap();
    install_sa(&mut source, &sa_public);
    let css_certificate = certify(&mut sa, &mut source, CSS_LABEL, KeyRole::Css);

    // Phases 3a-3d for each target and each key, with shares 1, 3 and 5.
    for target in targets.iter_mut() {
        target.set_m_of_n(m_of_n).unwrap();
        install_sa(target, &sa_public);
        let csr_certificate = certify(&mut sa, target, CSR_LABEL, KeyRole::Csr);
        for kind in CloneableKind::ALL {
            let shares: Vec<SealedShare> = [1u8, 3, 5]
                .iter()
                .map(|&i| {
                    source
                        .obtain_share(&obtain_request(kind, i, &csr_certificate))
                        .unwrap()
                })
                .collect();
            for (k, share) in shares.into_iter().enumerate() {
                let progress = target
                    .install_share(&install_request(kind, &css_certificate, share))
                    .unwrap();
                let expected = if k < 2 {
                    InstallProgress::NeedMore {
                        received: k as u8 + 1,
                        m: 3,
                    }
                } else {
                    InstallProgress::Complete
                };
                assert_eq!(progress, Applied::Done(expected));
            }
            // Confirm before SET: NEW on the target equals CURRENT on the source. SYM is
            // read through STATICSB; for ASYM a real card's STATICSA carries MDC-4, which
            // the simulator does not compute, so with project encodings allowed status
            // adds the SHA-1-method patterns of `vp`.
            let source_current = pattern(&mut source, kind, false).unwrap();
            assert_eq!(pattern(target, kind, true), Some(source_current.clone()));
            assert_eq!(source_current.algorithm(), PatternAlgorithm::Sha1Method);
            target.set_master_key(kind).unwrap();
            assert_eq!(pattern(target, kind, false), Some(source_current));
        }
    }

    // The status of a real device lists AES and APKA too (empty on a simulated card).
    let status = targets[0].status().unwrap();
    let kinds: Vec<MasterKeyKind> = status.registers.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            MasterKeyKind::Sym,
            MasterKeyKind::Asym,
            MasterKeyKind::Aes,
            MasterKeyKind::Apka
        ]
    );
    assert_eq!(status.identity.serial.as_str(), "TGT00003");
}

/// The four cards of [`run_ceremony`], at domain 0x0d of cards 1 to 4.
pub const CARDS: [(u8, &str); 4] = [
    (1, "SA000001"),
    (2, "SRC00002"),
    (3, "TGT00003"),
    (4, "TGT00004"),
];

#[test]
fn a_whole_ceremony_runs_through_the_ioctl_transport_and_a_fake_kernel() {
    let bus = Bus::new();
    let apqn = |card: u8| Apqn::new(card, 0x0d).unwrap();
    for (card, serial) in CARDS {
        bus.add_card(apqn(card), serial);
    }
    let open = |card: u8| {
        backend(
            &bus,
            apqn(card),
            ProjectEncodings::SendAnywayIKnowTheyAreNotIbms,
        )
    };
    run_ceremony(open(1), open(2), [open(3), open(4)]);

    // Every request crossed the fake kernel, addressed to its card and domain 0x0d, and
    // none failed.
    let calls = bus.calls();
    assert!(calls.len() > 100, "{} calls", calls.len());
    assert!(
        calls
            .iter()
            .all(|c| c.errno.is_none() && c.card_ran && c.domain == 0x0d)
    );
    assert!(calls.iter().any(|c| c.card == 4 && &c.function == b"md"));
    assert!(calls.iter().any(|c| &c.function == b"FQ"));
    // Status used the FQ queries; `vp` only added the SHA-1-method patterns the
    // simulator cannot give as MDC-4 (project encodings are allowed in this experiment).
    let fq = calls.iter().filter(|c| &c.function == b"FQ").count();
    let vp = calls.iter().filter(|c| &c.function == b"vp").count();
    assert!(
        fq >= 4 * vp,
        "each status sends 4 FQ queries before its vp ({fq} FQ, {vp} vp)"
    );
}
