//! Secret byte strings: zeroized on drop, never shown by `Debug`.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// One 24-byte share of a 24-byte master key (the value Shamir's scheme gives index `i`).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ShareValue([u8; 24]);

impl ShareValue {
    pub const LEN: usize = 24;

    pub fn new(bytes: [u8; 24]) -> Self {
        Self(bytes)
    }

    /// Copy from a slice of exactly 24 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        Some(Self(*bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 24] {
        &self.0
    }

    pub(crate) fn as_mut(&mut self) -> &mut [u8; 24] {
        &mut self.0
    }
}

impl fmt::Debug for ShareValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShareValue(<redacted>)")
    }
}

/// A 24-byte secret key (a master key rebuilt from shares), zeroized on drop and never
/// shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Key24([u8; 24]);

impl Key24 {
    pub fn new(bytes: [u8; 24]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 24] {
        &self.0
    }

    pub(crate) fn as_mut(&mut self) -> &mut [u8; 24] {
        &mut self.0
    }

    pub(crate) fn zero() -> Self {
        Self([0; 24])
    }
}

impl fmt::Debug for Key24 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key24(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = ShareValue::new([0x5A; 24]);
        let text = format!("{s:?}");
        assert_eq!(text, "ShareValue(<redacted>)");
        assert!(!text.contains("5a") && !text.contains("90"));
        assert_eq!(format!("{:?}", Key24::new([7; 24])), "Key24(<redacted>)");
    }
}
