//! The session wrapper: every PKCS#11 call mkclone makes on a token goes through
//! [`Token::call`], which counts it, times it (for the benchmark: time inside the token
//! against our own CPU), and, with the `test-seams` feature, can stop the process's work
//! after the k-th call (a crash between two calls).
//!
//! A "call" is one operation of this wrapper: one C_ function for every state change
//! (C_CreateObject, C_DestroyObject, C_GenerateKey[Pair], C_CopyObject, C_UnwrapKey), and
//! the Init/Update/Final group for a search or a digest.

use std::time::{Duration, Instant};

use cryptoki::error::{Error as CkError, Result as CkResult};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// How a token makes an RSASSA-PKCS1-v1_5 signature with SHA-256 (RFC 8017 §8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RsaSigning {
    /// `CKM_SHA256_RSA_PKCS`: the token hashes and pads.
    Sha256RsaPkcs,
    /// `CKM_RSA_PKCS` over the DER `DigestInfo` of the SHA-256 hash, computed on the host:
    /// for tokens without `CKM_SHA256_RSA_PKCS` (opencryptoki 3.8.1). The signature is the
    /// same (PKCS#1 v1.5 is deterministic), and the private key never leaves the token.
    RsaPkcsOverDigestInfo,
}

/// The DER `DigestInfo` of a SHA-256 hash up to the hash itself (RFC 8017 §9.2, note 1):
/// `SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.2.1, NULL }, OCTET STRING (32 bytes) }`.
pub(crate) const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The `DigestInfo` `CKM_RSA_PKCS` signs for SHA-256 over `data`.
pub(crate) fn sha256_digest_info(data: &[u8]) -> Vec<u8> {
    let mut out = SHA256_DIGEST_INFO_PREFIX.to_vec();
    out.extend_from_slice(&Sha256::digest(data));
    out
}

/// How many PKCS#11 calls a node made and how long they took.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct CallStats {
    pub calls: u64,
    pub time_in_calls: Duration,
}

impl std::ops::AddAssign for CallStats {
    fn add_assign(&mut self, other: Self) {
        self.calls = self.calls.saturating_add(other.calls);
        self.time_in_calls = self.time_in_calls.saturating_add(other.time_in_calls);
    }
}

/// A failed call.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The token answered an error.
    Token {
        function: &'static str,
        error: CkError,
        /// The call would have changed the token's state.
        mutating: bool,
    },
    /// The test seam stopped the work before this call (the "crash").
    Stopped { function: &'static str, after: u64 },
}

impl CallError {
    pub fn function(&self) -> &'static str {
        match self {
            Self::Token { function, .. } | Self::Stopped { function, .. } => function,
        }
    }
    pub fn is_stop(&self) -> bool {
        matches!(self, Self::Stopped { .. })
    }
    /// The function and the return value it answered (`C_UnwrapKey answered
    /// CKR_DEVICE_ERROR`), without PKCS#11's words for it; [`CallError::describe`] has them.
    pub fn answer(&self) -> String {
        match self {
            Self::Token {
                function,
                error: CkError::Pkcs11(rv, _),
                ..
            } => format!(
                "{function} answered {}",
                crate::error::return_value_name(rv)
            ),
            Self::Token {
                function, error, ..
            } => format!("{function}: {error}"),
            Self::Stopped { .. } => self.describe(),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Self::Token { error, .. } => crate::error::explain(error),
            Self::Stopped { function, after } => format!(
                "the work stopped after PKCS#11 call {after}, before {function} (injected crash)"
            ),
        }
    }
}

pub(crate) type CallResult<T> = Result<T, CallError>;

/// A logged-in read/write session on one token.
pub(crate) struct Token {
    session: Session,
    stats: CallStats,
    /// Test seam: stop before call number `limit + 1` counted from arming.
    stop_after: Option<u64>,
    since_armed: u64,
    stopped: bool,
    /// Test seam: answer every `CKA_CHECK_VALUE` as empty, as opencryptoki 3.27 does for a
    /// created triple-DES key.
    withhold_check_values: bool,
    /// Test seam: the next calls of a function that fail with a return value instead of
    /// reaching the token (a token fault, or a token's answer about the data).
    #[cfg(feature = "test-seams")]
    failing: Option<Failing>,
}

/// The calls [`Token::fail_calls`] makes fail.
#[cfg(feature = "test-seams")]
struct Failing {
    function: &'static str,
    rv: cryptoki::error::RvError,
    times: u32,
}

