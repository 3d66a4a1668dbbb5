//! `HostlibBackend`: a node over IBM's CCA host library. Every operation with a published
//! verb runs `CcaBackend`'s logic over [`LibTransport`], which makes the verb calls; the
//! operations no public document describes are refused with the reason on IBM's library
//! (the simulated library answers them through its extension, for rehearsals and CI).

use std::path::PathBuf;

use mkclone_backend::access::{AccessAudit, ManualCheck, PointCheck};
use mkclone_backend::{
    Applied, Backend, BackendError, Capabilities, Certificate, CloneableKind, Eid, GenerateRequest,
    InstallProgress, InstallRequest, KeyLabel, MofN, NodeStatus, ObtainRequest, Operation,
    PublicKeyHash, PublicKeyToken, Registration, Result, RetainedKeyInfo, SealedShare,
    SerialNumber, ShareStatus, SubjectInfo,
};
use mkclone_cca::CcaBackend;

use crate::access;

use crate::HostlibError;
use crate::args::Verb;
use crate::library::{DEFAULT_LIBRARY, DEFAULT_MK_LIBRARY, open_shared};
use crate::trace::{TRACE_ENV, Trace};
use crate::transport::{LibTransport, select};
use crate::verbs;

/// A `backend = "cca"` node's table.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HostlibNodeConfig {
    /// libcsulcca.so (default: the name, found by the dynamic loader).
    pub library: Option<PathBuf>,
    /// libcsulccamk.so, for CSNBMKP (default: the name).
    pub mk_library: Option<PathBuf>,
    /// The adapter, "CRP01" or 1 (default: the one whose serial is `expect_serial`).
    pub adapter: Option<u8>,
    /// The card's serial: selects the adapter (as zkey does) and pins the identity.
    pub expect_serial: Option<SerialNumber>,
    /// The domain; it must be the library's (CSU_DEFAULT_DOMAIN).
    pub domain: Option<u16>,
    /// Append a trace of every verb call to this file.
    pub trace: Option<PathBuf>,
    /// The role whose access-control points the dry run audits (default DEFAULT, the
    /// role of a user who is not logged on: IBM's "Role data structure example").
    pub role: Option<String>,
}

impl HostlibNodeConfig {
    /// The host library and CSNBMKP's library: the node's, or IBM's names (found by the
    /// dynamic loader where IBM's package installed them).
    pub fn library_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.library
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LIBRARY)),
            self.mk_library
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_MK_LIBRARY)),
        )
    }
}

/// The operations no public document gives the verb parameters of, each with why.
fn unpublished(op: Operation) -> Option<&'static str> {
    Some(match op {
        Operation::SetEid => {
            "the data format of CSUACFC's EID keyword is not in IBM's public documents; set the EID with \
             the CNM utility (Crypto Node > Set environment ID) or TKE. A node whose EID is already the plan's \
             answers \"already done\""
        }
        Operation::SetMofN => {
            "the verb data of CSUACFC SET-MOFN is not in IBM's public documents; set m and n with the CNM \
             utility (Share Administration > Set Number of Shares) or TKE. A node already at the plan's m-of-n \
             answers \"already done\""
        }
        Operation::CertifyPublicKey => {
            "the certificate form the SA node signs for a CSS or CSR key is not described publicly; certify \
             with the CNM utility (Share Administration > Certify), or make the SA node a simulated or PKCS#11 \
             node in a rehearsal"
        }
        Operation::ListRegistrations | Operation::UnregisterPublicKey => {
            "no published verb lists or removes registered public keys; use the CNM utility"
        }
        Operation::ListRetainedKeys => {
            "CSNDRKL lists labels only; a retained key's usage and CLONE mark are not readable through a \
             published verb"
        }
        Operation::LoadRandomMasterKey => return None,
        _ => return None,
    })
}

pub struct HostlibBackend {
    inner: CcaBackend<LibTransport>,
    simulated: bool,
    serial: Option<SerialNumber>,
    role: String,
}

/// The role audited when the node names none.
pub const DEFAULT_ROLE: &str = "DEFAULT";

