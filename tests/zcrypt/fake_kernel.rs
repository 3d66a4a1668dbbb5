//! A fake kernel behind the `ZcryptDevice` seam: it enforces ZSECSENDCPRB's rules on
//! the `ica_xcRB` and the buffers its pointers describe, then hands the request to a
//! simulated card (hw-sim), as the kernel hands it to a coprocessor.
//!
//! Rules (reference/zcrypt-abi.md, "ZSECSENDCPRB handling"; the kernel's
//! zcrypt_msgtype6.c, `xcrb_msg_to_type6cprb_msgx` and `convert_type86_xcrb`):
//! - agent_ID "CA"; no data blocks (mkclone sends none);
//! - both control blocks at least 220 bytes; their lengths multiples of 4 (the kernel
//!   rounds them up with CEIL4 and reads the padding; this fake insists the caller did);
//! - the request's cprb_len (220) plus the 2-byte function code fit in the request block;
//!   the CPRBX's req_parml fits too;
//! - the CPRBX's parameter-block address slots, when filled, point right after each CPRBX
//!   (the reply parameter block is at reply + 220);
//! - card from user_defined (or AUTOSELECT), domain from CPRBX.domain (or AUTOSEL_DOM,
//!   then the chosen domain is written back into the reply CPRBX); no such APQN: ENODEV;
//! - a reply larger than reply_control_blk_length: EMSGSIZE, after the card acted;
//! - the reply CPRBX and parameter block are copied to the reply block and the lengths
//!   written back (the control length rounded up to 4; the data length 0).

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mkclone::backend::SerialNumber;
use mkclone::cca::CcaBackend;
use mkclone::cca::{Apqn, Transport};
use mkclone::sim::{CardState, SimTransport, Store};
use mkclone::zcrypt::{IoctlTransport, ProjectEncodings, RetryPolicy, XcrbCall, ZcryptDevice};
use nix::errno::Errno;

pub const CPRBX_LEN: usize = 220;
pub const AUTOSELECT: u32 = 0xFFFF_FFFF;
pub const AUTOSEL_DOM: u16 = 0xFFFF;

/// What a fault does at the k-th call.
#[derive(Clone, Copy, Debug)]
pub enum KernelFault {
    /// Fail with `errno` before the card sees the request.
    Before(Errno),
    /// Let the card run the request, then fail with `errno` (the reply is lost).
    After(Errno),
}

/// One call as the fake kernel saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    pub card: u32,
    pub domain: u16,
    pub function: [u8; 2],
    pub request_len: u32,
    pub reply_capacity: u32,
    /// The errno returned, if any.
    pub errno: Option<Errno>,
    /// Whether the card ran the request.
    pub card_ran: bool,
}

#[derive(Default)]
pub struct Bus {
    /// card -> domain -> simulated card domain.
    cards: BTreeMap<u8, BTreeMap<u16, SimTransport>>,
    faults: BTreeMap<u64, KernelFault>,
    pub calls: Vec<CallRecord>,
}

impl Bus {
    pub fn new() -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self::default()))
    }
}

pub trait BusExt {
    fn add_card(&self, apqn: Apqn, serial: &str);
    fn fault(&self, k: u64, fault: KernelFault);
    fn calls(&self) -> Vec<CallRecord>;
    fn sim(&self, apqn: Apqn) -> std::cell::RefMut<'_, SimTransport>;
}

impl BusExt for Rc<RefCell<Bus>> {
    /// A factory-fresh simulated card domain at `apqn`.
    fn add_card(&self, apqn: Apqn, serial: &str) {
        let state = CardState::new(SerialNumber::new(serial).unwrap());
        self.borrow_mut()
            .cards
            .entry(apqn.card)
            .or_default()
            .insert(apqn.domain, SimTransport::new(apqn, Store::memory(state)));
    }

    /// Fail the k-th call (1-based, counting every call the kernel receives).
    fn fault(&self, k: u64, fault: KernelFault) {
        self.borrow_mut().faults.insert(k, fault);
    }

    fn calls(&self) -> Vec<CallRecord> {
        self.borrow().calls.clone()
    }

    fn sim(&self, apqn: Apqn) -> std::cell::RefMut<'_, SimTransport> {
        std::cell::RefMut::map(self.borrow_mut(), |b| {
            b.cards
                .get_mut(&apqn.card)
                .and_then(|c| c.get_mut(&apqn.domain))
                .unwrap()
        })
    }
}

/// `/dev/z90crypt` of a machine whose cards are `bus`.
pub struct FakeKernel {
    bus: Rc<RefCell<Bus>>,
    path: PathBuf,
}

