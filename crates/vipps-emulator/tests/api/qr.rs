//! The QR API: merchant-redirect codes, images that scan to their content.

use crate::harness::*;

const QR_PATH: &str = "/qr/v1/merchant-redirect";

impl Harness {
    fn qr(&self, method: Method, path: &str, accept: &str) -> RequestBuilder {
        self.api(method, path).header("Accept", accept)
    }

    async fn qr_create(&self, body: &Value, accept: &str) -> Response {
        self.qr(Method::POST, QR_PATH, accept)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The raw QR content of a code (`Accept: text/targetUrl`).
    async fn qr_content(&self, id: &str) -> String {
        let response = self
            .qr(Method::GET, &format!("{QR_PATH}/{id}"), "text/targetUrl")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["url"].as_str().unwrap().to_string()
    }

    /// A GET that does not follow redirects: returns status and `Location`.
    async fn scan(&self, path_or_url: &str) -> (StatusCode, Option<String>) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            self.url(path_or_url)
        };
        let response = client.get(url).send().await.unwrap();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        (response.status(), location)
    }
}

/// Asserts a `QrErrorResponse`; returns the body.
async fn assert_qr_error(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    for key in ["type", "title", "detail", "instance"] {
        assert!(body[key].is_string(), "{key} in {body}");
    }
    body
}

