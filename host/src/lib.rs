//! lodge: a self-hosted runtime for stateful durable objects whose classes are
//! WebAssembly components. See DESIGN.md for the semantics; each module's comment says
//! how its part is built.
//!
//! Data flows one way: socket or timer -> `server` -> `runtime` (the object's mailbox)
//! -> guest -> `bindings` -> `storage` / `sockets` -> commit -> outputs released. The
//! top-level modules import each other in that order only; `tests::modules_import_one_way`
//! checks it.

pub mod admin;
pub mod ai;
pub mod alarms;
pub mod app;
pub mod backup;
pub mod bindings;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod sockets;
pub mod storage;

pub use lodge_core::{config, object};

/// The fake OpenAI-compatible provider of the end-to-end tests, for the unit tests of the
/// AI client and of the runtime's streams.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/support/fake_ai.rs"]
pub(crate) mod fake_ai;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The top-level modules, each allowed to import only those after it: the order data
    /// flows in (`app` wires everything; `config` and `object` come from lodge-core and
    /// are free for all; `fake_ai` exists in unit tests only).
    const LAYERS: [&str; 14] = [
        "app", "admin", "server", "backup", "alarms", "runtime", "registry", "bindings", "ai",
        "sockets", "storage", "metrics", "scaffold", "fake_ai",
    ];

    /// The `crate::NAME` paths used in `text` (`use crate::{a, b::c}` included).
    fn imports(text: &str) -> BTreeSet<String> {
        let ident = |s: &str| -> String {
            s.trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        let mut found = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                found.extend(group.split(',').map(ident));
            } else {
                found.insert(ident(rest));
            }
        }
        found.retain(|m| !m.is_empty());
        found
    }

    fn sources(path: &Path, out: &mut String) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap().flatten() {
                sources(&entry.path(), out);
            }
        } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }

    #[test]
    fn modules_import_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut top_level: Vec<String> = std::fs::read_dir(&src)
            .unwrap()
            .flatten()
            .map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .filter(|m| m != "lib" && m != "main" && m != "cli")
            .collect();
        top_level.sort();
        let mut layered: Vec<String> = LAYERS
            .iter()
            .filter(|m| **m != "fake_ai")
            .map(|m| m.to_string())
            .collect();
        layered.sort();
        assert_eq!(
            top_level, layered,
            "every top-level module has a place in LAYERS"
        );
        for (rank, module) in LAYERS.iter().enumerate() {
            let mut text = String::new();
            sources(&src.join(module), &mut text);
            sources(&src.join(format!("{module}.rs")), &mut text);
            for used in imports(&text) {
                if used == "config" || used == "object" || used == *module {
                    continue;
                }
                let at = LAYERS.iter().position(|m| *m == used);
                assert!(
                    at.is_some_and(|at| at > rank),
                    "`{module}` imports `crate::{used}`, which is not below it in LAYERS"
                );
            }
        }
        assert_eq!(
            imports("use crate::{a, b::c};\nuse crate::d::E;"),
            ["a", "b", "d"].into_iter().map(String::from).collect()
        );
    }
}
