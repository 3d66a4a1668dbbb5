//! The page as one self-contained HTML file.

use super::*;

/// Escape text for HTML (content and attribute values).
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

pub(super) const CSS: &str = "\
@page { size: A4; margin: 1.5cm; }
body { font-family: 'DejaVu Sans', Arial, sans-serif; font-size: 9.5pt; color: #000; background: #fff; margin: 1.5cm; }
h1 { font-size: 16pt; margin: 0 0 0.5em; }
h2 { font-size: 12.5pt; border-bottom: 1px solid #000; margin: 1.4em 0 0.5em; page-break-after: avoid; break-after: avoid; }
h3 { font-size: 10.5pt; margin: 1em 0 0.4em; page-break-after: avoid; break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: 0.3em 0 1em; }
th, td { border: 1px solid #555; padding: 2px 4px; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { background: #e8e8e8; }
tr { page-break-inside: avoid; break-inside: avoid; }
thead { display: table-header-group; }
.rehearsal { border: 3px solid #b00000; color: #b00000; font-weight: bold; font-size: 13pt; padding: 0.4em; text-align: center; margin: 0.5em 0 1em; }
.tag { color: #b00000; font-weight: bold; }
.strong { font-weight: bold; }
.rehearsal-mark { display: none; }
table.signatures td { height: 2.6em; }
@media print {
  body { margin: 0; }
  .rehearsal-mark { display: block; position: fixed; top: 0; right: 0; color: #b00000; font-weight: bold; border: 2px solid #b00000; padding: 1px 6px; background: #fff; }
  .rehearsal, .tag { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  section { page-break-inside: auto; }
}
";

/// The report as a self-contained, printable HTML page (every value escaped).
pub fn render_html(report: &Report) -> String {
    let page = page(report);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        html(&page.title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", html(&page.title));
    if page.rehearsal {
        // Repeated on every printed page (a fixed element prints on each page).
        out.push_str("<div class=\"rehearsal-mark\">REHEARSAL</div>\n");
        let _ = writeln!(
            out,
            "<div class=\"rehearsal\">{}</div>",
            html(REHEARSAL_BANNER)
        );
    }
    for b in &page.intro {
        html_block(&mut out, b);
    }
    for s in &page.sections {
        out.push_str("<section>\n");
        let tag = if page.rehearsal {
            " <span class=\"tag\">REHEARSAL</span>"
        } else {
            ""
        };
        let _ = writeln!(out, "<h2>{}{tag}</h2>", html(&s.title));
        for b in &s.blocks {
            html_block(&mut out, b);
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

pub(super) fn html_block(out: &mut String, b: &Block) {
    match b {
        Block::Text(t) => {
            let _ = writeln!(out, "<p>{}</p>", html(t));
        }
        Block::Strong(t) => {
            let _ = writeln!(out, "<p class=\"strong\">{}</p>", html(t));
        }
        Block::Subheading(t) => {
            let _ = writeln!(out, "<h3>{}</h3>", html(t));
        }
        Block::List(items) => {
            out.push_str("<ul>\n");
            for i in items {
                let _ = writeln!(out, "<li>{}</li>", html(i));
            }
            out.push_str("</ul>\n");
        }
        Block::Table { head, rows } => {
            out.push_str("<table>\n<thead><tr>");
            for h in head {
                let _ = write!(out, "<th>{}</th>", html(h));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            for row in rows {
                out.push_str("<tr>");
                for c in row {
                    let _ = write!(out, "<td>{}</td>", html(c));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        Block::Signatures(names) => {
            out.push_str(
                "<table class=\"signatures\">\n<thead><tr><th>name</th><th>role</th><th>signature</th><th>date</th></tr></thead>\n<tbody>\n",
            );
            for name in names {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>operator</td><td></td><td></td></tr>",
                    html(name)
                );
            }
            for _ in 0..BLANK_SIGNATURE_LINES {
                out.push_str("<tr><td></td><td></td><td></td><td></td></tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
    }
}
