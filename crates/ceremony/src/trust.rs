//! What a ceremony trusts, and why: the SA key's pinned fingerprint (the trust anchor),
//! the plan's values, and the checks that hold every carried file to them.
//!
//! The rule (docs/ARCHITECTURE.md, "Threat model"): the plan is the authority and the
//! carried files are evidence. A value that changes a node comes from the plan; a file
//! whose value differs is refused before any node is touched. What a file adds — public
//! keys, certificates, shares — is accepted only where a device key vouches for it (the SA
//! key's certificate, the CSS key's signature inside a share) or a fingerprint pinned out
//! of band matches (the SA key's, read out by the SA operator; the CSS and CSR keys',
//! confirmed at 2b/3b).

use mkclone_backend::{
    Certificate, CloneableKind, PatternAlgorithm, PublicKeyHash, PublicKeyToken,
    VerificationPattern,
};
use mkclone_formats::pka::{CertificateSection, PublicKeyTokenView, registration_hash};

use crate::dbs::{CsrDb, SaDb, ShareBundle};
use crate::failure::{CeremonyError, Result};
use crate::plan::{Plan, PlanNode};

/// The SA public key's fingerprint as pinned in the plan (`sa_fingerprint`) or given on
/// the command line (`--sa-fingerprint`): the SHA-256 registration hash of its
/// certificate section, all 64 hex digits.
#[derive(Clone, PartialEq, Eq)]
pub struct SaFingerprint([u8; 32]);

impl SaFingerprint {
    /// Parse 64 hex digits; blanks, `:` and `-` between them are ignored, case too.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let digits: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':' && *c != '-')
            .collect();
        if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "the SA fingerprint is the 64 hexadecimal digits phase 1 printed (spaces allowed); \
                 {} digit(s) were given",
                digits.chars().filter(char::is_ascii_hexdigit).count()
            ));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out).map_err(|e| e.to_string())?;
        Ok(Self(out))
    }

    /// The fingerprint of a registration hash (SHA-256 only: SHA-1 is not accepted as an
    /// anchor).
    pub fn of_hash(hash: &PublicKeyHash) -> Option<Self> {
        <[u8; 32]>::try_from(hash.bytes()).ok().map(Self)
    }

    /// The fingerprint of an SA key's self-signed certificate section.
    pub fn of_certificate(cert: &Certificate) -> Result<Self> {
        let section = CertificateSection::decode(cert).map_err(|e| CeremonyError::Format {
            what: "the SA certificate".into(),
            detail: e.to_string(),
        })?;
        let hash = registration_hash(&section).map_err(|e| CeremonyError::Format {
            what: "the SA certificate".into(),
            detail: e.to_string(),
        })?;
        Self::of_hash(&hash).ok_or_else(|| CeremonyError::Format {
            what: "the SA certificate".into(),
            detail: "its registration hash is not SHA-256".into(),
        })
    }

    /// The fingerprint of an SA public-key token as the SA node returns it.
    pub fn of_token(token: &PublicKeyToken) -> Result<Self> {
        let section = PublicKeyTokenView::decode(token)
            .map_err(|e| CeremonyError::Format {
                what: "the SA public-key token".into(),
                detail: e.to_string(),
            })?
            .certificate
            .ok_or_else(|| CeremonyError::Format {
                what: "the SA public-key token".into(),
                detail: "it carries no certificate section".into(),
            })?;
        let cert = section.encode().map_err(|e| CeremonyError::Format {
            what: "the SA certificate".into(),
            detail: e.to_string(),
        })?;
        Self::of_certificate(&cert)
    }

    /// Upper-case hex in groups of four, as phase 1 prints it.
    pub fn grouped(&self) -> String {
        mkclone_backend::grouped_hex(&self.0)
    }

    /// The configuration line that pins it.
    pub fn config_line(&self) -> String {
        format!("sa_fingerprint = \"{}\"", self.grouped())
    }
}

impl std::fmt::Display for SaFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.grouped())
    }
}

impl std::fmt::Debug for SaFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SaFingerprint({})", self.grouped())
    }
}

/// Parse a verification pattern as `status` prints it ("SHA-1 0123456789ABCDEF") or as
/// bare hex (8 bytes: SHA-1 method, the pattern of SYM and ASYM keys; 16 bytes: MDC-4).
pub fn parse_pattern(text: &str) -> std::result::Result<VerificationPattern, String> {
    let text = text.trim();
    let (algorithm, digits) = match text.split_once(char::is_whitespace) {
        Some((name, rest)) => {
            let algorithm = match name.to_ascii_uppercase().as_str() {
                "SHA-1" | "SHA1" => PatternAlgorithm::Sha1Method,
                "MDC-4" | "MDC4" => PatternAlgorithm::Mdc4,
                "SHA-256" | "SHA256" => PatternAlgorithm::Sha256Method,
                other => {
                    return Err(format!(
                        "unknown pattern algorithm {other:?}: use SHA-1, MDC-4 or SHA-256"
                    ));
                }
            };
            (Some(algorithm), rest)
        }
        None => (None, text),
    };
    let digits: String = digits.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = hex::decode(&digits)
        .map_err(|_| format!("{text:?} is not a verification pattern in hexadecimal"))?;
    let algorithm = algorithm.unwrap_or(if bytes.len() == 16 {
        PatternAlgorithm::Mdc4
    } else {
        PatternAlgorithm::Sha1Method
    });
    VerificationPattern::new(algorithm, &bytes).map_err(|e| e.to_string())
}

