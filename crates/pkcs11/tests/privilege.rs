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
    let kind = CloneableKind::Sym;
    clone_into(&mut source, &css, &mut target, &csr, kind, &[1, 2], 2);
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

    /// Attribute `t` of `h`, where the session may read it.
    fn attribute(&self, h: ObjectHandle, t: AttributeType) -> Option<Attribute> {
        self.session.get_attributes(h, &[t]).ok()?.pop()
    }

    fn label(&self, h: ObjectHandle) -> String {
        match self.attribute(h, AttributeType::Label) {
            Some(Attribute::Label(l)) => String::from_utf8_lossy(&l).into_owned(),
            _ => String::new(),
        }
    }

    /// The `CKA_VALUE` of data object `h`.
    fn value(&self, h: ObjectHandle) -> Vec<u8> {
        match self.session.get_attributes(h, &[AttributeType::Value]) {
            Ok(mut a) => match a.pop() {
                Some(Attribute::Value(v)) => v,
                other => panic!("no value: {other:?}"),
            },
            Err(e) => panic!("no value: {e}"),
        }
    }

    fn id(&self, h: ObjectHandle) -> Vec<u8> {
        match self.attribute(h, AttributeType::Id) {
            Some(Attribute::Id(id)) => id,
            _ => Vec::new(),
        }
    }

    /// Set `attribute` on `h`, which must succeed (on a token that lets it).
    fn change(&self, h: ObjectHandle, attribute: Attribute) {
        self.session.update_attributes(h, &[attribute]).unwrap();
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
        let public = [
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
        ];
        self.session
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &own(&public, &[Attribute::Wrap, Attribute::Encrypt]),
                &own(&[], &[Attribute::Decrypt, Attribute::Unwrap]),
            )
            .unwrap()
    }

    /// The attacker's own AES key (a session object) that wraps and unwraps.
    fn own_aes(&self) -> ObjectHandle {
        let usages = [
            Attribute::Wrap,
            Attribute::Unwrap,
            Attribute::Encrypt,
            Attribute::Decrypt,
        ];
        let template = own(&[Attribute::ValueLen(32.into())], &usages);
        self.session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .unwrap()
    }

    /// A triple-DES key of the attacker's own, extractable: what a wrap must succeed on
    /// (so that a refusal below is about mkclone's key, not the mechanism).
    fn own_des3(&self) -> ObjectHandle {
        let template = own(&[], &[Attribute::Extractable]);
        self.session
            .generate_key(&Mechanism::Des3KeyGen, &template)
            .unwrap()
    }

    /// How many master keys were wrapped out, with every public key this session sees
    /// (mkclone's export key, were it visible) and with keys of one's own.
    fn master_keys_wrapped_out(&self) -> usize {
        let publics = self
            .session
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
            .unwrap();
        let mut wrapped = 0;
        for (key, _) in self.master_keys() {
            for public in &publics {
                wrapped += usize::from(self.session.wrap_key(&oaep(), *public, key).is_ok());
            }
            for (_, result) in self.wrap_out(key) {
                wrapped += usize::from(result.is_ok());
            }
        }
        wrapped
    }

    /// The user can neither make a key trusted nor mark one of theirs trusted.
    fn cannot_mark_a_key_trusted(&self) {
        let template = own(
            &[Attribute::ValueLen(32.into())],
            &[Attribute::Wrap, Attribute::Trusted],
        );
        let trusted = self.session.generate_key(&Mechanism::AesKeyGen, &template);
        assert!(trusted.is_err(), "a user made a trusted key: {trusted:?}");
        let own = self.own_aes();
        let marked = self
            .session
            .update_attributes(own, &[Attribute::Trusted(true)]);
        assert!(marked.is_err(), "a user marked a key trusted");
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

/// A boolean attribute, by its constructor (`Attribute::Wrap`).
type Flag = fn(bool) -> Attribute;

/// A template of the attacker's own session object (`CKA_TOKEN` false): `attributes`, then
/// each flag of `flags` true.
fn own(attributes: &[Attribute], flags: &[Flag]) -> Vec<Attribute> {
    [&[Attribute::Token(false)], attributes, &all_true(flags)].concat()
}

/// Each of `flags`, true.
fn all_true(flags: &[Flag]) -> Vec<Attribute> {
    flags.iter().map(|flag| flag(true)).collect()
}

/// A data object's template as mkclone makes them (`CKA_APPLICATION` "mkclone"), private
/// or not, with `more` before its label and value.
fn mkclone_data(private: bool, more: &[Attribute], label: &[u8], value: Vec<u8>) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(private),
        Attribute::Application(b"mkclone".to_vec()),
    ];
    template.extend_from_slice(more);
    template.extend([Attribute::Label(label.to_vec()), Attribute::Value(value)]);
    template
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
        let mut changes = all_true(&[
            Attribute::Decrypt,
            Attribute::Encrypt,
            Attribute::Sign,
            Attribute::Verify,
            Attribute::Wrap,
            Attribute::Unwrap,
            Attribute::Derive,
        ]);
        changes.push(Attribute::Label(b"renamed".to_vec()));
        for (key, label, class) in attacker.mkclone_keys() {
            for change in changes.clone() {
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
            ],
            &all_true(&[
                Attribute::Decrypt,
                Attribute::Encrypt,
                Attribute::Wrap,
                Attribute::Unwrap,
            ]),
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

/// A session of the test's own on the token, logged in as its security officer.
fn security_officer(config: &Pkcs11NodeConfig) -> Session {
    let session = user_session(config);
    session.logout().unwrap();
    session
        .login(UserType::So, Some(&AuthPin::new(SO_PIN.into())))
        .expect("the security officer logs in");
    session
}

/// The security officer makes a trusted RSA key pair labelled `label` on the token: token
/// objects, public (the SO can make no private ones), the public half wrapping, the
/// private half decrypting.
fn trusted_pair_made_by_the_so(config: &Pkcs11NodeConfig, label: &str) {
    let so = security_officer(config);
    let named = |mut t: Vec<Attribute>| {
        t.extend([
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
        ]);
        t
    };
    so.generate_key_pair(
        &Mechanism::RsaPkcsKeyPairGen,
        &named(vec![
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Trusted(true),
            Attribute::Wrap(true),
        ]),
        &named(vec![Attribute::Decrypt(true)]),
    )
    .unwrap();
    so.logout().unwrap();
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
        let value = attacker.value(found[0]);
        attacker.session.destroy_object(found[0]).unwrap();
        attacker
            .session
            .create_object(&mkclone_data(false, &[], b"mkclone/eid", value))
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
    // A prompt a signal cancelled (Ctrl-C): no PIN, nothing sent, and not a credential
    // problem but the interruption the ceremony stops at; the PIN is asked again after.
    node.set_so_pin_prompt(|| Err(mkclone_pkcs11::PinPromptError::Interrupted { signal: 2 }));
    match node.obtain_share(&request) {
        Err(BackendError::Interrupted { signal: 2, .. }) => {}
        other => panic!("expected the interruption, got {other:?}"),
    }
    assert_eq!(node.share_status().unwrap(), before);
    assert!(node.holds_user_pin(), "the user is still logged in");
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&asked);
    node.set_so_pin_prompt(move || {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // The person is asked outside the export's device call: a stop of the process
        // (Ctrl-Z) made meanwhile does not wait for the answer.
        let (stopped, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            mkclone_backend::device_calls::stop_when_quiet(|| ());
            let _ = stopped.send(());
        });
        done.recv_timeout(std::time::Duration::from_secs(30))
            .expect("a stop waited for the person at the prompt");
        Ok(Zeroizing::new(SO_PIN.to_string()))
    });
    // Every operation is a device call (openCryptoki's CCA and EP11 tokens make the zcrypt
    // ioctl inside theirs): one that comes while a stop is under way waits for its end.
    let (stopping, began) = std::sync::mpsc::channel();
    let stop = std::thread::spawn(move || {
        mkclone_backend::device_calls::stop_when_quiet(|| {
            stopping.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
        })
    });
    began.recv().unwrap();
    let held = std::time::Instant::now();
    node.share_status().unwrap();
    assert!(held.elapsed() >= std::time::Duration::from_millis(250));
    stop.join().unwrap();
    assert!(
        node.holds_user_pin(),
        "kept for the login after the SO's step"
    );
    node.obtain_share(&request).unwrap();
    assert!(
        !node.holds_user_pin(),
        "not kept once the SO's step is done"
    );
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
        so_pin: None,
        ..node_config(std::path::Path::new(&module), &token)
    };
    let attacker = Attacker::login(&config);
    let exports = attacker
        .session
        .find_objects(&[Attribute::Label(b"mkclone/export".to_vec())])
        .unwrap();
    let wrapped = attacker.master_keys_wrapped_out();
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
    let out = this_test_in_a_child("the_export_key_is_out_of_reach_of_every_other_process")
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
    trusted_pair_made_by_the_so(&config, "mkclone/export");
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
    assert_eq!(limits.len(), 5, "{limits:#?}");
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
    Attacker::login(&config).cannot_mark_a_key_trusted();
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

    let (secret, private, public) = (
        ObjectClass::SECRET_KEY,
        ObjectClass::PRIVATE_KEY,
        ObjectClass::PUBLIC_KEY,
    );
    // (class, label, the flag set true (then back), the attribute's name)
    let changes: [(ObjectClass, &str, Flag, &str); 5] = [
        (secret, "mkclone/mk/", Attribute::Decrypt, "CKA_DECRYPT"),
        (secret, "mkclone/seed/", Attribute::Derive, "CKA_DERIVE"),
        (private, CSS_LABEL, Attribute::Decrypt, "CKA_DECRYPT"),
        (private, CSR_LABEL, Attribute::Sign, "CKA_SIGN"),
        (public, CSR_LABEL, Attribute::Wrap, "CKA_WRAP"),
    ];
    for (class, label, flag, attribute) in changes {
        let (change, undo) = (flag(true), flag(false));
        let attacker = Attacker::login(&config);
        let h = object(&attacker, class, label);
        attacker.change(h, change);
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
        attacker.change(h, undo);
        drop(attacker);
        drop(open(&config));
    }

    // While mkclone has the token open: the next step that uses the key, and status, refuse.
    let mut node = open(&config);
    let attacker = Attacker::login(&config);
    let mk = object(&attacker, ObjectClass::SECRET_KEY, "mkclone/mk/");
    attacker.change(mk, Attribute::Wrap(true));
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
    // The same template as mkclone's, but for one flag: a seed that computes MACs in the
    // token, for anyone with the PIN.
    attacker
        .session
        .generate_key(
            &Mechanism::GenericSecretKeyGen,
            &look_alike_secret(
                KeyType::GENERIC_SECRET,
                true,
                &[AttributeType::Sign],
                vec![
                    Attribute::ValueLen(32.into()),
                    Attribute::Label(label.clone().into_bytes()),
                ],
            ),
        )
        .unwrap();
    drop(attacker);
    let err = open_error(&config);
    assert!(
        err.contains(&label)
            && err.contains("CKA_SIGN is true")
            && err.contains("changed outside mkclone"),
        "{err}"
    );
}

