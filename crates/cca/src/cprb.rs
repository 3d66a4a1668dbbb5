//! The CPRBX header: the 220-byte control block in front of every CCA request and reply.
//!
//! Layout from the Linux kernel's user-space ABI, `arch/s390/include/uapi/asm/zcrypt.h`
//! (struct CPRBX), summarised in `reference/zcrypt-abi.md`. Integers are big-endian (s390
//! is big-endian); every field is written explicitly, never by transmuting a struct.
//!
//! The six address slots (offsets 48..144) carry user-space pointers on a real device.
//! In a message (CPRBX followed by its parameter block, which is what a
//! [`crate::Transport`] carries) they are zero: the zcrypt transport fills the pointers
//! into `ica_xcRB`, the simulator does not need them.

use crate::error::CodecError;

/// sizeof(struct CPRBX).
pub const CPRBX_LEN: usize = 220;
/// cprb_ver_id of a CPRBX.
pub const CPRBX_VERSION: u8 = 0x02;
/// func_id of a usage request ("T2").
pub const FUNC_ID_T2: [u8; 2] = *b"T2";
/// Any domain (AUTOSEL_DOM).
pub const AUTOSELECT_DOMAIN: u16 = 0xFFFF;

mod off {
    pub const CPRB_LEN: usize = 0;
    pub const VER_ID: usize = 2;
    pub const FUNC_ID: usize = 6;
    pub const REQ_PARML: usize = 12;
    pub const REQ_DATAL: usize = 16;
    pub const RPL_MSGBL: usize = 20;
    pub const RPLD_PARML: usize = 24;
    pub const RPL_DATAL: usize = 28;
    pub const RPLD_DATAL: usize = 32;
    pub const REQ_EXTBL: usize = 36;
    pub const RPLD_EXTBL: usize = 44;
    pub const CCP_RTCODE: usize = 144;
    pub const CCP_RSCODE: usize = 146;
    pub const DOMAIN: usize = 170;
    pub const RESERVED: usize = 172;
    pub const RESERVED_LEN: usize = 12;
}

/// The CPRBX fields mkclone reads or writes. Everything else is zero on encode.
///
/// Two decoders: [`Cprbx::decode`] for requests (the simulator reads mkclone's own
/// requests: one encoding per meaning, so cprb_len, version, func_id "T2" and zero
/// reserved bytes are required), and [`Cprbx::decode_reply`] for replies, which checks no
/// more than the kernel does. (The uapi header's comment on the 12 bytes at 172 says they
/// are "checked for zeros"; no kernel code checks them, in requests or replies.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cprbx {
    /// Request parameter block length.
    pub req_parml: u32,
    /// Request data block length (mkclone sends everything in the parameter block: 0).
    pub req_datal: u32,
    /// Reply message block length: the capacity offered for the reply parameter block.
    pub rpl_msgbl: u32,
    /// Replied parameter block length.
    pub rpld_parml: u32,
    pub rpl_datal: u32,
    pub rpld_datal: u32,
    pub req_extbl: u32,
    pub rpld_extbl: u32,
    /// CCA return code.
    pub ccp_rtcode: u16,
    /// CCA reason code.
    pub ccp_rscode: u16,
    /// Usage domain, or [`AUTOSELECT_DOMAIN`].
    pub domain: u16,
}

impl Cprbx {
    /// A request header for a parameter block of `parm_len` bytes, offering `reply_capacity`.
    pub fn request(
        domain: u16,
        parm_len: usize,
        reply_capacity: usize,
    ) -> Result<Self, CodecError> {
        Ok(Self {
            req_parml: len_u32(parm_len, "request parameter block")?,
            rpl_msgbl: len_u32(reply_capacity, "reply capacity")?,
            domain,
            ..Self::default()
        })
    }

    pub fn encode(&self) -> [u8; CPRBX_LEN] {
        let mut b = [0u8; CPRBX_LEN];
        put_u16(&mut b, off::CPRB_LEN, CPRBX_LEN as u16);
        b[off::VER_ID] = CPRBX_VERSION;
        b[off::FUNC_ID..off::FUNC_ID + 2].copy_from_slice(&FUNC_ID_T2);
        put_u32(&mut b, off::REQ_PARML, self.req_parml);
        put_u32(&mut b, off::REQ_DATAL, self.req_datal);
        put_u32(&mut b, off::RPL_MSGBL, self.rpl_msgbl);
        put_u32(&mut b, off::RPLD_PARML, self.rpld_parml);
        put_u32(&mut b, off::RPL_DATAL, self.rpl_datal);
        put_u32(&mut b, off::RPLD_DATAL, self.rpld_datal);
        put_u32(&mut b, off::REQ_EXTBL, self.req_extbl);
        put_u32(&mut b, off::RPLD_EXTBL, self.rpld_extbl);
        put_u16(&mut b, off::CCP_RTCODE, self.ccp_rtcode);
        put_u16(&mut b, off::CCP_RSCODE, self.ccp_rscode);
        put_u16(&mut b, off::DOMAIN, self.domain);
        b
    }

