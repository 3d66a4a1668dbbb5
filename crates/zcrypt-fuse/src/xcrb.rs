//! `struct ica_xcRB` as the kernel reads it from the caller: 94 packed bytes in the
//! host's byte order, each pointer in the second half of a 16-byte slot
//! (arch/s390/include/uapi/asm/zcrypt.h). Only the fields the kernel uses are read; the
//! ones it writes back (the reply lengths and `status`) are written into the same bytes,
//! which are then copied back whole, as `zsecsendcprb_ioctl` copies the structure back.

/// sizeof(struct ica_xcRB).
pub const XCRB_LEN: usize = 94;

/// The offsets the kernel writes back: the reply lengths and `status` (the table of
/// getters below gives every offset it reads).
mod off {
    pub const REPLY_CONTROL_BLK_LENGTH: usize = 48;
    pub const REPLY_DATA_LENGTH: usize = 68;
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

    /// The `N` bytes at `at`, in the host's byte order as the kernel reads them.
    fn field<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut w = [0u8; N];
        w.copy_from_slice(&self.bytes[at..at + N]);
        w
    }
    fn set_u32(&mut self, at: usize, v: u32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// `agent_ID` as the two bytes in memory ("CA").
    pub fn agent_id(&self) -> [u8; 2] {
        self.field(0)
    }

    pub fn set_reply_lengths(&mut self, control: u32, data: u32) {
        self.set_u32(off::REPLY_CONTROL_BLK_LENGTH, control);
        self.set_u32(off::REPLY_DATA_LENGTH, data);
    }
    pub fn set_status(&mut self, status: u32) {
        self.set_u32(off::STATUS, status);
    }
}

/// A getter for each field of `struct ica_xcRB` the kernel reads: name, type and offset.
macro_rules! getters {
    ($($name:ident: $ty:ty = $at:expr),* $(,)?) => {
        impl Xcrb {
            $(
                pub fn $name(&self) -> $ty {
                    <$ty>::from_ne_bytes(self.field($at))
                }
            )*
        }
    };
}

// One line a block the request points to: its length, then its address (an address in
// the second half of its 16-byte slot).
getters! {
    user_defined: u32 = 2,
    request_control_blk_length: u32 = 8, request_control_blk_addr: u64 = 20,
    request_data_length: u32 = 28, request_data_address: u64 = 40,
    reply_control_blk_length: u32 = off::REPLY_CONTROL_BLK_LENGTH, reply_control_blk_addr: u64 = 60,
    reply_data_length: u32 = off::REPLY_DATA_LENGTH, reply_data_addr: u64 = 80,
    status: u32 = off::STATUS
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
