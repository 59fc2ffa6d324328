//! The Userinfo API: consented fields for the approving user, refusals, late profile.sub.

use crate::harness::*;

impl Harness {
    /// Creates a WEB_REDIRECT payment asking for `scope`.
    pub async fn create_scoped(&self, reference: &str, scope: &str) {
        let mut body = web_payment(reference, 1_000);
        body["profile"] = json!({ "scope": scope });
        let response = self.create(&body, &format!("create-{reference}")).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn approve_as(&self, reference: &str, phone: &str) {
        let response = self
            .api(
                Method::POST,
                &format!("/epayment/v1/test/payments/{reference}/approve"),
            )
            .json(&json!({"customer": {"phoneNumber": phone}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    pub async fn userinfo(&self, sub: &str) -> Response {
        self.api(Method::GET, &format!("/vipps-userinfo-api/userinfo/{sub}"))
            .send()
            .await
            .unwrap()
    }

    pub async fn sub_of(&self, reference: &str) -> String {
        self.get(reference).await["profile"]["sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{reference} has no profile.sub"))
            .to_string()
    }
}

/// Asserts a `UserinfoError` (whose `status` is a string); returns the body.
async fn assert_userinfo_error(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], json!(status.as_u16().to_string()), "{body}");
    for key in ["type", "title", "detail", "instance"] {
        assert!(body[key].is_string(), "{key} in {body}");
    }
    body
}

#[tokio::test]
async fn userinfo_answers_the_consented_fields_for_the_approving_user() {
    let h = Harness::start().await;
    h.create_scoped("user-0001", "name phoneNumber email address birthDate")
        .await;
    h.approve_as("user-0001", "4791111111").await;
    let sub = h.sub_of("user-0001").await;
    assert_eq!(
        h.emulator().payment_view("user-0001").unwrap()["sub"],
        json!(sub)
    );

    let response = h.userinfo(&sub).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["sub"], json!(sub));
    assert_eq!(info["phone_number"], "4791111111");
    let given = info["given_name"].as_str().unwrap();
    let family = info["family_name"].as_str().unwrap();
    assert_eq!(info["name"], format!("{given} {family}"));
    assert!(info["email"].as_str().unwrap().contains('@'));
    assert_eq!(info["email_verified"], true);
    assert!(
        chrono::NaiveDate::parse_from_str(info["birthdate"].as_str().unwrap(), "%Y-%m-%d").is_ok()
    );
    for key in [
        "street_address",
        "postal_code",
        "region",
        "country",
        "formatted",
    ] {
        assert!(info["address"][key].is_string(), "{key} in {info}");
    }
    assert!(info.get("nin").is_none(), "{info}");

    // Same number, same sales unit: same sub, and the same made-up profile.
    h.create_scoped("user-0002", "phoneNumber").await;
    h.approve_as("user-0002", "4791111111").await;
    assert_eq!(h.sub_of("user-0002").await, sub);
    let again: Value = h.userinfo(&sub).await.json().await.unwrap();
    assert_eq!(again["name"], info["name"]);

    // The customer of a PUSH_MESSAGE payment approves when no body names one.
    let mut push = web_payment("user-push-01", 1_000);
    push["userFlow"] = json!("PUSH_MESSAGE");
    push["customer"] = json!({"phoneNumber": "4792222222"});
    push["profile"] = json!({"scope": "phoneNumber"});
    assert_eq!(
        h.create(&push, "user-push").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(h.approve("user-push-01").await.status(), StatusCode::OK);
    let push_sub = h.sub_of("user-push-01").await;
    assert_ne!(push_sub, sub);
    let push_info: Value = h.userinfo(&push_sub).await.json().await.unwrap();
    assert_eq!(
        push_info,
        json!({"sub": push_sub, "phone_number": "4792222222"})
    );

    // Without a scope there is no sub, and so nothing to ask Userinfo for.
    h.create_ok("user-noscope", 1_000).await;
    h.approve_as("user-noscope", "4793333333").await;
    assert_eq!(h.get("user-noscope").await["profile"], json!({}));

    // The default phone number approves when nobody else is named.
    h.create_scoped("user-default", "phoneNumber").await;
    assert_eq!(h.approve("user-default").await.status(), StatusCode::OK);
    let default_sub = h.sub_of("user-default").await;
    let default_info: Value = h.userinfo(&default_sub).await.json().await.unwrap();
    assert_eq!(default_info["phone_number"], "4712345678");
    assert_eq!(
        h.emulator().user_view(&default_sub).unwrap()["phoneNumber"],
        "4712345678"
    );
    assert_eq!(h.emulator().stats()["requests"]["userinfo"], 4);
}

#[tokio::test]
async fn userinfo_refusals() {
    let h = Harness::start().await;
    h.create_scoped("refuse-0001", "name").await;
    h.approve_as("refuse-0001", "4794444444").await;
    let sub = h.sub_of("refuse-0001").await;
    let path = h.url(&format!("/vipps-userinfo-api/userinfo/{sub}"));
    let key = "0123456789abcdef0123456789abcdef";

    let unknown = h.userinfo("c06c4afe-d9e1-4c5d-939a-177d752a0944").await;
    assert_userinfo_error(unknown, StatusCode::NOT_FOUND).await;

    let no_token = h.http.get(&path).header("Ocp-Apim-Subscription-Key", key);
    assert_eq!(
        no_token.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let no_key = h.http.get(&path).bearer_auth(&h.token);
    assert_eq!(
        no_key.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // The MSN header is optional, but a sub is not for another sales unit's keys.
    let no_msn = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Ocp-Apim-Subscription-Key", key);
    assert_eq!(no_msn.send().await.unwrap().status(), StatusCode::OK);
    let other_msn = h
        .http
        .get(&path)
        .bearer_auth(&h.token)
        .header("Ocp-Apim-Subscription-Key", key)
        .header("Merchant-Serial-Number", "654321");
    assert_userinfo_error(other_msn.send().await.unwrap(), StatusCode::FORBIDDEN).await;

    // Injected faults reach Userinfo too.
    h.emulator().inject_fault(Fault {
        path_contains: Some("userinfo".into()),
        status: Some(503),
        ..Fault::default()
    });
    assert_eq!(
        h.userinfo(&sub).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(h.userinfo(&sub).await.status(), StatusCode::OK);

    // Consent older than 168 hours is refused.
    let backdate_path = format!("/emulator/users/{sub}/backdate-consent");
    let backdate = |hours: u32| {
        h.control(
            Method::POST,
            &backdate_path,
            Some(json!({ "hours": hours })),
        )
    };
    assert_eq!(backdate(167).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(h.userinfo(&sub).await.status(), StatusCode::OK);
    assert_eq!(backdate(169).await.status(), StatusCode::NO_CONTENT);
    let expired = assert_userinfo_error(h.userinfo(&sub).await, StatusCode::FORBIDDEN).await;
    assert!(
        expired["detail"].as_str().unwrap().contains("168"),
        "{expired}"
    );
    // A new consent (another scoped approval) makes it fetchable again.
    h.create_scoped("refuse-0002", "email").await;
    h.approve_as("refuse-0002", "4794444444").await;
    let info: Value = h.userinfo(&sub).await.json().await.unwrap();
    assert!(
        info["name"].is_string() && info["email"].is_string(),
        "{info}"
    );
    assert!(!h
        .emulator()
        .backdate_consent("no-such-sub", Duration::from_secs(3600)));
    let view: Value = h
        .control(Method::GET, &format!("/emulator/users/{sub}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["scopes"], json!(["email", "name"]));
    assert_eq!(view["msn"], MSN);
    assert_eq!(
        h.control(Method::GET, "/emulator/users/nobody", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.emulator().stats()["requests"]["userinfo"], 10);
}

#[tokio::test]
async fn profile_sub_can_arrive_late() {
    let h = Harness::start().await;
    h.create_scoped("lag-0001", "phoneNumber").await;
    h.authorized("lag-plain", 1_000).await;
    let lag = h
        .control(
            Method::POST,
            "/emulator/profile-lag",
            Some(json!({"getsWithoutSub": 2})),
        )
        .await;
    assert_eq!(lag.status(), StatusCode::NO_CONTENT);
    // Not used up by payments without a sub, nor before approval.
    assert_eq!(h.get("lag-plain").await["profile"], json!({}));
    assert_eq!(h.get("lag-0001").await["profile"], json!({}));
    h.approve_as("lag-0001", "4795555555").await;
    assert_eq!(h.get("lag-0001").await["profile"], json!({}));
    assert_eq!(h.get("lag-0001").await["state"], "AUTHORIZED");
    let sub = h.sub_of("lag-0001").await;
    assert_eq!(h.sub_of("lag-0001").await, sub);

    h.emulator().set_profile_lag(1);
    assert_eq!(h.get("lag-0001").await["profile"], json!({}));
    assert_eq!(h.sub_of("lag-0001").await, sub);
    let bad = h
        .control(
            Method::POST,
            "/emulator/profile-lag",
            Some(json!({"gets": 1})),
        )
        .await;
    assert_problem(bad, StatusCode::BAD_REQUEST, "Invalid profile lag").await;
}
