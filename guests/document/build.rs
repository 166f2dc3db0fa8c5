//! Satisfies `wasi:random/insecure-seed` inside the component.
//!
//! `yrs` uses `std::collections::HashMap` with its default hasher, whose per-thread keys
//! std takes from `wasi:random/insecure-seed`. The host links the WASI interfaces of the
//! proxy world (clocks, `wasi:random/random`, stdio), which do not include that one, so
//! a component importing it would be refused. This script writes a tiny core-wasm
//! *adapter* (hand-assembled below) that exports `insecure-seed` and implements it with
//! two calls to `wasi:random/random.get-random-u64`, and tells `wasm-component-ld` to
//! use it for that import module: the finished component then imports only
//! `wasi:random/random`, which the host provides. Nothing is downloaded or generated
//! from elsewhere.

use std::path::PathBuf;

/// The WASI version std's bindings use on the pinned toolchain; `wasi_version` reads the
/// actual one from the toolchain's std when it can.
const DEFAULT_WASI_VERSION: &str = "0.2.4";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "wasm32-wasip2" {
        return;
    }
    let version = wasi_version().unwrap_or_else(|| DEFAULT_WASI_VERSION.to_string());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let path = out.join("insecure_seed_adapter.wasm");
    let random = format!("wasi:random/random@{version}");
    std::fs::write(&path, adapter(&random)).expect("write the adapter module");
    println!(
        "cargo:rustc-link-arg-cdylib=--adapt=wasi:random/insecure-seed@{version}={}",
        path.display()
    );
}

/// The version in `wasi:random/insecure-seed@X` as named in the target's std.
fn wasi_version() -> Option<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let lib = PathBuf::from(sysroot.trim()).join("lib/rustlib/wasm32-wasip2/lib");
    let needle = b"wasi:random/insecure-seed@";
    for entry in std::fs::read_dir(lib).ok()? {
        let path = entry.ok()?.path();
        let name = path.file_name()?.to_string_lossy().into_owned();
        if !(name.starts_with("libstd-") && name.ends_with(".rlib")) {
            continue;
        }
        let bytes = std::fs::read(&path).ok()?;
        let at = bytes.windows(needle.len()).position(|w| w == needle)? + needle.len();
        let version: String = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .map(|b| *b as char)
            .collect();
        let version = version.trim_end_matches('.').to_string();
        if !version.is_empty() {
            return Some(version);
        }
    }
    None
}

fn leb(mut n: u32, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn name(s: &str, out: &mut Vec<u8>) {
    leb(s.len() as u32, out);
    out.extend_from_slice(s.as_bytes());
}

fn section(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len() as u32, out);
    out.extend(body);
}

/// The adapter, equivalent to:
///
/// ```wat
/// (module
///   (type (func (param i32)))
///   (type (func (result i64)))
///   (import "wasi:random/random@X" "get-random-u64" (func $u64 (type 1)))
///   (import "env" "memory" (memory 0))
///   (func (export "insecure-seed") (type 0) (param $ret i32)
///     (i64.store (local.get $ret) (call $u64))
///     (i64.store offset=8 (local.get $ret) (call $u64))))
/// ```
fn adapter(random_module: &str) -> Vec<u8> {
    let mut m = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    // Types: 0 = (i32) -> (), 1 = () -> i64.
    section(1, vec![2, 0x60, 1, 0x7f, 0, 0x60, 0, 1, 0x7e], &mut m);
    // Imports.
    let mut imports = vec![2];
    name(random_module, &mut imports);
    name("get-random-u64", &mut imports);
    imports.extend([0x00, 1]); // func of type 1
    name("env", &mut imports);
    name("memory", &mut imports);
    imports.extend([0x02, 0x00, 0]); // memory, min 0 pages, no max
    section(2, imports, &mut m);
    // Functions: one of type 0 (index 1, after the import).
    section(3, vec![1, 0], &mut m);
    // Exports.
    let mut exports = vec![1];
    name("insecure-seed", &mut exports);
    exports.extend([0x00, 1]);
    section(7, exports, &mut m);
    // Code.
    let body = vec![
        0, // no locals
        0x20, 0, // local.get 0
        0x10, 0, // call 0
        0x37, 3, 0, // i64.store align=8 offset=0
        0x20, 0, // local.get 0
        0x10, 0, // call 0
        0x37, 3, 8,    // i64.store align=8 offset=8
        0x0b, // end
    ];
    let mut code = vec![1];
    leb(body.len() as u32, &mut code);
    code.extend(body);
    section(10, code, &mut m);
    m
}
