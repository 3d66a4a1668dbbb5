//! `mkclone devices`: the CCA coprocessors this machine sees (sysfs, as lszcrypt users
//! know them) and the slots and tokens of the PKCS#11 modules a configuration names; with
//! `--capture DIR` (or MKCLONE_CAPTURE_DIR), the capture kit (src/zcrypt/capture.rs).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mkclone::config::{Config, NodeBackend};
use serde::Serialize;

use super::output::{Failure, one_line, print_json};

#[derive(Serialize)]
struct ModuleSlots {
    module: PathBuf,
    slots: Option<Vec<mkclone::pkcs11::SlotInfo>>,
    error: Option<String>,
}

#[derive(Serialize)]
struct HostLibrary {
    library: PathBuf,
    found: Option<mkclone_hostlib::LibraryAdapters>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Devices {
    /// CCA coprocessors; `None` with the reason when there is no AP bus here.
    cca: Option<Vec<mkclone::zcrypt::CcaCard>>,
    cca_error: Option<String>,
    pkcs11: Vec<ModuleSlots>,
    /// The capture kit's results, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    capture: Option<Vec<Captured>>,
    /// The adapters of the CCA host libraries `backend = "cca"` nodes name.
    cca_host_libraries: Vec<HostLibrary>,
}

/// One domain the capture kit asked.
#[derive(Serialize)]
struct Captured {
    apqn: String,
    device: PathBuf,
    files: Vec<PathBuf>,
    error: Option<String>,
}

pub fn run(
    sysfs: &Path,
    config: Option<&Path>,
    json: bool,
    capture: Option<PathBuf>,
) -> Result<(), Failure> {
    let (cca, cca_error) = match mkclone::zcrypt::discover(sysfs) {
        Ok(cards) => (Some(cards), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let config = config.map(Config::load).transpose()?;
    let capture_dir = capture.or_else(mkclone::zcrypt::capture_dir_from_env);
    let capture = capture_dir
        .map(|dir| capture_kit(&dir, sysfs, config.as_ref(), cca.as_deref().unwrap_or(&[])));
    let mut pkcs11 = Vec::new();
    let mut cca_host_libraries = Vec::new();
    if let Some(config) = &config {
        let libraries: BTreeSet<(PathBuf, PathBuf)> = config
            .nodes
            .values()
            .filter_map(|n| match &n.backend {
                NodeBackend::Cca(c) => Some(c.library_paths()),
                _ => None,
            })
            .collect();
        for (library, mk_library) in libraries {
            let (found, error) = match mkclone_hostlib::list_adapters(&library, &mk_library) {
                Ok(found) => (Some(found), None),
                Err(e) => (None, Some(e.to_string())),
            };
            cca_host_libraries.push(HostLibrary {
                library,
                found,
                error,
            });
        }
        let modules: BTreeSet<PathBuf> = config
            .nodes
            .values()
            .filter_map(|n| match &n.backend {
                NodeBackend::Pkcs11(p) => Some(p.module.clone()),
                _ => None,
            })
            .collect();
        for module in modules {
            match mkclone::pkcs11::list_slots(&module) {
                Ok(slots) => pkcs11.push(ModuleSlots {
                    module,
                    slots: Some(slots),
                    error: None,
                }),
                Err(e) => pkcs11.push(ModuleSlots {
                    module,
                    slots: None,
                    error: Some(e.to_string()),
                }),
            }
        }
    }
    let failed_captures = capture
        .iter()
        .flatten()
        .filter(|c| c.error.is_some())
        .count();
    let devices = Devices {
        cca,
        cca_error,
        pkcs11,
        capture,
        cca_host_libraries,
    };
    if json {
        print_json("devices", &devices)?;
        return capture_result(failed_captures).map_err(Failure::documented);
    }
    // Built whole, then shown with its control characters escaped: labels, serials, models
    // and slot descriptions are what the modules and devices say.
    let mut out = String::new();
    macro_rules! outln {
        () => {
            out.push('\n')
        };
        ($($arg:tt)+) => {{
            let _ = writeln!(out, $($arg)+);
        }};
    }
    match (&devices.cca, &devices.cca_error) {
        (Some(cards), _) => out.push_str(&mkclone::zcrypt::format_devices(cards)),
        (None, Some(e)) => outln!("CCA coprocessors: none ({e})"),
        (None, None) => {}
    }
    for m in &devices.pkcs11 {
        outln!("\nPKCS#11 module {}:", m.module.display());
        match (&m.slots, &m.error) {
            (Some(slots), _) if slots.is_empty() => outln!("  no slots"),
            (Some(slots), _) => {
                for s in slots {
                    match &s.token {
                        Some(t) => {
                            outln!(
                                "  slot {:<12} token {:<24} serial {:<16} {}{}",
                                s.slot_id,
                                format!("{:?}", t.label),
                                // A blank serial: the derived identity pins it.
                                one_line(if t.serial.is_empty() {
                                    &t.identity
                                } else {
                                    &t.serial
                                }),
                                one_line(&t.model),
                                if t.initialized {
                                    ""
                                } else {
                                    " (not initialized)"
                                }
                            );
                            outln!("    {}", t.uri);
                        }
                        None => outln!(
                            "  slot {:<12} (no token) {}",
                            s.slot_id,
                            one_line(&s.description)
                        ),
                    }
                }
            }
            (None, Some(e)) => outln!("  {e}"),
            (None, None) => {}
        }
    }
    for h in &devices.cca_host_libraries {
        match (&h.found, &h.error) {
            (Some(found), _) => {
                outln!(
                    "\nCCA host library {}{}:",
                    h.library.display(),
                    if found.simulated {
                        " (mkclone's simulated library: rehearsal only)"
                    } else {
                        ""
                    }
                );
                match &found.version {
                    Some(version) => outln!("  version {}", one_line(version)),
                    None => outln!("  version unknown (CSUACFV failed: see the log, -v)"),
                }
                if found.adapters.is_empty() {
                    outln!("  no adapters");
                }
                for (a, serial) in &found.adapters {
                    outln!("  CRP{a:02}  serial {}", one_line(serial));
                }
            }
            (None, Some(e)) => outln!("\nCCA host library {}: {e}", h.library.display()),
            (None, None) => {}
        }
    }
    if let Some(captured) = &devices.capture {
        outln!();
        if captured.is_empty() {
            outln!("capture: no CCA domain to ask (none online in sysfs, none configured)");
        }
        for c in captured {
            match &c.error {
                None => outln!(
                    "capture: {} through {}: {} exchanges written",
                    c.apqn,
                    c.device.display(),
                    c.files.len()
                ),
                Some(e) => outln!("capture: {} through {}: {e}", c.apqn, c.device.display()),
            }
        }
    }
    print!("{}", super::output::terminal_text(&out));
    capture_result(failed_captures)
}

/// A capture that failed on some domain fails the command (after everything is shown).
fn capture_result(failed: usize) -> Result<(), Failure> {
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "the capture failed on {failed} domain(s); see above"
        )))
    }
}

/// The capture kit on the configuration's zcrypt nodes, or else on every online CCA
/// domain in sysfs through /dev/z90crypt.
fn capture_kit(
    dir: &Path,
    sysfs: &Path,
    config: Option<&Config>,
    cards: &[mkclone::zcrypt::CcaCard],
) -> Vec<Captured> {
    let mut targets: Vec<(mkclone::cca::Apqn, PathBuf)> = config
        .map(|c| {
            c.nodes
                .values()
                .filter_map(|n| match &n.backend {
                    NodeBackend::Zcrypt(z) => Some((z.apqn, z.device_path())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if targets.is_empty() {
        targets = cards
            .iter()
            .filter(|c| c.status == "online")
            .flat_map(|c| c.queues.iter().filter(|q| q.status == "online"))
            .map(|q| (q.apqn, PathBuf::from(mkclone::zcrypt::DEFAULT_DEVICE)))
            .collect();
    }
    targets
        .into_iter()
        .map(|(apqn, device)| {
            let result = mkclone::zcrypt::capture_facility(dir, sysfs, apqn, &device);
            let (files, error) = match result {
                Ok(files) => (files, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            Captured {
                apqn: apqn.to_string(),
                device,
                files,
                error,
            }
        })
        .collect()
}
