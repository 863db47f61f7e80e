//! The JSON answers built from stored rows: RFC 7662 introspection members
//! plus the Apigee `profile` (docs/token-service.md), every profile value a string.

use crate::products::ApiProduct;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const APPROVED: &str = "approved";
pub const REVOKED: &str = "revoked";

/// A developer app (an OAuth client).
#[derive(Debug, Clone)]
pub struct App {
    pub app_id: String,
    pub name: String,
    pub developer_email: String,
    pub developer_id: String,
    pub api_products: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub redirect_uris: Vec<String>,
    pub client_id: String,
    pub client_secret: String,
    /// The definitions of the products of the app's approved
    /// subscriptions, in its order (`api_products` names them all, defined
    /// or not).
    pub products: Vec<ApiProduct>,
    /// The app's status (`approved`, `revoked`), its key's (the client id
    /// as an API key: `approved`, `revoked`) and its developer's (`active`,
    /// `inactive`), for VerifyAPIKey (docs/token-service.md, "API keys").
    pub status: String,
    pub key_status: String,
    pub developer_status: String,
}

/// An access token row, with the refresh token issued with it (if any).
/// Times are epoch ms; an `expires_at` of -1 means "never expires".
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The value, or in a hashed store its key (`Hashing::key`).
    pub token: String,
    /// A hashed store's kept feed fingerprint (None: computed from `token`).
    pub token_fp: Option<String>,
    pub client_id: String,
    pub scope: String,
    pub status: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub refresh: Option<RefreshToken>,
    pub refresh_count: i64,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub token: String,
    pub fp: Option<String>,
    pub status: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub code: String,
    pub fp: Option<String>,
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub scope: String,
    pub status: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

pub type Attributes = BTreeMap<String, String>;

/// Absolute expiry (ms) from an issue time (ms) and a lifetime (s, -1 = never).
/// `None` on overflow or a lifetime below -1.
pub fn expires_at(issued_at_ms: i64, lifetime_s: i64) -> Option<i64> {
    match lifetime_s {
        -1 => Some(-1),
        s if s >= 0 => s.checked_mul(1000)?.checked_add(issued_at_ms),
        _ => None,
    }
}

/// True once `now` has reached the expiry; never for -1.
pub fn is_expired(expires_at: i64, now: i64) -> bool {
    expires_at >= 0 && now >= expires_at
}

/// Remaining whole seconds at `now`: 0 once expired, -1 for "never".
pub fn remaining_secs(expires_at: i64, now: i64) -> i64 {
    if expires_at < 0 {
        -1
    } else {
        (expires_at - now).max(0) / 1000
    }
}

/// `[FreeProduct, Premium]`, `[]` when empty.
pub fn api_product_list(products: &[String]) -> String {
    format!("[{}]", products.join(", "))
}

