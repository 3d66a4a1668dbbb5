//! The shell's conventions, end to end through the binary: completions and manual pages
//! generated from the command line's own definitions, MKCLONE_CONFIG, the PIN prompt on
//! the controlling terminal, the STATMOFN legend, and the ceremony worksheet.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::*;

const SUBCOMMANDS: [&str; 6] = [
    "clone",
    "phase3d",
    "register-sa-key",
    "abort",
    "worksheet",
    "completions",
];

#[test]
fn completions_cover_every_command_and_the_bash_script_parses() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = ok(&["completions", shell]);
        for sub in SUBCOMMANDS {
            assert!(out.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("mkclone.bash");
    std::fs::write(&script, ok(&["completions", "bash"])).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));

    let bad = mkclone(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[test]
fn the_manual_pages_render_without_a_warning() {
    let roff = ok(&["man"]);
    assert!(roff.contains(".TH mkclone 1"), "{roff}");
    // roff writes a hyphen as \-.
    let page = roff.replace("\\-", "-");
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "the main page lacks {sub}");
    }
    let dir = tempfile::tempdir().unwrap();
    ok(&["man", "--out", dir.path().to_str().unwrap()]);
    for name in [
        "mkclone.1",
        "mkclone-clone.1",
        "mkclone-phase3d.1",
        "mkclone-worksheet.1",
    ] {
        let p = dir.path().join(name);
        assert!(p.exists(), "{name} not written");
        // groff (groff-base, which scripts/test installs) with every warning on.
        let render = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&p)
            .output()
            .expect("groff is missing: install groff-base (scripts/test does)");
        assert!(
            render.status.success() && render.stderr.is_empty(),
            "{name}: {}",
            text(&render)
        );
    }
    let clone = std::fs::read_to_string(dir.path().join("mkclone-clone.1")).unwrap();
    assert!(clone.contains("replace\\-current"), "{clone}");

    let missing = mkclone(&["man", "--out", dir.path().join("none").to_str().unwrap()]);
    let t = exit_code(&missing, 2);
    assert!(t.contains("not a directory; create it first"), "{t}");
}

/// `man --out DIR` never writes through a symbolic link: a link planted at a page's name
/// (to an existing file, or dangling) is refused before any page is written, naming the
/// link, and its target is neither written nor created; DIR itself as a link is refused
/// too. A directory of real pages is replaced page by page (atomically: no temporary file
/// left).
#[test]
fn man_out_never_writes_through_a_symbolic_link() {
    use std::os::unix::fs::symlink;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    let victim = scratch.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let absent = scratch.path().join("absent");
    let out = dir.to_str().unwrap();
    for (page, target) in [("mkclone-clone.1", &victim), ("mkclone.1", &absent)] {
        let link = dir.join(page);
        symlink(target, &link).unwrap();
        let t = exit_code(&mkclone(&["man", "--out", out]), 2);
        assert!(
            t.contains(&*link.to_string_lossy())
                && t.contains("is a symbolic link")
                && t.contains("no page was written"),
            "{t}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!absent.exists(), "the dangling link's target was created");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_file(&link).unwrap();
    }

    let linked = scratch.path().join("linked");
    symlink(&dir, &linked).unwrap();
    // lstat(2) resolves `linked/` and `linked/.`: each is the link all the same.
    let linked = linked.to_str().unwrap();
    for out in [
        linked.to_string(),
        format!("{linked}/"),
        format!("{linked}/."),
        format!("{linked}/./"),
    ] {
        let t = exit_code(&mkclone(&["man", "--out", &out]), 2);
        assert!(
            t.contains(&format!("{linked} is a symbolic link"))
                && t.contains("no page was written"),
            "--out {out}: {t}"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "--out {out}");
    }
    // `..` of a link is where the link leads, not a directory the user named.
    let t = exit_code(&mkclone(&["man", "--out", &format!("{linked}/..")]), 2);
    assert!(t.contains("name the directory itself"), "{t}");
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 3);

    // Real pages (an earlier run's) are replaced, and nothing else is left in DIR.
    ok(&["man", "--out", out]);
    let pages = std::fs::read_dir(&dir).unwrap().count();
    std::fs::write(dir.join("mkclone-clone.1"), b"old").unwrap();
    ok(&["man", "--out", out]);
    let clone = std::fs::read_to_string(dir.join("mkclone-clone.1")).unwrap();
    assert!(clone.contains(".TH mkclone-clone 1"), "{clone}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), pages);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn mkclone_config_names_the_configuration_and_an_option_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = plan_in(dir.path(), 1);
    let run = |env: Option<&Path>, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mkclone"));
        cmd.args(args).env_remove("MKCLONE_CONFIG");
        if let Some(p) = env {
            cmd.env("MKCLONE_CONFIG", p);
        }
        cmd.output().unwrap()
    };
    let from_env = run(Some(&cfg), &["worksheet"]);
    assert!(
        text(&from_env).contains("worksheet: e2e"),
        "{}",
        text(&from_env)
    );
    let from_env = run(Some(&cfg), &["sim", "init"]);
    assert!(text(&from_env).contains("created"), "{}", text(&from_env));

    // The option wins over the variable.
    let other = write_plan(
        &dir.path().join("other"),
        &sim_plan(&dir.path().join("cards"), "ceremony", 1)
            .replace("id = \"e2e\"", "id = \"other\""),
    );
    let chosen = run(Some(&cfg), &["worksheet", "-c", other.to_str().unwrap()]);
    assert!(
        text(&chosen).contains("worksheet: other"),
        "{}",
        text(&chosen)
    );

    let neither = run(None, &["worksheet"]);
    let t = exit_code(&neither, 2);
    assert!(t.contains("--config <FILE>"), "{t}");
}

