//! `master_key::random_master_key` when a reply is lost: RANDOM then SET is not idempotent,
//! so the step that repeats a request of unknown outcome must not make a second key.

mod common;

use mkclone_backend::{Backend, CloneableKind, CurrentState, VerificationPattern};
use mkclone_ceremony::Ceremony;
use mkclone_ceremony::master_key::{RandomKeyRequest, RandomKeyResult, random_master_key};
use mkclone_hw_sim::{Fault, FaultPlan, SimBackend};

use common::*;

/// SYM's (CURRENT, OLD) patterns on `node`.
fn registers(node: &mut SimBackend) -> (Option<VerificationPattern>, Option<VerificationPattern>) {
    let status = node.status().unwrap();
    let r = status.register(CloneableKind::Sym.kind()).unwrap();
    let current = (r.current == CurrentState::Valid)
        .then(|| r.current_patterns.first().cloned())
        .flatten();
    (current, r.old_patterns.first().cloned())
}

/// Whichever request's reply is lost (the card ran it), the command, run again after a
/// failure as its message says, replaces CURRENT once: the key CURRENT held before is OLD,
/// and CURRENT is a new key.
#[test]
fn a_lost_reply_never_makes_a_second_random_key_over_the_one_kept_in_old() {
    let plan = plan("mk", &["target1"], &[CloneableKind::Sym], 1, 1, true);
    let request = RandomKeyRequest {
        node: "source".into(),
        kinds: vec![CloneableKind::Sym],
        replace_current: true,
    };
    for k in 1..=12u64 {
        let dir = tempfile::tempdir().unwrap();
        create_cards(dir.path(), &[("source", 2)]);
        let mut c = Ceremony::open(&dir.path().join("ceremony"), plan.clone()).unwrap();
        c.ensure_nonce().unwrap();
        let mut cards = open_cards(dir.path(), &[("source", 2)]);
        let source = cards.get_mut("source").unwrap();
        let (before, _) = registers(source);
        let before = before.expect("the source starts with a valid CURRENT");
        source
            .transport_mut()
            .set_faults(FaultPlan::new().at(k, Fault::AfterCard));
        let outcome = random_master_key(&mut c, source, &request)
            .or_else(|_| random_master_key(&mut c, source, &request))
            .unwrap_or_else(|e| panic!("lost reply {k}: {e}"));
        assert!(
            matches!(outcome, RandomKeyResult::Done { .. }),
            "lost reply {k}"
        );
        let (current, old) = registers(source);
        assert_eq!(
            old.as_ref(),
            Some(&before),
            "lost reply {k}: OLD is not the key kept"
        );
        assert!(
            current.is_some_and(|c| c != before),
            "lost reply {k}: CURRENT is not a new key"
        );
    }
}
