//! Payments: retries, idempotency, refunds and the payment worker, against
//! a scripted provider and end to end against the sandbox.

use serde_json::{Value, json};
use shop_core::auth::CustomerAuth;
use shop_core::events::{
    Event, EventError, EventOutcome, ORDERS_CANCELLED, ORDERS_CREATED, ORDERS_PAYMENT_REQUESTED, PAYMENTS_COMPLETED,
    PAYMENTS_FAILED, PAYMENTS_REFUNDED,
};
use shop_core::http::{ApiRequest, ApiResponse, Method};
use shop_core::orders::OrdersConfig;
use shop_core::payments::{Gateway, PaymentService, PaymentWork, PaymentsConfig, ProviderGateway, RetryPolicy, hold_token};
use shop_core::sandbox::{Sandbox, SandboxConfig};
use shop_core::testing::{
    FixedClock, GatewayStep, MemoryKv, RecordingPublisher, RecordingSleeper, SandboxGateway, ScriptedGateway, SeededRandom,
    seed_order,
};

use crate::{ADMIN_TOKEN, START_MS, Shop, as_admin, error_code, request, run};

type Payments<G> = PaymentService<MemoryKv, G, RecordingPublisher, FixedClock, SeededRandom, RecordingSleeper>;

struct Rig<G> {
    payments: Payments<G>,
    publisher: RecordingPublisher,
    sleeper: RecordingSleeper,
}

/// Orders the tests charge: `ord_pay` for `POST /payments`, `ord_1` and
/// `ord_2` for the worker's `orders.payment_requested`.
/// Callers are not authenticated (`customer_auth = "none"`) unless a test
/// uses [`rig_authenticating`].
async fn rig_on<G: Gateway>(kv: MemoryKv, gateway: G) -> Rig<G> {
    rig_with_auth(kv, gateway, CustomerAuth::Off).await
}

/// A rig whose `POST /payments` and `GET /payments/{id}` take customer
/// tokens of [`crate::auth::SECRET`].
async fn rig_authenticating(gateway: ScriptedGateway) -> Rig<ScriptedGateway> {
    rig_with_auth(MemoryKv::new(), gateway, CustomerAuth::from_key(crate::auth::SECRET, "shop").unwrap()).await
}

async fn rig_with_auth<G: Gateway>(kv: MemoryKv, gateway: G, customer_auth: CustomerAuth) -> Rig<G> {
    seed_order(&kv, "ord_pay", 1500, "EUR").await;
    for order_id in ["ord_1", "ord_2"] {
        seed_order(&kv, order_id, 2500, "EUR").await;
    }
    hold_token(&kv, "ord_1", "tok_a").await.unwrap();
    let publisher = RecordingPublisher::new();
    let sleeper = RecordingSleeper::new();
    let clock = FixedClock::at(START_MS);
    let config = PaymentsConfig {
        retry: RetryPolicy { max_attempts: 3, first_backoff_ms: 100, backoff_factor: 2, attempt_timeout_ms: 2000 },
        customer_auth,
        ..PaymentsConfig::new(ADMIN_TOKEN)
    };
    let payments = PaymentService::new(kv, gateway, publisher.clone(), clock, SeededRandom::new(9), sleeper.clone(), config);
    Rig { payments, publisher, sleeper }
}

async fn rig(steps: impl IntoIterator<Item = GatewayStep>, then: GatewayStep) -> (Rig<ScriptedGateway>, ScriptedGateway) {
    let gateway = ScriptedGateway::new(steps, then);
    (rig_on(MemoryKv::new(), gateway.clone()).await, gateway)
}

fn charge_request(key: Option<&str>, amount: i64) -> ApiRequest {
    let body = json!({"order_id": "ord_pay", "amount": amount, "currency": "EUR", "payment_token": "tok_x"});
    let request = request(Method::Post, "/payments", Some(body));
    match key {
        Some(key) => request.with_header("Idempotency-Key", key),
        None => request,
    }
}