/// A configuration whose only node is a PKCS#11 token with `pin = "prompt"`, its module
/// missing: the PIN is asked before the module is loaded, so the prompt is reached.
fn prompt_config(dir: &Path) -> std::path::PathBuf {
    let body = format!(
        "[ceremony]\nid = \"p\"\nsa = \"a\"\nsource = \"a\"\ntargets = [\"b\"]\nmaster_keys = [\"sym\"]\n\
         threshold = 1\nshares = 1\ndual_control = false\n\
         [nodes.a]\nbackend = \"pkcs11\"\nmodule = \"{m}\"\ntoken = \"A\"\npin = \"prompt\"\neid = \"A\"\n\
         [nodes.b]\nbackend = \"pkcs11\"\nmodule = \"{m}\"\ntoken = \"B\"\npin = \"prompt\"\neid = \"B\"\n",
        m = dir.join("no-such-module.so").display()
    );
    write_plan(dir, &body)
}

#[test]
fn the_pin_prompt_uses_the_terminal_even_with_stdin_redirected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = prompt_config(dir.path());
    let exe = env!("CARGO_BIN_EXE_mkclone");
    // script(1) gives the command a pseudo-terminal as its controlling terminal; its own
    // standard input is what the person types. mkclone's stdin is /dev/null.
    let command = format!("{exe} status --config {} a < /dev/null", cfg.display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) is missing: install util-linux (bsdutils)");
    // What the terminal shows, read as it comes; the person types once the prompt shows.
    let mut screen = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut shown = Vec::new();
        let mut chunk = [0u8; 256];
        while let Ok(n) = std::io::Read::read(&mut screen, &mut chunk) {
            if n == 0 {
                break;
            }
            shown.extend_from_slice(&chunk[..n]);
            let _ = tx.send(String::from_utf8_lossy(&shown).into_owned());
        }
        String::from_utf8_lossy(&shown).into_owned()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(shown) if shown.contains("PIN for token \"A\" (node a): ") => break,
            Ok(_) => {}
            Err(e) => panic!("no PIN prompt on the terminal: {e}"),
        }
    }
    let mut typed = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut typed, b"typed-pin-1234\n").unwrap();
    let shown = reader.join().unwrap();
    drop(typed);
    let out = child.wait_with_output().unwrap();
    let t = format!("{shown}{}", text(&out));
    assert!(t.contains("PIN for token \"A\" (node a): "), "{t}");
    // The PIN was taken (the next step failed on the missing module), never echoed.
    assert!(t.contains("no-such-module.so"), "{t}");
    assert!(
        !t.contains("no PIN was entered") && !t.contains("no terminal"),
        "{t}"
    );
    assert!(!t.contains("typed-pin-1234"), "echoed: {t}");
}

#[test]
fn without_a_terminal_the_prompt_says_how_to_run_unattended() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = prompt_config(dir.path());
    // setsid(1): a new session has no controlling terminal.
    let out = Command::new("setsid")
        .args(["-w", env!("CARGO_BIN_EXE_mkclone"), "status", "--config"])
        .arg(&cfg)
        .arg("a")
        .stdin(Stdio::null())
        .output()
        .expect("setsid(1) is missing: install util-linux");
    let t = exit_code(&out, 1);
    assert!(t.contains("this process has no terminal"), "{t}");
    assert!(t.contains("pin = { env = \"VAR\" }"), "{t}");
}

#[test]
fn status_explains_the_statmofn_digits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = rehearsal(dir.path(), 1);
    let out = ok(&["status", "--config", cfg.to_str().unwrap(), "source"]);
    assert!(
        out.contains("(STATMOFN digits: generated: 0 cannot be, 1 can be, 2 generated"),
        "{out}"
    );
}

