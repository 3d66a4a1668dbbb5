//! The argument vector of one verb call, exactly as the C function receives it, built by
//! the wrappers in [`crate::verbs`] and read back after the call. Pure data: the unit
//! tests compare what a wrapper builds with vectors assembled by hand from the published
//! parameter lists (vendor-headers/csulcca.h cites one per verb).

use std::fmt;

/// The verbs mkclone calls.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Verb {
    Csuacfq,
    Csuacfv,
    Csuacra,
    Csuacrd,
    Csuaacm,
    Csndpkb,
    Csndpkg,
    Csndpkx,
    Csndrkl,
    Csndrkd,
    Csndpkh,
    Csndpkr,
    Csuamkd,
    Csnbmkp,
}

impl Verb {
    /// The exported symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Csuacfq => "CSUACFQ",
            Self::Csuacfv => "CSUACFV",
            Self::Csuacra => "CSUACRA",
            Self::Csuacrd => "CSUACRD",
            Self::Csuaacm => "CSUAACM",
            Self::Csndpkb => "CSNDPKB",
            Self::Csndpkg => "CSNDPKG",
            Self::Csndpkx => "CSNDPKX",
            Self::Csndrkl => "CSNDRKL",
            Self::Csndrkd => "CSNDRKD",
            Self::Csndpkh => "CSNDPKH",
            Self::Csndpkr => "CSNDPKR",
            Self::Csuamkd => "CSUAMKD",
            Self::Csnbmkp => "CSNBMKP",
        }
    }

    /// Every verb resolved from libcsulcca.so when a node opens (CSNBMKP comes from
    /// libcsulccamk.so, resolved when first needed).
    pub const MAIN: [Verb; 13] = [
        Self::Csuacfq,
        Self::Csuacfv,
        Self::Csuacra,
        Self::Csuacrd,
        Self::Csuaacm,
        Self::Csndpkb,
        Self::Csndpkg,
        Self::Csndpkx,
        Self::Csndrkl,
        Self::Csndrkd,
        Self::Csndpkh,
        Self::Csndpkr,
        Self::Csuamkd,
    ];

    pub fn from_symbol(name: &str) -> Option<Verb> {
        Self::MAIN
            .into_iter()
            .chain([Self::Csnbmkp])
            .find(|v| v.symbol() == name)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// The size of one key label or name field (CCA's 64-byte labels).
pub const LABEL_LEN: usize = 64;

/// What each parameter after the head is, in the order vendor-headers/csulcca.h lists
/// them for the verb (its `ffi::<VERB>_t`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Slot {
    /// A length (`long *`, in/out) and the buffer it measures (`unsigned char *`).
    Buf,
    /// An `unsigned char *` the library reads or writes at the size the verb fixes.
    Field(usize),
    /// CSNDRKL's key_labels: [`LABEL_LEN`] bytes per label, as many as the `Int` before it
    /// (key_labels_count) says.
    Labels,
    /// One `long *`.
    Int,
}

/// The parameter list of `verb` after the head, with each fixed field's size, from the
/// parameter list the header cites for it ([BSR 2.54] Format tables; the same table is
/// fuzz/src/hostlib.rs's `EXPORTS`): names and labels are 64 bytes (CSNDPKG's
/// transport_key_identifier, a key label or null key token, too), CSUAACM's role name 8,
/// CSNBMKP's key part 24.
pub fn layout(verb: Verb) -> &'static [Slot] {
    use Slot::{Buf, Field, Int, Labels};
    const NAME: Slot = Field(LABEL_LEN);
    match verb {
        Verb::Csuacfq | Verb::Csuacra | Verb::Csuacrd | Verb::Csuacfv => &[Buf],
        Verb::Csuaacm => &[Field(8), Buf],
        Verb::Csndpkh | Verb::Csndpkr => &[NAME, Buf],
        Verb::Csndpkb => &[Buf; 8],
        Verb::Csndpkg => &[Buf, Buf, NAME, Buf],
        Verb::Csndpkx => &[Buf, Buf],
        Verb::Csndrkl => &[NAME, Int, Int, Labels],
        Verb::Csndrkd => &[NAME],
        Verb::Csnbmkp => &[Field(24)],
        Verb::Csuamkd => &[Int, NAME, NAME, Buf, Buf, Buf],
    }
}

