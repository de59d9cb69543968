//! Outbound MQTT: `fermyon:spin/mqtt@2.0.0` for WASIp2 guests ([`p2`]) and
//! `spin:mqtt/mqtt@3.0.0` for WASIp3 guests ([`p3`]), over one policy.
//!
//! As Spin's factor-outbound-mqtt does it, so apps behave the same on both:
//! `open` checks the address against `allowed_outbound_hosts` and parses it
//! (rumqttc's URL form, `client_id` required) without touching the network;
//! the first `publish` connects, and every `publish` waits until the broker
//! acknowledged it as its QoS asks (nothing for at-most-once, PUBACK,
//! PUBCOMP). Each `connection` is a client of its own: MQTT has no way to
//! share one session between guests that each name their own client id.

use crate::allowed_hosts::{AllowedHosts, default_port};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod p2;
mod p3;

/// Why a call failed; each version maps it to its own `error`.
pub enum Error {
    InvalidAddress,
    TooManyConnections,
    ConnectionFailed(String),
    Other(String),
}

/// Requests a connection may queue for its event loop; `publish` waits for
/// each one, so more than one is queued only by concurrent publishes.
const REQUEST_CAPACITY: usize = 16;

/// Connections one instance may hold open at once. Each holds rumqttc's
/// state (tens of KiB, more with a large `inflight_num`) from `open` on,
/// before any I/O, so a guest opening in a loop would otherwise grow the
/// host without bound.
const MAX_CONNECTIONS_PER_INSTANCE: usize = 64;

/// Per-instance MQTT access: the component's policy and the instance's
/// open connections.
pub struct MqttAccess {
    allowed: Arc<AllowedHosts>,
    open: Arc<AtomicUsize>,
}

impl MqttAccess {
    pub fn new(allowed: Arc<AllowedHosts>) -> Self {
        Self { allowed, open: Arc::default() }
    }

    /// A connection to `address` if the component may reach it; no I/O yet.
    pub fn open(&self, address: &str, username: String, password: String, keep_alive_secs: u64) -> Result<Connection, Error> {
        // Refused before it is parsed, with the address as given, as Spin
        // words it.
        if !self.permits(address) {
            return Err(Error::ConnectionFailed(format!("address {address} is not permitted")));
        }
        let open = OpenConnection::claim(&self.open).ok_or(Error::TooManyConnections)?;
        let mut options = parse(address).map_err(|why| {
            tracing::debug!("mqtt address refused: {why}");
            Error::InvalidAddress
        })?;
        options.set_credentials(username, password);
        options.set_keep_alive(Duration::from_secs(keep_alive_secs));
        let (client, event_loop) = AsyncClient::new(options, REQUEST_CAPACITY);
        Ok(Connection { client, event_loop: Arc::new(tokio::sync::Mutex::new(event_loop)), _open: open })
    }

    fn permits(&self, address: &str) -> bool {
        let Ok(url) = url::Url::parse(address) else { return false };
        let Some(host) = url.host_str() else { return false };
        let scheme = url.scheme();
        let Some(port) = url.port().or_else(|| default_port(scheme)).or_else(|| (scheme == "mqtts").then_some(8883)) else {
            return false;
        };
        self.allowed.allows(scheme, host, port)
    }
}

/// Query keys of rumqttc's URL form a guest may set, and the most each may
/// ask for. rumqttc asserts on some values (`inflight_num=0`,
/// `clean_session=false` with an empty client id) and sizes buffers by
/// others, so the address is checked here before rumqttc reads it; its
/// tuning of the host's own queues (`request_channel_capacity_num`,
/// `max_request_batch_num`, `pending_throttle_usecs`) is not the guest's
/// to set.
const QUERY_KEYS: &[(&str, u64)] = &[
    ("client_id", 0),
    ("keep_alive_secs", u16::MAX as u64),
    ("clean_session", 0),
    ("inflight_num", 1024),
    ("max_incoming_packet_size_bytes", 1 << 20),
    ("max_outgoing_packet_size_bytes", 1 << 20),
];

