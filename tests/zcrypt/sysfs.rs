//! Discovery from fake sysfs trees: several card generations (CEX5C..CEX8C), offline and
//! deconfigured cards, EP11 and accelerator cards that must be left out, and `mkvps`
//! reads that come back as "- -" (interrupted) and are retried.

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use mkclone::backend::{MasterKeyKind, PatternAlgorithm};
use mkclone::zcrypt::sysfs::discover_with;
use mkclone::zcrypt::{
    CcaCard, DiscoveryError, RegisterName, RegisterState, cca_apqns, discover, format_devices,
};

const MKVPS_FULL: &str = "AES NEW: empty 0x0000000000000000
AES CUR: valid 0xe9a49a58cd039bed
AES OLD: invalid 0x0000000000000000
APKA NEW: full 0x1122334455667788
APKA CUR: valid 0x5f2f27aaa2d59b4a
APKA OLD: valid 0x0102030405060708
";

const MKVPS_INTERRUPTED: &str = "AES NEW: - -
AES CUR: - -
AES OLD: - -
APKA NEW: - -
APKA CUR: - -
APKA OLD: - -
";

const MKVPS_WITH_ASYM: &str = "AES NEW: partial 0x0000000000000000
AES CUR: valid 0x0011223344556677
AES OLD: invalid 0x0000000000000000
APKA NEW: empty 0x0000000000000000
APKA CUR: invalid 0x0000000000000000
APKA OLD: invalid 0x0000000000000000
ASYM NEW: empty 0x00000000000000000000000000000000
ASYM CUR: valid 0x00112233445566778899aabbccddeeff
ASYM OLD: invalid 0x00000000000000000000000000000000
";

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[derive(Clone, Copy)]
struct Card<'a> {
    id: &'a str,
    card_type: Option<&'a str>,
    hwtype: u32,
    functions: &'a str,
    online: &'a str,
    config: &'a str,
    serial: Option<&'a str>,
}

fn card(root: &Path, c: &Card<'_>) {
    let dir = format!("bus/ap/devices/card{}", c.id);
    if let Some(t) = c.card_type {
        write(root, &format!("{dir}/type"), &format!("{t}\n"));
    }
    write(root, &format!("{dir}/hwtype"), &format!("{}\n", c.hwtype));
    write(
        root,
        &format!("{dir}/ap_functions"),
        &format!("{}\n", c.functions),
    );
    write(root, &format!("{dir}/online"), &format!("{}\n", c.online));
    write(root, &format!("{dir}/config"), &format!("{}\n", c.config));
    write(root, &format!("{dir}/chkstop"), "0\n");
    if let Some(s) = c.serial {
        write(root, &format!("{dir}/serialnr"), &format!("{s}\n"));
    }
}

fn queue(root: &Path, apqn: &str, online: &str, mkvps: Option<&str>) {
    let dir = format!("bus/ap/devices/{apqn}");
    write(root, &format!("{dir}/online"), &format!("{online}\n"));
    if let Some(m) = mkvps {
        write(root, &format!("{dir}/mkvps"), m);
    }
}

