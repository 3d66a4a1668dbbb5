//! `mkclone devices`: the CCA coprocessors this machine sees (sysfs, as lszcrypt users
//! know them) and the slots and tokens of the PKCS#11 modules a configuration names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mkclone::config::{Config, NodeBackend};
use serde::Serialize;

use super::output::Failure;

#[derive(Serialize)]
struct ModuleSlots {
    module: PathBuf,
    slots: Option<Vec<mkclone::pkcs11::SlotInfo>>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Devices {
    /// CCA coprocessors; `None` with the reason when there is no AP bus here.
    cca: Option<Vec<mkclone::zcrypt::CcaCard>>,
    cca_error: Option<String>,
    pkcs11: Vec<ModuleSlots>,
}

pub fn run(sysfs: &Path, config: Option<&Path>, json: bool) -> Result<(), Failure> {
    let (cca, cca_error) = match mkclone::zcrypt::discover(sysfs) {
        Ok(cards) => (Some(cards), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut pkcs11 = Vec::new();
    if let Some(path) = config {
        let config = Config::load(path)?;
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
    let devices = Devices {
        cca,
        cca_error,
        pkcs11,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&devices).map_err(|e| Failure::failed(e.to_string()))?
        );
        return Ok(());
    }
    match (&devices.cca, &devices.cca_error) {
        (Some(cards), _) => print!("{}", mkclone::zcrypt::format_devices(cards)),
        (None, Some(e)) => println!("CCA coprocessors: none ({e})"),
        (None, None) => {}
    }
    for m in &devices.pkcs11 {
        println!("\nPKCS#11 module {}:", m.module.display());
        match (&m.slots, &m.error) {
            (Some(slots), _) if slots.is_empty() => println!("  no slots"),
            (Some(slots), _) => {
                for s in slots {
                    match &s.token {
                        Some(t) => {
                            println!(
                                "  slot {:<12} token {:<24} serial {:<16} {}{}",
                                s.slot_id,
                                format!("{:?}", t.label),
                                // A blank serial: the derived identity pins it.
                                if t.serial.is_empty() {
                                    &t.identity
                                } else {
                                    &t.serial
                                },
                                t.model,
                                if t.initialized {
                                    ""
                                } else {
                                    " (not initialized)"
                                }
                            );
                            println!("    {}", t.uri);
                        }
                        None => println!("  slot {:<12} (no token) {}", s.slot_id, s.description),
                    }
                }
            }
            (None, Some(e)) => println!("  {e}"),
            (None, None) => {}
        }
    }
    Ok(())
}
