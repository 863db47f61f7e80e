//! What the importer does with each policy type: translate it into a step of
//! the filter, inline it (FlowCallout), or report it, with what to use in
//! Envoy instead and whether it guards access (docs/decisions.md#import).
//!
//! Adding a policy type the filter learns to run is one row in
//! [`classify`]; one the report should advise on, one row in [`TABLE`].

use super::model::PolicyFile;

/// What becomes of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A step of the filter's plugin configuration.
    Translated,
    /// A FlowCallout: the steps of the shared flow it names.
    FlowCallout { shared_flow: String },
    /// Not translated. `guard`: it can refuse a request Apigee refuses, so
    /// leaving it out lets requests through (fail closed: named first,
    /// exit 1 unless acknowledged).
    Untranslated { guard: bool, advice: &'static str },
}

/// Policy types the report knows: (type, guards access, what to use in
/// Envoy instead).
const TABLE: &[(&str, bool, &str)] = &[
    ("VerifyJWT", true, "Envoy's jwt_authn filter"),
    ("VerifyJWS", true, "Envoy's jwt_authn filter"),
    ("DecodeJWT", false, "Envoy's jwt_authn filter (payload_in_metadata) decodes a verified JWT"),
    ("GenerateJWT", false, "not covered: issue JWTs in a service"),
    ("GenerateJWS", false, "not covered: sign in a service"),
    ("BasicAuthentication", true, "Envoy's basic_auth filter (Decode and a check), or ext_authz"),
    ("Quota", true, "Envoy's global rate limiting (ratelimit filter and a rate limit service)"),
    ("SpikeArrest", true, "Envoy's local_ratelimit filter"),
    ("ConcurrentRatelimit", true, "Envoy's circuit breakers (max_requests) or local_ratelimit"),
    ("AccessControl", true, "Envoy's rbac filter (remote IP rules)"),
    ("OASValidation", true, "not covered: validate the request in the service or an ext_proc filter"),
    ("MessageValidation", true, "not covered: validate the request in the service or an ext_proc filter"),
    ("JSONThreatProtection", true, "not covered: limits in the service, Envoy's buffer limits for sizes"),
    ("XMLThreatProtection", true, "not covered: limits in the service, Envoy's buffer limits for sizes"),
    ("RegularExpressionProtection", true, "not covered: a WAF (ext_proc) or checks in the service"),
    ("HMAC", true, "not covered: verify the signature in the service or ext_authz"),
    ("VerifyIAM", true, "not covered: ext_authz"),
    ("OAuthV1", true, "not covered: ext_authz"),
    ("SAMLAssertion", true, "not covered: ext_authz"),
    ("AssignMessage", false, "header-only: the route's request_headers_to_add / request_headers_to_remove (a {variable} value: a request_headers mapping of the plugin configuration)"),
    ("ExtractVariables", false, "not covered: the filter's conditions and refs read request variables directly"),
    ("Javascript", false, "not covered: a Lua filter, or the service"),
    ("JavaCallout", false, "not covered: the service, or ext_proc"),
    ("PythonScript", false, "not covered: a Lua filter, or the service"),
    ("ServiceCallout", false, "not covered: the service, or ext_proc"),
    ("ExternalCallout", false, "not covered: Envoy's ext_proc filter"),
    ("KeyValueMapOperations", false, "not covered: configuration of the service"),
    ("LookupCache", false, "not covered: a cache in the service"),
    ("PopulateCache", false, "not covered: a cache in the service"),
    ("InvalidateCache", false, "not covered: a cache in the service"),
    ("ResponseCache", false, "not covered: an HTTP cache (Envoy's cache filter)"),
    ("AccessEntity", false, "not covered: the token service's admin API"),
    ("StatisticsCollector", false, "not covered: Envoy's access log and stats"),
    ("MessageLogging", false, "Envoy's access log"),
    ("DataCapture", false, "Envoy's access log"),
    ("TraceCapture", false, "Envoy's tracing"),
    ("CORS", false, "Envoy's cors filter and the route's cors policy"),
    ("HTTPModifier", false, "route header rules"),
    ("XMLToJSON", false, "not covered: the service"),
    ("JSONToXML", false, "not covered: the service"),
    ("XSL", false, "not covered: the service"),
    ("SetIntegrationRequest", false, "not covered"),
    ("GetOAuthV1Info", false, "not covered"),
    ("DeleteOAuthV2Info", false, "not covered: the token service's admin API"),
];

