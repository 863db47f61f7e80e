//! The flow variables each policy can set (docs/variables.md), as a pure
//! list: what the policy checker prints, what docs/variables.md documents,
//! and what the tests hold both of them to.
//!
//! A name is either a fixed variable (`oauthv2accesstoken.P.scope`) or a
//! family with a `{name}` placeholder for the custom attributes of the token,
//! code or app, which the configuration cannot know.

use oauthv2info_names::variables::{self, FAULT_NAME};

use crate::policies::Policy;
use crate::publish::Publish;

/// When a variable is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// When the policy succeeds.
    Success,
    /// When the policy fails (with or without `continueOnError`).
    Failure,
    /// Either way (`oauthV2.P.failed`).
    Always,
}

/// One variable (or family of variables) a policy sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogVar {
    /// The full name; a family holds the placeholder `{name}`.
    pub name: String,
    pub when: When,
    /// Token values and client secrets: not published unless
    /// `export_secrets`.
    pub secret: bool,
    /// One per custom attribute (`{name}` in `name`).
    pub family: bool,
}

impl CatalogVar {
    /// The fixed variable `prefix.P.suffix`, set on success.
    pub(crate) fn fixed(prefix: &str, policy: &str, suffix: &str, secret: bool) -> CatalogVar {
        CatalogVar {
            name: variables::name(prefix, policy, suffix),
            when: When::Success,
            secret,
            family: false,
        }
    }

    /// The fixed variable `name` (no prefix), set on success.
    pub(crate) fn bare(name: &str, secret: bool) -> CatalogVar {
        CatalogVar {
            name: name.to_string(),
            when: When::Success,
            secret,
            family: false,
        }
    }

    /// The custom attributes `prefix.P.{custom}{name}`, set on success.
    pub(crate) fn family(prefix: &str, policy: &str, custom: &str) -> CatalogVar {
        CatalogVar {
            name: variables::name(prefix, policy, &format!("{custom}{{name}}")),
            when: When::Success,
            secret: false,
            family: true,
        }
    }
}

/// Every variable `policy` can set, success variables first, then
/// `oauthV2.P.failed`, then the fault variables. A disabled policy sets
/// nothing: the list is empty.
pub fn variables(policy: &Policy) -> Vec<CatalogVar> {
    if !policy.enabled {
        return Vec::new();
    }
    let name = &policy.name;
    let mut out = Vec::new();
    policy.kind.success_variables(name, &mut out);
    // `raisefault.P.failed`...: RaiseFault's own prefix (docs/faults.md#raisefault).
    let prefix = match policy.type_name() {
        "RaiseFault" => crate::policies::raise_fault::PREFIX,
        "AssignMessage" => crate::policies::assign_message::PREFIX,
        _ => variables::POLICY_PREFIX,
    };
    out.push(CatalogVar {
        name: variables::name(prefix, name, "failed"),
        when: When::Always,
        secret: false,
        family: false,
    });
    for fault_var in [
        FAULT_NAME.to_string(),
        variables::name(prefix, name, "fault.name"),
        variables::name(prefix, name, "fault.cause"),
    ] {
        out.push(CatalogVar {
            name: fault_var,
            when: When::Failure,
            secret: false,
            family: false,
        });
    }
    out
}

