//! Operator names: what an operator may be called in the journal and the printed record.
//!
//! A name goes into the journal, the report's Markdown, HTML and JSON, and onto the line an
//! operator signs. Every format escapes it, and on top of that a name is held to a safe
//! character set, so that what is printed is the name and nothing else: no markup that a
//! renderer could take for emphasis, strike-through, an entity or a link (`~~x~~`, `&amp;`,
//! `www.example.com`, `http://…`), no control or direction-changing character that could
//! make the printed line say something else than the bytes in the journal.
//!
//! The set: 1 to [`MAX_LEN`] characters; letters (any script) and digits, spaces, and the
//! punctuation of names `-`, `'`, `.` and `_`; it starts with a letter or a digit, does not
//! end with a space, has no two spaces in a row, and a `.` is followed by a space or ends
//! the name (an initial, "J. R. Smith", "Jr."), so that a name is never a domain name or
//! a web address.

use thiserror::Error;

/// The longest operator name, in characters.
pub const MAX_LEN: usize = 64;

/// What the safe character set is, for messages.
pub const RULE: &str = "an operator name is 1 to 64 letters, digits and spaces, with - ' . _ \
    between them; it starts with a letter or a digit, and a dot only ends an initial \
    (\"J. Smith\")";

/// A name outside the safe character set.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("operator name {name:?} is refused: {why}; {RULE}")]
pub struct InvalidOperator {
    pub name: String,
    pub why: String,
}

/// Check `name` against the safe character set (see the module documentation).
pub fn check(name: &str) -> Result<(), InvalidOperator> {
    let refuse = |why: String| InvalidOperator {
        name: name.to_string(),
        why,
    };
    let chars: Vec<char> = name.chars().collect();
    let Some(first) = chars.first() else {
        return Err(refuse("it is empty".into()));
    };
    if chars.len() > MAX_LEN {
        return Err(refuse(format!("it is {} characters long", chars.len())));
    }
    if !first.is_alphanumeric() {
        return Err(refuse(format!("it starts with {first:?}")));
    }
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_alphanumeric() => {}
            '-' | '\'' | '_' => {}
            ' ' if next == Some(' ') => return Err(refuse("it has two spaces in a row".into())),
            ' ' if next.is_none() => return Err(refuse("it ends with a space".into())),
            ' ' => {}
            '.' if next.is_none() || next == Some(' ') => {}
            '.' => {
                return Err(refuse(
                    "a dot is followed by another character (a name is never a domain or a web \
                     address)"
                        .into(),
                ));
            }
            c => return Err(refuse(format!("{c:?} is not allowed"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_people_pass() {
        for name in [
            "alice",
            "Alice Operator",
            "J. R. Smith",
            "Smith Jr.",
            "O'Brien",
            "Jean-Luc Picard",
            "Müller",
            "José Ñúñez",
            "Ørsted",
            "Łukasz",
            "田中 太郎",
            "operator_2",
            "a",
            &"x".repeat(MAX_LEN),
        ] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn markup_links_and_control_characters_are_refused() {
        for (name, why) in [
            ("", "empty"),
            ("~~x~~", "starts with '~'"),
            ("x~~y~~", "'~' is not allowed"),
            ("Tom & Jerry", "'&' is not allowed"),
            ("a&amp;b", "'&' is not allowed"),
            ("**bold**", "starts with '*'"),
            ("a*b", "'*' is not allowed"),
            ("<script>", "starts with '<'"),
            ("x<b>", "'<' is not allowed"),
            ("http://evil.example", "':' is not allowed"),
            ("www.evil.example", "a dot is followed"),
            ("evil.example", "a dot is followed"),
            ("alice@example", "'@' is not allowed"),
            ("[x](y)", "starts with '['"),
            ("a|b", "'|' is not allowed"),
            ("a`b", "'`' is not allowed"),
            ("a\\b", "'\\\\' is not allowed"),
            ("# heading", "starts with '#'"),
            ("- item", "starts with '-'"),
            (" alice", "starts with ' '"),
            ("alice ", "ends with a space"),
            ("al  ice", "two spaces"),
            ("al\nice", "'\\n' is not allowed"),
            ("al\tice", "'\\t' is not allowed"),
            ("ali\u{202e}ce", "'\\u{202e}' is not allowed"),
            ("ali\u{200b}ce", "'\\u{200b}' is not allowed"),
            ("x\u{0}", "'\\0' is not allowed"),
        ] {
            let err = check(name).expect_err(name);
            let text = err.to_string();
            assert!(text.contains(why), "{name:?}: {text}");
            assert!(text.contains("1 to 64"), "{text}");
        }
        let long = "x".repeat(MAX_LEN + 1);
        assert!(
            check(&long)
                .unwrap_err()
                .to_string()
                .contains("65 characters")
        );
    }
}
