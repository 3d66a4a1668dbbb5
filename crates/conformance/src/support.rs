//! What the clauses share: labels, result checks, the capability gate, and state reads.

use std::fmt::Debug;

use mkclone_backend::{
    Applied, Backend, BackendError, Certificate, CloneableKind, CurrentState, Eid, GenerateRequest,
    HashAlgorithm, InstallRequest, KeyLabel, KeyRole, MofN, NewState, NodeStatus, ObtainRequest,
    Operation, PublicKeyHash, PublicKeyToken, RegisterStatus, Registration, RetainedKeyInfo,
    RsaModulusBits, SealedShare, ShareIndex, ShareStatus, SubjectInfo, VerificationPattern,
};

pub const SA_LABEL: &str = "MKCLONE.SA";
pub const CSS_LABEL: &str = "MKCLONE.CSS";
pub const CSR_LABEL: &str = "MKCLONE.CSR";

pub fn label(text: &str) -> KeyLabel {
    KeyLabel::new(text).unwrap_or_else(|e| panic!("the suite's label {text:?}: {e}"))
}

pub fn eid(text: &str) -> Eid {
    Eid::new(text).unwrap_or_else(|e| panic!("the suite's EID {text:?}: {e}"))
}

pub fn index(i: u8) -> ShareIndex {
    ShareIndex::new(i).unwrap_or_else(|e| panic!("the suite's share index {i}: {e}"))
}

pub fn m_of_n(m: u8, n: u8) -> MofN {
    MofN::new(m, n).unwrap_or_else(|e| panic!("the suite's m-of-n: {e}"))
}

/// The value of a result the contract says succeeds.
#[track_caller]
pub fn ok<T>(result: Result<T, BackendError>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: expected success, got {e:?} ({e})"))
}

/// The error of a result the contract says is refused.
#[track_caller]
pub fn refused<T: Debug>(result: Result<T, BackendError>, what: &str) -> BackendError {
    match result {
        Ok(v) => panic!("{what}: expected a refusal, got {v:?}"),
        Err(e) => e,
    }
}

/// Assert that `$result` is refused with an error matching `$pattern`.
macro_rules! assert_refused {
    ($result:expr, $pattern:pat $(if $guard:expr)?, $what:expr $(,)?) => {{
        let what = $what;
        let error = $crate::support::refused($result, &what);
        assert!(
            matches!(error, $pattern $(if $guard)?),
            "{what}: expected {}, got {error:?} ({error})",
            stringify!($pattern)
        );
        error
    }};
}
pub(crate) use assert_refused;

/// The name of the function it is written in: a clause names itself in what it says on
/// standard error.
macro_rules! clause_name {
    () => {{
        fn here() {}
        let path = std::any::type_name_of_val(&here);
        path.strip_suffix("::here")
            .and_then(|clause| clause.rsplit("::").next())
            .unwrap_or(path)
    }};
}
pub(crate) use clause_name;

/// What a clause runs on, made by `$make($first, clause, &$needed, $rest…)` with `clause`
/// this clause's name and `needed` the operations it needs (`Rig::installing`,
/// `Rig::with_keys`, `Rig::build`, [`supporting`]); or, where the backend lacks one of
/// them, the clause returns (`supports` has said so on standard error).
macro_rules! clause_setup {
    ($make:path, $first:expr, $needed:expr $(, $rest:expr)*) => {
        match $make($first, $crate::support::clause_name!(), &$needed $(, $rest)*) {
            Some(it) => it,
            None => return,
        }
    };
}
pub(crate) use clause_setup;

/// Register `hash` under `name` with the CLONE mark `clone`, which must succeed.
pub fn register_hash<N: Backend + ?Sized>(
    node: &mut N,
    name: &str,
    hash: &PublicKeyHash,
    clone: bool,
) {
    ok(
        node.register_public_key_hash(&label(name), hash, clone),
        &format!("register a hash under {name}"),
    );
}