#[test]
fn a_customer_pays_and_reads_payments_of_its_own_orders_only() {
    run(async {
        let rig = rig_authenticating(ScriptedGateway::new([], GatewayStep::Approve)).await;
        let as_user = |request: ApiRequest, user_id: u64| request.with_header("authorization", &format!("Bearer {}", crate::auth::customer(user_id)));
        // `ord_pay` belongs to user 1.
        let anonymous = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!(anonymous.status, 401, "{}", anonymous.json_body());
        let stranger = rig.payments.handle(as_user(charge_request(Some("k"), 1500), 2)).await;
        assert_eq!((stranger.status, error_code(&stranger)), (422, "unknown_order".to_string()), "another's order is as unknown as a missing one");
        let owner = rig.payments.handle(as_user(charge_request(Some("k"), 1500), 1)).await;
        assert_eq!(owner.status, 201, "{}", owner.json_body());
        let path = format!("/payments/{}", owner.json_body()["payment_id"].as_str().unwrap());
        assert_eq!(rig.payments.handle(as_user(request(Method::Get, &path, None), 1)).await.status, 200);
        assert_eq!(rig.payments.handle(as_user(request(Method::Get, &path, None), 2)).await.status, 404);
        assert_eq!(rig.payments.handle(request(Method::Get, &path, None)).await.status, 401);
        assert_eq!(rig.payments.handle(as_admin(request(Method::Get, &path, None))).await.status, 200);
        // The stranger's key is its own: the same key from user 1 was not
        // answered with the stranger's refusal, nor is the stranger now
        // answered with user 1's payment.
        let stranger_again = rig.payments.handle(as_user(charge_request(Some("k"), 1500), 2)).await;
        assert_eq!((stranger_again.status, error_code(&stranger_again)), (422, "unknown_order".to_string()));
    });
}

fn payment_of(response: &ApiResponse) -> Value {
    let body = response.json_body();
    if body.get("payment").is_some() { body["payment"].clone() } else { body }
}

#[test]
fn transient_failures_are_retried_with_backoff_until_approved() {
    run(async {
        let (rig, gateway) = rig([GatewayStep::Transient, GatewayStep::Transient], GatewayStep::Approve).await;
        let response = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!(response.status, 201, "{}", response.json_body());
        let payment = response.json_body();
        assert_eq!((payment["status"].as_str(), payment["attempts"].as_u64()), (Some("completed"), Some(3)));
        let calls = gateway.calls();
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(|call| call.idempotency_key == payment["payment_id"]), "one provider key per payment");
        assert_eq!(rig.sleeper.requested_ms(), [100, 200]);
        let completed = rig.publisher.events_on(PAYMENTS_COMPLETED);
        assert_eq!(completed.len(), 1);
        assert_eq!(completed[0].data["provider_ref"], format!("ref_{}", payment["payment_id"].as_str().unwrap()));
    });
}

#[test]
fn a_decline_is_never_retried() {
    run(async {
        let (rig, gateway) = rig([GatewayStep::Decline("insufficient funds".into())], GatewayStep::Approve).await;
        let response = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!((response.status, error_code(&response).as_str()), (402, "payment_declined"));
        let payment = payment_of(&response);
        assert_eq!((payment["status"].as_str(), payment["failure_reason"].as_str()), (Some("failed"), Some("insufficient funds")));
        assert_eq!(gateway.calls().len(), 1);
        assert!(rig.sleeper.requested_ms().is_empty());
        assert_eq!(rig.publisher.events_on(PAYMENTS_FAILED)[0].data["reason"], "insufficient funds");
        // The same key answers the same, without calling the provider.
        let again = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!((again.status, &again.body), (402, &response.body));
        assert_eq!(gateway.calls().len(), 1);
    });
}

