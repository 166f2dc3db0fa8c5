//! One pipeline for every way a class gets a version: a deploy, a rollback and the loads
//! at start-up. Each goes through the same steps:
//!
//! 1. **stage**: compile the component (or load its kept artifact) and validate it
//!    against the host's linker, on a blocking thread (compiling takes tens of
//!    milliseconds of CPU the async workers must not lose) and with no registry lock held;
//! 2. **probe**: instantiate it once in a throwaway store, so a component that traps while
//!    starting is refused before any object runs on it;
//! 3. **record and switch**: the registry writes its manifest and makes the version
//!    current; live objects move to it at their next event.
//!
//! The trade-off: a probe costs one instantiation (a pool slot for a moment, see
//! `engine::PROBE_SLOTS`) per deploy and per class at start-up, in exchange for never
//! serving, or starting on, a version that cannot start.

use bytes::Bytes;

use super::Runtime;
use super::actor;
use crate::object::ObjectRef;
use crate::registry::{ClassVersion, Deployed, Origin, RegistryError};

/// Why a version was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The component instantiates with a trap (its start function fails).
    #[error("the component for '{class}' fails while starting: {message}")]
    Starting { class: String, message: String },
    #[error("the compile task failed: {0}")]
    Task(String),
}

impl Runtime {
    /// Deploys `bytes` as the new current version of `class`, creating the class when
    /// the host does not serve it yet.
    pub async fn deploy(
        &self,
        class: &str,
        bytes: Bytes,
        label: Option<String>,
    ) -> Result<Deployed, DeployError> {
        let staged = {
            let registry = self.registry().clone();
            let (class, bytes) = (class.to_string(), bytes.clone());
            tokio::task::spawn_blocking(move || registry.stage(&class, &bytes))
                .await
                .map_err(|e| DeployError::Task(e.to_string()))??
        };
        let version = match staged {
            Ok(version) => version,
            Err(unchanged) => return Ok(unchanged),
        };
        self.probe(class, &version).await?;
        let deployed = self
            .registry()
            .commit_deploy(class, &bytes, version, label)?;
        // A class served again may have alarms that waited for it.
        self.inner.alarm_wake.notify_one();
        Ok(deployed)
    }

    /// Makes a kept version of `class` current again: `to`, or the newest one before the
    /// current. Returns its number.
    pub async fn rollback(&self, class: &str, to: Option<u64>) -> Result<u64, DeployError> {
        let version = {
            let registry = self.registry().clone();
            let class = class.to_string();
            tokio::task::spawn_blocking(move || registry.stage_rollback(&class, to))
                .await
                .map_err(|e| DeployError::Task(e.to_string()))??
        };
        self.probe(class, &version).await?;
        Ok(self.registry().commit_rollback(class, version)?)
    }

    /// Probes the version every class serves after start-up loaded them. A configured
    /// class that fails is an error (the operator must fix the config); a class created
    /// by a deploy is taken out of service (logged), so the rest of the host still starts.
    pub async fn probe_loaded(&self) -> Result<(), DeployError> {
        for name in self.registry().names() {
            let Some(class) = self.registry().class(&name) else {
                continue;
            };
            match self.probe(&name, &class.current()).await {
                Ok(()) => {}
                Err(e) if class.origin == Origin::Deploy => {
                    tracing::error!(class = %name, error = %e, "deployed class not served");
                    self.registry().unload(&name);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Instantiates `version` of `class` once in a throwaway store, to refuse a
    /// component that traps while starting before any object runs on it.
    pub async fn probe(&self, class: &str, version: &ClassVersion) -> Result<(), DeployError> {
        let starting = |message: String| DeployError::Starting {
            class: class.to_string(),
            message,
        };
        let object =
            ObjectRef::new(class, "lodge-deploy-probe").map_err(|e| starting(e.to_string()))?;
        let ctx = actor::object_shared(&self.inner, object);
        let mut store = actor::new_store(&self.inner, ctx);
        version
            .pre
            .instantiate_async(&mut store)
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::debug!(class, error = format!("{e:?}"), "deploy probe failed");
                starting(actor::trap_message(&e))
            })
    }
}
