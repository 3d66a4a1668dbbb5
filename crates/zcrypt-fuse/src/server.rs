//! A zcrypt device node: one regular file, mounted as a FUSE file system of its own on a
//! placeholder file, whose ioctls the [`ZcryptModel`] answers.
//!
//! The FUSE protocol is spoken directly on /dev/fuse (no libfuse): INIT, GETATTR, OPEN,
//! IOCTL, FLUSH, RELEASE, STATFS, DESTROY; READ and WRITE answer EPERM as zcrypt's do
//! (zcrypt_api.c, `zcrypt_read`/`zcrypt_write`); the rest ENOSYS.
//!
//! Why a FUSE file and not CUSE: ZSECSENDCPRB is `_IOC(_IOC_READ|_IOC_WRITE, 'z', 0x81,
//! 0)`. On a regular FUSE file the kernel runs every ioctl restricted (fs/fuse/ioctl.c,
//! `fuse_file_ioctl` -> `fuse_do_ioctl` with flags 0): it copies `_IOC_SIZE(cmd)` bytes
//! in and out, here none, and passes the caller's `arg` to the server unchanged
//! (`inarg.arg = arg`). The server then reads and writes the caller's memory at the
//! addresses in the `ica_xcRB` itself (process_vm_readv/writev, `memory`), as the
//! driver's copy_from_user/copy_to_user do, and answers the ioctl's return value in
//! `fuse_ioctl_out.result`. The caller's side is unchanged: open(2) and ioctl(2).
//!
//! Needs /dev/fuse (the fuse module) and the right to mount (CAP_SYS_ADMIN).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use log::{debug, warn};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use thiserror::Error;

use crate::memory::Process;
use crate::model::ZcryptModel;
use crate::wire::{self, InHeader, opcode};

/// Where the kernel's FUSE device is.
pub const DEV_FUSE: &str = "/dev/fuse";

/// How the node answers ioctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A zcrypt node: the model answers.
    Zcrypt,
    /// A file that is not a zcrypt device: its server has no ioctl (ENOSYS), which the
    /// kernel's FUSE module reports to the caller as ENOTTY (fs/fuse/ioctl.c,
    /// `fuse_send_ioctl`), as any non-zcrypt file answers ZSECSENDCPRB.
    NotZcrypt,
}

/// Why a node could not be served.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error(
        "{DEV_FUSE} does not exist, so no zcrypt node can be served through FUSE: load the fuse \
         module (`modprobe fuse`) and install fuse3 (apt-get install fuse3; scripts/test does both)"
    )]
    NoFuse,
    #[error("cannot open {DEV_FUSE}: {0} (run as root, or give this user access to {DEV_FUSE})")]
    OpenFuse(#[source] std::io::Error),
    #[error("cannot create the placeholder file {path}: {source}")]
    Placeholder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot mount a FUSE file system on {path}: {errno} ({}). Mounting needs CAP_SYS_ADMIN: \
         run as root (CI does)",
        errno.desc()
    )]
    Mount { path: PathBuf, errno: Errno },
    #[error("cannot start the FUSE server thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A served node. Dropping it unmounts the node and stops its server.
pub struct ZcryptNode {
    path: PathBuf,
    model: Arc<Mutex<ZcryptModel>>,
    stop: Arc<AtomicBool>,
    interrupts: Arc<AtomicU64>,
    server: Option<JoinHandle<()>>,
}

