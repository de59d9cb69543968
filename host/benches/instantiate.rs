//! Per-request instantiation cost: a fresh store and instance of the hello
//! component from its pre-instantiated `InstancePre`, with the host's own
//! engine configuration (pooling allocator, slot recycling). Run with
//! `cargo bench -p wharf --bench instantiate` after scripts/build-components.

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::HashMap;
use std::time::Duration;
use wharf::app::{App, AppOptions};
use wharf::engine::EngineOptions;
use wharf::capabilities::outbound_http::Timeouts;
use wasmtime_wasi_http::p3::bindings::ServicePre;

fn instantiate(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let wasm = root.join("target/wasm32-wasip2/wasm/guest_hello.wasm");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!("spin_manifest_version = 2\n[application]\nname = \"bench\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"hello\"\n[component.hello]\nsource = {wasm:?}\n"),
    )
    .unwrap();
    let options = AppOptions {
        manifest,
        runtime_config: None,
        state_dir: Some(dir.path().join("state")),
        component_ids: vec![],
        component_env: vec![],
        process_env: HashMap::new(),
        engine: EngineOptions { max_instance_memory: 128 << 20, max_instances: 64, perf_map: false },
        cache_dir: Some(dir.path().join("cache")),
        outbound_timeouts: Timeouts { connect: Duration::from_secs(5), first_byte: Duration::from_secs(5) },
    };
    let app = App::load(&options).unwrap();
    let component = app.components["hello"].clone();
    let pre = ServicePre::new(component.pre.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    c.bench_function("store + instance of the hello component", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut store = component.new_store().unwrap();
                let service = pre.instantiate_async(&mut store).await.unwrap();
                drop(service);
                drop(store);
            })
        })
    });
}

criterion_group!(benches, instantiate);
criterion_main!(benches);
