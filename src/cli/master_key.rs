//! `mkclone master-key random`: a random master key generated and set inside a node,
//! journaled (crates/ceremony `master_key`).

use std::path::Path;

use mkclone_backend::CloneableKind;
use mkclone_ceremony::master_key::{self, RandomKeyRequest, RandomKeyResult};
use mkclone_ceremony::{Ceremony, phases};
use serde::Serialize;

use super::output::{Failure, print_json};
use super::signals;
use mkclone::config::Config;
use mkclone::nodes;

/// The options of `master-key random`.
pub struct RandomArgs<'a> {
    pub config: &'a Path,
    pub node: &'a str,
    /// Empty: the plan's master keys.
    pub kinds: Vec<CloneableKind>,
    pub replace_current: bool,
    pub operator: Option<String>,
    pub cancel: bool,
    pub json: bool,
}

/// A CURRENT pattern after the command (the kind, and the pattern as `status` gives it).
#[derive(Serialize)]
struct Pattern {
    kind: CloneableKind,
    #[serde(flatten)]
    pattern: mkclone_backend::VerificationPattern,
}

/// The `mkclone-master-key-random` document.
#[derive(Serialize)]
struct Output {
    node: String,
    /// "requested", "done", "cancelled" or "nothing-to-cancel".
    result: &'static str,
    actions: Vec<mkclone_ceremony::PhaseAction>,
    current_patterns: Vec<Pattern>,
    journal: String,
    journal_hash: String,
}

pub fn random(args: RandomArgs<'_>) -> Result<(), Failure> {
    let config = Config::load(args.config)?;
    let node_config = config.node(args.node)?;
    let kinds = if args.kinds.is_empty() {
        config.plan.kinds.clone()
    } else {
        let mut kinds = Vec::new();
        for k in args.kinds {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        kinds
    };
    // The ceremony's lock first, then the node (any PIN asked), then the identity check
    // of a node of the plan, before anything is written.
    master_key::refuse_before_phase_1(&config.directory, &config.plan, args.node)?;
    let mut ceremony = Ceremony::open(&config.directory, config.plan.clone())?;
    ceremony.set_operator(args.operator.clone())?;
    ceremony.set_run_start(super::ceremony_cmds::run_start(
        &config,
        "master-key random",
    ));
    let outcome = if args.cancel {
        master_key::cancel_request(&mut ceremony, args.node)?
    } else {
        let mut backend = nodes::open(node_config).map_err(|e| Failure::failed(e.to_string()))?;
        if let Some(plan_node) = config
            .plan
            .nodes()
            .into_iter()
            .find(|n| n.name == args.node)
        {
            phases::check_identity(plan_node, backend.as_mut())?;
        }
        ceremony.set_interrupt_flag(signals::install()?);
        let request = RandomKeyRequest {
            node: args.node.to_string(),
            kinds,
            replace_current: args.replace_current,
        };
        master_key::random_master_key(&mut ceremony, backend.as_mut(), &request)?
    };
    let (result, actions, patterns) = match outcome {
        RandomKeyResult::Requested(report) => ("requested", report.actions, Vec::new()),
        RandomKeyResult::Done { report, patterns } => ("done", report.actions, patterns),
        RandomKeyResult::Cancelled(true) => ("cancelled", Vec::new(), Vec::new()),
        RandomKeyResult::Cancelled(false) => ("nothing-to-cancel", Vec::new(), Vec::new()),
    };
    let out = Output {
        node: args.node.to_string(),
        result,
        actions,
        current_patterns: patterns
            .iter()
            .map(|(kind, pattern)| Pattern {
                kind: *kind,
                pattern: pattern.clone(),
            })
            .collect(),
        journal: ceremony.layout.journal().display().to_string(),
        journal_hash: ceremony.journal().head_hash(),
    };
    if args.json {
        return print_json("master-key-random", &out);
    }
    println!("master-key random on {}:", out.node);
    for a in &out.actions {
        println!("  {a}");
    }
    match result {
        "cancelled" => println!("  the open request is cancelled"),
        "nothing-to-cancel" => println!("  no request is open on {}", args.node),
        _ => {}
    }
    if result == "requested" {
        println!(
            "\nDual control: a second person now runs\n  mkclone master-key random --config {} --node {} --operator OTHER{}",
            args.config.display(),
            args.node,
            if args.replace_current {
                " --replace-current"
            } else {
                ""
            }
        );
    }
    if !patterns.is_empty() {
        println!(
            "\nWrite these CURRENT patterns down: they are what every target must show after the ceremony,\n\
             and what `source_patterns` in [ceremony] can pin:"
        );
        for (kind, pattern) in &patterns {
            println!("  {} = \"{pattern}\"", kind.to_string().to_lowercase());
        }
    }
    println!("\nJournal: {} (hash {})", out.journal, out.journal_hash);
    Ok(())
}