/// CCA coprocessors ap_functions 0x92800000 (coprocessor bit 0x10000000), accelerators
/// 0x8A800000 (0x08000000), EP11 coprocessors 0x86800000 (0x04000000).
fn machine() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cca = "0x92800000";
    card(
        root,
        &Card {
            id: "03",
            card_type: Some("CEX7C"),
            hwtype: 13,
            functions: cca,
            online: "1",
            config: "1",
            serial: Some("93AABEG5"),
        },
    );
    queue(root, "03.000d", "1", Some(MKVPS_FULL));
    queue(root, "03.0004", "1", Some(MKVPS_WITH_ASYM));
    card(
        root,
        &Card {
            id: "05",
            card_type: Some("CEX5C"),
            hwtype: 11,
            functions: cca,
            online: "0",
            config: "1",
            serial: Some(""),
        },
    );
    queue(root, "05.000d", "0", Some(MKVPS_INTERRUPTED));
    card(
        root,
        &Card {
            id: "06",
            card_type: Some("CEX6C"),
            hwtype: 12,
            functions: cca,
            online: "0",
            config: "0",
            serial: None,
        },
    );
    queue(root, "06.000d", "0", None);
    // No zcrypt driver bound: no `type`; derived from hwtype.
    card(
        root,
        &Card {
            id: "08",
            card_type: None,
            hwtype: 14,
            functions: cca,
            online: "1",
            config: "1",
            serial: Some("8CCA0001"),
        },
    );
    queue(root, "08.0001", "1", Some(MKVPS_FULL));
    // Left out: an EP11 coprocessor and an accelerator, with queues.
    card(
        root,
        &Card {
            id: "09",
            card_type: Some("CEX8P"),
            hwtype: 14,
            functions: "0x86800000",
            online: "1",
            config: "1",
            serial: Some("EP110001"),
        },
    );
    queue(
        root,
        "09.000d",
        "1",
        Some("WK CUR: valid 0x00112233\nWK NEW: empty -\n"),
    );
    card(
        root,
        &Card {
            id: "0a",
            card_type: Some("CEX7A"),
            hwtype: 13,
            functions: "0x8A800000",
            online: "1",
            config: "1",
            serial: None,
        },
    );
    queue(root, "0a.000d", "1", None);
    dir
}

#[test]
fn cca_cards_of_every_generation_are_found_and_others_left_out() {
    let dir = machine();
    let cards = discover(dir.path()).unwrap();
    let listed: Vec<(u8, &str, u32, &str)> = cards
        .iter()
        .map(|c| (c.card, c.card_type.as_str(), c.hwtype, c.status))
        .collect();
    assert_eq!(
        listed,
        [
            (0x03, "CEX7C", 13, "online"),
            (0x05, "CEX5C", 11, "offline"),
            (0x06, "CEX6C", 12, "deconfig"),
            (0x08, "CEX8C", 14, "online"),
        ]
    );
    let apqns: Vec<String> = cca_apqns(&cards).iter().map(|a| a.to_string()).collect();
    assert_eq!(
        apqns,
        ["03.0004", "03.000d", "05.000d", "06.000d", "08.0001"]
    );
    assert_eq!(cards[0].serial.as_deref(), Some("93AABEG5"));
    assert_eq!(cards[1].serial, None, "an empty serialnr is no serial");
    assert!(!cards[1].online && !cards[1].queues[0].online);
    assert!(cards.iter().all(|c| c.mode == "CCA-Coproc"));
    assert_eq!(cards[0].functions, 0x9280_0000);
}

#[test]
fn mkvps_is_parsed_into_states_and_patterns() {
    let dir = machine();
    let cards = discover(dir.path()).unwrap();
    let q = &cards[0].queues[1];
    assert_eq!(q.apqn.to_string(), "03.000d");
    let regs = q.master_keys.as_ref().unwrap();
    assert_eq!(regs.len(), 6);
    let aes_cur = &regs[1];
    assert_eq!(
        (aes_cur.kind, aes_cur.register, aes_cur.state),
        (
            MasterKeyKind::Aes,
            RegisterName::Current,
            RegisterState::Valid
        )
    );
    let p = aes_cur.pattern.as_ref().unwrap();
    assert_eq!(p.algorithm(), PatternAlgorithm::Sha256Method);
    assert_eq!(hex(p.bytes()), "e9a49a58cd039bed");
    // Registers without a key carry no pattern (the kernel prints zeros there).
    assert_eq!(regs[0].state, RegisterState::Empty);
    assert!(regs[0].pattern.is_none() && regs[2].pattern.is_none());
    assert_eq!(regs[3].state, RegisterState::Full);
    assert_eq!(
        hex(regs[3].pattern.as_ref().unwrap().bytes()),
        "1122334455667788"
    );

    // A kernel that also reports ASYM: 16-byte MDC-4 patterns; NEW partial has none.
    let regs = cards[0].queues[0].master_keys.as_ref().unwrap();
    assert_eq!(regs.len(), 9);
    assert_eq!(
        (regs[0].state, &regs[0].pattern),
        (RegisterState::Partial, &None)
    );
    let asym_cur = &regs[7];
    assert_eq!(
        (asym_cur.kind, asym_cur.state),
        (MasterKeyKind::Asym, RegisterState::Valid)
    );
    let p = asym_cur.pattern.as_ref().unwrap();
    assert_eq!(p.algorithm(), PatternAlgorithm::Mdc4);
    assert_eq!(hex(p.bytes()), "00112233445566778899aabbccddeeff");

    // A queue without mkvps.
    assert_eq!(cards[2].queues[0].master_keys, None);
}

