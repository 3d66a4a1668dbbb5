//! The `Backend` contract, written once as a test suite, and run against every backend
//! (as parsec runs one end-to-end suite per provider): the simulator through `CcaBackend`
//! (hw-sim/tests/conformance.rs), SoftHSM through `Pkcs11Backend`
//! (crates/pkcs11/tests/conformance.rs), and the zcrypt transport over the fake kernel
//! (tests/zcrypt/conformance.rs).
//!
//! A backend adopts it with a [`NodeFactory`] that makes fresh nodes and one line in a
//! test file:
//!
//! ```text
//! mkclone_conformance::conformance_suite!(MyFactory::new());
//! ```
//!
//! which expands to one `#[test]` per clause ([`clauses`]), each calling the clause with a
//! factory made by that expression. A clause that needs an operation the backend does not
//! list in `capabilities()` checks that the operation answers `NotSupported` and says so
//! on standard error; it never passes silently.

mod factory;
mod rig;
mod support;

pub mod clauses;

pub use factory::NodeFactory;
/// The phases the suite drives, for a backend's own tests: phase 1 ([`sa_key`]), the SA
/// key registered ([`install_sa`]), a key generated and certified ([`certify`]), the
/// requests that move a share ([`obtain_request`], [`install_request`]), and "nothing
/// changed" comparisons ([`snapshot`]), and the check of a finished clone
/// ([`assert_holds_source_keys`]).
pub use rig::{SaKey, certify, generate, install_request, install_sa, obtain_request, sa_key};
pub use support::{Snapshot, assert_holds_source_keys, snapshot};

/// One `#[test]` per clause of the contract, each run on nodes from `$factory` (an
/// expression evaluated once per test).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@clauses ($factory)
            capabilities_are_honest,
            a_fresh_node_reports_nothing,
            set_eid_is_idempotent_and_set_once,
            set_m_of_n_is_idempotent_and_starts_the_tables,
            m_greater_than_n_cannot_be_asked,
            retained_keys_are_generated_listed_read_and_deleted,
            certify_signs_with_a_retained_signature_key,
            registrations_are_idempotent_and_listed,
            registrations_refuse_what_does_not_match,
            reads_reflect_the_ceremony,
            obtain_needs_a_valid_current,
            obtain_refuses_what_it_cannot_vouch_for,
            obtain_gives_the_same_share_and_counts_it,
            install_counts_to_m_and_is_idempotent,
            install_refuses_a_different_share_under_a_received_index,
            install_refuses_shares_of_another_source_key_or_m_of_n,
            install_refuses_a_share_for_another_target,
            install_refuses_a_damaged_or_mislabelled_share,
            install_refuses_without_the_registered_sa_key,
            install_needs_new_empty,
            clear_new_is_idempotent,
            set_needs_a_full_new,
            load_random_master_key_moves_current_to_old,
        );
    };
    (@clauses ($factory:expr) $($clause:ident),* $(,)?) => {
        $(
            #[test]
            fn $clause() {
                $crate::clauses::$clause(&$factory);
            }
        )*
    };
}
