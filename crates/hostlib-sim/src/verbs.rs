//! The verbs on safe arguments: each parses its rule array as the card would (unknown
//! keywords, counts and combinations refused with IBM's codes), turns the call into the
//! card model's request, and writes the outputs back (lengths in and out; a buffer too
//! small gets 8/72 and the length needed).

use mkclone_backend::{
    Certificate, CloneableKind, HashAlgorithm, KeyLabel, KeyUsage, PublicKeyHash, SealedShare,
    ShareIndex,
};
use mkclone_cca::parm::Keyword;
use mkclone_cca::verbs::{InstallShare, MkAction, ObtainShare, Query, Reply, ReplyBody, Request};
use mkclone_formats::pka::PublicKeyTokenView;
use mkclone_formats::seal::{SealedShareParts, ShareHeader};

use crate::machine::{Codes, Machine, codes, ibm, project};

pub type Out<'a> = (&'a mut i64, &'a mut [u8]);

/// A verb's rule array as the caller passed it: `count` keywords of 8 bytes in `array`.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    pub count: i64,
    pub array: &'a [u8],
}

impl Rules<'_> {
    /// The keywords, each checked against `groups` ([`parse_rules`]); at most `max`.
    pub fn parse(
        &self,
        groups: &[(&'static [&'static str], bool)],
        max: i64,
    ) -> Result<Vec<&'static str>, Codes> {
        parse_rules(self.count, self.array, groups, max)
    }
}

/// The rule array's keywords, each checked against `groups`: every keyword must belong to
/// a group, at most one per group, and every `required` group must be present.
fn parse_rules(
    count: i64,
    array: &[u8],
    groups: &[(&'static [&'static str], bool)],
    max: i64,
) -> Result<Vec<&'static str>, Codes> {
    if count < 0 || count > max || (count as usize) * 8 > array.len() {
        return Err(ibm::BAD_COUNT);
    }
    let mut found: Vec<Option<&'static str>> = vec![None; groups.len()];
    for k in array.chunks(8).take(count as usize) {
        let text = std::str::from_utf8(k)
            .map_err(|_| ibm::BAD_KEYWORD)?
            .trim_end();
        let hit = groups
            .iter()
            .enumerate()
            .find_map(|(g, (words, _))| words.iter().find(|w| **w == text).map(|w| (g, *w)));
        let Some((g, word)) = hit else {
            return Err(ibm::BAD_KEYWORD);
        };
        if found[g].is_some() {
            return Err(ibm::BAD_COMBINATION);
        }
        found[g] = Some(word);
    }
    for (g, (_, required)) in groups.iter().enumerate() {
        if *required && found[g].is_none() {
            return Err(ibm::BAD_COMBINATION);
        }
    }
    Ok(found.into_iter().flatten().collect())
}

