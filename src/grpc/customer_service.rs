//! `paygate.v1.CustomerService`.

use tonic::{Request, Response, Status};

use super::{convert, proto, status::to_status, validate};
use crate::payments::Payments;

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
        let key = validate::customer_key(&request.get_ref().customer_key).map_err(to_status)?;
        let c = self.payments.customer(&key).await.map_err(to_status)?;
        Ok(Response::new(proto::GetCustomerResponse {
            customer: Some(proto::CustomerProfile {
                customer_key: c.customer_key,
                phone_number: c.phone_number.expose().to_owned(),
                profile_sub: c.profile_sub.unwrap_or_default(),
                shared_time: Some(convert::timestamp(c.shared_time)),
            }),
        }))
    }

    async fn delete_customer(
        &self,
        request: Request<proto::DeleteCustomerRequest>,
    ) -> Result<Response<proto::DeleteCustomerResponse>, Status> {
        let key = validate::customer_key(&request.get_ref().customer_key).map_err(to_status)?;
        self.payments
            .delete_customer(&key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::DeleteCustomerResponse {}))
    }
}
