//! Shamir's m-of-n secret sharing over a 24-byte key, byte-wise in GF(2^8) with the AES
//! polynomial x^8 + x^4 + x^3 + x + 1 (0x11B).
//!
//! Byte j of share i is `p_j(i)`, where `p_j(x) = key[j] + c1[j]·x + … + c(m-1)[j]·x^(m-1)`.
//! Any m shares give the key back by Lagrange interpolation at 0; m-1 shares say nothing
//! about it.
//!
//! Written here rather than taken from a crate because the card keeps the polynomial's
//! coefficients (so that share i is the same every time it is obtained; CCA counts
//! re-distribution in STATMOFN), and the crates we looked at draw coefficients internally.
//! The caller supplies them ([`Polynomial::new`]).

use std::fmt;

use mkclone_backend::ShareIndex;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::gf256;
use crate::secret::{Key24, ShareValue};

/// Largest n (and so m) CCA supports: CSUACFC SET-MOFN, 1 <= m <= n <= 15.
pub const MAX_SHARES: u8 = 15;

/// Refusals of the sharing scheme.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShamirError {
    #[error("no shares were given; at least m are needed")]
    NoShares,
    #[error("share index {index} was given twice; each index counts once")]
    DuplicateIndex { index: ShareIndex },
    #[error(
        "{count} coefficient rows make a threshold of {count}+1; the largest threshold is {MAX_SHARES}"
    )]
    TooManyCoefficients { count: usize },
}

/// The sharing polynomial of one master key: the key and m-1 coefficient rows.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Polynomial {
    secret: [u8; 24],
    coefficients: Vec<[u8; 24]>,
}

impl Polynomial {
    /// `coefficients` are rows c1 … c(m-1) (m-1 of them, 0 to 14); they should be drawn
    /// uniformly at random once and kept, so that every share of this key is stable.
    pub fn new(secret: &[u8; 24], coefficients: Vec<[u8; 24]>) -> Result<Self, ShamirError> {
        if coefficients.len() >= usize::from(MAX_SHARES) {
            let count = coefficients.len();
            let mut coefficients = coefficients;
            coefficients.zeroize();
            return Err(ShamirError::TooManyCoefficients { count });
        }
        Ok(Self {
            secret: *secret,
            coefficients,
        })
    }

    /// m: how many shares rebuild the key.
    pub fn threshold(&self) -> u8 {
        u8::try_from(self.coefficients.len().saturating_add(1)).unwrap_or(MAX_SHARES)
    }

    /// Share `index`: the polynomial evaluated at x = index (Horner's rule per byte).
    pub fn share(&self, index: ShareIndex) -> ShareValue {
        let x = index.get();
        let mut out = ShareValue::new([0; 24]);
        for (j, (y, s)) in out.as_mut().iter_mut().zip(self.secret.iter()).enumerate() {
            let mut acc = 0u8;
            for row in self.coefficients.iter().rev() {
                acc = gf256::add(gf256::mul(acc, x), row.get(j).copied().unwrap_or(0));
            }
            *y = gf256::add(gf256::mul(acc, x), *s);
        }
        out
    }
}

impl fmt::Debug for Polynomial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Polynomial(threshold {}, <redacted>)", self.threshold())
    }
}

