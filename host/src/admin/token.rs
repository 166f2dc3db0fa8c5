//! The admin bearer token: chosen by the operator (config or environment), or generated
//! once into the data dir for the local CLI. Compared in constant time.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::AdminConfig;

/// Why no usable token exists.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the admin API would listen on {0}, which is not loopback, without a token: set {1} (or admin.token)"
    )]
    ExposedWithoutToken(std::net::SocketAddr, String),
    #[error("cannot write the admin token file {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The token the admin API requires.
pub fn resolve_token(config: &AdminConfig, data_dir: &Path) -> Result<String, TokenError> {
    let from_env = std::env::var(&config.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    if let Some(token) = from_env.or_else(|| config.token.clone().filter(|t| !t.is_empty())) {
        return Ok(token);
    }
    if !super::is_loopback(&config.listen) {
        return Err(TokenError::ExposedWithoutToken(
            config.listen,
            config.token_env.clone(),
        ));
    }
    let path = super::token_file(data_dir);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &token).map_err(|source| TokenError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(token)
}

fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()
}

/// Compares a presented token with the expected one without leaking where they differ
/// (both are hashed first, so even their lengths take the same time to compare).
pub fn matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0 && !expected.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(matches("secret", "secret"));
        assert!(!matches("secret2", "secret"));
        assert!(!matches("", "secret"));
        assert!(!matches("", ""));
    }

    #[test]
    fn a_public_admin_listener_needs_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = AdminConfig {
            listen: "0.0.0.0:8788".parse().unwrap(),
            token_env: "LODGE_TEST_NO_SUCH_VAR".into(),
            ..AdminConfig::default()
        };
        assert!(matches!(
            resolve_token(&config, dir.path()),
            Err(TokenError::ExposedWithoutToken(..))
        ));
        let config = AdminConfig {
            token: Some("t".into()),
            ..config
        };
        assert_eq!(resolve_token(&config, dir.path()).unwrap(), "t");
    }

    #[test]
    fn a_loopback_listener_generates_and_keeps_a_private_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = AdminConfig {
            token_env: "LODGE_TEST_NO_SUCH_VAR".into(),
            ..AdminConfig::default()
        };
        let first = resolve_token(&config, dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(resolve_token(&config, dir.path()).unwrap(), first);
        let mode = std::fs::metadata(super::super::token_file(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
