//! The bundle's model: ProxyEndpoints and TargetEndpoints with their
//! PreFlow, conditional Flows and PostFlow, shared flows, and policies, as
//! Apigee's configuration reference describes them
//! (docs/migrating-from-apigee.md#how-import-reads-a-proxy).

use std::collections::BTreeMap;

use super::bundle::{Bundle, Kind};
use super::core::{parse_xml, Element};

/// A `<Step>`: a policy's name and the step's own condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub condition: Option<String>,
}

/// A `<FaultRule>` or the `<DefaultFaultRule>` of an endpoint.
#[derive(Debug, Clone, Default)]
pub struct FaultRule {
    pub name: String,
    pub condition: Option<String>,
    pub steps: Vec<Step>,
    /// `<AlwaysEnforce>` (DefaultFaultRule).
    pub always_enforce: bool,
}

/// A PreFlow, PostFlow or conditional Flow.
#[derive(Debug, Clone, Default)]
pub struct Flow {
    pub name: String,
    pub condition: Option<String>,
    pub request: Vec<Step>,
    pub response: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct RouteRule {
    pub name: String,
    pub condition: Option<String>,
    pub target: Option<String>,
    /// A `<URL>` in the rule itself (a route straight to a URL).
    pub url: Option<String>,
}

/// A ProxyEndpoint or a TargetEndpoint.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    pub name: String,
    /// ProxyEndpoint: `<HTTPProxyConnection><BasePath>`.
    pub base_path: String,
    pub pre: Flow,
    pub flows: Vec<Flow>,
    pub post: Flow,
    /// ProxyEndpoint: `<PostClientFlow>` steps (after the response).
    pub post_client: Vec<Step>,
    pub route_rules: Vec<RouteRule>,
    /// FaultRule and DefaultFaultRule blocks.
    pub fault_rules: Vec<String>,
    /// The `<FaultRule>`s, in the order written.
    pub rules: Vec<FaultRule>,
    pub default_rule: Option<FaultRule>,
    /// TargetEndpoint: `<HTTPTargetConnection><URL>`.
    pub url: Option<String>,
    /// TargetEndpoint: what it has instead of a URL (`LoadBalancer`,
    /// `LocalTargetConnection`...).
    pub connection: Option<String>,
}

/// A policy file: its type (the root element), name and XML.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    pub type_name: String,
    pub name: String,
    pub enabled: bool,
    /// The policy's XML from its root element (no declaration, no comment
    /// before it), as the plugin configuration carries it.
    pub xml: String,
    pub root: Element,
    /// The bundle it comes from (`apiproxy` or a shared flow's name).
    pub origin: String,
}

/// A proxy or a shared flow, read.
#[derive(Debug, Clone)]
pub struct Model {
    pub kind: Kind,
    /// The `name` of the descriptor's root (`<APIProxy name>`), else
    /// what `name_from` says.
    pub name: String,
    /// Where `name` comes from when the descriptor has no `name`.
    pub name_from: Option<String>,
    pub proxies: Vec<Endpoint>,
    pub targets: BTreeMap<String, Endpoint>,
    /// Shared flow bundles: their flows by name (`default`...).
    pub shared_flows: BTreeMap<String, Vec<Step>>,
    pub policies: BTreeMap<String, PolicyFile>,
}

