//! Property tests: every `Request` variant and every `ReplyBody` variant round-trips
//! through its message encoding, and no decoder panics on arbitrary bytes or on
//! mutations (byte changes, truncations, extensions) of valid messages.

use mkclone_backend::{
    Certificate, CloneableKind, Eid, GenerationState, HashAlgorithm, KeyLabel, KeyUsage,
    MasterKeyKind, PatternAlgorithm, PublicKeyHash, PublicKeyToken, ReceptionState, Registration,
    RetainedKeyInfo, SealedShare, SerialNumber, ShareTables, VerificationPattern,
};
use mkclone_cca::cprb::{CPRBX_LEN, Cprbx};
use mkclone_cca::parm::{KeyEntry, Keyword, ParmBlock};
use mkclone_cca::verbs::{
    InstallShare, MkAction, ObtainShare, PatternEntry, Query, Register, Reply, ReplyBody, Request,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------
// Domain strategies
// ---------------------------------------------------------------------------------------

fn key_label() -> impl Strategy<Value = KeyLabel> {
    prop_oneof![
        "[A-Z][A-Z0-9]{0,7}(\\.[A-Z][A-Z0-9]{0,7}){0,3}",
        // The full alphabet and the 64-character maximum (8 tokens of 7 + 7 periods).
        "[A-Z#$@][A-Z0-9#$@]{0,6}(\\.[A-Z#$@][A-Z0-9#$@]{0,6}){0,7}",
        "[A-Z]{7}(\\.[A-Z]{7}){7}",
    ]
    .prop_map(|s| KeyLabel::new(&s).expect("strategy makes valid labels"))
}

fn eid() -> impl Strategy<Value = Eid> {
    prop_oneof!["[A-Z0-9]{1,16}", "[A-Za-z0-9][A-Za-z0-9 .\\-_@#$&]{0,15}",]
        .prop_map(|s| Eid::new(&s).expect("strategy makes valid EIDs"))
}

fn serial() -> impl Strategy<Value = SerialNumber> {
    "[!-~][ -~]{0,7}".prop_map(|s| SerialNumber::new(&s).expect("valid serial"))
}

fn with_first(first: u8, min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), min..=max).prop_map(move |mut v| {
        v[0] = first;
        v
    })
}

fn public_key_token() -> impl Strategy<Value = PublicKeyToken> {
    with_first(0x1E, 8, 80).prop_map(|v| PublicKeyToken::new(v).expect("valid token"))
}

fn certificate() -> impl Strategy<Value = Certificate> {
    with_first(0x40, 4, 80).prop_map(|v| Certificate::new(v).expect("valid certificate"))
}

fn sealed_share() -> impl Strategy<Value = SealedShare> {
    vec(any::<u8>(), 1..=120).prop_map(|v| SealedShare::new(v).expect("valid share"))
}

fn hash() -> impl Strategy<Value = PublicKeyHash> {
    prop_oneof![Just(HashAlgorithm::Sha1), Just(HashAlgorithm::Sha256)].prop_flat_map(|alg| {
        vec(any::<u8>(), alg.len())
            .prop_map(move |b| PublicKeyHash::new(alg, &b).expect("valid hash"))
    })
}

fn pattern() -> impl Strategy<Value = VerificationPattern> {
    prop_oneof![
        Just(PatternAlgorithm::Sha1Method),
        Just(PatternAlgorithm::Mdc4),
        Just(PatternAlgorithm::Sha256Method),
    ]
    .prop_flat_map(|alg| {
        vec(any::<u8>(), alg.len())
            .prop_map(move |b| VerificationPattern::new(alg, &b).expect("valid pattern"))
    })
}

fn cloneable() -> impl Strategy<Value = CloneableKind> {
    prop_oneof![Just(CloneableKind::Sym), Just(CloneableKind::Asym)]
}

fn master_key_kind() -> impl Strategy<Value = MasterKeyKind> {
    prop::sample::select(MasterKeyKind::ALL.to_vec())
}

fn usage() -> impl Strategy<Value = KeyUsage> {
    prop_oneof![
        Just(KeyUsage::SignatureOnly),
        Just(KeyUsage::KeyManagementOnly)
    ]
}

