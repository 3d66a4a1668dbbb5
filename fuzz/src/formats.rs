//! CCA structures that travel between nodes: the PKA public-key token, the X'40'
//! certificate section, the X'1D' cloning-information token and the sealed-share
//! container. Their decoders are canonical (one byte string per meaning), so a decoded
//! input must re-encode to itself byte for byte.

use std::sync::OnceLock;

use mkclone_formats::clone_info::SignedCloneInfo;
use mkclone_formats::pka::{
    CertificateSection, PublicKeyTokenView, RsaPublicKey, registration_hash,
};
use mkclone_formats::seal::{SealedShareParts, open};
use zeroize::Zeroizing;

use crate::alloc_cap::{binary_cap, capped};
use crate::shown;

/// `decode` under the allocation cap of `data`. A refusal is formatted (`shown`), and its
/// text returned as the error; a decoded value must encode back to `data` byte for byte
/// (the decoders are canonical: one byte string per meaning).
fn canonical<T, E, F, B>(
    data: &[u8],
    cap: usize,
    what: &str,
    decode: impl FnOnce() -> Result<T, E>,
    encode: impl FnOnce(&T) -> Result<B, F>,
) -> Result<T, String>
where
    E: std::fmt::Display + std::fmt::Debug,
    F: std::fmt::Display,
    B: AsRef<[u8]>,
{
    let value = capped(cap, decode).map_err(|e| shown(&e, cap))?;
    let encoded =
        encode(&value).unwrap_or_else(|e| panic!("a decoded {what} does not encode: {e}"));
    assert_eq!(encoded.as_ref(), data, "a decoded {what} is not canonical");
    Ok(value)
}

/// Target `pka_token`: a public-key token (X'1E' header, X'04' section, optional X'40').
/// Decoded: canonical; its key is one the `rsa` crate accepts (the decoder promises a
/// key valid by construction), and its fingerprint and `Debug` work.
pub fn pka_token(data: &[u8]) {
    let cap = binary_cap(data.len());
    let decode = || PublicKeyTokenView::from_bytes(data);
    let encode = |v: &PublicKeyTokenView| v.encode().map(|t| t.as_bytes().to_vec());
    if let Ok(view) = canonical(data, cap, "token", decode, encode) {
        if let Err(e) = view.key.to_rsa() {
            panic!("a decoded key is refused by the rsa crate: {e}");
        }
        let _ = format!("{view:?}");
    }
}

/// Target `certificate`: an X'40' certificate section. Decoded: canonical; its
/// registration hash computes; its self-signature is checked as `trust` checks the SA's
/// (a typed refusal or a pass, never a panic).
pub fn certificate(data: &[u8]) {
    let cap = binary_cap(data.len());
    let decode = || CertificateSection::from_bytes(data);
    let encode = |s: &CertificateSection| s.encode().map(|c| c.as_bytes().to_vec());
    if let Ok(section) = canonical(data, cap, "certificate section", decode, encode) {
        registration_hash(&section)
            .unwrap_or_else(|e| panic!("a decoded section has no registration hash: {e}"));
        let signer = section.signatures[0].signer.clone();
        if let Err(e) = section.verify(&signer, &section.key) {
            shown(&e, cap);
        }
    }
}

/// Whether `text` shows `bytes` as hex (either case) or as a `Debug` byte list. A match
/// counts only where it stands for those bytes: hex at a byte boundary of the run of hex
/// digits it is in, a list's numbers whole (`1` inside `183` is not the byte 1).
fn shows_bytes(text: &str, bytes: &[u8]) -> bool {
    let hex_run_start = |at: usize| {
        text[..at]
            .rfind(|c: char| !c.is_ascii_hexdigit())
            .map_or(0, |i| i + 1)
    };
    let in_hex = [hex::encode(bytes), hex::encode_upper(bytes)]
        .iter()
        .any(|form| {
            text.match_indices(form.as_str())
                .any(|(at, _)| (at - hex_run_start(at)) % 2 == 0)
        });
    let list = format!("{bytes:?}");
    let inner = list.trim_matches(['[', ']']);
    let in_list = text.match_indices(inner).any(|(at, m)| {
        let before = text[..at].chars().next_back();
        let after = text[at + m.len()..].chars().next();
        matches!(before, Some('[' | ' ')) && matches!(after, Some(',' | ']'))
    });
    in_hex || in_list
}

