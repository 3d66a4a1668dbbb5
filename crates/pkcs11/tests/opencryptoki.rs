//! A second PKCS#11 implementation: opencryptoki's soft token as Debian 12 ships it (3.8.1),
//! each test in a private opencryptoki of its own (tests/common/opencryptoki.rs: started by
//! the test, isolated from the machine's; fails, never skips, without opencryptoki).
//!
//! First what 3.8.1 can and cannot do, asserted (so a different opencryptoki is noticed
//! here, not in a ceremony); then a ceremony with the opencryptoki token in each role it
//! can serve (SA, source, target), beside SoftHSM tokens and simulated cards, and the
//! clean-up (CLEAR NEW, as `abort --clear-new` runs it) on a token that gives no
//! CKA_CHECK_VALUE.

mod common;

use std::path::Path;

use common::opencryptoki::{MODULE, Opencryptoki, SLOT, USER_PIN, in_private_opencryptoki};
use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use mkclone_backend::{Backend, Certificate, CloneableKind, Eid, MofN};
use mkclone_pkcs11::{Pkcs11Backend, Pkcs11NodeConfig, list_slots, shared_module};
use zeroize::Zeroizing;

fn open_ock(config: &Pkcs11NodeConfig) -> Pkcs11Backend {
    Pkcs11Backend::open(config, Zeroizing::new(USER_PIN.into()))
        .unwrap_or_else(|e| panic!("opening the opencryptoki token: {e}"))
}

/// In the private opencryptoki of `test` (None once `test` ran there in a child): the
/// daemon started, and its fresh token `label` opened with EID `eid`. The daemon is kept
/// with the node: it must outlive it.
fn ock_started(test: &str, label: &str, eid: &str) -> Option<(Opencryptoki, Pkcs11Backend)> {
    if !in_private_opencryptoki(test) {
        return None;
    }
    let ock = Opencryptoki::start();
    let node = ock_node(&ock, label, eid);
    Some((ock, node))
}

/// The opencryptoki token labelled `label`, fresh, opened, its EID set.
fn ock_node(ock: &Opencryptoki, label: &str, eid: &str) -> Pkcs11Backend {
    let mut node = open_ock(&ock.init_token(label));
    node.set_eid(&Eid::new(eid).unwrap()).unwrap();
    // 3.8.1 has no CKM_SHA256_RSA_PKCS: every signature below goes through CKM_RSA_PKCS.
    assert!(node.signs_through_rsa_pkcs());
    // What 3.8.1 cannot protect, said at open (and by `status`): it knows none of the three
    // attributes, so the templates leave them out.
    for unknown in [
        "this token does not know CKA_COPYABLE",
        "this token does not know CKA_WRAP_WITH_TRUSTED, so mkclone's templates leave it out: \
         a user-PIN holder can wrap the master keys and the coefficient seed out with a key of their own",
        "this token does not know CKA_UNWRAP_TEMPLATE, so mkclone's templates leave it out: \
         a user-PIN holder can unwrap a share key with the CSR key as a key they can read",
    ] {
        assert!(
            node.limits().iter().any(|l| l.starts_with(unknown)),
            "{unknown:?} is not among {:#?}",
            node.limits()
        );
    }
    // It does enforce what it knows: no limit says a CKA_MODIFIABLE-false key changes, or
    // that the user can mark a key CKA_TRUSTED.
    assert!(
        !node
            .limits()
            .iter()
            .any(|l| l.contains("CKA_MODIFIABLE-false objects be changed")
                || l.contains("lets the user mark a key CKA_TRUSTED")),
        "{:#?}",
        node.limits()
    );
    node
}

