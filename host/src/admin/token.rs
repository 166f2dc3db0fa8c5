//! The admin bearer token: chosen by the operator (config or environment), or generated
//! once into the data dir for the local CLI. Compared in constant time.
//!
//! One lookup serves the host and the CLI. The host takes the operator's token, else the
//! data dir's `admin.token` (generated on first start). The CLI takes `--token`, the
//! operator's token, the token file of the data dir its config names, and finally the
//! *host record* a host with a generated token leaves in the user's state dir
//! (`$LODGE_STATE_DIR`, else `$XDG_STATE_HOME/lodge`, else `~/.local/state/lodge`), keyed
//! by the admin address: it names the token file, so `lodge deploy` finds the host from
//! any folder (a scaffolded crate, say) without copying the secret anywhere.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    #[error(
        "the admin token file {path} can be read by other users (mode {mode:o}): `chmod 600` it, or delete it and a new token is made at start"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error(
        "no admin token for the host at {admin}: looked in {looked}. Run this where the host's lodge.toml is, or pass --token (or set LODGE_ADMIN_TOKEN)"
    )]
    NotFound { admin: String, looked: String },
}

/// The token the operator chose: the environment variable `admin.token_env`, else
/// `admin.token`.
pub fn configured_token(config: &AdminConfig) -> Option<String> {
    std::env::var(&config.token_env)
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| config.token.clone().filter(|t| !t.is_empty()))
}

/// Where the generated token is kept.
pub fn token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

fn read_token_file(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// The token the admin API requires, and the file it came from when the host generated
/// it (that file is what the host record points the local CLI to).
pub fn resolve_token(
    config: &AdminConfig,
    data_dir: &Path,
) -> Result<(String, Option<PathBuf>), TokenError> {
    if let Some(token) = configured_token(config) {
        return Ok((token, None));
    }
    if !super::is_loopback(&config.listen) {
        return Err(TokenError::ExposedWithoutToken(
            config.listen,
            config.token_env.clone(),
        ));
    }
    let path = token_file(data_dir);
    let absolute = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    if let Some(existing) = read_token_file(&path) {
        // A token others can read is no secret: refuse it rather than serve with it.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).map_or(0, |m| m.permissions().mode() & 0o777);
        if mode & 0o077 != 0 {
            return Err(TokenError::Exposed { path, mode });
        }
        return Ok((existing, Some(absolute)));
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &token).map_err(|source| TokenError::Write {
        path: path.clone(),
        source,
    })?;
    Ok((token, Some(absolute)))
}

/// What a host with a generated token leaves for the local CLI.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostRecord {
    /// `http://ADDR` of the admin API.
    pub admin_url: String,
    /// The absolute path of the token file (readable by its owner only).
    pub token_file: PathBuf,
}

fn state_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("LODGE_STATE_DIR")
        .or_else(|| from("XDG_STATE_HOME").map(|d| d.join("lodge")))
        .or_else(|| from("HOME").map(|h| h.join(".local/state/lodge")))
}

/// Where the record of the host whose admin API listens on `admin` is kept.
pub fn host_record_path(admin: SocketAddr) -> Option<PathBuf> {
    let name = format!("{}-{}.json", admin.ip(), admin.port()).replace(':', "_");
    Some(state_dir()?.join("hosts").join(name))
}

impl HostRecord {
    /// Writes the record for `admin` (best effort: the CLI has other ways to the token).
    pub fn write(&self, admin: SocketAddr) {
        let Some(path) = host_record_path(admin) else {
            return;
        };
        let text = serde_json::to_string(self).expect("a host record serializes");
        if let Err(e) = write_private(&path, &text) {
            tracing::debug!(path = %path.display(), error = %e, "cannot write the host record for the CLI");
        }
    }

    /// Removes the record for `admin` if it is still this one (another host may have
    /// taken the address since).
    pub fn remove(&self, admin: SocketAddr) {
        if let Some(path) = host_record_path(admin)
            && Self::read(admin).as_ref() == Some(self)
        {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The record a host left for `admin`, if any.
    pub fn read(admin: SocketAddr) -> Option<HostRecord> {
        let text = std::fs::read_to_string(host_record_path(admin)?).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The token the CLI presents to the host whose admin API listens on `admin`, for a
/// config whose data dir is `data_dir`: the operator's token, else the data dir's token
/// file, else the file the host's record names.
pub fn token_for_cli(
    config: &AdminConfig,
    data_dir: &Path,
    admin: Option<SocketAddr>,
) -> Result<String, TokenError> {
    if let Some(token) = configured_token(config) {
        return Ok(token);
    }
    let local = token_file(data_dir);
    if let Some(token) = read_token_file(&local) {
        return Ok(token);
    }
    let mut looked = vec![
        format!("${}", config.token_env),
        local.display().to_string(),
    ];
    if let Some(admin) = admin {
        if let Some(record) = HostRecord::read(admin)
            && let Some(token) = read_token_file(&record.token_file)
        {
            return Ok(token);
        }
        if let Some(path) = host_record_path(admin) {
            looked.push(path.display().to_string());
        }
    }
    Err(TokenError::NotFound {
        admin: admin.map_or_else(|| "the admin URL".to_string(), |a| a.to_string()),
        looked: looked.join(", "),
    })
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
        assert_eq!(resolve_token(&config, dir.path()).unwrap().0, "t");
    }

    #[test]
    fn a_loopback_listener_generates_and_keeps_a_private_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = AdminConfig {
            token_env: "LODGE_TEST_NO_SUCH_VAR".into(),
            ..AdminConfig::default()
        };
        let (first, file) = resolve_token(&config, dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(file.as_deref(), Some(token_file(dir.path()).as_path()));
        assert_eq!(resolve_token(&config, dir.path()).unwrap().0, first);
        let mode = std::fs::metadata(token_file(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_cli_finds_a_generated_token_from_any_folder_through_the_host_record() {
        let data = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let config = AdminConfig {
            token_env: "LODGE_TEST_NO_SUCH_VAR".into(),
            ..AdminConfig::default()
        };
        // SAFETY: this is the only test of this binary touching LODGE_STATE_DIR.
        unsafe { std::env::set_var("LODGE_STATE_DIR", state.path()) };
        let admin: SocketAddr = "127.0.0.1:48788".parse().unwrap();
        let (token, file) = resolve_token(&config, data.path()).unwrap();
        // Without a record, a folder with no data dir has no way to the token.
        let err = token_for_cli(&config, elsewhere.path(), Some(admin)).unwrap_err();
        assert!(err.to_string().contains("--token"), "{err}");
        let record = HostRecord {
            admin_url: format!("http://{admin}"),
            token_file: file.unwrap(),
        };
        record.write(admin);
        assert_eq!(
            token_for_cli(&config, elsewhere.path(), Some(admin)).unwrap(),
            token
        );
        // Another address has no record; the record goes when its host stops.
        let other: SocketAddr = "127.0.0.1:48789".parse().unwrap();
        assert!(token_for_cli(&config, elsewhere.path(), Some(other)).is_err());
        record.remove(admin);
        assert!(token_for_cli(&config, elsewhere.path(), Some(admin)).is_err());
        // The data dir's own file needs no record.
        assert_eq!(
            token_for_cli(&config, data.path(), Some(admin)).unwrap(),
            token
        );
    }
}
