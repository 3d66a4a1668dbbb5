//! The buffer the text of a file holding secrets is built in.

use std::io;

use zeroize::Zeroizing;

/// A byte buffer that wipes what it leaves behind: when it must grow, it copies its bytes
/// into a larger buffer and zeroizes the old one, where a `Vec`'s own growth frees the old
/// block, secrets and all. Write a file's text into it (`serde_json::to_writer`), then
/// take the bytes with [`WipingBuffer::into_bytes`]; they are wiped when dropped.
pub struct WipingBuffer(Zeroizing<Vec<u8>>);

impl WipingBuffer {
    /// An empty buffer with room for `capacity` bytes: size it for the text expected, and
    /// it never grows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Zeroizing<Vec<u8>> {
        self.0
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl io::Write for WipingBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let needed = self.0.len().saturating_add(bytes.len());
        if needed > self.0.capacity() {
            let mut larger = Zeroizing::new(Vec::with_capacity(
                needed.max(self.0.capacity().saturating_mul(2)),
            ));
            larger.extend_from_slice(&self.0);
            // The old buffer is zeroized as it is dropped.
            self.0 = larger;
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Every byte is kept as the buffer grows, from any starting size.
    #[test]
    fn the_wiping_buffer_keeps_every_byte_as_it_grows() {
        let pieces: [&[u8]; 5] = [b"ab", b"", b"cdefg", &[7; 100], b"z"];
        for start in [0, 1, 3, 200] {
            let mut out = WipingBuffer::with_capacity(start);
            for piece in pieces {
                out.write_all(piece).unwrap();
            }
            assert_eq!(out.as_bytes(), pieces.concat());
            assert_eq!(*out.into_bytes(), pieces.concat());
        }
    }
}
