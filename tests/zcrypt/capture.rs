//! The capture kit (`mkclone devices --capture DIR`, or MKCLONE_CAPTURE_DIR): the binary,
//! a separate process, asks the FUSE-served cards the public facility queries; the files
//! it writes are read back and decoded as a user's captures from a real machine would be.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mkclone::cca::verbs::{Query, Reply, ReplyBody, Request};
use mkclone::zcrypt::{
    Capture, IoctlTransport, Machine as CardInfo, ProjectEncodings, ZcryptError, read_exchange,
};
use mkclone_zcrypt_fuse::Fault;

use crate::fuse_node::{Machine, apqn, mkclone, run_mkclone};

/// A plan whose SA, source and target are zcrypt nodes on `device`, cards 1 to 3.
fn zcrypt_plan(dir: &Path, device: &Path) -> PathBuf {
    let mut s = String::from(
        "[ceremony]\nid = \"capture\"\nsa = \"sa\"\nsource = \"source\"\ntargets = [\"target1\"]\n\
         master_keys = [\"sym\", \"asym\"]\nthreshold = 2\nshares = 3\ndual_control = false\n",
    );
    for (name, card) in [("sa", 1), ("source", 2), ("target1", 3)] {
        s.push_str(&format!(
            "\n[nodes.{name}]\nbackend = \"zcrypt\"\napqn = \"{card:02x}.000d\"\ndevice = \"{}\"\neid = \"{}\"\n",
            device.display(),
            name.to_uppercase()
        ));
    }
    let path = dir.join("mkclone.toml");
    std::fs::write(&path, s).unwrap();
    path
}