#[test]
fn three_transient_attempts_give_up_with_502_and_a_retry_resumes_the_same_payment() {
    run(async {
        let (rig, gateway) = rig(vec![GatewayStep::Transient; 3], GatewayStep::Approve).await;
        let response = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!((response.status, error_code(&response).as_str()), (502, "gateway_unavailable"));
        let pending = payment_of(&response);
        assert_eq!((pending["status"].as_str(), pending["attempts"].as_u64()), (Some("pending"), Some(3)));
        assert_eq!(gateway.calls().len(), 3);
        assert!(rig.publisher.events_on(PAYMENTS_COMPLETED).is_empty() && rig.publisher.events_on(PAYMENTS_FAILED).is_empty());

        let retried = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!(retried.status, 201);
        let payment = retried.json_body();
        assert_eq!((payment["payment_id"].clone(), payment["attempts"].as_u64()), (pending["payment_id"].clone(), Some(4)));
        assert!(gateway.calls().iter().all(|call| call.idempotency_key == payment["payment_id"]));
    });
}

#[test]
fn attempts_without_an_answer_time_out_and_end_with_504() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Hang).await;
        let response = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!((response.status, error_code(&response).as_str()), (504, "gateway_timeout"));
        assert_eq!(gateway.calls().len(), 3);
        assert_eq!(rig.sleeper.requested_ms(), [2000, 100, 2000, 200, 2000], "timeouts and backoffs");
    });
}

#[test]
fn payment_requests_need_a_key_and_may_not_reuse_one() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Approve).await;
        let missing = rig.payments.handle(charge_request(None, 1500)).await;
        assert_eq!((missing.status, crate::error_field(&missing).as_deref()), (400, Some("Idempotency-Key")));
        let first = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!(first.status, 201);
        let same = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!(same.body, first.body);
        let other = rig.payments.handle(charge_request(Some("k"), 1600)).await;
        assert_eq!((other.status, error_code(&other).as_str()), (422, "idempotency_key_reused"));
        assert_eq!(gateway.calls().len(), 1);
        for amount in [0, -5] {
            assert_eq!(rig.payments.handle(charge_request(Some("z"), amount)).await.status, 400);
        }
        let id = first.json_body()["payment_id"].as_str().unwrap().to_string();
        assert_eq!(rig.payments.handle(request(Method::Get, &format!("/payments/{id}"), None)).await.body, first.body);
        assert_eq!(rig.payments.handle(request(Method::Get, "/payments/pay_none", None)).await.status, 404);
    });
}

#[test]
fn concurrent_requests_with_one_key_charge_once() {
    run(async {
        let gateway = ScriptedGateway::approving();
        let rig = rig_on(MemoryKv::interleaving(21), gateway.clone()).await;
        let responses = futures::future::join_all((0..6).map(|_| rig.payments.handle(charge_request(Some("k"), 1500)))).await;
        assert_eq!(responses.iter().filter(|response| response.status == 201).count(), 1);
        assert!(responses.iter().all(|response| response.status == 201 || error_code(response) == "payment_in_progress"));
        assert_eq!(gateway.calls().len(), 1);
    });
}

fn refund_request(payment_id: &str) -> ApiRequest {
    as_admin(request(Method::Post, &format!("/payments/{payment_id}/refund"), None))
}

#[test]
fn a_completed_payment_is_refunded_once_by_an_admin() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Approve).await;
        let payment = rig.payments.handle(charge_request(Some("k"), 1500)).await.json_body();
        let id = payment["payment_id"].as_str().unwrap();
        let unauthenticated = rig.payments.handle(request(Method::Post, &format!("/payments/{id}/refund"), None)).await;
        assert_eq!(unauthenticated.status, 401);
        for _ in 0..2 {
            let refunded = rig.payments.handle(refund_request(id)).await;
            assert_eq!((refunded.status, refunded.json_body()["status"].as_str()), (200, Some("refunded")));
        }
        let refunds: Vec<_> = gateway.calls().into_iter().filter(|call| call.operation == "refund").collect();
        assert_eq!(refunds.len(), 1);
        assert_eq!(refunds[0].idempotency_key, format!("refund_{id}"));
    });
}

