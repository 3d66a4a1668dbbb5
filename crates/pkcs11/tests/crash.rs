//! A crash between any two PKCS#11 calls of SET or INSTALL leaves the token either as it
//! was before the operation or as it is after it, never in between; opening the token again
//! removes what the interrupted operation left; and running the operation again completes.
//!
//! The crash is the test seam `stop_after_calls(k)`: calls 1..=k reach the token, every
//! later one fails as if the process had died; the backend is then dropped (its session
//! closes) and the token opened again. SoftHSM rewrites its object files in place, so a
//! kill inside a call is not what these tests model (docs/ARCHITECTURE.md, "PKCS#11").

mod common;

use common::*;
use mkclone_backend::{
    Applied, Backend, BackendError, Certificate, CloneableKind, InstallProgress, MofN, SealedShare,
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
