//! Decoders name the structure, the field and the offset at fault.

mod common;

use common::*;
use mkclone_formats::FormatError;
use mkclone_formats::SignatureSubsection;
use mkclone_formats::clone_info::SignedCloneInfo;
use mkclone_formats::pka::{CertInfo, CertificateBuilder, CertificateSection, PublicKeyTokenView};
use mkclone_formats::seal::SealedShareParts;

fn token_bytes() -> Vec<u8> {
    SignedCloneInfo {
        info: sample_info(3),
        signature: SignatureSubsection::sha256_pkcs1(css_label(), vec![7; 256]),
    }
    .encode()
    .unwrap()
    .to_vec()
}

fn cert_bytes() -> Vec<u8> {
    CertificateBuilder::new(public(&keys().csr), CertInfo::default())
        .to_be_signed(&label("SA"), 256)
        .unwrap()
        .finish(vec![9; 256])
        .unwrap()
        .encode()
        .unwrap()
        .into_bytes()
}

/// Which errors a test accepts.
type Expected = fn(&FormatError) -> bool;
/// A change made to valid bytes.
type Change = fn(&mut [u8]);

/// Decoding `bytes` as a cloning-information token fails with an error `expected`
/// accepts; the error.
#[track_caller]
fn decode_refused(bytes: &[u8], expected: Expected) -> FormatError {
    let err = SignedCloneInfo::decode(bytes).unwrap_err();
    assert!(expected(&err), "{err}");
    err
}

#[test]
fn clone_info_share_index_must_match_the_header() {
    let mut b = token_bytes();
    b[40] = 4; // the X'01' TLV's index byte (offset 36 + 4)
    let err = decode_refused(&b, |e| {
        matches!(
            e,
            FormatError::Invalid {
                field: "share TLV index",
                offset: 40,
                ..
            }
        )
    });
    assert!(
        err.to_string().contains("the header's share index is 3"),
        "{err}"
    );
}

#[test]
fn clone_info_pad_must_be_zero_and_exact() {
    let b = token_bytes();
    assert_eq!(b.len(), 412);
    let mut nonzero = b.clone();
    nonzero[410] = 1;
    decode_refused(&nonzero, |e| {
        matches!(
            e,
            FormatError::UnexpectedByte {
                field: "pad",
                offset: 410,
                found: 1,
                ..
            }
        )
    });

    // Eight more zero bytes (length field adjusted): still a multiple of 8, but too long.
    let mut long = b.clone();
    long.extend_from_slice(&[0; 8]);
    long[2..4].copy_from_slice(&420u16.to_be_bytes());
    decode_refused(&long, |e| {
        matches!(
            e,
            FormatError::Invalid {
                field: "pad",
                offset: 407,
                ..
            }
        )
    });

    // One pad byte fewer: the area is no longer a multiple of 8.
    let mut short = b.clone();
    short.pop();
    short[2..4].copy_from_slice(&411u16.to_be_bytes());
    decode_refused(&short, |e| {
        matches!(e, FormatError::Invalid { field: "pad", .. })
    });
}

#[test]
fn clone_info_fields_are_checked() {
    let b = token_bytes();
    // (what is changed, the change, the error it must give)
    let cases: [(&str, Change, Expected); 6] = [
        (
            "token length",
            |b| b[3] ^= 1,
            |e| {
                matches!(
                    e,
                    FormatError::LengthMismatch {
                        field: "token length",
                        offset: 2,
                        ..
                    }
                )
            },
        ),
        (
            "reserved byte",
            |b| b[5] = 1,
            |e| matches!(e, FormatError::UnexpectedByte { offset: 5, .. }),
        ),
        // X'6D' TLV at 65: kind byte
        (
            "master-key kind",
            |b| b[65 + 4] = 3,
            |e| {
                matches!(
                    e,
                    FormatError::Invalid {
                        field: "master-key kind",
                        offset: 69,
                        ..
                    }
                )
            },
        ),
        // m = 6 > n = 5
        (
            "m",
            |b| b[70] = 6,
            |e| {
                matches!(
                    e,
                    FormatError::Invalid {
                        field: "m and n",
                        ..
                    }
                )
            },
        ),
        (
            "pattern algorithm",
            |b| b[72] = 2,
            |e| {
                matches!(
                    e,
                    FormatError::Invalid {
                        field: "verification-pattern algorithm",
                        offset: 72,
                        ..
                    }
                )
            },
        ),
        (
            "the X'6D' TLV's id",
            |b| b[65] = 0x6E,
            |e| {
                matches!(
                    e,
                    FormatError::UnexpectedSubsection {
                        id: 0x6E,
                        offset: 65,
                        ..
                    }
                )
            },
        ),
    ];
    for (what, change, expected) in cases {
        let mut changed = b.clone();
        change(&mut changed);
        let result = SignedCloneInfo::decode(&changed);
        assert!(
            matches!(&result, Err(e) if expected(e)),
            "{what}: {result:?}"
        );
    }
}

