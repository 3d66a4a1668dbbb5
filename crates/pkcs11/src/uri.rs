//! `pkcs11:` URIs (RFC 7512, "The PKCS #11 URI Scheme"): parsed for a node's `module` and
//! `token` in the configuration, and written for `mkclone devices`.
//!
//! The grammar is RFC 7512 §2.3: `"pkcs11:" pk11-path [ "?" pk11-query ]`, path attributes
//! separated by `;`, query attributes by `&`, each `name=value`. A value is percent-decoded
//! (RFC 3986 §2.1); a character outside `pk11-pchar` (path) or `pk11-qchar` (query) must be
//! percent-encoded: the path admits the unreserved characters, `: [ ] @ ! $ ' ( ) * + , =`
//! and `&`; the query the same without `&`, plus `/ ? |`. Attribute names are matched
//! without regard to ASCII case (RFC 5234 §2.3: ABNF literals are case-insensitive), as is
//! the scheme (RFC 3986 §3.1).
//!
//! This parser reads every attribute RFC 7512 defines and keeps what it says; what mkclone
//! does with each is decided where a node's configuration is built
//! (`Pkcs11NodeConfig::from_fields`). It is stricter than the RFC asks of a consumer in two
//! ways, both for a configuration file that must mean exactly one thing: an attribute given
//! twice is refused in the query as in the path (§2.3 forbids it in the path), and a
//! vendor-specific attribute is kept for the caller to refuse (§2.5 has a consumer treat an
//! unknown path attribute as matching nothing; a configuration error says so at once).
//!
//! A `pin-value` is never kept: only that one was given (the configuration refuses it, and
//! no message ever repeats a URI or a value that could hold a PIN).

use std::fmt::{self, Write as _};

use thiserror::Error;

/// Why a `pkcs11:` URI was refused. Messages name the attribute, never a whole URI or a
/// value (a URI may carry a PIN).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum UriError {
    #[error("a pkcs11: URI starts with \"pkcs11:\" (RFC 7512 §2.3)")]
    NotPkcs11,
    #[error(
        "a pkcs11: URI has no fragment (\"#\"); percent-encode a \"#\" in a value as %23 \
         (RFC 7512 §2.3)"
    )]
    Fragment,
    #[error(
        "the URI's {component} has an empty attribute (two separators in a row, or one at the end)"
    )]
    EmptyAttribute { component: &'static str },
    #[error("{text:?} in the URI's {component} is not an attribute: write name=value")]
    NoValue {
        component: &'static str,
        /// The attribute name (before any "=": never a value).
        text: String,
    },
    #[error("attribute {attribute:?} appears twice; give each attribute once (RFC 7512 §2.3)")]
    Duplicate { attribute: String },
    #[error("attribute {attribute:?} belongs in the URI's {belongs} (RFC 7512 §2.3)")]
    WrongComponent {
        attribute: String,
        belongs: &'static str,
    },
    #[error("{attribute:?} is not a valid attribute name (letters, digits, - and _)")]
    BadName { attribute: String },
    #[error("attribute {attribute:?}: {reason}")]
    BadValue { attribute: String, reason: String },
}

/// A `library-version` (`CK_INFO.libraryVersion`): major and minor.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct LibraryVersion {
    pub major: u8,
    pub minor: u8,
}

impl fmt::Display for LibraryVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { major, minor } = self;
        write!(f, "{major}.{minor}")
    }
}

/// A parsed `pkcs11:` URI: every attribute RFC 7512 defines, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    // The path (RFC 7512 §2.3, pk11-path-attr).
    pub token: Option<String>,
    pub serial: Option<String>,
    /// manufacturer, model, slot-id, slot-description, slot-manufacturer and the
    /// library-* attributes: what a node's configuration matches a token by.
    pub token_match: TokenMatch,
    pub object: Option<String>,
    /// `type`: public, private, cert, secret-key or data.
    pub object_type: Option<String>,
    pub id: Option<Vec<u8>>,
    // The query (pk11-query-attr).
    pub pin_source: Option<String>,
    /// A `pin-value` was given (its value is not kept).
    pub pin_value_given: bool,
    pub module_name: Option<String>,
    pub module_path: Option<String>,
    /// Vendor-specific attributes (names only: their values are not kept).
    pub vendor: Vec<String>,
}

