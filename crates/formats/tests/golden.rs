//! Golden byte vectors, assembled by hand field by field from the layouts in
//! reference/cca-cloning.md "Formats" and ARCHITECTURE.md "Shares" (NOT produced by the
//! encoders under test). Each is decoded, checked field by field, and re-encoded to the
//! identical bytes. The last test seals a share with a fixed triple-DES key and checks
//! every layer of it independently.

mod common;

use common::*;
use des::cipher::{BlockCipherDecrypt, KeyInit};
use mkclone_backend::{
    Certificate, CloneableKind, HashAlgorithm, PatternAlgorithm, PublicKeyToken, SealedShare,
    SerialNumber, ShareIndex,
};
use mkclone_formats::clone_info::SignedCloneInfo;
use mkclone_formats::pka::{
    CertInfo, CertificateSection, PublicKeyTokenView, SignatureSubsection, registration_hash,
};
use mkclone_formats::seal::{Recipient, SealedShareParts, TdesKey, open, seal_with_key};
use mkclone_formats::{SignatureError, ids};
use rand::SeedableRng;
use sha2::{Digest, Sha256};

/// A 2048-bit odd modulus for layout tests: C3 followed by 255 bytes A5 (top bit set, odd).
/// Not a product of primes; the layout tests never use it for RSA.
fn layout_modulus() -> Vec<u8> {
    let mut n = vec![0xA5; 256];
    n[0] = 0xC3;
    n
}

/// A 256-byte stand-in signature (layout only, never verified).
fn layout_signature() -> Vec<u8> {
    (0..256u32).map(|i| (i as u8) ^ 0x5A).collect()
}

/// The X'41' (or X'04') key body of the layout key, by hand.
fn key_subsection(id: u8, n: &[u8]) -> Vec<u8> {
    cat(&[
        &[id, 0x00],         // id, version
        &[0x01, 0x0F], // length 271 = 4 head + 2 reserved + 6 lengths + 3 exponent + 256 modulus
        &[0x00, 0x00], // reserved
        &[0x00, 0x03], // exponent length: 3 bytes
        &[0x08, 0x00], // modulus length: 2048 bits
        &[0x01, 0x00], // modulus length: 256 bytes
        &[0x01, 0x00, 0x01], // exponent 65537
        n,             // modulus
    ])
}

/// An X'45' signature subsection with mkclone's ids, by hand.
fn signature_subsection(signer: &str, sig: &[u8]) -> Vec<u8> {
    assert_eq!(sig.len(), 256);
    cat(&[
        &[0x45, 0x00],        // X'45' signature, version
        &[0x01, 0x46], // length 326 = 4 head + 1 hash id + 1 format id + 64 label + 256 signature
        &[0x82],       // hash id: SHA-256 (project-assigned)
        &[0x81],       // signature-format id: PKCS#1 v1.5 (project-assigned)
        &label_field(signer), // signer key label, 64 bytes blank padded
        sig,           // signature
    ])
}

