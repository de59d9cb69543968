//! A test-mode payment provider served at `/sandbox/...`, so that the
//! payment service can be exercised end to end without a real provider.
//!
//! Tokens decide the outcome of `POST /sandbox/charges`:
//! - `tok_approve`: 201 approved;
//! - `tok_decline`: 402 `card_declined`;
//! - `tok_transient`: 503 on the first two attempts of an idempotency key, then approved;
//! - `tok_slow`: approved, but the plan asks the component to wait
//!   [`SandboxConfig::slow_delay_ms`] before answering (longer than any
//!   caller's timeout); the component does the sleeping.
//!
//! A repeated idempotency key returns the charge made first (never a second
//! charge); with another amount, currency or token it is refused (422).
//! `POST /sandbox/refunds {charge_id}` refunds a charge once (201, then 200
//! with the same refund). `GET /sandbox/charges?idempotency_key=` and
//! `GET /sandbox/stats[?idempotency_key=]` let tests check what happened.
//!
//! Components that charge reach it either over HTTP or, composed into them,
//! through [`InProcess`] (the `shop:payments/provider` export).
//!
//! Key layout: `sandbox:charge:{idempotency key}` (the charge),
//! `sandbox:charge_key:{charge_id}` (its idempotency key),
//! `sandbox:attempts:{idempotency key}` and
//! `sandbox:stats:{charges|declines|refunds|attempts}` (counters).

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{ApiError, ApiRequest, ApiResponse, Method, Query, allow};
use crate::json::{Fields, parse_body};
use crate::kv::{Change, Kv, StoreError, create_json, get_json, read_counter, set_json, update_json};
use crate::payments::{GatewayOutcome, ProviderTransport, outcome_from_response};
use crate::ports::{Clock, Random, random_id};
use crate::time::rfc3339;

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// How long `tok_slow` answers take.
    pub slow_delay_ms: u64,
}

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig { slow_delay_ms: 30_000 }
    }
}

