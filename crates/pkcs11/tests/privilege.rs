//! Least privilege, from the side of a user who knows a token's user PIN: after a ceremony
//! on SoftHSM, this test drives the cryptoki crate directly, as such a user would with
//! pkcs11-tool or a small script, and tries to get the master key or a share out of the
//! source and target tokens, or to change what mkclone made.

mod common;

use common::*;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use mkclone_backend::{
    Backend, BackendError, CloneableKind, InstallProgress, KeyRole, MofN, SealedShare,
};
use mkclone_formats::clone_info::CLEAR_HEADER_LEN;
use mkclone_formats::seal::SealedShareParts;
use mkclone_pkcs11::{PinSource, Pkcs11Backend, Pkcs11Error, Pkcs11NodeConfig};
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
        Self {
            session: user_session(config),
        }
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
                let result = attacker
                    .session
                    .update_attributes(key, std::slice::from_ref(&change));
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
            attacker
                .session
                .decrypt(&Mechanism::Des3Cbc([0; 8]), key, area)
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
        err.contains("mkclone/eid")
            && err.contains("CKA_PRIVATE")
            && err.contains("outside mkclone"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// The security officer's step
// ---------------------------------------------------------------------------------------

/// A source ready to export: m-of-n, a SYM key, the SA key and a CSS key; and a CSR
/// certificate of a simulated target.
fn source_ready(label: &str) -> (Pkcs11NodeConfig, mkclone_backend::Certificate) {
    let m_of_n = MofN::new(2, 3).unwrap();
    let mut sa_node = sim_node(1, "SA NODE");
    let (config, mut source) = token_node(label, "SOURCE");
    source.load_random_master_key(CloneableKind::Sym).unwrap();
    let sa = phase1(&mut sa_node);
    phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let mut target = sim_node(3, "TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    (config, csr)
}

fn with_so_pin(config: &Pkcs11NodeConfig, so_pin: Option<PinSource>) -> Pkcs11NodeConfig {
    Pkcs11NodeConfig {
        so_pin,
        ..config.clone()
    }
}

fn credential_detail(result: mkclone_backend::Result<SealedShare>) -> String {
    match result {
        Err(e @ BackendError::Credential { .. }) => e.to_string(),
        other => panic!("expected a credential error, got {other:?}"),
    }
}

#[test]
fn a_share_export_needs_the_security_officer() {
    let (config, csr) = source_ready("priv-so");
    let request = obtain_request(CloneableKind::Sym, 1, &csr);
    let before = {
        let mut node = open(&config);
        node.share_status().unwrap()
    };

    // No so_pin: refused before anything happens, naming the setting.
    let mut node = open(&with_so_pin(&config, None));
    let err = credential_detail(node.obtain_share(&request));
    assert!(err.contains("so_pin = { env"), "{err}");
    assert_eq!(node.share_status().unwrap(), before);
    drop(node);

    // A wrong SO PIN: refused; the user is logged in again and the node works on.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("so.pin");
    std::fs::write(&wrong, "not-the-so-pin\n").unwrap();
    let mut node = open(&with_so_pin(&config, Some(PinSource::File(wrong))));
    let err = credential_detail(node.obtain_share(&request));
    assert!(
        err.contains("refused the security officer's PIN (so_pin)")
            && !err.contains("not-the-so-pin"),
        "{err}"
    );
    assert_eq!(node.share_status().unwrap(), before);
    assert!(node.status().is_ok());
    drop(node);

    // "prompt": the caller's prompt, asked once per session.
    let mut node = open(&with_so_pin(&config, Some(PinSource::Prompt)));
    let err = credential_detail(node.obtain_share(&request));
    assert!(err.contains("set_so_pin_prompt"), "{err}");
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&asked);
    node.set_so_pin_prompt(move || {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Zeroizing::new(SO_PIN.to_string()))
    });
    node.obtain_share(&request).unwrap();
    node.obtain_share(&obtain_request(CloneableKind::Sym, 2, &csr))
        .unwrap();
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
}

