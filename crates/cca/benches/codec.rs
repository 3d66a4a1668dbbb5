//! CPRB encode + decode per verb: a request to bytes and back, and a reply to bytes and back.

use criterion::{Criterion, criterion_group, criterion_main};
use mkclone_backend::{
    Certificate, CloneableKind, Eid, HashAlgorithm, KeyLabel, KeyUsage, PublicKeyHash,
    PublicKeyToken, SealedShare, SerialNumber,
};
use mkclone_backend::{
    GenerationState, MasterKeyKind, PatternAlgorithm, ReceptionState, Registration,
    RetainedKeyInfo, ShareTables, VerificationPattern,
};
use mkclone_cca::verbs::{
    InstallShare, MkAction, ObtainShare, PatternEntry, Query, Register, Reply, ReplyBody, Request,
};

fn requests() -> Vec<(&'static str, Request, ReplyBody)> {
    let label = KeyLabel::new("MKCLONE.CABCDEF1.CSS").unwrap();
    let sa = KeyLabel::new("MKCLONE.CABCDEF1.SA").unwrap();
    let mut cert = vec![0x40, 0x00, 0x02, 0x80];
    cert.resize(640, 0x5A);
    let cert = Certificate::new(cert).unwrap();
    let mut token = vec![0x1E, 0x00, 0x03, 0x00];
    token.resize(768, 0xA5);
    let token = PublicKeyToken::new(token).unwrap();
    let share = SealedShare::new(vec![0x77; 760]).unwrap();
    vec![
        (
            "FQ STATCCAE",
            Request::Query(Query::StatCcae),
            ReplyBody::Elements(vec![mkclone_cca::parm::Keyword::new("2"); 9]),
        ),
        (
            "kg",
            Request::GenerateRetained {
                label: label.clone(),
                usage: KeyUsage::SignatureOnly,
                clone: true,
                bits: 2048,
            },
            ReplyBody::PublicKey(token.clone()),
        ),
        (
            "hr",
            Request::RegisterHash {
                name: sa.clone(),
                hash: PublicKeyHash::new(HashAlgorithm::Sha256, &[7; 32]).unwrap(),
                clone: true,
            },
            ReplyBody::Empty,
        ),
        (
            "pr",
            Request::RegisterKey {
                name: sa.clone(),
                certificate: cert.clone(),
                clone: true,
            },
            ReplyBody::Empty,
        ),
        (
            "ce",
            Request::Certify {
                signer: sa.clone(),
                subject: token,
                eid: Some(Eid::new("TARGET 1").unwrap()),
                serial: Some(SerialNumber::new("93AB0001").unwrap()),
            },
            ReplyBody::Certificate(cert.clone()),
        ),
        (
            "md OBTAIN",
            Request::Obtain(ObtainShare {
                kind: CloneableKind::Sym,
                index: 3,
                css_label: label.clone(),
                sa_name: sa.clone(),
                csr_certificate: cert.clone(),
            }),
            ReplyBody::Share(share.clone()),
        ),
        (
            "md INSTALL",
            Request::Install(InstallShare {
                kind: CloneableKind::Asym,
                csr_label: label,
                sa_name: sa,
                css_certificate: cert,
                share,
            }),
            ReplyBody::InstallProgress { received: 2, m: 3 },
        ),
        (
            "mp SET",
            Request::MasterKey {
                action: MkAction::Set,
                kind: CloneableKind::Sym,
            },
            ReplyBody::Empty,
        ),
        (
            "FQ STATEID",
            Request::Query(Query::StatEid),
            ReplyBody::Elements(vec![mkclone_cca::parm::Keyword::new("NODE"); 2]),
        ),
        (
            "vp",
            Request::Patterns,
            ReplyBody::Patterns {
                serial: SerialNumber::new("93AB0001").unwrap(),
                entries: vec![
                    PatternEntry {
                        kind: MasterKeyKind::Sym,
                        register: Register::Current,
                        pattern: VerificationPattern::new(PatternAlgorithm::Sha1Method, &[1; 8])
                            .unwrap(),
                    };
                    4
                ],
            },
        ),
        (
            "ei",
            Request::SetEid(Eid::new("NODE 1").unwrap()),
            ReplyBody::Empty,
        ),
        ("mn", Request::SetMofN { m: 3, n: 5 }, ReplyBody::Empty),
        (
            "st",
            Request::ShareTables,
            ReplyBody::ShareTables {
                m_of_n: Some((3, 5)),
                tables: CloneableKind::ALL
                    .into_iter()
                    .map(|kind| ShareTables {
                        kind,
                        generation: [GenerationState::Can; 15],
                        reception: [ReceptionState::Can; 15],
                    })
                    .collect(),
            },
        ),
        (
            "kp",
            Request::RetainedPublicKey { label: label2() },
            ReplyBody::PublicKey(token2()),
        ),
        (
            "kl",
            Request::ListRetained,
            ReplyBody::RetainedKeys(vec![
                RetainedKeyInfo {
                    label: label2(),
                    usage: KeyUsage::KeyManagementOnly,
                    clone: true,
                    bits: 2048
                };
                3
            ]),
        ),
        (
            "kd",
            Request::DeleteRetained { label: label2() },
            ReplyBody::Empty,
        ),
        (
            "rg",
            Request::ListRegistrations,
            ReplyBody::Registrations(vec![Registration {
                name: label2(),
                hash: PublicKeyHash::new(HashAlgorithm::Sha256, &[9; 32]).unwrap(),
                clone: true,
                key: Some(cert2()),
            }]),
        ),
        (
            "rd",
            Request::UnregisterKey { name: label2() },
            ReplyBody::Empty,
        ),
        (
            "mp CLEAR",
            Request::MasterKey {
                action: MkAction::Clear,
                kind: CloneableKind::Asym,
            },
            ReplyBody::Empty,
        ),
        (
            "mp RANDOM",
            Request::MasterKey {
                action: MkAction::Random,
                kind: CloneableKind::Sym,
            },
            ReplyBody::Empty,
        ),
    ]
}

fn label2() -> KeyLabel {
    KeyLabel::new("MKCLONE.CABCDEF1.CSR").unwrap()
}

fn token2() -> PublicKeyToken {
    let mut token = vec![0x1E, 0x00, 0x03, 0x00];
    token.resize(768, 0xA5);
    PublicKeyToken::new(token).unwrap()
}

fn cert2() -> Certificate {
    let mut cert = vec![0x40, 0x00, 0x02, 0x80];
    cert.resize(640, 0x5A);
    Certificate::new(cert).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cprb_encode_decode");
    for (name, request, body) in requests() {
        let reply = Reply::ok(body);
        g.bench_function(name, |b| {
            b.iter(|| {
                let msg = request.to_message(0x000d, 12288).unwrap();
                let (_, back) = Request::from_message(&msg).unwrap();
                let rmsg = reply.to_message(back.function(), 0x000d).unwrap();
                Reply::from_message(&rmsg, &back).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
