//! The FUSE protocol, the few messages a one-file file system needs, written and read
//! field by field. Layouts from the kernel's user-space ABI `include/uapi/linux/fuse.h`
//! (protocol 7.x; integers in the host's byte order). Nothing was copied.
//!
//! A request is a `fuse_in_header` (40 bytes) and its opcode's argument; a reply a
//! `fuse_out_header` (16 bytes: length, -errno, the request's `unique`) and its result.

use std::fmt;

/// Opcodes (`enum fuse_opcode`).
pub mod opcode {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const IOCTL: u32 = 39;
    pub const BATCH_FORGET: u32 = 42;
}

/// The kernel protocol major version this server speaks (FUSE_KERNEL_VERSION).
pub const KERNEL_VERSION: u32 = 7;
/// The minor version it answers with: ioctl (7.11) and everything used here exist by it.
pub const KERNEL_MINOR: u32 = 31;
/// `FUSE_IOCTL_COMPAT`: a 32-bit caller on a 64-bit kernel.
pub const IOCTL_COMPAT: u32 = 1 << 0;
/// `FOPEN_DIRECT_IO | FOPEN_NONSEEKABLE`: reads and writes reach the server (which
/// answers EPERM, as zcrypt does), and the file has no position (zcrypt's
/// `stream_open`).
pub const OPEN_FLAGS: u32 = (1 << 0) | (1 << 2);
/// The smallest read buffer the kernel accepts on /dev/fuse (FUSE_MIN_READ_BUFFER).
pub const MIN_READ_BUFFER: usize = 8192;

pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;

/// A request the server cannot read (shorter than its opcode's argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Short {
    pub what: &'static str,
    pub needed: usize,
    pub available: usize,
}

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} bytes needed, {} available",
            self.what, self.needed, self.available
        )
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

fn need(b: &[u8], len: usize, what: &'static str) -> Result<(), Short> {
    if b.len() < len {
        return Err(Short {
            what,
            needed: len,
            available: b.len(),
        });
    }
    Ok(())
}

/// `struct fuse_in_header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    /// The calling thread, in the server's pid namespace.
    pub pid: u32,
}

impl InHeader {
    pub fn decode(b: &[u8]) -> Result<Self, Short> {
        need(b, IN_HEADER_LEN, "fuse_in_header")?;
        Ok(Self {
            len: u32_at(b, 0),
            opcode: u32_at(b, 4),
            unique: u64_at(b, 8),
            nodeid: u64_at(b, 16),
            uid: u32_at(b, 24),
            gid: u32_at(b, 28),
            pid: u32_at(b, 32),
        })
    }
}

/// `struct fuse_init_in`: what the kernel offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitIn {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
}

impl InitIn {
    pub fn decode(b: &[u8]) -> Result<Self, Short> {
        need(b, 12, "fuse_init_in")?;
        Ok(Self {
            major: u32_at(b, 0),
            minor: u32_at(b, 4),
            max_readahead: u32_at(b, 8),
        })
    }
}

/// `struct fuse_init_out` (64 bytes): no capability flags asked for.
pub fn init_out(init: &InitIn) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&KERNEL_VERSION.to_ne_bytes());
    b.extend_from_slice(&KERNEL_MINOR.min(init.minor).to_ne_bytes());
    b.extend_from_slice(&init.max_readahead.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // flags
    b.extend_from_slice(&1u16.to_ne_bytes()); // max_background
    b.extend_from_slice(&1u16.to_ne_bytes()); // congestion_threshold
    b.extend_from_slice(&4096u32.to_ne_bytes()); // max_write
    b.extend_from_slice(&1u32.to_ne_bytes()); // time_gran
    b.extend_from_slice(&0u16.to_ne_bytes()); // max_pages (unused without the flag)
    b.extend_from_slice(&0u16.to_ne_bytes()); // map_alignment
    b.extend_from_slice(&0u32.to_ne_bytes()); // flags2
    b.resize(64, 0); // unused[7]
    b
}