#[test]
fn what_opencryptoki_3_8_1_can_and_cannot_do() {
    if !in_private_opencryptoki("what_opencryptoki_3_8_1_can_and_cannot_do") {
        return;
    }
    let ock = Opencryptoki::start();
    let config = ock.init_token("facts");
    let pkcs11 = shared_module(Path::new(MODULE)).unwrap();
    let info = pkcs11.get_library_info().unwrap();
    assert_eq!(
        (
            info.library_version().major(),
            info.library_version().minor()
        ),
        (3, 8),
        "these facts are of opencryptoki 3.8 (Debian 12's 3.8.1): {info:?}"
    );
    let slot = pkcs11
        .get_all_slots()
        .unwrap()
        .into_iter()
        .find(|s| s.id() == SLOT)
        .unwrap();

    // Its token information: cryptoki cannot parse the clock (CKF_CLOCK_ON_TOKEN with a
    // utcTime "hh:mm:ss" and blanks), and is not a PKCS#11 error; mkclone lists the token.
    match pkcs11.get_token_info(slot) {
        Err(CkError::Pkcs11(rv, f)) => panic!("a PKCS#11 error, not a parse error: {rv} {f}"),
        Err(_) => {}
        Ok(info) => panic!("cryptoki now parses 3.8.1's token information: {info:?}"),
    }
    let slots = list_slots(Path::new(MODULE)).unwrap();
    let token = listed_token(&slots, "facts");
    assert_eq!(token.manufacturer, "IBM Corp.");
    assert_eq!(token.model, "IBM SoftTok");
    assert_eq!(
        token.serial, "123",
        "every 3.8.1 soft token reports serial 123"
    );
    assert_eq!(token.identity, "123");
    assert!(token.initialized && token.user_pin_initialized && token.login_required);
    assert_eq!(
        token.uri,
        format!(
            "pkcs11:token=facts;manufacturer=IBM%20Corp.;model=IBM%20SoftTok;serial=123\
             ?module-path={MODULE}"
        )
    );

    // Mechanisms: no CKM_SHA256_RSA_PKCS (mkclone signs with CKM_RSA_PKCS over the
    // DigestInfo), no AES key wrap; everything else mkclone needs.
    let mechanism = |m: MechanismType| pkcs11.get_mechanism_info(slot, m);
    for missing in [
        MechanismType::SHA256_RSA_PKCS,
        MechanismType::AES_KEY_WRAP,
        MechanismType::AES_KEY_WRAP_PAD,
    ] {
        assert!(
            matches!(
                mechanism(missing),
                Err(CkError::Pkcs11(RvError::MechanismInvalid, _))
            ),
            "{missing}: {:?}",
            mechanism(missing)
        );
    }
    assert!(mechanism(MechanismType::RSA_PKCS).unwrap().sign());
    for present in [
        MechanismType::RSA_PKCS_KEY_PAIR_GEN,
        MechanismType::RSA_PKCS_OAEP,
        MechanismType::DES3_KEY_GEN,
        MechanismType::DES3_CBC,
        MechanismType::SHA256_HMAC,
        MechanismType::GENERIC_SECRET_KEY_GEN,
        MechanismType::SHA1,
    ] {
        assert!(mechanism(present).is_ok(), "{present}");
    }

    // A triple-DES key created with its value: no CKA_CHECK_VALUE at all (mkclone then
    // checks a register by its pattern, computed in the token by C_DigestKey, which 3.8.1
    // does for a sensitive key); no CKA_WRAP_WITH_TRUSTED, CKA_TRUSTED,
    // CKA_ALLOWED_MECHANISMS, CKA_COPYABLE or CKA_DESTROYABLE.
    let session = pkcs11.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::new(USER_PIN.into())))
        .unwrap();
    let value: Vec<u8> = (0u8..24).map(|i| i.wrapping_mul(37) | 1).collect();
    let des3 = |extra: &[Attribute]| {
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::DES3),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Value(value.clone()),
        ];
        template.extend_from_slice(extra);
        session.create_object(&template)
    };
    let key = des3(&[]).unwrap();
    for absent in [
        AttributeType::CheckValue,
        AttributeType::WrapWithTrusted,
        AttributeType::Trusted,
        AttributeType::AllowedMechanisms,
        AttributeType::Copyable,
        AttributeType::Destroyable,
    ] {
        assert_eq!(
            session.get_attributes(key, &[absent]).unwrap(),
            vec![],
            "{absent}"
        );
    }
    // Neither can be set on a key by the user: CKA_WRAP_WITH_TRUSTED is unknown to 3.8.1,
    // CKA_TRUSTED is refused in a secret key's template.
    for (refused, rv) in [
        (
            Attribute::WrapWithTrusted(true),
            RvError::AttributeTypeInvalid,
        ),
        (Attribute::Trusted(true), RvError::TemplateInconsistent),
    ] {
        let result = des3(std::slice::from_ref(&refused));
        assert!(
            matches!(result, Err(CkError::Pkcs11(got, _)) if got == rv),
            "{refused:?}: {result:?}"
        );
    }
    session.digest_init(&Mechanism::Sha1).unwrap();
    session.digest_update(&[0x01]).unwrap();
    session.digest_key(key).unwrap();
    let digest = session.digest_final().unwrap();
    let mut expected = vec![0x01];
    expected.extend(&value);
    assert_eq!(
        digest,
        sha1_of(&expected),
        "C_DigestKey digests the key's value"
    );
    drop(session);
    drop(config);
}

