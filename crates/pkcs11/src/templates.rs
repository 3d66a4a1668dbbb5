//! The template of every object mkclone makes, written once: the same attributes make the
//! object and check it afterwards (at open, before each use, and in `status`), so that an
//! object changed outside mkclone is named, never used. docs/ARCHITECTURE.md ("PKCS#11",
//! "Object templates") has the table, with the reason for every attribute.
//!
//! Every key is a token object (`CKA_TOKEN`), private (`CKA_PRIVATE`: usable only after the
//! user logs in), sensitive, never extractable except the master-key registers and the
//! coefficient seed (the share export wraps them, and only through a key the token's
//! security officer trusts: `CKA_WRAP_WITH_TRUSTED`), with every usage flag false but the
//! one its step needs, and
//! `CKA_MODIFIABLE` and `CKA_COPYABLE` false. The exceptions are session objects that live
//! for one step (a share key, the export key pair).

use std::fmt;

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};

use crate::raw::ReadTemplate;

/// What the token accepts, as far as the templates depend on it (found at open by
/// `backend/probe.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TokenSupport {
    /// The token knows `CKA_COPYABLE` (PKCS#11 2.40).
    pub copyable: bool,
    /// The token knows `CKA_WRAP_WITH_TRUSTED` (and so `CKA_TRUSTED` on the export key).
    /// opencryptoki 3.8.1 knows neither: the templates then leave both out, and the probe
    /// says what that leaves open.
    pub wrap_with_trusted: bool,
    /// The token accepts `CKA_UNWRAP_TEMPLATE` on a key.
    pub unwrap_template: bool,
    /// Test seam (`test-seams`): objects are made `CKA_MODIFIABLE` true, so that a test can
    /// change one of their attributes and see the next open refuse it.
    pub modifiable: bool,
}

impl Default for TokenSupport {
    fn default() -> Self {
        Self {
            copyable: true,
            wrap_with_trusted: true,
            unwrap_template: true,
            modifiable: false,
        }
    }
}

/// The kinds of object mkclone makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Made {
    /// A data object of one of mkclone's lists (its `CKA_APPLICATION`).
    Data(&'static [u8]),
    /// A master-key register value (`mkclone/mk/<id>`).
    MasterKey,
    /// The HMAC seed of the share polynomials (`mkclone/seed/<id>`). It is exported like a
    /// master key and used on the host, never in the token: a key that computed the
    /// coefficients in the token would compute them for every user-PIN holder, and the
    /// coefficients with one share give the key.
    Seed,
    /// The private half of a retained signing key (SA, CSS).
    SigningKey,
    /// The private half of the CSR key: it unwraps share keys, through its unwrap template.
    CsrKey,
    /// The public half of a retained key.
    PublicKey,
    /// A share's triple-DES key, unwrapped with the CSR key for one INSTALL (a session
    /// object); also the CSR key's unwrap template.
    ShareKey,
    /// The wrapping half of the export key pair the security officer makes for one
    /// session (a session object, `CKA_TRUSTED`).
    ExportPublic,
    /// Its decrypting half (a session object).
    ExportPrivate,
}

/// A boolean attribute's constructor.
type Flag = fn(bool) -> Attribute;

/// The usage flags of each class of key (PKCS#11 2.40, §4.7-4.9). The secret-key list is
/// also a test seam (`test_seams::SECRET_USAGES`): the tests build look-alike keys from it.
pub const SECRET_USAGES: [Flag; 7] = [
    Attribute::Encrypt,
    Attribute::Decrypt,
    Attribute::Wrap,
    Attribute::Unwrap,
    Attribute::Sign,
    Attribute::Verify,
    Attribute::Derive,
];
const PRIVATE_USAGES: [Flag; 5] = [
    Attribute::Decrypt,
    Attribute::Sign,
    Attribute::SignRecover,
    Attribute::Unwrap,
    Attribute::Derive,
];
const PUBLIC_USAGES: [Flag; 5] = [
    Attribute::Encrypt,
    Attribute::Verify,
    Attribute::VerifyRecover,
    Attribute::Wrap,
    Attribute::Derive,
];

