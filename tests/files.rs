//! Safe files, end to end, as an attacker tests them: symbolic links, hard links and FIFOs
//! planted at the paths of ceremony files, ceremony directories other local users can
//! write into, and `report --out` aimed at the ceremony's own files.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// A plan sa / source / t1 on simulated cards in `dir/cards`, ceremony files in
/// `dir/<directory>`.
fn write_config(dir: &Path, directory: &str) -> PathBuf {
    let mut s = format!(
        "[ceremony]\nid = \"files\"\ndirectory = \"{directory}\"\nsa = \"sa\"\nsource = \"source\"\n\
         targets = [\"t1\"]\nmaster_keys = [\"sym\", \"asym\"]\nthreshold = 2\nshares = 3\n\
         dual_control = false\n"
    );
    for (name, card) in [("sa", 1), ("source", 2), ("t1", 3)] {
        s.push_str(&format!(
            "\n[nodes.{name}]\nbackend = \"sim\"\nsim_dir = \"{}\"\napqn = \"{card:02x}.000d\"\neid = \"{}\"\n",
            dir.join("cards").display(),
            name.to_uppercase()
        ));
    }
    let path = dir.join("mkclone.toml");
    fs::write(&path, s).unwrap();
    path
}

/// A temporary directory with the plan of [`write_config`]; with `init`, its cards created
/// and the source's master keys loaded.
fn server(directory: &str, init: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), directory);
    if init {
        sim_init(&cfg);
    }
    (dir, cfg)
}

/// Run the binary in `cwd` (under `umask` when given), failing the test instead of
/// hanging when it blocks (a FIFO opened without O_NONBLOCK would block forever).
fn run(cwd: &Path, umask: Option<&str>, args: &[&str]) -> Output {
    let io = tempfile::tempdir().unwrap();
    let (out, err) = (io.path().join("out"), io.path().join("err"));
    let mut cmd = match umask {
        Some(mask) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_mkclone"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_mkclone")),
    };
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("mkclone {args:?} hung (blocked on a FIFO?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: fs::read(&out).unwrap(),
        stderr: fs::read(&err).unwrap(),
    }
}

/// `abort --erase-files` run in `dir`.
fn erase_files(dir: &Path, cfg: &Path) -> Output {
    run(
        dir,
        None,
        &["abort", "--config", cfg.to_str().unwrap(), "--erase-files"],
    )
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn private_dir(path: &Path) {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).unwrap();
}

/// Every file under `dir` (not following links): path, bytes (or link target) and mode.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        let meta = fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.push((p.clone(), Vec::new(), mode(&p)));
            out.extend(tree(&p));
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&p).unwrap();
            out.push((p, target.into_os_string().into_encoded_bytes(), 0));
        } else if meta.is_file() {
            out.push((p.clone(), fs::read(&p).unwrap(), mode(&p)));
        } else {
            out.push((p.clone(), Vec::new(), mode(&p)));
        }
    }
    out.sort();
    out
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

#[derive(Clone, Copy, Debug)]
enum Plant {
    Symlink,
    HardLink,
    Fifo,
}

/// `abort --erase-files` with `plant` at `at` (relative to the ceremony directory): refused
/// with a message naming the file and `expect`, the outside file and every ceremony file
/// untouched, nothing erased.
fn erase_refuses(plant: Plant, at: &str, expect: &str) {
    let (dir, cfg) = server("ceremony", false);
    let ceremony = dir.path().join("ceremony");
    private_dir(&ceremony.join("shares"));
    // The file the attacker wants destroyed, outside the ceremony.
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let victim = outside.join("victim");
    fs::write(&victim, b"precious\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o640)).unwrap();
    // A real file that an erase would remove: nothing is erased while another is refused.
    let real = ceremony.join("shares/t1.asym.1.share");
    fs::write(&real, b"a bundle\n").unwrap();

    let planted = ceremony.join(at);
    match plant {
        Plant::Symlink => symlink(&victim, &planted).unwrap(),
        Plant::HardLink => fs::hard_link(&victim, &planted).unwrap(),
        Plant::Fifo => mkfifo(&planted),
    }
    let out = erase_files(dir.path(), &cfg);
    let t = text(&out);
    assert!(!out.status.success(), "{plant:?} at {at}: {t}");
    assert_eq!(out.status.code(), Some(3), "{plant:?} at {at}: {t}");
    assert!(
        t.contains(&planted.display().to_string()),
        "names {}: {t}",
        planted.display()
    );
    assert!(
        t.contains(expect),
        "{plant:?} at {at}: says {expect:?}: {t}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("erased"),
        "{t}"
    );
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious\n",
        "{plant:?} at {at}"
    );
    assert_eq!(mode(&victim), 0o640, "{plant:?} at {at}");
    assert!(fs::symlink_metadata(&planted).is_ok(), "left in place");
    assert_eq!(fs::read(&real).unwrap(), b"a bundle\n", "nothing erased");
    let journal = fs::read_to_string(ceremony.join("journal.jsonl")).unwrap_or_default();
    assert!(!journal.contains("file-erased"), "{journal}");
}

