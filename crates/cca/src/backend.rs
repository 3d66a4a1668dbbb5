//! `CcaBackend`: the `Backend` trait spoken in CCA requests over a [`Transport`].
//!
//! Each operation is one or a few verbs. Return/reason codes become typed errors; a
//! "name already exists" becomes `AlreadyDone` or `Conflict` after reading the node's
//! real state, so that a rerun of an interrupted ceremony converges.

use std::collections::BTreeSet;

use log::{debug, warn};
use mkclone_backend::rules::rerun;
use mkclone_backend::{
    Applied, Backend, BackendError, Capabilities, Certificate, CloneableKind, CurrentState, Eid,
    GenerateRequest, Identity, InstallProgress, InstallRequest, KeyLabel, MasterKeyKind, MofN,
    NewState, NodeStatus, ObtainRequest, Operation, PublicKeyHash, PublicKeyToken, RegisterStatus,
    Registration, Result, RetainedKeyInfo, SealedShare, SerialNumber, ShareIndex, ShareStatus,
    SubjectInfo,
};
use mkclone_formats::pka::PublicKeyTokenView;
use mkclone_formats::seal::SealedShareParts;

use crate::REPLY_CAPACITY;
use crate::facility::{MasterKeyRegisters, StaticsA, StaticsB};
use crate::function::{Encoding, FunctionCode};
use crate::parm::Keyword;
use crate::rc::{self, rs, rt};
use crate::transport::{Transport, TransportError};
use crate::verbs::{
    InstallShare, MkAction, ObtainShare, Query, Register, Reply, ReplyBody, Request,
};

/// The codes of a deletion that finds nothing to delete: already done.
const ALREADY_DELETED: (u16, u16) = (rt::ERROR, rs::NAME_NOT_FOUND);
/// The codes of a setting already in place: already done.
const ALREADY_IN_PLACE: (u16, u16) = (rt::WARNING, rs::ALREADY_IN_STATE);

/// A CCA node: a coprocessor domain behind a transport.
pub struct CcaBackend<T: Transport> {
    transport: T,
    /// What the last request, a successful install, checked its share's header against;
    /// every request sent forgets it (see [`InstallContext`]).
    install_context: Option<InstallContext>,
}

/// The node's EID and CSR key fingerprint, as an install read them to check a share's
/// header (the host's early check, which gives a share for another node its own error
/// before any cryptography runs). The next install reuses them only if it is the very next
/// request and names the same CSR key: installing a share changes neither, and nothing
/// else was sent in between. Any request forgets them, so a phase's installs of one key
/// read them once, not once per share (two requests each, milliseconds on a real card).
/// Another program acting on the card between two installs is not seen by that check,
/// as by any check of a device as of its last read; the share stays bound to the CSR
/// key's holder by the key wrapped to it, which the card alone can unwrap.
struct InstallContext {
    csr_label: KeyLabel,
    eid: Eid,
    csr_fingerprint: [u8; 32],
}

/// What a failure message needs to name.
#[derive(Default)]
struct Ctx<'a> {
    name: Option<&'a KeyLabel>,
    kind: Option<CloneableKind>,
    index: Option<ShareIndex>,
}

impl<'a> Ctx<'a> {
    fn named(name: &'a KeyLabel) -> Self {
        Self {
            name: Some(name),
            ..Self::default()
        }
    }

    fn of_kind(kind: CloneableKind) -> Self {
        Self {
            kind: Some(kind),
            ..Self::default()
        }
    }

    /// A share verb's failure: key errors are about the retained key `key` (CSS or CSR),
    /// registry errors about the SA name.
    fn share(
        reason_code: u16,
        key: &'a KeyLabel,
        sa_name: &'a KeyLabel,
        kind: CloneableKind,
        index: ShareIndex,
    ) -> Self {
        let name = match reason_code {
            rs::NAME_NOT_FOUND | rs::WRONG_KEY_USAGE => key,
            _ => sa_name,
        };
        Self {
            name: Some(name),
            kind: Some(kind),
            index: Some(index),
        }
    }
}

/// The value `$value` of a reply that must be `$body`, from a call that must succeed
/// (`CcaBackend::call_ok` with no names for its errors); another body is a malformed
/// reply. Evaluates to a `Result`.
macro_rules! read_reply {
    ($backend:expr, $op:expr, $request:expr, $body:pat => $value:expr) => {
        match $backend.call_ok($op, &$request, Ctx::default()) {
            Ok($body) => Ok($value),
            Ok(other) => Err(unexpected($op, &other)),
            Err(e) => Err(e),
        }
    };
}

