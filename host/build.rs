//! Finds the WIT that ships inside the `spin-sdk` 7 crate (the same WIT the
//! components are built against) and generates the host bindings from it, so
//! the host and the guests can never disagree about an interface.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(manifest_dir.join("../Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let sdk_manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        // The workspace also holds spin-sdk 5 (a WASIp2 test guest); the
        // host's bindings are of the WASIp3 SDK the components use.
        .find(|p| p["name"] == "spin-sdk" && p["version"].as_str().is_some_and(|v| v.starts_with("7.")))
        .expect("spin-sdk 7 is a workspace dependency")["manifest_path"]
        .as_str()
        .unwrap()
        .to_string();
    let wit_dir = PathBuf::from(sdk_manifest).parent().unwrap().join("wit");
    // A proc macro only takes literals, so hand `bindgen!` the path through a
    // generated `macro_rules!` wrapper that src/bindings.rs calls.
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("spin_wit.rs");
    let wrapper = format!(
        "macro_rules! bindgen_with_spin_wit {{ ($($options:tt)*) => {{ \
         wasmtime::component::bindgen!({{ path: {:?}, $($options)* }}); }}; }}",
        wit_dir.display().to_string()
    );
    std::fs::write(&out, wrapper).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
}
