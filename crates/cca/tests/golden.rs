//! Golden vectors: every message here is assembled BY HAND, field by field, from the
//! layouts in reference/zcrypt-abi.md (CPRBX, parameter block) and the per-variant layout
//! docs of `verbs::Request` / `verbs::ReplyBody`. Each is decoded with the crate, checked
//! field by field, and re-encoded with the crate to the identical bytes.
//!
//! Lengths are written as literals; `common` only checks each one against the bytes that
//! follow it. Parameter-block offsets in comments are relative to the start of the
//! parameter block (message offset 220).

mod common;

use common::*;
use mkclone_backend::{
    CloneableKind, GenerationState, HashAlgorithm, KeyUsage, MasterKeyKind, PatternAlgorithm,
    ReceptionState,
};
use mkclone_cca::REPLY_CAPACITY;
use mkclone_cca::cprb::{AUTOSELECT_DOMAIN, CPRBX_LEN, Cprbx};
use mkclone_cca::function::FunctionCode;
use mkclone_cca::parm::{KeyEntry, Keyword, ParmBlock};
use mkclone_cca::verbs::{MkAction, Query, Register, Reply, ReplyBody, Request};

// ---------------------------------------------------------------------------------------
// Decode / re-encode helpers
// ---------------------------------------------------------------------------------------

/// Decode a golden request, check its header, re-encode it (whole message and parameter
/// block alone) to the identical bytes, and return it for field-by-field checks.
fn golden_request(msg: &[u8]) -> Request {
    let (header, req) = Request::from_message(msg).expect("golden request decodes");
    assert_eq!(
        header.req_parml as usize,
        msg.len() - CPRBX_LEN,
        "req_parml"
    );
    assert_eq!(header.rpl_msgbl, RPL_MSGBL, "rpl_msgbl");
    assert_eq!(header.domain, DOMAIN, "domain");
    assert_eq!(header.rpld_parml, 0);
    assert_eq!((header.ccp_rtcode, header.ccp_rscode), (0, 0));

    let parm = ParmBlock::decode(&msg[CPRBX_LEN..]).expect("golden parameter block decodes");
    assert_eq!(parm.function, req.function());
    assert_eq!(
        parm.encode().expect("parameter block encodes"),
        &msg[CPRBX_LEN..]
    );
    assert_eq!(req.to_parm(), parm);

    let again = req
        .to_message(DOMAIN, REPLY_CAPACITY)
        .expect("request encodes");
    assert_eq!(hex::encode(&again), hex::encode(msg), "re-encoded request");
    req
}

/// Decode a golden reply to `request`, check its header, re-encode it to the identical
/// bytes, and return it for field-by-field checks.
fn golden_reply(msg: &[u8], request: &Request) -> Reply {
    seed_export::write("cprb_reply", msg);
    let header = Cprbx::decode(msg).expect("golden reply header decodes");
    assert_eq!(
        header.rpld_parml as usize,
        msg.len() - CPRBX_LEN,
        "rpld_parml"
    );
    assert_eq!(header.domain, DOMAIN, "domain");
    assert_eq!((header.req_parml, header.rpl_msgbl), (0, 0));

    let reply = Reply::from_message(msg, request).expect("golden reply decodes");
    assert_eq!(reply.return_code, header.ccp_rtcode);
    assert_eq!(reply.reason_code, header.ccp_rscode);
    let again = reply
        .to_message(request.function(), DOMAIN)
        .expect("reply encodes");
    assert_eq!(hex::encode(&again), hex::encode(msg), "re-encoded reply");
    reply
}

/// The 8-byte parameter block of a reply (or request) without rules, data or keys.
fn bare_parm(code: &[u8; 2]) -> Vec<u8> {
    cat(&[
        code,          // 0 function code
        &[0x00, 0x02], // 2 rule-array length 2 (no keywords)
        &[0x00, 0x02], // 4 verb-data length 2 (empty)
        &[0x00, 0x02], // 6 key-block length 2 (no entries)
    ])
}

/// Check an `Empty` success reply for `request`, which carries `code`.
fn check_empty_reply(code: &[u8; 2], request: &Request) {
    check_bodyless_reply(code, 0, 0, request);
}

/// Check a reply with return code `rt`, reason code `rs` and a bare parameter block for
/// `request`, which carries `code`: its body is `Empty`.
fn check_bodyless_reply(code: &[u8; 2], rt: u16, rs: u16, request: &Request) {
    let msg = reply(0x0008, rt, rs, &bare_parm(code));
    let r = golden_reply(&msg, request);
    assert_eq!((r.return_code, r.reason_code), (rt, rs));
    assert_eq!(r.body, ReplyBody::Empty);
}

/// A CPRBX written byte by byte: cprb_len 220, version X'02', func_id "T2", then each
/// (offset, bytes) of `fields`; every other byte zero.
fn header(fields: &[(usize, &[u8])]) -> [u8; 220] {
    let mut golden = [0u8; 220];
    golden[0..2].copy_from_slice(&[0x00, 0xDC]); // 0 cprb_len 220
    golden[2] = 0x02; //                             2 cprb_ver_id
    golden[6..8].copy_from_slice(b"T2"); //          6 func_id
    for (at, bytes) in fields {
        golden[*at..at + bytes.len()].copy_from_slice(bytes);
    }
    golden
}

fn text(k: &Keyword) -> String {
    k.text()
}

// ---------------------------------------------------------------------------------------
// CPRBX
// ---------------------------------------------------------------------------------------