fn machine() -> Machine {
    Machine::new(&[
        (apqn(1, 0x0d), "CAPT0001"),
        (apqn(2, 0x0d), "CAPT0002"),
        (apqn(3, 0x0d), "CAPT0003"),
    ])
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Every file of `dir` read back: its request decoded as the simulator decodes requests,
/// its reply as mkclone decodes replies; (APQN, rule, serial from STATICSA).
fn decode_all(dir: &Path) -> Vec<(String, Query, Option<String>)> {
    files(dir)
        .iter()
        .map(|path| {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            let exchange = read_exchange(path).unwrap();
            assert_eq!(exchange.errno, None);
            assert_eq!(exchange.reply.len(), exchange.reply_length as usize);
            let (_, request) = Request::from_message(&exchange.request).unwrap();
            let Request::Query(query) = request else {
                panic!("{}: not FQ", path.display())
            };
            let reply = Reply::from_message(&exchange.reply, &request).unwrap();
            assert_eq!(reply.return_code, 0);
            let serial = match reply.body {
                ReplyBody::StaticsA(a) => Some(a.serial.as_str().to_string()),
                ReplyBody::StaticsB(_) => None,
                other => panic!("{other:?}"),
            };
            let m = &exchange.machine;
            assert_eq!(m.card_type.as_deref(), Some("CEX8C"));
            assert_eq!(m.hwtype.as_deref(), Some("14"));
            assert!(m.kernel_release.is_some(), "{m:?}");
            assert_eq!(m.firmware, None, "no FW_version for a CCA card");
            assert_eq!(m.serialnr, serial.clone().or(m.serialnr.clone()));
            (exchange.apqn, query, serial)
        })
        .collect()
}

#[test]
fn the_capture_kit_writes_each_fq_exchange_and_the_decoder_reads_the_files_back() {
    let m = machine();
    let plan = zcrypt_plan(m.path(), &m.device());
    let capture = m.path().join("capture");
    // Card 2's replies come back shaped as a real kernel may hand them over.
    m.node.model().fault(3, Fault::KernelShapedReply);
    m.node.model().fault(4, Fault::KernelShapedReply);
    let (ok, text) = run_mkclone(
        mkclone()
            .args(["devices", "--config"])
            .arg(&plan)
            .arg("--sysfs")
            .arg(m.sysfs())
            .arg("--capture")
            .arg(&capture),
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("capture: 02.000d through") && text.contains("2 exchanges written"),
        "{text}"
    );
    let mode = std::fs::metadata(&capture).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    let decoded = decode_all(&capture);
    assert_eq!(decoded.len(), 6, "{decoded:?}");
    for (card, serial) in [
        ("01.000d", "CAPT0001"),
        ("02.000d", "CAPT0002"),
        ("03.000d", "CAPT0003"),
    ] {
        let of_card: Vec<_> = decoded.iter().filter(|(a, _, _)| a == card).collect();
        assert_eq!(of_card.len(), 2, "{card}");
        assert!(
            of_card
                .iter()
                .any(|(_, q, s)| *q == Query::StatIcsa && s.as_deref() == Some(serial))
        );
        assert!(of_card.iter().any(|(_, q, _)| *q == Query::StatIcsb));
    }
    // The binary was another process: the node read its memory, not this one's.
    let calls = m.node.model().calls().to_vec();
    assert_eq!(calls.len(), 6);
    assert!(
        calls
            .iter()
            .all(|c| !Path::new(&format!("/proc/self/task/{}", c.pid)).exists()),
        "{calls:?}"
    );
    // The kernel-shaped replies kept their extra bytes in the capture.
    let shaped: Vec<_> = files(&capture)
        .iter()
        .map(|p| read_exchange(p).unwrap())
        .filter(|e| e.apqn == "02.000d")
        .collect();
    assert!(
        shaped
            .iter()
            .all(|e| e.reply[172..184].iter().any(|&b| b != 0))
    );
}

#[test]
fn the_environment_variable_turns_the_capture_on_too() {
    let m = machine();
    let plan = zcrypt_plan(m.path(), &m.device());
    let capture = m.path().join("env-capture");
    let out = mkclone()
        .args(["devices", "--json", "--config"])
        .arg(&plan)
        .arg("--sysfs")
        .arg(m.sysfs())
        .env("MKCLONE_CAPTURE_DIR", &capture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["capture"].as_array().unwrap().len(), 3);
    assert_eq!(decode_all(&capture).len(), 6);
}

#[test]
fn a_capture_sends_and_keeps_nothing_but_fq() {
    let m = machine();
    let dir = m.path().join("refuse");
    let capture = Capture::open(&dir, CardInfo::read(&m.sysfs(), apqn(1, 0x0d))).unwrap();
    let mut t = IoctlTransport::open(&m.device(), apqn(1, 0x0d))
        .unwrap()
        .with_project_encodings(ProjectEncodings::SendAnywayIKnowTheyAreNotIbms)
        .with_capture(capture);
    let change = Request::SetMofN { m: 2, n: 3 }
        .to_message(0x0d, mkclone_cca::REPLY_CAPACITY)
        .unwrap();
    let e = t
        .send_cprb(&change, mkclone_cca::REPLY_CAPACITY, false)
        .unwrap_err();
    assert!(matches!(e, ZcryptError::CaptureRefused { .. }), "{e:?}");
    assert!(e.to_string().contains("never holds key material"), "{e}");
    assert!(m.node.model().calls().is_empty(), "nothing was sent");
    assert!(files(&dir).is_empty(), "nothing was written");
    // FQ, the project's STATCCAE form included, is sent and captured.
    let fq = Request::Query(Query::StatCcae)
        .to_message(0x0d, mkclone_cca::REPLY_CAPACITY)
        .unwrap();
    t.send_cprb(&fq, mkclone_cca::REPLY_CAPACITY, true).unwrap();
    assert_eq!(files(&dir).len(), 1);
}

#[test]
fn a_capture_directory_others_can_write_is_refused() {
    let m = machine();
    let dir = m.path().join("open");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = mkclone::zcrypt::capture_facility(&dir, &m.sysfs(), apqn(1, 0x0d), &m.device())
        .unwrap_err();
    assert!(e.to_string().contains("chmod 700"), "{e}");
    assert!(m.node.model().calls().is_empty());
}