impl Token {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            stats: CallStats::default(),
            stop_after: None,
            since_armed: 0,
            stopped: false,
            withhold_check_values: false,
            #[cfg(feature = "test-seams")]
            failing: None,
        }
    }

    /// Answer the next `times` calls of `function` (`"C_UnwrapKey"`) with `rv`, without
    /// making them (test seam; `times` 0 disarms it).
    #[cfg(feature = "test-seams")]
    pub fn fail_calls(&mut self, function: &'static str, rv: cryptoki::error::RvError, times: u32) {
        self.failing = (times > 0).then_some(Failing {
            function,
            rv,
            times,
        });
    }

    /// The return value the seam of [`Token::fail_calls`] answers to this call of
    /// `function`, if it is armed for it.
    #[cfg(feature = "test-seams")]
    fn injected(&mut self, function: &'static str) -> Option<CkError> {
        use cryptoki::context::Function;
        let failing = self.failing.as_mut().filter(|f| f.function == function)?;
        failing.times -= 1;
        let rv = failing.rv;
        if failing.times == 0 {
            self.failing = None;
        }
        let named = match function {
            "C_UnwrapKey" => Function::UnwrapKey,
            "C_Decrypt" => Function::Decrypt,
            "C_DestroyObject" => Function::DestroyObject,
            _ => Function::GetFunctionList,
        };
        Some(CkError::Pkcs11(rv, named))
    }

    #[cfg(not(feature = "test-seams"))]
    fn injected(&mut self, _function: &'static str) -> Option<CkError> {
        None
    }

    /// Answer every `CKA_CHECK_VALUE` as empty from now on (test seam).
    #[cfg(feature = "test-seams")]
    pub fn withhold_check_values(&mut self) {
        self.withhold_check_values = true;
    }

    pub fn stats(&self) -> CallStats {
        self.stats
    }

    /// Stop all work after `calls` more calls (test seam).
    #[cfg(feature = "test-seams")]
    pub fn stop_after(&mut self, calls: u64) {
        self.stop_after = Some(calls);
        self.since_armed = 0;
        self.stopped = false;
    }

    /// Calls made since the seam was armed.
    #[cfg(feature = "test-seams")]
    pub fn calls_since_armed(&self) -> u64 {
        self.since_armed
    }

    pub(crate) fn call<T>(
        &mut self,
        function: &'static str,
        mutating: bool,
        f: impl FnOnce(&Session) -> CkResult<T>,
    ) -> CallResult<T> {
        if self.stopped
            || self
                .stop_after
                .is_some_and(|limit| self.since_armed >= limit)
        {
            self.stopped = true;
            return Err(CallError::Stopped {
                function,
                after: self.since_armed,
            });
        }
        self.since_armed = self.since_armed.saturating_add(1);
        if let Some(error) = self.injected(function) {
            return Err(CallError::Token {
                function,
                error,
                mutating,
            });
        }
        let start = Instant::now();
        let result = f(&self.session);
        self.stats.time_in_calls = self.stats.time_in_calls.saturating_add(start.elapsed());
        self.stats.calls = self.stats.calls.saturating_add(1);
        result.map_err(|error| CallError::Token {
            function,
            error,
            mutating,
        })
    }

    pub fn find(&mut self, template: &[Attribute]) -> CallResult<Vec<ObjectHandle>> {
        self.call("C_FindObjects", false, |s| s.find_objects(template))
    }

    pub fn attributes(
        &mut self,
        object: ObjectHandle,
        types: &[AttributeType],
    ) -> CallResult<Vec<Attribute>> {
        let withhold = self.withhold_check_values;
        let attributes = self.call("C_GetAttributeValue", false, |s| {
            s.get_attributes(object, types)
        })?;
        Ok(if withhold {
            attributes
                .into_iter()
                .map(|a| match a {
                    Attribute::CheckValue(_) => Attribute::CheckValue(Vec::new()),
                    other => other,
                })
                .collect()
        } else {
            attributes
        })
    }

    /// `CKA_LABEL` as text (empty when absent or not UTF-8).
    pub fn label(&mut self, object: ObjectHandle) -> CallResult<String> {
        let attrs = self.attributes(object, &[AttributeType::Label])?;
        Ok(attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Label(l) => String::from_utf8(l).ok(),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// `CKA_VALUE` of a non-sensitive object (empty when the token withholds it).
    pub fn value(&mut self, object: ObjectHandle) -> CallResult<Vec<u8>> {
        let attrs = self.attributes(object, &[AttributeType::Value])?;
        Ok(attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Create an object. `CKA_VALUE` bytes in the template are zeroized afterwards
    /// whatever the outcome.
    pub fn create(&mut self, mut template: Vec<Attribute>) -> CallResult<ObjectHandle> {
        let result = self.call("C_CreateObject", true, |s| s.create_object(&template));
        for attribute in template.iter_mut() {
            if let Attribute::Value(v) = attribute {
                v.zeroize();
            }
        }
        result
    }

    pub fn destroy(&mut self, object: ObjectHandle) -> CallResult<()> {
        self.call("C_DestroyObject", true, |s| s.destroy_object(object))
    }

    pub fn copy(
        &mut self,
        object: ObjectHandle,
        template: &[Attribute],
    ) -> CallResult<ObjectHandle> {
        self.call("C_CopyObject", true, |s| s.copy_object(object, template))
    }

    pub fn update(&mut self, object: ObjectHandle, template: &[Attribute]) -> CallResult<()> {
        self.call("C_SetAttributeValue", true, |s| {
            s.update_attributes(object, template)
        })
    }

    pub fn generate_key_pair(
        &mut self,
        mechanism: &Mechanism,
        public: &[Attribute],
        private: &[Attribute],
    ) -> CallResult<(ObjectHandle, ObjectHandle)> {
        self.call("C_GenerateKeyPair", true, |s| {
            s.generate_key_pair(mechanism, public, private)
        })
    }

    pub fn generate_key(
        &mut self,
        mechanism: &Mechanism,
        template: &[Attribute],
    ) -> CallResult<ObjectHandle> {
        self.call("C_GenerateKey", true, |s| {
            s.generate_key(mechanism, template)
        })
    }

    pub fn sign(
        &mut self,
        mechanism: &Mechanism,
        key: ObjectHandle,
        data: &[u8],
    ) -> CallResult<Vec<u8>> {
        self.call("C_Sign", false, |s| s.sign(mechanism, key, data))
    }

    /// An RSASSA-PKCS1-v1_5 signature with SHA-256 over `data` by `key`, inside the token,
    /// made as `how` says.
    pub fn sign_sha256_rsa(
        &mut self,
        how: RsaSigning,
        key: ObjectHandle,
        data: &[u8],
    ) -> CallResult<Vec<u8>> {
        match how {
            RsaSigning::Sha256RsaPkcs => self.sign(&Mechanism::Sha256RsaPkcs, key, data),
            RsaSigning::RsaPkcsOverDigestInfo => {
                let digest_info = sha256_digest_info(data);
                self.sign(&Mechanism::RsaPkcs, key, &digest_info)
            }
        }
    }

    pub fn decrypt(
        &mut self,
        mechanism: &Mechanism,
        key: ObjectHandle,
        data: &[u8],
    ) -> CallResult<Zeroizing<Vec<u8>>> {
        self.call("C_Decrypt", false, |s| {
            s.decrypt(mechanism, key, data).map(Zeroizing::new)
        })
    }

    pub fn wrap(
        &mut self,
        mechanism: &Mechanism,
        wrapping: ObjectHandle,
        key: ObjectHandle,
    ) -> CallResult<Vec<u8>> {
        self.call("C_WrapKey", false, |s| s.wrap_key(mechanism, wrapping, key))
    }

    /// Unwrap into a new object; session objects (`CKA_TOKEN` false) leave no trace.
    pub fn unwrap(
        &mut self,
        mechanism: &Mechanism,
        unwrapping: ObjectHandle,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> CallResult<ObjectHandle> {
        let mutating = template.iter().any(|a| matches!(a, Attribute::Token(true)));
        self.call("C_UnwrapKey", mutating, |s| {
            s.unwrap_key(mechanism, unwrapping, wrapped, template)
        })
    }

    /// SHA-1 over `prefix` then the value of `key`, inside the token (C_DigestKey).
    pub fn digest_with_key(
        &mut self,
        mechanism: &Mechanism,
        prefix: &[u8],
        key: ObjectHandle,
    ) -> CallResult<Vec<u8>> {
        self.call("C_DigestInit", false, |s| s.digest_init(mechanism))?;
        self.call("C_DigestUpdate", false, |s| s.digest_update(prefix))?;
        self.call("C_DigestKey", false, |s| s.digest_key(key))?;
        self.call("C_DigestFinal", false, |s| s.digest_final())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha256_digest_info_is_rfc_8017s() {
        // Assembled from the DER of RFC 8017 §9.2's DigestInfo for id-sha256 (RFC 8017
        // appendix A.2.4: id-sha256 = 2.16.840.1.101.3.4.2.1, parameters NULL).
        let oid = [
            0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        ];
        let null = [0x05, 0x00];
        let mut algorithm = vec![0x30, (oid.len() + null.len()) as u8];
        algorithm.extend(oid);
        algorithm.extend(null);
        let hash = [0xab; 32];
        let mut octets = vec![0x04, 32];
        octets.extend(hash);
        let mut expected = vec![0x30, (algorithm.len() + octets.len()) as u8];
        expected.extend(&algorithm);
        expected.extend(&octets);
        assert_eq!(expected.len(), 51);
        assert_eq!(&expected[..19], &SHA256_DIGEST_INFO_PREFIX);
        // And over real data: the prefix, then SHA-256 (FIPS 180-2's "abc" vector).
        let info = sha256_digest_info(b"abc");
        assert_eq!(&info[..19], &SHA256_DIGEST_INFO_PREFIX);
        assert_eq!(
            hex::encode(&info[19..]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
