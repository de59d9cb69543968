//! The WASIp2 Redis subscriber (`fermyon:spin/inbound-redis`): counts each
//! message in key-value (`received`, a `wasi:keyvalue` atomic increment) and
//! publishes it back on `<reply_channel>` through outbound Redis
//! (`fermyon:spin/redis@2.0.0`). A message `trap` makes the handler trap.

use bytes::Bytes;
use spin_sdk::redis::Connection;
use spin_sdk::redis_component;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};

#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    if message.as_ref() == b"trap" {
        panic!("asked to trap");
    }
    let bucket = store::open("default").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    atomics::increment(&bucket, "received", 1).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let address = spin_sdk::variables::get("redis_address")?;
    let reply = spin_sdk::variables::get("reply_channel")?;
    Connection::open(&address)?.publish(&reply, &message.to_vec())?;
    Ok(())
}
