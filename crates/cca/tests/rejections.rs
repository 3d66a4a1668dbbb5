//! The decoders refuse malformed messages, each with the right `CodecError` variant:
//! trailing bytes, a wrong cprb_len / version / func_id, non-zero reserved bytes, a
//! parameter length that disagrees with the bytes present, a reply to another function,
//! an unknown function code, and truncation. Messages are assembled by hand (`common`).
//!
//! Requests (mkclone's own, read by the simulator) are held to one encoding per meaning.
//! Replies are read as the Linux kernel reads them and no stricter
//! (drivers/s390/crypto/zcrypt_msgtype6.c `convert_response_xcrb`: only cprb_ver_id X'02';
//! zcrypt_ccamisc.c `cca_query_crypto_facility`: the rule-array and verb-data lengths), so
//! the reply cases below check what is accepted as much as what is refused.

mod common;

use common::*;
use mkclone_cca::CodecError;
use mkclone_cca::cprb::{CPRBX_LEN, Cprbx};
use mkclone_cca::parm::ParmBlock;
use mkclone_cca::verbs::{Query, Reply, Request};

/// A valid mn request (SET-MOFN 3 of 5): 18-byte parameter block.
fn mn_parm() -> Vec<u8> {
    cat(&[
        b"mn",         //  0 function code
        &[0x00, 0x0A], //  2 rule-array length 10
        b"SET-MOFN",   //  4 keyword
        &[0x00, 0x04], // 12 verb-data length 4
        &[0x03, 0x05], // 14 m, n
        &EMPTY,        // 16 key-block length 2
    ])
}

fn mn_request() -> Vec<u8> {
    request(0x12, &mn_parm())
}

/// A valid vp reply: serial "SER1", no patterns.
fn vp_reply() -> Vec<u8> {
    let parm = cat(&[
        b"vp",         //  0 function code
        &EMPTY,        //  2 rule-array length 2
        &[0x00, 0x0B], //  4 verb-data length 11
        b"SER1    ",   //  6 serial
        &[0x00],       // 14 count 0
        &EMPTY,        // 15 key-block length 2
    ]);
    reply(0x11, 0, 0, &parm)
}

#[track_caller]
fn assert_field(result: Result<impl std::fmt::Debug, CodecError>, what: &str, field: &str) {
    match result {
        Err(CodecError::Field {
            what: w, field: f, ..
        }) if w == what && f == field => {}
        other => panic!("expected Field {{ what: {what:?}, field: {field:?} }}, got {other:?}"),
    }
}

#[track_caller]
fn assert_trailing(result: Result<impl std::fmt::Debug, CodecError>, what: &str, count: usize) {
    match result {
        Err(CodecError::Trailing { what: w, count: c }) if w == what && c == count => {}
        other => panic!("expected Trailing {{ what: {what:?}, count: {count} }}, got {other:?}"),
    }
}

/// Refused with some `Field` error; otherwise the panic says `accepted` was accepted.
#[track_caller]
fn assert_field_refused(result: Result<impl std::fmt::Debug, CodecError>, accepted: &str) {
    match result {
        Err(CodecError::Field { .. }) => {}
        other => panic!("accepted {accepted}: {other:?}"),
    }
}

#[track_caller]
fn assert_truncated(result: Result<impl std::fmt::Debug, CodecError>, what: &str) {
    match result {
        Err(CodecError::Truncated { what: w, .. }) if w == what => {}
        other => panic!("expected Truncated {{ what: {what:?} }}, got {other:?}"),
    }
}

/// The request a hand-made message decodes to.
fn decoded(msg: &[u8]) -> Request {
    Request::from_message(msg).unwrap().1
}

/// Sanity: the base vectors of this file are accepted.
#[test]
fn base_vectors_decode() {
    let (h, req) = Request::from_message(&mn_request()).unwrap();
    assert_eq!(req, Request::SetMofN { m: 3, n: 5 });
    assert_eq!(h.domain, DOMAIN);
    assert!(Reply::from_message(&vp_reply(), &Request::Patterns).is_ok());
}

// ---------------------------------------------------------------------------------------
// Trailing bytes
// ---------------------------------------------------------------------------------------

