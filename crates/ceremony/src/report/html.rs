//! The page as one self-contained HTML file, made to be printed on A4: page numbers and a
//! footer (ceremony id, journal hash, page n/N) in the page margins, ids never broken.

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

/// Text as a CSS string (between double quotes): only letters, digits and a few safe
/// characters as they are, everything else as a CSS escape, so that nothing can end the
/// string, the rule or the style element.
pub(super) fn css_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || " -_.,:/·".contains(c) {
            out.push(c);
        } else {
            // A trailing space ends the escape.
            out.push_str(&format!("\\{:x} ", u32::from(c)));
        }
    }
    out.push('"');
    out
}

/// The print style. The footer's text is set by [`render_html`] (`@page` margin boxes,
/// which Chromium prints; a browser without them prints the page without the footer).
pub(super) const CSS: &str = "\
@page { size: A4; margin: 13mm 12mm 15mm 12mm; }
body { font-family: 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif; font-size: 8.5pt; color: #000; background: #fff; margin: 0; line-height: 1.25; }
@media screen { body { max-width: 19cm; margin: 1.5cm auto; } }
h1 { font-size: 14pt; margin: 0 0 0.4em; }
h2 { font-size: 11pt; border-bottom: 1px solid #000; margin: 0.9em 0 0.35em; break-after: avoid; page-break-after: avoid; }
h3 { font-size: 9pt; margin: 0.8em 0 0.3em; break-after: avoid; page-break-after: avoid; }
p { margin: 0.3em 0; }
ul { margin: 0.2em 0 0.4em; padding-left: 1.4em; }
table { border-collapse: collapse; width: 100%; margin: 0.2em 0 0.6em; }
th, td { border: 0.5pt solid #666; padding: 1px 3px; text-align: left; vertical-align: top; overflow-wrap: break-word; }
th { background: #e8e8e8; font-weight: bold; }
tr { break-inside: avoid; page-break-inside: avoid; }
thead { display: table-header-group; }
table.timeline { font-size: 7.5pt; table-layout: fixed; }
table.timeline th:nth-child(1) { width: 6%; }
table.timeline th:nth-child(2) { width: 20.5%; }
table.timeline th:nth-child(3) { width: 11.5%; }
table.timeline th:nth-child(4) { width: 40%; }
table.timeline th:nth-child(5) { width: 22%; }
table.kv td:first-child { width: 19%; }
table.timeline tr.group td { background: #f0f0f0; padding-top: 2px; }
.m { font-family: 'DejaVu Sans Mono', 'Liberation Mono', monospace; font-size: 0.94em; white-space: nowrap; }
.path { font-family: 'DejaVu Sans Mono', 'Liberation Mono', monospace; font-size: 0.94em; overflow-wrap: anywhere; }
.strong { font-weight: bold; }
.rehearsal { border: 2px solid #b00000; color: #b00000; font-weight: bold; font-size: 11pt; padding: 0.3em; text-align: center; margin: 0.4em 0 0.8em; }
.tag { color: #b00000; font-weight: bold; }
.footer { display: none; }
section.appendix { break-before: page; page-break-before: always; }
table.signatures td { height: 2.4em; }
table.signatures { break-inside: avoid; page-break-inside: avoid; }
@media screen { .footer { display: block; border-top: 1px solid #000; margin-top: 2em; font-size: 7.5pt; } }
@media print { .rehearsal, .tag { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
";

struct Html;

/// The report as a self-contained, printable HTML page (every value escaped).
pub fn render_html(report: &Report) -> String {
    render(&page(report), &Html)
}

impl Markup for Html {
    fn inline(&self, out: &mut String, inline: &Inline, _cell: bool) {
        let _ = match inline {
            Inline::Text(s) => write!(out, "{}", html(s)),
            Inline::Mono(s) => write!(out, "<span class=\"m\">{}</span>", html(s)),
            Inline::Path(s) => write!(out, "<span class=\"path\">{}</span>", html(s)),
            Inline::Strong(s) => write!(out, "<b>{}</b>", html(s)),
        };
    }

    fn start(&self, out: &mut String, page: &Page) {
        let mark = if page.rehearsal {
            format!(
                " @top-right {{ content: {}; color: #b00000; font: bold 8pt sans-serif; }}",
                css_string("REHEARSAL")
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{CSS}\
             @page {{ @bottom-left {{ content: {}; font: 7pt 'DejaVu Sans Mono', monospace; }} \
             @bottom-right {{ content: \"page \" counter(page) \"/\" counter(pages); font: 7pt sans-serif; }}{mark} }}\n\
             </style>\n</head>\n<body>\n<h1>{}</h1>\n",
            html(&page.title),
            css_string(&page.footer),
            html(&page.title)
        );
        if page.rehearsal {
            let _ = writeln!(
                out,
                "<div class=\"rehearsal\">{}</div>",
                html(REHEARSAL_BANNER)
            );
        }
    }

    fn end(&self, out: &mut String, page: &Page) {
        let _ = write!(
            out,
            "<div class=\"footer\">{}</div>\n</body>\n</html>\n",
            html(&page.footer)
        );
    }

    fn section(&self, out: &mut String, section: &Section, rehearsal: bool) {
        let class = if section.appendix {
            " class=\"appendix\""
        } else {
            ""
        };
        let tag = if rehearsal {
            " <span class=\"tag\">REHEARSAL</span>"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<section{class}>\n<h2>{}{tag}</h2>",
            html(&section.title)
        );
    }

    fn section_end(&self, out: &mut String) {
        out.push_str("</section>\n");
    }

    fn para(&self, out: &mut String, text: &Rich) {
        out.push_str("<p>");
        self.rich(out, text, false);
        out.push_str("</p>\n");
    }

    fn list(&self, out: &mut String, items: &[Rich]) {
        out.push_str("<ul>\n");
        for i in items {
            out.push_str("<li>");
            self.rich(out, i, false);
            out.push_str("</li>\n");
        }
        out.push_str("</ul>\n");
    }

    fn table(&self, out: &mut String, class: &str, head: &[&str], rows: &[Row]) {
        if class.is_empty() {
            out.push_str("<table>\n<thead><tr>");
        } else {
            let _ = write!(out, "<table class=\"{class}\">\n<thead><tr>");
        }
        for h in head {
            let _ = write!(out, "<th>{}</th>", html(h));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            match row {
                Row::Cells(cells) => {
                    out.push_str("<tr>");
                    for c in cells {
                        out.push_str("<td>");
                        self.rich(out, c, true);
                        out.push_str("</td>");
                    }
                }
                Row::Span(text) => {
                    let _ = write!(out, "<tr class=\"group\"><td colspan=\"{}\">", head.len());
                    self.rich(out, text, true);
                    out.push_str("</td>");
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
    }

    fn subheading(&self, out: &mut String, text: &str) {
        let _ = writeln!(out, "<h3>{}</h3>", html(text));
    }

    fn signatures(&self, out: &mut String, names: &[String]) {
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
