//! The `shop:payments/provider` interface in Rust, for both of its WIT
//! variants (`wit/payments`, async, WASIp3; `wit/p2/payments`, synchronous,
//! WASIp2), written once as macros like `inventory_wit`, and how a payment
//! component picks its provider.

use shop_core::payments::{Gateway, GatewayOutcome};

/// For the importing side (`payment`, `payment-worker`): expands to
/// `outcome_from_wit` over the bindings module `$wit`.
#[macro_export]
macro_rules! payments_import_conversions {
    ($wit:ident) => {
        fn outcome_from_wit(outcome: $wit::Outcome) -> $crate::__shop_core::payments::GatewayOutcome {
            use $crate::__shop_core::payments::GatewayOutcome;
            match outcome {
                $wit::Outcome::Approved(provider_ref) => GatewayOutcome::Approved { provider_ref },
                $wit::Outcome::Declined(reason) => GatewayOutcome::Declined { reason },
                $wit::Outcome::Unavailable(reason) => GatewayOutcome::Transient { reason },
                $wit::Outcome::NoAnswer(reason) => GatewayOutcome::NoAnswer { reason },
            }
        }
    };
}

/// For the exporting side (`sandbox-provider`): expands to async `charge` and
/// `refund`, each running the sandbox of runtime `$runtime` in process
/// ([`shop_core::sandbox::InProcess`]) and answering in the types of the
/// bindings module `$wit`. The component's `Guest` impl awaits them (WASIp3)
/// or runs them to completion (WASIp2).
#[macro_export]
macro_rules! payments_export_calls {
    ($wit:ident, $runtime:ty) => {
        fn outcome_to_wit(outcome: $crate::__shop_core::payments::GatewayOutcome) -> $wit::Outcome {
            use $crate::__shop_core::payments::GatewayOutcome;
            match outcome {
                GatewayOutcome::Approved { provider_ref } => $wit::Outcome::Approved(provider_ref),
                GatewayOutcome::Declined { reason } => $wit::Outcome::Declined(reason),
                GatewayOutcome::Transient { reason } => $wit::Outcome::Unavailable(reason),
                GatewayOutcome::NoAnswer { reason } => $wit::Outcome::NoAnswer(reason),
            }
        }

        async fn charge(idempotency_key: String, amount: i64, currency: String, token: String) -> $wit::Outcome {
            use $crate::__shop_core::payments::Gateway;
            let outcome = match $crate::services::sandbox_gateway::<$runtime>().await {
                Ok(gateway) => gateway.charge(&idempotency_key, amount, &currency, &token).await,
                Err(e) => $crate::__shop_core::payments::GatewayOutcome::Transient { reason: e },
            };
            outcome_to_wit(outcome)
        }

        async fn refund(idempotency_key: String, charge_id: String) -> $wit::Outcome {
            use $crate::__shop_core::payments::Gateway;
            // The provider refunds in full; amount and currency are not read.
            let outcome = match $crate::services::sandbox_gateway::<$runtime>().await {
                Ok(gateway) => gateway.refund(&idempotency_key, &charge_id, 0, "").await,
                Err(e) => $crate::__shop_core::payments::GatewayOutcome::Transient { reason: e },
            };
            outcome_to_wit(outcome)
        }
    };
}

/// Which provider a payment component charges through, from the
/// `payment_provider` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChoice {
    /// `"sandbox"` (the default): the `shop:payments/provider` import, which
    /// the manifests fill with the `sandbox-provider` component. Needs no
    /// network, so it works wherever the component runs.
    Composed,
    /// `"http"`: the provider at `payment_gateway_url`, over outbound HTTP.
    Http,
}

/// The choice `payment_provider` names (`None`: the variable is not
/// defined, so the default).
pub fn provider_choice(value: Option<&str>) -> Result<ProviderChoice, String> {
    match value.map(str::trim) {
        None | Some("sandbox") => Ok(ProviderChoice::Composed),
        Some("http") => Ok(ProviderChoice::Http),
        Some(other) => Err(format!("variable `payment_provider`: expected \"sandbox\" or \"http\", got {other:?}")),
    }
}

/// One of two gateways, as chosen at run time.
pub enum SelectedGateway<A, B> {
    Composed(A),
    Http(B),
}

impl<A: Gateway, B: Gateway> Gateway for SelectedGateway<A, B> {
    async fn charge(&self, idempotency_key: &str, amount: i64, currency: &str, token: &str) -> GatewayOutcome {
        match self {
            SelectedGateway::Composed(gateway) => gateway.charge(idempotency_key, amount, currency, token).await,
            SelectedGateway::Http(gateway) => gateway.charge(idempotency_key, amount, currency, token).await,
        }
    }

    async fn refund(&self, idempotency_key: &str, provider_ref: &str, amount: i64, currency: &str) -> GatewayOutcome {
        match self {
            SelectedGateway::Composed(gateway) => gateway.refund(idempotency_key, provider_ref, amount, currency).await,
            SelectedGateway::Http(gateway) => gateway.refund(idempotency_key, provider_ref, amount, currency).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ProviderChoice, provider_choice};

    #[test]
    fn the_sandbox_is_the_default_and_anything_unknown_names_the_variable() {
        assert_eq!(provider_choice(None), Ok(ProviderChoice::Composed));
        assert_eq!(provider_choice(Some(" sandbox")), Ok(ProviderChoice::Composed));
        assert_eq!(provider_choice(Some("http")), Ok(ProviderChoice::Http));
        assert_eq!(provider_choice(Some("stripe")), Err("variable `payment_provider`: expected \"sandbox\" or \"http\", got \"stripe\"".to_string()));
    }
}
