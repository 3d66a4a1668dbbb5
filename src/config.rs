//! The ceremony configuration: one TOML file naming the nodes (each with its backend) and
//! the plan.
//!
//! ```toml
//! [ceremony]
//! id = "2026-Q4"                  # names the ceremony's files and key labels
//! directory = "ceremony"          # relative to this file
//! sa = "sa"
//! source = "source"
//! targets = ["target1", "target2"]
//! master_keys = ["sym", "asym"]
//! threshold = 3                   # m
//! shares = 5                      # n
//!
//! [nodes.source]
//! backend = "sim"
//! sim_dir = "cards"               # the simulated machine: one file per card
//! apqn = "02.000d"
//! eid = "SOURCE NODE"
//! ```
//!
//! Unknown keys are refused with their name and line. A plan that mixes simulated nodes
//! with any other backend is a rehearsal and is refused unless it says
//! `rehearsal = true` (docs/ARCHITECTURE.md, "Rehearsal and production").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mkclone_backend::{CloneableKind, DomainError, Eid, MofN, RsaModulusBits, SerialNumber};
use mkclone_hw_sim::Apqn;
use serde::Deserialize;
use thiserror::Error;

/// What can be wrong with a configuration file.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// `at`: the line and column of the value (or table) at fault, when the file has it.
    #[error("configuration file {path}{}: {message}", line_column(.at))]
    Invalid {
        path: PathBuf,
        message: String,
        at: Option<(usize, usize)>,
    },
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ceremony: RawPlan,
    nodes: BTreeMap<String, RawNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    id: String,
    #[serde(default = "default_directory")]
    directory: PathBuf,
    sa: String,
    source: String,
    targets: Vec<String>,
    master_keys: Vec<String>,
    threshold: u8,
    shares: u8,
    #[serde(default)]
    key_bits: Option<u16>,
    #[serde(default)]
    rehearsal: bool,
    /// Register the SA key only through the two dual-control commands (default true).
    #[serde(default)]
    dual_control: Option<bool>,
    /// Which share indices each target receives (default 1..=threshold).
    #[serde(default)]
    share_indices: Option<Vec<u8>>,
    /// The SA key's fingerprint as phase 1 printed it: the ceremony's trust anchor.
    #[serde(default)]
    sa_fingerprint: Option<String>,
    /// The source's CURRENT verification patterns by master key ("sym" = "SHA-1 0123…"),
    /// read out by the source's operator: what targets confirm before SET.
    #[serde(default)]
    source_patterns: Option<BTreeMap<String, String>>,
}

fn default_directory() -> PathBuf {
    PathBuf::from("ceremony")
}

#[derive(Debug, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
enum RawNode {
    Sim(RawSimNode),
    Zcrypt(RawZcryptNode),
    Pkcs11(RawPkcs11Node),
    Cca(RawCcaNode),
}

