//! A sysfs tree for the model's cards, beside the node, with the attributes and formats
//! the kernel gives them (drivers/s390/crypto: ap_card.c, ap_queue.c, zcrypt_card.c,
//! zcrypt_queue.c, zcrypt_cex4.c): what `mkclone devices --sysfs DIR` and the capture
//! kit read.

use std::io;
use std::path::Path;

use crate::model::ZcryptModel;

/// `ap_functions` of a CCA coprocessor (the coprocessor bit 0x10000000 among others).
pub const CCA_FUNCTIONS: &str = "0x92800000";

fn flag(v: bool) -> &'static str {
    if v { "1\n" } else { "0\n" }
}

/// Write `bus/ap/devices/cardXX` and `XX.YYYY` under `root` for every card and domain
/// of `model`. The simulated cards have no AES or APKA master key: their `mkvps` says
/// so (NEW empty, CUR and OLD invalid, patterns zero), as an older kernel prints it
/// (no ASYM lines).
pub fn write_tree(root: &Path, model: &ZcryptModel) -> io::Result<()> {
    let devices = root.join("bus/ap/devices");
    std::fs::create_dir_all(&devices)?;
    let first_domain = model
        .cards()
        .values()
        .flat_map(|c| c.queues.keys())
        .next()
        .copied()
        .unwrap_or(0);
    std::fs::write(root.join("bus/ap/ap_domain"), format!("{first_domain}\n"))?;
    for (id, card) in model.cards() {
        let dir = devices.join(format!("card{id:02x}"));
        std::fs::create_dir_all(&dir)?;
        let attrs = [
            ("type", format!("{}\n", card.card_type)),
            ("hwtype", format!("{}\n", card.hwtype)),
            ("raw_hwtype", format!("{}\n", card.hwtype)),
            ("ap_functions", format!("{CCA_FUNCTIONS}\n")),
            ("online", flag(card.online).to_string()),
            ("config", flag(card.config).to_string()),
            ("chkstop", flag(card.chkstop).to_string()),
            ("serialnr", format!("{}\n", card.serial.as_str())),
            ("max_msg_size", "12288\n".to_string()),
        ];
        for (name, value) in attrs {
            std::fs::write(dir.join(name), value)?;
        }
        for (domain, queue) in &card.queues {
            let qdir = devices.join(format!("{id:02x}.{domain:04x}"));
            std::fs::create_dir_all(&qdir)?;
            std::fs::write(qdir.join("online"), flag(queue.online))?;
            std::fs::write(qdir.join("config"), flag(queue.config))?;
            std::fs::write(qdir.join("chkstop"), flag(queue.chkstop))?;
            let mut mkvps = String::new();
            for kind in ["AES", "APKA"] {
                mkvps += &format!("{kind} NEW: empty 0x{:016x}\n", 0u64);
                mkvps += &format!("{kind} CUR: invalid 0x{:016x}\n", 0u64);
                mkvps += &format!("{kind} OLD: invalid 0x{:016x}\n", 0u64);
            }
            std::fs::write(qdir.join("mkvps"), mkvps)?;
        }
    }
    Ok(())
}
