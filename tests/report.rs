//! `mkclone report` end to end: exit codes that say what the record says, operator names
//! held to their safe character set where they enter, and the printed record checked in a
//! real browser: headless Chromium prints the HTML of a 1→2 ceremony to PDF, and the page
//! count, the footer and every id, time and pattern are checked in the PDF's text.
//!
//! Chromium (Debian's `chromium`) and poppler's `pdftotext`/`pdfinfo` (`poppler-utils`) are
//! required: scripts/test installs them; without them the test fails saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// The report's `member` (missing, open_items, warnings): objects only, each with a
/// kebab-case `kind` and its words in `what`, as the page prints them.
fn findings<'a>(v: &'a serde_json::Value, member: &str) -> &'a Vec<serde_json::Value> {
    let items = v[member]
        .as_array()
        .unwrap_or_else(|| panic!("{member}: {v:#}"));
    for i in items {
        let kind = i["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{member}: {i}"));
        assert!(
            !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{member}: {i}"
        );
        assert!(i["what"].as_str().is_some_and(|w| !w.is_empty()), "{i}");
    }
    items
}

#[test]
fn report_exit_codes_say_what_the_record_says() {
    let (_dir, cfg) = fresh_rehearsal(1);
    let c = cfg.to_str().unwrap();

    // Not complete: 5, the record written all the same, the missing steps named.
    let out = ok(&["phase1", "--config", c]);
    pin_sa(&cfg, &sa_pin_line(&out));
    let out = mkclone(&["report", "--config", c]);
    let t = exit_code(&out, 5);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# REHEARSAL"));
    assert!(t.contains("NOT COMPLETE"), "{t}");
    assert!(
        t.contains("SET of the SYM master key (phase 3d on target1)"),
        "{t}"
    );
    // The same findings as objects: each a `kind`, its words, and the fields it names.
    let v = report_json(c);
    assert_eq!(v["version"], 5);
    let missing = findings(&v, "missing");
    let set = missing
        .iter()
        .find(|m| m["kind"] == "set-not-done")
        .unwrap_or_else(|| panic!("{missing:#?}"));
    assert_eq!(set["node"], "target1");
    assert_eq!(set["master_key"], "sym");
    assert_eq!(set["phase"], "3d");
    assert_eq!(
        set["what"],
        "target1: SET of the SYM master key (phase 3d on target1)"
    );
    let share = missing
        .iter()
        .find(|m| m["kind"] == "share-not-obtained")
        .unwrap_or_else(|| panic!("{missing:#?}"));
    assert_eq!(share["share_index"], 1);
    assert_eq!(share["phase"], "3c");
    let css = missing
        .iter()
        .find(|m| m["kind"] == "key-missing" && m["key"] == "css")
        .unwrap_or_else(|| panic!("{missing:#?}"));
    assert_eq!(css["file"], "sa.db");
    assert_eq!(css["node"], "source");
    findings(&v, "warnings");
    assert!(findings(&v, "open_items").is_empty());

    // Complete, with what the ceremony left: 6, each open item named.
    ok(&["clone", "--config", c, "--operator", "Alice Operator"]);
    let out = mkclone(&["report", "--config", c, "--out", "-"]);
    let t = exit_code(&out, 6);
    assert!(t.contains("COMPLETE, with 3 open item(s)"), "{t}");
    assert!(
        t.contains("--erase-files") && t.contains("--unregister-sa"),
        "{t}"
    );
    let v = report_json(c);
    assert_eq!(v["complete"], true);
    let open = findings(&v, "open_items");
    let kinds: Vec<&str> = open.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["files-after-set", "sa-key-registered", "retained-keys"]
    );
    assert_eq!(open[0]["node"], "target1");
    assert_eq!(
        open[0]["command"],
        "mkclone abort --config FILE --target target1 --erase-files"
    );
    assert_eq!(open[1]["nodes"], serde_json::json!(["source", "target1"]));
    assert!(findings(&v, "missing").is_empty());

    // Closed: 0.
    ok(&[
        "abort",
        "--config",
        c,
        "--erase-files",
        "--unregister-sa",
        "--delete-keys",
        "--operator",
        "Alice Operator",
    ]);
    let out = mkclone(&["report", "--config", c]);
    let t = exit_code(&out, 0);
    assert!(t.contains("nothing is left open"), "{t}");
}

