//! `lodge:object/storage`: reads through the event's layers, writes into the event.

use super::Budget;
use super::HostState;
use super::lodge::object::storage::{Entry, Host, ListOptions, StorageError};
use crate::storage::KeyRange;

type Res<T> = wasmtime::Result<Result<T, StorageError>>;

impl HostState {
    /// A storage failure as the guest sees it; remembered as the likely cause if the
    /// event then fails.
    fn engine_error(&mut self, e: crate::storage::StorageError) -> StorageError {
        let text = e.to_string();
        self.event
            .storage_failure
            .get_or_insert_with(|| text.clone());
        StorageError::Unavailable(text)
    }

    fn check_key(&mut self, key: &[u8]) -> Result<(), StorageError> {
        let max = self.object.limits.max_key_bytes;
        if key.is_empty() {
            return Err(StorageError::Invalid("keys may not be empty".into()));
        }
        if key.len() > max {
            let detail = format!("key of {} bytes; the limit is {max}", key.len());
            self.refused("max_key_bytes", &detail);
            return Err(StorageError::TooLarge(detail));
        }
        Ok(())
    }

    fn check_value(&mut self, value: &[u8]) -> Result<(), StorageError> {
        let max = self.object.limits.max_value_bytes;
        if value.len() > max {
            let detail = format!("value of {} bytes; the limit is {max}", value.len());
            self.refused("max_value_bytes", &detail);
            return Err(StorageError::TooLarge(detail));
        }
        Ok(())
    }

    /// Refuses writes that would take the object past its quota. The fast path keeps
    /// an upper bound (committed usage + every byte written since, across events) and
    /// needs no reads; only near the quota is the exact usage computed.
    async fn check_quota(
        &mut self,
        entries: &[(&[u8], Option<&[u8]>)],
    ) -> Result<(), StorageError> {
        let quota = self.object.limits.storage_bytes;
        let added: u64 = entries
            .iter()
            .map(|(k, v)| v.map_or(0, |v| (k.len() + v.len()) as u64))
            .sum();
        if added == 0 {
            return Ok(());
        }
        if let Some(why) = self.object.store.space_low() {
            self.refused("min_free_bytes", &why);
            return Err(StorageError::Unavailable(why));
        }
        let known = *self.object.usage_bound();
        let bound = match known {
            Some(b) => b,
            None => {
                let committed = self
                    .committed_usage()
                    .await
                    .map_err(|e| self.engine_error(e))?;
                let pending = self.object.overlay().pending_bytes();
                committed + pending
            }
        };
        if bound.saturating_add(added) <= quota {
            *self.object.usage_bound() = Some(bound + added);
            return Ok(());
        }
        let committed = self
            .committed_usage()
            .await
            .map_err(|e| self.engine_error(e))?;
        let usage = self
            .read_usage(committed)
            .await
            .map_err(|e| self.engine_error(e))?;
        let mut delta = 0i64;
        for (k, v) in entries {
            if let Some(old) = self.read(k).await.map_err(|e| self.engine_error(e))? {
                delta -= (k.len() + old.len()) as i64;
            }
            if let Some(v) = v {
                delta += (k.len() + v.len()) as i64;
            }
        }
        let after = (usage as i64 + delta).max(0) as u64;
        let refused = delta > 0 && after > quota;
        *self.object.usage_bound() = Some(if refused { usage } else { after });
        if refused {
            let detail = format!(
                "the object stores {usage} bytes; this write adds {delta} and the quota is {quota}"
            );
            self.refused("storage_bytes", &detail);
            return Err(StorageError::QuotaExceeded(detail));
        }
        Ok(())
    }

    async fn committed_usage(&mut self) -> Result<u64, crate::storage::StorageError> {
        let meta = self.object.store.object_meta(self.object.object.id).await?;
        Ok(meta.map_or(0, |m| m.usage))
    }
}

