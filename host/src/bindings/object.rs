//! `lodge:object/object`: who the object is and its class settings.

use super::HostState;
use super::lodge::object::object::Host;

impl Host for HostState {
    async fn class_name(&mut self) -> wasmtime::Result<String> {
        Ok(self.object.object.class.to_string())
    }

    async fn name(&mut self) -> wasmtime::Result<String> {
        Ok(self.object.object.name.to_string())
    }

    async fn id(&mut self) -> wasmtime::Result<String> {
        Ok(self.object.object.id.to_hex())
    }

    async fn setting(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.object.settings.get(&key).cloned())
    }

    async fn downtime_since(&mut self, since: u64) -> wasmtime::Result<u64> {
        Ok(self
            .object
            .host_outage
            .map_or(0, |(from, to)| to.saturating_sub(from.max(since))))
    }
}
