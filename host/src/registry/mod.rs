//! Classes and their component versions, kept in the data dir (`manifest`) so that
//! deploys survive restarts and old versions stay available for rollback. Switching a
//! class to another version is one pointer swap; each live object moves to it at its
//! next event (see `runtime`). A version is compiled once: its precompiled
//! artifact is kept in the data dir by content hash, so a restart deserializes it
//! (microseconds) instead of compiling (tens of milliseconds per class). Each version
//! is validated by pre-instantiating it against the host's linker: a component that
//! imports anything lodge does not provide, or does not export the `object-class`
//! world, is refused before it can serve.
//!
//! A class comes from the config file (loaded at every start, its settings and limits
//! from there) or from a deploy of a name the host does not serve yet (created live, like
//! `wrangler deploy`; recorded in the manifest and loaded at every start from its current
//! version). Only deployed classes can be removed through the admin API: a configured
//! one would come back at the next start, so the config is where it is removed.

mod manifest;
mod records;

use std::collections::BTreeMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

pub use manifest::{ClassRecord, Manifest, Source, VersionInfo};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::bindings::{HostState, ObjectClassPre};
use lodge_core::time::now_ms;

/// Why a component could not become a class version.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} is not a valid WebAssembly component: {reason}")]
    Compile { what: String, reason: String },
    #[error("{what} does not fit the lodge:object/object-class world: {reason}")]
    World { what: String, reason: String },
    #[error("cannot write the compiled artifact {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no class named '{0}'")]
    UnknownClass(String),
    #[error(
        "'{0}' is not a valid class name: use 1-64 of a-z, 0-9, '-' and '_', starting with a letter"
    )]
    InvalidClassName(String),
    #[error("class '{0}' is named in the host's config file: remove it there and restart the host")]
    Configured(String),
    #[error("class '{class}' has no version {version}")]
    UnknownVersion { class: String, version: u64 },
    #[error("class '{0}' has no earlier version to roll back to")]
    NothingToRollBack(String),
    #[error("cannot record the registry in {path}: {source}")]
    Manifest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the registry in the database: {0}")]
    Records(String),
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub version: u64,
    pub hash: String,
    /// The same bytes were already the current version: nothing changed.
    pub unchanged: bool,
    /// The deploy created the class (it was not served before).
    pub created: bool,
}

/// Where a class comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Named in the config file.
    Config,
    /// Created by a deploy through the admin API.
    Deploy,
}

/// One compiled, validated component of a class.
pub struct ClassVersion {
    /// 1 for the first version of a class, then counting up.
    pub number: u64,
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    pub pre: ObjectClassPre<HostState>,
}

/// An object class: its settings and the version that serves it now.
pub struct Class {
    pub name: Arc<str>,
    pub settings: Arc<BTreeMap<String, String>>,
    /// The class's limits (`[limits]` with its overrides).
    pub limits: crate::config::Limits,
    pub origin: Origin,
    /// How the landing page presents it (`[classes.NAME]` title, description, ...).
    pub about: crate::config::ClassAbout,
    current: RwLock<Arc<ClassVersion>>,
}

impl Class {
    /// The version new events run on.
    pub fn current(&self) -> Arc<ClassVersion> {
        self.current.read().expect("class lock").clone()
    }

    /// Makes `version` current; live objects switch at their next event.
    pub fn switch_to(&self, version: Arc<ClassVersion>) {
        *self.current.write().expect("class lock") = version;
    }
}

/// Every class the host serves.
pub struct Registry {
    engine: Engine,
    linker: Linker<HostState>,
    /// The manifest and component bytes: files in the data dir, or database tables.
    records: records::Records,
    /// Compiled artifacts (`components/` in the data dir).
    cache_dir: PathBuf,
    classes: RwLock<BTreeMap<String, Arc<Class>>>,
    /// Serialises changes to the manifest (deploys, rollbacks).
    manifest: Mutex<Manifest>,
    /// The limits of classes created by a deploy (`[limits]`).
    default_limits: crate::config::Limits,
}

