//! `paygate qr create --id taxi-34 --redirect-url https://… --out taxi-34.svg`

use anyhow::Context as _;

use paygate::grpc::proto::{self, merchant_qr_service_client::MerchantQrServiceClient};

/// Creates (or re-points) a merchant-redirect QR code and writes a printable image.
pub async fn create(grpc: &str, id: &str, redirect_url: &str, out: &str) -> anyhow::Result<()> {
    let mut qrs = MerchantQrServiceClient::connect(grpc.to_owned())
        .await
        .with_context(|| format!("connecting to paygate at {grpc}"))?;
    let request = proto::CreateMerchantRedirectQrRequest {
        id: id.to_owned(),
        redirect_url: redirect_url.to_owned(),
        ttl_seconds: 0,
        format: proto::QrImageFormat::TargetUrl.into(),
    };
    match qrs.create_merchant_redirect_qr(request).await {
        Ok(_) => println!("created QR code {id} -> {redirect_url}"),
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            qrs.update_merchant_redirect_qr(proto::UpdateMerchantRedirectQrRequest {
                id: id.to_owned(),
                redirect_url: redirect_url.to_owned(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
            println!("QR code {id} existed: re-pointed it to {redirect_url}");
        }
        Err(s) => anyhow::bail!("{}", s.message()),
    }
    let png = out.to_ascii_lowercase().ends_with(".png");
    let image = qrs
        .render_merchant_redirect_qr(proto::RenderMerchantRedirectQrRequest {
            id: id.to_owned(),
            format: if png {
                proto::QrImageFormat::Png
            } else {
                proto::QrImageFormat::Svg
            }
            .into(),
            size: 800,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    std::fs::write(out, &image.image).with_context(|| format!("writing {out}"))?;
    println!(
        "wrote {out} ({}, {} bytes)",
        image.content_type,
        image.image.len()
    );
    Ok(())
}