/// What becomes of a step of `policy`.
pub fn classify(policy: &PolicyFile) -> Class {
    match policy.type_name.as_str() {
        "GetOAuthV2Info" | "SetOAuthV2Info" | "RaiseFault" | "VerifyAPIKey" => Class::Translated,
        "OAuthV2" => match operation(policy).as_deref() {
            Some("VerifyAccessToken") => Class::Translated,
            _ => Class::Untranslated {
                guard: false,
                advice: "the token service issues and changes tokens (docs/token-service.md): route this path to it",
            },
        },
        // Encode builds an Authorization header; Decode reads one, and
        // faults when it is missing or malformed.
        "BasicAuthentication" if operation(policy).as_deref() == Some("Encode") => {
            Class::Untranslated {
                guard: false,
                advice: "Encode: the route's request_headers_to_add (a static credential), or the service",
            }
        }
        "AssignMessage" if !header_only(policy) => Class::Untranslated {
            guard: false,
            advice: "not covered: it changes more than headers (payload, verb, path, parameters or variables): the service, or a Lua filter",
        },
        "FlowCallout" => Class::FlowCallout {
            shared_flow: policy
                .root
                .children
                .iter()
                .find(|c| c.name == "SharedFlowBundle")
                .map(|c| c.text.trim().to_string())
                .unwrap_or_default(),
        },
        other => match TABLE.iter().find(|(t, _, _)| *t == other) {
            Some((_, guard, advice)) => Class::Untranslated {
                guard: *guard,
                advice,
            },
            None => Class::Untranslated {
                guard: false,
                advice: "not covered (a policy type the importer does not know)",
            },
        },
    }
}

/// The variables an untranslated policy sets, where its XML says so:
/// ExtractVariables (`<VariablePrefix>` and each `{name}` of its patterns,
/// each `<Variable name>`), AssignMessage's `<AssignVariable><Name>`,
/// KeyValueMapOperations' `assignTo`, ServiceCallout's and
/// AssignMessage's response variables are not listed: a name a step reads
/// and none of these sets is reported by the filter's own warning.
pub fn sets_of(policy: &PolicyFile) -> Vec<String> {
    let root = &policy.root;
    let mut out = Vec::new();
    let mut stack = vec![root];
    let prefix = root
        .children
        .iter()
        .find(|c| c.name == "VariablePrefix")
        .map(|c| c.text.trim().to_string())
        .filter(|p| !p.is_empty());
    let with_prefix = |name: &str| match &prefix {
        Some(p) => format!("{p}.{name}"),
        None => name.to_string(),
    };
    while let Some(e) = stack.pop() {
        match (policy.type_name.as_str(), e.name.as_str()) {
            ("ExtractVariables", "Pattern") => {
                let mut rest = e.text.as_str();
                while let Some(open) = rest.find('{') {
                    let Some(close) = rest[open..].find('}') else {
                        break;
                    };
                    out.push(with_prefix(&rest[open + 1..open + close]));
                    rest = &rest[open + close + 1..];
                }
            }
            ("ExtractVariables", "Variable") => {
                out.extend(e.attribute("name").map(with_prefix));
            }
            ("AssignMessage", "AssignVariable") => {
                out.extend(
                    e.children
                        .iter()
                        .find(|c| c.name == "Name")
                        .map(|c| c.text.trim().to_string()),
                );
            }
            _ => {}
        }
        out.extend(e.attribute("assignTo").map(str::to_string));
        stack.extend(e.children.iter());
    }
    out
}

/// An AssignMessage that only sets, adds or removes headers.
fn header_only(policy: &PolicyFile) -> bool {
    const META: [&str; 5] = [
        "DisplayName",
        "Description",
        "Properties",
        "IgnoreUnresolvedVariables",
        "AssignTo",
    ];
    policy.root.children.iter().all(|c| match c.name.as_str() {
        "Set" | "Add" | "Remove" => c.children.iter().all(|h| h.name == "Headers"),
        name => META.contains(&name) || name == "FaultRules",
    })
}

/// OAuthV2's `<Operation>`.
pub fn operation(policy: &PolicyFile) -> Option<String> {
    policy
        .root
        .children
        .iter()
        .find(|c| c.name == "Operation")
        .map(|c| c.text.trim().to_string())
}

