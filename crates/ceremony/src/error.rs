//! The one error type of the durable-file layer: the ceremony's files (their formats, the
//! journal, the directory lock) and, wrapped, the errors of the durable primitives
//! (`mkclone_durable::DurableError`).
//!
//! Every variant names the file (or directory) concerned and says what to do. A file that
//! is refused is always left untouched: nothing in this layer "repairs" a file it does not
//! trust.

use std::io;
use std::path::PathBuf;

use mkclone_durable::DurableError;
use thiserror::Error;

/// Why a ceremony file could not be written, read or trusted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FileError {
    /// A file or directory refused, or an operating-system call that failed, by the
    /// durable-file primitives (`mkclone_durable`): an I/O error, a file that already exists
    /// and is never overwritten, a symbolic link, a FIFO or device, a hard-linked file to
    /// erase, another user's file or directory, a ceremony directory others can write in.
    #[error(transparent)]
    Durable(#[from] DurableError),

    /// Another process holds the directory's lock (`DirLock::try_acquire`).
    #[error(
        "another mkclone is working in {dir} ({}, from the lock file {lock_file}); wait for it to \
         finish and run this command again (the lock is released as soon as that process exits)",
        holder_text(.pid, .command)
    )]
    Locked {
        dir: PathBuf,
        lock_file: PathBuf,
        /// The holder's process id as it wrote it into the lock file, if it had.
        pid: Option<u32>,
        /// The holder's program and subcommand ("mkclone clone"), if it wrote them.
        command: Option<String>,
    },

    /// Not JSON, truncated, or not shaped like a ceremony file.
    #[error(
        "{path} is corrupt ({detail}); it was left untouched and not used. Restore it from the \
         copy it was carried from, or rerun the phase that wrote it"
    )]
    Corrupt { path: PathBuf, detail: String },

    /// A ceremony file of another kind.
    #[error(
        "{path} is not a {expected} file (it says format {found:?}): another kind of file is in \
         its place; it was not used. Check the file name and the directory"
    )]
    WrongFormat {
        path: PathBuf,
        expected: String,
        found: String,
    },

    /// Written by a newer mkclone.
    #[error(
        "{path} is a {format} file of version {found}, written by a newer mkclone (this one reads \
         versions up to {supported}); it was not used. Upgrade mkclone on this machine to the \
         release that wrote it"
    )]
    NewerVersion {
        path: PathBuf,
        format: String,
        found: u32,
        supported: u32,
    },

    /// A version this mkclone no longer reads.
    #[error(
        "{path} is version {found} of {format}, written by an older mkclone (before ceremony nonces and \
         journal marks, version {supported}); it was not used. Finish that ceremony with the mkclone \
         that began it, or begin this one in a new directory"
    )]
    OlderVersion {
        path: PathBuf,
        format: String,
        found: u32,
        supported: u32,
    },

    /// Version 0, which no mkclone writes.
    #[error(
        "{path} says version 0 of {format}, which no mkclone writes: the file is corrupt or was \
         made by hand; it was not used. Restore it from the copy it was carried from"
    )]
    InvalidVersion { path: PathBuf, format: String },

    /// The file belongs to another ceremony.
    #[error(
        "{path} belongs to ceremony {found:?}, this is ceremony {expected:?}; it was not used. \
         Use the files of this ceremony, or run the plan of that one"
    )]
    ForeignCeremony {
        path: PathBuf,
        found: String,
        expected: String,
    },

    /// A rehearsal file met a production run or the other way round.
    #[error(
        "{path} was written by a {} ceremony but this run is {}; rehearsal and production files \
         never mix, and it was not used. Use the files of this kind of run",
        rehearsal_text(*.file_rehearsal), rehearsal_text(!*.file_rehearsal)
    )]
    RehearsalMismatch { path: PathBuf, file_rehearsal: bool },

    /// The recorded digest does not match the contents.
    #[error(
        "{path}: the digest does not match the contents (recorded {recorded}, computed \
         {computed}): the file was changed or damaged after it was written, and it was not used. \
         Restore it from the copy it was carried from, or rerun the phase that wrote it"
    )]
    DigestMismatch {
        path: PathBuf,
        recorded: String,
        computed: String,
    },

    /// The bytes are not the canonical encoding of what they say.
    #[error(
        "{path} is not in canonical form (byte {offset} differs from the encoding mkclone \
         writes): it was reformatted or edited after it was written, and a changed file is never \
         re-read; it was not used. Restore the original copy, or rerun the phase that wrote it"
    )]
    NonCanonical {
        path: PathBuf,
        /// Offset of the first byte that differs from the canonical encoding.
        offset: usize,
    },

    /// Larger than any ceremony file or journal mkclone writes
    /// ([`MAX_FILE_BYTES`](crate::envelope::MAX_FILE_BYTES)): refused before it is read
    /// into memory (a sparse file can claim terabytes), and left untouched.
    #[error(
        "{path} is {size} bytes, larger than {} MiB, which no ceremony file or journal that \
         mkclone writes ever is: it was not read, and was left untouched. Something other than \
         mkclone made it or made it grow; keep it as evidence, move it out of the ceremony \
         directory and put back a good copy (of a carried file, the copy it was carried from; \
         of a journal, its copy whose last line has the head hash written on the paper record), \
         then run the command again",
        .limit >> 20
    )]
    TooLarge {
        path: PathBuf,
        /// Its size; for a file that grew while it was read, the bytes read by then.
        size: u64,
        /// The largest size read, in bytes.
        limit: u64,
    },

    /// The journal's chain is broken before its last line.
    #[error(
        "journal {path} is corrupt at line {line}: {reason}. mkclone did not change it: keep it \
         as evidence and compare it with a copy (the head hash printed at the end of each run \
         identifies the last good state) before going on"
    )]
    JournalCorrupt {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        reason: String,
    },

    /// The journal changed on disk while this process had it open.
    #[error(
        "journal {path} changed while this mkclone had it open ({reason}): another process wrote \
         it without holding the directory lock. Stop that process, then run the command again \
         (the journal is verified again on opening)"
    )]
    JournalChanged { path: PathBuf, reason: String },

    /// A value could not be encoded canonically: a bug in the caller's types.
    #[error(
        "cannot encode {what}: {detail}. This is a bug in mkclone (body types must encode \
         deterministically: BTreeMap, not HashMap; no floating-point numbers); please report it"
    )]
    Encode { what: String, detail: String },

    /// A journal entry the caller built is not acceptable: a bug in the caller.
    #[error(
        "cannot append to journal {path}: {reason}. This is a bug in mkclone; please report it"
    )]
    InvalidEntry { path: PathBuf, reason: String },
}

