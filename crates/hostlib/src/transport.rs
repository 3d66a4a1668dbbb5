//! `LibTransport`: `CcaBackend`'s typed requests carried out as calls of the documented
//! verbs, so that every reconciliation and every return/reason-code mapping of
//! `CcaBackend` (the one table in crates/cca) serves this backend too.
//!
//! The request codes never leave the process: each request is decoded here and becomes
//! one or two verb calls (the mapping of each is cited where it is made). The requests
//! with no published verb (set EID, set m-of-n, list registrations, unregister, certify,
//! list retained keys with their usage) go to the simulated library's extension only;
//! on IBM's library `HostlibBackend` refuses them before they get here, and this
//! transport would refuse them too.

use std::sync::{Arc, Mutex};

use mkclone_backend::{CloneableKind, GenerationState, ReceptionState, ShareIndex, ShareTables};
use mkclone_cca::facility::{StaticsA, StaticsB};
use mkclone_cca::parm::Keyword;
use mkclone_cca::verbs::{MkAction, Query, Reply, ReplyBody, Request};
use mkclone_cca::{Transport, TransportError};
use mkclone_formats::pka::CertificateSection;
use mkclone_formats::seal::{SealedShareParts, ShareHeader};

use crate::args::{Args, Verb};
use crate::library::Shared;
use crate::verbs;

/// What the reply of a failed step carries: the verb's codes.
type Step<T> = Result<T, Reply>;

/// CSUACFQ's answer: the output rule-array elements and the verb data.
type QueryAnswer = (Vec<Keyword>, Vec<u8>);

pub struct LibTransport {
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) adapter: u8,
    pub(crate) domain: u16,
    pub(crate) simulated: bool,
}

