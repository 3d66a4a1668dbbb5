//! The parameter block that follows the CPRBX, in requests and replies alike.
//!
//! Layout (the kernel's `zcrypt_ccamisc.c` and libica's `s390_ecc.c` build it this way;
//! `reference/zcrypt-abi.md`):
//! 1. function code: 2 ASCII bytes;
//! 2. rule array: u16 length (counting itself) + 8-byte blank-padded keywords;
//! 3. verb-unique data: u16 length (counting itself) + contents;
//! 4. key block: u16 length (counting itself) + entries, each u16 length (counting
//!    itself) + u16 flag + token.

use crate::error::CodecError;
use crate::function::FunctionCode;

/// One 8-byte, blank-padded rule-array keyword.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keyword([u8; 8]);

impl Keyword {
    /// A keyword from its text (at most 8 printable ASCII characters).
    pub const fn new(text: &str) -> Self {
        let src = text.as_bytes();
        assert!(
            src.len() <= 8,
            "a rule-array keyword has at most 8 characters"
        );
        let mut out = [b' '; 8];
        let mut i = 0;
        while i < src.len() {
            out[i] = src[i];
            i += 1;
        }
        Self(out)
    }
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }
    pub fn bytes(&self) -> [u8; 8] {
        self.0
    }
    /// The keyword without its padding.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).trim_end().to_string()
    }
}

impl std::fmt::Debug for Keyword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

/// One key-block entry: a flag and a token (a key label, a key token, a certificate...).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyEntry {
    pub flag: u16,
    pub token: Vec<u8>,
}

impl KeyEntry {
    pub fn new(token: impl Into<Vec<u8>>) -> Self {
        Self {
            flag: 0,
            token: token.into(),
        }
    }
}

/// A decoded parameter block.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ParmBlock {
    pub function: FunctionCode,
    pub rules: Vec<Keyword>,
    pub verb_data: Vec<u8>,
    pub keys: Vec<KeyEntry>,
}

impl ParmBlock {
    pub fn new(function: FunctionCode) -> Self {
        Self {
            function,
            rules: Vec::new(),
            verb_data: Vec::new(),
            keys: Vec::new(),
        }
    }

    pub fn rule(mut self, keyword: Keyword) -> Self {
        self.rules.push(keyword);
        self
    }

