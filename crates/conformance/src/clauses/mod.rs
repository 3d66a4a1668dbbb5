//! The clauses of the `Backend` contract, one function each, every one generic over a
//! [`crate::NodeFactory`]. [`crate::conformance_suite!`] makes one `#[test]` of each.
//!
//! Each clause uses fresh nodes; the expensive part of a node (RSA key generation) is
//! shared within a clause, never across clauses, so that clauses run in any order and in
//! parallel.

mod install;
mod keys;
mod node;
mod obtain;
mod registers;
mod registry;

pub use install::{
    install_counts_to_m_and_is_idempotent, install_needs_new_empty,
    install_refuses_a_damaged_or_mislabelled_share,
    install_refuses_a_different_share_under_a_received_index,
    install_refuses_a_share_for_another_target,
    install_refuses_shares_of_another_source_key_or_m_of_n,
    install_refuses_without_the_registered_sa_key,
};
pub use keys::{
    certify_signs_with_a_retained_signature_key,
    retained_keys_are_generated_listed_read_and_deleted,
};
pub use node::{
    a_fresh_node_reports_nothing, capabilities_are_honest, m_greater_than_n_cannot_be_asked,
    set_eid_is_idempotent_and_set_once, set_m_of_n_is_idempotent_and_starts_the_tables,
};
pub use obtain::{
    obtain_gives_the_same_share_and_counts_it, obtain_needs_a_valid_current,
    obtain_refuses_what_it_cannot_vouch_for, reads_reflect_the_ceremony,
};
pub use registers::{
    clear_new_is_idempotent, load_random_master_key_moves_current_to_old, set_needs_a_full_new,
};
pub use registry::{
    registrations_are_idempotent_and_listed, registrations_refuse_what_does_not_match,
};
