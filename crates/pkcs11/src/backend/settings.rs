//! The node's settings: its EID, m-of-n, and the share tables m-of-n governs.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use mkclone_backend::rules::{self, rerun};
use mkclone_backend::{
    Applied, CloneableKind, Eid, MofN, Operation, Result, ShareIndex, ShareStatus,
};

use super::Pkcs11Backend;
use crate::objects::{APPLICATION, EID_LABEL, EidObject, Managed, MofNObject, ObjId, TableObject};
use crate::templates::Made;

impl Pkcs11Backend {
    pub(super) fn eid(&mut self, op: Operation) -> Result<Option<Eid>> {
        Ok(self
            .read::<EidObject>(op, APPLICATION, EID_LABEL)?
            .map(|(_, e)| e.eid))
    }

    pub(super) fn set_eid_internal(&mut self, eid: &Eid) -> Result<Applied<()>> {
        let op = Operation::SetEid;
        match self.eid(op)? {
            Some(current) => rerun::eid(eid, current),
            None => {
                self.create_data(op, APPLICATION, EID_LABEL, &EidObject { eid: eid.clone() })?;
                Ok(Applied::Done(()))
            }
        }
    }

    pub(super) fn m_of_n(&mut self, op: Operation) -> Result<Option<MofNObject>> {
        match self.map.mofn {
            Some(id) => Ok(Some(self.read_managed(op, Managed::MofN, id)?)),
            None => Ok(None),
        }
    }

    pub(super) fn set_m_of_n_internal(&mut self, m_of_n: MofN) -> Result<Applied<()>> {
        let op = Operation::SetMofN;
        let previous = self.m_of_n(op)?;
        if previous.as_ref().map(|p| p.m_of_n) == Some(m_of_n) {
            // Not resetting keeps the polynomials, so shares already issued stay valid.
            return Ok(Applied::AlreadyDone(()));
        }
        let mut garbage = Vec::new();
        if let (Some(id), Some(p)) = (self.map.mofn, &previous) {
            garbage.extend([(Managed::MofN, id), (Managed::Seed, p.seed)]);
        }
        for kind in CloneableKind::ALL {
            let table_id = self.map.registers(kind).table;
            let table = self.table(op, kind, previous.as_ref().map(|p| p.m_of_n))?;
            garbage.extend(Self::table_objects(table_id, &table));
        }

        let seed = ObjId::random();
        let mut template = Made::Seed.attributes(&self.support);
        template.extend([
            Attribute::ValueLen(32.into()),
            Attribute::Label(Managed::Seed.label(seed).into_bytes()),
            Attribute::Id(seed.bytes().to_vec()),
        ]);
        self.token
            .generate_key(&Mechanism::GenericSecretKeyGen, &template)
            .map_err(|e| self.device(op, e))?;
        let mofn_id = ObjId::random();
        self.create_data(
            op,
            APPLICATION,
            &Managed::MofN.label(mofn_id),
            &MofNObject { m_of_n, seed },
        )?;
        let mut map = self.map.clone();
        map.mofn = Some(mofn_id);
        for kind in CloneableKind::ALL {
            let id = ObjId::random();
            self.create_data(
                op,
                APPLICATION,
                &Managed::Table.label(id),
                &TableObject::fresh(kind, Some(m_of_n)),
            )?;
            map.registers_mut(kind).table = Some(id);
        }
        self.commit(op, map, garbage)?;
        Ok(Applied::Done(()))
    }

    pub(super) fn table(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        m_of_n: Option<MofN>,
    ) -> Result<TableObject> {
        match self.map.registers(kind).table {
            Some(id) => {
                let table: TableObject = self.read_managed(op, Managed::Table, id)?;
                table.check().map_err(|e| self.corrupt(op, e))?;
                if table.kind != kind {
                    return Err(self.corrupt(op, format!("table {id} is for the {}", table.kind)));
                }
                Ok(table)
            }
            None => Ok(TableObject::fresh(kind, m_of_n)),
        }
    }

    pub(super) fn share_status_internal(&mut self) -> Result<ShareStatus> {
        let op = Operation::ShareStatus;
        let m_of_n = self.m_of_n(op)?.map(|p| p.m_of_n);
        let mut tables = Vec::new();
        for kind in CloneableKind::ALL {
            let table = self.table(op, kind, m_of_n)?;
            let generation = table.generation_row().map_err(|e| self.corrupt(op, e))?;
            tables.push(rules::tables::share_tables(
                kind,
                generation,
                m_of_n,
                table.received.iter().map(|r| r.index),
                table
                    .received_more
                    .iter()
                    .filter_map(|i| ShareIndex::new(*i).ok()),
            ));
        }
        Ok(ShareStatus { m_of_n, tables })
    }
}
