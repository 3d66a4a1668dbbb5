//! The simulated card's firmware: runs one decoded request on the card's state, making
//! every check CCA makes, and answers with CCA's return/reason codes.
//!
//! The card does its own cryptography (RSA, triple-DES, SHA-256, OAEP): private keys
//! never leave it. A failing request leaves the state exactly as it was: each verb
//! checks everything first and changes the state last.

use log::debug;
use mkclone_backend::rules::{self, Admission, HeldShares, ShareFacts, admission, statmofn};
use mkclone_backend::{
    CloneableKind, CurrentState, Eid, KeyLabel, KeyUsage, MasterKeyKind, MofN, NewState,
    PublicKeyHash, PublicKeyToken, Registration, RetainedKeyInfo, SerialNumber, ShareIndex,
};
use mkclone_cca::facility::{MasterKeyRegisters, StaticsA, StaticsB};
use mkclone_cca::parm::Keyword;
use mkclone_cca::rc::{self as rc, rs, rt};
use mkclone_cca::verbs::{
    InstallShare, MkAction, ObtainShare, PatternEntry, Query, Register, Reply, ReplyBody, Request,
};
use mkclone_formats::ShareValue;
use mkclone_formats::clone_info::CloneInfo;
use mkclone_formats::mkvp;
use mkclone_formats::pka::{
    CertInfo, CertificateBuilder, CertificateSection, PublicKeyTokenView, RsaPublicKey,
    registration_hash,
};
use mkclone_formats::seal::{self, SealedShareParts};
use mkclone_formats::shamir::{self, Polynomial};
use rand::{CryptoRng, Rng};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Sign, PrivateKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use mkclone_backend::timing::{self, Category};

use crate::keygen;
use crate::state::{CardState, ReceivedShare, RetainedKey, Secret24};

/// The result of running a verb: the reply, and whether the state changed (and must be
/// saved).
pub struct Outcome {
    pub reply: Reply,
    pub changed: bool,
}

fn fail(reason: u16) -> Outcome {
    Outcome {
        reply: Reply::code(rt::ERROR, reason),
        changed: false,
    }
}
fn read(body: ReplyBody) -> Outcome {
    Outcome {
        reply: Reply::ok(body),
        changed: false,
    }
}
fn done(body: ReplyBody) -> Outcome {
    Outcome {
        reply: Reply::ok(body),
        changed: true,
    }
}
fn warn_same() -> Outcome {
    Outcome {
        reply: Reply::code(rt::WARNING, rs::ALREADY_IN_STATE),
        changed: false,
    }
}

type Step<T> = Result<T, Outcome>;

/// Remove the entry of `list` that `named` picks (a retained key, a registration), or
/// answer that no such name exists.
fn remove_named<T>(list: &mut Vec<T>, named: impl Fn(&T) -> bool) -> Outcome {
    match list.iter().position(named) {
        Some(i) => {
            list.remove(i);
            done(ReplyBody::Empty)
        }
        None => fail(rs::NAME_NOT_FOUND),
    }
}

/// Run `request` on `card` when it is one that only reads the card (the queries, the
/// reads of retained keys and registrations, a certification): the card is borrowed
/// shared, so such a verb cannot change it. Any other request is handed back untouched,
/// for [`execute`].
pub fn execute_read(card: &CardState, request: Request) -> Result<Outcome, Request> {
    let function = request.function();
    let result = match request {
        Request::Query(q) => Ok(query(card, q)),
        Request::Patterns => Ok(patterns(card)),
        Request::ShareTables => Ok(share_tables(card)),
        Request::RetainedPublicKey { label } => Ok(match card.retained(&label) {
            Some(k) => read(ReplyBody::PublicKey(k.public_token.clone())),
            None => fail(rs::NAME_NOT_FOUND),
        }),
        Request::ListRetained => Ok(read(ReplyBody::RetainedKeys(
            card.retained
                .iter()
                .map(|k| RetainedKeyInfo {
                    label: k.label.clone(),
                    usage: k.usage,
                    clone: k.clone,
                    bits: k.bits,
                })
                .collect(),
        ))),
        Request::ListRegistrations => Ok(read(ReplyBody::Registrations(card.registry.clone()))),
        Request::Certify {
            signer,
            subject,
            eid,
            serial,
        } => certify(card, &signer, &subject, eid, serial),
        other => return Err(other),
    };
    debug!("card {}: {:?}", card.serial, function);
    Ok(result.unwrap_or_else(|failure| failure))
}

