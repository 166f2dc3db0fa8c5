//! Object identity: an object is `(class, id)`, where the id is derived from the name the
//! object is addressed by (stable, like Durable Objects' `idFromName`).

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The longest object name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// A 128-bit object id: the first 16 bytes of SHA-256 over class and name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 16]);

impl ObjectId {
    /// The stable id of the object `name` of `class`.
    pub fn from_name(class: &str, name: &str) -> ObjectId {
        let mut hasher = Sha256::new();
        hasher.update(b"lodge-object\0");
        hasher.update(class.as_bytes());
        hasher.update([0]);
        hasher.update(name.as_bytes());
        let digest = hasher.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        ObjectId(id)
    }

    /// The id as 32 lowercase hex digits.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<ObjectId> {
        let bytes = hex::decode(s).ok()?;
        Some(ObjectId(bytes.try_into().ok()?))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

/// A fully named object: its class, the name it is addressed by, and its id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub class: Arc<str>,
    pub name: Arc<str>,
    pub id: ObjectId,
}

impl ObjectRef {
    /// Names an object, validating the name.
    pub fn new(class: &str, name: &str) -> Result<ObjectRef, NameError> {
        validate_name(name)?;
        Ok(ObjectRef {
            class: class.into(),
            name: name.into(),
            id: ObjectId::from_name(class, name),
        })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.class, self.name)
    }
}

/// Why an object or class name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is {0} bytes long; the limit is {MAX_NAME_BYTES}")]
    TooLong(usize),
    #[error("the name contains a control character")]
    ControlCharacter,
    #[error("the name contains '/' (an encoded slash is not allowed either)")]
    Slash,
    #[error("the name may not be '.' or '..'")]
    DotSegment,
    #[error("the name is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    #[error("the name contains an invisible or direction-changing character (U+{0:04X})")]
    Invisible(u32),
    #[error(
        "the name contains a fullwidth or halfwidth form (U+{0:04X}): write it with ordinary characters"
    )]
    Fullwidth(u32),
    #[error("the name is not in Unicode normal form C (routes normalize names to it)")]
    NotNfc,
}

/// Characters that show nothing or change the direction of what follows: two names
/// differing only by them would look the same (Unicode format characters, `Cf`).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// Fullwidth and halfwidth forms: lookalikes of ordinary letters, digits and punctuation.
fn is_fullwidth(c: char) -> bool {
    ('\u{FF00}'..='\u{FFEF}').contains(&c)
}

/// A decoded name in Unicode normal form C, so that both spellings of `é` (one character,
/// or `e` and a combining accent) name the same object.
pub fn normalize_name(name: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization;
    if unicode_normalization::is_nfc(name) {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(name.nfc().collect())
    }
}

/// Checks an object name (already percent-decoded).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    if let Some(c) = name.chars().find(|&c| is_invisible(c)) {
        return Err(NameError::Invisible(c as u32));
    }
    if let Some(c) = name.chars().find(|&c| is_fullwidth(c)) {
        return Err(NameError::Fullwidth(c as u32));
    }
    if !unicode_normalization::is_nfc(name) {
        return Err(NameError::NotNfc);
    }
    if name.contains('/') || name.contains('\\') {
        return Err(NameError::Slash);
    }
    if name == "." || name == ".." || name.contains("..") {
        return Err(NameError::DotSegment);
    }
    Ok(())
}

/// Checks a class name: 1-64 of `a-z 0-9 - _`, starting with a letter.
pub fn is_valid_class_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct_per_class() {
        let a = ObjectId::from_name("chat", "room");
        assert_eq!(a, ObjectId::from_name("chat", "room"));
        assert_ne!(a, ObjectId::from_name("game", "room"));
        assert_ne!(a, ObjectId::from_name("chat", "room2"));
        assert_eq!(ObjectId::from_hex(&a.to_hex()), Some(a));
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(".."), Err(NameError::DotSegment));
        assert_eq!(validate_name("a..b"), Err(NameError::DotSegment));
        assert_eq!(validate_name("a/b"), Err(NameError::Slash));
        assert_eq!(validate_name("a\0b"), Err(NameError::ControlCharacter));
        assert_eq!(
            validate_name(&"x".repeat(257)),
            Err(NameError::TooLong(257))
        );
        assert!(validate_name(&"x".repeat(256)).is_ok());
        assert!(validate_name("lobby").is_ok());
        assert!(validate_name("방").is_ok());
    }

    #[test]
    fn class_names() {
        assert!(is_valid_class_name("chat"));
        assert!(is_valid_class_name("my-class_2"));
        assert!(!is_valid_class_name("Chat"));
        assert!(!is_valid_class_name("2chat"));
        assert!(!is_valid_class_name(""));
    }
}