#[test]
fn cprbx_request_header() {
    // Every byte written out; only the four non-zero fields differ from zero.
    let golden = header(&[
        (12, &[0x00, 0x00, 0x00, 0x10]), //  12 req_parml 16
        (20, &[0x00, 0x00, 0x2F, 0xD0]), //  20 rpl_msgbl 12240
        (170, &[0x00, 0x0D]),            // 170 domain 13
    ]);
    assert_eq!(&golden[..], &cprbx(16, RPL_MSGBL, 0, 0, 0, DOMAIN)[..]);

    let h = Cprbx::decode(&golden).expect("request header decodes");
    assert_eq!(h.req_parml, 16);
    assert_eq!(h.req_datal, 0);
    assert_eq!(h.rpl_msgbl, 12240);
    assert_eq!(h.rpld_parml, 0);
    assert_eq!(h.rpl_datal, 0);
    assert_eq!(h.rpld_datal, 0);
    assert_eq!(h.req_extbl, 0);
    assert_eq!(h.rpld_extbl, 0);
    assert_eq!(h.ccp_rtcode, 0);
    assert_eq!(h.ccp_rscode, 0);
    assert_eq!(h.domain, 0x000D);
    assert_eq!(h.encode(), golden);

    // Cprbx::request builds the same header.
    assert_eq!(
        Cprbx::request(DOMAIN, 16, REPLY_CAPACITY).unwrap().encode(),
        golden
    );
}

#[test]
fn cprbx_request_header_autoselect_domain() {
    let golden = header(&[
        (12, &[0x00, 0x01, 0x02, 0x03]), //  12 req_parml
        (20, &[0xFF, 0xFF, 0xFF, 0xFF]), //  20 rpl_msgbl
        (170, &[0xFF, 0xFF]),            // 170 domain AUTOSEL_DOM
    ]);
    let h = Cprbx::decode(&golden).unwrap();
    assert_eq!(h.req_parml, 0x0001_0203);
    assert_eq!(h.rpl_msgbl, u32::MAX);
    assert_eq!(h.domain, AUTOSELECT_DOMAIN);
    assert_eq!(h.encode(), golden);
}

#[test]
fn cprbx_reply_header() {
    let golden = header(&[
        (24, &[0x00, 0x00, 0x01, 0x2C]), //  24 rpld_parml 300
        (144, &[0x00, 0x08]),            // 144 ccp_rtcode 8
        (146, &[0x04, 0x09]),            // 146 ccp_rscode 1033
        (170, &[0x00, 0x0D]),            // 170 domain 13
    ]);
    assert_eq!(&golden[..], &cprbx(0, 0, 300, 8, 1033, DOMAIN)[..]);

    let h = Cprbx::decode(&golden).expect("reply header decodes");
    assert_eq!(h.req_parml, 0);
    assert_eq!(h.rpl_msgbl, 0);
    assert_eq!(h.rpld_parml, 300);
    assert_eq!(h.ccp_rtcode, 8);
    assert_eq!(h.ccp_rscode, 1033);
    assert_eq!(h.domain, 0x000D);
    assert_eq!(
        h,
        Cprbx {
            rpld_parml: 300,
            ccp_rtcode: 8,
            ccp_rscode: 1033,
            domain: 13,
            ..Cprbx::default()
        }
    );
    assert_eq!(h.encode(), golden);
}

#[test]
fn cprbx_every_length_field_at_its_offset() {
    // Distinct values in every u32/u16 field mkclone models, so a swapped offset shows.
    let golden = header(&[
        (12, &[0x11; 4]),  //  12 req_parml
        (16, &[0x22; 4]),  //  16 req_datal
        (20, &[0x33; 4]),  //  20 rpl_msgbl
        (24, &[0x44; 4]),  //  24 rpld_parml
        (28, &[0x55; 4]),  //  28 rpl_datal
        (32, &[0x66; 4]),  //  32 rpld_datal
        (36, &[0x77; 4]),  //  36 req_extbl
        (44, &[0x88; 4]),  //  44 rpld_extbl
        (144, &[0x99; 2]), // 144 ccp_rtcode
        (146, &[0xAA; 2]), // 146 ccp_rscode
        (170, &[0xBB; 2]), // 170 domain
    ]);
    let h = Cprbx::decode(&golden).unwrap();
    assert_eq!(
        h,
        Cprbx {
            req_parml: 0x1111_1111,
            req_datal: 0x2222_2222,
            rpl_msgbl: 0x3333_3333,
            rpld_parml: 0x4444_4444,
            rpl_datal: 0x5555_5555,
            rpld_datal: 0x6666_6666,
            req_extbl: 0x7777_7777,
            rpld_extbl: 0x8888_8888,
            ccp_rtcode: 0x9999,
            ccp_rscode: 0xAAAA,
            domain: 0xBBBB,
        }
    );
    assert_eq!(h.encode(), golden);
}

// ---------------------------------------------------------------------------------------
// Parameter block
// ---------------------------------------------------------------------------------------

