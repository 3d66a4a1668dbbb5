//! `--dry-run`: every check of the phases in scope, on every node they touch, reported
//! all at once; nothing is changed anywhere (no node request that writes, no file written,
//! not even the ceremony directory created).

use mkclone_backend::access::AccessAudit;
use mkclone_backend::{Backend, CloneableKind, CurrentState, NewState, NodeStatus, Operation};
use mkclone_formats::pka::{CertificateSection, PublicKeyTokenView};

use crate::dbs::{
    self, BUNDLE_FORMAT, CSR_DB_FORMAT, CsrDb, Layout, SA_DB_FORMAT, SaDb, ShareBundle,
};
use crate::failure::Problem;
use crate::journal;
use crate::marks::Chain;
use crate::phase::Phase;
use crate::phases::check_identity;
use crate::plan::{Plan, PlanNode};
use crate::run::Nodes;

/// Which phases (and for which targets) a dry run covers.
#[derive(Debug, Clone)]
pub struct DryRunScope {
    pub phases: Vec<Phase>,
    pub targets: Vec<String>,
}

impl DryRunScope {
    /// What `clone` does: every phase, every target.
    pub fn whole(plan: &Plan) -> Self {
        Self {
            phases: Phase::CLONING.to_vec(),
            targets: plan.targets.iter().map(|t| t.name.clone()).collect(),
        }
    }
    fn has(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }

    /// Those of `phases` in scope.
    fn of(&self, phases: &[Phase]) -> Vec<Phase> {
        phases.iter().copied().filter(|p| self.has(*p)).collect()
    }
}

/// What the dry run needs to know beyond the plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct DryRunOptions {
    pub replace_current: bool,
}

fn problem(problems: &mut Vec<Problem>, node: &str, kind: &'static str, what: impl Into<String>) {
    problems.push(Problem::new(node, kind, what));
}

/// Open a node and check its identity; `None` (with the problem recorded) when it cannot
/// be used.
fn reach(
    nodes: &mut dyn Nodes,
    plan_node: &PlanNode,
    problems: &mut Vec<Problem>,
) -> Option<NodeStatus> {
    let node = match nodes.node(&plan_node.name) {
        Ok(n) => n,
        Err(e) => {
            problems.push(Problem {
                what: format!("unreachable: {e}"),
                ..Problem::error(&plan_node.name, &e)
            });
            return None;
        }
    };
    match check_identity(plan_node, node) {
        Ok(st) => Some(st),
        Err(e) => {
            problems.push(Problem::error(&plan_node.name, &e));
            None
        }
    }
}

fn capabilities(node: &mut dyn Backend, name: &str, phases: &[Phase], problems: &mut Vec<Problem>) {
    let caps = node.capabilities();
    let mut missing: Vec<Operation> = Vec::new();
    for phase in phases {
        for op in caps.missing(phase.needed_operations()) {
            if !missing.contains(&op) {
                missing.push(op);
            }
        }
    }
    for op in missing {
        let p = Problem::new(
            name,
            "capability",
            format!(
                "the {} backend cannot {op}, which phase(s) {} need{}",
                caps.backend,
                phases
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                if caps.backend == "zcrypt" {
                    " (IBM has not published the encoding of this verb; rehearse on the simulator, run this step with IBM's CNM/TKE)"
                } else {
                    ""
                }
            ),
        );
        problems.push(p.with_operation(op));
    }
}

/// A node's access-control audit for the phases it runs in scope (empty for a device
/// without access-control roles).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeAccess {
    pub node: String,
    pub phases: Vec<String>,
    pub audit: AccessAudit,
}

/// Everything a dry run finds: the problems (none: the plan can run) and each node's
/// access-control audit (the points found missing are problems too).
#[derive(Debug, Clone, Default)]
pub struct DryRunReport {
    pub problems: Vec<Problem>,
    pub access: Vec<NodeAccess>,
}

