//! The one system call mkclone makes on a coprocessor, `ZSECSENDCPRB`, behind a narrow
//! seam ([`ZcryptDevice`]) so that tests can stand a fake kernel in for it.
//!
//! This is the only module of mkclone with `unsafe` code: the ioctl itself.
//!
//! [`XcrbCall`] owns the `ica_xcRB` and borrows the request and reply buffers its pointers
//! describe, for exactly as long as the call lasts. Its fields are private, and every
//! length the kernel is handed is set from the slice whose address goes next to it
//! (`XcrbCall::for_the_kernel`, whatever a fake kernel's `set_reply_lengths` wrote before),
//! so that the kernel can never be handed a pointer that outlives or overruns its buffer.
//! The pointers the kernel writes and reads through are taken again from the buffers, in
//! their final place inside the `XcrbCall`, immediately before the ioctl
//! (`XcrbCall::for_the_kernel`): a pointer taken in `new` would not survive `new` moving
//! the `&mut` reply into `Self` (under Rust's aliasing rules the move reasserts the
//! reference's exclusive access, which invalidates pointers derived from it earlier), so
//! the kernel writing through it would be undefined behaviour. The addresses `new` writes
//! have the same values; fake kernels compare and resolve them as numbers only.
//! A fake kernel reaches the buffers through [`XcrbCall::request_block`] and
//! [`XcrbCall::reply_block`], which resolve the pointers in the `ica_xcRB` the way the
//! kernel's `copy_from_user` would, but only inside the borrowed buffers: a wrong pointer
//! or length is EFAULT there as it would be in the kernel.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use mkclone_backend::device_calls::DeviceCall;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::sys::stat::Mode;

use super::abi::{self, ica_xcRB};

/// `ZSECSENDCPRB`: read|write, magic 'z', number 0x81, size 0 (the structure's size is
/// not part of the number). Taken from the bindings, where bindgen evaluated the header's
/// `_IOC`-style macro; a test checks it against nix's `request_code_readwrite!`.
pub const ZSECSENDCPRB: u32 = abi::ZSECSENDCPRB;

/// `ica_xcRB.agent_ID`: the bytes "CA", as the kernel's own callers write it
/// (zcrypt_ccamisc.c, `prep_xcrb`: `memcpy(&agent_ID, "CA", 2)`).
pub const AGENT_ID: [u8; 2] = *b"CA";

// nix's `ioctl_readwrite!` would encode sizeof(ica_xcRB) into the number (0xC05E7A81);
// the kernel expects size 0, so the request code is given literally
// (reference/toolchain-notes.md, "bindgen and ioctls").
nix::ioctl_readwrite_bad!(zsecsendcprb, ZSECSENDCPRB, ica_xcRB);

/// Something that answers `ZSECSENDCPRB`: the kernel through a device file, or a test's
/// fake kernel.
pub trait ZcryptDevice {
    /// The device node, for messages.
    fn path(&self) -> &Path;

    /// Issue `ZSECSENDCPRB` for `call`. `Ok` when the ioctl returned 0 (the card
    /// answered; its CCA return code is in the reply CPRBX), the errno otherwise.
    fn send_cprb(&mut self, call: &mut XcrbCall<'_>) -> Result<(), Errno>;
}

/// One `ZSECSENDCPRB` call: the control block and the buffers it points to.
pub struct XcrbCall<'a> {
    xcrb: ica_xcRB,
    request: &'a [u8],
    reply: &'a mut [u8],
}

/// A buffer too large for a 32-bit length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthTooLarge {
    pub len: usize,
}

impl<'a> XcrbCall<'a> {
    /// A call sending `request` (CPRBX and parameter block) to `card` (or
    /// [`abi::AUTOSELECT`]) and offering `reply` for the reply CPRBX and parameter block.
    /// No data blocks: mkclone carries everything in the parameter blocks.
    pub fn new(card: u32, request: &'a [u8], reply: &'a mut [u8]) -> Result<Self, LengthTooLarge> {
        for len in [request.len(), reply.len()] {
            u32::try_from(len).map_err(|_| LengthTooLarge { len })?;
        }
        let xcrb = ica_xcRB {
            agent_ID: u16::from_ne_bytes(AGENT_ID),
            user_defined: card,
            request_ID: 0,
            request_control_blk_length: 0,
            padding1: [0; 8],
            request_control_blk_addr: std::ptr::null_mut(),
            request_data_length: 0,
            padding2: [0; 8],
            request_data_address: std::ptr::null_mut(),
            reply_control_blk_length: 0,
            padding3: [0; 8],
            reply_control_blk_addr: std::ptr::null_mut(),
            reply_data_length: 0,
            padding4: [0; 8],
            reply_data_addr: std::ptr::null_mut(),
            priority_window: 0,
            status: 0,
        };
        let mut call = Self {
            xcrb,
            request,
            reply,
        };
        // The values the kernel will get, for fake kernels (`request_block`,
        // `request_address`); `for_the_kernel` describes the buffers again before the ioctl.
        call.describe_buffers();
        Ok(call)
    }