/// `change` is `Done` the first time and, asked again, `AlreadyDone`.
#[track_caller]
pub fn assert_done_then_already_done(
    mut change: impl FnMut() -> Result<Applied<()>, BackendError>,
    what: &str,
    again: &str,
) {
    assert_eq!(ok(change(), what), Applied::Done(()), "{what}");
    assert_eq!(ok(change(), again), Applied::AlreadyDone(()), "{again}");
}

/// `node` for `clause`, or `None` when it lacks an operation in `needed` (see
/// [`supports`]).
pub fn supporting<N: Backend>(mut node: N, clause: &str, needed: &[Operation]) -> Option<N> {
    supports(&mut node, clause, needed).then_some(node)
}

/// True when `node` lists every operation in `needed`. Otherwise each missing one must
/// answer `NotSupported` (checked here), the clause says so on standard error and
/// returns: the rest of it needs what the backend lacks.
pub fn supports<N: Backend>(node: &mut N, clause: &str, needed: &[Operation]) -> bool {
    let missing = node.capabilities().missing(needed);
    if missing.is_empty() {
        return true;
    }
    for op in &missing {
        assert_not_supported(node, *op);
    }
    eprintln!(
        "conformance {clause}: the {} backend does not support {missing:?}; checked that each \
         answers NotSupported, and stopped there",
        node.backend_name()
    );
    false
}

/// `op`, called with placeholder arguments, answers `NotSupported` naming `op` and the
/// backend.
pub fn assert_not_supported<N: Backend>(node: &mut N, op: Operation) {
    let backend = node.backend_name();
    let error = call_with_placeholders(node, op)
        .err()
        .unwrap_or_else(|| panic!("{op:?} is not in capabilities() but succeeded on {backend}"));
    assert!(
        matches!(
            &error,
            BackendError::NotSupported { operation, backend: b, .. }
                if *operation == op && *b == backend
        ),
        "{op:?} is not in capabilities(): expected NotSupported from {backend}, got {error:?}"
    );
}

/// Run `op` with arguments that are well formed but name nothing on the node.
pub fn call_with_placeholders<N: Backend>(node: &mut N, op: Operation) -> Result<(), BackendError> {
    let name = label("MKCLONE.CONFORM");
    let certificate = || {
        Certificate::new(vec![0x40, 0, 0, 4])
            .unwrap_or_else(|e| panic!("placeholder certificate: {e}"))
    };
    let kind = CloneableKind::Sym;
    match op {
        Operation::Status => node.status().map(drop),
        Operation::SetEid => node.set_eid(&eid("CONFORMANCE")).map(drop),
        Operation::SetMofN => node.set_m_of_n(m_of_n(1, 1)).map(drop),
        Operation::ShareStatus => node.share_status().map(drop),
        Operation::GenerateRetainedKey => node
            .generate_retained_key(&GenerateRequest {
                label: name,
                role: KeyRole::Sa,
                bits: RsaModulusBits::B2048,
                clone: true,
            })
            .map(drop),
        Operation::RetainedPublicKey => node.retained_public_key(&name).map(drop),
        Operation::ListRetainedKeys => node.list_retained_keys().map(drop),
        Operation::DeleteRetainedKey => node.delete_retained_key(&name).map(drop),
        Operation::RegisterPublicKeyHash => {
            let hash = PublicKeyHash::new(HashAlgorithm::Sha256, &[0; 32])
                .unwrap_or_else(|e| panic!("placeholder hash: {e}"));
            node.register_public_key_hash(&name, &hash, true).map(drop)
        }
        Operation::RegisterPublicKey => node
            .register_public_key(&name, &certificate(), true)
            .map(drop),
        Operation::ListRegistrations => node.list_registrations().map(drop),
        Operation::UnregisterPublicKey => node.unregister_public_key(&name).map(drop),
        Operation::CertifyPublicKey => {
            let subject = PublicKeyToken::new(vec![0x1E, 0, 0, 8, 0, 0, 0, 0])
                .unwrap_or_else(|e| panic!("placeholder token: {e}"));
            let info = SubjectInfo {
                eid: None,
                serial: None,
            };
            node.certify_public_key(&name, &subject, &info).map(drop)
        }
        Operation::ObtainShare => node
            .obtain_share(&ObtainRequest {
                kind,
                index: index(1),
                css_label: name.clone(),
                sa_name: name,
                csr_certificate: certificate(),
            })
            .map(drop),
        Operation::InstallShare => node
            .install_share(&InstallRequest {
                kind,
                csr_label: name.clone(),
                sa_name: name,
                css_certificate: certificate(),
                share: SealedShare::new(vec![0])
                    .unwrap_or_else(|e| panic!("placeholder share: {e}")),
            })
            .map(drop),
        Operation::SetMasterKey => node.set_master_key(kind).map(drop),
        Operation::ClearNew => node.clear_new(kind).map(drop),
        Operation::LoadRandomMasterKey => node.load_random_master_key(kind).map(drop),
    }
}

