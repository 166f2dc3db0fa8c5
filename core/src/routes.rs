//! Where a request goes: `/{class}/{name}/{rest...}`. The name segment is
//! percent-decoded and validated (so `%2F` or `..` cannot smuggle a path into a name);
//! the rest of the path is handed to the guest as it came.

use crate::object::{NameError, normalize_name, validate_name};

/// A parsed object route.
#[derive(Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub class: &'a str,
    pub name: String,
    /// What follows the name, starting with `/` (just `/` when nothing does).
    pub rest: String,
}

/// Why a path is not an object route.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// `/`: the index.
    Root,
    /// `/{class}` without an object name.
    NoName(String),
    /// The name segment is not acceptable.
    BadName(NameError),
}

/// Splits a request path (without the query).
pub fn parse(path: &str) -> Result<Route<'_>, RouteError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(RouteError::Root);
    }
    let (class, after) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let (raw_name, rest) = match after.split_once('/') {
        Some((n, r)) => (n, format!("/{r}")),
        None => (after, "/".to_string()),
    };
    if raw_name.is_empty() {
        return Err(RouteError::NoName(class.to_string()));
    }
    let decoded = percent_encoding::percent_decode_str(raw_name)
        .decode_utf8()
        .map_err(|_| RouteError::BadName(NameError::NotUtf8))?;
    let name = normalize_name(&decoded).into_owned();
    validate_name(&name).map_err(RouteError::BadName)?;
    Ok(Route { class, name, rest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = parse("/chat/room").unwrap();
        assert_eq!(
            (r.class, r.name.as_str(), r.rest.as_str()),
            ("chat", "room", "/")
        );
        let r = parse("/chat/room/ws").unwrap();
        assert_eq!(r.rest, "/ws");
        let r = parse("/chat/my%20room/history").unwrap();
        assert_eq!((r.name.as_str(), r.rest.as_str()), ("my room", "/history"));
        assert_eq!(parse("/"), Err(RouteError::Root));
        assert_eq!(parse("/chat"), Err(RouteError::NoName("chat".into())));
        assert_eq!(parse("/chat/"), Err(RouteError::NoName("chat".into())));
    }

    #[test]
    fn both_spellings_of_a_name_route_to_one_object_and_lookalikes_are_refused() {
        // "café" with é as one character, and as e + a combining acute accent.
        let nfc = parse("/chat/caf%C3%A9").unwrap();
        let nfd = parse("/chat/cafe%CC%81").unwrap();
        assert_eq!(nfc.name, "caf\u{e9}");
        assert_eq!(nfd.name, nfc.name);
        // Zero-width space, right-to-left override, fullwidth "a".
        for (path, code) in [
            ("/chat/ab%E2%80%8Bc", 0x200B),
            ("/chat/%E2%80%AEevil", 0x202E),
        ] {
            assert_eq!(
                parse(path),
                Err(RouteError::BadName(NameError::Invisible(code))),
                "{path}"
            );
        }
        assert_eq!(
            parse("/chat/%EF%BD%81dmin"),
            Err(RouteError::BadName(NameError::Fullwidth(0xFF41)))
        );
        assert_eq!(validate_name("cafe\u{301}"), Err(NameError::NotNfc));
    }

    #[test]
    fn hostile_names_are_refused() {
        assert_eq!(
            parse("/chat/a%2Fb"),
            Err(RouteError::BadName(NameError::Slash))
        );
        assert_eq!(
            parse("/chat/.."),
            Err(RouteError::BadName(NameError::DotSegment))
        );
        assert_eq!(
            parse("/chat/%2e%2e/x"),
            Err(RouteError::BadName(NameError::DotSegment))
        );
        assert_eq!(
            parse("/chat/a%00b"),
            Err(RouteError::BadName(NameError::ControlCharacter))
        );
        assert_eq!(
            parse("/chat/%ff"),
            Err(RouteError::BadName(NameError::NotUtf8))
        );
        let long = format!("/chat/{}", "x".repeat(10_000));
        assert!(matches!(
            parse(&long),
            Err(RouteError::BadName(NameError::TooLong(_)))
        ));
    }
}
