//! Host bindings for Spin's interfaces, generated from the WIT inside the
//! `spin-sdk` crates (see build.rs): [`imports`] and [`redis_trigger`] from
//! spin-sdk 7 (WASIp3 Spin, also `wasi:keyvalue`, which is the same in both),
//! [`p2`] from spin-sdk 5 (WASIp2 Spin 2.x/3.x).

include!(concat!(env!("OUT_DIR"), "/spin_wit.rs"));

/// What components may import besides WASI: key-value (Spin's and
/// `wasi:keyvalue`), variables, outbound Redis and MQTT, SQLite
/// (`spin:sqlite@3.1.0`) and PostgreSQL (`spin:postgres@4.2.0`), spin-sdk
/// 7's, and MySQL (linked so that apps
/// importing it start; it has no backend here).
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
                import spin:mqtt/mqtt@3.0.0;
                import spin:mysql/mysql@3.0.0;
                import spin:sqlite/sqlite@3.1.0;
                import spin:postgres/postgres@4.2.0;
            }
        ",
        world: "wharf:host/imports",
        imports: {
            "spin:key-value/key-value": async | store | trappable,
            "spin:variables/variables": async | store | trappable,
            "spin:redis/redis": async | store | trappable,
            "spin:mqtt/mqtt": async | store | trappable,
            "spin:mysql/mysql": async | store | trappable,
            default: async | trappable,
        },
        with: {
            "spin:key-value/key-value.store": crate::capabilities::key_value::OpenStore,
            "wasi:keyvalue/store.bucket": crate::capabilities::key_value::OpenStore,
            "wasi:keyvalue/atomics.cas": crate::capabilities::key_value::Cas,
            "spin:redis/redis.connection": crate::capabilities::outbound_redis::Connection,
            "spin:mqtt/mqtt.connection": crate::capabilities::outbound_mqtt::Connection,
            "spin:mysql/mysql.connection": crate::capabilities::unsupported::MysqlConnection,
            "spin:sqlite/sqlite.connection": crate::capabilities::sqlite::Connection,
            "spin:postgres/postgres.connection": crate::capabilities::outbound_pg::Connection,
            "spin:postgres/postgres.connection-builder": crate::capabilities::outbound_pg::ConnectionBuilder,
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

/// What WASIp2 components built for Spin 2.x/3.x import and export beyond
/// WASI: `fermyon:spin@2.0.0`, `spin:sqlite@3.0.0`, `spin:postgres@3.0.0`
/// and `@4.0.0`, and `wasi:config`. Their functions are
/// synchronous in WIT; the host side is async and suspends only the calling
/// instance.
pub mod p2 {
    bindgen_with_spin_p2_wit!(
        inline: "
            package wharf:host-p2;
            world imports {
                import fermyon:spin/key-value@2.0.0;
                import fermyon:spin/variables@2.0.0;
                import fermyon:spin/redis@2.0.0;
                import fermyon:spin/sqlite@2.0.0;
                import spin:sqlite/sqlite@3.0.0;
                import wasi:config/store@0.2.0-draft-2024-09-27;
                import fermyon:spin/mqtt@2.0.0;
                import fermyon:spin/postgres@2.0.0;
                import spin:postgres/postgres@3.0.0;
                import spin:postgres/postgres@4.0.0;
                import fermyon:spin/mysql@2.0.0;
                import fermyon:spin/llm@2.0.0;
            }
        ",
        world: "wharf:host-p2/imports",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": crate::capabilities::key_value::OpenStore,
            "fermyon:spin/redis.connection": crate::capabilities::outbound_redis::Connection,
            "fermyon:spin/sqlite.connection": crate::capabilities::sqlite::Connection,
            "spin:sqlite/sqlite.connection": crate::capabilities::sqlite::Connection,
            "fermyon:spin/mqtt.connection": crate::capabilities::outbound_mqtt::Connection,
            "fermyon:spin/postgres.connection": crate::capabilities::outbound_pg::Connection,
            "spin:postgres/postgres@3.0.0.connection": crate::capabilities::outbound_pg::Connection,
            "spin:postgres/postgres@4.0.0.connection": crate::capabilities::outbound_pg::Connection,
            "fermyon:spin/mysql.connection": crate::capabilities::unsupported::MysqlConnection,
        },
    );

    /// The Redis trigger's export for Spin 2.x/3.x components.
    pub mod redis_trigger {
        bindgen_with_spin_p2_wit!(
            inline: "
                package wharf:redis-trigger-p2;
                world redis-trigger {
                    export fermyon:spin/inbound-redis;
                }
            ",
            world: "wharf:redis-trigger-p2/redis-trigger",
            exports: { default: async },
        );
    }
}

/// The `0.2.0-rc-2023-10-18` release candidate of WASI HTTP and I/O, which
/// Spin 2.x apps (spin-sdk 2.x) export and import. Its resources are the
/// host types of WASI 0.2 themselves, so its functions
/// (`capabilities::wasi_2023_10_18`) forward to wasmtime's 0.2
/// implementations, and a stream or body is the same object in both.
pub mod wasi_2023_10_18 {
    bindgen_with_wasi_2023_10_18_wit!(
        inline: "
            package wharf:http-2023-10-18;
            world http {
                import wasi:http/outgoing-handler@0.2.0-rc-2023-10-18;
                export wasi:http/incoming-handler@0.2.0-rc-2023-10-18;
            }
        ",
        world: "wharf:http-2023-10-18/http",
        imports: {
            "wasi:io/poll.poll-list": async | trappable,
            "wasi:io/poll.poll-one": async | trappable,
            "wasi:io/streams.[method]input-stream.blocking-read": async | trappable,
            "wasi:io/streams.[method]input-stream.blocking-skip": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-write-and-flush": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-flush": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-write-zeroes-and-flush": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-splice": async | trappable,
            "wasi:io/streams.[method]output-stream.forward": async | trappable,
            "wasi:io/streams.[drop]input-stream": async | trappable,
            "wasi:io/streams.[drop]output-stream": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasi:io/poll.pollable": wasmtime_wasi::p2::DynPollable,
            "wasi:io/streams.input-stream": wasmtime_wasi::p2::DynInputStream,
            "wasi:io/streams.output-stream": wasmtime_wasi::p2::DynOutputStream,
            "wasi:io/streams.error": wasmtime_wasi::p2::IoError,
            "wasi:http/types.fields": wasmtime_wasi_http::FieldMap,
            "wasi:http/types.incoming-request": wasmtime_wasi_http::p2::types::HostIncomingRequest,
            "wasi:http/types.outgoing-request": wasmtime_wasi_http::p2::types::HostOutgoingRequest,
            "wasi:http/types.response-outparam": wasmtime_wasi_http::p2::types::HostResponseOutparam,
            "wasi:http/types.incoming-response": wasmtime_wasi_http::p2::types::HostIncomingResponse,
            "wasi:http/types.incoming-body": wasmtime_wasi_http::p2::body::HostIncomingBody,
            "wasi:http/types.future-trailers": wasmtime_wasi_http::p2::body::HostFutureTrailers,
            "wasi:http/types.outgoing-response": wasmtime_wasi_http::p2::types::HostOutgoingResponse,
            "wasi:http/types.outgoing-body": wasmtime_wasi_http::p2::body::HostOutgoingBody,
            "wasi:http/types.future-incoming-response": wasmtime_wasi_http::p2::types::HostFutureIncomingResponse,
        },
        trappable_error_type: {
            "wasi:io/streams.stream-error" => wasmtime_wasi::p2::StreamError,
        },
    );
}
