/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * zcrypt.h: the parts of the Linux zcrypt user-space interface that mkclone uses.
 *
 * Written for mkclone from the published layout; no text was copied. The source of the
 * facts (names, field order, sizes, ioctl numbers) is the kernel's user-space ABI header
 * arch/s390/include/uapi/asm/zcrypt.h (GPL-2.0+ WITH Linux-syscall-note), summarised in
 * ../shared/reference/zcrypt-abi.md. Where a fact comes from elsewhere it says so.
 *
 * Self-contained on purpose: it includes no system header, so bindgen produces the same
 * bindings on any 64-bit Linux host (the structures are s390x's, where pointers are
 * 8 bytes), and it defines its own _IOC-style macros so that the ioctl numbers bindgen
 * evaluates can be checked against nix's request_code_readwrite!.
 *
 * Byte order: CPRBX integers are big-endian on the wire (s390x is big-endian; mkclone's
 * codec writes them explicitly). ica_xcRB is read by the kernel in host order.
 */

#ifndef MKCLONE_ZCRYPT_H
#define MKCLONE_ZCRYPT_H

typedef unsigned char mkc_u8;
typedef unsigned short mkc_u16;
typedef unsigned int mkc_u32;

/* ---- the generic Linux ioctl encoding (asm-generic/ioctl.h, which s390 uses) ----- */
/* number: bits 0-7, type (magic): bits 8-15, size: bits 16-29, direction: bits 30-31. */
#define MKC_IOC_NRBITS 8
#define MKC_IOC_TYPEBITS 8
#define MKC_IOC_SIZEBITS 14
#define MKC_IOC_NRSHIFT 0
#define MKC_IOC_TYPESHIFT (MKC_IOC_NRSHIFT + MKC_IOC_NRBITS)
#define MKC_IOC_SIZESHIFT (MKC_IOC_TYPESHIFT + MKC_IOC_TYPEBITS)
#define MKC_IOC_DIRSHIFT (MKC_IOC_SIZESHIFT + MKC_IOC_SIZEBITS)
#define MKC_IOC_NONE 0U
#define MKC_IOC_WRITE 1U
#define MKC_IOC_READ 2U
#define MKC_IOC(dir, type, nr, size)                                                      \
    ((mkc_u32)(((dir) << MKC_IOC_DIRSHIFT) | ((type) << MKC_IOC_TYPESHIFT) |               \
               ((nr) << MKC_IOC_NRSHIFT) | ((size) << MKC_IOC_SIZESHIFT)))
#define MKC_IOR(type, nr, size) MKC_IOC(MKC_IOC_READ, (type), (nr), (size))

/* ---- device, card and domain selection ---------------------------------------------- */

/* ioctl magic of the zcrypt misc device /dev/z90crypt (and /dev/zcrypt-* nodes). */
#define ZCRYPT_IOCTL_MAGIC 0x7AU /* 'z' */

/* ica_xcRB.user_defined: let the kernel choose the card. */
#define AUTOSELECT 0xFFFFFFFFU
/* CPRBX.domain: let the kernel choose the domain (it writes the chosen one back).
 * Defined in the uapi header itself (arch/s390/include/uapi/asm/zcrypt.h, beside
 * AUTOSELECT and AUTOSEL_AP, as a __u16). */
#define AUTOSEL_DOM 0xFFFFU

/* Highest card and domain index the extended status interfaces address. */
#define MAX_ZDEV_CARDIDS_EXT 256U
#define MAX_ZDEV_DOMAINS_EXT 256U

/* ---- ioctl numbers ---------------------------------------------------------------------- */
/* The CPRB-carrying ioctls are encoded with size 0 (the structure size is NOT part of the
 * number): ZSECSENDCPRB is 0xC0007A81, not the 0xC05E7A81 that sizeof(ica_xcRB) gives. */