#[test]
fn parameter_block_with_every_section() {
    let golden = cat(&[
        b"kg",         //  0 function code
        &[0x00, 0x12], //  2 rule-array length 18 = 2 + 2 keywords
        b"RETAIN  ",   //  4 keyword 1
        b"KM-ONLY ",   // 12 keyword 2
        &[0x00, 0x04], // 20 verb-data length 4
        &[0x0C, 0x00], // 22 verb data: 3072
        &[0x00, 0x12], // 24 key-block length 18 = 2 + 10 + 6
        &[0x00, 0x0A], // 26 entry 1 length 10
        &[0x00, 0x01], // 28 entry 1 flag
        &[0xAA; 6],    // 30 entry 1 token
        &[0x00, 0x06], // 36 entry 2 length 6
        &[0x80, 0x00], // 38 entry 2 flag
        &[0x01, 0x02], // 40 entry 2 token
    ]);
    let p = ParmBlock::decode(&golden).unwrap();
    assert_eq!(p.function, FunctionCode::GenerateRetained);
    assert_eq!(p.rules.len(), 2);
    assert_eq!(p.rules[0].bytes(), *b"RETAIN  ");
    assert_eq!(p.rules[0].text(), "RETAIN");
    assert_eq!(p.rules[1], Keyword::new("KM-ONLY"));
    assert_eq!(p.verb_data, vec![0x0C, 0x00]);
    assert_eq!(
        p.keys,
        vec![
            KeyEntry {
                flag: 1,
                token: vec![0xAA; 6]
            },
            KeyEntry {
                flag: 0x8000,
                token: vec![0x01, 0x02]
            },
        ]
    );
    assert_eq!(p.encode().unwrap(), golden);
}

#[test]
fn parameter_block_with_empty_entry_token() {
    let golden = cat(&[
        b"kl",         // 0 function code
        &[0x00, 0x02], // 2 rule-array length 2
        &[0x00, 0x02], // 4 verb-data length 2
        &[0x00, 0x06], // 6 key-block length 6
        &[0x00, 0x04], // 8 entry length 4 (no token)
        &[0x00, 0x07], // 10 entry flag
    ]);
    let p = ParmBlock::decode(&golden).unwrap();
    assert_eq!(p.function, FunctionCode::ListRetained);
    assert!(p.rules.is_empty() && p.verb_data.is_empty());
    assert_eq!(
        p.keys,
        vec![KeyEntry {
            flag: 7,
            token: vec![]
        }]
    );
    assert_eq!(p.encode().unwrap(), golden);
}

// ---------------------------------------------------------------------------------------
// FQ
// ---------------------------------------------------------------------------------------

#[test]
fn fq_statccae() {
    let parm = cat(&[
        b"FQ",                         //  0 function code
        &rules(0x000A, &["STATCCAE"]), //  2 rule array, length 10
        &[0x00, 0x02],                 // 12 verb-data length 2
        &[0x00, 0x02],                 // 14 key-block length 2
    ]);
    let msg = cat(&[&cprbx(0x10, RPL_MSGBL, 0, 0, 0, DOMAIN), &parm]);
    assert_eq!(msg.len(), 236);
    let req = golden_request(&msg);
    assert_eq!(req, Request::Query(Query::StatCcae));
    assert_eq!(req.function(), FunctionCode::FacilityQuery);

    let parm = cat(&[
        b"FQ",         //  0 function code
        &[0x00, 0x4A], //  2 rule-array length 74 = 2 + 9 elements
        b"3       ",   //  4 element 1: SYM NEW full
        b"2       ",   // 12 element 2: SYM CURRENT valid
        b"1       ",   // 20 element 3: SYM OLD invalid
        b"1       ",   // 28 element 4
        b"2       ",   // 36 element 5
        b"1       ",   // 44 element 6
        b"2       ",   // 52 element 7: ASYM NEW partial
        b"2       ",   // 60 element 8: ASYM CURRENT valid
        b"2       ",   // 68 element 9: ASYM OLD valid
        &[0x00, 0x02], // 76 verb-data length 2
        &[0x00, 0x02], // 78 key-block length 2
    ]);
    let r = golden_reply(&reply(0x50, 0, 0, &parm), &req);
    assert_eq!((r.return_code, r.reason_code), (0, 0));
    let ReplyBody::Elements(e) = &r.body else {
        panic!("{:?}", r.body)
    };
    let e: Vec<String> = e.iter().map(text).collect();
    assert_eq!(e, ["3", "2", "1", "1", "2", "1", "2", "2", "2"]);
}

#[test]
fn fq_stateid() {
    let parm = cat(&[
        b"FQ",                        //  0 function code
        &rules(0x000A, &["STATEID"]), //  2 rule array, length 10
        &[0x00, 0x02],                // 12 verb-data length 2
        &[0x00, 0x02],                // 14 key-block length 2
    ]);
    let req = golden_request(&request(0x10, &parm));
    assert_eq!(req, Request::Query(Query::StatEid));

    let parm = cat(&[
        b"FQ",         //  0 function code
        &[0x00, 0x12], //  2 rule-array length 18 = 2 + 2 elements
        b"SOURCENO",   //  4 element 1: EID bytes 0-7
        b"DE01    ",   // 12 element 2: EID bytes 8-15
        &[0x00, 0x02], // 20 verb-data length 2
        &[0x00, 0x02], // 22 key-block length 2
    ]);
    let r = golden_reply(&reply(0x18, 0, 0, &parm), &req);
    let ReplyBody::Elements(e) = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(e.len(), 2);
    let eid: Vec<u8> = e.iter().flat_map(|k| k.bytes()).collect();
    assert_eq!(&eid[..], b"SOURCENODE01    ");
}

// ---------------------------------------------------------------------------------------
// vp, ei, mn, st
// ---------------------------------------------------------------------------------------