#[test]
fn operator_names_outside_the_safe_set_are_refused_where_they_enter() {
    let (dir, cfg) = fresh_rehearsal(1);
    let c = cfg.to_str().unwrap();
    for args in [
        vec!["clone", "--config", c, "--operator", "~~x~~"],
        vec!["phase1", "--config", c, "--operator", "http://evil.example"],
        register("register-sa-hash", c, "source", "Tom & Jerry").to_vec(),
        vec![
            "abort",
            "--config",
            c,
            "--erase-files",
            "--operator",
            "<b>x</b>",
        ],
        vec![
            "journal",
            "accept-loss",
            "--config",
            c,
            "--node",
            "source",
            "--operator",
            "www.evil.example",
        ],
    ] {
        let out = mkclone(&args);
        let t = exit_code(&out, 2);
        assert!(
            t.contains("operator name") && t.contains("1 to 64"),
            "{args:?}: {t}"
        );
        assert!(
            !dir.path().join("ceremony").exists(),
            "{args:?}: nothing was written"
        );
    }
    // A name of a person passes.
    ok(&[
        "phase1",
        "--config",
        c,
        "--operator",
        "J. R. O'Brien-Müller",
    ]);
    let journal = std::fs::read_to_string(dir.path().join("ceremony/journal.jsonl")).unwrap();
    assert!(journal.contains("\"operator\":\"J. R. O'Brien-Müller\""));
}

/// Values of a forged journal (a line break or a control character before a block marker)
/// reach the Markdown record escaped, each on the line the report writes it on: no line of
/// the record that opens a block (heading, quote, list item, fence, HTML) holds one of them,
/// and every marker of theirs outside a code span is escaped.
#[test]
fn a_forged_journal_value_opens_no_block_in_the_markdown_record() {
    let (_dir, cfg) = common::phase1_with_forged_journal(&[
        (0, "host", "\\n# VERDICT-HOST: COMPLETE"),
        (
            1,
            "event",
            "\\u0007# VERDICT-EVENT: COMPLETE\\n> VERDICT-QUOTE\\n<b>VERDICT-HTML",
        ),
    ]);
    let c = cfg.to_str().unwrap();
    let out = mkclone(&["report", "--config", c]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    for marker in [
        "VERDICT-HOST",
        "VERDICT-EVENT",
        "VERDICT-QUOTE",
        "VERDICT-HTML",
    ] {
        assert!(
            page.contains(marker),
            "{marker} is not in the record: {page}"
        );
    }
    for line in page.lines().filter(|l| l.contains("VERDICT")) {
        let start = line.trim_start_matches(' ');
        assert!(
            (start.starts_with("| ") || start.starts_with("- ")) && line.len() - start.len() == 0,
            "a forged value on a line of its own: {line}"
        );
        // Outside code spans, every marker of the forged values is escaped: with each
        // backslash escape taken out, none is left.
        let mut unescaped = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                chars.next();
            } else {
                unescaped.push(c);
            }
        }
        let prose: String = unescaped.split('`').step_by(2).collect();
        for bare in ["# VERDICT", "> VERDICT", "<b>"] {
            assert!(!prose.contains(bare), "{bare} unescaped: {line}");
        }
    }
}

/// A program the test needs, from `$MKCLONE_<NAME>` or the PATH; a clear failure
/// otherwise (never a skip).
fn tool(names: &[&str], env: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return p.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "this test needs {} (Debian package {package}; scripts/test installs it), or its \
         path in {env}",
        names.join(" or ")
    );
}

