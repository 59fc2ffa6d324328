//! The taxi flow: phone-number sharing, known customers, receipts, merchant-redirect QR codes.

use paygate::grpc::proto::{
    self, customer_service_client::CustomerServiceClient,
    merchant_qr_service_client::MerchantQrServiceClient, PaymentEventName,
};
use tonic::Code;

use crate::helpers::*;

const RIDER_PHONE: &str = "4798765432";

fn taxi_receipt(total: i64, tip: i64) -> proto::Receipt {
    let fare = total - tip;
    let tax = fare * 12 / 112;
    proto::Receipt {
        order_lines: vec![proto::OrderLine {
            name: "Taxi fare Oslo S - Majorstuen".into(),
            id: "fare".into(),
            total_amount: fare,
            total_amount_excluding_tax: fare - tax,
            total_tax_amount: tax,
            tax_percentage: 12,
            unit_info: Some(proto::UnitInfo {
                unit_price: fare,
                quantity: "1".into(),
                quantity_unit: "PCS".into(),
            }),
            ..Default::default()
        }],
        bottom_line: Some(proto::BottomLine {
            currency: "NOK".into(),
            tip_amount: tip,
            pos_id: "taxi-34".into(),
            receipt_number: "0527013501".into(),
        }),
    }
}

async fn customers(app: &TestApp) -> CustomerServiceClient<tonic::transport::Channel> {
    CustomerServiceClient::connect(format!("http://{}", app.grpc_addr))
        .await
        .unwrap()
}

async fn approve_as(app: &TestApp, reference: &str, phone: &str) {
    let status = app
        .http()
        .post(format!(
            "{}/emulator/payments/{reference}/approve",
            app.emulator_url
        ))
        .json(&serde_json::json!({ "phoneNumber": phone }))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "approve: {status}");
}

async fn shared_payment(
    stream: &mut tonic::Streaming<proto::StreamPaymentEventsResponse>,
) -> proto::PaymentEvent {
    loop {
        let e = next_event(stream).await;
        if e.name() == PaymentEventName::ProfileShared {
            return e;
        }
    }
}