/// What the component should do: wait `delay_ms`, then send `response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPlan {
    pub delay_ms: u64,
    pub response: ApiResponse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChargeStatus {
    Approved,
    Declined,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Charge {
    charge_id: String,
    idempotency_key: String,
    amount: i64,
    currency: String,
    token: String,
    status: ChargeStatus,
    refunded: bool,
    created_at: String,
}

const STATS: [&str; 4] = ["charges", "declines", "refunds", "attempts"];

fn charge_key(idempotency_key: &str) -> String {
    format!("sandbox:charge:{idempotency_key}")
}

fn charge_id_key(charge_id: &str) -> String {
    format!("sandbox:charge_key:{charge_id}")
}

fn attempts_key(idempotency_key: &str) -> String {
    format!("sandbox:attempts:{idempotency_key}")
}

fn stat_key(name: &str) -> String {
    format!("sandbox:stats:{name}")
}

/// The sandbox provider over a store, clock and random source.
#[derive(Clone)]
pub struct Sandbox<K, C, R> {
    kv: K,
    clock: C,
    random: R,
    config: SandboxConfig,
}

impl<K: Kv, C: Clock, R: Random> Sandbox<K, C, R> {
    pub fn new(kv: K, clock: C, random: R, config: SandboxConfig) -> Self {
        Sandbox { kv, clock, random, config }
    }

    /// Serves `/sandbox/...`.
    pub async fn handle(&self, request: ApiRequest) -> SandboxPlan {
        match self.route(&request).await {
            Ok(plan) => plan,
            Err(error) => SandboxPlan { delay_ms: 0, response: error.into_response() },
        }
    }

    /// One call of the provider's API (`POST /sandbox/charges` or
    /// `/sandbox/refunds`) made in process: the answer as a caller over HTTP
    /// would read it, and how long the sandbox waits before giving it.
    pub async fn call(&self, path: &str, idempotency_key: &str, body: serde_json::Value) -> (u64, GatewayOutcome) {
        let request = ApiRequest::new(Method::Post, path).with_header("idempotency-key", idempotency_key).with_body(body.to_string());
        let plan = self.handle(request).await;
        (plan.delay_ms, outcome_from_response(plan.response.status, &plan.response.body))
    }

    async fn route(&self, request: &ApiRequest) -> Result<SandboxPlan, ApiError> {
        request.check_body_size()?;
        let immediate = |response| Ok(SandboxPlan { delay_ms: 0, response });
        match request.segments().as_slice() {
            ["sandbox", "charges"] => match allow(request, &[(Method::Post, "POST"), (Method::Get, "GET")])? {
                Method::Post => self.charge(request).await,
                _ => immediate(self.find_charge(request).await?),
            },
            ["sandbox", "refunds"] => {
                allow(request, &[(Method::Post, "POST")])?;
                immediate(self.refund(request).await?)
            }
            ["sandbox", "stats"] => {
                allow(request, &[(Method::Get, "GET")])?;
                immediate(self.stats(request).await?)
            }
            _ => Err(ApiError::no_route(&request.path)),
        }
    }

    async fn charge(&self, request: &ApiRequest) -> Result<SandboxPlan, ApiError> {
        let Some(key) = request.header("idempotency-key").filter(|key| !key.is_empty()) else {
            return Err(ApiError::validation("Idempotency-Key", "the Idempotency-Key header is required"));
        };
        let body = parse_body(&request.body)?;
        let fields = Fields::of_body(&body, &["amount", "currency", "token"])?;
        let amount = fields.integer("amount", 1, i64::MAX)?;
        let currency = fields.currency("currency")?;
        let token = fields.text("token", 1, 64)?;
        if !["tok_approve", "tok_decline", "tok_transient", "tok_slow"].contains(&token) {
            return Err(ApiError::validation("token", "unknown sandbox token"));
        }

        let attempt = self.kv.increment(&attempts_key(key), 1).await?;
        self.kv.increment(&stat_key("attempts"), 1).await?;
        let delay_ms = if token == "tok_slow" { self.config.slow_delay_ms } else { 0 };
        if let Some(existing) = get_json::<Charge>(&self.kv, &charge_key(key)).await? {
            if (existing.amount, existing.currency.as_str(), existing.token.as_str()) != (amount, currency, token) {
                return Err(ApiError::new(422, "idempotency_key_reused", "the Idempotency-Key was used for another charge"));
            }
            return Ok(SandboxPlan { delay_ms, response: charge_response(&existing) });
        }
        if token == "tok_transient" && attempt <= 2 {
            let error = ApiError::new(503, "provider_unavailable", format!("transient failure on attempt {attempt}"));
            return Ok(SandboxPlan { delay_ms: 0, response: error.into_response() });
        }
        let status = if token == "tok_decline" { ChargeStatus::Declined } else { ChargeStatus::Approved };
        let charge = Charge {
            charge_id: random_id(&self.random, "ch_"),
            idempotency_key: key.to_string(),
            amount,
            currency: currency.to_string(),
            token: token.to_string(),
            status,
            refunded: false,
            created_at: rfc3339(self.clock.now_ms()),
        };
        set_json(&self.kv, &charge_id_key(&charge.charge_id), &key).await?;
        let charge = if create_json(&self.kv, &charge_key(key), &charge).await? {
            let stat = if status == ChargeStatus::Approved { "charges" } else { "declines" };
            self.kv.increment(&stat_key(stat), 1).await?;
            charge
        } else {
            // A concurrent attempt with the same key made the charge first.
            get_json(&self.kv, &charge_key(key)).await?.ok_or_else(|| StoreError::new("charge vanished"))?
        };
        Ok(SandboxPlan { delay_ms, response: charge_response(&charge) })
    }

    async fn find_charge(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let query = Query::parse(request, &["idempotency_key"])?;
        let key = query
            .text("idempotency_key")
            .ok_or_else(|| ApiError::validation("idempotency_key", "idempotency_key is required"))?;
        let charge: Charge = get_json(&self.kv, &charge_key(key)).await?.ok_or_else(|| ApiError::not_found("charge"))?;
        Ok(ApiResponse::json(200, &charge))
    }

    async fn refund(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let body = parse_body(&request.body)?;
        let fields = Fields::of_body(&body, &["charge_id"])?;
        let charge_id = fields.text("charge_id", 1, 64)?;
        let key: String =
            get_json(&self.kv, &charge_id_key(charge_id)).await?.ok_or_else(|| ApiError::not_found("charge"))?;
        let (charge, newly_refunded) = update_json(&self.kv, &charge_key(&key), |current: Option<Charge>| {
            let Some(mut charge) = current else {
                return Err(ApiError::not_found("charge"));
            };
            if charge.status == ChargeStatus::Declined {
                return Err(ApiError::new(409, "charge_not_refundable", "a declined charge cannot be refunded"));
            }
            if charge.refunded {
                return Ok(Change::Keep((charge, false)));
            }
            charge.refunded = true;
            Ok(Change::Write(charge.clone(), (charge, true)))
        })
        .await?;
        if newly_refunded {
            self.kv.increment(&stat_key("refunds"), 1).await?;
        }
        let body = json!({
            "refund_id": format!("rf_{}", charge.charge_id),
            "charge_id": charge.charge_id,
            "amount": charge.amount,
            "currency": charge.currency,
            "status": "refunded",
        });
        Ok(ApiResponse::json(if newly_refunded { 201 } else { 200 }, &body))
    }

    async fn stats(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let query = Query::parse(request, &["idempotency_key"])?;
        let mut body = json!({});
        for name in STATS {
            body[name] = json!(read_counter(&self.kv, &stat_key(name)).await?);
        }
        if let Some(key) = query.text("idempotency_key") {
            let attempts = read_counter(&self.kv, &attempts_key(key)).await?;
            let charge: Option<Charge> = get_json(&self.kv, &charge_key(key)).await?;
            body["key"] = json!({"idempotency_key": key, "attempts": attempts, "charge": charge});
        }
        Ok(ApiResponse::json(200, &body))
    }
}

/// The sandbox inside the caller's own process, as the `sandbox-provider`
/// component's `shop:payments/provider` export runs it for the components it
/// is composed into. An answer the sandbox would delay (`tok_slow`) comes at
/// once as [`GatewayOutcome::NoAnswer`], which is what a caller with a
/// timeout sees of a slow provider; the charge is made all the same, as a
/// slow provider would make it. No caller is held for the delay.
pub struct InProcess<K, C, R>(pub Sandbox<K, C, R>);

impl<K: Kv, C: Clock, R: Random> ProviderTransport for InProcess<K, C, R> {
    async fn post(&self, path: &str, idempotency_key: &str, body: serde_json::Value) -> GatewayOutcome {
        match self.0.call(path, idempotency_key, body).await {
            (0, outcome) => outcome,
            (delay_ms, _) => GatewayOutcome::NoAnswer { reason: format!("the sandbox answers after {delay_ms} ms (tok_slow)") },
        }
    }
}

fn charge_response(charge: &Charge) -> ApiResponse {
    match charge.status {
        ChargeStatus::Approved => ApiResponse::json(201, charge),
        ChargeStatus::Declined => {
            let mut body = ApiError::new(402, "card_declined", "the card was declined").body();
            body["charge"] = json!(charge);
            ApiResponse::json(402, &body)
        }
    }
}