    pub fn has_rule(&self, keyword: Keyword) -> bool {
        self.rules.contains(&keyword)
    }

    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let rule_len = 2 + 8 * self.rules.len();
        let verb_len = 2 + self.verb_data.len();
        let keys_len = 2 + self.keys.iter().map(|k| 4 + k.token.len()).sum::<usize>();
        let mut out = Vec::with_capacity(2 + rule_len + verb_len + keys_len);
        out.extend_from_slice(&self.function.code());
        out.extend_from_slice(&u16_len(rule_len, "rule array")?.to_be_bytes());
        for r in &self.rules {
            out.extend_from_slice(&r.0);
        }
        out.extend_from_slice(&u16_len(verb_len, "verb data")?.to_be_bytes());
        out.extend_from_slice(&self.verb_data);
        out.extend_from_slice(&u16_len(keys_len, "key block")?.to_be_bytes());
        for k in &self.keys {
            out.extend_from_slice(&u16_len(4 + k.token.len(), "key-block entry")?.to_be_bytes());
            out.extend_from_slice(&k.flag.to_be_bytes());
            out.extend_from_slice(&k.token);
        }
        Ok(out)
    }

    /// Decode exactly `bytes` (no trailing bytes allowed: one encoding per meaning). For
    /// requests: the simulator reads mkclone's own requests.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (block, trailing) = Self::decode_fields(bytes, KeyBlock::Required)?;
        if trailing != 0 {
            return Err(CodecError::Trailing {
                what: "parameter block",
                count: trailing,
            });
        }
        Ok(block)
    }

    /// Decode a reply parameter block as the kernel reads one: the function code, the
    /// rule array and the verb data by their length fields; the key block when what
    /// follows reads as one (else, or when absent, an empty one); whatever follows
    /// the last field is left alone and counted (the returned `usize`). The kernel reads
    /// no more than the rule-array and verb-data lengths (drivers/s390/crypto/
    /// zcrypt_ccamisc.c, `cca_query_crypto_facility`: "check and possibly copy reply rule
    /// array", then the "var array"), so a valid reply from a real card may carry bytes
    /// mkclone's own encoder never writes.
    pub fn decode_reply(bytes: &[u8]) -> Result<(Self, usize), CodecError> {
        Self::decode_fields(bytes, KeyBlock::Optional)
    }

    fn decode_fields(bytes: &[u8], key_block: KeyBlock) -> Result<(Self, usize), CodecError> {
        let mut r = Reader { bytes, at: 0 };
        let code = r.take(2, "function code")?;
        let function = FunctionCode::from_bytes([code[0], code[1]])?;

        let rule_len = usize::from(r.u16("rule-array length")?);
        if rule_len < 2 || (rule_len - 2) % 8 != 0 {
            return Err(CodecError::Field {
                what: "parameter block",
                field: "rule-array length",
                detail: format!("{rule_len} is not 2 + a multiple of 8"),
            });
        }
        let rule_bytes = r.take(rule_len - 2, "rule array")?;
        let rules = rule_bytes
            .chunks_exact(8)
            .map(|c| {
                let mut k = [0u8; 8];
                k.copy_from_slice(c);
                Keyword(k)
            })
            .collect();

        let verb_len = usize::from(r.u16("verb-data length")?);
        let verb_data = r
            .take(
                verb_len
                    .checked_sub(2)
                    .ok_or_else(|| short("verb-data length", verb_len))?,
                "verb data",
            )?
            .to_vec();

        let keys = match key_block {
            KeyBlock::Required => read_key_block(&mut r)?,
            // What follows the verb data of a reply is a key block only if it reads as
            // one; otherwise it is left alone like any other trailing bytes (the kernel
            // reads nothing after the verb data).
            KeyBlock::Optional => {
                let mut attempt = Reader { bytes, at: r.at };
                match read_key_block(&mut attempt) {
                    Ok(keys) => {
                        r.at = attempt.at;
                        keys
                    }
                    Err(_) => Vec::new(),
                }
            }
        };
        let block = Self {
            function,
            rules,
            verb_data,
            keys,
        };
        Ok((block, r.remaining()))
    }
}

/// The key block at `r`: its length (counting itself), then entries of u16 length
/// (counting itself), u16 flag and token.
fn read_key_block(r: &mut Reader<'_>) -> Result<Vec<KeyEntry>, CodecError> {
    let keys_len = usize::from(r.u16("key-block length")?);
    let key_bytes = r.take(
        keys_len
            .checked_sub(2)
            .ok_or_else(|| short("key-block length", keys_len))?,
        "key block",
    )?;
    let mut kr = Reader {
        bytes: key_bytes,
        at: 0,
    };
    let mut keys = Vec::new();
    while kr.remaining() > 0 {
        let len = usize::from(kr.u16("key-block entry length")?);
        let flag = kr.u16("key-block entry flag")?;
        let token = kr.take(
            len.checked_sub(4)
                .ok_or_else(|| short("key-block entry length", len))?,
            "key-block entry",
        )?;
        keys.push(KeyEntry {
            flag,
            token: token.to_vec(),
        });
    }
    Ok(keys)
}

/// Whether a parameter block must end with a key block (requests) or may stop after the
/// verb data (replies, as the kernel reads them).
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyBlock {
    Required,
    Optional,
}

fn short(field: &'static str, len: usize) -> CodecError {
    CodecError::Field {
        what: "parameter block",
        field,
        detail: format!("{len} is smaller than the length field itself"),
    }
}

fn u16_len(len: usize, what: &'static str) -> Result<u16, CodecError> {
    u16::try_from(len).map_err(|_| CodecError::TooLong { what, len })
}

/// A bounds-checked big-endian reader: every read either succeeds or names what was
/// missing. Used by every decoder of this crate.
pub(crate) struct Reader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(CodecError::Truncated {
                what,
                needed: n,
                available: self.remaining(),
            })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let b = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }
    pub fn finish(&self, what: &'static str) -> Result<(), CodecError> {
        if self.remaining() != 0 {
            return Err(CodecError::Trailing {
                what,
                count: self.remaining(),
            });
        }
        Ok(())
    }
}
