//! Opening the nodes a configuration names, each with its backend.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use mkclone_backend::{Backend, SerialNumber};
use mkclone_ceremony::CeremonyError;
use mkclone_ceremony::run::Nodes;
use mkclone_hw_sim::{SimBus, StoreError};

use crate::config::{Config, NodeBackend, NodeConfig};

/// Why a node could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {node}: {message}")]
    Open { node: String, message: String },
    /// A signal cancelled the node's PIN prompt (with the ceremony's handlers installed:
    /// without them the signal ended the process).
    #[error("node {node}: signal {signal} cancelled its PIN prompt")]
    Interrupted { node: String, signal: i32 },
}

/// Environment variable for tests that need one simulated node slower than the others:
/// `<ms>` (every simulated card) or `<node>=<ms>,<node>=<ms>...`; each request to the
/// simulated card of such a node takes that many milliseconds more, as a real card's
/// work does. Simulated cards only. Its name is long on purpose.
pub const SIM_LATENCY_ENV: &str = "MKCLONE_TEST_ONLY_SIM_LATENCY_MS";

/// The latency [`SIM_LATENCY_ENV`] gives the simulated card of `node`, if any.
fn sim_latency(node: &str) -> Option<std::time::Duration> {
    latency_for(&std::env::var(SIM_LATENCY_ENV).ok()?, node)
}

/// [`SIM_LATENCY_ENV`]'s `value` for `node`.
fn latency_for(value: &str, node: &str) -> Option<std::time::Duration> {
    let ms = match value.trim().parse::<u64>() {
        Ok(all) => all,
        Err(_) => value.split(',').find_map(|entry| {
            let (name, ms) = entry.split_once('=')?;
            (name.trim() == node).then(|| ms.trim().parse().ok())?
        })?,
    };
    Some(std::time::Duration::from_millis(ms))
}

/// Open one node.
pub fn open(node: &NodeConfig) -> Result<Box<dyn Backend + Send>, NodeError> {
    match &node.backend {
        NodeBackend::Sim { sim_dir, apqn, .. } => {
            let bus = SimBus::new(sim_dir);
            let mut backend = bus.open_card(*apqn).map_err(|e| NodeError::Open {
                node: node.name.clone(),
                // Only a missing card is made by `sim init`: it refuses to overwrite one.
                message: match e {
                    StoreError::Missing { .. } => format!(
                        "{e} (run `mkclone sim init --config ...` to create the simulated cards)"
                    ),
                    _ => e.to_string(),
                },
            })?;
            if let Some(latency) = sim_latency(&node.name) {
                backend.transport_mut().set_latency(latency);
            }
            Ok(Box::new(backend))
        }
        NodeBackend::Zcrypt(cfg) => {
            let backend = crate::zcrypt::open_backend(cfg).map_err(|e| NodeError::Open {
                node: node.name.clone(),
                message: e.to_string(),
            })?;
            Ok(Box::new(backend))
        }
        NodeBackend::Cca(cfg) => {
            let backend =
                mkclone_hostlib::HostlibBackend::open(cfg).map_err(|e| NodeError::Open {
                    node: node.name.clone(),
                    message: e.to_string(),
                })?;
            Ok(Box::new(backend))
        }
        NodeBackend::Pkcs11(cfg) => {
            let fail = |message: String| NodeError::Open {
                node: node.name.clone(),
                message,
            };
            let pin = match &cfg.pin {
                mkclone_pkcs11::PinSource::Prompt => crate::pin::prompt(
                    &node.name,
                    &cfg.token,
                    crate::pin::Whose::User,
                )
                .map_err(|e| match e {
                    crate::pin::PromptError::Interrupted { signal } => NodeError::Interrupted {
                        node: node.name.clone(),
                        signal,
                    },
                    crate::pin::PromptError::Failed(message) => fail(message),
                })?,
                source => mkclone_pkcs11::resolve_pin(source).map_err(|e| fail(e.to_string()))?,
            };
            let mut backend =
                mkclone_pkcs11::Pkcs11Backend::open(cfg, pin).map_err(|e| fail(e.to_string()))?;
            if cfg.so_pin == Some(mkclone_pkcs11::PinSource::Prompt) {
                // Asked at the source's first share export, not before.
                let (name, token) = (node.name.clone(), cfg.token.clone());
                backend.set_so_pin_prompt(move || {
                    crate::pin::prompt(&name, &token, crate::pin::Whose::SecurityOfficer)
                });
            }
            Ok(Box::new(backend))
        }
    }
}

