//! Finds the WIT that ships inside the `spin-sdk` crates (the same WIT the
//! guests are built against: 7 for WASIp3, 5 for WASIp2, 2 for the
//! `0.2.0-rc-2023-10-18` release candidate of WASI that Spin 2.x apps use)
//! and generates the host bindings from it, so the host and the guests can
//! never disagree about an interface.

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
    // Redis); spin-sdk 2.2 that of WASI 0.2.0-rc-2023-10-18. All are in the
    // workspace: the components use 7, the WASIp2 test guests 5, the Spin 2.x
    // test guest 2.2.
    let crate_dir = |major: &str| {
        let manifest = packages
            .iter()
            .find(|p| p["name"] == "spin-sdk" && p["version"].as_str().is_some_and(|v| v.starts_with(major)))
            .unwrap_or_else(|| panic!("spin-sdk {major}x is a workspace dependency"))["manifest_path"]
            .as_str()
            .unwrap();
        PathBuf::from(manifest).parent().unwrap().to_path_buf()
    };
    // A proc macro only takes literals, so hand `bindgen!` the paths through
    // generated `macro_rules!` wrappers that src/bindings.rs calls.
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("spin_wit.rs");
    let wrapper = |name: &str, wit_dirs: Vec<PathBuf>| {
        let paths: Vec<String> = wit_dirs.iter().map(|dir| format!("{:?}", dir.display().to_string())).collect();
        format!(
            "macro_rules! {name} {{ ($($options:tt)*) => {{ \
             wasmtime::component::bindgen!({{ path: [{}], $($options)* }}); }}; }}\n",
            paths.join(", ")
        )
    };
    // Of spin-sdk 2.2's WIT only the WASI packages, dependencies first: its
    // own fermyon:spin package still spells `f32` the old way (`float32`),
    // which today's WIT parser refuses.
    let rc_dir = crate_dir("2.").join("wit-2023-10-18/deps");
    let rc_packages = ["io", "clocks", "random", "filesystem", "sockets", "cli", "http"].map(|package| rc_dir.join(package));
    let wrappers = wrapper("bindgen_with_spin_wit", vec![crate_dir("7.").join("wit")])
        + &wrapper("bindgen_with_spin_p2_wit", vec![crate_dir("5.").join("wit")])
        + &wrapper("bindgen_with_wasi_2023_10_18_wit", rc_packages.to_vec());
    std::fs::write(&out, wrappers).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
}
