//! The services' credentials and TLS against real nats-servers that demand them: user and
//! password, a token, an NKey, and TLS with the operator's own CA and a client
//! certificate. Without the right credentials, connecting fails and says why.

use std::time::Duration;

use bytes::Bytes;

use arqon_bus::{Bus, BusError, KvConfig, NatsAuth, NatsOptions, Storage};
use arqon_testkit::NatsServer;

const WAIT: Duration = Duration::from_secs(5);

fn options(auth: NatsAuth) -> NatsOptions {
    NatsOptions {
        auth,
        connect_timeout: Duration::from_secs(3),
        ..NatsOptions::named("auth-test")
    }
}

async fn connect(server: &NatsServer, auth: NatsAuth) -> Result<Bus, BusError> {
    Bus::connect_nats(&server.url(), options(auth)).await
}

/// Core messages and JetStream both work on the connection.
async fn works(bus: &Bus) {
    let mut subscription = bus.subscribe("auth.test").await.expect("subscribe");
    bus.flush().await.expect("flush");
    bus.publish("auth.test", Bytes::from_static(b"hello"))
        .await
        .expect("publish");
    let message = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("a message in time")
        .expect("a message");
    assert_eq!(&message.payload[..], b"hello");
    let kv = bus
        .key_value(KvConfig {
            storage: Storage::Memory,
            ..KvConfig::new("auth_test")
        })
        .await
        .expect("a JetStream bucket");
    kv.put("k", Bytes::from_static(b"v")).await.expect("put");
}

fn refused(result: Result<Bus, BusError>) -> String {
    match result {
        Err(e) => e.to_string(),
        Ok(_) => panic!("connected without the right credentials"),
    }
}

#[tokio::test]
async fn user_and_password() {
    let server =
        NatsServer::start_with(r#"authorization { user: "arqon", password: "s3cret-pass" }"#);
    let none = refused(connect(&server, NatsAuth::default()).await);
    assert!(none.contains("cannot connect to NATS"), "{none}");
    let wrong = NatsAuth {
        user: Some("arqon".into()),
        password: Some("guess".into()),
        ..NatsAuth::default()
    };
    refused(connect(&server, wrong).await);
    let right = NatsAuth {
        user: Some("arqon".into()),
        password: Some("s3cret-pass".into()),
        ..NatsAuth::default()
    };
    works(&connect(&server, right).await.expect("connect")).await;
}

#[tokio::test]
async fn token() {
    let server = NatsServer::start_with(r#"authorization { token: "t0ken-for-arqon" }"#);
    refused(connect(&server, NatsAuth::default()).await);
    let right = NatsAuth {
        token: Some("t0ken-for-arqon".into()),
        ..NatsAuth::default()
    };
    works(&connect(&server, right).await.expect("connect")).await;
}

#[tokio::test]
async fn nkey() {
    let user = nkeys::KeyPair::new_user();
    let other = nkeys::KeyPair::new_user();
    let server = NatsServer::start_with(&format!(
        r#"authorization {{ users: [ {{ nkey: "{}" }} ] }}"#,
        user.public_key()
    ));
    let seed = |pair: &nkeys::KeyPair| NatsAuth {
        nkey_seed: Some(pair.seed().expect("a seed")),
        ..NatsAuth::default()
    };
    refused(connect(&server, seed(&other)).await);
    works(&connect(&server, seed(&user)).await.expect("connect")).await;
}

/// A CA of the operator's own, a server certificate for 127.0.0.1 and a client
/// certificate, all from it: PEM texts (ca, server cert, server key, client cert, client
/// key).
fn pki() -> [String; 5] {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "arqonbus test CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("a key"))
            .expect("the CA");
    let leaf = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &ca)
            .expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["arqonbus-service".into()]);
    [ca.pem(), server_cert, server_key, client_cert, client_key]
}

#[tokio::test]
async fn tls_with_the_operators_ca_and_a_client_certificate() {
    let [ca, server_cert, server_key, client_cert, client_key] = pki();
    let server = NatsServer::start_with_files(
        r#"tls {
             cert_file: "{dir}/server.pem"
             key_file: "{dir}/server-key.pem"
             ca_file: "{dir}/ca.pem"
             verify: true
             timeout: 2
           }"#,
        &[
            ("ca.pem", ca.as_bytes()),
            ("server.pem", server_cert.as_bytes()),
            ("server-key.pem", server_key.as_bytes()),
            ("client.pem", client_cert.as_bytes()),
            ("client-key.pem", client_key.as_bytes()),
        ],
    );
    let dir = server.dir().to_path_buf();
    // Without the CA the server's certificate is not trusted; without a client
    // certificate the server refuses the client.
    let no_ca = NatsAuth {
        tls_required: true,
        tls_cert_file: Some(dir.join("client.pem")),
        tls_key_file: Some(dir.join("client-key.pem")),
        ..NatsAuth::default()
    };
    refused(connect(&server, no_ca).await);
    let no_client_cert = NatsAuth {
        tls_required: true,
        tls_ca_file: Some(dir.join("ca.pem")),
        ..NatsAuth::default()
    };
    refused(connect(&server, no_client_cert).await);
    let right = NatsAuth {
        tls_required: true,
        tls_ca_file: Some(dir.join("ca.pem")),
        tls_cert_file: Some(dir.join("client.pem")),
        tls_key_file: Some(dir.join("client-key.pem")),
        ..NatsAuth::default()
    };
    works(&connect(&server, right).await.expect("connect")).await;
}

#[tokio::test]
async fn contradictory_settings_are_refused_by_name() {
    let both = NatsAuth {
        token: Some("t".into()),
        nkey_seed: Some("SU".into()),
        ..NatsAuth::default()
    };
    let message = both.validate().unwrap_err().to_string();
    assert!(
        message.contains("ARQONBUS_NATS_TOKEN") && message.contains("ARQONBUS_NATS_NKEY_SEED"),
        "{message}"
    );
    let half = NatsAuth {
        user: Some("u".into()),
        ..NatsAuth::default()
    };
    assert!(
        half.validate()
            .unwrap_err()
            .to_string()
            .contains("ARQONBUS_NATS_PASSWORD")
    );
    let cert_only = NatsAuth {
        tls_cert_file: Some("c.pem".into()),
        ..NatsAuth::default()
    };
    assert!(
        cert_only
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ARQONBUS_NATS_TLS_KEY_FILE")
    );
    // Secrets never show in debug output.
    let secret = NatsAuth {
        user: Some("u".into()),
        password: Some("hunter2".into()),
        ..NatsAuth::default()
    };
    assert!(!format!("{secret:?}").contains("hunter2"));
}