/// `backend = "cca"`: a coprocessor through IBM's CCA host library (crates/hostlib).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCcaNode {
    #[serde(default)]
    library: Option<PathBuf>,
    #[serde(default)]
    mk_library: Option<PathBuf>,
    /// "CRP01" or 1.
    #[serde(default)]
    adapter: Option<String>,
    #[serde(default)]
    expect_serial: Option<String>,
    #[serde(default)]
    domain: Option<u16>,
    #[serde(default)]
    trace: Option<PathBuf>,
    /// The role the dry run's access-control audit reads (default DEFAULT).
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    eid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPkcs11Node {
    /// The module's path, or a `pkcs11:` URI with `module-path` (or in `token`'s URI).
    #[serde(default)]
    module: Option<String>,
    /// The token's label, or a `pkcs11:` URI (RFC 7512; mkclone_pkcs11's config.rs says
    /// what each attribute means).
    token: String,
    #[serde(default)]
    expect_token_serial: Option<String>,
    /// `{ env = "VAR" }`, `{ file = "path" }` or `"prompt"`; never the PIN itself (or
    /// `pin-source=file:/path` in `token`'s URI).
    #[serde(default)]
    pin: Option<mkclone_pkcs11::PinSource>,
    /// The security officer's PIN, in the same forms: the source's share export needs it.
    #[serde(default)]
    so_pin: Option<mkclone_pkcs11::PinSource>,
    #[serde(default)]
    eid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZcryptNode {
    apqn: String,
    #[serde(default)]
    device: Option<PathBuf>,
    #[serde(default)]
    expect_serial: Option<String>,
    /// The EID the node must carry when it takes part in the ceremony.
    #[serde(default)]
    eid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimNode {
    sim_dir: PathBuf,
    apqn: String,
    eid: String,
    #[serde(default)]
    serial: Option<String>,
    /// The serial the card must report (identity pinning).
    #[serde(default)]
    expect_serial: Option<String>,
}

/// A node's backend and where to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeBackend {
    /// A simulated card: `<sim_dir>/card-<apqn>.json`.
    Sim {
        sim_dir: PathBuf,
        apqn: Apqn,
        serial: Option<SerialNumber>,
    },
    /// A real Crypto Express coprocessor domain through the Linux zcrypt driver.
    Zcrypt(crate::zcrypt::ZcryptNodeConfig),
    /// A PKCS#11 token, found by label in a module (boxed: it is the largest by far).
    Pkcs11(Box<mkclone_pkcs11::Pkcs11NodeConfig>),
    /// A coprocessor through IBM's CCA host library, loaded at run time.
    Cca(mkclone_hostlib::HostlibNodeConfig),
}

impl NodeBackend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sim { .. } => "sim",
            Self::Zcrypt(_) => "zcrypt",
            Self::Pkcs11(_) => "pkcs11",
            Self::Cca(_) => "cca",
        }
    }

    /// The device this backend reaches, in words: two nodes may not name the same one.
    pub fn device(&self) -> String {
        match self {
            Self::Sim { sim_dir, apqn, .. } => {
                format!("sim card {apqn} in {}", sim_dir.display())
            }
            Self::Zcrypt(z) => format!("coprocessor {}", z.apqn),
            // A pinned serial names the token whatever module reaches it.
            Self::Pkcs11(t) => match &t.expect_token_serial {
                Some(serial) => format!("token {:?} with serial {}", t.token, serial.trim()),
                None => format!("token {:?} of {}", t.token, t.module.display()),
            },
            Self::Cca(c) => format!(
                "CCA adapter {} of {}",
                c.expect_serial
                    .as_ref()
                    .map(|s| format!("with serial {s}"))
                    .or_else(|| c.adapter.map(|a| format!("CRP{a:02}")))
                    .unwrap_or_default(),
                c.library
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "libcsulcca.so".into())
            ),
        }
    }
}

