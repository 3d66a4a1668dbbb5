//! STATMOFN's encoding: each share index's generation and reception state is one ASCII
//! digit (CSUACFQ STATMOFN; `reference/cca-cloning.md`). Generation: 0 cannot be
//! generated, 1 can be, 2 generated, 3 distributed once, 4 distributed more than once.
//! Reception: 0 cannot be received, 1 can be, 3 received, 4 received more than once
//! (there is no reception state 2).
//!
//! The simulator's card file and the PKCS#11 token keep the generation row in these
//! digits, and the `st` reply carries both rows in them.

use crate::error::DomainError;
use crate::status::{GenerationState, ReceptionState};
use crate::types::MAX_SHARES;

/// Share indices per row: one per possible share.
pub const ROW_LEN: usize = MAX_SHARES as usize;

const GENERATION: [(u8, GenerationState); 5] = [
    (b'0', GenerationState::Cannot),
    (b'1', GenerationState::Can),
    (b'2', GenerationState::Generated),
    (b'3', GenerationState::DistributedOnce),
    (b'4', GenerationState::DistributedMore),
];

const RECEPTION: [(u8, ReceptionState); 4] = [
    (b'0', ReceptionState::Cannot),
    (b'1', ReceptionState::Can),
    (b'3', ReceptionState::Received),
    (b'4', ReceptionState::ReceivedMore),
];

/// What each digit means, for a person reading the rows (`mkclone status`).
pub const LEGEND: &str = "generated: 0 cannot be, 1 can be, 2 generated, 3 distributed once, \
     4 distributed more than once; received: 0 cannot be, 1 can be, 3 received, 4 received \
     more than once";

fn bad_digit(row: &'static str, digit: u8) -> DomainError {
    DomainError::Structure {
        what: row,
        reason: format!(
            "{} is not a STATMOFN digit of this row",
            if digit.is_ascii_graphic() {
                format!("{:?}", char::from(digit))
            } else {
                format!("byte {digit:#04x}")
            }
        ),
    }
}

/// `state`'s digit in `table`.
fn digit_of<S: PartialEq>(table: &[(u8, S)], state: S) -> u8 {
    table
        .iter()
        .find(|(_, s)| *s == state)
        .map(|(d, _)| *d)
        .unwrap_or(b'0')
}

/// The state `digit` stands for in `table` (`row` names the row, should it not).
fn state_of<S: Copy>(table: &[(u8, S)], digit: u8, row: &'static str) -> Result<S, DomainError> {
    table
        .iter()
        .find(|(d, _)| *d == digit)
        .map(|(_, s)| *s)
        .ok_or_else(|| bad_digit(row, digit))
}

impl GenerationState {
    /// The STATMOFN digit ('0'..='4').
    pub fn digit(self) -> u8 {
        digit_of(&GENERATION, self)
    }

    /// The state a STATMOFN generation digit stands for.
    pub fn from_digit(digit: u8) -> Result<Self, DomainError> {
        state_of(&GENERATION, digit, "STATMOFN generation state")
    }
}

impl ReceptionState {
    /// The STATMOFN digit ('0', '1', '3' or '4').
    pub fn digit(self) -> u8 {
        digit_of(&RECEPTION, self)
    }

    /// The state a STATMOFN reception digit stands for.
    pub fn from_digit(digit: u8) -> Result<Self, DomainError> {
        state_of(&RECEPTION, digit, "STATMOFN reception state")
    }
}

/// A generation row as its 15 digits.
pub fn generation_digits(row: &[GenerationState; ROW_LEN]) -> [u8; ROW_LEN] {
    row.map(GenerationState::digit)
}

/// A generation row from its digits: exactly 15, each '0'..='4'.
pub fn parse_generation(digits: &[u8]) -> Result<[GenerationState; ROW_LEN], DomainError> {
    parse_row(
        digits,
        "STATMOFN generation row",
        GenerationState::from_digit,
    )
}

/// A reception row as its 15 digits.
pub fn reception_digits(row: &[ReceptionState; ROW_LEN]) -> [u8; ROW_LEN] {
    row.map(ReceptionState::digit)
}

/// A reception row from its digits: exactly 15, each '0', '1', '3' or '4'.
pub fn parse_reception(digits: &[u8]) -> Result<[ReceptionState; ROW_LEN], DomainError> {
    parse_row(digits, "STATMOFN reception row", ReceptionState::from_digit)
}