impl Registry {
    /// The registry kept in `data_dir`, or in `store`'s database when the engine keeps
    /// the registry's records (compiled artifacts stay in `data_dir/components`).
    pub fn open(
        engine: Engine,
        linker: Linker<HostState>,
        data_dir: &Path,
        store: Option<&crate::storage::Store>,
        default_limits: crate::config::Limits,
    ) -> Result<Registry, RegistryError> {
        let records = match store {
            Some(store) if store.registry_records().is_some() => {
                records::Records::Database(store.clone())
            }
            _ => records::Records::Files {
                dir: data_dir.to_path_buf(),
            },
        };
        let manifest = records.load()?;
        Ok(Registry {
            engine,
            linker,
            records,
            cache_dir: data_dir.join("components"),
            classes: RwLock::new(BTreeMap::new()),
            manifest: Mutex::new(manifest),
            default_limits,
        })
    }

    fn save(&self, manifest: &Manifest) -> Result<(), RegistryError> {
        self.records.save(manifest)
    }

    /// Keeps the component bytes by hash (for rollback and restarts).
    fn keep_bytes(&self, hash: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        self.records.keep(hash, bytes)
    }

    /// Serves the class named in the config: its recorded current version, unless the
    /// config's component changed since the last start (then that is the newest deploy).
    pub fn load_configured(
        &self,
        name: &str,
        component: &Path,
        settings: BTreeMap<String, String>,
        limits: crate::config::Limits,
        about: crate::config::ClassAbout,
    ) -> Result<(), RegistryError> {
        let bytes = std::fs::read(component).map_err(|source| RegistryError::Read {
            path: component.to_path_buf(),
            source,
        })?;
        let hash = hex::encode(Sha256::digest(&bytes));
        let mut manifest = self.manifest.lock().expect("manifest lock");
        let record = manifest.classes.entry(name.to_string()).or_default();
        if record.config_hash.as_deref() != Some(&hash) {
            let number = match record.by_hash(&hash) {
                Some(v) => v.number,
                None => {
                    let number = record.next_number();
                    record.versions.push(VersionInfo {
                        number,
                        hash: hash.clone(),
                        deployed_at_ms: now_ms(),
                        label: None,
                        source: Source::Config,
                    });
                    number
                }
            };
            record.current = number;
            record.config_hash = Some(hash.clone());
            self.keep_bytes(&hash, &bytes)?;
        }
        let current = record.version(record.current).cloned().ok_or_else(|| {
            RegistryError::UnknownVersion {
                class: name.to_string(),
                version: record.current,
            }
        })?;
        let manifest_copy = manifest.clone();
        drop(manifest);
        let version = if current.hash == hash {
            self.prepare(&bytes, &component.display().to_string(), current.number)?
        } else {
            self.prepare_kept(&current)?
        };
        self.save(&manifest_copy)?;
        self.insert(name, settings, limits, Origin::Config, about, version);
        Ok(())
    }

    /// Serves every class a deploy created (and nobody removed) that the config does not
    /// name, from its current version. A class that cannot be loaded is skipped and
    /// reported, so one bad record never keeps the host from starting.
    pub fn load_deployed(&self) -> Vec<(String, Result<u64, RegistryError>)> {
        let wanted: Vec<(String, VersionInfo)> = {
            let manifest = self.manifest.lock().expect("manifest lock");
            manifest
                .classes
                .iter()
                .filter(|(name, r)| r.created_by_deploy && !r.removed && self.class(name).is_none())
                .filter_map(|(name, r)| Some((name.clone(), r.version(r.current)?.clone())))
                .collect()
        };
        wanted
            .into_iter()
            .map(|(name, info)| {
                let loaded = self.prepare_kept(&info).map(|version| {
                    self.insert(
                        &name,
                        BTreeMap::new(),
                        self.default_limits.clone(),
                        Origin::Deploy,
                        Default::default(),
                        version,
                    );
                    info.number
                });
                (name, loaded)
            })
            .collect()
    }

    fn prepare_kept(&self, info: &VersionInfo) -> Result<ClassVersion, RegistryError> {
        let (bytes, what) = self.records.read(&info.hash)?;
        self.prepare(&bytes, &what, info.number)
    }

