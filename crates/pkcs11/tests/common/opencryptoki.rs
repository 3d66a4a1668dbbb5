//! A private opencryptoki for one test: its soft token (the `libpkcs11_sw.so` STDLL) behind
//! its own slot daemon, isolated from the machine's.
//!
//! opencryptoki 3.8.1 (Debian 12) compiles its paths in: the configuration
//! `/etc/opencryptoki/opencryptoki.conf`, the token store `/var/lib/opencryptoki/swtok`, the
//! daemon's socket and pid file in `/run`, locks in `/var/lock/opencryptoki`, and shared
//! memory (`/dev/shm`, and System V IPC keyed by the daemon's path). No environment variable
//! moves them. So each test that needs it runs in a child process of its own, in new mount,
//! IPC and PID namespaces (`unshare`, as root), where those paths are private: a tmpfs on
//! `/run` and `/dev/shm`, bind mounts of a fresh temporary directory on
//! `/etc/opencryptoki` and `/var/lib/opencryptoki`. There it starts `pkcsslotd` and
//! initializes the soft token through PKCS#11 itself (C_InitToken with the default SO PIN,
//! C_SetPIN of the SO PIN, C_InitPIN). Nothing of the machine's opencryptoki is read or
//! changed, every run starts from a fresh token, and when the test process (PID 1 of its
//! namespace) exits the kernel ends the daemon and drops every mount.
//!
//! Missing opencryptoki, or no right to make namespaces: the test fails with what to do,
//! never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use mkclone_pkcs11::{PinSource, Pkcs11NodeConfig, shared_module};

/// The module applications load (Debian's libopencryptoki0).
pub const MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so";
const DAEMON: &str = "/usr/sbin/pkcsslotd";
/// The soft token's default SO PIN (opencryptoki's documentation: "87654321").
const DEFAULT_SO_PIN: &str = "87654321";
/// PINs of the test token: opencryptoki's soft token takes 4 to 8 characters.
pub const SO_PIN: &str = "so-51234";
pub const USER_PIN: &str = "usr-7788";
/// The slot the private configuration gives the soft token.
pub const SLOT: u64 = 0;

/// Set in the child that runs inside the namespaces.
const INSIDE: &str = "MKCLONE_TEST_OPENCRYPTOKI_NAMESPACE";

/// Run the test named `test` (this test binary's `#[test]` of that name) inside private
/// namespaces with a running opencryptoki. Returns `true` in the child, where the caller
/// then does the test's work; in the parent it waits for the child, fails with its output if
/// it failed, and returns `false`.
pub fn in_private_opencryptoki(test: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    for (path, what) in [(MODULE, "the PKCS#11 module"), (DAEMON, "the slot daemon")] {
        assert!(
            Path::new(path).exists(),
            "{path} ({what} of opencryptoki) is missing. These tests need opencryptoki: \
             `apt-get install opencryptoki` (scripts/test does this)"
        );
    }
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--ipc",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
        ])
        .arg(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("unshare (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("unshare failed") || text.contains("Operation not permitted") {
        panic!(
            "these tests run opencryptoki in private mount, IPC and PID namespaces (its paths \
             are compiled in, so that is the only way to keep the machine's opencryptoki \
             untouched), which needs root (CAP_SYS_ADMIN). unshare said:\n{text}"
        );
    }
    assert!(
        out.status.success(),
        "{test} failed inside its private opencryptoki:\n{text}"
    );
    assert!(
        text.contains(&format!("test {test} ... ok")),
        "{test} did not run inside its private opencryptoki (was it renamed?):\n{text}"
    );
    false
}

