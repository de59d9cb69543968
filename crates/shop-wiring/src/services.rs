//! Each component's work, from a converted request or event to the answer:
//! the adapters convert the SDK's request and response, these build the
//! service from the ports and the variables and run it.

use crate::{RedisPublisher, Runtime, ShopKv, config, event_outcome, unavailable};
use shop_core::http::{ApiRequest, ApiResponse};
use shop_core::inventory::{InventoryConfig, InventoryService};
use shop_core::kv::Kv;
use shop_core::ops::{self, HealthCheck, OpsEndpoint, ServiceInfo};
use shop_core::orders::{OrderService, OrdersConfig};
use shop_core::events::EventOutcome;
use shop_core::payments::{PaymentService, PaymentWork, PaymentsConfig, ProviderGateway};
use crate::payments_wit::{ProviderChoice, SelectedGateway, provider_choice};
use shop_core::ports::Sleeper;
use shop_core::sandbox::{InProcess, Sandbox, SandboxConfig};

type Orders<R, I> = OrderService<ShopKv<R>, I, RedisPublisher<R>, <R as Runtime>::Clock, <R as Runtime>::Random>;
pub type Inventory<R> = InventoryService<ShopKv<R>, <R as Runtime>::Clock, <R as Runtime>::Random>;
/// The gateway of the payment components: the composed provider or one
/// over HTTP, as `payment_provider` says.
type PaymentGateway<R> = SelectedGateway<<R as Runtime>::ComposedProvider, ProviderGateway<<R as Runtime>::Provider>>;
type Payments<R> = PaymentService<
    ShopKv<R>,
    PaymentGateway<R>,
    RedisPublisher<R>,
    <R as Runtime>::Clock,
    <R as Runtime>::Random,
    <R as Runtime>::Sleeper,
>;

async fn order_service<R: Runtime>(config: OrdersConfig) -> Result<Orders<R, R::Inventory>, String> {
    let kv = R::open_kv().await?;
    let publisher = RedisPublisher::<R>::new(R::variable("redis_url").await?);
    Ok(OrderService::new(kv, R::Inventory::default(), publisher, R::Clock::default(), R::Random::default(), config))
}

/// The service's answer, or a 503 naming what it could not be built without.
async fn answer<S>(service: Result<S, String>, handle: impl AsyncFnOnce(S) -> ApiResponse) -> ApiResponse {
    match service {
        Ok(service) => handle(service).await,
        Err(e) => unavailable(e),
    }
}

/// The `order` component: `/orders/...`, stock through the `shop:inventory` import.
pub async fn order<R: Runtime>(request: ApiRequest) -> ApiResponse {
    let service = async { order_service::<R>(config::orders::<R>().await?).await }.await;
    answer(service, async |service| service.handle(request).await).await
}

/// The `order-events` component: moves orders on payment events.
pub async fn order_events<R: Runtime>(message: &[u8]) -> Result<(), String> {
    let service = order_service::<R>(OrdersConfig::new(R::variable("admin_token").await?)).await?;
    event_outcome(service.handle_event(message).await)
}

/// The inventory service with `admin_token` (empty for the `shop:inventory`
/// interface, which has no admin routes).
pub async fn inventory_service<R: Runtime>(admin_token: String) -> Result<Inventory<R>, String> {
    let kv = R::open_kv().await?;
    Ok(InventoryService::new(kv, R::Clock::default(), R::Random::default(), InventoryConfig::new(admin_token)))
}

/// The `inventory` component's HTTP side: `/inventory/...`.
pub async fn inventory<R: Runtime>(request: ApiRequest) -> ApiResponse {
    let service = async { inventory_service::<R>(R::variable("admin_token").await?).await }.await;
    answer(service, async |service| service.handle(request).await).await
}

async fn payment_service<R: Runtime>(config: PaymentsConfig) -> Result<Payments<R>, String> {
    let kv = R::open_kv().await?;
    let gateway = payment_gateway::<R>().await?;
    let publisher = RedisPublisher::<R>::new(R::variable("redis_url").await?);
    Ok(PaymentService::new(kv, gateway, publisher, R::Clock::default(), R::Random::default(), R::Sleeper::default(), config))
}

/// The provider `payment_provider` names: the composed sandbox (the
/// default), or the one at `payment_gateway_url` over HTTP.
async fn payment_gateway<R: Runtime>() -> Result<PaymentGateway<R>, String> {
    Ok(match provider_choice(R::variable("payment_provider").await.ok().as_deref())? {
        ProviderChoice::Composed => SelectedGateway::Composed(R::ComposedProvider::default()),
        ProviderChoice::Http => {
            let url = R::variable("payment_gateway_url").await?;
            SelectedGateway::Http(ProviderGateway(R::provider(url.trim_end_matches('/').to_string())))
        }
    })
}