/// The "Audit access controls" task of the cloning procedure, for one node: every point
/// the role lacks is a problem; the audit is kept for the report.
fn access_controls(
    node: &mut dyn Backend,
    name: &str,
    phases: &[Phase],
    kinds: &[CloneableKind],
    problems: &mut Vec<Problem>,
    report: &mut Vec<NodeAccess>,
) {
    let mut ops: Vec<Operation> = Vec::new();
    for phase in phases {
        for op in phase.needed_operations() {
            if !ops.contains(op) {
                ops.push(*op);
            }
        }
    }
    let audit = match node.access_audit(&ops, kinds) {
        Ok(a) => a,
        Err(e) => {
            problem(
                problems,
                name,
                "node",
                format!("the access-control audit failed: {e}"),
            );
            return;
        }
    };
    for missing in audit.missing() {
        let p = Problem::new(
            name,
            "access-control",
            format!(
                "role {} does not enable access-control point {}, which {} needs ({}): enable it with TKE",
                audit.role.as_deref().unwrap_or("?"),
                missing.point,
                missing.operation,
                missing.point.source
            ),
        );
        problems.push(p.with_operation(missing.operation));
    }
    if !audit.is_empty() {
        report.push(NodeAccess {
            node: name.to_string(),
            phases: phases.iter().map(|p| p.name().to_string()).collect(),
            audit,
        });
    }
}

fn current(st: &NodeStatus, kind: CloneableKind) -> Option<mkclone_backend::VerificationPattern> {
    let reg = st.register(kind.kind())?;
    (reg.current == CurrentState::Valid)
        .then(|| reg.current_patterns.first().cloned())
        .flatten()
}