/// Run `request` on `card`.
pub fn execute<R: Rng + CryptoRng>(card: &mut CardState, request: Request, rng: &mut R) -> Outcome {
    let request = match execute_read(card, request) {
        Ok(outcome) => return outcome,
        Err(request) => request,
    };
    debug!("card {}: {:?}", card.serial, request.function());
    let result = match request {
        // Answered by `execute_read` above, which hands back only the other requests.
        Request::Query(_)
        | Request::Patterns
        | Request::ShareTables
        | Request::RetainedPublicKey { .. }
        | Request::ListRetained
        | Request::ListRegistrations
        | Request::Certify { .. } => Err(fail(rs::MALFORMED_REQUEST)),
        Request::SetEid(eid) => Ok(set_eid(card, eid)),
        Request::SetMofN { m, n } => Ok(set_m_of_n(card, m, n)),
        Request::GenerateRetained {
            label,
            usage,
            clone,
            bits,
        } => generate(card, label, usage, clone, bits, rng),
        Request::DeleteRetained { label } => {
            Ok(remove_named(&mut card.retained, |k| k.label == label))
        }
        Request::RegisterHash { name, hash, clone } => Ok(register_hash(card, name, hash, clone)),
        Request::RegisterKey {
            name,
            certificate,
            clone,
        } => Ok(register_key(card, name, certificate, clone)),
        Request::UnregisterKey { name } => Ok(remove_named(&mut card.registry, |r| r.name == name)),
        Request::Obtain(o) => obtain(card, &o, rng),
        Request::Install(i) => install(card, &i),
        Request::MasterKey { action, kind } => Ok(master_key(card, action, kind, rng)),
    };
    result.unwrap_or_else(|failure| failure)
}

// ------------------------------------------------------------------------------------
// Queries
// ------------------------------------------------------------------------------------

fn digit(d: u8) -> Keyword {
    let mut k = [b' '; 8];
    k[0] = d;
    Keyword::from_bytes(k)
}

fn query(card: &CardState, q: Query) -> Outcome {
    match q {
        Query::StatCcae => {
            let mut elements = Vec::with_capacity(9);
            for kind in CloneableKind::ALL {
                let set = card.keys(kind);
                elements.push(digit(if set.new.is_some() { b'3' } else { b'1' }));
                elements.push(digit(if set.current.is_some() { b'2' } else { b'1' }));
                elements.push(digit(if set.old.is_some() { b'2' } else { b'1' }));
                if kind == CloneableKind::Sym {
                    // Elements 4-6 are not described in the reference we follow; the
                    // simulator leaves them blank rather than invent their meaning.
                    elements.extend([Keyword::new(""), Keyword::new(""), Keyword::new("")]);
                }
            }
            read(ReplyBody::Elements(elements))
        }
        Query::StatIcsa => read(ReplyBody::StaticsA(Box::new(statics_a(card)))),
        Query::StatIcsb => read(ReplyBody::StaticsB(Box::new(statics_b(card)))),
        Query::StatEid => {
            let eid = card.eid.as_ref().map(Eid::to_wire).unwrap_or([b' '; 16]);
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&eid[..8]);
            b.copy_from_slice(&eid[8..]);
            read(ReplyBody::Elements(vec![
                Keyword::from_bytes(a),
                Keyword::from_bytes(b),
            ]))
        }
    }
}

/// Registers of a master key the simulated card does not have (AES, APKA): empty.
fn absent(kind: MasterKeyKind) -> MasterKeyRegisters {
    MasterKeyRegisters {
        kind,
        new: Some(NewState::Empty),
        current: Some(CurrentState::Invalid),
        old: Some(CurrentState::Invalid),
        new_pattern: None,
        current_pattern: None,
        old_pattern: None,
    }
}

