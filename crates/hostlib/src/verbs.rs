//! One builder per verb and use: the argument vector from the published parameter list
//! (cited in vendor-headers/csulcca.h), with the rule keywords of the documented use.
//! Output buffers get the room opencryptoki's CCA token gives them (`CCA_KEY_TOKEN_SIZE`
//! 8000, `CCA_RULE_ARRAY_SIZE` 256: usr/lib/cca_stdll/cca_stdll.h).

use mkclone_backend::{CloneableKind, HashAlgorithm, KeyUsage};

use crate::args::{Args, Param, Verb, empty, input, name64, output};

/// Room for a key token or certificate (opencryptoki's CCA_KEY_TOKEN_SIZE).
pub const TOKEN_ROOM: usize = 8000;
/// Room for CSUACFQ's output rule array, in elements (CCA_RULE_ARRAY_SIZE / 8).
pub const RULE_ROOM: usize = 32;
/// Room for CSUACFQ's verb data (the kernel's FQ requests carry 4096 bytes of room:
/// `mkclone_cca::facility::FQ_VERB_DATA_SPACE`).
pub const VERB_DATA_ROOM: usize = mkclone_cca::facility::FQ_VERB_DATA_SPACE;
/// Room for a clone-info-encrypting key and for clone info (a triple-DES key wrapped
/// under an RSA key of at most 4096 bits; a cloning-information token).
pub const SHARE_ROOM: usize = 4096;
/// Labels CSNDRKL may return at once.
pub const LABELS_ROOM: usize = 256;

/// CSUACFQ with one information-to-return keyword ([BSR 2.54] Figure 2-3; [LZ]
/// "Verb data returned for CSUACFQ keywords"). `verb_data_room` 0 for the keywords that
/// answer in the rule array only.
pub fn query(keyword: &str, verb_data_room: usize) -> Args {
    let data = if verb_data_room == 0 {
        empty()
    } else {
        output(verb_data_room)
    };
    Args::new(Verb::Csuacfq, &[keyword], vec![data]).with_rule_room(RULE_ROOM)
}

/// CSUACFV: the library's version string (as zkey and opencryptoki read it).
pub fn version() -> Args {
    Args::new(Verb::Csuacfv, &[], vec![output(20)])
}

/// CSUACRA / CSUACRD with DEVICE and "CRPnn", or DEV-ANY and "CRP00" (s390-tools
/// zkey/cca.c: allocate_cca_adapter, deallocate_cca_adapter).
pub fn resource(verb: Verb, adapter: Option<u8>) -> Args {
    let (rule, name) = match adapter {
        Some(n) => ("DEVICE", format!("CRP{n:02}")),
        None => ("DEV-ANY", "CRP00".to_string()),
    };
    Args::new(verb, &[rule], vec![input(name.as_bytes())])
}

/// CSUAACM GET-ROLE: the non-secret part of a role, with its access-control-point list
/// ([BSR 2.54] Access_Control_Maintenance; [LZ] "CSUAACM parameters": name is 8 bytes,
/// output_data_length a multiple of 4).
pub fn get_role(role: &[u8; 8]) -> Args {
    Args::new(
        Verb::Csuaacm,
        &["GET-ROLE"],
        vec![Param::Field(role.to_vec()), output(4096)],
    )
}

/// The CSNDPKB key-values structure of an RSA-CRT skeleton: modulus bits at offset 0, the
/// public-exponent length at offset 4, the exponent at offset 18 (opencryptoki
/// cca_stdll.h: CCA_PKB_E_SIZE_OFFSET 4, CCA_PKB_E_OFFSET 18). Exponent 65537.
pub fn rsa_key_values(bits: u16) -> Vec<u8> {
    let e = [0x01, 0x00, 0x01];
    let mut kvs = vec![0u8; 18 + e.len()];
    kvs[0..2].copy_from_slice(&bits.to_be_bytes());
    kvs[4..6].copy_from_slice(&(e.len() as u16).to_be_bytes());
    kvs[18..].copy_from_slice(&e);
    kvs
}

/// CSNDPKB: an RSA-CRT skeleton with the key's usage, named by `label` (the label under
/// which RETAIN keeps the private key). [BSR 2.54] PKA_Key_Token_Build: usage SIG-ONLY
/// (default), KEY-MGMT, KM-ONLY.
pub fn build_skeleton(label: &str, usage: KeyUsage, bits: u16) -> Args {
    let name = name64(label);
    Args::new(
        Verb::Csndpkb,
        &["RSA-CRT", usage.keyword()],
        vec![
            input(&rsa_key_values(bits)),
            input(&name),
            empty(),
            empty(),
            empty(),
            empty(),
            empty(),
            output(TOKEN_ROOM),
        ],
    )
}