/// CSUACFQ STATCRD2 on adapter CRPnn (`adapter`): element 1 is the number of adapters,
/// element 15 the serial number. A nonzero return code is an error `during` this.
fn statcrd2(
    shared: &mut crate::library::Shared,
    adapter: u8,
    during: &str,
) -> Result<crate::args::Args, HostlibError> {
    select(shared, adapter)?;
    let mut q = verbs::query("STATCRD2", 0);
    shared.call(&mut q)?;
    if q.return_code != 0 {
        return Err(HostlibError::verb(
            "CSUACFQ",
            during,
            q.return_code,
            q.reason_code,
        ));
    }
    Ok(q)
}

/// The version the library reports of itself (CSUACFV): its version data up to the first
/// NUL, trailing blanks cut. zkey reads it the same way and parses "%u.%u.%uz%s" from it
/// (s390-tools zkey/cca.c, get_cca_version); it is shown and logged as text, not parsed.
fn library_version(shared: &mut crate::library::Shared) -> Result<String, HostlibError> {
    let mut v = verbs::version();
    shared.call(&mut v)?;
    if v.return_code != 0 {
        return Err(HostlibError::verb(
            "CSUACFV",
            "reading the library's version",
            v.return_code,
            v.reason_code,
        ));
    }
    let data = v.output(0).map_err(|detail| HostlibError::Malformed {
        verb: "CSUACFV",
        detail,
    })?;
    let text = data.split(|b| *b == 0).next().unwrap_or_default();
    Ok(String::from_utf8_lossy(text).trim_end().to_string())
}

/// The adapter whose serial (CSUACFQ STATCRD2 element 15) is `serial`, trying CRP01..CRPn
/// where n is STATCRD2's element 1 (s390-tools zkey/cca.c, select_cca_adapter).
fn serial_of(shared: &mut crate::library::Shared, adapter: u8) -> Result<String, HostlibError> {
    let q = statcrd2(
        shared,
        adapter,
        "reading the adapter's serial number (STATCRD2)",
    )?;
    let e = q.element(14).ok_or_else(|| HostlibError::Malformed {
        verb: "CSUACFQ",
        detail: "STATCRD2 returned fewer than 15 elements".into(),
    })?;
    Ok(String::from_utf8_lossy(e).trim_end().to_string())
}

/// `mkclone sim init` for a `backend = "cca"` node: when its library is mkclone's
/// simulation, the simulated card with the node's `expect_serial` (created when missing).
/// `Ok(true)` created, `Ok(false)` it existed. IBM's library is refused: its cards are real.
pub fn create_simulated_card(cfg: &HostlibNodeConfig) -> std::result::Result<bool, HostlibError> {
    let (library, mk_library) = cfg.library_paths();
    let Some(serial) = &cfg.expect_serial else {
        return Err(HostlibError::Config(
            "`mkclone sim init` creates the simulated card a node names by `expect_serial`; this node \
             names only an adapter: add `expect_serial = \"...\"`"
                .into(),
        ));
    };
    let shared = open_shared(&library, &mk_library)?;
    let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
    guard.create_simulated_card(serial.as_str())
}

/// What `mkclone devices --config` shows of a CCA host library: whether it is mkclone's
/// simulation, its version (CSUACFV), and its adapters CRP01..CRPn (n from CSUACFQ
/// STATCRD2 element 1) with each one's serial number (element 15), as zkey walks them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LibraryAdapters {
    pub library: PathBuf,
    pub simulated: bool,
    /// The version the library reports of itself (CSUACFV); `None` when it would not say
    /// (the reason is logged as a warning: the version is shown, never relied on).
    pub version: Option<String>,
    /// (adapter number, serial number).
    pub adapters: Vec<(u8, String)>,
}

pub fn list_adapters(
    library: &std::path::Path,
    mk_library: &std::path::Path,
) -> std::result::Result<LibraryAdapters, HostlibError> {
    let shared = open_shared(library, mk_library)?;
    let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
    let simulated = guard.is_simulated();
    let version = library_version(&mut guard)
        .inspect_err(|e| log::warn!("CCA host library {}: {e}", library.display()))
        .ok();
    let count = statcrd2(&mut guard, 1, "counting the adapters (STATCRD2)")?;
    let n: u8 = count
        .element(0)
        .and_then(|e| String::from_utf8_lossy(e).trim().parse().ok())
        .unwrap_or(0);
    let mut adapters = Vec::new();
    for a in 1..=n {
        adapters.push((a, serial_of(&mut guard, a)?));
    }
    Ok(LibraryAdapters {
        library: library.to_path_buf(),
        simulated,
        version,
        adapters,
    })
}

