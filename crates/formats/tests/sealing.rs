//! Sealing and opening shares: the happy path, wrong targets, and every single-byte change
//! of a sealed share.

mod common;

use std::sync::OnceLock;

use common::*;
use mkclone_backend::{Eid, SealedShare, ShareIndex};
use mkclone_formats::clone_info::CloneInfo;
use mkclone_formats::seal::{OpenError, SealError, SealedShareParts, open, seal};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn target() -> Eid {
    eid("TARGET.1")
}

/// Seal `info` for [`target`]'s CSR key, signed by `signer` as the CSS key (256 bytes).
fn seal_signed_by<E>(
    info: &CloneInfo,
    signer: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    rng: &mut StdRng,
) -> Result<SealedShareParts, SealError<E>> {
    let csr = public(&keys().csr);
    seal(info, &css_label(), signer, 256, &target(), &csr, rng)
}

/// The CSS key's signature.
fn css_signs(bytes: &[u8]) -> Result<Vec<u8>, std::convert::Infallible> {
    Ok(sign(&keys().css, bytes))
}

fn seal_sample(info: &CloneInfo) -> SealedShareParts {
    let mut rng = StdRng::seed_from_u64(u64::from(info.index.get()));
    seal_signed_by(info, css_signs, &mut rng).unwrap()
}

/// Open `parts` with `key` unwrapping, checking the CSS key's signature and label.
fn open_with(parts: &SealedShareParts, key: &rsa::PrivateKey) -> Result<CloneInfo, OpenError> {
    open(
        parts,
        |w| unwrap_key(key, w),
        &public(&keys().css),
        Some(&css_label()),
    )
}

/// Open `parts` with `device` unwrapping and decrypting, checking the CSS key's signature.
fn open_by_device<E>(
    parts: &SealedShareParts,
    device: impl FnOnce(&[u8], &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, E>,
) -> Result<CloneInfo, OpenError> {
    mkclone_formats::seal::open_in_device(parts, device, &public(&keys().css), None)
}

/// One sealed share per test binary.
fn sealed() -> &'static SealedShare {
    static SEALED: OnceLock<SealedShare> = OnceLock::new();
    SEALED.get_or_init(|| seal_sample(&sample_info(2)).encode().unwrap())
}

/// What an installer does: decode, check the target, open.
#[derive(Debug, PartialEq)]
enum Outcome {
    Opened(Box<CloneInfo>),
    Undecodable,
    WrongTarget,
    Rejected,
}

fn install(bytes: &[u8]) -> Outcome {
    let k = keys();
    let Ok(parts) = SealedShareParts::from_bytes(bytes) else {
        return Outcome::Undecodable;
    };
    if parts
        .header
        .check_addressed_to(&target(), &public(&k.csr).fingerprint())
        .is_err()
    {
        return Outcome::WrongTarget;
    }
    match open_with(&parts, &k.csr) {
        Ok(info) => Outcome::Opened(Box::new(info)),
        Err(OpenError::Rejected) => Outcome::Rejected,
    }
}

#[test]
fn a_sealed_share_opens_at_its_target() {
    assert_eq!(
        install(sealed().as_bytes()),
        Outcome::Opened(Box::new(sample_info(2)))
    );
}

#[test]
fn every_single_byte_change_is_caught() {
    // Layout: magic 8, version 2, target EID 16 (offset 10), fingerprint 32 (offset 26),
    // kind, index, origin EID 16, ...
    const TARGET: std::ops::Range<usize> = 10..58;
    let bytes = sealed().as_bytes();
    let mut counts = [0usize; 3];
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0xFF] {
            let mut changed = bytes.to_vec();
            changed[i] ^= flip;
            let outcome = install(&changed);
            if TARGET.contains(&i) {
                // A changed EID byte may leave the EID alphabet (then the container does
                // not decode); otherwise the share names another node.
                assert!(
                    matches!(outcome, Outcome::WrongTarget | Outcome::Undecodable),
                    "byte {i} ^ {flip:#04x}: {outcome:?}"
                );
            } else {
                assert!(
                    matches!(outcome, Outcome::Rejected | Outcome::Undecodable),
                    "byte {i} ^ {flip:#04x}: {outcome:?}"
                );
            }
            match outcome {
                Outcome::WrongTarget => counts[0] += 1,
                Outcome::Undecodable => counts[1] += 1,
                _ => counts[2] += 1,
            }
        }
    }
    // Every fingerprint change is a wrong target, and most bytes reach `open`.
    assert!(counts[0] >= 64, "{counts:?}");
    assert!(counts[2] > bytes.len(), "{counts:?}");
}