#[test]
fn erase_refuses_a_symlink_at_a_bundle_and_at_a_csr_db() {
    erase_refuses(
        Plant::Symlink,
        "shares/t1.sym.1.share",
        "is a symbolic link; mkclone never follows links in a ceremony directory",
    );
    erase_refuses(Plant::Symlink, "t1.csr.db", "is a symbolic link");
}

#[test]
fn erase_refuses_a_hard_link_at_a_bundle_and_at_a_csr_db() {
    erase_refuses(Plant::HardLink, "shares/t1.sym.1.share", "hard links");
    erase_refuses(Plant::HardLink, "t1.csr.db", "hard links");
}

#[test]
fn erase_refuses_a_fifo_at_a_bundle_and_at_a_csr_db_without_blocking() {
    erase_refuses(Plant::Fifo, "shares/t1.sym.1.share", "FIFO");
    erase_refuses(Plant::Fifo, "t1.csr.db", "FIFO");
}

#[test]
fn erase_refuses_a_symlinked_shares_directory() {
    let (dir, cfg) = server("ceremony", false);
    let ceremony = dir.path().join("ceremony");
    private_dir(&ceremony);
    let elsewhere = dir.path().join("elsewhere");
    private_dir(&elsewhere);
    let victim = elsewhere.join("t1.sym.1.share");
    fs::write(&victim, b"not a ceremony's\n").unwrap();
    symlink(&elsewhere, ceremony.join("shares")).unwrap();

    let out = erase_files(dir.path(), &cfg);
    let t = exit_code(&out, 3);
    assert!(
        t.contains(&ceremony.join("shares").display().to_string()) && t.contains("symbolic link"),
        "{t}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("erased"),
        "{t}"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"not a ceremony's\n");
}

#[test]
fn a_symlinked_journal_or_sa_db_is_refused_on_reading() {
    let (dir, cfg) = server("ceremony", true);
    let c = cfg.to_str().unwrap();
    let ceremony = dir.path().join("ceremony");
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();

    // The journal: a link to a file elsewhere.
    private_dir(&ceremony);
    let victim = outside.join("journal");
    fs::write(&victim, b"").unwrap();
    symlink(&victim, ceremony.join("journal.jsonl")).unwrap();
    let cards = tree(&dir.path().join("cards"));
    let out = run(dir.path(), None, &["phase1", "--config", c]);
    let t = exit_code(&out, 3);
    assert!(
        t.contains(&ceremony.join("journal.jsonl").display().to_string())
            && t.contains("is a symbolic link; mkclone never follows links")
            && t.contains("replace it with the real file"),
        "{t}"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"", "the link target untouched");
    assert_eq!(tree(&dir.path().join("cards")), cards, "no node changed");
    assert!(!ceremony.join("sa.db").exists());

    // sa.db: phase 1 writes it, then it is moved away and linked back.
    fs::remove_file(ceremony.join("journal.jsonl")).unwrap();
    ok(&["phase1", "--config", c]);
    let real = outside.join("sa.db");
    fs::rename(ceremony.join("sa.db"), &real).unwrap();
    symlink(&real, ceremony.join("sa.db")).unwrap();
    let before = fs::read(&real).unwrap();
    let cards = tree(&dir.path().join("cards"));
    let out = run(dir.path(), None, &["phase2a", "--config", c]);
    let t = exit_code(&out, 3);
    assert!(
        t.contains(&ceremony.join("sa.db").display().to_string())
            && t.contains("is a symbolic link"),
        "{t}"
    );
    assert_eq!(
        fs::read(&real).unwrap(),
        before,
        "the link target untouched"
    );
    assert_eq!(tree(&dir.path().join("cards")), cards, "no node changed");
    // The dry run says so too, and changes nothing.
    let out = run(dir.path(), None, &["phase2a", "--config", c, "--dry-run"]);
    let t = exit_code(&out, 4);
    assert!(t.contains("is a symbolic link"), "{t}");
}