/// Attributes of a `pkcs11:` URI beyond the label and serial that describe a token, its
/// slot and its module: in a node's configuration, each one given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenMatch {
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub slot_id: Option<u64>,
    #[serde(default)]
    pub slot_description: Option<String>,
    #[serde(default)]
    pub slot_manufacturer: Option<String>,
    #[serde(default)]
    pub library_manufacturer: Option<String>,
    #[serde(default)]
    pub library_description: Option<String>,
    #[serde(default)]
    pub library_version: Option<LibraryVersion>,
}

impl TokenMatch {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The two components, for messages.
const PATH: &str = "path";
const QUERY: &str = "query";

/// The standard attribute names and the component each belongs to.
const PATH_ATTRIBUTES: [&str; 13] = [
    "token",
    "manufacturer",
    "serial",
    "model",
    "library-manufacturer",
    "library-description",
    "library-version",
    "object",
    "type",
    "id",
    "slot-description",
    "slot-manufacturer",
    "slot-id",
];
const QUERY_ATTRIBUTES: [&str; 4] = ["pin-source", "pin-value", "module-name", "module-path"];

/// RFC 3986 §2.3 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 7512 §2.3 `pk11-res-avail`.
fn is_res_avail(b: u8) -> bool {
    matches!(
        b,
        b':' | b'[' | b']' | b'@' | b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
    )
}

/// A character a value may hold unencoded in `component`.
fn may_stand(component: &str, b: u8) -> bool {
    is_unreserved(b)
        || is_res_avail(b)
        || if component == PATH {
            b == b'&'
        } else {
            matches!(b, b'/' | b'?' | b'|')
        }
}

/// Percent-decode `value` of `attribute` (in `component`), checking that every other
/// character may stand unencoded there.
fn decode(component: &'static str, attribute: &str, value: &str) -> Result<Vec<u8>, UriError> {
    let bad = |reason: String| UriError::BadValue {
        attribute: attribute.into(),
        reason,
    };
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| {
                    u8::from_str_radix(h, 16)
                        .ok()
                        .filter(|_| h.bytes().all(|c| c.is_ascii_hexdigit()))
                });
            match hex {
                Some(decoded) => out.push(decoded),
                None => {
                    return Err(bad(
                        "a \"%\" must be followed by two hex digits (percent-encoding, RFC 3986 §2.1); \
                         write a literal \"%\" as %25"
                            .into(),
                    ));
                }
            }
            i += 3;
        } else if may_stand(component, b) {
            out.push(b);
            i += 1;
        } else {
            let shown = if b.is_ascii_graphic() {
                format!("\"{}\"", char::from(b))
            } else if b == b' ' {
                "a space".to_string()
            } else {
                format!("byte 0x{b:02x}")
            };
            return Err(bad(format!(
                "{shown} must be percent-encoded in the URI's {component} (as %{b:02X}; RFC 7512 §2.3)"
            )));
        }
    }
    Ok(out)
}

/// Whether `value` is well-formed in `component` by the rules [`decode`] applies, checked
/// without decoding it (for a value that is a secret).
fn well_formed(component: &str, value: &[u8]) -> bool {
    let mut rest = value;
    while let Some((&b, tail)) = rest.split_first() {
        rest = if b == b'%' {
            match tail {
                [h, l, after @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => after,
                _ => return false,
            }
        } else if may_stand(component, b) {
            tail
        } else {
            return false;
        };
    }
    true
}

fn text(attribute: &str, bytes: Vec<u8>) -> Result<String, UriError> {
    String::from_utf8(bytes).map_err(|_| UriError::BadValue {
        attribute: attribute.into(),
        reason: "the decoded value is not UTF-8".into(),
    })
}

fn digits(attribute: &str, value: &str) -> Result<(), UriError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError::BadValue {
            attribute: attribute.into(),
            reason: "must be a decimal number (RFC 7512 §2.3)".into(),
        });
    }
    Ok(())
}

fn library_version(value: &str) -> Result<LibraryVersion, UriError> {
    let attribute = "library-version";
    let (major, minor) = value.split_once('.').unwrap_or((value, "0"));
    digits(attribute, major)?;
    digits(attribute, minor)?;
    let part = |p: &str| {
        p.parse::<u8>().map_err(|_| UriError::BadValue {
            attribute: attribute.into(),
            reason: "a version number is at most 255 (CK_VERSION)".into(),
        })
    };
    Ok(LibraryVersion {
        major: part(major)?,
        minor: part(minor)?,
    })
}

