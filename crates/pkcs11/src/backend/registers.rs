//! The master-key registers: status, SET, CLEAR NEW, a random key, and the objects that
//! hold a register's value.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use mkclone_backend::{
    Applied, BackendError, CloneableKind, CurrentState, Identity, MofN, NewState, NodeStatus,
    Operation, RegisterStatus, Result, VerificationPattern,
};
use mkclone_formats::mkvp;
use zeroize::Zeroize;

use super::{Pkcs11Backend, attribute_bytes};
use crate::objects::{APPLICATION, Managed, ObjId, PatternObject, TableObject};
use crate::templates::Made;

impl Pkcs11Backend {
    pub(super) fn status_internal(&mut self) -> Result<NodeStatus> {
        let op = Operation::Status;
        // Every object against its template: a change made since open shows here.
        self.check_all().map_err(|e| self.check_error(op, e))?;
        let eid = self.eid(op)?;
        let mut registers = Vec::new();
        for kind in CloneableKind::ALL {
            let regs = *self.map.registers(kind);
            let mut pattern_of = |id: Option<ObjId>| -> Result<Vec<VerificationPattern>> {
                match id {
                    Some(id) => Ok(vec![self.register_pattern(op, kind, id)?.1]),
                    None => Ok(Vec::new()),
                }
            };
            let new_patterns = pattern_of(regs.new)?;
            let current_patterns = pattern_of(regs.current)?;
            let old_patterns = pattern_of(regs.old)?;
            registers.push(RegisterStatus {
                kind: kind.kind(),
                new: if regs.new.is_some() {
                    NewState::Full
                } else {
                    NewState::Empty
                },
                current: if regs.current.is_some() {
                    CurrentState::Valid
                } else {
                    CurrentState::Invalid
                },
                old: if regs.old.is_some() {
                    CurrentState::Valid
                } else {
                    CurrentState::Invalid
                },
                new_patterns,
                current_patterns,
                old_patterns,
            });
        }
        Ok(NodeStatus {
            identity: Identity {
                serial: self.serial.clone(),
                eid,
            },
            registers,
        })
    }

    /// A register's pattern, cross-checked against its key object: the key must exist and
    /// be the one its pattern object was recorded for, which is decided by the SHA-1-method
    /// pattern computed inside the token (C_DigestKey) on every read, never by the record
    /// alone. The 3-byte `CKA_CHECK_VALUE` cannot decide it: a user-PIN holder finds a
    /// triple-DES key with a given check value in about 2^24 trials offline, or rewrites the
    /// pattern object with their own key's check value beside the genuine pattern; with
    /// either, status would report the recorded pattern for a register holding their key.
    /// Where the token gives a check value and one was recorded they are compared too,
    /// first (a cheap, weaker check that names the usual replacement). A token that gives
    /// none or an empty one (opencryptoki 3.8.1; 3.27 for a created triple-DES key) is
    /// checked by the pattern alone, so no token's check-value habits can make a sound
    /// register look damaged, and a key object replaced outside mkclone is noticed on every
    /// token.
    ///
    /// A token that cannot digest the key (C_DigestKey refused, e.g.
    /// `CKR_FUNCTION_NOT_SUPPORTED` or `CKR_KEY_INDIGESTIBLE`) fails closed: the call's
    /// error is returned and no pattern is reported or used (`pattern_in_token`).
    pub(super) fn register_pattern(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        id: ObjId,
    ) -> Result<(ObjectHandle, VerificationPattern)> {
        let recorded: PatternObject = self.read_managed(op, Managed::Pattern, id)?;
        let key = self.managed_key(op, Managed::MasterKey, id)?;
        if recorded.kind != kind {
            return Err(self.corrupt(
                op,
                format!(
                    "{} belongs to the {}",
                    Managed::Pattern.label(id),
                    recorded.kind
                ),
            ));
        }
        let actual = self.check_value(op, key)?;
        if !recorded.check_value.is_empty() && !actual.is_empty() && actual != recorded.check_value
        {
            return Err(self.corrupt(
                op,
                format!(
                    "the {kind} register key {} has check value {} but its pattern object records {}: \
                     the key object was replaced outside mkclone",
                    Managed::MasterKey.label(id),
                    hex::encode_upper(&actual),
                    hex::encode_upper(&recorded.check_value)
                ),
            ));
        }
        let in_token = self.pattern_in_token(op, key)?;
        if in_token != recorded.pattern {
            return Err(self.corrupt(
                op,
                format!(
                    "the {kind} register key {} has pattern {} (computed in the token) but its \
                     pattern object records {}: the key object was replaced outside mkclone",
                    Managed::MasterKey.label(id),
                    in_token,
                    recorded.pattern
                ),
            ));
        }
        // The pattern of the key the register holds (equal to the record here).
        Ok((key, in_token))
    }

