#!/usr/bin/env python3
"""Hand-assembles the seeds of cca_host_args, hostlib_answers and pkcs11_objects from the
documented layouts, without mkclone's encoders:

- cca_host_args: one call of every export of the simulated CCA library, in the harness's
  input layout (fuzz/src/hostlib.rs `cca_host_args`): export, rule-array count, null mask,
  the rule array (8-byte blank-padded keywords), then each parameter of the verb's
  published list (vendor-headers/csulcca.h): big-endian i16 lengths with their bytes,
  fixed fields (64-byte blank-padded names), longs;
- hostlib_answers: a library's answers to each operation, in the layout of
  fuzz/src/hostlib.rs `hostlib_answers` (codes byte, returned lengths, elements), with
  IBM's published "Role data structure example" (the bytes crates/hostlib/src/access.rs
  tests spell out) and the role the simulated library answers;
- pkcs11_objects: a label line and a JSON value of every data object
  crates/pkcs11/src/objects.rs documents, members in declaration order.

The golden certificate, token and sealed share of crates/formats are read from their
exported seeds (fuzz/README.md). Run from the repository root:
python3 fuzz/seeds/make_host_seeds.py
"""

import struct

from seedlib import golden, put


def kw(text):
    """A rule-array keyword: 8 bytes, left-justified, blank padded."""
    b = text.encode()
    assert len(b) <= 8
    return b + b" " * (8 - len(b))


def name64(text):
    b = text.encode()
    return b + b" " * (64 - len(b))


def i16(v):
    return struct.pack(">h", v)


def buf(data):
    """A (length, buffer) parameter with its bytes."""
    return i16(len(data)) + data


def room(n):
    """An output buffer of n bytes: the harness zero-fills what the input does not give."""
    return i16(n)


CERT = golden("certificate", "certificate_section_with_information_subsection")
TOKEN = golden("pka_token", "public_key_token_with_certificate_section")
SEALED = golden("sealed_share", "sealed_share_container")

# ---- cca_host_args ----------------------------------------------------------------------

EXPORT = {
    "CSUACFQ": 0, "CSUACFV": 1, "CSUACRA": 2, "CSUACRD": 3, "CSUAACM": 4, "CSNDPKB": 5,
    "CSNDPKG": 6, "CSNDPKX": 7, "CSNDRKL": 8, "CSNDRKD": 9, "CSNDPKH": 10, "CSNDPKR": 11,
    "CSUAMKD": 12, "CSNBMKP": 13, "mkclone_simlib_ext": 14, "mkclone_simlib_create_card": 15,
}


def call(export, rules, params, nulls=0):
    head = bytes([EXPORT[export], len(rules) & 0xFF, nulls])
    return head + b"".join(kw(r) for r in rules) + b"".join(params)


# CSNDPKB's key-values structure: modulus bits X'0800' at 0, modulus field length 0 at 2,
# public-exponent length 3 at 4, the other lengths zero, exponent X'010001' at 18.
KVS = bytes([0x08, 0x00, 0, 0, 0, 3]) + bytes(12) + bytes([1, 0, 1])
# The simulated library's own skeleton (hostlib-sim verbs.rs): magic, usage 2 (key
# management), bits, the 64-byte label.
SKELETON = b"MKCSKEL1" + bytes([2, 0x08, 0x00]) + name64("MKCLONE.CSR")
# A cloning-information token's clear header up to the origin EID at offset 12.
CLONE_INFO = bytes([0x1D, 0, 0, 96]) + bytes(8) + b"SOURCE.1        " + bytes(68)