/// FQ STATICSA as the simulated card answers it: serial, ASYM registers, AES absent.
/// The ASYM pattern fields are left zero ("not reported"): a real card puts the MDC-4
/// pattern there, and mkclone has no tested MDC-4 implementation (no published vectors;
/// docs/ARCHITECTURE.md, "Formats"), so the simulator reports none rather than a value
/// that only looks like one.
fn statics_a(card: &CardState) -> StaticsA {
    let set = card.keys(CloneableKind::Asym);
    let valid = |k: &Option<Secret24>| {
        if k.is_some() {
            CurrentState::Valid
        } else {
            CurrentState::Invalid
        }
    };
    StaticsA {
        serial: card.serial.clone(),
        asym: MasterKeyRegisters {
            kind: MasterKeyKind::Asym,
            new: Some(if set.new.is_some() {
                NewState::Full
            } else {
                NewState::Empty
            }),
            current: Some(valid(&set.current)),
            old: Some(valid(&set.old)),
            new_pattern: None,
            current_pattern: None,
            old_pattern: None,
        },
        aes: absent(MasterKeyKind::Aes),
    }
}

/// FQ STATICSB as the simulated card answers it: APKA absent, SYM SHA-1-method patterns.
fn statics_b(card: &CardState) -> StaticsB {
    let set = card.keys(CloneableKind::Sym);
    StaticsB {
        apka: absent(MasterKeyKind::Apka),
        sym_current_pattern: set.current.as_ref().map(|k| mkvp::sha1_method(&k.0)),
        sym_new_pattern: set.new.as_ref().map(|k| mkvp::sha1_method(&k.0)),
    }
}

fn patterns(card: &CardState) -> Outcome {
    let mut entries = Vec::new();
    for kind in CloneableKind::ALL {
        let set = card.keys(kind);
        for (register, key) in [
            (Register::New, &set.new),
            (Register::Current, &set.current),
            (Register::Old, &set.old),
        ] {
            if let Some(key) = key {
                entries.push(PatternEntry {
                    kind: kind.kind(),
                    register,
                    pattern: mkvp::sha1_method(&key.0),
                });
            }
        }
    }
    read(ReplyBody::Patterns {
        serial: card.serial.clone(),
        entries,
    })
}

fn share_tables(card: &CardState) -> Outcome {
    let mut tables = Vec::with_capacity(CloneableKind::ALL.len());
    for kind in CloneableKind::ALL {
        let set = card.keys(kind);
        // Checked when the card was loaded (`CardState::validate`) and written only by
        // the rules since.
        let Ok(generation) = statmofn::parse_generation(&set.generation) else {
            return fail(rs::SHARE_DISTRIBUTION_ERROR);
        };
        tables.push(rules::tables::share_tables(
            kind,
            generation,
            card.m_of_n,
            set.received.iter().map(|s| s.index),
            set.received_more
                .iter()
                .filter_map(|i| ShareIndex::new(*i).ok()),
        ));
    }
    read(ReplyBody::ShareTables {
        m_of_n: card.m_of_n.map(|mn| (mn.m(), mn.n())),
        tables,
    })
}

// ------------------------------------------------------------------------------------
// Facility control
// ------------------------------------------------------------------------------------

fn set_eid(card: &mut CardState, eid: Eid) -> Outcome {
    if card.eid.is_some() {
        // Set once per coprocessor; the host compares and reports already-done/conflict.
        return fail(rs::EID_ALREADY_SET);
    }
    card.eid = Some(eid);
    done(ReplyBody::Empty)
}

fn set_m_of_n(card: &mut CardState, m: u8, n: u8) -> Outcome {
    let Ok(m_of_n) = MofN::new(m, n) else {
        return fail(rs::BAD_MOFN);
    };
    if card.m_of_n == Some(m_of_n) {
        // Not resetting keeps the polynomial, so shares already issued stay valid.
        return warn_same();
    }
    card.m_of_n = Some(m_of_n);
    for kind in CloneableKind::ALL {
        card.keys_mut(kind).clear_share_tables(Some(m_of_n));
    }
    done(ReplyBody::Empty)
}

// ------------------------------------------------------------------------------------
// Retained keys and certificates
// ------------------------------------------------------------------------------------

fn private_key(key: &RetainedKey) -> Step<PrivateKey> {
    // Decoded into a buffer sized once: `hex::decode` collects into a growing Vec, and each
    // reallocation would leave a copy of the private key behind, never zeroized.
    let text = key.private_pkcs1.as_bytes();
    let mut der = Zeroizing::new(vec![0u8; text.len() / 2]);
    hex::decode_to_slice(text, &mut der[..]).map_err(|_| fail(rs::KEY_USE_ERROR))?;
    timing::measure(Category::Rsa, || PrivateKey::from_pkcs1_der(&der))
        .map_err(|_| fail(rs::KEY_USE_ERROR))
}