/// Discover the [`machine`] counting the reads of `queue`'s mkvps, the first of them
/// interrupted when `interrupted`: the cards and how many times the file was read.
fn discover_counting(queue: &str, interrupted: bool) -> (Vec<CcaCard>, usize) {
    let dir = machine();
    let target = dir.path().join(format!("bus/ap/devices/{queue}/mkvps"));
    let reads = Cell::new(0);
    let mut reader = |path: &Path| {
        if path == target {
            reads.set(reads.get() + 1);
            if interrupted && reads.get() == 1 {
                // The first read is interrupted: success, but "- -" everywhere.
                return Ok(MKVPS_INTERRUPTED.to_string());
            }
        }
        std::fs::read_to_string(path)
    };
    let cards = discover_with(dir.path(), &mut reader, Duration::ZERO).unwrap();
    (cards, reads.get())
}

#[test]
fn an_interrupted_mkvps_read_is_retried() {
    let (cards, reads) = discover_counting("03.000d", true);
    assert_eq!(reads, 2, "read again after the interrupted read");
    let regs = cards[0].queues[1].master_keys.as_ref().unwrap();
    assert_eq!(regs[1].state, RegisterState::Valid);
    assert!(regs.iter().all(|r| r.state != RegisterState::Unknown));
}

#[test]
fn mkvps_that_stays_unknown_is_reported_unknown_not_guessed() {
    let (cards, reads) = discover_counting("05.000d", false);
    assert_eq!(reads, 3, "every attempt was made");
    let regs = cards[1].queues[0].master_keys.as_ref().unwrap();
    assert_eq!(regs.len(), 6);
    assert!(
        regs.iter()
            .all(|r| r.state == RegisterState::Unknown && r.pattern.is_none())
    );
}

#[test]
fn the_listing_reads_like_lszcrypt_and_serialises_to_json() {
    let dir = machine();
    let cards = discover(dir.path()).unwrap();
    let text = format_devices(&cards);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("CARD.DOMAIN  TYPE   MODE        STATUS    SERIAL"),
        "{text}"
    );
    assert!(
        text.contains("03           CEX7C  CCA-Coproc  online    93AABEG5\n"),
        "{text}"
    );
    assert!(
        text.contains("03.000d      CEX7C  CCA-Coproc  online   \n"),
        "{text}"
    );
    assert!(
        text.contains("    AES  CUR: valid    0xe9a49a58cd039bed\n"),
        "{text}"
    );
    assert!(text.contains("    AES  NEW: empty    -\n"), "{text}");
    assert!(
        text.contains("05.000d      CEX5C  CCA-Coproc  offline"),
        "{text}"
    );
    assert!(text.contains("    APKA OLD: unknown  -\n"), "{text}");
    assert!(
        text.contains("06.000d      CEX6C  CCA-Coproc  deconfig"),
        "{text}"
    );
    assert!(text.contains("    master keys: not readable\n"), "{text}");
    assert!(
        !text.contains("09") && !text.contains("CEX8P") && !text.contains("CEX7A"),
        "{text}"
    );

    let json = serde_json::to_value(&cards).unwrap();
    assert_eq!(json[0]["type"], "CEX7C");
    assert_eq!(json[0]["queues"][1]["apqn"], "03.000d");
    assert_eq!(json[0]["queues"][1]["master_keys"][1]["state"], "valid");
    assert_eq!(
        json[0]["queues"][1]["master_keys"][1]["register"],
        "current"
    );
    assert_eq!(json[0]["queues"][1]["master_keys"][1]["kind"], "aes");
    assert_eq!(
        json[0]["queues"][1]["master_keys"][1]["pattern"]["bytes"],
        "e9a49a58cd039bed"
    );
}