#[test]
fn failed_payments_cannot_be_refunded() {
    run(async {
        let (rig, _) = rig([GatewayStep::Decline("no".into())], GatewayStep::Approve).await;
        let id = payment_of(&rig.payments.handle(charge_request(Some("k"), 1500)).await)["payment_id"].as_str().unwrap().to_string();
        let refused = rig.payments.handle(refund_request(&id)).await;
        assert_eq!((refused.status, error_code(&refused).as_str()), (409, "payment_not_refundable"));
        assert_eq!(rig.payments.handle(refund_request("pay_none")).await.status, 404);
    });
}

/// `orders.payment_requested` of an order that left a token for the worker (`tok_a` for `ord_1`, see `rig_on`).
fn payment_requested(event_id: &str, order_id: &str) -> Vec<u8> {
    let data = json!({"order_id": order_id, "total_amount": 2500, "currency": "EUR"});
    Event::new(event_id.to_string(), ORDERS_PAYMENT_REQUESTED, String::new(), "orders", &data).to_bytes()
}

fn order_cancelled(event_id: &str, payment_id: Option<&str>, refund_required: bool) -> Vec<u8> {
    let data = json!({"order_id": "ord_1", "reason": null, "refund_required": refund_required, "payment_id": payment_id, "total_amount": 2500, "currency": "EUR"});
    Event::new(event_id.to_string(), ORDERS_CANCELLED, String::new(), "orders", &data).to_bytes()
}

#[test]
fn the_worker_charges_each_order_once_however_often_the_event_comes() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Approve).await;
        assert_eq!(rig.payments.handle_event(&payment_requested("e1", "ord_1")).await, Ok(EventOutcome::Applied));
        // The same event again, and a re-sent one under a new event id.
        assert_eq!(rig.payments.handle_event(&payment_requested("e1", "ord_1")).await, Ok(EventOutcome::Duplicate));
        assert_eq!(rig.payments.handle_event(&payment_requested("e2", "ord_1")).await, Ok(EventOutcome::Duplicate));
        assert_eq!(gateway.calls().len(), 1);
        assert_eq!(gateway.calls()[0].amount, 2500);
        // The outcome is published again each time, for a consumer that missed it.
        let completed = rig.publisher.events_on(PAYMENTS_COMPLETED);
        assert_eq!(completed.len(), 3);
        assert!(completed.iter().all(|event| event.event_id == completed[0].event_id));
        assert_eq!(completed[0].data["order_id"], "ord_1");

        // An order that left no token (or whose token is gone) is not charged.
        assert_eq!(rig.payments.handle_event(&payment_requested("e3", "ord_2")).await, Ok(EventOutcome::Duplicate));
        assert_eq!(gateway.calls().len(), 1);
    });
}

#[test]
fn the_worker_refunds_a_cancelled_order_once() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Approve).await;
        rig.payments.handle_event(&payment_requested("e1", "ord_1")).await.unwrap();
        let payment_id = rig.publisher.events_on(PAYMENTS_COMPLETED)[0].data["payment_id"].as_str().unwrap().to_string();
        let no_refund = rig.payments.handle_event(&order_cancelled("c0", None, false)).await;
        assert!(matches!(no_refund, Ok(EventOutcome::Ignored(_))));
        assert_eq!(rig.payments.handle_event(&order_cancelled("c1", Some(&payment_id), true)).await, Ok(EventOutcome::Applied));
        assert_eq!(rig.payments.handle_event(&order_cancelled("c1", Some(&payment_id), true)).await, Ok(EventOutcome::Duplicate));
        assert_eq!(gateway.calls().iter().filter(|call| call.operation == "refund").count(), 1);
        // Told once per refund attempt, under one event id, for an order side that missed it.
        let refunded = rig.publisher.events_on(PAYMENTS_REFUNDED);
        assert_eq!(refunded.len(), 2);
        assert!(refunded.iter().all(|event| event.event_id == format!("evt_{payment_id}_refunded")));
        assert_eq!(refunded[0].data, json!({"payment_id": payment_id, "order_id": "ord_1", "amount": 2500, "currency": "EUR"}));
        let unnamed = rig.payments.handle_event(&order_cancelled("c2", None, true)).await;
        assert!(matches!(unnamed, Err(EventError::Rejected(_))));
    });
}

