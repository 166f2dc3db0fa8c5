//! `lodge:object/alarms`: the alarm change is part of the event's batch.

use super::HostState;
use super::lodge::object::alarms::Host;

impl Host for HostState {
    async fn set(&mut self, at: u64) -> wasmtime::Result<()> {
        self.event.alarm = Some(at);
        self.event.alarm_changed = true;
        Ok(())
    }

    async fn get(&mut self) -> wasmtime::Result<Option<u64>> {
        Ok(self.event.alarm)
    }

    async fn delete(&mut self) -> wasmtime::Result<()> {
        self.event.alarm = None;
        self.event.alarm_changed = true;
        Ok(())
    }
}