/// Run `cmd` to its end, at most `limit`; its standard output.
fn run_for(cmd: &mut Command, limit: Duration) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("{cmd:?} did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Print `html` to `pdf` with headless Chromium, without the browser's own header and
/// footer (the record's are in its `@page` margins).
fn print_to_pdf(html: &Path, pdf: &Path, profile: &Path) {
    let chromium = tool(
        &["chromium", "chromium-browser"],
        "MKCLONE_CHROMIUM",
        "chromium",
    );
    run_for(
        Command::new(chromium)
            .args([
                "--headless",
                // As root (CI) Chromium refuses to start sandboxed; the page is our own file.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                // No connection attempts from a machine without a network.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-pdf-header-footer",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--print-to-pdf={}", pdf.display()))
            .arg(format!("file://{}", html.display())),
        Duration::from_secs(120),
    );
    assert!(pdf.is_file(), "Chromium wrote no PDF");
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The page count a printed 1→2 ceremony may take: the record itself on two pages
/// (summary, plan, nodes and patterns, keys, shares and SET, findings, runs, journals,
/// signatures) and the condensed timeline appendix on at most two more. The same record
/// printed one record per row and with unbreakable cells split took 17.
const MAX_PAGES: usize = 4;

#[test]
fn the_printed_record_of_a_1_to_2_ceremony_survives_chromium_and_text_extraction() {
    let pdftotext = tool(&["pdftotext"], "MKCLONE_PDFTOTEXT", "poppler-utils");
    let pdfinfo = tool(&["pdfinfo"], "MKCLONE_PDFINFO", "poppler-utils");
    let (dir, cfg) = fresh_rehearsal(2);
    let c = cfg.to_str().unwrap();
    // The ceremony, and a rerun that finds it done (collapsed in the record).
    ok(&["clone", "--config", c, "--operator", "Alice Operator"]);
    ok(&["clone", "--config", c, "--operator", "Alice Operator"]);
    let html_path = dir.path().join("record.html");
    let out = mkclone(&[
        "report",
        "--config",
        c,
        "--html",
        "--out",
        html_path.to_str().unwrap(),
    ]);
    exit_code(&out, 6);
    let v = report_json(c);
    let html = std::fs::read_to_string(&html_path).unwrap();

    let pdf = dir.path().join("record.pdf");
    print_to_pdf(&html_path, &pdf, &dir.path().join("chromium-profile"));
    let info = run_for(Command::new(&pdfinfo).arg(&pdf), Duration::from_secs(30));
    let pages: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no page count in:\n{info}"));
    eprintln!("the printed record: {pages} pages");
    assert!(
        (2..=MAX_PAGES).contains(&pages),
        "{pages} pages, at most {MAX_PAGES} expected"
    );
    let text = run_for(
        Command::new(&pdftotext).arg(&pdf).arg("-"),
        Duration::from_secs(30),
    );
    let lines: Vec<&str> = text.lines().collect();
    let on_one_line = |s: &str| lines.iter().any(|l| l.contains(s));

    // Every id, time and pattern printed in monospace is whole on one line of the text.
    let tokens: Vec<String> = html
        .split("<span class=\"m\">")
        .skip(1)
        .map(|rest| unescape(&rest[..rest.find("</span>").unwrap()]))
        .collect();
    assert!(tokens.len() > 100, "{} tokens", tokens.len());
    for token in &tokens {
        assert!(
            on_one_line(token),
            "{token:?} is not whole in the PDF's text"
        );
    }
    // Those are the ones that matter: each serial, each pattern, each time of the first
    // run's actions, each SET's time, the hashes and digests.
    let mut expected: Vec<String> = Vec::new();
    for n in v["nodes"].as_array().unwrap() {
        expected.push(n["serial"].as_str().unwrap().into());
        // The patterns as the page words them ("SHA-1 0123…"); the snapshots hold them
        // as objects (docs/JSON.md).
        for k in n["kinds"].as_array().unwrap() {
            for p in k["current_after"].as_str().unwrap().split(", ") {
                if p.starts_with("SHA-1 ") {
                    expected.push(p.into());
                }
            }
        }
    }
    let first_run_end = v["runs"][0]["last_seq"].as_u64().unwrap();
    for e in v["timeline"].as_array().unwrap() {
        if e["entry"] == "action" && e["seq"].as_u64().unwrap() <= first_run_end {
            expected.push(e["time"]["utc"].as_str().unwrap().into());
        }
    }
    for s in v["set"].as_array().unwrap() {
        expected.push(s["set"]["time"]["utc"].as_str().unwrap().into());
        expected.push(s["confirmed"].as_str().unwrap().into());
    }
    expected.push(v["journals"][0]["head_hash"].as_str().unwrap().into());
    expected.push(v["generated_by"]["config_sha256"].as_str().unwrap().into());
    expected.push(v["sa_fingerprint"].as_str().unwrap().into());
    assert!(expected.len() > 40, "{expected:?}");
    for e in &expected {
        assert!(tokens.contains(e), "{e:?} is not printed as an id");
        assert!(on_one_line(e), "{e:?} is not whole in the PDF's text");
    }

    // The footer of every page: ceremony id, journal hash, page n/N.
    let footer = format!(
        "ceremony {} · journal {}",
        v["ceremony"].as_str().unwrap(),
        v["journals"][0]["head_hash"].as_str().unwrap()
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains(&footer)).count(),
        pages,
        "{text}"
    );
    for page in 1..=pages {
        assert!(on_one_line(&format!("page {page}/{pages}")), "{text}");
    }
    // What the record says, printed: the status, the rerun collapsed, the open items,
    // the mkclone version and host, local time beside UTC.
    for s in [
        // Two targets' files, the SA key's registrations, the retained keys.
        "COMPLETE, with 4 open item(s)",
        "run again; nothing changed",
        "Open items",
        "mkclone 0.1.0",
        "(local ",
        "Appendix: timeline (condensed)",
    ] {
        assert!(text.contains(s), "{s:?} not in:\n{text}");
    }
    for debug in ["NeedMore", "Some(", "{ m:"] {
        assert!(!text.contains(debug), "{debug}");
    }
}