/// rumqttc's options for `address`, or why it is no address wharf takes.
/// `mqtts://` and `ssl://` verify the broker against the system's roots
/// (rumqttc's own default panics where they cannot be read).
fn parse(address: &str) -> Result<MqttOptions, String> {
    let mut url = url::Url::parse(address).map_err(|e| e.to_string())?;
    let mut client_id = None;
    let mut clean_session = true;
    for (key, value) in url.query_pairs() {
        let Some((_, most)) = QUERY_KEYS.iter().find(|(known, _)| *known == key) else {
            return Err(format!("query key `{key}` is not accepted"));
        };
        match &*key {
            "client_id" => client_id = Some(value.to_string()),
            "clean_session" => clean_session = value != "false",
            _ => {
                let n: u64 = value.parse().map_err(|_| format!("`{key}` is not a number"))?;
                if n == 0 || n > *most {
                    return Err(format!("`{key}` must be from 1 to {most}"));
                }
            }
        }
    }
    match client_id {
        None => return Err("no client_id".into()),
        Some(id) if id.is_empty() && !clean_session => return Err("clean_session=false needs a client_id".into()),
        Some(_) => {}
    }
    let tls = matches!(url.scheme(), "mqtts" | "ssl");
    if tls {
        // Parsed as plain MQTT (so rumqttc builds no TLS of its own), then
        // given TLS on the port mqtts means.
        let port = url.port().unwrap_or(8883);
        url.set_scheme("mqtt").map_err(|()| "cannot read the address as MQTT".to_string())?;
        url.set_port(Some(port)).map_err(|()| "no port".to_string())?;
    }
    let mut options = MqttOptions::parse_url(url.as_str()).map_err(|e| e.to_string())?;
    if tls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = <rustls::ClientConfig as rustls_platform_verifier::ConfigVerifierExt>::with_platform_verifier()
            .map_err(|e| format!("TLS roots: {e}"))?;
        options.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(config))));
    }
    Ok(options)
}

/// The QoS a message is published with.
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

/// An open connection (the `connection` resource).
pub struct Connection {
    client: AsyncClient,
    /// Driven only while a `publish` waits for its acknowledgement; the lock
    /// keeps concurrent publishes (WASIp3) from taking each other's.
    event_loop: Arc<tokio::sync::Mutex<EventLoop>>,
    _open: OpenConnection,
}

/// One of an instance's open connections, counted until dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn claim(open: &Arc<AtomicUsize>) -> Option<Self> {
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < MAX_CONNECTIONS_PER_INSTANCE).then_some(n + 1)).ok()?;
        Some(Self(open.clone()))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connection {
    /// Publishes and waits for the broker's acknowledgement of this very
    /// message (by its packet id), connecting first if the connection is
    /// not up (again). Does not borrow the connection while it waits.
    pub fn publish(&self, topic: String, payload: Vec<u8>, qos: Qos) -> impl Future<Output = Result<(), Error>> + use<> {
        let client = self.client.clone();
        let event_loop = self.event_loop.clone();
        async move {
            let qos = match qos {
                Qos::AtMostOnce => QoS::AtMostOnce,
                Qos::AtLeastOnce => QoS::AtLeastOnce,
                Qos::ExactlyOnce => QoS::ExactlyOnce,
            };
            let mut event_loop = event_loop.lock().await;
            // Whatever ends this call early (an error, or a WASIp3 caller
            // dropping it) leaves nothing queued: a stale message would be
            // sent, and acknowledged, as the next publish's.
            let mut publishing = Publishing { event_loop: &mut event_loop, finished: false };
            client.try_publish(topic, qos, false, payload).map_err(|e| Error::Other(e.to_string()))?;
            let mut sent = None;
            loop {
                let event = publishing.event_loop.poll().await.map_err(|e| Error::ConnectionFailed(e.to_string()))?;
                let done = match (event, sent) {
                    (Event::Outgoing(Outgoing::Publish(pkid)), None) => {
                        sent = Some(pkid);
                        qos == QoS::AtMostOnce
                    }
                    (Event::Incoming(Packet::PubAck(ack)), Some(pkid)) => qos == QoS::AtLeastOnce && ack.pkid == pkid,
                    (Event::Incoming(Packet::PubComp(comp)), Some(pkid)) => qos == QoS::ExactlyOnce && comp.pkid == pkid,
                    _ => false,
                };
                if done {
                    publishing.finished = true;
                    return Ok(());
                }
            }
        }
    }
}

