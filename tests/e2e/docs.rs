//! The Envoy configurations in the docs, run as a user would copy them:
//! the same file, only the ports and the service key changed.

use serde_json::json;

use crate::support::*;

/// The yaml block of `doc` that starts with `marker`.
fn yaml_block(doc: &str, marker: &str) -> String {
    let markdown = std::fs::read_to_string(repo_root().join(doc)).unwrap();
    markdown
        .split("```yaml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .find(|b| b.starts_with(marker))
        .unwrap_or_else(|| panic!("no yaml block starting {marker:?} in {doc}"))
        .to_string()
}

/// docs/migrating-from-apigee.md, "Bearer tokens from Authorization": what
/// the section says the configuration does, it does.
#[test]
fn the_bearer_token_configuration_does_what_the_migration_guide_says() {
    let service = TokenService::start();
    let upstream = Upstream::start();
    service.create_app("bearer-app", json!({}));
    service.import_access_token("bearer-app", "bearer-token-1", "approved", 3600, json!({}));

    let block = yaml_block(
        "docs/migrating-from-apigee.md",
        "# Envoy configuration (checked by tests/shipped.rs)",
    );
    let (port, admin_port) = (free_port(), free_port());
    let config = block
        .replace("port_value: 10001", &format!("port_value: {port}"))
        .replace("port_value: 9902", &format!("port_value: {admin_port}"))
        .replace(
            "port_value: 8280",
            &format!("port_value: {}", upstream.port),
        )
        .replace("port_value: 8290", &format!("port_value: {}", service.port))
        .replace("Bearer dev-service-key", &format!("Bearer {SERVICE_KEY}"));
    for (from, what) in [
        (10001, "listener"),
        (9902, "admin"),
        (8280, "upstream"),
        (8290, "token service"),
    ] {
        assert!(
            block.contains(&format!("port_value: {from}")),
            "the {what} port moved: update this test"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let envoy = Envoy::start_config(dir, &config, port, admin_port, 1);

    // Bearer (either case) reaches the upstream with the mapped header.
    for scheme in ["Bearer", "bearer"] {
        let auth = format!("{scheme} bearer-token-1");
        let r = envoy.request("GET", "/orders", &[("authorization", auth.as_bytes())], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.upstream_header("x-developer-email").as_deref(),
            Some("bearer-app@example.com"),
            "{}",
            r.text()
        );
        assert!(
            !r.text().contains("x-oauthv2info-md"),
            "an internal metadata header reached the upstream: {}",
            r.text()
        );
    }
    // No token, or Basic, is VerifyAccessToken's 401; an unknown token too.
    for (headers, fault) in [
        (vec![], "oauth.v2.InvalidAccessToken"),
        (
            vec![("authorization", &b"Basic YTpi"[..])],
            "oauth.v2.InvalidAccessToken",
        ),
        (
            vec![("authorization", &b"Bearer not-a-token"[..])],
            "keymanagement.service.invalid_access_token",
        ),
    ] {
        let r = envoy.request("GET", "/orders", &headers, b"");
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.text().contains(fault), "{}", r.text());
    }
    // The health check needs no token.
    let r = envoy.get("/healthz");
    assert_eq!(r.status, 200, "{}", r.text());
}
