//! A ceremony up to phase 3b, driven through the `Backend` trait only: an SA node with its
//! key, a source with its CSS key certified, a target with its CSR key certified, the SA
//! key registered (hash, then key, with CLONE) on both.

use mkclone_backend::{
    Applied, Backend, BackendError, Certificate, CloneableKind, GenerateRequest, InstallProgress,
    InstallRequest, KeyRole, MofN, ObtainRequest, Operation, PublicKeyHash, PublicKeyToken,
    RsaModulusBits, SealedShare, SubjectInfo,
};
use mkclone_formats::pka::{
    CertificateSection, PublicKeyTokenView, RsaPublicKey, registration_hash,
};

use crate::factory::NodeFactory;
use crate::support::{
    CSR_LABEL, CSS_LABEL, SA_LABEL, eid, index, label, m_of_n, ok, register_hash, supports,
};

/// What building a rig and moving a share between its nodes need.
pub const RIG_OPERATIONS: [Operation; 8] = [
    Operation::Status,
    Operation::SetEid,
    Operation::SetMofN,
    Operation::GenerateRetainedKey,
    Operation::RegisterPublicKeyHash,
    Operation::RegisterPublicKey,
    Operation::CertifyPublicKey,
    Operation::ObtainShare,
];

/// The SA key as phase 1 leaves it.
pub struct SaKey {
    pub token: PublicKeyToken,
    pub public: RsaPublicKey,
    pub certificate: Certificate,
    pub hash: PublicKeyHash,
}

/// Generate a 2048-bit retained key marked CLONE.
pub fn generate<N: Backend + ?Sized>(node: &mut N, key: &str, role: KeyRole) -> PublicKeyToken {
    ok(
        node.generate_retained_key(&GenerateRequest {
            label: label(key),
            role,
            bits: RsaModulusBits::B2048,
            clone: true,
        }),
        &format!("generate {key}"),
    )
    .value()
}

/// The self-signed certificate section a generated key's token carries.
pub fn self_signed(token: &PublicKeyToken) -> CertificateSection {
    PublicKeyTokenView::decode(token)
        .unwrap_or_else(|e| panic!("a retained key's token decodes: {e}"))
        .certificate
        .unwrap_or_else(|| panic!("a retained key's token carries its self-signed certificate"))
}

/// Phase 1 on `node`: the SA key.
pub fn sa_key<N: Backend + ?Sized>(node: &mut N) -> SaKey {
    let token = generate(node, SA_LABEL, KeyRole::Sa);
    let section = self_signed(&token);
    SaKey {
        public: section.key.clone(),
        hash: registration_hash(&section)
            .unwrap_or_else(|e| panic!("the SA certificate's registration hash: {e}")),
        certificate: section
            .encode()
            .unwrap_or_else(|e| panic!("the SA certificate encodes: {e}")),
        token,
    }
}

/// Register the SA key on `node` under `name`: hash first, then key (dual control), both
/// with the CLONE mark `clone`.
pub fn register_sa<N: Backend + ?Sized>(node: &mut N, name: &str, sa: &SaKey, clone: bool) {
    register_hash(node, name, &sa.hash, clone);
    ok(
        node.register_public_key(&label(name), &sa.certificate, clone),
        &format!("register the key under {name}"),
    );
}

/// Register the SA key on `node` as the phases do: under its label, with CLONE.
pub fn install_sa<N: Backend + ?Sized>(node: &mut N, sa: &SaKey) {
    register_sa(node, SA_LABEL, sa, true);
}