#[test]
fn vp_patterns() {
    let req = golden_request(&request(0x08, &bare_parm(b"vp")));
    assert_eq!(req, Request::Patterns);

    let sym_cur = [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17];
    let asym_new: Vec<u8> = (0x20..0x30).collect();
    let aes_old = [0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37];
    let data: &[&[u8]] = &[
        b"5A2B0007",    //  6 serial
        &[0x03],        // 14 count 3
        &[1, 2, 1, 8],  // 15 SYM, CURRENT, SHA-1 method, length 8
        &sym_cur,       // 19 pattern
        &[2, 1, 2, 16], // 27 ASYM, NEW, MDC-4, length 16
        &asym_new,      // 31 pattern
        &[3, 3, 3, 8],  // 47 AES, OLD, SHA-256 method, length 8
        &aes_old,       // 51 pattern
    ];
    let parm = data_only(b"vp", 55, data);
    let r = golden_reply(&reply(0x3D, 0, 0, &parm), &req);
    let ReplyBody::Patterns { serial, entries } = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(serial.as_str(), "5A2B0007");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].kind, MasterKeyKind::Sym);
    assert_eq!(entries[0].register, Register::Current);
    assert_eq!(entries[0].pattern.algorithm(), PatternAlgorithm::Sha1Method);
    assert_eq!(entries[0].pattern.bytes(), sym_cur);
    assert_eq!(entries[1].kind, MasterKeyKind::Asym);
    assert_eq!(entries[1].register, Register::New);
    assert_eq!(entries[1].pattern.algorithm(), PatternAlgorithm::Mdc4);
    assert_eq!(entries[1].pattern.bytes(), &asym_new[..]);
    assert_eq!(entries[2].kind, MasterKeyKind::Aes);
    assert_eq!(entries[2].register, Register::Old);
    assert_eq!(
        entries[2].pattern.algorithm(),
        PatternAlgorithm::Sha256Method
    );
    assert_eq!(entries[2].pattern.bytes(), aes_old);
}

#[test]
fn vp_patterns_short_serial_and_no_entries() {
    let data: &[&[u8]] = &[
        b"42      ", //  6 serial "42", blank padded
        &[0x00],     // 14 count 0
    ];
    let parm = data_only(b"vp", 11, data);
    let r = golden_reply(&reply(0x11, 0, 0, &parm), &Request::Patterns);
    let ReplyBody::Patterns { serial, entries } = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(serial.as_str(), "42");
    assert_eq!(serial.to_wire(), *b"42      ");
    assert!(entries.is_empty());
}

#[test]
fn ei_set_eid() {
    //  6 EID, blank padded
    let parm = data_only(b"ei", 18, &[b"TARGETNODE02    "]);
    let req = golden_request(&request(0x18, &parm));
    let Request::SetEid(eid) = &req else {
        panic!("{req:?}")
    };
    assert_eq!(eid.as_str(), "TARGETNODE02");
    assert_eq!(eid.to_wire(), *b"TARGETNODE02    ");
    check_empty_reply(b"ei", &req);
}

#[test]
fn mn_set_mofn() {
    let parm = cat(&[
        b"mn",                         //  0 function code
        &rules(0x000A, &["SET-MOFN"]), //  2 rule array, length 10
        &[0x00, 0x04],                 // 12 verb-data length 4
        &[0x03, 0x05],                 // 14 m 3, n 5
        &EMPTY,                        // 16 key-block length 2
    ]);
    let req = golden_request(&request(0x12, &parm));
    assert_eq!(req, Request::SetMofN { m: 3, n: 5 });
    check_empty_reply(b"mn", &req);
}

#[test]
fn st_share_tables() {
    let req = golden_request(&request(0x08, &bare_parm(b"st")));
    assert_eq!(req, Request::ShareTables);

    let data: &[&[u8]] = &[
        &[0x03, 0x05, 0x02], //  6 m 3, n 5, count 2
        &[0x01],             //  9 kind SYM
        b"342110000000000",  // 10 generation digits
        b"000000000000000",  // 25 reception digits
        &[0x02],             // 40 kind ASYM
        b"111110000000000",  // 41 generation digits
        b"314110000000000",  // 56 reception digits
    ];
    let parm = data_only(b"st", 67, data);
    let r = golden_reply(&reply(0x49, 0, 0, &parm), &req);
    let ReplyBody::ShareTables { m_of_n, tables } = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(*m_of_n, Some((3, 5)));
    assert_eq!(tables.len(), 2);
    use GenerationState as G;
    use ReceptionState as R;
    assert_eq!(tables[0].kind, CloneableKind::Sym);
    assert_eq!(
        tables[0].generation[..5],
        [
            G::DistributedOnce,
            G::DistributedMore,
            G::Generated,
            G::Can,
            G::Can
        ]
    );
    assert!(tables[0].generation[5..].iter().all(|g| *g == G::Cannot));
    assert!(tables[0].reception.iter().all(|s| *s == R::Cannot));
    assert_eq!(tables[1].kind, CloneableKind::Asym);
    assert!(tables[1].generation[..5].iter().all(|g| *g == G::Can));
    assert!(tables[1].generation[5..].iter().all(|g| *g == G::Cannot));
    assert_eq!(
        tables[1].reception[..5],
        [R::Received, R::Can, R::ReceivedMore, R::Can, R::Can]
    );
    assert!(tables[1].reception[5..].iter().all(|s| *s == R::Cannot));
}

#[test]
fn st_share_tables_unset() {
    // 6 m 0, n 0 (unset), count 0
    let parm = data_only(b"st", 5, &[&[0x00, 0x00, 0x00]]);
    let r = golden_reply(&reply(0x0B, 0, 0, &parm), &Request::ShareTables);
    assert_eq!(
        r.body,
        ReplyBody::ShareTables {
            m_of_n: None,
            tables: vec![]
        }
    );
}

