//! `struct ica_xcRB` as the kernel reads it from the caller: 94 packed bytes in the
//! host's byte order, each pointer in the second half of a 16-byte slot
//! (arch/s390/include/uapi/asm/zcrypt.h). Only the fields the kernel uses are read; the
//! ones it writes back (the reply lengths and `status`) are written into the same bytes,
//! which are then copied back whole, as `zsecsendcprb_ioctl` copies the structure back.

/// sizeof(struct ica_xcRB).
pub const XCRB_LEN: usize = 94;

mod off {
    pub const AGENT_ID: usize = 0;
    pub const USER_DEFINED: usize = 2;
    pub const REQUEST_CONTROL_BLK_LENGTH: usize = 8;
    pub const REQUEST_CONTROL_BLK_ADDR: usize = 20;
    pub const REQUEST_DATA_LENGTH: usize = 28;
    pub const REQUEST_DATA_ADDRESS: usize = 40;
    pub const REPLY_CONTROL_BLK_LENGTH: usize = 48;
    pub const REPLY_CONTROL_BLK_ADDR: usize = 60;
    pub const REPLY_DATA_LENGTH: usize = 68;
    pub const REPLY_DATA_ADDR: usize = 80;
    pub const STATUS: usize = 90;
}

/// The caller's `ica_xcRB`, its bytes kept so that it is copied back as it came, with
/// only what the kernel changes changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xcrb {
    bytes: [u8; XCRB_LEN],
}

impl Xcrb {
    pub fn from_bytes(bytes: [u8; XCRB_LEN]) -> Self {
        Self { bytes }
    }

    pub fn bytes(&self) -> &[u8; XCRB_LEN] {
        &self.bytes
    }

    fn u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes([self.bytes[at], self.bytes[at + 1]])
    }
    fn u32(&self, at: usize) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&self.bytes[at..at + 4]);
        u32::from_ne_bytes(w)
    }
    fn u64(&self, at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.bytes[at..at + 8]);
        u64::from_ne_bytes(w)
    }
    fn set_u32(&mut self, at: usize, v: u32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// `agent_ID` as the two bytes in memory ("CA").
    pub fn agent_id(&self) -> [u8; 2] {
        self.u16(off::AGENT_ID).to_ne_bytes()
    }
    pub fn user_defined(&self) -> u32 {
        self.u32(off::USER_DEFINED)
    }
    pub fn request_control_blk_length(&self) -> u32 {
        self.u32(off::REQUEST_CONTROL_BLK_LENGTH)
    }
    pub fn request_control_blk_addr(&self) -> u64 {
        self.u64(off::REQUEST_CONTROL_BLK_ADDR)
    }
    pub fn request_data_length(&self) -> u32 {
        self.u32(off::REQUEST_DATA_LENGTH)
    }
    pub fn request_data_address(&self) -> u64 {
        self.u64(off::REQUEST_DATA_ADDRESS)
    }
    pub fn reply_control_blk_length(&self) -> u32 {
        self.u32(off::REPLY_CONTROL_BLK_LENGTH)
    }
    pub fn reply_control_blk_addr(&self) -> u64 {
        self.u64(off::REPLY_CONTROL_BLK_ADDR)
    }
    pub fn reply_data_length(&self) -> u32 {
        self.u32(off::REPLY_DATA_LENGTH)
    }
    pub fn reply_data_addr(&self) -> u64 {
        self.u64(off::REPLY_DATA_ADDR)
    }
    pub fn status(&self) -> u32 {
        self.u32(off::STATUS)
    }

    pub fn set_reply_lengths(&mut self, control: u32, data: u32) {
        self.set_u32(off::REPLY_CONTROL_BLK_LENGTH, control);
        self.set_u32(off::REPLY_DATA_LENGTH, data);
    }
    pub fn set_status(&mut self, status: u32) {
        self.set_u32(off::STATUS, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control block laid out by hand at the uapi offsets.
    #[test]
    fn fields_are_read_and_written_at_the_uapi_offsets() {
        let mut b = [0u8; XCRB_LEN];
        b[0..2].copy_from_slice(b"CA");
        b[2..6].copy_from_slice(&3u32.to_ne_bytes());
        b[8..12].copy_from_slice(&224u32.to_ne_bytes());
        b[20..28].copy_from_slice(&0x1000u64.to_ne_bytes());
        b[48..52].copy_from_slice(&12288u32.to_ne_bytes());
        b[60..68].copy_from_slice(&0x2000u64.to_ne_bytes());
        b[90..94].copy_from_slice(&7u32.to_ne_bytes());
        let mut x = Xcrb::from_bytes(b);
        assert_eq!(x.agent_id(), *b"CA");
        assert_eq!(x.user_defined(), 3);
        assert_eq!(x.request_control_blk_length(), 224);
        assert_eq!(x.request_control_blk_addr(), 0x1000);
        assert_eq!(x.reply_control_blk_length(), 12288);
        assert_eq!(x.reply_control_blk_addr(), 0x2000);
        assert_eq!((x.request_data_length(), x.request_data_address()), (0, 0));
        assert_eq!(x.status(), 7);
        x.set_reply_lengths(240, 0);
        x.set_status(0x0008_044D);
        assert_eq!(&x.bytes()[48..52], &240u32.to_ne_bytes());
        assert_eq!(&x.bytes()[90..94], &0x0008_044Du32.to_ne_bytes());
        assert_eq!(&x.bytes()[0..48], &b[0..48]);
    }
}
