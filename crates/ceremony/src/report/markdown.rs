//! The page in Markdown (CommonMark with GitHub's tables): ids in code spans, every other
//! text escaped.

use super::*;

/// Escape text for Markdown (inline, table cells included), so that no value opens a
/// block, starts a table row or an HTML tag wherever it lands in a line:
///
/// - it is written on one line: line breaks (`\n`, `\r`, U+2028, U+2029) and tabs become
///   spaces and every other control character goes, before anything else is judged, so
///   that nothing hidden before a marker moves it off the start;
/// - what could open a block at the start gets a backslash there: `-`, `+`, `=`, and the
///   `.` or `)` after leading digits (an ordered list item);
/// - every ASCII punctuation character that could open a block or start emphasis,
///   strike-through, code, a link, an entity, an HTML tag or a table cell anywhere
///   (`#`, `>`, `*`, `_`, `` ` ``, `~`, `<`, `|`, `[`, `]`, `&`, `!`, `\`) gets one
///   everywhere;
/// - `$` is written `&#36;`: GitHub renders text between dollar signs as math (LaTeX, in
///   which a value could set text of its own or hide the page's), and a backslash before
///   a dollar sign does not reliably stop it (GitHub's "Writing mathematical expressions"
///   offers HTML around it, which this page never writes); an entity is no delimiter.
///
/// Its output also opens no block at the start of a line unless it starts with a space;
/// a text that starts a line (a paragraph's, a list item's) is [`md_line`].
pub(super) fn md(text: &str) -> String {
    escape(text, false)
}

/// [`md`] of a text at the start of a line (a paragraph's, a list item's): its leading
/// space, if any, is written `&#32;` (a backslash cannot escape a space), since four
/// would open an indented code block. [`Markdown`]'s `rich` joins the texts side by side
/// first, so that the start of a line is judged on the whole of it ("1" then ". x" is
/// escaped as "1. x" is).
pub(super) fn md_line(text: &str) -> String {
    escape(text, true)
}