/// The `payment` component: `/payments/...`, charging through the provider
/// `payment_provider` names.
pub async fn payment<R: Runtime>(request: ApiRequest) -> ApiResponse {
    let service = async { payment_service::<R>(config::payments::<R>().await?).await }.await;
    answer(service, async |service| service.handle(request).await).await
}

/// The `payment-worker` component: charges on `orders.payment_requested`,
/// refunds on `orders.cancelled`, through the same path as `POST /payments`.
pub async fn payment_worker<R: Runtime>(message: &[u8]) -> Result<(), String> {
    // The event first: some ask nothing of the worker (a cancellation
    // without a refund), and each
    // message gets a fresh instance, so those read no variable and open no
    // store.
    let work = match PaymentWork::of(message) {
        Ok(PaymentWork::Nothing(reason)) => return event_outcome(Ok(EventOutcome::Ignored(reason))),
        Ok(work) => work,
        Err(e) => return event_outcome(Err(e)),
    };
    let service = payment_service::<R>(PaymentsConfig::new(R::variable("admin_token").await?)).await?;
    event_outcome(service.perform(work).await)
}

/// The sandbox as the `sandbox-provider` component's `shop:payments/provider`
/// export runs it, on the store of the component it is composed into.
pub async fn sandbox_gateway<R: Runtime>() -> Result<ProviderGateway<InProcess<ShopKv<R>, R::Clock, R::Random>>, String> {
    let sandbox = Sandbox::new(R::open_kv().await?, R::Clock::default(), R::Random::default(), SandboxConfig::default());
    Ok(ProviderGateway(InProcess(sandbox)))
}

/// The `gateway-sandbox` component's HTTP side: the provider's test mode. `tok_slow`
/// answers after the caller's timeout: the sleep happens here, the plan
/// comes from shop-core.
pub async fn gateway_sandbox<R: Runtime>(request: ApiRequest) -> ApiResponse {
    let kv = match R::open_kv().await {
        Ok(kv) => kv,
        Err(e) => return unavailable(e),
    };
    let plan = Sandbox::new(kv, R::Clock::default(), R::Random::default(), SandboxConfig::default()).handle(request).await;
    if plan.delay_ms > 0 {
        R::Sleeper::default().sleep(plan.delay_ms).await;
    }
    plan.response
}

/// The `ops` component: `/health`, `/metrics`, `/info`.
pub async fn ops<R: Runtime>(request: ApiRequest) -> ApiResponse {
    match ops_answer::<R>(&request).await {
        Ok(response) => response,
        Err(e) => unavailable(e),
    }
}

async fn ops_answer<R: Runtime>(request: &ApiRequest) -> Result<ApiResponse, String> {
    let Some(endpoint) = OpsEndpoint::of(request) else {
        return Ok(shop_core::http::ApiError::not_found("route").into_response());
    };
    if let Err(r) = OpsEndpoint::check_method(request) {
        return Ok(r);
    }
    let redis_url = R::variable("redis_url").await?;
    Ok(match endpoint {
        OpsEndpoint::Health => ops::health_response(&health::<R>(&redis_url).await),
        OpsEndpoint::Info => ops::info_response(&ServiceInfo {
            name: "shop".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            environment: R::variable("environment").await?,
        }),
        OpsEndpoint::Metrics => {
            let token = R::variable("admin_token").await?;
            // Metrics read counters only; the order service's inventory port
            // is the local service rather than the import, so ops needs no
            // dependency.
            let kv = R::open_kv().await?;
            let orders = OrderService::new(
                kv,
                inventory_service::<R>(token.clone()).await?,
                RedisPublisher::<R>::new(redis_url),
                R::Clock::default(),
                R::Random::default(),
                OrdersConfig::new(token.clone()),
            );
            let inventory = inventory_service::<R>(token.clone()).await?;
            let payments = payment_service::<R>(PaymentsConfig::new(token)).await?;
            let error = |e: shop_core::kv::StoreError| e.message;
            let mut families = orders.metrics().await.map_err(error)?;
            families.extend(inventory.metrics().await.map_err(error)?);
            families.extend(payments.metrics().await.map_err(error)?);
            ops::metrics_response(&families)
        }
    })
}

async fn health<R: Runtime>(redis_url: &str) -> Vec<HealthCheck> {
    let key_value = match R::open_kv().await {
        Ok(kv) => kv.get("health:probe").await.map(drop).map_err(|e| e.message),
        Err(e) => Err(e),
    };
    let redis = R::redis_ping(redis_url).await;
    [("key_value", key_value), ("redis", redis)]
        .into_iter()
        .map(|(name, result)| HealthCheck { name: name.into(), ok: result.is_ok(), detail: result.err() })
        .collect()
}
