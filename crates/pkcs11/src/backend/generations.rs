//! Generations of the register map and recovery: every change that touches more than one
//! object commits by creating the next map, and opening a token finishes or undoes
//! what a crash interrupted (docs/ARCHITECTURE.md, "Crash-safety protocol").

use std::collections::BTreeSet;

use cryptoki::object::{Attribute, ObjectClass};
use log::{Level, debug, info, warn};
use mkclone_backend::{Applied, CloneableKind, MofN, Operation, Result};

use super::Pkcs11Backend;
use super::officer::EXPORT_LABEL;
use crate::error::Pkcs11Error;
use crate::objects::{
    APPLICATION, Managed, MofNObject, ObjId, RegisterMap, Stored, TableObject, map_label,
    parse_map_label,
};

impl Pkcs11Backend {
    /// Destroy managed objects after a commit. A failure leaves garbage that the next
    /// open removes; only the crash seam is reported (the work stops there).
    fn destroy_garbage(&mut self, op: Operation, garbage: &[(Managed, ObjId)]) -> Result<()> {
        for (kind, id) in garbage {
            let label = kind.label(*id);
            let found = if kind.is_key() {
                self.find_objects(
                    ObjectClass::SECRET_KEY,
                    [Attribute::Label(label.as_bytes().to_vec())],
                )
            } else {
                self.find_data(APPLICATION, &label)
            };
            let stays = format!("{label} stays until the next open");
            let handles = match found {
                Ok(h) => h,
                Err(e) if e.is_stop() => return Err(self.device(op, e)),
                Err(e) => {
                    warn!("pkcs11: {stays}: {}", e.describe());
                    continue;
                }
            };
            for h in handles {
                self.destroy_or_leave(op, h, Level::Warn, &stays)?;
            }
        }
        Ok(())
    }

    /// Make `map` the node's state: create it as the next generation (one
    /// C_CreateObject: the commit), then destroy the previous map and `garbage`.
    pub(super) fn commit(
        &mut self,
        op: Operation,
        mut map: RegisterMap,
        garbage: Vec<(Managed, ObjId)>,
    ) -> Result<()> {
        map.generation = self.map.generation.saturating_add(1);
        let label = map_label(map.generation);
        let handle = self.create_data(op, APPLICATION, &label, &map)?;
        debug!("pkcs11: {:?} committed {label}", self.label);
        let previous = self.map_handle.replace(handle);
        self.map = map;
        if let Some(old) = previous {
            let stays = "the previous register map stays until the next open";
            self.destroy_or_leave(op, old, Level::Warn, stays)?;
        }
        self.destroy_garbage(op, &garbage)
    }

    /// Commit `table` as `kind`'s share table: a new table object, then `map` (the map in
    /// force, or one with other changes too) naming it as the next generation.
    pub(super) fn commit_table(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        table: &TableObject,
        mut map: RegisterMap,
        garbage: Vec<(Managed, ObjId)>,
    ) -> Result<()> {
        let table_id = ObjId::random();
        self.create_data(op, APPLICATION, &Managed::Table.label(table_id), table)?;
        map.registers_mut(kind).table = Some(table_id);
        self.commit(op, map, garbage)
    }

    /// Replace `kind`'s share table by `table`, which keeps the shares the old one held:
    /// only the old table object goes.
    pub(super) fn replace_table(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        table: &TableObject,
    ) -> Result<()> {
        let garbage = Self::table_object(self.map.registers(kind).table);
        self.commit_table(op, kind, table, self.map.clone(), garbage)
    }

    /// The table object `table_id` names, if any.
    pub(super) fn table_object(table_id: Option<ObjId>) -> Vec<(Managed, ObjId)> {
        table_id
            .map(|id| vec![(Managed::Table, id)])
            .unwrap_or_default()
    }

    /// Objects of one register value (the key and its pattern companion).
    pub(super) fn register_objects(id: ObjId) -> [(Managed, ObjId); 2] {
        [(Managed::MasterKey, id), (Managed::Pattern, id)]
    }

    /// The end of SET (and of loading a random key): `current` becomes CURRENT, the old
    /// CURRENT becomes OLD, NEW is empty and the share tables start afresh; one commit.
    pub(super) fn commit_as_current(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        regs: crate::objects::Registers,
        current: ObjId,
        m_of_n: Option<MofN>,
        garbage: Vec<(Managed, ObjId)>,
    ) -> Result<Applied<()>> {
        let mut map = self.map.clone();
        *map.registers_mut(kind) = crate::objects::Registers {
            new: None,
            current: Some(current),
            old: regs.current,
            // `commit_table` names the fresh table.
            table: None,
        };
        self.commit_table(op, kind, &TableObject::fresh(kind, m_of_n), map, garbage)?;
        Ok(Applied::Done(()))
    }