/// Lowercase hex of secret bytes, written into a buffer sized once (no reallocation leaves
/// a copy behind) that is zeroized on drop.
fn secret_hex(bytes: &[u8]) -> Step<Zeroizing<String>> {
    let mut text = Zeroizing::new(vec![0u8; bytes.len() * 2]);
    hex::encode_to_slice(bytes, &mut text[..]).map_err(|_| fail(rs::KEY_USE_ERROR))?;
    // Moves the buffer, not a copy; hex digits are always UTF-8.
    String::from_utf8(std::mem::take(&mut *text))
        .map(Zeroizing::new)
        .map_err(|_| fail(rs::KEY_USE_ERROR))
}

fn public_of(key: &PrivateKey) -> Step<RsaPublicKey> {
    RsaPublicKey::from_rsa(&key.to_public_key()).map_err(|_| fail(rs::KEY_USE_ERROR))
}

/// SHA-256, RSA PKCS#1 v1.5: how the simulator signs (docs/ARCHITECTURE.md, "Formats").
fn sign(key: &PrivateKey, bytes: &[u8]) -> Step<Vec<u8>> {
    let digest = timing::measure(Category::Sha, || Sha256::digest(bytes));
    timing::measure(Category::Rsa, || {
        key.sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
    })
    .map_err(|_| fail(rs::KEY_USE_ERROR))
}

/// Build and sign a certificate section for `subject` with `signer`.
fn make_certificate(
    signer_label: &KeyLabel,
    signer: &PrivateKey,
    subject: RsaPublicKey,
    info: CertInfo,
) -> Step<CertificateSection> {
    let signature_len = signer.to_public_key().size();
    let unsigned = CertificateBuilder::new(subject, info)
        .to_be_signed(signer_label, signature_len)
        .map_err(|_| fail(rs::MALFORMED_REQUEST))?;
    let signature = sign(signer, unsigned.signed_bytes())?;
    unsigned
        .finish(signature)
        .map_err(|_| fail(rs::KEY_USE_ERROR))
}

fn generate<R: Rng + CryptoRng>(
    card: &mut CardState,
    label: KeyLabel,
    usage: KeyUsage,
    clone: bool,
    bits: u16,
    rng: &mut R,
) -> Step<Outcome> {
    if card.retained(&label).is_some() {
        return Err(fail(rs::NAME_EXISTS));
    }
    let bits_ok = mkclone_backend::RsaModulusBits::from_bits(bits)
        .map_err(|_| fail(rs::MALFORMED_REQUEST))?;
    let key = timing::measure(Category::Rsa, || keygen::generate(bits_ok, rng))
        .map_err(|_| fail(rs::KEY_USE_ERROR))?;
    let public = public_of(&key)?;
    // The token carries a certificate section self-signed by the new key, naming this
    // card: what CSNDPKH hashes and CSNDPKR registers on other nodes.
    let info = CertInfo {
        user_data: None,
        eid: card.eid.clone(),
        serial: Some(card.serial.clone()),
    };
    let certificate = make_certificate(&label, &key, public.clone(), info)?;
    let token = PublicKeyTokenView {
        key: public,
        certificate: Some(certificate),
    }
    .encode()
    .map_err(|_| fail(rs::KEY_USE_ERROR))?;
    let der = key.to_pkcs1_der().map_err(|_| fail(rs::KEY_USE_ERROR))?;
    card.retained.push(RetainedKey {
        label,
        usage,
        clone,
        bits,
        private_pkcs1: secret_hex(der.as_bytes())?,
        public_token: token.clone(),
    });
    Ok(done(ReplyBody::PublicKey(token)))
}

fn certify(
    card: &CardState,
    signer_label: &KeyLabel,
    subject: &PublicKeyToken,
    eid: Option<Eid>,
    serial: Option<SerialNumber>,
) -> Step<Outcome> {
    let signer = card
        .retained(signer_label)
        .ok_or_else(|| fail(rs::NAME_NOT_FOUND))?;
    if signer.usage != KeyUsage::SignatureOnly {
        return Err(fail(rs::WRONG_KEY_USAGE));
    }
    let subject = PublicKeyTokenView::decode(subject).map_err(|_| fail(rs::MALFORMED_REQUEST))?;
    let key = private_key(signer)?;
    let section = make_certificate(
        signer_label,
        &key,
        subject.key,
        CertInfo {
            user_data: None,
            eid,
            serial,
        },
    )?;
    let cert = section.encode().map_err(|_| fail(rs::KEY_USE_ERROR))?;
    Ok(read(ReplyBody::Certificate(cert)))
}