impl FileError {
    /// The file it is about, where it names one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Self::Locked { lock_file, .. } => Some(lock_file),
            Self::Corrupt { path, .. }
            | Self::WrongFormat { path, .. }
            | Self::NewerVersion { path, .. }
            | Self::OlderVersion { path, .. }
            | Self::InvalidVersion { path, .. }
            | Self::ForeignCeremony { path, .. }
            | Self::RehearsalMismatch { path, .. }
            | Self::DigestMismatch { path, .. }
            | Self::NonCanonical { path, .. }
            | Self::TooLarge { path, .. }
            | Self::JournalCorrupt { path, .. }
            | Self::JournalChanged { path, .. }
            | Self::InvalidEntry { path, .. } => Some(path),
            Self::Durable(_) | Self::Encode { .. } => None,
        }
    }

    /// The file (or a directory on its path) does not exist: an I/O error of kind
    /// `NotFound`, for callers to which a missing file is not an error.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Durable(e) if e.is_not_found())
    }
}

fn holder_text(pid: &Option<u32>, command: &Option<String>) -> String {
    match (pid, command) {
        (Some(pid), Some(command)) => format!("pid {pid} ({command})"),
        (Some(pid), None) => format!("pid {pid}"),
        (None, _) => "its pid is not recorded yet".to_owned(),
    }
}

fn rehearsal_text(rehearsal: bool) -> &'static str {
    if rehearsal { "REHEARSAL" } else { "production" }
}

/// `map_err` helper: an I/O error on `path` while doing `action`.
pub(crate) fn io_error<'a>(
    path: &'a std::path::Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> FileError + 'a {
    let io_error = mkclone_durable::io_error(path, action);
    move |source| FileError::Durable(io_error(source))
}