/// The reads a [`Snapshot`] is made of.
pub const SNAPSHOT_READS: [Operation; 4] = [
    Operation::Status,
    Operation::ShareStatus,
    Operation::ListRetainedKeys,
    Operation::ListRegistrations,
];

/// Everything a node reports about its state, for "nothing changed" comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub status: NodeStatus,
    pub shares: ShareStatus,
    pub registrations: Vec<Registration>,
    pub retained: Vec<RetainedKeyInfo>,
}

pub fn snapshot<N: Backend + ?Sized>(node: &mut N) -> Snapshot {
    Snapshot {
        status: ok(node.status(), "status"),
        shares: ok(node.share_status(), "share_status"),
        registrations: ok(node.list_registrations(), "list_registrations"),
        retained: ok(node.list_retained_keys(), "list_retained_keys"),
    }
}

/// The registers of one master key as the node reports them.
pub fn registers<N: Backend>(node: &mut N, kind: CloneableKind) -> RegisterStatus {
    let status = ok(node.status(), "status");
    status
        .register(kind.kind())
        .cloned()
        .unwrap_or_else(|| panic!("status reports no {kind} registers: {status:?}"))
}

/// `target` holds the source's master keys, as a finished clone leaves it: for every
/// cloneable kind, NEW empty and CURRENT valid with the CURRENT patterns of `source` (the
/// source's status).
#[track_caller]
pub fn assert_holds_source_keys<N: Backend + ?Sized>(target: &mut N, source: &NodeStatus) {
    let status = ok(target.status(), "status");
    for kind in CloneableKind::ALL {
        let reg = status
            .register(kind.kind())
            .unwrap_or_else(|| panic!("the target reports no {kind} registers: {status:?}"));
        assert_eq!(reg.current, CurrentState::Valid, "{kind}: {reg:?}");
        assert_eq!(reg.new, NewState::Empty, "{kind}: {reg:?}");
        let source_current = source.register(kind.kind()).map(|r| &r.current_patterns);
        assert_eq!(
            Some(&reg.current_patterns),
            source_current,
            "{kind}: the target's CURRENT is the source's"
        );
    }
}

/// The pattern of CURRENT (the first the node reports).
pub fn current_pattern<N: Backend>(node: &mut N, kind: CloneableKind) -> VerificationPattern {
    let regs = registers(node, kind);
    regs.current_patterns
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} CURRENT pattern reported: {regs:?}"))
}

/// The pattern of NEW, if any.
pub fn new_pattern<N: Backend>(node: &mut N, kind: CloneableKind) -> Option<VerificationPattern> {
    registers(node, kind).new_patterns.first().cloned()
}

/// One master key's share tables.
pub fn tables<N: Backend>(node: &mut N, kind: CloneableKind) -> mkclone_backend::ShareTables {
    let status = ok(node.share_status(), "share_status");
    status
        .tables(kind)
        .cloned()
        .unwrap_or_else(|| panic!("share_status reports no {kind} tables: {status:?}"))
}
