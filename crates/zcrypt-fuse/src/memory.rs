//! The caller's memory, reached as the kernel's `copy_from_user` and `copy_to_user`
//! reach it: at the addresses the caller passed, with EFAULT for anything that cannot be
//! read or written whole.
//!
//! A FUSE server sees only the raw `arg` of a size-0 ioctl (fs/fuse/ioctl.c), so it
//! follows the pointers itself, with process_vm_readv(2) and process_vm_writev(2) on the
//! calling thread (`fuse_in_header.pid`).

use std::io::{IoSlice, IoSliceMut};

use nix::errno::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;

/// Memory of the process that made the ioctl.
pub trait UserMemory {
    /// `len` bytes at `addr`, or EFAULT.
    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Errno>;
    /// Write `bytes` at `addr`, or EFAULT.
    fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), Errno>;
}

/// The memory of the thread `pid` (a thread id works: every thread shares its
/// process's address space).
pub struct Process {
    pid: Pid,
}

impl Process {
    pub fn new(pid: u32) -> Self {
        Self {
            pid: Pid::from_raw(pid as i32),
        }
    }
}

fn remote(addr: u64, len: usize) -> Result<RemoteIoVec, Errno> {
    let base = usize::try_from(addr).map_err(|_| Errno::EFAULT)?;
    base.checked_add(len).ok_or(Errno::EFAULT)?;
    Ok(RemoteIoVec { base, len })
}

impl UserMemory for Process {
    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; len];
        if len == 0 {
            return Ok(buf);
        }
        let remote = [remote(addr, len)?];
        let n = process_vm_readv(self.pid, &mut [IoSliceMut::new(&mut buf)], &remote)
            .map_err(|_| Errno::EFAULT)?;
        if n != len {
            return Err(Errno::EFAULT);
        }
        Ok(buf)
    }

    fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
        if bytes.is_empty() {
            return Ok(());
        }
        let remote = [remote(addr, bytes.len())?];
        let n = process_vm_writev(self.pid, &[IoSlice::new(bytes)], &remote)
            .map_err(|_| Errno::EFAULT)?;
        if n != bytes.len() {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_reads_and_writes_and_a_bad_address_is_efault() {
        let me = Process::new(std::process::id());
        let mut data = vec![1u8, 2, 3, 4];
        let addr = data.as_mut_ptr() as u64;
        assert_eq!(me.read(addr, 4).unwrap(), [1, 2, 3, 4]);
        me.write(addr + 1, &[9, 9]).unwrap();
        assert_eq!(std::hint::black_box(&data)[..], [1, 9, 9, 4]);
        assert_eq!(me.read(0, 4), Err(Errno::EFAULT));
        assert_eq!(me.write(8, &[0]), Err(Errno::EFAULT));
        assert_eq!(me.read(u64::MAX - 1, 4), Err(Errno::EFAULT));
        assert_eq!(me.read(0, 0).unwrap(), Vec::<u8>::new());
    }
}
