//! Routing and object names: `server::routes::parse` and `object::validate_name` never
//! panic, whatever they route is a valid object, and every valid name can be addressed
//! (percent-encoded in a path, it routes back to itself); names are in Unicode NFC, so two
//! spellings of one name route to one object, and invisible or fullwidth lookalikes are
//! refused.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lodge_core::object::{MAX_NAME_BYTES, ObjectRef, normalize_name, validate_name};
use lodge_core::routes::{RouteError, parse};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // The input as a name.
    if validate_name(text).is_ok() {
        assert!(!text.is_empty() && text.len() <= MAX_NAME_BYTES);
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(!text.contains('/') && !text.contains('\\'), "{text:?}");
        assert!(!text.contains(".."), "{text:?}");
        // A valid name is its own normal form, and shows no invisible or fullwidth lookalike.
        assert_eq!(normalize_name(text), text, "{text:?}");
        assert!(
            !text.chars().any(|c| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{FF00}'..='\u{FFEF}')),
            "{text:?}"
        );
        let encoded = utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
        let path = format!("/c/{encoded}/rest/of");
        let route = parse(&path).unwrap_or_else(|e| panic!("{path:?}: {e:?}"));
        assert_eq!(
            (route.class, route.name.as_str(), route.rest.as_str()),
            ("c", text, "/rest/of")
        );
        // Written as is (when it has no '%' to decode), it routes the same.
        if !text.contains('%') && !text.contains('?') && !text.contains('#') {
            let path = format!("/c/{text}");
            let route = parse(&path).expect("a plain valid name routes");
            assert_eq!((route.name.as_str(), route.rest.as_str()), (text, "/"));
        }
        let object = ObjectRef::new("c", text).expect("a valid name names an object");
        assert_eq!(&*object.name, text);
    }

    // The input as a path.
    match parse(text) {
        Ok(route) => {
            assert!(validate_name(&route.name).is_ok(), "{route:?}");
            // Normalising an input without escapes first routes to the same object. (With
            // escapes it need not: `%2e` followed by U+0306 composes to `%2ĕ` in the raw
            // path; names are normalised after decoding, as `parse` does.)
            if !text.contains('%')
                && let Ok(again) = parse(&normalize_name(text))
            {
                assert_eq!(again.name, route.name, "{text:?}");
            }
            assert!(ObjectRef::new(route.class, &route.name).is_ok());
            assert!(!route.class.contains('/'), "{route:?}");
            assert!(route.rest.starts_with('/'), "{route:?}");
            let trimmed = text.strip_prefix('/').unwrap_or(text);
            assert!(trimmed.starts_with(route.class), "{text:?} {route:?}");
            assert!(
                route.rest == "/" || text.ends_with(&route.rest),
                "{route:?}"
            );
        }
        Err(RouteError::Root) => assert!(text.is_empty() || text == "/", "{text:?}"),
        Err(RouteError::NoName(class)) => assert!(!class.contains('/'), "{text:?}"),
        Err(RouteError::BadName(_)) => {}
    }
});
