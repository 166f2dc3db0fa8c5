//! The object's one durable alarm: committed with the event that sets it, delivered as
//! [`crate::Object::on_alarm`] whether or not the object is live.

use crate::bindings::lodge::object::alarms as raw;

/// Sets the alarm to `at_ms` (milliseconds since the Unix epoch), replacing any other.
pub fn set_at(at_ms: u64) {
    raw::set(at_ms)
}

/// Sets the alarm to fire `delay_ms` milliseconds from now.
pub fn set_in(delay_ms: u64) {
    raw::set(crate::now_ms().saturating_add(delay_ms))
}

/// The pending alarm's time in milliseconds since the Unix epoch.
pub fn get() -> Option<u64> {
    raw::get()
}

/// Cancels the pending alarm.
pub fn delete() {
    raw::delete()
}