#[test]
fn a_share_for_another_node_names_both() {
    let k = keys();
    let parts = SealedShareParts::decode(sealed()).unwrap();
    let err = parts
        .header
        .check_addressed_to(&eid("TARGET.2"), &public(&k.csr).fingerprint())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("TARGET.1") && text.contains("TARGET.2"),
        "{text}"
    );
    assert!(
        parts
            .header
            .check_addressed_to(&target(), &public(&k.other).fingerprint())
            .is_err()
    );
}

#[test]
fn the_wrong_signer_or_key_is_rejected() {
    let k = keys();
    let parts = SealedShareParts::decode(sealed()).unwrap();
    let unwrap = |w: &[u8]| unwrap_key(&k.csr, w);
    assert_eq!(
        open(&parts, unwrap, &public(&k.sa), Some(&css_label())),
        Err(OpenError::Rejected)
    );
    assert_eq!(
        open(&parts, unwrap, &public(&k.css), Some(&label("OTHER.CSS"))),
        Err(OpenError::Rejected)
    );
    // Another target's CSR key cannot unwrap it.
    assert_eq!(open_with(&parts, &k.other), Err(OpenError::Rejected));
    // An unwrap that fails for any reason is the same rejection.
    assert_eq!(
        open(
            &parts,
            |_| Err("device busy"),
            &public(&k.css),
            Some(&css_label())
        ),
        Err(OpenError::Rejected)
    );
}

#[test]
fn a_header_that_disagrees_with_the_token_is_rejected() {
    let k = keys();
    let good = SealedShareParts::decode(sealed()).unwrap();
    let try_open = |p: &SealedShareParts| open_with(p, &k.csr);
    assert!(try_open(&good).is_ok());

    let mut p = good.clone();
    p.header.index = ShareIndex::new(3).unwrap();
    assert_eq!(try_open(&p), Err(OpenError::Rejected));
    let mut p = good.clone();
    p.header.kind = mkclone_backend::CloneableKind::Sym;
    assert_eq!(try_open(&p), Err(OpenError::Rejected));
    let mut p = good.clone();
    p.header.origin_eid = eid("SOURCE.2");
    assert_eq!(try_open(&p), Err(OpenError::Rejected));
}

#[test]
fn swapping_parts_between_shares_is_rejected() {
    let k = keys();
    let a = SealedShareParts::decode(sealed()).unwrap();
    let b = seal_sample(&sample_info(4));
    let mut mixed = a.clone();
    mixed.wrapped_key = b.wrapped_key.clone();
    assert_eq!(open_with(&mixed, &k.csr), Err(OpenError::Rejected));
    let mut truncated = a.clone();
    truncated.encrypted_clone_info.truncate(35);
    assert_eq!(open_with(&truncated, &k.csr), Err(OpenError::Rejected));
}

#[test]
fn rejection_says_nothing_more() {
    assert_eq!(format!("{:?}", OpenError::Rejected), "Rejected");
    let text = OpenError::Rejected.to_string();
    for word in ["pad", "OAEP", "signature verif", "offset", "decrypt failed"] {
        assert!(!text.contains(word), "{text}");
    }
}