// ---------------------------------------------------------------------------------------
// kg, kp, kl, kd
// ---------------------------------------------------------------------------------------

fn public_key_reply(code: &[u8; 2]) -> Vec<u8> {
    let parm = cat(&[
        code,                      //  0 function code
        &EMPTY,                    //  2 rule-array length 2
        &EMPTY,                    //  4 verb-data length 2
        &[0x00, 0x12],             //  6 key-block length 18
        &entry(0x0010, &PK_TOKEN), //  8 entry, length 16: public-key token (12 bytes)
    ]);
    reply(0x18, 0, 0, &parm)
}

/// Check the golden reply to `request`, which carries `code`: its body is [`PK_TOKEN`].
fn check_public_key_reply(code: &[u8; 2], request: &Request) {
    let r = golden_reply(&public_key_reply(code), request);
    let ReplyBody::PublicKey(t) = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(t.as_bytes(), PK_TOKEN);
}

/// Decode a golden request of `code` with no rules or verb data and one key-block entry,
/// the label `name` (kp, kd).
fn one_key_request(code: &[u8; 2], name: &str) -> Request {
    let parm = keys_only(code, &keys(0x0046, &[entry(0x0044, &label(name))]));
    golden_request(&request(0x4C, &parm))
}

/// Decode a golden kg request: it generates `label` with `usage`, `clone` and `bits`.
fn check_generate(msg: &[u8], label: &str, usage: KeyUsage, clone: bool, bits: u16) -> Request {
    let req = golden_request(msg);
    let Request::GenerateRetained {
        label: l,
        usage: u,
        clone: c,
        bits: b,
    } = &req
    else {
        panic!("{req:?}")
    };
    assert_eq!(l.as_str(), label);
    assert_eq!(*u, usage);
    assert_eq!(*c, clone);
    assert_eq!(*b, bits);
    req
}

#[test]
fn kg_generate_retained() {
    let parm = cat(&[
        b"kg",                                            //   0 function code
        &rules(0x001A, &["RETAIN", "SIG-ONLY", "CLONE"]), //   2 rule array, length 26
        &[0x00, 0x04],                                    //  28 verb-data length 4
        &[0x08, 0x00],                                    //  30 modulus bits 2048
        &[0x00, 0x46],                                    //  32 key-block length 70
        &entry(0x0044, &label("MKCLONE.SA.KEY")),         //  34 entry, length 68: label (64)
    ]);
    let req = check_generate(
        &request(0x66, &parm),
        "MKCLONE.SA.KEY",
        KeyUsage::SignatureOnly,
        true,
        2048,
    );

    check_public_key_reply(b"kg", &req);
}

#[test]
fn kg_generate_retained_km_only_without_clone() {
    let parm = cat(&[
        &b"kg"[..],                                     // 0 function code
        &rules(0x0012, &["RETAIN", "KM-ONLY"]),         // 2 rule array
        &verb(0x0004, &[0x10, 0x00]),                   // 20 modulus bits 4096
        &keys(0x0046, &[entry(0x0044, &label("CSR"))]), // 24 key block
    ]);
    check_generate(
        &request(0x5E, &parm),
        "CSR",
        KeyUsage::KeyManagementOnly,
        false,
        4096,
    );
}

#[test]
fn kp_retained_public_key() {
    let req = one_key_request(b"kp", "MKCLONE.CSS.KEY");
    let Request::RetainedPublicKey { label } = &req else {
        panic!("{req:?}")
    };
    assert_eq!(label.as_str(), "MKCLONE.CSS.KEY");

    check_public_key_reply(b"kp", &req);
}

#[test]
fn kl_list_retained() {
    let req = golden_request(&request(0x08, &bare_parm(b"kl")));
    assert_eq!(req, Request::ListRetained);

    let data: &[&[u8]] = &[
        &[0x00, 0x02],            //   6 count 2
        &label("MKCLONE.SA.KEY"), //   8 label 1
        &[0x01],                  //  72 usage SIG-ONLY
        &[0x00],                  //  73 clone no
        &[0x08, 0x00],            //  74 bits 2048
        &label("MKCLONE.CSR"),    //  76 label 2
        &[0x02],                  // 140 usage KM-ONLY
        &[0x01],                  // 141 clone yes
        &[0x0C, 0x00],            // 142 bits 3072
    ];
    let parm = data_only(b"kl", 140, data);
    let r = golden_reply(&reply(0x92, 0, 0, &parm), &req);
    let ReplyBody::RetainedKeys(list) = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].label.as_str(), "MKCLONE.SA.KEY");
    assert_eq!(list[0].usage, KeyUsage::SignatureOnly);
    assert!(!list[0].clone);
    assert_eq!(list[0].bits, 2048);
    assert_eq!(list[1].label.as_str(), "MKCLONE.CSR");
    assert_eq!(list[1].usage, KeyUsage::KeyManagementOnly);
    assert!(list[1].clone);
    assert_eq!(list[1].bits, 3072);
}

#[test]
fn kl_list_retained_empty() {
    // 6 count 0
    let parm = data_only(b"kl", 4, &[&[0x00, 0x00]]);
    let r = golden_reply(&reply(0x0A, 0, 0, &parm), &Request::ListRetained);
    assert_eq!(r.body, ReplyBody::RetainedKeys(vec![]));
}

#[test]
fn kd_delete_retained() {
    let req = one_key_request(b"kd", "#OLD.$KEY.@1");
    let Request::DeleteRetained { label } = &req else {
        panic!("{req:?}")
    };
    assert_eq!(label.as_str(), "#OLD.$KEY.@1");
    check_empty_reply(b"kd", &req);
}

