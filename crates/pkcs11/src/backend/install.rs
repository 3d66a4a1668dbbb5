//! INSTALL (target): a share opened inside the token, admitted, held until the m-th, and
//! the key rebuilt into NEW.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use log::{Level, debug, warn};
use mkclone_backend::rules::{Admission, HeldShares, Refusal, ShareFacts, admission};
use mkclone_backend::{
    Applied, BackendError, CloneableKind, InstallProgress, InstallRequest, KeyUsage, MofN,
    Operation, Result, ShareIndex,
};
use mkclone_formats::clone_info::{CLEAR_HEADER_LEN, CloneInfo};
use mkclone_formats::pka::{PublicKeyTokenView, RsaPublicKey};
use mkclone_formats::seal::{self, SealedShareParts};
use mkclone_formats::shamir;
use mkclone_formats::{ShareValue, mkvp};
use sha2::{Digest, Sha256};

use super::{Blame, Pkcs11Backend, blame, kind_code, oaep};
use crate::objects::{APPLICATION, Managed, ObjId, Received, ShareObject};
use crate::session::CallError;
use crate::templates::Made;

/// A share refused by the rules: the typed error every backend gives it.
fn refused(refusal: Refusal) -> BackendError {
    debug!("pkcs11: {refusal}");
    BackendError::from(refusal)
}

/// A share whose parts cannot be what a source seals is refused on the host, before the
/// token is asked: the wrapped key is one RSA-OAEP block of the CSR key (as long as its
/// modulus, RFC 8017 7.1.2), and the encrypted part of the token whole triple-DES blocks.
/// A token asked anyway would most likely answer a length error, but may answer
/// `CKR_GENERAL_ERROR` (SoftHSM does for a wrapped key that does not decrypt), which costs
/// a control share and a second attempt to learn what the lengths already say.
fn check_lengths(parts: &SealedShareParts, csr_key: &RsaPublicKey) -> Result<()> {
    let area = parts
        .encrypted_clone_info
        .len()
        .checked_sub(CLEAR_HEADER_LEN);
    let wrapped = parts.wrapped_key.len();
    if wrapped != csr_key.modulus_len() || !area.is_some_and(|n| n > 0 && n % 8 == 0) {
        debug!(
            "pkcs11: share refused on the host: a wrapped key of {wrapped} bytes for a {}-byte \
             modulus, {} bytes of token",
            csr_key.modulus_len(),
            parts.encrypted_clone_info.len()
        );
        return Err(BackendError::ShareRejected);
    }
    Ok(())
}

/// Domain string of the share digest (a project definition).
const SHARE_DIGEST_DOMAIN: &[u8] = b"mkclone-pkcs11-share-digest";

/// What opens a share on this token: the CSR key (its handle, and its public key, to seal
/// a control share to it), and the source's CSS key that signed the share.
#[derive(Clone, Copy)]
struct Opener<'a> {
    csr: ObjectHandle,
    csr_key: &'a RsaPublicKey,
    css_key: &'a RsaPublicKey,
}

/// One attempt to open a share inside the token: what it gave (`None`: it does not decrypt
/// and verify), and the call that failed, if one did.
type Attempt = (Option<CloneInfo>, Option<CallError>);

/// The shares of one key held until the m-th arrives, as they come out of the token.
struct Opened {
    index: ShareIndex,
    value: ShareValue,
}