    /// Decode a reply CPRBX as the kernel accepts it: at least 220 bytes and
    /// cprb_ver_id X'02'. That is the only field the kernel checks in a CPRB reply
    /// (drivers/s390/crypto/zcrypt_msgtype6.c, `convert_response_xcrb` and
    /// `zcrypt_msgtype6_receive`: a type 86 reply whose `cprbx.cprb_ver_id` is 0x02 is
    /// copied to user space, anything else is an unknown response). cprb_len, func_id
    /// and the reserved bytes 172..184 are not looked at: the kernel's own readers take
    /// the reply parameter block at reply + 220 whatever cprb_len says
    /// (zcrypt_ccamisc.c, `cca_query_crypto_facility`).
    pub fn decode_reply(bytes: &[u8]) -> Result<Self, CodecError> {
        let b = header(bytes)?;
        check_version(b)?;
        Ok(Self::fields(b))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let b = header(bytes)?;
        let cprb_len = get_u16(b, off::CPRB_LEN);
        if usize::from(cprb_len) != CPRBX_LEN {
            return Err(CodecError::Field {
                what: "CPRBX",
                field: "cprb_len",
                detail: format!("{cprb_len}, expected 220"),
            });
        }
        check_version(b)?;
        if b[off::FUNC_ID..off::FUNC_ID + 2] != FUNC_ID_T2 {
            return Err(CodecError::Field {
                what: "CPRBX",
                field: "func_id",
                detail: format!(
                    "{:?}, expected \"T2\"",
                    String::from_utf8_lossy(&b[off::FUNC_ID..off::FUNC_ID + 2])
                ),
            });
        }
        if b[off::RESERVED..off::RESERVED + off::RESERVED_LEN]
            .iter()
            .any(|&x| x != 0)
        {
            return Err(CodecError::Field {
                what: "CPRBX",
                field: "reserved",
                detail: "must be zero".into(),
            });
        }
        Ok(Self::fields(b))
    }

    fn fields(b: &[u8; CPRBX_LEN]) -> Self {
        Self {
            req_parml: get_u32(b, off::REQ_PARML),
            req_datal: get_u32(b, off::REQ_DATAL),
            rpl_msgbl: get_u32(b, off::RPL_MSGBL),
            rpld_parml: get_u32(b, off::RPLD_PARML),
            rpl_datal: get_u32(b, off::RPL_DATAL),
            rpld_datal: get_u32(b, off::RPLD_DATAL),
            req_extbl: get_u32(b, off::REQ_EXTBL),
            rpld_extbl: get_u32(b, off::RPLD_EXTBL),
            ccp_rtcode: get_u16(b, off::CCP_RTCODE),
            ccp_rscode: get_u16(b, off::CCP_RSCODE),
            domain: get_u16(b, off::DOMAIN),
        }
    }
}

/// The first 220 bytes of `bytes`.
fn header(bytes: &[u8]) -> Result<&[u8; CPRBX_LEN], CodecError> {
    bytes
        .get(..CPRBX_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(CodecError::Truncated {
            what: "CPRBX",
            needed: CPRBX_LEN,
            available: bytes.len(),
        })
}

/// cprb_ver_id must be X'02', in requests and replies alike.
fn check_version(b: &[u8; CPRBX_LEN]) -> Result<(), CodecError> {
    if b[off::VER_ID] != CPRBX_VERSION {
        return Err(CodecError::Field {
            what: "CPRBX",
            field: "cprb_ver_id",
            detail: format!("X'{:02X}', expected X'02'", b[off::VER_ID]),
        });
    }
    Ok(())
}

pub(crate) fn len_u32(len: usize, what: &'static str) -> Result<u32, CodecError> {
    u32::try_from(len).map_err(|_| CodecError::TooLong { what, len })
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn get_u16(b: &[u8; CPRBX_LEN], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn get_u32(b: &[u8; CPRBX_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