// ---------------------------------------------------------------------------------------
// hr, pr, rg, ce
// ---------------------------------------------------------------------------------------

/// Decode a golden hr request: it registers `hash` (`algorithm`) under `name`, `clone`.
fn check_register_hash(
    msg: &[u8],
    name: &str,
    algorithm: HashAlgorithm,
    hash: &[u8],
    clone: bool,
) -> Request {
    let req = golden_request(msg);
    let Request::RegisterHash {
        name: n,
        hash: h,
        clone: c,
    } = &req
    else {
        panic!("{req:?}")
    };
    assert_eq!(n.as_str(), name);
    assert_eq!(h.algorithm(), algorithm);
    assert_eq!(h.bytes(), hash);
    assert_eq!(*c, clone);
    req
}

#[test]
fn hr_register_hash_sha256_clone() {
    let parm = cat(&[
        b"hr",                                 //   0 function code
        &rules(0x0012, &["SHA-256", "CLONE"]), //   2 rule array, length 18
        &[0x00, 0x22],                         //  20 verb-data length 34
        &hash32(),                             //  22 hash (32)
        &[0x00, 0x46],                         //  54 key-block length 70
        &entry(0x0044, &label("TARGET.CSR")),  //  56 entry, length 68: name
    ]);
    let req = check_register_hash(
        &request(0x7C, &parm),
        "TARGET.CSR",
        HashAlgorithm::Sha256,
        &hash32(),
        true,
    );
    check_empty_reply(b"hr", &req);
}

#[test]
fn hr_register_hash_sha1() {
    let parm = cat(&[
        &b"hr"[..],                                        //  0 function code
        &rules(0x000A, &["SHA-1"]),                        //  2 rule array
        &verb(0x0016, &hash20()),                          // 12 hash (20)
        &keys(0x0046, &[entry(0x0044, &label("SA.KEY"))]), // 34 key block
    ]);
    check_register_hash(
        &request(0x68, &parm),
        "SA.KEY",
        HashAlgorithm::Sha1,
        &hash20(),
        false,
    );
}

fn pr_request() -> Vec<u8> {
    let parm = cat(&[
        b"pr",                                //  0 function code
        &rules(0x000A, &["CLONE"]),           //  2 rule array, length 10
        &EMPTY,                               // 12 verb-data length 2
        &[0x00, 0x52],                        // 14 key-block length 82 = 2 + 68 + 12
        &entry(0x0044, &label("TARGET.CSR")), // 16 entry 1, length 68: name
        &entry(0x000C, &CERT),                // 84 entry 2, length 12: certificate section (8)
    ]);
    request(0x60, &parm)
}

#[test]
fn pr_register_key() {
    let req = golden_request(&pr_request());
    let Request::RegisterKey {
        name,
        certificate,
        clone,
    } = &req
    else {
        panic!("{req:?}")
    };
    assert_eq!(name.as_str(), "TARGET.CSR");
    assert_eq!(certificate.as_bytes(), CERT);
    assert!(*clone);
    check_empty_reply(b"pr", &req);
}

#[test]
fn failure_reply_8_1033_is_empty() {
    let req = golden_request(&pr_request());
    let msg = cat(&[
        &[0x00, 0xDC],             //   0 cprb_len
        &[0x02, 0x00, 0x00, 0x00], //   2 cprb_ver_id, ctfm, pad
        b"T2",                     //   6 func_id
        &[0x00; 16],               //   8 flags, req_parml, req_datal, rpl_msgbl
        &[0x00, 0x00, 0x00, 0x08], //  24 rpld_parml 8
        &[0x00; 116],              //  28 .. 144
        &[0x00, 0x08],             // 144 ccp_rtcode 8
        &[0x04, 0x09],             // 146 ccp_rscode 1033
        &[0x00; 22],               // 148 .. 170
        &[0x00, 0x0D],             // 170 domain
        &[0x00; 48],               // 172 reserved and pad
        b"pr",                     // 220 function code
        &[0x00, 0x02],             // 222 rule-array length 2
        &[0x00, 0x02],             // 224 verb-data length 2
        &[0x00, 0x02],             // 226 key-block length 2
    ]);
    assert_eq!(msg.len(), 228);
    let r = golden_reply(&msg, &req);
    assert_eq!(r.return_code, 8);
    assert_eq!(r.reason_code, 1033);
    assert_eq!(r.body, ReplyBody::Empty);
    assert_eq!(r, Reply::code(8, 1033));
}

#[test]
fn failure_reply_carries_no_body_even_for_a_verb_with_one() {
    // Return code 12 on a vp request: the body is Empty although vp's success reply has
    // verb data.
    check_bodyless_reply(b"vp", 12, 0x0123, &Request::Patterns);
}

#[test]
fn warning_reply_without_parameters_is_empty() {
    check_bodyless_reply(b"st", 4, 0x0401, &Request::ShareTables);
}

