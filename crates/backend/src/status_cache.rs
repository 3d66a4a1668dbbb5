//! A node's state as read once between two requests that may change it.
//!
//! A phase reads a node's status at several points (its preflight, the identity check at
//! its start, each step's reconciliation). Read from the device each time, that is three
//! requests on the simulator and five on a real coprocessor (STATCCAE, STATEID, the
//! facility queries, the patterns), two thirds of every request of a ceremony. Between two
//! requests of the phase that may change the node, the answer cannot differ but by another
//! program acting on the device in that instant, which a second read a few microseconds
//! later would not exclude either: every check mkclone makes of a device is as of its
//! last read, and the request that follows acts on the device as it is then.
//!
//! The same holds for the node's other reads that a phase repeats (its preflight, then the
//! phase's own checks): the share tables, the registrations, the retained keys and each
//! retained public key by label. A 1 -> 10 clone read each of them again within a
//! stretch without a change, a tenth of its requests.
//!
//! [`StatusCache`] wraps the node a phase holds for that phase only: the first answer to
//! each read is read from the device; any request other than a read (`status`,
//! `share_status`, the retained keys, the registrations, `capabilities`, the access audit)
//! forgets every answer before it is sent, whatever its outcome; a failed read is not kept.

use crate::access::AccessAudit;
use crate::backend::{Backend, Capabilities, GenerateRequest, InstallRequest, ObtainRequest};
use crate::error::Result;
use crate::outcome::{Applied, InstallProgress};
use crate::status::{NodeStatus, ShareStatus};
use crate::types::{
    Certificate, CloneableKind, Eid, KeyLabel, MofN, PublicKeyHash, PublicKeyToken, Registration,
    RetainedKeyInfo, SealedShare,
};
use crate::{Operation, SubjectInfo};

/// A node, each of its reads answered from the device at most once between two requests
/// that may change it.
pub struct StatusCache<'a> {
    node: &'a mut dyn Backend,
    status: Option<NodeStatus>,
    read: Reads,
}

/// The answers of the reads other than the status since the node's last change.
#[derive(Default)]
struct Reads {
    share_status: Option<ShareStatus>,
    registrations: Option<Vec<Registration>>,
    retained_keys: Option<Vec<RetainedKeyInfo>>,
    /// By label; `None` is the answer that no key has that label.
    public_keys: Vec<(KeyLabel, Option<PublicKeyToken>)>,
}

impl<'a> StatusCache<'a> {
    pub fn new(node: &'a mut dyn Backend) -> Self {
        Self::with_status(node, None)
    }

    /// `node`, whose status `status` was read from it since its last change (a check
    /// that changes nothing reading each node once for several steps).
    pub fn with_status(node: &'a mut dyn Backend, status: Option<NodeStatus>) -> Self {
        Self {
            node,
            status,
            read: Reads::default(),
        }
    }

    /// Forget every answer read so far: the next reads come from the device.
    pub fn forget(&mut self) {
        self.status = None;
        self.read = Reads::default();
    }

    /// The request about to be sent may change the node.
    fn changing(&mut self) -> &mut dyn Backend {
        self.forget();
        self.node
    }
}

/// `cached`'s answer, or `read`'s, kept in `cached` when it succeeds.
fn once<T: Clone>(cached: &mut Option<T>, read: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Some(answer) = cached {
        return Ok(answer.clone());
    }
    let answer = read()?;
    *cached = Some(answer.clone());
    Ok(answer)
}