fn code(v: i64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// The codes of a call that did not succeed, as a reply.
fn failed(args: &Args) -> Reply {
    Reply::code(code(args.return_code), code(args.reason_code))
}

fn malformed(verb: Verb, detail: impl std::fmt::Display) -> TransportError {
    TransportError::OutcomeUnknown(format!("the answer to {verb} is malformed: {detail}"))
}

/// A call that failed: not sent, unless the library thread ended during it (a request
/// may have reached the card).
fn not_sent(e: crate::HostlibError) -> TransportError {
    match e {
        crate::HostlibError::LibraryThread(_) => TransportError::OutcomeUnknown(e.to_string()),
        e => TransportError::NotSent(e.to_string()),
    }
}

impl LibTransport {
    /// Make sure this node's adapter is the one allocated, then run `args` (the adapter
    /// allocated is state of the library and of the thread that calls it, the library
    /// thread: s390-tools zkey/cca.c, select_cca_adapter; `library_thread.rs`).
    fn call(&self, shared: &mut Shared, args: &mut Args) -> Result<(), TransportError> {
        select(shared, self.adapter).map_err(not_sent)?;
        shared.call(args).map_err(not_sent)
    }

    /// One verb; `Ok(Err(reply))` when it answered a failure.
    fn verb(&self, shared: &mut Shared, mut args: Args) -> Result<Step<Args>, TransportError> {
        self.call(shared, &mut args)?;
        Ok(if args.return_code == 0 {
            Ok(args)
        } else {
            Err(failed(&args))
        })
    }

    /// CSUACFQ `keyword`: the output elements and verb data.
    fn query(
        &self,
        shared: &mut Shared,
        keyword: &str,
        room: usize,
    ) -> Result<Step<QueryAnswer>, TransportError> {
        let args = match self.verb(shared, verbs::query(keyword, room))? {
            Ok(a) => a,
            Err(r) => return Ok(Err(r)),
        };
        let count = usize::try_from(args.rule_count).unwrap_or(0);
        let elements = (0..count)
            .map_while(|i| args.element(i))
            .map(|e| Keyword::from_bytes(e.try_into().unwrap_or([b' '; 8])))
            .collect();
        let data = if room == 0 {
            Vec::new()
        } else {
            args.output(0)
                .map_err(|e| malformed(Verb::Csuacfq, e))?
                .to_vec()
        };
        Ok(Ok((elements, data)))
    }

    /// The project extension (simulated library only).
    fn ext(&self, shared: &mut Shared, request: &Request) -> Result<Reply, TransportError> {
        if !self.simulated {
            return Err(TransportError::NotSent(format!(
                "{} has no published verb; IBM's library cannot be asked for it",
                request.function().info().verb
            )));
        }
        select(shared, self.adapter).map_err(not_sent)?;
        let message = request
            .to_message(self.domain, mkclone_cca::REPLY_CAPACITY)
            .map_err(|e| TransportError::NotSent(e.to_string()))?;
        let (rc, rs, reply) = shared
            .ext_call(&message, mkclone_cca::REPLY_CAPACITY)
            .map_err(not_sent)?;
        if rc != 0 {
            return Ok(Reply::code(code(rc), code(rs)));
        }
        Reply::from_message(&reply, request).map_err(|e| malformed(Verb::Csuacfq, e))
    }

    /// The share tables: STATMOFN on IBM's library (one table, which CCA keeps for the
    /// card: reported for each cloneable master key); the per-key tables of the simulated
    /// card through the extension.
    fn share_tables(&self, shared: &mut Shared) -> Result<Reply, TransportError> {
        if self.simulated {
            return self.ext(shared, &Request::ShareTables);
        }
        let (e, _) = match self.query(shared, "STATMOFN", 0)? {
            Ok(x) => x,
            Err(r) => return Ok(r),
        };
        let (m_of_n, row) = decode_statmofn(&e).map_err(|d| malformed(Verb::Csuacfq, d))?;
        let tables = CloneableKind::ALL
            .into_iter()
            .map(|kind| ShareTables {
                kind,
                generation: row.0,
                reception: row.1,
            })
            .collect();
        Ok(Reply::ok(ReplyBody::ShareTables { m_of_n, tables }))
    }

    fn run(&self, shared: &mut Shared, request: &Request) -> Result<Reply, TransportError> {
        macro_rules! step {
            ($e:expr) => {
                match $e? {
                    Ok(v) => v,
                    Err(reply) => return Ok(reply),
                }
            };
        }
        match request {
            Request::Query(q) => {
                let (keyword, room) = match q {
                    Query::StatCcae => ("STATCCAE", 0),
                    Query::StatEid => ("STATEID", 0),
                    Query::StatIcsa => ("STATICSA", verbs::VERB_DATA_ROOM),
                    Query::StatIcsb => ("STATICSB", verbs::VERB_DATA_ROOM),
                };
                let (e, data) = step!(self.query(shared, keyword, room));
                let body = match q {
                    Query::StatCcae | Query::StatEid => ReplyBody::Elements(e),
                    Query::StatIcsa => ReplyBody::StaticsA(Box::new(
                        StaticsA::decode(&e, &data).map_err(|d| malformed(Verb::Csuacfq, d))?,
                    )),
                    Query::StatIcsb => ReplyBody::StaticsB(Box::new(
                        StaticsB::decode(&e, &data).map_err(|d| malformed(Verb::Csuacfq, d))?,
                    )),
                };
                Ok(Reply::ok(body))
            }
            Request::Patterns if !self.simulated => {
                // IBM's library: no SHA-1-method patterns beyond STATICSB's; the serial from
                // STATCRD2 element 15 (opencryptoki CCA_STATCRD2_SERIAL_NUMBER_OFFSET 112).
                let (e, _) = step!(self.query(shared, "STATCRD2", 0));
                let serial = e
                    .get(14)
                    .and_then(|k| mkclone_backend::SerialNumber::from_wire(&k.bytes()).ok())
                    .ok_or_else(|| malformed(Verb::Csuacfq, "STATCRD2 has no serial number"))?;
                Ok(Reply::ok(ReplyBody::Patterns {
                    serial,
                    entries: Vec::new(),
                }))
            }
            Request::ShareTables => self.share_tables(shared),
            Request::GenerateRetained {
                label,
                usage,
                clone,
                bits,
            } => {
                // CSNDPKB builds the skeleton, CSNDPKG RETAIN [CLONE] generates and keeps it.
                let pkb =
                    step!(self.verb(shared, verbs::build_skeleton(label.as_str(), *usage, *bits)));
                let skeleton = pkb
                    .output(7)
                    .map_err(|e| malformed(Verb::Csndpkb, e))?
                    .to_vec();
                let pkg = step!(self.verb(shared, verbs::generate_retained(&skeleton, *clone)));
                let token = pkg.output(3).map_err(|e| malformed(Verb::Csndpkg, e))?;
                let token = mkclone_backend::PublicKeyToken::new(token.to_vec())
                    .map_err(|e| malformed(Verb::Csndpkg, e))?;
                Ok(Reply::ok(ReplyBody::PublicKey(token)))
            }
            Request::RetainedPublicKey { label } => {
                let pkx = step!(self.verb(shared, verbs::public_key_extract(label.as_str())));
                let token = pkx.output(1).map_err(|e| malformed(Verb::Csndpkx, e))?;
                let token = mkclone_backend::PublicKeyToken::new(token.to_vec())
                    .map_err(|e| malformed(Verb::Csndpkx, e))?;
                Ok(Reply::ok(ReplyBody::PublicKey(token)))
            }
            Request::DeleteRetained { label } => {
                step!(self.verb(shared, verbs::delete_retained(label.as_str())));
                Ok(Reply::ok(ReplyBody::Empty))
            }
            Request::RegisterHash { name, hash, clone } => {
                let args =
                    verbs::register_hash(name.as_str(), hash.algorithm(), hash.bytes(), *clone);
                step!(self.verb(shared, args));
                Ok(Reply::ok(ReplyBody::Empty))
            }
            Request::RegisterKey {
                name,
                certificate,
                clone,
            } => {
                let args = verbs::register_key(name.as_str(), certificate.as_bytes(), *clone);
                step!(self.verb(shared, args));
                Ok(Reply::ok(ReplyBody::Empty))
            }
            Request::Obtain(o) => {
                let (kind, index, css_label) = (&o.kind, &o.index, &o.css_label);
                let (sa_name, csr_certificate) = (&o.sa_name, &o.csr_certificate);
                // The container's header names the target from the certificate the SA
                // signed (its key and EID) and the origin from this node's STATEID; the two
                // outputs of CSUAMKD OBTAIN are carried as they are.
                let section = CertificateSection::decode(csr_certificate)
                    .map_err(|e| TransportError::NotSent(format!("the CSR certificate: {e}")))?;
                let Some(target_eid) = section.info.eid.clone() else {
                    return Err(TransportError::NotSent(
                        "the CSR certificate names no EID, so the share could not be addressed"
                            .into(),
                    ));
                };
                let index8 = u8::try_from(*index).unwrap_or(0);
                let share_index =
                    ShareIndex::new(index8).map_err(|e| TransportError::NotSent(e.to_string()))?;
                let (eid, _) = step!(self.query(shared, "STATEID", 0));
                let eid_bytes: Vec<u8> = eid.iter().flat_map(|k| k.bytes()).collect();
                let origin_eid = mkclone_backend::Eid::from_wire(&eid_bytes)
                    .map_err(|e| malformed(Verb::Csuacfq, e))?;
                let args = verbs::obtain(
                    *kind,
                    index8,
                    css_label.as_str(),
                    sa_name.as_str(),
                    csr_certificate.as_bytes(),
                );
                let mkd = step!(self.verb(shared, args));
                let key = mkd.output(4).map_err(|e| malformed(Verb::Csuamkd, e))?;
                let info = mkd.output(5).map_err(|e| malformed(Verb::Csuamkd, e))?;
                let share = SealedShareParts {
                    header: ShareHeader {
                        target_eid,
                        csr_fingerprint: section.key.fingerprint(),
                        kind: *kind,
                        index: share_index,
                        origin_eid,
                    },
                    wrapped_key: key.to_vec(),
                    encrypted_clone_info: info.to_vec(),
                }
                .encode()
                .map_err(|e| malformed(Verb::Csuamkd, e))?;
                Ok(Reply::ok(ReplyBody::Share(share)))
            }
            Request::Install(i) => {
                let (kind, csr_label, sa_name) = (&i.kind, &i.csr_label, &i.sa_name);
                let (css_certificate, share) = (&i.css_certificate, &i.share);
                let parts = SealedShareParts::decode(share)
                    .map_err(|e| TransportError::NotSent(format!("the share: {e}")))?;
                let args = verbs::install(
                    *kind,
                    parts.header.index.get(),
                    csr_label.as_str(),
                    sa_name.as_str(),
                    css_certificate.as_bytes(),
                    &parts.wrapped_key,
                    &parts.encrypted_clone_info,
                );
                let mut mkd = args;
                self.call(shared, &mut mkd)?;
                let (rc, rs) = (code(mkd.return_code), code(mkd.reason_code));
                if rc != 0 && rc != 4 {
                    return Ok(Reply::code(rc, rs));
                }
                // CSUAMKD answers 4/1024 at the m-th share, 0 before ([BSR 2.54]); how many
                // are held is STATMOFN's reception row.
                let progress = match self.share_tables(shared)?.body {
                    ReplyBody::ShareTables { m_of_n, tables } => {
                        let m = m_of_n.map(|(m, _)| m).unwrap_or(0);
                        let received = tables
                            .iter()
                            .find(|t| t.kind == *kind)
                            .map(|t| t.received().len() as u8)
                            .unwrap_or(0);
                        let received = if (rc, rs) == (4, mkclone_cca::rc::rs::SUFFICIENT_SHARES) {
                            m
                        } else {
                            received
                        };
                        ReplyBody::InstallProgress { received, m }
                    }
                    _ => return Err(malformed(Verb::Csuacfq, "no share tables")),
                };
                Ok(Reply {
                    return_code: rc,
                    reason_code: rs,
                    body: progress,
                })
            }
            Request::MasterKey { action, kind } => {
                let word = match action {
                    MkAction::Set => "SET",
                    MkAction::Clear => "CLEAR",
                    MkAction::Random => "RANDOM",
                };
                let mut args = verbs::master_key(word, *kind);
                self.call(shared, &mut args)?;
                Ok(Reply::code(code(args.return_code), code(args.reason_code)))
            }
            // No published verb: the simulated library's extension (refused on IBM's).
            other => self.ext(shared, other),
        }
    }
}

impl LibTransport {
    /// CSUAACM GET-ROLE of `role` on this node's adapter: the call, with its codes.
    pub(crate) fn get_role(&self, role: &[u8; 8]) -> Result<Args, crate::HostlibError> {
        let shared = self.shared.clone();
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        select(&mut guard, self.adapter)?;
        let mut args = verbs::get_role(role);
        guard.call(&mut args)?;
        Ok(args)
    }
}

/// Allocate `adapter` unless it is the one allocated: the first time, autoselect is
/// turned off (CSUACRD DEV-ANY), as zkey does before walking the adapters.
pub(crate) fn select(shared: &mut Shared, adapter: u8) -> Result<(), crate::HostlibError> {
    if shared.allocated == Some(adapter) {
        return Ok(());
    }
    let mut release = match shared.allocated {
        None => verbs::resource(Verb::Csuacrd, None),
        Some(old) => verbs::resource(Verb::Csuacrd, Some(old)),
    };
    shared.call(&mut release)?;
    let mut allocate = verbs::resource(Verb::Csuacra, Some(adapter));
    shared.call(&mut allocate)?;
    if allocate.return_code != 0 {
        shared.allocated = None;
        return Err(crate::HostlibError::verb(
            "CSUACRA",
            format!("allocating adapter CRP{adapter:02}"),
            allocate.return_code,
            allocate.reason_code,
        ));
    }
    shared.allocated = Some(adapter);
    Ok(())
}

/// STATMOFN's elements: 1-2 the 15 generation digits, 3-4 the 15 reception digits, 5 m
/// and 6 n as two digits (reference/cca-cloning.md, [BSR 2.54] Figure 2-3). m = n = 0
/// (or blank) means no m-of-n.
#[allow(clippy::type_complexity)]
pub fn decode_statmofn(
    e: &[Keyword],
) -> Result<
    (
        Option<(u8, u8)>,
        ([GenerationState; 15], [ReceptionState; 15]),
    ),
    String,
> {
    if e.len() < 6 {
        return Err(format!(
            "STATMOFN returned {} elements, 6 expected",
            e.len()
        ));
    }
    let join = |a: &Keyword, b: &Keyword| -> Vec<u8> {
        a.bytes()
            .iter()
            .chain(b.bytes().iter())
            .take(15)
            .copied()
            .collect()
    };
    let generation = mkclone_backend::rules::statmofn::parse_generation(&join(&e[0], &e[1]))
        .map_err(|x| x.to_string())?;
    let reception = mkclone_backend::rules::statmofn::parse_reception(&join(&e[2], &e[3]))
        .map_err(|x| x.to_string())?;
    let number = |k: &Keyword| -> Result<u8, String> {
        let t = k.text();
        let t = t.trim();
        if t.is_empty() {
            return Ok(0);
        }
        t.parse::<u8>()
            .map_err(|_| format!("STATMOFN m/n element {t:?} is not a number"))
    };
    let (m, n) = (number(&e[4])?, number(&e[5])?);
    let m_of_n = (m != 0 || n != 0).then_some((m, n));
    Ok((m_of_n, (generation, reception)))
}

impl Transport for LibTransport {
    fn backend_name(&self) -> &'static str {
        "cca"
    }

    fn is_real_device(&self) -> bool {
        !self.simulated
    }

    /// The request codes are only the in-process form of a call (see the module's
    /// comment): nothing project-assigned reaches IBM's library.
    fn allows_project_encodings(&self) -> bool {
        true
    }

    fn domain(&self) -> u16 {
        self.domain
    }

    fn send(
        &mut self,
        request: &[u8],
        _reply_capacity: usize,
        _idempotent: bool,
    ) -> Result<Vec<u8>, TransportError> {
        let (_, decoded) = Request::from_message(request)
            .map_err(|e| TransportError::NotSent(format!("request not understood: {e}")))?;
        let shared = self.shared.clone();
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        let reply = self.run(&mut guard, &decoded)?;
        reply
            .to_message(decoded.function(), self.domain)
            .map_err(|e| TransportError::OutcomeUnknown(e.to_string()))
    }
}