#[test]
fn a_machine_without_an_ap_bus_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = discover(dir.path()).unwrap_err();
    assert!(matches!(e, DiscoveryError::NoApBus { .. }));
    assert!(e.to_string().contains("not Linux on IBM Z"), "{e}");
    assert_eq!(format_devices(&[]), "no CCA coprocessor found\n");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// lszcrypt's status words (s390-tools zconf/zcrypt/lszcrypt.c, `read_rec_default` and
/// `read_subdev_rec_default`): config 0 is "deconfig" whatever else; chkstop above 0 is
/// "chkstop" (not "checkstop"); for cards and, in newer kernels, for queues.
#[test]
fn a_checkstopped_card_or_queue_reads_chkstop_as_lszcrypt_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let base = Card {
        id: "01",
        card_type: Some("CEX8C"),
        hwtype: 14,
        functions: "0x92800000",
        online: "1",
        config: "1",
        serial: Some("CHK00001"),
    };
    card(root, &base);
    write(root, "bus/ap/devices/card01/chkstop", "1\n");
    queue(root, "01.000d", "1", None);
    card(root, &Card { id: "02", ..base });
    queue(root, "02.000d", "1", None);
    queue(root, "02.000e", "1", None);
    queue(root, "02.000f", "0", None);
    write(root, "bus/ap/devices/02.000d/chkstop", "1\n");
    write(root, "bus/ap/devices/02.000d/config", "1\n");
    write(root, "bus/ap/devices/02.000e/config", "0\n");
    write(root, "bus/ap/devices/02.000e/chkstop", "1\n");
    // config 0 wins over chkstop 1, for a card too.
    card(
        root,
        &Card {
            id: "04",
            config: "0",
            ..base
        },
    );
    write(root, "bus/ap/devices/card04/chkstop", "1\n");

    let cards = discover(root).unwrap();
    let status = |card: u8| cards.iter().find(|c| c.card == card).unwrap().status;
    assert_eq!(status(0x01), "chkstop");
    assert_eq!(status(0x02), "online");
    assert_eq!(status(0x04), "deconfig");
    let queues: Vec<(String, &str)> = cards[1]
        .queues
        .iter()
        .map(|q| (q.apqn.to_string(), q.status))
        .collect();
    assert_eq!(
        queues,
        [
            ("02.000d".to_string(), "chkstop"),
            ("02.000e".to_string(), "deconfig"),
            ("02.000f".to_string(), "offline"),
        ]
    );
    let text = format_devices(&cards);
    // The card, then its domains: a checkstopped card's domains show the card's status.
    // Each row as lszcrypt lays it out: CARD.DOMAIN in 12 columns, TYPE in 6, MODE in 11.
    for (apqn, status) in [
        ("01", "chkstop"),
        ("01.000d", "chkstop"),
        ("02.000d", "chkstop"),
        ("02.000e", "deconfig"),
    ] {
        let row = format!("{apqn:<12} CEX8C  CCA-Coproc  {status}");
        assert!(text.contains(&row), "{row:?} in {text}");
    }
    assert!(!text.contains("checkstop"), "{text}");
}

