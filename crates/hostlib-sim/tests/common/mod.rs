//! A simulated machine for one test: a private copy of the simulated CCA host library in
//! a temporary directory (a separate dlopen handle, so separate library state), and its
//! cards there (hw-sim's files).

#![allow(dead_code)]

use std::cell::Cell;
use std::path::{Path, PathBuf};

use mkclone_backend::SerialNumber;
use mkclone_hostlib::{HostlibBackend, HostlibNodeConfig};
use mkclone_hw_sim::{Apqn, SimBus};

/// The library cargo built for these tests (target/<profile>/libmkclone_simcca.so).
pub fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("target/<profile>/deps");
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        let candidate = dir.join("libmkclone_simcca.so");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!(
        "libmkclone_simcca.so was not found next to {} (cargo builds it with this package's \
         library target; run the tests through cargo)",
        exe.display()
    );
}

pub struct SimMachine {
    pub dir: tempfile::TempDir,
    pub library: PathBuf,
    made: Cell<u8>,
}

impl SimMachine {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let library = dir.path().join("libcsulcca.so");
        std::fs::copy(built_library(), &library).expect("copy the simulated library");
        Self {
            dir,
            library,
            made: Cell::new(0),
        }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// A factory-fresh card (domain 0, the library's default) with serial `serial`.
    pub fn card(&self, serial: &str) -> u8 {
        let n = self.made.get() + 1;
        self.made.set(n);
        SimBus::new(self.home())
            .create_card(
                Apqn::new(n, 0).expect("apqn"),
                &SerialNumber::new(serial).expect("serial"),
            )
            .expect("create the card");
        n
    }

    pub fn config(&self, serial: &str) -> HostlibNodeConfig {
        HostlibNodeConfig {
            library: Some(self.library.clone()),
            mk_library: Some(self.library.clone()),
            expect_serial: Some(SerialNumber::new(serial).expect("serial")),
            ..HostlibNodeConfig::default()
        }
    }

    /// A new card and a node on it.
    pub fn node(&self) -> HostlibBackend {
        let serial = format!("HL{:06}", self.made.get() + 1);
        self.card(&serial);
        HostlibBackend::open(&self.config(&serial)).expect("open the node")
    }

    /// Write simlib.json (what the library is told to do wrong).
    pub fn control(&self, json: serde_json::Value) {
        std::fs::write(self.home().join("simlib.json"), json.to_string()).expect("simlib.json");
    }
}

/// The verbs IBM's library exports (and this project's header declares), with their number
/// of parameters: what a library "like IBM's" must export.
const IBM_VERBS: [(&str, usize); 14] = [
    ("CSUACFQ", 8),
    ("CSUACFV", 6),
    ("CSUACRA", 8),
    ("CSUACRD", 8),
    ("CSUAACM", 9),
    ("CSNDPKB", 22),
    ("CSNDPKG", 13),
    ("CSNDPKX", 10),
    ("CSNDRKL", 10),
    ("CSNDRKD", 7),
    ("CSNDPKH", 9),
    ("CSNDPKR", 9),
    ("CSUAMKD", 15),
    ("CSNBMKP", 7),
];

impl SimMachine {
    /// A library that looks like IBM's to mkclone: a tiny C shared object exporting every
    /// verb (each forwarding its pointers to this machine's simulated library) and neither
    /// of the simulated library's own symbols. Compiled with the C compiler cargo links
    /// with (`cc`).
    pub fn ibm_like_library(&self) -> PathBuf {
        let mut c = String::from(
            "#include <dlfcn.h>\n\
             static void *target(const char *name) {\n\
             \x20   static void *h;\n\
             \x20   if (!h) h = dlopen(TARGET, RTLD_NOW | RTLD_LOCAL);\n\
             \x20   return h ? dlsym(h, name) : 0;\n\
             }\n",
        );
        for (verb, n) in IBM_VERBS {
            let params: Vec<String> = (0..n).map(|i| format!("void *p{i}")).collect();
            let types = vec!["void *"; n].join(", ");
            let args: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
            c.push_str(&format!(
                "void {verb}({}) {{\n    void (*f)({types}) = (void (*)({types}))target(\"{verb}\");\n    \
                 if (!f) {{ *(long *)p0 = 12; *(long *)p1 = 338; return; }}\n    f({});\n}}\n",
                params.join(", "),
                args.join(", ")
            ));
        }
        let source = self.dir.path().join("ibmlike.c");
        std::fs::write(&source, c).expect("write the shim's source");
        let out = self.dir.path().join("libibmlike.so");
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O0", "-o"])
            .arg(&out)
            .arg(format!("-DTARGET=\"{}\"", self.library.display()))
            .arg(&source)
            .arg("-ldl")
            .status()
            .expect("`cc` (the C compiler cargo links with) is needed to build the IBM-like test library");
        assert!(status.success(), "cc failed to build the IBM-like library");
        out
    }
}
