//! Every identifier byte this crate writes, with its provenance.
//!
//! Two kinds of value live here and are never mixed up:
//!
//! - **CCA's**: identifiers IBM documents in the *IBM CCA Basic Services Reference, release
//!   2.54* (PKA key token, certificate section, cloning-information token), as summarised in
//!   `reference/cca-cloning.md` ("Formats"). A real coprocessor writes and reads these.
//! - **Project-assigned**: values mkclone chose because CCA has none for what mkclone
//!   needs, or because CCA's value is not public. A real coprocessor does not know them;
//!   they appear only in structures made by mkclone's simulator and PKCS#11 paths. Each is
//!   chosen so that it cannot be mistaken for a documented IBM value.

// ---------------------------------------------------------------------------------------
// Common
// ---------------------------------------------------------------------------------------

/// CCA's: the version byte of every token, section and subsection used here (X'00').
pub const VERSION: u8 = 0x00;

// ---------------------------------------------------------------------------------------
// PKA public-key token
// ---------------------------------------------------------------------------------------

/// CCA's: header identifier of a PKA *public*-key token (X'1E'). From the BSR's PKA key
/// token layout; `reference/cca-cloning.md` does not restate it.
pub const PKA_PUBLIC_TOKEN: u8 = 0x1E;
/// CCA's: RSA public-key section of a PKA token (X'04'). From the BSR's PKA key token
/// layout; `reference/cca-cloning.md` does not restate it.
pub const RSA_PUBLIC_SECTION: u8 = 0x04;

// ---------------------------------------------------------------------------------------
// Certificate section (reference/cca-cloning.md, "Formats")
// ---------------------------------------------------------------------------------------

/// CCA's: certificate section (X'40').
pub const CERTIFICATE_SECTION: u8 = 0x40;
/// CCA's: public-key subsection of a certificate section (X'41').
pub const CERT_PUBLIC_KEY: u8 = 0x41;
/// CCA's: information subsection of a certificate section (X'42').
pub const CERT_INFORMATION: u8 = 0x42;
/// CCA's: signature subsection (X'45'); the cloning-information token uses the same id
/// and shape for its signature TLV.
pub const SIGNATURE: u8 = 0x45;
/// CCA's: user-data TLV inside X'42' (0 to 64 bytes).
pub const INFO_USER_DATA: u8 = 0x50;
/// CCA's: EID TLV inside X'42' (16 ASCII bytes).
pub const INFO_EID: u8 = 0x51;
/// CCA's: serial-number TLV inside X'42' (8 bytes).
pub const INFO_SERIAL: u8 = 0x52;

// ---------------------------------------------------------------------------------------
// Signature algorithm identifiers (hash id, signature-format id of an X'45' subsection)
// ---------------------------------------------------------------------------------------

/// CCA's: hash id X'01' = SHA-1. Decoded and reported; mkclone cannot verify such a
/// signature (it pairs with ISO 9796-1, see below).
pub const HASH_SHA1: u8 = 0x01;
/// CCA's: signature-format id X'01' = ISO 9796-1. Decoded and reported, never verified or
/// produced by mkclone.
pub const FORMAT_ISO9796_1: u8 = 0x01;
/// PROJECT-ASSIGNED: hash id for SHA-256. CCA's id for SHA-256 in this field is not in the
/// public documentation we have. The high bit keeps it clear of CCA's small documented
/// values (X'01'), so a reader cannot take it for one of IBM's.
pub const HASH_SHA256: u8 = 0x82;
/// PROJECT-ASSIGNED: signature-format id for RSA PKCS#1 v1.5 (EMSA-PKCS1-v1_5). Same
/// reasoning as [`HASH_SHA256`]: CCA's id for it is not known to us; the high bit keeps
/// it clear of CCA's documented X'01'.
pub const FORMAT_PKCS1_V15: u8 = 0x81;

// ---------------------------------------------------------------------------------------
// Cloning-information token (reference/cca-cloning.md, "Formats")
// ---------------------------------------------------------------------------------------

/// CCA's: cloning-information token header (X'1D').
pub const CLONE_INFO_TOKEN: u8 = 0x1D;
/// CCA's: share TLV of the cloning-information token (X'01', length X'001D').
pub const CLONE_SHARE_TLV: u8 = 0x01;
/// PROJECT-ASSIGNED: mkclone's TLV in the cloning-information token, carrying the
/// master-key kind, m, n and the source's current verification pattern inside the signed
/// bytes. 0x6D is ASCII lowercase 'm': IBM's documented TLV ids are X'01' and the
/// upper-range X'40'-X'52' values, and the project keeps lowercase ASCII for its own
/// identifiers (as it does for function codes), so it can never alias an IBM id.
pub const CLONE_MKCLONE_TLV: u8 = 0x6D;

/// PROJECT-ASSIGNED: master-key kind code inside the X'6D' TLV and the sealed-share
/// header: SYM master key.
pub const KIND_SYM: u8 = 1;
/// PROJECT-ASSIGNED: master-key kind code: ASYM master key.
pub const KIND_ASYM: u8 = 2;
/// PROJECT-ASSIGNED: verification-pattern algorithm code inside the X'6D' TLV: the
/// SHA-1 method (first 8 bytes of SHA-1(X'01' || key)). No other code is defined.
pub const PATTERN_SHA1_METHOD: u8 = 1;
