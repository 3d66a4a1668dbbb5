//! Cryptographic_Facility_Query (FQ) with the rules STATICSA and STATICSB: the adapter
//! serial number and the states and verification patterns of the ASYM, AES and APKA
//! master-key registers, and the SYM patterns.
//!
//! These encodings are PUBLIC: the Linux kernel sends both queries and reads their
//! replies (`drivers/s390/crypto/zcrypt_ccamisc.c`, `cca_query_crypto_facility` and
//! `cca_get_info`, which feed sysfs `serialnr` and `mkvps`); the offsets are summarised in
//! `reference/zcrypt-abi.md`. What the kernel does not read is not decoded here.
//!
//! Request (as the kernel builds it): rule array = one keyword; verb data = a block of
//! [`FQ_VERB_DATA_SPACE`] zero bytes, the room the card may fill; key block empty.
//!
//! Reply: rule array of 8-byte elements, each state an ASCII digit in the first byte
//! (NEW: '1' empty, '2' partially loaded, '3' full; CURRENT and OLD: '1' invalid,
//! '2' valid); verb data a series of {length u16, id u16, value} blocks. Offsets are
//! 0-based, from the start of the element list and of the verb data:
//!
//! | rule | field | where |
//! |---|---|---|
//! | STATICSA | adapter serial | element 0 (8 bytes) |
//! | STATICSA | ASYM NEW, CURRENT, OLD state | elements 4, 5, 6 |
//! | STATICSA | AES NEW, CURRENT, OLD state | elements 7, 8, 9 |
//! | STATICSA | ASYM OLD, CURRENT, NEW pattern (16, MDC-4) | verb data 64, 84, 104 |
//! | STATICSA | AES OLD, CURRENT, NEW pattern (8, SHA-256 method) | verb data 172, 184, 196 |
//! | STATICSB | APKA NEW, CURRENT, OLD state | elements 10, 11, 12 |
//! | STATICSB | APKA OLD, CURRENT, NEW pattern (8, SHA-256 method) | verb data 208, 220, 232 |
//! | STATICSB | SYM CURRENT pattern (8): id X'0F07' at 134, value at 136 | verb data |
//! | STATICSB | SYM NEW pattern (8): id X'0F06' at 146, value at 148 | verb data |
//!
//! The kernel requires at least 10 elements and 204 bytes of verb data for STATICSA, and
//! 13 elements and 240 bytes for STATICSB; so does this decoder. As the kernel does, a
//! pattern is taken only when its register holds a key (CURRENT/OLD valid, NEW full).
//!
//! Pattern algorithms: ASYM 16-byte patterns are MDC-4 (IBM, "Key-token verification
//! patterns": RSA private-key sections X'06'/X'08' carry the 16-byte MDC-4 value of the
//! ASYM master key); AES and APKA 8-byte patterns are the SHA-256 method; the SYM 8-byte
//! pattern of a triple-length master key is the SHA-1 method (the same page: DES key
//! tokens version X'00' with a triple-length master key). The SYM block ids come from
//! `reference/zcrypt-abi.md` and are not read by the kernel: a block whose id differs is
//! left out rather than guessed at.

use mkclone_backend::{
    CurrentState, MasterKeyKind, NewState, PatternAlgorithm, SerialNumber, VerificationPattern,
};

use crate::error::CodecError;
use crate::parm::Keyword;

/// Size of the verb-data block an FQ STATICSA/STATICSB request offers: `VARDATASIZE` in
/// the kernel's zcrypt_ccamisc.c.
pub const FQ_VERB_DATA_SPACE: usize = 4096;

