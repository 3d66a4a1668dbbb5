//! OBTAIN on the source, and the reads a rerun reconciles with.

use mkclone_backend::{
    Applied, Backend, BackendError, CloneableKind, CurrentState, GenerationState, InstallProgress,
    KeyRole, KeyUsage, ObtainRequest, Operation, ReceptionState, Registration,
};
use mkclone_formats::pka::{CertificateSection, registration_hash};

use crate::factory::NodeFactory;
use crate::rig::{Rig, generate, install_sa, register_sa, self_signed, self_signed_certificate};
use crate::support::{
    CSR_LABEL, CSS_LABEL, SA_LABEL, assert_refused, clause_setup, eid, index, label, m_of_n, ok,
    register_hash, registers, tables,
};

/// OBTAIN with CURRENT empty is `CurrentNotValid`, for each master key; once a key is
/// loaded the same request is served.
pub fn obtain_needs_a_valid_current<F: NodeFactory>(factory: &F) {
    let mut rig = clause_setup!(
        Rig::build,
        factory,
        [Operation::LoadRandomMasterKey],
        F::fresh_node
    );
    for kind in CloneableKind::ALL {
        assert_eq!(
            registers(&mut rig.source, kind).current,
            CurrentState::Invalid
        );
        let request = rig.obtain_request(kind, 1);
        assert_refused!(
            rig.source.obtain_share(&request),
            BackendError::CurrentNotValid { kind: k } if k == kind,
            format!("obtain a {kind} share without CURRENT")
        );
    }
    let before = tables(&mut rig.source, CloneableKind::Sym);
    assert_eq!(
        before.generation_of(index(1)),
        GenerationState::Can,
        "nothing counted"
    );
    ok(
        rig.source.load_random_master_key(CloneableKind::Sym),
        "load a SYM key",
    );
    rig.obtain(CloneableKind::Sym, 1);
}

/// OBTAIN refuses, each with its own error and without counting the share: an index
/// beyond n (`IndexOutOfRange`), no m-of-n (`MofNNotSet`), an unknown CSS key
/// (`RetainedKeyNotFound`), a key-management key as CSS (`WrongKeyUsage`), an SA name
/// with no hash registered (`HashNotRegistered`), with a hash but no key
/// (`KeyNotRegistered`), registered without CLONE (`NotMarkedForCloning`), and a CSR
/// certificate the SA key did not sign (`CertificateRejected`).
pub fn obtain_refuses_what_it_cannot_vouch_for<F: NodeFactory>(factory: &F) {
    let needed = [Operation::ShareStatus, Operation::RetainedPublicKey];
    let mut rig = clause_setup!(Rig::with_keys, factory, needed);
    let kind = CloneableKind::Asym;
    let base = rig.obtain_request(kind, 1);
    let with = |change: &dyn Fn(&mut ObtainRequest)| {
        let mut request = base.clone();
        change(&mut request);
        request
    };

    assert_refused!(
        rig.source.obtain_share(&with(&|r| r.index = index(4))),
        BackendError::IndexOutOfRange { index: i, n: 3 } if i == index(4),
        "index 4 of 2-of-3"
    );
    assert_refused!(
        rig.source.obtain_share(&with(&|r| r.css_label = label("NO.SUCH.KEY"))),
        BackendError::RetainedKeyNotFound { ref label } if label.as_str() == "NO.SUCH.KEY",
        "an unknown CSS key"
    );
    generate(&mut rig.source, "MKCLONE.KM", KeyRole::Csr);
    assert_refused!(
        rig.source
            .obtain_share(&with(&|r| r.css_label = label("MKCLONE.KM"))),
        BackendError::WrongKeyUsage { .. },
        "a key-management key as CSS"
    );
    assert_refused!(
        rig.source.obtain_share(&with(&|r| r.sa_name = label("NO.SUCH.SA"))),
        BackendError::HashNotRegistered { ref name } if name.as_str() == "NO.SUCH.SA",
        "an SA name with no hash registered"
    );
    register_hash(&mut rig.source, "HALF.SA", &rig.sa_key.hash, true);
    assert_refused!(
        rig.source.obtain_share(&with(&|r| r.sa_name = label("HALF.SA"))),
        BackendError::KeyNotRegistered { ref name } if name.as_str() == "HALF.SA",
        "an SA name with a hash but no key"
    );
    register_sa(&mut rig.source, "NOCLONE.SA", &rig.sa_key, false);
    assert_refused!(
        rig.source.obtain_share(&with(&|r| r.sa_name = label("NOCLONE.SA"))),
        BackendError::NotMarkedForCloning { ref name } if name.as_str() == "NOCLONE.SA",
        "an SA key registered without CLONE"
    );
    let self_signed_csr = self_signed_certificate(&mut rig.target, CSR_LABEL);
    assert_refused!(
        rig.source
            .obtain_share(&with(&|r| r.csr_certificate = self_signed_csr.clone())),
        BackendError::CertificateRejected { .. },
        "a CSR certificate the SA key did not sign"
    );
    let t = tables(&mut rig.source, kind);
    assert!(
        t.generation[..3].iter().all(|g| *g == GenerationState::Can),
        "no refused share was counted: {t:?}"
    );

    // A source with keys but no m-of-n.
    let mut unset = factory.source_node();
    ok(unset.set_eid(&eid("NO MOFN")), "set the EID");
    install_sa(&mut unset, &rig.sa_key);
    generate(&mut unset, CSS_LABEL, KeyRole::Css);
    assert_refused!(
        unset.obtain_share(&base),
        BackendError::MofNNotSet,
        "obtain without m-of-n"
    );
}

