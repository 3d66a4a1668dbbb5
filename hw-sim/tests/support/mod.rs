//! Requests and fixtures the protocol, error, tamper and fault tests share, beside the
//! phase driver in `common`.
#![allow(dead_code)]

use mkclone_backend::{
    Backend, BackendError, Certificate, CloneableKind, GenerateRequest, KeyRole, MasterKeyKind,
    ObtainRequest, RegisterStatus, RsaModulusBits, SealedShare, ShareIndex,
};

use crate::common::{CSS_LABEL, Rig, SA_LABEL, SimBackend, label, obtain, rig};

/// A retained key `key` (CLONE) to generate with `role` and `bits`.
pub fn generate_request(key: &str, role: KeyRole, bits: RsaModulusBits) -> GenerateRequest {
    GenerateRequest {
        label: label(key),
        role,
        bits,
        clone: true,
    }
}

/// OBTAIN share `index` of `kind` for the holder of `csr`, signed by the ceremony's CSS
/// key under its SA.
pub fn obtain_request(kind: CloneableKind, index: u8, csr: &Certificate) -> ObtainRequest {
    ObtainRequest {
        kind,
        index: ShareIndex::new(index).unwrap(),
        css_label: label(CSS_LABEL),
        sa_name: label(SA_LABEL),
        csr_certificate: csr.clone(),
    }
}

/// The error `source` refuses that OBTAIN with.
pub fn obtain_refused(
    source: &mut SimBackend,
    kind: CloneableKind,
    index: u8,
    csr: &Certificate,
) -> BackendError {
    source
        .obtain_share(&obtain_request(kind, index, csr))
        .unwrap_err()
}

/// A 2-of-3 rig with `targets` targets, and share `index` of `kind` obtained for the first
/// target: the rig, that target's CSR certificate, the share.
pub fn rig_with_a_share(
    targets: usize,
    kind: CloneableKind,
    index: u8,
) -> (Rig, Certificate, SealedShare) {
    let mut rig = rig(2, 3, targets);
    let csr = rig.targets[0].1.clone();
    let share = obtain(&mut rig.source, kind, index, &csr);
    (rig, csr, share)
}

/// `node`'s registers of `kind`, as it reports them now.
pub fn register_of(node: &mut SimBackend, kind: MasterKeyKind) -> RegisterStatus {
    node.status().unwrap().register(kind).unwrap().clone()
}
