//! One policy's XML, as a user pastes it from an Apigee bundle: parsed, or
//! refused with one line naming the policy and element; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::parse_policy;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_policy(&text, 0) {
        Ok(policy) => assert!(!policy.name.is_empty()),
        Err(e) => {
            let line = e.to_string();
            assert!(
                !line.contains(['\n', '\r']),
                "a refusal must be one log line: {line:?}"
            );
        }
    }
});