/// Every usage flag of `all`, true only for `allowed`.
fn usages(all: &[Flag], allowed: Option<AttributeType>) -> Vec<Attribute> {
    all.iter()
        .map(|make| make(Some(make(true).attribute_type()) == allowed))
        .collect()
}

impl Made {
    /// The attributes mkclone sets on the object and checks afterwards, without its label,
    /// id, value or size.
    pub fn attributes(self, support: &TokenSupport) -> Vec<Attribute> {
        // Class, type, token or session object, private; then for a secret or private
        // key how it is kept; then its usage flags, true only for `usage`.
        let key = |class: ObjectClass, key_type: KeyType, token: bool, private: bool| {
            vec![
                Attribute::Class(class),
                Attribute::KeyType(key_type),
                Attribute::Token(token),
                Attribute::Private(private),
            ]
        };
        let kept = |extractable: bool| {
            let mut t = vec![
                Attribute::Sensitive(true),
                Attribute::Extractable(extractable),
            ];
            if support.wrap_with_trusted {
                t.push(Attribute::WrapWithTrusted(true));
            }
            t
        };
        let secret = |key_type, token, extractable, usage| {
            let mut t = key(ObjectClass::SECRET_KEY, key_type, token, true);
            t.extend(kept(extractable));
            t.extend(usages(&SECRET_USAGES, usage));
            t
        };
        let private = |token, private, usage| {
            let mut t = key(ObjectClass::PRIVATE_KEY, KeyType::RSA, token, private);
            t.extend(kept(false));
            t.extend(usages(&PRIVATE_USAGES, usage));
            t
        };
        let public = |token, private, usage| {
            let mut t = key(ObjectClass::PUBLIC_KEY, KeyType::RSA, token, private);
            t.extend(usages(&PUBLIC_USAGES, usage));
            t
        };
        let mut template = match self {
            Self::Data(application) => vec![
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Application(application.to_vec()),
            ],
            Self::MasterKey => secret(KeyType::DES3, true, true, None),
            Self::Seed => secret(KeyType::GENERIC_SECRET, true, true, None),
            Self::ShareKey => secret(KeyType::DES3, false, false, Some(AttributeType::Decrypt)),
            Self::SigningKey => private(true, true, Some(AttributeType::Sign)),
            Self::CsrKey => private(true, true, Some(AttributeType::Unwrap)),
            Self::ExportPrivate => private(false, false, Some(AttributeType::Decrypt)),
            Self::PublicKey => public(true, true, None),
            Self::ExportPublic => {
                let mut t = public(false, false, Some(AttributeType::Wrap));
                if support.wrap_with_trusted {
                    t.push(Attribute::Trusted(true));
                }
                t
            }
        };
        if support.copyable {
            // The CSR key is made by C_CopyObject (after signing its own certificate), and a
            // token cannot clear CKA_COPYABLE in a copy; a copy of it changes nothing, as
            // it is not modifiable.
            template.push(Attribute::Copyable(self == Self::CsrKey));
        }
        // Last: SoftHSM applies a template in order and, when unwrapping, refuses every
        // attribute after CKA_MODIFIABLE is false.
        template.push(Attribute::Modifiable(support.modifiable));
        template
    }

    /// Attributes the token sets itself that must read back so: a key generated in the
    /// token (`CKA_LOCAL`) and never readable (`CKA_ALWAYS_SENSITIVE`,
    /// `CKA_NEVER_EXTRACTABLE`). Checked, never set.
    pub fn implied(self) -> Vec<Attribute> {
        match self {
            Self::Seed => vec![Attribute::Local(true), Attribute::AlwaysSensitive(true)],
            Self::SigningKey | Self::CsrKey => vec![
                Attribute::Local(true),
                Attribute::AlwaysSensitive(true),
                Attribute::NeverExtractable(true),
            ],
            Self::PublicKey => vec![Attribute::Local(true)],
            _ => Vec::new(),
        }
    }