#[test]
fn a_changed_retained_key_is_left_behind_by_deleting_its_companion_and_made_again() {
    // The README's way forward for a retained key that changed: delete its companion
    // record; the token opens, the key is no longer mkclone's and its halves are removed
    // (recovery), and it is generated again.
    let token = "priv-again";
    mkclone_pkcs11::test_seams::leave_objects_modifiable(token);
    let (config, mut node) = token_node(token, "AGAIN");
    let before = generate(&mut node, CSR_LABEL, KeyRole::Csr);
    drop(node);
    let attacker = Attacker::login(&config);
    let csr = object(&attacker, ObjectClass::PRIVATE_KEY, CSR_LABEL);
    attacker.change(csr, Attribute::Decrypt(true));
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
    let attacker = Attacker::login(&config);
    let left = attacker
        .session
        .find_objects(&[Attribute::Label(CSR_LABEL.as_bytes().to_vec())])
        .unwrap();
    assert!(
        left.is_empty(),
        "{} halves of the changed key left",
        left.len()
    );
    drop(attacker);
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

// ---------------------------------------------------------------------------------------
// What a user-PIN holder can still do: each said where mkclone says what it cannot protect
// ---------------------------------------------------------------------------------------

/// The share key's template, as the CSR key's `CKA_UNWRAP_TEMPLATE` demands it.
fn share_key_template() -> Vec<Attribute> {
    // A session object (the only difference from a token key mkclone makes).
    look_alike_secret(KeyType::DES3, false, &[AttributeType::Decrypt], vec![])
        .into_iter()
        .map(|a| match a {
            Attribute::Token(_) => Attribute::Token(false),
            other => other,
        })
        .collect()
}

/// `share` opened as mkclone's INSTALL opens it, in the attacker's own session: the
/// share key unwrapped with the CSR key into the one template it allows, which decrypts.
fn open_as_install(
    attacker: &Attacker,
    share: &SealedShare,
    css: &mkclone_formats::pka::RsaPublicKey,
) -> mkclone_formats::clone_info::CloneInfo {
    let csr = csr_private_key(attacker);
    let parts = SealedShareParts::decode(share).unwrap();
    mkclone_formats::seal::open_in_device(
        &parts,
        |wrapped, area| {
            let key = attacker
                .session
                .unwrap_key(&oaep(), csr, wrapped, &share_key_template())?;
            let clear = attacker
                .session
                .decrypt(&Mechanism::Des3Cbc([0; 8]), key, area)
                .map(Zeroizing::new);
            let _ = attacker.session.destroy_object(key);
            clear
        },
        css,
        None,
    )
    .unwrap_or_else(|e| panic!("the share did not open: {e:?}"))
}

/// The source's CSS public key and its ASYM master key's pattern.
fn css_key_and_asym_pattern(
    after: &After,
) -> (
    mkclone_formats::pka::RsaPublicKey,
    mkclone_backend::VerificationPattern,
) {
    let mut source = open(&after.source);
    let token = source
        .retained_public_key(&label(CSS_LABEL))
        .unwrap()
        .unwrap();
    let view = mkclone_formats::pka::PublicKeyTokenView::decode(&token).unwrap();
    (
        view.key,
        pattern(&mut source, CloneableKind::Asym, "current").unwrap(),
    )
}

/// The limits a node reports (what `status` prints under "what this node cannot protect").
fn limits_of(config: &Pkcs11NodeConfig) -> Vec<String> {
    open(config).limits().to_vec()
}

#[test]
fn a_target_user_pin_holder_opens_the_held_shares_and_the_limits_say_so() {
    let after = ceremony("priv-held-open");
    let (css, source_pattern) = css_key_and_asym_pattern(&after);
    let attacker = Attacker::login(&after.target);
    // The share the target holds between installs, read from the token itself: no share
    // file is needed for it.
    let record: serde_json::Value = serde_json::from_slice(&attacker.value(object(
        &attacker,
        ObjectClass::DATA,
        "mkclone/share/",
    )))
    .unwrap();
    let held: SealedShare = serde_json::from_value(record["sealed"].clone()).unwrap();
    assert_eq!(held, after.held);
    let opened = open_as_install(&attacker, &held, &css);
    // With it, one share file more than the token holds rebuilds the master key (m = 2).
    let other = open_as_install(&attacker, &after.file, &css);
    let key = mkclone_formats::shamir::combine(&[
        (opened.index, opened.share.clone()),
        (other.index, other.share.clone()),
    ])
    .unwrap();
    assert_eq!(
        mkclone_formats::mkvp::sha1_method(key.as_bytes()),
        source_pattern,
        "the attacker rebuilt the source's ASYM master key"
    );
    drop(attacker);
    // mkclone says so, and does not say the opposite.
    let limits = limits_of(&after.target);
    assert!(
        limits
            .iter()
            .any(|l| l.contains("the shares a target holds between installs")),
        "{limits:#?}"
    );
    assert!(
        !limits
            .iter()
            .any(|l| l.contains("no key on the token decrypts")),
        "{limits:#?}"
    );
}

#[test]
fn a_source_user_pin_holder_cannot_compute_the_share_coefficients() {
    // Were the coefficients computable, one share opened on a target (by its own PIN
    // holder) would give the master key: m-of-n would be 1-of-n.
    let after = ceremony("priv-seed-share");
    let (css, source_pattern) = css_key_and_asym_pattern(&after);
    let attacker = Attacker::login(&after.source);
    let seed = object(&attacker, ObjectClass::SECRET_KEY, "mkclone/seed/");
    // The seed is not wrapped out with keys of one's own...
    for (how, result) in attacker.wrap_out(seed) {
        assert!(result.is_err(), "the seed was wrapped out with the {how}");
    }
    // ...nor used to compute a MAC: mkclone's coefficient row j is HMAC-SHA256 under the
    // seed over (domain, kind, m, j, the key's pattern).
    let mut input = b"mkclone-pkcs11-coefficient".to_vec();
    input.extend([2, 2, 1]); // ASYM, m = 2, row 1
    input.extend_from_slice(source_pattern.bytes());
    if let Ok(mac) = attacker.session.sign(&Mechanism::Sha256Hmac, seed, &input) {
        // What it gives: the key, from the row and one share opened on the target.
        let row: [u8; 24] = mac[..24].try_into().unwrap();
        let share = open_as_install(&Attacker::login(&after.target), &after.file, &css);
        let offset = mkclone_formats::shamir::Polynomial::new(&[0; 24], vec![row])
            .unwrap()
            .share(share.index);
        let mut key = [0u8; 24];
        for ((k, s), o) in key
            .iter_mut()
            .zip(share.share.as_bytes())
            .zip(offset.as_bytes())
        {
            *k = s ^ o;
        }
        assert_ne!(
            mkclone_formats::mkvp::sha1_method(&key),
            source_pattern,
            "the source's user-PIN holder computed the coefficients with the seed and, with one share \
             opened on a target, rebuilt the master key"
        );
        panic!("the seed computed a MAC with CKM_SHA256_HMAC");
    }
    for mechanism in [Mechanism::Sha1Hmac, Mechanism::Sha512Hmac] {
        let mac = attacker.session.sign(&mechanism, seed, &input);
        assert!(mac.is_err(), "the seed computed a MAC with {mechanism:?}");
    }
}

#[test]
fn a_token_holding_a_key_the_so_trusted_is_refused_at_open() {
    // The security officer once made a trusted wrapping key on the token (for a backup, for
    // another tool...).
    let after = ceremony("priv-trusted");
    let config = &after.source;
    trusted_pair_made_by_the_so(config, "backup-wrap");
    // With it, the user PIN alone takes every master key out.
    let attacker = Attacker::login(config);
    let public = object(&attacker, ObjectClass::PUBLIC_KEY, "backup-wrap");
    let private = object(&attacker, ObjectClass::PRIVATE_KEY, "backup-wrap");
    for (key, label) in attacker.master_keys() {
        let wrapped = attacker.session.wrap_key(&oaep(), public, key).unwrap();
        let clear = Zeroizing::new(
            attacker
                .session
                .decrypt(&oaep(), private, &wrapped)
                .unwrap(),
        );
        assert_eq!(clear.len(), 24, "{label}: the master key in clear");
    }
    drop(attacker);
    // mkclone refuses the token, naming the key and what it allows.
    let err = open_error(config);
    assert!(
        err.contains("backup-wrap")
            && err.contains("CKA_TRUSTED")
            && err.contains("treat them as exposed"),
        "{err}"
    );
    // Once the security officer deletes it, the token opens again.
    {
        let so = security_officer(config);
        for h in so
            .find_objects(&[Attribute::Label(b"backup-wrap".to_vec())])
            .unwrap()
        {
            so.destroy_object(h).unwrap();
        }
        so.logout().unwrap();
    }
    drop(open(config));
}

/// The highest register map on the token: (its generation, its JSON).
fn register_map(attacker: &Attacker) -> (u64, serde_json::Value) {
    let mut maps: Vec<(u64, ObjectHandle)> = attacker
        .session
        .find_objects(&[Attribute::Token(true), Attribute::Class(ObjectClass::DATA)])
        .unwrap()
        .into_iter()
        .filter_map(|h| {
            let label = attacker.label(h);
            let generation = u64::from_str_radix(label.strip_prefix("mkclone/map/")?, 16).ok()?;
            Some((generation, h))
        })
        .collect();
    maps.sort_by_key(|(g, _)| *g);
    let (generation, h) = maps.pop().expect("a register map");
    (
        generation,
        serde_json::from_slice(&attacker.value(h)).unwrap(),
    )
}

/// A private, unmodifiable mkclone record, as mkclone makes them.
fn create_record(attacker: &Attacker, label: &str, value: &serde_json::Value) {
    let unchangeable = [Attribute::Copyable(false), Attribute::Modifiable(false)];
    let value = serde_json::to_vec(value).unwrap();
    attacker
        .session
        .create_object(&mkclone_data(true, &unchangeable, label.as_bytes(), value))
        .unwrap();
}

#[test]
fn a_master_key_of_a_user_pin_holders_own_made_as_mkclone_makes_it_is_said_to_be_undetectable() {
    let (config, mut node) = token_node("priv-swap", "SWAP");
    node.set_m_of_n(MofN::new(2, 3).unwrap()).unwrap();
    node.load_random_master_key(CloneableKind::Sym).unwrap();
    let genuine = pattern(&mut node, CloneableKind::Sym, "current").unwrap();
    drop(node);

    // The attacker's key, whose value they know, made exactly as mkclone makes a register
    // (C_CreateObject, as INSTALL does), with its pattern record and the next map.
    let known: [u8; 24] = *b"attacker-knows-this-key!";
    let id = "00a77ac4e5000001";
    let attacker = Attacker::login(&config);
    let key = attacker
        .session
        .create_object(&look_alike_secret(
            KeyType::DES3,
            true,
            &[],
            vec![
                Attribute::Label(format!("mkclone/mk/{id}").into_bytes()),
                Attribute::Id(hex::decode(id).unwrap()),
                Attribute::Value(known.to_vec()),
            ],
        ))
        .unwrap();
    let check_value = match attacker
        .session
        .get_attributes(key, &[AttributeType::CheckValue])
        .unwrap()
        .pop()
    {
        Some(Attribute::CheckValue(v)) => v,
        other => panic!("{other:?}"),
    };
    let theirs = mkclone_formats::mkvp::sha1_method(&known);
    create_record(
        &attacker,
        &format!("mkclone/mkvp/{id}"),
        &serde_json::json!({
            "format": "mkclone-pkcs11-pattern",
            "version": 1,
            "kind": CloneableKind::Sym,
            "pattern": theirs,
            "check_value": hex::encode(check_value),
        }),
    );
    let (generation, mut map) = register_map(&attacker);
    map["generation"] = serde_json::json!(generation + 1);
    map["sym"]["current"] = serde_json::json!(id);
    create_record(
        &attacker,
        &format!("mkclone/map/{:016x}", generation + 1),
        &map,
    );
    drop(attacker);

    // mkclone cannot tell it from its own: the source's CURRENT is now the attacker's key,
    // which a clone would spread to every target. Only the pattern, read out beforehand
    // and pinned (`source_patterns`), shows it.
    let mut node = open(&config);
    let now = pattern(&mut node, CloneableKind::Sym, "current").unwrap();
    assert_eq!(now, theirs);
    assert_ne!(now, genuine);
    // So mkclone says it.
    let limits = node.limits().to_vec();
    assert!(
        limits
            .iter()
            .any(|l| l.contains("a key of their own") && l.contains("source_patterns")),
        "{limits:#?}"
    );
}

/// The SYM CURRENT register's key on `config`'s token swapped for a key the attacker
/// knows, made as mkclone makes it (the same label and id), and its pattern record made
/// again with that key's check value beside the genuine pattern. The same state as a key
/// found offline (about 2^24 triple-DES trials) whose 3-byte check value equals the
/// recorded one, without the search. Returns the pattern of the key the register now holds.
fn swap_sym_current_keeping_the_recorded_check_value(
    config: &Pkcs11NodeConfig,
) -> mkclone_backend::VerificationPattern {
    let attacker = Attacker::login(config);
    let (_, map) = register_map(&attacker);
    let id = map["sym"]["current"].as_str().unwrap().to_string();
    let key_label = format!("mkclone/mk/{id}");
    let genuine = object(&attacker, ObjectClass::SECRET_KEY, &key_label);
    attacker.session.destroy_object(genuine).unwrap();
    let known: [u8; 24] = *b"attacker-knows-this-key!";
    let theirs = attacker
        .session
        .create_object(&look_alike_secret(
            KeyType::DES3,
            true,
            &[],
            vec![
                Attribute::Label(key_label.into_bytes()),
                Attribute::Id(hex::decode(&id).unwrap()),
                Attribute::Value(known.to_vec()),
            ],
        ))
        .unwrap();
    let check_value = match attacker.attribute(theirs, AttributeType::CheckValue) {
        Some(Attribute::CheckValue(v)) if v.len() == 3 => v,
        other => panic!("SoftHSM gives a 3-byte check value: {other:?}"),
    };
    let record_label = format!("mkclone/mkvp/{id}");
    let record = object(&attacker, ObjectClass::DATA, &record_label);
    let mut value: serde_json::Value = serde_json::from_slice(&attacker.value(record)).unwrap();
    assert_ne!(value["check_value"], hex::encode(&check_value));
    value["check_value"] = serde_json::json!(hex::encode(&check_value));
    attacker.session.destroy_object(record).unwrap();
    create_record(&attacker, &record_label, &value);
    mkclone_formats::mkvp::sha1_method(&known)
}

#[test]
fn a_register_key_swapped_for_one_with_the_recorded_check_value_is_reported_replaced() {
    // The check value is 3 bytes and the record is the attacker's to make: only the
    // pattern computed in the token tells the key. On the source, status would report the
    // genuine pattern for the attacker's key; on a target after the clone it would equal
    // the source's, so the comparison the README recommends after a clone would pass.
    let after = ceremony("priv-cv");
    let kind = CloneableKind::Sym;
    for (role, config) in [("source", &after.source), ("target", &after.target)] {
        let genuine = pattern(&mut open(config), kind, "current").unwrap();
        let theirs = swap_sym_current_keeping_the_recorded_check_value(config);
        assert_ne!(theirs, genuine);
        let mut node = open(config);
        match node.status() {
            Err(BackendError::MalformedReply { detail, .. }) => assert!(
                detail.contains("mkclone/mk/")
                    && detail.contains(&format!("has pattern {theirs} (computed in the token)"))
                    && detail.contains(&format!("records {genuine}"))
                    && detail.contains("replaced outside mkclone"),
                "{role}: {detail}"
            ),
            other => panic!("{role}: the swapped key went unnoticed: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The security officer's window, raced and cut
// ---------------------------------------------------------------------------------------

const WINDOW_TOKEN: &str = "MKCLONE_TEST_PRIVILEGE_WINDOW_TOKEN";
const WINDOW_MODULE: &str = "MKCLONE_TEST_PRIVILEGE_WINDOW_MODULE";
const WINDOW_CSR: &str = "MKCLONE_TEST_PRIVILEGE_WINDOW_CSR";
const IN_THE_WINDOW: &str = "MKCLONE IS IN THE SO WINDOW";

/// The child's part of `the_so_window_gives_another_process_nothing_and_a_kill_in_it_leaves_nothing`:
/// mkclone's share export stopped right inside the security officer's step — the SO
/// logged in, the trusted export key made — where the process then waits to be killed.
fn stop_in_the_so_window(token: String, module: String, csr: String) {
    let config = node_config(std::path::Path::new(&module), &token);
    let csr = mkclone_backend::Certificate::new(hex::decode(csr).unwrap()).unwrap();
    let request = obtain_request(CloneableKind::Sym, 1, &csr);
    for calls in 0..200 {
        let mut node = open(&config);
        node.stop_after_calls(calls);
        assert!(node.obtain_share(&request).is_err());
        // A session of this process shows the login state of the process (PKCS#11 keeps it
        // per application) and the export key (a public session object).
        let probe = user_session_or_so(&config);
        let so = probe.get_session_info().unwrap().session_state()
            == cryptoki::session::SessionState::RwSecurityOfficer;
        let export = probe
            .find_objects(&[Attribute::Label(b"mkclone/export".to_vec())])
            .unwrap()
            .len();
        if so && export == 2 {
            println!("{IN_THE_WINDOW}");
            use std::io::Write;
            std::io::stdout().flush().unwrap();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            return;
        }
        drop(probe);
        drop(node);
    }
    panic!("the share export never reached the security officer's step");
}

/// A session of this process on the token, logged in as whoever the process is (no login
/// is attempted: the state is the process's).
fn user_session_or_so(config: &Pkcs11NodeConfig) -> Session {
    let pkcs11 = mkclone_pkcs11::shared_module(&config.module).unwrap();
    let slot = pkcs11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim_end() == config.token)
        .unwrap();
    pkcs11.open_rw_session(slot).unwrap()
}

/// Kills the child when the test ends, however it ends.
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_so_window_gives_another_process_nothing_and_a_kill_in_it_leaves_nothing() {
    if let (Ok(token), Ok(module), Ok(csr)) = (
        std::env::var(WINDOW_TOKEN),
        std::env::var(WINDOW_MODULE),
        std::env::var(WINDOW_CSR),
    ) {
        stop_in_the_so_window(token, module, csr);
        return;
    }
    let (config, csr) = source_ready("priv-window");
    let mut child = Killed(
        this_test_in_a_child(
            "the_so_window_gives_another_process_nothing_and_a_kill_in_it_leaves_nothing",
        )
        .env(WINDOW_TOKEN, &config.token)
        .env(WINDOW_MODULE, &config.module)
        .env(WINDOW_CSR, hex::encode(csr.as_bytes()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap(),
    );
    {
        use std::io::BufRead;
        let stdout = child.0.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains(IN_THE_WINDOW) => break,
                Some(Ok(_)) => {}
                other => panic!("the child ended before the SO's step: {other:?}"),
            }
        }
    }

    // While mkclone's process has the SO logged in and the trusted key made: a user who
    // knows the PIN, in a process of their own.
    let attacker = Attacker::login(&config);
    assert_eq!(
        attacker.session.get_session_info().unwrap().session_state(),
        cryptoki::session::SessionState::RwUser,
        "the SO's login is mkclone's process's, not the token's"
    );
    attacker.cannot_mark_a_key_trusted();
    assert!(
        attacker
            .session
            .find_objects(&[Attribute::Label(b"mkclone/export".to_vec())])
            .unwrap()
            .is_empty(),
        "another process sees the export key"
    );
    assert_eq!(
        attacker.master_keys_wrapped_out(),
        0,
        "a master key was wrapped out during the SO's step"
    );
    drop(attacker);

    // The worst moment to crash: mkclone is killed inside the window.
    drop(child);
    let attacker = Attacker::login(&config);
    assert!(
        attacker
            .session
            .find_objects(&[Attribute::Trusted(true)])
            .unwrap()
            .is_empty(),
        "a trusted key outlived the killed process"
    );
    drop(attacker);
    // Nobody is left logged in as the SO: the SO logs in.
    security_officer(&config).logout().unwrap();
    // And the export runs again.
    let mut node = open(&config);
    obtain(&mut node, CloneableKind::Sym, 1, &csr);
}

#[test]
fn a_retained_key_whose_private_half_cannot_be_destroyed_is_not_reported_deleted() {
    // A test-only token (mkclone's objects modifiable, so copies may differ): a copy of the
    // CSR private key (copies keep its CKA_ID, so DELETE destroys them with it) made
    // CKA_DESTROYABLE false. DELETE fails, naming the call, and the key stays mkclone's
    // (listed, its companion kept) so that DELETE can be run again; the copy still
    // unwraps, which a "done" would have hidden.
    let token = "priv-undestroyable";
    mkclone_pkcs11::test_seams::leave_objects_modifiable(token);
    let (config, mut node) = token_node(token, "KEEP");
    generate(&mut node, CSR_LABEL, KeyRole::Csr);
    drop(node);
    let attacker = Attacker::login(&config);
    let csr = csr_private_key(&attacker);
    let copy = attacker
        .session
        .copy_object(csr, &[Attribute::Destroyable(false)])
        .unwrap();
    let mut node = open(&config);
    match node.delete_retained_key(&label(CSR_LABEL)) {
        Err(e) => assert!(e.to_string().contains("DestroyObject"), "{e}"),
        Ok(answer) => panic!(
            "DELETE answered {} with a half left on the token",
            if answer.was_already_done() {
                "already done"
            } else {
                "done"
            }
        ),
    }
    let listed = node.list_retained_keys().unwrap();
    assert_eq!(
        listed.iter().map(|k| k.label.as_str()).collect::<Vec<_>>(),
        [CSR_LABEL],
        "the companion is kept while a half is left"
    );
    assert_eq!(
        flag(&attacker, copy, AttributeType::Unwrap),
        Some(true),
        "the copy is still there"
    );
    // And again: the same refusal, never "already done".
    assert!(node.delete_retained_key(&label(CSR_LABEL)).is_err());
    drop(node);
    // The way forward (its companion deleted): the key is no longer mkclone's, the halves
    // that can go go at the next open, and the one that cannot is left without locking
    // the token out of every later open.
    let companion = object(
        &attacker,
        ObjectClass::DATA,
        &format!("mkclone/key/{CSR_LABEL}"),
    );
    attacker.session.destroy_object(companion).unwrap();
    let mut node = open(&config);
    assert!(node.list_retained_keys().unwrap().is_empty());
    assert_eq!(
        flag(&attacker, copy, AttributeType::Unwrap),
        Some(true),
        "the undestroyable copy is left"
    );
    drop(node);
    open(&config);
}

#[test]
fn a_copy_of_the_csr_key_is_identical_and_goes_with_it() {
    // The one key a user can copy (it is made by C_CopyObject, and a copy cannot clear
    // CKA_COPYABLE): the copy can change nothing, and deleting the key deletes it.
    let (config, mut node) = token_node("priv-copy", "COPY");
    generate(&mut node, CSR_LABEL, KeyRole::Csr);
    drop(node);
    let attacker = Attacker::login(&config);
    let csr = csr_private_key(&attacker);
    for change in [
        Attribute::Label(b"mine".to_vec()),
        Attribute::Id(b"mine".to_vec()),
        Attribute::Token(false),
        Attribute::Sign(true),
        Attribute::Decrypt(true),
        Attribute::Modifiable(true),
    ] {
        let copy = attacker
            .session
            .copy_object(csr, std::slice::from_ref(&change));
        assert!(copy.is_err(), "the CSR key was copied with {change:?}");
    }
    attacker.session.copy_object(csr, &[]).unwrap();
    drop(attacker);
    let mut node = open(&config);
    node.delete_retained_key(&label(CSR_LABEL)).unwrap();
    drop(node);
    let attacker = Attacker::login(&config);
    let left = attacker
        .session
        .find_objects(&[Attribute::Label(CSR_LABEL.as_bytes().to_vec())])
        .unwrap();
    assert!(left.is_empty(), "{} CSR key objects left", left.len());
}

#[test]
fn an_export_key_the_token_did_not_make_as_asked_is_destroyed_unused() {
    // A token that ignores CKA_TOKEN false (test seam): the trusted export key would be a
    // token object, which every user-PIN holder could wrap the master keys out with.
    let token = "priv-export-token";
    let (config, csr) = source_ready(token);
    mkclone_pkcs11::test_seams::make_export_keys_token_objects(token);
    let mut node = open(&config);
    let before = node.share_status().unwrap();
    match node.obtain_share(&obtain_request(CloneableKind::Sym, 1, &csr)) {
        Err(e @ BackendError::ChangedOutsideMkclone { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("mkclone/export") && text.contains("CKA_TOKEN is true"),
                "{text}"
            );
        }
        other => panic!("the export went on with a token-object export key: {other:?}"),
    }
    // While mkclone still runs, no trusted key is left for a user to wrap with.
    let attacker = Attacker::login(&config);
    assert!(
        attacker
            .session
            .find_objects(&[Attribute::Token(true), Attribute::Trusted(true)])
            .unwrap()
            .is_empty(),
        "a trusted token key is left"
    );
    drop(attacker);
    assert_eq!(node.share_status().unwrap(), before);
}

#[test]
fn no_master_key_or_seed_can_be_used_for_anything() {
    // Each use is tried on a key of the attacker's own of the same type that allows it
    // first, so that a refusal is about mkclone's key. (Wrapping and deriving with them:
    // CKA_WRAP, CKA_UNWRAP and CKA_DERIVE false, checked with every template; SoftHSM has
    // no triple-DES key wrap, cryptoki no triple-DES derivation, to try them with.)
    let after = ceremony("priv-use");
    let attacker = Attacker::login(&after.source);
    let s = &attacker.session;
    let data = [0u8; 16];
    let usable = |mechanism: Mechanism, template: &[Attribute]| {
        let mut t = vec![Attribute::Token(false)];
        t.extend_from_slice(template);
        s.generate_key(&mechanism, &t).unwrap()
    };
    let des3_control = usable(
        Mechanism::Des3KeyGen,
        &[Attribute::Encrypt(true), Attribute::Decrypt(true)],
    );
    let hmac_control = usable(
        Mechanism::GenericSecretKeyGen,
        &[
            Attribute::ValueLen(32.into()),
            Attribute::Sign(true),
            Attribute::Verify(true),
        ],
    );
    let mac = s.sign(&Mechanism::Sha256Hmac, hmac_control, &data).unwrap();
    let des3_uses = |key: ObjectHandle| -> Vec<(&str, cryptoki::error::Result<()>)> {
        vec![
            (
                "encrypt",
                s.encrypt(&Mechanism::Des3Ecb, key, &data).map(drop),
            ),
            (
                "decrypt",
                s.decrypt(&Mechanism::Des3Ecb, key, &data).map(drop),
            ),
        ]
    };
    let hmac_uses = |key: ObjectHandle| -> Vec<(&str, cryptoki::error::Result<()>)> {
        vec![
            ("sign", s.sign(&Mechanism::Sha256Hmac, key, &data).map(drop)),
            ("verify", s.verify(&Mechanism::Sha256Hmac, key, &data, &mac)),
        ]
    };
    for (what, result) in des3_uses(des3_control)
        .into_iter()
        .chain(hmac_uses(hmac_control))
    {
        assert!(result.is_ok(), "control key: {what}: {result:?}");
    }
    let seed = object(&attacker, ObjectClass::SECRET_KEY, "mkclone/seed/");
    let mut tries: Vec<(String, &str, cryptoki::error::Result<()>)> = Vec::new();
    for (key, label) in attacker.master_keys() {
        tries.extend(
            des3_uses(key)
                .into_iter()
                .map(|(w, r)| (label.clone(), w, r)),
        );
    }
    tries.extend(
        hmac_uses(seed)
            .into_iter()
            .map(|(w, r)| ("the seed".to_string(), w, r)),
    );
    for (label, what, result) in tries {
        assert!(result.is_err(), "{label}: {what} succeeded");
    }
}
