//! The PKCS#11 backend's data objects: JSON values (and labels) in the token, which a user
//! who knows the token's PIN can write (crates/pkcs11/src/objects.rs, reached through the
//! crate's `fuzzing` feature).

use mkclone_backend::KeyLabel;
use mkclone_pkcs11::fuzzing::{decode_value, parse_label};

use crate::alloc_cap::{capped, text_cap};

/// Target `pkcs11_objects`. Input: an object's label (`CKA_LABEL`, up to the first
/// newline), then its value (`CKA_VALUE`). The value is decoded as every kind of data
/// object the backend keeps (the register map `mkclone-pkcs11-register-map` and each
/// object below it, the key companion, EID and registry objects), the label as the
/// backend reads labels when it lists the token.
///
/// Checked besides no panic and the allocation cap: at most one format accepts a value
/// (each names its own `format`); a decoded value re-encodes to a value that decodes to
/// the same; the domain types inside keep their constructors' promises (a pattern or hash
/// as long as its algorithm makes it); a label the backend parses is the label it would write for what it parsed
/// (one object, one label).
pub fn pkcs11_objects(data: &[u8]) {
    let (label, value) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let cap = text_cap(data.len());
    let decoded = capped(cap, || decode_value(value));
    let accepted: Vec<&str> = decoded
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(f, _)| *f)
        .collect();
    assert!(
        accepted.len() <= 1,
        "one value read as several objects: {accepted:?}"
    );
    for (format, result) in &decoded {
        match result {
            Ok(d) => {
                assert!(
                    d.round_trip,
                    "{format}: {} re-encodes as {:?}, which decodes to another value",
                    d.debug,
                    String::from_utf8_lossy(&d.encoded)
                );
                if let Err(e) = &d.promises {
                    panic!(
                        "{format}: {} decodes, but breaks its types' promise: {e}",
                        d.debug
                    );
                }
                if let Err(e) = &d.checks {
                    capped(cap, || e.len());
                }
            }
            Err(e) => {
                capped(cap, || e.len());
            }
        }
    }

    let Ok(label) = std::str::from_utf8(label) else {
        return;
    };
    let meaning = capped(cap, || parse_label(label));
    if let Some((generation, canonical)) = &meaning.map {
        assert_eq!(
            canonical, label,
            "label {label:?} names register map generation {generation}, whose label is another"
        );
    }
    if let Some((kind, id, canonical)) = &meaning.managed {
        assert_eq!(
            canonical, label,
            "label {label:?} names {kind} object {id}, whose label is another"
        );
    }
    for name in [&meaning.companion_of, &meaning.registration_of]
        .into_iter()
        .flatten()
    {
        if let Err(e) = capped(cap, || KeyLabel::new(name)) {
            capped(cap, || e.to_string());
        }
    }
}
