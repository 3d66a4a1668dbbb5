//! The zcrypt device driver as far as ZSECSENDCPRB goes, written from the kernel's
//! sources (drivers/s390/crypto, current mainline) and answered by hw-sim's simulated
//! cards. Each step cites the function it follows:
//!
//! 1. `zcrypt_unlocked_ioctl`: the node's ioctl mask (`zcrypt_check_ioctl`, EPERM), then
//!    the number: ZSECSENDCPRB, or ENOTTY (-ENOIOCTLCMD) for one this model does not
//!    handle.
//! 2. `zsecsendcprb_ioctl`: copy the `ica_xcRB` in (EFAULT); send, again while the
//!    attempt answers EAGAIN, at most TRACK_AGAIN_MAX times, then EIO; copy the
//!    `ica_xcRB` back whatever happened (EFAULT).
//! 3. `_zcrypt_send_cprb` and `prep_cca_ap_msg` -> `xcrb_msg_to_type6cprb_msgx`: status
//!    0; the length checks (EINVAL), with the reply-length check of older kernels that
//!    mainline dropped (a reply offered beyond 12 KiB with its 48-byte header); the request control block copied in (EFAULT) and
//!    padded to a multiple of 4; cprb_len plus the function code inside it (EINVAL); the
//!    CPRB class from func_id ("T2" usage, "T3"/"T5"/"T6"/"T7" administrative); a zcdn
//!    node's masks (ENODEV, EOPNOTSUPP); the card and queue (online, configured, not
//!    checkstopped, the card asked for or any, the domain asked for or any: ENODEV).
//! 4. `zcrypt_msgtype6_send_cprb`: the domain written into the CPRB; the card runs it.
//! 5. `convert_response_xcrb` -> `convert_type86_xcrb`: the reply must fit
//!    `reply_control_blk_length` (EMSGSIZE, after the card ran); it is copied to the
//!    caller (EFAULT, after the card ran) and the length written back.
//!
//! [`Fault`]s put the kernel's other outcomes at a chosen call: an error before the card
//! sees the request, an interrupted wait or any errno after it ran, an error reply
//! (`convert_error`: EINVAL with `status` 0x0008044D), a card failure the kernel retries
//! (EAGAIN) and gives up on (EIO), a fault copying the reply or the `ica_xcRB` back, and a
//! reply shaped as real cards may shape one (non-zero reserved bytes, trailing bytes).
//!
//! CPRBX integers are read big-endian, as the kernel reads them on s390x.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mkclone_backend::SerialNumber;
use mkclone_cca::cprb::CPRBX_LEN;
use mkclone_cca::{Apqn, Transport};
use mkclone_hw_sim::{CardState, SimTransport, Store};
use nix::errno::Errno;

use crate::memory::UserMemory;
use crate::xcrb::{XCRB_LEN, Xcrb};

/// `_IOC(dir, type, nr, size)` of the generic Linux encoding (asm-generic/ioctl.h).
const fn ioc(dir: u32, ty: u8, nr: u8, size: u32) -> u32 {
    (dir << 30) | (size << 16) | ((ty as u32) << 8) | nr as u32
}

/// `ZSECSENDCPRB`: `_IOC(_IOC_READ|_IOC_WRITE, 'z', 0x81, 0)` (uapi asm/zcrypt.h).
pub const ZSECSENDCPRB: u32 = ioc(2 | 1, b'z', 0x81, 0);
/// `ica_xcRB.user_defined`: any card.
pub const AUTOSELECT: u32 = 0xFFFF_FFFF;
/// CPRBX.domain: any domain (`AUTOSEL_DOM`, uapi asm/zcrypt.h).
pub const AUTOSEL_DOM: u16 = 0xFFFF;
/// How often `zsecsendcprb_ioctl` sends again after EAGAIN before it answers EIO
/// (zcrypt_api.h, TRACK_AGAIN_MAX).
pub const TRACK_AGAIN_MAX: u32 = 10;
/// `ica_xcRB.status` after an error reply of type 82 or 88 (zcrypt_msgtype6.c,
/// `convert_response_xcrb`: HDD_InvalidParm).
pub const STATUS_INVALID_PARM: u32 = 0x0008_044D;
/// The AP message buffer: the default maximum message size (ap_bus.h,
/// AP_DEFAULT_MAX_MSG_SIZE), which holds the 88-byte type 6 header and the request.
pub const AP_DEFAULT_MAX_MSG_SIZE: usize = 12 * 1024;
const TYPE6_HDR_LEN: usize = 0x58;
/// `sizeof(struct type86_fmt2_msg)`: the 8-byte `type86_hdr` and the 40-byte
/// `type86_fmt2_ext` (zcrypt_msgtype6.h).
pub const TYPE86_FMT2_MSG_LEN: usize = 48;