fn sha1_of(data: &[u8]) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    Sha1::digest(data).to_vec()
}

#[test]
fn opencryptoki_as_the_target() {
    let test = "opencryptoki_as_the_target";
    let Some((_ock, mut target)) = ock_started(test, "ock-target", "OCK TARGET") else {
        return;
    };
    let m_of_n = MofN::new(2, 3).unwrap();
    let (mut sa_node, sa) = sim_sa();
    let (mut source, css) = hsm_source(&mut sa_node, &sa, m_of_n);
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    for kind in CloneableKind::ALL {
        clone_into(&mut source, &css, &mut target, &csr, kind, &[1, 3], 2);
    }

    // CLEAR NEW, as `abort --clear-new` runs it, after one share of a new key and after the
    // whole key: a token without CKA_CHECK_VALUE keeps working through it.
    let kind = CloneableKind::Sym;
    let current = pattern(&mut target, kind, "current");
    clear_new_after_one_share_and_after_all(&mut source, &css, &mut target, &csr, kind);
    // After a reopen (recovery on this token) the state reads the same.
    drop(target);
    let mut target = open_ock(&ock_config("ock-target"));
    assert_eq!(pattern(&mut target, kind, "current"), current);
    assert_eq!(pattern(&mut target, kind, "new"), None);
}

/// A fresh SoftHSM token as the source: every master key random, phase 2 done (the CSS
/// certificate).
fn hsm_source(sa_node: &mut dyn Backend, sa: &SaKey, m_of_n: MofN) -> (Pkcs11Backend, Certificate) {
    let (_, mut source) = token_node("hsm-source", "HSM SOURCE");
    let css = random_source(sa_node, sa, &mut source, m_of_n);
    (source, css)
}

/// The configuration of the opencryptoki token `label` (already initialized).
fn ock_config(label: &str) -> Pkcs11NodeConfig {
    Pkcs11NodeConfig::from_fields(
        Some(MODULE),
        label,
        None,
        Some(mkclone_pkcs11::PinSource::Env("UNUSED".into())),
        None,
    )
    .unwrap()
}

#[test]
fn opencryptoki_as_the_source() {
    let test = "opencryptoki_as_the_source";
    let Some((_ock, mut source)) = ock_started(test, "ock-source", "OCK SOURCE") else {
        return;
    };
    let (mut sa_node, sa) = sim_sa();
    let m_of_n = MofN::new(2, 3).unwrap();
    let css = random_source(&mut sa_node, &sa, &mut source, m_of_n);
    // A SoftHSM target and a simulated one.
    let (_, mut hsm) = token_node("hsm-target", "HSM TARGET");
    let hsm_csr = phase3ab(&mut sa_node, &sa, &mut hsm, m_of_n);
    let mut sim = sim_node(3, "SIM TARGET");
    let sim_csr = phase3ab(&mut sa_node, &sa, &mut sim, m_of_n);
    for kind in CloneableKind::ALL {
        clone_into(&mut source, &css, &mut hsm, &hsm_csr, kind, &[2, 3], 2);
        clone_into(&mut source, &css, &mut sim, &sim_csr, kind, &[1, 2], 2);
    }
}

#[test]
fn opencryptoki_as_the_sa() {
    let test = "opencryptoki_as_the_sa";
    let Some((_ock, mut sa_node)) = ock_started(test, "ock-sa", "OCK SA") else {
        return;
    };
    let sa = phase1(&mut sa_node);
    let m_of_n = MofN::new(2, 2).unwrap();
    let (mut source, css) = hsm_source(&mut sa_node, &sa, m_of_n);
    let mut target = sim_node(3, "SIM TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    for kind in CloneableKind::ALL {
        clone_into(&mut source, &css, &mut target, &csr, kind, &[1, 2], 2);
    }
}