#[test]
fn certificate_overrun_names_offset_and_lengths() {
    let mut b = cert_bytes();
    // The X'41' subsection at offset 4 claims 700 bytes.
    b[6..8].copy_from_slice(&700u16.to_be_bytes());
    let err = CertificateSection::from_bytes(&b).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "certificate section: X'41' subsection at offset 4 claims 700 bytes, only {} remain",
            b.len() - 4
        )
    );
}

#[test]
fn certificate_structure_errors() {
    let b = cert_bytes();
    let mut trailing = b.clone();
    trailing.push(0);
    assert!(matches!(
        CertificateSection::from_bytes(&trailing),
        Err(FormatError::TrailingBytes { .. })
    ));

    // Modulus bits field disagrees with the modulus.
    let mut bits = b.clone();
    bits[12..14].copy_from_slice(&2047u16.to_be_bytes());
    assert!(matches!(
        CertificateSection::from_bytes(&bits),
        Err(FormatError::LengthMismatch {
            field: "modulus length in bits",
            offset: 12,
            ..
        })
    ));

    // No signature subsection (lengths adjusted).
    let key_only_len = 4 + 271;
    let mut unsigned = b[..key_only_len].to_vec();
    unsigned[2..4].copy_from_slice(&(key_only_len as u16).to_be_bytes());
    assert!(matches!(
        CertificateSection::from_bytes(&unsigned),
        Err(FormatError::Missing {
            what: "X'45' signature subsection",
            ..
        })
    ));

    // An empty X'42' is not canonical.
    let mut empty42 = b[..key_only_len].to_vec();
    empty42.extend_from_slice(&[0x42, 0x00, 0x00, 0x04]);
    empty42.extend_from_slice(&b[key_only_len..]);
    let total = empty42.len() as u16;
    empty42[2..4].copy_from_slice(&total.to_be_bytes());
    let err = CertificateSection::from_bytes(&empty42).unwrap_err();
    assert!(err.to_string().contains("omits an empty X'42'"), "{err}");
}

#[test]
fn token_refuses_other_sections() {
    let view = PublicKeyTokenView {
        key: public(&keys().sa),
        certificate: None,
    };
    let mut b = view.encode().unwrap().into_bytes();
    b.extend_from_slice(&[0x08, 0x00, 0x00, 0x04]);
    let total = b.len() as u16;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    let err = PublicKeyTokenView::from_bytes(&b).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::UnexpectedSubsection {
                id: 0x08,
                offset: 279,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn container_errors() {
    assert!(matches!(
        SealedShareParts::from_bytes(b"NOTSHARE"),
        Err(FormatError::Invalid {
            field: "magic",
            offset: 0,
            ..
        })
    ));
    assert!(matches!(
        SealedShareParts::from_bytes(b"MKCSHARE\x00\x02"),
        Err(FormatError::Invalid {
            field: "format version",
            offset: 8,
            ..
        })
    ));
    assert!(matches!(
        SealedShareParts::from_bytes(b"MKCSHARE\x00\x01TARGET"),
        Err(FormatError::Truncated {
            field: "target EID",
            offset: 10,
            needed: 16,
            remaining: 6,
            ..
        })
    ));
}