// ------------------------------------------------------------------------------------
// Public-key registry (CSNDPKH, CSNDPKR)
// ------------------------------------------------------------------------------------

fn register_hash(
    card: &mut CardState,
    name: KeyLabel,
    hash: PublicKeyHash,
    clone: bool,
) -> Outcome {
    if card.registration(&name).is_some() {
        return fail(rs::NAME_EXISTS);
    }
    card.registry.push(Registration {
        name,
        hash,
        clone,
        key: None,
    });
    done(ReplyBody::Empty)
}

fn register_key(
    card: &mut CardState,
    name: KeyLabel,
    certificate: mkclone_backend::Certificate,
    clone: bool,
) -> Outcome {
    let Some(i) = card.registry.iter().position(|r| r.name == name) else {
        return fail(rs::HASH_NOT_REGISTERED);
    };
    let entry = &card.registry[i];
    if entry.key.is_some() {
        return fail(rs::NAME_EXISTS);
    }
    let Ok(section) = CertificateSection::decode(&certificate) else {
        return fail(rs::CERTIFICATE_REJECTED);
    };
    // The key must be the one whose hash was registered before it (dual control).
    match registration_hash(&section) {
        Ok(h) if h == entry.hash => {}
        _ => return fail(rs::KEY_DOES_NOT_MATCH_HASH),
    }
    if entry.clone != clone {
        return fail(rs::CLONE_MARK_MISMATCH);
    }
    // A registered key certifies itself: its self-signature must verify.
    let self_signed = section
        .signatures
        .iter()
        .any(|s| section.verify(&s.signer, &section.key).is_ok());
    if !self_signed {
        return fail(rs::CERTIFICATE_NOT_VERIFIED);
    }
    card.registry[i].key = Some(certificate);
    done(ReplyBody::Empty)
}

/// The registered SA key under `sa_name`, usable for cloning.
fn sa_key(card: &CardState, sa_name: &KeyLabel) -> Step<RsaPublicKey> {
    let entry = card
        .registration(sa_name)
        .ok_or_else(|| fail(rs::HASH_NOT_REGISTERED))?;
    let cert = entry
        .key
        .as_ref()
        .ok_or_else(|| fail(rs::KEY_NOT_REGISTERED))?;
    if !entry.clone {
        return Err(fail(rs::HASH_NOT_FOR_CLONING));
    }
    let section = CertificateSection::decode(cert).map_err(|_| fail(rs::KEY_USE_ERROR))?;
    Ok(section.key)
}

/// A certificate issued by the registered SA key: its subject key and information.
fn certified(
    cert: &mkclone_backend::Certificate,
    sa_name: &KeyLabel,
    sa: &RsaPublicKey,
) -> Step<CertificateSection> {
    let section = CertificateSection::decode(cert).map_err(|_| fail(rs::CERTIFICATE_REJECTED))?;
    section
        .verify(sa_name, sa)
        .map_err(|_| fail(rs::CERTIFICATE_NOT_VERIFIED))?;
    Ok(section)
}

fn usable(card: &CardState, label: &KeyLabel, usage: KeyUsage) -> Step<PrivateKey> {
    let key = card
        .retained(label)
        .ok_or_else(|| fail(rs::NAME_NOT_FOUND))?;
    if key.usage != usage || !key.clone {
        return Err(fail(rs::WRONG_KEY_USAGE));
    }
    private_key(key)
}

// ------------------------------------------------------------------------------------
// Master_Key_Distribution
// ------------------------------------------------------------------------------------