impl Host for HostState {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn get(&mut self, key: Vec<u8>) -> Res<Option<Vec<u8>>> {
        if let Err(e) = self.check_key(&key) {
            return Ok(Err(e));
        }
        let value = match self.read(&key).await {
            Ok(v) => v,
            Err(e) => return Ok(Err(self.engine_error(e))),
        };
        let bytes = key.len() + value.as_ref().map_or(0, Vec::len);
        if let Err(detail) = self.charge(Budget::Read, bytes) {
            return Ok(Err(StorageError::TooLarge(detail)));
        }
        Ok(Ok(value))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_many(&mut self, keys: Vec<Vec<u8>>) -> Res<Vec<Option<Vec<u8>>>> {
        for key in &keys {
            if let Err(e) = self.check_key(key) {
                return Ok(Err(e));
            }
        }
        // One key at a time, charged as it is read: N copies of one large key cannot make
        // the host hold N copies of its value.
        let mut values = Vec::with_capacity(keys.len().min(1024));
        for key in &keys {
            let value = match self.read(key).await {
                Ok(v) => v,
                Err(e) => return Ok(Err(self.engine_error(e))),
            };
            let bytes = key.len() + value.as_ref().map_or(0, Vec::len);
            if let Err(detail) = self.charge(Budget::Read, bytes) {
                return Ok(Err(StorageError::TooLarge(detail)));
            }
            values.push(value);
        }
        Ok(Ok(values))
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Res<()> {
        if let Err(e) = self.check_key(&key).and_then(|_| self.check_value(&value)) {
            return Ok(Err(e));
        }
        if let Err(e) = self.check_quota(&[(&key, Some(&value))]).await {
            return Ok(Err(e));
        }
        if let Err(detail) = self.charge(Budget::Write, key.len() + value.len()) {
            return Ok(Err(StorageError::TooLarge(detail)));
        }
        self.event.writes.writes.insert(key, Some(value));
        Ok(Ok(()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn put_many(&mut self, entries: Vec<Entry>) -> Res<()> {
        for e in &entries {
            if let Err(err) = self
                .check_key(&e.key)
                .and_then(|_| self.check_value(&e.value))
            {
                return Ok(Err(err));
            }
        }
        let pairs: Vec<(&[u8], Option<&[u8]>)> = entries
            .iter()
            .map(|e| (e.key.as_slice(), Some(e.value.as_slice())))
            .collect();
        let bytes = pairs
            .iter()
            .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len))
            .sum();
        if let Err(e) = self.check_quota(&pairs).await {
            return Ok(Err(e));
        }
        if let Err(detail) = self.charge(Budget::Write, bytes) {
            return Ok(Err(StorageError::TooLarge(detail)));
        }
        for e in entries {
            self.event.writes.writes.insert(e.key, Some(e.value));
        }
        Ok(Ok(()))
    }

    async fn delete(&mut self, key: Vec<u8>) -> Res<bool> {
        if let Err(e) = self.check_key(&key) {
            return Ok(Err(e));
        }
        let existed = match self.read(&key).await {
            Ok(v) => v.is_some(),
            Err(e) => return Ok(Err(self.engine_error(e))),
        };
        self.event.writes.writes.insert(key, None);
        Ok(Ok(existed))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(&mut self, options: ListOptions) -> Res<Vec<Entry>> {
        let range = KeyRange::new(
            options.prefix.as_deref(),
            options.start.as_deref(),
            options.end.as_deref(),
        );
        let limit = options.limit.map_or(usize::MAX, |l| l as usize);
        let budget = self.object.limits.max_read_bytes_per_event;
        let left = (budget as u64).saturating_sub(self.event.spent[Budget::Read as usize]);
        let entries = match self
            .read_list(&range, options.reverse, limit, left as usize)
            .await
        {
            Ok(entries) => entries,
            Err(crate::storage::StorageError::ReadBudget(_)) => {
                let detail = self.over_budget(
                    Budget::Read,
                    "this list would read more: list fewer entries (a `limit`, a narrower \
                         range)",
                );
                return Ok(Err(StorageError::TooLarge(detail)));
            }
            Err(e) => return Ok(Err(self.engine_error(e))),
        };
        let bytes = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        if let Err(detail) = self.charge(Budget::Read, bytes) {
            return Ok(Err(StorageError::TooLarge(detail)));
        }
        Ok(Ok(entries
            .into_iter()
            .map(|(key, value)| Entry { key, value })
            .collect()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_all(&mut self) -> Res<()> {
        self.event.writes.clear = true;
        self.event.writes.writes.clear();
        Ok(Ok(()))
    }

    async fn usage(&mut self) -> Res<u64> {
        let committed = match self.committed_usage().await {
            Ok(c) => c,
            Err(e) => return Ok(Err(self.engine_error(e))),
        };
        Ok(self
            .read_usage(committed)
            .await
            .map_err(|e| self.engine_error(e)))
    }

    async fn quota(&mut self) -> wasmtime::Result<u64> {
        Ok(self.object.limits.storage_bytes)
    }
}