    /// Compiles and validates `bytes` as a new version of `class` (without switching).
    /// `Ok(Err(deployed))` means the bytes are already the current version.
    pub fn stage(
        &self,
        class: &str,
        bytes: &[u8],
    ) -> Result<Result<ClassVersion, Deployed>, RegistryError> {
        let served = self.class(class).is_some();
        if !served && !crate::object::is_valid_class_name(class) {
            return Err(RegistryError::InvalidClassName(class.to_string()));
        }
        let hash = hex::encode(Sha256::digest(bytes));
        if served {
            let manifest = self.manifest.lock().expect("manifest lock");
            if let Some(record) = manifest.classes.get(class)
                && let Some(current) = record.version(record.current)
                && current.hash == hash
            {
                return Ok(Err(Deployed {
                    version: current.number,
                    hash,
                    unchanged: true,
                    created: false,
                }));
            }
        }
        let version = self.prepare(bytes, &format!("the component for '{class}'"), 0)?;
        Ok(Ok(version))
    }

    /// Records a staged version and makes it current, creating the class (with the
    /// host-wide limits and no settings) when the host does not serve it yet.
    pub fn commit_deploy(
        &self,
        class: &str,
        bytes: &[u8],
        mut version: ClassVersion,
        label: Option<String>,
    ) -> Result<Deployed, RegistryError> {
        self.keep_bytes(&version.hash, bytes)?;
        let mut manifest = self.manifest.lock().expect("manifest lock");
        // Under the manifest lock, so two deploys creating one class do not both insert.
        let entry = self.class(class);
        let record = manifest.classes.entry(class.to_string()).or_default();
        if entry.is_none() {
            record.created_by_deploy = true;
            record.removed = false;
        }
        let number = match record.by_hash(&version.hash) {
            Some(v) => v.number,
            None => {
                let number = record.next_number();
                record.versions.push(VersionInfo {
                    number,
                    hash: version.hash.clone(),
                    deployed_at_ms: now_ms(),
                    label,
                    source: Source::Deploy,
                });
                number
            }
        };
        record.current = number;
        let copy = manifest.clone();
        self.save(&copy)?;
        version.number = number;
        let hash = version.hash.clone();
        let created = entry.is_none();
        match entry {
            Some(entry) => entry.switch_to(Arc::new(version)),
            None => self.insert(
                class,
                BTreeMap::new(),
                self.default_limits.clone(),
                Origin::Deploy,
                Default::default(),
                version,
            ),
        }
        drop(manifest);
        Ok(Deployed {
            version: number,
            hash,
            unchanged: false,
            created,
        })
    }

    /// Stops serving a class a deploy created. Its versions stay recorded and its
    /// objects stay in storage: deploying the class again brings both back.
    pub fn remove(&self, class: &str) -> Result<(), RegistryError> {
        let entry = self
            .class(class)
            .ok_or_else(|| RegistryError::UnknownClass(class.to_string()))?;
        if entry.origin == Origin::Config {
            return Err(RegistryError::Configured(class.to_string()));
        }
        let mut manifest = self.manifest.lock().expect("manifest lock");
        if let Some(record) = manifest.classes.get_mut(class) {
            record.removed = true;
        }
        let copy = manifest.clone();
        self.save(&copy)?;
        self.classes.write().expect("registry lock").remove(class);
        Ok(())
    }

    /// Loads a kept version of `class` for a rollback (without switching): `to`, or the
    /// newest one before the current. The manifest is only read under its lock; the
    /// artifact is loaded (or compiled) after.
    pub fn stage_rollback(
        &self,
        class: &str,
        to: Option<u64>,
    ) -> Result<ClassVersion, RegistryError> {
        if self.class(class).is_none() {
            return Err(RegistryError::UnknownClass(class.to_string()));
        }
        let target = {
            let manifest = self.manifest.lock().expect("manifest lock");
            let record = manifest
                .classes
                .get(class)
                .ok_or_else(|| RegistryError::UnknownClass(class.to_string()))?;
            match to {
                Some(n) => {
                    record
                        .version(n)
                        .cloned()
                        .ok_or_else(|| RegistryError::UnknownVersion {
                            class: class.to_string(),
                            version: n,
                        })?
                }
                None => record
                    .versions
                    .iter()
                    .filter(|v| v.number < record.current)
                    .max_by_key(|v| v.number)
                    .cloned()
                    .ok_or_else(|| RegistryError::NothingToRollBack(class.to_string()))?,
            }
        };
        self.prepare_kept(&target)
    }

