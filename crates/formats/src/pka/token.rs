//! The PKA public-key token: X'1E' header, X'04' RSA public-key section, optional X'40'
//! certificate section.
//!
//! Layout (IBM CCA Basic Services Reference, release 2.54, PKA key token: public-key token
//! header and RSA public-key section; the certificate section as summarised in
//! reference/cca-cloning.md "Formats"): header X'1E', X'00', 2-byte total token length,
//! 4 reserved zero bytes; section X'04', X'00', 2-byte section length, 2 reserved zero
//! bytes, 2-byte exponent length in bytes, 2-byte modulus length in bits, 2-byte modulus
//! length in bytes, exponent, modulus; then the certificate section, if any.
//!
//! Project rules: nothing else may follow; the certificate section, when present, must
//! certify the token's own key.

use mkclone_backend::PublicKeyToken;

use crate::error::{FormatError, Result};
use crate::ids;
use crate::pka::{CertificateSection, RsaPublicKey};
use crate::reader::{Reader, Writer};

const STRUCTURE: &str = "public-key token";

/// A decoded public-key token.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PublicKeyTokenView {
    pub key: RsaPublicKey,
    pub certificate: Option<CertificateSection>,
}

impl PublicKeyTokenView {
    pub fn encode(&self) -> Result<PublicKeyToken> {
        self.check_certificate_key(0)?;
        let mut w = Writer::new();
        w.u8(ids::PKA_PUBLIC_TOKEN);
        w.u8(ids::VERSION);
        w.u16(0); // patched below
        w.bytes(&[0; 4]);
        self.key
            .write_subsection(&mut w, ids::RSA_PUBLIC_SECTION, STRUCTURE)?;
        if let Some(cert) = &self.certificate {
            let bytes = cert.encode()?;
            w.bytes(bytes.as_bytes());
        }
        w.patch_len16(STRUCTURE, "token length", 2, w.len())?;
        PublicKeyToken::new(w.into_vec())
            .map_err(|e| FormatError::unencodable(STRUCTURE, "token", e))
    }

    pub fn decode(token: &PublicKeyToken) -> Result<Self> {
        Self::from_bytes(token.as_bytes())
    }

    /// Decode a token that must fill `bytes` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::token(STRUCTURE, bytes, ids::PKA_PUBLIC_TOKEN)?;

        if r.is_empty() {
            return Err(FormatError::Missing {
                structure: STRUCTURE,
                what: "X'04' RSA public-key section",
                offset: r.offset(),
            });
        }
        let section = r.tlv()?;
        if section.id != ids::RSA_PUBLIC_SECTION {
            return Err(section.unexpected(
                STRUCTURE,
                "the X'04' RSA public-key section follows the header",
            ));
        }
        let key = RsaPublicKey::read_body(section.body)?;

        let cert_at = r.offset();
        let certificate = match r.is_empty() {
            true => None,
            false => {
                if r.peek_u8() != Some(ids::CERTIFICATE_SECTION) {
                    return Err(FormatError::UnexpectedSubsection {
                        structure: STRUCTURE,
                        id: r.peek_u8().unwrap_or(0),
                        offset: cert_at,
                        reason: "only an X'40' certificate section may follow the X'04' section",
                    });
                }
                Some(CertificateSection::read(&mut r)?)
            }
        };
        r.finish()?;
        let view = Self { key, certificate };
        view.check_certificate_key(cert_at)?;
        Ok(view)
    }

    fn check_certificate_key(&self, offset: usize) -> Result<()> {
        match &self.certificate {
            Some(cert) if cert.key != self.key => Err(FormatError::Invalid {
                structure: STRUCTURE,
                field: "certificate section",
                offset,
                reason: "the certificate section certifies a different key than the token's X'04' section".into(),
            }),
            _ => Ok(()),
        }
    }
}
