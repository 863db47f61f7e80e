//! VM start and configuration: what the filter reads, defines and logs.

use crate::emulator::{Action, Call, Emulator, ERROR, INFO, PLUGIN_CONFIGURATION, ROOT, WARN};
use crate::{get_config, GET};

#[test]
fn the_vm_starts_and_a_good_configuration_is_loaded() {
    let mut emu = Emulator::load();
    assert!(emu.vm_start());
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        emu.logs(),
        vec![(INFO, format!("oauthv2info {version}: VM started"))]
    );
    emu.clear_calls();

    let config = get_config();
    assert!(emu.configure(&config));
    // The configuration is read once, whole, from the plugin's buffer.
    let reads: Vec<&Call> = emu
        .calls()
        .iter()
        .map(|r| &r.call)
        .filter(|c| matches!(c, Call::GetBuffer { .. }))
        .collect();
    assert_eq!(
        reads,
        vec![&Call::GetBuffer {
            buffer: PLUGIN_CONFIGURATION,
            start: 0,
            max: config.len() as u32
        }]
    );
    // Sixteen random bytes key the map of lookups in flight.
    assert!(emu
        .calls()
        .iter()
        .any(|r| r.call == Call::RandomGet { len: 16 }));
    assert_eq!(
        emu.logs_at(INFO),
        vec![format!(
            "oauthv2info {version}: configured 1 policy (GetOAuthV2Info \"G\"), token service cluster \"token_service\", metadata bridge lua"
        )]
    );
    assert!(emu.logs_at(WARN).is_empty() && emu.logs_at(ERROR).is_empty());
    assert_eq!(emu.tick_ms(ROOT), 1000);
    // Every host call of the configuration is the root context's.
    assert!(emu.calls().iter().all(|r| r.context == ROOT));
}

#[test]
fn metrics_are_defined_once_at_configuration() {
    let emu = Emulator::start(&get_config());
    let defined: Vec<(u32, String)> = emu
        .calls()
        .iter()
        .filter_map(|r| match &r.call {
            Call::DefineMetric { kind, name } => Some((*kind, name.clone())),
            _ => None,
        })
        .collect();
    // Counters (0), the feed's gauge (1) only with invalidation, the
    // latency histogram (2) (docs/configuration.md#metrics).
    for counter in [
        "oauthv2info.policy_executions",
        "oauthv2info.callouts",
        "oauthv2info.callout_failures",
        "oauthv2info.cache.hits",
        "oauthv2info.cache.negative_hits",
        "oauthv2info.cache.misses",
        "oauthv2info.faults.invalid_access_token",
        "oauthv2info.policy.G.executions",
        "oauthv2info.policy.G.faults",
    ] {
        assert!(
            defined.contains(&(0, counter.to_string())),
            "{counter} not defined: {defined:?}"
        );
    }
    assert!(defined.contains(&(2, "oauthv2info.callout_latency_ms".to_string())));
    // Each definition was answered with an id the filter uses later.
    assert!(emu
        .calls()
        .iter()
        .filter(|r| r.call.name() == "proxy_define_metric")
        .all(|r| r.status == 0));
    assert_eq!(emu.count("proxy_increment_metric"), 0);
}

#[test]
fn a_bad_configuration_is_refused_with_one_line_naming_policy_and_element() {
    let mut emu = Emulator::load();
    assert!(emu.vm_start());
    emu.clear_calls();
    let set = r#"<SetOAuthV2Info name="SetOAuthV2Info"><AccessToken ref="request.queryparam.access_token"/><Attributes><Attribute name="scope" value="x"/></Attributes></SetOAuthV2Info>"#;
    let config = serde_json::json!({ "policies": [set] }).to_string();
    assert!(!emu.configure(&config));
    assert_eq!(
        emu.logs(),
        vec![(
            ERROR,
            "oauthv2info: configuration refused: policy \"SetOAuthV2Info\", element <Attribute name=\"scope\">: \"scope\" is a standard token field; SetOAuthV2Info may only add or change custom attributes".to_string()
        )]
    );
    // Nothing of a configuration is set up.
    assert_eq!(emu.count("proxy_define_metric"), 0);
    assert_eq!(emu.count("proxy_set_tick_period_milliseconds"), 0);

    // A request on the refused plugin gets the filter's own 500.
    let (id, action) = emu.request("/orders?access_token=tok", &[]);
    assert_eq!(action, Action::Pause);
    let reply = emu.stream(id).reply.clone().expect("a local reply");
    assert_eq!(reply.status, 500);
    assert_eq!(
        String::from_utf8(reply.body).unwrap(),
        r#"{"fault":{"faultstring":"Filter not configured","detail":{"errorcode":"keymanagement.service.not_configured"}}}"#
    );
    assert_eq!(emu.count("proxy_http_call"), 0);
}