impl FakeKernel {
    pub fn new(bus: &Rc<RefCell<Bus>>) -> Self {
        Self {
            bus: bus.clone(),
            path: PathBuf::from("/dev/z90crypt"),
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
fn ceil4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl ZcryptDevice for FakeKernel {
    fn path(&self) -> &Path {
        &self.path
    }

    fn send_cprb(&mut self, call: &mut XcrbCall<'_>) -> Result<(), Errno> {
        let mut bus = self.bus.borrow_mut();
        let k = bus.calls.len() as u64 + 1;
        let mut record = CallRecord {
            card: call.card(),
            domain: 0,
            function: [0, 0],
            request_len: call.xcrb().request_control_blk_length,
            reply_capacity: call.xcrb().reply_control_blk_length,
            errno: None,
            card_ran: false,
        };
        let result = run(&mut bus, call, &mut record, k);
        record.errno = result.err();
        bus.calls.push(record);
        result
    }
}

fn run(
    bus: &mut Bus,
    call: &mut XcrbCall<'_>,
    record: &mut CallRecord,
    k: u64,
) -> Result<(), Errno> {
    if call.agent_id() != *b"CA" {
        return Err(Errno::EINVAL);
    }
    call.request_data_block()?;
    let xcrb = *call.xcrb();
    let (req_len, reply_cap) = (
        xcrb.request_control_blk_length as usize,
        xcrb.reply_control_blk_length as usize,
    );
    let reply_data_len = xcrb.reply_data_length;
    if reply_data_len != 0 || !xcrb.reply_data_addr.is_null() {
        return Err(Errno::EFAULT);
    }
    if req_len < CPRBX_LEN || reply_cap < CPRBX_LEN {
        return Err(Errno::EINVAL);
    }
    if req_len % 4 != 0 || reply_cap % 4 != 0 {
        return Err(Errno::EINVAL);
    }
    let request = call.request_block()?.to_vec();
    let cprb_len = usize::from(be16(&request, 0));
    if cprb_len != CPRBX_LEN || cprb_len + 2 > req_len {
        return Err(Errno::EINVAL);
    }
    record.function = [request[cprb_len], request[cprb_len + 1]];
    let req_parml = be32(&request, 12) as usize;
    if CPRBX_LEN + req_parml > req_len {
        return Err(Errno::EINVAL);
    }
    let req_parmb = be64(&request, 56);
    let rpl_parmb = be64(&request, 88);
    if req_parmb != 0 && req_parmb != (call.request_address() + CPRBX_LEN) as u64 {
        return Err(Errno::EINVAL);
    }
    if rpl_parmb != 0 && rpl_parmb != (call.reply_address() + CPRBX_LEN) as u64 {
        return Err(Errno::EINVAL);
    }

    // Card and domain.
    let mut domain = be16(&request, 170);
    let card = match xcrb.user_defined {
        AUTOSELECT => {
            *bus.cards
                .iter()
                .find(|(_, doms)| domain == AUTOSEL_DOM || doms.contains_key(&domain))
                .ok_or(Errno::ENODEV)?
                .0
        }
        c => u8::try_from(c).map_err(|_| Errno::ENODEV)?,
    };
    let domains = bus.cards.get_mut(&card).ok_or(Errno::ENODEV)?;
    if domain == AUTOSEL_DOM {
        domain = *domains.keys().next().ok_or(Errno::ENODEV)?;
    }
    record.domain = domain;
    let sim = domains.get_mut(&domain).ok_or(Errno::ENODEV)?;

    let fault = bus_fault(&bus.faults, k);
    if let Some(KernelFault::Before(errno)) = fault {
        return Err(errno);
    }
    // The message the card receives: the CPRBX and its parameter block, no padding.
    let mut message = request[..CPRBX_LEN + req_parml].to_vec();
    message[170..172].copy_from_slice(&domain.to_be_bytes());
    let reply = sim.send(&message, reply_cap, false).map_err(|_| Errno::EIO);
    record.card_ran = true;
    let mut reply = reply?;
    if let Some(KernelFault::After(errno)) = fault {
        return Err(errno);
    }
    reply[170..172].copy_from_slice(&domain.to_be_bytes());
    let written = ceil4(reply.len());
    if written > reply_cap {
        return Err(Errno::EMSGSIZE);
    }
    let block = call.reply_block()?;
    block[..reply.len()].copy_from_slice(&reply);
    block[reply.len()..written].fill(0);
    call.set_reply_lengths(written as u32, 0);
    Ok(())
}

fn bus_fault(faults: &BTreeMap<u64, KernelFault>, k: u64) -> Option<KernelFault> {
    faults.get(&k).copied()
}

/// A transport to `apqn` through the fake kernel, without pauses between retries.
pub fn transport(bus: &Rc<RefCell<Bus>>, apqn: Apqn) -> IoctlTransport<FakeKernel> {
    IoctlTransport::new(FakeKernel::new(bus), apqn).with_retry(RetryPolicy {
        attempts: 3,
        backoff: std::time::Duration::ZERO,
    })
}

/// A backend to `apqn` through the fake kernel, with project encodings refused (a real
/// device's default) or allowed (the experiment override).
pub fn backend(
    bus: &Rc<RefCell<Bus>>,
    apqn: Apqn,
    encodings: ProjectEncodings,
) -> CcaBackend<IoctlTransport<FakeKernel>> {
    let t = transport(bus, apqn).with_project_encodings(encodings);
    assert!(t.is_real_device());
    CcaBackend::new(t)
}
