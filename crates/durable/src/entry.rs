//! What a name in a ceremony directory is: the one check of a file's or a directory's kind
//! and owner, made on what `lstat` shows of the name and again on what was opened, and the
//! words for a kind of file in messages.

use std::fs::{FileType, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::DurableError;

/// What a name must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expected {
    /// A regular file.
    File,
    /// A directory.
    Directory,
}

impl Expected {
    /// "file" or "directory", for [`DurableError::SymbolicLink`] and [`DurableError::NotOwned`].
    fn what(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Directory => "directory",
        }
    }
}

/// Check that `meta` (of `path`) is `expected`: never a symbolic link
/// ([`DurableError::SymbolicLink`]), of the expected kind ([`DurableError::NotRegularFile`] or
/// [`DurableError::NotADirectory`], naming what it is instead), and, when `owner` is given,
/// owned by that uid ([`DurableError::NotOwned`]).
pub(crate) fn check_entry(
    path: &Path,
    meta: &Metadata,
    expected: Expected,
    owner: Option<u32>,
) -> Result<(), DurableError> {
    let file_type = meta.file_type();
    let what = expected.what();
    if file_type.is_symlink() {
        return Err(DurableError::SymbolicLink {
            path: path.into(),
            what,
        });
    }
    let kind = kind_of(file_type);
    match expected {
        Expected::File if !file_type.is_file() => {
            return Err(DurableError::NotRegularFile {
                path: path.into(),
                kind,
            });
        }
        Expected::Directory if !file_type.is_dir() => {
            return Err(DurableError::NotADirectory {
                path: path.into(),
                kind,
            });
        }
        Expected::File | Expected::Directory => {}
    }
    match owner {
        Some(euid) if meta.uid() != euid => Err(DurableError::NotOwned {
            path: path.into(),
            what,
            owner: meta.uid(),
            euid,
        }),
        _ => Ok(()),
    }
}

/// The test that tells a kind of file.
type IsKind = fn(&FileType) -> bool;

/// Each kind of file, by the test that tells it, with its words in messages.
const KINDS: [(IsKind, &str); 7] = [
    (FileType::is_fifo, "a named pipe (FIFO)"),
    (FileType::is_char_device, "a character device"),
    (FileType::is_block_device, "a block device"),
    (FileType::is_socket, "a socket"),
    (FileType::is_dir, "a directory"),
    (FileType::is_symlink, "a symbolic link"),
    (FileType::is_file, "a regular file"),
];

/// What a file of `file_type` is, for messages.
pub(crate) fn kind_of(file_type: FileType) -> &'static str {
    KINDS
        .iter()
        .find(|(is, _)| is(&file_type))
        .map_or("of an unknown kind", |&(_, words)| words)
}