#[test]
fn what_an_event_asks_of_the_worker_is_read_from_the_event_alone() {
    // No service, no store: the payment component reads these before it
    // opens anything (shop_wiring::services::payment_worker).
    assert!(matches!(PaymentWork::of(&payment_requested("e1", "ord_1")), Ok(PaymentWork::Charge(order)) if order.order_id == "ord_1"));
    // The worker is no subscriber of `orders.created`: that is for outside listeners.
    let created = Event::new("e0".into(), ORDERS_CREATED, String::new(), "orders", &json!({"order_id": "ord_1"}));
    assert_eq!(PaymentWork::of(&created.to_bytes()), Err(EventError::UnknownType(ORDERS_CREATED.to_string())));
    assert!(matches!(PaymentWork::of(&order_cancelled("c0", Some("pay_1"), false)), Ok(PaymentWork::Nothing(_))));
    assert_eq!(PaymentWork::of(&order_cancelled("c1", Some("pay_1"), true)), Ok(PaymentWork::Refund("pay_1".to_string())));
    assert!(matches!(PaymentWork::of(&order_cancelled("c2", None, true)), Err(EventError::Rejected(_))));
    assert!(matches!(PaymentWork::of(b"{}"), Err(EventError::Malformed(_))));
}

#[test]
fn the_worker_reports_garbage_and_unavailable_providers_as_errors() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Transient).await;
        assert!(matches!(rig.payments.handle_event(b"{}").await, Err(EventError::Malformed(_))));
        let wrong = Event::new("x".into(), ORDERS_PAYMENT_REQUESTED, String::new(), "orders", &json!({"order_id": 5}));
        assert!(matches!(rig.payments.handle_event(&wrong.to_bytes()).await, Err(EventError::Malformed(_))));
        let other = Event::new("y".into(), PAYMENTS_COMPLETED, String::new(), "payments", &json!({}));
        assert!(matches!(rig.payments.handle_event(&other.to_bytes()).await, Err(EventError::UnknownType(_))));
        assert!(gateway.calls().is_empty());
        let down = rig.payments.handle_event(&payment_requested("e1", "ord_1")).await;
        assert!(matches!(down, Err(EventError::Unavailable(_))), "{down:?}");
        assert_eq!(gateway.calls().len(), 3);
    });
}

/// Orders, the payment worker and the sandbox provider on one store.
struct EndToEnd {
    shop: Shop,
    payments: Payments<ProviderGateway<SandboxGateway<MemoryKv, FixedClock, SeededRandom>>>,
    payments_publisher: RecordingPublisher,
    sandbox: Sandbox<MemoryKv, FixedClock, SeededRandom>,
}

impl EndToEnd {
    async fn new() -> EndToEnd {
        EndToEnd::with(crate::orders_config()).await
    }

    async fn with(config: OrdersConfig) -> EndToEnd {
        let shop = Shop::on(MemoryKv::new(), config);
        assert_eq!(shop.put_product("p1", 1250, "EUR", 10).await.status, 201);
        let sandbox = Sandbox::new(shop.kv.clone(), shop.clock.clone(), SeededRandom::new(12), SandboxConfig::default());
        let rig = rig_on(shop.kv.clone(), ProviderGateway(SandboxGateway { sandbox: sandbox.clone() })).await;
        EndToEnd { shop, payments: rig.payments, payments_publisher: rig.publisher, sandbox }
    }

    /// An order of 2 × p1 (2500 EUR) waiting for `POST /payments`.
    async fn order_without_token(&self) -> String {
        self.shop.place_ok(json!({"user_id": 1, "product_id": "p1", "quantity": 2})).await["id"].as_str().unwrap().to_string()
    }

    async fn order_with_token(&self, token: &str) -> String {
        let order = self.shop.place_ok(json!({"user_id": 1, "product_id": "p1", "quantity": 2, "payment_token": token})).await;
        order["id"].as_str().unwrap().to_string()
    }