/// Offsets of the STATICSA and STATICSB reply fields (see the module table).
pub mod off {
    /// STATICSA: minimum number of rule-array elements, minimum verb-data length.
    pub const A_MIN_ELEMENTS: usize = 10;
    pub const A_MIN_VERB_DATA: usize = 204;
    pub const A_SERIAL_ELEMENT: usize = 0;
    /// NEW, CURRENT, OLD.
    pub const A_ASYM_STATE_ELEMENTS: [usize; 3] = [4, 5, 6];
    pub const A_AES_STATE_ELEMENTS: [usize; 3] = [7, 8, 9];
    /// NEW, CURRENT, OLD (the kernel lists them old, current, new: 64, 84, 104).
    pub const A_ASYM_PATTERNS: [usize; 3] = [104, 84, 64];
    pub const A_AES_PATTERNS: [usize; 3] = [196, 184, 172];

    /// STATICSB: minimum number of rule-array elements, minimum verb-data length.
    pub const B_MIN_ELEMENTS: usize = 13;
    pub const B_MIN_VERB_DATA: usize = 240;
    pub const B_APKA_STATE_ELEMENTS: [usize; 3] = [10, 11, 12];
    pub const B_APKA_PATTERNS: [usize; 3] = [232, 220, 208];
    /// SYM CURRENT and NEW pattern blocks: (offset of the id, id, offset of the value).
    pub const B_SYM_CURRENT: (usize, u16, usize) = (134, 0x0F07, 136);
    pub const B_SYM_NEW: (usize, u16, usize) = (146, 0x0F06, 148);
}

/// One master key's three registers as a facility query reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeyRegisters {
    pub kind: MasterKeyKind,
    /// `None` when the card reported a state digit mkclone does not know.
    pub new: Option<NewState>,
    pub current: Option<CurrentState>,
    pub old: Option<CurrentState>,
    /// Present only when NEW is full.
    pub new_pattern: Option<VerificationPattern>,
    /// Present only when CURRENT is valid.
    pub current_pattern: Option<VerificationPattern>,
    /// Present only when OLD is valid.
    pub old_pattern: Option<VerificationPattern>,
}

/// The decoded STATICSA reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticsA {
    pub serial: SerialNumber,
    pub asym: MasterKeyRegisters,
    pub aes: MasterKeyRegisters,
}

/// The decoded STATICSB reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticsB {
    pub apka: MasterKeyRegisters,
    /// The SYM CURRENT pattern (SHA-1 method), when the block carries the expected id.
    pub sym_current_pattern: Option<VerificationPattern>,
    /// The SYM NEW pattern (SHA-1 method), when the block carries the expected id.
    pub sym_new_pattern: Option<VerificationPattern>,
}

fn new_state(digit: u8) -> Option<NewState> {
    match digit {
        b'1' => Some(NewState::Empty),
        b'2' => Some(NewState::Partial),
        b'3' => Some(NewState::Full),
        _ => None,
    }
}

fn current_state(digit: u8) -> Option<CurrentState> {
    match digit {
        b'1' => Some(CurrentState::Invalid),
        b'2' => Some(CurrentState::Valid),
        _ => None,
    }
}

fn new_digit(state: Option<NewState>) -> u8 {
    match state {
        Some(NewState::Empty) => b'1',
        Some(NewState::Partial) => b'2',
        Some(NewState::Full) => b'3',
        None => b' ',
    }
}

fn current_digit(state: Option<CurrentState>) -> u8 {
    match state {
        Some(CurrentState::Invalid) => b'1',
        Some(CurrentState::Valid) => b'2',
        None => b' ',
    }
}

fn digit_element(digit: u8) -> Keyword {
    let mut k = [b' '; 8];
    k[0] = digit;
    Keyword::from_bytes(k)
}

fn check_sizes(
    what: &'static str,
    elements: &[Keyword],
    verb_data: &[u8],
    min_elements: usize,
    min_verb_data: usize,
) -> Result<(), CodecError> {
    if elements.len() < min_elements {
        return Err(CodecError::Truncated {
            what,
            needed: min_elements * 8,
            available: elements.len() * 8,
        });
    }
    if verb_data.len() < min_verb_data {
        return Err(CodecError::Truncated {
            what,
            needed: min_verb_data,
            available: verb_data.len(),
        });
    }
    Ok(())
}

