//! The ceremony's trust, attacked as an insider with the carried files would attack it:
//! a foreign SA key swapped in (per-phase commands and `clone`, with and without dual
//! control), every carried field edited with its digest recomputed, the journal deleted,
//! cut at a record or swapped for another run's, and a bad ASYM bundle behind a good SYM
//! one. Every attack must be refused before a node changes.

use std::path::{Path, PathBuf};

mod common;
use common::*;

use mkclone::ceremony::dbs::{
    BUNDLE_FORMAT, CSR_DB_FORMAT, CsrDb, Provenance, SA_DB_FORMAT, SaDb, ShareBundle, VERSION,
};
use mkclone::ceremony::envelope;
use serde::Serialize;
use serde::de::DeserializeOwned;

const ID: &str = "trust";

/// A plan with one target; every node's card in `cards`.
fn config(cards: &Path, extra: &str) -> String {
    let mut s = format!(
        "[ceremony]\nid = \"{ID}\"\nsa = \"sa\"\nsource = \"source\"\ntargets = [\"target1\"]\n\
         master_keys = [\"sym\", \"asym\"]\nthreshold = 2\nshares = 3\n{extra}\n"
    );
    for (name, card) in [("sa", 1), ("source", 2), ("target1", 3)] {
        s.push_str(&format!(
            "\n[nodes.{name}]\nbackend = \"sim\"\nsim_dir = \"{}\"\napqn = \"{card:02x}.000d\"\neid = \"{}\"\n",
            cards.display(),
            name.to_uppercase()
        ));
    }
    s
}

/// A server: its directory (cards, ceremony, mkclone.toml) and configuration path.
struct Server {
    dir: PathBuf,
    cfg: PathBuf,
    dual: bool,
}

