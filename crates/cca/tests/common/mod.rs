//! Hand assembly of CCA messages, field by field, from the documented layouts
//! (reference/zcrypt-abi.md "struct CPRBX" and "The request parameter block"). Nothing
//! here calls the crate's encoders: every length a caller passes is written by hand and
//! only checked against the bytes that follow it.

#![allow(dead_code)]

// Writes golden vectors out as fuzz seeds when MKCLONE_FUZZ_SEEDS is set.
#[path = "../../../../fuzz/seed_export.rs"]
pub mod seed_export;

/// The usage domain every golden request names (APQN xx.000d).
pub const DOMAIN: u16 = 0x000D;
/// rpl_msgbl of every golden request: 12240, the zcrypt default message limit (12 KiB)
/// less the 48-byte type 86 reply header (older kernels refuse a larger reply buffer).
pub const RPL_MSGBL: u32 = 0x0000_2FD0;

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A 220-byte CPRBX, every field written at its offset.
pub fn cprbx(
    req_parml: u32,
    rpl_msgbl: u32,
    rpld_parml: u32,
    ccp_rtcode: u16,
    ccp_rscode: u16,
    domain: u16,
) -> Vec<u8> {
    let h = cat(&[
        &[0x00, 0xDC],             //   0 cprb_len = 220
        &[0x02],                   //   2 cprb_ver_id
        &[0x00],                   //   3 ctfm
        &[0x00, 0x00],             //   4 pad
        b"T2",                     //   6 func_id
        &[0x00; 4],                //   8 cprb_flags
        &req_parml.to_be_bytes(),  //  12 req_parml
        &[0x00; 4],                //  16 req_datal
        &rpl_msgbl.to_be_bytes(),  //  20 rpl_msgbl
        &rpld_parml.to_be_bytes(), //  24 rpld_parml
        &[0x00; 4],                //  28 rpl_datal
        &[0x00; 4],                //  32 rpld_datal
        &[0x00; 4],                //  36 req_extbl
        &[0x00; 4],                //  40 pad
        &[0x00; 4],                //  44 rpld_extbl
        &[0x00; 96],               //  48 six 16-byte address slots
        &ccp_rtcode.to_be_bytes(), // 144 ccp_rtcode
        &ccp_rscode.to_be_bytes(), // 146 ccp_rscode
        &[0x00; 4],                // 148 mac_data_len
        &[0x00; 8],                // 152 logon_id
        &[0x00; 8],                // 160 mac_value
        &[0x00],                   // 168 mac_content_flgs
        &[0x00],                   // 169 pad
        &domain.to_be_bytes(),     // 170 domain
        &[0x00; 12],               // 172 reserved
        &[0x00; 36],               // 184 pad
    ]);
    assert_eq!(h.len(), 220);
    h
}

/// A request message: CPRBX (req_parml = `parml`, written by hand) + parameter block.
pub fn request(parml: u32, parm: &[u8]) -> Vec<u8> {
    assert_eq!(parm.len(), parml as usize, "hand-written req_parml");
    cat(&[&cprbx(parml, RPL_MSGBL, 0, 0, 0, DOMAIN), parm])
}

/// A reply message: CPRBX (rpld_parml = `parml`, codes) + parameter block.
pub fn reply(parml: u32, rtcode: u16, rscode: u16, parm: &[u8]) -> Vec<u8> {
    assert_eq!(parm.len(), parml as usize, "hand-written rpld_parml");
    cat(&[&cprbx(0, 0, parml, rtcode, rscode, DOMAIN), parm])
}

/// One 8-byte blank-padded rule-array keyword.
pub fn keyword(text: &str) -> [u8; 8] {
    assert!(text.len() <= 8);
    let mut k = [b' '; 8];
    k[..text.len()].copy_from_slice(text.as_bytes());
    k
}

/// The rule array: u16 length (counting itself, written by hand) + keywords.
pub fn rules(len: u16, keywords: &[&str]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    for k in keywords {
        out.extend_from_slice(&keyword(k));
    }
    assert_eq!(
        out.len(),
        usize::from(len),
        "hand-written rule-array length"
    );
    out
}

