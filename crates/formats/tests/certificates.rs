//! Certificates made the way a device makes them: the builder lays the section out, the
//! SA key signs `signed_bytes`, the section verifies, and any change breaks it.

mod common;

use common::*;
use mkclone_backend::{SerialNumber, SubjectInfo};
use mkclone_formats::pka::{
    CertInfo, CertificateBuilder, CertificateSection, PublicKeyTokenView, SignatureSubsection,
    registration_hash,
};
use mkclone_formats::{FormatError, SignatureError, ids};

fn certified_csr_key() -> CertificateSection {
    let k = keys();
    let info = CertInfo {
        user_data: Some(b"target 1".to_vec()),
        eid: Some(eid("TARGET.1")),
        serial: Some(SerialNumber::new("93XY0001").unwrap()),
    };
    let unsigned = CertificateBuilder::new(public(&k.csr), info)
        .to_be_signed(&label("MKCLONE.SA.KEY"), 256)
        .unwrap();
    let sig = sign(&k.sa, unsigned.signed_bytes());
    unsigned.finish(sig).unwrap()
}

#[test]
fn a_certificate_verifies_under_the_signer_key_only() {
    let k = keys();
    let cert = certified_csr_key();
    let sa = public(&k.sa);
    cert.verify(&label("MKCLONE.SA.KEY"), &sa).unwrap();

    // Decoded from its encoding, it still verifies.
    let again = CertificateSection::decode(&cert.encode().unwrap()).unwrap();
    assert_eq!(again, cert);
    again.verify(&label("MKCLONE.SA.KEY"), &sa).unwrap();

    // Wrong key, wrong label.
    assert!(matches!(
        cert.verify(&label("MKCLONE.SA.KEY"), &public(&k.css)),
        Err(SignatureError::Invalid { .. })
    ));
    assert!(matches!(
        cert.verify(&label("OTHER.SA"), &sa),
        Err(SignatureError::NoSignatureBy { .. })
    ));
}

#[test]
fn signed_bytes_are_the_section_up_to_the_signature_field() {
    let k = keys();
    let unsigned = CertificateBuilder::new(public(&k.csr), CertInfo::default())
        .to_be_signed(&label("MKCLONE.SA.KEY"), 256)
        .unwrap();
    let prefix = unsigned.signed_bytes().to_vec();
    let cert = unsigned.finish(vec![0x11; 256]).unwrap();
    let bytes = cert.encode().unwrap().into_bytes();
    assert_eq!(&bytes[..prefix.len()], &prefix[..]);
    assert_eq!(bytes.len(), prefix.len() + 256);
    // The X'40' length in the signed bytes already counts the signature.
    assert_eq!(
        usize::from(u16::from_be_bytes([prefix[2], prefix[3]])),
        bytes.len()
    );
}

#[test]
fn every_changed_byte_breaks_the_certificate() {
    let k = keys();
    let sa = public(&k.sa);
    let bytes = certified_csr_key().encode().unwrap().into_bytes();
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] ^= 0x01;
        if let Ok(cert) = CertificateSection::from_bytes(&changed) {
            assert!(
                cert.verify(&label("MKCLONE.SA.KEY"), &sa).is_err(),
                "byte {i} changed, still verifies"
            );
        }
    }
}

#[test]
fn refusals_of_the_builder_and_of_verification() {
    let k = keys();
    let b = CertificateBuilder::new(public(&k.csr), CertInfo::default());
    assert!(b.to_be_signed(&label("SA"), 0).is_err());
    assert!(b.to_be_signed(&label("SA"), 70_000).is_err());
    let unsigned = b.to_be_signed(&label("SA"), 256).unwrap();
    assert!(matches!(
        unsigned.clone().finish(vec![0; 255]),
        Err(FormatError::Unencodable { .. })
    ));

    let too_long = CertInfo {
        user_data: Some(vec![0; 65]),
        ..CertInfo::default()
    };
    assert!(
        CertificateBuilder::new(public(&k.csr), too_long)
            .to_be_signed(&label("SA"), 256)
            .is_err()
    );

    // A signature of the wrong length is named as such.
    let mut cert = unsigned.finish(vec![0; 256]).unwrap();
    cert.signatures[0].signature.truncate(128);
    assert!(matches!(
        cert.verify(&label("SA"), &public(&k.sa)),
        Err(SignatureError::WrongLength {
            expected: 256,
            found: 128,
            ..
        })
    ));
    // Two signatures naming one signer are ambiguous.
    cert.signatures
        .push(SignatureSubsection::sha256_pkcs1(label("SA"), vec![0; 256]));
    assert!(matches!(
        cert.verify(&label("SA"), &public(&k.sa)),
        Err(SignatureError::DuplicateSigner { .. })
    ));
}