impl Pkcs11Uri {
    /// Whether `text` is meant as a `pkcs11:` URI (the scheme, in any case).
    pub fn is_uri(text: &str) -> bool {
        text.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("pkcs11:"))
    }

    /// Parse `text` (RFC 7512 §2.3).
    pub fn parse(text: &str) -> Result<Self, UriError> {
        if !Self::is_uri(text) {
            return Err(UriError::NotPkcs11);
        }
        let rest = &text[7..];
        if rest.contains('#') {
            return Err(UriError::Fragment);
        }
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut uri = Self::default();
        let mut seen: Vec<String> = Vec::new();
        for (component, part, separator) in [(PATH, Some(path), ';'), (QUERY, query, '&')] {
            let Some(part) = part else { continue };
            if part.is_empty() {
                continue;
            }
            for attr in part.split(separator) {
                if attr.is_empty() {
                    return Err(UriError::EmptyAttribute { component });
                }
                let Some((name, value)) = attr.split_once('=') else {
                    return Err(UriError::NoValue {
                        component,
                        text: attr.chars().take(40).collect(),
                    });
                };
                let name = name.to_ascii_lowercase();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(UriError::BadName {
                        attribute: name.chars().take(40).collect(),
                    });
                }
                if seen.contains(&name) {
                    return Err(UriError::Duplicate { attribute: name });
                }
                seen.push(name.clone());
                uri.set(component, &name, value)?;
            }
        }
        Ok(uri)
    }

    fn set(&mut self, component: &'static str, name: &str, value: &str) -> Result<(), UriError> {
        let standard_here = if component == PATH {
            PATH_ATTRIBUTES.contains(&name)
        } else {
            QUERY_ATTRIBUTES.contains(&name)
        };
        let standard_there = if component == PATH {
            QUERY_ATTRIBUTES.contains(&name)
        } else {
            PATH_ATTRIBUTES.contains(&name)
        };
        if standard_there {
            return Err(UriError::WrongComponent {
                attribute: name.into(),
                belongs: if component == PATH { QUERY } else { PATH },
            });
        }
        if name == "pin-value" {
            // Checked, never decoded (no copy of the PIN to wipe), never kept, and never
            // quoted: the error a malformed one gets names no character of it.
            if !well_formed(component, value.as_bytes()) {
                return Err(UriError::BadValue {
                    attribute: name.into(),
                    reason: format!(
                        "it is not well-formed in the URI's {component} (a character that must be \
                         percent-encoded, or a \"%\" without two hex digits; RFC 7512 §2.3); its \
                         characters are not shown. A PIN does not belong in a URI: name where to \
                         read it with pin-source"
                    ),
                });
            }
            self.pin_value_given = true;
            return Ok(());
        }
        if !standard_here {
            decode(component, name, value)?;
            self.vendor.push(name.into());
            return Ok(());
        }
        let decoded = decode(component, name, value)?;
        match name {
            "id" => self.id = Some(decoded),
            "slot-id" => {
                let value = text(name, decoded)?;
                digits(name, &value)?;
                self.token_match.slot_id = Some(value.parse().map_err(|_| UriError::BadValue {
                    attribute: name.into(),
                    reason: "is larger than any slot id (CK_SLOT_ID)".into(),
                })?);
            }
            "library-version" => {
                self.token_match.library_version = Some(library_version(&text(name, decoded)?)?);
            }
            "type" => {
                let value = text(name, decoded)?;
                if !["public", "private", "cert", "secret-key", "data"].contains(&value.as_str()) {
                    return Err(UriError::BadValue {
                        attribute: name.into(),
                        reason: "is one of public, private, cert, secret-key, data (RFC 7512 §2.3)"
                            .into(),
                    });
                }
                self.object_type = Some(value);
            }
            _ => {
                let value = Some(text(name, decoded)?);
                match name {
                    "token" => self.token = value,
                    "manufacturer" => self.token_match.manufacturer = value,
                    "serial" => self.serial = value,
                    "model" => self.token_match.model = value,
                    "library-manufacturer" => self.token_match.library_manufacturer = value,
                    "library-description" => self.token_match.library_description = value,
                    "object" => self.object = value,
                    "slot-description" => self.token_match.slot_description = value,
                    "slot-manufacturer" => self.token_match.slot_manufacturer = value,
                    "pin-source" => self.pin_source = value,
                    "module-name" => self.module_name = value,
                    "module-path" => self.module_path = value,
                    _ => unreachable!("every standard attribute is handled"),
                }
            }
        }
        Ok(())
    }
}