#[test]
fn ceremony_directories_are_private_whatever_the_umask() {
    // Two levels that do not exist yet: mkclone creates both.
    let (dir, cfg) = server("run/ceremony", true);
    let c = cfg.to_str().unwrap();
    let out = run(dir.path(), Some("000"), &["clone", "--config", c]);
    assert!(out.status.success(), "{}", text(&out));
    let ceremony = dir.path().join("run/ceremony");
    assert_eq!(mode(&dir.path().join("run")), 0o700);
    assert_eq!(mode(&ceremony), 0o700);
    assert_eq!(mode(&ceremony.join("shares")), 0o700);
    assert_eq!(mode(&ceremony.join("journal.jsonl")), 0o600);
    assert_eq!(mode(&ceremony.join("shares/t1.sym.1.share")), 0o600);
    assert_eq!(mode(&ceremony.join("sa.db")), 0o644);
}

#[test]
fn a_ceremony_directory_others_can_write_or_a_link_is_refused() {
    let (dir, cfg) = server("ceremony", true);
    let c = cfg.to_str().unwrap();
    let ceremony = dir.path().join("ceremony");
    let cards = tree(&dir.path().join("cards"));
    let name = ceremony.display().to_string();

    for (wide, commands) in [
        (
            0o777,
            vec![
                vec!["clone", "--config", c],
                vec!["abort", "--config", c, "--erase-files"],
                vec!["report", "--config", c],
            ],
        ),
        (
            0o770,
            vec![
                vec!["phase1", "--config", c],
                vec![
                    "register-sa-hash",
                    "--config",
                    c,
                    "--node",
                    "source",
                    "--operator",
                    "a",
                ],
            ],
        ),
    ] {
        fs::create_dir_all(&ceremony).unwrap();
        fs::set_permissions(&ceremony, fs::Permissions::from_mode(wide)).unwrap();
        for args in commands {
            let out = run(dir.path(), None, &args);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(3), "{args:?}: {t}");
            assert!(
                t.contains(&name)
                    && t.contains(&format!("{wide:04o}"))
                    && t.contains(&format!("chmod 700 {name}")),
                "{args:?}: {t}"
            );
            assert!(
                fs::read_dir(&ceremony).unwrap().next().is_none(),
                "{args:?}: nothing created in the directory"
            );
            assert_eq!(
                mode(&ceremony),
                wide,
                "{args:?}: mode not changed behind our back"
            );
        }
        // The dry run reports it (exit 4) and changes nothing.
        let dry_run = ["clone", "--config", c, "--dry-run"];
        let t = exit_code(&run(dir.path(), None, &dry_run), 4);
        assert!(t.contains("chmod 700"), "{t}");
        assert_eq!(tree(&dir.path().join("cards")), cards, "no node changed");
    }

    // A symbolic link in place of the ceremony directory.
    fs::remove_dir(&ceremony).unwrap();
    let real = dir.path().join("real");
    private_dir(&real);
    symlink(&real, &ceremony).unwrap();
    let out = run(dir.path(), None, &["phase1", "--config", c]);
    let t = exit_code(&out, 3);
    assert!(t.contains(&name) && t.contains("symbolic link"), "{t}");
    assert!(fs::read_dir(&real).unwrap().next().is_none());
    assert_eq!(tree(&dir.path().join("cards")), cards, "no node changed");

    // Once private, the same directory is used.
    fs::remove_file(&ceremony).unwrap();
    fs::create_dir(&ceremony).unwrap();
    fs::set_permissions(&ceremony, fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(dir.path(), None, &["phase1", "--config", c]);
    exit_code(&out, 3);
    fs::set_permissions(&ceremony, fs::Permissions::from_mode(0o700)).unwrap();
    ok(&["phase1", "--config", c]);
    assert!(ceremony.join("sa.db").is_file());
}

