//! The flow variables each policy can set (SPEC 3.3, 3.4, 5), as a pure
//! list: what the policy checker prints, what docs/variables.md documents,
//! and what the tests hold both of them to.
//!
//! A name is either a fixed variable (`oauthv2accesstoken.P.scope`) or a
//! family with a `{name}` placeholder for the custom attributes of the token,
//! code or app, which the configuration cannot know.

use crate::policy::{Policy, PolicyKind, TokenKind};
use crate::publish::Publish;

/// Standard suffixes of an access or refresh token profile, after
/// `oauthv2accesstoken.P.` / `oauthv2refreshtoken.P.`, in the order the
/// filter sets them; `true` for secret values.
pub const TOKEN_SUFFIXES: &[(&str, bool)] = &[
    ("access_token", true),
    ("client_id", false),
    ("scope", false),
    ("status", false),
    ("expires_in", false),
    ("issued_at", false),
    ("token_type", false),
    ("organization_name", false),
    ("api_product_list", false),
    ("developer.id", false),
    ("developer.email", false),
    ("developer.app.name", false),
    ("developer.app.id", false),
    ("refresh_token", true),
    ("refresh_token_status", false),
    ("refresh_token_expires_in", false),
    ("refresh_token_issued_at", false),
    ("refresh_count", false),
];

/// Standard suffixes of an authorization code, after `oauthv2authcode.P.`.
pub const AUTH_CODE_SUFFIXES: &[(&str, bool)] = &[
    ("code", true),
    ("client_id", false),
    ("scope", false),
    ("redirect_uri", false),
    ("status", false),
    ("issued_at", false),
    ("expires_in", false),
];

/// Standard suffixes of a client (developer app), after `oauthv2client.P.`.
pub const CLIENT_SUFFIXES: &[(&str, bool)] = &[
    ("client_id", false),
    ("client_secret", true),
    ("redirection_uris", false),
    ("developer.email", false),
    ("developer.id", false),
    ("developer.app.name", false),
];

/// Suffixes SetOAuthV2Info sets from the updated profile, after
/// `oauthv2accesstoken.P.` (the SetOAuthV2Info page's list).
pub const SET_SUFFIXES: &[(&str, bool)] = &[
    ("access_token", true),
    ("client_id", false),
    ("refresh_count", false),
    ("organization_name", false),
    ("expires_in", false),
    ("refresh_token_expires_in", false),
    ("issued_at", false),
    ("status", false),
    ("api_product_list", false),
    ("token_type", false),
];

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
    /// `export_secrets` (SPEC 4).
    pub secret: bool,
    /// One per custom attribute (`{name}` in `name`).
    pub family: bool,
}