/// Each refused example of `policies/invalid/` gives, from the .wasm, the
/// exact line its `.expected` file holds.
#[test]
fn every_refused_example_gives_its_line_from_the_wasm() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/invalid");
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for expected in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "expected"))
    {
        let line = std::fs::read_to_string(expected).unwrap();
        let input = ["xml", "json"]
            .iter()
            .map(|ext| expected.with_extension(ext))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no policy beside {}", expected.display()));
        let config = std::fs::read_to_string(&input).unwrap();
        let mut emu = Emulator::load();
        assert!(emu.vm_start());
        assert!(!emu.configure(&config), "{} was accepted", input.display());
        assert_eq!(
            emu.logs_at(ERROR),
            vec![line.trim_end().to_string()],
            "{}",
            input.display()
        );
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} examples in {}", dir.display());
}

/// A bare policy XML is a whole configuration too.
#[test]
fn one_policy_as_bare_xml_is_a_configuration() {
    let mut emu = Emulator::load();
    assert!(emu.vm_start());
    assert!(emu.configure(GET));
}

/// The emulator sees a trap, and `src/lib.rs`'s panic hook logs the panic
/// at critical level first. (Envoy never answers a callout it did not
/// make; the SDK's dispatcher panics on one: a way to make the VM panic.)
#[test]
fn a_panic_is_logged_at_critical_and_the_trap_is_seen() {
    let mut emu = Emulator::start(&get_config());
    let err = emu
        .try_respond(999, Some(200), "{}")
        .expect_err("an answer to no callout traps");
    assert!(err.contains("trapped"), "{err}");
    let critical = emu.logs_at(crate::emulator::CRITICAL);
    assert_eq!(critical.len(), 1, "{critical:?}");
    assert!(
        critical[0].starts_with("oauthv2info: panic: ") && critical[0].contains("invalid token_id"),
        "{critical:?}"
    );
}

/// Two plugins sharing one VM (two filters with the same `vm_id`): each
/// root context has its own worker, policies and callouts (`src/lib.rs`
/// keeps them by root context id), and Envoy answers a callout through the
/// root context that made it.
#[test]
fn two_plugins_in_one_vm_keep_their_own_policies() {
    let mut emu = Emulator::start(&get_config());
    let verify = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let other = emu.add_plugin(&serde_json::json!({ "policies": [verify] }).to_string());
    assert_ne!(other, ROOT);

    // The second plugin runs VerifyAccessToken: no Authorization, 401.
    let (refused, _) = emu.request_on(other, "/orders?access_token=tok", &[], &[]);
    assert_eq!(
        emu.stream(refused).reply.as_ref().map(|r| r.status),
        Some(401)
    );

    // One lookup in each plugin; each answer resumes its own request.
    let (get, _) = emu.request("/orders?access_token=tok", &[]);
    let (verified, _) = emu.request_on(other, "/orders", &[("authorization", "Bearer tok")], &[]);
    let calls = emu.http_calls();
    assert_eq!(calls.len(), 2, "no coalescing across plugins");
    assert_eq!((calls[0].root, calls[1].root), (ROOT, other));
    for call in calls.iter().rev() {
        emu.respond(call.token, Some(200), &crate::profile("tok"));
    }
    let (g, v) = (emu.stream(get), emu.stream(verified));
    assert_eq!((g.resumed, v.resumed), (1, 1));
    assert_eq!(
        g.state("oauthv2accesstoken.G.scope").as_deref(),
        Some("READ WRITE")
    );
    assert_eq!(v.state("scope").as_deref(), Some("READ WRITE"));
    assert!(v.state("oauthv2accesstoken.G.scope").is_none());
    assert!(emu.tick_ms(other) > 0);
}