#[test]
fn a_group_writable_shares_directory_is_refused() {
    let (dir, cfg) = server("ceremony", false);
    let shares = dir.path().join("ceremony/shares");
    private_dir(&shares);
    fs::set_permissions(&shares, fs::Permissions::from_mode(0o775)).unwrap();
    let out = erase_files(dir.path(), &cfg);
    let t = exit_code(&out, 3);
    assert!(
        t.contains(&format!("chmod 700 {}", shares.display())) && t.contains("0775"),
        "{t}"
    );
}

#[test]
fn report_out_never_writes_into_the_ceremony_nor_over_a_file_without_force() {
    let (dir, cfg) = server("ceremony", true);
    let c = cfg.to_str().unwrap();
    ok(&["clone", "--config", c]);
    let ceremony = dir.path().join("ceremony");
    let before = tree(&ceremony);
    symlink(&ceremony, dir.path().join("link")).unwrap();
    symlink(ceremony.join("journal.jsonl"), dir.path().join("evil.md")).unwrap();

    let targets = [
        "ceremony/journal.jsonl",
        "ceremony/sa.db",
        "ceremony/t1.csr.db",
        "ceremony/shares/t1.sym.1.share",
        "ceremony/.mkclone.lock",
        "ceremony/shares/../journal.jsonl",
        "link/sa.db",
        "ceremony/report.md",
        "ceremony",
        "evil.md",
    ];
    for out_path in targets {
        for force in [false, true] {
            let mut args = vec!["report", "--config", c, "--out", out_path];
            if force {
                args.push("--force");
            }
            let out = run(dir.path(), None, &args);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
            assert!(t.contains("ceremony directory"), "{args:?}: {t}");
            assert_eq!(
                tree(&ceremony),
                before,
                "{args:?}: the ceremony is unchanged"
            );
        }
    }
    // The journal still verifies: the next run can go on.
    // (The record is written with exit code 6: complete, its consumed files still open.)
    let out = run(dir.path(), None, &["report", "--config", c, "--json"]);
    exit_code(&out, 6);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["journals"][0]["verified"], true, "{json}");

    // An unrelated file: kept without --force, replaced with it.
    let existing = dir.path().join("existing.md");
    fs::write(&existing, b"keep me\n").unwrap();
    let out = run(
        dir.path(),
        None,
        &["report", "--config", c, "--out", "existing.md"],
    );
    let t = exit_code(&out, 2);
    assert!(t.contains("--force") && t.contains("existing.md"), "{t}");
    assert_eq!(fs::read(&existing).unwrap(), b"keep me\n");
    let out = run(
        dir.path(),
        None,
        &["report", "--config", c, "--out", "existing.md", "--force"],
    );
    exit_code(&out, 6);
    assert!(fs::read_to_string(&existing).unwrap().starts_with("# "));

    // A new file.
    let out = run(
        dir.path(),
        None,
        &["report", "--config", c, "--out", "new.html", "--html"],
    );
    exit_code(&out, 6);
    assert!(
        fs::read_to_string(dir.path().join("new.html"))
            .unwrap()
            .contains("<html")
    );

    // `-` and no --out: standard output; no file written anywhere.
    for args in [
        vec!["report", "--config", c, "--out", "-"],
        vec!["report", "--config", c],
    ] {
        let out = run(dir.path(), None, &args);
        exit_code(&out, 6);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("# "), "{args:?}: {stdout}");
        assert!(stdout.contains("REHEARSAL"), "{stdout}");
        assert!(!dir.path().join("-").exists());
    }
    assert_eq!(tree(&ceremony), before);
}