#[test]
fn parameter_block_rejects_trailing_bytes() {
    for extra in [&[0x00][..], &[0x40], &[0x00, 0x02], &[0xFF; 7]] {
        let parm = cat(&[&mn_parm(), extra]);
        assert_trailing(ParmBlock::decode(&parm), "parameter block", extra.len());

        // Behind a CPRBX whose req_parml counts them, the request decoder says the same.
        let msg = request(parm.len() as u32, &parm);
        assert_trailing(Request::from_message(&msg), "parameter block", extra.len());
    }
}

#[test]
fn reply_accepts_trailing_bytes_after_the_parameter_block_as_the_kernel_does() {
    // Inside rpld_parml, after the key block: not read, as the kernel does not read them.
    let expected = Reply::from_message(&vp_reply(), &Request::Patterns).unwrap();
    let msg = vp_reply();
    for extra in [&[0x00, 0x00][..], &[0xFF], &[0xDE, 0xAD, 0xBE, 0xEF, 0x01]] {
        let parm = cat(&[&msg[CPRBX_LEN..], extra]);
        let msg = reply(parm.len() as u32, 0, 0, &parm);
        assert_eq!(
            Reply::from_message(&msg, &Request::Patterns).unwrap(),
            expected
        );
        // After rpld_parml (what a reply buffer holds beyond the reply): ignored too.
        let msg = cat(&[&vp_reply(), extra]);
        assert_eq!(
            Reply::from_message(&msg, &Request::Patterns).unwrap(),
            expected
        );
    }
}

#[test]
fn reply_without_a_key_block_is_read_as_one_with_an_empty_key_block() {
    let expected = Reply::from_message(&vp_reply(), &Request::Patterns).unwrap();
    let msg = vp_reply();
    // The last two bytes are the key-block length X'0002'.
    let parm = &msg[CPRBX_LEN..msg.len() - 2];
    let msg = reply(parm.len() as u32, 0, 0, parm);
    assert_eq!(
        Reply::from_message(&msg, &Request::Patterns).unwrap(),
        expected
    );
}

#[test]
fn bytes_beyond_req_parml_are_refused() {
    // Appending to the message without updating req_parml: the length check fires first.
    let msg = cat(&[&mn_request(), &[0x00]]);
    assert_field(Request::from_message(&msg), "CPRBX", "req_parml");
}

#[test]
fn verb_data_rejects_trailing_bytes() {
    // (parameter block, its length, what has the trailing bytes, how many)
    let cases = [
        // mn: verb data m, n and one byte more.
        (
            cat(&[
                b"mn",               //  0 function code
                &[0x00, 0x0A],       //  2 rule-array length 10
                b"SET-MOFN",         //  4 keyword
                &[0x00, 0x05],       // 12 verb-data length 5
                &[0x03, 0x05, 0x00], // 14 m, n, extra
                &EMPTY,              // 17 key-block length 2
            ]),
            0x13,
            "SET-MOFN verb data",
            1,
        ),
        // kg: modulus bits and one byte more.
        (
            cat(&[
                &b"kg"[..],
                &rules(0x0012, &["RETAIN", "SIG-ONLY"]),
                &verb(0x0005, &[0x08, 0x00, 0x00]),
                &keys(0x0046, &[entry(0x0044, &label("SA"))]),
            ]),
            0x5F,
            "PKA_Key_Generate verb data",
            1,
        ),
        // md OBTAIN: index u32 and two bytes more.
        (
            cat(&[
                &b"md"[..],
                &rules(0x0012, &["OBTAIN", "SYM-MK"]),
                &verb(0x0008, &[0, 0, 0, 1, 0, 0]),
                &keys(
                    0x0096,
                    &[
                        entry(0x0044, &label("CSS")),
                        entry(0x0044, &label("SA")),
                        entry(0x000C, &CERT),
                    ],
                ),
            ]),
            0xB2,
            "OBTAIN verb data",
            2,
        ),
    ];
    for (parm, len, what, count) in cases {
        assert_trailing(Request::from_message(&request(len, &parm)), what, count);
    }
}

