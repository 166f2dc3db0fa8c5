//! The registry's record on disk: which versions each class has and which one serves.
//! One small JSON file (`registry.json` in the data dir), rewritten atomically (write,
//! fsync, rename) on every change; the component bytes sit beside it by content hash.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a version came from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Named in the config file.
    Config,
    /// Deployed through the admin API.
    Deploy,
}

/// One kept version of a class.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionInfo {
    pub number: u64,
    /// SHA-256 of the component, hex.
    pub hash: String,
    pub deployed_at_ms: u64,
    #[serde(default)]
    pub label: Option<String>,
    pub source: Source,
}

/// A class's versions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClassRecord {
    pub current: u64,
    /// Hash of the component the config named when last started, so that a changed
    /// config file counts as a newer deploy and an unchanged one does not override a
    /// later deploy.
    #[serde(default)]
    pub config_hash: Option<String>,
    pub versions: Vec<VersionInfo>,
    /// The class was created by a deploy, not named in the config: the host serves it
    /// at start from its current version, with the host-wide `[limits]` and no settings.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created_by_deploy: bool,
    /// Removed through the admin API: not served. Its versions stay (and its objects
    /// in storage), so deploying the class again brings it back where it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

impl ClassRecord {
    /// The version with this number.
    pub fn version(&self, number: u64) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// The version with this hash.
    pub fn by_hash(&self, hash: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.hash == hash)
    }

    /// The next version number.
    pub fn next_number(&self) -> u64 {
        self.versions.iter().map(|v| v.number).max().unwrap_or(0) + 1
    }
}

/// Every class's record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub classes: BTreeMap<String, ClassRecord>,
}

impl Manifest {
    fn path(dir: &Path) -> PathBuf {
        dir.join("registry.json")
    }

    /// Reads the manifest in `dir` (empty if there is none yet).
    pub fn load(dir: &Path) -> std::io::Result<Manifest> {
        match std::fs::read(Self::path(dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", Self::path(dir).display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the manifest durably.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = Self::path(dir);
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).expect("manifest serializes"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        // The rename itself must survive a crash.
        std::fs::File::open(dir)?.sync_all()
    }
}
