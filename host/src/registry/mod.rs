//! Classes and their component versions. A version is compiled once: its precompiled
//! artifact is kept in the data dir by content hash, so a restart deserializes it
//! (microseconds) instead of compiling (tens of milliseconds per class). Each version
//! is validated by pre-instantiating it against the host's linker: a component that
//! imports anything lodge does not provide, or does not export the `object-class`
//! world, is refused before it can serve.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::bindings::{HostState, ObjectClassPre};

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
    cache_dir: PathBuf,
    classes: RwLock<BTreeMap<String, Arc<Class>>>,
}

impl Registry {
    /// A registry whose compiled artifacts live in `cache_dir`.
    pub fn new(engine: Engine, linker: Linker<HostState>, cache_dir: &Path) -> Registry {
        Registry {
            engine,
            linker,
            cache_dir: cache_dir.to_path_buf(),
            classes: RwLock::new(BTreeMap::new()),
        }
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
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let artifact = self
            .cache_dir
            .join(format!("{hash}-{:016x}.cwasm", h.finish()));
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
        // Write then rename, so a crash never leaves a torn artifact behind.
        let tmp = artifact.with_extension("tmp");
        std::fs::write(&tmp, &compiled)
            .and_then(|()| std::fs::rename(&tmp, &artifact))
            .map_err(|source| RegistryError::Cache {
                path: artifact.clone(),
                source,
            })?;
        // SAFETY: as above; these are the bytes `precompile_component` just produced.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(compile_err)
    }

    /// Adds a class serving `version`.
    pub fn insert(&self, name: &str, settings: BTreeMap<String, String>, version: ClassVersion) {
        let class = Arc::new(Class {
            name: Arc::from(name),
            settings: Arc::new(settings),
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
