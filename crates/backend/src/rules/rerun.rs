//! What a rerun of a state change makes of what it finds in place: the very thing it
//! asks for is `AlreadyDone`, anything else a typed conflict. Written once for the
//! backends that reconcile on the host: `CcaBackend` after CCA answers "name already
//! exists" (or "EID already set"), `Pkcs11Backend` before it writes.

use crate::backend::GenerateRequest;
use crate::error::{BackendError, Result};
use crate::outcome::Applied;
use crate::types::{Certificate, Eid, KeyLabel, PublicKeyHash, RetainedKeyInfo};

/// Setting the EID `requested` where `found` is set.
pub fn eid(requested: &Eid, found: Eid) -> Result<Applied<()>> {
    if &found == requested {
        return Ok(Applied::AlreadyDone(()));
    }
    Err(BackendError::EidAlreadySet {
        current: found,
        requested: requested.clone(),
    })
}

/// Generating `request` where the retained key `found` holds its label: `Ok` when it is
/// the key asked for (usage, CLONE mark and size; the caller answers `AlreadyDone` with
/// its token), else the `Conflict` saying what it is.
pub fn retained_key(request: &GenerateRequest, found: &RetainedKeyInfo) -> Result<()> {
    if found.usage == request.role.usage()
        && found.clone == request.clone
        && found.bits == request.bits.bits()
    {
        return Ok(());
    }
    Err(BackendError::Conflict {
        what: format!("retained key {}", request.label),
        detail: format!(
            "it is a {}-bit {} key{}; delete it or choose another ceremony id",
            found.bits,
            found.usage.keyword(),
            if found.clone {
                " marked CLONE"
            } else {
                " without CLONE"
            }
        ),
    })
}

/// Registering `hash` (with the CLONE mark `clone`) under `name`, where `found` is
/// registered with the mark `found_clone`.
pub fn registered_hash(
    name: &KeyLabel,
    (hash, clone): (&PublicKeyHash, bool),
    (found, found_clone): (&PublicKeyHash, bool),
) -> Result<Applied<()>> {
    if found == hash && found_clone == clone {
        return Ok(Applied::AlreadyDone(()));
    }
    let mark = |clone: bool| if clone { " CLONE" } else { "" };
    Err(BackendError::Conflict {
        what: format!("registered hash {name}"),
        detail: format!(
            "registered: {}{}; requested: {}{}. Unregister it first if the old one is wrong",
            found.fingerprint(),
            mark(found_clone),
            hash.fingerprint(),
            mark(clone)
        ),
    })
}

/// Registering the key in `certificate` (with the CLONE mark `clone`) under `name`, where
/// `found` is registered (`None`: a registration without its key, which is not it either)
/// with the mark `found_clone`.
pub fn registered_key(
    name: &KeyLabel,
    (certificate, clone): (&Certificate, bool),
    (found, found_clone): (Option<&Certificate>, bool),
) -> Result<Applied<()>> {
    if found == Some(certificate) && found_clone == clone {
        return Ok(Applied::AlreadyDone(()));
    }
    Err(BackendError::Conflict {
        what: format!("registered public key {name}"),
        detail: "another key is registered under this name".into(),
    })
}