fn pattern_at(
    verb_data: &[u8],
    at: usize,
    algorithm: PatternAlgorithm,
    what: &'static str,
) -> Result<VerificationPattern, CodecError> {
    let len = algorithm.len();
    let bytes = verb_data.get(at..at + len).ok_or(CodecError::Truncated {
        what,
        needed: at + len,
        available: verb_data.len(),
    })?;
    VerificationPattern::new(algorithm, bytes).map_err(|source| CodecError::Domain { what, source })
}

/// Decode one key's registers: states from `elements`, patterns from `verb_data` at
/// `patterns` (NEW, CURRENT, OLD), each only when its register holds a key.
fn registers(
    kind: MasterKeyKind,
    elements: &[Keyword],
    states: [usize; 3],
    verb_data: &[u8],
    patterns: [usize; 3],
    algorithm: PatternAlgorithm,
    what: &'static str,
) -> Result<MasterKeyRegisters, CodecError> {
    let digit = |i: usize| elements.get(i).map(|k| k.bytes()[0]).unwrap_or(b' ');
    let new = new_state(digit(states[0]));
    let current = current_state(digit(states[1]));
    let old = current_state(digit(states[2]));
    // A field of zeros is "no pattern reported" (a device that does not compute this
    // pattern, such as mkclone's simulator for MDC-4): a real pattern of all zeros would
    // be a 2^-64 (or 2^-128) accident.
    let take = |held: bool, at: usize| -> Result<Option<VerificationPattern>, CodecError> {
        if held {
            let p = pattern_at(verb_data, at, algorithm, what)?;
            Ok((!p.bytes().iter().all(|&b| b == 0)).then_some(p))
        } else {
            Ok(None)
        }
    };
    Ok(MasterKeyRegisters {
        kind,
        new,
        current,
        old,
        new_pattern: take(new == Some(NewState::Full), patterns[0])?,
        current_pattern: take(current == Some(CurrentState::Valid), patterns[1])?,
        old_pattern: take(old == Some(CurrentState::Valid), patterns[2])?,
    })
}

fn put_registers(
    r: &MasterKeyRegisters,
    elements: &mut [Keyword],
    states: [usize; 3],
    verb_data: &mut [u8],
    patterns: [usize; 3],
) {
    elements[states[0]] = digit_element(new_digit(r.new));
    elements[states[1]] = digit_element(current_digit(r.current));
    elements[states[2]] = digit_element(current_digit(r.old));
    for (pattern, at) in [&r.new_pattern, &r.current_pattern, &r.old_pattern]
        .into_iter()
        .zip(patterns)
    {
        if let Some(p) = pattern {
            verb_data[at..at + p.bytes().len()].copy_from_slice(p.bytes());
        }
    }
}

/// Write a {length, id, value} block header in front of the value at `value_at`.
fn put_block_header(verb_data: &mut [u8], value_at: usize, id: u16, value_len: usize) {
    let len = (4 + value_len) as u16;
    verb_data[value_at - 4..value_at - 2].copy_from_slice(&len.to_be_bytes());
    verb_data[value_at - 2..value_at].copy_from_slice(&id.to_be_bytes());
}

