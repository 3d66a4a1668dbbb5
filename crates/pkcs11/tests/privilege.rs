//! Least privilege, from the side of a user who knows a token's user PIN: after a ceremony
//! on SoftHSM, this test drives the cryptoki crate directly, as such a user would with
//! pkcs11-tool or a small script, and tries to get the master key or a share out of the
//! source and target tokens, or to change what mkclone made.

mod common;

use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use mkclone_backend::{Backend, CloneableKind, InstallProgress, MofN, SealedShare};
use mkclone_formats::clone_info::CLEAR_HEADER_LEN;
use mkclone_formats::seal::SealedShareParts;
use mkclone_pkcs11::{Pkcs11Backend, Pkcs11NodeConfig, shared_module};
use zeroize::Zeroizing;

/// A finished ceremony: a SoftHSM source and target, SYM cloned and SET on the target,
/// ASYM with one share of two installed (held on the target) and one not yet.
struct After {
    source: Pkcs11NodeConfig,
    target: Pkcs11NodeConfig,
    /// The ASYM share the target holds (installed, not the m-th).
    held: SealedShare,
    /// An ASYM share file for the target, not installed.
    file: SealedShare,
}

fn ceremony(prefix: &str) -> After {
    let m_of_n = MofN::new(2, 3).unwrap();
    let mut sa_node = sim_node(1, "SA NODE");
    let (source_config, mut source) = token_node(&format!("{prefix}-source"), "SOURCE");
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).unwrap();
    }
    let sa = phase1(&mut sa_node);
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let (target_config, mut target) = token_node(&format!("{prefix}-target"), "TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    clone_into(
        &mut source,
        &css,
        &mut target,
        &csr,
        CloneableKind::Sym,
        &[1, 2],
        2,
    );
    let held = obtain(&mut source, CloneableKind::Asym, 1, &csr);
    let file = obtain(&mut source, CloneableKind::Asym, 2, &csr);
    let progress = install(&mut target, CloneableKind::Asym, &css, held.clone()).unwrap();
    assert_eq!(
        progress.value(),
        InstallProgress::NeedMore { received: 1, m: 2 }
    );
    After {
        source: source_config,
        target: target_config,
        held,
        file,
    }
}

/// The user who knows the PIN: a session of their own on the token, logged in.
struct Attacker {
    session: Session,
}

impl Attacker {
    fn login(config: &Pkcs11NodeConfig) -> Self {
        let pkcs11 = shared_module(&config.module).unwrap();
        let slot = pkcs11
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim_end() == config.token)
            .unwrap();
        let session = pkcs11.open_rw_session(slot).unwrap();
        match session.login(UserType::User, Some(&AuthPin::new(USER_PIN.into()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => panic!("login: {e}"),
        }
        Self { session }
    }

    fn label(&self, h: ObjectHandle) -> String {
        match self.session.get_attributes(h, &[AttributeType::Label]) {
            Ok(mut a) => match a.pop() {
                Some(Attribute::Label(l)) => String::from_utf8_lossy(&l).into_owned(),
                _ => String::new(),
            },
            Err(_) => String::new(),
        }
    }

    fn id(&self, h: ObjectHandle) -> Vec<u8> {
        match self.session.get_attributes(h, &[AttributeType::Id]) {
            Ok(mut a) => match a.pop() {
                Some(Attribute::Id(id)) => id,
                _ => Vec::new(),
            },
            Err(_) => Vec::new(),
        }
    }

    /// Every key object mkclone made on the token (by its label or its `CKA_ID`), with its
    /// label and class.
    fn mkclone_keys(&self) -> Vec<(ObjectHandle, String, ObjectClass)> {
        let mut out = Vec::new();
        for class in [
            ObjectClass::SECRET_KEY,
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
        ] {
            for h in self
                .session
                .find_objects(&[Attribute::Token(true), Attribute::Class(class)])
                .unwrap()
            {
                let label = self.label(h);
                if label.starts_with("mkclone/") || self.id(h).starts_with(b"mkclone/") {
                    out.push((h, label, class));
                }
            }
        }
        assert!(!out.is_empty(), "mkclone made keys on this token");
        out
    }

    fn master_keys(&self) -> Vec<(ObjectHandle, String)> {
        let keys: Vec<_> = self
            .mkclone_keys()
            .into_iter()
            .filter(|(_, l, _)| l.starts_with("mkclone/mk/"))
            .map(|(h, l, _)| (h, l))
            .collect();
        assert!(!keys.is_empty(), "the token holds master keys");
        keys
    }

    /// The attacker's own RSA key pair (session objects): the public half wraps.
    fn own_rsa(&self) -> (ObjectHandle, ObjectHandle) {
        self.session
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &[
                    Attribute::Token(false),
                    Attribute::ModulusBits(2048.into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                    Attribute::Wrap(true),
                    Attribute::Encrypt(true),
                ],
                &[
                    Attribute::Token(false),
                    Attribute::Decrypt(true),
                    Attribute::Unwrap(true),
                ],
            )
            .unwrap()
    }

    /// The attacker's own AES key (a session object) that wraps and unwraps.
    fn own_aes(&self) -> ObjectHandle {
        self.session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::ValueLen(32.into()),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .unwrap()
    }

    /// A triple-DES key of the attacker's own, extractable: what a wrap must succeed on
    /// (so that a refusal below is about mkclone's key, not the mechanism).
    fn own_des3(&self) -> ObjectHandle {
        self.session
            .generate_key(
                &Mechanism::Des3KeyGen,
                &[Attribute::Token(false), Attribute::Extractable(true)],
            )
            .unwrap()
    }

    /// Every way of wrapping `key` out with keys of one's own: each wrapped blob.
    fn wrap_out(&self, key: ObjectHandle) -> Vec<(&'static str, cryptoki::error::Result<Vec<u8>>)> {
        let (public, _) = self.own_rsa();
        let aes = self.own_aes();
        vec![
            (
                "own RSA public key, RSA-OAEP",
                self.session.wrap_key(&oaep(), public, key),
            ),
            (
                "own RSA public key, RSA PKCS#1 v1.5",
                self.session.wrap_key(&Mechanism::RsaPkcs, public, key),
            ),
            (
                "own AES key, AES key wrap",
                self.session.wrap_key(&Mechanism::AesKeyWrap, aes, key),
            ),
            (
                "own AES key, AES key wrap with padding",
                self.session.wrap_key(&Mechanism::AesKeyWrapPad, aes, key),
            ),
        ]
    }
}

fn oaep() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ))
}