#[test]
fn reply_verb_data_rejects_trailing_bytes() {
    let install = decoded(&request(
        0xB8,
        &cat(&[
            &b"md"[..],
            &rules(0x0012, &["INSTALL", "ASYM-MK"]),
            &EMPTY,
            &keys(
                0x00A2,
                &[
                    entry(0x0044, &label("CSR")),
                    entry(0x0044, &label("SA")),
                    entry(0x000C, &CERT),
                    entry(0x000C, &SHARE),
                ],
            ),
        ]),
    ));
    // (reply, the request it answers, what has the trailing bytes, how many)
    let cases = [
        // vp reply with one byte after the (zero) entries.
        (
            reply(
                0x12,
                0,
                0,
                &cat(&[
                    &b"vp"[..],
                    &EMPTY,
                    &verb(0x000C, &cat(&[b"SER1    ", &[0x00], &[0xEE]])),
                    &EMPTY,
                ]),
            ),
            Request::Patterns,
            "patterns reply",
            1,
        ),
        // md INSTALL reply with three bytes instead of two.
        (
            reply(
                0x0B,
                0,
                0,
                &cat(&[&b"md"[..], &EMPTY, &verb(0x0005, &[1, 3, 0]), &EMPTY]),
            ),
            install,
            "INSTALL reply",
            1,
        ),
        // rg reply with a certificate that no entry claims.
        (
            reply(
                0x6E,
                0,
                0,
                &cat(&[
                    &b"rg"[..],
                    &EMPTY,
                    &verb(
                        0x005C,
                        &cat(&[
                            &[0x00, 0x01],
                            &label("A"),
                            &[0x00, 0x01, 0x14],
                            &hash20(),
                            &[0x00],
                        ]),
                    ),
                    &keys(0x000E, &[entry(0x000C, &CERT)]),
                ]),
            ),
            Request::ListRegistrations,
            "registered certificates",
            1,
        ),
    ];
    for (msg, req, what, count) in cases {
        assert_trailing(Reply::from_message(&msg, &req), what, count);
    }
}

// ---------------------------------------------------------------------------------------
// CPRBX header fields
// ---------------------------------------------------------------------------------------

/// The request decoders refuse the change with `Field { what: "CPRBX", field }`; the
/// reply decoder refuses it too when `reply_refused`, and otherwise reads the changed
/// reply exactly as the unchanged one (the kernel does not look at the field).
#[track_caller]
fn assert_header_checked(change: impl Fn(&mut Vec<u8>), field: &str, reply_refused: bool) {
    let mut req = mn_request();
    change(&mut req);
    assert_field(Cprbx::decode(&req), "CPRBX", field);
    assert_field(Request::from_message(&req), "CPRBX", field);
    let mut rpl = vp_reply();
    change(&mut rpl);
    if reply_refused {
        assert_field(Cprbx::decode_reply(&rpl), "CPRBX", field);
        assert_field(
            Reply::from_message(&rpl, &Request::Patterns),
            "CPRBX",
            field,
        );
    } else {
        assert_eq!(
            Reply::from_message(&rpl, &Request::Patterns).unwrap(),
            Reply::from_message(&vp_reply(), &Request::Patterns).unwrap()
        );
    }
}

#[test]
fn wrong_cprb_len_is_refused_in_a_request_and_ignored_in_a_reply() {
    for len in [
        [0x00, 0x00],
        [0x00, 0xDB],
        [0x00, 0xDD],
        [0xDC, 0x00],
        [0x01, 0xDC],
    ] {
        assert_header_checked(|m| m[0..2].copy_from_slice(&len), "cprb_len", false);
    }
}

#[test]
fn wrong_version_is_refused_in_requests_and_replies() {
    // The one field the kernel checks in a reply (zcrypt_msgtype6.c: cprb_ver_id 0x02).
    for ver in [0x00, 0x01, 0x03, 0x12, 0xFF] {
        assert_header_checked(|m| m[2] = ver, "cprb_ver_id", true);
    }
}

#[test]
fn func_id_other_than_t2_is_refused_in_a_request_and_ignored_in_a_reply() {
    for id in [b"T3", b"T5", b"T6", b"T7", b"t2", b"2T", b"\0\0", b"T "] {
        assert_header_checked(|m| m[6..8].copy_from_slice(id), "func_id", false);
    }
}

#[test]
fn non_zero_reserved_bytes_are_refused_in_a_request_and_ignored_in_a_reply() {
    for at in 172..184 {
        for v in [0x01, 0x80, 0xFF] {
            assert_header_checked(|m| m[at] = v, "reserved", false);
        }
    }
}

#[test]
fn reserved_check_covers_exactly_172_to_184() {
    // The domain's low byte (171) and the first pad byte (184) are not reserved: setting
    // them changes the domain or is ignored, but is not refused as "reserved".
    let mut msg = mn_request();
    msg[171] = 0x0E;
    assert_eq!(Request::from_message(&msg).unwrap().0.domain, 0x000E);
    let mut msg = mn_request();
    msg[184] = 0xFF;
    assert!(Request::from_message(&msg).is_ok());
}

