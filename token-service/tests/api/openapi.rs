//! The OpenAPI description (docs/token-service.md, "OpenAPI"): served at
//! `GET /openapi.json`, equal to docs/token-service.openapi.json, and a
//! schemathesis run (PyPI, in .venv from `make setup`) of the running
//! service on SQLite against it: a bounded number of examples per
//! operation, every answer in the description (status, content type,
//! headers, body schema), no 5xx, and a refused request writes nothing
//! (tests/schemathesis/hooks.py fingerprints the whole store around each
//! call).

use crate::common::*;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/token-service.openapi.json"
);

/// Examples per operation (and per generation phase).
const EXAMPLES: &str = "100";

#[test]
fn the_served_description_is_the_shipped_one() {
    with_backend(Backend::Sqlite, || {
        let s = Server::start();
        let r = s.get("/openapi.json");
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text, std::fs::read_to_string(SHIPPED).unwrap());
        assert_eq!(r.json["openapi"], "3.1.0");
    });
}

#[test]
fn schemathesis_finds_every_answer_in_the_description() {
    with_backend(Backend::Sqlite, || {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = root.join("../.venv/bin");
        let st = venv.join("schemathesis");
        assert!(
            st.exists(),
            "{} is missing: run `make setup` (it installs schemathesis into .venv)",
            st.display()
        );
        let s = Server::start();
        // What the description's examples name: the app, a token to
        // introspect and merge into, one to revoke.
        s.create_app(json!({"name": "shop", "developer_email": "dev@example.com",
                            "client_id": "cid-shop", "client_secret": "change-me"}));
        s.import(json!({"type": "access_token", "token": "AT-example-0001",
            "client_id": "cid-shop", "scope": "READ WRITE", "status": "approved",
            "issued_at": now_ms(), "expires_in": 3600, "refresh_token": "RT-example-0001",
            "attributes": {"department.id": "42"}}));
        s.import_access("AT-example-0002", "cid-shop", json!({}));

        let dir = root.join("tests/schemathesis");
        let report = s.dir.path().join("report.xml");
        let mut child = Command::new(&st)
            .arg("--config-file")
            .arg(dir.join("schemathesis.toml"))
            .args(["run", &format!("{}/openapi.json", s.base)])
            .args([
                "--workers",
                "1",
                "--max-examples",
                EXAMPLES,
                "--seed",
                "20261205",
            ])
            .args([
                "--no-color",
                "--request-timeout",
                "10",
                "--max-failures",
                "20",
            ])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance,\
                 refused_request_writes_nothing",
            ])
            .args(["--report", "junit", "--report-junit-path"])
            .arg(&report)
            .args(["--generation-database", "none"])
            .env("SCHEMATHESIS_HOOKS", dir.join("hooks.py"))
            .env("TS_SERVICE_KEY", SK)
            .env("TS_ADMIN_KEY", AK)
            .env("TS_CLIENT_ID", "cid-shop")
            .env("TS_CLIENT_SECRET", "change-me")
            .env("TS_DB_PATH", &s.db)
            .env("NO_COLOR", "1")
            // Its caches (.schemathesis/) go to the test's directory.
            .current_dir(s.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(s.dir.path().join("st.out")).unwrap())
            .stderr(std::fs::File::create(s.dir.path().join("st.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("schemathesis did not finish within 600 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = std::fs::read_to_string(s.dir.path().join("st.out")).unwrap_or_default()
            + &std::fs::read_to_string(s.dir.path().join("st.err")).unwrap_or_default();
        let summary: Vec<&str> = out.lines().skip_while(|l| !l.contains("SUMMARY")).collect();
        println!("schemathesis:\n{}", summary.join("\n"));
        assert!(status.success(), "schemathesis failed:\n{out}");
        let counts = out
            .lines()
            .find(|l| l.contains(" generated, "))
            .unwrap_or_else(|| panic!("no counts:\n{out}"));
        let generated: u64 = counts
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{counts}"));
        assert!(
            counts.trim() == format!("{generated} generated, {generated} passed"),
            "{counts}"
        );
        // Every operation was run, each with several cases.
        let junit = std::fs::read_to_string(&report).unwrap();
        for op in [
            "POST /oauth2/introspect",
            "POST /oauth2/token",
            "POST /oauth2/revoke",
            "POST /v1/accesstokens/attributes",
            "POST /v1/apps",
            "POST /v1/apiproducts",
            "GET /v1/apiproducts/{name}",
            "PUT /v1/apps/{client_id}/apiproducts/{name}",
            "GET /v1/apps/{client_id}/apiproducts",
            "PUT /v1/apps/{client_id}/status",
            "POST /v1/apigee/apps",
            "POST /v1/tokens",
            "GET /v1/changes",
            "GET /healthz",
            "GET /v1/ext_authz/{path}",
        ] {
            assert!(junit.contains(op), "{op} was not tested:\n{junit}");
        }
        assert!(generated >= 15 * 20, "{counts}");
        println!("schemathesis: {counts} (at most {EXAMPLES} examples per operation and phase)");
        // The service is still well.
        assert_eq!(s.get("/healthz").status, 200);
        assert_eq!(s.introspect("cid-shop", Some("client_id"))["active"], true);
    });
}