/// The self-signed certificate of the key `node` retains under `key`: a certificate the
/// SA key did not sign.
pub fn self_signed_certificate<N: Backend + ?Sized>(node: &mut N, key: &str) -> Certificate {
    let token = ok(
        node.retained_public_key(&label(key)),
        &format!("read {key}"),
    )
    .unwrap_or_else(|| panic!("the node retains {key}"));
    self_signed(&token)
        .encode()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Generate `key` on `node` and have the SA node certify it, naming the node.
pub fn certify<S: Backend + ?Sized, N: Backend + ?Sized>(
    sa_node: &mut S,
    node: &mut N,
    key: &str,
    role: KeyRole,
) -> Certificate {
    let token = generate(node, key, role);
    let identity = ok(node.status(), "status").identity;
    ok(
        sa_node.certify_public_key(
            &label(SA_LABEL),
            &token,
            &SubjectInfo {
                eid: identity.eid,
                serial: Some(identity.serial),
            },
        ),
        &format!("certify {key}"),
    )
}

/// Phases 2a/3a and 2b/3b on `node`: EID, m-of-n, SA key registered, `key` certified.
pub fn prepare<N: Backend>(
    sa_node: &mut N,
    sa: &SaKey,
    node: &mut N,
    name: &str,
    m_of_n: MofN,
    key: &str,
    role: KeyRole,
) -> Certificate {
    ok(node.set_eid(&eid(name)), &format!("set the EID {name}"));
    ok(node.set_m_of_n(m_of_n), "set m-of-n");
    install_sa(node, sa);
    certify(sa_node, node, key, role)
}

/// The OBTAIN request of share `i` of `kind` for the target whose CSR key `csr` certifies,
/// under the phases' labels.
pub fn obtain_request(kind: CloneableKind, i: u8, csr: &Certificate) -> ObtainRequest {
    ObtainRequest {
        kind,
        index: index(i),
        css_label: label(CSS_LABEL),
        sa_name: label(SA_LABEL),
        csr_certificate: csr.clone(),
    }
}

/// The INSTALL request of `share` of `kind`, from the source whose CSS key `css`
/// certifies, under the phases' labels.
pub fn install_request(
    kind: CloneableKind,
    css: &Certificate,
    share: SealedShare,
) -> InstallRequest {
    InstallRequest {
        kind,
        csr_label: label(CSR_LABEL),
        sa_name: label(SA_LABEL),
        css_certificate: css.clone(),
        share,
    }
}

/// SA, source, target, ready for shares (2-of-3).
pub struct Rig<N> {
    pub sa: N,
    pub sa_key: SaKey,
    pub source: N,
    pub css: Certificate,
    pub target: N,
    pub csr: Certificate,
    pub m_of_n: MofN,
}

impl<N: Backend> Rig<N> {
    /// A rig whose source comes from `source` (by default `NodeFactory::source_node`), or
    /// `None` when the backend lacks what the clause needs (checked: `NotSupported`).
    pub fn build<F: NodeFactory<Node = N>>(
        factory: &F,
        clause: &str,
        also_needed: &[Operation],
        source: impl FnOnce(&F) -> N,
    ) -> Option<Self> {
        let mut sa = factory.sa_node();
        let needed: Vec<Operation> = RIG_OPERATIONS.iter().chain(also_needed).copied().collect();
        if !supports(&mut sa, clause, &needed) {
            return None;
        }
        let m_of_n = m_of_n(2, 3);
        ok(sa.set_eid(&eid("SA NODE")), "set the SA node's EID");
        let sa_key = sa_key(&mut sa);
        let mut source = source(factory);
        let css = prepare(
            &mut sa,
            &sa_key,
            &mut source,
            "SOURCE",
            m_of_n,
            CSS_LABEL,
            KeyRole::Css,
        );
        let mut target = factory.target_node();
        let csr = prepare(
            &mut sa,
            &sa_key,
            &mut target,
            "TARGET",
            m_of_n,
            CSR_LABEL,
            KeyRole::Csr,
        );
        Some(Self {
            sa,
            sa_key,
            source,
            css,
            target,
            csr,
            m_of_n,
        })
    }

    /// A rig with the factory's source (random master keys loaded).
    pub fn with_keys<F: NodeFactory<Node = N>>(
        factory: &F,
        clause: &str,
        also_needed: &[Operation],
    ) -> Option<Self> {
        Self::build(factory, clause, also_needed, F::source_node)
    }

    /// A rig with the factory's source, for a clause that installs shares and reads the
    /// share tables (and needs `also_needed` besides).
    pub fn installing<F: NodeFactory<Node = N>>(
        factory: &F,
        clause: &str,
        also_needed: &[Operation],
    ) -> Option<Self> {
        let needed: Vec<Operation> = [Operation::InstallShare, Operation::ShareStatus]
            .iter()
            .chain(also_needed)
            .copied()
            .collect();
        Self::with_keys(factory, clause, &needed)
    }

    pub fn obtain_request(&self, kind: CloneableKind, i: u8) -> ObtainRequest {
        obtain_request(kind, i, &self.csr)
    }

    /// Share `i` of `kind` for the target.
    pub fn obtain(&mut self, kind: CloneableKind, i: u8) -> SealedShare {
        let request = self.obtain_request(kind, i);
        ok(
            self.source.obtain_share(&request),
            &format!("obtain {kind} share {i}"),
        )
    }

    /// Share `i` of `kind` obtained and installed on the target, which accepts it.
    pub fn transfer(&mut self, kind: CloneableKind, i: u8) -> Applied<InstallProgress> {
        let share = self.obtain(kind, i);
        ok(self.install(kind, share), &format!("install {i}"))
    }

    pub fn install_request(&self, kind: CloneableKind, share: SealedShare) -> InstallRequest {
        install_request(kind, &self.css, share)
    }

    pub fn install(
        &mut self,
        kind: CloneableKind,
        share: SealedShare,
    ) -> Result<Applied<InstallProgress>, BackendError> {
        let request = self.install_request(kind, share);
        self.target.install_share(&request)
    }
}
