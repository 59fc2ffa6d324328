//! Shared by the unit tests that need a real database or a Vipps to talk to: a fresh database
//! per test (a SQLite file, or a new PostgreSQL database when `TEST_DATABASE_URL` is set), and a
//! Vipps client for an in-process emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;

use crate::{
    config::{self, Secret},
    domain::{Aggregate, Currency, Money, Payment, PaymentState, Reference, UserFlow},
    store::Store,
    vipps::{VippsClient, VippsConfig},
};

/// A migrated store on a fresh database; keep `dir` alive while it is used.
pub async fn fresh_store(dir: &tempfile::TempDir) -> (Store, String) {
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => fresh_postgres(&admin).await,
        _ => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("paygate.db").display()
        ),
    };
    let store = Store::connect(&database(&url)).await.unwrap();
    store.migrate().await.unwrap();
    (store, url)
}

/// The database section of a configuration with every default but the URL (the environment
/// ignored).
pub fn database(url: &str) -> config::Database {
    use clap::{Args as _, FromArgMatches as _};
    let command = config::Database::augment_args(clap::Command::new("test").no_binary_name(true))
        .mut_args(|a| a.env(None));
    let matches = command.try_get_matches_from(["--url", url]).unwrap();
    config::Database::from_arg_matches(&matches).unwrap()
}

async fn fresh_postgres(admin: &str) -> String {
    use sqlx::Connection;
    let name = format!("paygate_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let _ = conn.close().await;
    let mut url = url::Url::parse(admin).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// An emulator on a free port and a client for it.
pub async fn emulator() -> (vipps_emulator::RunningEmulator, VippsClient) {
    let running = vipps_emulator::Emulator::new(vipps_emulator::EmulatorConfig::default())
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut config = VippsConfig::new(
        url::Url::parse(&running.base_url()).unwrap(),
        "test-client",
        Secret::new("test-secret"),
        Secret::new("test-subscription-key"),
        "123456",
    );
    config.request_timeout = std::time::Duration::from_secs(2);
    config.retry.max_elapsed = std::time::Duration::from_secs(3);
    (running, VippsClient::new(config).unwrap())
}

/// A CREATED push payment of NOK 100.00.
pub fn payment(reference: &str) -> Payment {
    let now = Utc::now();
    Payment {
        reference: Reference::parse("reference", reference).unwrap(),
        psp_reference: String::new(),
        state: PaymentState::Created,
        amount: Money::new(Currency::Nok, 10_000),
        aggregate: Aggregate::default(),
        user_flow: UserFlow::PushMessage,
        redirect_url: None,
        customer_key: None,
        phone_number: None,
        profile_sub: None,
        metadata: Default::default(),
        create_time: now,
        update_time: now,
    }
}