#[test]
fn public_key_token_with_certificate_section() {
    let n = layout_modulus();
    let sig = layout_signature();
    let golden = cat(&[
        // --- token header ---
        &[0x1E],                   // X'1E' PKA public-key token
        &[0x00],                   // version
        &[0x03, 0x70],             // total token length 880 = 8 + 271 + 601
        &[0x00, 0x00, 0x00, 0x00], // reserved
        // --- X'04' RSA public-key section (271 bytes) ---
        &key_subsection(0x04, &n),
        // --- X'40' certificate section (601 bytes) ---
        &[0x40, 0x00],                                 // X'40', version
        &[0x02, 0x59],                                 // section length 601 = 4 + 271 + 326
        &key_subsection(0x41, &n),                     // X'41' public key
        &signature_subsection("MKCLONE.SA.KEY", &sig), // X'45' signature by the SA key
    ]);
    assert_eq!(golden.len(), 880);

    seed_export::write("pka_token", &golden);
    seed_export::write("certificate", &golden[8 + 271..]);
    let token = PublicKeyToken::new(golden.clone()).unwrap();
    let view = PublicKeyTokenView::decode(&token).unwrap();
    assert_eq!(view.key.modulus(), &n[..]);
    assert_eq!(view.key.exponent(), &[1, 0, 1]);
    let cert = view.certificate.as_ref().unwrap();
    assert_eq!(cert.key, view.key);
    assert_eq!(cert.info, CertInfo::default());
    assert_eq!(
        cert.signatures,
        vec![SignatureSubsection {
            hash_id: 0x82,
            format_id: 0x81,
            signer: label("MKCLONE.SA.KEY"),
            signature: sig.clone()
        }]
    );
    assert_eq!(view.encode().unwrap().as_bytes(), &golden[..]);

    // Fingerprint = SHA-256 over the X'41' subsection (bytes 8+271+4 .. +271 of the token).
    let x41 = &golden[8 + 271 + 4..8 + 271 + 4 + 271];
    assert_eq!(x41[0], 0x41);
    assert_eq!(
        view.key.fingerprint(),
        <[u8; 32]>::from(Sha256::digest(x41))
    );

    // Without the certificate section: header length 279.
    let bare = cat(&[
        &[0x1E, 0x00, 0x01, 0x17, 0, 0, 0, 0],
        &key_subsection(0x04, &n),
    ]);
    seed_export::write("pka_token", &bare);
    let bare_view = PublicKeyTokenView::from_bytes(&bare).unwrap();
    assert!(bare_view.certificate.is_none());
    assert_eq!(bare_view.encode().unwrap().as_bytes(), &bare[..]);
}

fn certificate_with_information() -> Vec<u8> {
    let n = layout_modulus();
    cat(&[
        &[0x40, 0x00],             // X'40' certificate section, version
        &[0x02, 0x86],             // section length 646 = 4 + 271 + 45 + 326
        &key_subsection(0x41, &n), // X'41' public key (271)
        &[0x42, 0x00],             // X'42' information, version
        &[0x00, 0x2D],             // length 45 = 4 + 9 + 20 + 12
        &[0x50, 0x00, 0x00, 0x09], // X'50' user data, length 9
        b"HELLO",                  // user data
        &[0x51, 0x00, 0x00, 0x14], // X'51' EID, length 20
        b"MKCLONE-SOURCE  ",       // EID, 16 bytes blank padded
        &[0x52, 0x00, 0x00, 0x0C], // X'52' serial number, length 12
        b"93AB1234",               // serial, 8 bytes
        &signature_subsection("MKCLONE.SA.KEY", &layout_signature()), // X'45' (326)
    ])
}

#[test]
fn certificate_section_with_information_subsection() {
    let golden = certificate_with_information();
    assert_eq!(golden.len(), 646);
    seed_export::write("certificate", &golden);
    let cert = CertificateSection::decode(&Certificate::new(golden.clone()).unwrap()).unwrap();
    assert_eq!(cert.key.modulus(), &layout_modulus()[..]);
    assert_eq!(cert.info.user_data.as_deref(), Some(&b"HELLO"[..]));
    assert_eq!(cert.info.eid, Some(eid("MKCLONE-SOURCE")));
    assert_eq!(
        cert.info.serial,
        Some(SerialNumber::new("93AB1234").unwrap())
    );
    assert_eq!(cert.signatures.len(), 1);
    assert_eq!(cert.signatures[0].signer, label("MKCLONE.SA.KEY"));
    assert_eq!(cert.encode().unwrap().as_bytes(), &golden[..]);

    // Registration hash: SHA-256 over X'41' and X'42' (bytes 4 .. 4+271+45).
    let h = registration_hash(&cert).unwrap();
    assert_eq!(h.algorithm(), HashAlgorithm::Sha256);
    assert_eq!(h.bytes(), &Sha256::digest(&golden[4..4 + 271 + 45])[..]);
}