    /// Point the control block at the two buffers as they lie now, each with its own length
    /// (whatever was set since, e.g. a fake kernel's write-back through the public
    /// `set_reply_lengths`: the kernel must never be told a buffer is longer than it is),
    /// and no data blocks. `new` refused lengths beyond u32; 0 would be safe.
    fn describe_buffers(&mut self) {
        // The kernel only reads the request; the field is `char *` in the ABI.
        self.xcrb.request_control_blk_addr = self.request.as_ptr().cast_mut().cast();
        self.xcrb.reply_control_blk_addr = self.reply.as_mut_ptr().cast();
        self.xcrb.request_control_blk_length = u32::try_from(self.request.len()).unwrap_or(0);
        self.xcrb.reply_control_blk_length = u32::try_from(self.reply.len()).unwrap_or(0);
        self.xcrb.request_data_length = 0;
        self.xcrb.request_data_address = std::ptr::null_mut();
        self.xcrb.reply_data_length = 0;
        self.xcrb.reply_data_addr = std::ptr::null_mut();
    }

    /// The `ica_xcRB` as the kernel receives it: both buffer addresses taken again from the
    /// buffers in their final place (`self.request`, `self.reply`), then a pointer to the
    /// control block. Call it immediately before the ioctl and touch `self` no more until the
    /// ioctl has returned: the returned pointer and the two inside it stay usable only
    /// while nothing else reborrows `self` or its buffers.
    fn for_the_kernel(&mut self) -> *mut ica_xcRB {
        self.describe_buffers();
        &raw mut self.xcrb
    }

    /// The control block as it stands (after the call: with the lengths the kernel wrote
    /// back). Read its fields by value: the structure is packed.
    pub fn xcrb(&self) -> &ica_xcRB {
        &self.xcrb
    }

    /// `agent_ID` as the bytes in memory.
    pub fn agent_id(&self) -> [u8; 2] {
        let id = self.xcrb.agent_ID;
        id.to_ne_bytes()
    }

    /// `user_defined`: the card index, or AUTOSELECT.
    pub fn card(&self) -> u32 {
        self.xcrb.user_defined
    }

    /// Where the request (or, with `reply`, the reply) control block the `ica_xcRB`
    /// describes lies in its buffer, as `copy_from_user` / `copy_to_user` resolve it:
    /// EFAULT when the address lies below the buffer or the end overflows (the caller's
    /// `get` refuses an end past the buffer).
    fn control_block(&self, reply: bool) -> Result<std::ops::Range<usize>, Errno> {
        let x = &self.xcrb;
        let (addr, len, buffer): (_, _, &[u8]) = if reply {
            (
                x.reply_control_blk_addr,
                x.reply_control_blk_length,
                self.reply,
            )
        } else {
            (
                x.request_control_blk_addr,
                x.request_control_blk_length,
                self.request,
            )
        };
        let (addr, base) = (addr as usize, buffer.as_ptr() as usize);
        let start = addr.checked_sub(base).ok_or(Errno::EFAULT)?;
        let end = start.checked_add(len as usize).ok_or(Errno::EFAULT)?;
        Ok(start..end)
    }

    /// The request control block the `ica_xcRB` describes, resolved as `copy_from_user`
    /// would: EFAULT unless address and length lie inside the request buffer.
    pub fn request_block(&self) -> Result<&[u8], Errno> {
        let range = self.control_block(false)?;
        self.request.get(range).ok_or(Errno::EFAULT)
    }

    /// The request data block (mkclone sends none: empty when the address is null and the
    /// length 0, EFAULT otherwise).
    pub fn request_data_block(&self) -> Result<&[u8], Errno> {
        let addr = self.xcrb.request_data_address;
        let len = self.xcrb.request_data_length;
        if addr.is_null() && len == 0 {
            Ok(&[])
        } else {
            Err(Errno::EFAULT)
        }
    }

    /// The address the reply control block starts at, as a number (for checking the
    /// CPRBX's reply-parameter-block address slot).
    pub fn reply_address(&self) -> usize {
        self.xcrb.reply_control_blk_addr as usize
    }

    /// The address the request control block starts at, as a number.
    pub fn request_address(&self) -> usize {
        self.xcrb.request_control_blk_addr as usize
    }

    /// The reply control block the `ica_xcRB` describes (its capacity is
    /// `reply_control_blk_length`), resolved as `copy_to_user` would: EFAULT unless
    /// address and length lie inside the reply buffer.
    pub fn reply_block(&mut self) -> Result<&mut [u8], Errno> {
        let range = self.control_block(true)?;
        self.reply.get_mut(range).ok_or(Errno::EFAULT)
    }

