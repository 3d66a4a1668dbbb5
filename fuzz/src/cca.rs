//! What a coprocessor answers: a CPRB reply (CPRBX + parameter block) to any verb, and the
//! FQ STATICSA/STATICSB reply layouts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mkclone::zcrypt::{IoctlTransport, ProjectEncodings, XcrbCall, ZcryptDevice};
use mkclone_backend::{
    Certificate, CloneableKind, Eid, HashAlgorithm, KeyLabel, KeyUsage, PublicKeyHash,
    PublicKeyToken, SealedShare, SerialNumber,
};
use mkclone_cca::cprb::{CPRBX_LEN, Cprbx};
use mkclone_cca::facility::{StaticsA, StaticsB};
use mkclone_cca::parm::Keyword;
use mkclone_cca::verbs::{InstallShare, MkAction, ObtainShare, Query, Reply, Request};
use mkclone_cca::{Apqn, CodecError, REPLY_CAPACITY};
use nix::errno::Errno;

use crate::alloc_cap::{binary_cap, capped};
use crate::shown;

/// The domain of every request here (APQN 03.000d).
const DOMAIN: u16 = 0x000D;

/// One request of every verb, each with its encoded message: a reply is decoded as the
/// answer to each of them that carries its function code.
fn requests() -> &'static [(Request, Vec<u8>)] {
    static REQUESTS: OnceLock<Vec<(Request, Vec<u8>)>> = OnceLock::new();
    REQUESTS.get_or_init(|| {
        let label = |text: &str| KeyLabel::new(text).expect("fixture label");
        let eid = Eid::new("TARGET.1").expect("fixture EID");
        let serial = SerialNumber::new("93AB1234").expect("fixture serial");
        let certificate = Certificate::new(vec![0x40, 0, 0, 4]).expect("fixture certificate");
        let kind = CloneableKind::Asym;
        let all = vec![
            Request::Query(Query::StatCcae),
            Request::Query(Query::StatEid),
            Request::Query(Query::StatIcsa),
            Request::Query(Query::StatIcsb),
            Request::Patterns,
            Request::SetEid(eid.clone()),
            Request::SetMofN { m: 3, n: 5 },
            Request::ShareTables,
            Request::GenerateRetained {
                label: label("MKCLONE.CSR.KEY"),
                usage: KeyUsage::KeyManagementOnly,
                clone: true,
                bits: 2048,
            },
            Request::RetainedPublicKey {
                label: label("MKCLONE.CSR.KEY"),
            },
            Request::ListRetained,
            Request::DeleteRetained {
                label: label("MKCLONE.CSR.KEY"),
            },
            Request::UnregisterKey {
                name: label("MKCLONE.SA.KEY"),
            },
            Request::RegisterHash {
                name: label("MKCLONE.SA.KEY"),
                hash: PublicKeyHash::new(HashAlgorithm::Sha256, &[0xA5; 32]).expect("fixture hash"),
                clone: true,
            },
            Request::RegisterKey {
                name: label("MKCLONE.SA.KEY"),
                certificate: certificate.clone(),
                clone: true,
            },
            Request::ListRegistrations,
            Request::Certify {
                signer: label("MKCLONE.SA.KEY"),
                subject: PublicKeyToken::new(vec![0x1E, 0, 0, 8, 0, 0, 0, 0])
                    .expect("fixture token"),
                eid: Some(eid),
                serial: Some(serial),
            },
            Request::Obtain(ObtainShare {
                kind,
                index: 1,
                css_label: label("MKCLONE.CSS.KEY"),
                sa_name: label("MKCLONE.SA.KEY"),
                csr_certificate: certificate.clone(),
            }),
            Request::Install(InstallShare {
                kind,
                csr_label: label("MKCLONE.CSR.KEY"),
                sa_name: label("MKCLONE.SA.KEY"),
                css_certificate: certificate,
                share: SealedShare::new(vec![0]).expect("fixture share"),
            }),
            Request::MasterKey {
                action: MkAction::Set,
                kind,
            },
        ];
        for r in &all {
            every_variant_is_listed(r);
        }
        all.into_iter()
            .map(|r| {
                let message = r
                    .to_message(DOMAIN, REPLY_CAPACITY)
                    .expect("fixture request encodes");
                (r, message)
            })
            .collect()
    })
}

/// Fails to compile when `Request` gains a variant: add it to [`requests`] too.
fn every_variant_is_listed(r: &Request) {
    match r {
        Request::Query(Query::StatCcae | Query::StatEid | Query::StatIcsa | Query::StatIcsb)
        | Request::Patterns
        | Request::SetEid(_)
        | Request::SetMofN { .. }
        | Request::ShareTables
        | Request::GenerateRetained { .. }
        | Request::RetainedPublicKey { .. }
        | Request::ListRetained
        | Request::DeleteRetained { .. }
        | Request::UnregisterKey { .. }
        | Request::RegisterHash { .. }
        | Request::RegisterKey { .. }
        | Request::ListRegistrations
        | Request::Certify { .. }
        | Request::Obtain(_)
        | Request::Install(_)
        | Request::MasterKey { .. } => {}
    }
}