impl<T: Transport> CcaBackend<T> {
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            install_context: None,
        }
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, to configure or to send through directly: whatever is sent that
    /// way, the next install reads the node again (the install context is forgotten).
    pub fn transport_mut(&mut self) -> &mut T {
        self.install_context = None;
        &mut self.transport
    }

    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Whether this node can send `function` at all (the provenance guard): a
    /// project-assigned code goes only where the transport allows it, which by default
    /// means only where no real device is behind it.
    fn may_send(&self, function: FunctionCode) -> bool {
        !function.is_project_assigned() || self.transport.allows_project_encodings()
    }

    /// The provenance guard for one request: its function code, and for FQ its rule
    /// form (`function::QUERY_RULES`).
    fn may_send_request(&self, request: &Request) -> bool {
        !request.encoding().is_project_assigned() || self.transport.allows_project_encodings()
    }

    /// `NotSupported` for `op` when a request of `encoding` may not be sent here (the
    /// provenance guard).
    fn guard(&self, op: Operation, encoding: Encoding) -> Result<()> {
        if !encoding.is_project_assigned() || self.transport.allows_project_encodings() {
            return Ok(());
        }
        let hint = if encoding.function == FunctionCode::FacilityQuery {
            format!(
                "no public source shows the CPRB encoding of {}: mkclone's is its own and is sent only to \
                 the simulator. Through public encodings mkclone reads the serial and the ASYM, AES and \
                 APKA master-key registers (FQ STATICSA/STATICSB; `mkclone devices` shows the same from \
                 sysfs). The EID and the SYM register states cannot be read without IBM's CCA host library \
                 (CSUACFQ, as IBM's CNM utility and panel.exe call it)",
                encoding.what
            )
        } else {
            format!(
                "IBM has not published the encoding of {}; mkclone's encoding for it is its own and runs only \
                 on the simulator (backend = \"sim\"). On this coprocessor use IBM's CNM utility or TKE for this step",
                encoding.what
            )
        };
        Err(BackendError::NotSupported {
            operation: op,
            backend: self.transport.backend_name(),
            hint,
        })
    }

    /// The public facility queries, FQ STATICSA and STATICSB, as the kernel sends them:
    /// the serial, the ASYM, AES and APKA register states and patterns, and the SYM
    /// patterns. Allowed on every transport (public encodings).
    pub fn facility_query(&mut self) -> Result<(StaticsA, StaticsB)> {
        let a: StaticsA = read_reply!(self, Operation::Status, Request::Query(Query::StatIcsa),
            ReplyBody::StaticsA(a) => *a)?;
        let b: StaticsB = read_reply!(self, Operation::Status, Request::Query(Query::StatIcsb),
            ReplyBody::StaticsB(b) => *b)?;
        Ok((a, b))
    }

    /// Send one request and decode its reply (codes not yet interpreted).
    fn call(&mut self, op: Operation, request: &Request) -> Result<Reply> {
        // Whatever this request is, the install context is no longer the last request's.
        self.install_context = None;
        let function = request.function();
        self.guard(op, request.encoding())?;
        let message = request
            .to_message(self.transport.domain(), REPLY_CAPACITY)
            .map_err(|e| BackendError::Transport {
                operation: op,
                cause: format!("the request could not be encoded: {e}"),
            })?;
        let backend = self.transport.backend_name();
        debug!("{backend}: sending {function} ({} bytes)", message.len());
        let idempotent = request.is_idempotent();
        // A read may be repeated at no risk: one transport failure of a read is retried.
        let mut sent = self.transport.send(&message, REPLY_CAPACITY, idempotent);
        if idempotent && sent.is_err() {
            debug!("{backend}: {function} failed in transport, retrying the read once");
            sent = self.transport.send(&message, REPLY_CAPACITY, idempotent);
        }
        let reply_bytes = sent.map_err(|e| match e {
            TransportError::NotSent(cause) => BackendError::Transport {
                operation: op,
                cause,
            },
            TransportError::OutcomeUnknown(cause) => BackendError::OutcomeUnknown {
                operation: op,
                cause,
            },
        })?;
        let reply = Reply::from_message(&reply_bytes, request).map_err(|e| {
            if idempotent {
                BackendError::MalformedReply {
                    operation: op,
                    detail: e.to_string(),
                }
            } else {
                BackendError::OutcomeUnknown {
                    operation: op,
                    cause: format!("the reply is malformed ({e})"),
                }
            }
        })?;
        let (return_code, reason_code) = (reply.return_code, reply.reason_code);
        debug!("{backend}: {function} answered {return_code}/{reason_code}");
        Ok(reply)
    }

    /// A call that must succeed with return code 0.
    fn call_ok(&mut self, op: Operation, request: &Request, ctx: Ctx<'_>) -> Result<ReplyBody> {
        let reply = self.call(op, request)?;
        if reply.return_code == rt::OK {
            Ok(reply.body)
        } else {
            Err(self.failure(op, &reply, ctx))
        }
    }

    /// Turn a failing reply into the most specific error.
    fn failure(&mut self, op: Operation, reply: &Reply, ctx: Ctx<'_>) -> BackendError {
        let name = || ctx.name.cloned();
        let kind = ctx.kind.unwrap_or(CloneableKind::Sym);
        let typed = match reply.reason_code {
            rs::HASH_NOT_REGISTERED => name().map(|name| BackendError::HashNotRegistered { name }),
            rs::KEY_NOT_REGISTERED => name().map(|name| BackendError::KeyNotRegistered { name }),
            rs::KEY_DOES_NOT_MATCH_HASH => {
                name().map(|name| BackendError::KeyDoesNotMatchHash { name })
            }
            rs::HASH_NOT_FOR_CLONING => {
                name().map(|name| BackendError::NotMarkedForCloning { name })
            }
            rs::CLONE_MARK_MISMATCH => name().map(|name| BackendError::CloneMarkMismatch { name }),
            rs::NAME_NOT_FOUND => name().map(|label| BackendError::RetainedKeyNotFound { label }),
            rs::WRONG_KEY_USAGE => name().map(|label| BackendError::WrongKeyUsage {
                label,
                needed: match op {
                    Operation::InstallShare => "unwrapping a share key",
                    _ => "signing",
                },
                usage: "different-usage",
            }),
            rs::CERTIFICATE_NOT_VERIFIED | rs::CERTIFICATE_REJECTED => {
                Some(BackendError::CertificateRejected {
                    reason: rc::message(reply.return_code, reply.reason_code)
                        .trim_start_matches("[mkclone] ")
                        .to_string(),
                })
            }
            rs::SHARE_DATA_ERROR => Some(BackendError::ShareRejected),
            // The share's enciphering key does not decipher under this node's CSR key: as
            // any other share that does not decrypt (the simulator answers SHARE_DATA_ERROR).
            rs::SHARE_KEY_FAILED if op == Operation::InstallShare => {
                Some(BackendError::ShareRejected)
            }
            rs::WRONG_TARGET => Some(BackendError::WrongTarget {
                expected_eid: "(named in the share)".into(),
                expected_key: "(named in the share)".into(),
                actual_eid: "(this node)".into(),
                actual_key: "(this node's CSR key)".into(),
            }),
            // Share refusals: the codes `rc::refusal_reason` gives each rule, back to the
            // error `BackendError::from(Refusal)` gives it on every backend.
            rs::SHARE_INDEX_CONFLICT => ctx
                .index
                .map(|index| BackendError::DuplicateShare { kind, index }),
            rs::KEY_ALREADY_COMPLETE => Some(BackendError::KeyAlreadyComplete { kind }),
            rs::SHARE_DISTRIBUTION_ERROR if op == Operation::InstallShare => {
                Some(BackendError::ShareMismatch { kind })
            }
            rs::NEW_NOT_FULL => Some(BackendError::NewNotFull { kind }),
            rs::NEW_NOT_EMPTY => Some(BackendError::NewNotEmpty { kind }),
            rs::CURRENT_NOT_VALID => Some(BackendError::CurrentNotValid { kind }),
            rs::MOFN_NOT_SET => Some(BackendError::MofNNotSet),
            rs::INDEX_OUT_OF_RANGE => ctx.index.map(|index| {
                let n = self
                    .share_status()
                    .ok()
                    .and_then(|s| s.m_of_n)
                    .map(|mn| mn.n())
                    .unwrap_or(0);
                BackendError::IndexOutOfRange { index, n }
            }),
            _ => None,
        };
        typed.unwrap_or_else(|| BackendError::Device {
            operation: op,
            return_code: reply.return_code,
            reason_code: reply.reason_code,
            message: rc::message(reply.return_code, reply.reason_code).to_string(),
        })
    }

    /// A registration under `name` (hash or key): `Done`, or after "name already exists"
    /// what `reconcile` makes of the registration found there.
    fn register(
        &mut self,
        op: Operation,
        request: &Request,
        name: &KeyLabel,
        reconcile: impl FnOnce(Registration) -> Result<Applied<()>>,
    ) -> Result<Applied<()>> {
        let reply = self.call(op, request)?;
        match (reply.return_code, reply.reason_code) {
            (rt::OK, _) => Ok(Applied::Done(())),
            (rt::ERROR, rs::NAME_EXISTS) => match self.registration(name)? {
                Some(found) => reconcile(found),
                None => Err(self.failure(op, &reply, Ctx::named(name))),
            },
            _ => Err(self.failure(op, &reply, Ctx::named(name))),
        }
    }

    /// A state change that answers `already` (return and reason code) when it is in place:
    /// `Done`, `AlreadyDone`, or the most specific error.
    fn change(
        &mut self,
        op: Operation,
        request: &Request,
        already: (u16, u16),
        ctx: Ctx<'_>,
    ) -> Result<Applied<()>> {
        let reply = self.call(op, request)?;
        match (reply.return_code, reply.reason_code) {
            (rt::OK, _) => Ok(Applied::Done(())),
            codes if codes == already => Ok(Applied::AlreadyDone(())),
            _ => Err(self.failure(op, &reply, ctx)),
        }
    }

    /// CSNBMKP `action` on `kind`'s registers, which must succeed.
    fn master_key(&mut self, op: Operation, action: MkAction, kind: CloneableKind) -> Result<()> {
        let request = Request::MasterKey { action, kind };
        self.call_ok(op, &request, Ctx::of_kind(kind)).map(drop)
    }

    fn query(&mut self, query: Query) -> Result<Vec<Keyword>> {
        read_reply!(self, Operation::Status, Request::Query(query), ReplyBody::Elements(e) => e)
    }

    /// The EID from STATEID (`None` when blank).
    fn eid(&mut self) -> Result<Option<Eid>> {
        let eid_elements = self.query(Query::StatEid)?;
        let eid_bytes: Vec<u8> = eid_elements.iter().flat_map(|k| k.bytes()).collect();
        if eid_bytes.iter().all(|&b| b == b' ' || b == 0) {
            return Ok(None);
        }
        Eid::from_wire(&eid_bytes)
            .map(Some)
            .map_err(|e| BackendError::MalformedReply {
                operation: Operation::Status,
                detail: format!("STATEID: {e}"),
            })
    }

    /// The node's EID and the fingerprint of its CSR key `csr_label`, read to check a
    /// share's header: the EID alone (STATEID, one request, not a whole status: three on
    /// the simulator, five on a real card) and the CSR public key.
    fn install_context_of(&mut self, csr_label: &KeyLabel) -> Result<InstallContext> {
        let op = Operation::InstallShare;
        let eid = self.eid()?;
        let csr = self.retained_public_key(csr_label)?.ok_or_else(|| {
            BackendError::RetainedKeyNotFound {
                label: csr_label.clone(),
            }
        })?;
        let csr_view =
            PublicKeyTokenView::decode(&csr).map_err(|e| BackendError::MalformedReply {
                operation: op,
                detail: format!("CSR public-key token: {e}"),
            })?;
        let Some(eid) = eid else {
            return Err(BackendError::Conflict {
                what: "this node's EID".into(),
                detail: "no EID is set, so no share can be addressed to it: set the EID first (phase 3a)".into(),
            });
        };
        Ok(InstallContext {
            csr_label: csr_label.clone(),
            eid,
            csr_fingerprint: csr_view.key.fingerprint(),
        })
    }

    /// Status on a real coprocessor: STATICSA (serial; ASYM and AES states and patterns)
    /// and STATICSB (APKA states and patterns; SYM patterns), which are public, and
    /// STATCCAE (SYM register states) and STATEID (EID), which are not: without project
    /// encodings this answers `NotSupported` (see `facility_query` for the public part).
    /// AES and APKA are listed when the card reports states mkclone knows.
    fn status_public(&mut self) -> Result<NodeStatus> {
        // STATCCAE and STATEID are project encodings (`function::QUERY_RULES`): refused
        // before anything is sent unless project encodings may go to this device.
        for query in [Query::StatCcae, Query::StatEid] {
            self.guard(Operation::Status, Request::Query(query).encoding())?;
        }
        let states = self.query(Query::StatCcae)?;
        let eid = self.eid()?;
        let (a, b) = self.facility_query()?;
        let mut registers = vec![RegisterStatus {
            kind: MasterKeyKind::Sym,
            new: new_state(states.first())?,
            current: current_state(states.get(1))?,
            old: current_state(states.get(2))?,
            new_patterns: b.sym_new_pattern.into_iter().collect(),
            current_patterns: b.sym_current_pattern.into_iter().collect(),
            old_patterns: Vec::new(),
        }];
        let asym = register_status(&a.asym).ok_or_else(|| BackendError::MalformedReply {
            operation: Operation::Status,
            detail: format!(
                "STATICSA reports ASYM register states mkclone does not know ({:?}, {:?}, {:?})",
                a.asym.new, a.asym.current, a.asym.old
            ),
        })?;
        registers.push(asym);
        registers.extend(register_status(&a.aes));
        registers.extend(register_status(&b.apka));
        // Where project encodings may be sent (an experiment, or the simulator behind a
        // fake kernel), add the SHA-1-method patterns of `vp`: the public replies carry
        // MDC-4 for ASYM, which the simulator does not compute.
        if self.transport.allows_project_encodings() {
            let (_, entries) = self.patterns()?;
            for reg in registers.iter_mut() {
                for (register, list) in [
                    (Register::New, &mut reg.new_patterns),
                    (Register::Current, &mut reg.current_patterns),
                    (Register::Old, &mut reg.old_patterns),
                ] {
                    for e in entries
                        .iter()
                        .filter(|e| e.kind == reg.kind && e.register == register)
                    {
                        if !list.contains(&e.pattern) {
                            list.push(e.pattern.clone());
                        }
                    }
                }
            }
        }
        Ok(NodeStatus {
            identity: Identity {
                serial: a.serial,
                eid,
            },
            registers,
        })
    }

    /// `vp`: the serial and the SHA-1-method patterns (project encoding).
    fn patterns(&mut self) -> Result<(SerialNumber, Vec<crate::verbs::PatternEntry>)> {
        read_reply!(self, Operation::Status, Request::Patterns,
            ReplyBody::Patterns { serial, entries } => (serial, entries))
    }

    fn registration(&mut self, name: &KeyLabel) -> Result<Option<Registration>> {
        Ok(self
            .list_registrations()?
            .into_iter()
            .find(|r| &r.name == name))
    }
}