impl Server {
    fn new(dir: PathBuf, dual: bool) -> Self {
        let extra = format!("dual_control = {dual}");
        let cfg = write_plan(&dir, &config(&dir.join("cards"), &extra));
        sim_init(&cfg);
        Self { dir, cfg, dual }
    }
    fn c(&self) -> &str {
        self.cfg.to_str().unwrap()
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join("ceremony").join(name)
    }
    /// Every card file's bytes: what a node holds.
    fn cards(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(self.dir.join("cards"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        out.sort();
        out
    }
    /// The SA key installed on `node` under dual control, by two people.
    fn register_sa(&self, node: &str) {
        if self.dual {
            ok(&register("register-sa-hash", self.c(), node, "alice"));
            ok(&register("register-sa-key", self.c(), node, "bob"));
        }
    }
    /// Phases 1, 2a, 2b; the SA key pinned in the configuration.
    fn to_2b(&self) {
        let out = ok(&["phase1", "--config", self.c()]);
        pin_sa(&self.cfg, &sa_pin_line(&out));
        let out = ok(&["phase2a", "--config", self.c()]);
        self.register_sa("source");
        let css = fingerprint_in(&out, "CSS key fingerprint");
        ok(&["phase2b", "--config", self.c(), "--css-fingerprint", &css]);
    }
    /// Phases 3a and 3b for target1; returns the CSR fingerprint 3a printed.
    fn to_3b(&self) -> String {
        let out = ok(&self.on_target1("phase3a"));
        self.register_sa("target1");
        let csr = fingerprint_in(&out, "CSR key fingerprint");
        ok(&phase3b(self.c(), "target1", &csr));
        csr
    }
    /// `PHASE --config C --target target1`.
    fn on_target1<'a>(&'a self, phase: &'a str) -> [&'a str; 5] {
        [phase, "--config", self.c(), "--target", "target1"]
    }
    /// `args` refused with no card changed; what the command said.
    #[track_caller]
    fn refused_unchanged(&self, args: &[&str]) -> String {
        let before = self.cards();
        let out = refused(args);
        assert!(self.cards() == before, "no node changed");
        out
    }
    /// `args` refused with no card changed, saying each of `words`; what the command said.
    #[track_caller]
    fn refused_saying(&self, args: &[&str], words: &[&str]) -> String {
        let out = self.refused_unchanged(args);
        for word in words {
            assert!(out.contains(word), "{word:?} not said: {out}");
        }
        out
    }
    /// `journal accept-loss` for target1, by carol: the documented way forward when the
    /// journal is lost and no copy exists. What the command said.
    fn accept_loss(&self) -> String {
        ok(&[
            "journal",
            "accept-loss",
            "--config",
            self.c(),
            "--node",
            "target1",
            "--operator",
            "carol",
        ])
    }
    fn nonce(&self) -> String {
        read::<SaDb>(&self.file("sa.db"), SA_DB_FORMAT)
            .provenance
            .nonce
    }
    fn current(&self, node: &str) -> serde_json::Value {
        node_status(self.c(), node)["status"]["registers"].clone()
    }
}

fn read<T: Serialize + DeserializeOwned>(path: &Path, format: &str) -> T {
    envelope::read_file::<T>(path, format, VERSION, None)
        .unwrap()
        .body
}

/// Rewrite a ceremony file with `edit` applied and its digest recomputed, as anyone can.
fn forge<T: Serialize + DeserializeOwned>(path: &Path, format: &str, edit: impl FnOnce(&mut T)) {
    let d = envelope::read_file::<T>(path, format, VERSION, None).unwrap();
    let mut body = d.body;
    edit(&mut body);
    let bytes = envelope::encode(format, VERSION, &d.ceremony, d.rehearsal, &body).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

fn bundles(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("ceremony/shares"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The SA key's fingerprint in a server's sa.db, as mkclone prints it.
fn sa_fingerprint(s: &Server) -> String {
    let db = read::<SaDb>(&s.file("sa.db"), SA_DB_FORMAT);
    mkclone::ceremony::trust::SaFingerprint::of_certificate(&db.sa_certificate)
        .unwrap()
        .grouped()
}

fn refused(args: &[&str]) -> String {
    let o = mkclone(args);
    assert!(
        !o.status.success(),
        "mkclone {args:?} must be refused:\n{}",
        text(&o)
    );
    text(&o)
}

/// Two servers of one ceremony (same id, same node names) after phase 2b: the victim's and
/// an insider's own.
fn victim_and_attacker(dual: bool) -> (tempfile::TempDir, Server, Server) {
    let root = tempfile::tempdir().unwrap();
    let victim = Server::new(root.path().join("victim"), dual);
    let attacker = Server::new(root.path().join("attacker"), dual);
    victim.to_2b();
    attacker.to_2b();
    (root, victim, attacker)
}

/// The attacker's sa.db in place of the victim's, forged to carry `provenance`.
fn plant_attackers_sa_db(victim: &Server, attacker: &Server, provenance: Provenance) {
    copy(&attacker.file("sa.db"), &victim.file("sa.db"));
    forge::<SaDb>(&victim.file("sa.db"), SA_DB_FORMAT, |db| {
        db.provenance = provenance
    });
}

/// The attack of issue 9: an insider runs his own ceremony with the same id and node names
/// on his own SA and source, swaps his sa.db in before the victim's 3a, then certifies the
/// victim's public csr.db with his SA, makes shares on his source, and hands the victim his
/// sa.db and bundles before 3d.
fn foreign_sa_attack_per_phase(dual: bool) {
    let (_root, victim, attacker) = victim_and_attacker(dual);
    let victim_sa_db = std::fs::read(victim.file("sa.db")).unwrap();
    // The attacker copies the victim's provenance too: only the anchor stands between.
    let provenance = read::<SaDb>(&victim.file("sa.db"), SA_DB_FORMAT).provenance;
    let victim_nonce = provenance.nonce.clone();

    // Before 3a: his sa.db (with the victim's nonce, so that only the anchor stands between).
    plant_attackers_sa_db(&victim, &attacker, provenance.clone());
    let before = victim.cards();
    let out = refused(&victim.on_target1("phase3a"));
    assert!(out.contains("not the pinned one"), "{out}");
    for fingerprint in [sa_fingerprint(&victim), sa_fingerprint(&attacker)] {
        assert!(out.contains(&fingerprint), "both fingerprints named: {out}");
    }
    let out = refused(&register(
        "register-sa-hash",
        victim.c(),
        "target1",
        "alice",
    ));
    assert!(out.contains("not the pinned one"), "{out}");
    assert!(victim.cards() == before, "no node changed");

    // The victim carries the right sa.db and goes on to 3b.
    std::fs::write(victim.file("sa.db"), &victim_sa_db).unwrap();
    let csr = victim.to_3b();

    // He takes the victim's public csr.db, certifies it with his SA, makes shares.
    let stolen = attacker.file("target1.csr.db");
    copy(&victim.file("target1.csr.db"), &stolen);
    let attacker_nonce = attacker.nonce();
    forge::<CsrDb>(&stolen, CSR_DB_FORMAT, |db| {
        db.certificate = None;
        db.provenance.nonce = attacker_nonce.clone();
        db.provenance.written.clear();
    });
    ok(&phase3b(attacker.c(), "target1", &csr));
    ok(&attacker.on_target1("phase3c"));

    // ...and hands the victim his sa.db and bundles, all with the victim's nonce.
    let provenance = read::<SaDb>(&victim.file("sa.db"), SA_DB_FORMAT).provenance;
    plant_attackers_sa_db(&victim, &attacker, provenance);
    for b in bundles(&attacker.dir) {
        let to = victim.file("shares").join(b.file_name().unwrap());
        copy(&b, &to);
        forge::<ShareBundle>(&to, BUNDLE_FORMAT, |s| {
            s.provenance.nonce = victim_nonce.clone();
            s.provenance.written.clear();
        });
    }
    let before = victim.cards();
    let target_before = victim.current("target1");
    let out = refused(&victim.on_target1("phase3d"));
    assert!(out.contains("not the pinned one"), "{out}");
    assert!(victim.cards() == before, "no node changed");
    assert_eq!(victim.current("target1"), target_before);

    // His bundles behind the victim's own sa.db fare no better.
    std::fs::write(victim.file("sa.db"), &victim_sa_db).unwrap();
    let _ = mkclone(&victim.on_target1("phase3d"));
    let after = victim.current("target1");
    for kind in 0..2 {
        assert_ne!(
            after[kind]["current_patterns"],
            attacker.current("source")[kind]["current_patterns"],
            "the attacker's master key never reaches the victim's target"
        );
    }
}

#[test]
fn a_foreign_sa_is_refused_in_the_per_phase_flow() {
    foreign_sa_attack_per_phase(false);
}

#[test]
fn a_foreign_sa_is_refused_in_the_per_phase_flow_under_dual_control() {
    foreign_sa_attack_per_phase(true);
}

fn foreign_sa_attack_on_clone(dual: bool) {
    let (_root, victim, attacker) = victim_and_attacker(dual);
    let (victim_fp, attacker_fp) = (sa_fingerprint(&victim), sa_fingerprint(&attacker));
    let provenance = read::<SaDb>(&victim.file("sa.db"), SA_DB_FORMAT).provenance;
    plant_attackers_sa_db(&victim, &attacker, provenance);
    for pinned in [true, false] {
        if !pinned {
            // Even without a pin in the configuration: clone reads the SA key from the SA node.
            let text = std::fs::read_to_string(&victim.cfg).unwrap();
            let unpinned: String = text
                .lines()
                .filter(|l| !l.starts_with("sa_fingerprint"))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(&victim.cfg, unpinned).unwrap();
        }
        let out = victim.refused_unchanged(&["clone", "--config", victim.c()]);
        for fingerprint in [victim_fp.as_str(), attacker_fp.as_str()] {
            assert!(out.contains(fingerprint), "both fingerprints named: {out}");
        }
    }
}

#[test]
fn a_foreign_sa_is_refused_by_clone() {
    foreign_sa_attack_on_clone(false);
}

#[test]
fn a_foreign_sa_is_refused_by_clone_under_dual_control() {
    foreign_sa_attack_on_clone(true);
}

// ------------------------------------------------------------------------------------
// Every carried field, edited with the digest recomputed
// ------------------------------------------------------------------------------------

/// Every leaf of a JSON value, as a path of keys and indices.
fn leaves(v: &serde_json::Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let mut p = path.clone();
                p.push(k.clone());
                leaves(x, p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let mut p = path.clone();
                p.push(i.to_string());
                leaves(x, p, out);
            }
        }
        serde_json::Value::Null => {}
        _ => out.push(path),
    }
}

fn at<'a>(v: &'a mut serde_json::Value, path: &[String]) -> &'a mut serde_json::Value {
    path.iter().fold(v, |v, k| match v {
        serde_json::Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        other => &mut other[k.as_str()],
    })
}