#[test]
fn sealing_reports_the_signer_failure_and_a_wrong_signature_length() {
    let mut rng = StdRng::seed_from_u64(1);
    let info = sample_info(1);
    let err = seal_signed_by(&info, |_| Err("CSS key not found"), &mut rng).unwrap_err();
    assert!(matches!(err, SealError::Sign("CSS key not found")));
    let err = seal_signed_by(
        &info,
        |_| Ok::<_, std::convert::Infallible>(vec![0; 255]),
        &mut rng,
    )
    .unwrap_err();
    assert!(matches!(err, SealError::Format(_)));
}

#[test]
fn each_seal_uses_a_fresh_key() {
    let k = keys();
    let info = sample_info(2);
    let mut rng = StdRng::seed_from_u64(99);
    let mut seal_once = || seal_signed_by(&info, css_signs, &mut rng).unwrap();
    let a = seal_once();
    let b = seal_once();
    assert_ne!(a.encrypted_clone_info[36..], b.encrypted_clone_info[36..]);
    assert_eq!(a.encrypted_clone_info[..36], b.encrypted_clone_info[..36]);
    assert_ne!(
        unwrap_key(&k.csr, &a.wrapped_key).unwrap(),
        unwrap_key(&k.csr, &b.wrapped_key).unwrap()
    );
}

#[test]
fn opening_inside_a_device_gives_the_same_share() {
    use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
    let k = keys();
    let parts = SealedShareParts::decode(sealed()).unwrap();
    // The device unwraps and decrypts; here, the host plays it with the same primitives.
    let device = |wrapped: &[u8], area: &[u8]| {
        let key = unwrap_key(&k.csr, wrapped).map_err(|_| ())?;
        let mut clear = zeroize::Zeroizing::new(area.to_vec());
        let mut dec =
            cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &[0u8; 8]).map_err(|_| ())?;
        for block in clear.chunks_exact_mut(8) {
            dec.decrypt_block(block.try_into().map_err(|_| ())?);
        }
        Ok::<_, ()>(clear)
    };
    let opened = open_by_device(&parts, device).unwrap();
    assert_eq!(opened, sample_info(2));
    // A device that answers a different length, or fails, is a rejection like any other.
    assert_eq!(
        open_by_device(&parts, |_, area: &[u8]| Ok::<_, ()>(
            zeroize::Zeroizing::new(area[8..].to_vec())
        )),
        Err(OpenError::Rejected)
    );
    assert_eq!(
        open_by_device(&parts, |_, _| Err::<zeroize::Zeroizing<Vec<u8>>, _>(
            "device error"
        )),
        Err(OpenError::Rejected)
    );
    // Undecrypted bytes do not pass for a share.
    assert_eq!(
        open_by_device(&parts, |_, area: &[u8]| Ok::<_, ()>(
            zeroize::Zeroizing::new(area.to_vec())
        )),
        Err(OpenError::Rejected)
    );
}

/// A control opens at the target's CSR key as a share does (OAEP unwrap, EDE3-CBC with a
/// zero IV), to its clear block; each is fresh, and another target's key does not open it.
#[test]
fn a_control_opens_as_a_share_does() {
    use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
    let k = keys();
    let mut rng = StdRng::seed_from_u64(7);
    let control = mkclone_formats::seal::control(&public(&k.csr), &mut rng).unwrap();
    let key = unwrap_key(&k.csr, &control.wrapped_key).unwrap();
    assert_eq!(key.len(), 24);
    let mut block = control.encrypted;
    let mut dec = cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &[0u8; 8]).unwrap();
    for b in block.chunks_exact_mut(8) {
        dec.decrypt_block(b.try_into().unwrap());
    }
    assert_eq!(block, control.clear);
    assert_ne!(control.encrypted, control.clear);
    let again = mkclone_formats::seal::control(&public(&k.csr), &mut rng).unwrap();
    assert_ne!(again.clear, control.clear);
    assert_ne!(again.wrapped_key, control.wrapped_key);
    assert!(unwrap_key(&k.other, &control.wrapped_key).is_err());
}