/// Where the source pattern a target confirms before SET comes from (shown in the
/// journal and the report).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatternAuthority {
    /// The plan's `source_patterns`, read out by the source's operator.
    Plan,
    /// The pattern the source's CSS key signed inside every share, which the target's
    /// device compared with the rebuilt key before loading NEW.
    SignedShares,
}

impl PatternAuthority {
    /// What a target confirms its NEW `kind` key against under `plan`.
    pub fn of(plan: &Plan, kind: CloneableKind) -> Self {
        if plan.source_pattern(kind).is_some() {
            Self::Plan
        } else {
            Self::SignedShares
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::SignedShares => "signed-shares",
        }
    }
}

fn refused(
    file: &str,
    field: &str,
    found: impl std::fmt::Display,
    plan: impl std::fmt::Display,
) -> CeremonyError {
    CeremonyError::UntrustedFile {
        file: file.into(),
        detail: format!(
            "{field} is {found}, the plan says {plan}: the file was changed or belongs to another ceremony. \
             Nothing was changed on any node; get the file again from the node that wrote it"
        ),
    }
}

fn same_node(
    file: &str,
    field: &str,
    found: &str,
    eid_field: &str,
    found_eid: &mkclone_backend::Eid,
    plan: &PlanNode,
) -> Result<()> {
    if found != plan.name {
        return Err(refused(
            file,
            field,
            format!("{found:?}"),
            format!("{:?}", plan.name),
        ));
    }
    if found_eid != &plan.eid {
        return Err(refused(
            file,
            eid_field,
            format!("{:?}", found_eid.as_str()),
            format!("{:?}", plan.eid.as_str()),
        ));
    }
    Ok(())
}

/// Hold `sa.db` to the plan and the anchor: its SA entry names the plan's SA node, its
/// recorded hash is its certificate's, that certificate is the pinned key, and its CSS entry
/// names the plan's source, with a certificate (when present) for that very key.
pub fn check_sa_db(plan: &Plan, db: &SaDb, anchor: Option<&SaFingerprint>) -> Result<()> {
    let file = "sa.db";
    same_node(file, "sa_node", &db.sa_node, "sa_eid", &db.sa_eid, &plan.sa)?;
    let computed = SaFingerprint::of_certificate(&db.sa_certificate)?;
    // Self-signed by the SA key: the signature covers what the hash does not.
    let section =
        CertificateSection::decode(&db.sa_certificate).map_err(|e| CeremonyError::Format {
            what: "sa.db: the SA certificate".into(),
            detail: e.to_string(),
        })?;
    section
        .verify(&plan.sa_label(), &section.key)
        .map_err(|e| CeremonyError::UntrustedFile {
            file: file.into(),
            detail: format!(
                "its SA certificate's self-signature does not verify ({e}): the file was changed. Nothing was \
                 changed on any node; get sa.db again from the SA node"
            ),
        })?;
    if SaFingerprint::of_hash(&db.sa_hash).as_ref() != Some(&computed) {
        return Err(CeremonyError::UntrustedFile {
            file: file.into(),
            detail: "its sa_hash is not the hash of its SA certificate: the file was changed. \
                     Nothing was changed on any node; get sa.db again from the SA node"
                .into(),
        });
    }
    if let Some(anchor) = anchor
        && anchor != &computed
    {
        return Err(CeremonyError::SaKeyNotPinned {
            pinned: anchor.grouped(),
            found: computed.grouped(),
        });
    }
    if let Some(css) = &db.css {
        same_node(
            file,
            "css.node",
            &css.node,
            "css.eid",
            &css.eid,
            &plan.source,
        )?;
        if let Some(cert) = &css.certificate {
            certificate_names(
                file,
                "css.certificate",
                cert,
                &css.public_key,
                &plan.source,
                &plan.css_label(),
            )?;
            issued_by_sa(file, "css.certificate", cert, plan, &section.key)?;
        }
    }
    Ok(())
}