/// A register set with every state known, as `RegisterStatus`.
fn register_status(r: &MasterKeyRegisters) -> Option<RegisterStatus> {
    Some(RegisterStatus {
        kind: r.kind,
        new: r.new?,
        current: r.current?,
        old: r.old?,
        new_patterns: r.new_pattern.iter().cloned().collect(),
        current_patterns: r.current_pattern.iter().cloned().collect(),
        old_patterns: r.old_pattern.iter().cloned().collect(),
    })
}

fn unexpected(op: Operation, body: &ReplyBody) -> BackendError {
    BackendError::MalformedReply {
        operation: op,
        detail: format!("unexpected reply body {body:?}"),
    }
}

/// STATCCAE elements carry one ASCII digit each, in the first byte.
fn new_state(element: Option<&Keyword>) -> Result<NewState> {
    match element.map(|k| k.bytes()[0]) {
        Some(b'1') => Ok(NewState::Empty),
        Some(b'2') => Ok(NewState::Partial),
        Some(b'3') => Ok(NewState::Full),
        other => Err(BackendError::MalformedReply {
            operation: Operation::Status,
            detail: format!("STATCCAE NEW-register state {other:?} is not 1, 2 or 3"),
        }),
    }
}

fn current_state(element: Option<&Keyword>) -> Result<CurrentState> {
    match element.map(|k| k.bytes()[0]) {
        Some(b'1') => Ok(CurrentState::Invalid),
        Some(b'2') => Ok(CurrentState::Valid),
        other => Err(BackendError::MalformedReply {
            operation: Operation::Status,
            detail: format!("STATCCAE register state {other:?} is not 1 or 2"),
        }),
    }
}