fn action() -> impl Strategy<Value = MkAction> {
    prop_oneof![
        Just(MkAction::Set),
        Just(MkAction::Clear),
        Just(MkAction::Random)
    ]
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

fn set_eid() -> impl Strategy<Value = Request> {
    eid().prop_map(Request::SetEid)
}

fn set_mofn() -> impl Strategy<Value = Request> {
    (any::<u8>(), any::<u8>()).prop_map(|(m, n)| Request::SetMofN { m, n })
}

fn generate_retained() -> impl Strategy<Value = Request> {
    (key_label(), usage(), any::<bool>(), any::<u16>()).prop_map(|(label, usage, clone, bits)| {
        Request::GenerateRetained {
            label,
            usage,
            clone,
            bits,
        }
    })
}

fn retained_public_key() -> impl Strategy<Value = Request> {
    key_label().prop_map(|label| Request::RetainedPublicKey { label })
}

fn delete_retained() -> impl Strategy<Value = Request> {
    key_label().prop_map(|label| Request::DeleteRetained { label })
}

fn register_hash() -> impl Strategy<Value = Request> {
    (key_label(), hash(), any::<bool>()).prop_map(|(name, hash, clone)| Request::RegisterHash {
        name,
        hash,
        clone,
    })
}

fn register_key() -> impl Strategy<Value = Request> {
    (key_label(), certificate(), any::<bool>()).prop_map(|(name, certificate, clone)| {
        Request::RegisterKey {
            name,
            certificate,
            clone,
        }
    })
}

fn certify() -> impl Strategy<Value = Request> {
    (
        key_label(),
        public_key_token(),
        proptest::option::of(eid()),
        proptest::option::of(serial()),
    )
        .prop_map(|(signer, subject, eid, serial)| Request::Certify {
            signer,
            subject,
            eid,
            serial,
        })
}

fn obtain() -> impl Strategy<Value = Request> {
    (
        cloneable(),
        any::<u32>(),
        key_label(),
        key_label(),
        certificate(),
    )
        .prop_map(|(kind, index, css_label, sa_name, csr_certificate)| {
            Request::Obtain(ObtainShare {
                kind,
                index,
                css_label,
                sa_name,
                csr_certificate,
            })
        })
}

fn install() -> impl Strategy<Value = Request> {
    (
        cloneable(),
        key_label(),
        key_label(),
        certificate(),
        sealed_share(),
    )
        .prop_map(|(kind, csr_label, sa_name, css_certificate, share)| {
            Request::Install(InstallShare {
                kind,
                csr_label,
                sa_name,
                css_certificate,
                share,
            })
        })
}

fn master_key() -> impl Strategy<Value = Request> {
    (action(), cloneable()).prop_map(|(action, kind)| Request::MasterKey { action, kind })
}

/// Every `Request` variant, each equally likely.
fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Query(Query::StatCcae)),
        Just(Request::Query(Query::StatEid)),
        Just(Request::Patterns),
        set_eid(),
        set_mofn(),
        Just(Request::ShareTables),
        generate_retained(),
        retained_public_key(),
        Just(Request::ListRetained),
        delete_retained(),
        register_hash(),
        register_key(),
        Just(Request::ListRegistrations),
        certify(),
        obtain(),
        install(),
        master_key(),
    ]
}

// ---------------------------------------------------------------------------------------
// Replies: (request, reply) pairs whose body matches the request
// ---------------------------------------------------------------------------------------

/// Requests whose successful reply carries no body.
fn empty_body_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        set_eid(),
        set_mofn(),
        delete_retained(),
        register_hash(),
        register_key(),
        master_key(),
    ]
}

/// Return codes below 8 (a body is decoded).
/// A reply with return code `rt`, reason code `rs` and `body`.
fn reply_with(rt: u16, rs: u16, body: ReplyBody) -> Reply {
    Reply {
        return_code: rt,
        reason_code: rs,
        body,
    }
}

fn ok_rc() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0u16), Just(4u16), 0u16..8]
}

fn keyword() -> impl Strategy<Value = Keyword> {
    prop_oneof![
        any::<[u8; 8]>().prop_map(Keyword::from_bytes),
        "[A-Z0-9 ]{0,8}".prop_map(|s| Keyword::new(&s)),
    ]
}

fn share_tables() -> impl Strategy<Value = ShareTables> {
    let gen_state = prop::sample::select(vec![
        GenerationState::Cannot,
        GenerationState::Can,
        GenerationState::Generated,
        GenerationState::DistributedOnce,
        GenerationState::DistributedMore,
    ]);
    let recv_state = prop::sample::select(vec![
        ReceptionState::Cannot,
        ReceptionState::Can,
        ReceptionState::Received,
        ReceptionState::ReceivedMore,
    ]);
    (
        cloneable(),
        prop::array::uniform15(gen_state),
        prop::array::uniform15(recv_state),
    )
        .prop_map(|(kind, generation, reception)| ShareTables {
            kind,
            generation,
            reception,
        })
}

