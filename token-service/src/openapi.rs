//! The OpenAPI description of the HTTP API, generated from the code
//! (utoipa): the operations are the `#[utoipa::path]` attributes on the
//! handlers in http.rs, the JSON request bodies the handlers' own
//! deserialization types, and the answers the types below, which mirror
//! what the handlers and views.rs write. Served at `GET /openapi.json` and
//! shipped as docs/token-service.openapi.json (a test holds them equal);
//! see docs/token-service.md, "OpenAPI".

use crate::http;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, OneOfBuilder, Ref, RefOr, Schema, Type};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// Every refusal: `{"error": code, "error_description": text}`, plus
/// `attribute` (a protected attribute) or `oldest` (an expired feed cursor).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error code (`invalid_request`, `unauthorized`, `store_unavailable`...).
    pub error: String,
    /// What is wrong, for a person.
    pub error_description: String,
    /// The protected attribute's name (`protected_attribute` only).
    #[schema(nullable = false)]
    pub attribute: Option<String>,
    /// The oldest retained cursor (`cursor_expired` only).
    #[schema(nullable = false)]
    pub oldest: Option<i64>,
}

/// The form of `POST /oauth2/introspect`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token": "AT-example-0001", "token_type_hint": "access_token"}))]
pub struct IntrospectForm {
    /// The value to look up.
    #[schema(min_length = 1)]
    pub token: String,
    /// Which kind to look the value up as (without it: access token, then
    /// refresh token).
    #[schema(nullable = false)]
    pub token_type_hint: Option<IntrospectHint>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntrospectHint {
    AccessToken,
    RefreshToken,
    AuthorizationCode,
    ClientId,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevokeHint {
    AccessToken,
    RefreshToken,
    AuthorizationCode,
}

/// An RFC 7662 answer with the Apigee profile. An unknown value is
/// `{"active": false}` alone; a known one (active or not) has its profile.
#[derive(Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[schema(nullable = false)]
    pub token_type: Option<String>,
    #[schema(nullable = false)]
    pub scope: Option<String>,
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    /// Expiry, epoch seconds (absent for a value that never expires).
    #[schema(nullable = false)]
    pub exp: Option<i64>,
    /// Issue time, epoch seconds.
    #[schema(nullable = false)]
    pub iat: Option<i64>,
    /// Every value a string, but `attributes`, an object of strings
    /// (docs/token-service.md, "POST /oauth2/introspect").
    #[schema(nullable = false)]
    pub profile: Option<Profile>,
    /// The API products of the app's approved subscriptions that have a
    /// definition, in its order (an access or refresh token's app, or the
    /// client id's): what the filter's product check reads.
    #[schema(nullable = false)]
    pub api_products: Option<Vec<crate::products::LookupProduct>>,
}

/// The profile: string members (`access_token`, `status`, `expires_in`,
/// `developer.email`...) and `attributes`, an object of strings.
#[derive(Serialize)]
pub struct Profile;

impl PartialSchema for Profile {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "attributes",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(string())),
            )
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::RefOr(
                RefOr::T(Schema::Object(string().build())),
            )))
            .description(Some(
                "every member a string, but attributes (an object of strings)",
            ))
            .into()
    }
}

impl ToSchema for Profile {}