/// Share i is the same share every time it is obtained: a second copy installs as
/// `AlreadyDone`. STATMOFN counts it: distributed once (3), then more than once (4), on
/// the source; received (3), then more than once (4), on the target.
pub fn obtain_gives_the_same_share_and_counts_it<F: NodeFactory>(factory: &F) {
    let needed = [Operation::ShareStatus, Operation::InstallShare];
    let mut rig = clause_setup!(Rig::with_keys, factory, needed);
    let kind = CloneableKind::Asym;
    use GenerationState::{Can, Cannot, DistributedMore, DistributedOnce};
    // The source's generation states of shares 1 to 4 (n = 3).
    let generation = |source: &mut F::Node| {
        let t = tables(source, kind);
        [1, 2, 3, 4].map(|i| t.generation_of(index(i)))
    };
    let first = rig.obtain(kind, 2);
    let once = [Can, DistributedOnce, Can, Cannot];
    assert_eq!(generation(&mut rig.source), once, "share 2 obtained once");
    let again = rig.obtain(kind, 2);
    let more = [Can, DistributedMore, Can, Cannot];
    assert_eq!(generation(&mut rig.source), more, "share 2 obtained again");

    let one = InstallProgress::NeedMore { received: 1, m: 2 };
    assert_eq!(ok(rig.install(kind, first), "install"), Applied::Done(one));
    assert_eq!(
        tables(&mut rig.target, kind).reception_of(index(2)),
        ReceptionState::Received
    );
    assert_eq!(
        ok(rig.install(kind, again), "install the second copy"),
        Applied::AlreadyDone(one),
        "the second copy is the same share"
    );
    let t = tables(&mut rig.target, kind);
    assert_eq!(
        t.reception_of(index(2)),
        ReceptionState::ReceivedMore,
        "{t:?}"
    );
    assert_eq!(t.reception_of(index(1)), ReceptionState::Can, "{t:?}");
    assert_eq!(t.received(), [index(2)]);
}

/// What a rerun reads to reconcile: retained keys (usage, CLONE, size, public key),
/// registrations (hash, CLONE, key), identity, m-of-n and registers, as the phases left
/// them; the certificates the SA made verify under its key and name each node.
pub fn reads_reflect_the_ceremony<F: NodeFactory>(factory: &F) {
    let needed = [
        Operation::ListRetainedKeys,
        Operation::ListRegistrations,
        Operation::RetainedPublicKey,
        Operation::ShareStatus,
    ];
    let mut rig = clause_setup!(Rig::with_keys, factory, needed);
    let registration = Registration {
        name: label(SA_LABEL),
        hash: rig.sa_key.hash.clone(),
        clone: true,
        key: Some(rig.sa_key.certificate.clone()),
    };
    assert_eq!(
        ok(
            rig.sa.retained_public_key(&label(SA_LABEL)),
            "read the SA key"
        ),
        Some(rig.sa_key.token.clone())
    );
    let nodes = [
        (
            &mut rig.sa,
            "SA NODE",
            SA_LABEL,
            KeyUsage::SignatureOnly,
            None,
        ),
        (
            &mut rig.source,
            "SOURCE",
            CSS_LABEL,
            KeyUsage::SignatureOnly,
            Some(&rig.css),
        ),
        (
            &mut rig.target,
            "TARGET",
            CSR_LABEL,
            KeyUsage::KeyManagementOnly,
            Some(&rig.csr),
        ),
    ];
    for (node, name, key, usage, certificate) in nodes {
        let identity = ok(node.status(), "status").identity;
        assert_eq!(identity.eid, Some(eid(name)));
        let retained = ok(node.list_retained_keys(), "list retained keys");
        assert_eq!(retained.len(), 1, "{name}: {retained:?}");
        assert_eq!(retained[0].label, label(key));
        assert_eq!(retained[0].usage, usage);
        assert!(retained[0].clone, "{name}: {retained:?}");
        assert_eq!(retained[0].bits, 2048);
        let Some(certificate) = certificate else {
            continue;
        };
        assert_eq!(
            ok(node.list_registrations(), "list registrations"),
            std::slice::from_ref(&registration),
            "{name}"
        );
        assert_eq!(
            ok(node.share_status(), "share status").m_of_n,
            Some(m_of_n(2, 3))
        );
        // The certificate the SA made: over this node's key, naming it.
        let token = ok(node.retained_public_key(&label(key)), "read the key")
            .unwrap_or_else(|| panic!("{name} retains {key}"));
        let section = CertificateSection::decode(certificate)
            .unwrap_or_else(|e| panic!("{name}'s certificate decodes: {e}"));
        section
            .verify(&label(SA_LABEL), &rig.sa_key.public)
            .unwrap_or_else(|e| panic!("{name}'s certificate verifies under the SA key: {e}"));
        assert_eq!(section.key, self_signed(&token).key, "{name}");
        assert_eq!(section.info.eid, identity.eid, "{name}");
        assert_eq!(section.info.serial, Some(identity.serial), "{name}");
    }
    for kind in CloneableKind::ALL {
        assert_eq!(
            registers(&mut rig.source, kind).current,
            CurrentState::Valid
        );
        assert_eq!(
            registers(&mut rig.target, kind).current,
            CurrentState::Invalid
        );
    }
    let sa_hash =
        registration_hash(&self_signed(&rig.sa_key.token)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sa_hash, rig.sa_key.hash);
}