    /// Runs the payment worker on every `orders.payment_requested` (twice, as
    /// a redelivery would) and the order service on every payment outcome.
    async fn deliver_events(&self) {
        for event in self.shop.publisher.events_on(ORDERS_PAYMENT_REQUESTED) {
            for _ in 0..2 {
                let _ = self.payments.handle_event(&event.to_bytes()).await;
            }
        }
        for channel in [PAYMENTS_COMPLETED, PAYMENTS_FAILED] {
            for event in self.payments_publisher.events_on(channel) {
                self.shop.orders.handle_event(&event.to_bytes()).await.unwrap();
            }
        }
    }

    async fn sandbox_stats(&self) -> Value {
        self.sandbox.handle(request(Method::Get, "/sandbox/stats", None)).await.response.json_body()
    }
}

#[test]
fn each_sandbox_token_drives_an_order_to_its_outcome_with_at_most_one_charge() {
    run(async {
        // Token, order status and payment status once the events are
        // delivered (twice each), charges and declines the provider made,
        // attempts it saw, units of p1 still available (2 were ordered).
        let cases = [
            ("tok_approve", "paid", "completed", 1, 0, 1, 8),
            ("tok_transient", "paid", "completed", 1, 0, 3, 8),
            ("tok_decline", "cancelled", "failed", 0, 1, 1, 10),
            // Every attempt times out: the payment stays pending for the reconcile.
            ("tok_slow", "confirmed", "pending", 1, 0, 6, 8),
        ];
        for (token, status, payment_status, charges, declines, attempts, available) in cases {
            let world = EndToEnd::new().await;
            let id = world.order_with_token(token).await;
            world.deliver_events().await;
            let order = world.shop.get_order(&id).await;
            assert_eq!((order["status"].as_str(), order["payment_status"].as_str()), (Some(status), Some(payment_status)), "{token}");
            let stats = world.sandbox_stats().await;
            let made = (stats["charges"].as_i64(), stats["declines"].as_i64(), stats["attempts"].as_i64());
            assert_eq!(made, (Some(charges), Some(declines), Some(attempts)), "{token}");
            assert_eq!(world.shop.stock("p1").await.0, available, "{token}");
        }
    });
}

#[test]
fn cancelling_a_paid_order_refunds_it_once_through_the_sandbox() {
    run(async {
        let world = EndToEnd::new().await;
        let id = world.order_with_token("tok_approve").await;
        world.deliver_events().await;
        let cancel = world.shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await;
        assert_eq!(cancel.status, 200);
        for event in world.shop.publisher.events_on(ORDERS_CANCELLED) {
            for _ in 0..2 {
                world.payments.handle_event(&event.to_bytes()).await.unwrap();
            }
        }
        let payment_id = world.shop.get_order(&id).await["payment_id"].as_str().unwrap().to_string();
        let payment = world.payments.handle(request(Method::Get, &format!("/payments/{payment_id}"), None)).await.json_body();
        assert_eq!(payment["status"], "refunded");
        assert_eq!(world.sandbox_stats().await["refunds"], 1);
        assert_eq!(world.shop.product("p1").await["available"], 10);
    });
}

fn charge_for(key: &str, order_id: &str, amount: i64, currency: &str, token: &str) -> ApiRequest {
    let body = json!({"order_id": order_id, "amount": amount, "currency": currency, "payment_token": token});
    request(Method::Post, "/payments", Some(body)).with_header("Idempotency-Key", key)
}

