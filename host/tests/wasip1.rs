//! WASIp1 core modules, as `cargo build --target wasm32-wasip1` makes them
//! (many Spin 2.x apps), componentized at load with the WASI preview1
//! adapter; the compile cache keeps the result, keyed by the module's bytes.
//! A module that cannot be componentized stops the load, naming the
//! component.

mod common;
use common::*;
use std::time::Duration;
use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection, Instruction, MemorySection, MemoryType, Module,
    TypeSection, ValType,
};

fn hello_p1_app() -> (tempfile::TempDir, std::path::PathBuf) {
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "p1"
[[trigger.http]]
route = "/..."
component = "old"
[component.old]
source = {:?}
environment = {{ GREETING = "Hello from WASIp1!" }}
files = ["greeting.txt"]
"#,
        wasm_p1("guest-hello-p1")
    );
    let (dir, manifest) = manifest_dir(&text);
    std::fs::write(dir.path().join("greeting.txt"), "read through fd_read\n").unwrap();
    (dir, manifest)
}

#[test]
fn a_wasip1_module_is_componentized_once_and_serves_requests() {
    let module = std::fs::read(wasm_p1("guest-hello-p1")).unwrap();
    assert_eq!(module[4..8], [1, 0, 0, 0], "the guest is a core module, not a component");
    let (_dir, manifest) = hello_p1_app();
    let cache = tempfile::tempdir().unwrap();
    let config = HostConfig::default().arg("--cache-dir").arg(cache.path().display().to_string());

    let mut cold = Host::start(&manifest, config.clone());
    let r = request("POST", &cold.url("/orders/7?x=1"), &[], Some(b"body"));
    assert_eq!((r.status, r.body.as_str()), (200, "Hello from WASIp1! POST /orders/7?x=1 read through fd_read"));
    assert!(cold.logs().contains("componentizing a core module"), "{}", cold.logs());
    cold.terminate();
    assert_eq!(cold.wait_exit(Duration::from_secs(30)), Some(0), "{}", cold.logs());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1, "one compiled entry");

    let warm = Host::start(&manifest, config);
    assert_eq!(get(&warm.url("/again")).body, "Hello from WASIp1! GET /again read through fd_read");
    assert!(!warm.logs().contains("componentizing"), "a warm start compiles nothing: {}", warm.logs());
}

/// The log of a host that refused to start with `bytes` as the source of
/// its one component, `broken`.
fn refused_source(bytes: &[u8]) -> String {
    let (dir, manifest) = manifest_dir(
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"broken\"\n[component.broken]\nsource = \"broken.wasm\"\n",
    );
    std::fs::write(dir.path().join("broken.wasm"), bytes).unwrap();
    let mut host = Host::spawn(&manifest, HostConfig::default());
    assert_eq!(host.wait_exit(Duration::from_secs(60)), Some(1), "{}", host.logs());
    host.logs()
}

/// A WASIp1 program: exports `memory` and `_start`, which calls the one
/// function it imports, `from::name` (one i32 parameter, as `proc_exit`).
fn program(from: &str, name: &str) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], []);
    types.ty().function([], []);
    module.section(&types);
    let mut imports = ImportSection::new();
    imports.import(from, name, EntityType::Function(0));
    module.section(&imports);
    let mut functions = FunctionSection::new();
    functions.function(1);
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("_start", ExportKind::Func, 1);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut start = Function::new([]);
    start.instruction(&Instruction::I32Const(0)).instruction(&Instruction::Call(0)).instruction(&Instruction::End);
    code.function(&start);
    module.section(&code);
    module.finish()
}

#[test]
fn bytes_that_are_no_wasm_are_refused_at_load() {
    // Deterministic noise: the same bytes on every run.
    let noise: Vec<u8> = (0u32..4096).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let logs = refused_source(&noise);
    assert!(logs.contains("component.broken: source is neither a WebAssembly component nor a core module"), "{logs}");
}

#[test]
fn a_truncated_module_is_refused_at_load() {
    let module = std::fs::read(wasm_p1("guest-hello-p1")).unwrap();
    let logs = refused_source(&module[..module.len() / 2]);
    assert!(logs.contains("component.broken: core module does not parse"), "{logs}");
}

#[test]
fn a_module_importing_what_no_adapter_provides_is_refused_at_load() {
    let logs = refused_source(&program("env", "undefined_function"));
    assert!(logs.contains("component.broken: core module cannot be componentized"), "{logs}");
    assert!(logs.contains("`env::undefined_function`"), "the error names the import: {logs}");
}

#[test]
fn a_module_saying_nothing_of_its_interfaces_is_refused_at_load() {
    let mut module = Module::new();
    module.section(&TypeSection::new());
    let logs = refused_source(&module.finish());
    assert!(logs.contains("component.broken: core module without wit-bindgen metadata"), "{logs}");
}

#[test]
fn a_wasip1_program_becomes_a_command_which_the_http_trigger_refuses() {
    let logs = refused_source(&program("wasi_snapshot_preview1", "proc_exit"));
    assert!(logs.contains("component `broken` exports wasi:cli/run@0.2"), "{logs}");
}
