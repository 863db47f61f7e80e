//! The change feed's answers, and the feed record the workers share: any
//! answer is a page, a 410 or a failed poll with a one-line reason; a record that decodes
//! encodes back to itself; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oauthv2info_core::{parse_feed, FeedAnswer, FeedState};

fuzz_target!(|data: &[u8]| {
    if let FeedAnswer::Failure(reason) = parse_feed(Some(200), data) {
        // The reason goes to the log: one line.
        assert!(!reason.contains(['\n', '\r']), "{reason:?}");
    }
    let _ = parse_feed(Some(410), data);
    if let Some(state) = FeedState::decode(data) {
        assert_eq!(FeedState::decode(&state.encode()), Some(state));
    }
});