const ATTACKER_TOKEN: &str = "MKCLONE_TEST_PRIVILEGE_ATTACKER_TOKEN";
const ATTACKER_MODULE: &str = "MKCLONE_TEST_PRIVILEGE_ATTACKER_MODULE";

/// The child's part of `the_export_key_is_out_of_reach_of_every_other_process`: a user
/// who knows the PIN, in a process of their own, while mkclone's session holds the export
/// key. It reports what it saw and what it wrapped out.
fn attack_from_another_process(token: String, module: String) {
    let config = Pkcs11NodeConfig {
        module: module.into(),
        token,
        expect_token_serial: None,
        pin: PinSource::Env("MKCLONE_TEST_UNUSED_PIN_VARIABLE".into()),
        so_pin: None,
    };
    let attacker = Attacker::login(&config);
    let exports = attacker
        .session
        .find_objects(&[Attribute::Label(b"mkclone/export".to_vec())])
        .unwrap();
    let publics = attacker
        .session
        .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
        .unwrap();
    let mut wrapped = 0;
    for (key, _) in attacker.master_keys() {
        for public in &publics {
            if attacker.session.wrap_key(&oaep(), *public, key).is_ok() {
                wrapped += 1;
            }
        }
        for (_, result) in attacker.wrap_out(key) {
            wrapped += usize::from(result.is_ok());
        }
    }
    println!("ATTACKER SAW {} WRAPPED {wrapped}", exports.len());
}

#[test]
fn the_export_key_is_out_of_reach_of_every_other_process() {
    if let (Ok(token), Ok(module)) = (
        std::env::var(ATTACKER_TOKEN),
        std::env::var(ATTACKER_MODULE),
    ) {
        attack_from_another_process(token, module);
        return;
    }
    let (config, csr) = source_ready("priv-export");
    let mut node = open(&config);
    obtain(&mut node, CloneableKind::Sym, 1, &csr);
    // mkclone's own process sees its session's export key (both halves)...
    let mine = Attacker::login(&config)
        .session
        .find_objects(&[Attribute::Label(b"mkclone/export".to_vec())])
        .unwrap();
    assert_eq!(mine.len(), 2);
    // ...another process, with the user PIN, neither sees nor uses it.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_export_key_is_out_of_reach_of_every_other_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ATTACKER_TOKEN, &config.token)
        .env(ATTACKER_MODULE, &config.module)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ATTACKER SAW 0 WRAPPED 0"), "{stdout}");
    // The export key goes with mkclone's session.
    drop(node);
    let after = Attacker::login(&config)
        .session
        .find_objects(&[Attribute::Label(b"mkclone/export".to_vec())])
        .unwrap();
    assert!(after.is_empty());
}

#[test]
fn a_trusted_key_left_under_the_export_label_is_removed_at_open() {
    let (config, node) = token_node("priv-left", "LEFT BEHIND");
    drop(node);
    // The security officer makes a token object that looks like an export key.
    {
        let attacker = Attacker::login(&config);
        attacker.session.logout().unwrap();
        attacker
            .session
            .login(UserType::So, Some(&AuthPin::new(SO_PIN.into())))
            .unwrap();
        attacker
            .session
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::ModulusBits(1024.into()),
                    Attribute::Trusted(true),
                    Attribute::Wrap(true),
                    Attribute::Label(b"mkclone/export".to_vec()),
                ],
                &[
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Label(b"mkclone/export".to_vec()),
                ],
            )
            .unwrap();
        attacker.session.logout().unwrap();
    }
    let node = open(&config);
    drop(node);
    let attacker = Attacker::login(&config);
    assert!(
        attacker
            .session
            .find_objects(&[Attribute::Label(b"mkclone/export".to_vec())])
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------
// What SoftHSM enforces, and what mkclone says it cannot
// ---------------------------------------------------------------------------------------

#[test]
fn softhsm_enforces_what_mkclone_relies_on_and_the_rest_is_said() {
    let (config, node) = token_node("priv-probe", "PROBE");
    // The probe at open found every protection enforced: what is left is what every
    // token leaves to its PIN holders, and SoftHSM's own.
    let limits = node.limits().to_vec();
    assert_eq!(node.capabilities().limits, limits);
    assert_eq!(limits.len(), 4, "{limits:#?}");
    assert!(
        limits
            .iter()
            .any(|l| l.contains("SO PIN") || l.contains("security officer's PIN"))
    );
    assert!(limits.iter().any(|l| l.contains("SoftHSM is software")));
    assert!(
        !limits
            .iter()
            .any(|l| l.starts_with("this token") || l.contains("could not check")),
        "{limits:#?}"
    );
    drop(node);
    // And directly: a user cannot mark a key trusted.
    let attacker = Attacker::login(&config);
    let trusted = attacker.session.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(false),
            Attribute::ValueLen(32.into()),
            Attribute::Wrap(true),
            Attribute::Trusted(true),
        ],
    );
    assert!(trusted.is_err(), "{trusted:?}");
}

