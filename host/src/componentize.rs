//! WASIp1 core modules turned into components at load, as Spin does, so
//! apps built for `wasm32-wasip1` (most Spin 2.x apps) run unchanged.
//!
//! The module's own imports come from the component-type custom sections
//! wit-bindgen (0.5 and later) embeds; its `wasi_snapshot_preview1` imports
//! are served by wasmtime's preview1 adapter, which maps them onto WASIp2.
//! Spin picks the adapter the same way: the reactor adapter for a module
//! with wit-bindgen metadata (a library exporting its handler), the command
//! adapter for a plain WASIp1 program (a `_start` export). Modules of
//! wit-bindgen 0.2 (Spin 1.x's `fermyon:spin/inbound-http` ABI) carry no
//! metadata and need an adapter of Spin's own, which is not published; they
//! are refused.

use anyhow::{Context, Result, bail};
use std::borrow::Cow;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wasmparser::{Parser, Payload};
use wit_component::ComponentEncoder;

/// `wasm` as is when it is a component; a component made of it when it is a
/// core module.
pub fn componentize_if_module(wasm: &[u8]) -> Result<Cow<'_, [u8]>> {
    if Parser::is_component(wasm) {
        return Ok(Cow::Borrowed(wasm));
    }
    if !Parser::is_core_wasm(wasm) {
        bail!("source is neither a WebAssembly component nor a core module");
    }
    let adapter = match ModuleKind::of(wasm)? {
        ModuleKind::Bindgen => WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        ModuleKind::Command => WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        ModuleKind::Unknown => bail!(
            "core module without wit-bindgen metadata (a `component-type` custom section) or a `_start` export: \
             nothing says what it imports and exports (modules of wit-bindgen before 0.5, Spin 1.x's ABI, are not supported)"
        ),
    };
    // Logged so a warm start can be seen to skip this (the compile cache is
    // keyed by the module's bytes).
    tracing::info!("componentizing a core module with the WASI preview1 adapter");
    let component = ComponentEncoder::default()
        .validate(true)
        .module(wasm)
        .context("core module cannot be componentized")?
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter)
        .context("WASI preview1 adapter")?
        .encode()
        .context("core module cannot be componentized")?;
    Ok(Cow::Owned(component))
}

enum ModuleKind {
    /// Carries wit-bindgen's description of its imports and exports.
    Bindgen,
    /// A WASIp1 program: `_start` and nothing else described.
    Command,
    Unknown,
}

impl ModuleKind {
    fn of(module: &[u8]) -> Result<Self> {
        let mut has_start = false;
        for payload in Parser::new(0).parse_all(module) {
            match payload.context("core module does not parse")? {
                Payload::CustomSection(section) if section.name().starts_with("component-type") => return Ok(Self::Bindgen),
                Payload::ExportSection(exports) => {
                    for export in exports {
                        has_start |= export.context("core module does not parse")?.name == "_start";
                    }
                }
                _ => {}
            }
        }
        Ok(if has_start { Self::Command } else { Self::Unknown })
    }
}
