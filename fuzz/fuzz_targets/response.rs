//! A guest's response head: `response::sanitize` never panics, refuses every status the
//! host may not send for a guest, and whatever it keeps is a header the `http` crate (what
//! hyper encodes from) accepts as it is, never one the host owns, with no byte that could
//! end a line of the head.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lodge_core::response::{HOST_OWNED_HEADERS, sanitize};

#[derive(Arbitrary, Debug)]
struct GuestHead {
    status: u16,
    headers: Vec<(String, String)>,
}

fuzz_target!(|input: GuestHead| {
    let given = input.headers.len();
    match sanitize(input.status, input.headers) {
        Err(refused) => {
            assert_eq!(refused.0, input.status);
            assert!(!(200..=599).contains(&input.status));
        }
        Ok(head) => {
            assert!((200..=599).contains(&head.status));
            assert!(http::StatusCode::from_u16(head.status).is_ok());
            assert_eq!(head.headers.len() + head.dropped.len(), given);
            for (name, value) in &head.headers {
                assert!(!HOST_OWNED_HEADERS.contains(&name.as_str()), "{name}");
                assert!(
                    http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                    "{name:?}"
                );
                assert!(http::HeaderValue::from_str(value).is_ok(), "{value:?}");
                assert!(!value.contains(['\r', '\n', '\0']), "{value:?}");
            }
        }
    }
});
