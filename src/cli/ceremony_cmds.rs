//! `clone` and the per-phase commands.

use std::path::Path;
use std::sync::Arc;

use mkclone_ceremony::dbs::Layout;
use mkclone_ceremony::dry_run::{self, DryRunOptions, DryRunScope};
use mkclone_ceremony::durable::DirLock;
use mkclone_ceremony::progress::Observer;
use mkclone_ceremony::run::{self, Nodes};
use mkclone_ceremony::{Ceremony, CeremonyError, Phase, PhaseReport, Role, phases};

use super::RunArgs;
use super::console::{Console, Verbosity};
use super::output::{Failure, pattern_table, print_json};
use super::signals;
use mkclone::config::Config;
use mkclone::nodes::ConfiguredNodes;

/// Load the configuration and pin the SA key's fingerprint given on the command line
/// (which must agree with the configuration's, when both say one).
fn load_config(path: &Path, sa_fingerprint: Option<&str>) -> Result<Config, Failure> {
    let mut config = Config::load(path)?;
    if let Some(text) = sa_fingerprint {
        let given = mkclone::ceremony::trust::SaFingerprint::parse(text)
            .map_err(|e| Failure::invalid(format!("--sa-fingerprint: {e}")))?;
        match &config.plan.sa_fingerprint {
            Some(pinned) if *pinned != given => {
                return Err(Failure::invalid(format!(
                    "--sa-fingerprint {given} differs from the configuration's sa_fingerprint {pinned}: \
                     check both with the SA operator"
                )));
            }
            _ => config.plan.sa_fingerprint = Some(given),
        }
    }
    Ok(config)
}

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
    for c in &r.carry {
        println!("  {}  ->  {}   ({})", c.file.display(), c.to, c.why);
    }
}

/// The `mkclone-phase` document of a phase command, `register-sa-hash` and
/// `register-sa-key` (docs/JSON.md).
#[derive(serde::Serialize)]
struct PhaseDocument<'a> {
    #[serde(flatten)]
    report: &'a PhaseReport,
    /// The target a per-target phase worked for.
    target: Option<&'a str>,
    /// Commands the operators may run next (e.g. erasing a finished target's files).
    next: Vec<String>,
    journal: String,
    journal_hash: String,
}

impl<'a> PhaseDocument<'a> {
    fn new(report: &'a PhaseReport, target: Option<&'a str>, ceremony: &Ceremony) -> Self {
        Self {
            report,
            target,
            next: Vec::new(),
            journal: ceremony.layout.journal().display().to_string(),
            journal_hash: ceremony.journal().head_hash(),
        }
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
    // A PKCS#11 source exports its key only through its security officer's key (phase 3c).
    if let Some(mkclone::config::NodeBackend::Pkcs11(source)) =
        config.nodes.get(&plan.source.name).map(|n| &n.backend)
        && source.so_pin.is_none()
    {
        eprintln!(
            "NOTE for {}: its share export (phase 3c) needs the token's security officer's PIN: set so_pin \
             in [nodes.{}] (env, file or \"prompt\"; read for that step only)",
            plan.source.name, plan.source.name
        );
    }
}

/// `--dry-run`: every check, every problem at once, nothing changed.
fn dry_run(
    config: &Config,
    scope: DryRunScope,
    replace_current: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut nodes = ConfiguredNodes::new(config);
    let layout = Layout::new(&config.directory);
    let report = dry_run::dry_run_report(
        &config.plan,
        &layout,
        &mut nodes,
        &scope,
        DryRunOptions { replace_current },
    );
    let problems = report.problems;
    if json {
        /// The `mkclone-dry-run` document.
        #[derive(serde::Serialize)]
        struct DryRunDocument<'a> {
            dry_run: bool,
            phases: &'a [Phase],
            targets: &'a [String],
            /// Always false: a dry run changes nothing.
            changed: bool,
            problems: &'a [mkclone_ceremony::Problem],
            access_controls: &'a [dry_run::NodeAccess],
        }
        print_json(
            "dry-run",
            &DryRunDocument {
                dry_run: true,
                phases: &scope.phases,
                targets: &scope.targets,
                changed: false,
                problems: &problems,
                access_controls: &report.access,
            },
        )?;
        return if problems.is_empty() {
            Ok(())
        } else {
            Err(Failure::with_code(
                4,
                "preflight",
                format!(
                    "dry run found {} problem(s); nothing was changed",
                    problems.len()
                ),
            )
            .documented())
        };
    }
    print_access_controls(&report.access);
    if problems.is_empty() {
        println!(
            "dry run: phases {} for {}: no problem found; nothing was changed",
            scope
                .phases
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", "),
            if scope.targets.is_empty() {
                "the plan".to_string()
            } else {
                scope.targets.join(", ")
            }
        );
        return Ok(());
    }
    Err(Failure::with_code(
        4,
        "preflight",
        format!(
            "dry run found {} problem(s); nothing was changed:\n{}",
            problems.len(),
            mkclone::ceremony::Problems(problems)
        ),
    ))
}

