//! The admin API's request and reply bodies, shared by the server (`admin`) and the
//! `lodge` CLI, so the two cannot drift apart: a field renamed here is renamed for both,
//! and scripts reading `lodge ... --json` see exactly what the API sends.

use serde::{Deserialize, Serialize};

/// Every error reply: `{"error": "..."}` with a 4xx/5xx status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// Where a class comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassOrigin {
    /// Named in the host's config file.
    Config,
    /// Created by a deploy through the admin API.
    Deploy,
}

/// `GET /classes`: one served class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassSummary {
    pub class: String,
    /// The version serving now.
    pub current: u64,
    pub origin: ClassOrigin,
}

/// One kept version of a class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionEntry {
    pub version: u64,
    /// SHA-256 of the component, hex.
    pub hash: String,
    pub deployed_at_ms: u64,
    pub label: Option<String>,
    /// `config` or `deploy`.
    pub source: String,
    pub current: bool,
}

/// `GET /classes/{class}/versions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Versions {
    pub class: String,
    pub current: u64,
    pub versions: Vec<VersionEntry>,
}

/// `POST /classes/{class}/versions` (the body is the component).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployReply {
    pub class: String,
    pub version: u64,
    pub hash: String,
    /// The bytes were already the current version.
    pub unchanged: bool,
    /// The deploy created the class.
    #[serde(default)]
    pub created: bool,
}

/// `POST /classes/{class}/rollback[?version=N]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackReply {
    pub class: String,
    pub version: u64,
}

/// `DELETE /classes/{class}`: a class created by a deploy is no longer served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveReply {
    pub class: String,
    /// Sockets of its objects that were closed.
    pub sockets_closed: usize,
}

/// `GET /classes/{class}/objects`: one stored object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectSummary {
    pub name: String,
    pub id: String,
    pub live: bool,
    pub sockets: usize,
    pub storage_bytes: u64,
    pub next_alarm_ms: Option<u64>,
}

/// A stored key or value: text when it is readable, else hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shown {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

impl Shown {
    /// Bytes as text when they are UTF-8 without control characters, else as hex.
    pub fn of(bytes: &[u8]) -> Shown {
        match std::str::from_utf8(bytes) {
            Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => Shown {
                text: Some(s.to_string()),
                hex: None,
            },
            _ => Shown {
                text: None,
                hex: Some(hex::encode(bytes)),
            },
        }
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.text, &self.hex) {
            (Some(t), _) => f.write_str(t),
            (None, Some(h)) => write!(f, "0x{h}"),
            _ => Ok(()),
        }
    }
}

/// One key and its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub key: Shown,
    pub value: Shown,
}

/// An object's alarm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlarmInfo {
    pub at_ms: u64,
    pub retry: u32,
}

/// `GET /classes/{class}/objects/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectDetail {
    pub object: String,
    pub id: String,
    pub live: bool,
    pub sockets: usize,
    pub alarm: Option<AlarmInfo>,
    pub entries: Vec<Entry>,
}

/// `POST /classes/{class}/objects/{name}/evict`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvictReply {
    pub object: String,
    pub evicted: bool,
}

/// `DELETE /classes/{class}/objects/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteReply {
    pub object: String,
    pub deleted: bool,
}

/// `POST /backup?dir=/absolute/new/folder`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupReply {
    pub dir: String,
    pub objects: usize,
    pub components: usize,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    /// Why the host is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