/// A publish in progress on an event loop; unless it finished, dropping it
/// clears the loop's queues and connection, so the next publish starts clean.
struct Publishing<'a> {
    event_loop: &'a mut EventLoop,
    finished: bool,
}

impl Drop for Publishing<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.event_loop.clean();
            self.event_loop.pending.clear();
        }
    }
}

/// The conversions between these types and a version's generated ones,
/// which have the same shape in both versions.
macro_rules! convert_to_wit {
    ($wit:path) => {
        use $wit as wit;

        impl From<super::Error> for wit::Error {
            fn from(e: super::Error) -> Self {
                match e {
                    super::Error::InvalidAddress => wit::Error::InvalidAddress,
                    super::Error::TooManyConnections => wit::Error::TooManyConnections,
                    super::Error::ConnectionFailed(message) => wit::Error::ConnectionFailed(message),
                    super::Error::Other(message) => wit::Error::Other(message),
                }
            }
        }

        impl From<wit::Qos> for super::Qos {
            fn from(qos: wit::Qos) -> Self {
                match qos {
                    wit::Qos::AtMostOnce => super::Qos::AtMostOnce,
                    wit::Qos::AtLeastOnce => super::Qos::AtLeastOnce,
                    wit::Qos::ExactlyOnce => super::Qos::ExactlyOnce,
                }
            }
        }
    };
}
use convert_to_wit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_holds_a_bounded_number_of_connections() {
        let access = MqttAccess::new(Arc::new(AllowedHosts::parse(&["mqtt://broker:1883".to_string()]).unwrap()));
        let address = "mqtt://broker:1883?client_id=a";
        let open: Vec<Connection> = (0..MAX_CONNECTIONS_PER_INSTANCE)
            .map(|_| access.open(address, String::new(), String::new(), 30).unwrap_or_else(|_| panic!("open")))
            .collect();
        assert!(matches!(access.open(address, String::new(), String::new(), 30), Err(Error::TooManyConnections)));
        drop(open);
        assert!(access.open(address, String::new(), String::new(), 30).is_ok(), "dropped connections count no more");
    }

    #[test]
    fn addresses_that_would_make_rumqttc_panic_or_size_host_buffers_are_refused() {
        for address in [
            "mqtt://broker:1883",
            "mqtt://broker:1883?client_id=a&inflight_num=0",
            "mqtt://broker:1883?client_id=&clean_session=false",
            "mqtt://broker:1883?client_id=a&max_incoming_packet_size_bytes=99999999999&max_outgoing_packet_size_bytes=1",
            "mqtt://broker:1883?client_id=a&request_channel_capacity_num=99999999",
            "mqtt://broker:1883?client_id=a&pending_throttle_usecs=1",
            "mqtt://broker:1883?client_id=a&keep_alive_secs=nope",
            "http://broker?client_id=a",
        ] {
            assert!(parse(address).is_err(), "{address}");
        }
        for address in [
            "mqtt://broker:1883?client_id=a",
            "tcp://broker?client_id=a&keep_alive_secs=30&clean_session=false&inflight_num=10",
            "mqtt://broker?client_id=a&max_incoming_packet_size_bytes=65536&max_outgoing_packet_size_bytes=65536",
        ] {
            assert!(parse(address).is_ok(), "{address}: {:?}", parse(address).err());
        }
        let tls = parse("mqtts://broker?client_id=a").unwrap();
        assert_eq!(tls.broker_address(), ("broker".to_string(), 8883));
        assert!(matches!(tls.transport(), rumqttc::Transport::Tls(_)));
    }
}