impl<T: Transport> Backend for CcaBackend<T> {
    fn backend_name(&self) -> &'static str {
        self.transport.backend_name()
    }

    fn capabilities(&self) -> Capabilities {
        let needs = |op: Operation| -> &'static [FunctionCode] {
            match op {
                // A real device's status uses public encodings only (`status_public`).
                Operation::Status if self.transport.is_real_device() => {
                    &[FunctionCode::FacilityQuery]
                }
                Operation::Status => &[FunctionCode::FacilityQuery, FunctionCode::Patterns],
                Operation::SetEid => &[FunctionCode::SetEid, FunctionCode::FacilityQuery],
                Operation::SetMofN => &[FunctionCode::SetMofN],
                Operation::ShareStatus => &[FunctionCode::ShareTables],
                Operation::GenerateRetainedKey => &[
                    FunctionCode::GenerateRetained,
                    FunctionCode::RetainedPublicKey,
                ],
                Operation::RetainedPublicKey => &[FunctionCode::RetainedPublicKey],
                Operation::ListRetainedKeys => &[FunctionCode::ListRetained],
                Operation::DeleteRetainedKey => &[FunctionCode::DeleteRetained],
                Operation::RegisterPublicKeyHash => {
                    &[FunctionCode::RegisterHash, FunctionCode::ListRegistrations]
                }
                Operation::RegisterPublicKey => {
                    &[FunctionCode::RegisterKey, FunctionCode::ListRegistrations]
                }
                Operation::ListRegistrations => &[FunctionCode::ListRegistrations],
                Operation::UnregisterPublicKey => &[FunctionCode::UnregisterKey],
                Operation::CertifyPublicKey => &[FunctionCode::Certify],
                Operation::ObtainShare => &[FunctionCode::MasterKeyDistribution],
                Operation::InstallShare => &[
                    FunctionCode::MasterKeyDistribution,
                    FunctionCode::RetainedPublicKey,
                ],
                Operation::SetMasterKey | Operation::ClearNew | Operation::LoadRandomMasterKey => {
                    &[FunctionCode::MasterKeyProcess]
                }
            }
        };
        // Status (and SET EID, which reads the EID back on a rerun) also needs the FQ
        // forms STATCCAE and STATEID, whose encodings are the project's own.
        let project_queries = [Query::StatCcae, Query::StatEid]
            .iter()
            .all(|q| self.may_send_request(&Request::Query(*q)));
        let operations: BTreeSet<Operation> = Operation::ALL
            .into_iter()
            .filter(|op| needs(*op).iter().all(|f| self.may_send(*f)))
            .filter(|op| project_queries || !matches!(op, Operation::Status | Operation::SetEid))
            .collect();
        Capabilities {
            backend: self.transport.backend_name(),
            operations,
            key_stays_in_device: true,
            rehearsal_only: !self.transport.is_real_device(),
            install_checks_signed_pattern: !self.transport.is_real_device(),
            limits: Vec::new(),
        }
    }

    /// On a real coprocessor: public encodings only (FQ STATCCAE, STATEID, STATICSA,
    /// STATICSB). On the simulator: STATCCAE, STATEID and the project's `vp` (SHA-1-method
    /// patterns of SYM and ASYM, and the serial).
    fn status(&mut self) -> Result<NodeStatus> {
        if self.transport.is_real_device() {
            return self.status_public();
        }
        let states = self.query(Query::StatCcae)?;
        let eid = self.eid()?;
        let (serial, entries) = self.patterns()?;
        let mut registers = Vec::new();
        for (kind, first) in [(MasterKeyKind::Sym, 0usize), (MasterKeyKind::Asym, 6usize)] {
            let patterns = |reg: Register| {
                entries
                    .iter()
                    .filter(|e| e.kind == kind && e.register == reg)
                    .map(|e| e.pattern.clone())
                    .collect()
            };
            registers.push(RegisterStatus {
                kind,
                new: new_state(states.get(first))?,
                current: current_state(states.get(first + 1))?,
                old: current_state(states.get(first + 2))?,
                new_patterns: patterns(Register::New),
                current_patterns: patterns(Register::Current),
                old_patterns: patterns(Register::Old),
            });
        }
        Ok(NodeStatus {
            identity: Identity { serial, eid },
            registers,
        })
    }

    fn set_eid(&mut self, eid: &Eid) -> Result<Applied<()>> {
        let reply = self.call(Operation::SetEid, &Request::SetEid(eid.clone()))?;
        match (reply.return_code, reply.reason_code) {
            (rt::OK, _) => Ok(Applied::Done(())),
            (_, rs::EID_ALREADY_SET) => match self.eid()? {
                Some(current) => rerun::eid(eid, current),
                None => Err(self.failure(Operation::SetEid, &reply, Ctx::default())),
            },
            _ => Err(self.failure(Operation::SetEid, &reply, Ctx::default())),
        }
    }

    fn set_m_of_n(&mut self, m_of_n: MofN) -> Result<Applied<()>> {
        let (m, n) = (m_of_n.m(), m_of_n.n());
        let request = Request::SetMofN { m, n };
        let op = Operation::SetMofN;
        self.change(op, &request, ALREADY_IN_PLACE, Ctx::default())
    }

    fn share_status(&mut self) -> Result<ShareStatus> {
        let op = Operation::ShareStatus;
        let (m_of_n, tables) = read_reply!(self, op, Request::ShareTables,
            ReplyBody::ShareTables { m_of_n, tables } => (m_of_n, tables))?;
        let m_of_n = m_of_n
            .map(|(m, n)| MofN::new(m, n))
            .transpose()
            .map_err(|e| BackendError::MalformedReply {
                operation: op,
                detail: e.to_string(),
            })?;
        Ok(ShareStatus { m_of_n, tables })
    }

    fn generate_retained_key(
        &mut self,
        request: &GenerateRequest,
    ) -> Result<Applied<PublicKeyToken>> {
        let op = Operation::GenerateRetainedKey;
        let req = Request::GenerateRetained {
            label: request.label.clone(),
            usage: request.role.usage(),
            clone: request.clone,
            bits: request.bits.bits(),
        };
        let reply = self.call(op, &req)?;
        match (reply.return_code, reply.reason_code, reply.body) {
            (rt::OK, _, ReplyBody::PublicKey(token)) => Ok(Applied::Done(token)),
            (rt::ERROR, rs::NAME_EXISTS, _) => {
                // A rerun: the key of this deterministic label exists. It is ours if it
                // has the usage, CLONE mark and size we asked for.
                let existing = self
                    .list_retained_keys()?
                    .into_iter()
                    .find(|k| k.label == request.label);
                match existing {
                    Some(info) => {
                        rerun::retained_key(request, &info)?;
                        let token = self.retained_public_key(&request.label)?.ok_or_else(|| {
                            BackendError::Conflict {
                                what: format!("retained key {}", request.label),
                                detail: "listed but its public key cannot be read".into(),
                            }
                        })?;
                        Ok(Applied::AlreadyDone(token))
                    }
                    None => Err(BackendError::Device {
                        operation: op,
                        return_code: rt::ERROR,
                        reason_code: rs::NAME_EXISTS,
                        message: rc::message(rt::ERROR, rs::NAME_EXISTS).into(),
                    }),
                }
            }
            (rt::OK, _, other) => Err(unexpected(op, &other)),
            (return_code, reason_code, _) => Err(self.failure(
                op,
                &Reply::code(return_code, reason_code),
                Ctx::named(&request.label),
            )),
        }
    }

    fn retained_public_key(&mut self, label: &KeyLabel) -> Result<Option<PublicKeyToken>> {
        let op = Operation::RetainedPublicKey;
        let reply = self.call(
            op,
            &Request::RetainedPublicKey {
                label: label.clone(),
            },
        )?;
        match (reply.return_code, reply.reason_code, reply.body) {
            (rt::OK, _, ReplyBody::PublicKey(token)) => Ok(Some(token)),
            (rt::ERROR, rs::NAME_NOT_FOUND, _) => Ok(None),
            (rt::OK, _, other) => Err(unexpected(op, &other)),
            (a, b, _) => Err(self.failure(op, &Reply::code(a, b), Ctx::named(label))),
        }
    }

    fn list_retained_keys(&mut self) -> Result<Vec<RetainedKeyInfo>> {
        read_reply!(self, Operation::ListRetainedKeys, Request::ListRetained,
            ReplyBody::RetainedKeys(list) => list)
    }

    fn delete_retained_key(&mut self, label: &KeyLabel) -> Result<Applied<()>> {
        let request = Request::DeleteRetained {
            label: label.clone(),
        };
        let op = Operation::DeleteRetainedKey;
        self.change(op, &request, ALREADY_DELETED, Ctx::named(label))
    }

    fn register_public_key_hash(
        &mut self,
        name: &KeyLabel,
        hash: &PublicKeyHash,
        clone: bool,
    ) -> Result<Applied<()>> {
        let request = Request::RegisterHash {
            name: name.clone(),
            hash: hash.clone(),
            clone,
        };
        self.register(Operation::RegisterPublicKeyHash, &request, name, |r| {
            rerun::registered_hash(name, (hash, clone), (&r.hash, r.clone))
        })
    }

    fn register_public_key(
        &mut self,
        name: &KeyLabel,
        certificate: &Certificate,
        clone: bool,
    ) -> Result<Applied<()>> {
        let request = Request::RegisterKey {
            name: name.clone(),
            certificate: certificate.clone(),
            clone,
        };
        self.register(Operation::RegisterPublicKey, &request, name, |r| {
            rerun::registered_key(name, (certificate, clone), (r.key.as_ref(), r.clone))
        })
    }

    fn unregister_public_key(&mut self, name: &KeyLabel) -> Result<Applied<()>> {
        let request = Request::UnregisterKey { name: name.clone() };
        let op = Operation::UnregisterPublicKey;
        self.change(op, &request, ALREADY_DELETED, Ctx::named(name))
    }

    fn list_registrations(&mut self) -> Result<Vec<Registration>> {
        read_reply!(self, Operation::ListRegistrations, Request::ListRegistrations,
            ReplyBody::Registrations(list) => list)
    }

    fn certify_public_key(
        &mut self,
        signer: &KeyLabel,
        subject: &PublicKeyToken,
        info: &SubjectInfo,
    ) -> Result<Certificate> {
        let op = Operation::CertifyPublicKey;
        let request = Request::Certify {
            signer: signer.clone(),
            subject: subject.clone(),
            eid: info.eid.clone(),
            serial: info.serial.clone(),
        };
        match self.call_ok(op, &request, Ctx::named(signer))? {
            ReplyBody::Certificate(c) => Ok(c),
            other => Err(unexpected(op, &other)),
        }
    }

    fn obtain_share(&mut self, request: &ObtainRequest) -> Result<SealedShare> {
        let op = Operation::ObtainShare;
        let req = Request::Obtain(ObtainShare {
            kind: request.kind,
            index: u32::from(request.index.get()),
            css_label: request.css_label.clone(),
            sa_name: request.sa_name.clone(),
            csr_certificate: request.csr_certificate.clone(),
        });
        let reply = self.call(op, &req)?;
        if reply.return_code == rt::OK {
            return match reply.body {
                ReplyBody::Share(s) => Ok(s),
                other => Err(unexpected(op, &other)),
            };
        }
        let ctx = Ctx::share(
            reply.reason_code,
            &request.css_label,
            &request.sa_name,
            request.kind,
            request.index,
        );
        Err(self.failure(op, &reply, ctx))
    }

    fn install_share(&mut self, request: &InstallRequest) -> Result<Applied<InstallProgress>> {
        let op = Operation::InstallShare;
        // Where the verb cannot be sent, say so whatever the share (before reading it).
        self.guard(op, FunctionCode::MasterKeyDistribution.encoding())?;
        // The header is checked first, on the host, so that a share for another node gets
        // its own error before any cryptography runs.
        let parts =
            SealedShareParts::decode(&request.share).map_err(|_| BackendError::ShareRejected)?;
        let context = match self.install_context.take() {
            Some(c) if c.csr_label == request.csr_label => c,
            _ => self.install_context_of(&request.csr_label)?,
        };
        parts
            .header
            .check_addressed_to(&context.eid, &context.csr_fingerprint)?;
        if parts.header.kind != request.kind {
            warn!(
                "share header names the {} master key, the request {}",
                parts.header.kind, request.kind
            );
            return Err(BackendError::ShareRejected);
        }

        let req = Request::Install(InstallShare {
            kind: request.kind,
            csr_label: request.csr_label.clone(),
            sa_name: request.sa_name.clone(),
            css_certificate: request.css_certificate.clone(),
            share: request.share.clone(),
        });
        let reply = self.call(op, &req)?;
        let progress = |body: &ReplyBody| match body {
            ReplyBody::InstallProgress { received, m } if received >= m => {
                Some(InstallProgress::Complete)
            }
            ReplyBody::InstallProgress { received, m } => Some(InstallProgress::NeedMore {
                received: *received,
                m: *m,
            }),
            _ => None,
        };
        let outcome = match (reply.return_code, reply.reason_code) {
            (rt::OK, _) | (rt::WARNING, rs::SUFFICIENT_SHARES) => progress(&reply.body)
                .map(Applied::Done)
                .ok_or_else(|| unexpected(op, &reply.body)),
            (rt::WARNING, rs::SHARE_ALREADY_RECEIVED) => progress(&reply.body)
                .map(Applied::AlreadyDone)
                .ok_or_else(|| unexpected(op, &reply.body)),
            _ => {
                let ctx = Ctx::share(
                    reply.reason_code,
                    &request.csr_label,
                    &request.sa_name,
                    request.kind,
                    parts.header.index,
                );
                Err(self.failure(op, &reply, ctx))
            }
        };
        // Kept for the next request only if the card took the share: after any failure
        // the next install reads the node again.
        if outcome.is_ok() {
            self.install_context = Some(context);
        }
        outcome
    }

    fn set_master_key(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        self.master_key(Operation::SetMasterKey, MkAction::Set, kind)?;
        Ok(Applied::Done(()))
    }

    fn clear_new(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        let request = Request::MasterKey {
            action: MkAction::Clear,
            kind,
        };
        let op = Operation::ClearNew;
        self.change(op, &request, ALREADY_IN_PLACE, Ctx::of_kind(kind))
    }

    fn load_random_master_key(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        let op = Operation::LoadRandomMasterKey;
        self.master_key(op, MkAction::Random, kind)?;
        self.master_key(op, MkAction::Set, kind)?;
        Ok(Applied::Done(()))
    }
}
