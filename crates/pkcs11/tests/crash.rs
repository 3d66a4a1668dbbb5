//! A crash between any two PKCS#11 calls of SET or INSTALL leaves the token either as it
//! was before the operation or as it is after it, never in between; opening the token again
//! removes what the interrupted operation left; and running the operation again completes.
//! DELETE RETAINED KEY, which destroys several objects with no commit point, leaves the key
//! listed until its last call, so its rerun completes it.
//!
//! The crash is the test seam `stop_after_calls(k)`: calls 1..=k reach the token, every
//! later one fails as if the process had died; the backend is then dropped (its session
//! closes) and the token opened again. SoftHSM rewrites its object files in place, so a
//! kill inside a call is not what these tests model (docs/ARCHITECTURE.md, "PKCS#11").

mod common;

use common::*;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use mkclone_backend::{
    Applied, Backend, BackendError, Certificate, CloneableKind, InstallProgress, KeyRole, MofN,
    SealedShare,
};
use mkclone_hw_sim::SimBackend;
use mkclone_pkcs11::{Pkcs11Backend, Pkcs11NodeConfig};

const KIND: CloneableKind = CloneableKind::Sym;

struct Rig {
    source: SimBackend,
    css: Certificate,
    config: Pkcs11NodeConfig,
    /// Shares 1 and 2 for the target (2-of-5: the first share is held, the second completes).
    shares: Vec<SealedShare>,
}