/// Plausible edits of a leaf: a hex string gets a digit changed (at the end, and in the
/// middle when long), text a letter, a number +1, a flag flipped.
fn edits(v: &serde_json::Value) -> Vec<serde_json::Value> {
    use serde_json::Value;
    let flip = |s: &str, i: usize| -> String {
        let mut c: Vec<char> = s.chars().collect();
        c[i] = match c[i] {
            '0' => '1',
            'A' => 'B',
            'a' => 'b',
            _ if c[i].is_ascii_hexdigit() => '0',
            _ if c[i].is_ascii_uppercase() => 'Q',
            _ => 'q',
        };
        c.into_iter().collect()
    };
    match v {
        Value::String(s) if s.is_empty() => vec![Value::String("X".into())],
        Value::String(s) => {
            let mut out = vec![Value::String(flip(s, s.len() - 1))];
            if s.len() > 64 {
                out.push(Value::String(flip(s, s.len() / 2)));
            }
            out
        }
        Value::Number(n) => vec![Value::from(n.as_u64().unwrap_or(0) + 1)],
        Value::Bool(b) => vec![Value::Bool(!b)],
        _ => vec![],
    }
}

/// For each leaf of the file's body (journal marks of nodes other than `consumer`'s are
/// evidence that only their writer's server checks: left out), each edit: restore the
/// checkpoint, plant the edited file, run `args` on the node `consumer`, and require a
/// refusal with no card changed (for the enciphered part of a sealed share, which only
/// the device can read: the device's refusal and no SET).
fn every_edit_refused<T: Serialize + DeserializeOwned>(
    server: &Server,
    checkpoint: &Path,
    file: &str,
    format: &str,
    consumer: &str,
    args: &[&str],
) -> usize {
    let path = server.file(file);
    let original: serde_json::Value =
        serde_json::to_value(read::<T>(&checkpoint.join("ceremony").join(file), format)).unwrap();
    let mut paths = Vec::new();
    leaves(&original, Vec::new(), &mut paths);
    let mut tried = 0;
    for leaf in paths {
        if leaf[0] == "provenance" && leaf[1] == "written" && leaf[2] != consumer {
            continue;
        }
        let mut value = original.clone();
        for edit in edits(at(&mut value, &leaf)) {
            restore(checkpoint, &server.dir);
            *at(&mut value, &leaf) = edit.clone();
            let edited: Result<T, _> = serde_json::from_value(value.clone());
            let bytes = match edited {
                // Re-encoded with the digest recomputed.
                Ok(body) => {
                    let d = envelope::read_file::<T>(&path, format, VERSION, None).unwrap();
                    envelope::encode(format, VERSION, &d.ceremony, d.rehearsal, &body).unwrap()
                }
                // Not even of its type: write it as JSON anyway (a hand-made file).
                Err(_) => serde_json::to_vec(&value).unwrap(),
            };
            std::fs::write(&path, bytes).unwrap();
            let before = server.cards();
            let registers = server.current(consumer);
            let o = mkclone(args);
            assert!(
                !o.status.success(),
                "{file}: {} edited was accepted by {args:?}:\n{}",
                leaf.join("."),
                text(&o)
            );
            let after = server.cards();
            let changed: Vec<_> = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| b != a)
                .map(|(b, _)| b.0.display().to_string())
                .collect();
            if leaf[0] == "sealed" {
                // The enciphered part of a share: only the target's device can read it, and
                // it refuses the share (that request changes nothing). Shares of a key
                // installed before it in the same 3d stay received, but no key is SET.
                assert!(text(&o).contains("the share was rejected"), "{}", text(&o));
                let now = server.current(consumer);
                for kind in 0..2 {
                    assert_eq!(now[kind]["current"], registers[kind]["current"], "no SET");
                    assert_eq!(
                        now[kind]["current_patterns"],
                        registers[kind]["current_patterns"]
                    );
                }
            } else {
                assert!(
                    changed.is_empty(),
                    "{file}: {} edited: {changed:?} changed; the command said:\n{}",
                    leaf.join("."),
                    text(&o)
                );
            }
            tried += 1;
            value = original.clone();
        }
    }
    tried
}