    /// Records a version staged by [`Registry::stage_rollback`] as current and switches.
    pub fn commit_rollback(
        &self,
        class: &str,
        version: ClassVersion,
    ) -> Result<u64, RegistryError> {
        let entry = self
            .class(class)
            .ok_or_else(|| RegistryError::UnknownClass(class.to_string()))?;
        let mut manifest = self.manifest.lock().expect("manifest lock");
        let record = manifest
            .classes
            .get_mut(class)
            .ok_or_else(|| RegistryError::UnknownClass(class.to_string()))?;
        let number = version.number;
        if record.version(number).is_none() {
            return Err(RegistryError::UnknownVersion {
                class: class.to_string(),
                version: number,
            });
        }
        record.current = number;
        let copy = manifest.clone();
        self.save(&copy)?;
        entry.switch_to(Arc::new(version));
        Ok(number)
    }

    /// Stops serving `class` on this host without recording anything (a class created
    /// by a deploy whose current version cannot start).
    pub fn unload(&self, class: &str) {
        self.classes.write().expect("registry lock").remove(class);
    }

    /// Copies the registry record and every kept component into `dir` (for backups).
    pub fn copy_to(&self, dir: &Path) -> std::io::Result<usize> {
        let manifest = self.manifest.lock().expect("manifest lock").clone();
        manifest.save(dir)?;
        let components = dir.join("components");
        std::fs::create_dir_all(&components)?;
        let mut copied = 0;
        for record in manifest.classes.values() {
            for v in &record.versions {
                let target = components.join(format!("{}.wasm", v.hash));
                if !target.exists() {
                    let (bytes, _) = self
                        .records
                        .read(&v.hash)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    std::fs::write(&target, bytes)?;
                    copied += 1;
                }
            }
        }
        Ok(copied)
    }

    /// A class's kept versions and its current version number.
    pub fn versions(&self, class: &str) -> Option<(u64, Vec<VersionInfo>)> {
        let manifest = self.manifest.lock().expect("manifest lock");
        manifest
            .classes
            .get(class)
            .filter(|_| self.class(class).is_some())
            .map(|r| (r.current, r.versions.clone()))
    }

    /// Compiles (or loads the cached artifact of) a component file and validates it.
    pub fn prepare_file(&self, path: &Path, number: u64) -> Result<ClassVersion, RegistryError> {
        let bytes = std::fs::read(path).map_err(|source| RegistryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.prepare(&bytes, &path.display().to_string(), number)
    }

    /// Compiles (or loads the cached artifact of) component bytes and validates them.
    pub fn prepare(
        &self,
        bytes: &[u8],
        what: &str,
        number: u64,
    ) -> Result<ClassVersion, RegistryError> {
        let hash = hex::encode(Sha256::digest(bytes));
        let component = self.compile_cached(bytes, &hash, what)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RegistryError::World {
                what: what.to_string(),
                reason: format!("{e:#}"),
            })?;
        let pre = ObjectClassPre::new(pre).map_err(|e| RegistryError::World {
            what: what.to_string(),
            reason: format!("{e:#}"),
        })?;
        Ok(ClassVersion { number, hash, pre })
    }

