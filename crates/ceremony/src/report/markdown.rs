//! The page in Markdown (CommonMark with GitHub's tables): ids in code spans, every other
//! text escaped.

use super::*;

/// Escape text for Markdown (inline, table cells included): every ASCII punctuation
/// character that could start emphasis, strike-through, code, a link, an entity, an HTML
/// tag or a table cell anywhere gets a backslash, and what could start a block (heading,
/// quote, list, ordered list) at the start.
pub(super) fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let ordered = digits > 0 && matches!(text[digits..].chars().next(), Some('.' | ')'));
    if text.starts_with(['#', '>', '+', '-', '=']) {
        out.push('\\');
    }
    for (i, c) in text.char_indices() {
        match c {
            '\\' | '|' | '*' | '_' | '`' | '<' | '>' | '[' | ']' | '~' | '&' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '.' | ')' if ordered && i == digits => {
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

/// A code span holding `text` as it is: a fence longer than any run of backticks in it,
/// and (in a table) `|` escaped, which GitHub's tables require even in code.
pub(super) fn code(text: &str, cell: bool) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    let body = if cell { text.replace('|', "\\|") } else { text };
    format!("{fence}{pad}{body}{pad}{fence}")
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

struct Markdown;

/// The report as a printable Markdown page.
pub fn render_markdown(report: &Report) -> String {
    render(&page(report), &Markdown)
}

impl Markup for Markdown {
    fn inline(&self, out: &mut String, inline: &Inline, cell: bool) {
        match inline {
            Inline::Text(s) => out.push_str(&md(s)),
            Inline::Mono(s) | Inline::Path(s) => out.push_str(&code(s, cell)),
            Inline::Strong(s) if s.is_empty() => {}
            Inline::Strong(s) => {
                let _ = write!(out, "**{}**", md(s));
            }
        }
    }

    fn start(&self, out: &mut String, page: &Page) {
        let _ = writeln!(out, "# {}\n", md(&page.title));
        if page.rehearsal {
            let _ = writeln!(out, "> **{}**\n", md(REHEARSAL_BANNER));
        }
    }

    fn end(&self, out: &mut String, page: &Page) {
        let _ = writeln!(out, "---\n\n{}\n", code(&page.footer, false));
    }

    fn section(&self, out: &mut String, section: &Section, rehearsal: bool) {
        let tag = if rehearsal { " (REHEARSAL)" } else { "" };
        let _ = writeln!(out, "## {}{tag}\n", md(&section.title));
    }

    fn section_end(&self, _out: &mut String) {}

    fn para(&self, out: &mut String, text: &Rich) {
        self.rich(out, text, false);
        out.push_str("\n\n");
    }

    fn list(&self, out: &mut String, items: &[Rich]) {
        for i in items {
            out.push_str("- ");
            self.rich(out, i, false);
            out.push('\n');
        }
        out.push('\n');
    }

    fn table(&self, out: &mut String, _class: &str, head: &[&str], rows: &[Row]) {
        let _ = writeln!(
            out,
            "| {} |",
            head.iter()
                .map(|h| if h.is_empty() { " ".into() } else { md(h) })
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
        for row in rows {
            let cells: Vec<String> = match row {
                Row::Cells(cells) => cells
                    .iter()
                    .map(|c| {
                        let mut s = String::new();
                        self.rich(&mut s, c, true);
                        if s.is_empty() { " ".into() } else { s }
                    })
                    .collect(),
                // Markdown tables have no spanning cell: the heading in the first, the
                // others empty.
                Row::Span(text) => {
                    let mut s = String::new();
                    self.rich(&mut s, text, true);
                    std::iter::once(s)
                        .chain(std::iter::repeat_n(" ".to_string(), head.len() - 1))
                        .collect()
                }
            };
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out.push('\n');
    }

    fn subheading(&self, out: &mut String, text: &str) {
        let _ = writeln!(out, "### {}\n", md(text));
    }

    fn signatures(&self, out: &mut String, names: &[String]) {
        out.push_str("```text\n");
        let line = "_".repeat(28);
        for name in names {
            let _ = writeln!(
                out,
                "Name: {:<28}  Role: {:<16}  Signature: {line}  Date: {}\n",
                plain_line(name),
                "operator",
                "_".repeat(12)
            );
        }
        for _ in 0..BLANK_SIGNATURE_LINES {
            let _ = writeln!(
                out,
                "Name: {line}  Role: {}  Signature: {line}  Date: {}\n",
                "_".repeat(16),
                "_".repeat(12)
            );
        }
        out.push_str("```\n\n");
    }
}
