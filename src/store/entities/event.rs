use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub sequence: i64,
    #[sea_orm(unique)]
    pub dedupe_key: String,
    pub reference: String,
    pub psp_reference: String,
    pub name: String,
    pub currency: String,
    pub amount: i64,
    pub timestamp_ms: i64,
    pub idempotency_key: Option<String>,
    pub success: bool,
    pub source: String,
    /// JSON snapshot of the payment after the event.
    pub payment: Option<String>,
    pub recorded_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
