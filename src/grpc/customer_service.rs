//! `paygate.v1.CustomerService`.

use tonic::{Request, Response, Status};

use super::{
    audit::{self, Audited},
    convert::{self, Pii},
    proto,
    status::to_status,
    validate,
};
use crate::{
    auth::{Caller, Scope},
    payments::Payments,
};

#[derive(Clone)]
pub struct CustomerApi {
    payments: Payments,
}

impl CustomerApi {
    pub fn new(payments: Payments) -> Self {
        Self { payments }
    }

    pub fn into_server(self) -> proto::customer_service_server::CustomerServiceServer<Self> {
        proto::customer_service_server::CustomerServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl proto::customer_service_server::CustomerService for CustomerApi {
    async fn get_customer(
        &self,
        request: Request<proto::GetCustomerRequest>,
    ) -> Result<Response<proto::GetCustomerResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require(Scope::Customers)?;
        let key = validate::customer_key(&request.get_ref().customer_key).map_err(to_status)?;
        let c = self.payments.customer(&key).await.map_err(to_status)?;
        Ok(Response::new(proto::GetCustomerResponse {
            customer: Some(convert::customer(c, Pii::for_caller(&caller))),
        }))
    }

    async fn delete_customer(
        &self,
        request: Request<proto::DeleteCustomerRequest>,
    ) -> Result<Response<proto::DeleteCustomerResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require(Scope::Customers)?;
        let key = validate::customer_key(&request.get_ref().customer_key).map_err(to_status)?;
        let result = self
            .payments
            .delete_customer(&key)
            .await
            .map(|erased| {
                Response::new(proto::DeleteCustomerResponse {
                    payments_scrubbed: erased.payments,
                    events_scrubbed: erased.events,
                })
            })
            .map_err(to_status);
        let audited = Audited {
            rpc: "DeleteCustomer",
            subject: key.as_str(),
            idempotency_key: "",
        };
        audit::record(&caller, &audited, &result);
        result
    }

    async fn erase_phone_number(
        &self,
        request: Request<proto::ErasePhoneNumberRequest>,
    ) -> Result<Response<proto::ErasePhoneNumberResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require(Scope::Customers)?;
        let number = validate::phone_number(&request.get_ref().phone_number).map_err(to_status)?;
        let result = self
            .payments
            .erase_phone_number(&number)
            .await
            .map(|erased| {
                Response::new(proto::ErasePhoneNumberResponse {
                    payments_scrubbed: erased.payments,
                    events_scrubbed: erased.events,
                })
            })
            .map_err(to_status);
        let masked = number.masked();
        let audited = Audited {
            rpc: "ErasePhoneNumber",
            subject: &masked,
            idempotency_key: "",
        };
        audit::record(&caller, &audited, &result);
        result
    }
}
