use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_secrets")]
pub struct Model {
    /// The registration id Vipps gave.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The URL the registration posts to.
    pub url: String,
    /// The HMAC secret Vipps returned at registration (shown only once by Vipps).
    pub secret: String,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
