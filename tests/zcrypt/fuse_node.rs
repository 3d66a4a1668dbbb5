//! A zcrypt node served through FUSE (crates/zcrypt-fuse) with hw-sim's cards behind it,
//! and a sysfs tree beside it: the machine the FUSE tests run mkclone against. The
//! transport under test is the production one, `IoctlTransport<DeviceFile>`: open(2) of
//! the node, then ioctl(2) ZSECSENDCPRB; only the configured path differs from a real
//! machine.
//!
//! A machine without /dev/fuse (or without the right to mount) fails these tests with
//! the reason, never skips them: scripts/test loads the fuse module and installs fuse3.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mkclone::backend::SerialNumber;
use mkclone::cca::{Apqn, CcaBackend};
use mkclone::zcrypt::{IoctlTransport, ProjectEncodings, RetryPolicy};
use mkclone_zcrypt_fuse::{NodeKind, ZcdnMasks, ZcryptModel, ZcryptNode};

/// A machine: a temporary directory holding `dev/<node>` and `sys/`.
pub struct Machine {
    pub dir: tempfile::TempDir,
    pub node: ZcryptNode,
}

impl Machine {
    /// `cards` (APQN, serial) behind a node named `name`, served as `kind`, with `masks`
    /// (`None`: /dev/z90crypt). The sysfs tree is written after the cards are added.
    pub fn with(
        name: &str,
        cards: &[(Apqn, &str)],
        kind: NodeKind,
        masks: Option<ZcdnMasks>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        let mut model = ZcryptModel::new();
        for (apqn, serial) in cards {
            model.add_domain(*apqn, &SerialNumber::new(serial).unwrap());
        }
        model.set_masks(masks);
        mkclone_zcrypt_fuse::sysfs::write_tree(&dir.path().join("sys"), &model).unwrap();
        let path = dir.path().join("dev").join(name);
        let node = ZcryptNode::serve(&path, model, kind).unwrap_or_else(|e| {
            panic!(
                "\n\nthe zcrypt node could not be served through FUSE: {e}\n\
                 These tests need /dev/fuse and root; scripts/test provides both.\n"
            )
        });
        assert!(node.is_mounted(), "{} is not a mount", path.display());
        Self { dir, node }
    }

    /// `cards` behind /dev/z90crypt's stand-in, `zcrypt_0`.
    pub fn new(cards: &[(Apqn, &str)]) -> Self {
        Self::with("zcrypt_0", cards, NodeKind::Zcrypt, None)
    }

    pub fn device(&self) -> PathBuf {
        self.node.path().to_path_buf()
    }

    pub fn sysfs(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The production transport on the node, without pauses between retries.
    pub fn transport(&self, apqn: Apqn, encodings: ProjectEncodings) -> IoctlTransport {
        IoctlTransport::open(&self.device(), apqn)
            .unwrap()
            .with_project_encodings(encodings)
            .with_retry(RetryPolicy {
                attempts: 3,
                backoff: std::time::Duration::ZERO,
            })
    }

    pub fn backend(&self, apqn: Apqn, encodings: ProjectEncodings) -> CcaBackend<IoctlTransport> {
        CcaBackend::new(self.transport(apqn, encodings))
    }
}

pub fn apqn(card: u8, domain: u16) -> Apqn {
    Apqn::new(card, domain).unwrap()
}

impl Machine {
    /// The four cards of `ceremony::run_ceremony` (SA 1, source 2, targets 3 and 4, domain
    /// 0x0d) behind one node.
    pub fn for_ceremony() -> Self {
        let cards: Vec<_> = crate::ceremony::CARDS
            .iter()
            .map(|(card, serial)| (apqn(*card, 0x0d), *serial))
            .collect();
        Self::new(&cards)
    }

    /// A node's backend for card `card`, domain 0x0d, with the experiment override (the
    /// simulator is behind the node).
    pub fn sim_node(&self, card: u8) -> CcaBackend<IoctlTransport> {
        self.backend(
            apqn(card, 0x0d),
            ProjectEncodings::SendAnywayIKnowTheyAreNotIbms,
        )
    }
}

/// Run the mkclone binary as `command` describes it (its arguments and environment set);
/// whether it succeeded, and its standard output and error.
pub fn run_mkclone(command: &mut std::process::Command) -> (bool, String) {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A command for the mkclone binary under test.
pub fn mkclone() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mkclone"))
}

#[test]
fn the_node_answers_the_public_facility_query_through_open_and_ioctl() {
    let m = Machine::new(&[(apqn(3, 0x0d), "FUSE0003")]);
    let mut node = m.backend(apqn(3, 0x0d), ProjectEncodings::Refuse);
    let (a, _) = node.facility_query().unwrap();
    assert_eq!(a.serial.as_str(), "FUSE0003");
    let calls = m.node.model().calls().to_vec();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.errno.is_none() && c.card_ran));
    assert_eq!(calls[0].rule.as_ref(), Some(b"STATICSA"));
    // The caller the kernel named is this test's thread, in this process.
    let me = nix::unistd::gettid().as_raw() as u32;
    assert_eq!(calls[0].pid, me);
}
