//! Payments: retries, idempotency, refunds and the payment worker, against
//! a scripted provider and end to end against the sandbox.

use serde_json::{Value, json};
use shop_core::events::{
    Event, EventError, EventOutcome, ORDERS_CANCELLED, ORDERS_CREATED, PAYMENTS_COMPLETED, PAYMENTS_FAILED, PAYMENTS_REFUNDED,
};
use shop_core::http::{ApiRequest, ApiResponse, Method};
use shop_core::payments::{Gateway, PaymentService, PaymentsConfig, ProviderGateway, RetryPolicy};
use shop_core::sandbox::{Sandbox, SandboxConfig};
use shop_core::testing::{
    FixedClock, GatewayStep, MemoryKv, RecordingPublisher, RecordingSleeper, SandboxGateway, ScriptedGateway, SeededRandom,
};

use crate::{ADMIN_TOKEN, START_MS, Shop, as_admin, error_code, request, run};

type Payments<G> = PaymentService<MemoryKv, G, RecordingPublisher, FixedClock, SeededRandom, RecordingSleeper>;

struct Rig<G> {
    payments: Payments<G>,
    publisher: RecordingPublisher,
    sleeper: RecordingSleeper,
}

fn rig_on<G: Gateway>(kv: MemoryKv, gateway: G) -> Rig<G> {
    let publisher = RecordingPublisher::new();
    let sleeper = RecordingSleeper::new();
    let clock = FixedClock::at(START_MS);
    let config = PaymentsConfig {
        retry: RetryPolicy { max_attempts: 3, first_backoff_ms: 100, backoff_factor: 2, attempt_timeout_ms: 2000 },
        ..PaymentsConfig::new(ADMIN_TOKEN)
    };
    let payments = PaymentService::new(kv, gateway, publisher.clone(), clock, SeededRandom::new(9), sleeper.clone(), config);
    Rig { payments, publisher, sleeper }
}

fn rig(steps: impl IntoIterator<Item = GatewayStep>, then: GatewayStep) -> (Rig<ScriptedGateway>, ScriptedGateway) {
    let gateway = ScriptedGateway::new(steps, then);
    (rig_on(MemoryKv::new(), gateway.clone()), gateway)
}

fn charge_request(key: Option<&str>, amount: i64) -> ApiRequest {
    let body = json!({"order_id": "ord_1", "amount": amount, "currency": "EUR", "payment_token": "tok_x"});
    let request = request(Method::Post, "/payments", Some(body));
    match key {
        Some(key) => request.with_header("Idempotency-Key", key),
        None => request,
    }
}

fn payment_of(response: &ApiResponse) -> Value {
    let body = response.json_body();
    if body.get("payment").is_some() { body["payment"].clone() } else { body }
}

#[test]
fn transient_failures_are_retried_with_backoff_until_approved() {
    run(async {
        let (rig, gateway) = rig([GatewayStep::Transient, GatewayStep::Transient], GatewayStep::Approve);
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
        let (rig, gateway) = rig([GatewayStep::Decline("insufficient funds".into())], GatewayStep::Approve);
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
        let (rig, gateway) = rig(vec![GatewayStep::Transient; 3], GatewayStep::Approve);
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
        let (rig, gateway) = rig([], GatewayStep::Hang);
        let response = rig.payments.handle(charge_request(Some("k"), 1500)).await;
        assert_eq!((response.status, error_code(&response).as_str()), (504, "gateway_timeout"));
        assert_eq!(gateway.calls().len(), 3);
        assert_eq!(rig.sleeper.requested_ms(), [2000, 100, 2000, 200, 2000], "timeouts and backoffs");
    });
}

#[test]
fn payment_requests_need_a_key_and_may_not_reuse_one() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Approve);
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
        let rig = rig_on(MemoryKv::interleaving(21), gateway.clone());
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
        let (rig, gateway) = rig([], GatewayStep::Approve);
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
        let (rig, _) = rig([GatewayStep::Decline("no".into())], GatewayStep::Approve);
        let id = payment_of(&rig.payments.handle(charge_request(Some("k"), 1500)).await)["payment_id"].as_str().unwrap().to_string();
        let refused = rig.payments.handle(refund_request(&id)).await;
        assert_eq!((refused.status, error_code(&refused).as_str()), (409, "payment_not_refundable"));
        assert_eq!(rig.payments.handle(refund_request("pay_none")).await.status, 404);
    });
}