#[test]
fn a_charge_its_order_cannot_take_is_refused_before_the_provider_is_called() {
    run(async {
        let world = EndToEnd::new().await;
        let id = world.order_with_token("tok_approve").await;
        let cases = [
            (charge_for("k1", "ord_nobody", 2500, "EUR", "tok_approve"), 422, "unknown_order", "order_id"),
            (charge_for("k2", &id, 1, "EUR", "tok_approve"), 422, "amount_mismatch", "amount"),
            (charge_for("k3", &id, 2500, "USD", "tok_approve"), 422, "amount_mismatch", "currency"),
        ];
        for (charge, status, code, field) in cases {
            let refused = world.payments.handle(charge).await;
            crate::assert_error(&refused, status, code, Some(field));
        }
        assert_eq!(world.sandbox_stats().await["attempts"], 0, "nothing reached the provider");

        // Paid by the worker: a second payment is refused, each time it is tried.
        world.deliver_events().await;
        assert_eq!(world.shop.get_order(&id).await["status"], "paid");
        for _ in 0..2 {
            let twice = world.payments.handle(charge_for("k4", &id, 2500, "EUR", "tok_approve")).await;
            crate::assert_error(&twice, 409, "order_not_awaiting_payment", Some("order_id"));
        }
        assert_eq!(world.sandbox_stats().await["charges"], 1);
    });
}

#[test]
fn a_second_approved_charge_of_one_order_is_refunded_at_once_and_says_why() {
    run(async {
        let world = EndToEnd::new().await;
        let id = world.order_without_token().await;
        // Both pass the check (the order side has heard of neither yet).
        let first = world.payments.handle(charge_for("a", &id, 2500, "EUR", "tok_approve")).await;
        assert_eq!(first.status, 201, "{}", first.json_body());
        let second = world.payments.handle(charge_for("b", &id, 2500, "EUR", "tok_approve")).await;
        crate::assert_error(&second, 409, "payment_refunded", Some("order_id"));
        let refunded = payment_of(&second);
        let first_id = first.json_body()["payment_id"].as_str().unwrap().to_string();
        assert_eq!(refunded["status"], "refunded");
        assert_eq!(refunded["refund_reason"], format!("order {id} was already paid by {first_id}"));
        let stats = world.sandbox_stats().await;
        assert_eq!((stats["charges"].as_i64(), stats["refunds"].as_i64()), (Some(2), Some(1)));
        // Only the first one's outcome was announced; the second announced its refund.
        let completed = world.payments_publisher.events_on(PAYMENTS_COMPLETED);
        assert_eq!(completed.iter().map(|event| event.data["payment_id"].clone()).collect::<Vec<_>>(), [json!(first_id)]);
        assert_eq!(world.payments_publisher.events_on(PAYMENTS_REFUNDED)[0].data["payment_id"], refunded["payment_id"]);
        // The replay answers the same.
        let again = world.payments.handle(charge_for("b", &id, 2500, "EUR", "tok_approve")).await;
        assert_eq!((again.status, again.body), (409, second.body));
        world.deliver_events().await;
        let order = world.shop.get_order(&id).await;
        assert_eq!((order["status"].as_str(), order["payment_id"].as_str()), (Some("paid"), Some(first_id.as_str())));
    });
}

#[test]
fn a_charge_approved_after_its_order_was_cancelled_is_refunded_at_once() {
    run(async {
        let shop = Shop::empty();
        assert_eq!(shop.put_product("p1", 1250, "EUR", 10).await.status, 201);
        let gateway = ScriptedGateway::new(vec![GatewayStep::Transient; 3], GatewayStep::Approve);
        let rig = rig_on(shop.kv.clone(), gateway.clone()).await;
        let id = shop.place_ok(json!({"user_id": 1, "product_id": "p1", "quantity": 2})).await["id"].as_str().unwrap().to_string();
        // Checked and pending (the provider was down), then the order is cancelled.
        let pending = rig.payments.handle(charge_for("k", &id, 2500, "EUR", "tok_x")).await;
        assert_eq!(pending.status, 502);
        assert_eq!(shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await.status, 200);
        // The retry gets the charge approved: it pays nothing, so it is given back.
        let settled = rig.payments.handle(charge_for("k", &id, 2500, "EUR", "tok_x")).await;
        crate::assert_error(&settled, 409, "payment_refunded", Some("order_id"));
        let payment = payment_of(&settled);
        assert_eq!((payment["status"].as_str(), payment["refund_reason"].clone()), (Some("refunded"), json!(format!("order {id} is cancelled"))));
        let operations: Vec<String> = gateway.calls().into_iter().map(|call| call.operation.to_string()).collect();
        assert_eq!(operations, ["charge", "charge", "charge", "charge", "refund"]);
        assert!(rig.publisher.events_on(PAYMENTS_COMPLETED).is_empty(), "a refunded charge announces its refund only");
        assert_eq!(rig.publisher.events_on(PAYMENTS_REFUNDED).len(), 1);
    });
}

