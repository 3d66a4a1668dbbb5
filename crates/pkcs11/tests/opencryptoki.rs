//! opencryptoki's soft token as Debian 12 ships it (3.8.1), in every role of a ceremony.

mod common;

use common::opencryptoki::{Opencryptoki, USER_PIN, in_private_opencryptoki};
use common::*;
use mkclone_backend::{Backend, CloneableKind, MofN};
use mkclone_pkcs11::Pkcs11Backend;
use zeroize::Zeroizing;

fn open_ock(config: &mkclone_pkcs11::Pkcs11NodeConfig) -> Pkcs11Backend {
    Pkcs11Backend::open(config, Zeroizing::new(USER_PIN.into()))
        .unwrap_or_else(|e| panic!("opening the opencryptoki token: {e}"))
}

#[test]
fn opencryptoki_target() {
    if !in_private_opencryptoki("opencryptoki_target") {
        return;
    }
    let ock = Opencryptoki::start();
    let config = ock.init_token("ock-target");
    let mut target = open_ock(&config);
    target
        .set_eid(&mkclone_backend::Eid::new("OCK TARGET").unwrap())
        .unwrap();
    let m_of_n = MofN::new(2, 3).unwrap();
    let mut sa_node = sim_node(1, "SA NODE");
    let mut source = sim_node(2, "SIM SOURCE");
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).unwrap();
    }
    let sa = phase1(&mut sa_node);
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    for kind in CloneableKind::ALL {
        clone_into(&mut source, &css, &mut target, &csr, kind, &[1, 3], 2);
    }
}

#[test]
fn opencryptoki_probe() {
    if !in_private_opencryptoki("opencryptoki_probe") {
        return;
    }
    use cryptoki::mechanism::{Mechanism, MechanismType};
    use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let ock = Opencryptoki::start();
    let _config = ock.init_token("probe");
    let pkcs11 =
        mkclone_pkcs11::shared_module(std::path::Path::new(common::opencryptoki::MODULE)).unwrap();
    let slot = pkcs11.get_all_slots().unwrap()[0];
    println!(
        "cryptoki get_token_info: {:?}",
        pkcs11.get_token_info(slot).err()
    );
    println!("info: {:?}", pkcs11.get_library_info());
    for m in [
        MechanismType::SHA256_RSA_PKCS,
        MechanismType::RSA_PKCS,
        MechanismType::AES_KEY_WRAP,
        MechanismType::AES_KEY_WRAP_PAD,
        MechanismType::RSA_PKCS_OAEP,
    ] {
        println!("{m}: {:?}", pkcs11.get_mechanism_info(slot, m));
    }
    let session = pkcs11.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::new(USER_PIN.into())))
        .unwrap();
    let key = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::DES3),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Value((0u8..24).map(|i| i.wrapping_mul(37) | 1).collect()),
        ])
        .unwrap();
    for t in [
        AttributeType::CheckValue,
        AttributeType::WrapWithTrusted,
        AttributeType::Trusted,
        AttributeType::AllowedMechanisms,
        AttributeType::Modifiable,
        AttributeType::Copyable,
        AttributeType::Destroyable,
    ] {
        println!("{t}: {:?}", session.get_attributes(key, &[t]));
    }
    println!(
        "digest key: {:?}",
        session
            .digest_init(&Mechanism::Sha1)
            .and_then(|_| session.digest_update(&[1]))
            .and_then(|_| session.digest_key(key))
            .and_then(|_| session.digest_final())
    );
    println!(
        "set wrap_with_trusted: {:?}",
        session.update_attributes(key, &[Attribute::WrapWithTrusted(true)])
    );
    println!(
        "create with wrap_with_trusted: {:?}",
        session.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::DES3),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::WrapWithTrusted(true),
            Attribute::Modifiable(false),
            Attribute::Value((0u8..24).map(|i| i.wrapping_mul(31) | 1).collect()),
        ])
    );
    println!(
        "gen with unwrap_template: {:?}",
        session.generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(false),
                Attribute::ModulusBits(1024.into()),
                Attribute::PublicExponent(vec![1, 0, 1])
            ],
            &[Attribute::Token(false), Attribute::Unwrap(true)]
        )
    );
    panic!("probe done");
}