/// `mkvps` as zcrypt_cex4.c `cca_mkvps_show` prints it in newer kernels: AES and APKA
/// with `"%s NEW: %s 0x%016llx"`, then ASYM with `"ASYM NEW: %s 0x%016llx%016llx"` (the
/// 16-byte pattern as two 64-bit words, big-endian on s390x: its bytes in order), and
/// "- -" where the state digit is not known. Built here with the same formats.
#[test]
fn the_asym_lines_of_newer_kernels_are_parsed() {
    let asym_new: [u8; 16] = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\xfe\xdc\xba\x98\x76\x54\x32\x10";
    let asym_cur: [u8; 16] = [0xA5; 16];
    let word = |b: &[u8; 16], i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    let mut text = String::new();
    text += &format!("AES NEW: {} 0x{:016x}\n", "empty", 0u64);
    text += &format!("AES CUR: {} 0x{:016x}\n", "valid", 0x1122_3344_5566_7788u64);
    text += "AES OLD: - -\n";
    text += &format!("APKA NEW: {} 0x{:016x}\n", "partial", 0u64);
    text += &format!("APKA CUR: {} 0x{:016x}\n", "invalid", 0u64);
    text += &format!("APKA OLD: {} 0x{:016x}\n", "invalid", 0u64);
    text += &format!(
        "ASYM NEW: {} 0x{:016x}{:016x}\n",
        "full",
        word(&asym_new, 0),
        word(&asym_new, 1)
    );
    text += &format!(
        "ASYM CUR: {} 0x{:016x}{:016x}\n",
        "valid",
        word(&asym_cur, 0),
        word(&asym_cur, 1)
    );
    text += "ASYM OLD: - -\n";
    let regs = mkclone::zcrypt::sysfs::parse_mkvps(&text);
    assert_eq!(regs.len(), 9);
    let asym: Vec<_> = regs
        .iter()
        .filter(|r| r.kind == MasterKeyKind::Asym)
        .collect();
    assert_eq!(
        asym.iter()
            .map(|r| (r.register, r.state))
            .collect::<Vec<_>>(),
        [
            (RegisterName::New, RegisterState::Full),
            (RegisterName::Current, RegisterState::Valid),
            (RegisterName::Old, RegisterState::Unknown),
        ]
    );
    let new = asym[0].pattern.as_ref().unwrap();
    assert_eq!(new.algorithm(), PatternAlgorithm::Mdc4);
    assert_eq!(new.bytes(), &asym_new);
    assert_eq!(asym[1].pattern.as_ref().unwrap().bytes(), &asym_cur);
    assert_eq!(asym[2].pattern, None);
    // AES: CUR's pattern, OLD unknown; APKA partial has no pattern.
    assert_eq!(
        regs[1].pattern.as_ref().unwrap().bytes(),
        &0x1122_3344_5566_7788u64.to_be_bytes()
    );
    assert_eq!(regs[2].state, RegisterState::Unknown);
    assert_eq!(
        (regs[3].state, &regs[3].pattern),
        (RegisterState::Partial, &None)
    );
}

/// The kernel names a card `card%02x` and a queue `%02x.%04x`, in lower case (drivers/s390/
/// crypto/ap_card.c and ap_queue.c). Any other spelling of the same number ("cardB3",
/// "card+f", "03.000D", "03.+00d") is not the kernel's: left out, so that one card is never
/// listed twice nor a queue under a name the listing does not have. Found by the `sysfs`
/// fuzz target (an entry "cardB3" was listed as card b3).
#[test]
fn entries_not_spelled_as_the_kernel_names_them_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for id in ["b3", "B3", "+f", "0F"] {
        card(
            root,
            &Card {
                id,
                card_type: Some("CEX7C"),
                hwtype: 13,
                functions: "0x92800000",
                online: "1",
                config: "1",
                serial: None,
            },
        );
    }
    for apqn in ["b3.000d", "b3.000D", "b3.+00e", "B3.000c"] {
        queue(root, apqn, "1", Some(MKVPS_FULL));
    }
    let cards = discover(dir.path()).unwrap();
    let listed: Vec<u8> = cards.iter().map(|c| c.card).collect();
    assert_eq!(listed, [0xb3], "only the kernel's spelling is a card");
    let apqns: Vec<String> = cca_apqns(&cards).iter().map(|a| a.to_string()).collect();
    assert_eq!(apqns, ["b3.000d"]);
}