fn invalid_param_names(problem: &Value) -> Vec<String> {
    problem["invalidParams"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalidParams in {problem}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn qr_merchant_redirect_create_per_accept_and_validation() {
    let h = Harness::start().await;
    let base = h.running.base_url();
    let cases = [
        (
            "stand-svg",
            "image/svg+xml",
            format!("{base}/emulator/qr-images/"),
        ),
        (
            "stand-any",
            "image/*",
            format!("{base}/emulator/qr-images/"),
        ),
        (
            "stand-png",
            "image/png",
            format!("{base}/emulator/qr-images/"),
        ),
        (
            "stand-text",
            "text/targetUrl",
            "https://qr.vipps.no/28/2/01/031/".to_string(),
        ),
    ];
    for (id, accept, prefix) in &cases {
        let body = json!({"id": id, "redirectUrl": "https://example.com/taxi/34?stand=1"});
        let response = h.qr_create(&body, accept).await;
        assert_eq!(response.status(), StatusCode::OK, "{accept}");
        let created: Value = response.json().await.unwrap();
        assert_eq!(created["id"], json!(id));
        assert_eq!(
            created["redirectUrl"],
            "https://example.com/taxi/34?stand=1"
        );
        assert_eq!(created["expiresIn"], -1);
        let url = created["url"].as_str().unwrap();
        assert!(url.starts_with(prefix.as_str()), "{accept}: {url}");
        match *accept {
            "image/png" => assert!(url.contains(".png?size=800"), "{url}"),
            "text/targetUrl" => {}
            _ => assert!(url.contains(".svg"), "{url}"),
        }
    }
    let with_ttl = h
        .qr_create(
            &json!({"id": "poster 1 æøå", "redirectUrl": "https://example.com", "ttl": 600}),
            "image/png",
        )
        .await;
    assert_eq!(with_ttl.status(), StatusCode::OK);
    let with_ttl: Value = with_ttl.json().await.unwrap();
    let left = with_ttl["expiresIn"].as_i64().unwrap();
    assert!((590..=600).contains(&left), "{with_ttl}");

    let duplicate = h
        .qr_create(
            &json!({"id": "stand-svg", "redirectUrl": "https://example.com/other"}),
            "image/png",
        )
        .await;
    let conflict = assert_qr_error(duplicate, StatusCode::CONFLICT).await;
    assert_eq!(conflict["id"], "stand-svg");

    let invalid = [
        (
            json!({"id": "a/b", "redirectUrl": "https://example.com"}),
            "Id",
        ),
        (
            json!({"id": "", "redirectUrl": "https://example.com"}),
            "Id",
        ),
        (
            json!({"id": "x".repeat(129), "redirectUrl": "https://example.com"}),
            "Id",
        ),
        (json!({"redirectUrl": "https://example.com"}), "Id"),
        (
            json!({"id": "stand-9", "redirectUrl": "http://example.com"}),
            "RedirectUrl",
        ),
        (
            json!({"id": "stand-9", "redirectUrl": "https://example.com/a,b"}),
            "RedirectUrl",
        ),
        (json!({"id": "stand-9"}), "RedirectUrl"),
        (
            json!({"id": "stand-9", "redirectUrl": "https://example.com", "ttl": 10}),
            "Ttl",
        ),
        (
            json!({"id": "stand-9", "redirectUrl": "https://example.com", "ttl": 2_147_483_648_i64}),
            "Ttl",
        ),
    ];
    for (body, field) in invalid {
        let response = h.qr_create(&body, "image/png").await;
        let problem = assert_qr_error(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(invalid_param_names(&problem), [field], "{body}");
    }
    let both = h
        .qr_create(
            &json!({"id": "a/b", "redirectUrl": "http://x"}),
            "image/png",
        )
        .await;
    let problem = assert_qr_error(both, StatusCode::BAD_REQUEST).await;
    assert_eq!(invalid_param_names(&problem), ["Id", "RedirectUrl"]);

    // Accept is required, and must be one of the four.
    let body = json!({"id": "stand-9", "redirectUrl": "https://example.com"});
    let no_accept = h.qr_create(&body, "").await;
    let problem = assert_qr_error(no_accept, StatusCode::BAD_REQUEST).await;
    assert_eq!(invalid_param_names(&problem), ["Accept"]);
    for accept in ["application/json", "*/*", "image/jpeg"] {
        let response = h.qr_create(&body, accept).await;
        assert_qr_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    let listed_without_accept = h.qr(Method::GET, QR_PATH, "").send().await.unwrap();
    assert_qr_error(listed_without_accept, StatusCode::BAD_REQUEST).await;
    let not_json = h
        .qr(Method::POST, QR_PATH, "image/png")
        .header("Content-Type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_qr_error(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let bad_size = h
        .qr(Method::POST, QR_PATH, "image/png")
        .header("Size", "99")
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = assert_qr_error(bad_size, StatusCode::BAD_REQUEST).await;
    assert_eq!(invalid_param_names(&problem), ["Size"]);
    let no_token = h
        .http
        .post(h.url(QR_PATH))
        .header("Accept", "image/png")
        .header("Ocp-Apim-Subscription-Key", "key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert!(h.emulator().qr_redirect_url("stand-9").is_none());
    assert_eq!(h.emulator().stats()["requests"]["qr"], 24);
}

#[tokio::test]
async fn qr_merchant_redirect_list_get_update_delete_and_scan() {
    let h = Harness::start().await;
    for id in ["taxi-1", "taxi-2"] {
        let body = json!({"id": id, "redirectUrl": format!("https://example.com/{id}")});
        assert_eq!(h.qr_create(&body, "image/*").await.status(), StatusCode::OK);
    }
    // Another sales unit has its own ids.
    let other = h
        .http
        .post(h.url(QR_PATH))
        .bearer_auth(&h.token)
        .header(
            "Ocp-Apim-Subscription-Key",
            "0123456789abcdef0123456789abcdef",
        )
        .header("Merchant-Serial-Number", "654321")
        .header("Accept", "text/targetUrl")
        .json(&json!({"id": "taxi-1", "redirectUrl": "https://other.example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);

    let listed: Value = h
        .qr(Method::GET, QR_PATH, "text/targetUrl")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["taxi-1", "taxi-2"]);
    assert!(listed[0]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://qr.vipps.no/"));

    let missing = h
        .qr(Method::GET, &format!("{QR_PATH}/taxi-404"), "image/png")
        .send()
        .await
        .unwrap();
    assert_qr_error(missing, StatusCode::NOT_FOUND).await;

    // Re-pointing changes where a scan lands, not what the sticker holds.
    let content = h.qr_content("taxi-1").await;
    assert_ne!(content, "https://example.com/taxi-1");
    assert_eq!(
        h.scan("/emulator/qr/taxi-1/resolve?msn=123456").await,
        (StatusCode::FOUND, Some("https://example.com/taxi-1".into()))
    );
    let updated = h
        .qr(Method::PUT, &format!("{QR_PATH}/taxi-1"), "text/targetUrl")
        .json(&json!({"redirectUrl": "https://example.com/ride/77"}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["redirectUrl"], "https://example.com/ride/77");
    assert_eq!(updated["url"], json!(content));
    assert_eq!(h.qr_content("taxi-1").await, content);
    assert_eq!(
        h.scan("/emulator/qr/taxi-1/resolve?msn=123456").await,
        (
            StatusCode::FOUND,
            Some("https://example.com/ride/77".into())
        )
    );
    // The printed content's own path redirects the same way.
    let token = content.rsplit('/').next().unwrap();
    assert_eq!(
        h.scan(&format!("/emulator/qr-scan/{token}")).await,
        (
            StatusCode::FOUND,
            Some("https://example.com/ride/77".into())
        )
    );
    assert_eq!(
        h.emulator().qr_redirect_url("taxi-2").as_deref(),
        Some("https://example.com/taxi-2")
    );
    let bad_update = h
        .qr(Method::PUT, &format!("{QR_PATH}/taxi-1"), "image/png")
        .json(&json!({"redirectUrl": "http://example.com"}))
        .send()
        .await
        .unwrap();
    let problem = assert_qr_error(bad_update, StatusCode::BAD_REQUEST).await;
    assert_eq!(invalid_param_names(&problem), ["RedirectUrl"]);
    let update_missing = h
        .qr(Method::PUT, &format!("{QR_PATH}/taxi-404"), "image/png")
        .json(&json!({"redirectUrl": "https://example.com"}))
        .send()
        .await
        .unwrap();
    assert_qr_error(update_missing, StatusCode::NOT_FOUND).await;

    let deleted = h
        .api(Method::DELETE, &format!("{QR_PATH}/taxi-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = h
        .qr(Method::GET, &format!("{QR_PATH}/taxi-1"), "image/png")
        .send()
        .await
        .unwrap();
    assert_qr_error(gone, StatusCode::NOT_FOUND).await;
    let twice = h
        .api(Method::DELETE, &format!("{QR_PATH}/taxi-1"))
        .send()
        .await
        .unwrap();
    assert_qr_error(twice, StatusCode::NOT_FOUND).await;
    assert_eq!(
        h.scan(&format!("/emulator/qr-scan/{token}")).await.0,
        StatusCode::NOT_FOUND
    );
    // The other sales unit's taxi-1 is untouched; the id may be reused, but as a new print.
    assert_eq!(
        h.scan("/emulator/qr/taxi-1/resolve").await,
        (StatusCode::FOUND, Some("https://other.example.com".into()))
    );
    let body = json!({"id": "taxi-1", "redirectUrl": "https://example.com/again"});
    assert_eq!(
        h.qr_create(&body, "image/png").await.status(),
        StatusCode::OK
    );
    assert_ne!(h.qr_content("taxi-1").await, content);
    assert_eq!(h.emulator().stats()["requests"]["qr"], 15);
}

#[tokio::test]
async fn qr_images_are_served_and_scan_to_the_content() {
    let h = Harness::start().await;
    let body = json!({"id": "sticker-1", "redirectUrl": "https://example.com/taxi"});
    assert_eq!(
        h.qr_create(&body, "text/targetUrl").await.status(),
        StatusCode::OK
    );
    let content = h.qr_content("sticker-1").await;

    let png_link: Value = h
        .qr(Method::GET, &format!("{QR_PATH}/sticker-1"), "image/png")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let png_response = h
        .http
        .get(png_link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(png_response.status(), StatusCode::OK);
    assert_eq!(png_response.headers()["content-type"], "image/png");
    let png_bytes = png_response.bytes().await.unwrap();
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
    let (width, height, grey) = decode_png(&png_bytes);
    assert_eq!((width, height), (800, 800));
    assert_eq!(scan_qr(width, height, &grey), content);

    // The Size header shapes the PNG.
    let small_link: Value = h
        .qr(Method::GET, &format!("{QR_PATH}/sticker-1"), "image/png")
        .header("Size", "200")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let small = h
        .http
        .get(small_link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (width, height, grey) = decode_png(&small);
    assert_eq!((width, height), (200, 200));
    assert_eq!(scan_qr(width, height, &grey), content);

    let svg_link: Value = h
        .qr(
            Method::GET,
            &format!("{QR_PATH}/sticker-1"),
            "image/svg+xml",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let svg_response = h
        .http
        .get(svg_link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(svg_response.status(), StatusCode::OK);
    assert_eq!(svg_response.headers()["content-type"], "image/svg+xml");
    let svg = svg_response.text().await.unwrap();
    // The root element is <svg>, after an optional XML declaration.
    let document = svg.trim_start();
    let root = match document.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").unwrap().1.trim_start(),
        None => document,
    };
    assert!(root.starts_with("<svg "), "{svg}");
    assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
    assert!(svg.trim_end().ends_with("</svg>"));

    let image_url = png_link["url"].as_str().unwrap().to_string();
    let too_big = image_url.replace("size=800", "size=5000");
    assert_eq!(
        h.http.get(too_big).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.control(Method::GET, "/emulator/qr-images/nope.png", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Deleting the code kills its images too.
    let deleted = h
        .api(Method::DELETE, &format!("{QR_PATH}/sticker-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(
        h.http.get(image_url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

/// 8-bit greyscale pixels of a PNG.
fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let decoded = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).unwrap();
    assert_eq!(decoded.color(), image::ColorType::L8, "8-bit greyscale");
    let grey = decoded.to_luma8();
    (
        grey.width() as usize,
        grey.height() as usize,
        grey.into_raw(),
    )
}

/// What a phone camera would read from the picture.
fn scan_qr(width: usize, height: usize, grey: &[u8]) -> String {
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| grey[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}
