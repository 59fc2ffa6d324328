//! The access-token API and the headers every call must carry.

use crate::harness::*;

#[tokio::test]
async fn access_token_values_are_all_strings() {
    let h = Harness::start().await;
    let response = h.token_request().send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let object = body.as_object().unwrap();
    for key in [
        "token_type",
        "expires_in",
        "ext_expires_in",
        "expires_on",
        "not_before",
        "resource",
        "access_token",
    ] {
        assert!(
            object.get(key).is_some_and(Value::is_string),
            "{key} must be a string: {body}"
        );
    }
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], "3600");
    let on: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    let before: i64 = body["not_before"].as_str().unwrap().parse().unwrap();
    assert_eq!(on - before, 3600);
    assert!(body["access_token"].as_str().unwrap().len() > 300);
    assert_ne!(body["access_token"], json!(h.token));

    for missing in ["client_id", "client_secret", "Ocp-Apim-Subscription-Key"] {
        let mut request = h.http.post(h.url("/accesstoken/get"));
        for (name, value) in [
            ("client_id", "id"),
            ("client_secret", "secret"),
            ("Ocp-Apim-Subscription-Key", "key"),
        ] {
            if name != missing {
                request = request.header(name, value);
            }
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "without {missing}"
        );
    }
    let stats = h.emulator().stats();
    assert_eq!(stats["tokensIssued"], 2);
    assert_eq!(stats["requests"]["token"], 5);
}

#[tokio::test]
async fn missing_or_bad_headers_are_refused() {
    let h = Harness::start().await;
    h.create_ok("headers-0001", 1000).await;
    let path = h.url("/epayment/v1/payments/headers-0001");
    let key = "0123456789abcdef0123456789abcdef";

    let no_auth = h
        .http
        .get(&path)
        .header("Ocp-Apim-Subscription-Key", key)
        .header("Merchant-Serial-Number", MSN);
    assert_eq!(
        no_auth.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let lower_bearer = h
        .http
        .get(&path)
        .header("Authorization", format!("bearer {}", h.token))
        .header("Ocp-Apim-Subscription-Key", key)
        .header("Merchant-Serial-Number", MSN);
    assert_eq!(
        lower_bearer.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let made_up = h
        .http
        .get(&path)
        .bearer_auth("not-a-token")
        .header("Ocp-Apim-Subscription-Key", key);
    assert_eq!(
        made_up
            .header("Merchant-Serial-Number", MSN)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let no_key = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Merchant-Serial-Number", MSN);
    assert_eq!(
        no_key.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let no_msn = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Ocp-Apim-Subscription-Key", key);
    assert_problem(
        no_msn.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "Missing required parameter",
    )
    .await;
    let bad_msn = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Ocp-Apim-Subscription-Key", key)
        .header("Merchant-Serial-Number", "12ab");
    assert_problem(
        bad_msn.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "Invalid Merchant-Serial-Number",
    )
    .await;

    let no_idempotency = h
        .api(Method::POST, "/epayment/v1/payments")
        .json(&web_payment("headers-0002", 1000));
    assert_problem(
        no_idempotency.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "Missing required parameter",
    )
    .await;
    let long_key = h
        .create(&web_payment("headers-0002", 1000), &"k".repeat(51))
        .await;
    assert_problem(long_key, StatusCode::BAD_REQUEST, "Invalid Idempotency-Key").await;
    let no_capture_key = h
        .api(Method::POST, "/epayment/v1/payments/headers-0001/capture")
        .json(&json!({"modificationAmount": {"currency": "NOK", "value": 100}}));
    assert_problem(
        no_capture_key.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "Missing required parameter",
    )
    .await;
    assert!(h.emulator().payment_view("headers-0002").is_none());
}

#[tokio::test]
async fn revoked_tokens_get_401_until_refreshed() {
    let mut h = Harness::start().await;
    h.create_ok("revoke-0001", 1_000).await;
    let revoked = h
        .control(Method::POST, "/emulator/tokens/revoke", None)
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let refused = h
        .api(Method::GET, "/epayment/v1/payments/revoke-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    h.token = h.fetch_token().await;
    assert_eq!(h.get("revoke-0001").await["state"], "CREATED");
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let config = EmulatorConfig {
        token_ttl: Duration::ZERO,
        ..EmulatorConfig::default()
    };
    let h = Harness::with_config(config).await;
    let response = h
        .api(Method::GET, "/epayment/v1/payments/anything-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