#[test]
fn a_second_signature_verifies_over_the_first() {
    // Sections with two signatures decode and verify: the second signature covers the
    // first subsection; both cover the final X'40' length.
    let k = keys();
    let sa = public(&k.sa);
    let css = public(&k.css);
    let mut cert = CertificateBuilder::new(public(&k.csr), CertInfo::default())
        .to_be_signed(&label("SA"), 256)
        .unwrap()
        .finish(vec![0; 256])
        .unwrap();
    cert.signatures.push(SignatureSubsection::sha256_pkcs1(
        label("CSS"),
        vec![0; 256],
    ));
    // Sign each over its prefix of the final encoding.
    let bytes = cert.encode().unwrap().into_bytes();
    let first_sig_at = bytes.len() - 2 * (70 + 256) + 70;
    let second_sig_at = bytes.len() - 256;
    cert.signatures[0].signature = sign(&k.sa, &bytes[..first_sig_at]);
    let bytes = cert.encode().unwrap().into_bytes();
    cert.signatures[1].signature = sign(&k.css, &bytes[..second_sig_at]);
    let cert = CertificateSection::from_bytes(cert.encode().unwrap().as_bytes()).unwrap();
    cert.verify(&label("SA"), &sa).unwrap();
    cert.verify(&label("CSS"), &css).unwrap();
}

#[test]
fn a_token_carries_the_certificate_of_its_own_key_only() {
    let k = keys();
    let cert = certified_csr_key();
    let view = PublicKeyTokenView {
        key: public(&k.csr),
        certificate: Some(cert.clone()),
    };
    let token = view.encode().unwrap();
    assert_eq!(PublicKeyTokenView::decode(&token).unwrap(), view);

    let mismatched = PublicKeyTokenView {
        key: public(&k.css),
        certificate: Some(cert),
    };
    assert!(mismatched.encode().is_err());
}

#[test]
fn registration_hash_ignores_signatures_but_not_the_subject() {
    let k = keys();
    let cert = certified_csr_key();
    let mut resigned = cert.clone();
    resigned.signatures[0].signature = vec![0x42; 256];
    resigned.signatures[0].hash_id = ids::HASH_SHA1;
    assert_eq!(
        registration_hash(&cert).unwrap(),
        registration_hash(&resigned).unwrap()
    );

    let mut other_eid = cert.clone();
    other_eid.info.eid = Some(eid("TARGET.2"));
    assert_ne!(
        registration_hash(&cert).unwrap(),
        registration_hash(&other_eid).unwrap()
    );
    let mut other_key = cert.clone();
    other_key.key = public(&k.other);
    assert_ne!(
        registration_hash(&cert).unwrap(),
        registration_hash(&other_key).unwrap()
    );
}

#[test]
fn subject_info_converts() {
    let info: CertInfo = SubjectInfo {
        eid: Some(eid("A")),
        serial: None,
    }
    .into();
    assert_eq!(
        info,
        CertInfo {
            user_data: None,
            eid: Some(eid("A")),
            serial: None
        }
    );
}

#[test]
fn rsa_conversion_round_trips() {
    let k = keys();
    let key = public(&k.sa);
    let rsa = key.to_rsa().unwrap();
    assert_eq!(
        mkclone_formats::pka::RsaPublicKey::from_rsa(&rsa).unwrap(),
        key
    );
    assert_eq!(key.bits().bits(), 2048);
    assert_eq!(key.exponent(), &[1, 0, 1]);
}