/// One configured node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    /// The EID the node must carry (required for the nodes of the plan).
    pub eid: Option<Eid>,
    pub backend: NodeBackend,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub plan: mkclone_ceremony::Plan,
    /// Where the ceremony's files live (absolute or relative to the working directory).
    pub directory: PathBuf,
    pub nodes: BTreeMap<String, NodeConfig>,
    /// Lowercase hex SHA-256 of the file's bytes as read: journaled at the start of each
    /// run (`run-start`) and printed in the report.
    pub sha256: String,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: parse_message(&e, text),
        })?;
        // A value error names the key path it is about; the file gives its line and column.
        let document = toml::de::DeTable::parse(text).ok();
        let invalid_at = |keys: &[&str], message: String| ConfigError::Invalid {
            path: path.into(),
            message,
            at: document
                .as_ref()
                .and_then(|d| locate(d.get_ref(), keys))
                .map(|offset| line_and_column(text, offset)),
        };
        let invalid = |message: String| invalid_at(&[], message);
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));

        let mut nodes = BTreeMap::new();
        let mut pins = BTreeMap::new();
        for (name, node) in raw.nodes {
            let apqn_of = |text: &str| -> Result<Apqn, ConfigError> {
                text.parse().map_err(|e| {
                    invalid_at(
                        &["nodes", &name, "apqn"],
                        format!("[nodes.{name}] apqn: {e}"),
                    )
                })
            };
            let serial_of =
                |text: Option<&str>, key: &str| -> Result<Option<SerialNumber>, ConfigError> {
                    text.map(SerialNumber::new).transpose().map_err(|e| {
                        invalid_at(&["nodes", &name, key], format!("[nodes.{name}] {key}: {e}"))
                    })
                };
            let eid_of = |text: Option<&str>| -> Result<Option<Eid>, ConfigError> {
                text.map(Eid::new).transpose().map_err(|e| {
                    invalid_at(&["nodes", &name, "eid"], format!("[nodes.{name}] eid: {e}"))
                })
            };
            let (eid, backend) = match node {
                RawNode::Sim(sim) => {
                    let backend = NodeBackend::Sim {
                        sim_dir: base.join(&sim.sim_dir),
                        apqn: apqn_of(&sim.apqn)?,
                        serial: serial_of(sim.serial.as_deref(), "serial")?,
                    };
                    if let Some(pin) = serial_of(sim.expect_serial.as_deref(), "expect_serial")? {
                        pins.insert(name.clone(), pin);
                    }
                    (eid_of(Some(&sim.eid))?, backend)
                }
                RawNode::Zcrypt(z) => {
                    let mut cfg = crate::zcrypt::ZcryptNodeConfig::new(apqn_of(&z.apqn)?);
                    cfg.device = z.device;
                    cfg.expect_serial = serial_of(z.expect_serial.as_deref(), "expect_serial")?;
                    if let Some(pin) = &cfg.expect_serial {
                        pins.insert(name.clone(), pin.clone());
                    }
                    cfg.validate().map_err(|e| {
                        invalid_at(&["nodes", &name], format!("[nodes.{name}] {e}"))
                    })?;
                    (eid_of(z.eid.as_deref())?, NodeBackend::Zcrypt(cfg))
                }
                RawNode::Pkcs11(t) => {
                    // A PIN file named relative to the configuration file.
                    let relative = |source| match source {
                        mkclone_pkcs11::PinSource::File(f) => {
                            mkclone_pkcs11::PinSource::File(base.join(f))
                        }
                        other => other,
                    };
                    let cfg = mkclone_pkcs11::Pkcs11NodeConfig::from_fields(
                        t.module.as_deref(),
                        &t.token,
                        t.expect_token_serial,
                        t.pin.map(relative),
                        t.so_pin.map(relative),
                    )
                    .map_err(|e| {
                        let field = match &e {
                            mkclone_pkcs11::Pkcs11Error::Config { field, .. } => *field,
                            _ => "token",
                        };
                        invalid_at(&["nodes", &name, field], format!("[nodes.{name}] {e}"))
                    })?;
                    (
                        eid_of(t.eid.as_deref())?,
                        NodeBackend::Pkcs11(Box::new(cfg)),
                    )
                }
                RawNode::Cca(c) => {
                    let adapter = c
                        .adapter
                        .as_deref()
                        .map(|a| {
                            a.trim_start_matches("CRP").parse::<u8>().ok().filter(|n| *n > 0).ok_or_else(|| {
                                invalid(format!(
                                    "[nodes.{name}] adapter: {a:?} is not an adapter name; write \"CRP01\" (or 1)"
                                ))
                            })
                        })
                        .transpose()?;
                    let cfg = mkclone_hostlib::HostlibNodeConfig {
                        library: c.library.map(|l| {
                            if l.components().count() > 1 {
                                base.join(l)
                            } else {
                                l
                            }
                        }),
                        mk_library: c.mk_library.map(|l| {
                            if l.components().count() > 1 {
                                base.join(l)
                            } else {
                                l
                            }
                        }),
                        adapter,
                        expect_serial: serial_of(c.expect_serial.as_deref(), "expect_serial")?,
                        domain: c.domain,
                        trace: c.trace.map(|t| base.join(t)),
                        role: c.role,
                    };
                    if cfg.adapter.is_none() && cfg.expect_serial.is_none() {
                        return Err(invalid(format!(
                            "[nodes.{name}] names no card: add `expect_serial = \"...\"` (selects the adapter with that serial) or `adapter = \"CRP01\"`"
                        )));
                    }
                    if let Some(pin) = &cfg.expect_serial {
                        pins.insert(name.clone(), pin.clone());
                    }
                    (eid_of(c.eid.as_deref())?, NodeBackend::Cca(cfg))
                }
            };
            nodes.insert(name.clone(), NodeConfig { name, eid, backend });
        }

        // One device, one node name: a role shared by one device (SA + source, say) names
        // the same node twice in the plan, not two nodes for one device.
        let mut devices: BTreeMap<String, &str> = BTreeMap::new();
        for n in nodes.values() {
            let id = n.backend.device();
            if let Some(other) = devices.insert(id.clone(), &n.name) {
                return Err(invalid_at(
                    &["nodes", &n.name],
                    format!(
                        "[nodes.{other}] and [nodes.{}] are the same device ({id}): keep one node and name it in every role it plays",
                        n.name
                    ),
                ));
            }
        }
        let p = raw.ceremony;
        let known = |role: &str, name: &str| -> Result<(), ConfigError> {
            if nodes.contains_key(name) {
                Ok(())
            } else {
                Err(invalid_at(
                    &["ceremony", role],
                    format!(
                        "[ceremony] {role} = {name:?} names no node; define [nodes.{name}] or fix the name (nodes: {})",
                        nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };
        known("sa", &p.sa)?;
        known("source", &p.source)?;
        if p.targets.is_empty() {
            return Err(invalid_at(
                &["ceremony", "targets"],
                "[ceremony] targets is empty: name at least one target node".into(),
            ));
        }
        for t in &p.targets {
            known("targets", t)?;
            if *t == p.source {
                return Err(invalid_at(
                    &["ceremony", "targets"],
                    format!("[ceremony] {t:?} is both the source and a target"),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &p.targets {
            if !seen.insert(t) {
                return Err(invalid_at(
                    &["ceremony", "targets"],
                    format!("[ceremony] target {t:?} is named twice"),
                ));
            }
        }
        let m_of_n = MofN::new(p.threshold, p.shares).map_err(|e| {
            invalid_at(
                &["ceremony", "threshold"],
                format!("[ceremony] threshold/shares: {e}"),
            )
        })?;
        if p.master_keys.is_empty() {
            return Err(invalid_at(
                &["ceremony", "master_keys"],
                "[ceremony] master_keys is empty: use [\"sym\"], [\"asym\"] or both".into(),
            ));
        }
        let mut kinds = Vec::new();
        for k in &p.master_keys {
            let kind = CloneableKind::parse(k).map_err(|e| {
                invalid_at(
                    &["ceremony", "master_keys"],
                    format!("[ceremony] master_keys: {e}"),
                )
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        let bits =
            RsaModulusBits::from_bits(p.key_bits.unwrap_or(2048)).map_err(|e: DomainError| {
                invalid_at(
                    &["ceremony", "key_bits"],
                    format!("[ceremony] key_bits: {e}"),
                )
            })?;
        let indices = match p.share_indices {
            None => (1..=m_of_n.m()).collect::<Vec<u8>>(),
            Some(list) => list,
        };
        let share_indices =
            mkclone_ceremony::plan::share_indices(&indices, m_of_n).map_err(|e| {
                invalid_at(
                    &["ceremony", "share_indices"],
                    format!("[ceremony] share_indices: {e}"),
                )
            })?;

        let sa_fingerprint = p
            .sa_fingerprint
            .as_deref()
            .map(mkclone_ceremony::trust::SaFingerprint::parse)
            .transpose()
            .map_err(|e| {
                invalid_at(
                    &["ceremony", "sa_fingerprint"],
                    format!("[ceremony] sa_fingerprint: {e}"),
                )
            })?;
        let mut source_patterns = Vec::new();
        for (k, text) in p.source_patterns.unwrap_or_default() {
            let kind = CloneableKind::parse(&k).map_err(|e| {
                invalid_at(
                    &["ceremony", "source_patterns", &k],
                    format!("[ceremony] source_patterns: {e}"),
                )
            })?;
            if !kinds.contains(&kind) {
                return Err(invalid_at(
                    &["ceremony", "source_patterns", &k],
                    format!("[ceremony] source_patterns names {k:?}, which is not in master_keys"),
                ));
            }
            let pattern = mkclone_ceremony::trust::parse_pattern(&text).map_err(|e| {
                invalid_at(
                    &["ceremony", "source_patterns", &k],
                    format!("[ceremony] source_patterns.{k}: {e}"),
                )
            })?;
            source_patterns.push((kind, pattern));
        }

        // The rehearsal rule: simulated nodes keep keys in plain files.
        let backends: std::collections::BTreeSet<&str> =
            nodes.values().map(|n| n.backend.name()).collect();
        let any_sim = backends.contains("sim");
        let mixed = any_sim && backends.len() > 1;
        if mixed && !p.rehearsal {
            return Err(invalid(
                "this plan mixes simulated nodes (keys in plain files) with other backends: that is a rehearsal. \
                 Add `rehearsal = true` to [ceremony] to run it as one, or replace the simulated nodes"
                    .into(),
            ));
        }
        let rehearsal = p.rehearsal || any_sim;

        let eid_of = |name: &str| nodes.get(name).and_then(|n| n.eid.clone());
        for role in std::iter::once(&p.sa)
            .chain(std::iter::once(&p.source))
            .chain(p.targets.iter())
        {
            if eid_of(role).is_none() {
                return Err(invalid_at(
                    &["nodes", role],
                    format!(
                        "[nodes.{role}] takes part in the ceremony and needs `eid = \"...\"` (the Environment ID it must carry)"
                    ),
                ));
            }
        }
        let plan = mkclone_ceremony::Plan::new(mkclone_ceremony::PlanSpec {
            id: p.id,
            sa: (
                p.sa.clone(),
                eid_of(&p.sa).ok_or_else(|| invalid("sa node missing".into()))?,
            ),
            source: (
                p.source.clone(),
                eid_of(&p.source).ok_or_else(|| invalid("source node missing".into()))?,
            ),
            targets: p
                .targets
                .iter()
                .map(|t| {
                    Ok((
                        t.clone(),
                        eid_of(t).ok_or_else(|| invalid(format!("target {t} missing")))?,
                    ))
                })
                .collect::<Result<_, ConfigError>>()?,
            kinds,
            m_of_n,
            bits,
            rehearsal,
            share_indices,
            dual_control: p.dual_control.unwrap_or(true),
            pinned_serials: pins,
            sa_fingerprint,
            source_patterns,
        })
        .map_err(|e| invalid_at(&["ceremony"], format!("[ceremony] {e}")))?;

        Ok(Self {
            path: path.into(),
            plan,
            directory: base.join(p.directory),
            nodes,
            sha256: mkclone_ceremony::host::config_sha256(text.as_bytes()),
        })
    }

    pub fn node(&self, name: &str) -> Result<&NodeConfig, ConfigError> {
        self.nodes.get(name).ok_or_else(|| ConfigError::Invalid {
            path: self.path.clone(),
            message: format!(
                "no node named {name:?} (nodes: {})",
                self.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            at: None,
        })
    }
}

/// `:LINE:COLUMN` for an error's location, or nothing.
fn line_column(at: &Option<(usize, usize)>) -> String {
    at.map(|(line, column)| format!(":{line}:{column}"))
        .unwrap_or_default()
}

/// The byte offset of the value at `keys` in `table` (of the table itself for a key path
/// naming one, e.g. `[nodes.x]`); the deepest key found when the path goes further.
/// A parse error as the user reads it: the toml crate's text, which quotes the line at
/// fault, except where that line may hold a PIN (a `pin` or `so_pin` that is none of its
/// forms, `PinSource`'s refusal): then its line and column only.
fn parse_message(e: &toml::de::Error, text: &str) -> String {
    let pin_refused = e.message().contains(mkclone_pkcs11::PIN_SOURCE_FORMS);
    match (pin_refused, e.span()) {
        (true, Some(span)) => {
            let (line, column) = line_and_column(text, span.start);
            format!("line {line}, column {column}: {}", e.message())
        }
        (true, None) => e.message().to_string(),
        (false, _) => e.to_string().trim_end().replace('\n', "\n  "),
    }
}

fn locate(table: &toml::de::DeTable<'_>, keys: &[&str]) -> Option<usize> {
    let (first, rest) = keys.split_first()?;
    let (_, value) = table.iter().find(|(k, _)| k.get_ref() == first)?;
    let nested = match value.get_ref() {
        toml::de::DeValue::Table(inner) => locate(inner, rest),
        _ => None,
    };
    nested.or(Some(value.span().start))
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}
