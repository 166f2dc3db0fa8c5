//! `lodge new NAME`: scaffolds a guest crate that builds, tests and runs as it is.
//!
//! The crate is a small but real class (a guestbook: HTTP, WebSocket broadcast,
//! storage, a class setting, the auto-response), commented for someone writing their
//! first class. It depends on the lodge SDK by path (`--sdk`, default this repository's
//! `guests/sdk`), has its own `[workspace]` so it builds wherever it is put (even inside
//! another workspace's folder), pins the toolchain with the `wasm32-wasip2` target, and
//! starts from the SDK workspace's `Cargo.lock` when there is one, so it builds with
//! the dependency versions the SDK is tested with (and offline when they are cached).
//!
//! Everything is written into a directory that did not exist before; if anything fails
//! half-way, that directory is removed again.

use std::path::{Path, PathBuf};

/// Why a crate could not be scaffolded.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("'{name}' cannot name a class: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{0} already exists: choose another name or --dir (lodge new never overwrites)")]
    Exists(PathBuf),
    #[error(
        "the lodge SDK was not found at {0} (no Cargo.toml of lodge-sdk there): pass --sdk PATH to the guests/sdk folder of a lodge checkout"
    )]
    SdkNotFound(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The SDK of the repository this binary was built from (`guests/sdk`).
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
        .join("guests")
        .join("sdk")
}

/// Rust keywords (strict, reserved and 2018+), which cannot name a library crate.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names that clash with the standard library, cargo's own folders, the crate's
/// dependencies, or files some systems cannot create.
const RESERVED: &[&str] = &[
    "std",
    "core",
    "alloc",
    "proc_macro",
    "proc-macro",
    "test",
    "build",
    "deps",
    "examples",
    "incremental",
    "target",
    "lodge_sdk",
    "lodge-sdk",
    "serde",
    "serde_json",
    "serde-json",
    "wit_bindgen",
    "wit-bindgen",
    "con",
    "prn",
    "aux",
    "nul",
];

/// Checks that `name` can be both a lodge class name and a Rust crate name.
pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let refuse = |reason: &str| {
        Err(ScaffoldError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return refuse("the name is empty");
    }
    if name.len() > 64 {
        return refuse("a class name is at most 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return refuse("a class name starts with a lowercase letter (a-z)");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return refuse(&format!(
            "{c:?} is not allowed: a class name is made of a-z, 0-9, '-' and '_'"
        ));
    }
    // The library is named after the crate with '-' turned into '_'.
    let lib = name.replace('-', "_");
    if KEYWORDS.contains(&lib.as_str()) {
        return refuse("it is a Rust keyword, which cannot name a crate");
    }
    if RESERVED.contains(&name) || RESERVED.contains(&lib.as_str()) {
        return refuse(
            "it is reserved (the standard library, cargo's folders, or a dependency of the crate)",
        );
    }
    if !crate::object::is_valid_class_name(name) {
        return refuse("it is not a valid class name");
    }
    Ok(())
}

