#!/usr/bin/env python3
"""Hand-assembles the seeds of the text targets (sa_db, csr_db, bundle, journal, config,
sysfs) from the documented layouts, without mkclone's encoders:

- envelopes: the six members in the order crates/ceremony/src/envelope.rs documents, the
  digest SHA-256 over the first five members' compact encoding (hashlib), bodies with the
  members of crates/ceremony/src/dbs.rs in declaration order; the certificate, token and
  sealed share inside are the hand-assembled golden vectors of crates/formats/tests/golden.rs
  (their seeds, exported first: see fuzz/README.md);
- journal lines: the members crates/ceremony/src/journal.rs documents, each `prev` the
  SHA-256 of the line before;
- configurations: examples/rehearsal.toml and variants written from src/config.rs;
- sysfs dumps: the attribute text tests/zcrypt/sysfs.rs writes, in the dump format of
  fuzz/src/host.rs.

Run from the repository root: python3 fuzz/seeds/make_text_seeds.py
"""

import hashlib
import json

from seedlib import ROOT, golden, put


def softhsm_node(name, *lines):
    """A configuration's [nodes.NAME] table of a SoftHSM token labelled NAME, then LINES."""
    head = [f"[nodes.{name}]", 'backend = "pkcs11"', 'module = "/usr/lib/softhsm/libsofthsm2.so"',
            f'token = "{name}"']
    return "\n".join(head + list(lines)) + "\n"


def js(value):
    """Compact JSON of a string or number, as serde_json writes them (ASCII here)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def envelope(fmt, version, ceremony, rehearsal, body):
    signed = (
        '{"format":' + js(fmt) + ',"version":' + str(version) + ',"ceremony":' + js(ceremony)
        + ',"rehearsal":' + ("true" if rehearsal else "false") + ',"body":' + body + "}"
    )
    digest = "sha256:" + hashlib.sha256(signed.encode()).hexdigest()
    return signed[:-1] + ',"digest":' + js(digest) + "}\n"


CERT = golden("certificate", "certificate_section_with_information_subsection").hex()
TOKEN = golden("pka_token", "public_key_token_with_certificate_section").hex()
SEALED = golden("sealed_share", "sealed_share_container").hex()
NONCE = "00112233445566778899aabbccddeeff"
HASH = "9f" * 32


JOURNAL = "5e" * 32


def provenance(written, version=3):
    """Version 3 marks name their journal (the hash of its first record); version 2 ones do not."""
    named = ',"journal":' + js(JOURNAL) if version >= 3 else ""
    marks = ",".join(
        js(node) + ':{"phase":' + js(phase) + ',"seq":' + str(seq) + ',"hash":' + js(HASH) + named
        + "}"
        for node, phase, seq in written
    )
    return '"provenance":{"nonce":' + js(NONCE) + ',"written":{' + marks + "}}"


def sa_db():
    css = (
        '{"node":"source","eid":"SOURCE.1","public_key":' + js(TOKEN)
        + ',"certificate":' + js(CERT) + "}"
    )
    sa_hash = '{"algorithm":"sha256","bytes":' + js(hashlib.sha256(b"x").hexdigest()) + "}"
    for name, css_member, rehearsal, version in [
        ("full", css, False, 3),
        ("no_css", "null", True, 3),
        ("version_2", css, False, 2),
        ("version_1", "null", False, 1),
    ]:
        body = (
            '{"sa_node":"sa","sa_eid":"SA.1","sa_certificate":' + js(CERT) + ',"sa_hash":' + sa_hash
            + ',"css":' + css_member + ","
            + provenance([("sa", "1", 4), ("source", "2a", 7)], version) + "}"
        )
        put("sa_db", name, envelope("mkclone-sa-db", version, "C-1", rehearsal, body))


def csr_db():
    for name, cert, version in [
        ("certified", js(CERT), 3),
        ("uncertified", "null", 3),
        ("version_2", js(CERT), 2),
    ]:
        body = (
            '{"target":"target1","eid":"TARGET.1","public_key":' + js(TOKEN) + ',"certificate":' + cert
            + "," + provenance([("target1", "3a", 2)], version) + "}"
        )
        put("csr_db", name, envelope("mkclone-csr-db", version, "C-1", False, body))


def bundle():
    for name, kind, index, version in [
        ("sym_3", "sym", 3, 3),
        ("asym_1", "asym", 1, 3),
        ("version_2", "sym", 2, 2),
    ]:
        body = (
            '{"target":"target1","target_eid":"TARGET.1","kind":' + js(kind) + ',"index":' + str(index)
            + ',"source":"source","source_eid":"SOURCE.1",'
            + '"source_pattern":{"algorithm":"sha1-method","bytes":"0102030405060708"},'
            + '"sealed":' + js(SEALED) + "," + provenance([("source", "3c", 9)], version) + "}"
        )
        put("bundle", name, envelope("mkclone-share-bundle", version, "C-1", False, body))


def journal():
    records = [
        ("1", "sa", "intent", "null", "generate-sa-key", '{"label":"MKCLONE.SA.KEY"}'),
        ("1", "sa", "outcome", '"alice"', "generate-sa-key", '{"intent":1,"result":"done"}'),
        ("setup", "", "note", "null", "torn-tail-removed", '{"bytes":17,"z":[1,{"a":"x","b":2}]}'),
    ]
    lines, prev = [], "0" * 64
    for seq, (phase, node, kind, operator, event, detail) in enumerate(records, 1):
        line = (
            '{"seq":' + str(seq) + ',"prev":' + js(prev) + ',"time":"2026-05-01T10:20:30.123Z"'
            + ',"ceremony":"C-1","nonce":' + js(NONCE) + ',"rehearsal":false,"phase":' + js(phase)
            + ',"node":' + js(node) + ',"kind":' + js(kind) + ',"operator":' + operator
            + ',"event":' + js(event) + ',"detail":' + detail + "}"
        )
        lines.append(line)
        prev = hashlib.sha256(line.encode()).hexdigest()
    text = "".join(line + "\n" for line in lines)
    put("journal", "one_line", lines[0] + "\n")
    put("journal", "three_lines", text)
    put("journal", "torn_tail", text + lines[0][:40])


CONFIG_HEAD = """[ceremony]
id = "C-1"
sa = "sa"
source = "source"
targets = ["target1"]
master_keys = ["sym", "asym"]
threshold = 2
shares = 3
"""


def config():
    put("config", "rehearsal.toml", (ROOT / "examples" / "rehearsal.toml").read_bytes())
    put("config", "zcrypt.toml", CONFIG_HEAD + """key_bits = 4096
