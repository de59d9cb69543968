//! Host bindings for Spin's interfaces, generated from the WIT inside the
//! `spin-sdk` crate (see build.rs).

include!(concat!(env!("OUT_DIR"), "/spin_wit.rs"));

/// What components may import besides WASI: key-value (Spin's and
/// `wasi:keyvalue`), variables and outbound Redis.
pub mod imports {
    bindgen_with_spin_wit!(
        inline: "
            package wharf:host;
            world imports {
                import spin:key-value/key-value@3.0.0;
                import spin:variables/variables@3.0.0;
                import spin:redis/redis@3.0.0;
                import wasi:keyvalue/store@0.2.0-draft2;
                import wasi:keyvalue/atomics@0.2.0-draft2;
                import wasi:keyvalue/batch@0.2.0-draft2;
            }
        ",
        world: "wharf:host/imports",
        imports: {
            "spin:key-value/key-value": async | store | trappable,
            "spin:variables/variables": async | store | trappable,
            "spin:redis/redis": async | store | trappable,
            default: async | trappable,
        },
        with: {
            "spin:key-value/key-value.store": crate::key_value::OpenStore,
            "wasi:keyvalue/store.bucket": crate::key_value::OpenStore,
            "wasi:keyvalue/atomics.cas": crate::key_value::Cas,
            "spin:redis/redis.connection": crate::outbound_redis::Connection,
        },
    );
}

/// The Redis trigger's export.
pub mod redis_trigger {
    bindgen_with_spin_wit!(
        inline: "
            package wharf:redis-trigger;
            world redis-trigger {
                export spin:redis/inbound-redis@3.0.0;
            }
        ",
        world: "wharf:redis-trigger/redis-trigger",
        exports: { default: async },
        with: {
            "spin:redis/redis": super::imports::spin::redis::redis,
        },
    );
}