    /// A table, its share objects.
    pub(super) fn table_objects(
        table_id: Option<ObjId>,
        table: &TableObject,
    ) -> Vec<(Managed, ObjId)> {
        let mut out = Self::table_object(table_id);
        for r in &table.received {
            if let Some(s) = r.share {
                out.push((Managed::Share, s));
            }
        }
        out
    }

    /// Find the register map in force (the highest generation), and destroy everything
    /// an interrupted operation left: older maps and managed objects no map references.
    pub(super) fn recover(&mut self) -> Result<(), Pkcs11Error> {
        let data = self
            .find_application(APPLICATION)
            .map_err(|e| self.open_error(e))?;
        let keys = self
            .find_objects(ObjectClass::SECRET_KEY, [])
            .map_err(|e| self.open_error(e))?;
        let mut maps = Vec::new();
        let mut managed = Vec::new();
        for h in data.into_iter().chain(keys) {
            let label = self.token.label(h).map_err(|e| self.open_error(e))?;
            if let Some(generation) = parse_map_label(&label) {
                maps.push((generation, h));
            } else if let Some((kind, id)) = Managed::parse(&label) {
                managed.push((kind, id, h));
            }
        }
        maps.sort_by_key(|(g, _)| *g);
        let token_label = self.label.clone();
        let corrupt = |detail: String| Pkcs11Error::Corrupt {
            label: token_label.clone(),
            detail,
        };
        if let Some((generation, handle)) = maps.pop() {
            let bytes = self.token.value(handle).map_err(|e| self.open_error(e))?;
            let map = RegisterMap::decode(&bytes)
                .map_err(|e| corrupt(format!("{}: {e}", map_label(generation))))?;
            if map.generation != generation {
                return Err(corrupt(format!(
                    "{} says it is generation {}",
                    map_label(generation),
                    map.generation
                )));
            }
            self.map = map;
            self.map_handle = Some(handle);
        }
        let referenced = self.referenced().map_err(|e| corrupt(e.to_string()))?;
        let mut removed = 0usize;
        for (_, handle) in maps {
            self.token.destroy(handle).map_err(|e| self.open_error(e))?;
            removed += 1;
        }
        for (kind, id, handle) in managed {
            if !referenced.contains(&(kind, id)) {
                debug!("pkcs11: removing unreferenced {}", kind.label(id));
                self.token.destroy(handle).map_err(|e| self.open_error(e))?;
                removed += 1;
            }
        }
        // Retained-key halves no companion names (retained.rs).
        removed += self.remove_uncommitted_halves()?;
        // A token object with the export key's label is never mkclone's (the export key
        // is a session object, officer.rs): one made by anyone else is removed, so that
        // no trusted key of that name outlives a session.
        for h in self
            .token
            .find(&[
                Attribute::Token(true),
                Attribute::Label(EXPORT_LABEL.as_bytes().to_vec()),
            ])
            .map_err(|e| self.open_error(e))?
        {
            warn!(
                "pkcs11: removing a token object labelled {EXPORT_LABEL}, which mkclone never makes"
            );
            self.token.destroy(h).map_err(|e| self.open_error(e))?;
            removed += 1;
        }
        if removed > 0 {
            info!(
                "pkcs11: token {:?}: removed {removed} object(s) an interrupted operation left behind",
                self.label
            );
        }
        Ok(())
    }

    /// Every managed object the map in force reaches.
    fn referenced(&mut self) -> Result<BTreeSet<(Managed, ObjId)>> {
        let op = Operation::Status;
        let mut out = BTreeSet::new();
        let map = self.map.clone();
        if let Some(id) = map.mofn {
            out.insert((Managed::MofN, id));
            let mofn: MofNObject = self.read_managed(op, Managed::MofN, id)?;
            out.insert((Managed::Seed, mofn.seed));
        }
        for kind in CloneableKind::ALL {
            let regs = *map.registers(kind);
            for id in [regs.new, regs.current, regs.old].into_iter().flatten() {
                out.extend(Self::register_objects(id));
            }
            if let Some(id) = regs.table {
                let table: TableObject = self.read_managed(op, Managed::Table, id)?;
                out.extend(Self::table_objects(Some(id), &table));
            }
        }
        Ok(out)
    }
}