#[test]
fn no_master_key_can_be_wrapped_out_with_ones_own_keys() {
    let after = ceremony("priv-wrap");
    for config in [&after.source, &after.target] {
        let attacker = Attacker::login(config);
        // The same wraps work on a key that allows them: a refusal is about mkclone's key.
        let control = attacker.own_des3();
        for (how, result) in attacker.wrap_out(control) {
            assert!(result.is_ok(), "control, {how}: {result:?}");
        }
        for (key, label) in attacker.master_keys() {
            for (how, result) in attacker.wrap_out(key) {
                assert!(
                    result.is_err(),
                    "token {}: {label} was wrapped out with the {how}",
                    config.token
                );
            }
            // Nor through a copy with other attributes, or a plain copy.
            for template in [
                vec![Attribute::WrapWithTrusted(false)],
                vec![Attribute::Token(false)],
                vec![],
            ] {
                let copy = attacker.session.copy_object(key, &template);
                assert!(
                    copy.is_err(),
                    "token {}: {label} was copied with {template:?}",
                    config.token
                );
            }
        }
    }
}

#[test]
fn no_key_mkclone_made_can_be_changed() {
    let after = ceremony("priv-set");
    for config in [&after.source, &after.target] {
        let attacker = Attacker::login(config);
        for (key, label, class) in attacker.mkclone_keys() {
            for change in [
                Attribute::Decrypt(true),
                Attribute::Encrypt(true),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Derive(true),
                Attribute::Label(b"renamed".to_vec()),
            ] {
                let result = attacker.session.update_attributes(key, &[change.clone()]);
                assert!(
                    result.is_err(),
                    "token {}: {class} {label}: C_SetAttributeValue({change:?}) succeeded",
                    config.token
                );
            }
        }
    }
}

/// The share key of `share` unwrapped with the CSR key under `template`, and what the
/// token says of the result.
fn unwrap_share_key(
    attacker: &Attacker,
    csr: ObjectHandle,
    share: &SealedShare,
    template: &[Attribute],
) -> cryptoki::error::Result<ObjectHandle> {
    let parts = SealedShareParts::decode(share).unwrap();
    attacker
        .session
        .unwrap_key(&oaep(), csr, &parts.wrapped_key, template)
}

fn csr_private_key(attacker: &Attacker) -> ObjectHandle {
    let found = attacker
        .session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(CSR_LABEL.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "one CSR private key");
    found[0]
}