/// The "Audit access controls" task: per node, each point its steps need and whether its
/// role enables it, then what to check by hand.
fn print_access_controls(access: &[dry_run::NodeAccess]) {
    for n in access {
        println!(
            "access controls of {} (role {}, phases {}):",
            n.node,
            n.audit.role.as_deref().unwrap_or("-"),
            n.phases.join(", ")
        );
        for c in &n.audit.checked {
            println!(
                "  {:<8} {} for {}",
                if c.enabled { "enabled" } else { "MISSING" },
                c.point,
                c.operation
            );
        }
        for m in &n.audit.by_hand {
            println!("  by hand  {}: {}", m.operation, m.what);
        }
    }
}

/// Identity pinning: every node this command uses reports the pinned serial and no other
/// EID, checked before anything is written (not even the ceremony directory).
fn check_identities(
    config: &Config,
    nodes: &mut ConfiguredNodes<'_>,
    names: &[&str],
) -> Result<(), Failure> {
    for plan_node in config.plan.nodes() {
        if !names.contains(&plan_node.name.as_str()) {
            continue;
        }
        let backend = nodes.node(&plan_node.name)?;
        phases::check_identity(plan_node, backend)?;
    }
    Ok(())
}

/// The ceremony directory, if it exists, must be usable before any node is opened (no PIN
/// asked for nothing); `Ceremony::open` checks it again.
fn check_directory(config: &Config) -> Result<(), Failure> {
    Layout::new(&config.directory)
        .check_dirs()
        .map_err(|e| mkclone_ceremony::CeremonyError::from(e).into())
}

/// The nodes a phase command talks to.
fn phase_nodes<'a>(config: &'a Config, phase: Phase, target: &'a str) -> Vec<&'a str> {
    let plan = &config.plan;
    match phase.role() {
        Some(Role::Sa) => vec![plan.sa.name.as_str()],
        Some(Role::Source) => vec![plan.source.name.as_str()],
        _ => vec![target],
    }
}

/// Locks in order: the ceremony's first, the nodes' second. Where the ceremony directory
/// exists, its lock is taken before any node is opened, so that a second command fails at
/// once naming the holder instead of waiting on a card the holder uses. A directory that
/// does not exist yet is created (and locked) only after the identity checks, since nothing
/// is written before them; no ceremony can be running in it meanwhile.
fn lock_existing_ceremony(config: &Config) -> Result<Option<DirLock>, Failure> {
    // A directory (or shares/) that is a link, another user's or writable by others is
    // refused before any node is opened (no PIN asked for nothing).
    check_directory(config)?;
    if !config.directory.is_dir() {
        return Ok(None);
    }
    let lock = DirLock::try_acquire(&config.directory).map_err(CeremonyError::from)?;
    Ok(Some(lock))
}

/// What the journal's `run-start` note of `command` records: this host, this mkclone, the
/// configuration's SHA-256.
pub(super) fn run_start(config: &Config, command: &str) -> mkclone_ceremony::event::RunStart {
    mkclone_ceremony::event::RunStart::here(command, Some(config.sha256.clone()))
}

