/*
 * mkclone's own description of the IBM CCA host library's C interface (libcsulcca.so, and
 * libcsulccamk.so for CSNBMKP), written for bindgen (crates/hostlib/build.rs). Nothing here
 * is copied from IBM's headers: each type is written from the published parameter list of
 * its verb, cited above it.
 *
 * Facts every verb shares (cited once):
 *   - the verb returns nothing and takes only pointers; the first six are return_code,
 *     reason_code, exit_data_length, exit_data, rule_array_count, rule_array
 *     ([BSR 2.54] "Parameters Common to All Verbs", p. 1-11);
 *   - rule-array keywords are 8 bytes each, left-justified and blank padded (the same
 *     section, and every verb's rule_array description);
 *   - integers are C `long` (64 bits on s390x and x86_64): the prototypes opencryptoki
 *     declares in usr/lib/cca_stdll/csulincl.h and s390-tools declares in zkey/cca.h;
 *   - the library is opened with dlopen at run time and each verb found with dlsym
 *     (opencryptoki usr/lib/cca_stdll/cca_specific.c, cca_resolve_lib_sym; s390-tools
 *     zkey/cca.c, load_cca_library).
 *
 * [BSR 2.54] = IBM 4758 CCA Basic Services Reference and Guide, Release 2.54 (2005): the
 * "Format" table of each verb. [LZ] = IBM CCA for Linux on IBM Z documentation (ibm.com/docs,
 * "linux-on-systems"). Types are function-pointer types because the library is never linked.
 */

#ifndef MKCLONE_CSULCCA_H
#define MKCLONE_CSULCCA_H

/* The six parameters every verb starts with. */
#define MKC_CCA_HEAD                                                                     \
    long *return_code, long *reason_code, long *exit_data_length, unsigned char *exit_data, \
        long *rule_array_count, unsigned char *rule_array

/* Cryptographic_Facility_Query: then verb_data_length (in/out), verb_data (in/out).
 * [BSR 2.54] "Cryptographic_Facility_Query (CSUACFQ)"; [LZ] "CSUACFQ parameters". */
typedef void (*CSUACFQ_t)(MKC_CCA_HEAD, long *verb_data_length, unsigned char *verb_data);

/* Cryptographic_Facility_Control: then verb_data_length, verb_data.
 * [BSR 2.54] "Cryptographic_Facility_Control (CSUACFC)". */
typedef void (*CSUACFC_t)(MKC_CCA_HEAD, long *verb_data_length, unsigned char *verb_data);

/* Cryptographic_Facility_Version: return_code, reason_code, exit_data_length, exit_data,
 * version_data_length (in/out), version_data. No rule array. As s390-tools zkey/cca.h and
 * opencryptoki call it (get_cca_version, cca_get_version). */
typedef void (*CSUACFV_t)(long *return_code, long *reason_code, long *exit_data_length,
                          unsigned char *exit_data, long *version_data_length,
                          unsigned char *version_data);

/* Cryptographic_Resource_Allocate / _Deallocate: then resource_name_length,
 * resource_name ("CRP01" ...). Rule DEVICE or DEV-ANY: s390-tools zkey/cca.c
 * (allocate_cca_adapter, deallocate_cca_adapter). */
typedef void (*CSUACRA_t)(MKC_CCA_HEAD, long *resource_name_length, unsigned char *resource_name);
typedef void (*CSUACRD_t)(MKC_CCA_HEAD, long *resource_name_length, unsigned char *resource_name);

/* Access_Control_Maintenance: then name (8), output_data_length (in/out), output_data.
 * [BSR 2.54] "Access_Control_Maintenance (CSUAACM)"; [LZ] "CSUAACM parameters". */
typedef void (*CSUAACM_t)(MKC_CCA_HEAD, unsigned char *name, long *output_data_length,
                          unsigned char *output_data);

/* PKA_Key_Token_Build: then key_values_structure_length, key_values_structure,
 * key_name_length, key_name, customer_data_length, customer_data, four reserved
 * length/field pairs, token_length (in/out), token.
 * [BSR 2.54] "PKA_Key_Token_Build (CSNDPKB)"; opencryptoki csulincl.h. */
typedef void (*CSNDPKB_t)(MKC_CCA_HEAD, long *key_values_structure_length,
                          unsigned char *key_values_structure, long *key_name_length,
                          unsigned char *key_name, long *customer_data_length,
                          unsigned char *customer_data, long *reserved_2_length,
                          unsigned char *reserved_2, long *reserved_3_length,
                          unsigned char *reserved_3, long *reserved_4_length,
                          unsigned char *reserved_4, long *reserved_5_length,
                          unsigned char *reserved_5, long *token_length, unsigned char *token);

/* PKA_Key_Generate: then regeneration_data_length, regeneration_data,
 * skeleton_key_token_length, skeleton_key_token, transport_key_identifier,
 * generated_key_identifier_length (in/out), generated_key_identifier.
 * [BSR 2.54] "PKA_Key_Generate (CSNDPKG)". */
typedef void (*CSNDPKG_t)(MKC_CCA_HEAD, long *regeneration_data_length,
                          unsigned char *regeneration_data, long *skeleton_key_token_length,
                          unsigned char *skeleton_key_token,
                          unsigned char *transport_key_identifier,
                          long *generated_key_identifier_length,
                          unsigned char *generated_key_identifier);

