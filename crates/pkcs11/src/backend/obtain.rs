//! OBTAIN (source): the master key exported to be split, the share polynomial derived
//! in the token, and the share sealed for one target.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use mkclone_backend::rules;
use mkclone_backend::{
    BackendError, CloneableKind, KeyUsage, ObtainRequest, Operation, Result, SealedShare,
    VerificationPattern,
};
use mkclone_formats::clone_info::CloneInfo;
use mkclone_formats::mkvp;
use mkclone_formats::pka::PublicKeyTokenView;
use mkclone_formats::seal;
use mkclone_formats::shamir::Polynomial;
use zeroize::{Zeroize, Zeroizing};

use super::{Pkcs11Backend, kind_code, oaep};
use crate::objects::Managed;

/// Domain string of the coefficient HMAC (a project definition).
const COEFFICIENT_DOMAIN: &[u8] = b"mkclone-pkcs11-coefficient";

impl Pkcs11Backend {
    pub(super) fn obtain_share_internal(&mut self, request: &ObtainRequest) -> Result<SealedShare> {
        let op = Operation::ObtainShare;
        let kind = request.kind;
        let current = self
            .map
            .registers(kind)
            .current
            .ok_or(BackendError::CurrentNotValid { kind })?;
        let mofn = self.m_of_n(op)?.ok_or(BackendError::MofNNotSet)?;
        let m_of_n = mofn.m_of_n;
        let index =
            request
                .index
                .check_against(m_of_n)
                .map_err(|_| BackendError::IndexOutOfRange {
                    index: request.index,
                    n: m_of_n.n(),
                })?;
        let origin_eid = self.eid(op)?.ok_or_else(|| BackendError::Conflict {
            what: "this node's EID".into(),
            detail: "no EID is set, so shares cannot name their origin: set the EID first".into(),
        })?;
        let (css, _) = self.usable(op, &request.css_label, KeyUsage::SignatureOnly, "signing")?;
        let sa = self.sa_key(op, &request.sa_name)?;
        let csr = Self::certified(&request.csr_certificate, &request.sa_name, &sa)?;
        let target_eid = csr
            .info
            .eid
            .clone()
            .ok_or_else(|| BackendError::CertificateRejected {
                reason: "the CSR certificate names no EID, so the share cannot be addressed".into(),
            })?;
        let css_view = PublicKeyTokenView::decode(&css.token)
            .map_err(|e| self.corrupt(op, format!("the token of {}: {e}", request.css_label)))?;

        // The security officer's step (at a session's first export) logs the user out,
        // which invalidates the handles of private objects: the keys are found after it.
        self.export_key(op)?;
        let (_, css_handle) =
            self.usable(op, &request.css_label, KeyUsage::SignatureOnly, "signing")?;
        let (key_handle, pattern) = self.register_pattern(op, kind, current)?;
        let seed = self.managed_key(op, Managed::Seed, mofn.seed)?;
        let mut rows = self.coefficients(op, seed, kind, m_of_n.m(), &pattern)?;
        // The master key is whole in host memory from here to the end of this block.
        let share = {
            let key = self.export_master_key(op, key_handle, &pattern)?;
            let polynomial = Polynomial::new(&key, std::mem::take(&mut *rows))
                .map_err(|e| self.corrupt(op, format!("the share polynomial: {e}")))?;
            polynomial.share(index)
        };
        let info = CloneInfo {
            index,
            origin_eid,
            origin_serial: self.serial.clone(),
            kind,
            m_of_n,
            source_pattern: pattern,
            share,
        };
        let mut rng = rand::rng();
        let mut sign_failure = None;
        let parts = seal::seal(
            &info,
            &request.css_label,
            |bytes| {
                self.token
                    .sign(&Mechanism::Sha256RsaPkcs, css_handle, bytes)
                    .map_err(|e| {
                        sign_failure = Some(e);
                    })
            },
            css_view.key.modulus_len(),
            &target_eid,
            &csr.key,
            &mut rng,
        );
        drop(info);
        if let Some(e) = sign_failure {
            return Err(self.device(op, e));
        }
        let sealed = parts
            .and_then(|p| p.encode().map_err(seal::SealError::Format))
            .map_err(|e| {
                let reason = match e {
                    seal::SealError::Sign(()) => "the CSS key did not sign".to_string(),
                    seal::SealError::Format(f) => f.to_string(),
                    seal::SealError::Wrap { reason } => reason,
                    seal::SealError::WeakRng => "the random generator is not working".to_string(),
                };
                self.corrupt(op, format!("sealing the share: {reason}"))
            })?;

        // STATMOFN: distributed once (3), more than once (4).
        let mut table = self.table(op, kind, Some(m_of_n))?;
        let mut generation = table.generation_row().map_err(|e| self.corrupt(op, e))?;
        if rules::tables::distribute(&mut generation, index) {
            table.set_generation_row(&generation);
            self.replace_table(op, kind, &table)?;
        }
        Ok(sealed)
    }

    /// The master key in host memory, to be split: wrapped with RSA-OAEP(SHA-1) to this
    /// session's export key, which the security officer made trusted (officer.rs), and
    /// decrypted with its private half.
    fn export_master_key(
        &mut self,
        op: Operation,
        key: ObjectHandle,
        pattern: &VerificationPattern,
    ) -> Result<Zeroizing<[u8; 24]>> {
        let (public, private) = self.export_key(op)?;
        let wrapped = self
            .token
            .wrap(&oaep(), public, key)
            .map_err(|e| self.device(op, e))?;
        let clear = self
            .token
            .decrypt(&oaep(), private, &wrapped)
            .map_err(|e| self.device(op, e))?;
        let mut out = Zeroizing::new([0u8; 24]);
        if clear.len() != 24 {
            return Err(self.corrupt(
                op,
                format!("a master-key register is {} bytes", clear.len()),
            ));
        }
        out.copy_from_slice(&clear);
        if mkvp::sha1_method(&out) != *pattern {
            return Err(self.corrupt(
                op,
                "the exported master key does not match its recorded verification pattern",
            ));
        }
        Ok(out)
    }

    /// Coefficient row `j` (1..m) of `kind`'s share polynomial: HMAC-SHA256 under the seed
    /// over (domain, kind, m, j, the key's pattern), first 24 bytes.
    fn coefficients(
        &mut self,
        op: Operation,
        seed: ObjectHandle,
        kind: CloneableKind,
        m: u8,
        pattern: &VerificationPattern,
    ) -> Result<Zeroizing<Vec<[u8; 24]>>> {
        let mut rows = Zeroizing::new(Vec::with_capacity(usize::from(m.saturating_sub(1))));
        for j in 1..m {
            let mut input = COEFFICIENT_DOMAIN.to_vec();
            input.extend([kind_code(kind), m, j]);
            input.extend_from_slice(pattern.bytes());
            let mac = self
                .token
                .sign_secret(&Mechanism::Sha256Hmac, seed, &input)
                .map_err(|e| self.device(op, e))?;
            let mut row = [0u8; 24];
            match mac.get(..24) {
                Some(bytes) => row.copy_from_slice(bytes),
                None => return Err(self.corrupt(op, "the coefficient seed's HMAC is short")),
            }
            rows.push(row);
            row.zeroize();
        }
        Ok(rows)
    }
}
