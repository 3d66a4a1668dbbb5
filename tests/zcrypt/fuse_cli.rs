//! `mkclone clone` itself, the binary as an operator runs it, on four zcrypt nodes served
//! through FUSE: configuration -> open_backend -> IoctlTransport -> open(2) and ioctl(2)
//! on the node -> the kernel's FUSE module -> the zcrypt model reading the binary's memory
//! (another process) -> hw-sim. The experiment override is set because the cloning verbs'
//! encodings are the project's own; the plan pins the source's patterns, as a plan for
//! real coprocessors must (their INSTALL is not known to check the signed pattern).

use std::path::Path;

use mkclone::backend::{Backend, CloneableKind, MasterKeyKind};
use mkclone::zcrypt::OVERRIDE_ENV;

use crate::fuse_node::{Machine, mkclone, run_mkclone};

fn plan(dir: &Path, device: &Path, patterns: &str) -> std::path::PathBuf {
    let mut s = format!(
        "[ceremony]\nid = \"fuse-e2e\"\ndirectory = \"ceremony\"\nsa = \"sa\"\nsource = \"source\"\n\
         targets = [\"target1\", \"target2\"]\nmaster_keys = [\"sym\", \"asym\"]\nthreshold = 2\n\
         shares = 3\ndual_control = false\nsource_patterns = {{ {patterns} }}\n"
    );
    for (name, card) in [("sa", 1), ("source", 2), ("target1", 3), ("target2", 4)] {
        s.push_str(&format!(
            "\n[nodes.{name}]\nbackend = \"zcrypt\"\napqn = \"{card:02x}.000d\"\ndevice = \"{}\"\n\
             eid = \"{}\"\n",
            device.display(),
            name.to_uppercase()
        ));
    }
    let path = dir.join("mkclone.toml");
    std::fs::write(&path, s).unwrap();
    path
}

#[test]
fn mkclone_clone_runs_on_zcrypt_nodes_served_through_fuse() {
    let m = Machine::for_ceremony();
    let open = |card: u8| m.sim_node(card);
    // The source's master keys, loaded through the node; their CURRENT patterns go into
    // the plan as the source's operator reads them out.
    let mut source = open(2);
    let mut patterns = Vec::new();
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).unwrap();
        let status = source.status().unwrap();
        let current = status.register(kind.kind()).unwrap().current_patterns[0].clone();
        patterns.push(format!(
            "{} = \"{current}\"",
            kind.kind().name().to_lowercase()
        ));
    }
    let before = m.node.model().calls().len();
    let config = plan(m.path(), &m.device(), &patterns.join(", "));

    let (ok, text) = run_mkclone(
        mkclone()
            .args(["clone", "--config"])
            .arg(&config)
            .env(OVERRIDE_ENV, "1")
            .current_dir(m.path()),
    );
    assert!(ok, "mkclone clone failed:\n{text}");
    let calls = m.node.model().calls()[before..].to_vec();

    // Both targets hold the source's keys in CURRENT.
    let source_status = open(2).status().unwrap();
    for target in [3, 4] {
        let status = open(target).status().unwrap();
        for kind in [MasterKeyKind::Sym, MasterKeyKind::Asym] {
            assert_eq!(
                status.register(kind).unwrap().current_patterns,
                source_status.register(kind).unwrap().current_patterns,
                "card {target} {kind:?}"
            );
        }
    }
    // Every request of the run came from the binary (another process), to its card's
    // domain 0x0d, and none failed.
    assert!(calls.len() > 50, "{} calls", calls.len());
    for c in &calls {
        assert!(c.errno.is_none() && c.card_ran && c.domain == 0x0d, "{c:?}");
        assert!(
            !Path::new(&format!("/proc/self/task/{}", c.pid)).exists(),
            "a call from this process: {c:?}"
        );
    }
}