fn ceil4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// What happens at a chosen ZSECSENDCPRB call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The kernel fails with this errno before the card sees the request.
    Before(Errno),
    /// The card runs the request; then the kernel fails with this errno and the reply is
    /// lost (EINTR: the wait was interrupted, `ap_cancel_message`; EIO; ...).
    After(Errno),
    /// The card (or the AP firmware) answers with an error reply, type 82: CCA does not
    /// run the request; `status` becomes 0x0008044D and the ioctl EINVAL
    /// (`convert_error`: e.g. 0x82 operand invalid, 0x8B filtered by the hypervisor).
    ErrorReply,
    /// The first `n` attempts answer "machine failure" (EAGAIN; the card did not run
    /// them); the kernel sends again, and after TRACK_AGAIN_MAX attempts answers EIO.
    Again(u32),
    /// The card runs the request; copying the reply to the caller faults (EFAULT).
    ReplyCopy,
    /// The card runs the request and the reply is copied; copying the `ica_xcRB` back
    /// faults (EFAULT).
    XcrbCopyBack,
    /// The reply comes back as a real card's may: the 12 reserved bytes at 172 not zero,
    /// bytes after the parameter block inside `rpld_parml`, and bytes after `rpld_parml`.
    KernelShapedReply,
    /// The request is held this long before the card runs it.
    Delay(Duration),
}

/// One ZSECSENDCPRB as the model saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The calling thread.
    pub pid: u32,
    /// `user_defined`.
    pub card: u32,
    /// The domain of the queue that took it (0 when none did).
    pub domain: u16,
    /// The function code, and for FQ its first rule keyword.
    pub function: [u8; 2],
    pub rule: Option<[u8; 8]>,
    /// Attempts made (more than 1 after EAGAIN).
    pub attempts: u32,
    /// Whether the card ran the request (at least once).
    pub card_ran: bool,
    /// The errno returned, if any.
    pub errno: Option<Errno>,
    /// `ica_xcRB.status` as written back.
    pub status: u32,
    /// The signals the calling thread had blocked while it waited (`SigBlk` of
    /// /proc/<tid>/status; bit n-1 for signal n), read when the call arrived.
    pub blocked_signals: Option<u64>,
}

/// The signal mask of thread `tid`, from /proc/<tid>/status.
fn blocked_signals(tid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// A queue: one domain of a card.
pub struct Queue {
    pub online: bool,
    pub config: bool,
    pub chkstop: bool,
    sim: SimTransport,
}

impl Queue {
    /// The simulated card domain behind this queue.
    pub fn sim(&mut self) -> &mut SimTransport {
        &mut self.sim
    }
}

/// A CCA coprocessor.
pub struct Card {
    pub card_type: String,
    pub hwtype: u32,
    pub online: bool,
    pub config: bool,
    pub chkstop: bool,
    pub serial: SerialNumber,
    pub queues: BTreeMap<u16, Queue>,
}

/// The masks of a node made through /sys/class/zcrypt/create (`struct ap_perms`):
/// which ioctls, cards, usage domains and control domains it passes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZcdnMasks {
    pub ioctls: BTreeSet<u8>,
    pub cards: BTreeSet<u8>,
    pub domains: BTreeSet<u16>,
    pub control_domains: BTreeSet<u16>,
}

