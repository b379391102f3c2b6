//! The broker connection's options, from the host-checked config: address,
//! TLS, login, keep-alive, the last will, MQTT 5 session and packet limits.

use std::io::BufReader;
use std::sync::Arc;
use std::time::Duration;

use iglu_mqtt::loops::HOST_PROPERTY;
use iglu_mqtt::MqttConfig;
use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};

/// Why the options could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("{0}")]
    Config(#[from] iglu_mqtt::MqttConfigError),
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("password_env: the environment variable {0} is not set")]
    NoPassword(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// How long the broker keeps this client's session (its subscriptions and
/// the QoS 1-2 messages for it) while the link is down: an outage shorter
/// than this loses no device message the broker had for us.
const SESSION_EXPIRY_S: u32 = 3600;

/// Messages the broker may have in flight to us unacknowledged.
const RECEIVE_MAXIMUM: u16 = 1024;

pub fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The client's options.
pub fn build(config: &MqttConfig) -> Result<MqttOptions, OptionsError> {
    let broker = config.broker()?;
    let client_id = config.client_id.clone().unwrap_or_default();
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(config.keep_alive_s));
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(SESSION_EXPIRY_S));
    o.set_receive_maximum(Some(RECEIVE_MAXIMUM));
    // Tells the broker (MQTT 5) not to send anything bigger: it skips
    // such a message for us instead of our cutting the link over it, which
    // a retained one would make happen again at every reconnect.
    o.set_max_packet_size(Some(
        u32::try_from(config.max_packet_bytes).unwrap_or(u32::MAX),
    ));
    o.set_connection_timeout(10);
    // A message is acknowledged once it is on the bus (see `import`), so
    // one the bridge loses before that is sent again.
    o.set_manual_acks(true);
    if let Some(user) = &config.username {
        o.set_credentials(user.clone(), password(config)?);
    }
    let will = LastWillProperties {
        delay_interval: None,
        payload_format_indicator: Some(1),
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: vec![(HOST_PROPERTY.to_owned(), config.host_id().to_owned())],
    };
    o.set_last_will(LastWill::new(
        config.status_topic(),
        "offline",
        QoS::AtLeastOnce,
        true,
        Some(will),
    ));
    if broker.tls {
        o.set_transport(Transport::tls_with_config(tls(config)?));
    }
    Ok(o)
}

fn password(config: &MqttConfig) -> Result<String, OptionsError> {
    if let Some(path) = &config.password_file {
        let text = std::fs::read_to_string(path).map_err(|source| OptionsError::Read {
            what: "password_file",
            path: path.display().to_string(),
            source,
        })?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Some(var) = &config.password_env {
        return std::env::var(var).map_err(|_| OptionsError::NoPassword(var.clone()));
    }
    Ok(String::new())
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, OptionsError> {
    std::fs::read(path).map_err(|source| OptionsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// rustls with ring: the CA file's roots (else the system's), and a client
/// certificate if one is given.
fn tls(config: &MqttConfig) -> Result<TlsConfiguration, OptionsError> {
    let tls_err = |e: String| OptionsError::Tls(e);
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let pem = read("ca_file", path)?;
            for cert in rustls_pemfile::certs(&mut BufReader::new(&pem[..])) {
                let cert = cert.map_err(|e| tls_err(format!("ca_file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("ca_file: {e}")))?;
            }
            if roots.is_empty() {
                return Err(tls_err(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(tls_err(
                    "no system CA certificates found; set ca_file".to_owned(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots);
    let client = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => {
            let pem = read("client_cert_file", cert)?;
            let chain = rustls_pemfile::certs(&mut BufReader::new(&pem[..]))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(format!("client_cert_file: {e}")))?;
            let pem = read("client_key_file", key)?;
            let key = rustls_pemfile::private_key(&mut BufReader::new(&pem[..]))
                .map_err(|e| tls_err(format!("client_key_file: {e}")))?
                .ok_or_else(|| tls_err("client_key_file holds no private key".to_owned()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_err(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(client)))
}
