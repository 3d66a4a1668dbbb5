//! `mkclone worksheet`: what the operators fill in and sign before and during a ceremony,
//! printed from the plan alone (no node is opened, nothing is written).
//!
//! IBM's CNM cloning procedure asks for two such papers: a table of every task with its
//! node, the profile and role that run it and the responsible individual, and a worksheet
//! of the cloning information (overview of the phases: "Overview of cloning a master
//! key", IBM Documentation for AIX 7.3, CNM utility). The rows here are mkclone's own
//! steps of this plan, in mkclone's words; the profile, role and person columns are blank
//! because only the installation knows them.

use std::path::Path;

use mkclone_backend::CloneableKind;
use mkclone_ceremony::dbs::{Layout, bundle_name};
use mkclone_ceremony::{Plan, PlanNode, Role};
use serde::Serialize;
use sha2::{Digest, Sha256};

use mkclone_ceremony::report::escape_html as html_escape;

use super::output::{Failure, hex, print_json};
use mkclone::config::Config;

/// One task of the responsibilities table.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Task {
    /// "before", a phase ("1", "2a", …) or "after".
    pub phase: String,
    pub task: String,
    pub node: String,
    /// What the node is (backend and device), so nobody runs a task on the wrong one.
    pub device: String,
}

/// A node of the plan (name, EID, pinned serial) as the worksheet lists it.
#[derive(Serialize, Debug)]
pub struct NodeLine {
    /// "sa", "source", "target".
    pub role: Role,
    pub device: String,
    #[serde(flatten)]
    pub node: PlanNode,
}