/// One parameter after the common head.
#[derive(Clone, PartialEq, Eq)]
pub enum Param {
    /// A pointer to one `long` (input, output or both).
    Int(i64),
    /// A length (`long *`, in/out) followed by the buffer it measures.
    Buf { len: i64, data: Vec<u8> },
    /// A buffer of a size the verb fixes (a 64-byte name, a 24-byte key part).
    Field(Vec<u8>),
}

impl fmt::Debug for Param {
    // Lengths only: a buffer may hold key material or a share (the trace's rule too).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(v) => write!(f, "Int({v})"),
            Self::Buf { len, data } => write!(f, "Buf(len {len}, room {})", data.len()),
            Self::Field(d) => write!(f, "Field({} bytes)", d.len()),
        }
    }
}

/// A keyword of the rule array: 8 bytes, left-justified, blank padded.
pub fn keyword(text: &str) -> [u8; 8] {
    let mut k = [b' '; 8];
    let bytes = text.as_bytes();
    let n = bytes.len().min(8);
    k[..n].copy_from_slice(&bytes[..n]);
    k
}

/// A 64-byte blank-padded name field (key labels, registered names).
pub fn name64(text: &str) -> Vec<u8> {
    let mut v = vec![b' '; 64];
    let n = text.len().min(64);
    v[..n].copy_from_slice(&text.as_bytes()[..n]);
    v
}

/// A verb call: the verb, its rule array and the parameters after the common head. After
/// the call it also holds the codes and the outputs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Args {
    pub verb: Verb,
    /// `rule_array_count * 8` bytes (CSUACFQ returns more elements than it takes: the
    /// buffer is larger than the count then).
    pub rule_array: Vec<u8>,
    pub rule_count: i64,
    pub params: Vec<Param>,
    pub return_code: i64,
    pub reason_code: i64,
}

impl Args {
    pub fn new(verb: Verb, rules: &[&str], params: Vec<Param>) -> Self {
        let rule_array: Vec<u8> = rules.iter().flat_map(|r| keyword(r)).collect();
        Self {
            verb,
            rule_count: rules.len() as i64,
            rule_array,
            params,
            return_code: -1,
            reason_code: -1,
        }
    }

    /// Room for `elements` rule-array elements on output (CSUACFQ).
    pub fn with_rule_room(mut self, elements: usize) -> Self {
        self.rule_array.resize(elements * 8, b' ');
        self
    }

    /// The keywords given (input) or returned (output), as text.
    pub fn rule_keywords(&self) -> Vec<String> {
        let count = usize::try_from(self.rule_count.max(0)).unwrap_or(0);
        self.rule_array
            .chunks(8)
            .take(count)
            .map(|k| String::from_utf8_lossy(k).trim_end().to_string())
            .collect()
    }

    /// The `i`-th output rule-array element (0-based), 8 bytes, when the verb returned it.
    pub fn element(&self, i: usize) -> Option<&[u8]> {
        let count = usize::try_from(self.rule_count.max(0)).unwrap_or(0);
        if i >= count {
            return None;
        }
        self.rule_array.get(i * 8..i * 8 + 8)
    }

