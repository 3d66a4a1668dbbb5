//! The whole ceremony through the unmodified ioctl path: CcaBackend -> IoctlTransport ->
//! open(2) of a node -> ioctl(2) ZSECSENDCPRB -> the kernel's FUSE module -> the zcrypt
//! model (crates/zcrypt-fuse), which follows the ica_xcRB's pointers into this process
//! with process_vm_readv/writev -> hw-sim. Only the node's path differs from a real
//! machine; the run uses the experiment override, as the cloning verbs' encodings are the
//! project's own.

use crate::ceremony::run_ceremony;
use crate::fuse_node::Machine;

#[test]
fn a_whole_ceremony_runs_through_a_fuse_served_zcrypt_node() {
    let m = Machine::for_ceremony();
    let open = |card: u8| m.sim_node(card);
    run_ceremony(open(1), open(2), [open(3), open(4)]);

    // Every request was one ioctl on the node by this process, addressed to its card
    // and domain 0x0d, and none failed.
    let calls = m.node.model().calls().to_vec();
    assert!(calls.len() > 100, "{} calls", calls.len());
    let me = std::process::id();
    for c in &calls {
        assert!(
            c.errno.is_none() && c.card_ran && c.domain == 0x0d && c.attempts == 1,
            "{c:?}"
        );
        let tgid = std::fs::read_to_string(format!("/proc/{}/status", c.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Tgid:").map(|v| v.trim().to_string()))
            });
        assert!(
            tgid.is_none_or(|t| t == me.to_string()),
            "call from another process: {c:?}"
        );
    }
    for (card, function) in [(4u32, b"md"), (2, b"md"), (1, b"ce"), (3, b"mp")] {
        assert!(
            calls
                .iter()
                .any(|c| c.card == card && &c.function == function),
            "no {} on card {card}",
            String::from_utf8_lossy(function)
        );
    }
    let rules: std::collections::BTreeSet<_> = calls.iter().filter_map(|c| c.rule).collect();
    assert_eq!(
        rules,
        [*b"STATCCAE", *b"STATEID ", *b"STATICSA", *b"STATICSB"]
            .into_iter()
            .collect()
    );
}