/// The policy's type as the report names it (`OAuthV2/VerifyAccessToken`).
pub fn type_label(policy: &PolicyFile) -> String {
    match (policy.type_name.as_str(), operation(policy)) {
        ("OAuthV2", Some(op)) => format!("OAuthV2/{op}"),
        (t, _) => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::core::parse_xml;
    use super::*;

    fn policy(xml: &str) -> PolicyFile {
        let root = parse_xml(xml).unwrap();
        PolicyFile {
            type_name: root.name.clone(),
            name: "P".into(),
            enabled: true,
            xml: xml.into(),
            root,
            origin: "p".into(),
        }
    }

    #[test]
    fn what_untranslated_policies_set() {
        let ev = policy(
            "<ExtractVariables name=\"E\"><VariablePrefix>apigee</VariablePrefix><Header name=\"x-token\"><Pattern>Bearer {token}</Pattern></Header><JSONPayload><Variable name=\"user\"><JSONPath>$.u</JSONPath></Variable></JSONPayload></ExtractVariables>",
        );
        let mut sets = sets_of(&ev);
        sets.sort();
        assert_eq!(sets, ["apigee.token", "apigee.user"]);
        let am = policy("<AssignMessage name=\"A\"><AssignVariable><Name>flow.t</Name><Ref>x</Ref></AssignVariable></AssignMessage>");
        assert_eq!(sets_of(&am), ["flow.t"]);
    }

    #[test]
    fn classifies_the_oauth_policies_guards_and_callouts() {
        let verify =
            policy("<OAuthV2 name=\"P\"><Operation>VerifyAccessToken</Operation></OAuthV2>");
        assert_eq!(classify(&verify), Class::Translated);
        assert_eq!(type_label(&verify), "OAuthV2/VerifyAccessToken");
        let generate =
            policy("<OAuthV2 name=\"P\"><Operation>GenerateAccessToken</Operation></OAuthV2>");
        assert!(matches!(
            classify(&generate),
            Class::Untranslated { guard: false, .. }
        ));
        let key = policy(
            "<VerifyAPIKey name=\"P\"><APIKey ref=\"request.header.apikey\"/></VerifyAPIKey>",
        );
        assert_eq!(classify(&key), Class::Translated);
        assert_eq!(type_label(&key), "VerifyAPIKey");
        assert!(matches!(
            classify(&policy("<Quota name=\"P\"/>")),
            Class::Untranslated { guard: true, .. }
        ));
        assert!(matches!(
            classify(&policy("<Javascript name=\"P\"/>")),
            Class::Untranslated { guard: false, .. }
        ));
        let headers = "<AssignMessage name=\"P\"><Set><Headers><Header name=\"x\">1</Header></Headers></Set><AssignTo type=\"request\"/></AssignMessage>";
        match classify(&policy(headers)) {
            Class::Untranslated {
                guard: false,
                advice,
            } => {
                assert!(advice.starts_with("header-only"), "{advice}")
            }
            other => panic!("{other:?}"),
        }
        let payload = "<AssignMessage name=\"P\"><Set><Payload>x</Payload></Set></AssignMessage>";
        match classify(&policy(payload)) {
            Class::Untranslated {
                guard: false,
                advice,
            } => {
                assert!(advice.starts_with("not covered"), "{advice}")
            }
            other => panic!("{other:?}"),
        }
        let decode =
            "<BasicAuthentication name=\"P\"><Operation>Decode</Operation></BasicAuthentication>";
        assert!(matches!(
            classify(&policy(decode)),
            Class::Untranslated { guard: true, .. }
        ));
        let encode =
            "<BasicAuthentication name=\"P\"><Operation>Encode</Operation></BasicAuthentication>";
        assert!(matches!(
            classify(&policy(encode)),
            Class::Untranslated { guard: false, .. }
        ));
        assert!(matches!(
            classify(&policy("<Unheard name=\"P\"/>")),
            Class::Untranslated { guard: false, .. }
        ));
        assert_eq!(
            classify(&policy(
                "<FlowCallout name=\"P\"><SharedFlowBundle> sf </SharedFlowBundle></FlowCallout>"
            )),
            Class::FlowCallout {
                shared_flow: "sf".into()
            }
        );
    }
}