fn obtain<R: Rng + CryptoRng>(
    card: &mut CardState,
    request: &ObtainShare,
    rng: &mut R,
) -> Step<Outcome> {
    let (kind, index, css_label) = (request.kind, request.index, &request.css_label);
    let (sa_name, csr_certificate) = (&request.sa_name, &request.csr_certificate);
    let current = card
        .keys(kind)
        .current
        .clone()
        .ok_or_else(|| fail(rs::CURRENT_NOT_VALID))?;
    let m_of_n = card.m_of_n.ok_or_else(|| fail(rs::MOFN_NOT_SET))?;
    let index = ShareIndex::from_u32(index)
        .and_then(|i| i.check_against(m_of_n))
        .map_err(|_| fail(rs::INDEX_OUT_OF_RANGE))?;
    let origin_eid = card.eid.clone().ok_or_else(|| fail(rs::EID_DATA_ERROR))?;
    let css = usable(card, css_label, KeyUsage::SignatureOnly)?;
    let sa = sa_key(card, sa_name)?;
    let csr = certified(csr_certificate, sa_name, &sa)?;
    let target_eid = csr
        .info
        .eid
        .clone()
        .ok_or_else(|| fail(rs::CERTIFICATE_REJECTED))?;

    // The polynomial is made once and kept, so share i is the same every time.
    let set = card.keys_mut(kind);
    let first = set.polynomial.is_none();
    if first {
        let rows = (1..m_of_n.m())
            .map(|_| {
                let mut row = [0u8; 24];
                rng.fill_bytes(&mut row);
                Secret24(row)
            })
            .collect();
        set.polynomial = Some(rows);
    }
    let rows: Vec<[u8; 24]> = set.polynomial.iter().flatten().map(|r| r.0).collect();
    let polynomial =
        Polynomial::new(&current.0, rows).map_err(|_| fail(rs::SHARE_DISTRIBUTION_ERROR))?;
    let share: ShareValue = polynomial.share(index);

    let info = CloneInfo {
        index,
        origin_eid,
        origin_serial: card.serial.clone(),
        kind,
        m_of_n,
        source_pattern: mkvp::sha1_method(&current.0),
        share,
    };
    let signature_len = css.to_public_key().size();
    let parts = seal::seal(
        &info,
        css_label,
        |bytes| sign(&css, bytes).map_err(|_| ()),
        signature_len,
        &target_eid,
        &csr.key,
        rng,
    )
    .map_err(|_| fail(rs::SHARE_DISTRIBUTION_ERROR))?;
    let sealed = parts
        .encode()
        .map_err(|_| fail(rs::SHARE_DISTRIBUTION_ERROR))?;

    let set = card.keys_mut(kind);
    let mut generation = statmofn::parse_generation(&set.generation)
        .map_err(|_| fail(rs::SHARE_DISTRIBUTION_ERROR))?;
    let moved = rules::tables::distribute(&mut generation, index);
    set.generation = statmofn::generation_digits(&generation).to_vec();
    // Saved only when something changed: from an index's third OBTAIN on, nothing does.
    Ok(if first || moved {
        done(ReplyBody::Share(sealed))
    } else {
        read(ReplyBody::Share(sealed))
    })
}