/// The form of `POST /oauth2/token` (the client's credentials here, or
/// HTTP Basic, not both).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"grant_type": "client_credentials", "scope": "READ"}))]
pub struct TokenForm {
    /// `client_credentials`, `authorization_code` or `refresh_token`.
    pub grant_type: String,
    #[schema(nullable = false)]
    pub scope: Option<String>,
    #[schema(nullable = false)]
    pub code: Option<String>,
    #[schema(nullable = false)]
    pub redirect_uri: Option<String>,
    #[schema(nullable = false)]
    pub refresh_token: Option<String>,
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

/// Tokens a grant issued.
#[derive(Serialize, ToSchema)]
pub struct TokenIssued {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds (-1: never expires).
    pub expires_in: i64,
    pub scope: String,
    /// `authorization_code` and `refresh_token` grants only.
    #[schema(nullable = false)]
    pub refresh_token: Option<String>,
    /// Epoch milliseconds, as a string.
    pub issued_at: String,
}

/// The form of `POST /oauth2/revoke` (RFC 7009).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token": "AT-example-0002", "token_type_hint": "access_token"}))]
pub struct RevokeForm {
    #[schema(min_length = 1)]
    pub token: String,
    #[schema(nullable = false)]
    pub token_type_hint: Option<RevokeHint>,
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

/// `{}`.
#[derive(Serialize, ToSchema)]
pub struct Empty {}

/// The app `POST /v1/apps` created.
#[derive(Serialize, ToSchema)]
pub struct AppCreated {
    pub app_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub name: String,
    pub developer_email: String,
    pub developer_id: String,
}

/// An app's subscriptions to API products, in its order (Apigee's
/// credential `apiProducts` shape).
#[derive(Serialize, ToSchema)]
pub struct Subscriptions {
    pub client_id: String,
    #[serde(rename = "apiProducts")]
    pub api_products: Vec<Subscription>,
}

/// One subscription.
#[derive(Serialize, ToSchema)]
pub struct Subscription {
    pub apiproduct: String,
    pub status: crate::products::SubscriptionStatus,
}

/// An app's statuses (`PUT /v1/apps/{client_id}/status`).
#[derive(Serialize, ToSchema)]
pub struct AppStatuses {
    pub client_id: String,
    /// `approved` or `revoked`.
    pub status: String,
    /// `approved` or `revoked`.
    pub key_status: String,
    /// `active` or `inactive`.
    pub developer_status: String,
}

/// What `POST /v1/tokens` imported (the value is never echoed).
#[derive(Serialize, ToSchema)]
pub struct Imported {
    /// `access_token` or `authorization_code`.
    #[serde(rename = "type")]
    pub kind: String,
    pub client_id: String,
}

/// One page of the change feed.
#[derive(Serialize, ToSchema)]
pub struct FeedPage {
    pub changes: Vec<ChangeItem>,
    pub next: i64,
    pub oldest: i64,
    pub head: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ChangeItem {
    pub cursor: i64,
    /// The token_type_hint of the changed value.
    pub kind: String,
    /// `token_hash_hex(kind, value)`: 16 lower-case hex digits.
    pub hash: String,
    pub op: String,
}

/// `/healthz`: `{"status": "ok"}`, or unavailable with the error members.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    #[schema(nullable = false)]
    pub error: Option<String>,
    #[schema(nullable = false)]
    pub error_description: Option<String>,
}

/// The security schemes: the two keys, the OAuth client, and the
/// ext_authz header.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what.to_owned()))
                    .build(),
            )
        };
        components
            .add_security_scheme("service_key", bearer("the service key (TOKEN_SERVICE_KEY)"));
        components.add_security_scheme(
            "admin_key",
            bearer("the admin key (TOKEN_SERVICE_ADMIN_KEY)"),
        );
        components.add_security_scheme(
            "client",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "an app's client_id and client_secret (RFC 6749 2.3.1)".to_owned(),
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "ext_authz_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                http::EXT_AUTHZ_KEY_HEADER,
                "the service key",
            ))),
        );
    }
}

/// The body of `POST /v1/tokens`: one of the two import schemas (see
/// [`ImportBody`]).
pub struct ImportRequest;

impl PartialSchema for ImportRequest {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(Ref::from_schema_name("ImportAccessToken"))
            .item(Ref::from_schema_name("ImportAuthorizationCode"))
            .into()
    }
}

impl ToSchema for ImportRequest {}

/// `POST /v1/tokens` takes an access token or an authorization code: the
/// handler reads `type`, then the rest as `ImportAccess` or `ImportCode`
/// (both refuse unknown fields). Their schemas, generated from those
/// types, get `type` added, and the body is one of the two.
struct ImportBody;

