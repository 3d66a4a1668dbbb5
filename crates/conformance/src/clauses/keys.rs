//! Retained keys and certifying a public key with one.

use mkclone_backend::{
    Applied, Backend, BackendError, GenerateRequest, KeyRole, KeyUsage, Operation, RetainedKeyInfo,
    RsaModulusBits, SubjectInfo,
};
use mkclone_formats::pka::{CertificateSection, PublicKeyTokenView};

use crate::factory::NodeFactory;
use crate::rig::{generate, self_signed};
use crate::support::{
    SA_LABEL, assert_done_then_already_done, assert_refused, clause_setup, eid, label, ok,
    supporting,
};

/// A retained key is generated once (the same request again is `AlreadyDone` with the
/// same token, another request under its label a `Conflict`), listed with the usage its
/// role gives it, read back by label, and deleted once (`AlreadyDone` after).
pub fn retained_keys_are_generated_listed_read_and_deleted<F: NodeFactory>(factory: &F) {
    let needed = [
        Operation::SetEid,
        Operation::GenerateRetainedKey,
        Operation::ListRetainedKeys,
        Operation::RetainedPublicKey,
        Operation::DeleteRetainedKey,
    ];
    let mut node = clause_setup!(supporting, factory.fresh_node(), needed);
    ok(node.set_eid(&eid("KEYS")), "set the EID");
    let css = GenerateRequest {
        label: label("KEYS.CSS"),
        role: KeyRole::Css,
        bits: RsaModulusBits::B2048,
        clone: true,
    };
    let token = match ok(node.generate_retained_key(&css), "generate") {
        Applied::Done(token) => token,
        other => panic!("a first generation is Done, got {other:?}"),
    };
    // The token carries the key and a certificate section self-signed under the label.
    let view = PublicKeyTokenView::decode(&token)
        .unwrap_or_else(|e| panic!("the generated token decodes: {e}"));
    assert_eq!(view.key.bits(), RsaModulusBits::B2048);
    let section = self_signed(&token);
    assert_eq!(
        section.key, view.key,
        "the certificate carries the token's key"
    );
    section
        .verify(&css.label, &view.key)
        .unwrap_or_else(|e| panic!("the certificate is self-signed under its label: {e}"));
    assert_eq!(
        ok(node.generate_retained_key(&css), "generate again"),
        Applied::AlreadyDone(token.clone())
    );
    for different in [
        GenerateRequest {
            clone: false,
            ..css.clone()
        },
        GenerateRequest {
            role: KeyRole::Csr,
            ..css.clone()
        },
    ] {
        assert_refused!(
            node.generate_retained_key(&different),
            BackendError::Conflict { .. },
            format!("generate {different:?} over an existing key")
        );
    }
    generate(&mut node, "KEYS.CSR", KeyRole::Csr);
    let listed = ok(node.list_retained_keys(), "list");
    let info = |name: &str| {
        listed
            .iter()
            .find(|k| k.label == label(name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is listed: {listed:?}"))
    };
    assert_eq!(
        info("KEYS.CSS"),
        RetainedKeyInfo {
            label: label("KEYS.CSS"),
            usage: KeyUsage::SignatureOnly,
            clone: true,
            bits: 2048
        }
    );
    assert_eq!(info("KEYS.CSR").usage, KeyUsage::KeyManagementOnly);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        ok(node.retained_public_key(&css.label), "read"),
        Some(token)
    );
    assert_eq!(
        ok(node.retained_public_key(&label("NO.SUCH.KEY")), "read"),
        None
    );

    assert_done_then_already_done(
        || node.delete_retained_key(&css.label),
        "delete",
        "delete again",
    );
    assert_eq!(ok(node.retained_public_key(&css.label), "read"), None);
    let listed = ok(node.list_retained_keys(), "list");
    assert_eq!(
        listed.iter().map(|k| k.label.clone()).collect::<Vec<_>>(),
        [label("KEYS.CSR")]
    );
}

/// What the CERTIFY clause needs: an SA node with an EID and a signature key.
const CERTIFY_NEEDS: [Operation; 4] = [
    Operation::SetEid,
    Operation::Status,
    Operation::GenerateRetainedKey,
    Operation::CertifyPublicKey,
];

/// CERTIFY: a certificate section over the subject's key, naming the EID and serial
/// given, signed by the retained signature key; an unknown signer is
/// `RetainedKeyNotFound`, a key-management key `WrongKeyUsage`.
pub fn certify_signs_with_a_retained_signature_key<F: NodeFactory>(factory: &F) {
    let mut node = clause_setup!(supporting, factory.sa_node(), CERTIFY_NEEDS);
    ok(node.set_eid(&eid("SA NODE")), "set the EID");
    let sa = generate(&mut node, SA_LABEL, KeyRole::Sa);
    let sa_public = self_signed(&sa).key;
    let identity = ok(node.status(), "status").identity;
    let subject = SubjectInfo {
        eid: Some(eid("SUBJECT")),
        serial: Some(identity.serial.clone()),
    };
    // The SA key certifies a public key: here its own, under another name.
    let certificate = ok(
        node.certify_public_key(&label(SA_LABEL), &sa, &subject),
        "certify",
    );
    let section = CertificateSection::decode(&certificate)
        .unwrap_or_else(|e| panic!("the certificate decodes: {e}"));
    assert_eq!(section.key, sa_public, "it certifies the subject's key");
    assert_eq!(section.info.eid, subject.eid);
    assert_eq!(section.info.serial, subject.serial);
    section
        .verify(&label(SA_LABEL), &sa_public)
        .unwrap_or_else(|e| panic!("it verifies under the signer's key: {e}"));

    assert_refused!(
        node.certify_public_key(&label("NO.SUCH.KEY"), &sa, &subject),
        BackendError::RetainedKeyNotFound { ref label } if label.as_str() == "NO.SUCH.KEY",
        "certify with an unknown signer"
    );
    generate(&mut node, "MKCLONE.KM", KeyRole::Csr);
    assert_refused!(
        node.certify_public_key(&label("MKCLONE.KM"), &sa, &subject),
        BackendError::WrongKeyUsage { .. },
        "certify with a key-management key"
    );
}