host_args = {
    "cfq_statcrd2": call("CSUACFQ", ["STATCRD2"], [room(0)]),
    "cfq_staticsa": call("CSUACFQ", ["STATICSA"], [room(4096)]),
    "cfq_statmofn": call("CSUACFQ", ["STATMOFN"], [room(0)]),
    "cfq_two_keywords": call("CSUACFQ", ["STATEID", "STATCCAE"], [room(0)]),
    "cfv_version": call("CSUACFV", [], [room(32)]),
    "cra_device": call("CSUACRA", ["DEVICE"], [buf(b"CRP01")]),
    "crd_dev_any": call("CSUACRD", ["DEV-ANY"], [buf(b"CRP00")]),
    "aacm_get_role": call("CSUAACM", ["GET-ROLE"], [kw("DEFAULT"), room(4096)]),
    "aacm_other_role": call("CSUAACM", ["GET-ROLE"], [kw("AUDITOR"), room(16)]),
    "pkb_rsa_crt": call(
        "CSNDPKB",
        ["RSA-CRT", "KM-ONLY"],
        [buf(KVS), buf(name64("MKCLONE.CSS"))] + [room(0)] * 5 + [room(8000)],
    ),
    "pkb_too_small": call(
        "CSNDPKB",
        ["RSA-CRT", "SIG-ONLY"],
        [buf(KVS), buf(name64("MKCLONE.SA"))] + [room(0)] * 5 + [room(10)],
    ),
    "pkg_retain_clone": call(
        "CSNDPKG", ["RETAIN", "CLONE"], [room(0), buf(SKELETON), bytes(64), room(8000)]
    ),
    "pkx_label": call("CSNDPKX", [], [buf(name64("MKCLONE.CSR")), room(8000)]),
    "rkl_mask": call("CSNDRKL", [], [name64("MKCLONE.*"), i16(0), i16(16)]),
    "rkd_label": call("CSNDRKD", [], [name64("MKCLONE.CSR")]),
    "pkh_sha256_clone": call(
        "CSNDPKH", ["SHA-256", "CLONE"], [name64("MKCLONE.SA"), buf(bytes([0xA5]) * 32)]
    ),
    "pkh_sha1": call("CSNDPKH", ["SHA-1"], [name64("MKCLONE.SA"), buf(bytes([0x5A]) * 20)]),
    "pkr_clone": call("CSNDPKR", ["CLONE"], [name64("MKCLONE.SA"), buf(CERT)]),
    "mkd_obtain": call(
        "CSUAMKD",
        ["OBTAIN", "ASYM-MK"],
        [i16(2), name64("MKCLONE.CSS"), name64("MKCLONE.SA"), buf(CERT), room(4096), room(4096)],
    ),
    "mkd_install": call(
        "CSUAMKD",
        ["INSTALL", "SYM-MK"],
        [
            i16(2),
            name64("MKCLONE.CSR"),
            name64("MKCLONE.SA"),
            buf(CERT),
            buf(bytes([0x11]) * 256),
            buf(CLONE_INFO),
        ],
    ),
    "mkp_set_asym": call("CSNBMKP", ["SET", "ASYM-MK"], [bytes(24)]),
    "mkp_random_sym": call("CSNBMKP", ["RANDOM", "SYM-MK"], [bytes(24)]),
    "ext_request": call("mkclone_simlib_ext", [], [buf(bytes(16)), room(4096)]),
    "create_card": call("mkclone_simlib_create_card", [], [buf(b"93AB1234")]),
    # A null rule array with a count of 1, and a null output buffer with a length.
    "null_rule_array": call("CSUACFQ", ["STATEID"], [room(0)], nulls=0x40),
    "null_output": call("CSUAACM", ["GET-ROLE"], [kw("DEFAULT"), room(64)], nulls=0x02),
}
for name, data in host_args.items():
    put("cca_host_args", name, data)

# ---- hostlib_answers --------------------------------------------------------------------

OK = b"\x00"  # a codes byte meaning 0/0


def err(rc_nibble, reason):
    return bytes([rc_nibble]) + struct.pack(">H", reason)


def out(data):
    """An output answered: its returned length, then its bytes."""
    return i16(len(data)) + data


def elements(*words):
    """CSUACFQ's rule-array answer: the count, then the 8-byte elements."""
    return bytes([len(words)]) + b"".join(kw(w) for w in words)


SELECT = OK + OK  # CSUACRD DEV-ANY, then CSUACRA DEVICE


def role(segments, role_id="DEFAULT"):
    """A role as IBM's "Role data structure example" lays it out."""
    body = b"*New default role 1*" + bytes([0xAB, 0xCD, 0, 0]) + kw(role_id)
    body += bytes([0x23, 0x45, 0x01, 0x0F, 0x17, 0x1E, 0x7C, 0x00])
    acl = struct.pack(">HH", len(segments), 0)
    for first, last, bitmap in segments:
        acl += struct.pack(">HHHH", first, last, len(bitmap), 0) + bitmap
    length = 4 + len(body) + len(acl)
    return struct.pack(">HH", 0x0100, length) + body + acl


IBM_ROLE = role(
    [(0x0000, 0x0117, bytes([0xF0]) + bytes([0xFF]) * 34), (0x0200, 0x0217, bytes([0x8F, 0x99, 0xFE]))]
)
SIM_ROLE = role([(0x0000, 0x03FF, bytes([0xFF]) * 128)])
STATMOFN = elements("11111000", "0000000", "00000000", "0000000", "02", "03")
EID = elements("SOURCE.1", "")


def answers(op, flags, script, offset=0x0116):
    return bytes([op, flags]) + struct.pack(">H", offset) + script


