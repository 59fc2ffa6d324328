//! The Order Management receipts.

use crate::harness::*;

/// A taxi ride: distance and waiting time, a tip, NOK.
fn taxi_receipt() -> Value {
    json!({
        "orderLines": [
            {
                "name": "Ride Oslo S - Gardermoen",
                "id": "ride-km",
                "totalAmount": 45000,
                "totalAmountExcludingTax": 40179,
                "totalTaxAmount": 4821,
                "taxPercentage": 12,
                "unitInfo": {"unitPrice": 1200, "quantity": "37.5", "quantityUnit": "KM"},
                "discount": 0,
                "isReturn": false,
                "isShipping": false
            },
            {
                "name": "Waiting time",
                "id": "ride-wait",
                "totalAmount": 5000,
                "totalAmountExcludingTax": 4464,
                "totalTaxAmount": 536,
                "taxPercentage": 12,
                "unitInfo": {"unitPrice": null, "quantity": "10", "quantityUnit": "MINUTE"}
            }
        ],
        "bottomLine": {
            "currency": "NOK",
            "tipAmount": 2000,
            "posId": "taxi-34",
            "receiptNumber": "0001-77"
        }
    })
}

#[tokio::test]
async fn receipts_are_validated_and_stored() {
    let h = Harness::start().await;
    let mut payment = web_payment("receipt-0001", 52_000);
    payment["receipt"] = taxi_receipt();
    let response = h.create(&payment, "receipt-ok").await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    let view: Value = h
        .control(Method::GET, "/emulator/payments/receipt-0001", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["receipt"], taxi_receipt());
    h.create_ok("receipt-none", 1_000).await;
    assert!(h
        .emulator()
        .payment_view("receipt-none")
        .unwrap()
        .get("receipt")
        .is_none());

    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, &str)> = vec![
        (|r| r["orderLines"] = json!([]), "receipt.orderLines"),
        (
            |r| {
                r.as_object_mut().unwrap().remove("orderLines");
            },
            "receipt.orderLines",
        ),
        (
            |r| {
                r["orderLines"][0].as_object_mut().unwrap().remove("name");
            },
            "receipt.orderLines[0].name",
        ),
        (
            |r| {
                r["orderLines"][1].as_object_mut().unwrap().remove("id");
            },
            "receipt.orderLines[1].id",
        ),
        (
            |r| {
                r["orderLines"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("totalAmountExcludingTax");
            },
            "receipt.orderLines[0].totalAmountExcludingTax",
        ),
        (
            |r| {
                r["orderLines"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("taxPercentage");
            },
            "receipt.orderLines[0].taxPercentage",
        ),
        (
            |r| r["orderLines"][0]["taxPercentage"] = json!(101),
            "receipt.orderLines[0].taxPercentage",
        ),
        (
            |r| r["orderLines"][0]["taxPercentage"] = json!(12.5),
            "receipt.orderLines[0].taxPercentage",
        ),
        (
            |r| r["orderLines"][0]["totalAmount"] = json!(-100),
            "receipt.orderLines[0].totalAmount",
        ),
        (
            |r| r["orderLines"][0]["totalTaxAmount"] = json!("4821"),
            "receipt.orderLines[0].totalTaxAmount",
        ),
        (
            |r| r["orderLines"][0]["discount"] = json!(-1),
            "receipt.orderLines[0].discount",
        ),
        (
            |r| r["orderLines"][0]["isReturn"] = json!("no"),
            "receipt.orderLines[0].isReturn",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantity"] = json!(37.5),
            "receipt.orderLines[0].unitInfo.quantity",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantity"] = json!("37,5"),
            "receipt.orderLines[0].unitInfo.quantity",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantity"] = json!("1.123456789"),
            "receipt.orderLines[0].unitInfo.quantity",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantity"] = json!("12345678901"),
            "receipt.orderLines[0].unitInfo.quantity",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["quantityUnit"] = json!("MILE"),
            "receipt.orderLines[0].unitInfo.quantityUnit",
        ),
        (
            |r| {
                r["orderLines"][0]["unitInfo"]
                    .as_object_mut()
                    .unwrap()
                    .remove("unitPrice");
            },
            "receipt.orderLines[0].unitInfo.unitPrice",
        ),
        (
            |r| r["orderLines"][0]["unitInfo"]["unitPrice"] = json!(-5),
            "receipt.orderLines[0].unitInfo.unitPrice",
        ),
        (
            |r| {
                r.as_object_mut().unwrap().remove("bottomLine");
            },
            "receipt.bottomLine",
        ),
        (
            |r| {
                r["bottomLine"].as_object_mut().unwrap().remove("currency");
            },
            "receipt.bottomLine.currency",
        ),
        (
            |r| r["bottomLine"]["currency"] = json!("SEK"),
            "receipt.bottomLine.currency",
        ),
        (
            |r| r["bottomLine"]["currency"] = json!("DKK"),
            "receipt.bottomLine.currency",
        ),
        (
            |r| r["bottomLine"]["tipAmount"] = json!(-1),
            "receipt.bottomLine.tipAmount",
        ),
        (
            |r| r["bottomLine"]["receiptNumber"] = json!(1),
            "receipt.bottomLine.receiptNumber",
        ),
        (
            |r| r["bottomLine"]["posId"] = json!(34),
            "receipt.bottomLine.posId",
        ),
    ];
    for (i, (edit, field)) in cases.into_iter().enumerate() {
        let mut receipt = taxi_receipt();
        edit(&mut receipt);
        let mut body = web_payment(&format!("receipt-bad-{i:02}"), 52_000);
        body["receipt"] = receipt;
        let response = h.create(&body, &format!("receipt-bad-{i}")).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST, "Invalid receipt").await;
        let names: Vec<&str> = problem["extraDetails"]
            .as_array()
            .unwrap_or_else(|| panic!("no extraDetails in {problem}"))
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [field], "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().starts_with(field),
            "{problem}"
        );
        assert!(problem["extraDetails"][0]["reason"].is_string());
    }
    // Several mistakes are all listed.
    let mut receipt = taxi_receipt();
    receipt["orderLines"][0]["taxPercentage"] = json!(-1);
    receipt["bottomLine"]["tipAmount"] = json!(-1);
    let mut body = web_payment("receipt-bad-many", 52_000);
    body["receipt"] = receipt;
    let problem = assert_problem(
        h.create(&body, "receipt-many").await,
        StatusCode::BAD_REQUEST,
        "Invalid receipt",
    )
    .await;
    assert_eq!(
        problem["extraDetails"].as_array().unwrap().len(),
        2,
        "{problem}"
    );
    assert!(h.emulator().payment_view("receipt-bad-00").is_none());
}