impl Backend for StatusCache<'_> {
    fn backend_name(&self) -> &'static str {
        self.node.backend_name()
    }

    fn capabilities(&self) -> Capabilities {
        self.node.capabilities()
    }

    fn access_audit(
        &mut self,
        operations: &[Operation],
        kinds: &[CloneableKind],
    ) -> Result<AccessAudit> {
        self.node.access_audit(operations, kinds)
    }

    fn status(&mut self) -> Result<NodeStatus> {
        once(&mut self.status, || self.node.status())
    }

    fn share_status(&mut self) -> Result<ShareStatus> {
        once(&mut self.read.share_status, || self.node.share_status())
    }

    fn retained_public_key(&mut self, label: &KeyLabel) -> Result<Option<PublicKeyToken>> {
        if let Some((_, token)) = self.read.public_keys.iter().find(|(l, _)| l == label) {
            return Ok(token.clone());
        }
        let token = self.node.retained_public_key(label)?;
        self.read.public_keys.push((label.clone(), token.clone()));
        Ok(token)
    }

    fn list_retained_keys(&mut self) -> Result<Vec<RetainedKeyInfo>> {
        once(&mut self.read.retained_keys, || {
            self.node.list_retained_keys()
        })
    }

    fn list_registrations(&mut self) -> Result<Vec<Registration>> {
        once(&mut self.read.registrations, || {
            self.node.list_registrations()
        })
    }

    fn set_eid(&mut self, eid: &Eid) -> Result<Applied<()>> {
        self.changing().set_eid(eid)
    }

    fn set_m_of_n(&mut self, m_of_n: MofN) -> Result<Applied<()>> {
        self.changing().set_m_of_n(m_of_n)
    }

    fn generate_retained_key(
        &mut self,
        request: &GenerateRequest,
    ) -> Result<Applied<PublicKeyToken>> {
        self.changing().generate_retained_key(request)
    }

    fn delete_retained_key(&mut self, label: &KeyLabel) -> Result<Applied<()>> {
        self.changing().delete_retained_key(label)
    }

    fn register_public_key_hash(
        &mut self,
        name: &KeyLabel,
        hash: &PublicKeyHash,
        clone: bool,
    ) -> Result<Applied<()>> {
        self.changing().register_public_key_hash(name, hash, clone)
    }

    fn register_public_key(
        &mut self,
        name: &KeyLabel,
        certificate: &Certificate,
        clone: bool,
    ) -> Result<Applied<()>> {
        self.changing()
            .register_public_key(name, certificate, clone)
    }

    fn unregister_public_key(&mut self, name: &KeyLabel) -> Result<Applied<()>> {
        self.changing().unregister_public_key(name)
    }

    fn certify_public_key(
        &mut self,
        signer: &KeyLabel,
        subject: &PublicKeyToken,
        info: &SubjectInfo,
    ) -> Result<Certificate> {
        self.changing().certify_public_key(signer, subject, info)
    }

    fn obtain_share(&mut self, request: &ObtainRequest) -> Result<SealedShare> {
        self.changing().obtain_share(request)
    }

    fn install_share(&mut self, request: &InstallRequest) -> Result<Applied<InstallProgress>> {
        self.changing().install_share(request)
    }

    fn set_master_key(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        self.changing().set_master_key(kind)
    }

    fn clear_new(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        self.changing().clear_new(kind)
    }

    fn load_random_master_key(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        self.changing().load_random_master_key(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendError;
    use crate::status::Identity;

    /// Counts the status reads that reach it, and the other reads; `fail_next` makes the
    /// next status read fail, `failing_reads` the next other reads.
    #[derive(Default)]
    struct Counting {
        reads: u32,
        other_reads: Vec<&'static str>,
        /// How many of the next reads other than the status fail.
        failing_reads: u32,
        fail_next: bool,
        eid: u8,
    }

    impl Counting {
        /// An answer to the read `what`, or the failure `failing_reads` asked for.
        fn read<T>(&mut self, what: &'static str, answer: T) -> Result<T> {
            self.other_reads.push(what);
            if self.failing_reads > 0 {
                self.failing_reads -= 1;
                return Err(BackendError::Transport {
                    operation: Operation::ListRegistrations,
                    cause: "test".into(),
                });
            }
            Ok(answer)
        }
    }

    impl Backend for Counting {
        fn backend_name(&self) -> &'static str {
            "counting"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                backend: "counting",
                operations: Default::default(),
                key_stays_in_device: true,
                rehearsal_only: true,
                install_checks_signed_pattern: false,
                limits: Vec::new(),
            }
        }
        fn status(&mut self) -> Result<NodeStatus> {
            self.reads += 1;
            if std::mem::take(&mut self.fail_next) {
                return Err(BackendError::Transport {
                    operation: Operation::Status,
                    cause: "test".into(),
                });
            }
            Ok(NodeStatus {
                identity: Identity {
                    serial: crate::SerialNumber::new("S1").unwrap(),
                    eid: Some(Eid::new(&format!("E{}", self.eid)).unwrap()),
                },
                registers: Vec::new(),
            })
        }
        fn list_registrations(&mut self) -> Result<Vec<Registration>> {
            self.read("registrations", Vec::new())
        }
        fn share_status(&mut self) -> Result<ShareStatus> {
            self.read(
                "share status",
                ShareStatus {
                    m_of_n: Some(MofN::new(1, self.eid + 1).unwrap()),
                    tables: Vec::new(),
                },
            )
        }
        fn list_retained_keys(&mut self) -> Result<Vec<RetainedKeyInfo>> {
            self.read("retained keys", Vec::new())
        }
        fn retained_public_key(&mut self, label: &KeyLabel) -> Result<Option<PublicKeyToken>> {
            let what = if label.as_str() == "HELD" {
                "public key HELD"
            } else {
                "public key of another label"
            };
            let token = (label.as_str() == "HELD").then(|| {
                let mut bytes = vec![0x1E, 0, 0, 8, 0, 0, 0, 0];
                bytes[7] = self.eid;
                PublicKeyToken::new(bytes).unwrap()
            });
            self.read(what, token)
        }
        fn set_eid(&mut self, _eid: &Eid) -> Result<Applied<()>> {
            self.eid += 1;
            Ok(Applied::Done(()))
        }
        fn clear_new(&mut self, _kind: CloneableKind) -> Result<Applied<()>> {
            Err(BackendError::OutcomeUnknown {
                operation: Operation::ClearNew,
                cause: "test".into(),
            })
        }
    }

    fn eid(cache: &mut StatusCache<'_>) -> String {
        cache.status().unwrap().identity.eid.unwrap().to_string()
    }

    #[test]
    fn a_failed_read_is_not_kept() {
        let mut node = Counting {
            fail_next: true,
            ..Counting::default()
        };
        let mut cache = StatusCache::new(&mut node);
        assert!(cache.status().is_err());
        assert_eq!(eid(&mut cache), "E0");
        assert_eq!(eid(&mut cache), "E0");
        drop(cache);
        assert_eq!(node.reads, 2);
    }

    /// Every read of the node's state: answered once until a change, then read again.
    fn every_read(cache: &mut StatusCache<'_>) -> String {
        let held = KeyLabel::new("HELD").unwrap();
        let other = KeyLabel::new("OTHER").unwrap();
        let token = cache.retained_public_key(&held).unwrap().unwrap();
        assert_eq!(cache.retained_public_key(&other).unwrap(), None);
        let shares = cache.share_status().unwrap().m_of_n.unwrap();
        cache.list_retained_keys().unwrap();
        cache.list_registrations().unwrap();
        format!("{} {} {}", eid(cache), token.as_bytes()[7], shares.n())
    }

    #[test]
    fn every_read_is_answered_once_until_a_request_that_may_change_the_node() {
        let mut node = Counting::default();
        let mut cache = StatusCache::new(&mut node);
        assert_eq!(every_read(&mut cache), "E0 0 1");
        assert_eq!(every_read(&mut cache), "E0 0 1");
        // A change forgets every answer, also one refused or of unknown outcome.
        cache.set_eid(&Eid::new("X").unwrap()).unwrap();
        assert_eq!(every_read(&mut cache), "E1 1 2");
        assert!(cache.clear_new(CloneableKind::Sym).is_err());
        assert_eq!(every_read(&mut cache), "E1 1 2");
        cache.forget();
        assert_eq!(every_read(&mut cache), "E1 1 2");
        drop(cache);
        let once = [
            "public key HELD",
            "public key of another label",
            "share status",
            "retained keys",
            "registrations",
        ];
        assert_eq!(node.other_reads, once.repeat(4));
        assert_eq!(node.reads, 4);
    }

    #[test]
    fn a_failed_read_of_another_kind_is_not_kept() {
        let mut node = Counting {
            failing_reads: 4,
            ..Counting::default()
        };
        let mut cache = StatusCache::new(&mut node);
        let held = KeyLabel::new("HELD").unwrap();
        for read in 0..4 {
            let failed = match read {
                0 => cache.share_status().is_err(),
                1 => cache.list_registrations().is_err(),
                2 => cache.list_retained_keys().is_err(),
                _ => cache.retained_public_key(&held).is_err(),
            };
            assert!(failed, "read {read}");
        }
        assert_eq!(every_read(&mut cache), "E0 0 1");
        drop(cache);
        // Each failed read, then each read once.
        assert_eq!(node.other_reads.len(), 4 + 5);
    }
}
