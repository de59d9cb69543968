//! Outbound MQTT (`fermyon:spin/mqtt@2.0.0`) against a real mosquitto that
//! takes one user, started by each test: the WASIp2 probe guest publishes,
//! and a subscriber of the test's own sees what arrived.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

fn publish(host: &Host, qos: u8, address: &str, password: &str, payload: &str) -> Reply {
    let body = json!({"address": address, "username": "app", "password": password, "topic": "orders/new", "payload": payload});
    request("POST", &host.url(&format!("/mqtt/{qos}")), &[], Some(body.to_string().as_bytes()))
}

/// Subscribes to `orders/new` as `watcher`; the payloads that arrive, in
/// order, on the returned channel.
fn subscribe(broker: &Mosquitto) -> std::sync::mpsc::Receiver<String> {
    let mut options = rumqttc::MqttOptions::new("watcher", "127.0.0.1", broker.port);
    options.set_credentials("app", "mqtt-test-password");
    let (client, mut connection) = rumqttc::Client::new(options, 10);
    client.subscribe("orders/new", rumqttc::QoS::ExactlyOnce).unwrap();
    let (seen, payloads) = std::sync::mpsc::channel();
    let (subscribed, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => subscribed.send(()).unwrap(),
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    if seen.send(String::from_utf8_lossy(&p.payload).to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber: {e}"),
            }
        }
    });
    ready.recv_timeout(Duration::from_secs(10)).expect("the subscription to be acknowledged");
    payloads
}

#[test]
fn publishes_with_each_qos_reach_a_subscriber_and_a_wrong_password_is_refused() {
    let broker = Mosquitto::start("app", "mqtt-test-password");
    let arrived = subscribe(&broker);
    let (_dir, host) = start_probe_p2(&[format!("mqtt://127.0.0.1:{}", broker.port)]);
    let address = format!("mqtt://127.0.0.1:{}?client_id=probe", broker.port);
    for qos in [0, 1, 2] {
        let reply = publish(&host, qos, &address, "mqtt-test-password", &format!("order at QoS {qos}"));
        assert_eq!((reply.status, reply.body.as_str()), (200, "published"), "QoS {qos}");
        assert_eq!(arrived.recv_timeout(Duration::from_secs(10)).unwrap(), format!("order at QoS {qos}"));
    }
    // The broker refuses the client; the guest gets it from publish.
    let reply = publish(&host, 1, &address, "wrong", "never");
    assert_eq!(reply.status, 500);
    assert!(reply.body.starts_with("Error::ConnectionFailed(") && reply.body.contains("NotAuthorized"), "{}", reply.body);
    assert!(arrived.recv_timeout(Duration::from_millis(500)).is_err(), "a refused client published");
}

#[test]
fn addresses_outside_the_grant_are_refused_without_connecting_and_bad_ones_are_invalid() {
    let broker = Mosquitto::start("app", "mqtt-test-password");
    let (_dir, host) = start_probe_p2(&[format!("mqtt://127.0.0.1:{}", broker.port)]);
    let other_port = "mqtt://127.0.0.1:1?client_id=probe";
    let reply = publish(&host, 1, other_port, "mqtt-test-password", "x");
    assert_eq!((reply.status, reply.body.as_str()), (500, format!("Error::ConnectionFailed(\"address {other_port} is not permitted\")").as_str()));
    // rumqttc needs a client id.
    let reply = publish(&host, 1, &format!("mqtt://127.0.0.1:{}", broker.port), "mqtt-test-password", "x");
    assert_eq!((reply.status, reply.body.as_str()), (500, "Error::InvalidAddress"));
    let (_dir, ungranted) = start_probe_p2(&[]);
    let address = format!("mqtt://127.0.0.1:{}?client_id=probe", broker.port);
    let reply = publish(&ungranted, 0, &address, "mqtt-test-password", "x");
    assert_eq!(reply.body, format!("Error::ConnectionFailed(\"address {address} is not permitted\")"));
}
