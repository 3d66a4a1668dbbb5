//! What a backend gives the suite: fresh nodes.

use mkclone_backend::{Backend, CloneableKind};

/// Makes the nodes a clause runs on. Every call returns another device (another
/// simulated card, token or APQN), in the state its method names.
pub trait NodeFactory {
    type Node: Backend;

    /// A node nobody has used: no EID, no m-of-n, no master key, nothing retained or
    /// registered.
    fn fresh_node(&self) -> Self::Node;

    /// A node for the SA role: fresh by default.
    fn sa_node(&self) -> Self::Node {
        self.fresh_node()
    }

    /// A source: a fresh node with random SYM and ASYM master keys in CURRENT (NEW
    /// empty). By default a fresh node given them by `load_random_master_key`; a backend
    /// that loads keys otherwise overrides this.
    fn source_node(&self) -> Self::Node {
        let mut node = self.fresh_node();
        for kind in CloneableKind::ALL {
            if let Err(e) = node.load_random_master_key(kind) {
                panic!(
                    "the default NodeFactory::source_node loads a random {kind} master key with \
                     load_random_master_key, which failed ({e}); override source_node for this backend"
                );
            }
        }
        node
    }

    /// A node for the target role: fresh by default.
    fn target_node(&self) -> Self::Node {
        self.fresh_node()
    }
}