impl Pkcs11Backend {
    pub(super) fn install_share_internal(
        &mut self,
        request: &InstallRequest,
    ) -> Result<Applied<InstallProgress>> {
        let (op, kind) = (Operation::InstallShare, request.kind);
        let parts =
            SealedShareParts::decode(&request.share).map_err(|_| BackendError::ShareRejected)?;
        // The header is checked first, so that a share for another node gets its own
        // error before any cryptography runs.
        let eid = self.eid(op)?.ok_or_else(|| BackendError::Conflict {
            what: "this node's EID".into(),
            detail:
                "no EID is set, so no share can be addressed to it: set the EID first (phase 3a)"
                    .into(),
        })?;
        let (csr, csr_handle) = self.usable(
            op,
            &request.csr_label,
            KeyUsage::KeyManagementOnly,
            "unwrapping a share key",
        )?;
        let csr_view = PublicKeyTokenView::decode(&csr.token)
            .map_err(|e| self.corrupt(op, format!("the token of {}: {e}", request.csr_label)))?;
        let fingerprint = csr_view.key.fingerprint();
        parts.header.check_addressed_to(&eid, &fingerprint)?;
        if parts.header.kind != kind {
            warn!(
                "share header names the {} master key, the request {kind}",
                parts.header.kind
            );
            return Err(BackendError::ShareRejected);
        }
        let mofn = self.m_of_n(op)?.ok_or(BackendError::MofNNotSet)?;
        let m_of_n = mofn.m_of_n;
        let sa = self.sa_key(op, &request.sa_name)?;
        let css = Self::certified(&request.css_certificate, &request.sa_name, &sa)?;

        let opener = Opener {
            csr: csr_handle,
            csr_key: &csr_view.key,
            css_key: &css.key,
        };
        check_lengths(&parts, &csr_view.key)?;
        let info = self
            .open_sealed(op, &parts, opener)?
            .ok_or(BackendError::ShareRejected)?;
        self.install_opened(op, request, info, opener, m_of_n)
    }

    /// Open a sealed share inside the token: its triple-DES key unwrapped with the CSR key
    /// into a session object of the share key's template (the only one the CSR key's
    /// unwrap template allows: sensitive, never extractable, decrypt only), the token's
    /// bytes from offset 36 decrypted there, the key destroyed; the clear token parsed and
    /// its CSS signature verified on the host. `None`: the share is refused, whatever the
    /// reason (one answer: no padding oracle); an error: the token failed, not the share.
    ///
    /// Whose fault a failed call is ([`blame`]): a return value that says the data is bad
    /// refuses the share; one that says the token, its session or the module failed is the
    /// token's fault (nothing was installed: check the token and run again); any other
    /// (`CKR_GENERAL_ERROR`, SoftHSM's answer to a wrapped key that does not decrypt, or
    /// `CKR_FUNCTION_FAILED`) is decided by a control share sealed on the host to the CSR
    /// key: a token that cannot open it is failing; one that can is given the share once
    /// more (a fault it showed once does not stop the install), and what it answers then
    /// stands.
    fn open_sealed(
        &mut self,
        op: Operation,
        parts: &SealedShareParts,
        opener: Opener<'_>,
    ) -> Result<Option<CloneInfo>> {
        let (opened, failure) = self.open_once(op, parts, opener)?;
        let Some(error) = failure else {
            return Ok(opened);
        };
        match blame(&error) {
            Blame::Share => Ok(None),
            Blame::Token => Err(self.share_fault(op, parts, &error, None)),
            Blame::Unclear => {
                if let Some(control) = self.open_control(op, opener)? {
                    return Err(self.share_fault(op, parts, &error, Some(&control)));
                }
                debug!(
                    "pkcs11: {} while opening a share, but the token opens a control share: \
                     the share is opened once more",
                    error.describe()
                );
                match self.open_once(op, parts, opener)? {
                    (_, Some(again)) if blame(&again) == Blame::Token => {
                        Err(self.share_fault(op, parts, &again, None))
                    }
                    (opened, _) => Ok(opened),
                }
            }
        }
    }

