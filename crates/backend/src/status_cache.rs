//! A node's status read once between two requests that may change it.
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
//! [`StatusCache`] wraps the node a phase holds for that phase only: the first status is
//! read from the device; any request other than a read (`status`, `share_status`, the
//! retained keys, the registrations, `capabilities`, the access audit) forgets it before
//! it is sent, whatever its outcome; a failed status read is not kept.

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

/// A node, its status read at most once between two requests that may change it.
pub struct StatusCache<'a> {
    node: &'a mut dyn Backend,
    status: Option<NodeStatus>,
}

impl<'a> StatusCache<'a> {
    pub fn new(node: &'a mut dyn Backend) -> Self {
        Self { node, status: None }
    }

    /// `node`, whose status `status` was read from it since its last change (a check
    /// that changes nothing reading each node once for several steps).
    pub fn with_status(node: &'a mut dyn Backend, status: Option<NodeStatus>) -> Self {
        Self { node, status }
    }

    /// Forget the status read last: the next one comes from the device.
    pub fn forget(&mut self) {
        self.status = None;
    }

    /// The request about to be sent may change the node.
    fn changing(&mut self) -> &mut dyn Backend {
        self.status = None;
        self.node
    }
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
        if let Some(status) = &self.status {
            return Ok(status.clone());
        }
        let status = self.node.status()?;
        self.status = Some(status.clone());
        Ok(status)
    }

    fn share_status(&mut self) -> Result<ShareStatus> {
        self.node.share_status()
    }

    fn retained_public_key(&mut self, label: &KeyLabel) -> Result<Option<PublicKeyToken>> {
        self.node.retained_public_key(label)
    }

    fn list_retained_keys(&mut self) -> Result<Vec<RetainedKeyInfo>> {
        self.node.list_retained_keys()
    }

    fn list_registrations(&mut self) -> Result<Vec<Registration>> {
        self.node.list_registrations()
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

    /// Counts the status reads that reach it; `fail_next` makes the next one fail.
    #[derive(Default)]
    struct Counting {
        reads: u32,
        fail_next: bool,
        eid: u8,
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
            Ok(Vec::new())
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
    fn reads_are_answered_once_until_a_request_that_may_change_the_node() {
        let mut node = Counting::default();
        let mut cache = StatusCache::new(&mut node);
        assert_eq!(eid(&mut cache), "E0");
        assert_eq!(eid(&mut cache), "E0");
        // Other reads keep it.
        cache.list_registrations().unwrap();
        assert_eq!(eid(&mut cache), "E0");
        // A change, even a refused one or one whose outcome is unknown, forgets it.
        cache.set_eid(&Eid::new("X").unwrap()).unwrap();
        assert_eq!(eid(&mut cache), "E1");
        assert!(cache.clear_new(CloneableKind::Sym).is_err());
        assert_eq!(eid(&mut cache), "E1");
        cache.forget();
        assert_eq!(eid(&mut cache), "E1");
        drop(cache);
        assert_eq!(node.reads, 4);
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
}