/// The journal of this directory, when there is one: it verifies, belongs to this run of
/// the ceremony (sa.db's nonce), and holds every journal mark the files carry for the
/// nodes whose phases are in scope (else a phase would refuse to start).
fn journal_problems(
    plan: &Plan,
    layout: &Layout,
    scope: &DryRunScope,
    sa_db: Option<&SaDb>,
    p: &mut Vec<Problem>,
) {
    let path = layout.journal();
    let bytes = match crate::envelope::read_bytes(&path) {
        Ok(bytes) => bytes,
        // No journal: as an empty one (files that name its records show the loss).
        Err(e) if e.is_not_found() => Default::default(),
        Err(e) => {
            p.push(Problem::file_error("journal", &e));
            return;
        }
    };
    let verified = match journal::verify(&path, &bytes, Some(&plan.id), Some(plan.rehearsal)) {
        Ok(v) => v,
        Err(e) => {
            p.push(Problem::file_error("journal", &e));
            return;
        }
    };
    if let (Some(first), Some(db)) = (verified.records.first(), sa_db)
        && first.nonce != db.provenance.nonce
    {
        let e = crate::CeremonyError::ForeignJournal {
            journal: path.display().to_string(),
            id: plan.id.clone(),
            journal_nonce: first.nonce.clone(),
            file_nonce: db.provenance.nonce.clone(),
        };
        p.push(Problem::error("journal", &e));
        return;
    }
    let chain = Chain {
        records: &verified.records,
        head: &verified.head_hash,
    };
    let files = dbs::carried_files(layout, plan);
    let mut nodes: Vec<&str> = Vec::new();
    for phase in &scope.phases {
        let names: Vec<&str> = match phase.role() {
            Some(crate::Role::Sa) => vec![plan.sa.name.as_str()],
            Some(crate::Role::Source) => vec![plan.source.name.as_str()],
            Some(crate::Role::Target) => scope.targets.iter().map(String::as_str).collect(),
            None => Vec::new(),
        };
        for n in names {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
    }
    for node in nodes {
        if let Some(gap) = chain.first_gap(&files, node, &path.display().to_string()) {
            p.push(Problem::error(
                node,
                &crate::CeremonyError::JournalGap(Box::new(gap)),
            ));
        }
    }
}

/// Run every check in scope; the list is empty when the plan can run.
pub fn dry_run(
    plan: &Plan,
    layout: &Layout,
    nodes: &mut dyn Nodes,
    scope: &DryRunScope,
    options: DryRunOptions,
) -> Vec<Problem> {
    dry_run_report(plan, layout, nodes, scope, options).problems
}

/// [`dry_run`], with each node's access-control audit.
pub fn dry_run_report(
    plan: &Plan,
    layout: &Layout,
    nodes: &mut dyn Nodes,
    scope: &DryRunScope,
    options: DryRunOptions,
) -> DryRunReport {
    let mut problems = Vec::new();
    let mut access = Vec::new();
    let p = &mut problems;

    // The ceremony directory, when there is one, must be usable (a real directory of this
    // user that nobody else can write into).
    if let Err(e) = layout.check_dirs() {
        p.push(Problem::file_error("ceremony directory", &e));
    }

    // Files already there must be readable and belong to this ceremony.
    let sa_db = match dbs::read_optional::<SaDb>(&layout.sa_db(), SA_DB_FORMAT, plan) {
        Ok(db) => db,
        Err(e) => {
            p.push(Problem::file_error(&plan.sa.name, &e));
            None
        }
    };
    // The trust anchor: phases that rely on the SA key away from the SA node need it
    // pinned, and sa.db must hold the pinned key.
    let relies_on_sa = scope
        .phases
        .iter()
        .any(|ph| matches!(ph, Phase::P2a | Phase::P3a | Phase::P3c | Phase::P3d));
    let in_clone = scope.has(Phase::P1);
    // (Before phase 1 has run, there is nothing to pin yet.)
    if relies_on_sa && !in_clone && plan.sa_fingerprint.is_none() && sa_db.is_some() {
        problem(
            p,
            &plan.sa.name,
            "sa-anchor-missing",
            "no SA fingerprint is pinned: add the sa_fingerprint line phase 1 printed to [ceremony], or give --sa-fingerprint",
        );
    }
    if let Some(db) = &sa_db
        && let Err(e) = crate::trust::check_sa_db(plan, db, plan.sa_fingerprint.as_ref())
    {
        p.push(Problem::error(&plan.sa.name, &e));
    }
    journal_problems(plan, layout, scope, sa_db.as_ref(), p);
    for t in &scope.targets {
        if plan.target(t).is_none() {
            problem(p, t, "not-in-plan", "is not a target of this plan");
            continue;
        }
        if let Err(e) = dbs::read_optional::<CsrDb>(&layout.csr_db(t), CSR_DB_FORMAT, plan) {
            p.push(Problem::file_error(t, &e));
        }
        for kind in &plan.kinds {
            for index in &plan.share_indices {
                if let Err(e) = dbs::read_optional::<ShareBundle>(
                    &layout.bundle(t, *kind, *index),
                    BUNDLE_FORMAT,
                    plan,
                ) {
                    p.push(Problem::file_error(t, &e).with_share(*kind, index.get()));
                }
            }
        }
    }

    // The SA node.
    let sa_phases = scope.of(&[Phase::P1, Phase::P2b, Phase::P3b]);
    if !sa_phases.is_empty()
        && reach(nodes, &plan.sa, p).is_some()
        && let Ok(node) = nodes.node(&plan.sa.name)
    {
        capabilities(node, &plan.sa.name, &sa_phases, p);
        access_controls(node, &plan.sa.name, &sa_phases, &plan.kinds, p, &mut access);
        // sa.db must hold the SA key this node retains.
        if let Some(db) = &sa_db
            && let Ok(Some(token)) = node.retained_public_key(&plan.sa_label())
        {
            let in_db = CertificateSection::decode(&db.sa_certificate).map(|c| c.key);
            let on_node = PublicKeyTokenView::decode(&token).map(|t| t.key);
            if let (Ok(a), Ok(b)) = (in_db, on_node)
                && a != b
            {
                p.push(
                    Problem::new(
                        &plan.sa.name,
                        "key-mismatch",
                        "sa.db holds another SA key than the one this node retains",
                    )
                    .with_file(layout.sa_db().display().to_string()),
                );
            }
        }
    }

    // The source.
    let source_phases = scope.of(&[Phase::P2a, Phase::P3c]);
    let mut source_patterns = Vec::new();
    if source_phases.is_empty() {
        // On a target's server the source is out of reach: its pattern travels in the bundles.
        for kind in &plan.kinds {
            let found = scope.targets.iter().find_map(|t| {
                plan.share_indices.iter().find_map(|i| {
                    dbs::read_optional::<ShareBundle>(
                        &layout.bundle(t, *kind, *i),
                        BUNDLE_FORMAT,
                        plan,
                    )
                    .ok()
                    .flatten()
                    .map(|b| b.source_pattern)
                })
            });
            if let Some(pattern) = found {
                source_patterns.push((*kind, pattern));
            }
        }
    } else {
        if let Some(st) = reach(nodes, &plan.source, p) {
            for kind in &plan.kinds {
                match current(&st, *kind) {
                    Some(pattern) => source_patterns.push((*kind, pattern)),
                    None => p.push(
                        Problem::new(
                            &plan.source.name,
                            "register-not-valid",
                            format!("the {kind} CURRENT register is not valid: nothing to clone"),
                        )
                        .with_master_key(*kind)
                        .with_register("current"),
                    ),
                }
            }
            if let Ok(node) = nodes.node(&plan.source.name) {
                capabilities(node, &plan.source.name, &source_phases, p);
                access_controls(
                    node,
                    &plan.source.name,
                    &source_phases,
                    &plan.kinds,
                    p,
                    &mut access,
                );
                if scope.has(Phase::P3c) && plan.dual_control {
                    dual_control_pending(node, plan, &plan.source.name, p);
                }
            }
        }
    }

    // The targets.
    let target_phases = scope.of(&[Phase::P3a, Phase::P3d]);
    if !target_phases.is_empty() {
        for t in &scope.targets {
            let Some(plan_node) = plan.target(t).cloned() else {
                continue;
            };
            let Some(st) = reach(nodes, &plan_node, p) else {
                continue;
            };
            for kind in &plan.kinds {
                let Some(reg) = st.register(kind.kind()) else {
                    continue;
                };
                let source = source_patterns
                    .iter()
                    .find(|(k, _)| k == kind)
                    .map(|(_, pat)| pat);
                if reg.new == NewState::Partial {
                    p.push(
                        Problem::new(
                            t,
                            "new-register-partial",
                            format!("the {kind} NEW register is partially loaded: clear it first"),
                        )
                        .with_master_key(*kind)
                        .with_register("new"),
                    );
                }
                if reg.new == NewState::Full && reg.new_patterns.first() != source {
                    p.push(
                        Problem::new(
                            t,
                            "new-register-occupied",
                            format!(
                                "the {kind} NEW register holds another key: clear it first (mkclone abort --clear-new)"
                            ),
                        )
                        .with_master_key(*kind)
                        .with_register("new"),
                    );
                }
                if let (Some(cur), Some(src)) = (current(&st, *kind), source)
                    && &cur != src
                    && !options.replace_current
                {
                    p.push(
                        Problem::new(
                            t,
                            "would-replace-current",
                            format!(
                                "the {kind} CURRENT register holds another valid key ({cur}): SET would make it OLD; \
                                 keys enciphered under it must then be re-enciphered. Use --replace-current if intended"
                            ),
                        )
                        .with_master_key(*kind)
                        .with_register("current"),
                    );
                }
            }
            if let Ok(node) = nodes.node(t) {
                capabilities(node, t, &target_phases, p);
                access_controls(node, t, &target_phases, &plan.kinds, p, &mut access);
                if scope.has(Phase::P3d) && plan.dual_control {
                    dual_control_pending(node, plan, t, p);
                }
            }
        }
    }
    DryRunReport { problems, access }
}

/// Under dual control `clone` does not register the SA key itself: say so where it is
/// still missing.
fn dual_control_pending(node: &mut dyn Backend, plan: &Plan, name: &str, p: &mut Vec<Problem>) {
    let registered = node
        .list_registrations()
        .map(|list| {
            list.iter()
                .any(|r| r.name == plan.sa_label() && r.key.is_some() && r.clone)
        })
        .unwrap_or(false);
    if !registered {
        problem(
            p,
            name,
            "dual-control",
            format!(
                "dual control: the SA key is not registered yet; two people run `mkclone register-sa-hash --node {name}` \
                 and `mkclone register-sa-key --node {name}` (after phase {}), or the plan sets dual_control = false",
                if name == plan.source.name {
                    Phase::P2a
                } else {
                    Phase::P3a
                }
            ),
        );
    }
}
