//! Operational endpoints and metrics computed from the services' counters.

use serde_json::json;
use shop_core::http::{ApiRequest, Method};
use shop_core::ops::{OpsEndpoint, ServiceInfo, info_response, metrics_response};

use crate::{Shop, run};

#[test]
fn ops_paths_are_recognised_and_only_answer_get() {
    let get = ApiRequest::new(Method::Get, "/metrics");
    assert_eq!(OpsEndpoint::of(&get), Some(OpsEndpoint::Metrics));
    assert_eq!(OpsEndpoint::of(&ApiRequest::new(Method::Get, "/health/")), Some(OpsEndpoint::Health));
    assert_eq!(OpsEndpoint::of(&ApiRequest::new(Method::Get, "/orders")), None);
    assert!(OpsEndpoint::check_method(&get).is_ok());
    let post = ApiRequest::new(Method::Post, "/info");
    assert_eq!(OpsEndpoint::check_method(&post).unwrap_err().status, 405);
    let info = ServiceInfo { name: "orders".into(), version: "0.1.0".into(), environment: "test".into() };
    assert_eq!(info_response(&info).json_body(), json!({"name": "orders", "version": "0.1.0", "environment": "test"}));
}

#[test]
fn metrics_report_business_figures_from_the_counters() {
    run(async {
        let shop = Shop::empty();
        assert_eq!(shop.put_product("p1", 300, "EUR", 100).await.status, 201);
        let paid = shop.place_ok(json!({"user_id": 1, "product_id": "p1", "quantity": 2})).await;
        shop.place_ok(json!({"user_id": 1, "product_id": "p1", "quantity": 1})).await;
        assert_eq!(shop.set_status(paid["id"].as_str().unwrap(), "paid").await.status, 200);

        let mut families = shop.orders.metrics().await.unwrap();
        families.extend(shop.inventory.metrics().await.unwrap());
        let text = String::from_utf8(metrics_response(&families).body).unwrap();
        for line in [
            "shop_orders{status=\"confirmed\"} 1",
            "shop_orders{status=\"paid\"} 1",
            "shop_orders{status=\"cancelled\"} 0",
            "shop_revenue_minor_units{currency=\"EUR\"} 600",
            "shop_reservations_total{event=\"created\"} 2",
            "shop_reservations_total{event=\"committed\"} 1",
            "# TYPE shop_orders gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let again = String::from_utf8(metrics_response(&shop.orders.metrics().await.unwrap()).body).unwrap();
        assert!(text.starts_with(&again), "reading metrics changes nothing");
    });
}