impl NodeLine {
    const HEADER: [&'static str; 5] = ["role", "node", "EID", "serial", "device"];

    /// The cells of the node's row, as [`Self::HEADER`] names them.
    fn cells(&self) -> [String; 5] {
        [
            self.role.name().to_string(),
            self.node.name.clone(),
            self.node.eid.to_string().trim_end().to_string(),
            self.node
                .expect_serial
                .as_ref()
                .map_or("(not pinned)".into(), ToString::to_string),
            self.device.clone(),
        ]
    }
}

/// What the worksheet shows of one target.
#[derive(Serialize, Debug)]
pub struct TargetLine {
    pub node: String,
    pub csr_db: String,
    /// The share bundles carried from the source to this target.
    pub bundles: Vec<String>,
}

#[derive(Serialize, Debug)]
pub struct Worksheet {
    pub ceremony: String,
    pub rehearsal: bool,
    pub configuration: String,
    pub configuration_sha256: String,
    pub directory: String,
    /// The master keys cloned ("sym", "asym"; the report's `plan.kinds`).
    pub kinds: Vec<CloneableKind>,
    /// m of m-of-n.
    pub m: u8,
    /// n of m-of-n.
    pub n: u8,
    pub share_indices: Vec<u8>,
    pub rsa_bits: u16,
    pub dual_control: bool,
    /// Pinned in the configuration, or `None`: to be written in after phase 1.
    pub sa_fingerprint: Option<String>,
    /// Pinned source CURRENT patterns by kind, or `None` for each to be written in.
    pub source_patterns: Vec<SourcePattern>,
    pub nodes: Vec<NodeLine>,
    pub targets: Vec<TargetLine>,
    pub tasks: Vec<Task>,
}

/// A source CURRENT pattern the plan pins (`None`: to be written in).
#[derive(Serialize, Debug)]
pub struct SourcePattern {
    pub kind: CloneableKind,
    pub pattern: Option<String>,
}

/// The tasks of `plan` in the order they run, each with its node.
pub fn tasks(plan: &Plan, device: &dyn Fn(&str) -> String) -> Vec<Task> {
    let mut out = Vec::new();
    let mut add = |phase: &str, task: String, node: &str| {
        out.push(Task {
            phase: phase.into(),
            task,
            node: node.into(),
            device: device(node),
        });
    };
    let sa = plan.sa.name.as_str();
    let source = plan.source.name.as_str();
    let mut audited = Vec::new();
    for n in plan.nodes() {
        if !audited.contains(&n.name.as_str()) {
            audited.push(n.name.as_str());
            add(
                "before",
                "Audit access controls (roles may run this node's steps; nothing else)".into(),
                &n.name,
            );
        }
    }
    add(
        "1",
        "Generate the SA key; create sa.db; record the SA fingerprint".into(),
        sa,
    );
    let register = |add: &mut dyn FnMut(&str, String, &str), phase: &str, node: &str| {
        if plan.dual_control {
            add(
                phase,
                "Register the SA public key's hash (first person)".into(),
                node,
            );
            add(
                phase,
                "Register the SA public key (second person)".into(),
                node,
            );
        } else {
            add(phase, "Install the SA public key".into(), node);
        }
    };
    add(
        "2a",
        format!(
            "Set the EID {} and m-of-n {}-of-{}; generate the CSS key into sa.db",
            plan.source.eid,
            plan.m_of_n.m(),
            plan.m_of_n.n()
        ),
        source,
    );
    register(&mut add, "2a", source);
    add("2b", "Certify the CSS key into sa.db".into(), sa);
    for t in &plan.targets {
        let target = t.name.as_str();
        add(
            "3a",
            format!(
                "Set the EID {} and m-of-n; generate the CSR key into {}",
                t.eid,
                file_name(&Layout::new("").csr_db(target))
            ),
            target,
        );
        register(&mut add, "3a", target);
        add("3b", format!("Certify {target}'s CSR key"), sa);
        add(
            "3c",
            format!(
                "Obtain shares {} for {target}",
                indices(plan)
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            source,
        );
        add(
            "3d",
            "Install the shares; compare the patterns with the source's".into(),
            target,
        );
        for kind in &plan.kinds {
            add("3d", format!("Set the {kind} master key"), target);
        }
    }
    for t in &plan.targets {
        add(
            "after",
            "Erase the carried csr.db and share bundles".into(),
            &t.name,
        );
    }
    add(
        "after",
        "Write and sign the ceremony report (mkclone report)".into(),
        sa,
    );
    out
}

fn indices(plan: &Plan) -> Vec<u8> {
    plan.share_indices.iter().map(|i| i.get()).collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The worksheet of `config`, whose file held `text`.
pub fn build(config: &Config, text: &[u8]) -> Worksheet {
    let plan = &config.plan;
    let device = |name: &str| {
        config
            .nodes
            .get(name)
            .map(|n| n.backend.device())
            .unwrap_or_default()
    };
    let node_line = |role: Role, n: &PlanNode| NodeLine {
        role,
        device: device(&n.name),
        node: n.clone(),
    };
    let mut nodes = vec![
        node_line(Role::Sa, &plan.sa),
        node_line(Role::Source, &plan.source),
    ];
    nodes.extend(plan.targets.iter().map(|t| node_line(Role::Target, t)));
    let layout = Layout::new("");
    let targets = plan
        .targets
        .iter()
        .map(|t| TargetLine {
            node: t.name.clone(),
            csr_db: file_name(&layout.csr_db(&t.name)),
            bundles: plan
                .kinds
                .iter()
                .flat_map(|k| {
                    plan.share_indices
                        .iter()
                        .map(move |i| bundle_name(&t.name, *k, *i))
                })
                .collect(),
        })
        .collect();
    Worksheet {
        ceremony: plan.id.clone(),
        rehearsal: plan.rehearsal,
        configuration: config.path.display().to_string(),
        configuration_sha256: hex(&Sha256::digest(text)),
        directory: config.directory.display().to_string(),
        kinds: plan.kinds.clone(),
        m: plan.m_of_n.m(),
        n: plan.m_of_n.n(),
        share_indices: indices(plan),
        rsa_bits: plan.bits.bits(),
        dual_control: plan.dual_control,
        sa_fingerprint: plan.sa_fingerprint.as_ref().map(|f| f.to_string()),
        source_patterns: plan
            .kinds
            .iter()
            .map(|k| SourcePattern {
                kind: *k,
                pattern: pattern(plan, *k),
            })
            .collect(),
        nodes,
        targets,
        tasks: tasks(plan, &device),
    }
}

fn pattern(plan: &Plan, kind: CloneableKind) -> Option<String> {
    plan.source_patterns
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, p)| hex(p.bytes()))
}

/// A blank to be written in by hand.
const BLANK: &str = "________________________";

fn or_blank(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or(BLANK)
}

/// The worksheet as plain text (for a terminal or a text printer).
pub fn render_text(w: &Worksheet) -> String {
    let mut out = format!(
        "mkclone ceremony worksheet: {}{}\n\
         configuration {} (SHA-256 {})\n\n\
         1. Tasks and responsibilities\n\n",
        w.ceremony,
        if w.rehearsal { " (REHEARSAL)" } else { "" },
        w.configuration,
        w.configuration_sha256
    );
    let rows: Vec<[&str; 7]> = w
        .tasks
        .iter()
        .map(|t| {
            [
                t.phase.as_str(),
                t.task.as_str(),
                t.node.as_str(),
                "",
                "",
                "",
                "",
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "phase",
            "task",
            "node",
            "profile",
            "role",
            "responsible individual",
            "initials",
        ],
        &rows,
    ));
    out.push_str("\n2. Cloning information\n\n");
    let info = information(w);
    let width = info.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &info {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out.push_str("\n  nodes:\n");
    let cells: Vec<[String; 5]> = w.nodes.iter().map(NodeLine::cells).collect();
    let rows: Vec<[&str; 5]> = cells
        .iter()
        .map(|c| c.each_ref().map(String::as_str))
        .collect();
    out.push_str(&indent(&table(&NodeLine::HEADER, &rows)));
    for t in &w.targets {
        out.push_str(&format!(
            "\n  target {}: CSR fingerprint (phase 3a) {BLANK}\n    carried: {} (3a -> SA -> source), {}\n    patterns after SET {BLANK}  date/time {BLANK}\n",
            t.node,
            t.csr_db,
            t.bundles.join(", ")
        ));
    }
    out.push_str(&format!(
        "\n  Signed (SA operator) {BLANK}   (source operator) {BLANK}   (witness) {BLANK}\n"
    ));
    out
}

/// The key/value lines of the cloning information.
fn information(w: &Worksheet) -> Vec<(&'static str, String)> {
    let mut info = vec![
        ("ceremony directory", w.directory.clone()),
        (
            "master keys",
            w.kinds
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "m-of-n",
            format!(
                "{} of {} (each target receives shares {})",
                w.m,
                w.n,
                w.share_indices
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        ("RSA key bits (SA, CSS, CSR)", w.rsa_bits.to_string()),
        (
            "dual control",
            if w.dual_control {
                "yes: two persons register the SA key on each node".into()
            } else {
                "no".into()
            },
        ),
        (
            "SA fingerprint (phase 1)",
            or_blank(&w.sa_fingerprint).to_string(),
        ),
        ("CSS fingerprint (phase 2a)", BLANK.to_string()),
    ];
    for SourcePattern { kind, pattern: p } in &w.source_patterns {
        info.push((
            if *kind == CloneableKind::Sym {
                "source CURRENT pattern, SYM"
            } else {
                "source CURRENT pattern, ASYM"
            },
            or_blank(p).to_string(),
        ));
    }
    info
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// A plain-text table: a header, a rule, rows; columns as wide as their widest cell.
fn table<const N: usize>(header: &[&str; N], rows: &[[&str; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str; N]| -> String {
        let mut l = String::from("  ");
        for (cell, w) in cells.iter().zip(widths) {
            l.push_str(&format!("{cell:<w$}  "));
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&std::array::from_fn(|i| rule[i].as_str())));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// The worksheet as a printable HTML page (A4, blanks as lines to write on).
pub fn render_html(w: &Worksheet) -> String {
    let e = html_escape;
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>mkclone worksheet {id}</title><style>\
         @page {{ size: A4; margin: 15mm }} body {{ font: 10pt sans-serif }} \
         table {{ border-collapse: collapse; width: 100% }} td, th {{ border: 1px solid #444; padding: 3px; vertical-align: top }} \
         td.blank {{ min-width: 25mm }} code {{ font-family: monospace; white-space: nowrap }} \
         tr {{ break-inside: avoid }}</style></head><body>\n\
         <h1>Ceremony worksheet: <code>{id}</code>{rehearsal}</h1>\n\
         <p>Configuration <code>{path}</code>, SHA-256 <code>{sha}</code></p>\n\
         <h2>1. Tasks and responsibilities</h2>\n<table><tr><th>phase</th><th>task</th><th>node</th>\
         <th>profile</th><th>role</th><th>responsible individual</th><th>initials</th></tr>\n",
        id = e(&w.ceremony),
        rehearsal = if w.rehearsal { " (REHEARSAL)" } else { "" },
        path = e(&w.configuration),
        sha = e(&w.configuration_sha256),
    );
    for t in &w.tasks {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><code>{}</code><br><small>{}</small></td>\
             <td class=\"blank\"></td><td class=\"blank\"></td><td class=\"blank\"></td><td class=\"blank\"></td></tr>\n",
            e(&t.phase),
            e(&t.task),
            e(&t.node),
            e(&t.device)
        ));
    }
    out.push_str("</table>\n<h2>2. Cloning information</h2>\n<table>\n");
    for (k, v) in information(w) {
        let cell = if v == BLANK {
            "<td class=\"blank\"></td>".to_string()
        } else {
            format!("<td><code>{}</code></td>", e(&v))
        };
        out.push_str(&format!("<tr><th>{}</th>{cell}</tr>\n", e(k)));
    }
    out.push_str("</table>\n<h3>Nodes</h3>\n<table><tr>");
    for h in NodeLine::HEADER {
        out.push_str(&format!("<th>{h}</th>"));
    }
    out.push_str("</tr>\n");
    for n in &w.nodes {
        let [role, name, eid, serial, device] = n.cells().map(|c| e(&c));
        out.push_str(&format!(
            "<tr><td>{role}</td><td><code>{name}</code></td><td><code>{eid}</code></td><td><code>{serial}</code></td><td>{device}</td></tr>\n"
        ));
    }
    out.push_str("</table>\n<h3>Targets</h3>\n<table><tr><th>target</th><th>carried files</th><th>CSR fingerprint (3a)</th><th>patterns after SET</th><th>date/time</th></tr>\n");
    for t in &w.targets {
        out.push_str(&format!(
            "<tr><td><code>{}</code></td><td><code>{}</code><br>{}</td><td class=\"blank\"></td><td class=\"blank\"></td><td class=\"blank\"></td></tr>\n",
            e(&t.node),
            e(&t.csr_db),
            t.bundles.iter().map(|b| format!("<code>{}</code>", e(b))).collect::<Vec<_>>().join("<br>")
        ));
    }
    out.push_str(
        "</table>\n<h3>Signatures</h3>\n<table><tr><th>SA operator</th><th>source operator</th><th>witness</th></tr>\
         <tr><td class=\"blank\" style=\"height:15mm\"></td><td class=\"blank\"></td><td class=\"blank\"></td></tr></table>\n</body></html>\n",
    );
    out
}

pub fn run(config_path: &Path, html: bool, json: bool) -> Result<(), Failure> {
    // One read: the digest is of the very bytes the plan was parsed from.
    let text = std::fs::read_to_string(config_path).map_err(|source| {
        mkclone::config::ConfigError::Read {
            path: config_path.into(),
            source,
        }
    })?;
    let config = Config::parse(config_path, &text)?;
    let sheet = build(&config, text.as_bytes());
    if json {
        print_json("worksheet", &sheet)?;
    } else if html {
        print!("{}", render_html(&sheet));
    } else {
        // The plan's paths and names as the configuration wrote them: no control character
        // reaches the terminal raw.
        print!("{}", super::output::terminal_text(&render_text(&sheet)));
    }
    Ok(())
}