/// CSNDPKG RETAIN [CLONE]: generate the key in the skeleton and keep the private key in
/// the coprocessor; the output is the public-key token. The transport key is a null key
/// token (64 zero bytes: RETAIN enciphers nothing for export).
pub fn generate_retained(skeleton: &[u8], clone: bool) -> Args {
    let rules: &[&str] = if clone {
        &["RETAIN", "CLONE"]
    } else {
        &["RETAIN"]
    };
    Args::new(
        Verb::Csndpkg,
        rules,
        vec![
            empty(),
            input(skeleton),
            Param::Field(vec![0; 64]),
            output(TOKEN_ROOM),
        ],
    )
}

/// CSNDPKX of a retained key named by its label: its public-key token.
pub fn public_key_extract(label: &str) -> Args {
    Args::new(
        Verb::Csndpkx,
        &[],
        vec![input(&name64(label)), output(TOKEN_ROOM)],
    )
}

/// CSNDRKL with a label mask ("*" lists all): count, then up to [`LABELS_ROOM`] labels.
pub fn list_retained(mask: &str) -> Args {
    Args::new(
        Verb::Csndrkl,
        &[],
        vec![
            Param::Field(name64(mask)),
            Param::Int(0),
            Param::Int(LABELS_ROOM as i64),
            Param::Field(vec![b' '; 64 * LABELS_ROOM]),
        ],
    )
}

/// CSNDRKD of one label.
pub fn delete_retained(label: &str) -> Args {
    Args::new(Verb::Csndrkd, &[], vec![Param::Field(name64(label))])
}

/// CSNDPKH: the hash type (SHA-1 is the one [BSR 2.54] documents; SHA-256 where the
/// library accepts it) and optionally CLONE.
pub fn register_hash(name: &str, algorithm: HashAlgorithm, hash: &[u8], clone: bool) -> Args {
    let kind = match algorithm {
        HashAlgorithm::Sha1 => "SHA-1",
        HashAlgorithm::Sha256 => "SHA-256",
    };
    let rules: &[&str] = if clone { &[kind, "CLONE"] } else { &[kind] };
    Args::new(
        Verb::Csndpkh,
        rules,
        vec![Param::Field(name64(name)), input(hash)],
    )
}

/// CSNDPKR: rule_array_count zero or one (CLONE).
pub fn register_key(name: &str, certificate: &[u8], clone: bool) -> Args {
    let rules: &[&str] = if clone { &["CLONE"] } else { &[] };
    Args::new(
        Verb::Csndpkr,
        rules,
        vec![Param::Field(name64(name)), input(certificate)],
    )
}

/// CSUAMKD OBTAIN: share `index` signed by the CSS key, for the CSR key in `certificate`
/// (validated under the registered SA key `sa_name`). Outputs: the clone-info-encrypting
/// key and the clone info.
pub fn obtain(
    kind: CloneableKind,
    index: u8,
    css_label: &str,
    sa_name: &str,
    certificate: &[u8],
) -> Args {
    let outputs = [output(SHARE_ROOM), output(SHARE_ROOM)];
    csuamkd(
        "OBTAIN",
        kind,
        index,
        css_label,
        sa_name,
        certificate,
        outputs,
    )
}

/// CSUAMKD INSTALL: the share (encrypting key and clone info) unwrapped with the CSR key,
/// its signature checked with the CSS key in `certificate` (validated under `sa_name`).
pub fn install(
    kind: CloneableKind,
    index: u8,
    csr_label: &str,
    sa_name: &str,
    certificate: &[u8],
    encrypting_key: &[u8],
    clone_info: &[u8],
) -> Args {
    let share = [input(encrypting_key), input(clone_info)];
    csuamkd(
        "INSTALL",
        kind,
        index,
        csr_label,
        sa_name,
        certificate,
        share,
    )
}

/// CSUAMKD's parameter list: the share index, the retained key's label (CSS for OBTAIN,
/// CSR for INSTALL), the SA key's name, the certificate, and the two share buffers
/// (outputs for OBTAIN, inputs for INSTALL).
fn csuamkd(
    rule: &str,
    kind: CloneableKind,
    index: u8,
    key_label: &str,
    sa_name: &str,
    certificate: &[u8],
    [key, info]: [Param; 2],
) -> Args {
    Args::new(
        Verb::Csuamkd,
        &[rule, kind.keyword()],
        vec![
            Param::Int(i64::from(index)),
            Param::Field(name64(key_label)),
            Param::Field(name64(sa_name)),
            input(certificate),
            key,
            info,
        ],
    )
}

