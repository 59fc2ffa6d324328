//! The emulator's own control API (test-only conveniences).

use crate::harness::*;

#[tokio::test]
async fn convenience_approve_needs_no_token() {
    let h = Harness::start().await;
    let mut push = web_payment("easy-0001", 1_000);
    push["userFlow"] = json!("PUSH_MESSAGE");
    push["customer"] = json!({"phoneNumber": "4796666666"});
    assert_eq!(
        h.create(&push, "easy-1").await.status(),
        StatusCode::CREATED
    );
    let approved = h
        .control(Method::POST, "/emulator/payments/easy-0001/approve", None)
        .await;
    assert_eq!(approved.status(), StatusCode::OK);
    let view: Value = approved.json().await.unwrap();
    assert_eq!(view["state"], "AUTHORIZED");
    assert_eq!(view["customerPhoneNumber"], "4796666666");
    assert_eq!(h.get("easy-0001").await["state"], "AUTHORIZED");
    let again = h
        .control(Method::POST, "/emulator/payments/easy-0001/approve", None)
        .await;
    assert_problem(again, StatusCode::BAD_REQUEST, "Approve failed").await;

    // As curl -d sends it (form content type), naming the approver; scope gives a sub.
    h.create_scoped("easy-0002", "phoneNumber").await;
    let approved = h
        .http
        .post(h.url("/emulator/payments/easy-0002/approve"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"phoneNumber": "4797777777"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::OK);
    let view: Value = approved.json().await.unwrap();
    assert_eq!(view["customerPhoneNumber"], "4797777777");
    let sub = h.sub_of("easy-0002").await;
    assert_eq!(view["sub"], json!(sub));
    let info: Value = h.userinfo(&sub).await.json().await.unwrap();
    assert_eq!(info["phone_number"], "4797777777");

    h.create_ok("easy-0003", 1_000).await;
    let bad_phone = h
        .control(
            Method::POST,
            "/emulator/payments/easy-0003/approve",
            Some(json!({"phoneNumber": "91234567"})),
        )
        .await;
    assert_problem(bad_phone, StatusCode::BAD_REQUEST, "Invalid phone number").await;
    let unknown = h
        .control(Method::POST, "/emulator/payments/easy-9999/approve", None)
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "Reference not found").await;

    // In process, for tests that drive paygate.
    assert!(h
        .emulator()
        .approve_payment("easy-0003", Some("123"))
        .unwrap_err()
        .starts_with("Invalid phone number"));
    let view = h.emulator().approve_payment("easy-0003", None).unwrap();
    assert_eq!(view["customerPhoneNumber"], "4712345678");
    assert!(h
        .emulator()
        .approve_payment("easy-0003", None)
        .unwrap_err()
        .starts_with("Approve failed"));
    // The control API is not the Vipps API: nothing counted as a force-approve.
    assert_eq!(h.emulator().stats()["requests"]["approve"], 0);
}