/// The private opencryptoki of this (child) process: its directory lives as long as the
/// process.
pub struct Opencryptoki {
    dir: tempfile::TempDir,
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mount(args: &[&str]) {
    run(
        &format!("mount {}", args.join(" ")),
        Command::new("mount").args(args),
    );
}

/// Owned by root, group pkcs11, mode 0770: what opencryptoki's packaging gives its
/// directories (the daemon and the library refuse others).
fn pkcs11_group(path: &Path) {
    run(
        "chgrp pkcs11",
        Command::new("chgrp").args(["-R", "pkcs11"]).arg(path),
    );
    run(
        "chmod 0770",
        Command::new("chmod").args(["-R", "0770"]).arg(path),
    );
}

impl Opencryptoki {
    /// Set up the private opencryptoki (inside the namespaces: [`in_private_opencryptoki`]
    /// returned `true`) and start its daemon.
    pub fn start() -> Self {
        assert!(
            std::env::var_os(INSIDE).is_some(),
            "Opencryptoki::start runs only inside in_private_opencryptoki's namespaces"
        );
        let dir = tempfile::Builder::new()
            .prefix("mkclone-opencryptoki-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temporary directory");
        let etc = dir.path().join("etc");
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(lib.join("swtok/TOK_OBJ")).unwrap();
        std::fs::write(
            etc.join("opencryptoki.conf"),
            format!("version opencryptoki-3.1\n\nslot {SLOT}\n{{\nstdll = libpkcs11_sw.so\n}}\n"),
        )
        .unwrap();
        pkcs11_group(&lib);
        // Private /run (the daemon's socket and pid file; /var/run and /var/lock lead there)
        // and /dev/shm (the token's shared memory).
        mount(&["-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"]);
        mount(&["-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/dev/shm"]);
        let etc_s = etc.to_str().unwrap();
        let lib_s = lib.to_str().unwrap();
        mount(&["--bind", etc_s, "/etc/opencryptoki"]);
        mount(&["--bind", lib_s, "/var/lib/opencryptoki"]);
        let locks = PathBuf::from("/run/lock/opencryptoki/swtok");
        std::fs::create_dir_all(&locks).unwrap();
        pkcs11_group(Path::new("/run/lock/opencryptoki"));
        run("pkcsslotd", &mut Command::new(DAEMON));
        let socket = Path::new("/run/pkcsslotd.socket");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "pkcsslotd did not create {} within 20 s",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { dir }
    }

    /// Initialize the soft token labelled `label` (C_InitToken with the default SO PIN,
    /// a new SO PIN, the user PIN) and return a node's configuration for it.
    pub fn init_token(&self, label: &str) -> Pkcs11NodeConfig {
        let pkcs11 = shared_module(Path::new(MODULE)).expect("opencryptoki's module loads");
        let slot = pkcs11
            .get_all_slots()
            .unwrap()
            .into_iter()
            .find(|s| s.id() == SLOT)
            .expect("the soft token's slot");
        pkcs11
            .init_token(slot, &AuthPin::new(DEFAULT_SO_PIN.into()), label)
            .expect("C_InitToken with the default SO PIN");
        let session = pkcs11.open_rw_session(slot).unwrap();
        session
            .login(UserType::So, Some(&AuthPin::new(DEFAULT_SO_PIN.into())))
            .unwrap();
        session
            .set_pin(
                &AuthPin::new(DEFAULT_SO_PIN.into()),
                &AuthPin::new(SO_PIN.into()),
            )
            .expect("C_SetPIN of the SO PIN");
        session
            .init_pin(&AuthPin::new(USER_PIN.into()))
            .expect("C_InitPIN");
        session.logout().unwrap();
        drop(session);
        let so_pin = self.dir.path().join("so.pin");
        std::fs::write(&so_pin, SO_PIN).unwrap();
        std::fs::set_permissions(&so_pin, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        Pkcs11NodeConfig {
            module: MODULE.into(),
            token: label.into(),
            expect_token_serial: None,
            pin: PinSource::Env("MKCLONE_TEST_UNUSED_PIN_VARIABLE".into()),
            so_pin: Some(PinSource::File(so_pin)),
            token_match: Default::default(),
        }
    }
}