/// Writes a new guest crate `parent/name` using the SDK at `sdk`; returns its folder.
pub fn create(parent: &Path, name: &str, sdk: &Path) -> Result<PathBuf, ScaffoldError> {
    validate_name(name)?;
    let sdk_manifest = sdk.join("Cargo.toml");
    let is_sdk = std::fs::read_to_string(&sdk_manifest)
        .map(|t| t.contains("name = \"lodge-sdk\""))
        .unwrap_or(false);
    if !is_sdk {
        return Err(ScaffoldError::SdkNotFound(sdk.to_path_buf()));
    }
    // An absolute path keeps working wherever the crate is built from.
    let sdk = sdk
        .canonicalize()
        .map_err(|_| ScaffoldError::SdkNotFound(sdk.to_path_buf()))?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Write {
        path: parent.to_path_buf(),
        source,
    })?;
    // `create_dir` (not `_all`) fails if someone made the folder meanwhile.
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ScaffoldError::Exists(dir));
        }
        Err(source) => return Err(ScaffoldError::Write { path: dir, source }),
    }
    match write_files(&dir, name, &sdk) {
        Ok(()) => Ok(dir),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// `lodge new`: scaffolds the crate and tells the user what to do next.
pub fn cli(parent: &Path, name: &str, sdk: Option<&Path>) -> Result<(), ScaffoldError> {
    let sdk = sdk.map_or_else(default_sdk, Path::to_path_buf);
    let dir = create(parent, name, &sdk)?;
    let lib = name.replace('-', "_");
    println!("created the lodge class `{name}` in {}", dir.display());
    println!();
    println!("  cd {}", dir.display());
    println!("  cargo test                                      # the class's unit tests");
    println!(
        "  cargo build --release --target wasm32-wasip2    # -> target/wasm32-wasip2/release/{lib}.wasm"
    );
    println!(
        "  lodge deploy {name} target/wasm32-wasip2/release/{lib}.wasm   # into the running host"
    );
    println!("  # then open http://127.0.0.1:8787/{name}/lobby/");
    println!();
    println!(
        "README.md in the crate has the rest (new versions, rollback, lodge dev, a host of its own)."
    );
    Ok(())
}

fn write_files(dir: &Path, name: &str, sdk: &Path) -> Result<(), ScaffoldError> {
    let lib = name.replace('-', "_");
    let sdk_toml = toml::Value::String(sdk.display().to_string()).to_string();
    let fill = |text: &str| {
        text.replace(template::NAME, name)
            .replace(template::LIB, &lib)
    };
    // The manifest starts at `[package]` (the comment above it is about the template)
    // and gets the SDK's absolute path and the standalone tables.
    let manifest = {
        let body = template::CARGO_TOML;
        let body = &body[body.find("[package]").unwrap_or(0)..];
        format!(
            "{}\n{}",
            fill(body).replace(
                template::SDK_DEPENDENCY,
                &format!("lodge-sdk = {{ path = {sdk_toml} }}")
            ),
            template::STANDALONE_TOML
        )
    };
    let write = |rel: &str, contents: &str| {
        let path = dir.join(rel);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(|source| ScaffoldError::Write {
                path: folder.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, contents).map_err(|source| ScaffoldError::Write { path, source })
    };
    write("Cargo.toml", &manifest)?;
    write("rust-toolchain.toml", template::RUST_TOOLCHAIN)?;
    write(".gitignore", template::GITIGNORE)?;
    write("lodge.toml", &fill(template::LODGE_TOML))?;
    write("README.md", &fill(template::README))?;
    write("src/lib.rs", &fill(template::LIB_RS))?;
    write("src/book.rs", &fill(template::BOOK_RS))?;
    write("src/page.html", &fill(template::PAGE_HTML))?;
    // Start from the versions the SDK is built and tested with; cargo drops what this
    // crate does not use and adds the crate itself.
    if let Some(lock) = sdk.parent().map(|p| p.join("Cargo.lock"))
        && let Ok(text) = std::fs::read_to_string(&lock)
    {
        write("Cargo.lock", &text)?;
    }
    Ok(())
}

/// The template crate, `guests/template` of this repository, compiled into the binary. It
/// is a member of the guests workspace, so the compiler, rustfmt, clippy and its unit
/// tests check it in CI; its name (`lodge-class-template`, library `lodge_class_template`)
/// is replaced by the new class's.
mod template {
    pub const CARGO_TOML: &str = include_str!("../../guests/template/Cargo.toml");
    /// The release profile and `[workspace]` table appended to `Cargo.toml`: inside the
    /// guests workspace they would be ignored (with a warning).
    pub const STANDALONE_TOML: &str = include_str!("../../guests/template/standalone.toml");
    pub const RUST_TOOLCHAIN: &str = include_str!("../../guests/template/rust-toolchain.toml");
    pub const GITIGNORE: &str = include_str!("../../guests/template/gitignore");
    pub const LODGE_TOML: &str = include_str!("../../guests/template/lodge.toml");
    pub const README: &str = include_str!("../../guests/template/README.md");
    pub const LIB_RS: &str = include_str!("../../guests/template/src/lib.rs");
    pub const BOOK_RS: &str = include_str!("../../guests/template/src/book.rs");
    pub const PAGE_HTML: &str = include_str!("../../guests/template/src/page.html");
    /// The template's own names.
    pub const NAME: &str = "lodge-class-template";
    pub const LIB: &str = "lodge_class_template";
    /// Its dependency on the SDK, as the guests workspace sees it.
    pub const SDK_DEPENDENCY: &str = "lodge-sdk = { path = \"../sdk\" }";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_class_and_crate_names() {
        for good in ["guestbook", "my-book", "book_2", "a"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Guestbook", "lowercase"),
            ("2book", "lowercase letter"),
            ("my book", "' '"),
            ("a/b", "'/'"),
            ("../x", "lowercase letter"),
            ("fn", "keyword"),
            ("self", "keyword"),
            ("test", "reserved"),
            ("lodge-sdk", "reserved"),
            ("serde_json", "reserved"),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(validate_name(&"a".repeat(64)).is_ok());
        assert!(validate_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn creates_a_crate_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = create(tmp.path(), "book", &default_sdk()).unwrap();
        assert_eq!(dir, tmp.path().join("book"));
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"book\""), "{manifest}");
        assert!(manifest.contains("[workspace]"));
        assert!(manifest.starts_with("[package]"), "{manifest}");
        assert!(manifest.contains("panic = \"abort\""), "{manifest}");
        let parsed: toml::Value = toml::from_str(&manifest).unwrap();
        let sdk = parsed["dependencies"]["lodge-sdk"]["path"]
            .as_str()
            .unwrap();
        assert!(Path::new(sdk).join("Cargo.toml").exists(), "{sdk}");
        for file in ["src/lib.rs", "src/book.rs", "README.md", "lodge.toml"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(
                !text.contains(template::NAME) && !text.contains(template::LIB),
                "{file}"
            );
        }
        let config = crate::config::Config::load(&dir.join("lodge.toml")).unwrap();
        assert_eq!(
            config.classes["book"].component,
            dir.join("target/wasm32-wasip2/release/book.wasm")
        );

        let err = create(tmp.path(), "book", &default_sdk()).unwrap_err();
        assert!(matches!(err, ScaffoldError::Exists(_)), "{err}");
        assert!(err.to_string().contains("already exists"));
    }

    #[test]
    fn a_missing_sdk_is_named_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let err = create(tmp.path(), "book", &tmp.path().join("nosdk")).unwrap_err();
        assert!(err.to_string().contains("--sdk"), "{err}");
        assert!(!tmp.path().join("book").exists());
    }
}