impl HostlibBackend {
    pub fn open(cfg: &HostlibNodeConfig) -> std::result::Result<Self, HostlibError> {
        let (library, mk_library) = cfg.library_paths();
        if let Some(domain) = cfg.domain {
            // The library takes its domain from CSU_DEFAULT_DOMAIN when it is loaded (zkey
            // sets it and reloads the library; opencryptoki reads it the same way).
            let env = std::env::var("CSU_DEFAULT_DOMAIN").ok();
            if env.as_deref().map(str::trim) != Some(domain.to_string().as_str()) {
                return Err(HostlibError::Config(format!(
                    "the node is on domain {domain}, but CSU_DEFAULT_DOMAIN is {}: IBM's library serves the \
                     domain that variable names, read when the library is loaded. Run this command with \
                     CSU_DEFAULT_DOMAIN={domain}",
                    env.as_deref().unwrap_or("unset")
                )));
            }
        }
        let shared = open_shared(&library, &mk_library)?;
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        let trace_path = cfg
            .trace
            .clone()
            .or_else(|| std::env::var_os(TRACE_ENV).map(PathBuf::from));
        if let (Some(path), None) = (&trace_path, &guard.trace) {
            guard.trace = Some(Trace::open(path).map_err(|e| {
                HostlibError::Config(format!(
                    "cannot open the trace file {}: {e}",
                    path.display()
                ))
            })?);
        }
        let simulated = guard.is_simulated();
        // Which library build runs the node's verbs: worth a line in the log of a ceremony.
        match library_version(&mut guard) {
            Ok(version) => log::info!(
                "CCA host library {}: version {version:?}",
                library.display()
            ),
            Err(e) => log::warn!("CCA host library {}: {e}", library.display()),
        }
        let adapter = match (cfg.adapter, &cfg.expect_serial) {
            (Some(a), pinned) => {
                let actual = serial_of(&mut guard, a)?;
                if let Some(p) = pinned
                    && p.as_str() != actual
                {
                    return Err(HostlibError::SerialMismatch {
                        path: library.clone(),
                        adapter: a,
                        expected: p.as_str().into(),
                        actual,
                    });
                }
                a
            }
            (None, Some(serial)) => {
                let mut count = verbs::query("STATCRD2", 0);
                select(&mut guard, 1).ok();
                guard.call(&mut count)?;
                let n: u8 = count
                    .element(0)
                    .and_then(|e| String::from_utf8_lossy(e).trim().parse().ok())
                    .unwrap_or(0);
                let mut found = Vec::new();
                let mut hit = None;
                for a in 1..=n {
                    let s = serial_of(&mut guard, a)?;
                    if s == serial.as_str() {
                        hit = Some(a);
                        break;
                    }
                    found.push(format!("CRP{a:02} {s}"));
                }
                hit.ok_or_else(|| HostlibError::NoSuchSerial {
                    path: library.clone(),
                    serial: serial.as_str().into(),
                    found: if found.is_empty() {
                        "none".into()
                    } else {
                        found.join(", ")
                    },
                })?
            }
            (None, None) => {
                return Err(HostlibError::Config(
                    "name the card: `expect_serial = \"...\"` (selects the adapter with that serial and pins \
                     it) or `adapter = \"CRP01\"`"
                        .into(),
                ));
            }
        };
        drop(guard);
        let transport = LibTransport {
            shared,
            adapter,
            domain: cfg.domain.unwrap_or(0),
            simulated,
        };
        let role = cfg.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_string());
        if role.is_empty() || role.len() > 8 || !role.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HostlibError::Config(format!(
                "role {role:?} is not a CCA role ID: at most 8 printable characters, e.g. \"DEFAULT\""
            )));
        }
        Ok(Self {
            inner: CcaBackend::new(transport),
            simulated,
            serial: cfg.expect_serial.clone(),
            role,
        })
    }

    /// True when the library is mkclone's simulation: rehearsal only.
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }

    pub fn pinned_serial(&self) -> Option<&SerialNumber> {
        self.serial.as_ref()
    }

    fn refuse<T>(&self, op: Operation) -> Result<T> {
        Err(BackendError::NotSupported {
            operation: op,
            backend: "cca",
            hint: unpublished(op).unwrap_or("not available").into(),
        })
    }

    /// Whether `op` runs on this library.
    fn runs(&self, op: Operation) -> bool {
        self.simulated || unpublished(op).is_none()
    }

    /// The verbs each operation calls on this backend (documentation and the dry run).
    pub fn verbs_of(op: Operation) -> &'static [Verb] {
        match op {
            Operation::Status => &[Verb::Csuacfq],
            Operation::ShareStatus => &[Verb::Csuacfq],
            Operation::GenerateRetainedKey => &[Verb::Csndpkb, Verb::Csndpkg],
            Operation::RetainedPublicKey => &[Verb::Csndpkx],
            Operation::DeleteRetainedKey => &[Verb::Csndrkd],
            Operation::RegisterPublicKeyHash => &[Verb::Csndpkh],
            Operation::RegisterPublicKey => &[Verb::Csndpkr],
            Operation::ObtainShare | Operation::InstallShare => &[Verb::Csuamkd],
            Operation::SetMasterKey | Operation::ClearNew | Operation::LoadRandomMasterKey => {
                &[Verb::Csnbmkp]
            }
            _ => &[],
        }
    }
}