impl StaticsA {
    /// Decode a STATICSA reply's rule-array elements and verb data.
    pub fn decode(elements: &[Keyword], verb_data: &[u8]) -> Result<Self, CodecError> {
        const WHAT: &str = "FQ STATICSA reply";
        check_sizes(
            WHAT,
            elements,
            verb_data,
            off::A_MIN_ELEMENTS,
            off::A_MIN_VERB_DATA,
        )?;
        let serial_bytes = elements[off::A_SERIAL_ELEMENT].bytes();
        let end = serial_bytes
            .iter()
            .rposition(|&b| b != b' ' && b != 0)
            .map_or(0, |i| i + 1);
        let serial_text =
            std::str::from_utf8(&serial_bytes[..end]).map_err(|_| CodecError::Field {
                what: WHAT,
                field: "adapter serial",
                detail: format!("X'{}' is not ASCII", hex_upper(&serial_bytes)),
            })?;
        let serial = SerialNumber::new(serial_text).map_err(|source| CodecError::Domain {
            what: "STATICSA adapter serial",
            source,
        })?;
        Ok(Self {
            serial,
            asym: registers(
                MasterKeyKind::Asym,
                elements,
                off::A_ASYM_STATE_ELEMENTS,
                verb_data,
                off::A_ASYM_PATTERNS,
                PatternAlgorithm::Mdc4,
                WHAT,
            )?,
            aes: registers(
                MasterKeyKind::Aes,
                elements,
                off::A_AES_STATE_ELEMENTS,
                verb_data,
                off::A_AES_PATTERNS,
                PatternAlgorithm::Sha256Method,
                WHAT,
            )?,
        })
    }

    /// Encode as a card answers (the simulator's reply): fields this module does not
    /// know are blank elements and zero bytes.
    pub fn encode(&self) -> (Vec<Keyword>, Vec<u8>) {
        let mut elements = vec![Keyword::new(""); off::A_MIN_ELEMENTS];
        let mut verb_data = vec![0u8; off::A_MIN_VERB_DATA];
        elements[off::A_SERIAL_ELEMENT] = Keyword::from_bytes(self.serial.to_wire());
        put_registers(
            &self.asym,
            &mut elements,
            off::A_ASYM_STATE_ELEMENTS,
            &mut verb_data,
            off::A_ASYM_PATTERNS,
        );
        put_registers(
            &self.aes,
            &mut elements,
            off::A_AES_STATE_ELEMENTS,
            &mut verb_data,
            off::A_AES_PATTERNS,
        );
        (elements, verb_data)
    }
}

impl StaticsB {
    /// Decode a STATICSB reply's rule-array elements and verb data.
    pub fn decode(elements: &[Keyword], verb_data: &[u8]) -> Result<Self, CodecError> {
        const WHAT: &str = "FQ STATICSB reply";
        check_sizes(
            WHAT,
            elements,
            verb_data,
            off::B_MIN_ELEMENTS,
            off::B_MIN_VERB_DATA,
        )?;
        let sym = |(id_at, id, value_at): (usize, u16, usize)| {
            let found = u16::from_be_bytes([verb_data[id_at], verb_data[id_at + 1]]);
            if found == id {
                pattern_at(verb_data, value_at, PatternAlgorithm::Sha1Method, WHAT).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            apka: registers(
                MasterKeyKind::Apka,
                elements,
                off::B_APKA_STATE_ELEMENTS,
                verb_data,
                off::B_APKA_PATTERNS,
                PatternAlgorithm::Sha256Method,
                WHAT,
            )?,
            sym_current_pattern: sym(off::B_SYM_CURRENT)?,
            sym_new_pattern: sym(off::B_SYM_NEW)?,
        })
    }

