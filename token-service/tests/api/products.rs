//! API products and subscriptions (docs/token-service.md, "API products"):
//! Apigee's export read and kept, refusals that write nothing, the
//! subscriptions of an app in its order, and the change feed naming the
//! app and its live tokens when a product or a subscription changes.

use crate::common::*;
use serde_json::{json, Value};

fn product(name: &str) -> Value {
    // As Apigee's management API exports it (with members this service
    // keeps without using them).
    json!({
        "name": name, "displayName": format!("{name} (display)"), "approvalType": "auto",
        "apiResources": [], "proxies": [], "environments": ["test"], "scopes": ["read"],
        "attributes": [{"name": "access", "value": "public"}],
        "createdAt": "1693001234567", "lastModifiedBy": "someone@example.com",
        "quota": "100", "quotaInterval": "1", "quotaTimeUnit": "hour",
        "operationGroup": {"operationConfigType": "proxy", "operationConfigs": [
            {"apiSource": "apiproduct-operations",
             "operations": [{"resource": "/apikey", "methods": ["GET"]}],
             "attributes": [{"name": "tier", "value": "read"}],
             "quota": {"limit": "10", "interval": "1", "timeUnit": "minute"}},
            {"apiSource": "apiproduct-operations",
             "operations": [{"resource": "/open", "methods": []}], "attributes": []}]}
    })
}

fn put(s: &Server, path: &str, body: &Value) -> Resp {
    s.raw(
        "PUT",
        path,
        Some(&adm()),
        "application/json",
        body.to_string().as_bytes(),
    )
}

fn products_are_stored_as_apigee_exports_them() {
    let s = Server::start();
    let r = s.json("/v1/apiproducts", Some(&adm()), &product("read-only"));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json, product("read-only"));
    let got = s.get_auth("/v1/apiproducts/read-only", &adm());
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json, product("read-only"));
    // Replacing answers 200 and keeps only the new definition.
    let mut changed = product("read-only");
    changed["proxies"] = json!(["weather"]);
    changed["operationGroup"] = Value::Null;
    let r = s.json("/v1/apiproducts", Some(&adm()), &changed);
    assert_eq!(r.status, 200, "{}", r.text);
    let got = s.get_auth("/v1/apiproducts/read-only", &adm());
    assert_eq!(got.json["proxies"], json!(["weather"]));
    assert!(got.json.get("operationGroup").is_none(), "{}", got.json);
    s.get_auth("/v1/apiproducts/nothing", &adm())
        .assert_error(404, "unknown_api_product");
    // The service key is not the admin key.
    s.get_auth("/v1/apiproducts/read-only", &svc())
        .assert_error(401, "unauthorized");
}

fn malformed_products_are_refused_and_write_nothing() {
    let s = Server::start();
    let before = s.all_changes(0, 5000).0.len();
    for body in [
        json!({"name": "p", "apiResources": ["forecastrss"]}),
        json!({"name": "p", "apiResources": ["/forecast*"]}),
        json!({"name": "p", "operationGroup": {"operationConfigs": [
            {"apiSource": "x", "operations": [{"resource": "/a", "methods": [""]}]}]}}),
        json!({"name": "p", "operationGroup": {"operationConfigType": "remoteservice"}}),
        json!({"name": "a/b"}),
        json!({"apiResources": ["/"]}),
        json!({"name": "p", "proxies": "one"}),
        json!({"name": "p", "quota": {"limit": "5"}}),
        json!({"name": "p", "operationGroup": {"operationConfigs": [
            {"apiSource": "x", "quota": {"timeUnit": ["hour"]}}]}}),
    ] {
        s.json("/v1/apiproducts", Some(&adm()), &body)
            .assert_error(400, "invalid_request");
    }
    s.get_auth("/v1/apiproducts/p", &adm())
        .assert_error(404, "unknown_api_product");
    assert_eq!(s.all_changes(0, 5000).0.len(), before);
}