#[test]
fn the_worksheet_lists_every_task_and_what_to_fill_in() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = plan_in(dir.path(), 2);
    let worksheet = |extra: &[&str]| {
        let mut args = vec!["worksheet", "--config", cfg.to_str().unwrap()];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let out = worksheet(&[]);
    for needle in [
        "Audit access controls",
        "Generate the SA key",
        "Certify the CSS key",
        "Certify target2's CSR key",
        "Obtain shares 1, 2 for target1",
        "Set the ASYM master key",
        "target1.csr.db",
        "target2.asym.2.share",
        "responsible individual",
        "SA fingerprint (phase 1)",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    // No node was touched: a worksheet is printed before any card exists.
    assert!(!dir.path().join("cards").exists());
    assert!(!dir.path().join("ceremony").exists());

    let json = json_in(&worksheet(&["--json"]));
    assert_eq!(json["format"], "mkclone-worksheet");
    assert_eq!(json["version"], 1);
    let tasks = json["tasks"].as_array().unwrap();
    // 4 audits, phase 1, 2a (2 rows), 2b, 6 per target (3a ×2, 3b, 3c, 3d, one SET per
    // kind ×2 → 7), 2 erasures, the report.
    assert_eq!(tasks.len(), 4 + 1 + 2 + 1 + 2 * 7 + 2 + 1, "{json:#}");
    assert!(
        tasks
            .iter()
            .all(|t| t["node"].is_string() && t["phase"].is_string()),
        "{json:#}"
    );
    let digest = json["configuration_sha256"].as_str().unwrap();
    assert_eq!(digest.len(), 64);

    // Dual control: two persons' rows on each node that registers the SA key.
    let dual = write_plan(
        &dir.path().join("dual"),
        &sim_plan_with(
            &dir.path().join("cards"),
            "ceremony",
            1,
            "dual_control = true\n",
        ),
    );
    let out = ok(&["worksheet", "--config", dual.to_str().unwrap()]);
    assert_eq!(out.matches("(second person)").count(), 2, "{out}");
}

#[test]
fn the_html_worksheet_escapes_what_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("a&b<c>");
    let cfg = plan_in(&odd, 1);
    let html = ok(&["worksheet", "--config", cfg.to_str().unwrap(), "--html"]);
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("a&amp;b&lt;c&gt;"), "{html}");
    assert!(!html.contains("a&b<c>"), "unescaped: {html}");
    assert!(html.contains("@page { size: A4"), "{html}");
}

#[test]
fn a_value_error_names_the_line_and_column_of_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let good = sim_plan(&dir.path().join("cards"), "ceremony", 2);
    // (what to change, the message it gives, the text whose position the error names)
    let cases = [
        (
            "apqn = \"04.000d\"",
            "apqn = \"zz.000d\"",
            "\"zz.000d\"",
            "apqn",
        ),
        ("threshold = 2", "threshold = 7", "7", "cannot exceed n"),
        (
            "sa = \"sa\"",
            "sa = \"nobody\"",
            "\"nobody\"",
            "names no node",
        ),
        (
            "master_keys = [\"sym\", \"asym\"]",
            "master_keys = [\"sym\", \"aes\"]",
            "[\"sym\", \"aes\"]",
            "master_keys",
        ),
    ];
    for (from, to, value, message) in cases {
        assert!(good.contains(from), "{from}");
        let body = good.replacen(from, to, 1);
        let cfg = write_plan(dir.path(), &body);
        let out = mkclone(&["worksheet", "--config", cfg.to_str().unwrap()]);
        let t = exit_code(&out, 3);
        let offset = body.find(value).unwrap();
        let line = body[..offset].matches('\n').count() + 1;
        let column = offset - body[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
        assert!(
            t.contains(&format!("mkclone.toml:{line}:{column}: ")) && t.contains(message),
            "{to}: expected line {line} column {column}: {t}"
        );
    }
    // An error about a whole node names its table: a zcrypt target without an EID.
    let mut body = sim_plan_with(
        &dir.path().join("cards"),
        "ceremony",
        1,
        "rehearsal = true\n",
    )
    .replace("targets = [\"target1\"]", "targets = [\"target1\", \"z\"]");
    body.push_str("\n[nodes.z]\nbackend = \"zcrypt\"\napqn = \"07.000d\"\n");
    let cfg = write_plan(dir.path(), &body);
    let t = exit_code(
        &mkclone(&["worksheet", "--config", cfg.to_str().unwrap()]),
        3,
    );
    let line = body[..body.find("[nodes.z]").unwrap()]
        .matches('\n')
        .count()
        + 1;
    assert!(
        t.contains(&format!("mkclone.toml:{line}:")) && t.contains("[nodes.z] takes part"),
        "line {line}: {t}"
    );
}
