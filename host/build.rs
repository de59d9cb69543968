//! Finds the WIT that ships inside the `spin-sdk` crates (the same WIT the
//! guests are built against: 7 for WASIp3, 5 for WASIp2) and generates the
//! host bindings from it, so the host and the guests can never disagree
//! about an interface.

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
    let packages = metadata["packages"].as_array().unwrap();
    // spin-sdk 7 carries the WIT of WASIp3 Spin (spin:*@3.x, wasi:keyvalue);
    // spin-sdk 5 that of WASIp2 Spin (fermyon:spin@2.0.0 and its inbound
    // Redis). Both are in the workspace: the components use 7, the WASIp2
    // test guests 5.
    let wit_of = |major: &str| {
        let manifest = packages
            .iter()
            .find(|p| p["name"] == "spin-sdk" && p["version"].as_str().is_some_and(|v| v.starts_with(major)))
            .unwrap_or_else(|| panic!("spin-sdk {major}x is a workspace dependency"))["manifest_path"]
            .as_str()
            .unwrap();
        PathBuf::from(manifest).parent().unwrap().join("wit").display().to_string()
    };
    // A proc macro only takes literals, so hand `bindgen!` the path through
    // generated `macro_rules!` wrappers that src/bindings.rs calls.
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("spin_wit.rs");
    let wrapper = |name: &str, wit_dir: String| {
        format!(
            "macro_rules! {name} {{ ($($options:tt)*) => {{ \
             wasmtime::component::bindgen!({{ path: {wit_dir:?}, $($options)* }}); }}; }}\n"
        )
    };
    let wrappers = wrapper("bindgen_with_spin_wit", wit_of("7.")) + &wrapper("bindgen_with_spin_p2_wit", wit_of("5."));
    std::fs::write(&out, wrappers).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
}