fn attributes_value(attrs: &Attributes) -> Value {
    Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

fn put(m: &mut Map<String, Value>, k: &str, v: impl Into<String>) {
    m.insert(k.to_owned(), Value::String(v.into()));
}

/// The Apigee profile of an access token (and of its refresh token).
pub fn access_profile(
    t: &AccessToken,
    app: &App,
    attrs: &Attributes,
    org: &str,
    now: i64,
) -> Value {
    let mut p = Map::new();
    put(&mut p, "access_token", t.token.as_str());
    put(&mut p, "client_id", t.client_id.as_str());
    put(&mut p, "scope", t.scope.as_str());
    put(&mut p, "status", t.status.as_str());
    put(&mut p, "token_type", "BearerToken");
    put(&mut p, "issued_at", t.issued_at.to_string());
    put(
        &mut p,
        "expires_in",
        remaining_secs(t.expires_at, now).to_string(),
    );
    put(&mut p, "expires_at", t.expires_at.to_string());
    put(&mut p, "organization_name", org);
    put(
        &mut p,
        "api_product_list",
        api_product_list(&app.api_products),
    );
    put(&mut p, "developer.id", app.developer_id.as_str());
    put(&mut p, "developer.email", app.developer_email.as_str());
    put(&mut p, "developer.app.name", app.name.as_str());
    put(&mut p, "developer.app.id", app.app_id.as_str());
    match &t.refresh {
        Some(r) => {
            put(&mut p, "refresh_token", r.token.as_str());
            put(&mut p, "refresh_token_status", r.status.as_str());
            put(&mut p, "refresh_token_issued_at", r.issued_at.to_string());
            put(
                &mut p,
                "refresh_token_expires_in",
                remaining_secs(r.expires_at, now).to_string(),
            );
            put(&mut p, "refresh_token_expires_at", r.expires_at.to_string());
        }
        None => {
            for k in [
                "refresh_token",
                "refresh_token_status",
                "refresh_token_issued_at",
                "refresh_token_expires_in",
                "refresh_token_expires_at",
            ] {
                put(&mut p, k, "");
            }
        }
    }
    put(&mut p, "refresh_count", t.refresh_count.to_string());
    p.insert("attributes".into(), attributes_value(attrs));
    Value::Object(p)
}

fn rfc7662(
    active: bool,
    scope: &str,
    client_id: &str,
    issued_at: i64,
    expires_at: i64,
    profile: Value,
) -> Value {
    let mut m = Map::new();
    m.insert("active".into(), Value::Bool(active));
    m.insert("token_type".into(), Value::from("Bearer"));
    m.insert("scope".into(), Value::from(scope));
    m.insert("client_id".into(), Value::from(client_id));
    if expires_at >= 0 {
        m.insert("exp".into(), Value::from(expires_at / 1000));
    }
    m.insert("iat".into(), Value::from(issued_at / 1000));
    m.insert("profile".into(), profile);
    Value::Object(m)
}

/// Introspection of an access token.
pub fn access_introspection(
    t: &AccessToken,
    app: &App,
    attrs: &Attributes,
    org: &str,
    now: i64,
) -> Value {
    let active = t.status == APPROVED && !is_expired(t.expires_at, now);
    let v = rfc7662(
        active,
        &t.scope,
        &t.client_id,
        t.issued_at,
        t.expires_at,
        access_profile(t, app, attrs, org, now),
    );
    with_products(v, app)
}

/// Introspection of a refresh token: the access token's profile, with
/// `active`, `exp` and `iat` describing the refresh token.
pub fn refresh_introspection(
    t: &AccessToken,
    r: &RefreshToken,
    app: &App,
    attrs: &Attributes,
    org: &str,
    now: i64,
) -> Value {
    let active = r.status == APPROVED && !is_expired(r.expires_at, now);
    let v = rfc7662(
        active,
        &t.scope,
        &t.client_id,
        r.issued_at,
        r.expires_at,
        access_profile(t, app, attrs, org, now),
    );
    with_products(v, app)
}

/// Introspection of an authorization code.
pub fn code_introspection(c: &AuthCode, app: &App, attrs: &Attributes, now: i64) -> Value {
    let active = c.status == APPROVED && !is_expired(c.expires_at, now);
    let mut p = Map::new();
    put(&mut p, "code", c.code.as_str());
    put(&mut p, "client_id", c.client_id.as_str());
    put(&mut p, "scope", c.scope.as_str());
    put(
        &mut p,
        "redirect_uri",
        c.redirect_uri.clone().unwrap_or_default(),
    );
    put(&mut p, "status", c.status.as_str());
    put(&mut p, "issued_at", c.issued_at.to_string());
    put(
        &mut p,
        "expires_in",
        remaining_secs(c.expires_at, now).to_string(),
    );
    put(&mut p, "expires_at", c.expires_at.to_string());
    put(&mut p, "developer.email", app.developer_email.as_str());
    put(&mut p, "developer.app.name", app.name.as_str());
    p.insert("attributes".into(), attributes_value(attrs));
    let mut m = Map::new();
    m.insert("active".into(), Value::Bool(active));
    m.insert("client_id".into(), Value::from(c.client_id.as_str()));
    m.insert("scope".into(), Value::from(c.scope.as_str()));
    if c.expires_at >= 0 {
        m.insert("exp".into(), Value::from(c.expires_at / 1000));
    }
    m.insert("iat".into(), Value::from(c.issued_at / 1000));
    m.insert("profile".into(), Value::Object(p));
    Value::Object(m)
}

/// Introspection of a client id: the app's profile.
pub fn client_introspection(app: &App) -> Value {
    let v = json!({
        "active": true,
        "client_id": app.client_id,
        "profile": {
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "redirection_uris": app.redirect_uris.join(","),
            "developer.email": app.developer_email,
            "developer.id": app.developer_id,
            "developer.app.name": app.name,
            "developer.app.id": app.app_id,
            "api_product_list": api_product_list(&app.api_products),
            "status": app.status,
            "key_status": app.key_status,
            "developer.status": app.developer_status,
            "attributes": attributes_value(&app.attributes),
        }
    });
    with_products(v, app)
}

/// Adds the app's products (`api_products`: what the filter's product
/// check reads) to an introspection answer about one of its values.
fn with_products(mut v: Value, app: &App) -> Value {
    if let Some(m) = v.as_object_mut() {
        let list: Vec<Value> = app
            .products
            .iter()
            .filter_map(|p| serde_json::to_value(p.lookup_view()).ok())
            .collect();
        m.insert("api_products".into(), Value::Array(list));
    }
    v
}

/// `{"active": false}`, the answer for an unknown token.
pub fn inactive() -> Value {
    json!({"active": false})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn app() -> App {
        App {
            app_id: "app-1".into(),
            name: "App".into(),
            developer_email: "d@example.com".into(),
            developer_id: "dev-1".into(),
            api_products: vec!["FreeProduct".into(), "Premium".into()],
            attributes: BTreeMap::new(),
            redirect_uris: vec!["https://a/cb".into(), "https://b/cb".into()],
            client_id: "abc".into(),
            client_secret: "s".into(),
            products: Vec::new(),
            status: APPROVED.into(),
            key_status: APPROVED.into(),
            developer_status: "active".into(),
        }
    }

    fn token(expires_at: i64, refresh: Option<RefreshToken>) -> AccessToken {
        AccessToken {
            token: "tok".into(),
            token_fp: None,
            client_id: "abc".into(),
            scope: "READ WRITE".into(),
            status: APPROVED.into(),
            issued_at: 1_699_996_400_000,
            expires_at,
            refresh,
            refresh_count: 0,
        }
    }

    #[test]
    fn remaining_seconds_floor_clamp_and_never() {
        assert_eq!(remaining_secs(10_000, 0), 10);
        assert_eq!(remaining_secs(10_000, 1), 9);
        assert_eq!(remaining_secs(10_000, 9_999), 0);
        assert_eq!(remaining_secs(10_000, 10_000), 0);
        assert_eq!(remaining_secs(10_000, 50_000), 0);
        assert_eq!(remaining_secs(-1, 50_000), -1);
        assert!(!is_expired(10_000, 9_999));
        assert!(is_expired(10_000, 10_000));
        assert!(!is_expired(-1, i64::MAX));
    }

    #[test]
    fn expires_at_arithmetic() {
        assert_eq!(expires_at(1_000, 3600), Some(3_601_000));
        assert_eq!(expires_at(1_000, -1), Some(-1));
        assert_eq!(expires_at(1_000, 0), Some(1_000));
        assert_eq!(expires_at(1_000, -2), None);
        assert_eq!(expires_at(1, i64::MAX), None);
    }

    #[test]
    fn product_list_format() {
        assert_eq!(api_product_list(&[]), "[]");
        assert_eq!(
            api_product_list(&app().api_products),
            "[FreeProduct, Premium]"
        );
    }

    #[test]
    fn access_introspection_matches_contract() {
        let t = token(1_700_000_000_000, None);
        let mut attrs = Attributes::new();
        attrs.insert("department.id".into(), "42".into());
        let v = access_introspection(&t, &app(), &attrs, "local", 1_699_996_400_500);
        assert_eq!(v["active"], true);
        assert_eq!(v["exp"], 1_700_000_000i64);
        assert_eq!(v["iat"], 1_699_996_400i64);
        let p = &v["profile"];
        assert_eq!(p["expires_in"], "3599");
        assert_eq!(p["expires_at"], "1700000000000");
        assert_eq!(p["issued_at"], "1699996400000");
        assert_eq!(p["refresh_token"], "");
        assert_eq!(p["refresh_token_expires_in"], "");
        assert_eq!(p["api_product_list"], "[FreeProduct, Premium]");
        assert_eq!(p["developer.app.id"], "app-1");
        assert_eq!(p["attributes"]["department.id"], "42");
        for (k, val) in p.as_object().unwrap() {
            if k != "attributes" {
                assert!(val.is_string(), "{k} is not a string");
            }
        }
    }

    #[test]
    fn never_expiring_token_has_no_exp() {
        let t = token(-1, None);
        let v = access_introspection(&t, &app(), &Attributes::new(), "o", 5);
        assert!(v.get("exp").is_none());
        assert_eq!(v["active"], true);
        assert_eq!(v["profile"]["expires_in"], "-1");
        assert_eq!(v["profile"]["expires_at"], "-1");
    }

    #[test]
    fn refresh_introspection_describes_the_refresh_token() {
        let r = RefreshToken {
            token: "rt".into(),
            fp: None,
            status: APPROVED.into(),
            issued_at: 1_000,
            expires_at: 100_000,
        };
        // Access token expired, refresh token still valid.
        let t = token(2_000, Some(r.clone()));
        let v = refresh_introspection(&t, &r, &app(), &Attributes::new(), "o", 50_000);
        assert_eq!(v["active"], true);
        assert_eq!(v["exp"], 100);
        assert_eq!(v["iat"], 1);
        assert_eq!(v["profile"]["refresh_token_expires_in"], "50");
        assert_eq!(v["profile"]["expires_in"], "0");
        let a = access_introspection(&t, &app(), &Attributes::new(), "o", 50_000);
        assert_eq!(a["active"], false);
        assert_eq!(a["profile"]["status"], "approved");
    }

    #[test]
    fn client_profile() {
        let v = client_introspection(&app());
        assert_eq!(
            v["profile"]["redirection_uris"],
            "https://a/cb,https://b/cb"
        );
        assert_eq!(v["profile"]["status"], "approved");
    }
}
