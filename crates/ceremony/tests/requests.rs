//! How many requests a clone sends to each device: every one is a round trip to a
//! coprocessor (milliseconds each on a real card), so a change that adds requests must say
//! so here. The reads a phase repeats come from `StatusCache`; an install reads the EID
//! alone, and the installs of one key, one after the other, read it and the CSR key once.
//! Both orders give the same counts at every run.

use mkclone_backend::CloneableKind;
use mkclone_ceremony::Ceremony;
use mkclone_ceremony::run::{Checks, CloneOptions, run_clone};

mod common;
use common::*;

const NODES: [(&str, u8); 4] = [("sa", 1), ("source", 2), ("target1", 3), ("target2", 4)];

/// The requests each device received during a fresh 1 -> 2 clone (SYM and ASYM, 2-of-3)
/// run with `jobs`.
fn requests_of_a_clone(jobs: Option<usize>) -> Vec<(&'static str, u64)> {
    let dir = tempfile::tempdir().unwrap();
    create_cards(dir.path(), &NODES);
    let plan = plan(
        "requests",
        &["target1", "target2"],
        &CloneableKind::ALL,
        2,
        3,
        true,
    );
    let mut ceremony = Ceremony::open(&dir.path().join("ceremony"), plan).unwrap();
    let mut cards = open_cards(dir.path(), &NODES);
    let options = CloneOptions {
        jobs: jobs.and_then(std::num::NonZeroUsize::new),
        observer: None,
        checks: Checks::EachTarget,
    };
    run_clone(&mut ceremony, &mut cards, &options).unwrap();
    NODES
        .iter()
        .map(|(name, _)| (*name, cards[*name].transport().requests()))
        .collect()
}

// Before the phases' other reads were kept and an install read the EID alone (15af80e),
// the same clones sent 59 requests to each target (and 40 to the source in parallel); 51
// before an install reused the EID and CSR key the install just before it had read (two
// requests less for each share of a key after its first).

#[test]
fn a_serial_clone_sends_the_requests_it_needs_and_no_more() {
    assert_eq!(
        requests_of_a_clone(Some(1)),
        [("sa", 25), ("source", 43), ("target1", 47), ("target2", 47)],
        "requests per device"
    );
}

#[test]
fn a_parallel_clone_sends_the_requests_it_needs_and_no_more() {
    assert_eq!(
        requests_of_a_clone(None),
        [("sa", 25), ("source", 34), ("target1", 47), ("target2", 47)],
        "requests per device"
    );
}
