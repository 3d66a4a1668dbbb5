//! `clone` and the per-phase commands.

use std::io::IsTerminal;
use std::path::Path;

use mkclone_ceremony::run::{self, Nodes};
use mkclone_ceremony::{Ceremony, PhaseReport, phases};

use super::output::{Failure, pattern_table};
use mkclone::config::Config;
use mkclone::nodes::ConfiguredNodes;

fn print_report(r: &PhaseReport) {
    println!("phase {} on {}:", r.phase, r.node);
    for a in &r.actions {
        println!("  {a}");
    }
}

fn print_carry(r: &PhaseReport) {
    if r.carry.is_empty() {
        return;
    }
    println!("\nNext, carry:");
    for (file, to, why) in &r.carry {
        println!("  {}  ->  {to}   ({why})", file.display());
    }
}

fn rehearsal_banner(config: &Config) {
    if config.plan.rehearsal {
        eprintln!(
            "REHEARSAL: this plan uses simulated nodes (keys in plain files); its files and journal say so."
        );
    }
    // Say plainly where the key is exposed: PKCS#11 has no secret-sharing mechanism.
    let plan = &config.plan;
    let exposed: Vec<&str> = std::iter::once(&plan.source)
        .chain(plan.targets.iter())
        .filter(|n| {
            config
                .nodes
                .get(&n.name)
                .is_some_and(|c| matches!(c.backend, mkclone::config::NodeBackend::Pkcs11(_)))
        })
        .map(|n| n.name.as_str())
        .collect();
    if !exposed.is_empty() {
        eprintln!(
            "NOTE for {}: {}",
            exposed.join(", "),
            mkclone::pkcs11::KEY_EXPOSURE_NOTICE
        );
    }
}

/// `mkclone clone`.
pub fn clone(config_path: &Path, json: bool) -> Result<(), Failure> {
    let config = Config::load(config_path)?;
    if !json {
        rehearsal_banner(&config);
    }
    let mut ceremony = Ceremony::open(&config.directory, config.plan.clone())?;
    let mut nodes = ConfiguredNodes::new(&config);
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(run::phase_count(config.plan.targets.len()));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} phases  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let summary = run::run_clone(&mut ceremony, &mut nodes, &mut |r| {
        if let Some(bar) = &bar {
            bar.inc(1);
            bar.set_message(format!("phase {} on {}", r.phase, r.node));
        }
        if !json {
            let line = format!(
                "phase {:<3} {:<10} {}",
                r.phase,
                r.node,
                r.actions.last().cloned().unwrap_or_default()
            );
            match &bar {
                Some(bar) => bar.println(line),
                None => println!("{line}"),
            }
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let summary = summary?;
    if json {
        let text =
            serde_json::to_string_pretty(&summary).map_err(|e| Failure::failed(e.to_string()))?;
        println!("{text}");
    } else {
        let targets: Vec<String> = config.plan.targets.iter().map(|t| t.name.clone()).collect();
        println!(
            "\n{}",
            pattern_table(&summary.nodes, &config.plan.source.name, &targets)
        );
        println!(
            "Journal: {} (final hash {})",
            ceremony.layout.journal().display(),
            summary.journal_head
        );
    }
    Ok(())
}

/// One phase command.
pub fn phase(config_path: &Path, phase: &str, target: Option<&str>) -> Result<(), Failure> {
    let config = Config::load(config_path)?;
    rehearsal_banner(&config);
    let plan = config.plan.clone();
    if let Some(t) = target
        && plan.target(t).is_none()
    {
        return Err(Failure::invalid(format!(
            "{t:?} is not a target of this plan (targets: {})",
            plan.targets
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut ceremony = Ceremony::open(&config.directory, plan.clone())?;
    let mut nodes = ConfiguredNodes::new(&config);
    let t = target.unwrap_or_default();
    let report = match phase {
        "1" => phases::phase1(&mut ceremony, nodes.node(&plan.sa.name)?)?,
        "2a" => phases::phase2a(&mut ceremony, nodes.node(&plan.source.name)?)?,
        "2b" => phases::phase2b(&mut ceremony, nodes.node(&plan.sa.name)?)?,
        "3a" => phases::phase3a(&mut ceremony, nodes.node(t)?, t)?,
        "3b" => phases::phase3b(&mut ceremony, nodes.node(&plan.sa.name)?, t)?,
        "3c" => phases::phase3c(&mut ceremony, nodes.node(&plan.source.name)?, t)?,
        "3d" => phases::phase3d(&mut ceremony, nodes.node(t)?, t)?,
        other => return Err(Failure::invalid(format!("unknown phase {other}"))),
    };
    print_report(&report);
    print_carry(&report);
    println!(
        "\nJournal: {} (hash {})",
        ceremony.layout.journal().display(),
        ceremony.journal().head_hash()
    );
    Ok(())
}
