use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "operations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// create | capture | cancel | refund
    pub kind: String,
    /// The idempotency scope: empty for create (keys are global), the reference otherwise.
    pub scope: String,
    pub reference: String,
    pub idempotency_key: String,
    /// SHA-256 of the caller's parameters: the same key with other parameters is refused.
    pub fingerprint: String,
    /// The exact upstream request (JSON), re-sent unchanged when the outcome was unknown.
    pub request: String,
    /// pending | succeeded | rejected
    pub status: String,
    /// JSON: the payment after success, or the refusal.
    pub outcome: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// A sender holds the operation until then (0: nobody); see `Store::claim_send`.
    pub lease_until_ms: i64,
    /// No re-send before then (growing backoff, Retry-After, Vipps' 5 per minute).
    pub next_send_ms: i64,
    /// How often it was sent.
    pub sends: i32,
    /// The caller who asked for it (the audit trail).
    pub caller: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