    /// One attempt of [`Pkcs11Backend::open_sealed`]; the session key it unwrapped is
    /// destroyed (an error only when the work was stopped).
    fn open_once(
        &mut self,
        op: Operation,
        parts: &SealedShareParts,
        Opener { csr, css_key, .. }: Opener<'_>,
    ) -> Result<Attempt> {
        let template = Made::ShareKey.attributes(&self.support);
        let mut session_key = None;
        let mut failure = None;
        let opened = seal::open_in_device(
            parts,
            |wrapped, area| {
                let key = self
                    .token
                    .unwrap(&oaep(), csr, wrapped, &template)
                    .map_err(|e| failure = Some(e))?;
                session_key = Some(key);
                self.token
                    .decrypt(&Mechanism::Des3Cbc([0; 8]), key, area)
                    .map_err(|e| failure = Some(e))
            },
            css_key,
            None,
        );
        if let Some(key) = session_key {
            let stays = "a share key (a session object) stays until the session ends";
            self.destroy_or_leave(op, key, Level::Debug, stays)?;
        }
        Ok((opened.ok(), failure))
    }

    /// Open a control share ([`seal::control`]: a fresh triple-DES key wrapped on the host
    /// to the CSR key, and a block encrypted under it) as a share is opened. `None`: the
    /// token opened it; otherwise how it failed.
    fn open_control(&mut self, op: Operation, opener: Opener<'_>) -> Result<Option<String>> {
        let control = seal::control(opener.csr_key, &mut rand::rng())
            .map_err(|e| self.corrupt(op, format!("sealing a control share: {e}")))?;
        let template = Made::ShareKey.attributes(&self.support);
        let key = match self
            .token
            .unwrap(&oaep(), opener.csr, &control.wrapped_key, &template)
        {
            Ok(key) => key,
            Err(e) => return Ok(Some(e.answer())),
        };
        let clear = self
            .token
            .decrypt(&Mechanism::Des3Cbc([0; 8]), key, &control.encrypted);
        let stays = "a control share key (a session object) stays until the session ends";
        self.destroy_or_leave(op, key, Level::Debug, stays)?;
        Ok(match clear {
            Ok(clear) if clear.as_slice() == control.clear => None,
            Ok(_) => Some("C_Decrypt gave another block than the one encrypted".into()),
            Err(e) => Some(e.answer()),
        })
    }

    /// The token failed (`error`) while opening the share of `parts`, not the share; with
    /// `control`, how it failed to open a control share too.
    fn share_fault(
        &self,
        op: Operation,
        parts: &SealedShareParts,
        error: &CallError,
        control: Option<&str>,
    ) -> BackendError {
        let control = control
            .map(|c| {
                format!(
                    "; it could not open a control share mkclone sealed to its CSR key either \
                     ({c})"
                )
            })
            .unwrap_or_default();
        let cause = format!(
            "token {:?} failed while opening {} share {}: {}{control}. The fault is the \
             token's, not the share's: nothing was installed; check the token (its connection, \
             its log, its memory), then run the same command again",
            self.label,
            parts.header.kind,
            parts.header.index,
            error.answer()
        );
        Self::device_because(op, error, cause)
    }

