//! The object's durable storage, with string keys and JSON values.
//!
//! Writes are part of the current event: they become durable together when it ends and
//! vanish if it traps. Use [`raw`] for byte keys and values.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::lodge::object::storage as raw;
pub use raw::{Entry, ListOptions, StorageError};

/// A storage call failed, or a stored value did not decode.
#[derive(Debug)]
pub enum Error {
    /// The host refused the call.
    Storage(StorageError),
    /// The stored bytes are not the JSON this type expects.
    Decode(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Storage(StorageError::TooLarge(m)) => write!(f, "too large: {m}"),
            Error::Storage(StorageError::QuotaExceeded(m)) => write!(f, "quota exceeded: {m}"),
            Error::Storage(StorageError::Invalid(m)) => write!(f, "invalid: {m}"),
            Error::Storage(StorageError::Unavailable(m)) => write!(f, "storage unavailable: {m}"),
            Error::Decode(m) => write!(f, "stored value does not decode: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

/// Reads a JSON value.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match raw::get(key.as_bytes())? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Decode(format!("{key}: {e}"))),
        None => Ok(None),
    }
}

/// Writes a JSON value.
pub fn put<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Decode(e.to_string()))?;
    Ok(raw::put(key.as_bytes(), &bytes)?)
}

/// Deletes a key; returns whether it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    Ok(raw::delete(key.as_bytes())?)
}

/// Deletes every key of this object.
pub fn delete_all() -> Result<(), Error> {
    Ok(raw::delete_all()?)
}

/// Every entry whose key starts with `prefix`, in key order (reversed if asked), at most
/// `limit`, decoded as JSON.
pub fn list<T: DeserializeOwned>(
    prefix: &str,
    limit: Option<u32>,
    reverse: bool,
) -> Result<Vec<(String, T)>, Error> {
    let entries = raw::list(&ListOptions {
        prefix: Some(prefix.as_bytes().to_vec()),
        start: None,
        end: None,
        limit,
        reverse,
    })?;
    entries
        .into_iter()
        .map(|e| {
            let key = String::from_utf8_lossy(&e.key).into_owned();
            serde_json::from_slice(&e.value)
                .map(|v| (key.clone(), v))
                .map_err(|err| Error::Decode(format!("{key}: {err}")))
        })
        .collect()
}