/// The verb data: u16 length (counting itself, written by hand) + contents.
pub fn verb(len: u16, data: &[u8]) -> Vec<u8> {
    let out = cat(&[&len.to_be_bytes(), data]);
    assert_eq!(out.len(), usize::from(len), "hand-written verb-data length");
    out
}

/// One key-block entry: u16 length (counting itself, by hand) + flag 0 + token.
pub fn entry(len: u16, token: &[u8]) -> Vec<u8> {
    let out = cat(&[&len.to_be_bytes(), &[0x00, 0x00], token]);
    assert_eq!(out.len(), usize::from(len), "hand-written entry length");
    out
}

/// The key block: u16 length (counting itself, by hand) + entries.
pub fn keys(len: u16, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(e);
    }
    assert_eq!(out.len(), usize::from(len), "hand-written key-block length");
    out
}

/// The empty verb data or key block: just its length field, 2.
pub const EMPTY: [u8; 2] = [0x00, 0x02];

/// A 64-byte blank-padded key label field.
pub fn label(text: &str) -> [u8; 64] {
    assert!(text.len() <= 64);
    let mut l = [b' '; 64];
    l[..text.len()].copy_from_slice(text.as_bytes());
    l
}

/// A 16-byte blank-padded EID field.
pub fn eid16(text: &str) -> [u8; 16] {
    assert!(text.len() <= 16);
    let mut e = [b' '; 16];
    e[..text.len()].copy_from_slice(text.as_bytes());
    e
}

/// An opaque 12-byte stand-in public-key token (X'1E' first; the codec does not parse it).
pub const PK_TOKEN: [u8; 12] = [
    0x1E, 0x00, 0x00, 0x0C, 0x00, 0x00, 0x00, 0x00, 0xDE, 0xAD, 0xBE, 0xEF,
];
/// An opaque 8-byte stand-in certificate section (X'40' first).
pub const CERT: [u8; 8] = [0x40, 0x00, 0x00, 0x08, 0xCA, 0xFE, 0xBA, 0xBE];
/// An opaque 8-byte stand-in sealed share.
pub const SHARE: [u8; 8] = [0x00, 0x01, 0x53, 0x48, 0x41, 0x52, 0x45, 0xFF];

/// A parameter block with verb data only: `code`, an empty rule array (length 2 at offset
/// 2), the verb data — its length `verb_len` (counting itself, written by hand) at offset
/// 4, then `data` from offset 6 — and an empty key block (length 2).
pub fn data_only(code: &[u8; 2], verb_len: u16, data: &[&[u8]]) -> Vec<u8> {
    cat(&[code, &EMPTY, &verb(verb_len, &data.concat()), &EMPTY])
}

/// A parameter block with no rules and no verb data: `code`, then `key_block`.
pub fn keys_only(code: &[u8; 2], key_block: &[u8]) -> Vec<u8> {
    cat(&[code, &EMPTY, &EMPTY, key_block])
}

/// A ce (certify) parameter block: no rules, the 25 bytes of verb data `data` (flags, EID,
/// serial), signer "SA" and subject [`PK_TOKEN`] in the key block.
pub fn ce_parm(data: &[u8]) -> Vec<u8> {
    cat(&[
        &b"ce"[..],          // 0 function code
        &EMPTY,              // 2 rule-array length 2
        &verb(0x001B, data), // 4 verb data (25)
        &keys(
            0x0056,
            &[entry(0x0044, &label("SA")), entry(0x0010, &PK_TOKEN)],
        ),
    ])
}

/// A 32-byte stand-in SHA-256 hash: 0x00, 0x01, ..., 0x1F.
pub fn hash32() -> Vec<u8> {
    (0u8..32).collect()
}
/// A 20-byte stand-in SHA-1 hash: 0xA0, 0xA1, ..., 0xB3.
pub fn hash20() -> Vec<u8> {
    (0xA0u8..0xB4).collect()
}
