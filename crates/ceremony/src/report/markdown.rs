//! The page in Markdown.

use super::*;

/// Escape text for Markdown (inline, table cells included): what could start emphasis,
/// code, a link, an HTML tag or a table cell anywhere, and a block (heading, quote, list)
/// at the start.
pub(super) fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    if text.starts_with(['#', '>', '+', '-', '=']) {
        out.push('\\');
    }
    for c in text.chars() {
        match c {
            '\\' | '|' | '*' | '_' | '`' | '<' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Text on one line of a fenced block: no control characters, no backticks.
pub(super) fn plain_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// The report as a printable Markdown page.
pub fn render_markdown(report: &Report) -> String {
    let page = page(report);
    let tag = if page.rehearsal { " (REHEARSAL)" } else { "" };
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", md(&page.title));
    if page.rehearsal {
        let _ = writeln!(out, "> **{}**\n", md(REHEARSAL_BANNER));
    }
    for b in &page.intro {
        md_block(&mut out, b);
    }
    for s in &page.sections {
        let _ = writeln!(out, "## {}{tag}\n", md(&s.title));
        for b in &s.blocks {
            md_block(&mut out, b);
        }
    }
    out
}

pub(super) fn md_block(out: &mut String, b: &Block) {
    match b {
        Block::Text(t) => {
            let _ = writeln!(out, "{}\n", md(t));
        }
        Block::Strong(t) => {
            let _ = writeln!(out, "**{}**\n", md(t));
        }
        Block::Subheading(t) => {
            let _ = writeln!(out, "### {}\n", md(t));
        }
        Block::List(items) => {
            for i in items {
                let _ = writeln!(out, "- {}", md(i));
            }
            out.push('\n');
        }
        Block::Table { head, rows } => {
            let _ = writeln!(
                out,
                "| {} |",
                head.iter().map(|h| md(h)).collect::<Vec<_>>().join(" | ")
            );
            let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
            for row in rows {
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| if c.is_empty() { " ".into() } else { md(c) })
                    .collect();
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
            out.push('\n');
        }
        Block::Signatures(names) => {
            out.push_str("```text\n");
            let line = "_".repeat(28);
            for name in names {
                let _ = writeln!(
                    out,
                    "Name: {:<28}  Role: {:<16}  Signature: {line}  Date: {}",
                    plain_line(name),
                    "operator",
                    "_".repeat(12)
                );
                out.push('\n');
            }
            for _ in 0..BLANK_SIGNATURE_LINES {
                let _ = writeln!(
                    out,
                    "Name: {line}  Role: {}  Signature: {line}  Date: {}",
                    "_".repeat(16),
                    "_".repeat(12)
                );
                out.push('\n');
            }
            out.push_str("```\n\n");
        }
    }
}