impl ZcryptNode {
    /// Serve `model` as a zcrypt node at `path` (a regular file, created 0600 if
    /// missing; a file system of its own is mounted over it).
    pub fn serve(path: &Path, model: ZcryptModel, kind: NodeKind) -> Result<Self, ServeError> {
        if !Path::new(DEV_FUSE).exists() {
            return Err(ServeError::NoFuse);
        }
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| ServeError::Placeholder {
                path: path.to_path_buf(),
                source,
            })?;
        let fuse = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc_cloexec())
            .open(DEV_FUSE)
            .map_err(ServeError::OpenFuse)?;
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        // rootmode: the root inode is a regular file (S_IFREG, octal), so the file system
        // can be mounted on a file; allow_other: another user's mkclone may open it.
        let options = format!(
            "fd={},rootmode=100000,user_id={uid},group_id={gid},allow_other",
            fuse.as_raw_fd()
        );
        mount(
            Some("mkclone-zcrypt-sim"),
            path,
            Some("fuse.mkclone-zcrypt"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|errno| ServeError::Mount {
            path: path.to_path_buf(),
            errno,
        })?;
        let model = Arc::new(Mutex::new(model));
        let stop = Arc::new(AtomicBool::new(false));
        let interrupts = Arc::new(AtomicU64::new(0));
        let server = Server {
            fuse,
            model: model.clone(),
            stop: stop.clone(),
            interrupts: interrupts.clone(),
            kind,
            attr: wire::Attr {
                ino: 1,
                mode: 0o100_600,
                uid: uid.as_raw(),
                gid: gid.as_raw(),
            },
            next_fh: 1,
        };
        let handle = std::thread::Builder::new()
            .name("zcrypt-fuse".into())
            .spawn(move || server.run())
            .map_err(|e| {
                let _ = umount2(path, MntFlags::MNT_DETACH);
                ServeError::Thread(e)
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            model,
            stop,
            interrupts,
            server: Some(handle),
        })
    }

    /// The node's path: what a configuration names as `device`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many FUSE_INTERRUPT requests this server read. The kernel queues one when a
    /// signal or a stop ends a caller's wait on the node (fs/fuse/dev.c,
    /// `request_wait_answer`), but drops it unread once the request is answered
    /// (`fuse_request_end`), and this server answers each request before it reads the
    /// next: an interrupt of a request the model is still working on (a [`Fault::Delay`])
    /// is never counted. A test of a cut wait looks at the caller instead.
    ///
    /// [`Fault::Delay`]: crate::Fault::Delay
    pub fn interrupts(&self) -> u64 {
        self.interrupts.load(Ordering::SeqCst)
    }

    /// The model, to set faults, change cards or read the calls.
    pub fn model(&self) -> MutexGuard<'_, ZcryptModel> {
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for ZcryptNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = umount2(&self.path, MntFlags::MNT_DETACH) {
            warn!("cannot unmount {}: {e}", self.path.display());
        }
        if let Some(server) = self.server.take()
            && server.join().is_err()
        {
            warn!("the FUSE server of {} panicked", self.path.display());
        }
    }
}

fn libc_cloexec() -> i32 {
    nix::fcntl::OFlag::O_CLOEXEC.bits()
}

struct Server {
    fuse: File,
    model: Arc<Mutex<ZcryptModel>>,
    stop: Arc<AtomicBool>,
    interrupts: Arc<AtomicU64>,
    kind: NodeKind,
    attr: wire::Attr,
    next_fh: u64,
}

/// What to do with a request.
enum Answer {
    Reply(Vec<u8>),
    Error(Errno),
    /// FORGET, BATCH_FORGET, INTERRUPT: no reply.
    Nothing,
    /// DESTROY: reply, then stop.
    Last,
}