hostlib_answers = {
    "status": answers(0, 0, SELECT + OK + elements("7.5.0", "", "", "", "", "DEFAULT") + out(b"")),
    "share_status": answers(1, 0, SELECT + OK + STATMOFN + out(b"")),
    "generate": answers(2, 0, SELECT + OK + out(SKELETON) + OK + out(TOKEN)),
    "generate_overlong_skeleton": answers(2, 0, SELECT + OK + i16(0x7FFF)),
    "retained_public_key": answers(3, 0, SELECT + OK + out(TOKEN)),
    "retained_public_key_not_found": answers(3, 0, SELECT + err(11, 1026)),
    "delete": answers(4, 0, SELECT + OK),
    "register_hash": answers(5, 0, SELECT + OK),
    "register_key_refused": answers(6, 0, SELECT + err(11, 1035)),
    "obtain": answers(
        7,
        0,
        SELECT + OK + EID + out(b"") + OK + out(bytes([0x22]) * 256) + out(CLONE_INFO),
    ),
    "install_complete": answers(8, 0, SELECT + err(10, 1024) + OK + STATMOFN + out(b"")),
    "set_master_key": answers(9, 0, SELECT + OK),
    "clear_new_warning": answers(10, 0, SELECT + err(10, 0xF00D)),
    "random": answers(11, 1, SELECT + OK),
    "set_eid_ibm": answers(12, 0, SELECT + OK + EID + out(b"")),
    "list_retained_simulated": answers(14, 1, SELECT + OK + out(b"")),
    "role_ibm_example": answers(18, 0, IBM_ROLE, offset=0x0204),
    "role_simulated": answers(18, 0, SIM_ROLE, offset=0x03FF),
    "audit_ibm_role": answers(17, 0, SELECT + OK + out(IBM_ROLE)),
    "audit_role_refused": answers(17, 0, SELECT + err(11, 772)),
    "create_card": answers(19, 1, OK),
    "outputs_statcrd2": answers(
        20, 0, SELECT + OK + elements("2", "", "", "", "", "", "", "", "", "", "", "", "", "", "93AB1234") + out(b"")
    ),
    "outputs_role_overlong": answers(21, 0, SELECT + OK + i16(0x7FFF)),
    "outputs_obtain": answers(22, 0, SELECT + OK + out(bytes(256)) + out(CLONE_INFO)),
    "outputs_pkx_negative": answers(23, 0, SELECT + OK + i16(-1)),
}
for name, data in hostlib_answers.items():
    put("hostlib_answers", name, data)

# ---- pkcs11_objects ---------------------------------------------------------------------


def obj(label, value):
    return label + "\n" + value


ID1, ID2, ID3, ID4 = "0011223344556677", "8899aabbccddeeff", "0102030405060708", "1112131415161718"
PATTERN = '{"algorithm":"sha1-method","bytes":"0102030405060708"}'
RECEIVED = (
    '{"index":2,"origin_eid":"SOURCE.1","origin_serial":"93AB1234","source_pattern":' + PATTERN
    + ',"digest":"' + "ab" * 32 + '","share":"' + ID4 + '"}'
)
pkcs11 = {
    "register_map": obj(
        "mkclone/map/0000000000000002",
        '{"format":"mkclone-pkcs11-register-map","version":1,"generation":2,"mofn":"' + ID1
        + '","sym":{"new":null,"current":"' + ID2 + '","old":null,"table":"' + ID3
        + '"},"asym":{"new":null,"current":null,"old":null,"table":null}}',
    ),
    "m_of_n": obj(
        "mkclone/mofn/" + ID1,
        '{"format":"mkclone-pkcs11-m-of-n","version":1,"m_of_n":[2,3],"seed":"' + ID2 + '"}',
    ),
    "pattern": obj(
        "mkclone/mkvp/" + ID2,
        '{"format":"mkclone-pkcs11-pattern","version":1,"kind":"sym","pattern":' + PATTERN
        + ',"check_value":"a1b2c3"}',
    ),
    "table": obj(
        "mkclone/table/" + ID3,
        '{"format":"mkclone-pkcs11-share-table","version":1,"kind":"sym","generation":"111000000000000",'
        '"received":[' + RECEIVED + '],"received_more":[]}',
    ),
    "share": obj(
        "mkclone/share/" + ID4,
        '{"format":"mkclone-pkcs11-share","version":2,"kind":"asym","index":2,"sealed":"'
        + SEALED.hex() + '"}',
    ),
    "key_companion": obj(
        "mkclone/key/MKCLONE.CSR",
        '{"format":"mkclone-pkcs11-retained-key","version":1,"role":"csr","clone":true,"bits":2048,'
        '"id":"' + ID1 + '","token":"' + TOKEN.hex() + '"}',
    ),
    "eid": obj("mkclone/eid", '{"format":"mkclone-pkcs11-eid","version":1,"eid":"TARGET.1"}'),
    "registered_hash": obj(
        "mkclone/reg/MKCLONE.SA",
        '{"format":"mkclone-pkcs11-registered-hash","version":1,"hash":{"algorithm":"sha256","bytes":"'
        + "a5" * 32 + '"},"clone":true}',
    ),
    "registered_key": obj(
        "mkclone/regkey/MKCLONE.SA",
        '{"format":"mkclone-pkcs11-registered-key","version":1,"certificate":"' + CERT.hex() + '"}',
    ),
    "other_version": obj(
        "mkclone/map/0000000000000003",
        '{"format":"mkclone-pkcs11-register-map","version":2,"generation":3}',
    ),
}
for name, data in pkcs11.items():
    put("pkcs11_objects", name, data)
