//! A payment provider's test mode at `/sandbox/...` (tokens and behaviour in
//! shop-core's `sandbox` module and the README). `tok_slow` answers after the
//! caller's timeout: the sleep happens here, the plan comes from shop-core.

use shop_core::sandbox::{Sandbox, SandboxConfig};
use shop_spin::{Reply, SpinKv, WasiClock, WasiRandom, WasiSleeper, api_request, response, unavailable};
use shop_core::ports::Sleeper;
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> Reply {
    let request = match api_request(request).await {
        Ok(r) => r,
        Err(e) => return response(e),
    };
    let kv = match SpinKv::open_default().await {
        Ok(kv) => kv,
        Err(e) => return unavailable(e.message),
    };
    let plan = Sandbox::new(kv, WasiClock, WasiRandom, SandboxConfig::default()).handle(request).await;
    if plan.delay_ms > 0 {
        WasiSleeper.sleep(plan.delay_ms).await;
    }
    response(plan.response)
}