/// The requests whose function code the reply carries (at the start of its parameter
/// block); the first request when it carries none of them, so that the refusal of a
/// wrong or missing function code is exercised too.
fn candidates(reply: &[u8]) -> Vec<&'static (Request, Vec<u8>)> {
    let all = requests();
    let code = reply.get(CPRBX_LEN..CPRBX_LEN + 2);
    let matching: Vec<_> = all
        .iter()
        .filter(|(r, _)| Some(&r.function().code()[..]) == code)
        .collect();
    if matching.is_empty() {
        all.iter().take(1).collect()
    } else {
        matching
    }
}

/// Decode `message` as the reply to `request`; when it decodes, it must encode, and the
/// encoding must decode to the same reply.
fn reply_round_trip(message: &[u8], request: &Request) {
    let cap = binary_cap(message.len());
    let reply = match capped(cap, || Reply::from_message(message, request)) {
        Ok(reply) => reply,
        Err(e) => {
            shown(&e, cap);
            return;
        }
    };
    let domain = Cprbx::decode_reply(message)
        .expect("a decoded reply has a reply CPRBX")
        .domain;
    let again = reply
        .to_message(request.function(), domain)
        .unwrap_or_else(|e| panic!("a decoded reply does not encode: {e}\n{reply:?}"));
    let back = Reply::from_message(&again, request)
        .unwrap_or_else(|e| panic!("a re-encoded reply does not decode: {e}\n{reply:?}"));
    assert_eq!(
        back, reply,
        "decode(encode(decode(x))) differs from decode(x)"
    );
}

/// A fake kernel whose card answers with the fuzzer's bytes: copied into the reply
/// control block (as much as fits), their length written back as the kernel does.
struct ReplyingDevice<'a> {
    path: PathBuf,
    reply: &'a [u8],
}

impl ZcryptDevice for ReplyingDevice<'_> {
    fn path(&self) -> &Path {
        &self.path
    }

    fn send_cprb(&mut self, call: &mut XcrbCall<'_>) -> Result<(), Errno> {
        let block = call.reply_block()?;
        let n = self.reply.len().min(block.len());
        block[..n].copy_from_slice(&self.reply[..n]);
        call.set_reply_lengths(u32::try_from(n).unwrap_or(u32::MAX), 0);
        Ok(())
    }
}

/// Target `cprb_reply`: `data` is a reply message, decoded directly as the answer to each
/// request with its function code, then received through the zcrypt transport (which
/// cuts the message at the CPRBX's `rpld_parml` within what the kernel wrote) and decoded
/// again.
pub fn cprb_reply(data: &[u8]) {
    let candidates = candidates(data);
    for (request, _) in &candidates {
        reply_round_trip(data, request);
    }

    let (request, message) = candidates[0];
    let device = ReplyingDevice {
        path: PathBuf::from("/dev/z90crypt"),
        reply: data,
    };
    let apqn = Apqn::new(3, DOMAIN).expect("fixture APQN");
    // The override only lets the project-assigned verbs' requests out to this fake card.
    let mut transport = IoctlTransport::new(device, apqn)
        .with_project_encodings(ProjectEncodings::SendAnywayIKnowTheyAreNotIbms);
    // The transport's own buffers are the reply capacity, whatever the input.
    let cap = binary_cap(data.len()).saturating_add(2 * REPLY_CAPACITY);
    match capped(cap, || {
        transport
            .send_cprb(message, REPLY_CAPACITY, request.is_idempotent())
            .map_err(Box::new)
    }) {
        Ok(reply) => {
            assert!(
                reply.message.len() >= CPRBX_LEN && data.starts_with(&reply.message),
                "the transport's reply is not a prefix of what the card wrote"
            );
            reply_round_trip(&reply.message, request);
        }
        Err(e) => {
            shown(&e, cap);
        }
    }
}

/// Target `fq_statics`: `data` is a STATICSA/STATICSB reply's rule-array elements and verb
/// data (one byte element count, the 8-byte elements, then the verb data), decoded as
/// both; a decoded reply re-encodes (as the simulator answers) to the same values.
pub fn fq_statics(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let Some((element_bytes, verb_data)) = rest.split_at_checked(usize::from(count) * 8) else {
        return;
    };
    let elements: Vec<Keyword> = element_bytes
        .chunks_exact(8)
        .map(|c| Keyword::from_bytes(c.try_into().expect("chunks of 8")))
        .collect();
    statics_round_trip(
        "STATICSA",
        &elements,
        verb_data,
        StaticsA::decode,
        StaticsA::encode,
    );
    statics_round_trip(
        "STATICSB",
        &elements,
        verb_data,
        StaticsB::decode,
        StaticsB::encode,
    );
}

/// Decode one FQ reply layout (`what`); a decoded reply re-encodes (as the simulator
/// answers) to the same values.
fn statics_round_trip<T: PartialEq + std::fmt::Debug>(
    what: &str,
    elements: &[Keyword],
    verb_data: &[u8],
    decode: fn(&[Keyword], &[u8]) -> Result<T, CodecError>,
    encode: fn(&T) -> (Vec<Keyword>, Vec<u8>),
) {
    let cap = binary_cap(elements.len() * 8 + verb_data.len() + 1);
    match capped(cap, || decode(elements, verb_data)) {
        Ok(decoded) => {
            let (e, v) = encode(&decoded);
            let back = decode(&e, &v)
                .unwrap_or_else(|e| panic!("an encoded {what} reply does not decode: {e}"));
            assert_eq!(back, decoded, "{what}: decode(encode(decode(x))) differs");
        }
        Err(e) => {
            shown(&e, cap);
        }
    }
}