    /// Check the vector against its verb's parameter list ([`layout`]) before any pointer
    /// is handed over: a rule array of at least `rule_count` elements (CSUACFQ's of
    /// [`crate::verbs::RULE_ROOM`], the room for its answer), as many parameters as the verb
    /// takes, each of the kind its position takes, every buffer at least as long as the
    /// length that describes it, every fixed field exactly the verb's size, and CSNDRKL's
    /// label list room for as many labels as its count says. The library reads and writes
    /// each pointer as the verb's C prototype says (a 64-byte name is read as 64 bytes
    /// whatever the `Vec` holds), so this is what keeps it inside the vector's buffers. The
    /// builders in [`crate::verbs`] make vectors that pass; `Args` and `Param` are public,
    /// so the check does not rely on them.
    pub fn check_shape(&self) -> Result<(), String> {
        if self.rule_count < 0 || (self.rule_count as usize) * 8 > self.rule_array.len() {
            return Err(format!(
                "{}: rule array of {} bytes for a count of {}",
                self.verb,
                self.rule_array.len(),
                self.rule_count
            ));
        }
        // CSUACFQ writes its answer's elements over the rule array, and nothing tells the
        // library how much room there is: the caller gives the room IBM's callers give.
        let room = crate::verbs::RULE_ROOM;
        if self.verb == Verb::Csuacfq && self.rule_array.len() < room * 8 {
            return Err(format!(
                "{}: rule array of {} bytes, the answer's elements need {} ({room} elements)",
                self.verb,
                self.rule_array.len(),
                room * 8
            ));
        }
        let layout = layout(self.verb);
        if layout.len() != self.params.len() {
            return Err(format!(
                "{}: argument vector of the wrong shape ({} parameters, the verb takes {})",
                self.verb,
                self.params.len(),
                layout.len()
            ));
        }
        // The last `Int` seen: CSNDRKL's label count, which sizes the label list after it.
        let mut count: Option<i64> = None;
        for (i, (slot, p)) in layout.iter().zip(&self.params).enumerate() {
            let n = i + 1;
            match (slot, p) {
                (Slot::Buf, Param::Buf { len, data }) => {
                    if *len < 0 || *len as usize > data.len() {
                        return Err(format!(
                            "{}: parameter {n} says {len} bytes for a buffer of {}",
                            self.verb,
                            data.len()
                        ));
                    }
                }
                (Slot::Field(size), Param::Field(d)) => {
                    if d.len() != *size {
                        return Err(format!(
                            "{}: parameter {n} is a field of {} bytes, the verb's is {size}",
                            self.verb,
                            d.len()
                        ));
                    }
                }
                (Slot::Labels, Param::Field(d)) => {
                    let room = d.len() / LABEL_LEN;
                    let wanted = count.unwrap_or(-1);
                    if usize::try_from(wanted).map_or(true, |w| w > room) {
                        return Err(format!(
                            "{}: parameter {n} has room for {room} labels of {LABEL_LEN} bytes, \
                             the count before it says {wanted}",
                            self.verb
                        ));
                    }
                }
                (Slot::Int, Param::Int(v)) => count = Some(*v),
                _ => {
                    return Err(format!(
                        "{}: argument vector of the wrong shape (parameter {n} is {p:?}, the verb \
                         takes {slot:?} there)",
                        self.verb
                    ));
                }
            }
        }
        Ok(())
    }

    /// The bytes an output buffer parameter returned: `data[..len]`, or an error when the
    /// library wrote back a length larger than the buffer (it is then not read at all).
    pub fn output(&self, index: usize) -> Result<&[u8], String> {
        match self.params.get(index) {
            Some(Param::Buf { len, data }) => {
                let n = usize::try_from(*len).map_err(|_| {
                    format!(
                        "{}: parameter {} returned length {len}",
                        self.verb,
                        index + 1
                    )
                })?;
                data.get(..n).ok_or_else(|| {
                    format!(
                        "{}: parameter {} returned length {n}, larger than its buffer of {}",
                        self.verb,
                        index + 1,
                        data.len()
                    )
                })
            }
            Some(Param::Field(d)) => Ok(d),
            _ => Err(format!(
                "{}: parameter {} is not a buffer",
                self.verb,
                index + 1
            )),
        }
    }

    /// The value of an integer parameter after the call.
    pub fn int(&self, index: usize) -> Option<i64> {
        match self.params.get(index) {
            Some(Param::Int(v)) => Some(*v),
            Some(Param::Buf { len, .. }) => Some(*len),
            _ => None,
        }
    }

    /// Lengths of the parameters (what the trace records): `Int` values, buffer lengths,
    /// field sizes.
    pub fn lengths(&self) -> Vec<i64> {
        self.params
            .iter()
            .map(|p| match p {
                Param::Int(v) => *v,
                Param::Buf { len, .. } => *len,
                Param::Field(d) => d.len() as i64,
            })
            .collect()
    }
}

/// An input buffer: its length and bytes.
pub fn input(bytes: &[u8]) -> Param {
    Param::Buf {
        len: bytes.len() as i64,
        data: bytes.to_vec(),
    }
}

/// An output buffer of `room` bytes (length in = room).
pub fn output(room: usize) -> Param {
    Param::Buf {
        len: room as i64,
        data: vec![0; room],
    }
}

/// An empty buffer (length 0): reserved fields, absent data.
pub fn empty() -> Param {
    Param::Buf {
        len: 0,
        data: Vec::new(),
    }
}
