//! Where the registry keeps its record (the manifest) and the component bytes of every
//! version: files in the data dir beside the redb file, or the database's tables when
//! objects live in PostgreSQL, so that a second host on that database can load what
//! another deployed. Compiled artifacts are native code for one host's engine and stay
//! in its data dir either way.

use std::path::{Path, PathBuf};

use super::{Manifest, RegistryError};
use crate::storage::Store;

/// The registry's persistent record.
pub(super) enum Records {
    /// `registry.json` and `components/{hash}.wasm` in the data dir.
    Files { dir: PathBuf },
    /// The storage engine's registry tables.
    Database(Store),
}

fn database_error(e: crate::storage::StorageError) -> RegistryError {
    RegistryError::Records(e.to_string())
}

impl Records {
    fn component_path(dir: &Path, hash: &str) -> PathBuf {
        dir.join("components").join(format!("{hash}.wasm"))
    }

    /// The manifest (empty if none was saved yet).
    pub fn load(&self) -> Result<Manifest, RegistryError> {
        match self {
            Records::Files { dir } => {
                Manifest::load(dir).map_err(|source| RegistryError::Manifest {
                    path: dir.clone(),
                    source,
                })
            }
            Records::Database(store) => {
                let records = store.registry_records().expect("a database with records");
                match records.load_manifest().map_err(database_error)? {
                    None => Ok(Manifest::default()),
                    Some(json) => serde_json::from_str(&json).map_err(|e| {
                        RegistryError::Records(format!("the registry record is damaged: {e}"))
                    }),
                }
            }
        }
    }

    /// Replaces the manifest durably.
    pub fn save(&self, manifest: &Manifest) -> Result<(), RegistryError> {
        match self {
            Records::Files { dir } => {
                manifest
                    .save(dir)
                    .map_err(|source| RegistryError::Manifest {
                        path: dir.clone(),
                        source,
                    })
            }
            Records::Database(store) => {
                let json = serde_json::to_string(manifest).expect("manifest serializes");
                let records = store.registry_records().expect("a database with records");
                records.save_manifest(&json).map_err(database_error)
            }
        }
    }

    /// Keeps a component's bytes by hash (for rollback, restarts and other hosts).
    pub fn keep(&self, hash: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        match self {
            Records::Files { dir } => {
                let path = Self::component_path(dir, hash);
                if path.exists() {
                    return Ok(());
                }
                let cache = |source| RegistryError::Cache {
                    path: path.clone(),
                    source,
                };
                let components = dir.join("components");
                std::fs::create_dir_all(&components).map_err(cache)?;
                let tmp = path.with_extension("wasm.tmp");
                std::fs::write(&tmp, bytes)
                    .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .and_then(|()| std::fs::File::open(&components)?.sync_all())
                    .map_err(cache)
            }
            Records::Database(store) => {
                let records = store.registry_records().expect("a database with records");
                records.keep_component(hash, bytes).map_err(database_error)
            }
        }
    }

    /// A kept component's bytes, and what to call them in errors.
    pub fn read(&self, hash: &str) -> Result<(Vec<u8>, String), RegistryError> {
        match self {
            Records::Files { dir } => {
                let path = Self::component_path(dir, hash);
                let bytes = std::fs::read(&path).map_err(|source| RegistryError::Read {
                    path: path.clone(),
                    source,
                })?;
                Ok((bytes, path.display().to_string()))
            }
            Records::Database(store) => {
                let records = store.registry_records().expect("a database with records");
                let what = format!("component {hash} in {}", store.describe());
                match records.component(hash).map_err(database_error)? {
                    Some(bytes) => Ok((bytes, what)),
                    None => Err(RegistryError::Records(format!("{what} is missing"))),
                }
            }
        }
    }
}