#[test]
fn req_parml_that_disagrees_with_the_bytes_is_refused() {
    let good = mn_request();
    for parml in [0u32, 0x11, 0x13, 0x1200, 0x1200_0000, u32::MAX] {
        let mut msg = good.clone();
        msg[12..16].copy_from_slice(&parml.to_be_bytes());
        assert_field(Request::from_message(&msg), "CPRBX", "req_parml");
    }
    // Bytes missing from the end (req_parml still says 18).
    for cut in 1..=18 {
        assert_field(
            Request::from_message(&good[..good.len() - cut]),
            "CPRBX",
            "req_parml",
        );
    }
}

#[test]
fn rpld_parml_beyond_the_bytes_is_refused_and_short_of_them_cuts_the_reply() {
    let good = vp_reply();
    // More than is present: refused.
    for parml in [0x12u32, 0x1200, u32::MAX] {
        let mut msg = good.clone();
        msg[24..28].copy_from_slice(&parml.to_be_bytes());
        assert_field(
            Reply::from_message(&msg, &Request::Patterns),
            "reply CPRBX",
            "rpld_parml",
        );
    }
    assert_field(
        Reply::from_message(&good[..good.len() - 1], &Request::Patterns),
        "reply CPRBX",
        "rpld_parml",
    );
    // Less: only rpld_parml bytes are the reply. Cutting the key-block length leaves a
    // reply without a key block (accepted); cutting into the verb data leaves it short.
    let mut msg = good.clone();
    msg[24..28].copy_from_slice(&0x0Fu32.to_be_bytes());
    assert!(Reply::from_message(&msg, &Request::Patterns).is_ok());
    let mut msg = good.clone();
    msg[24..28].copy_from_slice(&0x10u32.to_be_bytes());
    assert!(Reply::from_message(&msg, &Request::Patterns).is_ok());
    let mut msg = good;
    msg[24..28].copy_from_slice(&0x0Eu32.to_be_bytes());
    assert_truncated(Reply::from_message(&msg, &Request::Patterns), "verb data");
}

#[test]
fn truncated_header_is_refused() {
    let good = mn_request();
    for n in [0, 1, 2, 100, 219] {
        let expect = CodecError::Truncated {
            what: "CPRBX",
            needed: 220,
            available: n,
        };
        assert_eq!(Cprbx::decode(&good[..n]), Err(expect.clone()));
        assert_eq!(Request::from_message(&good[..n]), Err(expect.clone()));
        assert_eq!(
            Reply::from_message(&good[..n], &Request::Patterns),
            Err(expect)
        );
    }
}

#[test]
fn header_alone_has_no_function_code() {
    // A CPRBX with req_parml 0 and nothing after it: the parameter block lacks its code.
    let msg = cprbx(0, RPL_MSGBL, 0, 0, 0, DOMAIN);
    assert_truncated(Request::from_message(&msg), "function code");
}

// ---------------------------------------------------------------------------------------
// Function codes
// ---------------------------------------------------------------------------------------

#[test]
fn reply_for_another_function_is_refused() {
    // A vp reply offered as the answer to an st request.
    assert_field(
        Reply::from_message(&vp_reply(), &Request::ShareTables),
        "reply",
        "function code",
    );
    // A kp public-key reply offered for kg: same body layout, other function.
    let parm = keys_only(b"kp", &keys(0x0012, &[entry(0x0010, &PK_TOKEN)]));
    let kg = decoded(&request(
        0x5E,
        &cat(&[
            &b"kg"[..],
            &rules(0x0012, &["RETAIN", "SIG-ONLY"]),
            &verb(0x0004, &[0x08, 0x00]),
            &keys(0x0046, &[entry(0x0044, &label("SA"))]),
        ]),
    ));
    assert_field(
        Reply::from_message(&reply(0x18, 0, 0, &parm), &kg),
        "reply",
        "function code",
    );
    // Even a failure reply (no body) must name the request's function.
    let msg = reply(0x08, 8, 1033, &cat(&[&b"hr"[..], &EMPTY, &EMPTY, &EMPTY]));
    assert_field(
        Reply::from_message(&msg, &Request::Query(Query::StatEid)),
        "reply",
        "function code",
    );
}

