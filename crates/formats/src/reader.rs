//! A bounds-checked big-endian byte reader and a matching writer, used by every decoder and
//! encoder of this crate.
//!
//! The reader never panics: every read checks the remaining length first and reports a
//! [`FormatError`] naming the structure, the field and the absolute offset. Offsets are
//! computed with saturating arithmetic. The writer keeps its buffer in
//! [`Zeroizing`], because some structures (the cloning-information token) carry secrets.
//!
//! Every CCA subsection read here has the same 4-byte head: a 1-byte identifier, a 1-byte
//! version X'00' and a 2-byte length that counts the whole subsection including the head
//! (IBM CCA Basic Services Reference, release 2.54, PKA key token and certificate section,
//! as summarised in reference/cca-cloning.md). [`Reader::tlv`] and [`Writer::begin_tlv`] /
//! [`Writer::end_tlv`] implement that shape once.

use zeroize::Zeroizing;

use crate::error::{FormatError, Result};
use crate::ids;

/// Length of a subsection head: id, version, 2-byte length.
pub const TLV_HEAD_LEN: usize = 4;

/// Reads big-endian fields from a byte slice, checking every bound.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    structure: &'static str,
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

/// One subsection read by [`Reader::tlv`]: its identifier, the absolute offset of its first
/// byte, and a reader over its body (the bytes after the 4-byte head).
#[derive(Debug, Clone)]
pub struct Tlv<'a> {
    pub id: u8,
    pub offset: usize,
    pub body: Reader<'a>,
}

impl Tlv<'_> {
    /// This subsection is not the one expected here, for `reason`.
    pub fn unexpected(&self, structure: &'static str, reason: &'static str) -> FormatError {
        FormatError::UnexpectedSubsection {
            structure,
            id: self.id,
            offset: self.offset,
            reason,
        }
    }
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, reporting errors against `structure`.
    pub fn new(structure: &'static str, buf: &'a [u8]) -> Self {
        Self {
            structure,
            buf,
            pos: 0,
            base: 0,
        }
    }

    pub fn structure(&self) -> &'static str {
        self.structure
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next byte, without consuming it.
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, field: &'static str, n: usize) -> Result<&'a [u8]> {
        let remaining = self.remaining();
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(FormatError::Truncated {
                structure: self.structure,
                field,
                offset: self.offset(),
                needed: n,
                remaining,
            })?;
        self.pos = self.pos.saturating_add(n);
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let offset = self.offset();
        let slice = self.bytes(field, N)?;
        <[u8; N]>::try_from(slice).map_err(|_| FormatError::Truncated {
            structure: self.structure,
            field,
            offset,
            needed: N,
            remaining: slice.len(),
        })
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Read one byte and require it to be `expected`.
    pub fn expect_u8(&mut self, field: &'static str, expected: u8) -> Result<()> {
        let offset = self.offset();
        let found = self.u8(field)?;
        if found != expected {
            return Err(FormatError::UnexpectedByte {
                structure: self.structure,
                field,
                offset,
                expected,
                found,
            });
        }
        Ok(())
    }

    /// A reader over a whole token, past its header: identifier `id`, version X'00', a
    /// 2-byte total length that must be `buf`'s, and 4 reserved zero bytes.
    pub fn token(structure: &'static str, buf: &'a [u8], id: u8) -> Result<Self> {
        let mut r = Self::new(structure, buf);
        r.expect_u8("token identifier", id)?;
        r.expect_u8("token version", ids::VERSION)?;
        let len_at = r.offset();
        let total = usize::from(r.u16("token length")?);
        if total != buf.len() {
            return Err(FormatError::LengthMismatch {
                structure,
                field: "token length",
                offset: len_at,
                claimed: total,
                actual: buf.len(),
            });
        }
        r.reserved_zeros("reserved bytes of the token header", 4)?;
        Ok(r)
    }

    /// Read `n` reserved bytes and require them to be zero.
    pub fn reserved_zeros(&mut self, field: &'static str, n: usize) -> Result<()> {
        let offset = self.offset();
        let bytes = self.bytes(field, n)?;
        if let Some(pos) = bytes.iter().position(|&b| b != 0) {
            return Err(FormatError::UnexpectedByte {
                structure: self.structure,
                field,
                offset: offset.saturating_add(pos),
                expected: 0,
                found: bytes.get(pos).copied().unwrap_or(0),
            });
        }
        Ok(())
    }

    /// A reader over the next `n` bytes, reporting absolute offsets.
    pub fn sub(&mut self, field: &'static str, n: usize) -> Result<Reader<'a>> {
        let base = self.offset();
        let buf = self.bytes(field, n)?;
        Ok(Reader {
            structure: self.structure,
            buf,
            pos: 0,
            base,
        })
    }

    /// Every byte not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        out
    }

    /// Require that every byte was read.
    pub fn finish(self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(FormatError::TrailingBytes {
                structure: self.structure,
                offset: self.offset(),
                count: self.remaining(),
            });
        }
        Ok(())
    }

    /// An [`FormatError::Invalid`] at `offset` of this reader's structure.
    pub fn invalid(
        &self,
        field: &'static str,
        offset: usize,
        reason: impl Into<String>,
    ) -> FormatError {
        FormatError::Invalid {
            structure: self.structure,
            field,
            offset,
            reason: reason.into(),
        }
    }

    /// Read one subsection: id, version X'00', 2-byte length counting the whole
    /// subsection. The returned body reader covers the bytes after the head.
    pub fn tlv(&mut self) -> Result<Tlv<'a>> {
        let offset = self.offset();
        let remaining = self.remaining();
        if remaining < TLV_HEAD_LEN {
            return Err(FormatError::Truncated {
                structure: self.structure,
                field: "subsection head",
                offset,
                needed: TLV_HEAD_LEN,
                remaining,
            });
        }
        let id = self.u8("subsection identifier")?;
        self.expect_u8("subsection version", ids::VERSION)?;
        let claimed = usize::from(self.u16("subsection length")?);
        let Some(body_len) = claimed.checked_sub(TLV_HEAD_LEN) else {
            return Err(FormatError::Invalid {
                structure: self.structure,
                field: "subsection length",
                offset: offset.saturating_add(2),
                reason: format!(
                    "X'{id:02X}' subsection claims {claimed} bytes, fewer than its own {TLV_HEAD_LEN}-byte head"
                ),
            });
        };
        if body_len > self.remaining() {
            return Err(FormatError::SubsectionOverrun {
                structure: self.structure,
                id,
                offset,
                claimed,
                remaining,
            });
        }
        let body = self.sub("subsection body", body_len)?;
        Ok(Tlv { id, offset, body })
    }
}