    /// The SHA-1-method pattern of the triple-DES key `key`, computed inside the token
    /// (C_DigestKey: SHA-1 over X'01' and the key value; the key never reaches the host).
    /// A refusal by the token is the call's error (`device`: it names C_DigestKey and the
    /// return value), never a pattern taken from elsewhere.
    pub(super) fn pattern_in_token(
        &mut self,
        op: Operation,
        key: ObjectHandle,
    ) -> Result<VerificationPattern> {
        let digest = self
            .token
            .digest_with_key(&Mechanism::Sha1, &[0x01], key)
            .map_err(|e| self.device(op, e))?;
        digest
            .get(..8)
            .and_then(|p| {
                VerificationPattern::new(mkclone_backend::PatternAlgorithm::Sha1Method, p).ok()
            })
            .ok_or_else(|| self.corrupt(op, "the token's SHA-1 digest is short"))
    }

    /// The template of master-key register `id`'s key object (its value given or
    /// generated): `Made::MasterKey`, its label and id.
    fn register_key_template(&self, id: ObjId) -> Vec<Attribute> {
        let mut template = Made::MasterKey.attributes(&self.support);
        template.extend([
            Attribute::Label(Managed::MasterKey.label(id).into_bytes()),
            Attribute::Id(id.bytes().to_vec()),
        ]);
        template
    }

    /// Create a master-key register object holding `key`, and its pattern companion.
    pub(super) fn create_register(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        key: &[u8; 24],
    ) -> Result<ObjId> {
        let id = ObjId::random();
        let mut template = self.register_key_template(id);
        template.push(Attribute::Value(key.to_vec()));
        let handle = self
            .token
            .create(template)
            .map_err(|e| self.device(op, e))?;
        // What the token says, checked against what it must say, is recorded: never a value
        // the token does not give (an empty check value is recorded empty, and the pattern
        // then stands in for it).
        let actual = self.check_value(op, handle)?;
        if !actual.is_empty() && actual != des3_check_value(key) {
            return Err(self.corrupt(
                op,
                "the token computes another CKA_CHECK_VALUE for the new register than EDE3(key, 0)",
            ));
        }
        let pattern = mkvp::sha1_method(key);
        self.create_pattern(op, kind, id, pattern, actual)?;
        Ok(id)
    }

    /// The node's m-of-n and `kind`'s share table in force.
    fn table_in_force(
        &mut self,
        op: Operation,
        kind: CloneableKind,
    ) -> Result<(Option<MofN>, TableObject)> {
        let m_of_n = self.m_of_n(op)?.map(|p| p.m_of_n);
        let table = self.table(op, kind, m_of_n)?;
        Ok((m_of_n, table))
    }

    /// `key`'s `CKA_CHECK_VALUE` (empty where the token gives none).
    fn check_value(&mut self, op: Operation, key: ObjectHandle) -> Result<Vec<u8>> {
        let attrs = self
            .token
            .attributes(key, &[AttributeType::CheckValue])
            .map_err(|e| self.device(op, e))?;
        Ok(attribute_bytes(attrs, AttributeType::CheckValue).unwrap_or_default())
    }

