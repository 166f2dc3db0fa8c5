//! Version history: named or automatic copies of the text at a moment.
//!
//! - `v:{id:010}`: JSON record `{id, ts, label, length, auto, hash, chunks, bytes}`;
//! - `vt:{id:010}`, `vt:{id:010}#1`, ...: the text, chunked like the snapshot.
//!
//! - `restore`: JSON `{seq, version, label, by, ts}` of the newest restore, which every
//!   editor is told about (on the restore, and when it connects) so that its undo history
//!   never reaches across it.
//!
//! The text is written before the record, so a record always has its text.

use lodge_sdk::storage::raw;
use serde::{Deserialize, Serialize};

use crate::store::{DocError, delete_chunked, get_chunked, put_chunked};

const RECORD_PREFIX: &str = "v:";

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Version {
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    pub label: Option<String>,
    /// Characters (Unicode scalar values) of the text.
    pub length: u64,
    /// Recorded by the idle alarm or around a restore, not by a person.
    #[serde(default)]
    pub auto: bool,
    /// FNV-1a 64 of the text's UTF-8 bytes, to tell whether the text changed since.
    pub hash: String,
    pub chunks: u32,
    pub bytes: u64,
}

const RESTORE_KEY: &str = "restore";

/// The newest restore of the document.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Restore {
    /// 1 for the first restore of the document, then counting up.
    pub seq: u64,
    /// The version restored.
    pub version: u64,
    pub label: Option<String>,
    /// Who asked for it (the editor page sends its user's name).
    pub by: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
}

fn storage_error(e: lodge_sdk::storage::StorageError) -> DocError {
    DocError::Storage(lodge_sdk::storage::Error::from(e).to_string())
}

/// The newest restore, if the document was ever restored.
pub fn last_restore() -> Result<Option<Restore>, DocError> {
    let Some(bytes) = raw::get(RESTORE_KEY.as_bytes()).map_err(storage_error)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Records a restore of `version`; returns it with its sequence number.
pub fn record_restore(version: &Version, by: Option<String>) -> Result<Restore, DocError> {
    let restore = Restore {
        seq: last_restore()?.map_or(1, |r| r.seq + 1),
        version: version.id,
        label: version.label.clone(),
        by,
        ts: lodge_sdk::now_ms(),
    };
    let json = serde_json::to_vec(&restore).map_err(|e| DocError::Storage(e.to_string()))?;
    raw::put(RESTORE_KEY.as_bytes(), &json).map_err(storage_error)?;
    Ok(restore)
}

fn record_key(id: u64) -> String {
    format!("{RECORD_PREFIX}{id:010}")
}

fn text_key(id: u64) -> String {
    format!("vt:{id:010}")
}

/// FNV-1a 64, as 16 hex digits.
pub fn hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn records(limit: Option<u32>, reverse: bool) -> Result<Vec<Version>, DocError> {
    let entries = raw::list(&raw::ListOptions {
        prefix: Some(RECORD_PREFIX.as_bytes().to_vec()),
        start: None,
        end: None,
        limit,
        reverse,
    })
    .map_err(|e| DocError::Storage(lodge_sdk::storage::Error::from(e).to_string()))?;
    Ok(entries
        .into_iter()
        .filter_map(|e| serde_json::from_slice(&e.value).ok())
        .collect())
}

/// Every version, oldest first.
pub fn list() -> Result<Vec<Version>, DocError> {
    records(None, false)
}

/// The newest version.
pub fn latest() -> Result<Option<Version>, DocError> {
    Ok(records(Some(1), true)?.into_iter().next())
}

/// One version's record.
pub fn get(id: u64) -> Result<Option<Version>, DocError> {
    match raw::get(record_key(id).as_bytes())
        .map_err(|e| DocError::Storage(lodge_sdk::storage::Error::from(e).to_string()))?
    {
        Some(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        None => Ok(None),
    }
}

/// One version's text.
pub fn text(version: &Version) -> Result<String, DocError> {
    let bytes = get_chunked(&text_key(version.id), version.chunks)?;
    String::from_utf8(bytes).map_err(|_| DocError::Storage("version text is not UTF-8".into()))
}

/// Records `text` as a new version; keeps at most `max_versions` (oldest go first).
pub fn record(
    text: &str,
    label: Option<String>,
    auto: bool,
    chunk_bytes: usize,
    max_versions: usize,
) -> Result<Version, DocError> {
    let id = latest()?.map_or(1, |v| v.id + 1);
    let chunks = put_chunked(&text_key(id), text.as_bytes(), chunk_bytes, 0)?;
    let version = Version {
        id,
        ts: lodge_sdk::now_ms(),
        label,
        length: text.chars().count() as u64,
        auto,
        hash: hash(text),
        chunks,
        bytes: text.len() as u64,
    };
    let json = serde_json::to_vec(&version).map_err(|e| DocError::Storage(e.to_string()))?;
    raw::put(record_key(id).as_bytes(), &json)
        .map_err(|e| DocError::Storage(lodge_sdk::storage::Error::from(e).to_string()))?;
    // Ids only grow, so there can be more than `max_versions` only once ids passed it.
    if id as usize <= max_versions {
        return Ok(version);
    }
    let all = list()?;
    if all.len() > max_versions.max(1) {
        for old in &all[..all.len() - max_versions.max(1)] {
            raw::delete(record_key(old.id).as_bytes())
                .map_err(|e| DocError::Storage(lodge_sdk::storage::Error::from(e).to_string()))?;
            delete_chunked(&text_key(old.id), old.chunks)?;
        }
    }
    Ok(version)
}
