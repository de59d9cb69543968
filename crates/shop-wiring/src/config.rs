//! Service configuration from the component's variables (spin.toml and
//! spin.p2.toml give both builds the same variables).

use crate::Runtime;
use shop_core::auth::CustomerAuth;
use shop_core::orders::OrdersConfig;
use shop_core::payments::PaymentsConfig;

/// An optional variable of whole seconds, in milliseconds (None when the
/// manifest does not define it).
pub async fn milliseconds_variable<R: Runtime>(name: &str) -> Result<Option<u64>, String> {
    let Ok(text) = R::variable(name).await else { return Ok(None) };
    parse_seconds(name, &text).map(Some)
}

fn parse_seconds(name: &str, text: &str) -> Result<u64, String> {
    let seconds: u64 = text.trim().parse().map_err(|_| format!("variable `{name}`: expected whole seconds, got {text:?}"))?;
    Ok(seconds.saturating_mul(1000))
}

/// The order service's configuration for the `order` component (HTTP).
pub async fn orders<R: Runtime>() -> Result<OrdersConfig, String> {
    let mut config = OrdersConfig::new(R::variable("admin_token").await?);
    config.customer_auth = customer_auth::<R>().await?;
    // `reconcile_after_seconds` (default 300, OrdersConfig's own): how long
    // an open order must be untouched before the reconcile drives it on.
    // Optional, so manifests that do not define it keep the default.
    if let Some(ms) = milliseconds_variable::<R>("reconcile_after_seconds").await? {
        config.stuck_after_ms = ms;
    }
    // `payment_timeout_seconds` (default 900): how long an order without a
    // payment token waits for `POST /payments` before the reconcile cancels it.
    if let Some(ms) = milliseconds_variable::<R>("payment_timeout_seconds").await? {
        config.payment_timeout_ms = ms;
    }
    // `idempotency_ttl_seconds` (default 86400): life of idempotency records
    // and processed-event markers; the reconcile deletes expired ones.
    if let Some(ms) = milliseconds_variable::<R>("idempotency_ttl_seconds").await? {
        config.idempotency_ttl_ms = ms;
    }
    Ok(config)
}

/// The payment service's configuration for the `payment` component (HTTP).
pub async fn payments<R: Runtime>() -> Result<PaymentsConfig, String> {
    let mut config = PaymentsConfig::new(R::variable("admin_token").await?);
    config.customer_auth = customer_auth::<R>().await?;
    if let Some(ms) = milliseconds_variable::<R>("idempotency_ttl_seconds").await? {
        config.idempotency_ttl_ms = ms;
    }
    Ok(config)
}

/// Customer authentication from `customer_auth` ("jwt", the default, or
/// "none"), `jwt_verification_key` and `jwt_audience`. "none" is a switch for
/// the sandbox and the README walkthrough: honoured only when `environment`
/// is "development", and logged on every request; any other environment
/// refuses to serve with it.
pub async fn customer_auth<R: Runtime>() -> Result<CustomerAuth, String> {
    let mode = R::variable("customer_auth").await.unwrap_or_else(|_| "jwt".to_string());
    match mode.trim() {
        "none" => {
            let environment = R::variable("environment").await.unwrap_or_default();
            if environment.trim() != "development" {
                return Err(format!("customer_auth = \"none\" is refused in environment {environment:?}: it is for development only"));
            }
            eprintln!("customer authentication is OFF (customer_auth = \"none\", environment = development): requests name their user");
            Ok(CustomerAuth::Off)
        }
        "jwt" => {
            let key = R::variable("jwt_verification_key").await.unwrap_or_default();
            let audience = R::variable("jwt_audience").await.unwrap_or_else(|_| "shop".to_string());
            CustomerAuth::from_key(&key, &audience)
        }
        other => Err(format!("variable `customer_auth`: expected \"jwt\" or \"none\", got {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn seconds_become_milliseconds_and_anything_else_names_the_variable() {
        assert_eq!(parse_seconds("ttl", " 90 "), Ok(90_000));
        assert_eq!(parse_seconds("ttl", "1.5"), Err("variable `ttl`: expected whole seconds, got \"1.5\"".to_string()));
    }
}
