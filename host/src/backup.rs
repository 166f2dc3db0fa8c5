//! Backups of a running host's data, and restoring them into a stopped host's data dir.
//! A backup is a folder: `lodge.redb` (one consistent MVCC snapshot of every object's
//! data and alarms, taken while the writer keeps committing), `registry.json` and the
//! kept components. Compiled artifacts are not copied: they are rebuilt on first start.
//!
//! This is the redb engine's backup. On PostgreSQL the database is the operator's, and
//! its own tools do it better (`pg_dump`, base backups with WAL archiving for
//! point-in-time recovery): `lodge backup` says so instead of copying tables itself.

use std::path::{Path, PathBuf};

use crate::registry::Registry;
use crate::storage::Store;

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the backup folder {0} already exists: choose a new one")]
    Exists(PathBuf),
    #[error("{0} is not a lodge backup (no lodge.redb in it)")]
    NotABackup(PathBuf),
    #[error("{0} already holds a lodge database: stop its host and pass --force to replace it")]
    DataDirInUse(PathBuf),
    #[error("backup storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error(
        "{0}: the component's bytes do not match its name (a damaged or altered backup); nothing was restored from it"
    )]
    Tampered(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    pub objects: usize,
    pub components: usize,
}

/// The components of a backup that may be restored: `{sha256}.wasm` files whose bytes
/// hash to their name. Compiled artifacts (`.cwasm`) are never restored: the host would
/// load them as native code, so it compiles them again from the `.wasm` instead. Read
/// before anything is written, so a damaged backup changes nothing.
fn verified_components(backup_dir: &Path) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    use sha2::{Digest, Sha256};
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(backup_dir.join("components")) else {
        return Ok(found);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(hash) = name.strip_suffix(".wasm") else {
            tracing::warn!(file = %name, "not restored: only component sources are, artifacts are compiled again");
            continue;
        };
        let bytes = std::fs::read(entry.path()).map_err(io(format!("reading {name}")))?;
        if hex::encode(Sha256::digest(&bytes)) != hash {
            return Err(BackupError::Tampered(entry.path()));
        }
        found.push((name, bytes));
    }
    Ok(found)
}

/// Refuses a backup folder that is relative or climbs out with `..`: the admin API
/// writes where it is told, so it is told plainly.
pub fn check_backup_dir(dir: &Path) -> Result<(), String> {
    use std::path::Component;
    if !dir.is_absolute() {
        return Err("give an absolute folder: /backup?dir=/path/to/new/folder".into());
    }
    if dir.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "the backup folder {} climbs with '..': give it without",
            dir.display()
        ));
    }
    Ok(())
}

/// Writes a backup of the running host into `dir` (which must not exist yet).
pub fn backup(
    store: &Store,
    registry: &Registry,
    dir: &Path,
) -> Result<BackupSummary, BackupError> {
    if dir.exists() {
        return Err(BackupError::Exists(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let objects = match store.backup_to(&dir.join("lodge.redb")) {
        Ok(n) => n,
        Err(e) => {
            // Leave no half-made folder behind (PostgreSQL refuses before writing any).
            let _ = std::fs::remove_dir(dir);
            return Err(e.into());
        }
    };
    let components = registry
        .copy_to(dir)
        .map_err(io(format!("copying the registry into {}", dir.display())))?;
    Ok(BackupSummary {
        objects,
        components,
    })
}

/// Restores a backup into `data_dir`. The host using `data_dir` must be stopped. With
/// `force`, an existing database is kept aside as `lodge.redb.replaced` rather than lost.
pub fn restore(backup_dir: &Path, data_dir: &Path, force: bool) -> Result<(), BackupError> {
    let source_db = backup_dir.join("lodge.redb");
    if !source_db.exists() {
        return Err(BackupError::NotABackup(backup_dir.to_path_buf()));
    }
    let components = verified_components(backup_dir)?;
    let target_db = data_dir.join("lodge.redb");
    if target_db.exists() {
        if !force {
            return Err(BackupError::DataDirInUse(data_dir.to_path_buf()));
        }
        // Opening it proves no running host holds it (redb locks the file).
        redb::Database::open(&target_db).map_err(|e| BackupError::Io {
            what: format!(
                "{} is in use (is its host still running?)",
                target_db.display()
            ),
            source: std::io::Error::other(e.to_string()),
        })?;
        std::fs::rename(&target_db, data_dir.join("lodge.redb.replaced"))
            .map_err(io("keeping the replaced database aside"))?;
    }
    std::fs::create_dir_all(data_dir.join("components")).map_err(io("creating the data dir"))?;
    std::fs::copy(&source_db, &target_db).map_err(io("copying lodge.redb"))?;
    let manifest = backup_dir.join("registry.json");
    if manifest.exists() {
        std::fs::copy(&manifest, data_dir.join("registry.json"))
            .map_err(io("copying registry.json"))?;
    }
    for (name, bytes) in components {
        let target = data_dir.join("components").join(name);
        std::fs::write(&target, bytes)
            .and_then(|()| std::fs::File::open(&target)?.sync_all())
            .map_err(io("copying a component"))?;
    }
    // Make the restored files durable before a host is started on them.
    std::fs::File::open(&target_db)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing the restored database"))?;
    Ok(())
}