    /// The CSR key's `CKA_UNWRAP_TEMPLATE`: what every key it unwraps must be (the share
    /// key's template), where the token accepts one.
    pub fn unwrap_template(self, support: &TokenSupport) -> Option<Vec<Attribute>> {
        (self == Self::CsrKey && support.unwrap_template)
            .then(|| Self::ShareKey.attributes(support))
    }

    /// What the object is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Self::Data(_) => "one of mkclone's records",
            Self::MasterKey => "a master-key register",
            Self::Seed => "the share polynomials' seed",
            Self::SigningKey => "a retained signing key's private half",
            Self::CsrKey => "the CSR key's private half",
            Self::PublicKey => "a retained key's public half",
            Self::ShareKey => "a share key",
            Self::ExportPublic | Self::ExportPrivate => "the security officer's export key",
        }
    }

    /// What a change may have allowed, for messages.
    pub fn consequence(self) -> &'static str {
        match self {
            Self::MasterKey => {
                "the master key it holds may have left the token while it differed: treat that key as exposed"
            }
            Self::Seed => {
                "the share polynomials' coefficients may have been read: treat the shares already issued as weakened"
            }
            Self::SigningKey | Self::CsrKey | Self::PublicKey => {
                "the key may have been used or read outside mkclone: delete it and generate it again"
            }
            Self::ExportPublic | Self::ExportPrivate => {
                "the token did not make the security officer's export key as mkclone asked, so mkclone \
                 destroyed it and exported nothing: this token cannot serve as a source"
            }
            _ => "mkclone's record may have been read or replaced",
        }
    }
}

/// The CSR key is generated as a session object that may sign once (its self-signed
/// certificate), then copied into the token in its final form (`csr_copy`): so no token
/// object ever holds a CSR key that signs or can be changed.
pub(crate) fn csr_generation(support: &TokenSupport) -> Vec<Attribute> {
    replaced(
        Made::CsrKey.attributes(support),
        &[
            Attribute::Token(false),
            Attribute::Sign(true),
            Attribute::Modifiable(true),
        ],
    )
}

/// The copy of the CSR key into the token. `CKA_MODIFIABLE` comes last: once it is false,
/// nothing else can change.
pub(crate) fn csr_copy(support: &TokenSupport) -> [Attribute; 3] {
    [
        Attribute::Token(true),
        Attribute::Sign(false),
        Attribute::Modifiable(support.modifiable),
    ]
}

/// `template` with each of `with` in place of the attribute of its type.
fn replaced(mut template: Vec<Attribute>, with: &[Attribute]) -> Vec<Attribute> {
    for w in with {
        match template
            .iter_mut()
            .find(|a| a.attribute_type() == w.attribute_type())
        {
            Some(slot) => *slot = w.clone(),
            None => template.push(w.clone()),
        }
    }
    template
}

/// An attribute that differs from mkclone's template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Drift {
    /// The object's label.
    pub object: String,
    pub made: Made,
    /// `CKA_...`.
    pub attribute: String,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {} is {}, but mkclone made it {}",
            self.object,
            self.made.what(),
            self.attribute,
            self.found,
            self.expected
        )
    }
}

