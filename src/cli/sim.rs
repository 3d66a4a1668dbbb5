//! `mkclone sim init`: simulated cards for a rehearsal.

use std::path::Path;

use mkclone_backend::CurrentState;

use super::output::Failure;
use mkclone::config::{Config, NodeBackend};
use mkclone::nodes;

/// A `backend = "cca"` node: on mkclone's simulated CCA host library, the card its
/// `expect_serial` names (created as the library's next adapter); on IBM's library
/// nothing, with a line saying so.
fn cca_card(name: &str, cfg: &mkclone_hostlib::HostlibNodeConfig) -> Result<(), Failure> {
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
            println!(
                "{name:<10} simulated CCA card {} on mkclone's simulated host library {library}: {}",
                cfg.expect_serial.as_ref().map(|s| s.as_str()).unwrap_or(""),
                if created { "created" } else { "exists" }
            );
            Ok(())
        }
        Err(mkclone_hostlib::HostlibError::NotSimulated { .. }) => {
            println!(
                "{name:<10} CCA adapter through IBM's host library {library}: a real card, nothing to create"
            );
            Ok(())
        }
        Err(e) => Err(Failure::failed(format!("{name}: {e}"))),
    }
}

pub fn init(config_path: &Path, load_source_keys: bool) -> Result<(), Failure> {
    let config = Config::load(config_path)?;
    for node in config.nodes.values() {
        match &node.backend {
            NodeBackend::Sim { sim_dir, apqn, .. } => {
                let created =
                    nodes::create_sim_card(node).map_err(|e| Failure::failed(e.to_string()))?;
                println!(
                    "{:<10} simulated card {apqn} in {}: {}",
                    node.name,
                    sim_dir.display(),
                    if created { "created" } else { "exists" }
                );
            }
            NodeBackend::Cca(cfg) => cca_card(&node.name, cfg)?,
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
            if valid {
                println!(
                    "{:<10} {kind} CURRENT already valid: left as is",
                    source.name
                );
                continue;
            }
            backend
                .load_random_master_key(*kind)
                .map_err(|e| Failure::failed(format!("{}: {e}", source.name)))?;
            println!(
                "{:<10} random {kind} master key loaded and set",
                source.name
            );
        }
    }
    Ok(())
}
