//! The sandbox payment provider.

use serde_json::{Value, json};
use shop_core::http::{ApiRequest, Method};
use shop_core::sandbox::{Sandbox, SandboxConfig, SandboxPlan};
use shop_core::testing::{FixedClock, MemoryKv, SeededRandom};

use crate::{START_MS, error_code, request, run};

type Provider = Sandbox<MemoryKv, FixedClock, SeededRandom>;

fn provider() -> Provider {
    Sandbox::new(MemoryKv::new(), FixedClock::at(START_MS), SeededRandom::new(4), SandboxConfig { slow_delay_ms: 9000 })
}

fn charge(key: Option<&str>, token: &str, amount: i64) -> ApiRequest {
    let body = json!({"amount": amount, "currency": "EUR", "token": token});
    let request = request(Method::Post, "/sandbox/charges", Some(body));
    match key {
        Some(key) => request.with_header("Idempotency-Key", key),
        None => request,
    }
}

async fn stats(sandbox: &Provider, key: &str) -> Value {
    let path = format!("/sandbox/stats?idempotency_key={key}");
    sandbox.handle(request(Method::Get, &path, None)).await.response.json_body()
}

#[test]
fn approving_charges_are_made_once_per_key() {
    run(async {
        let sandbox = provider();
        let first = sandbox.handle(charge(Some("k1"), "tok_approve", 500)).await;
        assert_eq!((first.delay_ms, first.response.status), (0, 201));
        let again = sandbox.handle(charge(Some("k1"), "tok_approve", 500)).await;
        assert_eq!(again.response.body, first.response.body);
        let stats = stats(&sandbox, "k1").await;
        assert_eq!((stats["charges"].as_i64(), stats["attempts"].as_i64()), (Some(1), Some(2)));
        assert_eq!(stats["key"]["attempts"], 2);
        assert_eq!(stats["key"]["charge"]["charge_id"], first.response.json_body()["charge_id"]);

        let reused = sandbox.handle(charge(Some("k1"), "tok_approve", 501)).await;
        assert_eq!((reused.response.status, error_code(&reused.response).as_str()), (422, "idempotency_key_reused"));
        let missing = sandbox.handle(charge(None, "tok_approve", 500)).await;
        assert_eq!(missing.response.status, 400);
        let unknown = sandbox.handle(charge(Some("k2"), "tok_bogus", 500)).await;
        assert_eq!(unknown.response.status, 400);
    });
}

#[test]
fn tokens_decide_the_outcome() {
    run(async {
        let sandbox = provider();
        let declined = sandbox.handle(charge(Some("d"), "tok_decline", 500)).await;
        assert_eq!((declined.response.status, error_code(&declined.response).as_str()), (402, "card_declined"));
        let transient: Vec<u16> = futures::future::join_all((0..4).map(|_| async {
            sandbox.handle(charge(Some("t"), "tok_transient", 500)).await.response.status
        }))
        .await;
        assert_eq!(transient, [503, 503, 201, 201]);
        let SandboxPlan { delay_ms, response } = sandbox.handle(charge(Some("s"), "tok_slow", 500)).await;
        assert_eq!((delay_ms, response.status), (9000, 201));
        let stats = stats(&sandbox, "t").await;
        assert_eq!((stats["charges"].as_i64(), stats["declines"].as_i64(), stats["key"]["attempts"].as_i64()), (Some(2), Some(1), Some(4)));
    });
}

#[test]
fn charges_are_refunded_once_and_can_be_looked_up() {
    run(async {
        let sandbox = provider();
        let charge_id = sandbox.handle(charge(Some("k"), "tok_approve", 700)).await.response.json_body()["charge_id"].clone();
        let refund = || sandbox.handle(request(Method::Post, "/sandbox/refunds", Some(json!({"charge_id": charge_id}))));
        let first = refund().await.response;
        assert_eq!((first.status, first.json_body()["amount"].as_i64()), (201, Some(700)));
        let second = refund().await.response;
        assert_eq!((second.status, second.json_body()), (200, first.json_body()));
        assert_eq!(stats(&sandbox, "k").await["refunds"], 1);

        let found = sandbox.handle(request(Method::Get, "/sandbox/charges?idempotency_key=k", None)).await.response;
        assert_eq!((found.status, found.json_body()["refunded"].as_bool()), (200, Some(true)));
        let unknown = sandbox.handle(request(Method::Post, "/sandbox/refunds", Some(json!({"charge_id": "ch_none"})))).await;
        assert_eq!(unknown.response.status, 404);
        let declined_id = sandbox.handle(charge(Some("d"), "tok_decline", 5)).await.response.json_body()["charge"]["charge_id"].clone();
        let not_refundable = sandbox.handle(request(Method::Post, "/sandbox/refunds", Some(json!({"charge_id": declined_id})))).await;
        assert_eq!(not_refundable.response.status, 409);
        let no_key = sandbox.handle(request(Method::Get, "/sandbox/charges", None)).await;
        assert_eq!(no_key.response.status, 400);
    });
}

/// Composed into the components that charge, the sandbox is reached in
/// process: the same answers as over HTTP, and a slow answer is a no-answer
/// at once (the charge stands), which the retries count as a timeout.
#[test]
fn in_process_calls_answer_as_over_http_and_a_slow_answer_is_no_answer_at_once() {
    use shop_core::payments::{Gateway, GatewayOutcome, ProviderGateway, RetryPolicy, Settled, with_retries};
    use shop_core::sandbox::InProcess;
    use shop_core::testing::RecordingSleeper;
    run(async {
        let sandbox = provider();
        let gateway = ProviderGateway(InProcess(sandbox.clone()));
        let GatewayOutcome::Approved { provider_ref } = gateway.charge("k", 500, "EUR", "tok_approve").await else {
            panic!("tok_approve is approved")
        };
        assert!(provider_ref.starts_with("ch_"), "{provider_ref}");
        assert_eq!(gateway.charge("k", 500, "EUR", "tok_approve").await, GatewayOutcome::Approved { provider_ref: provider_ref.clone() });
        assert!(matches!(gateway.charge("d", 500, "EUR", "tok_decline").await, GatewayOutcome::Declined { .. }));
        assert!(matches!(gateway.charge("t", 500, "EUR", "tok_transient").await, GatewayOutcome::Transient { .. }));
        let GatewayOutcome::Approved { provider_ref: refund } = gateway.refund("r", &provider_ref, 500, "EUR").await else {
            panic!("an approved charge is refunded")
        };
        assert_eq!(refund, format!("rf_{provider_ref}"));
        assert!(matches!(gateway.refund("r2", "ch_unknown", 500, "EUR").await, GatewayOutcome::Declined { .. }));

        let sleeper = RecordingSleeper::default();
        let (settled, attempts) = with_retries(&RetryPolicy::default(), &sleeper, || gateway.charge("s", 500, "EUR", "tok_slow")).await;
        assert!(matches!(settled, Settled::Unavailable { timed_out: true, .. }), "{settled:?}");
        assert_eq!(attempts, 3);
        let stats = stats(&sandbox, "s").await;
        assert_eq!((stats["key"]["attempts"].as_i64(), stats["key"]["charge"]["status"].as_str()), (Some(3), Some("approved")));
    });
}