// ---------------------------------------------------------------------------------------
// Changed outside mkclone
// ---------------------------------------------------------------------------------------

/// The one object of `class` labelled `label` (or whose label starts with it).
fn object(attacker: &Attacker, class: ObjectClass, label: &str) -> ObjectHandle {
    let found: Vec<ObjectHandle> = attacker
        .session
        .find_objects(&[Attribute::Token(true), Attribute::Class(class)])
        .unwrap()
        .into_iter()
        .filter(|h| attacker.label(*h).starts_with(label))
        .collect();
    assert_eq!(found.len(), 1, "{class} {label}");
    found[0]
}

#[test]
fn a_flag_changed_on_a_test_token_is_named_at_the_next_open_and_before_the_next_step() {
    // A test-only token: mkclone makes its objects CKA_MODIFIABLE (SoftHSM refuses every
    // change otherwise), so that the change an attacker could make on a token that does
    // not enforce it can be made here.
    let token = "priv-drift";
    mkclone_pkcs11::test_seams::leave_objects_modifiable(token);
    let (config, mut node) = token_node(token, "DRIFT");
    node.set_m_of_n(MofN::new(2, 3).unwrap()).unwrap();
    node.load_random_master_key(CloneableKind::Sym).unwrap();
    generate(&mut node, CSS_LABEL, KeyRole::Css);
    generate(&mut node, CSR_LABEL, KeyRole::Csr);
    drop(node);

    let changes: [(ObjectClass, &str, Attribute, Attribute, &str); 5] = [
        (
            ObjectClass::SECRET_KEY,
            "mkclone/mk/",
            Attribute::Decrypt(true),
            Attribute::Decrypt(false),
            "CKA_DECRYPT",
        ),
        (
            ObjectClass::SECRET_KEY,
            "mkclone/seed/",
            Attribute::Derive(true),
            Attribute::Derive(false),
            "CKA_DERIVE",
        ),
        (
            ObjectClass::PRIVATE_KEY,
            CSS_LABEL,
            Attribute::Decrypt(true),
            Attribute::Decrypt(false),
            "CKA_DECRYPT",
        ),
        (
            ObjectClass::PRIVATE_KEY,
            CSR_LABEL,
            Attribute::Sign(true),
            Attribute::Sign(false),
            "CKA_SIGN",
        ),
        (
            ObjectClass::PUBLIC_KEY,
            CSR_LABEL,
            Attribute::Wrap(true),
            Attribute::Wrap(false),
            "CKA_WRAP",
        ),
    ];
    for (class, label, change, undo, attribute) in changes {
        let attacker = Attacker::login(&config);
        let h = object(&attacker, class, label);
        attacker.session.update_attributes(h, &[change]).unwrap();
        drop(attacker);
        match Pkcs11Backend::open(&config, Zeroizing::new(USER_PIN.into())) {
            Err(Pkcs11Error::ChangedOutside { label: t, change }) => {
                assert_eq!(t, token);
                assert_eq!(change.attribute, attribute, "{change}");
                assert!(change.object.starts_with(label), "{change}");
                assert_eq!(
                    (change.expected.as_str(), change.found.as_str()),
                    ("false", "true")
                );
            }
            other => panic!("{class} {label} changed ({attribute}): the open answered {other:?}"),
        }
        // Undone, the token opens again (handles do not outlive a logout: found again).
        let attacker = Attacker::login(&config);
        let h = object(&attacker, class, label);
        attacker.session.update_attributes(h, &[undo]).unwrap();
        drop(attacker);
        drop(open(&config));
    }

    // While mkclone has the token open: the next step that uses the key, and status, refuse.
    let mut node = open(&config);
    let attacker = Attacker::login(&config);
    let mk = object(&attacker, ObjectClass::SECRET_KEY, "mkclone/mk/");
    attacker
        .session
        .update_attributes(mk, &[Attribute::Wrap(true)])
        .unwrap();
    for result in [
        node.status().map(drop),
        node.load_random_master_key(CloneableKind::Sym)
            .map(drop)
            .and(node.status().map(drop)),
    ] {
        match result {
            Err(e @ BackendError::ChangedOutsideMkclone { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("mkclone/mk/") && text.contains("CKA_WRAP"),
                    "{text}"
                );
                assert!(text.contains("treat that key as exposed"), "{text}");
            }
            other => panic!("expected the change to be named, got {other:?}"),
        }
    }
}

