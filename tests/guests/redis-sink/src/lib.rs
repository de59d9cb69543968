//! For each message: count it in key-value (`received`), and publish it back
//! on `<reply_channel>` through outbound Redis, so a test sees both the
//! trigger and outbound Redis work. A message `trap` makes the handler trap;
//! `spin` loops until the host stops it; `noop` returns at once;
//! `sleep:<ms>` waits that long first, then is handled like any other.

use anyhow::Result;
use bytes::Bytes;
use spin_sdk::experimental::wasi::keyvalue::{atomics, store};
use spin_sdk::redis_subscriber;

#[redis_subscriber]
async fn on_message(message: Bytes) -> Result<()> {
    match message.as_ref() {
        b"trap" => panic!("asked to trap"),
        b"spin" => loop {
            std::hint::black_box(());
        },
        // The trivial handler of bench/redis.sh: what the trigger itself costs.
        b"noop" => return Ok(()),
        other => {
            if let Some(ms) = other.strip_prefix(b"sleep:") {
                let ms: u64 = std::str::from_utf8(ms)?.parse()?;
                spin_sdk::wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
            }
        }
    }
    // Messages are handled concurrently, so count with an atomic increment.
    let bucket = store::open("default").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    atomics::increment(&bucket, "received", 1).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let address = spin_sdk::variables::get("redis_address").await?;
    let reply = spin_sdk::variables::get("reply_channel").await?;
    let conn = spin_sdk::redis::Connection::open(address).await?;
    conn.publish(reply, &message.to_vec()).await?;
    Ok(())
}