/// The standard suffixes and the custom-attribute prefix of a token kind.
pub fn kind_suffixes(kind: TokenKind) -> (&'static [(&'static str, bool)], &'static str) {
    match kind {
        TokenKind::AccessToken | TokenKind::RefreshToken => (TOKEN_SUFFIXES, "accesstoken."),
        TokenKind::AuthorizationCode => (AUTH_CODE_SUFFIXES, ""),
        TokenKind::ClientId => (CLIENT_SUFFIXES, ""),
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
    let fixed = |prefix: &str, suffix: &str, secret: bool| CatalogVar {
        name: format!("{prefix}.{name}.{suffix}"),
        when: When::Success,
        secret,
        family: false,
    };
    let family = |prefix: &str, custom: &str| CatalogVar {
        name: format!("{prefix}.{name}.{custom}{{name}}"),
        when: When::Success,
        secret: false,
        family: true,
    };
    match &policy.kind {
        PolicyKind::Get { kind, .. } => {
            let prefix = kind.variable_prefix();
            let (suffixes, custom) = kind_suffixes(*kind);
            out.extend(suffixes.iter().map(|(s, secret)| fixed(prefix, s, *secret)));
            out.push(family(prefix, custom));
        }
        PolicyKind::Set { attributes, .. } => {
            let prefix = "oauthv2accesstoken";
            out.extend(
                SET_SUFFIXES
                    .iter()
                    .map(|(s, secret)| fixed(prefix, s, *secret)),
            );
            // The attributes this policy writes, then every other custom
            // attribute the token already has. A name equal to a standard
            // suffix (e.g. "token_type" is protected, but "access_token.x"
            // is not) is listed once.
            for attribute in attributes {
                let var = fixed(prefix, &attribute.name, false);
                if !out.iter().any(|v| v.name == var.name) {
                    out.push(var);
                }
            }
            out.push(family(prefix, ""));
        }
    }
    out.push(CatalogVar {
        name: format!("oauthV2.{name}.failed"),
        when: When::Always,
        secret: false,
        family: false,
    });
    for fault_var in [
        "fault.name".to_string(),
        format!("oauthV2.{name}.fault.name"),
        format!("oauthV2.{name}.fault.cause"),
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
    use crate::engine::{Flow, Step};
    use crate::profile::{evaluate_get, parse_introspection, parse_set_response, set_vars};
    use crate::vars::RequestInfo;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn policy(xml: &str) -> Policy {
        let config = parse_config(xml.as_bytes()).unwrap();
        config.policies[0].clone()
    }

    /// A profile with every field the token service sends, and one custom
    /// attribute.
    fn full_answer() -> serde_json::Value {
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
    }

    /// The catalog lists exactly what profile.rs maps from a full profile,
    /// in the same order, with the same secrets.
    #[test]
    fn get_lists_match_the_profile_mapping() {
        for kind in TokenKind::ALL {
            let lookup = parse_introspection(
                Some(200),
                full_answer().to_string().as_bytes(),
                kind,
                "tok",
                NOW,
            )
            .unwrap();
            let mapped = evaluate_get(kind, false, "tok", &lookup, NOW).unwrap();
            let (suffixes, custom) = kind_suffixes(kind);
            let mut expected: Vec<(String, bool)> = suffixes
                .iter()
                .map(|(s, secret)| (s.to_string(), *secret))
                .collect();
            expected.push((format!("{custom}custom"), false));
            let got: Vec<(String, bool)> = mapped
                .iter()
                .map(|v| (v.suffix.to_string(), v.secret))
                .collect();
            assert_eq!(got, expected, "{kind:?}");
        }
    }

    #[test]
    fn set_list_matches_the_profile_mapping() {
        let profile =
            parse_set_response(Some(200), full_answer().to_string().as_bytes(), "at", NOW)
                .unwrap()
                .unwrap();
        let got: Vec<(String, bool)> = set_vars(&profile, "at", NOW)
            .iter()
            .map(|v| (v.suffix.to_string(), v.secret))
            .collect();
        let mut expected: Vec<(String, bool)> = SET_SUFFIXES
            .iter()
            .map(|(s, secret)| (s.to_string(), *secret))
            .collect();
        expected.push(("custom".to_string(), false));
        assert_eq!(got, expected);
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
        assert_eq!(vars.len(), TOKEN_SUFFIXES.len() + 1 + 4);
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
        let custom: Vec<&str> = names[SET_SUFFIXES.len()..SET_SUFFIXES.len() + 3]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            custom,
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

    /// What the engine really sets on a fault is in the catalog.
    #[test]
    fn fault_variables_match_the_engine() {
        let config = parse_config(
            br#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#,
        )
        .unwrap();
        let mut flow = Flow::new();
        let request = RequestInfo::default();
        assert!(matches!(flow.advance(&config, &request), Step::Reply(_)));
        let catalog: Vec<CatalogVar> = variables(&config.policies[0]);
        for var in flow.vars.iter() {
            let entry = catalog.iter().find(|c| c.name == var.name);
            assert!(
                entry.is_some_and(|c| c.when != When::Success),
                "{} is not a failure variable of the catalog",
                var.name
            );
        }
        assert_eq!(flow.vars.iter().count(), 4);
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