/// CSNBMKP with SET, CLEAR or RANDOM on one register set. The key part is unused by these
/// actions: 24 zero bytes.
pub fn master_key(action: &str, kind: CloneableKind) -> Args {
    Args::new(
        Verb::Csnbmkp,
        &[action, kind.keyword()],
        vec![Param::Field(vec![0; 24])],
    )
}

/// Each builder against an argument vector assembled by hand from the verb's published
/// parameter list (vendor-headers/csulcca.h cites each): rule arrays written out byte by
/// byte as 8-byte blank-padded keywords, 64-byte blank-padded names, lengths as the
/// buffers they describe. None of it comes from `args::keyword`/`name64`.
#[cfg(test)]
mod tests {
    use super::*;

    /// `text` left-justified in `n` blanks, spelled out (not `args::name64`).
    fn padded(text: &[u8], n: usize) -> Vec<u8> {
        let mut v = text.to_vec();
        v.extend(std::iter::repeat_n(b' ', n - text.len()));
        v
    }

    fn buf(data: Vec<u8>) -> Param {
        Param::Buf {
            len: data.len() as i64,
            data,
        }
    }

    fn room(n: usize) -> Param {
        Param::Buf {
            len: n as i64,
            data: vec![0; n],
        }
    }

    fn none() -> Param {
        Param::Buf {
            len: 0,
            data: vec![],
        }
    }

    fn call(verb: Verb, rules: &[u8], count: i64, params: Vec<Param>) -> Args {
        Args {
            verb,
            rule_array: rules.to_vec(),
            rule_count: count,
            params,
            return_code: -1,
            reason_code: -1,
        }
    }

    #[test]
    fn csuacfq_one_keyword_room_for_the_answer() {
        // rule_array_count 1, "STATICSA", then verb_data_length/verb_data (4096 of room);
        // the rule array has room for 32 returned elements.
        let mut rules = b"STATICSA".to_vec();
        rules.extend(std::iter::repeat_n(b' ', 31 * 8));
        assert_eq!(
            query("STATICSA", 4096),
            call(Verb::Csuacfq, &rules, 1, vec![room(4096)])
        );
        let mut rules = b"STATEID ".to_vec();
        rules.extend(std::iter::repeat_n(b' ', 31 * 8));
        assert_eq!(
            query("STATEID", 0),
            call(Verb::Csuacfq, &rules, 1, vec![none()])
        );
    }

    #[test]
    fn csuacfv_has_no_rule_array() {
        assert_eq!(version(), call(Verb::Csuacfv, b"", 0, vec![room(20)]));
    }

    #[test]
    fn csuacra_and_csuacrd_name_the_resource() {
        assert_eq!(
            resource(Verb::Csuacra, Some(3)),
            call(Verb::Csuacra, b"DEVICE  ", 1, vec![buf(b"CRP03".to_vec())])
        );
        assert_eq!(
            resource(Verb::Csuacrd, None),
            call(Verb::Csuacrd, b"DEV-ANY ", 1, vec![buf(b"CRP00".to_vec())])
        );
    }

    #[test]
    fn csuaacm_get_role_names_the_role_in_8_bytes() {
        assert_eq!(
            get_role(b"DEFAULT "),
            call(
                Verb::Csuaacm,
                b"GET-ROLE",
                1,
                vec![Param::Field(b"DEFAULT ".to_vec()), room(4096)]
            )
        );
    }

    #[test]
    fn csndpkb_rsa_crt_skeleton() {
        // Key-values structure: modulus bits 2048 = X'0800' at 0, modulus field length 0 at
        // 2, public-exponent length 3 at 4, the other lengths zero, exponent X'010001' at 18.
        let kvs: Vec<u8> = vec![
            0x08, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
        ];
        assert_eq!(rsa_key_values(2048), kvs);
        let name = padded(b"MKCLONE.CSS", 64);
        assert_eq!(
            build_skeleton("MKCLONE.CSS", KeyUsage::KeyManagementOnly, 2048),
            call(
                Verb::Csndpkb,
                b"RSA-CRT KM-ONLY ",
                2,
                vec![
                    buf(kvs),
                    buf(name),
                    none(),
                    none(),
                    none(),
                    none(),
                    none(),
                    room(8000),
                ]
            )
        );
    }