#[test]
fn rg_list_registrations() {
    let req = golden_request(&request(0x08, &bare_parm(b"rg")));
    assert_eq!(req, Request::ListRegistrations);

    let parm = cat(&[
        b"rg",                 //   0 function code
        &EMPTY,                //   2 rule-array length 2
        &[0x00, 0xC0],         //   4 verb-data length 192 = 2 + 2 + 100 + 88
        &[0x00, 0x02],         //   6 count 2
        &label("SOURCE.CSS"),  //   8 name 1
        &[0x01],               //  72 clone yes
        &[0x02],               //  73 hash algorithm SHA-256
        &[0x20],               //  74 hash length 32
        &hash32(),             //  75 hash
        &[0x01],               // 107 key present
        &label("SA"),          // 108 name 2
        &[0x00],               // 172 clone no
        &[0x01],               // 173 hash algorithm SHA-1
        &[0x14],               // 174 hash length 20
        &hash20(),             // 175 hash
        &[0x00],               // 195 key absent
        &[0x00, 0x0E],         // 196 key-block length 14
        &entry(0x000C, &CERT), // 198 entry, length 12: certificate of entry 1
    ]);
    let r = golden_reply(&reply(0xD2, 0, 0, &parm), &req);
    let ReplyBody::Registrations(list) = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].name.as_str(), "SOURCE.CSS");
    assert!(list[0].clone);
    assert_eq!(list[0].hash.algorithm(), HashAlgorithm::Sha256);
    assert_eq!(list[0].hash.bytes(), &hash32()[..]);
    assert_eq!(list[0].key.as_ref().map(|c| c.as_bytes()), Some(&CERT[..]));
    assert_eq!(list[1].name.as_str(), "SA");
    assert!(!list[1].clone);
    assert_eq!(list[1].hash.algorithm(), HashAlgorithm::Sha1);
    assert_eq!(list[1].hash.bytes(), &hash20()[..]);
    assert!(list[1].key.is_none());
}

#[test]
fn rg_certificates_follow_the_entries_with_a_key_in_order() {
    // Three entries: without, with (CERT), with (second certificate).
    let cert2 = [0x40, 0x01, 0x02, 0x03, 0x04];
    let parm = cat(&[
        &b"rg"[..], // 0 function code
        &EMPTY,     // 2 rule-array length 2
        &verb(
            0x010C, // 268 = 2 + 2 + 3 * 88
            &cat(&[
                &[0x00, 0x03],
                &label("A"),
                &[0x00, 0x01, 0x14],
                &hash20(),
                &[0x00],
                &label("B"),
                &[0x00, 0x01, 0x14],
                &hash20(),
                &[0x01],
                &label("C"),
                &[0x01, 0x01, 0x14],
                &hash20(),
                &[0x01],
            ]),
        ),
        &keys(0x0017, &[entry(0x000C, &CERT), entry(0x0009, &cert2)]), // 23 = 2 + 12 + 9
    ]);
    let r = golden_reply(&reply(0x0127, 0, 0, &parm), &Request::ListRegistrations);
    let ReplyBody::Registrations(list) = &r.body else {
        panic!("{:?}", r.body)
    };
    let names: Vec<&str> = list.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["A", "B", "C"]);
    assert!(list[0].key.is_none());
    assert_eq!(list[1].key.as_ref().unwrap().as_bytes(), CERT);
    assert_eq!(list[2].key.as_ref().unwrap().as_bytes(), cert2);
    assert!(list[2].clone && !list[1].clone);
}

/// Decode a golden ce request: `signer` certifies [`PK_TOKEN`] for `eid` and `serial`.
fn check_certify(msg: &[u8], signer: &str, eid: Option<&str>, serial: Option<&str>) -> Request {
    let req = golden_request(msg);
    let Request::Certify {
        signer: s,
        subject,
        eid: e,
        serial: n,
    } = &req
    else {
        panic!("{req:?}")
    };
    assert_eq!(s.as_str(), signer);
    assert_eq!(subject.as_bytes(), PK_TOKEN);
    assert_eq!(e.as_ref().map(|e| e.as_str()), eid);
    assert_eq!(n.as_ref().map(|s| s.as_str()), serial);
    req
}

#[test]
fn ce_certify_with_eid_and_serial() {
    let parm = cat(&[
        b"ce",                                    //   0 function code
        &EMPTY,                                   //   2 rule-array length 2
        &[0x00, 0x1B],                            //   4 verb-data length 27
        &[0x03],                                  //   6 flags: EID and serial present
        &eid16("TARGETNODE02"),                   //   7 EID
        b"93AABC12",                              //  23 serial
        &[0x00, 0x56],                            //  31 key-block length 86 = 2 + 68 + 16
        &entry(0x0044, &label("MKCLONE.SA.KEY")), //  33 entry 1, length 68: signer
        &entry(0x0010, &PK_TOKEN),                // 101 entry 2, length 16: subject token (12)
    ]);
    let req = check_certify(
        &request(0x75, &parm),
        "MKCLONE.SA.KEY",
        Some("TARGETNODE02"),
        Some("93AABC12"),
    );

    let parm = cat(&[
        b"ce",                 //  0 function code
        &EMPTY,                //  2 rule-array length 2
        &EMPTY,                //  4 verb-data length 2
        &[0x00, 0x0E],         //  6 key-block length 14
        &entry(0x000C, &CERT), //  8 entry, length 12: certificate section
    ]);
    let r = golden_reply(&reply(0x14, 0, 0, &parm), &req);
    let ReplyBody::Certificate(c) = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(c.as_bytes(), CERT);
}

#[test]
fn ce_certify_without_eid_or_serial() {
    // Flags 0, EID and serial zero.
    check_certify(&request(0x75, &ce_parm(&[0x00; 25])), "SA", None, None);
}

#[test]
fn ce_certify_with_serial_only() {
    let data = cat(&[&[0x02], &[0x00; 16], b"S1      "]);
    let req = golden_request(&request(0x75, &ce_parm(&data)));
    let Request::Certify { eid, serial, .. } = &req else {
        panic!("{req:?}")
    };
    assert!(eid.is_none());
    assert_eq!(serial.as_ref().map(|s| s.as_str()), Some("S1"));
}