#[test]
fn unknown_function_code_is_refused() {
    // Unknown outright, and the wrong case of known codes (public codes are upper case,
    // project-assigned ones lower case).
    for code in [
        *b"ZZ",
        *b"fq",
        *b"VP",
        *b"MD",
        *b"RL",
        *b"\0\0",
        [0xC6, 0xD8],
    ] {
        let parm = cat(&[&code, &EMPTY, &EMPTY, &EMPTY]);
        let expect = CodecError::UnknownFunction { code };
        assert_eq!(ParmBlock::decode(&parm), Err(expect.clone()));
        assert_eq!(
            Request::from_message(&request(8, &parm)),
            Err(expect.clone())
        );
        assert_eq!(
            Reply::from_message(&reply(8, 0, 0, &parm), &Request::Patterns),
            Err(expect.clone())
        );
        // Even on a failure reply.
        assert_eq!(
            Reply::from_message(&reply(8, 8, 0, &parm), &Request::Patterns),
            Err(expect)
        );
    }
}

// ---------------------------------------------------------------------------------------
// A few verb-level refusals
// ---------------------------------------------------------------------------------------

#[test]
fn parameter_block_length_fields_are_checked() {
    // Rule-array length not 2 + 8k.
    for rl in [0u16, 1, 3, 9, 11] {
        let parm = cat(&[&b"vp"[..], &rl.to_be_bytes(), &[0; 16]]);
        assert_field(
            ParmBlock::decode(&parm),
            "parameter block",
            "rule-array length",
        );
    }
    // (parameter block, the length field it gets wrong)
    let cases = [
        // Verb-data and key-block lengths smaller than the length field itself.
        (
            cat(&[&b"vp"[..], &EMPTY, &[0x00, 0x01], &EMPTY]),
            "verb-data length",
        ),
        (
            cat(&[&b"vp"[..], &EMPTY, &EMPTY, &[0x00, 0x00]]),
            "key-block length",
        ),
        // A key-block entry shorter than its own length + flag.
        (
            cat(&[
                &b"vp"[..],
                &EMPTY,
                &EMPTY,
                &[0x00, 0x06, 0x00, 0x03, 0x00, 0x00],
            ]),
            "key-block entry length",
        ),
    ];
    for (parm, field) in cases {
        assert_field(ParmBlock::decode(&parm), "parameter block", field);
    }
    // An entry running past the key block.
    let parm = cat(&[
        &b"vp"[..],
        &EMPTY,
        &EMPTY,
        &[0x00, 0x06, 0x00, 0x08, 0x00, 0x00],
    ]);
    assert_truncated(ParmBlock::decode(&parm), "key-block entry");
}

#[test]
fn missing_or_wrong_rules_are_refused() {
    // mn with another keyword.
    let mut cases = vec![(
        cat(&[
            &b"mn"[..],
            &rules(0x000A, &["SET"]),
            &verb(0x0004, &[3, 5]),
            &EMPTY,
        ]),
        0x12,
    )];
    // mp naming both registers, or none.
    for kws in [["SET", "SET"], ["SYM-MK", "ASYM-MK"], ["SET", "AES-MK"]] {
        cases.push((
            cat(&[&b"mp"[..], &rules(0x0012, &kws), &EMPTY, &EMPTY]),
            0x18,
        ));
    }
    // md with neither OBTAIN nor INSTALL.
    cases.push((
        cat(&[
            &b"md"[..],
            &rules(0x0012, &["RANDOM", "SYM-MK"]),
            &EMPTY,
            &EMPTY,
        ]),
        0x18,
    ));
    for (parm, len) in cases {
        assert!(matches!(
            Request::from_message(&request(len, &parm)),
            Err(CodecError::MissingRule { .. })
        ));
    }
}