/// A certificate in a carried file must be for the public key beside it and name the
/// planned node (EID; serial when the plan pins one). Its signature is checked by the
/// caller, under the anchored SA key.
fn certificate_names(
    file: &str,
    field: &str,
    cert: &Certificate,
    key: &PublicKeyToken,
    node: &PlanNode,
    signer: &mkclone_backend::KeyLabel,
) -> Result<()> {
    let format = |e: mkclone_formats::FormatError| CeremonyError::Format {
        what: format!("{file}: {field}"),
        detail: e.to_string(),
    };
    let section = CertificateSection::decode(cert).map_err(format)?;
    let view = PublicKeyTokenView::decode(key).map_err(format)?;
    self_signed(file, field, &view, signer)?;
    if section.key != view.key {
        return Err(CeremonyError::UntrustedFile {
            file: file.into(),
            detail: format!(
                "{field} certifies another key than the public key beside it: the file was changed. \
                 Nothing was changed on any node"
            ),
        });
    }
    if section.info.eid.as_ref() != Some(&node.eid) {
        return Err(refused(
            file,
            &format!("the EID {field} names"),
            format!("{:?}", section.info.eid.as_ref().map(|e| e.as_str())),
            format!("{:?}", node.eid.as_str()),
        ));
    }
    if let Some(serial) = &node.expect_serial
        && section.info.serial.as_ref() != Some(serial)
    {
        return Err(refused(
            file,
            &format!("the serial {field} names"),
            format!("{:?}", section.info.serial.as_ref().map(|s| s.as_str())),
            format!("{:?}", serial.as_str()),
        ));
    }
    Ok(())
}

/// A public-key token's own certificate section, when it carries one, is signed by the
/// key itself (its node made it so): any edit of it is refused.
pub fn self_signed(
    file: &str,
    field: &str,
    view: &PublicKeyTokenView,
    signer: &mkclone_backend::KeyLabel,
) -> Result<()> {
    if let Some(own) = &view.certificate {
        own.verify(signer, &view.key)
            .map_err(|e| CeremonyError::UntrustedFile {
                file: file.into(),
                detail: format!(
                    "the public key beside {field} is not self-signed as its node made it ({e}): the file was \
                     changed. Nothing was changed on any node"
                ),
            })?;
    }
    Ok(())
}

/// A certificate must verify under the (anchored) SA key.
pub fn issued_by_sa(
    file: &str,
    field: &str,
    cert: &Certificate,
    plan: &Plan,
    sa_key: &mkclone_formats::pka::RsaPublicKey,
) -> Result<()> {
    let section = CertificateSection::decode(cert).map_err(|e| CeremonyError::Format {
        what: format!("{file}: {field}"),
        detail: e.to_string(),
    })?;
    section
        .verify(&plan.sa_label(), sa_key)
        .map_err(|e| CeremonyError::UntrustedFile {
            file: file.into(),
            detail: format!(
                "{field} does not verify under the SA key ({e}): the file was changed or certified by another SA. \
                 Nothing was changed on any node"
            ),
        })
}

/// Hold a `<target>.csr.db` to the plan: it names the target its file name says, with the
/// planned EID, and a certificate (when present) for its own key naming that target.
pub fn check_csr_db(plan: &Plan, target: &PlanNode, db: &CsrDb) -> Result<()> {
    let file = format!("{}.csr.db", target.name);
    same_node(&file, "target", &db.target, "eid", &db.eid, target)?;
    if let Some(cert) = &db.certificate {
        certificate_names(
            &file,
            "certificate",
            cert,
            &db.public_key,
            target,
            &plan.csr_label(),
        )?;
    }
    Ok(())
}

/// Hold a share bundle to the plan: the target, kind and index its file name says, the
/// plan's source, EIDs, a planned index, and a sealed header that agrees with all of it.
/// `source_patterns` from the plan, when given, must be what the bundle claims.
pub fn check_bundle(
    plan: &Plan,
    target: &PlanNode,
    kind: CloneableKind,
    index: mkclone_backend::ShareIndex,
    b: &ShareBundle,
) -> Result<()> {
    let file = format!(
        "shares/{}",
        crate::dbs::bundle_name(&target.name, kind, index)
    );
    same_node(
        &file,
        "target",
        &b.target,
        "target_eid",
        &b.target_eid,
        target,
    )?;
    same_node(
        &file,
        "source",
        &b.source,
        "source_eid",
        &b.source_eid,
        &plan.source,
    )?;
    if b.kind != kind || !plan.kinds.contains(&b.kind) {
        return Err(refused(&file, "kind", b.kind, kind));
    }
    if b.index != index || !plan.share_indices.contains(&b.index) {
        return Err(refused(&file, "index", b.index.get(), index.get()));
    }
    let parts = mkclone_formats::seal::SealedShareParts::decode(&b.sealed).map_err(|e| {
        CeremonyError::UntrustedFile {
            file: file.clone(),
            detail: format!("its sealed share does not decode ({e})"),
        }
    })?;
    let h = &parts.header;
    if h.kind != kind
        || h.index != index
        || h.target_eid != target.eid
        || h.origin_eid != plan.source.eid
    {
        return Err(CeremonyError::UntrustedFile {
            file,
            detail: "the sealed share's header (kind, index, target EID, origin EID) disagrees with the plan: \
                     the file was changed or made for another ceremony. Nothing was changed on any node"
                .into(),
        });
    }
    if let Some(expected) = plan.source_pattern(kind)
        && expected != &b.source_pattern
    {
        return Err(refused(
            &file,
            "source_pattern",
            &b.source_pattern,
            expected,
        ));
    }
    Ok(())
}