/// Percent-encode `value` for `component`: everything but the unreserved characters and
/// `: [ ] @ ! $ ' ( ) * + ,` (and `/ |` in the query) is encoded, so that any RFC 7512
/// parser reads it back unchanged.
fn encode(component: &str, value: &str, out: &mut String) {
    for b in value.bytes() {
        let plain = is_unreserved(b)
            || matches!(
                b,
                b':' | b'[' | b']' | b'@' | b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b'+' | b','
            )
            || (component == QUERY && matches!(b, b'/' | b'|'));
        if plain {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

impl fmt::Display for Pkcs11Uri {
    /// The URI with the attributes mkclone writes (token, manufacturer, model, serial,
    /// slot-id; module-path), each percent-encoded as needed. `pin-value` is never written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::from("pkcs11:");
        let mut first = true;
        let slot_id = self.token_match.slot_id.map(|s| s.to_string());
        for (name, value) in [
            ("token", self.token.as_deref()),
            ("manufacturer", self.token_match.manufacturer.as_deref()),
            ("model", self.token_match.model.as_deref()),
            ("serial", self.serial.as_deref()),
            ("slot-id", slot_id.as_deref()),
        ] {
            if let Some(value) = value {
                if !first {
                    out.push(';');
                }
                first = false;
                out.push_str(name);
                out.push('=');
                encode(PATH, value, &mut out);
            }
        }
        if let Some(path) = &self.module_path {
            out.push_str("?module-path=");
            encode(QUERY, path, &mut out);
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of RFC 7512 §3, hand-copied from the RFC (its line breaks, which the RFC
    // adds for the page, removed), each with what the RFC says it identifies.

    #[test]
    fn rfc7512_section_3_examples_parse() {
        // "The following PKCS #11 URI represents an empty URI": every attribute absent.
        assert_eq!(Pkcs11Uri::parse("pkcs11:").unwrap(), Pkcs11Uri::default());

        let u = Pkcs11Uri::parse("pkcs11:object=my-pubkey;type=public").unwrap();
        assert_eq!(u.object.as_deref(), Some("my-pubkey"));
        assert_eq!(u.object_type.as_deref(), Some("public"));

        let u = Pkcs11Uri::parse("pkcs11:object=my-key;type=private?pin-source=file:/etc/token")
            .unwrap();
        assert_eq!(u.object.as_deref(), Some("my-key"));
        assert_eq!(u.object_type.as_deref(), Some("private"));
        assert_eq!(u.pin_source.as_deref(), Some("file:/etc/token"));

        let u = Pkcs11Uri::parse(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;\
             manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;\
             id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(
            u.token_match.manufacturer.as_deref(),
            Some("Snake Oil, Inc.")
        );
        assert_eq!(u.token_match.model.as_deref(), Some("1.0"));
        assert_eq!(u.object.as_deref(), Some("my-certificate"));
        assert_eq!(u.object_type.as_deref(), Some("cert"));
        assert_eq!(
            u.id.as_deref(),
            Some(&[0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91][..])
        );
        // "serial=": the attribute is present, with the empty value.
        assert_eq!(u.serial.as_deref(), Some(""));
        assert_eq!(u.pin_source.as_deref(), Some("file:/etc/token_pin"));

        let u = Pkcs11Uri::parse("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11")
            .unwrap();
        assert_eq!(u.module_name.as_deref(), Some("mypkcs11"));

        let u = Pkcs11Uri::parse(
            "pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1",
        )
        .unwrap();
        assert_eq!(u.module_path.as_deref(), Some("/mnt/libmypkcs11.so.1"));

        let u = Pkcs11Uri::parse(
            "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.\
             ?pin-value=the-pin",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("Software PKCS#11 softtoken"));
        assert!(u.pin_value_given);
        assert!(!format!("{u:?}").contains("the-pin"), "the PIN is not kept");

        let u = Pkcs11Uri::parse("pkcs11:slot-description=Sun%20Metaslot").unwrap();
        assert_eq!(
            u.token_match.slot_description.as_deref(),
            Some("Sun Metaslot")
        );

        let u = Pkcs11Uri::parse(
            "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;\
             library-description=Soft%20Token%20Library;library-version=1.23",
        )
        .unwrap();
        assert_eq!(
            u.token_match.library_manufacturer.as_deref(),
            Some("Snake Oil, Inc.")
        );
        assert_eq!(
            u.token_match.library_description.as_deref(),
            Some("Soft Token Library")
        );
        assert_eq!(
            u.token_match.library_version,
            Some(LibraryVersion {
                major: 1,
                minor: 23
            })
        );

        // "%25" is a literal "%"; "library-version=3" is version 3.0; hex digits in either case.
        let u = Pkcs11Uri::parse(
            "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;\
             id=%01%02%03%Ba%dd%Ca%fe%04%05%06",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("My token% created by Joe"));
        assert_eq!(
            u.token_match.library_version,
            Some(LibraryVersion { major: 3, minor: 0 })
        );
        assert_eq!(
            u.id.as_deref(),
            Some(&[1, 2, 3, 0xba, 0xdd, 0xca, 0xfe, 4, 5, 6][..])
        );

        // An encoded ";" and "%" inside a value.
        let u = Pkcs11Uri::parse(
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("A name with a substring %;"));

        // UTF-8 in a label, percent-encoded byte by byte.
        let u = Pkcs11Uri::parse(
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;\
             object=my-certificate;type=cert",
        )
        .unwrap();
        assert_eq!(
            u.token.as_deref(),
            Some("Name with a small A with acute: \u{e1}")
        );

        // Vendor-specific attributes in the path and the query.
        let u = Pkcs11Uri::parse(
            "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a\
             ?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
        )
        .unwrap();
        assert_eq!(u.vendor, vec!["vendor-aaa", "vendor-bbb"]);
    }

    #[test]
    fn scheme_and_attribute_names_ignore_ascii_case() {
        let u = Pkcs11Uri::parse("PKCS11:Token=src;SERIAL=0001?Module-Path=/m.so").unwrap();
        assert_eq!(u.token.as_deref(), Some("src"));
        assert_eq!(u.serial.as_deref(), Some("0001"));
        assert_eq!(u.module_path.as_deref(), Some("/m.so"));
        assert!(Pkcs11Uri::is_uri("Pkcs11:"));
        assert!(!Pkcs11Uri::is_uri("source"));
        assert!(!Pkcs11Uri::is_uri("pkcs11"));
    }

    #[test]
    fn malformed_uris_name_the_attribute_and_never_a_value() {
        let cases: [(&str, UriError); 10] = [
            ("pkcs12:token=a", UriError::NotPkcs11),
            ("pkcs11:token=a#frag", UriError::Fragment),
            (
                "pkcs11:token=a;;model=b",
                UriError::EmptyAttribute { component: PATH },
            ),
            (
                "pkcs11:token",
                UriError::NoValue {
                    component: PATH,
                    text: "token".into(),
                },
            ),
            (
                "pkcs11:token=a;token=b",
                UriError::Duplicate {
                    attribute: "token".into(),
                },
            ),
            (
                "pkcs11:token=a?module-path=/a&Module-Path=/b",
                UriError::Duplicate {
                    attribute: "module-path".into(),
                },
            ),
            (
                "pkcs11:module-path=/m.so",
                UriError::WrongComponent {
                    attribute: "module-path".into(),
                    belongs: QUERY,
                },
            ),
            (
                "pkcs11:?token=a",
                UriError::WrongComponent {
                    attribute: "token".into(),
                    belongs: PATH,
                },
            ),
            (
                "pkcs11:to.ken=a",
                UriError::BadName {
                    attribute: "to.ken".into(),
                },
            ),
            (
                "pkcs11:slot-id=0x10",
                UriError::BadValue {
                    attribute: "slot-id".into(),
                    reason: "must be a decimal number (RFC 7512 §2.3)".into(),
                },
            ),
        ];
        for (uri, expected) in cases {
            assert_eq!(Pkcs11Uri::parse(uri), Err(expected), "{uri}");
        }
        // Each URI is "pkcs11:" and the first of these.
        for (rest, attribute, says) in [
            ("token=my token", "token", "a space must be percent-encoded"),
            (
                "token=a/b",
                "token",
                "\"/\" must be percent-encoded in the URI's path",
            ),
            ("token=50%", "token", "two hex digits"),
            ("token=%zz", "token", "two hex digits"),
            ("token=%ff", "token", "not UTF-8"),
            ("token=a?module-path=/a&b", "b", ""),
            ("library-version=1.256", "library-version", "at most 255"),
            ("library-version=1.", "library-version", "decimal number"),
            ("type=key", "type", "public, private"),
            (
                "token=a?pin-value=zq xv",
                "pin-value",
                "characters are not shown",
            ),
        ] {
            let uri = format!("pkcs11:{rest}");
            let err = Pkcs11Uri::parse(&uri).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{attribute:?}")), "{uri}: {msg}");
            assert!(msg.contains(says), "{uri}: {msg}");
            assert!(!msg.contains("zq"), "{uri}: a value is never shown: {msg}");
        }
        // "/", "?" and "|" stand unencoded in the query, "&" in the path.
        let u = Pkcs11Uri::parse("pkcs11:token=R&D?module-path=/opt/x|y?.so").unwrap();
        assert_eq!(u.token.as_deref(), Some("R&D"));
        assert_eq!(u.module_path.as_deref(), Some("/opt/x|y?.so"));
    }

    #[test]
    fn a_malformed_pin_value_is_refused_without_showing_any_of_it() {
        // Each PIN has one character that must be percent-encoded; the error names neither
        // that character nor any other of the PIN.
        for pin in ["Zq^Wx", "Zq\"Wx", "Zq%4Wx", "Zq%G1Wx", "Zq Wx", "Zq<Wx"] {
            let err = Pkcs11Uri::parse(&format!("pkcs11:token=a?pin-value={pin}")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("\"pin-value\""), "{pin}: {msg}");
            assert!(msg.contains("not shown"), "{pin}: {msg}");
            for shown in ["Zq", "Wx", "^", "%4", "G1", "<", "a space"] {
                assert!(!msg.contains(shown), "{pin}: {shown:?} shown in {msg}");
            }
        }
        // The check agrees with the decoder's rules on every other attribute.
        for value in [
            "", "a", "%41", "%4", "%", "%zz", "a b", "/x?y|z", "&", "~-._", "[@]",
        ] {
            for component in [PATH, QUERY] {
                assert_eq!(
                    well_formed(component, value.as_bytes()),
                    decode(component, "x", value).is_ok(),
                    "{component} {value:?}"
                );
            }
        }
    }

    #[test]
    fn written_uris_read_back_unchanged() {
        let u = Pkcs11Uri {
            token: Some("R&D; 100% \"ok\" #1 \u{e1}".into()),
            serial: Some("d8e157d09f375158".into()),
            token_match: TokenMatch {
                manufacturer: Some("SoftHSM project".into()),
                model: Some("SoftHSM v2".into()),
                slot_id: Some(1_234_567),
                ..TokenMatch::default()
            },
            module_path: Some("/usr/lib/softhsm/lib softhsm2.so".into()),
            ..Pkcs11Uri::default()
        };
        let text = u.to_string();
        assert_eq!(
            text,
            "pkcs11:token=R%26D%3B%20100%25%20%22ok%22%20%231%20%C3%A1;\
             manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial=d8e157d09f375158;\
             slot-id=1234567?module-path=/usr/lib/softhsm/lib%20softhsm2.so"
        );
        assert_eq!(Pkcs11Uri::parse(&text).unwrap(), u);
        // Nothing but the token: no separators left over.
        let bare = Pkcs11Uri {
            token: Some("sa".into()),
            ..Pkcs11Uri::default()
        };
        assert_eq!(bare.to_string(), "pkcs11:token=sa");
        // A pin-value is never written.
        let with_pin = Pkcs11Uri::parse("pkcs11:token=sa?pin-value=1234").unwrap();
        assert_eq!(with_pin.to_string(), "pkcs11:token=sa");
    }
}