/// The value of `a` as a person reads it.
fn value_text(a: &Attribute) -> String {
    match a {
        Attribute::Class(c) => c.to_string(),
        Attribute::KeyType(k) => k.to_string(),
        Attribute::Application(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        other => {
            let text = format!("{other:?}");
            // `Decrypt(true)` → `true`.
            match (text.find('('), text.rfind(')')) {
                (Some(open), Some(close)) if open < close => text[open + 1..close].to_string(),
                _ => text,
            }
        }
    }
}

/// The first attribute of `expected` that `found` lacks or holds with another value.
pub(crate) fn first_drift(
    object: &str,
    made: Made,
    expected: &[Attribute],
    found: &[Attribute],
) -> Option<Drift> {
    expected.iter().find_map(|e| {
        let actual = found
            .iter()
            .find(|f| f.attribute_type() == e.attribute_type());
        if actual == Some(e) {
            return None;
        }
        Some(Drift {
            object: object.to_string(),
            made,
            attribute: e.attribute_type().to_string(),
            expected: value_text(e),
            found: actual
                .map(value_text)
                .unwrap_or_else(|| "not reported by the token".into()),
        })
    })
}

/// The attribute types to read back to check `made` (its template and what is implied).
pub(crate) fn checked_types(made: Made, support: &TokenSupport) -> Vec<AttributeType> {
    made.attributes(support)
        .iter()
        .chain(made.implied().iter())
        .map(Attribute::attribute_type)
        .collect()
}

/// An unwrap template read back against the expected one: the same attributes, whatever
/// their order.
pub(crate) fn unwrap_template_drift(
    object: &str,
    expected: &[Attribute],
    found: Option<&ReadTemplate>,
) -> Option<Drift> {
    let drift = |found: String| Drift {
        object: object.to_string(),
        made: Made::CsrKey,
        attribute: "CKA_UNWRAP_TEMPLATE".into(),
        expected: "the share key's template".into(),
        found,
    };
    let found = match found {
        None => return Some(drift("absent".into())),
        Some(ReadTemplate::Foreign { attribute, len }) => {
            return Some(drift(format!(
                "a template holding attribute type {attribute:#x} of {len} byte(s), which \
                 mkclone's template does not hold in that size"
            )));
        }
        Some(ReadTemplate::Attributes(found)) => found.as_slice(),
    };
    if let Some(inner) = first_drift(object, Made::ShareKey, expected, found) {
        return Some(drift(format!(
            "a template whose {} is {}",
            inner.attribute, inner.found
        )));
    }
    if found.len() != expected.len() {
        return Some(drift(format!("a template of {} attributes", found.len())));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(template: &[Attribute], t: AttributeType) -> Option<&Attribute> {
        template.iter().find(|a| a.attribute_type() == t)
    }

    #[test]
    fn every_key_has_every_usage_flag_false_but_its_one() {
        let support = TokenSupport::default();
        for (made, allowed) in [
            (Made::MasterKey, None),
            (Made::Seed, None),
            (Made::ShareKey, Some(AttributeType::Decrypt)),
            (Made::SigningKey, Some(AttributeType::Sign)),
            (Made::CsrKey, Some(AttributeType::Unwrap)),
            (Made::PublicKey, None),
            (Made::ExportPublic, Some(AttributeType::Wrap)),
            (Made::ExportPrivate, Some(AttributeType::Decrypt)),
        ] {
            let t = made.attributes(&support);
            let flags: Vec<&Attribute> = t
                .iter()
                .filter(|a| {
                    SECRET_USAGES
                        .iter()
                        .chain(&PRIVATE_USAGES)
                        .chain(&PUBLIC_USAGES)
                        .any(|u| u(true).attribute_type() == a.attribute_type())
                })
                .collect();
            assert!(flags.len() >= 5, "{made:?}: {flags:?}");
            for f in flags {
                let on = value_text(f) == "true";
                assert_eq!(on, Some(f.attribute_type()) == allowed, "{made:?}: {f:?}");
            }
            assert_eq!(
                value_of(&t, AttributeType::Modifiable),
                Some(&Attribute::Modifiable(false)),
                "{made:?}"
            );
            if made != Made::PublicKey && made != Made::ExportPublic {
                assert_eq!(
                    value_of(&t, AttributeType::Sensitive),
                    Some(&Attribute::Sensitive(true)),
                    "{made:?}"
                );
                // Only a master-key register and the seed may leave the token, wrapped by
                // a trusted key.
                assert_eq!(
                    value_of(&t, AttributeType::Extractable),
                    Some(&Attribute::Extractable(matches!(
                        made,
                        Made::MasterKey | Made::Seed
                    ))),
                    "{made:?}"
                );
                assert_eq!(
                    value_of(&t, AttributeType::WrapWithTrusted),
                    Some(&Attribute::WrapWithTrusted(true))
                );
            }
        }
        assert_eq!(
            value_of(
                &Made::ExportPublic.attributes(&support),
                AttributeType::Trusted
            ),
            Some(&Attribute::Trusted(true))
        );
    }

    #[test]
    fn the_csr_key_unwraps_into_the_share_key_template_only() {
        let support = TokenSupport::default();
        assert_eq!(
            Made::CsrKey.unwrap_template(&support),
            Some(Made::ShareKey.attributes(&support))
        );
        let without = TokenSupport {
            unwrap_template: false,
            ..support
        };
        assert_eq!(Made::CsrKey.unwrap_template(&without), None);
        assert_eq!(Made::SigningKey.unwrap_template(&support), None);
        // Generated as a session key that signs once; copied as the final key.
        let g = csr_generation(&support);
        assert_eq!(
            value_of(&g, AttributeType::Token),
            Some(&Attribute::Token(false))
        );
        assert_eq!(
            value_of(&g, AttributeType::Sign),
            Some(&Attribute::Sign(true))
        );
        let mut copied = g.clone();
        copied = replaced(copied, &csr_copy(&support));
        assert_eq!(copied, Made::CsrKey.attributes(&support));
        assert_eq!(
            csr_copy(&support).last(),
            Some(&Attribute::Modifiable(false))
        );
    }

    #[test]
    fn drift_names_the_object_the_attribute_and_both_values() {
        let support = TokenSupport::default();
        let expected = Made::MasterKey.attributes(&support);
        assert_eq!(
            first_drift("mkclone/mk/1", Made::MasterKey, &expected, &expected),
            None
        );
        let changed = replaced(expected.clone(), &[Attribute::Decrypt(true)]);
        let drift = first_drift("mkclone/mk/1", Made::MasterKey, &expected, &changed).unwrap();
        assert_eq!(
            drift.to_string(),
            "mkclone/mk/1 (a master-key register): CKA_DECRYPT is true, but mkclone made it false"
        );
        let missing: Vec<Attribute> = expected
            .iter()
            .filter(|a| a.attribute_type() != AttributeType::Copyable)
            .cloned()
            .collect();
        let drift = first_drift("x", Made::MasterKey, &expected, &missing).unwrap();
        assert_eq!(drift.attribute, "CKA_COPYABLE");
        assert_eq!(drift.found, "not reported by the token");
        let data = Made::Data(b"mkclone").attributes(&support);
        let other = replaced(data.clone(), &[Attribute::Application(b"other".to_vec())]);
        let drift = first_drift("mkclone/eid", Made::Data(b"mkclone"), &data, &other).unwrap();
        assert_eq!(drift.expected, "\"mkclone\"");
        assert_eq!(drift.found, "\"other\"");
        // Unwrap templates compare as sets.
        let share = Made::ShareKey.attributes(&support);
        let mut reversed = share.clone();
        reversed.reverse();
        let read = |t: Vec<Attribute>| ReadTemplate::Attributes(t);
        assert_eq!(
            unwrap_template_drift("csr", &share, Some(&read(reversed))),
            None
        );
        assert!(unwrap_template_drift("csr", &share, None).is_some());
        let loose = replaced(share.clone(), &[Attribute::Extractable(true)]);
        let drift = unwrap_template_drift("csr", &share, Some(&read(loose))).unwrap();
        assert_eq!(drift.attribute, "CKA_UNWRAP_TEMPLATE");
        assert!(drift.found.contains("CKA_EXTRACTABLE is true"), "{drift}");
        // An attribute that could not be decoded safely is drift, named by type and size.
        let foreign = ReadTemplate::Foreign {
            attribute: cryptoki_sys::CKA_START_DATE,
            len: 1,
        };
        let drift = unwrap_template_drift("csr", &share, Some(&foreign)).unwrap();
        assert!(
            drift.found.contains("0x110") && drift.found.contains("1 byte"),
            "{drift}"
        );
    }
}
