//! The mode a written file gets: who may read it.

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{DurableError, io_error};

/// Who may read a file: decides its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sensitivity {
    /// Mode 0600, from creation on (the temporary file too): never wider at any moment.
    Secret,
    /// Mode 0644.
    Public,
}

impl Sensitivity {
    /// The permission bits a file of this sensitivity gets.
    pub const fn mode(self) -> u32 {
        match self {
            Self::Secret => 0o600,
            Self::Public => 0o644,
        }
    }
}

/// Give a freshly created file exactly the mode of `sensitivity`, whatever the umask.
/// A secret file whose group/other bits cannot be cleared is an error; a public file that
/// cannot be widened only logs a warning.
pub fn set_exact_mode(
    file: &File,
    path: &Path,
    sensitivity: Sensitivity,
) -> Result<(), DurableError> {
    let want = sensitivity.mode();
    let mode_of = |f: &File| -> Result<u32, DurableError> {
        Ok(f.metadata()
            .map_err(io_error(path, "read the file's mode"))?
            .permissions()
            .mode()
            & 0o7777)
    };
    if mode_of(file)? == want {
        return Ok(());
    }
    let set = file.set_permissions(Permissions::from_mode(want));
    let have = mode_of(file)?;
    match sensitivity {
        Sensitivity::Secret if have & 0o077 != 0 => Err(DurableError::Io {
            path: path.into(),
            action: "restrict the file to mode 0600 (secret files need a filesystem with Unix \
                     permissions)",
            source: set.err().unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, format!("mode is {have:o}"))
            }),
        }),
        _ => {
            if have != want {
                log::warn!(
                    "{}: mode is {have:o} instead of {want:o}{}",
                    path.display(),
                    set.err().map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}