#define ICARSAMODEXPO MKC_IOC(MKC_IOC_READ | MKC_IOC_WRITE, ZCRYPT_IOCTL_MAGIC, 0x05U, 0U)
#define ICARSACRT MKC_IOC(MKC_IOC_READ | MKC_IOC_WRITE, ZCRYPT_IOCTL_MAGIC, 0x06U, 0U)
#define ZSENDEP11CPRB MKC_IOC(MKC_IOC_READ | MKC_IOC_WRITE, ZCRYPT_IOCTL_MAGIC, 0x04U, 0U)
#define ZSECSENDCPRB MKC_IOC(MKC_IOC_READ | MKC_IOC_WRITE, ZCRYPT_IOCTL_MAGIC, 0x81U, 0U)
#define ZCRYPT_DEVICE_STATUS MKC_IOC(MKC_IOC_READ | MKC_IOC_WRITE, ZCRYPT_IOCTL_MAGIC, 0x5FU, 0U)
#define ZCRYPT_STATUS_MASK MKC_IOR(ZCRYPT_IOCTL_MAGIC, 0x58U, MAX_ZDEV_CARDIDS_EXT)
#define ZCRYPT_QDEPTH_MASK MKC_IOR(ZCRYPT_IOCTL_MAGIC, 0x59U, MAX_ZDEV_CARDIDS_EXT)
#define ZCRYPT_PERDEV_REQCNT MKC_IOR(ZCRYPT_IOCTL_MAGIC, 0x5AU, 4U * MAX_ZDEV_CARDIDS_EXT)

/* ---- struct CPRBX: the CCA request/reply control block, 220 bytes ------------------- */
/* Each "address" is a 16-byte slot: padding, then a pointer (8 bytes on s390x). The
 * kernel header calls the 12 bytes at offset 172 usage_domain, cntrl_domain and
 * S390enf_mask, with the comment that they are checked for zeros; no kernel code checks
 * them (the kernel checks only cprb_ver_id in a reply, zcrypt_msgtype6.c). mkclone sends
 * zeros and does not require zeros in a reply. */
struct CPRBX {
    mkc_u16 cprb_len;       /*   0: 220 */
    mkc_u8 cprb_ver_id;     /*   2: 0x02 */
    mkc_u8 ctfm;            /*   3: (older headers: padding) */
    mkc_u8 pad_000[2];      /*   4 */
    mkc_u8 func_id[2];      /*   6: "T2" for a usage request */
    mkc_u8 cprb_flags[4];   /*   8 */
    mkc_u32 req_parml;      /*  12: request parameter block length */
    mkc_u32 req_datal;      /*  16: request data block length */
    mkc_u32 rpl_msgbl;      /*  20: reply message block length */
    mkc_u32 rpld_parml;     /*  24: replied parameter block length */
    mkc_u32 rpl_datal;      /*  28: reply data block length */
    mkc_u32 rpld_datal;     /*  32: replied data block length */
    mkc_u32 req_extbl;      /*  36: request extension block length */
    mkc_u8 pad_001[4];      /*  40 */
    mkc_u32 rpld_extbl;     /*  44: replied extension block length */
    mkc_u8 padx000[16 - sizeof(mkc_u8 *)];
    mkc_u8 *req_parmb;      /*  48: request parameter block address slot */
    mkc_u8 padx001[16 - sizeof(mkc_u8 *)];
    mkc_u8 *req_datab;      /*  64 */
    mkc_u8 padx002[16 - sizeof(mkc_u8 *)];
    mkc_u8 *rpl_parmb;      /*  80: reply parameter block address slot */
    mkc_u8 padx003[16 - sizeof(mkc_u8 *)];
    mkc_u8 *rpl_datab;      /*  96 */
    mkc_u8 padx004[16 - sizeof(mkc_u8 *)];
    mkc_u8 *req_extb;       /* 112 */
    mkc_u8 padx005[16 - sizeof(mkc_u8 *)];
    mkc_u8 *rpl_extb;       /* 128 */
    mkc_u16 ccp_rtcode;     /* 144: CCA return code */
    mkc_u16 ccp_rscode;     /* 146: CCA reason code */
    mkc_u32 mac_data_len;   /* 148 */
    mkc_u8 logon_id[8];     /* 152 */
    mkc_u8 mac_value[8];    /* 160 */
    mkc_u8 mac_content_flgs;/* 168 */
    mkc_u8 pad_002;         /* 169 */
    mkc_u16 domain;         /* 170: usage domain, or AUTOSEL_DOM */
    mkc_u8 reserved[12];    /* 172: sent as zeros */
    mkc_u8 pad_004[36];     /* 184 */
} __attribute__((packed));

