//! Connections to PostgreSQL: one client and the statements prepared on it, a slot that
//! replaces a connection when it breaks, errors as storage errors, and the database's
//! name as logs may show it (never the password).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};

use super::super::StorageError;

/// How long connecting may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn pg_error(e: tokio_postgres::Error) -> StorageError {
    if e.is_closed() {
        return StorageError::Io(format!("the connection to PostgreSQL was lost ({e})"));
    }
    match e.as_db_error() {
        Some(db) => StorageError::Engine(format!("PostgreSQL: {}", db.message())),
        // No answer from the server: the connection is gone or broken.
        None => StorageError::Io(format!("PostgreSQL: {e}")),
    }
}

/// One connection and the statements prepared on it.
pub(super) struct Connection {
    pub client: Client,
    /// Prepared by SQL text, on first use.
    statements: Mutex<HashMap<String, Statement>>,
}

impl Connection {
    pub async fn open(config: &tokio_postgres::Config) -> Result<Connection, StorageError> {
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| {
                StorageError::Io(format!(
                    "PostgreSQL did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(pg_error)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "a PostgreSQL connection ended");
            }
        });
        Ok(Connection {
            client,
            statements: Mutex::new(HashMap::new()),
        })
    }

    pub async fn statement(&self, sql: &str, types: &[Type]) -> Result<Statement, StorageError> {
        if let Some(s) = self.statements.lock().expect("statements").get(sql) {
            return Ok(s.clone());
        }
        let prepared = self
            .client
            .prepare_typed(sql, types)
            .await
            .map_err(pg_error)?;
        self.statements
            .lock()
            .expect("statements")
            .insert(sql.to_owned(), prepared.clone());
        Ok(prepared)
    }
}

/// A connection that is replaced when it breaks.
#[derive(Default)]
pub(super) struct Slot {
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Slot {
    pub async fn get(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<Arc<Connection>, StorageError> {
        let mut current = self.current.lock().await;
        if let Some(c) = &*current
            && !c.client.is_closed()
        {
            return Ok(c.clone());
        }
        *current = None;
        let fresh = Arc::new(Connection::open(config).await?);
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    pub async fn drop_current(&self) {
        *self.current.lock().await = None;
    }
}

/// `user@host:port/db`, never the password.
pub fn describe_url(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
            tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
        })
        .collect();
    format!(
        "PostgreSQL at {}@{}/{}",
        config.get_user().unwrap_or("?"),
        hosts.join(","),
        config.get_dbname().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn a_described_url_never_shows_the_password() {
        let config =
            tokio_postgres::Config::from_str("postgres://lodge:s3cret@db.example:6543/objects")
                .unwrap();
        let text = describe_url(&config);
        assert_eq!(text, "PostgreSQL at lodge@db.example:6543/objects");
        assert!(!text.contains("s3cret"));
    }
}
