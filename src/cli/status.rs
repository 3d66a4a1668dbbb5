//! `mkclone status NODE`.

use std::path::Path;

use mkclone_backend::{
    Backend, Capabilities, NodeStatus, Registration, RetainedKeyInfo, ShareStatus,
};
use serde::Serialize;

use super::output::{Failure, hex, print_json};
use mkclone::config::Config;
use mkclone::nodes;

/// Everything `status` shows.
#[derive(Serialize)]
pub struct NodeView {
    pub node: String,
    pub backend: &'static str,
    pub status: NodeStatus,
    pub shares: Option<ShareStatus>,
    pub retained_keys: Option<Vec<RetainedKeyInfo>>,
    pub registrations: Option<Vec<Registration>>,
    pub capabilities: Capabilities,
}

/// Read what a node can tell; a read its backend cannot do is left out.
pub fn read(name: &str, backend: &mut dyn Backend) -> Result<NodeView, Failure> {
    let status = backend
        .status()
        .map_err(|e| Failure::failed(format!("{name}: {e}")))?;
    Ok(NodeView {
        node: name.into(),
        backend: backend.backend_name(),
        shares: backend.share_status().ok(),
        retained_keys: backend.list_retained_keys().ok(),
        registrations: backend.list_registrations().ok(),
        capabilities: backend.capabilities(),
        status,
    })
}

pub fn render(v: &NodeView) -> String {
    let mut out = String::new();
    let id = &v.status.identity;
    out.push_str(&format!("node {} ({} backend)\n", v.node, v.backend));
    out.push_str(&format!("  serial   {}\n", id.serial));
    out.push_str(&format!(
        "  EID      {}\n",
        id.eid
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "(not set)".into())
    ));
    out.push_str("  master keys:\n");
    for r in &v.status.registers {
        let pats = |list: &[mkclone_backend::VerificationPattern]| {
            list.iter()
                .map(|p| format!("{} {}", p.algorithm().name(), hex(p.bytes())))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "    {:<5} NEW {:<8} {}\n          CURRENT {:<8} {}\n          OLD {:<8} {}\n",
            r.kind.name(),
            format!("{:?}", r.new).to_lowercase(),
            pats(&r.new_patterns),
            format!("{:?}", r.current).to_lowercase(),
            pats(&r.current_patterns),
            format!("{:?}", r.old).to_lowercase(),
            pats(&r.old_patterns),
        ));
    }
    if let Some(s) = &v.shares {
        out.push_str(&format!(
            "  m-of-n   {}\n",
            s.m_of_n
                .map(|m| m.to_string())
                .unwrap_or_else(|| "(not set)".into())
        ));
        for t in &s.tables {
            let g: String = t.generation.iter().map(|x| char::from(x.digit())).collect();
            let r: String = t.reception.iter().map(|x| char::from(x.digit())).collect();
            out.push_str(&format!(
                "  {:<5} shares generated {g}  received {r}  (STATMOFN digits, index 1..15)\n",
                t.kind
            ));
        }
        if !s.tables.is_empty() {
            out.push_str(&format!(
                "  (STATMOFN digits: {})\n",
                mkclone_backend::rules::statmofn::LEGEND
            ));
        }
    }
    if let Some(keys) = &v.retained_keys {
        list(&mut out, "retained keys", keys, |k| {
            format!(
                "{:<30} {}-bit {}{}",
                k.label.as_str(),
                k.bits,
                k.usage.keyword(),
                if k.clone { " CLONE" } else { "" }
            )
        });
    }
    if let Some(regs) = &v.registrations {
        list(&mut out, "registered public keys", regs, |r| {
            format!(
                "{:<30} hash {}{}{}",
                r.name.as_str(),
                r.hash.fingerprint(),
                if r.clone { " CLONE" } else { "" },
                if r.key.is_some() {
                    ", key registered"
                } else {
                    ", key NOT registered yet"
                }
            )
        });
    }
    if !v.capabilities.limits.is_empty() {
        list(
            &mut out,
            "what this node cannot protect",
            &v.capabilities.limits,
            |l| l.clone(),
        );
    }
    out
}

/// A titled list: `  TITLE (N):`, then one indented line per item.
fn list<T>(out: &mut String, title: &str, items: &[T], line: impl Fn(&T) -> String) {
    out.push_str(&format!("  {title} ({}):\n", items.len()));
    for item in items {
        out.push_str(&format!("    {}\n", line(item)));
    }
}

pub fn run(config_path: &Path, node: &str, json: bool) -> Result<(), Failure> {
    let config = Config::load(config_path)?;
    let cfg = config.node(node)?;
    let mut backend = nodes::open(cfg).map_err(|e| Failure::failed(e.to_string()))?;
    let view = read(node, backend.as_mut())?;
    if json {
        print_json("status", &view)?;
    } else {
        print!("{}", render(&view));
    }
    Ok(())
}
