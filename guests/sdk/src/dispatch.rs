//! Bridges the wit-bindgen `Guest` trait to [`Object`]: keeps the one instance of the
//! class in a thread-local (a component instance is single-threaded) and creates it on
//! the first event.

use std::any::Any;
use std::cell::RefCell;

use crate::bindings::exports::lodge::object::events::{self, AiEvent, ConnectOutcome};
use crate::bindings::lodge::object::types::{Message, Request, Response};
use crate::{Object, Socket};

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `f` on this component's object, creating it first if needed.
pub fn with_object<T: Object, R>(f: impl FnOnce(&mut T) -> R) -> R {
    // Take the object out while it runs so that a handler calling back into the SDK
    // never finds the cell borrowed.
    let mut boxed = INSTANCE
        .with(|cell| cell.borrow_mut().take())
        .unwrap_or_else(|| Box::new(T::activate()));
    let object = boxed
        .downcast_mut::<T>()
        .expect("one object class per component");
    let result = f(object);
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(boxed));
    result
}

/// Names the [`Object`] type that [`crate::export!`] exports.
pub trait Dispatch {
    /// The exported class.
    type Class: Object;
}

impl<D: Dispatch> events::Guest for D {
    fn on_request(request: Request) -> Response {
        with_object(|o: &mut D::Class| o.on_request(request))
    }

    fn on_connect(socket: u64, request: Request) -> ConnectOutcome {
        with_object(|o: &mut D::Class| o.on_connect(Socket(socket), &request)).into_outcome()
    }

    fn on_message(socket: u64, message: Message) {
        with_object(|o: &mut D::Class| o.on_message(Socket(socket), message))
    }

    fn on_close(socket: u64, code: u16, reason: String) {
        with_object(|o: &mut D::Class| o.on_close(Socket(socket), code, reason))
    }

    fn on_alarm(retry: u32) {
        with_object(|o: &mut D::Class| o.on_alarm(retry))
    }

    fn on_ai_event(stream: u64, event: AiEvent) {
        with_object(|o: &mut D::Class| o.on_ai_event(stream, event))
    }
}