/// Rebuild the key from shares by Lagrange interpolation at x = 0.
///
/// Needs at least m distinct shares of one polynomial; with fewer, or with shares of
/// different polynomials, the result is some other value (nothing here can tell): the
/// caller checks the result's verification pattern.
pub fn combine(shares: &[(ShareIndex, ShareValue)]) -> Result<Key24, ShamirError> {
    if shares.is_empty() {
        return Err(ShamirError::NoShares);
    }
    for (i, (a, _)) in shares.iter().enumerate() {
        if shares.iter().skip(i.saturating_add(1)).any(|(b, _)| a == b) {
            return Err(ShamirError::DuplicateIndex { index: *a });
        }
    }
    let mut key = Key24::zero();
    for (i, (xi, yi)) in shares.iter().enumerate() {
        // Lagrange basis at 0: prod over j != i of x_j / (x_j - x_i); subtraction is XOR.
        let mut basis = 1u8;
        for (j, (xj, _)) in shares.iter().enumerate() {
            if i != j {
                basis = gf256::mul(basis, gf256::div(xj.get(), gf256::add(xj.get(), xi.get())));
            }
        }
        for (byte, y) in key.as_mut().iter_mut().zip(yi.as_bytes().iter()) {
            *byte = gf256::add(*byte, gf256::mul(basis, *y));
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn idx(i: u8) -> ShareIndex {
        ShareIndex::new(i).unwrap()
    }

    #[test]
    fn one_of_n_shares_are_the_key() {
        let p = Polynomial::new(&[0x42; 24], vec![]).unwrap();
        assert_eq!(p.threshold(), 1);
        for i in 1..=15 {
            assert_eq!(p.share(idx(i)).as_bytes(), &[0x42; 24]);
        }
    }

    #[test]
    fn known_two_of_n_values() {
        // p(x) = 0x01 + 0x02·x: p(1) = 0x03, p(2) = 0x01 ^ {02}•{02} = 0x01 ^ 0x04 = 0x05,
        // p(3) = 0x01 ^ {02}•{03} = 0x01 ^ 0x06 = 0x07.
        let p = Polynomial::new(&[0x01; 24], vec![[0x02; 24]]).unwrap();
        assert_eq!(p.share(idx(1)).as_bytes(), &[0x03; 24]);
        assert_eq!(p.share(idx(2)).as_bytes(), &[0x05; 24]);
        assert_eq!(p.share(idx(3)).as_bytes(), &[0x07; 24]);
        let key = combine(&[(idx(3), p.share(idx(3))), (idx(2), p.share(idx(2)))]).unwrap();
        assert_eq!(key.as_bytes(), &[0x01; 24]);
    }

    #[test]
    fn refusals() {
        assert_eq!(combine(&[]), Err(ShamirError::NoShares));
        let s = ShareValue::new([1; 24]);
        assert_eq!(
            combine(&[(idx(2), s.clone()), (idx(5), s.clone()), (idx(2), s)]),
            Err(ShamirError::DuplicateIndex { index: idx(2) })
        );
        assert!(Polynomial::new(&[0; 24], vec![[0; 24]; 14]).is_ok());
        assert_eq!(
            Polynomial::new(&[0; 24], vec![[0; 24]; 15]).unwrap_err(),
            ShamirError::TooManyCoefficients { count: 15 }
        );
    }

    #[test]
    fn debug_is_redacted() {
        let p = Polynomial::new(&[0x77; 24], vec![[0x66; 24]]).unwrap();
        assert_eq!(format!("{p:?}"), "Polynomial(threshold 2, <redacted>)");
    }

    /// Coefficients (low degree first) of prod over xs of (x - x_i) / (0 - x_i): the
    /// polynomial that is 1 at 0 and 0 at every x_i.
    fn vanishing_at(xs: &[u8]) -> Vec<u8> {
        let mut poly = vec![1u8];
        for &xi in xs {
            let scale = gf256::inv(xi); // 1 / (0 - xi) = 1 / xi
            // multiply by (x + xi) · scale
            let mut next = vec![0u8; poly.len() + 1];
            for (d, &c) in poly.iter().enumerate() {
                next[d] ^= gf256::mul(c, gf256::mul(xi, scale));
                next[d + 1] ^= gf256::mul(c, scale);
            }
            poly = next;
        }
        poly
    }

    fn setting() -> impl Strategy<Value = (u8, u8)> {
        (1u8..=15).prop_flat_map(|n| (1u8..=n, Just(n)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_m_of_n_reconstruct_in_any_order(
            secret in any::<[u8; 24]>(),
            rows in proptest::collection::vec(any::<[u8; 24]>(), 14),
            (m, n) in setting(),
            pick in any::<proptest::sample::Index>(),
            extra in 0u8..15,
            order in any::<u64>(),
        ) {
            let p = Polynomial::new(&secret, rows[..usize::from(m - 1)].to_vec()).unwrap();
            // Choose k >= m distinct indices of 1..=n, then shuffle them.
            let k = (m + extra % (n - m + 1)) as usize;
            let mut all: Vec<u8> = (1..=n).collect();
            let start = pick.index(all.len());
            all.rotate_left(start);
            let mut chosen: Vec<u8> = all[..k].to_vec();
            let mut state = order | 1;
            for i in (1..chosen.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                chosen.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let shares: Vec<_> = chosen.iter().map(|&i| (idx(i), p.share(idx(i)))).collect();
            let key = combine(&shares).unwrap();
            prop_assert_eq!(key.as_bytes(), &secret);
        }

        #[test]
        fn m_minus_one_shares_fit_any_secret(
            s1 in any::<[u8; 24]>(),
            s2 in any::<[u8; 24]>(),
            rows in proptest::collection::vec(any::<[u8; 24]>(), 14),
            (m, n) in setting().prop_filter("m >= 2", |(m, _)| *m >= 2),
            start in 0u8..15,
        ) {
            // Information-theoretic hiding, spot check: for the m-1 indices seen, a second
            // polynomial with secret s2 agrees on every one of them. It is
            // p2 = p1 + (s2 - s1) · L, where L is 1 at 0 and 0 at the seen indices.
            let seen: Vec<u8> = (0..m - 1).map(|k| (start + k) % n + 1).collect();
            let rows1 = rows[..usize::from(m - 1)].to_vec();
            let l = vanishing_at(&seen);
            prop_assert_eq!(l.len(), usize::from(m));
            let mut rows2 = rows1.clone();
            for (d, row) in rows2.iter_mut().enumerate() {
                for j in 0..24 {
                    row[j] ^= gf256::mul(s1[j] ^ s2[j], l[d + 1]);
                }
            }
            let p1 = Polynomial::new(&s1, rows1).unwrap();
            let p2 = Polynomial::new(&s2, rows2).unwrap();
            for &i in &seen {
                prop_assert_eq!(p1.share(idx(i)), p2.share(idx(i)));
            }
            // And the full set of m shares still tells them apart when the secrets differ.
            let all: Vec<u8> = (1..=m).collect();
            let k1 = combine(&all.iter().map(|&i| (idx(i), p1.share(idx(i)))).collect::<Vec<_>>()).unwrap();
            let k2 = combine(&all.iter().map(|&i| (idx(i), p2.share(idx(i)))).collect::<Vec<_>>()).unwrap();
            prop_assert_eq!(k1.as_bytes(), &s1);
            prop_assert_eq!(k2.as_bytes(), &s2);
        }

        #[test]
        fn share_i_is_stable(
            secret in any::<[u8; 24]>(),
            rows in proptest::collection::vec(any::<[u8; 24]>(), 0..15),
            i in 1u8..=15,
        ) {
            let a = Polynomial::new(&secret, rows.clone()).unwrap();
            let b = Polynomial::new(&secret, rows).unwrap();
            prop_assert_eq!(a.share(idx(i)), a.share(idx(i)));
            prop_assert_eq!(a.share(idx(i)), b.share(idx(i)));
        }
    }
}