/// `Backend` methods that run `CcaBackend`'s logic as it is, each over this library; a
/// `gated` one only where this library runs the operation (`runs`), refused with the
/// reason otherwise (`refuse`).
macro_rules! forward {
    ($($(gated($op:expr))? fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&mut self $(, $arg: $ty)*) -> $ret {
                $(
                    if !self.runs($op) {
                        return self.refuse($op);
                    }
                )?
                self.inner.$name($($arg),*)
            }
        )*
    };
}

impl Backend for HostlibBackend {
    fn backend_name(&self) -> &'static str {
        "cca"
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        caps.backend = "cca";
        caps.operations.retain(|op| self.runs(*op));
        caps.rehearsal_only = self.simulated;
        caps.install_checks_signed_pattern = self.simulated;
        caps
    }

    /// The points each step's verb needs (crate::access, each cited), read from the role
    /// with CSUAACM GET-ROLE; what no public document gives, or the role cannot tell, is
    /// listed for the operator to check by hand.
    fn access_audit(
        &mut self,
        operations: &[Operation],
        kinds: &[CloneableKind],
    ) -> Result<AccessAudit> {
        let mut audit = AccessAudit {
            role: Some(self.role.clone()),
            ..AccessAudit::default()
        };
        let mut ops: Vec<Operation> = Vec::new();
        for op in operations {
            if !ops.contains(op) {
                ops.push(*op);
            }
        }
        for op in &ops {
            let outside = matches!(
                op,
                Operation::SetEid | Operation::SetMofN | Operation::CertifyPublicKey
            );
            if outside && self.simulated {
                continue;
            }
            if let Some(m) = access::by_hand(*op) {
                audit.by_hand.push(m);
            }
        }
        let mut name = [b' '; 8];
        name[..self.role.len()].copy_from_slice(self.role.as_bytes());
        let read = self
            .inner
            .transport()
            .get_role(&name)
            .map_err(|e| BackendError::Transport {
                operation: Operation::Status,
                cause: e.to_string(),
            })?;
        let role = if read.return_code != 0 {
            Err(format!(
                "CSUAACM GET-ROLE of role {} answered {}/{} ({}); reading a role needs {}",
                self.role,
                read.return_code,
                read.reason_code,
                mkclone_cca::rc::message(
                    u16::try_from(read.return_code).unwrap_or(u16::MAX),
                    u16::try_from(read.reason_code).unwrap_or(u16::MAX)
                ),
                access::READ_ROLE
            ))
        } else {
            read.output(1)
                .map_err(|e| format!("CSUAACM GET-ROLE: {e}"))
                .and_then(|bytes| {
                    access::Role::decode(bytes).map_err(|e| format!("the role {}: {e}", self.role))
                })
        };
        for op in ops {
            for point in access::required(op, kinds) {
                match &role {
                    Ok(r) => audit.checked.push(PointCheck {
                        operation: op,
                        point,
                        enabled: r.enables(point.offset),
                    }),
                    Err(why) => audit.by_hand.push(ManualCheck {
                        operation: op,
                        what: format!("{why}: check by hand that the role enables {point}"),
                    }),
                }
            }
        }
        Ok(audit)
    }

    fn set_eid(&mut self, eid: &Eid) -> Result<Applied<()>> {
        if self.runs(Operation::SetEid) {
            return self.inner.set_eid(eid);
        }
        match self.inner.status()?.identity.eid {
            Some(current) if &current == eid => Ok(Applied::AlreadyDone(())),
            Some(current) => Err(BackendError::EidAlreadySet {
                current,
                requested: eid.clone(),
            }),
            None => self.refuse(Operation::SetEid),
        }
    }

    fn set_m_of_n(&mut self, m_of_n: MofN) -> Result<Applied<()>> {
        if self.runs(Operation::SetMofN) {
            return self.inner.set_m_of_n(m_of_n);
        }
        match self.inner.share_status()?.m_of_n {
            Some(current) if current == m_of_n => Ok(Applied::AlreadyDone(())),
            _ => self.refuse(Operation::SetMofN),
        }
    }

    // Every other operation: CcaBackend's logic over the library's verbs.
    forward! {
        fn status(&mut self) -> Result<NodeStatus>;
        fn share_status(&mut self) -> Result<ShareStatus>;
        fn generate_retained_key(&mut self, r: &GenerateRequest)
            -> Result<Applied<PublicKeyToken>>;
        fn retained_public_key(&mut self, label: &KeyLabel) -> Result<Option<PublicKeyToken>>;
        fn delete_retained_key(&mut self, label: &KeyLabel) -> Result<Applied<()>>;
        fn register_public_key_hash(&mut self, name: &KeyLabel, hash: &PublicKeyHash, clone: bool)
            -> Result<Applied<()>>;
        fn register_public_key(&mut self, name: &KeyLabel, certificate: &Certificate, clone: bool)
            -> Result<Applied<()>>;
        fn obtain_share(&mut self, request: &ObtainRequest) -> Result<SealedShare>;
        fn install_share(&mut self, request: &InstallRequest)
            -> Result<Applied<InstallProgress>>;
        fn set_master_key(&mut self, kind: CloneableKind) -> Result<Applied<()>>;
        fn clear_new(&mut self, kind: CloneableKind) -> Result<Applied<()>>;
        fn load_random_master_key(&mut self, kind: CloneableKind) -> Result<Applied<()>>;
        gated(Operation::ListRetainedKeys)
        fn list_retained_keys(&mut self) -> Result<Vec<RetainedKeyInfo>>;
        gated(Operation::UnregisterPublicKey)
        fn unregister_public_key(&mut self, name: &KeyLabel) -> Result<Applied<()>>;
        gated(Operation::ListRegistrations)
        fn list_registrations(&mut self) -> Result<Vec<Registration>>;
        gated(Operation::CertifyPublicKey)
        fn certify_public_key(&mut self, signer: &KeyLabel, subject: &PublicKeyToken, info: &SubjectInfo)
            -> Result<Certificate>;
    }
}

#[cfg(feature = "fuzzing")]
impl HostlibBackend {
    /// For fuzz/ only (the `fuzzing` feature): a node over `shared`
    /// (`library::fuzzing::shared_over`) on adapter `adapter`, without the adapter
    /// discovery of [`HostlibBackend::open`], auditing `role`.
    #[doc(hidden)]
    pub fn over_shared(
        shared: std::sync::Arc<std::sync::Mutex<crate::library::Shared>>,
        adapter: u8,
        simulated: bool,
        role: &str,
    ) -> Self {
        let transport = LibTransport {
            shared,
            adapter,
            domain: 0,
            simulated,
        };
        Self {
            inner: CcaBackend::new(transport),
            simulated,
            serial: None,
            role: role.to_string(),
        }
    }
}