    /// What the kernel writes back after the card answered: the lengths of the reply
    /// control block and reply data block.
    pub fn set_reply_lengths(&mut self, control: u32, data: u32) {
        self.xcrb.reply_control_blk_length = control;
        self.xcrb.reply_data_length = data;
    }

    /// What the kernel writes into `status` when the card reports an AP-level failure.
    pub fn set_status(&mut self, status: u32) {
        self.xcrb.status = status;
    }

    /// The reply control block length (after the call: what the kernel wrote back).
    pub fn reply_control_len(&self) -> u32 {
        self.xcrb.reply_control_blk_length
    }

    /// The reply data length (after the call: what the kernel wrote back).
    pub fn reply_data_len(&self) -> u32 {
        self.xcrb.reply_data_length
    }

    /// `status` as the kernel left it.
    pub fn status(&self) -> u32 {
        self.xcrb.status
    }

    /// The reply buffer (after the call: with what the kernel copied into it).
    pub fn reply_buffer(&self) -> &[u8] {
        self.reply
    }
}

/// A zcrypt device node opened read-write: `/dev/z90crypt` or a zcdn node `/dev/<name>`.
#[derive(Debug)]
pub struct DeviceFile {
    fd: OwnedFd,
    path: PathBuf,
}

impl DeviceFile {
    /// Open `path` read-write (close-on-exec).
    pub fn open(path: &Path) -> Result<Self, Errno> {
        let fd = open(path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }
}

impl ZcryptDevice for DeviceFile {
    fn path(&self) -> &Path {
        &self.path
    }

    /// The ioctl, with every catchable signal blocked in this thread while it lasts.
    ///
    /// Why: the kernel waits for the card's reply with `wait_for_completion_interruptible`
    /// (drivers/s390/crypto/zcrypt_msgtype6.c, `zcrypt_msgtype6_send_cprb`). A signal
    /// ends that wait: the kernel calls `ap_cancel_message`, which drops the reply but
    /// not a request the card already has, and returns -ERESTARTSYS. Without SA_RESTART
    /// the caller sees EINTR (outcome unknown); with SA_RESTART, which signal-hook's
    /// handlers (mkclone's SIGINT/SIGTERM) use, the kernel restarts the ioctl and the
    /// request goes to the card a second time. Blocked, a signal stays pending until the
    /// reply is in and is handled then; the ceremony checks its flag at its next safe
    /// point. SIGKILL and SIGSTOP cannot be blocked (the journal's intent records cover a
    /// kill). SIGSTOP, and the cgroup or suspend freezer, end the wait too and, with no
    /// handler to run, the kernel restarts the ioctl on SIGCONT or thaw: the request goes
    /// to the card twice, which no mask can prevent (docs/ARCHITECTURE.md, zcrypt driver).
    /// So does SIGTSTP taken with its default action by another thread of the process: the
    /// stop is the whole process's, and it ends this thread's wait whatever its mask. So
    /// the call counts itself in flight ([`DeviceCall`]): during a ceremony the command
    /// line catches SIGTSTP, SIGTTIN and SIGTTOU and stops the process only once no call
    /// is (`mkclone::signals`).
    fn send_cprb(&mut self, call: &mut XcrbCall<'_>) -> Result<(), Errno> {
        let _in_flight = DeviceCall::enter();
        let mut previous = SigSet::empty();
        pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&SigSet::all()),
            Some(&mut previous),
        )?;
        let result = self.ioctl(call);
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)?;
        result
    }
}

