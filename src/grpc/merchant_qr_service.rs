//! `paygate.v1.MerchantQrService`.

use tonic::{Request, Response, Status};

use crate::auth::{Caller, Scope};

use super::{proto, status::to_status};
use crate::{
    domain::PaygateError,
    qr::{MerchantQr, MerchantQrs},
    vipps::QrFormat,
};

#[derive(Clone)]
pub struct MerchantQrApi {
    qrs: MerchantQrs,
}

impl MerchantQrApi {
    pub fn new(qrs: MerchantQrs) -> Self {
        Self { qrs }
    }

    pub fn into_server(self) -> proto::merchant_qr_service_server::MerchantQrServiceServer<Self> {
        proto::merchant_qr_service_server::MerchantQrServiceServer::new(self)
    }
}

fn format(value: i32, field: &str) -> Result<QrFormat, Status> {
    match proto::QrImageFormat::try_from(value) {
        Ok(proto::QrImageFormat::Unspecified | proto::QrImageFormat::Svg) => Ok(QrFormat::Svg),
        Ok(proto::QrImageFormat::Png) => Ok(QrFormat::Png { size: None }),
        Ok(proto::QrImageFormat::TargetUrl) => Ok(QrFormat::TargetUrl),
        Err(_) => Err(to_status(PaygateError::invalid(
            field,
            "must be a QR_IMAGE_FORMAT_* value",
        ))),
    }
}

fn qr(q: MerchantQr) -> proto::MerchantRedirectQr {
    proto::MerchantRedirectQr {
        id: q.id,
        redirect_url: q.redirect_url,
        image_url: q.image_url,
        expires_in_seconds: q.expires_in,
    }
}

#[tonic::async_trait]
impl proto::merchant_qr_service_server::MerchantQrService for MerchantQrApi {
    async fn create_merchant_redirect_qr(
        &self,
        request: Request<proto::CreateMerchantRedirectQrRequest>,
    ) -> Result<Response<proto::CreateMerchantRedirectQrResponse>, Status> {
        Caller::of(&request).require(Scope::Qr)?;
        let r = request.into_inner();
        let ttl = match r.ttl_seconds {
            0 => None,
            t => Some(t),
        };
        let created = self
            .qrs
            .create(&r.id, &r.redirect_url, ttl, format(r.format, "format")?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::CreateMerchantRedirectQrResponse {
            qr: Some(qr(created)),
        }))
    }

    async fn get_merchant_redirect_qr(
        &self,
        request: Request<proto::GetMerchantRedirectQrRequest>,
    ) -> Result<Response<proto::GetMerchantRedirectQrResponse>, Status> {
        Caller::of(&request).require(Scope::Qr)?;
        let r = request.into_inner();
        let found = self
            .qrs
            .get(&r.id, format(r.format, "format")?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::GetMerchantRedirectQrResponse {
            qr: Some(qr(found)),
        }))
    }

    async fn list_merchant_redirect_qrs(
        &self,
        request: Request<proto::ListMerchantRedirectQrsRequest>,
    ) -> Result<Response<proto::ListMerchantRedirectQrsResponse>, Status> {
        Caller::of(&request).require(Scope::Qr)?;
        let all = self
            .qrs
            .list(format(request.get_ref().format, "format")?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ListMerchantRedirectQrsResponse {
            qrs: all.into_iter().map(qr).collect(),
        }))
    }

    async fn update_merchant_redirect_qr(
        &self,
        request: Request<proto::UpdateMerchantRedirectQrRequest>,
    ) -> Result<Response<proto::UpdateMerchantRedirectQrResponse>, Status> {
        Caller::of(&request).require(Scope::Qr)?;
        let r = request.into_inner();
        let updated = self
            .qrs
            .update(&r.id, &r.redirect_url)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::UpdateMerchantRedirectQrResponse {
            qr: Some(qr(updated)),
        }))
    }

    async fn delete_merchant_redirect_qr(
        &self,
        request: Request<proto::DeleteMerchantRedirectQrRequest>,
    ) -> Result<Response<proto::DeleteMerchantRedirectQrResponse>, Status> {
        Caller::of(&request).require(Scope::Qr)?;
        self.qrs
            .delete(&request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::DeleteMerchantRedirectQrResponse {}))
    }

    async fn render_merchant_redirect_qr(
        &self,
        request: Request<proto::RenderMerchantRedirectQrRequest>,
    ) -> Result<Response<proto::RenderMerchantRedirectQrResponse>, Status> {
        Caller::of(&request).require(Scope::Qr)?;
        let r = request.into_inner();
        let png = match format(r.format, "format")? {
            QrFormat::Svg => false,
            QrFormat::Png { .. } => true,
            QrFormat::TargetUrl => return Err(to_status(PaygateError::invalid(
                "format",
                "must be QR_IMAGE_FORMAT_SVG or QR_IMAGE_FORMAT_PNG (TARGET_URL is not an image)",
            ))),
        };
        let image = self
            .qrs
            .render(&r.id, png, r.size)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::RenderMerchantRedirectQrResponse {
            image: image.bytes,
            content_type: image.content_type.to_owned(),
        }))
    }
}
