//! Tokens that differ, on SoftHSM with test seams standing in for them: a token that gives
//! an empty CKA_CHECK_VALUE (opencryptoki 3.27 does for a created triple-DES key, and such a
//! target used to read as "damaged" after install, `abort --clear-new` included), and a
//! token without CKM_SHA256_RSA_PKCS (opencryptoki 3.8.1; tests/opencryptoki.rs runs the real
//! one). And the adversary: a register key replaced outside mkclone is noticed with or
//! without check values.

mod common;

use common::*;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use mkclone_backend::{Backend, BackendError, CloneableKind, KeyRole, MofN};

/// A SoftHSM token opened with every CKA_CHECK_VALUE answered empty.
fn without_check_values(label: &str, eid: &str) -> mkclone_pkcs11::Pkcs11Backend {
    let config = new_token(label);
    let mut node = open(&config);
    node.withhold_check_values();
    node.set_eid(&mkclone_backend::Eid::new(eid).unwrap())
        .unwrap();
    node
}

#[test]
fn a_target_without_check_values_completes_a_ceremony_and_can_be_aborted() {
    let m_of_n = MofN::new(2, 3).unwrap();
    let mut sa_node = sim_node(1, "SA NODE");
    let sa = phase1(&mut sa_node);
    let mut source = sim_node(2, "SIM SOURCE");
    let css = random_source(&mut sa_node, &sa, &mut source, m_of_n);
    let mut target = without_check_values("nocv-target", "TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    for kind in CloneableKind::ALL {
        clone_into(&mut source, &css, &mut target, &csr, kind, &[1, 2], 2);
    }
    // Every command still works: status, share status, and CLEAR NEW (`abort
    // --clear-new`) after a share of a new key, then after the whole new key.
    let kind = CloneableKind::Asym;
    clear_new_after_one_share_and_after_all(&mut source, &css, &mut target, &csr, kind);
    // The source without check values too: RANDOM, shares, a SET on the target.
    let mut hsm_source = without_check_values("nocv-source", "HSM SOURCE");
    let hsm_css = random_source(&mut sa_node, &sa, &mut hsm_source, m_of_n);
    clone_into(
        &mut hsm_source,
        &hsm_css,
        &mut target,
        &csr,
        kind,
        &[2, 3],
        2,
    );
}

#[test]
fn registers_recorded_with_check_values_stay_sound_when_the_token_stops_giving_them() {
    // A node whose pattern objects record check values (as SoftHSM gives them), then a
    // token that answers them empty (an upgrade of the module): nothing reads as damaged.
    let config = new_token("cv-then-none");
    let mut node = open(&config);
    for kind in CloneableKind::ALL {
        node.load_random_master_key(kind).unwrap();
    }
    let before = snapshot(&mut node);
    drop(node);
    let mut node = open(&config);
    node.withhold_check_values();
    assert_eq!(snapshot(&mut node), before);
}

/// Replace the `CURRENT` register key of token `label` outside mkclone: a look-alike, a new
/// triple-DES key with every attribute of mkclone's template, the same label and id, and
/// another value; the original destroyed.
fn replace_register_key(label: &str) {
    let session = user_session(&node_config(module_path(), label));
    let keys = session
        .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
        .unwrap();
    let mut replaced = 0;
    for key in keys {
        let attrs = session
            .get_attributes(key, &[AttributeType::Label, AttributeType::Id])
            .unwrap();
        let (mut name, mut id) = (Vec::new(), Vec::new());
        for a in attrs {
            match a {
                Attribute::Label(l) => name = l,
                Attribute::Id(i) => id = i,
                _ => {}
            }
        }
        if !name.starts_with(b"mkclone/mk/") {
            continue;
        }
        session
            .create_object(&look_alike_secret(
                KeyType::DES3,
                true,
                &[],
                vec![
                    Attribute::Label(name),
                    Attribute::Id(id),
                    Attribute::Value((0u8..24).map(|i| i.wrapping_mul(13) | 1).collect()),
                ],
            ))
            .unwrap();
        session.destroy_object(key).unwrap();
        replaced += 1;
    }
    assert_eq!(replaced, 1, "one register key");
}

#[test]
fn a_register_key_replaced_outside_mkclone_is_noticed_with_or_without_check_values() {
    for (label, withhold) in [("swap-cv", false), ("swap-nocv", true)] {
        let config = new_token(label);
        let mut node = open(&config);
        if withhold {
            node.withhold_check_values();
        }
        node.load_random_master_key(CloneableKind::Sym).unwrap();
        replace_register_key(label);
        match node.status() {
            Err(BackendError::MalformedReply { detail, .. }) => {
                assert!(
                    detail.contains("replaced outside mkclone") && detail.contains("mkclone/mk/"),
                    "{label}: {detail}"
                );
                if withhold {
                    assert!(detail.contains("computed in the token"), "{detail}");
                }
            }
            other => panic!("{label}: the replaced key went unnoticed: {other:?}"),
        }
    }
}

#[test]
fn signing_through_ckm_rsa_pkcs_makes_the_same_signatures() {
    // RSASSA-PKCS1-v1_5 is deterministic: the same key over the same bytes gives the same
    // signature whichever way the token is asked (CKM_SHA256_RSA_PKCS, or CKM_RSA_PKCS over
    // the DigestInfo). Certifying one subject both ways shows it, byte for byte.
    let (_, mut sa_node) = token_node("sign-sa", "SA NODE");
    let sa = phase1(&mut sa_node);
    let mut subject = sim_node(2, "SUBJECT");
    subject.set_m_of_n(MofN::new(2, 3).unwrap()).unwrap();
    install_sa(&mut subject, &sa);
    assert!(!sa_node.signs_through_rsa_pkcs());
    let direct = certify(&mut sa_node, &mut subject, CSS_LABEL, KeyRole::Css);
    sa_node.sign_through_rsa_pkcs();
    assert!(sa_node.signs_through_rsa_pkcs());
    let through_digest_info = certify(&mut sa_node, &mut subject, CSS_LABEL, KeyRole::Css);
    assert_eq!(direct, through_digest_info);
    // And a whole clone with the source signing so (its shares verify on the target).
    let (_, mut source) = token_node("sign-source", "SOURCE");
    source.sign_through_rsa_pkcs();
    source.load_random_master_key(CloneableKind::Sym).unwrap();
    let m_of_n = MofN::new(2, 3).unwrap();
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let mut target = sim_node(3, "TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    let kind = CloneableKind::Sym;
    clone_into(&mut source, &css, &mut target, &csr, kind, &[1, 3], 2);
}
