//! One master key's share tables, per index (STATMOFN): how a card starts them, moves the
//! generation state at OBTAIN, and reports the reception state of what it received.

use crate::rules::statmofn::ROW_LEN;
use crate::status::{GenerationState, ReceptionState, ShareTables};
use crate::types::{CloneableKind, MofN, ShareIndex};

fn position(index: ShareIndex) -> usize {
    usize::from(index.get() - 1)
}

/// The generation row after SET-MOFN or SET: indices 1..=n can be generated, the rest
/// cannot (all cannot without m-of-n).
pub fn fresh_generation(m_of_n: Option<MofN>) -> [GenerationState; ROW_LEN] {
    let n = m_of_n.map(|mn| mn.n()).unwrap_or(0);
    std::array::from_fn(|i| {
        if i < usize::from(n) {
            GenerationState::Can
        } else {
            GenerationState::Cannot
        }
    })
}

/// What OBTAIN of a share does to its index's generation state: distributed once the
/// first time, more than once after that.
pub fn after_distribution(state: GenerationState) -> GenerationState {
    match state {
        GenerationState::DistributedOnce | GenerationState::DistributedMore => {
            GenerationState::DistributedMore
        }
        GenerationState::Cannot | GenerationState::Can | GenerationState::Generated => {
            GenerationState::DistributedOnce
        }
    }
}

/// [`after_distribution`] applied to `index` of `row`; true when the row changed.
pub fn distribute(row: &mut [GenerationState; ROW_LEN], index: ShareIndex) -> bool {
    let slot = &mut row[position(index)];
    let next = after_distribution(*slot);
    let changed = next != *slot;
    *slot = next;
    changed
}

/// The reception row: an index received more than once is 4, received once 3, not
/// received but within n 1, beyond n (or without m-of-n) 0.
pub fn reception(
    m_of_n: Option<MofN>,
    received: impl IntoIterator<Item = ShareIndex>,
    received_more: impl IntoIterator<Item = ShareIndex>,
) -> [ReceptionState; ROW_LEN] {
    let n = m_of_n.map(|mn| mn.n()).unwrap_or(0);
    let mut row: [ReceptionState; ROW_LEN] = std::array::from_fn(|i| {
        if i < usize::from(n) {
            ReceptionState::Can
        } else {
            ReceptionState::Cannot
        }
    });
    for index in received {
        row[position(index)] = ReceptionState::Received;
    }
    for index in received_more {
        row[position(index)] = ReceptionState::ReceivedMore;
    }
    row
}

/// One master key's tables as a node reports them.
pub fn share_tables(
    kind: CloneableKind,
    generation: [GenerationState; ROW_LEN],
    m_of_n: Option<MofN>,
    received: impl IntoIterator<Item = ShareIndex>,
    received_more: impl IntoIterator<Item = ShareIndex>,
) -> ShareTables {
    ShareTables {
        kind,
        generation,
        reception: reception(m_of_n, received, received_more),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test_values::{idx, mofn};

    #[test]
    fn a_fresh_row_follows_n() {
        let row = fresh_generation(Some(mofn(3, 5)));
        assert_eq!(
            &crate::rules::statmofn::generation_digits(&row),
            b"111110000000000"
        );
        assert_eq!(fresh_generation(None), [GenerationState::Cannot; ROW_LEN]);
        let all = fresh_generation(Some(mofn(1, 15)));
        assert_eq!(all, [GenerationState::Can; ROW_LEN]);
    }

    #[test]
    fn obtain_marks_once_then_more() {
        let mut row = fresh_generation(Some(mofn(2, 3)));
        assert!(distribute(&mut row, idx(2)));
        assert_eq!(row[1], GenerationState::DistributedOnce);
        assert!(distribute(&mut row, idx(2)));
        assert_eq!(row[1], GenerationState::DistributedMore);
        assert!(!distribute(&mut row, idx(2)), "4 stays 4");
        assert_eq!(row[1], GenerationState::DistributedMore);
        assert_eq!(row[0], GenerationState::Can, "other indices untouched");
        assert_eq!(
            after_distribution(GenerationState::Generated),
            GenerationState::DistributedOnce
        );
    }

    #[test]
    fn reception_marks_received_and_more_within_n() {
        let row = reception(Some(mofn(2, 4)), [idx(1), idx(3)], [idx(3)]);
        assert_eq!(
            &crate::rules::statmofn::reception_digits(&row),
            b"314100000000000"
        );
        assert_eq!(reception(None, [], []), [ReceptionState::Cannot; ROW_LEN]);
        let t = share_tables(
            CloneableKind::Asym,
            fresh_generation(None),
            Some(mofn(1, 1)),
            [idx(1)],
            [],
        );
        assert_eq!(t.kind, CloneableKind::Asym);
        assert_eq!(t.reception_of(idx(1)), ReceptionState::Received);
        assert_eq!(t.received(), vec![idx(1)]);
    }
}