#[test]
fn certificate_with_cca_ids_decodes_but_is_not_verifiable_here() {
    // Same section, but the X'45' subsection carries CCA's own ids X'01' SHA-1 and X'01'
    // ISO 9796-1: decoders accept it, verification refuses with a clear error.
    let mut golden = certificate_with_information();
    let sig_at = 4 + 271 + 45;
    assert_eq!(golden[sig_at], 0x45);
    golden[sig_at + 4] = 0x01; // hash id: SHA-1 (CCA's)
    golden[sig_at + 5] = 0x01; // format id: ISO 9796-1 (CCA's)
    seed_export::write("certificate", &golden);
    let cert = CertificateSection::from_bytes(&golden).unwrap();
    assert_eq!(cert.signatures[0].hash_id, ids::HASH_SHA1);
    assert_eq!(cert.signatures[0].format_id, ids::FORMAT_ISO9796_1);
    assert_eq!(cert.encode().unwrap().as_bytes(), &golden[..]);
    let err = cert
        .verify(&label("MKCLONE.SA.KEY"), &cert.key)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SignatureError::UnsupportedAlgorithm {
                hash_id: 1,
                format_id: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// The X'1D' token of `sample_info(3)` with a 256-byte signature, by hand.
fn clone_info_token(sig: &[u8]) -> Vec<u8> {
    let share: Vec<u8> = (0..24u8).map(|i| 0xA0 ^ i).collect(); // A0 A1 .. B7
    cat(&[
        // --- clear header (36 bytes) ---
        &[0x1D],                   // X'1D' cloning-information token
        &[0x00],                   // version
        &[0x01, 0x9C],             // total length 412 = 36 + 29 + 16 + 326 + 5 pad
        &[0x00, 0x00, 0x00, 0x00], // reserved
        &[0x00, 0x00, 0x00, 0x03], // share index 3
        b"SOURCE.1        ",       // origin EID, 16 bytes blank padded
        b"93AB1234",               // origin serial, 8 bytes
        // --- X'01' share TLV (29) ---
        &[0x01, 0x00], // id, version
        &[0x00, 0x1D], // length 29
        &[0x03],       // index 3
        &share,        // 24-byte share
        // --- X'6D' mkclone TLV (16, project-assigned) ---
        &[0x6D, 0x00],             // id 'm', version
        &[0x00, 0x10],             // length 16
        &[0x02],                   // kind: ASYM
        &[0x03],                   // m = 3
        &[0x05],                   // n = 5
        &[0x01],                   // pattern algorithm: SHA-1 method
        &[1, 2, 3, 4, 5, 6, 7, 8], // the source's CURRENT verification pattern
        // --- X'45' signature TLV (326) ---
        &signature_subsection("MKCLONE.CSS.KEY", sig),
        // --- pad: TLV area 371 bytes, padded to 376 ---
        &[0x00, 0x00, 0x00, 0x00, 0x00],
    ])
}

#[test]
fn clone_info_token_in_the_clear() {
    let sig = layout_signature();
    let golden = clone_info_token(&sig);
    assert_eq!(golden.len(), 412);
    assert_eq!((golden.len() - 36) % 8, 0);
    seed_export::write("clone_info", &golden);

    let decoded = SignedCloneInfo::decode(&golden).unwrap();
    let expected = sample_info(3);
    assert_eq!(decoded.info, expected);
    assert_eq!(decoded.info.kind, CloneableKind::Asym);
    assert_eq!(
        decoded.info.source_pattern.algorithm(),
        PatternAlgorithm::Sha1Method
    );
    assert_eq!(
        decoded.signature,
        SignatureSubsection::sha256_pkcs1(css_label(), sig.clone())
    );
    assert_eq!(&decoded.encode().unwrap()[..], &golden[..]);

    // The encoder's signed bytes are the token up to the signature field.
    let unsigned = expected.to_be_signed(&css_label(), 256).unwrap();
    assert_eq!(unsigned.signed_bytes(), &golden[..36 + 29 + 16 + 70]);
}

#[test]
fn sealed_share_container() {
    let fingerprint: Vec<u8> = (0..32u8).collect();
    let wrapped = vec![0x33; 256];
    let encrypted: Vec<u8> = (0..412u32).map(|i| (i * 7) as u8).collect();
    let golden = cat(&[
        b"MKCSHARE",               // magic
        &[0x00, 0x01],             // format version 1
        b"TARGET.1        ",       // target EID, 16 bytes
        &fingerprint,              // CSR key fingerprint, 32 bytes
        &[0x01],                   // kind: SYM
        &[0x03],                   // share index 3
        b"SOURCE.1        ",       // origin EID, 16 bytes
        &[0x01, 0x00],             // wrapped key length 256
        &wrapped,                  // wrapped key
        &[0x00, 0x00, 0x01, 0x9C], // encrypted cloning-information length 412
        &encrypted,                // encrypted cloning information
    ]);
    assert_eq!(golden.len(), 750);
    seed_export::write("sealed_share", &golden);
    let parts = SealedShareParts::decode(&SealedShare::new(golden.clone()).unwrap()).unwrap();
    assert_eq!(parts.header.target_eid, eid("TARGET.1"));
    assert_eq!(&parts.header.csr_fingerprint[..], &fingerprint[..]);
    assert_eq!(parts.header.kind, CloneableKind::Sym);
    assert_eq!(parts.header.index, ShareIndex::new(3).unwrap());
    assert_eq!(parts.header.origin_eid, eid("SOURCE.1"));
    assert_eq!(parts.wrapped_key, wrapped);
    assert_eq!(parts.encrypted_clone_info, encrypted);
    assert_eq!(parts.encode().unwrap().as_bytes(), &golden[..]);
}

#[test]
fn share_sealed_with_a_fixed_key_checked_layer_by_layer() {
    let k = keys();
    let css = public(&k.css);
    let csr = public(&k.csr);
    let fixed = hex::decode("0123456789abcdef23456789abcdef01456789abcdef0123").unwrap();
    let tdes = TdesKey::from_bytes(fixed.clone().try_into().unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let info = sample_info(3);
    let target = eid("TARGET.1");
    let to = Recipient {
        eid: &target,
        csr_key: &csr,
    };
    let parts = seal_with_key(
        &info,
        &css_label(),
        |bytes| Ok::<_, std::convert::Infallible>(sign(&k.css, bytes)),
        256,
        to,
        &tdes,
        &mut rng,
    )
    .unwrap();

    // Header.
    assert_eq!(parts.header.target_eid, eid("TARGET.1"));
    assert_eq!(parts.header.csr_fingerprint, csr.fingerprint());
    assert_eq!(parts.header.kind, CloneableKind::Asym);
    assert_eq!(parts.header.origin_eid, eid("SOURCE.1"));

    // The wrapped key is the fixed key under OAEP(SHA-1) to the CSR key.
    assert_eq!(
        &unwrap_key(&k.csr, &parts.wrapped_key).unwrap()[..],
        &fixed[..]
    );

    // The first 36 bytes are the hand-assembled clear header; the rest decrypts, by a
    // hand-written CBC loop over the raw EDE3 block cipher with a zero IV, to the
    // hand-assembled token whose signature is PKCS#1 v1.5 (deterministic) by the CSS key.
    let ct = &parts.encrypted_clone_info;
    assert_eq!(ct.len(), 412);
    let mut clear = ct[..36].to_vec();
    let cipher = des::TdesEde3::new_from_slice(&fixed).unwrap();
    let mut prev = [0u8; 8];
    for block in ct[36..].chunks(8) {
        let mut b = des::cipher::Block::<des::TdesEde3>::try_from(block).unwrap();
        cipher.decrypt_block(&mut b);
        clear.extend(b.iter().zip(prev).map(|(x, p)| x ^ p));
        prev.copy_from_slice(block);
    }
    let expected_sig = sign(&k.css, &clone_info_token(&[0; 256])[..36 + 29 + 16 + 70]);
    assert_eq!(clear, clone_info_token(&expected_sig));

    // And the whole thing opens.
    let opened = open(&parts, |w| unwrap_key(&k.csr, w), &css, Some(&css_label())).unwrap();
    assert_eq!(opened, info);
    // The container round-trips.
    let sealed = parts.encode().unwrap();
    assert_eq!(SealedShareParts::decode(&sealed).unwrap(), parts);
}