/// Whether a variable of the catalog reaches filter state and dynamic
/// metadata under `publish` and `export_secrets`. For a family the
/// placeholder is tested as one segment named `name` (a custom attribute
/// whose name holds dots may match differently).
pub fn is_published(var: &CatalogVar, publish: &Publish, export_secrets: bool) -> bool {
    (export_secrets || !var.secret) && publish.matches(&var.name.replace("{name}", "name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;
    use crate::flow::{Flow, FlowOutcome};
    use crate::request::RequestInfo;
    use oauthv2info_names::TokenKind;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn policy(xml: &str) -> Policy {
        let config = parse_config(xml.as_bytes()).unwrap();
        config.policies[0].clone()
    }

    /// A profile with every field the token service sends, and one custom
    /// attribute.
    fn full_answer() -> String {
        json!({"active": true, "client_id": "app", "profile": {
            "access_token": "at", "client_id": "app", "scope": "READ", "status": "approved",
            "token_type": "BearerToken", "issued_at": NOW.to_string(),
            "expires_at": (NOW + 60_000).to_string(), "organization_name": "org",
            "api_product_list": "[P]", "developer.id": "d", "developer.email": "e@x",
            "developer.app.name": "n", "developer.app.id": "i", "refresh_token": "rt",
            "refresh_token_status": "approved", "refresh_token_issued_at": NOW.to_string(),
            "refresh_token_expires_at": (NOW + 120_000).to_string(), "refresh_count": "0",
            "code": "c", "redirect_uri": "https://cb", "client_secret": "s",
            "redirection_uris": "https://cb",
            "attributes": {"custom": "v"}}})
        .to_string()
    }

    /// What a flow really sets for `xml` from a full profile.
    fn set_names(xml: &str) -> Vec<String> {
        let config = parse_config(
            json!({"policies": [xml], "export_secrets": true})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let mut flow = Flow::new();
        flow.now_ms = NOW;
        let request = RequestInfo::default();
        assert_eq!(flow.advance(&config, &request), FlowOutcome::Wait);
        flow.on_response(&config, &request, Some(200), full_answer().as_bytes());
        assert_eq!(flow.advance(&config, &request), FlowOutcome::Continue);
        let mut names = Vec::new();
        flow.visit_all(&config, &mut Vec::new(), |k, _| {
            names.push(String::from_utf8_lossy(k).into_owned())
        });
        names
    }

    /// The catalog lists exactly what a flow sets from a full profile, in
    /// the same order (the family standing for the one custom attribute).
    #[test]
    fn lists_match_what_flows_set() {
        let mut xmls: Vec<String> = TokenKind::ALL
            .iter()
            .map(|k| {
                format!(
                    r#"<GetOAuthV2Info name="P"><{0}>tok</{0}></GetOAuthV2Info>"#,
                    k.element()
                )
            })
            .collect();
        xmls.push(r#"<SetOAuthV2Info name="P"><AccessToken>at</AccessToken><Attributes><Attribute name="a" ref="unset.var"/></Attributes></SetOAuthV2Info>"#.to_string());
        for xml in xmls {
            let expected: Vec<String> = variables(&policy(&xml))
                .into_iter()
                .filter(|v| v.when != When::Failure)
                .filter(|v| !(v.name.ends_with(".a")))
                .map(|v| v.name.replace("{name}", "custom"))
                .collect();
            assert_eq!(set_names(&xml), expected, "{xml}");
        }
    }

    #[test]
    fn get_policy_variables() {
        let p = policy(
            r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#,
        );
        let vars = variables(&p);
        let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names[0], "oauthv2accesstoken.G.access_token");
        assert!(vars[0].secret);
        assert!(names.contains(&"oauthv2accesstoken.G.developer.app.id"));
        assert!(names.contains(&"oauthv2accesstoken.G.accesstoken.{name}"));
        assert_eq!(
            &names[names.len() - 4..],
            [
                "oauthV2.G.failed",
                "fault.name",
                "oauthV2.G.fault.name",
                "oauthV2.G.fault.cause"
            ]
        );
        assert_eq!(vars.len(), variables::TOKEN.len() + 1 + 4);
        let client = policy(r#"<GetOAuthV2Info name="C"><ClientId>x</ClientId></GetOAuthV2Info>"#);
        let names: Vec<String> = variables(&client).into_iter().map(|v| v.name).collect();
        assert!(names.contains(&"oauthv2client.C.redirection_uris".to_string()));
        assert!(names.contains(&"oauthv2client.C.{name}".to_string()));
    }

    #[test]
    fn set_policy_lists_its_attributes() {
        let p = policy(
            r#"<SetOAuthV2Info name="S"><AccessToken ref="t"/><Attributes>
                 <Attribute name="department.id" ref="request.queryparam.d"/>
                 <Attribute name="department.id">again</Attribute>
                 <Attribute name="foo">bar</Attribute></Attributes></SetOAuthV2Info>"#,
        );
        let names: Vec<String> = variables(&p).into_iter().map(|v| v.name).collect();
        let n = variables::SET.len();
        assert_eq!(
            &names[n..n + 3],
            [
                "oauthv2accesstoken.S.department.id",
                "oauthv2accesstoken.S.foo",
                "oauthv2accesstoken.S.{name}"
            ]
        );
    }

    #[test]
    fn disabled_policies_set_nothing() {
        let p = policy(
            r#"<GetOAuthV2Info name="G" enabled="false"><AccessToken>x</AccessToken></GetOAuthV2Info>"#,
        );
        assert!(variables(&p).is_empty());
    }

    /// What the flow really sets on a fault is in the catalog.
    #[test]
    fn fault_variables_match_the_flow() {
        let config = parse_config(
            br#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#,
        )
        .unwrap();
        let mut flow = Flow::new();
        let request = RequestInfo::default();
        assert!(matches!(
            flow.advance(&config, &request),
            FlowOutcome::Reply(_)
        ));
        let catalog = variables(&config.policies[0]);
        let mut set = Vec::new();
        flow.visit_all(&config, &mut Vec::new(), |k, _| {
            set.push(String::from_utf8_lossy(k).into_owned())
        });
        for name in &set {
            let entry = catalog.iter().find(|c| c.name == *name);
            assert!(
                entry.is_some_and(|c| c.when != When::Success),
                "{name} is not a failure variable"
            );
        }
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn publishing() {
        let p = policy(
            r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#,
        );
        let vars = variables(&p);
        let find = |n: &str| vars.iter().find(|v| v.name == n).unwrap();
        let all = Publish::everything();
        assert!(!is_published(
            find("oauthv2accesstoken.G.access_token"),
            &all,
            false
        ));
        assert!(is_published(
            find("oauthv2accesstoken.G.access_token"),
            &all,
            true
        ));
        let narrow = Publish::new(&["oauthv2accesstoken.*.scope", "fault.name"]).unwrap();
        assert!(is_published(
            find("oauthv2accesstoken.G.scope"),
            &narrow,
            false
        ));
        assert!(!is_published(
            find("oauthv2accesstoken.G.client_id"),
            &narrow,
            false
        ));
        assert!(is_published(find("fault.name"), &narrow, false));
        let custom = Publish::new(&["oauthv2accesstoken.G.accesstoken.*"]).unwrap();
        assert!(is_published(
            find("oauthv2accesstoken.G.accesstoken.{name}"),
            &custom,
            false
        ));
    }
}