// ---------------------------------------------------------------------------------------
// md, mp
// ---------------------------------------------------------------------------------------

#[test]
fn md_obtain() {
    let parm = cat(&[
        b"md",                                     //   0 function code
        &rules(0x0012, &["OBTAIN", "SYM-MK"]),     //   2 rule array, length 18
        &[0x00, 0x06],                             //  20 verb-data length 6
        &[0x00, 0x00, 0x00, 0x02],                 //  22 share index 2
        &[0x00, 0x96],                             //  26 key-block length 150 = 2 + 68 + 68 + 12
        &entry(0x0044, &label("MKCLONE.CSS.KEY")), //  28 entry 1, length 68: CSS label
        &entry(0x0044, &label("MKCLONE.SA.KEY")),  //  96 entry 2, length 68: SA name
        &entry(0x000C, &CERT), // 164 entry 3, length 12: CSR certificate section
    ]);
    let req = golden_request(&request(0xB0, &parm));
    let Request::Obtain(o) = &req else {
        panic!("{req:?}")
    };
    assert_eq!(o.kind, CloneableKind::Sym);
    assert_eq!(o.index, 2);
    assert_eq!(o.css_label.as_str(), "MKCLONE.CSS.KEY");
    assert_eq!(o.sa_name.as_str(), "MKCLONE.SA.KEY");
    assert_eq!(o.csr_certificate.as_bytes(), CERT);

    let parm = cat(&[
        b"md",                  //  0 function code
        &EMPTY,                 //  2 rule-array length 2
        &EMPTY,                 //  4 verb-data length 2
        &[0x00, 0x0E],          //  6 key-block length 14
        &entry(0x000C, &SHARE), //  8 entry, length 12: sealed share (8)
    ]);
    let r = golden_reply(&reply(0x14, 0, 0, &parm), &req);
    let ReplyBody::Share(s) = &r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(s.as_bytes(), SHARE);
}

fn install_request() -> Vec<u8> {
    let parm = cat(&[
        b"md",                                     //   0 function code
        &rules(0x0012, &["INSTALL", "ASYM-MK"]),   //   2 rule array, length 18
        &EMPTY,                                    //  20 verb-data length 2
        &[0x00, 0xA2], //  22 key-block length 162 = 2 + 68 + 68 + 12 + 12
        &entry(0x0044, &label("MKCLONE.CSR.KEY")), //  24 entry 1, length 68: CSR label
        &entry(0x0044, &label("MKCLONE.SA.KEY")), //  92 entry 2, length 68: SA name
        &entry(0x000C, &CERT), // 160 entry 3, length 12: CSS certificate section
        &entry(0x000C, &SHARE), // 172 entry 4, length 12: sealed share
    ]);
    request(0xB8, &parm)
}

fn install_reply(rt: u16, rs: u16, received: u8, m: u8) -> Vec<u8> {
    let data: &[&[u8]] = &[
        &[received], // 6 shares received
        &[m],        // 7 m
    ];
    let parm = data_only(b"md", 4, data);
    reply(0x0A, rt, rs, &parm)
}

#[test]
fn md_install() {
    let req = golden_request(&install_request());
    let Request::Install(i) = &req else {
        panic!("{req:?}")
    };
    assert_eq!(i.kind, CloneableKind::Asym);
    assert_eq!(i.csr_label.as_str(), "MKCLONE.CSR.KEY");
    assert_eq!(i.sa_name.as_str(), "MKCLONE.SA.KEY");
    assert_eq!(i.css_certificate.as_bytes(), CERT);
    assert_eq!(i.share.as_bytes(), SHARE);

    let r = golden_reply(&install_reply(0, 0, 1, 3), &req);
    assert_eq!((r.return_code, r.reason_code), (0, 0));
    assert_eq!(r.body, ReplyBody::InstallProgress { received: 1, m: 3 });
}

#[test]
fn md_install_sufficient_shares_4_1024() {
    let req = golden_request(&install_request());
    let r = golden_reply(&install_reply(4, 0x0400, 3, 3), &req);
    assert_eq!(r.return_code, 4);
    assert_eq!(r.reason_code, 1024);
    assert_eq!(r.body, ReplyBody::InstallProgress { received: 3, m: 3 });
}

fn check_mp(action_kw: &str, kind_kw: &str, action: MkAction, kind: CloneableKind) {
    let parm = cat(&[
        b"mp",               //  0 function code
        &[0x00, 0x12],       //  2 rule-array length 18
        &keyword(action_kw), //  4 action
        &keyword(kind_kw),   // 12 register
        &EMPTY,              // 20 verb-data length 2
        &EMPTY,              // 22 key-block length 2
    ]);
    let req = golden_request(&request(0x18, &parm));
    let Request::MasterKey { action: a, kind: k } = &req else {
        panic!("{req:?}")
    };
    assert_eq!(*a, action);
    assert_eq!(*k, kind);
    check_empty_reply(b"mp", &req);
}

#[test]
fn mp_set() {
    check_mp("SET", "SYM-MK", MkAction::Set, CloneableKind::Sym);
    check_mp("SET", "ASYM-MK", MkAction::Set, CloneableKind::Asym);
}

#[test]
fn mp_clear() {
    check_mp("CLEAR", "ASYM-MK", MkAction::Clear, CloneableKind::Asym);
}

#[test]
fn mp_random() {
    check_mp("RANDOM", "SYM-MK", MkAction::Random, CloneableKind::Sym);
}