    /// The rest of INSTALL once the share was opened inside the token. `opener` opens the
    /// shares held so far, at the m-th.
    fn install_opened(
        &mut self,
        op: Operation,
        request: &InstallRequest,
        info: CloneInfo,
        opener: Opener<'_>,
        m_of_n: MofN,
    ) -> Result<Applied<InstallProgress>> {
        let kind = request.kind;
        let regs = *self.map.registers(kind);
        let table = self.table(op, kind, Some(m_of_n))?;
        let digest = share_digest(kind, info.index, &info.share);
        let received: Vec<ShareFacts<'_>> = table.received.iter().map(Received::facts).collect();
        let held = HeldShares {
            kind,
            m_of_n,
            new_empty: regs.new.is_none(),
            received: &received,
        };
        let admission = admission::admit(&held, &info.incoming(&digest)).map_err(refused)?;
        let index = info.index;
        if let Admission::AlreadyReceived { .. } = admission {
            if !table.received_more.contains(&index.get()) {
                let mut updated = table.clone();
                updated.received_more.push(index.get());
                self.replace_table(op, kind, &updated)?;
            }
            return Ok(admission.applied());
        }

        let count = usize::from(admission.received());
        let complete = admission.is_complete();
        let mut record = Received {
            index,
            origin_eid: info.origin_eid.clone(),
            origin_serial: info.origin_serial.clone(),
            source_pattern: info.source_pattern.clone(),
            digest,
            share: None,
        };
        let mut map = self.map.clone();
        let mut garbage = Self::table_object(regs.table);
        if complete {
            // The m-th share: the held shares are opened inside the token again, and the
            // key is whole in host memory until the NEW register object is created.
            let mut shares = Vec::with_capacity(count);
            for r in &table.received {
                let held = self.open_held(op, kind, r, opener)?;
                shares.push((held.index, held.value));
                if let Some(s) = r.share {
                    garbage.push((Managed::Share, s));
                }
            }
            shares.push((index, info.share.clone()));
            let key = shamir::combine(&shares)
                .map_err(|e| self.corrupt(op, format!("combining the shares: {e}")))?;
            drop(shares);
            admission::check_rebuilt(
                kind,
                index,
                &mkvp::sha1_method(key.as_bytes()),
                &info.source_pattern,
            )
            .map_err(refused)?;
            let id = self.create_register(op, kind, key.as_bytes())?;
            drop(key);
            map.registers_mut(kind).new = Some(id);
        } else {
            // Held as it arrived, still sealed: no key on the token decrypts it directly
            // (a user-PIN holder opens it through the CSR key, as this step does).
            let id = ObjId::random();
            self.create_data(
                op,
                APPLICATION,
                &Managed::Share.label(id),
                &ShareObject {
                    kind,
                    index,
                    sealed: request.share.clone(),
                },
            )?;
            record.share = Some(id);
        }
        drop(info);
        let mut updated = table;
        if complete {
            // The held shares' objects are destroyed with this commit.
            for r in updated.received.iter_mut() {
                r.share = None;
            }
        }
        updated.received.push(record);
        self.commit_table(op, kind, &updated, map, garbage)?;
        Ok(admission.applied())
    }

    /// Open a held share inside the token again (as it was when it arrived) and check it
    /// is the one recorded.
    fn open_held(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        received: &Received,
        opener: Opener<'_>,
    ) -> Result<Opened> {
        let id = received.share.ok_or_else(|| {
            self.corrupt(op, format!("{kind} share {} is not held", received.index))
        })?;
        let stored: ShareObject = self.read_managed(op, Managed::Share, id)?;
        let no_longer = || {
            format!(
                "held {kind} share {} no longer opens with this node's CSR key",
                received.index
            )
        };
        let parts =
            SealedShareParts::decode(&stored.sealed).map_err(|_| self.corrupt(op, no_longer()))?;
        let info = self
            .open_sealed(op, &parts, opener)?
            .ok_or_else(|| self.corrupt(op, no_longer()))?;
        if info.kind != kind
            || info.index != received.index
            || share_digest(kind, info.index, &info.share) != received.digest
        {
            return Err(self.corrupt(
                op,
                format!(
                    "held {kind} share {} is not the share recorded",
                    received.index
                ),
            ));
        }
        Ok(Opened {
            index: info.index,
            value: info.share.clone(),
        })
    }
}

fn share_digest(kind: CloneableKind, index: ShareIndex, share: &ShareValue) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SHARE_DIGEST_DOMAIN);
    h.update([kind_code(kind), index.get()]);
    h.update(share.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_digests_separate_kind_index_and_value() {
        let i1 = ShareIndex::new(1).unwrap();
        let i2 = ShareIndex::new(2).unwrap();
        let v = ShareValue::new([7; 24]);
        let d = share_digest(CloneableKind::Sym, i1, &v);
        assert_ne!(d, share_digest(CloneableKind::Asym, i1, &v));
        assert_ne!(d, share_digest(CloneableKind::Sym, i2, &v));
        assert_ne!(
            d,
            share_digest(CloneableKind::Sym, i1, &ShareValue::new([8; 24]))
        );
    }
}