impl Server {
    fn run(mut self) {
        // The kernel wants room for a whole request: header + max_write (4096) and more.
        let mut buf = vec![0u8; wire::MIN_READ_BUFFER.max(1 << 20)];
        while !self.stop.load(Ordering::SeqCst) {
            let ready = {
                let mut fds = [PollFd::new(self.fuse.as_fd(), PollFlags::POLLIN)];
                poll(&mut fds, PollTimeout::from(100u16))
            };
            match ready {
                Ok(0) => continue,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!("poll on {DEV_FUSE}: {e}");
                    return;
                }
            }
            let n = match self.fuse.read(&mut buf) {
                Ok(n) => n,
                // ENOENT: the request was interrupted before it was read.
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::NotFound) => {
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(Errno::EAGAIN as i32) => continue,
                // ENODEV: unmounted.
                Err(e) => {
                    debug!("{DEV_FUSE} closed: {e}");
                    return;
                }
            };
            if !self.handle(&buf[..n]) {
                return;
            }
        }
    }

    /// Answer one request; false when the file system is done.
    fn handle(&mut self, message: &[u8]) -> bool {
        let header = match InHeader::decode(message) {
            Ok(h) => h,
            Err(e) => {
                warn!("unreadable FUSE request: {e}");
                return true;
            }
        };
        let arg = wire::argument(message, &header);
        let answer = self.answer(&header, arg);
        let (bytes, go_on) = match answer {
            Answer::Reply(body) => (wire::reply(header.unique, 0, &body), true),
            Answer::Error(errno) => (wire::reply(header.unique, errno as i32, &[]), true),
            Answer::Nothing => return true,
            Answer::Last => (wire::reply(header.unique, 0, &[]), false),
        };
        if let Err(e) = self.fuse.write_all(&bytes) {
            // ENOENT: the request was interrupted and is no longer waited for.
            debug!("reply to FUSE request {}: {e}", header.unique);
        }
        go_on
    }

    fn answer(&mut self, header: &InHeader, arg: &[u8]) -> Answer {
        match header.opcode {
            opcode::INIT => match wire::InitIn::decode(arg) {
                Ok(init) if init.major == wire::KERNEL_VERSION => {
                    Answer::Reply(wire::init_out(&init))
                }
                Ok(init) => {
                    warn!("FUSE protocol {}.{} is not 7.x", init.major, init.minor);
                    Answer::Error(Errno::EPROTO)
                }
                Err(_) => Answer::Error(Errno::EINVAL),
            },
            opcode::GETATTR => Answer::Reply(wire::attr_out(&self.attr)),
            opcode::LOOKUP => Answer::Error(Errno::ENOENT),
            opcode::OPEN => {
                let fh = self.next_fh;
                self.next_fh += 1;
                Answer::Reply(wire::open_out(fh))
            }
            opcode::READ | opcode::WRITE => Answer::Error(Errno::EPERM),
            opcode::FLUSH | opcode::RELEASE => Answer::Reply(Vec::new()),
            opcode::STATFS => Answer::Reply(wire::statfs_out()),
            opcode::INTERRUPT => {
                // Requests are answered in order, so the interrupted one is answered
                // already or will be: nothing to do but count it.
                self.interrupts.fetch_add(1, Ordering::SeqCst);
                Answer::Nothing
            }
            opcode::FORGET | opcode::BATCH_FORGET => Answer::Nothing,
            opcode::DESTROY => Answer::Last,
            opcode::IOCTL => self.ioctl(header, arg),
            _ => Answer::Error(Errno::ENOSYS),
        }
    }

    fn ioctl(&mut self, header: &InHeader, arg: &[u8]) -> Answer {
        let Ok(io) = wire::IoctlIn::decode(arg) else {
            return Answer::Error(Errno::EINVAL);
        };
        if self.kind == NodeKind::NotZcrypt {
            return Answer::Error(Errno::ENOSYS);
        }
        if io.flags & wire::IOCTL_COMPAT != 0 {
            // A 32-bit caller (the driver's zcrypt_compat_ioctl) is not modelled.
            return Answer::Reply(wire::ioctl_out(-(Errno::ENOTTY as i32)));
        }
        let memory = Process::new(header.pid);
        let result = self
            .model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .ioctl(&memory, header.pid, io.cmd, io.arg);
        Answer::Reply(wire::ioctl_out(result))
    }
}

impl ZcryptNode {
    /// Whether the node is mounted: its file lies on another device than its directory.
    pub fn is_mounted(&self) -> bool {
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        match (std::fs::metadata(&self.path), std::fs::metadata(parent)) {
            (Ok(node), Ok(dir)) => node.dev() != dir.dev(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine without /dev/fuse gets the reason and the fix, never a silent skip.
    #[test]
    fn the_errors_say_what_is_missing_and_how_to_get_it() {
        let text = ServeError::NoFuse.to_string();
        for says in ["/dev/fuse does not exist", "modprobe fuse", "scripts/test"] {
            assert!(text.contains(says), "{text}");
        }
        let text = ServeError::Mount {
            path: PathBuf::from("/tmp/x/zcrypt_0"),
            errno: Errno::EPERM,
        }
        .to_string();
        assert!(
            text.contains("CAP_SYS_ADMIN") && text.contains("/tmp/x/zcrypt_0"),
            "{text}"
        );
    }
}