#[test]
fn invalid_domain_values_are_refused() {
    // A lower-case label in the kp key block.
    let parm = keys_only(b"kp", &keys(0x0046, &[entry(0x0044, &label("sa.key"))]));
    assert!(matches!(
        Request::from_message(&request(0x4C, &parm)),
        Err(CodecError::Domain { .. })
    ));
    // A kg reply whose token does not start with X'1E'.
    let kp = decoded(&request(
        0x4C,
        &keys_only(b"kp", &keys(0x0046, &[entry(0x0044, &label("SA"))])),
    ));
    let parm = keys_only(b"kp", &keys(0x000E, &[entry(0x000C, &CERT)]));
    assert!(matches!(
        Reply::from_message(&reply(0x14, 0, 0, &parm), &kp),
        Err(CodecError::Domain { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Known leniencies of src (see the report that came with these tests). Each test states
// the strict behaviour; they are ignored until src is changed. Run them with
// `cargo test -p mkclone-cca --test rejections -- --ignored`.
// ---------------------------------------------------------------------------------------

#[test]
fn certify_refuses_eid_bytes_when_the_eid_flag_is_clear() {
    // flags 0 (no EID, no serial) but an EID in the EID field: decodes as `eid: None`,
    // and re-encodes with zeros there, so two encodings share one meaning.
    let data = cat(&[&[0x00], &eid16("GHOST"), &[0x00; 8]]);
    let msg = request(0x75, &ce_parm(&data));
    assert_field_refused(Request::from_message(&msg), "an EID whose flag is clear");
}

#[test]
fn clone_byte_other_than_0_or_1_is_refused() {
    let parm = cat(&[
        &b"kl"[..],
        &EMPTY,
        &verb(
            0x0048,
            &cat(&[&[0x00, 0x01], &label("SA"), &[0x01], &[0x02], &[0x08, 0x00]]),
        ),
        &EMPTY,
    ]);
    let msg = reply(0x4E, 0, 0, &parm);
    assert_field_refused(
        Reply::from_message(&msg, &Request::ListRetained),
        "clone byte 2",
    );
}

#[test]
fn non_zero_key_entry_flag_is_refused() {
    let block = cat(&[
        &[0x00, 0x46], // key-block length 70
        &[0x00, 0x44], // entry length 68
        &[0x12, 0x34], // entry flag X'1234'
        &label("SA"),
    ]);
    let parm = keys_only(b"kd", &block);
    let msg = request(0x4C, &parm);
    match Request::from_message(&msg) {
        Err(_) => {}
        Ok((_, req)) => panic!("accepted flag X'1234' as {req:?}"),
    }
}

#[test]
fn share_tables_count_overflow_is_an_encode_error() {
    use mkclone_backend::{CloneableKind, GenerationState, ReceptionState, ShareTables};
    use mkclone_cca::function::FunctionCode;
    use mkclone_cca::verbs::ReplyBody;
    let t = ShareTables {
        kind: CloneableKind::Sym,
        generation: [GenerationState::Cannot; 15],
        reception: [ReceptionState::Cannot; 15],
    };
    let reply = Reply::ok(ReplyBody::ShareTables {
        m_of_n: Some((1, 1)),
        tables: vec![t; 256],
    });
    // Today: Ok(bytes) with count 0 and 256 tables behind it, which the decoder then
    // refuses as trailing bytes. Patterns, RetainedKeys and Registrations return TooLong.
    assert!(matches!(
        reply.to_message(FunctionCode::ShareTables, DOMAIN),
        Err(CodecError::TooLong { .. })
    ));
}

/// A warning (return code 4) to FQ STATCCAE whose parameter block holds no element and
/// only a key block, which FQ does not read, says nothing: it is the empty warning, as
/// the bare block it encodes to is. Before the fix it decoded to `Elements([])`, whose
/// encoding read back as `Empty`: two meanings, one encoding. Found by the `cprb_reply`
/// fuzz target (fuzz/regressions/cprb_reply/fq-warning-with-an-unread-key-block).
#[test]
fn fq_warning_holding_only_what_fq_does_not_read_is_the_empty_warning() {
    let token = [0x00, 0x01, b'S', b'H', b'A', b'R', b'E', 0xFF];
    let parm = cat(&[
        b"FQ",                               // 0 function code
        &EMPTY,                              // 2 rule-array length 2: no element
        &EMPTY,                              // 4 verb-data length 2
        &keys(0x0E, &[entry(0x0C, &token)]), // 6 key block of one entry, not read by FQ
    ]);
    let request = Request::Query(Query::StatCcae);
    let found = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/cprb_reply/fq-warning-with-an-unread-key-block"
    ))
    .expect("the regression input is in the repository");
    for msg in [reply(0x14, 4, 0, &parm), found] {
        let decoded = Reply::from_message(&msg, &request).unwrap();
        assert_eq!(decoded, Reply::code(4, 0));
        let again = decoded.to_message(request.function(), DOMAIN).unwrap();
        assert_eq!(Reply::from_message(&again, &request).unwrap(), decoded);
    }
}