/// Reads the model of a bundle; a problem is one line naming the file.
pub fn read(bundle: &Bundle) -> Result<Model, String> {
    let at = |file: &str, problem: String| {
        format!("{}: {}/{file}: {problem}", bundle.source, bundle.kind.dir())
    };
    let parse = |file: &str, text: &str| parse_xml(text).map_err(|p| at(file, p));
    let (name, name_from) = match bundle.descriptor() {
        Some((file, text)) => {
            let root = parse(file, text)?;
            match root.attribute("name") {
                Some(n) => (n.to_string(), None),
                None => (
                    file.trim_end_matches(".xml").to_string(),
                    Some(format!("the file name of {}/{file}", bundle.kind.dir())),
                ),
            }
        }
        None => (
            bundle
                .source
                .rsplit('/')
                .find(|s| !s.is_empty() && *s != "apiproxy" && *s != "sharedflowbundle")
                .unwrap_or("proxy")
                .trim_end_matches(".zip")
                .to_string(),
            Some(format!(
                "the bundle's name ({} has no {}/NAME.xml)",
                bundle.source,
                bundle.kind.dir()
            )),
        ),
    };
    let mut policies = BTreeMap::new();
    for (file, text) in bundle.files_in("policies") {
        let root = parse(&format!("policies/{file}"), text)?;
        let policy_name = root
            .attribute("name")
            .map(str::to_string)
            .unwrap_or_else(|| file.trim_end_matches(".xml").to_string());
        let policy = PolicyFile {
            type_name: root.name.clone(),
            enabled: root.attribute("enabled") != Some("false"),
            name: policy_name.clone(),
            xml: from_root(text).to_string(),
            root,
            origin: name.clone(),
        };
        policies.insert(policy_name, policy);
    }
    let mut model = Model {
        kind: bundle.kind,
        name,
        name_from,
        proxies: Vec::new(),
        targets: BTreeMap::new(),
        shared_flows: BTreeMap::new(),
        policies,
    };
    match bundle.kind {
        Kind::Proxy => {
            for (file, text) in bundle.files_in("proxies") {
                let root = parse(&format!("proxies/{file}"), text)?;
                if root.name != "ProxyEndpoint" {
                    return Err(at(
                        &format!("proxies/{file}"),
                        format!("expected <ProxyEndpoint>, found <{}>", root.name),
                    ));
                }
                model.proxies.push(endpoint(&root, file));
            }
            if model.proxies.is_empty() {
                return Err(format!(
                    "{} is not an Apigee proxy bundle: apiproxy/proxies/ holds no ProxyEndpoint",
                    bundle.source
                ));
            }
            for (file, text) in bundle.files_in("targets") {
                let root = parse(&format!("targets/{file}"), text)?;
                let target = endpoint(&root, file);
                model.targets.insert(target.name.clone(), target);
            }
        }
        Kind::SharedFlow => {
            for (file, text) in bundle.files_in("sharedflows") {
                let root = parse(&format!("sharedflows/{file}"), text)?;
                let flow_name = root
                    .attribute("name")
                    .unwrap_or(file.trim_end_matches(".xml"))
                    .to_string();
                model.shared_flows.insert(flow_name, steps(&root));
            }
            if model.shared_flows.is_empty() {
                return Err(format!(
                    "{} is not an Apigee shared flow bundle: sharedflowbundle/sharedflows/ holds no SharedFlow",
                    bundle.source
                ));
            }
        }
    }
    Ok(model)
}

/// The document from its root element: without the XML declaration and the
/// comments (licence headers) before it.
pub fn from_root(text: &str) -> &str {
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start();
        let skip = if rest.starts_with("<?") {
            rest.find("?>").map(|i| i + 2)
        } else if rest.starts_with("<!--") {
            rest.find("-->").map(|i| i + 3)
        } else {
            None
        };
        match skip {
            Some(i) => rest = &rest[i..],
            None => return rest.trim_end(),
        }
    }
}

fn child<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    e.children.iter().find(|c| c.name == name)
}