/* ---- struct ica_xcRB: the argument of ZSECSENDCPRB, 94 bytes -------------------------- */
/* Pointers sit in 16-byte slots (padding first) and are unaligned: the structure is
 * packed. The kernel writes reply_control_blk_length and reply_data_length back. */
struct ica_xcRB {
    mkc_u16 agent_ID;                     /*  0: "CA" */
    mkc_u32 user_defined;                 /*  2: card index, or AUTOSELECT */
    mkc_u16 request_ID;                   /*  6 */
    mkc_u32 request_control_blk_length;   /*  8: CPRBX + request parameter block */
    mkc_u8 padding1[16 - sizeof(char *)]; /* 12 */
    char *request_control_blk_addr;       /* 20 */
    mkc_u32 request_data_length;          /* 28 */
    char padding2[16 - sizeof(char *)];   /* 32 */
    char *request_data_address;           /* 40 */
    mkc_u32 reply_control_blk_length;     /* 48: capacity in, length out */
    char padding3[16 - sizeof(char *)];   /* 52 */
    char *reply_control_blk_addr;         /* 60 */
    mkc_u32 reply_data_length;            /* 68: capacity in, length out */
    char padding4[16 - sizeof(char *)];   /* 72 */
    char *reply_data_addr;                /* 80 */
    mkc_u16 priority_window;              /* 88 */
    mkc_u32 status;                       /* 90 */
} __attribute__((packed));

/* ---- device status (ZCRYPT_DEVICE_STATUS) ------------------------------------------- */
/* One 32-bit entry per APQN. The kernel declares it with C bit-fields
 *     unsigned int hwtype:8, qid:16, online:1, functions:6, reserved:1;
 * which s390x (big-endian) allocates from the most significant bit. It is written here
 * as one word with the bit positions of that allocation, so that the bindings need no
 * bit-field accessors (bindgen's contain unsafe code): read the word in host order and
 * shift. qid is the card index (high 8 bits) and the domain (low 8 bits). functions is
 * the AP function field 'abcdef': d = CCA coprocessor, e = accelerator, f = EP11
 * coprocessor (a, b, c reserved). */
struct zcrypt_device_status_ext {
    mkc_u32 word;
};
#define ZCRYPT_STATUS_HWTYPE_SHIFT 24U
#define ZCRYPT_STATUS_HWTYPE_MASK 0xFFU
#define ZCRYPT_STATUS_QID_SHIFT 8U
#define ZCRYPT_STATUS_QID_MASK 0xFFFFU
#define ZCRYPT_STATUS_ONLINE_SHIFT 7U
#define ZCRYPT_STATUS_ONLINE_MASK 0x1U
#define ZCRYPT_STATUS_FUNCTIONS_SHIFT 1U
#define ZCRYPT_STATUS_FUNCTIONS_MASK 0x3FU
#define ZCRYPT_STATUS_FUNC_CCA 0x04U
#define ZCRYPT_STATUS_FUNC_ACCEL 0x02U
#define ZCRYPT_STATUS_FUNC_EP11 0x01U

/* The whole matrix ZCRYPT_DEVICE_STATUS fills: every card x every domain. */
struct zcrypt_device_matrix_ext {
    struct zcrypt_device_status_ext device[MAX_ZDEV_CARDIDS_EXT * MAX_ZDEV_DOMAINS_EXT];
};

#endif /* MKCLONE_ZCRYPT_H */