#[test]
fn an_outcome_nobody_heard_stays_in_the_outbox_until_a_replay_delivers_it() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Approve).await;
        rig.publisher.set_unheard(true);
        let first = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!(first.status, 201);
        assert!(rig.publisher.events_on(PAYMENTS_COMPLETED).is_empty());
        // Still nobody listening: the replay answers, the event stays.
        assert_eq!(rig.payments.handle(charge_request(Some("k"), 1500)).await.body, first.body);
        assert!(rig.publisher.events_on(PAYMENTS_COMPLETED).is_empty());
        rig.publisher.set_unheard(false);
        assert_eq!(rig.payments.handle(charge_request(Some("k"), 1500)).await.body, first.body);
        assert_eq!(rig.publisher.events_on(PAYMENTS_COMPLETED).len(), 1);
        // Delivered once: a further replay sends nothing.
        rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!(rig.publisher.events_on(PAYMENTS_COMPLETED).len(), 1);
        assert_eq!(gateway.calls().len(), 1);
    });
}

#[test]
fn the_reconcile_asks_the_payment_side_and_never_cancels_a_paid_order() {
    run(async {
        // Orders without a token wait 5 minutes (the reservation holds 15).
        let world = EndToEnd::with(OrdersConfig { payment_timeout_ms: 300_000, ..crate::orders_config() }).await;
        let id = world.order_without_token().await;
        world.payments_publisher.set_unheard(true);
        let paid = world.payments.handle(charge_for("k", &id, 2500, "EUR", "tok_approve")).await;
        assert_eq!(paid.status, 201);
        world.payments_publisher.set_unheard(false);
        assert_eq!(world.shop.get_order(&id).await["status"], "confirmed", "payments.completed reached nobody");

        world.shop.clock.advance_ms(300_000);
        let response = world.shop.orders.handle(as_admin(request(Method::Post, "/orders/reconcile", None))).await;
        let report = response.json_body();
        assert_eq!((report["payments_found"].as_u64(), report["cancelled"].as_u64()), (Some(1), Some(0)), "{report}");
        let order = world.shop.get_order(&id).await;
        assert_eq!((order["status"].as_str(), order["payment_status"].as_str()), (Some("paid"), Some("completed")));
        assert_eq!(order["payment_id"], paid.json_body()["payment_id"]);
        // The outbox was sent again on the way.
        assert_eq!(world.shop.publisher.events_on(PAYMENTS_COMPLETED).len(), 1);
        assert_eq!(world.sandbox_stats().await["refunds"], 0);
    });
}

#[test]
fn cancelling_an_order_whose_payment_event_is_late_owes_the_refund() {
    run(async {
        let world = EndToEnd::new().await;
        let id = world.order_without_token().await;
        world.payments_publisher.set_unheard(true);
        let paid = world.payments.handle(charge_for("k", &id, 2500, "EUR", "tok_approve")).await;
        assert_eq!(paid.status, 201);
        let cancelled = world.shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await.json_body();
        assert_eq!((cancelled["refund_required"].as_bool(), cancelled["payment_status"].as_str()), (Some(true), Some("completed")));
        assert_eq!(cancelled["payment_id"], paid.json_body()["payment_id"]);
        for event in world.shop.publisher.events_on(ORDERS_CANCELLED) {
            world.payments.handle_event(&event.to_bytes()).await.unwrap();
        }
        assert_eq!(world.sandbox_stats().await["refunds"], 1);
    });
}
