//! Reading a whole file into memory, never beyond a limit: a length a file claims (a
//! sparse file of a terabyte, one that keeps growing) must not make a reader allocate more
//! than the limit the caller knows its files stay under.

use std::fs::File;
use std::io;

use zeroize::Zeroizing;

/// Every byte of the open `file`, from its start whatever its offset (`pread`), into a
/// buffer sized once from its `fstat` (grown only if the file grew meanwhile), at most
/// `limit` bytes. A larger file is refused before it is allocated with an `io::Error` of
/// kind `InvalidData` carrying a [`TooLarge`].
pub fn read_all_capped(file: &File, limit: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    read_all_sized(file, file.metadata()?.len(), limit)
}

/// Why [`read_all_capped`] refused a file, carried in its `io::Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The file's size, or what was read of it when it grew past the limit meanwhile.
    pub size: u64,
    /// The limit it passed.
    pub limit: u64,
}

impl TooLarge {
    fn error(size: u64, limit: u64) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, Self { size, limit })
    }

    /// The refusal `e` carries, if it is one.
    pub fn in_error(e: &io::Error) -> Option<Self> {
        e.get_ref()?.downcast_ref::<Self>().copied()
    }
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes, larger than {} MiB, the most this file may hold",
            self.size,
            self.limit >> 20
        )
    }
}

impl std::error::Error for TooLarge {}

/// [`read_all_capped`], `size` being the file's size as its `fstat` gave it (a test gives
/// a smaller one, as if the file had grown since).
fn read_all_sized(file: &File, size: u64, limit: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    use std::os::unix::fs::FileExt;
    if size > limit {
        return Err(TooLarge::error(size, limit));
    }
    let size = usize::try_from(size).map_err(|_| TooLarge::error(size, limit))?;
    // One more byte than the size: a read that fills it means the file grew.
    let mut bytes = Zeroizing::new(vec![0u8; size.saturating_add(1)]);
    let mut filled = 0;
    loop {
        if filled as u64 > limit {
            return Err(TooLarge::error(filled as u64, limit));
        }
        if filled == bytes.len() {
            // Grown since the fstat: double, moving the bytes read so far into a buffer
            // that is zeroized in its turn (the old one is, on drop).
            let cap = usize::try_from(limit + 1).unwrap_or(usize::MAX);
            let mut larger = Zeroizing::new(vec![0u8; bytes.len().saturating_mul(2).min(cap)]);
            larger[..filled].copy_from_slice(&bytes[..filled]);
            bytes = larger;
        }
        let n = file.read_at(&mut bytes[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    bytes.truncate(filled);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const LIMIT: u64 = 64 << 20;

    /// A file that grows past the limit between its `fstat` and its read (here read with
    /// the size it had before) is refused as well, when what was read passes the limit;
    /// one that grows and stays under it is read whole.
    #[test]
    fn a_file_growing_past_the_limit_while_it_is_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.db");
        fs::write(&path, [7u8; 100]).unwrap();
        let file = fs::File::open(&path).unwrap();
        assert_eq!(
            &read_all_sized(&file, 10, LIMIT).unwrap()[..],
            &[7u8; 100][..]
        );
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(LIMIT + 1)
            .unwrap();
        let err = read_all_sized(&file, 100, LIMIT).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(TooLarge::in_error(&err).map(|t| t.size), Some(LIMIT + 1));
        assert!(err.to_string().contains("larger than 64 MiB"), "{err}");
    }
}