/// Create the simulated card of `node` if its file does not exist yet. Returns whether
/// a card was created.
pub fn create_sim_card(node: &NodeConfig) -> Result<bool, NodeError> {
    let NodeBackend::Sim {
        sim_dir,
        apqn,
        serial,
    } = &node.backend
    else {
        return Ok(false);
    };
    let bus = SimBus::new(sim_dir);
    if bus.card_path(*apqn).exists() {
        return Ok(false);
    }
    let serial = match serial {
        Some(s) => s.clone(),
        None => {
            // A stable made-up serial: "SIM" and the APQN's digits.
            SerialNumber::new(&format!("SIM{:02X}{:03X}", apqn.card, apqn.domain)).map_err(|e| {
                NodeError::Open {
                    node: node.name.clone(),
                    message: e.to_string(),
                }
            })?
        }
    };
    bus.create_card(*apqn, &serial)
        .map_err(|e| NodeError::Open {
            node: node.name.clone(),
            message: e.to_string(),
        })?;
    Ok(true)
}

/// The nodes of a configuration, opened on first use.
pub struct ConfiguredNodes<'a> {
    config: &'a Config,
    open: BTreeMap<String, Box<dyn Backend + Send>>,
}

impl<'a> ConfiguredNodes<'a> {
    pub fn new(config: &'a Config) -> Self {
        Self {
            config,
            open: BTreeMap::new(),
        }
    }
}

impl ConfiguredNodes<'_> {
    /// The node `name`, opened unless it is open already.
    fn ensure_open(&mut self, name: &str) -> Result<&mut Box<dyn Backend + Send>, CeremonyError> {
        let vacant = match self.open.entry(name.to_string()) {
            Entry::Occupied(open) => return Ok(open.into_mut()),
            Entry::Vacant(vacant) => vacant,
        };
        let unavailable = |message: String| CeremonyError::NodeUnavailable {
            node: name.into(),
            message,
        };
        let cfg = self
            .config
            .node(name)
            .map_err(|e| unavailable(e.to_string()))?;
        let backend = open(cfg).map_err(|e| match e {
            // Ctrl-C at a PIN prompt under the ceremony's handlers: their stop.
            NodeError::Interrupted { signal, .. } => CeremonyError::Interrupted {
                signal,
                during: format!("the opening of node {name} (at its PIN prompt)"),
            },
            e => unavailable(e.to_string()),
        })?;
        // The rehearsal rule for what the configuration cannot see: a CCA host library
        // that is mkclone's simulation keeps its keys in plain files.
        if backend.capabilities().rehearsal_only && !self.config.plan.rehearsal {
            return Err(unavailable(
                "this node is simulated (keys in plain files: mkclone's simulated CCA host library); \
                 add `rehearsal = true` to [ceremony] to run the plan as a rehearsal"
                    .into(),
            ));
        }
        Ok(vacant.insert(backend))
    }
}

impl Nodes for ConfiguredNodes<'_> {
    fn node(&mut self, name: &str) -> Result<&mut dyn Backend, CeremonyError> {
        Ok(self.ensure_open(name)?.as_mut())
    }

    fn nodes_mut(
        &mut self,
        names: &[&str],
    ) -> Result<Vec<&mut (dyn Backend + Send)>, CeremonyError> {
        for name in names {
            self.ensure_open(name)?;
        }
        mkclone_ceremony::run::pick(
            self.open
                .iter_mut()
                .map(|(n, b)| (n.as_str(), b.as_mut() as &mut (dyn Backend + Send))),
            names,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_sim_latency_is_for_every_node_or_for_those_named() {
        assert_eq!(latency_for("40", "sa"), Some(Duration::from_millis(40)));
        assert_eq!(
            latency_for("sa=250, target1 = 5", "target1"),
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            latency_for("sa=250", "sa"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(latency_for("sa=250", "target1"), None);
        assert_eq!(latency_for("sa=soon", "sa"), None);
        assert_eq!(latency_for("", "sa"), None);
    }
}