/// Open the ceremony (under `lock` when taken already) and, the nodes being open (any PIN
/// asked), install the SIGINT/SIGTERM handlers whose flag the ceremony checks.
fn open_ceremony(
    config: &Config,
    command: &str,
    run: &RunArgs,
    replace_current: bool,
    lock: Option<DirLock>,
) -> Result<Ceremony, Failure> {
    let mut ceremony = match lock {
        Some(lock) => Ceremony::open_locked(lock, config.plan.clone())?,
        None => Ceremony::open(&config.directory, config.plan.clone())?,
    };
    ceremony.set_operator(run.operator.clone())?;
    ceremony.set_run_start(run_start(config, command));
    ceremony.set_replace_current(replace_current);
    ceremony.set_interrupt_flag(signals::install()?);
    Ok(ceremony)
}

/// How `clone` runs and what it shows.
pub struct CloneArgs {
    pub replace_current: bool,
    pub json: bool,
    /// No action lines, no progress bar (`-q`).
    pub quiet: bool,
    /// Phases at once (`--jobs`; default one per target).
    pub jobs: Option<std::num::NonZeroUsize>,
    /// When the targets are checked (`--check-all-first`).
    pub checks: run::Checks,
}

/// `mkclone clone`.
pub fn clone(config_path: &Path, run: &RunArgs, args: &CloneArgs) -> Result<(), Failure> {
    let config = load_config(config_path, run.sa_fingerprint.as_deref())?;
    // On standard error, also under --json: where the key is exposed is said every time.
    rehearsal_banner(&config);
    if run.dry_run {
        return dry_run(
            &config,
            DryRunScope::whole(&config.plan),
            args.replace_current,
            args.json,
        );
    }
    let all: Vec<&str> = config
        .plan
        .nodes()
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    let lock = lock_existing_ceremony(&config)?;
    // Each node is opened once (a PIN is asked once) and its identity checked before
    // anything is written.
    let mut nodes = ConfiguredNodes::new(&config);
    check_identities(&config, &mut nodes, &all)?;
    let mut ceremony = open_ceremony(&config, "clone", run, args.replace_current, lock)?;
    let verbosity = if args.json || args.quiet {
        Verbosity::Quiet
    } else {
        Verbosity::Actions
    };
    let console = Arc::new(Console::new(
        run::phase_count(config.plan.targets.len()),
        verbosity,
        &all,
    ));
    let shown = console.clone();
    let log = Arc::new(super::clone_log::CloneLog::default());
    let logged = log.clone();
    let options = run::CloneOptions {
        jobs: args.jobs,
        observer: Some(Observer::new(move |event| {
            logged.observe(event);
            shown.observe(event);
        })),
        checks: args.checks,
    };
    let summary = run::run_clone(&mut ceremony, &mut nodes, &options);
    console.finish();
    // A failure says which phases this run completed and every phase that failed.
    let summary = summary.map_err(|e| Failure {
        clone: Some(Box::new(log.outcome())),
        ..Failure::from(e)
    })?;
    if args.json {
        /// The `mkclone-clone` document: the summary, and under dual control the
        /// registration commands two people run (`next`), then `clone` again.
        #[derive(serde::Serialize)]
        struct CloneDocument<'a> {
            #[serde(flatten)]
            summary: &'a run::CloneSummary,
            next: Vec<String>,
        }
        let next = summary
            .waiting
            .as_ref()
            .map(|w| dual_control_commands(config_path, run, &config, w))
            .unwrap_or_default();
        print_json(
            "clone",
            &CloneDocument {
                summary: &summary,
                next,
            },
        )?;
    } else if let Some(wait) = &summary.waiting {
        println!("\n{}", dual_control_stop(config_path, run, &config, wait));
        println!("{}", journal_line(&ceremony));
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
    match &summary.waiting {
        Some(wait) => {
            let failure = Failure::with_code(
                super::EXIT_DUAL_CONTROL,
                "dual-control",
                format!(
                    "stopped for dual control: the SA key's registration waits for two people on {} \
                     (the commands are above); then run the same command again to finish",
                    wait.pending
                        .iter()
                        .map(|p| p.node.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            let failure = failure.hint(
                "two people run the register-sa-hash and register-sa-key commands for each node \
                 waiting, comparing the SA key fingerprint in person; then run the same command again",
            );
            // Under --json the document's `waiting` says it all.
            Err(if args.json {
                failure.documented()
            } else {
                failure
            })
        }
        None => Ok(()),
    }
}

/// `mkclone STEP --config … --node NODE --operator WHO [--sa-fingerprint …]`: a
/// registration command of a dual-control stop (the anchor unless the configuration file
/// pins it).
fn register_command(
    config_path: &Path,
    run: &RunArgs,
    config: &Config,
    wait: &run::DualControlWait,
) -> impl Fn(&str, &str, &str) -> String {
    let config_arg = shell_word(&config_path.display().to_string());
    let anchor = if run.sa_fingerprint.is_some() || config.plan.sa_fingerprint.is_none() {
        format!(" --sa-fingerprint \"{}\"", wait.sa_fingerprint)
    } else {
        String::new()
    };
    move |step: &str, node: &str, who: &str| {
        format!("mkclone {step} --config {config_arg} --node {node} --operator {who}{anchor}")
    }
}

/// The commands of a dual-control stop in order (`next` of the `mkclone-clone` document):
/// per node waiting, register-sa-hash (unless registered) by NAME, then register-sa-key by
/// OTHER-NAME, then the same `clone` again.
fn dual_control_commands(
    config_path: &Path,
    run: &RunArgs,
    config: &Config,
    wait: &run::DualControlWait,
) -> Vec<String> {
    let command = register_command(config_path, run, config, wait);
    let mut out = Vec::new();
    for p in &wait.pending {
        if !p.hash_registered {
            out.push(command("register-sa-hash", &p.node, "NAME"));
        }
        out.push(command("register-sa-key", &p.node, "OTHER-NAME"));
    }
    out
}

/// What the operators do when a dual-control `clone` stops: for each node still missing
/// the SA key's registration, the exact commands, and the fingerprint to compare.
fn dual_control_stop(
    config_path: &Path,
    run: &RunArgs,
    config: &Config,
    wait: &run::DualControlWait,
) -> String {
    let command = register_command(config_path, run, config, wait);
    let mut out = String::from(
        "Dual control: every phase one person may run is done. Before any share leaves the source, \
         the SA public key must be registered on each node below by two people: one registers its \
         hash, a second person the key itself.\n",
    );
    out.push_str(&format!(
        "Compare in person, with the SA operator, the SA key fingerprint each command shows: {}\n",
        wait.registration_fingerprint
    ));
    for p in &wait.pending {
        out.push_str(&format!("\n  {}:\n", p.node));
        if p.hash_registered {
            let (by, other) = match p.hash_registered_by.as_deref() {
                Some(b) => (format!(" by {b}"), format!("someone other than {b}")),
                None => (String::new(), "a second person".to_string()),
            };
            out.push_str(&format!(
                "    (the hash is registered{by}; now {other} registers the key:)\n"
            ));
        } else {
            out.push_str(&format!(
                "    {}\n",
                command("register-sa-hash", &p.node, "NAME")
            ));
        }
        out.push_str(&format!(
            "    {}\n",
            command("register-sa-key", &p.node, "OTHER-NAME")
        ));
    }
    out.push_str(
        "\nThen run the same `mkclone clone` command again: it checks what is done and goes on \
         from here to the end.",
    );
    out
}

/// `word`, quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// One phase command.
pub fn phase(
    config_path: &Path,
    phase: Phase,
    target: Option<&str>,
    run: &RunArgs,
    replace_current: bool,
    fingerprint: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    let confirmation = fingerprint
        .map(phases::KeyConfirmation::Fingerprint)
        .unwrap_or(phases::KeyConfirmation::None);
    let config = load_config(config_path, run.sa_fingerprint.as_deref())?;
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
    if run.dry_run {
        let scope = DryRunScope {
            phases: vec![phase],
            targets: target.map(|t| vec![t.to_string()]).unwrap_or_default(),
        };
        return dry_run(&config, scope, replace_current, json);
    }
    let lock = lock_existing_ceremony(&config)?;
    let mut nodes = ConfiguredNodes::new(&config);
    check_identities(
        &config,
        &mut nodes,
        &phase_nodes(&config, phase, target.unwrap_or_default()),
    )?;
    let command = format!("phase{}", phase.name());
    let mut ceremony = open_ceremony(&config, &command, run, replace_current, lock)?;
    let t = target.unwrap_or_default();
    let report = match phase {
        Phase::P1 => phases::phase1(&mut ceremony, nodes.node(&plan.sa.name)?)?,
        Phase::P2a => phases::phase2a(&mut ceremony, nodes.node(&plan.source.name)?)?,
        Phase::P2b => phases::phase2b(&mut ceremony, nodes.node(&plan.sa.name)?, &confirmation)?,
        Phase::P3a => phases::phase3a(&mut ceremony, nodes.node(t)?, t)?,
        Phase::P3b => phases::phase3b(&mut ceremony, nodes.node(&plan.sa.name)?, t, &confirmation)?,
        Phase::P3c => phases::phase3c(&mut ceremony, nodes.node(&plan.source.name)?, t)?,
        Phase::P3d => phases::phase3d(&mut ceremony, nodes.node(t)?, t)?,
        other => return Err(Failure::invalid(format!("{other} is not a phase command"))),
    };
    let erase = format!(
        "mkclone abort --config {} --target {t} --erase-files",
        shell_word(&config_path.display().to_string())
    );
    if json {
        let mut doc = PhaseDocument::new(&report, target, &ceremony);
        if phase == Phase::P3d {
            doc.next.push(erase);
        }
        return print_json("phase", &doc);
    }
    print_report(&report);
    print_carry(&report);
    if phase == Phase::P3d {
        println!(
            "\nThe ceremony for {t} is complete. Its consumed files (its csr.db and share bundles) can now be erased:\n  \
             mkclone abort --config {} --target {t} --erase-files",
            config_path.display()
        );
    }
    println!("\n{}", journal_line(&ceremony));
    Ok(())
}

/// `register-sa-hash` / `register-sa-key`: dual control.
pub fn register_sa(
    config_path: &Path,
    node: &str,
    operator: &str,
    key: bool,
    sa_fingerprint: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let config = load_config(config_path, sa_fingerprint)?;
    rehearsal_banner(&config);
    // The ceremony lock first, then the node.
    let mut ceremony = Ceremony::open(&config.directory, config.plan.clone())?;
    let command = if key {
        "register-sa-key"
    } else {
        "register-sa-hash"
    };
    ceremony.set_run_start(run_start(&config, command));
    let mut nodes = ConfiguredNodes::new(&config);
    let backend = nodes.node(node)?;
    ceremony.set_interrupt_flag(signals::install()?);
    let report = if key {
        phases::register_sa_key(&mut ceremony, backend, node, operator)?
    } else {
        phases::register_sa_hash(&mut ceremony, backend, node, operator)?
    };
    if json {
        return print_json(command, &PhaseDocument::new(&report, None, &ceremony));
    }
    print_report(&report);
    println!("\n{}", journal_line(&ceremony));
    Ok(())
}

/// `abort`.
pub fn abort(
    config_path: &Path,
    steps: &mkclone::ceremony::abort::AbortSteps,
    operator: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    let config = Config::load(config_path)?;
    rehearsal_banner(&config);
    // The ceremony lock first, then the nodes: every node the steps touch is opened (any
    // PIN asked) before the signal handlers are installed.
    let mut ceremony = Ceremony::open(&config.directory, config.plan.clone())?;
    ceremony.set_operator(operator)?;
    ceremony.set_run_start(run_start(&config, "abort"));
    let mut nodes = ConfiguredNodes::new(&config);
    for name in abort_nodes(&config, steps) {
        nodes.node(name)?;
    }
    ceremony.set_interrupt_flag(signals::install()?);
    let report = mkclone::ceremony::abort::abort(&mut ceremony, &mut nodes, steps)?;
    if json {
        #[derive(serde::Serialize)]
        struct AbortDocument<'a> {
            steps: &'a mkclone::ceremony::abort::AbortSteps,
            actions: &'a [mkclone_ceremony::PhaseAction],
            journal: String,
            journal_hash: String,
        }
        return print_json(
            "abort",
            &AbortDocument {
                steps,
                actions: &report.actions,
                journal: ceremony.layout.journal().display().to_string(),
                journal_hash: ceremony.journal().head_hash(),
            },
        );
    }
    println!("abort:");
    for a in &report.actions {
        println!("  {a}");
    }
    println!("\n{}", journal_line(&ceremony));
    Ok(())
}

/// `journal accept-loss`.
pub fn accept_journal_loss(
    config_path: &Path,
    node: &str,
    operator: &str,
    json: bool,
) -> Result<(), Failure> {
    if operator.trim().is_empty() {
        return Err(Failure::invalid(
            "--operator NAME: say who accepts the loss; it is recorded".to_string(),
        ));
    }
    let config = Config::load(config_path)?;
    config.node(node)?;
    let mut ceremony = Ceremony::open(&config.directory, config.plan.clone())?;
    ceremony.set_operator(Some(operator.to_string()))?;
    ceremony.set_run_start(run_start(&config, "journal accept-loss"));
    let accepted = ceremony.accept_journal_loss(node)?;
    if json {
        #[derive(serde::Serialize)]
        struct LostRecord<'a> {
            seq: u64,
            phase: &'a str,
            hash: &'a str,
            named_by: &'a str,
        }
        #[derive(serde::Serialize)]
        struct AcceptLossDocument<'a> {
            node: &'a str,
            operator: &'a str,
            /// false: nothing to accept (the journal holds what the files name).
            recorded: bool,
            lost_records: Vec<LostRecord<'a>>,
            journal: String,
            journal_hash: String,
        }
        return print_json(
            "journal-accept-loss",
            &AcceptLossDocument {
                node,
                operator,
                recorded: accepted.is_some(),
                lost_records: accepted
                    .iter()
                    .flatten()
                    .map(|(file, mark)| LostRecord {
                        seq: mark.seq,
                        phase: mark.phase.as_str(),
                        hash: mark.hash.as_str(),
                        named_by: file.as_str(),
                    })
                    .collect(),
                journal: ceremony.layout.journal().display().to_string(),
                journal_hash: ceremony.journal().head_hash(),
            },
        );
    }
    let Some(accepted) = accepted else {
        println!(
            "nothing to accept: the journal holds {node}'s records and every journal mark of {node} \
             the ceremony files name"
        );
        return Ok(());
    };
    println!("recorded by {operator}: the journal records of {node} are lost for good");
    for (file, mark) in &accepted {
        println!(
            "  record {} (phase {}, hash {}), named by {file}",
            mark.seq, mark.phase, mark.hash
        );
    }
    println!(
        "\nThe report will say the chain is not verified end to end.\n{}",
        journal_line(&ceremony)
    );
    Ok(())
}

/// The nodes an abort's steps talk to: the targets concerned (those of the plan), and the
/// source when no target is named (see `abort::abort`).
fn abort_nodes<'a>(
    config: &'a Config,
    steps: &'a mkclone::ceremony::abort::AbortSteps,
) -> Vec<&'a str> {
    let plan = &config.plan;
    let mut names = Vec::new();
    if !(steps.clear_new || steps.delete_keys || steps.unregister_sa) {
        return names;
    }
    let whole = steps.targets.is_empty();
    if whole && (steps.delete_keys || steps.unregister_sa) {
        names.push(plan.source.name.as_str());
    }
    if whole {
        names.extend(plan.targets.iter().map(|t| t.name.as_str()));
    } else {
        names.extend(
            steps
                .targets
                .iter()
                .filter(|t| plan.target(t).is_some())
                .map(String::as_str),
        );
    }
    names
}

/// `Journal: PATH (hash HASH)`, printed after a command that appended to the journal.
fn journal_line(ceremony: &Ceremony) -> String {
    format!(
        "Journal: {} (hash {})",
        ceremony.layout.journal().display(),
        ceremony.journal().head_hash()
    )
}