    /// Record register `id`'s pattern and check value: the companion `status` reads and
    /// cross-checks.
    fn create_pattern(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        id: ObjId,
        pattern: VerificationPattern,
        check_value: Vec<u8>,
    ) -> Result<()> {
        let companion = PatternObject {
            kind,
            pattern,
            check_value,
        };
        self.create_data(op, APPLICATION, &Managed::Pattern.label(id), &companion)
            .map(drop)
    }

    pub(super) fn set_master_key_internal(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        let op = Operation::SetMasterKey;
        let regs = *self.map.registers(kind);
        let new = regs.new.ok_or(BackendError::NewNotFull { kind })?;
        let (m_of_n, table) = self.table_in_force(op, kind)?;
        let mut garbage = Self::table_objects(regs.table, &table);
        if let Some(old) = regs.old {
            garbage.extend(Self::register_objects(old));
        }
        self.commit_as_current(op, kind, regs, new, m_of_n, garbage)
    }

    pub(super) fn clear_new_internal(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        let op = Operation::ClearNew;
        let regs = *self.map.registers(kind);
        let (_, table) = self.table_in_force(op, kind)?;
        if regs.new.is_none() && table.received.is_empty() {
            return Ok(Applied::AlreadyDone(()));
        }
        let mut garbage = Self::table_objects(regs.table, &table);
        if let Some(new) = regs.new {
            garbage.extend(Self::register_objects(new));
        }
        let cleared = TableObject {
            received: Vec::new(),
            received_more: Vec::new(),
            ..table
        };
        let mut map = self.map.clone();
        map.registers_mut(kind).new = None;
        self.commit_table(op, kind, &cleared, map, garbage)?;
        Ok(Applied::Done(()))
    }

    pub(super) fn load_random_master_key_internal(
        &mut self,
        kind: CloneableKind,
    ) -> Result<Applied<()>> {
        let op = Operation::LoadRandomMasterKey;
        let regs = *self.map.registers(kind);
        let (m_of_n, table) = self.table_in_force(op, kind)?;
        let mut garbage = Self::table_objects(regs.table, &table);
        for id in [regs.new, regs.old].into_iter().flatten() {
            garbage.extend(Self::register_objects(id));
        }
        // Generated inside the token: this key never reaches the host here. Its pattern
        // is computed inside too (C_DigestKey).
        let id = ObjId::random();
        let key = self
            .token
            .generate_key(&Mechanism::Des3KeyGen, &self.register_key_template(id))
            .map_err(|e| self.device(op, e))?;
        let check_value = self.check_value(op, key)?;
        let pattern = self.pattern_in_token(op, key)?;
        self.create_pattern(op, kind, id, pattern, check_value)?;
        self.commit_as_current(op, kind, regs, id, m_of_n, garbage)
    }
}

/// `CKA_CHECK_VALUE` of a triple-DES key: the first 3 bytes of EDE3(key, 0^8).
fn des3_check_value(key: &[u8; 24]) -> [u8; 3] {
    use des::cipher::{BlockCipherEncrypt, KeyInit};
    let mut block = des::cipher::Block::<des::TdesEde3>::default();
    if let Ok(cipher) = des::TdesEde3::new_from_slice(key) {
        cipher.encrypt_block(&mut block);
    }
    let out = [block[0], block[1], block[2]];
    block.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_is_ede3_of_zero() {
        // Key and expected value from SoftHSM 2.6.1 (CKA_CHECK_VALUE of a created key),
        // confirmed with `openssl enc -des-ede3 -nopad` over 8 zero bytes.
        let key: [u8; 24] = std::array::from_fn(|i| {
            let h = (i as u8).wrapping_mul(37) & 0xfe;
            h | u8::from(h.count_ones().is_multiple_of(2))
        });
        assert_eq!(des3_check_value(&key), [251, 47, 147]);
    }
}