#[tokio::test]
async fn phone_is_shared_stored_and_used_for_the_next_push() {
    let mut app = spawn_app().await;
    let mut stream = app.subscribe(Some(0), &[]).await;
    let mut req = push_request(35000);
    req.customer = Some(proto::Customer {
        phone_number: RIDER_PHONE.into(),
    });
    req.customer_key = "rider-1".into();
    req.profile_scopes = vec!["phoneNumber".into()];
    req.receipt = Some(taxi_receipt(35000, 2000));
    let first = app
        .client
        .create_payment_request(req)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let view = app.emulator.payment_view(&first.reference).unwrap();
    assert_eq!(
        view["receipt"]["bottomLine"]["tipAmount"], 2000,
        "the receipt reached Vipps"
    );

    approve_as(&app, &first.reference, RIDER_PHONE).await;
    let shared = shared_payment(&mut stream).await;
    assert_eq!(shared.reference, first.reference);
    let snapshot = shared.payment.unwrap();
    assert_eq!(snapshot.phone_number, RIDER_PHONE);
    assert!(!snapshot.profile_sub.is_empty());

    let mut customers = customers(&app).await;
    let c = customers
        .get_customer(proto::GetCustomerRequest {
            customer_key: "rider-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(c.phone_number, RIDER_PHONE);
    assert_eq!(c.profile_sub, snapshot.profile_sub);
    assert!(c.shared_time.is_some());

    app.capture(&first.reference, None, "fare-1").await.unwrap();

    // Next ride: no phone number, only the rider's key.
    let mut next = push_request(18000);
    next.customer = None;
    next.customer_key = "rider-1".into();
    let second = app
        .client
        .create_payment_request(next)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(second.phone_number, RIDER_PHONE);
    // Approved without naming a phone: the emulator uses the number the create pushed to.
    app.approve(&second.reference).await;
    let view = app.emulator.payment_view(&second.reference).unwrap();
    assert_eq!(
        view["customerPhoneNumber"], RIDER_PHONE,
        "pushed straight to the known phone"
    );
    app.stop().await;
}

#[tokio::test]
async fn push_without_phone_needs_a_known_customer() {
    let mut app = spawn_app().await;
    let mut req = push_request(10000);
    req.customer = None;
    req.customer_key = "never-seen".into();
    let err = app.client.create_payment_request(req).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["customer.phone_number"]);
    assert!(err.message().contains("customer_key"), "{}", err.message());
    assert_eq!(app.requests("create"), 0);
    app.stop().await;
}

#[tokio::test]
async fn delete_customer_erases_personal_data() {
    let mut app = spawn_app().await;
    let mut stream = app.subscribe(Some(0), &[]).await;
    let mut req = push_request(10000);
    req.customer_key = "rider-erase".into();
    req.profile_scopes = vec!["phoneNumber".into()];
    let reference = app
        .client
        .create_payment_request(req)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
        .reference;
    approve_as(&app, &reference, RIDER_PHONE).await;
    shared_payment(&mut stream).await;

    let mut customers = customers(&app).await;
    customers
        .delete_customer(proto::DeleteCustomerRequest {
            customer_key: "rider-erase".into(),
        })
        .await
        .unwrap();
    let err = customers
        .get_customer(proto::GetCustomerRequest {
            customer_key: "rider-erase".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let p = app.get(&reference).await;
    assert!(p.phone_number.is_empty() && p.profile_sub.is_empty());
    for e in app.events(&reference).await {
        let snapshot = e.payment.clone().unwrap();
        assert!(
            snapshot.phone_number.is_empty(),
            "{:?} still has the phone",
            e.name()
        );
    }
    let mut again = push_request(10000);
    again.customer = None;
    again.customer_key = "rider-erase".into();
    assert_eq!(
        app.client
            .create_payment_request(again)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let err = customers
        .delete_customer(proto::DeleteCustomerRequest {
            customer_key: "rider-erase".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn late_profile_sub_is_waited_for() {
    let mut app = spawn_app().await;
    app.emulator.set_profile_lag(3);
    let mut stream = app.subscribe(Some(0), &[]).await;
    let mut req = push_request(10000);
    req.customer_key = "rider-lag".into();
    req.profile_scopes = vec!["phoneNumber".into()];
    let reference = app
        .client
        .create_payment_request(req)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
        .reference;
    approve_as(&app, &reference, RIDER_PHONE).await;
    let shared = shared_payment(&mut stream).await;
    assert_eq!(shared.payment.unwrap().phone_number, RIDER_PHONE);
    app.stop().await;
}

#[tokio::test]
async fn userinfo_refusal_is_recorded_and_nothing_is_shared() {
    let mut app = spawn_app().await;
    app.fault(serde_json::json!({"match": "userinfo", "count": 1000, "status": 403}));
    let mut stream = app.subscribe(Some(0), &[]).await;
    let mut req = push_request(10000);
    req.customer_key = "rider-refused".into();
    req.profile_scopes = vec!["phoneNumber".into()];
    let reference = app
        .client
        .create_payment_request(req)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
        .reference;
    approve_as(&app, &reference, RIDER_PHONE).await;
    // AUTHORIZED arrives; wait until the emulator saw the Userinfo call, then check.
    loop {
        if next_event(&mut stream).await.name() == PaymentEventName::Authorized {
            break;
        }
    }
    let emulator = app.emulator.clone();
    eventually("userinfo was asked", || {
        let n = emulator.stats()["requests"]["userinfo"]
            .as_u64()
            .unwrap_or(0);
        async move { n > 0 }
    })
    .await;
    // 403 is paygate's own credentials problem: stays pending, never shared.
    let mut customers = customers(&app).await;
    let err = customers
        .get_customer(proto::GetCustomerRequest {
            customer_key: "rider-refused".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let names: Vec<_> = app
        .events(&reference)
        .await
        .iter()
        .map(|e| e.name())
        .collect();
    assert!(!names.contains(&PaymentEventName::ProfileShared));
    app.stop().await;
}

#[tokio::test]
async fn unknown_sub_fails_definitely() {
    let mut app = spawn_app().await;
    app.fault(serde_json::json!({"match": "userinfo", "count": 1000, "status": 404}));
    let mut req = push_request(10000);
    req.customer_key = "rider-404".into();
    req.profile_scopes = vec!["phoneNumber".into()];
    let reference = app
        .client
        .create_payment_request(req)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
        .reference;
    approve_as(&app, &reference, RIDER_PHONE).await;
    let emulator = app.emulator.clone();
    eventually("userinfo was asked", || {
        let n = emulator.stats()["requests"]["userinfo"]
            .as_u64()
            .unwrap_or(0);
        async move { n > 0 }
    })
    .await;
    let mut customers = customers(&app).await;
    let err = customers
        .get_customer(proto::GetCustomerRequest {
            customer_key: "rider-404".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let names: Vec<_> = app
        .events(&reference)
        .await
        .iter()
        .map(|e| e.name())
        .collect();
    assert!(!names.contains(&PaymentEventName::ProfileShared));
    app.stop().await;
}

#[tokio::test]
async fn merchant_redirect_qr_crud_and_local_rendering() {
    let app = spawn_app().await;
    let mut qrs = MerchantQrServiceClient::connect(format!("http://{}", app.grpc_addr))
        .await
        .unwrap();
    let created = qrs
        .create_merchant_redirect_qr(proto::CreateMerchantRedirectQrRequest {
            id: "taxi-34".into(),
            redirect_url: "https://fare.example.com/taxi/34".into(),
            ttl_seconds: 0,
            format: proto::QrImageFormat::Svg.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .qr
        .unwrap();
    assert_eq!(created.expires_in_seconds, -1);
    assert!(
        created.image_url.starts_with("http"),
        "{}",
        created.image_url
    );

    let dup = qrs
        .create_merchant_redirect_qr(proto::CreateMerchantRedirectQrRequest {
            id: "taxi-34".into(),
            redirect_url: "https://fare.example.com/taxi/34".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let bad = qrs
        .create_merchant_redirect_qr(proto::CreateMerchantRedirectQrRequest {
            id: "taxi/35".into(),
            redirect_url: "http://fare.example.com".into(),
            ttl_seconds: 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&bad), ["id", "redirect_url", "ttl_seconds"]);

    let target = qrs
        .get_merchant_redirect_qr(proto::GetMerchantRedirectQrRequest {
            id: "taxi-34".into(),
            format: proto::QrImageFormat::TargetUrl.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .qr
        .unwrap()
        .image_url;
    assert_ne!(
        target, "https://fare.example.com/taxi/34",
        "the code holds Vipps' URL, not ours"
    );

    // The printed code: render locally, decode it, compare with the QR API's content.
    let png = qrs
        .render_merchant_redirect_qr(proto::RenderMerchantRedirectQrRequest {
            id: "taxi-34".into(),
            format: proto::QrImageFormat::Png.into(),
            size: 400,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(png.content_type, "image/png");
    assert_eq!(decode_png(&png.image), target);
    let svg = qrs
        .render_merchant_redirect_qr(proto::RenderMerchantRedirectQrRequest {
            id: "taxi-34".into(),
            format: proto::QrImageFormat::Svg.into(),
            size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(String::from_utf8(svg.image).unwrap().contains("<svg"));

    // Re-point the sticker: same printed content, new destination.
    qrs.update_merchant_redirect_qr(proto::UpdateMerchantRedirectQrRequest {
        id: "taxi-34".into(),
        redirect_url: "https://fare.example.com/taxi/34/v2".into(),
    })
    .await
    .unwrap();
    let listed = qrs
        .list_merchant_redirect_qrs(proto::ListMerchantRedirectQrsRequest {
            format: proto::QrImageFormat::TargetUrl.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .qrs;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].image_url, target);
    assert_eq!(
        listed[0].redirect_url,
        "https://fare.example.com/taxi/34/v2"
    );

    qrs.delete_merchant_redirect_qr(proto::DeleteMerchantRedirectQrRequest {
        id: "taxi-34".into(),
    })
    .await
    .unwrap();
    let gone = qrs
        .get_merchant_redirect_qr(proto::GetMerchantRedirectQrRequest {
            id: "taxi-34".into(),
            format: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    app.stop().await;
}

fn decode_png(bytes: &[u8]) -> String {
    let grey = image::load_from_memory(bytes).unwrap().to_luma8();
    let (w, h) = (grey.width() as usize, grey.height() as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        grey.get_pixel(x as u32, y as u32).0[0]
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}
