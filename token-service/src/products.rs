//! API products and the apps' subscriptions to them (docs/token-service.md,
//! "API products"), in the shape of Apigee's management API
//! (`organizations.apiproducts`), so that a team can import what it exports
//! from Apigee. What a product allows is decided by the rules shared with
//! the filter (`oauthv2info_names::product`); this module only reads,
//! checks and converts.

use crate::error::{Error, Result};
use axum::http::StatusCode;
use oauthv2info_names::product as rules;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A custom attribute, as Apigee writes them: `{"name": .., "value": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameValue {
    #[schema(min_length = 1)]
    pub name: String,
    pub value: String,
}

/// One operation: a resource path and the verbs it allows (none: all).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiOperation {
    /// A resource path (`/`, `/**`, `/*`, `/users/*`...), matched against
    /// the request's path suffix.
    #[schema(min_length = 1)]
    pub resource: String,
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Apigee's quota settings of an operation configuration (`limit`,
/// `interval`, `timeUnit`, strings): not enforced here, passed in a
/// lookup's `api_products` (the filter's `apiproduct.developer.quota.*`).
pub type Quota = serde_json::Map<String, serde_json::Value>;

/// The operations of one proxy (`apiSource`), with custom attributes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OperationConfig {
    /// The proxy's name.
    #[schema(min_length = 1)]
    pub api_source: String,
    #[serde(default)]
    pub operations: Vec<ApiOperation>,
    #[serde(default)]
    pub attributes: Vec<NameValue>,
    /// Its quota (`limit`, `interval`, `timeUnit`, strings), which applies
    /// to the calls it allows instead of the product's: not enforced here,
    /// passed in a lookup's `api_products`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub quota: Option<Quota>,
}

/// Apigee X's operation group.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OperationGroup {
    #[serde(default)]
    pub operation_configs: Vec<OperationConfig>,
    /// `proxy` (the only type here; `remoteservice` is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub operation_config_type: Option<String>,
}

/// An API product, as Apigee's management API reads and writes it (the
/// members this service does not use, such as timestamps, are accepted on
/// import and kept as given; the quota settings `quota`, `quotaInterval`,
/// `quotaTimeUnit`, strings, are kept there too and passed in a lookup).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiProduct {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub approval_type: Option<String>,
    /// Resource paths (none: every path).
    #[serde(default)]
    pub api_resources: Vec<String>,
    /// Proxy names (none: every proxy).
    #[serde(default)]
    pub proxies: Vec<String>,
    /// Environments (none: every environment).
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub operation_group: Option<OperationGroup>,
    /// Apigee's other members (`quota`, `createdAt`, `lastModifiedBy`...),
    /// kept as given.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A subscription's status (Apigee's `apiProducts[].status` of a
/// credential): only `approved` lets the product allow anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    Approved,
    Pending,
    Revoked,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Approved => "approved",
            SubscriptionStatus::Pending => "pending",
            SubscriptionStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approved" => Some(SubscriptionStatus::Approved),
            "pending" => Some(SubscriptionStatus::Pending),
            "revoked" => Some(SubscriptionStatus::Revoked),
            _ => None,
        }
    }
}

/// The most of each list a product may hold (a bound on what one lookup
/// answer carries).
pub const MAX_ITEMS: usize = 100;

fn invalid(what: impl Into<String>) -> Error {
    Error::invalid_request(what)
}

fn bounded<T>(field: &str, v: &[T]) -> Result<()> {
    if v.len() > MAX_ITEMS {
        return Err(invalid(format!(
            "{field} has {} items; the limit is {MAX_ITEMS}",
            v.len()
        )));
    }
    Ok(())
}

fn check_resource(field: &str, r: &str) -> Result<()> {
    rules::check_resource(r).map_err(|why| invalid(format!("{field}: {why}")))
}

fn check_names(field: &str, v: &[String]) -> Result<()> {
    bounded(field, v)?;
    if v.iter().any(|s| s.is_empty()) {
        return Err(invalid(format!("{field} holds an empty name")));
    }
    Ok(())
}

/// A quota setting: absent, null, a string or a whole number.
fn check_quota_value(field: &str, v: Option<&serde_json::Value>) -> Result<()> {
    use serde_json::Value;
    match v {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(()),
        Some(_) => Err(invalid(format!("{field} must be a string"))),
    }
}

/// A quota setting as a lookup passes it: its text, when it has one.
fn quota_text(v: Option<&serde_json::Value>) -> Option<String> {
    use serde_json::Value;
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn check_attributes(field: &str, v: &[NameValue]) -> Result<()> {
    bounded(field, v)?;
    if v.iter().any(|a| a.name.is_empty()) {
        return Err(invalid(format!(
            "{field} holds an attribute without a name"
        )));
    }
    Ok(())
}

impl ApiProduct {
    /// Refuses what the product check could not read as its author meant.
    pub fn check(&self) -> Result<()> {
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(invalid("name must be 1 to 255 characters"));
        }
        if self.name.chars().any(|c| c.is_control() || c == '/') {
            return Err(invalid("name holds '/' or a control character"));
        }
        bounded("apiResources", &self.api_resources)?;
        for r in &self.api_resources {
            check_resource("apiResources", r)?;
        }
        check_names("proxies", &self.proxies)?;
        check_names("environments", &self.environments)?;
        check_names("scopes", &self.scopes)?;
        check_attributes("attributes", &self.attributes)?;
        for member in PRODUCT_QUOTA {
            check_quota_value(member, self.other.get(member))?;
        }
        if let Some(g) = &self.operation_group {
            if let Some(t) = &g.operation_config_type {
                if t != "proxy" {
                    return Err(invalid(format!(
                        "operationGroup.operationConfigType {t:?} is not supported (only \"proxy\")"
                    )));
                }
            }
            bounded("operationGroup.operationConfigs", &g.operation_configs)?;
            for c in &g.operation_configs {
                if c.api_source.is_empty() {
                    return Err(invalid("operationGroup: an apiSource is empty"));
                }
                bounded("operationGroup operations", &c.operations)?;
                for op in &c.operations {
                    check_resource("operationGroup resource", &op.resource)?;
                    check_names("operationGroup methods", &op.methods)?;
                }
                check_attributes("operationGroup attributes", &c.attributes)?;
                for member in CONFIG_QUOTA {
                    let v = c.quota.as_ref().and_then(|q| q.get(member));
                    check_quota_value(&format!("operationGroup quota.{member}"), v)?;
                }
            }
        }
        Ok(())
    }

    /// The product as the shared rules see it.
    pub fn rules(&self) -> rules::Product {
        let pairs = |v: &[NameValue]| {
            v.iter()
                .map(|a| (a.name.clone(), a.value.clone()))
                .collect()
        };
        rules::Product {
            name: self.name.clone(),
            proxies: self.proxies.clone(),
            resources: self.api_resources.clone(),
            environments: self.environments.clone(),
            operations: self
                .operation_group
                .iter()
                .flat_map(|g| &g.operation_configs)
                .map(|c| rules::OperationConfig {
                    api_source: c.api_source.clone(),
                    operations: c
                        .operations
                        .iter()
                        .map(|o| rules::Operation {
                            resource: o.resource.clone(),
                            methods: o.methods.clone(),
                        })
                        .collect(),
                    attributes: pairs(&c.attributes),
                })
                .collect(),
            attributes: pairs(&self.attributes),
        }
    }
}

/// The product's quota members (Apigee's `apiproducts`), in the order of
/// [`LookupQuota`]'s.
const PRODUCT_QUOTA: [&str; 3] = ["quota", "quotaInterval", "quotaTimeUnit"];
/// An operation configuration's (Apigee's `Quota`), in the same order.
const CONFIG_QUOTA: [&str; 3] = ["limit", "interval", "timeUnit"];

/// Quota settings as a lookup answers them (each only when set): the
/// product's `quota`, `quotaInterval`, `quotaTimeUnit`, or an operation
/// configuration's `quota` (`limit`, `interval`, `timeUnit`). The filter
/// sets `apiproduct.developer.quota.*` from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LookupQuota {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub time_unit: Option<String>,
}

impl LookupQuota {
    /// The settings named `members` of `object`; `None` when none is set.
    fn of(
        object: Option<&serde_json::Map<String, serde_json::Value>>,
        members: [&str; 3],
    ) -> Option<Self> {
        let [limit, interval, time_unit] = members.map(|m| quota_text(object?.get(m)));
        let q = LookupQuota {
            limit,
            interval,
            time_unit,
        };
        (q.limit.is_some() || q.interval.is_some() || q.time_unit.is_some()).then_some(q)
    }
}

/// A product as a lookup answers it (`api_products` of an introspection
/// answer: what the filter's product check reads, docs/token-service.md):
/// only what the check and its variables use, empty lists left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LookupProduct {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub proxies: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub environments: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub operation_configs: Vec<LookupOperations>,
    /// The product's custom attributes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(nullable = false)]
    pub attributes: BTreeMap<String, String>,
    /// The product's quota settings, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub quota: Option<LookupQuota>,
}

/// One operation configuration, as a lookup answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LookupOperations {
    pub api_source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub operations: Vec<ApiOperation>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(nullable = false)]
    pub attributes: BTreeMap<String, String>,
    /// Its own quota settings, when it has any: they apply to the calls it
    /// allows instead of the product's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub quota: Option<LookupQuota>,
}

impl ApiProduct {
    pub fn lookup_view(&self) -> LookupProduct {
        let map = |v: &[NameValue]| {
            v.iter()
                .map(|a| (a.name.clone(), a.value.clone()))
                .collect()
        };
        LookupProduct {
            name: self.name.clone(),
            proxies: self.proxies.clone(),
            resources: self.api_resources.clone(),
            environments: self.environments.clone(),
            operation_configs: self
                .operation_group
                .iter()
                .flat_map(|g| &g.operation_configs)
                .map(|c| LookupOperations {
                    api_source: c.api_source.clone(),
                    operations: c.operations.clone(),
                    attributes: map(&c.attributes),
                    quota: LookupQuota::of(c.quota.as_ref(), CONFIG_QUOTA),
                })
                .collect(),
            attributes: map(&self.attributes),
            quota: LookupQuota::of(Some(&self.other), PRODUCT_QUOTA),
        }
    }
}

/// A developer app as Apigee's management API exports it (`GET
/// .../developers/{email}/apps/{name}`, or `.../apps?expand=true`): what
/// `POST /v1/apigee/apps` reads. Other members (`createdAt`, `scopes`,
/// `appFamily`...) are accepted and not kept.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApigeeApp {
    #[schema(min_length = 1)]
    pub name: String,
    #[serde(default)]
    #[schema(nullable = false)]
    pub app_id: Option<String>,
    /// Required here (Apigee X exports it; add it to an Edge export).
    #[serde(default)]
    #[schema(nullable = false)]
    pub developer_email: Option<String>,
    #[serde(default)]
    #[schema(nullable = false)]
    pub developer_id: Option<String>,
    /// `approved` (default) or `revoked`.
    #[serde(default)]
    #[schema(nullable = false)]
    pub status: Option<String>,
    #[serde(default)]
    pub attributes: Vec<NameValue>,
    #[serde(default)]
    #[schema(nullable = false)]
    pub callback_url: Option<String>,
    /// Exactly one: its key becomes the client id.
    pub credentials: Vec<ApigeeCredential>,
}

/// One credential (an API key and its secret) of an Apigee app.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApigeeCredential {
    #[schema(min_length = 1)]
    pub consumer_key: String,
    #[schema(min_length = 1)]
    pub consumer_secret: String,
    /// `approved` (default) or `revoked`.
    #[serde(default)]
    #[schema(nullable = false)]
    pub status: Option<String>,
    #[serde(default)]
    pub api_products: Vec<ApigeeSubscription>,
}

/// A credential's product and the subscription's status.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApigeeSubscription {
    #[schema(min_length = 1)]
    pub apiproduct: String,
    pub status: SubscriptionStatus,
}

/// An approval status of an app or a key (`approved`, `revoked`).
pub fn approval(field: &str, v: Option<&str>) -> Result<&'static str> {
    match v {
        None | Some("approved") => Ok("approved"),
        Some("revoked") => Ok("revoked"),
        Some(other) => Err(invalid(format!(
            "{field} {:?} is neither approved nor revoked",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

/// A product unknown to the store.
pub fn unknown_product() -> Error {
    Error::new(
        StatusCode::NOT_FOUND,
        "unknown_api_product",
        "no API product has this name",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn an_apigee_export_is_read_checked_and_kept() {
        let exported = serde_json::json!({
            "name": "read-only", "displayName": "Read only", "approvalType": "auto",
            "apiResources": [], "proxies": [], "environments": ["test"], "scopes": [],
            "attributes": [{"name": "access", "value": "public"}],
            "createdAt": "1693001234567", "lastModifiedBy": "someone@example.com",
            "quota": "100", "quotaInterval": "1", "quotaTimeUnit": "hour",
            "operationGroup": {"operationConfigType": "proxy", "operationConfigs": [
                {"apiSource": "apiproduct-operations",
                 "operations": [{"resource": "/apikey", "methods": ["GET"]}],
                 "quota": {"limit": "10", "interval": "1", "timeUnit": "minute"},
                 "attributes": [{"name": "tier", "value": "read"}]}]}
        });
        let p: ApiProduct = serde_json::from_value(exported.clone()).unwrap();
        p.check().unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap(), exported);
        let r = p.rules();
        assert_eq!(r.operations[0].operations[0].methods, ["GET"]);
        assert_eq!(r.attributes, [("access".to_string(), "public".to_string())]);
        let view = serde_json::to_value(p.lookup_view()).unwrap();
        assert_eq!(
            view["quota"],
            serde_json::json!({"limit": "100", "interval": "1", "time_unit": "hour"})
        );
        assert_eq!(
            view["operation_configs"][0]["quota"],
            serde_json::json!({"limit": "10", "interval": "1", "time_unit": "minute"})
        );
    }

    #[test]
    fn a_lookup_passes_only_the_quota_settings_present() {
        let p: ApiProduct = serde_json::from_value(serde_json::json!({
            "name": "p", "quota": 5, "quotaInterval": "",
            "operationGroup": {"operationConfigs": [
                {"apiSource": "a", "quota": {"timeUnit": "day"}},
                {"apiSource": "b", "quota": {}}, {"apiSource": "c"}]}
        }))
        .unwrap();
        p.check().unwrap();
        let view = serde_json::to_value(p.lookup_view()).unwrap();
        assert_eq!(view["quota"], serde_json::json!({"limit": "5"}));
        let configs = &view["operation_configs"];
        assert_eq!(configs[0]["quota"], serde_json::json!({"time_unit": "day"}));
        assert!(configs[1].get("quota").is_none());
        assert!(configs[2].get("quota").is_none());
        let plain: ApiProduct = serde_json::from_value(serde_json::json!({"name": "q"})).unwrap();
        assert!(serde_json::to_value(plain.lookup_view())
            .unwrap()
            .get("quota")
            .is_none());
    }

    #[test]
    fn malformed_products_are_refused() {
        let bad = [
            serde_json::json!({"name": ""}),
            serde_json::json!({"name": "a/b"}),
            serde_json::json!({"name": "p", "apiResources": ["forecast"]}),
            serde_json::json!({"name": "p", "apiResources": ["/a*"]}),
            serde_json::json!({"name": "p", "proxies": [""]}),
            serde_json::json!({"name": "p", "attributes": [{"name": "", "value": "v"}]}),
            serde_json::json!({"name": "p", "operationGroup": {"operationConfigType": "remoteservice"}}),
            serde_json::json!({"name": "p", "operationGroup": {"operationConfigs": [
                {"apiSource": "x", "operations": [{"resource": "x"}]}]}}),
            serde_json::json!({"name": "p", "quota": {"limit": "5"}}),
            serde_json::json!({"name": "p", "quotaTimeUnit": ["hour"]}),
            serde_json::json!({"name": "p", "operationGroup": {"operationConfigs": [
                {"apiSource": "x", "quota": {"limit": 1.5}}]}}),
        ];
        for b in bad {
            let p: ApiProduct = serde_json::from_value(b.clone()).unwrap();
            assert!(p.check().is_err(), "{b}");
        }
        let many: Vec<String> = (0..=MAX_ITEMS).map(|i| format!("/r{i}")).collect();
        let p: ApiProduct =
            serde_json::from_value(serde_json::json!({"name": "p", "apiResources": many})).unwrap();
        assert!(p.check().is_err());
    }
}
