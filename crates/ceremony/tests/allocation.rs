//! No ceremony file, nor the journal, is read into memory beyond `envelope::MAX_FILE_BYTES`:
//! one that claims more is refused before anything is allocated for it. The journal was
//! once read whole by `Journal::open` (`read_to_end`, no limit): a sparse file claiming a
//! terabyte would grow the process's memory until it was killed, and one just over the
//! limit without a newline was taken for a journal with a torn last line, to be cut at the
//! next append (found by a review).
//!
//! The check is a global allocator of this test binary that records, per thread, the
//! largest allocation asked for.

use mkclone_ceremony::FileError;
use mkclone_ceremony::envelope::{self, MAX_FILE_BYTES};
use mkclone_ceremony::journal::{self, Journal};

#[path = "../../../build-support/largest_allocation.rs"]
mod largest_allocation;
use largest_allocation::largest;

/// Far less than the limit: what opening a small journal or reading a small file takes.
const SMALL: usize = 1 << 20;

/// A sparse file at `path` claiming `size` bytes (no disk used).
fn sparse(path: &std::path::Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

#[test]
fn a_journal_or_ceremony_file_over_the_limit_is_refused_without_a_large_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join(journal::FILE_NAME);
    let sa_db = dir.path().join("sa.db");
    for size in [MAX_FILE_BYTES + 1, 1 << 40] {
        sparse(&journal, size);
        let (opened, most) = largest(|| Journal::open(dir.path(), "C-1", false));
        match opened {
            Err(FileError::TooLarge { path, size: s, .. }) => {
                assert_eq!((path, s), (journal.clone(), size));
            }
            Err(e) => panic!("{size} bytes: refused, but not as too large: {e}"),
            Ok(j) => panic!(
                "a {size} byte journal was opened (torn tail of {:?} bytes)",
                j.torn_tail()
            ),
        }
        assert!(most < SMALL, "the journal: {most} bytes allocated at once");
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), size);

        sparse(&sa_db, size);
        let (read, most) = largest(|| envelope::read_bytes(&sa_db));
        assert!(
            matches!(read, Err(FileError::TooLarge { .. })),
            "sa.db of {size} bytes"
        );
        assert!(most < SMALL, "sa.db: {most} bytes allocated at once");
    }
}
