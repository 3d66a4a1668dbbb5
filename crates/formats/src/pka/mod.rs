//! CCA PKA structures: the RSA public key, the public-key token (X'1E' / X'04') and the
//! X'40' certificate section with its X'41', X'42' and X'45' subsections.
//!
//! Every layout fact comes from the IBM CCA Basic Services Reference, release 2.54 (PKA
//! key token, certificate section), as summarised in reference/cca-cloning.md "Formats".
//! All integers are big-endian; every subsection has a 1-byte id, a version byte X'00' and
//! a 2-byte length counting the whole subsection. The hash and signature-format ids of
//! mkclone's own signatures (SHA-256, PKCS#1 v1.5) are project-assigned: see
//! [`crate::ids`].

mod certificate;
mod key;
mod token;

pub use certificate::{
    CertInfo, CertificateBuilder, CertificateSection, MAX_USER_DATA, UnsignedCertificate,
    registration_hash,
};
pub use key::RsaPublicKey;
pub use token::PublicKeyTokenView;

pub use crate::signature::{CertificateError, SignatureSubsection};
