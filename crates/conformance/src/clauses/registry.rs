//! The public-key registry (CSNDPKH, CSNDPKR).

use mkclone_backend::{
    Backend, BackendError, Certificate, HashAlgorithm, KeyRole, Operation, PublicKeyHash,
    Registration,
};
use mkclone_formats::pka::registration_hash;

use crate::factory::NodeFactory;
use crate::rig::{generate, self_signed};
use crate::support::{
    assert_done_then_already_done, assert_refused, clause_setup, label, ok, register_hash,
    supporting,
};

const NEEDED: [Operation; 5] = [
    Operation::GenerateRetainedKey,
    Operation::RegisterPublicKeyHash,
    Operation::RegisterPublicKey,
    Operation::ListRegistrations,
    Operation::UnregisterPublicKey,
];

/// A key pair's self-signed certificate and its registration hash.
fn registrable<N: mkclone_backend::Backend>(node: &mut N) -> (Certificate, PublicKeyHash) {
    let token = generate(node, "REG.KEY", KeyRole::Sa);
    let section = self_signed(&token);
    let hash = registration_hash(&section).unwrap_or_else(|e| panic!("the registration hash: {e}"));
    let certificate = section
        .encode()
        .unwrap_or_else(|e| panic!("the certificate encodes: {e}"));
    (certificate, hash)
}

fn other_hash() -> PublicKeyHash {
    PublicKeyHash::new(HashAlgorithm::Sha256, &[0x5A; 32])
        .unwrap_or_else(|e| panic!("a SHA-256 hash: {e}"))
}

/// Hash then key: each again is `AlreadyDone`; another hash or CLONE mark under a name
/// is a `Conflict`; the registration is listed with its hash, mark and key; unregistering
/// removes both, and again is `AlreadyDone`.
pub fn registrations_are_idempotent_and_listed<F: NodeFactory>(factory: &F) {
    let mut node = clause_setup!(supporting, factory.fresh_node(), NEEDED);
    let (certificate, hash) = registrable(&mut node);
    let name = label("REG.SA");
    assert_done_then_already_done(
        || node.register_public_key_hash(&name, &hash, true),
        "register the hash",
        "again",
    );
    assert_refused!(
        node.register_public_key_hash(&name, &hash, false),
        BackendError::Conflict { .. },
        "the same hash without CLONE"
    );
    assert_refused!(
        node.register_public_key_hash(&name, &other_hash(), true),
        BackendError::Conflict { .. },
        "another hash under the name"
    );
    assert_eq!(
        ok(node.list_registrations(), "list"),
        [Registration {
            name: name.clone(),
            hash: hash.clone(),
            clone: true,
            key: None
        }],
        "a hash without its key yet"
    );
    assert_done_then_already_done(
        || node.register_public_key(&name, &certificate, true),
        "register the key",
        "again",
    );
    assert_eq!(
        ok(node.list_registrations(), "list"),
        [Registration {
            name: name.clone(),
            hash,
            clone: true,
            key: Some(certificate)
        }]
    );
    assert_done_then_already_done(|| node.unregister_public_key(&name), "unregister", "again");
    assert_eq!(ok(node.list_registrations(), "list"), []);
}

/// A key without its hash is `HashNotRegistered`, a key that is not the hashed one
/// `KeyDoesNotMatchHash`, another CLONE mark `CloneMarkMismatch`, a certificate whose
/// self-signature does not verify `CertificateRejected`; none is registered.
pub fn registrations_refuse_what_does_not_match<F: NodeFactory>(factory: &F) {
    let mut node = clause_setup!(supporting, factory.fresh_node(), NEEDED);
    let (certificate, hash) = registrable(&mut node);
    assert_refused!(
        node.register_public_key(&label("NO.HASH"), &certificate, true),
        BackendError::HashNotRegistered { ref name } if name.as_str() == "NO.HASH",
        "a key without its hash"
    );
    register_hash(&mut node, "OTHER.KEY", &other_hash(), true);
    assert_refused!(
        node.register_public_key(&label("OTHER.KEY"), &certificate, true),
        BackendError::KeyDoesNotMatchHash { .. },
        "a key that is not the hashed one"
    );
    register_hash(&mut node, "NO.CLONE", &hash, false);
    assert_refused!(
        node.register_public_key(&label("NO.CLONE"), &certificate, true),
        BackendError::CloneMarkMismatch { .. },
        "the key with CLONE"
    );
    register_hash(&mut node, "BAD.SIG", &hash, true);
    let mut bytes = certificate.into_bytes();
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x01; // inside the signature, outside what the hash covers
    }
    let damaged = Certificate::new(bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_refused!(
        node.register_public_key(&label("BAD.SIG"), &damaged, true),
        BackendError::CertificateRejected { .. },
        "a certificate whose self-signature does not verify"
    );
    let registrations = ok(node.list_registrations(), "list");
    assert!(
        registrations.iter().all(|r| r.key.is_none()),
        "no key was registered: {registrations:?}"
    );
}