/// The machine: its CCA cards and the node's masks.
#[derive(Default)]
pub struct ZcryptModel {
    cards: BTreeMap<u8, Card>,
    /// `None`: /dev/z90crypt, which passes everything.
    masks: Option<ZcdnMasks>,
    faults: BTreeMap<u64, Fault>,
    calls: Vec<CallRecord>,
    /// The [`Fault::Delay`]s begun and ended, readable without the model's lock (which a
    /// delay holds).
    delays: std::sync::Arc<Delays>,
}

/// How many [`Fault::Delay`]s have begun, and how many have ended (the card has the
/// request from the first to the second; its reply follows).
#[derive(Debug, Default)]
pub struct Delays {
    pub begun: std::sync::atomic::AtomicU64,
    pub ended: std::sync::atomic::AtomicU64,
}

impl ZcryptModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// A factory-fresh simulated CEX8C domain at `apqn` (the card is added, online and
    /// configured, the first time one of its domains is).
    pub fn add_domain(&mut self, apqn: Apqn, serial: &SerialNumber) {
        let card = self.cards.entry(apqn.card).or_insert_with(|| Card {
            card_type: "CEX8C".into(),
            hwtype: 14,
            online: true,
            config: true,
            chkstop: false,
            serial: serial.clone(),
            queues: BTreeMap::new(),
        });
        let state = CardState::new(card.serial.clone());
        card.queues.insert(
            apqn.domain,
            Queue {
                online: true,
                config: true,
                chkstop: false,
                sim: SimTransport::new(apqn, Store::memory(state)),
            },
        );
    }

    pub fn cards(&self) -> &BTreeMap<u8, Card> {
        &self.cards
    }

    pub fn card_mut(&mut self, card: u8) -> Option<&mut Card> {
        self.cards.get_mut(&card)
    }

    /// The queue at `apqn`.
    pub fn queue(&mut self, apqn: Apqn) -> Option<&mut Queue> {
        self.cards
            .get_mut(&apqn.card)
            .and_then(|c| c.queues.get_mut(&apqn.domain))
    }

    /// Serve as a zcdn node with these masks (`None`: /dev/z90crypt).
    pub fn set_masks(&mut self, masks: Option<ZcdnMasks>) {
        self.masks = masks;
    }

    /// `fault` at the `k`-th ZSECSENDCPRB from now on (1-based, counting every call the
    /// model has received).
    pub fn fault(&mut self, k: u64, fault: Fault) {
        self.faults.insert(k, fault);
    }

    /// `fault` at the next ZSECSENDCPRB.
    pub fn fault_next(&mut self, fault: Fault) {
        let k = self.calls.len() as u64 + 1;
        self.fault(k, fault);
    }

    pub fn calls(&self) -> &[CallRecord] {
        &self.calls
    }

    /// The counts of [`Fault::Delay`]s begun and ended: a test reads them while a delay
    /// holds the model's lock, to act while a request is on the card.
    pub fn delays(&self) -> std::sync::Arc<Delays> {
        self.delays.clone()
    }

    /// One ioctl on the node: 0 or -errno, as `zcrypt_unlocked_ioctl` returns.
    pub fn ioctl(&mut self, memory: &dyn UserMemory, pid: u32, cmd: u32, arg: u64) -> i32 {
        // zcrypt_check_ioctl: the ioctl number must be in the node's mask (1..255).
        if let Some(masks) = &self.masks {
            let nr = (cmd & 0xFF) as u8;
            if nr == 0 || !masks.ioctls.contains(&nr) {
                return -(Errno::EPERM as i32);
            }
        }
        match cmd {
            ZSECSENDCPRB => match self.zsecsendcprb(memory, pid, arg) {
                Ok(()) => 0,
                Err(errno) => -(errno as i32),
            },
            // The model handles ZSECSENDCPRB only; the driver's -ENOIOCTLCMD reaches the
            // caller as ENOTTY.
            _ => -(Errno::ENOTTY as i32),
        }
    }

    /// `zsecsendcprb_ioctl`.
    fn zsecsendcprb(&mut self, memory: &dyn UserMemory, pid: u32, arg: u64) -> Result<(), Errno> {
        let k = self.calls.len() as u64 + 1;
        let fault = self.faults.remove(&k);
        let mut record = CallRecord {
            pid,
            card: 0,
            domain: 0,
            function: [0; 2],
            rule: None,
            attempts: 0,
            card_ran: false,
            errno: None,
            status: 0,
            blocked_signals: blocked_signals(pid),
        };
        let result = self.zsecsendcprb_recorded(memory, arg, fault.as_ref(), &mut record);
        record.errno = result.err();
        self.calls.push(record);
        result
    }

    fn zsecsendcprb_recorded(
        &mut self,
        memory: &dyn UserMemory,
        arg: u64,
        fault: Option<&Fault>,
        record: &mut CallRecord,
    ) -> Result<(), Errno> {
        let bytes = memory.read(arg, XCRB_LEN)?;
        let mut array = [0u8; XCRB_LEN];
        array.copy_from_slice(&bytes);
        let mut xcrb = Xcrb::from_bytes(array);
        record.card = xcrb.user_defined();
        let mut result;
        loop {
            record.attempts += 1;
            result = self.send_cprb(memory, &mut xcrb, fault, record);
            if result != Err(Errno::EAGAIN) || record.attempts >= TRACK_AGAIN_MAX {
                break;
            }
        }
        if result == Err(Errno::EAGAIN) {
            result = Err(Errno::EIO);
        }
        record.status = xcrb.status();
        // The ica_xcRB goes back whatever happened.
        let back = match fault {
            Some(Fault::XcrbCopyBack) => Err(Errno::EFAULT),
            _ => memory.write(arg, xcrb.bytes()),
        };
        back?;
        result
    }

    /// One attempt: `_zcrypt_send_cprb` and what it calls.
    fn send_cprb(
        &mut self,
        memory: &dyn UserMemory,
        xcrb: &mut Xcrb,
        fault: Option<&Fault>,
        record: &mut CallRecord,
    ) -> Result<(), Errno> {
        xcrb.set_status(0);
        // xcrb_msg_to_type6cprb_msgx: lengths.
        let req_len = xcrb.request_control_blk_length() as usize;
        if req_len < CPRBX_LEN {
            return Err(Errno::EINVAL);
        }
        let req_cblen = ceil4(req_len);
        let req_sumlen = req_cblen + xcrb.request_data_length() as usize;
        if TYPE6_HDR_LEN + req_sumlen > AP_DEFAULT_MAX_MSG_SIZE {
            return Err(Errno::EINVAL);
        }
        if (xcrb.reply_control_blk_length() as usize) < CPRBX_LEN {
            return Err(Errno::EINVAL);
        }
        // Kernels before the AP message buffer rework, whose zcrypt_msgtype6.h defines
        // MSGTYPE06_MAX_MSG_SIZE (12 KiB), also refuse a reply that would not fit that
        // buffer with its type 86 header: `replylen = sizeof(struct type86_fmt2_msg) +
        // CEIL4(reply_control_blk_length) + reply_data_length` above it is EINVAL
        // (XCRB_msg_to_type6CPRB_msgX). Current mainline has no such check; the model keeps
        // it, so that what this model takes, those kernels take too.
        let replylen = TYPE86_FMT2_MSG_LEN
            + ceil4(xcrb.reply_control_blk_length() as usize)
            + xcrb.reply_data_length() as usize;
        if replylen > AP_DEFAULT_MAX_MSG_SIZE {
            return Err(Errno::EINVAL);
        }
        // The request control block, padded with zeros to req_cblen.
        let mut block = memory.read(xcrb.request_control_blk_addr(), req_len)?;
        block.resize(req_cblen, 0);
        let cprb_len = usize::from(be16(&block, 0));
        if cprb_len + 2 > req_cblen {
            return Err(Errno::EINVAL);
        }
        record.function = [block[cprb_len], block[cprb_len + 1]];
        record.rule = block
            .get(cprb_len + 4..cprb_len + 12)
            .filter(|_| &record.function == b"FQ")
            .and_then(|r| r.try_into().ok());
        let domain = be16(&block, 170);
        let usage = &block[6..8] == b"T2";
        let admin = matches!(&block[6..8], b"T3" | b"T5" | b"T6" | b"T7");
        if xcrb.request_data_length() > 0 {
            memory.read(
                xcrb.request_data_address(),
                xcrb.request_data_length() as usize,
            )?;
        }
        // _zcrypt_send_cprb: a zcdn node's admission of the domain.
        if let Some(masks) = &self.masks
            && domain < 256
        {
            if admin {
                if !masks.control_domains.contains(&domain) {
                    return Err(Errno::ENODEV);
                }
            } else if !usage {
                return Err(Errno::EOPNOTSUPP);
            }
        }
        // The card and queue.
        let wanted = xcrb.user_defined();
        let masks = self.masks.clone();
        let (card_id, queue_domain, queue) = self
            .cards
            .iter_mut()
            .filter(|(id, c)| {
                c.online
                    && c.config
                    && !c.chkstop
                    && (wanted == AUTOSELECT || wanted == u32::from(**id))
                    && masks.as_ref().is_none_or(|m| m.cards.contains(id))
            })
            .flat_map(|(id, c)| c.queues.iter_mut().map(move |(d, q)| (*id, *d, q)))
            .find(|(_, d, q)| {
                q.online
                    && q.config
                    && !q.chkstop
                    && (domain == AUTOSEL_DOM || domain == *d)
                    && masks.as_ref().is_none_or(|m| m.domains.contains(d))
            })
            .ok_or(Errno::ENODEV)?;
        let _ = card_id;
        record.domain = queue_domain;

        match fault {
            Some(Fault::Before(errno)) => return Err(*errno),
            Some(Fault::Delay(pause)) => {
                use std::sync::atomic::Ordering::SeqCst;
                self.delays.begun.fetch_add(1, SeqCst);
                std::thread::sleep(*pause);
                self.delays.ended.fetch_add(1, SeqCst);
            }
            Some(Fault::ErrorReply) => {
                xcrb.set_status(STATUS_INVALID_PARM);
                return Err(Errno::EINVAL);
            }
            Some(Fault::Again(n)) if record.attempts <= *n => return Err(Errno::EAGAIN),
            _ => {}
        }
        // zcrypt_msgtype6_send_cprb: the queue's domain into the CPRB; the card reads
        // the CPRBX and req_parml bytes of parameter block.
        block[170..172].copy_from_slice(&queue_domain.to_be_bytes());
        let req_parml = be32(&block, 12) as usize;
        let message = &block[..(CPRBX_LEN + req_parml).min(block.len())];
        let capacity = xcrb.reply_control_blk_length() as usize;
        let mut reply = queue
            .sim
            .send(message, capacity, false)
            .map_err(|_| Errno::EIO)?;
        record.card_ran = true;
        match fault {
            Some(Fault::After(errno)) => return Err(*errno),
            Some(Fault::KernelShapedReply) => shape_like_a_real_card(&mut reply),
            _ => {}
        }
        // convert_type86_xcrb.
        let count1 = ceil4(reply.len());
        reply.resize(count1, 0);
        if (xcrb.reply_control_blk_length() as usize) < count1 {
            return Err(Errno::EMSGSIZE);
        }
        if fault == Some(&Fault::ReplyCopy) {
            return Err(Errno::EFAULT);
        }
        memory.write(xcrb.reply_control_blk_addr(), &reply)?;
        xcrb.set_reply_lengths(count1 as u32, 0);
        Ok(())
    }
}