fn install(card: &mut CardState, request: &InstallShare) -> Step<Outcome> {
    let (kind, csr_label, sa_name) = (request.kind, &request.csr_label, &request.sa_name);
    let (css_certificate, share) = (&request.css_certificate, &request.share);
    let parts = SealedShareParts::decode(share).map_err(|_| fail(rs::SHARE_DATA_ERROR))?;
    // The header is checked first: a share for another card gets its own answer.
    let eid = card.eid.clone().ok_or_else(|| fail(rs::EID_DATA_ERROR))?;
    let csr = usable(card, csr_label, KeyUsage::KeyManagementOnly)?;
    let csr_public = public_of(&csr)?;
    parts
        .header
        .check_addressed_to(&eid, &csr_public.fingerprint())
        .map_err(|_| fail(rs::WRONG_TARGET))?;
    let m_of_n = card.m_of_n.ok_or_else(|| fail(rs::MOFN_NOT_SET))?;
    let sa = sa_key(card, sa_name)?;
    let css = certified(css_certificate, sa_name, &sa)?;

    // Every failure from here on is one answer: no padding oracle.
    let info = seal::open(
        &parts,
        |wrapped| {
            timing::measure(Category::Rsa, || {
                csr.decrypt(Oaep::<sha1::Sha1>::new(), wrapped)
            })
            .map(Zeroizing::new)
            .map_err(|_| ())
        },
        &css.key,
        None,
    )
    .map_err(|_| fail(rs::SHARE_DATA_ERROR))?;
    let set = card.keys(kind);
    let held: Vec<ShareFacts<'_>> = set.received.iter().map(ReceivedShare::facts).collect();
    let admission = admission::admit(
        &HeldShares {
            kind,
            m_of_n,
            new_empty: set.new.is_none(),
            received: &held,
        },
        &info.incoming(info.share.as_bytes()),
    )
    .map_err(refused)?;
    let progress = ReplyBody::InstallProgress {
        received: admission.received(),
        m: m_of_n.m(),
    };
    if let Admission::AlreadyReceived { .. } = admission {
        let set = card.keys_mut(kind);
        if !set.received_more.contains(&info.index.get()) {
            set.received_more.push(info.index.get());
        }
        return Ok(Outcome {
            reply: Reply {
                return_code: rt::WARNING,
                reason_code: rs::SHARE_ALREADY_RECEIVED,
                body: progress,
            },
            changed: true,
        });
    }

    let new_key = if admission.is_complete() {
        // Sized once: a Vec that grows frees its old block unwiped, shares and all.
        let mut received: Vec<(ShareIndex, ShareValue)> =
            Vec::with_capacity(set.received.len() + 1);
        received.extend(
            set.received
                .iter()
                .map(|s| (s.index, ShareValue::new(s.value.0))),
        );
        received.push((info.index, info.share.clone()));
        let key = shamir::combine(&received).map_err(|_| fail(rs::SHARE_DISTRIBUTION_ERROR))?;
        // The rebuilt key must be the source's: its pattern travelled signed in the share.
        admission::check_rebuilt(
            kind,
            info.index,
            &mkvp::sha1_method(key.as_bytes()),
            &info.source_pattern,
        )
        .map_err(refused)?;
        Some(Secret24(*key.as_bytes()))
    } else {
        None
    };

    let set = card.keys_mut(kind);
    push_wiping(
        &mut set.received,
        ReceivedShare {
            index: info.index,
            value: Secret24(*info.share.as_bytes()),
            origin_eid: info.origin_eid.clone(),
            origin_serial: info.origin_serial.clone(),
            source_pattern: info.source_pattern.clone(),
        },
    );
    if let Some(key) = new_key {
        set.new = Some(key);
        return Ok(Outcome {
            reply: Reply {
                return_code: rt::WARNING,
                reason_code: rs::SUFFICIENT_SHARES,
                body: progress,
            },
            changed: true,
        });
    }
    Ok(done(progress))
}

/// Add `share` to the shares a card holds. When the list is full, its shares are cloned
/// into a larger one and the old ones dropped, which wipes their values ([`Secret24`]);
/// a plain `push` would move them bytewise and free the old block with the shares in it.
fn push_wiping(received: &mut Vec<ReceivedShare>, share: ReceivedShare) {
    if received.len() == received.capacity() {
        // 15 shares at most (n ≤ 15): one larger list is the last.
        let mut larger =
            Vec::with_capacity(usize::from(mkclone_backend::MAX_SHARES).max(received.len() + 1));
        larger.extend(received.iter().cloned());
        *received = larger;
    }
    received.push(share);
}

/// A share refused by the rules, answered with its reason code.
fn refused(refusal: admission::Refusal) -> Outcome {
    debug!("{refusal}");
    fail(rc::refusal_reason(&refusal.reason))
}

// ------------------------------------------------------------------------------------
// Master_Key_Process
// ------------------------------------------------------------------------------------

fn master_key<R: Rng + CryptoRng>(
    card: &mut CardState,
    action: MkAction,
    kind: CloneableKind,
    rng: &mut R,
) -> Outcome {
    let m_of_n = card.m_of_n;
    let set = card.keys_mut(kind);
    match action {
        MkAction::Set => {
            let Some(new) = set.new.take() else {
                return fail(rs::NEW_NOT_FULL);
            };
            set.old = set.current.take();
            set.current = Some(new);
            set.clear_share_tables(m_of_n);
            done(ReplyBody::Empty)
        }
        MkAction::Clear => {
            if set.new.is_none() && set.received.is_empty() {
                return warn_same();
            }
            set.new = None;
            set.received.clear();
            set.received_more.clear();
            done(ReplyBody::Empty)
        }
        MkAction::Random => {
            let mut key = [0u8; 24];
            rng.fill_bytes(&mut key);
            fix_des_parity(&mut key);
            set.new = Some(Secret24(key));
            zeroize::Zeroize::zeroize(&mut key);
            done(ReplyBody::Empty)
        }
    }
}