fn with_type(schema: RefOr<Schema>, kind: &str) -> RefOr<Schema> {
    let RefOr::T(Schema::Object(mut obj)) = schema else {
        return schema;
    };
    let tag = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([kind]))
        .build();
    obj.properties.insert("type".to_owned(), tag.into());
    obj.required.insert(0, "type".to_owned());
    RefOr::T(Schema::Object(obj))
}

impl Modify for ImportBody {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.schemas.insert(
            "ImportAccessToken".to_owned(),
            with_type(http::ImportAccess::schema(), "access_token"),
        );
        components.schemas.insert(
            "ImportAuthorizationCode".to_owned(),
            with_type(http::ImportCode::schema(), "authorization_code"),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "token-service",
        description = "The token store of the GetOAuthV2Info / SetOAuthV2Info Envoy filter: \
            RFC 7662 introspection with the Apigee profile, the attribute merge, OAuth 2.0 \
            token and revocation, the admin API and the change feed. Every answer carries \
            Cache-Control: no-store. See docs/token-service.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        http::introspect,
        http::merge_attributes,
        http::create_app,
        http::import_apigee_app,
        http::put_product,
        http::get_product,
        http::subscribe,
        http::get_subscriptions,
        http::set_statuses,
        http::import_token,
        http::token,
        http::revoke,
        http::healthz,
        http::changes,
        http::ext_authz::check,
        http::openapi_json,
    ),
    components(schemas(
        ErrorBody,
        Introspection,
        Profile,
        IntrospectForm,
        IntrospectHint,
        RevokeHint,
        TokenForm,
        TokenIssued,
        RevokeForm,
        Empty,
        AppCreated,
        Imported,
        FeedPage,
        ChangeItem,
        Health,
        http::MergeBody,
        http::AttributeIn,
        http::NewApp,
        http::Status,
        http::NewSubscription,
        http::NewStatuses,
        http::ApprovalStatus,
        http::DeveloperStatus,
        AppStatuses,
        Subscriptions,
        Subscription,
        crate::products::ApiProduct,
        crate::products::NameValue,
        crate::products::ApiOperation,
        crate::products::OperationConfig,
        crate::products::OperationGroup,
        crate::products::SubscriptionStatus,
        crate::products::LookupProduct,
        crate::products::ApigeeApp,
        crate::products::ApigeeCredential,
        crate::products::ApigeeSubscription,
        crate::products::LookupOperations,
    )),
    modifiers(&Security, &ImportBody),
)]
pub struct ApiDoc;

/// The description, as JSON (what `GET /openapi.json` answers and
/// docs/token-service.openapi.json holds, with a final newline).
/// Keys sorted at every level, so that the text does not depend on
/// whether serde_json's `preserve_order` is on (another crate of the
/// workspace turns it on when they are built together).
pub fn json() -> String {
    let mut text = serde_json::to_value(ApiDoc::openapi())
        .map(sorted)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    /// docs/token-service.openapi.json is the generated description:
    /// regenerate it with `UPDATE_OPENAPI=1 cargo test -p token-service --lib openapi`.
    #[test]
    fn the_shipped_description_is_the_generated_one() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/token-service.openapi.json"
        );
        let generated = super::json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let shipped = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            shipped == generated,
            "docs/token-service.openapi.json is not the generated description: run \
             UPDATE_OPENAPI=1 cargo test -p token-service --lib openapi"
        );
        let v: serde_json::Value = serde_json::from_str(&generated).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        for path in [
            "/oauth2/introspect",
            "/oauth2/token",
            "/oauth2/revoke",
            "/v1/accesstokens/attributes",
            "/v1/apps",
            "/v1/tokens",
            "/v1/changes",
            "/healthz",
            "/openapi.json",
        ] {
            assert!(v["paths"][path].is_object(), "{path} is not described");
        }
    }
}