/// Write `bytes` into an output buffer, or 8/72 with the length needed.
pub fn put(out: Out<'_>, bytes: &[u8]) -> Result<(), Codes> {
    let (len, buf) = out;
    let room = usize::try_from(*len).unwrap_or(0).min(buf.len());
    *len = bytes.len() as i64;
    if bytes.len() > room {
        return Err(ibm::TOO_SMALL);
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

fn label(field: &[u8]) -> Result<KeyLabel, Codes> {
    KeyLabel::from_wire(field).map_err(|_| codes(8, 32))
}

/// The reply's codes when it is not a success; its body otherwise.
fn ok(reply: Reply) -> Result<ReplyBody, Codes> {
    if reply.return_code == 0 {
        Ok(reply.body)
    } else {
        Err(codes(reply.return_code.into(), reply.reason_code.into()))
    }
}

fn kind_of(word: &str) -> Result<CloneableKind, Codes> {
    match word {
        "SYM-MK" => Ok(CloneableKind::Sym),
        "ASYM-MK" => Ok(CloneableKind::Asym),
        // Neither keyword means both registers ([BSR 2.54] CSUAMKD): the simulated card
        // clones one register set per call.
        _ => Err(project::UNSUPPORTED),
    }
}

const KINDS: &[&str] = &["SYM-MK", "ASYM-MK"];

// ---- CSUACFQ ----------------------------------------------------------------------------

/// CSUACFQ: one information-to-return keyword; the answer in the rule array (and verb
/// data for STATICSA/STATICSB). Returns the output elements.
pub fn csuacfq(
    m: &mut Machine,
    rules: Rules<'_>,
    verb_data: Out<'_>,
) -> Result<Vec<[u8; 8]>, Codes> {
    const INFO: &[&str] = &[
        "STATCCAE", "STATEID", "STATICSA", "STATICSB", "STATMOFN", "STATCRD2",
    ];
    let r = rules.parse(&[(INFO, true)], 2)?;
    let element = |t: &str| Keyword::new(t).bytes();
    match r[0] {
        "STATCRD2" => {
            // Element 1: the number of adapters; element 15: the allocated adapter's serial
            // (s390-tools zkey/cca.c reads rule_array + 14*8; opencryptoki's
            // CCA_STATCRD2_SERIAL_NUMBER_OFFSET is 112).
            let n = m.adapters().len();
            let mut out = vec![element(""); 15];
            out[0] = element(&n.to_string());
            if let Ok(ReplyBody::StaticsA(a)) = m.run(&Request::Query(Query::StatIcsa)).and_then(ok)
            {
                out[14] = a.serial.to_wire();
            }
            Ok(out)
        }
        "STATCCAE" | "STATEID" => {
            let q = if r[0] == "STATEID" {
                Query::StatEid
            } else {
                Query::StatCcae
            };
            match ok(m.run(&Request::Query(q))?)? {
                ReplyBody::Elements(e) => {
                    let mut out: Vec<[u8; 8]> = e.iter().map(Keyword::bytes).collect();
                    if q == Query::StatCcae && out.len() > 5 {
                        // Element 6: the user's role ([BSR 2.54] Figure 2-3). The simulated
                        // library has one role.
                        out[5] = element("DEFAULT");
                    }
                    Ok(out)
                }
                _ => Err(project::CARD_UNAVAILABLE),
            }
        }
        "STATICSA" | "STATICSB" => {
            let q = if r[0] == "STATICSA" {
                Query::StatIcsa
            } else {
                Query::StatIcsb
            };
            let (elements, data) = match ok(m.run(&Request::Query(q))?)? {
                ReplyBody::StaticsA(a) => a.encode(),
                ReplyBody::StaticsB(b) => b.encode(),
                _ => return Err(project::CARD_UNAVAILABLE),
            };
            put(verb_data, &data)?;
            Ok(elements.iter().map(Keyword::bytes).collect())
        }
        _ => {
            // STATMOFN: elements 1-2 the 15 generation digits, 3-4 the reception digits,
            // 5 m, 6 n (reference/cca-cloning.md from [BSR 2.54] Figure 2-3). CCA keeps one
            // table; the simulated card one per master key: this is the SYM table.
            match ok(m.run(&Request::ShareTables)?)? {
                ReplyBody::ShareTables { m_of_n, tables } => {
                    let digits = |f: &dyn Fn(usize) -> u8| -> [[u8; 8]; 2] {
                        let mut a = [b' '; 16];
                        for (i, d) in a.iter_mut().take(15).enumerate() {
                            *d = f(i);
                        }
                        [
                            a[..8].try_into().unwrap_or([b' '; 8]),
                            a[8..].try_into().unwrap_or([b' '; 8]),
                        ]
                    };
                    let t = tables.iter().find(|t| t.kind == CloneableKind::Sym);
                    let generation =
                        digits(&|i| t.map(|t| t.generation[i].digit()).unwrap_or(b'0'));
                    let rec = digits(&|i| t.map(|t| t.reception[i].digit()).unwrap_or(b'0'));
                    let (mm, nn) = m_of_n.unwrap_or((0, 0));
                    Ok(vec![
                        generation[0],
                        generation[1],
                        rec[0],
                        rec[1],
                        element(&format!("{mm:02}")),
                        element(&format!("{nn:02}")),
                    ])
                }
                _ => Err(project::CARD_UNAVAILABLE),
            }
        }
    }
}

// ---- adapters ---------------------------------------------------------------------------

/// CSUACRA (allocate) and CSUACRD (deallocate): DEVICE "CRPnn" or DEV-ANY "CRP00", as
/// zkey uses them: deallocating DEV-ANY turns autoselect off. Both are the calling
/// thread's (`machine.rs`); allocating while the thread holds an adapter is refused, as
/// IBM documents.
pub fn resource(
    m: &mut Machine,
    allocate: bool,
    rules: Rules<'_>,
    name: &[u8],
) -> Result<(), Codes> {
    let r = rules.parse(&[(&["DEVICE", "DEV-ANY"], true)], 1)?;
    let text = std::str::from_utf8(name)
        .map_err(|_| ibm::BAD_KEYWORD)?
        .trim_end();
    let n: u8 = text
        .strip_prefix("CRP")
        .and_then(|d| d.parse().ok())
        .ok_or(project::NO_ADAPTER)?;
    match (r[0], allocate) {
        ("DEV-ANY", a) => m.set_autoselect(a),
        (_, true) => {
            if n == 0 || usize::from(n) > m.adapters().len() {
                return Err(project::NO_ADAPTER);
            }
            if m.allocated().is_some() {
                return Err(project::ALREADY_ALLOCATED);
            }
            m.set_allocated(Some(n));
        }
        (_, false) => {
            if m.allocated() == Some(n) {
                m.set_allocated(None);
            }
        }
    }
    Ok(())
}

/// CSUAACM GET-ROLE: the role as IBM's "Role data structure example" lays it out
/// (version X'0100', length including itself, comment 20, checksum 2, reserved 2, role ID
/// 8, authentication strength 2, time limits 2 + 2, valid days 1, reserved 1) and the
/// access-control-point list (segment count 2, reserved 2; per segment first point 2,
/// last point 2, bitmap bytes 2, reserved 2, bitmap most significant bit first). The
/// simulated card has one role, DEFAULT, with one segment X'0000'-X'03FF': every point
/// enabled except `simlib.json`'s `disabled_acps`. Another role ID: 8/772, "the requested
/// role was not found" ([BSR 2.54] Figure A-4).
pub fn get_role(m: &mut Machine, rules: Rules<'_>, name: &[u8], out: Out<'_>) -> Result<(), Codes> {
    rules.parse(&[(&["GET-ROLE"], true)], 1)?;
    if name != b"DEFAULT " {
        return Err(codes(8, 772));
    }
    let disabled = m.control().disabled_acps;
    let mut bitmap = vec![0xFFu8; 0x400 / 8];
    for acp in disabled.into_iter().filter(|a| *a < 0x400) {
        bitmap[usize::from(acp / 8)] &= !(0x80 >> (acp % 8));
    }
    let bitmap_len = (bitmap.len() as u16).to_be_bytes();
    let mut role = [
        &[0x01, 0x00, 0x00, 0x00][..], // version X'0100', length (written below)
        b"MKCLONE SIMULATED   ",       // comment
        &[0, 0, 0, 0],                 // checksum, reserved
        b"DEFAULT ",                   // role ID
        // authentication strength 0, time limits 00:00-23:59, valid days X'FE', reserved
        &[0x00, 0x00, 0x00, 0x00, 0x17, 0x3B, 0xFE, 0x00],
        &[0x00, 0x01, 0x00, 0x00], // one segment, reserved
        &[0x00, 0x00, 0x03, 0xFF], // its first and last points: X'0000'-X'03FF'
        &bitmap_len,               // its bitmap's bytes
        &[0, 0],                   // reserved
        &bitmap,
    ]
    .concat();
    let length = role.len() as u16;
    role[2..4].copy_from_slice(&length.to_be_bytes());
    put(out, &role)
}

// ---- retained keys ----------------------------------------------------------------------

/// The simulated library's skeleton token (its own format, never IBM's: CSNDPKB's output
/// only ever goes back into this library's CSNDPKG).
const SKELETON_MAGIC: &[u8; 8] = b"MKCSKEL1";

/// CSNDPKB: RSA-CRT with SIG-ONLY, KM-ONLY (or KEY-MGMT); the key-values structure's
/// modulus bits (offset 0) and exponent (length at 4, value at 18) — 65537 only.
pub fn csndpkb(
    rules: Rules<'_>,
    key_values: &[u8],
    key_name: &[u8],
    token: Out<'_>,
) -> Result<(), Codes> {
    let r = rules.parse(
        &[
            (&["RSA-CRT"], true),
            (&["SIG-ONLY", "KM-ONLY", "KEY-MGMT"], false),
        ],
        2,
    )?;
    let usage = match r.get(1).copied() {
        Some("KM-ONLY") | Some("KEY-MGMT") => 2u8,
        _ => 1u8,
    };
    if key_values.len() < 21 || key_name.len() != 64 {
        return Err(codes(8, 43));
    }
    let bits = u16::from_be_bytes([key_values[0], key_values[1]]);
    let e_len = u16::from_be_bytes([key_values[4], key_values[5]]);
    if !matches!(bits, 2048 | 3072 | 4096) || e_len != 3 || key_values[18..21] != [1, 0, 1] {
        return Err(project::UNSUPPORTED);
    }
    label(key_name)?;
    let mut skeleton = SKELETON_MAGIC.to_vec();
    skeleton.push(usage);
    skeleton.extend_from_slice(&bits.to_be_bytes());
    skeleton.extend_from_slice(key_name);
    put(token, &skeleton)
}

/// Run `request` on the card and write the public-key token it answers (CSNDPKG's and
/// CSNDPKX's output) to `out`.
fn public_key(m: &mut Machine, request: &Request, out: Out<'_>) -> Result<(), Codes> {
    match ok(m.run(request)?)? {
        ReplyBody::PublicKey(t) => put(out, t.as_bytes()),
        _ => Err(project::CARD_UNAVAILABLE),
    }
}

/// CSNDPKG RETAIN [CLONE] with this library's skeleton: the card generates and keeps the
/// key; the output is its public-key token.
pub fn csndpkg(
    m: &mut Machine,
    rules: Rules<'_>,
    regeneration: &[u8],
    skeleton: &[u8],
    out: Out<'_>,
) -> Result<(), Codes> {
    let r = rules.parse(&[(&["RETAIN"], true), (&["CLONE"], false)], 2)?;
    if !regeneration.is_empty() {
        return Err(project::UNSUPPORTED);
    }
    if skeleton.len() != 8 + 1 + 2 + 64 || &skeleton[..8] != SKELETON_MAGIC {
        return Err(codes(8, 47));
    }
    let usage = if skeleton[8] == 2 {
        KeyUsage::KeyManagementOnly
    } else {
        KeyUsage::SignatureOnly
    };
    let bits = u16::from_be_bytes([skeleton[9], skeleton[10]]);
    let request = Request::GenerateRetained {
        label: label(&skeleton[11..])?,
        usage,
        clone: r.contains(&"CLONE"),
        bits,
    };
    public_key(m, &request, out)
}

/// CSNDPKX of a retained key's label.
pub fn csndpkx(
    m: &mut Machine,
    rules: Rules<'_>,
    source: &[u8],
    out: Out<'_>,
) -> Result<(), Codes> {
    rules.parse(&[], 0)?;
    if source.len() != 64 {
        return Err(codes(8, 43));
    }
    let request = Request::RetainedPublicKey {
        label: label(source)?,
    };
    public_key(m, &request, out)
}

/// CSNDRKL: the labels matching the mask (a trailing `*` matches any suffix).
pub fn csndrkl(
    m: &mut Machine,
    rules: Rules<'_>,
    mask: &[u8],
    total: &mut i64,
    listed: &mut i64,
    labels: &mut [u8],
) -> Result<(), Codes> {
    rules.parse(&[], 0)?;
    let mask = std::str::from_utf8(mask)
        .map_err(|_| codes(8, 32))?
        .trim_end();
    let matches = |l: &str| match mask.strip_suffix('*') {
        Some(prefix) => l.starts_with(prefix),
        None => l == mask,
    };
    let all = match ok(m.run(&Request::ListRetained)?)? {
        ReplyBody::RetainedKeys(list) => list,
        _ => return Err(project::CARD_UNAVAILABLE),
    };
    let found: Vec<KeyLabel> = all
        .into_iter()
        .map(|k| k.label)
        .filter(|l| matches(l.as_str()))
        .collect();
    *total = found.len() as i64;
    let room = usize::try_from(*listed).unwrap_or(0).min(labels.len() / 64);
    let n = found.len().min(room);
    for (i, l) in found.iter().take(n).enumerate() {
        labels[i * 64..(i + 1) * 64].copy_from_slice(&l.to_wire());
    }
    *listed = n as i64;
    Ok(())
}

pub fn csndrkd(m: &mut Machine, rules: Rules<'_>, key: &[u8]) -> Result<(), Codes> {
    rules.parse(&[], 0)?;
    ok(m.run(&Request::DeleteRetained { label: label(key)? })?).map(drop)
}

// ---- registry ---------------------------------------------------------------------------

/// CSNDPKH: SHA-1 (IBM's) or SHA-256 (the simulated card's hash), and CLONE.
pub fn csndpkh(m: &mut Machine, rules: Rules<'_>, name: &[u8], hash: &[u8]) -> Result<(), Codes> {
    let r = rules.parse(&[(&["SHA-1", "SHA-256"], true), (&["CLONE"], false)], 2)?;
    let algorithm = if r[0] == "SHA-1" {
        HashAlgorithm::Sha1
    } else {
        HashAlgorithm::Sha256
    };
    let hash = PublicKeyHash::new(algorithm, hash).map_err(|_| codes(8, 1032))?;
    let request = Request::RegisterHash {
        name: label(name)?,
        hash,
        clone: r.contains(&"CLONE"),
    };
    ok(m.run(&request)?).map(drop)
}

/// CSNDPKR: zero or one keyword (CLONE).
pub fn csndpkr(m: &mut Machine, rules: Rules<'_>, name: &[u8], cert: &[u8]) -> Result<(), Codes> {
    let r = rules.parse(&[(&["CLONE"], false)], 1)?;
    let certificate = Certificate::new(cert.to_vec()).map_err(|_| codes(8, 1035))?;
    let request = Request::RegisterKey {
        name: label(name)?,
        certificate,
        clone: r.contains(&"CLONE"),
    };
    ok(m.run(&request)?).map(drop)
}

// ---- shares -----------------------------------------------------------------------------

/// CSUAMKD. OBTAIN: the card seals share `index`; the library returns its two parts, the
/// RSA-wrapped triple-DES key and the cloning-information token. INSTALL: the card gets
/// them back in its container, whose header the library fills from what the card itself
/// is (its EID, the CSR key named) and the token's clear header (origin EID at offset 12).
/// Returns the codes of a success (0/0, or 4/1024 when the key is complete).
#[allow(clippy::too_many_arguments)]
pub fn csuamkd(
    m: &mut Machine,
    rules: Rules<'_>,
    index: i64,
    private_key: &[u8],
    certifying_key: &[u8],
    certificate: &[u8],
    key: Out<'_>,
    info: Out<'_>,
) -> Result<Codes, Codes> {
    let r = rules.parse(&[(&["OBTAIN", "INSTALL"], true), (KINDS, false)], 2)?;
    let kind = kind_of(r.get(1).copied().unwrap_or(""))?;
    let certificate = Certificate::new(certificate.to_vec()).map_err(|_| codes(8, 1035))?;
    let private = label(private_key)?;
    let sa_name = label(certifying_key)?;
    if r[0] == "OBTAIN" {
        let request = Request::Obtain(ObtainShare {
            kind,
            index: u32::try_from(index).map_err(|_| project::UNSUPPORTED)?,
            css_label: private,
            sa_name,
            csr_certificate: certificate,
        });
        let share = match ok(m.run(&request)?)? {
            ReplyBody::Share(s) => s,
            _ => return Err(project::CARD_UNAVAILABLE),
        };
        let parts = SealedShareParts::decode(&share).map_err(|_| project::CARD_UNAVAILABLE)?;
        let (kl, kb) = key;
        let (il, ib) = info;
        // Both lengths are written back even when one buffer is too small.
        let k = put((kl, kb), &parts.wrapped_key);
        let i = put((il, ib), &parts.encrypted_clone_info);
        k.and(i)?;
        return Ok(codes(0, 0));
    }
    let index = u8::try_from(index)
        .ok()
        .and_then(|i| ShareIndex::new(i).ok())
        .ok_or(codes(8, 1030))?;
    let (kl, kb) = key;
    let (il, ib) = info;
    let wrapped_key = kb
        .get(..usize::try_from(*kl).unwrap_or(0))
        .ok_or(ibm::TOO_SMALL)?
        .to_vec();
    let clone_info = ib
        .get(..usize::try_from(*il).unwrap_or(0))
        .ok_or(ibm::TOO_SMALL)?
        .to_vec();
    let origin = clone_info
        .get(12..28)
        .and_then(|f| mkclone_backend::Eid::from_wire(f).ok())
        .ok_or(codes(8, 1030))?;
    let eid = match ok(m.run(&Request::Query(Query::StatEid))?)? {
        ReplyBody::Elements(e) => {
            let bytes: Vec<u8> = e.iter().flat_map(|k| k.bytes()).collect();
            mkclone_backend::Eid::from_wire(&bytes).map_err(|_| codes(8, 1029))?
        }
        _ => return Err(project::CARD_UNAVAILABLE),
    };
    let csr = match ok(m.run(&Request::RetainedPublicKey {
        label: private.clone(),
    })?)? {
        ReplyBody::PublicKey(t) => PublicKeyTokenView::decode(&t).map_err(|_| codes(8, 1031))?,
        _ => return Err(project::CARD_UNAVAILABLE),
    };
    let share: SealedShare = SealedShareParts {
        header: ShareHeader {
            target_eid: eid,
            csr_fingerprint: csr.key.fingerprint(),
            kind,
            index,
            origin_eid: origin,
        },
        wrapped_key,
        encrypted_clone_info: clone_info,
    }
    .encode()
    .map_err(|_| codes(8, 1030))?;
    let request = Request::Install(InstallShare {
        kind,
        csr_label: private,
        sa_name,
        css_certificate: certificate,
        share,
    });
    let reply = m.run(&request)?;
    match (reply.return_code, reply.reason_code) {
        (0, _) | (4, _) => Ok(codes(reply.return_code.into(), reply.reason_code.into())),
        (a, b) => Err(codes(a.into(), b.into())),
    }
}

/// CSNBMKP SET, CLEAR or RANDOM on SYM-MK or ASYM-MK.
pub fn csnbmkp(m: &mut Machine, rules: Rules<'_>) -> Result<Codes, Codes> {
    let r = rules.parse(&[(&["SET", "CLEAR", "RANDOM"], true), (KINDS, true)], 2)?;
    let action = match r[0] {
        "SET" => MkAction::Set,
        "CLEAR" => MkAction::Clear,
        _ => MkAction::Random,
    };
    let reply = m.run(&Request::MasterKey {
        action,
        kind: kind_of(r[1])?,
    })?;
    match (reply.return_code, reply.reason_code) {
        (0, _) | (4, _) => Ok(codes(reply.return_code.into(), reply.reason_code.into())),
        (a, b) => Err(codes(a.into(), b.into())),
    }
}