impl DeviceFile {
    fn ioctl(&mut self, call: &mut XcrbCall<'_>) -> Result<(), Errno> {
        let xcrb = call.for_the_kernel();
        // SAFETY: `xcrb` points to the live ica_xcRB inside `call`, and its request and reply
        // pointers were taken from `call.request` and `call.reply` just now, in their final
        // place (`for_the_kernel`); `call` is borrowed mutably for the whole ioctl and not
        // touched until it returns, so all three pointers stay valid for the kernel's reads
        // and writes. The lengths next to them were set from the same slices just now, in
        // `for_the_kernel` (whatever `set_reply_lengths` wrote before); the data-block
        // pointers are null with length 0. The kernel reads at most request_control_blk_length bytes
        // of the request, writes at most reply_control_blk_length bytes of the reply, and
        // writes back only fields of the ica_xcRB; the fd is open and owned by `self`.
        unsafe { zsecsendcprb(self.fd.as_raw_fd(), xcrb) }.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_describes_its_buffers_and_resolves_only_inside_them() {
        let request = vec![7u8; 224];
        let mut reply = vec![0u8; 300];
        let mut call = XcrbCall::new(3, &request, &mut reply).unwrap();
        assert_eq!(call.agent_id(), *b"CA");
        assert_eq!(call.card(), 3);
        assert_eq!(call.request_block().unwrap().len(), 224);
        assert_eq!(call.request_data_block().unwrap().len(), 0);
        assert_eq!(call.reply_block().unwrap().len(), 300);

        // A length past the buffer is EFAULT, as copy_from_user would make it.
        call.xcrb.request_control_blk_length = 225;
        assert_eq!(call.request_block(), Err(Errno::EFAULT));
        call.xcrb.request_control_blk_length = 224;
        // So is an address outside it.
        call.xcrb.reply_control_blk_addr = std::ptr::null_mut();
        assert_eq!(call.reply_block().map(|b| b.len()), Err(Errno::EFAULT));
    }

    /// What the kernel does with the `ica_xcRB` `DeviceFile::ioctl` hands it in
    /// ZSECSENDCPRB (copy_from_user of the request, copy_to_user of the reply through the
    /// addresses in the control block, the reply length written back into it), then what
    /// `IoctlTransport::read_reply` does (reads `call.reply_buffer()`). Written for Miri,
    /// which checks that the pointers are still valid when the kernel uses them; they were
    /// not while `XcrbCall::new` took them before moving the reply into `Self`. Miri is not
    /// run in CI: run it by hand after touching this module, under both aliasing models:
    /// `cargo +nightly miri test --lib the_kernel_writes_through_the_control_block` and the
    /// same with `MIRIFLAGS=-Zmiri-tree-borrows`. Without Miri the test still checks that
    /// the addresses lead into the buffers.
    #[test]
    fn the_kernel_writes_through_the_control_block_into_the_reply_the_transport_reads() {
        let request = vec![7u8; 224];
        let mut reply = vec![0u8; 300];
        let mut call = XcrbCall::new(3, &request, &mut reply).unwrap();
        let xcrb = call.for_the_kernel();
        // SAFETY: as the kernel uses the control block `DeviceFile::ioctl` hands it: `xcrb`
        // and the addresses in it were just taken by `for_the_kernel`, `call` is not touched
        // until the kernel is done, and every access is inside the lengths next to them.
        unsafe {
            let request_at = std::ptr::addr_of!((*xcrb).request_control_blk_addr).read_unaligned();
            let reply_at = std::ptr::addr_of!((*xcrb).reply_control_blk_addr).read_unaligned();
            let sent = std::slice::from_raw_parts(request_at.cast::<u8>(), 224);
            assert!(sent.iter().all(|&b| b == 7));
            let into = std::slice::from_raw_parts_mut(reply_at.cast::<u8>(), 300);
            into[..4].copy_from_slice(&[0x42, 0x43, 0x44, 0x45]);
            std::ptr::addr_of_mut!((*xcrb).reply_control_blk_length).write_unaligned(4);
        }
        assert_eq!(call.reply_control_len(), 4);
        assert_eq!(call.reply_buffer()[..5], [0x42, 0x43, 0x44, 0x45, 0]);
        // The addresses fakes compare are those the kernel was given.
        assert_eq!(call.reply_address(), call.reply_buffer().as_ptr() as usize);
        assert_eq!(call.request_block().unwrap(), &request[..]);
    }

    /// Lengths set after `new` (the public write-back a fake kernel uses) never reach the
    /// kernel: it is told each buffer's own length, and no data blocks.
    #[test]
    fn the_kernel_is_told_each_buffers_own_length_whatever_was_set_before() {
        let request = vec![7u8; 224];
        let mut reply = vec![0u8; 8];
        let mut call = XcrbCall::new(3, &request, &mut reply).unwrap();
        call.set_reply_lengths(1 << 20, 4096);
        call.for_the_kernel();
        let xcrb = call.xcrb();
        let (reply_len, reply_data, request_len, request_data) = (
            xcrb.reply_control_blk_length,
            xcrb.reply_data_length,
            xcrb.request_control_blk_length,
            xcrb.request_data_length,
        );
        assert_eq!((reply_len, reply_data), (8, 0));
        assert_eq!((request_len, request_data), (224, 0));
    }

    #[test]
    fn a_file_that_is_not_a_zcrypt_device_answers_enotty() {
        let mut dev = DeviceFile::open(Path::new("/dev/null")).unwrap();
        let request = vec![0u8; 224];
        let mut reply = vec![0u8; 224];
        let mut call = XcrbCall::new(0, &request, &mut reply).unwrap();
        assert_eq!(dev.send_cprb(&mut call), Err(Errno::ENOTTY));
        assert_eq!(dev.path(), Path::new("/dev/null"));
    }
}
