use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    /// The caller's own id for the customer.
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_key: String,
    /// Personal data: erased by DeleteCustomer.
    pub phone_number: String,
    pub profile_sub: Option<String>,
    pub shared_time_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