fn retained_key() -> impl Strategy<Value = RetainedKeyInfo> {
    (key_label(), usage(), any::<bool>(), any::<u16>()).prop_map(|(label, usage, clone, bits)| {
        RetainedKeyInfo {
            label,
            usage,
            clone,
            bits,
        }
    })
}

fn registration() -> impl Strategy<Value = Registration> {
    (
        key_label(),
        hash(),
        any::<bool>(),
        proptest::option::of(certificate()),
    )
        .prop_map(|(name, hash, clone, key)| Registration {
            name,
            hash,
            clone,
            key,
        })
}

/// A request and a well-formed reply to it, covering every `ReplyBody` variant.
fn request_and_reply() -> impl Strategy<Value = (Request, Reply)> {
    let rs = any::<u16>();
    prop_oneof![
        // Empty: a verb without a reply body, any non-failing code...
        (empty_body_request(), ok_rc(), rs)
            .prop_map(|(req, rt, rs)| (req, reply_with(rt, rs, ReplyBody::Empty))),
        // ...or any verb with a failing code.
        (request(), 8u16.., rs).prop_map(|(req, rt, rs)| (req, Reply::code(rt, rs))),
        // Elements (FQ). An empty rule array under return code 4 reads as Empty, so at
        // least one element.
        (
            prop_oneof![Just(Query::StatCcae), Just(Query::StatEid)],
            vec(keyword(), 1..=12),
            ok_rc(),
            rs
        )
            .prop_map(|(q, e, rt, rs)| (
                Request::Query(q),
                reply_with(rt, rs, ReplyBody::Elements(e))
            )),
        (
            serial(),
            vec(
                (
                    master_key_kind(),
                    prop_oneof![
                        Just(Register::New),
                        Just(Register::Current),
                        Just(Register::Old)
                    ],
                    pattern()
                ),
                0..=12
            ),
            ok_rc()
        )
            .prop_map(|(serial, entries, rt)| {
                let entries = entries
                    .into_iter()
                    .map(|(kind, register, pattern)| PatternEntry {
                        kind,
                        register,
                        pattern,
                    })
                    .collect();
                (
                    Request::Patterns,
                    reply_with(rt, 0, ReplyBody::Patterns { serial, entries }),
                )
            }),
        (
            proptest::option::of(
                (any::<u8>(), any::<u8>()).prop_filter("(0, 0) means unset", |mn| *mn != (0, 0))
            ),
            vec(share_tables(), 0..=4),
            ok_rc()
        )
            .prop_map(|(m_of_n, tables, rt)| (
                Request::ShareTables,
                reply_with(rt, 0, ReplyBody::ShareTables { m_of_n, tables })
            )),
        (
            prop_oneof![generate_retained(), retained_public_key(),],
            public_key_token(),
            ok_rc()
        )
            .prop_map(|(req, t, rt)| (req, reply_with(rt, 0, ReplyBody::PublicKey(t)))),
        (vec(retained_key(), 0..=6), ok_rc()).prop_map(|(list, rt)| (
            Request::ListRetained,
            reply_with(rt, 0, ReplyBody::RetainedKeys(list))
        )),
        (vec(registration(), 0..=6), ok_rc()).prop_map(|(list, rt)| (
            Request::ListRegistrations,
            reply_with(rt, 0, ReplyBody::Registrations(list))
        )),
        (certify(), certificate(), ok_rc())
            .prop_map(|(req, c, rt)| (req, reply_with(rt, 0, ReplyBody::Certificate(c)))),
        (obtain(), sealed_share(), ok_rc())
            .prop_map(|(req, s, rt)| (req, reply_with(rt, 0, ReplyBody::Share(s)))),
        (install(), any::<u8>(), any::<u8>(), ok_rc(), rs).prop_map(
            |(req, received, m, rt, rs)| (
                req,
                reply_with(rt, rs, ReplyBody::InstallProgress { received, m })
            )
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the byte at an index.
    Set(Index, u8),
    /// XOR one bit at an index.
    Flip(Index, u8),
    /// Keep only a prefix.
    Truncate(Index),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Insert a byte.
    Insert(Index, u8),
    /// Remove a byte.
    Remove(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..=16).prop_map(Mutation::Extend),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<Index>().prop_map(Mutation::Remove),
    ]
}

/// `msg` with `mutations` applied, inside the parameter block when `in_parm`. Then (when
/// `in_parm`) the CPRBX's parameter length at `parml_at` is kept consistent with the bytes
/// after the header, so that the parameter-block and verb decoders see the mutation
/// instead of the length check: half of the time.
fn mutated(mut msg: Vec<u8>, mutations: &[Mutation], in_parm: bool, parml_at: usize) -> Vec<u8> {
    for m in mutations {
        msg = apply(msg, m, if in_parm { CPRBX_LEN } else { 0 });
    }
    if in_parm && msg.len() >= CPRBX_LEN {
        let len = (msg.len() - CPRBX_LEN) as u32;
        msg[parml_at..parml_at + 4].copy_from_slice(&len.to_be_bytes());
    }
    msg
}

fn apply(mut bytes: Vec<u8>, m: &Mutation, from: usize) -> Vec<u8> {
    let from = from.min(bytes.len());
    let span = bytes.len() - from;
    match m {
        Mutation::Set(i, b) if span > 0 => bytes[from + i.index(span)] = *b,
        Mutation::Flip(i, bit) if span > 0 => bytes[from + i.index(span)] ^= 1 << bit,
        Mutation::Truncate(i) => bytes.truncate(from + i.index(span + 1)),
        Mutation::Extend(tail) => bytes.extend_from_slice(tail),
        Mutation::Insert(i, b) => bytes.insert(from + i.index(span + 1), *b),
        Mutation::Remove(i) if span > 0 => {
            bytes.remove(from + i.index(span));
        }
        _ => {}
    }
    bytes
}

/// Run every decoder on `bytes`; they may fail but must not panic. The requests given
/// are used for `Reply::from_message`.
fn decode_everything(bytes: &[u8], requests: &[&Request]) {
    let _ = Cprbx::decode(bytes);
    let _ = ParmBlock::decode(bytes);
    if bytes.len() >= CPRBX_LEN {
        let _ = ParmBlock::decode(&bytes[CPRBX_LEN..]);
    }
    let _ = Request::from_message(bytes);
    for r in requests {
        let _ = Reply::from_message(bytes, r);
    }
}

/// One request of every function code, for replies decoded against arbitrary bytes.
fn sample_requests() -> Vec<Request> {
    let label = KeyLabel::new("A.B").unwrap();
    let cert = Certificate::new(vec![0x40, 0, 0, 4]).unwrap();
    vec![
        Request::Query(Query::StatCcae),
        Request::Patterns,
        Request::SetEid(Eid::new("E").unwrap()),
        Request::SetMofN { m: 1, n: 1 },
        Request::ShareTables,
        Request::GenerateRetained {
            label: label.clone(),
            usage: KeyUsage::SignatureOnly,
            clone: false,
            bits: 2048,
        },
        Request::RetainedPublicKey {
            label: label.clone(),
        },
        Request::ListRetained,
        Request::DeleteRetained {
            label: label.clone(),
        },
        Request::RegisterHash {
            name: label.clone(),
            hash: PublicKeyHash::new(HashAlgorithm::Sha1, &[0; 20]).unwrap(),
            clone: false,
        },
        Request::RegisterKey {
            name: label.clone(),
            certificate: cert.clone(),
            clone: false,
        },
        Request::ListRegistrations,
        Request::Certify {
            signer: label.clone(),
            subject: PublicKeyToken::new(vec![0x1E, 0, 0, 8, 0, 0, 0, 0]).unwrap(),
            eid: None,
            serial: None,
        },
        Request::Obtain(ObtainShare {
            kind: CloneableKind::Sym,
            index: 1,
            css_label: label.clone(),
            sa_name: label.clone(),
            csr_certificate: cert.clone(),
        }),
        Request::Install(InstallShare {
            kind: CloneableKind::Asym,
            csr_label: label.clone(),
            sa_name: label,
            css_certificate: cert,
            share: SealedShare::new(vec![1]).unwrap(),
        }),
        Request::MasterKey {
            action: MkAction::Set,
            kind: CloneableKind::Sym,
        },
    ]
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_request_round_trips(
        req in request(),
        domain in any::<u16>(),
        capacity in any::<u32>(),
    ) {
        let msg = req.to_message(domain, capacity as usize).unwrap();
        let (header, back) = Request::from_message(&msg).unwrap();
        prop_assert_eq!(&back, &req);
        prop_assert_eq!(header.domain, domain);
        prop_assert_eq!(header.rpl_msgbl, capacity);
        prop_assert_eq!(header.req_parml as usize, msg.len() - CPRBX_LEN);
        prop_assert_eq!(back.function(), req.function());

        // The parameter block alone round-trips too, and decodes to the same request.
        let parm = ParmBlock::decode(&msg[CPRBX_LEN..]).unwrap();
        prop_assert_eq!(&parm, &req.to_parm());
        prop_assert_eq!(parm.encode().unwrap(), &msg[CPRBX_LEN..]);
        prop_assert_eq!(Request::from_parm(&parm).unwrap(), req);
    }

    #[test]
    fn every_reply_body_round_trips(
        (req, reply) in request_and_reply(),
        domain in any::<u16>(),
    ) {
        let msg = reply.to_message(req.function(), domain).unwrap();
        let header = Cprbx::decode(&msg).unwrap();
        prop_assert_eq!(header.domain, domain);
        prop_assert_eq!(header.ccp_rtcode, reply.return_code);
        prop_assert_eq!(header.ccp_rscode, reply.reason_code);
        prop_assert_eq!(header.rpld_parml as usize, msg.len() - CPRBX_LEN);
        let back = Reply::from_message(&msg, &req).unwrap();
        prop_assert_eq!(&back, &reply);
        // Canonical: re-encoding the decoded reply gives the same bytes.
        prop_assert_eq!(back.to_message(req.function(), domain).unwrap(), msg);
    }

    #[test]
    fn parameter_blocks_round_trip(
        rules in vec(any::<[u8; 8]>().prop_map(Keyword::from_bytes), 0..=6),
        verb_data in vec(any::<u8>(), 0..=64),
        keys in vec((any::<u16>(), vec(any::<u8>(), 0..=40)), 0..=4),
        req in request(),
    ) {
        let p = ParmBlock {
            function: req.function(),
            rules,
            verb_data,
            keys: keys.into_iter().map(|(flag, token)| KeyEntry { flag, token }).collect(),
        };
        let bytes = p.encode().unwrap();
        prop_assert_eq!(ParmBlock::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..=600)) {
        let requests = sample_requests();
        let refs: Vec<&Request> = requests.iter().collect();
        decode_everything(&bytes, &refs);
    }

    #[test]
    fn arbitrary_parameter_blocks_behind_a_valid_header_never_panic(
        code in prop::sample::select(sample_requests().iter().map(|r| r.function().code()).collect::<Vec<_>>()),
        body in vec(any::<u8>(), 0..=380),
        rt in prop_oneof![Just(0u16), Just(4u16), Just(8u16)],
    ) {
        // A valid CPRBX whose length field matches, then a known function code and
        // random bytes: this reaches the verb decoders, which random headers rarely do.
        let parm = [&code[..], &body[..]].concat();
        let len = parm.len();
        let mut msg = Cprbx { req_parml: len as u32, rpld_parml: len as u32, ccp_rtcode: rt, ..Cprbx::default() }
            .encode()
            .to_vec();
        msg.extend_from_slice(&parm);
        let requests = sample_requests();
        let refs: Vec<&Request> = requests.iter().collect();
        decode_everything(&msg, &refs);
    }

    #[test]
    fn mutated_requests_never_panic(
        req in request(),
        mutations in vec(mutation(), 1..=3),
        in_parm in any::<bool>(),
    ) {
        let msg = req.to_message(0x000D, 12 * 1024).unwrap();
        // req_parml at 12.
        let msg = mutated(msg, &mutations, in_parm, 12);
        decode_everything(&msg, &[&req]);
        if let Ok((_, back)) = Request::from_message(&msg) {
            // Whatever decodes re-encodes without error.
            prop_assert!(back.to_message(0x000D, 12 * 1024).is_ok());
        }
    }

    #[test]
    fn mutated_replies_never_panic(
        (req, reply) in request_and_reply(),
        mutations in vec(mutation(), 1..=3),
        in_parm in any::<bool>(),
    ) {
        let msg = reply.to_message(req.function(), 0x000D).unwrap();
        // rpld_parml at 24.
        let msg = mutated(msg, &mutations, in_parm, 24);
        decode_everything(&msg, &[&req]);
        if let Ok(back) = Reply::from_message(&msg, &req) {
            prop_assert!(back.to_message(req.function(), 0x000D).is_ok());
        }
    }
}