fn rig(token: &str) -> Rig {
    let m_of_n = MofN::new(2, 5).unwrap();
    let mut sa_node = sim_node(1, "SA NODE");
    let mut source = sim_node(2, "SOURCE");
    source.load_random_master_key(KIND).unwrap();
    let sa = phase1(&mut sa_node);
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let (config, mut target) = token_node(token, "TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    let shares = (1..=2)
        .map(|i| obtain(&mut source, KIND, i, &csr))
        .collect();
    Rig {
        source,
        css,
        config,
        shares,
    }
}

fn install_share(
    rig: &Rig,
    node: &mut Pkcs11Backend,
    i: usize,
) -> mkclone_backend::Result<Applied<InstallProgress>> {
    install(node, KIND, &rig.css, rig.shares[i].clone())
}

/// What the tests compare: the node's whole reported state and the shape of its objects.
#[derive(Debug, PartialEq, Eq, Clone)]
struct State {
    snapshot: String,
    objects: Vec<String>,
}

fn state(node: &mut Pkcs11Backend) -> State {
    State {
        snapshot: format!("{:?}", snapshot(node)),
        objects: object_shape(node),
    }
}

/// Crash `operation` after every possible number of calls. `prepare` brings a freshly
/// opened node to the state before the operation; `rerun` runs it again after the crash
/// and must complete it: from the state before, it does the operation; from the state
/// after, it finds it done (an INSTALL repeated marks the share received more than once,
/// STATMOFN's reception state 4, as a repeated INSTALL does on a coprocessor).
fn crash_at_every_call<R>(
    rig: &R,
    config: &Pkcs11NodeConfig,
    what: &str,
    prepare: impl Fn(&R, &mut Pkcs11Backend),
    operation: impl Fn(&R, &mut Pkcs11Backend) -> Result<(), BackendError>,
    rerun: impl Fn(&R, &mut Pkcs11Backend),
) {
    // A clean run: the states before and after, and how many calls it takes.
    let mut node = open(config);
    prepare(rig, &mut node);
    let before = state(&mut node);
    node.stop_after_calls(u64::MAX);
    operation(rig, &mut node).unwrap_or_else(|e| panic!("{what}: the clean run failed: {e}"));
    let calls = node.calls_since_armed();
    let after = state(&mut node);
    assert_ne!(before, after, "{what} changes the node");
    rerun(rig, &mut node);
    let after_rerun = state(&mut node);
    drop(node);

    let (mut as_before, mut as_after) = (0, 0);
    for k in 0..calls {
        let mut node = open(config);
        prepare(rig, &mut node);
        node.stop_after_calls(k);
        let result = operation(rig, &mut node);
        match result {
            Err(BackendError::OutcomeUnknown { .. }) => {}
            other => panic!("{what}: stopped after {k} of {calls} calls, it answered {other:?}"),
        }
        drop(node);

        // The crash: a new process opens the token and recovers.
        let mut node = open(config);
        let recovered = state(&mut node);
        let expected = if recovered == before {
            as_before += 1;
            &after
        } else if recovered == after {
            as_after += 1;
            &after_rerun
        } else {
            panic!(
                "{what}: after a crash following call {k} of {calls} the token is neither as before nor as after:\n\
                 recovered {recovered:#?}\nbefore {before:#?}\nafter {after:#?}"
            );
        };
        rerun(rig, &mut node);
        assert_eq!(
            &state(&mut node),
            expected,
            "{what}: the rerun after a crash at call {k} completes"
        );
    }
    // The commit point lies strictly inside the operation.
    assert!(
        as_before > 0 && as_after > 0,
        "{what}: {as_before} crashes left it as before, {as_after} as after"
    );
}

#[test]
fn install_survives_a_crash_at_every_call() {
    let rig = rig("crash-install");
    let reset = |_: &Rig, node: &mut Pkcs11Backend| {
        node.clear_new(KIND).unwrap();
    };
    // The first share: held, encrypted, in the token.
    crash_at_every_call(
        &rig,
        &rig.config,
        "install of the first share",
        reset,
        |rig, node| install_share(rig, node, 0).map(|_| ()),
        |rig, node| {
            let p = install_share(rig, node, 0).unwrap();
            assert_eq!(p.value(), InstallProgress::NeedMore { received: 1, m: 2 });
        },
    );
    // The m-th share: the held shares are combined into NEW and destroyed.
    crash_at_every_call(
        &rig,
        &rig.config,
        "install of the m-th share",
        |rig, node| {
            reset(rig, node);
            install_share(rig, node, 0).unwrap();
        },
        |rig, node| install_share(rig, node, 1).map(|_| ()),
        |rig, node| {
            let p = install_share(rig, node, 1).unwrap();
            assert_eq!(p.value(), InstallProgress::Complete);
        },
    );
}

#[test]
fn set_survives_a_crash_at_every_call() {
    let mut rig = rig("crash-set");
    let expected = pattern(&mut rig.source, KIND, "current").unwrap();
    let fill_new = |rig: &Rig, node: &mut Pkcs11Backend| {
        node.clear_new(KIND).unwrap();
        for i in 0..2 {
            install_share(rig, node, i).unwrap();
        }
    };
    // Two SETs first, so that CURRENT and OLD hold the key and each SET below starts from
    // the same state.
    {
        let mut node = open(&rig.config);
        for _ in 0..2 {
            fill_new(&rig, &mut node);
            node.set_master_key(KIND).unwrap();
        }
    }
    crash_at_every_call(
        &rig,
        &rig.config,
        "SET",
        fill_new,
        |_, node| node.set_master_key(KIND).map(|_| ()),
        |_, node| match node.set_master_key(KIND) {
            Ok(_) => {}
            // The crash came after the commit: NEW is empty and CURRENT holds the key,
            // which is how the ceremony recognizes a SET already done.
            Err(BackendError::NewNotFull { .. }) => {
                assert_eq!(pattern(node, KIND, "current").as_ref(), Some(&expected));
            }
            Err(e) => panic!("SET after the crash: {e}"),
        },
    );
}

#[test]
fn set_mofn_survives_a_crash_at_every_call() {
    let rig = rig("crash-mofn");
    let (two, three) = (MofN::new(3, 5).unwrap(), MofN::new(2, 5).unwrap());
    // SET-MOFN replaces the seed, the m-of-n object and both share tables at once.
    crash_at_every_call(
        &rig,
        &rig.config,
        "SET-MOFN",
        |_, node| {
            node.set_m_of_n(two).unwrap();
        },
        |_, node| node.set_m_of_n(three).map(|_| ()),
        |_, node| {
            node.set_m_of_n(three).unwrap();
        },
    );
}

/// Every object with the export key's label the token shows any session of this process
/// (session objects of open sessions included).
fn export_keys(config: &Pkcs11NodeConfig) -> usize {
    user_session(config)
        .find_objects(&[cryptoki::object::Attribute::Label(
            b"mkclone/export".to_vec(),
        )])
        .unwrap()
        .len()
}

#[test]
fn obtain_survives_a_crash_at_every_call_and_leaves_no_export_key() {
    // A SoftHSM source; the first OBTAIN of a session includes the security officer's step
    // (user out, SO in, the export key made, SO out, user in).
    let m_of_n = MofN::new(2, 5).unwrap();
    let mut sa_node = sim_node(1, "SA NODE");
    let (config, mut source) = token_node("crash-obtain", "SOURCE");
    source.load_random_master_key(KIND).unwrap();
    let sa = phase1(&mut sa_node);
    phase2(&mut sa_node, &sa, &mut source, m_of_n);
    drop(source);
    let mut target = sim_node(3, "TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    crash_at_every_call(
        &csr,
        &config,
        "obtain (with the SO's step)",
        |_, node| {
            // A crashed session's export key went with its session.
            assert_eq!(
                export_keys(&config),
                0,
                "an export key outlived its session"
            );
            // Fresh share tables: no share distributed yet.
            node.set_m_of_n(MofN::new(3, 5).unwrap()).unwrap();
            node.set_m_of_n(m_of_n).unwrap();
        },
        |csr, node| node.obtain_share(&obtain_request(KIND, 1, csr)).map(|_| ()),
        |csr, node| {
            obtain(node, KIND, 1, csr);
        },
    );
    assert_eq!(export_keys(&config), 0);
}

/// The handle of the private key labelled `label`, found in `session` (the test's own, as
/// any user-PIN holder could find it), if the token holds one.
fn private_key(session: &Session, label: &str) -> Option<ObjectHandle> {
    let found = session
        .find_objects(&[
            Attribute::Token(true),
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert!(
        found.len() <= 1,
        "{} private keys labelled {label}",
        found.len()
    );
    found.first().copied()
}

/// Whether the key `handle` still signs. `session` must have stayed open since the handle
/// was found: SoftHSM invalidates the handles of private objects when the last session of
/// the process closes (the login goes with it), which would make every key look gone.
fn signs(session: &Session, handle: ObjectHandle) -> bool {
    session
        .sign(&Mechanism::Sha256RsaPkcs, handle, b"anything")
        .is_ok()
}

/// Every token object labelled with the CSS key's label (its halves).
fn css_halves(config: &Pkcs11NodeConfig) -> usize {
    user_session(config)
        .find_objects(&[
            Attribute::Token(true),
            Attribute::Label(CSS_LABEL.as_bytes().to_vec()),
        ])
        .unwrap()
        .len()
}

#[test]
fn delete_retained_key_survives_a_crash_at_every_call_and_leaves_no_usable_key() {
    // The halves go before the companion, so a crash at any point leaves the key listed
    // (the companion is the last call) and the rerun finishes the deletion: it answers
    // Done, never "already done" over a key that still signs; after it no half is left.
    let (config, mut node) = token_node("crash-delete", "NODE");
    let css = label(CSS_LABEL);
    generate(&mut node, CSS_LABEL, KeyRole::Css);
    let empty = object_shape(&mut node)
        .into_iter()
        .filter(|l| l != CSS_LABEL && *l != format!("mkclone/key/{CSS_LABEL}"))
        .collect::<Vec<_>>();
    node.stop_after_calls(u64::MAX);
    let clean = node.delete_retained_key(&css).unwrap();
    assert!(!clean.was_already_done());
    let calls = node.calls_since_armed();
    assert_eq!(
        object_shape(&mut node),
        empty,
        "a clean DELETE removes the key"
    );
    drop(node);

    // Crashes that left some halves destroyed and the companion in place.
    let mut partial = 0;
    for k in 0..calls {
        let mut node = open(&config);
        generate(&mut node, CSS_LABEL, KeyRole::Css);
        // A user-PIN holder's session, open through the crash and the rerun.
        let session = user_session(&config);
        let private = private_key(&session, CSS_LABEL).expect("the CSS private key");
        assert!(signs(&session, private));
        node.stop_after_calls(k);
        match node.delete_retained_key(&css) {
            Err(BackendError::OutcomeUnknown { .. }) => {}
            other => panic!("DELETE stopped after {k} of {calls} calls answered {other:?}"),
        }
        drop(node);

        // The crash: a new process opens the token and recovers, which leaves the key
        // (its companion names it), listed, whichever halves are left.
        let mut node = open(&config);
        let left = css_halves(&config);
        partial += usize::from(left < 2);
        let listed = node.list_retained_keys().unwrap();
        assert_eq!(
            listed.iter().map(|k| k.label.as_str()).collect::<Vec<_>>(),
            [CSS_LABEL],
            "after a crash following call {k} of {calls} ({left} halves left), the key is listed"
        );
        let rerun = node.delete_retained_key(&css).unwrap();
        assert!(
            !rerun.was_already_done(),
            "after a crash following call {k} of {calls}, the rerun deletes"
        );
        assert!(node.list_retained_keys().unwrap().is_empty());
        assert_eq!(object_shape(&mut node), empty, "crash after call {k}");
        drop(node);
        assert_eq!(
            css_halves(&config),
            0,
            "crash after call {k}: a half is left"
        );
        assert_eq!(
            private_key(&session, CSS_LABEL),
            None,
            "crash after call {k}"
        );
        assert!(
            !signs(&session, private),
            "crash after call {k}: the deleted private key still signs"
        );
    }
    assert!(
        partial > 0,
        "no crash fell between the halves and the companion"
    );
}

#[test]
fn halves_no_companion_names_are_removed_at_open_and_no_other_key() {
    // What a DELETE that destroyed the companion first (as mkclone did before) left when it
    // was cut right after it, and what a generation cut before its companion leaves: key
    // halves under mkclone's CKA_ID that no companion names. The next open removes them;
    // a key of the same label with an id that is not mkclone's stays.
    let (config, mut node) = token_node("crash-orphans", "NODE");
    generate(&mut node, CSS_LABEL, KeyRole::Css);
    generate(&mut node, SA_LABEL, KeyRole::Sa);
    drop(node);
    // A user-PIN holder's session, open throughout (the handles stay valid).
    let session = user_session(&config);
    let private = private_key(&session, CSS_LABEL).expect("the CSS private key");
    let companion = session
        .find_objects(&[
            Attribute::Token(true),
            Attribute::Class(ObjectClass::DATA),
            Attribute::Label(format!("mkclone/key/{CSS_LABEL}").into_bytes()),
        ])
        .unwrap();
    assert_eq!(companion.len(), 1);
    session.destroy_object(companion[0]).unwrap();
    // Someone else's key pair under the same label, with an id of their own.
    let theirs = |extra: Vec<Attribute>| {
        [
            vec![
                Attribute::Token(true),
                Attribute::Label(CSS_LABEL.as_bytes().to_vec()),
                Attribute::Id(b"not-mkclone".to_vec()),
            ],
            extra,
        ]
        .concat()
    };
    let (_, their_private) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &theirs(vec![
                Attribute::ModulusBits(2048.into()),
                Attribute::Verify(true),
            ]),
            &theirs(vec![Attribute::Private(true), Attribute::Sign(true)]),
        )
        .unwrap();
    assert!(signs(&session, private) && signs(&session, their_private));
    assert_eq!(css_halves(&config), 4);

    let mut node = open(&config);
    assert_eq!(css_halves(&config), 2, "mkclone's CSS halves are removed");
    assert!(!signs(&session, private), "the CSS private key still signs");
    assert!(
        signs(&session, their_private),
        "a key mkclone did not make stays"
    );
    // The SA key, which its companion names, is untouched: listed, and it signs.
    let listed = node.list_retained_keys().unwrap();
    assert_eq!(
        listed.iter().map(|k| k.label.as_str()).collect::<Vec<_>>(),
        [SA_LABEL]
    );
    drop(node);
    let sa = private_key(&session, SA_LABEL).expect("the SA private key");
    assert!(signs(&session, sa));
}