/* PKA_Public_Key_Extract: then source_key_identifier_length, source_key_identifier,
 * target_key_token_length (in/out), target_key_token.
 * [BSR 2.54] "PKA_Public_Key_Extract (CSNDPKX)". */
typedef void (*CSNDPKX_t)(MKC_CCA_HEAD, long *source_key_identifier_length,
                          unsigned char *source_key_identifier, long *target_key_token_length,
                          unsigned char *target_key_token);

/* Retained_Key_List: then key_label_mask (64), retained_keys_count (out),
 * key_labels_count (in/out), key_labels (64 bytes each).
 * [BSR 2.54] "Retained_Key_List (CSNDRKL)". */
typedef void (*CSNDRKL_t)(MKC_CCA_HEAD, unsigned char *key_label_mask, long *retained_keys_count,
                          long *key_labels_count, unsigned char *key_labels);

/* Retained_Key_Delete: then key_label (64). [BSR 2.54] "Retained_Key_Delete (CSNDRKD)". */
typedef void (*CSNDRKD_t)(MKC_CCA_HEAD, unsigned char *key_label);

/* PKA_Public_Key_Hash_Register: then public_key_name (64), hash_data_length, hash_data.
 * Rules: SHA-1 (required), CLONE (optional).
 * [BSR 2.54] "PKA_Public_Key_Hash_Register (CSNDPKH)", p. 3-26. */
typedef void (*CSNDPKH_t)(MKC_CCA_HEAD, unsigned char *public_key_name, long *hash_data_length,
                          unsigned char *hash_data);

/* PKA_Public_Key_Register: then public_key_name (64), public_key_certificate_length,
 * public_key_certificate. Rule: CLONE (optional; rule_array_count zero or one).
 * [BSR 2.54] "PKA_Public_Key_Register (CSNDPKR)". */
typedef void (*CSNDPKR_t)(MKC_CCA_HEAD, unsigned char *public_key_name,
                          long *public_key_certificate_length,
                          unsigned char *public_key_certificate);

/* Master_Key_Distribution: then share_index, private_key_name (64), certifying_key_name
 * (64), certificate_length, certificate, clone_info_encrypting_key_length (in/out),
 * clone_info_encrypting_key, clone_info_length (in/out), clone_info.
 * Rules: OBTAIN or INSTALL; SYM-MK or ASYM-MK. Return code 4 reason 1024: the new master
 * key is complete. [BSR 2.54] "Master_Key_Distribution (CSUAMKD)", Format and Parameters. */
typedef void (*CSUAMKD_t)(MKC_CCA_HEAD, long *share_index, unsigned char *private_key_name,
                          unsigned char *certifying_key_name, long *certificate_length,
                          unsigned char *certificate, long *clone_info_encrypting_key_length,
                          unsigned char *clone_info_encrypting_key, long *clone_info_length,
                          unsigned char *clone_info);

/* Digital_Signature_Generate: then PKA_private_key_id_length, PKA_private_key_id,
 * hash_length, hash, signature_field_length (in/out), signature_bit_length (out),
 * signature_field. [BSR 2.54] "Digital_Signature_Generate (CSNDDSG)". */
typedef void (*CSNDDSG_t)(MKC_CCA_HEAD, long *PKA_private_key_id_length,
                          unsigned char *PKA_private_key_id, long *hash_length,
                          unsigned char *hash, long *signature_field_length,
                          long *signature_bit_length, unsigned char *signature_field);

/* PKA_Key_Token_Change: then key_id_length, key_id. [BSR 2.54] "PKA_Key_Token_Change
 * (CSNDKTC)". */
typedef void (*CSNDKTC_t)(MKC_CCA_HEAD, long *key_id_length, unsigned char *key_id);

/* Key_Token_Change: then key_identifier (64). s390-tools zkey/cca.h; [BSR 2.54]
 * "Key_Token_Change (CSNBKTC)". */
typedef void (*CSNBKTC_t)(MKC_CCA_HEAD, unsigned char *key_identifier);

/* Master_Key_Process: then key_part (24). Rules: CLEAR, RANDOM, SET, ...; SYM-MK or
 * ASYM-MK. In libcsulccamk.so (opencryptoki loads it from there since 2024).
 * [BSR 2.54] "Master_Key_Process (CSNBMKP)". */
typedef void (*CSNBMKP_t)(MKC_CCA_HEAD, unsigned char *key_part);

/*
 * PROJECT-ASSIGNED, not IBM's: the one extra entry point mkclone's simulated host library
 * (crates/hostlib-sim) exports, and IBM's library never does. It carries mkclone's own
 * request encoding (crates/cca, project-assigned function codes) for the steps whose
 * verb parameters IBM has not published (see docs/ARCHITECTURE.md, "CCA host library").
 * request: a CPRBX and parameter block; reply: the reply message, its length in/out.
 */
typedef void (*mkclone_simlib_ext_t)(long *return_code, long *reason_code,
                                     long *request_length, unsigned char *request,
                                     long *reply_length, unsigned char *reply);

/*
 * PROJECT-ASSIGNED, not IBM's: the second extra entry point of mkclone's simulated library
 * (`mkclone sim init` for backend = "cca" nodes): create a factory-fresh simulated card with
 * this serial number in the library's domain, as the next adapter. Return code 0: created;
 * 4: a card with this serial already exists (nothing changed).
 */
typedef void (*mkclone_simlib_create_card_t)(long *return_code, long *reason_code,
                                             long *serial_length, unsigned char *serial);

#endif
