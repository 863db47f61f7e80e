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

/// `make run`'s harness, envoy/envoy.yaml (envoy/envoy-native.yaml on the
/// native module) with only its ports and service key changed, as
/// envoy/run-harness.sh starts it: its FaultRules answer a bad token with
/// the custom 401 and a token without the READ scope with the custom 403.
#[test]
fn the_harness_answers_its_custom_401_and_403() {
    let service = TokenService::start();
    let upstream = Upstream::start();
    service.create_app("harness-app", json!({}));
    service.import_access_token("harness-app", "harness-read", "approved", 3600, json!({}));
    let r = service.admin(
        "/v1/tokens",
        json!({"type": "access_token", "token": "harness-write-only", "client_id": "harness-app",
               "scope": "WRITE", "status": "approved", "issued_at": now_ms() - 1000, "expires_in": 3600}),
    );
    assert_eq!(r.status, 201, "import: {}", r.text());

    let file = if native() {
        "envoy/envoy-native.yaml"
    } else {
        "envoy/envoy.yaml"
    };
    let shipped = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let mut config = shipped.clone();
    for (from, to) in [
        ("port_value: 10000}", format!("port_value: {port}}}")),
        ("port_value: 9901}", format!("port_value: {admin_port}}}")),
        (
            "port_value: 8090}",
            format!("port_value: {}}}", service.port),
        ),
        (
            "port_value: 8080}",
            format!("port_value: {}}}", upstream.port),
        ),
        (
            "\"Bearer dev-service-key\"",
            format!("\"Bearer {SERVICE_KEY}\""),
        ),
    ] {
        assert_eq!(shipped.matches(from).count(), 1, "{from} in {file}");
        config = config.replace(from, &to);
    }
    let dir = tempfile::tempdir().unwrap();
    let envoy = Envoy::start_config(dir, &config, port, admin_port, 1);
    let bearer = |token: &str| format!("Bearer {token}");

    // A token with READ: through to the upstream.
    let auth = bearer("harness-read");
    let r = envoy.request("GET", "/hello", &[("authorization", auth.as_bytes())], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-client-id").as_deref(),
        Some("harness-app")
    );

    // No token (VerifyAccessToken's InvalidAccessToken), an unknown one
    // (its invalid_access_token), an unknown ?access_token= (GetOAuthV2Info's
    // invalid_access_token, a 500 in Apigee): the custom 401.
    let unknown = bearer("not-a-real-token");
    for (path, headers, fault) in [
        ("/hello", vec![], "InvalidAccessToken"),
        (
            "/hello",
            vec![("authorization", unknown.as_bytes())],
            "invalid_access_token",
        ),
        (
            "/hello?access_token=not-a-real-token",
            vec![],
            "invalid_access_token",
        ),
    ] {
        let r = envoy.request("GET", path, &headers, b"");
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(
            r.json(),
            json!({"error": {"status": 401, "code": "unauthorized", "fault": fault,
                             "message": "A valid access token is required"}}),
            "{path}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="harness", error="invalid_token""#)
        );
    }

    // A valid token without READ: the custom 403.
    let auth = bearer("harness-write-only");
    let r = envoy.request("GET", "/hello", &[("authorization", auth.as_bytes())], b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"error": {"status": 403, "code": "forbidden", "fault": "InsufficientScope",
                         "message": "Required scope(s): READ"}})
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="harness", error="insufficient_scope", scope="READ""#)
    );
}

/// `make run` itself: envoy/run-harness.sh started as a user starts it (its
/// own data directory, ports and the binaries of this build), then the
/// commands it prints answer as it says: the READ WRITE token passes, no
/// token gets the custom 401, the WRITE-only token the custom 403.
#[test]
fn make_runs_harness_answers_the_commands_it_prints() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let data = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let mut command = Command::new(repo_root().join("envoy/run-harness.sh"));
    command
        .env("LISTEN_PORT", ports[0].to_string())
        .env("ADMIN_PORT", ports[1].to_string())
        .env("TOKEN_SERVICE_PORT", ports[2].to_string())
        .env("UPSTREAM_PORT", ports[3].to_string())
        .env("DATA_DIR", data.path())
        .env("ENVOY", envoy_bin())
        .env("TOKEN_SERVICE_BIN", built("token-service"))
        .env("UPSTREAM_BIN", built("echo-upstream"))
        .env("NATIVE", if native() { "1" } else { "" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run-harness.sh");
    // Stopped as Ctrl-C would (its trap stops what it started), whatever
    // the assertions below say.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let stop = Stop(child);

    let (mut printed, mut read_token, mut write_token) = (String::new(), None, None);
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(t) = line.strip_prefix("==> access token issued by POST /oauth2/token") {
            read_token = t.rsplit(' ').next().map(str::to_string);
        }
        if let Some(t) = line.strip_prefix("==> access token without READ") {
            write_token = t.rsplit(' ').next().map(str::to_string);
        }
        if line.starts_with("Ready.") {
            break;
        }
    }
    // The rest of what it prints (the access log) is read and dropped, or
    // the script would die of SIGPIPE without stopping what it started.
    std::thread::spawn(move || lines.for_each(drop));
    let (Some(read_token), Some(write_token)) = (read_token, write_token) else {
        drop(stop);
        panic!("the harness printed no tokens:\n{printed}");
    };
    assert!(
        printed.contains("==> API products FreeProduct and Premium defined"),
        "{printed}"
    );

    let auth = |t: &str| format!("Bearer {t}");
    let r = http(
        ports[0],
        "GET",
        "/hello",
        &[("authorization", auth(&read_token).as_bytes())],
        b"",
    );
    assert_eq!(r.status, 200, "{}\n{printed}", r.text());
    assert_eq!(
        r.upstream_header("x-client-id").as_deref(),
        Some("demo-app"),
        "{}",
        r.text()
    );
    let r = http(ports[0], "GET", "/hello", &[], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.text().contains("\"fault\": \"InvalidAccessToken\""),
        "{}",
        r.text()
    );
    let r = http(
        ports[0],
        "GET",
        "/hello",
        &[("authorization", auth(&write_token).as_bytes())],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("\"fault\": \"InsufficientScope\""),
        "{}",
        r.text()
    );

    // Ctrl-C stops everything the script started.
    drop(stop);
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers after Ctrl-C"
        );
    }
}
