//! `mkclone sim init`: simulated cards for a rehearsal.

use std::path::Path;

use std::fmt;
use std::path::PathBuf;

use mkclone_backend::{CloneableKind, CurrentState};
use serde::Serialize;

use super::output::{Failure, print_json};
use mkclone::config::{Config, NodeBackend};
use mkclone::nodes;

/// What `sim init` did, one per node or key (the `mkclone-sim-init` document's `actions`).
#[derive(Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
enum SimAction {
    /// A `backend = "sim"` node's card file.
    SimCard {
        node: String,
        apqn: String,
        directory: PathBuf,
        created: bool,
    },
    /// A `backend = "cca"` node's card on mkclone's simulated host library.
    SimulatedCcaCard {
        node: String,
        serial: String,
        library: String,
        created: bool,
    },
    /// A `backend = "cca"` node on IBM's library: a real card, nothing to create.
    RealCcaCard { node: String, library: String },
    /// A random master key loaded and set on the source (`--load-source-keys`), or left
    /// as is since its CURRENT is valid.
    SourceKey {
        node: String,
        kind: CloneableKind,
        loaded: bool,
    },
}

impl fmt::Display for SimAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |created: bool| if created { "created" } else { "exists" };
        match self {
            Self::SimCard {
                node,
                apqn,
                directory,
                created,
            } => write!(
                f,
                "{node:<10} simulated card {apqn} in {}: {}",
                directory.display(),
                word(*created)
            ),
            Self::SimulatedCcaCard {
                node,
                serial,
                library,
                created,
            } => write!(
                f,
                "{node:<10} simulated CCA card {serial} on mkclone's simulated host library {library}: {}",
                word(*created)
            ),
            Self::RealCcaCard { node, library } => write!(
                f,
                "{node:<10} CCA adapter through IBM's host library {library}: a real card, nothing to create"
            ),
            Self::SourceKey {
                node,
                kind,
                loaded: true,
            } => write!(f, "{node:<10} random {kind} master key loaded and set"),
            Self::SourceKey { node, kind, .. } => {
                write!(f, "{node:<10} {kind} CURRENT already valid: left as is")
            }
        }
    }
}

/// Where `sim init` says what it did: a line each as it goes, or (`--json`) one document
/// at the end.
struct Said {
    json: bool,
    actions: Vec<SimAction>,
}

impl Said {
    fn say(&mut self, action: SimAction) {
        if !self.json {
            println!("{action}");
        }
        self.actions.push(action);
    }
}

/// A `backend = "cca"` node: on mkclone's simulated CCA host library, the card its
/// `expect_serial` names (created as the library's next adapter); on IBM's library
/// nothing, with a line saying so.
fn cca_card(
    name: &str,
    cfg: &mkclone_hostlib::HostlibNodeConfig,
    said: &mut Said,
) -> Result<(), Failure> {
    let library = cfg
        .library
        .as_deref()
        .unwrap_or(std::path::Path::new(
            mkclone_hostlib::library::DEFAULT_LIBRARY,
        ))
        .display()
        .to_string();
    match mkclone_hostlib::create_simulated_card(cfg) {
        Ok(created) => {
            said.say(SimAction::SimulatedCcaCard {
                node: name.to_string(),
                serial: cfg
                    .expect_serial
                    .as_ref()
                    .map(|s| s.as_str())
                    .unwrap_or("")
                    .to_string(),
                library,
                created,
            });
            Ok(())
        }
        Err(mkclone_hostlib::HostlibError::NotSimulated { .. }) => {
            said.say(SimAction::RealCcaCard {
                node: name.to_string(),
                library,
            });
            Ok(())
        }
        Err(e) => Err(Failure::failed(format!("{name}: {e}"))),
    }
}

pub fn init(config_path: &Path, load_source_keys: bool, json: bool) -> Result<(), Failure> {
    let config = Config::load(config_path)?;
    let mut said = Said {
        json,
        actions: Vec::new(),
    };
    for node in config.nodes.values() {
        match &node.backend {
            NodeBackend::Sim { sim_dir, apqn, .. } => {
                let created =
                    nodes::create_sim_card(node).map_err(|e| Failure::failed(e.to_string()))?;
                said.say(SimAction::SimCard {
                    node: node.name.clone(),
                    apqn: apqn.to_string(),
                    directory: sim_dir.clone(),
                    created,
                });
            }
            NodeBackend::Cca(cfg) => cca_card(&node.name, cfg, &mut said)?,
            NodeBackend::Zcrypt(_) | NodeBackend::Pkcs11(_) => {}
        }
    }
    if load_source_keys {
        let source = config.node(&config.plan.source.name)?;
        // `sim` touches simulated nodes only (a sim card, or a cca node on mkclone's
        // simulated host library): a real token or card gets its master key through
        // `master-key random`, journaled, under the plan's dual control. A cca node is
        // opened to ask its library; no other kind is opened (no PIN asked for nothing).
        let refuse = || {
            Failure::usage(format!(
                "--load-source-keys: the source {name:?} is a {} node that is not simulated, and \
                 `sim init` touches simulated nodes only; give it its master key with\n  \
                 mkclone master-key random --config {} --node {name}\n\
                 (journaled; refused over a valid CURRENT unless --replace-current)",
                source.backend.name(),
                config_path.display(),
                name = source.name,
            ))
        };
        if !matches!(
            source.backend,
            NodeBackend::Sim { .. } | NodeBackend::Cca(_)
        ) {
            return Err(refuse());
        }
        let mut backend = nodes::open(source).map_err(|e| Failure::failed(e.to_string()))?;
        if !backend.capabilities().rehearsal_only {
            return Err(refuse());
        }
        let status = backend
            .status()
            .map_err(|e| Failure::failed(e.to_string()))?;
        for kind in &config.plan.kinds {
            let valid = status
                .register(kind.kind())
                .map(|r| r.current == CurrentState::Valid)
                .unwrap_or(false);
            if !valid {
                backend
                    .load_random_master_key(*kind)
                    .map_err(|e| Failure::failed(format!("{}: {e}", source.name)))?;
            }
            said.say(SimAction::SourceKey {
                node: source.name.clone(),
                kind: *kind,
                loaded: !valid,
            });
        }
    }
    if json {
        #[derive(Serialize)]
        struct SimInit<'a> {
            actions: &'a [SimAction],
        }
        print_json(
            "sim-init",
            &SimInit {
                actions: &said.actions,
            },
        )?;
    }
    Ok(())
}
