//! The plugin configuration Envoy hands the filter (the JSON envelope and
//! the policy XML inside it): any bytes load, or are refused with one
//! line; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::parse_config;

fuzz_target!(|data: &[u8]| {
    match parse_config(data) {
        Ok(config) => {
            // A loaded configuration is self-consistent: every policy has
            // a name, and the names are distinct.
            let mut names: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
            assert!(names.iter().all(|n| !n.is_empty()));
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), config.policies.len());
        }
        Err(e) => {
            let line = e.to_string();
            assert!(
                !line.contains(['\n', '\r']),
                "a refusal must be one log line: {line:?}"
            );
        }
    }
});