/// Appends big-endian fields to a buffer that is zeroized when dropped.
#[derive(Default)]
pub struct Writer {
    buf: Zeroizing<Vec<u8>>,
}

/// Where a subsection started, returned by [`Writer::begin_tlv`].
#[derive(Debug, Clone, Copy)]
#[must_use = "a subsection must be closed with Writer::end_tlv"]
pub struct TlvMark {
    start: usize,
    id: u8,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Writer({} bytes)", self.buf.len())
    }
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that will not reallocate below `capacity` bytes (reallocation would leave
    /// an unzeroized copy behind).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Zeroizing::new(Vec::with_capacity(capacity)),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Write a 2-byte length, refusing values above 65535.
    pub fn u16_len(
        &mut self,
        structure: &'static str,
        field: &'static str,
        len: usize,
    ) -> Result<()> {
        let v = u16::try_from(len).map_err(|_| FormatError::Unencodable {
            structure,
            field,
            reason: format!("{len} does not fit a 2-byte length"),
        })?;
        self.u16(v);
        Ok(())
    }

    /// Start a subsection: id, version X'00', and a length filled in by [`Writer::end_tlv`].
    pub fn begin_tlv(&mut self, id: u8) -> TlvMark {
        let start = self.buf.len();
        self.u8(id);
        self.u8(ids::VERSION);
        self.u16(0);
        TlvMark { start, id }
    }

    /// Close a subsection, writing its length (head included).
    pub fn end_tlv(&mut self, structure: &'static str, mark: TlvMark) -> Result<()> {
        let len = self.buf.len().saturating_sub(mark.start);
        let v = u16::try_from(len).map_err(|_| FormatError::Unencodable {
            structure,
            field: "subsection length",
            reason: format!(
                "the X'{:02X}' subsection would be {len} bytes, more than 65535",
                mark.id
            ),
        })?;
        self.patch_u16(mark.start.saturating_add(2), v);
        Ok(())
    }

    /// Overwrite the 2-byte length at `at` with `len`, refusing values above 65535.
    pub fn patch_len16(
        &mut self,
        structure: &'static str,
        field: &'static str,
        at: usize,
        len: usize,
    ) -> Result<()> {
        let v = u16::try_from(len).map_err(|_| {
            FormatError::unencodable(
                structure,
                field,
                format!("{len} bytes do not fit a 2-byte length"),
            )
        })?;
        self.patch_u16(at, v);
        Ok(())
    }

    /// Overwrite two bytes at `at` (which must already have been written).
    pub fn patch_u16(&mut self, at: usize, v: u16) {
        if let Some(slot) = at.checked_add(2).and_then(|end| self.buf.get_mut(at..end)) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// The bytes, for structures that hold no secret.
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut *self.buf)
    }

    /// The bytes, still zeroized on drop.
    pub fn into_zeroizing(mut self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(std::mem::take(&mut *self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_reports_truncation() {
        let mut r = Reader::new("test", &[0x12, 0x34, 0x56, 0x78, 0x9A]);
        assert_eq!(r.u16("a").unwrap(), 0x1234);
        assert_eq!(r.offset(), 2);
        let err = r.u32("b").unwrap_err();
        assert_eq!(
            err,
            FormatError::Truncated {
                structure: "test",
                field: "b",
                offset: 2,
                needed: 4,
                remaining: 3
            }
        );
        assert_eq!(r.u8("c").unwrap(), 0x56);
    }

    #[test]
    fn tlv_overrun_message_names_offset_and_lengths() {
        // X'41', version 00, length 300 (X'012C'), then only 116 more bytes: 120 from the
        // subsection start.
        let mut bytes = vec![0u8; 4];
        bytes.extend_from_slice(&[0x41, 0x00, 0x01, 0x2C]);
        bytes.extend_from_slice(&[0u8; 116]);
        let mut r = Reader::new("certificate section", &bytes);
        r.bytes("head", 4).unwrap();
        let err = r.tlv().unwrap_err();
        assert_eq!(
            err.to_string(),
            "certificate section: X'41' subsection at offset 4 claims 300 bytes, only 120 remain"
        );
    }

    #[test]
    fn tlv_length_below_head_is_refused() {
        let mut r = Reader::new("t", &[0x41, 0x00, 0x00, 0x03]);
        assert!(matches!(
            r.tlv(),
            Err(FormatError::Invalid { offset: 2, .. })
        ));
    }

    #[test]
    fn nested_reader_reports_absolute_offsets() {
        let bytes = [0u8, 0, 0x45, 0x00, 0x00, 0x06, 0xAA, 0xBB];
        let mut r = Reader::new("t", &bytes);
        r.bytes("x", 2).unwrap();
        let mut tlv = r.tlv().unwrap();
        assert_eq!(tlv.offset, 2);
        assert_eq!(tlv.body.offset(), 6);
        tlv.body.u8("a").unwrap();
        let err = tlv.body.u16("b").unwrap_err();
        assert!(matches!(err, FormatError::Truncated { offset: 7, .. }));
    }

    #[test]
    fn writer_closes_subsections() {
        let mut w = Writer::new();
        let m = w.begin_tlv(0x50);
        w.bytes(b"abc");
        w.end_tlv("t", m).unwrap();
        assert_eq!(w.into_vec(), vec![0x50, 0x00, 0x00, 0x07, b'a', b'b', b'c']);
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        let mut r = Reader::new("t", &[0, 0, 7]);
        let err = r.reserved_zeros("reserved", 3).unwrap_err();
        assert!(matches!(
            err,
            FormatError::UnexpectedByte {
                offset: 2,
                found: 7,
                ..
            }
        ));
    }
}