#[test]
fn a_look_alike_key_in_place_of_the_seed_is_named_at_the_next_open() {
    let (config, mut node) = token_node("priv-seed", "SEED");
    node.set_m_of_n(MofN::new(2, 3).unwrap()).unwrap();
    drop(node);
    let attacker = Attacker::login(&config);
    let seed = object(&attacker, ObjectClass::SECRET_KEY, "mkclone/seed/");
    let label = attacker.label(seed);
    attacker.session.destroy_object(seed).unwrap();
    // The same template as mkclone's, but for one flag.
    attacker
        .session
        .generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::WrapWithTrusted(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Derive(false),
                Attribute::Copyable(false),
                Attribute::Modifiable(false),
                Attribute::ValueLen(32.into()),
                Attribute::Label(label.clone().into_bytes()),
            ],
        )
        .unwrap();
    drop(attacker);
    let err = open_error(&config);
    assert!(
        err.contains(&label)
            && err.contains("CKA_VERIFY is true")
            && err.contains("changed outside mkclone"),
        "{err}"
    );
}

#[test]
fn a_changed_retained_key_is_left_behind_by_deleting_its_companion_and_made_again() {
    // The README's way forward for a retained key that changed: delete its companion
    // record; the token opens, the key is no longer mkclone's, and generating it again
    // removes its halves.
    let token = "priv-again";
    mkclone_pkcs11::test_seams::leave_objects_modifiable(token);
    let (config, mut node) = token_node(token, "AGAIN");
    let before = generate(&mut node, CSR_LABEL, KeyRole::Csr);
    drop(node);
    let attacker = Attacker::login(&config);
    let csr = object(&attacker, ObjectClass::PRIVATE_KEY, CSR_LABEL);
    attacker
        .session
        .update_attributes(csr, &[Attribute::Decrypt(true)])
        .unwrap();
    drop(attacker);
    assert!(open_error(&config).contains("CKA_DECRYPT"));
    let attacker = Attacker::login(&config);
    let companion = object(
        &attacker,
        ObjectClass::DATA,
        &format!("mkclone/key/{CSR_LABEL}"),
    );
    attacker.session.destroy_object(companion).unwrap();
    drop(attacker);
    let mut node = open(&config);
    assert!(node.list_retained_keys().unwrap().is_empty());
    let again = generate(&mut node, CSR_LABEL, KeyRole::Csr);
    assert_ne!(again, before, "a new key");
    drop(node);
    let attacker = Attacker::login(&config);
    let csr = object(&attacker, ObjectClass::PRIVATE_KEY, CSR_LABEL);
    assert_eq!(
        flag(&attacker, csr, AttributeType::Decrypt),
        Some(false),
        "the changed key is gone"
    );
}
