use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub reference: String,
    pub psp_reference: String,
    pub state: String,
    pub currency: String,
    pub amount: i64,
    pub authorized: i64,
    pub captured: i64,
    pub refunded: i64,
    pub cancelled: i64,
    pub user_flow: String,
    pub redirect_url: Option<String>,
    pub customer_key: Option<String>,
    pub phone_number: Option<String>,
    pub profile_sub: Option<String>,
    /// JSON object of the caller's metadata.
    pub metadata: String,
    /// Vipps acknowledged the create (until then the payment exists only in paygate).
    pub confirmed: bool,
    /// Why something around the payment failed (e.g. the create was refused).
    pub failure: Option<String>,
    /// NULL: no profile asked for; pending | shared | failed.
    pub profile_status: Option<String>,
    /// When the reconciler may next poll Vipps for this payment (epoch ms).
    pub next_poll_ms: i64,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