fn escape(text: &str, line_start: bool) -> String {
    let line: String = text
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    let mut out = String::with_capacity(line.len() + 8);
    let rest = line.trim_start_matches(' ');
    let lead = line.len() - rest.len();
    if line_start && lead > 0 {
        out.push_str("&#32;");
        out.push_str(&line[1..lead]);
    } else {
        out.push_str(&line[..lead]);
    }
    // After a leading space (within a line, or written `&#32;`) nothing opens a block.
    let first = lead == 0;
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let ordered = first && digits > 0 && rest[digits..].starts_with(['.', ')']);
    if first && rest.starts_with(['+', '-', '=']) {
        out.push('\\');
    }
    for (i, c) in rest.char_indices() {
        match c {
            '\\' | '|' | '*' | '_' | '`' | '<' | '>' | '[' | ']' | '~' | '&' | '!' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '.' | ')' if ordered && i == digits => {
                out.push('\\');
                out.push(c);
            }
            '$' => out.push_str("&#36;"),
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
    /// Texts side by side are escaped as one text, and the one that starts the line (a
    /// paragraph's, a list item's: nothing written before it) as such ([`md_line`]).
    fn rich(&self, out: &mut String, text: &Rich, cell: bool) {
        let begin = out.len();
        let mut pieces = text.iter().peekable();
        while let Some(inline) = pieces.next() {
            if let Inline::Text(first) = inline {
                let mut joined = first.clone();
                while let Some(Inline::Text(next)) = pieces.peek() {
                    joined.push_str(next);
                    pieces.next();
                }
                let escaped = if !cell && out.len() == begin {
                    md_line(&joined)
                } else {
                    md(&joined)
                };
                out.push_str(&escaped);
            } else {
                self.inline(out, inline, cell);
            }
        }
    }

    fn inline(&self, out: &mut String, inline: &Inline, cell: bool) {
        match inline {
            Inline::Text(s) => out.push_str(&md(s)),
            Inline::Mono(s) | Inline::Path(s) => out.push_str(&code(s, cell)),
            Inline::Strong(s) if s.is_empty() => {}
            Inline::Strong(s) => {
                // Never a thematic break ("** **"), wherever it stands.
                let _ = write!(out, "**{}**", md_line(s));
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Whether `line`, at the start of a line of CommonMark (GitHub's tables included),
    /// would open a block instead of continuing a paragraph's text: an indented code block
    /// (a tab, or four spaces), or, after up to three spaces, a heading, quote, list item,
    /// ordered list item, setext underline, HTML block, table row or link reference
    /// definition (any of `#>+-=<|[`, stricter than CommonMark), a thematic break or list
    /// item of `*` or `_`, or a fence (three backticks or tildes).
    fn opens_block(line: &str) -> bool {
        if line.starts_with('\t') || line.starts_with("    ") {
            return true;
        }
        let rest = line.trim_start_matches(' ');
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let thematic = |c: char| {
            rest.chars().all(|x| x == c || x == ' ' || x == '\t') && rest.matches(c).count() >= 3
        };
        rest.starts_with(['#', '>', '+', '-', '=', '<', '|', '['])
            || (digits > 0 && rest[digits..].starts_with(['.', ')']))
            || ["* ", "*\t"].iter().any(|m| rest.starts_with(m))
            || rest == "*"
            || thematic('*')
            || thematic('_')
            || rest.starts_with("```")
            || rest.starts_with("~~~")
    }

    /// What a reader of the Markdown sees of `md`'s output: each backslash escape of an
    /// ASCII punctuation character is that character; `&#32;` is a space, `&#36;` a dollar
    /// sign.
    fn shown(escaped: &str) -> String {
        let mut out = String::new();
        let mut rest = escaped;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("&#32;") {
                out.push(' ');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("&#36;") {
                out.push('$');
                rest = after;
            } else if c == '\\' && rest[1..].starts_with(|p: char| p.is_ascii_punctuation()) {
                out.push_str(&rest[1..2]);
                rest = &rest[2..];
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }

    /// `text` as one line: line breaks and tabs are spaces, other control characters go.
    fn one_line(text: &str) -> String {
        text.chars()
            .filter_map(|c| match c {
                '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}' => Some(' '),
                c if c.is_control() => None,
                c => Some(c),
            })
            .collect()
    }

    /// A paragraph (and a list item) of `rich` as the Markdown page writes it.
    fn para(rich: &Rich) -> String {
        let mut out = String::new();
        Markdown.para(&mut out, rich);
        out
    }

    /// Values a forged journal or carried file could hold: a block marker after a line
    /// break, a tab, a control character, a Unicode line separator or leading spaces. Each
    /// stays on the line it is written on and opens no block there, even at its start
    /// ([`md_line`]); within a line ([`md`]) its spaces stay spaces.
    #[test]
    fn no_value_opens_a_block_wherever_its_marker_stands() {
        let cases = [
            ("\n# VERDICT: COMPLETE", "&#32;\\# VERDICT: COMPLETE"),
            ("x\n# VERDICT: COMPLETE", "x \\# VERDICT: COMPLETE"),
            ("\r\n## h", "&#32; \\#\\# h"),
            ("\u{7}# VERDICT", "\\# VERDICT"),
            ("\u{1b}> quote", "\\> quote"),
            ("\u{85}- item", "\\- item"),
            ("\t- item", "&#32;- item"),
            ("\u{2028}+ item", "&#32;+ item"),
            ("   # h", "&#32;  \\# h"),
            ("    indented code", "&#32;   indented code"),
            ("\n1. first", "&#32;1. first"),
            ("\u{0}12) x", "12\\) x"),
            ("\n| a | b |", "&#32;\\| a \\| b \\|"),
            ("\n```", "&#32;\\`\\`\\`"),
            ("\n~~~", "&#32;\\~\\~\\~"),
            ("\n<script>x</script>", "&#32;\\<script\\>x\\</script\\>"),
            ("\n***", "&#32;\\*\\*\\*"),
            ("\n===", "&#32;==="),
            ("\n[x]: /u", "&#32;\\[x\\]: /u"),
            ("title #", "title \\#"),
            // GitHub's math: `$...$`, `$$...$$` and `$`...`$` open none.
            (
                "$\\phantom{INCOMPLETE}$",
                "&#36;\\\\phantom{INCOMPLETE}&#36;",
            ),
            ("\n$$x$$", "&#32;&#36;&#36;x&#36;&#36;"),
            ("$`x`$", "&#36;\\`x\\`&#36;"),
        ];
        for (value, want) in cases {
            let got = md_line(value);
            assert_eq!(got, want, "{value:?}");
            assert!(!opens_block(&got), "{value:?} -> {got:?}");
            assert_eq!(shown(&got), one_line(value), "{value:?}");
            // Within a line: the same, but a leading space as it is.
            let inline = md(value);
            match got.strip_prefix("&#32;") {
                Some(rest) => assert_eq!(inline, format!(" {rest}")),
                None => assert_eq!(inline, got),
            }
        }
        assert_eq!(md(" at "), " at ");
    }

    /// A line made of several texts is judged whole: "1" then ". x" (as a finding's
    /// text split around a code span, `prose("1``. x")`) is not an ordered list item.
    #[test]
    fn texts_side_by_side_are_escaped_as_one() {
        for rich in [
            vec![t("1"), t(". x")],
            prose("1``. x"),
            vec![t(""), t("# VERDICT")],
            vec![t("\n"), t("- x")],
            vec![t(" "), t(" "), t("  code")],
            vec![Inline::Strong(String::new()), t("    code")],
            vec![Inline::Strong("\n".into()), t("x")],
        ] {
            let out = para(&rich);
            let line = out
                .strip_suffix("\n\n")
                .expect("a paragraph ends with a blank line");
            assert!(!line.contains('\n'), "{out:?}");
            assert!(!opens_block(line), "{out:?}");
        }
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ \t\n\r\u{7}\u{85}\u{2028}#>+=*_`~<|\\[\\]!&$\\\\().0-9a-]{0,24}",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever a value holds, md and md_line write it on one line, md_line opens no
        /// block at its start (a paragraph's, a list item's), md differs from it only in
        /// keeping a leading space a space (within a line), and a reader sees the value
        /// (its line breaks and tabs as spaces, its other control characters gone).
        #[test]
        fn md_opens_no_block_and_keeps_the_value(v in value()) {
            let line = md_line(&v);
            let inline = md(&v);
            for got in [&line, &inline] {
                prop_assert!(!got.contains(['\n', '\r']), "{:?} -> {:?}", v, got);
                prop_assert_eq!(shown(got), one_line(&v));
            }
            prop_assert!(!opens_block(&line), "{:?} -> {:?}", v, line);
            // No dollar sign is left for GitHub's math to pair.
            prop_assert!(!line.contains('$') && !inline.contains('$'), "{:?} -> {:?}", v, line);
            if !one_line(&v).starts_with(' ') {
                prop_assert_eq!(&inline, &line);
            }
        }

        /// Pieces side by side at the start of a paragraph open no block either.
        #[test]
        fn texts_side_by_side_open_no_block(a in value(), b in value(), strong in any::<bool>()) {
            let first = if strong { Inline::Strong(a) } else { t(a) };
            let out = para(&vec![first, t(b)]);
            let line = out.strip_suffix("\n\n").unwrap_or(&out);
            prop_assert!(!line.contains('\n'), "{:?}", out);
            prop_assert!(!opens_block(line), "{:?}", out);
        }
    }
}