/// Non-zero reserved bytes at 172..184, 5 bytes after the parameter block counted in
/// `rpld_parml`, and 7 more after it.
fn shape_like_a_real_card(reply: &mut Vec<u8>) {
    if reply.len() < CPRBX_LEN {
        return;
    }
    for (i, b) in reply[172..184].iter_mut().enumerate() {
        *b = 0x40 + i as u8;
    }
    let rpld_parml = be32(reply, 24) + 5;
    reply[24..28].copy_from_slice(&rpld_parml.to_be_bytes());
    reply.extend_from_slice(&[0xC1, 0xC2, 0xC3, 0xC4, 0xC5]);
    reply.extend_from_slice(&[0xEE; 7]);
}

#[cfg(test)]
mod tests {
    //! The driver's rules on an in-memory caller: the ica_xcRB and its buffers laid out
    //! by hand at made-up addresses.

    use std::cell::RefCell;

    use mkclone_cca::verbs::{Query, Request};

    use super::*;

    /// A caller whose memory is one buffer at address `BASE`.
    struct Arena(RefCell<Vec<u8>>);
    const BASE: u64 = 0x1000;
    const XCRB_AT: u64 = BASE;
    const REQUEST_AT: u64 = BASE + 0x100;
    const REPLY_AT: u64 = BASE + 0x2000;