fn text_of(e: &Element, name: &str) -> Option<String> {
    child(e, name)
        .map(|c| c.text.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn steps(parent: &Element) -> Vec<Step> {
    parent
        .children
        .iter()
        .filter(|c| c.name == "Step")
        .filter_map(|s| {
            Some(Step {
                name: text_of(s, "Name")?,
                condition: text_of(s, "Condition"),
            })
        })
        .collect()
}

fn flow(e: Option<&Element>, name: &str) -> Flow {
    let Some(e) = e else {
        return Flow {
            name: name.to_string(),
            ..Flow::default()
        };
    };
    Flow {
        name: e.attribute("name").unwrap_or(name).to_string(),
        condition: text_of(e, "Condition"),
        request: child(e, "Request").map(steps).unwrap_or_default(),
        response: child(e, "Response").map(steps).unwrap_or_default(),
    }
}

fn endpoint(root: &Element, file: &str) -> Endpoint {
    let name = root
        .attribute("name")
        .unwrap_or(file.trim_end_matches(".xml"))
        .to_string();
    let flows = child(root, "Flows")
        .map(|f| {
            f.children
                .iter()
                .filter(|c| c.name == "Flow")
                .enumerate()
                .map(|(i, c)| flow(Some(c), &format!("#{}", i + 1)))
                .collect()
        })
        .unwrap_or_default();
    let route_rules = root
        .children
        .iter()
        .filter(|c| c.name == "RouteRule")
        .map(|r| RouteRule {
            name: r.attribute("name").unwrap_or("").to_string(),
            condition: text_of(r, "Condition"),
            target: text_of(r, "TargetEndpoint"),
            url: text_of(r, "URL"),
        })
        .collect();
    let mut fault_rules: Vec<String> = child(root, "FaultRules")
        .map(|f| {
            f.children
                .iter()
                .filter(|c| c.name == "FaultRule")
                .map(|c| {
                    format!("FaultRule {}", c.attribute("name").unwrap_or(""))
                        .trim_end()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    let rules: Vec<FaultRule> = child(root, "FaultRules")
        .map(|f| {
            f.children
                .iter()
                .filter(|c| c.name == "FaultRule")
                .map(|c| FaultRule {
                    name: c.attribute("name").unwrap_or("").to_string(),
                    condition: text_of(c, "Condition"),
                    steps: steps(c),
                    always_enforce: false,
                })
                .collect()
        })
        .unwrap_or_default();
    let default_rule = child(root, "DefaultFaultRule").map(|d| FaultRule {
        name: d.attribute("name").unwrap_or("").to_string(),
        condition: None,
        steps: steps(d),
        always_enforce: text_of(d, "AlwaysEnforce").as_deref() == Some("true"),
    });
    if let Some(d) = child(root, "DefaultFaultRule") {
        fault_rules.push(
            format!("DefaultFaultRule {}", d.attribute("name").unwrap_or(""))
                .trim_end()
                .to_string(),
        );
    }
    let http_target = child(root, "HTTPTargetConnection");
    let connection = match http_target {
        Some(c) if child(c, "URL").is_none() => c
            .children
            .iter()
            .find(|c| c.name != "Properties" && c.name != "SSLInfo")
            .map(|c| c.name.clone()),
        Some(_) => None,
        None => root
            .children
            .iter()
            .find(|c| c.name.ends_with("TargetConnection"))
            .map(|c| c.name.clone()),
    };
    Endpoint {
        name,
        base_path: child(root, "HTTPProxyConnection")
            .and_then(|c| text_of(c, "BasePath"))
            .unwrap_or_else(|| "/".to_string()),
        pre: flow(child(root, "PreFlow"), "PreFlow"),
        flows,
        post: flow(child(root, "PostFlow"), "PostFlow"),
        post_client: child(root, "PostClientFlow")
            .and_then(|p| child(p, "Response"))
            .map(steps)
            .unwrap_or_default(),
        route_rules,
        fault_rules,
        rules,
        default_rule,
        url: http_target.and_then(|c| text_of(c, "URL")),
        connection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flows_steps_and_conditions() {
        let root = parse_xml(
            r#"<ProxyEndpoint name="default">
              <PreFlow name="PreFlow"><Request><Step><Name>A</Name></Step></Request></PreFlow>
              <Flows>
                <Flow name="f1"><Request><Step><Name>B</Name><Condition>x = 1</Condition></Step></Request>
                  <Condition>proxy.pathsuffix MatchesPath "/a"</Condition></Flow>
                <Flow name="f2"><Request/></Flow>
              </Flows>
              <HTTPProxyConnection><BasePath>/v1/x</BasePath></HTTPProxyConnection>
              <RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule>
              <FaultRules><FaultRule name="fr"/></FaultRules>
            </ProxyEndpoint>"#,
        )
        .unwrap();
        let e = endpoint(&root, "default.xml");
        assert_eq!(e.base_path, "/v1/x");
        assert_eq!(
            e.pre.request,
            [Step {
                name: "A".into(),
                condition: None
            }]
        );
        assert_eq!(e.flows.len(), 2);
        assert_eq!(
            e.flows[0].condition.as_deref(),
            Some("proxy.pathsuffix MatchesPath \"/a\"")
        );
        assert_eq!(e.flows[0].request[0].condition.as_deref(), Some("x = 1"));
        assert_eq!(e.flows[1].condition, None);
        assert_eq!(e.route_rules[0].target.as_deref(), Some("default"));
        assert_eq!(e.fault_rules, ["FaultRule fr"]);
    }

    #[test]
    fn the_policy_xml_starts_at_its_root() {
        assert_eq!(
            from_root("<?xml version=\"1.0\"?>\n<!-- licence -->\n<A name=\"a\"/>\n"),
            "<A name=\"a\"/>"
        );
    }
}
