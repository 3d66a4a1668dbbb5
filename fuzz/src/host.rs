//! Inputs from the host the ceremony runs on: the TOML configuration and the sysfs
//! attribute text of the zcrypt driver (which a broken card or kernel writes).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mkclone::config::Config;
use mkclone::zcrypt::sysfs::{cards_from, functions, parse_mkvps};
use mkclone::zcrypt::{RegisterState, cca_apqns, format_devices};

use crate::alloc_cap::{capped, text_cap};
use crate::shown;

/// Target `config`: a configuration file's text (not UTF-8: refused before parsing, as
/// `Config::load` does). A configuration that parses keeps the plan's promises: a node
/// for every role, distinct targets none of them the source, m distinct share indices
/// within 1..=n, at least one master key, a rehearsal whenever a node is simulated.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cap = text_cap(data.len());
    let config = match capped(cap, || Config::parse(Path::new("/fuzz/mkclone.toml"), text)) {
        Ok(c) => c,
        Err(e) => {
            shown(&e, cap);
            return;
        }
    };
    let plan = &config.plan;
    for node in [&plan.sa, &plan.source].into_iter().chain(&plan.targets) {
        assert!(
            config.nodes.contains_key(&node.name),
            "plan node {} has no configuration",
            node.name
        );
    }
    assert!(!plan.targets.is_empty(), "a plan without targets");
    let targets: BTreeSet<_> = plan.targets.iter().map(|t| &t.name).collect();
    assert_eq!(targets.len(), plan.targets.len(), "a target named twice");
    assert!(
        !targets.contains(&plan.source.name),
        "the source is a target"
    );
    assert!(!plan.kinds.is_empty(), "a plan without master keys");
    let (m, n) = (plan.m_of_n.m(), plan.m_of_n.n());
    assert!(1 <= m && m <= n, "m-of-n {m} of {n}");
    let indices: BTreeSet<u8> = plan.share_indices.iter().map(|i| i.get()).collect();
    assert_eq!(
        indices.len(),
        usize::from(m),
        "not m distinct share indices"
    );
    assert!(
        indices.iter().all(|&i| 1 <= i && i <= n),
        "a share index outside 1..=n"
    );
    let any_sim = config.nodes.values().any(|n| n.backend.name() == "sim");
    assert!(
        !any_sim || plan.rehearsal,
        "a plan with simulated nodes is not a rehearsal"
    );
}

/// The AP bus directory the sysfs target's entries are in.
const DEVICES: &str = "/sys/bus/ap/devices";

/// A sysfs dump: `== <entry>/<attribute>` lines, each followed by the attribute's text
/// up to the next such line. The entries named are the directory's listing; an attribute
/// not given does not exist; text that is not UTF-8 fails to read, as `read_to_string`
/// does.
fn parse_dump(data: &[u8]) -> (Vec<String>, BTreeMap<PathBuf, Vec<u8>>) {
    let mut names = BTreeSet::new();
    let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut current: Option<PathBuf> = None;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if let Some(header) = line.strip_prefix(b"== ") {
            let header = String::from_utf8_lossy(header.trim_ascii_end()).into_owned();
            let (entry, attribute) = header.split_once('/').unwrap_or((&header, ""));
            names.insert(entry.to_owned());
            let path = Path::new(DEVICES).join(entry).join(attribute);
            files.entry(path.clone()).or_default();
            current = Some(path);
        } else if let Some(path) = &current {
            files
                .entry(path.clone())
                .or_default()
                .extend_from_slice(line);
        }
    }
    (names.into_iter().collect(), files)
}

/// Target `sysfs`: attribute text of the AP bus (cards' `type`, `hwtype`, `ap_functions`,
/// `online`, `config`, `chkstop`, `serialnr`; queues' `online`, `mkvps`) as a dump
/// ([`parse_dump`]). Discovery keeps only CCA coprocessors, each queue under its own card;
/// the listing (`mkclone devices`) and its JSON form are built without a panic; a parsed
/// `mkvps` register carries a pattern only when it holds a key.
pub fn sysfs(data: &[u8]) {
    let (names, files) = parse_dump(data);
    let cap = text_cap(data.len());
    let mut read = |path: &Path| -> io::Result<String> {
        let bytes = files.get(path).ok_or(io::ErrorKind::NotFound)?;
        String::from_utf8(bytes.clone()).map_err(|_| io::ErrorKind::InvalidData.into())
    };
    let cards = capped(cap, || {
        cards_from(Path::new(DEVICES), names.clone(), &mut read, Duration::ZERO)
    });
    for card in &cards {
        assert!(
            card.functions & functions::COPROCESSOR != 0
                && card.functions & functions::ACCELERATOR == 0,
            "card {:02x} with functions {:#x} is not a CCA coprocessor",
            card.card,
            card.functions
        );
        assert!(
            names.contains(&format!("card{:02x}", card.card)),
            "card {:02x} is not in the listing",
            card.card
        );
        for queue in &card.queues {
            assert_eq!(queue.apqn.card, card.card, "a queue under another card");
            for r in queue.master_keys.iter().flatten() {
                let holds_key = matches!(r.state, RegisterState::Full | RegisterState::Valid);
                assert!(
                    r.pattern.is_none() || holds_key,
                    "a pattern for an empty register"
                );
            }
        }
    }
    capped(cap, || {
        let _ = format_devices(&cards);
        let _ = serde_json::to_string(&cards).expect("the listing serializes");
        let _ = cca_apqns(&cards);
    });
    // The mkvps parser alone, on every attribute's text.
    for text in files.values().filter_map(|b| std::str::from_utf8(b).ok()) {
        let registers = capped(cap, || parse_mkvps(text));
        assert!(
            registers.len() <= text.lines().count(),
            "more registers than lines"
        );
    }
}