    fn compile_cached(
        &self,
        bytes: &[u8],
        hash: &str,
        what: &str,
    ) -> Result<Component, RegistryError> {
        let artifact = self
            .cache_dir
            .join(format!("{hash}-{}.cwasm", engine_key(&self.engine)));
        if artifact.exists() {
            // SAFETY: the artifact was written by this host's own `precompile_component`
            // for an engine with the same compatibility hash (part of the file name);
            // the data dir is the operator's, as trusted as the binary.
            match unsafe { Component::deserialize_file(&self.engine, &artifact) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(artifact = %artifact.display(), error = %e, "discarding unusable compiled artifact")
                }
            }
        }
        let compile_err = |e: wasmtime::Error| RegistryError::Compile {
            what: what.to_string(),
            reason: format!("{e:#}"),
        };
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(compile_err)?;
        std::fs::create_dir_all(&self.cache_dir).map_err(|source| RegistryError::Cache {
            path: self.cache_dir.clone(),
            source,
        })?;
        // Write, sync, then rename, so a crash never leaves a torn artifact behind.
        let tmp = artifact.with_extension("tmp");
        std::fs::write(&tmp, &compiled)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &artifact))
            .and_then(|()| std::fs::File::open(&self.cache_dir)?.sync_all())
            .map_err(|source| RegistryError::Cache {
                path: artifact.clone(),
                source,
            })?;
        // SAFETY: as above; these are the bytes `precompile_component` just produced.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(compile_err)
    }

    /// Adds a class serving `version`.
    fn insert(
        &self,
        name: &str,
        settings: BTreeMap<String, String>,
        limits: crate::config::Limits,
        origin: Origin,
        about: crate::config::ClassAbout,
        version: ClassVersion,
    ) {
        let class = Arc::new(Class {
            name: Arc::from(name),
            settings: Arc::new(settings),
            limits,
            origin,
            about,
            current: RwLock::new(Arc::new(version)),
        });
        self.classes
            .write()
            .expect("registry lock")
            .insert(name.to_string(), class);
    }

    /// The class called `name`.
    pub fn class(&self, name: &str) -> Option<Arc<Class>> {
        self.classes
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// Every class name.
    pub fn names(&self) -> Vec<String> {
        self.classes
            .read()
            .expect("registry lock")
            .keys()
            .cloned()
            .collect()
    }

    /// The engine every version is compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// A key for the engine a component was compiled by, part of each artifact's file name:
/// wasmtime's compatibility hash (its version and every setting that changes the code)
/// fed through SHA-256. Not `DefaultHasher`, whose output may change with any Rust
/// release and would make every restart after an upgrade recompile (or, worse, never
/// notice a change).
fn engine_key(engine: &Engine) -> String {
    /// `Hasher` over SHA-256: what the compatibility hash writes is all it depends on.
    struct Sha(Sha256);
    impl std::hash::Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest is read")
        }
    }
    let mut sha = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut sha);
    hex::encode(&sha.0.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the preamble of the component binary format.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn registry(dir: &Path, opt: wasmtime::OptLevel) -> Registry {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).cranelift_opt_level(opt);
        let engine = Engine::new(&config).unwrap();
        let linker = Linker::new(&engine);
        Registry::open(engine, linker, dir, None, crate::config::Limits::default()).unwrap()
    }

    fn artifacts(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("components"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        found.retain(|p| p.extension().is_some_and(|e| e == "cwasm"));
        found.sort();
        found
    }

    #[test]
    fn a_restart_reuses_artifacts_and_a_changed_engine_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let hash = hex::encode(Sha256::digest(EMPTY_COMPONENT));
        let first = registry(dir.path(), wasmtime::OptLevel::Speed);
        first
            .compile_cached(EMPTY_COMPONENT, &hash, "empty")
            .unwrap();
        let made = artifacts(dir.path());
        assert_eq!(made.len(), 1, "{made:?}");
        let written = std::fs::metadata(&made[0]).unwrap().modified().unwrap();
        // The same engine again (a restart): the artifact is loaded, not rewritten. Its
        // name is the same for equal engines, whatever process computes it.
        let again = registry(dir.path(), wasmtime::OptLevel::Speed);
        assert_eq!(engine_key(first.engine()), engine_key(again.engine()));
        again
            .compile_cached(EMPTY_COMPONENT, &hash, "empty")
            .unwrap();
        assert_eq!(artifacts(dir.path()), made);
        assert_eq!(
            std::fs::metadata(&made[0]).unwrap().modified().unwrap(),
            written
        );
        // An engine that compiles differently gets an artifact of its own.
        let other = registry(dir.path(), wasmtime::OptLevel::SpeedAndSize);
        assert_ne!(engine_key(first.engine()), engine_key(other.engine()));
        other
            .compile_cached(EMPTY_COMPONENT, &hash, "empty")
            .unwrap();
        assert_eq!(artifacts(dir.path()).len(), 2);
        // A torn or foreign artifact is discarded and compiled again, never trusted.
        std::fs::write(&made[0], b"garbage").unwrap();
        again
            .compile_cached(EMPTY_COMPONENT, &hash, "empty")
            .unwrap();
        assert_ne!(std::fs::read(&made[0]).unwrap(), b"garbage");
    }
}