fn order_created(event_id: &str, order_id: &str, token: Option<&str>) -> Vec<u8> {
    let mut data = json!({"order_id": order_id, "order_number": "ORD1", "user_id": 1, "total_amount": 2500, "currency": "EUR"});
    if let Some(token) = token {
        data["payment_token"] = json!(token);
    }
    Event::new(event_id.to_string(), ORDERS_CREATED, String::new(), "orders", &data).to_bytes()
}

fn order_cancelled(event_id: &str, payment_id: Option<&str>, refund_required: bool) -> Vec<u8> {
    let data = json!({"order_id": "ord_1", "reason": null, "refund_required": refund_required, "payment_id": payment_id, "total_amount": 2500, "currency": "EUR"});
    Event::new(event_id.to_string(), ORDERS_CANCELLED, String::new(), "orders", &data).to_bytes()
}

#[test]
fn the_worker_charges_each_order_once_however_often_the_event_comes() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Approve);
        assert_eq!(rig.payments.handle_event(&order_created("e1", "ord_1", Some("tok_a"))).await, Ok(EventOutcome::Applied));
        // The same event again, and a re-sent one under a new event id.
        assert_eq!(rig.payments.handle_event(&order_created("e1", "ord_1", Some("tok_a"))).await, Ok(EventOutcome::Duplicate));
        assert_eq!(rig.payments.handle_event(&order_created("e2", "ord_1", Some("tok_a"))).await, Ok(EventOutcome::Duplicate));
        assert_eq!(gateway.calls().len(), 1);
        assert_eq!(gateway.calls()[0].amount, 2500);
        // The outcome is published again each time, for a consumer that missed it.
        let completed = rig.publisher.events_on(PAYMENTS_COMPLETED);
        assert_eq!(completed.len(), 3);
        assert!(completed.iter().all(|event| event.event_id == completed[0].event_id));
        assert_eq!(completed[0].data["order_id"], "ord_1");

        let no_token = rig.payments.handle_event(&order_created("e3", "ord_2", None)).await;
        assert!(matches!(no_token, Ok(EventOutcome::Ignored(_))));
        assert_eq!(gateway.calls().len(), 1);
    });
}

#[test]
fn the_worker_refunds_a_cancelled_order_once() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Approve);
        rig.payments.handle_event(&order_created("e1", "ord_1", Some("tok_a"))).await.unwrap();
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
fn the_worker_reports_garbage_and_unavailable_providers_as_errors() {
    run(async {
        let (rig, gateway) = rig([], GatewayStep::Transient);
        assert!(matches!(rig.payments.handle_event(b"{}").await, Err(EventError::Malformed(_))));
        let wrong = Event::new("x".into(), ORDERS_CREATED, String::new(), "orders", &json!({"order_id": 5}));
        assert!(matches!(rig.payments.handle_event(&wrong.to_bytes()).await, Err(EventError::Malformed(_))));
        let other = Event::new("y".into(), PAYMENTS_COMPLETED, String::new(), "payments", &json!({}));
        assert!(matches!(rig.payments.handle_event(&other.to_bytes()).await, Err(EventError::UnknownType(_))));
        assert!(gateway.calls().is_empty());
        let down = rig.payments.handle_event(&order_created("e1", "ord_1", Some("tok_a"))).await;
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
        let shop = Shop::empty();
        assert_eq!(shop.put_product("p1", 1250, "EUR", 10).await.status, 201);
        let sandbox = Sandbox::new(shop.kv.clone(), shop.clock.clone(), SeededRandom::new(12), SandboxConfig::default());
        let rig = rig_on(shop.kv.clone(), ProviderGateway(SandboxGateway { sandbox: sandbox.clone() }));
        EndToEnd { shop, payments: rig.payments, payments_publisher: rig.publisher, sandbox }
    }

    async fn order_with_token(&self, token: &str) -> String {
        let order = self.shop.place_ok(json!({"user_id": 1, "product_id": "p1", "quantity": 2, "payment_token": token})).await;
        order["id"].as_str().unwrap().to_string()
    }

    /// Runs the payment worker on every `orders.created` (twice, as a
    /// redelivery would) and the order service on every payment outcome.
    async fn deliver_events(&self) {
        for event in self.shop.publisher.events_on(ORDERS_CREATED) {
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