    /// Encode as a card answers (the simulator's reply).
    pub fn encode(&self) -> (Vec<Keyword>, Vec<u8>) {
        let mut elements = vec![Keyword::new(""); off::B_MIN_ELEMENTS];
        let mut verb_data = vec![0u8; off::B_MIN_VERB_DATA];
        put_registers(
            &self.apka,
            &mut elements,
            off::B_APKA_STATE_ELEMENTS,
            &mut verb_data,
            off::B_APKA_PATTERNS,
        );
        for (pattern, (_, id, value_at)) in [
            (&self.sym_current_pattern, off::B_SYM_CURRENT),
            (&self.sym_new_pattern, off::B_SYM_NEW),
        ] {
            if let Some(p) = pattern {
                put_block_header(&mut verb_data, value_at, id, p.bytes().len());
                verb_data[value_at..value_at + p.bytes().len()].copy_from_slice(p.bytes());
            }
        }
        (elements, verb_data)
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

// The tests' vectors are written out as fuzz seeds when MKCLONE_FUZZ_SEEDS is set.
#[cfg(test)]
#[path = "../../../fuzz/seed_export.rs"]
mod seed_export;

#[cfg(test)]
mod tests {
    //! Hand-assembled byte vectors: every field placed at the offset the module table
    //! (the kernel's zcrypt_ccamisc.c) gives, then decoded through the same path a reply
    //! from a card takes (`Reply::from_message`).

    use super::seed_export;
    use super::*;
    use crate::verbs::{Query, Reply, ReplyBody, Request};

    /// A reply CPRBX written byte by byte (reference/zcrypt-abi.md, struct CPRBX).
    fn reply_cprbx(parm_len: usize, domain: u16) -> Vec<u8> {
        let mut b = vec![0u8; 220];
        b[0..2].copy_from_slice(&220u16.to_be_bytes()); // cprb_len
        b[2] = 0x02; // cprb_ver_id
        b[6..8].copy_from_slice(b"T2"); // func_id
        b[24..28].copy_from_slice(&(parm_len as u32).to_be_bytes()); // rpld_parml
        // ccp_rtcode (144) and ccp_rscode (146) stay 0
        b[170..172].copy_from_slice(&domain.to_be_bytes()); // domain
        b
    }

    /// "FQ", rule array (length counts itself), verb data (likewise), empty key block.
    fn fq_reply(elements: &[[u8; 8]], verb_data: &[u8]) -> Vec<u8> {
        let mut p = b"FQ".to_vec();
        p.extend_from_slice(&((2 + 8 * elements.len()) as u16).to_be_bytes());
        for e in elements {
            p.extend_from_slice(e);
        }
        p.extend_from_slice(&((2 + verb_data.len()) as u16).to_be_bytes());
        p.extend_from_slice(verb_data);
        p.extend_from_slice(&2u16.to_be_bytes());
        let mut m = reply_cprbx(p.len(), 0x000d);
        m.extend_from_slice(&p);
        seed_export::write("cprb_reply", &m);
        // The fq_statics target's input: element count, elements, verb data.
        let mut statics = vec![elements.len() as u8];
        statics.extend(elements.iter().flatten());
        statics.extend_from_slice(verb_data);
        seed_export::write("fq_statics", &statics);
        m
    }

    fn digit(d: u8) -> [u8; 8] {
        let mut e = *b"        ";
        e[0] = d;
        e
    }

    fn pattern(algorithm: PatternAlgorithm, hex: &str) -> VerificationPattern {
        VerificationPattern::new(algorithm, &hex::decode(hex).unwrap()).unwrap()
    }

    /// `kind`'s registers with a key in each: NEW full, CURRENT and OLD valid, and these
    /// patterns (NEW, CURRENT, OLD).
    fn all_held(
        kind: MasterKeyKind,
        algorithm: PatternAlgorithm,
        [new, current, old]: [&str; 3],
    ) -> MasterKeyRegisters {
        MasterKeyRegisters {
            kind,
            new: Some(NewState::Full),
            current: Some(CurrentState::Valid),
            old: Some(CurrentState::Valid),
            new_pattern: Some(pattern(algorithm, new)),
            current_pattern: Some(pattern(algorithm, current)),
            old_pattern: Some(pattern(algorithm, old)),
        }
    }

    const ASYM_OLD: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
    const ASYM_CUR: &str = "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
    const ASYM_NEW: &str = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf";
    const AES_OLD: &str = "1011121314151617";
    const AES_CUR: &str = "2021222324252627";
    const AES_NEW: &str = "3031323334353637";

    fn staticsa_vector(states: [u8; 6]) -> Vec<u8> {
        let mut elements = vec![*b"        "; 10];
        elements[0] = *b"93AABEG5"; // adapter serial
        for (i, d) in states.into_iter().enumerate() {
            elements[4 + i] = digit(d); // 4-6 ASYM new/cur/old, 7-9 AES new/cur/old
        }
        let mut vd = vec![0u8; 204];
        vd[64..80].copy_from_slice(&hex::decode(ASYM_OLD).unwrap());
        vd[84..100].copy_from_slice(&hex::decode(ASYM_CUR).unwrap());
        vd[104..120].copy_from_slice(&hex::decode(ASYM_NEW).unwrap());
        vd[172..180].copy_from_slice(&hex::decode(AES_OLD).unwrap());
        vd[184..192].copy_from_slice(&hex::decode(AES_CUR).unwrap());
        vd[196..204].copy_from_slice(&hex::decode(AES_NEW).unwrap());
        fq_reply(&elements, &vd)
    }

    fn decode_a(message: &[u8]) -> Result<StaticsA, CodecError> {
        match Reply::from_message(message, &Request::Query(Query::StatIcsa))?.body {
            ReplyBody::StaticsA(a) => Ok(*a),
            other => panic!("{other:?}"),
        }
    }

    fn decode_b(message: &[u8]) -> Result<StaticsB, CodecError> {
        match Reply::from_message(message, &Request::Query(Query::StatIcsb))?.body {
            ReplyBody::StaticsB(b) => Ok(*b),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn staticsa_decodes_serial_states_and_patterns_from_the_documented_offsets() {
        let a = decode_a(&staticsa_vector(*b"322322")).unwrap();
        assert_eq!(a.serial.as_str(), "93AABEG5");
        for (registers, kind, algorithm, patterns) in [
            (
                &a.asym,
                MasterKeyKind::Asym,
                PatternAlgorithm::Mdc4,
                [ASYM_NEW, ASYM_CUR, ASYM_OLD],
            ),
            (
                &a.aes,
                MasterKeyKind::Aes,
                PatternAlgorithm::Sha256Method,
                [AES_NEW, AES_CUR, AES_OLD],
            ),
        ] {
            assert_eq!(*registers, all_held(kind, algorithm, patterns));
        }
    }

    #[test]
    fn staticsa_takes_a_pattern_only_when_its_register_holds_a_key() {
        // ASYM: NEW partially loaded, CURRENT valid, OLD invalid; AES: NEW empty,
        // CURRENT invalid, OLD invalid.
        let a = decode_a(&staticsa_vector(*b"221111")).unwrap();
        assert_eq!(a.asym.new, Some(NewState::Partial));
        assert_eq!(a.asym.new_pattern, None);
        assert_eq!(
            a.asym.current_pattern,
            Some(pattern(PatternAlgorithm::Mdc4, ASYM_CUR))
        );
        assert_eq!(a.asym.old, Some(CurrentState::Invalid));
        assert_eq!(a.asym.old_pattern, None);
        assert_eq!(a.aes.new, Some(NewState::Empty));
        assert_eq!(
            (
                &a.aes.new_pattern,
                &a.aes.current_pattern,
                &a.aes.old_pattern
            ),
            (&None, &None, &None)
        );
    }

    #[test]
    fn staticsa_reports_unknown_state_digits_as_unknown() {
        let a = decode_a(&staticsa_vector(*b"9 2 x2")).unwrap();
        assert_eq!((a.asym.new, a.asym.current), (None, None));
        assert_eq!(a.asym.old, Some(CurrentState::Valid));
        assert_eq!(a.aes.new, None);
    }

    #[test]
    fn staticsa_refuses_replies_shorter_than_the_kernel_accepts() {
        // 9 elements instead of 10.
        let mut elements = vec![*b"        "; 9];
        elements[0] = *b"93AABEG5";
        assert!(matches!(
            decode_a(&fq_reply(&elements, &[0; 204])),
            Err(CodecError::Truncated { .. })
        ));
        // 203 bytes of verb data instead of 204.
        elements.push(*b"        ");
        assert!(matches!(
            decode_a(&fq_reply(&elements, &[0; 203])),
            Err(CodecError::Truncated { .. })
        ));
        // A blank serial is refused, not invented.
        assert!(matches!(
            decode_a(&fq_reply(&[*b"        "; 10], &[0; 204])),
            Err(CodecError::Domain { .. })
        ));
    }

    const APKA_OLD: &str = "4041424344454647";
    const APKA_CUR: &str = "5051525354555657";
    const APKA_NEW: &str = "6061626364656667";
    const SYM_CUR: &str = "7071727374757677";
    const SYM_NEW: &str = "8081828384858687";

    fn staticsb_vector(states: [u8; 3], sym_ids: (u16, u16)) -> Vec<u8> {
        let mut elements = vec![*b"        "; 13];
        for (i, d) in states.into_iter().enumerate() {
            elements[10 + i] = digit(d); // 10-12 APKA new/cur/old
        }
        let mut vd = vec![0u8; 240];
        // SYM CURRENT block: length 12, id X'0F07' at 134, value at 136.
        vd[132..134].copy_from_slice(&12u16.to_be_bytes());
        vd[134..136].copy_from_slice(&sym_ids.0.to_be_bytes());
        vd[136..144].copy_from_slice(&hex::decode(SYM_CUR).unwrap());
        // SYM NEW block: length 12, id X'0F06' at 146, value at 148.
        vd[144..146].copy_from_slice(&12u16.to_be_bytes());
        vd[146..148].copy_from_slice(&sym_ids.1.to_be_bytes());
        vd[148..156].copy_from_slice(&hex::decode(SYM_NEW).unwrap());
        vd[208..216].copy_from_slice(&hex::decode(APKA_OLD).unwrap());
        vd[220..228].copy_from_slice(&hex::decode(APKA_CUR).unwrap());
        vd[232..240].copy_from_slice(&hex::decode(APKA_NEW).unwrap());
        fq_reply(&elements, &vd)
    }

    /// A STATICSA reply shaped as the kernel hands one to user space and no stricter
    /// than the kernel reads it (zcrypt_msgtype6.c `convert_response_xcrb`: cprb_ver_id
    /// X'02' only; zcrypt_ccamisc.c `cca_query_crypto_facility`: rule array and verb data
    /// by their lengths): func_id not "T2", the 12 bytes at 172 not zero, no key block,
    /// and bytes after the verb data inside rpld_parml and after rpld_parml.
    #[test]
    fn a_real_kernel_shaped_staticsa_reply_is_decoded() {
        let clean = staticsa_vector(*b"322322");
        let mut m = clean[..220].to_vec();
        m[6..8].copy_from_slice(b"T3"); // func_id other than "T2"
        for (i, b) in m[172..184].iter_mut().enumerate() {
            *b = 0xA0 + i as u8; // reserved bytes not zero
        }
        // The parameter block without its key-block length, then 6 bytes nobody reads.
        let parm = &clean[220..clean.len() - 2];
        let mut p = parm.to_vec();
        p.extend_from_slice(&[0x00, 0x07, 0xC5, 0xC9, 0xC4, 0x40]);
        m[24..28].copy_from_slice(&(p.len() as u32).to_be_bytes()); // rpld_parml
        m.extend_from_slice(&p);
        m.extend_from_slice(&[0; 3]); // beyond rpld_parml: what the buffer held
        assert_eq!(decode_a(&m).unwrap(), decode_a(&clean).unwrap());
        // The one field the kernel checks, cprb_ver_id, is still checked.
        m[2] = 0x01;
        assert!(matches!(decode_a(&m), Err(CodecError::Field { .. })));
    }

    #[test]
    fn staticsb_decodes_apka_states_and_patterns_and_the_sym_patterns() {
        let b = decode_b(&staticsb_vector(*b"322", (0x0F07, 0x0F06))).unwrap();
        let apka = [APKA_NEW, APKA_CUR, APKA_OLD];
        assert_eq!(
            b.apka,
            all_held(MasterKeyKind::Apka, PatternAlgorithm::Sha256Method, apka)
        );
        assert_eq!(
            b.sym_current_pattern,
            Some(pattern(PatternAlgorithm::Sha1Method, SYM_CUR))
        );
        assert_eq!(
            b.sym_new_pattern,
            Some(pattern(PatternAlgorithm::Sha1Method, SYM_NEW))
        );
    }

    #[test]
    fn staticsb_leaves_out_sym_blocks_whose_id_is_not_the_expected_one() {
        let b = decode_b(&staticsb_vector(*b"111", (0x0F08, 0x0000))).unwrap();
        assert_eq!((b.sym_current_pattern, b.sym_new_pattern), (None, None));
        assert_eq!(b.apka.new, Some(NewState::Empty));
        assert_eq!(b.apka.current_pattern, None);
    }

    #[test]
    fn staticsb_refuses_replies_shorter_than_the_kernel_accepts() {
        assert!(matches!(
            decode_b(&fq_reply(&[*b"        "; 12], &[0; 240])),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            decode_b(&fq_reply(&[*b"        "; 13], &[0; 239])),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn encode_then_decode_gives_the_same_values() {
        let a = decode_a(&staticsa_vector(*b"322322")).unwrap();
        let (elements, vd) = a.encode();
        assert_eq!(StaticsA::decode(&elements, &vd).unwrap(), a);
        let b = decode_b(&staticsb_vector(*b"322", (0x0F07, 0x0F06))).unwrap();
        let (elements, vd) = b.encode();
        assert_eq!(StaticsB::decode(&elements, &vd).unwrap(), b);
        // The encoder writes the SYM block headers the decoder checks.
        assert_eq!(&vd[132..136], &[0x00, 0x0C, 0x0F, 0x07]);
        assert_eq!(&vd[144..148], &[0x00, 0x0C, 0x0F, 0x06]);
    }

    #[test]
    fn every_query_has_its_row_and_only_the_kernels_forms_are_public() {
        use crate::function::Encoding;
        for (query, public) in [
            (Query::StatIcsa, true),
            (Query::StatIcsb, true),
            (Query::StatCcae, false),
            (Query::StatEid, false),
        ] {
            let request = Request::Query(query);
            assert_eq!(
                request.encoding().is_project_assigned(),
                !public,
                "{query:?}"
            );
            // The same answer from the bytes, as the zcrypt transport reads them.
            let m = request.to_message(0x000d, 4096).unwrap();
            assert_eq!(Encoding::of(&m[220..]).unwrap(), request.encoding());
        }
    }

    #[test]
    fn the_requests_are_the_kernels_fq_request_byte_for_byte() {
        for (query, keyword) in [
            (Query::StatIcsa, b"STATICSA"),
            (Query::StatIcsb, b"STATICSB"),
        ] {
            let m = Request::Query(query).to_message(0x000d, 12 * 1024).unwrap();
            let mut parm = b"FQ".to_vec();
            parm.extend_from_slice(&[0x00, 0x0A]); // rule array: 2 + 8
            parm.extend_from_slice(keyword);
            parm.extend_from_slice(&[0x10, 0x02]); // verb data: 2 + 4096
            parm.extend_from_slice(&[0u8; 4096]);
            parm.extend_from_slice(&[0x00, 0x02]); // empty key block
            assert_eq!(&m[220..], &parm[..]);
            assert_eq!(&m[12..16], &(parm.len() as u32).to_be_bytes()); // req_parml
            assert_eq!(&m[170..172], &[0x00, 0x0d]); // domain
            let (_, back) = Request::from_message(&m).unwrap();
            assert_eq!(back, Request::Query(query));
        }
    }
}
