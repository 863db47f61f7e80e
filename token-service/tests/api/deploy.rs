//! The deployment files (envoy/docker-compose-postgres.yaml, envoy/k8s/)
//! agree with the binary: the options they pass are accepted, the variables
//! they set are the ones it reads, no `--db` flag hides TOKEN_SERVICE_DB,
//! and the probes, ports and names line up.

use crate::common::BIN;
use std::path::PathBuf;
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(path: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap()
        .iter()
        .map(|v| match v {
            Yaml::String(s) => s.clone(),
            Yaml::Integer(i) => i.to_string(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

/// The binary accepts these options (checked by parsing them before
/// `--help`, which then exits 0).
fn assert_accepted(args: &[String], what: &str) {
    assert!(
        !args.iter().any(|a| a == "--db" || a.starts_with("--db=")),
        "{what}: a --db flag would win over TOKEN_SERVICE_DB"
    );
    let out = Command::new(BIN)
        .args(args)
        .arg("--help")
        .env_remove("TOKEN_SERVICE_DB")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {args:?} refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn help() -> String {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const ENV: [&str; 4] = [
    "TOKEN_SERVICE_DB",
    "PGPASSWORD",
    "TOKEN_SERVICE_KEY",
    "TOKEN_SERVICE_ADMIN_KEY",
];

#[test]
fn compose_file_runs_two_replicas_on_its_postgres() {
    let doc = &load("envoy/docker-compose-postgres.yaml")[0];
    let services = doc["services"].as_hash().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "postgres",
            "token-service-1",
            "token-service-2",
            "echo-upstream",
            "envoy"
        ]
    );
    // Envoy's token_service cluster (envoy/envoy-compose.yaml) resolves
    // `token-service`: both replicas answer to it, and its key is theirs.
    let envoy = &doc["services"]["envoy"];
    let cmd = strs(&envoy["command"]);
    assert_eq!(&cmd[..2], ["-c", "envoy/envoy-compose.yaml"]);
    let envoy_config = std::fs::read_to_string(repo().join("envoy/envoy-compose.yaml")).unwrap();
    assert!(envoy_config.contains("address: token-service, port_value: 8090"));
    let pg = &doc["services"]["postgres"];
    assert!(pg["image"].as_str().unwrap().starts_with("postgres:"));
    let dockerfile = std::fs::read_to_string(repo().join("token-service/Dockerfile")).unwrap();
    let mut ports = Vec::new();
    for name in ["token-service-1", "token-service-2"] {
        let s = &doc["services"][name];
        assert_eq!(s["build"]["context"].as_str(), Some(".."));
        assert_eq!(
            s["build"]["dockerfile"].as_str(),
            Some("token-service/Dockerfile")
        );
        let target = s["build"]["target"].as_str().unwrap();
        assert!(dockerfile.contains(&format!(" AS {target}\n")), "{target}");
        assert_accepted(&strs(&s["command"]), name);
        let env = &s["environment"];
        for k in ENV {
            assert!(env[k].as_str().is_some(), "{name} lacks {k}");
        }
        let url = env["TOKEN_SERVICE_DB"].as_str().unwrap();
        let user = pg["environment"]["POSTGRES_USER"].as_str().unwrap();
        let db = pg["environment"]["POSTGRES_DB"].as_str().unwrap();
        assert_eq!(url, format!("postgres://{user}@postgres:5432/{db}"));
        assert_eq!(env["PGPASSWORD"], pg["environment"]["POSTGRES_PASSWORD"]);
        assert_ne!(env["TOKEN_SERVICE_KEY"], env["TOKEN_SERVICE_ADMIN_KEY"]);
        assert_eq!(
            s["depends_on"]["postgres"]["condition"].as_str(),
            Some("service_healthy")
        );
        ports.extend(strs(&s["ports"]));
        assert_eq!(
            strs(&s["networks"]["default"]["aliases"]),
            ["token-service"],
            "{name}"
        );
        let key = s["environment"]["TOKEN_SERVICE_KEY"].as_str().unwrap();
        assert!(
            envoy_config.contains(&format!("Bearer {key}")),
            "{name}: envoy-compose.yaml calls it with another key"
        );
    }
    assert_eq!(ports, ["127.0.0.1:8091:8090", "127.0.0.1:8092:8090"]);
    let help = help();
    for k in ENV {
        assert!(help.contains(k), "--help does not name {k}");
    }
}

#[test]
fn k8s_manifests_line_up() {
    let kust = &load("envoy/k8s/kustomization.yaml")[0];
    let mut kinds = std::collections::BTreeMap::new();
    for r in strs(&kust["resources"]) {
        let doc = load(&format!("envoy/k8s/{r}")).remove(0);
        kinds.insert(doc["kind"].as_str().unwrap().to_owned(), doc);
    }
    let names: Vec<&str> = kinds.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "Deployment",
            "Namespace",
            "PodDisruptionBudget",
            "Secret",
            "Service"
        ]
    );
    // One namespace for all, the one the kustomization sets (and that
    // envoy/istio/ expects; tests/manifests.py checks that side).
    let ns = kust["namespace"].as_str().unwrap();
    assert_eq!(kinds["Namespace"]["metadata"]["name"].as_str(), Some(ns));
    for (kind, doc) in &kinds {
        if kind != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"].as_str(), Some(ns), "{kind}");
        }
    }
    let (dep, secret, svc) = (&kinds["Deployment"], &kinds["Secret"], &kinds["Service"]);
    let pod = &dep["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(&dep["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(&svc["spec"]["selector"], labels);
    assert_eq!(
        &kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        labels
    );
    let c = &pod["spec"]["containers"][0];
    let args = strs(&c["args"]);
    assert_accepted(&args, "Deployment");
    let listen = &args[args.iter().position(|a| a == "--listen").unwrap() + 1];
    let port = c["ports"][0]["containerPort"].as_i64().unwrap();
    assert_eq!(listen, &format!("0.0.0.0:{port}"));
    let port_name = c["ports"][0]["name"].as_str().unwrap();
    let ready = &c["readinessProbe"]["httpGet"];
    assert_eq!(ready["path"].as_str(), Some("/healthz"));
    assert_eq!(ready["port"].as_str(), Some(port_name));
    assert_eq!(
        svc["spec"]["ports"][0]["targetPort"].as_str(),
        Some(port_name)
    );
    // Liveness must not restart a replica because its database is down.
    assert!(
        c["livenessProbe"]["httpGet"].is_badvalue(),
        "liveness on /healthz"
    );
    assert_eq!(
        c["envFrom"][0]["secretRef"]["name"],
        secret["metadata"]["name"]
    );
    let keys: Vec<&str> = secret["stringData"]
        .as_hash()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ENV);
    assert!(secret["stringData"]["TOKEN_SERVICE_DB"]
        .as_str()
        .unwrap()
        .starts_with("postgres://"));
}