    impl UserMemory for Arena {
        fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
            let start = addr.checked_sub(BASE).ok_or(Errno::EFAULT)? as usize;
            self.0
                .borrow()
                .get(start..start + len)
                .map(<[u8]>::to_vec)
                .ok_or(Errno::EFAULT)
        }
        fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
            let start = addr.checked_sub(BASE).ok_or(Errno::EFAULT)? as usize;
            let mut m = self.0.borrow_mut();
            let slot = m.get_mut(start..start + bytes.len()).ok_or(Errno::EFAULT)?;
            slot.copy_from_slice(bytes);
            Ok(())
        }
    }

    /// An arena holding an ica_xcRB for card `card` with `request` and a reply buffer of
    /// `capacity` bytes.
    fn caller(card: u32, request: &[u8], capacity: u32) -> Arena {
        let mut m = vec![0u8; 0x6000];
        let x = &mut m[..XCRB_LEN];
        x[0..2].copy_from_slice(b"CA");
        x[2..6].copy_from_slice(&card.to_ne_bytes());
        x[8..12].copy_from_slice(&(request.len() as u32).to_ne_bytes());
        x[20..28].copy_from_slice(&REQUEST_AT.to_ne_bytes());
        x[48..52].copy_from_slice(&capacity.to_ne_bytes());
        x[60..68].copy_from_slice(&REPLY_AT.to_ne_bytes());
        let at = (REQUEST_AT - BASE) as usize;
        m[at..at + request.len()].copy_from_slice(request);
        Arena(RefCell::new(m))
    }

    fn fq(domain: u16) -> Vec<u8> {
        Request::Query(Query::StatIcsa)
            .to_message(domain, 4096)
            .unwrap()
    }

    fn model() -> ZcryptModel {
        let mut m = ZcryptModel::new();
        let serial = SerialNumber::new("UNIT0003").unwrap();
        m.add_domain(Apqn::new(3, 0x0d).unwrap(), &serial);
        m.add_domain(Apqn::new(3, 0x0e).unwrap(), &serial);
        m
    }

    fn errno_of(result: i32) -> Option<Errno> {
        (result != 0).then(|| Errno::from_raw(-result))
    }

    #[test]
    fn zsecsendcprb_is_the_uapi_number() {
        assert_eq!(ZSECSENDCPRB, 0xC000_7A81);
    }

    #[test]
    fn a_reply_is_copied_back_with_its_length_and_any_domain_is_chosen() {
        let mut m = model();
        let user = caller(AUTOSELECT, &fq(AUTOSEL_DOM), 8192);
        assert_eq!(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT), 0);
        let xcrb = user.read(XCRB_AT, XCRB_LEN).unwrap();
        let written = u32::from_ne_bytes(xcrb[48..52].try_into().unwrap()) as usize;
        assert_eq!(written % 4, 0);
        let reply = user.read(REPLY_AT, written).unwrap();
        assert_eq!(&reply[170..172], &[0x00, 0x0d], "the first domain took it");
        assert_eq!(m.calls()[0].domain, 0x0d);
        assert_eq!(m.calls()[0].rule.as_ref(), Some(b"STATICSA"));
    }

    #[test]
    fn the_kernels_refusals_before_delivery() {
        let mut m = model();
        // Another ioctl number: ENOTTY; a bad ica_xcRB address: EFAULT.
        let user = caller(3, &fq(0x0d), 8192);
        assert_eq!(
            errno_of(m.ioctl(&user, 7, 0xC000_7A05, XCRB_AT)),
            Some(Errno::ENOTTY)
        );
        assert_eq!(
            errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, 0x10)),
            Some(Errno::EFAULT)
        );
        // A control block shorter than a CPRBX, a reply buffer too: EINVAL.
        let user = caller(3, &fq(0x0d)[..200], 8192);
        assert_eq!(
            errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT)),
            Some(Errno::EINVAL)
        );
        let user = caller(3, &fq(0x0d), 100);
        assert_eq!(
            errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT)),
            Some(Errno::EINVAL)
        );
        // cprb_len pointing past the block: EINVAL.
        let mut bad = fq(0x0d);
        bad[0..2].copy_from_slice(&0x2000u16.to_be_bytes());
        let user = caller(3, &bad, 8192);
        assert_eq!(
            errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT)),
            Some(Errno::EINVAL)
        );
        // No such card, no such domain, a checkstopped card: ENODEV.
        for (card, domain) in [(4, 0x0d), (3, 0x0f)] {
            let user = caller(card, &fq(domain), 8192);
            assert_eq!(
                errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT)),
                Some(Errno::ENODEV)
            );
        }
        m.card_mut(3).unwrap().chkstop = true;
        let user = caller(3, &fq(0x0d), 8192);
        assert_eq!(
            errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT)),
            Some(Errno::ENODEV)
        );
        assert!(m.calls().iter().all(|c| !c.card_ran));
    }

    /// The reply-length check of kernels before the AP message buffer rework: a reply
    /// buffer that would not fit their 12 KiB message buffer with the 48-byte type 86
    /// header is EINVAL before the card sees the request; one that fits is taken, and
    /// mkclone's own offer fits.
    #[test]
    fn a_reply_beyond_the_older_kernels_message_buffer_is_refused() {
        let mut m = model();
        let user = caller(3, &fq(0x0d), 12 * 1024);
        assert_eq!(
            errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT)),
            Some(Errno::EINVAL)
        );
        assert!(m.calls().iter().all(|c| !c.card_ran));
        let largest = 12 * 1024 - TYPE86_FMT2_MSG_LEN;
        assert_eq!(mkclone_cca::REPLY_CAPACITY, largest);
        let user = caller(3, &fq(0x0d), largest as u32);
        assert_eq!(errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT)), None);
    }

    #[test]
    fn a_zcdn_node_checks_its_ioctl_mask_first_and_its_cprb_classes() {
        let mut m = model();
        m.set_masks(Some(ZcdnMasks {
            ioctls: [0x81].into_iter().collect(),
            cards: [3].into_iter().collect(),
            domains: [0x0d, 0x0e].into_iter().collect(),
            control_domains: [0x0e].into_iter().collect(),
        }));
        let mut user = caller(3, &fq(0x0d), 8192);
        assert_eq!(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT), 0);
        // An administrative CPRB ("T3") for a domain outside the control mask: ENODEV; a
        // CPRB of no known class: EOPNOTSUPP.
        for (class, errno) in [(b"T3", Errno::ENODEV), (b"X9", Errno::EOPNOTSUPP)] {
            let mut cprb = fq(0x0d);
            cprb[6..8].copy_from_slice(class);
            user = caller(3, &cprb, 8192);
            assert_eq!(
                errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT)),
                Some(errno)
            );
        }
        // Without ZSECSENDCPRB in the mask: EPERM, before anything is read (the CPRB of no
        // known class would be EOPNOTSUPP).
        m.set_masks(Some(ZcdnMasks::default()));
        assert_eq!(
            errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, 0x10)),
            Some(Errno::EPERM)
        );
    }

    #[test]
    fn eagain_is_sent_again_by_the_kernel_and_becomes_eio_after_ten_attempts() {
        let mut m = model();
        m.fault(1, Fault::Again(9));
        m.fault(2, Fault::Again(10));
        let user = caller(3, &fq(0x0d), 8192);
        assert_eq!(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT), 0);
        assert_eq!((m.calls()[0].attempts, m.calls()[0].card_ran), (10, true));
        assert_eq!(
            errno_of(m.ioctl(&user, 7, ZSECSENDCPRB, XCRB_AT)),
            Some(Errno::EIO)
        );
        assert_eq!((m.calls()[1].attempts, m.calls()[1].card_ran), (10, false));
    }
}