fn parse_row<S: Copy>(
    digits: &[u8],
    what: &'static str,
    state: impl Fn(u8) -> Result<S, DomainError>,
) -> Result<[S; ROW_LEN], DomainError> {
    let digits: &[u8; ROW_LEN] = digits.try_into().map_err(|_| DomainError::Structure {
        what,
        reason: format!("{} digits, expected {ROW_LEN}", digits.len()),
    })?;
    let mut row = Vec::with_capacity(ROW_LEN);
    for d in digits {
        row.push(state(*d)?);
    }
    row.try_into().map_err(|_| DomainError::Structure {
        what,
        reason: format!("expected {ROW_LEN} states"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_names_every_digit_of_both_rows_once() {
        let (generated, received) = LEGEND.split_once("; received: ").unwrap();
        for (row, table) in [
            (generated, GENERATION.map(|(d, _)| d).to_vec()),
            (received, RECEPTION.map(|(d, _)| d).to_vec()),
        ] {
            // Each digit stands after a space (or a row's start) and before one.
            let row = format!(" {row}");
            for d in b'0'..=b'9' {
                let named = row.matches(&format!(" {} ", char::from(d))).count();
                assert_eq!(named, usize::from(table.contains(&d)), "{d} in {row:?}");
            }
        }
    }

    const GENERATION_STATES: [GenerationState; 5] = [
        GenerationState::Cannot,
        GenerationState::Can,
        GenerationState::Generated,
        GenerationState::DistributedOnce,
        GenerationState::DistributedMore,
    ];
    const RECEPTION_STATES: [ReceptionState; 4] = [
        ReceptionState::Cannot,
        ReceptionState::Can,
        ReceptionState::Received,
        ReceptionState::ReceivedMore,
    ];

    #[test]
    fn digits_are_statmofns() {
        assert_eq!(
            GENERATION_STATES.map(GenerationState::digit),
            *b"01234",
            "generation: 0 cannot, 1 can, 2 generated, 3 once, 4 more"
        );
        assert_eq!(
            RECEPTION_STATES.map(ReceptionState::digit),
            *b"0134",
            "reception: 0 cannot, 1 can, 3 received, 4 more (no 2)"
        );
    }

    #[test]
    fn every_state_round_trips_through_its_digit() {
        for s in GENERATION_STATES {
            assert_eq!(GenerationState::from_digit(s.digit()).unwrap(), s);
        }
        for s in RECEPTION_STATES {
            assert_eq!(ReceptionState::from_digit(s.digit()).unwrap(), s);
        }
    }

    #[test]
    fn every_other_byte_is_refused() {
        for b in 0..=u8::MAX {
            assert_eq!(
                GenerationState::from_digit(b).is_ok(),
                (b'0'..=b'4').contains(&b),
                "generation {b:#04x}"
            );
            assert_eq!(
                ReceptionState::from_digit(b).is_ok(),
                matches!(b, b'0' | b'1' | b'3' | b'4'),
                "reception {b:#04x}"
            );
        }
        let err = ReceptionState::from_digit(b'2').unwrap_err().to_string();
        assert!(err.contains("'2'") && err.contains("reception"), "{err}");
        let err = GenerationState::from_digit(0xff).unwrap_err().to_string();
        assert!(err.contains("0xff"), "{err}");
    }

    #[test]
    fn rows_round_trip_and_refuse_bad_lengths_and_digits() {
        let generation = *b"123401234000000";
        let row = parse_generation(&generation).unwrap();
        assert_eq!(row[0], GenerationState::Can);
        assert_eq!(row[3], GenerationState::DistributedMore);
        assert_eq!(generation_digits(&row), generation);

        let reception = *b"134013400000000";
        let row = parse_reception(&reception).unwrap();
        assert_eq!(row[2], ReceptionState::ReceivedMore);
        assert_eq!(reception_digits(&row), reception);

        assert!(parse_generation(b"11110000000000").is_err(), "14 digits");
        assert!(parse_generation(b"1111000000000000").is_err(), "16 digits");
        assert!(parse_generation(b"111100000000005").is_err(), "digit 5");
        assert!(parse_generation(b"11110000000000 ").is_err(), "a blank");
        assert!(parse_reception(b"112000000000000").is_err(), "reception 2");
        let err = parse_generation(b"1").unwrap_err().to_string();
        assert!(err.contains("1 digits, expected 15"), "{err}");
    }
}