/// DES keys carry odd parity in the low bit of each byte.
fn fix_des_parity(key: &mut [u8]) {
    for b in key {
        *b = (*b & 0xFE) | u8::from((*b >> 1).count_ones() % 2 == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retained key's private half goes to hex and back through buffers sized once; the
    /// text is what `hex` writes, and damaged text is the key-use error, never a panic.
    #[test]
    fn a_retained_keys_hex_text_round_trips_and_damaged_text_is_a_key_use_error() {
        let mut rng = rand::rng();
        let mut card = CardState::new(SerialNumber::new("S1").unwrap());
        let request = Request::GenerateRetained {
            label: KeyLabel::new("MKCLONE.TEST.KEY").unwrap(),
            usage: KeyUsage::SignatureOnly,
            clone: false,
            bits: 2048,
        };
        assert!(execute(&mut card, request, &mut rng).changed);
        let key = card.retained[0].clone();
        let der = hex::decode(key.private_pkcs1.as_str()).unwrap();
        let (Ok(text), Ok(private)) = (secret_hex(&der), private_key(&key)) else {
            panic!("the generated key does not go to hex and back");
        };
        assert_eq!(*text, hex::encode(&der));
        assert_eq!(private.to_pkcs1_der().unwrap().as_bytes(), &der[..]);

        let key_use = |text: String| {
            let damaged = RetainedKey {
                private_pkcs1: Zeroizing::new(text),
                ..key.clone()
            };
            match private_key(&damaged) {
                Ok(_) => false,
                Err(outcome) => outcome.reply.reason_code == rs::KEY_USE_ERROR,
            }
        };
        let text = key.private_pkcs1.as_str();
        assert!(key_use(text[1..].to_string()), "odd length");
        assert!(key_use(format!("zz{}", &text[2..])), "not hex");
        assert!(key_use(format!("00{}", &text[2..])), "not DER");
        assert!(key_use(String::new()), "empty");
    }

    /// The requests answered without the right to change the card are exactly those that
    /// only read it: `execute` gives the same reply for each and says nothing changed, and
    /// every request that may change the card is handed back to `execute`.
    #[test]
    fn only_requests_that_read_the_card_skip_the_copy_of_its_state() {
        let mut rng = rand::rng();
        let mut card = CardState::new(SerialNumber::new("S1").unwrap());
        let label = KeyLabel::new("MKCLONE.TEST.KEY").unwrap();
        for setup in [
            Request::SetEid(Eid::new("TEST.EID").unwrap()),
            Request::MasterKey {
                action: MkAction::Random,
                kind: CloneableKind::Sym,
            },
            Request::GenerateRetained {
                label: label.clone(),
                usage: KeyUsage::SignatureOnly,
                clone: true,
                bits: 2048,
            },
        ] {
            assert!(execute(&mut card, setup, &mut rng).changed);
        }

        let reading = [
            Request::Query(Query::StatCcae),
            Request::Query(Query::StatEid),
            Request::Query(Query::StatIcsa),
            Request::Query(Query::StatIcsb),
            Request::Patterns,
            Request::ShareTables,
            Request::RetainedPublicKey {
                label: label.clone(),
            },
            Request::ListRetained,
            Request::ListRegistrations,
        ];
        for request in reading {
            let read = execute_read(&card, request.clone())
                .unwrap_or_else(|r| panic!("{:?} was handed back", r.function()));
            let mut copy = card.clone();
            let full = execute(&mut copy, request.clone(), &mut rng);
            assert_eq!(read.reply, full.reply, "{:?}", request.function());
            assert!(!read.changed && !full.changed, "{:?}", request.function());
        }

        let changing = [
            Request::SetEid(Eid::new("OTHER.EID").unwrap()),
            Request::SetMofN { m: 2, n: 3 },
            Request::GenerateRetained {
                label: KeyLabel::new("MKCLONE.TEST.OTHER").unwrap(),
                usage: KeyUsage::SignatureOnly,
                clone: false,
                bits: 2048,
            },
            Request::DeleteRetained {
                label: label.clone(),
            },
            Request::UnregisterKey {
                name: label.clone(),
            },
            Request::MasterKey {
                action: MkAction::Clear,
                kind: CloneableKind::Sym,
            },
        ];
        for request in changing {
            match execute_read(&card, request.clone()) {
                Err(back) => assert_eq!(back, request),
                Ok(_) => panic!("{:?} was answered as a read", request.function()),
            }
        }
    }
}
