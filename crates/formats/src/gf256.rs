//! Arithmetic in GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11B), as
//! FIPS-197 §4.2 defines it. Branch-free and table-free, so that the time taken does not
//! depend on the (secret) operands.

/// Addition (and subtraction): XOR.
pub(crate) fn add(a: u8, b: u8) -> u8 {
    a ^ b
}

/// Multiplication modulo 0x11B.
pub(crate) fn mul(a: u8, b: u8) -> u8 {
    let mut a = a;
    let mut b = b;
    let mut p = 0u8;
    for _ in 0..8 {
        // Add a when b's low bit is set (mask = 0xFF or 0x00).
        p ^= a & 0u8.wrapping_sub(b & 1);
        // xtime: multiply a by x, reducing by 0x1B when the top bit falls out.
        let carry = a >> 7;
        a = (a << 1) ^ (0x1B & 0u8.wrapping_sub(carry));
        b >>= 1;
    }
    p
}

/// Multiplicative inverse: a^254 (= a^-1 for a != 0); 0 maps to 0.
pub(crate) fn inv(a: u8) -> u8 {
    // 254 = 0b1111_1110: square-and-multiply with a fixed sequence of operations. Each
    // round squares and multiplies by `a`: a^3, a^7, a^15, a^31, a^63, a^127; the last
    // bit (0) only squares.
    let mut x = a;
    for _ in 0..6 {
        x = mul(mul(x, x), a);
    }
    mul(x, x)
}

/// Division a / b (b != 0).
pub(crate) fn div(a: u8, b: u8) -> u8 {
    mul(a, inv(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fips197_section_4_2_examples() {
        // FIPS-197 §4.2: {57} • {83} = {c1}.
        assert_eq!(mul(0x57, 0x83), 0xC1);
        // FIPS-197 §4.2.1: {57} • {13} = {fe}, via the xtime table
        // {57}•{02} = {ae}, •{04} = {47}, •{08} = {8e}, •{10} = {07}.
        assert_eq!(mul(0x57, 0x13), 0xFE);
        assert_eq!(mul(0x57, 0x02), 0xAE);
        assert_eq!(mul(0x57, 0x04), 0x47);
        assert_eq!(mul(0x57, 0x08), 0x8E);
        assert_eq!(mul(0x57, 0x10), 0x07);
    }

    #[test]
    fn every_nonzero_element_has_an_inverse() {
        for a in 1..=255u8 {
            let i = inv(a);
            assert_eq!(mul(a, i), 1, "inverse of {a:#04x}");
            // The inverse is unique.
            assert_eq!((1..=255u8).filter(|&b| mul(a, b) == 1).count(), 1);
        }
        assert_eq!(inv(0), 0);
    }

    #[test]
    fn field_laws_hold_exhaustively_for_small_sample() {
        for a in 0..=255u8 {
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
            for b in [0x01u8, 0x02, 0x53, 0xCA, 0xFF] {
                assert_eq!(mul(a, b), mul(b, a));
                for c in [0x03u8, 0x8F] {
                    assert_eq!(mul(a, add(b, c)), add(mul(a, b), mul(a, c)));
                }
            }
        }
        // {53} and {CA} are inverses (the worked example in Wikipedia, "Finite field arithmetic").
        assert_eq!(mul(0x53, 0xCA), 0x01);
    }
}