/// The one file's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// `struct fuse_attr` (88 bytes).
fn put_attr(b: &mut Vec<u8>, a: &Attr) {
    b.extend_from_slice(&a.ino.to_ne_bytes());
    for _ in 0..5 {
        b.extend_from_slice(&0u64.to_ne_bytes()); // size, blocks, atime, mtime, ctime
    }
    for _ in 0..3 {
        b.extend_from_slice(&0u32.to_ne_bytes()); // atimensec, mtimensec, ctimensec
    }
    b.extend_from_slice(&a.mode.to_ne_bytes());
    b.extend_from_slice(&1u32.to_ne_bytes()); // nlink
    b.extend_from_slice(&a.uid.to_ne_bytes());
    b.extend_from_slice(&a.gid.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // rdev
    b.extend_from_slice(&4096u32.to_ne_bytes()); // blksize
    b.extend_from_slice(&0u32.to_ne_bytes()); // flags
}

/// `struct fuse_attr_out` (104 bytes), attributes valid for 0 seconds (not cached).
pub fn attr_out(a: &Attr) -> Vec<u8> {
    let mut b = Vec::with_capacity(104);
    b.extend_from_slice(&0u64.to_ne_bytes()); // attr_valid
    b.extend_from_slice(&0u32.to_ne_bytes()); // attr_valid_nsec
    b.extend_from_slice(&0u32.to_ne_bytes()); // dummy
    put_attr(&mut b, a);
    b
}

/// `struct fuse_open_out` (16 bytes).
pub fn open_out(fh: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&fh.to_ne_bytes());
    b.extend_from_slice(&OPEN_FLAGS.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

/// `struct fuse_statfs_out`: a `fuse_kstatfs` of zeros but the block size and the name
/// length (80 bytes).
pub fn statfs_out() -> Vec<u8> {
    let mut b = vec![0u8; 80];
    b[40..44].copy_from_slice(&4096u32.to_ne_bytes()); // bsize
    b[44..48].copy_from_slice(&255u32.to_ne_bytes()); // namelen
    b[48..52].copy_from_slice(&4096u32.to_ne_bytes()); // frsize
    b
}

/// `struct fuse_ioctl_in` (32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoctlIn {
    pub fh: u64,
    pub flags: u32,
    pub cmd: u32,
    /// The caller's argument, unchanged: for a restricted ioctl on a regular FUSE file
    /// the kernel passes `arg` as the caller gave it (fs/fuse/ioctl.c, `fuse_do_ioctl`:
    /// `inarg.arg = arg`), and with a size-0 number copies nothing in or out.
    pub arg: u64,
    pub in_size: u32,
    pub out_size: u32,
}

impl IoctlIn {
    pub fn decode(b: &[u8]) -> Result<Self, Short> {
        need(b, 32, "fuse_ioctl_in")?;
        Ok(Self {
            fh: u64_at(b, 0),
            flags: u32_at(b, 8),
            cmd: u32_at(b, 12),
            arg: u64_at(b, 16),
            in_size: u32_at(b, 24),
            out_size: u32_at(b, 28),
        })
    }
}

/// `struct fuse_ioctl_out` (16 bytes): the ioctl's return value, no retry, no iovecs.
pub fn ioctl_out(result: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&result.to_ne_bytes());
    b.extend_from_slice(&[0u8; 12]); // flags, in_iovs, out_iovs
    b
}

/// `struct fuse_interrupt_in`: the `unique` of the request to interrupt.
pub fn interrupt_unique(b: &[u8]) -> Result<u64, Short> {
    need(b, 8, "fuse_interrupt_in")?;
    Ok(u64_at(b, 0))
}

/// A reply: `fuse_out_header` (length, `-errno` or 0, `unique`) then `body`.
pub fn reply(unique: u64, errno: i32, body: &[u8]) -> Vec<u8> {
    let len = (OUT_HEADER_LEN + body.len()) as u32;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&(-errno).to_ne_bytes());
    b.extend_from_slice(&unique.to_ne_bytes());
    b.extend_from_slice(body);
    b
}

/// The argument that follows the header: the bytes up to the header's `len`, within
/// what was read.
pub fn argument<'m>(message: &'m [u8], header: &InHeader) -> &'m [u8] {
    let end = (header.len as usize).min(message.len());
    message.get(IN_HEADER_LEN..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    //! Sizes and offsets against include/uapi/linux/fuse.h, written out by hand.

    use super::*;

    #[test]
    fn replies_have_the_uapi_sizes() {
        let init = InitIn {
            major: 7,
            minor: 38,
            max_readahead: 131072,
        };
        assert_eq!(init_out(&init).len(), 64);
        assert_eq!(&init_out(&init)[4..8], &31u32.to_ne_bytes());
        let old = InitIn { minor: 27, ..init };
        assert_eq!(&init_out(&old)[4..8], &27u32.to_ne_bytes());
        let attr = Attr {
            ino: 1,
            mode: 0o100600,
            uid: 0,
            gid: 0,
        };
        let a = attr_out(&attr);
        assert_eq!(a.len(), 104);
        assert_eq!(&a[16..24], &1u64.to_ne_bytes()); // attr.ino
        assert_eq!(&a[16 + 60..16 + 64], &0o100600u32.to_ne_bytes()); // attr.mode
        assert_eq!(open_out(9).len(), 16);
        assert_eq!(statfs_out().len(), 80);
        assert_eq!(ioctl_out(-22).len(), 16);
        let r = reply(0x1234, 25, &[]);
        assert_eq!(r.len(), 16);
        assert_eq!(&r[4..8], &(-25i32).to_ne_bytes());
        assert_eq!(&r[8..16], &0x1234u64.to_ne_bytes());
    }

    #[test]
    fn requests_are_read_at_the_uapi_offsets() {
        let mut m = vec![0u8; 40 + 32];
        m[0..4].copy_from_slice(&72u32.to_ne_bytes());
        m[4..8].copy_from_slice(&opcode::IOCTL.to_ne_bytes());
        m[8..16].copy_from_slice(&77u64.to_ne_bytes());
        m[16..24].copy_from_slice(&1u64.to_ne_bytes());
        m[32..36].copy_from_slice(&4242u32.to_ne_bytes());
        m[40..48].copy_from_slice(&5u64.to_ne_bytes()); // fh
        m[52..56].copy_from_slice(&0xC000_7A81u32.to_ne_bytes()); // cmd
        m[56..64].copy_from_slice(&0x7fff_0000_1234u64.to_ne_bytes()); // arg
        let h = InHeader::decode(&m).unwrap();
        assert_eq!((h.len, h.opcode, h.unique, h.pid), (72, 39, 77, 4242));
        let io = IoctlIn::decode(argument(&m, &h)).unwrap();
        assert_eq!((io.fh, io.cmd, io.arg), (5, 0xC000_7A81, 0x7fff_0000_1234));
        assert_eq!((io.in_size, io.out_size), (0, 0));
        assert!(IoctlIn::decode(&m[40..60]).is_err());
        assert!(InHeader::decode(&m[..39]).is_err());
    }
}