/// Copy a server's directory (cards and ceremony) aside, or back.
fn save(dir: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    copy_tree(dir, to);
}

fn restore(from: &Path, dir: &Path) {
    for sub in ["cards", "ceremony"] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
        copy_tree(&from.join(sub), &dir.join(sub));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else if !p.to_string_lossy().ends_with(".lock") {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// How to read a carried file's body.
#[derive(Clone, Copy)]
enum Carried {
    SaDb,
    CsrDb,
    Bundle,
}

/// Save the server aside at `checkpoint`; for each (kind, file, consumer, command), every
/// edit of the file refused ([`every_edit_refused`]); then the server restored. How many
/// edits were tried.
fn edits_at_checkpoint(
    s: &Server,
    checkpoint: &Path,
    cases: &[(Carried, &str, &str, &[&str])],
) -> usize {
    save(&s.dir, checkpoint);
    let mut tried = 0;
    for &(kind, file, consumer, args) in cases {
        let (cp, c) = (checkpoint, consumer);
        tried += match kind {
            Carried::SaDb => every_edit_refused::<SaDb>(s, cp, file, SA_DB_FORMAT, c, args),
            Carried::CsrDb => every_edit_refused::<CsrDb>(s, cp, file, CSR_DB_FORMAT, c, args),
            Carried::Bundle => {
                every_edit_refused::<ShareBundle>(s, cp, file, BUNDLE_FORMAT, c, args)
            }
        };
    }
    restore(checkpoint, &s.dir);
    tried
}

#[test]
fn every_carried_field_edited_with_its_digest_recomputed_is_refused_before_a_node_changes() {
    let root = tempfile::tempdir().unwrap();
    let s = Server::new(root.path().join("server"), false);
    let cp = |name: &str| root.path().join(name);
    let p2a = ["phase2a", "--config", s.c()];
    let [p3a, p3c, p3d] = ["phase3a", "phase3c", "phase3d"].map(|p| s.on_target1(p));

    let out = ok(&["phase1", "--config", s.c()]);
    pin_sa(&s.cfg, &sa_pin_line(&out));
    let mut tried = edits_at_checkpoint(
        &s,
        &cp("after1"),
        &[
            (Carried::SaDb, "sa.db", "source", &p2a),
            (Carried::SaDb, "sa.db", "target1", &p3a),
        ],
    );

    let out = ok(&p2a);
    let css = fingerprint_in(&out, "CSS key fingerprint");
    ok(&["phase2b", "--config", s.c(), "--css-fingerprint", &css]);
    tried += edits_at_checkpoint(
        &s,
        &cp("after2b"),
        &[(Carried::SaDb, "sa.db", "target1", &p3a)],
    );

    let out = ok(&p3a);
    let csr = fingerprint_in(&out, "CSR key fingerprint");
    ok(&phase3b(s.c(), "target1", &csr));
    tried += edits_at_checkpoint(
        &s,
        &cp("after3b"),
        &[
            (Carried::CsrDb, "target1.csr.db", "source", &p3c),
            (Carried::SaDb, "sa.db", "source", &p3c),
        ],
    );

    ok(&p3c);
    tried += edits_at_checkpoint(
        &s,
        &cp("after3c"),
        &[
            (
                Carried::Bundle,
                "shares/target1.sym.1.share",
                "target1",
                &p3d,
            ),
            (
                Carried::Bundle,
                "shares/target1.asym.2.share",
                "target1",
                &p3d,
            ),
            (Carried::SaDb, "sa.db", "target1", &p3d),
        ],
    );
    assert!(tried > 60, "{tried} edits tried");
    // And unedited (restored), the ceremony completes.
    ok(&p3d);
    let (src, tgt) = (s.current("source"), s.current("target1"));
    for kind in 0..2 {
        assert_eq!(tgt[kind]["current_patterns"], src[kind]["current_patterns"]);
    }
}

// ------------------------------------------------------------------------------------
// Evidence that vanishes
// ------------------------------------------------------------------------------------

/// A server after phases 1 to 3c (one directory for every node).
fn to_3c() -> (tempfile::TempDir, Server) {
    let root = tempfile::tempdir().unwrap();
    let s = Server::new(root.path().join("server"), false);
    s.to_2b();
    s.to_3b();
    ok(&s.on_target1("phase3c"));
    (root, s)
}

#[test]
fn a_deleted_journal_is_noticed_and_accepting_the_loss_is_recorded() {
    let (_root, s) = to_3c();
    let journal = s.file("journal.jsonl");
    std::fs::remove_file(&journal).unwrap();
    // The dry run says so too, among every other problem.
    let target1 = s.on_target1("phase3d");
    let dry_run = [&target1[..], &["--dry-run"]].concat();
    s.refused_saying(&dry_run, &["is empty", "accept-loss"]);
    s.refused_saying(&target1, &["journal", "is empty", "accept-loss"]);
    // The documented way forward when no copy exists.
    let out = s.accept_loss();
    assert!(
        out.contains("carol") && out.contains("lost for good"),
        "{out}"
    );
    ok(&s.on_target1("phase3d"));
    let v = report_json(s.c());
    let report = v.to_string();
    assert_eq!(v["journals"][0]["end_to_end"], false, "{report}");
    assert!(
        v["journals"][0]["gaps"].to_string().contains("carol"),
        "{report}"
    );
    // Named for a script: the loss accepted, by whom, on which node.
    assert!(
        v["journals"][0]["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["kind"] == "loss-accepted"
                && g["operator"] == "carol"
                && g["node"] == "target1"),
        "{report}"
    );
}

#[test]
fn a_journal_cut_at_a_record_is_noticed() {
    let (_root, s) = to_3c();
    let journal = s.file("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    // Cut right after phase 2b: the records of 3a (which wrote target1.csr.db) are gone.
    let keep: String = text
        .lines()
        .take_while(|l| !l.contains("\"phase\":\"3a\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&journal, &keep).unwrap();
    s.refused_saying(&s.on_target1("phase3d"), &["ends at record"]);
}

/// An insider rewrites the journal from its first record on (a time changed, every `prev`
/// computed again: the chain is unkeyed, so it verifies). The marks of the carried files
/// name the journal that wrote them by its first record: a phase refuses the rewritten one
/// as another journal, and the report does not call it verified end to end.
#[test]
fn a_journal_rewritten_from_its_first_record_is_named_as_another() {
    use sha2::Digest;
    let (_root, s) = to_3c();
    let journal = s.file("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut prev = String::new();
    let mut rewritten = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut line = line.to_string();
        if i == 0 {
            let at = line.find("\"time\":\"").unwrap() + "\"time\":\"".len();
            // The year: 2026 -> 2025, a valid time either way.
            line.replace_range(at..at + 4, "2025");
        } else {
            let at = line.find("\"prev\":\"").unwrap() + "\"prev\":\"".len();
            line.replace_range(at..at + 64, &prev);
        }
        prev = hex::encode(sha2::Sha256::digest(line.as_bytes()));
        rewritten.push_str(&line);
        rewritten.push('\n');
    }
    std::fs::write(&journal, &rewritten).unwrap();
    s.refused_saying(
        &s.on_target1("phase3d"),
        &["is not the journal that wrote the file"],
    );
    let v = report_json(s.c());
    let report = v.to_string();
    assert_eq!(v["journals"][0]["verified"], true, "{report}");
    assert_eq!(v["journals"][0]["end_to_end"], false, "{report}");
}

#[test]
fn a_journal_swapped_from_another_run_with_the_same_id_is_noticed() {
    let (root, s) = to_3c();
    let other = Server::new(root.path().join("other"), false);
    other.to_2b();
    copy(&other.file("journal.jsonl"), &s.file("journal.jsonl"));
    let target1 = s.on_target1("phase3d");
    let dry_run = [&target1[..], &["--dry-run"]].concat();
    s.refused_saying(&dry_run, &["another run of ceremony"]);
    s.refused_saying(&target1, &["another run of ceremony"]);
}

#[test]
fn a_clean_run_reports_its_chain_verified_end_to_end() {
    let (_root, s) = to_3c();
    ok(&s.on_target1("phase3d"));
    let v = report_json(s.c());
    let report = v.to_string();
    assert_eq!(v["journals"][0]["end_to_end"], true, "{report}");
    assert_eq!(
        v["set"][0]["confirmed_against"], "signed-shares",
        "{report}"
    );
}

#[test]
fn source_patterns_in_the_plan_are_what_targets_confirm_against() {
    let root = tempfile::tempdir().unwrap();
    let s = Server::new(root.path().join("server"), false);
    let regs = s.current("source");
    let pattern = |kind: usize| {
        let p = &regs[kind]["current_patterns"][0];
        format!("SHA-1 {}", p["bytes"].as_str().unwrap())
    };
    // A wrong pattern (another key than the source holds) stops 3c before any share leaves.
    let wrong = format!(
        "source_patterns = {{ sym = \"SHA-1 0000000000000000\", asym = \"{}\" }}",
        pattern(1)
    );
    pin_sa(&s.cfg, &wrong);
    s.to_2b();
    s.to_3b();
    let before = s.cards();
    let out = refused(&s.on_target1("phase3c"));
    assert!(out.contains("source_patterns"), "{out}");
    assert!(s.cards() == before, "no share left the source");
    // The right ones: 3c, then 3d confirms against them, and the report says so.
    let text = std::fs::read_to_string(&s.cfg).unwrap();
    let right = format!(
        "source_patterns = {{ sym = \"{}\", asym = \"{}\" }}",
        pattern(0),
        pattern(1)
    );
    std::fs::write(&s.cfg, text.replace(&wrong, &right)).unwrap();
    ok(&s.on_target1("phase3c"));
    let out = ok(&s.on_target1("phase3d"));
    assert!(out.contains("the plan's source_patterns"), "{out}");
    let v = report_json(s.c());
    let report = v.to_string();
    assert_eq!(v["set"][0]["confirmed_against"], "plan", "{report}");
}

#[test]
fn a_key_without_a_planned_pattern_is_confirmed_against_the_signed_shares() {
    let root = tempfile::tempdir().unwrap();
    let s = Server::new(root.path().join("server"), false);
    let sym = &s.current("source")[0]["current_patterns"][0]["bytes"];
    let line = format!(
        "source_patterns = {{ sym = \"SHA-1 {}\" }}",
        sym.as_str().unwrap()
    );
    pin_sa(&s.cfg, &line);
    s.to_2b();
    s.to_3b();
    ok(&s.on_target1("phase3c"));
    let out = ok(&s.on_target1("phase3d"));
    assert!(
        out.contains("SYM: NEW confirmed") && out.contains("the plan's source_patterns"),
        "{out}"
    );
    assert!(out.contains("signed in every share"), "{out}");
    let v = report_json(s.c());
    let against: Vec<_> = v["set"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["kind"].clone(), x["confirmed_against"].clone()))
        .collect();
    assert_eq!(
        against,
        [
            (serde_json::json!("sym"), serde_json::json!("plan")),
            (
                serde_json::json!("asym"),
                serde_json::json!("signed-shares")
            )
        ]
    );
}

// ------------------------------------------------------------------------------------
// 3d is all or nothing across master keys
// ------------------------------------------------------------------------------------

#[test]
fn a_bad_asym_bundle_leaves_sym_unset() {
    let (_root, s) = to_3c();
    // Damage the enciphered part of an ASYM share (its header stays right): only the
    // target's device can tell, at INSTALL.
    let path = s.file("shares/target1.asym.2.share");
    forge::<ShareBundle>(&path, BUNDLE_FORMAT, |b| {
        let mut raw = b.sealed.as_bytes().to_vec();
        let last = raw.len() - 1;
        raw[last] ^= 0x40;
        b.sealed = mkclone::backend::SealedShare::new(raw).unwrap();
    });
    let before = s.current("target1");
    refused(&s.on_target1("phase3d"));
    let after = s.current("target1");
    for kind in 0..2 {
        assert_eq!(
            after[kind]["current"], before[kind]["current"],
            "no SET: {after}"
        );
        assert_eq!(
            after[kind]["current_patterns"],
            before[kind]["current_patterns"]
        );
    }
    // SYM was installed and confirmed first, and never SET.
    let journal = std::fs::read_to_string(s.file("journal.jsonl")).unwrap();
    for (record, written) in [("\"confirmed\"", true), ("\"set-master-key\"", false)] {
        assert_eq!(journal.contains(record), written, "{record}: {journal}");
    }
}

#[test]
fn a_foreign_sa_already_registered_names_the_way_out() {
    use mkclone::backend::Backend;
    let root = tempfile::tempdir().unwrap();
    let s = Server::new(root.path().join("server"), false);
    let other = Server::new(root.path().join("other"), false);
    s.to_2b();
    other.to_2b();
    // A foreign SA key's hash registered on the target under the ceremony's name (by an
    // earlier run with a swapped sa.db, or by another tool).
    let plan = mkclone::config::Config::load(&s.cfg).unwrap().plan;
    let foreign = read::<SaDb>(&other.file("sa.db"), SA_DB_FORMAT).sa_hash;
    let mut card = mkclone::sim::SimBus::new(s.dir.join("cards"))
        .open_card("03.000d".parse().unwrap())
        .unwrap();
    card.register_public_key_hash(&plan.sa_label(), &foreign, true)
        .unwrap();
    drop(card);
    let phase3a = s.on_target1("phase3a");
    s.refused_saying(&phase3a, &["abort", "--target target1 --unregister-sa"]);
    // The way out named, then 3a again.
    ok(&[
        "abort",
        "--config",
        s.c(),
        "--target",
        "target1",
        "--unregister-sa",
    ]);
    ok(&phase3a);
}

#[test]
fn files_and_journals_of_mkclone_0_1_are_named_as_such() {
    let root = tempfile::tempdir().unwrap();
    let s = Server::new(root.path().join("server"), false);
    s.to_2b();
    // sa.db as 0.1 wrote it: version 1, no provenance.
    #[derive(Serialize, serde::Deserialize)]
    struct SaDbV1 {
        sa_node: String,
        sa_eid: mkclone::backend::Eid,
        sa_certificate: mkclone::backend::Certificate,
        sa_hash: mkclone::backend::PublicKeyHash,
        css: Option<mkclone::ceremony::dbs::CssEntry>,
    }
    let path = s.file("sa.db");
    let d = envelope::read_file::<SaDb>(&path, SA_DB_FORMAT, VERSION, None).unwrap();
    let body = d.body.clone();
    let v1 = SaDbV1 {
        sa_node: d.body.sa_node,
        sa_eid: d.body.sa_eid,
        sa_certificate: d.body.sa_certificate,
        sa_hash: d.body.sa_hash,
        css: d.body.css,
    };
    let old = envelope::encode(SA_DB_FORMAT, 1, &d.ceremony, d.rehearsal, &v1).unwrap();
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, old).unwrap();
    let out = refused(&s.on_target1("phase3a"));
    assert!(out.contains("older mkclone"), "{out}");
    // Version 1 with today's layout: no mkclone wrote it, refused all the same.
    let relabelled = envelope::encode(SA_DB_FORMAT, 1, &d.ceremony, d.rehearsal, &body).unwrap();
    std::fs::write(&path, relabelled).unwrap();
    let out = refused(&s.on_target1("phase3a"));
    assert!(out.contains("older mkclone"), "{out}");
    std::fs::write(&path, good).unwrap();
    // A journal as 0.1 wrote it: no nonce.
    let journal = s.file("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let nonce = format!(",\"nonce\":\"{}\"", s.nonce());
    std::fs::write(&journal, text.replace(&nonce, "")).unwrap();
    let out = refused(&s.on_target1("phase3a"));
    assert!(out.contains("older mkclone"), "{out}");
}

/// A ceremony begun with mkclone 0.2-0.x (files of version 2: marks that name no journal)
/// goes on: the files are read, and a phase that writes one again writes version 3, its
/// old marks kept as they were. A version 2 file that was altered is refused as altered,
/// not as "written by an older mkclone".
#[test]
fn a_ceremony_begun_with_version_2_files_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let s = Server::new(root.path().join("server"), false);
    s.to_2b();
    let path = s.file("sa.db");
    let d = envelope::read_file::<SaDb>(&path, SA_DB_FORMAT, VERSION, None).unwrap();
    assert!(
        d.body
            .provenance
            .written
            .values()
            .all(|m| m.journal.is_some()),
        "{:?}",
        d.body.provenance
    );
    let mut v2 = d.body.clone();
    for mark in v2.provenance.written.values_mut() {
        mark.journal = None;
    }
    let old = envelope::encode(SA_DB_FORMAT, 2, &d.ceremony, d.rehearsal, &v2).unwrap();
    assert!(!String::from_utf8_lossy(&old).contains("\"journal\""));
    // Altered (no longer JSON of its layout): refused for what it is.
    let altered =
        String::from_utf8(old.to_vec())
            .unwrap()
            .replacen("\"seq\":", "\"seq\":\"x\",\"y\":", 1);
    std::fs::write(&path, altered).unwrap();
    let out = refused(&s.on_target1("phase3a"));
    assert!(!out.contains("older mkclone"), "{out}");
    assert!(out.contains("sa.db"), "{out}");
    // Whole: read, and the ceremony goes on to its end.
    std::fs::write(&path, &old).unwrap();
    ok(&s.on_target1("phase3a"));
    let csr = s.file("target1.csr.db");
    let d = envelope::read_file::<CsrDb>(&csr, CSR_DB_FORMAT, VERSION, None).unwrap();
    assert_eq!(d.version, VERSION);
    assert!(d.body.provenance.written["target1"].journal.is_some());
    let kept = envelope::read_file::<SaDb>(&path, SA_DB_FORMAT, VERSION, None).unwrap();
    assert_eq!(kept.version, 2, "sa.db is not written by 3a");
    assert_eq!(kept.body.provenance, v2.provenance);
}

#[test]
fn a_forged_confirmation_and_bundle_claim_never_pass_for_a_set() {
    use mkclone::backend::Backend;
    use mkclone::ceremony::journal::{Journal, Kind};
    let (_root, s) = to_3c();
    // The target holds a master key of its own (X), and the insider makes every bundle claim
    // X as the source's and forges the journal's confirmations of X.
    let mut card = mkclone::sim::SimBus::new(s.dir.join("cards"))
        .open_card("03.000d".parse().unwrap())
        .unwrap();
    for kind in mkclone::backend::CloneableKind::ALL {
        card.load_random_master_key(kind).unwrap();
    }
    drop(card);
    let own = s.current("target1");
    let pattern_of = |kind: usize| -> mkclone::backend::VerificationPattern {
        serde_json::from_value(own[kind]["current_patterns"][0].clone()).unwrap()
    };
    for b in bundles(&s.dir) {
        forge::<ShareBundle>(&b, BUNDLE_FORMAT, |x| {
            x.source_pattern =
                pattern_of(usize::from(x.kind != mkclone::backend::CloneableKind::Sym));
        });
    }
    let plan = mkclone::config::Config::load(&s.cfg).unwrap().plan;
    let mut j = Journal::open(&s.dir.join("ceremony"), &plan.id, plan.rehearsal).unwrap();
    for (i, kind) in ["sym", "asym"].into_iter().enumerate() {
        let detail = serde_json::json!({
            "authority": "signed-shares",
            "kind": kind,
            "pattern": serde_json::to_value(pattern_of(i)).unwrap(),
        });
        j.append("3d", "target1", Kind::Note, None, "confirmed", detail)
            .unwrap();
    }
    drop(j);
    let out = refused(&s.on_target1("phase3d"));
    assert!(!out.contains("is complete"), "{out}");
    let after = s.current("target1");
    for kind in 0..2 {
        assert_eq!(
            after[kind]["current_patterns"], own[kind]["current_patterns"],
            "no SET: the target keeps its own key"
        );
    }
    let journal = std::fs::read_to_string(s.file("journal.jsonl")).unwrap();
    assert!(!journal.contains("\"set-master-key\""), "never SET");
}

#[test]
fn a_public_key_whose_self_signed_section_was_edited_is_never_certified() {
    let root = tempfile::tempdir().unwrap();
    let s = Server::new(root.path().join("server"), false);
    s.to_2b();
    let out = ok(&s.on_target1("phase3a"));
    let csr = fingerprint_in(&out, "CSR key fingerprint");
    // The key stays (its fingerprint still matches what 3a printed); its self-signed
    // section (serial, EID, the device's signature) is edited.
    forge::<CsrDb>(&s.file("target1.csr.db"), CSR_DB_FORMAT, |db| {
        let mut raw = db.public_key.as_bytes().to_vec();
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        db.public_key = mkclone::backend::PublicKeyToken::new(raw).unwrap();
    });
    let args = [&s.on_target1("phase3b")[..], &["--csr-fingerprint", &csr]].concat();
    s.refused_saying(&args, &["self-signed"]);
}

#[test]
fn a_deleted_journal_is_noticed_even_with_the_files_marks_stripped() {
    let (_root, s) = to_3c();
    std::fs::remove_file(s.file("journal.jsonl")).unwrap();
    // The insider also strips target1's journal marks from every file (digests recomputed).
    forge::<SaDb>(&s.file("sa.db"), SA_DB_FORMAT, |db| {
        db.provenance.written.remove("target1");
    });
    forge::<CsrDb>(&s.file("target1.csr.db"), CSR_DB_FORMAT, |db| {
        db.provenance.written.remove("target1");
    });
    for b in bundles(&s.dir) {
        forge::<ShareBundle>(&b, BUNDLE_FORMAT, |x| {
            x.provenance.written.remove("target1");
        });
    }
    // target1 holds this ceremony's CSR key, and the journal knows nothing of it.
    let phase3d = s.on_target1("phase3d");
    s.refused_saying(
        &phase3d,
        &["no record of any phase on target1", "accept-loss"],
    );
    // The documented way forward, recorded; the report then says "not end to end".
    s.accept_loss();
    ok(&phase3d);
    let v = report_json(s.c());
    assert_eq!(v["journals"][0]["end_to_end"], false);
}