/// [`shows_bytes`] on the cases it must tell apart, once per run of the target (it is the
/// oracle of the secret check: a wrong oracle would pass or fail everything).
fn check_shows_bytes() {
    let share: Vec<u8> = (160..=183).collect();
    let mut near: Vec<u8> = (160..=182).collect();
    near.push(1);
    let cases: [(&str, &[u8], bool); 8] = [
        (
            "signature: [9, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183]",
            &share,
            true,
        ),
        (
            "[160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183]",
            &share,
            true,
        ),
        (
            "[160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183]",
            &near,
            false,
        ),
        (
            "[2160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183]",
            &share,
            false,
        ),
        (
            "X'00A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7'",
            &share,
            true,
        ),
        (
            "x a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7 y",
            &share,
            true,
        ),
        (
            "X'0A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7'",
            &share,
            false,
        ),
        ("ShareValue(<redacted>)", &share, false),
    ];
    for (text, bytes, expected) in cases {
        assert_eq!(shows_bytes(text, bytes), expected, "oracle on {text:?}");
    }
}

/// The share field of a cloning-information token: bytes 41..65 (36-byte clear header,
/// the X'01' TLV's 4-byte head and index byte).
const SHARE_FIELD: std::ops::Range<usize> = 41..65;

/// Target `clone_info`: an X'1D' token in the clear (as a target's device holds it after
/// decryption). Decoded: canonical, and its signed bytes are the token's prefix. The share
/// it carries is a secret: it appears neither in an error message nor in `Debug` (as hex
/// or as a byte list) of the token.
pub fn clone_info(data: &[u8]) {
    static ORACLE: OnceLock<()> = OnceLock::new();
    ORACLE.get_or_init(check_shows_bytes);
    let cap = binary_cap(data.len());
    // Checked only when the share's bytes occur nowhere else in the input: a copy of them
    // in a public field (the fuzzer makes such copies) may show with that field.
    let secret = data
        .get(SHARE_FIELD)
        .filter(|share| data.windows(share.len()).filter(|w| w == share).count() == 1);
    let never_shows_share = |text: &str| {
        if let Some(share) = secret {
            assert!(!shows_bytes(text, share), "the share shows in: {text}");
        }
    };
    let decode = || SignedCloneInfo::decode(data);
    match canonical(data, cap, "token", decode, |t| t.encode()) {
        Ok(token) => {
            let signed = token
                .signed_bytes()
                .unwrap_or_else(|e| panic!("a decoded token has no signed bytes: {e}"));
            assert!(
                data.starts_with(&signed),
                "the signed bytes are not the token's prefix"
            );
            never_shows_share(&format!("{token:?}"));
        }
        Err(text) => never_shows_share(&text),
    }
}

/// The CSS key shares are checked against, and the triple-DES key the "device" unwraps:
/// fixed, so that runs repeat. The modulus is a layout stand-in (C3, then A5s), never
/// factored; nothing verifies under it.
fn opening_fixture() -> &'static (RsaPublicKey, [u8; 24]) {
    static FIXTURE: OnceLock<(RsaPublicKey, [u8; 24])> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut modulus = vec![0xA5; 256];
        modulus[0] = 0xC3;
        let key = RsaPublicKey::new(modulus, vec![1, 0, 1]).expect("fixture key");
        let tdes = hex::decode("0123456789abcdef23456789abcdef01456789abcdef0123")
            .expect("fixture hex")
            .try_into()
            .expect("24 bytes");
        (key, tdes)
    })
}

/// Target `sealed_share`: the sealed-share container a bundle carries to a target.
/// Decoded: canonical; then opened as a target does, with the wrapped key "unwrapped" to
/// a fixed triple-DES key: any layout the fuzzer reaches is refused with the one
/// undifferentiated `Rejected` (no oracle), never a panic.
pub fn sealed_share(data: &[u8]) {
    let cap = binary_cap(data.len());
    let decode = || SealedShareParts::from_bytes(data);
    let encode = |p: &SealedShareParts| p.encode().map(|c| c.as_bytes().to_vec());
    let Ok(parts) = canonical(data, cap, "container", decode, encode) else {
        return;
    };
    let (css_key, tdes) = opening_fixture();
    let opened = capped(cap, || {
        open(
            &parts,
            |_wrapped| Ok::<_, ()>(Zeroizing::new(tdes.to_vec())),
            css_key,
            None,
        )
    });
    if let Err(e) = opened {
        shown(&e, cap);
    }
}
