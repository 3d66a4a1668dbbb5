//! The seeds of the envelope fuzz targets (fuzz/seeds/{sa_db,csr_db,bundle}, hand-assembled
//! by fuzz/seeds/make_text_seeds.py) decode with the real decoders: a seed refused at its
//! first wrong member gives the fuzzer only that refusal to start from. (The sa.db seeds
//! once spelled the hash algorithm `sha-256` and never decoded.)

use std::path::{Path, PathBuf};

use mkclone_ceremony::dbs::{self, CsrDb, SaDb, ShareBundle};
use mkclone_ceremony::envelope;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seed in {}", dir.display());
    files
}

/// Every seed of `target` but a version 1 one (refused by the reader of ceremony files)
/// decodes, and every version read is among them.
fn all_decode<T: Serialize + DeserializeOwned>(target: &str, format: &str) {
    let mut versions = Vec::new();
    for path in seeds(target) {
        let bytes = std::fs::read(&path).unwrap();
        let header = envelope::peek(&path, &bytes).unwrap();
        if header.version < dbs::OLDEST_VERSION {
            continue;
        }
        let d = envelope::decode::<T>(&path, &bytes, format, dbs::VERSION, None)
            .unwrap_or_else(|e| panic!("seed {}: {e}", path.display()));
        versions.push(d.version);
    }
    for v in dbs::OLDEST_VERSION..=dbs::VERSION {
        assert!(versions.contains(&v), "{target}: no seed of version {v}");
    }
}

#[test]
fn the_envelope_seeds_decode() {
    all_decode::<SaDb>("sa_db", dbs::SA_DB_FORMAT);
    all_decode::<CsrDb>("csr_db", dbs::CSR_DB_FORMAT);
    all_decode::<ShareBundle>("bundle", dbs::BUNDLE_FORMAT);
}
