//! Every single byte of a sealed share and of a certificate, flipped: each is refused,
//! with wrong-target for the header bytes that name the target and share-rejected or
//! certificate-rejected otherwise, and the node is unchanged afterwards.

mod common;
mod support;

use common::*;
use mkclone_backend::{Backend, BackendError, Certificate, CloneableKind, Eid, SealedShare};
use support::*;

/// Offsets of the target's EID and CSR fingerprint in the sealed-share container:
/// magic (8), version (2), target EID (16), fingerprint (32).
const TARGET_FIELDS: std::ops::Range<usize> = 10..58;
const EID_FIELD: std::ops::Range<usize> = 10..26;

fn tampered_eid(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut eid = bytes[EID_FIELD].to_vec();
    eid[at - EID_FIELD.start] ^= 0x01;
    eid
}

/// `bytes` with one byte flipped (its low bit), at each offset in turn, as `new` accepts
/// them (a flip it refuses is skipped): the offset and the value.
fn flips<T, E>(
    bytes: &[u8],
    new: impl Fn(Vec<u8>) -> Result<T, E>,
) -> impl Iterator<Item = (usize, T)> {
    (0..bytes.len()).filter_map(move |at| {
        let mut tampered = bytes.to_vec();
        tampered[at] ^= 0x01;
        new(tampered).ok().map(|t| (at, t))
    })
}

#[test]
fn every_flipped_byte_of_a_sealed_share_is_refused() {
    let kind = CloneableKind::Asym;
    let (mut rig, _, share) = rig_with_a_share(1, kind, 2);
    let bytes = share.as_bytes().to_vec();
    let target = &mut rig.targets[0].0;
    let before = state_json(target);
    for (at, tampered) in flips(&bytes, SealedShare::new) {
        let err = target
            .install_share(&install_request(kind, &rig.css_certificate, tampered))
            .unwrap_err();
        // A flipped EID byte outside the EID alphabet leaves a header that names no node
        // at all: that container is malformed, hence rejected.
        let names_a_node =
            !EID_FIELD.contains(&at) || Eid::from_wire(&tampered_eid(&bytes, at)).is_ok();
        if TARGET_FIELDS.contains(&at) && names_a_node {
            assert!(
                matches!(err, BackendError::WrongTarget { .. }),
                "byte {at}: {err}"
            );
        } else {
            assert!(
                matches!(err, BackendError::ShareRejected),
                "byte {at}: {err}"
            );
        }
    }
    assert_eq!(before, state_json(target), "the target is unchanged");
    // The untampered share still installs.
    install(target, kind, &rig.css_certificate, share);
}

#[test]
fn every_flipped_byte_of_a_certificate_is_refused() {
    let kind = CloneableKind::Sym;
    let (mut rig, csr, share) = rig_with_a_share(1, kind, 1);

    // The CSS certificate presented at INSTALL.
    let css = rig.css_certificate.as_bytes().to_vec();
    let target = &mut rig.targets[0].0;
    let before = state_json(target);
    for (at, tampered) in flips(&css, Certificate::new) {
        let err = target
            .install_share(&install_request(kind, &tampered, share.clone()))
            .unwrap_err();
        assert!(
            matches!(err, BackendError::CertificateRejected { .. }),
            "CSS byte {at}: {err}"
        );
    }
    assert_eq!(before, state_json(target));

    // The CSR certificate presented at OBTAIN.
    let source_before = state_json(&rig.source);
    let csr_bytes = csr.as_bytes().to_vec();
    for (at, tampered) in flips(&csr_bytes, Certificate::new) {
        let err = obtain_refused(&mut rig.source, kind, 3, &tampered);
        assert!(
            matches!(err, BackendError::CertificateRejected { .. }),
            "CSR byte {at}: {err}"
        );
    }
    assert_eq!(
        source_before,
        state_json(&rig.source),
        "the source is unchanged"
    );
}