share_indices = [1, 3]
sa_fingerprint = "0A1B 2C3D 4E5F 6071 8293 A4B5 C6D7 E8F9 0A1B 2C3D 4E5F 6071 8293 A4B5 C6D7 E8F9"

[ceremony.source_patterns]
sym = "SHA-1 0123456789ABCDEF"
asym = "0011223344556677"

[nodes.sa]
backend = "zcrypt"
apqn = "01.000d"
eid = "SA NODE"

[nodes.source]
backend = "zcrypt"
apqn = "02.000d"
device = "/dev/zcrypt-source"
expect_serial = "93AABEG5"
eid = "SOURCE NODE"

[nodes.target1]
backend = "zcrypt"
apqn = "03.000d"
eid = "TARGET NODE 1"
""")
    put("config", "pkcs11_mixed.toml", CONFIG_HEAD + """rehearsal = true
dual_control = true

[nodes.sa]
backend = "sim"
sim_dir = "cards"
apqn = "01.000d"
eid = "SA NODE"
serial = "SIM00001"
expect_serial = "SIM00001"

""" + softhsm_node("source", 'expect_token_serial = "0123456789abcdef"',
                   'pin = { env = "MKCLONE_SOURCE_PIN" }', 'eid = "SOURCE NODE"')
        + "\n" + softhsm_node("target1", 'pin = { file = "target1.pin" }', 'eid = "TARGET NODE 1"')
        + "\n" + softhsm_node("spare", 'pin = "prompt"'))
    put("config", "cca.toml", CONFIG_HEAD + """
[nodes.sa]
backend = "cca"
library = "/opt/IBM/CCA/lib/libcsulcca.so"
mk_library = "libcsulccamk.so"
adapter = "CRP01"
expect_serial = "93AABEG5"
domain = 13
trace = "trace/sa.log"
role = "DEFAULT"
eid = "SA NODE"

[nodes.source]
backend = "cca"
adapter = "2"
eid = "SOURCE NODE"

""" + softhsm_node("target1", 'pin = { env = "MKCLONE_TARGET_PIN" }', 'so_pin = "prompt"',
                   'eid = "TARGET NODE 1"'))


MKVPS = """AES NEW: empty 0x0000000000000000
AES CUR: valid 0xe9a49a58cd039bed
AES OLD: invalid 0x0000000000000000
APKA NEW: full 0x1122334455667788
APKA CUR: valid 0x5f2f27aaa2d59b4a
APKA OLD: valid 0x0102030405060708
"""
MKVPS_ASYM = """AES NEW: partial 0x0000000000000000
AES CUR: valid 0x0011223344556677
ASYM NEW: empty 0x00000000000000000000000000000000
ASYM CUR: valid 0x00112233445566778899aabbccddeeff
SYM CUR: valid 0x0123456789abcdef
"""
MKVPS_UNKNOWN = "AES NEW: - -\nAES CUR: - -\nAES OLD: - -\n"


def dump(entries):
    return "".join(f"== {path}\n{text}" for path, text in entries)


def sysfs():
    card = lambda cid, typ, hw, fn, online, config, serial: [
        (f"card{cid}/type", f"{typ}\n"), (f"card{cid}/hwtype", f"{hw}\n"),
        (f"card{cid}/ap_functions", f"{fn}\n"), (f"card{cid}/online", f"{online}\n"),
        (f"card{cid}/config", f"{config}\n"), (f"card{cid}/chkstop", "0\n"),
        (f"card{cid}/serialnr", f"{serial}\n"),
    ]
    put("sysfs", "machine", dump(
        card("03", "CEX7C", 13, "0x92800000", 1, 1, "93AABEG5")
        + [("03.000d/online", "1\n"), ("03.000d/config", "1\n"), ("03.000d/chkstop", "0\n"),
           ("03.000d/mkvps", MKVPS), ("03.0004/online", "1\n"), ("03.0004/config", "0\n"),
           ("03.0004/mkvps", MKVPS_ASYM)]
        + card("05", "CEX5C", 11, "0x92800000", 0, 1, "")
        + [("05.000d/online", "0\n"), ("05.000d/mkvps", MKVPS_UNKNOWN)]
        + card("06", "CEX8A", 14, "0x8A800000", 1, 1, "")
        + card("07", "CEX7P", 13, "0x86800000", 1, 1, "")
    ))
    put("sysfs", "deconfigured_no_type", dump(
        [("card0a/hwtype", "12\n"), ("card0a/ap_functions", "0x92800000\n"), ("card0a/online", "1\n"),
         ("card0a/config", "0\n"), ("card0a/chkstop", "1\n"), ("0a.0001/online", "1\n")]
    ))


if __name__ == "__main__":
    sa_db()
    csr_db()
    bundle()
    journal()
    config()
    sysfs()
