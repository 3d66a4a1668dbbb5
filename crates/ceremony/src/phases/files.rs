//! The ceremony's files as the phases read and write them: sa.db held to the anchor, csr.db
//! and bundles held to the plan and this run of the ceremony.

use super::*;

// ----------------------------------------------------------------------------------------
// Files
// ----------------------------------------------------------------------------------------

pub fn read_sa_db(c: &Ceremony) -> Result<SaDb> {
    let path = c.layout.sa_db();
    dbs::read_optional(&path, SA_DB_FORMAT, &c.plan)?.ok_or_else(|| CeremonyError::MissingFile {
        path,
        made_by: format!("phase 1 on the SA node ({})", c.plan.sa.name),
        hint: "Run phase 1 there, or copy sa.db from the SA node into this ceremony directory"
            .into(),
    })
}

/// `sa.db`, held to the plan and to the pinned SA key (refused without a pin: `command`
/// names what needs it). Every other file's trust derives from this one.
pub fn trusted_sa_db(c: &Ceremony, command: &str) -> Result<SaDb> {
    let db = read_sa_db(c)?;
    let Some(anchor) = c.sa_anchor() else {
        return Err(CeremonyError::SaAnchorMissing {
            command: command.into(),
            shown: String::new(),
        });
    };
    trust::check_sa_db(&c.plan, &db, Some(&anchor))?;
    Ok(db)
}

/// On the SA node (2b, 3b): the SA key the node retains is the anchor; sa.db must hold it.
pub(super) fn anchor_from_sa_node(c: &mut Ceremony, sa: &mut dyn Backend) -> Result<()> {
    let name = c.plan.sa.name.clone();
    let token = sa
        .retained_public_key(&c.plan.sa_label())
        .map_err(CeremonyError::backend(&name, "read the SA public key"))?
        .ok_or_else(|| CeremonyError::Conflict {
            what: format!("{name}: the SA key {}", c.plan.sa_label()),
            detail: "is not on this node: run phase 1 here".into(),
        })?;
    c.set_sa_fingerprint(SaFingerprint::of_token(&token)?)
}

/// A carried file must come from this run of the ceremony (its nonce is sa.db's).
pub(super) fn check_nonce(c: &Ceremony, file: &std::path::Path, p: &dbs::Provenance) -> Result<()> {
    match c.nonce() {
        Some(n) if n != p.nonce => Err(CeremonyError::UntrustedFile {
            file: file.display().to_string(),
            detail: format!(
                "it carries ceremony nonce {}, this ceremony's (sa.db's) is {n}: it comes from another run \
                 of a ceremony with this id. Nothing was changed on any node",
                p.nonce
            ),
        }),
        _ => Ok(()),
    }
}

/// A target's csr.db, held to the plan and to this run of the ceremony.
pub(super) fn trusted_csr_db(c: &Ceremony, target: &str) -> Result<CsrDb> {
    let plan_node = plan_target(c, target)?;
    let db = read_csr_db(c, target)?;
    check_nonce(c, &c.layout.csr_db(target), &db.provenance)?;
    trust::check_csr_db(&c.plan, &plan_node, &db)?;
    Ok(db)
}

/// Stamp `db` with `phase`'s mark on `node` and write it as this ceremony's sa.db.
pub(super) fn write_sa_db(c: &Ceremony, db: &mut SaDb, phase: Phase, node: &str) -> Result<()> {
    c.stamp(db, phase, node)?;
    put_file(
        c,
        &c.layout.sa_db(),
        SA_DB_FORMAT,
        db,
        Sensitivity::Public,
        Put::Replace,
    )
}

/// Write `body` as this ceremony's `format` file at `path`, put there as `put` says.
pub(super) fn put_file<T: serde::Serialize + serde::de::DeserializeOwned>(
    c: &Ceremony,
    path: &std::path::Path,
    format: &str,
    body: &T,
    sensitivity: Sensitivity,
    put: Put,
) -> Result<()> {
    let (id, rehearsal) = (&c.plan.id, c.plan.rehearsal);
    Ok(dbs::write(
        path,
        format,
        id,
        rehearsal,
        body,
        sensitivity,
        put,
    )?)
}

pub fn read_csr_db(c: &Ceremony, target: &str) -> Result<CsrDb> {
    let path = c.layout.csr_db(target);
    dbs::read_optional(&path, CSR_DB_FORMAT, &c.plan)?.ok_or_else(|| CeremonyError::MissingFile {
        path,
        made_by: format!("phase 3a on the target {target}"),
        hint: "Run phase 3a there, or copy the file from the target into this ceremony directory"
            .into(),
    })
}

pub(super) fn write_csr_db(c: &Ceremony, db: &CsrDb) -> Result<()> {
    let path = c.layout.csr_db(&db.target);
    put_file(
        c,
        &path,
        CSR_DB_FORMAT,
        db,
        Sensitivity::Public,
        Put::Replace,
    )
}

pub(super) fn sa_key(db: &SaDb) -> Result<RsaPublicKey> {
    Ok(CertificateSection::decode(&db.sa_certificate)
        .map_err(format_err("sa.db: the SA certificate"))?
        .key)
}

/// Decode a certificate issued by SA and check it verifies under the SA key in `sa.db`.
pub(super) fn verify_issued(
    c: &Ceremony,
    db: &SaDb,
    cert: &Certificate,
    what: &str,
) -> Result<CertificateSection> {
    let section = CertificateSection::decode(cert).map_err(format_err(what))?;
    section
        .verify(&c.plan.sa_label(), &sa_key(db)?)
        .map_err(|e| CeremonyError::Format {
            what: what.into(),
            detail: format!("does not verify under the SA key in sa.db: {e}"),
        })?;
    Ok(section)
}
