//! Webhook registrations and their secrets, stored so every replica can verify and a restart
//! does not register again.

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::{entities::webhook_secret, now_ms, Store, StoreError};

/// A registration paygate holds the secret for.
#[derive(Clone)]
pub struct StoredWebhook {
    pub id: String,
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for StoredWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredWebhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"***")
            .finish()
    }
}

/// Held while one replica checks and registers the webhook (PostgreSQL: a transaction-level
/// advisory lock; released when dropped). SQLite has one replica, so nothing to hold there.
pub struct RegistrationLock {
    _txn: Option<sea_orm::DatabaseTransaction>,
}

/// Advisory lock key for webhook registration ("pg" "wh").
const REGISTRATION_LOCK: i64 = 0x7067_7768;

impl Store {
    /// Serializes webhook registration across replicas that start at the same moment, so they
    /// do not each register a webhook for the same URL.
    pub async fn registration_lock(&self) -> Result<RegistrationLock, StoreError> {
        use sea_orm::{ConnectionTrait, TransactionTrait};
        if self.backend != sea_orm::DbBackend::Postgres {
            return Ok(RegistrationLock { _txn: None });
        }
        let txn = self.db.begin().await?;
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({REGISTRATION_LOCK})"
        ))
        .await?;
        // This transaction stays idle while Vipps is called (each call bounded by the client's
        // retry budget); the idle-in-transaction limit is meant for stuck writes, and ending this
        // session early would let a second replica register at the same time.
        txn.execute_unprepared("SET LOCAL idle_in_transaction_session_timeout = 0")
            .await?;
        Ok(RegistrationLock { _txn: Some(txn) })
    }

    /// Registrations stored for `url`.
    pub async fn webhooks_for(&self, url: &str) -> Result<Vec<StoredWebhook>, StoreError> {
        Ok(webhook_secret::Entity::find()
            .filter(webhook_secret::Column::Url.eq(url))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| StoredWebhook {
                id: m.id,
                url: m.url,
                secret: m.secret,
            })
            .collect())
    }

    pub async fn save_webhook(&self, hook: &StoredWebhook) -> Result<(), StoreError> {
        let model = webhook_secret::ActiveModel {
            id: Set(hook.id.clone()),
            url: Set(hook.url.clone()),
            secret: Set(hook.secret.clone()),
            created_ms: Set(now_ms()),
        };
        let w = self.begin_write().await?;
        webhook_secret::Entity::insert(model)
            .exec_without_returning(&w.txn)
            .await?;
        w.txn.commit().await?;
        Ok(())
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<(), StoreError> {
        let w = self.begin_write().await?;
        webhook_secret::Entity::delete_by_id(id.to_owned())
            .exec(&w.txn)
            .await?;
        w.txn.commit().await?;
        Ok(())
    }
}