    #[test]
    fn csndpkg_retain_clone_with_a_null_transport_key() {
        let skeleton = vec![7u8; 75];
        assert_eq!(
            generate_retained(&skeleton, true),
            call(
                Verb::Csndpkg,
                b"RETAIN  CLONE   ",
                2,
                vec![
                    none(),
                    buf(skeleton.clone()),
                    Param::Field(vec![0; 64]),
                    room(8000)
                ]
            )
        );
        assert_eq!(generate_retained(&skeleton, false).rule_array, b"RETAIN  ");
    }

    #[test]
    fn csndpkx_csndrkl_csndrkd_name_keys_in_64_bytes() {
        assert_eq!(
            public_key_extract("MKCLONE.CSR"),
            call(
                Verb::Csndpkx,
                b"",
                0,
                vec![buf(padded(b"MKCLONE.CSR", 64)), room(8000)]
            )
        );
        assert_eq!(
            list_retained("MKCLONE.*"),
            call(
                Verb::Csndrkl,
                b"",
                0,
                vec![
                    Param::Field(padded(b"MKCLONE.*", 64)),
                    Param::Int(0),
                    Param::Int(256),
                    Param::Field(vec![b' '; 64 * 256]),
                ]
            )
        );
        assert_eq!(
            delete_retained("MKCLONE.SA"),
            call(
                Verb::Csndrkd,
                b"",
                0,
                vec![Param::Field(padded(b"MKCLONE.SA", 64))]
            )
        );
    }

    #[test]
    fn csndpkh_and_csndpkr() {
        let hash = vec![0xAB; 20];
        assert_eq!(
            register_hash("MKCLONE.SA", HashAlgorithm::Sha1, &hash, true),
            call(
                Verb::Csndpkh,
                b"SHA-1   CLONE   ",
                2,
                vec![Param::Field(padded(b"MKCLONE.SA", 64)), buf(hash)]
            )
        );
        let cert = vec![0x40, 0x00, 0x00, 0x04];
        // rule_array_count zero: no keyword.
        assert_eq!(
            register_key("MKCLONE.SA", &cert, false),
            call(
                Verb::Csndpkr,
                b"",
                0,
                vec![Param::Field(padded(b"MKCLONE.SA", 64)), buf(cert.clone())]
            )
        );
        assert_eq!(
            register_key("MKCLONE.SA", &cert, true).rule_array,
            b"CLONE   "
        );
    }

    /// CSUAMKD's parameters as the published list orders them: share_index,
    /// private_key_name (the retained key), certifying_key_name (MKCLONE.SA), certificate,
    /// then the share's two buffers (clone-info encrypting key, clone info).
    fn csuamkd_params(index: i64, key: &[u8], cert: &[u8], share: [Param; 2]) -> Vec<Param> {
        let mut params = vec![
            Param::Int(index),
            Param::Field(padded(key, 64)),
            Param::Field(padded(b"MKCLONE.SA", 64)),
            buf(cert.to_vec()),
        ];
        params.extend(share);
        params
    }

    #[test]
    fn csuamkd_obtain_and_install() {
        let cert = vec![0x40, 0x00, 0x00, 0x04];
        // share_index, private_key_name, certifying_key_name, certificate_length,
        // certificate, clone_info_encrypting_key_length, clone_info_encrypting_key,
        // clone_info_length, clone_info.
        assert_eq!(
            obtain(CloneableKind::Asym, 3, "MKCLONE.CSS", "MKCLONE.SA", &cert),
            call(
                Verb::Csuamkd,
                b"OBTAIN  ASYM-MK ",
                2,
                csuamkd_params(3, b"MKCLONE.CSS", &cert, [room(4096), room(4096)])
            )
        );
        let key = vec![1u8; 256];
        let info = vec![2u8; 96];
        assert_eq!(
            install(
                CloneableKind::Sym,
                2,
                "MKCLONE.CSR",
                "MKCLONE.SA",
                &cert,
                &key,
                &info
            ),
            call(
                Verb::Csuamkd,
                b"INSTALL SYM-MK  ",
                2,
                csuamkd_params(2, b"MKCLONE.CSR", &cert, [buf(key), buf(info)])
            )
        );
    }

    #[test]
    fn csnbmkp_with_an_unused_24_byte_key_part() {
        assert_eq!(
            master_key("SET", CloneableKind::Asym),
            call(
                Verb::Csnbmkp,
                b"SET     ASYM-MK ",
                2,
                vec![Param::Field(vec![0; 24])]
            )
        );
        assert_eq!(
            master_key("RANDOM", CloneableKind::Sym).rule_array,
            b"RANDOM  SYM-MK  "
        );
    }
}