fn subscriptions_keep_the_apps_order_and_status() {
    let s = Server::start();
    // The app's `api_products` are approved subscriptions, in its order.
    s.std_app("shop");
    let r = s.get_auth("/v1/apps/cid-shop/apiproducts", &adm());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"client_id": "cid-shop", "apiProducts": [
            {"apiproduct": "FreeProduct", "status": "approved"},
            {"apiproduct": "Premium", "status": "approved"}]})
    );
    // Subscribing to a product that does not exist, or for an unknown app.
    put(
        &s,
        "/v1/apps/cid-shop/apiproducts/read-only",
        &json!({"status": "approved"}),
    )
    .assert_error(404, "unknown_api_product");
    s.json("/v1/apiproducts", Some(&adm()), &product("read-only"));
    put(
        &s,
        "/v1/apps/cid-nobody/apiproducts/read-only",
        &json!({"status": "approved"}),
    )
    .assert_error(400, "invalid_client");
    put(
        &s,
        "/v1/apps/cid-shop/apiproducts/read-only",
        &json!({"status": "sort-of"}),
    )
    .assert_error(400, "invalid_request");
    s.get_auth("/v1/apps/cid-nobody/apiproducts", &adm())
        .assert_error(404, "unknown_client");
    // A new subscription goes last; a status change keeps its place.
    let r = put(
        &s,
        "/v1/apps/cid-shop/apiproducts/read-only",
        &json!({"status": "pending"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = put(
        &s,
        "/v1/apps/cid-shop/apiproducts/FreeProduct",
        &json!({"status": "revoked"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["apiProducts"],
        json!([
            {"apiproduct": "FreeProduct", "status": "revoked"},
            {"apiproduct": "Premium", "status": "approved"},
            {"apiproduct": "read-only", "status": "pending"}])
    );
}

fn product_and_subscription_changes_name_the_app_and_its_live_tokens() {
    let s = Server::start();
    s.std_app("shop");
    s.std_app("other");
    s.import_access("at-shop-1", "cid-shop", json!({}));
    s.import_access("at-other-1", "cid-other", json!({}));
    let (_, cursor) = s.all_changes(0, 5000);
    // A product no app subscribes to yet: nothing to drop.
    s.json("/v1/apiproducts", Some(&adm()), &product("read-only"));
    let (rows, cursor) = s.all_changes(cursor, 5000);
    assert!(rows.is_empty(), "{rows:?}");
    // A subscription: the app's client id and its token.
    let r = put(
        &s,
        "/v1/apps/cid-shop/apiproducts/read-only",
        &json!({"status": "approved"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (rows, cursor) = s.all_changes(cursor, 5000);
    let seen: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["hash"].as_str().unwrap().to_owned(),
                r["op"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let fp = |kind, v: &str| oauthv2info_names::token_hash_hex(kind, v.as_bytes());
    use oauthv2info_names::TokenKind::{AccessToken, ClientId};
    assert_eq!(
        seen,
        [
            (
                "client_id".into(),
                fp(ClientId, "cid-shop"),
                "subscription".into()
            ),
            (
                "access_token".into(),
                fp(AccessToken, "at-shop-1"),
                "subscription".into()
            ),
        ]
    );
    // A product change: every subscribed app (not the other one).
    s.json("/v1/apiproducts", Some(&adm()), &product("read-only"));
    let (rows, _) = s.all_changes(cursor, 5000);
    let ops: Vec<&str> = rows.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["product", "product"], "{rows:?}");
    assert!(!rows.iter().any(|r| r["hash"] == fp(ClientId, "cid-other")));
}

fn lookups_carry_the_products_of_approved_subscriptions() {
    let s = Server::start();
    s.json("/v1/apiproducts", Some(&adm()), &product("read-only"));
    s.json(
        "/v1/apiproducts",
        Some(&adm()),
        &json!({"name": "Premium", "proxies": ["weather"], "apiResources": ["/forecast/**"],
                "quotaInterval": "2"}),
    );
    s.std_app("shop");
    s.import_access("at-shop-1", "cid-shop", json!({}));
    let r = put(
        &s,
        "/v1/apps/cid-shop/apiproducts/read-only",
        &json!({"status": "approved"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // FreeProduct has no definition: listed by name, not in api_products.
    // The quota settings: those present, the product's and each operation
    // configuration's own.
    let compact = json!([
        {"name": "Premium", "proxies": ["weather"], "resources": ["/forecast/**"],
         "quota": {"interval": "2"}},
        {"name": "read-only", "environments": ["test"], "attributes": {"access": "public"},
         "quota": {"limit": "100", "interval": "1", "time_unit": "hour"},
         "operation_configs": [{"api_source": "apiproduct-operations",
             "operations": [{"resource": "/apikey", "methods": ["GET"]}],
             "attributes": {"tier": "read"},
             "quota": {"limit": "10", "interval": "1", "time_unit": "minute"}},
            {"api_source": "apiproduct-operations",
             "operations": [{"resource": "/open", "methods": []}]}]}
    ]);
    for (value, hint) in [
        ("at-shop-1", Some("access_token")),
        ("at-shop-1", None),
        ("cid-shop", Some("client_id")),
    ] {
        let v = s.introspect(value, hint);
        assert_eq!(v["api_products"], compact, "{hint:?}: {v}");
        assert_eq!(
            v["profile"]["api_product_list"],
            "[FreeProduct, Premium, read-only]"
        );
    }
    // A revoked subscription: gone from both, at once.
    put(
        &s,
        "/v1/apps/cid-shop/apiproducts/Premium",
        &json!({"status": "revoked"}),
    );
    let v = s.introspect("at-shop-1", Some("access_token"));
    assert_eq!(v["api_products"], json!([compact[1]]), "{v}");
    assert_eq!(v["profile"]["api_product_list"], "[FreeProduct, read-only]");
    // An unknown value has no products.
    let v = s.introspect("at-nothing", None);
    assert_eq!(v, json!({"active": false}));
}

fn app_key_and_developer_statuses_show_in_the_key_lookup() {
    let s = Server::start();
    s.std_app("shop");
    s.import_access("at-shop-1", "cid-shop", json!({}));
    let p = s.introspect("cid-shop", Some("client_id"))["profile"].clone();
    assert_eq!(
        (&p["status"], &p["key_status"], &p["developer.status"]),
        (&json!("approved"), &json!("approved"), &json!("active"))
    );
    let (_, cursor) = s.all_changes(0, 5000);
    let r = put(
        &s,
        "/v1/apps/cid-shop/status",
        &json!({"status": "revoked"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"client_id": "cid-shop", "status": "revoked", "key_status": "approved",
               "developer_status": "active"})
    );
    let r = put(
        &s,
        "/v1/apps/cid-shop/status",
        &json!({"key_status": "revoked", "developer_status": "inactive"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let p = s.introspect("cid-shop", Some("client_id"))["profile"].clone();
    assert_eq!(
        (&p["status"], &p["key_status"], &p["developer.status"]),
        (&json!("revoked"), &json!("revoked"), &json!("inactive"))
    );
    // Each change names the client id and the live token.
    let (rows, cursor) = s.all_changes(cursor, 5000);
    let ops: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["op"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        [
            ("client_id", "status"),
            ("access_token", "status"),
            ("client_id", "status"),
            ("access_token", "status")
        ]
    );
    // Refusals write nothing.
    put(&s, "/v1/apps/cid-shop/status", &json!({})).assert_error(400, "invalid_request");
    put(
        &s,
        "/v1/apps/cid-shop/status",
        &json!({"status": "pending"}),
    )
    .assert_error(400, "invalid_request");
    put(
        &s,
        "/v1/apps/cid-nobody/status",
        &json!({"status": "approved"}),
    )
    .assert_error(404, "unknown_client");
    assert!(s.all_changes(cursor, 5000).0.is_empty());
}

both_stores!(
    an_apigee_app_export_is_imported_with_its_statuses_and_subscriptions,
    app_key_and_developer_statuses_show_in_the_key_lookup,
    lookups_carry_the_products_of_approved_subscriptions,
    products_are_stored_as_apigee_exports_them,
    malformed_products_are_refused_and_write_nothing,
    subscriptions_keep_the_apps_order_and_status,
    product_and_subscription_changes_name_the_app_and_its_live_tokens,
);

/// A PostgreSQL database at schema version 3 (made by rolling version 4
/// back by hand) is migrated in place: its apps' `api_products` become
/// approved subscriptions, in their order. (The SQLite migration has its
/// own unit test in store/sqlite.rs.)
#[test]
fn a_version_3_postgres_database_gets_the_apps_subscriptions() {
    with_backend(Backend::Postgres, || {
        let s = Server::start();
        s.std_app("old");
        let name = s.db.rsplit('/').next().unwrap().to_owned();
        let s = {
            let c = crate::pg::shared();
            let mut s = s;
            s.kill9();
            c.psql(
                &name,
                "DROP TABLE app_products; DROP TABLE api_products; \
                 DROP INDEX access_tokens_client; DELETE FROM schema_migrations WHERE version = 4; \
                 ALTER TABLE apps DROP COLUMN status, DROP COLUMN key_status, \
                 DROP COLUMN developer_status; \
                 UPDATE apps SET api_products = '[\"Zeta\", \"Alpha\"]' WHERE client_id = 'cid-old'",
            );
            s.start_again()
        };
        let r = s.get_auth("/v1/apps/cid-old/apiproducts", &adm());
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.json["apiProducts"],
            json!([{"apiproduct": "Zeta", "status": "approved"},
                   {"apiproduct": "Alpha", "status": "approved"}])
        );
        let c = crate::pg::shared();
        assert_eq!(
            c.psql(&name, "SELECT max(version) FROM schema_migrations"),
            "4"
        );
    });
}

fn an_apigee_app_export_is_imported_with_its_statuses_and_subscriptions() {
    let s = Server::start();
    s.json("/v1/apiproducts", Some(&adm()), &product("read-only"));
    // As Apigee's management API exports a developer app (members this
    // service does not keep included).
    let exported = json!({
        "appId": "0c2b6a4e-1111-4222-8333-944455556666", "name": "viewer-app",
        "developerId": "dev-7", "developerEmail": "viewer@example.com", "status": "approved",
        "attributes": [{"name": "DisplayName", "value": "Viewer"}],
        "callbackUrl": "https://viewer.example.com/cb", "createdAt": "1693001234567",
        "appFamily": "default", "scopes": [],
        "credentials": [{
            "consumerKey": "key-viewer", "consumerSecret": "secret-viewer",
            "status": "revoked", "expiresAt": "-1", "issuedAt": "1693001234567",
            "scopes": [], "attributes": [],
            "apiProducts": [{"apiproduct": "read-only", "status": "approved"},
                            {"apiproduct": "legacy", "status": "pending"}]}]
    });
    let r = s.json("/v1/apigee/apps", Some(&adm()), &exported);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["client_id"], "key-viewer");
    assert_eq!(r.json["app_id"], "0c2b6a4e-1111-4222-8333-944455556666");
    let v = s.introspect("key-viewer", Some("client_id"));
    let p = &v["profile"];
    assert_eq!(p["client_secret"], "secret-viewer");
    assert_eq!(p["developer.email"], "viewer@example.com");
    assert_eq!(p["redirection_uris"], "https://viewer.example.com/cb");
    assert_eq!(p["attributes"], json!({"DisplayName": "Viewer"}));
    assert_eq!(
        (&p["status"], &p["key_status"]),
        (&json!("approved"), &json!("revoked"))
    );
    assert_eq!(p["api_product_list"], "[read-only]");
    assert_eq!(v["api_products"][0]["name"], "read-only");
    let r = s.get_auth("/v1/apps/key-viewer/apiproducts", &adm());
    assert_eq!(
        r.json["apiProducts"],
        json!([{"apiproduct": "read-only", "status": "approved"},
               {"apiproduct": "legacy", "status": "pending"}])
    );
    // Refusals write nothing.
    let before = s.all_changes(0, 5000).0.len();
    let mut two = exported.clone();
    two["credentials"] = json!([exported["credentials"][0], exported["credentials"][0]]);
    let mut no_email = exported.clone();
    no_email.as_object_mut().unwrap().remove("developerEmail");
    let mut bad_status = exported.clone();
    bad_status["status"] = json!("pending");
    let mut taken = exported.clone();
    taken["name"] = json!("again");
    for (body, status, code) in [
        (two, 400, "invalid_request"),
        (no_email, 400, "invalid_request"),
        (bad_status, 400, "invalid_request"),
        (json!({"name": "x"}), 400, "invalid_request"),
        (taken, 409, "client_exists"),
    ] {
        s.json("/v1/apigee/apps", Some(&adm()), &body)
            .assert_error(status, code);
    }
    assert_eq!(s.all_changes(0, 5000).0.len(), before);
}