fn flag(attacker: &Attacker, key: ObjectHandle, t: AttributeType) -> Option<bool> {
    attacker
        .session
        .get_attributes(key, &[t])
        .ok()?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Sensitive(b)
            | Attribute::Extractable(b)
            | Attribute::Token(b)
            | Attribute::Encrypt(b)
            | Attribute::Decrypt(b)
            | Attribute::Wrap(b)
            | Attribute::Unwrap(b)
            | Attribute::Sign(b)
            | Attribute::Verify(b)
            | Attribute::Derive(b)
            | Attribute::Modifiable(b) => Some(b),
            _ => None,
        })
}

#[test]
fn the_csr_key_unwraps_share_keys_only_as_sensitive_never_extractable_keys() {
    let after = ceremony("priv-unwrap");
    let attacker = Attacker::login(&after.target);
    let csr = csr_private_key(&attacker);
    let base = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::DES3),
    ];
    let templates: Vec<Vec<Attribute>> = vec![
        base.to_vec(),
        [&base[..], &[Attribute::Token(true)]].concat(),
        [
            &base[..],
            &[
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Decrypt(true),
            ],
        ]
        .concat(),
        [
            &base[..],
            &[
                Attribute::Token(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Decrypt(true),
                Attribute::Encrypt(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
            ],
        ]
        .concat(),
    ];
    for template in templates {
        for share in [&after.file, &after.held] {
            match unwrap_share_key(&attacker, csr, share, &template) {
                Err(_) => {}
                Ok(key) => {
                    let sensitive = flag(&attacker, key, AttributeType::Sensitive);
                    let extractable = flag(&attacker, key, AttributeType::Extractable);
                    let token = flag(&attacker, key, AttributeType::Token);
                    let _ = attacker.session.destroy_object(key);
                    assert!(
                        sensitive == Some(true)
                            && extractable == Some(false)
                            && token == Some(false),
                        "{template:?} unwrapped a share key with sensitive {sensitive:?}, \
                         extractable {extractable:?}, token {token:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_held_share_cannot_be_decrypted_with_any_key_the_token_keeps() {
    let after = ceremony("priv-held");
    let attacker = Attacker::login(&after.target);
    let parts = SealedShareParts::decode(&after.held).unwrap();
    let area = &parts.encrypted_clone_info[CLEAR_HEADER_LEN..];
    let keys = attacker.mkclone_keys();
    for (key, label, class) in keys {
        let result = if class == ObjectClass::SECRET_KEY {
            attacker.session.decrypt(&Mechanism::Des3Cbc([0; 8]), key, area)
        } else if class == ObjectClass::PRIVATE_KEY {
            attacker.session.decrypt(&oaep(), key, &parts.wrapped_key)
        } else {
            continue;
        };
        assert!(
            result.is_err(),
            "{class} {label} decrypted the held share ({} bytes out)",
            result.map(|r| Zeroizing::new(r).len()).unwrap_or(0)
        );
    }
}

/// The token `config` names, opened by mkclone: the error text if it refuses.
fn open_error(config: &Pkcs11NodeConfig) -> String {
    match Pkcs11Backend::open(config, Zeroizing::new(USER_PIN.into())) {
        Ok(_) => panic!("token {} opened", config.token),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_look_alike_in_place_of_an_mkclone_object_is_detected_at_the_next_open() {
    // The EID data object, destroyed and made again with the same value, readable
    // without login (CKA_PRIVATE false).
    let (config, node) = token_node("priv-eid", "LOOK ALIKE");
    drop(node);
    {
        let attacker = Attacker::login(&config);
        let found = attacker
            .session
            .find_objects(&[Attribute::Label(b"mkclone/eid".to_vec())])
            .unwrap();
        assert_eq!(found.len(), 1);
        let value = match attacker
            .session
            .get_attributes(found[0], &[AttributeType::Value])
            .unwrap()
            .pop()
        {
            Some(Attribute::Value(v)) => v,
            other => panic!("{other:?}"),
        };
        attacker.session.destroy_object(found[0]).unwrap();
        attacker
            .session
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Application(b"mkclone".to_vec()),
                Attribute::Label(b"mkclone/eid".to_vec()),
                Attribute::Value(value),
            ])
            .unwrap();
    }
    let err = open_error(&config);
    assert!(
        err.contains("mkclone/eid") && err.contains("CKA_PRIVATE") && err.contains("outside mkclone"),
        "{err}"
    );
}
